#!/usr/bin/env bash
# Benchmark: `kiln build` (build + test stage) against Packer 1.6.6's qemu
# builder (build only), on this machine, from the same parent image, running
# the same shell steps (scripts/bench-build/steps.sh) as root, one after the
# other (Packer first), both under QEMU with 2 vCPUs and 2048 MiB.
#
# Packer: scripts/bench-build/packer.json, Packer's defaults apart from what a
# cloud image needs (disk_image, a NoCloud seed CD labelled cidata made with
# cd_files, an ssh key, the parent's virtual size as disk_size) and
# accelerator=tcg. kiln: a recipe with the parent image as a local path and one
# AWSTOE component whose build phase is one ExecuteBash step with steps.sh's
# text, run as `kiln build --accel auto`.
#
# Reports both wall times, both output image sizes (file size, `stat -c %s`,
# used for the ratio; also `du -B1 --apparent-size`, which must agree, and the
# blocks allocated, `du -B1`) and the kiln/Packer ratios, against the targets
# (time <= 1.5x, size <= 0.7x). The table is printed and written to
# target/bench-build.txt.
#
# Usage: scripts/bench-build.sh BASE_IMAGE [--packer-only|--kiln-only]
#   BASE_IMAGE  a Debian 12 cloud-init qcow2 (BIOS GRUB, NoCloud datasource);
#               only read, never written.
# Needs: qemu-system-x86_64, qemu-img, ssh-keygen; packer (Debian package
# `packer`) and xorriso (for Packer's cd_files) for the Packer side: installed
# with apt-get when missing and running as root.
# BENCH_KEEP=1 keeps the temp dir (logs, images) and prints its path.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HERE="$ROOT/scripts/bench-build"
STEPS="$HERE/steps.sh"
TEMPLATE="$HERE/packer.json"
TARGET_TIME=1.5
TARGET_SIZE=0.7

usage() {
    echo "usage: $0 BASE_IMAGE [--packer-only|--kiln-only]" >&2
    exit 2
}
if [ $# -lt 1 ] || [ $# -gt 2 ]; then usage; fi
BASE_ARG=$1
MODE=both
case "${2:-}" in
    "") ;;
    --packer-only) MODE=packer ;;
    --kiln-only) MODE=kiln ;;
    *) usage ;;
esac
[ -f "$BASE_ARG" ] || { echo "error: no such file: $BASE_ARG" >&2; exit 2; }
BASE="$(realpath "$BASE_ARG")"
run_packer() { [ "$MODE" != kiln ]; }
run_kiln() { [ "$MODE" != packer ]; }

# ---- temp dir, child processes, cleanup -------------------------------------

WORK="$(mktemp -d "${TMPDIR:-/var/tmp}/kiln-bench-build.XXXXXX")"
CHILD=""

# QEMU processes whose command line names a file under $WORK: the ones this
# script started (through Packer or kiln), and no other.
kill_our_qemu() {
    local proc pid argv
    for proc in /proc/[0-9]*; do
        pid=${proc#/proc/}
        argv=$(tr '\0' ' ' < "$proc/cmdline" 2> /dev/null) || continue
        case "$argv" in
            *qemu-system-*"$WORK/"*)
                kill -TERM "$pid" 2> /dev/null || continue
                sleep 1
                kill -KILL "$pid" 2> /dev/null || true
                ;;
        esac
    done
}

