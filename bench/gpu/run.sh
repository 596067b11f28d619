#!/usr/bin/env bash
# The GPU checks, on a machine with an NVIDIA GPU, its driver and the CUDA
# toolkit (nvrtc and its headers: the binaries compile their kernels with
# nvrtc as they run), and no Rust toolchain or network: the binaries come
# from bench/gpu/build.sh, built elsewhere. In order, each with its own time
# limit, the whole within DEADLINE seconds (default 560):
#   1. the CUDA equivalence test: a tiny pack of each family trained on the
#      GPU against the same pack on flex (worker/gpu-tests/tests/gpu.rs);
#   2. the single-trial Nanda step (p = 113) on the GPU, and PyTorch's
#      same-work step on the same GPU when python3 has torch;
#   3. the reproduction sweep bench/reproduction/fractions.yaml, its 20
#      trials as one pack, for at most REPRO_SECONDS (default 240; then
#      stopped with Ctrl-C, which keeps what was measured), results tarred;
#   4. pack throughput at p = 113 and p = 47 for K = 1 … 256, while time is left.
# Compiled kernels are cached under target/ (cubecl.toml), so each process
# after the first skips most of nvrtc. Results go to $OUT (default
# target/gpu-bench); they are recorded in bench/RESULTS.md ("On a GPU").
#   bench/gpu/run.sh BIN_DIR [REPRO_SECONDS]
set -uo pipefail
cd "$(dirname "$0")/../.."
packed="$(realpath "${1:?the folder bench/gpu/build.sh filled}")"
repro_seconds="${2:-240}"
deadline="${DEADLINE:-560}"
out="$(realpath -m "${OUT:-target/gpu-bench}")"
mkdir -p "$out"
log="$out/gpu-log.txt"
say() { echo "$*" | tee -a "$log"; }
bin="$(mktemp -d)"
for file in "$packed"/*.xz; do
    xz -dc "$file" > "$bin/$(basename "$file" .xz)" && chmod +x "$bin/$(basename "$file" .xz)"
done
start=$(date +%s)
elapsed() { echo "$(( $(date +%s) - start ))"; }
# A limit of at most `$1` seconds that leaves `$2` seconds of the deadline.
limit() { local left=$(( deadline - $(elapsed) - ${2:-0} )); (( left < 1 )) && left=1; (( left < $1 )) && echo "$left" || echo "$1"; }
# `timeout SECONDS COMMAND…`: its last line, or why it failed.
last_line() {
    local output status
    output=$(timeout "$@" 2>&1); status=$?
    if [ "$status" -eq 0 ]; then echo "$output" | tail -1; else echo "failed ($status): $(echo "$output" | tail -4 | tr '\n' ' ')"; fi
}
export RUST_BACKTRACE=0

# The driver's libcuda and the toolkit's libnvrtc, wherever this image keeps them
# (not the toolkit's stub libcuda, nor its forward-compatibility one, which
# fails against a driver of the same version: CUDA_ERROR_SYSTEM_DRIVER_MISMATCH).
if [ -z "${CUDA_PATH:-}" ] && [ ! -d /usr/local/cuda ] && command -v nvcc >/dev/null; then
    CUDA_PATH="$(dirname "$(dirname "$(readlink -f "$(command -v nvcc)")")")"
    export CUDA_PATH
fi
libs=$(find /usr/local/cuda/ /usr/local/nvidia/ /usr/lib/x86_64-linux-gnu/ ${CUDA_PATH:+"$CUDA_PATH/"} \
    \( -name 'libnvrtc.so*' -o -name 'libcuda.so*' \) -printf '%h\n' 2>/dev/null | grep -vE '/(compat|stubs)$' | sort -u | paste -sd:)
export LD_LIBRARY_PATH="${libs}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
if [ ! -e cubecl.toml ]; then
    printf '[compilation]\ncache = "target"\n' > cubecl.toml
    trap 'rm -f cubecl.toml' EXIT
fi
say "== $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader)"
say "CUDA_PATH=${CUDA_PATH:-/usr/local/cuda} LD_LIBRARY_PATH=$LD_LIBRARY_PATH cpus=$(nproc)"

say "== 1. equivalence on the GPU: a pack of each family on CUDA against flex ($(elapsed) s)"
# Correctness only: the least autotuning (on 2026-12-04 this step ran out of
# 150 s with the default level, in the diffusion test; bench/RESULTS.md).
CUBECL_AUTOTUNE_LEVEL=minimal timeout "$(limit 200)" "$bin/gpu-test" --ignored --test-threads 1 > "$out/equivalence.txt" 2>&1
status=$?
grep -E "^test |panicked|result:" "$out/equivalence.txt" | tee -a "$log"
say "exit $status"
if grep -qE "Unable to dynamically load|CUDA installation not found|CUDA_ERROR" "$out/equivalence.txt"; then
    say "the CUDA libraries did not load: stopping here"
    exit 1
fi

say "== 2. the single-trial step ($(elapsed) s)"
say "groksweep $(last_line "$(limit 90)" "$bin/nanda-step" 200)"
if python3 -c 'import torch; assert torch.cuda.is_available()' 2>/dev/null; then
    say "torch-same-work $(cd bench && last_line "$(limit 40)" python3 nanda_step_same_work.py 200 113 cuda)"
    say "torch-same-work-p47 $(cd bench && last_line "$(limit 40)" python3 nanda_step_same_work.py 200 47 cuda)"
fi

say "== 3. reproduction: bench/reproduction/fractions.yaml as one pack of 20 ($(elapsed) s)"
data="$out/repro-data"
timeout -s INT -k 20 "$(limit "$repro_seconds" 60)" "$bin/groksweep" run bench/reproduction/fractions.yaml \
    --data-dir "$data" --pack 20 >"$out/repro-run.txt" 2>&1
say "groksweep run exited $? ($(elapsed) s)"
tail -28 "$out/repro-run.txt" | tee -a "$log"
[ -d "$data/results" ] && tar -czf "$out/repro-results.tar.gz" -C "$data" results
rm -rf "$data"

say "== 4. pack throughput, while time is left ($(elapsed) s)"
for config in "113 1" "113 20" "113 64" "47 1" "47 64" "47 256" "113 128"; do
    set -- $config
    seconds=$(limit 45 5)
    (( seconds < 10 )) && { say "p=$1 K=$2: no time left"; continue; }
    say "p=$1 K=$2: $(last_line "$seconds" "$bin/pack-throughput" "$1" "$2" pack 30)"
done
say "== done ($(elapsed) s)"
