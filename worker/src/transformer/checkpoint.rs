//! Checkpoints in safetensors with TransformerLens's names and shapes, so a
//! researcher can load one into `HookedTransformer` (or plain PyTorch/numpy).
//!
//! | tensor | shape | from the model |
//! |---|---|---|
//! | `embed.W_E` | [d_vocab, d_model] | `embed` |
//! | `pos_embed.W_pos` | [3, d_model] | `pos_embed` |
//! | `blocks.0.attn.W_Q`, `W_K`, `W_V` | [n_heads, d_model, d_head] | `w_q[:, h·d_head..]` per head |
//! | `blocks.0.attn.W_O` | [n_heads, d_head, d_model] | `w_o` rows per head |
//! | `blocks.0.attn.b_Q`, `b_K`, `b_V` | [n_heads, d_head] | zeros (the model has no attention biases) |
//! | `blocks.0.attn.b_O` | [d_model] | zeros |
//! | `blocks.0.mlp.W_in` | [d_model, d_mlp] | `w_in` |
//! | `blocks.0.mlp.b_in` | [d_mlp] | `b_in` |
//! | `blocks.0.mlp.W_out` | [d_mlp, d_model] | `w_out` |
//! | `blocks.0.mlp.b_out` | [d_model] | `b_out` |
//! | `unembed.W_U` | [d_model, d_vocab] | `unembed` |
//! | `unembed.b_U` | [d_vocab] | zeros |
//!
//! All tensors are little-endian f32. The header's metadata holds the format
//! name, the sizes and the trial's parameters (`modulus`, `data_fraction`,
//! `data_seed`, `seed`, `weight_decay`, `step`), enough to rebuild the split.

use std::collections::HashMap;

use burn::module::Param;
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use safetensors::tensor::{Dtype, TensorView};
use safetensors::{SafeTensors, serialize};
use sweep_core::TrialParams;

use super::model::{SEQ_LEN, Transformer};
use crate::host;

/// Value of the `format` metadata key.
pub const FORMAT: &str = "groksweep.transformer.v1";

/// Why a checkpoint could not be written or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// The safetensors container is malformed.
    #[error("safetensors: {0}")]
    Safetensors(#[from] safetensors::SafeTensorError),
    /// A metadata key is missing or unparsable.
    #[error("checkpoint metadata `{key}`: {message}")]
    Metadata {
        /// The key.
        key: &'static str,
        /// What is wrong.
        message: String,
    },
    /// A tensor has the wrong dtype or shape, or holds values this model cannot represent.
    #[error("checkpoint tensor `{name}`: {message}")]
    Tensor {
        /// Tensor name.
        name: &'static str,
        /// What is wrong.
        message: String,
    },
}

/// What the header records besides the weights.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckpointInfo {
    /// Training step the weights are from.
    pub step: i64,
    /// The trial's grid point.
    pub params: TrialParams,
}

/// [d_model, heads·d_head] (columns per head) → [heads, d_model, d_head].
fn split_columns_by_head(matrix: &[f32], d_model: usize, heads: usize, d_head: usize) -> Vec<f32> {
    let mut out = vec![0f32; matrix.len()];
    for h in 0..heads {
        for i in 0..d_model {
            for j in 0..d_head {
                out[(h * d_model + i) * d_head + j] = matrix[i * heads * d_head + h * d_head + j];
            }
        }
    }
    out
}

/// Inverse of [`split_columns_by_head`].
fn join_heads_into_columns(per_head: &[f32], d_model: usize, heads: usize, d_head: usize) -> Vec<f32> {
    let mut out = vec![0f32; per_head.len()];
    for h in 0..heads {
        for i in 0..d_model {
            for j in 0..d_head {
                out[i * heads * d_head + h * d_head + j] = per_head[(h * d_model + i) * d_head + j];
            }
        }
    }
    out
}

fn to_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|value| value.to_le_bytes()).collect()
}

