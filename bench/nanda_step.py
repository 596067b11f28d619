"""Reference timing of the Nanda et al. 2023 training step in PyTorch (CPU),
in the authors' formulation: every position through attention, the MLP and
the unembedding, then the last position's logits, with an f64 log-softmax.

Same model and recipe as groksweep's transformer family: p = 113, 30% of pairs
(3,830) full batch, d_model 128, 4 heads, MLP 512, no LayerNorm, AdamW
(0.9, 0.98), weight decay 1. `bench/nanda_step_same_work.py` computes exactly
groksweep's function instead (bench/RESULTS.md reports both).
Usage: python bench/nanda_step.py [steps]
"""
import math
import sys
import time

import torch

d_model, n_heads, d_mlp = 128, 4, 512
d_head = d_model // n_heads


class Model(torch.nn.Module):
    def __init__(self, p):
        super().__init__()
        self.d_vocab = d_vocab = p + 1
        scale = 1 / math.sqrt(d_model)
        self.W_E = torch.nn.Parameter(torch.randn(d_vocab, d_model) * scale)
        self.W_pos = torch.nn.Parameter(torch.randn(3, d_model) * scale)
        self.W_Q = torch.nn.Parameter(torch.randn(d_model, d_model) * scale)
        self.W_K = torch.nn.Parameter(torch.randn(d_model, d_model) * scale)
        self.W_V = torch.nn.Parameter(torch.randn(d_model, d_model) * scale)
        self.W_O = torch.nn.Parameter(torch.randn(d_model, d_model) * scale)
        self.W_in = torch.nn.Parameter(torch.randn(d_model, d_mlp) * scale)
        self.b_in = torch.nn.Parameter(torch.zeros(d_mlp))
        self.W_out = torch.nn.Parameter(torch.randn(d_mlp, d_model) * scale)
        self.b_out = torch.nn.Parameter(torch.zeros(d_model))
        self.W_U = torch.nn.Parameter(torch.randn(d_model, d_vocab) / math.sqrt(d_vocab))

    def forward(self, tokens):
        # Full sequence with a causal mask, as TransformerLens computes it.
        x = self.W_E[tokens] + self.W_pos  # [n, 3, d]
        n = x.shape[0]
        q = (x @ self.W_Q).view(n, 3, n_heads, d_head).transpose(1, 2)
        k = (x @ self.W_K).view(n, 3, n_heads, d_head).transpose(1, 2)
        v = (x @ self.W_V).view(n, 3, n_heads, d_head).transpose(1, 2)
        scores = q @ k.transpose(-1, -2) / math.sqrt(d_head)
        mask = torch.triu(torch.ones(3, 3, dtype=torch.bool, device=x.device), 1)
        pattern = scores.masked_fill(mask, float("-inf")).softmax(-1)
        z = (pattern @ v).transpose(1, 2).reshape(n, 3, d_model)
        x = x + z @ self.W_O
        x = x + torch.relu(x @ self.W_in + self.b_in) @ self.W_out + self.b_out
        return (x @ self.W_U)[:, -1]


def training_pairs(p):
    """30% of the p² pairs: the inputs `[a, b, =]` and their labels."""
    pairs = torch.tensor([(a, b) for a in range(p) for b in range(p)])
    perm = torch.randperm(p * p)
    train = pairs[perm[: int(0.3 * p * p)]]
    return torch.cat([train, torch.full((len(train), 1), p)], dim=1), (train[:, 0] + train[:, 1]) % p


def adamw(model):
    return torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.98), eps=1e-8, weight_decay=1.0)


def time_steps(step, steps, device="cpu"):
    """ms per step over `steps` timed steps after 10 warm-up steps (on a GPU,
    up to the end of the last step's kernels)."""
    def wait():
        if device != "cpu":
            torch.cuda.synchronize()

    for _ in range(10):
        step()
    wait()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    wait()
    return (time.perf_counter() - start) * 1e3 / steps


def main():
    steps = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    p = 113
    torch.manual_seed(0)
    model = Model(p)
    tokens, labels = training_pairs(p)
    optimizer = adamw(model)

    def step():
        logits = model(tokens).to(torch.float64)
        loss = -logits.log_softmax(-1).gather(-1, labels[:, None]).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    ms = time_steps(step, steps)
    print(f"torch={torch.__version__} threads={torch.get_num_threads()} train_pairs={len(tokens)} steps={steps} ms_per_step={ms:.1f}")


if __name__ == "__main__":
    main()
