"""Read a groksweep results directory with pandas, as the README shows, and check it."""
import sys

import pandas as pd

sweep_dir = sys.argv[1]
trials = pd.read_parquet(f"{sweep_dir}/trials")
progress = pd.read_parquet(f"{sweep_dir}/progress")
spectra = pd.read_parquet(f"{sweep_dir}/spectra")

assert len(trials) == 4, trials
assert (trials["status"] == "done").all(), trials["status"]
assert set(progress["measure"].astype(str)) == {
    "train_loss", "test_loss", "train_accuracy", "test_accuracy", "sum_squared_weights",
    "restricted_loss", "excluded_loss", "gini_w_e", "gini_w_l", "key_frequency_count",
    "key_neuron_fraction", "restricted_loss_final_k", "excluded_loss_final_k",
}, progress["measure"].unique()
assert not progress.duplicated(["trial_id", "step", "measure"]).any()
assert set(progress["trial_id"]) == set(trials["trial_id"])
curves = progress.pivot_table(index=["trial_id", "step"], columns="measure", values="value")
assert curves["test_accuracy"].between(0, 1).all()
assert curves["gini_w_e"].between(0, 1).all()
assert set(spectra["matrix"].astype(str)) == {"W_E", "W_L", "key_neurons"}
assert not spectra.duplicated(["trial_id", "step", "matrix", "frequency"]).any()
assert spectra["frequency"].between(0, 5).all()  # p = 11: frequencies 0..5
print(f"pandas check: {len(trials)} trials, {len(progress)} progress rows, {len(spectra)} spectra rows: 1 passed, 0 failed")
