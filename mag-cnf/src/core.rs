//! The MAG daemon's one task: a thin driver over the synchronous [`Service`]. It `select!`s
//! over the signalling socket, access-side events, the fast-handover buffer, the service's
//! next timeout and API commands, hands each to the service, and after every turn flushes the
//! service's outputs: datapath changes first, then the buffer's operations, Router
//! Advertisements and Mobility Headers. Registered nodes are saved after every change so
//! that a restart of the MAG (an upgrade) does not detach them.

use std::path::PathBuf;
use std::time::Duration;

use cnf::Clock;
use cnf::transport::{RecvBatch, SignallingTransport};
use datapath::{Change, Datapath};
use pmip::config::MagConfig;
use pmip::mag::SavedBinding;
use pmip::output::{DatapathCommand, NeighborSolicitation, RouterAdvertisement};
use tokio::sync::mpsc;
use tracing::{debug, error, info, warn};

use crate::metrics::Metrics;
use crate::service::{Service, Start, Step};

pub use crate::service::{
    AccessInput, CallError, Command, EntryView, Ipv4Frame, NodeKey, StatsView,
};

/// The IPv4 side of the access links (DHCP and ARP, RFC 5844 §3.4): the running capture and
/// its frames.
pub type Ipv4Side = (
    crate::access::ipv4::Ipv4Access,
    mpsc::Receiver<crate::access::ipv4::Ipv4Frame>,
);

/// The API's way into the MAG's core task.
pub type CoreHandle = cnf::core::CoreHandle<Command>;
pub use cnf::core::CoreGone;

/// The error every API call gets once the core stopped.
pub const GONE: CoreGone = CoreGone { daemon: "MAG" };

/// Sends Router Advertisements, and the Neighbor Solicitations of Neighbor Unreachability
/// Detection, on access links.
pub trait RaSender {
    fn send_ra(&self, ra: &RouterAdvertisement) -> impl Future<Output = anyhow::Result<()>> + Send;
    fn send_ns(&self, ns: &NeighborSolicitation)
    -> impl Future<Output = anyhow::Result<()>> + Send;
    /// Asks whoever is on an access link that just came up to show itself
    /// ([`crate::access::presence_probe_frame`]); a sender without one sends nothing.
    fn send_probe(
        &self,
        _probe: &crate::access::PresenceProbe,
    ) -> impl Future<Output = anyhow::Result<()>> + Send {
        std::future::ready(Ok(()))
    }
}

/// What [`Core::new`] needs.
#[derive(Debug)]
pub struct Parts<T, R> {
    pub config: MagConfig,
    /// RFC 5847 §3.2's Restart Counter: it changes only when a start lost the saved nodes.
    pub restart_counter: u32,
    /// Counts every start of the daemon: the API's watch cursors of another run are refused
    /// by it.
    pub epoch: u64,
    pub datapath: Datapath,
    pub transport: T,
    pub ra: R,
    pub access: mpsc::Receiver<AccessInput>,
    /// DHCP and ARP on the access links; `None`: nodes get no IPv4 address from this MAG.
    pub ipv4: Option<Ipv4Side>,
    /// The fast-handover buffer; `None` when fast handovers are off.
    pub buffer: Option<crate::buffer::Buffer>,
    pub metrics: Metrics,
    pub clock: Clock,
    pub seed: u64,
    /// Where registered nodes are saved between runs.
    pub state_file: PathBuf,
}

/// The core task.
#[derive(Debug)]
pub struct Core<T, R> {
    service: Service,
    clock: Clock,
    transport: T,
    ra: R,
    datapath: Datapath,
    access: mpsc::Receiver<AccessInput>,
    ipv4: Option<Ipv4Side>,
    buffer: Option<crate::buffer::Buffer>,
    metrics: Metrics,
    commands: mpsc::Receiver<Command>,
    state_file: PathBuf,
}

/// Reads the nodes saved by the previous run (none when the file does not exist).
pub fn load_saved(path: &std::path::Path) -> anyhow::Result<Vec<SavedBinding>> {
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b)
            .map_err(|e| anyhow::anyhow!("{}: unreadable saved bindings: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(anyhow::anyhow!("{}: {e}", path.display())),
    }
}

