#!/usr/bin/env bash
# Install, upgrade or remove evse-gateway on Raspberry Pi OS / Debian (bookworm or newer).
# Idempotent: running it again changes nothing unless the source or the config changed.
# See docs/install.md; `./install.sh --help` for the options.
set -euo pipefail
# The service user must be able to read the venv whatever umask sudo came with.
umask 022
# The installed code, not whatever a caller's PYTHONPATH points at, must answer check-config.
unset PYTHONPATH PYTHONHOME

NAME=evse-gateway
SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
APT_PACKAGES=(python3 python3-venv ca-certificates)

usage() {
    cat <<EOF
usage: sudo ./install.sh [--upgrade | --uninstall [--purge]] [options]

  (no action)        install, or bring an existing install in line with this source tree
  --upgrade          replace the code with this source tree; config and state are kept;
                     the service restarts only if the config passes check-config
  --uninstall        stop and remove the service and the code; keep config and state
  --purge            with --uninstall: also remove /etc/$NAME, /var/lib/$NAME and the user

options:
  --python PY        interpreter for the virtual environment (default: python3, >= 3.11)
  --root DIR         install under DIR instead of / (DESTDIR-style staging and tests; also
                     read from \$DESTDIR). Implies --no-apt and --no-user, and only runs the
                     offline 'systemctl --root' enable/disable: nothing is started.
  --no-apt           do not install OS packages (python3-venv, ...) with apt
  --no-user          do not create the '$NAME' system user or chown files to it
  --no-systemctl     do not call systemctl at all (the decisions are still printed)
  --system-site-packages
                     let the venv see the OS's Python packages (e.g. Debian's
                     python3-setuptools and python3-wheel, to build without the network)
  --pip-args ARGS    extra arguments for 'pip install', e.g. for an offline build:
                     "--no-index --no-build-isolation --no-deps"
  -h, --help         this text

Files: /opt/$NAME (venv, docs), /etc/$NAME/config.toml (0640, never overwritten),
/var/lib/$NAME (state), /etc/systemd/system/$NAME.service (+ .d/low-port.conf when the
config listens on a port below 1024, e.g. Modbus TCP 502).
EOF
}

say() { echo "$NAME: $*"; }
die() { echo "$NAME: error: $1" >&2; exit "${2:-1}"; }

action=install
purge=0
root=${DESTDIR:-}
python=python3
use_apt=1
use_user=1
use_systemctl=1
venv_args=()
pip_args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --upgrade) action=upgrade ;;
        --uninstall) action=uninstall ;;
        --purge) purge=1 ;;
        --python) python=${2:?--python needs an interpreter}; shift ;;
        --root) root=${2:?--root needs a directory}; shift ;;
        --no-apt) use_apt=0 ;;
        --no-user) use_user=0 ;;
        --no-systemctl) use_systemctl=0 ;;
        --system-site-packages) venv_args+=(--system-site-packages) ;;
        --pip-args) read -r -a more <<<"${2?--pip-args needs arguments}"; pip_args+=("${more[@]}"); shift ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown option: $1" 2 ;;
    esac
    shift
done
[ "$purge" = 1 ] && [ "$action" != uninstall ] && die "--purge goes with --uninstall" 2

if [ -n "$root" ]; then
    mkdir -p "$root"
    root=$(cd "$root" && pwd)
    use_apt=0
    use_user=0
    systemctl_root=(--root="$root")
else
    systemctl_root=()
    [ "$(id -u)" -eq 0 ] || die "run as root: sudo $0 (or --root DIR to stage an install)"
fi

OPT=$root/opt/$NAME
VENV=$OPT/venv
STAMP=$OPT/installed-source.sha256
ETC=$root/etc/$NAME
CONFIG=$ETC/config.toml
STATE=$root/var/lib/$NAME
UNIT=$root/etc/systemd/system/$NAME.service
DROPIN=$UNIT.d/low-port.conf
# What the service sees: the paths without the staging root.
LIVE_CONFIG=/etc/$NAME/config.toml

staged="" # the source copy pip builds from (removed on exit)
changed=0 # the code, the unit or its drop-in changed: a running service needs a restart

run_systemctl() { # offline-capable verbs get --root; the rest only act on a live system
    [ "$use_systemctl" = 1 ] || return 0
    command -v systemctl >/dev/null || die "systemctl not found: is this a systemd system?"
    systemctl --quiet "${systemctl_root[@]}" "$@"
}

live_systemctl() { # start/stop/restart/daemon-reload: never on a staged root
    if [ "$use_systemctl" = 1 ] && [ -z "$root" ]; then
        systemctl --quiet "$@"
    fi
}

# --- checks -------------------------------------------------------------------------------

