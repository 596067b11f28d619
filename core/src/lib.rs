//! Sweep core: everything the other crates agree on, with no runtime attached.
//!
//! - [`spec`]: the YAML sweep spec, its validation and [`SweepSpec`].
//! - [`diffusion`]: [`DiffusionSettings`], the diffusion family's section of a spec.
//! - `location`: field path → line/column index used in spec errors.
//! - [`error`]: [`SpecError`], every problem with file, line, column and path.
//! - [`trial`]: [`Family`], [`TrialParams`], the stable [`TrialId`].
//! - [`grid`]: [`expand`] a spec into its trials.
//! - [`split`]: the train/test split of the p² pairs.
//! - [`measures`]: the Arrow schemas of the results tables and the measure names.

pub mod diffusion;
pub mod error;
pub mod grid;
mod location;
pub mod measures;
mod one_or_many;
pub mod spec;
pub mod split;
pub mod trial;

pub use diffusion::{DiffusionSettings, OperandInput};
pub use error::{SpecError, SpecProblem};
pub use grid::expand;
pub use location::Location;
pub use spec::{Axes, RetryPolicy, StopRule, SweepSpec, TrainingSettings, load_spec, parse_spec};
pub use split::Split;
pub use trial::{Family, TrialId, TrialParams, TrialSpec};
