//! The userspace tunnel backend ([`crate::Tunnel::Tun`]): RFC 2473 encapsulation done by the
//! daemon, for kernels that have neither seg6 lightweight tunnels nor ip6tnl.
//!
//! Each peer gets a veth pair: the kernel's end is named like an ip6tnl link, `<prefix>N`,
//! and the routes into the tunnel are routes into it, exactly as with ip6tnl. It resolves no
//! neighbours (IFF_NOARP), so what is routed into it crosses to the other end, the daemon's
//! (`<prefix>Nio`), where a thread per peer reads it on a packet socket and sends each packet
//! to the peer on a raw IPv6 socket of protocol 41 (an IPv6 packet inside) or 4 (an IPv4 one,
//! RFC 5844 §3.1.3): the kernel puts the outer header in front, source the local tunnel end,
//! Next Header 41 or 4, no extension header, which is RFC 2473 on the wire, the same packets
//! the seg6 and ip6tnl backends send. The kernel's end has no checksum or segmentation
//! offload, so what the daemon reads is whole packets with their checksums. The same raw
//! sockets, bound to the local address, receive what is sent there (a kernel without a tunnel
//! module delivers Next Header 41 and 4 to raw sockets), and a thread sends each inner packet
//! into one more pair, from its daemon's end to the kernel's end
//! [`crate::Settings::tunnel_name_prefix`]`in`, addressed to that end's MAC; an `iif` rule
//! sends what enters by it to the main table, as End.DT6 does, so the kernel routes the inner
//! packet by its destination. Like End.DT6 and End.DX4 it takes tunnelled packets from any
//! source.
//!
//! The pairs, their routes and their nexthop objects outlive the daemon: nothing in the
//! kernel changes when it stops or is killed, only the packets routed into the pairs wait
//! unread until a daemon reads them again. A restarted daemon takes over the pairs it finds
//! right when it assumes its stored state ([`crate::Kernel::assume`]): it opens its packet
//! sockets on them and serves, and the reconcile that follows in the background finds the
//! routes in place. (TUN devices, which this backend used before, go with their descriptors
//! and take their routes with them; made persistent, every change of their carrier made the
//! kernel walk every route, see BENCHMARKS.md.) Each kernel's end carries the alias
//! `pmip-tun LOCAL REMOTE`, which is how a dump tells which peer a pair is for.
//!
//! A peer's pair outlives its last route by [`crate::Settings::tun_linger`], idle (no route
//! into it, its thread waiting): a node moving back and forth between two MAGs finds the pair
//! of the peer it returns to made, and its handover only writes routes. An idle pair is
//! deleted after the linger, off the path of any change, when its slot (its name) is needed
//! for another peer, or when a reconcile or cleanup no longer wants it.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddrV6};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use ipnet::IpNet;

use crate::error::{Error, Result};
use crate::marker::{Holds, Verdict, end_marker};
use crate::msg::KTunnel;
use crate::netlink::Netlink;

/// What a device's alias starts with.
pub(crate) const ALIAS_PREFIX: &str = "pmip-tun";

/// The alias of the device for the tunnel from `local` to `remote`.
pub(crate) fn alias(local: Ipv6Addr, remote: Ipv6Addr) -> String {
    format!("{ALIAS_PREFIX} {local} {remote}")
}

/// The local and remote end an [`alias`] names.
pub(crate) fn parse_alias(a: &str) -> Option<(Ipv6Addr, Ipv6Addr)> {
    let mut words = a.split(' ');
    if words.next()? != ALIAS_PREFIX {
        return None;
    }
    let local = words.next()?.parse().ok()?;
    let remote = words.next()?.parse().ok()?;
    words.next().is_none().then_some((local, remote))
}

/// Opens the TUN device `name` (IFF_TUN, IFF_NO_PI: each read and write is one IP packet),
/// making it if it does not exist; the device goes when the last descriptor closes, unless
/// it was made persistent by someone else. Nonblocking when asked.
#[allow(unsafe_code)]
pub fn open_device(name: &str, nonblocking: bool) -> io::Result<File> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("TUN device name {name:?}: 1 to 15 bytes"),
        ));
    }
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")?;
    #[repr(C)]
    struct IfReq {
        name: [u8; libc::IFNAMSIZ],
        flags: libc::c_short,
        _pad: [u8; 22],
    }
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        flags: (libc::IFF_TUN | libc::IFF_NO_PI) as libc::c_short,
        _pad: [0; 22],
    };
    req.name[..name.len()].copy_from_slice(name.as_bytes());
    // SAFETY: TUNSETIFF reads and writes an `ifreq`, which `IfReq` lays out (name, flags,
    // padding to its 40 bytes); `f` is an open /dev/net/tun descriptor.
    let r = unsafe { libc::ioctl(f.as_raw_fd(), libc::TUNSETIFF as _, &mut req) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    if nonblocking {
        set_nonblocking(f.as_raw_fd())?;
    }
    Ok(f)
}

#[allow(unsafe_code)]
fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: plain fcntl on a descriptor the caller owns.
    let r = unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK)
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Whether the userspace tunnel can run here: a packet socket opens (the daemon has
/// CAP_NET_RAW, which its raw sockets need as well).
#[allow(unsafe_code)]
pub fn probe() -> bool {
    // SAFETY: socket returns a new descriptor or -1; a new one is closed by the OwnedFd.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return false;
    }
    // SAFETY: `fd` is a new descriptor nobody else owns.
    drop(unsafe { OwnedFd::from_raw_fd(fd) });
    true
}

/// The MTU of the daemon's end of every pair, and of both ends of the ingress pair: the
/// largest a veth takes. A veth passes a frame only if its receiving end's MTU allows it,
/// and an inner packet reassembled from fragments may be larger than the tunnel MTU.
pub(crate) const IO_MTU: u32 = 65_535;

/// The kernel's end of a pair and the daemon's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pair {
    index: u32,
    mac: Vec<u8>,
    io: u32,
}

/// The name of the daemon's end of the pair whose kernel's end is `name`: `name` and `io`,
/// or a name the kernel picks (`pmipio0`, ...) when that does not fit 15 bytes.
fn io_name(name: &str) -> String {
    if name.len() + 2 < libc::IFNAMSIZ {
        format!("{name}io")
    } else {
        "pmipio%d".into()
    }
}

/// Whether `name` is one of the userspace tunnel's links for the name prefix `prefix`: the
/// kernel's end of a peer's pair (`<prefix>N`) or of the ingress pair (`<prefix>in`), the
/// daemon's end of either (the same and `io`), or a daemon's end the kernel named
/// (`pmipio<N>`). For those who pick links by name, such as a MAG's access link patterns:
/// these are veth links like any other.
pub fn is_pair_name(prefix: &str, name: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let base = name.strip_suffix("io").unwrap_or(name);
    base.strip_prefix(prefix)
        .is_some_and(|rest| rest == "in" || digits(rest))
        || name.strip_prefix("pmipio").is_some_and(digits)
}

