//! The one-block diffusion transformer (DiT) that predicts the clean image x0.
//!
//! Tokens: one per operand, then one per patch of the noisy target image x_t
//! (with learned positional embeddings). An operand enters either as its
//! symbol image through the pre-attention FFN bottleneck
//! (pixels → d_ffn → GeLU → d_model), or, as a control, as a learned
//! embedding of its value. The timestep enters through a sinusoidal embedding
//! and an MLP that drives adaLN-Zero modulation of the block (shift, scale and
//! gate of attention and FFN, zero at initialisation) and of the final layer.
//! LayerNorms have no affine parameters, as in DiT.
//!
//! Like the transformer family's model, it is a pack: every parameter has a
//! leading trial dimension, [`Dit::forward_pack`] runs K trials' batches at
//! once, and [`Dit::forward`] is the pack-of-one form the measures use.

use burn::module::{Module, Param};
use burn::tensor::activation::{gelu, silu, softmax};
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use sweep_core::OperandInput;
use sweep_core::split::SplitMix64;

use crate::layout::{add_per_trial, per_position};
use crate::random::normal_samples;

/// Width of the sinusoidal timestep features.
pub const TIME_FEATURES: usize = 64;
/// Number of operand tokens in front of the patch tokens.
pub const OPERAND_TOKENS: usize = 2;

/// Sizes of the model.
#[derive(Debug, Clone, PartialEq)]
pub struct DitConfig {
    /// Number of symbol classes P.
    pub classes: usize,
    /// Image side in pixels.
    pub image_size: usize,
    /// Patch side in pixels.
    pub patch_size: usize,
    /// Residual width.
    pub d_model: usize,
    /// Attention heads.
    pub n_heads: usize,
    /// FFN and bottleneck hidden width.
    pub d_ffn: usize,
    /// How operands enter.
    pub operand_input: OperandInput,
    /// Initialisation seed.
    pub seed: u64,
}

/// A dense layer `x · W + b` per trial of the pack.
#[derive(Module, Debug)]
pub struct Dense<B: Backend> {
    /// [K, in, out].
    pub weight: Param<Tensor<B, 3>>,
    /// [K, out].
    pub bias: Param<Tensor<B, 2>>,
}

impl<B: Backend> Dense<B> {
    /// [K, rows, in] → [K, rows, out], trial k through its own weights.
    fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        add_per_trial(x.matmul(self.weight.val()), self.bias.val())
    }

    /// Apply to the last dimension of a [K · batch, tokens, in] tensor whose
    /// rows are grouped by trial.
    fn forward_tokens(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let [rows, tokens, width] = x.dims();
        let [trials, _, out] = self.weight.dims();
        self.forward(x.reshape([trials, rows / trials * tokens, width])).reshape([rows, tokens, out])
    }

    fn squared_sum(&self, trial: usize) -> f64 {
        squared(self.weight.val().narrow(0, trial, 1).into_data()) + squared(self.bias.val().narrow(0, trial, 1).into_data())
    }
}

fn squared(values: TensorData) -> f64 {
    values.iter::<f64>().map(|value| value * value).sum()
}

/// The model.
#[derive(Module, Debug)]
pub struct Dit<B: Backend> {
    /// Operand bottleneck, pixels → d_ffn (image input).
    pub bottleneck_in: Option<Dense<B>>,
    /// Operand bottleneck, d_ffn → d_model (image input).
    pub bottleneck_out: Option<Dense<B>>,
    /// Operand embeddings [K, P, d_model] (token input).
    pub operand_embed: Option<Param<Tensor<B, 3>>>,
    /// Which operand a token is, [K, 2, d_model].
    pub operand_pos: Param<Tensor<B, 3>>,
    /// Patch pixels → d_model.
    pub patch_embed: Dense<B>,
    /// Positional embedding of the patches, [K, patches, d_model].
    pub patch_pos: Param<Tensor<B, 3>>,
    /// Timestep MLP, sinusoidal features → d_model.
    pub time_in: Dense<B>,
    /// Timestep MLP, d_model → d_model.
    pub time_out: Dense<B>,
    /// adaLN-Zero of the block: d_model → 6·d_model (shift, scale, gate for attention and FFN).
    pub block_modulation: Dense<B>,
    /// Queries.
    pub query: Dense<B>,
    /// Keys.
    pub key: Dense<B>,
    /// Values.
    pub value: Dense<B>,
    /// Attention output.
    pub attention_out: Dense<B>,
    /// FFN in, d_model → d_ffn.
    pub ffn_in: Dense<B>,
    /// FFN out, d_ffn → d_model.
    pub ffn_out: Dense<B>,
    /// adaLN of the final layer: d_model → 2·d_model (shift, scale).
    pub final_modulation: Dense<B>,
    /// Final layer, d_model → patch pixels.
    pub final_out: Dense<B>,
    /// Attention heads.
    pub n_heads: usize,
    /// Patch side.
    pub patch_size: usize,
    /// Image side.
    pub image_size: usize,
}

