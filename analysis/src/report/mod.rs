//! `groksweep report`: one self-contained HTML file per sweep, figures as
//! inline SVG ([`figures`]), no script and nothing fetched from the network.
//!
//! The page holds the sweep's table (parameters, outcome, phases), the phase
//! diagram, the grokking step against each swept axis, and for each selected
//! trial: losses (log scale) and accuracies with the phases shaded, the
//! progress measures, the Fourier spectrum of W_E over training as a heat map
//! and the key frequencies over time (transformer), or the critical timestep
//! and the last decision curves (diffusion). Every figure is a
//! `<figure class="figure">`; `<meta name="groksweep-figures">` says how many
//! there are, so a browser check can tell a missing one. The same figures
//! can be kept ([`ReportOptions::keep_figures`]) and written as PNG files.

pub mod figures;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{Float64Type, Int32Type, Int64Type};
use sweep_core::measures as names;

use crate::phases::{PhaseSettings, TrialClass, TrialPhases};
use crate::phases_table::{PhasesRow, Selection, analyze_in, collect, load_series, quoted, strings};
use crate::series::TrialSeries;
use crate::summary::{TrialPoint, grokking_slope, phase_diagram, varying_axes};
use crate::{AnalysisError, Result, open_results};
use figures::{Band, Figure, Line, PALETTE, heat_map, line_chart, log_log_scatter};

/// Which trials get their own figures.
#[derive(Debug, Clone, Default)]
pub struct ReportOptions {
    /// Only these trial ids.
    pub trials: Option<Vec<String>>,
    /// Only trials matching this SQL condition over `trials` columns.
    pub filter: Option<String>,
    /// At most this many trials get figures (the table lists all).
    pub limit: usize,
    /// Keep every figure in [`Report::kept`] (to write them as PNG files).
    pub keep_figures: bool,
}

/// A built report.
#[derive(Debug, Clone)]
pub struct Report {
    /// The page.
    pub html: String,
    /// Figures on it.
    pub figures: usize,
    /// Trials drawn one by one.
    pub trials_drawn: usize,
    /// Trials selected but left out by the limit.
    pub trials_left_out: usize,
    /// (id, figure) of every figure, when [`ReportOptions::keep_figures`] is set.
    pub kept: Vec<(String, Figure)>,
}

