//! Benchmarks run by hand (`cargo run --release -p groksweep-bench --bin ...`);
//! their results are recorded in `bench/RESULTS.md` with the command that made them.
//!
//! - `nanda-step`: ms per full-batch training step at p = 113 (3,830 pairs), a pack of one.
//! - `pack-throughput`: trials·epochs per second of a pack of K trials, or of K packs of one on K threads.
//! - `diffusion-step`: ms per diffusion training step and per evaluation, peak memory.
//! - `avx512-control`: executes an AVX-512 instruction unchecked (the control of
//!   `bench/x86-v4-without-avx512.sh`).
//! - `coordinator-load`: leases per second with simulated workers on loopback,
//!   and the time to plan and store a 100,000-trial sweep.
//! - `lease-load`: 1,000 simulated workers leasing, heartbeating, reporting and
//!   completing no-op trials: round trips per second, lease latency, heartbeat gaps.
//! - `submit-under-load`: a million-trial sweep stored while workers heartbeat,
//!   and a shutdown in the middle of another.
//! - `synthetic-results`: a 4.8M-row results directory, rolled and compacted,
//!   for `bench/reading/run.sh`, and the in-process ingestion rate.
//! - `ingest-load`: progress rows per second over gRPC from many simulated
//!   workers, on to Parquet.
//! - [`synthetic`]: the synthetic progress both write.

pub mod synthetic;

/// How the running benchmark was built and what the CPU offers, printed with
/// every result: the allocator (`mimalloc` unless built with
/// `--no-default-features`), whether burn's `x86-v4` kernels were compiled in,
/// and whether this CPU has AVX-512F (gemm uses those kernels only if it has).
pub fn build_info() -> String {
    let allocator = if cfg!(feature = "mimalloc") { "mimalloc" } else { "system" };
    format!("allocator={allocator} x86-v4={} cpu_avx512f={}", cfg!(feature = "x86-v4"), cpu_has_avx512f())
}

#[cfg(target_arch = "x86_64")]
fn cpu_has_avx512f() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
}

#[cfg(not(target_arch = "x86_64"))]
fn cpu_has_avx512f() -> bool {
    false
}

use sweep_core::{
    DiffusionSettings, Family, FamilySettings, LeaseRef, StopRule, TrainingSettings, TransformerSettings, TrialId, TrialLease, TrialParams,
};

/// A lease of a transformer trial at the paper's sizes, for the benchmarks.
pub fn transformer_lease(modulus: u32, data_fraction: f64, weight_decay: f64, seed: u64) -> TrialLease {
    TrialLease {
        lease: LeaseRef { trial_id: TrialId::from_raw(format!("bench{seed:04}")), attempt: 1, token: 1 },
        sweep: "bench".into(),
        params: TrialParams::new(Family::Transformer, modulus, data_fraction, weight_decay, seed, seed, None),
        training: TrainingSettings { lr: 1e-3, warmup_steps: 0, eval_every: 100, checkpoint_every: 100, ..TrainingSettings::default() },
        stop: StopRule { max_epochs: 40_000, target_test_accuracy: None, patience: 1 },
        family: FamilySettings::Transformer(TransformerSettings::default()),
        deadline_ms: 0,
    }
}

/// A lease of a diffusion trial with these settings, for the benchmarks.
pub fn diffusion_lease(modulus: u32, data_fraction: f64, seed: u64, image_diversity: u32, settings: DiffusionSettings) -> TrialLease {
    TrialLease {
        lease: LeaseRef { trial_id: TrialId::from_raw(format!("bench{seed:04}")), attempt: 1, token: 1 },
        sweep: "bench".into(),
        params: TrialParams::new(Family::Diffusion, modulus, data_fraction, 1.0, seed, seed, Some(image_diversity)),
        training: TrainingSettings { lr: 1e-3, warmup_steps: 0, eval_every: 100, checkpoint_every: 0, ..TrainingSettings::default() },
        stop: StopRule { max_epochs: 40_000, target_test_accuracy: None, patience: 1 },
        family: FamilySettings::Diffusion(settings),
        deadline_ms: 0,
    }
}

/// A line of /proc/self/status (Linux) in MiB: `VmHWM` is the peak resident set, `VmRSS` the current one.
pub fn status_mib(key: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with(key))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// CPU seconds (user + system) used so far by this process's threads named
/// `name` (Linux: /proc/self/task/*/comm and stat), or by the whole process
/// for `None`. Clock ticks of 10 ms: take differences over many seconds.
pub fn cpu_seconds(name: Option<&str>) -> Option<f64> {
    // Fields 14 and 15 of a stat line, counted after the `(comm)` field, which may hold spaces.
    fn ticks(stat: &str) -> Option<u64> {
        let mut fields = stat.rsplit_once(')')?.1.split_whitespace().skip(11);
        Some(fields.next()?.parse::<u64>().ok()? + fields.next()?.parse::<u64>().ok()?)
    }
    // The kernel's USER_HZ, 100 on every Linux this runs on.
    const TICKS_PER_SECOND: f64 = 100.0;
    let Some(name) = name else {
        return Some(ticks(&std::fs::read_to_string("/proc/self/stat").ok()?)? as f64 / TICKS_PER_SECOND);
    };
    let mut total = 0;
    for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim_end() == name {
            total += ticks(&std::fs::read_to_string(task.path().join("stat")).ok()?)?;
        }
    }
    Some(total as f64 / TICKS_PER_SECOND)
}

/// A coordinator served on a loopback port in this process, as the
/// benchmarks that speak gRPC to it use it.
#[derive(Debug)]
pub struct LoopbackCoordinator {
    /// `http://127.0.0.1:PORT`.
    pub address: String,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<Result<(), sweep_coordinator::ServeError>>,
}

impl LoopbackCoordinator {
    /// Serve `coordinator` on a free loopback port.
    pub async fn start(coordinator: sweep_coordinator::Coordinator) -> anyhow::Result<Self> {
        let listener = sweep_coordinator::bind(([127, 0, 0, 1], 0))?;
        let address = format!("http://{}", listener.local_addr()?);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(sweep_coordinator::run(
            listener,
            async {
                let _ = stopped.await;
            },
            coordinator,
        ));
        Ok(LoopbackCoordinator { address, stop, server })
    }

    /// Tell the server to stop, and wait until it has (its final flush included).
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        self.server.await??;
        Ok(())
    }
}

/// Register a simulated worker with one slot and no backend; returns its id.
pub async fn register_simulated_worker(client: &mut sweep_proto::client::Client, name: String) -> anyhow::Result<String> {
    let request =
        sweep_proto::pb::RegisterWorkerRequest { name, backend: "none".into(), slots: 1, previous_worker_id: String::new(), pack_size: 1 };
    Ok(client.register_worker(request).await?.into_inner().worker_id)
}
