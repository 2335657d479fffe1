#!/usr/bin/env bash
# The README's two commands:  ./dev.sh demo  |  ./dev.sh test
# Both make a virtual environment in .venv (installing python3-venv with apt if this
# Debian/Raspberry Pi OS machine lacks it), install the project into it, and run.
set -euo pipefail
cd "$(dirname "$0")"

need_python() {
    if ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
        echo "evse-gateway needs Python >= 3.11 (Raspberry Pi OS / Debian bookworm has 3.11)" >&2
        exit 1
    fi
    if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
        sudo_cmd=""; [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
        $sudo_cmd apt-get update -qq && $sudo_cmd apt-get install -y -qq python3-venv
    fi
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
        # Until the simulated-site demo lands: one allocation on the bundled example.
        exec .venv/bin/evse-gateway allocate examples/snapshot.json
        ;;
    test)
        shift
        venv_with ".[test]"
        .venv/bin/ruff check .
        exec .venv/bin/python -m pytest "$@"
        ;;
    *)
        echo "usage: ./dev.sh demo [--duration S] | ./dev.sh test [pytest args]" >&2
        exit 2
        ;;
esac
