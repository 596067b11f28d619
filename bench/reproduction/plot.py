"""Curves of a groksweep transformer trial: CSV of every measure per step and
a PNG of the paper's progress measures, with the paper's phase boundaries.

    python bench/reproduction/plot.py <data-dir>/results/<sweep> <out-prefix>

Needs pandas, pyarrow and matplotlib.
"""
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

sweep_dir, prefix = sys.argv[1], sys.argv[2]
trials = pd.read_parquet(f"{sweep_dir}/trials")
progress = pd.read_parquet(f"{sweep_dir}/progress")
progress["measure"] = progress["measure"].astype(str)
curves = progress.pivot_table(index="step", columns="measure", values="value").sort_index()
curves.to_csv(f"{prefix}-curves.csv")
spectra = pd.read_parquet(f"{sweep_dir}/spectra")
spectra["matrix"] = spectra["matrix"].astype(str)
keys = spectra[(spectra.matrix == "key_neurons") & (spectra.norm > 0)]
keys.groupby("step")["frequency"].apply(lambda f: " ".join(map(str, sorted(f)))).to_csv(f"{prefix}-key-frequencies.csv")
embed = spectra[spectra.matrix == "W_E"].pivot_table(index="step", columns="frequency", values="norm")
embed.to_csv(f"{prefix}-w-e-spectrum.csv")

boundaries = [1400, 9400, 14000]  # the paper's phase boundaries (seed 0)
fig, axes = plt.subplots(2, 3, figsize=(15, 8), sharex=True)
panels = [
    ("loss (log)", ["train_loss", "test_loss"], True),
    ("accuracy", ["train_accuracy", "test_accuracy"], False),
    ("restricted / excluded loss (log)", ["restricted_loss", "excluded_loss", "restricted_loss_final_k", "excluded_loss_final_k"], True),
    ("Gini of Fourier norms", ["gini_w_e", "gini_w_l"], False),
    ("sum of squared weights", ["sum_squared_weights"], False),
    ("key frequencies", ["key_frequency_count", "key_neuron_fraction"], False),
]
for axis, (title, names, log) in zip(axes.flat, panels):
    for name in names:
        if name in curves:
            series = curves[name].dropna()
            axis.plot(series.index, series.values, label=name, marker="." if name.endswith("final_k") else None, markersize=3)
    for boundary in boundaries:
        axis.axvline(boundary, color="grey", linestyle=":", linewidth=1)
    if log:
        axis.set_yscale("log")
    axis.set_title(title)
    axis.legend(fontsize=8)
for axis in axes[1]:
    axis.set_xlabel("epoch")
trial = trials.iloc[0]
fig.suptitle(f"{trial.sweep}: p={trial.modulus}, fraction={trial.data_fraction}, wd={trial.weight_decay}, seed={trial.seed}; dotted: paper's 1.4k / 9.4k / 14k")
fig.tight_layout()
fig.savefig(f"{prefix}-curves.png", dpi=90)
print(f"wrote {prefix}-curves.csv, {prefix}-key-frequencies.csv, {prefix}-w-e-spectrum.csv, {prefix}-curves.png")
