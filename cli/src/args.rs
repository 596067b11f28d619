//! Command-line interface (clap derive).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// groksweep: grokking experiments at scale.
#[derive(Debug, Parser)]
#[command(name = "groksweep", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
    /// Log lines on stderr: `text` (coloured only on a terminal) or `json`
    /// (one object per line, for log collectors).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "GROKSWEEP_LOG_FORMAT")]
    pub log_format: LogFormat,
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines; ANSI colours only when stderr is a terminal.
    Text,
    /// One JSON object per line, with the event's fields and its spans.
    Json,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a sweep on this machine: an in-process coordinator on a loopback
    /// port and local workers that talk to it over gRPC. Running it again resumes.
    Run(RunArgs),
    /// Serve a coordinator for a cluster.
    Coordinator(CoordinatorArgs),
    /// Submit a sweep to a running coordinator.
    Submit(SubmitArgs),
    /// Lease and train trials from a coordinator.
    Worker(WorkerArgs),
    /// Show sweeps, or one sweep's trials.
    Status(StatusArgs),
    /// Cancel a sweep: queued and running trials stop.
    Cancel(CancelArgs),
    /// Validate a sweep spec and list its trials; runs nothing.
    Plan(PlanArgs),
    /// Query the results with SQL (DataFusion): tables `trials`, `progress`, `spectra`, `curves`, `phases`.
    Sql(SqlArgs),
    /// Find every trial's phases from its results, write the `phases` table,
    /// and print the phase diagram and the grokking step against each swept axis.
    Analyze(AnalyzeArgs),
    /// Write one self-contained HTML report of a sweep: its table, phase
    /// diagram and each trial's curves with the phases shaded.
    Report(ReportArgs),
    /// Draw the diffusion family's symbol images into a contact sheet (PNG):
    /// one row per class, images 0.. of each class left to right.
    Glyphs(GlyphsArgs),
}

/// `groksweep glyphs`.
#[derive(Debug, Args)]
pub struct GlyphsArgs {
    /// Number of classes P (rows of the sheet).
    #[arg(long, default_value_t = 23)]
    pub modulus: u32,
    /// Images per class (columns); image 0 is the clean prototype.
    #[arg(long, default_value_t = 8)]
    pub per_class: u32,
    /// Glyph seed (the sweep's `diffusion.glyph_seed`).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Image side in pixels (`diffusion.image_size`).
    #[arg(long, default_value_t = 28)]
    pub image_size: usize,
    /// Augmentation strength in [0, 1] (`diffusion.augmentation`).
    #[arg(long, default_value_t = 0.5)]
    pub augmentation: f64,
    /// Each pixel drawn as a block of this size.
    #[arg(long, default_value_t = 3)]
    pub scale: usize,
    /// Output PNG.
    #[arg(long)]
    pub out: PathBuf,
}

/// Where the coordinator is and how to authenticate.
#[derive(Debug, Args)]
pub struct ClientArgs {
    /// Coordinator address.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    pub coordinator: String,
    /// Shared token, when the coordinator requires one.
    #[arg(long, env = "GROKSWEEP_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// PEM file of the certificate authority that signed the coordinator's
    /// certificate, for an `https://` address (default: the system's roots).
    #[arg(long, env = "GROKSWEEP_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
}

/// `groksweep run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Sweep spec (YAML).
    pub spec: PathBuf,
    /// Where state and results are kept.
    #[arg(long, default_value = "groksweep-data")]
    pub data_dir: PathBuf,
    /// Local workers (in-process, each with its own gRPC connection to the coordinator).
    #[arg(long, default_value_t = 1)]
    pub workers: u32,
    /// Packs each worker trains at once, each on its own thread.
    #[arg(long, default_value_t = 1)]
    pub slots: u32,
    /// CPU threads of each pack's training step, its batch cut into as many
    /// parts (default: this machine's cores shared by workers × slots).
    #[arg(long)]
    pub step_threads: Option<u32>,
    /// Most trials in one pack, trained together as one stacked program
    /// (default: chosen for the backend, see the README).
    #[arg(long)]
    pub pack: Option<u32>,
    /// A sweep with more trials than this is refused before anything starts.
    #[arg(long, default_value_t = sweep_coordinator::DEFAULT_MAX_TRIALS_PER_SWEEP)]
    pub max_trials_per_sweep: u64,
}

