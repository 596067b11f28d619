//! Tensors of a trial's data: the `[a, b, =]` inputs and labels of the split.

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use sweep_core::Split;

/// One side of the split as tensors.
#[derive(Debug, Clone)]
pub struct PairBatch<B: Backend> {
    /// Inputs `[a, b, p]`, [n, 3].
    pub tokens: Tensor<B, 2, Int>,
    /// One-hot labels over the p + 1 tokens, [n, p + 1] (for the training loss).
    pub one_hot: Tensor<B, 2>,
    /// Labels `(a + b) mod p`, on the host.
    pub labels: Vec<usize>,
}

impl<B: Backend> PairBatch<B> {
    /// Build the batch of `pairs` at modulus `p`.
    pub fn new(pairs: &[(u32, u32)], modulus: u32, device: &B::Device) -> Self {
        let count = pairs.len();
        let d_vocab = modulus as usize + 1;
        let mut tokens = Vec::with_capacity(count * 3);
        let mut one_hot = vec![0f32; count * d_vocab];
        let mut labels = Vec::with_capacity(count);
        for (row, &(a, b)) in pairs.iter().enumerate() {
            tokens.extend_from_slice(&[a as i64, b as i64, modulus as i64]);
            let label = ((a + b) % modulus) as usize;
            one_hot[row * d_vocab + label] = 1.0;
            labels.push(label);
        }
        PairBatch {
            tokens: Tensor::from_data(TensorData::new(tokens, [count, 3]), device),
            one_hot: Tensor::from_data(TensorData::new(one_hot, [count, d_vocab]), device),
            labels,
        }
    }

    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// No pairs (a training fraction of 1 leaves no test pairs).
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}

/// Train and test batches of a split.
#[derive(Debug, Clone)]
pub struct TrialData<B: Backend> {
    /// Training pairs.
    pub train: PairBatch<B>,
    /// Test pairs.
    pub test: PairBatch<B>,
}

impl<B: Backend> TrialData<B> {
    /// Build the split's tensors.
    pub fn new(split: &Split, modulus: u32, device: &B::Device) -> Self {
        TrialData { train: PairBatch::new(&split.train, modulus, device), test: PairBatch::new(&split.test, modulus, device) }
    }
}
