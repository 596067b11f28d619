//! The one-layer transformer of Nanda et al. 2023 (no LayerNorm), as a pack:
//! every parameter has a leading trial dimension, so K trials train as one
//! program and every layer is one batched matrix product. A single trial is
//! a pack of one.
//!
//! Weights are stored in the orientation that makes the forward pass a chain
//! of plain matrix products (`x · W`). Relation to TransformerLens names, for
//! trial k: `embed[k]` = `embed.W_E` [d_vocab, d_model];
//! `w_q[k][:, h·d_head..(h+1)·d_head]ᵀ` = `blocks.0.attn.W_Q[h]`; `w_o[k]` rows
//! `h·d_head..` = `W_O[h]`; `w_in[k]` = `W_in` [d_model, d_mlp]; `unembed[k]` =
//! `unembed.W_U` [d_model, d_vocab].

use burn::config::Config;
use burn::module::{Module, Param};
use burn::tensor::activation::relu;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use sweep_core::split::SplitMix64;

use crate::layout::add_per_trial;
use crate::random::normal_samples;

/// Sequence length: `[a, b, =]`.
pub const SEQ_LEN: usize = 3;

/// Model sizes; defaults are the paper's.
#[derive(Config, Debug)]
pub struct TransformerConfig {
    /// Modulus p; the vocabulary is p + 1 (token p is `=`).
    pub modulus: usize,
    /// Residual width.
    #[config(default = 128)]
    pub d_model: usize,
    /// Attention heads.
    #[config(default = 4)]
    pub n_heads: usize,
    /// MLP width.
    #[config(default = 512)]
    pub d_mlp: usize,
    /// Initialisation seed.
    #[config(default = 0)]
    pub seed: u64,
}

/// A pack of K models (K = 1 for one trial).
#[derive(Module, Debug)]
pub struct Transformer<B: Backend> {
    /// Token embedding W_E, [K, d_vocab, d_model].
    pub embed: Param<Tensor<B, 3>>,
    /// Positional embedding W_pos, [K, 3, d_model].
    pub pos_embed: Param<Tensor<B, 3>>,
    /// Queries, [K, d_model, n_heads · d_head].
    pub w_q: Param<Tensor<B, 3>>,
    /// Keys, [K, d_model, n_heads · d_head].
    pub w_k: Param<Tensor<B, 3>>,
    /// Values, [K, d_model, n_heads · d_head].
    pub w_v: Param<Tensor<B, 3>>,
    /// Output projection, [K, n_heads · d_head, d_model].
    pub w_o: Param<Tensor<B, 3>>,
    /// MLP in, [K, d_model, d_mlp].
    pub w_in: Param<Tensor<B, 3>>,
    /// MLP in bias, [K, d_mlp].
    pub b_in: Param<Tensor<B, 2>>,
    /// MLP out, [K, d_mlp, d_model].
    pub w_out: Param<Tensor<B, 3>>,
    /// MLP out bias, [K, d_model].
    pub b_out: Param<Tensor<B, 2>>,
    /// Unembedding W_U, [K, d_model, d_vocab].
    pub unembed: Param<Tensor<B, 3>>,
    /// Attention heads.
    pub n_heads: usize,
}

/// What one forward pass yields for the last position of every input of every trial.
#[derive(Debug)]
pub struct ForwardOutput<B: Backend> {
    /// Logits over the p + 1 tokens, [K, batch, d_vocab].
    pub logits: Tensor<B, 3>,
    /// Post-ReLU MLP activations, [K, batch, d_mlp].
    pub mlp_post: Tensor<B, 3>,
}

/// How the inputs of a pack pick their rows of the token + position table
/// (and of its projections) in [`Transformer::forward`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gather {
    /// `select` by row index. Its gradient adds each input's row gradient
    /// into its table row, one input after another: at memory speed on a
    /// CPU, and what the CPU backends use.
    Select,
    /// A product with a one-hot matrix per position, [K, batch, d_vocab],
    /// whose gradient is another product: what the GPU backends use.
    /// burn-cubecl 0.21 adds a `select`'s gradient with one GPU thread per
    /// column of the table, each walking every index in turn
    /// (`select_assign_kernel`), so the step's eight gathers were serial in
    /// K · batch · heads: at p = 113 a pack of 20 took 789 ms a step on an
    /// H200 against 23 ms for one trial (bench/RESULTS.md, "On a GPU").
    Products,
}

