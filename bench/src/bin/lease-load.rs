//! Many simulated workers against one coordinator on loopback (issue 14):
//!
//! `cargo run --release -p groksweep-bench --bin lease-load -- [workers] [seconds] [trials] [report] [next] [think_ms] [spread]`
//!
//! `workers` simulated workers (default 1,000), each on its own connection,
//! register, then for `seconds` (default 60) lease one no-op trial at a time,
//! report one step of two measures for it when `report` is `1` (the default;
//! `0` leaves the report out; `2` sends that step with the completion, in
//! `final_steps`, as the worker sends a trial's last rows), and complete it. With `next` = `1` each
//! completion asks for the next lease in the same call (`lease_next`, as the
//! worker does), and `LeaseTrials` is called only when that brought none;
//! with `0` (the default) every lease is its own call. With `think_ms` > 0
//! a worker waits that long after each completion before it works on its
//! next trial, as a worker that trains would (default 0: no-op trials back
//! to back, so with W workers the latency is about W ÷ the rate, Little's
//! law). Beside that loop each
//! worker heartbeats its lease at the interval the coordinator asks for (1 s
//! here). With `spread` = `0` (the default) every worker starts its
//! heartbeats and its trials at the same moment and thinks exactly
//! `think_ms`, so the workers stay in step: each second brings 1,000
//! heartbeats at once, and the trials come in waves. With `1` each worker's
//! think time is drawn from an exponential distribution of mean `think_ms`
//! (trials of unequal length, arrivals close to a Poisson stream), its
//! heartbeats start at its own random point of the heartbeat interval and
//! its first lease at its own random point of `think_ms`, as workers that
//! started at different times would (until session 24 every first lease
//! was asked at the same moment, a burst of 1,000 calls in the measured
//! p99); the draws are seeded by the worker's index, so a run repeats. The
//! sweep has about `trials` trials
//! (default 1,000,000), stored and written to its `trials` table once
//! before the clock starts. Printed: lease + complete round trips per
//! second, the latency of the call that brought each lease (p50, p99, max),
//! the worst gap a worker saw between two heartbeat answers, calls refused, how many store operations shared a
//! SQLite transaction, and the CPU time per round trip of the store's thread
//! and of the whole process (less noisy than the rate on a shared machine).
//! The workers run in this process, beside the coordinator, so they share
//! its cores.
//!
//! The coordinator's data directory is a fresh temporary directory under
//! `$TMPDIR` (`/tmp` when unset), removed at the end; set `TMPDIR` to run on
//! another file system. With `report` ≠ `0` each trial makes a directory and
//! a file; an ext4 without a journal, allocating an inode, passes over every
//! free inode freed in the last minute (six while its inode table block is
//! unwritten), so there such a run depends on what the previous run deleted
//! (bench/RESULTS.md, session 27).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sweep_coordinator::{Coordinator, CoordinatorConfig, SystemClock};
use sweep_proto::client::connect_lazy;
use sweep_proto::pb;

// As the `groksweep` binary, which serves the coordinator.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Default)]
struct Tally {
    completed: AtomicU64,
    refused: AtomicU64,
    revoked: AtomicU64,
    worst_heartbeat_gap_us: AtomicU64,
}

fn arg<T: std::str::FromStr>(position: usize, default: T) -> T {
    std::env::args().nth(position).and_then(|text| text.parse().ok()).unwrap_or(default)
}

