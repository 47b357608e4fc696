//! The tunnel backends end to end, in network namespaces, with real traffic (run as root):
//! seg6 where the kernel has seg6 lightweight tunnels, else the userspace tunnel (tun);
//! `PMIP_TEST_TUNNEL=seg6|tun` forces one ([`common::tunnel_under_test`]). Both put the same
//! RFC 2473 packets on the transport link, and the tests check them there; where they
//! differ in what the kernel holds (seg6 routes with `encap seg6` and End.DT6 / End.DX4
//! terminations, or a veth pair per peer, routes `dev pmip6tN` and an `iif pmip6tin`
//! rule), each test asserts what the backend under test made. What only one of them can do
//! is said on stderr when it is not run.
//!
//! ```text
//!  mn ──m0/a0── mag ──t0/t0── lma ──c0/c0── cn
//!  2001:db8:100::2   2001:db8::2   2001:db8::1    2001:db8:200::2
//!                (fe80::1 on a0)               (2001:db8:200::1 on c0)
//!  IPv4 (RFC 5844 home address):
//!  192.0.2.10/24                               198.51.100.1   198.51.100.2
//!  (default router 192.0.2.1)
//! ```

mod common;

use common::*;
use datapath::{AccessLinkAddresses, Change, Datapath, PrefixRoute, Settings, Termination, Tunnel};

const LMA: &str = "2001:db8::1";
const MAG: &str = "2001:db8::2";
const HNP: &str = "2001:db8:100::/64";
const MN: &str = "2001:db8:100::2";
const CN: &str = "2001:db8:200::2";
const MAC: [u8; 6] = [0x02, 0x00, 0x5e, 0x00, 0x53, 0x01];

struct Lab {
    mn: Node,
    mag: Node,
    lma: Node,
    cn: Node,
    lma_dp: Datapath,
    mag_dp: Datapath,
    /// The backend both run.
    tunnel: Tunnel,
}

async fn open(tunnel: Tunnel, node: &Node, local: &str) -> Datapath {
    open_on(tunnel, node, "t0", local).await
}

/// As a restarted daemon opens it: serving first, reconciling later.
async fn reopen(tunnel: Tunnel, node: &Node, local: &str) -> Datapath {
    let settings = Settings::resolve(&node.nl, Some("t0"), a(local), None)
        .await
        .unwrap();
    let dp = Datapath::open_without_routes(mode(tunnel), node.nl.clone(), settings)
        .await
        .unwrap();
    assert!(dp.reconciles_later());
    dp
}

async fn open_on(tunnel: Tunnel, node: &Node, transport: &str, local: &str) -> Datapath {
    let settings = Settings::resolve(&node.nl, Some(transport), a(local), None)
        .await
        .unwrap();
    let dp = Datapath::open(mode(tunnel), node.nl.clone(), settings)
        .await
        .unwrap();
    assert_eq!(dp.backend_name(), name(tunnel));
    dp
}

/// The four namespaces, linked and addressed, with both backends open but nothing
/// programmed. The transport link has `transport_mtu`, the others 1500.
async fn lab(transport_mtu: u32) -> Lab {
    let (mn, mag, lma, cn) = (
        Node::new("mn").await,
        Node::new("mag").await,
        Node::new("lma").await,
        Node::new("cn").await,
    );
    link(&mn, "m0", &mag, "a0", 1500).await;
    link(&mag, "t0", &lma, "t0", transport_mtu).await;
    link(&lma, "c0", &cn, "c0", 1500).await;
    mn.addr("m0", MN, 64).await;
    mn.route("::/0", Some("fe80::1"), "m0").await;
    mag.addr("t0", MAG, 64).await;
    lma.addr("t0", LMA, 64).await;
    lma.addr("c0", "2001:db8:200::1", 64).await;
    cn.addr("c0", CN, 64).await;
    cn.route("::/0", Some("2001:db8:200::1"), "c0").await;
    let tunnel = tunnel_under_test(&lma.nl).await;
    let lma_dp = open(tunnel, &lma, LMA).await;
    let mag_dp = open(tunnel, &mag, MAG).await;
    Lab {
        mn,
        mag,
        lma,
        cn,
        lma_dp,
        mag_dp,
        tunnel,
    }
}

impl Lab {
    /// One mobile node attached to the MAG, registered at the LMA: both tunnel ends.
    async fn program(&self) {
        let lma_t0 = self.lma.index("t0").await;
        self.lma_dp
            .apply(&[
                Change::PrepareTermination(Termination {
                    local: a(LMA),
                    ifindex: lma_t0,
                }),
                Change::SetDownlink {
                    prefix: net(HNP),
                    peer: a(MAG),
                },
            ])
            .await
            .unwrap();
        let mag_t0 = self.mag.index("t0").await;
        let a0 = self.mag.index("a0").await;
        self.mag_dp
            .prepare_termination(Termination {
                local: a(MAG),
                ifindex: mag_t0,
            })
            .await
            .unwrap();
        self.mag_dp
            .prepare_access_link(
                a0,
                AccessLinkAddresses {
                    link_layer_address: MAC,
                    link_local: a("fe80::1"),
                },
            )
            .await
            .unwrap();
        self.mag_dp
            .add_local_route(net(HNP), a0, false)
            .await
            .unwrap();
        self.mag_dp.add_uplink(net(HNP), a(LMA)).await.unwrap();
    }
}

/// Checks that `packets` holds an RFC 2473 packet from `outer_src` to `outer_dst` carrying
/// a `len`-byte UDP datagram from `inner_src` to `inner_dst`: Next Header 41 right after the
/// outer header (no routing header), the inner header right behind it.
fn assert_tunnelled(
    packets: &[Vec<u8>],
    (outer_src, outer_dst): (&str, &str),
    (inner_src, inner_dst): (&str, &str),
    len: usize,
) {
    let found = packets.iter().any(|p| {
        let (Some(outer), Some(inner)) = (ipv6_header(p), p.get(40..).and_then(ipv6_header)) else {
            return false;
        };
        outer.next_header == 41
            && outer.src == a(outer_src)
            && outer.dst == a(outer_dst)
            && outer.payload_len == 40 + 8 + len
            && inner.next_header == 17
            && inner.src == a(inner_src)
            && inner.dst == a(inner_dst)
            && inner.payload_len == 8 + len
    });
    let seen = outer_headers(packets);
    assert!(
        found,
        "no {outer_src} -> {outer_dst} (41) carrying {inner_src} -> {inner_dst} with {len} bytes; saw {seen:?}"
    );
}

/// Each captured IPv6 packet's header in one line, for a failure's message.
fn outer_headers(packets: &[Vec<u8>]) -> Vec<String> {
    packets
        .iter()
        .filter_map(|p| ipv6_header(p))
        .map(|h| {
            format!(
                "{} -> {} nh {} len {}",
                h.src, h.dst, h.next_header, h.payload_len
            )
        })
        .collect()
}

/// Full-size (1500-byte) packets on the node's link pass both ways when the transport link
/// carries 40 bytes more, and on the transport link they are IPv6-in-IPv6 without a routing
/// header.
#[tokio::test]
async fn traffic_crosses_both_tunnel_ends_at_full_size() {
    let lab = lab(1540).await;
    lab.program().await;
    let mn = lab.mn.udp(MN, 7000);
    let cn = lab.cn.udp(CN, 7000);
    let capture = Capture::start(&lab.lma, "t0").await;
    // 1452 bytes of UDP payload make a 1500-byte IPv6 packet on the node's link.
    for len in [100, 1452] {
        let up = send_and_receive(&mn, &cn, len).unwrap_or_else(|| panic!("uplink {len} lost"));
        assert_eq!(up.from.ip(), a(MN), "the node's own source address arrives");
        let down = send_and_receive(&cn, &mn, len).unwrap_or_else(|| panic!("downlink {len} lost"));
        assert_eq!(down.from.ip(), a(CN));
        let packets = capture.ipv6_packets();
        assert_tunnelled(&packets, (MAG, LMA), (MN, CN), len);
        assert_tunnelled(&packets, (LMA, MAG), (CN, MN), len);
    }
    // The access link looks like the shared router: its MAC and fe80::1.
    let a0 = lab.mag.index("a0").await;
    assert_eq!(lab.mag.nl.link_address(a0).await.unwrap(), MAC);
    lab.assert_kernel_holds_the_tunnel().await;
    if let (Some(lma), Some(mag)) = (lab.lma_dp.tun_counters(), lab.mag_dp.tun_counters()) {
        // Encapsulated, decapsulated, refused, failed: each end carried both sizes both
        // ways, and nothing it received was neither IPv6 nor IPv4.
        for (end, [encapsulated, decapsulated, refused, _]) in [("LMA", lma), ("MAG", mag)] {
            assert!(
                encapsulated >= 2 && decapsulated >= 2,
                "{end}: {lma:?} {mag:?}"
            );
            assert_eq!(refused, 0, "{end}: {lma:?} {mag:?}");
        }
    }
}

