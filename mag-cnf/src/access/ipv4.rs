//! The IPv4 side of the access links (RFC 5844 §3.2.3.2, §3.2.4, §3.4): the DHCPv4 messages
//! and ARP requests nodes send, read from one `AF_PACKET` socket, and the frames the MAG
//! answers with ([`dhcp`](super::dhcp), [`arp`](super::arp)), sent on another.
//!
//! The capture socket is bound to every link with a classic BPF filter that lets through
//! only received (not sent, not looped back) ARP frames and unfragmented IPv4 UDP datagrams
//! to port 67, so user traffic stays in the kernel. Which link is an access link, and which
//! node holds which IPv4 home address, is the caller's to know: every frame comes with the
//! index of the link it arrived on. An IPv4-only node is heard here first (its DHCPDISCOVER
//! or its ARP), which is the trigger of its registration (RFC 5844 §3.4.3).

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use datapath::netns::NetNs;
use socket2::{Domain, SockFilter, Socket, Type};
use tokio::io::unix::AsyncFd;
use tokio::sync::mpsc;

use super::arp::{ArpRepr, ETH_P_ARP};
use super::dhcp::{self, DhcpRequest, ETH_P_IP};
use super::{Error, Result, sys};

/// `ETH_P_ALL`: frames of every EtherType (ARP and IPv4 here, the filter keeps the rest out).
const ETH_P_ALL: u16 = 0x0003;
const CAPTURE_RCVBUF: usize = 1 << 20;
const EVENT_QUEUE: usize = 1024;
/// Larger than any DHCP message on an Ethernet link (the filter passes whole frames).
const BUFFER: usize = 64 << 10;

/// A DHCP or ARP frame a node sent on a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ipv4Frame {
    Dhcp { ifindex: u32, request: DhcpRequest },
    Arp { ifindex: u32, request: ArpRepr },
}

impl Ipv4Frame {
    /// The link it arrived on.
    pub fn ifindex(&self) -> u32 {
        match self {
            Ipv4Frame::Dhcp { ifindex, .. } | Ipv4Frame::Arp { ifindex, .. } => *ifindex,
        }
    }

    /// The node that sent it (Ethernet source).
    pub fn node(&self) -> [u8; 6] {
        match self {
            Ipv4Frame::Dhcp { request, .. } => request.mac,
            Ipv4Frame::Arp { request, .. } => request.sender_mac,
        }
    }
}

/// Counters of the IPv4 side since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ipv4Stats {
    pub dhcp_received: u64,
    pub arp_received: u64,
    /// Frames the filter passed that were not a DHCP request or an ARP packet after all.
    pub frames_ignored: u64,
    pub frames_sent: u64,
}

#[derive(Debug, Default)]
struct Counters {
    dhcp_received: AtomicU64,
    arp_received: AtomicU64,
    frames_ignored: AtomicU64,
    frames_sent: AtomicU64,
}

/// The running IPv4 side. Dropping it stops the task.
pub struct Ipv4Access {
    sender: AsyncFd<Socket>,
    counters: Arc<Counters>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Ipv4Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ipv4Access")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

fn open_sockets() -> Result<(Socket, Socket)> {
    let err = |what| move |source| Error::Socket { what, source };
    Ok((
        capture_socket().map_err(err("IPv4 capture"))?,
        sys::send_socket().map_err(err("IPv4 send"))?,
    ))
}

impl Ipv4Access {
    /// Starts listening on every link of the current network namespace; frames whose
    /// Ethernet source is `own_mac` (the domain's fixed MAG address) are the MAG's own and
    /// are not passed on. Needs a tokio runtime and CAP_NET_RAW.
    pub fn start(own_mac: [u8; 6]) -> Result<(Self, mpsc::Receiver<Ipv4Frame>)> {
        Self::with_sockets(open_sockets()?, own_mac)
    }

    /// [`Ipv4Access::start`] in network namespace `netns`.
    pub fn start_in(netns: &NetNs, own_mac: [u8; 6]) -> Result<(Self, mpsc::Receiver<Ipv4Frame>)> {
        let sockets = netns.run(open_sockets)??;
        Self::with_sockets(sockets, own_mac)
    }

