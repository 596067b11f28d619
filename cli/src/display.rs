//! What people see: aligned tables, progress bars, the end-of-run summary.

use std::collections::HashMap;
use std::io::IsTerminal;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use sweep_proto::pb;

/// Left-aligned columns separated by two spaces.
pub(crate) fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|header| header.chars().count()).collect();
    for row in rows {
        for (column, cell) in row.iter().enumerate() {
            widths[column] = widths[column].max(cell.chars().count());
        }
    }
    let render = |cells: Vec<&str>| {
        let padded: Vec<String> = cells.iter().zip(&widths).map(|(cell, width)| format!("{cell:<width$}")).collect();
        format!("{}\n", padded.join("  ").trim_end())
    };
    let mut out = render(headers.to_vec());
    out.push_str(&render(widths.iter().map(|width| "-".repeat(*width)).collect::<Vec<_>>().iter().map(String::as_str).collect()));
    for row in rows {
        out.push_str(&render(row.iter().map(String::as_str).collect()));
    }
    out
}

fn accuracy(value: Option<f64>) -> String {
    value.map_or_else(|| "—".to_string(), |v| format!("{v:.3}"))
}

fn params_label(params: Option<&pb::TrialParams>) -> String {
    match params {
        Some(p) => {
            let diversity = p.image_diversity.map_or_else(String::new, |n| format!(" N={n}"));
            let recipe = recipe(p);
            let recipe = if recipe.is_empty() { recipe } else { format!(" {recipe}") };
            format!("{} p={} frac={} wd={} seed={}{diversity}{recipe}", p.family, p.modulus, p.data_fraction, p.weight_decay, p.seed)
        }
        None => String::new(),
    }
}

/// The later axes of a trial where they are not at their defaults
/// (`lr=…`, `init×…`, the optimiser, the loss); empty for a plain trial.
pub(crate) fn recipe(p: &pb::TrialParams) -> String {
    let mut parts = Vec::new();
    if let Some(lr) = p.lr {
        parts.push(format!("lr={lr}"));
    }
    if p.init_scale != 1.0 {
        parts.push(format!("init×{}", p.init_scale));
    }
    if !p.optimizer.is_empty() && p.optimizer != "adamw" {
        parts.push(p.optimizer.clone());
    }
    if let Some(loss) = p.loss.as_deref().filter(|loss| *loss != "softmax") {
        parts.push(loss.to_string());
    }
    parts.join(" ")
}