fn no_op_step() -> pb::StepMeasures {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |since| since.as_millis() as i64);
    let scalar = |name: &str, value: f64| pb::Measure { name: name.into(), value: Some(pb::measure::Value::Scalar(value)) };
    pb::StepMeasures { step: 0, wall_time_ms: now, measures: vec![scalar("train_loss", 4.7), scalar("train_accuracy", 0.01)] }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let workers: usize = arg(1, 1000);
    let seconds: u64 = arg(2, 60);
    let trials: usize = arg(3, 1_000_000);
    let (report, rows_with_completion) = match arg::<u8>(4, 1) {
        0 => (false, false),
        2 => (false, true),
        _ => (true, false),
    };
    let lease_next = arg::<u8>(5, 0) == 1;
    let think = Duration::from_millis(arg(6, 0));
    let spread = arg::<u8>(7, 0) == 1;
    let data = tempfile::tempdir()?;
    let mut config = CoordinatorConfig::new(data.path());
    config.heartbeat_interval = Duration::from_secs(1);
    config.max_trials_per_sweep = 2 * trials as u64;
    // As `groksweep coordinator` stops (its --shutdown-flush-secs default).
    config.shutdown_flush_budget = Some(Duration::from_secs(1));
    let coordinator = Coordinator::open(config, Arc::new(SystemClock))?;
    let served = groksweep_bench::LoopbackCoordinator::start(coordinator.clone()).await?;
    let address = served.address.clone();

    let mut client = connect_lazy(&address, Default::default())?;
    // Up to 1,000 seeds × up to 100 moduli (odd, from 3) × as many weight decays as it takes.
    let seeds = trials.min(1000);
    let moduli = trials.div_ceil(seeds).min(100);
    let decays = trials.div_ceil(seeds * moduli);
    let list = |values: Vec<String>| format!("[{}]", values.join(", "));
    let yaml = format!(
        "version: 1\nname: load\nfamilies: transformer\naxes:\n  modulus: {}\n  data_fraction: 0.3\n  weight_decay: {}\n  seed: {}\n",
        list((0..moduli).map(|k| (3 + 2 * k).to_string()).collect()),
        list((1..=decays).map(|k| format!("{}", k as f64 / 10.0)).collect()),
        list((0..seeds).map(|s| s.to_string()).collect()),
    );
    let stored = Instant::now();
    let total =
        client.submit_sweep(pb::SubmitSweepRequest { spec_yaml: yaml, source_name: "load.yaml".into() }).await?.into_inner().trials_total;
    eprintln!("stored {total} trials in {:.1} s", stored.elapsed().as_secs_f64());
    // The sweep's whole `trials` table (100 parts for a million trials) is
    // written once before the clock starts: the timed part measures the
    // steady state, each flush rewriting the parts that changed.
    let first_flush = Instant::now();
    coordinator.flush().await?;
    eprintln!("first flush in {:.1} s; registering {workers} workers", first_flush.elapsed().as_secs_f64());

    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    // Heartbeat gaps count from the start of the timed part.
    let measuring = Arc::new(AtomicBool::new(false));
    // Every worker connects and registers at once, as a job array's do.
    let registering: Vec<_> = (0..workers)
        .map(|index| {
            let address = address.clone();
            tokio::spawn(async move {
                let mut client = connect_lazy(&address, Default::default())?;
                let request = pb::RegisterWorkerRequest {
                    name: format!("sim{index}"),
                    backend: "none".into(),
                    slots: 1,
                    previous_worker_id: String::new(),
                    pack_size: 1,
                };
                let registered = client.register_worker(request).await?.into_inner();
                anyhow::Ok((client, registered))
            })
        })
        .collect();
    let mut registered = Vec::with_capacity(workers);
    for (index, task) in registering.into_iter().enumerate() {
        registered.push(task.await?.map_err(|error| anyhow::anyhow!("worker {index} could not register: {error:#}"))?);
    }
    eprintln!("{workers} workers registered in {:.1} s", stored.elapsed().as_secs_f64());
    let mut tasks = Vec::with_capacity(workers);
    for (index, (mut client, registered)) in registered.into_iter().enumerate() {
        let (tally, stop, measuring) = (Arc::clone(&tally), Arc::clone(&stop), Arc::clone(&measuring));
        tasks.push(tokio::spawn(async move {
            let worker_id = registered.worker_id;
            let interval = Duration::from_millis(u64::from(registered.heartbeat_interval_ms));
            let mut draws = StdRng::seed_from_u64(index as u64);
            let phase = if spread { interval.mul_f64(draws.random::<f64>()) } else { Duration::ZERO };
            let held: Arc<std::sync::Mutex<Vec<pb::LeaseRef>>> = Arc::default();
            let heartbeat = {
                let (mut client, worker_id, held, stop, tally) =
                    (client.clone(), worker_id.clone(), Arc::clone(&held), Arc::clone(&stop), Arc::clone(&tally));
                tokio::spawn(async move {
                    tokio::time::sleep(phase).await;
                    let mut last = Instant::now();
                    while !stop.load(Ordering::Relaxed) {
                        tokio::time::sleep(interval).await;
                        let leases = held.lock().map(|held| held.clone()).unwrap_or_default();
                        let answer = client.heartbeat(pb::HeartbeatRequest { worker_id: worker_id.clone(), leases }).await?.into_inner();
                        let now = Instant::now();
                        if !measuring.load(Ordering::Relaxed) {
                            last = now;
                            continue;
                        }
                        tally.worst_heartbeat_gap_us.fetch_max(now.duration_since(last).as_micros() as u64, Ordering::Relaxed);
                        // A lease completed while its heartbeat was on the way is answered "completed": not a loss.
                        let lost = answer.revoked.iter().filter(|revocation| !revocation.reason.contains("completed")).count();
                        tally.revoked.fetch_add(lost as u64, Ordering::Relaxed);
                        last = now;
                    }
                    anyhow::Ok(())
                })
            };
            if spread {
                tokio::time::sleep(think.mul_f64(draws.random::<f64>())).await;
            }
            let mut latencies_us: Vec<u32> = Vec::new();
            let micros_since = |asked: Instant| asked.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
            let ask = pb::LeaseTrialsRequest { worker_id: worker_id.clone(), free_slots: 1, backend: "none".into(), pack_size: 1 };
            let first_lease = |packs: Vec<pb::LeasedPack>| packs.into_iter().flat_map(|pack| pack.leases).find_map(|lease| lease.lease);
            // A lease that came with the previous completion.
            let mut next: Option<pb::LeaseRef> = None;
            while !stop.load(Ordering::Relaxed) {
                let lease = match next.take() {
                    Some(lease) => lease,
                    None => {
                        let asked = Instant::now();
                        let packs = client.lease_trials(ask.clone()).await?.into_inner().packs;
                        latencies_us.push(micros_since(asked));
                        match first_lease(packs) {
                            Some(lease) => lease,
                            None => break,
                        }
                    }
                };
                if let Ok(mut held) = held.lock() {
                    *held = vec![lease.clone()];
                }
                if report {
                    let batch = pb::ProgressBatch { lease: Some(lease.clone()), steps: vec![no_op_step()] };
                    if client.report_progress(tokio_stream::iter(vec![batch])).await.is_err() {
                        tally.refused.fetch_add(1, Ordering::Relaxed);
                    }
                }
                let metrics = pb::FinalMetrics { epochs: 1, ..Default::default() };
                let request = pb::CompleteTrialRequest {
                    lease: Some(lease),
                    metrics: Some(metrics),
                    lease_next: lease_next.then(|| ask.clone()),
                    final_steps: if rows_with_completion { vec![no_op_step()] } else { Vec::new() },
                };
                let asked = Instant::now();
                match client.complete_trial(request).await {
                    Ok(answer) => {
                        tally.completed.fetch_add(1, Ordering::Relaxed);
                        next = first_lease(answer.into_inner().packs);
                        if next.is_some() {
                            latencies_us.push(micros_since(asked));
                        }
                    }
                    Err(_) => {
                        tally.refused.fetch_add(1, Ordering::Relaxed);
                    }
                }
                if let Ok(mut held) = held.lock() {
                    held.clear();
                }
                if !think.is_zero() {
                    // Exponential: −mean·ln(u), u in (0, 1].
                    let wait = if spread { think.mul_f64(-(1.0 - draws.random::<f64>()).ln()) } else { think };
                    tokio::time::sleep(wait).await;
                }
            }
            heartbeat.await??;
            anyhow::Ok(latencies_us)
        }));
    }
    measuring.store(true, Ordering::Relaxed);
    let began = Instant::now();
    let commits_before = coordinator.store_commits();
    let cpu_before = (groksweep_bench::cpu_seconds(Some("groksweep-store")), groksweep_bench::cpu_seconds(None));
    // The rate of each 10 s window on stderr: whether it holds for the whole run.
    let mut window_start = (Instant::now(), 0);
    while began.elapsed() < Duration::from_secs(seconds) {
        tokio::time::sleep(Duration::from_secs(seconds).saturating_sub(began.elapsed()).min(Duration::from_secs(10))).await;
        let done = tally.completed.load(Ordering::Relaxed);
        let window = window_start.0.elapsed().as_secs_f64();
        eprintln!("  {:>4.0} s: {:.0} round trips/s", began.elapsed().as_secs_f64(), (done - window_start.1) as f64 / window);
        window_start = (Instant::now(), done);
    }
    stop.store(true, Ordering::Relaxed);
    let completed = tally.completed.load(Ordering::Relaxed);
    let elapsed = began.elapsed().as_secs_f64();
    let commits_after = coordinator.store_commits();
    let cpu_after = (groksweep_bench::cpu_seconds(Some("groksweep-store")), groksweep_bench::cpu_seconds(None));
    // CPU µs per round trip: of the store's thread, and of the whole process (workers included).
    let per_round_trip = |before: Option<f64>, after: Option<f64>| {
        before.zip(after).map_or(f64::NAN, |(before, after)| (after - before) * 1e6 / completed.max(1) as f64)
    };
    let (store_us, process_us) = (per_round_trip(cpu_before.0, cpu_after.0), per_round_trip(cpu_before.1, cpu_after.1));
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await??);
    }
    latencies.sort_unstable();
    let percentile = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(0.0, |&us| f64::from(us) / 1000.0)
    };
    let (commits, operations) = (commits_after.0 - commits_before.0, commits_after.1 - commits_before.1);
    println!(
        "workers={workers} report={report} rows_with_completion={rows_with_completion} lease_next={lease_next} think_ms={} spread={spread} seconds={elapsed:.1} completed={completed} round_trips_per_second={:.0} lease_ms_p50={:.1} lease_ms_p99={:.1} lease_ms_max={:.1} worst_heartbeat_gap_ms={:.0} refused={} revoked={} store_operations_per_commit={:.1} store_thread_cpu_us_per_round_trip={store_us:.0} process_cpu_us_per_round_trip={process_us:.0}",
        think.as_millis(),
        completed as f64 / elapsed,
        percentile(0.5),
        percentile(0.99),
        latencies.last().map_or(0.0, |&us| f64::from(us) / 1000.0),
        tally.worst_heartbeat_gap_us.load(Ordering::Relaxed) as f64 / 1000.0,
        tally.refused.load(Ordering::Relaxed),
        tally.revoked.load(Ordering::Relaxed),
        operations as f64 / commits.max(1) as f64,
    );
    // The final flush writes what the last roll did not (with `report`, one
    // small Parquet file per trial done since then) for at most a second, as
    // `groksweep coordinator` does; the rest would be written at its next start.
    let stopping = Instant::now();
    served.stop().await?;
    eprintln!("stopped (final flush included) in {:.1} s", stopping.elapsed().as_secs_f64());
    Ok(())
}
