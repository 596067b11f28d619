//! Analysis of groksweep results with DataFusion.
//!
//! - [`open_results`]: a `SessionContext` with the `trials` and `progress`
//!   tables registered over `<data-dir>/results/*/` (one sweep or all).
//! - [`final_results`]: a named query, one row per trial with its outcome.
//!
//! An empty or missing results directory is normal (nothing has finished yet):
//! the tables are registered empty, with the documented schemas.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::datasource::MemTable;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl};
use datafusion::prelude::{DataFrame, SessionContext};
use sweep_core::measures::{progress_schema, trials_schema};

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

/// A session with `trials` and `progress` registered over the results of one
/// sweep (or every sweep) under `data_dir`.
pub async fn open_results(data_dir: &Path, sweep: Option<&str>) -> Result<SessionContext> {
    let results_root = data_dir.join("results");
    let context = SessionContext::new();
    register(&context, "trials", &table_dirs(&results_root, sweep, "trials")?, trials_schema()).await?;
    register(&context, "progress", &table_dirs(&results_root, sweep, "progress")?, progress_schema()).await?;
    Ok(context)
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
        assert!(matches!(open_results(directory.path(), Some("nope")).await, Err(AnalysisError::UnknownSweep { .. })));
    }
}