    fn with_sockets(
        (capture, sender): (Socket, Socket),
        own_mac: [u8; 6],
    ) -> Result<(Self, mpsc::Receiver<Ipv4Frame>)> {
        let register = |what| move |source| Error::Socket { what, source };
        let capture = sys::register(capture).map_err(register("IPv4 capture"))?;
        let sender = sys::register(sender).map_err(register("IPv4 send"))?;
        let counters = Arc::new(Counters::default());
        let (tx, rx) = mpsc::channel(EVENT_QUEUE);
        let task = tokio::spawn(listen(capture, own_mac, counters.clone(), tx));
        Ok((
            Self {
                sender,
                counters,
                task,
            },
            rx,
        ))
    }

    /// Sends a whole Ethernet frame (an ARP reply, a DHCP reply) out of link `ifindex`.
    pub async fn send(&self, ifindex: u32, frame: &[u8]) -> Result<()> {
        let protocol = frame
            .get(12..14)
            .map_or(ETH_P_IP, |t| u16::from_be_bytes([t[0], t[1]]));
        let sent = loop {
            let mut guard = self
                .sender
                .writable()
                .await
                .map_err(|source| Error::Send { ifindex, source })?;
            if let Ok(r) =
                guard.try_io(|s| sys::send_frame_as(s.get_ref(), ifindex, protocol, frame))
            {
                break r;
            }
        };
        sent.map_err(|source| Error::Send { ifindex, source })?;
        self.counters.frames_sent.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    pub fn stats(&self) -> Ipv4Stats {
        let c = &self.counters;
        Ipv4Stats {
            dhcp_received: c.dhcp_received.load(Ordering::Relaxed),
            arp_received: c.arp_received.load(Ordering::Relaxed),
            frames_ignored: c.frames_ignored.load(Ordering::Relaxed),
            frames_sent: c.frames_sent.load(Ordering::Relaxed),
        }
    }
}

impl Drop for Ipv4Access {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What a frame the filter passed is.
pub(crate) fn classify(ifindex: u32, frame: &[u8], own_mac: [u8; 6]) -> Option<Ipv4Frame> {
    if frame.get(6..12) == Some(own_mac.as_slice()) {
        return None;
    }
    if let Some(request) = ArpRepr::parse_frame(frame) {
        return Some(Ipv4Frame::Arp { ifindex, request });
    }
    dhcp::parse_frame(frame).map(|request| Ipv4Frame::Dhcp { ifindex, request })
}

async fn listen(
    capture: AsyncFd<Socket>,
    own_mac: [u8; 6],
    counters: Arc<Counters>,
    tx: mpsc::Sender<Ipv4Frame>,
) {
    let mut buf = vec![0u8; BUFFER];
    loop {
        let mut guard = match capture.readable().await {
            Ok(g) => g,
            Err(e) => {
                tracing::error!(error = %e, "IPv4 access capture failed");
                return;
            }
        };
        let read = guard.try_io(|s| sys::recv_frame(s.get_ref(), &mut buf));
        let (n, ifindex) = match read {
            Err(_would_block) => continue,
            Ok(Ok(x)) => x,
            Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "IPv4 access capture failed");
                return;
            }
        };
        let Some(frame) = buf.get(..n) else { continue };
        match classify(ifindex, frame, own_mac) {
            Some(f) => {
                let c = match f {
                    Ipv4Frame::Dhcp { .. } => &counters.dhcp_received,
                    Ipv4Frame::Arp { .. } => &counters.arp_received,
                };
                c.fetch_add(1, Ordering::Relaxed);
                if tx.send(f).await.is_err() {
                    return;
                }
            }
            None => {
                counters.frames_ignored.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// The capture socket: every link, the filter attached before the protocol is bound so no
/// unfiltered frame is ever queued.
fn capture_socket() -> io::Result<Socket> {
    let s = Socket::new(Domain::PACKET, Type::RAW.nonblocking().cloexec(), None)?;
    let program: Vec<SockFilter> = filter_program()
        .into_iter()
        .map(|i| SockFilter::new(i.code, i.jt, i.jf, i.k))
        .collect();
    s.attach_filter(&program)?;
    if nix::sys::socket::setsockopt(&s, nix::sys::socket::sockopt::RcvBufForce, &CAPTURE_RCVBUF)
        .is_err()
    {
        s.set_recv_buffer_size(CAPTURE_RCVBUF)?;
    }
    s.bind(&sys::link_layer_sockaddr(0, ETH_P_ALL, None)?)?;
    Ok(s)
}

/// One classic BPF instruction (`struct sock_filter`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Insn {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

// linux/filter.h, linux/bpf_common.h.
const LD_H_ABS: u16 = 0x28;
const LD_B_ABS: u16 = 0x30;
const LD_W_ABS: u16 = 0x20;
const LD_H_IND: u16 = 0x48;
/// `ldxb 4*([k]&0xf)`: the IPv4 header length.
const LDX_B_MSH: u16 = 0xb1;
const JEQ_K: u16 = 0x15;
const JGE_K: u16 = 0x35;
const JSET_K: u16 = 0x45;
const RET_K: u16 = 0x06;
/// `SKF_AD_OFF + SKF_AD_PKTTYPE`.
const PKTTYPE: u32 = 0xffff_f000 + 4;
/// `PACKET_OUTGOING`; PACKET_LOOPBACK (5) and above are not received frames either.
const PACKET_OUTGOING: u32 = 4;
const SNAPLEN: u32 = 65_535;

/// Received ARP, or received unfragmented IPv4 UDP to port 67.
pub(crate) fn filter_program() -> Vec<Insn> {
    const DIRECTION: usize = 10;
    const ACCEPT: usize = 12;
    const DROP: usize = 13;
    let i = |code, k| Insn {
        code,
        jt: 0,
        jf: 0,
        k,
    };
    let to = |from: usize, target: usize| (target - from - 1) as u8;
    let jump = |code, at: usize, k: u32, jt: usize, jf: usize| Insn {
        code,
        jt: to(at, jt),
        jf: to(at, jf),
        k,
    };
    let program = vec![
        /* 0 */ i(LD_H_ABS, 12),
        /* 1 */ jump(JEQ_K, 1, u32::from(ETH_P_ARP), DIRECTION, 2),
        /* 2 */ jump(JEQ_K, 2, u32::from(ETH_P_IP), 3, DROP),
        /* 3 */ i(LD_B_ABS, 14 + 9),
        /* 4 */ jump(JEQ_K, 4, 17, 5, DROP),
        /* 5 */ i(LD_H_ABS, 14 + 6),
        /* 6 */ jump(JSET_K, 6, 0x3fff, DROP, 7),
        /* 7 */ i(LDX_B_MSH, 14),
        /* 8 */ i(LD_H_IND, 14 + 2),
        /* 9 */ jump(JEQ_K, 9, u32::from(dhcp::SERVER_PORT), DIRECTION, DROP),
        /* 10 */ i(LD_W_ABS, PKTTYPE),
        /* 11 */ jump(JGE_K, 11, PACKET_OUTGOING, DROP, ACCEPT),
        /* 12 */ i(RET_K, SNAPLEN),
        /* 13 */ i(RET_K, 0),
    ];
    debug_assert_eq!(program.len(), DROP + 1);
    program
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    /// Runs the program the way the kernel does for these opcodes: a load past the end of
    /// the packet ends it with 0 (drop).
    fn run(program: &[Insn], packet: &[u8], pkttype: u32) -> u32 {
        let (mut a, mut x, mut pc) = (0u32, 0u32, 0usize);
        let byte = |at: u32| packet.get(at as usize).copied().map(u32::from);
        while let Some(insn) = program.get(pc) {
            pc += 1;
            let jump = |taken: bool| usize::from(if taken { insn.jt } else { insn.jf });
            match insn.code {
                LD_H_ABS | LD_H_IND => {
                    let at = insn.k + if insn.code == LD_H_IND { x } else { 0 };
                    match (byte(at), byte(at + 1)) {
                        (Some(h), Some(l)) => a = (h << 8) | l,
                        _ => return 0,
                    }
                }
                LD_W_ABS if insn.k == PKTTYPE => a = pkttype,
                LD_B_ABS => match byte(insn.k) {
                    Some(b) => a = b,
                    None => return 0,
                },
                LDX_B_MSH => match byte(insn.k) {
                    Some(b) => x = 4 * (b & 0xf),
                    None => return 0,
                },
                JEQ_K => pc += jump(a == insn.k),
                JGE_K => pc += jump(a >= insn.k),
                JSET_K => pc += jump(a & insn.k != 0),
                RET_K => return insn.k,
                other => panic!("opcode {other:#x} not emulated"),
            }
        }
        panic!("fell off the end of the program")
    }

    const NODE: [u8; 6] = [2, 0, 0, 0, 1, 1];
    const MAG: [u8; 6] = [2, 0, 0x5e, 0, 0x53, 1];

    fn dhcp_frame(dst_port: u16) -> Vec<u8> {
        let mut m = dhcproto::v4::Message::default();
        m.set_chaddr(&NODE);
        m.opts_mut().insert(dhcproto::v4::DhcpOption::MessageType(
            dhcproto::v4::MessageType::Discover,
        ));
        dhcp::udp_frame(
            (NODE, Ipv4Addr::UNSPECIFIED, 68),
            ([0xff; 6], Ipv4Addr::BROADCAST, dst_port),
            &dhcproto::Encodable::to_vec(&m).unwrap(),
        )
    }

    fn arp_frame() -> Vec<u8> {
        ArpRepr {
            request: true,
            sender_mac: NODE,
            sender_ip: Ipv4Addr::new(192, 0, 2, 10),
            target_mac: [0; 6],
            target_ip: Ipv4Addr::new(192, 0, 2, 1),
        }
        .frame([0xff; 6], NODE)
    }

    #[test]
    fn filter_passes_received_dhcp_and_arp_only() {
        let p = filter_program();
        let (dhcp, arp) = (dhcp_frame(67), arp_frame());
        for (f, what) in [(&dhcp, "DHCP"), (&arp, "ARP")] {
            assert_eq!(run(&p, f, 0), SNAPLEN, "{what} received from a node");
            assert_eq!(run(&p, f, 1), SNAPLEN, "{what} broadcast");
            assert_eq!(run(&p, f, PACKET_OUTGOING), 0, "{what} we sent");
            assert_eq!(run(&p, f, 5), 0, "{what} looped back");
            assert!(classify(7, f, MAG).is_some(), "{what}");
            assert_eq!(classify(7, f, MAG).unwrap().ifindex(), 7);
            assert_eq!(classify(7, f, MAG).unwrap().node(), NODE);
        }
        // The DHCP server's own replies (to port 68), other UDP, fragments, IPv6: dropped.
        assert_eq!(run(&p, &dhcp_frame(68), 0), 0);
        let mut tcp = dhcp.clone();
        tcp[14 + 9] = 6;
        assert_eq!(run(&p, &tcp, 0), 0);
        let mut fragment = dhcp.clone();
        fragment[14 + 6] = 0x20; // More Fragments
        assert_eq!(run(&p, &fragment, 0), 0);
        let mut ipv6 = dhcp.clone();
        ipv6[12..14].copy_from_slice(&[0x86, 0xdd]);
        assert_eq!(run(&p, &ipv6, 0), 0);
        for n in 0..30 {
            assert_eq!(run(&p, &dhcp[..n], 0), 0, "truncated at {n}");
        }
        // The MAG's own frames are not a node's.
        assert!(
            classify(
                7,
                &arp.iter()
                    .enumerate()
                    .map(|(i, b)| if (6..12).contains(&i) { MAG[i - 6] } else { *b })
                    .collect::<Vec<_>>(),
                MAG
            )
            .is_none()
        );
    }
}
