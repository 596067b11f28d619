#!/usr/bin/env bash
# SIGTERM to a coordinator 3 s into the submission of a 1,000,000-trial sweep
# (100 moduli x 10 weight decays x 1,000 seeds): prints, per binary and round,
# the time from the signal to the process's exit, its exit status, and how
# many trials it had stored. Binaries are run interleaved, ROUNDS times each.
#
#   bench/sigterm-during-submit.sh [ROUNDS] BINARY...
#   e.g. bench/sigterm-during-submit.sh 3 /tmp/old/groksweep target/debug/groksweep
set -euo pipefail
rounds=3
if [[ "${1:-}" =~ ^[0-9]+$ ]]; then rounds=$1; shift; fi
(($# > 0)) || { echo "usage: $0 [ROUNDS] BINARY..." >&2; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
{
  echo "version: 1"
  echo "name: big"
  echo "families: transformer"
  echo "axes:"
  echo "  modulus: [$(seq -s ', ' 3 2 201)]"
  echo "  data_fraction: 0.3"
  echo "  weight_decay: [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]"
  echo "  seed: [$(seq -s ', ' 0 999)]"
} > "$work/big.yaml"
for round in $(seq "$rounds"); do
  for binary in "$@"; do
    data="$work/data"; rm -rf "$data" "$work"/*.out "$work"/*.err
    "$binary" coordinator --listen 127.0.0.1:0 --data-dir "$data" > "$work/coordinator.out" 2> "$work/coordinator.err" &
    coordinator=$!
    until grep -q "listening on" "$work/coordinator.out" 2>/dev/null; do sleep 0.05; done
    address=$(head -1 "$work/coordinator.out" | sed 's/coordinator listening on //')
    "$binary" submit "$work/big.yaml" --coordinator "$address" > "$work/submit.out" 2>&1 &
    submit=$!
    sleep 3
    start=$(date +%s.%N)
    kill -TERM "$coordinator"
    status=0; wait "$coordinator" || status=$?
    end=$(date +%s.%N)
    wait "$submit" || true
    stored=$(grep -o 'stored=[0-9]*' "$work/coordinator.err" | tail -1 || true)
    printf '%s round %s: exit after %.2f s, status %s, %s, client: %s\n' "$binary" "$round" "$(echo "$end - $start" | bc)" "$status" \
      "${stored:-stored=all}" "$(tail -1 "$work/submit.out")"
  done
done
