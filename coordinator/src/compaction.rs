//! Compaction: once a trial is done, the row-range files its attempt left in
//! `progress/<trial>/`, `spectra/<trial>/` and `curves/<trial>/` (one per roll,
//! every few seconds) are replaced by one file per table, sorted by
//! (measure, step[, key]) in row groups of [`ROW_GROUP_ROWS`] with page
//! statistics, so readers open one file per trial and skip what a filter on
//! `measure` or `step` excludes.
//!
//! The file is named like a rolled one, `a<attempt>-r<first>-<last>.parquet`,
//! covering the rolled files' whole row range, so crash recovery and moving
//! superseded attempts read it as they read any rolled file.
//!
//! A reader sees the rolled files or the compacted one, never both and never
//! neither: the new directory is built under `<data-dir>/compacting/` (outside
//! `results/`) and swapped with the trial's directory in one
//! `renameat2(RENAME_EXCHANGE)`; the old directory, now under `compacting/`,
//! is moved to `compacting/retired/` and deleted by a flush at least
//! [`RETIRED_GRACE`] later ([`purge_retired`]): a reader that opened it just
//! before the swap still lists all of it (deleting it at once let such a
//! listing see 5 of 20 rolled files). Each step can be repeated after a crash: a leftover
//! `compacting/` directory is removed first, and a directory that already
//! holds one file of the attempt is left as it is. Other files in the
//! directory (the `llc` files of `groksweep analyze --llc`) are kept.

use std::fs;
use std::path::Path;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int32Type, Int64Type};
use arrow_array::{RecordBatch, UInt32Array};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::SortingColumn;
use parquet::file::properties::{EnabledStatistics, WriterProperties};

use crate::error::{CoordinatorError, Result};
use crate::results::{ProgressFileName, ResultsLayout, SeriesTable, write_file_atomically};
use crate::store::SweepAttempt;

/// Rows per row group of a compacted file: small enough that a filter on one
/// measure skips most groups by their statistics.
pub const ROW_GROUP_ROWS: usize = 8192;

/// How long a swapped-out directory is kept before it is deleted.
pub const RETIRED_GRACE: std::time::Duration = std::time::Duration::from_secs(60);

/// What compacting one attempt did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Compacted {
    /// Rolled files replaced.
    pub files_replaced: usize,
    /// Rows in the compacted files.
    pub rows: usize,
}

/// Compact the attempt's files in each of the three tables.
pub fn compact(layout: &ResultsLayout, attempt: &SweepAttempt) -> Result<Compacted> {
    let mut done = Compacted::default();
    for table in SeriesTable::ALL {
        let one = compact_table(layout, table, attempt)?;
        done.files_replaced += one.files_replaced;
        done.rows += one.rows;
    }
    Ok(done)
}

fn compact_table(layout: &ResultsLayout, table: SeriesTable, attempt: &SweepAttempt) -> Result<Compacted> {
    let live = layout.series_dir(table, &attempt.sweep, &attempt.trial_id);
    let staging = layout.compacting_dir(table, &attempt.sweep, &attempt.trial_id);
    remove_dir_if_present(&staging)?;
    let mut rolled: Vec<ProgressFileName> =
        layout.series_files(table, &attempt.sweep, &attempt.trial_id)?.into_iter().filter(|name| name.attempt == attempt.attempt).collect();
    if rolled.len() <= 1 {
        return Ok(Compacted::default());
    }
    rolled.sort_by_key(|name| name.first_row_id);
    let mut batches = Vec::with_capacity(rolled.len());
    for name in &rolled {
        let path = live.join(name.render());
        let file = fs::File::open(&path).map_err(|error| CoordinatorError::io(&path, error))?;
        for batch in ParquetRecordBatchReaderBuilder::try_new(file)?.build()? {
            batches.push(batch?);
        }
    }
    let schema = batches.first().map(RecordBatch::schema).ok_or_else(|| CoordinatorError::Internal("rolled files without rows".into()))?;
    let all = arrow_select::concat::concat_batches(&schema, &batches)?;
    let sorted = sort_rows(table, &all)?;
    let name = ProgressFileName {
        attempt: attempt.attempt,
        first_row_id: rolled.iter().map(|name| name.first_row_id).min().expect("two or more files"),
        last_row_id: rolled.iter().map(|name| name.last_row_id).max().expect("two or more files"),
    };
    let compacted = staging.join(name.render());
    write_file_atomically(&compacted, |file| {
        let mut writer = ArrowWriter::try_new(file, sorted.schema(), Some(compacted_properties(table)))?;
        writer.write(&sorted)?;
        Ok(writer.into_inner()?)
    })?;
    // Whatever else the directory holds (derived measures) goes along.
    let rolled_names: Vec<String> = rolled.iter().map(ProgressFileName::render).collect();
    let others = other_entries(&live, &rolled_names)?;
    for other in &others {
        let (from, to) = (live.join(other), staging.join(other));
        fs::hard_link(&from, &to).map_err(|error| CoordinatorError::io(&from, error))?;
    }
    sync_dir(&staging)?;
    exchange(&staging, &live)?;
    sync_dir(live.parent().expect("a trial directory has a table directory above it"))?;
    // A derived file written between the links and the swap is in the old
    // directory now: bring it back before the old one is deleted.
    for late in other_entries(&staging, &rolled_names)? {
        if !live.join(&late).exists() {
            fs::rename(staging.join(&late), live.join(&late)).map_err(|error| CoordinatorError::io(&live, error))?;
        }
    }
    retire(layout, &staging)?;
    Ok(Compacted { files_replaced: rolled.len(), rows: sorted.num_rows() })
}

