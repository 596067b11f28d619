//! Coordinator under load on loopback: `cargo run --release -p groksweep-bench --bin coordinator-load [workers] [trials]`.
//! Simulated workers lease no-op trials one at a time and complete them at
//! once; then a 100,000-trial sweep is planned and stored.

use std::sync::Arc;
use std::time::Instant;

use sweep_coordinator::{Coordinator, CoordinatorConfig, SystemClock};
use sweep_proto::client::connect_lazy;
use sweep_proto::pb;

fn spec(name: &str, seeds: usize, moduli: &[u32]) -> String {
    let seeds: Vec<String> = (0..seeds).map(|s| s.to_string()).collect();
    let moduli: Vec<String> = moduli.iter().map(|m| m.to_string()).collect();
    format!(
        "version: 1\nname: {name}\nfamilies: transformer\naxes:\n  modulus: [{}]\n  data_fraction: 0.3\n  weight_decay: 1\n  seed: [{}]\n",
        moduli.join(", "),
        seeds.join(", ")
    )
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let workers: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(8);
    let trials: usize = std::env::args().nth(2).and_then(|s| s.parse().ok()).unwrap_or(2000);
    let data = tempfile::tempdir()?;
    let coordinator = Coordinator::open(CoordinatorConfig::new(data.path()), Arc::new(SystemClock))?;
    let served = groksweep_bench::LoopbackCoordinator::start(coordinator.clone()).await?;
    let address = served.address.clone();

    let mut client = connect_lazy(&address, Default::default())?;
    let yaml = spec("load", trials, &[113]);
    client.submit_sweep(pb::SubmitSweepRequest { spec_yaml: yaml, source_name: "load.yaml".into() }).await?;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for index in 0..workers {
        let mut client = connect_lazy(&address, Default::default())?;
        tasks.push(tokio::spawn(async move {
            let worker_id = groksweep_bench::register_simulated_worker(&mut client, format!("sim{index}")).await?;
            let mut completed = 0usize;
            loop {
                let request = pb::LeaseTrialsRequest { worker_id: worker_id.clone(), free_slots: 1, backend: "none".into(), pack_size: 1 };
                let packs = client.lease_trials(request).await?.into_inner().packs;
                if packs.is_empty() {
                    return anyhow::Ok(completed);
                }
                for lease in packs.into_iter().flat_map(|pack| pack.leases) {
                    let metrics = pb::FinalMetrics { epochs: 1, ..Default::default() };
                    client
                        .complete_trial(pb::CompleteTrialRequest {
                            lease: lease.lease,
                            metrics: Some(metrics),
                            lease_next: None,
                            final_steps: Vec::new(),
                        })
                        .await?;
                    completed += 1;
                }
            }
        }));
    }
    let mut completed = 0;
    for task in tasks {
        completed += task.await??;
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "workers={workers} trials={completed} seconds={elapsed:.2} leases_per_second={:.0} (lease + complete round trips)",
        completed as f64 / elapsed
    );

    let big_started = Instant::now();
    let big = spec("plan-100k", 1000, &(0..100).map(|k| 3 + 2 * k).collect::<Vec<u32>>());
    let response = client.submit_sweep(pb::SubmitSweepRequest { spec_yaml: big, source_name: "big.yaml".into() }).await?.into_inner();
    println!("planned and stored {} trials in {:.2} s", response.trials_total, big_started.elapsed().as_secs_f64());
    served.stop().await?;
    Ok(())
}