/// `groksweep coordinator`.
#[derive(Debug, Args)]
pub struct CoordinatorArgs {
    /// Address to listen on (port 0 picks a free port; the chosen one is printed).
    #[arg(long, default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,
    /// Where state and results are kept.
    #[arg(long, default_value = "groksweep-data")]
    pub data_dir: PathBuf,
    /// Shared token that workers and clients must present.
    #[arg(long, env = "GROKSWEEP_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Seconds after which a lease without heartbeat lapses.
    #[arg(long, default_value_t = 30.0)]
    pub lease_ttl_secs: f64,
    /// Seconds between worker heartbeats.
    #[arg(long, default_value_t = 5.0)]
    pub heartbeat_secs: f64,
    /// Seconds between Parquet rolls of running trials' progress.
    #[arg(long, default_value_t = 5.0)]
    pub roll_secs: f64,
    /// A submitted sweep with more trials than this is refused at once.
    #[arg(long, default_value_t = sweep_coordinator::DEFAULT_MAX_TRIALS_PER_SWEEP)]
    pub max_trials_per_sweep: u64,
    /// PEM certificate (chain) to serve TLS with; needs --tls-key. Clients
    /// then use an `https://` address.
    #[arg(long, requires = "tls_key", env = "GROKSWEEP_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert", env = "GROKSWEEP_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Serve Prometheus metrics over HTTP on this address (`/metrics`).
    #[arg(long)]
    pub metrics_listen: Option<SocketAddr>,
    /// Seconds a stopping coordinator (SIGTERM, Ctrl-C) goes on writing
    /// buffered results to Parquet; what is left stays in its state and is
    /// written at its next start.
    #[arg(long, default_value_t = 1.0)]
    pub shutdown_flush_secs: f64,
}

/// `groksweep submit`.
#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// Sweep spec (YAML).
    pub spec: PathBuf,
    /// Coordinator connection.
    #[command(flatten)]
    pub client: ClientArgs,
    /// Follow progress until the sweep finishes.
    #[arg(long)]
    pub watch: bool,
}

/// `groksweep worker`.
#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// Coordinator connection.
    #[command(flatten)]
    pub client: ClientArgs,
    /// Packs trained at once, each on its own thread.
    #[arg(long, default_value_t = 1)]
    pub slots: u32,
    /// CPU threads of each pack's training step, its batch cut into as many
    /// parts (default: this machine's cores shared by the slots).
    #[arg(long)]
    pub step_threads: Option<u32>,
    /// Most trials in one pack, trained together as one stacked program
    /// (default: chosen for the backend, see the README).
    #[arg(long)]
    pub pack: Option<u32>,
    /// Where each running trial's checkpoints are kept until it ends
    /// (default: the system's temporary directory).
    #[arg(long, env = "GROKSWEEP_SCRATCH_DIR")]
    pub scratch_dir: Option<PathBuf>,
    /// Name in the coordinator's records (default: host name).
    #[arg(long)]
    pub name: Option<String>,
    /// Where judge classifiers of the diffusion family are cached (trained
    /// once per glyph set, shared by this worker's trials).
    #[arg(long, env = "GROKSWEEP_CACHE_DIR", default_value = "groksweep-cache")]
    pub cache_dir: std::path::PathBuf,
    /// Serve Prometheus metrics over HTTP on this address (`/metrics`).
    #[arg(long)]
    pub metrics_listen: Option<SocketAddr>,
    /// Serve `grpc.health.v1` on this address: SERVING while the worker's
    /// control loop turns, NOT_SERVING when it is stuck or stopping.
    #[arg(long)]
    pub health_listen: Option<SocketAddr>,
    /// Exit (status 0) after this many seconds with nothing to train and
    /// nothing to lease, so that a pilot job frees its node when the queue is
    /// empty. Time the coordinator is unreachable does not count.
    #[arg(long, env = "GROKSWEEP_EXIT_WHEN_IDLE")]
    pub exit_when_idle: Option<f64>,
}

/// `groksweep status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Coordinator connection.
    #[command(flatten)]
    pub client: ClientArgs,
    /// Show this sweep's trials.
    #[arg(long)]
    pub sweep: Option<String>,
    /// Keep refreshing until the sweep (or every sweep) is finished.
    #[arg(long)]
    pub watch: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `groksweep cancel`.
