//! The LMA daemon's one task that owns the protocol state: it `select!`s over the signalling
//! socket, the state machine's next timeout and the API's commands, and after every input
//! moves the state machine's outputs out, in this order: datapath changes, one durable store
//! commit, then the messages. A PBA therefore never leaves before its route exists and its
//! binding is on disk.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv6Addr;
use std::sync::Arc;
use std::time::Duration;

use cnf::transport::{RecvBatch, SignallingTransport};
use cnf::{Clock, datapath};
use dataplane::{Change, Dataplane, DesiredState, PrefixRoute, Termination};
use futures::FutureExt;
use ipnet::Ipv6Net;
use pmip::Instant;
use pmip::cache::{BindingState, SessionId};
use pmip::config::{LmaConfig, MobileNodeProfile};
use pmip::heartbeat::PeerEvent;
use pmip::lma::{Lma, LmaEvent, LmaOutput, RemovalReason};
use pmip::output::Transmit;
use pmip::policy::PolicyError;
use pmip::wire::{BraStatus, RevocationTrigger, Status, WallClock};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, error, info, warn};

use crate::hub::{
    BindingChange, BindingView, DeleteReason, Hub, ProfileChange, Rejection, UpdateReason,
    ViewState, WatchStart,
};
use crate::metrics::{KindLabel, Metrics, StatusLabel};
use crate::store::{Batch, Loaded, Store};

/// How long a binding restored from the store lives at least, so its MAG can re-register it
/// after hearing of the restart.
pub const RESTORE_GRACE: Duration = Duration::from_secs(120);
/// Receive batches (of up to [`cnf::transport::BATCH`] messages) handled in one loop turn
/// before its datapath batch, store commit and replies. Measured with `pmip-bench signalling`:
/// at one batch a turn, a turn was one fsync for 64 PBUs and the control plane reached 21 %
/// of the raw-socket echo ceiling.
pub const MAX_BATCHES_PER_TURN: usize = 16;
/// How long a refresh may wait for its durable write. A refresh only moves a binding's expiry
/// and its last timestamp or sequence number, so its PBA does not wait for the disk: refreshes
/// are written with the next commit that must happen anyway, or after this long, or when
/// [`DEFERRED_MAX`] of them are waiting. A refresh lost to a crash costs nothing: a restored
/// binding lives at least [`RESTORE_GRACE`] and its MAG re-registers it on hearing of the
/// restart. Measured with `pmip-bench signalling`: a commit (an fsync) per loop turn held
/// refreshes to 28 % of the raw-socket echo ceiling.
pub const DEFERRED_INTERVAL: Duration = Duration::from_millis(200);
/// Refreshes waiting for their write at most.
pub const DEFERRED_MAX: usize = 65_536;
/// Changes kept for Watch clients that reconnect.
pub const WATCH_HISTORY: usize = 65_536;

/// How a revocation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RevokeOutcome {
    /// The MAG acknowledged, with this status.
    Acknowledged(BraStatus),
    /// No acknowledgement after the retries; the binding was removed anyway.
    TimedOut,
    /// The node has no binding.
    NoBinding,
}

/// Counters and facts for the Stats RPC.
#[derive(Debug, Clone)]
pub struct StatsView {
    /// The configured name and the LMA address.
    pub name: String,
    pub address: Ipv6Addr,
    /// Latest revision of the binding change stream.
    pub revision: u64,
    pub bindings: usize,
    pub active_bindings: usize,
    /// Home network prefixes held by bindings.
    pub allocated_prefixes: usize,
    pub expirations: u64,
    /// MAGs with bindings that answer heartbeats (0 with heartbeats off).
    pub mags_reachable: usize,
    pub prefixes_available: u64,
    pub pba_by_status: Vec<(Status, u64)>,
    pub pbu_received: u64,
    pub restart_counter: u32,
    pub uptime: Duration,
    pub authorized_mags: usize,
    pub mags_with_bindings: usize,
    pub handovers: u64,
    pub revocations: u64,
    pub profiles: usize,
    pub datapath: &'static str,
}

/// An authorized MAG as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MagView {
    pub address: Ipv6Addr,
    pub name: String,
    /// From the configuration file (not changeable over the API).
    pub from_config: bool,
    pub sessions: u32,
    pub reachable: bool,
}

/// A profile as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileView {
    pub profile: MobileNodeProfile,
    pub from_config: bool,
    /// Profile revision of its last change in this epoch; 0 when unchanged since the start.
    pub revision: u64,
    /// When it last changed in this epoch.
    pub updated_at: Option<WallClock>,
}

/// One page of the binding cache.
#[derive(Debug, Clone)]
pub struct BindingPage {
    pub bindings: Vec<BindingView>,
    /// Slot to continue after; `None` on the last page.
    pub next: Option<u32>,
    /// Entries matching the filter in the whole cache.
    pub total: usize,
    /// Binding revision the page reflects.
    pub revision: u64,
}

/// What an upsert did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upserted {
    pub view: ProfileView,
    /// No profile with this MN-ID existed.
    pub created: bool,
    /// False when the stored profile was already equal (no revision used).
    pub changed: bool,
}

