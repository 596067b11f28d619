//! The results directory: Parquet files that pandas, Polars, DuckDB and
//! DataFusion read as they are.
//!
//! ```text
//! <data-dir>/results/<sweep>/trials/trials.parquet          one row per trial: the first 10,000 in grid order
//! <data-dir>/results/<sweep>/trials/trials-<part>.parquet   the next 10,000 each (only for larger sweeps)
//! <data-dir>/results/<sweep>/progress/<trial>/a<attempt>-r<first>-<last>.parquet
//! <data-dir>/results/<sweep>/spectra/<trial>/a<attempt>-r<first>-<last>.parquet
//! <data-dir>/results/<sweep>/curves/<trial>/a<attempt>-r<first>-<last>.parquet
//! <data-dir>/results/<sweep>/checkpoints/<trial>/a<attempt>/step-<step>.safetensors
//! <data-dir>/superseded/<sweep>/<trial>/...                  all of the above for failed/lapsed attempts
//! ```
//! Files are written under a hidden `.name.tmp` and renamed when closed, so
//! readers only ever see complete files; a flush's progress files are made
//! durable together (one filesystem sync, not one per file) before they are
//! renamed. `r<first>-<last>` is the range of
//! coordinator buffer rows a file holds; after a crash it tells which buffered
//! rows are already on disk. One flush of buffered rows writes each row to
//! the table of its measure's shape — scalars to `progress`, spectra to
//! `spectra`, curves to `curves` — under the same name. When a trial is done,
//! `compaction` replaces its rolled files by one per table. The `trials`
//! table is written in parts of [`TRIALS_PER_PART`] trials by grid position,
//! and a change to a trial rewrites only its part, so a million-trial sweep
//! is not rewritten whole every few seconds.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::builder::StringDictionaryBuilder;
use arrow_array::types::Int32Type;
use arrow_array::{ArrayRef, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use sweep_core::measures::{curves_schema, progress_schema, spectra_schema, trials_schema};
use sweep_core::{Family, MeasureKind, TrialId};

use crate::domain::{BufferedRow, TrialView};
use crate::error::{CoordinatorError, Result};
use crate::store::{BufferedAttempt, SweepAttempt, TrialsPart};

/// Paths of the results directory.
#[derive(Debug, Clone)]
pub struct ResultsLayout {
    data_dir: PathBuf,
}

/// The file name of a progress file, parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProgressFileName {
    pub(crate) attempt: u32,
    pub(crate) first_row_id: i64,
    pub(crate) last_row_id: i64,
}

impl ProgressFileName {
    pub(crate) fn render(&self) -> String {
        format!("a{}-r{:012}-{:012}.parquet", self.attempt, self.first_row_id, self.last_row_id)
    }

    pub(crate) fn parse(name: &str) -> Option<Self> {
        let stem = name.strip_suffix(".parquet")?.strip_prefix('a')?;
        let (attempt, range) = stem.split_once("-r")?;
        let (first, last) = range.split_once('-')?;
        Some(ProgressFileName { attempt: attempt.parse().ok()?, first_row_id: first.parse().ok()?, last_row_id: last.parse().ok()? })
    }
}

/// Files of fewer rows than this are written uncompressed.
const SMALL_FILE_ROWS: usize = 1024;

/// How a file of `rows` rows is written: zstd, or no compression for a small
/// file. parquet creates a zstd compressor and decompressor for each column
/// of each file, and a roll of short trials writes one small file per trial
/// (two rows each in the load benchmark): making those contexts took about
/// a fifth of the coordinator's CPU there (bench/RESULTS.md, "Coordinator
/// under load", session 20), and a few rows do not compress anyway.
/// Compacted files are zstd whatever their size (`crate::compaction`).
fn writer_properties(rows: usize) -> WriterProperties {
    let compression = if rows < SMALL_FILE_ROWS { Compression::UNCOMPRESSED } else { Compression::ZSTD(ZstdLevel::default()) };
    WriterProperties::builder().set_compression(compression).build()
}