/// One row of the sweep's table.
#[derive(Debug, Clone)]
struct TrialRow {
    id: String,
    family: String,
    axes: BTreeMap<&'static str, f64>,
    names: BTreeMap<&'static str, String>,
    seed: i64,
    status: String,
    epochs: Option<i64>,
    test_accuracy: Option<f64>,
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn step_text(step: Option<i64>) -> String {
    step.map_or_else(|| "—".to_string(), |step| step.to_string())
}

struct Page {
    body: String,
    figures: usize,
    /// (id, figure) of every figure, kept when PNG files are wanted.
    kept: Option<Vec<(String, Figure)>>,
}

impl Page {
    fn figure(&mut self, id: &str, caption: &str, figure: Option<Figure>) -> Result<()> {
        if let Some(figure) = figure {
            let svg = figure.svg()?;
            if let Some(kept) = &mut self.kept {
                kept.push((id.to_string(), figure));
            }
            self.figures += 1;
            let _ = writeln!(
                self.body,
                "<figure class=\"figure\" id=\"{}\">{svg}<figcaption>{}</figcaption></figure>",
                escape(id),
                escape(caption)
            );
        }
        Ok(())
    }
}

async fn trial_rows(context: &datafusion::prelude::SessionContext, sweep: &str) -> Result<Vec<TrialRow>> {
    let sql = format!(
        "SELECT trial_id, family, CAST(modulus AS DOUBLE) AS modulus, data_fraction, weight_decay,
                CAST(image_diversity AS DOUBLE) AS image_diversity, seed, status, epochs, final_test_accuracy,
                lr, COALESCE(init_scale, 1.0) AS init_scale, COALESCE(optimizer, 'adamw') AS optimizer,
                CASE WHEN family = 'transformer' THEN COALESCE(loss, 'softmax') END AS loss
         FROM trials WHERE sweep = {} ORDER BY modulus, data_fraction, weight_decay, image_diversity, lr, init_scale, optimizer, loss, seed, trial_id",
        quoted(&[sweep])
    );
    let mut rows = Vec::new();
    for batch in collect(context, &sql).await? {
        let (ids, families, statuses) = (strings(&batch, 0)?, strings(&batch, 1)?, strings(&batch, 7)?);
        let seeds = batch.column(6).as_primitive::<Int64Type>();
        let epochs = batch.column(8).as_primitive::<Int64Type>();
        let accuracy = batch.column(9).as_primitive::<Float64Type>();
        let named = [("optimizer", strings(&batch, 12)?), ("loss", strings(&batch, 13)?)];
        for row in 0..batch.num_rows() {
            let mut axes = BTreeMap::new();
            for (column, axis) in
                [(2, "modulus"), (3, "data_fraction"), (4, "weight_decay"), (5, "image_diversity"), (10, "lr"), (11, "init_scale")]
            {
                let values = batch.column(column).as_primitive::<Float64Type>();
                if !values.is_null(row) {
                    axes.insert(axis, values.value(row));
                }
            }
            axes.insert("seed", seeds.value(row) as f64);
            let names = named
                .iter()
                .filter(|(_, column)| !column.is_null(row))
                .map(|(axis, column)| (*axis, column.value(row).to_string()))
                .collect();
            rows.push(TrialRow {
                id: ids.value(row).to_string(),
                family: families.value(row).to_string(),
                axes,
                names,
                seed: seeds.value(row),
                status: statuses.value(row).to_string(),
                epochs: (!epochs.is_null(row)).then(|| epochs.value(row)),
                test_accuracy: (!accuracy.is_null(row)).then(|| accuracy.value(row)),
            });
        }
    }
    Ok(rows)
}

/// The selected trial ids, in table order.
async fn selected(
    context: &datafusion::prelude::SessionContext,
    sweep: &str,
    rows: &[TrialRow],
    options: &ReportOptions,
) -> Result<Vec<String>> {
    let mut ids: Vec<String> = rows.iter().map(|row| row.id.clone()).collect();
    if let Some(filter) = &options.filter {
        let sql = format!("SELECT trial_id FROM trials WHERE sweep = {} AND ({filter})", quoted(&[sweep]));
        let mut matching = BTreeSet::new();
        for batch in collect(context, &sql).await? {
            let column = strings(&batch, 0)?;
            matching.extend((0..batch.num_rows()).map(|row| column.value(row).to_string()));
        }
        ids.retain(|id| matching.contains(id));
    }
    if let Some(wanted) = &options.trials {
        if let Some(unknown) = wanted.iter().find(|id| !rows.iter().any(|row| &row.id == *id)) {
            return Err(AnalysisError::Unexpected(format!("sweep `{sweep}` has no trial `{unknown}`")));
        }
        ids.retain(|id| wanted.contains(id));
    }
    Ok(ids)
}

/// Build the report of `sweep` from the results under `data_dir`.
pub async fn build_report(data_dir: &Path, sweep: &str, options: &ReportOptions, settings: &PhaseSettings) -> Result<Report> {
    let context = open_results(data_dir, Some(sweep)).await?;
    let rows = trial_rows(&context, sweep).await?;
    let phases: BTreeMap<String, PhasesRow> =
        analyze_in(&context, sweep, Selection::All, settings).await?.into_iter().map(|row| (row.trial_id.clone(), row)).collect();
    let chosen = selected(&context, sweep, &rows, options).await?;
    let drawn: Vec<String> = chosen.iter().take(options.limit.max(1)).cloned().collect();
    let only = format!(
        "AND t.trial_id IN ({})",
        if drawn.is_empty() { "NULL".to_string() } else { quoted(&drawn.iter().map(String::as_str).collect::<Vec<_>>()) }
    );
    let series = load_series(&context, &only, None, None).await?;
    let spectra = we_spectra(&context, &only).await?;
    let keys = key_frequencies(&context, &drawn).await?;

    let mut page = Page { body: String::new(), figures: 0, kept: options.keep_figures.then(Vec::new) };
    let done = rows.iter().filter(|row| row.status == "done").count();
    let _ = writeln!(
        page.body,
        "<h1>Sweep <code>{}</code></h1><p>{} trials, {done} done; {} analysed.</p>",
        escape(sweep),
        rows.len(),
        phases.len()
    );
    sweep_table(&mut page, &rows, &phases);
    let points: Vec<TrialPoint> = rows
        .iter()
        .filter_map(|row| {
            let found = &phases.get(&row.id)?.phases;
            Some(TrialPoint {
                axes: row.axes.clone(),
                names: row.names.clone(),
                seed: row.seed,
                class: found.class.as_str().to_string(),
                grokked_at: found.test_accuracy_95_at,
            })
        })
        .collect();
    sweep_figures(&mut page, &points)?;

    let _ = writeln!(page.body, "<h2>Trials</h2>");
    if chosen.len() > drawn.len() {
        let _ =
            writeln!(page.body, "<p>Figures for the first {} of {} selected trials (<code>--limit</code>).</p>", drawn.len(), chosen.len());
    }
    for id in &drawn {
        let row = rows.iter().find(|row| &row.id == id).expect("drawn ids come from the rows");
        let found = phases.get(id);
        let attempt = found.map(|found| found.attempt);
        let trial_series = attempt.and_then(|attempt| series.get(&(id.clone(), attempt)));
        let _ = writeln!(
            page.body,
            "<section class=\"trial\" id=\"trial-{0}\"><h3>Trial <code>{0}</code> ({1})</h3>",
            escape(id),
            escape(&row.family)
        );
        match (found, trial_series) {
            (Some(found), Some(trial_series)) => {
                trial_figures(&mut page, id, &row.family, trial_series, &found.phases, spectra.get(id), keys.get(id))?;
            }
            _ => page.body.push_str("<p>No recorded progress yet.</p>\n"),
        }
        page.body.push_str("</section>\n");
    }
    let html = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"groksweep-figures\" content=\"{}\">\
         <title>groksweep report: {}</title><style>{STYLE}</style></head><body>\n{}</body></html>\n",
        page.figures,
        escape(sweep),
        page.body
    );
    Ok(Report {
        html,
        figures: page.figures,
        trials_drawn: drawn.len(),
        trials_left_out: chosen.len() - drawn.len(),
        kept: page.kept.unwrap_or_default(),
    })
}

