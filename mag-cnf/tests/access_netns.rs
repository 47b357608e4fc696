//! The access side against the kernel, in network namespaces (run as root): a MAG namespace
//! whose access link `acc0` is a veth to a mobile node's namespace, whose end `eth0` is set
//! up like a phone's. The node's kernel is the judge: its SLAAC address, default route and
//! neighbor entry come from our Router Advertisements.
//!
//! The nodes here run without duplicate address detection (`accept_dad=0`) so that an
//! address is usable the moment the RA is processed; the measured times say so.

use std::net::{Ipv6Addr, UdpSocket};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use datapath::netns::{NetNs, OwnedNetNs};
use datapath::{AccessLinkAddresses, Datapath, Mode, Netlink, Settings};
use futures::TryStreamExt;
use mag_cnf::access::lab::{self, AttachOptions};
use mag_cnf::access::{Access, AccessEvent};
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressHeaderFlags};
use netlink_packet_route::neighbour::{NeighbourAddress, NeighbourAttribute};
use netlink_packet_route::route::{RouteAddress, RouteAttribute};
use pmip::output::{AccessLink, RouterAdvertisement};
use pmip::types::LinkLayerAddress;
use rtnetlink::RouteMessageBuilder;
use tokio::sync::mpsc::Receiver;