/// The hidden name a file is written under before it is renamed to `path`,
/// in `path`'s directory, which is created if need be.
fn hidden_temporary(path: &Path) -> Result<PathBuf> {
    let directory = path.parent().expect("result files always live in a directory");
    fs::create_dir_all(directory).map_err(|error| CoordinatorError::io(directory, error))?;
    let file_name = path.file_name().expect("result paths end in a file name").to_string_lossy();
    Ok(directory.join(format!(".{file_name}.tmp")))
}

/// Write a file atomically: `fill` writes a hidden temp file, which is
/// fsynced, closed and renamed to `path`.
pub(crate) fn write_file_atomically(path: &Path, fill: impl FnOnce(fs::File) -> Result<fs::File>) -> Result<()> {
    let temporary = hidden_temporary(path)?;
    let file = fs::File::create(&temporary).map_err(|error| CoordinatorError::io(&temporary, error))?;
    let file = fill(file)?;
    file.sync_all().map_err(|error| CoordinatorError::io(&temporary, error))?;
    drop(file);
    fs::rename(&temporary, path).map_err(|error| CoordinatorError::io(path, error))?;
    Ok(())
}

/// Write `batch` to `path` as Parquet, atomically.
fn write_atomically(path: &Path, batch: &RecordBatch) -> Result<()> {
    write_file_atomically(path, |file| {
        let mut writer = ArrowWriter::try_new(file, batch.schema(), Some(writer_properties(batch.num_rows())))?;
        writer.write(batch)?;
        Ok(writer.into_inner()?)
    })
}

/// A Parquet file written under its hidden temporary name: neither durable
/// nor visible until [`publish`] renames it.
#[derive(Debug)]
pub(crate) struct StagedFile {
    temporary: PathBuf,
    path: PathBuf,
}

impl StagedFile {
    /// Write `batch` to the hidden temporary name beside `path`, without an fsync.
    fn write(path: PathBuf, batch: &RecordBatch) -> Result<Self> {
        let temporary = hidden_temporary(&path)?;
        let file = fs::File::create(&temporary).map_err(|error| CoordinatorError::io(&temporary, error))?;
        let mut writer = ArrowWriter::try_new(file, batch.schema(), Some(writer_properties(batch.num_rows())))?;
        writer.write(batch)?;
        writer.close()?;
        Ok(StagedFile { temporary, path })
    }