/// The operands of a batch of one trial.
#[derive(Debug, Clone)]
pub enum Operands<B: Backend> {
    /// Images of a and b, [batch, pixels] each, in [−1, 1].
    Images(Tensor<B, 2>, Tensor<B, 2>),
    /// Values of a and b, [batch] each.
    Tokens(Tensor<B, 1, Int>, Tensor<B, 1, Int>),
}

/// The operands of the batches of a pack, K trials of `batch` rows each.
#[derive(Debug, Clone)]
pub enum PackOperands<B: Backend> {
    /// Images of a and b, [K, batch, pixels] each, in [−1, 1].
    Images(Tensor<B, 3>, Tensor<B, 3>),
    /// Rows of a and b in the pack's embedding table, k · P + value, [K · batch] each.
    Tokens(Tensor<B, 1, Int>, Tensor<B, 1, Int>),
}

/// What one forward pass of one trial yields.
#[derive(Debug)]
pub struct DitOutput<B: Backend> {
    /// Predicted clean image, [batch, pixels].
    pub x0: Tensor<B, 2>,
    /// Pre-GeLU FFN activations averaged over the patch tokens, [batch, d_ffn].
    pub ffn_pre: Tensor<B, 2>,
}

/// What one forward pass of a pack yields.
#[derive(Debug)]
pub struct PackOutput<B: Backend> {
    /// Predicted clean images, [K, batch, pixels].
    pub x0: Tensor<B, 3>,
    /// Pre-GeLU FFN activations averaged over the patch tokens, [K, batch, d_ffn].
    pub ffn_pre: Tensor<B, 3>,
}

/// Sinusoidal features of the times `t` (scaled by 1000 as in DiT), [batch, TIME_FEATURES].
pub fn time_features<B: Backend>(times: &[f64], device: &B::Device) -> Tensor<B, 2> {
    let half = TIME_FEATURES / 2;
    let mut values = Vec::with_capacity(times.len() * TIME_FEATURES);
    for &t in times {
        for i in 0..half {
            let frequency = (-(10_000f64.ln()) * i as f64 / half as f64).exp();
            values.push((1000.0 * t * frequency).cos() as f32);
        }
        for i in 0..half {
            let frequency = (-(10_000f64.ln()) * i as f64 / half as f64).exp();
            values.push((1000.0 * t * frequency).sin() as f32);
        }
    }
    Tensor::from_data(TensorData::new(values, [times.len(), TIME_FEATURES]), device)
}

impl DitConfig {
    /// Patches per side.
    pub fn grid(&self) -> usize {
        self.image_size / self.patch_size
    }

    /// Build a pack of one: weights ~ N(0, 1/fan_in), biases 0; the adaLN-Zero
    /// modulations and the final layer start at zero (the block is the
    /// identity and the prediction is 0 at initialisation). The values depend
    /// only on the sizes and the seed, so a trial starts the same alone or in a pack.
    pub fn init<B: Backend>(&self, device: &B::Device) -> Dit<B> {
        let mut rng = SplitMix64::new(self.seed ^ 0x6469_745f_696e_6974);
        let mut dense = |inputs: usize, outputs: usize, zero: bool| {
            let scale = if zero { 0.0 } else { 1.0 / (inputs as f64).sqrt() };
            let values = normal_samples(&mut rng, inputs * outputs, scale);
            Dense {
                weight: Param::from_tensor(Tensor::from_data(TensorData::new(values, [1, inputs, outputs]), device)),
                bias: Param::from_tensor(Tensor::zeros([1, outputs], device)),
            }
        };
        let (d, pixels, patch_pixels) = (self.d_model, self.image_size * self.image_size, self.patch_size * self.patch_size);
        let (bottleneck_in, bottleneck_out) = match self.operand_input {
            OperandInput::Image => (Some(dense(pixels, self.d_ffn, false)), Some(dense(self.d_ffn, d, false))),
            OperandInput::Token => (None, None),
        };
        let patch_embed = dense(patch_pixels, d, false);
        let time_in = dense(TIME_FEATURES, d, false);
        let time_out = dense(d, d, false);
        let block_modulation = dense(d, 6 * d, true);
        let (query, key, value, attention_out) = (dense(d, d, false), dense(d, d, false), dense(d, d, false), dense(d, d, false));
        let (ffn_in, ffn_out) = (dense(d, self.d_ffn, false), dense(self.d_ffn, d, false));
        let final_modulation = dense(d, 2 * d, true);
        let final_out = dense(d, patch_pixels, true);
        let mut embedding = |rows: usize| {
            let values = normal_samples(&mut rng, rows * d, 0.02);
            Param::from_tensor(Tensor::from_data(TensorData::new(values, [1, rows, d]), device))
        };
        let operand_embed = (self.operand_input == OperandInput::Token).then(|| embedding(self.classes));
        let operand_pos = embedding(OPERAND_TOKENS);
        let patch_pos = embedding(self.grid() * self.grid());
        Dit {
            bottleneck_in,
            bottleneck_out,
            operand_embed,
            operand_pos,
            patch_embed,
            patch_pos,
            time_in,
            time_out,
            block_modulation,
            query,
            key,
            value,
            attention_out,
            ffn_in,
            ffn_out,
            final_modulation,
            final_out,
            n_heads: self.n_heads,
            patch_size: self.patch_size,
            image_size: self.image_size,
        }
    }
}

