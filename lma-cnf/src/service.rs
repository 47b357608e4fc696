//! The LMA daemon's synchronous service: the state machine [`pmip::lma::Lma`] and what only the
//! daemon knows around it (binding and profile revisions, the Watch streams' history, refused
//! registrations, pending revocations, which writes the store owes). It answers the API's
//! [`Command`]s and turns the state machine's outputs into this turn's datapath changes, store
//! batch and messages. No IO and no clock: time comes in as arguments, so it is tested without
//! a runtime; [`crate::core`] drives it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use ::datapath::{Change, DesiredState, PrefixRoute};
use cnf::datapath;
use ipnet::Ipv6Net;
use pmip::Instant;
use pmip::cache::{BindingState, SessionId};
use pmip::config::{LmaConfig, MobileNodeProfile};
use pmip::heartbeat::PeerEvent;
use pmip::lma::{BindingRecord, Lma, LmaEvent, LmaOutput, LmaSnapshot, RemovalReason, Restoring};
use pmip::output::Transmit;
use pmip::policy::{MagChanges, Origin, PolicyError};
use pmip::wire::{BraStatus, RevocationTrigger, Status, WallClock};
use tokio::sync::oneshot;
use tracing::{debug, info, warn};

use crate::hub::{
    BindingChange, BindingView, DeleteReason, Hub, ProfileChange, Rejection, UpdateReason,
    ViewState, WatchStart,
};
use crate::store::{Batch, Store, StoreError};

/// How long a binding restored from the store lives at least, so its MAG can re-register it
/// after hearing of the restart.
pub const RESTORE_GRACE: Duration = Duration::from_secs(120);
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
    /// The node registered again while its revocation was in progress: it keeps its
    /// binding (RFC 5846 §8.1).
    Cancelled,
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
    /// This run (the Watch epoch).
    pub epoch: u64,
    pub uptime: Duration,
    pub authorized_mags: usize,
    pub mags_with_bindings: usize,
    pub handovers: u64,
    pub revocations: u64,
    pub profiles: usize,
    pub datapath: &'static str,
    /// Since the start until the kernel's datapath was reconciled with the binding cache;
    /// `None` while that runs (after a restart, in the background while the LMA serves).
    pub datapath_reconciled_after: Option<Duration>,
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

/// A MAG's heartbeat state as the LMA sees it (RFC 5847 §3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerState {
    /// Bindings at the MAG, and it answers heartbeats.
    Up,
    /// MISSING_HEARTBEATS_ALLOWED requests in a row went unanswered.
    Down,
    /// No bindings at the MAG: heartbeats go only to peers with sessions.
    Idle,
    /// Bindings at the MAG, but heartbeats are off (`domain.heartbeat.interval_s` 0).
    Unmonitored,
}

/// One MAG as `pmipctl mags` shows it: authorized, or with bindings, or both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MagPeerView {
    pub address: Ipv6Addr,
    /// Its name in the policy; empty when it has none.
    pub name: String,
    /// `None`: not authorized (any more); `Some(true)`: by the configuration file.
    pub authorized: Option<bool>,
    pub state: PeerState,
    /// When `state` began; the LMA's start for a state the MAG had then.
    pub since: WallClock,
    pub sessions: u32,
    /// The Restart Counter of its last heartbeat response.
    pub restart_counter: Option<u32>,
    /// Restarts the heartbeats revealed since the LMA started, and the last one's time.
    pub restarts: u64,
    pub last_restart: Option<WallClock>,
}

/// What the service remembers of a MAG's state changes (only for MAGs that had sessions).
#[derive(Debug, Clone)]
struct PeerTrack {
    state: PeerState,
    since: WallClock,
    restarts: u64,
    last_restart: Option<WallClock>,
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

impl From<PolicyError> for PolicyRefusal {
    fn from(e: PolicyError) -> Self {
        match e {
            PolicyError::FromConfiguration(id) => PolicyRefusal::FromConfig(id),
            PolicyError::NotFound(id) => PolicyRefusal::NotFound(id),
            PolicyError::Invalid(m) => PolicyRefusal::Invalid(m),
            PolicyError::WildcardWithPinnedValues(_) => PolicyRefusal::Invalid(e.to_string()),
            e => PolicyRefusal::Conflict(e),
        }
    }
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
    /// The binding holding an IPv4 home address (RFC 5844).
    BindingByIpv4 {
        address: Ipv4Addr,
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
    /// Every binding of one MAG (RFC 5846 §8.1, Per-Peer Policy).
    RevokeMag {
        mag: Ipv6Addr,
        reply: oneshot::Sender<(RevokeOutcome, usize)>,
    },
    Stats {
        reply: oneshot::Sender<StatsView>,
    },
    UpsertProfile {
        profile: MobileNodeProfile,
        reply: oneshot::Sender<Result<Upserted, PolicyRefusal>>,
    },
    /// Creates or replaces every profile, or none: the first refusal (with the index of the
    /// profile refused) leaves the policy as it was.
    UpsertProfiles {
        profiles: Vec<MobileNodeProfile>,
        reply: oneshot::Sender<Result<Vec<Upserted>, (usize, PolicyRefusal)>>,
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
    /// Every authorized MAG and every MAG with bindings, by proxy-CoA.
    ListMagPeers {
        reply: oneshot::Sender<Vec<MagPeerView>>,
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

/// The counters of the service, for [`crate::metrics::Metrics::observe`]: every value is the
/// total since the start (gauges: the value now).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub pbu_received: u64,
    /// PBAs sent, by status value (only those sent at least once).
    pub pba_by_status: Vec<(Status, u64)>,
    pub bindings: usize,
    pub mags_with_bindings: usize,
    pub handovers: u64,
    pub bri_sent: u64,
    pub revocations_acknowledged: u64,
    pub revocations_timed_out: u64,
    pub dropped: u64,
    /// Heartbeat events by kind: unreachable, reachable, restarted.
    pub peer_events: [u64; 4],
    pub expirations: u64,
    /// Every authorized MAG, and every MAG with bindings.
    pub mags: Vec<MagStat>,
    /// Each prefix pool and the prefixes it can still hand out.
    pub free_prefixes: Vec<(Ipv6Net, u64)>,
}

/// A MAG as the metrics show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MagStat {
    pub address: Ipv6Addr,
    /// Its name in the policy; empty when it has none.
    pub name: String,
    pub bindings: u32,
    /// Whether it answers heartbeats; `None` with heartbeats off.
    pub up: Option<bool>,
}

/// The kinds of [`Stats::peer_events`], in order.
pub const PEER_EVENT_KINDS: [&str; 4] = ["unreachable", "reachable", "restarted", "unsupported"];

/// A store commit the service owes.
#[derive(Debug)]
pub struct Commit {
    pub batch: Batch,
    /// The replies of this turn wait for it (it holds more than deferred refreshes).
    pub wait: bool,
}

/// What the service needs to start, besides the stored state.
#[derive(Debug)]
pub struct Start {
    pub config: LmaConfig,
    pub restart_counter: u32,
    /// This run of the daemon (watch cursors and page tokens of another run are refused).
    pub epoch: u64,
    pub seed: u64,
}

/// Why the service could not be restored from the store.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Policy(#[from] PolicyError),
}

/// What [`Service::load`] read and restored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loading {
    /// Binding records in the store.
    pub records: usize,
    /// Bindings restored from them (the others expired while the LMA was down).
    pub restored: usize,
    /// Profiles made over the API.
    pub profiles: usize,
    /// How long the restore waited for the store's reading thread.
    pub store_wait: Duration,
}

/// The state machine being restored from `snapshot`'s policy.
fn restoring(
    s: &Start,
    snapshot: &LmaSnapshot,
    now: Instant,
    wall: WallClock,
) -> Result<Restoring, PolicyError> {
    Restoring::new(
        s.config.clone(),
        snapshot,
        s.restart_counter,
        s.seed,
        now,
        wall,
        RESTORE_GRACE,
    )
}

/// The LMA daemon's state and its API's answers.
#[derive(Debug)]
pub struct Service {
    lma: Lma,
    started: Instant,
    started_wall: WallClock,
    /// State changes of the MAGs that had sessions in this run.
    peers: BTreeMap<Ipv6Addr, PeerTrack>,
    datapath: &'static str,
    /// See [`StatsView::datapath_reconciled_after`].
    datapath_reconciled_after: Option<Duration>,
    bindings_hub: Hub<BindingChange>,
    profiles_hub: Hub<ProfileChange>,
    /// Per session, by its slot in the binding cache: the revision of its last change (a
    /// session's first change, its creation, sets it; restored ones are at 0). A map by
    /// binding key cost about 100 B per binding at a million.
    revisions: Vec<u64>,
    /// Per binding key: the MAG before the last handoff.
    previous_coa: HashMap<String, Ipv6Addr>,
    /// Refused nodes for the Watch snapshot, at most `refused_nodes_kept` of them, and the
    /// order they were first refused in (names of nodes forgotten since may linger in it).
    rejections: BTreeMap<String, Rejection>,
    rejection_order: std::collections::VecDeque<String>,
    revokes: HashMap<String, Vec<oneshot::Sender<RevokeOutcome>>>,
    /// Callers waiting for a per-peer revocation, by MAG.
    mag_revokes: HashMap<Ipv6Addr, Vec<oneshot::Sender<(RevokeOutcome, usize)>>>,
    revoking: BTreeSet<String>,
    /// Per profile changed in this epoch: its revision and when.
    profile_changes: HashMap<String, (u64, WallClock)>,
    expirations: u64,
    revocations: [u64; 2],
    dropped: u64,
    peer_events: [u64; 4],
    // This turn's outputs.
    tx: Vec<Transmit>,
    changes: Vec<Change>,
    batch: Batch,
    /// Refreshed bindings not yet written, and since when the oldest waits.
    deferred: Batch,
    deferred_since: Option<Instant>,
    /// Arrival of every PBU this turn answered.
    answered: Vec<Instant>,
    /// Keeps the binding times the API shows the same from one call to the next.
    shown: cnf::ShownTime,
}

impl Service {
    /// Restores the state machine from `snapshot`. The restored routes are
    /// [`Service::desired`]; the heartbeat announcements of the restart are this turn's
    /// messages.
    pub fn new(
        s: Start,
        snapshot: &LmaSnapshot,
        now: Instant,
        wall: WallClock,
    ) -> Result<Service, PolicyError> {
        let mut r = restoring(&s, snapshot, now, wall)?;
        r.reserve(snapshot.bindings.len());
        let refused: Vec<BindingRecord> = (snapshot.bindings.iter())
            .filter_map(|b| r.binding(b.clone()).err().map(|b| *b))
            .collect();
        Ok(Service::restored(s, r, refused, now, wall))
    }

