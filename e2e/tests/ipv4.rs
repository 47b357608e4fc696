//! IPv4 home addresses end to end (RFC 5844 §3.4): nodes that run nothing but the kernel and
//! Debian's busybox `udhcpc` get their IPv4 home address from the MAG's DHCP server and reach
//! the correspondent over IPv4 through the tunnel, both ways; `pmipctl` shows the addresses;
//! handovers keep the address and a TCP connection over IPv4; an LMA killed with kill -9
//! keeps every IPv4 home address. Needs root.

use std::net::Ipv4Addr;
use std::process::Command;
use std::time::{Duration, Instant};

use datapath::netns::NetNs;
use e2e::dhcp_client::addresses4;
use e2e::lab::{Binaries, CN_ADDRESS4, Lab, POOL4, Spec, mag_address, node_id};
use e2e::traffic::{TcpFlow, UdpStream};

macro_rules! say {
    ($($t:tt)*) => {{
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), "[e2e] {}", format!($($t)*));
    }};
}

fn binaries() -> Binaries {
    Binaries::fresh(
        std::path::Path::new(env!("CARGO_BIN_EXE_pmip-lab")),
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".."),
    )
}

/// A node that sends no IPv6 at all: IPv6 off on its link.
fn ipv6_off(lab: &Lab, ns: &NetNs) {
    lab.nl(ns)
        .unwrap()
        .set_sysctl("net/ipv6/conf/eth0/disable_ipv6", "1")
        .unwrap();
}

fn udhcpc(ns: &NetNs) -> std::process::Output {
    e2e::dhcp_client::udhcpc(ns, &[]).unwrap()
}

/// The LMA's bindings as `pmipctl bindings list -o json` shows them: MN-ID -> (IPv4 home
/// address, home network prefixes, proxy-CoA).
fn bindings4(lab: &Lab) -> std::collections::BTreeMap<String, (String, Vec<String>, String)> {
    let out = lab
        .pmipctl(&lab.lma_ns, &["bindings", "list", "-o", "json"])
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["mn_id"].as_str().unwrap().to_owned(),
                (
                    b["ipv4_home_address"].as_str().unwrap_or("").to_owned(),
                    b["home_network_prefixes"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|p| p.as_str().unwrap().to_owned())
                        .collect(),
                    b["proxy_coa"].as_str().unwrap().to_owned(),
                ),
            )
        })
        .collect()
}