/// Whether `link` is a pair of the tunnel: its alias says so, or it is a veth whose other end
/// has the name the tunnel gives it (a pair whose making stopped before its alias was set).
fn ours(link: &crate::msg::KLink, links: &[crate::msg::KLink]) -> bool {
    link.tun.is_some()
        || link.veth_peer.is_some_and(|p| {
            links
                .iter()
                .any(|o| o.index == p && o.name == io_name(&link.name))
        })
}

/// The pair whose kernel's end is `link`, if it is right for a tunnel `(local, remote)` of
/// `mtu`: a veth whose other end is in `links`, up, without neighbour resolution, with that
/// alias and MTU. What a daemon finds after a restart, or its own pair.
pub(crate) fn right_pair(
    link: &crate::msg::KLink,
    links: &[crate::msg::KLink],
    ends: (Ipv6Addr, Ipv6Addr),
    mtu: u32,
) -> Option<Pair> {
    let io = link.veth_peer?;
    let other = links.iter().find(|l| l.index == io)?;
    (link.tun == Some(ends)
        && link.mtu == mtu
        && link.up
        && link.noarp
        && other.up
        && other.mtu >= mtu
        && link.mac.len() == 6)
        .then(|| Pair {
            index: link.index,
            mac: link.mac.clone(),
            io,
        })
}

