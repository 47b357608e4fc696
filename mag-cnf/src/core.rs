//! The MAG daemon's one task that owns the protocol state: it `select!`s over the signalling
//! socket, access-side events, the state machine's next timeout and API commands, and after
//! every input moves the outputs out: datapath changes first, then Router Advertisements and
//! Mobility Headers. Registered nodes are saved after every change so that a restart of the
//! MAG (an upgrade) does not detach them.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv6Addr;
use std::path::PathBuf;
use std::time::Duration;

use cnf::transport::{RecvBatch, SignallingTransport};
use cnf::{Clock, datapath};
use dataplane::{AccessLink as DpAccessLink, Change, Dataplane, Termination};
use pmip::config::{LinkLocalMode, MagConfig, MobileNodeProfile};
use pmip::heartbeat::PeerEvent;
use pmip::mag::{Attach, BulEntry, Mag, MagEvent, MagOutput, SavedBinding};
use pmip::output::{AccessLink, RouterAdvertisement, Transmit};
use pmip::types::LinkLayerAddress;
use pmip::wire::{AccessTechnologyType, Status};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, error, info, warn};

use crate::metrics::{KindLabel, Metrics, StatusLabel};

pub use crate::access::AccessEvent as AccessInput;

/// Sends Router Advertisements on access links.
pub trait RaSender {
    fn send_ra(&self, ra: &RouterAdvertisement) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// A binding update list entry as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryView {
    pub entry: BulEntry,
    /// A fast handover is in progress for the entry.
    pub handover: bool,
    pub access_interface: String,
    pub remaining_s: u32,
    /// How long ago the node attached, and registered.
    pub attached_ago: Duration,
    pub registered_ago: Option<Duration>,
    pub lab: bool,
}

/// Counters and facts for the Stats RPC.
#[derive(Debug, Clone)]
pub struct StatsView {
    pub name: String,
    pub proxy_coa: Ipv6Addr,
    pub lma_address: Ipv6Addr,
    pub restart_counter: u32,
    pub uptime: Duration,
    pub bul_entries: usize,
    pub registered: usize,
    pub pbus_sent: u64,
    pub pbu_retransmissions: u64,
    pub pbas_by_status: Vec<(Status, u64)>,
    pub lma_reachable: bool,
    pub lab_nodes: usize,
    pub profiles: usize,
    pub policy_synced: bool,
    pub fast_handovers: u64,
    pub buffered_packets: u64,
}

/// Which node a Detach names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeKey {
    LinkLayer(LinkLayerAddress),
    MnId(String),
}

/// Why an API call failed (mapped to gRPC codes by the API).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    InvalidArgument(String),
}

/// A request from the API (or the policy client) to the core.
#[derive(Debug)]
pub enum Command {
    List {
        reply: oneshot::Sender<Vec<EntryView>>,
    },
    Attach {
        link_layer: LinkLayerAddress,
        interface: String,
        access_technology_type: Option<AccessTechnologyType>,
        /// Reply after the PBA (or the give-up) instead of at once.
        wait: bool,
        reply: oneshot::Sender<Result<EntryView, CallError>>,
    },
    Detach {
        node: NodeKey,
        reply: oneshot::Sender<Result<EntryView, CallError>>,
    },
    Stats {
        reply: oneshot::Sender<StatsView>,
    },
    /// A profile learned from the LMA's policy service (or removed there).
    UpsertProfile(MobileNodeProfile),
    RemoveProfile(String),
    /// The policy stream is in sync (true) or lost (false).
    PolicySynced(bool),
    /// The policy stream restarts from a snapshot: profiles learned so far that the snapshot
    /// does not repeat are dropped when it is in sync again.
    PolicyReset,
    /// Predictive fast handover (RFC 5949 §4.1 step (b)): `mn_id` is about to move to the MAG
    /// at `new_mag`. Replies once that MAG acknowledged (forwarding has begun) or the
    /// handover failed.
    HandoverIndication {
        mn_id: String,
        new_mag: Ipv6Addr,
        reply: oneshot::Sender<Result<(), CallError>>,
    },
    /// Reactive fast handover: the node with this link-layer address is arriving from the MAG
    /// at `previous_mag` (the access network's Old AP ID).
    ExpectArrival {
        link_layer: LinkLayerAddress,
        previous_mag: Ipv6Addr,
    },
    /// Whether a profile has this link-layer address.
    KnowsNode {
        link_layer: LinkLayerAddress,
        reply: oneshot::Sender<bool>,
    },
    /// The first link-layer address of a node's profile.
    LinkLayerOf {
        mn_id: String,
        reply: oneshot::Sender<Option<LinkLayerAddress>>,
    },
    /// A lab node (an emulated mobile node) was created or removed on `interface`.
    LabNode {
        mn_id: String,
        interface: String,
        present: bool,
    },
}

