//! The three sockets of the access side, made in the calling thread's network namespace:
//! a route netlink socket subscribed to link changes, an `AF_PACKET` capture socket with the
//! node filter, and an `AF_PACKET` socket that only sends.

use std::io;
use std::mem::size_of;
use std::os::fd::AsRawFd;

use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::link::LinkMessage;
use nix::sys::socket::{LinkAddr, sockopt};
use rtnetlink::packet_core::{NLM_F_DUMP, NLM_F_REQUEST, NetlinkMessage};
use rtnetlink::sys::{Socket as NetlinkSocket, SocketAddr as NetlinkAddr, protocols};
use socket2::{Domain, SockAddr, SockAddrStorage, SockFilter, Socket, Type};
use tokio::io::unix::AsyncFd;

use super::filter::filter_program;

/// `RTNLGRP_LINK` (linux/rtnetlink.h).
const RTNLGRP_LINK: u32 = 1;
/// Receive buffers asked for (as root, beyond `rmem_max`): a burst of link changes, and a
/// burst of nodes coming up at once.
const NETLINK_RCVBUF: usize = 4 << 20;
const CAPTURE_RCVBUF: usize = 2 << 20;
const ETH_P_IPV6: u16 = 0x86dd;

/// The route netlink socket: bound, in the link multicast group, non-blocking.
pub(crate) fn link_socket() -> io::Result<NetlinkSocket> {
    let mut s = NetlinkSocket::new(protocols::NETLINK_ROUTE)?;
    s.bind(&NetlinkAddr::new(0, 0))?;
    s.add_membership(RTNLGRP_LINK)?;
    if nix::sys::socket::setsockopt(&s, sockopt::RcvBufForce, &NETLINK_RCVBUF).is_err() {
        s.set_rx_buf_sz(NETLINK_RCVBUF)?;
    }
    s.set_non_blocking(true)?;
    Ok(s)
}

/// Asks for every link (answered with RTM_NEWLINK messages of sequence `seq`, then DONE).
pub(crate) fn request_link_dump(s: &NetlinkSocket, seq: u32) -> io::Result<()> {
    let mut m = NetlinkMessage::from(RouteNetlinkMessage::GetLink(LinkMessage::default()));
    m.header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    m.header.sequence_number = seq;
    m.finalize();
    let mut buf = vec![0u8; m.buffer_len()];
    m.serialize(&mut buf);
    s.send(&buf, 0).map(drop)
}

/// Asks for link `index` as it is now (answered with one RTM_NEWLINK of sequence `seq`, or
/// an error if the link is gone). The kernel answers inside this call, so the answer is
/// queued behind every link report sent before it.
pub(crate) fn request_link(s: &NetlinkSocket, seq: u32, index: u32) -> io::Result<()> {
    let mut l = LinkMessage::default();
    l.header.index = index;
    let mut m = NetlinkMessage::from(RouteNetlinkMessage::GetLink(l));
    m.header.flags = NLM_F_REQUEST;
    m.header.sequence_number = seq;
    m.finalize();
    let mut buf = vec![0u8; m.buffer_len()];
    m.serialize(&mut buf);
    s.send(&buf, 0).map(drop)
}

/// Reads one datagram of netlink messages without blocking.
pub(crate) fn recv_netlink(s: &NetlinkSocket, buf: &mut [u8]) -> io::Result<usize> {
    Ok(nix::sys::socket::recv(
        s.as_raw_fd(),
        buf,
        nix::sys::socket::MsgFlags::MSG_DONTWAIT,
    )?)
}

/// The capture socket: every IPv6 frame received on any link of the namespace that passes
/// the node filter. The filter is attached before the socket is bound to the protocol, so
/// no unfiltered frame is ever queued.
pub(crate) fn capture_socket() -> io::Result<Socket> {
    let s = Socket::new(Domain::PACKET, Type::RAW.nonblocking().cloexec(), None)?;
    let program: Vec<SockFilter> = filter_program()
        .into_iter()
        .map(|i| SockFilter::new(i.code, i.jt, i.jf, i.k))
        .collect();
    s.attach_filter(&program)?;
    if nix::sys::socket::setsockopt(&s, sockopt::RcvBufForce, &CAPTURE_RCVBUF).is_err() {
        s.set_recv_buffer_size(CAPTURE_RCVBUF)?;
    }
    // Interface 0: every link, also those that appear later.
    s.bind(&link_layer_sockaddr(0, ETH_P_IPV6, None)?)?;
    Ok(s)
}

