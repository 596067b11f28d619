#!/usr/bin/env bash
# The Nanda step built without and with `x86-v4` (burn's AVX-512 gemm
# kernels), interleaved with PyTorch (bench/RESULTS.md, "Session 12" and
# "Session 13"): three rounds at p = 113 of both builds, PyTorch doing the
# same work and the authors' formulation; then three rounds at p = 47 of a
# pack of 8 and a pack of 1 from both builds and PyTorch's same-work step.
# `x86-v4` is in the default build since session 13, so the plain build
# leaves the default features out:
#   cargo build --release -p groksweep-bench --bin nanda-step --bin pack-throughput --no-default-features --features mimalloc
#   cp target/release/nanda-step PLAIN/ && cp target/release/pack-throughput PLAIN/
#   cargo build --release -p groksweep-bench --bin nanda-step --bin pack-throughput
#   cp target/release/nanda-step V4/ && cp target/release/pack-throughput V4/
#   python3 -m venv V && V/bin/pip install torch numpy
#   PYTHON=V/bin/python bench/nanda-step-x86-v4.sh PLAIN V4 [BASE]
# BASE, if given, is a third build without x86-v4 (an earlier commit's),
# timed beside the others at p = 113.
set -euo pipefail
cd "$(dirname "$0")/.."
plain=${1:?the directory of the build without x86-v4}
v4=${2:?the directory of the build with x86-v4}
base=${3:-}
python=${PYTHON:-python3}
for round in 1 2 3; do
    echo "== round $round"
    [ -n "$base" ] && echo "base $("$base/nanda-step" 100)"
    echo "plain $("$plain/nanda-step" 100)"
    echo "x86-v4 $("$v4/nanda-step" 100)"
    echo "torch-same $("$python" bench/nanda_step_same_work.py 100)"
    echo "torch-authors $("$python" bench/nanda_step.py 100)"
done
for round in 1 2 3; do
    echo "== p47 round $round"
    echo "pack8-plain $("$plain/pack-throughput" 47 8 pack 30)"
    echo "pack8-v4 $("$v4/pack-throughput" 47 8 pack 30)"
    echo "pack1-plain $("$plain/pack-throughput" 47 1 pack 30)"
    echo "pack1-v4 $("$v4/pack-throughput" 47 1 pack 30)"
    echo "torch-same-47 $("$python" bench/nanda_step_same_work.py 100 47)"
done
