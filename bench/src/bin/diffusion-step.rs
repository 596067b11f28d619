//! Time the diffusion family's training step (full batch over the training
//! pairs, P = 23, fraction 0.9 by default) of a single trial (a pack of one)
//! and one evaluation with every measure, on the worker's backend, and report
//! the peak resident memory.
//! `cargo run --release -p groksweep-bench --bin diffusion-step -- [steps] [d_model] [image_size] [patch_size] [N] [heads] [step-threads]`
//! (defaults: 5 steps, the paper's d_model 512 at 28 px with 4-px patches, N = 1, 8 heads,
//! and the machine's cores for one step, as a worker with one slot).

use std::time::Instant;

use sweep_core::measures::{SUM_SQUARED_WEIGHTS, TRAIN_LOSS};
use sweep_core::split::SplitMix64;
use sweep_core::{DiffusionSettings, Split};
use sweep_glyphs::GlyphSet;
use sweep_worker::backend::{BACKEND_NAME, TrainingBackend};
use sweep_worker::diffusion::DiffusionPack;
use sweep_worker::diffusion::data::{HostDraw, ImageBank};
use sweep_worker::{FamilyContext, PackFamily};

#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let arg = |index: usize, default: usize| std::env::args().nth(index).and_then(|s| s.parse().ok()).unwrap_or(default);
    let (steps, d_model, image_size, patch_size, per_class) = (arg(1, 5), arg(2, 512), arg(3, 28), arg(4, 4), arg(5, 1));
    let heads = arg(6, if d_model % 8 == 0 { 8 } else { 1 });
    let step_threads = arg(7, sweep_worker::family::default_step_threads(1));
    let (p, fraction) = (23u32, 0.9);
    let settings = DiffusionSettings {
        image_size: image_size as u32,
        patch_size: patch_size as u32,
        d_model: d_model as u32,
        d_ffn: d_model as u32,
        n_heads: heads as u32,
        ..DiffusionSettings::default()
    };
    let device = Default::default();
    let context = FamilyContext::new(std::env::temp_dir().join("groksweep-bench-cache")).with_step_threads(step_threads);
    let lease = groksweep_bench::diffusion_lease(p, fraction, 0, per_class as u32, settings.clone());
    let member = DiffusionPack::<TrainingBackend>::prepare(&lease, &context, &device)?;
    let mut pack = DiffusionPack::stack(vec![member], &context, &device);
    pack.step(&[1e-3]);
    let started = Instant::now();
    for _ in 0..steps {
        pack.step(&[1e-3]);
    }
    // Evaluating reads the weights back, which waits for the last step to finish.
    let started_eval = Instant::now();
    let evaluation = pack.evaluate(0);
    let eval_ms = started_eval.elapsed().as_secs_f64() * 1e3;
    let per_step = (started.elapsed().as_secs_f64() * 1e3 - eval_ms) / steps as f64;
    // How much of a step is drawing the batch on the host (images, t, ε).
    let set = GlyphSet::new(0, image_size, settings.augmentation)?;
    let bank = ImageBank::generate(&set, p as usize, per_class);
    let split = Split::new(p, fraction, 0);
    let pairs: Vec<(usize, usize)> = split.train.iter().map(|&(a, b)| (a as usize, b as usize)).collect();
    let mut rng = SplitMix64::new(1);
    let started = Instant::now();
    for _ in 0..steps {
        let _ = HostDraw::draw(&bank, &pairs, settings.operand_input, None, &mut rng);
    }
    let draw_ms = started.elapsed().as_secs_f64() * 1e3 / steps as f64;
    let scalar = |name: &str| evaluation.measures.iter().find(|m| m.name == name).and_then(|m| m.as_scalar()).unwrap_or(f64::NAN);
    println!(
        "backend {BACKEND_NAME} ({}): P = {p}, {} training pairs, d_model {d_model}, {heads} heads, {image_size} px / {patch_size}-px patches ({} tokens), N = {per_class}, {step_threads} step threads: {per_step:.0} ms per step ({steps} steps; drawing the batch {draw_ms:.0} ms of it), one evaluation {eval_ms:.0} ms ({} sampler steps over {} pairs + {} switch runs), peak RSS {:.0} MiB; Σθ² {:.1}, train loss {:.4}",
        groksweep_bench::build_info(),
        pairs.len(),
        (image_size / patch_size).pow(2) + 2,
        settings.sample_steps,
        p * p,
        settings.switch_times.len(),
        groksweep_bench::status_mib("VmHWM:").unwrap_or(f64::NAN),
        scalar(SUM_SQUARED_WEIGHTS),
        scalar(TRAIN_LOSS),
    );
    Ok(())
}