/// The domain's fixed MAG link-layer address and link-local address.
const MAG_MAC: [u8; 6] = [0x02, 0x00, 0x5e, 0x00, 0x53, 0x01];
const MAG_LINK_LOCAL: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);
const NODE_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x01, 0x01];
const PATTERNS: &[&str] = &["acc*"];

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A name no other test, and no other test process, uses.
fn unique(tag: &str) -> String {
    format!(
        "pmipacc-{}-{}-{tag}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

fn patterns() -> Vec<String> {
    PATTERNS.iter().map(|p| (*p).to_owned()).collect()
}

/// A MAG namespace and a node namespace (both deleted on drop) joined by `acc0` <-> `eth0`.
struct Pair {
    mag: OwnedNetNs,
    node: OwnedNetNs,
    mag_nl: Netlink,
    node_nl: Netlink,
    /// `acc0` in the MAG namespace.
    access: u32,
    /// `eth0` in the node namespace.
    node_if: u32,
}

impl Pair {
    /// The MAG end is up; the node end is configured like a phone (without DAD) and up
    /// when `node_up`.
    async fn new(tag: &str, node_up: bool) -> Pair {
        let mag = NetNs::create(&unique(&format!("{tag}-m"))).expect("MAG namespace");
        let node = NetNs::create(&unique(&format!("{tag}-n"))).expect("node namespace");
        let mag_nl = Netlink::connect_in(&mag).expect("netlink in the MAG namespace");
        let node_nl = Netlink::connect_in(&node).expect("netlink in the node namespace");
        for nl in [&mag_nl, &node_nl] {
            nl.set_link_up(1, true).await.expect("lo up");
        }
        // A veth pair first, so that acc0 and eth0 get different interface indexes: the
        // kernel treats the carrier change of a veth whose peer has its own index as urgent
        // (linkwatch_urgent_event); otherwise the node's operational state, and with it its
        // IPv6 configuration, may wait up to a second for the next linkwatch run.
        mag_nl
            .add_veth("pad0", "pad1", &mag)
            .await
            .expect("padding veth");
        mag_nl.add_veth("acc0", "eth0", &node).await.expect("veth");
        let access = mag_nl.link_index("acc0").await.unwrap();
        let node_if = node_nl.link_index("eth0").await.unwrap();
        assert_ne!(access, node_if);
        node_nl.set_link_address(node_if, NODE_MAC).await.unwrap();
        for (key, value) in [
            ("accept_ra", "1"),
            ("autoconf", "1"),
            ("router_solicitation_delay", "0"),
            ("addr_gen_mode", "0"),
            ("forwarding", "0"),
            ("accept_dad", "0"),
        ] {
            node_nl
                .set_sysctl(&format!("net/ipv6/conf/eth0/{key}"), value)
                .unwrap();
        }
        mag_nl.set_link_up(access, true).await.unwrap();
        if node_up {
            node_nl.set_link_up(node_if, true).await.unwrap();
        }
        Pair {
            mag,
            node,
            mag_nl,
            node_nl,
            access,
            node_if,
        }
    }

    async fn start(&self) -> (Access, Receiver<AccessEvent>) {
        Access::start_in(&self.mag, &patterns(), MAG_MAC)
            .await
            .expect("start the access side")
    }

    fn ra(&self, prefixes: &[&str], lifetime: Duration) -> RouterAdvertisement {
        RouterAdvertisement {
            link: AccessLink(self.access),
            mn_link_layer: LinkLayerAddress::mac(NODE_MAC),
            src_link_local: MAG_LINK_LOCAL,
            src_link_layer: LinkLayerAddress::mac(MAG_MAC),
            prefixes: prefixes.iter().map(|p| p.parse().unwrap()).collect(),
            prefix_lifetime: lifetime,
            router_lifetime: lifetime,
            mtu: 1460,
        }
    }
}

/// The next event, failing the test after `within`.
async fn next(events: &mut Receiver<AccessEvent>, within: Duration) -> AccessEvent {
    match tokio::time::timeout(within, events.recv()).await {
        Ok(Some(e)) => e,
        Ok(None) => panic!("the access task ended"),
        Err(_) => panic!("no access event within {within:?}"),
    }
}

/// Events until one that `want` accepts; returns it and those before it.
async fn until(
    events: &mut Receiver<AccessEvent>,
    within: Duration,
    want: impl Fn(&AccessEvent) -> bool,
) -> (AccessEvent, Vec<AccessEvent>) {
    let deadline = Instant::now() + within;
    let mut before = vec![];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let e = match tokio::time::timeout(left, events.recv()).await {
            Ok(Some(e)) => e,
            Ok(None) => panic!("the access task ended; before: {before:?}"),
            Err(_) => panic!("the awaited event did not come within {within:?}; got {before:?}"),
        };
        if want(&e) {
            return (e, before);
        }
        before.push(e);
    }
}

/// No event for `quiet`.
async fn silence(events: &mut Receiver<AccessEvent>, quiet: Duration) {
    if let Ok(e) = tokio::time::timeout(quiet, events.recv()).await {
        panic!("unexpected event {e:?}");
    }
}

/// Polls `probe` every millisecond until it returns `Some`, failing after `within`.
async fn poll<T, F, Fut>(within: Duration, what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// The node's SLAAC address in `prefix` from its MAC (RFC 4291 Appendix A), whatever DAD
/// state it is in: `Some(tentative)` once it exists.
async fn slaac_address_state(
    h: &rtnetlink::Handle,
    ifindex: u32,
    address: Ipv6Addr,
) -> Option<bool> {
    let mut addrs = h.address().get().execute();
    while let Some(m) = addrs.try_next().await.expect("address dump") {
        if m.header.index != ifindex {
            continue;
        }
        let has = m.attributes.iter().any(
            |a| matches!(a, AddressAttribute::Address(std::net::IpAddr::V6(x)) if *x == address),
        );
        if has {
            let long_flags = m.attributes.iter().find_map(|a| match a {
                AddressAttribute::Flags(f) => Some(*f),
                _ => None,
            });
            let tentative = m.header.flags.contains(AddressHeaderFlags::Tentative)
                || long_flags.is_some_and(|f| f.contains(AddressFlags::Tentative));
            return Some(tentative);
        }
    }
    None
}

/// Whether the node has a default route via `gateway` out of `ifindex`.
async fn default_route_via(h: &rtnetlink::Handle, ifindex: u32, gateway: Ipv6Addr) -> bool {
    let mut routes = h
        .route()
        .get(RouteMessageBuilder::<Ipv6Addr>::new().build())
        .execute();
    while let Some(r) = routes.try_next().await.expect("route dump") {
        if r.header.destination_prefix_length != 0 {
            continue;
        }
        let gw = r
            .attributes
            .iter()
            .any(|a| matches!(a, RouteAttribute::Gateway(RouteAddress::Inet6(g)) if *g == gateway));
        let oif = r
            .attributes
            .iter()
            .any(|a| matches!(a, RouteAttribute::Oif(i) if *i == ifindex));
        let no_destination = !r
            .attributes
            .iter()
            .any(|a| matches!(a, RouteAttribute::Destination(_)))
            || r.header.destination_prefix_length == 0;
        if gw && oif && no_destination {
            return true;
        }
    }
    false
}

/// The link-layer address the node's neighbor table has for `address` on `ifindex`.
async fn neighbor(h: &rtnetlink::Handle, ifindex: u32, address: Ipv6Addr) -> Option<Vec<u8>> {
    let mut neighbors = h
        .neighbours()
        .get()
        .set_address_family(netlink_packet_route::AddressFamily::Inet6)
        .execute();
    while let Some(n) = neighbors.try_next().await.expect("neighbor dump") {
        if n.header.ifindex != ifindex {
            continue;
        }
        let is = n.attributes.iter().any(
            |a| matches!(a, NeighbourAttribute::Destination(NeighbourAddress::Inet6(x)) if *x == address),
        );
        if is {
            return n.attributes.iter().find_map(|a| match a {
                NeighbourAttribute::LinkLayerAddress(l) => Some(l.clone()),
                _ => None,
            });
        }
    }
    None
}

fn eui64_address(prefix: &str, mac: [u8; 6]) -> Ipv6Addr {
    let p: Ipv6Addr = prefix.parse().unwrap();
    let iid = LinkLayerAddress::mac(mac).eui64_interface_id().unwrap();
    let mut o = p.octets();
    o[8..].copy_from_slice(&iid);
    Ipv6Addr::from(o)
}

fn read_sysctl(ns: &NetNs, key: &str) -> String {
    let path = format!("/proc/sys/{key}");
    ns.run(move || std::fs::read_to_string(path))
        .expect("enter the namespace")
        .expect("read the sysctl")
        .trim()
        .to_owned()
}

#[tokio::test]
async fn node_link_up_is_seen_at_once_and_its_solicitations_are_reported() {
    let p = Pair::new("seen", false).await;
    // A link whose name does not match: never reported.
    p.mag_nl.add_veth("xfer0", "up0", &p.node).await.unwrap();
    let xfer = p.mag_nl.link_index("xfer0").await.unwrap();
    p.mag_nl.set_link_up(xfer, true).await.unwrap();
    let up0 = p.node_nl.link_index("up0").await.unwrap();
    p.node_nl.set_link_up(up0, true).await.unwrap();

    let (access, mut events) = p.start().await;
    // acc0 is up but has no carrier while the node's end is down.
    silence(&mut events, Duration::from_millis(200)).await;

    let t0 = Instant::now();
    p.node_nl.set_link_up(p.node_if, true).await.unwrap();
    assert_eq!(
        next(&mut events, Duration::from_secs(2)).await,
        AccessEvent::LinkUp {
            ifindex: p.access,
            name: "acc0".into(),
            mtu: 1500
        }
    );
    let link_up_after = t0.elapsed();
    let node = LinkLayerAddress::mac(NODE_MAC);
    assert_eq!(
        next(&mut events, Duration::from_secs(2)).await,
        AccessEvent::NodeSeen {
            ifindex: p.access,
            link_layer: node
        }
    );
    let seen_after = t0.elapsed();
    let (rs, before) = until(&mut events, Duration::from_secs(5), |e| {
        matches!(e, AccessEvent::RouterSolicitation { .. })
    })
    .await;
    let rs_after = t0.elapsed();
    assert_eq!(
        rs,
        AccessEvent::RouterSolicitation {
            ifindex: p.access,
            link_layer: node
        }
    );
    assert!(
        before
            .iter()
            .all(|e| matches!(e, AccessEvent::NodeHeard { .. })),
        "a node is seen once, and heard: {before:?}"
    );
    println!(
        "node link-up -> LinkUp {link_up_after:?}, -> NodeSeen {seen_after:?}, \
         -> first RouterSolicitation {rs_after:?} (node without DAD)"
    );
    assert!(
        seen_after < Duration::from_millis(500),
        "NodeSeen took {seen_after:?}"
    );
    let stats = access.stats();
    assert!(stats.frames_read >= 2, "{stats:?}");

    // Carrier lost when the node's end goes down; back up, the node is seen anew.
    p.node_nl.set_link_up(p.node_if, false).await.unwrap();
    let (down, _) = until(&mut events, Duration::from_secs(2), |e| {
        matches!(e, AccessEvent::LinkDown { .. })
    })
    .await;
    assert_eq!(down, AccessEvent::LinkDown { ifindex: p.access });
    p.node_nl.set_link_up(p.node_if, true).await.unwrap();
    let (up, before) = until(&mut events, Duration::from_secs(2), |e| {
        matches!(e, AccessEvent::LinkUp { .. })
    })
    .await;
    assert!(matches!(up, AccessEvent::LinkUp { ifindex, .. } if ifindex == p.access));
    assert!(
        before.iter().all(|e| matches!(
            e,
            AccessEvent::RouterSolicitation { .. } | AccessEvent::NodeHeard { .. }
        )),
        "{before:?}"
    );
    assert_eq!(
        next(&mut events, Duration::from_secs(2)).await,
        AccessEvent::NodeSeen {
            ifindex: p.access,
            link_layer: node
        }
    );
}

#[tokio::test]
async fn router_advertisement_gives_the_node_its_address_default_route_and_router() {
    // The daemon's order: the link is prepared when it appears, the node comes up and
    // solicits, the MAG answers.
    let p = Pair::new("ra", false).await;
    let (access, mut events) = p.start().await;
    let dp = Datapath::open(Mode::Auto, p.mag_nl.clone(), Settings::new(1, 1500))
        .await
        .expect("datapath");
    dp.prepare_access_link(
        p.access,
        AccessLinkAddresses {
            link_layer_address: MAG_MAC,
            link_local: MAG_LINK_LOCAL,
        },
    )
    .await
    .expect("prepare the access link");
    p.node_nl.set_link_up(p.node_if, true).await.unwrap();
    until(&mut events, Duration::from_secs(3), |e| {
        matches!(e, AccessEvent::RouterSolicitation { .. })
    })
    .await;

    let h = p.node.rtnetlink().unwrap();
    let address = eui64_address("2001:db8:1::", NODE_MAC);
    assert_eq!(slaac_address_state(&h, p.node_if, address).await, None);
    assert!(!default_route_via(&h, p.node_if, MAG_LINK_LOCAL).await);

    let t0 = Instant::now();
    access
        .send_ra(&p.ra(&["2001:db8:1::/64"], Duration::from_secs(1800)))
        .await
        .expect("send the RA");
    poll(Duration::from_secs(3), "a usable SLAAC address", || async {
        (slaac_address_state(&h, p.node_if, address).await == Some(false)).then_some(())
    })
    .await;
    let usable_after = t0.elapsed();
    println!(
        "send_ra -> SLAAC address {address} usable (no tentative flag; node without DAD): \
         {usable_after:?}"
    );
    // Usable: the node can bind to it.
    p.node
        .run(move || UdpSocket::bind((address, 0)).map(drop))
        .unwrap()
        .expect("bind to the SLAAC address");
    assert!(
        default_route_via(&h, p.node_if, MAG_LINK_LOCAL).await,
        "default route via fe80::1"
    );
    assert_eq!(
        neighbor(&h, p.node_if, MAG_LINK_LOCAL).await,
        Some(MAG_MAC.to_vec()),
        "fe80::1 resolves to the fixed MAG MAC"
    );
    assert_eq!(read_sysctl(&p.node, "net/ipv6/conf/eth0/mtu"), "1460");

    // The withdrawal: router lifetime 0 removes the default route.
    access
        .send_ra(&p.ra(&["2001:db8:1::/64"], Duration::ZERO))
        .await
        .expect("send the withdrawal");
    poll(Duration::from_secs(3), "default route removed", || async {
        (!default_route_via(&h, p.node_if, MAG_LINK_LOCAL).await).then_some(())
    })
    .await;
    assert_eq!(access.stats().router_advertisements_sent, 2);
    assert!(usable_after < Duration::from_secs(1), "{usable_after:?}");
}

#[tokio::test]
async fn moving_the_access_link_to_another_namespace_is_link_down() {
    let p = Pair::new("move", true).await;
    let (_access, mut events) = p.start().await;
    assert!(matches!(
        next(&mut events, Duration::from_secs(2)).await,
        AccessEvent::LinkUp { ifindex, .. } if ifindex == p.access
    ));
    // The next MAG, watching its own namespace.
    let next_mag = NetNs::create(&unique("move-o")).unwrap();
    let (_next_access, mut next_events) = Access::start_in(&next_mag, &patterns(), MAG_MAC)
        .await
        .unwrap();
    p.mag_nl
        .move_link(p.access, &next_mag, Some("acc1"))
        .await
        .expect("move acc0");
    let (down, _) = until(&mut events, Duration::from_secs(2), |e| {
        matches!(e, AccessEvent::LinkDown { .. })
    })
    .await;
    assert_eq!(down, AccessEvent::LinkDown { ifindex: p.access });
    assert!(p.mag_nl.link_index("acc0").await.is_err());

    // The link arrives down; up, the next MAG has it and hears the node again (its carrier
    // went and came back, so it configures its link anew).
    let next_nl = Netlink::connect_in(&next_mag).unwrap();
    let acc1 = next_nl.link_index("acc1").await.unwrap();
    let t0 = Instant::now();
    next_nl.set_link_up(acc1, true).await.unwrap();
    let (up, _) = until(&mut next_events, Duration::from_secs(2), |e| {
        matches!(e, AccessEvent::LinkUp { .. })
    })
    .await;
    assert_eq!(
        up,
        AccessEvent::LinkUp {
            ifindex: acc1,
            name: "acc1".into(),
            mtu: 1500
        }
    );
    let (seen, _) = until(&mut next_events, Duration::from_secs(3), |e| {
        matches!(e, AccessEvent::NodeSeen { .. })
    })
    .await;
    println!(
        "handed-over link up at the next MAG -> NodeSeen: {:?}",
        t0.elapsed()
    );
    assert_eq!(
        seen,
        AccessEvent::NodeSeen {
            ifindex: acc1,
            link_layer: LinkLayerAddress::mac(NODE_MAC)
        }
    );
}

#[tokio::test]
async fn user_traffic_stays_in_the_kernel() {
    let p = Pair::new("bpf", true).await;
    let (access, mut events) = p.start().await;
    next(&mut events, Duration::from_secs(2)).await;
    // The node's own ND and MLD frames in the first moments of its link.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = access.stats();
    let sent = p
        .node
        .run(|| -> std::io::Result<usize> {
            let eth0 = nix::net::if_::if_nametoindex("eth0")?;
            let s = UdpSocket::bind("[::]:0")?;
            let all_nodes = std::net::SocketAddrV6::new("ff02::1".parse().unwrap(), 9, 0, eth0);
            for _ in 0..200 {
                s.send_to(&[0u8; 64], all_nodes)?;
            }
            Ok(200)
        })
        .unwrap()
        .expect("send UDP");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after = access.stats();
    let read = after.frames_read - before.frames_read;
    println!("{sent} UDP datagrams from the node: {read} frames reached user space");
    assert!(read < 20, "{read} of {sent} frames reached user space");
}

#[tokio::test]
async fn lab_attach_makes_a_node_the_mag_sees_and_detach_removes_it() {
    let mag = NetNs::create(&unique("lab-m")).unwrap();
    let (_access, mut events) = Access::start_in(&mag, &patterns(), MAG_MAC).await.unwrap();
    let name = format!(
        "t{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    let guard = LabGuard(name.clone());
    let mac = LinkLayerAddress::mac(NODE_MAC);
    let options = AttachOptions {
        mag_netns: Some((*mag).clone()),
        ..AttachOptions::default()
    };
    let t0 = Instant::now();
    let node = lab::attach_with(&name, mac, "acc-lab", &options)
        .await
        .expect("attach");
    assert_eq!(node.netns.name(), format!("pmip-mn-{name}"));
    let (up, _) = until(&mut events, Duration::from_secs(2), |e| {
        matches!(e, AccessEvent::LinkUp { .. })
    })
    .await;
    assert_eq!(
        up,
        AccessEvent::LinkUp {
            ifindex: node.access_ifindex,
            name: "acc-lab".into(),
            mtu: 1500
        }
    );
    let (seen, _) = until(&mut events, Duration::from_secs(2), |e| {
        matches!(e, AccessEvent::NodeSeen { .. })
    })
    .await;
    println!(
        "lab::attach -> NodeSeen (node with DAD, as a phone): {:?}",
        t0.elapsed()
    );
    assert_eq!(
        seen,
        AccessEvent::NodeSeen {
            ifindex: node.access_ifindex,
            link_layer: mac
        }
    );

    // The node is set up like a phone.
    for (key, want) in [
        ("accept_ra", "1"),
        ("autoconf", "1"),
        ("router_solicitation_delay", "0"),
        ("addr_gen_mode", "0"),
        ("forwarding", "0"),
        ("accept_dad", "1"),
    ] {
        assert_eq!(
            read_sysctl(&node.netns, &format!("net/ipv6/conf/eth0/{key}")),
            want,
            "{key}"
        );
    }
    let nl = Netlink::connect_in(&node.netns).unwrap();
    let eth0 = nl.link_index("eth0").await.unwrap();
    assert_eq!(nl.link_address(eth0).await.unwrap(), NODE_MAC.to_vec());
    drop(nl);

    // A name in use is refused.
    assert!(
        lab::attach_with(&name, mac, "acc-lab2", &options)
            .await
            .is_err()
    );

    lab::detach(&name).await.expect("detach");
    let (down, _) = until(&mut events, Duration::from_secs(2), |e| {
        matches!(e, AccessEvent::LinkDown { .. })
    })
    .await;
    assert_eq!(
        down,
        AccessEvent::LinkDown {
            ifindex: node.access_ifindex
        }
    );
    assert!(!node.netns.path().exists());
    assert!(lab::detach(&name).await.is_err());
    drop(guard);
}

/// Deletes a lab node's namespace if the test did not get to.
struct LabGuard(String);

impl Drop for LabGuard {
    fn drop(&mut self) {
        let _ = NetNs::delete(lab::netns_of(&self.0).name());
    }
}
