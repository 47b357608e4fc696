//! Where a MAG holds a node's downlink during a fast handover (RFC 5949 §4.1: "packets ...
//! MAY be buffered at the new MAG"): a TUN device owned by the daemon. A buffered prefix is
//! routed into the TUN device; the daemon reads each packet and queues it per prefix, bounded
//! in packets and bytes (the oldest is dropped first, and counted). A flush writes the queue
//! back into the TUN device in arrival order, and the kernel routes the packets along the
//! prefix's route as it is by then: the node's new access link, or the tunnel to the new MAG.
//!
//! A previous MAG's buffer relays its queue to the new MAG through the tunnel, in order, and
//! relays whatever still reaches the device while the prefix's route moves to the kernel's
//! tunnel to that MAG; from then on the kernel forwards, and a packet the LMA sent the
//! previous MAG never waits for this daemon while the LMA's later packets go to the new MAG
//! directly.
//!
//! A flush can instead hand the packets straight to the node on its link (an Ethernet frame
//! to its MAC, sent on the access link), and keep doing that for whatever else still reaches
//! the device, until the prefix gets its own route: then nothing that arrives during the flush
//! can overtake what was held.
//!
//! The end of such a delivery is where the kernel would otherwise win a race: once the prefix's
//! route points at the access link, the kernel hands new packets to the node at once, while a
//! packet that reached the device just before the route changed waits for this daemon to be
//! scheduled (milliseconds on a loaded machine; 34 ms was seen). So the switch goes through a hold
//! ([`Buffer::hold_new_packets`]): a route of the prefix through a gateway nobody answers for,
//! preferred to every other route of the prefix, makes the kernel queue new packets on that
//! gateway's neighbor entry; the device is then drained to the node; then [`Buffer::release_held`]
//! gives the gateway the node's MAC, and the kernel sends its queue after what the device held, in
//! order.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv6Addr};

use datapath::Change;
use ipnet::{IpNet, Ipv6Net};
use pmip::output::DatapathCommand;
use tokio::io::unix::AsyncFd;

/// Name of the buffer device.
pub const DEVICE: &str = "pmipbuf0";
/// MTU of the buffer device: large enough for anything routed into it.
const MTU: u32 = 65_000;

/// Bounds of one node's queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub packets: usize,
    pub bytes: usize,
}

/// Counters, for metrics and the Stats RPC.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BufferStats {
    /// Packets held right now.
    pub held: u64,
    pub buffered: u64,
    pub flushed: u64,
    /// Dropped to stay within the limits (oldest first).
    pub dropped_overflow: u64,
    /// Dropped on a discard (a failed handover).
    pub discarded: u64,
    /// Packets that reached the device for no buffered prefix.
    pub stray: u64,
}

#[derive(Debug, Default)]
struct Queue {
    packets: VecDeque<Vec<u8>>,
    bytes: usize,
    /// Packets go straight to this node (link index, MAC) instead of waiting.
    deliver: Option<(u32, [u8; 6])>,
    /// Packets go through the tunnel to this MAG instead of waiting.
    relay: Option<Ipv6Addr>,
    /// Started by the kernel, not by a command: the prefix's access link lost its carrier
    /// and its packets came by the fallback route ([`Buffer::add_fallback`]) before the MAG
    /// learned that the node left.
    unasked: bool,
}

