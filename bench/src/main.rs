//! `pmip-bench`: reproducible benchmarks of the real daemons in network namespaces (needs
//! root). Each prints a table, the targets with their verdicts, or everything as JSON.
//!
//! ```text
//! pmip-bench signalling [--nodes 20000]      PBU/s and PBU->PBA latency: echo, none, seg6
//! pmip-bench scale [--nodes 1000000]         memory per binding, registration, kill -9 recovery
//! pmip-bench handover [--handovers 1000]     L2 switch, L3 handover time, traffic gap, loss
//! pmip-bench datapath                        TCP through the tunnel vs plain routing, IPv6 and IPv4
//! pmip-bench all [--json]
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args as ClapArgs, Parser, Subcommand, ValueEnum};
use e2e::demo::HandoverMode;
use pmip_bench::report::Report;
use pmip_bench::signalling::Path;
use pmip_bench::{datapath, handover, scale, signalling};

#[derive(Debug, Parser)]
#[command(
    name = "pmip-bench",
    version,
    about = "Benchmarks of the pmip daemons in network namespaces (needs root)"
)]
struct Args {
    /// Print the reports as JSON (one object per benchmark, in an array for `all`).
    #[arg(long, global = true)]
    json: bool,
    /// Keep configurations, stores and daemon logs here (default: a temporary directory).
    #[arg(long, global = true)]
    dir: Option<PathBuf>,
    /// Prefix of the namespaces (at most 5 characters).
    #[arg(long, global = true, default_value = "pmb")]
    name: String,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Clone, ClapArgs)]