/// Serialise `model`, a pack of one, as a TransformerLens-named safetensors file.
pub fn save<B: Backend>(model: &Transformer<B>, info: &CheckpointInfo) -> Result<Vec<u8>, CheckpointError> {
    debug_assert_eq!(model.trials(), 1, "a checkpoint holds one trial");
    let [_, d_vocab, d_model] = model.embed.dims();
    let heads = model.n_heads;
    let d_head = model.w_q.dims()[2] / heads;
    let d_mlp = model.w_in.dims()[2];
    let tensors: Vec<(&str, Vec<usize>, Vec<f32>)> = vec![
        ("embed.W_E", vec![d_vocab, d_model], host(model.embed.val())),
        ("pos_embed.W_pos", vec![SEQ_LEN, d_model], host(model.pos_embed.val())),
        ("blocks.0.attn.W_Q", vec![heads, d_model, d_head], split_columns_by_head(&host(model.w_q.val()), d_model, heads, d_head)),
        ("blocks.0.attn.W_K", vec![heads, d_model, d_head], split_columns_by_head(&host(model.w_k.val()), d_model, heads, d_head)),
        ("blocks.0.attn.W_V", vec![heads, d_model, d_head], split_columns_by_head(&host(model.w_v.val()), d_model, heads, d_head)),
        ("blocks.0.attn.W_O", vec![heads, d_head, d_model], host(model.w_o.val())),
        ("blocks.0.attn.b_Q", vec![heads, d_head], vec![0.0; heads * d_head]),
        ("blocks.0.attn.b_K", vec![heads, d_head], vec![0.0; heads * d_head]),
        ("blocks.0.attn.b_V", vec![heads, d_head], vec![0.0; heads * d_head]),
        ("blocks.0.attn.b_O", vec![d_model], vec![0.0; d_model]),
        ("blocks.0.mlp.W_in", vec![d_model, d_mlp], host(model.w_in.val())),
        ("blocks.0.mlp.b_in", vec![d_mlp], host(model.b_in.val())),
        ("blocks.0.mlp.W_out", vec![d_mlp, d_model], host(model.w_out.val())),
        ("blocks.0.mlp.b_out", vec![d_model], host(model.b_out.val())),
        ("unembed.W_U", vec![d_model, d_vocab], host(model.unembed.val())),
        ("unembed.b_U", vec![d_vocab], vec![0.0; d_vocab]),
    ];
    let buffers: Vec<(&str, Vec<usize>, Vec<u8>)> =
        tensors.into_iter().map(|(name, shape, values)| (name, shape, to_bytes(&values))).collect();
    let views = buffers
        .iter()
        .map(|(name, shape, bytes)| Ok((*name, TensorView::new(Dtype::F32, shape.clone(), bytes)?)))
        .collect::<Result<Vec<_>, safetensors::SafeTensorError>>()?;
    let params = &info.params;
    let metadata: HashMap<String, String> = [
        ("format", FORMAT.to_string()),
        ("step", info.step.to_string()),
        ("modulus", params.modulus.to_string()),
        ("data_fraction", params.data_fraction.to_string()),
        ("data_seed", params.data_seed.to_string()),
        ("seed", params.seed.to_string()),
        ("weight_decay", params.weight_decay.to_string()),
        ("d_model", d_model.to_string()),
        ("n_heads", heads.to_string()),
        ("d_head", d_head.to_string()),
        ("d_mlp", d_mlp.to_string()),
        ("n_ctx", SEQ_LEN.to_string()),
        ("d_vocab", d_vocab.to_string()),
        ("init_scale", params.init_scale.to_string()),
        ("optimizer", params.optimizer.to_string()),
        ("loss", params.loss_kind().to_string()),
    ]
    .into_iter()
    .chain(params.lr.map(|lr| ("lr", lr.to_string())))
    .map(|(key, value)| (key.to_string(), value))
    .collect();
    Ok(serialize(views, Some(metadata))?)
}