/// The environment variable that overrides [`Gather::for_backend`]:
/// `select` or `products` (for measuring one against the other on a device).
pub const GATHER_ENV: &str = "GROKSWEEP_GATHER";

impl Gather {
    /// The gather for backend `B`: [`GATHER_ENV`] if it is set, else
    /// [`Gather::default_for`] the backend's name.
    pub fn for_backend<B: Backend>(device: &B::Device) -> Self {
        static CHOSEN: std::sync::OnceLock<Option<Gather>> = std::sync::OnceLock::new();
        let chosen = CHOSEN.get_or_init(|| {
            let value = std::env::var(GATHER_ENV).ok()?;
            let parsed = Gather::parse(&value);
            if parsed.is_none() {
                tracing::warn!(variable = GATHER_ENV, value, "not `select` or `products`: ignored");
            }
            parsed
        });
        chosen.unwrap_or_else(|| Gather::default_for(&B::name(device)))
    }

    /// [`Gather::Products`] on burn's cubecl backends (CUDA, wgpu; see
    /// `backend::is_cubecl`), else [`Gather::Select`].
    pub fn default_for(backend_name: &str) -> Self {
        if crate::backend::is_cubecl(backend_name) { Gather::Products } else { Gather::Select }
    }

    fn parse(value: &str) -> Option<Self> {
        match value {
            "select" => Some(Gather::Select),
            "products" => Some(Gather::Products),
            _ => None,
        }
    }
}

/// Inputs of a pack as gather indices into the per-trial table of token +
/// position embeddings (built once per set of inputs, see [`PackInputs::new`]).
#[derive(Debug, Clone)]
pub struct PackInputs<B: Backend> {
    /// For each position j, the row of (trial, j, token) of every input of
    /// every trial, [K · batch]; the last is the last position's.
    positions: [Tensor<B, 1, Int>; SEQ_LEN],
    /// With [`Gather::Products`]: for each position j, the one-hot rows of
    /// the inputs' tokens there, [K, batch, d_vocab].
    one_hot: Option<[Tensor<B, 3>; SEQ_LEN]>,
    trials: usize,
    batch: usize,
}

impl<B: Backend> PackInputs<B> {
    /// `tokens[k]` holds trial k's inputs, each `[a, b, =]`; every trial has
    /// `batch` of them. `d_vocab` is p + 1. They gather as the backend does
    /// best ([`Gather::for_backend`]).
    ///
    /// # Panics
    /// If an input's last token is not `=` (token p = `d_vocab − 1`):
    /// [`Transformer::forward`] takes the last position's query and residual
    /// from that one row of the table.
    pub fn new(tokens: &[Vec<[i64; SEQ_LEN]>], d_vocab: usize, device: &B::Device) -> Self {
        Self::with_gather(tokens, d_vocab, device, Gather::for_backend::<B>(device))
    }

    /// As [`PackInputs::new`], gathering by `gather`.
    pub fn with_gather(tokens: &[Vec<[i64; SEQ_LEN]>], d_vocab: usize, device: &B::Device, gather: Gather) -> Self {
        let trials = tokens.len();
        let batch = tokens.first().map_or(0, Vec::len);
        let equals = d_vocab as i64 - 1;
        assert!(tokens.iter().flatten().all(|input| input[SEQ_LEN - 1] == equals), "every input ends with `=` (token {equals})");
        debug_assert!(tokens.iter().all(|inputs| inputs.len() == batch), "every trial of a pack has the same number of inputs");
        let positions = std::array::from_fn(|position| {
            let mut rows = Vec::with_capacity(trials * batch);
            for (trial, inputs) in tokens.iter().enumerate() {
                rows.extend(inputs.iter().map(|input| ((trial * SEQ_LEN + position) * d_vocab) as i64 + input[position]));
            }
            Tensor::from_data(TensorData::new(rows, [trials * batch]), device)
        });
        let one_hot = (gather == Gather::Products).then(|| {
            std::array::from_fn(|position| {
                let mut values = vec![0f32; trials * batch * d_vocab];
                for (row, input) in tokens.iter().flatten().enumerate() {
                    values[row * d_vocab + input[position] as usize] = 1.0;
                }
                Tensor::from_data(TensorData::new(values, [trials, batch, d_vocab]), device)
            })
        });
        PackInputs { positions, one_hot, trials, batch }
    }

    /// Inputs per trial.
    pub fn batch(&self) -> usize {
        self.batch
    }
}

impl TransformerConfig {
    /// Vocabulary size p + 1.
    pub fn d_vocab(&self) -> usize {
        self.modulus + 1
    }