stop_child() {
    [ -n "$CHILD" ] || return 0
    if kill -0 "$CHILD" 2>/dev/null; then
        # Packer and kiln both clean up on SIGINT; give them 30 s.
        kill -INT -- "-$CHILD" 2>/dev/null || true
        local _
        for _ in $(seq 1 30); do
            kill -0 "$CHILD" 2>/dev/null || break
            sleep 1
        done
        kill -KILL -- "-$CHILD" 2>/dev/null || true
    fi
    wait "$CHILD" 2>/dev/null || true
    CHILD=""
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_child
    kill_our_qemu
    if [ "${BENCH_KEEP:-0}" = 1 ]; then
        echo "kept $WORK (BENCH_KEEP=1)" >&2
    else
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# run_timed VAR LOG CMD...: runs CMD in a session and process group of its own
# (so cleanup can stop it and everything it started), stdout+stderr to LOG;
# sets VAR to the wall time in seconds; returns CMD's exit status.
run_timed() {
    local var=$1 log=$2 start end rc=0
    shift 2
    start=$(date +%s.%N)
    # Not a process group leader (no job control here), so setsid does not
    # fork: $! is the new session's and process group's id.
    setsid "$@" > "$log" 2>&1 < /dev/null &
    CHILD=$!
    wait "$CHILD" || rc=$?
    CHILD=""
    end=$(date +%s.%N)
    printf -v "$var" '%.1f' "$(echo "$end - $start" | bc -l)"
    return "$rc"
}

fail_with_log() { # fail_with_log WHAT LOG
    echo "error: $1 failed; the last lines of its output:" >&2
    tail -n 40 "$2" >&2
    exit 1
}

# size_of FILE: "stat-size apparent-size allocated-bytes"
size_of() {
    printf '%s %s %s\n' "$(stat -c %s "$1")" \
        "$(du -B1 --apparent-size "$1" | cut -f1)" "$(du -B1 "$1" | cut -f1)"
}

need() {
    command -v "$1" > /dev/null || { echo "error: $1 not found${2:+ ($2)}" >&2; exit 2; }
}

# ---- preflight ----------------------------------------------------------------

need qemu-system-x86_64
need qemu-img
need ssh-keygen
need bc
BASE_VSIZE=$(qemu-img info --output=json "$BASE" | sed -n 's/.*"virtual-size": *\([0-9]*\).*/\1/p' | head -n1)
[ -n "$BASE_VSIZE" ] || { echo "error: cannot read the virtual size of $BASE" >&2; exit 2; }

if run_packer; then
    if ! command -v packer > /dev/null || ! command -v xorriso > /dev/null; then
        if [ "$(id -u)" = 0 ] && command -v apt-get > /dev/null; then
            echo "installing packer and xorriso with apt-get ..." >&2
            apt-get update -qq
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq packer xorriso > /dev/null
        fi
    fi
    need packer "apt-get install packer"
    need xorriso "apt-get install xorriso: Packer's cd_files needs it"
    PACKER_VERSION=$(CHECKPOINT_DISABLE=1 packer version | head -n1)
    case "$PACKER_VERSION" in
        *1.6.6*) ;;
        *) echo "warning: expected Packer 1.6.6, found: $PACKER_VERSION" >&2 ;;
    esac
fi

if run_kiln; then
    need cargo
    echo "building kiln (release) ..." >&2
    (cd "$ROOT" && cargo build --release --quiet)
    KILN="$ROOT/target/release/kiln"
fi

# ---- Packer -------------------------------------------------------------------

if run_packer; then
    P="$WORK/packer"
    mkdir -p "$P/seed" "$P/tmp"
    ssh-keygen -q -t ed25519 -N '' -C kiln-bench -f "$P/key"
    cat > "$P/seed/user-data" <<EOF
#cloud-config
users:
  - name: packer
    shell: /bin/bash
    lock_passwd: true
    sudo: "ALL=(ALL) NOPASSWD:ALL"
    ssh_authorized_keys:
      - $(cat "$P/key.pub")
EOF
    printf 'instance-id: kiln-bench-packer\nlocal-hostname: bench\n' > "$P/seed/meta-data"

    echo "packer: building (TCG; this takes minutes) ..." >&2
    run_timed PACKER_WALL "$P/packer.log" \
        env CHECKPOINT_DISABLE=1 PACKER_CACHE_DIR="$P/cache" PACKER_NO_COLOR=1 TMPDIR="$P/tmp" \
        packer build -color=false -timestamp-ui \
        -var "base_image=$BASE" \
        -var "disk_size=$((BASE_VSIZE / 1048576))M" \
        -var "output_dir=$P/output" \
        -var "ssh_key=$P/key" \
        -var "user_data=$P/seed/user-data" \
        -var "meta_data=$P/seed/meta-data" \
        -var "steps=$STEPS" \
        "$TEMPLATE" || fail_with_log "packer build" "$P/packer.log"
    PACKER_IMAGE="$P/output/image.qcow2"
    [ -f "$PACKER_IMAGE" ] || fail_with_log "packer build (no $PACKER_IMAGE)" "$P/packer.log"
    grep -q 'Hello from the benchmark' "$P/packer.log" \
        || fail_with_log "packer build (the steps' curl output is missing)" "$P/packer.log"
    read -r PACKER_SIZE PACKER_APPARENT PACKER_ALLOC < <(size_of "$PACKER_IMAGE")
    echo "packer: ${PACKER_WALL} s, ${PACKER_SIZE} bytes" >&2
fi

