//! A results directory of the size issue 14 reads, written by the real
//! coordinator (in-process, without gRPC): `trials` trials (default 1,000) of
//! `epochs` epochs (default 40,000) evaluated every `eval_every` (default
//! 100), 12 transformer measures per evaluation, reported in `rolls` rolls
//! (default 10) with a flush after each, as a long sweep leaves them.
//!
//! `cargo run --release -p groksweep-bench --bin synthetic-results -- DATA_DIR [trials] [epochs] [eval_every] [rolls]`
//!
//! It stops twice: once every row is in rolled files (the results are copied
//! to `DATA_DIR-rolled/results`, as a running sweep's), and once every trial
//! is done and compacted (`DATA_DIR/results`). Trial i's test accuracy is a
//! logistic step around epoch 2,000 + (7,919 i mod 30,000), so "the first
//! evaluation with test accuracy ≥ 0.95" has one answer per trial.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use groksweep_bench::synthetic::{evaluation, test_accuracy};
use sweep_coordinator::domain::LeaseAsk;
use sweep_coordinator::{Clock, Coordinator, CoordinatorConfig, SystemClock};
use sweep_core::{FinalMetrics, StepMeasures};

fn copy_tree(from: &Path, to: &Path) -> std::io::Result<u64> {
    std::fs::create_dir_all(to)?;
    let mut files = 0;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            files += copy_tree(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
            files += 1;
        }
    }
    Ok(files)
}

fn count_files(directory: &Path) -> u64 {
    std::fs::read_dir(directory)
        .map_or(0, |entries| entries.flatten().map(|entry| if entry.path().is_dir() { count_files(&entry.path()) } else { 1 }).sum())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let data_dir = PathBuf::from(args.next().context("usage: synthetic-results DATA_DIR [trials] [epochs] [eval_every] [rolls]")?);
    let mut number = |default: usize| args.next().and_then(|text| text.parse().ok()).unwrap_or(default);
    let (trials, epochs, eval_every, rolls) = (number(1_000), number(40_000), number(100), number(10));
    anyhow::ensure!(!data_dir.exists(), "{} exists; give a new directory", data_dir.display());

    let mut config = CoordinatorConfig::new(&data_dir);
    config.lease_ttl = Duration::from_secs(24 * 3600);
    let coordinator = Coordinator::open(config, Arc::new(SystemClock))?;
    let seeds: Vec<String> = (0..trials).map(|seed| seed.to_string()).collect();
    let yaml = format!(
        "version: 1\nname: synthetic\nfamilies: transformer\naxes:\n  modulus: 113\n  data_fraction: 0.3\n  weight_decay: 1\n  seed: [{}]\ntraining:\n  eval_every: {eval_every}\nstop:\n  max_epochs: {epochs}\n",
        seeds.join(", ")
    );
    let started = Instant::now();
    coordinator.submit("synthetic.yaml".into(), yaml).await?;
    println!("submitted {trials} trials in {:.2} s", started.elapsed().as_secs_f64());

    let worker = coordinator.register_worker("synthetic".into(), "none".into(), 1, None).await?;
    let mut leases = Vec::with_capacity(trials);
    while leases.len() < trials {
        let packs = coordinator.lease(LeaseAsk { worker_id: worker.clone(), free_slots: 1, pack_size: 4096 }).await?;
        anyhow::ensure!(!packs.is_empty(), "only {} of {trials} trials could be leased", leases.len());
        leases.extend(packs.into_iter().flatten());
    }
    leases.sort_by_key(|lease| lease.params.seed);

    let steps: Vec<i64> = (0..=epochs as i64).step_by(eval_every).collect();
    let per_roll = steps.len().div_ceil(rolls);
    let wall_time = SystemClock.now_ms();
    let (mut ingest, mut flush, mut rows) = (Duration::ZERO, Duration::ZERO, 0u64);
    for chunk in steps.chunks(per_roll) {
        let began = Instant::now();
        for (trial, lease) in leases.iter().enumerate() {
            let batch: Vec<StepMeasures> = chunk.iter().map(|&step| evaluation(trial, step, wall_time + step)).collect();
            rows += coordinator.report_progress(vec![(lease.lease.clone(), batch)]).await?;
        }
        ingest += began.elapsed();
        let began = Instant::now();
        coordinator.flush().await?;
        flush += began.elapsed();
    }
    println!(
        "ingested {rows} rows in {:.1} s ({:.0} rows/s, one call per trial and roll), {} flushes in {:.1} s",
        ingest.as_secs_f64(),
        rows as f64 / ingest.as_secs_f64(),
        steps.chunks(per_roll).count(),
        flush.as_secs_f64()
    );

    let rolled = PathBuf::from(format!("{}-rolled", data_dir.display()));
    let copied = copy_tree(&data_dir.join("results"), &rolled.join("results"))?;
    println!("rolled results copied to {} ({copied} files)", rolled.display());

    let began = Instant::now();
    for (trial, lease) in leases.iter().enumerate() {
        let grokked_at = steps.iter().copied().find(|&step| test_accuracy(trial, step) >= 0.95);
        let metrics = FinalMetrics {
            epochs: epochs as i64,
            train_loss: 1e-3,
            test_loss: 4.0 * (1.0 - test_accuracy(trial, epochs as i64)) + 1e-3,
            train_accuracy: 1.0,
            test_accuracy: test_accuracy(trial, epochs as i64),
            grokked_at,
            wall_seconds: 1.0,
            ..FinalMetrics::default()
        };
        coordinator.complete(lease.lease.clone(), metrics).await?;
    }
    coordinator.flush().await?;
    println!(
        "completed and compacted {trials} trials in {:.1} s: {} files in results/ (was {copied})",
        began.elapsed().as_secs_f64(),
        count_files(&data_dir.join("results"))
    );
    Ok(())
}
