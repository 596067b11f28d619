//! The GPU code path: a tiny pack of each family trained on a GPU backend
//! against the same pack on flex (the CPU backend). By default that is burn's
//! wgpu backend, the cubecl kernels the CUDA backend compiles, which CI runs
//! on Mesa's software Vulkan device (lavapipe); with `--features cuda` it is
//! the worker's CUDA backend (`bench/gpu/run.sh`). They need a device, so they
//! are ignored by the README's test command and run by name:
//! `cargo test --workspace --test gpu -- --ignored` (`.ci/run` installs
//! lavapipe first). burn's wgpu backend is a dev-dependency of this package,
//! so a test build of the workspace compiles the burn stack once with it and
//! this file adds no second build of the worker.

use burn::backend::{Autodiff, Flex};
use burn::tensor::backend::AutodiffBackend;
use sweep_core::{
    DiffusionSettings, FamilySettings, LeaseRef, OperandInput, StopRule, TrainingSettings, TransformerSettings, TrialId, TrialLease,
    TrialParams,
};
use sweep_worker::diffusion::DiffusionPack;
use sweep_worker::family::{FamilyContext, PackFamily};
use sweep_worker::runner::run_pack;
use sweep_worker::sink::{CollectingSink, MeasureSink};
use sweep_worker::transformer::TransformerPack;
use sweep_worker::transformer::model::Gather;

/// The backend under test: the worker's own with `--features cuda`, else wgpu.
#[cfg(feature = "cuda")]
type Gpu = sweep_worker::backend::WorkerBackend;
/// The backend under test: the worker's own with `--features cuda`, else wgpu.
#[cfg(not(feature = "cuda"))]
type Gpu = burn::backend::Wgpu;

fn lease(name: &str, family: FamilySettings, modulus: u32, fraction: f64, weight_decay: f64, seed: u64, epochs: u32) -> TrialLease {
    let image_diversity = matches!(family, FamilySettings::Diffusion(_)).then_some(1);
    TrialLease {
        lease: LeaseRef { trial_id: TrialId::from_raw(name), attempt: 1, token: 1 },
        sweep: "gpu".into(),
        params: TrialParams::new(family.family(), modulus, fraction, weight_decay, seed, seed, image_diversity),
        training: TrainingSettings {
            lr: 1e-2,
            warmup_steps: 3,
            eval_every: epochs / 2,
            checkpoint_every: 0,
            ..TrainingSettings::default()
        },
        stop: StopRule { max_epochs: epochs, target_test_accuracy: None, patience: 1 },
        family,
        deadline_ms: 0,
    }
}

fn train<B: AutodiffBackend, F: PackFamily<B> + Sync>(leases: &[TrialLease], device: &B::Device) -> Vec<CollectingSink> {
    let scratch = tempfile::tempdir().expect("scratch");
    let context = FamilyContext::new(std::env::temp_dir());
    let mut sinks: Vec<CollectingSink> = leases.iter().map(|_| CollectingSink::default()).collect();
    let borrowed: Vec<&mut dyn MeasureSink> = sinks.iter_mut().map(|sink| sink as &mut dyn MeasureSink).collect();
    run_pack::<B, F>(leases.to_vec(), borrowed, &context, scratch.path(), device);
    sinks
}

/// Measures that are float noise at step 0 and so backend-dependent there:
/// with adaLN-Zero's gates closed and the Fourier analysis at t = 1 (pure
/// noise), the FFN pre-activations do not depend on (a, b) at
/// initialisation, and the entropy of their (a, b) spectrum is the entropy
/// of rounding errors.
const NOISE_AT_INIT: [&str; 1] = [sweep_core::measures::SPECTRAL_ENTROPY];

/// Every value of `gpu` within `tolerance` (relative, floor 1e-3) of `cpu`;
/// accuracies may differ by `accuracy_slack` (judged samples on a margin).
fn compare(gpu: &[CollectingSink], cpu: &[CollectingSink], tolerance: f64, accuracy_slack: f64) {
    for (trial, (gpu, cpu)) in gpu.iter().zip(cpu).enumerate() {
        assert!(gpu.metrics().is_some() && cpu.metrics().is_some(), "trial {trial} finished on both backends");
        let (gpu_values, cpu_values) = (gpu.values(), cpu.values());
        assert_eq!(gpu_values.len(), cpu_values.len(), "trial {trial}: the same measures");
        for ((step, name, x), (_, other, y)) in gpu_values.iter().zip(&cpu_values) {
            assert_eq!(name, other, "trial {trial}");
            if *step == 0 && NOISE_AT_INIT.contains(&name.as_str()) {
                continue;
            }
            let slack = if name.contains("accuracy") || name.contains("switch") { accuracy_slack } else { 0.0 };
            let close = (x - y).abs() <= tolerance * y.abs().max(1e-3) + slack || (x.is_nan() && y.is_nan());
            assert!(close, "trial {trial}, {name} at step {step}: gpu {x} vs flex {y}");
        }
    }
}

#[test]
#[ignore = "needs a GPU or a Vulkan driver (lavapipe in CI): `cargo test --workspace --test gpu -- --ignored`"]
fn the_gpu_backend_trains_a_transformer_pack_as_flex_does() {
    let sizes = FamilySettings::Transformer(TransformerSettings { d_model: 32, n_heads: 4, d_mlp: 64 });
    let leases = [lease("a", sizes.clone(), 11, 0.6, 1.0, 1, 40), lease("b", sizes, 11, 0.4, 0.1, 2, 40)];
    // The GPU pack gathers its inputs' rows by products, flex by select: the
    // comparison covers both ways.
    assert_eq!(Gather::for_backend::<Autodiff<Gpu>>(&Default::default()), Gather::Products);
    assert_eq!(Gather::for_backend::<Autodiff<Flex>>(&Default::default()), Gather::Select);
    let gpu = train::<Autodiff<Gpu>, TransformerPack<Autodiff<Gpu>>>(&leases, &Default::default());
    let cpu = train::<Autodiff<Flex>, TransformerPack<Autodiff<Flex>>>(&leases, &Default::default());
    compare(&gpu, &cpu, 2e-3, 0.0);
}

#[test]
#[ignore = "needs a GPU or a Vulkan driver (lavapipe in CI): `cargo test --workspace --test gpu -- --ignored`"]
fn the_gpu_backend_trains_a_diffusion_pack_as_flex_does() {
    let settings = FamilySettings::Diffusion(DiffusionSettings {
        operand_input: OperandInput::Image,
        image_size: 16,
        patch_size: 4,
        d_model: 16,
        n_heads: 2,
        d_ffn: 16,
        sample_steps: 5,
        decision_points: 5,
        switch_times: vec![0.6],
        ..DiffusionSettings::default()
    });
    let leases = [lease("a", settings.clone(), 5, 0.6, 1.0, 1, 10), lease("b", settings, 5, 0.5, 0.1, 2, 10)];
    let gpu = train::<Autodiff<Gpu>, DiffusionPack<Autodiff<Gpu>>>(&leases, &Default::default());
    let cpu = train::<Autodiff<Flex>, DiffusionPack<Autodiff<Flex>>>(&leases, &Default::default());
    // Generated images are judged: a sample on the judge's margin may flip, one in 25 pairs.
    compare(&gpu, &cpu, 5e-3, 0.05);
}
