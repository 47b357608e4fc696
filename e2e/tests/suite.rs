//! The end-to-end suite: every scenario builds its own lab (namespaces named after the
//! scenario and the test process, so scenarios run in parallel and beside a lab someone left
//! up), runs the real `pmip-lma` and `pmip-mag` in it, and prints what it measured. Needs root.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv6Addr;
use std::time::{Duration, Instant};

use datapath::netns::NetNs;
use e2e::lab::{Binaries, CN_ADDRESS, Lab, Spec, mag_address, metric, node_id};
use e2e::traffic::{TcpFlow, UdpStream, ping};

/// Prints a scenario's figures on the test's stderr even when the harness captures output
/// (`eprintln!` would be captured and shown only on failure).
macro_rules! say {
    ($($t:tt)*) => {{
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), "[e2e] {}", format!($($t)*));
    }};
}

/// A lab name: the scenario's tag and the test process (at most 8 characters).
fn name(tag: &str) -> String {
    assert!(tag.len() <= 3);
    format!("{tag}{}", std::process::id() % 100_000)
}

fn binaries() -> Binaries {
    Binaries::fresh(
        std::path::Path::new(env!("CARGO_BIN_EXE_pmip-lab")),
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".."),
    )
}

async fn up(spec: Spec) -> Lab {
    let n = spec.name.clone();
    Lab::up(spec, binaries())
        .await
        .unwrap_or_else(|e| panic!("lab {n}: {e:#}"))
}

/// Sends one echo at a time from `from` to `to` until one comes back; how long that took.
/// How long one reachability probe waits for its echo reply (a reply takes well under 1 ms
/// in the lab).
const PROBE_TIMEOUT: Duration = Duration::from_millis(20);

fn reachable(from: &NetNs, to: Ipv6Addr, within: Duration) -> Option<Duration> {
    let t = Instant::now();
    while t.elapsed() < within {
        // The reply timeout is the figure's resolution: a probe lost in the switch costs it.
        if ping(from, to, 64, 1, PROBE_TIMEOUT).unwrap_or(0) == 1 {
            return Some(t.elapsed());
        }
    }
    None
}

/// Pings every address from `from` in parallel until each answered once; the addresses that
/// never did within `within`, and the time the last one took.
fn all_reachable(from: &NetNs, addrs: &[Ipv6Addr], within: Duration) -> (Vec<Ipv6Addr>, Duration) {
    let t = Instant::now();
    let silent: Vec<Ipv6Addr> = std::thread::scope(|s| {
        let hs: Vec<_> = addrs
            .iter()
            .map(|a| s.spawn(move || (*a, reachable(from, *a, within).is_some())))
            .collect();
        hs.into_iter()
            .filter_map(|h| h.join().ok())
            .filter(|(_, ok)| !ok)
            .map(|(a, _)| a)
            .collect()
    });
    (silent, t.elapsed())
}