/// Reads one frame without blocking: its length, the index of the link it came in on.
pub(crate) fn recv_frame(s: &Socket, buf: &mut [u8]) -> io::Result<(usize, u32)> {
    let (n, from) = nix::sys::socket::recvfrom::<LinkAddr>(s.as_raw_fd(), buf)?;
    let ifindex = from
        .and_then(|a| u32::try_from(a.ifindex()).ok())
        .ok_or_else(|| io::Error::other("a packet socket returned no link-layer address"))?;
    Ok((n, ifindex))
}

/// A packet socket that sends whole Ethernet frames. Protocol 0: it receives nothing.
pub(crate) fn send_socket() -> io::Result<Socket> {
    Socket::new(Domain::PACKET, Type::RAW.nonblocking().cloexec(), None)
}

/// Sends a whole Ethernet frame out of link `ifindex`.
pub(crate) fn send_frame(s: &Socket, ifindex: u32, frame: &[u8]) -> io::Result<()> {
    send_frame_as(s, ifindex, ETH_P_IPV6, frame)
}

/// Sends a whole Ethernet frame of EtherType `protocol` (host order) out of link `ifindex`.
pub(crate) fn send_frame_as(
    s: &Socket,
    ifindex: u32,
    protocol: u16,
    frame: &[u8],
) -> io::Result<()> {
    let dst = frame
        .get(..6)
        .and_then(|d| <[u8; 6]>::try_from(d).ok())
        .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
    let sent = s.send_to(frame, &link_layer_sockaddr(ifindex, protocol, Some(dst))?)?;
    if sent != frame.len() {
        return Err(io::Error::other(format!(
            "sent {sent} of {} bytes",
            frame.len()
        )));
    }
    Ok(())
}

/// Registers a socket with the tokio reactor of the current runtime.
#[allow(unsafe_code)]
pub(crate) fn register<T: AsRawFd>(socket: T) -> io::Result<AsyncFd<T>> {
    // SAFETY: `T` is one of this module's sockets, each of which owns its descriptor (closed
    // on drop) and returns that same descriptor from `as_raw_fd`; the `AsyncFd` takes
    // ownership of the socket, so the descriptor stays open while it is registered.
    unsafe { AsyncFd::register(socket) }.map_err(|e| e.into_parts().1)
}

/// A `sockaddr_ll` (packet(7)) for link `ifindex` (0: any), protocol `protocol` (host
/// order) and, for sending, the destination MAC.
#[allow(unsafe_code)]
pub(crate) fn link_layer_sockaddr(
    ifindex: u32,
    protocol: u16,
    mac: Option<[u8; 6]>,
) -> io::Result<SockAddr> {
    let ifindex =
        i32::try_from(ifindex).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let mut storage = SockAddrStorage::zeroed();
    // SAFETY: `sockaddr_ll` is a `sockaddr_*` type of this platform, as `view_as` requires
    // (and it checks that it fits the storage); the storage is zeroed, a valid value.
    let sll = unsafe { storage.view_as::<libc::sockaddr_ll>() };
    sll.sll_family = libc::AF_PACKET as libc::sa_family_t;
    sll.sll_protocol = protocol.to_be();
    sll.sll_ifindex = ifindex;
    if let Some(mac) = mac {
        sll.sll_halen = 6;
        if let Some(a) = sll.sll_addr.get_mut(..6) {
            a.copy_from_slice(&mac);
        }
    }
    // SAFETY: the storage holds a `sockaddr_ll` with its family set, and the length is its size.
    Ok(unsafe { SockAddr::new(storage, size_of::<libc::sockaddr_ll>() as libc::socklen_t) })
}
