//! `pmip-lab`: a PMIPv6 domain in network namespaces, running the real daemons.
//!
//! ```text
//! pmip-lab demo [--fast-handover predictive] [--json] [--report timeline.svg]
//! pmip-lab demo --ipsec --capture lma.pcap --json   # signalling in ESP, the LMA's link captured
//! pmip-lab demo --ipv4 --json          # a dual-stack node, its TCP stream over IPv4
//! pmip-lab up --mags 3 --nodes 5      # leaves a domain running
//! pmip-lab demo --radio veth-move     # the lab's first radio stand-in, to compare
//! pmip-lab status | attach --node 2 | detach --node 2 | handover --node 2 --to 3
//! pmip-lab down
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};
use e2e::demo::{self, DemoSpec, HandoverMode};
use e2e::lab::{self, Binaries, Lab, Radio, Spec};

#[derive(Debug, Parser)]
#[command(
    name = "pmip-lab",
    version,
    about = "A Proxy Mobile IPv6 domain in network namespaces (needs root)"
)]
struct Args {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Mode {
    Plain,
    Predictive,
    Reactive,
}

/// The lab's stand-in for the radio.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum RadioArg {
    /// The node has a link to every MAG through a bridge; a move is carrier down at the old
    /// MAG and up at the new one (microseconds).
    Carrier,
    /// The node has one veth whose MAG end moves between namespaces (10-30 ms).
    VethMove,
}

impl From<RadioArg> for Radio {
    fn from(r: RadioArg) -> Self {
        match r {
            RadioArg::Carrier => Radio::Carrier,
            RadioArg::VethMove => Radio::VethMove,
        }
    }
}

impl From<Mode> for HandoverMode {
    fn from(m: Mode) -> Self {
        match m {
            Mode::Plain => HandoverMode::Plain,
            Mode::Predictive => HandoverMode::Predictive,
            Mode::Reactive => HandoverMode::Reactive,
        }
    }
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Attach a node, run a TCP stream to the correspondent node, hand the node over between
    /// MAGs several times, and report what the traffic saw.
    Demo {
        #[arg(long, default_value_t = 2)]
        mags: usize,
        #[arg(long, default_value_t = 6)]
        handovers: usize,
        /// Time between handovers.
        #[arg(long, default_value_t = 1500)]
        interval_ms: u64,
        /// Fast handovers (RFC 5949), or plain RFC 5213 handovers.
        #[arg(long, value_enum, default_value_t = Mode::Plain)]
        fast_handover: Mode,
        /// Print the report as one JSON object.
        #[arg(long)]
        json: bool,
        /// Write a timeline of the TCP throughput around each handover (SVG).
        #[arg(long)]
        report: Option<PathBuf>,
        /// Prefix of the namespaces.
        #[arg(long, default_value = "pmipdemo")]
        name: String,
        /// Keep configurations and daemon logs in this directory.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Protect the signalling with IPsec ESP (RFC 5213 §4): SA pairs with keys made for
        /// the lab, `ipsec.mode: auto` (in the daemons where the kernel has no ESP).
        #[arg(long)]
        ipsec: bool,
        /// Capture the LMA's transport link into this pcap file (needs dumpcap and tshark,
        /// which reads it back: see `signalling` in the report).
        #[arg(long)]
        capture: Option<PathBuf>,
        /// A dual-stack node (RFC 5844): it leases its IPv4 home address from its MAG with
        /// busybox `udhcpc`, and the TCP stream runs over IPv4 (see `ipv4_address_unchanged`
        /// in the report).
        #[arg(long)]
        ipv4: bool,
        /// The stand-in for the radio.
        #[arg(long, value_enum, default_value_t = RadioArg::Carrier)]
        radio: RadioArg,
    },
    /// Run the demo once in each handover mode (plain, predictive, reactive) and print them
    /// side by side.
    Compare {
        #[arg(long, default_value_t = 20)]
        handovers: usize,
        #[arg(long, default_value_t = 800)]
        interval_ms: u64,
        /// Downlink UDP probe rate.
        #[arg(long, default_value_t = 1000)]
        rate_pps: u32,
        #[arg(long)]
        json: bool,
        #[arg(long, default_value = "pmipcmp")]
        name: String,
        /// The stand-in for the radio.
        #[arg(long, value_enum, default_value_t = RadioArg::Carrier)]
        radio: RadioArg,
    },
    /// Build a domain and leave it running (see `status`).
    Up {
        #[arg(long, default_value_t = 2)]
        mags: usize,
        #[arg(long, default_value_t = 1)]
        nodes: usize,
        #[arg(long, value_enum, default_value_t = Mode::Plain)]
        fast_handover: Mode,
        /// EnableMAGLocalRouting (RFC 5213 §9.2).
        #[arg(long)]
        local_routing: bool,
        #[arg(long, default_value = "pmiplab")]
        name: String,
        /// Where configurations, state and logs go.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// The stand-in for the radio.
        #[arg(long, value_enum, default_value_t = RadioArg::Carrier)]
        radio: RadioArg,
    },
    /// Stop the daemons and remove every namespace of a lab (also after a crash).
    Down {
        #[arg(long, default_value = "pmiplab")]
        name: String,
    },
    /// Where everything is and how to reach it.
    Status {
        #[arg(long, default_value = "pmiplab")]
        name: String,
    },
    /// Bring a node's radio up at its MAG.
    Attach {
        #[arg(long)]
        node: usize,
        #[arg(long, default_value = "pmiplab")]
        name: String,
    },
    /// Take a node's radio down (its MAG's access link loses its carrier).
    Detach {
        #[arg(long)]
        node: usize,
        #[arg(long, default_value = "pmiplab")]
        name: String,
    },
    /// Move a node to another MAG.
    Handover {
        #[arg(long)]
        node: usize,
        /// The MAG to move to (1-based).
        #[arg(long)]
        to: usize,
        #[arg(long, value_enum, default_value_t = Mode::Plain)]
        mode: Mode,
        #[arg(long, default_value = "pmiplab")]
        name: String,
    },
}

