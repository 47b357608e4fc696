//! Traffic inside the lab, made with sockets opened inside the namespaces (no `ping`, no
//! `iperf`): ICMPv6 echo of a chosen size, a sequence-numbered UDP stream whose receiver
//! measures loss, reordering, duplicates and gaps, and a TCP stream whose survival and
//! throughput over time are recorded.

use std::io::{Read, Write};
use std::net::{
    IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6, TcpListener, TcpStream, UdpSocket,
};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use datapath::netns::NetNs;
use socket2::{Domain, Protocol, Socket, Type};

/// Opens a socket inside `ns` (it stays in that namespace whatever thread uses it).
fn in_ns<T: Send>(ns: &NetNs, f: impl FnOnce() -> std::io::Result<T> + Send) -> anyhow::Result<T> {
    Ok(ns.run(f)??)
}

#[allow(unsafe_code)]
fn set_dontfrag(s: &Socket) -> std::io::Result<()> {
    let one: libc::c_int = 1;
    // SAFETY: setsockopt with an int value on a valid socket.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_IPV6,
            libc::IPV6_DONTFRAG,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Sends `count` ICMPv6 Echo Requests of `ip_len` octets (IPv6 header included, so 1500 is a
/// full-size packet on a 1500-byte link) from inside `ns` to `dst`, never fragmented, and
/// returns how many Echo Replies came back within `timeout`.
pub fn ping(
    ns: &NetNs,
    dst: Ipv6Addr,
    ip_len: usize,
    count: u16,
    timeout: Duration,
) -> anyhow::Result<u16> {
    if ip_len < 48 {
        bail!("an echo needs at least 48 octets");
    }
    let s = in_ns(ns, || {
        let s = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::ICMPV6))?;
        set_dontfrag(&s)?;
        s.set_read_timeout(Some(Duration::from_millis(50)))?;
        Ok(s)
    })?;
    let id = (std::process::id() & 0xffff) as u16;
    let to: SocketAddr = SocketAddrV6::new(dst, 0, 0, 0).into();
    let mut got = std::collections::BTreeSet::new();
    let deadline = Instant::now() + timeout;
    let mut next = 0u16;
    let mut buf = [0u8; 2048];
    while Instant::now() < deadline && (got.len() as u16) < count {
        if next < count {
            let mut pkt = vec![0u8; ip_len - 40];
            pkt[0] = 128;
            pkt[4..6].copy_from_slice(&id.to_be_bytes());
            pkt[6..8].copy_from_slice(&next.to_be_bytes());
            for (i, b) in pkt.iter_mut().enumerate().skip(8) {
                *b = i as u8;
            }
            s.send_to(&pkt, &to.into())
                .with_context(|| format!("echo request of {ip_len} octets to {dst}"))?;
            next += 1;
        }
        // Wait no longer than the deadline: the caller's timeout is the probe's resolution.
        let left = deadline.saturating_duration_since(Instant::now());
        s.set_read_timeout(Some(
            left.clamp(Duration::from_millis(1), Duration::from_millis(50)),
        ))?;
        if let Ok(n) = (&s).read(&mut buf) {
            let b = &buf[..n];
            if b.len() >= 8 && b[0] == 129 && b[4..6] == id.to_be_bytes() && b.len() == ip_len - 40
            {
                got.insert(u16::from_be_bytes([b[6], b[7]]));
            }
        }
    }
    Ok(got.len() as u16)
}

/// The receive buffer of a UDP stream's receiver (set with `SO_RCVBUFFORCE`, above the
/// namespace's `rmem_max`; the lab runs as root).
const RECEIVE_BUFFER: usize = 16 << 20;

#[allow(unsafe_code)]
fn set_rcvbuf_force(s: &Socket, bytes: usize) -> std::io::Result<()> {
    let v = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    // SAFETY: setsockopt with an int value on a valid socket.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Datagrams the UDP sockets of namespace `ns` dropped for a full receive buffer
/// (`Udp6RcvbufErrors` and IPv4's `RcvbufErrors`): packets that reached the receiver's host and
/// were lost by the receiver, not by the network.
pub fn receive_buffer_drops(ns: &NetNs) -> anyhow::Result<u64> {
    let (v6, v4) = ns.run(|| {
        Ok::<_, std::io::Error>((
            std::fs::read_to_string("/proc/thread-self/net/snmp6")?,
            std::fs::read_to_string("/proc/thread-self/net/snmp")?,
        ))
    })??;
    let six = v6
        .lines()
        .find_map(|l| l.strip_prefix("Udp6RcvbufErrors"))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(0);
    // "Udp: InDatagrams ... RcvbufErrors ..." then "Udp: <values>".
    let mut udp = v4.lines().filter(|l| l.starts_with("Udp: "));
    let four = match (udp.next(), udp.next()) {
        (Some(h), Some(v)) => h
            .split_whitespace()
            .zip(v.split_whitespace())
            .find(|(k, _)| *k == "RcvbufErrors")
            .and_then(|(_, v)| v.parse::<u64>().ok())
            .unwrap_or(0),
        _ => 0,
    };
    Ok(six + four)
}

/// One received datagram of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arrival {
    pub seq: u64,
    /// When it was sent and received, from the sender's and receiver's start (one clock:
    /// the lab runs on one host).
    pub sent: Duration,
    pub received: Duration,
}

