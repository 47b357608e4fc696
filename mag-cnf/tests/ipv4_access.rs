//! The MAG's IPv4 access side against stock clients, in network namespaces (run as root):
//! Debian's `dhclient` (with its stock `dhclient-script`) gets the IPv4 home address, subnet,
//! default router and MTU from the DHCP server of `access::dhcp`, and the node's kernel and
//! busybox `arping` resolve the default router to the domain's fixed MAG MAC through
//! `access::arp`. The MAG end answers with the frames the pure code builds, sent and received
//! by `access::ipv4`.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use datapath::Netlink;
use datapath::netns::{NetNs, OwnedNetNs};
use mag_cnf::access::arp;
use mag_cnf::access::dhcp::{self, Decision, DhcpSettings};
use mag_cnf::access::ipv4::{Ipv4Access, Ipv4Frame};
use pmip::ipv4_pool::Ipv4HomeAddress;

const MAG_MAC: [u8; 6] = [0x02, 0x00, 0x5e, 0x00, 0x53, 0x01];
const NODE_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x04, 0x01];

static COUNTER: AtomicU32 = AtomicU32::new(0);

fn unique(tag: &str) -> String {
    format!(
        "pmipv4acc-{}-{}-{tag}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

fn home() -> Ipv4HomeAddress {
    Ipv4HomeAddress {
        address: Ipv4Addr::new(192, 0, 2, 10),
        prefix_len: 24,
        default_router: Ipv4Addr::new(192, 0, 2, 1),
    }
}

struct Pair {
    mag: OwnedNetNs,
    node: OwnedNetNs,
    dir: PathBuf,
}

impl Pair {
    async fn new(tag: &str) -> Pair {
        let mag = NetNs::create(&unique(&format!("{tag}-m"))).unwrap();
        let node = NetNs::create(&unique(&format!("{tag}-n"))).unwrap();
        let mag_nl = Netlink::connect_in(&mag).unwrap();
        let node_nl = Netlink::connect_in(&node).unwrap();
        mag_nl.add_veth("acc0", "eth0", &node).await.unwrap();
        let acc = mag_nl.link_index("acc0").await.unwrap();
        let eth = node_nl.link_index("eth0").await.unwrap();
        mag_nl.set_link_address(acc, MAG_MAC).await.unwrap();
        node_nl.set_link_address(eth, NODE_MAC).await.unwrap();
        for (nl, i) in [(&mag_nl, 1), (&mag_nl, acc), (&node_nl, 1), (&node_nl, eth)] {
            nl.set_link_up(i, true).await.unwrap();
        }
        let dir = std::env::temp_dir().join(unique("dhclient"));
        std::fs::create_dir_all(&dir).unwrap();
        Pair { mag, node, dir }
    }

    fn run(&self, program: &str, args: &[&str]) -> std::process::Output {
        self.node
            .command(program)
            .unwrap()
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("{program}: {e}"))
    }

    fn ip(&self, args: &str) -> String {
        let out = self.run("ip", &args.split_whitespace().collect::<Vec<_>>());
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn pid_file(&self) -> PathBuf {
        self.dir.join("dhclient.pid")
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        // dhclient stays in the background after it got its lease: stop it.
        if let Ok(pid) = std::fs::read_to_string(self.pid_file())
            && let Ok(pid) = pid.trim().parse::<i32>()
        {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The MAG's side of the test: answers every DHCP and ARP frame for a node holding
/// `home()` (or, with `None`, for a node the LMA has not given an address yet), and counts
/// the DHCP decisions.
fn serve(
    access: Ipv4Access,
    mut frames: tokio::sync::mpsc::Receiver<Ipv4Frame>,
    home: Option<Ipv4HomeAddress>,
    idle: Duration,
) -> tokio::task::JoinHandle<Vec<String>> {
    let settings = DhcpSettings {
        own_mac: MAG_MAC,
        lease_time_s: 600,
        mtu: 1460,
        dns_servers: vec![],
    };
    tokio::spawn(async move {
        let mut log = Vec::new();
        while let Ok(Some(f)) = tokio::time::timeout(idle, frames.recv()).await {
            let ifindex = f.ifindex();
            assert_eq!(f.node(), NODE_MAC);
            let reply = match f {
                Ipv4Frame::Dhcp { request, .. } => {
                    let kind = request.message.opts().msg_type();
                    let d = dhcp::answer(&request, home.as_ref(), &settings);
                    log.push(format!("{kind:?} -> {}", describe(&d)));
                    match d {
                        Decision::Reply { frame, .. } => Some(frame),
                        _ => None,
                    }
                }
                Ipv4Frame::Arp { request, .. } => {
                    let r = home.and_then(|h| arp::answer(&request, &h, MAG_MAC));
                    log.push(format!("ARP for {} -> {}", request.target_ip, r.is_some()));
                    r
                }
            };
            if let Some(frame) = reply {
                access.send(ifindex, &frame).await.unwrap();
            }
            if log.iter().any(|l| l.starts_with("Some(Release)")) {
                break;
            }
        }
        log
    })
}

fn describe(d: &Decision) -> String {
    match d {
        Decision::Reply { kind, .. } => format!("{kind:?}"),
        other => format!("{other:?}"),
    }
}

/// dhclient configures the LMA's address, mask, default router and MTU; the node's kernel
/// resolves the default router to the fixed MAG MAC; busybox arping hears the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_dhclient_gets_the_home_address_and_the_router_resolves_to_the_mag() {
    let pair = Pair::new("dhclient").await;
    let (access, frames) = Ipv4Access::start_in(&pair.mag, MAG_MAC).unwrap();
    let server = serve(access, frames, Some(home()), Duration::from_secs(15));
    let leases = pair.dir.join("dhclient.leases");
    let out = pair.run(
        "dhclient",
        &[
            "-1",
            "-v",
            "-lf",
            leases.to_str().unwrap(),
            "-pf",
            pair.pid_file().to_str().unwrap(),
            "-sf",
            "/sbin/dhclient-script",
            "eth0",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "dhclient: {stderr}");
    assert!(stderr.contains("bound to 192.0.2.10"), "{stderr}");
    let addr = pair.ip("-4 addr show dev eth0");
    assert!(addr.contains("inet 192.0.2.10/24"), "{addr}");
    let routes = pair.ip("-4 route show");
    assert!(
        routes.contains("default via 192.0.2.1 dev eth0"),
        "{routes}"
    );
    let link = pair.ip("link show dev eth0");
    assert!(
        link.contains("mtu 1460"),
        "the Interface MTU option: {link}"
    );

    // The kernel resolves the router (the ping itself goes nowhere: there is no router).
    let _ = pair.run("busybox", &["ping", "-c", "1", "-W", "1", "192.0.2.1"]);
    let neigh = pair.ip("-4 neigh show 192.0.2.1");
    assert!(neigh.contains("lladdr 02:00:5e:00:53:01"), "{neigh}");
    let arping = pair.run(
        "busybox",
        &["arping", "-c", "1", "-w", "2", "-I", "eth0", "192.0.2.1"],
    );
    let text = String::from_utf8_lossy(&arping.stdout);
    assert!(
        text.to_lowercase().contains("02:00:5e:00:53:01"),
        "arping: {text}"
    );

    // A release ends the exchange (RFC 5844 §3.4.3: the MAG's trigger to de-register).
    let out = pair.run(
        "dhclient",
        &[
            "-r",
            "-lf",
            leases.to_str().unwrap(),
            "-pf",
            pair.pid_file().to_str().unwrap(),
            "-sf",
            "/sbin/dhclient-script",
            "eth0",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log = server.await.unwrap();
    assert_eq!(
        log.iter()
            .filter(|l| l.starts_with("Some(Discover)") || l.starts_with("Some(Request)"))
            .cloned()
            .collect::<Vec<_>>(),
        ["Some(Discover) -> Offer", "Some(Request) -> Ack"],
        "{log:?}"
    );
    assert!(
        log.iter()
            .any(|l| l == "Some(Release) -> Released(192.0.2.10)"),
        "{log:?}"
    );
}

/// Without an address from the LMA the server stays quiet and says why: the client gets
/// nothing and keeps no address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_address_from_the_lma_the_node_gets_no_lease() {
    let pair = Pair::new("none").await;
    let (access, frames) = Ipv4Access::start_in(&pair.mag, MAG_MAC).unwrap();
    let server = serve(access, frames, None, Duration::from_secs(2));
    // udhcpc: three discovers a second apart, then gives up (-n); no script is run.
    let out = pair.run(
        "udhcpc",
        &[
            "-i",
            "eth0",
            "-n",
            "-q",
            "-t",
            "3",
            "-T",
            "1",
            "-s",
            "/bin/true",
        ],
    );
    assert!(!out.status.success(), "udhcpc got a lease from nobody");
    assert!(!pair.ip("-4 addr show dev eth0").contains("inet "));
    drop(pair);
    let log = server.await.unwrap();
    let discovers = log
        .iter()
        .filter(|l| *l == "Some(Discover) -> AwaitAddress")
        .count();
    assert!(discovers >= 2, "{log:?}");
}
