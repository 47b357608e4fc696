//! The local mobility anchor as a pure state machine (RFC 5213 §5, RFC 5844 §3.1,
//! RFC 5846 §8.1, RFC 5847).
//!
//! Feed it messages with [`Lma::handle_message`], clock ticks with [`Lma::handle_timeout`]
//! and administrative commands; drain [`Lma::poll_output`] after each call and sleep until
//! [`Lma::poll_timeout`]. Time and wall-clock time always come in as arguments.

use core::time::Duration;
use std::collections::{BTreeMap, VecDeque};
use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv6Net};
use serde::{Deserialize, Serialize};

use crate::cache::{BindingCache, BindingCacheEntry, BindingState, Ordering, Prefixes, SessionId};
use crate::config::{LinkLocalMode, LmaConfig, MobileNodeProfile};
use crate::heartbeat::{Heartbeats, PeerEvent};
use crate::ipv4_pool::{Ipv4Allocator, Ipv4HomeAddress};
use crate::output::{DatapathCommand, Transmit};
use crate::policy::{AuthorizedMags, PolicyError, PolicyStore};
use crate::prefix::PrefixAllocator;
use crate::rng::Rng;
use crate::time::{Instant, ms, secs};
use crate::types::LinkLayerAddress;
use crate::wire::{
    BaFlags, BindingAck, BindingRevocation, BindingRevocationAck, BindingRevocationIndication,
    BraStatus, Ipv4HoaStatus, Lifetime, MN_ID_SUBTYPE_NAI, Message, MobilityOption, Options,
    RevocationFlags, RevocationTrigger, SequenceNumber, Status, Timestamp, WallClock,
};

mod lookup;
mod registration;
mod restore;

pub use lookup::{Lookup, LookupKey, lookup};
use registration::Reply;
pub use registration::{Ipv4Request, MnLinkLayerId, Registration, RequestedPrefixes};
pub use restore::Restoring;

/// What happened, for logs, metrics, the gRPC Watch stream and the durable store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LmaEvent {
    /// A new mobility session (RFC 5213 §5.3.2).
    BindingCreated { session: SessionId },
    /// Lifetime extended by the same MAG (§5.3.3), or re-registered during the
    /// de-registration wait.
    BindingRefreshed { session: SessionId },
    /// The session moved to another MAG (§5.3.4).
    BindingHandedOff { session: SessionId, from: Ipv6Addr },
    /// De-registered: waiting MinDelayBeforeBCEDelete before deletion (§5.3.5).
    BindingDeregistered { session: SessionId },
    /// The entry is gone.
    BindingRemoved {
        record: BindingRecord,
        reason: RemovalReason,
    },
    /// A PBU was refused with a PBA status >= 128.
    Rejected {
        mn_id: String,
        mag: Ipv6Addr,
        status: Status,
    },
    /// Heartbeat news about a MAG.
    Peer(PeerEvent),
    /// A MAG answered a Binding Revocation Indication.
    RevocationAcknowledged { mn_id: String, status: BraStatus },
    /// No Binding Revocation Acknowledgement came; the binding was removed anyway.
    RevocationTimedOut { mn_id: String },
    /// A per-peer revocation (RFC 5846 §8.1, G with Per-Peer Policy) ended: with the MAG's
    /// BRA status, or `None` when none came; `bindings` were removed either way.
    PeerRevocationEnded {
        mag: Ipv6Addr,
        status: Option<BraStatus>,
        bindings: usize,
    },
    /// A PBU refreshed the binding while its revocation was in progress: the revocation
    /// ended there (RFC 5846 §8.1), and a late acknowledgement of it changes nothing.
    RevocationCancelled { mn_id: String },
    /// A message was dropped: malformed, bad checksum, or not for an LMA.
    Dropped { from: Ipv6Addr, reason: String },
}

/// Why a binding cache entry went away.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RemovalReason {
    /// The lifetime ran out without a refresh.
    Expired,
    /// MinDelayBeforeBCEDelete passed after a de-registration.
    Deregistered,
    /// Revoked (RFC 5846).
    Revoked,
}

/// One thing for the daemon to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LmaOutput {
    Transmit(Transmit),
    Datapath(DatapathCommand),
    Event(LmaEvent),
}

/// A binding cache entry in serialisable form, with wall-clock times: the unit of the durable
/// store and of snapshots.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BindingRecord {
    pub mn_id: String,
    pub home_network_prefixes: Vec<Ipv6Net>,
    pub proxy_coa: Ipv6Addr,
    pub access_technology_type: u8,
    pub handoff_indicator: u8,
    pub mn_link_layer_id: Option<LinkLayerAddress>,
    pub link_local_address: Option<Ipv6Addr>,
    pub lifetime_s: u32,
    /// Milliseconds since the Unix epoch.
    pub registered_at_ms: u64,
    pub updated_at_ms: u64,
    pub expires_at_ms: u64,
    /// Set while waiting out MinDelayBeforeBCEDelete: when the entry is deleted.
    pub delete_at_ms: Option<u64>,
    pub last_timestamp: Option<u64>,
    pub last_sequence: u16,
    pub handover_count: u32,
    pub last_handover_gap_ms: Option<u64>,
    /// The IPv4 home address, its subnet and default router (RFC 5844 §3.1.1). Records
    /// written before IPv4 support have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv4_home_address: Option<Ipv4HomeAddress>,
}

impl BindingRecord {
    /// A key that names the session for as long as it lives: its first prefix, or for an
    /// IPv4-only session its IPv4 home address.
    pub fn key(&self) -> String {
        match (self.home_network_prefixes.first(), self.ipv4_home_address) {
            (Some(p), _) => p.to_string(),
            (None, Some(v4)) => v4.host().to_string(),
            (None, None) => String::new(),
        }
    }
}

/// Everything the LMA must find again after a restart.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LmaSnapshot {
    pub restart_counter: u32,
    pub bindings: Vec<BindingRecord>,
    /// Profiles made over the API (those of the configuration file come from it).
    pub profiles: Vec<MobileNodeProfile>,
    /// MAGs authorized over the API, with their names (empty: none).
    pub authorized_mags: BTreeMap<Ipv6Addr, String>,
}

/// Counters for metrics.
#[derive(Debug, Clone)]
pub struct LmaStats {
    pub pbu_received: u64,
    pub pba_sent: u64,
    /// PBAs sent, by status value.
    pub pba_by_status: [u64; 256],
    pub pbu_ignored: u64,
    pub dropped: u64,
    pub bri_sent: u64,
    pub handoffs: u64,
}

impl Default for LmaStats {
    fn default() -> Self {
        LmaStats {
            pbu_received: 0,
            pba_sent: 0,
            pba_by_status: [0; 256],
            pbu_ignored: 0,
            dropped: 0,
            bri_sent: 0,
            handoffs: 0,
        }
    }
}

/// Why a revocation could not start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RevokeError {
    #[error("no binding for mobile node {0}")]
    NoBinding(String),
    #[error("no binding registered through the MAG at {0}")]
    NoBindingAtMag(Ipv6Addr),
}

#[derive(Debug, Clone)]
struct Revocation {
    /// The node's session; of a per-peer revocation, every session of the MAG not yet
    /// refreshed since.
    sessions: Vec<SessionId>,
    /// Empty for a per-peer revocation.
    mn_id: String,
    /// A global revocation of every binding of `mag` (RFC 5846 §8.1, Per-Peer Policy).
    peer: bool,
    mag: Ipv6Addr,
    payload: Vec<u8>,
    retries_left: u32,
    timeout: Duration,
    next_at: Instant,
}

#[derive(Debug, Clone)]
/// A registration held for the previous MAG's de-registration (RFC 5213 §5.4.1.2 rule 4,
/// §5.4.1.3 rule 3), until `deadline` (MaxDelayBeforeNewBCEAssign).
struct PendingPbu {
    reg: Registration,
    deadline: Instant,
    /// When it arrived: its answer's latency runs from here.
    received_at: Instant,
}

/// Where a PBU being processed comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// Just received.
    Received,
    /// Held for the previous MAG's de-registration (handoff state unknown), which came:
    /// its ordering was checked on arrival and the de-registration's newer timestamp must not
    /// refuse it now.
    AfterDeregistration,
    /// Held, and MaxDelayBeforeNewBCEAssign passed: a new mobility session.
    NewSessionAfterWait,
}

