#!/usr/bin/env bash
# The VM harness of tests/test_vm_x86.py and tests/vm/check_arm64.py (issue #18): a Debian
# bookworm root built with debootstrap (cached by a content key of what goes in), booted
# under qemu with systemd as PID 1; the project and its wheels arrive on a second disk and
# tests/vm/guest.sh runs the installer and the checks there, printing "VMCHECK <name>
# PASS|FAIL <detail>" lines on the serial console for pytest to read.
#
#   tests/vm/vm.sh run OUT_DIR [ARCH]   boot once with this checkout; the console log is OUT_DIR/console.log
#   tests/vm/vm.sh base [ARCH]          only build (or find) the cached root
#
# ARCH is amd64 (default: the full check set, tests/test_vm_x86.py) or arm64 (the Pi's
# processor, emulated: the short set, tests/vm/check_arm64.py from ./dev.sh test-arm64);
# guest.sh reads which set from /payload/set.
# Needs root (debootstrap), qemu-system-x86 (and qemu-system-arm, qemu-user-static for
# arm64), debootstrap and e2fsprogs (./dev.sh installs them).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PROJECT=$(cd "$HERE/../.." && pwd)
CACHE=${EVSE_VM_CACHE:-/var/cache/evse-gateway-vm}
MIRROR=http://deb.debian.org/debian
# The host's Python with the project's dependencies (the test's venv): it serves the RTU
# meter on the guest's second serial port and downloads the guest's wheels.
PY=${PYTHON:-python3}

arch_settings() {  # $1: amd64 | arm64. Both run under TCG with the same memory and cores.
    ARCH=$1
    case "$ARCH" in
        amd64)
            QEMU=(qemu-system-x86_64)
            CONSOLE=ttyS0 WHEEL_ARCH=x86_64 CHECK_SET=full ;;
        arm64)
            # -M virt: qemu's generic arm64 board; cortex-a72 is the Raspberry Pi 4's core.
            QEMU=(qemu-system-aarch64 -M virt -cpu cortex-a72)
            CONSOLE=ttyAMA0 WHEEL_ARCH=aarch64 CHECK_SET=short ;;
        *) die "unknown architecture '$ARCH' (amd64 or arm64)" ;;
    esac
    # The guest gets what install.sh needs offline (python3-venv) and what the Pi has
    # (systemd, udev); the kernel and its initramfs boot the image.
    PACKAGES=systemd,systemd-sysv,dbus,udev,kmod,procps,linux-image-cloud-$ARCH,python3,python3-venv,ca-certificates
}

die() { echo "vm.sh: $*" >&2; exit 1; }

need() {
    [ "$(id -u)" -eq 0 ] || die "needs root (debootstrap and the image build); run the VM tests as root"
    local tool
    for tool in debootstrap "${QEMU[0]}" qemu-img mkfs.ext4; do
        command -v "$tool" >/dev/null || die "$tool is missing: install qemu-system-x86 qemu-system-arm qemu-user-static qemu-utils debootstrap e2fsprogs (./dev.sh test does)"
    done
    [ "$ARCH" = amd64 ] || foreign_binaries
}

foreign_binaries() {  # debootstrap's second stage runs arm64 programs through qemu-user
    local reg=/proc/sys/fs/binfmt_misc conf=/usr/lib/binfmt.d/qemu-aarch64.conf
    [ -f "$conf" ] || die "$conf is missing: install qemu-user-static (./dev.sh test does)"
    [ -e "$reg/register" ] || mount -t binfmt_misc binfmt_misc "$reg" 2>/dev/null ||
        die "cannot mount $reg (binfmt_misc), which runs arm64 programs on this machine"
    # F (in the conf's flags): the kernel opens the interpreter now, so it works in the chroot.
    [ -e "$reg/qemu-aarch64" ] || grep -v '^#' "$conf" >"$reg/register" ||
        die "cannot register qemu-aarch64 with binfmt_misc"
}

base_key() {  # the content key: everything that decides what the cached root holds
    { echo "$ARCH $MIRROR $PACKAGES"; declare -f build_base; } | sha256sum | cut -c1-16
}

build_base() {  # prints the directory holding base.qcow2, vmlinuz, initrd.img
    local dir=$CACHE/$ARCH-$(base_key)
    if [ -f "$dir/done" ]; then echo "$dir"; return; fi
    rm -rf "$dir"; mkdir -p "$dir"
    local root=$dir/root start=$SECONDS
    debootstrap --arch="$ARCH" --variant=minbase --include="$PACKAGES" bookworm "$root" "$MIRROR" >"$dir/debootstrap.log" 2>&1 ||
        die "debootstrap failed: see $dir/debootstrap.log"
    echo "evse-vm" >"$root/etc/hostname"
    printf '127.0.0.1 localhost\n127.0.1.1 evse-vm\n::1 localhost\n' >"$root/etc/hosts"
    printf '/dev/vda / ext4 defaults 0 1\n' >"$root/etc/fstab"
    : >"$root/etc/machine-id"
    # The payload disk (tests/vm/guest.sh and the project) runs once the system is up; its
    # output goes to the serial console, and the guest powers off when it is done.
    cat >"$root/etc/systemd/system/vm-payload.service" <<'UNIT'
[Unit]
Description=evse-gateway VM checks from the payload disk
After=multi-user.target
[Service]
Type=oneshot
ExecStartPre=/bin/mkdir -p /payload
ExecStartPre=/bin/mount -o ro /dev/vdb /payload
ExecStart=/bin/bash /payload/guest.sh
StandardOutput=tty
StandardError=tty
TTYPath=/dev/console
ExecStopPost=/bin/systemctl --no-block poweroff
[Install]
WantedBy=multi-user.target
UNIT
    ln -sf /etc/systemd/system/vm-payload.service "$root/etc/systemd/system/multi-user.target.wants/vm-payload.service"
    cp -L "$root/vmlinuz" "$dir/vmlinuz"
    cp -L "$root/initrd.img" "$dir/initrd.img"
    rm -rf "$root/var/cache/apt/archives/"*.deb
    mkfs.ext4 -q -L evse-root -d "$root" "$dir/base.raw" 2G
    qemu-img convert -O qcow2 "$dir/base.raw" "$dir/base.qcow2"
    rm -rf "$root" "$dir/base.raw"
    echo "$((SECONDS - start))" >"$dir/build-seconds"
    touch "$dir/done"
    echo "$dir"
}