    /// Where the file appears once published.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

/// What [`publish`] did with each staged file.
#[derive(Debug)]
pub(crate) struct Published {
    /// Each file's rename, in order: an `Ok` file is visible under its name.
    pub(crate) renamed: Vec<Result<()>>,
    /// The sync after the renames failed: the renamed files are visible but
    /// perhaps not durable.
    pub(crate) names_not_synced: Option<CoordinatorError>,
}

/// Make staged files durable and visible, all at once: one filesystem sync
/// for their contents, the renames, and one more sync for the renames. One
/// fsync per file costs about a millisecond on a VM's disk, so seconds for
/// a roll of thousands of short trials' files (bench/RESULTS.md, session
/// 18). An error of the first sync publishes nothing.
pub(crate) fn publish(root: &Path, staged: &[StagedFile]) -> Result<Published> {
    if staged.is_empty() {
        return Ok(Published { renamed: Vec::new(), names_not_synced: None });
    }
    sync_contents(root, staged)?;
    let renamed = staged
        .iter()
        .map(|file| fs::rename(&file.temporary, &file.path).map_err(|error| CoordinatorError::io(&file.path, error)))
        .collect();
    Ok(Published { renamed, names_not_synced: sync_names(root, staged).err() })
}

/// Linux: one `syncfs` of the filesystem that holds `root`.
#[cfg(target_os = "linux")]
fn sync_filesystem(root: &Path) -> Result<()> {
    use std::os::fd::AsRawFd;
    let handle = fs::File::open(root).map_err(|error| CoordinatorError::io(root, error))?;
    // SAFETY: the descriptor is open for the duration of the call.
    if unsafe { libc::syncfs(handle.as_raw_fd()) } != 0 {
        return Err(CoordinatorError::io(root, std::io::Error::last_os_error()));
    }
    Ok(())
}

#[cfg(target_os = "linux")]
fn sync_contents(root: &Path, _staged: &[StagedFile]) -> Result<()> {
    sync_filesystem(root)
}

#[cfg(target_os = "linux")]
fn sync_names(root: &Path, _staged: &[StagedFile]) -> Result<()> {
    sync_filesystem(root)
}

/// Elsewhere: each file, then each directory, one fsync at a time.
#[cfg(not(target_os = "linux"))]
fn sync_contents(_root: &Path, staged: &[StagedFile]) -> Result<()> {
    for file in staged {
        fs::File::open(&file.temporary)
            .and_then(|handle| handle.sync_all())
            .map_err(|error| CoordinatorError::io(&file.temporary, error))?;
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn sync_names(_root: &Path, staged: &[StagedFile]) -> Result<()> {
    let directories: std::collections::BTreeSet<&Path> = staged.iter().filter_map(|file| file.path.parent()).collect();
    for directory in directories {
        fs::File::open(directory).and_then(|handle| handle.sync_all()).map_err(|error| CoordinatorError::io(directory, error))?;
    }
    Ok(())
}

/// Trials per file of a sweep's `trials` table, by grid position.
pub const TRIALS_PER_PART: i64 = 10_000;

/// Which long-format table a directory of row-range files holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SeriesTable {
    /// `progress`.
    Progress,
    /// `spectra`.
    Spectra,
    /// `curves`.
    Curves,
}

impl SeriesTable {
    pub(crate) const ALL: [SeriesTable; 3] = [SeriesTable::Progress, SeriesTable::Spectra, SeriesTable::Curves];

    pub(crate) fn directory_name(self) -> &'static str {
        match self {
            SeriesTable::Progress => "progress",
            SeriesTable::Spectra => "spectra",
            SeriesTable::Curves => "curves",
        }
    }

    /// The table a measure of this shape is written to.
    fn of(kind: MeasureKind) -> Self {
        match kind {
            MeasureKind::Scalar => SeriesTable::Progress,
            MeasureKind::Spectrum => SeriesTable::Spectra,
            MeasureKind::Curve => SeriesTable::Curves,
        }
    }

    /// The shape of the measures this table holds.
    pub(crate) fn kind(self) -> MeasureKind {
        match self {
            SeriesTable::Progress => MeasureKind::Scalar,
            SeriesTable::Spectra => MeasureKind::Spectrum,
            SeriesTable::Curves => MeasureKind::Curve,
        }
    }
}

impl ResultsLayout {
    /// Layout rooted at the coordinator's data directory.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        ResultsLayout { data_dir: data_dir.into() }
    }

    /// `<data-dir>/results`.
    pub fn results_root(&self) -> PathBuf {
        self.data_dir.join("results")
    }

    /// `<data-dir>/results/<sweep>`.
    pub fn sweep_dir(&self, sweep: &str) -> PathBuf {
        self.results_root().join(sweep)
    }

    pub(crate) fn series_dir(&self, table: SeriesTable, sweep: &str, trial_id: &TrialId) -> PathBuf {
        self.sweep_dir(sweep).join(table.directory_name()).join(trial_id.as_str())
    }

    /// Checkpoints of one attempt, relative to the sweep's directory.
    fn checkpoint_dir_relative(trial_id: &TrialId, attempt: u32) -> PathBuf {
        Path::new("checkpoints").join(trial_id.as_str()).join(format!("a{attempt}"))
    }

    /// Where a trial's table directory is rebuilt before it is swapped in:
    /// outside `results/`, so no reader's glob or listing ever sees it.
    pub(crate) fn compacting_dir(&self, table: SeriesTable, sweep: &str, trial_id: &TrialId) -> PathBuf {
        self.data_dir.join("compacting").join(format!("{sweep}-{}-{}", table.directory_name(), trial_id.as_str()))
    }

    /// Where compaction leaves the directories it swapped out until they are
    /// deleted (`compaction::purge_retired`). Its name cannot be a staging
    /// directory's, which always holds `-<table>-`.
    pub(crate) fn retired_dir(&self) -> PathBuf {
        self.data_dir.join("compacting").join("retired")
    }

