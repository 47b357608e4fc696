//! `pmip-lma --config FILE`: the command line of the Proxy Mobile IPv6 local mobility anchor.
//! A library function, so that the namespace lab can run the same daemon from its own
//! executable when `pmip-lma` is not installed next to it.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use crate::core::{Core, Parts};
use crate::metrics::Metrics;
use crate::store::Store;
use anyhow::Context;
use clap::Parser;
use cnf::config::first_global_ipv6;
use cnf::esp::Signalling;
use pmip::config::LmaConfig;
use tracing::info;

#[derive(Debug, Parser)]
#[command(
    name = "pmip-lma",
    version,
    about = "Proxy Mobile IPv6 local mobility anchor (RFC 5213)"
)]
struct Args {
    /// The configuration file (YAML; every field is described in the README).
    #[arg(long, short)]
    config: PathBuf,
    /// The LMA address, overriding the file (also `PMIP_LMA_ADDRESS`, a comma-separated list
    /// whose first global IPv6 address is used).
    #[arg(long, env = "PMIP_LMA_ADDRESS")]
    address: Option<String>,
    /// Where the address comes from when the pod is not on the host network (a Multus
    /// attachment); the address option, when it holds a global IPv6 address, wins.
    #[command(flatten)]
    attachment: cnf::attachment::TransportAttachment,
    /// Check the configuration and exit.
    #[arg(long)]
    check_config: bool,
    /// Remove every route, rule and address this LMA owns and put back the sysctl values it
    /// found before it changed them, then exit.
    #[arg(long)]
    cleanup: bool,
    /// Set the sysctls the datapath needs (each only when it differs; the value found is
    /// recorded for --cleanup), print them, then exit: what a privileged init container runs
    /// before a daemon that sees /proc/sys read-only.
    #[arg(long, conflicts_with = "cleanup")]
    set_sysctls: bool,
}

/// Runs `pmip-lma` with these arguments (the first is the program name).
pub fn main_from(args: impl IntoIterator<Item = std::ffi::OsString>) -> ExitCode {
    let args: Args = match cnf::daemon::parse_args(args) {
        Ok(a) => a,
        Err(code) => return code,
    };
    // On a secondary network the address is the attachment's: wait for it (not for
    // --check-config, which checks the file).
    let from_attachment = if args
        .address
        .as_deref()
        .and_then(first_global_ipv6)
        .is_none()
        && args.attachment.is_given()
        && !args.check_config
    {
        match args
            .attachment
            .wait_for_address(cnf::attachment::ATTACHMENT_WAIT)
        {
            Ok(a) => Some(a),
            Err(e) => {
                eprintln!("pmip-lma: {e:#}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        None
    };
    cnf::daemon::main(
        cnf::daemon::Start {
            program: "pmip-lma",
            config: &args.config,
            check_only: args.check_config,
            adjust: Box::new(|c: &mut LmaConfig| {
                if let Some(a) = args
                    .address
                    .as_deref()
                    .and_then(first_global_ipv6)
                    .or(from_attachment)
                {
                    c.address = a;
                }
            }),
            validate: LmaConfig::validate,
            advisories: LmaConfig::advisories,
            tracing: |c| &c.tracing,
            api: |c| &c.api,
        },
        |cfg| async move {
            if args.set_sysctls {
                cnf::datapath::set_sysctls(&cfg.datapath, cfg.address, &cfg.state_dir).await?;
                return Ok(());
            }
            run(cfg, args.cleanup).await
        },
    )
}

async fn run(cfg: LmaConfig, cleanup: bool) -> anyhow::Result<()> {
    if cleanup {
        let datapath = cnf::datapath::open(&cfg.datapath, cfg.address, &cfg.state_dir)
            .await
            .context("datapath")?;
        let r = datapath.cleanup().await.context("cleanup")?;
        info!(?r, "removed everything this LMA owned");
        let restored = cnf::datapath::restore_sysctls(&cfg.state_dir).context("cleanup")?;
        info!(
            restored = restored.len(),
            "sysctls put back as they were found"
        );
        return Ok(());
    }
    // The store is read, and the binding cache restored from it as it is read, while the
    // datapath opens. The kernel's routes are not read back here: they outlive the process,
    // so the core takes the store's for the kernel's and checks them in the background (a
    // dump of a million takes seconds).
    let state_dir = cfg.state_dir.clone();
    let clock = cnf::Clock::new();
    let restoring = {
        let cfg = cfg.clone();
        tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
            let t = std::time::Instant::now();
            let store = Store::open(&state_dir)?;
            let now_unix_s = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_secs());
            let run = store.begin_run(now_unix_s)?;
            let seed = cnf::daemon::seed(run.boot);
            let (service, loading) = crate::core::restore(cfg, &store, run, seed, &clock)?;
            Ok((store, run, service, loading, t.elapsed()))
        })
    };
    let (datapath, read) = tokio::join!(
        cnf::datapath::open_without_routes(&cfg.datapath, cfg.address, &cfg.state_dir),
        restoring
    );
    let (store, run, service, loading, took) = read.context("reading the store")??;
    let datapath = datapath.context("datapath")?;
    // One phase: the cache is restored from the records as they are read. `store_wait_ms`
    // is the part of it the restore spent waiting for the store's reader.
    info!(
        restart_counter = run.restart_counter,
        boot = run.boot,
        bindings = loading.records,
        restored = loading.restored,
        profiles = loading.profiles,
        took_ms = took.as_millis() as u64,
        store_wait_ms = loading.store_wait.as_millis() as u64,
        store = %store.path().display(),
        "state loaded: store read and binding cache restored"
    );
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = Metrics::new(&mut registry);
    cnf::datapath::register_metrics(&mut registry, &datapath);
    // A tentative address cannot be bound: wait for duplicate address detection, or say so.
    cnf::address::wait_until_usable(cfg.address).await?;
    let transport = Signalling::open(cfg.address, &cfg.ipsec, &cfg.state_dir, &mut registry)?;
    let api_cfg = cfg.api.clone();
    let metrics_addr = cfg.metrics.listen;
    let (core, handle) = Core::new(Parts {
        service,
        store: Arc::new(store),
        run,
        datapath,
        transport,
        metrics,
        clock,
    })
    .await?;
    cnf::daemon::spawn_metrics(metrics_addr, Arc::new(registry));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let api = crate::api::serve(api_cfg, handle, stop_rx.clone()).await?;
    let core_task = tokio::spawn(core.run(cnf::daemon::stopped(stop_rx)));
    cnf::daemon::until_terminated(stop_tx, core_task, api).await;
    Ok(())
}