/// What a UDP stream delivered.
#[derive(Debug, Clone, Default)]
pub struct StreamReport {
    pub sent: u64,
    /// The sender's spacing.
    pub interval: Duration,
    pub arrivals: Vec<Arrival>,
    /// When each sequence number was sent, on the stream's clock (empty: on the fixed
    /// schedule, sequence number × interval).
    pub sent_at: Vec<Duration>,
}

/// A gap in a stream around an instant, as the receiver saw it.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Gap {
    pub interruption_ms: f64,
    /// When the longest silence began: the last delivery before it, on the stream's clock.
    pub silent_from: Duration,
    pub lost_packets: u64,
    pub reordered: u64,
    pub duplicated: u64,
}

impl StreamReport {
    /// The longest time the sender spent between sending two consecutive sequence numbers in
    /// `[a, b]`, beyond its spacing.
    fn sender_stall(&self, a: u64, b: u64) -> Duration {
        let (a, b) = (a as usize, (b as usize + 1).min(self.sent_at.len()));
        self.sent_at
            .get(a..b.max(a))
            .into_iter()
            .flat_map(|s| s.windows(2))
            .map(|w| (w[1].saturating_sub(w[0])).saturating_sub(self.interval))
            .max()
            .unwrap_or(Duration::ZERO)
    }

    /// Sequence numbers never received.
    pub fn lost(&self) -> u64 {
        let mut seen = vec![false; self.sent as usize];
        for a in &self.arrivals {
            if let Some(s) = seen.get_mut(a.seq as usize) {
                *s = true;
            }
        }
        seen.iter().filter(|s| !**s).count() as u64
    }

    /// Packets that arrived after a higher sequence number.
    pub fn reordered(&self) -> u64 {
        let mut max = None;
        let mut n = 0;
        for a in &self.arrivals {
            match max {
                Some(m) if a.seq < m => n += 1,
                _ => max = Some(a.seq),
            }
        }
        n
    }

    pub fn duplicated(&self) -> u64 {
        let mut seen = std::collections::HashSet::new();
        self.arrivals.iter().filter(|a| !seen.insert(a.seq)).count() as u64
    }

    /// Loss, reordering, duplicates and the longest silence among the packets sent in
    /// `[from, to)` (sender time): the interruption a handover caused.
    pub fn gap(&self, from: Duration, to: Duration) -> Gap {
        let inside: Vec<&Arrival> = self
            .arrivals
            .iter()
            .filter(|a| a.sent >= from && a.sent < to)
            .collect();
        let interval = self.interval.max(Duration::from_micros(1));
        // The sequence numbers the sender used in the window: from its record, or its fixed
        // schedule.
        let (first, last) = if self.sent_at.is_empty() {
            (
                (from.as_nanos() / interval.as_nanos()) as u64,
                ((to.as_nanos() / interval.as_nanos()) as u64).min(self.sent),
            )
        } else {
            (
                self.sent_at.partition_point(|t| *t < from) as u64,
                self.sent_at.partition_point(|t| *t < to) as u64,
            )
        };
        let mut got = std::collections::HashSet::new();
        for a in &self.arrivals {
            if a.seq >= first && a.seq < last {
                got.insert(a.seq);
            }
        }
        let lost = (last.saturating_sub(first)).saturating_sub(got.len() as u64);
        // The longest time between consecutive deliveries (receiver time), less any time the
        // sender itself did not send in between (a loaded machine that did not run it): that
        // silence is the harness's, not the network's.
        let mut by_time: Vec<&Arrival> = inside.clone();
        by_time.sort_by_key(|a| a.received);
        let (longest, silent_from) = by_time
            .windows(2)
            .map(|w| {
                let stall = self.sender_stall(w[0].seq.min(w[1].seq), w[0].seq.max(w[1].seq));
                (
                    (w[1].received - w[0].received).saturating_sub(stall),
                    w[0].received,
                )
            })
            .max_by_key(|(d, _)| *d)
            .unwrap_or((Duration::ZERO, from));
        let mut max = None;
        let mut reordered = 0;
        for a in &inside {
            match max {
                Some(m) if a.seq < m => reordered += 1,
                _ => max = Some(a.seq),
            }
        }
        let mut seen = std::collections::HashSet::new();
        let duplicated = inside.iter().filter(|a| !seen.insert(a.seq)).count() as u64;
        Gap {
            // What the receiver lived through beyond the normal spacing.
            interruption_ms: (longest.saturating_sub(interval)).as_secs_f64() * 1e3,
            silent_from,
            lost_packets: lost,
            reordered,
            duplicated,
        }
    }
}