    /// [`Service::new`] from the store: the bindings go into the binding cache as the store
    /// reads them (see [`Store::for_each_binding`]), never all held as records at once.
    pub fn load(
        s: Start,
        store: &Store,
        now: Instant,
        wall: WallClock,
    ) -> Result<(Service, Loading), LoadError> {
        let policy = store.load_policy()?;
        let mut r = restoring(&s, &policy, now, wall)?;
        r.reserve(store.binding_count()?);
        let mut refused = Vec::new();
        let read = store.for_each_binding(|b| {
            if let Err(b) = r.binding(b) {
                refused.push(*b);
            }
        })?;
        let loading = Loading {
            records: read.records,
            restored: r.len(),
            profiles: policy.profiles.len(),
            store_wait: read.waited,
        };
        Ok((Service::restored(s, r, refused, now, wall), loading))
    }

    /// The service around a restored LMA; `refused` are the stored records it did not take.
    fn restored(
        s: Start,
        r: Restoring,
        refused: Vec<BindingRecord>,
        now: Instant,
        wall: WallClock,
    ) -> Service {
        // Stored bindings that did not survive (expired while the LMA was down) go, unless
        // one restored is stored under the same key (`BindingRecord::key`).
        let mut batch = Batch::default();
        for b in &refused {
            if !r.holds_key_of(b) {
                batch.delete_binding(b.key());
            }
        }
        let mut lma = r.finish();
        let mut tx = Vec::new();
        // The routes are `desired`; what is queued is the announcements of a lost state.
        while let Some(o) = lma.poll_output() {
            if let LmaOutput::Transmit(t) = o {
                tx.push(t);
            }
        }
        Service {
            lma,
            started: now,
            started_wall: wall,
            peers: BTreeMap::new(),
            // Named by the driver once its datapath is open (`set_datapath_backend`).
            datapath: "none",
            datapath_reconciled_after: None,
            bindings_hub: Hub::new(s.epoch, WATCH_HISTORY),
            profiles_hub: Hub::new(s.epoch, WATCH_HISTORY),
            revisions: Vec::new(),
            previous_coa: HashMap::new(),
            rejections: BTreeMap::new(),
            rejection_order: std::collections::VecDeque::new(),
            revokes: HashMap::new(),
            mag_revokes: HashMap::new(),
            revoking: BTreeSet::new(),
            profile_changes: HashMap::new(),
            expirations: 0,
            revocations: [0; 2],
            dropped: 0,
            peer_events: [0; 4],
            tx,
            changes: Vec::new(),
            batch,
            deferred: Batch::default(),
            deferred_since: None,
            answered: Vec::new(),
            shown: cnf::ShownTime::new(),
        }
    }

    /// The datapath backend's name, for the Stats RPC.
    pub fn set_datapath_backend(&mut self, name: &'static str) {
        self.datapath = name;
    }

    pub fn lma(&self) -> &Lma {
        &self.lma
    }

    /// The datapath now holds what the binding cache needs (the driver reconciled it).
    pub fn datapath_reconciled(&mut self, now: Instant) {
        self.datapath_reconciled_after
            .get_or_insert(now.saturating_duration_since(self.started));
    }

    /// The datapath the restored bindings need: the termination on `transport_ifindex` and a
    /// tunnel route per prefix and per IPv4 home address (RFC 5844 §3.1.2.2) of every active
    /// binding.
    pub fn desired(&self, transport_ifindex: u32) -> DesiredState {
        let mut desired = DesiredState::new();
        desired
            .terminations
            .insert(self.lma.address(), transport_ifindex);
        let active = || {
            (self.lma.cache().iter())
                .map(|(_, e)| e)
                .filter(|e| e.state() == BindingState::Active)
        };
        // Collected rather than inserted one by one: the map is then built sorted, in bulk
        // (a third of the time at a million bindings).
        desired.routes = active()
            .flat_map(|e| {
                let route = PrefixRoute::Tunnel { peer: e.proxy_coa };
                e.prefixes
                    .as_slice()
                    .iter()
                    .map(move |p| (p.trunc(), route))
            })
            .collect();
        desired.routes4 = active()
            .filter_map(|e| Some((e.ipv4?.host(), PrefixRoute::Tunnel { peer: e.proxy_coa })))
            .collect();
        desired
    }

    // ------------------------------------------------------------------------ inputs

    /// A message from the signalling transport (its checksum verified by the kernel).
    pub fn handle_message(
        &mut self,
        now: Instant,
        wall: WallClock,
        src: Ipv6Addr,
        dst: Ipv6Addr,
        bytes: &[u8],
    ) {
        let _pbu = pbu_span(src, bytes).map(tracing::Span::entered);
        self.lma.handle_message_trusted(now, wall, src, dst, bytes);
        self.arrived();
        self.drain(now, wall);
    }

    /// The registration latency is of the PBUs the state machine's last `handle_*` call
    /// answered, one per PBA: not of heartbeats or other messages; a PBU held for the
    /// previous MAG's de-registration (RFC 5213 §5.4.1) counts when answered, from its
    /// arrival.
    fn arrived(&mut self) {
        self.answered.extend_from_slice(self.lma.answered());
    }

    /// The state machine's timers, and the deferred refreshes' deadline.
    pub fn handle_timeout(&mut self, now: Instant, wall: WallClock) {
        if self.lma.poll_timeout().is_some_and(|t| t <= now) {
            self.lma.handle_timeout(now, wall);
            self.arrived();
            self.drain(now, wall);
        }
    }

    /// When [`Service::handle_timeout`] must next run.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        let deferred = self.deferred_since.map(|t| t + DEFERRED_INTERVAL);
        [self.lma.poll_timeout(), deferred]
            .into_iter()
            .flatten()
            .min()
    }

    // ------------------------------------------------------------------------ outputs

    /// Whether datapath changes wait to be taken.
    pub fn has_changes(&self) -> bool {
        !self.changes.is_empty()
    }

    /// This turn's datapath changes, in order.
    pub fn take_changes(&mut self) -> Vec<Change> {
        std::mem::take(&mut self.changes)
    }

    /// The store commit due now, if any: this turn's writes (the replies wait for them), or
    /// the deferred refreshes once they waited [`DEFERRED_INTERVAL`] or are [`DEFERRED_MAX`].
    /// The deferred refreshes go first in the batch, so that anything this turn changed wins.
    pub fn poll_commit(&mut self, now: Instant) -> Option<Commit> {
        if self.deferred.is_empty() {
            self.deferred_since = None;
        }
        let deferred_due = self
            .deferred_since
            .is_some_and(|t| now >= t + DEFERRED_INTERVAL)
            || self.deferred.len() >= DEFERRED_MAX;
        let eager = !self.batch.is_empty();
        if !(eager || deferred_due) {
            return None;
        }
        let mut batch = std::mem::take(&mut self.deferred);
        batch.absorb(std::mem::take(&mut self.batch));
        self.deferred_since = None;
        Some(Commit { batch, wait: eager })
    }

    /// Whether writes that replies wait for are not yet in a commit.
    pub fn owes_commit(&self) -> bool {
        !self.batch.is_empty()
    }

    /// Everything the store is owed, deferred refreshes included: the last commit before the
    /// daemon stops.
    pub fn final_commit(&mut self) -> Commit {
        let mut batch = std::mem::take(&mut self.deferred);
        batch.absorb(std::mem::take(&mut self.batch));
        self.deferred_since = None;
        Commit { batch, wait: true }
    }

    /// This turn's messages.
    pub fn take_transmits(&mut self) -> Vec<Transmit> {
        std::mem::take(&mut self.tx)
    }

    /// When each PBU answered this turn arrived (for the registration latency).
    pub fn take_answered(&mut self) -> Vec<Instant> {
        std::mem::take(&mut self.answered)
    }

    /// The counters for metrics.
    pub fn stats(&self) -> Stats {
        let s = self.lma.stats();
        Stats {
            pbu_received: s.pbu_received,
            pba_by_status: pba_by_status(&s.pba_by_status),
            bindings: self.lma.cache().len(),
            mags_with_bindings: self.lma.mags().count(),
            handovers: s.handoffs,
            bri_sent: s.bri_sent,
            revocations_acknowledged: self.revocations[0],
            revocations_timed_out: self.revocations[1],
            dropped: self.dropped,
            peer_events: self.peer_events,
            expirations: self.expirations,
            mags: self.mag_stats(),
            free_prefixes: self.lma.prefixes_available_by_pool().collect(),
        }
    }

