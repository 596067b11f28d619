#!/usr/bin/env bash
# On a machine with an NVIDIA GPU and the CUDA toolkit's driver: build the
# CUDA backend, run the pack equivalence tests on the GPU (against flex), then
# the pack throughput bench at p = 113 and p = 47 for K = 1 … 256, and print
# one table. Meant to finish within 8 minutes on a 16-core machine; record
# its output in bench/RESULTS.md ("Packs on a GPU").
#   bench/gpu/run.sh [steps]     (default 20 timed steps per configuration)
set -euo pipefail
cd "$(dirname "$0")/../.."
steps="${1:-20}"
out="${OUT:-target/gpu-bench}"
mkdir -p "$out"

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
start=$(date +%s)

echo "== build (release, --features cuda)"
cargo build --release -q -p groksweep-bench --features cuda --bin pack-throughput
echo "build: $(( $(date +%s) - start )) s"

echo "== equivalence on the GPU: a pack of each family on CUDA against flex"
cargo test --release -q -p sweep-worker --features cuda --test gpu -- --ignored 2>&1 | tee "$out/equivalence.txt" | tail -3

echo "== pack throughput"
bench=target/release/pack-throughput
printf '%-5s %-5s %-12s %-18s %-14s\n' p K ms_per_step trial_epochs_per_s speedup_vs_K1 | tee "$out/table.txt"
for p in 113 47; do
    base=""
    for k in 1 2 4 8 16 32 64 128 256; do
        line=$(timeout 120 "$bench" "$p" "$k" pack "$steps" 2>/dev/null | tail -1) || line="failed"
        echo "$line" >> "$out/raw.txt"
        rate=$(sed -n 's/.*trial_epochs_per_s=\([0-9.]*\).*/\1/p' <<< "$line")
        ms=$(sed -n 's/.*ms_per_step=\([0-9.]*\).*/\1/p' <<< "$line")
        if [ -z "$rate" ]; then
            printf '%-5s %-5s %s\n' "$p" "$k" "failed (out of memory or time?)" | tee -a "$out/table.txt"
            continue
        fi
        [ -z "$base" ] && base="$rate"
        printf '%-5s %-5s %-12s %-18s %-14s\n' "$p" "$k" "$ms" "$rate" "$(awk -v r="$rate" -v b="$base" 'BEGIN { printf "%.1f", r / b }')" \
            | tee -a "$out/table.txt"
    done
done
echo "total: $(( $(date +%s) - start )) s"