/// A running UDP stream from one namespace to an address in another.
#[derive(Debug)]
pub struct UdpStream {
    stop: Arc<AtomicBool>,
    sender: Option<JoinHandle<Vec<Duration>>>,
    receiver: Option<JoinHandle<Vec<Arrival>>>,
    interval: Duration,
    pub origin: Instant,
}

impl UdpStream {
    /// Starts sending `rate` datagrams per second of `size` octets from `from` to `to:port`,
    /// received in `at`.
    pub fn start(
        from: &NetNs,
        at: &NetNs,
        to: impl Into<IpAddr>,
        port: u16,
        rate: u32,
        size: usize,
    ) -> anyhow::Result<UdpStream> {
        let dst = SocketAddr::new(to.into(), port);
        let any = |port| match dst {
            SocketAddr::V6(_) => SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), port),
            SocketAddr::V4(_) => SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), port),
        };
        let rx = in_ns(at, || {
            let s = UdpSocket::bind(any(port))?;
            s.set_read_timeout(Some(Duration::from_millis(20)))?;
            // Room for seconds of the stream: a receiver thread that a loaded machine does not
            // schedule for a while must not drop what a handover's flush hands it at once, or
            // the harness's drops would count as the protocol's losses.
            let _ = set_rcvbuf_force(&Socket::from(s.try_clone()?), RECEIVE_BUFFER);
            Ok(s)
        })?;
        let tx = in_ns(from, || UdpSocket::bind(any(0)))?;
        let stop = Arc::new(AtomicBool::new(false));
        let origin = Instant::now();
        let receiver = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut v = Vec::new();
                let mut buf = [0u8; 2048];
                let mut idle_since: Option<Instant> = None;
                loop {
                    match rx.recv(&mut buf) {
                        Ok(n) if n >= 16 => {
                            idle_since = None;
                            let seq = u64::from_be_bytes(buf[..8].try_into().unwrap_or_default());
                            let sent =
                                u64::from_be_bytes(buf[8..16].try_into().unwrap_or_default());
                            v.push(Arrival {
                                seq,
                                sent: Duration::from_nanos(sent),
                                received: origin.elapsed(),
                            });
                        }
                        _ => {
                            if stop.load(Ordering::Relaxed) {
                                // Drain what is still in flight for a moment.
                                let t = idle_since.get_or_insert_with(Instant::now);
                                if t.elapsed() > Duration::from_millis(300) {
                                    break;
                                }
                            }
                        }
                    }
                }
                v
            })
        };
        let sender = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let interval = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
                let mut seq = 0u64;
                let mut sent_at = Vec::new();
                let mut buf = vec![0u8; size.max(16)];
                let mut due = origin;
                while !stop.load(Ordering::Relaxed) {
                    let now = Instant::now();
                    if due > now {
                        std::thread::sleep(due - now);
                    } else if now > due + interval * 2 {
                        // Behind (the machine did not run this thread): go on from now rather
                        // than send the missed packets in a burst, whose drops on the way and
                        // at the receiver would be the harness's and not the network's.
                        due = now;
                    }
                    let at = origin.elapsed();
                    buf[..8].copy_from_slice(&seq.to_be_bytes());
                    buf[8..16].copy_from_slice(&(at.as_nanos() as u64).to_be_bytes());
                    // A send that fails (no route for a moment) is a lost packet like any other.
                    let _ = tx.send_to(&buf, dst);
                    sent_at.push(at);
                    seq += 1;
                    due += interval;
                }
                sent_at
            })
        };
        Ok(UdpStream {
            stop,
            sender: Some(sender),
            receiver: Some(receiver),
            interval: Duration::from_secs_f64(1.0 / f64::from(rate.max(1))),
            origin,
        })
    }

    /// Time since the stream started, on the stream's clock.
    pub fn now(&self) -> Duration {
        self.origin.elapsed()
    }

    /// Stops sending, waits for the last packets and returns what was received.
    pub fn finish(mut self) -> StreamReport {
        self.stop.store(true, Ordering::Relaxed);
        let sent_at = self
            .sender
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        let arrivals = self
            .receiver
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        StreamReport {
            sent: sent_at.len() as u64,
            interval: self.interval,
            arrivals,
            sent_at,
        }
    }
}

/// Throughput samples of a TCP stream: bytes received per `SAMPLE`.
pub const SAMPLE: Duration = Duration::from_millis(20);

