//! Writes the `phases` table as trials finish: the coordinator's
//! [`TrialsWritten`] observer, installed by `run` and `coordinator`.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Mutex;

use futures::future::BoxFuture;
use sweep_analysis::phases::PhaseSettings;
use sweep_coordinator::TrialsWritten;
use sweep_coordinator::domain::{TrialStatus, TrialView};
use tracing::{debug, warn};

/// Analyses each trial once it is done (per attempt) and merges its row into
/// its sweep's `phases` file.
#[derive(Debug)]
pub struct PhasesWriter {
    data_dir: PathBuf,
    settings: PhaseSettings,
    /// (sweep, trial, attempt) already analysed by this process.
    analysed: Mutex<HashSet<(String, String, u32)>>,
}

impl PhasesWriter {
    /// A writer for the results under `data_dir`, with the default rules.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        PhasesWriter { data_dir: data_dir.into(), settings: PhaseSettings::default(), analysed: Mutex::new(HashSet::new()) }
    }

    fn newly_done(&self, sweep: &str, trials: &[&TrialView]) -> Vec<(String, u32)> {
        let analysed = self.analysed.lock().expect("the set is never left half-updated");
        trials
            .iter()
            .filter(|trial| trial.status == TrialStatus::Done)
            .map(|trial| (trial.trial_id.to_string(), trial.attempt))
            .filter(|(trial, attempt)| !analysed.contains(&(sweep.to_string(), trial.clone(), *attempt)))
            .collect()
    }
}

impl TrialsWritten for PhasesWriter {
    fn trials_written<'a>(&'a self, sweep: &'a str, trials: &'a [&'a TrialView]) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let fresh = self.newly_done(sweep, trials);
            if fresh.is_empty() {
                return;
            }
            let ids: Vec<String> = fresh.iter().map(|(trial, _)| trial.clone()).collect();
            match sweep_analysis::phases_table::update_phases(&self.data_dir, sweep, &ids, &self.settings).await {
                Ok(analysed) => {
                    debug!(sweep, trials = analysed, "phases written");
                    let mut done = self.analysed.lock().expect("the set is never left half-updated");
                    done.extend(fresh.into_iter().map(|(trial, attempt)| (sweep.to_string(), trial, attempt)));
                }
                // Not marked analysed: tried again the next time this sweep's
                // trials table is written; `groksweep analyze` rewrites it whenever asked.
                Err(error) => warn!(sweep, %error, "writing the phases table failed"),
            }
        })
    }
}
