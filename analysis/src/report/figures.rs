//! Figures as SVG text, drawn with `plotters`' SVG backend (no fonts, no
//! scripts: the text is SVG `<text>` that the browser sets).

use plotters::coord::Shift;
use plotters::coord::ranged1d::{AsRangedCoord, Ranged, ValueFormatter};
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::colors::colormaps::ViridisRGB;

use crate::{AnalysisError, Result};

/// Figure size in pixels.
const SIZE: (u32, u32) = (560, 300);

/// Series colours, in order.
pub const PALETTE: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(23, 190, 207),
];

/// One line of a chart.
#[derive(Debug, Clone)]
pub struct Line {
    /// Legend label.
    pub name: String,
    /// (x, y) points.
    pub points: Vec<(f64, f64)>,
}

/// A shaded x interval (a phase).
#[derive(Debug, Clone)]
pub struct Band {
    /// Start.
    pub from: f64,
    /// End.
    pub to: f64,
    /// Label, drawn at the top of the band.
    pub label: &'static str,
    /// Fill colour (drawn translucent).
    pub color: RGBColor,
}

fn drawing(error: impl std::fmt::Display) -> AnalysisError {
    AnalysisError::Unexpected(format!("drawing a figure failed: {error}"))
}

fn bounds(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    values.filter(|value| value.is_finite()).fold(None, |range, value| match range {
        None => Some((value, value)),
        Some((low, high)) => Some((low.min(value), high.max(value))),
    })
}

fn padded(low: f64, high: f64) -> (f64, f64) {
    if high > low {
        let margin = (high - low) * 0.05;
        (low - margin, high + margin)
    } else {
        (low - 0.5 - low.abs() * 0.1, high + 0.5 + high.abs() * 0.1)
    }
}

/// A tick label without float noise: three decimals at most, trailing zeros dropped.
fn tidy(value: f64) -> String {
    let text = format!("{value:.3}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" { "0".to_string() } else { text.to_string() }
}

/// A line chart; `log_y` draws y on a log scale (non-positive values are left out).
/// `None` when there is nothing to draw.
pub fn line_chart(
    title: &str,
    x_label: &str,
    lines: &[Line],
    log_y: bool,
    bands: &[Band],
    marks: &[(f64, &str)],
) -> Result<Option<String>> {
    let usable = |point: &&(f64, f64)| point.0.is_finite() && point.1.is_finite() && (!log_y || point.1 > 0.0);
    let lines: Vec<Line> = lines
        .iter()
        .map(|line| Line { name: line.name.clone(), points: line.points.iter().filter(usable).copied().collect() })
        .filter(|line| !line.points.is_empty())
        .collect();
    let Some((x_low, x_high)) = bounds(lines.iter().flat_map(|line| line.points.iter().map(|point| point.0))) else {
        return Ok(None);
    };
    let (y_low, y_high) = bounds(lines.iter().flat_map(|line| line.points.iter().map(|point| point.1))).expect("points exist");
    let x_range = if x_high > x_low { (x_low, x_high) } else { padded(x_low, x_high) };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(drawing)?;
        if log_y {
            let (low, high) = (y_low / 2.0, y_high * 2.0);
            let at = |fraction: f64| low * (high / low).powf(fraction);
            draw(&root, title, x_label, x_range, (low..high).log_scale(), (low, high), &at, &lines, bands, marks)?;
        } else {
            let (low, high) = padded(y_low, y_high);
            let at = |fraction: f64| low + (high - low) * fraction;
            draw(&root, title, x_label, x_range, low..high, (low, high), &at, &lines, bands, marks)?;
        }
        root.present().map_err(drawing)?;
    }
    Ok(Some(svg))
}

#[allow(clippy::too_many_arguments)]
fn draw<Y>(
    root: &DrawingArea<SVGBackend<'_>, Shift>,
    title: &str,
    x_label: &str,
    x_range: (f64, f64),
    y_spec: Y,
    (y_low, y_high): (f64, f64),
    at: &dyn Fn(f64) -> f64,
    lines: &[Line],
    bands: &[Band],
    marks: &[(f64, &str)],
) -> Result<()>
where
    Y: AsRangedCoord<Value = f64>,
    Y::CoordDescType: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let mut chart = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 16))
        .margin(8)
        .x_label_area_size(32)
        .y_label_area_size(56)
        .build_cartesian_2d::<RangedCoordf64, Y::CoordDescType>((x_range.0..x_range.1).into(), y_spec.into())
        .map_err(drawing)?;
    let wide = x_range.1 - x_range.0 > 20.0;
    let x_format = move |x: &f64| if wide { format!("{x:.0}") } else { format!("{x:.2}") };
    let y_format = |y: &f64| {
        let magnitude = y.abs();
        if magnitude != 0.0 && !(1e-2..1e4).contains(&magnitude) { format!("{y:.0e}") } else { tidy(*y) }
    };
    chart
        .configure_mesh()
        .x_desc(x_label)
        .x_label_formatter(&x_format)
        .y_label_formatter(&y_format)
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(drawing)?;
    for (index, band) in bands.iter().enumerate() {
        let (from, to) = (band.from.max(x_range.0), band.to.min(x_range.1));
        if to <= from {
            continue;
        }
        chart
            .draw_series(std::iter::once(Rectangle::new([(from, y_low), (to, y_high)], band.color.mix(0.18).filled())))
            .map_err(drawing)?;
        chart
            .draw_series(std::iter::once(Text::new(
                band.label,
                (from, at(0.99 - 0.06 * index as f64)),
                ("sans-serif", 11).into_font().color(&BLACK.mix(0.7)),
            )))
            .map_err(drawing)?;
    }
    for (x, label) in marks {
        chart.draw_series(LineSeries::new([(*x, y_low), (*x, y_high)], BLACK.mix(0.6).stroke_width(1))).map_err(drawing)?;
        chart.draw_series(std::iter::once(Text::new(label.to_string(), (*x, at(0.8)), ("sans-serif", 11).into_font()))).map_err(drawing)?;
    }
    for (index, line) in lines.iter().enumerate() {
        let color = PALETTE[index % PALETTE.len()];
        chart
            .draw_series(LineSeries::new(line.points.iter().copied(), color.stroke_width(2)))
            .map_err(drawing)?
            .label(line.name.clone())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], color.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(drawing)?;
    Ok(())
}

