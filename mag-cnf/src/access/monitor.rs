//! The task that watches links and listens for nodes: it reads the netlink and capture
//! sockets, feeds [`LinkTable`], and passes the events on.

use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use netlink_packet_route::RouteNetlinkMessage;
use rtnetlink::packet_core::{NLM_F_DUMP_INTR, NetlinkBuffer, NetlinkMessage, NetlinkPayload};
use rtnetlink::sys::Socket as NetlinkSocket;
use socket2::Socket;
use tokio::io::unix::AsyncFd;
use tokio::sync::mpsc;

use super::links::{FrameVerdict, LinkReport, LinkTable};
use super::{AccessEvent, Counters, Error, frame, sys};

/// Frames read per turn before the netlink socket gets its look-in.
const FRAMES_PER_TURN: usize = 64;
/// Large enough for any datagram of a link dump (the kernel fills at most 32 KiB) and for
/// any frame the capture filter lets through (ICMPv6 on links of up to 64 KiB MTU).
const BUFFER: usize = 64 << 10;
/// How long the first link dump may take.
pub(crate) const DUMP_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy)]
struct Dump {
    seq: u32,
    /// Interrupted by a change, or a message was lost while it ran: dump again after it.
    again: bool,
}

pub(crate) struct Monitor {
    netlink: AsyncFd<NetlinkSocket>,
    capture: AsyncFd<Socket>,
    state: State,
}

/// Everything but the sockets, so that a socket's readiness guard and the state can be
/// borrowed at once.
struct State {
    table: LinkTable,
    counters: Arc<Counters>,
    dump: Option<Dump>,
    next_seq: u32,
    netlink_buf: Vec<u8>,
    frame_buf: Vec<u8>,
    /// Events waiting to be passed on, in order.
    out: Vec<AccessEvent>,
}

impl Monitor {
    pub fn new(
        netlink: AsyncFd<NetlinkSocket>,
        capture: AsyncFd<Socket>,
        table: LinkTable,
        counters: Arc<Counters>,
    ) -> Self {
        Self {
            netlink,
            capture,
            state: State {
                table,
                counters,
                dump: None,
                next_seq: 1,
                netlink_buf: vec![0; BUFFER],
                frame_buf: vec![0; BUFFER],
                out: Vec::new(),
            },
        }
    }

    /// Dumps every link and waits for the end of the dump: the access links that exist now
    /// are the first events.
    pub async fn initial_dump(&mut self) -> Result<(), Error> {
        let nl = &self.netlink;
        let state = &mut self.state;
        state.start_dump(nl.get_ref()).map_err(Error::Dump)?;
        let wait = async {
            while state.dump.is_some() {
                let mut guard = nl.readable().await?;
                state.drain_netlink(nl.get_ref())?;
                guard.clear_ready();
            }
            Ok::<(), io::Error>(())
        };
        match tokio::time::timeout(DUMP_TIMEOUT, wait).await {
            Ok(r) => r.map_err(Error::Dump),
            Err(_) => Err(Error::DumpTimeout(DUMP_TIMEOUT)),
        }
    }

    /// Runs until the receiver of `events` is dropped or a socket fails.
    pub async fn run(mut self, events: mpsc::Sender<AccessEvent>) {
        if let Err(e) = self.run_inner(&events).await {
            tracing::error!(error = %e, "access link monitor stopped");
        }
    }

    async fn run_inner(&mut self, events: &mpsc::Sender<AccessEvent>) -> io::Result<()> {
        let (nl, cap, state) = (&self.netlink, &self.capture, &mut self.state);
        loop {
            for ev in state.out.drain(..) {
                tracing::debug!(?ev, "access event");
                if events.send(ev).await.is_err() {
                    return Ok(());
                }
            }
            tokio::select! {
                biased;
                () = events.closed() => return Ok(()),
                guard = nl.readable() => {
                    let mut guard = guard?;
                    state.drain_netlink(nl.get_ref())?;
                    guard.clear_ready();
                }
                guard = cap.readable() => {
                    let mut guard = guard?;
                    if !state.read_frames(nl.get_ref(), cap.get_ref())? {
                        guard.clear_ready();
                    }
                }
            }
        }
    }
}

#[cfg(test)]
impl Monitor {
    /// What the netlink socket has queued (the task's turn by hand): the events that made.
    pub(crate) fn read_links(&mut self) -> io::Result<Vec<AccessEvent>> {
        self.state.drain_netlink(self.netlink.get_ref())?;
        Ok(self.state.out.drain(..).collect())
    }

    /// Every frame queued: the events that made.
    pub(crate) fn read_frames(&mut self) -> io::Result<Vec<AccessEvent>> {
        let (nl, cap, state) = (&self.netlink, &self.capture, &mut self.state);
        while state.read_frames(nl.get_ref(), cap.get_ref())? {}
        Ok(state.out.drain(..).collect())
    }
}

