//! Signalling throughput and latency of the real `pmip-lma`: the generator registers `nodes`
//! nodes through `mags` MAG addresses, refreshes them, then sends PBUs one at a time; once
//! against a raw-socket echo on the LMA address (the ceiling of the sockets and namespaces:
//! the same generator, the same batches, no protocol), then against the LMA with the datapath
//! `none` (control plane only) and the kernel's routes (a route per binding through netlink: `seg6`, else `ip6tnl`, else `tun`), and
//! with the datapath `none` and the signalling in ESP (RFC 5213 §4; AES-128-GCM, in the
//! daemon and in the generator's MAGs), whose rate is compared with `none` in clear.

use std::net::Ipv6Addr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use pmip::config::{
    DatapathMode, EspAlgorithm, IpsecConfig, IpsecMode, KeyMaterial, SecurityAssociationConfig,
};
use serde::Serialize;
use serde_json::json;

use crate::bed::{self, Bed};
use crate::generator::{self, GenIpsec, GenSpec, Phase, PhaseResult};
use crate::report::{Report, Table, Verdict, int};
use crate::stats::round;

/// Knobs of the signalling benchmark.
#[derive(Debug, Clone)]
pub struct Spec {
    pub nodes: usize,
    pub mags: usize,
    pub window: usize,
    pub refresh_rounds: usize,
    pub light: usize,
    pub dir: PathBuf,
    pub name: String,
}

/// One server under load.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    /// `echo`, `none`, `seg6` (or `ip6tnl`, `tun`: [`Path::kernel`]) or `none+esp`.
    pub path: String,
    pub phases: Vec<PhaseResult>,
    /// Bindings the LMA's Stats reported at the end (LMA runs only).
    pub bindings: Option<u64>,
    /// Routes in the LMA namespace's main table at the end.
    pub routes: Option<usize>,
    /// The LMA's own account of its receive batches, commits and datapath batches (its
    /// metrics), over the whole run.
    pub lma_turns: Option<Turns>,
}

/// Means of the LMA's histograms: messages per receive batch (one `recvmmsg`; a loop turn
/// takes up to 16), and the time of a durable store commit and of a datapath batch.
#[derive(Debug, Clone, Serialize)]
pub struct Turns {
    pub receive_batches: u64,
    pub messages_per_receive: f64,
    pub store_commits: u64,
    pub store_commit_ms: f64,
    pub datapath_batches: u64,
    pub datapath_ms: f64,
}

impl Turns {
    pub fn of(metrics: &str) -> Turns {
        use crate::handover::histogram;
        let (bs, bc) = histogram(metrics, "pmip_lma_batch_size");
        let (ss, sc) = histogram(metrics, "pmip_lma_store_commit_seconds");
        let (ds, dc) = histogram(metrics, "pmip_lma_datapath_seconds");
        let mean = |s: f64, c: u64| if c > 0 { round(s / c as f64, 3) } else { 0.0 };
        Turns {
            receive_batches: bc,
            messages_per_receive: mean(bs, bc),
            store_commits: sc,
            store_commit_ms: mean(ss * 1e3, sc),
            datapath_batches: dc,
            datapath_ms: mean(ds * 1e3, dc),
        }
    }
}

impl Run {
    pub fn phase(&self, name: &str) -> Option<&PhaseResult> {
        self.phases.iter().find(|p| p.phase == name)
    }
}

fn phases(spec: &Spec) -> Vec<Phase> {
    vec![
        Phase::Register,
        Phase::Refresh {
            rounds: spec.refresh_rounds,
            limit: None,
        },
        Phase::Light { count: spec.light },
    ]
}

fn gen_spec(bed: &Bed, spec: &Spec, echo: bool, ipsec: Option<GenIpsec>) -> GenSpec {
    GenSpec {
        lma: bed::LMA,
        mags: bed.mags.clone(),
        nodes: spec.nodes,
        window: spec.window,
        lifetime_s: 3600,
        echo,
        timeout: Duration::from_secs(1),
        server_pid: bed.server_pid(),
        ipsec,
        ipv4: false,
    }
}

