//! Reading the results directory back, as an analysis tool would.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int32Type, Int64Type};
use arrow_array::{Array, RecordBatch};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

/// Every `*.parquet` under `directory`, recursively; hidden temp files excluded.
pub(crate) fn parquet_files(directory: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    // A table with no files yet is empty; any other failure to list it is an error, not an empty table.
    let entries = match std::fs::read_dir(directory) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return files,
        Err(error) => panic!("listing {}: {error}", directory.display()),
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(parquet_files(&path));
        } else if path.extension().is_some_and(|e| e == "parquet") && !entry.file_name().to_string_lossy().starts_with('.') {
            files.push(path);
        }
    }
    files.sort();
    files
}

pub(crate) fn read_batches(directory: &Path) -> Vec<RecordBatch> {
    let mut batches = Vec::new();
    for file in parquet_files(directory) {
        let reader =
            ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&file).expect("open")).expect("parquet").build().expect("reader");
        for batch in reader {
            batches.push(batch.expect("batch"));
        }
    }
    batches
}

/// One progress row.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Row {
    pub(crate) trial_id: String,
    pub(crate) attempt: i32,
    pub(crate) step: i64,
    pub(crate) measure: String,
    pub(crate) value: f64,
}

pub(crate) fn progress_rows(sweep_dir: &Path) -> Vec<Row> {
    let mut rows = Vec::new();
    for batch in read_batches(&sweep_dir.join("progress")) {
        sweep_core::measures::validate_schema(&sweep_core::measures::progress_schema(), &batch.schema()).expect("progress schema");
        let trial = batch.column_by_name("trial_id").expect("trial_id").as_string::<i32>().clone();
        let attempt = batch.column_by_name("attempt").expect("attempt").as_primitive::<Int32Type>().clone();
        let step = batch.column_by_name("step").expect("step").as_primitive::<Int64Type>().clone();
        let measure = batch.column_by_name("measure").expect("measure").as_dictionary::<Int32Type>().clone();
        let names = measure.values().as_string::<i32>().clone();
        let value = batch.column_by_name("value").expect("value").as_primitive::<Float64Type>().clone();
        for index in 0..batch.num_rows() {
            rows.push(Row {
                trial_id: trial.value(index).to_string(),
                attempt: attempt.value(index),
                step: step.value(index),
                measure: names.value(measure.keys().value(index) as usize).to_string(),
                value: value.value(index),
            });
        }
    }
    rows
}

/// Measures recorded at every eval step.
pub(crate) const EVAL_MEASURES: [&str; 24] = [
    "train_loss",
    "test_loss",
    "train_accuracy",
    "test_accuracy",
    "sum_squared_weights",
    "restricted_loss",
    "excluded_loss",
    "gini_w_e",
    "gini_w_l",
    "key_frequency_count",
    "key_neuron_fraction",
    "effective_rank_w_e",
    "effective_rank_w_l",
    "softmax_collapse",
    "zero_loss_fraction",
    "norm_w_e",
    "norm_w_pos",
    "norm_w_q",
    "norm_w_k",
    "norm_w_v",
    "norm_w_o",
    "norm_w_in",
    "norm_w_out",
    "norm_w_u",
];

/// The checks every results directory must pass.
pub(crate) fn check_progress(rows: &[Row]) {
    assert!(!rows.is_empty(), "no progress rows");
    let mut seen = HashSet::new();
    for row in rows {
        assert!(seen.insert((row.trial_id.clone(), row.step, row.measure.clone())), "duplicate row {row:?}");
        let finite_non_negative = row.value >= 0.0 && row.value.is_finite();
        match row.measure.as_str() {
            "train_accuracy" | "test_accuracy" | "key_neuron_fraction" | "softmax_collapse" | "zero_loss_fraction" => {
                assert!((0.0..=1.0).contains(&row.value), "{row:?}")
            }
            "gini_w_e" | "gini_w_l" => assert!((0.0..1.0).contains(&row.value), "{row:?}"),
            "train_loss"
            | "test_loss"
            | "sum_squared_weights"
            | "restricted_loss"
            | "excluded_loss"
            | "restricted_loss_final_k"
            | "excluded_loss_final_k" => assert!(finite_non_negative, "{row:?}"),
            "key_frequency_count" => assert!(finite_non_negative && row.value.fract() == 0.0, "{row:?}"),
            // p = 11 numbers: an effective rank is at least 1 and at most 11.
            "effective_rank_w_e" | "effective_rank_w_l" => assert!((1.0..=11.0).contains(&row.value), "{row:?}"),
            name if name.starts_with("norm_w_") => assert!(finite_non_negative && row.value > 0.0, "{row:?}"),
            other => panic!("unknown measure {other}"),
        }
    }
    let trials: HashSet<&str> = rows.iter().map(|row| row.trial_id.as_str()).collect();
    for trial in trials {
        let mut steps: Vec<i64> = rows.iter().filter(|r| r.trial_id == trial && r.measure == "train_loss").map(|r| r.step).collect();
        steps.sort();
        assert!(steps.windows(2).all(|w| w[0] < w[1]), "steps of {trial} not increasing: {steps:?}");
        assert_eq!(steps.first(), Some(&0), "trial {trial} has no step-0 row");
    }
}

