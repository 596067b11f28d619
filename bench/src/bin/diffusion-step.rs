//! Time the diffusion family's training step (full batch over the training
//! pairs, P = 23, fraction 0.9 by default) and one evaluation with every
//! measure, on the worker's backend, and report the peak resident memory.
//! `cargo run --release -p groksweep-bench --bin diffusion-step -- [steps] [d_model] [image_size] [patch_size] [N] [heads]`
//! (defaults: 5 steps, the paper's d_model 512 at 28 px with 4-px patches, N = 1, 8 heads).

use std::time::Instant;

use burn::module::AutodiffModule;
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use sweep_core::split::SplitMix64;
use sweep_core::{DiffusionSettings, Split};
use sweep_glyphs::GlyphSet;
use sweep_worker::backend::{BACKEND_NAME, TrainingBackend};
use sweep_worker::diffusion::data::{Batch, ImageBank};
use sweep_worker::diffusion::judge::{ExemplarJudge, Judge};
use sweep_worker::diffusion::measures::Evaluator;
use sweep_worker::diffusion::{Dit, DitConfig};

type Inner = <TrainingBackend as burn::tensor::backend::AutodiffBackend>::InnerBackend;

#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Peak resident set size of this process, from /proc (Linux), in MiB.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn main() {
    let arg = |index: usize, default: usize| std::env::args().nth(index).and_then(|s| s.parse().ok()).unwrap_or(default);
    let (steps, d_model, image_size, patch_size, per_class) = (arg(1, 5), arg(2, 512), arg(3, 28), arg(4, 4), arg(5, 1));
    let heads = arg(6, if d_model % 8 == 0 { 8 } else { 1 });
    let (p, fraction) = (23usize, 0.9);
    let settings = DiffusionSettings {
        image_size: image_size as u32,
        patch_size: patch_size as u32,
        d_model: d_model as u32,
        d_ffn: d_model as u32,
        n_heads: heads as u32,
        ..DiffusionSettings::default()
    };
    let device = Default::default();
    let set = GlyphSet::new(0, image_size, settings.augmentation).expect("valid glyph settings");
    let bank = ImageBank::generate(&set, p, per_class);
    let split = Split::new(p as u32, fraction, 0);
    let pairs: Vec<(usize, usize)> = split.train.iter().map(|&(a, b)| (a as usize, b as usize)).collect();
    let config = DitConfig {
        classes: p,
        image_size,
        patch_size,
        d_model,
        n_heads: settings.n_heads as usize,
        d_ffn: d_model,
        operand_input: settings.operand_input,
        seed: 0,
    };
    let mut model: Dit<TrainingBackend> = config.init(&device);
    let mut optimizer = AdamWConfig::new().with_beta_1(0.9).with_beta_2(0.98).with_weight_decay(1.0).init();
    let mut rng = SplitMix64::new(1);
    let mut step_once = |model: Dit<TrainingBackend>, rng: &mut SplitMix64| {
        let batch = Batch::<TrainingBackend>::draw(&bank, &pairs, settings.operand_input, None, rng, &device);
        let (x_t, time) = batch.noisy_input(&device);
        let loss = (model.forward(x_t, time, batch.operands).x0 - batch.x0).powi_scalar(2).mean();
        let gradients = GradientsParams::from_grads(loss.backward(), &model);
        optimizer.step(1e-3, model, gradients)
    };
    model = step_once(model, &mut rng);
    let started = Instant::now();
    for _ in 0..steps {
        model = step_once(model, &mut rng);
    }
    // Reading the weights back waits for the last step to finish.
    let squared = model.valid().sum_squared_weights();
    let per_step = started.elapsed().as_secs_f64() * 1e3 / steps as f64;
    // How much of a step is drawing the batch on the host (images, t, ε) and uploading it.
    let started = Instant::now();
    for _ in 0..steps {
        let batch = Batch::<TrainingBackend>::draw(&bank, &pairs, settings.operand_input, None, &mut rng, &device);
        let _ = batch.noisy_input(&device);
    }
    let draw_ms = started.elapsed().as_secs_f64() * 1e3 / steps as f64;
    let valid = model.valid();
    let judge = Judge::<Inner>::Exemplar(ExemplarJudge::new(bank.prototypes(), bank.pixels()));
    let evaluator = Evaluator::<Inner>::new(&settings, bank.clone(), &split, judge, 0, &device);
    let started = Instant::now();
    let evaluation = evaluator.evaluate(&valid);
    let eval_ms = started.elapsed().as_secs_f64() * 1e3;
    println!(
        "backend {BACKEND_NAME} ({}): P = {p}, {} training pairs, d_model {d_model}, {heads} heads, {image_size} px / {patch_size}-px patches ({} tokens), N = {per_class}: {per_step:.0} ms per step ({steps} steps; drawing the batch {draw_ms:.0} ms of it), one evaluation {eval_ms:.0} ms ({} sampler steps over {} pairs + {} switch runs), peak RSS {:.0} MiB; Σθ² {squared:.1}, train loss {:.4}",
        groksweep_bench::build_info(),
        pairs.len(),
        (image_size / patch_size).pow(2) + 2,
        settings.sample_steps,
        p * p,
        settings.switch_times.len(),
        peak_rss_mib().unwrap_or(f64::NAN),
        evaluation.train_loss,
    );
}
