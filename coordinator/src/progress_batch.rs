//! How buffered progress is held in the store: one row per report and
//! measure shape (a *batch*), its steps encoded as MessagePack, rather than
//! one SQLite row (and index entry) per value. A report of 41 evaluations of
//! 12 measures is one insert instead of 492, and a flush reads a few blobs
//! back per trial instead of hundreds of rows (bench/RESULTS.md, session 15).
//!
//! The encoding is `rmp-serde`'s compact form of [`StepMeasures`] (structs as
//! arrays), already in the build through burn. A batch lives from a report to
//! the next flush (seconds); a change to `StepMeasures` that would make a
//! stored batch unreadable needs a step in `migrate`.

use std::collections::BTreeMap;

use rusqlite::{Connection, params};
use sweep_core::{Measure, MeasureKind, MeasureValue, StepMeasures};

use crate::domain::BufferedRow;
use crate::error::{CoordinatorError, Result};
use crate::store::{BufferedAttempt, PendingAttempt};

/// The steps of one shape, ready to store, with each measure's last step.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Batch {
    /// The shape of every measure in it.
    pub(crate) kind: MeasureKind,
    /// Steps in the order they came, holding only measures of `kind`.
    pub(crate) steps: Vec<StepMeasures>,
}

impl Batch {
    /// The encoded steps, for the `steps` column.
    pub(crate) fn encode(&self) -> Result<Vec<u8>> {
        rmp_serde::to_vec(&self.steps).map_err(|error| CoordinatorError::Internal(format!("cannot encode a progress batch: {error}")))
    }

    /// Each measure's last step in the batch, encoded for the `through` column
    /// (what a flush of this batch has written, by measure).
    pub(crate) fn encode_through(&self) -> Result<Vec<u8>> {
        let mut through: BTreeMap<&str, i64> = BTreeMap::new();
        for step in &self.steps {
            for measure in &step.measures {
                let last = through.entry(measure.name.as_str()).or_insert(step.step);
                *last = (*last).max(step.step);
            }
        }
        rmp_serde::to_vec(&through).map_err(|error| CoordinatorError::Internal(format!("cannot encode a progress batch: {error}")))
    }

    /// How many values (progress rows) the batch holds.
    pub(crate) fn rows(&self) -> usize {
        self.steps.iter().flat_map(|step| &step.measures).map(|measure| values(&measure.value)).sum()
    }
}

/// How many rows one measure's value makes.
fn values(value: &MeasureValue) -> usize {
    match value {
        MeasureValue::Scalar(_) => 1,
        MeasureValue::Spectrum(values) => values.len(),
        MeasureValue::Curve(points) => points.len(),
    }
}

/// A blob column of a result row.
pub(crate) fn blob<'r>(row: &'r rusqlite::Row<'_>, index: usize) -> Result<&'r [u8]> {
    Ok(row.get_ref(index)?.as_blob().map_err(rusqlite::Error::from)?)
}

/// The steps of a `steps` column.
pub(crate) fn decode(bytes: &[u8]) -> Result<Vec<StepMeasures>> {
    rmp_serde::from_slice(bytes).map_err(|error| CoordinatorError::Internal(format!("a stored progress batch is unreadable: {error}")))
}

/// Each measure's last step, from a `through` column.
pub(crate) fn decode_through(bytes: &[u8]) -> Result<Vec<(String, i64)>> {
    let through: BTreeMap<String, i64> = rmp_serde::from_slice(bytes)
        .map_err(|error| CoordinatorError::Internal(format!("a stored progress batch is unreadable: {error}")))?;
    Ok(through.into_iter().collect())
}

/// Split steps into one batch per shape (in [`MeasureKind::ALL`] order),
/// keeping each step's time; a step with no measure of a shape is left out of
/// that shape's batch.
pub(crate) fn by_kind(steps: Vec<(i64, i64, Vec<Measure>)>) -> Vec<Batch> {
    let mut batches: Vec<Batch> = MeasureKind::ALL.into_iter().map(|kind| Batch { kind, steps: Vec::new() }).collect();
    for (step, wall_time_ms, measures) in steps {
        let mut split: [Vec<Measure>; 3] = Default::default();
        for measure in measures {
            let index = MeasureKind::ALL.iter().position(|kind| *kind == measure.value.kind()).expect("ALL holds every kind");
            split[index].push(measure);
        }
        for (batch, measures) in batches.iter_mut().zip(split) {
            if !measures.is_empty() {
                batch.steps.push(StepMeasures { step, wall_time_ms, measures });
            }
        }
    }
    batches.retain(|batch| !batch.steps.is_empty());
    batches
}

/// The rows of decoded steps, appended to `rows`.
pub(crate) fn explode_into(steps: &[StepMeasures], rows: &mut Vec<BufferedRow>) {
    for step in steps {
        BufferedRow::explode_into(step, rows);
    }
}