    /// Build a pack of one: every weight ~ N(0, 1/d_model) except W_U ~
    /// N(0, 1/d_vocab); biases 0. The values depend only on the sizes and the
    /// seed, so a trial starts the same alone or in a pack ([`Transformer::stack`]).
    pub fn init<B: Backend>(&self, device: &B::Device) -> Transformer<B> {
        let mut rng = SplitMix64::new(self.seed ^ 0x6772_6f6b_5f69_6e69);
        let weight_scale = 1.0 / (self.d_model as f64).sqrt();
        let mut matrix = |rows: usize, columns: usize, scale: f64| {
            let values = normal_samples(&mut rng, rows * columns, scale);
            Param::from_tensor(Tensor::<B, 3>::from_data(TensorData::new(values, [1, rows, columns]), device))
        };
        let d_attn = self.d_model;
        let embed = matrix(self.d_vocab(), self.d_model, weight_scale);
        let pos_embed = matrix(SEQ_LEN, self.d_model, weight_scale);
        let w_q = matrix(self.d_model, d_attn, weight_scale);
        let w_k = matrix(self.d_model, d_attn, weight_scale);
        let w_v = matrix(self.d_model, d_attn, weight_scale);
        let w_o = matrix(d_attn, self.d_model, weight_scale);
        let w_in = matrix(self.d_model, self.d_mlp, weight_scale);
        let w_out = matrix(self.d_mlp, self.d_model, weight_scale);
        let unembed = matrix(self.d_model, self.d_vocab(), 1.0 / (self.d_vocab() as f64).sqrt());
        Transformer {
            embed,
            pos_embed,
            w_q,
            w_k,
            w_v,
            w_o,
            w_in,
            b_in: Param::from_tensor(Tensor::zeros([1, self.d_mlp], device)),
            w_out,
            b_out: Param::from_tensor(Tensor::zeros([1, self.d_model], device)),
            unembed,
            n_heads: self.n_heads,
        }
    }
}

impl<B: Backend> Transformer<B> {
    /// Trials in the pack.
    pub fn trials(&self) -> usize {
        self.embed.dims()[0]
    }

    /// Forward pass for the last position only. With one layer and a causal
    /// mask, the last position's output depends on the other positions only
    /// through its attention keys and values, so the MLP and unembedding run
    /// on the last position alone; the logits are exactly the full model's.
    ///
    /// The attention's inputs are token + position embeddings and nothing
    /// else (there is no layer before it), so there are only 3 · d_vocab
    /// distinct rows to project: the keys and values of every (position,
    /// token) are computed once and each input gathers its rows. At p = 113
    /// with 3,830 training pairs that is 342 projected rows instead of 11,490.
    /// The last position's token is always `=`, so its residual before the
    /// attention and its query are one row per trial, not per input. How the
    /// inputs gather their rows is the backend's choice ([`Gather`]: `select`
    /// on the CPU, products with one-hot rows on a GPU). The gradient of a
    /// gather adds each input's row gradients into its table row: the sum
    /// the plain product's gradient forms, in another order.
    ///
    /// The one query meets three keys per (input, head), so the attention
    /// is written out over the three positions as element-wise products and
    /// sums. With `select` the query meets every table row's key once and
    /// each (input, head) gathers its three scores from that score table,
    /// then three head-major value rows, [K · batch · heads, d_head] each: no
    /// activation is permuted (burn-flex copies a permuted gradient element
    /// by element before the next reshape) and no batched product of 1 × 32
    /// by 32 × 3 matrices is made (one gemm call per (input, head), on one
    /// thread). Both were measured (bench/RESULTS.md); the unit tests compare
    /// logits and gradients with the textbook forward.
    ///
    /// # Shapes
    /// - `inputs`: K trials × batch inputs
    /// - output logits: [K, batch, d_vocab], mlp_post: [K, batch, d_mlp]
    pub fn forward(&self, inputs: &PackInputs<B>) -> ForwardOutput<B> {
        debug_assert_eq!(inputs.trials, self.trials(), "inputs are for a pack of another size");
        let [trials, d_vocab, d_model] = self.embed.dims();
        // Token + position embedding of every (trial, position, token), one
        // row each: [K, 3, d_vocab, d_model].
        let tokens = self.embed.val().unsqueeze_dim::<4>(1).repeat_dim(1, SEQ_LEN);
        let positions = self.pos_embed.val().unsqueeze_dim::<4>(2).repeat_dim(2, d_vocab);
        let table = tokens + positions;
        // The last position's token is always `=` ([`PackInputs::new`]), so
        // its residual before the attention, and so its query, is one row per
        // trial: table row (2, =), [K, d_model].
        let equals = table.clone().narrow(1, SEQ_LEN - 1, 1).narrow(2, d_vocab - 1, 1).reshape([trials, d_model]);
        // The attention's output before W_O, [K, batch, heads · d_head].
        let mixed = match &inputs.one_hot {
            None => self.attention_by_select(table.reshape([trials, SEQ_LEN * d_vocab, d_model]), equals.clone(), inputs),
            Some(one_hot) => self.attention_by_products(table, one_hot),
        };
        let after_attention = add_per_trial(mixed.matmul(self.w_o.val()), equals);
        let mlp_post = relu(add_per_trial(after_attention.clone().matmul(self.w_in.val()), self.b_in.val())); // [K, batch, d_mlp]
        let after_mlp = add_per_trial(after_attention + mlp_post.clone().matmul(self.w_out.val()), self.b_out.val());
        let logits = after_mlp.matmul(self.unembed.val()); // [K, batch, d_vocab]
        ForwardOutput { logits, mlp_post }
    }