/// Why the policy store refused a change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyRefusal {
    #[error("{0} comes from the configuration file; change it there")]
    FromConfig(String),
    #[error("no profile for {0}")]
    NotFound(String),
    /// A link-layer address or prefix belongs to another node.
    #[error(transparent)]
    Conflict(PolicyError),
    /// A pinned prefix the pools cannot hold.
    #[error("{0}")]
    OutOfRange(String),
    #[error("{0}")]
    Invalid(String),
}

/// What replacing the API-authorized MAGs changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MagChanges {
    pub added: Vec<Ipv6Addr>,
    pub removed: Vec<Ipv6Addr>,
    pub renamed: Vec<Ipv6Addr>,
}

/// A request from the API to the core.
#[derive(Debug)]
pub enum Command {
    ListBindings {
        /// Slot after which to continue (the page token).
        after: Option<u32>,
        limit: usize,
        proxy_coa: Option<Ipv6Addr>,
        reply: oneshot::Sender<BindingPage>,
    },
    BindingsOf {
        mn_id: String,
        reply: oneshot::Sender<Vec<BindingView>>,
    },
    /// The binding holding a prefix, or the one whose prefix covers an address (/128).
    BindingByPrefix {
        prefix: Ipv6Net,
        reply: oneshot::Sender<Option<BindingView>>,
    },
    WatchBindings {
        cursor: Option<(u64, u64)>,
        reply: oneshot::Sender<WatchStart<BindingChange, BindingChange>>,
    },
    Revoke {
        mn_id: String,
        trigger: RevocationTrigger,
        reply: oneshot::Sender<RevokeOutcome>,
    },
    Stats {
        reply: oneshot::Sender<StatsView>,
    },
    UpsertProfile {
        profile: MobileNodeProfile,
        reply: oneshot::Sender<Result<Upserted, PolicyRefusal>>,
    },
    DeleteProfile {
        mn_id: String,
        /// Also revoke the node's bindings (RFC 5846).
        revoke: bool,
        reply: oneshot::Sender<Result<(), PolicyRefusal>>,
    },
    GetProfile {
        mn_id: String,
        reply: oneshot::Sender<Option<ProfileView>>,
    },
    ListProfiles {
        reply: oneshot::Sender<Vec<ProfileView>>,
    },
    WatchProfiles {
        cursor: Option<(u64, u64)>,
        reply: oneshot::Sender<WatchStart<ProfileChange, ProfileView>>,
    },
    AddMag {
        address: Ipv6Addr,
        name: String,
        reply: oneshot::Sender<bool>,
    },
    RemoveMag {
        address: Ipv6Addr,
        reply: oneshot::Sender<Result<bool, String>>,
    },
    /// Replaces the MAGs added over the API (those from the configuration stay).
    SetMags {
        mags: BTreeMap<Ipv6Addr, String>,
        reply: oneshot::Sender<MagChanges>,
    },
    ListMags {
        reply: oneshot::Sender<Vec<MagView>>,
    },
    /// A Mobility Header that reached the daemon by another way than its transport (a
    /// test's simulated MAG): handled like a received one, its checksum verified.
    Receive {
        src: Ipv6Addr,
        dst: Ipv6Addr,
        bytes: Vec<u8>,
        reply: oneshot::Sender<()>,
    },
}

/// The API's way in.
#[derive(Debug, Clone)]
pub struct CoreHandle {
    tx: mpsc::Sender<Command>,
    epoch: u64,
}

/// The core task has stopped.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the LMA is shutting down")]
pub struct CoreGone;

impl CoreHandle {
    /// The LMA epoch (its restart counter) of this process.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Sends a command and waits for its reply.
    pub async fn call<R>(
        &self,
        make: impl FnOnce(oneshot::Sender<R>) -> Command,
    ) -> Result<R, CoreGone> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(make(tx)).await.map_err(|_| CoreGone)?;
        rx.await.map_err(|_| CoreGone)
    }
}

/// What [`Core::new`] needs.
#[derive(Debug)]
pub struct Parts<T> {
    pub config: LmaConfig,
    pub store: Store,
    pub loaded: Loaded,
    pub restart_counter: u32,
    pub dataplane: Dataplane,
    pub transport: T,
    pub metrics: Metrics,
    pub clock: Clock,
    pub seed: u64,
}

/// The core task.
#[derive(Debug)]
pub struct Core<T> {
    lma: Lma,
    clock: Clock,
    started: std::time::Instant,
    transport: T,
    dataplane: Dataplane,
    store: Arc<Store>,
    metrics: Metrics,
    commands: mpsc::Receiver<Command>,
    bindings_hub: Hub<BindingChange>,
    profiles_hub: Hub<ProfileChange>,
    /// Per binding key: revision of its last change, and the MAG before the last handoff.
    revisions: HashMap<String, u64>,
    previous_coa: HashMap<String, Ipv6Addr>,
    rejections: BTreeMap<String, Rejection>,
    config_profiles: BTreeSet<String>,
    config_mags: BTreeSet<Ipv6Addr>,
    api_mags: BTreeMap<Ipv6Addr, String>,
    revokes: HashMap<String, Vec<oneshot::Sender<RevokeOutcome>>>,
    revoking: BTreeSet<String>,
    /// Per profile changed in this epoch: its revision and when.
    profile_changes: HashMap<String, (u64, WallClock)>,
    expirations: u64,
    // Per loop turn.
    tx: Vec<Transmit>,
    changes: Vec<Change>,
    batch: Batch,
    /// Refreshed bindings not yet written, and since when the oldest waits.
    deferred: Batch,
    deferred_since: Option<tokio::time::Instant>,
    pending_commit:
        Option<tokio::task::JoinHandle<(Result<(), crate::store::StoreError>, Duration)>>,
    pbu_arrivals: Vec<std::time::Instant>,
}