check_os() {
    [ "$use_apt" = 1 ] || return 0
    local id="" id_like=""
    # In subshells: os-release sets NAME, which would replace ours (the user and unit name).
    if [ -r /etc/os-release ]; then
        # shellcheck disable=SC1091
        id=$(. /etc/os-release && echo "${ID:-}") && id_like=$(. /etc/os-release && echo "${ID_LIKE:-}")
    fi
    case " $id $id_like " in
        *" debian "* | *" raspbian "*) ;;
        *) die "this installer supports Raspberry Pi OS / Debian (bookworm or newer); found '${id:-unknown}'.
  On another distribution install Python >= 3.11 with its venv module yourself and rerun with --no-apt." ;;
    esac
}

check_python() { # the version first: no apt package fixes an old Python
    if ! command -v "$python" >/dev/null; then
        [ "$use_apt" = 1 ] && [ "$python" = python3 ] && return 0 # apt installs python3
        die "Python interpreter '$python' not found (install python3, or pass --python)"
    fi
    local version
    version=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
        die "$NAME needs Python >= 3.11, '$python' is $version. Raspberry Pi OS bookworm (Debian 12) ships 3.11; older releases (bullseye: 3.9) need an OS upgrade."
}

check_venv_module() {
    check_python
    "$python" -c 'import ensurepip, venv' 2>/dev/null ||
        die "'$python' has no venv/ensurepip module: install python3-venv (apt-get install python3-venv) or drop --no-apt"
}

# --- steps --------------------------------------------------------------------------------

