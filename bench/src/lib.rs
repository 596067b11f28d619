//! Benchmarks run by hand (`cargo run --release -p groksweep-bench --bin ...`);
//! their results are recorded in `bench/RESULTS.md` with the command that made them.
//!
//! - `nanda-step`: ms per full-batch training step at p = 113 (3,830 pairs).
//! - `diffusion-step`: ms per diffusion training step and per evaluation, peak memory.
//! - `coordinator-load`: leases per second with simulated workers on loopback,
//!   and the time to plan and store a 100,000-trial sweep.
