//! Synthetic transformer progress: 12 scalar measures per evaluation that
//! follow a memorise-then-grok curve, valid under the coordinator's checks
//! (`synthetic-results`, `ingest-load`).

use sweep_core::measures as names;
use sweep_core::{Measure, StepMeasures};

/// The 12 measures of each evaluation.
pub const MEASURES: [&str; 12] = [
    names::TRAIN_LOSS,
    names::TEST_LOSS,
    names::TRAIN_ACCURACY,
    names::TEST_ACCURACY,
    names::SUM_SQUARED_WEIGHTS,
    names::RESTRICTED_LOSS,
    names::EXCLUDED_LOSS,
    names::GINI_W_E,
    names::GINI_W_L,
    names::KEY_FREQUENCY_COUNT,
    names::EFFECTIVE_RANK_W_E,
    names::EFFECTIVE_RANK_W_L,
];

/// Where trial `trial`'s test accuracy crosses 0.5: 2,000 + (7,919 trial mod 30,000).
fn grokking_centre(trial: usize) -> f64 {
    2_000.0 + ((7_919 * trial) % 30_000) as f64
}

/// Trial `trial`'s test accuracy at `step`: a logistic step around its centre.
pub fn test_accuracy(trial: usize, step: i64) -> f64 {
    1.0 / (1.0 + (-(step as f64 - grokking_centre(trial)) / 500.0).exp())
}

/// Trial `trial`'s 12 measures at `step`.
pub fn evaluation(trial: usize, step: i64, wall_time_ms: i64) -> StepMeasures {
    let test = test_accuracy(trial, step);
    let memorised = 1.0 - (-(step as f64) / 300.0).exp();
    let values = [
        2.0 * (1.0 - memorised) + 1e-3,
        4.0 * (1.0 - test) + 1e-3,
        memorised,
        test,
        400.0 - 200.0 * test,
        1.0 - 0.9 * test,
        1.0 + 3.0 * test,
        0.2 + 0.6 * test,
        0.1 + 0.7 * test,
        (5.0 * test).round(),
        30.0 - 20.0 * test,
        40.0 - 25.0 * test,
    ];
    let measures = MEASURES.iter().zip(values).map(|(name, value)| Measure::scalar(*name, value)).collect();
    StepMeasures { step, wall_time_ms, measures }
}
