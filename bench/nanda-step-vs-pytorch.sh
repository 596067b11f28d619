#!/usr/bin/env bash
# The Nanda step against PyTorch, interleaved (bench/RESULTS.md, "Session 11"):
# three rounds at p = 113 of groksweep's step (and, if OLD is given, the same
# bench built at an older commit), the authors' formulation in PyTorch and
# PyTorch doing groksweep's work; then three rounds at p = 47 of a pack of 8,
# a pack of 1 and PyTorch's same-work step.
#   cargo build --release -p groksweep-bench --bins
#   python3 -m venv V && V/bin/pip install torch numpy
#   PYTHON=V/bin/python [OLD=path/to/old/nanda-step] bench/nanda-step-vs-pytorch.sh
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
bench=target/release
for round in 1 2 3; do
    echo "== round $round"
    if [ -n "${OLD:-}" ]; then echo "old  $("$OLD" 100)"; fi
    echo "new  $("$bench/nanda-step" 100)"
    echo "torch-authors $("$python" bench/nanda_step.py 100)"
    echo "torch-same $("$python" bench/nanda_step_same_work.py 100)"
done
for round in 1 2 3; do
    echo "== p47 round $round"
    echo "pack8 $("$bench/pack-throughput" 47 8 pack 30)"
    echo "pack1 $("$bench/pack-throughput" 47 1 pack 30)"
    echo "torch-same-47 $("$python" bench/nanda_step_same_work.py 100 47)"
done
