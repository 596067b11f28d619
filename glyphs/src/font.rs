//! A small stroke font for the ten digits. Each digit is a list of polylines
//! in a box 0.6 wide and 1 tall, y pointing down; numerals are laid out from
//! these boxes with [`DIGIT_GAP`] between them.

/// Width of one digit's box (its height is 1).
pub const DIGIT_WIDTH: f64 = 0.6;
/// Horizontal gap between the boxes of neighbouring digits.
pub const DIGIT_GAP: f64 = 0.14;

/// A polyline: consecutive points are joined by straight segments.
pub type Stroke = Vec<(f64, f64)>;

/// Points of an elliptical arc centred at `(cx, cy)`, angles in degrees
/// measured from +x towards +y (down), from `from` to `to`.
fn arc(cx: f64, cy: f64, rx: f64, ry: f64, from: f64, to: f64) -> Stroke {
    let steps = (((to - from).abs() / 10.0).ceil() as usize).max(2);
    (0..=steps)
        .map(|i| {
            let angle = (from + (to - from) * i as f64 / steps as f64).to_radians();
            (cx + rx * angle.cos(), cy + ry * angle.sin())
        })
        .collect()
}

/// Prepend a point to a stroke.
fn from_point(start: (f64, f64), mut stroke: Stroke) -> Stroke {
    stroke.insert(0, start);
    stroke
}

/// Append points to a stroke.
fn then(mut stroke: Stroke, points: &[(f64, f64)]) -> Stroke {
    stroke.extend_from_slice(points);
    stroke
}

/// The strokes of digit `digit` (0–9).
///
/// # Panics
/// If `digit > 9`.
pub fn digit_strokes(digit: u8) -> Vec<Stroke> {
    match digit {
        0 => vec![arc(0.3, 0.5, 0.27, 0.45, 0.0, 360.0)],
        1 => vec![vec![(0.1, 0.22), (0.32, 0.05), (0.32, 0.95)], vec![(0.12, 0.95), (0.52, 0.95)]],
        2 => vec![then(arc(0.3, 0.3, 0.26, 0.25, 180.0, 390.0), &[(0.04, 0.95), (0.58, 0.95)])],
        3 => vec![arc(0.3, 0.28, 0.24, 0.23, 200.0, 450.0), arc(0.3, 0.73, 0.27, 0.22, 270.0, 520.0)],
        4 => vec![vec![(0.45, 0.95), (0.45, 0.05), (0.03, 0.68), (0.58, 0.68)]],
        5 => vec![from_point((0.55, 0.05), from_point((0.13, 0.05), arc(0.3, 0.68, 0.26, 0.27, 225.0, 510.0)))],
        6 => vec![vec![(0.5, 0.06), (0.3, 0.13), (0.14, 0.3), (0.07, 0.52), (0.06, 0.7)], arc(0.32, 0.68, 0.26, 0.27, 0.0, 360.0)],
        7 => vec![vec![(0.04, 0.05), (0.58, 0.05), (0.25, 0.95)]],
        8 => vec![arc(0.3, 0.27, 0.22, 0.22, 0.0, 360.0), arc(0.3, 0.72, 0.27, 0.23, 0.0, 360.0)],
        9 => vec![arc(0.28, 0.32, 0.26, 0.27, 0.0, 360.0), vec![(0.54, 0.32), (0.53, 0.6), (0.42, 0.84), (0.16, 0.95)]],
        other => panic!("digit_strokes: {other} is not a digit"),
    }
}

/// The strokes of the decimal numeral of `value`, laid out left to right, and
/// the width of the numeral's box (its height is 1).
pub fn numeral_strokes(value: u32) -> (Vec<Stroke>, f64) {
    let digits: Vec<u8> = value.to_string().bytes().map(|byte| byte - b'0').collect();
    let mut strokes = Vec::new();
    for (position, &digit) in digits.iter().enumerate() {
        let offset = position as f64 * (DIGIT_WIDTH + DIGIT_GAP);
        for stroke in digit_strokes(digit) {
            strokes.push(stroke.into_iter().map(|(x, y)| (x + offset, y)).collect());
        }
    }
    let width = digits.len() as f64 * DIGIT_WIDTH + (digits.len() - 1) as f64 * DIGIT_GAP;
    (strokes, width)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_digit_stays_in_its_box() {
        for digit in 0..10 {
            for stroke in digit_strokes(digit) {
                assert!(stroke.len() >= 2);
                for (x, y) in stroke {
                    assert!((-0.01..=DIGIT_WIDTH + 0.01).contains(&x) && (-0.01..=1.01).contains(&y), "digit {digit}: ({x}, {y})");
                }
            }
        }
    }

    #[test]
    fn numerals_are_laid_out_side_by_side() {
        let (strokes, width) = numeral_strokes(107);
        assert!((width - (3.0 * DIGIT_WIDTH + 2.0 * DIGIT_GAP)).abs() < 1e-12);
        let max_x = strokes.iter().flatten().map(|p| p.0).fold(f64::MIN, f64::max);
        assert!(max_x > 2.0 * (DIGIT_WIDTH + DIGIT_GAP) && max_x <= width + 0.01);
    }
}
