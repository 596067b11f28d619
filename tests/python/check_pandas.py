"""Read a groksweep results directory with pandas, as the README shows, and check it."""
import sys

import pandas as pd

sweep_dir = sys.argv[1]
trials = pd.read_parquet(f"{sweep_dir}/trials")
progress = pd.read_parquet(f"{sweep_dir}/progress")

assert len(trials) == 4, trials
assert (trials["status"] == "done").all(), trials["status"]
assert set(progress["measure"].astype(str)) == {
    "train_loss", "test_loss", "train_accuracy", "test_accuracy", "sum_squared_weights"
}, progress["measure"].unique()
assert not progress.duplicated(["trial_id", "step", "measure"]).any()
assert set(progress["trial_id"]) == set(trials["trial_id"])
curves = progress.pivot_table(index=["trial_id", "step"], columns="measure", values="value")
assert curves["test_accuracy"].between(0, 1).all()
print(f"pandas check: {len(trials)} trials, {len(progress)} progress rows: 1 passed, 0 failed")