    /// The attention of [`Transformer::forward`] by [`Gather::Select`]. The
    /// one query of a trial (its `equals` row, [K, d_model], projected) meets
    /// every key of the table at once: the scores of every (table row, head)
    /// form a small head-major table, [heads · K · 3 · d_vocab, 1], and each
    /// (input, head) gathers its three scores from it, one number each,
    /// instead of gathering three key rows of d_head and reducing them. The
    /// values are projected head-major and each (input, head) gathers its
    /// rows. Returns mixed, [K, batch, heads · d_head].
    fn attention_by_select(&self, table: Tensor<B, 3>, equals: Tensor<B, 2>, inputs: &PackInputs<B>) -> Tensor<B, 3> {
        let (trials, batch) = (inputs.trials, inputs.batch);
        let [_, table_rows_per_trial, d_model] = table.dims();
        let d_attn = self.w_q.dims()[2];
        let (heads, rows) = (self.n_heads, trials * batch);
        let d_head = d_attn / heads;
        let table_rows = trials * table_rows_per_trial;
        // Head-major: row h · (K · 3 · d_vocab) + r is head h of table row r.
        let head_major = |projected: Tensor<B, 3>, width: usize| {
            projected.reshape([table_rows, heads, width]).swap_dims(0, 1).reshape([heads * table_rows, width])
        };
        // The head-major rows of table rows `of`, [K · batch] → [K · batch · heads],
        // in (input, head) order: gathered, they are [K · batch, heads · width].
        let device = inputs.positions[0].device();
        let offsets =
            Tensor::<B, 1, Int>::arange(0..heads as i64, &device).mul_scalar(table_rows as i64).reshape([1, heads]).repeat_dim(0, rows);
        let head_rows =
            |of: &Tensor<B, 1, Int>| (of.clone().reshape([rows, 1]).repeat_dim(1, heads) + offsets.clone()).reshape([rows * heads]);
        let at = inputs.positions.each_ref().map(head_rows);
        // Each trial's query, repeated over its table rows: [K, 3 · d_vocab, d_attn].
        let queries = equals.reshape([trials, 1, d_model]).matmul(self.w_q.val()).repeat_dim(1, table_rows_per_trial);
        let keys = table.clone().matmul(self.w_k.val()); // [K, 3 · d_vocab, d_attn]
        let scale = (d_head as f64).sqrt();
        let score_table = (keys * queries).reshape([table_rows, heads, d_head]).sum_dim(2).div_scalar(scale); // [K · 3 · d_vocab, heads, 1]
        let score_table = head_major(score_table, 1); // [heads · K · 3 · d_vocab, 1]
        let scores = at.each_ref().map(|rows_of| score_table.clone().select(0, rows_of.clone())); // [K · batch · heads, 1] each
        let weights = softmax_over_positions(scores);
        let values = head_major(table.matmul(self.w_v.val()), d_head); // [heads · K · 3 · d_vocab, d_head]
        let mixed = at.iter().zip(weights).map(|(rows_of, weight)| values.clone().select(0, rows_of.clone()) * weight);
        mixed.reduce(|sum, term| sum + term).expect("three positions").reshape([trials, batch, d_attn]) // [K, batch, heads · d_head]
    }