/// Rows in the order a flush writes them: by step, measure, then key.
pub(crate) fn sort_rows(rows: &mut [BufferedRow]) {
    rows.sort_by(|a, b| a.step.cmp(&b.step).then_with(|| a.measure.cmp(&b.measure)).then_with(|| a.key.total_cmp(&b.key)));
}

/// The rows of a pending attempt's batches that are still buffered (those
/// with ids in its range; another flush may have written some meanwhile),
/// in the order a flush writes them, with the range of ids read.
pub(crate) fn read_attempt(conn: &Connection, pending: &PendingAttempt) -> Result<BufferedAttempt> {
    let mut statement = conn.prepare_cached(
        "SELECT batch_id, steps FROM progress_batches
         WHERE trial_key = (SELECT key FROM trials WHERE trial_id = ?1) AND attempt = ?2 AND batch_id BETWEEN ?3 AND ?4
         ORDER BY batch_id",
    )?;
    let mut batches = statement.query(params![pending.trial_id.as_str(), pending.attempt, pending.first_row_id, pending.last_row_id])?;
    let (mut rows, mut ids) = (Vec::new(), None);
    while let Some(batch) = batches.next()? {
        let id: i64 = batch.get(0)?;
        let (first, _) = ids.get_or_insert((id, id));
        ids = Some((*first, id));
        explode_into(&decode(blob(batch, 1)?)?, &mut rows);
    }
    sort_rows(&mut rows);
    let (first_row_id, last_row_id) = ids.unwrap_or((pending.first_row_id, pending.last_row_id));
    Ok(BufferedAttempt {
        sweep: pending.sweep.clone(),
        trial_id: pending.trial_id.clone(),
        attempt: pending.attempt,
        rows,
        first_row_id,
        last_row_id,
    })
}

#[cfg(test)]
mod tests {
    use sweep_core::CurvePoint;

    use super::*;

    fn measures() -> Vec<Measure> {
        vec![
            Measure::scalar("train_loss", 0.1 + 0.2),
            Measure::spectrum("W_E", vec![1.5, f64::MIN_POSITIVE, -0.0]),
            Measure::curve("decision_accuracy_test", vec![CurvePoint { t: 1.0, value: 0.25 }, CurvePoint { t: 0.5, value: 1e-300 }]),
            Measure::scalar("test_loss", f64::INFINITY),
        ]
    }

    #[test]
    fn a_batch_splits_by_shape_and_decodes_to_the_same_bits() {
        let batches =
            by_kind(vec![(100, 1_700_000_000_123, measures()), (200, 1_700_000_000_456, vec![Measure::scalar("train_loss", 0.5)])]);
        assert_eq!(batches.iter().map(|batch| batch.kind).collect::<Vec<_>>(), MeasureKind::ALL.to_vec());
        let scalars = &batches[0];
        assert_eq!(scalars.steps.len(), 2);
        assert_eq!(scalars.steps[0].measures.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(), ["train_loss", "test_loss"]);
        assert_eq!(scalars.rows(), 3);
        assert_eq!((batches[1].rows(), batches[2].rows()), (3, 2));
        for batch in &batches {
            let decoded = decode(&batch.encode().expect("encodes")).expect("decodes");
            assert_eq!(decoded, batch.steps);
            for (a, b) in decoded.iter().flat_map(|s| &s.measures).zip(batch.steps.iter().flat_map(|s| &s.measures)) {
                assert_eq!(format!("{:?}", a.value), format!("{:?}", b.value), "-0.0 and subnormals keep their bits");
            }
        }
        assert_eq!(
            decode_through(&scalars.encode_through().expect("encodes")).expect("decodes"),
            vec![("test_loss".to_string(), 100), ("train_loss".to_string(), 200)]
        );
    }

    #[test]
    fn rows_come_out_by_step_measure_and_key() {
        let batches = by_kind(vec![(200, 7, measures()), (100, 5, measures())]);
        let mut rows = Vec::new();
        for batch in &batches {
            explode_into(&batch.steps, &mut rows);
        }
        sort_rows(&mut rows);
        let order: Vec<(i64, &str, f64)> = rows.iter().map(|row| (row.step, row.measure.as_str(), row.key)).collect();
        let one_step = |step| {
            vec![
                (step, "W_E", 0.0),
                (step, "W_E", 1.0),
                (step, "W_E", 2.0),
                (step, "decision_accuracy_test", 0.5),
                (step, "decision_accuracy_test", 1.0),
                (step, "test_loss", 0.0),
                (step, "train_loss", 0.0),
            ]
        };
        assert_eq!(order, [one_step(100), one_step(200)].concat());
        assert_eq!(rows.iter().find(|row| row.step == 100).map(|row| row.wall_time_ms), Some(5));
    }

    #[test]
    fn a_damaged_batch_is_an_error_not_a_panic() {
        assert!(matches!(decode(b"\xc1not msgpack"), Err(CoordinatorError::Internal(_))));
        assert!(matches!(decode_through(b""), Err(CoordinatorError::Internal(_))));
    }
}
