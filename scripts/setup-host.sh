#!/usr/bin/env bash
# Installs the Debian packages kiln and its tests use, when they are missing:
# QEMU (system emulator and qemu-img), passt (the build VMs' outbound
# network), the tools of the Debian bootstrap
# (src/build/bootstrap/debian.sh: mmdebstrap, uidmap for rootless builds,
# sfdisk, mkfs.vfat, mtools, mke2fs, python3), and the tools tests use to check
# kiln's outputs independently (isoinfo, xorriso, ssh, debugfs).
# Needs root (or sudo) for apt-get.
# Idempotent: installs nothing when everything is there.
set -euo pipefail

need=()
command -v qemu-system-x86_64 >/dev/null 2>&1 || need+=(qemu-system-x86)
{ command -v qemu-img && command -v qemu-nbd; } >/dev/null 2>&1 || need+=(qemu-utils)
# the build VMs' default network (build.network: outbound)
command -v passt >/dev/null 2>&1 || need+=(passt)
# the bootstrap's tools (some live in sbin, which a user's PATH may lack)
have() { PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin" command -v "$1" >/dev/null 2>&1; }
have mmdebstrap || need+=(mmdebstrap)
have newuidmap || need+=(uidmap)
have sfdisk || need+=(fdisk)
have mkfs.vfat || need+=(dosfstools)
have mcopy || need+=(mtools)
have mke2fs || need+=(e2fsprogs)   # also debugfs, which tests use to read sealed images
have python3 || need+=(python3)
# saved VM states (booted snapshots and component layers) are zstd streams
have zstd || need+=(zstd)
# test tools only: independent readers of kiln's native seed ISO writer
command -v isoinfo >/dev/null 2>&1 || need+=(genisoimage)
command -v xorriso >/dev/null 2>&1 || need+=(xorriso)
# test tools: check the private keys kiln writes, and log in with the
# command `kiln build --on-error abort` prints
{ command -v ssh-keygen && command -v ssh; } >/dev/null 2>&1 || need+=(openssh-client)

if [ ${#need[@]} -eq 0 ]; then
    echo "setup-host: all packages present" >&2
    exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
apt_install() {
    echo "setup-host: installing $*" >&2
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$@"
}
$SUDO apt-get update -qq
apt_install "${need[@]}"
# Installing Debian's qemu-system-x86 removes a newer qemu-utils (e.g. one from
# backports, which breaks the older qemu-system-common): put the matching
# qemu-utils back so qemu-img and qemu-nbd are there.
if ! { command -v qemu-img && command -v qemu-nbd; } >/dev/null 2>&1; then
    apt_install qemu-utils
fi