# ---- kiln ---------------------------------------------------------------------

if run_kiln; then
    K="$WORK/kiln"
    mkdir -p "$K/recipe"
    cat > "$K/recipe/recipe.yml" <<EOF
name: bench
semanticVersion: 1.0.0
parentImage: '${BASE//\'/\'\'}'
components:
  - component: ./steps.yml
EOF
    {
        cat <<'EOF'
name: bench-steps
schemaVersion: 1.0
phases:
  - name: build
    steps:
      - name: Steps
        action: ExecuteBash
        inputs:
          commands:
            - |
EOF
        sed 's/^\(.\)/              \1/' "$STEPS"
    } > "$K/recipe/steps.yml"

    echo "kiln: building (build + test stage) ..." >&2
    run_timed KILN_WALL "$K/kiln.jsonl" \
        "$KILN" build "$K/recipe/recipe.yml" --output "$K/output" --json --quiet-steps --accel auto \
        || fail_with_log "kiln build" "$K/kiln.jsonl"
    KILN_IMAGE="$K/output/bench/1.0.0/image.qcow2"
    [ -f "$KILN_IMAGE" ] || fail_with_log "kiln build (no $KILN_IMAGE)" "$K/kiln.jsonl"
    read -r KILN_SIZE KILN_APPARENT KILN_ALLOC < <(size_of "$KILN_IMAGE")
    KILN_ACCEL=$(sed -n 's/.*"accelerator": *"\([a-z]*\)".*/\1/p' "$K/output/bench/1.0.0/manifest.json" 2>/dev/null | head -n1)
    KILN_VERSION=$("$KILN" --version 2>/dev/null | head -n1 || true)
    echo "kiln: ${KILN_WALL} s, ${KILN_SIZE} bytes" >&2
fi

# ---- report -------------------------------------------------------------------

ratio() { printf '%.2f' "$(echo "$1 / $2" | bc -l)"; }
verdict() { # verdict RATIO TARGET
    if [ "$(echo "$1 <= $2" | bc -l)" = 1 ]; then echo "meets"; else echo "MISSES"; fi
}

REPORT="$WORK/report.txt"
{
    echo "kiln build vs packer build: same parent image, same steps (scripts/bench-build/steps.sh)"
    echo "date:        $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "host:        $(nproc) cores, $(free -m | awk '/^Mem:/ {print $2}') MiB, $(qemu-system-x86_64 --version | head -n1)"
    echo "base image:  $BASE ($(stat -c %s "$BASE") bytes, virtual $BASE_VSIZE bytes)"
    if run_packer; then
        echo "packer:      $PACKER_VERSION, qemu builder, accelerator tcg, 2 vCPUs, 2048 MiB; build only"
    fi
    if run_kiln; then
        echo "kiln:        ${KILN_VERSION:-kiln}, --accel auto (chose ${KILN_ACCEL:-?}), defaults 2 vCPUs, 2048 MiB; build + test stage"
        if [ "${KILN_ACCEL:-}" = kvm ] && run_packer; then
            echo "WARNING:     kiln ran on KVM and Packer on TCG: the times are not comparable"
        fi
    fi
    echo "size = output image file size, stat -c %s (du -B1 --apparent-size shown as a check; allocated = du -B1)"
    echo
    printf '%-8s %10s %16s %16s %16s\n' tool wall_s size_bytes apparent_bytes allocated_bytes
    if run_packer; then
        printf '%-8s %10s %16s %16s %16s\n' packer "$PACKER_WALL" "$PACKER_SIZE" "$PACKER_APPARENT" "$PACKER_ALLOC"
    fi
    if run_kiln; then
        printf '%-8s %10s %16s %16s %16s\n' kiln "$KILN_WALL" "$KILN_SIZE" "$KILN_APPARENT" "$KILN_ALLOC"
    fi
    if [ "$MODE" = both ]; then
        rt=$(ratio "$KILN_WALL" "$PACKER_WALL")
        rs=$(ratio "$KILN_SIZE" "$PACKER_SIZE")
        echo
        echo "time ratio kiln/packer: $rt (target <= $TARGET_TIME: $(verdict "$rt" "$TARGET_TIME"))"
        echo "size ratio kiln/packer: $rs (target <= $TARGET_SIZE: $(verdict "$rs" "$TARGET_SIZE"))"
    fi
} > "$REPORT"

mkdir -p "$ROOT/target"
cp "$REPORT" "$ROOT/target/bench-build.txt"
cat "$REPORT"