impl Lab {
    /// What the kernel holds for the programmed lab, as iproute2 shows it: seg6 routes
    /// (`encap seg6 mode encap.red`, one segment: the peer), or a veth pair per peer named by
    /// its alias, routes into it with no encap and no MTU of their own, the ingress pair and
    /// its `iif` rules (IPv6 and IPv4) in place of seg6's termination rules and routes, and
    /// the `local` rule left where it was.
    async fn assert_kernel_holds_the_tunnel(&self) {
        let mtu = self.lma_dp.settings().tunnel_mtu();
        for (node, local, peer) in [(&self.lma, LMA, MAG), (&self.mag, MAG, LMA)] {
            let routes = format!(
                "{}{}",
                node.routes("-6 route show"),
                node.routes("-6 route show table 13502")
            );
            let rules = node.ip_output("-6 rule show");
            let links = node.ip_output("link show");
            match self.tunnel {
                Tunnel::Tun => {
                    let into = if node.ns.path() == self.lma.ns.path() {
                        "2001:db8:100::/64 dev pmip6t0 proto 135 metric 1000"
                    } else {
                        "default dev pmip6t0 proto 135 metric 1000"
                    };
                    assert!(routes.contains(into), "{into:?}: {routes}");
                    assert!(!routes.contains("encap"), "{routes}");
                    // Where the kernel has nexthop objects, the route names the device's.
                    if node
                        .ns
                        .command("ip")
                        .unwrap()
                        .args(["nexthop", "show"])
                        .status()
                        .is_ok_and(|s| s.success())
                    {
                        let table = if node.ns.path() == self.lma.ns.path() {
                            "main"
                        } else {
                            "13502"
                        };
                        let raw = node.ip_output(&format!("-6 route show table {table} proto 135"));
                        let nexthops = node.ip_output("nexthop show");
                        assert!(raw.contains("nhid 13502 dev pmip6t0"), "{raw}");
                        assert!(
                            nexthops.contains("id 13502 dev pmip6t0 scope link proto 135"),
                            "{nexthops}"
                        );
                    }
                    // The kernel's end of each veth pair (the daemon's is `<name>io`): the
                    // peer's with the tunnel MTU, the ingress with the largest (an inner
                    // packet may be reassembled from fragments); neither resolves neighbours.
                    for (device, mtu, alias) in [
                        ("pmip6t0", mtu, format!("pmip-tun {local} {peer}")),
                        ("pmip6tin", 65535, format!("pmip-tun {local} ::")),
                    ] {
                        let link = node.ip_output(&format!("link show {device}"));
                        assert!(
                            link.contains(&format!("mtu {mtu} ")) && link.contains(&alias),
                            "{device}: mtu {mtu}, alias {alias:?}: {link}"
                        );
                        assert!(link.contains(&format!("{device}@{device}io:")), "{link}");
                        assert!(link.contains("NOARP,UP,LOWER_UP"), "{link}");
                    }
                    assert!(!links.contains("pmip6t1"), "one peer, one device: {links}");
                    for family in ["-6", "-4"] {
                        let rules = node.ip_output(&format!("{family} rule show"));
                        assert!(
                            rules.contains("100:\tfrom all iif pmip6tin lookup main proto 135"),
                            "{family}: {rules}"
                        );
                    }
                    assert!(rules.starts_with("0:\tfrom all lookup local"), "{rules}");
                    assert!(!rules.contains("ipproto"), "{rules}");
                }
                _ => {
                    let encap = format!("encap seg6 mode encap.red segs 1 [ {peer} ]");
                    assert!(routes.contains(&encap), "{encap:?}: {routes}");
                    assert!(!links.contains("pmip6t"), "{links}");
                    assert!(
                        rules.contains(&format!("to {local} ipproto ipv6 lookup")),
                        "{rules}"
                    );
                }
            }
        }
    }
}

/// Builds an IPv6 packet carrying one UDP datagram (checksum included).
fn udp6_packet(src: &str, dst: &str, port: u16, payload: &[u8]) -> Vec<u8> {
    let (src, dst) = (a(src).octets(), a(dst).octets());
    let udp_len = 8 + payload.len();
    let mut p = vec![0x60, 0, 0, 0];
    p.extend_from_slice(&(udp_len as u16).to_be_bytes());
    p.extend_from_slice(&[17, 64]);
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    let mut udp = Vec::with_capacity(udp_len);
    udp.extend_from_slice(&port.to_be_bytes());
    udp.extend_from_slice(&port.to_be_bytes());
    udp.extend_from_slice(&(udp_len as u16).to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(payload);
    // RFC 8200 §8.1: the pseudo-header, then the datagram.
    let mut pseudo = Vec::new();
    pseudo.extend_from_slice(&src);
    pseudo.extend_from_slice(&dst);
    pseudo.extend_from_slice(&(udp_len as u32).to_be_bytes());
    pseudo.extend_from_slice(&[0, 0, 0, 17]);
    pseudo.extend_from_slice(&udp);
    let mut sum = 0u32;
    for c in pseudo.chunks(2) {
        sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    let sum = match !(sum as u16) {
        0 => 0xffff,
        s => s,
    };
    udp[6..8].copy_from_slice(&sum.to_be_bytes());
    p.extend_from_slice(&udp);
    p
}

/// A tunnelled packet from an address that is no peer of the MAG is decapsulated and
/// delivered all the same, as End.DT6 does it: the tunnel end takes RFC 2473 packets from any
/// source, and the inner packet is routed by its destination.
#[tokio::test]
async fn a_tunnelled_packet_from_any_source_is_decapsulated() {
    let lab = lab(1500).await;
    lab.program().await;
    let stranger = "2001:db8::9";
    lab.lma.addr("t0", stranger, 64).await;
    let mn = lab.mn.udp(MN, 7007);
    let capture = Capture::start(&lab.mag, "t0").await;
    let payload = b"from a stranger";
    let inner = udp6_packet(CN, MN, 7007, payload);
    let raw = lab
        .lma
        .ns
        .run(|| {
            let s = socket2::Socket::new(
                socket2::Domain::IPV6,
                socket2::Type::RAW,
                Some(socket2::Protocol::from(41)),
            )?;
            s.bind(&std::net::SocketAddrV6::new(a(stranger), 0, 0, 0).into())?;
            Ok::<_, std::io::Error>(s)
        })
        .unwrap()
        .expect("raw socket of protocol 41");
    let to: socket2::SockAddr = std::net::SocketAddrV6::new(a(MAG), 0, 0, 0).into();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    let got = loop {
        raw.send_to(&inner, &to).expect("send");
        if let Some(r) = receive(&mn)
            && r.payload == payload
        {
            break Some(r);
        }
        if std::time::Instant::now() > deadline {
            break None;
        }
    };
    let got = got.expect("the node got the stranger's packet");
    assert_eq!(got.from.ip(), a(CN), "the inner source arrives");
    assert_tunnelled(
        &capture.ipv6_packets(),
        (stranger, MAG),
        (CN, MN),
        payload.len(),
    );
}

/// What a backend leaves when it stops (its value dropped, as when the daemon exits or is
/// killed): seg6's routes stay and carry traffic on (so a restarted seg6 backend may assume
/// them); the userspace tunnel's pairs and the routes into them stay too, but nothing
/// carries their packets until a restarted backend takes the pairs over when it assumes the
/// stored state, which changes nothing in the kernel.
#[tokio::test]
async fn a_stopped_backend_leaves_what_its_kind_outlives() {
    let lab = lab(1500).await;
    lab.program().await;
    let Lab {
        mn,
        lma,
        cn,
        lma_dp,
        mag_dp,
        tunnel,
        mag: _mag,
    } = lab;
    let mn_sock = mn.udp(MN, 7008);
    let cn_sock = cn.udp(CN, 7008);
    assert!(send_and_receive(&cn_sock, &mn_sock, 64).is_some());
    let stored = lma_dp.state().await;
    let links = lma.ip_output("-d link show");
    let before = lma.routes("-6 route show table all");
    drop(lma_dp);
    let routes = lma.routes("-6 route show table all");
    assert_eq!(routes, before, "the routes stay");
    if tunnel != Tunnel::Tun {
        assert!(
            routes
                .lines()
                .any(|r| r.starts_with("2001:db8:100::/64 ") && r.contains("encap seg6")),
            "{routes}"
        );
        assert!(send_and_receive(&cn_sock, &mn_sock, 64).is_some());
        note(&format!(
            "a_stopped_backend_leaves_what_its_kind_outlives: the tun part was not run ({} \
             is under test)",
            name(tunnel)
        ));
        return;
    }
    assert_eq!(lma.ip_output("-d link show"), links, "the pairs stay");
    assert!(
        routes
            .lines()
            .any(|r| r.starts_with("2001:db8:100::/64 ") && r.contains("dev pmip6t0")),
        "{routes}"
    );
    assert!(
        send_and_receive(&cn_sock, &mn_sock, 64).is_none(),
        "nothing carries the tunnel without the backend"
    );

    let restarted = reopen(tunnel, &lma, LMA).await;
    restarted.assume(stored.clone()).await.unwrap();
    // Serving at once: the pairs are taken over, as they were.
    assert_eq!(lma.ip_output("-d link show"), links);
    assert!(send_and_receive(&cn_sock, &mn_sock, 64).is_some());
    let up = send_and_receive(&mn_sock, &cn_sock, 64).expect("uplink");
    assert_eq!(up.from.ip(), a(MN));
    let report = restarted.reconcile_pending().await.unwrap();
    assert!(report.is_noop(), "nothing to write: {report:?}");
    assert_eq!(lma.routes("-6 route show table all"), before);

    // A cleanup by a backend that made none of them (`--cleanup` is a process of its own)
    // removes the pairs, the ingress one too, and the routes into them.
    drop(restarted);
    let fresh = open(tunnel, &lma, LMA).await;
    fresh.cleanup().await.unwrap();
    lma.wait_until_no_link("pmip6t");
    let routes = lma.routes("-6 route show table all");
    assert!(!routes.contains("2001:db8:100::/64"), "{routes}");
    let rules = lma.ip_output("-6 rule show");
    assert!(!rules.contains("pmip6tin"), "{rules}");
    drop(mag_dp);
}

/// The LMA's own TCP stream to the node crosses the tunnel intact. The kernel leaves the
/// checksums of what a host sends to the device's offload and hands it segments of up to 64
/// KiB; a userspace tunnel that read them as they are would send packets with bad checksums
/// or too big for the path. 4 MiB each way, compared byte for byte.
#[tokio::test]
async fn the_lmas_own_tcp_stream_crosses_the_tunnel_intact() {
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpListener, TcpStream};
    use std::time::Duration;
    let lab = lab(1500).await;
    lab.program().await;
    let to = SocketAddr::from((a(MN), 7020));
    let listener = lab
        .mn
        .ns
        .run(move || TcpListener::bind(to))
        .unwrap()
        .unwrap();
    let data: Vec<u8> = (0..4u32 << 20).map(|i| (i % 251) as u8).collect();
    let echo = std::thread::spawn(move || -> std::io::Result<Vec<u8>> {
        let (mut c, _) = listener.accept()?;
        c.set_read_timeout(Some(Duration::from_secs(20)))?;
        let mut got = Vec::new();
        c.read_to_end(&mut got)?;
        c.write_all(&got)?;
        Ok(got)
    });
    let mut c = lab
        .lma
        .ns
        .run(move || TcpStream::connect_timeout(&to, Duration::from_secs(5)))
        .unwrap()
        .expect("the LMA connects to the node through the tunnel");
    c.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let (mut reader, data_) = (c.try_clone().unwrap(), data.clone());
    let back = std::thread::spawn(move || {
        let mut back = Vec::new();
        reader.read_to_end(&mut back).map(|_| back)
    });
    c.write_all(&data_).expect("sent");
    c.shutdown(std::net::Shutdown::Write).unwrap();
    let got = echo.join().unwrap().expect("the node received the stream");
    assert!(
        got == data,
        "the node got {} of {} bytes, or others",
        got.len(),
        data.len()
    );
    let back = back.join().unwrap().expect("the LMA received the echo");
    assert!(
        back == data,
        "the LMA got {} of {} bytes back, or others",
        back.len(),
        data.len()
    );
}

/// tun only. A pair whose daemon's end someone sets down loses its carrier, and the kernel
/// flushes its nexthop object and the routes into it; a reconcile makes the pair again and
/// traffic flows. So does an ingress pair someone deleted.
#[tokio::test]
async fn a_reconcile_makes_a_broken_pair_again() {
    let lab = lab(1500).await;
    if lab.tunnel != Tunnel::Tun {
        note(&format!(
            "a_reconcile_makes_a_broken_pair_again: tun only, not run over {}",
            name(lab.tunnel)
        ));
        return;
    }
    lab.program().await;
    let mn = lab.mn.udp(MN, 7012);
    let cn = lab.cn.udp(CN, 7012);
    assert!(send_and_receive(&cn, &mn, 64).is_some());
    let before = lab.lma.index("pmip6t0").await;
    lab.lma.ip("link set pmip6t0io down");
    assert!(
        send_and_receive(&cn, &mn, 64).is_none(),
        "the pair is broken"
    );
    let report = lab
        .lma_dp
        .reconcile(&lab.lma_dp.state().await)
        .await
        .unwrap();
    assert_eq!(report.links.added, 1, "{report:?}");
    assert_eq!(report.routes.added, 1, "{report:?}");
    assert_ne!(lab.lma.index("pmip6t0").await, before);
    assert!(send_and_receive(&cn, &mn, 64).is_some());
    assert!(send_and_receive(&mn, &cn, 64).is_some());

    // The same for the ingress pair, which decapsulated packets enter by: deleted behind
    // the backend's back, the uplink stops at the LMA; a reconcile makes it again.
    lab.lma.ip("link del pmip6tin");
    assert!(send_and_receive(&mn, &cn, 64).is_none(), "no way in");
    lab.lma_dp
        .reconcile(&lab.lma_dp.state().await)
        .await
        .unwrap();
    assert!(
        lab.lma
            .ip_output("link show pmip6tin")
            .contains("pmip6tin@pmip6tinio")
    );
    assert!(send_and_receive(&mn, &cn, 64).is_some());
}

/// With a 1500-byte transport link the tunnel MTU is 1460 and the routes say so (seg6: the
/// route's MTU; tun: the device's): forwarded packets of 1460 bytes get through both ways,
/// and the LMA's own packets above the tunnel MTU are refused with EMSGSIZE instead of
/// vanishing in the seg6 output path (or being refused by the raw socket behind the
/// userspace tunnel's pair, where nobody sees it).
#[tokio::test]
async fn tunnel_mtu_is_the_transport_mtu_minus_40() {
    let lab = lab(1500).await;
    lab.program().await;
    assert_eq!(lab.lma_dp.settings().tunnel_mtu(), 1460);
    let mn = lab.mn.udp(MN, 7001);
    let cn = lab.cn.udp(CN, 7001);
    assert!(
        send_and_receive(&mn, &cn, 1460 - 48).is_some(),
        "uplink 1460"
    );
    assert!(
        send_and_receive(&cn, &mn, 1460 - 48).is_some(),
        "downlink 1460"
    );
    let lma = lab.lma.udp(LMA, 7001);
    let dst = mn.local_addr().unwrap();
    let err = lma.send_to(&vec![0u8; 1461 - 48], dst).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EMSGSIZE), "{err}");
    // With seg6 the kernel also subtracts the headroom it reserves (outer header and a
    // routing header that reduced mode leaves out) from the route MTU for the node's own
    // packets.
    let largest = (1280..=1460)
        .rev()
        .find(|n| lma.send_to(&vec![0u8; n - 48], dst).is_ok())
        .expect("some size fits");
    eprintln!("largest packet the LMA itself sends into a 1460 tunnel: {largest}");
    match lab.tunnel {
        // No headroom reserved: the device's MTU is the limit.
        Tunnel::Tun => {
            assert_eq!(largest, 1460);
            let t = lab.lma.index("pmip6t0").await;
            assert_eq!(lab.lma.nl.link_mtu(t).await.unwrap(), 1460);
        }
        _ => assert!(largest <= 1460),
    }
    let got = receive_until(&mn, largest - 48);
    assert!(got, "the LMA's own {largest}-byte packet arrived");
}

