"""Curves of a groksweep diffusion trial: a CSV of every scalar measure per
step, the decision curves, and a PNG.

    python bench/diffusion/plot.py <data-dir>/results/<sweep> <out-prefix> [trial-id]

Without a trial id the sweep must hold one trial.

Needs pandas, pyarrow and matplotlib.
"""
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

sweep_dir, prefix = sys.argv[1], sys.argv[2]
progress = pd.read_parquet(f"{sweep_dir}/progress")
progress["measure"] = progress["measure"].astype(str)
trial_ids = sorted(progress["trial_id"].unique())
trial = sys.argv[3] if len(sys.argv) > 3 else None
if trial is None and len(trial_ids) != 1:
    sys.exit(f"the sweep holds trials {trial_ids}; name one")
progress = progress[progress["trial_id"] == (trial or trial_ids[0])]
curves = progress.pivot_table(index="step", columns="measure", values="value").sort_index()
curves.to_csv(f"{prefix}-curves.csv")

fig, axes = plt.subplots(2, 3, figsize=(15, 8))
ax = axes[0, 0]
ax.plot(curves.index, curves["train_loss"], label="train")
ax.plot(curves.index, curves["test_loss"], label="test")
ax.set_yscale("log"); ax.set_title("flow-matching loss (MSE of x̂0)"); ax.legend()
ax = axes[0, 1]
ax.plot(curves.index, curves["train_accuracy"], label="train")
ax.plot(curves.index, curves["test_accuracy"], label="test")
ax.set_ylim(-0.02, 1.02); ax.set_title("generation accuracy"); ax.legend()
ax = axes[0, 2]
ax.plot(curves.index, curves["sum_squared_weights"])
ax.set_title("Σθ²")
ax = axes[1, 0]
for measure, label in [("gini_operand", "Gini (operand repr.)"), ("key_neuron_fraction", "key-neuron fraction")]:
    ax.plot(curves.index, curves[measure], label=label)
ax2 = ax.twinx()
ax2.plot(curves.index, curves["spectral_entropy"], color="grey", label="spectral entropy (right)")
ax.set_title("Fourier structure"); ax.legend(loc="upper left"); ax2.legend(loc="lower right")
ax = axes[1, 1]
decision = [c for c in curves.columns if c.startswith("decision_accuracy_test@")]
for step in curves.index[:: max(1, len(curves.index) // 6)].tolist() + [curves.index[-1]]:
    points = sorted((float(c.split("@")[1]), curves.loc[step, c]) for c in decision)
    ax.plot([t for t, _ in points], [a for _, a in points], marker=".", label=f"step {step}")
ax.invert_xaxis(); ax.set_xlabel("t (sampling runs right to left → 0)")
ax.set_title("decision curve, test pairs"); ax.legend(fontsize=7)
ax = axes[1, 2]
for column in [c for c in curves.columns if c.startswith("switch_follows_new@")]:
    ax.plot(curves.index, curves[column], label=column.replace("switch_follows_", ""))
ax.set_ylim(-0.02, 1.02); ax.set_title("operand switch: sample follows the new sum"); ax.legend(fontsize=7)
for row in axes:
    for ax in row:
        if ax is not axes[1, 1]:
            ax.set_xlabel("step")
fig.tight_layout()
fig.savefig(f"{prefix}-curves.png", dpi=90)
print(f"wrote {prefix}-curves.csv and {prefix}-curves.png ({len(curves)} evaluated steps)")