/// Move the swapped-out `directory` to `compacting/retired/<unix ms>-<name>`.
fn retire(layout: &ResultsLayout, directory: &Path) -> Result<()> {
    let retired = layout.retired_dir();
    fs::create_dir_all(&retired).map_err(|error| CoordinatorError::io(&retired, error))?;
    let name = directory.file_name().ok_or_else(|| CoordinatorError::Internal(format!("{} has no name", directory.display())))?;
    let to = retired.join(format!("{}-{}", unix_ms(std::time::SystemTime::now()), name.to_string_lossy()));
    fs::rename(directory, &to).map_err(|error| CoordinatorError::io(directory, error))
}

fn unix_ms(time: std::time::SystemTime) -> u128 {
    time.duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_millis()
}

/// Delete the retired directories older than `grace` at `now` (any whose
/// name does not start with its time too); returns how many.
pub fn purge_retired(layout: &ResultsLayout, grace: std::time::Duration, now: std::time::SystemTime) -> Result<usize> {
    let retired = layout.retired_dir();
    let entries = match fs::read_dir(&retired) {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        entries => entries.map_err(|error| CoordinatorError::io(&retired, error))?,
    };
    let cutoff = unix_ms(now).saturating_sub(grace.as_millis());
    let mut purged = 0;
    for entry in entries {
        let entry = entry.map_err(|error| CoordinatorError::io(&retired, error))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let retired_at = name.split_once('-').and_then(|(ms, _)| ms.parse::<u128>().ok());
        if retired_at.is_none_or(|ms| ms <= cutoff) {
            remove_dir_if_present(&entry.path())?;
            purged += 1;
        }
    }
    Ok(purged)
}

/// Names in `directory` other than `rolled` and hidden temporary files.
fn other_entries(directory: &Path, rolled: &[String]) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in fs::read_dir(directory).map_err(|error| CoordinatorError::io(directory, error))? {
        let entry = entry.map_err(|error| CoordinatorError::io(directory, error))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with('.') && !rolled.contains(&name) {
            names.push(name);
        }
    }
    Ok(names)
}

/// Columns of the three tables' schemas (`sweep_core::measures`): the step,
/// the measure's name (`measure`, `matrix` or `curve`, a dictionary of
/// strings) and, for spectra and curves, its key (`frequency`, Int32; `t`, Float64).
const STEP_COLUMN: usize = 3;
const NAME_COLUMN: usize = 4;
const KEY_COLUMN: usize = 5;

