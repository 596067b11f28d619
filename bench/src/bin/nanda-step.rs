//! Time the Nanda et al. step (p = 113, fraction 0.3, full batch, d_model 128)
//! on the worker's backend: `cargo run --release -p groksweep-bench --bin nanda-step [steps]`.

use std::time::Instant;

use burn::module::AutodiffModule;
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use burn::tensor::activation::log_softmax;
use sweep_core::Split;
use sweep_worker::backend::{BACKEND_NAME, TrainingBackend};
use sweep_worker::transformer::data::TrialData;
use sweep_worker::transformer::eval::evaluate;
use sweep_worker::transformer::{Transformer, TransformerConfig};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let steps: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(200);
    let device = Default::default();
    let split = Split::new(113, 0.3, 0);
    let data = TrialData::<TrainingBackend>::new(&split, 113, &device);
    let mut model: Transformer<TrainingBackend> = TransformerConfig::new(113).init(&device);
    let mut optimizer = AdamWConfig::new().with_beta_1(0.9).with_beta_2(0.98).with_epsilon(1e-8).with_weight_decay(1.0).init();
    let n = data.train.len() as f64;
    let mut step_once = |model: Transformer<TrainingBackend>| {
        let logits = model.forward(data.train.tokens.clone()).logits;
        let loss = (log_softmax(logits, 1) * data.train.one_hot.clone()).sum().div_scalar(-n);
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

    let eval_data = TrialData::<<TrainingBackend as burn::tensor::backend::AutodiffBackend>::InnerBackend>::new(&split, 113, &device);
    let valid = model.valid();
    let eval_started = Instant::now();
    let train = evaluate(&valid, &eval_data.train, 113);
    let test = evaluate(&valid, &eval_data.test, 113);
    let squares = valid.sum_squared_weights();
    let eval_ms = eval_started.elapsed().as_secs_f64() * 1e3;
    println!(
        "backend={BACKEND_NAME} train_pairs={} steps={steps} ms_per_step={per_step:.1} eval_ms={eval_ms:.1} (train loss {:.3}, test loss {:.3}, Σθ² {squares:.0})",
        data.train.len(),
        train.loss,
        test.loss
    );
}