fn metadata<T: std::str::FromStr>(map: &HashMap<String, String>, key: &'static str) -> Result<T, CheckpointError>
where
    T::Err: std::fmt::Display,
{
    let text = map.get(key).ok_or(CheckpointError::Metadata { key, message: "missing".to_string() })?;
    text.parse().map_err(|error: T::Err| CheckpointError::Metadata { key, message: format!("`{text}`: {error}") })
}

fn optional_metadata<T: std::str::FromStr>(map: &HashMap<String, String>, key: &'static str) -> Result<Option<T>, CheckpointError>
where
    T::Err: std::fmt::Display,
{
    if map.contains_key(key) { metadata(map, key).map(Some) } else { Ok(None) }
}

fn read(file: &SafeTensors<'_>, name: &'static str, shape: &[usize]) -> Result<Vec<f32>, CheckpointError> {
    let view = file.tensor(name).map_err(|error| CheckpointError::Tensor { name, message: error.to_string() })?;
    if view.dtype() != Dtype::F32 || view.shape() != shape {
        return Err(CheckpointError::Tensor {
            name,
            message: format!("expected F32 {shape:?}, found {:?} {:?}", view.dtype(), view.shape()),
        });
    }
    Ok(view.data().chunks_exact(4).map(|bytes| f32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])).collect())
}

/// Read a checkpoint written by [`save`] back into a model (a pack of one) on `device`.
pub fn load<B: Backend>(bytes: &[u8], device: &B::Device) -> Result<(Transformer<B>, CheckpointInfo), CheckpointError> {
    let (_, header) = SafeTensors::read_metadata(bytes)?;
    let file = SafeTensors::deserialize(bytes)?;
    let map = header.metadata().clone().unwrap_or_default();
    let format: String = metadata(&map, "format")?;
    if format != FORMAT {
        return Err(CheckpointError::Metadata { key: "format", message: format!("`{format}` is not `{FORMAT}`") });
    }
    let info = CheckpointInfo {
        step: metadata(&map, "step")?,
        params: TrialParams {
            family: sweep_core::Family::Transformer,
            modulus: metadata(&map, "modulus")?,
            data_fraction: metadata(&map, "data_fraction")?,
            weight_decay: metadata(&map, "weight_decay")?,
            seed: metadata(&map, "seed")?,
            data_seed: metadata(&map, "data_seed")?,
            image_diversity: None,
            // Written since the lr, init_scale, optimizer and loss axes; older files have their defaults.
            lr: optional_metadata(&map, "lr")?,
            init_scale: optional_metadata(&map, "init_scale")?.unwrap_or(1.0),
            optimizer: optional_metadata::<sweep_core::OptimizerKind>(&map, "optimizer")?.unwrap_or_default(),
            loss: optional_metadata::<sweep_core::LossKind>(&map, "loss")?.filter(|loss| *loss != sweep_core::LossKind::Softmax),
        },
    };
    let (d_model, heads, d_head, d_mlp): (usize, usize, usize, usize) =
        (metadata(&map, "d_model")?, metadata(&map, "n_heads")?, metadata(&map, "d_head")?, metadata(&map, "d_mlp")?);
    let d_vocab = info.params.modulus as usize + 1;
    for name in ["blocks.0.attn.b_Q", "blocks.0.attn.b_K", "blocks.0.attn.b_V", "blocks.0.attn.b_O", "unembed.b_U"] {
        let shape: Vec<usize> = match name {
            "blocks.0.attn.b_O" => vec![d_model],
            "unembed.b_U" => vec![d_vocab],
            _ => vec![heads, d_head],
        };
        if read(&file, name, &shape)?.iter().any(|value| *value != 0.0) {
            return Err(CheckpointError::Tensor { name, message: "this model has no such bias; it must be all zeros".to_string() });
        }
    }
    let matrix = |rows: usize, columns: usize, values: Vec<f32>| -> Param<Tensor<B, 3>> {
        Param::from_tensor(Tensor::from_data(TensorData::new(values, [1, rows, columns]), device))
    };
    let vector = |values: Vec<f32>| -> Param<Tensor<B, 2>> {
        let length = values.len();
        Param::from_tensor(Tensor::from_data(TensorData::new(values, [1, length]), device))
    };
    let d_attn = heads * d_head;
    let per_head = |name: &'static str| -> Result<Vec<f32>, CheckpointError> {
        Ok(join_heads_into_columns(&read(&file, name, &[heads, d_model, d_head])?, d_model, heads, d_head))
    };
    let model = Transformer {
        embed: matrix(d_vocab, d_model, read(&file, "embed.W_E", &[d_vocab, d_model])?),
        pos_embed: matrix(SEQ_LEN, d_model, read(&file, "pos_embed.W_pos", &[SEQ_LEN, d_model])?),
        w_q: matrix(d_model, d_attn, per_head("blocks.0.attn.W_Q")?),
        w_k: matrix(d_model, d_attn, per_head("blocks.0.attn.W_K")?),
        w_v: matrix(d_model, d_attn, per_head("blocks.0.attn.W_V")?),
        w_o: matrix(d_attn, d_model, read(&file, "blocks.0.attn.W_O", &[heads, d_head, d_model])?),
        w_in: matrix(d_model, d_mlp, read(&file, "blocks.0.mlp.W_in", &[d_model, d_mlp])?),
        b_in: vector(read(&file, "blocks.0.mlp.b_in", &[d_mlp])?),
        w_out: matrix(d_mlp, d_model, read(&file, "blocks.0.mlp.W_out", &[d_mlp, d_model])?),
        b_out: vector(read(&file, "blocks.0.mlp.b_out", &[d_model])?),
        unembed: matrix(d_model, d_vocab, read(&file, "unembed.W_U", &[d_model, d_vocab])?),
        n_heads: heads,
    };
    Ok((model, info))
}

