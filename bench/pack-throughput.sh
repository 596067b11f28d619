#!/usr/bin/env bash
# Pack throughput on the CPU: for p = 23, 47, 113 and K = 1 … 32, K trials
# as one pack (`pack`) beside the same K trials as K packs of one on K
# threads (`slots`), interleaved; one line per run (bench/RESULTS.md, "Packs").
#   cargo build --release -p groksweep-bench --bins && bench/pack-throughput.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bench=target/release/pack-throughput
for p in 23 47 113; do
    steps=30
    [ "$p" = 113 ] && steps=10
    for k in 1 2 4 8 16 32; do
        for mode in pack slots; do
            "$bench" "$p" "$k" "$mode" "$steps"
        done
    done
done
