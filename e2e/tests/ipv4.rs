//! IPv4 home addresses end to end (RFC 5844 §3.4): nodes that run nothing but the kernel and
//! Debian's busybox `udhcpc` get their IPv4 home address from the MAG's DHCP server and reach
//! the correspondent over IPv4 through the tunnel, both ways. Needs root.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use dataplane::netns::NetNs;
use e2e::lab::{Binaries, CN_ADDRESS4, Lab, POOL4, Spec};

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

/// `ip netns exec` gives a namespace's processes `/etc/netns/NAME/resolv.conf` in place of
/// the host's: the stock udhcpc script rewrites resolv.conf, and must not touch the host's.
struct EtcNetns(PathBuf);

impl EtcNetns {
    fn new(ns: &NetNs) -> EtcNetns {
        let d = PathBuf::from("/etc/netns").join(ns.name());
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("resolv.conf"), "").unwrap();
        EtcNetns(d)
    }
}

impl Drop for EtcNetns {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
        // /etc/netns itself too when this test made it (a directory still in use is not
        // empty and stays).
        let _ = std::fs::remove_dir("/etc/netns");
    }
}

/// Runs udhcpc with Debian's default script on the node's eth0 until it has a lease (or
/// gives up); its output.
fn udhcpc(ns: &NetNs) -> std::process::Output {
    let _etc = EtcNetns::new(ns);
    Command::new("ip")
        .args(["netns", "exec", ns.name(), "udhcpc"])
        // Foreground, quit once bound, fail after 10 DISCOVERs 1 s apart; no hostname.
        .args(["-i", "eth0", "-f", "-q", "-n", "-t", "10", "-T", "1"])
        .output()
        .expect("udhcpc runs")
}

/// The IPv4 addresses on the node's eth0.
fn addresses4(ns: &NetNs) -> Vec<(Ipv4Addr, u8)> {
    let out = Command::new("ip")
        .args(["-n", ns.name(), "-4", "-o", "addr", "show", "dev", "eth0"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace().skip_while(|w| *w != "inet");
            let (a, len) = w.nth(1)?.split_once('/')?;
            Some((a.parse().ok()?, len.parse().ok()?))
        })
        .collect()
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
    lab.nl(&v4only)
        .unwrap()
        .set_sysctl("net/ipv6/conf/eth0/disable_ipv6", "1")
        .unwrap();
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
    say!(
        "two nodes (dual-stack, IPv4-only) leased {} and {} by udhcpc in {:.0} ms; 5/5 echoes each way to {CN_ADDRESS4}; IPv4 back {:.0} ms after a handover",
        homes[0],
        homes[1],
        took.as_secs_f64() * 1e3,
        back.as_secs_f64() * 1e3
    );
}