/// The local mobility anchor.
#[derive(Debug)]
pub struct Lma {
    config: LmaConfig,
    cache: BindingCache,
    prefixes: PrefixAllocator,
    /// IPv4 home address pools (RFC 5844 §3.1.2.2).
    ipv4: Ipv4Allocator,
    policy: PolicyStore,
    heartbeats: Heartbeats,
    // Ordered maps, and a seeded hasher in the cache: nothing here iterates in an order that
    // depends on anything but the seed and the inputs.
    mag_sessions: BTreeMap<Ipv6Addr, u32>,
    revocations: BTreeMap<u16, Revocation>,
    pending: BTreeMap<SessionId, PendingPbu>,
    /// The prefixes of ended mobility sessions, kept for their node (by MN-ID and MN
    /// link-layer identifier) while its profile lasts: still claimed in the pools, given to
    /// no other node unless the pools run dry (see [`Lma::create_session`]).
    kept: BTreeMap<(String, Option<LinkLayerAddress>), Prefixes>,
    outputs: VecDeque<LmaOutput>,
    rng: Rng,
    stats: LmaStats,
    /// When the PBU being answered arrived: now, or earlier for a held one.
    answering: Instant,
    /// The arrival of each PBU answered by the current `handle_*` call.
    answered: Vec<Instant>,
}

impl Lma {
    /// A fresh LMA: no bindings; profiles and authorized MAGs from the configuration.
    /// `restart_counter` is the daemon's persistent counter (RFC 5847 §3.2), `seed` feeds
    /// sequence numbers and generated link-local addresses.
    pub fn new(config: LmaConfig, restart_counter: u32, seed: u64) -> Result<Self, PolicyError> {
        let mut rng = Rng::new(seed);
        let hb = &config.domain.heartbeat;
        let heartbeats = Heartbeats::new(
            config.address,
            secs(hb.interval_s),
            hb.missing_allowed,
            restart_counter,
            rng.next_u32(),
        );
        let policy =
            PolicyStore::from_configuration(&config.mobile_nodes, &config.authorized_mags)?;
        Ok(Lma {
            prefixes: PrefixAllocator::new(&config.prefix_pools),
            ipv4: Ipv4Allocator::new(&config.ipv4_pools),
            config,
            // Its own stream, so that the rest of `rng` draws what it always drew.
            cache: BindingCache::with_seed(Rng::new(!seed).next_u64()),
            policy,
            heartbeats,
            mag_sessions: BTreeMap::new(),
            revocations: BTreeMap::new(),
            pending: BTreeMap::new(),
            kept: BTreeMap::new(),
            outputs: VecDeque::new(),
            rng,
            stats: LmaStats::default(),
            answering: Instant::ZERO,
            answered: Vec::new(),
        })
    }

    /// An LMA restarted from a snapshot: bindings, allocations and policy as they were, with
    /// `restart_counter`. RFC 5847 §3.2: the counter MUST NOT be incremented when the
    /// sessions survived the restart, so a caller whose snapshot is whole passes the
    /// snapshot's own counter and the MAGs notice nothing. A caller that knows state was lost
    /// passes a new value: then every MAG that had sessions is told with an unsolicited
    /// Heartbeat Response, so that it re-registers its nodes. Bindings that expired while the
    /// LMA was down are dropped. A binding gets at least `grace` of lifetime, so that a
    /// refresh the snapshot missed is not lost. The routes the restored bindings need are
    /// [`Lma::restored_routes`], not outputs: a daemon compares them with what its datapath
    /// kept, and a million of them queued as outputs cost more than the restore itself.
    pub fn restore(
        config: LmaConfig,
        snapshot: &LmaSnapshot,
        restart_counter: u32,
        seed: u64,
        now: Instant,
        wall: WallClock,
        grace: Duration,
    ) -> Result<Self, PolicyError> {
        let mut r = Restoring::new(config, snapshot, restart_counter, seed, now, wall, grace)?;
        r.reserve(snapshot.bindings.len());
        for b in &snapshot.bindings {
            let _ = r.binding(b.clone());
        }
        Ok(r.finish())
    }