    /// The attention of [`Transformer::forward`] by [`Gather::Products`]:
    /// each position's rows of the table ([K, 3, d_vocab, d_model]) and of
    /// its projections are picked by a batched product with that position's
    /// one-hot rows ([K, batch, d_vocab]); only the last position's rows are
    /// projected to queries. Returns mixed, [K, batch, heads · d_head].
    fn attention_by_products(&self, table: Tensor<B, 4>, one_hot: &[Tensor<B, 3>; SEQ_LEN]) -> Tensor<B, 3> {
        let [trials, _, d_vocab, d_model] = table.dims();
        let [_, batch, _] = one_hot[0].dims();
        let d_attn = self.w_q.dims()[2];
        let heads = self.n_heads;
        let d_head = d_attn / heads;
        // Each position's table rows, [K, d_vocab, d_model].
        let rows: [Tensor<B, 3>; SEQ_LEN] =
            std::array::from_fn(|position| table.clone().narrow(1, position, 1).reshape([trials, d_vocab, d_model]));
        let pick = |position: usize, rows: Tensor<B, 3>| one_hot[position].clone().matmul(rows); // [K, batch, columns]
        let by_head = |picked: Tensor<B, 3>| picked.reshape([trials, batch, heads, d_head]);
        let last_rows = rows[SEQ_LEN - 1].clone();
        let queries = by_head(pick(SEQ_LEN - 1, last_rows.matmul(self.w_q.val()))); // [K, batch, heads, d_head]
        let scale = (d_head as f64).sqrt();
        let projected: [(Tensor<B, 4>, Tensor<B, 4>); SEQ_LEN] = std::array::from_fn(|position| {
            let here = rows[position].clone();
            (by_head(pick(position, here.clone().matmul(self.w_k.val()))), by_head(pick(position, here.matmul(self.w_v.val()))))
        });
        let scores = projected.each_ref().map(|(keys, _)| (keys.clone() * queries.clone()).sum_dim(3).div_scalar(scale)); // [K, batch, heads, 1] each
        let weights = softmax_over_positions(scores);
        let mixed = projected.into_iter().zip(weights).map(|((_, values), weight)| values * weight);
        mixed.reduce(|sum, term| sum + term).expect("three positions").reshape([trials, batch, d_attn])
    }

    /// Sums of squares of trial `trial`'s parameters, in f64: one per weight
    /// matrix, in the order of [`sweep_core::measures::WEIGHT_NORMS`]
    /// (W_E, W_pos, W_Q, W_K, W_V, W_O, W_in, W_out, W_U), and the biases'.
    pub fn squared_norms(&self, trial: usize) -> SquaredNorms {
        let squares = |values: TensorData| values.iter::<f64>().map(|value| value * value).sum::<f64>();
        let matrices = [&self.embed, &self.pos_embed, &self.w_q, &self.w_k, &self.w_v, &self.w_o, &self.w_in, &self.w_out, &self.unembed];
        SquaredNorms {
            matrices: matrices.map(|matrix| squares(matrix.val().narrow(0, trial, 1).into_data())),
            biases: [&self.b_in, &self.b_out].map(|bias| squares(bias.val().narrow(0, trial, 1).into_data())),
        }
    }

    /// Σθ² of trial `trial`, accumulated in f64.
    pub fn sum_squared_weights(&self, trial: usize) -> f64 {
        self.squared_norms(trial).total()
    }
}

/// Softmax over the three positions of their attention scores (each the
/// same shape, one score per (input, head)); the shift by their maximum
/// cancels, so it carries no gradient.
fn softmax_over_positions<B: Backend, const D: usize>(scores: [Tensor<B, D>; SEQ_LEN]) -> [Tensor<B, D>; SEQ_LEN] {
    let [first, others @ ..] = &scores;
    let shift = others.iter().fold(first.clone(), |max, score| max.max_pair(score.clone())).detach();
    let exponentials = scores.map(|score| (score - shift.clone()).exp());
    let [first, others @ ..] = &exponentials;
    let total = others.iter().fold(first.clone(), |sum, term| sum + term.clone());
    exponentials.map(|term| term / total.clone())
}

/// Sums of squares of one trial's parameters (see [`Transformer::squared_norms`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SquaredNorms {
    /// Per weight matrix.
    pub matrices: [f64; 9],
    /// b_in and b_out.
    pub biases: [f64; 2],
}

impl SquaredNorms {
    /// Σθ²: every matrix, then the biases, summed in that order.
    pub fn total(&self) -> f64 {
        self.matrices.iter().chain(&self.biases).sum()
    }

