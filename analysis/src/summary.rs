//! Sweep-level summaries over the `phases` and `trials` tables: the phase
//! diagram (Liu et al.'s class per cell of one or two axes, counted over
//! seeds) and the grokking step against an axis, with a log-log slope and a
//! bootstrap interval over seeds.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{Float64Type, Int64Type};
use datafusion::prelude::SessionContext;

use crate::Result;
use crate::phases::TrialClass;

/// Numeric axes of `trials` a summary can be drawn over (and a slope fitted against).
pub const AXES: [&str; 7] = ["modulus", "data_fraction", "weight_decay", "image_diversity", "lr", "init_scale", "seed"];

/// Named axes of `trials` a phase diagram can be drawn over.
pub const NAMED_AXES: [&str; 2] = ["optimizer", "loss"];

/// Whether `name` is an axis a phase diagram can be drawn over.
pub fn is_axis(name: &str) -> bool {
    AXES.contains(&name) || NAMED_AXES.contains(&name)
}

/// One analysed trial, as the summaries see it.
#[derive(Debug, Clone, PartialEq)]
pub struct TrialPoint {
    /// Numeric axis values (null axes absent).
    pub axes: BTreeMap<&'static str, f64>,
    /// Named axis values (optimizer; loss for the transformer family).
    pub names: BTreeMap<&'static str, String>,
    /// Model seed.
    pub seed: i64,
    /// Liu et al.'s class.
    pub class: String,
    /// Test accuracy first ≥ 0.95.
    pub grokked_at: Option<i64>,
}

/// Every trial of the `phases` table joined with its axes in `trials`.
pub async fn trial_points(context: &SessionContext) -> Result<Vec<TrialPoint>> {
    // The later axes are null in tables written before them: their defaults (lr unknown, left out).
    let sql = "SELECT CAST(t.modulus AS DOUBLE) AS modulus, t.data_fraction, t.weight_decay,
                      CAST(t.image_diversity AS DOUBLE) AS image_diversity, t.lr, COALESCE(t.init_scale, 1.0) AS init_scale,
                      CAST(t.seed AS DOUBLE) AS seed_axis,
                      t.seed, p.class, p.test_accuracy_95_at, COALESCE(t.optimizer, 'adamw') AS optimizer,
                      CASE WHEN t.family = 'transformer' THEN COALESCE(t.loss, 'softmax') END AS loss
               FROM phases p JOIN trials t ON p.sweep = t.sweep AND p.trial_id = t.trial_id
               ORDER BY t.sweep, t.trial_id";
    let batches = context.sql(sql).await?.collect().await?;
    let mut points = Vec::new();
    for batch in &batches {
        let class = crate::phases_table::strings(batch, 8)?;
        let grokked = batch.column(9).as_primitive::<Int64Type>();
        let seeds = batch.column(7).as_primitive::<Int64Type>();
        let named = [crate::phases_table::strings(batch, 10)?, crate::phases_table::strings(batch, 11)?];
        for row in 0..batch.num_rows() {
            let mut axes = BTreeMap::new();
            for (index, axis) in AXES.iter().enumerate() {
                let column = batch.column(index).as_primitive::<Float64Type>();
                if !column.is_null(row) {
                    axes.insert(*axis, column.value(row));
                }
            }
            let mut names = BTreeMap::new();
            for (axis, column) in NAMED_AXES.iter().zip(&named) {
                if !column.is_null(row) {
                    names.insert(*axis, column.value(row).to_string());
                }
            }
            points.push(TrialPoint {
                axes,
                names,
                seed: seeds.value(row),
                class: class.value(row).to_string(),
                grokked_at: (!grokked.is_null(row)).then(|| grokked.value(row)),
            });
        }
    }
    Ok(points)
}

/// The axes (other than the seed) that take more than one value: numeric first, then named.
pub fn varying_axes(points: &[TrialPoint]) -> Vec<&'static str> {
    AXES.iter()
        .chain(&NAMED_AXES)
        .copied()
        .filter(|axis| *axis != "seed")
        .filter(|axis| {
            let values: BTreeSet<Option<String>> = points.iter().map(|point| point.label(axis)).collect();
            values.iter().flatten().count() > 1
        })
        .collect()
}

impl TrialPoint {
    /// The value of `axis` as text (numbers in their shortest form); `None` where the trial has none.
    pub fn label(&self, axis: &str) -> Option<String> {
        self.axes.get(axis).map(|value| format!("{value}")).or_else(|| self.names.get(axis).cloned())
    }
}

fn label(point: &TrialPoint, axis: &str) -> String {
    point.label(axis).unwrap_or_else(|| "-".to_string())
}

/// Class counts per cell of `rows` × `columns` (one column when `columns` is `None`).
pub fn phase_diagram(points: &[TrialPoint], rows: &str, columns: Option<&str>) -> BTreeMap<(String, String), BTreeMap<String, usize>> {
    let mut cells: BTreeMap<(String, String), BTreeMap<String, usize>> = BTreeMap::new();
    for point in points {
        let row = label(point, rows);
        let column = columns.map_or_else(|| "all".to_string(), |axis| label(point, axis));
        *cells.entry((row, column)).or_default().entry(point.class.clone()).or_default() += 1;
    }
    cells
}