/// Rows ordered by (name, step, key).
fn sort_rows(table: SeriesTable, batch: &RecordBatch) -> Result<RecordBatch> {
    if batch.num_columns() <= KEY_COLUMN {
        return Err(CoordinatorError::Internal(format!("a rolled file has {} columns", batch.num_columns())));
    }
    let measures = batch.column(NAME_COLUMN);
    let measures = measures
        .as_dictionary_opt::<Int32Type>()
        .ok_or_else(|| CoordinatorError::Internal("a rolled file's name column is not a dictionary".into()))?;
    let names = measures.values().as_string::<i32>();
    let measure_of = |row: usize| names.value(measures.keys().value(row) as usize);
    let steps = batch.column(STEP_COLUMN).as_primitive::<Int64Type>().clone();
    let keys: Option<Vec<f64>> = match table {
        SeriesTable::Progress => None,
        SeriesTable::Spectra => Some(batch.column(KEY_COLUMN).as_primitive::<Int32Type>().values().iter().map(|k| f64::from(*k)).collect()),
        SeriesTable::Curves => Some(batch.column(KEY_COLUMN).as_primitive::<Float64Type>().values().to_vec()),
    };
    let mut order: Vec<u32> = (0..batch.num_rows() as u32).collect();
    order.sort_by(|&a, &b| {
        let (a, b) = (a as usize, b as usize);
        measure_of(a)
            .cmp(measure_of(b))
            .then(steps.value(a).cmp(&steps.value(b)))
            .then_with(|| keys.as_ref().map_or(std::cmp::Ordering::Equal, |keys| keys[a].total_cmp(&keys[b])))
    });
    let indices = UInt32Array::from(order);
    Ok(arrow_select::take::take_record_batch(batch, &indices)?)
}

fn compacted_properties(table: SeriesTable) -> WriterProperties {
    let ascending = |column: usize| SortingColumn { column_idx: column as i32, descending: false, nulls_first: false };
    let mut sorting = vec![ascending(NAME_COLUMN), ascending(STEP_COLUMN)];
    if table != SeriesTable::Progress {
        sorting.push(ascending(KEY_COLUMN));
    }
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_sorting_columns(Some(sorting))
        .build()
}

fn remove_dir_if_present(directory: &Path) -> Result<()> {
    match fs::remove_dir_all(directory) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(CoordinatorError::io(directory, error)),
        _ => Ok(()),
    }
}

fn sync_dir(directory: &Path) -> Result<()> {
    fs::File::open(directory).and_then(|handle| handle.sync_all()).map_err(|error| CoordinatorError::io(directory, error))
}

