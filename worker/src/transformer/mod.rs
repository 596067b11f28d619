//! The transformer family (Nanda et al. 2023).
//!
//! - `model`: the one-layer transformer, stacked over the trials of a pack, and its initialisation
//! - `data`: a pack's training pairs as tensors (padded, weighted per trial)
//! - `pack`: the family's [`crate::family::PackFamily`]: loss, step, measures, checkpoints, final-K
//! - `eval`: f64 cross-entropy and accuracy
//! - `measures`: every progress measure of one step, from one forward pass
//! - `checkpoint`: safetensors checkpoints with TransformerLens names

pub mod checkpoint;
pub mod data;
pub mod eval;
pub mod measures;
pub mod model;
pub mod pack;

pub use model::{Transformer, TransformerConfig};
pub use pack::TransformerPack;
