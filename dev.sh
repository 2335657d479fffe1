#!/usr/bin/env bash
# The README's two commands:  ./dev.sh demo  |  ./dev.sh test
# and ./dev.sh test-arm64: the install on an emulated arm64 VM (tests/vm/check_arm64.py,
# too slow for every CI run; docs/install.md records its last result).
# All make a virtual environment in .venv (installing python3-venv with apt if this
# Debian/Raspberry Pi OS machine lacks it), install the project into it, and run.
set -euo pipefail
cd "$(dirname "$0")"

apt_install_missing() {  # apt_install_missing PKG...: quiet, and nothing at all when present
    local missing=() pkg
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    local sudo_cmd=""; [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq
    $sudo_cmd env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

need_python() {
    if ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
        echo "evse-gateway needs Python >= 3.11 (Raspberry Pi OS / Debian bookworm has 3.11)" >&2
        exit 1
    fi
    if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
        apt_install_missing python3-venv
    fi
}

test_os_packages() {
    # tests/test_install*.py: install.sh runs with Debian's own python3 (as on the Pi) and
    # builds offline with its setuptools/wheel; systemd-analyze checks the unit file, whose
    # ExecReload needs /usr/bin/kill (procps). tests/test_web_browser.py drives Debian's
    # headless Chromium through its chromedriver. tests/test_mqtt.py starts its own mosquitto.
    apt_install_missing systemd procps python3-venv python3-setuptools python3-wheel \
        chromium chromium-driver mosquitto
    # tests/test_vm_x86.py boots a Debian VM (tests/vm/vm.sh): debootstrap builds its root,
    # mkfs.ext4 its disks, qemu runs it.
    apt_install_missing qemu-system-x86 qemu-utils debootstrap e2fsprogs
}

venv_with() {  # $1: pip extras spec, e.g. "." or ".[test]"
    need_python
    [ -x .venv/bin/python ] || python3 -m venv .venv
    .venv/bin/python -m pip install -q --upgrade pip >/dev/null
    .venv/bin/python -m pip install -q -e "$1"
}

case "${1:-}" in
    demo)
        shift
        venv_with "."
        exec .venv/bin/evse-gateway demo "$@"
        ;;
    test)
        shift
        test_os_packages
        venv_with ".[test]"
        .venv/bin/ruff check .
        exec .venv/bin/python -m pytest "$@"
        ;;
    test-arm64)
        shift
        test_os_packages
        # The arm64 root's debootstrap second stage runs through qemu-user-static.
        apt_install_missing qemu-system-arm qemu-user-static
        venv_with ".[test]"
        exec .venv/bin/python -m pytest tests/vm/check_arm64.py "$@"
        ;;
    *)
        echo "usage: ./dev.sh demo [--duration S] | ./dev.sh test [pytest args] | ./dev.sh test-arm64 [pytest args]" >&2
        exit 2
        ;;
esac
