//! The demo a newcomer runs first: a node attaches, a TCP stream runs to the correspondent
//! node, the node is handed over between MAGs several times while it runs, and a report says
//! what it was like: attach time, each handover's interruption and loss measured from the
//! traffic itself, whether TCP survived and whether the address stayed the same. With IPv4
//! (RFC 5844) the node is dual-stack: it leases its IPv4 home address with a stock DHCP
//! client and the TCP stream runs over IPv4.

use std::time::{Duration, Instant};

use anyhow::Context;
use pmip::config::FastHandoverMode;
use serde::Serialize;

use crate::capture::SignallingCheck;
use crate::lab::{self, CN_ADDRESS, CN_ADDRESS4, Lab};
use crate::traffic::{Gap, StreamReport, TcpFlow, TcpReport, UdpStream};

/// How a node is handed over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum HandoverMode {
    /// RFC 5213: the node leaves, the old MAG de-registers, the new MAG registers.
    Plain,
    /// RFC 5949 predictive: the old MAG is told first and the new one buffers.
    Predictive,
    /// RFC 5949 reactive: the new MAG fetches the node's context and packets after it moved.
    Reactive,
}

impl HandoverMode {
    pub fn domain_mode(self) -> FastHandoverMode {
        match self {
            HandoverMode::Plain => FastHandoverMode::Off,
            HandoverMode::Predictive => FastHandoverMode::Predictive,
            HandoverMode::Reactive => FastHandoverMode::Reactive,
        }
    }
}

/// One handover as the traffic saw it.
#[derive(Debug, Clone, Serialize)]
pub struct HandoverResult {
    pub from_mag: usize,
    pub to_mag: usize,
    /// How long the lab's stand-in for the radio took to move the node (not the protocol's
    /// part: the interruption follows it).
    pub l2_switch_ms: f64,
    /// Longest silence of the downlink stream around the handover, beyond its normal spacing.
    pub interruption_ms: f64,
    /// When that silence began, in ms since the traffic started (the SVG report's span).
    pub interruption_start_ms: f64,
    pub lost_packets: u64,
    pub reordered_packets: u64,
    pub duplicated_packets: u64,
}

/// The demo's report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub mode: HandoverMode,
    pub mags: usize,
    /// The lab's stand-in for the radio.
    pub radio: lab::Radio,
    /// From the node's link coming up to its address being usable (the MAG registered it and
    /// advertised its prefix, and the kernel configured the address).
    pub attach_ms: f64,
    pub address: String,
    pub handovers: Vec<HandoverResult>,
    pub tcp_survived: bool,
    pub tcp_bytes: u64,
    pub tcp_error: Option<String>,
    pub address_unchanged: bool,
    /// With IPv4: the node's IPv4 home address (with its subnet's prefix length), leased by
    /// DHCP from its MAG; the TCP stream runs over IPv4 to the correspondent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipv4_address: Option<String>,
    /// With IPv4: the node still has the same IPv4 home address after every handover.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipv4_address_unchanged: Option<bool>,
    /// The downlink probe stream: packets per second, sent, lost, reordered in total.
    pub probe_rate_pps: u32,
    pub probe_sent: u64,
    pub probe_lost: u64,
    pub probe_reordered: u64,
    /// Where the daemons came from: the installed binaries, or the lab running their code.
    pub daemons: String,
    /// Every Mobility Header between the daemons was in ESP (`--ipsec`, RFC 5213 §4): the
    /// LMA sealed and accepted ESP and dropped nothing for being in clear or failing its
    /// checks, and, with a capture, Wireshark found no Mobility Header in clear on the LMA's
    /// link and decrypted every ESP packet there to a good one.
    pub signalling_protected: bool,
    /// What the capture of the LMA's transport link held, as Wireshark read it (`--capture`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signalling: Option<SignallingCheck>,
    #[serde(skip)]
    pub tcp_samples: Vec<u64>,
    #[serde(skip)]
    pub handover_times: Vec<Duration>,
}

/// Knobs of the demo.
#[derive(Debug, Clone)]
pub struct DemoSpec {
    pub handovers: usize,
    pub interval: Duration,
    pub mode: HandoverMode,
    pub probe_rate_pps: u32,
    pub tcp_rate_bps: u64,
    /// A dual-stack node with its TCP stream over IPv4 (the lab needs `ipv4`).
    pub ipv4: bool,
    /// The lab's stand-in for the radio ([`compare`] builds its labs with it).
    pub radio: lab::Radio,
}

