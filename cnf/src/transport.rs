//! The signalling transport: Mobility Headers over raw IPv6 sockets (next header 135), received
//! and sent in batches (`recvmmsg` / `sendmmsg`).
//!
//! The kernel computes the checksum of what we send and verifies (and drops on mismatch) what
//! we receive, because the socket has `IPV6_CHECKSUM` at offset 4 (RFC 3542 §3.1); so what
//! comes out of [`SignallingTransport::recv_batch`] goes to the state machines'
//! `handle_message_trusted`.
//!
//! [`SignallingTransport`] is the seam for the RFC 5844 IPv4 transport (UDP 5436), which comes
//! later with IPv4 home addresses.

use std::io;
use std::mem::{MaybeUninit, size_of};
use std::net::{Ipv6Addr, SocketAddrV6};
use std::os::fd::AsRawFd;

use pmip::output::Transmit;
use pmip::wire::IPPROTO_MH;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::unix::AsyncFd;

/// Largest Mobility Header (Header Len 255).
pub const MAX_MESSAGE: usize = 2048;
/// Messages moved per system call.
pub const BATCH: usize = 64;

/// One received message: its addresses, and where it is in the batch's buffers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    pub len: usize,
}

/// Buffers for one batch of received messages.
#[derive(Debug)]
pub struct RecvBatch {
    bufs: Vec<[u8; MAX_MESSAGE]>,
    meta: Vec<Received>,
    count: usize,
}

impl Default for RecvBatch {
    fn default() -> Self {
        RecvBatch {
            bufs: vec![[0u8; MAX_MESSAGE]; BATCH],
            meta: vec![
                Received {
                    src: Ipv6Addr::UNSPECIFIED,
                    dst: Ipv6Addr::UNSPECIFIED,
                    len: 0,
                };
                BATCH
            ],
            count: 0,
        }
    }
}

impl RecvBatch {
    /// Keeps the messages for which `f` returns the range of the octets to deliver (an ESP
    /// packet's Mobility Header, after decryption in place), moved to the start of their
    /// buffers; drops the others. Returns how many are kept.
    pub(crate) fn retain_map(
        &mut self,
        mut f: impl FnMut(Received, &mut [u8]) -> Option<core::ops::Range<usize>>,
    ) -> usize {
        let mut kept = 0;
        for i in 0..self.count {
            let meta = self.meta[i];
            let len = meta.len.min(MAX_MESSAGE);
            let Some(r) = f(meta, &mut self.bufs[i][..len]) else {
                continue;
            };
            let r = r.start.min(len)..r.end.min(len);
            let n = r.len();
            if kept == i {
                self.bufs[i].copy_within(r, 0);
            } else {
                let (head, tail) = self.bufs.split_at_mut(i);
                head[kept][..n].copy_from_slice(&tail[0][r]);
            }
            self.meta[kept] = Received { len: n, ..meta };
            kept += 1;
        }
        self.count = kept;
        kept
    }

