//! The `phases` table: read every trial's series through DataFusion (the
//! tables as users see them, so results copied from a cluster work too), find
//! its phases and write one Parquet file per sweep,
//! `<data-dir>/results/<sweep>/phases/phases.parquet`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, AsArray, BooleanArray, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Float64Type, Int32Type, Int64Type};
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::prelude::SessionContext;
use sweep_core::measures::{self as names, phases_schema};

use crate::phases::{FamilyKind, PhaseSettings, TrialPhases, find_phases};
use crate::series::TrialSeries;
use crate::{AnalysisError, Result, open_results};

/// One row of `phases`.
#[derive(Debug, Clone, PartialEq)]
pub struct PhasesRow {
    /// Sweep.
    pub sweep: String,
    /// Trial id.
    pub trial_id: String,
    /// Attempt analysed.
    pub attempt: i32,
    /// Family name.
    pub family: String,
    /// Trial status when analysed.
    pub status: String,
    /// What was found.
    pub phases: TrialPhases,
}

/// Which trials of a sweep to analyse.
#[derive(Debug, Clone, Copy)]
pub enum Selection<'a> {
    /// Every trial with recorded progress.
    All,
    /// These trials only.
    Only(&'a [String]),
}

/// The measures the rules read.
const SCALARS: [&str; 5] =
    [names::TRAIN_ACCURACY, names::TEST_ACCURACY, names::TRAIN_LOSS, names::TEST_LOSS, names::CRITICAL_TIMESTEP_TEST];

pub(crate) fn quoted(values: &[&str]) -> String {
    values.iter().map(|value| format!("'{}'", value.replace('\'', "''"))).collect::<Vec<_>>().join(", ")
}

/// Find the phases of the selected trials of `sweep` from the results under `data_dir`.
pub async fn analyze_sweep(data_dir: &Path, sweep: &str, selection: Selection<'_>, settings: &PhaseSettings) -> Result<Vec<PhasesRow>> {
    analyze_in(&open_results(data_dir, Some(sweep)).await?, sweep, selection, settings).await
}

/// [`analyze_sweep`] on a session that already has the sweep's tables.
pub(crate) async fn analyze_in(
    context: &SessionContext,
    sweep: &str,
    selection: Selection<'_>,
    settings: &PhaseSettings,
) -> Result<Vec<PhasesRow>> {
    let only = match selection {
        Selection::All => String::new(),
        Selection::Only(ids) => {
            let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
            format!("AND t.trial_id IN ({})", if ids.is_empty() { "NULL".to_string() } else { quoted(&ids) })
        }
    };
    let trials = collect(
        context,
        &format!(
            "SELECT t.trial_id, t.attempt, t.family, t.status FROM trials t WHERE t.sweep = '{}' {only} ORDER BY t.trial_id",
            sweep.replace('\'', "''")
        ),
    )
    .await?;
    let switch_curves = [names::SWITCH_FOLLOWS_NEW, names::SWITCH_FOLLOWS_OLD];
    let series = load_series(context, &only, Some(&SCALARS), Some(&switch_curves)).await?;
    let mut rows = Vec::new();
    for batch in &trials {
        let (ids, attempts, families, statuses) =
            (strings(batch, 0)?, batch.column(1).as_primitive::<Int32Type>(), strings(batch, 2)?, strings(batch, 3)?);
        for row in 0..batch.num_rows() {
            let key = (ids.value(row).to_string(), attempts.value(row));
            let Some(trial_series) = series.get(&key) else { continue };
            let family = match families.value(row) {
                "transformer" => FamilyKind::Transformer,
                "diffusion" => FamilyKind::Diffusion,
                _ => FamilyKind::Other,
            };
            rows.push(PhasesRow {
                sweep: sweep.to_string(),
                trial_id: key.0,
                attempt: key.1,
                family: families.value(row).to_string(),
                status: statuses.value(row).to_string(),
                phases: find_phases(trial_series, family, settings),
            });
        }
    }
    Ok(rows)
}