impl Default for DemoSpec {
    fn default() -> Self {
        DemoSpec {
            handovers: 6,
            interval: Duration::from_millis(1500),
            mode: HandoverMode::Plain,
            probe_rate_pps: 1000,
            tcp_rate_bps: 20_000_000,
            ipv4: false,
            radio: lab::Radio::default(),
        }
    }
}

/// Hands node `n` over to MAG `to` in the given mode and returns when the move was made,
/// with how long the lab's radio took to switch (see [`Lab::move_node`]).
pub async fn hand_over(
    lab: &mut Lab,
    n: usize,
    to: usize,
    mode: HandoverMode,
) -> anyhow::Result<Duration> {
    let from = lab.nodes[n].at.context("the node is not attached")?;
    match mode {
        HandoverMode::Plain => {}
        HandoverMode::Predictive => {
            lab.handover_indication(from, n, &format!("ap{}", to + 1), "")
                .await?;
        }
        HandoverMode::Reactive => {
            lab.handover_indication(to, n, "", &format!("ap{}", from + 1))
                .await?;
        }
    }
    lab.move_node(n, to).await
}

/// Runs the demo on a lab that is up, with node 0 not yet attached.
pub async fn run(lab: &mut Lab, spec: &DemoSpec) -> anyhow::Result<Report> {
    let t = Instant::now();
    lab.attach(0).await?;
    let address = lab.wait_node_address(0, Duration::from_secs(10)).await?;
    let attach_ms = t.elapsed().as_secs_f64() * 1e3;
    let mn = lab.nodes[0].ns.clone();
    let ipv4 = if spec.ipv4 {
        let ns = mn.clone();
        Some(tokio::task::spawn_blocking(move || crate::dhcp_client::lease(&ns)).await??)
    } else {
        None
    };
    let tcp = match ipv4 {
        Some(_) => TcpFlow::start(&mn, &lab.cn, CN_ADDRESS4, 7000, spec.tcp_rate_bps)?,
        None => TcpFlow::start(&mn, &lab.cn, CN_ADDRESS, 7000, spec.tcp_rate_bps)?,
    };
    let probe = UdpStream::start(&lab.cn, &mn, address, 7001, spec.probe_rate_pps, 64)?;
    tokio::time::sleep(spec.interval).await;
    let mut times = Vec::new();
    let mut moves = Vec::new();
    let mut l2 = Vec::new();
    for h in 0..spec.handovers {
        let from = lab.nodes[0].at.unwrap_or(0);
        let to = (from + 1) % lab.spec.mags;
        times.push(probe.now());
        l2.push(hand_over(lab, 0, to, spec.mode).await?);
        moves.push((from, to));
        let _ = h;
        tokio::time::sleep(spec.interval).await;
    }
    let still = lab.node_address(0);
    let still4 = crate::dhcp_client::addresses4(&mn);
    let tcp: TcpReport = tcp.finish();
    let probe: StreamReport = probe.finish();
    if let Some(f) = std::env::var_os("PMIP_LAB_DUMP") {
        let mut out = String::new();
        for a in &probe.arrivals {
            out.push_str(&format!(
                "{} {} {}\n",
                a.seq,
                a.sent.as_micros(),
                a.received.as_micros()
            ));
        }
        for t in &times {
            out.push_str(&format!("# handover at {}\n", t.as_micros()));
        }
        let _ = std::fs::write(f, out);
    }
    let window = spec.interval.min(Duration::from_millis(1000));
    let handovers = times
        .iter()
        .zip(&moves)
        .zip(&l2)
        .map(|((t, (from, to)), l2)| {
            let g: Gap = probe.gap(t.saturating_sub(Duration::from_millis(50)), *t + window);
            HandoverResult {
                from_mag: from + 1,
                to_mag: to + 1,
                l2_switch_ms: (l2.as_secs_f64() * 1e5).round() / 100.0,
                interruption_ms: (g.interruption_ms * 10.0).round() / 10.0,
                interruption_start_ms: (g.silent_from.as_secs_f64() * 1e4).round() / 10.0,
                lost_packets: g.lost_packets,
                reordered_packets: g.reordered,
                duplicated_packets: g.duplicated,
            }
        })
        .collect();
    Ok(Report {
        mode: spec.mode,
        mags: lab.spec.mags,
        radio: lab.spec.radio,
        attach_ms: (attach_ms * 10.0).round() / 10.0,
        address: address.to_string(),
        handovers,
        tcp_survived: tcp.survived,
        tcp_bytes: tcp.bytes,
        tcp_error: tcp.error.clone(),
        address_unchanged: still == Some(address),
        ipv4_address: ipv4.map(|(a, len)| format!("{a}/{len}")),
        ipv4_address_unchanged: ipv4.map(|a| still4 == [a]),
        probe_rate_pps: spec.probe_rate_pps,
        probe_sent: probe.sent,
        probe_lost: probe.lost(),
        probe_reordered: probe.reordered(),
        daemons: String::new(),
        signalling_protected: false,
        signalling: None,
        tcp_samples: tcp.samples,
        handover_times: times,
    })
}