/// The diagram as text: one line per row value, one cell per column value,
/// each cell the counts of its classes (c comprehension, g grokking,
/// m memorisation, x confusion, = at gap threshold, t test only).
pub fn render_diagram(points: &[TrialPoint], rows: &str, columns: Option<&str>) -> String {
    let cells = phase_diagram(points, rows, columns);
    let sorted = |values: BTreeSet<String>| {
        let mut values: Vec<String> = values.into_iter().collect();
        values.sort_by(|a, b| a.parse::<f64>().unwrap_or(f64::NAN).total_cmp(&b.parse::<f64>().unwrap_or(f64::NAN)).then(a.cmp(b)));
        values
    };
    let row_values = sorted(cells.keys().map(|key| key.0.clone()).collect());
    let column_values = sorted(cells.keys().map(|key| key.1.clone()).collect());
    let code = |class: &str| match class {
        "comprehension" => "c",
        "grokking" => "g",
        "memorisation" => "m",
        "confusion" => "x",
        "at_gap_threshold" => "=",
        _ => "t",
    };
    let cell_text = |row: &String, column: &String| {
        cells.get(&(row.clone(), column.clone())).map_or_else(
            || ".".to_string(),
            |counts| {
                TrialClass::ALL
                    .iter()
                    .filter_map(|class| counts.get(class.as_str()).map(|count| format!("{}{}", code(class.as_str()), count)))
                    .collect::<Vec<_>>()
                    .join(" ")
            },
        )
    };
    let width = row_values
        .iter()
        .flat_map(|row| column_values.iter().map(move |column| (row, column)))
        .map(|(row, column)| cell_text(row, column).len())
        .chain(column_values.iter().map(String::len))
        .max()
        .unwrap_or(1)
        .max(4);
    let head = rows.len().max(row_values.iter().map(String::len).max().unwrap_or(0));
    let mut text = String::new();
    let _ = writeln!(text, "{}", columns.map_or_else(|| format!("rows: {rows}"), |columns| format!("rows: {rows}, columns: {columns}")));
    let _ = write!(text, "{:head$} |", "");
    for column in &column_values {
        let _ = write!(text, " {column:>width$}");
    }
    text.push('\n');
    for row in &row_values {
        let _ = write!(text, "{row:head$} |");
        for column in &column_values {
            let _ = write!(text, " {:>width$}", cell_text(row, column));
        }
        text.push('\n');
    }
    text.push_str("(c comprehension, g grokking, m memorisation, x confusion, = at the gap threshold, t test only)\n");
    text
}

/// A log-log fit of the grokking step against an axis.
#[derive(Debug, Clone, PartialEq)]
pub struct SlopeFit {
    /// The axis.
    pub axis: &'static str,
    /// d log(grokking step) / d log(axis value).
    pub slope: f64,
    /// 2.5 % and 97.5 % quantiles of the slope over bootstrap resamples of seeds.
    pub interval: Option<(f64, f64)>,
    /// Trials that grokked and entered the fit.
    pub points: usize,
    /// Distinct seeds among them.
    pub seeds: usize,
    /// Trials left out: they did not grok, or their axis value is not positive.
    pub left_out: usize,
}

/// Least-squares slope of y on x, `None` with fewer than two distinct x.
fn ols_slope(points: &[(f64, f64)]) -> Option<f64> {
    let n = points.len() as f64;
    let mean_x = points.iter().map(|point| point.0).sum::<f64>() / n;
    let mean_y = points.iter().map(|point| point.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|point| (point.0 - mean_x).powi(2)).sum();
    let sxy: f64 = points.iter().map(|point| (point.0 - mean_x) * (point.1 - mean_y)).sum();
    (sxx > 1e-12 * n.max(1.0)).then(|| sxy / sxx)
}

