//! TCP throughput through the tunnel against plain routing over the same namespaces and the
//! same hops, both directions, in one run, for IPv6 and for IPv4 home addresses (RFC 5844).
//!
//! The lab's node sends to the correspondent node through the tunnel (MN -> MAG =encap=>
//! router -> LMA =decap=> router -> CN). For plain routing a few policy rules (priority 50,
//! ahead of everything the daemons install) send the same packets along the same
//! namespaces without the encapsulation: MAG -> router -> LMA -> router -> CN, and back the
//! same way. Tunnel and plain runs alternate, `rounds` times each, and the medians compare.
//!
//! IPv4: the node leases its IPv4 home address from its MAG with busybox `udhcpc` (a stock
//! DHCPv4 client); through the tunnel its packets are IPv4 inside IPv6 (seg6 encapsulation of
//! IPv4 routes, End.DX4 at the MAG). For plain IPv4 routing the MAG's transport link gets an
//! IPv4 subnet as well (the LMA's and the CN's have theirs in a lab with IPv4), and the same
//! kind of priority-50 rules route the home address along the same hops.
//!
//! iperf3 measures when it is installed; otherwise a built-in TCP bulk sender and receiver
//! do, and the report says so.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use datapath::netns::NetNs;
use e2e::lab::{CN_ADDRESS, CN_ADDRESS4, LMA_ADDRESS, Lab, Spec as LabSpec, mag_address};
use ipnet::{Ipv4Net, Ipv6Net};
use netlink_packet_route::rule::{RuleAction, RuleMessage};
use rtnetlink::RouteMessageBuilder;
use serde::Serialize;
use serde_json::json;

use crate::report::{Report, Table, Verdict};
use crate::stats::round;

/// Knobs of the datapath benchmark.
#[derive(Debug, Clone)]
pub struct Spec {
    pub seconds: u32,
    pub rounds: usize,
    /// Use the built-in sender even when iperf3 is installed.
    pub builtin: bool,
    /// Also measure IPv4 (RFC 5844 home address) through the tunnel against plain IPv4
    /// routing.
    pub ipv4: bool,
    pub dir: PathBuf,
    pub name: String,
}

/// The tool that measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Tool {
    Iperf3,
    Builtin,
}

