#!/usr/bin/env bash
# The VM harness of tests/test_vm_*.py (issue #18): a Debian bookworm root built with
# debootstrap (cached by a content key of what goes in), booted under qemu with systemd as
# PID 1; the project and its wheels arrive on a second disk and tests/vm/guest.sh runs the
# installer and the checks there, printing "VMCHECK <name> PASS|FAIL <detail>" lines on the
# serial console for pytest to read.
#
#   tests/vm/vm.sh run OUT_DIR     boot once with this checkout; the console log is OUT_DIR/console.log
#   tests/vm/vm.sh base            only build (or find) the cached root
#
# Needs root (debootstrap), qemu-system-x86, debootstrap and e2fsprogs (./dev.sh installs them).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PROJECT=$(cd "$HERE/../.." && pwd)
CACHE=${EVSE_VM_CACHE:-/var/cache/evse-gateway-vm}
ARCH=amd64
MIRROR=http://deb.debian.org/debian
# The guest gets what install.sh needs offline (python3-venv) and what the Pi has
# (systemd, udev); the kernel and its initramfs boot the image.
PACKAGES=systemd,systemd-sysv,dbus,udev,kmod,procps,linux-image-cloud-amd64,python3,python3-venv,ca-certificates

die() { echo "vm.sh: $*" >&2; exit 1; }

need() {
    [ "$(id -u)" -eq 0 ] || die "needs root (debootstrap and the image build); run the VM tests as root"
    local tool
    for tool in debootstrap qemu-system-x86_64 qemu-img mkfs.ext4; do
        command -v "$tool" >/dev/null || die "$tool is missing: install qemu-system-x86 qemu-utils debootstrap e2fsprogs (./dev.sh test does)"
    done
}

base_key() {  # the content key: everything that decides what the cached root holds
    { echo "$ARCH $MIRROR $PACKAGES"; declare -f build_base; } | sha256sum | cut -c1-16
}

build_base() {  # prints the directory holding base.qcow2, vmlinuz, initrd.img
    local dir=$CACHE/$ARCH-$(base_key)
    if [ -f "$dir/done" ]; then echo "$dir"; return; fi
    rm -rf "$dir"; mkdir -p "$dir"
    local root=$dir/root start=$SECONDS
    debootstrap --variant=minbase --include="$PACKAGES" bookworm "$root" "$MIRROR" >"$dir/debootstrap.log" 2>&1 ||
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
TTYPath=/dev/ttyS0
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
    local dir=$CACHE/wheels-$( (cat "$PROJECT/pyproject.toml"; echo "$ARCH") | sha256sum | cut -c1-16)
    if [ ! -f "$dir/done" ]; then
        rm -rf "$dir"; mkdir -p "$dir"
        local py=${PYTHON:-python3} deps
        mapfile -t deps < <("$py" -c 'import sys, tomllib; print("\n".join(tomllib.load(open(sys.argv[1], "rb"))["project"]["dependencies"]))' "$PROJECT/pyproject.toml")
        # setuptools: pip's build isolation in the guest needs the build backend as a wheel.
        "$py" -m pip download -q --dest "$dir" --only-binary=:all: --implementation cp \
            --python-version 3.11 --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
            "setuptools>=68" wheel "${deps[@]}" >&2 || die "pip download of the wheels failed"
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
    base=$(build_base)
    wheeldir=$(wheels)
    local payload=$out/payload
    rm -rf "$payload"; mkdir -p "$payload/src" "$payload/wheels"
    tar -C "$PROJECT" --exclude=.venv --exclude=.git --exclude=__pycache__ --exclude='*.egg-info' \
        -cf - . | tar -C "$payload/src" -xf -
    cp "$wheeldir"/*.whl "$payload/wheels/"
    cp "$HERE/guest.sh" "$payload/guest.sh"
    rm -f "$out/payload.img" "$out/disk.qcow2"
    mkfs.ext4 -q -d "$payload" "$out/payload.img" 512M
    qemu-img create -q -f qcow2 -F qcow2 -b "$base/base.qcow2" "$out/disk.qcow2"
    timeout "${EVSE_VM_TIMEOUT:-1500}" qemu-system-x86_64 -accel "$(accel)" -m 1024 -smp 2 \
        -nographic -no-reboot -nic none \
        -kernel "$base/vmlinuz" -initrd "$base/initrd.img" \
        -append "root=/dev/vda rw console=ttyS0 panic=-1 systemd.show_status=false systemd.mask=serial-getty@ttyS0.service" \
        -drive "file=$out/disk.qcow2,if=virtio,format=qcow2" \
        -drive "file=$out/payload.img,if=virtio,format=raw" \
        -serial "file:$out/console.log" -monitor none -display none \
        </dev/null >"$out/qemu.log" 2>&1 || die "qemu failed or timed out (exit $?): see $out/qemu.log and $out/console.log"
}

need
case "${1:-}" in
    base) build_base ;;
    run) shift; run "$@" ;;
    *) echo "usage: tests/vm/vm.sh run OUT_DIR | base" >&2; exit 2 ;;
esac