/// LayerNorm over the last dimension without affine parameters.
fn layer_norm<B: Backend>(x: Tensor<B, 3>) -> Tensor<B, 3> {
    let centred = x.clone() - x.mean_dim(2);
    let variance = centred.clone().powi_scalar(2).mean_dim(2);
    centred / (variance + 1e-6).sqrt()
}

/// x · (1 + scale) + shift with one (shift, scale) per batch row.
fn modulate<B: Backend>(x: Tensor<B, 3>, shift: Tensor<B, 2>, scale: Tensor<B, 2>) -> Tensor<B, 3> {
    let tokens = x.dims()[1];
    x * (per_position(scale, tokens) + 1.0) + per_position(shift, tokens)
}

impl<B: Backend> Dit<B> {
    fn grid(&self) -> usize {
        self.image_size / self.patch_size
    }

    /// Trials in the pack.
    pub fn trials(&self) -> usize {
        self.operand_pos.dims()[0]
    }

    /// [batch, pixels] → [batch, patches, patch pixels], patches row-major.
    pub fn patchify(&self, images: Tensor<B, 2>) -> Tensor<B, 3> {
        let (batch, g, s) = (images.dims()[0], self.grid(), self.patch_size);
        images.reshape([batch, g, s, g, s]).swap_dims(2, 3).reshape([batch, g * g, s * s])
    }

    /// Inverse of [`Dit::patchify`].
    pub fn unpatchify(&self, patches: Tensor<B, 3>) -> Tensor<B, 2> {
        let (batch, g, s) = (patches.dims()[0], self.grid(), self.patch_size);
        patches.reshape([batch, g, g, s, s]).swap_dims(2, 3).reshape([batch, g * s * g * s])
    }

    /// The representations of the operands of a pack before the operand
    /// position is added: the bottleneck output (image input) or the
    /// embedding (token input), [K, batch, d_model].
    ///
    /// # Panics
    /// When given images for a token-input model or values for an image-input
    /// one (the trial builds both from the same `operand_input`).
    fn operand_rows(&self, first: PackOperand<B>, second: PackOperand<B>, batch: usize) -> (Tensor<B, 3>, Tensor<B, 3>) {
        let trials = self.trials();
        let represent = |operand: PackOperand<B>| match (operand, &self.bottleneck_in, &self.bottleneck_out, &self.operand_embed) {
            (PackOperand::Images(images), Some(inner), Some(outer), _) => outer.forward(gelu(inner.forward(images))),
            (PackOperand::Rows(rows), _, _, Some(embed)) => {
                let [_, classes, d] = embed.dims();
                embed.val().reshape([trials * classes, d]).select(0, rows).reshape([trials, batch, d])
            }
            _ => panic!("operands given in a form this model was not built for"),
        };
        (represent(first), represent(second))
    }

