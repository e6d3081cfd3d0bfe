#!/usr/bin/env bash
# Sets up the real peers that kiln's integration tests talk to.
#
# Creates a Python virtualenv at .venv in the repository root and installs a
# pinned moto server into it (an S3/EC2/IAM/STS endpoint on 127.0.0.1), and
# a pinned COT (Common OVF Tool, an OVF/OVA reader).
# Idempotent: a second run with the pinned version already installed does
# nothing. Works on a clean Debian 12 machine with python3 (installs
# python3-venv with apt-get when `python3 -m venv` is not available).
#
# Usage: bash scripts/setup-test-peers.sh
set -euo pipefail

MOTO_VERSION="5.2.5"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PYTHON="${PYTHON:-python3}"

log() { printf 'setup-test-peers: %s\n' "$*" >&2; }

installed_moto_version() {
    [ -x "$VENV/bin/python" ] || return 1
    "$VENV/bin/python" - <<'EOF' 2>/dev/null
from importlib.metadata import version
print(version("moto"))
EOF
}

moto_is_ready() {
    local v
    v="$(installed_moto_version)" || return 1
    [ "$v" = "$MOTO_VERSION" ] || return 1
    [ -x "$VENV/bin/moto_server" ] || return 1
    # The server extra pulls in flask; check it imports.
    "$VENV/bin/python" -c 'import flask, flask_cors, moto.server' >/dev/null 2>&1
}

# --- OVF consumer (tests/export_formats.rs) ----------------------------------
# COT, the Common OVF Tool (PyPI `cot`), goes into the same .venv: the tests
# run `cot info` on kiln's OVAs and OVF packages, a real, independent OVF
# parser (descriptor, References, disks, tar layout). Called after moto is
# ready (both at the early exit and at the end); idempotent.
COT_VERSION="2.2.1"

cot_is_ready() {
    [ -x "$VENV/bin/cot" ] && [ "$("$VENV/bin/cot" --version 2>/dev/null | sed -n 's/.*version //p')" = "$COT_VERSION" ]
}

install_cot() {
    if cot_is_ready; then
        log "cot==$COT_VERSION already installed in $VENV"
        return 0
    fi
    log "installing cot==$COT_VERSION into $VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "cot==$COT_VERSION"
    if ! cot_is_ready; then
        log "error: cot==$COT_VERSION did not install correctly"
        exit 1
    fi
    log "ready: $VENV/bin/cot ($COT_VERSION)"
}
# --- end of the OVF consumer block --------------------------------------------
# The AWS (VM Import/Export) peer, tests/peers/vmie/server.py, runs on this
# venv's moto; it converts disks with qemu-img, and the aws_vmie tests build
# small disks with mke2fs -d: both come from scripts/setup-host.sh.

if moto_is_ready; then
    log "moto[server]==$MOTO_VERSION already installed in $VENV"
    install_cot
    exit 0
fi

if ! command -v "$PYTHON" >/dev/null 2>&1; then
    log "error: $PYTHON not found; install python3 first (apt-get install -y python3)"
    exit 1
fi

venv_works() {
    local probe
    probe="$(mktemp -d)"
    if "$PYTHON" -m venv "$probe/v" >/dev/null 2>&1 && [ -x "$probe/v/bin/pip" ]; then
        rm -rf "$probe"
        return 0
    fi
    rm -rf "$probe"
    return 1
}

# A venv whose interpreter is gone or has no pip (e.g. made by another python) is rebuilt.
if ! "$VENV/bin/python" -m pip --version >/dev/null 2>&1; then
    if ! venv_works; then
        log "python3 -m venv does not work; installing python3-venv with apt-get"
        if [ "$(id -u)" -ne 0 ]; then
            log "error: not root; run: sudo apt-get install -y python3-venv"
            exit 1
        fi
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        # Debian names the package after the minor version too (python3.11-venv).
        pyver="$("$PYTHON" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
        apt-get install -y -qq python3-venv || true
        apt-get install -y -qq "python${pyver}-venv" || true
        if ! venv_works; then
            log "error: python3 -m venv still fails after installing python3-venv"
            exit 1
        fi
    fi
    # A half-made venv (no pip) is replaced.
    rm -rf "$VENV"
    log "creating virtualenv $VENV"
    "$PYTHON" -m venv "$VENV"
fi

log "installing moto[server]==$MOTO_VERSION into $VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
    "moto[server]==$MOTO_VERSION"

if ! moto_is_ready; then
    log "error: moto[server]==$MOTO_VERSION did not install correctly"
    exit 1
fi
log "ready: $VENV/bin/moto_server ($MOTO_VERSION)"
install_cot
