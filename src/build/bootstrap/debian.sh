#!/bin/bash
# debian.sh OUTDIR
#
# kiln's `bootstrap` parent image: builds a bootable, cloud-init-ready Debian
# (bookworm by default) qcow2 base image (OUTDIR/base.qcow2) from Debian
# packages, WITHOUT root. kiln embeds this script (src/build/bootstrap/) and
# runs it with the knobs below; it also runs on its own: `bash debian.sh OUT`.
#   1. mmdebstrap --mode=unshare  -> rootfs directory (owned by subuids)
#   2. sfdisk on a plain file     -> GPT: BIOS boot (1M) + ESP (126M FAT32) + root (ext4)
#   3. mkfs.vfat -C + mcopy       -> ESP with only \EFI\BOOT\BOOTX64.EFI (removable path)
#   4. mke2fs -d (inside `mmdebstrap --unshare-helper`, so owners are right)
#   5. boot.img + core.img written with dd/python (what grub-bios-setup does)
#   6. qemu-img convert -c        -> OUTDIR/base.qcow2
# Needs: mmdebstrap, uidmap (newuidmap) + an /etc/subuid,/etc/subgid entry for
# the user (adduser creates it), e2fsprogs, fdisk (sfdisk), dosfstools, mtools,
# qemu-utils, python3.  Works as root too (then no user namespace is used).
# Measured procedure, timings and gotchas: vm-fixtures/debian-bootstrap/NOTES.md.
#
# Env knobs: SUITE (bookworm) DISK_SIZE (3G; truncate(1) syntax, bytes too)
#            MIRROR SECURITY_MIRROR (default: this host's apt mirrors, else deb.debian.org)
#            EXTRA_PACKAGES="pkg1,pkg2"
#            MMDEBSTRAP_LOG (OUTDIR/work/mmdebstrap.log)
#            KEEP_ROOTFS=1 (reuse OUTDIR/work/rootfs if present; for iterating)
#            KEEP_WORK=1 (keep OUTDIR/work, also on failure)
#            SLIM=1 (dpkg path-exclude docs/man/info/locales; persists in the image)
# Progress goes to stderr as `[make-base HH:MM:SS] ...` lines. On failure or
# SIGTERM/SIGINT it stops what it started and removes OUTDIR/work.
set -euo pipefail

OUT=${1:?usage: debian.sh OUTDIR}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
WORK=$OUT/work
SUITE=${SUITE:-bookworm}
DISK_SIZE=${DISK_SIZE:-3G}
NICE=${NICE:-nice -n 15}
MMDEBSTRAP_LOG=${MMDEBSTRAP_LOG:-$WORK/mmdebstrap.log}