/// The API's way in.
#[derive(Debug, Clone)]
pub struct CoreHandle {
    tx: mpsc::Sender<Command>,
}

/// The core task has stopped.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the MAG is shutting down")]
pub struct CoreGone;

impl CoreHandle {
    pub async fn call<R>(
        &self,
        make: impl FnOnce(oneshot::Sender<R>) -> Command,
    ) -> Result<R, CoreGone> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(make(tx)).await.map_err(|_| CoreGone)?;
        rx.await.map_err(|_| CoreGone)
    }

    pub async fn send(&self, c: Command) -> Result<(), CoreGone> {
        self.tx.send(c).await.map_err(|_| CoreGone)
    }
}

/// What [`Core::new`] needs.
#[derive(Debug)]
pub struct Parts<T, R> {
    pub config: MagConfig,
    pub restart_counter: u32,
    pub dataplane: Dataplane,
    pub transport: T,
    pub ra: R,
    pub access: mpsc::Receiver<AccessInput>,
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
    mag: Mag,
    config: MagConfig,
    clock: Clock,
    started: std::time::Instant,
    transport: T,
    ra: R,
    dataplane: Dataplane,
    access: mpsc::Receiver<AccessInput>,
    buffer: Option<crate::buffer::Buffer>,
    buffer_ops: Vec<pmip::output::DataplaneCommand>,
    indications: Vec<(String, oneshot::Sender<Result<(), CallError>>)>,
    metrics: Metrics,
    commands: mpsc::Receiver<Command>,
    links: HashMap<u32, String>,
    lab: BTreeMap<String, String>,
    restart_counter: u32,
    fast_handovers: u64,
    /// Profiles learned from the policy server, and those of them not yet repeated after a
    /// reset.
    learned: std::collections::BTreeSet<String>,
    stale: std::collections::BTreeSet<String>,
    state_file: PathBuf,
    saved: Vec<SavedBinding>,
    lma_reachable: bool,
    policy_synced: bool,
    waiting: Vec<(String, oneshot::Sender<Result<EntryView, CallError>>)>,
    tx: Vec<Transmit>,
    changes: Vec<Change>,
    ras: Vec<RouterAdvertisement>,
    dirty: bool,
    /// When each node was last seen arriving on an access link: for the attach → RA and
    /// attach → first delivered packet histograms.
    seen_at: HashMap<LinkLayerAddress, std::time::Instant>,
    awaiting_delivery: HashMap<LinkLayerAddress, std::time::Instant>,
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
        let mut mag = Mag::new(p.config.clone(), p.restart_counter, p.seed)?;
        let (now, wall) = (p.clock.now(), p.clock.wall());
        let restored = mag.restore(now, wall, saved);
        let (cmd_tx, cmd_rx) = mpsc::channel(1024);
        let policy_synced = p.config.policy_server.is_none();
        let mut core = Core {
            mag,
            config: p.config,
            clock: p.clock,
            started: std::time::Instant::now(),
            transport: p.transport,
            ra: p.ra,
            dataplane: p.dataplane,
            access: p.access,
            buffer: p.buffer,
            buffer_ops: Vec::new(),
            indications: Vec::new(),
            metrics: p.metrics,
            commands: cmd_rx,
            links: HashMap::new(),
            lab: BTreeMap::new(),
            restart_counter: p.restart_counter,
            fast_handovers: 0,
            learned: Default::default(),
            stale: Default::default(),
            state_file: p.state_file,
            saved: saved.to_vec(),
            lma_reachable: true,
            policy_synced,
            waiting: Vec::new(),
            tx: Vec::new(),
            changes: Vec::new(),
            ras: Vec::new(),
            dirty: false,
            seen_at: HashMap::new(),
            awaiting_delivery: HashMap::new(),
        };
        let local = core.config.proxy_coa;
        let t = termination(&core.dataplane, local);
        core.changes.push(Change::PrepareTermination(t));
        core.drain();
        core.prune_stale_routes().await;
        info!(restored, "binding update list restored");
        core.flush().await;
        Ok((core, CoreHandle { tx: cmd_tx }))
    }

    /// Routes left by the previous run for nodes that are not restored go; access links and
    /// the termination stay (the access side reports the links again).
    async fn prune_stale_routes(&mut self) {
        let mut desired = self.dataplane.state().await;
        let keep: std::collections::BTreeSet<ipnet::Ipv6Net> = self
            .mag
            .bindings()
            .flat_map(|e| e.prefixes.iter().copied())
            .collect();
        desired.routes.retain(|p, _| keep.contains(p));
        desired.uplinks.retain(|p, _| keep.contains(p));
        if let Err(e) = self.dataplane.reconcile(&desired).await {
            warn!(error = %e, "pruning routes of the previous run");
        }
    }

    /// Runs until `shutdown` resolves; with `deregister_on_exit` every node is de-registered
    /// first.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>, deregister_on_exit: bool) {
        let mut batch = RecvBatch::default();
        tokio::pin!(shutdown);
        loop {
            let sleep = self.clock.sleep_until(self.mag.poll_timeout());
            tokio::select! {
                biased;
                _ = &mut shutdown => break,
                r = self.transport.recv_batch(&mut batch) => match r {
                    Ok(_) => {
                        for (m, bytes) in batch.iter() {
                            let (now, wall) = (self.clock.now(), self.clock.wall());
                            self.mag.handle_message_trusted(now, wall, m.src, m.dst, bytes);
                        }
                        self.drain();
                    }
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
                Some(cmd) = self.commands.recv() => self.command(cmd),
                r = buffer_readable(&self.buffer) => {
                    if let Err(e) = r.and_then(|()| self.buffer.as_mut().map_or(Ok(0), |b| b.drain())) {
                        warn!(error = %e, "reading the fast-handover buffer");
                    }
                }
                _ = sleep => {
                    let (now, wall) = (self.clock.now(), self.clock.wall());
                    self.mag.handle_timeout(now, wall);
                    self.drain();
                }
            }
            self.flush().await;
        }
        if deregister_on_exit {
            info!("de-registering every node before exit");
            let (now, wall) = (self.clock.now(), self.clock.wall());
            let lls: Vec<LinkLayerAddress> = self.mag.bindings().map(|e| e.link_layer).collect();
            for ll in lls {
                self.mag.handle_detach(now, wall, &ll);
            }
            self.drain();
            self.flush().await;
            // Give the PBAs a moment; the entries go either way (RFC 5213 §6.9.1.4).
            let _ = tokio::time::timeout(Duration::from_secs(1), async {
                let mut batch = RecvBatch::default();
                while self.mag.bindings().next().is_some() {
                    if self.transport.recv_batch(&mut batch).await.is_err() {
                        break;
                    }
                    for (m, bytes) in batch.iter() {
                        let (now, wall) = (self.clock.now(), self.clock.wall());
                        self.mag
                            .handle_message_trusted(now, wall, m.src, m.dst, bytes);
                    }
                    self.drain();
                    self.flush().await;
                }
            })
            .await;
            self.saved.clear();
            self.dirty = true;
            self.save();
        } else {
            self.save_now();
        }
        info!("stopped; routes of registered nodes are kept for the next start");
    }

    fn on_access(&mut self, a: AccessInput) {
        let (now, wall) = (self.clock.now(), self.clock.wall());
        match a {
            AccessInput::LinkUp { ifindex, name, mtu } => {
                debug!(ifindex, %name, mtu, "access link up");
                self.links.insert(ifindex, name);
                let fixed = self.config.domain.link_local.link_layer_address();
                let mut mac = [0u8; 6];
                if fixed.as_bytes().len() == 6 {
                    mac.copy_from_slice(fixed.as_bytes());
                }
                let link_local = match &self.config.domain.link_local {
                    LinkLocalMode::Fixed { address, .. } => *address,
                    // The LMA-generated address is per node; the link gets it when the node
                    // registers. Until then the link has only its MAC.
                    LinkLocalMode::LmaGenerated { .. } => Ipv6Addr::UNSPECIFIED,
                };
                if !link_local.is_unspecified() {
                    self.changes.push(Change::PrepareAccessLink {
                        ifindex,
                        link: DpAccessLink {
                            link_layer_address: mac,
                            link_local,
                        },
                    });
                }
            }
            AccessInput::LinkDown { ifindex } => {
                self.links.remove(&ifindex);
                let gone: Vec<LinkLayerAddress> = self
                    .mag
                    .bindings()
                    .filter(|e| e.link == AccessLink(ifindex))
                    .map(|e| e.link_layer)
                    .collect();
                for ll in gone {
                    self.seen_at.remove(&ll);
                    self.awaiting_delivery.remove(&ll);
                    self.mag.handle_detach(now, wall, &ll);
                }
            }
            AccessInput::NodeSeen {
                ifindex,
                link_layer,
            } => {
                let t = std::time::Instant::now();
                self.seen_at.entry(link_layer).or_insert(t);
                if self.buffer.is_some() {
                    self.awaiting_delivery.entry(link_layer).or_insert(t);
                }
                self.mag.handle_attach(
                    now,
                    wall,
                    Attach {
                        link_layer,
                        link: AccessLink(ifindex),
                        access_technology_type: None,
                        handoff_hint: None,
                    },
                );
            }
            AccessInput::RouterSolicitation {
                ifindex,
                link_layer,
            } => {
                self.mag
                    .handle_router_solicitation(now, wall, AccessLink(ifindex), link_layer);
            }
        }
        self.drain();
    }

    fn drain(&mut self) {
        while let Some(o) = self.mag.poll_output() {
            match o {
                MagOutput::Transmit(t) => self.tx.push(t),
                MagOutput::Dataplane(c) => self.dataplane_command(c),
                MagOutput::RouterAdvertisement(ra) => self.ras.push(ra),
                MagOutput::Event(e) => self.event(e),
                MagOutput::BindingUpdateList(_) => {}
            }
        }
        self.answer_waiting();
        self.answer_indications();
    }

    fn dataplane_command(&mut self, c: pmip::output::DataplaneCommand) {
        use pmip::output::DataplaneCommand as D;
        if let Some(ch) = datapath::change(&c) {
            // The end of a relay: the prefix's route was the buffer's, not a tunnel.
            if let (D::RemoveForward { prefix }, Some(b)) = (&c, self.buffer.as_mut())
                && b.is_relaying(prefix)
            {
                b.end_relay(prefix);
                self.changes.push(Change::RemoveLocalRoute {
                    prefix: *prefix,
                    ifindex: b.ifindex(),
                });
            }
            self.changes.push(ch);
            return;
        }
        let Some(b) = self.buffer.as_mut() else {
            warn!(
                ?c,
                "fast-handover buffer command without a buffer (fast handovers off?)"
            );
            return;
        };
        match c {
            D::Buffer { prefix } => {
                b.start(prefix);
                self.changes.push(Change::AddLocalRoute {
                    prefix,
                    ifindex: b.ifindex(),
                    local_routing: false,
                });
            }
            // After this turn's routes are in place.
            D::FlushBuffer { .. } | D::ForwardBuffer { .. } | D::DiscardBuffer { .. } => {
                self.buffer_ops.push(c)
            }
            _ => {}
        }
    }

    /// Replies to handover indications whose HAck came (or whose handover failed).
    fn answer_indications(&mut self) {
        if self.indications.is_empty() {
            return;
        }
        for (mn_id, reply) in std::mem::take(&mut self.indications) {
            let fast = self
                .mag
                .binding(&mn_id)
                .and_then(|e| self.mag.handover(&e.link_layer))
                .cloned();
            match fast {
                Some(f) if f.phase == pmip::mag::FastPhase::Initiating => {
                    self.indications.push((mn_id, reply));
                }
                Some(_) => {
                    let _ = reply.send(Ok(()));
                }
                None => {
                    let _ = reply.send(Err(CallError::FailedPrecondition(format!(
                        "{mn_id}: the new MAG did not acknowledge the handover"
                    ))));
                }
            }
        }
    }

    fn event(&mut self, e: MagEvent) {
        let kind = match &e {
            MagEvent::UnknownNode { link_layer, link } => {
                info!(%link_layer, link = link.0, "a node without a profile attached: no service");
                "unknown-node"
            }
            MagEvent::Registered {
                mn_id,
                prefixes,
                after,
            } => {
                info!(%mn_id, ?prefixes, after_ms = after.as_secs_f64() * 1e3, "registered");
                self.metrics
                    .registration_seconds
                    .observe(after.as_secs_f64());
                self.dirty = true;
                "registered"
            }
            MagEvent::Refreshed { .. } => "refreshed",
            MagEvent::Rejected { mn_id, status } => {
                warn!(%mn_id, %status, "registration refused");
                self.dirty = true;
                "rejected"
            }
            MagEvent::GaveUp { mn_id } => {
                warn!(%mn_id, "no PBA after every retransmission");
                self.dirty = true;
                "gave-up"
            }
            MagEvent::Deregistered { mn_id } => {
                info!(%mn_id, "de-registered");
                self.dirty = true;
                "deregistered"
            }
            MagEvent::Expired { mn_id } => {
                warn!(%mn_id, "binding expired");
                self.dirty = true;
                "expired"
            }
            MagEvent::Revoked { mn_id, trigger } => {
                info!(%mn_id, %trigger, "binding revoked by the LMA");
                self.dirty = true;
                "revoked"
            }
            MagEvent::PbaIgnored { mn_id, reason } => {
                debug!(%mn_id, reason, "PBA ignored");
                "pba-ignored"
            }
            MagEvent::Peer(p) => {
                match p {
                    PeerEvent::Unreachable { peer } => {
                        warn!(%peer, "LMA does not answer heartbeats");
                        self.lma_reachable = false;
                    }
                    PeerEvent::Reachable { peer } => {
                        info!(%peer, "LMA answers heartbeats again");
                        self.lma_reachable = true;
                    }
                    PeerEvent::Restarted { peer, old, new } => {
                        info!(%peer, ?old, new, "LMA restarted: re-registering every node");
                    }
                }
                "peer"
            }
            MagEvent::HandoverStarted {
                mn_id,
                mode,
                role,
                peer,
            } => {
                info!(%mn_id, ?mode, ?role, %peer, "fast handover started");
                "handover-started"
            }
            MagEvent::HandoverAcknowledged { mn_id, peer } => {
                info!(%mn_id, %peer, "fast handover acknowledged: forwarding to the new MAG");
                "handover-acknowledged"
            }
            MagEvent::HandoverCompleted {
                mn_id,
                mode,
                role,
                peer,
                took,
            } => {
                info!(%mn_id, ?mode, ?role, %peer, took_ms = took.as_secs_f64() * 1e3, "fast handover completed");
                self.metrics
                    .handovers
                    .get_or_create(&KindLabel {
                        kind: format!("{mode:?}-completed").to_lowercase(),
                    })
                    .inc();
                self.fast_handovers += 1;
                self.dirty = true;
                "handover-completed"
            }
            MagEvent::HandoverFailed {
                mn_id,
                mode,
                role,
                reason,
            } => {
                warn!(%mn_id, ?mode, ?role, reason, "fast handover failed");
                self.metrics
                    .handovers
                    .get_or_create(&KindLabel {
                        kind: format!("{mode:?}-failed").to_lowercase(),
                    })
                    .inc();
                "handover-failed"
            }
            MagEvent::Dropped { from, reason } => {
                debug!(%from, %reason, "message dropped");
                "dropped"
            }
        };
        self.metrics
            .events
            .get_or_create(&KindLabel { kind: kind.into() })
            .inc();
    }

    fn view(&self, e: &BulEntry) -> EntryView {
        let now = self.clock.now();
        EntryView {
            access_interface: self.links.get(&e.link.0).cloned().unwrap_or_default(),
            remaining_s: e.expires_at.map_or(0, |x| (x - now).as_secs() as u32),
            attached_ago: now - e.attached_at,
            registered_ago: e.registered_at.map(|r| now - r),
            lab: self.lab.contains_key(&e.mn_id),
            handover: self.mag.handover(&e.link_layer).is_some(),
            entry: e.clone(),
        }
    }

    /// Replies to `Attach { wait: true }` calls whose registration has concluded.
    fn answer_waiting(&mut self) {
        if self.waiting.is_empty() {
            return;
        }
        let waiting = std::mem::take(&mut self.waiting);
        for (mn_id, reply) in waiting {
            match self.mag.binding(&mn_id) {
                Some(e) if matches!(e.state, pmip::mag::BulState::Registering) => {
                    self.waiting.push((mn_id, reply));
                }
                Some(e) => {
                    let v = self.view(e);
                    let _ = reply.send(Ok(v));
                }
                None => {
                    let _ = reply.send(Err(CallError::NotFound(format!(
                        "{mn_id}: registration gave up (no PBA)"
                    ))));
                }
            }
        }
    }

    async fn flush(&mut self) {
        if !self.changes.is_empty() {
            let t = std::time::Instant::now();
            // The buffer keeps handing packets to their nodes while the kernel is being
            // changed: a packet that reached the device just before its prefix's route moved
            // to the access link must not wait for the netlink round trip, or the packets
            // after it, now delivered by the kernel directly, would overtake it.
            let applied = {
                let (dataplane, changes, buffer) =
                    (&self.dataplane, &self.changes, self.buffer.as_mut());
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
                    r = dataplane.apply(changes) => r,
                    () = pump => unreachable!("the pump never ends"),
                }
            };
            if let Err(e) = applied {
                error!(error = %e, changes = self.changes.len(), "datapath");
                self.metrics.dataplane_failures.inc();
            }
            // A prefix whose buffer hands packets to the node has its own route now.
            if let Some(b) = self.buffer.as_mut() {
                let routed: Vec<ipnet::Ipv6Net> = self
                    .changes
                    .iter()
                    .filter_map(|c| match c {
                        Change::AddLocalRoute {
                            prefix, ifindex, ..
                        } if *ifindex != b.ifindex() => Some(*prefix),
                        Change::AddDownlink { prefix, .. }
                        | Change::RemoveLocalRoute { prefix, .. } => Some(*prefix),
                        _ => None,
                    })
                    .collect();
                for p in routed {
                    b.end_delivery(&p);
                }
            }
            self.metrics
                .dataplane_changes
                .inc_by(self.changes.len() as u64);
            self.metrics
                .dataplane_seconds
                .observe(t.elapsed().as_secs_f64());
            self.changes.clear();
        }
        for op in std::mem::take(&mut self.buffer_ops) {
            use pmip::output::DataplaneCommand as D;
            let Some(b) = self.buffer.as_mut() else {
                break;
            };
            match op {
                D::FlushBuffer {
                    prefix,
                    deliver: None,
                } => match b.flush(&prefix) {
                    Ok(n) => {
                        debug!(%prefix, packets = n, "buffer flushed");
                        let node = self
                            .mag
                            .bindings()
                            .find(|e| e.prefixes.contains(&prefix))
                            .map(|e| e.link_layer);
                        if n > 0
                            && let Some(t) = node.and_then(|ll| self.awaiting_delivery.remove(&ll))
                        {
                            self.metrics
                                .attach_to_first_delivery_seconds
                                .observe(t.elapsed().as_secs_f64());
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
                                && let Some(t) = self.awaiting_delivery.remove(&ll)
                            {
                                self.metrics
                                    .attach_to_first_delivery_seconds
                                    .observe(t.elapsed().as_secs_f64());
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
        for ra in std::mem::take(&mut self.ras) {
            match self.ra.send_ra(&ra).await {
                Ok(()) => {
                    self.metrics.ra_sent.inc();
                    if !ra.prefixes.is_empty()
                        && let Some(t) = self.seen_at.remove(&ra.mn_link_layer)
                    {
                        self.metrics
                            .attach_to_ra_seconds
                            .observe(t.elapsed().as_secs_f64());
                    }
                }
                Err(e) => {
                    warn!(error = %e, link = ra.link.0, "sending a Router Advertisement");
                    self.metrics.ra_failures.inc();
                }
            };
        }
        if !self.tx.is_empty() {
            match self.transport.send_batch(&self.tx).await {
                Ok(n) if n < self.tx.len() => {
                    warn!(sent = n, of = self.tx.len(), "some messages were not sent")
                }
                Ok(_) => {}
                Err(e) => error!(error = %e, "sending on the signalling socket"),
            }
            self.tx.clear();
        }
        self.save();
        self.sync_counters();
    }

    fn sync_counters(&mut self) {
        let s = self.mag.stats();
        let sync = |c: &prometheus_client::metrics::counter::Counter, v: u64| {
            if v > c.get() {
                c.inc_by(v - c.get());
            }
        };
        sync(&self.metrics.pbu_sent, s.pbu_sent);
        sync(&self.metrics.pbu_retransmitted, s.pbu_retransmitted);
        sync(&self.metrics.pba_received, s.pba_received);
        let bul = self.mag.bindings().count();
        self.metrics.bul_entries.set(bul as i64);
        if let Some(b) = &self.buffer {
            let st = b.stats();
            self.metrics.buffer_held.set(st.held as i64);
            for (kind, v) in [
                ("buffered", st.buffered),
                ("flushed", st.flushed),
                ("dropped", st.dropped_overflow),
                ("discarded", st.discarded),
            ] {
                sync(
                    &self
                        .metrics
                        .buffer_packets
                        .get_or_create(&KindLabel { kind: kind.into() }),
                    v,
                );
            }
        }
        self.metrics
            .registered
            .set(self.mag.bindings().filter(|e| e.is_bound()).count() as i64);
        for (st, n) in s.pba_by_status.iter().enumerate() {
            if *n == 0 {
                continue;
            }
            let status = Status::from(st as u8);
            let c = self
                .metrics
                .pba_received_by_status
                .get_or_create(&StatusLabel {
                    status: st as u8,
                    name: status.rfc_name().unwrap_or("unknown").to_owned(),
                });
            sync(&c, *n);
        }
    }

    /// Writes the registered nodes when they changed (write to a temporary file, then rename:
    /// a `kill -9` leaves the old or the new file, never half of one).
    fn save(&mut self) {
        if !self.dirty {
            return;
        }
        self.save_now();
    }

    fn save_now(&mut self) {
        self.dirty = false;
        let now = self.mag.save();
        if now == self.saved && self.state_file.exists() {
            return;
        }
        let tmp = self.state_file.with_extension("tmp");
        let r = serde_json::to_vec_pretty(&now)
            .map_err(std::io::Error::other)
            .and_then(|b| std::fs::write(&tmp, b))
            .and_then(|()| std::fs::rename(&tmp, &self.state_file));
        match r {
            Ok(()) => self.saved = now,
            Err(e) => {
                warn!(error = %e, file = %self.state_file.display(), "saving registered nodes")
            }
        }
    }

    fn command(&mut self, cmd: Command) {
        let (now, wall) = (self.clock.now(), self.clock.wall());
        match cmd {
            Command::List { reply } => {
                let mut v: Vec<EntryView> = self.mag.bindings().map(|e| self.view(e)).collect();
                v.sort_by(|a, b| a.entry.mn_id.cmp(&b.entry.mn_id));
                let _ = reply.send(v);
            }
            Command::Attach {
                link_layer,
                interface,
                access_technology_type,
                wait,
                reply,
            } => {
                let Some(ifindex) = self
                    .links
                    .iter()
                    .find(|(_, n)| **n == interface)
                    .map(|(i, _)| *i)
                else {
                    let _ = reply.send(Err(CallError::FailedPrecondition(format!(
                        "{interface} is not an access interface of this MAG (or it is down)"
                    ))));
                    return;
                };
                let Some(mn_id) = self
                    .mag
                    .policy()
                    .by_link_layer(&link_layer)
                    .map(|p| p.mn_id.to_string())
                else {
                    let _ = reply.send(Err(CallError::NotFound(format!(
                        "no profile has link-layer address {link_layer}"
                    ))));
                    return;
                };
                self.mag.handle_attach(
                    now,
                    wall,
                    Attach {
                        link_layer,
                        link: AccessLink(ifindex),
                        access_technology_type,
                        handoff_hint: None,
                    },
                );
                if wait {
                    self.waiting.push((mn_id, reply));
                } else if let Some(e) = self.mag.binding(&mn_id) {
                    let v = self.view(e);
                    let _ = reply.send(Ok(v));
                }
                self.drain();
            }
            Command::Detach { node, reply } => {
                let entry = match &node {
                    NodeKey::LinkLayer(ll) => self.mag.binding_by_link_layer(ll),
                    NodeKey::MnId(id) => self.mag.binding(id),
                };
                let Some(e) = entry else {
                    let _ = reply.send(Err(CallError::NotFound(format!("no entry for {node:?}"))));
                    return;
                };
                let v = self.view(e);
                let ll = e.link_layer;
                self.mag.handle_detach(now, wall, &ll);
                self.drain();
                let _ = reply.send(Ok(v));
            }
            Command::Stats { reply } => {
                let s = self.mag.stats();
                let _ = reply.send(StatsView {
                    name: self.config.name.clone(),
                    proxy_coa: self.config.proxy_coa,
                    lma_address: self.config.lma_address,
                    restart_counter: self.restart_counter,
                    uptime: self.started.elapsed(),
                    bul_entries: self.mag.bindings().count(),
                    registered: self.mag.bindings().filter(|e| e.is_bound()).count(),
                    pbus_sent: s.pbu_sent,
                    pbu_retransmissions: s.pbu_retransmitted,
                    pbas_by_status: s
                        .pba_by_status
                        .iter()
                        .enumerate()
                        .filter(|(_, n)| **n > 0)
                        .map(|(k, n)| (Status::from(k as u8), *n))
                        .collect(),
                    lma_reachable: self.lma_reachable,
                    lab_nodes: self.lab.len(),
                    profiles: self.mag.policy().len(),
                    policy_synced: self.policy_synced,
                    fast_handovers: self.fast_handovers,
                    buffered_packets: self.buffer.as_ref().map_or(0, |b| b.stats().held),
                });
            }
            Command::UpsertProfile(p) => {
                let id = p.mn_id.to_string();
                if self.config.mobile_nodes.iter().any(|m| m.mn_id == p.mn_id) {
                    // Local profiles win (MagConfig::policy_server).
                    return;
                }
                match self.mag.upsert_profile(p) {
                    Ok(()) => {
                        self.stale.remove(&id);
                        self.learned.insert(id);
                    }
                    Err(e) => warn!(error = %e, "profile from the policy server refused"),
                }
            }
            Command::RemoveProfile(id) => {
                if self.learned.remove(&id) {
                    self.mag.remove_profile(now, wall, &id);
                    self.drain();
                }
            }
            Command::HandoverIndication {
                mn_id,
                new_mag,
                reply,
            } => match self.mag.handle_handover_indication(now, &mn_id, new_mag) {
                Ok(()) => {
                    self.indications.push((mn_id, reply));
                    self.drain();
                }
                Err(e) => {
                    let _ = reply.send(Err(match e {
                        pmip::mag::FastError::NotRegistered(_) => {
                            CallError::NotFound(e.to_string())
                        }
                        _ => CallError::FailedPrecondition(e.to_string()),
                    }));
                }
            },
            Command::ExpectArrival {
                link_layer,
                previous_mag,
            } => self.mag.expect_arrival(now, link_layer, previous_mag),
            Command::KnowsNode { link_layer, reply } => {
                let _ = reply.send(self.mag.policy().by_link_layer(&link_layer).is_some());
            }
            Command::LinkLayerOf { mn_id, reply } => {
                let ll = self
                    .mag
                    .policy()
                    .lookup(&mn_id)
                    .filter(|p| p.mn_id.as_str() == mn_id)
                    .and_then(|p| p.link_layer_addresses.first().copied());
                let _ = reply.send(ll);
            }
            Command::PolicyReset => {
                self.stale = self.learned.clone();
            }
            Command::PolicySynced(s) => {
                self.policy_synced = s;
                if s {
                    for id in std::mem::take(&mut self.stale) {
                        self.learned.remove(&id);
                        self.mag.remove_profile(now, wall, &id);
                    }
                    self.drain();
                }
            }
            Command::LabNode {
                mn_id,
                interface,
                present,
            } => {
                if present {
                    self.lab.insert(mn_id, interface);
                } else {
                    self.lab.remove(&mn_id);
                }
            }
        }
    }
}

async fn buffer_readable(b: &Option<crate::buffer::Buffer>) -> std::io::Result<()> {
    match b {
        Some(b) => b.readable().await,
        None => std::future::pending().await,
    }
}

/// Tunnels to the proxy-CoA arrive on the transport link.
pub fn termination(dp: &Dataplane, address: Ipv6Addr) -> Termination {
    Termination {
        local: address,
        ifindex: dp.settings().transport_ifindex,
    }
}
