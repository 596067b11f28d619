//! Figures drawn with `plotters`: as SVG text for the page (its text is SVG
//! `<text>` that the browser sets) or as PNG for papers (text set with the
//! Ubuntu Light font that `epaint_default_fonts` bundles, so nothing depends
//! on the fonts a machine has). A [`Figure`] holds what to draw; the
//! constructors return `None` when there is nothing to draw.

use std::sync::Once;

use plotters::coord::Shift;
use plotters::coord::ranged1d::{AsRangedCoord, Ranged, ValueFormatter};
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::colors::colormaps::ViridisRGB;

use crate::{AnalysisError, Result};

/// Figure size in pixels (PNG figures are drawn at twice this).
const SIZE: (u32, u32) = (560, 300);

/// The font plotters measures and sets text with, registered once.
fn register_font() {
    static FONT: Once = Once::new();
    FONT.call_once(|| {
        // The bytes are a valid TrueType font compiled into the binary.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, epaint_default_fonts::UBUNTU_LIGHT);
    });
}

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

/// What a figure shows, ready to draw on any backend.
#[derive(Debug, Clone)]
pub enum Figure {
    /// Lines over x, optionally on a log y axis, with shaded bands and vertical marks.
    Lines {
        /// Title.
        title: String,
        /// x-axis label.
        x_label: String,
        /// The lines (only drawable points kept).
        lines: Vec<Line>,
        /// Log-scale y.
        log_y: bool,
        /// Shaded intervals.
        bands: Vec<Band>,
        /// Vertical lines with labels.
        marks: Vec<(f64, String)>,
        /// x range.
        x_range: (f64, f64),
        /// y range (already padded).
        y_range: (f64, f64),
    },
    /// A heat map: one column of cells per step, one row per index.
    Heat {
        /// Title.
        title: String,
        /// x-axis label.
        x_label: String,
        /// y-axis label.
        y_label: String,
        /// Steps (columns).
        steps: Vec<i64>,
        /// values[step][row].
        values: Vec<Vec<f64>>,
        /// Label of row 0.
        first_row: i64,
    },
    /// Points on log-log axes.
    Scatter {
        /// Title.
        title: String,
        /// x-axis label.
        x_label: String,
        /// y-axis label.
        y_label: String,
        /// Points (positive).
        points: Vec<(f64, f64)>,
    },
}

/// A line chart; `log_y` draws y on a log scale (non-positive values are left out).
pub fn line_chart(title: &str, x_label: &str, lines: &[Line], log_y: bool, bands: &[Band], marks: &[(f64, &str)]) -> Option<Figure> {
    let usable = |point: &&(f64, f64)| point.0.is_finite() && point.1.is_finite() && (!log_y || point.1 > 0.0);
    let lines: Vec<Line> = lines
        .iter()
        .map(|line| Line { name: line.name.clone(), points: line.points.iter().filter(usable).copied().collect() })
        .filter(|line| !line.points.is_empty())
        .collect();
    let (x_low, x_high) = bounds(lines.iter().flat_map(|line| line.points.iter().map(|point| point.0)))?;
    let (y_low, y_high) = bounds(lines.iter().flat_map(|line| line.points.iter().map(|point| point.1)))?;
    let x_range = if x_high > x_low { (x_low, x_high) } else { padded(x_low, x_high) };
    let y_range = if log_y { (y_low / 2.0, y_high * 2.0) } else { padded(y_low, y_high) };
    Some(Figure::Lines {
        title: title.to_string(),
        x_label: x_label.to_string(),
        lines,
        log_y,
        bands: bands.to_vec(),
        marks: marks.iter().map(|(x, label)| (*x, label.to_string())).collect(),
        x_range,
        y_range,
    })
}

/// A heat map of `values[step][row]` (rows drawn bottom to top), colour by value.
pub fn heat_map(title: &str, x_label: &str, y_label: &str, steps: &[i64], values: &[Vec<f64>], first_row: i64) -> Option<Figure> {
    let rows = values.iter().map(Vec::len).max().unwrap_or(0);
    if steps.is_empty() || rows == 0 || steps.len() != values.len() {
        return None;
    }
    Some(Figure::Heat {
        title: title.to_string(),
        x_label: x_label.to_string(),
        y_label: y_label.to_string(),
        steps: steps.to_vec(),
        values: values.to_vec(),
        first_row,
    })
}

/// Points on log-log axes (non-positive values left out).
pub fn log_log_scatter(title: &str, x_label: &str, y_label: &str, points: &[(f64, f64)]) -> Option<Figure> {
    let points: Vec<(f64, f64)> = points.iter().copied().filter(|point| point.0 > 0.0 && point.1 > 0.0).collect();
    if points.is_empty() {
        return None;
    }
    Some(Figure::Scatter { title: title.to_string(), x_label: x_label.to_string(), y_label: y_label.to_string(), points })
}

