#!/bin/bash
# test-maint.sh TESTDIR   (a dir left by test-boot.sh: disk.qcow2 + key)
# Boots the already-provisioned overlay under BIOS, runs the Debian grub tooling
# the way a kernel/grub upgrade would (update-grub, grub-install i386-pc,
# dpkg-reconfigure grub-efi-amd64 => removable-path EFI install), then checks
# that the disk still boots under BIOS and under UEFI (OVMF, fresh VARS).
set -euo pipefail
T=$(cd "${1:?testdir}" && pwd)
NICE=${NICE:-nice -n 15}
boot() { # $1 = bios|uefi ; sets QPID PORT
    PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    local fw=()
    if [[ $1 = uefi ]]; then
        cp /usr/share/OVMF/OVMF_VARS_4M.fd "$T/vars2.fd"
        fw=(-drive if=pflash,format=raw,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd -drive if=pflash,format=raw,file="$T/vars2.fd")
    fi
    timeout 900 $NICE qemu-system-x86_64 -accel tcg -m 1024 -smp 2 -nographic -monitor none \
        -serial file:"$T/serial-maint-$1.log" "${fw[@]}" \
        -drive file="$T/disk.qcow2",if=virtio,format=qcow2 \
        -drive file="$T/seed.iso",if=virtio,format=raw,readonly=on \
        -netdev user,id=n0,hostfwd=tcp:127.0.0.1:$PORT-:22 -device virtio-net-pci,netdev=n0 \
        </dev/null >"$T/qemu-maint.out" 2>&1 &
    QPID=$!
    t0=$(date +%s)
    SSH=(ssh -i "$T/key" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR
         -o ConnectTimeout=5 -o BatchMode=yes -p "$PORT" kiln@127.0.0.1)
    until timeout 20 "${SSH[@]}" true 2>/dev/null; do
        (( $(date +%s) - t0 < 420 )) && kill -0 $QPID 2>/dev/null || { echo "$1: no ssh"; return 1; }
        sleep 3
    done
    echo "$1: ssh after $(( $(date +%s) - t0 ))s"
}
stop() {
    timeout 60 "${SSH[@]}" 'sudo systemctl poweroff' || true
    for i in $(seq 60); do kill -0 $QPID 2>/dev/null || break; sleep 1; done
    kill $QPID 2>/dev/null || true; sleep 1; kill -9 $QPID 2>/dev/null || true
}
QPID=; trap '[[ -n $QPID ]] && { kill $QPID 2>/dev/null; sleep 1; kill -9 $QPID 2>/dev/null; }; true' EXIT
exec > >(tee "$T/maint.txt") 2>&1
boot bios
timeout 600 "${SSH[@]}" 'set -ex
  sudo update-grub 2>&1 | tail -n 3
  grep -E "^\s*linux\s" /boot/grub/grub.cfg | head -n 2
  sudo grub-install --target=i386-pc /dev/vda
  sudo DEBIAN_FRONTEND=noninteractive dpkg-reconfigure grub-efi-amd64 2>&1 | tail -n 5
  sudo find /boot/efi -type f' 2>&1
stop
boot bios
"${SSH[@]}" 'cat /proc/cmdline; uptime'
stop
boot uefi
"${SSH[@]}" 'cat /proc/cmdline; ls /sys/firmware/efi >/dev/null && echo EFI-BOOTED; sudo efibootmgr | head -n 3'
stop