impl<T: SignallingTransport, R: RaSender> Core<T, R> {
    pub async fn new(
        p: Parts<T, R>,
        saved: &[SavedBinding],
    ) -> anyhow::Result<(Core<T, R>, CoreHandle)> {
        let (now, wall) = (p.clock.now(), p.clock.wall());
        let local = p.config.proxy_coa;
        let (service, restored) = Service::new(
            Start {
                config: p.config,
                restart_counter: p.restart_counter,
                seed: p.seed,
                saved,
            },
            now,
            wall,
        )?;
        let (handle, commands) = CoreHandle::channel(GONE.daemon, p.epoch);
        let mut core = Core {
            service,
            clock: p.clock,
            transport: p.transport,
            ra: p.ra,
            datapath: p.datapath,
            access: p.access,
            ipv4: p.ipv4,
            buffer: p.buffer,
            metrics: p.metrics,
            commands,
            state_file: p.state_file,
        };
        let t = cnf::datapath::termination(&core.datapath, local);
        core.service.prepare(Change::PrepareTermination(t));
        core.prune_stale_routes().await;
        info!(restored, "binding update list restored");
        core.flush().await;
        Ok((core, handle))
    }

    /// Routes left by the previous run for nodes that are not restored go; access links and
    /// the termination stay (the access side reports the links again).
    async fn prune_stale_routes(&mut self) {
        let mut desired = self.datapath.state().await;
        let keep: std::collections::BTreeSet<ipnet::Ipv6Net> = (self.service.mag().bindings())
            .flat_map(|e| e.prefixes.iter().copied())
            .collect();
        desired.routes.retain(|p, _| keep.contains(p));
        desired.uplinks.retain(|p, _| keep.contains(p));
        if let Err(e) = self.datapath.reconcile(&desired).await {
            warn!(error = %e, "pruning routes of the previous run");
        }
        // The reconcile took the previous run's fallback routes (not the datapath's own): the
        // nodes still on their links get theirs again.
        if let Some(b) = self.buffer.as_mut() {
            let links: Vec<Change> = desired
                .routes
                .iter()
                .filter_map(|(prefix, r)| match r {
                    datapath::PrefixRoute::Link {
                        ifindex,
                        local_routing,
                    } => Some(Change::SetLinkRoute {
                        prefix,
                        ifindex,
                        local_routing,
                    }),
                    _ => None,
                })
                .collect();
            let (metric, protocol) = fallback_metric(&self.datapath);
            b.follow_routes(&links, metric, protocol).await;
        }
    }

    /// Runs until `shutdown` resolves; with `deregister_on_exit` every node is de-registered
    /// first.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>, deregister_on_exit: bool) {
        let mut batch = RecvBatch::default();
        tokio::pin!(shutdown);
        loop {
            let sleep = self.clock.sleep_until(self.service.poll_timeout());
            tokio::select! {
                biased;
                _ = &mut shutdown => break,
                r = self.transport.recv_batch(&mut batch) => match r {
                    Ok(_) => self.receive(&batch),
                    Err(e) => {
                        error!(error = %e, "receiving on the signalling socket");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                },
                Some(a) = self.access.recv() => {
                    self.on_access(a);
                    while let Ok(a) = self.access.try_recv() {
                        self.on_access(a);
                    }
                }
                Some(f) = ipv4_frame(&mut self.ipv4) => {
                    let (now, wall) = (self.clock.now(), self.clock.wall());
                    self.service.handle_ipv4(now, wall, f);
                    while let Some(f) = self.ipv4.as_mut().and_then(|(_, rx)| rx.try_recv().ok()) {
                        self.service.handle_ipv4(now, wall, f);
                    }
                }
                Some(cmd) = self.commands.recv() => {
                    let (now, wall) = (self.clock.now(), self.clock.wall());
                    self.service.command(now, wall, cmd);
                }
                r = buffer_readable(&self.buffer) => {
                    if let Err(e) = r.and_then(|()| self.buffer.as_mut().map_or(Ok(0), |b| b.drain())) {
                        warn!(error = %e, "reading the fast-handover buffer");
                    }
                }
                _ = sleep => {
                    let (now, wall) = (self.clock.now(), self.clock.wall());
                    self.service.handle_timeout(now, wall);
                }
            }
            self.flush().await;
        }
        if deregister_on_exit {
            info!("de-registering every node before exit");
            let (now, wall) = (self.clock.now(), self.clock.wall());
            self.service.detach_all(now, wall);
            self.flush().await;
            // Give the PBAs a moment; the entries go either way (RFC 5213 §6.9.1.4).
            let _ = tokio::time::timeout(Duration::from_secs(1), async {
                let mut batch = RecvBatch::default();
                while self.service.mag().bindings().next().is_some() {
                    if self.transport.recv_batch(&mut batch).await.is_err() {
                        break;
                    }
                    self.receive(&batch);
                    self.flush().await;
                }
            })
            .await;
            self.service.forget_saved();
            self.save(false);
        } else {
            self.save(true);
        }
        info!("stopped; routes of registered nodes are kept for the next start");
    }

