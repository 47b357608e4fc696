//! Handovers in the namespace lab (one LMA, two MAGs, one node, a correspondent node), for
//! RFC 5213 and both RFC 5949 modes, with the lab's stand-in for the radio
//! ([`e2e::lab::Radio`]: carrier down and up by default, the old veth move to compare):
//!
//! - the L2 switch: how long the radio stand-in took (not the protocol's);
//! - the L3 handover time as the new MAG measures it (from the node seen on its access link to
//!   the Router Advertisement with the node's prefix, its `pmip_mag_attach_to_ra_seconds`
//!   histogram);
//! - the interruption a 2000 packet/s downlink UDP probe sees (its longest silence beyond its
//!   spacing), and that less the L2 switch: the protocol's part;
//! - lost and reordered probe packets, and what the radio cut between the old MAG and the
//!   node ("in flight on the old link"): what the old MAG could not put on the node's old
//!   access link after the radio had gone (its transmit drops there), and what it had put on
//!   it that was still on its way (dropped by its port in the air, the node's port or the
//!   node's link as they went down).
//!
//! The histogram gives each handover exactly: the new MAG's `_sum` and `_count` are read
//! before and after the move, and the difference of the sums over one new observation is that
//! handover's time.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use datapath::netns::NetNs;
use e2e::demo::{HandoverMode, hand_over};
use e2e::lab::{Lab, Radio, Spec as LabSpec};
use e2e::traffic::{Gap, UdpStream};
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
    /// The lab's stand-in for the radio.
    pub radio: Radio,
}

/// What one mode measured.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    pub mode: HandoverMode,
    pub radio: Radio,
    pub handovers: usize,
    /// The radio stand-in's switch, ms.
    pub l2_ms: Option<Dist>,
    /// L3 handover time (attach seen at the new MAG -> RA sent), ms.
    pub l3_ms: Option<Dist>,
    /// Longest silence of the downlink stream beyond its spacing, per handover, ms.
    pub gap_ms: Option<Dist>,
    /// The same less that handover's L2 switch: the protocol's part, ms.
    pub gap_beyond_l2_ms: Option<Dist>,
    pub lost_packets: u64,
    pub reordered_packets: u64,
    /// What the radio cut between the old MAG and the node ([`e2e::lab::Lab::access_drops`],
    /// counted around each handover); `None` when the radio cannot tell (the veth move takes
    /// the link out of the old MAG).
    pub in_flight_on_old_link: Option<u64>,
    /// Handovers that lost more than their old link's drops.
    pub lost_beyond_in_flight: Option<u64>,
    /// Handovers whose completion the new MAG never reported.
    pub incomplete: usize,
    /// Handovers after which the old MAG still held the node, or the new one had not
    /// registered it, 5 s after its Router Advertisement.
    pub unfinished: usize,
    /// Probe packets that reached the node and were dropped by its receiving socket (a full
    /// receive buffer): the harness's loss, not the protocol's.
    pub receiver_drops: u64,
    /// Packets the MAGs' fast-handover buffers dropped over their limits or discarded (a
    /// failed handover).
    pub buffer_dropped: u64,
    pub probe_rate_pps: u32,
    pub seconds: f64,
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
    ls.radio = spec.radio;
    ls.dir = Some(spec.dir.join(format!("handover-{tag}")));
    let mut lab = Lab::up(ls, crate::bed::binaries()?).await?;
    lab.attach(0).await?;
    let address = lab.wait_node_address(0, Duration::from_secs(10)).await?;
    let mn = lab.nodes[0].ns.clone();
    let receiver_drops0 = e2e::traffic::receive_buffer_drops(&mn)?;
    let probe = UdpStream::start(&lab.cn, &mn, address, 7001, spec.rate_pps, 64)?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let mut times = Vec::with_capacity(spec.handovers);
    let mut l2 = Vec::with_capacity(spec.handovers);
    let mut l3 = Vec::with_capacity(spec.handovers);
    let mut dropped: Vec<Option<u64>> = Vec::with_capacity(spec.handovers);
    let mut incomplete = 0;
    let mut unfinished = 0;
    let carrier = spec.radio == Radio::Carrier;
    for _ in 0..spec.handovers {
        let from = lab.nodes[0].at.context("the node is not attached")?;
        let to = 1 - from;
        let (sum0, count0) = histogram(&scrape(&lab.mag_ns[to])?, L3);
        let drops0 = if carrier {
            Some(lab.access_drops(0, from)?)
        } else {
            None
        };
        times.push(probe.now());
        l2.push(hand_over(&mut lab, 0, to, mode).await?.as_secs_f64() * 1e3);
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
        // Once the new MAG serves the node, nothing of its traffic goes to the old link.
        dropped.push(match drops0 {
            Some(d0) => Some(lab.access_drops(0, from)?.saturating_sub(d0)),
            None => None,
        });
        // The next handover starts from a finished one: the new MAG registered the node and
        // the old one let it go (a fast handover's forwarding ends after the new MAG's PBA).
        // Without this wait a loaded machine starts a handover while the last one is still
        // forwarding, which measures the overlap and not a handover.
        if !finished(&lab, from, to, Duration::from_secs(5)).await? {
            unfinished += 1;
        }
        if std::env::var_os("PMIP_BENCH_TRACE").is_some() {
            let i = l2.len() - 1;
            eprintln!(
                "handover {i}: MAG{} -> MAG{}, at {:.1} ms, L2 {:.2} ms, L3 {:?} ms, old link drops {:?}",
                from + 1,
                to + 1,
                times[i].as_secs_f64() * 1e3,
                l2[i],
                l3.get(i),
                dropped[i]
            );
        }
        tokio::time::sleep(spec.settle).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    let report = probe.finish();
    let receiver_drops = e2e::traffic::receive_buffer_drops(&mn)?.saturating_sub(receiver_drops0);
    let mut buffer_dropped = 0.0;
    for ns in &lab.mag_ns {
        let m = scrape(ns)?;
        for kind in ["dropped", "discarded"] {
            buffer_dropped += e2e::lab::metric(
                &m,
                &format!("pmip_mag_buffer_packets_total{{kind=\"{kind}\"}}"),
            );
        }
    }
    let end = report
        .sent_at
        .last()
        .map_or(Duration::ZERO, |t| *t + report.interval);
    let lead = Duration::from_millis(5);
    let gaps: Vec<Gap> = times
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let until = times.get(i + 1).copied().unwrap_or(end);
            report.gap(t.saturating_sub(lead), until.saturating_sub(lead))
        })
        .collect();
    if std::env::var_os("PMIP_BENCH_TRACE").is_some() {
        for (i, g) in gaps.iter().enumerate() {
            eprintln!(
                "handover {i}: gap {:.2} ms from {:.1} ms, lost {}, reordered {}",
                g.interruption_ms,
                g.silent_from.as_secs_f64() * 1e3,
                g.lost_packets,
                g.reordered
            );
        }
    }
    let gap_ms: Vec<f64> = gaps.iter().map(|g| g.interruption_ms).collect();
    let beyond: Vec<f64> = gap_ms
        .iter()
        .zip(&l2)
        .map(|(g, s)| (g - s).max(0.0))
        .collect();
    let in_flight = dropped.iter().copied().sum::<Option<u64>>();
    let lost_beyond = dropped
        .iter()
        .zip(&gaps)
        .map(|(d, g)| d.map(|d| u64::from(g.lost_packets > d)))
        .sum::<Option<u64>>();
    if lab.node_address(0) != Some(address) {
        bail!("{mode:?}: the node's address changed during the handovers");
    }
    Ok(Run {
        mode,
        radio: spec.radio,
        handovers: spec.handovers,
        l2_ms: Dist::of(&l2).map(rounded),
        l3_ms: Dist::of(&l3).map(rounded),
        gap_ms: Dist::of(&gap_ms).map(rounded),
        gap_beyond_l2_ms: Dist::of(&beyond).map(rounded),
        lost_packets: report.lost(),
        reordered_packets: report.reordered(),
        in_flight_on_old_link: in_flight,
        lost_beyond_in_flight: lost_beyond,
        incomplete,
        unfinished,
        receiver_drops,
        buffer_dropped: buffer_dropped as u64,
        probe_rate_pps: spec.rate_pps,
        seconds: round(seconds, 1),
    })
}