/// Turns off checksum and segmentation offload of link `name` (in the caller's namespace),
/// as `ethtool -K NAME tx off sg off tso off gso off`: a veth passes packets whose checksum
/// is left to the hardware, and segments of up to 64 KiB, to its other end as they are, and
/// the daemon reading them there must get whole packets with their checksums.
#[allow(unsafe_code)]
fn no_offloads(name: &str) -> io::Result<()> {
    const SIOCETHTOOL: libc::c_ulong = 0x8946;
    // <linux/ethtool.h>: set TX checksumming, scatter-gather, TSO, GSO (struct ethtool_value).
    const SET: [u32; 4] = [0x17, 0x19, 0x1f, 0x24];
    #[repr(C)]
    struct Value {
        cmd: u32,
        data: u32,
    }
    #[repr(C)]
    struct IfReq {
        name: [u8; libc::IFNAMSIZ],
        data: *mut Value,
        _pad: [u8; 16],
    }
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("link name {name:?}: 1 to 15 bytes"),
        ));
    }
    let s = Socket::new(Domain::IPV6, Type::DGRAM.cloexec(), None)?;
    for cmd in SET {
        let mut value = Value { cmd, data: 0 };
        let mut req = IfReq {
            name: [0; libc::IFNAMSIZ],
            data: &mut value,
            _pad: [0; 16],
        };
        req.name[..name.len()].copy_from_slice(name.as_bytes());
        // SAFETY: SIOCETHTOOL reads an `ifreq` (name, then a pointer to the command) and the
        // `ethtool_value` it points to, both live for the call.
        let r = unsafe { libc::ioctl(s.as_raw_fd(), SIOCETHTOOL as _, &mut req) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// A packet socket on the daemon's end of a pair: what the kernel routes into the pair is
/// read from it, and what is sent on it enters the kernel by the kernel's end.
struct Io {
    socket: Socket,
    /// Where an IPv6 and an IPv4 packet sent on it go: the kernel's end's MAC address.
    to6: libc::sockaddr_ll,
    to4: libc::sockaddr_ll,
}

impl Io {
    /// Opens the socket of `pair`, in the caller's namespace, nonblocking. With `reads`, it
    /// reads what arrives at the daemon's end (not what is sent from it); without, it only
    /// sends, and nothing piles up in it.
    #[allow(unsafe_code)]
    fn open(pair: &Pair, reads: bool) -> io::Result<Io> {
        // Protocol 0: nothing is received until the socket is bound to its link below.
        // SAFETY: socket returns a new descriptor or -1.
        let fd = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                0,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a new descriptor nobody else owns.
        let socket = unsafe { Socket::from_raw_fd(fd) };
        let index = i32::try_from(pair.io)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "link index"))?;
        let ll = |protocol: i32| {
            // SAFETY: sockaddr_ll is plain data; all zero is a valid value.
            let mut a: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            a.sll_family = libc::AF_PACKET as u16;
            a.sll_protocol = (protocol as u16).to_be();
            a.sll_ifindex = index;
            a
        };
        // PACKET_IGNORE_OUTGOING (Linux 4.20): not what the daemon's end itself sends (its
        // own link-local traffic). Best effort: an older kernel passes those up too, and they
        // are kept off the tunnel like the kernel's end's own (`tunnelled`). A packet socket
        // never receives what it sent itself.
        let one: libc::c_int = 1;
        // SAFETY: setsockopt reads a live c_int.
        let _ = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_PACKET,
                23,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        // Bursts of a TCP stream arrive faster than one thread turns them around.
        let _ = socket.set_recv_buffer_size(4 << 20);
        let _ = socket.set_send_buffer_size(4 << 20);
        let bound = ll(if reads { libc::ETH_P_ALL } else { 0 });
        // SAFETY: bind reads a live sockaddr_ll of the size given.
        let r = unsafe {
            libc::bind(
                fd,
                (&bound as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        let to = |protocol: i32| {
            let mut a = ll(protocol);
            a.sll_halen = 6;
            for (d, s) in a.sll_addr.iter_mut().zip(&pair.mac) {
                *d = *s;
            }
            a
        };
        Ok(Io {
            socket,
            to6: to(libc::ETH_P_IPV6),
            to4: to(libc::ETH_P_IP),
        })
    }

    /// Reads one packet (without its link-layer header).
    #[allow(unsafe_code)]
    fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: `[u8]` and `[MaybeUninit<u8>]` have the same layout, and recv only writes
        // initialized bytes into it.
        let uninit = unsafe { &mut *(buf as *mut [u8] as *mut [std::mem::MaybeUninit<u8>]) };
        self.socket.recv(uninit)
    }

    /// Sends one IPv6 or IPv4 packet into the kernel's end, whole or not at all.
    #[allow(unsafe_code)]
    fn send(&self, pkt: &[u8]) -> io::Result<usize> {
        let to = match pkt.first().map(|b| b >> 4) {
            Some(6) => &self.to6,
            Some(4) => &self.to4,
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "neither IPv6 nor IPv4",
                ));
            }
        };
        // SAFETY: sendto reads `pkt` and a live sockaddr_ll of the size given.
        let r = unsafe {
            libc::sendto(
                self.socket.as_raw_fd(),
                pkt.as_ptr().cast(),
                pkt.len(),
                0,
                (to as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        usize::try_from(r).map_err(|_| io::Error::last_os_error())
    }
}

/// What the forwarder did, since it started.
#[derive(Debug, Default)]
pub struct TunCounters {
    /// Packets read from a device and sent to its peer.
    pub encapsulated: AtomicU64,
    /// Packets received and written into the ingress device.
    pub decapsulated: AtomicU64,
    /// Packets that were not an IPv6 packet (protocol 41) or an IPv4 one (protocol 4):
    /// dropped.
    pub refused: AtomicU64,
    /// Sends and writes the kernel refused (too big, no route, ...): dropped.
    pub errors: AtomicU64,
    /// What a device sent on its own link (MLD reports, link-local or multicast packets):
    /// kept off the tunnel.
    pub kept_off: AtomicU64,
    /// End markers sent to a previous MAG ([`crate::marker`]).
    pub end_markers_sent: AtomicU64,
    /// End markers that ended a hold here.
    pub end_markers_received: AtomicU64,
    /// Packets held for an end marker.
    pub held_for_end_marker: AtomicU64,
    /// Holds that ended without their marker: expired, or full.
    pub holds_without_marker: AtomicU64,
}

impl TunCounters {
    /// The four counts, in field order.
    pub fn snapshot(&self) -> [u64; 4] {
        [
            self.encapsulated.load(Ordering::Relaxed),
            self.decapsulated.load(Ordering::Relaxed),
            self.refused.load(Ordering::Relaxed),
            self.errors.load(Ordering::Relaxed),
        ]
    }
}

/// An eventfd that tells a thread to stop.
struct Stop(OwnedFd);

impl Stop {
    #[allow(unsafe_code)]
    fn new() -> io::Result<Stop> {
        // SAFETY: eventfd returns a new descriptor or -1.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a new descriptor nobody else owns.
        Ok(Stop(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Takes the signals back (the eventfd reads as not ready again).
    #[allow(unsafe_code)]
    fn clear(&self) {
        let mut n: u64 = 0;
        // SAFETY: reads at most 8 bytes into a live u64 from our nonblocking eventfd.
        unsafe {
            libc::read(
                self.0.as_raw_fd(),
                (&mut n as *mut u64).cast(),
                std::mem::size_of::<u64>(),
            )
        };
    }

    #[allow(unsafe_code)]
    fn signal(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to our eventfd.
        unsafe {
            libc::write(
                self.0.as_raw_fd(),
                (&one as *const u64).cast(),
                std::mem::size_of::<u64>(),
            )
        };
    }
}

/// Waits until one of `fds` can be read, or `until`; which ones can. `EINTR` is an empty
/// answer.
#[allow(unsafe_code)]
fn wait_readable(fds: &[RawFd], ready: &mut Vec<bool>, until: Option<Instant>) -> io::Result<()> {
    let mut p: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let timeout = until.map_or(-1, |t| {
        let left = t.saturating_duration_since(Instant::now());
        // Rounded up: waking before the deadline would only wait again.
        i32::try_from(left.as_micros().div_ceil(1000)).unwrap_or(i32::MAX)
    });
    // SAFETY: `p` is a live array of `p.len()` pollfd structures.
    let r = unsafe { libc::poll(p.as_mut_ptr(), p.len() as libc::nfds_t, timeout) };
    ready.clear();
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            ready.resize(fds.len(), false);
            return Ok(());
        }
        return Err(e);
    }
    ready.extend(p.iter().map(|p| p.revents != 0));
    Ok(())
}

/// The two raw sockets of one local tunnel end: protocol 41 (IPv6 inside) and 4 (IPv4).
struct Ends {
    v6: Socket,
    v4: Socket,
}

impl Ends {
    fn open(local: Ipv6Addr) -> io::Result<Ends> {
        let open = |protocol: i32| -> io::Result<Socket> {
            let s = Socket::new(
                Domain::IPV6,
                Type::RAW.nonblocking().cloexec(),
                Some(Protocol::from(protocol)),
            )?;
            // Bursts of a TCP stream arrive faster than one thread turns them around.
            let _ = s.set_recv_buffer_size(4 << 20);
            s.set_unicast_hops_v6(u32::from(crate::msg::TUNNEL_HOP_LIMIT))?;
            s.bind(&SockAddr::from(SocketAddrV6::new(local, 0, 0, 0)))?;
            Ok(s)
        };
        Ok(Ends {
            v6: open(libc::IPPROTO_IPV6)?,
            v4: open(libc::IPPROTO_IPIP)?,
        })
    }

    /// Sends one packet read from a device to `peer`; false when it is neither IPv6 nor IPv4.
    fn send(&self, peer: &SockAddr, pkt: &[u8]) -> io::Result<bool> {
        let s = match pkt.first().map(|b| b >> 4) {
            Some(6) => &self.v6,
            Some(4) => &self.v4,
            _ => return Ok(false),
        };
        s.send_to(pkt, peer)?;
        Ok(true)
    }
}

/// Largest packet a device or socket gives: an IPv6 payload length is 16 bits.
const MAX_PACKET: usize = 65_575;

/// Stack of a device's or the receiver's thread.
const WORKER_STACK: usize = 256 * 1024;

/// A thread and the eventfd that stops it; stopped and joined when dropped.
struct Worker {
    stop: Arc<Stop>,
    thread: Option<JoinHandle<()>>,
}

impl Worker {
    fn spawn(name: String, f: impl FnOnce(&Stop) + Send + 'static) -> io::Result<Worker> {
        let stop = Arc::new(Stop::new()?);
        let s = stop.clone();
        // An LMA has a device (and a thread) per MAG: small stacks; the packet buffers are on
        // the heap.
        let thread = std::thread::Builder::new()
            .name(name)
            .stack_size(WORKER_STACK)
            .spawn(move || f(&s))?;
        Ok(Worker {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.stop.signal();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The local tunnel end: its raw sockets, the device decapsulated packets enter by, and the
/// thread between them.
struct Ingress {
    local: Ipv6Addr,
    index: u32,
    ends: Arc<Ends>,
    /// Wakes the thread when a hold is armed (its wait changes).
    wake: Arc<Stop>,
    // Dropped first: the thread stops before the device closes.
    _worker: Worker,
}

/// `recv_from` into an initialized buffer.
#[allow(unsafe_code)]
fn recv_from(s: &Socket, buf: &mut [u8]) -> io::Result<(usize, SockAddr)> {
    // SAFETY: `[u8]` and `[MaybeUninit<u8>]` have the same layout, and recv_from only writes
    // initialized bytes into it.
    let uninit = unsafe { &mut *(buf as *mut [u8] as *mut [std::mem::MaybeUninit<u8>]) };
    s.recv_from(uninit)
}

/// What a peer's device is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Use {
    /// Routes go into it.
    Carrying,
    /// No route since then; it lingers for its peer.
    Idle(Instant),
    /// Being closed and deleted off the path of the changes; its name is busy until then.
    Closing,
}

/// A peer's device and the thread that sends what is routed into it.
struct Device {
    name: String,
    local: Ipv6Addr,
    remote: Ipv6Addr,
    used: Use,
    /// `None` once [`Use::Closing`] took it.
    worker: Option<Worker>,
    /// End markers for its thread to send after what was routed into the device before them.
    mail: Arc<Mailbox>,
}

/// Packets a device's thread sends after draining its device: the end markers of the
/// prefixes routed away from it ([`crate::marker`]).
struct Mailbox {
    wake: Stop,
    queue: Mutex<Vec<Vec<u8>>>,
}

/// What the tunnel end holds for end markers, shared with its thread.
#[derive(Default)]
struct HeldForMarkers {
    holds: Mutex<Holds>,
    /// Whether any hold is armed: the thread looks at the holds only then.
    armed: AtomicBool,
}

#[derive(Default)]
struct State {
    /// Each peer's device, by link index.
    devices: HashMap<u32, Device>,
    ingress: Option<Ingress>,
    /// The connection the devices were made on; an idle device is deleted on it.
    nl: Option<Netlink>,
}

/// The pairs of one [`crate::Kernel`] backend and the threads that carry their packets.
/// Dropping it stops the threads and closes the sockets; the pairs and the routes into them
/// stay for the next daemon ([`Forwarder::create`] takes them over).
pub(crate) struct Forwarder {
    state: Arc<Mutex<State>>,
    counters: Arc<TunCounters>,
    held: Arc<HeldForMarkers>,
    /// How long a device without routes stays for its peer.
    linger: Duration,
}

/// How often a device waits for a closing one of the same name to be gone.
const CLOSING_POLL: Duration = Duration::from_millis(2);

/// How long it waits at most.
const CLOSING_WAIT: Duration = Duration::from_secs(5);

impl std::fmt::Debug for Forwarder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forwarder")
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

fn tun_error(op: &'static str, object: impl Into<String>) -> impl FnOnce(io::Error) -> Error {
    move |source| Error::Kernel {
        op,
        object: object.into(),
        source,
    }
}

impl Forwarder {
    pub(crate) fn new(linger: Duration) -> Forwarder {
        Forwarder {
            state: Arc::default(),
            counters: Arc::default(),
            held: Arc::default(),
            linger,
        }
    }

    pub(crate) fn counters(&self) -> &Arc<TunCounters> {
        &self.counters
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// The pair whose kernel's end is `name`, for the tunnel `ends`, in `nl`'s namespace, with
    /// the packet socket of its daemon's end (which `reads` what the kernel routes into the
    /// pair, or only sends); also runs `more` there. A right pair of that
    /// name is taken over as it is (nothing in the kernel changes: the routes into it stay);
    /// another link of that name is deleted if it is the tunnel's (its alias says so) and
    /// refused (EEXIST) if not, and the pair made: the kernel's end up, its
    /// MTU `mtu`, without neighbour resolution or offloads, the alias naming `ends`; the
    /// daemon's end up, its MTU [`IO_MTU`].
    async fn pair<T: Send>(
        nl: &Netlink,
        name: &str,
        ends: (Ipv6Addr, Ipv6Addr),
        mtu: u32,
        reads: bool,
        more: impl FnOnce() -> io::Result<T> + Send,
    ) -> Result<(Io, Pair, T)> {
        let links = nl.dump_links().await?;
        let found = links.iter().find(|l| l.name == name);
        let pair = match found.and_then(|l| right_pair(l, &links, ends, mtu)) {
            Some(p) => {
                // Idempotent (no change, no notification): a daemon killed while making
                // the pair may have left them on.
                let owned = name.to_owned();
                in_netns(nl, move || no_offloads(&owned))?
                    .map_err(tun_error("turn offloads off", name))?;
                p
            }
            None => {
                match found {
                    // Not ours: left alone.
                    Some(l) if !ours(l, &links) => {
                        return Err(tun_error("make tun pair", name)(
                            io::Error::from_raw_os_error(libc::EEXIST),
                        ));
                    }
                    Some(l) => nl.delete_link(l.index).await?,
                    None => {}
                }
                nl.add_tun_pair(name, &io_name(name)).await?;
                match Self::set_up(nl, name, ends, mtu).await {
                    Ok(p) => p,
                    Err(e) => {
                        // Half made: gone, so that the next try makes it again (a pair
                        // without the tunnel's alias would be refused as not ours).
                        if let Some(l) = nl
                            .dump_links()
                            .await
                            .ok()
                            .and_then(|ls| ls.into_iter().find(|l| l.name == name))
                        {
                            let _ = nl.delete_link(l.index).await;
                        }
                        return Err(e);
                    }
                }
            }
        };
        let p = pair.clone();
        let (io, made) = in_netns(nl, move || -> io::Result<(Io, T)> {
            let made = more()?;
            Ok((Io::open(&p, reads)?, made))
        })?
        .map_err(tun_error("open packet socket", name))?;
        Ok((io, pair, made))
    }

    /// Sets up the pair just made whose kernel's end is `name`: that end up, without
    /// neighbour resolution or offloads, its MTU `mtu` and the alias naming `ends`; the
    /// daemon's end up with [`IO_MTU`].
    async fn set_up(
        nl: &Netlink,
        name: &str,
        ends: (Ipv6Addr, Ipv6Addr),
        mtu: u32,
    ) -> Result<Pair> {
        let links = nl.dump_links().await?;
        let made = links.iter().find(|l| l.name == name);
        let (index, mac, io) = made
            .and_then(|l| Some((l.index, l.mac.clone(), l.veth_peer?)))
            .filter(|(_, mac, _)| mac.len() == 6)
            .ok_or_else(|| Error::NoSuchLink(format!("{name} (a veth pair just made)")))?;
        nl.set_tun_link(index, mtu, &alias(ends.0, ends.1)).await?;
        nl.set_link_mtu(io, IO_MTU).await?;
        nl.set_link_up(io, true).await?;
        let owned = name.to_owned();
        in_netns(nl, move || no_offloads(&owned))?.map_err(tun_error("turn offloads off", name))?;
        Ok(Pair { index, mac, io })
    }

    /// Terminates tunnels at `local`: opens its raw sockets and the pair whose kernel's end
    /// `name` what they receive enters the kernel by (taken over when a right one is there),
    /// and starts the thread between them; returns the kernel's end's link index. Once per
    /// address: a second address replaces the first.
    pub(crate) async fn terminate(&self, nl: &Netlink, local: Ipv6Addr, name: &str) -> Result<u32> {
        if let Some(i) = &self.lock().ingress
            && i.local == local
        {
            return Ok(i.index);
        }
        // The old end (another address) goes first: the new pair has the same name.
        self.lock().ingress = None;
        let (io, pair, ends) = Self::pair(
            nl,
            name,
            (local, Ipv6Addr::UNSPECIFIED),
            IO_MTU,
            false,
            move || Ends::open(local),
        )
        .await?;
        let ends = Arc::new(ends);
        let wake =
            Arc::new(Stop::new().map_err(tun_error("start tunnel receiver", local.to_string()))?);
        let worker = {
            let (ends, counters, held, wake) = (
                ends.clone(),
                self.counters.clone(),
                self.held.clone(),
                wake.clone(),
            );
            Worker::spawn(format!("{name}-rx"), move |stop| {
                ingress(&ends, &io, stop, &counters, &held, &wake)
            })
            .map_err(tun_error("start tunnel receiver", local.to_string()))?
        };
        let mut st = self.lock();
        st.nl = Some(nl.clone());
        st.ingress = Some(Ingress {
            local,
            index: pair.index,
            ends,
            wake,
            _worker: worker,
        });
        Ok(pair.index)
    }

    /// Lets the ingress go (its thread stops, its sockets close) if the kernel no longer holds
    /// it right among `links` (someone deleted it, or set its daemon's end down): the next
    /// [`Forwarder::terminate`] makes it again. Nothing when it is right or there is none.
    pub(crate) fn check_ingress(&self, links: &[crate::msg::KLink]) {
        let mut st = self.lock();
        let broken = st.ingress.as_ref().is_some_and(|i| {
            links
                .iter()
                .find(|k| k.index == i.index)
                .and_then(|k| right_pair(k, links, (i.local, Ipv6Addr::UNSPECIFIED), IO_MTU))
                .is_none()
        });
        if broken {
            st.ingress = None;
        }
    }

    /// Stops terminating tunnels: the sockets close and the ingress pair `name` is deleted,
    /// also when a daemon before this one made it.
    pub(crate) async fn stop_terminating(&self, nl: &Netlink, name: &str) -> Result<()> {
        let gone = self.lock().ingress.take();
        if let Some(i) = gone {
            // The thread stops first.
            let _ = tokio::task::spawn_blocking(move || drop(i)).await;
        }
        // Only a pair of the tunnel's: a link of that name that is not ours is left alone.
        let links = nl.dump_links().await?;
        if let Some(l) = links.iter().find(|l| l.name == name && ours(l, &links)) {
            nl.delete_link(l.index).await?;
        }
        Ok(())
    }

    /// Makes the pair of `t` in `nl`'s namespace (the kernel's end named `t.name`, with its
    /// MTU and alias), or takes over the right one found there, and starts sending what is
    /// routed into it to the peer; returns the kernel's end's link index. The tunnel's local
    /// end must be terminated here first ([`Forwarder::terminate`]): its sockets send.
    pub(crate) async fn create(&self, nl: &Netlink, t: &KTunnel) -> Result<u32> {
        let ends = self
            .lock()
            .ingress
            .as_ref()
            .filter(|i| i.local == t.local)
            .map(|i| i.ends.clone())
            .ok_or_else(|| Error::Invalid {
                op: "tun",
                reason: format!(
                    "no tunnel end at {}: prepare its termination first",
                    t.local
                ),
            })?;
        if let Some(index) = self.reuse(nl, t).await? {
            return Ok(index);
        }
        let (io, Pair { index, .. }, ()) =
            Self::pair(nl, &t.name, (t.local, t.remote), t.mtu, true, || Ok(())).await?;
        let peer = SockAddr::from(SocketAddrV6::new(t.remote, 0, 0, 0));
        let counters = self.counters.clone();
        let mail = Arc::new(Mailbox {
            wake: Stop::new().map_err(tun_error("start tun device thread", &t.name))?,
            queue: Mutex::default(),
        });
        let box_ = mail.clone();
        let worker = Worker::spawn(format!("{}-tx", t.name), move |stop| {
            egress(&io, &ends, &peer, stop, &counters, &box_)
        })
        .map_err(tun_error("start tun device thread", &t.name))?;
        // A device made again under the same index replaces the old one's thread.
        let mut st = self.lock();
        st.nl = Some(nl.clone());
        st.devices.insert(
            index,
            Device {
                name: t.name.clone(),
                local: t.local,
                remote: t.remote,
                used: Use::Carrying,
                worker: Some(worker),
                mail,
            },
        );
        Ok(index)
    }

    /// Whether a device named like `t` is there: that of `t`'s peer carries again (its link
    /// index); another peer's idle one is closed and deleted, a closing one waited for.
    async fn reuse(&self, nl: &Netlink, t: &KTunnel) -> Result<Option<u32>> {
        let deadline = Instant::now() + CLOSING_WAIT;
        loop {
            let other = {
                let mut st = self.lock();
                let Some((&index, d)) = st.devices.iter_mut().find(|(_, d)| d.name == t.name)
                else {
                    return Ok(None);
                };
                match d.used {
                    Use::Closing if Instant::now() < deadline => None,
                    Use::Carrying | Use::Idle(_) if (d.local, d.remote) == (t.local, t.remote) => {
                        d.used = Use::Carrying;
                        return Ok(Some(index));
                    }
                    _ => st.devices.remove(&index).map(|d| (index, d)),
                }
            };
            match other {
                None => tokio::time::sleep(CLOSING_POLL).await,
                Some((index, d)) => {
                    // Closed, and deleted too: see `delete`.
                    drop(d);
                    delete(nl, index).await;
                }
            }
        }
    }

    /// The link indexes of the peers' devices it holds, idle ones included.
    pub(crate) fn indexes(&self) -> Vec<u32> {
        self.lock().devices.keys().copied().collect()
    }

    /// Whether link `index` is a peer's device this forwarder holds and can carry.
    pub(crate) fn holds(&self, index: u32) -> bool {
        self.lock()
            .devices
            .get(&index)
            .is_some_and(|d| d.used != Use::Closing)
    }

    /// Routes go into device `index` again (a reconcile kept it).
    pub(crate) fn carry(&self, index: u32) {
        if let Some(d) = self.lock().devices.get_mut(&index)
            && d.used != Use::Closing
        {
            d.used = Use::Carrying;
        }
    }

    /// No route goes into device `index` any longer: it lingers for its peer, then closes
    /// (and is deleted) off the path of the changes. False when it was not one of ours.
    pub(crate) fn idle(&self, index: u32) -> bool {
        let since = Instant::now();
        match self.lock().devices.get_mut(&index) {
            Some(d) if d.used == Use::Carrying => d.used = Use::Idle(since),
            Some(_) => return true,
            None => return false,
        }
        // Without a runtime (nothing here makes one) it stays until its slot is needed or the
        // backend stops.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let (state, linger) = (Arc::downgrade(&self.state), self.linger);
            rt.spawn(async move {
                tokio::time::sleep(linger).await;
                expire(state, index, since).await;
            });
        }
        true
    }

    /// The names of the devices without routes: `peer`'s idle one from `local`, and those of
    /// the others (which a new peer's device takes the name of last).
    pub(crate) fn lingering(
        &self,
        local: Option<Ipv6Addr>,
        peer: Ipv6Addr,
    ) -> (Option<String>, Vec<String>) {
        let st = self.lock();
        let mut mine = None;
        let mut others = Vec::new();
        for d in st.devices.values().filter(|d| d.used != Use::Carrying) {
            if matches!(d.used, Use::Idle(_)) && Some(d.local) == local && d.remote == peer {
                mine = Some(d.name.clone());
            } else {
                others.push(d.name.clone());
            }
        }
        (mine, others)
    }

    /// Sends the end marker of `prefix` to `peer` ([`crate::marker`]), after whatever was
    /// routed into the peer's device before this call: its thread drains the device first.
    /// Without a device for the peer, straight from the tunnel end. False when there is no
    /// tunnel end to send from.
    pub(crate) fn send_end_marker(&self, peer: Ipv6Addr, prefix: IpNet) -> bool {
        let st = self.lock();
        if let Some(d) = st
            .devices
            .values()
            .find(|d| d.remote == peer && d.worker.is_some())
        {
            lock(&d.mail.queue).push(end_marker(d.local, prefix));
            d.mail.wake.signal();
            return true;
        }
        let Some(i) = &st.ingress else {
            return false;
        };
        let to = SockAddr::from(SocketAddrV6::new(peer, 0, 0, 0));
        send_marker(&i.ends, &to, &end_marker(i.local, prefix), &self.counters);
        true
    }

    /// Holds what `from` sends to `prefix` through the tunnel until the end marker of
    /// `marker` comes, or `wait` passes ([`crate::marker::Holds::arm`]).
    pub(crate) fn hold_for_end_marker(
        &self,
        prefix: IpNet,
        marker: IpNet,
        from: Ipv6Addr,
        wait: Duration,
    ) {
        {
            let mut h = lock(&self.held.holds);
            h.arm(prefix, marker, from, wait);
            self.held.armed.store(true, Ordering::Release);
        }
        if let Some(i) = &self.lock().ingress {
            i.wake.signal();
        }
    }

    /// Stops carrying peer pair `index` (its thread stops, its socket closes); the caller
    /// deletes the pair. False when it was not one of ours.
    pub(crate) fn close(&self, index: u32) -> bool {
        let removed = self.lock().devices.remove(&index);
        removed.is_some()
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        let mut st = lock(&self.state);
        st.devices.clear();
        st.ingress = None;
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Deletes pair `index` (both its ends, and the routes into it).
async fn delete(nl: &Netlink, index: u32) {
    if let Err(e) = nl.delete_link(index).await {
        tracing::warn!(error = %e, "tun pair: delete failed");
    }
}

/// Closes and deletes pair `index` if it is still idle since `since`; its name stays busy
/// until then ([`Use::Closing`]).
async fn expire(state: Weak<Mutex<State>>, index: u32, since: Instant) {
    let (worker, nl) = {
        let Some(state) = state.upgrade() else {
            return;
        };
        let mut st = lock(&state);
        let nl = st.nl.clone();
        match st.devices.get_mut(&index) {
            Some(d) if d.used == Use::Idle(since) => {
                d.used = Use::Closing;
                (d.worker.take(), nl)
            }
            _ => return,
        }
    };
    // Its thread is stopped and joined: not on the runtime's threads.
    let _ = tokio::task::spawn_blocking(move || drop(worker)).await;
    // Not once the backend is gone: a backend opened after it may have taken the pair over.
    if let Some(nl) = nl.filter(|_| state.strong_count() > 0) {
        delete(&nl, index).await;
    }
    if let Some(state) = state.upgrade() {
        let mut st = lock(&state);
        if st
            .devices
            .get(&index)
            .is_some_and(|d| d.used == Use::Closing)
        {
            st.devices.remove(&index);
        }
    }
}

/// Runs `f` in `nl`'s namespace (where the devices and sockets must be made).
fn in_netns<R: Send>(nl: &Netlink, f: impl FnOnce() -> R + Send) -> Result<R> {
    match nl.netns() {
        Some(ns) => ns.run(f),
        None => Ok(f()),
    }
}

/// Sends the end marker of `prefix` from `local` to `peer` on a raw socket of its own, in
/// `nl`'s namespace: for the backends in which the kernel encapsulates.
pub(crate) fn send_end_marker_once(
    nl: &Netlink,
    local: Ipv6Addr,
    peer: Ipv6Addr,
    prefix: IpNet,
) -> Result<()> {
    // The inner packet's protocol: IPv6-in-IPv6, or IPv4-in-IPv6 for an IPv4 home address.
    let inner = match prefix {
        IpNet::V6(_) => libc::IPPROTO_IPV6,
        IpNet::V4(_) => libc::IPPROTO_IPIP,
    };
    in_netns(nl, || -> io::Result<()> {
        let s = Socket::new(
            Domain::IPV6,
            Type::RAW.cloexec(),
            Some(Protocol::from(inner)),
        )?;
        s.set_unicast_hops_v6(u32::from(crate::msg::TUNNEL_HOP_LIMIT))?;
        s.bind(&SockAddr::from(SocketAddrV6::new(local, 0, 0, 0)))?;
        s.send_to(
            &end_marker(local, prefix),
            &SockAddr::from(SocketAddrV6::new(peer, 0, 0, 0)),
        )?;
        Ok(())
    })?
    .map_err(tun_error("send end marker", peer.to_string()))
}

/// The destination of an IPv6 packet, or of an IPv4 one (an IPv4 home address's).
pub fn destination(pkt: &[u8]) -> Option<IpAddr> {
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

/// Whether a packet the kernel put into a peer's device belongs in the tunnel: not what the
/// device itself sends on its link (MLD reports and the like, from a link-local address or to
/// a multicast group), which RFC 5213 §6.10.5 keeps off the tunnel.
fn tunnelled(pkt: &[u8]) -> bool {
    match pkt.first().map(|b| b >> 4) {
        Some(6) if pkt.len() >= 40 => {
            let src = Ipv6Addr::from(<[u8; 16]>::try_from(&pkt[8..24]).unwrap_or_default());
            let dst = Ipv6Addr::from(<[u8; 16]>::try_from(&pkt[24..40]).unwrap_or_default());
            !src.is_unicast_link_local() && !dst.is_multicast() && !dst.is_unicast_link_local()
        }
        Some(4) if pkt.len() >= 20 => {
            let dst = std::net::Ipv4Addr::new(pkt[16], pkt[17], pkt[18], pkt[19]);
            !dst.is_multicast() && !dst.is_broadcast()
        }
        _ => false,
    }
}

/// Reads what the kernel routes into the pair of `io` and sends it to `peer`, until `stop`;
/// and the end markers of `mail`, each after what the pair held when it came.
fn egress(
    io: &Io,
    ends: &Ends,
    peer: &SockAddr,
    stop: &Stop,
    counters: &TunCounters,
    mail: &Mailbox,
) {
    let mut buf = vec![0u8; MAX_PACKET];
    let fds = [
        io.socket.as_raw_fd(),
        stop.0.as_raw_fd(),
        mail.wake.0.as_raw_fd(),
    ];
    let mut ready = Vec::with_capacity(3);
    loop {
        if let Err(e) = wait_readable(&fds, &mut ready, None) {
            tracing::error!(error = %e, "tun device: poll failed; its tunnel stops");
            return;
        }
        if ready.get(1) == Some(&true) {
            return;
        }
        // Taken before the device is drained: what was routed into it before a marker was
        // asked for is in it now, and goes first.
        let markers = if ready.get(2) == Some(&true) {
            mail.wake.clear();
            std::mem::take(&mut *lock(&mail.queue))
        } else {
            Vec::new()
        };
        loop {
            match io.recv(&mut buf) {
                Ok(n) if !tunnelled(&buf[..n]) => {
                    counters.kept_off.fetch_add(1, Ordering::Relaxed);
                }
                Ok(n) => match ends.send(peer, &buf[..n]) {
                    Ok(true) => {
                        counters.encapsulated.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(false) => {
                        counters.refused.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        counters.errors.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(error = %e, "tun device: send to the peer refused");
                    }
                },
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // The daemon's end was set down (the kernel says so once, then the socket
                // reads again when it comes back up; a reconcile makes such a pair again).
                Err(e) if e.raw_os_error() == Some(libc::ENETDOWN) => {
                    counters.errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = %e, "tun pair: its daemon's end went down");
                    break;
                }
                Err(e) => {
                    tracing::error!(error = %e, "tun pair: read failed; its tunnel stops");
                    return;
                }
            }
        }
        for m in markers {
            send_marker(ends, peer, &m, counters);
        }
    }
}

/// Receives what is sent to `ends` and writes each inner packet into `device`, until `stop`.
/// Like the seg6 backend's End.DT6 and End.DX4, it takes tunnelled packets from any source;
/// a payload that is not an IPv6 packet (protocol 41) or an IPv4 one (protocol 4) is refused.
/// While `held` has holds armed, what they hold waits for its end marker ([`crate::marker`]);
/// `wake` says a hold was armed.
fn ingress(
    ends: &Ends,
    device: &Io,
    stop: &Stop,
    counters: &TunCounters,
    held: &HeldForMarkers,
    wake: &Stop,
) {
    let mut buf = vec![0u8; MAX_PACKET];
    let fds = [
        ends.v6.as_raw_fd(),
        ends.v4.as_raw_fd(),
        stop.0.as_raw_fd(),
        wake.0.as_raw_fd(),
    ];
    let mut ready = Vec::with_capacity(4);
    let writer = device;
    let mut until = None;
    loop {
        if let Err(e) = wait_readable(&fds, &mut ready, until) {
            tracing::error!(error = %e, "tunnel receiver: poll failed; it stops");
            return;
        }
        if ready.get(2) == Some(&true) {
            for p in lock(&held.holds).release_all() {
                write_inner(writer, &p, counters);
            }
            return;
        }
        if ready.get(3) == Some(&true) {
            wake.clear();
        }
        for (socket, version) in [(&ends.v6, 6u8), (&ends.v4, 4u8)] {
            loop {
                let (n, from) = match recv_from(socket, &mut buf) {
                    Ok(r) => r,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        counters.errors.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(error = %e, "tunnel receiver: receive failed");
                        break;
                    }
                };
                let pkt = &buf[..n];
                if pkt.first().map(|b| b >> 4) != Some(version) {
                    counters.refused.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                if !held.armed.load(Ordering::Acquire) {
                    write_inner(writer, pkt, counters);
                    continue;
                }
                let src = from
                    .as_socket_ipv6()
                    .map_or(Ipv6Addr::UNSPECIFIED, |a| *a.ip());
                let verdict = lock(&held.holds).receive(src, pkt);
                match verdict {
                    Verdict::Pass => write_inner(writer, pkt, counters),
                    Verdict::Held => {
                        counters.held_for_end_marker.fetch_add(1, Ordering::Relaxed);
                    }
                    Verdict::Marker(kept) => {
                        counters
                            .end_markers_received
                            .fetch_add(1, Ordering::Relaxed);
                        for p in kept {
                            write_inner(writer, &p, counters);
                        }
                    }
                    Verdict::Full(kept) => {
                        counters
                            .holds_without_marker
                            .fetch_add(1, Ordering::Relaxed);
                        for p in kept {
                            write_inner(writer, &p, counters);
                        }
                    }
                }
            }
        }
        until = None;
        if held.armed.load(Ordering::Acquire) {
            let mut h = lock(&held.holds);
            let (ended, kept) = h.expire(Instant::now());
            counters
                .holds_without_marker
                .fetch_add(ended as u64, Ordering::Relaxed);
            for p in kept {
                write_inner(writer, &p, counters);
            }
            until = h.next_expiry();
            if h.is_empty() {
                held.armed.store(false, Ordering::Release);
            }
        }
    }
}

/// Sends an end marker from `ends` to `peer`, counted.
fn send_marker(ends: &Ends, peer: &SockAddr, marker: &[u8], counters: &TunCounters) {
    match ends.send(peer, marker) {
        Ok(_) => {
            counters.end_markers_sent.fetch_add(1, Ordering::Relaxed);
        }
        Err(e) => {
            counters.errors.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(error = %e, "tunnel: end marker refused");
        }
    }
}

/// Sends one inner packet into the kernel by the ingress pair; a packet socket takes a
/// packet whole or not at all.
fn write_inner(writer: &Io, pkt: &[u8], counters: &TunCounters) {
    match writer.send(pkt) {
        Ok(w) if w == pkt.len() => {
            counters.decapsulated.fetch_add(1, Ordering::Relaxed);
        }
        Ok(_) => {
            counters.errors.fetch_add(1, Ordering::Relaxed);
        }
        Err(e) => {
            counters.errors.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(error = %e, "tunnel receiver: send into the ingress pair failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pair_is_taken_over_only_when_right_and_deleted_only_when_ours() {
        use crate::msg::KLink;
        let (local, remote): (Ipv6Addr, Ipv6Addr) = (
            "2001:db8::1".parse().unwrap(),
            "2001:db8::2".parse().unwrap(),
        );
        let kernels = KLink {
            index: 6,
            name: "pmip6t0".into(),
            mtu: 1460,
            mac: vec![2, 0, 0, 0, 0, 1],
            up: true,
            tun: Some((local, remote)),
            veth_peer: Some(7),
            noarp: true,
            ..KLink::default()
        };
        let daemons = KLink {
            index: 7,
            name: "pmip6t0io".into(),
            mtu: IO_MTU,
            up: true,
            veth_peer: Some(6),
            ..KLink::default()
        };
        let links = vec![kernels.clone(), daemons.clone()];
        let pair = right_pair(&kernels, &links, (local, remote), 1460).expect("right");
        assert_eq!((pair.index, pair.io), (6, 7));
        // Another tunnel, another MTU, a daemon's end down or gone, neighbour resolution on,
        // no link-layer address: not right.
        assert!(right_pair(&kernels, &links, (local, local), 1460).is_none());
        assert!(right_pair(&kernels, &links, (local, remote), 1400).is_none());
        let down = KLink {
            up: false,
            ..daemons.clone()
        };
        assert!(right_pair(&kernels, &[kernels.clone(), down], (local, remote), 1460).is_none());
        assert!(right_pair(&kernels, &links[..1], (local, remote), 1460).is_none());
        for broken in [
            KLink {
                noarp: false,
                ..kernels.clone()
            },
            KLink {
                mac: Vec::new(),
                ..kernels.clone()
            },
        ] {
            assert!(right_pair(&broken, &links, (local, remote), 1460).is_none());
        }
        // Ours: by its alias, or (half made, no alias yet) by its daemon's end's name.
        assert!(ours(&kernels, &links));
        let half = KLink {
            tun: None,
            ..kernels.clone()
        };
        assert!(ours(&half, &links));
        let foreign_peer = KLink {
            name: "pmip6x".into(),
            ..daemons
        };
        assert!(!ours(&half, &[half.clone(), foreign_peer]));
        assert!(!ours(
            &KLink {
                veth_peer: None,
                ..half.clone()
            },
            &links
        ));
    }

    #[test]
    fn the_pairs_names_are_told_from_others() {
        for own in [
            "pmip6t0",
            "pmip6t0io",
            "pmip6t13",
            "pmip6t13io",
            "pmip6tin",
            "pmip6tinio",
            "pmipio0",
            "pmipio12",
        ] {
            assert!(is_pair_name("pmip6t", own), "{own}");
        }
        // The daemon's end of a kernel's end whose name fits is named after it.
        for kernels in ["pmip6t0", "pmip6t13", "pmip6tin"] {
            assert!(is_pair_name("pmip6t", &io_name(kernels)), "{kernels}");
        }
        for other in [
            "pmip6t",
            "pmip6tio",
            "pmip6tx",
            "pmip6t0x",
            "pmipacc1",
            "pmipbuf0",
            "pmipio",
            "eth0",
            "veth12",
            "pmip6t0ioio",
        ] {
            assert!(!is_pair_name("pmip6t", other), "{other}");
        }
        assert_eq!(io_name("averylongname12"), "pmipio%d");
    }

    #[test]
    fn alias_round_trips_and_refuses_others() {
        let (l, r): (Ipv6Addr, Ipv6Addr) = (
            "2001:db8::1".parse().unwrap(),
            "2001:db8::2".parse().unwrap(),
        );
        assert_eq!(parse_alias(&alias(l, r)), Some((l, r)));
        for bad in [
            "",
            "pmip-tun",
            "pmip-tun 2001:db8::1",
            "pmip-tun 2001:db8::1 2001:db8::2 x",
            "other 2001:db8::1 2001:db8::2",
            "pmip-tun 10.0.0.1 2001:db8::2",
        ] {
            assert_eq!(parse_alias(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn destination_of_an_ipv6_or_ipv4_packet() {
        let mut p = vec![0x60u8; 40];
        p[24..40].copy_from_slice(&"2001:db8::7".parse::<Ipv6Addr>().unwrap().octets());
        assert_eq!(destination(&p), Some("2001:db8::7".parse().unwrap()));
        let mut v4 = vec![0x45u8; 20];
        v4[16..20].copy_from_slice(&[192, 0, 2, 10]);
        assert_eq!(destination(&v4), Some("192.0.2.10".parse().unwrap()));
        let home: ipnet::IpNet = "192.0.2.10/32".parse().unwrap();
        assert!(home.contains(&destination(&v4).unwrap()));
        assert_eq!(destination(&[0x45; 19]), None);
        assert_eq!(destination(&[0x60; 10]), None);
        assert_eq!(destination(&[0x10; 40]), None);
    }

    #[test]
    fn only_routed_packets_enter_the_tunnel() {
        fn v6(src: &str, dst: &str) -> Vec<u8> {
            let mut p = vec![0u8; 48];
            p[0] = 0x60;
            p[6] = 17;
            p[8..24].copy_from_slice(&src.parse::<Ipv6Addr>().unwrap().octets());
            p[24..40].copy_from_slice(&dst.parse::<Ipv6Addr>().unwrap().octets());
            p
        }
        fn v4(dst: [u8; 4]) -> Vec<u8> {
            let mut p = vec![0u8; 28];
            p[0] = 0x45;
            p[16..20].copy_from_slice(&dst);
            p
        }
        assert!(tunnelled(&v6("2001:db8:100::2", "2001:db8:200::2")));
        // The device's own MLD report, and anything to or from a link-local address.
        assert!(!tunnelled(&v6("fe80::1", "ff02::16")));
        assert!(!tunnelled(&v6("2001:db8:100::2", "ff0e::1")));
        assert!(!tunnelled(&v6("2001:db8:100::2", "fe80::2")));
        assert!(tunnelled(&v4([198, 51, 100, 2])));
        assert!(!tunnelled(&v4([224, 0, 0, 22])));
        assert!(!tunnelled(&v4([255, 255, 255, 255])));
        // Truncated or not IP at all.
        assert!(!tunnelled(&v6("2001:db8::1", "2001:db8::2")[..39]));
        assert!(!tunnelled(&[0x45; 19]));
        assert!(!tunnelled(&[]));
        assert!(!tunnelled(&[0x20; 60]));
    }

    #[test]
    fn device_names_are_checked_before_the_kernel_sees_them() {
        for bad in ["", "sixteen-bytes-xx"] {
            let e = open_device(bad, true).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{bad:?}");
        }
    }
}
