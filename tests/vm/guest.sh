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
install -D -m 0640 config/demo.toml "$CONFIG"
check install "./install.sh as the README says" ./install.sh
check started "systemctl is-active after the install (Type=notify: active only after READY=1)" active
"$VENV/bin/python" /payload/src/tests/vm/site.py >/root/site.log 2>&1 &
check site "the simulated site's chargers connect to the service" \
    wait_for 120 grep -q "chargers connected" /root/site.log
check journal_priority "journal lines of the service carry syslog priorities (info and warning or error)" \
    wait_for 30 bash -c 'journalctl -u evse-gateway -p info -o cat | grep -q . && [ "$(journalctl -u evse-gateway -p 7 -o json | grep -c "\"PRIORITY\"")" -gt 0 ]'
journalctl -u evse-gateway --no-pager -o short-monotonic | tail -20
systemctl status evse-gateway --no-pager | head -15
echo "VMDONE"
