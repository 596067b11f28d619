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
    "effective_rank_w_e", "effective_rank_w_l", "softmax_collapse", "zero_loss_fraction",
    "norm_w_e", "norm_w_pos", "norm_w_q", "norm_w_k", "norm_w_v", "norm_w_o", "norm_w_in", "norm_w_out", "norm_w_u",
}, progress["measure"].unique()
assert not progress.duplicated(["trial_id", "step", "measure"]).any()
assert set(progress["trial_id"]) == set(trials["trial_id"])
curves = progress.pivot_table(index=["trial_id", "step"], columns="measure", values="value")
assert curves["test_accuracy"].between(0, 1).all()
assert curves["gini_w_e"].between(0, 1).all()
assert curves["softmax_collapse"].between(0, 1).all() and curves["zero_loss_fraction"].between(0, 1).all()
assert (curves["norm_w_u"] > 0).all() and curves["effective_rank_w_e"].between(1, 11).all()
assert set(spectra["matrix"].astype(str)) == {"W_E", "W_L", "key_neurons"}
assert not spectra.duplicated(["trial_id", "step", "matrix", "frequency"]).any()
assert spectra["frequency"].between(0, 5).all()  # p = 11: frequencies 0..5
print(f"pandas check: {len(trials)} trials, {len(progress)} progress rows, {len(spectra)} spectra rows: 1 passed, 0 failed")