impl Report {
    /// The report for people.
    pub fn text(&self) -> String {
        let mut s = String::new();
        s.push_str(&format!(
            "PMIPv6 demo: 1 LMA, {} MAGs, 1 mobile node, {:?} handovers\n",
            self.mags, self.mode
        ));
        s.push_str(&format!(
            "  attach:            {:.1} ms to a usable address ({})\n",
            self.attach_ms, self.address
        ));
        s.push_str(&format!(
            "  handovers (downlink UDP probe at {} packet/s; the radio: {}):\n",
            self.probe_rate_pps,
            match self.radio {
                lab::Radio::Carrier => "carrier down and up",
                lab::Radio::VethMove => "a veth moved between namespaces",
            }
        ));
        for (i, h) in self.handovers.iter().enumerate() {
            s.push_str(&format!(
                "    #{:<2} MAG{} -> MAG{}   L2 switch {:>6.2} ms   interruption {:>7.1} ms   lost {:>4}   reordered {}\n",
                i + 1,
                h.from_mag,
                h.to_mag,
                h.l2_switch_ms,
                h.interruption_ms,
                h.lost_packets,
                h.reordered_packets
            ));
        }
        s.push_str(&format!("  UDP probe:         {}\n", self.probe_text()));
        s.push_str(&format!(
            "  TCP stream:        {} ({} MB carried{})\n",
            if self.tcp_survived {
                "survived every handover"
            } else {
                "BROKE"
            },
            self.tcp_bytes / 1_000_000,
            self.tcp_error
                .as_ref()
                .map(|e| format!(", {e}"))
                .unwrap_or_default()
        ));
        s.push_str(&format!(
            "  address:           {}\n",
            if self.address_unchanged {
                "unchanged"
            } else {
                "CHANGED"
            }
        ));
        if let (Some(a), Some(same)) = (&self.ipv4_address, self.ipv4_address_unchanged) {
            s.push_str(&format!(
                "  IPv4 address:      {a} (DHCP), {}; the TCP stream ran over IPv4\n",
                if same { "unchanged" } else { "CHANGED" }
            ));
        }
        s.push_str(&format!(
            "  signalling:        {}\n",
            if self.signalling_protected {
                "protected by IPsec ESP"
            } else {
                "not protected"
            }
        ));
        if let Some(c) = &self.signalling {
            s.push_str(&format!(
                "  LMA's link:        {} ESP packets, {} Mobility Headers in clear, {} ESP packets Wireshark could not decrypt to a good one\n",
                c.esp_packets,
                c.cleartext_mobility_headers,
                c.esp_packets.saturating_sub(c.decrypted_types.len())
            ));
        }
        s
    }

    /// The probe stream in one line, as both the text and the picture say it.
    fn probe_text(&self) -> String {
        format!(
            "{} packets sent, {} lost, {} reordered",
            self.probe_sent, self.probe_lost, self.probe_reordered
        )
    }

    /// One handover's label, with the figures the text report prints.
    fn handover_label(h: &HandoverResult) -> String {
        format!(
            "MAG{}→MAG{} {:.1} ms, {} lost",
            h.from_mag, h.to_mag, h.interruption_ms, h.lost_packets
        )
    }