/// Attaches nodes `0..n` all at once and waits for every address.
async fn attach_all(lab: &Lab, n: usize, within: Duration) -> (Vec<Ipv6Addr>, Duration) {
    let t = Instant::now();
    for i in 0..n {
        lab.attach(i).await.unwrap();
    }
    let mut addrs = vec![None; n];
    while t.elapsed() < within && addrs.iter().any(Option::is_none) {
        for (i, a) in addrs.iter_mut().enumerate() {
            if a.is_none() {
                *a = lab.node_address(i);
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let missing: Vec<usize> = (0..n).filter(|i| addrs[*i].is_none()).collect();
    assert!(
        missing.is_empty(),
        "nodes without an address after {within:?}: {:?}",
        missing.iter().map(|i| i + 1).collect::<Vec<_>>()
    );
    (addrs.into_iter().flatten().collect(), t.elapsed())
}

/// The LMA's bindings by MN-ID: (prefixes, proxy-CoA).
async fn bindings(lab: &Lab) -> BTreeMap<String, (Vec<String>, String)> {
    let all = lab.bindings().await.unwrap();
    let mut m = BTreeMap::new();
    for b in all {
        let dup = m.insert(
            b.mn_id.clone(),
            (b.home_network_prefixes.clone(), b.proxy_coa.clone()),
        );
        assert!(dup.is_none(), "two bindings for {}", b.mn_id);
    }
    m
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return 0.0;
    }
    v[((v.len() - 1) as f64 * p).round() as usize]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attach_slaac_ping_and_tcp_both_ways() {
    let mut lab = up(Spec::new(&name("as"), 2, 1)).await;
    let t = Instant::now();
    lab.attach(0).await.unwrap();
    let addr = lab
        .wait_node_address(0, Duration::from_secs(10))
        .await
        .unwrap();
    let attach_ms = t.elapsed().as_secs_f64() * 1e3;
    assert!(lab.node_has_default_route(0));
    // The LMA holds one binding, at MAG1, whose prefix the node configured its address from.
    let b = bindings(&lab).await;
    let (prefixes, coa) = &b[&node_id(1)];
    assert_eq!(coa, &mag_address(0).to_string());
    let prefix: ipnet::Ipv6Net = prefixes[0].parse().unwrap();
    assert!(prefix.contains(&addr), "{addr} in {prefix}");
    let mn = lab.nodes[0].ns.clone();
    assert_eq!(
        ping(&mn, CN_ADDRESS, 64, 20, Duration::from_secs(3)).unwrap(),
        20
    );
    assert_eq!(
        ping(&lab.cn, addr, 64, 20, Duration::from_secs(3)).unwrap(),
        20
    );
    // TCP opened from each side, 1 s each.
    let up_flow = TcpFlow::start(&mn, &lab.cn, CN_ADDRESS, 7100, 50_000_000).unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let up_r = up_flow.finish();
    let down_flow = TcpFlow::start(&lab.cn, &mn, addr, 7101, 50_000_000).unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let down_r = down_flow.finish();
    assert!(up_r.survived, "MN -> CN: {:?}", up_r.error);
    assert!(down_r.survived, "CN -> MN: {:?}", down_r.error);
    assert!(up_r.bytes > 1_000_000 && down_r.bytes > 1_000_000);
    say!(
        "attach+SLAAC: {attach_ms:.1} ms; 20/20 echoes each way; TCP MN->CN {:.1} Mbit/s, CN->MN {:.1} Mbit/s (paced at 50)",
        up_r.bytes as f64 * 8.0 / 1e6,
        down_r.bytes as f64 * 8.0 / 1e6
    );
    lab.move_node(0, 1).await.unwrap();
    assert!(reachable(&mn, CN_ADDRESS, Duration::from_secs(10)).is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_size_packets_cross_the_tunnel_both_ways_without_loss() {
    let lab = up(Spec::new(&name("fs"), 1, 1)).await;
    lab.attach(0).await.unwrap();
    let addr = lab
        .wait_node_address(0, Duration::from_secs(10))
        .await
        .unwrap();
    let mn = lab.nodes[0].ns.clone();
    // 1500-octet echoes, never fragmented, each way.
    let n = 200;
    assert_eq!(
        ping(&mn, CN_ADDRESS, 1500, n, Duration::from_secs(5)).unwrap(),
        n
    );
    assert_eq!(
        ping(&lab.cn, addr, 1500, n, Duration::from_secs(5)).unwrap(),
        n
    );
    // A stream of 1500-octet datagrams (1452 octets of payload) each way.
    let down = UdpStream::start(&lab.cn, &mn, addr, 7200, 500, 1452).unwrap();
    let upw = UdpStream::start(&mn, &lab.cn, CN_ADDRESS, 7201, 500, 1452).unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (d, u) = (down.finish(), upw.finish());
    assert!(d.sent > 500 && u.sent > 500);
    assert_eq!(d.lost(), 0, "CN -> MN lost {} of {}", d.lost(), d.sent);
    assert_eq!(u.lost(), 0, "MN -> CN lost {} of {}", u.lost(), u.sent);
    say!(
        "full size: {n}/{n} 1500-octet echoes each way; UDP 1500-octet datagrams: {} down, {} up, 0 lost",
        d.sent,
        u.sent
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_handovers_keep_the_tcp_connection_and_the_address() {
    let mut lab = up(Spec::new(&name("ho"), 2, 1)).await;
    lab.attach(0).await.unwrap();
    let addr = lab
        .wait_node_address(0, Duration::from_secs(10))
        .await
        .unwrap();
    let mn = lab.nodes[0].ns.clone();
    let flow = TcpFlow::start(&mn, &lab.cn, CN_ADDRESS, 7300, 5_000_000).unwrap();
    let mut back_ms = Vec::new();
    for h in 0..50 {
        let to = (h + 1) % 2;
        lab.move_node(0, to).await.unwrap();
        let t = reachable(&mn, CN_ADDRESS, Duration::from_secs(10))
            .unwrap_or_else(|| panic!("handover {}: the node never reached the CN", h + 1));
        back_ms.push(t.as_secs_f64() * 1e3);
        assert_eq!(lab.node_address(0), Some(addr), "handover {}", h + 1);
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let r = flow.finish();
    assert!(r.survived, "TCP: {:?}", r.error);
    let b = bindings(&lab).await;
    assert_eq!(b.len(), 1);
    assert_eq!(b[&node_id(1)].1, mag_address(0).to_string(), "back at MAG1");
    let served = lab.bindings().await.unwrap();
    assert_eq!(served[0].handover_count, 50);
    say!(
        "50 handovers: reachable again after p50 {:.1} ms, max {:.1} ms; TCP carried {} bytes and survived; address unchanged",
        percentile(&mut back_ms.clone(), 0.5),
        percentile(&mut back_ms, 1.0),
        r.bytes
    );
}

/// Pings node 2 from node 1 (both on MAG1) and returns the packets the LMA's transport link
/// received meanwhile.
async fn local_path(local_routing: bool) -> (u64, u64) {
    let mut spec = Spec::new(&name(if local_routing { "lr1" } else { "lr0" }), 1, 2);
    spec.local_routing = local_routing;
    let lab = up(spec).await;
    let (addrs, _) = attach_all(&lab, 2, Duration::from_secs(10)).await;
    let mn1 = lab.nodes[0].ns.clone();
    assert!(reachable(&mn1, addrs[1], Duration::from_secs(5)).is_some());
    let (lma_before, _) = Lab::link_packets(&lab.lma_ns, "tr0").unwrap();
    let n = 200;
    assert_eq!(
        ping(&mn1, addrs[1], 100, n, Duration::from_secs(5)).unwrap(),
        n
    );
    let (lma_after, _) = Lab::link_packets(&lab.lma_ns, "tr0").unwrap();
    (lma_after - lma_before, u64::from(n))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn localized_routing_keeps_traffic_between_nodes_of_one_mag_off_the_lma() {
    let (via_lma_off, n) = local_path(false).await;
    let (via_lma_on, _) = local_path(true).await;
    say!(
        "localized routing: {n} echoes between two nodes of one MAG; packets through the LMA: {via_lma_off} when off, {via_lma_on} when on"
    );
    // Off: every request and every reply enters the LMA.
    assert!(via_lma_off >= 2 * n, "off: {via_lma_off}");
    // On: none does (a few heartbeats may).
    assert!(via_lma_on < 10, "on: {via_lma_on}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_lma_with_100_nodes_loses_nothing() {
    let nodes = 100;
    let mut lab = up(Spec::new(&name("lk"), 2, nodes)).await;
    let (addrs, took) = attach_all(&lab, nodes, Duration::from_secs(60)).await;
    let before = bindings(&lab).await;
    assert_eq!(before.len(), nodes);
    let pba = |lab: &Lab| -> f64 {
        (0..2)
            .map(|i| {
                metric(
                    &lab.metrics(&lab.mag_ns[i]).unwrap(),
                    "pmip_mag_pba_received_total",
                )
            })
            .sum()
    };
    let pba_before = pba(&lab);
    let stats_before = lab.lma_stats().await.unwrap();
    lab.kill_lma().unwrap();
    let t = Instant::now();
    lab.start_lma().unwrap();
    let lma_ns = lab.lma_ns.clone();
    lab.wait_ready(&lma_ns, "LMA").await.unwrap();
    let serving = t.elapsed();
    let after = bindings(&lab).await;
    assert_eq!(
        after, before,
        "every binding, prefix and proxy-CoA restored"
    );
    let (silent, _) = all_reachable(&lab.cn, &addrs, Duration::from_secs(20));
    assert!(
        silent.is_empty(),
        "unreachable after the restart: {silent:?}"
    );
    let reachable_after = t.elapsed();
    // RFC 5847 §3.2: no session was lost, so the Restart Counter is the same and the MAGs,
    // whose heartbeats see it, re-register nothing (a domain-wide re-registration after every
    // LMA restart or upgrade is what the MUST NOT spares). The run number moved on.
    let stats = lab.lma_stats().await.unwrap();
    assert_eq!(stats.restart_counter, stats_before.restart_counter);
    assert_eq!(stats.epoch, stats_before.epoch + 1);
    let heartbeats = Duration::from_secs(2 * u64::from(lab.spec.heartbeat_interval_s) + 1);
    tokio::time::sleep(heartbeats.saturating_sub(t.elapsed())).await;
    let reregistered = pba(&lab) - pba_before;
    assert!(
        reregistered < nodes as f64 / 2.0,
        "{reregistered} PBAs after the restart: the MAGs re-registered their nodes"
    );
    assert_eq!(bindings(&lab).await, before);
    for (i, a) in addrs.iter().enumerate() {
        assert_eq!(lab.node_address(i), Some(*a));
    }
    say!(
        "LMA kill -9 with {nodes} nodes (attached in {:.0} ms): serving again {:.0} ms after restart, all {nodes} reachable at {:.0} ms, {reregistered} re-registrations in {:.0} s (restart counter kept); no prefix changed",
        took.as_secs_f64() * 1e3,
        serving.as_secs_f64() * 1e3,
        reachable_after.as_secs_f64() * 1e3,
        heartbeats.as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_and_restart_of_a_mag_keeps_its_nodes() {
    let mut lab = up(Spec::new(&name("mk"), 2, 4)).await;
    let (addrs, _) = attach_all(&lab, 4, Duration::from_secs(10)).await;
    let before = bindings(&lab).await;
    let counter_before = mag_restart_counter(&lab, 0).await;
    let mn1 = lab.nodes[0].ns.clone();
    // A downlink stream to node 1 (at MAG1) across the crash and the restart.
    let stream = UdpStream::start(&lab.cn, &mn1, addrs[0], 7400, 500, 64).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    lab.kill_mag(0).unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let t = Instant::now();
    lab.start_mag(0).unwrap();
    let ns = lab.mag_ns[0].clone();
    lab.wait_ready(&ns, "MAG1").await.unwrap();
    let ready = t.elapsed();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let r = stream.finish();
    // The binding stayed (an upgrade is not a detach), and so did the datapath.
    assert_eq!(bindings(&lab).await, before);
    // RFC 5847 §3.2: its nodes survived in its state, so its Restart Counter did not change.
    assert_eq!(mag_restart_counter(&lab, 0).await, counter_before);
    let (silent, _) = all_reachable(&lab.cn, &addrs, Duration::from_secs(10));
    assert!(silent.is_empty(), "{silent:?}");
    for (i, a) in addrs.iter().enumerate() {
        assert_eq!(lab.node_address(i), Some(*a));
    }
    if lab.kernel_tunnels().await.unwrap() {
        // The kernel's tunnel routes outlive the MAG.
        assert!(
            r.lost() <= 5,
            "lost {} of {} across the MAG's crash and restart",
            r.lost(),
            r.sent
        );
    } else {
        // Nothing carries the userspace tunnel's pairs while the MAG is down (they and their
        // routes stay, unread): what the stream sent while it was down (500 ms, then its
        // start until ready) is lost, and nothing more.
        let outage = Duration::from_millis(500) + ready + Duration::from_millis(300);
        let bound = (500.0 * outage.as_secs_f64()).ceil() as u64;
        assert!(
            r.lost() <= bound,
            "lost {} of {} across the MAG's crash and restart: more than its outage ({} ms, \
             {bound} datagrams)",
            r.lost(),
            r.sent,
            outage.as_millis()
        );
        say!(
            "userspace tunnel: {} of {} lost during the MAG's outage of {} ms (its tunnels stop \
             with it; the kernel's seg6 or ip6tnl would lose none: not run on this kernel)",
            r.lost(),
            r.sent,
            outage.as_millis()
        );
    }
    // The restarted MAG still serves its nodes: node 1 moves to MAG2 and back.
    lab.move_node(0, 1).await.unwrap();
    assert!(reachable(&mn1, CN_ADDRESS, Duration::from_secs(10)).is_some());
    lab.move_node(0, 0).await.unwrap();
    assert!(reachable(&mn1, CN_ADDRESS, Duration::from_secs(10)).is_some());
    assert_eq!(
        bindings(&lab).await[&node_id(1)].1,
        mag_address(0).to_string()
    );
    say!(
        "MAG kill -9: gRPC ready {:.0} ms after the restart; downlink lost {} of {} across crash and restart; bindings unchanged; handover after restart ok",
        ready.as_secs_f64() * 1e3,
        r.lost(),
        r.sent
    );
}

/// MAG `i`'s Restart Counter (RFC 5847 §3.4), from its `Gateway.Stats`.
async fn mag_restart_counter(lab: &Lab, i: usize) -> u64 {
    e2e::lab::in_ns(&lab.mag_ns[i], || async {
        let ch = tonic::transport::Endpoint::from_static("http://[::1]:50051")
            .connect_timeout(Duration::from_secs(2))
            .connect()
            .await?;
        let mut c = proto::v1::gateway_client::GatewayClient::new(ch);
        Ok(c.stats(proto::v1::MagStatsRequest {})
            .await?
            .into_inner()
            .restart_counter)
    })
    .await
    .unwrap()
}

/// Runs `nft -f -` with `rules` inside `ns`.
fn nft(ns: &NetNs, rules: &str) -> String {
    use std::io::Write;
    let mut c = ns.command("nft").unwrap();
    c.arg("-f").arg("-");
    c.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = c.spawn().expect("nft (nftables) is installed");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(rules.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "nft: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_percent_signalling_loss_still_registers_every_node_once() {
    let nodes = 20;
    let mut spec = Spec::new(&name("sl"), 2, nodes);
    spec.mag_timers.initial_bindack_timeout_ms = 200;
    spec.mag_timers.max_bindack_timeout_ms = 1_600;
    spec.mag_timers.registration_retry_s = 2;
    let lab = up(spec).await;
    // Every Mobility Header packet crossing the transport router is dropped with p = 0.3.
    nft(
        &lab.net,
        "table ip6 pmiploss {\n chain lossy {\n  type filter hook forward priority 0; policy accept;\n  meta l4proto 135 numgen random mod 100 < 30 counter drop\n  meta l4proto 135 counter accept\n }\n}\n",
    );
    let (_, took) = attach_all(&lab, nodes, Duration::from_secs(90)).await;
    let b = bindings(&lab).await;
    assert_eq!(b.len(), nodes, "one binding per node");
    let prefixes: BTreeSet<&String> = b.values().flat_map(|(p, _)| p).collect();
    assert_eq!(prefixes.len(), nodes, "no prefix given twice");
    for (n, node) in lab.nodes.iter().enumerate() {
        let at = node.at.unwrap();
        assert_eq!(b[&node_id(n + 1)].1, mag_address(at).to_string());
    }
    let listing = String::from_utf8(
        lab.net
            .command("nft")
            .unwrap()
            .args(["list", "table", "ip6", "pmiploss"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let counts: Vec<u64> = listing
        .lines()
        .filter_map(|l| l.split("packets ").nth(1))
        .filter_map(|r| r.split_whitespace().next()?.parse().ok())
        .collect();
    let (dropped, passed) = (counts[0], counts[1]);
    assert!(dropped > 0, "the rule dropped something");
    let retx: f64 = (0..2)
        .map(|i| {
            metric(
                &lab.metrics(&lab.mag_ns[i]).unwrap(),
                "pmip_mag_pbu_retransmitted_total",
            )
        })
        .sum();
    say!(
        "30 % signalling loss: {nodes} nodes registered in {:.1} s; {dropped} MH packets dropped, {passed} passed; {retx} PBU retransmissions; {} bindings, all distinct",
        took.as_secs_f64(),
        b.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unauthorized_mag_and_unknown_nodes_get_no_service() {
    // MAG2 is not authorized; node 1 (at MAG1) is unknown to the LMA only, node 3 (at MAG3)
    // unknown to everyone; node 4 (at MAG1) is a regular node.
    let mut spec = Spec::new(&name("ua"), 3, 4);
    spec.unauthorized_mags = vec![1];
    spec.lma_unknown_nodes = vec![0];
    spec.unknown_nodes = vec![2];
    let lab = up(spec).await;
    lab.attach(3).await.unwrap();
    lab.wait_node_address(3, Duration::from_secs(10))
        .await
        .unwrap();
    let before = lab.bindings().await.unwrap();
    assert_eq!(before.len(), 1);
    for n in 0..3 {
        lab.attach(n).await.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    for n in 0..3 {
        assert_eq!(lab.node_address(n), None, "node {} got an address", n + 1);
        assert!(
            !lab.node_has_default_route(n),
            "node {} got a router",
            n + 1
        );
    }
    // Nothing changed at the LMA, down to the binding's revision.
    let after = lab.bindings().await.unwrap();
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].mn_id, node_id(4));
    assert_eq!(after[0].revision, before[0].revision);
    let m2 = lab.metrics(&lab.mag_ns[1]).unwrap();
    let refused_154 = m2.lines().any(|l| {
        l.starts_with("pmip_mag_pba_received_by_status_total{") && l.contains("status=\"154\"")
    });
    assert!(refused_154, "MAG2 got PBA 154:\n{m2}");
    let m1 = lab.metrics(&lab.mag_ns[0]).unwrap();
    let rejected = metric(&m1, "pmip_mag_events_total{kind=\"rejected\"}");
    assert!(rejected >= 1.0, "MAG1 saw node 1 rejected:\n{m1}");
    let m3 = lab.metrics(&lab.mag_ns[2]).unwrap();
    assert!(metric(&m3, "pmip_mag_events_total{kind=\"unknown-node\"}") >= 1.0);
    assert_eq!(
        metric(&m3, "pmip_mag_pbu_sent_total"),
        0.0,
        "no PBU for an unknown node"
    );
    say!(
        "refusals: unauthorized MAG -> PBA 154; node unknown to the LMA -> rejected ({rejected} rejections at MAG1); unknown node -> no PBU; no address, no router, the LMA's one binding untouched"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_nodes_attach_at_once() {
    let nodes = 200;
    let lab = up(Spec::new(&name("nd"), 2, nodes)).await;
    let (addrs, took) = attach_all(&lab, nodes, Duration::from_secs(90)).await;
    let b = bindings(&lab).await;
    assert_eq!(b.len(), nodes);
    let distinct: BTreeSet<&Ipv6Addr> = addrs.iter().collect();
    assert_eq!(distinct.len(), nodes);
    let (silent, all_in) = all_reachable(&lab.cn, &addrs, Duration::from_secs(20));
    assert!(silent.is_empty(), "unreachable: {silent:?}");
    let m = lab.metrics(&lab.mag_ns[0]).unwrap();
    say!(
        "{nodes} nodes at once: all addressed in {:.0} ms, all reachable from the CN {:.0} ms later; MAG1 registered {}",
        took.as_secs_f64() * 1e3,
        all_in.as_secs_f64() * 1e3,
        metric(&m, "pmip_mag_registered")
    );
}

/// RFC 5846 §8.1, per peer: `pmipctl bindings revoke --proxy-coa MAG1` revokes every binding
/// of MAG1 with one global BRI, which the real MAG acknowledges after revoking its nodes
/// (their routes go, their address is withdrawn); MAG2's node keeps its binding.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_per_mag_revocation_removes_every_binding_of_that_mag() {
    let lab = up(Spec::new(&name("rvm"), 2, 3)).await;
    let (addrs, _) = attach_all(&lab, 3, Duration::from_secs(10)).await;
    let before = bindings(&lab).await;
    assert_eq!(before.len(), 3);
    let out = lab
        .pmipctl(
            &lab.lma_ns,
            &[
                "bindings",
                "revoke",
                "--proxy-coa",
                &mag_address(0).to_string(),
            ],
        )
        .unwrap();
    assert!(
        out.contains("2 binding(s) revoked: the MAG acknowledged"),
        "{out}"
    );
    let after = bindings(&lab).await;
    assert_eq!(
        after.keys().cloned().collect::<Vec<_>>(),
        vec![node_id(2)],
        "only MAG2's node keeps its binding"
    );
    // MAG1 told its nodes (an RA with the router and prefix lifetimes at zero: their
    // default route goes; RFC 4862 §5.5.3 e keeps the address itself); they are unreachable,
    // node 2 is still reachable.
    let t = Instant::now();
    while lab.node_has_default_route(0) || lab.node_has_default_route(2) {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "default routes not withdrawn"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(lab.node_has_default_route(1));
    for n in [0, 2] {
        assert!(reachable(&lab.cn, addrs[n], Duration::from_millis(500)).is_none());
    }
    assert!(reachable(&lab.cn, addrs[1], Duration::from_secs(2)).is_some());
    say!("per-MAG revocation: {}", out.trim());
}

/// Runs `cmd` with `args` in network namespace `ns`; its standard output.
fn run_in(ns: &NetNs, cmd: &str, args: &[&str], stdin: Option<&str>) -> String {
    use std::io::Write;
    let out = ns
        .run(|| {
            let mut c = std::process::Command::new(cmd);
            c.args(args)
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped());
            let mut child = c.spawn()?;
            if let (Some(text), Some(mut i)) = (stdin, child.stdin.take()) {
                i.write_all(text.as_bytes())?;
            }
            child.wait_with_output()
        })
        .unwrap()
        .unwrap();
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Issue 13 item 6 (RFC 5213 §6.8, §6.9.1.2 rule 15, the seed's approach B): with the
/// LMA-generated link-local address, a SLAAC node (the kernel's, nothing else) keeps its
/// default router across a handover: the same link-local router address before and after,
/// which each MAG has on the node's link before its RA, and defends (the node's own
/// duplicate address detection of it fails).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lma_generated_link_local_keeps_the_default_router_across_a_handover() {
    use pmip::config::LinkLocalMode;
    use pmip::types::LinkLayerAddress;
    let mut spec = Spec::new(&name("llg"), 2, 1);
    spec.link_local = Some(LinkLocalMode::LmaGenerated {
        link_layer_address: LinkLayerAddress::mac([0x02, 0x00, 0x5e, 0x00, 0x53, 0x01]),
    });
    let mut lab = up(spec).await;
    lab.attach(0).await.unwrap();
    let addr = lab
        .wait_node_address(0, Duration::from_secs(10))
        .await
        .unwrap();
    let mn = lab.nodes[0].ns.clone();
    let t = Instant::now();
    let before = loop {
        if let Some(r) = lab.node_default_router(0) {
            break r;
        }
        assert!(t.elapsed() < Duration::from_secs(5), "no default route");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(before.segments()[0], 0xfe80, "{before}");
    assert_ne!(
        before,
        "fe80::1".parse::<Ipv6Addr>().unwrap(),
        "not the fixed one"
    );
    reachable(&mn, CN_ADDRESS, Duration::from_secs(5)).expect("the CN through MAG1");
    lab.move_node(0, 1).await.unwrap();
    let t = reachable(&mn, CN_ADDRESS, Duration::from_secs(10))
        .expect("the CN through MAG2 after the handover");
    assert_eq!(lab.node_address(0), Some(addr));
    let after = lab.node_default_router(0);
    assert_eq!(
        after,
        Some(before),
        "the same default router after the handover"
    );
    let routes = run_in(&mn, "ip", &["-6", "route", "show", "default"], None);
    assert!(
        routes.contains(&format!("via {before} dev eth0")),
        "{routes}"
    );
    assert_eq!(routes.lines().count(), 1, "one default route: {routes}");
    // MAG2 defends the address: the node's duplicate address detection of it fails.
    run_in(
        &mn,
        "sysctl",
        &["-qw", "net.ipv6.conf.eth0.accept_dad=1"],
        None,
    );
    run_in(
        &mn,
        "ip",
        &["-6", "addr", "add", &format!("{before}/64"), "dev", "eth0"],
        None,
    );
    let t2 = Instant::now();
    let failed = loop {
        let a = run_in(&mn, "ip", &["-6", "addr", "show", "dev", "eth0"], None);
        if a.contains("dadfailed") {
            break true;
        }
        if t2.elapsed() > Duration::from_secs(5) {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    run_in(
        &mn,
        "ip",
        &["-6", "addr", "del", &format!("{before}/64"), "dev", "eth0"],
        None,
    );
    assert!(failed, "nobody answered the node's DAD for {before}");
    say!(
        "LMA-generated link-local {before}: the default router before and after the handover; \
         the CN reachable again after {:.1} ms; MAG2 defends the address",
        t.as_secs_f64() * 1e3
    );
}

/// Issue 13 item 7 (RFC 5213 §6.13, the seed's handoff step 1): a node that stops answering
/// on a link that stays up (its namespace drops every IPv6 packet, as a node that walked
/// out of a Wi-Fi cell behind a bridge) is detached by Neighbor Unreachability Detection
/// within `idle_s + probes × probe_interval_ms`; the node beside it, which answers, stays.
/// When it answers again, it is attached again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_node_on_a_link_that_stays_up_is_detached_by_neighbor_unreachability() {
    use pmip::config::NeighborUnreachabilityConfig;
    let mut spec = Spec::new(&name("nud"), 1, 2);
    let nud = NeighborUnreachabilityConfig {
        idle_s: 2,
        probes: 2,
        probe_interval_ms: 500,
    };
    spec.neighbor_unreachability = Some(nud);
    let lab = up(spec).await;
    attach_all(&lab, 2, Duration::from_secs(10)).await;
    for n in 0..2 {
        reachable(&lab.nodes[n].ns, CN_ADDRESS, Duration::from_secs(5)).expect("reachable");
    }
    assert_eq!(bindings(&lab).await.len(), 2);
    let silent = lab.nodes[0].ns.clone();
    run_in(
        &silent,
        "nft",
        &["-f", "-"],
        Some(
            "table ip6 silent {\n  chain in { type filter hook input priority 0; policy drop; }\n  \
             chain out { type filter hook output priority 0; policy drop; }\n}\n",
        ),
    );
    let t = Instant::now();
    let bound = |b: &[proto::v1::Binding], id: &str| {
        b.iter()
            .any(|x| x.mn_id == id && x.state == proto::v1::BindingState::Active as i32)
    };
    let limit = Duration::from_secs(2) + Duration::from_millis(2 * 500);
    let detached = loop {
        let b = lab.bindings().await.unwrap();
        if !bound(&b, &node_id(1)) {
            break t.elapsed();
        }
        assert!(
            t.elapsed() < limit + Duration::from_secs(3),
            "node 1 still bound {:?} after it went silent",
            t.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Polled every 100 ms, and the node was last heard up to a probe cycle before.
    assert!(
        detached <= limit + Duration::from_millis(500),
        "{detached:?}"
    );
    // Its link stayed up all along; the node that answers is still there after several
    // probe cycles.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let b = lab.bindings().await.unwrap();
    assert!(bound(&b, &node_id(2)), "{b:?}");
    reachable(&lab.nodes[1].ns, CN_ADDRESS, Duration::from_secs(2)).expect("node 2 served");
    // It answers again: its next solicitation attaches it again, with its prefix.
    run_in(&silent, "nft", &["delete", "table", "ip6", "silent"], None);
    let back = reachable(&silent, CN_ADDRESS, Duration::from_secs(15))
        .expect("node 1 served again once it answers");
    assert!(bound(&lab.bindings().await.unwrap(), &node_id(1)));
    say!(
        "a node silent on a link that stays up: de-registered after {:.1} s (limit {:.1} s); \
         the answering node kept; served again {:.1} s after it answered",
        detached.as_secs_f64(),
        limit.as_secs_f64(),
        back.as_secs_f64()
    );
}