impl<T: SignallingTransport> Core<T> {
    /// Restores the state machine from what the store held, reconciles the datapath with it
    /// and returns the core and the API's handle.
    pub async fn new(p: Parts<T>) -> anyhow::Result<(Core<T>, CoreHandle)> {
        let now = p.clock.now();
        let wall = p.clock.wall();
        let config_profiles: BTreeSet<String> = p
            .config
            .mobile_nodes
            .iter()
            .map(|m| m.mn_id.to_string())
            .collect();
        let config_mags: BTreeSet<Ipv6Addr> = p.config.authorized_mags.iter().copied().collect();
        let api_mags = p.loaded.mag_names.clone();
        let mut lma = Lma::restore(
            p.config.clone(),
            &p.loaded.snapshot,
            p.restart_counter,
            p.seed,
            now,
            wall,
            RESTORE_GRACE,
        )?;
        lma.set_authorized_mags(config_mags.iter().chain(api_mags.keys()).copied());
        let (cmd_tx, cmd_rx) = mpsc::channel(1024);
        let epoch = u64::from(p.restart_counter);
        let mut core = Core {
            lma,
            clock: p.clock,
            started: std::time::Instant::now(),
            transport: p.transport,
            dataplane: p.dataplane,
            store: Arc::new(p.store),
            metrics: p.metrics,
            commands: cmd_rx,
            bindings_hub: Hub::new(epoch, WATCH_HISTORY),
            profiles_hub: Hub::new(epoch, WATCH_HISTORY),
            revisions: HashMap::new(),
            previous_coa: HashMap::new(),
            rejections: BTreeMap::new(),
            config_profiles,
            config_mags,
            api_mags,
            revokes: HashMap::new(),
            revoking: BTreeSet::new(),
            profile_changes: HashMap::new(),
            expirations: 0,
            tx: Vec::new(),
            changes: Vec::new(),
            batch: Batch::default(),
            deferred: Batch::default(),
            deferred_since: None,
            pending_commit: None,
            pbu_arrivals: Vec::new(),
        };
        core.start(&p.loaded).await?;
        Ok((core, CoreHandle { tx: cmd_tx, epoch }))
    }

    /// Reconciles the datapath with the restored bindings and forgets stored bindings that
    /// did not survive (expired while the LMA was down).
    async fn start(&mut self, loaded: &Loaded) -> anyhow::Result<()> {
        let settings = self.dataplane.settings();
        let mut desired = DesiredState::new();
        desired
            .terminations
            .insert(self.lma.address(), settings.transport_ifindex);
        let mut kept = BTreeSet::new();
        for (_, e) in self.lma.cache().iter() {
            if let Some(p) = e.prefixes.as_slice().first() {
                kept.insert(p.to_string());
            }
            if e.state == BindingState::Active {
                for p in e.prefixes.as_slice() {
                    desired
                        .routes
                        .insert(*p, PrefixRoute::Tunnel { peer: e.proxy_coa });
                }
            }
        }
        let t = std::time::Instant::now();
        let report = self.dataplane.reconcile(&desired).await?;
        info!(
            bindings = self.lma.cache().len(),
            ?report,
            took_ms = t.elapsed().as_millis() as u64,
            backend = self.dataplane.backend_name(),
            "datapath reconciled"
        );
        for r in &loaded.snapshot.bindings {
            if !kept.contains(&r.key()) {
                self.batch.delete_binding(r.key());
            }
        }
        // The restore's own route commands are what the reconcile just did; its heartbeat
        // announcements still go out.
        while let Some(o) = self.lma.poll_output() {
            if let LmaOutput::Transmit(t) = o {
                self.tx.push(t);
            }
        }
        self.metrics.bindings.set(self.lma.cache().len() as i64);
        self.flush().await;
        Ok(())
    }