    /// The Frobenius norm of each weight matrix.
    pub fn matrix_norms(&self) -> [f64; 9] {
        self.matrices.map(f64::sqrt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::TestBackend;
    use burn::tensor::activation::softmax;

    #[test]
    fn init_is_deterministic_and_scaled() {
        let device = Default::default();
        let config = TransformerConfig::new(13).with_d_model(32).with_n_heads(4).with_d_mlp(64).with_seed(5);
        let first: Transformer<TestBackend> = config.init(&device);
        let second: Transformer<TestBackend> = config.init(&device);
        let values: Vec<f32> = first.w_in.val().into_data().to_vec().expect("f32 data");
        assert_eq!(values, second.w_in.val().into_data().to_vec::<f32>().expect("f32 data"));
        // Variance of N(0, 1/d_model) samples over 2048 entries: 1/32 within 15%.
        let variance = values.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / values.len() as f64;
        assert!((variance * 32.0 - 1.0).abs() < 0.15, "variance {variance}");
    }

    /// The textbook forward of trial `trial`: every position, causal mask,
    /// MLP everywhere, every product on the activations; returns the last
    /// position's logits, [batch, d_vocab].
    fn full_causal_forward<B: Backend>(model: &Transformer<B>, trial: usize, tokens: &[[i64; SEQ_LEN]]) -> Tensor<B, 2> {
        let device = model.embed.device();
        let weight = |param: &Param<Tensor<B, 3>>| {
            let [_, rows, columns] = param.dims();
            param.val().narrow(0, trial, 1).reshape([rows, columns])
        };
        let bias = |param: &Param<Tensor<B, 2>>| param.val().narrow(0, trial, 1);
        let (batch, seq) = (tokens.len(), SEQ_LEN);
        let d_model = model.embed.dims()[2];
        let d_head = d_model / model.n_heads;
        let flat: Vec<i64> = tokens.iter().flatten().copied().collect();
        let flat = Tensor::<B, 1, Int>::from_data(TensorData::new(flat, [batch * seq]), &device);
        let x = weight(&model.embed).select(0, flat).reshape([batch, seq, d_model]) + weight(&model.pos_embed).unsqueeze::<3>();
        let flat = x.clone().reshape([batch * seq, d_model]);
        let heads = |w: Tensor<B, 2>| flat.clone().matmul(w).reshape([batch, seq, model.n_heads, d_head]).swap_dims(1, 2);
        let (q, k, v) = (heads(weight(&model.w_q)), heads(weight(&model.w_k)), heads(weight(&model.w_v)));
        let mut mask = vec![0f32; seq * seq];
        for row in 0..seq {
            for column in row + 1..seq {
                mask[row * seq + column] = -1e9;
            }
        }
        let mask = Tensor::<B, 2>::from_data(TensorData::new(mask, [seq, seq]), &device).unsqueeze::<4>();
        let scores = q.matmul(k.swap_dims(2, 3)).div_scalar((d_head as f64).sqrt()) + mask;
        let z = softmax(scores, 3).matmul(v).swap_dims(1, 2).reshape([batch * seq, d_model]);
        let after_attention = flat + z.matmul(weight(&model.w_o));
        let post = relu(after_attention.clone().matmul(weight(&model.w_in)) + bias(&model.b_in));
        let after_mlp = after_attention + post.matmul(weight(&model.w_out)) + bias(&model.b_out);
        let d_vocab = model.unembed.dims()[2];
        after_mlp.matmul(weight(&model.unembed)).reshape([batch, seq, d_vocab]).narrow(1, seq - 1, 1).reshape([batch, d_vocab])
    }

    fn full_causal_logits(model: &Transformer<TestBackend>, trial: usize, tokens: &[[i64; SEQ_LEN]]) -> Vec<f32> {
        full_causal_forward(model, trial, tokens).into_data().to_vec().expect("f32")
    }

    /// A pack of three trials of `config(seed)`, its biases non-zero.
    fn three_trial_pack<B: Backend>(config: impl Fn(u64) -> TransformerConfig) -> Transformer<B> {
        let device = Default::default();
        let singles: Vec<Transformer<B>> = (0..3).map(|seed| config(seed).init(&device)).collect();
        let cat =
            |get: &dyn Fn(&Transformer<B>) -> Tensor<B, 3>| Param::from_tensor(Tensor::cat(singles.iter().map(get).collect(), 0).detach());
        let cat2 =
            |get: &dyn Fn(&Transformer<B>) -> Tensor<B, 2>| Param::from_tensor(Tensor::cat(singles.iter().map(get).collect(), 0).detach());
        Transformer {
            embed: cat(&|m| m.embed.val()),
            pos_embed: cat(&|m| m.pos_embed.val()),
            w_q: cat(&|m| m.w_q.val()),
            w_k: cat(&|m| m.w_k.val()),
            w_v: cat(&|m| m.w_v.val()),
            w_o: cat(&|m| m.w_o.val()),
            w_in: cat(&|m| m.w_in.val()),
            b_in: cat2(&|m| m.b_in.val().add_scalar(0.1)),
            w_out: cat(&|m| m.w_out.val()),
            b_out: cat2(&|m| m.b_out.val().add_scalar(-0.2)),
            unembed: cat(&|m| m.unembed.val()),
            n_heads: 4,
        }
    }

    /// Trial k's inputs: every a with b = (5a + 2 + k) mod 13, some of them repeated.
    fn pack_tokens() -> Vec<Vec<[i64; SEQ_LEN]>> {
        (0..3i64).map(|k| (0..13i64).chain([3, 3, 7]).map(|a| [a, (5 * a + 2 + k) % 13, 13]).collect()).collect()
    }

    fn small_config(seed: u64) -> TransformerConfig {
        TransformerConfig::new(13).with_d_model(32).with_n_heads(4).with_d_mlp(48).with_seed(seed)
    }

    #[test]
    fn the_gradients_of_the_pack_forward_equal_those_of_each_trials_full_causal_forward() {
        use crate::backend::TestAutodiffBackend as AB;
        let device = Default::default();
        // Two copies of the same pack, each in one graph with one backward
        // pass (as in training); sharing leaves between two backward passes
        // made the second see zero gradients now and then when other tests
        // ran beside it.
        for gather in [Gather::Select, Gather::Products] {
            let (fast_pack, plain_pack): (Transformer<AB>, Transformer<AB>) =
                (three_trial_pack(small_config), three_trial_pack(small_config));
            let tokens = pack_tokens();
            let batch = tokens[0].len();
            // A loss that weighs every logit differently: Σ c · logits.
            let coefficients: Vec<f32> = (0..3 * batch * 14).map(|i| ((i * 7919) % 23) as f32 / 23.0 - 0.4).collect();
            let coefficients = Tensor::<AB, 1>::from_data(TensorData::new(coefficients, [3 * batch * 14]), &device);
            let inputs = PackInputs::with_gather(&tokens, 14, &device, gather);
            let fast = fast_pack.forward(&inputs).logits.reshape([3 * batch * 14]);
            let fast_gradients = (fast * coefficients.clone()).sum().backward();
            let plain: Vec<Tensor<AB, 2>> = (0..3).map(|trial| full_causal_forward(&plain_pack, trial, &tokens[trial])).collect();
            let plain = Tensor::cat(plain, 0).reshape([3 * batch * 14]);
            let plain_gradients = (plain * coefficients).sum().backward();
            assert_same_gradients(gather, (&fast_pack, &fast_gradients), (&plain_pack, &plain_gradients));
        }
    }

    /// Every parameter gradient of `fast` within 1e-4 (relative to the
    /// largest) of `plain`'s.
    fn assert_same_gradients<AB: burn::tensor::backend::AutodiffBackend>(
        gather: Gather,
        (fast_pack, fast_gradients): (&Transformer<AB>, &AB::Gradients),
        (plain_pack, plain_gradients): (&Transformer<AB>, &AB::Gradients),
    ) {
        // Every parameter's gradient, in the order of `names`, on the host.
        let names = ["W_E", "W_pos", "W_Q", "W_K", "W_V", "W_O", "W_in", "W_out", "W_U", "b_in", "b_out"];
        let host = |pack: &Transformer<AB>, gradients: &AB::Gradients| {
            let matrices =
                [&pack.embed, &pack.pos_embed, &pack.w_q, &pack.w_k, &pack.w_v, &pack.w_o, &pack.w_in, &pack.w_out, &pack.unembed];
            let matrices = matrices.map(|param| param.grad(gradients).expect("a gradient").into_data());
            let biases = [&pack.b_in, &pack.b_out].map(|param| param.grad(gradients).expect("a gradient").into_data());
            matrices.into_iter().chain(biases).map(|data| data.iter::<f32>().collect::<Vec<_>>()).collect::<Vec<_>>()
        };
        for ((name, fast), plain) in names.iter().zip(host(fast_pack, fast_gradients)).zip(host(plain_pack, plain_gradients)) {
            let scale = plain.iter().fold(0f32, |max, value| max.max(value.abs()));
            assert!(scale > 0.0, "{gather:?}: {name} has a zero gradient");
            for (a, b) in fast.iter().zip(&plain) {
                assert!((a - b).abs() <= 1e-4 * scale, "{gather:?}: {name}: {a} vs {b}");
            }
        }
    }

    #[test]
    fn the_pack_forward_equals_each_trials_full_causal_forward() {
        let device = Default::default();
        let pack: Transformer<TestBackend> = three_trial_pack(small_config);
        // Each trial its own inputs.
        let tokens = pack_tokens();
        let batch = tokens[0].len();
        for gather in [Gather::Select, Gather::Products] {
            let inputs = PackInputs::with_gather(&tokens, 14, &device, gather);
            let fast: Vec<f32> = pack.forward(&inputs).logits.into_data().to_vec().expect("f32");
            for (trial, inputs) in tokens.iter().enumerate() {
                let reference = full_causal_logits(&pack, trial, inputs);
                for (a, b) in fast[trial * batch * 14..(trial + 1) * batch * 14].iter().zip(&reference) {
                    assert!((a - b).abs() < 1e-4, "{gather:?}, trial {trial}: {a} vs {b}");
                }
            }
        }
    }

    #[test]
    fn gpu_backends_gather_by_products_and_cpu_backends_by_select() {
        let device = Default::default();
        for name in ["cubecl<cuda>", "autodiff<fusion<cubecl<cuda>>>", "autodiff<cubecl<wgpu>>"] {
            assert_eq!(Gather::default_for(name), Gather::Products, "{name}");
        }
        for name in [TestBackend::name(&device), crate::backend::TestAutodiffBackend::name(&device), "ndarray".into()] {
            assert_eq!(Gather::default_for(&name), Gather::Select, "{name}");
        }
        assert_eq!(
            (Gather::parse("select"), Gather::parse("products"), Gather::parse("Select")),
            (Some(Gather::Select), Some(Gather::Products), None)
        );
        let inputs = PackInputs::<TestBackend>::with_gather(&pack_tokens(), 14, &device, Gather::Select);
        assert!(inputs.one_hot.is_none(), "no one-hot rows to select by");
        let inputs = PackInputs::<TestBackend>::with_gather(&pack_tokens(), 14, &device, Gather::Products);
        let one_hot = inputs.one_hot.expect("one-hot rows");
        // Trial 1's input 4 is [4, (5·4 + 2 + 1) mod 13 = 10, 13].
        for (position, token) in [4usize, 10, 13].into_iter().enumerate() {
            let row: Vec<f32> = one_hot[position].clone().narrow(0, 1, 1).narrow(1, 4, 1).into_data().to_vec().expect("f32");
            let ones: Vec<usize> = (0..14).filter(|&column| row[column] == 1.0).collect();
            assert_eq!(ones, vec![token], "position {position}");
            assert_eq!(row.iter().sum::<f32>(), 1.0);
        }
    }

    #[test]
    #[should_panic(expected = "every input ends with `=` (token 13)")]
    fn inputs_whose_last_token_is_not_equals_are_refused() {
        let mut tokens = pack_tokens();
        tokens[1][4][SEQ_LEN - 1] = 12;
        let _ = PackInputs::<TestBackend>::with_gather(&tokens, 14, &Default::default(), Gather::Select);
    }

    #[test]
    fn forward_shapes_and_sum_of_squared_weights() {
        let device = Default::default();
        let config = TransformerConfig::new(7).with_d_model(16).with_n_heads(2).with_d_mlp(24);
        let model: Transformer<TestBackend> = config.init(&device);
        let output = model.forward(&PackInputs::new(&[vec![[1, 2, 7], [3, 4, 7]]], 8, &device));
        assert_eq!(output.logits.dims(), [1, 2, 8]);
        assert_eq!(output.mlp_post.dims(), [1, 2, 24]);
        let expected: f64 =
            [8 * 16, 3 * 16, 16 * 16, 16 * 16, 16 * 16, 16 * 16, 16 * 24, 24 * 16].iter().map(|&n| n as f64 / 16.0).sum::<f64>()
                + 16.0 * 8.0 / 8.0;
        let measured = model.sum_squared_weights(0);
        assert!((measured / expected - 1.0).abs() < 0.15, "Σθ² {measured} vs expected about {expected}");
    }
}
