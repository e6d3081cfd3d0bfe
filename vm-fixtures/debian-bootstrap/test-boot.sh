#!/bin/bash
# test-boot.sh BASE.qcow2 bios|uefi TESTDIR [GROW]
# Boots an overlay of BASE under TCG with a NoCloud seed, waits for SSH,
# runs checks, powers off. GROW (default +2G) is applied to the overlay first.
# Writes TESTDIR/serial.log, TESTDIR/result.txt, TESTDIR/timings.txt.
set -euo pipefail
BASE=$(realpath "${1:?base qcow2}")
FW=${2:?bios|uefi}
T=${3:?testdir}
GROW=${4:-+2G}
BOOT_TIMEOUT=${BOOT_TIMEOUT:-600}
NICE=${NICE:-nice -n 15}
rm -rf "$T"; mkdir -p "$T"; T=$(cd "$T" && pwd)

ssh-keygen -q -t ed25519 -N '' -f "$T/key" -C kiln-test
cat > "$T/meta-data" <<EOF
instance-id: iid-kiln-$(date +%s)-$RANDOM
local-hostname: kiln-$FW
EOF
cat > "$T/user-data" <<EOF
#cloud-config
users:
  - name: kiln
    sudo: ALL=(ALL) NOPASSWD:ALL
    shell: /bin/bash
    lock_passwd: true
    ssh_authorized_keys:
      - $(cat "$T/key.pub")
EOF
genisoimage -quiet -output "$T/seed.iso" -volid cidata -joliet -rock "$T/user-data" "$T/meta-data"

qemu-img create -q -f qcow2 -F qcow2 -b "$BASE" "$T/disk.qcow2"
[[ -n $GROW ]] && qemu-img resize -q "$T/disk.qcow2" "$GROW"

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
FWARGS=()
if [[ $FW = uefi ]]; then
    cp /usr/share/OVMF/OVMF_VARS_4M.fd "$T/vars.fd"
    FWARGS=(-drive if=pflash,format=raw,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd
            -drive if=pflash,format=raw,file="$T/vars.fd")
fi

t0=$(date +%s.%N)
el() { awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}'; }
timeout $((BOOT_TIMEOUT + 300)) $NICE qemu-system-x86_64 -accel tcg -m 1024 -smp 2 -nographic \
    -monitor none -serial file:"$T/serial.log" \
    "${FWARGS[@]}" \
    -drive file="$T/disk.qcow2",if=virtio,format=qcow2 \
    -drive file="$T/seed.iso",if=virtio,format=raw,readonly=on \
    -netdev user,id=n0,hostfwd=tcp:127.0.0.1:$PORT-:22 -device virtio-net-pci,netdev=n0 \
    </dev/null >"$T/qemu.out" 2>&1 &
QPID=$!
cleanup() { kill "$QPID" 2>/dev/null && sleep 2; kill -9 "$QPID" 2>/dev/null || true; }
trap cleanup EXIT

SSH=(ssh -i "$T/key" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR
     -o ConnectTimeout=5 -o BatchMode=yes -p "$PORT" kiln@127.0.0.1)
ok=0
while (( $(date +%s) - ${t0%.*} < BOOT_TIMEOUT )); do
    kill -0 "$QPID" 2>/dev/null || { echo "qemu exited"; break; }
    if timeout 20 "${SSH[@]}" true 2>/dev/null; then ok=1; break; fi
    sleep 3
done
exec > >(tee "$T/result.txt") 2>&1
echo "firmware=$FW"
if [[ $ok != 1 ]]; then echo "ssh=FAILED after $(el)s"; tail -n 30 "$T/serial.log"; exit 1; fi
echo "boot_to_ssh=$(el)s"
timeout 600 "${SSH[@]}" 'cloud-init status --wait; uname -r; df -h /'
echo "cloud_init_done=$(el)s"
timeout 120 "${SSH[@]}" 'set -x; hostname; cloud-init status --long; sudo cloud-init analyze show | tail -n 3
  systemd-analyze || true; systemd-analyze blame | head -n 12; cat /proc/cmdline; findmnt -no SOURCE,UUID / ; cat /etc/fstab
  lsblk -o NAME,SIZE,FSTYPE,PARTTYPENAME,MOUNTPOINT; ls /sys/firmware/efi >/dev/null 2>&1 && echo EFI-BOOTED || echo BIOS-BOOTED
  sudo efibootmgr -v 2>&1 || true; sudo find /boot/efi -type f 2>&1
  lsinitramfs /boot/initrd.img-$(uname -r) | grep -E "/(virtio_blk|virtio_net|virtio_pci|virtio_scsi|nvme|ena|xen-blkfront)\.ko"
  cat /etc/machine-id; ls /etc/ssh/ssh_host_*key.pub; cat /etc/network/interfaces.d/* 2>/dev/null | head -n 20
  ip -br addr; grep -E "growpart|resize" /var/log/cloud-init.log | tail -n 4
  sudo cloud-init analyze blame | head -n 8; systemctl --failed --no-legend
  stat -c "%U:%G %a %n" /usr/bin/sudo /var/mail /var/log/journal /etc/shadow /var/cache/man; /usr/sbin/getcap /usr/bin/ping
  cat /etc/hosts; locale 2>&1 | head -n 2' 2>&1
echo "checks_done=$(el)s"
timeout 60 "${SSH[@]}" 'sudo systemctl poweroff' || true
for i in $(seq 60); do kill -0 "$QPID" 2>/dev/null || break; sleep 1; done
kill -0 "$QPID" 2>/dev/null && echo "qemu still running after poweroff, killing" || echo "poweroff_done=$(el)s"
