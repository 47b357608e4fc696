//! Handovers in the namespace lab (one LMA, two MAGs, one node, a correspondent node), for
//! RFC 5213 and both RFC 5949 modes: the L3 handover time as the new MAG measures it (from
//! the node seen on its access link to the Router Advertisement with the node's prefix, its
//! `pmip_mag_attach_to_ra_seconds` histogram) and the interruption a downlink UDP stream
//! sees.
//!
//! The histogram gives each handover exactly: the new MAG's `_sum` and `_count` are read
//! before and after the move, and the difference of the sums over one new observation is that
//! handover's time.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use dataplane::netns::NetNs;
use e2e::demo::{HandoverMode, hand_over};
use e2e::lab::{Lab, Spec as LabSpec};
use e2e::traffic::UdpStream;
use serde::Serialize;
use serde_json::json;

use crate::report::{Report, Table, Verdict};
use crate::stats::{Dist, round};

/// Knobs of the handover benchmark.
#[derive(Debug, Clone)]
pub struct Spec {
    pub handovers: usize,
    pub modes: Vec<HandoverMode>,
    /// Downlink probe packets per second.
    pub rate_pps: u32,
    /// Time the node stays after a handover completed, before the next.
    pub settle: Duration,
    pub dir: PathBuf,
    pub name: String,
}

/// What one mode measured.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    pub mode: HandoverMode,
    pub handovers: usize,
    /// L3 handover time (attach seen at the new MAG -> RA sent), ms.
    pub l3_ms: Option<Dist>,
    /// Longest silence of the downlink stream beyond its spacing, per handover, ms.
    pub gap_ms: Option<Dist>,
    pub lost_packets: u64,
    /// Handovers whose completion the new MAG never reported.
    pub incomplete: usize,
    pub probe_rate_pps: u32,
    pub seconds: f64,
    #[serde(skip)]
    pub l3_samples: Vec<f64>,
    #[serde(skip)]
    pub gap_samples: Vec<f64>,
}

/// `_sum` and `_count` of a histogram in a Prometheus text exposition.
pub fn histogram(text: &str, name: &str) -> (f64, u64) {
    let mut sum = 0.0;
    let mut count = 0;
    for l in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((k, v)) = l.rsplit_once(' ') else {
            continue;
        };
        if k == format!("{name}_sum") {
            sum = v.parse().unwrap_or(0.0);
        } else if k == format!("{name}_count") {
            count = v.parse().unwrap_or(0);
        }
    }
    (sum, count)
}

/// The Prometheus text of the daemon in `ns` (`[::1]:9464/metrics`).
pub fn scrape(ns: &NetNs) -> anyhow::Result<String> {
    use std::io::{Read, Write};
    ns.run(|| -> anyhow::Result<String> {
        let mut s =
            std::net::TcpStream::connect_timeout(&"[::1]:9464".parse()?, Duration::from_secs(2))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        s.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        out.split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .ok_or_else(|| anyhow!("not an HTTP response"))
    })?
}

const L3: &str = "pmip_mag_attach_to_ra_seconds";

