#!/usr/bin/env bash
# Reading a large sweep's results (issue 14): "the grokking step of every
# trial" by `groksweep sql` and by DuckDB, and pandas reading `trials`, on
# the synthetic sweep of `synthetic-results` (1,000 trials × 401
# evaluations × 12 measures = 4.8M progress rows), rolled (as a running
# sweep's) and compacted (as a finished one's). Three runs of each,
# interleaved, wall time of the whole command (process start included).
#
#   cargo build --release -p groksweep -p groksweep-bench
#   target/release/synthetic-results /tmp/synthetic
#   bench/reading/run.sh /tmp/synthetic VENV    # a virtualenv with duckdb, pandas, pyarrow
set -euo pipefail
cd "$(dirname "$0")/../.."
data=${1:-/tmp/synthetic}
python=${2:-python3}/bin/python
query="SELECT trial_id, MIN(step) AS grokked_at FROM progress WHERE measure = 'test_accuracy' AND value >= 0.95 GROUP BY trial_id"
seconds() { local start=$(date +%s.%N); "$@" > /dev/null; echo "$(date +%s.%N) - $start" | bc; }
for round in 1 2 3; do
    for layout in rolled compacted; do
        dir=$data; [[ $layout == rolled ]] && dir=$data-rolled
        progress="$dir/results/synthetic/progress/*/*.parquet"
        files=$(find "$dir/results/synthetic/progress" -name '*.parquet' | wc -l)
        sql=$(seconds target/release/groksweep sql "$query" --data-dir "$dir" --sweep synthetic)
        duck=$(seconds "$python" -c "import duckdb, sys; r = duckdb.sql(\"SELECT trial_id, MIN(step) FROM read_parquet('$progress') WHERE measure = 'test_accuracy' AND value >= 0.95 GROUP BY trial_id\").fetchall(); assert len(r) == 1000, len(r)")
        pandas=$(seconds "$python" -c "import pandas as pd; t = pd.read_parquet('$dir/results/synthetic/trials'); assert len(t) == 1000")
        echo "round $round  $layout ($files progress files): groksweep sql ${sql}s  duckdb ${duck}s  pandas trials ${pandas}s"
    done
done
# The interpreters' start alone, for reference.
echo "python3 -c 'import duckdb': $(seconds "$python" -c 'import duckdb')s; 'import pandas': $(seconds "$python" -c 'import pandas')s"