/// One spectra row: (trial, attempt, step, matrix, frequency, norm).
pub(crate) type SpectrumRow = (String, i32, i64, String, i32, f64);

pub(crate) fn spectra_rows(sweep_dir: &Path) -> Vec<SpectrumRow> {
    let mut rows = Vec::new();
    for batch in read_batches(&sweep_dir.join("spectra")) {
        sweep_core::measures::validate_schema(&sweep_core::measures::spectra_schema(), &batch.schema()).expect("spectra schema");
        let trial = batch.column_by_name("trial_id").expect("trial_id").as_string::<i32>().clone();
        let attempt = batch.column_by_name("attempt").expect("attempt").as_primitive::<Int32Type>().clone();
        let step = batch.column_by_name("step").expect("step").as_primitive::<Int64Type>().clone();
        let matrix = batch.column_by_name("matrix").expect("matrix").as_dictionary::<Int32Type>().clone();
        let names = matrix.values().as_string::<i32>().clone();
        let frequency = batch.column_by_name("frequency").expect("frequency").as_primitive::<Int32Type>().clone();
        let norm = batch.column_by_name("norm").expect("norm").as_primitive::<Float64Type>().clone();
        for index in 0..batch.num_rows() {
            rows.push((
                trial.value(index).to_string(),
                attempt.value(index),
                step.value(index),
                names.value(matrix.keys().value(index) as usize).to_string(),
                frequency.value(index),
                norm.value(index),
            ));
        }
    }
    rows
}

/// Spectra of a run at modulus `p`: unique keys, every frequency at every
/// eval step, and key-neuron counts that agree with `key_frequency_count`.
pub(crate) fn check_spectra(spectra: &[SpectrumRow], progress: &[Row], modulus: i32) {
    assert!(!spectra.is_empty(), "no spectra rows");
    let mut seen = HashSet::new();
    for row in spectra {
        assert!(seen.insert((row.0.clone(), row.2, row.3.clone(), row.4)), "duplicate spectra row {row:?}");
        assert!(["W_E", "W_L", "key_neurons"].contains(&row.3.as_str()), "{row:?}");
        assert!((0..=(modulus - 1) / 2).contains(&row.4), "{row:?}");
        assert!(row.5 >= 0.0 && row.5.is_finite(), "{row:?}");
    }
    for count in progress.iter().filter(|row| row.measure == "key_frequency_count") {
        let owning = spectra.iter().filter(|s| s.0 == count.trial_id && s.2 == count.step && s.3 == "key_neurons" && s.5 > 0.0).count();
        assert_eq!(owning as f64, count.value, "key frequencies of {} at step {}", count.trial_id, count.step);
        let per_step = spectra.iter().filter(|s| s.0 == count.trial_id && s.2 == count.step).count();
        assert_eq!(per_step as i32, 3 * ((modulus - 1) / 2 + 1), "spectra of {} at step {}", count.trial_id, count.step);
    }
}

/// One curves row: (trial, step, curve, t, value).
pub(crate) type CurveRow = (String, i64, String, f64, f64);

pub(crate) fn curve_rows(sweep_dir: &Path) -> Vec<CurveRow> {
    let mut rows = Vec::new();
    for batch in read_batches(&sweep_dir.join("curves")) {
        sweep_core::measures::validate_schema(&sweep_core::measures::curves_schema(), &batch.schema()).expect("curves schema");
        let trial = batch.column_by_name("trial_id").expect("trial_id").as_string::<i32>().clone();
        let step = batch.column_by_name("step").expect("step").as_primitive::<Int64Type>().clone();
        let curve = batch.column_by_name("curve").expect("curve").as_dictionary::<Int32Type>().clone();
        let names = curve.values().as_string::<i32>().clone();
        let t = batch.column_by_name("t").expect("t").as_primitive::<Float64Type>().clone();
        let value = batch.column_by_name("value").expect("value").as_primitive::<Float64Type>().clone();
        for index in 0..batch.num_rows() {
            rows.push((
                trial.value(index).to_string(),
                step.value(index),
                names.value(curve.keys().value(index) as usize).to_string(),
                t.value(index),
                value.value(index),
            ));
        }
    }
    rows
}

/// One `trials` row, the columns the tests look at.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TrialRow {
    pub(crate) trial_id: String,
    pub(crate) final_test_accuracy: Option<f64>,
    pub(crate) final_test_loss: Option<f64>,
    pub(crate) key_frequencies: Option<String>,
    pub(crate) final_checkpoint: Option<String>,
    pub(crate) judge_accuracy: Option<f64>,
    pub(crate) image_diversity: Option<i32>,
}