    fn superseded_dir(&self, sweep: &str, trial_id: &TrialId) -> PathBuf {
        self.data_dir.join("superseded").join(sweep).join(trial_id.as_str())
    }

    /// Parsed names of one trial's row-range files in one table.
    pub(crate) fn series_files(&self, table: SeriesTable, sweep: &str, trial_id: &TrialId) -> Result<Vec<ProgressFileName>> {
        let directory = self.series_dir(table, sweep, trial_id);
        let entries = match fs::read_dir(&directory) {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(error) => return Err(CoordinatorError::io(&directory, error)),
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|error| CoordinatorError::io(&directory, error))?;
            if let Some(name) = ProgressFileName::parse(&entry.file_name().to_string_lossy()) {
                names.push(name);
            }
        }
        Ok(names)
    }

    /// Write an attempt's buffered rows: one file in each table that gets rows.
    pub fn write_progress(&self, buffered: &BufferedAttempt) -> Result<Vec<PathBuf>> {
        let mut written = Vec::new();
        for table in SeriesTable::ALL {
            written.extend(self.write_series(buffered, table)?);
        }
        Ok(written)
    }

    /// Write an attempt's buffered rows of one table (`None` if it has none).
    /// The tables are written one by one, so a crash or an error can leave
    /// one written and the next not: their rows are forgotten per table.
    pub(crate) fn write_series(&self, buffered: &BufferedAttempt, table: SeriesTable) -> Result<Option<PathBuf>> {
        let Some(staged) = self.stage_series(buffered, table)? else {
            return Ok(None);
        };
        let path = staged.path().to_path_buf();
        let mut published = publish(&self.results_root(), &[staged])?;
        published.renamed.pop().expect("one outcome per staged file")?;
        published.names_not_synced.map_or(Ok(Some(path)), Err)
    }

    /// Write an attempt's buffered rows of one table under a hidden name, to
    /// be published with the rest of a flush's files (`None` if it has none).
    pub(crate) fn stage_series(&self, buffered: &BufferedAttempt, table: SeriesTable) -> Result<Option<StagedFile>> {
        let rows: Vec<&BufferedRow> = buffered.rows.iter().filter(|row| SeriesTable::of(row.kind) == table).collect();
        if rows.is_empty() {
            return Ok(None);
        }
        let name = ProgressFileName { attempt: buffered.attempt, first_row_id: buffered.first_row_id, last_row_id: buffered.last_row_id };
        let batch = series_batch(table, buffered, &rows)?;
        let path = self.series_dir(table, &buffered.sweep, &buffered.trial_id).join(name.render());
        StagedFile::write(path, &batch).map(Some)
    }

    /// Store a checkpoint; returns its path relative to the sweep's directory.
    pub fn write_checkpoint(&self, sweep: &str, trial_id: &TrialId, attempt: u32, step: i64, safetensors: &[u8]) -> Result<String> {
        let relative = Self::checkpoint_dir_relative(trial_id, attempt).join(format!("step-{step:08}.safetensors"));
        let path = self.sweep_dir(sweep).join(&relative);
        write_file_atomically(&path, |mut file| {
            std::io::Write::write_all(&mut file, safetensors).map_err(|error| CoordinatorError::io(&path, error))?;
            Ok(file)
        })?;
        Ok(relative.to_string_lossy().into_owned())
    }

    /// Move a superseded attempt's progress, spectra and checkpoint files out of the results.
    pub fn move_superseded(&self, attempt: &SweepAttempt) -> Result<usize> {
        let target = self.superseded_dir(&attempt.sweep, &attempt.trial_id);
        let mut moved = 0;
        for table in SeriesTable::ALL {
            let source = self.series_dir(table, &attempt.sweep, &attempt.trial_id);
            let target = target.join(table.directory_name());
            for name in self.series_files(table, &attempt.sweep, &attempt.trial_id)? {
                if name.attempt != attempt.attempt {
                    continue;
                }
                fs::create_dir_all(&target).map_err(|error| CoordinatorError::io(&target, error))?;
                let from = source.join(name.render());
                fs::rename(&from, target.join(name.render())).map_err(|error| CoordinatorError::io(&from, error))?;
                moved += 1;
            }
        }
        let checkpoints = self.sweep_dir(&attempt.sweep).join(Self::checkpoint_dir_relative(&attempt.trial_id, attempt.attempt));
        if checkpoints.is_dir() {
            let to = target.join(format!("checkpoints-a{}", attempt.attempt));
            fs::create_dir_all(&target).map_err(|error| CoordinatorError::io(&target, error))?;
            if to.exists() {
                fs::remove_dir_all(&to).map_err(|error| CoordinatorError::io(&to, error))?;
            }
            fs::rename(&checkpoints, &to).map_err(|error| CoordinatorError::io(&checkpoints, error))?;
            moved += 1;
        }
        Ok(moved)
    }

    /// Rewrite one part of a sweep's `trials` table.
    pub fn write_trials(&self, part: &TrialsPart, trials: &[TrialView]) -> Result<PathBuf> {
        let batch = trials_batch(trials)?;
        let path = self.trials_part_path(part);
        write_atomically(&path, &batch)?;
        Ok(path)
    }

    /// `trials/trials.parquet` for the first part, `trials/trials-<part>.parquet` after it.
    pub fn trials_part_path(&self, part: &TrialsPart) -> PathBuf {
        let name = match part.part {
            0 => "trials.parquet".to_string(),
            n => format!("trials-{n:06}.parquet"),
        };
        self.sweep_dir(&part.sweep).join("trials").join(name)
    }
}

