#!/usr/bin/env bash
# Runs kiln's whole test suite on a fresh Debian 12 machine: installs what the
# tests need (QEMU from Debian's packages, the Python venv with the moto S3
# server), then runs every test.
# Usage: scripts/test.sh [extra cargo test arguments]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

bash scripts/setup-host.sh
bash scripts/setup-test-peers.sh
cargo fmt --check
cargo test --all-targets "$@"