fn receive_until(s: &std::net::UdpSocket, len: usize) -> bool {
    (0..15).any(|_| receive(s).is_some_and(|r| r.payload.len() == len))
}

/// Applying the same changes twice leaves the same kernel state; a reconcile to that state
/// then changes nothing, and a backend opened afresh reads the same state back.
#[tokio::test]
async fn changes_are_idempotent_and_read_back() {
    let lab = lab(1500).await;
    lab.program().await;
    let Datapath::Kernel(mag) = &lab.mag_dp else {
        panic!("a kernel backend")
    };
    let first = mag.read_back().await.unwrap();
    assert_eq!(first, lab.mag_dp.state().await);
    lab.program().await;
    let second = mag.read_back().await.unwrap();
    assert_eq!(first, second);
    let a0 = lab.mag.index("a0").await;
    assert_eq!(
        second.routes.get(&net(HNP)),
        Some(PrefixRoute::Link {
            ifindex: a0,
            local_routing: false
        })
    );
    assert_eq!(second.uplinks.get(&net(HNP)), Some(&a(LMA)));
    let report = lab.mag_dp.reconcile(&second).await.unwrap();
    assert!(report.is_noop(), "{report:?}");
    let report = lab
        .lma_dp
        .reconcile(&lab.lma_dp.state().await)
        .await
        .unwrap();
    assert!(report.is_noop(), "{report:?}");

    let reopened = open(lab.tunnel, &lab.mag, MAG).await;
    assert_eq!(reopened.state().await, second);
    // Removals of what is not there succeed.
    reopened
        .remove_downlink(net("2001:db8:999::/64"))
        .await
        .unwrap();
    reopened
        .remove_uplink(net("2001:db8:999::/64"))
        .await
        .unwrap();
}

/// A reconcile removes an owned route nobody wants, leaves a route of another protocol
/// alone, and a cleanup leaves nothing owned and the kernel's local rule back at 0.
#[tokio::test]
async fn reconcile_and_cleanup_touch_only_what_is_owned() {
    let lab = lab(1500).await;
    lab.program().await;
    let desired = lab.lma_dp.state().await;
    let stale = net("2001:db8:101::/64");
    lab.lma_dp.add_downlink(stale, a(MAG)).await.unwrap();
    let t0 = lab.lma.index("t0").await;
    let foreign = net("2001:db8:102::/64");
    lab.lma
        .nl
        .add_route(foreign, Some(a(MAG)), t0)
        .await
        .unwrap();
    // Someone else's route for the node's own prefix (protocol static, metric 1024) stays
    // next to the backend's, which is programmed again.
    lab.lma
        .nl
        .add_route(net(HNP), Some(a(MAG)), t0)
        .await
        .unwrap();
    lab.lma_dp.add_downlink(net(HNP), a(MAG)).await.unwrap();

    let report = lab.lma_dp.reconcile(&desired).await.unwrap();
    assert_eq!(report.routes.removed, 1, "{report:?}");
    assert_eq!(report.routes.added, 0, "{report:?}");
    let Datapath::Kernel(lma) = &lab.lma_dp else {
        panic!()
    };
    let back = lma.read_back().await.unwrap();
    assert_eq!(back, desired);
    assert!(!back.routes.contains_key(&stale));

    // Traffic still flows after the reconcile.
    let mn = lab.mn.udp(MN, 7002);
    let cn = lab.cn.udp(CN, 7002);
    assert!(send_and_receive(&cn, &mn, 64).is_some());

    let report = lab.lma_dp.cleanup().await.unwrap();
    match lab.tunnel {
        Tunnel::Tun => {
            // The downlink went with the device (closed, not deleted: the kernel removes the
            // routes into it, which the report does not count).
            assert_eq!(report.links.removed, 1, "the MAG's device: {report:?}");
            assert_eq!(
                report.rules.removed, 2,
                "iif pmip6tin (IPv6 and IPv4): {report:?}"
            );
        }
        _ => {
            assert_eq!(
                report.routes.removed, 3,
                "downlink, End.DT6 and End.DX4: {report:?}"
            );
            assert_eq!(
                report.rules.removed, 3,
                "termination (41 and 4) and local: {report:?}"
            );
        }
    }
    assert!(lma.read_back().await.unwrap().is_empty());
    let report = lab.mag_dp.cleanup().await.unwrap();
    if lab.tunnel == Tunnel::Tun {
        // The access link's route; the uplink's default route went with the LMA's device.
        assert_eq!(report.routes.removed, 1, "{report:?}");
        assert_eq!(report.links.removed, 1, "the LMA's device: {report:?}");
        assert_eq!(
            report.rules.removed, 3,
            "uplink and iif pmip6tin (IPv6 and IPv4): {report:?}"
        );
    } else {
        assert!(report.routes.removed >= 3, "{report:?}");
    }
    assert_eq!(report.addresses.removed, 1, "{report:?}");
    let Datapath::Kernel(mag) = &lab.mag_dp else {
        panic!()
    };
    assert!(mag.read_back().await.unwrap().is_empty());
    // Nothing of protocol 135 is left (no device of the tun backend either), the foreign
    // route is, and so is a local lookup at 0.
    for node in [&lab.lma, &lab.mag] {
        let links = node.ip_output("link show");
        assert!(!links.contains("pmip6t"), "{links}");
        let rules4 = node.ip_output("-4 rule show");
        assert!(!rules4.contains("proto 135"), "{rules4}");
        let (routes, rules) = routes_and_rules(node).await;
        assert!(
            !routes.iter().any(|r| r.contains("proto 135")),
            "{routes:?}"
        );
        assert!(!rules.iter().any(|r| r.contains("proto 135")), "{rules:?}");
        assert!(
            rules
                .iter()
                .any(|r| r.starts_with("pref 0 ") && r.contains("lookup local")),
            "{rules:?}"
        );
    }
    let (routes, _) = routes_and_rules(&lab.lma).await;
    for foreign in ["2001:db8:102::/64 proto 4", "2001:db8:100::/64 proto 4"] {
        assert!(routes.iter().any(|r| r == foreign), "{foreign}: {routes:?}");
    }
    // Cleaning up again finds nothing.
    assert!(lab.lma_dp.cleanup().await.unwrap().is_noop());
}

