//! The one-layer transformer of Nanda et al. 2023 (no LayerNorm).
//!
//! Weights are stored in the orientation that makes the forward pass a chain
//! of plain matrix products (`x · W`). Relation to TransformerLens names:
//! `embed` = `embed.W_E` [d_vocab, d_model]; `w_q[:, h·d_head..(h+1)·d_head]ᵀ` =
//! `blocks.0.attn.W_Q[h]`; `w_o` rows `h·d_head..` = `W_O[h]`; `w_in` = `W_in`
//! [d_model, d_mlp]; `unembed` = `unembed.W_U` [d_model, d_vocab].

use burn::config::Config;
use burn::module::{Module, Param};
use burn::tensor::activation::{relu, softmax};
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use sweep_core::split::SplitMix64;

use crate::layout::add_per_position;
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

/// The model.
#[derive(Module, Debug)]
pub struct Transformer<B: Backend> {
    /// Token embedding W_E, [d_vocab, d_model].
    pub embed: Param<Tensor<B, 2>>,
    /// Positional embedding W_pos, [3, d_model].
    pub pos_embed: Param<Tensor<B, 2>>,
    /// Queries, [d_model, n_heads · d_head].
    pub w_q: Param<Tensor<B, 2>>,
    /// Keys, [d_model, n_heads · d_head].
    pub w_k: Param<Tensor<B, 2>>,
    /// Values, [d_model, n_heads · d_head].
    pub w_v: Param<Tensor<B, 2>>,
    /// Output projection, [n_heads · d_head, d_model].
    pub w_o: Param<Tensor<B, 2>>,
    /// MLP in, [d_model, d_mlp].
    pub w_in: Param<Tensor<B, 2>>,
    /// MLP in bias, [d_mlp].
    pub b_in: Param<Tensor<B, 1>>,
    /// MLP out, [d_mlp, d_model].
    pub w_out: Param<Tensor<B, 2>>,
    /// MLP out bias, [d_model].
    pub b_out: Param<Tensor<B, 1>>,
    /// Unembedding W_U, [d_model, d_vocab].
    pub unembed: Param<Tensor<B, 2>>,
    /// Attention heads.
    pub n_heads: usize,
}

/// What one forward pass yields for the last position.
#[derive(Debug)]
pub struct ForwardOutput<B: Backend> {
    /// Logits over the p + 1 tokens, [batch, d_vocab].
    pub logits: Tensor<B, 2>,
    /// Post-ReLU MLP activations, [batch, d_mlp].
    pub mlp_post: Tensor<B, 2>,
}

impl TransformerConfig {
    /// Vocabulary size p + 1.
    pub fn d_vocab(&self) -> usize {
        self.modulus + 1
    }

    /// Build the model: every weight ~ N(0, 1/d_model) except W_U ~ N(0, 1/d_vocab); biases 0.
    pub fn init<B: Backend>(&self, device: &B::Device) -> Transformer<B> {
        let mut rng = SplitMix64::new(self.seed ^ 0x6772_6f6b_5f69_6e69);
        let weight_scale = 1.0 / (self.d_model as f64).sqrt();
        let mut matrix = |rows: usize, columns: usize, scale: f64| {
            let values = normal_samples(&mut rng, rows * columns, scale);
            Param::from_tensor(Tensor::<B, 2>::from_data(TensorData::new(values, [rows, columns]), device))
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
            b_in: Param::from_tensor(Tensor::zeros([self.d_mlp], device)),
            w_out,
            b_out: Param::from_tensor(Tensor::zeros([self.d_model], device)),
            unembed,
            n_heads: self.n_heads,
        }
    }
}

impl<B: Backend> Transformer<B> {
    /// Forward pass for the last position only. With one layer and a causal
    /// mask, the last position's output depends on the other positions only
    /// through its attention keys and values, so the MLP and unembedding run
    /// on the last position alone; the logits are exactly the full model's.
    ///
    /// # Shapes
    /// - `tokens`: [batch, 3]
    /// - output logits: [batch, d_vocab], mlp_post: [batch, d_mlp]
    pub fn forward(&self, tokens: Tensor<B, 2, Int>) -> ForwardOutput<B> {
        let [batch, seq] = tokens.dims();
        let d_model = self.embed.dims()[1];
        let d_attn = self.w_q.dims()[1];
        let d_head = d_attn / self.n_heads;
        let flat_tokens = tokens.clone().reshape([batch * seq]);
        let token_embeddings = self.embed.val().select(0, flat_tokens).reshape([batch, seq, d_model]);
        let residual = add_per_position(token_embeddings, self.pos_embed.val()); // [batch, seq, d_model]
        let residual_flat = residual.reshape([batch * seq, d_model]);
        let split_heads = |projected: Tensor<B, 2>, positions: usize| {
            projected.reshape([batch, positions, self.n_heads, d_head]).swap_dims(1, 2) // [batch, heads, positions, d_head]
        };
        let keys = split_heads(residual_flat.clone().matmul(self.w_k.val()), seq);
        let values = split_heads(residual_flat.matmul(self.w_v.val()), seq);
        // The last position's residual is built from its own token rather than
        // narrowed out of `residual`: a strided view, which burn-flex would walk
        // element by element in the additions below (`crate::layout`).
        let last_tokens = tokens.narrow(1, seq - 1, 1).reshape([batch]);
        let last = self.embed.val().select(0, last_tokens) + self.pos_embed.val().narrow(0, seq - 1, 1); // [batch, d_model]
        let queries = split_heads(last.clone().matmul(self.w_q.val()), 1); // [batch, heads, 1, d_head]
        let scores = queries.matmul(keys.swap_dims(2, 3)).div_scalar((d_head as f64).sqrt()); // [batch, heads, 1, seq]
        let pattern = softmax(scores, 3);
        let mixed = pattern.matmul(values).reshape([batch, d_attn]); // [batch, heads · d_head]
        let after_attention = last + mixed.matmul(self.w_o.val());
        let mlp_pre = after_attention.clone().matmul(self.w_in.val()) + self.b_in.val().unsqueeze::<2>();
        let mlp_post = relu(mlp_pre); // [batch, d_mlp]
        let after_mlp = after_attention + mlp_post.clone().matmul(self.w_out.val()) + self.b_out.val().unsqueeze::<2>();
        let logits = after_mlp.matmul(self.unembed.val()); // [batch, d_vocab]
        ForwardOutput { logits, mlp_post }
    }