/// The `ipsec` sections of the LMA and of each MAG: one SA pair per MAG, AES-128-GCM
/// (RFC 4106), fresh random keys, ESP in the daemons (`userspace`: what this benchmark
/// measures, whatever the kernel has).
pub fn esp_sections(
    lma: Ipv6Addr,
    mags: &[Ipv6Addr],
) -> anyhow::Result<(IpsecConfig, Vec<IpsecConfig>)> {
    let alg = EspAlgorithm::Aes128Gcm;
    let mut random = std::fs::File::open("/dev/urandom")?;
    let mut key = || -> anyhow::Result<KeyMaterial> {
        let mut k = vec![0u8; alg.key_len()];
        std::io::Read::read_exact(&mut random, &mut k)?;
        Ok(KeyMaterial::new(k))
    };
    let section = |security_associations| IpsecConfig {
        mode: IpsecMode::Userspace,
        security_associations,
        ..IpsecConfig::default()
    };
    let mut at_lma = Vec::new();
    let mut at_mags = Vec::new();
    for (i, mag) in mags.iter().enumerate() {
        let (up_spi, down_spi) = (0x1_0000 + i as u32, 0x2_0000 + i as u32);
        let (up, down) = (key()?, key()?);
        at_lma.push(SecurityAssociationConfig {
            local: None,
            peer: *mag,
            algorithm: alg,
            spi_in: up_spi,
            spi_out: down_spi,
            key_in: Some(up.clone()),
            key_in_file: None,
            key_out: Some(down.clone()),
            key_out_file: None,
            esn: false,
        });
        at_mags.push(section(vec![SecurityAssociationConfig {
            local: None,
            peer: lma,
            algorithm: alg,
            spi_in: down_spi,
            spi_out: up_spi,
            key_in: Some(down),
            key_in_file: None,
            key_out: Some(up),
            key_out_file: None,
            esn: false,
        }]));
    }
    Ok((section(at_lma), at_mags))
}

/// The raw-socket echo on the LMA address: the ceiling of the path.
pub async fn echo_run(spec: &Spec, tag: &str) -> anyhow::Result<Run> {
    let mut bed = Bed::up(&spec.name, spec.mags, &spec.dir.join(tag), bed::binaries()?).await?;
    bed.start_echo()?;
    wait_echo(&bed).await?;
    let g = gen_spec(&bed, spec, true, None);
    let ns = bed.gen_ns.clone();
    let ph = phases(spec);
    let phases = tokio::task::spawn_blocking(move || generator::run(&ns, g, &ph)).await??;
    Ok(Run {
        path: "echo".into(),
        phases,
        bindings: None,
        routes: None,
        lma_turns: None,
    })
}

/// Waits until the echo server answers.
async fn wait_echo(bed: &Bed) -> anyhow::Result<()> {
    for _ in 0..100 {
        let g = GenSpec {
            lma: bed::LMA,
            mags: vec![bed.mags[0]],
            nodes: 1,
            window: 1,
            lifetime_s: 3600,
            echo: true,
            timeout: Duration::from_millis(50),
            server_pid: None,
            ipsec: None,
            ipv4: false,
        };
        let ns = bed.gen_ns.clone();
        let r = tokio::task::spawn_blocking(move || generator::run(&ns, g, &[Phase::Register]))
            .await??;
        if r.first()
            .is_some_and(|p| p.answered == 1 && p.retransmitted == 0)
        {
            return Ok(());
        }
    }
    bail!("the echo server did not answer")
}

/// A datapath the LMA runs with, and the name the figures give it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Path {
    pub mode: DatapathMode,
    pub name: &'static str,
}

impl Path {
    /// Control plane only.
    pub const NONE: Path = Path {
        mode: DatapathMode::None,
        name: "none",
    };

    /// A kernel route per binding: seg6 where this kernel has it, else ip6tnl, else the
    /// userspace tunnel (veth pairs), which is what the LMA's `auto` picks.
    pub async fn kernel() -> anyhow::Result<Path> {
        let nl = datapath::Netlink::connect()?;
        Ok(if datapath::probe_seg6(&nl).await? {
            Path {
                mode: DatapathMode::Seg6,
                name: "seg6",
            }
        } else if datapath::probe_ip6tnl(&nl).await? {
            Path {
                mode: DatapathMode::Ip6tnl,
                name: "ip6tnl",
            }
        } else {
            Path {
                mode: DatapathMode::Tun,
                name: "tun",
            }
        })
    }
}

