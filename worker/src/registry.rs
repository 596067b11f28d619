//! Which trainer a lease goes to: one entry per family. A new family is a
//! module implementing [`crate::PackFamily`] and one arm here.

use std::path::Path;

use sweep_core::{Family, TrialLease};

use crate::backend::TrainingBackend;
use crate::diffusion::DiffusionPack;
use crate::family::FamilyContext;
use crate::runner::run_pack;
use crate::sink::MeasureSink;
use crate::transformer::TransformerPack;

/// Train one pack (trials of one pack key, so of one family) on the worker's
/// backend, each trial reporting to its own sink.
pub fn train_pack(leases: Vec<TrialLease>, sinks: Vec<&mut dyn MeasureSink>, context: &FamilyContext, scratch: &Path) {
    let Some(first) = leases.first() else { return };
    let device = Default::default();
    match first.params.family {
        Family::Transformer => run_pack::<TrainingBackend, TransformerPack<TrainingBackend>>(leases, sinks, context, scratch, &device),
        Family::Diffusion => run_pack::<TrainingBackend, DiffusionPack<TrainingBackend>>(leases, sinks, context, scratch, &device),
    }
}