    /// The messages of the last receive.
    pub fn iter(&self) -> impl Iterator<Item = (Received, &[u8])> {
        self.meta
            .iter()
            .zip(&self.bufs)
            .take(self.count)
            .map(|(m, b)| (*m, &b[..m.len.min(MAX_MESSAGE)]))
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

/// Where Mobility Headers come from and go to.
pub trait SignallingTransport {
    /// The local address (LMA address or proxy-CoA).
    fn local(&self) -> Ipv6Addr;
    /// Waits for at least one message and receives up to a batch.
    fn recv_batch(&self, batch: &mut RecvBatch) -> impl Future<Output = io::Result<usize>> + Send;
    /// Sends every message; returns how many went out (the rest failed, e.g. no route).
    fn send_batch(&self, out: &[Transmit]) -> impl Future<Output = io::Result<usize>> + Send;
}

/// A raw IPv6 socket for the Mobility Header, bound to one local address.
#[derive(Debug)]
pub struct MhSocket {
    raw: RawSocket,
}

impl MhSocket {
    /// Opens the socket on `local`. Needs CAP_NET_RAW.
    pub fn bind(local: Ipv6Addr) -> io::Result<Self> {
        Ok(MhSocket {
            raw: RawSocket::bind(local, IPPROTO_MH, Some(4))?,
        })
    }
}

impl SignallingTransport for MhSocket {
    fn local(&self) -> Ipv6Addr {
        self.raw.local
    }

    async fn recv_batch(&self, batch: &mut RecvBatch) -> io::Result<usize> {
        self.raw.recv_batch(batch).await
    }

    async fn send_batch(&self, out: &[Transmit]) -> io::Result<usize> {
        self.raw.send_batch(out).await
    }
}

/// A raw IPv6 socket for one IP protocol, bound to one local address: what [`MhSocket`] is
/// made of, and the ESP socket of the userspace IPsec transport.
#[derive(Debug)]
pub(crate) struct RawSocket {
    pub(crate) fd: AsyncFd<Socket>,
    pub(crate) local: Ipv6Addr,
}

impl RawSocket {
    /// With `checksum_offset`, the kernel fills in and verifies the upper-layer checksum at
    /// that offset (RFC 3542 §3.1). Needs CAP_NET_RAW.
    pub(crate) fn bind(
        local: Ipv6Addr,
        protocol: u8,
        checksum_offset: Option<libc::c_int>,
    ) -> io::Result<Self> {
        let s = Socket::new(
            Domain::IPV6,
            Type::RAW,
            Some(Protocol::from(i32::from(protocol))),
        )?;
        s.set_nonblocking(true)?;
        if let Some(offset) = checksum_offset {
            set_checksum_offset(&s, offset)?;
        }
        // Room for bursts: a thousand MAGs re-registering at once.
        let _ = s.set_recv_buffer_size(8 << 20);
        let _ = s.set_send_buffer_size(8 << 20);
        s.bind(&SocketAddrV6::new(local, 0, 0, 0).into())?;
        Ok(RawSocket {
            fd: register(s)?,
            local,
        })
    }

    /// Waits for at least one packet and receives up to a batch.
    pub(crate) async fn recv_batch(&self, batch: &mut RecvBatch) -> io::Result<usize> {
        loop {
            let mut guard = self.fd.readable().await?;
            match guard.try_io(|s| recvmmsg(s.get_ref(), batch, self.local)) {
                Ok(r) => return r,
                Err(_would_block) => continue,
            }
        }
    }

    /// Sends every packet; returns how many went out.
    pub(crate) async fn send_batch(&self, out: &[Transmit]) -> io::Result<usize> {
        let mut sent = 0;
        while sent < out.len() {
            let mut guard = self.fd.writable().await?;
            match guard.try_io(|s| sendmmsg(s.get_ref(), &out[sent..])) {
                Ok(Ok(0)) => break,
                Ok(Ok(n)) => sent += n,
                // A message the kernel refuses (no route to that MAG, say) is skipped so
                // the others still go.
                Ok(Err(e)) if e.raw_os_error().is_some_and(is_per_message_error) => sent += 1,
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
        Ok(sent)
    }
}

fn is_per_message_error(errno: i32) -> bool {
    matches!(
        errno,
        libc::ENETUNREACH
            | libc::EHOSTUNREACH
            | libc::EADDRNOTAVAIL
            | libc::EMSGSIZE
            | libc::EINVAL
    )
}

#[allow(unsafe_code)]
fn register(s: Socket) -> io::Result<AsyncFd<Socket>> {
    // SAFETY: `Socket` owns its descriptor, keeps it open until dropped and always returns
    // the same one from `as_raw_fd`; the `AsyncFd` takes ownership of the `Socket`.
    unsafe { AsyncFd::register(s) }.map_err(|e| e.into_parts().1)
}

#[allow(unsafe_code)]
fn set_checksum_offset(s: &Socket, offset: libc::c_int) -> io::Result<()> {
    // SAFETY: a plain setsockopt on a valid socket with an int option value.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_IPV6,
            libc::IPV6_CHECKSUM,
            (&offset as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn sockaddr(a: Ipv6Addr) -> libc::sockaddr_in6 {
    // SAFETY-free construction: every field set explicitly.
    let mut sa: libc::sockaddr_in6 = zeroed_sockaddr();
    sa.sin6_family = libc::AF_INET6 as libc::sa_family_t;
    sa.sin6_addr = libc::in6_addr {
        s6_addr: a.octets(),
    };
    sa
}

fn zeroed_sockaddr() -> libc::sockaddr_in6 {
    libc::sockaddr_in6 {
        sin6_family: 0,
        sin6_port: 0,
        sin6_flowinfo: 0,
        sin6_addr: libc::in6_addr { s6_addr: [0; 16] },
        sin6_scope_id: 0,
    }
}

/// `recvmmsg` into the batch's buffers.
#[allow(unsafe_code, clippy::needless_range_loop)]
pub(crate) fn recvmmsg(s: &Socket, batch: &mut RecvBatch, local: Ipv6Addr) -> io::Result<usize> {
    let n = batch.bufs.len().min(BATCH);
    let mut addrs = [zeroed_sockaddr(); BATCH];
    let mut iovs: [MaybeUninit<libc::iovec>; BATCH] = [const { MaybeUninit::uninit() }; BATCH];
    let mut hdrs: [MaybeUninit<libc::mmsghdr>; BATCH] = [const { MaybeUninit::uninit() }; BATCH];
    for i in 0..n {
        iovs[i].write(libc::iovec {
            iov_base: batch.bufs[i].as_mut_ptr().cast(),
            iov_len: MAX_MESSAGE,
        });
    }
    for i in 0..n {
        // SAFETY: an all-zero msghdr is a valid value (null pointers, zero lengths); the
        // fields that matter are set right after.
        let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
        h.msg_hdr.msg_name = (&mut addrs[i] as *mut libc::sockaddr_in6).cast();
        h.msg_hdr.msg_namelen = size_of::<libc::sockaddr_in6>() as libc::socklen_t;
        h.msg_hdr.msg_iov = iovs[i].as_mut_ptr();
        h.msg_hdr.msg_iovlen = 1;
        hdrs[i].write(h);
    }
    // SAFETY: `hdrs[..n]` are initialised and point at `addrs`, `iovs` and the batch's
    // buffers, all alive and unaliased for the duration of the call.
    let r = unsafe {
        libc::recvmmsg(
            s.as_raw_fd(),
            hdrs.as_mut_ptr().cast(),
            n as libc::c_uint,
            libc::MSG_DONTWAIT,
            std::ptr::null_mut(),
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    let got = r as usize;
    let mut kept = 0;
    for i in 0..got {
        // SAFETY: initialised above and filled in by the kernel.
        let h = unsafe { hdrs[i].assume_init_ref() };
        if h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
            continue;
        }
        let meta = Received {
            src: Ipv6Addr::from(addrs[i].sin6_addr.s6_addr),
            dst: local,
            len: h.msg_len as usize,
        };
        if kept != i {
            let (head, tail) = batch.bufs.split_at_mut(i);
            head[kept][..meta.len].copy_from_slice(&tail[0][..meta.len]);
        }
        batch.meta[kept] = meta;
        kept += 1;
    }
    batch.count = kept;
    Ok(kept)
}

/// `sendmmsg` of as many messages as fit in one batch.
#[allow(unsafe_code, clippy::needless_range_loop)]
fn sendmmsg(s: &Socket, out: &[Transmit]) -> io::Result<usize> {
    let n = out.len().min(BATCH);
    let mut addrs = [zeroed_sockaddr(); BATCH];
    let mut iovs: [MaybeUninit<libc::iovec>; BATCH] = [const { MaybeUninit::uninit() }; BATCH];
    let mut hdrs: [MaybeUninit<libc::mmsghdr>; BATCH] = [const { MaybeUninit::uninit() }; BATCH];
    for (i, t) in out.iter().take(n).enumerate() {
        addrs[i] = sockaddr(t.dst);
        iovs[i].write(libc::iovec {
            iov_base: t.payload.as_ptr().cast_mut().cast(),
            iov_len: t.payload.len(),
        });
    }
    for i in 0..n {
        // SAFETY: as in `recvmmsg`.
        let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
        h.msg_hdr.msg_name = (&mut addrs[i] as *mut libc::sockaddr_in6).cast();
        h.msg_hdr.msg_namelen = size_of::<libc::sockaddr_in6>() as libc::socklen_t;
        h.msg_hdr.msg_iov = iovs[i].as_mut_ptr();
        h.msg_hdr.msg_iovlen = 1;
        hdrs[i].write(h);
    }
    // SAFETY: `hdrs[..n]` point at live `addrs`, `iovs` and payloads; the kernel only reads
    // the payloads.
    let r = unsafe {
        libc::sendmmsg(
            s.as_raw_fd(),
            hdrs.as_mut_ptr().cast(),
            n as libc::c_uint,
            libc::MSG_DONTWAIT,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two sockets on loopback: a batch sent by one arrives in one `recv_batch` at the other,
    /// with the checksum filled in by the kernel. Needs CAP_NET_RAW (the test suite runs as
    /// root).
    #[tokio::test]
    async fn batches_cross_loopback_with_kernel_checksums() {
        let lo = Ipv6Addr::LOCALHOST;
        let a = MhSocket::bind(lo).expect("raw socket (run the tests as root)");
        let hb = |seq: u8| Transmit {
            src: lo,
            dst: lo,
            // A Heartbeat request with a zero checksum: the kernel must fill it in.
            payload: vec![59, 1, 13, 0, 0, 0, 0, 0, 0, 0, 0, seq, 0, 0, 0, 0],
        };
        let out: Vec<Transmit> = (0..10).map(hb).collect();
        assert_eq!(a.send_batch(&out).await.unwrap(), 10);
        let mut batch = RecvBatch::default();
        let mut got = Vec::new();
        while got.len() < 10 {
            a.recv_batch(&mut batch).await.unwrap();
            for (m, bytes) in batch.iter() {
                assert_eq!(m.src, lo);
                let p = pmip::wire::MhPacket::new_checked(bytes).unwrap();
                assert!(p.verify_checksum(&lo, &lo), "kernel filled the checksum");
                got.push(bytes[11]);
            }
        }
        got.sort();
        assert_eq!(got, (0..10).collect::<Vec<u8>>());
    }
}