/// SplitMix64, for a bootstrap that gives the same interval every time.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Fit log(grokking step) against log(axis) over the trials that grokked, and
/// bootstrap the slope by resampling whole seeds (`resamples` times).
pub fn grokking_slope(points: &[TrialPoint], axis: &'static str, resamples: usize) -> Option<SlopeFit> {
    let mut by_seed: BTreeMap<i64, Vec<(f64, f64)>> = BTreeMap::new();
    let mut left_out = 0;
    for point in points {
        match (point.axes.get(axis), point.grokked_at) {
            (Some(&x), Some(step)) if x > 0.0 && step > 0 => by_seed.entry(point.seed).or_default().push((x.ln(), (step as f64).ln())),
            _ => left_out += 1,
        }
    }
    let all: Vec<(f64, f64)> = by_seed.values().flatten().copied().collect();
    let slope = ols_slope(&all)?;
    let seeds: Vec<&Vec<(f64, f64)>> = by_seed.values().collect();
    let interval = (seeds.len() >= 2).then(|| {
        let mut state = 0x6772_6f6b_u64;
        let mut slopes: Vec<f64> = (0..resamples)
            .filter_map(|_| {
                let sample: Vec<(f64, f64)> =
                    (0..seeds.len()).flat_map(|_| seeds[(splitmix(&mut state) % seeds.len() as u64) as usize].iter().copied()).collect();
                ols_slope(&sample)
            })
            .collect();
        slopes.sort_by(f64::total_cmp);
        let quantile = |q: f64| slopes[((slopes.len() - 1) as f64 * q).round() as usize];
        (!slopes.is_empty()).then(|| (quantile(0.025), quantile(0.975)))
    });
    Some(SlopeFit { axis, slope, interval: interval.flatten(), points: all.len(), seeds: seeds.len(), left_out })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(fraction: f64, decay: f64, seed: i64, class: &str, grokked_at: Option<i64>) -> TrialPoint {
        TrialPoint {
            axes: [("data_fraction", fraction), ("weight_decay", decay), ("seed", seed as f64), ("modulus", 59.0)].into_iter().collect(),
            names: [("optimizer", "adamw".to_string())].into_iter().collect(),
            seed,
            class: class.to_string(),
            grokked_at,
        }
    }

    #[test]
    fn a_power_law_gives_its_exponent_and_a_tight_interval() {
        // grokking step = 1000 · λ^-1 · (1 + 0.05 · seed): slope −1 in weight decay, whatever the seed.
        let points: Vec<TrialPoint> = [0.3, 1.0, 3.0]
            .into_iter()
            .flat_map(|decay| {
                (0..4).map(move |seed| point(0.3, decay, seed, "grokking", Some((1000.0 / decay * (1.0 + 0.05 * seed as f64)) as i64)))
            })
            .collect();
        let fit = grokking_slope(&points, "weight_decay", 500).expect("fits");
        assert!((fit.slope + 1.0).abs() < 0.01, "{fit:?}");
        let (low, high) = fit.interval.expect("four seeds");
        assert!(low <= fit.slope && fit.slope <= high && high - low < 0.05, "{fit:?}");
        assert_eq!((fit.points, fit.seeds, fit.left_out), (12, 4, 0));
        assert_eq!(varying_axes(&points), vec!["weight_decay"]);
        assert!(grokking_slope(&points, "data_fraction", 10).is_none(), "one value of the axis gives no slope");
    }

    #[test]
    fn trials_that_never_grokked_are_left_out_and_counted() {
        let points = vec![
            point(0.3, 1.0, 0, "grokking", Some(1000)),
            point(0.5, 1.0, 0, "grokking", Some(250)),
            point(0.7, 1.0, 0, "memorisation", None),
        ];
        let fit = grokking_slope(&points, "data_fraction", 100).expect("fits");
        assert!((fit.slope - (250f64 / 1000.0).ln() / (0.5f64 / 0.3).ln()).abs() < 1e-9);
        assert_eq!((fit.left_out, fit.interval), (1, None));
    }

    #[test]
    fn the_diagram_counts_classes_per_cell() {
        let points = vec![
            point(0.3, 1.0, 0, "grokking", Some(1000)),
            point(0.3, 1.0, 1, "memorisation", None),
            point(0.3, 3.0, 0, "grokking", Some(300)),
            point(0.5, 1.0, 0, "comprehension", Some(100)),
        ];
        let cells = phase_diagram(&points, "data_fraction", Some("weight_decay"));
        assert_eq!(
            cells[&("0.3".to_string(), "1".to_string())],
            [("grokking".to_string(), 1), ("memorisation".to_string(), 1)].into_iter().collect()
        );
        assert_eq!(cells.len(), 3);
        let text = render_diagram(&points, "data_fraction", Some("weight_decay"));
        assert!(text.contains("g1 m1") && text.contains("c1") && text.contains('.'), "{text}");
    }

    #[test]
    fn a_named_axis_is_swept_and_drawn_like_a_number() {
        let with = |optimizer: &str, seed: i64, class: &str| TrialPoint {
            names: [("optimizer", optimizer.to_string()), ("loss", "softmax".to_string())].into_iter().collect(),
            ..point(0.3, 1.0, seed, class, Some(100))
        };
        let points = vec![with("adamw", 0, "grokking"), with("adamw", 1, "grokking"), with("grokfast_ema", 0, "comprehension")];
        assert_eq!(varying_axes(&points), vec!["optimizer"], "loss takes one value, seeds never count");
        let cells = phase_diagram(&points, "optimizer", None);
        assert_eq!(cells[&("adamw".to_string(), "all".to_string())], [("grokking".to_string(), 2)].into_iter().collect());
        assert_eq!(cells[&("grokfast_ema".to_string(), "all".to_string())], [("comprehension".to_string(), 1)].into_iter().collect());
        assert!(grokking_slope(&points, "optimizer", 10).is_none(), "no slope against a named axis");
        assert!(is_axis("loss") && is_axis("lr") && !is_axis("colour"));
    }
}