const STYLE: &str = "body{font-family:sans-serif;margin:2em;max-width:1200px;color:#222}\
table{border-collapse:collapse;font-size:13px;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}\
th{background:#f3f3f3}td.l{text-align:left}figure{display:inline-block;margin:6px;vertical-align:top}\
figcaption{font-size:12px;color:#555;max-width:560px}section.trial{border-top:1px solid #ddd;margin-top:1.5em}\
td.comprehension{background:#d8ecd8}td.grokking{background:#fde9c9}td.memorisation{background:#f8d4d4}td.confusion{background:#ddd}";

fn sweep_table(page: &mut Page, rows: &[TrialRow], phases: &BTreeMap<String, PhasesRow>) {
    page.body.push_str(
        "<table><tr><th>trial</th><th>family</th><th>p</th><th>fraction</th><th>wd</th><th>N</th><th>lr</th><th>init</th>\
         <th>optimizer</th><th>loss</th><th>seed</th><th>status</th>\
         <th>epochs</th><th>test acc</th><th>class</th><th>phase at end</th><th>memorisation end</th><th>circuit formation end</th>\
         <th>cleanup end</th><th>grokked (0.95)</th></tr>\n",
    );
    for row in rows {
        let axis = |name| row.axes.get(name).map_or_else(|| "—".to_string(), |value: &f64| format!("{value}"));
        let found = phases.get(&row.id).map(|found| &found.phases);
        let class = found.map_or("—", |found| found.class.as_str());
        let _ = writeln!(
            page.body,
            "<tr><td class=\"l\"><a href=\"#trial-{id}\">{id}</a></td><td class=\"l\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{}</td><td class=\"l\">{}</td><td class=\"l\">{}</td><td>{}</td>\
             <td class=\"l\">{}</td><td>{}</td><td>{}</td><td class=\"l {class}\">{class}</td><td class=\"l\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&row.family),
            axis("modulus"),
            axis("data_fraction"),
            axis("weight_decay"),
            axis("image_diversity"),
            axis("lr"),
            axis("init_scale"),
            escape(row.names.get("optimizer").map_or("—", String::as_str)),
            escape(row.names.get("loss").map_or("—", String::as_str)),
            row.seed,
            escape(&row.status),
            step_text(row.epochs),
            row.test_accuracy.map_or_else(|| "—".to_string(), |accuracy| format!("{accuracy:.3}")),
            found.map_or("—", |found| found.phase_at_end.as_str()),
            step_text(found.and_then(|found| found.memorisation_end)),
            step_text(found.and_then(|found| found.circuit_formation_end)),
            step_text(found.and_then(|found| found.cleanup_end)),
            step_text(found.and_then(|found| found.test_accuracy_95_at)),
            id = escape(&row.id),
        );
    }
    page.body.push_str("</table>\n");
}

