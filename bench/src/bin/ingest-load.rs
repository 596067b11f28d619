//! Progress ingestion over gRPC from many simulated workers (issue 14):
//!
//! `cargo run --release -p groksweep-bench --bin ingest-load -- [workers] [seconds] [evaluations]`
//!
//! `workers` simulated workers (default 100), each on its own connection,
//! lease one transformer trial each and for `seconds` (default 30) report
//! its progress as fast as the coordinator answers: one `ReportProgress` call
//! after another, each of `evaluations` (default 41) evaluations of 12
//! scalar measures (492 rows), one step apart. The coordinator rolls its
//! buffer to Parquet every 5 s meanwhile, as by default. Printed: rows
//! accepted per second, reports per second and their latency (p50, p99,
//! max); then the time the stopping coordinator took to write what the last
//! roll had not (no budget: everything), and the rows counted in the Parquet
//! files afterwards, which must equal the rows accepted. The workers run in
//! this process, beside the coordinator, so they share its cores.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use groksweep_bench::synthetic::evaluation;
use parquet::file::reader::{FileReader, SerializedFileReader};
use sweep_coordinator::{Coordinator, CoordinatorConfig, SystemClock};
use sweep_proto::client::connect_lazy;
use sweep_proto::pb;

// As the `groksweep` binary, which serves the coordinator.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn arg<T: std::str::FromStr>(position: usize, default: T) -> T {
    std::env::args().nth(position).and_then(|text| text.parse().ok()).unwrap_or(default)
}

/// Progress rows in the Parquet files under `directory` (from the files' footers).
fn parquet_rows(directory: &std::path::Path) -> anyhow::Result<i64> {
    let mut rows = 0;
    for entry in std::fs::read_dir(directory)? {
        let path = entry?.path();
        if path.is_dir() {
            // The `trials` table's files hold one row per trial, not progress.
            if !path.ends_with("trials") {
                rows += parquet_rows(&path)?;
            }
        } else if path.extension().is_some_and(|extension| extension == "parquet") {
            rows += SerializedFileReader::new(std::fs::File::open(&path)?)?.metadata().file_metadata().num_rows();
        }
    }
    Ok(rows)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let workers: usize = arg(1, 100);
    let seconds: u64 = arg(2, 30);
    let evaluations: i64 = arg(3, 41);
    let data = tempfile::tempdir()?;
    let config = CoordinatorConfig::new(data.path());
    let coordinator = Coordinator::open(config, Arc::new(SystemClock))?;
    let served = groksweep_bench::LoopbackCoordinator::start(coordinator).await?;
    let address = served.address.clone();

    let mut client = connect_lazy(&address, Default::default())?;
    let seeds: Vec<String> = (0..workers).map(|seed| seed.to_string()).collect();
    let yaml = format!(
        "version: 1\nname: ingest\nfamilies: transformer\naxes:\n  modulus: 113\n  data_fraction: 0.3\n  weight_decay: 1\n  seed: [{}]\nstop:\n  max_epochs: 100000000\n",
        seeds.join(", ")
    );
    client.submit_sweep(pb::SubmitSweepRequest { spec_yaml: yaml, source_name: "ingest.yaml".into() }).await?;

    let mut leased = Vec::with_capacity(workers);
    for index in 0..workers {
        let mut client = connect_lazy(&address, Default::default())?;
        let worker_id = groksweep_bench::register_simulated_worker(&mut client, format!("sim{index}")).await?;
        let request = pb::LeaseTrialsRequest { worker_id, free_slots: 1, backend: "none".into(), pack_size: 1 };
        let packs = client.lease_trials(request).await?.into_inner().packs;
        let lease = packs.into_iter().flat_map(|pack| pack.leases).find_map(|lease| lease.lease);
        leased.push((client, lease.ok_or_else(|| anyhow::anyhow!("worker {index} got no trial"))?));
    }
    eprintln!("{workers} workers each hold a trial; reporting {} rows a call for {seconds} s", evaluations * 12);

    let stop = Arc::new(AtomicBool::new(false));
    let rows = Arc::new(AtomicU64::new(0));
    let began = Instant::now();
    let mut tasks = Vec::with_capacity(workers);
    for (trial, (mut client, lease)) in leased.into_iter().enumerate() {
        let (stop, rows) = (Arc::clone(&stop), Arc::clone(&rows));
        tasks.push(tokio::spawn(async move {
            let mut latencies_us: Vec<u32> = Vec::new();
            let mut next_step = 0i64;
            while !stop.load(Ordering::Relaxed) {
                let wall_time = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as i64;
                let steps =
                    (next_step..next_step + evaluations).map(|step| pb::StepMeasures::from(&evaluation(trial, step, wall_time))).collect();
                next_step += evaluations;
                let batch = pb::ProgressBatch { lease: Some(lease.clone()), steps };
                let asked = Instant::now();
                let accepted = client.report_progress(tokio_stream::iter(vec![batch])).await?.into_inner();
                latencies_us.push(asked.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
                rows.fetch_add(accepted.rows_accepted, Ordering::Relaxed);
            }
            anyhow::Ok(latencies_us)
        }));
    }
    let mut window_start = (Instant::now(), 0);
    while began.elapsed() < Duration::from_secs(seconds) {
        tokio::time::sleep(Duration::from_secs(seconds).saturating_sub(began.elapsed()).min(Duration::from_secs(10))).await;
        let done = rows.load(Ordering::Relaxed);
        let window = window_start.0.elapsed().as_secs_f64();
        eprintln!("  {:>4.0} s: {:.0} rows/s", began.elapsed().as_secs_f64(), (done - window_start.1) as f64 / window);
        window_start = (Instant::now(), done);
    }
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await??);
    }
    let elapsed = began.elapsed().as_secs_f64();
    let accepted = rows.load(Ordering::Relaxed);
    latencies.sort_unstable();
    let percentile = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(0.0, |&us| f64::from(us) / 1000.0)
    };
    println!(
        "workers={workers} rows_per_report={} seconds={elapsed:.1} rows={accepted} rows_per_second={:.0} reports_per_second={:.0} report_ms_p50={:.1} report_ms_p99={:.1} report_ms_max={:.1}",
        evaluations * 12,
        accepted as f64 / elapsed,
        latencies.len() as f64 / elapsed,
        percentile(0.5),
        percentile(0.99),
        latencies.last().map_or(0.0, |&us| f64::from(us) / 1000.0),
    );
    let stopping = Instant::now();
    served.stop().await?;
    let on_disk = parquet_rows(&data.path().join("results"))?;
    println!(
        "stopped in {:.1} s (the final flush writes what the last roll had not); rows in Parquet: {on_disk} of {accepted}",
        stopping.elapsed().as_secs_f64()
    );
    anyhow::ensure!(on_disk == accepted as i64, "{on_disk} rows in Parquet, {accepted} accepted");
    Ok(())
}
