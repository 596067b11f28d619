//! Benchmarks run by hand (`cargo run --release -p groksweep-bench --bin ...`);
//! their results are recorded in `bench/RESULTS.md` with the command that made them.
//!
//! - `nanda-step`: ms per full-batch training step at p = 113 (3,830 pairs).
//! - `diffusion-step`: ms per diffusion training step and per evaluation, peak memory.
//! - `avx512-control`: executes an AVX-512 instruction unchecked (the control of
//!   `bench/x86-v4-without-avx512.sh`).
//! - `coordinator-load`: leases per second with simulated workers on loopback,
//!   and the time to plan and store a 100,000-trial sweep.

/// How the running benchmark was built and what the CPU offers, printed with
/// every result: the allocator (`mimalloc` unless built with
/// `--no-default-features`), whether burn's `x86-v4` kernels were compiled in,
/// and whether this CPU has AVX-512F (gemm uses those kernels only if it has).
pub fn build_info() -> String {
    let allocator = if cfg!(feature = "mimalloc") { "mimalloc" } else { "system" };
    format!("allocator={allocator} x86-v4={} cpu_avx512f={}", cfg!(feature = "x86-v4"), cpu_has_avx512f())
}

#[cfg(target_arch = "x86_64")]
fn cpu_has_avx512f() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
}

#[cfg(not(target_arch = "x86_64"))]
fn cpu_has_avx512f() -> bool {
    false
}
