"""The reproduction across seeds (issue 15): per trial of a results directory
of bench/reproduction/fractions.yaml, the first evaluated epoch whose test
loss is below 1 and below 0.01, the test-loss peak (the largest evaluated
test loss of the run) and its epoch, the epoch train accuracy first reached
0.99 and the epoch test accuracy first reached 0.95; then per training
fraction the median and range of each over the seeds. A trial that never crossed a line within its
epochs is shown as `>E` (E its last evaluated epoch) and ranks above every
crossing in the median.

    python bench/reproduction/across_seeds.py <data-dir>/results/<sweep> <out.csv> [out.png]

Needs pandas and pyarrow (and matplotlib for the figure: test loss against
epoch, one line per trial, coloured by fraction).
"""
import sys

import pandas as pd

sweep_dir, out = sys.argv[1], sys.argv[2]
figure = sys.argv[3] if len(sys.argv) > 3 else None
trials = pd.read_parquet(f"{sweep_dir}/trials")
progress = pd.read_parquet(f"{sweep_dir}/progress")
progress["measure"] = progress["measure"].astype(str)
curves = progress.pivot_table(index=["trial_id", "step"], columns="measure", values="value").sort_index()

measured = set(curves.index.get_level_values(0))
rows = []
for trial in trials.itertuples():
    if trial.trial_id not in measured:
        print(f"{trial.trial_id} (fraction {trial.data_fraction}, seed {trial.seed}): no progress yet, left out", file=sys.stderr)
        continue
    curve = curves.loc[trial.trial_id]
    last = int(curve.index.max())

    def first(mask):
        hits = curve.index[mask]
        return int(hits.min()) if len(hits) else None

    memorised = first(curve.train_accuracy >= 0.99)
    rows.append(
        {
            "trial_id": trial.trial_id,
            "data_fraction": trial.data_fraction,
            "seed": trial.seed,
            "last_epoch": last,
            "memorised_at": memorised,
            "peak_test_loss": curve.test_loss.max(),
            "peak_at": int(curve.test_loss.idxmax()),
            "test_loss_below_1": first(curve.test_loss < 1),
            "test_loss_below_0_01": first(curve.test_loss < 0.01),
            "grokked_at": first(curve.test_accuracy >= 0.95),
            "final_test_loss": curve.test_loss.iloc[-1],
        }
    )
table = pd.DataFrame(rows).sort_values(["data_fraction", "seed"])
table.to_csv(out, index=False)


def summary(values, lasts):
    """median [min, max] of epochs; a trial that never crossed counts as above every crossing."""
    keyed = [(value if value == value and value is not None else float("inf"), last) for value, last in zip(values, lasts)]
    keyed.sort()
    shown = [f"{int(v):,}" if v != float("inf") else f">{last:,}" for v, last in keyed]
    median = shown[len(shown) // 2]
    return f"{median} [{shown[0]} – {shown[-1]}]"


print("| fraction | seeds | train acc ≥ 0.99 | test-loss peak epoch | peak test loss | test loss < 1 | test acc ≥ 0.95 | test loss < 0.01 |")
print("|---|---|---|---|---|---|---|---|")
for fraction, group in table.groupby("data_fraction"):
    lasts = list(group.last_epoch)
    peaks = sorted(group.peak_test_loss.dropna())
    peak = f"{peaks[len(peaks) // 2]:.1f} [{peaks[0]:.1f} – {peaks[-1]:.1f}]" if peaks else "—"
    print(
        f"| {fraction} | {len(group)} | {summary(list(group.memorised_at), lasts)} | {summary(list(group.peak_at), lasts)} | {peak} | "
        f"{summary(list(group.test_loss_below_1), lasts)} | {summary(list(group.grokked_at), lasts)} | "
        f"{summary(list(group.test_loss_below_0_01), lasts)} |"
    )

if figure:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axis = plt.subplots(figsize=(9, 5))
    colours = dict(zip(sorted(table.data_fraction.unique()), ["tab:red", "tab:orange", "tab:green", "tab:blue"]))
    for trial in table.itertuples():
        curve = curves.loc[trial.trial_id]
        label = f"fraction {trial.data_fraction}" if trial.seed == 0 else None
        axis.plot(curve.index, curve.test_loss, color=colours.get(trial.data_fraction, "grey"), alpha=0.8, label=label)
    axis.set_yscale("log")
    axis.axhline(1, color="black", linewidth=0.5)
    axis.axhline(0.01, color="black", linewidth=0.5, linestyle="--")
    axis.set_xlabel("epoch")
    axis.set_ylabel("test loss")
    axis.set_title("p = 113, weight decay 1, lr 1e-3: five seeds per training fraction")
    axis.legend()
    fig.tight_layout()
    fig.savefig(figure, dpi=110)