# Mirrors: the ones this host's apt uses (deb822 .sources), else deb.debian.org.
host_uri() { # $1 = regex the URI must match
    grep -h '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' | grep -E "$1" | head -n1
}
MIRROR=${MIRROR:-$(host_uri 'debian/?$' || true)}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${SECURITY_MIRROR:-$(host_uri 'debian-security/?$' || true)}
SECURITY_MIRROR=${SECURITY_MIRROR:-http://deb.debian.org/debian-security}

PACKAGES=(
    linux-image-amd64 initramfs-tools zstd
    systemd-sysv dbus libpam-systemd systemd-timesyncd
    ifupdown isc-dhcp-client
    cloud-init cloud-guest-utils e2fsprogs fdisk dosfstools
    openssh-server sudo
    grub-efi-amd64 grub-pc-bin efibootmgr
    qemu-guest-agent ca-certificates curl
)
PKGS=$(IFS=,; echo "${PACKAGES[*]}")${EXTRA_PACKAGES:+,$EXTRA_PACKAGES}
DPKGOPTS=()
if [[ ${SLIM:-0} = 1 ]]; then
    for o in path-exclude=/usr/share/man/* path-exclude=/usr/share/info/* \
             path-exclude=/usr/share/doc/* path-include=/usr/share/doc/*/copyright \
             path-exclude=/usr/share/locale/* path-include=/usr/share/locale/locale.alias; do
        DPKGOPTS+=(--dpkgopt="$o")
    done
fi

# progress goes to the script's own stderr, also from a trap that runs while
# a command's output is redirected elsewhere (e.g. into the mmdebstrap log)
exec {ERRFD}>&2
log() { printf '[make-base %(%H:%M:%S)T] %s\n' -1 "$*" >&"$ERRFD"; }
declare -A T
tstart() { T[$1]=$(date +%s.%N); }
tend() {
    local t
    t=$(awk -v a="${T[$1]}" -v b="$(date +%s.%N)" -v n="$1" 'BEGIN{printf "%s=%.1fs", n, b-a}')
    echo "$t" >> "$OUT/timings.txt"
    log "$t"
}
: > "$OUT/timings.txt"

# run a command in a user namespace where uid 0 == our subuid base, i.e. where
# the files of the rootfs made by `mmdebstrap --mode=unshare` have their real
# owners (as root: plain execution in a private mount namespace).
nsrun() { run $NICE mmdebstrap --unshare-helper "$@"; }

# Long commands run in the background while the shell waits: a trapped signal
# interrupts `wait` at once (it would wait for a foreground command to end).
run() { "$@" & wait "$!"; }

# Failure or SIGTERM/SIGINT: stop what still runs in our process group (only
# when we lead it, as under kiln: otherwise it is our caller's group), then
# remove the work tree, whose rootfs only `--unshare-helper` can delete.
on_signal() {
    trap '' INT TERM
    log "stopped by a signal"
    if [[ $(cut -d' ' -f5 /proc/$$/stat) == "$$" ]]; then kill -TERM 0 2>/dev/null || true; fi
    wait || true
    exit 143
}
on_exit() {
    local rc=$?
    trap - EXIT
    trap '' INT TERM
    exec >&"$ERRFD" 2>&"$ERRFD"
    if [[ $rc != 0 && ${KEEP_WORK:-0} != 1 ]]; then
        log "failed (exit $rc): removing $WORK"
        rm -f "$OUT/base.qcow2.tmp"
        if [[ ${KEEP_ROOTFS:-0} = 1 ]]; then
            log "KEEP_ROOTFS=1: keeping $WORK/rootfs"
        else
            # the rootfs is owned by subuids (not by us) unless we are root
            if [[ -e $WORK/rootfs ]]; then
                $NICE mmdebstrap --unshare-helper rm -rf "$WORK/rootfs" || log "could not remove $WORK/rootfs"
            fi
            rm -rf "$WORK" || log "could not remove $WORK"
        fi
    fi
    exit "$rc"
}
trap on_exit EXIT
trap on_signal INT TERM

mkdir -p "$WORK"
# the namespaced root (subuid) must be able to write here
chmod 0777 "$WORK"

# ---------------------------------------------------------------- identities
if [[ -f $WORK/ids && ${KEEP_ROOTFS:-0} = 1 ]]; then
    . "$WORK/ids"
else
    ROOT_UUID=$(cat /proc/sys/kernel/random/uuid)
    ESP_SERIAL=$(od -An -N4 -tx4 /dev/urandom | tr -d ' ' | tr a-f A-F)   # 8 hex digits
    printf 'ROOT_UUID=%s\nESP_SERIAL=%s\n' "$ROOT_UUID" "$ESP_SERIAL" > "$WORK/ids"
fi
ESP_UUID="${ESP_SERIAL:0:4}-${ESP_SERIAL:4:4}"
log "root fs UUID $ROOT_UUID, ESP UUID $ESP_UUID"

# ------------------------------------------------------------- hook scripts
# Executed by mmdebstrap (inside its namespace) with $1 = the chroot dir.
cat > "$WORK/essential-hook.sh" <<'EOF'
#!/bin/sh
# before the --include packages are installed: preseed debconf
set -eu
chroot "$1" debconf-set-selections <<SEL
grub-efi-amd64 grub2/force_efi_extra_removable boolean true
grub-efi-amd64 grub2/update_nvram boolean false
SEL
EOF

cat > "$WORK/customize-hook.sh" <<EOF
#!/bin/sh
set -eu
R="\$1"
ROOT_UUID=$ROOT_UUID
ESP_UUID=$ESP_UUID
EOF
cat >> "$WORK/customize-hook.sh" <<'EOF'
KVER=$(ls "$R/lib/modules" | sort -V | tail -n1)

cat > "$R/etc/fstab" <<FSTAB
# <file system> <mount point> <type> <options> <dump> <pass>
UUID=$ROOT_UUID / ext4 defaults,errors=remount-ro 0 1
UUID=$ESP_UUID /boot/efi vfat umask=0077,nofail 0 2
FSTAB
mkdir -p "$R/boot/efi"

echo debian > "$R/etc/hostname"
echo LANG=C.UTF-8 > "$R/etc/default/locale"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tdebian\n::1\tlocalhost ip6-localhost ip6-loopback\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n' > "$R/etc/hosts"
rm -f "$R/etc/resolv.conf"

# ifupdown: cloud-init writes /etc/network/interfaces.d/50-cloud-init
mkdir -p "$R/etc/network/interfaces.d"
cat > "$R/etc/network/interfaces" <<NET
# cloud-init renders the real config into /etc/network/interfaces.d/
source /etc/network/interfaces.d/*

auto lo
iface lo inet loopback
NET

# cloud-init: NoCloud first (fast locally), Ec2 for AWS; grow the root fs
cat > "$R/etc/cloud/cloud.cfg.d/99_kiln.cfg" <<CC
datasource_list: [ NoCloud, Ec2, None ]
growpart:
  mode: auto
  devices: ['/']
  ignore_growroot_disabled: false
resize_rootfs: true
ssh_deletekeys: true
# no 'locales' package in the image: C.UTF-8 is built into glibc
locale: C.UTF-8
# /etc/hosts gets the instance hostname (else: "sudo: unable to resolve host")
manage_etc_hosts: true
ssh_genkeytypes: [rsa, ecdsa, ed25519]
CC

# safety net: sshd never starts without host keys (cloud-init normally makes them)
mkdir -p "$R/etc/systemd/system/ssh.service.d"
printf '[Service]\nExecStartPre=/usr/bin/ssh-keygen -A\n' > "$R/etc/systemd/system/ssh.service.d/kiln-hostkeys.conf"

# initramfs: drivers needed on QEMU and by AWS VM Import (Xen + Nitro)
cat >> "$R/etc/initramfs-tools/modules" <<MOD
virtio_pci
virtio_blk
virtio_scsi
virtio_net
nvme
ena
xen-blkfront
xen-netfront
MOD

# grub defaults (used when update-grub runs later inside the VM, e.g. kernel upgrade)
mkdir -p "$R/etc/default/grub.d"
cat > "$R/etc/default/grub.d/50-kiln.cfg" <<GD
GRUB_TIMEOUT=1
GRUB_CMDLINE_LINUX_DEFAULT=""
GRUB_CMDLINE_LINUX="console=tty0 console=ttyS0,115200"
GRUB_TERMINAL="console serial"
GRUB_SERIAL_COMMAND="serial --unit=0 --speed=115200"
GRUB_DISABLE_OS_PROBER=true
GD

# root is given as UUID= in fstab, which can't be resolved in the chroot:
# tell the fsck hook the type so e2fsck lands in the initramfs
echo FSTYPE=ext4 > "$R/etc/initramfs-tools/conf.d/kiln-fstype"
chroot "$R" update-initramfs -u -k all

# ---- GRUB, the way grub-install would lay it out, but without a block device
mkdir -p "$R/boot/grub"
cp -a "$R/usr/lib/grub/i386-pc" "$R/usr/lib/grub/x86_64-efi" "$R/boot/grub/"
cat > "$R/boot/grub/load.cfg" <<LC
search.fs_uuid $ROOT_UUID root
set prefix=(\$root)/boot/grub
LC
MODS="part_gpt part_msdos ext2 fat search_fs_uuid search normal configfile linux echo test serial terminal boot ls cat reboot halt gzio"
chroot "$R" grub-mkimage -O i386-pc -o /boot/grub/i386-pc/core.img -c /boot/grub/load.cfg -p /boot/grub \
    biosdisk $MODS
chroot "$R" grub-mkimage -O x86_64-efi -o /boot/grub/x86_64-efi/grubx64.efi -c /boot/grub/load.cfg -p /boot/grub \
    $MODS efi_gop efi_uga
cat > "$R/boot/grub/grub.cfg" <<GC
# Written by kiln (debian.sh); regenerated by update-grub on kernel upgrades
set timeout=1
serial --unit=0 --speed=115200
terminal_input console serial
terminal_output console serial
insmod part_gpt
insmod ext2
search --no-floppy --fs-uuid --set=root $ROOT_UUID
menuentry 'Debian GNU/Linux 12 ($KVER)' {
    linux /boot/vmlinuz-$KVER root=UUID=$ROOT_UUID ro console=tty0 console=ttyS0,115200
    initrd /boot/initrd.img-$KVER
}
GC

# ---- seal: no host keys, no machine id, no apt lists
rm -f "$R"/etc/ssh/ssh_host_*
: > "$R/etc/machine-id"
rm -f "$R/var/lib/dbus/machine-id"
# (apt lists + cache are removed by mmdebstrap's own cleanup after this hook;
#  do NOT touch $R/tmp or /var/lib/apt/lists here: mmdebstrap still uses them)
rm -rf "$R"/var/lib/cloud/*
find "$R/var/log" -type f -exec truncate -s 0 {} +
EOF
chmod 0755 "$WORK/essential-hook.sh" "$WORK/customize-hook.sh"

# ------------------------------------------------------------- 1. bootstrap
ROOTFS=$WORK/rootfs
if [[ ${KEEP_ROOTFS:-0} = 1 && -e $ROOTFS/boot/grub/grub.cfg ]]; then
    log "reusing $ROOTFS"
else
    [[ -e $ROOTFS ]] && nsrun rm -rf "$ROOTFS"
    log "mmdebstrap $SUITE from $MIRROR (+ $SECURITY_MIRROR)"
    tstart mmdebstrap
    run $NICE mmdebstrap --mode=unshare --variant=important "${DPKGOPTS[@]}" \
        --include="$PKGS" \
        --essential-hook="$WORK/essential-hook.sh" \
        --customize-hook="$WORK/customize-hook.sh" \
        "$SUITE" "$ROOTFS" \
        "deb $MIRROR $SUITE main" \
        "deb $MIRROR $SUITE-updates main" \
        "deb $SECURITY_MIRROR $SUITE-security main" \
        > "$MMDEBSTRAP_LOG" 2>&1 || { tail -n 40 "$MMDEBSTRAP_LOG" >&2; exit 1; }
    tend mmdebstrap
fi

# ------------------------------------------------------------- 2. disk
tstart assemble
RAW=$WORK/disk.raw
rm -f "$RAW" "$WORK/esp.img"
truncate -s "$DISK_SIZE" "$RAW"
# GPT: 1 = BIOS boot (core.img), 2 = ESP, 3 = root (last, so growpart can grow it)
sfdisk --quiet "$RAW" <<EOF
label: gpt
unit: sectors
first-lba: 2048
start=2048, size=2048, type=21686148-6449-6E6F-744E-656564454649, name="bios"
start=4096, size=258048, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name="esp"
start=262144, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name="root"
EOF
read -r ROOT_START ROOT_SECTORS < <(sfdisk -J "$RAW" | python3 -c '
import json,sys; p=json.load(sys.stdin)["partitiontable"]["partitions"][2]; print(p["start"], p["size"])')

# ESP: FAT32, only \EFI\BOOT\BOOTX64.EFI (removable-media/fallback path, no NVRAM entry needed)
mkfs.vfat -F 32 -S 512 -s 1 -n ESP -i "$ESP_SERIAL" -C "$WORK/esp.img" $((258048 / 2)) >/dev/null
mmd -i "$WORK/esp.img" ::/EFI ::/EFI/BOOT
mcopy -i "$WORK/esp.img" "$ROOTFS/boot/grub/x86_64-efi/grubx64.efi" ::/EFI/BOOT/BOOTX64.EFI
dd if="$WORK/esp.img" of="$RAW" bs=512 seek=4096 conv=notrunc,sparse status=none
rm -f "$WORK/esp.img"

# root ext4 straight into the partition; run in the namespace so the subuid
# owned rootfs reads as root-owned (=> correct uids/gids in the image)
chmod 0666 "$RAW"
nsrun $NICE mke2fs -q -t ext4 -L root -U "$ROOT_UUID" -m 1 \
    -E offset=$((ROOT_START * 512)),root_owner=0:0 -d "$ROOTFS" "$RAW" "$((ROOT_SECTORS / 2))k"
chmod 0644 "$RAW"

# BIOS: what grub-bios-setup does for a GPT disk with a BIOS boot partition
python3 - "$RAW" "$ROOTFS/boot/grub/i386-pc/boot.img" "$ROOTFS/boot/grub/i386-pc/core.img" 2048 2048 <<'EOF'
import struct, sys
raw, boot_p, core_p, start, maxsec = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
boot = bytearray(open(boot_p, 'rb').read()); core = bytearray(open(core_p, 'rb').read())
assert len(boot) == 512
nsec = (len(core) + 511) // 512
assert nsec <= maxsec, "core.img too big for BIOS boot partition"
core += b'\0' * (nsec * 512 - len(core))
with open(raw, 'r+b') as f:
    mbr = f.read(512)
    boot[0x03:0x5a] = mbr[0x03:0x5a]          # keep (empty) BPB
    boot[0x1b8:0x1fe] = mbr[0x1b8:0x1fe]      # keep disk signature + protective MBR partition table
    boot[0x5c:0x64] = struct.pack('<Q', start)  # GRUB_BOOT_MACHINE_KERNEL_SECTOR: LBA of core.img
    boot[0x64] = 0xff                          # GRUB_BOOT_MACHINE_BOOT_DRIVE: use drive from BIOS
    boot[0x66:0x68] = b'\x90\x90'              # GRUB_BOOT_MACHINE_DRIVE_CHECK: nop out (hard disk)
    # diskboot.img (1st sector of core.img) blocklist: load the rest of core.img
    bl = 0x200 - 12
    core[bl - 12:bl] = b'\0' * 12              # terminator entry
    core[bl:0x200] = struct.pack('<QHH', start + 1, nsec - 1, 0x820)
    f.seek(0); f.write(boot)
    f.seek(start * 512); f.write(core)
print(f"core.img: {nsec} sectors at LBA {start}", file=sys.stderr)
EOF
tend assemble

# ------------------------------------------------------------- 3. qcow2
tstart qcow2
run $NICE qemu-img convert -c -O qcow2 "$RAW" "$OUT/base.qcow2.tmp"
mv "$OUT/base.qcow2.tmp" "$OUT/base.qcow2"
tend qcow2
echo "root_uuid=$ROOT_UUID esp_uuid=$ESP_UUID" > "$OUT/base.ids"
ls -l "$OUT/base.qcow2" >&2
qemu-img info "$OUT/base.qcow2" | grep -E 'virtual size|disk size' >&2
if [[ ${KEEP_WORK:-0} != 1 ]]; then
    tstart cleanup
    rm -f "$RAW"
    [[ ${KEEP_ROOTFS:-0} = 1 ]] || nsrun rm -rf "$ROOTFS"
    tend cleanup
fi
log "done: $OUT/base.qcow2"