/// The series of the trials that `only` (an `AND …` clause over `trials t`,
/// or empty) selects, current attempts only, keyed by (trial, attempt): the
/// named scalars and curves, or all of them where `None`.
pub(crate) async fn load_series(
    context: &SessionContext,
    only: &str,
    scalars: Option<&[&str]>,
    curves: Option<&[&str]>,
) -> Result<BTreeMap<(String, i32), TrialSeries>> {
    let mut series: BTreeMap<(String, i32), TrialSeries> = BTreeMap::new();
    let scalar_filter = scalars.map_or_else(String::new, |names| format!("AND p.measure IN ({})", quoted(names)));
    let scalars = collect(
        context,
        &format!(
            "SELECT p.trial_id, p.attempt, p.step, CAST(p.measure AS VARCHAR) AS measure, p.value
             FROM progress p JOIN trials t ON p.trial_id = t.trial_id AND p.attempt = t.attempt
             WHERE TRUE {scalar_filter} {only} ORDER BY p.trial_id, p.step"
        ),
    )
    .await?;
    for batch in &scalars {
        let (ids, attempts, steps, measures, values) = (
            strings(batch, 0)?,
            batch.column(1).as_primitive::<Int32Type>(),
            batch.column(2).as_primitive::<Int64Type>(),
            strings(batch, 3)?,
            batch.column(4).as_primitive::<Float64Type>(),
        );
        for row in 0..batch.num_rows() {
            let entry = series.entry((ids.value(row).to_string(), attempts.value(row))).or_default();
            entry.push_scalar(measures.value(row), steps.value(row), values.value(row));
        }
    }
    let curve_filter = curves.map_or_else(String::new, |names| format!("AND c.curve IN ({})", quoted(names)));
    let curves = collect(
        context,
        &format!(
            "SELECT c.trial_id, c.attempt, c.step, CAST(c.curve AS VARCHAR) AS curve, c.t, c.value
             FROM curves c JOIN trials t ON c.trial_id = t.trial_id AND c.attempt = t.attempt
             WHERE TRUE {curve_filter} {only} ORDER BY c.trial_id, c.step, c.t DESC"
        ),
    )
    .await?;
    for batch in &curves {
        let (ids, attempts, steps, curve, ts, values) = (
            strings(batch, 0)?,
            batch.column(1).as_primitive::<Int32Type>(),
            batch.column(2).as_primitive::<Int64Type>(),
            strings(batch, 3)?,
            batch.column(4).as_primitive::<Float64Type>(),
            batch.column(5).as_primitive::<Float64Type>(),
        );
        for row in 0..batch.num_rows() {
            let entry = series.entry((ids.value(row).to_string(), attempts.value(row))).or_default();
            entry.push_curve_point(curve.value(row), steps.value(row), ts.value(row), values.value(row));
        }
    }
    Ok(series)
}

pub(crate) async fn collect(context: &SessionContext, sql: &str) -> Result<Vec<RecordBatch>> {
    Ok(context.sql(sql).await?.collect().await?)
}

/// A text column as `Utf8`, whichever string layout DataFusion chose (`CAST … AS VARCHAR` gives `Utf8View`).
pub(crate) fn strings(batch: &RecordBatch, column: usize) -> Result<StringArray> {
    let array = datafusion::arrow::compute::cast(batch.column(column), &DataType::Utf8)?;
    array.as_any().downcast_ref::<StringArray>().cloned().ok_or_else(|| {
        AnalysisError::Unexpected(format!(
            "column {} is {}, not text",
            batch.schema().field(column).name(),
            batch.column(column).data_type()
        ))
    })
}

/// The path of a sweep's `phases` file.
pub fn phases_path(data_dir: &Path, sweep: &str) -> PathBuf {
    data_dir.join("results").join(sweep).join("phases").join("phases.parquet")
}