    /// A timeline of the TCP stream's throughput (SVG): a y-axis with ticks in Mbit/s, each
    /// handover as a dashed line where it started and a red span over the probe stream's
    /// silence, labelled with the interruption and the probe packets lost as the text report
    /// prints them, and the probe's totals in the heading.
    pub fn svg(&self) -> String {
        let w = 900.0;
        let h = 340.0;
        let (l, r, t, b) = (80.0, 20.0, 46.0, 40.0);
        let sample_s = crate::traffic::SAMPLE.as_secs_f64();
        let mbps: Vec<f64> = self
            .tcp_samples
            .iter()
            .map(|b| *b as f64 * 8.0 / sample_s / 1e6)
            .collect();
        let (step, max) = y_scale(mbps.iter().copied().fold(0.0, f64::max));
        let n = mbps.len().max(2) as f64;
        // Seconds on the x-axis: sample i is at i × SAMPLE.
        let span_s = (n - 1.0) * sample_s;
        let x = |s: f64| l + (w - l - r) * (s / span_s).clamp(0.0, 1.0);
        let y = |v: f64| t + (h - t - b) * (1.0 - v / max);
        let yb = h - b;
        let mut path = String::new();
        for (i, v) in mbps.iter().enumerate() {
            path.push_str(&format!(
                "{}{:.1},{:.1} ",
                if i == 0 { "M" } else { "L" },
                x(i as f64 * sample_s),
                y(*v)
            ));
        }
        let mut y_ticks = String::new();
        let mut v = 0.0;
        while v <= max + step / 1e6 {
            let yi = y(v);
            y_ticks.push_str(&format!(
                r##"<line x1="{l}" y1="{yi:.1}" x2="{xr}" y2="{yi:.1}" stroke="#ddd"/><line x1="{lt}" y1="{yi:.1}" x2="{l}" y2="{yi:.1}" stroke="black"/><text x="{lx}" y="{ty:.1}" font-size="10" text-anchor="end">{label}</text>"##,
                xr = w - r,
                lt = l - 4.0,
                lx = l - 6.0,
                ty = yi + 3.5,
                label = tick_label(v),
            ));
            v += step;
        }
        let mut marks = String::new();
        for (i, hr) in self.handovers.iter().enumerate() {
            let Some(at) = self.handover_times.get(i) else {
                continue;
            };
            let xi = x(at.as_secs_f64());
            let x0 = x(hr.interruption_start_ms / 1e3);
            let x1 = x((hr.interruption_start_ms + hr.interruption_ms) / 1e3).max(x0 + 1.0);
            marks.push_str(&format!(
                r##"<rect class="interruption" x="{x0:.1}" y="{t}" width="{sw:.1}" height="{sh}" fill="#d33" fill-opacity="0.25"/><line x1="{xi:.1}" y1="{t}" x2="{xi:.1}" y2="{yb}" stroke="#d33" stroke-dasharray="4 3"/><text x="{tx:.1}" y="{ty}" font-size="10" fill="#d33" transform="rotate(-90 {tx:.1} {ty})" text-anchor="end">{label}</text>"##,
                sw = x1 - x0,
                sh = yb - t,
                tx = xi - 3.0,
                ty = t + 4.0,
                label = Self::handover_label(hr),
            ));
        }
        let mut x_ticks = String::new();
        let mut s = 0.0;
        while s <= span_s + 1e-9 {
            let xi = x(s);
            x_ticks.push_str(&format!(
                r##"<line x1="{xi:.1}" y1="{yb}" x2="{xi:.1}" y2="{y2}" stroke="black"/><text x="{xi:.1}" y="{ty}" font-size="10" text-anchor="middle">{s:.0} s</text>"##,
                y2 = yb + 4.0,
                ty = yb + 16.0
            ));
            s += 1.0;
        }
        format!(
            r##"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif">
<rect width="{w}" height="{h}" fill="white"/>
<text x="{l}" y="16" font-size="13">TCP throughput through the tunnel ({mode:?} handovers); red: each handover and the downlink probe's silence</text>
<text x="{l}" y="32" font-size="11">UDP probe at {rate} packet/s: {probe}</text>
{y_ticks}
<line x1="{l}" y1="{yb}" x2="{xr}" y2="{yb}" stroke="black"/><line x1="{l}" y1="{t}" x2="{l}" y2="{yb}" stroke="black"/>
<text x="14" y="{ym:.1}" font-size="10" transform="rotate(-90 14 {ym:.1})" text-anchor="middle">Mbit/s</text>
{x_ticks}
{marks}
<path d="{path}" fill="none" stroke="#2266cc" stroke-width="1.5"/>
</svg>
"##,
            mode = self.mode,
            rate = self.probe_rate_pps,
            probe = self.probe_text(),
            xr = w - r,
            ym = (t + yb) / 2.0,
        )
    }
}