    /// Runs until `shutdown` resolves.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) {
        let mut batch = RecvBatch::default();
        tokio::pin!(shutdown);
        loop {
            let sleep = self.clock.sleep_until(self.lma.poll_timeout());
            tokio::select! {
                biased;
                _ = &mut shutdown => break,
                r = self.transport.recv_batch(&mut batch) => match r {
                    Ok(n) => {
                        self.receive(n, &batch);
                        // Whatever else is queued joins this turn, so that one store commit
                        // (an fsync) and one datapath batch serve many messages.
                        for _ in 1..MAX_BATCHES_PER_TURN {
                            match self.transport.recv_batch(&mut batch).now_or_never() {
                                Some(Ok(n)) if n > 0 => self.receive(n, &batch),
                                _ => break,
                            }
                        }
                    }
                    Err(e) => {
                        error!(error = %e, "receiving on the signalling socket");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                },
                Some(cmd) = self.commands.recv() => {
                    self.command(cmd);
                    // Take whatever else is queued in the same turn.
                    while let Ok(cmd) = self.commands.try_recv() {
                        self.command(cmd);
                    }
                }
                _ = sleep => {
                    let (now, wall) = (self.clock.now(), self.clock.wall());
                    self.lma.handle_timeout(now, wall);
                    self.drain(now, wall);
                }
                _ = tokio::time::sleep_until(
                    self.deferred_since.unwrap_or_else(tokio::time::Instant::now)
                        + DEFERRED_INTERVAL
                ), if self.deferred_since.is_some() => {}
            }
            self.flush().await;
        }
        info!("shutting down");
        // The deferred refreshes are written now, before anything of this turn.
        let mut all = std::mem::take(&mut self.deferred);
        all.absorb(std::mem::take(&mut self.batch));
        self.batch = all;
        self.deferred_since = None;
        self.flush().await;
        self.finish_commit().await;
    }

    fn receive(&mut self, n: usize, batch: &RecvBatch) {
        self.metrics.batch_size.observe(n as f64);
        let arrived = std::time::Instant::now();
        for (m, bytes) in batch.iter() {
            let (now, wall) = (self.clock.now(), self.clock.wall());
            self.pbu_arrivals.push(arrived);
            self.lma
                .handle_message_trusted(now, wall, m.src, m.dst, bytes);
            self.drain(now, wall);
        }
    }

    /// Moves the state machine's outputs into this turn's datapath, store and send queues.
    fn drain(&mut self, now: Instant, wall: WallClock) {
        while let Some(o) = self.lma.poll_output() {
            match o {
                LmaOutput::Transmit(t) => self.tx.push(t),
                LmaOutput::Dataplane(c) => self.changes.extend(datapath::change(&c)),
                LmaOutput::Event(e) => self.event(e, now, wall),
            }
        }
    }

    fn view(&self, session: SessionId, now: Instant, wall: WallClock) -> Option<BindingView> {
        self.keyed_view(session, now, wall).map(|(_, v)| v)
    }

    /// The view and its key (formatting the key is a good part of a refresh's cost).
    fn keyed_view(
        &self,
        session: SessionId,
        now: Instant,
        wall: WallClock,
    ) -> Option<(String, BindingView)> {
        let e = self.lma.cache().get(session)?;
        let record = self.lma.record(session, now, wall)?;
        let key = record.key();
        let view = BindingView {
            state: if self.revoking.contains(&*e.mn_id) {
                ViewState::Revoking
            } else if e.state == BindingState::Deregistering {
                ViewState::Deregistering
            } else {
                ViewState::Active
            },
            revision: self.revisions.get(&key).copied().unwrap_or(0),
            previous_proxy_coa: self.previous_coa.get(&key).copied(),
            mag_name: self.mag_name(&e.proxy_coa),
            remaining_s: match e.state {
                BindingState::Active => (e.expires_at - now).as_secs() as u32,
                BindingState::Deregistering => 0,
            },
            record,
        };
        Some((key, view))
    }

    fn mag_name(&self, a: &Ipv6Addr) -> Option<String> {
        self.api_mags.get(a).filter(|n| !n.is_empty()).cloned()
    }

    /// Publishes a binding's new state and queues its write: before this turn's replies, or
    /// with the deferred refreshes when `refresh_only`.
    fn publish_binding(
        &mut self,
        session: SessionId,
        now: Instant,
        wall: WallClock,
        refresh_only: bool,
        make: impl FnOnce(BindingView) -> BindingChange,
    ) {
        let Some((key, mut v)) = self.keyed_view(session, now, wall) else {
            return;
        };
        // One place per binding: a refresh of a binding this turn writes anyway joins that
        // write, and a write before the replies takes over a deferred refresh.
        if refresh_only && !self.batch.has_binding(&key) {
            self.deferred.put_keyed(key.clone(), v.record.clone());
            self.deferred_since
                .get_or_insert_with(tokio::time::Instant::now);
        } else {
            self.deferred.forget_binding(&key);
            self.batch.put_keyed(key.clone(), v.record.clone());
        }
        v.revision = self.bindings_hub.revision() + 1;
        self.revisions.insert(key, v.revision);
        self.rejections.remove(&v.record.mn_id);
        self.bindings_hub.publish(wall, make(v));
    }