/// Every route and rule of one family in `ns`, for a failure's message.
fn routes(ns: &NetNs, family: &str) -> String {
    let run = |args: &[&str]| {
        let out = Command::new("ip")
            .args(["-n", ns.name(), family])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    format!(
        "{}{}",
        run(&["rule"]),
        run(&["route", "show", "table", "all"])
    )
}

/// Echoes until one comes back from `dst`, at most `within`; whether one did.
fn reachable4(ns: &NetNs, dst: Ipv4Addr, within: Duration) -> bool {
    let t = Instant::now();
    while t.elapsed() < within {
        if ping4(ns, dst, 1) == 1 {
            return true;
        }
    }
    false
}

/// Echoes from `ns` to `dst` with busybox ping: how many came back of `count`.
fn ping4(ns: &NetNs, dst: Ipv4Addr, count: u32) -> u32 {
    let out = Command::new("ip")
        .args(["netns", "exec", ns.name(), "busybox", "ping"])
        .args(["-c", &count.to_string(), "-W", "2", "-i", "0.2"])
        .arg(dst.to_string())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| {
            let (_, rest) = l.split_once("transmitted, ")?;
            rest.split_whitespace().next()?.parse().ok()
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udhcpc_gets_the_ipv4_home_address_from_the_mag_and_reaches_the_correspondent() {
    let name = format!("v4{}", std::process::id() % 100_000);
    let mut spec = Spec::new(&name, 2, 2);
    spec.ipv4 = true;
    let mut lab = Lab::up(spec, binaries())
        .await
        .unwrap_or_else(|e| panic!("lab {name}: {e:#}"));
    // Node 1 starts at MAG1, node 2 at MAG2: both MAGs serve DHCP.
    // Node 2 is IPv4-only: it sends no IPv6 at all, so its DHCPDISCOVER is what registers
    // it (RFC 5844 §3.4.3).
    let v4only = lab.nodes[1].ns.clone();
    ipv6_off(&lab, &v4only);
    lab.attach(0).await.unwrap();
    lab.attach(1).await.unwrap();
    let pool: ipnet::Ipv4Net = POOL4.parse().unwrap();
    let t = Instant::now();
    let (dual, only) = std::thread::scope(|s| {
        let a = s.spawn(|| udhcpc(&lab.nodes[0].ns));
        let b = s.spawn(|| udhcpc(&v4only));
        (a.join().unwrap(), b.join().unwrap())
    });
    let took = t.elapsed();
    let mut homes = Vec::new();
    for (i, out) in [dual, only].iter().enumerate() {
        let ns = &lab.nodes[i].ns;
        assert!(
            out.status.success(),
            "node {}: udhcpc got no lease: {}{}",
            i + 1,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let a = addresses4(ns);
        assert_eq!(a.len(), 1, "node {}: {a:?}", i + 1);
        let (addr, len) = a[0];
        assert!(pool.contains(&addr), "{addr} in {pool}");
        assert_eq!(len, pool.prefix_len(), "the home subnet's mask");
        assert_ne!(
            addr,
            Ipv4Addr::from(u32::from(pool.network()) + 1),
            "not the default router"
        );
        homes.push(addr);
    }
    assert_ne!(homes[0], homes[1], "an address per node");
    // The node reaches the correspondent through the tunnel, and the correspondent reaches
    // the node's home address (routed to the LMA, tunnelled to the MAG).
    for (i, home) in homes.iter().enumerate() {
        let ns = &lab.nodes[i].ns;
        assert_eq!(ping4(ns, CN_ADDRESS4, 5), 5, "node {} -> CN", i + 1);
        assert_eq!(ping4(&lab.cn, *home, 5), 5, "CN -> node {} ({home})", i + 1);
    }
    // The dual-stack node has its IPv6 address as well.
    lab.wait_node_address(0, Duration::from_secs(10))
        .await
        .unwrap();
    let m = lab.metrics(&lab.mag_ns[0]).unwrap();
    let acks = e2e::lab::metric(&m, "pmip_mag_ipv4_replies_total{kind=\"dhcp-ack\"}");
    assert!(acks >= 1.0, "{acks} DHCPACKs");
    // pmipctl shows the IPv4 home addresses: JSON, the table's column, `bindings get` by the
    // address, and the MAGs' binding update lists.
    let b = bindings4(&lab);
    let len = pool.prefix_len();
    assert_eq!(b[&node_id(1)].0, format!("{}/{len}", homes[0]), "{b:?}");
    assert_eq!(b[&node_id(1)].1.len(), 1, "dual-stack: a prefix too");
    assert_eq!(b[&node_id(2)].0, format!("{}/{len}", homes[1]), "{b:?}");
    // The IPv4-only node's profile is dual-stack (the lab's): only the node keeps to IPv4.
    let table = lab.pmipctl(&lab.lma_ns, &["bindings", "list"]).unwrap();
    assert!(
        table.lines().next().unwrap().contains("IPV4 HOME ADDRESS"),
        "{table}"
    );
    for (i, home) in homes.iter().enumerate() {
        let row = table
            .lines()
            .find(|l| l.starts_with(&node_id(i + 1)))
            .unwrap_or_else(|| panic!("no row of {}:\n{table}", node_id(i + 1)));
        assert!(row.contains(&format!("{home}/{len}")), "{table}");
        let got = lab
            .pmipctl(
                &lab.lma_ns,
                &["bindings", "get", &home.to_string(), "-o", "json"],
            )
            .unwrap();
        let got: serde_json::Value = serde_json::from_str(&got).unwrap();
        assert_eq!(got["mn_id"], node_id(i + 1));
        assert_eq!(
            got["ipv4_default_router"],
            Ipv4Addr::from(u32::from(pool.network()) + 1).to_string()
        );
        let bul = lab
            .pmipctl(&lab.mag_ns[i], &["mag", "bul", "-o", "json"])
            .unwrap();
        let bul: serde_json::Value = serde_json::from_str(&bul).unwrap();
        let entry = bul
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["mn_id"] == node_id(i + 1))
            .unwrap_or_else(|| panic!("MAG{} BUL: {bul}", i + 1));
        assert_eq!(entry["ipv4_home_address"], format!("{home}/{len}"));
    }
    // A handover to MAG2 (its first IPv6 frame there registers the dual-stack node): the
    // new MAG routes the same IPv4 home address from the PBA, and the node, which sees the
    // same default router MAC on every MAG, reaches the correspondent again.
    let mn = lab.nodes[0].ns.clone();
    lab.move_node(0, 1).await.unwrap();
    let t = Instant::now();
    while ping4(&mn, CN_ADDRESS4, 1) != 1 {
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "no IPv4 to the CN after the handover"
        );
    }
    let back = t.elapsed();
    assert_eq!(addresses4(&mn), vec![(homes[0], pool.prefix_len())]);
    assert_eq!(ping4(&lab.cn, homes[0], 5), 5, "CN -> node 1 at MAG2");

    // RFC 5844 §3.4.3: a DHCPRELEASE (udhcpc's SIGUSR2) de-registers the
    // IPv4 home address alone: the LMA and pmipctl show the node with its prefix and no IPv4
    // home address, and IPv6 still works. A new lease gets an IPv4 home address again.
    let out = e2e::dhcp_client::lease_and_release(&mn).unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("unicasting a release of"), "{said}");
    let t = Instant::now();
    let released = loop {
        let b = bindings4(&lab);
        if b[&node_id(1)].0.is_empty() {
            break b;
        }
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "still held after the release: {b:?}\nudhcpc: {}{}\nMAG2 log:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(lab.log_path("mag2")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(
        released[&node_id(1)].1.len(),
        1,
        "the prefix stays: {released:?}"
    );
    assert_eq!(released[&node_id(1)].2, mag_address(1).to_string());
    assert_eq!(
        ping4(&lab.cn, homes[0], 2),
        0,
        "the released address is not routed"
    );
    let addr6 = lab.node_address(0).expect("the IPv6 address stays");
    assert_eq!(
        e2e::traffic::ping(&mn, e2e::lab::CN_ADDRESS, 64, 3, Duration::from_secs(3)).unwrap(),
        3,
        "IPv6 after the release ({addr6})"
    );
    let out = udhcpc(&mn);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let again = addresses4(&mn);
    assert_eq!(again.len(), 1, "{again:?}");
    assert!(
        reachable4(&mn, CN_ADDRESS4, Duration::from_secs(5)),
        "IPv4 again"
    );
    assert_eq!(
        bindings4(&lab)[&node_id(1)].0,
        format!("{}/{len}", again[0].0)
    );
    say!(
        "two nodes (dual-stack, IPv4-only) leased {} and {} by udhcpc in {:.0} ms; 5/5 echoes each way to {CN_ADDRESS4}; IPv4 back {:.0} ms after a handover; pmipctl shows both; a DHCPRELEASE de-registered the IPv4 home address only",
        homes[0],
        homes[1],
        took.as_secs_f64() * 1e3,
        back.as_secs_f64() * 1e3
    );
}

/// RFC 5844 with mobility: a dual-stack node moves between the MAGs 20 times with a TCP
/// connection over IPv4 to the correspondent, keeping both its addresses and the connection;
/// then the LMA is killed with kill -9 and restarted, and every node (the dual-stack one and
/// an IPv4-only one) keeps its IPv4 home address and reaches the correspondent again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handovers_and_an_lma_kill_keep_the_ipv4_home_addresses_and_tcp_over_ipv4() {
    let name = format!("v4h{}", std::process::id() % 100_000);
    let mut spec = Spec::new(&name, 2, 2);
    spec.ipv4 = true;
    let mut lab = Lab::up(spec, binaries())
        .await
        .unwrap_or_else(|e| panic!("lab {name}: {e:#}"));
    let v4only = lab.nodes[1].ns.clone();
    ipv6_off(&lab, &v4only);
    lab.attach(0).await.unwrap();
    lab.attach(1).await.unwrap();
    let mn = lab.nodes[0].ns.clone();
    for ns in [&mn, &v4only] {
        let out = udhcpc(ns);
        assert!(
            out.status.success(),
            "udhcpc: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let home = addresses4(&mn);
    let home_only = addresses4(&v4only);
    assert_eq!(
        (home.len(), home_only.len()),
        (1, 1),
        "{home:?} {home_only:?}"
    );
    let addr6 = lab
        .wait_node_address(0, Duration::from_secs(10))
        .await
        .unwrap();
    let before = bindings4(&lab);

    let flow = TcpFlow::start(&mn, &lab.cn, CN_ADDRESS4, 7400, 2_000_000).unwrap();
    let mut back_ms = Vec::new();
    for h in 0..20 {
        let to = (h + 1) % 2;
        lab.move_node(0, to).await.unwrap();
        let t = Instant::now();
        assert!(
            reachable4(&mn, CN_ADDRESS4, Duration::from_secs(15)),
            "handover {}: no IPv4 to the CN",
            h + 1
        );
        back_ms.push(t.elapsed().as_secs_f64() * 1e3);
        assert_eq!(
            addresses4(&mn),
            home,
            "handover {}: the IPv4 address",
            h + 1
        );
        assert_eq!(
            lab.node_address(0),
            Some(addr6),
            "handover {}: the IPv6 address",
            h + 1
        );
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let r = flow.finish();
    assert!(r.survived, "TCP over IPv4: {:?}", r.error);
    assert!(r.bytes > 100_000, "{} bytes", r.bytes);
    let after = bindings4(&lab);
    assert_eq!(
        after[&node_id(1)].0,
        before[&node_id(1)].0,
        "the IPv4 home address"
    );
    assert_eq!(after[&node_id(1)].1, before[&node_id(1)].1, "the prefix");
    assert_eq!(
        after[&node_id(1)].2,
        mag_address(0).to_string(),
        "back at MAG1"
    );
    assert_eq!(ping4(&lab.cn, home[0].0, 3), 3, "CN -> node 1 over IPv4");

    // kill -9: the restarted LMA has every IPv4 home address from its store, and both nodes
    // reach the correspondent over IPv4 with the addresses they have.
    lab.kill_lma().unwrap();
    let t = Instant::now();
    lab.start_lma().unwrap();
    let lma_ns = lab.lma_ns.clone();
    lab.wait_ready(&lma_ns, "LMA").await.unwrap();
    assert_eq!(
        bindings4(&lab),
        after,
        "the LMA's bindings after its restart"
    );
    for (ns, a) in [(&mn, home[0].0), (&v4only, home_only[0].0)] {
        assert!(
            reachable4(ns, CN_ADDRESS4, Duration::from_secs(20)),
            "{a}: no IPv4 to the CN after the LMA restart; LMA routes:\n{}\n{}\nMAG1:\n{}\n{}",
            routes(&lab.lma_ns, "-4"),
            routes(&lab.lma_ns, "-6"),
            routes(&lab.mag_ns[0], "-4"),
            routes(&lab.mag_ns[0], "-6"),
        );
        assert_eq!(ping4(&lab.cn, a, 3), 3, "CN -> {a} after the LMA restart");
    }
    let restart = t.elapsed();
    assert_eq!(addresses4(&mn), home);
    assert_eq!(addresses4(&v4only), home_only);
    let mut sorted = back_ms.clone();
    sorted.sort_by(f64::total_cmp);
    say!(
        "20 handovers with TCP over IPv4 ({} bytes, survived): IPv4 echo back after p50 {:.0} ms, max {:.0} ms (busybox ping probes: a lost echo costs 2 s); addresses {} and {} kept; LMA kill -9: both nodes back over IPv4 {:.0} ms after the restart",
        r.bytes,
        sorted[sorted.len() / 2],
        sorted[sorted.len() - 1],
        home[0].0,
        home_only[0].0,
        restart.as_secs_f64() * 1e3
    );
}

/// `pmip-lab demo --ipv4 --json`: the demo's dual-stack node leases its IPv4 home address
/// from its MAG, its TCP stream runs over IPv4 through the handovers, and the report says the
/// IPv4 home address did not change.
#[test]
fn the_demo_with_ipv4_keeps_the_ipv4_address_and_its_tcp_stream() {
    // Lab names have at most 8 characters.
    let name = format!("e4{}", std::process::id() % 100_000);
    let r = demo(&name, &["--handovers", "3", "--interval-ms", "800"]);
    let pool: ipnet::Ipv4Net = POOL4.parse().unwrap();
    let a: ipnet::Ipv4Net = r["ipv4_address"].as_str().unwrap().parse().unwrap();
    assert!(
        pool.contains(&a.addr()) && a.prefix_len() == pool.prefix_len(),
        "{r:#}"
    );
    assert_eq!(r["ipv4_address_unchanged"], true, "{r:#}");
    assert_eq!(r["address_unchanged"], true, "{r:#}");
    assert_eq!(r["tcp_survived"], true, "{r:#}");
    assert_eq!(r["handovers"].as_array().unwrap().len(), 3);
    say!(
        "demo --ipv4: {} kept through 3 handovers; TCP over IPv4 carried {} octets",
        a,
        r["tcp_bytes"]
    );
}

/// RFC 5949 §4.3 with RFC 5844: fast handovers of a dual-stack node. The previous MAG's
/// context carries the IPv4 home address; the new MAG serves it before its PBA and asks the
/// LMA for it, so the node keeps it and its TCP stream over IPv4 survives, predictive and
/// reactive; a predictive handover loses none of the IPv6 probe's packets.
#[test]
fn fast_handovers_keep_the_ipv4_address_and_tcp_over_ipv4() {
    let kernel = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(e2e::lab::kernel_tunnels(None))
        .unwrap();
    for mode in ["predictive", "reactive"] {
        let name = format!("f{}{}", &mode[..1], std::process::id() % 100_000);
        let r = demo(
            &name,
            &[
                "--fast-handover",
                mode,
                "--handovers",
                "4",
                "--interval-ms",
                "700",
            ],
        );
        assert_eq!(r["ipv4_address_unchanged"], true, "{mode}: {r:#}");
        assert_eq!(r["address_unchanged"], true, "{mode}: {r:#}");
        assert_eq!(r["tcp_survived"], true, "{mode}: {r:#}");
        let handovers = r["handovers"].as_array().unwrap();
        assert_eq!(handovers.len(), 4, "{mode}: {r:#}");
        if mode == "predictive" {
            // With the userspace tunnel, what was in flight through the previous MAG as the
            // LMA turned may be lost: at most 5 ms of the 1,000-packet/s probe.
            let most = if kernel { 0 } else { 5 };
            for h in handovers {
                assert!(
                    h["lost_packets"].as_u64().unwrap() <= most,
                    "{mode}: at most {most} lost: {r:#}"
                );
            }
        }
        say!(
            "demo --ipv4 --fast-handover {mode}: {} kept through 4 handovers; TCP over IPv4 \
             carried {} octets; IPv6 probe lost {}",
            r["ipv4_address"],
            r["tcp_bytes"],
            r["probe_lost"]
        );
    }
}

/// Runs `pmip-lab demo --ipv4 --json` with `args` as lab `name` and returns its report. A
/// demo that does not end within two minutes fails the test (and its lab is taken down).
fn demo(name: &str, args: &[&str]) -> serde_json::Value {
    let lab = env!("CARGO_BIN_EXE_pmip-lab");
    let mut child = Command::new(lab)
        .args(["demo", "--ipv4", "--json", "--name", name])
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = Command::new(lab).args(["down", "--name", name]).output();
            panic!("pmip-lab demo --ipv4 {args:?} did not end within 120 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "pmip-lab demo --ipv4 {args:?}: {}\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

/// DNAv4 (RFC 4436 §2.1) as busybox does it: one ARP request from `ns` for its default
/// router, on `eth0`.
fn detect_network(ns: &NetNs) {
    let out = Command::new("ip")
        .args(["-n", ns.name(), "-4", "route", "show", "default"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let router = (text.split_whitespace())
        .skip_while(|w| *w != "via")
        .nth(1)
        .unwrap_or_else(|| panic!("no IPv4 default route: {text}"))
        .to_owned();
    Command::new("ip")
        .args(["netns", "exec", ns.name(), "busybox", "arping"])
        .args(["-c", "1", "-w", "1", "-I", "eth0", &router])
        .output()
        .unwrap();
}

/// RFC 5844 with RFC 5949: an IPv4-only node (no IPv6 prefix to carry the end marker) is
/// handed over between the MAGs, predictively and reactively, with a 1000 packet/s UDP stream
/// over IPv4 to its home address. The LMA's end marker for the home address is an IPv4 packet,
/// which the previous MAG's kernel forwards to the new MAG behind the node's older packets:
/// the new MAG's holds end by it (`pmip_tun_end_markers_received_total`), not by expiry alone,
/// and the stream keeps its order as an IPv6 one does (e2e/tests/fast_handover.rs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn predictive_handovers_of_an_ipv4_only_node_end_by_its_ipv4_end_markers() {
    ipv4_only_fast_handovers(e2e::demo::HandoverMode::Predictive, "v4p").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reactive_handovers_of_an_ipv4_only_node_end_by_its_ipv4_end_markers() {
    ipv4_only_fast_handovers(e2e::demo::HandoverMode::Reactive, "v4r").await;
}

async fn ipv4_only_fast_handovers(mode: e2e::demo::HandoverMode, prefix: &str) {
    use e2e::demo::HandoverMode;
    const HANDOVERS: u64 = 10;
    let name = format!("{prefix}{}", std::process::id() % 100_000);
    let mut spec = Spec::new(&name, 2, 1);
    spec.ipv4 = true;
    spec.ipv4_only_nodes = vec![0];
    spec.fast_handover = match mode {
        HandoverMode::Predictive => pmip::config::FastHandoverMode::Predictive,
        HandoverMode::Reactive => pmip::config::FastHandoverMode::Reactive,
        HandoverMode::Plain => pmip::config::FastHandoverMode::Off,
    };
    let mut lab = Lab::up(spec, binaries())
        .await
        .unwrap_or_else(|e| panic!("lab {name}: {e:#}"));
    let mn = lab.nodes[0].ns.clone();
    ipv6_off(&lab, &mn);
    lab.attach(0).await.unwrap();
    let out = udhcpc(&mn);
    assert!(out.status.success(), "udhcpc: {out:?}");
    let home = addresses4(&mn);
    assert_eq!(home.len(), 1, "{home:?}");
    assert!(bindings4(&lab)[&node_id(1)].1.is_empty(), "IPv4 only");
    let stream = UdpStream::start(&lab.cn, &mn, home[0].0, 7500, 1000, 64).unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    for h in 0..HANDOVERS as usize {
        let to = (h + 1) % 2;
        e2e::demo::hand_over(&mut lab, 0, to, mode).await.unwrap();
        // What an IPv4 host does on a new link (DNAv4, RFC 4436): an ARP request for its
        // default router, which is how the new MAG hears a node that sends no IPv6.
        detect_network(&mn);
        tokio::time::sleep(Duration::from_millis(600)).await;
    }
    let r = stream.finish();
    assert_eq!(addresses4(&mn), home, "the IPv4 home address");
    assert_eq!(
        bindings4(&lab)[&node_id(1)].0,
        format!("{}/{}", home[0].0, home[0].1)
    );
    let count = |sample: &str| -> f64 {
        (lab.mag_ns.iter())
            .map(|ns| e2e::lab::metric(&lab.metrics(ns).unwrap(), sample))
            .sum()
    };
    let ended_by_marker = count("pmip_tun_end_markers_received_total");
    let expired = count("pmip_tun_holds_without_end_marker_total");
    let kernel = e2e::lab::kernel_tunnels(None).await.unwrap();
    say!(
        "IPv4-only node, {HANDOVERS} {mode:?} handovers, 1000 packets/s to {}: {} sent, {} lost, {} reordered, {} duplicated; holds ended by the IPv4 end marker {ended_by_marker}, without it {expired}",
        home[0].0,
        r.sent,
        r.lost(),
        r.reordered(),
        r.duplicated()
    );
    assert_eq!(r.duplicated(), 0);
    // Predictive handovers lose nothing; reactive ones what was in flight on the old link
    // (bounded here by what a plain handover loses: the stream's packets of the detach).
    let lost_allowed = match mode {
        HandoverMode::Predictive => 0,
        _ => 50 * HANDOVERS,
    };
    if kernel {
        // The kernel's decapsulation holds nothing: the markers reach the node, which drops
        // them; the order is the kernel's.
        assert_eq!(r.reordered(), 0);
        assert!(r.lost() <= lost_allowed, "lost {}", r.lost());
    } else {
        // The previous MAG forwarded the IPv4 markers to the new MAG and they ended its holds
        // (before, an IPv4-only node got no marker and no hold at all).
        assert!(
            ended_by_marker >= 1.0,
            "no hold ended by an IPv4 end marker ({expired} without)"
        );
        // Bounded as for IPv6 (fast_handover.rs): a busy machine can outwait a hold.
        let slack = 5 * HANDOVERS;
        assert!(
            r.reordered() <= slack && r.lost() <= lost_allowed + slack,
            "lost {} and reordered {} (at most {} and {slack})",
            r.lost(),
            r.reordered(),
            lost_allowed + slack
        );
    }
}