    fn mag_stats(&self) -> Vec<MagStat> {
        let heartbeats = self.lma.config().domain.heartbeat.interval_s > 0;
        let mut mags: BTreeMap<Ipv6Addr, MagStat> = (self.lma.policy().mags().iter())
            .map(|(a, m)| {
                let stat = MagStat {
                    address: *a,
                    name: m.name.clone(),
                    bindings: 0,
                    up: None,
                };
                (*a, stat)
            })
            .collect();
        for (a, n) in self.lma.mags() {
            (mags.entry(*a).or_insert_with(|| MagStat {
                address: *a,
                name: String::new(),
                bindings: 0,
                up: None,
            }))
            .bindings = *n;
        }
        // The LMA watches the MAGs it has bindings at (RFC 5847 §3.1).
        for m in mags.values_mut() {
            m.up = (heartbeats && m.bindings > 0).then(|| self.lma.is_mag_reachable(&m.address));
        }
        mags.into_values().collect()
    }

    // ------------------------------------------------------------------------ the state machine's outputs

    /// Moves the state machine's outputs into this turn's datapath, store and send queues.
    fn drain(&mut self, now: Instant, wall: WallClock) {
        while let Some(o) = self.lma.poll_output() {
            match o {
                LmaOutput::Transmit(t) => self.tx.push(t),
                LmaOutput::Datapath(c) => self.changes.extend(datapath::change(&c)),
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
        let (shown_now, shown_wall) = self.shown.at(now, wall);
        let record = self.lma.record(session, shown_now, shown_wall)?;
        let key = record.key();
        let view = BindingView {
            state: if self.revoking.contains(&*e.mn_id) {
                ViewState::Revoking
            } else if e.state() == BindingState::Deregistering {
                ViewState::Deregistering
            } else {
                ViewState::Active
            },
            revision: self.revisions.get(session.0 as usize).copied().unwrap_or(0),
            previous_proxy_coa: self.previous_coa.get(&key).copied(),
            mag_name: self.mag_name(&e.proxy_coa),
            remaining_s: match e.state() {
                BindingState::Active => (e.expires_at - now).as_secs() as u32,
                BindingState::Deregistering => 0,
            },
            record,
        };
        Some((key, view))
    }

    fn mag_name(&self, a: &Ipv6Addr) -> Option<String> {
        self.lma.policy().mags().name(a).map(str::to_owned)
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
            self.deferred_since.get_or_insert(now);
        } else {
            self.deferred.forget_binding(&key);
            self.batch.put_keyed(key.clone(), v.record.clone());
        }
        v.revision = self.bindings_hub.revision() + 1;
        let slot = session.0 as usize;
        if self.revisions.len() <= slot {
            self.revisions.resize(slot + 1, 0);
        }
        self.revisions[slot] = v.revision;
        self.rejections.remove(&v.record.mn_id);
        self.bindings_hub.publish(wall, make(v));
    }

    fn event(&mut self, e: LmaEvent, now: Instant, wall: WallClock) {
        match e {
            LmaEvent::BindingCreated { session } => {
                if let Some(e) = self.lma.cache().get(session) {
                    info!(
                        mn_id = %e.mn_id,
                        mag = %e.proxy_coa,
                        prefixes = %prefix_list(e.prefixes.as_slice()),
                        lifetime_s = e.lifetime_s,
                        "binding created"
                    );
                }
                if let Some(mag) = self.lma.cache().get(session).map(|e| e.proxy_coa) {
                    self.track_peer(mag, wall);
                }
                self.publish_binding(session, now, wall, false, BindingChange::Added);
            }
            LmaEvent::BindingRefreshed { session } => {
                self.publish_binding(session, now, wall, true, |v| {
                    BindingChange::Updated(v, UpdateReason::Refresh)
                });
            }
            LmaEvent::BindingHandedOff { session, from } => {
                if let Some(e) = self.lma.cache().get(session) {
                    info!(
                        mn_id = %e.mn_id,
                        from = %from,
                        mag = %e.proxy_coa,
                        prefixes = %prefix_list(e.prefixes.as_slice()),
                        "binding handed off"
                    );
                }
                if let Some(key) = self.lma.record(session, now, wall).map(|r| r.key()) {
                    self.previous_coa.insert(key, from);
                }
                if let Some(mag) = self.lma.cache().get(session).map(|e| e.proxy_coa) {
                    self.track_peer(mag, wall);
                }
                self.track_peer(from, wall);
                self.publish_binding(session, now, wall, false, |v| {
                    BindingChange::Updated(v, UpdateReason::Handoff)
                });
            }
            LmaEvent::BindingDeregistered { session } => {
                if let Some(e) = self.lma.cache().get(session) {
                    info!(
                        mn_id = %e.mn_id,
                        mag = %e.proxy_coa,
                        prefixes = %prefix_list(e.prefixes.as_slice()),
                        "binding de-registered"
                    );
                }
                self.publish_binding(session, now, wall, false, |v| {
                    BindingChange::Updated(v, UpdateReason::Deregistered)
                });
            }
            LmaEvent::BindingRemoved { record, reason } => {
                info!(
                    mn_id = %record.mn_id,
                    mag = %record.proxy_coa,
                    prefixes = %prefix_list(&record.home_network_prefixes),
                    reason = match reason {
                        RemovalReason::Expired => "expired",
                        RemovalReason::Deregistered => "de-registered",
                        RemovalReason::Revoked => "revoked",
                    },
                    "binding removed"
                );
                self.track_peer(record.proxy_coa, wall);
                let key = record.key();
                self.batch.delete_binding(key.clone());
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
                self.remember_rejection(r.clone());
                self.bindings_hub.publish(wall, BindingChange::Rejected(r));
            }
            LmaEvent::Peer(p) => {
                let (kind, peer) = match p {
                    PeerEvent::Unreachable { peer } => (0, peer),
                    PeerEvent::Reachable { peer } => (1, peer),
                    PeerEvent::Restarted { peer, .. } => (2, peer),
                    PeerEvent::Unsupported { peer } => (3, peer),
                };
                warn!(%peer, kind = PEER_EVENT_KINDS[kind], "MAG heartbeat");
                self.peer_events[kind] += 1;
                self.track_peer(peer, wall);
                if let (PeerEvent::Restarted { .. }, Some(t)) = (p, self.peers.get_mut(&peer)) {
                    t.restarts += 1;
                    t.last_restart = Some(wall);
                }
            }
            LmaEvent::RevocationAcknowledged { mn_id, status } => {
                info!(%mn_id, %status, "revocation acknowledged by the MAG");
                self.revoked(&mn_id, RevokeOutcome::Acknowledged(status));
            }
            LmaEvent::RevocationTimedOut { mn_id } => {
                warn!(%mn_id, "no revocation acknowledgement: the binding was removed anyway");
                self.revoked(&mn_id, RevokeOutcome::TimedOut);
            }
            LmaEvent::PeerRevocationEnded {
                mag,
                status,
                bindings,
            } => {
                info!(%mag, ?status, bindings, "per-peer revocation ended: the MAG's bindings were removed");
                let outcome = status.map_or(RevokeOutcome::TimedOut, RevokeOutcome::Acknowledged);
                self.revocations[usize::from(outcome == RevokeOutcome::TimedOut)] += 1;
                for r in self.mag_revokes.remove(&mag).unwrap_or_default() {
                    let _ = r.send((outcome.clone(), bindings));
                }
            }
            LmaEvent::RevocationCancelled { mn_id } => {
                info!(%mn_id, "revocation cancelled: the node registered again");
                self.revoked(&mn_id, RevokeOutcome::Cancelled);
            }
            LmaEvent::Dropped { from, reason } => {
                debug!(%from, %reason, "message dropped");
                self.dropped += 1;
            }
        }
    }

    /// Keeps a refusal for the Watch snapshot; past `refused_nodes_kept` nodes the one
    /// refused first is forgotten, so a flood of refusals costs a bounded amount of memory.
    fn remember_rejection(&mut self, r: Rejection) {
        let cap = self.lma.config().refused_nodes_kept as usize;
        if cap == 0 {
            return;
        }
        if !self.rejections.contains_key(&r.mn_id) {
            self.rejection_order.push_back(r.mn_id.clone());
        }
        self.rejections.insert(r.mn_id.clone(), r);
        while self.rejections.len() > cap {
            match self.rejection_order.pop_front() {
                Some(k) => {
                    self.rejections.remove(&k);
                }
                None => break,
            }
        }
        // Nodes that registered since left their names behind: drop them now and then.
        if self.rejection_order.len() > 2 * cap {
            let kept = &self.rejections;
            self.rejection_order.retain(|k| kept.contains_key(k));
        }
    }

    fn revoked(&mut self, mn_id: &str, outcome: RevokeOutcome) {
        self.revoking.remove(mn_id);
        self.revocations[usize::from(outcome == RevokeOutcome::TimedOut)] += 1;
        for r in self.revokes.remove(mn_id).unwrap_or_default() {
            let _ = r.send(outcome.clone());
        }
    }

    // ------------------------------------------------------------------------ the API

    /// Answers one API command (a revocation answers when the MAG does).
    pub fn command(&mut self, now: Instant, wall: WallClock, cmd: Command) {
        match cmd {
            Command::ListBindings {
                after,
                limit,
                proxy_coa,
                reply,
            } => {
                let _ = reply.send(self.list_bindings(now, wall, after, limit, proxy_coa));
            }
            Command::BindingsOf { mn_id, reply } => {
                let _ = reply.send(self.bindings_of(now, wall, &mn_id));
            }
            Command::BindingByPrefix { prefix, reply } => {
                let _ = reply.send(self.binding_by_prefix(now, wall, prefix));
            }
            Command::BindingByIpv4 { address, reply } => {
                let _ = reply.send(
                    self.lma
                        .cache()
                        .by_ipv4(&address)
                        .and_then(|s| self.view(s, now, wall)),
                );
            }
            Command::WatchBindings { cursor, reply } => {
                let _ = reply.send(self.watch_bindings(now, wall, cursor));
            }
            Command::Revoke {
                mn_id,
                trigger,
                reply,
            } => self.revoke(now, wall, mn_id, trigger, reply),
            Command::RevokeMag { mag, reply } => match self.lma.revoke_peer(now, mag) {
                Ok(_) => {
                    self.mag_revokes.entry(mag).or_default().push(reply);
                    self.drain(now, wall);
                }
                Err(_) => {
                    let _ = reply.send((RevokeOutcome::NoBinding, 0));
                }
            },
            Command::Stats { reply } => {
                let _ = reply.send(self.stats_view(now));
            }
            Command::UpsertProfile { profile, reply } => {
                let _ = reply.send(self.upsert_profile(profile, now, wall));
            }
            Command::UpsertProfiles { profiles, reply } => {
                let _ = reply.send(self.upsert_profiles(profiles, now, wall));
            }
            Command::DeleteProfile {
                mn_id,
                revoke,
                reply,
            } => {
                let _ = reply.send(self.delete_profile(now, wall, mn_id, revoke));
            }
            Command::GetProfile { mn_id, reply } => {
                let p = (self.lma.policy().get(&mn_id)).map(|(p, _)| self.profile_view(p));
                let _ = reply.send(p);
            }
            Command::ListProfiles { reply } => {
                let _ = reply.send(self.list_profiles());
            }
            Command::WatchProfiles { cursor, reply } => {
                let _ = reply.send(self.watch_profiles(cursor));
            }
            Command::AddMag {
                address,
                name,
                reply,
            } => {
                let added = self.lma.authorized_mags_mut().add(address, name);
                self.batch.set_mags(self.lma.policy().mags().api());
                let _ = reply.send(added);
            }
            Command::RemoveMag { address, reply } => {
                let r = self.lma.authorized_mags_mut().remove(&address);
                if r == Ok(true) {
                    self.batch.set_mags(self.lma.policy().mags().api());
                }
                let _ = reply.send(r.map_err(|e| e.to_string()));
            }
            Command::SetMags { mags, reply } => {
                let before = self.lma.policy().mags().api();
                let changes = self.lma.authorized_mags_mut().set(mags);
                let after = self.lma.policy().mags().api();
                if after != before {
                    self.batch.set_mags(after);
                }
                let _ = reply.send(changes);
            }
            Command::ListMags { reply } => {
                let _ = reply.send(self.list_mags());
            }
            Command::ListMagPeers { reply } => {
                let _ = reply.send(self.mag_peers());
            }
            Command::Receive {
                src,
                dst,
                bytes,
                reply,
            } => {
                let _pbu = pbu_span(src, &bytes).map(tracing::Span::entered);
                self.lma.handle_message(now, wall, src, dst, &bytes);
                self.arrived();
                self.drain(now, wall);
                let _ = reply.send(());
            }
        }
    }

    pub fn list_bindings(
        &self,
        now: Instant,
        wall: WallClock,
        after: Option<u32>,
        limit: usize,
        proxy_coa: Option<Ipv6Addr>,
    ) -> BindingPage {
        // A token naming the last slot there can be starts past every entry (a token is a
        // client's text: no arithmetic on it may overflow).
        let start = after.map_or(0, |a| u64::from(a) + 1);
        let mut out = Vec::with_capacity(limit.min(1024));
        let mut next = None;
        for (s, e) in self.lma.cache().iter() {
            if u64::from(s.0) < start || proxy_coa.is_some_and(|c| c != e.proxy_coa) {
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
        BindingPage {
            bindings: out.into_iter().map(|(_, v)| v).collect(),
            next,
            total,
            revision: self.bindings_hub.revision(),
        }
    }

    pub fn bindings_of(&self, now: Instant, wall: WallClock, mn_id: &str) -> Vec<BindingView> {
        (self.lma.cache().sessions_of(mn_id))
            .filter_map(|s| self.view(s, now, wall))
            .collect()
    }

    pub fn binding_by_prefix(
        &self,
        now: Instant,
        wall: WallClock,
        prefix: Ipv6Net,
    ) -> Option<BindingView> {
        let c = self.lma.cache();
        let s = c.by_prefix(&prefix.trunc()).or_else(|| {
            // An address: the longest home network prefix covering it, of whatever length
            // (a pool's, or a profile's pinned prefix).
            (0..=128u8)
                .rev()
                .find_map(|len| c.by_address(&prefix.addr(), len))
        });
        s.and_then(|s| self.view(s, now, wall))
    }

    pub fn watch_bindings(
        &self,
        now: Instant,
        wall: WallClock,
        cursor: Option<(u64, u64)>,
    ) -> WatchStart<BindingChange, BindingChange> {
        let rx = self.bindings_hub.subscribe();
        match self.bindings_hub.since(cursor) {
            Ok(events) => WatchStart::Resume {
                epoch: self.bindings_hub.epoch(),
                objects: self.lma.cache().len() as u64,
                events,
                rx,
            },
            Err(reason) => {
                let mut snapshot: Vec<BindingChange> = (self.lma.cache().iter())
                    .filter_map(|(s, _)| self.view(s, now, wall))
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
        }
    }

    /// Starts revoking every binding of `mn_id` (RFC 5846); `reply` gets the outcome.
    pub fn revoke(
        &mut self,
        now: Instant,
        wall: WallClock,
        mn_id: String,
        trigger: RevocationTrigger,
        reply: oneshot::Sender<RevokeOutcome>,
    ) {
        match self.lma.revoke(now, &mn_id, trigger) {
            Ok(_) => {
                self.revoking.insert(mn_id.clone());
                self.revokes.entry(mn_id).or_default().push(reply);
                self.drain(now, wall);
            }
            Err(_) => {
                let _ = reply.send(RevokeOutcome::NoBinding);
            }
        }
    }

    pub fn stats_view(&self, now: Instant) -> StatsView {
        let s = self.lma.stats();
        // Counted by the cache as it changes: polled often at ten million bindings, a walk
        // of the cache held the LMA's core for tens of milliseconds each time.
        let (active, allocated) = (self.lma.cache().active(), self.lma.cache().prefix_count());
        let heartbeats = self.lma.config().domain.heartbeat.interval_s > 0;
        StatsView {
            name: self.lma.config().name.clone(),
            address: self.lma.address(),
            revision: self.bindings_hub.revision(),
            bindings: self.lma.cache().len(),
            active_bindings: active,
            allocated_prefixes: allocated,
            expirations: self.expirations,
            mags_reachable: if heartbeats {
                (self.lma.mags())
                    .filter(|(a, _)| self.lma.is_mag_reachable(a))
                    .count()
            } else {
                0
            },
            prefixes_available: self.lma.prefixes_available(),
            pba_by_status: pba_by_status(&s.pba_by_status),
            pbu_received: s.pbu_received,
            restart_counter: self.lma.restart_counter(),
            epoch: self.bindings_hub.epoch(),
            uptime: now - self.started,
            authorized_mags: self.lma.policy().mags().len(),
            mags_with_bindings: self.lma.mags().count(),
            handovers: s.handoffs,
            revocations: self.revocations.iter().sum(),
            profiles: self.lma.policy().len(),
            datapath: self.datapath,
            datapath_reconciled_after: self.datapath_reconciled_after,
        }
    }

    fn profile_view(&self, p: &MobileNodeProfile) -> ProfileView {
        let changed = self.profile_changes.get(p.mn_id.as_str());
        ProfileView {
            from_config: self.lma.policy().origin(p.mn_id.as_str()) == Some(Origin::Configuration),
            revision: changed.map_or(0, |c| c.0),
            updated_at: changed.map(|c| c.1),
            profile: p.clone(),
        }
    }

    /// Every profile, by MN-ID.
    pub fn list_profiles(&self) -> Vec<ProfileView> {
        let mut v: Vec<ProfileView> = (self.lma.policy().profiles())
            .map(|p| self.profile_view(p))
            .collect();
        v.sort_by(|a, b| a.profile.mn_id.cmp(&b.profile.mn_id));
        v
    }

    pub fn watch_profiles(
        &self,
        cursor: Option<(u64, u64)>,
    ) -> WatchStart<ProfileChange, ProfileView> {
        let rx = self.profiles_hub.subscribe();
        match self.profiles_hub.since(cursor) {
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
                snapshot: (self.lma.policy().profiles())
                    .map(|p| self.profile_view(p))
                    .collect(),
                rx,
            },
        }
    }

    /// One profile: the batch of one.
    pub fn upsert_profile(
        &mut self,
        profile: MobileNodeProfile,
        now: Instant,
        wall: WallClock,
    ) -> Result<Upserted, PolicyRefusal> {
        let mut done = self
            .upsert_profiles(vec![profile], now, wall)
            .map_err(|(_, e)| e)?;
        done.pop()
            .ok_or_else(|| PolicyRefusal::Invalid("nothing was applied".into()))
    }

    /// Refusals that need no change to find: a configuration-file profile, a pinned prefix
    /// that does not fit the pools.
    fn check_profile(&self, profile: &MobileNodeProfile) -> Result<(), PolicyRefusal> {
        self.lma.policy().check_api_change(profile.mn_id.as_str())?;
        for (i, p) in profile.home_network_prefixes.iter().enumerate() {
            pmip::config::check_pinned_prefix(&self.lma.config().prefix_pools, p).map_err(
                |reason| PolicyRefusal::OutOfRange(format!("home_network_prefixes[{i}]: {reason}")),
            )?;
        }
        Ok(())
    }

    /// Applies `profiles` in order, all or nothing: on the first refusal the profiles
    /// already applied are put back as they were, and nothing is stored or published.
    pub fn upsert_profiles(
        &mut self,
        profiles: Vec<MobileNodeProfile>,
        now: Instant,
        wall: WallClock,
    ) -> Result<Vec<Upserted>, (usize, PolicyRefusal)> {
        for (i, p) in profiles.iter().enumerate() {
            if profiles[..i].iter().any(|q| q.mn_id == p.mn_id) {
                return Err((
                    i,
                    PolicyRefusal::Invalid(format!("{} is given twice", p.mn_id)),
                ));
            }
            self.check_profile(p).map_err(|e| (i, e))?;
        }
        // Per profile, the one it replaced; `None` where nothing changed.
        let mut applied: Vec<Option<Option<MobileNodeProfile>>> = Vec::new();
        for (i, profile) in profiles.iter().enumerate() {
            let old = (self.lma.policy().get(profile.mn_id.as_str())).map(|(p, _)| p.clone());
            if old.as_ref() == Some(profile) {
                applied.push(None);
                continue;
            }
            if let Err(e) = self.lma.upsert_profile(profile.clone()) {
                self.roll_back(&profiles, applied, now);
                return Err((i, e.into()));
            }
            applied.push(Some(old));
        }
        let mut out = Vec::with_capacity(profiles.len());
        for (profile, done) in profiles.into_iter().zip(applied) {
            let Some(old) = done else {
                out.push(Upserted {
                    view: self.profile_view(&profile),
                    created: false,
                    changed: false,
                });
                continue;
            };
            self.batch.put_profile(profile.clone());
            let revision = self
                .profiles_hub
                .publish(wall, ProfileChange::Upserted(profile.clone()));
            self.profile_changes
                .insert(profile.mn_id.to_string(), (revision, wall));
            out.push(Upserted {
                view: self.profile_view(&profile),
                created: old.is_none(),
                changed: true,
            });
        }
        Ok(out)
    }

    /// Undoes the first `applied.len()` profiles of a batch, last first.
    fn roll_back(
        &mut self,
        profiles: &[MobileNodeProfile],
        applied: Vec<Option<Option<MobileNodeProfile>>>,
        now: Instant,
    ) {
        for (profile, done) in profiles.iter().zip(applied).rev() {
            match done {
                None => {}
                Some(None) => {
                    self.lma.remove_profile(now, profile.mn_id.as_str(), false);
                }
                Some(Some(old)) => {
                    // It was in the store before this batch, beside the same profiles.
                    if let Err(e) = self.lma.upsert_profile(old) {
                        warn!(mn_id = %profile.mn_id, error = %e, "cannot restore a profile");
                    }
                }
            }
        }
    }

    pub fn delete_profile(
        &mut self,
        now: Instant,
        wall: WallClock,
        mn_id: String,
        revoke: bool,
    ) -> Result<(), PolicyRefusal> {
        self.lma.policy().check_api_change(&mn_id)?;
        if !self.lma.remove_profile(now, &mn_id, revoke) {
            return Err(PolicyRefusal::NotFound(mn_id));
        }
        if revoke && self.lma.cache().sessions_of(&mn_id).next().is_some() {
            self.revoking.insert(mn_id.clone());
        }
        self.batch.delete_profile(&mn_id);
        self.profile_changes.remove(&mn_id);
        self.profiles_hub
            .publish(wall, ProfileChange::Deleted(mn_id));
        self.drain(now, wall);
        Ok(())
    }

    /// Every authorized MAG, by address.
    /// The heartbeat state of `mag` now.
    fn peer_state(&self, mag: &Ipv6Addr) -> PeerState {
        if self.lma.mag_session_count(mag) == 0 {
            PeerState::Idle
        } else if self.lma.config().domain.heartbeat.interval_s == 0 {
            PeerState::Unmonitored
        } else if self.lma.is_mag_reachable(mag) {
            PeerState::Up
        } else {
            PeerState::Down
        }
    }

    /// Notes when `mag`'s state changed. A MAG that is idle and no longer authorized is
    /// forgotten, so that what is kept is bounded by the MAGs ever authorized.
    fn track_peer(&mut self, mag: Ipv6Addr, wall: WallClock) {
        let state = self.peer_state(&mag);
        if state == PeerState::Idle && !self.lma.policy().mags().is_authorized(&mag) {
            self.peers.remove(&mag);
            return;
        }
        let t = self.peers.entry(mag).or_insert(PeerTrack {
            state,
            since: wall,
            restarts: 0,
            last_restart: None,
        });
        if t.state != state {
            t.state = state;
            t.since = wall;
        }
    }

    /// Every authorized MAG and every MAG with bindings, by proxy-CoA.
    pub fn mag_peers(&self) -> Vec<MagPeerView> {
        let policy = self.lma.policy().mags();
        let mut addresses: BTreeSet<Ipv6Addr> = policy.iter().map(|(a, _)| *a).collect();
        addresses.extend(self.lma.mags().map(|(a, _)| *a));
        addresses
            .into_iter()
            .map(|a| {
                let m = policy.get(&a);
                let state = self.peer_state(&a);
                let track = self.peers.get(&a);
                MagPeerView {
                    address: a,
                    name: m
                        .and_then(|m| m.shown_name())
                        .unwrap_or_default()
                        .to_owned(),
                    authorized: m.map(|m| m.configured),
                    state,
                    since: track
                        .filter(|t| t.state == state)
                        .map_or(self.started_wall, |t| t.since),
                    sessions: self.lma.mag_session_count(&a),
                    restart_counter: self.lma.mag_restart_counter(&a),
                    restarts: track.map_or(0, |t| t.restarts),
                    last_restart: track.and_then(|t| t.last_restart),
                }
            })
            .collect()
    }

    pub fn list_mags(&self) -> Vec<MagView> {
        let sessions: HashMap<Ipv6Addr, u32> = self.lma.mags().map(|(a, n)| (*a, *n)).collect();
        (self.lma.policy().mags().iter())
            .map(|(a, m)| MagView {
                address: *a,
                name: m.shown_name().unwrap_or_default().to_owned(),
                from_config: m.configured,
                sessions: sessions.get(a).copied().unwrap_or(0),
                reachable: sessions.contains_key(a) && self.lma.is_mag_reachable(a),
            })
            .collect()
    }
}

/// Prefixes as one log field: `2001:db8:1::/64,2001:db8:2::/64`.
fn prefix_list(prefixes: &[Ipv6Net]) -> String {
    let v: Vec<String> = prefixes.iter().map(ToString::to_string).collect();
    v.join(",")
}

/// One span per Proxy Binding Update (a transaction: its answer, and what it changed, are
/// logged inside it and exported with it over OTLP).
fn pbu_span(src: Ipv6Addr, bytes: &[u8]) -> Option<tracing::Span> {
    let t = pmip::wire::MhPacket::new_checked(bytes).ok()?.mh_type();
    (t == pmip::wire::MhType::BindingUpdate).then(|| tracing::info_span!("pbu", mag = %src))
}

fn pba_by_status(counts: &[u64; 256]) -> Vec<(Status, u64)> {
    (counts.iter().enumerate())
        .filter(|(_, n)| **n > 0)
        .map(|(st, n)| (Status::from(st as u8), *n))
        .collect()
}

#[cfg(test)]
mod tests {
    //! The service without a runtime: messages and commands in, outputs and replies out, on a
    //! clock the test moves.

    use super::*;
    use pmip::lma::BindingRecord;
    use pmip::types::LinkLayerAddress;
    use pmip::wire::{
        AccessTechnologyType, BindingUpdate, BuFlags, HandoffIndicator, Heartbeat, HeartbeatFlags,
        Lifetime, MN_ID_SUBTYPE_NAI, Message, MobilityOption, Options, ProxyBindingAck,
        SequenceNumber, Timestamp,
    };

    const LMA: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 1);
    const MAG1: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x10);
    const MAG2: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 0x10);
    const MAG3: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 3, 0, 0, 0, 0, 0x10);

    fn nai(n: u8) -> String {
        format!("mn{n}@example.org")
    }

    fn config() -> LmaConfig {
        config_with_heartbeats(0, 3)
    }

    fn config_with_heartbeats(interval_s: u32, missing_allowed: u32) -> LmaConfig {
        let nodes: Vec<serde_json::Value> = (1..=4)
            .map(|n| {
                let ll = LinkLayerAddress::mac([2, 0, 0, 0, 0, n]);
                serde_json::json!({"mn_id": nai(n), "link_layer_addresses": [ll.to_string()]})
            })
            .collect();
        let c: LmaConfig = serde_json::from_value(serde_json::json!({
            "name": "lma-test",
            "address": LMA.to_string(),
            "prefix_pools": [{"prefix": "2001:db8:100::/48", "prefix_length": 64}],
            "authorized_mags": [MAG1.to_string(), MAG2.to_string()],
            "mobile_nodes": nodes,
            "domain": {"heartbeat": {"interval_s": interval_s, "missing_allowed": missing_allowed}},
            "datapath": {"mode": "none"},
        }))
        .unwrap();
        c.validate().unwrap();
        c
    }

    /// A service and its clocks.
    struct Bench {
        s: Service,
        now: Instant,
        wall: WallClock,
        seq: u16,
    }

    impl Bench {
        fn new() -> Bench {
            Bench::with(config())
        }

        fn with(config: LmaConfig) -> Bench {
            let now = Instant::from_duration(Duration::from_secs(1));
            let wall = WallClock(Duration::from_secs(1_800_000_000));
            let s = Service::new(
                Start {
                    config,
                    restart_counter: 1,
                    epoch: 1,
                    seed: 7,
                },
                &LmaSnapshot::default(),
                now,
                wall,
            )
            .unwrap();
            Bench {
                s,
                now,
                wall,
                seq: 0,
            }
        }

        fn advance(&mut self, d: Duration) {
            self.now += d;
            self.wall = WallClock(self.wall.0 + d);
        }

        /// A PBU for node `n` from `mag`, as a MAG sends it.
        fn pbu(&mut self, mag: Ipv6Addr, n: u8, hi: HandoffIndicator, prefix: &str) -> Vec<u8> {
            self.pbu_over(mag, n, hi, prefix, AccessTechnologyType::Ieee80211, 3600)
        }

        /// A PBU for node `n` from `mag` over `att`, asking for `lifetime_s`.
        fn pbu_over(
            &mut self,
            mag: Ipv6Addr,
            n: u8,
            hi: HandoffIndicator,
            prefix: &str,
            att: AccessTechnologyType,
            lifetime_s: u32,
        ) -> Vec<u8> {
            self.seq += 1;
            let id = nai(n);
            let ll = LinkLayerAddress::mac([2, 0, 0, 0, 0, n]);
            let opts = [
                MobilityOption::MobileNodeIdentifier {
                    subtype: MN_ID_SUBTYPE_NAI,
                    id: id.as_bytes(),
                },
                MobilityOption::HomeNetworkPrefix(prefix.parse().unwrap()),
                MobilityOption::HandoffIndicator(hi),
                MobilityOption::AccessTechnologyType(att),
                MobilityOption::MnLinkLayerIdentifier(ll.as_bytes()),
                MobilityOption::Timestamp(Timestamp::from_wall_clock(self.wall)),
            ];
            emit(
                &Message::BindingUpdate(BindingUpdate {
                    sequence: SequenceNumber(self.seq),
                    flags: BuFlags::A | BuFlags::P,
                    lifetime: Lifetime::from_secs(lifetime_s),
                    options: Options::List(&opts),
                }),
                mag,
            )
        }

        fn receive(&mut self, src: Ipv6Addr, bytes: &[u8]) {
            self.s.handle_message(self.now, self.wall, src, LMA, bytes);
        }

        /// The statuses and first prefixes of the PBAs of this turn.
        fn pbas(&mut self) -> Vec<(Ipv6Addr, Status, Option<Ipv6Net>)> {
            (self.s.take_transmits().iter())
                .filter_map(
                    |t| match Message::parse_verified(&t.payload, &t.src, &t.dst) {
                        Ok(Message::BindingAck(ba)) => {
                            let v = ProxyBindingAck::new(&ba).unwrap();
                            Some((t.dst, ba.status, v.home_network_prefixes().next()))
                        }
                        _ => None,
                    },
                )
                .collect()
        }

        fn call<R>(&mut self, make: impl FnOnce(oneshot::Sender<R>) -> Command) -> R {
            let (tx, mut rx) = oneshot::channel();
            self.s.command(self.now, self.wall, make(tx));
            rx.try_recv().expect("answered in the same turn")
        }

        /// Registers node `n` at `mag`; returns its prefix.
        fn attach(&mut self, mag: Ipv6Addr, n: u8) -> Ipv6Net {
            let b = self.pbu(mag, n, HandoffIndicator::AttachmentOverNewInterface, "::/0");
            self.receive(mag, &b);
            let pbas = self.pbas();
            assert_eq!(pbas.len(), 1, "{pbas:?}");
            assert_eq!(pbas[0].1, Status::Accepted);
            pbas[0].2.unwrap()
        }
    }

    fn emit(m: &Message<'_>, src: Ipv6Addr) -> Vec<u8> {
        let mut bytes = vec![0u8; m.buffer_len()];
        m.emit_with_checksum(&mut bytes, &src, &LMA).unwrap();
        bytes
    }

    #[test]
    fn a_registration_is_routed_written_before_its_pba_and_published() {
        let mut b = Bench::new();
        let rx = match b.s.watch_bindings(b.now, b.wall, None) {
            WatchStart::Reset { rx, snapshot, .. } => {
                assert!(snapshot.is_empty());
                rx
            }
            other => panic!("{other:?}"),
        };
        let p = b.attach(MAG1, 1);
        let changes = b.s.take_changes();
        assert_eq!(
            changes,
            vec![Change::SetDownlink {
                prefix: p,
                peer: MAG1
            }]
        );
        // The new binding is written before the PBA leaves.
        let commit = b.s.poll_commit(b.now).expect("a commit is due");
        assert!(commit.wait);
        assert!(commit.batch.has_binding(&p.to_string()));
        assert_eq!(b.s.take_answered(), vec![b.now]);
        let mut rx = rx;
        let ev = rx.try_recv().unwrap();
        assert_eq!(ev.revision, 1);
        assert!(matches!(&ev.item, BindingChange::Added(v) if v.record.mn_id == nai(1)));
        assert_eq!(b.s.stats().bindings, 1);
        assert_eq!(b.s.stats().pbu_received, 1);
    }

    #[test]
    fn a_refresh_waits_for_the_deferred_write_and_a_later_change_takes_it_over() {
        let mut b = Bench::new();
        let p = b.attach(MAG1, 1);
        b.s.poll_commit(b.now).unwrap();
        b.advance(Duration::from_millis(10));
        let refresh = b.pbu(
            MAG1,
            1,
            HandoffIndicator::HandoffStateNotChanged,
            &p.to_string(),
        );
        b.receive(MAG1, &refresh);
        assert_eq!(b.pbas()[0].1, Status::Accepted);
        // Its PBA does not wait for the disk: nothing is due yet, but the timer is set.
        assert!(b.s.poll_commit(b.now).is_none());
        let due = b.s.poll_timeout().unwrap();
        assert_eq!(due, b.now + DEFERRED_INTERVAL);
        b.advance(DEFERRED_INTERVAL);
        b.s.handle_timeout(b.now, b.wall);
        let c = b.s.poll_commit(b.now).expect("the deferred refresh");
        assert!(!c.wait, "nobody waits for a refresh");
        assert!(c.batch.has_binding(&p.to_string()));
        // A refresh then a handoff in one turn: one write, before the replies.
        b.advance(Duration::from_millis(10));
        let refresh = b.pbu(
            MAG1,
            1,
            HandoffIndicator::HandoffStateNotChanged,
            &p.to_string(),
        );
        b.receive(MAG1, &refresh);
        // One turn, but a later timestamp.
        b.wall = WallClock(b.wall.0 + Duration::from_millis(1));
        let handoff = b.pbu(
            MAG2,
            1,
            HandoffIndicator::HandoffBetweenMags,
            &p.to_string(),
        );
        b.receive(MAG2, &handoff);
        let pbas = b.pbas();
        assert_eq!(pbas.len(), 2, "{pbas:?}");
        assert!(pbas.iter().all(|p| p.1 == Status::Accepted), "{pbas:?}");
        let c = b.s.poll_commit(b.now).unwrap();
        assert!(c.wait);
        assert_eq!(c.batch.len(), 1);
        assert!(b.s.poll_commit(b.now + DEFERRED_INTERVAL).is_none());
        let all = b.s.final_commit();
        assert!(all.batch.is_empty());
    }

    #[test]
    fn profiles_and_mags_have_one_owner_and_the_file_wins() {
        let mut b = Bench::new();
        let mut p = MobileNodeProfile::new(pmip::types::Nai::new(nai(1)).unwrap());
        let r = b.call(|reply| Command::UpsertProfile {
            profile: p.clone(),
            reply,
        });
        assert_eq!(r, Err(PolicyRefusal::FromConfig(nai(1))));
        let r = b.call(|reply| Command::DeleteProfile {
            mn_id: nai(1),
            revoke: false,
            reply,
        });
        assert_eq!(r, Err(PolicyRefusal::FromConfig(nai(1))));
        p.mn_id = pmip::types::Nai::new("mn9@example.org").unwrap();
        p.home_network_prefixes = vec!["2001:db8:100:100::/56".parse().unwrap()];
        let r = b.call(|reply| Command::UpsertProfile {
            profile: p.clone(),
            reply,
        });
        assert!(matches!(r, Err(PolicyRefusal::OutOfRange(_))), "{r:?}");
        p.home_network_prefixes.clear();
        let r = b
            .call(|reply| Command::UpsertProfile {
                profile: p.clone(),
                reply,
            })
            .unwrap();
        assert!(r.created && r.changed && !r.view.from_config);
        assert_eq!(r.view.revision, 1);
        let again = b
            .call(|reply| Command::UpsertProfile {
                profile: p.clone(),
                reply,
            })
            .unwrap();
        assert!(!again.changed);
        let c = b.s.poll_commit(b.now).unwrap();
        assert_eq!(c.batch.len(), 1, "the profile is written");
        let all = b.call(|reply| Command::ListProfiles { reply });
        assert_eq!(all.len(), 5);
        assert!(all.iter().filter(|v| v.from_config).count() == 4);

        // MAGs: the file's stay, the API's come and go and are written.
        let r = b.call(|reply| Command::RemoveMag {
            address: MAG1,
            reply,
        });
        assert!(r.unwrap_err().contains("configuration file"));
        assert!(b.call(|reply| Command::AddMag {
            address: MAG3,
            name: "node-3".into(),
            reply,
        }));
        let changes = b.call(|reply| Command::SetMags {
            mags: [(MAG1, "node-1".to_owned())].into(),
            reply,
        });
        assert_eq!(changes.removed, vec![MAG3]);
        assert_eq!(changes.renamed, vec![MAG1]);
        let mags = b.call(|reply| Command::ListMags { reply });
        let got: Vec<(Ipv6Addr, &str, bool)> = mags
            .iter()
            .map(|m| (m.address, m.name.as_str(), m.from_config))
            .collect();
        assert_eq!(got, [(MAG1, "node-1", true), (MAG2, "", true)]);
        assert!(b.s.poll_commit(b.now).unwrap().batch.len() == 1);
        // A PBU from the removed MAG is refused, and the refusal is kept for watchers.
        let pbu = b.pbu(
            MAG3,
            2,
            HandoffIndicator::AttachmentOverNewInterface,
            "::/0",
        );
        b.receive(MAG3, &pbu);
        assert_eq!(b.pbas()[0].1, Status::MagNotAuthorizedForProxyReg);
        match b.s.watch_bindings(b.now, b.wall, None) {
            WatchStart::Reset { snapshot, .. } => {
                assert!(matches!(&snapshot[..], [BindingChange::Rejected(r)] if r.mag == MAG3));
            }
            other => panic!("{other:?}"),
        }
        // A binding's view names its MAG with the API's name.
        b.attach(MAG1, 3);
        let v = b.s.bindings_of(b.now, b.wall, &nai(3));
        assert_eq!(v[0].mag_name.as_deref(), Some("node-1"));
    }

    #[test]
    fn watch_resumes_within_its_history_and_revocation_answers_when_the_mag_does() {
        let mut b = Bench::new();
        b.attach(MAG1, 1);
        b.attach(MAG1, 2);
        let cursor = (1, 1);
        match b.s.watch_bindings(b.now, b.wall, Some(cursor)) {
            WatchStart::Resume {
                events, objects, ..
            } => {
                assert_eq!(objects, 2);
                assert_eq!(events.len(), 1);
                assert_eq!(events[0].revision, 2);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            b.s.watch_bindings(b.now, b.wall, Some((2, 1))),
            WatchStart::Reset {
                reason: crate::hub::ResetReason::NewEpoch,
                ..
            }
        ));
        b.s.take_transmits();
        let (tx, mut rx) = oneshot::channel();
        b.s.command(
            b.now,
            b.wall,
            Command::Revoke {
                mn_id: nai(1),
                trigger: RevocationTrigger::AdministrativeReason,
                reply: tx,
            },
        );
        assert!(rx.try_recv().is_err(), "waits for the MAG");
        assert_eq!(b.s.take_transmits().len(), 1, "the BRI");
        let v = b.s.bindings_of(b.now, b.wall, &nai(1));
        assert_eq!(v[0].state, ViewState::Revoking);
        // No answer: after the retries the binding goes and the caller hears so.
        for _ in 0..20 {
            b.advance(Duration::from_secs(1));
            b.s.handle_timeout(b.now, b.wall);
        }
        assert_eq!(rx.try_recv().unwrap(), RevokeOutcome::TimedOut);
        assert_eq!(b.s.stats().revocations_timed_out, 1);
        assert!(b.s.bindings_of(b.now, b.wall, &nai(1)).is_empty());
        let none = b.call(|reply| Command::Revoke {
            mn_id: nai(1),
            trigger: RevocationTrigger::AdministrativeReason,
            reply,
        });
        assert_eq!(none, RevokeOutcome::NoBinding);
    }

    /// A heartbeat response from `mag` to request `seq` (0 and U: unsolicited).
    fn heartbeat_response(mag: Ipv6Addr, seq: u32, unsolicited: bool, rc: u32) -> Vec<u8> {
        let flags = if unsolicited {
            HeartbeatFlags::R | HeartbeatFlags::U
        } else {
            HeartbeatFlags::R
        };
        emit(
            &Message::Heartbeat(Heartbeat {
                flags,
                sequence: seq,
                options: Options::List(&[MobilityOption::RestartCounter(rc)]),
            }),
            mag,
        )
    }

    /// The sequence numbers of the heartbeat requests sent to `mag` this turn.
    fn heartbeat_requests(b: &mut Bench, mag: Ipv6Addr) -> Vec<u32> {
        (b.s.take_transmits().iter())
            .filter(|t| t.dst == mag)
            .filter_map(
                |t| match Message::parse_verified(&t.payload, &t.src, &t.dst) {
                    Ok(Message::Heartbeat(h)) if !h.is_response() => Some(h.sequence),
                    _ => None,
                },
            )
            .collect()
    }

    #[test]
    fn every_mag_shows_its_heartbeat_state_since_when_bindings_and_restarts() {
        let mut b = Bench::with(config_with_heartbeats(30, 1));
        let start = b.wall;
        let peers = b.s.mag_peers();
        let got: Vec<_> = (peers.iter())
            .map(|m| (m.address, m.state, m.since, m.sessions, m.authorized))
            .collect();
        assert_eq!(
            got,
            [
                (MAG1, PeerState::Idle, start, 0, Some(true)),
                (MAG2, PeerState::Idle, start, 0, Some(true)),
            ]
        );

        // A binding: heartbeats start, the first request at once (RFC 5847 §3.1).
        b.advance(Duration::from_secs(5));
        let up_at = b.wall;
        b.attach(MAG1, 1);
        b.attach(MAG1, 2);
        b.s.handle_timeout(b.now, b.wall);
        let seq = heartbeat_requests(&mut b, MAG1);
        assert_eq!(seq.len(), 1);
        b.advance(Duration::from_millis(20));
        b.receive(MAG1, &heartbeat_response(MAG1, seq[0], false, 9));
        let m1 = b.s.mag_peers()[0].clone();
        assert_eq!(
            (m1.state, m1.since, m1.sessions, m1.restart_counter),
            (PeerState::Up, up_at, 2, Some(9))
        );
        assert_eq!((m1.restarts, m1.last_restart), (0, None));

        // With 1 unanswered request allowed, the second unanswered one (seen when the third
        // is sent) makes it down (RFC 5847 §3.1: the count exceeds the allowed one).
        for _ in 0..2 {
            b.advance(Duration::from_secs(30));
            b.s.handle_timeout(b.now, b.wall);
            assert_eq!(b.s.mag_peers()[0].state, PeerState::Up);
        }
        b.advance(Duration::from_secs(30));
        let down_at = b.wall;
        b.s.handle_timeout(b.now, b.wall);
        let m1 = b.s.mag_peers()[0].clone();
        assert_eq!((m1.state, m1.since), (PeerState::Down, down_at));

        // An unsolicited response with a new counter: it restarted (RFC 5847 §3.2).
        b.advance(Duration::from_secs(1));
        let restart_at = b.wall;
        b.receive(MAG1, &heartbeat_response(MAG1, 0, true, 10));
        let m1 = b.s.mag_peers()[0].clone();
        assert_eq!(m1.restart_counter, Some(10));
        assert_eq!((m1.restarts, m1.last_restart), (1, Some(restart_at)));

        // A MAG with bindings that is no longer authorized is still shown.
        b.call(|reply| Command::AddMag {
            address: MAG3,
            name: "node-3".into(),
            reply,
        });
        b.attach(MAG3, 3);
        b.call(|reply| Command::RemoveMag {
            address: MAG3,
            reply,
        })
        .unwrap();
        let m3 = b.s.mag_peers()[2].clone();
        assert_eq!((m3.address, m3.authorized, m3.sessions), (MAG3, None, 1));
        assert_eq!(m3.state, PeerState::Up);

        // With heartbeats off, a MAG with bindings is unmonitored.
        let mut b = Bench::new();
        b.advance(Duration::from_secs(2));
        b.attach(MAG2, 1);
        let peers = b.s.mag_peers();
        assert_eq!(peers[0].state, PeerState::Idle);
        assert_eq!(
            (peers[1].state, peers[1].since, peers[1].restart_counter),
            (PeerState::Unmonitored, b.wall, None)
        );
    }

    #[test]
    fn refused_nodes_are_kept_up_to_the_configured_bound_the_first_refused_forgotten() {
        let mut c = config();
        c.refused_nodes_kept = 2;
        let mut b = Bench::with(c);
        // mn7, mn5, mn6: no profile, refused; mn7 again.
        for n in [7, 5, 6, 7] {
            let pbu = b.pbu(
                MAG1,
                n,
                HandoffIndicator::AttachmentOverNewInterface,
                "::/0",
            );
            b.receive(MAG1, &pbu);
            assert_eq!(b.pbas()[0].1, Status::NotLmaForThisMobileNode);
        }
        let kept = |b: &mut Bench| match b.s.watch_bindings(b.now, b.wall, None) {
            WatchStart::Reset { snapshot, .. } => (snapshot.iter())
                .map(|c| match c {
                    BindingChange::Rejected(r) => (r.mn_id.clone(), r.count),
                    other => panic!("{other:?}"),
                })
                .collect::<Vec<_>>(),
            other => panic!("{other:?}"),
        };
        // mn7 was refused first: forgotten when mn6 came, then refused anew.
        assert_eq!(kept(&mut b), [(nai(6), 1), (nai(7), 1)]);

        let mut c = config();
        c.refused_nodes_kept = 0;
        let mut b = Bench::with(c);
        let pbu = b.pbu(
            MAG1,
            7,
            HandoffIndicator::AttachmentOverNewInterface,
            "::/0",
        );
        b.receive(MAG1, &pbu);
        assert_eq!(b.pbas()[0].1, Status::NotLmaForThisMobileNode);
        assert!(kept(&mut b).is_empty());
    }

    /// After a restart (kill -9 included) every IPv4 home address is routed into its tunnel
    /// again, and an IPv4-only binding, keyed by its address in the store, is kept there.
    #[test]
    fn a_restart_routes_every_ipv4_home_address_and_keeps_ipv4_only_bindings() {
        let now = Instant::from_duration(Duration::from_secs(1));
        let wall = WallClock(Duration::from_secs(1_800_000_000));
        let wall_ms = 1_800_000_000_000;
        let mut c = config();
        c.mobile_nodes[0].ipv4 = true;
        c.mobile_nodes[1].ipv4 = true;
        c.ipv4_pools = vec![pmip::config::Ipv4Pool {
            prefix: "192.0.2.0/24".parse().unwrap(),
            default_router: None,
        }];
        let home = |a: u8| pmip::ipv4_pool::Ipv4HomeAddress {
            address: std::net::Ipv4Addr::new(192, 0, 2, a),
            prefix_len: 24,
            default_router: "192.0.2.1".parse().unwrap(),
        };
        let record = |n: u8, prefix: Option<&str>, v4: u8, mag: Ipv6Addr| BindingRecord {
            mn_id: nai(n),
            home_network_prefixes: prefix.iter().map(|p| p.parse().unwrap()).collect(),
            proxy_coa: mag,
            access_technology_type: 3,
            handoff_indicator: 1,
            mn_link_layer_id: None,
            link_local_address: None,
            lifetime_s: 3600,
            registered_at_ms: wall_ms - 10_000,
            updated_at_ms: wall_ms - 10_000,
            expires_at_ms: wall_ms + 3_590_000,
            delete_at_ms: None,
            last_timestamp: None,
            last_sequence: 1,
            handover_count: 0,
            last_handover_gap_ms: None,
            ipv4_home_address: Some(home(v4)),
        };
        let snapshot = LmaSnapshot {
            restart_counter: 1,
            bindings: vec![
                record(1, Some("2001:db8:100:1::/64"), 10, MAG1),
                record(2, None, 11, MAG2),
            ],
            ..LmaSnapshot::default()
        };
        let s = Service::new(
            Start {
                config: c,
                restart_counter: 1,
                epoch: 2,
                seed: 7,
            },
            &snapshot,
            now,
            wall,
        )
        .unwrap();
        assert_eq!(s.lma().cache().len(), 2);
        let d = s.desired(3);
        assert_eq!(
            d.routes4.into_iter().collect::<Vec<_>>(),
            vec![
                (home(10).host(), PrefixRoute::Tunnel { peer: MAG1 }),
                (home(11).host(), PrefixRoute::Tunnel { peer: MAG2 }),
            ]
        );
        assert_eq!(d.routes.len(), 1);
        assert!(s.batch.is_empty(), "no stored binding is deleted");
    }

    /// The service restored from the store while a thread reads it is the one restored from
    /// the whole list of its records: the same bindings in the same order, the same routes,
    /// the same records of bindings that did not survive deleted from the store, and every
    /// binding valid before the restart kept with its prefixes.
    #[test]
    fn a_service_restored_as_the_store_is_read_is_the_one_restored_from_the_list() {
        let now = Instant::from_duration(Duration::from_secs(1));
        let wall = WallClock(Duration::from_secs(1_800_000_000));
        let wall_ms = 1_800_000_000_000;
        let prefix = |i: usize| -> Ipv6Net { format!("2001:db8:100:{i:x}::/64").parse().unwrap() };
        let record = |i: usize| BindingRecord {
            mn_id: format!("mn{i}@example.org"),
            home_network_prefixes: vec![prefix(i)],
            proxy_coa: if i.is_multiple_of(2) { MAG1 } else { MAG2 },
            access_technology_type: 3,
            handoff_indicator: 1,
            mn_link_layer_id: None,
            link_local_address: None,
            lifetime_s: 3600,
            registered_at_ms: wall_ms - 10_000,
            updated_at_ms: wall_ms - 10_000,
            // Every 7th expired an hour ago: its MAG gave up on it (unless de-registered).
            expires_at_ms: if i % 7 == 3 {
                wall_ms - 3_600_000
            } else {
                wall_ms + 3_590_000
            },
            // Every 11th waits out its de-registration.
            delete_at_ms: (i % 11 == 5).then_some(wall_ms + 500),
            last_timestamp: None,
            last_sequence: i as u16,
            handover_count: 0,
            last_handover_gap_ms: None,
            ipv4_home_address: None,
        };
        let n = 3 * crate::store::CHUNK + 17;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut b = Batch::default();
        (0..n).for_each(|i| b.put_binding(record(i)));
        // Stored under its own key, but holding a prefix of a binding restored before it.
        let mut twice = record(1);
        twice.home_network_prefixes = vec!["2001:db8:200::/64".parse().unwrap(), prefix(1)];
        b.put_binding(twice.clone());
        store.commit(&b).unwrap();
        let start = || Start {
            config: config(),
            restart_counter: 1,
            epoch: 2,
            seed: 7,
        };
        let listed = store.load().unwrap().snapshot;
        let a = Service::new(start(), &listed, now, wall).unwrap();
        let (b, loading) = Service::load(start(), &store, now, wall).unwrap();
        let gone = |i: usize| i % 7 == 3 && i % 11 != 5;
        let expired = (0..n).filter(|i| gone(*i)).count();
        assert_eq!(
            (loading.records, loading.restored, b.lma().cache().len()),
            (n + 1, n - expired, n - expired)
        );
        assert_eq!(a.lma().snapshot(now, wall), b.lma().snapshot(now, wall));
        assert_eq!(a.desired(3), b.desired(3));
        assert_eq!(format!("{:?}", a.batch), format!("{:?}", b.batch));
        assert_eq!(
            b.batch.len(),
            expired + 1,
            "the expired ones and the one held twice"
        );
        assert!(b.batch.has_binding(&twice.key()));
        for i in 0..n {
            let held = b.lma().cache().by_prefix(&prefix(i));
            let e = held.and_then(|s| b.lma().cache().get(s));
            assert_eq!(e.is_some(), !gone(i), "binding {i}");
            if let Some(e) = e {
                assert_eq!(*e.mn_id, *format!("mn{i}@example.org"));
                let state = if i % 11 == 5 {
                    BindingState::Deregistering
                } else {
                    BindingState::Active
                };
                assert_eq!(e.state(), state);
            }
        }
        assert_eq!(b.lma().prefixes_available(), a.lma().prefixes_available());
    }

    /// A binding shows the revision of its last change; a session created where a removed
    /// one was (its slot in the cache) shows its own, never the removed one's.
    #[test]
    fn a_binding_shows_its_last_changes_revision_and_a_new_session_its_own() {
        let mut b = Bench::new();
        let p1 = b.attach(MAG1, 1);
        b.attach(MAG1, 2);
        let revision = |b: &Bench, n: u8| b.s.bindings_of(b.now, b.wall, &nai(n))[0].revision;
        assert_eq!((revision(&b, 1), revision(&b, 2)), (1, 2));
        // Node 1 leaves: de-registered (revision 3), removed after MinDelayBeforeBCEDelete.
        b.advance(Duration::from_secs(1));
        let bye = b.pbu_over(
            MAG1,
            1,
            HandoffIndicator::AttachmentOverNewInterface,
            &p1.to_string(),
            AccessTechnologyType::Ieee80211,
            0,
        );
        b.receive(MAG1, &bye);
        assert_eq!(b.pbas().len(), 1);
        assert_eq!(revision(&b, 1), 3);
        b.advance(Duration::from_secs(60));
        b.s.handle_timeout(b.now, b.wall);
        assert!(b.s.bindings_of(b.now, b.wall, &nai(1)).is_empty());
        // Revision 4 was its removal; node 3 takes its slot with revision 5.
        b.attach(MAG1, 3);
        assert_eq!((revision(&b, 3), revision(&b, 2)), (5, 2));
    }

    #[test]
    fn a_heartbeat_is_answered_but_is_no_registration() {
        let mut b = Bench::new();
        let hb = emit(
            &Message::Heartbeat(Heartbeat {
                flags: HeartbeatFlags::empty(),
                sequence: 9,
                options: Options::List(&[]),
            }),
            MAG1,
        );
        b.receive(MAG1, &hb);
        assert_eq!(b.s.take_transmits().len(), 1, "the heartbeat response");
        assert!(b.s.take_answered().is_empty());
        b.attach(MAG1, 1);
        assert_eq!(b.s.take_answered(), vec![b.now]);
    }

    #[test]
    fn a_held_pbu_counts_once_when_answered_from_its_arrival() {
        use AccessTechnologyType::{Ieee8023, Ieee80211};
        use HandoffIndicator::HandoffStateUnknown;
        let mut b = Bench::new();
        let p = b.attach(MAG1, 1);
        b.s.take_answered();
        // Another access technology, handoff state unknown: held for MAG1's de-registration
        // (RFC 5213 §5.4.1.2 rule 4).
        b.advance(Duration::from_millis(10));
        let held_at = b.now;
        let moved = b.pbu_over(MAG2, 1, HandoffStateUnknown, "::/0", Ieee8023, 3600);
        b.receive(MAG2, &moved);
        assert!(b.pbas().is_empty(), "held");
        assert!(b.s.take_answered().is_empty());
        b.advance(Duration::from_millis(100));
        let dereg = b.pbu_over(MAG1, 1, HandoffStateUnknown, &p.to_string(), Ieee80211, 0);
        b.receive(MAG1, &dereg);
        let pbas = b.pbas();
        assert_eq!(pbas.len(), 2, "{pbas:?}");
        assert_eq!(b.s.take_answered(), vec![b.now, held_at]);

        // Held again, and MaxDelayBeforeNewBCEAssign passes: answered by the timer.
        b.advance(Duration::from_millis(10));
        let held_at = b.now;
        let back = b.pbu_over(MAG1, 1, HandoffStateUnknown, "::/0", Ieee80211, 3600);
        b.receive(MAG1, &back);
        assert!(b.pbas().is_empty(), "held");
        let mut pbas = Vec::new();
        while pbas.is_empty() {
            let due = b.s.poll_timeout().expect("the wait's deadline");
            b.advance(due.saturating_duration_since(b.now));
            b.s.handle_timeout(b.now, b.wall);
            pbas = b.pbas();
        }
        assert_eq!(pbas.len(), 1, "{pbas:?}");
        assert!(b.now >= held_at + Duration::from_millis(1500));
        assert_eq!(b.s.take_answered(), vec![held_at]);
    }
}
