"""The Nanda et al. 2023 training step in PyTorch (CPU), computing exactly the
function groksweep's Rust step computes, with the same algebraic shortcuts.

`bench/nanda_step.py` is the authors' formulation: every position through
attention, the MLP and the unembedding, then the last position's logits.
groksweep's step (worker/src/transformer/model.rs and pack.rs) takes these
shortcuts, and this script takes each of them too:

- the embedding is a table of token + position rows, [3 · d_vocab, d_model],
  built once per step and gathered by (position, token);
- with one layer and a causal mask the last position's output depends on the
  other positions only through their keys and values, so the query, the
  attention output, the MLP and the unembedding are computed for the last
  position alone (keys and values for all three);
- the attention's inputs are table rows and nothing else, so the keys and
  values of the 3 · d_vocab table rows are projected once and each input
  gathers its rows (342 projected rows at p = 113 instead of 3 · n);
- every input's last token is `=`, so the last position's residual and query
  are one table row for all inputs; its query meets every table row's key
  once, and each input gathers its three attention scores per head from that
  score table instead of gathering key rows;
- the loss is the per-row cross-entropy written as
  softplus(LSE_{i≠c}(x_i) − x_c) in f32 (the form that keeps a tiny loss's
  digits; the authors take an f64 log-softmax), weighted by 1/n and summed;
- AdamW with betas (0.9, 0.98), eps 1e-8, decoupled weight decay 1, lr 1e-3.

Before timing, the script checks that its logits equal the authors' full
causal forward on the same weights and that its loss equals the f64
log-softmax cross-entropy.

Usage: python bench/nanda_step_same_work.py [steps] [p] [device]
(device `cpu` by default; `cuda` times the step on a GPU, bench/gpu/run.sh)
"""
import math
import sys

import torch

from nanda_step import Model, adamw, d_head, d_model, n_heads, time_steps, training_pairs


class SameWork(Model):
    """The authors' model (its `forward` is their full causal forward) with
    groksweep's forward beside it."""

    def same_work_forward(self, every_position):
        """groksweep's forward: `every_position` [n · 3] indexes rows of the
        token + position table; every input's last token is `=`."""
        n, d_vocab = every_position.shape[0] // 3, self.d_vocab
        table = (self.W_E[None, :, :] + self.W_pos[:, None, :]).reshape(3 * d_vocab, d_model)
        equals = table[3 * d_vocab - 1]  # position 2, token `=`: the last position's row for every input
        query = (equals @ self.W_Q).view(n_heads, d_head)
        score_table = ((table @ self.W_K).view(3 * d_vocab, n_heads, d_head) * query).sum(-1) / math.sqrt(d_head)  # [3 · d_vocab, h]
        pattern = score_table[every_position].view(n, 3, n_heads).softmax(1)  # [n, 3, h]
        values = (table @ self.W_V)[every_position].view(n, 3, n_heads, d_head)
        mixed = torch.einsum("nph,nphd->nhd", pattern, values).reshape(n, d_model)
        after_attention = equals + mixed @ self.W_O
        mlp_post = torch.relu(after_attention @ self.W_in + self.b_in)
        after_mlp = after_attention + mlp_post @ self.W_out + self.b_out
        return after_mlp @ self.W_U  # [n, d_vocab]


def cross_entropy_rows(logits, one_hot):
    """worker/src/transformer/pack.rs::cross_entropy_rows, term by term."""
    label_logit = (logits * one_hot).sum(1, keepdim=True)
    others = logits + one_hot * -1e30
    shift = others.max(1, keepdim=True).values.detach()
    others_lse = (others - shift).exp().sum(1, keepdim=True).log() + shift
    z = others_lse - label_logit
    return torch.relu(z) + (-z.abs()).exp().log1p()


def main():
    steps = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    p = int(sys.argv[2]) if len(sys.argv) > 2 else 113
    device = sys.argv[3] if len(sys.argv) > 3 else "cpu"
    torch.manual_seed(0)
    model = SameWork(p).to(device)
    d_vocab = model.d_vocab
    tokens, labels = training_pairs(p)  # [n, 3], [n]
    tokens, labels = tokens.to(device), labels.to(device)
    assert (tokens[:, 2] == d_vocab - 1).all(), "every input ends with `=`"
    every_position = (torch.arange(3, device=device) * d_vocab + tokens).reshape(-1)
    one_hot = torch.nn.functional.one_hot(labels, d_vocab).float()
    weights = torch.full((len(tokens), 1), 1.0 / len(tokens), device=device)

    with torch.no_grad():
        ours = model.same_work_forward(every_position)
        authors = model(tokens)
        assert torch.allclose(ours, authors, atol=1e-5, rtol=1e-5), (ours - authors).abs().max()
        loss_ours = (cross_entropy_rows(ours, one_hot) * weights).sum().item()
        loss_f64 = -ours.double().log_softmax(-1).gather(-1, labels[:, None]).mean().item()
        assert abs(loss_ours - loss_f64) < 1e-5 * loss_f64, (loss_ours, loss_f64)

    optimizer = adamw(model)

    def step():
        logits = model.same_work_forward(every_position)
        loss = (cross_entropy_rows(logits, one_hot) * weights).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    ms = time_steps(step, steps, device)
    print(
        f"torch={torch.__version__} device={device} threads={torch.get_num_threads()} cpu={torch.backends.cpu.get_cpu_capability()} "
        f"same_work=true train_pairs={len(tokens)} steps={steps} ms_per_step={ms:.1f}"
    )


if __name__ == "__main__":
    main()
