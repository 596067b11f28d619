//! The seam between the generic runner and a model family. A family trains a
//! pack of trials as one program; the runner ([`crate::runner`]) owns, per
//! trial, everything else: eval and checkpoint cadence, the stop rules and
//! grokked-at, cancellation, the sink and the final metrics.
//!
//! A family implements [`PackFamily`]: prepare one trial (its data, judge and
//! evaluator; may fail for that trial alone), stack the prepared trials,
//! take one training step for the whole pack with a learning rate per trial,
//! evaluate one member into typed measures, write one member's checkpoint,
//! record measures that need the finished run, and let a member leave.

use std::path::{Path, PathBuf};

use burn::tensor::backend::AutodiffBackend;
use sweep_core::{Measure, TrialLease};

use crate::sink::{MeasureSink, SinkError};

/// What the worker gives every family besides the leases.
#[derive(Debug, Clone)]
pub struct FamilyContext {
    /// Where expensive per-setting artefacts (the diffusion family's judge) are cached.
    pub cache_dir: PathBuf,
    /// CPU threads one pack's training step may use: each family cuts its
    /// batch into up to this many parts, run on a rayon pool of the pack's
    /// own (`parts`). At least 1; a step on burn's cubecl backends (CUDA,
    /// wgpu) stays on the pack's thread whatever this says.
    pub step_threads: usize,
}

impl FamilyContext {
    /// A context caching under `cache_dir`, each step on one thread.
    pub fn new(cache_dir: PathBuf) -> Self {
        FamilyContext { cache_dir, step_threads: 1 }
    }

    /// The same, each step on up to `threads` threads (at least 1).
    pub fn with_step_threads(self, threads: usize) -> Self {
        FamilyContext { step_threads: threads.max(1), ..self }
    }
}

/// Threads per pack step when `packs_at_once` packs train side by side on
/// this machine: its cores shared between them, at least 1 each.
pub fn default_step_threads(packs_at_once: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    (cores / packs_at_once.max(1)).max(1)
}

/// Why one trial cannot go on. The other members of its pack are not affected.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FamilyError {
    /// The lease carries the settings of another family.
    #[error("the lease is for the {found} family, not the {expected} family")]
    WrongFamily {
        /// The family of this trainer.
        expected: &'static str,
        /// The family of the lease.
        found: String,
    },
    /// The sink refused the rows or asked to stop.
    #[error(transparent)]
    Sink(#[from] SinkError),
    /// A checkpoint could not be written or read back.
    #[error(transparent)]
    Checkpoint(#[from] crate::transformer::checkpoint::CheckpointError),
    /// The worker's local checkpoint copy could not be written or read.
    #[error("local checkpoint {path}: {source}")]
    Scratch {
        /// The file.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// A problem particular to one family (glyphs, judge, ...).
    #[error(transparent)]
    Diffusion(#[from] crate::diffusion::DiffusionError),
}

/// Every measure of one member at one step, and what the runner needs of them.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// Loss on the training pairs (the family's definition).
    pub train_loss: f64,
    /// Loss on the test pairs.
    pub test_loss: f64,
    /// Accuracy on the training pairs (the stop rule and grokked-at read the test one).
    pub train_accuracy: f64,
    /// Accuracy on the test pairs.
    pub test_accuracy: f64,
    /// Key frequencies found at this step, ascending (empty when the family has none).
    pub key_frequencies: Vec<u32>,
    /// Held-out accuracy of the judge of generated images, where the family has one.
    pub judge_accuracy: Option<f64>,
    /// The measures to record, typed.
    pub measures: Vec<Measure>,
}

/// A trial's checkpoints kept on the worker's disk while it trains (not in
/// memory): (step, file) in step order.
#[derive(Debug)]
pub struct LocalCheckpoints {
    directory: tempfile::TempDir,
    files: Vec<(i64, PathBuf)>,
}

impl LocalCheckpoints {
    /// A fresh directory under `root` for one attempt, removed when dropped.
    pub fn create(root: &Path, label: &str) -> Result<Self, FamilyError> {
        std::fs::create_dir_all(root).map_err(|source| FamilyError::Scratch { path: root.to_path_buf(), source })?;
        let directory = tempfile::Builder::new()
            .prefix(&format!("groksweep-{label}-"))
            .tempdir_in(root)
            .map_err(|source| FamilyError::Scratch { path: root.to_path_buf(), source })?;
        Ok(LocalCheckpoints { directory, files: Vec::new() })
    }

    /// Keep the checkpoint of `step`.
    pub fn add(&mut self, step: i64, bytes: &[u8]) -> Result<(), FamilyError> {
        let path = self.directory.path().join(format!("step-{step:08}.safetensors"));
        std::fs::write(&path, bytes).map_err(|source| FamilyError::Scratch { path: path.clone(), source })?;
        self.files.push((step, path));
        Ok(())
    }

    /// Steps kept, in order.
    pub fn steps(&self) -> impl Iterator<Item = i64> + '_ {
        self.files.iter().map(|(step, _)| *step)
    }

    /// Read back the checkpoint of each kept step, in order.
    pub fn read(&self) -> impl Iterator<Item = Result<(i64, Vec<u8>), FamilyError>> + '_ {
        self.files.iter().map(|(step, path)| {
            std::fs::read(path).map(|bytes| (*step, bytes)).map_err(|source| FamilyError::Scratch { path: path.clone(), source })
        })
    }
}

/// A model family, trained a pack at a time. Members are addressed by their
/// index in the pack, which shifts down when an earlier member leaves.
pub trait PackFamily<B: AutodiffBackend>: Sized {
    /// One trial, ready to be stacked.
    type Member;

    /// The family's name, as in `sweep_core::Family`.
    const NAME: &'static str;

    /// Prepare one trial; an error fails that trial only.
    fn prepare(lease: &TrialLease, context: &FamilyContext, device: &B::Device) -> Result<Self::Member, FamilyError>;

    /// The pack of the prepared trials, in order, each initialised from its
    /// own seed; its steps may use `context.step_threads` threads.
    fn stack(members: Vec<Self::Member>, context: &FamilyContext, device: &B::Device) -> Self;

    /// One training step of every member, member k at `learning_rates[k]`.
    fn step(&mut self, learning_rates: &[f64]);

    /// Every measure of member `index` now.
    fn evaluate(&self, index: usize) -> Evaluation;

    /// Member `index`'s checkpoint at `step` (a complete safetensors file), or
    /// `None` when the family writes none.
    fn checkpoint(&self, index: usize, step: i64) -> Result<Option<Vec<u8>>, FamilyError>;

    /// Measures that need the finished run (the transformer's final-K losses
    /// over the kept checkpoints), recorded to `sink` at their steps.
    fn record_final(
        &self,
        index: usize,
        last: &Evaluation,
        checkpoints: &LocalCheckpoints,
        sink: &mut dyn MeasureSink,
    ) -> Result<(), FamilyError>;

    /// Members leave; `keep` lists the members that stay, ascending.
    fn keep(&mut self, keep: &[usize]);
}