/// Swap two directories atomically (Linux: `renameat2(RENAME_EXCHANGE)`).
#[cfg(target_os = "linux")]
fn exchange(a: &Path, b: &Path) -> Result<()> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let path = |p: &Path| {
        CString::new(p.as_os_str().as_bytes()).map_err(|_| CoordinatorError::Internal(format!("{} has a NUL byte", p.display())))
    };
    let (from, to) = (path(a)?, path(b)?);
    // SAFETY: both are valid NUL-terminated paths that outlive the call.
    let result = unsafe { libc::renameat2(libc::AT_FDCWD, from.as_ptr(), libc::AT_FDCWD, to.as_ptr(), libc::RENAME_EXCHANGE) };
    if result != 0 {
        return Err(CoordinatorError::io(b, std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Without an atomic exchange: move the old directory aside, then the new one
/// in (a reader listing in between sees no files for this trial).
#[cfg(not(target_os = "linux"))]
fn exchange(a: &Path, b: &Path) -> Result<()> {
    let aside = a.with_extension("old");
    fs::rename(b, &aside).map_err(|error| CoordinatorError::io(b, error))?;
    fs::rename(a, b).map_err(|error| CoordinatorError::io(a, error))?;
    fs::rename(&aside, a).map_err(|error| CoordinatorError::io(&aside, error))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::Array;

    use super::*;

    fn unsorted(table: SeriesTable) -> RecordBatch {
        // Three rows out of order: (b, 2), (a, 5), (a, 1).
        let mut names = arrow_array::builder::StringDictionaryBuilder::<Int32Type>::new();
        for name in ["b", "a", "a"] {
            names.append_value(name);
        }
        let strings = |value: &str| -> Arc<dyn Array> { Arc::new(arrow_array::StringArray::from(vec![value; 3])) };
        let mut columns: Vec<Arc<dyn Array>> = vec![
            strings("s"),
            strings("t"),
            Arc::new(arrow_array::Int32Array::from(vec![1, 1, 1])),
            Arc::new(arrow_array::Int64Array::from(vec![2, 5, 1])),
            Arc::new(names.finish()),
        ];
        let schema = match table {
            SeriesTable::Progress => sweep_core::measures::progress_schema(),
            SeriesTable::Spectra => {
                columns.push(Arc::new(arrow_array::Int32Array::from(vec![0, 3, 1])));
                sweep_core::measures::spectra_schema()
            }
            SeriesTable::Curves => {
                columns.push(Arc::new(arrow_array::Float64Array::from(vec![0.5, 0.25, 0.75])));
                sweep_core::measures::curves_schema()
            }
        };
        columns.push(Arc::new(arrow_array::Float64Array::from(vec![20.0, 50.0, 10.0])));
        columns.push(Arc::new(arrow_array::TimestampMillisecondArray::from(vec![0, 0, 0]).with_timezone("UTC")));
        RecordBatch::try_new(schema, columns).expect("batch")
    }

    #[test]
    fn rows_sort_by_measure_then_step() {
        for table in SeriesTable::ALL {
            let sorted = sort_rows(table, &unsorted(table)).expect("sorts");
            let values = sorted.column(sorted.num_columns() - 2).as_primitive::<Float64Type>().values().to_vec();
            assert_eq!(values, vec![10.0, 50.0, 20.0], "{table:?}");
        }
    }

    use crate::domain::BufferedRow;
    use crate::store::BufferedAttempt;
    use sweep_core::{MeasureKind, TrialId};

    fn attempt() -> SweepAttempt {
        SweepAttempt { sweep: "s".into(), trial_id: TrialId::from_raw("t0"), trial_key: 1, attempt: 1 }
    }

    /// A results directory under a new temporary root holding `files`
    /// rolls of 10 steps each of [`attempt`]; returns the next buffer row id.
    fn rolled(files: i64) -> (tempfile::TempDir, ResultsLayout, i64) {
        let root = tempfile::tempdir().expect("tempdir");
        let layout = ResultsLayout::new(root.path());
        let next = (0..files).fold(1, |next, file| roll(&layout, file * 10..file * 10 + 10, next));
        (root, layout, next)
    }

    /// Rolls of steps `steps` (train_loss = step, test_accuracy = step / 100,
    /// a two-frequency spectrum), with buffer rows numbered from `first_row_id`.
    fn roll(layout: &ResultsLayout, steps: std::ops::Range<i64>, first_row_id: i64) -> i64 {
        let mut rows = Vec::new();
        for step in steps {
            let row = |measure: &str, kind, key: f64, value: f64| BufferedRow {
                step,
                measure: measure.to_string(),
                kind,
                key,
                value,
                wall_time_ms: 1_780_000_000_000 + step,
            };
            rows.push(row("train_loss", MeasureKind::Scalar, 0.0, step as f64));
            rows.push(row("test_accuracy", MeasureKind::Scalar, 0.0, step as f64 / 100.0));
            rows.push(row("W_E", MeasureKind::Spectrum, 2.0, 0.5));
            rows.push(row("W_E", MeasureKind::Spectrum, 1.0, 0.25));
        }
        let last_row_id = first_row_id + rows.len() as i64 - 1;
        let buffered =
            BufferedAttempt { sweep: "s".into(), trial_id: TrialId::from_raw("t0"), attempt: 1, rows, first_row_id, last_row_id };
        layout.write_progress(&buffered).expect("roll");
        last_row_id + 1
    }

    fn listing(directory: &Path) -> Vec<String> {
        let mut names: Vec<String> =
            fs::read_dir(directory).expect("dir").map(|entry| entry.expect("entry").file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        names
    }

    fn read_all(path: &Path) -> RecordBatch {
        let file = fs::File::open(path).expect("open");
        let batches: Vec<RecordBatch> =
            ParquetRecordBatchReaderBuilder::try_new(file).expect("parquet").build().expect("reader").map(|b| b.expect("batch")).collect();
        arrow_select::concat::concat_batches(&batches[0].schema(), &batches).expect("concat")
    }

    #[test]
    fn a_done_trial_s_rolls_become_one_sorted_file_per_table_and_derived_files_stay() {
        let root = tempfile::tempdir().expect("tempdir");
        let layout = ResultsLayout::new(root.path());
        let mut next = 100;
        for start in [0, 10, 20] {
            next = roll(&layout, start..start + 10, next);
        }
        let progress = layout.series_dir(SeriesTable::Progress, "s", &attempt().trial_id);
        fs::write(progress.join("llc-a1.parquet"), "derived").expect("derived file");
        // A leftover of a compaction a crash interrupted.
        let stale = layout.compacting_dir(SeriesTable::Progress, "s", &attempt().trial_id);
        fs::create_dir_all(&stale).expect("stale");
        fs::write(stale.join("junk"), "x").expect("junk");

        let done = compact(&layout, &attempt()).expect("compacts");
        assert_eq!(done, Compacted { files_replaced: 6, rows: 30 * 4 });
        let name = ProgressFileName { attempt: 1, first_row_id: 100, last_row_id: next - 1 }.render();
        assert_eq!(listing(&progress), vec![name.clone(), "llc-a1.parquet".to_string()]);
        let batch = read_all(&progress.join(&name));
        assert_eq!(batch.num_rows(), 60);
        let measures = batch.column(NAME_COLUMN).as_dictionary::<Int32Type>();
        let names = measures.values().as_string::<i32>();
        let order: Vec<(String, i64)> = (0..batch.num_rows())
            .map(|row| {
                (
                    names.value(measures.keys().value(row) as usize).to_string(),
                    batch.column(STEP_COLUMN).as_primitive::<Int64Type>().value(row),
                )
            })
            .collect();
        let mut expected = order.clone();
        expected.sort();
        assert_eq!(order, expected, "sorted by (measure, step)");
        assert_eq!(order[0], ("test_accuracy".to_string(), 0));
        let spectra = read_all(&layout.series_dir(SeriesTable::Spectra, "s", &attempt().trial_id).join(&name));
        assert_eq!(spectra.column(KEY_COLUMN).as_primitive::<Int32Type>().values()[..2], [1, 2], "keys sorted within a step");
        assert!(!stale.exists(), "the staging directory is gone");
        // Again (a crash before the store forgot it): nothing to do, nothing changes.
        assert_eq!(compact(&layout, &attempt()).expect("again"), Compacted::default());
        assert_eq!(listing(&progress), vec![name, "llc-a1.parquet".to_string()]);
    }

    #[test]
    fn a_reader_listing_during_compaction_sees_the_rolls_or_the_compacted_file() {
        let (_root, layout, next) = rolled(20);
        let progress = layout.series_dir(SeriesTable::Progress, "s", &attempt().trial_id);
        let rolled = listing(&progress);
        assert_eq!(rolled.len(), 20);
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (listed, first_listing) = std::sync::mpsc::channel();
        let reader = {
            let (progress, stop) = (progress.clone(), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut seen = Vec::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    seen.push(listing(&progress));
                    let _ = listed.send(());
                }
                seen.push(listing(&progress));
                seen
            })
        };
        // The compaction starts once the reader has listed at least once (on
        // a loaded machine a fixed sleep did not always let it run first).
        first_listing.recv().expect("the reader listed");
        std::thread::sleep(std::time::Duration::from_millis(20));
        compact(&layout, &attempt()).expect("compacts");
        std::thread::sleep(std::time::Duration::from_millis(20));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let seen = reader.join().expect("reader");
        let compacted = vec![ProgressFileName { attempt: 1, first_row_id: 1, last_row_id: next - 1 }.render()];
        assert!(seen.iter().all(|names| *names == rolled || *names == compacted), "a listing saw a mixture or nothing");
        assert!(seen.first() == Some(&rolled) && seen.last() == Some(&compacted), "{} listings", seen.len());
    }

    #[test]
    fn swapped_out_directories_are_kept_for_their_grace_then_deleted() {
        let (_root, layout, _) = rolled(3);
        let rolled = listing(&layout.series_dir(SeriesTable::Progress, "s", &attempt().trial_id));
        compact(&layout, &attempt()).expect("compacts");
        // Progress and spectra had rolled files to replace; curves had none.
        let retired = listing(&layout.retired_dir());
        assert_eq!(retired.len(), 2, "{retired:?}");
        let old_progress = retired.iter().find(|name| name.contains("-progress-")).expect("the old progress directory");
        assert_eq!(listing(&layout.retired_dir().join(old_progress)), rolled, "kept whole");
        let now = std::time::SystemTime::now();
        assert_eq!(purge_retired(&layout, RETIRED_GRACE, now).expect("purges"), 0, "within the grace");
        assert_eq!(purge_retired(&layout, RETIRED_GRACE, now + RETIRED_GRACE).expect("purges"), 2, "after it");
        assert!(listing(&layout.retired_dir()).is_empty());
        assert_eq!(purge_retired(&layout, RETIRED_GRACE, now).expect("nothing left"), 0);
    }

    #[test]
    fn exchange_swaps_two_directories() {
        let root = tempfile::tempdir().expect("tempdir");
        let (a, b) = (root.path().join("a"), root.path().join("b"));
        fs::create_dir_all(&a).expect("a");
        fs::create_dir_all(&b).expect("b");
        fs::write(a.join("new"), "n").expect("write");
        fs::write(b.join("old1"), "o").expect("write");
        fs::write(b.join("old2"), "o").expect("write");
        exchange(&a, &b).expect("exchange");
        assert_eq!(fs::read_dir(&b).expect("b").count(), 1);
        assert!(b.join("new").exists() && a.join("old1").exists() && a.join("old2").exists());
    }
}
