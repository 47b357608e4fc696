//! The start and the end of a daemon's `main`, the same for `pmip-lma` and `pmip-mag`: load
//! and check the configuration (a bad one exits with code 2 before anything starts), start
//! tracing and the runtime, run the daemon, and turn its outcome into an exit code.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use pmip::config::{ApiConfig, ConfigError, TracingConfig};
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::EXIT_BAD_CONFIG;

/// A daemon's command line, or the exit code to leave with: 0 after `--help` or `--version`
/// (printed), 2 after a usage error (printed), like a bad configuration.
pub fn parse_args<A: clap::Parser>(
    args: impl IntoIterator<Item = std::ffi::OsString>,
) -> Result<A, ExitCode> {
    A::try_parse_from(args).map_err(|e| {
        let _ = e.print();
        if e.use_stderr() {
            ExitCode::from(EXIT_BAD_CONFIG as u8)
        } else {
            ExitCode::SUCCESS
        }
    })
}
/// What [`main`] needs to know about one daemon's configuration.
pub struct Start<'a, C> {
    /// The program's name, for messages and traces.
    pub program: &'static str,
    pub config: &'a Path,
    /// `--check-config`: report whether the file is good, and exit.
    pub check_only: bool,
    /// The command line's overrides of the file.
    pub adjust: Box<dyn FnOnce(&mut C) + 'a>,
    pub validate: fn(&C) -> Result<(), ConfigError>,
    /// What the file sets that the RFCs advise against: printed, then logged at start.
    pub advisories: fn(&C) -> Vec<String>,
    pub tracing: fn(&C) -> &TracingConfig,
    pub api: fn(&C) -> &ApiConfig,
}

impl<C> std::fmt::Debug for Start<'_, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Start")
            .field("program", &self.program)
            .field("config", &self.config)
            .field("check_only", &self.check_only)
            .finish_non_exhaustive()
    }
}

/// The two-worker Tokio runtime the programs run on; when it cannot start, the reason is
/// printed under `program`'s name and the exit code to return comes back.
pub fn runtime(program: &str) -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("{program}: cannot start the runtime: {e}");
            ExitCode::FAILURE
        })
}

/// Runs `daemon` with the configuration on a two-thread runtime.
pub fn main<C, F, Fut>(s: Start<'_, C>, daemon: F) -> ExitCode
where
    C: DeserializeOwned,
    F: FnOnce(C) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let program = s.program;
    let cfg = match crate::config::load::<C>(s.config, s.adjust, s.validate) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{program}: {e}");
            return ExitCode::from(EXIT_BAD_CONFIG as u8);
        }
    };
    // What only shows when it is used (the TLS files, the tracing filter): before anything
    // starts, and by --check-config too.
    let api = (s.api)(&cfg);
    if let Err(e) = crate::telemetry::check((s.tracing)(&cfg))
        .and_then(|()| crate::grpc::server(api).map(drop).map_err(Into::into))
    {
        eprintln!("{program}: {}: {e:#}", s.config.display());
        return ExitCode::from(EXIT_BAD_CONFIG as u8);
    }
    let advisories = (s.advisories)(&cfg);
    for a in &advisories {
        eprintln!("{program}: {}: warning: {a}", s.config.display());
    }
    if s.check_only {
        println!("{}: ok", s.config.display());
        return ExitCode::SUCCESS;
    }
    let rt = match runtime(program) {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    // The OTLP exporter's gRPC channel lives on the runtime: it is built inside it, and
    // flushed (the guard dropped) while the runtime still runs.
    let guard = match rt.block_on(async { crate::telemetry::init((s.tracing)(&cfg), program) }) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("{program}: {e:#}");
            return ExitCode::from(EXIT_BAD_CONFIG as u8);
        }
    };
    for a in &advisories {
        tracing::warn!(config = %s.config.display(), "{a}");
    }
    let code = match rt.block_on(daemon(cfg)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("{program}: {e:#}");
            ExitCode::FAILURE
        }
    };
    drop(guard);
    code
}

/// How long the gRPC server gets to end its streams after the core stopped: a client holding
/// a stream open (a health or binding Watch) must not hold the process.
pub const API_DRAIN: Duration = Duration::from_secs(5);

/// The seed of a daemon's state machine (sequence numbers, generated addresses): different
/// on every start of every process.
pub fn seed(epoch: u64) -> u64 {
    epoch.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ u64::from(std::process::id())
}

/// Serves `/metrics` on `addr` in the background, when an address is configured.
pub fn spawn_metrics(
    addr: Option<SocketAddr>,
    registry: Arc<prometheus_client::registry::Registry>,
) {
    if let Some(addr) = addr {
        tokio::spawn(async move {
            if let Err(e) = crate::telemetry::serve_metrics(addr, registry).await {
                tracing::error!(%addr, error = %e, "metrics endpoint");
            }
        });
    }
}

/// Resolves once `stop` turns true (or nobody can turn it any more).
pub async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// The end of both daemons: on SIGTERM or SIGINT, `stop` turns true, the core task drains
/// and ends, then the API server gets [`API_DRAIN`] to close its streams.
pub async fn until_terminated(
    stop: watch::Sender<bool>,
    core: JoinHandle<()>,
    api: JoinHandle<()>,
) {
    tracing::info!("running");
    let why = crate::signal::terminated().await;
    tracing::info!(signal = why, "draining");
    let _ = stop.send(true);
    let _ = core.await;
    if tokio::time::timeout(API_DRAIN, api).await.is_err() {
        tracing::warn!("the gRPC server did not stop within 5 s; leaving its streams behind");
    }
    tracing::info!("stopped");
}