fn sweep_figures(page: &mut Page, points: &[TrialPoint]) -> Result<()> {
    let swept = varying_axes(points);
    let rows = swept.first().copied().unwrap_or("modulus");
    let columns = swept.get(1).copied();
    let cells = phase_diagram(points, rows, columns);
    let _ = write!(
        page.body,
        "<h2>Phase diagram</h2><p>Liu et al. 2022 classes, counts over seeds; rows: <code>{rows}</code>, columns: <code>{}</code>.</p><table><tr><th></th>",
        columns.unwrap_or("all")
    );
    let column_values: BTreeSet<&String> = cells.keys().map(|key| &key.1).collect();
    let row_values: BTreeSet<&String> = cells.keys().map(|key| &key.0).collect();
    for column in &column_values {
        let _ = write!(page.body, "<th>{}</th>", escape(column));
    }
    page.body.push_str("</tr>\n");
    for row in &row_values {
        let _ = write!(page.body, "<tr><th>{}</th>", escape(row));
        for column in &column_values {
            let counts = cells.get(&((*row).clone(), (*column).clone()));
            let majority =
                counts.and_then(|counts| counts.iter().max_by_key(|entry| entry.1).map(|entry| entry.0.clone())).unwrap_or_default();
            let text = counts.map_or_else(String::new, |counts| {
                TrialClass::ALL
                    .iter()
                    .filter_map(|class| counts.get(class.as_str()).map(|n| format!("{} {n}", class.as_str())))
                    .collect::<Vec<_>>()
                    .join(", ")
            });
            let _ = write!(page.body, "<td class=\"l {}\">{}</td>", escape(&majority), escape(&text));
        }
        page.body.push_str("</tr>\n");
    }
    page.body.push_str("</table>\n");
    for axis in swept {
        let grokked: Vec<(f64, f64)> = points.iter().filter_map(|point| Some((*point.axes.get(axis)?, point.grokked_at? as f64))).collect();
        let slope = grokking_slope(points, axis, 1_000).map_or_else(String::new, |fit| {
            let interval = fit.interval.map_or_else(String::new, |(low, high)| format!(", 95% bootstrap over seeds [{low:.2}, {high:.2}]"));
            format!(" Log-log slope {:.2}{interval}; {} not grokked, left out.", fit.slope, fit.left_out)
        });
        page.figure(
            &format!("grokking-vs-{axis}"),
            &format!("Grokking step (test accuracy ≥ 0.95) against {axis}.{slope}"),
            log_log_scatter(&format!("grokking step vs {axis}"), axis, "grokking step", &grokked),
        )?;
    }
    Ok(())
}

/// A figure of measures over training steps.
struct StepFigure<'a> {
    /// Id suffix.
    slug: &'static str,
    caption: String,
    title: &'static str,
    /// (measure, legend label).
    measures: Vec<(&'a str, &'a str)>,
    log_y: bool,
    /// Mark the grokking step.
    marked: bool,
}

fn bands(phases: &TrialPhases, last: f64) -> Vec<Band> {
    let mut bands = Vec::new();
    let memorisation_end = phases.memorisation_end.map(|step| step as f64);
    bands.push(Band { from: 0.0, to: memorisation_end.unwrap_or(last), label: "memorisation", color: PALETTE[0] });
    if let Some(start) = memorisation_end {
        let end = phases.circuit_formation_end.map_or(last, |step| step as f64);
        bands.push(Band { from: start, to: end, label: "circuit formation", color: PALETTE[4] });
        if let Some(start) = phases.circuit_formation_end.map(|step| step as f64) {
            let end = phases.cleanup_end.map_or(last, |step| step as f64);
            bands.push(Band { from: start, to: end, label: "cleanup", color: PALETTE[2] });
        }
    }
    bands
}