/// The y-axis of a throughput of at most `peak`: a tick step of 1, 2 or 5 times a power of
/// ten, and the top of the axis, a whole number of steps (3 to 5 of them) at or above the peak.
fn y_scale(peak: f64) -> (f64, f64) {
    let peak = if peak.is_finite() && peak > 0.0 {
        peak
    } else {
        1.0
    };
    let mut step = 10f64.powf((peak / 5.0).log10().floor());
    for m in [1.0, 2.0, 5.0, 10.0] {
        if peak / (step * m) <= 5.0 {
            step *= m;
            break;
        }
    }
    (step, (peak / step).ceil().max(1.0) * step)
}

/// A tick's value without trailing zeros: `0`, `0.5`, `20`.
fn tick_label(v: f64) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// One mode's handovers, summed up for the side-by-side comparison.
#[derive(Debug, Clone, Serialize)]
pub struct ModeSummary {
    pub mode: HandoverMode,
    pub handovers: usize,
    pub lost_packets: u64,
    pub reordered_packets: u64,
    pub duplicated_packets: u64,
    /// Largest loss in one handover.
    pub max_lost_per_handover: u64,
    pub interruption_p50_ms: f64,
    pub interruption_max_ms: f64,
    pub tcp_survived: bool,
    pub address_unchanged: bool,
}

impl ModeSummary {
    pub fn of(r: &Report) -> ModeSummary {
        let mut gaps: Vec<f64> = r.handovers.iter().map(|h| h.interruption_ms).collect();
        gaps.sort_by(f64::total_cmp);
        let p50 = gaps.get(gaps.len() / 2).copied().unwrap_or(0.0);
        ModeSummary {
            mode: r.mode,
            handovers: r.handovers.len(),
            lost_packets: r.handovers.iter().map(|h| h.lost_packets).sum(),
            reordered_packets: r.handovers.iter().map(|h| h.reordered_packets).sum(),
            duplicated_packets: r.handovers.iter().map(|h| h.duplicated_packets).sum(),
            max_lost_per_handover: r
                .handovers
                .iter()
                .map(|h| h.lost_packets)
                .max()
                .unwrap_or(0),
            interruption_p50_ms: p50,
            interruption_max_ms: gaps.last().copied().unwrap_or(0.0),
            tcp_survived: r.tcp_survived,
            address_unchanged: r.address_unchanged,
        }
    }
}

/// The modes side by side, for people.
pub fn side_by_side(rows: &[ModeSummary], rate_pps: u32) -> String {
    let mut s = format!(
        "handovers with a {rate_pps} packet/s downlink UDP stream (totals over every handover)\n\
         {:<11} {:>9} {:>6} {:>9} {:>10} {:>13} {:>17} {:>4} {:>8}\n",
        "mode",
        "handovers",
        "lost",
        "reordered",
        "duplicated",
        "max lost/one",
        "interruption ms",
        "TCP",
        "address"
    );
    s.push_str(&format!(
        "{:<11} {:>9} {:>6} {:>9} {:>10} {:>13} {:>17} {:>4} {:>8}\n",
        "", "", "", "", "", "", "p50 / max", "", ""
    ));
    for r in rows {
        s.push_str(&format!(
            "{:<11} {:>9} {:>6} {:>9} {:>10} {:>13} {:>17} {:>4} {:>8}\n",
            format!("{:?}", r.mode).to_lowercase(),
            r.handovers,
            r.lost_packets,
            r.reordered_packets,
            r.duplicated_packets,
            r.max_lost_per_handover,
            format!(
                "{:.1} / {:.1}",
                r.interruption_p50_ms, r.interruption_max_ms
            ),
            if r.tcp_survived { "ok" } else { "BROKE" },
            if r.address_unchanged {
                "same"
            } else {
                "CHANGED"
            },
        ));
    }
    s
}

/// Runs the demo once per mode, each in a fresh lab named `name` plus a digit.
pub async fn compare(
    name: &str,
    modes: &[HandoverMode],
    spec: &DemoSpec,
    binaries: &lab::Binaries,
) -> anyhow::Result<Vec<Report>> {
    let base: String = name.chars().take(7).collect();
    let mut out = Vec::new();
    for (i, m) in modes.iter().enumerate() {
        let mut ls = lab::Spec::new(&format!("{base}{i}"), 2, 1);
        ls.fast_handover = m.domain_mode();
        ls.radio = spec.radio;
        let mut l = Lab::up(ls, binaries.clone()).await?;
        let d = DemoSpec {
            mode: *m,
            ..spec.clone()
        };
        out.push(run(&mut l, &d).await?);
    }
    Ok(out)
}