/// The rows of one table: (sweep, trial_id, attempt, step, name, \[key,\] value, wall_time).
fn series_batch(table: SeriesTable, buffered: &BufferedAttempt, rows: &[&BufferedRow]) -> Result<RecordBatch> {
    let count = rows.len();
    let mut names = StringDictionaryBuilder::<Int32Type>::new();
    for row in rows {
        names.append_value(&row.measure);
    }
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(vec![buffered.sweep.as_str(); count])),
        Arc::new(StringArray::from(vec![buffered.trial_id.as_str(); count])),
        Arc::new(Int32Array::from(vec![buffered.attempt as i32; count])),
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|row| row.step))),
        Arc::new(names.finish()),
    ];
    let schema = match table {
        SeriesTable::Progress => progress_schema(),
        SeriesTable::Spectra => {
            columns.push(Arc::new(Int32Array::from_iter_values(rows.iter().map(|row| row.key as i32))));
            spectra_schema()
        }
        SeriesTable::Curves => {
            columns.push(Arc::new(Float64Array::from_iter_values(rows.iter().map(|row| row.key))));
            curves_schema()
        }
    };
    columns.push(Arc::new(Float64Array::from_iter_values(rows.iter().map(|row| row.value))));
    columns.push(Arc::new(TimestampMillisecondArray::from_iter_values(rows.iter().map(|row| row.wall_time_ms)).with_timezone("UTC")));
    Ok(RecordBatch::try_new(schema, columns)?)
}