    /// The datapath every binding in the cache needs, as commands: a tunnel route to its
    /// MAG per home network prefix and IPv4 home address, or none while it is being
    /// de-registered. What a restored LMA reprograms (see [`Lma::restore`]).
    pub fn restored_routes(&self) -> impl Iterator<Item = DatapathCommand> + '_ {
        self.cache.iter().flat_map(|(_, e)| {
            let deregistering = e.state() == BindingState::Deregistering;
            let peer = e.proxy_coa;
            home_nets(e).map(move |prefix| {
                if deregistering {
                    DatapathCommand::DropDownlink { prefix }
                } else {
                    DatapathCommand::SetDownlink { prefix, peer }
                }
            })
        })
    }

    pub fn config(&self) -> &LmaConfig {
        &self.config
    }

    pub fn address(&self) -> Ipv6Addr {
        self.config.address
    }

    pub fn restart_counter(&self) -> u32 {
        self.heartbeats.restart_counter()
    }

    pub fn cache(&self) -> &BindingCache {
        &self.cache
    }

    pub fn policy(&self) -> &PolicyStore {
        &self.policy
    }

    pub fn stats(&self) -> &LmaStats {
        &self.stats
    }

    /// Prefixes the pools can still hand out.
    pub fn prefixes_available(&self) -> u64 {
        self.prefixes.available()
    }

    /// Each prefix pool and the prefixes it can still hand out.
    pub fn prefixes_available_by_pool(&self) -> impl Iterator<Item = (Ipv6Net, u64)> + '_ {
        self.prefixes.available_by_pool()
    }

    /// Bytes held by the binding cache and the allocator.
    pub fn memory_bytes(&self) -> usize {
        self.cache.memory_bytes() + self.prefixes.heap_bytes()
    }

    /// When each PBU answered by the last [`Lma::handle_message`] or [`Lma::handle_timeout`]
    /// arrived, one entry per PBA sent: the daemon's registration latency runs from here to
    /// the PBA leaving. A PBU held for the previous MAG's de-registration (RFC 5213 §5.4.1)
    /// is answered, and listed, by a later call; heartbeats and other messages are not listed.
    pub fn answered(&self) -> &[Instant] {
        &self.answered
    }

    pub fn poll_output(&mut self) -> Option<LmaOutput> {
        self.outputs.pop_front()
    }

    /// When [`Lma::handle_timeout`] must next be called.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        [
            self.cache.next_deadline(),
            self.heartbeats.next_deadline(),
            self.pending.values().map(|p| p.deadline).min(),
            self.revocations.values().map(|r| r.next_at).min(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn push(&mut self, o: LmaOutput) {
        self.outputs.push_back(o);
    }

    fn event(&mut self, e: LmaEvent) {
        self.push(LmaOutput::Event(e));
    }

    /// The durable form of a session, with wall-clock times computed from `now` / `wall`.
    pub fn record(
        &self,
        session: SessionId,
        now: Instant,
        wall: WallClock,
    ) -> Option<BindingRecord> {
        self.cache
            .get(session)
            .map(|e| record_of(e, now, to_ms(wall)))
    }

    /// Everything needed to restart (see [`Lma::restore`]).
    pub fn snapshot(&self, now: Instant, wall: WallClock) -> LmaSnapshot {
        let w = to_ms(wall);
        LmaSnapshot {
            restart_counter: self.restart_counter(),
            bindings: self
                .cache
                .iter()
                .map(|(_, e)| record_of(e, now, w))
                .collect(),
            profiles: self.policy.api_profiles().cloned().collect(),
            authorized_mags: self.policy.mags().api(),
        }
    }

    // ---------------------------------------------------------------- policy administration

    pub fn upsert_profile(&mut self, p: MobileNodeProfile) -> Result<(), PolicyError> {
        for prefix in &p.home_network_prefixes {
            if let Some(s) = self.cache.by_prefix(prefix) {
                let holder = self.cache.get(s).map(|e| &*e.mn_id);
                if holder != Some(p.mn_id.as_str()) {
                    return Err(PolicyError::PrefixPinnedElsewhere {
                        prefix: *prefix,
                        owner: holder.unwrap_or_default().to_owned(),
                    });
                }
            }
        }
        if let Some(a) = p.ipv4_home_address {
            // RFC 5844 §3.1.2.2: only an address anchored here can be the node's.
            if self.ipv4.lease_for(a).is_none() {
                return Err(PolicyError::Invalid(format!(
                    "ipv4_home_address {a} is not a node address of any IPv4 pool of this LMA"
                )));
            }
            if let Some(s) = self.cache.by_ipv4(&a)
                && let Some(holder) = self.cache.get(s).map(|e| &*e.mn_id)
                && holder != p.mn_id.as_str()
            {
                return Err(PolicyError::Ipv4AddressTaken {
                    address: a,
                    how: "held by",
                    owner: holder.to_owned(),
                });
            }
        }
        let old = self.policy.upsert(p)?;
        self.release_unpinned(old);
        Ok(())
    }

    /// Removes a profile; with `revoke`, every binding of the node is revoked (RFC 5846).
    pub fn remove_profile(&mut self, now: Instant, mn_id: &str, revoke: bool) -> bool {
        let old = self.policy.remove(mn_id);
        let found = old.is_some();
        self.release_unpinned(old);
        if self.policy.lookup(mn_id).is_none() {
            let gone: Vec<_> = (self.kept.keys())
                .filter(|(m, _)| m == mn_id)
                .cloned()
                .collect();
            for k in gone {
                self.release_kept(&k);
            }
        }
        if revoke {
            let _ = self.revoke(now, mn_id, RevocationTrigger::AdministrativeReason);
        }
        found
    }

    /// Pinned prefixes of a replaced or removed profile go back to their pool unless a
    /// binding still holds them.
    fn release_unpinned(&mut self, old: Option<MobileNodeProfile>) {
        let v4 = old.as_ref().and_then(|o| o.ipv4_home_address);
        for p in old.into_iter().flat_map(|o| o.home_network_prefixes) {
            if !self.policy.is_pinned(&p) && self.cache.by_prefix(&p).is_none() {
                self.prefixes.release(&p);
            }
        }
        if let Some(a) = v4
            && !self.policy.is_ipv4_pinned(&a)
            && self.cache.by_ipv4(&a).is_none()
        {
            self.ipv4.release(a);
        }
    }

    /// The authorized MAGs, to change: a MAG's authorization touches nothing else of the LMA.
    pub fn authorized_mags_mut(&mut self) -> &mut AuthorizedMags {
        self.policy.mags_mut()
    }

    /// Replaces the MAGs authorized by the configuration.
    pub fn set_authorized_mags(&mut self, mags: impl IntoIterator<Item = Ipv6Addr>) {
        self.policy.mags_mut().configure(mags);
    }

    // ---------------------------------------------------------------- revocation (RFC 5846)

    /// Revokes every binding of `mn_id`: a Binding Revocation Indication to its MAG, retried
    /// per RFC 5846 §6.3; the binding is removed on the acknowledgement or after the retries.
    pub fn revoke(
        &mut self,
        now: Instant,
        mn_id: &str,
        trigger: RevocationTrigger,
    ) -> Result<usize, RevokeError> {
        let sessions: Vec<SessionId> = self.cache.sessions_of(mn_id).collect();
        if sessions.is_empty() {
            return Err(RevokeError::NoBinding(mn_id.to_owned()));
        }
        for s in &sessions {
            self.start_revocation(now, *s, trigger);
        }
        Ok(sessions.len())
    }

    /// Revokes every binding registered through the MAG at `mag` with one global BRI (RFC
    /// 5846 §8.1: G set, "Per-Peer Policy", no mobility options), retried as a per-node one;
    /// the bindings go on its acknowledgement or after the retries. A binding the MAG
    /// refreshes meanwhile is spared. Returns how many bindings it covers.
    pub fn revoke_peer(&mut self, now: Instant, mag: Ipv6Addr) -> Result<usize, RevokeError> {
        let sessions: Vec<SessionId> = (self.cache.iter())
            .filter(|(_, e)| e.proxy_coa == mag)
            .map(|(s, _)| s)
            .collect();
        if sessions.is_empty() {
            return Err(RevokeError::NoBindingAtMag(mag));
        }
        if let Some(r) = self
            .revocations
            .values_mut()
            .find(|r| r.peer && r.mag == mag)
        {
            // One in progress already: it covers the newer bindings too.
            for s in &sessions {
                if !r.sessions.contains(s) {
                    r.sessions.push(*s);
                }
            }
            return Ok(sessions.len());
        }
        let mut seq = self.rng.next_u16();
        while self.revocations.contains_key(&seq) {
            seq = seq.wrapping_add(1);
        }
        let m = Message::BindingRevocation(BindingRevocation::Indication(
            BindingRevocationIndication {
                trigger: RevocationTrigger::PerPeerPolicy,
                sequence: SequenceNumber(seq),
                flags: RevocationFlags::P | RevocationFlags::G,
                options: Options::EMPTY,
            },
        ));
        let Some(t) = crate::emit(&m, self.config.address, mag) else {
            return Err(RevokeError::NoBindingAtMag(mag));
        };
        let rev = &self.config.revocation;
        let timeout = ms(rev.initial_delay_ms);
        let n = sessions.len();
        self.revocations.insert(
            seq,
            Revocation {
                sessions,
                mn_id: String::new(),
                peer: true,
                mag,
                payload: t.payload.clone(),
                retries_left: rev.max_retries,
                timeout,
                next_at: now + timeout,
            },
        );
        self.stats.bri_sent += 1;
        self.push(LmaOutput::Transmit(t));
        Ok(n)
    }

    fn start_revocation(&mut self, now: Instant, session: SessionId, trigger: RevocationTrigger) {
        if self
            .revocations
            .values()
            .any(|r| r.sessions.contains(&session))
        {
            return;
        }
        let Some(e) = self.cache.get(session) else {
            return;
        };
        let mut seq = self.rng.next_u16();
        while self.revocations.contains_key(&seq) {
            seq = seq.wrapping_add(1);
        }
        let mut opts: Vec<MobilityOption<'_>> = vec![MobilityOption::MobileNodeIdentifier {
            subtype: MN_ID_SUBTYPE_NAI,
            id: e.mn_id.as_bytes(),
        }];
        opts.extend(
            e.prefixes
                .as_slice()
                .iter()
                .map(|p| MobilityOption::HomeNetworkPrefix(*p)),
        );
        let m = Message::BindingRevocation(BindingRevocation::Indication(
            BindingRevocationIndication {
                trigger,
                sequence: SequenceNumber(seq),
                flags: RevocationFlags::P,
                options: Options::List(&opts),
            },
        ));
        let Some(t) = crate::emit(&m, self.config.address, e.proxy_coa) else {
            return;
        };
        let rev = &self.config.revocation;
        let timeout = ms(rev.initial_delay_ms);
        self.revocations.insert(
            seq,
            Revocation {
                sessions: vec![session],
                mn_id: e.mn_id.to_string(),
                peer: false,
                mag: e.proxy_coa,
                payload: t.payload.clone(),
                retries_left: rev.max_retries,
                timeout,
                next_at: now + timeout,
            },
        );
        self.stats.bri_sent += 1;
        self.push(LmaOutput::Transmit(t));
    }

    fn on_bra(
        &mut self,
        now: Instant,
        wall: WallClock,
        src: Ipv6Addr,
        bra: &BindingRevocationAck<'_>,
    ) {
        let Some(r) = self.revocations.get(&bra.sequence.0) else {
            // RFC 5846 §6.2.2: no outstanding BRI with that number: discard.
            return;
        };
        if r.mag != src {
            return;
        }
        let Some(r) = self.revocations.remove(&bra.sequence.0) else {
            return;
        };
        self.event(if r.peer {
            LmaEvent::PeerRevocationEnded {
                mag: r.mag,
                status: Some(bra.status),
                bindings: r.sessions.len(),
            }
        } else {
            LmaEvent::RevocationAcknowledged {
                mn_id: r.mn_id.clone(),
                status: bra.status,
            }
        });
        // Success, or the MAG no longer has it: either way the binding goes. Any other
        // status is left to local policy (§6.2.2); ours is that an administrative revocation
        // always completes.
        for s in r.sessions {
            self.remove_session(s, RemovalReason::Revoked, now, wall);
        }
    }

    /// RFC 5846 §8.2: a MAG revokes bindings it registered. Only an authorized MAG is
    /// heard (§6.2: a BRI must come from a peer the LMA has a security association with);
    /// the reading taken for what a MAG may revoke: the bindings whose proxy-CoA is its own
    /// (the BRI's source, or an Alternate Care-of Address option naming that same address),
    /// so that the authorization of §13 for a Per-Peer global revocation is every
    /// authorized MAG's, for its own bindings. The bindings go at once, without a BRI back.
    fn on_bri(
        &mut self,
        now: Instant,
        wall: WallClock,
        src: Ipv6Addr,
        dst: Ipv6Addr,
        bri: &BindingRevocationIndication<'_>,
    ) {
        if !self.policy.is_mag_authorized(&src) {
            return self.drop_message(
                src,
                "Binding Revocation Indication from a MAG that is not authorized".into(),
            );
        }
        let status = match self.bri_sessions(src, bri) {
            Ok((sessions, ipv4_only)) => {
                for s in sessions {
                    let has_prefixes =
                        (self.cache.get(s)).is_some_and(|e| !e.prefixes.as_slice().is_empty());
                    if ipv4_only && has_prefixes {
                        self.release_session_ipv4(s);
                    } else {
                        self.remove_session(s, RemovalReason::Revoked, now, wall);
                    }
                }
                BraStatus::Success
            }
            Err(status) => status,
        };
        if let Some(t) = crate::acknowledge_bri(bri, status, dst, src) {
            self.push(LmaOutput::Transmit(t));
        }
    }

    /// The sessions a MAG's BRI revokes (§8.2), and whether only their IPv4 home address
    /// goes (V), or the BRA status that refuses it.
    fn bri_sessions(
        &self,
        src: Ipv6Addr,
        bri: &BindingRevocationIndication<'_>,
    ) -> Result<(Vec<SessionId>, bool), BraStatus> {
        let flags = bri.flags;
        let global = flags.contains(RevocationFlags::G);
        let global_trigger = bri.trigger.value() >= 128;
        if !flags.contains(RevocationFlags::P) {
            // Only proxy bindings live here (the first rule of §8.2, read the other way).
            return Err(BraStatus::ProxyBindingRevocationNotSupported);
        }
        if matches!(bri.trigger, RevocationTrigger::Unknown(_)) {
            return Err(BraStatus::RevocationTriggerNotSupported);
        }
        let mn_id = bri.options.iter().find_map(|o| match o {
            MobilityOption::MobileNodeIdentifier { id, .. } => core::str::from_utf8(id).ok(),
            _ => None,
        });
        let mut alternate = None;
        let mut named = Vec::new();
        let mut ipv4 = None;
        for o in bri.options.iter() {
            match o {
                MobilityOption::AlternateCareOfAddress(a) => alternate = Some(a),
                MobilityOption::HomeNetworkPrefix(p) => named.push(p),
                MobilityOption::Ipv4HomeAddressRequest { address, .. } => ipv4 = Some(address),
                _ => {}
            }
        }
        if global {
            if bri.trigger != RevocationTrigger::PerPeerPolicy {
                return Err(BraStatus::RevocationFunctionNotSupported);
            }
            // "the MN-ID option is present with the mobile access gateway identity": without
            // it, or for another MAG's proxy-CoA, "Global Revocation NOT Authorized".
            if mn_id.is_none() || alternate.is_some_and(|a| a != src) {
                return Err(BraStatus::GlobalRevocationNotAuthorized);
            }
            let sessions = (self.cache.iter())
                .filter(|(_, e)| e.proxy_coa == src)
                .map(|(s, _)| s)
                .collect();
            return Ok((sessions, false));
        }
        if global_trigger {
            return Err(BraStatus::RevocationFunctionNotSupported);
        }
        let mn_id = mn_id.ok_or(BraStatus::RevokedMobileNodesIdentityRequired)?;
        let v = flags.contains(RevocationFlags::V);
        if v && ipv4.is_none() {
            return Err(BraStatus::Ipv4HomeAddressOptionRequired);
        }
        let sessions: Vec<SessionId> = (self.cache.sessions_of(mn_id))
            .filter(|s| {
                self.cache.get(*s).is_some_and(|e| {
                    e.proxy_coa == src
                        && (named.is_empty()
                            || e.prefixes.as_slice().iter().any(|p| named.contains(p)))
                        && (!v || e.ipv4.map(|h| h.address) == ipv4)
                })
            })
            .collect();
        if sessions.is_empty() {
            return Err(BraStatus::BindingDoesNotExist);
        }
        Ok((sessions, v))
    }

    /// §8.2 rule 4 (V): only the session's IPv4 home address goes; its prefixes stay.
    fn release_session_ipv4(&mut self, session: SessionId) {
        let Some(old) = self.cache.get(session).and_then(|e| e.ipv4) else {
            return;
        };
        self.cache.set_ipv4(session, None);
        self.release_ipv4(old.address);
        self.push(LmaOutput::Datapath(DatapathCommand::RemoveDownlink {
            prefix: old.host().into(),
        }));
    }

    // ---------------------------------------------------------------- messages

    /// Handles a Mobility Header received from `src` for `dst`, verifying its checksum.
    pub fn handle_message(
        &mut self,
        now: Instant,
        wall: WallClock,
        src: Ipv6Addr,
        dst: Ipv6Addr,
        bytes: &[u8],
    ) {
        self.answered.clear();
        match Message::parse_verified(bytes, &src, &dst) {
            Ok(m) => self.dispatch(now, wall, src, dst, m),
            Err(e) => self.drop_message(src, e.to_string()),
        }
    }

    /// Like [`Lma::handle_message`] for a checksum already verified by the kernel (or zero,
    /// as in RFC 5844 UDP framing).
    pub fn handle_message_trusted(
        &mut self,
        now: Instant,
        wall: WallClock,
        src: Ipv6Addr,
        dst: Ipv6Addr,
        bytes: &[u8],
    ) {
        self.answered.clear();
        match Message::parse_bytes(bytes) {
            Ok(m) => self.dispatch(now, wall, src, dst, m),
            Err(e) => self.drop_message(src, e.to_string()),
        }
    }

    fn drop_message(&mut self, from: Ipv6Addr, reason: String) {
        self.stats.dropped += 1;
        self.event(LmaEvent::Dropped { from, reason });
    }

    fn dispatch(
        &mut self,
        now: Instant,
        wall: WallClock,
        src: Ipv6Addr,
        dst: Ipv6Addr,
        m: Message<'_>,
    ) {
        match m {
            Message::BindingUpdate(bu) => self.on_binding_update(now, wall, src, dst, &bu),
            Message::Heartbeat(hb) => {
                let mut tx = Vec::new();
                let mut ev = Vec::new();
                self.heartbeats
                    .on_message(src, &hb, &mut |t| tx.push(t), &mut |e| ev.push(e));
                for t in tx {
                    self.push(LmaOutput::Transmit(t));
                }
                for e in ev {
                    self.event(LmaEvent::Peer(e));
                }
            }
            Message::BindingRevocation(BindingRevocation::Acknowledgement(bra)) => {
                self.on_bra(now, wall, src, &bra);
            }
            Message::BindingRevocation(BindingRevocation::Indication(bri)) => {
                self.on_bri(now, wall, src, dst, &bri);
            }
            Message::BindingError(be) => {
                let mut ev = Vec::new();
                self.heartbeats
                    .on_binding_error(src, be.status, &mut |e| ev.push(e));
                for e in ev {
                    self.event(LmaEvent::Peer(e));
                }
            }
            Message::Unknown { mh_type, .. } => {
                // RFC 6275 §9.2: an unrecognised MH Type is answered with a Binding Error,
                // status 2.
                if let Some(t) = crate::unrecognized_mh_type(dst, src) {
                    self.push(LmaOutput::Transmit(t));
                }
                self.drop_message(src, format!("unrecognized MH Type {mh_type}"));
            }
            other => {
                self.drop_message(src, format!("{} is not for an LMA", other.mh_type()));
            }
        }
    }

    /// RFC 5213 §5.3.1: validate (rules 4-12), then look up (rule 13, §5.4.1) and apply
    /// (§5.3.2-§5.3.5).
    fn on_binding_update(
        &mut self,
        now: Instant,
        wall: WallClock,
        src: Ipv6Addr,
        dst: Ipv6Addr,
        bu: &crate::wire::BindingUpdate<'_>,
    ) {
        self.stats.pbu_received += 1;
        self.answering = now;
        match self.validate(wall, src, dst, bu) {
            Ok(reg) => self.register(now, wall, reg, Origin::Received),
            Err(r) => {
                let mut reply = Reply::of(bu, src, dst);
                reply.sequence = r.sequence.unwrap_or(reply.sequence);
                self.reject(&reply, r.status, r.lma_time, r.mag)
            }
        }
    }

    /// §5.3.1 rule 13: the lookup of §5.4.1, then the rules of the case it finds.
    fn register(&mut self, now: Instant, wall: WallClock, reg: Registration, origin: Origin) {
        let found = match origin {
            Origin::NewSessionAfterWait => Lookup::New,
            Origin::Received | Origin::AfterDeregistration => lookup(
                &self.cache,
                &reg.key(),
                self.config.timers.max_delay_before_new_bce_assign_ms != 0,
            ),
        };
        let session = match found {
            Lookup::Reject(status) => {
                return self.reject(&reg.reply(), status, None, reg.proxy_coa);
            }
            Lookup::Wait(s) => {
                if !reg.is_deregistration() {
                    let deadline = now + ms(self.config.timers.max_delay_before_new_bce_assign_ms);
                    self.pending.insert(
                        s,
                        PendingPbu {
                            reg,
                            deadline,
                            received_at: now,
                        },
                    );
                }
                return;
            }
            Lookup::New => None,
            Lookup::Existing(s) => Some(s),
        };
        let granted = Lifetime::from_secs(
            reg.lifetime
                .as_secs()
                .min(self.config.timers.max_binding_lifetime_s),
        );
        match session {
            None if reg.is_deregistration() => {
                // §5.4.1: a de-registration for no session is silently ignored.
                self.stats.pbu_ignored += 1;
            }
            None => self.create_session(now, &reg, granted),
            Some(s) if reg.is_deregistration() => self.deregister(now, wall, &reg, s),
            Some(s) => self.update_session(now, &reg, s, granted),
        }
    }

    /// RFC 5213 §5.3.2, and RFC 5844 §3.1.2.2 for the IPv4 home address.
    fn create_session(&mut self, now: Instant, reg: &Registration, granted: Lifetime) {
        let mn_id = &*reg.mn_id;
        let reply = reg.reply();
        let ipv4 = match self.ipv4_for(reg, None) {
            Ok(v4) => v4,
            Err(status) => return self.reject(&reply, status, None, reg.proxy_coa),
        };
        let release_ipv4 = |lma: &mut Lma| {
            if let Some(v4) = ipv4 {
                lma.release_ipv4(v4.address);
            }
        };
        let prefixes: Prefixes = match &reg.prefixes {
            RequestedPrefixes::Absent => Prefixes::Many(Box::new([])),
            RequestedPrefixes::Named(requested) => {
                // Rule 3: the prefixes must be ours and the node must be entitled to them.
                for p in requested.as_slice() {
                    let pinned_to = self.policy.pinned_owner(p);
                    let ok = match pinned_to {
                        Some(owner) => owner == mn_id,
                        // Nor is a prefix kept for another node (see `kept`).
                        None => {
                            self.prefixes.owns(p) && self.kept_for(p).is_none_or(|o| o == mn_id)
                        }
                    } && self.cache.by_prefix(p).is_none();
                    if !ok {
                        release_ipv4(self);
                        return self.reject(
                            &reply,
                            Status::NotAuthorizedForHomeNetworkPrefix,
                            None,
                            reg.proxy_coa,
                        );
                    }
                }
                self.unkeep(mn_id, requested.as_slice());
                requested.clone()
            }
            RequestedPrefixes::Allocate => {
                let (policy, cache) = (&self.policy, &self.cache);
                let free_pinned = Prefixes::collect(
                    policy
                        .lookup(mn_id)
                        .map_or(&[][..], |p| &p.home_network_prefixes)
                        .iter()
                        .copied()
                        .filter(|p| cache.by_prefix(p).is_none()),
                );
                if !free_pinned.as_slice().is_empty() {
                    free_pinned
                } else if let Some(kept) = self.take_kept(mn_id, reg.link_layer_address()) {
                    // The prefix the node had: RFC 5213 §5.3.2 rule 1 leaves the choice of
                    // prefix to the LMA; the reading taken is that a node keeps its prefix
                    // for as long as its profile lasts, even when a failed handover let its
                    // binding end (MinDelayBeforeBCEDelete passed) before it registered again.
                    kept
                } else {
                    // Rules 1-2.
                    match self.allocate_prefix() {
                        Some(p) => Prefixes::One(p),
                        None => {
                            release_ipv4(self);
                            return self.reject(
                                &reply,
                                Status::InsufficientResources,
                                None,
                                reg.proxy_coa,
                            );
                        }
                    }
                }
            }
        };
        for p in prefixes.as_slice() {
            self.prefixes.claim(p);
        }
        if let Some(v4) = ipv4 {
            self.ipv4.claim(v4.address);
        }
        let link_local = self.link_local_for(reg.link_local_address, None);
        let mut entry = BindingCacheEntry::new(
            mn_id.into(),
            prefixes.clone(),
            reg.proxy_coa,
            reg.access_technology_type,
            reg.handoff_indicator,
            reg.link_layer_address(),
            link_local,
            granted.as_secs(),
            now,
            Ordering::new(reg.timestamp, reg.sequence),
        );
        entry.ipv4 = ipv4;
        let homes: Vec<IpNet> = home_nets(&entry).collect();
        let session = self.cache.insert(entry);
        // RFC 5844 §3.1.2.2: the IPv4 host route into the same tunnel.
        for prefix in homes {
            self.push(LmaOutput::Datapath(DatapathCommand::SetDownlink {
                prefix,
                peer: reg.proxy_coa,
            }));
        }
        self.mag_gained(reg.proxy_coa, now);
        self.accept(&reply, session, granted, reg.gre_key);
        self.event(LmaEvent::BindingCreated { session });
    }

    /// RFC 5844 §3.1.2.2: the IPv4 home address `reg` gets, given the one its session has
    /// (`current`), or the status that refuses it. An address from a pool is handed out
    /// here; the caller claims it, or releases it when the registration fails after all.
    fn ipv4_for(
        &mut self,
        reg: &Registration,
        current: Option<Ipv4HomeAddress>,
    ) -> Result<Option<Ipv4HomeAddress>, Status> {
        let Some((request, _)) = reg.ipv4 else {
            return Ok(None);
        };
        let not_authorized = Status::NotAuthorizedForIpv4HomeAddress;
        if let Some(cur) = current {
            // The session has one: asking for any, or for that one, keeps it; another one
            // is not the node's to take (RFC 5844 §3.1.2.7 reads one address per session).
            return match request.named() {
                None => Ok(Some(cur)),
                Some(a) if a == cur.address => Ok(Some(cur)),
                Some(_) => Err(not_authorized),
            };
        }
        let mn_id = &*reg.mn_id;
        let pinned = self.policy.lookup(mn_id).and_then(|p| p.ipv4_home_address);
        match request {
            Ipv4Request::Named(a) => {
                // RFC 5844 §3.1.2.2: the address must be anchored here (in a pool) and the
                // node authorized for it: not pinned to another node, not held by another
                // session, and the node's own pinned address if it has one.
                let lease = self.ipv4.lease_for(a).ok_or(not_authorized)?;
                let owner_ok = self.policy.pinned_ipv4_owner(&a).is_none_or(|o| o == mn_id);
                let free = self.cache.by_ipv4(&a).is_none();
                if !(owner_ok && free && pinned.is_none_or(|p| p == a)) {
                    return Err(not_authorized);
                }
                Ok(Some(lease))
            }
            Ipv4Request::Allocate => {
                if let Some(p) = pinned
                    && self.cache.by_ipv4(&p).is_none()
                    && let Some(lease) = self.ipv4.lease_for(p)
                {
                    return Ok(Some(lease));
                }
                let (policy, cache) = (&self.policy, &self.cache);
                self.ipv4
                    .allocate(|a| policy.is_ipv4_pinned(&a) || cache.by_ipv4(&a).is_some())
                    .map(Some)
                    // RFC 5844 §3.1.2.2: no address left: Insufficient resources.
                    .ok_or(Status::InsufficientResources)
            }
        }
    }

    /// Returns an IPv4 home address to its pool, unless it is pinned to a node.
    fn release_ipv4(&mut self, a: Ipv4Addr) {
        if !self.policy.is_ipv4_pinned(&a) {
            self.ipv4.release(a);
        }
    }

    /// IPv4 home addresses the pools can still hand out.
    pub fn ipv4_addresses_available(&self) -> u64 {
        self.ipv4.available()
    }

    /// RFC 5213 §5.3.3 and §5.3.4: lifetime extension, with or without a handoff.
    fn update_session(
        &mut self,
        now: Instant,
        reg: &Registration,
        session: SessionId,
        granted: Lifetime,
    ) {
        let proxy_coa = reg.proxy_coa;
        let Some(current) = self.cache.get(session) else {
            return;
        };
        let (old_ipv4, had_prefixes) = (current.ipv4, !current.prefixes.as_slice().is_empty());
        // RFC 5844 §3.1.2.1 last rule: an IPv4 request on a session without IPv4 extends it
        // (§3.1.2.2); one on a session with IPv4 must name its address or none. Decided
        // before anything changes: a refusal leaves the binding as it was.
        let ipv4 = match self.ipv4_for(reg, old_ipv4) {
            Ok(v4) => v4,
            Err(status) => return self.reject(&reg.reply(), status, None, reg.proxy_coa),
        };
        // RFC 5844 §3.1.2.4: an address family the request leaves out is released (a
        // SHOULD for the prefixes, and the same for the IPv4 home address); the session
        // keeps the other.
        let drop_prefixes =
            matches!(reg.prefixes, RequestedPrefixes::Absent) && had_prefixes && ipv4.is_some();
        let drop_ipv4 = reg.ipv4.is_none() && old_ipv4.is_some() && !drop_prefixes;
        if let Some(v4) = ipv4
            && old_ipv4.is_none()
        {
            self.ipv4.claim(v4.address);
            self.cache.set_ipv4(session, Some(v4));
        }
        if drop_ipv4 && let Some(old) = old_ipv4 {
            self.cache.set_ipv4(session, None);
            self.release_ipv4(old.address);
            self.push(LmaOutput::Datapath(DatapathCommand::RemoveDownlink {
                prefix: old.host().into(),
            }));
        }
        if drop_prefixes && let Some(e) = self.cache.get(session) {
            let old = e.prefixes.clone();
            self.cache
                .set_prefixes(session, Prefixes::Many(Box::new([])));
            for p in old.as_slice() {
                self.push(LmaOutput::Datapath(DatapathCommand::RemoveDownlink {
                    prefix: (*p).into(),
                }));
                if !self.policy.is_pinned(p) {
                    self.prefixes.release(p);
                }
            }
        }
        let added_ipv4 = ipv4.is_some() && old_ipv4.is_none();
        let link_local = self.link_local_for(
            reg.link_local_address,
            self.cache.get(session).and_then(|e| e.link_local_address),
        );
        let Some(e) = self.cache.get_mut(session) else {
            return;
        };
        let old_coa = e.proxy_coa;
        let was_deregistering = match e.state() {
            BindingState::Deregistering => Some(e.updated_at),
            BindingState::Active => None,
        };
        let handoff = old_coa != proxy_coa;
        e.lifetime_s = granted.as_secs();
        e.updated_at = now;
        e.expires_at = now + e.lifetime();
        e.ordering = Ordering::new(reg.timestamp.max(e.ordering.timestamp()), reg.sequence);
        e.handoff_indicator = reg.handoff_indicator;
        e.access_technology_type = reg.access_technology_type;
        if let Some(ll) = reg.link_layer_address() {
            e.mn_link_layer_id = Some(ll);
        }
        if link_local.is_some() {
            e.link_local_address = link_local;
        }
        if handoff {
            e.proxy_coa = proxy_coa;
            e.handover_count = e.handover_count.saturating_add(1);
            e.set_last_handover_gap(was_deregistering.map(|since| now - since));
        }
        let homes: Vec<IpNet> = home_nets(e).collect();
        let new_ipv4 = e.ipv4.filter(|_| added_ipv4);
        self.cache.set_state(session, BindingState::Active);
        self.cache.reschedule(session);
        if handoff || was_deregistering.is_some() {
            for &prefix in &homes {
                self.push(LmaOutput::Datapath(DatapathCommand::SetDownlink {
                    prefix,
                    peer: proxy_coa,
                }));
            }
        } else if let Some(v4) = new_ipv4 {
            self.push(LmaOutput::Datapath(DatapathCommand::SetDownlink {
                prefix: v4.host().into(),
                peer: proxy_coa,
            }));
        }
        // The previous MAG gets the end marker of each IPv6 prefix once the routes moved, or
        // of the IPv4 home address of a node without one (RFC 5949 fast handovers: see
        // `DatapathCommand::EndMarker`).
        let fh = &self.config.domain.fast_handover;
        if handoff && fh.mode != crate::config::FastHandoverMode::Off && fh.end_marker_wait_ms > 0 {
            let ipv6 = homes.iter().any(|p| matches!(p, IpNet::V6(_)));
            for &prefix in homes.iter().filter(|p| matches!(p, IpNet::V6(_)) == ipv6) {
                self.push(LmaOutput::Datapath(DatapathCommand::EndMarker {
                    prefix,
                    peer: old_coa,
                }));
            }
        }
        if handoff {
            self.stats.handoffs += 1;
            self.mag_gained(proxy_coa, now);
            self.mag_lost(&old_coa);
        }
        // A PBU that was waiting for this session's de-registration is now moot.
        self.pending.remove(&session);
        // RFC 5846 §8.1: a PBU accepted while the binding's revocation is in progress
        // updates the entry, "removing the revocation in progress flag". The reading taken:
        // the node, registered again, keeps its binding; no more BRIs go for it, and the BRA
        // of one already sent, no longer matching an outstanding BRI, is discarded (§6.2.2).
        // Of a per-peer revocation, only this binding is spared.
        for r in self.revocations.values_mut().filter(|r| r.peer) {
            r.sessions.retain(|s| *s != session);
        }
        let cancelled: Vec<u16> = (self.revocations.iter())
            .filter(|(_, r)| !r.peer && r.sessions.contains(&session))
            .map(|(k, _)| *k)
            .collect();
        for k in cancelled {
            if let Some(r) = self.revocations.remove(&k) {
                self.event(LmaEvent::RevocationCancelled { mn_id: r.mn_id });
            }
        }
        self.accept(&reg.reply(), session, granted, reg.gre_key);
        self.event(if handoff {
            LmaEvent::BindingHandedOff {
                session,
                from: old_coa,
            }
        } else {
            LmaEvent::BindingRefreshed { session }
        });
    }

    /// RFC 5213 §5.3.5.
    fn deregister(
        &mut self,
        now: Instant,
        wall: WallClock,
        reg: &Registration,
        session: SessionId,
    ) {
        let delay = ms(self.config.timers.min_delay_before_bce_delete_ms);
        let Some(e) = self.cache.get_mut(session) else {
            return;
        };
        // Rule 1: only the MAG holding the binding may de-register it. This is what keeps a
        // late de-registration from the previous MAG from removing the new MAG's binding.
        if e.proxy_coa != reg.proxy_coa {
            self.stats.pbu_ignored += 1;
            return;
        }
        // RFC 5844 §3.1.2.5 with §3.2.3.3: a de-registration naming only one address family
        // of a session that has both is selective: that family goes, the entry stays.
        let has_prefixes = !e.prefixes.as_slice().is_empty();
        let only_ipv4 = matches!(reg.prefixes, RequestedPrefixes::Absent) && reg.ipv4.is_some();
        let only_ipv6 = reg.ipv4.is_none() && !matches!(reg.prefixes, RequestedPrefixes::Absent);
        if e.state() == BindingState::Active
            && ((only_ipv4 && has_prefixes && e.ipv4.is_some())
                || (only_ipv6 && has_prefixes && e.ipv4.is_some()))
        {
            e.ordering = Ordering::new(reg.timestamp.max(e.ordering.timestamp()), reg.sequence);
            let granted = Lifetime::from_secs(e.lifetime_s);
            if only_ipv4 {
                let old = e.ipv4;
                self.cache.set_ipv4(session, None);
                if let Some(old) = old {
                    self.release_ipv4(old.address);
                    self.push(LmaOutput::Datapath(DatapathCommand::RemoveDownlink {
                        prefix: old.host().into(),
                    }));
                }
            } else {
                let old = e.prefixes.clone();
                self.cache
                    .set_prefixes(session, Prefixes::Many(Box::new([])));
                for p in old.as_slice() {
                    self.push(LmaOutput::Datapath(DatapathCommand::RemoveDownlink {
                        prefix: (*p).into(),
                    }));
                    if !self.policy.is_pinned(p) {
                        self.prefixes.release(p);
                    }
                }
            }
            self.accept(&reg.reply(), session, granted, false);
            self.event(LmaEvent::BindingRefreshed { session });
            return;
        }
        let fresh = matches!(e.state(), BindingState::Active);
        if fresh {
            e.updated_at = now;
            e.expires_at = now + delay;
        }
        e.ordering = Ordering::new(reg.timestamp.max(e.ordering.timestamp()), reg.sequence);
        let homes: Vec<IpNet> = home_nets(e).collect();
        if fresh {
            self.cache.set_state(session, BindingState::Deregistering);
            self.cache.reschedule(session);
            for prefix in homes {
                self.push(LmaOutput::Datapath(DatapathCommand::DropDownlink {
                    prefix,
                }));
            }
        }
        self.accept(&reg.reply(), session, Lifetime::ZERO, false);
        if fresh {
            self.event(LmaEvent::BindingDeregistered { session });
        }
        if delay.is_zero() {
            self.remove_session(session, RemovalReason::Deregistered, now, wall);
            return;
        }
        // A PBU waiting for this de-registration (handoff state unknown) goes ahead now.
        if let Some(p) = self.pending.remove(&session) {
            self.replay_pending(now, wall, p, Origin::AfterDeregistration);
        }
    }

    /// A held PBU goes ahead. Its ordering was checked on arrival; the policy is checked
    /// again (rules 5-8), since it may have changed while the PBU waited.
    fn replay_pending(&mut self, now: Instant, wall: WallClock, p: PendingPbu, origin: Origin) {
        let answering = core::mem::replace(&mut self.answering, p.received_at);
        let reg = p.reg;
        match self.authorize(reg.src, Some(&reg.mn_id)).map(|_| ()) {
            Err(status) => self.reject(&reg.reply(), status, None, reg.proxy_coa),
            Ok(()) => self.register(now, wall, reg, origin),
        }
        self.answering = answering;
    }

    /// The link-local address for the PBA's option (RFC 5213 §5.3.6, §6.8): the requested
    /// non-zero one; for ALL_ZERO, the entry's, or a new one generated here.
    fn link_local_for(
        &mut self,
        requested: Option<Ipv6Addr>,
        existing: Option<Ipv6Addr>,
    ) -> Option<Ipv6Addr> {
        match requested {
            None => None,
            Some(a) if !a.is_unspecified() => Some(a),
            Some(_) => Some(existing.unwrap_or_else(|| {
                if let LinkLocalMode::Fixed { address, .. } = self.config.domain.link_local {
                    address
                } else {
                    let iid = self.rng.next_u64() & !0x0200_0000_0000_0000;
                    Ipv6Addr::from((0xfe80u128 << 112) | u128::from(iid))
                }
            })),
        }
    }

    fn accept(
        &mut self,
        reply: &Reply<'_>,
        session: SessionId,
        granted: Lifetime,
        gre_requested: bool,
    ) {
        // RFC 5845 §6.4: GRE is not used here; the PBU is accepted and says so.
        let status = if gre_requested {
            Status::GreKeyOptionNotRequired
        } else {
            Status::Accepted
        };
        let (prefixes, lla, ipv4) = match self.cache.get(session) {
            Some(e) => (e.prefixes.clone(), e.link_local_address, e.ipv4),
            None => return,
        };
        let lla = reply
            .link_local_address
            .map(|_| lla.unwrap_or(Ipv6Addr::UNSPECIFIED));
        // RFC 5844 §3.1.2.6: no prefix options in answer to an IPv4-only request; the IPv4
        // Home Address Reply (status 0, the session's address and subnet length) and the
        // IPv4 Default-Router Address when the request asked for IPv4 and was accepted.
        let prefixes: &[Ipv6Net] = if reply.home_network_prefix_option {
            prefixes.as_slice()
        } else {
            &[]
        };
        let v4 = reply.ipv4_request.map(|(len, addr)| match ipv4 {
            Some(v4) => Ipv4Options::Accepted(v4),
            // A selective de-registration of the address: its reply echoes the request.
            None => Ipv4Options::Refused(Ipv4HoaStatus::Success, len, addr),
        });
        let mut opts = pba_options(reply, prefixes, reply.timestamp, lla);
        push_ipv4_options(&mut opts, v4);
        self.send_pba(reply, status, granted, opts.as_slice());
    }

    fn reject(
        &mut self,
        reply: &Reply<'_>,
        status: Status,
        lma_time: Option<Timestamp>,
        mag: Ipv6Addr,
    ) {
        let mut prefixes = reply.requested.to_vec();
        // RFC 5844 §3.1.2.6: at least one prefix option or IPv4 Home Address Reply; none of
        // the former when the request had none.
        if prefixes.is_empty() && (reply.home_network_prefix_option || reply.ipv4_request.is_none())
        {
            prefixes.push(Ipv6Net::default());
        }
        let ts = lma_time.or(reply.timestamp);
        let mut opts = pba_options(reply, &prefixes, ts, reply.link_local_address);
        // RFC 5844 §3.1.2.6 rule 1: an IPv4 Home Address Reply echoing the request, with a
        // status of its own space (§3.3.2). §3.1.2.2 names two: 129 with 171, 128 with 130.
        // Reading taken for the rest: 129 (administratively prohibited) with 170, 128
        // (reason unspecified) for everything else.
        let option_status = match status {
            Status::NotAuthorizedForIpv4HomeAddress
            | Status::NotAuthorizedForIpv4MobilityService => {
                Ipv4HoaStatus::AdministrativelyProhibited
            }
            _ => Ipv4HoaStatus::FailureReasonUnspecified,
        };
        let v4 = reply
            .ipv4_request
            .map(|(len, addr)| Ipv4Options::Refused(option_status, len, addr));
        push_ipv4_options(&mut opts, v4);
        // A Binding Update without P gets a plain Binding Acknowledgement (RFC 6275 §6.1.8),
        // without the options of a PBA.
        let opts = if reply.proxy { opts.as_slice() } else { &[] };
        self.send_pba(reply, status, Lifetime::ZERO, opts);
        self.event(LmaEvent::Rejected {
            mn_id: String::from_utf8_lossy(reply.mn_id).into_owned(),
            mag,
            status,
        });
    }

    fn send_pba(
        &mut self,
        reply: &Reply<'_>,
        status: Status,
        lifetime: Lifetime,
        opts: &[MobilityOption<'_>],
    ) {
        let m = Message::BindingAck(BindingAck {
            status,
            flags: if reply.proxy {
                BaFlags::P
            } else {
                BaFlags::empty()
            },
            sequence: reply.sequence,
            lifetime,
            options: Options::List(opts),
        });
        if let Some(t) = crate::emit(&m, reply.dst, reply.src) {
            self.stats.pba_sent += 1;
            self.stats.pba_by_status[usize::from(status.value())] += 1;
            self.answered.push(self.answering);
            self.push(LmaOutput::Transmit(t));
        }
    }

    // ---------------------------------------------------------------- timers

    pub fn handle_timeout(&mut self, now: Instant, wall: WallClock) {
        self.answered.clear();
        while let Some(s) = self.cache.pop_due(now) {
            let reason = match self.cache.get(s).map(|e| e.state()) {
                Some(BindingState::Deregistering) => RemovalReason::Deregistered,
                Some(BindingState::Active) => RemovalReason::Expired,
                None => continue,
            };
            self.remove_session(s, reason, now, wall);
        }
        let due: Vec<SessionId> = self
            .pending
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(s, _)| *s)
            .collect();
        for s in due {
            if let Some(p) = self.pending.remove(&s) {
                // MaxDelayBeforeNewBCEAssign passed without a de-registration: a new
                // mobility session (RFC 5213 §5.4.1.2 rule 4, §5.4.1.3 rule 3).
                self.replay_pending(now, wall, p, Origin::NewSessionAfterWait);
            }
        }
        self.revocation_timeouts(now, wall);
        let mut tx = Vec::new();
        let mut ev = Vec::new();
        self.heartbeats
            .on_timeout(now, &mut |t| tx.push(t), &mut |e| ev.push(e));
        for t in tx {
            self.push(LmaOutput::Transmit(t));
        }
        for e in ev {
            self.event(LmaEvent::Peer(e));
        }
    }

    fn revocation_timeouts(&mut self, now: Instant, wall: WallClock) {
        let due: Vec<u16> = self
            .revocations
            .iter()
            .filter(|(_, r)| r.next_at <= now)
            .map(|(k, _)| *k)
            .collect();
        let max = ms(self.config.revocation.max_timeout_ms);
        for seq in due {
            let Some(r) = self.revocations.get_mut(&seq) else {
                continue;
            };
            if r.retries_left > 0 {
                r.retries_left -= 1;
                r.timeout = (r.timeout * 2).min(max);
                r.next_at = now + r.timeout;
                let t = Transmit {
                    src: self.config.address,
                    dst: r.mag,
                    payload: r.payload.clone(),
                };
                self.stats.bri_sent += 1;
                self.push(LmaOutput::Transmit(t));
            } else if let Some(r) = self.revocations.remove(&seq) {
                self.event(if r.peer {
                    LmaEvent::PeerRevocationEnded {
                        mag: r.mag,
                        status: None,
                        bindings: r.sessions.len(),
                    }
                } else {
                    LmaEvent::RevocationTimedOut {
                        mn_id: r.mn_id.clone(),
                    }
                });
                for s in r.sessions {
                    self.remove_session(s, RemovalReason::Revoked, now, wall);
                }
            }
        }
    }

    fn remove_session(
        &mut self,
        s: SessionId,
        reason: RemovalReason,
        now: Instant,
        wall: WallClock,
    ) {
        let Some(e) = self.cache.remove(s) else {
            return;
        };
        let record = record_of(&e, now, to_ms(wall));
        // While its profile lasts, the node's prefixes stay claimed for it.
        let keep = self.policy.lookup(&e.mn_id).is_some();
        let mut kept = Vec::new();
        for p in e.prefixes.as_slice() {
            self.push(LmaOutput::Datapath(DatapathCommand::RemoveDownlink {
                prefix: (*p).into(),
            }));
            if self.policy.is_pinned(p) {
                continue;
            }
            if keep {
                kept.push(*p);
            } else {
                self.prefixes.release(p);
            }
        }
        if !kept.is_empty() {
            self.kept.insert(
                (e.mn_id.to_string(), e.mn_link_layer_id),
                Prefixes::from_slice(&kept),
            );
        }
        if let Some(v4) = e.ipv4 {
            self.push(LmaOutput::Datapath(DatapathCommand::RemoveDownlink {
                prefix: v4.host().into(),
            }));
            self.release_ipv4(v4.address);
        }
        self.pending.remove(&s);
        for r in self.revocations.values_mut() {
            r.sessions.retain(|x| *x != s);
        }
        self.revocations
            .retain(|_, r| r.peer || !r.sessions.is_empty());
        self.mag_lost(&e.proxy_coa);
        self.event(LmaEvent::BindingRemoved { record, reason });
    }

    /// The node a prefix is kept for, if any.
    fn kept_for(&self, p: &Ipv6Net) -> Option<&str> {
        self.kept
            .iter()
            .find(|(_, ps)| ps.as_slice().contains(p))
            .map(|((m, _), _)| m.as_str())
    }

    /// The prefixes kept for the node's interface `ll` (or, without one, for the node), now
    /// its session's again.
    fn take_kept(&mut self, mn_id: &str, ll: Option<LinkLayerAddress>) -> Option<Prefixes> {
        let key = (mn_id.to_owned(), ll);
        let key = if self.kept.contains_key(&key) {
            key
        } else if ll.is_none() {
            self.kept.keys().find(|(m, _)| m == mn_id)?.clone()
        } else {
            return None;
        };
        let ps = self.kept.remove(&key)?;
        // One held by a session meanwhile (named in a PBU) is not handed out twice.
        if ps
            .as_slice()
            .iter()
            .any(|p| self.cache.by_prefix(p).is_some())
        {
            self.kept.insert(key.clone(), ps);
            self.release_kept(&key);
            return None;
        }
        Some(ps)
    }

    /// Prefixes a node named in its PBU are its session's now, no longer kept.
    fn unkeep(&mut self, mn_id: &str, named: &[Ipv6Net]) {
        for ps in (self.kept.iter_mut())
            .filter(|((m, _), _)| m == mn_id)
            .map(|(_, ps)| ps)
        {
            let rest: Vec<Ipv6Net> = (ps.as_slice().iter())
                .filter(|p| !named.contains(p))
                .copied()
                .collect();
            *ps = Prefixes::from_slice(&rest);
        }
        self.kept.retain(|_, ps| !ps.as_slice().is_empty());
    }

    /// Gives the kept prefixes of `key` back to their pools.
    fn release_kept(&mut self, key: &(String, Option<LinkLayerAddress>)) {
        if let Some(ps) = self.kept.remove(key) {
            for p in ps.as_slice() {
                if !self.policy.is_pinned(p) && self.cache.by_prefix(p).is_none() {
                    self.prefixes.release(p);
                }
            }
        }
    }

    /// A fresh prefix from the pools (§5.3.2 rules 1-2); when they are dry, the prefixes
    /// kept for nodes without a binding go back to them, one node at a time.
    fn allocate_prefix(&mut self) -> Option<Ipv6Net> {
        loop {
            let (policy, cache) = (&self.policy, &self.cache);
            if let Some(p) =
                (self.prefixes).allocate(|p| policy.is_pinned(p) || cache.by_prefix(p).is_some())
            {
                return Some(p);
            }
            let key = self.kept.keys().next()?.clone();
            self.release_kept(&key);
        }
    }

    fn mag_gained(&mut self, mag: Ipv6Addr, now: Instant) {
        self.mags_gained(mag, 1, now);
    }

    /// `n` more sessions through `mag`; the first makes it a heartbeat peer.
    fn mags_gained(&mut self, mag: Ipv6Addr, n: u32, now: Instant) {
        let sessions = self.mag_sessions.entry(mag).or_default();
        if *sessions == 0 && n > 0 {
            self.heartbeats.add_peer(mag, now);
        }
        *sessions += n;
    }

    fn mag_lost(&mut self, mag: &Ipv6Addr) {
        if let Some(n) = self.mag_sessions.get_mut(mag) {
            *n -= 1;
            if *n == 0 {
                self.mag_sessions.remove(mag);
                self.heartbeats.remove_peer(mag);
            }
        }
    }

    /// MAGs with sessions, and how many each has.
    pub fn mags(&self) -> impl Iterator<Item = (&Ipv6Addr, &u32)> {
        self.mag_sessions.iter()
    }

    pub fn is_mag_reachable(&self, mag: &Ipv6Addr) -> bool {
        self.heartbeats.is_reachable(mag)
    }

    /// Mobility sessions at `mag` (0 when none).
    pub fn mag_session_count(&self, mag: &Ipv6Addr) -> u32 {
        self.mag_sessions.get(mag).copied().unwrap_or(0)
    }

    /// The Restart Counter `mag` last sent in a heartbeat response (RFC 5847 §3.2); `None`
    /// before its first answer, and for a MAG without sessions (no heartbeats to it).
    pub fn mag_restart_counter(&self, mag: &Ipv6Addr) -> Option<u32> {
        self.heartbeats.peer_restart_counter(mag)
    }
}