    fn event(&mut self, e: LmaEvent, now: Instant, wall: WallClock) {
        match e {
            LmaEvent::BindingCreated { session } => {
                self.publish_binding(session, now, wall, false, BindingChange::Added);
            }
            LmaEvent::BindingRefreshed { session } => {
                self.publish_binding(session, now, wall, true, |v| {
                    BindingChange::Updated(v, UpdateReason::Refresh)
                });
            }
            LmaEvent::BindingHandedOff { session, from } => {
                self.metrics.handovers.inc();
                if let Some(key) = self.lma.record(session, now, wall).map(|r| r.key()) {
                    self.previous_coa.insert(key, from);
                }
                self.publish_binding(session, now, wall, false, |v| {
                    BindingChange::Updated(v, UpdateReason::Handoff)
                });
            }
            LmaEvent::BindingDeregistered { session } => {
                self.publish_binding(session, now, wall, false, |v| {
                    BindingChange::Updated(v, UpdateReason::Deregistered)
                });
            }
            LmaEvent::BindingRemoved { record, reason } => {
                let key = record.key();
                self.batch.delete_binding(key.clone());
                self.revisions.remove(&key);
                let previous = self.previous_coa.remove(&key);
                let mag_name = self.mag_name(&record.proxy_coa);
                let view = BindingView {
                    record,
                    state: ViewState::Active,
                    revision: self.bindings_hub.revision() + 1,
                    previous_proxy_coa: previous,
                    mag_name,
                    remaining_s: 0,
                };
                self.expirations += u64::from(reason == RemovalReason::Expired);
                let reason = match reason {
                    RemovalReason::Expired => DeleteReason::Expired,
                    RemovalReason::Deregistered => DeleteReason::Deregistered,
                    RemovalReason::Revoked => DeleteReason::Revoked,
                };
                self.bindings_hub
                    .publish(wall, BindingChange::Deleted(view, reason));
            }
            LmaEvent::Rejected { mn_id, mag, status } => {
                debug!(%mn_id, %mag, %status, "PBU rejected");
                let mag_name = self.mag_name(&mag);
                let count = self.rejections.get(&mn_id).map_or(0, |r| r.count) + 1;
                let r = Rejection {
                    mn_id: mn_id.clone(),
                    mag,
                    mag_name,
                    status,
                    count,
                };
                self.rejections.insert(mn_id, r.clone());
                // Cap what a flood of refusals can cost.
                if self.rejections.len() > 100_000
                    && let Some(k) = self.rejections.keys().next().cloned()
                {
                    self.rejections.remove(&k);
                }
                self.bindings_hub.publish(wall, BindingChange::Rejected(r));
            }
            LmaEvent::Peer(p) => {
                let (kind, peer) = match p {
                    PeerEvent::Unreachable { peer } => ("unreachable", peer),
                    PeerEvent::Reachable { peer } => ("reachable", peer),
                    PeerEvent::Restarted { peer, .. } => ("restarted", peer),
                };
                warn!(%peer, kind, "MAG heartbeat");
                self.metrics
                    .peer_events
                    .get_or_create(&KindLabel { kind: kind.into() })
                    .inc();
            }
            LmaEvent::RevocationAcknowledged { mn_id, status } => {
                self.revoked(&mn_id, RevokeOutcome::Acknowledged(status), "acknowledged");
            }
            LmaEvent::RevocationTimedOut { mn_id } => {
                self.revoked(&mn_id, RevokeOutcome::TimedOut, "timed-out");
            }
            LmaEvent::Dropped { from, reason } => {
                debug!(%from, %reason, "message dropped");
                self.metrics.dropped.inc();
            }
        }
    }

    fn revoked(&mut self, mn_id: &str, outcome: RevokeOutcome, kind: &str) {
        self.revoking.remove(mn_id);
        self.metrics
            .revocations
            .get_or_create(&KindLabel { kind: kind.into() })
            .inc();
        for r in self.revokes.remove(mn_id).unwrap_or_default() {
            let _ = r.send(outcome.clone());
        }
    }

    /// Datapath, then store, then messages.
    async fn flush(&mut self) {
        if !self.changes.is_empty() {
            let t = std::time::Instant::now();
            for c in &self.changes {
                let kind = match c {
                    Change::AddDownlink { .. } => "add-downlink",
                    Change::RemoveDownlink { .. } => "remove-downlink",
                    _ => "other",
                };
                self.metrics
                    .dataplane_changes
                    .get_or_create(&KindLabel { kind: kind.into() })
                    .inc();
            }
            if let Err(e) = self.dataplane.apply(&self.changes).await {
                // The binding state stays as the protocol says; the next change of the same
                // prefix, or the next start, reconciles the kernel.
                error!(error = %e, changes = self.changes.len(), "datapath");
                self.metrics.dataplane_failures.inc();
            }
            self.metrics
                .dataplane_seconds
                .observe(t.elapsed().as_secs_f64());
            self.changes.clear();
        }
        if self.deferred.is_empty() {
            self.deferred_since = None;
        }
        let deferred_due = self
            .deferred_since
            .is_some_and(|t| t.elapsed() >= DEFERRED_INTERVAL)
            || self.deferred.len() >= DEFERRED_MAX;
        let eager = !self.batch.is_empty();
        if eager || deferred_due {
            // The deferred refreshes go first, so that anything this turn changed wins.
            let mut batch = std::mem::take(&mut self.deferred);
            batch.absorb(std::mem::take(&mut self.batch));
            self.deferred_since = None;
            // Commits happen in order: the one before must be done.
            self.finish_commit().await;
            let store = self.store.clone();
            self.pending_commit = Some(tokio::task::spawn_blocking(move || {
                let t = std::time::Instant::now();
                (store.commit(&batch), t.elapsed())
            }));
            // This turn's replies wait for their changes to be on disk; refreshes alone do
            // not, and their commit overlaps the next turns.
            if eager {
                self.finish_commit().await;
            }
        }
        if !self.tx.is_empty() {
            match self.transport.send_batch(&self.tx).await {
                Ok(n) if n < self.tx.len() => {
                    warn!(sent = n, of = self.tx.len(), "some messages were not sent")
                }
                Ok(_) => {}
                Err(e) => error!(error = %e, "sending on the signalling socket"),
            }
            let done = std::time::Instant::now();
            for a in self.pbu_arrivals.drain(..) {
                self.metrics
                    .registration_seconds
                    .observe((done - a).as_secs_f64());
            }
            self.tx.clear();
        }
        self.pbu_arrivals.clear();
        self.sync_counters();
    }

