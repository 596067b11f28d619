#!/usr/bin/env bash
# The Nanda step against PyTorch, interleaved (bench/RESULTS.md, "Session 11",
# "Session 16"): three rounds at p = 113 of groksweep's step, the authors'
# formulation in PyTorch and PyTorch doing groksweep's work; then three
# rounds at p = 47 of a pack of 8, a pack of 1 and PyTorch's same-work step.
#   cargo build --release -p groksweep-bench --bin nanda-step --bin pack-throughput
#   python3 -m venv V && V/bin/pip install torch numpy
#   PYTHON=V/bin/python bench/nanda-step-vs-pytorch.sh
# Optional, to time an older build beside this one:
#   BENCH=dir             this build's binaries (default target/release)
#   OLD=path/nanda-step   an older build's step (and OLD_PACK=path/pack-throughput)
#   OLD_SAME_WORK=file.py the same-work script as it was for that build (it
#                         imports bench/nanda_step.py), so each build is timed
#                         against PyTorch doing its own work
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
bench=${BENCH:-target/release}
old_same() { PYTHONPATH=bench "$python" "$OLD_SAME_WORK" "$@"; }
for round in 1 2 3; do
    echo "== round $round"
    if [ -n "${OLD:-}" ]; then echo "old  $("$OLD" 100)"; fi
    echo "new  $("$bench/nanda-step" 100)"
    echo "torch-authors $("$python" bench/nanda_step.py 100)"
    echo "torch-same $("$python" bench/nanda_step_same_work.py 100)"
    if [ -n "${OLD_SAME_WORK:-}" ]; then echo "torch-same-old $(old_same 100)"; fi
done
for round in 1 2 3; do
    echo "== p47 round $round"
    if [ -n "${OLD_PACK:-}" ]; then
        echo "old-pack8 $("$OLD_PACK" 47 8 pack 30)"
        echo "old-pack1 $("$OLD_PACK" 47 1 pack 30)"
    fi
    echo "pack8 $("$bench/pack-throughput" 47 8 pack 30)"
    echo "pack1 $("$bench/pack-throughput" 47 1 pack 30)"
    echo "torch-same-47 $("$python" bench/nanda_step_same_work.py 100 47)"
    if [ -n "${OLD_SAME_WORK:-}" ]; then echo "torch-same-old-47 $(old_same 100 47)"; fi
done
