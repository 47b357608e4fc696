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
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

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
        self.queues.entry(prefix).or_default();
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
        let Some(dst) = destination(pkt) else {
            self.stats.stray += 1;
            return;
        };
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

/// The destination of an IPv6 packet, or of an IPv4 one (an IPv4 home address's).
fn destination(pkt: &[u8]) -> Option<IpAddr> {
    match pkt.first()? >> 4 {
        6 => {
            let d: [u8; 16] = pkt.get(24..40)?.try_into().ok()?;
            Some(IpAddr::V6(Ipv6Addr::from(d)))
        }
        4 => {
            let d: [u8; 4] = pkt.get(16..20)?.try_into().ok()?;
            Some(IpAddr::V4(Ipv4Addr::from(d)))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destination_of_an_ipv6_or_ipv4_packet() {
        let mut p = vec![0x60u8; 40];
        p[24..40].copy_from_slice(&"2001:db8::7".parse::<Ipv6Addr>().unwrap().octets());
        assert_eq!(destination(&p), Some("2001:db8::7".parse().unwrap()));
        let mut v4 = vec![0x45u8; 20];
        v4[16..20].copy_from_slice(&[192, 0, 2, 10]);
        assert_eq!(destination(&v4), Some("192.0.2.10".parse().unwrap()));
        let home: IpNet = "192.0.2.10/32".parse().unwrap();
        assert!(home.contains(&destination(&v4).unwrap()));
        assert_eq!(destination(&[0x45; 19]), None);
        assert_eq!(destination(&[0x60; 10]), None);
        assert_eq!(destination(&[0x10; 40]), None);
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
