//! The burn backend a worker trains on, chosen by cargo features: `flex` (CPU,
//! default), `cuda` (NVIDIA GPUs), `wgpu` (any Vulkan, Metal or DX12 device
//! through wgpu; the same cubecl kernels as `cuda`, and what CI runs on
//! Mesa's software Vulkan device), or `ndarray` (burn's older CPU backend,
//! kept only so the benchmarks can compare the two CPU backends). With more
//! than one on, `cuda` wins, then `wgpu`.

use burn::backend::Autodiff;

/// The inference backend.
#[cfg(not(any(feature = "cuda", feature = "wgpu", feature = "ndarray")))]
pub type WorkerBackend = burn::backend::Flex;
/// The inference backend.
#[cfg(feature = "cuda")]
pub type WorkerBackend = burn::backend::Cuda;
/// The inference backend.
#[cfg(all(feature = "wgpu", not(feature = "cuda")))]
pub type WorkerBackend = burn::backend::Wgpu;
/// The inference backend.
#[cfg(all(feature = "ndarray", not(any(feature = "cuda", feature = "wgpu"))))]
pub type WorkerBackend = burn::backend::NdArray;

/// The training backend.
pub type TrainingBackend = Autodiff<WorkerBackend>;

/// Name reported to the coordinator and stored with results.
pub const BACKEND_NAME: &str = if cfg!(feature = "cuda") {
    "cuda"
} else if cfg!(feature = "wgpu") {
    "wgpu"
} else if cfg!(feature = "ndarray") {
    "ndarray"
} else {
    "flex"
};

/// CPU backend of the unit tests.
#[cfg(test)]
pub(crate) type TestBackend = burn::backend::Flex;
/// CPU autodiff backend of the unit tests.
#[cfg(test)]
pub(crate) type TestAutodiffBackend = Autodiff<TestBackend>;

/// Trials per pack when a worker is not told (`--pack`): one on the CPU
/// backends, where a pack of K shares per-operation overhead but not the
/// arithmetic (bench/RESULTS.md, "Packs"), and 32 on GPU backends, where one
/// small model leaves the device mostly idle.
pub fn default_pack_size() -> u32 {
    if cfg!(feature = "cuda") { 32 } else { 1 }
}

/// Whether a burn backend of this name (`B::name(&device)`) runs cubecl
/// kernels (CUDA, wgpu; with or without fusion and autodiff, whose names
/// wrap the inner one's: `autodiff<fusion<cubecl<cuda>>>`). Some operations
/// are fast on one kind and slow on the other: a gather by `select` (its
/// gradient is serial per column on cubecl) against one-hot products or
/// `repeat_dim` (burn-flex copies the repeated bytes twice).
pub(crate) fn is_cubecl(backend_name: &str) -> bool {
    backend_name.contains("cubecl")
}

#[cfg(test)]
mod tests {
    use burn::tensor::backend::Backend;

    use super::*;

    #[test]
    fn the_cpu_backends_are_not_cubecl_and_the_gpu_ones_are() {
        assert!(!is_cubecl(&TestBackend::name(&Default::default())));
        assert!(!is_cubecl(&TestAutodiffBackend::name(&Default::default())));
        assert!(is_cubecl("autodiff<fusion<cubecl<cuda>>>"));
        assert!(is_cubecl("fusion<cubecl<wgpu<wgsl>>>"));
    }
}