/// The buffer device and its queues.
#[derive(Debug)]
pub struct Buffer {
    fd: AsyncFd<File>,
    ifindex: u32,
    /// Sends frames to nodes; `own_mac` is their source (the domain's fixed MAG MAC).
    packet: socket2::Socket,
    /// Sends IPv6-in-IPv6 (RFC 2473) to another MAG: the kernel adds the outer header.
    tunnel: socket2::Socket,
    /// Sends IPv4-in-IPv6 (an IPv4 home address's packets, RFC 5844 §3.1.3, RFC 5949 §4.3).
    tunnel4: socket2::Socket,
    own_mac: [u8; 6],
    /// For the hold routes and neighbor entries of [`Buffer::hold_new_packets`].
    nl: datapath::Netlink,
    limits: Limits,
    queues: HashMap<IpNet, Queue>,
    /// Prefixes with a fallback route into the device ([`Buffer::follow_routes`]), and the
    /// link their own route goes to (an access link, or this device once they are buffered).
    fallbacks: HashMap<Ipv6Net, u32>,
    /// Access links whose linkdown routes the kernel ignores (set once per link).
    ignoring_linkdown: std::collections::HashSet<u32>,
    /// Access links whose sysctl could not be written (warned about once).
    refused_linkdown: std::collections::HashSet<u32>,
    stats: BufferStats,
}

fn tun(name: &str) -> io::Result<File> {
    datapath::tun::open_device(name, true)
}

#[allow(unsafe_code)]
fn register(f: File) -> io::Result<AsyncFd<File>> {
    // SAFETY: `File` owns its descriptor until dropped and always returns the same one.
    unsafe { AsyncFd::register(f) }.map_err(|e| e.into_parts().1)
}

impl Buffer {
    /// Creates (or takes over) the buffer device and brings it up. Needs CAP_NET_ADMIN.
    pub async fn open(limits: Limits, own_mac: [u8; 6], local: Ipv6Addr) -> anyhow::Result<Buffer> {
        let f = tun(DEVICE).map_err(|e| anyhow::anyhow!("buffer device {DEVICE}: {e}"))?;
        let nl = datapath::Netlink::connect()?;
        let ifindex = nl.link_index(DEVICE).await?;
        nl.set_link_mtu(ifindex, MTU).await?;
        nl.set_link_up(ifindex, true).await?;
        Ok(Buffer {
            fd: register(f)?,
            ifindex,
            packet: crate::access::sys::send_socket()?,
            tunnel: tunnel_socket(local, libc::IPPROTO_IPV6)
                .map_err(|e| anyhow::anyhow!("IPv6-in-IPv6 socket from {local}: {e}"))?,
            tunnel4: tunnel_socket(local, libc::IPPROTO_IPIP)
                .map_err(|e| anyhow::anyhow!("IPv4-in-IPv6 socket from {local}: {e}"))?,
            own_mac,
            nl,
            limits,
            queues: HashMap::new(),
            fallbacks: Default::default(),
            ignoring_linkdown: Default::default(),
            refused_linkdown: Default::default(),
            stats: BufferStats::default(),
        })
    }

