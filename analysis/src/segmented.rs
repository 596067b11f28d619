//! Segmented (piecewise-linear) least-squares regression, exact by dynamic
//! programming.
//!
//! The phase boundaries of a grokking run are changes of *slope* of a log-scaled
//! series (log test loss creeps down through circuit formation, falls by
//! decades in cleanup and flattens after it), not changes of level. The `pelt`
//! crate's costs (L1 / L2 around a segment's mean) model piecewise-constant
//! signals and would cut a steady slope into many steps, so this fits a line
//! per segment instead: the cost of a segment is the residual sum of squares of
//! its own least-squares line, read in O(1) from prefix sums, and the best
//! split into `k` segments is found exactly in O(k·n²).

/// One fitted segment: points `start..end` (indices into the input, end exclusive).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Segment {
    /// First point.
    pub start: usize,
    /// One past the last point.
    pub end: usize,
    /// Slope of the segment's line (units of y per unit of x).
    pub slope: f64,
    /// Residual sum of squares of the segment's line.
    pub residual: f64,
}

/// A fit into a number of segments.
#[derive(Debug, Clone, PartialEq)]
pub struct Fit {
    /// The segments, in order, covering every point.
    pub segments: Vec<Segment>,
    /// Total residual sum of squares.
    pub residual: f64,
}

impl Fit {
    /// Bayesian information criterion of the fit with Gaussian residuals: each
    /// segment costs three parameters (intercept, slope, where it starts).
    pub fn bic(&self, points: usize) -> f64 {
        let n = points as f64;
        // A perfect fit would give ln 0; a tiny floor keeps the comparison finite.
        let variance = (self.residual / n).max(1e-300);
        n * variance.ln() + 3.0 * self.segments.len() as f64 * n.ln()
    }
}

/// Prefix sums of x, y, x², xy, y² (x centred to keep them well conditioned).
struct Sums {
    x: Vec<f64>,
    y: Vec<f64>,
    xx: Vec<f64>,
    xy: Vec<f64>,
    yy: Vec<f64>,
}

impl Sums {
    fn new(xs: &[f64], ys: &[f64]) -> Self {
        let mean = xs.iter().sum::<f64>() / xs.len().max(1) as f64;
        let n = xs.len();
        let mut sums = Sums { x: vec![0.0; n + 1], y: vec![0.0; n + 1], xx: vec![0.0; n + 1], xy: vec![0.0; n + 1], yy: vec![0.0; n + 1] };
        for (i, (&x, &y)) in xs.iter().zip(ys).enumerate() {
            let x = x - mean;
            sums.x[i + 1] = sums.x[i] + x;
            sums.y[i + 1] = sums.y[i] + y;
            sums.xx[i + 1] = sums.xx[i] + x * x;
            sums.xy[i + 1] = sums.xy[i] + x * y;
            sums.yy[i + 1] = sums.yy[i] + y * y;
        }
        sums
    }

    /// Slope and residual sum of squares of the least-squares line through points `a..b`.
    fn line(&self, a: usize, b: usize) -> (f64, f64) {
        let n = (b - a) as f64;
        let sx = self.x[b] - self.x[a];
        let sy = self.y[b] - self.y[a];
        let sxx = self.xx[b] - self.xx[a] - sx * sx / n;
        let sxy = self.xy[b] - self.xy[a] - sx * sy / n;
        let syy = self.yy[b] - self.yy[a] - sy * sy / n;
        if sxx <= 0.0 {
            return (0.0, syy.max(0.0));
        }
        let slope = sxy / sxx;
        (slope, (syy - slope * sxy).max(0.0))
    }
}