/// The rows as an Arrow batch of [`phases_schema`].
pub fn phases_batch(rows: &[PhasesRow], settings: &PhaseSettings) -> Result<RecordBatch> {
    let settings = serde_json::to_string(settings).expect("settings are plain numbers");
    let text = |get: &dyn Fn(&PhasesRow) -> String| -> ArrayRef { Arc::new(StringArray::from_iter_values(rows.iter().map(get))) };
    let step = |get: &dyn Fn(&TrialPhases) -> Option<i64>| -> ArrayRef {
        Arc::new(Int64Array::from_iter(rows.iter().map(|row| get(&row.phases))))
    };
    let columns: Vec<ArrayRef> = vec![
        text(&|row| row.sweep.clone()),
        text(&|row| row.trial_id.clone()),
        Arc::new(Int32Array::from_iter_values(rows.iter().map(|row| row.attempt))),
        text(&|row| row.family.clone()),
        text(&|row| row.status.clone()),
        step(&|p| p.last_step),
        step(&|p| p.train_accuracy_99_at),
        step(&|p| p.train_loss_below_0_01_at),
        step(&|p| p.test_accuracy_95_at),
        step(&|p| p.test_accuracy_99_at),
        step(&|p| p.test_loss_below_1_at),
        step(&|p| p.test_loss_below_0_01_at),
        step(&|p| p.memorisation_end),
        step(&|p| p.circuit_formation_end),
        step(&|p| p.cleanup_end),
        text(&|row| row.phases.phase_at_end.as_str().to_string()),
        step(&|p| p.class_train_at),
        step(&|p| p.class_test_at),
        text(&|row| row.phases.class.as_str().to_string()),
        step(&|p| p.critical_timestep_first_at),
        Arc::new(Float64Array::from_iter(rows.iter().map(|row| row.phases.critical_timestep))),
        Arc::new(BooleanArray::from_iter(rows.iter().map(|row| row.phases.switch_flips))),
        text(&|row| row.phases.not_reached()),
        text(&|row| row.phases.notes_text()),
        text(&|_| settings.clone()),
    ];
    Ok(RecordBatch::try_new(phases_schema(), columns)?)
}

/// Write a sweep's `phases` file from batches of [`phases_schema`] (temp file, fsync, rename), replacing it.
fn write_batches(data_dir: &Path, sweep: &str, batches: &[RecordBatch]) -> Result<PathBuf> {
    let path = phases_path(data_dir, sweep);
    write_parquet(&path, phases_schema(), batches)?;
    Ok(path)
}

/// Write `batches` to `path` atomically (a hidden temporary file, synced, then renamed).
pub(crate) fn write_parquet(path: &Path, schema: datafusion::arrow::datatypes::SchemaRef, batches: &[RecordBatch]) -> Result<()> {
    let directory = path.parent().expect("a results file has a directory");
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| AnalysisError::Io { path, source }
    };
    std::fs::create_dir_all(directory).map_err(io(directory))?;
    let name = path.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
    let temporary = directory.join(format!(".{name}.tmp"));
    let file = std::fs::File::create(&temporary).map_err(io(&temporary))?;
    let mut writer = ArrowWriter::try_new(file.try_clone().map_err(io(&temporary))?, schema, None)?;
    for batch in batches {
        writer.write(batch)?;
    }
    writer.close()?;
    file.sync_all().map_err(io(&temporary))?;
    std::fs::rename(&temporary, path).map_err(io(path))?;
    Ok(())
}

/// Write a sweep's `phases` file with these rows, replacing it.
pub fn write_phases(data_dir: &Path, sweep: &str, rows: &[PhasesRow], settings: &PhaseSettings) -> Result<PathBuf> {
    write_batches(data_dir, sweep, &[phases_batch(rows, settings)?])
}

/// Analyse `trial_ids` of `sweep` and merge them into its `phases` file,
/// keeping the rows of every other trial already there. Returns how many
/// trials were analysed (those without recorded progress are skipped).
pub async fn update_phases(data_dir: &Path, sweep: &str, trial_ids: &[String], settings: &PhaseSettings) -> Result<usize> {
    let context = open_results(data_dir, Some(sweep)).await?;
    let fresh = analyze_in(&context, sweep, Selection::Only(trial_ids), settings).await?;
    let mut batches = Vec::new();
    if phases_path(data_dir, sweep).is_file() {
        let ids: Vec<&str> = trial_ids.iter().map(String::as_str).collect();
        let keep = if ids.is_empty() { String::new() } else { format!("WHERE trial_id NOT IN ({})", quoted(&ids)) };
        batches = collect(&context, &format!("SELECT * FROM phases {keep}")).await?;
    }
    batches.push(phases_batch(&fresh, settings)?);
    write_batches(data_dir, sweep, &batches)?;
    Ok(fresh.len())
}
