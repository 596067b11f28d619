//! Measures computed after training (the local learning coefficient): rows
//! of the `progress` table in a file of their own per trial and attempt,
//! `results/<sweep>/progress/<trial>/<measure>-a<attempt>.parquet`, which
//! the coordinator's own files never collide with and every reader of
//! `progress` sees. Writing again replaces the file.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, Float64Array, Int32Array, Int64Array, StringArray, StringDictionaryBuilder, TimestampMillisecondArray,
};
use datafusion::arrow::datatypes::Int32Type;
use datafusion::arrow::record_batch::RecordBatch;
use sweep_core::measures::progress_schema;

use crate::Result;

/// One derived value: the step it is of, the value, when it was computed (ms since the epoch).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DerivedRow {
    /// Training step (the checkpoint's).
    pub step: i64,
    /// The value.
    pub value: f64,
    /// When it was computed.
    pub wall_time_ms: i64,
}

/// (trial id, current attempt) of every trial of `family` that has been leased, by id.
pub async fn leased_trials(context: &datafusion::prelude::SessionContext, family: &str) -> Result<Vec<(String, i32)>> {
    use datafusion::arrow::array::AsArray;
    let sql = format!(
        "SELECT trial_id, attempt FROM trials WHERE family = {} AND attempt > 0 ORDER BY trial_id",
        crate::phases_table::quoted(&[family])
    );
    let mut trials = Vec::new();
    for batch in crate::phases_table::collect(context, &sql).await? {
        let ids = crate::phases_table::strings(&batch, 0)?;
        let attempts = batch.column(1).as_primitive::<Int32Type>();
        for row in 0..batch.num_rows() {
            trials.push((ids.value(row).to_string(), attempts.value(row)));
        }
    }
    Ok(trials)
}

/// Where a trial's rows of `measure` go.
pub fn derived_path(data_dir: &Path, sweep: &str, trial_id: &str, attempt: i32, measure: &str) -> PathBuf {
    data_dir.join("results").join(sweep).join("progress").join(trial_id).join(format!("{measure}-a{attempt}.parquet"))
}

/// Write a trial's rows of `measure`, replacing any written before.
pub fn write_derived(data_dir: &Path, sweep: &str, trial_id: &str, attempt: i32, measure: &str, rows: &[DerivedRow]) -> Result<PathBuf> {
    let count = rows.len();
    let mut names = StringDictionaryBuilder::<Int32Type>::new();
    for _ in 0..count {
        names.append_value(measure);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(vec![sweep; count])),
        Arc::new(StringArray::from(vec![trial_id; count])),
        Arc::new(Int32Array::from(vec![attempt; count])),
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|row| row.step))),
        Arc::new(names.finish()),
        Arc::new(Float64Array::from_iter_values(rows.iter().map(|row| row.value))),
        Arc::new(TimestampMillisecondArray::from_iter_values(rows.iter().map(|row| row.wall_time_ms)).with_timezone("UTC")),
    ];
    let batch = RecordBatch::try_new(progress_schema(), columns)?;
    let path = derived_path(data_dir, sweep, trial_id, attempt, measure);
    crate::phases_table::write_parquet(&path, progress_schema(), &[batch])?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn derived_rows_are_progress_rows_and_a_second_write_replaces_the_first() {
        let directory = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(directory.path().join("results/demo/trials")).expect("mkdir");
        let row = |step, value| DerivedRow { step, value, wall_time_ms: 1_780_000_000_000 };
        write_derived(directory.path(), "demo", "t1", 1, "llc", &[row(0, 5.0), row(100, 9.0)]).expect("writes");
        write_derived(directory.path(), "demo", "t1", 1, "llc", &[row(0, 4.0), row(100, 8.0), row(200, 6.0)]).expect("replaces");
        let context = crate::open_results(directory.path(), Some("demo")).await.expect("opens");
        let batches = context
            .sql("SELECT step, value FROM progress WHERE measure = 'llc' AND trial_id = 't1' ORDER BY step")
            .await
            .expect("sql")
            .collect()
            .await
            .expect("runs");
        let text = crate::pretty(&batches);
        assert!(text.contains("| 200  | 6.0   |") && !text.contains("9.0"), "{text}");
    }
}