apt_packages() {
    [ "$use_apt" = 1 ] || return 0
    local missing=() pkg
    for pkg in "${APT_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    say "installing OS packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

system_user() {
    [ "$use_user" = 1 ] || return 0
    if ! getent passwd "$NAME" >/dev/null; then
        say "creating system user $NAME"
        useradd --system --user-group --home-dir "/var/lib/$NAME" --no-create-home \
            --shell /usr/sbin/nologin --comment "$NAME daemon" "$NAME"
    fi
    # RS485 adapters (/dev/ttyUSB*, /dev/ttyAMA*) belong to dialout.
    if ! id -nG "$NAME" | tr ' ' '\n' | grep -qx dialout; then
        say "adding $NAME to group dialout"
        usermod -a -G dialout "$NAME"
    fi
}

owned_by_service() { # chgrp/chown only when we manage the user
    [ "$use_user" = 1 ] || return 0
    chown "$@"
}

source_hash() { # what the installed code was built from: the package and its metadata
    (cd "$SRC" && find pyproject.toml README.md gateway -type f ! -name '*.pyc' \
        ! -path '*/__pycache__/*' -print0 | LC_ALL=C sort -z | xargs -0 sha256sum) |
        sha256sum | cut -d' ' -f1
}

stage_source() { # pip builds in the tree it is given: build in a copy, not the checkout
    local dir
    dir=$(mktemp -d)
    tar -C "$SRC" --exclude=__pycache__ -cf - pyproject.toml README.md gateway | tar -C "$dir" -xf -
    echo "$dir"
}

preflight_config() { # the new code must accept the existing config before anything changes
    [ -f "$CONFIG" ] && [ -x "$VENV/bin/python" ] || return 0
    PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=$staged "$VENV/bin/python" -m gateway check-config "$CONFIG" >/dev/null ||
        refuse "the new code rejects $LIVE_CONFIG (above); nothing was changed"
}

refuse() {
    echo "$NAME: error: $1" >&2
    echo "$NAME: not (re)starting $NAME. Fix the config, check it with" >&2
    echo "    /opt/$NAME/venv/bin/$NAME check-config $LIVE_CONFIG" >&2
    echo "  and run this installer again." >&2
    exit 2
}

install_code() {
    local want have=""
    want=$(source_hash)
    [ -f "$STAMP" ] && have=$(cat "$STAMP")
    if [ -x "$VENV/bin/python" ] && ! "$VENV/bin/python" -c '' 2>/dev/null; then
        # The interpreter under the venv went away (an OS upgrade changed Python): rebuild it.
        say "the virtual environment's Python is gone; rebuilding $VENV"
        rm -rf "$VENV"
    fi
    if [ ! -x "$VENV/bin/python" ]; then
        say "creating virtual environment $VENV"
        mkdir -p "$OPT"
        "$python" -m venv "${venv_args[@]}" "$VENV"
        have=""
    fi
    # A rerun leaves matching code alone; --upgrade always reinstalls (and so restarts).
    [ "$want" = "$have" ] && [ "$action" != upgrade ] && return 0
    staged=$(stage_source)
    trap 'rm -rf "$staged"' EXIT
    preflight_config
    say "installing the code from $SRC"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
        "${pip_args[@]}" "$staged"
    echo "$want" >"$STAMP"
    changed=1
}

install_file() { # install_file MODE SRC DEST: copy only if the content differs
    local mode=$1 from=$2 to=$3
    if cmp -s "$from" "$to"; then
        chmod "$mode" "$to"
        return 1
    fi
    install -D -m "$mode" "$from" "$to"
}

install_docs() {
    [ -f "$SRC/docs/install.md" ] || return 0
    install_file 0644 "$SRC/docs/install.md" "$OPT/docs/install.md" || true
}

install_config() {
    [ -f "$SRC/config/example.toml" ] || die "config/example.toml is missing from $SRC"
    install -d -m 0750 "$ETC"
    owned_by_service "root:$NAME" "$ETC"
    # The current example, for comparing after upgrades; it holds no secrets.
    install_file 0644 "$SRC/config/example.toml" "$ETC/example.toml" || true
    if [ -e "$CONFIG" ]; then
        say "keeping the existing config $LIVE_CONFIG"
    else
        say "creating $LIVE_CONFIG from config/example.toml: edit it for your site"
        install -m 0640 "$SRC/config/example.toml" "$CONFIG"
    fi
    # Charger passwords live here: readable by the service, by no one else.
    chmod 0640 "$CONFIG"
    owned_by_service "root:$NAME" "$CONFIG"
}

install_state() {
    install -d -m 0750 "$STATE"
    owned_by_service "$NAME:$NAME" "$STATE"
}

check_config() {
    PYTHONDONTWRITEBYTECODE=1 "$VENV/bin/$NAME" check-config "$CONFIG" >/dev/null ||
        refuse "$LIVE_CONFIG is not valid (above)"
}

install_unit() {
    if install_file 0644 "$SRC/systemd/$NAME.service" "$UNIT"; then
        say "installed the unit $NAME.service"
        changed=1
    fi
    local wanted
    wanted=$(mktemp)
    PYTHONDONTWRITEBYTECODE=1 "$VENV/bin/python" "$SRC/systemd/low_port_dropin.py" "$CONFIG" >"$wanted"
    if [ -s "$wanted" ]; then
        if install_file 0644 "$wanted" "$DROPIN"; then
            say "allowing the config's ports below 1024: $DROPIN"
            changed=1
        fi
    elif [ -e "$DROPIN" ]; then
        say "no port below 1024 in the config any more: removing $DROPIN"
        rm -f "$DROPIN"
        rmdir --ignore-fail-on-non-empty "$UNIT.d"
        changed=1
    fi
    rm -f "$wanted"
}

start_service() {
    [ "$changed" = 1 ] && live_systemctl daemon-reload
    if [ "$use_systemctl" = 1 ] && ! run_systemctl is-enabled "$NAME.service"; then
        run_systemctl enable "$NAME.service"
        say "enabled $NAME.service"
    fi
    local verb=""
    if [ "$changed" = 1 ]; then
        verb=restart
    elif [ "$use_systemctl" = 0 ] || [ -n "$root" ] || ! systemctl --quiet is-active "$NAME.service"; then
        verb=start
    fi
    [ -n "$verb" ] || { say "$NAME is running and up to date"; return 0; }
    if [ "$use_systemctl" = 0 ] || [ -n "$root" ]; then
        say "config OK; would $verb $NAME.service (no live systemctl here)"
        return 0
    fi
    say "config OK; ${verb}ing $NAME.service"
    systemctl "$verb" "$NAME.service" ||
        die "$NAME.service failed to $verb: see 'journalctl -u $NAME -n 50'"
    say "running. Follow it with: journalctl -u $NAME -f"
}

uninstall() {
    if [ -e "$UNIT" ]; then
        live_systemctl stop "$NAME.service" || true
        run_systemctl disable "$NAME.service" || true
        rm -f "$UNIT" "$DROPIN"
        [ -d "$UNIT.d" ] && rmdir --ignore-fail-on-non-empty "$UNIT.d"
        live_systemctl daemon-reload
        say "removed $NAME.service"
    fi
    if [ -d "$OPT" ]; then
        rm -rf "$OPT"
        say "removed /opt/$NAME"
    fi
    if [ "$purge" = 1 ]; then
        rm -rf "$ETC" "$STATE"
        say "removed /etc/$NAME and /var/lib/$NAME"
        if [ "$use_user" = 1 ] && getent passwd "$NAME" >/dev/null; then
            userdel "$NAME"
            say "removed user $NAME"
        fi
    elif [ -d "$ETC" ] || [ -d "$STATE" ]; then
        say "kept /etc/$NAME and /var/lib/$NAME (--uninstall --purge removes them)"
    fi
}

if [ "$action" = uninstall ]; then
    uninstall
    exit 0
fi
[ "$action" = upgrade ] && [ ! -f "$STAMP" ] && die "nothing to upgrade under ${root:-/}opt/$NAME: run without --upgrade first"
check_os
check_python
apt_packages
check_venv_module
system_user
install_code
install_docs
install_config
install_state
check_config
install_unit
start_service