/// Options of one PBA, on the stack for the usual handful of prefixes.
struct PbaOptions<'a> {
    inline: [MobilityOption<'a>; 12],
    len: usize,
    spill: Vec<MobilityOption<'a>>,
}

impl<'a> PbaOptions<'a> {
    fn push(&mut self, o: MobilityOption<'a>) {
        if self.spill.is_empty() && self.len < self.inline.len() {
            self.inline[self.len] = o;
            self.len += 1;
        } else {
            if self.spill.is_empty() {
                self.spill.extend_from_slice(&self.inline[..self.len]);
            }
            self.spill.push(o);
        }
    }

    fn as_slice(&self) -> &[MobilityOption<'a>] {
        if self.spill.is_empty() {
            &self.inline[..self.len]
        } else {
            &self.spill
        }
    }
}

/// The IPv4 options of a PBA (RFC 5844 §3.1.2.6).
enum Ipv4Options {
    /// The session's address in an IPv4 Home Address Reply (status 0) and its default
    /// router in an IPv4 Default-Router Address option.
    Accepted(Ipv4HomeAddress),
    /// An IPv4 Home Address Reply alone: status, Prefix-len, address.
    Refused(Ipv4HoaStatus, u8, Ipv4Addr),
}

fn push_ipv4_options(o: &mut PbaOptions<'_>, v4: Option<Ipv4Options>) {
    match v4 {
        Some(Ipv4Options::Accepted(v4)) => {
            o.push(MobilityOption::Ipv4HomeAddressReply {
                status: Ipv4HoaStatus::Success,
                prefix_len: v4.prefix_len,
                address: v4.address,
            });
            // RFC 5844 §3.1.2.6: present exactly when the PBU is accepted.
            o.push(MobilityOption::Ipv4DefaultRouterAddress(v4.default_router));
            // RFC 5844 §3.2.3.2: without S=1 the MAG must relay DHCP; here it serves it.
            o.push(MobilityOption::Ipv4DhcpSupportMode { server: true });
        }
        Some(Ipv4Options::Refused(status, prefix_len, address)) => {
            o.push(MobilityOption::Ipv4HomeAddressReply {
                status,
                prefix_len,
                address,
            });
        }
        None => {}
    }
}

