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
    let Ok(entries) = std::fs::read_dir(directory) else { return files };
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
        let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&file).expect("open")).expect("parquet").build().expect("reader");
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

/// The checks every results directory must pass.
pub(crate) fn check_progress(rows: &[Row]) {
    assert!(!rows.is_empty(), "no progress rows");
    let mut seen = HashSet::new();
    for row in rows {
        assert!(seen.insert((row.trial_id.clone(), row.step, row.measure.clone())), "duplicate row {row:?}");
        match row.measure.as_str() {
            "train_accuracy" | "test_accuracy" => assert!((0.0..=1.0).contains(&row.value), "{row:?}"),
            "train_loss" | "test_loss" | "sum_squared_weights" => assert!(row.value >= 0.0 && row.value.is_finite(), "{row:?}"),
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