    /// Σθ² over every parameter, accumulated in f64.
    pub fn sum_squared_weights(&self) -> f64 {
        let mut total = 0.0;
        let mut add = |values: TensorData| {
            total += values.iter::<f64>().map(|value| value * value).sum::<f64>();
        };
        for matrix in [&self.embed, &self.pos_embed, &self.w_q, &self.w_k, &self.w_v, &self.w_o, &self.w_in, &self.w_out, &self.unembed] {
            add(matrix.val().into_data());
        }
        add(self.b_in.val().into_data());
        add(self.b_out.val().into_data());
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::TestBackend;

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

    /// The textbook forward: every position, causal mask, MLP everywhere;
    /// returns the last position's logits.
    fn full_causal_logits(model: &Transformer<TestBackend>, tokens: Tensor<TestBackend, 2, Int>) -> Tensor<TestBackend, 2> {
        let [batch, seq] = tokens.dims();
        let d_model = model.embed.dims()[1];
        let d_head = d_model / model.n_heads;
        let x = model.embed.val().select(0, tokens.reshape([batch * seq])).reshape([batch, seq, d_model])
            + model.pos_embed.val().unsqueeze::<3>();
        let flat = x.clone().reshape([batch * seq, d_model]);
        let heads = |w: Tensor<TestBackend, 2>| flat.clone().matmul(w).reshape([batch, seq, model.n_heads, d_head]).swap_dims(1, 2);
        let (q, k, v) = (heads(model.w_q.val()), heads(model.w_k.val()), heads(model.w_v.val()));
        let mut mask = vec![0f32; seq * seq];
        for row in 0..seq {
            for column in row + 1..seq {
                mask[row * seq + column] = -1e9;
            }
        }
        let mask = Tensor::<TestBackend, 2>::from_data(TensorData::new(mask, [seq, seq]), &Default::default()).unsqueeze::<4>();
        let scores = q.matmul(k.swap_dims(2, 3)).div_scalar((d_head as f64).sqrt()) + mask;
        let z = softmax(scores, 3).matmul(v).swap_dims(1, 2).reshape([batch * seq, d_model]);
        let after_attention = flat + z.matmul(model.w_o.val());
        let post = relu(after_attention.clone().matmul(model.w_in.val()) + model.b_in.val().unsqueeze::<2>());
        let after_mlp = after_attention + post.matmul(model.w_out.val()) + model.b_out.val().unsqueeze::<2>();
        after_mlp
            .matmul(model.unembed.val())
            .reshape([batch, seq, model.unembed.dims()[1]])
            .narrow(1, seq - 1, 1)
            .reshape([batch, model.unembed.dims()[1]])
    }

    #[test]
    fn last_position_forward_equals_the_full_causal_forward() {
        let device = Default::default();
        let model: Transformer<TestBackend> =
            TransformerConfig::new(13).with_d_model(32).with_n_heads(4).with_d_mlp(48).with_seed(3).init(&device);
        let tokens: Vec<i64> = (0..13i64).flat_map(|a| [a, (5 * a + 2) % 13, 13]).collect();
        let tokens = Tensor::<TestBackend, 2, Int>::from_data(TensorData::new(tokens, [13, 3]), &device);
        let fast: Vec<f32> = model.forward(tokens.clone()).logits.into_data().to_vec().expect("f32");
        let reference: Vec<f32> = full_causal_logits(&model, tokens).into_data().to_vec().expect("f32");
        assert_eq!(fast.len(), reference.len());
        for (a, b) in fast.iter().zip(&reference) {
            assert!((a - b).abs() < 1e-4, "{a} vs {b}");
        }
    }

    #[test]
    fn last_position_forward_matches_shapes_and_sums_weights() {
        let device = Default::default();
        let config = TransformerConfig::new(7).with_d_model(16).with_n_heads(2).with_d_mlp(24);
        let model: Transformer<TestBackend> = config.init(&device);
        let tokens = Tensor::<TestBackend, 2, Int>::from_data(TensorData::new(vec![1i64, 2, 7, 3, 4, 7], [2, 3]), &device);
        let output = model.forward(tokens);
        assert_eq!(output.logits.dims(), [2, 8]);
        assert_eq!(output.mlp_post.dims(), [2, 24]);
        let expected: f64 =
            [8 * 16, 3 * 16, 16 * 16, 16 * 16, 16 * 16, 16 * 16, 16 * 24, 24 * 16].iter().map(|&n| n as f64 / 16.0).sum::<f64>()
                + 16.0 * 8.0 / 8.0;
        let measured = model.sum_squared_weights();
        assert!((measured / expected - 1.0).abs() < 0.15, "Σθ² {measured} vs expected about {expected}");
    }
}
