//! `pmip-mag --config FILE`: the command line of the Proxy Mobile IPv6 mobile access gateway.
//! A library function, so that the namespace lab can run the same daemon from its own
//! executable when `pmip-mag` is not installed next to it.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use crate::core::{Core, Parts, load_saved};
use crate::metrics::Metrics;
use anyhow::Context;
use clap::Parser;
use cnf::config::first_global_ipv6;
use cnf::esp::Signalling;
use pmip::config::MagConfig;
use tracing::info;

#[derive(Debug, Parser)]
#[command(
    name = "pmip-mag",
    version,
    about = "Proxy Mobile IPv6 mobile access gateway (RFC 5213)"
)]
struct Args {
    /// The configuration file (YAML; every field is described in the README).
    #[arg(long, short)]
    config: PathBuf,
    /// The proxy-CoA, overriding the file (also `PMIP_PROXY_COA`, a comma-separated list whose
    /// first global IPv6 address is used).
    #[arg(long, env = "PMIP_PROXY_COA")]
    proxy_coa: Option<String>,
    /// This MAG's name, overriding the file (also `PMIP_NODE_NAME`).
    #[arg(long, env = "PMIP_NODE_NAME")]
    name: Option<String>,
    /// De-register every node on SIGTERM. Without it a restart keeps the nodes' bindings:
    /// an upgrade is not a detach.
    #[arg(long)]
    deregister_on_exit: bool,
    /// Where the address comes from when the pod is not on the host network (a Multus
    /// attachment); the address option, when it holds a global IPv6 address, wins.
    #[command(flatten)]
    attachment: cnf::attachment::TransportAttachment,
    /// Check the configuration and exit.
    #[arg(long)]
    check_config: bool,
    /// Remove every route, rule and address this MAG owns and put back the sysctl values it
    /// found before it changed them, then exit.
    #[arg(long)]
    cleanup: bool,
    /// Set the sysctls the datapath needs (each only when it differs; the value found is
    /// recorded for --cleanup), print them, then exit: what a privileged init container runs
    /// before a daemon that sees /proc/sys read-only.
    #[arg(long, conflicts_with = "cleanup")]
    set_sysctls: bool,
}

/// Runs `pmip-mag` with these arguments (the first is the program name).
pub fn main_from(args: impl IntoIterator<Item = std::ffi::OsString>) -> ExitCode {
    let args: Args = match cnf::daemon::parse_args(args) {
        Ok(a) => a,
        Err(code) => return code,
    };
    // On a secondary network the address is the attachment's: wait for it (not for
    // --check-config, which checks the file).
    let from_attachment = if args
        .proxy_coa
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
                eprintln!("pmip-mag: {e:#}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        None
    };
    cnf::daemon::main(
        cnf::daemon::Start {
            program: "pmip-mag",
            config: &args.config,
            check_only: args.check_config,
            adjust: Box::new(|c: &mut MagConfig| {
                if let Some(a) = args
                    .proxy_coa
                    .as_deref()
                    .and_then(first_global_ipv6)
                    .or(from_attachment)
                {
                    c.proxy_coa = a;
                }
                if let Some(n) = args.name.clone().filter(|n| !n.is_empty()) {
                    c.name = n;
                }
            }),
            validate: MagConfig::validate,
            advisories: MagConfig::advisories,
            tracing: |c| &c.tracing,
            api: |c| &c.api,
        },
        |cfg| async move {
            if args.set_sysctls {
                cnf::datapath::set_sysctls(&cfg.datapath, cfg.proxy_coa, &cfg.state_dir).await?;
                return Ok(());
            }
            run(cfg, args.cleanup, args.deregister_on_exit).await
        },
    )
}