fn trials_batch(trials: &[TrialView]) -> Result<RecordBatch> {
    let strings = |f: &dyn Fn(&TrialView) -> Option<String>| -> ArrayRef { Arc::new(StringArray::from_iter(trials.iter().map(f))) };
    let floats = |f: &dyn Fn(&TrialView) -> Option<f64>| -> ArrayRef { Arc::new(Float64Array::from_iter(trials.iter().map(f))) };
    let times = |f: &dyn Fn(&TrialView) -> Option<i64>| -> ArrayRef {
        Arc::new(TimestampMillisecondArray::from_iter(trials.iter().map(f)).with_timezone("UTC"))
    };
    let metric = |f: fn(&crate::domain::FinalMetrics) -> f64| move |trial: &TrialView| trial.metrics.as_ref().map(f);
    let columns: Vec<ArrayRef> = vec![
        strings(&|t| Some(t.sweep.clone())),
        strings(&|t| Some(t.trial_id.to_string())),
        strings(&|t| Some(t.params.family.to_string())),
        Arc::new(Int32Array::from_iter_values(trials.iter().map(|t| t.params.modulus as i32))),
        Arc::new(Float64Array::from_iter_values(trials.iter().map(|t| t.params.data_fraction))),
        Arc::new(Float64Array::from_iter_values(trials.iter().map(|t| t.params.weight_decay))),
        Arc::new(Int32Array::from_iter(trials.iter().map(|t| t.params.image_diversity.map(|n| n as i32)))),
        Arc::new(Int64Array::from_iter_values(trials.iter().map(|t| t.params.seed as i64))),
        Arc::new(Int64Array::from_iter_values(trials.iter().map(|t| t.params.data_seed as i64))),
        Arc::new(Float64Array::from_iter_values(trials.iter().map(|t| t.learning_rate))),
        Arc::new(Float64Array::from_iter_values(trials.iter().map(|t| t.params.init_scale))),
        strings(&|t| Some(t.params.optimizer.as_str().to_string())),
        strings(&|t| (t.params.family == Family::Transformer).then(|| t.params.loss_kind().as_str().to_string())),
        strings(&|t| Some(t.status.as_str().to_string())),
        Arc::new(Int32Array::from_iter_values(trials.iter().map(|t| t.attempt as i32))),
        Arc::new(Int32Array::from_iter_values(trials.iter().map(|t| t.failures as i32))),
        strings(&|t| t.worker.clone()),
        times(&|t| t.started_at_ms),
        times(&|t| t.finished_at_ms),
        floats(&metric(|m| m.wall_seconds)),
        Arc::new(Int64Array::from_iter(trials.iter().map(|t| t.metrics.as_ref().map(|m| m.epochs)))),
        floats(&metric(|m| m.train_loss)),
        floats(&metric(|m| m.test_loss)),
        floats(&metric(|m| m.train_accuracy)),
        floats(&metric(|m| m.test_accuracy)),
        Arc::new(Int64Array::from_iter(trials.iter().map(|t| t.metrics.as_ref().and_then(|m| m.grokked_at)))),
        strings(&|t| {
            t.metrics
                .as_ref()
                .filter(|m| !m.key_frequencies.is_empty())
                .map(|m| m.key_frequencies.iter().map(u32::to_string).collect::<Vec<_>>().join(","))
        }),
        floats(&|t| t.metrics.as_ref().and_then(|m| m.judge_accuracy)),
        strings(&|t| t.final_checkpoint.clone()),
        strings(&|t| t.error.clone()),
    ];
    Ok(RecordBatch::try_new(trials_schema(), columns)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_file_names_round_trip() {
        let name = ProgressFileName { attempt: 2, first_row_id: 17, last_row_id: 912 };
        assert_eq!(name.render(), "a2-r000000000017-000000000912.parquet");
        assert_eq!(ProgressFileName::parse(&name.render()), Some(name));
        assert_eq!(ProgressFileName::parse(".a2-r1-2.parquet.tmp"), None);
        assert_eq!(ProgressFileName::parse("trials.parquet"), None);
    }

    fn listing(directory: &Path) -> Vec<String> {
        let mut names: Vec<String> =
            fs::read_dir(directory).expect("dir").map(|entry| entry.expect("entry").file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        names
    }

    #[test]
    fn staged_files_are_hidden_until_published_together_and_then_hold_their_rows() {
        let data = tempfile::tempdir().expect("tempdir");
        let layout = ResultsLayout::new(data.path());
        let attempt = |trial: &str, steps: i64| {
            let rows = (0..steps)
                .map(|step| BufferedRow {
                    step,
                    measure: "train_loss".into(),
                    kind: MeasureKind::Scalar,
                    key: 0.0,
                    value: step as f64,
                    wall_time_ms: 1_780_000_000_000,
                })
                .collect();
            BufferedAttempt { sweep: "s".into(), trial_id: TrialId::from_raw(trial), attempt: 1, rows, first_row_id: 1, last_row_id: steps }
        };
        let staged: Vec<StagedFile> = [("t0", 3), ("t1", 5)]
            .into_iter()
            .map(|(trial, steps)| layout.stage_series(&attempt(trial, steps), SeriesTable::Progress).expect("staged").expect("rows"))
            .collect();
        assert!(layout.stage_series(&attempt("t2", 2), SeriesTable::Spectra).expect("nothing to stage").is_none());
        let directory = |trial: &str| layout.series_dir(SeriesTable::Progress, "s", &TrialId::from_raw(trial));
        assert_eq!(listing(&directory("t0")), vec![".a1-r000000000001-000000000003.parquet.tmp"]);
        assert!(layout.series_files(SeriesTable::Progress, "s", &TrialId::from_raw("t1")).expect("listed").is_empty());

        let published = publish(&layout.results_root(), &staged).expect("published");
        assert!(published.renamed.iter().all(Result::is_ok) && published.names_not_synced.is_none());
        for (trial, steps) in [("t0", 3), ("t1", 5)] {
            let name = format!("a1-r000000000001-{steps:012}.parquet");
            assert_eq!(listing(&directory(trial)), vec![name.clone()]);
            let file = fs::File::open(directory(trial).join(name)).expect("open");
            let reader =
                parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file).expect("parquet").build().expect("reader");
            let rows: usize = reader.map(|batch| batch.expect("batch").num_rows()).sum();
            assert_eq!(rows, steps as usize, "{trial}");
        }
        assert!(publish(&layout.results_root(), &[]).expect("nothing to publish").renamed.is_empty());
    }

    #[test]
    fn a_small_rolled_file_is_uncompressed_and_a_large_one_zstd_both_readable() {
        let data = tempfile::tempdir().expect("tempdir");
        let layout = ResultsLayout::new(data.path());
        for (steps, expected) in [(2usize, Compression::UNCOMPRESSED), (SMALL_FILE_ROWS, Compression::ZSTD(ZstdLevel::default()))] {
            let rows = (0..steps)
                .map(|step| BufferedRow {
                    step: step as i64,
                    measure: "train_loss".into(),
                    kind: MeasureKind::Scalar,
                    key: 0.0,
                    value: 1.0 / (1.0 + step as f64),
                    wall_time_ms: 1_780_000_000_000,
                })
                .collect();
            let trial = TrialId::from_raw(format!("t{steps}"));
            let buffered = BufferedAttempt {
                sweep: "s".into(),
                trial_id: trial.clone(),
                attempt: 1,
                rows,
                first_row_id: 1,
                last_row_id: steps as i64,
            };
            let staged = layout.stage_series(&buffered, SeriesTable::Progress).expect("staged").expect("rows");
            publish(&layout.results_root(), std::slice::from_ref(&staged)).expect("published");
            let builder =
                parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(fs::File::open(staged.path()).expect("open"))
                    .expect("parquet");
            let codecs: Vec<Compression> = builder
                .metadata()
                .row_groups()
                .iter()
                .flat_map(|group| group.columns().iter().map(|column| column.compression()))
                .collect();
            assert!(!codecs.is_empty() && codecs.iter().all(|codec| *codec == expected), "{steps} rows: {codecs:?}");
            let values: Vec<f64> = builder
                .build()
                .expect("reader")
                .flat_map(|batch| {
                    let batch = batch.expect("batch");
                    let column = arrow_array::cast::AsArray::as_primitive::<arrow_array::types::Float64Type>(
                        batch.column_by_name("value").expect("value column"),
                    )
                    .clone();
                    column.values().to_vec()
                })
                .collect();
            assert_eq!(values, (0..steps).map(|step| 1.0 / (1.0 + step as f64)).collect::<Vec<_>>());
        }
    }

    #[test]
    fn the_first_part_of_the_trials_table_keeps_its_old_name() {
        let layout = ResultsLayout::new("/data");
        let part = |part| TrialsPart { sweep: "s".into(), part };
        assert_eq!(layout.trials_part_path(&part(0)), PathBuf::from("/data/results/s/trials/trials.parquet"));
        assert_eq!(layout.trials_part_path(&part(7)), PathBuf::from("/data/results/s/trials/trials-000007.parquet"));
    }
}