fn main() -> ExitCode {
    let mut argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    // The daemons' own code, for when pmip-lma / pmip-mag are not installed next to the lab.
    if let Some(code) = Binaries::run_embedded(&mut argv) {
        return code;
    }
    if argv.get(1).and_then(|a| a.to_str()) == Some("__pmipctl") {
        argv.remove(1);
        return pmipctl_main(argv);
    }
    let args = Args::parse_from(argv);
    if !nix::unistd::geteuid().is_root() {
        eprintln!("pmip-lab: the lab builds network namespaces and needs root; run it with sudo");
        return ExitCode::from(2);
    }
    let rt = match cnf::daemon::runtime("pmip-lab") {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    match rt.block_on(run(args.command)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("pmip-lab: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `pmipctl` itself, for labs where it is not installed.
fn pmipctl_main(argv: Vec<std::ffi::OsString>) -> ExitCode {
    let cli = <pmipctl::Cli as Parser>::parse_from(argv);
    let mut stdin = std::io::stdin().lock();
    let mut stdout = std::io::stdout().lock();
    let mut stderr = std::io::stderr();
    match pmipctl::run(cli, &mut stdin, &mut stdout, &mut stderr) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is_broken_pipe() => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            e.exit_code()
        }
    }
}

fn binaries() -> anyhow::Result<Binaries> {
    // The lab's own copy of the daemons, so that the daemons are always the same build as
    // the lab; PMIP_LAB_DAEMONS=DIR runs installed binaries instead.
    match std::env::var_os("PMIP_LAB_DAEMONS") {
        Some(dir) => Binaries::from_dir(std::path::Path::new(&dir)),
        None => Ok(Binaries::embedded(&std::env::current_exe()?)),
    }
}

async fn run(cmd: Cmd) -> anyhow::Result<ExitCode> {
    match cmd {
        Cmd::Demo {
            mags,
            handovers,
            interval_ms,
            fast_handover,
            json,
            report,
            name,
            dir,
            ipsec,
            capture,
            ipv4,
            radio,
        } => {
            let mode: HandoverMode = fast_handover.into();
            let mut spec = Spec::new(&name, mags.max(2), 1);
            spec.fast_handover = mode.domain_mode();
            spec.dir = dir;
            spec.ipv4 = ipv4;
            spec.radio = radio.into();
            if ipsec {
                spec.ipsec = pmip::config::IpsecMode::Auto;
            }
            let bins = binaries()?;
            let standalone = bins.standalone();
            // Ctrl-C removes everything: the lab is dropped when the run future is.
            let mut lab = Lab::up(spec, bins).await?;
            let capture = match capture {
                Some(path) => {
                    let path = std::path::absolute(&path)?;
                    Some(e2e::capture::Capture::start(&lab.lma_ns, "tr0", &path)?)
                }
                None => None,
            };
            let d = DemoSpec {
                handovers,
                interval: Duration::from_millis(interval_ms),
                mode,
                ipv4,
                ..DemoSpec::default()
            };
            let r = tokio::select! {
                r = demo::run(&mut lab, &d) => r?,
                _ = tokio::signal::ctrl_c() => bail!("interrupted"),
            };
            let mut r = r;
            if ipsec {
                r.signalling_protected = demo::lma_signalling_protected(&lab)?;
            }
            if let Some(c) = capture {
                let pcap = c.stop()?;
                let check = e2e::capture::check_signalling(&pcap, &lab.esp_sas()?)?;
                r.signalling_protected &= check.protected();
                r.signalling = Some(check);
            }
            r.daemons = if standalone {
                "pmip-lma and pmip-mag binaries".into()
            } else {
                "the daemons' code run by pmip-lab".into()
            };
            if let Some(path) = report {
                std::fs::write(&path, r.svg()).with_context(|| path.display().to_string())?;
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                print!("{}", r.text());
            }
            Ok(
                if r.tcp_survived
                    && r.address_unchanged
                    && r.ipv4_address_unchanged != Some(false)
                    && (!ipsec || r.signalling_protected)
                {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                },
            )
        }
        Cmd::Compare {
            handovers,
            interval_ms,
            rate_pps,
            json,
            name,
            radio,
        } => {
            let d = DemoSpec {
                radio: radio.into(),
                handovers,
                interval: Duration::from_millis(interval_ms),
                probe_rate_pps: rate_pps,
                tcp_rate_bps: 2_000_000,
                ..DemoSpec::default()
            };
            let modes = [
                HandoverMode::Plain,
                HandoverMode::Predictive,
                HandoverMode::Reactive,
            ];
            let bins = binaries()?;
            let reports = tokio::select! {
                r = demo::compare(&name, &modes, &d, &bins) => r?,
                _ = tokio::signal::ctrl_c() => bail!("interrupted"),
            };
            let rows: Vec<demo::ModeSummary> = reports.iter().map(demo::ModeSummary::of).collect();
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                print!("{}", demo::side_by_side(&rows, rate_pps));
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Up {
            mags,
            nodes,
            fast_handover,
            local_routing,
            name,
            dir,
            radio,
        } => {
            let mode: HandoverMode = fast_handover.into();
            let mut spec = Spec::new(&name, mags, nodes);
            spec.fast_handover = mode.domain_mode();
            spec.local_routing = local_routing;
            spec.radio = radio.into();
            spec.dir = Some(dir.unwrap_or_else(|| PathBuf::from(format!("/run/pmip-lab/{name}"))));
            let mut lab = Lab::up(spec, binaries()?).await?;
            for n in 0..lab.nodes.len() {
                lab.attach(n).await?;
            }
            for n in 0..lab.nodes.len() {
                lab.wait_node_address(n, Duration::from_secs(10)).await?;
            }
            lab.save_state()?;
            lab.keep_running();
            print!("{}", lab.status().await);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Down { name } => {
            let r = lab::down(&name)?;
            println!(
                "lab {name}: stopped {} daemons, removed {} namespaces ({})",
                r.daemons,
                r.namespaces.len(),
                r.namespaces.join(", ")
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Status { name } => {
            let lab = Lab::load(&name, binaries()?)?;
            print!("{}", lab.status().await);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Attach { node, name } => {
            let lab = Lab::load(&name, binaries()?)?;
            let n = lab.node_index(node)?;
            let Some(at) = lab.nodes[n].at else {
                bail!("node {node} has no link to a MAG");
            };
            lab.attach(n).await?;
            // Attached means registered: the LMA's binding at this MAG, the address from it.
            let a = lab
                .wait_registered(n, at, Duration::from_secs(10))
                .await
                .with_context(|| format!("node {node} did not attach at MAG{}", at + 1))?;
            println!("node {node} attached at MAG{}: {a}", at + 1);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Detach { node, name } => {
            let lab = Lab::load(&name, binaries()?)?;
            lab.detach(lab.node_index(node)?).await?;
            println!("node {node} detached");
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Handover {
            node,
            to,
            mode,
            name,
        } => {
            let mut lab = Lab::load(&name, binaries()?)?;
            let n = lab.node_index(node)?;
            if to == 0 || to > lab.spec.mags {
                bail!("--to: a MAG from 1 to {}", lab.spec.mags);
            }
            if lab.nodes[n].at == Some(to - 1) {
                eprintln!("pmip-lab: node {node} is at MAG{to} already: nothing to hand over");
                return Ok(ExitCode::from(2));
            }
            let before = lab.node_address(n);
            let t = std::time::Instant::now();
            let moved = demo::hand_over(&mut lab, n, to - 1, mode.into()).await;
            // The link moved (or half did): record where it is before judging the handover.
            lab.save_state()?;
            let l2 = moved?;
            // Moved means re-registered: the LMA's binding at the new MAG, the same address.
            let a = lab
                .wait_registered(n, to - 1, Duration::from_secs(10))
                .await
                .with_context(|| format!("node {node} was not handed over to MAG{to}"))?;
            if let Some(b) = before.filter(|b| *b != a) {
                bail!("node {node} is registered at MAG{to} but its address changed: {b} -> {a}");
            }
            println!(
                "node {node} now at MAG{to} ({a}), moved in {:?} (the radio's switch {:?})",
                t.elapsed(),
                l2
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
