//! Analysis of groksweep results with DataFusion.
//!
//! - [`open_results`]: a `SessionContext` with the `trials`, `progress`,
//!   `spectra`, `curves` and `phases` tables registered over
//!   `<data-dir>/results/*/` (one sweep or all), and the `key_frequencies` view
//!   (the key frequencies of every eval step, one row each, from `spectra`).
//! - [`final_results`]: a named query, one row per trial with its outcome.
//! - [`series`]: one trial's series as read back; [`segmented`]: piecewise-linear
//!   regression; [`phases`]: the rules that find a trial's phases and class;
//!   [`phases_table`]: reading every trial's series and writing the `phases`
//!   table; [`summary`]: the phase diagram and grokking-step slopes of a sweep;
//!   [`derived`]: measures computed after training (the LLC), written as `progress` rows.
//!
//! An empty or missing results directory is normal (nothing has finished yet):
//! the tables are registered empty, with the documented schemas.

pub mod derived;
pub mod phases;
pub mod phases_table;
pub mod report;
pub mod segmented;
pub mod series;
pub mod summary;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::datasource::MemTable;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl};
use datafusion::prelude::{DataFrame, SessionConfig, SessionContext};
use sweep_core::measures::{curves_schema, phases_schema, progress_schema, spectra_schema, trials_schema};

/// Errors of the analysis crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AnalysisError {
    /// DataFusion failed (bad SQL, unreadable file, ...).
    #[error(transparent)]
    DataFusion(#[from] datafusion::error::DataFusionError),
    /// The results directory could not be listed.
    #[error("cannot read {path}: {source}")]
    Io {
        /// Directory.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// Results that do not have the shape groksweep writes.
    #[error("unexpected results: {0}")]
    Unexpected(String),
    /// An Arrow or Parquet operation failed.
    #[error(transparent)]
    Parquet(#[from] datafusion::parquet::errors::ParquetError),
    /// An Arrow operation failed.
    #[error(transparent)]
    Arrow(#[from] datafusion::arrow::error::ArrowError),
    /// The requested sweep has no results directory.
    #[error("no results for sweep `{sweep}` under {root}")]
    UnknownSweep {
        /// Sweep.
        sweep: String,
        /// Results root.
        root: PathBuf,
    },
}

/// Result alias.
pub type Result<T, E = AnalysisError> = std::result::Result<T, E>;

/// Sweep directories under `<data-dir>/results` that contain `table`.
fn table_dirs(results_root: &Path, sweep: Option<&str>, table: &str) -> Result<Vec<PathBuf>> {
    if let Some(sweep) = sweep {
        let directory = results_root.join(sweep);
        if !directory.is_dir() {
            return Err(AnalysisError::UnknownSweep { sweep: sweep.to_string(), root: results_root.to_path_buf() });
        }
        let table_dir = directory.join(table);
        return Ok(if table_dir.is_dir() { vec![table_dir] } else { Vec::new() });
    }
    let entries = match std::fs::read_dir(results_root) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(AnalysisError::Io { path: results_root.to_path_buf(), source }),
    };
    let mut directories = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| AnalysisError::Io { path: results_root.to_path_buf(), source })?;
        let table_dir = entry.path().join(table);
        if table_dir.is_dir() {
            directories.push(table_dir);
        }
    }
    directories.sort();
    Ok(directories)
}

async fn register(context: &SessionContext, name: &str, directories: &[PathBuf], schema: SchemaRef) -> Result<()> {
    if directories.is_empty() {
        let empty = MemTable::try_new(schema, vec![vec![]])?;
        context.register_table(name, Arc::new(empty))?;
        return Ok(());
    }
    let mut urls = Vec::with_capacity(directories.len());
    for directory in directories {
        let text = format!("{}/", directory.display());
        urls.push(ListingTableUrl::parse(&text)?);
    }
    let options = ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
    let config = ListingTableConfig::new_with_multi_paths(urls).with_listing_options(options).with_schema(schema);
    context.register_table(name, Arc::new(ListingTable::try_new(config)?))?;
    Ok(())
}

/// The `key_frequencies` view: per eval step, each key frequency and the
/// number of MLP neurons it owns with FVE above 0.85.
const KEY_FREQUENCIES_VIEW: &str = "CREATE VIEW key_frequencies AS
    SELECT sweep, trial_id, attempt, step, frequency, CAST(norm AS INT) AS neurons
    FROM spectra WHERE matrix = 'key_neurons' AND norm > 0";

/// A session with `trials`, `progress`, `spectra`, `curves` and the `key_frequencies`
/// view registered over the results of one sweep (or every sweep) under `data_dir`.
pub async fn open_results(data_dir: &Path, sweep: Option<&str>) -> Result<SessionContext> {
    let results_root = data_dir.join("results");
    // Progress and spectra files sit one directory down (`<table>/<trial>/`);
    // DataFusion skips subdirectories of a listing table unless told not to.
    let config = SessionConfig::new().set_bool("datafusion.execution.listing_table_ignore_subdirectory", false);
    let context = SessionContext::new_with_config(config);
    register(&context, "trials", &table_dirs(&results_root, sweep, "trials")?, trials_schema()).await?;
    register(&context, "progress", &table_dirs(&results_root, sweep, "progress")?, progress_schema()).await?;
    register(&context, "spectra", &table_dirs(&results_root, sweep, "spectra")?, spectra_schema()).await?;
    register(&context, "curves", &table_dirs(&results_root, sweep, "curves")?, curves_schema()).await?;
    register(&context, "phases", &table_dirs(&results_root, sweep, "phases")?, phases_schema()).await?;
    context.sql(KEY_FREQUENCIES_VIEW).await?.collect().await?;
    Ok(context)
}