/// The PBA's options (RFC 5213 §5.3.6).
fn pba_options<'a>(
    reply: &Reply<'a>,
    prefixes: &'a [Ipv6Net],
    timestamp: Option<Timestamp>,
    link_local: Option<Ipv6Addr>,
) -> PbaOptions<'a> {
    let mut o = PbaOptions {
        inline: [MobilityOption::RestartCounter(0); 12],
        len: 0,
        spill: Vec::new(),
    };
    o.push(MobilityOption::MobileNodeIdentifier {
        subtype: reply.mn_id_subtype,
        id: reply.mn_id,
    });
    for p in prefixes {
        o.push(MobilityOption::HomeNetworkPrefix(*p));
    }
    o.push(MobilityOption::HandoffIndicator(reply.handoff_indicator));
    o.push(MobilityOption::AccessTechnologyType(
        reply.access_technology_type,
    ));
    if let Some(ts) = timestamp {
        o.push(MobilityOption::Timestamp(ts));
    }
    if let Some(ll) = reply.mn_link_layer_id {
        o.push(MobilityOption::MnLinkLayerIdentifier(ll));
    }
    if let Some(a) = link_local {
        o.push(MobilityOption::LinkLocalAddress(a));
    }
    o
}

fn to_ms(w: WallClock) -> u64 {
    u64::try_from(w.since_epoch().as_millis()).unwrap_or(u64::MAX)
}

