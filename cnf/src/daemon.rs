//! The start and the end of a daemon's `main`, the same for `pmip-lma` and `pmip-mag`: load
//! and check the configuration (a bad one exits with code 2 before anything starts), start
//! tracing and the runtime, run the daemon, and turn its outcome into an exit code.

use std::future::Future;
use std::path::Path;
use std::process::ExitCode;

use pmip::config::{ApiConfig, ConfigError, TracingConfig};
use serde::de::DeserializeOwned;

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
    if s.check_only {
        println!("{}: ok", s.config.display());
        return ExitCode::SUCCESS;
    }
    let _guard = match crate::telemetry::init((s.tracing)(&cfg), program) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("{program}: {e:#}");
            return ExitCode::from(EXIT_BAD_CONFIG as u8);
        }
    };
    let rt = match runtime(program) {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    match rt.block_on(daemon(cfg)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("{program}: {e:#}");
            ExitCode::FAILURE
        }
    }
}
