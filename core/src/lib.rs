//! Sweep core: everything the other crates agree on, with no runtime attached.
//!
//! - [`spec`]: the YAML sweep spec, its validation and [`SweepSpec`].
//! - [`family`]: [`FamilySettings`], one variant per family, and the [`PackKey`] of trials that train together.
//! - [`optimizer`]: the optimiser and loss axes ([`OptimizerKind`], [`LossKind`]) and the Grokfast settings.
//! - [`diffusion`]: [`DiffusionSettings`], the diffusion family's section of a spec.
//! - `location`: field path → line/column index used in spec errors.
//! - [`error`]: [`SpecError`], every problem with file, line, column and path.
//! - [`trial`]: [`Family`], [`TrialParams`], the stable [`TrialId`].
//! - [`grid`]: [`expand`] a spec into its trials, or make them a range of grid positions at a time ([`Grid`]).
//! - [`split`]: the train/test split of the p² pairs.
//! - [`progress`]: typed measures ([`Measure`]: scalar, spectrum or curve) of one step.
//! - [`checks`]: every measure a family writes and the coordinator's checks of a worker's reports.
//! - [`lease`]: [`LeaseRef`], [`TrialLease`] and [`FinalMetrics`], what worker and coordinator say about a trial.
//! - [`measures`]: the Arrow schemas of the results tables and the measure names.

pub mod checks;
pub mod diffusion;
pub mod error;
pub mod family;
pub mod grid;
pub mod lease;
mod location;
pub mod measures;
mod one_or_many;
pub mod optimizer;
pub mod progress;
pub mod spec;
pub mod split;
pub mod trial;

pub use diffusion::{DiffusionSettings, OperandInput};
pub use error::{SpecError, SpecProblem};
pub use family::{FamilySettings, PackKey, TransformerSettings};
pub use grid::{Grid, count, expand};
pub use lease::{FinalMetrics, LeaseRef, Millis, Revocation, TrialLease};
pub use location::Location;
pub use optimizer::{GrokfastEmaSettings, GrokfastMaSettings, LossKind, OptimizerKind};
pub use progress::{CurvePoint, Measure, MeasureKind, MeasureValue, StepMeasures};
pub use spec::{Axes, RetryPolicy, StopRule, SweepSpec, TrainingSettings, load_spec, parse_spec};
pub use split::Split;
pub use trial::{Family, TrialId, TrialParams, TrialSpec};