/// A restarted LMA opens without reading the routes back, assumes its store's state and
/// serves: a change made then is applied against that state at once, and the reconcile that
/// follows, beside it, removes a route no binding needs, writes the missing one and leaves
/// the changed route as the change made it. Traffic flows throughout. The old backend stops
/// first, as a killed daemon does: seg6's routes, and the userspace tunnel's pairs with the
/// routes into them, outlive it, and the restarted tun backend takes the pairs over when it
/// assumes.
#[tokio::test]
async fn an_assumed_state_is_reconciled_later_and_keeps_the_changes_made_meanwhile() {
    let lab = lab(1500).await;
    lab.program().await;
    let stale = net("2001:db8:101::/64");
    let missing = net("2001:db8:102::/64");
    let moved = net("2001:db8:103::/64");
    let other_mag = a("2001:db8::3");
    lab.lma_dp.add_downlink(stale, a(MAG)).await.unwrap();
    lab.lma_dp.add_downlink(moved, a(MAG)).await.unwrap();
    let mut stored = lab.lma_dp.state().await;
    stored.routes.remove(&stale);
    stored
        .routes
        .insert(missing, PrefixRoute::Tunnel { peer: a(MAG) });
    let links = lab.lma.ip_output("link");
    drop(lab.lma_dp);
    assert_eq!(
        lab.lma.ip_output("link"),
        links,
        "the links stay as they were"
    );

    let restarted = reopen(lab.tunnel, &lab.lma, LMA).await;
    restarted.assume(stored.clone()).await.unwrap();
    let Datapath::Kernel(k) = &restarted else {
        panic!("a kernel backend")
    };
    assert!(k.is_pending().await);
    if lab.tunnel == Tunnel::Tun {
        // Taken over: the same pairs (no link made or deleted).
        assert_eq!(lab.lma.ip_output("link"), links);
    }
    // A handover while the reconcile is pending: applied against the assumed state.
    restarted.add_downlink(moved, other_mag).await.unwrap();
    let mn = lab.mn.udp(MN, 7003);
    let cn = lab.cn.udp(CN, 7003);
    assert!(send_and_receive(&cn, &mn, 64).is_some());

    let report = restarted.reconcile_pending().await.unwrap();
    assert_eq!(report.routes.removed, 1, "the stale route: {report:?}");
    assert_eq!(report.routes.added, 1, "the missing route: {report:?}");
    assert!(!k.is_pending().await);
    let mut want = stored;
    want.routes
        .insert(moved, PrefixRoute::Tunnel { peer: other_mag });
    assert_eq!(k.read_back().await.unwrap(), want);
    assert_eq!(restarted.state().await, want);
    assert!(send_and_receive(&cn, &mn, 64).is_some());
    // Nothing pending: nothing to do.
    assert!(restarted.reconcile_pending().await.unwrap().is_noop());
}

/// The IPv6 routes (`DST/LEN proto P`) and rules (`pref N lookup T proto P`) of a
/// namespace, dumped with plain rtnetlink, independently of the crate's own parser.
async fn routes_and_rules(node: &Node) -> (Vec<String>, Vec<String>) {
    let h = node.ns.rtnetlink().unwrap();
    use futures::TryStreamExt;
    use netlink_packet_route::route::{RouteAttribute, RouteMessage};
    use netlink_packet_route::rule::RuleAttribute;
    let mut routes = Vec::new();
    let mut get = RouteMessage::default();
    get.header.address_family = netlink_packet_route::AddressFamily::Inet6;
    let mut s = h.route().get(get).execute();
    while let Some(r) = s.try_next().await.unwrap() {
        let dst = r
            .attributes
            .iter()
            .find_map(|a| match a {
                RouteAttribute::Destination(netlink_packet_route::route::RouteAddress::Inet6(
                    d,
                )) => Some(*d),
                _ => None,
            })
            .unwrap_or(std::net::Ipv6Addr::UNSPECIFIED);
        routes.push(format!(
            "{dst}/{} proto {}",
            r.header.destination_prefix_length,
            u8::from(r.header.protocol)
        ));
    }
    let mut rules = Vec::new();
    let mut s = h.rule().get(rtnetlink::IpVersion::V6).execute();
    while let Some(r) = s.try_next().await.unwrap() {
        let mut pref = 0;
        let mut table = u32::from(r.header.table);
        let mut proto = 0;
        for a in &r.attributes {
            match a {
                RuleAttribute::Priority(p) => pref = *p,
                RuleAttribute::Table(t) => table = *t,
                RuleAttribute::Protocol(p) => proto = u8::from(*p),
                _ => {}
            }
        }
        let table = if table == 255 {
            "local".to_string()
        } else {
            table.to_string()
        };
        rules.push(format!("pref {pref} lookup {table} proto {proto}"));
    }
    (routes, rules)
}

/// A handover at the LMA is one route replace: the node's traffic then arrives through
/// the other MAG.
#[tokio::test]
async fn handover_moves_the_downlink_to_the_new_mag() {
    let (mn, mag_a, mag_b, lma, cn) = (
        Node::new("mn").await,
        Node::new("maga").await,
        Node::new("magb").await,
        Node::new("lma").await,
        Node::new("cn").await,
    );
    // The node hangs off both MAGs (one link each) with its address on both, so the link a
    // packet arrives by tells which MAG delivered it.
    link(&mn, "ma", &mag_a, "a0", 1500).await;
    link(&mn, "mb", &mag_b, "a0", 1500).await;
    link(&mag_a, "t0", &lma, "ta", 1500).await;
    link(&mag_b, "t0", &lma, "tb", 1500).await;
    link(&lma, "c0", &cn, "c0", 1500).await;
    mn.addr("ma", MN, 128).await;
    mn.addr("mb", MN, 128).await;
    mag_a.addr("t0", "2001:db8:a::2", 64).await;
    mag_b.addr("t0", "2001:db8:b::2", 64).await;
    lma.addr("ta", "2001:db8:a::1", 64).await;
    lma.addr("tb", "2001:db8:b::1", 64).await;
    lma.addr("c0", "2001:db8:200::1", 64).await;
    cn.addr("c0", CN, 64).await;
    cn.route("::/0", Some("2001:db8:200::1"), "c0").await;
    let tunnel = tunnel_under_test(&lma.nl).await;
    // Kept while traffic flows: a tun backend's devices close with it.
    let mut mag_dps = Vec::new();
    for (mag, local) in [(&mag_a, "2001:db8:a::2"), (&mag_b, "2001:db8:b::2")] {
        let dp = open(tunnel, mag, local).await;
        let a0 = mag.index("a0").await;
        dp.prepare_termination(Termination {
            local: a(local),
            ifindex: mag.index("t0").await,
        })
        .await
        .unwrap();
        dp.prepare_access_link(
            a0,
            AccessLinkAddresses {
                link_layer_address: MAC,
                link_local: a("fe80::1"),
            },
        )
        .await
        .unwrap();
        dp.add_local_route(net(HNP), a0, false).await.unwrap();
        mag_dps.push(dp);
    }
    let lma_dp = open_on(tunnel, &lma, "ta", "2001:db8:a::1").await;
    lma_dp
        .prepare_termination(Termination {
            local: a("2001:db8:a::1"),
            ifindex: lma.index("ta").await,
        })
        .await
        .unwrap();
    let mn_sock = mn.udp(MN, 7003);
    let cn_sock = cn.udp(CN, 7003);

    lma_dp
        .add_downlink(net(HNP), a("2001:db8:a::2"))
        .await
        .unwrap();
    let got = send_and_receive(&cn_sock, &mn_sock, 200).expect("via MAG A");
    assert_eq!(got.ifindex, mn.index("ma").await, "arrived through MAG A");

    lma_dp
        .add_downlink(net(HNP), a("2001:db8:b::2"))
        .await
        .unwrap();
    let got = send_and_receive(&cn_sock, &mn_sock, 200).expect("via MAG B");
    assert_eq!(got.ifindex, mn.index("mb").await, "arrived through MAG B");
    assert_eq!(
        lma_dp.state().await.routes.get(&net(HNP)),
        Some(PrefixRoute::Tunnel {
            peer: a("2001:db8:b::2")
        })
    );
    let Datapath::Kernel(k) = &lma_dp else {
        panic!()
    };
    assert_eq!(k.read_back().await.unwrap(), lma_dp.state().await);
    // The route names the new MAG; with tun the old MAG's device lingers without a route.
    let routes = lma.routes("-6 route show");
    let links = lma.ip_output("link show");
    match tunnel {
        Tunnel::Tun => {
            // MAG B's device was made while MAG A's still held slot 0.
            let b = lma.ip_output("link show pmip6t1");
            assert!(
                b.contains("alias pmip-tun 2001:db8:a::1 2001:db8:b::2"),
                "{b}"
            );
            let idle = lma.ip_output("link show pmip6t0");
            assert!(idle.contains("2001:db8:a::2"), "{links}");
            assert!(!routes.contains("dev pmip6t0 proto 135"), "{routes}");
            let into = "2001:db8:100::/64 dev pmip6t1 proto 135";
            assert!(routes.contains(into), "{into:?}: {routes}");
        }
        _ => assert!(routes.contains("segs 1 [ 2001:db8:b::2 ]"), "{routes}"),
    }
    drop(mag_dps);
}