pub use datafusion::arrow::record_batch::RecordBatch;

/// Batches as a text table (for messages and tests).
pub fn pretty(batches: &[RecordBatch]) -> String {
    datafusion::arrow::util::pretty::pretty_format_batches(batches)
        .map_or_else(|error| format!("<unprintable: {error}>"), |table| table.to_string())
}

/// One row per trial: its parameters and outcome, grid order.
pub async fn final_results(context: &SessionContext) -> Result<DataFrame> {
    Ok(context
        .sql(
            "SELECT sweep, trial_id, family, modulus, data_fraction, weight_decay, seed, status, attempt,
                    final_train_accuracy, final_test_accuracy, grokked_at, wall_seconds
             FROM trials ORDER BY sweep, modulus, data_fraction, weight_decay, seed",
        )
        .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn empty_results_are_empty_tables_not_errors() {
        let directory = tempfile::tempdir().expect("tempdir");
        let context = open_results(directory.path(), None).await.expect("opens");
        let batches = context.sql("SELECT COUNT(*) AS n FROM progress").await.expect("sql").collect().await.expect("runs");
        let count = batches[0].column(0).as_any().downcast_ref::<datafusion::arrow::array::Int64Array>().expect("count").value(0);
        assert_eq!(count, 0);
        let batches = context.sql("SELECT COUNT(*) AS n FROM curves").await.expect("sql").collect().await.expect("runs");
        assert_eq!(batches[0].num_rows(), 1);
        assert!(matches!(open_results(directory.path(), Some("nope")).await, Err(AnalysisError::UnknownSweep { .. })));
    }

    #[tokio::test]
    async fn the_key_frequencies_view_lists_owning_frequencies_per_step() {
        use datafusion::arrow::array::{
            ArrayRef, Float64Array, Int32Array, Int64Array, StringArray, StringDictionaryBuilder, TimestampMillisecondArray,
        };
        use datafusion::arrow::datatypes::Int32Type;
        use datafusion::arrow::record_batch::RecordBatch;
        let directory = tempfile::tempdir().expect("tempdir");
        let spectra_dir = directory.path().join("results/demo/spectra/t1");
        std::fs::create_dir_all(&spectra_dir).expect("mkdir");
        // Step 100: frequency 2 owns 5 neurons, 3 owns none; W_E rows are not key neurons.
        let rows = [("key_neurons", 2, 5.0), ("key_neurons", 3, 0.0), ("W_E", 2, 7.5)];
        let mut matrices = StringDictionaryBuilder::<Int32Type>::new();
        for row in &rows {
            matrices.append_value(row.0);
        }
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(vec!["demo"; 3])),
            Arc::new(StringArray::from(vec!["t1"; 3])),
            Arc::new(Int32Array::from(vec![1; 3])),
            Arc::new(Int64Array::from(vec![100; 3])),
            Arc::new(matrices.finish()),
            Arc::new(Int32Array::from_iter_values(rows.iter().map(|row| row.1))),
            Arc::new(Float64Array::from_iter_values(rows.iter().map(|row| row.2))),
            Arc::new(TimestampMillisecondArray::from(vec![0; 3]).with_timezone("UTC")),
        ];
        let batch = RecordBatch::try_new(spectra_schema(), columns).expect("batch");
        let file = std::fs::File::create(spectra_dir.join("a1-r1-3.parquet")).expect("create");
        let mut writer = datafusion::parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None).expect("writer");
        writer.write(&batch).expect("write");
        writer.close().expect("close");
        let context = open_results(directory.path(), Some("demo")).await.expect("opens");
        let batches =
            context.sql("SELECT step, frequency, neurons FROM key_frequencies").await.expect("sql").collect().await.expect("runs");
        let text = datafusion::arrow::util::pretty::pretty_format_batches(&batches).expect("formats").to_string();
        assert_eq!(text.lines().filter(|line| line.starts_with("| 100")).collect::<Vec<_>>(), vec!["| 100  | 2         | 5       |"]);
    }

    #[tokio::test]
    async fn a_trials_table_written_before_the_later_axes_reads_with_nulls_there() {
        use datafusion::arrow::datatypes::Schema;
        let directory = tempfile::tempdir().expect("tempdir");
        let trials_dir = directory.path().join("results/old/trials");
        std::fs::create_dir_all(&trials_dir).expect("mkdir");
        let later = ["lr", "init_scale", "optimizer", "loss"];
        let full = trials_schema();
        let old: Vec<_> = full.fields().iter().filter(|field| !later.contains(&field.name().as_str())).cloned().collect();
        let old = Arc::new(Schema::new(old));
        // One row, every column 0 (or "0") cast to its type.
        let zero = datafusion::arrow::array::Int64Array::from(vec![0]);
        let columns = old.fields().iter().map(|field| datafusion::arrow::compute::cast(&zero, field.data_type()).expect("casts")).collect();
        let batch = RecordBatch::try_new(old.clone(), columns).expect("a row of the old shape");
        let file = std::fs::File::create(trials_dir.join("trials.parquet")).expect("create");
        let mut writer = datafusion::parquet::arrow::ArrowWriter::try_new(file, old, None).expect("writer");
        writer.write(&batch).expect("write");
        writer.close().expect("close");
        let context = open_results(directory.path(), Some("old")).await.expect("opens");
        let batches = context
            .sql("SELECT COUNT(*) AS n, COUNT(lr) AS lr, COUNT(optimizer) AS optimizer FROM trials")
            .await
            .expect("the later columns are known")
            .collect()
            .await
            .expect("and read");
        assert_eq!(pretty(&batches).lines().nth(3), Some("| 1 | 0  | 0         |"), "{}", pretty(&batches));
    }
}
