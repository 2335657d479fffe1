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
check journal_priority "journal lines of the service carry syslog priorities (info and warning or error)" \
    wait_for 30 bash -c 'journalctl -u evse-gateway -p info -o cat | grep -q . && [ "$(journalctl -u evse-gateway -p 7 -o json | grep -c "\"PRIORITY\"")" -gt 0 ]'

journalctl -u evse-gateway --no-pager -o short-monotonic | tail -8

# SIGHUP (ExecReload) applies a charger change without a restart.
pid=$(main_pid)
sed -i '0,/^max_a = 16/s//max_a = 10/' "$CONFIG"
systemctl reload evse-gateway
check reload "systemctl reload applies a charger's max_a, same process" \
    wait_for 30 bash -c "journalctl -u evse-gateway -o cat | grep -q 'reload: charger settings applied' && [ \"\$(systemctl show -P MainPID evse-gateway)\" = $pid ]"

restarted() { [ "$(main_pid)" != "$1" ] && [ "$(main_pid)" != 0 ] && active; }
pid=$(main_pid); t0=$SECONDS
kill -9 "$pid"
wait_for 40 restarted "$pid"
check kill9 "kill -9 -> a new main process, active again after $((SECONDS - t0)) s (RestartSec=5)" restarted "$pid"

pid=$(main_pid); t0=$SECONDS
kill -STOP "$pid"
wait_for 90 restarted "$pid"
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
