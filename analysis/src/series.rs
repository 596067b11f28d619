//! One trial's recorded series, as read back from `progress` and `curves`.

use std::collections::BTreeMap;

/// A scalar measure over training: (step, value), steps increasing.
pub type Series = Vec<(i64, f64)>;

/// A curve over sampling time at one step: (t, value).
pub type Curve = Vec<(f64, f64)>;

/// Everything recorded for one attempt of a trial.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TrialSeries {
    /// Scalar measures by name.
    pub scalars: BTreeMap<String, Series>,
    /// Curves by name, then by step.
    pub curves: BTreeMap<String, BTreeMap<i64, Curve>>,
}

impl TrialSeries {
    /// A measure's series, empty if it was never recorded.
    pub fn scalar(&self, name: &str) -> &[(i64, f64)] {
        self.scalars.get(name).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Add one scalar value (kept sorted by step; a repeated step keeps the last value).
    pub fn push_scalar(&mut self, name: &str, step: i64, value: f64) {
        let series = self.scalars.entry(name.to_string()).or_default();
        match series.binary_search_by_key(&step, |point| point.0) {
            Ok(index) => series[index].1 = value,
            Err(index) => series.insert(index, (step, value)),
        }
    }

    /// Add one point of a curve.
    pub fn push_curve_point(&mut self, name: &str, step: i64, t: f64, value: f64) {
        self.curves.entry(name.to_string()).or_default().entry(step).or_default().push((t, value));
    }

    /// The last step any scalar was recorded at.
    pub fn last_step(&self) -> Option<i64> {
        self.scalars.values().filter_map(|series| series.last().map(|point| point.0)).max()
    }
}

/// The first step at which `predicate` holds for the series' value.
pub fn first_step(series: &[(i64, f64)], predicate: impl Fn(f64) -> bool) -> Option<i64> {
    series.iter().find(|point| predicate(point.1)).map(|point| point.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars_stay_sorted_and_first_step_finds_the_first_crossing() {
        let mut series = TrialSeries::default();
        for (step, value) in [(200, 0.9), (0, 0.1), (100, 0.5), (100, 0.6)] {
            series.push_scalar("acc", step, value);
        }
        assert_eq!(series.scalar("acc"), &[(0, 0.1), (100, 0.6), (200, 0.9)]);
        assert_eq!(first_step(series.scalar("acc"), |value| value >= 0.6), Some(100));
        assert_eq!(first_step(series.scalar("acc"), |value| value > 0.95), None);
        assert_eq!(series.scalar("missing"), &[] as &[(i64, f64)]);
        assert_eq!(series.last_step(), Some(200));
    }
}
