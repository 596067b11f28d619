#!/usr/bin/env bash
# Build what bench/gpu/run.sh runs, on a machine with the Rust toolchain and
# crates.io (a GPU machine need have neither): the `groksweep` binary, the
# step and pack benchmarks and the CUDA equivalence test, all with
# `--features cuda`, stripped, compressed with xz (the quick profile's
# unoptimised DataFusion makes `groksweep` 200 MB stripped, 29 MB in xz) and
# put in one folder to carry to the GPU machine (the device tool carries at
# most 64 MiB); bench/gpu/run.sh unpacks them there.
#   bench/gpu/build.sh [DIR]        (default target/gpu-bin)
# cudarc picks the CUDA API version from the toolkit it finds while building;
# with none here, `CUDARC_CUDA_VERSION` names the one of the GPU machine's
# driver (13000 = CUDA 13.0, driver 580). The binaries load libcuda and
# libnvrtc when they start, not when they are built.
set -euo pipefail
cd "$(dirname "$0")/../.."
dir="${1:-target/gpu-bin}"
export CUDARC_CUDA_VERSION="${CUDARC_CUDA_VERSION:-13000}"
rm -rf "$dir"
mkdir -p "$dir"
# One cargo invocation, so that the test's dev-dependencies and the binaries
# share one feature set and burn is compiled once.
cargo build --profile quick --message-format=json-render-diagnostics \
    -p sweep-worker-gpu-tests -p groksweep -p groksweep-bench \
    --features sweep-worker-gpu-tests/cuda,groksweep/cuda,groksweep-bench/cuda \
    --bin groksweep --bin pack-throughput --bin nanda-step --test gpu \
    | python3 -c '
import json, sys
for line in sys.stdin:
    message = json.loads(line)
    if message.get("reason") == "compiler-artifact" and message.get("executable"):
        kind = message["target"]["kind"][0]
        print(("gpu-test " if kind == "test" else "") + message["executable"])
' > "$dir/artifacts.txt"
while read -r first second; do
    if [ "$first" = gpu-test ]; then
        cp "$second" "$dir/gpu-test"
    else
        cp "$first" "$dir/"
    fi
done < "$dir/artifacts.txt"
rm "$dir/artifacts.txt"
for file in "$dir"/*; do
    strip "$file"
    xz -T0 -6 -f "$file"
done
ls -l "$dir"
