#!/usr/bin/env bash
# Runs inside the VM (systemd is PID 1) from the payload disk: installs evse-gateway as the
# README tells an installer, then checks the service under the real systemd. Each check
# prints one "VMCHECK <name> PASS|FAIL <detail>" line; tests/test_vm_x86.py reads them.
set -uo pipefail
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
SRC=/root/evse-gateway
CONFIG=/etc/evse-gateway/config.toml
VENV=/opt/evse-gateway/venv

report() { echo "VMCHECK $1 $2 ${3:-}"; }
check() {  # check NAME DETAIL CMD...: PASS when CMD succeeds
    local name=$1 detail=$2; shift 2
    if "$@"; then report "$name" PASS "$detail"; else report "$name" FAIL "$detail"; fi
}
wait_for() {  # wait_for SECONDS CMD...: poll CMD until it succeeds
    local deadline=$((SECONDS + $1)); shift
    until "$@"; do [ $SECONDS -ge $deadline ] && return 1; sleep 0.5; done
}
main_pid() { systemctl show -P MainPID evse-gateway; }
active() { [ "$(systemctl is-active evse-gateway)" = active ]; }

echo "VMSTART $(uname -m) systemd $(systemctl --version | head -1 | cut -d' ' -f2) pid1=$(cat /proc/1/comm)"

# No network in the VM: pip finds the wheels prepared on the host, as an offline Pi would.
printf '[global]\nno-index = true\nfind-links = /payload/wheels\n' >/etc/pip.conf
cp -a /payload/src "$SRC"
cd "$SRC"
# An installer's config, written before the install: the demo site's ports and its own
# charger passwords (install.sh keeps an existing config and gives it to the service group).
install -D -m 0640 gateway/sim/demo/gateway.toml "$CONFIG"
check install "./install.sh as the README says" ./install.sh
check started "systemctl is-active after the install (Type=notify: active only after READY=1)" active
"$VENV/bin/python" /payload/src/tests/vm/site.py >/root/site.log 2>&1 &
check site "the simulated site's chargers connect to the service" \
    wait_for 120 grep -q "chargers connected" /root/site.log
cycle() {  # the map's cycle counter, read like any SCADA would
    "$VENV/bin/evse-gateway" status --port "$1" 2>/dev/null | sed -n 's/^cycle \([0-9]*\),.*/\1/p'
}
cars_draw() { tail -3 /root/site.log | grep -Eq '^site: cars A .*[1-9][0-9]*\.[0-9]'; }
check allocation "the allocation reaches the simulated cars: one draws at least 1 A" \
    wait_for 240 cars_draw
tail -1 /root/site.log

# The daemon's CPU time per control cycle (utime + stime of the main process over the
# cycles the map counted), the figure the x86-64 and arm64 runs are compared by.
pid=$(main_pid); ticks=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
c0=$(cycle 15502); t0=$(cpu_ticks); sleep 30; c1=$(cycle 15502); t1=$(cpu_ticks)
per_cycle=$(awk -v dt=$((t1 - t0)) -v n=$((c1 - c0)) -v hz="$ticks" 'BEGIN { if (n > 0) printf "%.1f", 1000 * dt / hz / n }')
check cycle_cpu "cpu_ms_per_cycle ${per_cycle:-none} over $((c1 - c0)) cycles" [ -n "$per_cycle" ]

if [ "$(cat /payload/set)" = short ]; then
    # The suite's pure tests (allocation and per-charger control: no I/O) on this Python.
    PIP_NO_WARN_SCRIPT_LOCATION=1 "$VENV/bin/python" -m pip install -q --disable-pip-version-check \
        --target /root/testlibs pytest pytest-timeout hypothesis >/root/testlibs.log 2>&1
    t0=$SECONDS
    (cd "$SRC" && PYTHONPATH=/root/testlibs "$VENV/bin/python" -m pytest -q -p no:cacheprovider \
        tests/test_allocation_*.py tests/test_controller*.py >/root/pure.log 2>&1)
    rc=$?
    tail -3 /root/pure.log
    check pure_tests "$(uname -m) Python $("$VENV/bin/python" -c 'import platform; print(platform.python_version())'): $(tail -1 /root/pure.log) ($((SECONDS - t0)) s)" \
        [ "$rc" = 0 ]
    echo "VMDONE"
    exit 0