/// Throughputs of one direction, Gbit/s, one per round.
#[derive(Debug, Clone, Serialize)]
pub struct Direction {
    pub direction: String,
    /// `ipv6`, or `ipv4` (the node's IPv4 home address inside the IPv6 tunnel).
    pub family: &'static str,
    pub tunnel_gbps: Vec<f64>,
    pub plain_gbps: Vec<f64>,
    pub tunnel_median: f64,
    pub plain_median: f64,
    pub ratio: f64,
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if !n.is_multiple_of(2) => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Whether iperf3 can be run.
pub fn iperf3_installed() -> bool {
    std::process::Command::new("iperf3")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Bits per second from `client_ns` to a server in `server_ns` (`reverse`: the other way),
/// by iperf3.
fn iperf3(
    server_ns: &NetNs,
    client_ns: &NetNs,
    server: IpAddr,
    reverse: bool,
    seconds: u32,
) -> anyhow::Result<f64> {
    let mut srv = server_ns
        .command("iperf3")?
        .args(["-s", "-1", "-p", "5211"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("iperf3 -s")?;
    let mut last = String::new();
    for _ in 0..50 {
        let mut c = client_ns.command("iperf3")?;
        c.args([
            "-c",
            &server.to_string(),
            "-p",
            "5211",
            "-J",
            "--connect-timeout",
            "3000",
            "-t",
        ])
        .arg(seconds.to_string());
        if reverse {
            c.arg("-R");
        }
        let out = c.output().context("iperf3 -c")?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        // iperf3 3.12 exits 0 with -J even when it could not connect (the server may not be
        // listening yet): its JSON says whether it measured.
        let measured = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .filter(|v| v.get("error").is_none())
            .and_then(|v| v["end"]["sum_received"]["bits_per_second"].as_f64());
        if out.status.success()
            && let Some(bps) = measured
        {
            // `-1`: the server ends after its one test; it is not waited for forever.
            let t = Instant::now();
            while srv.try_wait()?.is_none() && t.elapsed() < Duration::from_secs(5) {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = srv.kill();
            let _ = srv.wait();
            return Ok(bps);
        }
        last = text;
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = srv.kill();
    let _ = srv.wait();
    bail!("iperf3 failed: {last}")
}

/// Bits per second of one TCP connection from `tx_ns` to a receiver listening in `rx_ns` on
/// `rx`, for `seconds`.
fn builtin(rx_ns: &NetNs, tx_ns: &NetNs, rx: IpAddr, seconds: u32) -> anyhow::Result<f64> {
    let any: IpAddr = match rx {
        IpAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
        IpAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
    };
    let listener = rx_ns.run(|| TcpListener::bind(SocketAddr::new(any, 5212)))??;
    let receiver = std::thread::spawn(move || -> std::io::Result<(u64, Duration)> {
        let (mut s, _) = listener.accept()?;
        let mut buf = vec![0u8; 1 << 18];
        let mut n = 0u64;
        let mut first = None;
        loop {
            match s.read(&mut buf)? {
                0 => break,
                k => {
                    first.get_or_insert_with(Instant::now);
                    n += k as u64;
                }
            }
        }
        Ok((n, first.map_or(Duration::ZERO, |t| t.elapsed())))
    });
    let mut conn = tx_ns
        .run(|| TcpStream::connect_timeout(&SocketAddr::new(rx, 5212), Duration::from_secs(5)))??;
    let buf = vec![0x5au8; 1 << 18];
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(u64::from(seconds)) {
        conn.write_all(&buf)?;
    }
    conn.shutdown(std::net::Shutdown::Write)?;
    drop(conn);
    let (n, took) = receiver
        .join()
        .map_err(|_| anyhow!("receiver thread panicked"))??;
    Ok(n as f64 * 8.0 / took.as_secs_f64().max(1e-9))
}

/// The policy rules that route the node's prefix without the tunnel.
struct Plain {
    rules: Vec<(rtnetlink::Handle, RuleMessage)>,
}

fn rule(
    h: &rtnetlink::Handle,
    prio: u32,
    iif: Option<&str>,
    from: Option<Ipv6Net>,
    to: Option<Ipv6Net>,
    table: u32,
) -> rtnetlink::RuleAddRequest<Ipv6Addr> {
    let mut r = h.rule().add().v6().priority(prio).table_id(table);
    if let Some(i) = iif {
        r = r.input_interface(i);
    }
    if let Some(f) = from {
        r = r.source_prefix(f.addr(), f.prefix_len());
    }
    if let Some(t) = to {
        r = r.destination_prefix(t.addr(), t.prefix_len());
    }
    r.action(RuleAction::ToTable)
}

const NET_UP: u32 = 7001;
const NET_DOWN: u32 = 7002;
const LMA_DOWN: u32 = 7003;
/// Interface names in the router namespace: p0 to the LMA, p1 to the CN, p2 to MAG1.
const TO_LMA: &str = "p0";
const TO_MAG1: &str = "p2";

impl Plain {
    /// Tables with the plain routes (left in place; without the rules nothing uses them).
    async fn tables(lab: &Lab, hnp: Ipv6Net) -> anyhow::Result<()> {
        let net = lab.net.rtnetlink()?;
        let nl = lab.nl(&lab.net)?;
        let p0 = nl.link_index(TO_LMA).await?;
        let p2 = nl.link_index(TO_MAG1).await?;
        let lma = lab.lma_ns.rtnetlink()?;
        let tr0 = lab.nl(&lab.lma_ns)?.link_index("tr0").await?;
        net.route()
            .add(
                RouteMessageBuilder::<Ipv6Addr>::new()
                    .destination_prefix(Ipv6Addr::UNSPECIFIED, 0)
                    .gateway(LMA_ADDRESS)
                    .output_interface(p0)
                    .table_id(NET_UP)
                    .build(),
            )
            .replace()
            .execute()
            .await?;
        net.route()
            .add(
                RouteMessageBuilder::<Ipv6Addr>::new()
                    .destination_prefix(hnp.addr(), hnp.prefix_len())
                    .gateway(mag_address(0))
                    .output_interface(p2)
                    .table_id(NET_DOWN)
                    .build(),
            )
            .replace()
            .execute()
            .await?;
        lma.route()
            .add(
                RouteMessageBuilder::<Ipv6Addr>::new()
                    .destination_prefix(hnp.addr(), hnp.prefix_len())
                    .gateway(Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 2))
                    .output_interface(tr0)
                    .table_id(LMA_DOWN)
                    .build(),
            )
            .replace()
            .execute()
            .await?;
        Ok(())
    }

    async fn on(lab: &Lab, hnp: Ipv6Net) -> anyhow::Result<Plain> {
        let net = lab.net.rtnetlink()?;
        let lma = lab.lma_ns.rtnetlink()?;
        let mag = lab.mag_ns[0].rtnetlink()?;
        let cn = Ipv6Net::new(CN_ADDRESS, 128)?;
        let mut rules = Vec::new();
        for (h, mut req) in [
            (
                net.clone(),
                rule(&net, 50, Some(TO_MAG1), Some(hnp), None, NET_UP),
            ),
            (
                net.clone(),
                rule(&net, 51, Some(TO_LMA), None, Some(hnp), NET_DOWN),
            ),
            (lma.clone(), rule(&lma, 50, None, None, Some(hnp), LMA_DOWN)),
            (
                mag.clone(),
                rule(&mag, 50, None, Some(hnp), Some(cn), datapath::MAIN_TABLE),
            ),
        ] {
            let msg = req.message_mut().clone();
            req.execute().await?;
            rules.push((h, msg));
        }
        Ok(Plain { rules })
    }

    /// IPv4: the MAG's transport link gets [`MAG_NET4`] (the MAG at .1, the router at .2),
    /// and tables with the plain routes of the node's IPv4 home address `home` (left in
    /// place; without the rules nothing uses them).
    async fn tables4(lab: &Lab, home: Ipv4Addr) -> anyhow::Result<()> {
        let nl = lab.nl(&lab.net)?;
        let p2 = nl.link_index(TO_MAG1).await?;
        nl.add_address4(p2, ROUTER_TO_MAG1_4, 30).await?;
        let mag_nl = lab.nl(&lab.mag_ns[0])?;
        let mag_tr0 = mag_nl.link_index("tr0").await?;
        mag_nl.add_address4(mag_tr0, MAG1_4, 30).await?;
        let lma_nl = lab.nl(&lab.lma_ns)?;
        let lma_tr0 = lma_nl.link_index("tr0").await?;
        // Plain forwarding as the tunnel's own path has it: forwarding on, no reverse-path
        // filter in the way of a source that is routed elsewhere.
        for (ns_nl, ifs) in [
            (&nl, vec!["all", "default", TO_LMA, TO_MAG1]),
            (&lma_nl, vec!["all", "default", "tr0"]),
            (&mag_nl, vec!["all", "default", "tr0"]),
        ] {
            ns_nl.set_sysctl("net/ipv4/ip_forward", "1")?;
            for i in ifs {
                ns_nl.set_sysctl(&format!("net/ipv4/conf/{i}/rp_filter"), "0")?;
            }
        }
        let p0 = nl.link_index(TO_LMA).await?;
        let net = lab.net.rtnetlink()?;
        let lma = lab.lma_ns.rtnetlink()?;
        let mag = lab.mag_ns[0].rtnetlink()?;
        for (h, dst, gw, oif, table) in [
            (
                &net,
                Ipv4Net::new(Ipv4Addr::UNSPECIFIED, 0)?,
                LMA_ADDRESS4,
                p0,
                NET_UP4,
            ),
            (&net, Ipv4Net::new(home, 32)?, MAG1_4, p2, NET_DOWN4),
            (
                &lma,
                Ipv4Net::new(home, 32)?,
                ROUTER_TO_LMA_4,
                lma_tr0,
                LMA_DOWN4,
            ),
            (
                &mag,
                Ipv4Net::new(Ipv4Addr::UNSPECIFIED, 0)?,
                ROUTER_TO_MAG1_4,
                mag_tr0,
                MAG_UP4,
            ),
        ] {
            h.route()
                .add(
                    RouteMessageBuilder::<Ipv4Addr>::new()
                        .destination_prefix(dst.addr(), dst.prefix_len())
                        .gateway(gw)
                        .output_interface(oif)
                        .table_id(table)
                        .build(),
                )
                .replace()
                .execute()
                .await?;
        }
        Ok(())
    }

    /// The IPv4 rules: the node's home address `home` routed without the tunnel.
    async fn on4(lab: &Lab, home: Ipv4Addr) -> anyhow::Result<Plain> {
        let net = lab.net.rtnetlink()?;
        let lma = lab.lma_ns.rtnetlink()?;
        let mag = lab.mag_ns[0].rtnetlink()?;
        let home = Ipv4Net::new(home, 32)?;
        let cn = Ipv4Net::new(CN_ADDRESS4, 32)?;
        let mut rules = Vec::new();
        for (h, mut req) in [
            (
                net.clone(),
                rule4(&net, 50, Some(TO_MAG1), Some(home), None, NET_UP4),
            ),
            (
                net.clone(),
                rule4(&net, 51, Some(TO_LMA), None, Some(home), NET_DOWN4),
            ),
            (
                lma.clone(),
                rule4(&lma, 50, None, None, Some(home), LMA_DOWN4),
            ),
            (
                mag.clone(),
                rule4(&mag, 50, None, Some(home), Some(cn), MAG_UP4),
            ),
        ] {
            let msg = req.message_mut().clone();
            req.execute().await?;
            rules.push((h, msg));
        }
        Ok(Plain { rules })
    }

    async fn off(self) -> anyhow::Result<()> {
        for (h, m) in self.rules {
            h.rule().del(m).execute().await?;
        }
        Ok(())
    }
}

fn rule4(
    h: &rtnetlink::Handle,
    prio: u32,
    iif: Option<&str>,
    from: Option<Ipv4Net>,
    to: Option<Ipv4Net>,
    table: u32,
) -> rtnetlink::RuleAddRequest<Ipv4Addr> {
    let mut r = h.rule().add().v4().priority(prio).table_id(table);
    if let Some(i) = iif {
        r = r.input_interface(i);
    }
    if let Some(f) = from {
        r = r.source_prefix(f.addr(), f.prefix_len());
    }
    if let Some(t) = to {
        r = r.destination_prefix(t.addr(), t.prefix_len());
    }
    r.action(RuleAction::ToTable)
}

const NET_UP4: u32 = 7011;
const NET_DOWN4: u32 = 7012;
const LMA_DOWN4: u32 = 7013;
const MAG_UP4: u32 = 7014;
/// The LMA's IPv4 address on its transport link in a lab with IPv4, and the router's there.
const LMA_ADDRESS4: Ipv4Addr = Ipv4Addr::new(10, 255, 0, 1);
const ROUTER_TO_LMA_4: Ipv4Addr = Ipv4Addr::new(10, 255, 0, 2);
/// The IPv4 subnet of MAG1's transport link for plain IPv4 routing (the lab gives the LMA's
/// link 10.255.0.0/30 and the CN's 10.255.1.0/30).
const MAG_NET4: &str = "10.255.2.0/30";
const MAG1_4: Ipv4Addr = Ipv4Addr::new(10, 255, 2, 1);
const ROUTER_TO_MAG1_4: Ipv4Addr = Ipv4Addr::new(10, 255, 2, 2);

/// Whether busybox's DHCPv4 client can be run.
pub fn udhcpc_installed() -> bool {
    std::process::Command::new("udhcpc")
        .arg("--help")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// The node leases its IPv4 home address from its MAG with busybox `udhcpc` and its default
/// script (the address on eth0, the default route through the MAG); the address.
fn lease4(ns: &NetNs) -> anyhow::Result<Ipv4Addr> {
    // `ip netns exec` gives the script /etc/netns/NAME/resolv.conf in place of the host's,
    // which it rewrites.
    let etc = PathBuf::from("/etc/netns").join(ns.name());
    std::fs::create_dir_all(&etc).with_context(|| etc.display().to_string())?;
    std::fs::write(etc.join("resolv.conf"), "")?;
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", ns.name(), "udhcpc"])
        // Foreground, quit once bound, give up after 10 DISCOVERs 1 s apart; no hostname.
        .args(["-i", "eth0", "-f", "-q", "-n", "-t", "10", "-T", "1"])
        .output()
        .context("udhcpc (Debian package udhcpc or busybox)");
    let _ = std::fs::remove_dir_all(&etc);
    let _ = std::fs::remove_dir("/etc/netns");
    let out = out?;
    let text = String::from_utf8_lossy(
        &ns.command("ip")?
            .args(["-4", "-o", "addr", "show", "dev", "eth0"])
            .output()?
            .stdout,
    )
    .into_owned();
    let pool: Ipv4Net = e2e::lab::POOL4.parse()?;
    text.split_whitespace()
        .filter_map(|w| w.split_once('/')?.0.parse::<Ipv4Addr>().ok())
        .find(|a| pool.contains(a))
        .ok_or_else(|| {
            anyhow!(
                "the node leased no IPv4 home address from {pool}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        })
}

/// One measured direction: what it is called and its family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Up6,
    Down6,
    Up4,
    Down4,
}

impl Flow {
    fn name(self) -> &'static str {
        match self {
            Flow::Up6 => "uplink (MN -> CN)",
            Flow::Down6 => "downlink (CN -> MN)",
            Flow::Up4 => "IPv4 uplink (MN -> CN)",
            Flow::Down4 => "IPv4 downlink (CN -> MN)",
        }
    }

    fn family(self) -> &'static str {
        match self {
            Flow::Up6 | Flow::Down6 => "ipv6",
            Flow::Up4 | Flow::Down4 => "ipv4",
        }
    }
}

/// Runs the benchmark.
pub async fn run(spec: &Spec) -> anyhow::Result<Report> {
    let tool = if !spec.builtin && iperf3_installed() {
        Tool::Iperf3
    } else {
        Tool::Builtin
    };
    let mut notes = Vec::new();
    if tool == Tool::Builtin && !spec.builtin {
        notes.push(
            "iperf3 is not installed (apt-get install iperf3): measured with the built-in \
             TCP bulk sender instead (one connection, 256 KiB writes)"
                .to_owned(),
        );
    }
    if spec.ipv4 && !udhcpc_installed() {
        bail!(
            "the IPv4 rows need a DHCPv4 client in the node (apt-get install udhcpc, or \
             busybox); --no-ipv4 measures IPv6 alone"
        );
    }
    let mut ls = LabSpec::new(&spec.name, 1, 1);
    ls.dir = Some(spec.dir.join("datapath"));
    ls.ipv4 = spec.ipv4;
    let lab = Lab::up(ls, crate::bed::binaries()?).await?;
    lab.attach(0).await?;
    let addr = lab.wait_node_address(0, Duration::from_secs(10)).await?;
    let hnp = Ipv6Net::new(addr, 64)?.trunc();
    Plain::tables(&lab, hnp).await?;
    let mn = lab.nodes[0].ns.clone();
    let home4 = if spec.ipv4 {
        let ns = mn.clone();
        let home = tokio::task::spawn_blocking(move || lease4(&ns)).await??;
        Plain::tables4(&lab, home).await?;
        Some(home)
    } else {
        None
    };
    let mut flows = vec![Flow::Up6, Flow::Down6];
    if home4.is_some() {
        flows.extend([Flow::Up4, Flow::Down4]);
    }
    let cn = lab.cn.clone();
    let secs = spec.seconds;
    let measure = move |f: Flow| -> anyhow::Result<f64> {
        let (cn_addr, mn_addr): (IpAddr, IpAddr) = match f {
            Flow::Up6 | Flow::Down6 => (CN_ADDRESS.into(), addr.into()),
            Flow::Up4 | Flow::Down4 => (
                CN_ADDRESS4.into(),
                home4.ok_or_else(|| anyhow!("no IPv4 home address"))?.into(),
            ),
        };
        let up = matches!(f, Flow::Up6 | Flow::Up4);
        match (tool, up) {
            (Tool::Iperf3, up) => iperf3(&cn, &mn, cn_addr, !up, secs),
            (Tool::Builtin, true) => builtin(&cn, &mn, cn_addr, secs),
            (Tool::Builtin, false) => builtin(&mn, &cn, mn_addr, secs),
        }
    };
    // Per flow: tunnel runs, plain runs.
    let mut runs: Vec<(Vec<f64>, Vec<f64>)> = vec![(Vec::new(), Vec::new()); flows.len()];
    for _ in 0..spec.rounds {
        for plain in [false, true] {
            let mut rules = Vec::new();
            if plain {
                rules.push(Plain::on(&lab, hnp).await?);
                if let Some(h) = home4 {
                    rules.push(Plain::on4(&lab, h).await?);
                }
            }
            let m = measure.clone();
            let fl = flows.clone();
            let got = tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<f64>> {
                fl.iter().map(|f| m(*f)).collect()
            })
            .await??;
            for (i, bps) in got.into_iter().enumerate() {
                let v = if plain {
                    &mut runs[i].1
                } else {
                    &mut runs[i].0
                };
                v.push(round(bps / 1e9, 3));
            }
            for p in rules {
                p.off().await?;
            }
        }
    }
    let dirs: Vec<Direction> = flows
        .iter()
        .zip(runs)
        .map(|(f, (t, p))| {
            let (tm, pm) = (median(&t), median(&p));
            Direction {
                direction: f.name().into(),
                family: f.family(),
                tunnel_median: round(tm, 3),
                plain_median: round(pm, 3),
                ratio: if pm > 0.0 { round(tm / pm, 3) } else { 0.0 },
                tunnel_gbps: t,
                plain_gbps: p,
            }
        })
        .collect();
    let mut t = Table::new(
        &format!(
            "datapath: one TCP connection, {} s x {} rounds, {}",
            spec.seconds,
            spec.rounds,
            match tool {
                Tool::Iperf3 => "iperf3",
                Tool::Builtin => "built-in sender",
            }
        ),
        &[
            "direction",
            "tunnel Gbit/s",
            "plain Gbit/s",
            "tunnel/plain",
            "tunnel runs",
            "plain runs",
        ],
    );
    for d in &dirs {
        t.row(vec![
            d.direction.clone(),
            format!("{:.2}", d.tunnel_median),
            format!("{:.2}", d.plain_median),
            format!("{:.2}", d.ratio),
            format!("{:?}", d.tunnel_gbps),
            format!("{:?}", d.plain_gbps),
        ]);
    }
    let verdicts = dirs
        .iter()
        .map(|d| {
            Verdict::new(
                format!("{}: tunnel >= 0.9 of plain routing", d.direction),
                format!("{:.2}", d.ratio),
                Some(d.ratio >= 0.9),
            )
        })
        .collect();
    notes.push(
        "both paths cross the same namespaces (MN, MAG, router, LMA, router, CN); only the \
         RFC 2473 encapsulation differs"
            .into(),
    );
    if let Some(h) = home4 {
        notes.push(format!(
            "IPv4: the node's home address {h} (leased from its MAG by udhcpc) inside the IPv6 \
             tunnel (the daemons' datapath: seg6 encapsulation of IPv4 routes and End.DX4, or \
             the userspace tunnel's protocol-4 sockets) against plain IPv4 routing, the MAG's \
             transport link in {MAG_NET4}"
        ));
    }
    Ok(Report {
        bench: "datapath".into(),
        setup: json!({
            "seconds": spec.seconds, "rounds": spec.rounds, "tool": tool, "ipv4": spec.ipv4,
        }),
        tables: vec![t],
        verdicts,
        notes,
        figures: json!({ "directions": dirs, "tool": tool, "ipv4_home_address": home4 }),
    })
}
