//! Time the Nanda et al. step (p = 113, fraction 0.3, full batch, d_model 128)
//! of a single trial (a pack of one, the worker's only code path) on the
//! worker's backend, and what the progress measures cost next to it: one
//! evaluation with every measure, one checkpoint saved, and one final-K
//! re-computation over a checkpoint.
//! `cargo run --release -p groksweep-bench --bin nanda-step [steps] [p] [step-threads]`
//! (p defaults to the paper's 113; a small p makes a quick functional run;
//! step-threads, the threads of one step, defaults to the machine's cores as
//! a worker with one slot uses them).

use std::time::Instant;

use burn::tensor::backend::Backend;
use sweep_core::measures::{SUM_SQUARED_WEIGHTS, TEST_LOSS, TRAIN_LOSS};
use sweep_worker::backend::{BACKEND_NAME, TrainingBackend};
use sweep_worker::family::LocalCheckpoints;
use sweep_worker::transformer::TransformerPack;
use sweep_worker::{CollectingSink, FamilyContext, PackFamily};

/// Median of `runs` timings of `work`, in ms.
fn median_ms(runs: usize, mut work: impl FnMut()) -> f64 {
    let mut times: Vec<f64> = (0..runs)
        .map(|_| {
            let started = Instant::now();
            work();
            started.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[runs / 2]
}

#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let steps: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(200);
    let p: u32 = std::env::args().nth(2).and_then(|s| s.parse().ok()).unwrap_or(113);
    let step_threads: usize =
        std::env::args().nth(3).and_then(|s| s.parse().ok()).unwrap_or_else(|| sweep_worker::family::default_step_threads(1));
    let device = Default::default();
    let context = FamilyContext::new(std::env::temp_dir()).with_step_threads(step_threads);
    let lease = groksweep_bench::transformer_lease(p, 0.3, 1.0, 0);
    let train_pairs = sweep_core::split::train_size(p, 0.3);
    let member = TransformerPack::<TrainingBackend>::prepare(&lease, &context, &device)?;
    let mut pack = TransformerPack::stack(vec![member], &context, &device);
    for _ in 0..10 {
        pack.step(&[1e-3]);
    }
    let started = Instant::now();
    for _ in 0..steps {
        pack.step(&[1e-3]);
    }
    // Wait for the device to finish the queued steps (the CPU backends have
    // already: they run each operation as it is called). Until 2026-12-04
    // the timed span ended with one evaluation instead, which added its
    // 0.4 s / steps to every step on the CPU.
    TrainingBackend::sync(&device).expect("the device finished the steps");
    let per_step = started.elapsed().as_secs_f64() * 1e3 / steps as f64;
    let mut evaluation = pack.evaluate(0);

    let eval_ms = median_ms(5, || evaluation = pack.evaluate(0));
    let mut bytes = Vec::new();
    let save_ms = median_ms(5, || bytes = pack.checkpoint(0, steps as i64).expect("saves").expect("the transformer checkpoints"));
    let scratch = tempfile::tempdir()?;
    let mut checkpoints = LocalCheckpoints::create(scratch.path(), "bench")?;
    checkpoints.add(steps as i64, &bytes)?;
    let final_k_ms = median_ms(5, || {
        pack.record_final(0, &evaluation, &checkpoints, &mut CollectingSink::default()).expect("final-K measures");
    });
    // Share of a run at eval_every = checkpoint_every = 100.
    let measures_ms = eval_ms + save_ms + final_k_ms;
    let share = measures_ms / (100.0 * per_step + measures_ms);
    let scalar = |name: &str| evaluation.measures.iter().find(|m| m.name == name).and_then(|m| m.as_scalar()).unwrap_or(f64::NAN);
    println!(
        "backend={BACKEND_NAME} {} p={p} train_pairs={train_pairs} step_threads={step_threads} steps={steps} ms_per_step={per_step:.1} eval_ms={eval_ms:.1} checkpoint_save_ms={save_ms:.1} \
         final_k_ms={final_k_ms:.1} checkpoint_bytes={} measures_share_at_every_100={:.1}% (train loss {:.3}, test loss {:.3}, Σθ² {:.0})",
        groksweep_bench::build_info(),
        bytes.len(),
        share * 100.0,
        scalar(TRAIN_LOSS),
        scalar(TEST_LOSS),
        scalar(SUM_SQUARED_WEIGHTS),
    );
    Ok(())
}