/// Load a checkpoint and measure it on its own split (rebuilt from the
/// metadata), on the worker's inference backend: what a reader of the
/// results can check a stored `final_test_accuracy` against.
pub fn evaluate_checkpoint(bytes: &[u8]) -> Result<(CheckpointInfo, super::measures::Evaluation), CheckpointError> {
    let device = Default::default();
    let (model, info) = load::<crate::backend::WorkerBackend>(bytes, &device)?;
    let params = &info.params;
    let split = sweep_core::Split::new(params.modulus, params.data_fraction, params.data_seed);
    let evaluation = super::measures::Evaluator::new(&split, params.modulus, params.loss_kind(), &device).evaluate(&model);
    Ok((info, evaluation))
}

/// The local learning coefficient of a checkpoint (a trial's w* at its
/// step) on its own training pairs, L_n being its training loss (softmax or
/// StableMax cross-entropy over the p + 1 logits), on the worker's training backend.
pub fn checkpoint_llc(
    bytes: &[u8],
    settings: &crate::llc::LlcSettings,
) -> Result<(CheckpointInfo, crate::llc::LlcEstimate), CheckpointError> {
    let device = Default::default();
    let (model, info) = load::<crate::backend::TrainingBackend>(bytes, &device)?;
    let params = &info.params;
    let split = sweep_core::Split::new(params.modulus, params.data_fraction, params.data_seed);
    let batch = super::data::PackBatch::new(&[split.train.as_slice()], params.modulus, &device);
    let loss = params.loss_kind();
    let estimate = crate::llc::estimate(&model, |model| super::pack::pack_loss(model, &batch, loss), split.train.len(), settings, &device);
    Ok((info, estimate))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::TestBackend;
    use crate::transformer::model::{PackInputs, TransformerConfig};
    use sweep_core::Family;

    fn info() -> CheckpointInfo {
        CheckpointInfo {
            step: 700,
            params: TrialParams {
                family: Family::Transformer,
                modulus: 13,
                data_fraction: 0.35,
                weight_decay: 1.0,
                seed: 3,
                data_seed: 8,
                image_diversity: None,
                lr: Some(3e-3),
                init_scale: 0.5,
                optimizer: sweep_core::OptimizerKind::Orthograd,
                loss: Some(sweep_core::LossKind::Stablemax),
            },
        }
    }

    #[test]
    fn save_then_load_gives_identical_logits_and_metadata() {
        let device = Default::default();
        let model: Transformer<TestBackend> =
            TransformerConfig::new(13).with_d_model(24).with_n_heads(3).with_d_mlp(40).with_seed(3).init(&device);
        let bytes = save(&model, &info()).expect("saves");
        let (loaded, read_info) = load::<TestBackend>(&bytes, &device).expect("loads");
        assert_eq!(read_info, info());
        let tokens: Vec<[i64; 3]> = (0..13i64).map(|a| [a, (7 * a + 1) % 13, 13]).collect();
        let inputs = PackInputs::<TestBackend>::new(&[tokens], 14, &device);
        let before: Vec<f32> = model.forward(&inputs).logits.into_data().to_vec().expect("f32");
        let after: Vec<f32> = loaded.forward(&inputs).logits.into_data().to_vec().expect("f32");
        assert_eq!(before, after);
        assert_eq!(loaded.w_in.dims(), [1, 24, 40]);
    }

    #[test]
    fn tensors_have_transformer_lens_names_and_shapes() {
        let model: Transformer<TestBackend> =
            TransformerConfig::new(13).with_d_model(24).with_n_heads(3).with_d_mlp(40).init(&Default::default());
        let bytes = save(&model, &info()).expect("saves");
        let file = SafeTensors::deserialize(&bytes).expect("parses");
        let expected: [(&str, &[usize]); 16] = [
            ("embed.W_E", &[14, 24]),
            ("pos_embed.W_pos", &[3, 24]),
            ("blocks.0.attn.W_Q", &[3, 24, 8]),
            ("blocks.0.attn.W_K", &[3, 24, 8]),
            ("blocks.0.attn.W_V", &[3, 24, 8]),
            ("blocks.0.attn.W_O", &[3, 8, 24]),
            ("blocks.0.attn.b_Q", &[3, 8]),
            ("blocks.0.attn.b_K", &[3, 8]),
            ("blocks.0.attn.b_V", &[3, 8]),
            ("blocks.0.attn.b_O", &[24]),
            ("blocks.0.mlp.W_in", &[24, 40]),
            ("blocks.0.mlp.b_in", &[40]),
            ("blocks.0.mlp.W_out", &[40, 24]),
            ("blocks.0.mlp.b_out", &[24]),
            ("unembed.W_U", &[24, 14]),
            ("unembed.b_U", &[14]),
        ];
        assert_eq!(file.names().len(), expected.len());
        for (name, shape) in expected {
            assert_eq!(file.tensor(name).expect(name).shape(), shape, "{name}");
        }
        // Head h of W_Q is the model's columns h·d_head..(h+1)·d_head.
        let w_q: Vec<f32> = model.w_q.val().into_data().to_vec().expect("f32");
        let stored = read(&file, "blocks.0.attn.W_Q", &[3, 24, 8]).expect("reads");
        assert_eq!(stored[(2 * 24 + 5) * 8 + 7], w_q[5 * 24 + 2 * 8 + 7]);
    }

    #[test]
    fn foreign_or_damaged_files_are_refused_with_the_reason() {
        let model: Transformer<TestBackend> =
            TransformerConfig::new(13).with_d_model(24).with_n_heads(3).with_d_mlp(40).init(&Default::default());
        let bytes = save(&model, &info()).expect("saves");
        assert!(load::<TestBackend>(&bytes[..bytes.len() - 4], &Default::default()).is_err());
        let other = serialize(Vec::<(&str, TensorView<'_>)>::new(), Some(HashMap::from([("format".to_string(), "other".to_string())])))
            .expect("serialises");
        let error = load::<TestBackend>(&other, &Default::default()).expect_err("foreign format").to_string();
        assert_eq!(error, "checkpoint metadata `format`: `other` is not `groksweep.transformer.v1`");
    }
}