struct SignallingArgs {
    /// Nodes registered (and refreshed) per run.
    #[arg(long, default_value_t = 20_000)]
    nodes: usize,
    /// MAG addresses the generator sends from.
    #[arg(long, default_value_t = 16)]
    mags: usize,
    /// PBUs outstanding at once, over all MAGs.
    #[arg(long, default_value_t = 1024)]
    window: usize,
    /// Times every node is refreshed.
    #[arg(long, default_value_t = 3)]
    refresh_rounds: usize,
    /// PBUs sent one at a time for the unloaded latency.
    #[arg(long, default_value_t = 2000)]
    unloaded: usize,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Datapaths {
    /// The kernel's routes, then none.
    Both,
    /// A kernel route per binding: seg6 where the kernel has it, else ip6tnl, else the
    /// userspace tunnel.
    #[value(alias = "seg6")]
    Kernel,
    None,
}

#[derive(Debug, Clone, ClapArgs)]
struct ScaleArgs {
    /// Bindings (1000000 for the recorded figures).
    #[arg(long, default_value_t = 100_000)]
    nodes: usize,
    #[arg(long, default_value_t = 16)]
    mags: usize,
    #[arg(long, default_value_t = 1024)]
    window: usize,
    #[arg(long, value_enum, default_value_t = Datapaths::Both)]
    datapath: Datapaths,
    /// Refresh PBUs sent at full size to measure the capacity there.
    #[arg(long, default_value_t = 200_000)]
    refresh_sample: usize,
    /// Dual-stack nodes: every binding gets an IPv4 home address too (RFC 5844).
    #[arg(long)]
    ipv4: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    Plain,
    Predictive,
    Reactive,
}

#[derive(Debug, Clone, ClapArgs)]
struct HandoverArgs {
    /// Handovers per mode (1000 for the recorded figures).
    #[arg(long, default_value_t = 200)]
    handovers: usize,
    /// Modes to run.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Mode::Plain, Mode::Predictive, Mode::Reactive])]
    modes: Vec<Mode>,
    /// Downlink probe packets per second (the gap's resolution is its spacing).
    #[arg(long, default_value_t = 2000)]
    rate: u32,
    /// Time the node stays after each handover completed.
    #[arg(long, default_value_t = 50)]
    settle_ms: u64,
    /// The lab's stand-in for the radio: carrier down and up (microseconds), or a veth moved
    /// between namespaces (10-30 ms; the lab's first stand-in), to compare.
    #[arg(long, value_enum, default_value_t = RadioArg::Carrier)]
    radio: RadioArg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum RadioArg {
    Carrier,
    VethMove,
}

#[derive(Debug, Clone, ClapArgs)]
struct DatapathArgs {
    /// Seconds per measurement.
    #[arg(long, default_value_t = 3)]
    seconds: u32,
    /// Tunnel and plain measurements, alternated, per direction.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Use the built-in TCP sender even when iperf3 is installed.
    #[arg(long)]
    builtin: bool,
    /// IPv6 alone: leave out the IPv4 rows (the node's RFC 5844 home address, leased with
    /// busybox `udhcpc`, through the tunnel against plain IPv4 routing).
    #[arg(long)]
    no_ipv4: bool,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// PBU/s and PBU->PBA latency against the real LMA (seg6 and none) and a raw-socket echo.
    Signalling(SignallingArgs),
    /// Many bindings: memory per binding, time to register, refresh load, kill -9 recovery.
    Scale(ScaleArgs),
    /// L3 handover time and traffic gap, RFC 5213 and RFC 5949 predictive/reactive.
    Handover(HandoverArgs),
    /// TCP throughput through the tunnel against plain routing, both directions, IPv6 and
    /// IPv4 (the node's RFC 5844 home address inside the IPv6 tunnel).
    Datapath(DatapathArgs),
    /// Every benchmark with the defaults of each (and the sizes given here).
    All {
        #[arg(long, default_value_t = 20_000)]
        signalling_nodes: usize,
        #[arg(long, default_value_t = 100_000)]
        scale_nodes: usize,
        #[arg(long, default_value_t = 200)]
        handovers: usize,
    },
    /// (internal) A raw-socket Mobility Header echo on an address: the ceiling of the path.
    #[command(name = "__echo", hide = true)]
    Echo {
        #[arg(long)]
        address: std::net::Ipv6Addr,
    },
}

fn main() -> ExitCode {
    let mut argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    // The daemons' own code, for when pmip-lma / pmip-mag are not installed next to this.
    if let Some(code) = e2e::lab::Binaries::run_embedded(&mut argv) {
        return code;
    }
    let args = Args::parse_from(argv);
    let rt = match cnf::daemon::runtime("pmip-bench") {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    if let Cmd::Echo { address } = args.command {
        return match rt.block_on(pmip_bench::bed::echo(address)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("pmip-bench __echo: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    if !nix::unistd::geteuid().is_root() {
        eprintln!("pmip-bench: the benchmarks build network namespaces and need root");
        return ExitCode::from(2);
    }
    match rt.block_on(run(args)) {
        Ok(reports) => {
            if reports
                .iter()
                .all(|r| r.verdicts.iter().all(|v| v.met != Some(false)))
            {
                ExitCode::SUCCESS
            } else {
                // Figures were measured; some target was missed.
                ExitCode::from(3)
            }
        }
        Err(e) => {
            eprintln!("pmip-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn signalling_spec(a: &SignallingArgs, dir: &std::path::Path, name: &str) -> signalling::Spec {
    signalling::Spec {
        nodes: a.nodes,
        mags: a.mags,
        window: a.window,
        refresh_rounds: a.refresh_rounds,
        light: a.unloaded,
        dir: dir.join("signalling"),
        name: format!("{name}s"),
    }
}

fn scale_spec(a: &ScaleArgs, dir: &std::path::Path, name: &str, kernel: Path) -> scale::Spec {
    scale::Spec {
        nodes: a.nodes,
        mags: a.mags,
        window: a.window,
        datapaths: match a.datapath {
            Datapaths::Both => vec![kernel, Path::NONE],
            Datapaths::Kernel => vec![kernel],
            Datapaths::None => vec![Path::NONE],
        },
        refresh_sample: a.refresh_sample,
        ipv4: a.ipv4,
        dir: dir.join("scale"),
        name: format!("{name}c"),
    }
}

fn handover_spec(a: &HandoverArgs, dir: &std::path::Path, name: &str) -> handover::Spec {
    handover::Spec {
        handovers: a.handovers,
        modes: a
            .modes
            .iter()
            .map(|m| match m {
                Mode::Plain => HandoverMode::Plain,
                Mode::Predictive => HandoverMode::Predictive,
                Mode::Reactive => HandoverMode::Reactive,
            })
            .collect(),
        rate_pps: a.rate,
        settle: Duration::from_millis(a.settle_ms),
        dir: dir.join("handover"),
        name: format!("{name}h"),
        radio: match a.radio {
            RadioArg::Carrier => e2e::lab::Radio::Carrier,
            RadioArg::VethMove => e2e::lab::Radio::VethMove,
        },
    }
}

fn datapath_spec(a: &DatapathArgs, dir: &std::path::Path, name: &str) -> datapath::Spec {
    datapath::Spec {
        seconds: a.seconds,
        rounds: a.rounds,
        builtin: a.builtin,
        ipv4: !a.no_ipv4,
        dir: dir.join("datapath"),
        name: format!("{name}d"),
    }
}

async fn run(args: Args) -> anyhow::Result<Vec<Report>> {
    if args.name.is_empty() || args.name.len() > 5 {
        anyhow::bail!("--name: 1 to 5 characters");
    }
    let (_tmp, dir) = match &args.dir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            (None, d.clone())
        }
        None => {
            let t = tempfile::Builder::new().prefix("pmip-bench-").tempdir()?;
            let p = t.path().to_path_buf();
            (Some(t), p)
        }
    };
    let name = args.name.as_str();
    let mut reports = Vec::new();
    let mut out = |r: Report| {
        if !args.json {
            println!("{}", r.text());
        }
        reports.push(r);
    };
    match &args.command {
        Cmd::Signalling(a) => out(signalling::run(&signalling_spec(a, &dir, name)).await?),
        Cmd::Scale(a) => out(scale::run(&scale_spec(a, &dir, name, Path::kernel().await?)).await?),
        Cmd::Handover(a) => out(handover::run(&handover_spec(a, &dir, name)).await?),
        Cmd::Datapath(a) => out(datapath::run(&datapath_spec(a, &dir, name)).await?),
        Cmd::All {
            signalling_nodes,
            scale_nodes,
            handovers,
        } => {
            let s = SignallingArgs::parse_defaults();
            let s = SignallingArgs {
                nodes: *signalling_nodes,
                ..s
            };
            out(signalling::run(&signalling_spec(&s, &dir, name)).await?);
            let c = ScaleArgs {
                nodes: *scale_nodes,
                ..ScaleArgs::parse_defaults()
            };
            out(scale::run(&scale_spec(&c, &dir, name, Path::kernel().await?)).await?);
            let h = HandoverArgs {
                handovers: *handovers,
                ..HandoverArgs::parse_defaults()
            };
            out(handover::run(&handover_spec(&h, &dir, name)).await?);
            out(datapath::run(&datapath_spec(&DatapathArgs::parse_defaults(), &dir, name)).await?);
        }
        Cmd::Echo { .. } => {}
    }
    if args.json {
        let v: Vec<&Report> = reports.iter().collect();
        let text = if v.len() == 1 {
            serde_json::to_string_pretty(v[0])?
        } else {
            serde_json::to_string_pretty(&v)?
        };
        println!("{text}");
    }
    if let Some(t) = _tmp
        && std::env::var_os("PMIP_BENCH_KEEP").is_some()
    {
        let kept = t.keep();
        eprintln!("pmip-bench: files kept in {}", kept.display());
    }
    Ok(reports)
}

/// The defaults of an argument group, as if given no flags.
trait Defaults: Sized {
    fn parse_defaults() -> Self;
}

macro_rules! defaults {
    ($t:ty) => {
        impl Defaults for $t {
            fn parse_defaults() -> Self {
                #[derive(Parser)]
                struct W {
                    #[command(flatten)]
                    a: $t,
                }
                W::parse_from(["pmip-bench"]).a
            }
        }
    };
}
defaults!(SignallingArgs);
defaults!(ScaleArgs);
defaults!(HandoverArgs);
defaults!(DatapathArgs);
