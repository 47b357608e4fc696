//! TCP throughput through the tunnel against plain routing over the same namespaces and the
//! same hops, both directions, in one run.
//!
//! The lab's node sends to the correspondent node through the tunnel (MN -> MAG =encap=>
//! router -> LMA =decap=> router -> CN). For plain routing a few policy rules (priority 50,
//! ahead of everything the daemons install) send the same packets along the same
//! namespaces without the encapsulation: MAG -> router -> LMA -> router -> CN, and back the
//! same way. Tunnel and plain runs alternate, `rounds` times each, and the medians compare.
//!
//! iperf3 measures when it is installed; otherwise a built-in TCP bulk sender and receiver
//! do, and the report says so.

use std::io::{Read, Write};
use std::net::{Ipv6Addr, SocketAddrV6, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use dataplane::netns::NetNs;
use e2e::lab::{CN_ADDRESS, LMA_ADDRESS, Lab, Spec as LabSpec, mag_address};
use ipnet::Ipv6Net;
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
    server: Ipv6Addr,
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
fn builtin(rx_ns: &NetNs, tx_ns: &NetNs, rx: Ipv6Addr, seconds: u32) -> anyhow::Result<f64> {
    let listener =
        rx_ns.run(|| TcpListener::bind(SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, 5212, 0, 0)))??;
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
    let mut conn = tx_ns.run(|| {
        TcpStream::connect_timeout(
            &SocketAddrV6::new(rx, 5212, 0, 0).into(),
            Duration::from_secs(5),
        )
    })??;
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
                rule(&mag, 50, None, Some(hnp), Some(cn), dataplane::MAIN_TABLE),
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
    let mut ls = LabSpec::new(&spec.name, 1, 1);
    ls.dir = Some(spec.dir.join("datapath"));
    let lab = Lab::up(ls, crate::bed::binaries()?).await?;
    lab.attach(0).await?;
    let addr = lab.wait_node_address(0, Duration::from_secs(10)).await?;
    let hnp = Ipv6Net::new(addr, 64)?.trunc();
    Plain::tables(&lab, hnp).await?;
    let mn = lab.nodes[0].ns.clone();
    let cn = lab.cn.clone();
    let secs = spec.seconds;
    let measure = move |up: bool| -> anyhow::Result<f64> {
        match (tool, up) {
            (Tool::Iperf3, true) => iperf3(&cn, &mn, CN_ADDRESS, false, secs),
            (Tool::Iperf3, false) => iperf3(&cn, &mn, CN_ADDRESS, true, secs),
            (Tool::Builtin, true) => builtin(&cn, &mn, CN_ADDRESS, secs),
            (Tool::Builtin, false) => builtin(&mn, &cn, addr, secs),
        }
    };
    let mut up = (Vec::new(), Vec::new());
    let mut down = (Vec::new(), Vec::new());
    for _ in 0..spec.rounds {
        for plain in [false, true] {
            let p = if plain {
                Some(Plain::on(&lab, hnp).await?)
            } else {
                None
            };
            let m = measure.clone();
            let (u, d) = tokio::task::spawn_blocking(move || -> anyhow::Result<(f64, f64)> {
                Ok((m(true)?, m(false)?))
            })
            .await??;
            let (us, ds) = if plain {
                (&mut up.1, &mut down.1)
            } else {
                (&mut up.0, &mut down.0)
            };
            us.push(round(u / 1e9, 3));
            ds.push(round(d / 1e9, 3));
            if let Some(p) = p {
                p.off().await?;
            }
        }
    }
    let dir = |name: &str, (t, p): (Vec<f64>, Vec<f64>)| {
        let (tm, pm) = (median(&t), median(&p));
        Direction {
            direction: name.into(),
            tunnel_median: round(tm, 3),
            plain_median: round(pm, 3),
            ratio: if pm > 0.0 { round(tm / pm, 3) } else { 0.0 },
            tunnel_gbps: t,
            plain_gbps: p,
        }
    };
    let dirs = [
        dir("uplink (MN -> CN)", up),
        dir("downlink (CN -> MN)", down),
    ];
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
    Ok(Report {
        bench: "datapath".into(),
        setup: json!({ "seconds": spec.seconds, "rounds": spec.rounds, "tool": tool }),
        tables: vec![t],
        verdicts,
        notes,
        figures: json!({ "directions": dirs, "tool": tool }),
    })
}