/// With local routing on, traffic between two nodes of the same MAG never reaches the
/// transport link; with it off, it goes through the LMA and back.
#[tokio::test]
async fn local_routing_keeps_traffic_between_nodes_on_the_mag() {
    let lab = lab(1500).await;
    lab.program().await;
    let mn2 = Node::new("mn2").await;
    link(&mn2, "m0", &lab.mag, "a1", 1500).await;
    let hnp2 = "2001:db8:110::/64";
    let mn2_addr = "2001:db8:110::2";
    mn2.addr("m0", mn2_addr, 64).await;
    mn2.route("::/0", Some("fe80::1"), "m0").await;
    let a1 = lab.mag.index("a1").await;
    lab.mag_dp
        .prepare_access_link(
            a1,
            AccessLinkAddresses {
                link_layer_address: MAC,
                link_local: a("fe80::1"),
            },
        )
        .await
        .unwrap();
    lab.mag_dp.add_uplink(net(hnp2), a(LMA)).await.unwrap();
    lab.lma_dp.add_downlink(net(hnp2), a(MAG)).await.unwrap();
    let s1 = lab.mn.udp(MN, 7004);
    let s2 = mn2.udp(mn2_addr, 7004);

    // Off: node 1 to node 2 goes up the tunnel to the LMA and back down.
    lab.mag_dp
        .add_local_route(net(hnp2), a1, false)
        .await
        .unwrap();
    let capture = Capture::start(&lab.lma, "t0").await;
    assert!(send_and_receive(&s1, &s2, 300).is_some(), "through the LMA");
    let packets = capture.ipv6_packets();
    assert_tunnelled(&packets, (MAG, LMA), (MN, mn2_addr), 300);
    assert_tunnelled(&packets, (LMA, MAG), (MN, mn2_addr), 300);

    // On: it stays on the MAG.
    lab.mag_dp
        .add_local_route(net(hnp2), a1, true)
        .await
        .unwrap();
    let capture = Capture::start(&lab.lma, "t0").await;
    assert!(send_and_receive(&s1, &s2, 301).is_some(), "locally");
    // The nodes' packets, that is: a tun device's own link-local multicast (an MLD report
    // from its fe80:: address) may cross the tunnel meanwhile.
    let packets = capture.ipv6_packets();
    let tunnelled: Vec<_> = packets
        .iter()
        .filter(|p| ipv6_header(p).is_some_and(|h| h.next_header == 41))
        .filter_map(|p| p.get(40..).and_then(ipv6_header))
        .filter(|inner| {
            [inner.src, inner.dst]
                .iter()
                .any(|x| *x == a(MN) || *x == a(mn2_addr))
        })
        .collect();
    assert!(
        tunnelled.is_empty(),
        "local routing sent the nodes' packets to the LMA: {tunnelled:?}"
    );
    // And back off again removes the local-routing route and rule.
    lab.mag_dp
        .add_local_route(net(hnp2), a1, false)
        .await
        .unwrap();
    let Datapath::Kernel(mag) = &lab.mag_dp else {
        panic!()
    };
    let back = mag.read_back().await.unwrap();
    assert_eq!(back, lab.mag_dp.state().await);
    assert!(back.routes.values().all(|r| !matches!(
        r,
        PrefixRoute::Link {
            local_routing: true,
            ..
        }
    )));
    let (_, rules) = routes_and_rules(&lab.mag).await;
    assert!(
        !rules.iter().any(|r| r.starts_with("pref 1100")),
        "{rules:?}"
    );
}

/// A reverse tunnel moves from one peer to another (fast handover) without a gap and the
/// first peer's table is emptied.
#[tokio::test]
async fn uplink_moves_between_peers_and_frees_the_old_table() {
    let lab = lab(1500).await;
    lab.program().await;
    let other_mag = a("2001:db8::3");
    lab.mag_dp.add_uplink(net(HNP), other_mag).await.unwrap();
    let Datapath::Kernel(mag) = &lab.mag_dp else {
        panic!()
    };
    let back = mag.read_back().await.unwrap();
    assert_eq!(back.uplinks[&net(HNP)], other_mag);
    assert_eq!(back, lab.mag_dp.state().await);
    let lma_device = match lab.tunnel {
        Tunnel::Tun => Some(lab.mag.index("pmip6t0").await),
        _ => None,
    };
    // Back to the LMA (with tun, into the LMA's device, which lingered for it): traffic flows
    // again.
    lab.mag_dp.add_uplink(net(HNP), a(LMA)).await.unwrap();
    let mn = lab.mn.udp(MN, 7005);
    let cn = lab.cn.udp(CN, 7005);
    assert!(send_and_receive(&mn, &cn, 64).is_some());
    let (routes, _) = routes_and_rules(&lab.mag).await;
    // One default route (the LMA's table), not two.
    let defaults = routes
        .iter()
        .filter(|r| r.starts_with("::/0 proto 135"))
        .count();
    assert_eq!(defaults, 1, "{routes:?}");
    assert_eq!(mag.read_back().await.unwrap().uplinks[&net(HNP)], a(LMA));
    if let Some(lma_device) = lma_device {
        // The LMA's device was not made again; the other peer's lingers, no route into it.
        assert_eq!(lab.mag.index("pmip6t0").await, lma_device);
        let other = lab.mag.ip_output("link show pmip6t1");
        assert!(
            other.contains("alias pmip-tun 2001:db8::2 2001:db8::3"),
            "{other}"
        );
        let all = lab.mag.routes("-6 route show table all");
        assert!(!all.contains("dev pmip6t1 proto 135"), "{all}");
    }
}

const MN4: &str = "192.0.2.10";
const CN4: &str = "198.51.100.2";

fn net4(s: &str) -> ipnet::Ipv4Net {
    s.parse().unwrap()
}

impl Lab {
    /// The IPv4 hosts around the datapath: the node's home address and default router (its
    /// MAC resolved statically: answering ARP is the MAG daemon's job, not the datapath's),
    /// the correspondent behind the LMA.
    fn ipv4_hosts(&self) {
        self.mn.ip(&format!("addr add {MN4}/24 dev m0"));
        self.mn.ip("route add default via 192.0.2.1 dev m0");
        self.mn
            .ip("neigh replace 192.0.2.1 lladdr 02:00:5e:00:53:01 dev m0 nud permanent");
        self.lma.ip("addr add 198.51.100.1/24 dev c0");
        self.cn.ip(&format!("addr add {CN4}/24 dev c0"));
        self.cn.ip("route add default via 198.51.100.1 dev c0");
    }

    /// The node's IPv4 home address through both tunnel ends (RFC 5844 §3.1.3, §3.2.4).
    async fn program4(&self) {
        self.lma_dp
            .apply(&[Change::SetDownlink4 {
                prefix: net4(&format!("{MN4}/32")),
                peer: a(MAG),
            }])
            .await
            .unwrap();
        let a0 = self.mag.index("a0").await;
        self.mag_dp
            .apply(&[
                Change::SetLinkRoute4 {
                    prefix: net4(&format!("{MN4}/32")),
                    ifindex: a0,
                    local_routing: false,
                },
                Change::SetUplink4 {
                    prefix: net4(&format!("{MN4}/32")),
                    peer: a(LMA),
                },
            ])
            .await
            .unwrap();
    }
}

/// A lab whose node has its IPv6 prefix and its IPv4 home address through both tunnel ends.
async fn lab4() -> Lab {
    let lab = lab(1500).await;
    lab.program().await;
    lab.ipv4_hosts();
    lab.program4().await;
    lab
}

/// An IPv4 home address crosses the tunnel both ways where new links filter by reverse path
/// strictly (`rp_filter` 1 in `default`, as some distributions set it): a decapsulated
/// packet enters by the userspace tunnel's ingress pair, not by the link its source is routed
/// to, and the kernel would drop it; the pairs are made with the filter off. (With `all`
/// above 0 the kernel filters every link, and the daemon warns.)
#[tokio::test]
async fn ipv4_crosses_the_tunnel_under_strict_reverse_path_filtering() {
    let lab = lab(1500).await;
    for node in [&lab.lma, &lab.mag] {
        for (key, value) in [("all", 0), ("default", 1)] {
            let st = node
                .ns
                .command("sysctl")
                .unwrap()
                .args(["-qw", &format!("net.ipv4.conf.{key}.rp_filter={value}")])
                .status()
                .unwrap();
            assert!(st.success());
        }
    }
    lab.program().await;
    lab.ipv4_hosts();
    lab.program4().await;
    let mn = lab.mn.udp4(MN4, 7101);
    let cn = lab.cn.udp4(CN4, 7101);
    let up = send_and_receive4(&mn, &cn, 100).expect("uplink");
    assert_eq!(up.ip().to_string(), MN4);
    let down = send_and_receive4(&cn, &mn, 100).expect("downlink");
    assert_eq!(down.ip().to_string(), CN4);
}

/// Checks that `packets` holds an IPv6 packet from `outer_src` to `outer_dst` whose Next
/// Header is 4 and whose payload, right behind the 40-byte header (no routing header), is an
/// IPv4 packet from `inner_src` to `inner_dst` of `len` bytes.
fn assert_tunnelled4(
    packets: &[Vec<u8>],
    (outer_src, outer_dst): (&str, &str),
    (inner_src, inner_dst): (&str, &str),
    len: usize,
) {
    let found = packets.iter().any(|p| {
        let (Some(outer), Some(inner)) = (ipv6_header(p), p.get(40..).and_then(ipv4_header)) else {
            return false;
        };
        outer.next_header == 4
            && outer.src == a(outer_src)
            && outer.dst == a(outer_dst)
            && outer.payload_len == len
            && inner.total_len == len
            && inner.src.to_string() == inner_src
            && inner.dst.to_string() == inner_dst
    });
    let seen = outer_headers(packets);
    assert!(
        found,
        "no {outer_src} -> {outer_dst} (4) carrying {inner_src} -> {inner_dst} of {len} bytes; saw {seen:?}"
    );
}