/// `rows` with a "recipe" column after column `after` when some trial has one.
pub(crate) fn with_recipes(
    headers: &[&'static str],
    mut rows: Vec<Vec<String>>,
    recipes: Vec<String>,
    after: usize,
) -> (Vec<&'static str>, Vec<Vec<String>>) {
    let mut headers = headers.to_vec();
    if recipes.iter().any(|recipe| !recipe.is_empty()) {
        headers.insert(after + 1, "recipe");
        for (row, recipe) in rows.iter_mut().zip(recipes) {
            row.insert(after + 1, if recipe.is_empty() { "—".to_string() } else { recipe });
        }
    }
    (headers, rows)
}

/// One row per trial: parameters, status, accuracies, grokked-at epoch, wall time.
pub(crate) fn trials_table(status: &pb::SweepStatus) -> String {
    let rows: Vec<Vec<String>> = status
        .trials
        .iter()
        .map(|trial| {
            let p = trial.params.clone().unwrap_or_default();
            vec![
                trial.trial_id.clone(),
                p.family.clone(),
                p.modulus.to_string(),
                p.data_fraction.to_string(),
                p.weight_decay.to_string(),
                p.seed.to_string(),
                p.image_diversity.map_or_else(|| "—".to_string(), |n| n.to_string()),
                trial.status.clone(),
                trial.epoch.map_or_else(|| "—".to_string(), |e| e.to_string()),
                accuracy(trial.train_accuracy),
                accuracy(trial.test_accuracy),
                trial.grokked_at.map_or_else(|| "—".to_string(), |e| e.to_string()),
                trial.wall_seconds.map_or_else(|| "—".to_string(), |s| format!("{s:.1}s")),
            ]
        })
        .collect();
    let headers = ["trial", "family", "p", "fraction", "wd", "seed", "N", "status", "epoch", "train acc", "test acc", "grokked at", "wall"];
    let recipes = status.trials.iter().map(|trial| trial.params.as_ref().map(recipe).unwrap_or_default()).collect();
    let (headers, rows) = with_recipes(&headers, rows, recipes, 6);
    let mut out = table(&headers, &rows);
    for trial in status.trials.iter().filter(|trial| !trial.error.is_empty() && trial.status != "done") {
        out.push_str(&format!("{} ({}): {}\n", trial.trial_id, trial.status, trial.error));
    }
    out
}

/// Counts line of a sweep.
pub(crate) fn summary_line(summary: &pb::SweepSummary) -> String {
    format!(
        "{}: {} trials — {} done, {} running, {} queued, {} failed, {} cancelled",
        summary.name, summary.total, summary.done, summary.running, summary.queued, summary.failed, summary.cancelled
    )
}

/// Live progress: an overall bar and one bar per running trial. On a
/// non-terminal, bars are hidden and each finished trial is printed as a line.
pub(crate) struct Progress {
    multi: MultiProgress,
    overall: ProgressBar,
    trials: HashMap<String, ProgressBar>,
    reported: HashMap<String, String>,
    interactive: bool,
}

impl Progress {
    pub(crate) fn new() -> Self {
        let interactive = std::io::stderr().is_terminal();
        let target = if interactive { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() };
        let multi = MultiProgress::with_draw_target(target);
        let overall = multi.add(ProgressBar::new(0));
        let style = ProgressStyle::with_template("{prefix:>8} [{bar:30}] {pos}/{len} trials  {msg}  {elapsed_precise}")
            .expect("static template is valid")
            .progress_chars("=> ");
        overall.set_style(style);
        overall.set_prefix("sweep");
        Progress { multi, overall, trials: HashMap::new(), reported: HashMap::new(), interactive }
    }

    pub(crate) fn update(&mut self, status: &pb::SweepStatus) {
        let summary = status.summary.clone().unwrap_or_default();
        self.overall.set_length(summary.total as u64);
        self.overall.set_position((summary.done + summary.failed + summary.cancelled) as u64);
        self.overall.set_message(format!("{} running, {} queued, {} failed", summary.running, summary.queued, summary.failed));
        let trial_style = ProgressStyle::with_template("{prefix:>8} [{bar:30}] epoch {pos}/{len}  {msg}")
            .expect("static template is valid")
            .progress_chars("=> ");
        for trial in &status.trials {
            if trial.status == "running" {
                let bar = self.trials.entry(trial.trial_id.clone()).or_insert_with(|| {
                    let bar = self.multi.add(ProgressBar::new(trial.max_epochs as u64));
                    bar.set_style(trial_style.clone());
                    bar.set_prefix(trial.trial_id.chars().take(8).collect::<String>());
                    bar
                });
                bar.set_position(trial.epoch.unwrap_or(0).max(0) as u64);
                bar.set_message(format!(
                    "{}  train {}  test {}",
                    params_label(trial.params.as_ref()),
                    accuracy(trial.train_accuracy),
                    accuracy(trial.test_accuracy)
                ));
            } else if let Some(bar) = self.trials.remove(&trial.trial_id) {
                bar.finish_and_clear();
                self.multi.remove(&bar);
            }
            self.report_finished(trial);
        }
    }

    fn report_finished(&mut self, trial: &pb::TrialStatus) {
        let finished = matches!(trial.status.as_str(), "done" | "failed" | "cancelled");
        if !finished || self.reported.get(&trial.trial_id) == Some(&trial.status) {
            return;
        }
        self.reported.insert(trial.trial_id.clone(), trial.status.clone());
        let line = format!(
            "{} {} {}: train {} test {} grokked at {}",
            trial.trial_id,
            params_label(trial.params.as_ref()),
            trial.status,
            accuracy(trial.train_accuracy),
            accuracy(trial.test_accuracy),
            trial.grokked_at.map_or_else(|| "—".to_string(), |e| e.to_string())
        );
        if self.interactive {
            let _ = self.multi.println(line);
        } else {
            eprintln!("{line}");
        }
    }

    /// Remember trials that were already finished before we started watching.
    pub(crate) fn skip_finished(&mut self, status: &pb::SweepStatus) {
        for trial in &status.trials {
            self.reported.insert(trial.trial_id.clone(), trial.status.clone());
        }
    }

    pub(crate) fn finish(&self) {
        for bar in self.trials.values() {
            bar.finish_and_clear();
        }
        self.overall.finish_and_clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns() {
        let text = table(&["a", "long"], &[vec!["xyz".into(), "1".into()]]);
        assert_eq!(text, "a    long\n---  ----\nxyz  1\n");
    }
}