/// Waits until node 0 is registered at MAG `to` and MAG `from` holds nothing of it (its
/// binding update list is empty), for at most `timeout`.
async fn finished(lab: &Lab, from: usize, to: usize, timeout: Duration) -> anyhow::Result<bool> {
    let t = Instant::now();
    loop {
        let new = scrape(&lab.mag_ns[to])?;
        let old = scrape(&lab.mag_ns[from])?;
        if e2e::lab::metric(&new, "pmip_mag_registered") >= 1.0
            && e2e::lab::metric(&old, "pmip_mag_bul_entries") == 0.0
        {
            return Ok(true);
        }
        if t.elapsed() > timeout {
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
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

fn mode_name(m: HandoverMode) -> String {
    format!("{m:?}").to_lowercase()
}

/// The targets of the lab handovers, each with what was measured and whether it was met.
pub fn verdicts(runs: &[Run]) -> Vec<Verdict> {
    let mut v = Vec::new();
    for r in runs {
        let name = mode_name(r.mode);
        v.push(Verdict::new(
            format!("{name}: L3 handover p99 <= 5 ms"),
            r.l3_ms
                .as_ref()
                .map_or("-".into(), |d| format!("{:.2} ms", d.p99)),
            r.l3_ms.as_ref().map(|d| d.p99 <= 5.0),
        ));
        match r.mode {
            HandoverMode::Plain => v.push(Verdict::new(
                format!("{name}: traffic gap p99 <= 5 ms beyond the L2 switch"),
                r.gap_beyond_l2_ms.as_ref().map_or("-".into(), |d| {
                    format!(
                        "{:.2} ms (gap p99 {:.2} ms, L2 p99 {:.3} ms)",
                        d.p99,
                        r.gap_ms.as_ref().map_or(0.0, |g| g.p99),
                        r.l2_ms.as_ref().map_or(0.0, |l| l.p99)
                    )
                }),
                r.gap_beyond_l2_ms.as_ref().map(|d| d.p99 <= 5.0),
            )),
            HandoverMode::Predictive => v.push(Verdict::new(
                format!("{name}: 0 lost and 0 reordered"),
                format!("{} lost, {} reordered", r.lost_packets, r.reordered_packets),
                Some(r.lost_packets == 0 && r.reordered_packets == 0),
            )),
            HandoverMode::Reactive => v.push(Verdict::new(
                format!(
                    "{name}: nothing lost beyond what was in flight on the old link, 0 reordered"
                ),
                match r.in_flight_on_old_link {
                    Some(f) => format!(
                        "{} lost, {f} in flight on the old link ({} handovers lost more), {} \
                         reordered",
                        r.lost_packets,
                        r.lost_beyond_in_flight.unwrap_or(0),
                        r.reordered_packets
                    ),
                    None => format!(
                        "{} lost (in flight: not measured with this radio), {} reordered",
                        r.lost_packets, r.reordered_packets
                    ),
                },
                r.lost_beyond_in_flight
                    .map(|n| n == 0 && r.reordered_packets == 0),
            )),
        }
    }
    v
}

/// Runs the benchmark.
pub async fn run(spec: &Spec) -> anyhow::Result<Report> {
    let mut runs = Vec::new();
    for m in &spec.modes {
        runs.push(run_one(spec, *m).await?);
    }
    let mut t = Table::new(
        &format!(
            "handover: {} handovers per mode between 2 MAGs, downlink probe at {} packets/s, \
             radio {}",
            spec.handovers,
            spec.rate_pps,
            match spec.radio {
                Radio::Carrier => "carrier down/up",
                Radio::VethMove => "veth move",
            }
        ),
        &[
            "mode",
            "L2 p50 ms",
            "L2 p99 ms",
            "L3 p50 ms",
            "L3 p99 ms",
            "gap p50 ms",
            "gap p99 ms",
            "beyond L2 p99",
            "lost",
            "in flight",
            "reordered",
            "receiver drops",
            "buffer drops",
            "incomplete",
            "unfinished",
        ],
    );
    for r in &runs {
        t.row(vec![
            mode_name(r.mode),
            cell(&r.l2_ms, |d| d.p50),
            cell(&r.l2_ms, |d| d.p99),
            cell(&r.l3_ms, |d| d.p50),
            cell(&r.l3_ms, |d| d.p99),
            cell(&r.gap_ms, |d| d.p50),
            cell(&r.gap_ms, |d| d.p99),
            cell(&r.gap_beyond_l2_ms, |d| d.p99),
            r.lost_packets.to_string(),
            r.in_flight_on_old_link
                .map_or("-".into(), |f| f.to_string()),
            r.reordered_packets.to_string(),
            r.receiver_drops.to_string(),
            r.buffer_dropped.to_string(),
            r.incomplete.to_string(),
            r.unfinished.to_string(),
        ]);
    }
    let resolution = 1e3 / f64::from(spec.rate_pps.max(1));
    Ok(Report {
        bench: "handover".into(),
        setup: json!({
            "handovers": spec.handovers,
            "modes": spec.modes,
            "probe_rate_pps": spec.rate_pps,
            "settle_ms": spec.settle.as_millis() as u64,
            "radio": spec.radio,
        }),
        tables: vec![t],
        verdicts: verdicts(&runs),
        notes: vec![
            format!(
                "L2: the lab's radio switch (the old MAG's and the node's ports down, the new \
                 MAG's and the node's up, in one netlink exchange; or the veth move); L3: the new \
                 MAG's {L3} histogram, read around each handover (exact per handover); gap: \
                 longest silence of the downlink probe beyond its spacing, resolution \
                 {resolution:.1} ms; beyond L2: the gap less that handover's L2 switch"
            ),
            "receiver drops: probe packets the node's socket dropped for a full receive buffer \
             (the harness's, counted in lost); buffer drops: what the MAGs' fast-handover \
             buffers dropped over their limits or discarded; unfinished: handovers after which \
             the old MAG still held the node or the new one had not registered it within 5 s \
             (each handover starts after the last one finished on both MAGs)"
                .into(),
            "in flight: what the radio cut between the old MAG and the node around each \
             handover: what the old MAG could not put on the node's old access link once the \
             radio had gone (that link's transmit drops) and what it had put on it that was \
             still on its way (dropped by the MAG's port in the air, the node's port or the \
             node's link as they went down); this also counts any Router Advertisement or \
             neighbor probe cut then"
                .into(),
        ],
        figures: json!({ "runs": runs }),
    })
}