impl Figure {
    /// The figure as an SVG document.
    pub fn svg(&self) -> Result<String> {
        register_font();
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
            self.paint(&root)?;
            root.present().map_err(drawing)?;
        }
        Ok(svg)
    }

    /// The figure as a PNG file, at twice the page's size.
    pub fn png(&self) -> Result<Vec<u8>> {
        register_font();
        let (width, height) = (SIZE.0 * 2, SIZE.1 * 2);
        let mut pixels = vec![0u8; (width * height * 3) as usize];
        {
            let root = BitMapBackend::with_buffer(&mut pixels, (width, height)).into_drawing_area();
            let scaled = root.clone();
            self.paint(&scaled)?;
            root.present().map_err(drawing)?;
        }
        let mut bytes = Vec::new();
        {
            let mut encoder = png::Encoder::new(&mut bytes, width, height);
            encoder.set_color(png::ColorType::Rgb);
            encoder.set_depth(png::BitDepth::Eight);
            let mut writer = encoder.write_header().map_err(drawing)?;
            writer.write_image_data(&pixels).map_err(drawing)?;
        }
        Ok(bytes)
    }

    fn paint<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()> {
        root.fill(&WHITE).map_err(drawing)?;
        let scale = f64::from(root.dim_in_pixel().0) / f64::from(SIZE.0);
        let px = |size: f64| (size * scale).round() as u32;
        match self {
            Figure::Lines { title, x_label, lines, log_y, bands, marks, x_range, y_range } => {
                let (low, high) = *y_range;
                if *log_y {
                    let at = |fraction: f64| low * (high / low).powf(fraction);
                    draw(root, scale, title, x_label, *x_range, (low..high).log_scale(), *y_range, &at, lines, bands, marks)
                } else {
                    let at = |fraction: f64| low + (high - low) * fraction;
                    draw(root, scale, title, x_label, *x_range, low..high, *y_range, &at, lines, bands, marks)
                }
            }
            Figure::Heat { title, x_label, y_label, steps, values, first_row } => {
                let rows = values.iter().map(Vec::len).max().unwrap_or(0);
                let (low, high) = bounds(values.iter().flatten().copied()).unwrap_or((0.0, 1.0));
                let span = if high > low { high - low } else { 1.0 };
                let width = if steps.len() > 1 { (steps[steps.len() - 1] - steps[0]) as f64 / (steps.len() - 1) as f64 } else { 1.0 };
                let x_range = (steps[0] as f64 - width / 2.0)..(steps[steps.len() - 1] as f64 + width / 2.0);
                let y_range = (*first_row as f64 - 0.5)..(*first_row as f64 + rows as f64 - 0.5);
                let mut chart = frame(root, title, scale, 44.0).build_cartesian_2d(x_range, y_range).map_err(drawing)?;
                chart
                    .configure_mesh()
                    .disable_mesh()
                    .x_desc(x_label)
                    .y_desc(y_label)
                    .label_style(("sans-serif", px(12.0)))
                    .y_labels(rows.min(12))
                    .x_label_formatter(&|x| format!("{x:.0}"))
                    .y_label_formatter(&|y| format!("{y:.0}"))
                    .draw()
                    .map_err(drawing)?;
                let cells = steps.iter().zip(values).flat_map(|(&step, column)| {
                    column.iter().enumerate().map(move |(row, &value)| {
                        let x = step as f64;
                        let y = *first_row as f64 + row as f64;
                        let color = ViridisRGB::get_color(((value - low) / span).clamp(0.0, 1.0) as f32);
                        Rectangle::new([(x - width / 2.0, y - 0.5), (x + width / 2.0, y + 0.5)], color.filled())
                    })
                });
                chart.draw_series(cells).map_err(drawing)?;
                Ok(())
            }
            Figure::Scatter { title, x_label, y_label, points } => {
                let (x_low, x_high) = bounds(points.iter().map(|p| p.0)).expect("a scatter has points");
                let (y_low, y_high) = bounds(points.iter().map(|p| p.1)).expect("a scatter has points");
                let mut chart = frame(root, title, scale, 56.0)
                    .build_cartesian_2d((x_low / 1.5..x_high * 1.5).log_scale(), (y_low / 1.5..y_high * 1.5).log_scale())
                    .map_err(drawing)?;
                chart
                    .configure_mesh()
                    .x_desc(x_label)
                    .y_desc(y_label)
                    .label_style(("sans-serif", px(12.0)))
                    .light_line_style(WHITE.mix(0.0))
                    .x_label_formatter(&|x| format!("{x:.3}"))
                    .y_label_formatter(&|y| format!("{y:.0}"))
                    .draw()
                    .map_err(drawing)?;
                chart.draw_series(points.iter().map(|&point| Circle::new(point, px(4.0), PALETTE[0].filled()))).map_err(drawing)?;
                Ok(())
            }
        }
    }
}