fn record_of(e: &BindingCacheEntry, now: Instant, wall_ms: u64) -> BindingRecord {
    let wall_of = |t: Instant| -> u64 {
        if t >= now {
            wall_ms.saturating_add((t - now).as_millis() as u64)
        } else {
            wall_ms.saturating_sub((now - t).as_millis() as u64)
        }
    };
    BindingRecord {
        mn_id: e.mn_id.to_string(),
        home_network_prefixes: e.prefixes.as_slice().to_vec(),
        proxy_coa: e.proxy_coa,
        access_technology_type: e.access_technology_type.value(),
        handoff_indicator: e.handoff_indicator.value(),
        mn_link_layer_id: e.mn_link_layer_id,
        link_local_address: e.link_local_address,
        lifetime_s: e.lifetime_s,
        registered_at_ms: wall_of(e.registered_at),
        updated_at_ms: wall_of(e.updated_at),
        expires_at_ms: wall_of(e.expires_at),
        delete_at_ms: match e.state() {
            BindingState::Deregistering => Some(wall_of(e.expires_at)),
            BindingState::Active => None,
        },
        last_timestamp: e.ordering.timestamp().map(|t| t.0),
        last_sequence: e.ordering.sequence.0,
        handover_count: e.handover_count,
        last_handover_gap_ms: e.last_handover_gap().map(|d| d.as_millis() as u64),
        ipv4_home_address: e.ipv4,
    }
}

/// A session's home addresses as the datapath routes them: its prefixes, and its IPv4 home
/// address as a host route (RFC 5844 §3.1.2.2).
fn home_nets(e: &BindingCacheEntry) -> impl Iterator<Item = IpNet> + '_ {
    e.prefixes
        .as_slice()
        .iter()
        .map(|p| IpNet::from(*p))
        .chain(e.ipv4.map(|v4| IpNet::from(v4.host())))
}