/// A heat map of `values[step][row]` (rows drawn bottom to top), colour by value.
pub fn heat_map(title: &str, x_label: &str, y_label: &str, steps: &[i64], values: &[Vec<f64>], first_row: i64) -> Result<Option<String>> {
    let rows = values.iter().map(Vec::len).max().unwrap_or(0);
    if steps.is_empty() || rows == 0 || steps.len() != values.len() {
        return Ok(None);
    }
    let (low, high) = bounds(values.iter().flatten().copied()).unwrap_or((0.0, 1.0));
    let span = if high > low { high - low } else { 1.0 };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(drawing)?;
        let width = if steps.len() > 1 { (steps[steps.len() - 1] - steps[0]) as f64 / (steps.len() - 1) as f64 } else { 1.0 };
        let x_range = (steps[0] as f64 - width / 2.0)..(steps[steps.len() - 1] as f64 + width / 2.0);
        let y_range = (first_row as f64 - 0.5)..(first_row as f64 + rows as f64 - 0.5);
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 16))
            .margin(8)
            .x_label_area_size(32)
            .y_label_area_size(44)
            .build_cartesian_2d(x_range, y_range)
            .map_err(drawing)?;
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc(x_label)
            .y_desc(y_label)
            .y_labels(rows.min(12))
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_label_formatter(&|y| format!("{y:.0}"))
            .draw()
            .map_err(drawing)?;
        let cells = steps.iter().zip(values).flat_map(|(&step, column)| {
            column.iter().enumerate().map(move |(row, &value)| {
                let x = step as f64;
                let y = first_row as f64 + row as f64;
                let color = ViridisRGB::get_color(((value - low) / span).clamp(0.0, 1.0) as f32);
                Rectangle::new([(x - width / 2.0, y - 0.5), (x + width / 2.0, y + 0.5)], color.filled())
            })
        });
        chart.draw_series(cells).map_err(drawing)?;
        root.present().map_err(drawing)?;
    }
    Ok(Some(svg))
}

/// Points on log-log axes (non-positive values left out).
pub fn log_log_scatter(title: &str, x_label: &str, y_label: &str, points: &[(f64, f64)]) -> Result<Option<String>> {
    let points: Vec<(f64, f64)> = points.iter().copied().filter(|point| point.0 > 0.0 && point.1 > 0.0).collect();
    let (Some((x_low, x_high)), Some((y_low, y_high))) = (bounds(points.iter().map(|p| p.0)), bounds(points.iter().map(|p| p.1))) else {
        return Ok(None);
    };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(drawing)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 16))
            .margin(8)
            .x_label_area_size(32)
            .y_label_area_size(56)
            .build_cartesian_2d((x_low / 1.5..x_high * 1.5).log_scale(), (y_low / 1.5..y_high * 1.5).log_scale())
            .map_err(drawing)?;
        chart
            .configure_mesh()
            .x_desc(x_label)
            .y_desc(y_label)
            .light_line_style(WHITE.mix(0.0))
            .x_label_formatter(&|x| format!("{x:.3}"))
            .y_label_formatter(&|y| format!("{y:.0}"))
            .draw()
            .map_err(drawing)?;
        chart.draw_series(points.iter().map(|&point| Circle::new(point, 4, PALETTE[0].filled()))).map_err(drawing)?;
        root.present().map_err(drawing)?;
    }
    Ok(Some(svg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_labels_carry_no_float_noise() {
        assert_eq!(tidy(0.8999999999), "0.9");
        assert_eq!(tidy(2400.0), "2400");
        assert_eq!(tidy(-0.0001), "0");
        assert_eq!(tidy(0.125), "0.125");
    }

    #[test]
    fn a_chart_is_svg_with_its_title_and_legend_and_nothing_gives_none() {
        let lines = [Line { name: "test loss".into(), points: vec![(0.0, 1.0), (10.0, 0.01), (20.0, 1e-5)] }];
        let bands = [Band { from: 0.0, to: 10.0, label: "memorisation", color: PALETTE[0] }];
        let svg = line_chart("loss", "epoch", &lines, true, &bands, &[]).expect("draws").expect("has data");
        assert!(svg.starts_with("<svg") && svg.contains("loss") && svg.contains("test loss") && svg.contains("memorisation"), "{svg}");
        let empty = [Line { name: "nothing".into(), points: vec![(0.0, -1.0)] }];
        assert!(line_chart("loss", "epoch", &empty, true, &[], &[]).expect("draws").is_none(), "no positive value on a log axis");
        let map = heat_map("W_E", "epoch", "k", &[0, 100], &[vec![0.0, 1.0], vec![1.0, 0.0]], 1).expect("draws").expect("has data");
        assert!(map.matches("<rect").count() >= 4, "four cells and the background");
        assert!(log_log_scatter("g", "x", "y", &[(0.3, 1000.0), (0.5, 300.0)]).expect("draws").is_some());
    }
}