/// Whether the LMA's signalling was all in ESP, by its own metrics: it sent and accepted ESP,
/// and dropped nothing for being in clear or failing a check.
pub fn lma_signalling_protected(lab: &Lab) -> anyhow::Result<bool> {
    let m = lab.metrics(&lab.lma_ns)?;
    let sample = |s: &str| lab::metric(&m, s);
    let dropped: f64 = m
        .lines()
        .filter(|l| l.starts_with("pmip_ipsec_dropped_total{"))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum();
    Ok(sample("pmip_ipsec_packets_total{direction=\"out\"}") > 0.0
        && sample("pmip_ipsec_packets_total{direction=\"in\"}") > 0.0
        && dropped == 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> Report {
        // 3 s of 20 ms samples at 8 Mbit/s (20 000 bytes a sample), silent around 1 s.
        let mut samples = vec![20_000u64; 150];
        for s in &mut samples[50..55] {
            *s = 0;
        }
        Report {
            mode: HandoverMode::Plain,
            mags: 2,
            radio: lab::Radio::Carrier,
            attach_ms: 120.0,
            address: "2001:db8:100::1".into(),
            handovers: vec![HandoverResult {
                from_mag: 1,
                to_mag: 2,
                l2_switch_ms: 0.05,
                interruption_ms: 87.4,
                interruption_start_ms: 1004.0,
                lost_packets: 85,
                reordered_packets: 0,
                duplicated_packets: 0,
            }],
            tcp_survived: true,
            tcp_bytes: 2_900_000,
            tcp_error: None,
            address_unchanged: true,
            ipv4_address: None,
            ipv4_address_unchanged: None,
            probe_rate_pps: 1000,
            probe_sent: 3000,
            probe_lost: 85,
            probe_reordered: 0,
            daemons: String::new(),
            signalling_protected: false,
            signalling: None,
            tcp_samples: samples,
            handover_times: vec![Duration::from_millis(1000)],
        }
    }

    #[test]
    fn the_y_axis_has_round_ticks_above_the_peak() {
        assert_eq!(y_scale(8.0), (2.0, 8.0));
        assert_eq!(y_scale(8.1), (2.0, 10.0));
        assert_eq!(y_scale(23.0), (5.0, 25.0));
        assert_eq!(y_scale(0.7), (0.2, 0.8));
        assert_eq!(y_scale(0.0), (0.2, 1.0));
        assert_eq!(tick_label(0.0), "0");
        assert_eq!(tick_label(0.2), "0.2");
        assert_eq!(tick_label(20.0), "20");
    }

    #[test]
    fn the_picture_says_what_the_text_says() {
        let r = report();
        let svg = r.svg();
        let text = r.text();
        // Ticks of the y-axis, 0 to 8 Mbit/s in steps of 2.
        for v in ["0", "2", "4", "6", "8"] {
            assert!(
                svg.contains(&format!("text-anchor=\"end\">{v}</text>")),
                "{v}: {svg}"
            );
        }
        // The interruption as a span: from 1.004 s, 87.4 ms wide, on an axis of 2.98 s over
        // 800 pixels.
        let px = |s: f64| 80.0 + 800.0 * s / 2.98;
        let span = format!(
            "<rect class=\"interruption\" x=\"{:.1}\" y=\"46\" width=\"{:.1}\"",
            px(1.004),
            px(1.0914) - px(1.004)
        );
        assert!(svg.contains(&span), "{span}\n{svg}");
        // Its label and the probe's totals, as the text prints them.
        assert!(svg.contains("MAG1→MAG2 87.4 ms, 85 lost"), "{svg}");
        assert!(
            text.contains("interruption    87.4 ms   lost   85"),
            "{text}"
        );
        assert!(
            svg.contains("UDP probe at 1000 packet/s: 3000 packets sent, 85 lost, 0 reordered")
        );
        assert!(text.contains("UDP probe:         3000 packets sent, 85 lost, 0 reordered"));
        assert!(
            text.contains("downlink UDP probe at 1000 packet/s"),
            "{text}"
        );
        // Well formed: every element opened is closed.
        assert_eq!(svg.matches("<svg").count(), svg.matches("</svg>").count());
        assert_eq!(svg.matches("<text").count(), svg.matches("</text>").count());
    }
}