pub(crate) fn trial_details(sweep_dir: &Path) -> Vec<TrialRow> {
    let mut rows = Vec::new();
    for batch in read_batches(&sweep_dir.join("trials")) {
        let trial = batch.column_by_name("trial_id").expect("trial_id").as_string::<i32>().clone();
        let accuracy = batch.column_by_name("final_test_accuracy").expect("accuracy").as_primitive::<Float64Type>().clone();
        let test_loss = batch.column_by_name("final_test_loss").expect("loss").as_primitive::<Float64Type>().clone();
        let keys = batch.column_by_name("key_frequencies").expect("key_frequencies").as_string::<i32>().clone();
        let checkpoint = batch.column_by_name("final_checkpoint").expect("final_checkpoint").as_string::<i32>().clone();
        let judge = batch.column_by_name("judge_accuracy").expect("judge_accuracy").as_primitive::<Float64Type>().clone();
        let diversity = batch.column_by_name("image_diversity").expect("image_diversity").as_primitive::<Int32Type>().clone();
        let text = |array: &arrow_array::StringArray, index: usize| (!array.is_null(index)).then(|| array.value(index).to_string());
        for index in 0..batch.num_rows() {
            rows.push(TrialRow {
                trial_id: trial.value(index).to_string(),
                final_test_accuracy: (!accuracy.is_null(index)).then(|| accuracy.value(index)),
                final_test_loss: (!test_loss.is_null(index)).then(|| test_loss.value(index)),
                key_frequencies: text(&keys, index),
                final_checkpoint: text(&checkpoint, index),
                judge_accuracy: (!judge.is_null(index)).then(|| judge.value(index)),
                image_diversity: (!diversity.is_null(index)).then(|| diversity.value(index)),
            });
        }
    }
    rows
}

/// Wait (bounded) until the `trials` table holds final metrics for `count`
/// trials: the coordinator rewrites it on its next roll after the last
/// completion, later than the gRPC status when the machine is busy.
pub(crate) fn wait_for_final_metrics(sweep_dir: &Path, count: usize, limit: std::time::Duration) {
    let deadline = std::time::Instant::now() + limit;
    loop {
        let trials = trial_details(sweep_dir);
        if trials.len() == count && trials.iter().all(|trial| trial.final_test_accuracy.is_some()) {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "the trials table lacks final metrics after {limit:?}: {trials:#?}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// Every finished trial's final checkpoint exists, loads, and reproduces the
/// stored final test accuracy on its own split.
pub(crate) fn check_final_checkpoints(sweep_dir: &Path) {
    let trials = trial_details(sweep_dir);
    assert!(!trials.is_empty());
    for trial in trials {
        let relative = trial.final_checkpoint.as_deref().unwrap_or_else(|| panic!("trial {} has no checkpoint", trial.trial_id));
        let bytes = std::fs::read(sweep_dir.join(relative)).expect("the final checkpoint is where the trials table says");
        let (_, evaluation) = sweep_worker::transformer::checkpoint::evaluate_checkpoint(&bytes).expect("checkpoint loads");
        assert_eq!(Some(evaluation.test.accuracy), trial.final_test_accuracy, "trial {}", trial.trial_id);
        // The loss to the last bits of f64 (a pack's slice and a reloaded model may sum in another order).
        let stored = trial.final_test_loss.expect("a finished trial has a final test loss");
        assert!(
            (evaluation.test.loss - stored).abs() <= 1e-12 * stored.abs().max(1.0),
            "trial {}: the checkpoint knows its loss: {} vs {stored}",
            trial.trial_id,
            evaluation.test.loss
        );
        let keys: Vec<String> = evaluation.key_frequencies.iter().map(usize::to_string).collect();
        assert_eq!(trial.key_frequencies.unwrap_or_default(), keys.join(","), "trial {}", trial.trial_id);
    }
}

/// (trial_id, status, attempt) of the trials table.
pub(crate) fn trials_rows(sweep_dir: &Path) -> Vec<(String, String, i32)> {
    let mut rows = Vec::new();
    for batch in read_batches(&sweep_dir.join("trials")) {
        sweep_core::measures::validate_schema(&sweep_core::measures::trials_schema(), &batch.schema()).expect("trials schema");
        let trial = batch.column_by_name("trial_id").expect("trial_id").as_string::<i32>().clone();
        let status = batch.column_by_name("status").expect("status").as_string::<i32>().clone();
        let attempt = batch.column_by_name("attempt").expect("attempt").as_primitive::<Int32Type>().clone();
        for index in 0..batch.num_rows() {
            assert!(!trial.is_null(index));
            rows.push((trial.value(index).to_string(), status.value(index).to_string(), attempt.value(index)));
        }
    }
    rows
}