    /// The operand representation of a pack of one: images [batch, pixels]
    /// or values [batch] → [batch, d_model] (see `operand_rows`).
    pub fn operand_representation(&self, operand: OperandOne<B>) -> Tensor<B, 2> {
        let (batch, operand) = match operand {
            OperandOne::Image(images) => {
                let [batch, pixels] = images.dims();
                (batch, PackOperand::Images(images.reshape([1, batch, pixels])))
            }
            OperandOne::Token(values) => (values.dims()[0], PackOperand::Rows(values)),
        };
        let d = self.operand_pos.dims()[2];
        let (representation, _) = self.operand_rows(operand.clone(), operand, batch);
        representation.reshape([batch, d])
    }

    /// Predict x0 from x_t at times `t` for a pack of one ([batch, pixels]
    /// and [batch, TIME_FEATURES] from [`time_features`]).
    pub fn forward(&self, x_t: Tensor<B, 2>, time: Tensor<B, 2>, operands: Operands<B>) -> DitOutput<B> {
        let [batch, pixels] = x_t.dims();
        let operands = match operands {
            Operands::Images(a, b) => PackOperands::Images(a.reshape([1, batch, pixels]), b.reshape([1, batch, pixels])),
            Operands::Tokens(a, b) => PackOperands::Tokens(a, b),
        };
        let output = self.forward_pack(x_t.reshape([1, batch, pixels]), time.reshape([1, batch, TIME_FEATURES]), operands);
        let d_ffn = output.ffn_pre.dims()[2];
        DitOutput { x0: output.x0.reshape([batch, pixels]), ffn_pre: output.ffn_pre.reshape([batch, d_ffn]) }
    }

    /// Predict x0 for K trials at once, `batch` rows each.
    ///
    /// # Shapes
    /// - `x_t`: [K, batch, pixels]; `time`: [K, batch, TIME_FEATURES]
    /// - output x0: [K, batch, pixels], ffn_pre: [K, batch, d_ffn]
    pub fn forward_pack(&self, x_t: Tensor<B, 3>, time: Tensor<B, 3>, operands: PackOperands<B>) -> PackOutput<B> {
        let [trials, batch, pixels] = x_t.dims();
        let rows = trials * batch;
        let d = self.operand_pos.dims()[2];
        let (first, second) = match operands {
            PackOperands::Images(a, b) => (PackOperand::Images(a), PackOperand::Images(b)),
            PackOperands::Tokens(a, b) => (PackOperand::Rows(a), PackOperand::Rows(b)),
        };
        let (first, second) = self.operand_rows(first, second, batch);
        let operand_pos = self.operand_pos.val();
        let position = |index: usize| operand_pos.clone().narrow(1, index, 1).reshape([trials, d]);
        let first = add_per_trial(first, position(0)).reshape([rows, 1, d]);
        let second = add_per_trial(second, position(1)).reshape([rows, 1, d]);
        let patches = self.patch_embed.forward_tokens(self.patchify(x_t.reshape([rows, pixels]))); // [rows, patches, d]
        let patch_count = patches.dims()[1];
        let patches =
            add_per_trial(patches.reshape([trials, batch, patch_count * d]), self.patch_pos.val().reshape([trials, patch_count * d]))
                .reshape([rows, patch_count, d]);
        let tokens = Tensor::cat(vec![first, second, patches], 1); // [rows, L, d]
        let length = tokens.dims()[1];

        let condition = silu(self.time_out.forward(silu(self.time_in.forward(time)))); // [K, batch, d]
        let modulation = self.block_modulation.forward(condition.clone()).reshape([rows, 6 * d]);
        let part = |index: usize| modulation.clone().narrow(1, index * d, d);

        let heads = self.n_heads;
        let d_head = d / heads;
        let attention_in = modulate(layer_norm(tokens.clone()), part(0), part(1));
        let split = |x: Tensor<B, 3>| x.reshape([rows, length, heads, d_head]).swap_dims(1, 2); // [rows, heads, L, d_head]
        let q = split(self.query.forward_tokens(attention_in.clone()));
        let k = split(self.key.forward_tokens(attention_in.clone()));
        let v = split(self.value.forward_tokens(attention_in));
        let pattern = softmax(q.matmul(k.swap_dims(2, 3)).div_scalar((d_head as f64).sqrt()), 3);
        let mixed = pattern.matmul(v).swap_dims(1, 2).reshape([rows, length, d]);
        let tokens = tokens + self.attention_out.forward_tokens(mixed) * per_position(part(2), length);

        let ffn_in = modulate(layer_norm(tokens.clone()), part(3), part(4));
        let ffn_pre = self.ffn_in.forward_tokens(ffn_in); // [rows, L, d_ffn]
        let tokens = tokens + self.ffn_out.forward_tokens(gelu(ffn_pre.clone())) * per_position(part(5), length);

        let final_modulation = self.final_modulation.forward(condition).reshape([rows, 2 * d]);
        let (shift, scale) = (final_modulation.clone().narrow(1, 0, d), final_modulation.narrow(1, d, d));
        let patch_tokens = tokens.narrow(1, OPERAND_TOKENS, patch_count);
        let out = self.final_out.forward_tokens(modulate(layer_norm(patch_tokens), shift, scale));
        let d_ffn = ffn_pre.dims()[2];
        let ffn_pre = ffn_pre.narrow(1, OPERAND_TOKENS, patch_count).mean_dim(1).reshape([trials, batch, d_ffn]);
        PackOutput { x0: self.unpatchify(out).reshape([trials, batch, pixels]), ffn_pre }
    }

