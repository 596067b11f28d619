//! `groksweep analyze`: the `phases` table of a sweep from its results, the
//! phase diagram and the grokking step against each swept axis; and
//! `groksweep report`, the same as one HTML page.

use anyhow::Context;
use sweep_analysis::phases::PhaseSettings;
use sweep_analysis::phases_table::{PhasesRow, Selection, analyze_sweep, write_phases};
use sweep_analysis::summary::{AXES, NAMED_AXES, grokking_slope, is_axis, render_diagram, trial_points, varying_axes};

use crate::args::{AnalyzeArgs, ReportArgs, RuleArgs};

/// The settings: documented defaults, overridden by the flags given.
pub(crate) fn settings(rules: &RuleArgs) -> anyhow::Result<PhaseSettings> {
    let mut settings = PhaseSettings::default();
    if let Some(value) = rules.class_accuracy {
        anyhow::ensure!((0.0..=1.0).contains(&value), "--class-accuracy must be in [0, 1], got {value}");
        settings.class_accuracy = value;
    }
    if let Some(value) = rules.class_gap {
        anyhow::ensure!(value >= 0, "--class-gap must be at least 0 steps, got {value}");
        settings.class_gap = value;
    }
    if let Some(value) = rules.class_budget {
        anyhow::ensure!(value > 0, "--class-budget must be a positive number of steps, got {value}");
        settings.class_budget = Some(value);
    }
    if let Some(value) = rules.max_segments {
        anyhow::ensure!((1..=8).contains(&value), "--max-segments must be between 1 and 8, got {value}");
        settings.max_segments = value;
    }
    if let Some(value) = rules.fast_fraction {
        anyhow::ensure!(value > 0.0 && value <= 1.0, "--fast-fraction must be in (0, 1], got {value}");
        settings.fast_fraction = value;
    }
    if let Some(value) = rules.cleanup_min_decades {
        anyhow::ensure!(value.is_finite() && value >= 0.0, "--cleanup-min-decades must be at least 0, got {value}");
        settings.cleanup_min_decades = value;
    }
    Ok(settings)
}

fn axis(name: &str, flag: &str) -> anyhow::Result<()> {
    let known: Vec<&str> = AXES.iter().chain(&NAMED_AXES).copied().collect();
    anyhow::ensure!(is_axis(name), "--{flag} must be one of {}, got `{name}`", known.join(", "));
    Ok(())
}

fn step(value: Option<i64>) -> String {
    value.map_or_else(|| "-".to_string(), |step| step.to_string())
}

fn trial_table(rows: &[PhasesRow]) -> String {
    let mut text = format!(
        "{:<20} {:<9} {:<16} {:<17} {:>9} {:>9} {:>9} {:>9}\n",
        "trial", "status", "class", "phase at end", "mem end", "circ end", "clean end", "grokked"
    );
    for row in rows {
        let p = &row.phases;
        text.push_str(&format!(
            "{:<20} {:<9} {:<16} {:<17} {:>9} {:>9} {:>9} {:>9}\n",
            row.trial_id,
            row.status,
            p.class.as_str(),
            p.phase_at_end.as_str(),
            step(p.memorisation_end),
            step(p.circuit_formation_end),
            step(p.cleanup_end),
            step(p.test_accuracy_95_at)
        ));
    }
    text
}

/// Analyse, write, summarise.
pub(crate) async fn run(args: AnalyzeArgs) -> anyhow::Result<()> {
    let settings = settings(&args.rules)?;
    if args.llc {
        super::llc::settings(&args.llc_settings)?;
    }
    for (name, flag) in [(&args.rows, "rows"), (&args.columns, "columns")] {
        if let Some(name) = name {
            axis(name, flag)?;
        }
    }
    let rows = analyze_sweep(&args.data_dir, &args.sweep, Selection::All, &settings)
        .await
        .with_context(|| format!("failed to read the results of `{}` in {}", args.sweep, args.data_dir.display()))?;
    anyhow::ensure!(!rows.is_empty(), "sweep `{}` has no recorded progress in {} yet", args.sweep, args.data_dir.display());
    let path = write_phases(&args.data_dir, &args.sweep, &rows, &settings).context("failed to write the phases table")?;
    print!("{}", trial_table(&rows));

    let context = sweep_analysis::open_results(&args.data_dir, Some(&args.sweep)).await.context("failed to reopen the results")?;
    let points = trial_points(&context).await.context("failed to join phases with trials")?;
    let swept = varying_axes(&points);
    let row_axis = args.rows.clone().or_else(|| swept.first().map(|axis| axis.to_string())).unwrap_or_else(|| "modulus".to_string());
    let column_axis = args.columns.clone().or_else(|| swept.iter().find(|axis| **axis != row_axis).map(|axis| axis.to_string()));
    println!("\nphase diagram (Liu et al. 2022 classes, counts over seeds):");
    print!("{}", render_diagram(&points, &row_axis, column_axis.as_deref()));
    for axis in ["data_fraction", "weight_decay", "lr", "init_scale"] {
        if !swept.contains(&axis) {
            continue;
        }
        match grokking_slope(&points, axis, 1_000) {
            Some(fit) => {
                let interval = fit.interval.map_or_else(
                    || "no interval (one seed)".to_string(),
                    |(low, high)| format!("95% bootstrap over seeds [{low:.2}, {high:.2}]"),
                );
                println!(
                    "\ngrokking step (test accuracy ≥ 0.95) ∝ {axis}^{:.2}: {interval}; {} trials, {} seeds, {} left out (not grokked)",
                    fit.slope, fit.points, fit.seeds, fit.left_out
                );
            }
            None => println!("\ngrokking step against {axis}: too few grokked trials at distinct values for a slope"),
        }
    }
    println!("\nphases: {}", path.display());
    if args.llc {
        super::llc::run(&args.data_dir, &args.sweep, &args.llc_settings).await?;
    }
    Ok(())
}

/// Build and write the HTML report.
pub(crate) async fn report(args: ReportArgs) -> anyhow::Result<()> {
    let settings = settings(&args.rules)?;
    anyhow::ensure!(args.limit >= 1, "--limit must be at least 1");
    let options = sweep_analysis::report::ReportOptions {
        trials: args.trials.clone(),
        filter: args.filter.clone(),
        limit: args.limit,
        keep_figures: args.png.is_some(),
    };
    let report = sweep_analysis::report::build_report(&args.data_dir, &args.sweep, &options, &settings)
        .await
        .with_context(|| format!("failed to build the report of `{}` from {}", args.sweep, args.data_dir.display()))?;
    std::fs::write(&args.out, &report.html).with_context(|| format!("failed to write {}", args.out.display()))?;
    if let Some(directory) = &args.png {
        std::fs::create_dir_all(directory).with_context(|| format!("failed to create {}", directory.display()))?;
        for (id, figure) in &report.kept {
            let path = directory.join(format!("{id}.png"));
            let bytes = figure.png().with_context(|| format!("failed to draw figure {id}"))?;
            std::fs::write(&path, bytes).with_context(|| format!("failed to write {}", path.display()))?;
        }
        println!("png: {} figures in {}", report.kept.len(), directory.display());
    }
    println!(
        "report: {} ({} figures, {} trials drawn{})",
        args.out.display(),
        report.figures,
        report.trials_drawn,
        if report.trials_left_out > 0 { format!(", {} more selected: raise --limit", report.trials_left_out) } else { String::new() }
    );
    Ok(())
}
