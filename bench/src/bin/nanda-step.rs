//! Time the Nanda et al. step (p = 113, fraction 0.3, full batch, d_model 128)
//! on the worker's backend, and what the progress measures cost next to it:
//! one evaluation with every measure, one checkpoint saved, and one final-K
//! re-computation over a checkpoint.
//! `cargo run --release -p groksweep-bench --bin nanda-step [steps] [p]`
//! (p defaults to the paper's 113; a small p makes a quick functional run).

use std::time::Instant;

use burn::module::AutodiffModule;
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use sweep_core::Split;
use sweep_core::{Family, TrialParams};
use sweep_worker::backend::{BACKEND_NAME, TrainingBackend};
use sweep_worker::transformer::checkpoint::{self, CheckpointInfo};
use sweep_worker::transformer::data::TrialData;
use sweep_worker::transformer::measures::Evaluator;
use sweep_worker::transformer::train::cross_entropy;
use sweep_worker::transformer::{Transformer, TransformerConfig};

type Inner = <TrainingBackend as burn::tensor::backend::AutodiffBackend>::InnerBackend;

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

fn main() {
    let steps: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(200);
    let p: u32 = std::env::args().nth(2).and_then(|s| s.parse().ok()).unwrap_or(113);
    let device = Default::default();
    let split = Split::new(p, 0.3, 0);
    let data = TrialData::<TrainingBackend>::new(&split, p, &device);
    let mut model: Transformer<TrainingBackend> = TransformerConfig::new(p as usize).init(&device);
    let mut optimizer = AdamWConfig::new().with_beta_1(0.9).with_beta_2(0.98).with_epsilon(1e-8).with_weight_decay(1.0).init();
    let mut step_once = |model: Transformer<TrainingBackend>| {
        let logits = model.forward(data.train.tokens.clone()).logits;
        let loss = cross_entropy(logits, data.train.one_hot.clone());
        let gradients = GradientsParams::from_grads(loss.backward(), &model);
        optimizer.step(1e-3, model, gradients)
    };
    for _ in 0..10 {
        model = step_once(model);
    }
    let started = Instant::now();
    for _ in 0..steps {
        model = step_once(model);
    }
    // Force the last step to finish before stopping the clock.
    let _ = model.valid().sum_squared_weights();
    let per_step = started.elapsed().as_secs_f64() * 1e3 / steps as f64;

    let evaluator = Evaluator::<Inner>::new(&split, p, &device);
    let valid = model.valid();
    let mut evaluation = None;
    let eval_ms = median_ms(5, || evaluation = Some(evaluator.evaluate(&valid)));
    let evaluation = evaluation.expect("evaluated");
    let info = CheckpointInfo {
        step: steps as i64,
        params: TrialParams {
            family: Family::Transformer,
            modulus: p,
            data_fraction: 0.3,
            weight_decay: 1.0,
            seed: 0,
            data_seed: 0,
            image_diversity: None,
        },
    };
    let mut bytes = Vec::new();
    let save_ms = median_ms(5, || bytes = checkpoint::save(&valid, &info).expect("saves"));
    let final_k_ms = median_ms(5, || {
        let (loaded, _) = checkpoint::load::<Inner>(&bytes, &device).expect("loads");
        let _ = evaluator.restricted_excluded_with(&loaded, &evaluation.key_frequencies);
    });
    // Share of a run at eval_every = checkpoint_every = 100.
    let measures_ms = eval_ms + save_ms + final_k_ms;
    let share = measures_ms / (100.0 * per_step + measures_ms);
    println!(
        "backend={BACKEND_NAME} {} p={p} train_pairs={} steps={steps} ms_per_step={per_step:.1} eval_ms={eval_ms:.1} checkpoint_save_ms={save_ms:.1} \
         final_k_ms={final_k_ms:.1} checkpoint_bytes={} measures_share_at_every_100={:.1}% (train loss {:.3}, test loss {:.3}, Σθ² {:.0})",
        groksweep_bench::build_info(),
        data.train.len(),
        bytes.len(),
        share * 100.0,
        evaluation.train.loss,
        evaluation.test.loss,
        evaluation.sum_squared_weights,
    );
}
