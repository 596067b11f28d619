//! The transformer family (Nanda et al. 2023): `model`, `data`, `train`, `eval`.

pub mod data;
pub mod eval;
pub mod model;
pub mod train;

pub use model::{Transformer, TransformerConfig};
pub use train::{TrainOutcome, TrainSpec, train};