/// An IPv4 home address crosses both tunnel ends both ways, as IPv4-in-IPv6 on the transport
/// link: outer IPv6 with Next Header 4, no routing header, the IPv4 packet right behind
/// (RFC 5844 §3.1.3 Figure 2). Packets of the tunnel MTU pass when forwarded. Wireshark
/// decodes the captured packets the same way.
#[tokio::test]
async fn ipv4_home_address_crosses_the_tunnel_both_ways() {
    let lab = lab4().await;
    let mn = lab.mn.udp4(MN4, 7100);
    let cn = lab.cn.udp4(CN4, 7100);
    let capture = Capture::start(&lab.lma, "t0").await;
    // 1432 bytes of UDP payload make a 1460-byte IPv4 packet: the tunnel MTU.
    for len in [100, 1460 - 28] {
        let up = send_and_receive4(&mn, &cn, len).unwrap_or_else(|| panic!("uplink {len} lost"));
        assert_eq!(
            up.ip().to_string(),
            MN4,
            "the home address arrives as the source"
        );
        let down =
            send_and_receive4(&cn, &mn, len).unwrap_or_else(|| panic!("downlink {len} lost"));
        assert_eq!(down.ip().to_string(), CN4);
        let packets = capture.ipv6_packets();
        assert_tunnelled4(&packets, (MAG, LMA), (MN4, CN4), len + 28);
        assert_tunnelled4(&packets, (LMA, MAG), (CN4, MN4), len + 28);
        if len == 100 {
            tshark_sees_ipv4_in_ipv6(&packets);
        }
    }
    // IPv6 still flows beside it.
    let mn6 = lab.mn.udp(MN, 7100);
    let cn6 = lab.cn.udp(CN, 7100);
    assert!(send_and_receive(&cn6, &mn6, 64).is_some(), "IPv6 downlink");
    assert!(send_and_receive(&mn6, &cn6, 64).is_some(), "IPv6 uplink");
}

/// Wireshark's reading of the captured tunnel packets (an independent decoder): an IPv6
/// header with Next Header 4 ("IPIP"), no routing header, an IPv4 header inside carrying
/// the node's home address.
fn tshark_sees_ipv4_in_ipv6(packets: &[Vec<u8>]) {
    let dir = std::env::temp_dir().join(unique("pcap"));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("ipv4-in-ipv6.pcap");
    let tunnelled: Vec<Vec<u8>> = packets
        .iter()
        .filter(|p| ipv6_header(p).is_some_and(|h| h.next_header == 4))
        .cloned()
        .collect();
    assert!(!tunnelled.is_empty());
    write_pcap(&path, &tunnelled);
    let tshark = std::env::var("TSHARK").unwrap_or_else(|_| "tshark".into());
    let out = std::process::Command::new(&tshark)
        .args(["-n", "-r"])
        .arg(&path)
        .args([
            "-T",
            "fields",
            "-E",
            "separator=|",
            "-e",
            "ipv6.src",
            "-e",
            "ipv6.dst",
            "-e",
            "ipv6.nxt",
            "-e",
            "ipv6.routing.type",
            "-e",
            "ip.src",
            "-e",
            "ip.dst",
            "-e",
            "udp.dstport",
        ])
        .output()
        .unwrap_or_else(|e| panic!("{tshark}: {e} (install the Debian package tshark)"));
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), tunnelled.len(), "{text}");
    let expected = [
        format!("{MAG}|{LMA}|4||{MN4}|{CN4}|7100"),
        format!("{LMA}|{MAG}|4||{CN4}|{MN4}|7100"),
    ];
    for e in &expected {
        assert!(lines.iter().any(|l| l == e), "no {e:?} in {text}");
    }
    assert!(
        lines.iter().all(|l| l.split('|').nth(3) == Some("")),
        "a routing header: {text}"
    );
}