async fn run(mut cfg: MagConfig, cleanup: bool, deregister_on_exit: bool) -> anyhow::Result<()> {
    let datapath = cnf::datapath::open(&cfg.datapath, cfg.proxy_coa, &cfg.state_dir)
        .await
        .context("datapath")?;
    if cleanup {
        let r = datapath.cleanup().await.context("cleanup")?;
        info!(?r, "removed everything this MAG owned");
        let restored = cnf::datapath::restore_sysctls(&cfg.state_dir).context("cleanup")?;
        info!(
            restored = restored.len(),
            "sysctls put back as they were found"
        );
        return Ok(());
    }
    // Router Advertisements announce the tunnel MTU unless the file says otherwise
    // (KERNEL-DATAPATH: the encapsulation drops oversize packets silently).
    if cfg.router_advertisement.mtu.is_none() {
        cfg.router_advertisement.mtu = Some(datapath.settings().tunnel_mtu());
    }
    std::fs::create_dir_all(&cfg.state_dir)
        .with_context(|| format!("state_dir {}", cfg.state_dir.display()))?;
    let state_file = cfg.state_dir.join("mag-bindings.json");
    let state_kept = state_file.exists();
    let saved = load_saved(&state_file)?;
    let counter = cnf::restart::CounterFile::new(cfg.state_dir.join("mag-restart-counter"));
    let restart_counter = counter.on_start(state_kept)?;
    let epoch = u64::from(cnf::restart::CounterFile::new(cfg.state_dir.join("mag-starts")).bump()?);
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = Metrics::new(&mut registry);
    cnf::datapath::register_metrics(&mut registry, &datapath);
    // A tentative address cannot be bound: wait for duplicate address detection, or say so.
    cnf::address::wait_until_usable(cfg.proxy_coa).await?;
    let transport = Signalling::open(cfg.proxy_coa, &cfg.ipsec, &cfg.state_dir, &mut registry)?;
    let fixed_mac = cfg.domain.link_local.link_layer_address();
    let (access, access_rx) = crate::access_glue::start(&cfg.access_interfaces, fixed_mac)
        .await
        .context("access interfaces")?;
    // Always on: profiles with IPv4 may come from the policy server at any time, and the
    // capture passes only ARP and DHCP-to-server frames to user space.
    let ipv4 = crate::access::ipv4::Ipv4Access::start(fixed_mac_bytes(&cfg))
        .context("IPv4 access (DHCP and ARP)")?;
    let buffer = if cfg.domain.fast_handover.mode == pmip::config::FastHandoverMode::Off {
        None
    } else {
        let fh = &cfg.domain.fast_handover;
        Some(
            crate::buffer::Buffer::open(
                crate::buffer::Limits {
                    packets: fh.buffer_packets as usize,
                    bytes: fh.buffer_bytes as usize,
                },
                fixed_mac_bytes(&cfg),
                cfg.proxy_coa,
            )
            .await
            .context("fast-handover buffer")?,
        )
    };
    let seed = cnf::daemon::seed(epoch);
    let api_cfg = cfg.api.clone();
    let fast_cfg = cfg.domain.fast_handover.clone();
    let metrics_addr = cfg.metrics.listen;
    let policy_server = cfg
        .policy_server
        .as_deref()
        .map(|url| crate::policy::endpoint(url, cfg.policy_server_tls.as_ref()))
        .transpose()?;
    let (core, handle) = Core::new(
        Parts {
            config: cfg,
            restart_counter,
            epoch,
            datapath,
            transport,
            ra: access.clone(),
            access: access_rx,
            ipv4: Some(ipv4),
            buffer,
            metrics,
            clock: cnf::Clock::new(),
            seed,
            state_file,
        },
        &saved,
    )
    .await?;
    cnf::daemon::spawn_metrics(metrics_addr, Arc::new(registry));
    if let Some(endpoint) = policy_server {
        tokio::spawn(crate::policy::follow(endpoint, handle.clone()));
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let api = crate::api::serve(api_cfg, fast_cfg, handle, access, stop_rx.clone()).await?;
    let core_task = tokio::spawn(core.run(cnf::daemon::stopped(stop_rx), deregister_on_exit));
    cnf::daemon::until_terminated(stop_tx, core_task, api).await;
    Ok(())
}

fn fixed_mac_bytes(cfg: &MagConfig) -> [u8; 6] {
    let mut mac = [0u8; 6];
    let ll = cfg.domain.link_local.link_layer_address();
    if ll.as_bytes().len() == 6 {
        mac.copy_from_slice(ll.as_bytes());
    }
    mac
}
