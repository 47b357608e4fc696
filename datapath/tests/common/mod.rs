//! Namespaces, links, sockets and a packet capture for the tests (run as root).
#![allow(dead_code)]

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use datapath::netns::{NetNs, OwnedNetNs};
use datapath::{Mode, Netlink, Tunnel};
use nix::sys::socket::{self, sockopt};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A namespace name no other test (or test process) uses.
pub fn unique(tag: &str) -> String {
    format!(
        "dptest-{}-{}-{tag}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

pub fn a(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

pub fn net(s: &str) -> ipnet::Ipv6Net {
    s.parse().unwrap()
}

/// The environment variable that picks the tunnel backend the lab tests run over: `seg6` or
/// `tun`. Unset, they run over seg6 where the kernel has it, else over tun.
pub const TUNNEL_VAR: &str = "PMIP_TEST_TUNNEL";

/// The tunnel backend the tests run over: seg6 when the kernel of `nl`'s namespace can make
/// seg6 lightweight tunnels, else the userspace tunnel (tun); [`TUNNEL_VAR`] may force one.
/// Says on stderr (once per test program) when seg6 is not what runs.
pub async fn tunnel_under_test(nl: &Netlink) -> Tunnel {
    let has_seg6 = datapath::probe_seg6(nl).await.expect("probe seg6");
    match std::env::var(TUNNEL_VAR).as_deref() {
        Ok("seg6") => {
            assert!(
                has_seg6,
                "{TUNNEL_VAR}=seg6, but this kernel lacks seg6 lightweight tunnels \
                 (CONFIG_IPV6_SEG6_LWTUNNEL)"
            );
            Tunnel::Seg6
        }
        Ok("tun") => {
            note_once(&format!(
                "the seg6 backend was not run: {TUNNEL_VAR}=tun; the tests ran over tun"
            ));
            Tunnel::Tun
        }
        Ok(other) if !other.is_empty() => panic!("{TUNNEL_VAR}={other}: seg6 or tun"),
        _ if has_seg6 => Tunnel::Seg6,
        _ => {
            note_once(&format!("{SEG6_NOT_RUN}; the tests ran over tun"));
            Tunnel::Tun
        }
    }
}

/// Why the seg6 backend did not run here.
pub const SEG6_MISSING: &str =
    "this kernel lacks seg6 lightweight tunnels (CONFIG_IPV6_SEG6_LWTUNNEL)";

/// What the tests say when the kernel lacks seg6.
pub const SEG6_NOT_RUN: &str = "the seg6 backend was not run: this kernel lacks seg6 \
                                lightweight tunnels (CONFIG_IPV6_SEG6_LWTUNNEL)";

/// The mode that opens `tunnel`.
pub fn mode(tunnel: Tunnel) -> Mode {
    match tunnel {
        Tunnel::Seg6 => Mode::Seg6,
        Tunnel::Ip6tnl => Mode::Ip6tnl,
        Tunnel::Tun => Mode::Tun,
    }
}

/// The backend's name, as `Datapath::backend_name` says it.
pub fn name(tunnel: Tunnel) -> &'static str {
    match tunnel {
        Tunnel::Seg6 => "seg6",
        Tunnel::Ip6tnl => "ip6tnl",
        Tunnel::Tun => "tun",
    }
}

/// One line on stderr that the test harness does not capture: what was not run, and why.
pub fn note(line: &str) {
    use std::io::Write;
    let line = format!("note: {line}\n");
    let _ = std::io::stderr().write_all(line.as_bytes());
}

/// [`note`], once per test program for the same line.
pub fn note_once(line: &str) {
    static SAID: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let mut said = SAID.lock().unwrap_or_else(|e| e.into_inner());
    if !said.iter().any(|s| s == line) {
        said.push(line.to_owned());
        note(line);
    }
}

/// A namespace (deleted on drop, also when the test fails) and a netlink connection in it.
pub struct Node {
    pub nl: Netlink,
    pub ns: OwnedNetNs,
}

impl Node {
    pub async fn new(tag: &str) -> Node {
        let ns = NetNs::create(&unique(tag)).expect("create namespace");
        let nl = Netlink::connect_in(&ns).expect("netlink in namespace");
        nl.set_link_up(1, true).await.expect("lo up");
        // Addresses are usable at once: no duplicate address detection anywhere.
        nl.set_sysctl("net/ipv6/conf/all/accept_dad", "0").unwrap();
        nl.set_sysctl("net/ipv6/conf/default/accept_dad", "0")
            .unwrap();
        Node { nl, ns }
    }

    pub async fn index(&self, link: &str) -> u32 {
        self.nl.link_index(link).await.expect("link index")
    }

    pub async fn addr(&self, link: &str, addr: &str, len: u8) {
        let i = self.index(link).await;
        self.nl
            .add_address(i, a(addr), len)
            .await
            .expect("add address");
    }

    pub async fn route(&self, dst: &str, via: Option<&str>, link: &str) {
        let i = self.index(link).await;
        self.nl
            .add_route(net(dst), via.map(a), i)
            .await
            .expect("add route");
    }

    pub fn udp(&self, addr: &str, port: u16) -> UdpSocket {
        udp(&self.ns, a(addr), port)
    }

    /// Runs `ip ARGS` (iproute2) in the namespace, for what the crate does not make itself
    /// (IPv4 addresses and routes of the hosts around the datapath).
    pub fn ip(&self, args: &str) {
        let out = self
            .ns
            .command("ip")
            .unwrap()
            .args(args.split_whitespace())
            .output()
            .expect("run ip");
        assert!(
            out.status.success(),
            "ip {args}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Output of `ip ARGS` in the namespace.
    pub fn ip_output(&self, args: &str) -> String {
        let out = self
            .ns
            .command("ip")
            .unwrap()
            .args(args.split_whitespace())
            .output()
            .expect("run ip");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Output of `ip ROUTE-ARGS` (a route listing) with the nexthop objects' ids left out:
    /// a route into a tunnel link reads `PREFIX dev LINK ...` whether it names the link's
    /// nexthop object (`nhid N dev LINK`, where the kernel has them) or has its own.
    pub fn routes(&self, args: &str) -> String {
        self.ip_output(args)
            .split(' ')
            .scan(false, |skip, word| {
                let keep = !*skip && word != "nhid";
                *skip = word == "nhid";
                Some(keep.then_some(word))
            })
            .flatten()
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Waits (up to 3 s) until the namespace has no link whose name starts with `prefix`,
    /// and panics if one stays (a link may take a moment to go).
    pub fn wait_until_no_link(&self, prefix: &str) {
        let t = Instant::now();
        let has = |out: &str| {
            out.lines()
                .filter_map(|l| l.split(": ").nth(1))
                .any(|name| name.starts_with(prefix))
        };
        loop {
            let links = self.ip_output("-o link show");
            if !has(&links) {
                return;
            }
            assert!(
                t.elapsed() < Duration::from_secs(3),
                "links {prefix}* stay: {links}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// An IPv4 UDP socket with a 200 ms read timeout.
    pub fn udp4(&self, addr: &str, port: u16) -> UdpSocket {
        let addr: Ipv4Addr = addr.parse().unwrap();
        let s = self
            .ns
            .run(move || UdpSocket::bind(SocketAddrV4::new(addr, port)))
            .unwrap()
            .expect("bind");
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        s
    }
}

/// [`send_and_receive`] for IPv4 sockets: the payload and where it came from.
pub fn send_and_receive4(from: &UdpSocket, to: &UdpSocket, len: usize) -> Option<SocketAddr> {
    let dst = to.local_addr().unwrap();
    let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    let mut buf = vec![0u8; 65536];
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        from.send_to(&payload, dst).expect("send");
        if let Ok((n, src)) = to.recv_from(&mut buf)
            && buf[..n] == payload[..]
        {
            return Some(src);
        }
    }
    None
}

/// A veth pair `an` in `a` and `bn` in `b`, both ends at `mtu` and up.
pub async fn link(a: &Node, an: &str, b: &Node, bn: &str, mtu: u32) {
    a.nl.add_veth(an, bn, &b.ns).await.expect("veth");
    for (node, name) in [(a, an), (b, bn)] {
        let i = node.index(name).await;
        node.nl.set_link_mtu(i, mtu).await.expect("mtu");
        node.nl.set_link_up(i, true).await.expect("up");
    }
}

/// A UDP socket bound in `ns`, that never fragments (an oversize send fails instead).
pub fn udp(ns: &NetNs, addr: Ipv6Addr, port: u16) -> UdpSocket {
    let s = ns
        .run(move || UdpSocket::bind(SocketAddrV6::new(addr, port, 0, 0)))
        .unwrap()
        .expect("bind");
    socket::setsockopt(&s, sockopt::Ipv6DontFrag, &true).unwrap();
    socket::setsockopt(&s, sockopt::Ipv6RecvPacketInfo, &true).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    s
}

/// A datagram received: payload, source, and the link it came in by.
#[derive(Debug)]
pub struct Received {
    pub payload: Vec<u8>,
    pub from: SocketAddr,
    pub ifindex: u32,
}

/// Sends `len` payload bytes (retrying while neighbour discovery settles) until `to`
/// receives them or 3 s pass.
pub fn send_and_receive(from: &UdpSocket, to: &UdpSocket, len: usize) -> Option<Received> {
    let dst = to.local_addr().unwrap();
    let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        from.send_to(&payload, dst).expect("send");
        if let Some(r) = receive(to)
            && r.payload == payload
        {
            return Some(r);
        }
    }
    None
}

/// One datagram, or `None` after the socket's read timeout.
pub fn receive(s: &UdpSocket) -> Option<Received> {
    let mut buf = vec![0u8; 65536];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut cmsg = nix::cmsg_space!(libc::in6_pktinfo);
    let msg = socket::recvmsg::<socket::SockaddrIn6>(
        std::os::fd::AsRawFd::as_raw_fd(s),
        &mut iov,
        Some(&mut cmsg),
        socket::MsgFlags::empty(),
    )
    .ok()?;
    let mut ifindex = 0;
    for c in msg.cmsgs().ok()? {
        if let socket::ControlMessageOwned::Ipv6PacketInfo(info) = c {
            ifindex = info.ipi6_ifindex;
        }
    }
    let from = SocketAddr::V6(SocketAddrV6::from(msg.address?));
    let n = msg.bytes;
    Some(Received {
        payload: buf[..n].to_vec(),
        from,
        ifindex,
    })
}

/// Everything that crosses one link of a namespace (both directions), read with AF_PACKET.
pub struct Capture {
    fd: OwnedFd,
    ifindex: usize,
}

impl Capture {
    pub async fn start(node: &Node, link: &str) -> Capture {
        let ifindex = node.index(link).await as usize;
        let fd = node
            .ns
            .run(|| {
                socket::socket(
                    socket::AddressFamily::Packet,
                    socket::SockType::Raw,
                    socket::SockFlag::empty(),
                    socket::SockProtocol::EthAll,
                )
            })
            .unwrap()
            .expect("AF_PACKET socket");
        socket::setsockopt(
            &fd,
            sockopt::ReceiveTimeout,
            &nix::sys::time::TimeVal::new(0, 200_000),
        )
        .unwrap();
        Capture { fd, ifindex }
    }

    /// The IPv6 packets (Ethernet payloads) seen so far on the link.
    pub fn ipv6_packets(&self) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 65536];
        while let Ok((n, Some(addr))) = socket::recvfrom::<socket::LinkAddr>(
            std::os::fd::AsRawFd::as_raw_fd(&self.fd.as_fd()),
            &mut buf,
        ) {
            if addr.ifindex() == self.ifindex && n > 14 && buf[12..14] == [0x86, 0xdd] {
                out.push(buf[14..n].to_vec());
            }
        }
        out
    }
}

/// Writes `packets` (IP packets without a link-layer header) as a pcap file of link type
/// LINKTYPE_RAW (101), for `tshark -r`.
pub fn write_pcap(path: &std::path::Path, packets: &[Vec<u8>]) {
    let mut f = Vec::new();
    f.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    f.extend_from_slice(&2u16.to_le_bytes());
    f.extend_from_slice(&4u16.to_le_bytes());
    f.extend_from_slice(&[0; 8]);
    f.extend_from_slice(&65535u32.to_le_bytes());
    f.extend_from_slice(&101u32.to_le_bytes());
    for p in packets {
        f.extend_from_slice(&[0; 8]);
        f.extend_from_slice(&(p.len() as u32).to_le_bytes());
        f.extend_from_slice(&(p.len() as u32).to_le_bytes());
        f.extend_from_slice(p);
    }
    std::fs::write(path, f).unwrap();
}

/// An IPv4 header's fields the tests look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ipv4Header {
    pub total_len: usize,
    pub protocol: u8,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
}

pub fn ipv4_header(p: &[u8]) -> Option<Ipv4Header> {
    if p.len() < 20 || p[0] >> 4 != 4 {
        return None;
    }
    let addr = |at: usize| Ipv4Addr::new(p[at], p[at + 1], p[at + 2], p[at + 3]);
    Some(Ipv4Header {
        total_len: usize::from(u16::from_be_bytes([p[2], p[3]])),
        protocol: p[9],
        src: addr(12),
        dst: addr(16),
    })
}

/// An IPv6 header's fields the tests look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ipv6Header {
    pub payload_len: usize,
    pub next_header: u8,
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
}

pub fn ipv6_header(p: &[u8]) -> Option<Ipv6Header> {
    if p.len() < 40 || p[0] >> 4 != 6 {
        return None;
    }
    let addr = |at: usize| Ipv6Addr::from(<[u8; 16]>::try_from(&p[at..at + 16]).unwrap());
    Some(Ipv6Header {
        payload_len: usize::from(u16::from_be_bytes([p[4], p[5]])),
        next_header: p[6],
        src: addr(8),
        dst: addr(24),
    })
}
