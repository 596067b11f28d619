//! The lr, init_scale, optimizer and loss axes from YAML to Parquet: every
//! point of the grid reaches the worker through its lease, trains, and lands
//! in `trials` as typed columns; the final checkpoints carry the loss, so
//! they reproduce each trial's own final test loss.

use std::collections::BTreeSet;
use std::time::Duration;

use arrow_array::Array;
use arrow_array::cast::AsArray;
use arrow_array::types::Float64Type;

use crate::fixture::{InProcessCoordinator, InProcessWorker, client, fast_config, fixture_spec, submit, wait_for_sweep};
use crate::results::{check_final_checkpoints, read_batches};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_later_axes_reach_the_worker_and_the_trials_table() {
    let data = tempfile::tempdir().expect("tempdir");
    let coordinator = InProcessCoordinator::start(fast_config(data.path())).await;
    let mut client = client(&coordinator.address, None);
    let submitted = submit(&mut client, &fixture_spec("knobs.yaml")).await;
    assert_eq!(submitted.trials_total, 2 * 4 * 2);
    let worker = InProcessWorker::start(&coordinator.address, data.path(), "knobs", 4);
    let status = wait_for_sweep(&mut client, "knobs", Duration::from_secs(300), |s| s.finished).await;
    assert!(status.trials.iter().all(|t| t.status == "done" && t.epoch == Some(30)), "{status:#?}");
    worker.stop().await;
    coordinator.stop().await;

    let sweep_dir = data.path().join("results/knobs");
    let batches = read_batches(&sweep_dir.join("trials"));
    let schema = batches[0].schema();
    for (column, kind) in [("lr", "Float64"), ("init_scale", "Float64"), ("optimizer", "Utf8"), ("loss", "Utf8")] {
        assert_eq!(schema.field_with_name(column).expect(column).data_type().to_string(), kind, "{column}");
    }
    let mut points = BTreeSet::new();
    let mut losses = Vec::new();
    for batch in &batches {
        let column = |name: &str| batch.column_by_name(name).unwrap_or_else(|| panic!("{name}"));
        let (lr, scale) = (column("lr").as_primitive::<Float64Type>(), column("init_scale").as_primitive::<Float64Type>());
        let (optimizer, loss) = (column("optimizer").as_string::<i32>(), column("loss").as_string::<i32>());
        let final_loss = column("final_train_loss").as_primitive::<Float64Type>();
        for row in 0..batch.num_rows() {
            assert_eq!(scale.value(row), 2.0);
            assert!(!final_loss.is_null(row) && final_loss.value(row).is_finite());
            points.insert((lr.value(row).to_string(), optimizer.value(row).to_string(), loss.value(row).to_string()));
            losses.push(final_loss.value(row).to_bits());
        }
    }
    let mut expected = BTreeSet::new();
    for lr in ["0.01", "0.003"] {
        for optimizer in ["adamw", "grokfast_ema", "grokfast_ma", "orthograd"] {
            for loss in ["softmax", "stablemax"] {
                expected.insert((lr.to_string(), optimizer.to_string(), loss.to_string()));
            }
        }
    }
    assert_eq!(points, expected, "every grid point once, the sweep's own lr included");
    losses.sort_unstable();
    losses.dedup();
    assert_eq!(losses.len(), 16, "each setting trained differently");
    check_final_checkpoints(&sweep_dir);
}