    /// The device's link index: buffered prefixes are routed onto it.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    pub fn stats(&self) -> BufferStats {
        let mut s = self.stats;
        s.held = self.queues.values().map(|q| q.packets.len() as u64).sum();
        s
    }

    /// Starts holding packets for `prefix` (its route must point at the device).
    pub fn start(&mut self, prefix: IpNet) {
        self.queues.entry(prefix).or_default().unasked = false;
    }

    /// `prefix` is on access link `ifindex`: a route of it into the device behind the link
    /// route (one metric below it), with the kernel told to ignore the link's routes while it
    /// has no carrier. When the node's radio goes, the kernel sends the prefix's packets here
    /// at once, where they wait for the MAG to learn that the node left; without it they went
    /// to the dead link (or waited on an unresolved neighbor entry and were lost) until the
    /// MAG had moved the route, 0.3-1 ms later. An access link the kernel will not ignore
    /// (neither its sysctl nor `all`'s is 1, and its own cannot be written: a read-only
    /// /proc/sys) gets no fallback: its packets would leave by the default route otherwise.
    async fn add_fallback(&mut self, prefix: Ipv6Net, ifindex: u32, metric: u32, protocol: u8) {
        // The kernel ignores a link's linkdown routes when the link's sysctl or `all`'s says
        // so: a pod whose /proc/sys is read-only can have `all` set for it.
        let all = || {
            std::fs::read_to_string("/proc/sys/net/ipv6/conf/all/ignore_routes_with_linkdown")
                .is_ok_and(|v| v.trim() == "1")
        };
        if !self.ignoring_linkdown.contains(&ifindex) && all() {
            self.ignoring_linkdown.insert(ifindex);
        }
        if !self.ignoring_linkdown.contains(&ifindex) {
            let set = async {
                let name = self.nl.link_name(ifindex).await?;
                let key = datapath::sysctl::Sysctl::new(&format!(
                    "net/ipv6/conf/{name}/ignore_routes_with_linkdown"
                ));
                self.nl.ensure_sysctl(&key, "1")
            };
            match set.await {
                Ok(_) => {
                    self.ignoring_linkdown.insert(ifindex);
                }
                Err(e) => {
                    // Said once per link: every node on it would repeat it.
                    if self.refused_linkdown.insert(ifindex) {
                        tracing::warn!(link = ifindex, error = %e, "access link: no fallback route into the buffer");
                    }
                    return;
                }
            }
        }
        match self
            .nl
            .replace_route_at(prefix, self.ifindex, metric, protocol)
            .await
        {
            Ok(()) => {
                self.fallbacks.insert(prefix, ifindex);
            }
            Err(e) => tracing::warn!(%prefix, error = %e, "fallback route into the buffer"),
        }
    }

    /// Keeps a fallback route ([`Buffer::add_fallback`]) for every IPv6 prefix whose route
    /// `changes` leave on an access link, through its buffering (its route into this device),
    /// and takes it away with that route: when the prefix moves into a tunnel or its route is
    /// removed. `metric` is one more than the datapath's.
    pub async fn follow_routes(&mut self, changes: &[Change], metric: u32, protocol: u8) {
        for c in changes {
            match *c {
                Change::SetLinkRoute {
                    prefix, ifindex, ..
                } => {
                    let prefix = prefix.trunc();
                    if ifindex == self.ifindex {
                        if let Some(on) = self.fallbacks.get_mut(&prefix) {
                            *on = ifindex;
                        }
                    } else if self.fallbacks.get(&prefix) != Some(&ifindex) {
                        self.add_fallback(prefix, ifindex, metric, protocol).await;
                    }
                }
                Change::RemoveLinkRoute { prefix, ifindex }
                    if self.fallbacks.get(&prefix.trunc()) == Some(&ifindex) =>
                {
                    self.remove_fallback(prefix.trunc(), metric, protocol).await;
                }
                Change::SetDownlink { prefix, .. } => {
                    self.remove_fallback(prefix.trunc(), metric, protocol).await;
                }
                _ => {}
            }
        }
    }

    /// `prefix` left its access link: its fallback route goes, and what the kernel put in
    /// the device for it unasked is discarded (the node was gone; nobody buffered it).
    async fn remove_fallback(&mut self, prefix: Ipv6Net, metric: u32, protocol: u8) {
        if self.fallbacks.remove(&prefix).is_none() {
            return;
        }
        if let Err(e) = self
            .nl
            .delete_route_at(prefix, self.ifindex, metric, protocol)
            .await
        {
            tracing::warn!(%prefix, error = %e, "removing the fallback route into the buffer");
        }
        let key = IpNet::V6(prefix);
        if self.queues.get(&key).is_some_and(|q| q.unasked) {
            let _ = self.discard(&key);
        }
    }

    pub fn is_buffering(&self, prefix: &IpNet) -> bool {
        self.queues.contains_key(prefix)
    }

    /// Waits until the device has packets.
    pub async fn readable(&self) -> io::Result<()> {
        let mut g = self.fd.readable().await?;
        g.clear_ready();
        Ok(())
    }

    /// Reads every packet the device holds into the queues.
    pub fn drain(&mut self) -> io::Result<usize> {
        let mut n = 0;
        let mut buf = vec![0u8; MTU as usize];
        loop {
            let r = self.fd.get_mut().read(&mut buf);
            match r {
                Ok(0) => break,
                Ok(len) => {
                    n += 1;
                    self.hold(&buf[..len]);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(n)
    }

    fn hold(&mut self, pkt: &[u8]) {
        let Some(dst) = datapath::tun::destination(pkt) else {
            self.stats.stray += 1;
            return;
        };
        if !self.queues.keys().any(|p| p.contains(&dst)) {
            // The kernel's fallback route: the node's radio went before the MAG knew.
            let Some(p) = self.fallbacks.keys().find(|p| match dst {
                IpAddr::V6(a) => p.contains(&a),
                IpAddr::V4(_) => false,
            }) else {
                self.stats.stray += 1;
                return;
            };
            self.queues.entry(IpNet::V6(*p)).or_default().unasked = true;
        }
        let Some((_, q)) = self.queues.iter_mut().find(|(p, _)| p.contains(&dst)) else {
            self.stats.stray += 1;
            return;
        };
        if let Some(peer) = q.relay {
            match relay_to(self.tunnel_for(pkt), peer, pkt) {
                Ok(()) => self.stats.flushed += 1,
                Err(_) => self.stats.dropped_overflow += 1,
            }
            return;
        }
        if let Some((ifindex, mac)) = q.deliver {
            match send_to_node(&self.packet, ifindex, mac, self.own_mac, pkt) {
                Ok(()) => self.stats.flushed += 1,
                Err(_) => self.stats.dropped_overflow += 1,
            }
            return;
        }
        q.bytes += pkt.len();
        q.packets.push_back(pkt.to_vec());
        self.stats.buffered += 1;
        while q.packets.len() > self.limits.packets || q.bytes > self.limits.bytes {
            if let Some(old) = q.packets.pop_front() {
                q.bytes -= old.len();
                self.stats.dropped_overflow += 1;
            } else {
                break;
            }
        }
    }

    /// Releases `prefix`'s packets in order through the kernel (along the prefix's current
    /// route) and stops holding it. Returns how many went out.
    pub fn flush(&mut self, prefix: &IpNet) -> io::Result<usize> {
        // Whatever already reached the device belongs to the queue, in order.
        let _ = self.drain();
        let Some(q) = self.queues.remove(prefix) else {
            return Ok(0);
        };
        let mut n = 0;
        for p in q.packets {
            match self.fd.get_mut().write(&p) {
                Ok(_) => n += 1,
                // A full device queue: the rest is lost, and counted.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.stats.dropped_overflow += 1;
                }
                Err(e) => return Err(e),
            }
        }
        self.stats.flushed += n as u64;
        Ok(n)
    }

    /// Hands `prefix`'s packets to the node (`ifindex`, `mac`) in order, and what else arrives
    /// for it after them, until [`Buffer::end_delivery`].
    pub fn deliver(&mut self, prefix: &IpNet, ifindex: u32, mac: [u8; 6]) -> io::Result<usize> {
        let _ = self.drain();
        let q = self.queues.entry(*prefix).or_default();
        q.deliver = Some((ifindex, mac));
        let packets: Vec<Vec<u8>> = q.packets.drain(..).collect();
        q.bytes = 0;
        let mut n = 0;
        for p in packets {
            match send_to_node(&self.packet, ifindex, mac, self.own_mac, &p) {
                Ok(()) => n += 1,
                Err(_) => self.stats.dropped_overflow += 1,
            }
        }
        self.stats.flushed += n as u64;
        Ok(n)
    }

    /// Sends `prefix`'s packets to the MAG at `peer` through the tunnel, in order, and what
    /// else arrives for it after them, until [`Buffer::end_relay`].
    pub fn relay(&mut self, prefix: &IpNet, peer: Ipv6Addr) -> io::Result<usize> {
        let _ = self.drain();
        let q = self.queues.entry(*prefix).or_default();
        q.relay = Some(peer);
        let packets: Vec<Vec<u8>> = q.packets.drain(..).collect();
        q.bytes = 0;
        let mut n = 0;
        for p in packets {
            match relay_to(self.tunnel_for(&p), peer, &p) {
                Ok(()) => n += 1,
                Err(_) => self.stats.dropped_overflow += 1,
            }
        }
        self.stats.flushed += n as u64;
        Ok(n)
    }

    /// Whether `prefix` is being sent to another MAG.
    pub fn is_relaying(&self, prefix: &IpNet) -> bool {
        self.queues.get(prefix).is_some_and(|q| q.relay.is_some())
    }

    /// Stops relaying `prefix` after sending what is left in the device.
    pub fn end_relay(&mut self, prefix: &IpNet) {
        if self.is_relaying(prefix) {
            let _ = self.drain();
            self.queues.remove(prefix);
        }
    }

    /// The prefix has its own route now: what is left in the device goes to the node, then
    /// the prefix is forgotten.
    pub fn end_delivery(&mut self, prefix: &IpNet) {
        if self.queues.get(prefix).is_some_and(|q| q.deliver.is_some()) {
            let _ = self.drain();
            self.queues.remove(prefix);
        }
    }

    /// Where `prefix`'s packets are being handed: the node's link and MAC.
    pub fn delivery(&self, prefix: &Ipv6Net) -> Option<(u32, [u8; 6])> {
        self.queues.get(&IpNet::V6(*prefix)).and_then(|q| q.deliver)
    }

    /// Before `prefix`, delivered to the node at `mac`, is routed onto its access link
    /// `ifindex`: a route of the prefix through [`hold_gateway`] at `metric` (below the
    /// datapath's, so it wins), whose packets the kernel queues until [`Buffer::release_held`].
    /// From here on nothing new reaches the device for the prefix.
    pub async fn hold_new_packets(
        &self,
        prefix: Ipv6Net,
        ifindex: u32,
        mac: [u8; 6],
        metric: u32,
        protocol: u8,
    ) -> datapath::Result<()> {
        self.nl
            .replace_route_via(prefix, hold_gateway(mac), ifindex, metric, protocol)
            .await
    }

    /// After the device was drained to the node: the held packets follow (the gateway
    /// resolves to the node's MAC and the kernel sends its queue in order), and the hold
    /// goes, leaving the prefix to its own route.
    pub async fn release_held(
        &self,
        prefix: Ipv6Net,
        ifindex: u32,
        mac: [u8; 6],
        metric: u32,
        protocol: u8,
    ) -> datapath::Result<()> {
        let gw = hold_gateway(mac);
        let set = self.nl.set_neighbor(ifindex, gw, mac).await;
        let route = self
            .nl
            .delete_route_at(prefix, ifindex, metric, protocol)
            .await;
        let neighbor = self.nl.delete_neighbor(ifindex, gw).await;
        set.and(route).and(neighbor)
    }

    /// Prefixes being handed straight to their node.
    pub fn delivering(&self) -> impl Iterator<Item = &IpNet> {
        self.queues
            .iter()
            .filter(|(_, q)| q.deliver.is_some())
            .map(|(p, _)| p)
    }

    /// The raw socket whose protocol (41 or 4) is the packet's version.
    fn tunnel_for(&self, pkt: &[u8]) -> &socket2::Socket {
        match pkt.first().map(|b| b >> 4) {
            Some(4) => &self.tunnel4,
            _ => &self.tunnel,
        }
    }

    /// Drops `prefix`'s packets and stops holding it.
    pub fn discard(&mut self, prefix: &IpNet) -> usize {
        let n = self.queues.remove(prefix).map_or(0, |q| q.packets.len());
        self.stats.discarded += n as u64;
        n
    }
}

/// Turns a datapath command of the state machine that concerns the buffer into this turn's
/// route changes, in order, and the buffer operations that run once those are applied (a
/// flush must see the prefix's new route). Without a buffer (fast handovers off) only the
/// plain route changes remain.
pub fn plan(
    buffer: Option<&mut Buffer>,
    c: DatapathCommand,
    changes: &mut Vec<Change>,
    after: &mut Vec<DatapathCommand>,
) {
    use DatapathCommand as D;
    if let Some(ch) = cnf::datapath::change(&c) {
        // The end of a relay: the prefix's route was the buffer's, not a tunnel.
        if let (D::RemoveDownlink { prefix }, Some(b)) = (&c, buffer)
            && b.is_relaying(prefix)
        {
            b.end_relay(prefix);
            changes.extend(cnf::datapath::change(&D::RemoveLinkRoute {
                prefix: *prefix,
                link: pmip::output::AccessLink(b.ifindex()),
            }));
        }
        changes.push(ch);
        return;
    }
    let Some(b) = buffer else {
        tracing::warn!(
            ?c,
            "fast-handover buffer command without a buffer (fast handovers off?)"
        );
        return;
    };
    match c {
        D::Buffer { prefix } => {
            b.start(prefix);
            changes.extend(cnf::datapath::change(&D::SetLinkRoute {
                prefix,
                link: pmip::output::AccessLink(b.ifindex()),
                local_routing: false,
            }));
        }
        D::FlushBuffer { .. } | D::ForwardBuffer { .. } | D::DiscardBuffer { .. } => after.push(c),
        _ => {}
    }
}

/// The route changes that follow this turn's buffer operations: a previous MAG's buffer that
/// sent its queue to the new MAG ([`DatapathCommand::ForwardBuffer`]) hands the prefix to the
/// kernel's tunnel to that MAG (see the module docs), so that nothing the LMA sent before it
/// moved the binding waits in this daemon while what it sends after goes to the new MAG
/// directly.
pub fn after_relay(ops: &[DatapathCommand]) -> Vec<Change> {
    ops.iter()
        .filter_map(|op| match op {
            DatapathCommand::ForwardBuffer { prefix, peer } => {
                cnf::datapath::change(&DatapathCommand::SetDownlink {
                    prefix: *prefix,
                    peer: *peer,
                })
            }
            _ => None,
        })
        .collect()
}

/// A raw socket that sends IPv6-in-IPv6 (`protocol` 41) or IPv4-in-IPv6 (4) from `local`.
/// It never reads: its receive buffer is kept at the minimum so that the copies of incoming
/// tunnel packets it is given cost nothing.
fn tunnel_socket(local: Ipv6Addr, protocol: i32) -> io::Result<socket2::Socket> {
    use socket2::{Domain, Protocol, SockAddr, Socket, Type};
    let s = Socket::new(
        Domain::IPV6,
        Type::RAW.nonblocking().cloexec(),
        Some(Protocol::from(protocol)),
    )?;
    s.set_recv_buffer_size(0)?;
    if !local.is_unspecified() {
        s.bind(&SockAddr::from(std::net::SocketAddrV6::new(local, 0, 0, 0)))?;
    }
    Ok(s)
}

fn relay_to(s: &socket2::Socket, peer: Ipv6Addr, pkt: &[u8]) -> io::Result<()> {
    let to = socket2::SockAddr::from(std::net::SocketAddrV6::new(peer, 0, 0, 0));
    let sent = s.send_to(pkt, &to)?;
    if sent != pkt.len() {
        return Err(io::Error::other(format!(
            "sent {sent} of {} bytes",
            pkt.len()
        )));
    }
    Ok(())
}

/// One IPv6 or IPv4 packet as an Ethernet frame to `mac` on link `ifindex`.
fn send_to_node(
    s: &socket2::Socket,
    ifindex: u32,
    mac: [u8; 6],
    own: [u8; 6],
    pkt: &[u8],
) -> io::Result<()> {
    let ethertype: u16 = if pkt.first().is_some_and(|b| b >> 4 == 4) {
        0x0800
    } else {
        0x86dd
    };
    let mut frame = Vec::with_capacity(14 + pkt.len());
    frame.extend_from_slice(&mac);
    frame.extend_from_slice(&own);
    frame.extend_from_slice(&ethertype.to_be_bytes());
    frame.extend_from_slice(pkt);
    crate::access::sys::send_frame_as(s, ifindex, ethertype, &frame)
}

/// The gateway of a hold for the node at `mac`: a link-local address the node does not use
/// (its low 64 bits are not a modified EUI-64, RFC 4291 Appendix A, whose middle is ff:fe),
/// one per node so that holds of several nodes on one link stay apart.
pub fn hold_gateway(mac: [u8; 6]) -> Ipv6Addr {
    let mut a = [0u8; 16];
    a[0] = 0xfe;
    a[1] = 0x80;
    a[8] = 0xff;
    a[9] = 0xff;
    a[10..16].copy_from_slice(&mac);
    Ipv6Addr::from(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against the kernel (run as root), in a namespace of its own: a prefix on an access
    /// link gets a fallback route into the device; while the link has its carrier the kernel
    /// routes the prefix's packets onto it, once the carrier goes into the device at once,
    /// where they wait (unasked) for the MAG; the prefix moving into a tunnel takes the route
    /// away and drops what nobody asked for.
    #[test]
    fn a_prefix_whose_link_loses_its_carrier_falls_back_into_the_buffer() {
        use datapath::netns::NetNs;
        let pid = std::process::id();
        let mag = NetNs::create(&format!("pmipbuf-{pid}-m")).expect("MAG namespace");
        let node = NetNs::create(&format!("pmipbuf-{pid}-n")).expect("node namespace");
        let node_ns: &NetNs = &node;
        let ran = mag.run(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let p: Ipv6Net = "2001:db8:100::/64".parse().unwrap();
                let nl = datapath::Netlink::connect().unwrap();
                let node_nl = datapath::Netlink::connect_in(node_ns).unwrap();
                nl.set_sysctl("net/ipv6/conf/all/forwarding", "1").unwrap();
                nl.add_veth("acc0", "eth0", node_ns).await.unwrap();
                let acc0 = nl.link_index("acc0").await.unwrap();
                let eth0 = node_nl.link_index("eth0").await.unwrap();
                node_nl.set_link_up(eth0, true).await.unwrap();
                nl.set_link_up(acc0, true).await.unwrap();
                // Where the test's packets enter the kernel, as the tunnel's do.
                let mut input = datapath::tun::open_device("in0", true).unwrap();
                let in0 = nl.link_index("in0").await.unwrap();
                nl.set_link_up(in0, true).await.unwrap();
                // The MAG's address, which the buffer's tunnel sockets send from.
                let lo = nl.link_index("lo").await.unwrap();
                nl.set_link_up(lo, true).await.unwrap();
                nl.add_address(lo, "2001:db8::2".parse().unwrap(), 128)
                    .await
                    .unwrap();
                let mut b = Buffer::open(
                    Limits {
                        packets: 16,
                        bytes: 1 << 20,
                    },
                    [2, 0, 0, 0, 0, 1],
                    "2001:db8::2".parse().unwrap(),
                )
                .await
                .unwrap();
                nl.replace_route_at(p, acc0, 1000, 135).await.unwrap();
                b.follow_routes(
                    &[Change::SetLinkRoute {
                        prefix: p,
                        ifindex: acc0,
                        local_routing: false,
                    }],
                    1001,
                    135,
                )
                .await;
                let routes = || {
                    let out = std::process::Command::new("ip")
                        .args(["-6", "route", "show", "2001:db8:100::/64"])
                        .output()
                        .unwrap();
                    String::from_utf8_lossy(&out.stdout).into_owned()
                };
                assert!(
                    routes().contains("dev pmipbuf0 proto 135 metric 1001"),
                    "{}",
                    routes()
                );
                let ignore = std::fs::read_to_string(
                    "/proc/sys/net/ipv6/conf/acc0/ignore_routes_with_linkdown",
                )
                .unwrap();
                assert_eq!(ignore.trim(), "1");
                let mut pkt = vec![0u8; 48];
                pkt[0] = 0x60;
                pkt[5] = 8;
                pkt[6] = 59;
                pkt[7] = 64;
                pkt[8..24]
                    .copy_from_slice(&"2001:db8:200::9".parse::<Ipv6Addr>().unwrap().octets());
                pkt[24..40]
                    .copy_from_slice(&"2001:db8:100::5".parse::<Ipv6Addr>().unwrap().octets());
                let send = |input: &mut File| input.write_all(&pkt).unwrap();
                let settle = || std::thread::sleep(std::time::Duration::from_millis(200));
                // Carrier: the link has it.
                send(&mut input);
                settle();
                // (What the device sends on its own link, its MLD reports, is read as stray.)
                let _ = b.drain().unwrap();
                assert_eq!(b.stats().held, 0);
                assert!(!b.is_buffering(&IpNet::V6(p)));
                // The node's radio goes: the fallback takes the packet into the device.
                node_nl.set_link_up(eth0, false).await.unwrap();
                for _ in 0..50 {
                    if routes().contains("linkdown") {
                        break;
                    }
                    settle();
                }
                send(&mut input);
                settle();
                let _ = b.drain().unwrap();
                assert!(b.is_buffering(&IpNet::V6(p)), "{}", routes());
                assert_eq!(b.stats().held, 1);
                // The prefix moves into a tunnel: the fallback goes, with what it brought.
                b.follow_routes(
                    &[Change::SetDownlink {
                        prefix: p,
                        peer: "2001:db8::3".parse().unwrap(),
                    }],
                    1001,
                    135,
                )
                .await;
                assert!(!routes().contains("pmipbuf0"), "{}", routes());
                assert!(!b.is_buffering(&IpNet::V6(p)));
                assert_eq!(b.stats().discarded, 1);
            })
        });
        ran.expect("the test ran in its namespace");
    }

    #[test]
    fn a_relayed_buffer_hands_its_prefix_to_the_kernels_tunnel() {
        let peer: Ipv6Addr = "2001:db8:f::2".parse().unwrap();
        let p6: Ipv6Net = "2001:db8:100::/64".parse().unwrap();
        let p4: ipnet::Ipv4Net = "10.9.0.7/32".parse().unwrap();
        let ops = [
            DatapathCommand::FlushBuffer {
                prefix: IpNet::V6(p6),
                deliver: None,
            },
            DatapathCommand::ForwardBuffer {
                prefix: IpNet::V6(p6),
                peer,
            },
            DatapathCommand::ForwardBuffer {
                prefix: IpNet::V4(p4),
                peer,
            },
            DatapathCommand::DiscardBuffer {
                prefix: IpNet::V6(p6),
            },
        ];
        assert_eq!(
            after_relay(&ops),
            vec![
                Change::SetDownlink { prefix: p6, peer },
                Change::SetDownlink4 { prefix: p4, peer },
            ]
        );
        assert!(after_relay(&ops[..1]).is_empty());
    }

    #[test]
    fn a_hold_gateway_is_link_local_per_node_and_no_eui64_address() {
        let a = hold_gateway([0x02, 0, 0, 0x10, 0, 0x01]);
        assert_eq!(a, "fe80::ffff:200:10:1".parse::<Ipv6Addr>().unwrap());
        assert!(a.is_unicast_link_local());
        assert_ne!(a, hold_gateway([0x02, 0, 0, 0x10, 0, 0x02]));
        // Not the node's own link-local address (modified EUI-64, RFC 4291 Appendix A).
        let eui64: Ipv6Addr = "fe80::ff:fe10:1".parse().unwrap();
        assert_ne!(a, eui64);
    }
}