fi

journalctl -u evse-gateway --no-pager -o short-monotonic | tail -8

# SIGHUP (ExecReload) applies a charger change without a restart.
pid=$(main_pid)
sed -i '0,/^max_a = 16/s//max_a = 10/' "$CONFIG"
systemctl reload evse-gateway
check reload "systemctl reload applies a charger's max_a, same process" \
    wait_for 30 bash -c "journalctl -u evse-gateway -o cat | grep -q 'reload: charger settings applied' && [ \"\$(systemctl show -P MainPID evse-gateway)\" = $pid ]"

# Journal priorities from lines the daemon really emits: a reload it cannot apply without a
# restart (warning), then one it refuses (error), beside the info line of the reload above.
cp "$CONFIG" /root/config.reloaded
sed -i 's/^cycle_s = 1.0$/cycle_s = 1.5/' "$CONFIG"
systemctl reload evse-gateway
wait_for 30 bash -c "journalctl -u evse-gateway -o cat | grep -q 'reload: \[control\] changed'"
printf '[site]\nfuse_a = "sixty-three"\n' >>"$CONFIG"
systemctl reload evse-gateway
wait_for 30 bash -c "journalctl -u evse-gateway -o cat | grep -q 'reload refused'"
priorities=$(journalctl -u evse-gateway -o json | python3 -c '
import json, sys
wanted = {"reload: charger settings applied": "6", "reload: [control] changed": "4", "reload refused": "3"}
seen = {}
for line in sys.stdin:
    entry = json.loads(line)
    message = entry.get("MESSAGE")
    for text in wanted:
        if isinstance(message, str) and text in message:
            seen[text] = entry.get("PRIORITY")
print(" ".join(f"{text.split()[1]}={seen.get(text)}" for text in wanted))
sys.exit(seen != wanted)')
priorities_ok=$?
check journal_priority "PRIORITY in journalctl -o json of the daemon's info, warning and error lines: $priorities" \
    [ "$priorities_ok" = 0 ]
cp /root/config.reloaded "$CONFIG"

restarted() { [ "$(main_pid)" != "$1" ] && [ "$(main_pid)" != 0 ] && active; }
pid=$(main_pid); t0=$SECONDS
kill -9 "$pid"
# RestartSec=5, then the new daemon's start up to READY under TCG: 29 s in all here with the
# host at load 3, 41 s at load 5-9 (over the 40 s this waited before), so the bound is generous.
wait_for 90 restarted "$pid"
check kill9 "kill -9 -> a new main process, active again after $((SECONDS - t0)) s (RestartSec=5)" restarted "$pid"

# The watchdog runs only once READY=1 is in: stop an active daemon, not a starting one.
wait_for 90 active
pid=$(main_pid); t0=$SECONDS
kill -STOP "$pid"
wait_for 150 restarted "$pid"  # WatchdogSec=30, RestartSec=5, then the start as above
check watchdog "SIGSTOP -> killed by WatchdogSec=30 and restarted after $((SECONDS - t0)) s" \
    bash -c "restarted() { [ \"\$(systemctl show -P MainPID evse-gateway)\" != $pid ]; }; restarted && journalctl -u evse-gateway | grep -q -i watchdog"

cp "$CONFIG" /root/config.good
printf '[site]\nfuse_a = "sixty-three"\n' >>"$CONFIG"
systemctl restart evse-gateway  # a manual restart resets NRestarts: count from the failure
wait_for 30 bash -c '! systemctl is-active -q evse-gateway'
n0=$(systemctl show -P NRestarts evse-gateway)
sleep 12  # longer than RestartSec: a restart loop would have begun (the one fixed wait: proving an absence)
check badconfig "bad config -> exit status $(systemctl show -P ExecMainStatus evse-gateway), state $(systemctl is-active evse-gateway), restarts $n0 -> $(systemctl show -P NRestarts evse-gateway)" \
    bash -c "[ \"\$(systemctl show -P ExecMainStatus evse-gateway)\" = 2 ] && [ \"\$(systemctl show -P NRestarts evse-gateway)\" = $n0 ] && ! systemctl is-active -q evse-gateway"
cp /root/config.good "$CONFIG"
systemctl restart evse-gateway

# The RS485 meter: the grid meter on the guest's second serial port (the host's rtu_meter.py
# on the other end), and Modbus TCP on 502, which needs the low-port drop-in. install.sh,
# rerun as docs/install.md says, writes the drop-in and restarts the service.
sed -i -e '/^name = "grid"$/,/^port = 15020$/{/^host = /d;s|^port = 15020$|port = "/dev/ttyS1"\nbaud = 9600|}' \
    -e '/^\[export\]$/,/^port = /s/^port = 15502$/port = 502/' "$CONFIG"
./install.sh >/root/install-502.log 2>&1
cat /root/install-502.log
served_voltages() { "$VENV/bin/evse-gateway" status --port 502 2>&1 | grep -Eq '^  voltage V +241 +242 +243 '; }
wait_for 90 served_voltages
check serial "the grid meter on $(stat -c '%n %G %a' /dev/ttyS1) reads the host's RTU meter through DeviceAllow and dialout: $("$VENV/bin/evse-gateway" status --port 502 2>&1 | grep -E '^  voltage V' | tr -s ' ')" \
    served_voltages
pid=$(main_pid)
capeff=$(sed -n 's/^CapEff:\t//p' "/proc/$pid/status")
check lowport "[export] port = 502: status reads the map marker there; user $(ps -o user= -p "$pid"), CapEff $capeff (CAP_NET_BIND_SERVICE only)" \
    bash -c "[ -f /etc/systemd/system/evse-gateway.service.d/low-port.conf ] && '$VENV/bin/evse-gateway' status --port 502 >/dev/null && [ '$capeff' = 0000000000000400 ] && [ \"\$(ps -o user= -p $pid)\" = evse-gateway ]"
cp /root/config.good "$CONFIG"
./install.sh >/dev/null 2>&1
pid=$(main_pid)
check lowport_removed "back on 1502: install.sh removed the drop-in; CapEff $(sed -n 's/^CapEff:\t//p' "/proc/$pid/status")" \
    bash -c "[ ! -e /etc/systemd/system/evse-gateway.service.d/low-port.conf ] && grep -q '^CapEff:.0000000000000000' /proc/$pid/status && '$VENV/bin/evse-gateway' status --port 15502 >/dev/null"

score=$(systemd-analyze security evse-gateway --no-pager 2>/dev/null | sed -n 's/.*Overall exposure level for evse-gateway.service: \([0-9.]*\).*/\1/p')
check security "systemd-analyze security exposure $score" [ -n "$score" ]

cd "$SRC"
pid=$(main_pid)
check upgrade "./install.sh --upgrade keeps the edited config and restarts" \
    bash -c "./install.sh --upgrade && cmp -s $CONFIG /root/config.good && [ \"\$(systemctl show -P MainPID evse-gateway)\" != $pid ] && systemctl is-active -q evse-gateway"
./install.sh --uninstall
check uninstall "--uninstall removes the unit and the code, keeps config and state" \
    bash -c "[ ! -e /etc/systemd/system/evse-gateway.service ] && [ ! -e /opt/evse-gateway ] && [ -f $CONFIG ] && ! systemctl is-active -q evse-gateway"
./install.sh --uninstall --purge
check purge "--purge leaves no config, state, user or unit" \
    bash -c "[ ! -e /etc/evse-gateway ] && [ ! -e /var/lib/evse-gateway ] && ! getent passwd evse-gateway && [ -z \"\$(find /etc/systemd -name 'evse-gateway*')\" ]"
echo "VMDONE"
