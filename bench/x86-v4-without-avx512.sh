#!/usr/bin/env bash
# Does a build with burn's `x86-v4` feature (AVX-512 gemm kernels) still run on
# a CPU without AVX-512? Run by hand; needs valgrind (apt install valgrind).
#
# Valgrind's CPU emulation reports AVX2 and FMA but not AVX-512 to the program
# and kills it with SIGILL if it executes an AVX-512 instruction. The script
# first checks that (the control must die), then runs the x86-v4 build of the
# Nanda step bench (train, evaluate every measure, checkpoint) under it: it must finish, report cpu_avx512f=false, and
# print the same losses as the build without x86-v4 under the same emulation.
set -euo pipefail
cd "$(dirname "$0")/.."
# Valgrind runs one thread at a time and slowly: a small p (23) and one
# rayon thread keep each run to a minute or so.
steps=${1:-5}
p=${2:-23}
export RAYON_NUM_THREADS=1

cargo build --release -q -p groksweep-bench --bin avx512-control
cp target/release/avx512-control target/avx512-control
# x86-v4 is a default feature (session 13): the plain build leaves it out.
cargo build --release -q -p groksweep-bench --bin nanda-step --no-default-features --features mimalloc
cp target/release/nanda-step target/nanda-step-plain
cargo build --release -q -p groksweep-bench --bin nanda-step
cp target/release/nanda-step target/nanda-step-x86-v4

echo "== control: an unconditional AVX-512 instruction under valgrind must die"
if valgrind --tool=none -q target/avx512-control; then
    echo "FAIL: the emulated CPU executed AVX-512, so it does not stand for a CPU without it" >&2
    exit 1
fi
echo "ok: killed, as a CPU without AVX-512 would"

echo "== nanda-step without and with x86-v4, p = $p, $steps steps (+10 warm-up) under valgrind"
plain=$(valgrind --tool=none -q target/nanda-step-plain "$steps" "$p")
wide=$(valgrind --tool=none -q target/nanda-step-x86-v4 "$steps" "$p")
echo "$plain"
echo "$wide"
case "$wide" in *"x86-v4=true cpu_avx512f=false"*) ;; *) echo "FAIL: expected x86-v4=true cpu_avx512f=false" >&2; exit 1 ;; esac
if [ "${plain##*(}" != "${wide##*(}" ]; then
    echo "FAIL: the two builds disagree on the losses" >&2
    exit 1
fi
echo "ok: the x86-v4 build runs without AVX-512 and matches the plain build"