    /// Waits for the commit in flight, if any, and records how it went.
    async fn finish_commit(&mut self) {
        let Some(h) = self.pending_commit.take() else {
            return;
        };
        match h.await {
            Ok((r, took)) => {
                self.metrics
                    .store_commit_seconds
                    .observe(took.as_secs_f64());
                match r {
                    Ok(()) => {
                        self.metrics.store_commits.inc();
                    }
                    Err(e) => {
                        error!(error = %e, "durable store commit failed");
                        self.metrics.store_failures.inc();
                    }
                }
            }
            Err(e) => {
                error!(error = %e, "durable store task failed");
                self.metrics.store_failures.inc();
            }
        }
    }

    fn sync_counters(&mut self) {
        let s = self.lma.stats();
        self.metrics.bindings.set(self.lma.cache().len() as i64);
        self.metrics.mags.set(self.lma.mags().count() as i64);
        let received = s.pbu_received;
        let already = self.metrics.pbu_received.get();
        if received > already {
            self.metrics.pbu_received.inc_by(received - already);
        }
        for (status, n) in s.pba_by_status.iter().enumerate() {
            if *n == 0 {
                continue;
            }
            let st = Status::from(status as u8);
            let c = self.metrics.pba_sent.get_or_create(&StatusLabel {
                status: status as u8,
                name: st.rfc_name().unwrap_or("unknown").to_owned(),
            });
            let seen = c.get();
            if *n > seen {
                c.inc_by(n - seen);
            }
        }
        let bri = s.bri_sent;
        if bri > self.metrics.bri_sent.get() {
            self.metrics
                .bri_sent
                .inc_by(bri - self.metrics.bri_sent.get());
        }
    }