    fn receive(&mut self, batch: &RecvBatch) {
        for (m, bytes) in batch.iter() {
            let (now, wall) = (self.clock.now(), self.clock.wall());
            self.service.handle_message(now, wall, m.src, m.dst, bytes);
        }
    }

    fn on_access(&mut self, a: AccessInput) {
        let (now, wall) = (self.clock.now(), self.clock.wall());
        self.service.handle_access(now, wall, a);
    }

    async fn flush(&mut self) {
        let mut changes = Vec::new();
        let mut buffer_ops = Vec::new();
        for step in self.service.take_steps() {
            match step {
                Step::Change(c) => changes.push(c),
                Step::Buffer(c) => {
                    crate::buffer::plan(self.buffer.as_mut(), c, &mut changes, &mut buffer_ops)
                }
            }
        }
        if !changes.is_empty() {
            self.apply(&changes).await;
        }
        // With end markers the new MAG holds the LMA's packets until the previous MAG's stream
        // has ended, so a relay stays with this daemon to the end: one sender to the new MAG
        // keeps the order that two (this daemon and the kernel's tunnel) could break at the
        // switch. Without them the kernel's tunnel takes over at once (see
        // `hand_relays_to_the_kernel`).
        let end_markers = self
            .service
            .mag()
            .config()
            .domain
            .fast_handover
            .end_marker_wait_ms
            > 0;
        let handover = if end_markers {
            Vec::new()
        } else {
            crate::buffer::after_relay(&buffer_ops)
        };
        for op in buffer_ops {
            self.buffer_op(op);
        }
        if !handover.is_empty() {
            self.hand_relays_to_the_kernel(&handover).await;
        }
        // The node on a link that just came up is asked at once (its link's address is in
        // place now); every millisecond until it shows itself is the handover's.
        for p in self.service.take_presence_probes() {
            if let Err(e) = self.ra.send_probe(&p).await {
                warn!(error = %e, link = p.link, "probing an access link for its node");
            }
        }
        // Only now: an answer says the datapath is ready (forwarding to the new MAG has begun).
        for reply in self.service.take_replies() {
            reply.send();
        }
        for ra in self.service.take_router_advertisements() {
            match self.ra.send_ra(&ra).await {
                Ok(()) => {
                    self.metrics.ra_sent.inc();
                    if let Some(d) = self.service.ra_sent(&ra, self.clock.now()) {
                        self.metrics.attach_to_ra_seconds.observe(d.as_secs_f64());
                    }
                }
                Err(e) => {
                    warn!(error = %e, link = ra.link.0, "sending a Router Advertisement");
                    self.metrics.ra_failures.inc();
                }
            };
        }
        for ns in self.service.take_neighbor_solicitations() {
            if let Err(e) = self.ra.send_ns(&ns).await {
                warn!(error = %e, link = ns.link.0, "sending a Neighbor Solicitation");
            }
        }
        for (ifindex, frame) in self.service.take_ipv4_frames() {
            let Some((access, _)) = &self.ipv4 else { break };
            if let Err(e) = access.send(ifindex, &frame).await {
                warn!(error = %e, link = ifindex, "sending a DHCP or ARP answer");
            }
        }
        let tx = self.service.take_transmits();
        if !tx.is_empty() {
            match self.transport.send_batch(&tx).await {
                Ok(n) if n < tx.len() => {
                    warn!(sent = n, of = tx.len(), "some messages were not sent")
                }
                Ok(_) => {}
                Err(e) => error!(error = %e, "sending on the signalling socket"),
            }
        }
        for d in self.service.take_registrations() {
            self.metrics.registration_seconds.observe(d.as_secs_f64());
        }
        self.save(false);
        if let Some(b) = &self.buffer {
            self.service.observe_buffer(b.stats());
        }
        self.metrics.observe(&self.service.stats());
    }