/// The IPv4 state reads back from the kernel as it was programmed, a reconcile to it changes
/// nothing, a handover moves the IPv4 downlink in one replace, and a cleanup leaves no IPv4
/// route or rule of the backend's protocol.
#[tokio::test]
async fn ipv4_state_reads_back_moves_and_cleans_up() {
    let lab = lab4().await;
    let (Datapath::Kernel(lma), Datapath::Kernel(mag)) = (&lab.lma_dp, &lab.mag_dp) else {
        panic!("a kernel backend")
    };
    for (k, dp) in [(lma, &lab.lma_dp), (mag, &lab.mag_dp)] {
        let back = k.read_back().await.unwrap();
        assert_eq!(back, dp.state().await);
        assert!(back.has_ipv4());
        assert!(dp.reconcile(&back).await.unwrap().is_noop());
    }
    let m = lab.mag_dp.state().await;
    assert_eq!(m.uplinks4[&net4(&format!("{MN4}/32"))], a(LMA));
    // As iproute2 shows it (its spacing is its own): the recipe's IPv4 uplink route, and
    // what takes IPv4 out of the tunnel: seg6's termination rule for Next Header 4 (to
    // End.DX4), or tun's ingress device, routed by the main table.
    let table = lab.mag.routes("-4 route show table 13502");
    let (parts, rules): (&[&str], &[(&str, &str)]) = match lab.tunnel {
        Tunnel::Tun => (
            &["default", "dev pmip6t0", "proto 135"],
            &[
                (
                    "-6 rule show",
                    "from all iif pmip6tin lookup main proto 135",
                ),
                (
                    "-4 rule show",
                    "from all iif pmip6tin lookup main proto 135",
                ),
            ],
        ),
        _ => (
            &[
                "default",
                "encap seg6 mode encap.red segs 1 [ 2001:db8::1 ] dev t0",
                "proto 135",
                "mtu 1460",
            ],
            &[(
                "-6 rule show",
                "from all to 2001:db8::2 ipproto ipencap lookup 13516 proto 135",
            )],
        ),
    };
    for part in parts {
        assert!(table.contains(part), "{part:?} not in {table:?}");
    }
    for (what, rule) in rules {
        let out = lab.mag.ip_output(what);
        assert!(out.contains(rule), "{rule:?} not in {what}: {out}");
    }
    let forwarding = lab
        .mag
        .ns
        .run(|| std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward"))
        .unwrap()
        .unwrap();
    assert_eq!(
        forwarding.trim(),
        "1",
        "IPv4 forwarding is on with an IPv4 home address"
    );

    // A reopened backend finds the same state.
    let reopened = open(lab.tunnel, &lab.lma, LMA).await;
    assert_eq!(reopened.state().await, lab.lma_dp.state().await);

    // Handover at the LMA: one route replace to another proxy-CoA.
    let other = a("2001:db8::3");
    lab.lma_dp
        .apply(&[Change::SetDownlink4 {
            prefix: net4(&format!("{MN4}/32")),
            peer: other,
        }])
        .await
        .unwrap();
    assert_eq!(
        lma.read_back()
            .await
            .unwrap()
            .routes4
            .get(&net4(&format!("{MN4}/32"))),
        Some(PrefixRoute::Tunnel { peer: other })
    );
    let routes = lab.lma.routes("-4 route");
    match lab.tunnel {
        Tunnel::Tun => {
            assert!(
                routes.contains("192.0.2.10 dev pmip6t1 proto 135"),
                "{routes}"
            );
            let links = lab.lma.ip_output("link show pmip6t1");
            assert!(
                links.contains("alias pmip-tun 2001:db8::1 2001:db8::3"),
                "{links}"
            );
        }
        _ => assert!(routes.contains("segs 1 [ 2001:db8::3 ]"), "{routes}"),
    }

    // The MAG stops tunnelling the address: its table's IPv4 default goes with the last
    // IPv4 uplink, the IPv6 one stays.
    lab.mag_dp
        .apply(&[Change::RemoveUplink4 {
            prefix: net4(&format!("{MN4}/32")),
        }])
        .await
        .unwrap();
    assert_eq!(lab.mag.routes("-4 route show table 13502"), "");
    assert!(
        lab.mag
            .ip_output("-6 route show table 13502")
            .contains("default")
    );
    assert_eq!(mag.read_back().await.unwrap(), lab.mag_dp.state().await);

    for (k, dp, node) in [(lma, &lab.lma_dp, &lab.lma), (mag, &lab.mag_dp, &lab.mag)] {
        dp.cleanup().await.unwrap();
        assert!(k.read_back().await.unwrap().is_empty());
        for what in ["-4 route show table all", "-4 rule show", "-6 rule show"] {
            let out = node.ip_output(what);
            assert!(!out.contains("proto 135"), "{what}: {out}");
        }
    }
}

/// The background reconcile reads the kernel's routes from its bytes, keeping only its own:
/// among foreign routes of every shape (seg6 of another mode, IPv4, multipath, a route
/// preference, its protocol in a table it does not own) it removes its stale and multipath
/// routes, writes the missing one, corrects a wrong peer and leaves every foreign route as
/// it was. Both ways of reading the dump agree on what they saw. Both backends restart by
/// assuming their stored state and reconciling later: seg6's routes outlive the daemon, and
/// so do the userspace tunnel's pairs and the routes into them, which it takes over.
#[tokio::test]
async fn a_reconcile_among_foreign_routes_fixes_only_its_own() {
    let n = Node::new("foreign").await;
    n.ip("link add v0 type veth peer name v1");
    n.ip("link set v0 up");
    n.ip("link set v1 up");
    n.addr("v0", "2001:db8:e::1", 64).await;
    n.ip("addr add 10.1.0.1/24 dev v0");
    let v0 = n.index("v0").await;
    let settings = Settings::new(v0, 1500);
    let tunnel = tunnel_under_test(&n.nl).await;
    let dp = Datapath::open(mode(tunnel), n.nl.clone(), settings.clone())
        .await
        .unwrap();
    if tunnel == Tunnel::Tun {
        // Its devices send from the local tunnel end (and seg6's termination routes would be
        // two more routes of its own in the dump).
        dp.prepare_termination(Termination {
            local: a("2001:db8:e::1"),
            ifindex: v0,
        })
        .await
        .unwrap();
    }
    let (kept, stale, wrong, missing) = (
        net("2001:db8:101::/64"),
        net("2001:db8:102::/64"),
        net("2001:db8:103::/64"),
        net("2001:db8:104::/64"),
    );
    let v4: ipnet::Ipv4Net = "198.51.100.7/32".parse().unwrap();
    let (mag, other) = (a("2001:db8:e::2"), a("2001:db8:e::3"));
    for c in [
        Change::SetDownlink {
            prefix: kept,
            peer: mag,
        },
        Change::SetDownlink {
            prefix: stale,
            peer: mag,
        },
        Change::SetDownlink {
            prefix: wrong,
            peer: mag,
        },
        Change::SetDownlink4 {
            prefix: v4,
            peer: mag,
        },
    ] {
        dp.apply(&[c]).await.unwrap();
    }
    // A seg6 route of another mode only where the kernel can make one.
    let foreign_seg6 = datapath::probe_seg6(&n.nl).await.unwrap();
    if foreign_seg6 {
        n.ip(
            "-6 route add 2001:db8:f1::/64 encap seg6 mode encap segs 2001:db8::9 dev v0 proto \
             static",
        );
    }
    let foreign = [
        "-6 route add 2001:db8:f2::/64 dev v0 proto 135 table 100",
        "-6 route add 2001:db8:f4::/64 dev v0 pref high proto static",
        "-6 route add 2001:db8:f5::/64 via 2001:db8:e::2 dev v0 proto 135 metric 1000",
        "-4 route add 10.2.0.0/24 via 10.1.0.2 dev v0 proto static",
        "-6 route add 2001:db8:f3::/64 proto 135 metric 1000 nexthop via 2001:db8:e::2 dev v0 \
         nexthop via 2001:db8:e::3 dev v0",
    ];
    for f in foreign {
        n.ip(f);
    }
    let mut stored = dp.state().await;
    stored.routes.remove(&stale);
    stored
        .routes
        .insert(wrong, PrefixRoute::Tunnel { peer: other });
    stored
        .routes
        .insert(missing, PrefixRoute::Tunnel { peer: mag });

    let seen = datapath::bench::dump_in_place(&n.nl, settings.route_protocol)
        .await
        .unwrap();
    let oracle = datapath::bench::dump_with_netlink_packet_route(&n.nl, settings.route_protocol)
        .await
        .unwrap();
    // kept, stale, wrong, v4, and the protocol-135 foreign ones (table 100, via, multipath).
    assert_eq!((seen, oracle), (7, 7));

    // The daemon stops; what it made stays (seg6's routes; the userspace tunnel's pairs and
    // the routes into them).
    drop(dp);
    let restarted = Datapath::open_without_routes(mode(tunnel), n.nl.clone(), settings)
        .await
        .unwrap();
    assert!(restarted.reconciles_later());
    restarted.assume(stored.clone()).await.unwrap();
    let report = restarted.reconcile_pending().await.unwrap();
    assert_eq!(
        report.routes.removed, 3,
        "stale, the gateway route and the multipath one: {report:?}"
    );
    assert_eq!(report.routes.added, 2, "missing and wrong: {report:?}");
    assert_eq!(
        report.links.added, 0,
        "the pairs are taken over: {report:?}"
    );
    let Datapath::Kernel(k) = &restarted else {
        panic!("a kernel backend")
    };
    assert_eq!(k.read_back().await.unwrap(), stored);
    let all = n.routes("-6 route show table all");
    let mut kept = vec!["2001:db8:f2::/64", "2001:db8:f4::/64"];
    if foreign_seg6 {
        kept.push("2001:db8:f1::/64");
    }
    for kept in kept {
        assert!(all.contains(kept), "{kept} kept: {all}");
    }
    for gone in ["2001:db8:f3::/64", "2001:db8:f5::/64", "2001:db8:102::/64"] {
        assert!(!all.contains(gone), "{gone} removed: {all}");
    }
    assert!(n.routes("-4 route").contains("10.2.0.0/24"));
    assert!(restarted.reconcile_pending().await.unwrap().is_noop());
    assert!(restarted.reconcile(&stored).await.unwrap().is_noop());
}

/// A lab whose MAG runs the userspace tunnel with its settings changed by `tweak`; `None`
/// (and a note naming `test`) when the lab's tunnel is not the userspace one.
async fn tun_lab_with(test: &str, tweak: impl FnOnce(&mut Settings)) -> Option<Lab> {
    let mut lab = lab(1500).await;
    if lab.tunnel != Tunnel::Tun {
        note(&format!(
            "{test}: tun only, not run over {}",
            name(lab.tunnel)
        ));
        return None;
    }
    lab.mag_dp = Datapath::None;
    let mut settings = Settings::resolve(&lab.mag.nl, Some("t0"), a(MAG), None)
        .await
        .unwrap();
    tweak(&mut settings);
    lab.mag_dp = Datapath::open(mode(lab.tunnel), lab.mag.nl.clone(), settings)
        .await
        .unwrap();
    Some(lab)
}

/// tun only. A device the backend closes goes when the last descriptor of it closes; a
/// process forked meanwhile (by the daemon, or by any thread of it) holds a copy of every
/// descriptor until it executes its program. When a peer's device lingering without routes
/// gives its slot (its name) to another peer, the backend closes it and makes the new one at
/// once under the same name, which the kernel refused (EBUSY) while the old device stayed,
/// and the uplink was lost: the backend deletes the device it closes. Two slots, so that
/// the uplink moving to a third peer and back to the LMA takes an idle device's name twice.
#[tokio::test]
#[allow(unsafe_code)]
async fn a_tun_device_name_is_reused_while_the_old_device_is_held() {
    use std::os::unix::process::CommandExt;
    use std::time::Duration;
    let Some(lab) = tun_lab_with(
        "a_tun_device_name_is_reused_while_the_old_device_is_held",
        |s| s.max_peers = 2,
    )
    .await
    else {
        return;
    };
    lab.program().await;
    let lma_device = lab.mag.index("pmip6t0").await;
    // A child that holds a copy of every descriptor of this process for a second before it
    // runs `true`.
    let mut cmd = std::process::Command::new("true");
    // SAFETY: the closure only sleeps (nanosleep is async-signal-safe).
    unsafe {
        cmd.pre_exec(|| {
            std::thread::sleep(Duration::from_secs(1));
            Ok(())
        })
    };
    let child = std::thread::spawn(move || cmd.status());
    std::thread::sleep(Duration::from_millis(200));
    lab.mag_dp
        .add_uplink(net(HNP), a("2001:db8::3"))
        .await
        .unwrap();
    // Slot 1, then the LMA's idle device's slot 0; back to the LMA in ::3's slot 1.
    let third = lab.mag_dp.add_uplink(net(HNP), a("2001:db8::4")).await;
    let back = lab.mag_dp.add_uplink(net(HNP), a(LMA)).await;
    assert!(child.join().unwrap().unwrap().success());
    third.expect("the uplink moves to a third peer");
    back.expect("the uplink moves back to the LMA");
    let links = lab.mag.ip_output("link show");
    assert!(
        links.contains("alias pmip-tun 2001:db8::2 2001:db8::4"),
        "{links}"
    );
    let t1 = lab.mag.ip_output("link show pmip6t1");
    assert!(t1.contains(&format!("alias pmip-tun {MAG} {LMA}")), "{t1}");
    assert_ne!(lab.mag.index("pmip6t1").await, lma_device);
    let mn = lab.mn.udp(MN, 7009);
    let cn = lab.cn.udp(CN, 7009);
    assert!(send_and_receive(&mn, &cn, 64).is_some());
}

/// tun only. A peer's device outlives its last route by the linger, no route into it, and
/// goes by itself afterwards (closed and deleted off the path of any change); the peer's
/// next route makes it again.
#[tokio::test]
async fn an_idle_tun_device_lingers_then_goes() {
    use std::time::Duration;
    let Some(lab) = tun_lab_with("an_idle_tun_device_lingers_then_goes", |s| {
        s.tun_linger = Duration::from_millis(300)
    })
    .await
    else {
        return;
    };
    lab.program().await;
    lab.mag_dp
        .add_uplink(net(HNP), a("2001:db8::3"))
        .await
        .unwrap();
    // Right after the move the LMA's device is still there, without a route.
    let t0 = lab.mag.ip_output("link show pmip6t0");
    assert!(t0.contains(&format!("alias pmip-tun {MAG} {LMA}")), "{t0}");
    let all = lab.mag.routes("-6 route show table all");
    assert!(!all.contains("dev pmip6t0 proto 135"), "{all}");
    // Then it goes; the other peer's carries on.
    tokio::time::sleep(Duration::from_millis(400)).await;
    lab.mag.wait_until_no_link("pmip6t0");
    assert!(lab.mag.ip_output("link show").contains("pmip6t1"));
    lab.mag_dp.add_uplink(net(HNP), a(LMA)).await.unwrap();
    let mn = lab.mn.udp(MN, 7010);
    let cn = lab.cn.udp(CN, 7010);
    assert!(send_and_receive(&mn, &cn, 64).is_some());
}

/// Sends payloads 0, 1 and 2 from `from` to `to`'s address; that address.
fn send_three(from: &std::net::UdpSocket, to: &std::net::UdpSocket) -> std::net::SocketAddr {
    let to = to.local_addr().unwrap();
    for i in 0..3u8 {
        from.send_to(&[i; 8], to).unwrap();
    }
    to
}

/// End markers (`datapath::marker`), through the kernel. The MAG holds what the LMA tunnels
/// to the node's prefix; the LMA's marker, sent after the packets routed before it, ends the
/// hold, and the held packets reach the node in order; a hold whose marker never comes lets
/// its packets go when it expires. Only the userspace tunnel can hold: over seg6 the packets
/// pass at once and the marker is sent all the same.
#[tokio::test]
async fn an_end_marker_ends_the_hold_and_the_held_packets_follow_in_order() {
    use std::time::{Duration, Instant};
    let lab = lab(1500).await;
    lab.program().await;
    let mn = lab.mn.udp(MN, 7011);
    let cn = lab.cn.udp(CN, 7011);
    // The path works (and neighbour discovery is done) before anything is held.
    assert!(send_and_receive(&cn, &mn, 16).is_some());
    while receive(&mn).is_some() {}
    let hold = |wait: Duration| Change::HoldForEndMarker {
        prefix: net(HNP).into(),
        marker: net(HNP).into(),
        from: a(LMA),
        wait,
    };
    lab.mag_dp
        .apply(&[hold(Duration::from_secs(30))])
        .await
        .unwrap();
    let to = send_three(&cn, &mn);
    let holds = lab.tunnel == Tunnel::Tun;
    if holds {
        assert!(receive(&mn).is_none(), "held until the marker");
    } else {
        note(&format!(
            "end markers: the hold is tun only, not run over {}",
            name(lab.tunnel)
        ));
    }
    lab.lma_dp
        .apply(&[Change::SendEndMarker {
            prefix: net(HNP).into(),
            peer: a(MAG),
        }])
        .await
        .unwrap();
    let got: Vec<u8> = (0..3)
        .filter_map(|_| receive(&mn))
        .map(|r| r.payload[0])
        .collect();
    assert_eq!(got, vec![0, 1, 2], "all three, in order");
    // The marker itself is not the node's: nothing else came.
    assert!(receive(&mn).is_none());
    let (Some(lma_c), Some(mag_c)) = (
        lab.lma_dp.tun_counters_shared(),
        lab.mag_dp.tun_counters_shared(),
    ) else {
        return;
    };
    use std::sync::atomic::Ordering::Relaxed;
    assert_eq!(lma_c.end_markers_sent.load(Relaxed), 1);
    assert_eq!(mag_c.end_markers_received.load(Relaxed), 1);
    assert_eq!(mag_c.held_for_end_marker.load(Relaxed), 3);

    // No marker this time: the hold expires and lets the packet go.
    lab.mag_dp
        .apply(&[hold(Duration::from_millis(300))])
        .await
        .unwrap();
    let sent = Instant::now();
    cn.send_to(&[9; 8], to).unwrap();
    let r = (0..15)
        .find_map(|_| receive(&mn))
        .expect("let go when the hold expired");
    assert_eq!(r.payload, vec![9; 8]);
    assert!(
        sent.elapsed() >= Duration::from_millis(250),
        "{:?}",
        sent.elapsed()
    );
    assert_eq!(mag_c.holds_without_marker.load(Relaxed), 1);
}

/// An IPv4 home address's ICMP counters in `node`'s namespace: messages in, messages out.
fn icmp4_counts(node: &Node) -> (u64, u64) {
    let out = node
        .ns
        .command("cat")
        .unwrap()
        .arg("/proc/net/snmp")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let mut rows = text.lines().filter(|l| l.starts_with("Icmp: "));
    let (names, values) = (rows.next().unwrap(), rows.next().unwrap());
    let value = |name: &str| -> u64 {
        let i = names.split_whitespace().position(|n| n == name).unwrap();
        values.split_whitespace().nth(i).unwrap().parse().unwrap()
    };
    (value("InMsgs"), value("OutMsgs"))
}

/// End markers of an IPv4-only node (RFC 5844: no IPv6 prefix to mark): the marker is an
/// IPv4 packet to its home address, through the IPv4-in-IPv6 tunnel. It ends the hold of the
/// home address and the held packets follow in order; a marker that finds no hold reaches the
/// node, which drops it and answers nothing (an unknown ICMP type, RFC 1122 §3.2.2).
#[tokio::test]
async fn an_ipv4_home_addresss_end_marker_ends_its_hold_and_the_node_ignores_a_stray_one() {
    use std::time::Duration;
    let lab = lab4().await;
    let mn = lab.mn.udp4(MN4, 7012);
    let cn = lab.cn.udp4(CN4, 7012);
    assert!(send_and_receive4(&cn, &mn, 16).is_some());
    let mut buf = [0u8; 64];
    while mn.recv_from(&mut buf).is_ok() {}
    let home: ipnet::IpNet = net4(&format!("{MN4}/32")).into();
    lab.mag_dp
        .apply(&[Change::HoldForEndMarker {
            prefix: home,
            marker: home,
            from: a(LMA),
            wait: Duration::from_secs(30),
        }])
        .await
        .unwrap();
    send_three(&cn, &mn);
    let holds = lab.tunnel == Tunnel::Tun;
    if holds {
        assert!(mn.recv_from(&mut buf).is_err(), "held until the marker");
    } else {
        note(&format!(
            "IPv4 end markers: the hold is tun only, not run over {}",
            name(lab.tunnel)
        ));
    }
    let marker = Change::SendEndMarker {
        prefix: home,
        peer: a(MAG),
    };
    let icmp_before = icmp4_counts(&lab.mn);
    lab.lma_dp
        .apply(std::slice::from_ref(&marker))
        .await
        .unwrap();
    let got: Vec<u8> = (0..3)
        .filter_map(|_| mn.recv_from(&mut buf).ok().map(|_| buf[0]))
        .collect();
    assert_eq!(got, vec![0, 1, 2], "all three, in order");
    assert!(
        mn.recv_from(&mut buf).is_err(),
        "the marker is not the node's"
    );
    if holds {
        assert_eq!(
            icmp4_counts(&lab.mn),
            icmp_before,
            "the MAG took the marker"
        );
        let (Some(lma_c), Some(mag_c)) = (
            lab.lma_dp.tun_counters_shared(),
            lab.mag_dp.tun_counters_shared(),
        ) else {
            panic!("the userspace tunnel counts");
        };
        use std::sync::atomic::Ordering::Relaxed;
        assert_eq!(lma_c.end_markers_sent.load(Relaxed), 1);
        assert_eq!(mag_c.end_markers_received.load(Relaxed), 1);
        assert_eq!(mag_c.held_for_end_marker.load(Relaxed), 3);
    }

    // No hold: the marker goes on to the node, which takes it in and sends nothing back.
    let (in_before, out_before) = icmp4_counts(&lab.mn);
    lab.lma_dp.apply(&[marker]).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    while icmp4_counts(&lab.mn).0 == in_before && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (in_after, out_after) = icmp4_counts(&lab.mn);
    assert_eq!(in_after, in_before + 1, "the node got the stray marker");
    assert_eq!(out_after, out_before, "and answered nothing");
    assert!(mn.recv_from(&mut buf).is_err());
}

/// tun only, where the kernel has nexthop objects. The routes into a peer's device name the
/// device's nexthop object; a reconcile makes an object someone removed again (with the
/// routes the kernel removed with it), makes a device someone took down again, and removes
/// one of its own that no slot uses; a
/// backend refuses to open or reconcile where another owner holds an object under a slot's
/// id, which making the slot's object would replace.
#[tokio::test]
async fn nexthop_objects_are_reconciled_and_another_owners_are_refused() {
    let test = "nexthop_objects_are_reconciled_and_another_owners_are_refused";
    let Some(lab) = tun_lab_with(test, |_| {}).await else {
        return;
    };
    let has_nexthops = |n: &Node| {
        n.ns.command("ip")
            .unwrap()
            .args(["nexthop", "show"])
            .status()
            .is_ok_and(|s| s.success())
    };
    if !has_nexthops(&lab.mag) {
        note(&format!(
            "{test}: not run, this kernel has no nexthop objects"
        ));
        return;
    }
    lab.program().await;
    let mn = lab.mn.udp(MN, 7011);
    let cn = lab.cn.udp(CN, 7011);
    assert!(send_and_receive(&mn, &cn, 64).is_some());
    // Someone removes the LMA's object (the kernel takes the uplink's default route with
    // it) and leaves one of this backend's own that no slot uses.
    lab.mag.ip("nexthop del id 13502");
    assert!(
        !lab.mag
            .ip_output("-6 route show table 13502")
            .contains("default")
    );
    lab.mag.ip("-6 nexthop add id 13509 dev t0 proto 135");
    let state = lab.mag_dp.state().await;
    lab.mag_dp.reconcile(&state).await.unwrap();
    let nexthops = lab.mag.ip_output("nexthop show");
    assert!(
        nexthops.contains("id 13502 dev pmip6t0 scope link proto 135"),
        "{nexthops}"
    );
    assert!(!nexthops.contains("id 13509"), "{nexthops}");
    let table = lab.mag.ip_output("-6 route show table 13502");
    assert!(table.contains("default nhid 13502 dev pmip6t0"), "{table}");
    assert!(send_and_receive(&mn, &cn, 64).is_some());
    // Another owner's object (protocol static) under slot 7's id.
    lab.mag.ip("-6 nexthop add id 13509 dev t0 proto 4");
    let settings = Settings::resolve(&lab.mag.nl, Some("t0"), a(MAG), None)
        .await
        .unwrap();
    let e = Datapath::open(mode(Tunnel::Tun), lab.mag.nl.clone(), settings)
        .await
        .expect_err("another owner's object under a slot's id");
    assert!(
        e.to_string()
            .contains("nexthop object 13509 is another owner's"),
        "{e}"
    );
    // A reconcile refuses too, and leaves it; without it, it goes on.
    let e = lab.mag_dp.reconcile(&state).await.unwrap_err();
    assert!(e.to_string().contains("another owner's"), "{e}");
    assert!(lab.mag.ip_output("nexthop show").contains("id 13509"));
    lab.mag.ip("nexthop del id 13509");
    lab.mag_dp.reconcile(&state).await.unwrap();
    assert!(send_and_receive(&mn, &cn, 64).is_some());
    // Someone takes the LMA's device down: the kernel removes its object and the routes
    // into it, and refuses an object on a device that is down; a reconcile makes the device
    // again.
    lab.mag.ip("link set pmip6t0 down");
    assert!(!lab.mag.ip_output("nexthop show").contains("id 13502"));
    lab.mag_dp.reconcile(&state).await.unwrap();
    let nexthops = lab.mag.ip_output("nexthop show");
    assert!(
        nexthops.contains("id 13502 dev pmip6t0 scope link proto 135"),
        "{nexthops}"
    );
    assert!(send_and_receive(&mn, &cn, 64).is_some());
}