/// The best fit of `ys` against `xs` into exactly `segments` segments of at
/// least `min_points` points each, or `None` when there are too few points.
///
/// `xs` must be increasing.
pub fn fit(xs: &[f64], ys: &[f64], segments: usize, min_points: usize) -> Option<Fit> {
    let n = xs.len();
    let min_points = min_points.max(2);
    if segments == 0 || ys.len() != n || n < segments * min_points {
        return None;
    }
    debug_assert!(xs.windows(2).all(|pair| pair[0] < pair[1]), "xs must increase");
    let sums = Sums::new(xs, ys);
    // cost[j][i]: best residual of the first i points in j + 1 segments; from[j][i]: where the last one starts.
    let mut cost = vec![vec![f64::INFINITY; n + 1]; segments];
    let mut from = vec![vec![0usize; n + 1]; segments];
    for (i, cell) in cost[0].iter_mut().enumerate().skip(min_points) {
        *cell = sums.line(0, i).1;
    }
    for j in 1..segments {
        for i in (j + 1) * min_points..=n {
            for start in j * min_points..=i - min_points {
                let candidate = cost[j - 1][start] + sums.line(start, i).1;
                if candidate < cost[j][i] {
                    cost[j][i] = candidate;
                    from[j][i] = start;
                }
            }
        }
    }
    let mut bounds = vec![n];
    let mut end = n;
    for j in (1..segments).rev() {
        end = from[j][end];
        bounds.push(end);
    }
    bounds.push(0);
    bounds.reverse();
    let segments: Vec<Segment> = bounds
        .windows(2)
        .map(|pair| {
            let (slope, residual) = sums.line(pair[0], pair[1]);
            Segment { start: pair[0], end: pair[1], slope, residual }
        })
        .collect();
    let residual = segments.iter().map(|segment| segment.residual).sum();
    Some(Fit { segments, residual })
}

/// The fit with 1 to `max_segments` segments that has the lowest BIC.
pub fn best_fit(xs: &[f64], ys: &[f64], max_segments: usize, min_points: usize) -> Option<Fit> {
    (1..=max_segments).filter_map(|k| fit(xs, ys, k, min_points)).min_by(|a, b| a.bic(xs.len()).total_cmp(&b.bic(xs.len())))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic ±amplitude noise (no RNG dependency in the tests).
    fn noise(i: usize, amplitude: f64) -> f64 {
        let h = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11;
        (h as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) * amplitude
    }

    #[test]
    fn a_line_is_one_segment_with_its_slope_and_no_residual() {
        let xs: Vec<f64> = (0..20).map(f64::from).collect();
        let ys: Vec<f64> = xs.iter().map(|x| 3.0 - 0.5 * x).collect();
        let one = fit(&xs, &ys, 1, 2).expect("fits");
        assert_eq!(one.segments.len(), 1);
        assert!((one.segments[0].slope + 0.5).abs() < 1e-12);
        assert!(one.residual < 1e-18);
        assert_eq!(best_fit(&xs, &ys, 3, 3).expect("fits").segments.len(), 1, "BIC does not pay for segments a line does not need");
    }

    #[test]
    fn three_noisy_pieces_are_found_where_they_were_built() {
        // Flat at 1 to x = 40, falling by 0.2 per unit to x = 70, flat after: breaks at 40 and 70.
        let xs: Vec<f64> = (0..100).map(f64::from).collect();
        let ys: Vec<f64> = xs
            .iter()
            .enumerate()
            .map(|(i, &x)| {
                let clean = if x < 40.0 {
                    1.0
                } else if x < 70.0 {
                    1.0 - 0.2 * (x - 40.0)
                } else {
                    -5.0
                };
                clean + noise(i, 0.05)
            })
            .collect();
        let fit = best_fit(&xs, &ys, 4, 3).expect("fits");
        let starts: Vec<usize> = fit.segments.iter().map(|segment| segment.start).collect();
        assert_eq!(fit.segments.len(), 3, "{fit:?}");
        assert!(starts[1].abs_diff(40) <= 1 && starts[2].abs_diff(70) <= 1, "{starts:?}");
        assert!((fit.segments[1].slope + 0.2).abs() < 0.01);
    }

    #[test]
    fn too_few_points_give_no_fit() {
        assert!(fit(&[0.0, 1.0, 2.0], &[0.0, 1.0, 2.0], 2, 2).is_none());
        assert!(fit(&[0.0, 1.0], &[0.0], 1, 2).is_none());
        assert!(fit(&[0.0, 1.0, 2.0, 3.0], &[0.0, 1.0, 0.0, 1.0], 2, 2).is_some());
    }
}