impl State {
    fn start_dump(&mut self, nl: &NetlinkSocket) -> io::Result<()> {
        if let Some(d) = &mut self.dump {
            d.again = true;
            return Ok(());
        }
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1).max(1);
        sys::request_link_dump(nl, seq)?;
        self.table.begin_dump();
        self.dump = Some(Dump { seq, again: false });
        Ok(())
    }

    /// Reads every netlink datagram queued, without waiting.
    fn drain_netlink(&mut self, nl: &NetlinkSocket) -> io::Result<()> {
        let mut buf = std::mem::take(&mut self.netlink_buf);
        let result = loop {
            match sys::recv_netlink(nl, &mut buf) {
                Ok(n) => self.handle_datagram(nl, buf.get(..n).unwrap_or(&[])),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    // Link changes were lost: ask for the whole list again.
                    tracing::warn!("netlink receive queue overflowed: dumping the links again");
                    self.counters.link_resyncs.fetch_add(1, Ordering::Relaxed);
                    if let Err(e) = self.start_dump(nl) {
                        break Err(e);
                    }
                }
                Err(e) => break Err(e),
            }
        };
        self.netlink_buf = buf;
        result
    }

    fn handle_datagram(&mut self, nl: &NetlinkSocket, mut data: &[u8]) {
        while !data.is_empty() {
            let Ok(len) = NetlinkBuffer::new_checked(data).map(|b| b.length() as usize) else {
                tracing::warn!(bytes = data.len(), "netlink: a truncated message");
                return;
            };
            let Some(message) = data.get(..len) else {
                return;
            };
            match NetlinkMessage::<RouteNetlinkMessage>::deserialize(message) {
                Ok(m) => self.handle_message(nl, m),
                Err(e) => tracing::warn!(error = %e, "netlink: a message did not parse"),
            }
            // Messages are 4-byte aligned.
            data = data.get(len.next_multiple_of(4)..).unwrap_or(&[]);
        }
    }

    fn handle_message(&mut self, nl: &NetlinkSocket, m: NetlinkMessage<RouteNetlinkMessage>) {
        let seq = m.header.sequence_number;
        let ours = self.dump.is_some_and(|d| d.seq == seq);
        if ours
            && m.header.flags & NLM_F_DUMP_INTR != 0
            && let Some(d) = &mut self.dump
        {
            d.again = true;
        }
        match m.payload {
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(l)) => {
                if let Some(r) = LinkReport::parse(&l) {
                    self.table.report(r, &mut self.out);
                }
            }
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelLink(l)) => {
                self.table.remove(l.header.index, &mut self.out);
            }
            NetlinkPayload::Done(_) if ours => {
                let again = self.dump.take().is_some_and(|d| d.again);
                self.table.end_dump(&mut self.out);
                if again && let Err(e) = self.start_dump(nl) {
                    tracing::error!(error = %e, "netlink: cannot ask for the links");
                }
            }
            NetlinkPayload::Error(e) if ours => {
                tracing::warn!(error = %e, "netlink: the link dump failed; dumping again");
                self.dump = None;
                if let Err(e) = self.start_dump(nl) {
                    tracing::error!(error = %e, "netlink: cannot ask for the links");
                }
            }
            _ => {}
        }
    }

    /// Reads up to [`FRAMES_PER_TURN`] frames; true when more may be queued.
    fn read_frames(&mut self, nl: &NetlinkSocket, cap: &Socket) -> io::Result<bool> {
        let mut buf = std::mem::take(&mut self.frame_buf);
        let mut result = Ok(true);
        for _ in 0..FRAMES_PER_TURN {
            match sys::recv_frame(cap, &mut buf) {
                Ok((n, ifindex)) => {
                    self.counters.frames_read.fetch_add(1, Ordering::Relaxed);
                    if let Err(e) = self.handle_frame(nl, ifindex, buf.get(..n).unwrap_or(&[])) {
                        result = Err(e);
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    result = Ok(false);
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // A link went down under a frame, or the queue overflowed: nothing to do.
                Err(e) if matches!(e.raw_os_error(), Some(libc::ENETDOWN | libc::ENOBUFS)) => {
                    tracing::debug!(error = %e, "capture socket");
                }
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        self.frame_buf = buf;
        result
    }

    fn handle_frame(&mut self, nl: &NetlinkSocket, ifindex: u32, frame: &[u8]) -> io::Result<()> {
        let Some(heard) = frame::parse(frame) else {
            self.counters.frames_ignored.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        };
        if !self.table.is_announced(ifindex) {
            // The report of a new link may be queued still: it was sent before the frame
            // arrived, so reading what is queued now brings it in. An access link that is not
            // up as far as its reports go: the kernel is asked how it is now. A frame read
            // after the report of its link going down was captured before: the node has left
            // that link (taking it for the link coming back re-registered a node that had
            // moved to another MAG, and took its binding away). A frame that comes before the
            // report of its link's carrier (the kernel sends those from a work item, later)
            // finds the link up.
            if self.table.is_access(ifindex) {
                let seq = self.next_seq;
                self.next_seq = self.next_seq.wrapping_add(1).max(1);
                sys::request_link(nl, seq, ifindex)?;
            }
            self.drain_netlink(nl)?;
        }
        match self.table.heard(ifindex, heard, &mut self.out) {
            FrameVerdict::Taken => {}
            FrameVerdict::Stale => {
                tracing::debug!(ifindex, "a node's frame from a link that is down: ignored");
                self.counters.frames_ignored.fetch_add(1, Ordering::Relaxed);
            }
            FrameVerdict::Own | FrameVerdict::NotAccess => {
                self.counters.frames_ignored.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(())
    }
}

impl std::fmt::Debug for Monitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Monitor")
            .field("table", &self.state.table)
            .field("dump", &self.state.dump)
            .finish_non_exhaustive()
    }
}
