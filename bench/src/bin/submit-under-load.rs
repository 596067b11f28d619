//! A million-trial sweep submitted while workers heartbeat, then a shutdown
//! in the middle of another (issue 14), on an in-process coordinator served
//! on loopback:
//!
//! `cargo run --release -p groksweep-bench --bin submit-under-load -- [trials] [workers]`
//!
//! `workers` simulated workers (default 50) each hold a lease of a small
//! sweep and heartbeat every 100 ms; the worst gap between two heartbeat
//! answers any of them sees, and whether any lease was revoked, is reported
//! for the submission of a `trials`-trial sweep (default 1,000,000). Then a
//! second such sweep is submitted and the coordinator told to stop one second
//! into it; the time from that to the server's exit (its final flush
//! included) is reported.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sweep_coordinator::{Coordinator, CoordinatorConfig, SystemClock};
use sweep_proto::client::connect_lazy;
use sweep_proto::pb;

fn sweep(name: &str, trials: usize) -> String {
    // Up to 1,000 seeds × up to 100 moduli (odd, from 3) × as many weight decays as it takes.
    let seeds = trials.min(1000);
    let moduli = trials.div_ceil(seeds).min(100);
    let decays = trials.div_ceil(seeds * moduli);
    let list = |values: Vec<String>| format!("[{}]", values.join(", "));
    format!(
        "version: 1\nname: {name}\nfamilies: transformer\naxes:\n  modulus: {}\n  data_fraction: 0.3\n  weight_decay: {}\n  seed: {}\n",
        list((0..moduli).map(|k| (3 + 2 * k).to_string()).collect()),
        list((1..=decays).map(|k| format!("{}", k as f64 / 10.0)).collect()),
        list((0..seeds).map(|s| s.to_string()).collect()),
    )
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let trials: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(1_000_000);
    let workers: usize = std::env::args().nth(2).and_then(|s| s.parse().ok()).unwrap_or(50);
    let data = tempfile::tempdir()?;
    let mut config = CoordinatorConfig::new(data.path());
    config.max_trials_per_sweep = (2 * trials) as u64;
    let coordinator = Coordinator::open(config, Arc::new(SystemClock))?;
    let served = groksweep_bench::LoopbackCoordinator::start(coordinator.clone()).await?;
    let address = served.address.clone();

    let mut client = connect_lazy(&address, Default::default())?;
    let small = sweep("held", workers);
    client.submit_sweep(pb::SubmitSweepRequest { spec_yaml: small, source_name: "held.yaml".into() }).await?;
    let worst_gap_us = Arc::new(AtomicU64::new(0));
    let revoked = Arc::new(AtomicU64::new(0));
    let measuring = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicBool::new(false));
    let mut beating = Vec::new();
    for index in 0..workers {
        let mut client = connect_lazy(&address, Default::default())?;
        let (worst_gap_us, revoked, measuring, done) = (worst_gap_us.clone(), revoked.clone(), measuring.clone(), done.clone());
        beating.push(tokio::spawn(async move {
            let worker_id = groksweep_bench::register_simulated_worker(&mut client, format!("hb{index}")).await?;
            let request = pb::LeaseTrialsRequest { worker_id: worker_id.clone(), free_slots: 1, backend: "none".into(), pack_size: 1 };
            let leases: Vec<pb::LeaseRef> =
                client.lease_trials(request).await?.into_inner().packs.into_iter().flat_map(|p| p.leases).filter_map(|l| l.lease).collect();
            let mut last = Instant::now();
            while !done.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let answer =
                    client.heartbeat(pb::HeartbeatRequest { worker_id: worker_id.clone(), leases: leases.clone() }).await?.into_inner();
                let now = Instant::now();
                if measuring.load(Ordering::Relaxed) {
                    worst_gap_us.fetch_max(now.duration_since(last).as_micros() as u64, Ordering::Relaxed);
                    revoked.fetch_add(answer.revoked.len() as u64, Ordering::Relaxed);
                }
                last = now;
            }
            anyhow::Ok(())
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;

    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    let response =
        client.submit_sweep(pb::SubmitSweepRequest { spec_yaml: sweep("big", trials), source_name: "big.yaml".into() }).await?.into_inner();
    let took = started.elapsed();
    tokio::time::sleep(Duration::from_millis(300)).await;
    measuring.store(false, Ordering::Relaxed);
    println!(
        "planned and stored {} trials in {:.2} s; {workers} workers heartbeating every 100 ms: worst gap between answers {:.0} ms, {} leases revoked",
        response.trials_total,
        took.as_secs_f64(),
        worst_gap_us.load(Ordering::Relaxed) as f64 / 1000.0,
        revoked.load(Ordering::Relaxed)
    );
    done.store(true, Ordering::Relaxed);
    for task in beating {
        task.await??;
    }

    // Shutdown one second into another large submission.
    let mut submitter = connect_lazy(&address, Default::default())?;
    let second = tokio::spawn(async move {
        submitter.submit_sweep(pb::SubmitSweepRequest { spec_yaml: sweep("second", trials), source_name: "second.yaml".into() }).await
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    let asked = Instant::now();
    served.stop().await?;
    println!(
        "stopped {:.2} s after the shutdown signal, one second into a second {trials}-trial submission",
        asked.elapsed().as_secs_f64()
    );
    match second.await? {
        Ok(response) => println!("the second submission finished first: {} trials", response.into_inner().trials_total),
        Err(status) => println!("the second submission was told: {:?} {}", status.code(), status.message()),
    }
    Ok(())
}
