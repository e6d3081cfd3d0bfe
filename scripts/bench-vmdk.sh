#!/usr/bin/env bash
# kiln's native streamOptimized VMDK writer against
# `qemu-img convert -O vmdk -o subformat=streamOptimized`, in one run on the
# same image: a 3 GiB raw disk holding an ext4 file system filled with
# ~1.8 GiB of real OS files (this host's /usr/bin, /usr/share, /usr/include,
# /usr/lib/gcc, /usr/lib/x86_64-linux-gnu; mke2fs -d, no root needed).
# Prints both times, both sizes and the ratios, checks both outputs with
# `qemu-img compare`, and the load (`uptime`) the figures were taken under.
#
# usage: scripts/bench-vmdk.sh [WORKDIR]     (the image is kept and reused)
# env:   BENCH_BIN=PATH  an already built bench_vmdk (skips the build)
#        THREADS=N  kiln's threads (default: every core)
#        LEVELS="4 6"  libdeflate levels to run (default: kiln's default)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
work=${1:-/var/tmp/kiln-bench-vmdk}
mkdir -p "$work"
img=$work/os.raw

if [ ! -s "$img" ]; then
    stage=$work/stage
    rm -rf "$stage" && mkdir -p "$stage/lib"
    for d in bin share include; do
        cp -al "/usr/$d" "$stage/" 2>/dev/null || cp -a "/usr/$d" "$stage/"
    done
    for d in gcc x86_64-linux-gnu; do
        cp -al "/usr/lib/$d" "$stage/lib/" 2>/dev/null || cp -a "/usr/lib/$d" "$stage/lib/"
    done
    echo "making $img from $(du -sh "$stage" | cut -f1) of /usr"
    mke2fs -q -F -t ext4 -d "$stage" "$img.tmp" 3G
    mv "$img.tmp" "$img"
    rm -rf "$stage"
fi

allocated=$(qemu-img map --output=json -f raw "$img" |
    python3 -c 'import json,sys; print(sum(e["length"] for e in json.load(sys.stdin) if e["data"]))')
virtual=$(stat -c %s "$img")
echo "image: $img, virtual $((virtual >> 20)) MiB, allocated $((allocated >> 20)) MiB"

# kiln and libdeflate (the hot code: compression, zero checks, I/O) at
# opt-level 3 without debug assertions; the other dependencies stay at the
# dev profile's opt-level 1, which the test builds already have (a full
# release build of the AWS SDKs takes too long on a shared 2-core host)
opt=(--config 'profile.dev.package.kiln.opt-level=3'
    --config 'profile.dev.package.kiln.debug-assertions=false'
    --config 'profile.dev.package.kiln.overflow-checks=false'
    --config 'profile.dev.package.libdeflater-sys.opt-level=3'
    --config 'profile.dev.package.libdeflater.opt-level=3')
bench=${BENCH_BIN:-}
if [ -z "$bench" ]; then
    (cd "$root" && cargo build -q --example bench_vmdk "${opt[@]}")
    bench=$work/bench_vmdk
    cp "$root/target/debug/examples/bench_vmdk" "$bench"
fi

seconds() { python3 -c "import time; print(f'{time.time():.3f}')"; }
warm() { cat "$img" >/dev/null; }

echo "load before: $(uptime)"
warm
rm -f "$work/qemu.vmdk"
t0=$(seconds)
/usr/bin/env time -f '%U %S' -o "$work/qemu.cpu" qemu-img convert -f raw -O vmdk -o subformat=streamOptimized,adapter_type=lsilogic "$img" "$work/qemu.vmdk"
t1=$(seconds)
qemu_s=$(python3 -c "print(f'{$t1 - $t0:.2f}')")
qemu_b=$(stat -c %s "$work/qemu.vmdk")
echo "qemu-img: ${qemu_s} s, ${qemu_b} bytes, CPU $(awk '{print $1 + $2}' "$work/qemu.cpu") s"

threads=()
[ -n "${THREADS:-}" ] && threads=(--threads "$THREADS")
levels=${LEVELS:-default}
for level in $levels; do
    args=("${threads[@]}")
    [ "$level" != default ] && args+=(--level "$level")
    warm
    rm -f "$work/kiln.vmdk"
    out=$(/usr/bin/env time -f '%U %S' -o "$work/kiln.cpu" "$bench" "$img" "$work/kiln.vmdk" "${args[@]}")
    kiln_s=$(sed -n 's/.*seconds=\([0-9.]*\).*/\1/p' <<<"$out")
    kiln_b=$(stat -c %s "$work/kiln.vmdk")
    echo "kiln (level $level${THREADS:+, $THREADS threads}): ${kiln_s} s, ${kiln_b} bytes, CPU $(awk '{print $1 + $2}' "$work/kiln.cpu") s ($out)"
    python3 -c "print(f'  speed-up {$qemu_s / $kiln_s:.2f}x, size ratio {$kiln_b / $qemu_b:.4f} (kiln/qemu-img)')"
    qemu-img compare -f raw "$img" "$work/kiln.vmdk"
    qemu-img check "$work/kiln.vmdk" | tail -1
done
qemu-img compare -f raw "$img" "$work/qemu.vmdk"
echo "load after: $(uptime)"
echo "cores: $(nproc)"