/// The real LMA with `datapath`, and the signalling in ESP when `esp`.
pub async fn lma_run(spec: &Spec, path: Path, esp: bool) -> anyhow::Result<Run> {
    let datapath = path.mode;
    let tag = if esp {
        format!("{}+esp", path.name)
    } else {
        path.name.to_string()
    };
    let dir = spec.dir.join(&tag);
    let mut bed = Bed::up(&spec.name, spec.mags, &dir, bed::binaries()?).await?;
    let mut cfg = bed.lma_config(datapath, &dir.join("lma-state"))?;
    let ipsec = if esp {
        let (lma, mags) = esp_sections(bed::LMA, &bed.mags)?;
        cfg.ipsec = lma;
        cfg.validate()?;
        Some(GenIpsec {
            mags,
            state_dir: dir.join("generator-state"),
        })
    } else {
        None
    };
    bed.start_lma(&cfg, &tag)?;
    bed.wait_serving(Duration::from_secs(30)).await?;
    let g = gen_spec(&bed, spec, false, ipsec);
    let ns = bed.gen_ns.clone();
    let ph = phases(spec);
    let phases = tokio::task::spawn_blocking(move || generator::run(&ns, g, &ph)).await??;
    let stats = bed.stats().await?;
    let routes = bed.lma_routes().await.ok();
    let lma_turns = crate::handover::scrape(&bed.lma_ns)
        .ok()
        .map(|m| Turns::of(&m));
    Ok(Run {
        path: tag,
        phases,
        bindings: Some(stats.bindings),
        routes,
        lma_turns,
    })
}

pub fn mode_name(m: DatapathMode) -> &'static str {
    match m {
        DatapathMode::None => "none",
        DatapathMode::Seg6 => "seg6",
        DatapathMode::Ip6tnl => "ip6tnl",
        DatapathMode::Tun => "tun",
        DatapathMode::Auto => "auto",
    }
}

fn ms(p: Option<&PhaseResult>, f: impl Fn(&crate::stats::Dist) -> f64) -> String {
    p.and_then(|p| p.latency_ms.as_ref())
        .map_or_else(|| "-".into(), |d| format!("{:.3}", f(d)))
}

/// Rows of a run for the table.
pub fn rows(t: &mut Table, r: &Run) {
    for p in &r.phases {
        t.row(vec![
            r.path.clone(),
            p.phase.clone(),
            p.answered.to_string(),
            int(p.rate),
            ms(Some(p), |d| d.p50),
            ms(Some(p), |d| d.p99),
            format!("{}/{}/{}", p.rejected, p.retransmitted, p.unanswered),
            p.server_cores.map_or("-".into(), |c| format!("{c:.2}")),
            format!("{:.2}", p.generator_cores),
        ]);
    }
}

pub fn table(title: &str) -> Table {
    Table::new(
        title,
        &[
            "path",
            "phase",
            "PBUs",
            "PBU/s",
            "p50 ms",
            "p99 ms",
            "rej/retx/lost",
            "server cores",
            "gen cores",
        ],
    )
}

/// New registrations of the control plane alone, as a share of the echo's rate (issue 18).
pub const NEW_SHARE_OF_CEILING_PCT: f64 = 60.0;
/// New registrations with a kernel route each, as a share of the control plane's alone (issue 18).
pub const ROUTES_SHARE_OF_CP_PCT: f64 = 70.0;

