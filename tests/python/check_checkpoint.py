"""Load every final checkpoint of a groksweep sweep with numpy + safetensors,
rebuild the trial's split from the checkpoint's metadata, run the
TransformerLens-convention forward pass and check that it reproduces the
test accuracy stored in the trials table."""
import math
import sys

import numpy as np
import pandas as pd
from safetensors import safe_open

MASK = (1 << 64) - 1


class SplitMix64:
    def __init__(self, seed):
        self.state = seed & MASK

    def next(self):
        self.state = (self.state + 0x9E3779B97F4A7C15) & MASK
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        return z ^ (z >> 31)

    def below(self, bound):
        return (self.next() * bound) >> 64


def split(p, fraction, data_seed):
    """All (a, b) in lexicographic order, Fisher-Yates shuffled; the first floor(fraction p^2) train."""
    pairs = [(a, b) for a in range(p) for b in range(p)]
    rng = SplitMix64(data_seed)
    for i in range(len(pairs) - 1, 0, -1):
        j = rng.below(i + 1)
        pairs[i], pairs[j] = pairs[j], pairs[i]
    n_train = min(math.floor(fraction * p * p), p * p)
    return pairs[:n_train], pairs[n_train:]


def forward(w, tokens):
    """Logits at the last position of a 1-layer attention+MLP transformer, no LayerNorm."""
    x = w["embed.W_E"][tokens] + w["pos_embed.W_pos"][None]
    q = np.einsum("npd,hde->nhpe", x, w["blocks.0.attn.W_Q"]) + w["blocks.0.attn.b_Q"][None, :, None]
    k = np.einsum("npd,hde->nhpe", x, w["blocks.0.attn.W_K"]) + w["blocks.0.attn.b_K"][None, :, None]
    v = np.einsum("npd,hde->nhpe", x, w["blocks.0.attn.W_V"]) + w["blocks.0.attn.b_V"][None, :, None]
    scores = np.einsum("nhqe,nhke->nhqk", q, k) / math.sqrt(q.shape[-1])
    seq = tokens.shape[1]
    scores = np.where(np.tril(np.ones((seq, seq), dtype=bool)), scores, -np.inf)
    pattern = np.exp(scores - scores.max(-1, keepdims=True))
    pattern /= pattern.sum(-1, keepdims=True)
    z = np.einsum("nhqk,nhke->nqhe", pattern, v)
    x = x + np.einsum("nqhe,hem->nqm", z, w["blocks.0.attn.W_O"]) + w["blocks.0.attn.b_O"]
    post = np.maximum(x @ w["blocks.0.mlp.W_in"] + w["blocks.0.mlp.b_in"], 0)
    x = x + post @ w["blocks.0.mlp.W_out"] + w["blocks.0.mlp.b_out"]
    return (x @ w["unembed.W_U"] + w["unembed.b_U"])[:, -1]


sweep_dir = sys.argv[1]
trials = pd.read_parquet(f"{sweep_dir}/trials")
checked = 0
for trial in trials.itertuples():
    with safe_open(f"{sweep_dir}/{trial.final_checkpoint}", framework="np") as f:
        meta = f.metadata()
        weights = {name: f.get_tensor(name) for name in f.keys()}
    assert meta["format"] == "groksweep.transformer.v1", meta
    p = int(meta["modulus"])
    assert int(meta["step"]) == trial.epochs, (meta["step"], trial.epochs)
    assert weights["blocks.0.attn.W_Q"].shape == (int(meta["n_heads"]), int(meta["d_model"]), int(meta["d_head"]))
    _, test_pairs = split(p, float(meta["data_fraction"]), int(meta["data_seed"]))
    tokens = np.array([[a, b, p] for a, b in test_pairs])
    labels = np.array([(a + b) % p for a, b in test_pairs])
    accuracy = float((forward(weights, tokens)[:, :p].argmax(-1) == labels).mean())
    # f32 arithmetic in another order may flip a near-tie: allow one pair.
    assert abs(accuracy - trial.final_test_accuracy) <= 1.0 / len(test_pairs) + 1e-12, (
        trial.trial_id, accuracy, trial.final_test_accuracy)
    checked += 1
print(f"checkpoint check: {checked} final checkpoints reproduce their stored test accuracy: 1 passed, 0 failed")
