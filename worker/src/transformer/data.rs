//! The training pairs of a pack as tensors: each trial its own split, padded
//! to the pack's largest, with per-row loss weights 1/n_k on a trial's own n_k
//! pairs and 0 on padding, so each trial's gradient is its single run's.

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

use super::model::{PackInputs, SEQ_LEN};

/// The full-batch training data of a pack.
#[derive(Debug, Clone)]
pub struct PackBatch<B: Backend> {
    /// Inputs `[a, b, =]` of every trial, padded.
    pub inputs: PackInputs<B>,
    /// One-hot labels over the p + 1 tokens, [K · rows, p + 1].
    pub one_hot: Tensor<B, 2>,
    /// Loss weight of each row, [K · rows, 1]: 1/n_k for trial k's pairs, 0 for padding.
    pub weights: Tensor<B, 2>,
}

impl<B: Backend> PackBatch<B> {
    /// The batch of trials whose training pairs are `pairs[k]`, at modulus `modulus`.
    pub fn new(pairs: &[&[(u32, u32)]], modulus: u32, device: &B::Device) -> Self {
        let counts: Vec<usize> = pairs.iter().map(|trial| trial.len()).collect();
        Self::weighted(pairs, &counts, modulus, device)
    }

    /// The batch of `pairs[k]`, a part of trial k's `counts[k]` training pairs:
    /// each row weighs 1/counts[k], so the parts' losses sum to the whole's.
    pub fn weighted(pairs: &[&[(u32, u32)]], counts: &[usize], modulus: u32, device: &B::Device) -> Self {
        let rows = pairs.iter().map(|trial| trial.len()).max().unwrap_or(0);
        let d_vocab = modulus as usize + 1;
        let mut tokens = Vec::with_capacity(pairs.len());
        let mut one_hot = vec![0f32; pairs.len() * rows * d_vocab];
        let mut weights = vec![0f32; pairs.len() * rows];
        for (trial, trial_pairs) in pairs.iter().enumerate() {
            let weight = 1.0 / counts[trial] as f32;
            let mut inputs: Vec<[i64; SEQ_LEN]> = Vec::with_capacity(rows);
            // Padding repeats the first pair (any pair, in a part that holds
            // none of this trial's); its weight of 0 keeps it out of the loss.
            let padding = trial_pairs.first().copied().unwrap_or((0, 0));
            for row in 0..rows {
                let (a, b) = trial_pairs.get(row).copied().unwrap_or(padding);
                inputs.push([a as i64, b as i64, modulus as i64]);
                let label = ((a + b) % modulus) as usize;
                one_hot[(trial * rows + row) * d_vocab + label] = 1.0;
                if row < trial_pairs.len() {
                    weights[trial * rows + row] = weight;
                }
            }
            tokens.push(inputs);
        }
        let total = pairs.len() * rows;
        PackBatch {
            inputs: PackInputs::new(&tokens, d_vocab, device),
            one_hot: Tensor::from_data(TensorData::new(one_hot, [total, d_vocab]), device),
            weights: Tensor::from_data(TensorData::new(weights, [total, 1]), device),
        }
    }

    /// Rows per trial (the largest training split of the pack).
    pub fn rows(&self) -> usize {
        self.inputs.batch()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::TestBackend;

    #[test]
    fn trials_are_padded_with_zero_weights() {
        let (first, second) = ([(1u32, 2u32), (3, 4), (0, 0)], [(2u32, 2u32)]);
        let batch = PackBatch::<TestBackend>::new(&[&first, &second], 5, &Default::default());
        assert_eq!(batch.rows(), 3);
        let weights = crate::host(batch.weights);
        let third = 1.0 / 3.0;
        assert_eq!(weights, vec![third, third, third, 1.0, 0.0, 0.0]);
        let one_hot = crate::host(batch.one_hot);
        // Row 1 of trial 0 is (3, 4): label 2; row 0 of trial 1 is (2, 2): label 4.
        assert_eq!(one_hot[6 + 2], 1.0);
        assert_eq!(one_hot[3 * 6 + 4], 1.0);
    }
}