/// A chart's frame: title, margin and label areas, scaled to the backend's size.
fn frame<'a, 'b, DB: DrawingBackend>(
    root: &'a DrawingArea<DB, Shift>,
    title: &'b str,
    scale: f64,
    y_label_area: f64,
) -> ChartBuilder<'a, 'b, DB> {
    let px = |size: f64| (size * scale).round() as u32;
    let mut builder = ChartBuilder::on(root);
    builder.caption(title, ("sans-serif", px(16.0))).margin(px(8.0)).x_label_area_size(px(32.0)).y_label_area_size(px(y_label_area));
    builder
}

#[allow(clippy::too_many_arguments)]
fn draw<DB: DrawingBackend, Y>(
    root: &DrawingArea<DB, Shift>,
    scale: f64,
    title: &str,
    x_label: &str,
    x_range: (f64, f64),
    y_spec: Y,
    (y_low, y_high): (f64, f64),
    at: &dyn Fn(f64) -> f64,
    lines: &[Line],
    bands: &[Band],
    marks: &[(f64, String)],
) -> Result<()>
where
    Y: AsRangedCoord<Value = f64>,
    Y::CoordDescType: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let px = |size: f64| (size * scale).round() as u32;
    let mut chart = frame(root, title, scale, 56.0)
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
        .label_style(("sans-serif", px(12.0)))
        .x_label_formatter(&x_format)
        .y_label_formatter(&y_format)
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(drawing)?;
    let small = ("sans-serif", px(11.0));
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
                small.into_font().color(&BLACK.mix(0.7)),
            )))
            .map_err(drawing)?;
    }
    for (x, label) in marks {
        chart.draw_series(LineSeries::new([(*x, y_low), (*x, y_high)], BLACK.mix(0.6).stroke_width(px(1.0)))).map_err(drawing)?;
        chart.draw_series(std::iter::once(Text::new(label.clone(), (*x, at(0.8)), small.into_font()))).map_err(drawing)?;
    }
    let stroke = px(2.0);
    for (index, line) in lines.iter().enumerate() {
        let color = PALETTE[index % PALETTE.len()];
        let legend = px(16.0) as i32;
        chart
            .draw_series(LineSeries::new(line.points.iter().copied(), color.stroke_width(stroke)))
            .map_err(drawing)?
            .label(line.name.clone())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + legend, y)], color.stroke_width(stroke)));
    }
    chart
        .configure_series_labels()
        .label_font(("sans-serif", px(12.0)))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(drawing)?;
    Ok(())
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
        let svg = line_chart("loss", "epoch", &lines, true, &bands, &[]).expect("has data").svg().expect("draws");
        assert!(svg.starts_with("<svg") && svg.contains("loss") && svg.contains("test loss") && svg.contains("memorisation"), "{svg}");
        let empty = [Line { name: "nothing".into(), points: vec![(0.0, -1.0)] }];
        assert!(line_chart("loss", "epoch", &empty, true, &[], &[]).is_none(), "no positive value on a log axis");
        let map = heat_map("W_E", "epoch", "k", &[0, 100], &[vec![0.0, 1.0], vec![1.0, 0.0]], 1).expect("has data").svg().expect("draws");
        assert!(map.matches("<rect").count() >= 4, "four cells and the background");
        assert!(log_log_scatter("g", "x", "y", &[(0.3, 1000.0), (0.5, 300.0)]).is_some());
        assert!(log_log_scatter("g", "x", "y", &[(0.0, 1000.0)]).is_none());
    }

    #[test]
    fn a_png_figure_is_a_png_with_text_and_ink() {
        let lines = [Line { name: "train".into(), points: vec![(0.0, 0.1), (10.0, 1.0)] }];
        let figure = line_chart("accuracy", "epoch", &lines, false, &[], &[(5.0, "grokked")]).expect("has data");
        let bytes = figure.png().expect("draws");
        let decoder = png::Decoder::new(std::io::Cursor::new(&bytes));
        let mut reader = decoder.read_info().expect("a PNG header");
        let mut pixels = vec![0; reader.output_buffer_size().expect("a size")];
        let info = reader.next_frame(&mut pixels).expect("a frame");
        assert_eq!((info.width, info.height), (SIZE.0 * 2, SIZE.1 * 2));
        let dark = pixels.chunks(3).filter(|pixel| pixel.iter().all(|&value| value < 100)).count();
        assert!(dark > 500, "axes, ticks and text are drawn: {dark} dark pixels");
    }
}
