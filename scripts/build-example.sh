#!/usr/bin/env bash
# The main job on a fresh Debian 12 machine: installs what kiln needs (QEMU,
# mmdebstrap and the disk tools, from Debian's packages), builds kiln, and
# builds the example golden image recipes/debian-web/recipe.yml. The parent
# image is bootstrapped from Debian packages (cached), so nothing has to be
# downloaded by hand. The image lands in OUTPUT/debian-web/1.0.0/.
# Usage: scripts/build-example.sh [OUTPUT (default: output)] [extra kiln build flags]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
OUTPUT=${1:-output}
shift || true

bash scripts/setup-host.sh
cargo build --release
exec target/release/kiln build recipes/debian-web/recipe.yml --output "$OUTPUT" --force "$@"
