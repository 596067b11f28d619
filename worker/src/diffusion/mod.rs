//! The diffusion family ("Grokking of Diffusion Models: Case Study on
//! Modular Addition"): a one-block DiT trained with rectified flow to draw
//! the symbol of (a + b) mod P.
//!
//! - `data`: the trial's glyph images and its batches
//! - `model`: the DiT (operand bottleneck or embeddings, adaLN-Zero)
//! - `flow`: interpolation, velocity and the Euler sampler
//! - `judge`: nearest exemplar (N = 1) or the CNN (`classifier`, diverse N)
//! - `measures`: every progress measure of one step
//! - `pack`: the family's [`crate::family::PackFamily`]: per-trial draws, the flow-matching loss, measures

pub mod classifier;
pub mod data;
pub mod flow;
pub mod judge;
pub mod measures;
pub mod model;
pub mod pack;

pub use model::{Dit, DitConfig};
pub use pack::{DiffusionError, DiffusionPack};
