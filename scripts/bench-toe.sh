#!/usr/bin/env bash
# Measures the toe engine's overhead on this host with a release build:
#   1. a 1000-step document of no-op ExecuteBash steps (`true`): wall time and steps/s;
#   2. the same 1000 scripts run by a plain bash loop (the process-spawn floor);
#   3. a 1000-step document of Assert steps (no process at all): the engine's own cost per step.
# Usage: scripts/bench-toe.sh [STEPS]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STEPS="${1:-1000}"
cd "$ROOT"
cargo build --release --quiet
KILN="$ROOT/target/release/kiln"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

gen() { # gen KIND FILE
    {
        echo "name: bench-$1"
        echo "schemaVersion: 1.0"
        echo "phases:"
        echo "  - name: build"
        echo "    steps:"
        for i in $(seq 1 "$STEPS"); do
            if [ "$1" = bash ]; then
                echo "      - {name: S$i, action: ExecuteBash, inputs: {commands: ['true']}}"
            else
                echo "      - {name: S$i, action: Assert, inputs: {stringEquals: 'x', value: 'X'}}"
            fi
        done
    } > "$2"
}

seconds() { # seconds CMD...: wall time of CMD in seconds
    local start end
    start=$(date +%s.%N)
    "$@" > /dev/null 2>&1
    end=$(date +%s.%N)
    echo "$end - $start" | bc -l
}

gen bash "$WORK/bash.yml"
gen assert "$WORK/assert.yml"

t_bash=$(seconds "$KILN" toe run --documents "$WORK/bash.yml" --log-directory "$WORK/logs")
t_assert=$(seconds "$KILN" toe run --documents "$WORK/assert.yml" --log-directory "$WORK/logs")
floor() {
    mkdir -p "$WORK/floor"
    for i in $(seq 1 "$STEPS"); do
        printf 'true\n' > "$WORK/floor/s$i.sh"
        bash "$WORK/floor/s$i.sh"
    done
}
t_floor=$(seconds floor)

printf 'steps: %s\n' "$STEPS"
printf 'ExecuteBash no-op document: %.2f s wall, %.0f steps/s, %.2f ms/step\n' "$t_bash" "$(echo "$STEPS / $t_bash" | bc -l)" "$(echo "1000 * $t_bash / $STEPS" | bc -l)"
printf 'plain bash loop (same scripts): %.2f s wall, %.2f ms/step\n' "$t_floor" "$(echo "1000 * $t_floor / $STEPS" | bc -l)"
printf 'Assert document (no process): %.2f s wall, %.0f steps/s, %.3f ms/step\n' "$t_assert" "$(echo "$STEPS / $t_assert" | bc -l)" "$(echo "1000 * $t_assert / $STEPS" | bc -l)"
printf 'engine overhead per ExecuteBash step beyond the bash floor: %.2f ms\n' "$(echo "1000 * ($t_bash - $t_floor) / $STEPS" | bc -l)"
