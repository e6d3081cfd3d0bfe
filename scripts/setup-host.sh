#!/usr/bin/env bash
# Installs the Debian packages kiln and its tests use, when they are missing:
# QEMU (system emulator and qemu-img), and ISO readers for the seed tests.
# Needs root (or sudo) for apt-get.
# Idempotent: installs nothing when everything is there.
set -euo pipefail

need=()
command -v qemu-system-x86_64 >/dev/null 2>&1 || need+=(qemu-system-x86)
command -v qemu-img >/dev/null 2>&1 || need+=(qemu-utils)
# test tools only: independent readers of kiln's native seed ISO writer
command -v isoinfo >/dev/null 2>&1 || need+=(genisoimage)
command -v xorriso >/dev/null 2>&1 || need+=(xorriso)
# test tool: checks the private keys kiln writes
command -v ssh-keygen >/dev/null 2>&1 || need+=(openssh-client)

if [ ${#need[@]} -eq 0 ]; then
    echo "setup-host: all packages present" >&2
    exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "setup-host: installing ${need[*]}" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