/// One mode, on a lab of its own.
pub async fn run_one(spec: &Spec, mode: HandoverMode) -> anyhow::Result<Run> {
    let tag = match mode {
        HandoverMode::Plain => "p",
        HandoverMode::Predictive => "f",
        HandoverMode::Reactive => "r",
    };
    let mut ls = LabSpec::new(&format!("{}{tag}", spec.name), 2, 1);
    ls.fast_handover = mode.domain_mode();
    ls.dir = Some(spec.dir.join(format!("handover-{tag}")));
    let mut lab = Lab::up(ls, crate::bed::binaries()?).await?;
    lab.attach(0).await?;
    let address = lab.wait_node_address(0, Duration::from_secs(10)).await?;
    let mn = lab.nodes[0].ns.clone();
    let probe = UdpStream::start(&lab.cn, &mn, address, 7001, spec.rate_pps, 64)?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let mut times = Vec::with_capacity(spec.handovers);
    let mut l3 = Vec::with_capacity(spec.handovers);
    let mut incomplete = 0;
    for _ in 0..spec.handovers {
        let from = lab.nodes[0].at.context("the node is not attached")?;
        let to = 1 - from;
        let (sum0, count0) = histogram(&scrape(&lab.mag_ns[to])?, L3);
        times.push(probe.now());
        hand_over(&mut lab, 0, to, mode).await?;
        let t = Instant::now();
        loop {
            let (sum, count) = histogram(&scrape(&lab.mag_ns[to])?, L3);
            if count > count0 {
                l3.push((sum - sum0) / (count - count0) as f64 * 1e3);
                break;
            }
            if t.elapsed() > Duration::from_secs(5) {
                incomplete += 1;
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        tokio::time::sleep(spec.settle).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    let report = probe.finish();
    let end = report.interval * report.sent as u32;
    let lead = Duration::from_millis(5);
    let gaps: Vec<f64> = times
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let until = times.get(i + 1).copied().unwrap_or(end);
            report
                .gap(t.saturating_sub(lead), until.saturating_sub(lead))
                .interruption_ms
        })
        .collect();
    let lost = report.lost();
    if lab.node_address(0) != Some(address) {
        bail!("{mode:?}: the node's address changed during the handovers");
    }
    Ok(Run {
        mode,
        handovers: spec.handovers,
        l3_ms: Dist::of(&l3).map(rounded),
        gap_ms: Dist::of(&gaps).map(rounded),
        lost_packets: lost,
        incomplete,
        probe_rate_pps: spec.rate_pps,
        seconds: round(seconds, 1),
        l3_samples: l3,
        gap_samples: gaps,
    })
}

fn rounded(d: Dist) -> Dist {
    Dist {
        p50: round(d.p50, 3),
        p99: round(d.p99, 3),
        max: round(d.max, 3),
        mean: round(d.mean, 3),
        ..d
    }
}

fn cell(d: &Option<Dist>, f: impl Fn(&Dist) -> f64) -> String {
    d.as_ref().map_or("-".into(), |d| format!("{:.2}", f(d)))
}

/// Runs the benchmark.
pub async fn run(spec: &Spec) -> anyhow::Result<Report> {
    let mut runs = Vec::new();
    for m in &spec.modes {
        runs.push(run_one(spec, *m).await?);
    }
    let mut t = Table::new(
        &format!(
            "handover: {} handovers per mode between 2 MAGs, downlink probe at {} packets/s",
            spec.handovers, spec.rate_pps
        ),
        &[
            "mode",
            "L3 p50 ms",
            "L3 p99 ms",
            "L3 max ms",
            "gap p50 ms",
            "gap p99 ms",
            "gap max ms",
            "lost",
            "incomplete",
        ],
    );
    for r in &runs {
        t.row(vec![
            format!("{:?}", r.mode).to_lowercase(),
            cell(&r.l3_ms, |d| d.p50),
            cell(&r.l3_ms, |d| d.p99),
            cell(&r.l3_ms, |d| d.max),
            cell(&r.gap_ms, |d| d.p50),
            cell(&r.gap_ms, |d| d.p99),
            cell(&r.gap_ms, |d| d.max),
            r.lost_packets.to_string(),
            r.incomplete.to_string(),
        ]);
    }
    let verdicts = runs
        .iter()
        .map(|r| {
            Verdict::new(
                format!(
                    "{}: L3 handover p99 <= 5 ms",
                    format!("{:?}", r.mode).to_lowercase()
                ),
                r.l3_ms
                    .as_ref()
                    .map_or("-".into(), |d| format!("{:.2} ms", d.p99)),
                r.l3_ms.as_ref().map(|d| d.p99 <= 5.0),
            )
        })
        .collect();
    let resolution = 1e3 / f64::from(spec.rate_pps.max(1));
    Ok(Report {
        bench: "handover".into(),
        setup: json!({
            "handovers": spec.handovers,
            "modes": spec.modes,
            "probe_rate_pps": spec.rate_pps,
            "settle_ms": spec.settle.as_millis() as u64,
        }),
        tables: vec![t],
        verdicts,
        notes: vec![format!(
            "L3: the new MAG's {L3} histogram, read around each handover (exact per handover); \
             gap: longest silence of the downlink probe beyond its spacing, resolution \
             {resolution:.1} ms"
        )],
        figures: json!({ "runs": runs }),
    })
}