fn lines(series: &TrialSeries, names: &[(&str, &str)]) -> Vec<Line> {
    names
        .iter()
        .map(|(measure, label)| Line {
            name: label.to_string(),
            points: series.scalar(measure).iter().map(|&(step, value)| (step as f64, value)).collect(),
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn trial_figures(
    page: &mut Page,
    id: &str,
    family: &str,
    series: &TrialSeries,
    phases: &TrialPhases,
    spectrum: Option<&BTreeMap<i64, Vec<f64>>>,
    keys: Option<&Vec<(i64, i32)>>,
) -> Result<()> {
    let last = series.last_step().unwrap_or(0) as f64;
    let shaded = if family == "transformer" { bands(phases, last) } else { Vec::new() };
    let marks: Vec<(f64, &str)> = phases.test_accuracy_95_at.map(|step| (step as f64, "grokked")).into_iter().collect();
    let figure = |page: &mut Page, slug: &str, caption: &str, svg| page.figure(&format!("{id}-{slug}"), caption, svg);
    let phase_text = format!(
        "memorisation ends {}, circuit formation {}, cleanup {}",
        step_text(phases.memorisation_end),
        step_text(phases.circuit_formation_end),
        step_text(phases.cleanup_end)
    );
    let transformer = family == "transformer";
    let norms: Vec<(&str, &str)> = names::WEIGHT_NORMS.iter().map(|name| (*name, name.trim_start_matches("norm_"))).collect();
    let mut over_steps = vec![
        StepFigure {
            slug: "loss",
            caption: format!("Train and test loss (log scale); {phase_text}."),
            title: "loss",
            measures: vec![(names::TRAIN_LOSS, "train"), (names::TEST_LOSS, "test")],
            log_y: true,
            marked: true,
        },
        StepFigure {
            slug: "accuracy",
            caption: format!("Train and test accuracy; class {}.", phases.class.as_str()),
            title: "accuracy",
            measures: vec![(names::TRAIN_ACCURACY, "train"), (names::TEST_ACCURACY, "test")],
            log_y: false,
            marked: true,
        },
    ];
    if transformer {
        over_steps.extend([
            StepFigure {
                slug: "restricted-excluded",
                caption: "Restricted and excluded loss with the final model's key frequencies (at checkpoints), and the train loss.".into(),
                title: "restricted / excluded loss (final K)",
                measures: vec![
                    (names::RESTRICTED_LOSS_FINAL_K, "restricted"),
                    (names::EXCLUDED_LOSS_FINAL_K, "excluded"),
                    (names::TRAIN_LOSS, "train"),
                ],
                log_y: true,
                marked: false,
            },
            StepFigure {
                slug: "gini",
                caption: "Gini coefficient of the Fourier norms of W_E and W_L.".into(),
                title: "Gini of Fourier norms",
                measures: vec![(names::GINI_W_E, "W_E"), (names::GINI_W_L, "W_L")],
                log_y: false,
                marked: false,
            },
            StepFigure {
                slug: "weights",
                caption: "Sum of squared weights.".into(),
                title: "Σθ²",
                measures: vec![(names::SUM_SQUARED_WEIGHTS, "Σθ²")],
                log_y: false,
                marked: false,
            },
            StepFigure {
                slug: "norms",
                caption: "Frobenius norm of each weight matrix (log scale): a spike of W_U or W_out is the slingshot of Thilak et al. 2022."
                    .into(),
                title: "weight norms",
                measures: norms,
                log_y: true,
                marked: false,
            },
            StepFigure {
                slug: "rank-collapse",
                caption: "Effective rank of W_E and W_L (exp of the entropy of the normalised singular values).".into(),
                title: "effective rank",
                measures: vec![(names::EFFECTIVE_RANK_W_E, "W_E"), (names::EFFECTIVE_RANK_W_L, "W_L")],
                log_y: false,
                marked: false,
            },
            StepFigure {
                slug: "softmax-collapse",
                caption: "Softmax collapse: fraction of training pairs whose float32 softmax probability of the label is exactly 1 (Prieto et al. 2025)."
                    .into(),
                title: "softmax collapse (f32)",
                measures: vec![(names::SOFTMAX_COLLAPSE, "p(label) = 1")],
                log_y: false,
                marked: true,
            },
        ]);
    } else {
        over_steps.push(StepFigure {
            slug: "critical",
            caption: format!(
                "Critical timestep over training (test and train pairs); first at step {}, switch flips at it: {}.",
                step_text(phases.critical_timestep_first_at),
                phases.switch_flips.map_or("—", |flips| if flips { "yes" } else { "no" })
            ),
            title: "critical timestep",
            measures: vec![(names::CRITICAL_TIMESTEP_TEST, "test"), (names::CRITICAL_TIMESTEP_TRAIN, "train")],
            log_y: false,
            marked: true,
        });
    }
    for spec in &over_steps {
        let drawn =
            line_chart(spec.title, "step", &lines(series, &spec.measures), spec.log_y, &shaded, if spec.marked { &marks } else { &[] });
        figure(page, spec.slug, &spec.caption, drawn)?;
    }
    if transformer {
        if let Some(spectrum) = spectrum {
            let steps: Vec<i64> = spectrum.keys().copied().collect();
            let values: Vec<Vec<f64>> = spectrum.values().cloned().collect();
            figure(
                page,
                "w-e-spectrum",
                "Fourier norms of W_E per frequency k over training.",
                heat_map("W_E Fourier spectrum", "step", "frequency k", &steps, &values, 1),
            )?;
        }
        if let Some(keys) = keys.filter(|keys| !keys.is_empty()) {
            let points: Vec<Line> = keys
                .iter()
                .map(|&(_, frequency)| frequency)
                .collect::<BTreeSet<_>>()
                .into_iter()
                .map(|frequency| Line {
                    name: format!("k = {frequency}"),
                    points: keys.iter().filter(|key| key.1 == frequency).map(|key| (key.0 as f64, f64::from(frequency))).collect(),
                })
                .collect();
            figure(
                page,
                "key-frequencies",
                "Key frequencies (owning MLP neurons with FVE > 0.85) at each eval step.",
                line_chart("key frequencies", "step", &points, false, &[], &[]),
            )?;
        }
    } else {
        let last_curve =
            |name: &str| series.curves.get(name).and_then(|by_step| by_step.iter().next_back()).map(|(step, curve)| (*step, curve.clone()));
        let decision: Vec<Line> = [(names::DECISION_ACCURACY_TEST, "test"), (names::DECISION_ACCURACY_TRAIN, "train")]
            .iter()
            .filter_map(|(name, label)| {
                last_curve(name).map(|(step, curve)| Line { name: format!("{label} (step {step})"), points: curve })
            })
            .collect();
        let critical: Vec<(f64, &str)> = phases.critical_timestep.map(|t| (t, "t*")).into_iter().collect();
        figure(
            page,
            "decision",
            "Decision curve at the last evaluation: accuracy of the class of x̂0 at sampling time t.",
            line_chart("decision curve", "sampling time t", &decision, false, &[], &critical),
        )?;
    }
    Ok(())
}

/// W_E Fourier norms of each trial: step → norms by frequency 1…
async fn we_spectra(context: &datafusion::prelude::SessionContext, only: &str) -> Result<BTreeMap<String, BTreeMap<i64, Vec<f64>>>> {
    let sql = format!(
        "SELECT s.trial_id, s.step, s.frequency, s.norm FROM spectra s JOIN trials t ON s.trial_id = t.trial_id AND s.attempt = t.attempt
         WHERE s.matrix = 'W_E' {only} ORDER BY s.trial_id, s.step, s.frequency"
    );
    let mut spectra: BTreeMap<String, BTreeMap<i64, Vec<f64>>> = BTreeMap::new();
    for batch in collect(context, &sql).await? {
        let ids = strings(&batch, 0)?;
        let (steps, frequencies, norms) = (
            batch.column(1).as_primitive::<Int64Type>(),
            batch.column(2).as_primitive::<Int32Type>(),
            batch.column(3).as_primitive::<Float64Type>(),
        );
        for row in 0..batch.num_rows() {
            let column = spectra.entry(ids.value(row).to_string()).or_default().entry(steps.value(row)).or_default();
            let index = (frequencies.value(row).max(1) - 1) as usize;
            if column.len() <= index {
                column.resize(index + 1, 0.0);
            }
            column[index] = norms.value(row);
        }
    }
    Ok(spectra)
}

/// (step, frequency) of every key frequency of each trial.
async fn key_frequencies(context: &datafusion::prelude::SessionContext, ids: &[String]) -> Result<BTreeMap<String, Vec<(i64, i32)>>> {
    if ids.is_empty() {
        return Ok(BTreeMap::new());
    }
    let sql = format!(
        "SELECT trial_id, step, frequency FROM key_frequencies WHERE trial_id IN ({}) ORDER BY trial_id, step, frequency",
        quoted(&ids.iter().map(String::as_str).collect::<Vec<_>>())
    );
    let mut keys: BTreeMap<String, Vec<(i64, i32)>> = BTreeMap::new();
    for batch in collect(context, &sql).await? {
        let ids = strings(&batch, 0)?;
        let (steps, frequencies) = (batch.column(1).as_primitive::<Int64Type>(), batch.column(2).as_primitive::<Int32Type>());
        for row in 0..batch.num_rows() {
            keys.entry(ids.value(row).to_string()).or_default().push((steps.value(row), frequencies.value(row)));
        }
    }
    Ok(keys)
}