#[derive(Debug, Args)]
pub struct CancelArgs {
    /// Sweep name.
    pub sweep: String,
    /// Coordinator connection.
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `groksweep plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Sweep spec (YAML).
    pub spec: PathBuf,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `groksweep sql`.
#[derive(Debug, Args)]
pub struct SqlArgs {
    /// The query, e.g. "SELECT * FROM trials".
    pub query: String,
    /// Where the results are.
    #[arg(long, default_value = "groksweep-data")]
    pub data_dir: PathBuf,
    /// Only this sweep's results.
    #[arg(long)]
    pub sweep: Option<String>,
}

/// `groksweep analyze`.
#[derive(Debug, Args)]
pub struct AnalyzeArgs {
    /// Sweep name.
    pub sweep: String,
    /// Where the results are.
    #[arg(long, default_value = "groksweep-data")]
    pub data_dir: PathBuf,
    /// Phase-diagram rows: an axis of `trials` (default: the first swept axis).
    #[arg(long)]
    pub rows: Option<String>,
    /// Phase-diagram columns (default: the second swept axis, if any).
    #[arg(long)]
    pub columns: Option<String>,
    /// Rule thresholds (defaults in the README, "The `phases` table").
    #[command(flatten)]
    pub rules: RuleArgs,
    /// Also estimate the local learning coefficient at every saved checkpoint
    /// of the sweep's transformer trials and write it as the `llc` measure
    /// (slow: chains × (burn-in + draws) full-batch steps per checkpoint).
    #[arg(long)]
    pub llc: bool,
    /// The LLC sampler's settings (defaults: devinterp's).
    #[command(flatten)]
    pub llc_settings: LlcArgs,
}

/// The LLC sampler's settings.
#[derive(Debug, Args)]
pub struct LlcArgs {
    /// SGLD chains per checkpoint.
    #[arg(long, default_value_t = 10)]
    pub llc_chains: u32,
    /// Draws averaged per chain.
    #[arg(long, default_value_t = 100)]
    pub llc_draws: u32,
    /// Steps dropped at the start of each chain.
    #[arg(long, default_value_t = 0)]
    pub llc_burn_in: u32,
    /// SGLD step size ε.
    #[arg(long, default_value_t = 1e-3)]
    pub llc_epsilon: f64,
    /// Localisation strength γ.
    #[arg(long, default_value_t = 0.0)]
    pub llc_gamma: f64,
    /// nβ (default n / ln n, n the trial's training pairs).
    #[arg(long)]
    pub llc_nbeta: Option<f64>,
    /// Seed of the chains' noise.
    #[arg(long, default_value_t = 0)]
    pub llc_seed: u64,
    /// Only these trials (comma-separated ids).
    #[arg(long, value_delimiter = ',')]
    pub llc_trials: Option<Vec<String>>,
}

/// `groksweep report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Sweep name.
    pub sweep: String,
    /// Where the results are.
    #[arg(long, default_value = "groksweep-data")]
    pub data_dir: PathBuf,
    /// The HTML file to write.
    #[arg(long, default_value = "report.html")]
    pub out: PathBuf,
    /// Draw only these trials (comma-separated ids).
    #[arg(long, value_delimiter = ',')]
    pub trials: Option<Vec<String>>,
    /// Draw only trials matching this SQL condition over `trials`, e.g. "data_fraction >= 0.5".
    #[arg(long = "where")]
    pub filter: Option<String>,
    /// Draw at most this many trials (the table lists every trial).
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
    /// Also write every figure as a PNG file (twice the page's resolution) into this directory.
    #[arg(long)]
    pub png: Option<PathBuf>,
    /// Rule thresholds (defaults in the README, "The `phases` table").
    #[command(flatten)]
    pub rules: RuleArgs,
}

/// Thresholds of the phase rules; each overrides its documented default.
#[derive(Debug, Args)]
pub struct RuleArgs {
    /// Liu et al.'s class: accuracy that train and test must reach [0.9].
    #[arg(long)]
    pub class_accuracy: Option<f64>,
    /// Liu et al.'s class: steps between the two above which a trial groks [1000].
    #[arg(long)]
    pub class_gap: Option<i64>,
    /// Liu et al.'s class: steps within which the accuracy must be reached [the whole run].
    #[arg(long)]
    pub class_budget: Option<i64>,
    /// Segments of the regression of log10 test loss, at most [4].
    #[arg(long)]
    pub max_segments: Option<usize>,
    /// A segment next to the steepest is cleanup if it falls at least this fraction as fast [0.2].
    #[arg(long)]
    pub fast_fraction: Option<f64>,
    /// Decades the test loss must fall for a cleanup to count [1].
    #[arg(long)]
    pub cleanup_min_decades: Option<f64>,
}