/// Runs the benchmark.
pub async fn run(spec: &Spec) -> anyhow::Result<Report> {
    let echo = echo_run(spec, "echo").await?;
    let kernel = Path::kernel().await?;
    let kname = kernel.name;
    let none = lma_run(spec, Path::NONE, false).await?;
    let routed = lma_run(spec, kernel, false).await?;
    let esp = lma_run(spec, Path::NONE, true).await?;
    let mut t = table(&format!(
        "signalling: {} nodes through {} MAG addresses, {} PBUs outstanding, {} refresh rounds",
        spec.nodes, spec.mags, spec.window, spec.refresh_rounds
    ));
    for r in [&echo, &none, &routed, &esp] {
        rows(&mut t, r);
    }
    let rate = |r: &Run, p: &str| r.phase(p).map_or(0.0, |p| p.rate);
    let ceiling = rate(&echo, "refresh");
    let cp = rate(&none, "refresh");
    let ratio = if ceiling > 0.0 { cp / ceiling } else { 0.0 };
    let routed_new = rate(&routed, "register");
    let cp_new = rate(&none, "register");
    let new_share = if ceiling > 0.0 { cp_new / ceiling } else { 0.0 };
    let routes_share = if cp_new > 0.0 {
        routed_new / cp_new
    } else {
        0.0
    };
    let registered = |r: &Run| {
        r.phase("register")
            .is_some_and(|p| p.accepted == spec.nodes as u64)
            && r.bindings == Some(spec.nodes as u64)
    };
    let all_registered = registered(&none) && registered(&routed) && registered(&esp);
    let esp_rate = rate(&esp, "refresh");
    let esp_share = if cp > 0.0 { esp_rate / cp } else { 0.0 };
    let netlink_cost = if rate(&routed, "register") > 0.0 {
        rate(&none, "register") / rate(&routed, "register")
    } else {
        0.0
    };
    let mut notes = Vec::new();
    if !all_registered {
        notes.push(format!(
            "not every node was registered: none {:?}/{}, {kname} {:?}/{}, none+esp {:?}/{} \
             bindings",
            none.bindings, spec.nodes, routed.bindings, spec.nodes, esp.bindings, spec.nodes
        ));
    }
    for r in [&none, &routed, &esp] {
        if let Some(t) = &r.lma_turns {
            notes.push(format!(
                "{}: the LMA received {:.1} messages per recvmmsg; a durable store commit took \
                 {:.3} ms ({} commits: refreshes are written in the background) and a datapath \
                 batch {:.3} ms ({} batches)",
                r.path,
                t.messages_per_receive,
                t.store_commit_ms,
                t.store_commits,
                t.datapath_ms,
                t.datapath_batches
            ));
        }
    }
    notes.push(format!(
        "new registrations: control plane only {} /s, with {kname} routes {} /s ({:.2}x slower: \
         the cost of a kernel route per binding)",
        int(rate(&none, "register")),
        int(routed_new),
        netlink_cost
    ));
    let verdicts = vec![
        Verdict::new(
            "control-plane-only PBU rate >= 50 % of the raw-socket echo ceiling",
            format!(
                "{} / {} PBU/s = {:.0} %",
                int(cp),
                int(ceiling),
                ratio * 100.0
            ),
            Some(ratio >= 0.5),
        ),
        Verdict::new(
            "PBU rate with ESP (AES-128-GCM, in the daemon) >= 70 % of the rate in clear",
            format!(
                "{} / {} PBU/s = {:.0} %",
                int(esp_rate),
                int(cp),
                esp_share * 100.0
            ),
            Some(esp_share >= 0.7),
        ),
        Verdict::new(
            format!("{kname} datapath: >= 20,000 new bindings/s"),
            format!("{} /s", int(routed_new)),
            Some(routed_new >= 20_000.0),
        ),
        Verdict::new(
            format!(
                "new registrations, control plane only (durable commit before the PBA) >= \
                 {NEW_SHARE_OF_CEILING_PCT} % of the raw-socket echo ceiling"
            ),
            format!(
                "{} / {} PBU/s = {:.0} %",
                int(cp_new),
                int(ceiling),
                new_share * 100.0
            ),
            (ceiling > 0.0).then_some(new_share * 100.0 >= NEW_SHARE_OF_CEILING_PCT),
        ),
        Verdict::new(
            format!(
                "new registrations with {kname} routes >= {ROUTES_SHARE_OF_CP_PCT} % of the \
                 control-plane-only rate"
            ),
            format!(
                "{} / {} PBU/s = {:.0} %",
                int(routed_new),
                int(cp_new),
                routes_share * 100.0
            ),
            (cp_new > 0.0).then_some(routes_share * 100.0 >= ROUTES_SHARE_OF_CP_PCT),
        ),
    ];
    Ok(Report {
        bench: "signalling".into(),
        setup: json!({
            "nodes": spec.nodes, "mags": spec.mags, "window": spec.window,
            "refresh_rounds": spec.refresh_rounds, "unloaded_pbus": spec.light,
        }),
        tables: vec![t],
        verdicts,
        notes,
        figures: json!({
            "runs": [echo, none, routed, esp],
            "echo_ceiling_pbu_s": ceiling,
            "control_plane_pbu_s": cp,
            "control_plane_share_of_ceiling": round(ratio, 3),
            "new_registrations_share_of_ceiling": round(new_share, 3),
        "routes_datapath": kname,
            "routes_share_of_control_plane_register": round(routes_share, 3),
            "routes_new_bindings_s": routed_new,
            "none_over_routes_register": round(netlink_cost, 3),
            "esp_pbu_s": esp_rate,
            "esp_share_of_clear": round(esp_share, 3),
            "all_registered": all_registered,
        }),
    })
}