/// What a TCP stream did.
#[derive(Debug, Clone, Default)]
pub struct TcpReport {
    pub bytes: u64,
    /// Bytes received in each `SAMPLE`, from the stream's start.
    pub samples: Vec<u64>,
    /// The connection stayed up from start to end, and every byte arrived in order.
    pub survived: bool,
    pub error: Option<String>,
}

/// A TCP connection from a client namespace to a server namespace, carrying a counter
/// pattern at up to `rate_bps`, checked byte by byte at the server.
#[derive(Debug)]
pub struct TcpFlow {
    stop: Arc<AtomicBool>,
    client: Option<JoinHandle<Result<u64, String>>>,
    server: Option<JoinHandle<TcpReport>>,
    pub origin: Instant,
}

impl TcpFlow {
    /// A paced TCP stream from `client_ns` to `server_addr` (IPv6, or IPv4 for a node's
    /// IPv4 home address, RFC 5844) in `server_ns`.
    pub fn start(
        client_ns: &NetNs,
        server_ns: &NetNs,
        server_addr: impl Into<IpAddr>,
        port: u16,
        rate_bps: u64,
    ) -> anyhow::Result<TcpFlow> {
        let server_addr: IpAddr = server_addr.into();
        let any: IpAddr = match server_addr {
            IpAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
            IpAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        };
        let listener = in_ns(server_ns, || TcpListener::bind(SocketAddr::new(any, port)))?;
        let conn = in_ns(client_ns, || {
            TcpStream::connect_timeout(&SocketAddr::new(server_addr, port), Duration::from_secs(5))
        })
        .context("TCP connection to the correspondent node")?;
        let (mut accepted, _) = listener.accept()?;
        accepted.set_read_timeout(Some(Duration::from_millis(50)))?;
        let stop = Arc::new(AtomicBool::new(false));
        let origin = Instant::now();
        let server = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut r = TcpReport {
                    survived: true,
                    ..TcpReport::default()
                };
                let mut buf = vec![0u8; 65536];
                let mut expect: u8 = 0;
                let mut idle_after_stop = None;
                loop {
                    match accepted.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => {
                            for b in &buf[..n] {
                                if *b != expect {
                                    r.survived = false;
                                    r.error = Some(format!("byte {} is corrupt", r.bytes));
                                }
                                expect = expect.wrapping_add(1);
                            }
                            r.bytes += n as u64;
                            let slot = (origin.elapsed().as_nanos() / SAMPLE.as_nanos()) as usize;
                            if r.samples.len() <= slot {
                                r.samples.resize(slot + 1, 0);
                            }
                            r.samples[slot] += n as u64;
                        }
                        Err(e)
                            if matches!(
                                e.kind(),
                                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                            ) =>
                        {
                            if stop.load(Ordering::Relaxed) {
                                let t = idle_after_stop.get_or_insert_with(Instant::now);
                                if t.elapsed() > Duration::from_secs(2) {
                                    break;
                                }
                            }
                        }
                        Err(e) => {
                            r.survived = false;
                            r.error = Some(e.to_string());
                            break;
                        }
                    }
                }
                r
            })
        };
        let client = {
            let stop = stop.clone();
            std::thread::spawn(move || -> Result<u64, String> {
                let mut conn = conn;
                let chunk = 8192usize;
                let mut pattern = vec![0u8; chunk];
                let mut next: u8 = 0;
                let mut sent = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    for b in pattern.iter_mut() {
                        *b = next;
                        next = next.wrapping_add(1);
                    }
                    conn.write_all(&pattern).map_err(|e| e.to_string())?;
                    sent += chunk as u64;
                    // Pace to the rate.
                    let due = Duration::from_secs_f64(sent as f64 * 8.0 / rate_bps as f64);
                    let el = origin.elapsed();
                    if due > el {
                        std::thread::sleep(due - el);
                    }
                }
                conn.shutdown(std::net::Shutdown::Write)
                    .map_err(|e| e.to_string())?;
                Ok(sent)
            })
        };
        Ok(TcpFlow {
            stop,
            client: Some(client),
            server: Some(server),
            origin,
        })
    }

    /// Bytes the server received so far is not tracked live; the report tells at the end.
    pub fn finish(mut self) -> TcpReport {
        self.stop.store(true, Ordering::Relaxed);
        let client = self
            .client
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_else(|| Err("client thread failed".into()));
        let mut r = self
            .server
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        match client {
            Ok(sent) if sent == r.bytes => {}
            Ok(sent) => {
                r.survived = false;
                r.error
                    .get_or_insert(format!("{sent} octets sent, {} received", r.bytes));
            }
            Err(e) => {
                r.survived = false;
                r.error = Some(format!("client: {e}"));
            }
        }
        r
    }
}
