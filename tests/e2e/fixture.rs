//! Test fixtures: an in-process coordinator with oneshot shutdown, `groksweep`
//! child processes that are killed on drop, and polling helpers.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sweep_coordinator::{Coordinator, CoordinatorConfig, SystemClock};
use sweep_proto::client::{Client, connect_lazy};
use sweep_proto::pb;
use tokio::sync::oneshot;

pub(crate) fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub(crate) fn fixture_spec(name: &str) -> PathBuf {
    repo_root().join("tests/fixtures").join(name)
}

/// Settings short enough that lapses and rolls happen within a test.
pub(crate) fn fast_config(data_dir: &Path) -> CoordinatorConfig {
    let mut config = CoordinatorConfig::new(data_dir);
    config.lease_ttl = Duration::from_secs(2);
    config.heartbeat_interval = Duration::from_millis(300);
    config.roll_interval = Duration::from_millis(300);
    config.watch_interval = Duration::from_millis(100);
    config.on_trials_written = Some(Arc::new(groksweep::phases_hook::PhasesWriter::new(data_dir)));
    config
}

/// A worker run in-process against `address` (one slot, packs of up to
/// `pack_size`), its cache and scratch under `data_dir`; `stop` ends it cleanly.
pub(crate) struct InProcessWorker {
    shutdown: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), sweep_worker::WorkerError>>,
}

impl InProcessWorker {
    pub(crate) fn start(address: &str, data_dir: &Path, name: &str, pack_size: u32) -> Self {
        let config = sweep_worker::WorkerConfig {
            coordinator: address.to_string(),
            slots: 1,
            step_threads: 1,
            pack_size,
            token: None,
            tls_ca_pem: None,
            name: name.to_string(),
            cache_dir: data_dir.join("cache"),
            scratch_dir: data_dir.join("scratch"),
            liveness: Default::default(),
            exit_when_idle: None,
        };
        let (shutdown, signal) = oneshot::channel::<()>();
        let task = tokio::spawn(sweep_worker::run(config, async {
            let _ = signal.await;
        }));
        InProcessWorker { shutdown, task }
    }

    /// Stop the worker and wait for it to end cleanly.
    pub(crate) async fn stop(self) {
        let _ = self.shutdown.send(());
        self.task.await.expect("worker task").expect("worker ends cleanly");
    }
}

/// A coordinator served in-process; shut down (and flushed) on `stop` or drop.
pub(crate) struct InProcessCoordinator {
    pub(crate) address: String,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl InProcessCoordinator {
    pub(crate) async fn start(config: CoordinatorConfig) -> Self {
        let coordinator = Coordinator::open(config, Arc::new(SystemClock)).expect("coordinator opens");
        let listener = sweep_coordinator::bind(([127, 0, 0, 1], 0)).expect("bind port 0");
        let address = format!("http://{}", listener.local_addr().expect("bound address"));
        let (shutdown, signal) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            sweep_coordinator::run(
                listener,
                async {
                    let _ = signal.await;
                },
                coordinator,
            )
            .await
            .expect("coordinator runs");
        });
        InProcessCoordinator { address, shutdown: Some(shutdown), task: Some(task) }
    }

    pub(crate) async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("coordinator task ends cleanly");
        }
    }
}

impl Drop for InProcessCoordinator {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

/// Run `groksweep ARGS` to the end (warnings only, no token from the environment).
pub(crate) fn groksweep(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_groksweep"))
        .args(args)
        .env_remove("GROKSWEEP_TOKEN")
        .env("RUST_LOG", "warn")
        .output()
        .expect("groksweep runs")
}

/// A `groksweep` child process, killed (SIGKILL) on drop.
pub(crate) struct Process {
    pub(crate) child: Child,
    pub(crate) name: &'static str,
}

impl Process {
    pub(crate) fn spawn(name: &'static str, args: &[&str]) -> Self {
        let child = Command::new(env!("CARGO_BIN_EXE_groksweep"))
            .args(args)
            .env_remove("GROKSWEEP_TOKEN")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("groksweep starts");
        Process { child, name }
    }

    /// Start a coordinator process and read the address it printed.
    pub(crate) fn coordinator(data_dir: &Path, listen: &str, extra: &[&str]) -> (Self, String) {
        let data_dir = data_dir.to_str().expect("utf-8 temp path");
        let mut args = vec![
            "coordinator",
            "--listen",
            listen,
            "--data-dir",
            data_dir,
            "--lease-ttl-secs",
            "2",
            "--heartbeat-secs",
            "0.3",
            "--roll-secs",
            "0.3",
        ];
        args.extend_from_slice(extra);
        let mut process = Process::spawn("coordinator", &args);
        let stdout = process.child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).expect("coordinator prints its address");
        let address =
            line.trim().strip_prefix("coordinator listening on ").unwrap_or_else(|| panic!("unexpected first line {line:?}")).to_string();
        (process, address)
    }

    pub(crate) fn worker(address: &str, extra: &[&str]) -> Self {
        let mut args = vec!["worker", "--coordinator", address, "--slots", "1"];
        args.extend_from_slice(extra);
        Process::spawn("worker", &args)
    }

    /// SIGKILL, no chance to clean up.
    pub(crate) fn kill_hard(&mut self) {
        self.child.kill().expect("kill -9");
        self.child.wait().expect("reaped");
    }

    /// SIGTERM, as `kill` or a cluster scheduler sends it.
    pub(crate) fn terminate(&self) {
        self.signal(libc::SIGTERM, "SIGTERM");
    }

    /// Send `signal` (named `name` in the failure message).
    pub(crate) fn signal(&self, signal: libc::c_int, name: &str) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid fits pid_t");
        // SAFETY: kill(2) takes plain integers; the child is ours and not yet reaped.
        let result = unsafe { libc::kill(pid, signal) };
        assert_eq!(result, 0, "{name} to the {} failed: {}", self.name, std::io::Error::last_os_error());
    }

    /// Wait for exit (bounded) and return status and stderr.
    pub(crate) fn wait_exit(&mut self, limit: Duration) -> (std::process::ExitStatus, String) {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                let mut stderr = String::new();
                if let Some(mut pipe) = self.child.stderr.take() {
                    use std::io::Read;
                    let _ = pipe.read_to_string(&mut stderr);
                }
                return (status, stderr);
            }
            assert!(Instant::now() < deadline, "{} did not exit within {limit:?}", self.name);
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn client(address: &str, token: Option<&str>) -> Client {
    connect_lazy(address, sweep_proto::client::ConnectOptions { token, tls_ca_pem: None }).expect("client")
}

pub(crate) async fn submit(client: &mut Client, spec: &Path) -> pb::SubmitSweepResponse {
    let yaml = std::fs::read_to_string(spec).expect("fixture spec");
    let request = pb::SubmitSweepRequest { spec_yaml: yaml, source_name: spec.display().to_string() };
    client.submit_sweep(request).await.expect("submit").into_inner()
}

/// Poll the sweep until `predicate` holds (bounded); returns that snapshot.
pub(crate) async fn wait_for_sweep(
    client: &mut Client,
    sweep: &str,
    limit: Duration,
    mut predicate: impl FnMut(&pb::SweepStatus) -> bool,
) -> pb::SweepStatus {
    let deadline = Instant::now() + limit;
    let mut last = None;
    while Instant::now() < deadline {
        if let Ok(response) = client.get_sweep(pb::GetSweepRequest { sweep: sweep.to_string() }).await {
            let status = response.into_inner();
            if predicate(&status) {
                return status;
            }
            last = Some(status);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("sweep {sweep} did not reach the expected state within {limit:?}; last: {last:#?}");
}
