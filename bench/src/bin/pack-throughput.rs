//! Throughput of packing on the worker's backend: K transformer trials at
//! modulus p (fraction 0.3, the paper's sizes, seeds 0..K, weight decay 0.3
//! or 1 alternately) trained either as one pack of K (`pack`, one stacked
//! program) or as K packs of one on K threads (`slots`, what `--slots K
//! --pack 1` does), for `steps` full-batch steps after 3 warm-up steps.
//! Prints trials·epochs per second, ms per step (waiting for the device at
//! the end), the time one member's evaluation takes (pack mode) and memory.
//! `cargo run --release -p groksweep-bench --bin pack-throughput -- <p> <K> <pack|slots> [steps] [step-threads]`
//! (step-threads: threads per pack step, see `FamilyContext::step_threads`;
//! by default the machine's cores shared by the packs training at once).

use std::time::Instant;

use burn::tensor::backend::Backend;
use sweep_worker::backend::{BACKEND_NAME, TrainingBackend};
use sweep_worker::transformer::TransformerPack;
use sweep_worker::{FamilyContext, PackFamily};

#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

type Pack = TransformerPack<TrainingBackend>;

fn build(p: u32, seeds: std::ops::Range<u64>, step_threads: usize) -> anyhow::Result<Pack> {
    let device = Default::default();
    let context = FamilyContext::new(std::env::temp_dir()).with_step_threads(step_threads);
    let mut members = Vec::new();
    for seed in seeds {
        let weight_decay = if seed % 2 == 0 { 1.0 } else { 0.3 };
        members.push(Pack::prepare(&groksweep_bench::transformer_lease(p, 0.3, weight_decay, seed), &context, &device)?);
    }
    Ok(Pack::stack(members, &context, &device))
}

/// Train `pack` for `steps` steps after 3 warm-up steps; returns the seconds of the timed steps.
fn train(pack: &mut Pack, steps: usize, trials: usize) -> f64 {
    let rates = vec![1e-3; trials];
    for _ in 0..3 {
        pack.step(&rates);
    }
    let started = Instant::now();
    for _ in 0..steps {
        pack.step(&rates);
    }
    // Wait for the device to finish the queued steps (the CPU backends have
    // already: they run each operation as it is called).
    TrainingBackend::sync(&Default::default()).expect("the device finished the steps");
    started.elapsed().as_secs_f64()
}

/// Milliseconds one member's evaluation takes (every measure; the runner
/// evaluates the due members of a pack side by side, one per core), the
/// mean over up to 4 members evaluated one after another.
fn evaluation_ms(pack: &Pack, trials: usize) -> f64 {
    let members = trials.min(4);
    let started = Instant::now();
    for index in 0..members {
        let _ = pack.evaluate(index).train_loss;
    }
    started.elapsed().as_secs_f64() * 1e3 / members as f64
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    anyhow::ensure!(args.len() >= 4, "usage: pack-throughput <p> <K> <pack|slots> [steps] [step-threads]");
    let p: u32 = args[1].parse()?;
    let trials: usize = args[2].parse()?;
    let mode = args[3].as_str();
    let steps: usize = args.get(4).map(|s| s.parse()).transpose()?.unwrap_or(10);
    // Threads per pack step: by default the cores shared by the packs
    // training at once, as the worker does (`--slots`).
    let packs_at_once = if mode == "slots" { trials } else { 1 };
    let step_threads: usize =
        args.get(5).map(|s| s.parse()).transpose()?.unwrap_or_else(|| sweep_worker::family::default_step_threads(packs_at_once));
    let baseline = groksweep_bench::status_mib("VmRSS:").unwrap_or(f64::NAN);
    let mut evaluation = f64::NAN;
    let seconds = match mode {
        "pack" => {
            let mut pack = build(p, 0..trials as u64, step_threads)?;
            let seconds = train(&mut pack, steps, trials);
            evaluation = evaluation_ms(&pack, trials);
            seconds
        }
        "slots" => {
            let packs: Vec<Pack> = (0..trials as u64).map(|seed| build(p, seed..seed + 1, step_threads)).collect::<anyhow::Result<_>>()?;
            let started = Instant::now();
            std::thread::scope(|scope| {
                for mut pack in packs {
                    scope.spawn(move || train(&mut pack, steps, 1));
                }
            });
            // The warm-up steps of every thread run inside the wall time here;
            // subtract them as the same share of each thread's work.
            started.elapsed().as_secs_f64() * steps as f64 / (steps + 3) as f64
        }
        other => anyhow::bail!("mode `{other}` is not `pack` or `slots`"),
    };
    let peak = groksweep_bench::status_mib("VmHWM:").unwrap_or(f64::NAN);
    let trial_epochs = (trials * steps) as f64 / seconds;
    println!(
        "backend={BACKEND_NAME} {} p={p} train_pairs={} K={trials} mode={mode} step_threads={step_threads} steps={steps} ms_per_step={:.1} trial_epochs_per_s={trial_epochs:.2} eval_ms_per_member={evaluation:.0} peak_rss_mib={peak:.0} rss_per_trial_mib={:.1}",
        groksweep_bench::build_info(),
        sweep_core::split::train_size(p, 0.3),
        seconds * 1e3 / steps as f64,
        (peak - baseline) / trials as f64,
    );
    Ok(())
}
