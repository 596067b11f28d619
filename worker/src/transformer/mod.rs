//! The transformer family (Nanda et al. 2023).
//!
//! - `model`: the one-layer transformer and its initialisation
//! - `data`: the split as tensors
//! - `train`: the training loop, checkpoints and the final-K re-computation
//! - `eval`: f64 cross-entropy and accuracy
//! - `measures`: every progress measure of one step, from one forward pass
//! - `checkpoint`: safetensors checkpoints with TransformerLens names

pub mod checkpoint;
pub mod data;
pub mod eval;
pub mod measures;
pub mod model;
pub mod train;

pub use model::{Transformer, TransformerConfig};
pub use train::{TrainOutcome, TrainSpec, train};