    /// Σθ² of trial `trial`, accumulated in f64.
    pub fn sum_squared_weights(&self, trial: usize) -> f64 {
        let mut total = 0.0;
        for dense in [
            &self.patch_embed,
            &self.time_in,
            &self.time_out,
            &self.block_modulation,
            &self.query,
            &self.key,
            &self.value,
            &self.attention_out,
            &self.ffn_in,
            &self.ffn_out,
            &self.final_modulation,
            &self.final_out,
        ]
        .into_iter()
        .chain(self.bottleneck_in.as_ref())
        .chain(self.bottleneck_out.as_ref())
        {
            total += dense.squared_sum(trial);
        }
        for embedding in [&self.operand_pos, &self.patch_pos].into_iter().chain(self.operand_embed.as_ref()) {
            total += squared(embedding.val().narrow(0, trial, 1).into_data());
        }
        total
    }
}

/// One operand column of a pack's batches.
#[derive(Debug, Clone)]
enum PackOperand<B: Backend> {
    /// Images, [K, batch, pixels].
    Images(Tensor<B, 3>),
    /// Rows of the pack's embedding table, [K · batch].
    Rows(Tensor<B, 1, Int>),
}

/// One operand column of a batch.
#[derive(Debug, Clone)]
pub enum OperandOne<B: Backend> {
    /// Images, [batch, pixels].
    Image(Tensor<B, 2>),
    /// Values, [batch].
    Token(Tensor<B, 1, Int>),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::TestBackend;
    use crate::host;

    fn config(operand_input: OperandInput) -> DitConfig {
        DitConfig { classes: 5, image_size: 16, patch_size: 4, d_model: 16, n_heads: 2, d_ffn: 24, operand_input, seed: 1 }
    }

    #[test]
    fn patchify_round_trips_and_orders_patches_row_major() {
        let model: Dit<TestBackend> = config(OperandInput::Token).init(&Default::default());
        let pixels: Vec<f32> = (0..2 * 256).map(|i| i as f32).collect();
        let images = Tensor::<TestBackend, 2>::from_data(TensorData::new(pixels.clone(), [2, 256]), &Default::default());
        let patches = model.patchify(images);
        assert_eq!(patches.dims(), [2, 16, 16]);
        let values = host(patches.clone());
        // Patch 1 of image 0 starts at pixel (0, 4); its second row at (1, 4).
        assert_eq!(values[16], 4.0);
        assert_eq!(values[16 + 4], 20.0);
        assert_eq!(host(model.unpatchify(patches)), pixels);
    }

    #[test]
    fn fresh_model_predicts_zero_and_has_the_documented_shapes() {
        let device = Default::default();
        for input in [OperandInput::Image, OperandInput::Token] {
            let model: Dit<TestBackend> = config(input).init(&device);
            let x_t = Tensor::<TestBackend, 2>::ones([3, 256], &device);
            let operands = match input {
                OperandInput::Image => Operands::Images(Tensor::ones([3, 256], &device), Tensor::zeros([3, 256], &device)),
                OperandInput::Token => Operands::Tokens(
                    Tensor::from_data(TensorData::new(vec![0i64, 1, 4], [3]), &device),
                    Tensor::from_data(TensorData::new(vec![2i64, 3, 0], [3]), &device),
                ),
            };
            let output = model.forward(x_t, time_features(&[0.1, 0.5, 1.0], &device), operands);
            assert_eq!(output.x0.dims(), [3, 256]);
            assert_eq!(output.ffn_pre.dims(), [3, 24]);
            // adaLN-Zero: the final layer starts at zero.
            assert!(host(output.x0).iter().all(|v| *v == 0.0));
            assert!(model.sum_squared_weights(0) > 0.0);
        }
    }
}