    async fn apply(&mut self, changes: &[Change]) {
        let t = std::time::Instant::now();
        let held = self.hold_deliveries(changes).await;
        // The buffer keeps handing packets to their nodes while the kernel is being changed:
        // a packet that reached the device just before its prefix's route moved to the access
        // link must not wait for the netlink round trip, or the packets after it, now
        // delivered by the kernel directly, would overtake it.
        let applied = {
            let (datapath, buffer) = (&self.datapath, self.buffer.as_mut());
            let pump = async move {
                match buffer {
                    Some(b) => loop {
                        if b.readable().await.is_ok() {
                            let _ = b.drain();
                        }
                    },
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                biased;
                r = datapath.apply(changes) => r,
                () = pump => unreachable!("the pump never ends"),
            }
        };
        if let Err(e) = applied {
            error!(error = %e, changes = changes.len(), "datapath");
            self.metrics.datapath_failures.inc();
        }
        // A prefix whose buffer hands packets to the node has its own route now.
        if let Some(b) = self.buffer.as_mut() {
            for c in changes {
                match c {
                    Change::SetLinkRoute {
                        prefix, ifindex, ..
                    } if *ifindex != b.ifindex() => b.end_delivery(&(*prefix).into()),
                    Change::SetLinkRoute4 {
                        prefix, ifindex, ..
                    } if *ifindex != b.ifindex() => b.end_delivery(&(*prefix).into()),
                    Change::SetDownlink { prefix, .. } | Change::RemoveLinkRoute { prefix, .. } => {
                        b.end_delivery(&(*prefix).into())
                    }
                    Change::SetDownlink4 { prefix, .. }
                    | Change::RemoveLinkRoute4 { prefix, .. } => b.end_delivery(&(*prefix).into()),
                    _ => {}
                }
            }
            let (metric, protocol) = fallback_metric(&self.datapath);
            b.follow_routes(changes, metric, protocol).await;
            // The device is drained to the node: what the kernel held goes after it.
            let (metric, protocol) = hold_metric(&self.datapath);
            for (prefix, ifindex, mac) in held {
                if let Err(e) = b.release_held(prefix, ifindex, mac, metric, protocol).await {
                    warn!(%prefix, error = %e, "releasing the held packets to the node");
                }
            }
        }
        self.metrics.datapath_changes.inc_by(changes.len() as u64);
        self.metrics
            .datapath_seconds
            .observe(t.elapsed().as_secs_f64());
    }

    /// Previous MAG: the buffer sent what it held to the new MAG, in order, and relays what
    /// still reaches it; `changes` ([`crate::buffer::after_relay`]) route the prefixes into
    /// the tunnel to the new MAG. What follows now goes through the kernel's
    /// tunnel to the new MAG instead of through this daemon: once the LMA moves the binding,
    /// its packets reach the new MAG directly, and a packet still waiting for this daemon to
    /// relay it (milliseconds on a loaded machine) would arrive after them, out of order. The
    /// relay goes on while the route changes (see [`Core::apply`]), and what reached the
    /// device before the change follows at once.
    async fn hand_relays_to_the_kernel(&mut self, changes: &[Change]) {
        self.apply(changes).await;
        if let Some(b) = self.buffer.as_mut() {
            for c in changes {
                match c {
                    Change::SetDownlink { prefix, .. } => b.end_relay(&(*prefix).into()),
                    Change::SetDownlink4 { prefix, .. } => b.end_relay(&(*prefix).into()),
                    _ => {}
                }
            }
        }
    }

    /// Before a prefix whose buffer hands packets to its node is routed onto the node's
    /// access link: the kernel holds the prefix's new packets until the device is drained
    /// (see [`crate::buffer`]), so that none overtakes a packet still in the device. Returns
    /// the holds to release.
    async fn hold_deliveries(&self, changes: &[Change]) -> Vec<(ipnet::Ipv6Net, u32, [u8; 6])> {
        let mut held = Vec::new();
        let Some(b) = self.buffer.as_ref() else {
            return held;
        };
        let (metric, protocol) = hold_metric(&self.datapath);
        if metric == self.datapath.settings().route_metric {
            return held;
        }
        for c in changes {
            if let Change::SetLinkRoute {
                prefix, ifindex, ..
            } = c
                && *ifindex != b.ifindex()
                && let Some((_, mac)) = b.delivery(prefix)
            {
                match b
                    .hold_new_packets(*prefix, *ifindex, mac, metric, protocol)
                    .await
                {
                    Ok(()) => held.push((*prefix, *ifindex, mac)),
                    Err(e) => warn!(%prefix, error = %e, "holding new packets for the node"),
                }
            }
        }
        held
    }

    fn buffer_op(&mut self, op: DatapathCommand) {
        use DatapathCommand as D;
        let Some(b) = self.buffer.as_mut() else {
            return;
        };
        match op {
            D::FlushBuffer {
                prefix,
                deliver: None,
            } => match b.flush(&prefix) {
                Ok(n) => {
                    debug!(%prefix, packets = n, "buffer flushed");
                    if n > 0
                        && let Some(d) = self.service.delivered(&prefix, self.clock.now())
                    {
                        self.metrics
                            .attach_to_first_delivery_seconds
                            .observe(d.as_secs_f64());
                    }
                }
                Err(e) => warn!(%prefix, error = %e, "flushing the buffer"),
            },
            D::FlushBuffer {
                prefix,
                deliver: Some((link, ll)),
            } => {
                let mut mac = [0u8; 6];
                if ll.as_bytes().len() == 6 {
                    mac.copy_from_slice(ll.as_bytes());
                }
                match b.deliver(&prefix, link.0, mac) {
                    Ok(n) => {
                        debug!(%prefix, packets = n, "buffer delivered to the node");
                        if n > 0
                            && let Some(d) = self.service.delivered_to(&ll, self.clock.now())
                        {
                            self.metrics
                                .attach_to_first_delivery_seconds
                                .observe(d.as_secs_f64());
                        }
                    }
                    Err(e) => warn!(%prefix, error = %e, "delivering the buffer"),
                }
            }
            D::ForwardBuffer { prefix, peer } => match b.relay(&prefix, peer) {
                Ok(n) => debug!(%prefix, %peer, packets = n, "buffer sent to the new MAG"),
                Err(e) => warn!(%prefix, %peer, error = %e, "sending the buffer on"),
            },
            D::DiscardBuffer { prefix } => {
                let n = b.discard(&prefix);
                debug!(%prefix, packets = n, "buffer discarded");
            }
            _ => {}
        }
    }

    /// Writes the registered nodes when they changed (write to a temporary file, then rename:
    /// a `kill -9` leaves the old or the new file, never half of one); `force` writes them
    /// unless the file already holds them.
    fn save(&mut self, force: bool) {
        let Some(now) = self.service.to_save(force, self.state_file.exists()) else {
            return;
        };
        let tmp = self.state_file.with_extension("tmp");
        let r = serde_json::to_vec_pretty(&now)
            .map_err(std::io::Error::other)
            .and_then(|b| std::fs::write(&tmp, b))
            .and_then(|()| std::fs::rename(&tmp, &self.state_file));
        match r {
            Ok(()) => self.service.saved(now),
            Err(e) => {
                warn!(error = %e, file = %self.state_file.display(), "saving registered nodes")
            }
        }
    }
}

/// The metric and protocol of a hold route: just below the datapath's routes, so that it
/// wins over the prefix's own route while it exists, and the datapath's protocol (it is one
/// of the datapath's routes for as long as it lives).
fn hold_metric(dp: &Datapath) -> (u32, u8) {
    let s = dp.settings();
    (s.route_metric.saturating_sub(1), s.route_protocol)
}

/// Metric and protocol of the fallback routes into the buffer: behind the datapath's own
/// ([`crate::buffer::Buffer::follow_routes`]).
fn fallback_metric(dp: &Datapath) -> (u32, u8) {
    let s = dp.settings();
    (s.route_metric.saturating_add(1), s.route_protocol)
}

/// The next frame of the IPv4 side (never, without one).
async fn ipv4_frame(side: &mut Option<Ipv4Side>) -> Option<Ipv4Frame> {
    match side {
        Some((_, rx)) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn buffer_readable(b: &Option<crate::buffer::Buffer>) -> std::io::Result<()> {
    match b {
        Some(b) => b.readable().await,
        None => std::future::pending().await,
    }
}