    fn authorized(&self) -> impl Iterator<Item = Ipv6Addr> + '_ {
        self.config_mags.iter().chain(self.api_mags.keys()).copied()
    }

    fn command(&mut self, cmd: Command) {
        let (now, wall) = (self.clock.now(), self.clock.wall());
        match cmd {
            Command::ListBindings {
                after,
                limit,
                proxy_coa,
                reply,
            } => {
                let start = after.map_or(0, |a| a + 1);
                let mut out = Vec::with_capacity(limit.min(1024));
                let mut next = None;
                for (s, e) in self.lma.cache().iter() {
                    if s.0 < start || proxy_coa.is_some_and(|c| c != e.proxy_coa) {
                        continue;
                    }
                    if out.len() == limit {
                        next = out.last().map(|(s, _): &(u32, BindingView)| *s);
                        break;
                    }
                    if let Some(v) = self.view(s, now, wall) {
                        out.push((s.0, v));
                    }
                }
                let total = match proxy_coa {
                    None => self.lma.cache().len(),
                    Some(c) => self
                        .lma
                        .mags()
                        .find(|(a, _)| **a == c)
                        .map_or(0, |(_, n)| *n as usize),
                };
                let _ = reply.send(BindingPage {
                    bindings: out.into_iter().map(|(_, v)| v).collect(),
                    next,
                    total,
                    revision: self.bindings_hub.revision(),
                });
            }
            Command::BindingsOf { mn_id, reply } => {
                let sessions: Vec<SessionId> = self.lma.cache().sessions_of(&mn_id).collect();
                let views = sessions
                    .into_iter()
                    .filter_map(|s| self.view(s, now, wall))
                    .collect();
                let _ = reply.send(views);
            }
            Command::BindingByPrefix { prefix, reply } => {
                let c = self.lma.cache();
                let s = c.by_prefix(&prefix.trunc()).or_else(|| {
                    // An address: find the /64 (or any configured length) covering it.
                    self.lma
                        .config()
                        .prefix_pools
                        .iter()
                        .map(|p| p.prefix_length)
                        .chain([64])
                        .find_map(|len| c.by_address(&prefix.addr(), len))
                });
                let _ = reply.send(s.and_then(|s| self.view(s, now, wall)));
            }
            Command::WatchBindings { cursor, reply } => {
                let rx = self.bindings_hub.subscribe();
                let start = match self.bindings_hub.since(cursor) {
                    Ok(events) => WatchStart::Resume {
                        epoch: self.bindings_hub.epoch(),
                        objects: self.lma.cache().len() as u64,
                        events,
                        rx,
                    },
                    Err(reason) => {
                        let sessions: Vec<SessionId> =
                            self.lma.cache().iter().map(|(s, _)| s).collect();
                        let mut snapshot: Vec<BindingChange> = sessions
                            .into_iter()
                            .filter_map(|s| self.view(s, now, wall))
                            .map(BindingChange::Added)
                            .collect();
                        snapshot.extend(
                            self.rejections
                                .values()
                                .cloned()
                                .map(BindingChange::Rejected),
                        );
                        WatchStart::Reset {
                            reason,
                            epoch: self.bindings_hub.epoch(),
                            revision: self.bindings_hub.revision(),
                            snapshot,
                            rx,
                        }
                    }
                };
                let _ = reply.send(start);
            }
            Command::Revoke {
                mn_id,
                trigger,
                reply,
            } => match self.lma.revoke(now, &mn_id, trigger) {
                Ok(_) => {
                    self.revoking.insert(mn_id.clone());
                    self.revokes.entry(mn_id).or_default().push(reply);
                    self.drain(now, wall);
                }
                Err(_) => {
                    let _ = reply.send(RevokeOutcome::NoBinding);
                }
            },
            Command::Stats { reply } => {
                let s = self.lma.stats();
                let (mut active, mut allocated) = (0, 0);
                for (_, e) in self.lma.cache().iter() {
                    active += usize::from(e.state == BindingState::Active);
                    allocated += e.prefixes.as_slice().len();
                }
                let heartbeats = self.lma.config().domain.heartbeat.interval_s > 0;
                let _ = reply.send(StatsView {
                    name: self.lma.config().name.clone(),
                    address: self.lma.address(),
                    revision: self.bindings_hub.revision(),
                    bindings: self.lma.cache().len(),
                    active_bindings: active,
                    allocated_prefixes: allocated,
                    expirations: self.expirations,
                    mags_reachable: if heartbeats {
                        self.lma
                            .mags()
                            .filter(|(a, _)| self.lma.is_mag_reachable(a))
                            .count()
                    } else {
                        0
                    },
                    prefixes_available: self.lma.prefixes_available(),
                    pba_by_status: s
                        .pba_by_status
                        .iter()
                        .enumerate()
                        .filter(|(_, n)| **n > 0)
                        .map(|(st, n)| (Status::from(st as u8), *n))
                        .collect(),
                    pbu_received: s.pbu_received,
                    restart_counter: self.lma.restart_counter(),
                    uptime: self.started.elapsed(),
                    authorized_mags: self.authorized().count(),
                    mags_with_bindings: self.lma.mags().count(),
                    handovers: s.handoffs,
                    revocations: ["acknowledged", "timed-out"]
                        .into_iter()
                        .map(|kind| {
                            // One guard at a time: a family's guard holds its lock, and
                            // creating a second label under it would wait for ever.
                            let kind = KindLabel { kind: kind.into() };
                            self.metrics.revocations.get_or_create(&kind).get()
                        })
                        .sum(),
                    profiles: self.lma.policy().len(),
                    datapath: self.dataplane.backend_name(),
                });
            }
            Command::UpsertProfile { profile, reply } => {
                let _ = reply.send(self.upsert_profile(profile, wall));
            }
            Command::DeleteProfile {
                mn_id,
                revoke,
                reply,
            } => {
                if self.config_profiles.contains(&mn_id) {
                    let _ = reply.send(Err(PolicyRefusal::FromConfig(mn_id)));
                    return;
                }
                if self.lma.remove_profile(now, &mn_id, revoke) {
                    if revoke && self.lma.cache().sessions_of(&mn_id).next().is_some() {
                        self.revoking.insert(mn_id.clone());
                    }
                    self.batch.delete_profile(&mn_id);
                    self.profile_changes.remove(&mn_id);
                    self.profiles_hub
                        .publish(wall, ProfileChange::Deleted(mn_id));
                    self.drain(now, wall);
                    let _ = reply.send(Ok(()));
                } else {
                    let _ = reply.send(Err(PolicyRefusal::NotFound(mn_id)));
                }
            }
            Command::GetProfile { mn_id, reply } => {
                let p = self
                    .lma
                    .policy()
                    .profiles()
                    .find(|p| p.mn_id.as_str() == mn_id)
                    .map(|p| self.profile_view(p));
                let _ = reply.send(p);
            }
            Command::ListProfiles { reply } => {
                let mut v: Vec<ProfileView> = self
                    .lma
                    .policy()
                    .profiles()
                    .map(|p| self.profile_view(p))
                    .collect();
                v.sort_by(|a, b| a.profile.mn_id.cmp(&b.profile.mn_id));
                let _ = reply.send(v);
            }
            Command::WatchProfiles { cursor, reply } => {
                let rx = self.profiles_hub.subscribe();
                let start = match self.profiles_hub.since(cursor) {
                    Ok(events) => WatchStart::Resume {
                        epoch: self.profiles_hub.epoch(),
                        objects: self.lma.policy().len() as u64,
                        events,
                        rx,
                    },
                    Err(reason) => WatchStart::Reset {
                        reason,
                        epoch: self.profiles_hub.epoch(),
                        revision: self.profiles_hub.revision(),
                        snapshot: self
                            .lma
                            .policy()
                            .profiles()
                            .map(|p| self.profile_view(p))
                            .collect(),
                        rx,
                    },
                };
                let _ = reply.send(start);
            }
            Command::AddMag {
                address,
                name,
                reply,
            } => {
                let added = self.api_mags.insert(address, name).is_none();
                self.lma.authorize_mag(address);
                self.batch.set_mags(self.api_mags.clone());
                let _ = reply.send(added);
            }
            Command::RemoveMag { address, reply } => {
                if self.config_mags.contains(&address) {
                    let _ = reply.send(Err(format!(
                        "{address} comes from the configuration file; change it there"
                    )));
                    return;
                }
                let removed = self.api_mags.remove(&address).is_some();
                if removed {
                    self.lma.deauthorize_mag(&address);
                    self.batch.set_mags(self.api_mags.clone());
                }
                let _ = reply.send(Ok(removed));
            }
            Command::SetMags { mags, reply } => {
                let mut changes = MagChanges::default();
                for (a, name) in &mags {
                    match self.api_mags.get(a) {
                        Some(old) if old != name => changes.renamed.push(*a),
                        None if self.config_mags.contains(a) && !name.is_empty() => {
                            changes.renamed.push(*a)
                        }
                        None if !self.config_mags.contains(a) => changes.added.push(*a),
                        _ => {}
                    }
                }
                changes.removed = (self.api_mags.keys())
                    .filter(|a| !mags.contains_key(a) && !self.config_mags.contains(a))
                    .copied()
                    .collect();
                if self.api_mags != mags {
                    self.api_mags = mags;
                    let all: Vec<Ipv6Addr> = self.authorized().collect();
                    self.lma.set_authorized_mags(all);
                    self.batch.set_mags(self.api_mags.clone());
                }
                let _ = reply.send(changes);
            }
            Command::ListMags { reply } => {
                let sessions: HashMap<Ipv6Addr, u32> =
                    self.lma.mags().map(|(a, n)| (*a, *n)).collect();
                let v = self
                    .authorized()
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .map(|a| MagView {
                        address: a,
                        name: self.api_mags.get(&a).cloned().unwrap_or_default(),
                        from_config: self.config_mags.contains(&a),
                        sessions: sessions.get(&a).copied().unwrap_or(0),
                        reachable: sessions.contains_key(&a) && self.lma.is_mag_reachable(&a),
                    })
                    .collect();
                let _ = reply.send(v);
            }
            Command::Receive {
                src,
                dst,
                bytes,
                reply,
            } => {
                self.lma.handle_message(now, wall, src, dst, &bytes);
                self.drain(now, wall);
                let _ = reply.send(());
            }
        }
    }

    fn profile_view(&self, p: &MobileNodeProfile) -> ProfileView {
        let changed = self.profile_changes.get(p.mn_id.as_str());
        ProfileView {
            from_config: self.config_profiles.contains(p.mn_id.as_str()),
            revision: changed.map_or(0, |c| c.0),
            updated_at: changed.map(|c| c.1),
            profile: p.clone(),
        }
    }

    fn upsert_profile(
        &mut self,
        profile: MobileNodeProfile,
        wall: WallClock,
    ) -> Result<Upserted, PolicyRefusal> {
        let id = profile.mn_id.to_string();
        if self.config_profiles.contains(&id) {
            return Err(PolicyRefusal::FromConfig(id));
        }
        for (i, p) in profile.home_network_prefixes.iter().enumerate() {
            let pools = &self.lma.config().prefix_pools;
            if !pools
                .iter()
                .any(|pool| pool.prefix.contains(p) && pool.prefix_length == p.prefix_len())
            {
                let pools_text: BTreeSet<String> = pools
                    .iter()
                    .map(|pool| format!("{} (/{})", pool.prefix, pool.prefix_length))
                    .collect();
                return Err(PolicyRefusal::OutOfRange(format!(
                    "home_network_prefixes[{i}]: {p} is not a prefix the LMA's pools \
                     allocate: {}",
                    pools_text.into_iter().collect::<Vec<_>>().join(", ")
                )));
            }
        }
        let old = self
            .lma
            .policy()
            .profiles()
            .find(|p| p.mn_id.as_str() == id)
            .cloned();
        if old.as_ref() == Some(&profile) {
            return Ok(Upserted {
                view: self.profile_view(&profile),
                created: false,
                changed: false,
            });
        }
        self.lma
            .upsert_profile(profile.clone())
            .map_err(|e| match e {
                PolicyError::Invalid(m) => PolicyRefusal::Invalid(m),
                PolicyError::WildcardWithPinnedValues(_) => PolicyRefusal::Invalid(e.to_string()),
                e => PolicyRefusal::Conflict(e),
            })?;
        self.batch.put_profile(profile.clone());
        let revision = self
            .profiles_hub
            .publish(wall, ProfileChange::Upserted(profile.clone()));
        self.profile_changes.insert(id, (revision, wall));
        Ok(Upserted {
            view: self.profile_view(&profile),
            created: old.is_none(),
            changed: true,
        })
    }
}

/// The termination the LMA needs: tunnels to its address arrive on the transport link.
pub fn termination(dp: &Dataplane, address: Ipv6Addr) -> Termination {
    Termination {
        local: address,
        ifindex: dp.settings().transport_ifindex,
    }
}