wheels() {  # the project's dependencies as wheels for the guest's Python 3.11 (cached)
    # The pure tests' runner (tests/vm/guest.sh runs them on the guest's Python).
    local runner=("pytest>=8" "pytest-timeout>=2.3" "hypothesis>=6.100")
    local dir=$CACHE/wheels-$( (cat "$PROJECT/pyproject.toml"; echo "$ARCH ${runner[*]}") | sha256sum | cut -c1-16)
    if [ ! -f "$dir/done" ]; then
        rm -rf "$dir"; mkdir -p "$dir"
        local deps
        mapfile -t deps < <("$PY" -c 'import sys, tomllib; print("\n".join(tomllib.load(open(sys.argv[1], "rb"))["project"]["dependencies"]))' "$PROJECT/pyproject.toml")
        # setuptools: pip's build isolation in the guest needs the build backend as a wheel.
        "$PY" -m pip download -q --dest "$dir" --only-binary=:all: --implementation cp \
            --python-version 3.11 --platform "manylinux2014_$WHEEL_ARCH" --platform "manylinux_2_17_$WHEEL_ARCH" \
            "setuptools>=68" wheel "${deps[@]}" "${runner[@]}" >&2 || die "pip download of the wheels failed"
        touch "$dir/done"
    fi
    echo "$dir"
}

accel() {  # KVM only where it demonstrably boots; the issue saw a guest hang under it
    echo "tcg"
}

run() {
    local out=${1:?run needs an output directory}
    mkdir -p "$out"; out=$(cd "$out" && pwd)
    local base wheeldir
    # The last line: a cold build's mkfs.ext4 says "Creating regular file" on stdout too.
    base=$(build_base | tail -1)
    wheeldir=$(wheels)
    local payload=$out/payload
    rm -rf "$payload"; mkdir -p "$payload/src" "$payload/wheels"
    tar -C "$PROJECT" --exclude=.venv --exclude=.git --exclude=__pycache__ --exclude='*.egg-info' \
        -cf - . | tar -C "$payload/src" -xf -
    cp "$wheeldir"/*.whl "$payload/wheels/"
    cp "$HERE/guest.sh" "$payload/guest.sh"
    echo "$CHECK_SET" >"$payload/set"
    rm -f "$out/payload.img" "$out/disk.qcow2"
    mkfs.ext4 -q -d "$payload" "$out/payload.img" 512M
    qemu-img create -q -f qcow2 -F qcow2 -b "$base/base.qcow2" "$out/disk.qcow2"
    # The second serial port (the guest's ttyS1) is a pty here, where rtu_meter.py serves
    # an SDM630 on it: the RS485 adapter of a Pi.
    timeout "${EVSE_VM_TIMEOUT:-1500}" "${QEMU[@]}" -accel "$(accel)" -m 1024 -smp 2 \
        -nographic -no-reboot -nic none \
        -kernel "$base/vmlinuz" -initrd "$base/initrd.img" \
        -append "root=/dev/vda rw console=$CONSOLE panic=-1 systemd.show_status=false systemd.mask=serial-getty@$CONSOLE.service" \
        -drive "file=$out/disk.qcow2,if=virtio,format=qcow2" \
        -drive "file=$out/payload.img,if=virtio,format=raw" \
        -serial "file:$out/console.log" -serial pty -monitor none -display none \
        </dev/null >"$out/qemu.log" 2>&1 &
    local qemu=$! meter="" pty="" rc=0
    local deadline=$((SECONDS + 30))
    until pty=$(sed -n 's|.*char device redirected to \(/dev/pts/[0-9]*\) (label serial1).*|\1|p' "$out/qemu.log") && [ -n "$pty" ]; do
        kill -0 "$qemu" 2>/dev/null && [ $SECONDS -lt $deadline ] || break
        sleep 0.2
    done
    if [ -n "$pty" ]; then
        PYTHONPATH=$PROJECT "$PY" "$HERE/rtu_meter.py" "$pty" >"$out/rtu_meter.log" 2>&1 &
        meter=$!
    fi
    wait "$qemu" || rc=$?
    [ -n "$meter" ] && kill "$meter" 2>/dev/null
    [ -n "$pty" ] || die "qemu gave no pty for the second serial port: see $out/qemu.log"
    [ "$rc" = 0 ] || die "qemu failed or timed out (exit $rc): see $out/qemu.log and $out/console.log"
}

case "${1:-}" in
    base) arch_settings "${2:-amd64}"; need; build_base ;;
    run) arch_settings "${3:-amd64}"; need; run "${2:-}" ;;
    *) echo "usage: tests/vm/vm.sh run OUT_DIR [amd64|arm64] | base [amd64|arm64]" >&2; exit 2 ;;
esac
