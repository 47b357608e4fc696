//! The mobile access gateway as a pure state machine (RFC 5213 §6, RFC 5846 §8.2, RFC 5847,
//! RFC 7077 §6).
//!
//! Inputs: attach and detach of mobile nodes on access links, Router Solicitations, messages
//! from the LMA, clock ticks. Outputs: Mobility Headers to send, datapath commands, Router
//! Advertisements to send to a node, and events.

use core::time::Duration;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::Ipv6Addr;

use ipnet::Ipv6Net;

use crate::config::{LinkLocalMode, MagConfig, MobileNodeProfile, ReplayProtection};
use crate::heartbeat::{Heartbeats, PeerEvent};
use crate::output::{AccessLink, DataplaneCommand, RouterAdvertisement, Transmit};
use crate::policy::{PolicyError, PolicyStore};
use crate::rng::Rng;
use crate::time::{Instant, ms, secs};
use crate::types::LinkLayerAddress;
use crate::wire::{
    AccessTechnologyType, BindingRevocation, BindingRevocationAck, BindingRevocationIndication,
    BindingUpdate, BraStatus, BuFlags, HandoffIndicator, Lifetime, MN_ID_SUBTYPE_NAI, Message,
    MobilityOption, NotificationReason, Options, ProxyBindingAck, RevocationFlags,
    RevocationTrigger, SequenceNumber, Status, Timestamp, UpaStatus, UpdateNotification,
    UpdateNotificationAck, UpnFlags, WallClock,
};

mod fast;

pub use fast::{FastError, FastHandover, FastPhase, FastRole};

use crate::config::FastHandoverMode;

/// A mobile node appeared on an access link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attach {
    pub link_layer: LinkLayerAddress,
    pub link: AccessLink,
    /// Access technology of the link; the node's profile, then IEEE 802.3, when not known.
    pub access_technology_type: Option<AccessTechnologyType>,
    /// What the access network knows about this attachment (RFC 5213 §6.9.1.1 rule 4);
    /// "handoff state unknown" when it knows nothing.
    pub handoff_hint: Option<HandoffIndicator>,
}

/// What happened, for logs, metrics and the gRPC API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MagEvent {
    /// A node with no profile attached: it gets no service and no Router Advertisement.
    UnknownNode {
        link_layer: LinkLayerAddress,
        link: AccessLink,
    },
    /// The LMA accepted the node's registration.
    Registered {
        mn_id: String,
        prefixes: Vec<Ipv6Net>,
        /// From the attach to the accepting PBA.
        after: Duration,
    },
    Refreshed {
        mn_id: String,
    },
    /// The LMA refused the registration; the node gets no service.
    Rejected {
        mn_id: String,
        status: Status,
    },
    /// No PBA after every retransmission (RFC 5213 §6.9.4).
    GaveUp {
        mn_id: String,
    },
    /// The binding ended: the node left and its de-registration completed.
    Deregistered {
        mn_id: String,
    },
    /// The binding ran out before a refresh was accepted.
    Expired {
        mn_id: String,
    },
    /// The LMA revoked the binding (RFC 5846).
    Revoked {
        mn_id: String,
        trigger: RevocationTrigger,
    },
    /// A PBA was ignored (RFC 5213 §6.9.1.2 rules 5 and 6).
    PbaIgnored {
        mn_id: String,
        reason: &'static str,
    },
    Peer(PeerEvent),
    /// A fast handover (RFC 5949) began.
    HandoverStarted {
        mn_id: String,
        mode: FastHandoverMode,
        role: FastRole,
        peer: Ipv6Addr,
    },
    /// A fast handover completed: as NMAG, the LMA accepted the registration; as PMAG, the
    /// NMAG said so.
    HandoverCompleted {
        mn_id: String,
        mode: FastHandoverMode,
        role: FastRole,
        peer: Ipv6Addr,
        took: Duration,
    },
    /// A fast handover was abandoned; the node is served as without PFMIPv6.
    HandoverFailed {
        mn_id: String,
        mode: FastHandoverMode,
        role: FastRole,
        reason: &'static str,
    },
    /// A message was dropped: malformed, bad checksum, or not for a MAG.
    Dropped {
        from: Ipv6Addr,
        reason: String,
    },
}

/// One thing for the daemon to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MagOutput {
    Transmit(Transmit),
    Dataplane(DataplaneCommand),
    RouterAdvertisement(RouterAdvertisement),
    Event(MagEvent),
}

/// Where a binding update list entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BulState {
    /// Waiting for the PBA of the initial registration.
    Registering,
    /// Registered.
    Bound,
    /// Registered, and a refresh is outstanding.
    Refreshing,
    /// De-registration sent; the entry goes on its PBA or after INITIAL_BINDACK_TIMEOUT.
    Deregistering,
    /// New MAG of a predictive fast handover: the node's context came in a Handover Initiate;
    /// its packets are buffered until it attaches (RFC 5949 §4.1 step (f)).
    Expected,
    /// Refused by the LMA; no service until `until` (or an administrative change).
    Denied {
        status: Status,
        until: Option<Instant>,
    },
}

/// A binding update list entry (RFC 5213 §6.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulEntry {
    pub mn_id: String,
    pub link_layer: LinkLayerAddress,
    pub link: AccessLink,
    pub access_technology_type: AccessTechnologyType,
    pub prefixes: Vec<Ipv6Net>,
    /// The link-local address the MAG uses towards this node.
    pub link_local: Ipv6Addr,
    pub local_routing: bool,
    pub state: BulState,
    pub lifetime: Duration,
    pub attached_at: Instant,
    pub registered_at: Option<Instant>,
    pub expires_at: Option<Instant>,
    /// Sequence number of the outstanding or last PBU.
    pub sequence: SequenceNumber,
    /// Status of the last PBA for this node.
    pub last_status: Option<Status>,
    /// Handoff Indicator of the last PBU sent.
    pub last_handoff_indicator: HandoffIndicator,
    /// A fast handover (RFC 5949) in progress.
    pub fast: Option<FastHandover>,
    handoff_hint: HandoffIndicator,
    transmissions: u32,
    retransmit_timeout: Duration,
    /// When the entry's timer fires: retransmission, refresh, expiry or denial end.
    deadline: Option<Instant>,
    next_ra_at: Option<Instant>,
}

impl BulEntry {
    pub fn is_bound(&self) -> bool {
        matches!(self.state, BulState::Bound | BulState::Refreshing)
    }

    /// Retransmissions of the current PBU transaction.
    pub fn retransmissions(&self) -> u32 {
        self.transmissions.saturating_sub(1)
    }
}

/// A registered node as the MAG keeps it across its own restarts: enough to take the binding
/// back without the node noticing (an upgrade is not a detach).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SavedBinding {
    pub mn_id: String,
    pub link_layer: LinkLayerAddress,
    /// Access link index when saved.
    pub link: u32,
    pub access_technology_type: u8,
    pub prefixes: Vec<Ipv6Net>,
    pub link_local: Ipv6Addr,
    pub local_routing: bool,
}

/// Counters for metrics.
#[derive(Debug, Clone)]
pub struct MagStats {
    pub pbu_sent: u64,
    pub pbu_retransmitted: u64,
    pub pba_received: u64,
    /// PBAs received, by status value.
    pub pba_by_status: [u64; 256],
    pub ra_sent: u64,
    pub dropped: u64,
}

impl Default for MagStats {
    fn default() -> Self {
        MagStats {
            pbu_sent: 0,
            pbu_retransmitted: 0,
            pba_received: 0,
            pba_by_status: [0; 256],
            ra_sent: 0,
            dropped: 0,
        }
    }
}

/// The mobile access gateway.
#[derive(Debug)]
pub struct Mag {
    config: MagConfig,
    policy: PolicyStore,
    bul: HashMap<String, BulEntry>,
    by_link_layer: HashMap<LinkLayerAddress, String>,
    schedule: BTreeSet<(Instant, String)>,
    heartbeats: Heartbeats,
    outputs: VecDeque<MagOutput>,
    rng: Rng,
    /// The per-MAG counter used as Sequence Number with timestamps (RFC 5213 §6.9.1.1 r. 6).
    next_sequence: SequenceNumber,
    stats: MagStats,
    /// Fast-handover timers, by node.
    fast_schedule: BTreeSet<(Instant, String)>,
    /// Reactive fast handover: nodes announced by the access network, with their previous
    /// MAG, until when the announcement holds.
    expected: HashMap<LinkLayerAddress, (Ipv6Addr, Instant)>,
    next_hi_seq: SequenceNumber,
}

/// Hold-down after a TIMESTAMP_MISMATCH or a give-up before a node may try again.
const RETRY_HOLD_DOWN: Duration = Duration::from_secs(30);

impl Mag {
    /// `restart_counter` is this MAG's persistent counter (RFC 5847 §3.2); `seed` feeds
    /// sequence numbers.
    pub fn new(config: MagConfig, restart_counter: u32, seed: u64) -> Result<Self, PolicyError> {
        let mut rng = Rng::new(seed);
        let hb = &config.domain.heartbeat;
        let heartbeats = Heartbeats::new(
            config.proxy_coa,
            secs(hb.interval_s),
            hb.missing_allowed,
            restart_counter,
            rng.next_u32(),
        );
        let mut policy = PolicyStore::new();
        for p in &config.mobile_nodes {
            policy.upsert(p.clone())?;
        }
        let next_sequence = SequenceNumber(rng.next_u16());
        let next_hi_seq = SequenceNumber(rng.next_u16());
        Ok(Mag {
            config,
            policy,
            bul: HashMap::new(),
            by_link_layer: HashMap::new(),
            schedule: BTreeSet::new(),
            heartbeats,
            outputs: VecDeque::new(),
            rng,
            next_sequence,
            stats: MagStats::default(),
            fast_schedule: BTreeSet::new(),
            expected: HashMap::new(),
            next_hi_seq,
        })
    }

    pub fn config(&self) -> &MagConfig {
        &self.config
    }

    pub fn proxy_coa(&self) -> Ipv6Addr {
        self.config.proxy_coa
    }

    pub fn stats(&self) -> &MagStats {
        &self.stats
    }

    pub fn policy(&self) -> &PolicyStore {
        &self.policy
    }

    /// The binding update list.
    pub fn bindings(&self) -> impl Iterator<Item = &BulEntry> {
        self.bul.values()
    }

    pub fn binding(&self, mn_id: &str) -> Option<&BulEntry> {
        self.bul.get(mn_id)
    }

    pub fn binding_by_link_layer(&self, ll: &LinkLayerAddress) -> Option<&BulEntry> {
        self.by_link_layer.get(ll).and_then(|id| self.bul.get(id))
    }

    pub fn poll_output(&mut self) -> Option<MagOutput> {
        self.outputs.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.schedule.first().map(|(t, _)| *t),
            self.fast_schedule.first().map(|(t, _)| *t),
            self.heartbeats.next_deadline(),
            self.next_ra_at(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn push(&mut self, o: MagOutput) {
        self.outputs.push_back(o);
    }

    fn event(&mut self, e: MagEvent) {
        self.push(MagOutput::Event(e));
    }

    // ---------------------------------------------------------------- policy

    /// Adds or replaces a profile (from the configuration or the LMA's policy service).
    pub fn upsert_profile(&mut self, p: MobileNodeProfile) -> Result<(), PolicyError> {
        self.policy.upsert(p).map(|_| ())
    }

    /// Removes a profile; a node attached under it loses service.
    pub fn remove_profile(&mut self, now: Instant, wall: WallClock, mn_id: &str) {
        if self.policy.remove(mn_id).is_some()
            && let Some(ll) = self.bul.get(mn_id).map(|e| e.link_layer)
        {
            self.handle_detach(now, wall, &ll);
        }
    }

    // ---------------------------------------------------------------- access side

    /// A node attached (link up, association, or an API call): identify it and register it
    /// (RFC 5213 §6.9.1.1).
    pub fn handle_attach(&mut self, now: Instant, wall: WallClock, a: Attach) {
        if let Some(id) = self.by_link_layer.get(&a.link_layer).cloned()
            && self
                .bul
                .get(&id)
                .is_some_and(|e| e.state == BulState::Expected)
        {
            self.arrived_with_context(now, wall, &id, a.link);
            return;
        }
        let Some(profile) = self.policy.by_link_layer(&a.link_layer) else {
            self.event(MagEvent::UnknownNode {
                link_layer: a.link_layer,
                link: a.link,
            });
            return;
        };
        let mn_id = profile.mn_id.to_string();
        let att = a
            .access_technology_type
            .or(profile
                .access_technology_type
                .map(AccessTechnologyType::from))
            .unwrap_or(AccessTechnologyType::Ieee8023);
        let local_routing = profile
            .local_routing
            .unwrap_or(self.config.domain.enable_mag_local_routing);
        if let Some(e) = self.bul.get_mut(&mn_id) {
            match e.state {
                BulState::Denied {
                    until: Some(until), ..
                } if until <= now => {}
                BulState::Denied { .. } => return,
                BulState::Deregistering => {}
                _ if e.link == a.link => {
                    // Already known here (a repeated link event or solicitation).
                    if e.is_bound() {
                        self.send_ra(now, &mn_id);
                    }
                    return;
                }
                _ => {
                    // Same node on another access link of this MAG: move its route.
                    e.link = a.link;
                    if e.is_bound() {
                        let cmds: Vec<_> = e
                            .prefixes
                            .iter()
                            .map(|p| DataplaneCommand::SetAccessRoute {
                                prefix: *p,
                                link: a.link,
                                local_routing,
                            })
                            .collect();
                        for c in cmds {
                            self.push(MagOutput::Dataplane(c));
                        }
                        self.send_ra(now, &mn_id);
                    }
                    return;
                }
            }
        }
        let link_local = match &self.config.domain.link_local {
            LinkLocalMode::Fixed { address, .. } => *address,
            LinkLocalMode::LmaGenerated { .. } => Ipv6Addr::UNSPECIFIED,
        };
        let requested = profile.home_network_prefixes.clone();
        let mut entry = self.new_entry(&mn_id, a.link_layer, a.link, att, local_routing, now);
        entry.prefixes = requested;
        entry.link_local = link_local;
        let previous_mag = self
            .expected
            .remove(&a.link_layer)
            .filter(|(_, until)| *until > now)
            .map(|(m, _)| m)
            .filter(|_| self.config.domain.fast_handover.mode != FastHandoverMode::Off);
        entry.handoff_hint = match (previous_mag, a.handoff_hint) {
            // The access network knows the node comes from another MAG (RFC 5213 §6.9.1.1
            // rule 4).
            (Some(_), _) => HandoffIndicator::HandoffBetweenMags,
            (None, Some(h)) => h,
            (None, None) => HandoffIndicator::HandoffStateUnknown,
        };
        self.unschedule(&mn_id);
        self.by_link_layer.insert(a.link_layer, mn_id.clone());
        self.bul.insert(mn_id.clone(), entry);
        self.heartbeats.add_peer(self.config.lma_address, now);
        match previous_mag {
            // RFC 5949 Figure 3: HI / HAck first, then the PBU (steps (g)-(h)), so that the
            // previous MAG's packets reach the node before the LMA sends it new ones.
            Some(pmag) => self.start_reactive(now, &mn_id, pmag),
            None => self.send_pbu(now, wall, &mn_id, false),
        }
    }

    /// A reactive NMAG registers once the PMAG forwards (or does not answer).
    pub(super) fn register_if_waiting(&mut self, now: Instant, wall: WallClock, mn_id: &str) {
        if self
            .bul
            .get(mn_id)
            .is_some_and(|e| e.state == BulState::Registering && e.transmissions == 0)
        {
            self.send_pbu(now, wall, mn_id, false);
        }
    }

    /// A fresh entry in state Registering.
    fn new_entry(
        &mut self,
        mn_id: &str,
        link_layer: LinkLayerAddress,
        link: AccessLink,
        att: AccessTechnologyType,
        local_routing: bool,
        now: Instant,
    ) -> BulEntry {
        let link_local = match &self.config.domain.link_local {
            LinkLocalMode::Fixed { address, .. } => *address,
            LinkLocalMode::LmaGenerated { .. } => Ipv6Addr::UNSPECIFIED,
        };
        BulEntry {
            mn_id: mn_id.to_owned(),
            link_layer,
            link,
            access_technology_type: att,
            prefixes: Vec::new(),
            link_local,
            local_routing,
            state: BulState::Registering,
            lifetime: Duration::ZERO,
            attached_at: now,
            registered_at: None,
            expires_at: None,
            sequence: SequenceNumber(self.rng.next_u16()),
            last_status: None,
            last_handoff_indicator: HandoffIndicator::Reserved,
            fast: None,
            handoff_hint: HandoffIndicator::HandoffStateUnknown,
            transmissions: 0,
            retransmit_timeout: ms(self.config.timers.initial_bindack_timeout_ms),
            deadline: None,
            next_ra_at: None,
        }
    }

    /// The node left the access link: de-register it (RFC 5213 §6.9.1.4), unless a fast
    /// handover takes it over (see [`fast`]).
    pub fn handle_detach(&mut self, now: Instant, wall: WallClock, ll: &LinkLayerAddress) {
        let Some(mn_id) = self.by_link_layer.get(ll).cloned() else {
            return;
        };
        if self.departed(now, &mn_id) {
            return;
        }
        self.detach_now(now, wall, ll);
    }

    fn detach_now(&mut self, now: Instant, wall: WallClock, ll: &LinkLayerAddress) {
        let Some(mn_id) = self.by_link_layer.get(ll).cloned() else {
            return;
        };
        let Some(e) = self.bul.get_mut(&mn_id) else {
            return;
        };
        match e.state {
            BulState::Bound | BulState::Refreshing => {
                let prefixes = e.prefixes.clone();
                let link = e.link;
                e.state = BulState::Deregistering;
                e.transmissions = 0;
                self.remove_routes(link, &prefixes);
                self.send_pbu(now, wall, &mn_id, true);
            }
            BulState::Registering => {
                // Never registered: a de-registration still clears whatever the LMA may
                // have created from a PBU whose PBA we have not seen.
                e.state = BulState::Deregistering;
                e.transmissions = 0;
                self.send_pbu(now, wall, &mn_id, true);
            }
            BulState::Deregistering | BulState::Expected => {}
            BulState::Denied { .. } => self.forget(&mn_id),
        }
    }

    /// A Router Solicitation from `ll` on `link` (RFC 5213 §6.9.2): answered at once when the
    /// node is registered; an unknown sender is treated as an attachment.
    pub fn handle_router_solicitation(
        &mut self,
        now: Instant,
        wall: WallClock,
        link: AccessLink,
        ll: LinkLayerAddress,
    ) {
        match self
            .binding_by_link_layer(&ll)
            .map(|e| (e.mn_id.clone(), e.is_bound(), e.link))
        {
            Some((mn_id, true, l)) if l == link => self.send_ra(now, &mn_id),
            Some((_, _, l)) if l == link => {}
            _ => self.handle_attach(
                now,
                wall,
                Attach {
                    link_layer: ll,
                    link,
                    access_technology_type: None,
                    handoff_hint: None,
                },
            ),
        }
    }

    // ---------------------------------------------------------------- signalling

    /// Sends (or re-sends) the entry's PBU: registration, refresh or de-registration. Every
    /// transmission carries a fresh timestamp and a new sequence number (RFC 5213 §6.9.4).
    fn send_pbu(&mut self, now: Instant, wall: WallClock, mn_id: &str, deregister: bool) {
        let use_ts = self.config.domain.replay_protection == ReplayProtection::Timestamp;
        let requested_lifetime = Lifetime::from_secs(self.config.timers.requested_lifetime_s);
        let lla_mode_generated = matches!(
            self.config.domain.link_local,
            LinkLocalMode::LmaGenerated { .. }
        );
        let seq = if use_ts {
            let s = self.next_sequence;
            self.next_sequence = s.next();
            s
        } else {
            self.bul
                .get(mn_id)
                .map(|e| e.sequence.next())
                .unwrap_or_default()
        };
        let lma = self.config.lma_address;
        let src = self.config.proxy_coa;
        let max_timeout = ms(self.config.timers.max_bindack_timeout_ms);
        let initial = ms(self.config.timers.initial_bindack_timeout_ms);
        let Some(e) = self.bul.get_mut(mn_id) else {
            return;
        };
        e.sequence = seq;
        let hi = match e.state {
            BulState::Deregistering => HandoffIndicator::HandoffStateUnknown,
            BulState::Bound | BulState::Refreshing => HandoffIndicator::HandoffStateNotChanged,
            _ => e.handoff_hint,
        };
        e.last_handoff_indicator = hi;
        let all_zero = [Ipv6Net::default()];
        let prefixes: &[Ipv6Net] = if e.prefixes.is_empty() {
            &all_zero
        } else {
            &e.prefixes
        };
        let ts = Timestamp::from_wall_clock(wall);
        let mut opts: Vec<MobilityOption<'_>> = Vec::with_capacity(8);
        opts.push(MobilityOption::MobileNodeIdentifier {
            subtype: MN_ID_SUBTYPE_NAI,
            id: e.mn_id.as_bytes(),
        });
        opts.extend(
            prefixes
                .iter()
                .map(|p| MobilityOption::HomeNetworkPrefix(*p)),
        );
        opts.push(MobilityOption::HandoffIndicator(hi));
        opts.push(MobilityOption::AccessTechnologyType(
            e.access_technology_type,
        ));
        if use_ts {
            opts.push(MobilityOption::Timestamp(ts));
        }
        opts.push(MobilityOption::MnLinkLayerIdentifier(
            e.link_layer.as_bytes(),
        ));
        if lla_mode_generated {
            // RFC 5213 §6.9.1.1 rule 9: ALL_ZERO asks the LMA for the address.
            opts.push(MobilityOption::LinkLocalAddress(e.link_local));
        }
        let m = Message::BindingUpdate(BindingUpdate {
            sequence: seq,
            flags: BuFlags::A | BuFlags::P,
            lifetime: if deregister {
                Lifetime::ZERO
            } else {
                requested_lifetime
            },
            options: Options::List(&opts),
        });
        let t = crate::emit(&m, src, lma);
        let deadline = if deregister || e.state == BulState::Deregistering {
            // RFC 5213 §6.9.1.4: the entry goes after INITIAL_BINDACK_TIMEOUT at most.
            now + initial
        } else {
            let d = now + e.retransmit_timeout;
            e.retransmit_timeout = (e.retransmit_timeout * 2).min(max_timeout);
            d
        };
        if e.transmissions > 0 {
            self.stats.pbu_retransmitted += 1;
        }
        e.transmissions += 1;
        self.stats.pbu_sent += 1;
        self.set_deadline(mn_id, Some(deadline));
        if let Some(t) = t {
            self.push(MagOutput::Transmit(t));
        }
    }

    /// Handles a Mobility Header from `src`, verifying its checksum.
    pub fn handle_message(
        &mut self,
        now: Instant,
        wall: WallClock,
        src: Ipv6Addr,
        dst: Ipv6Addr,
        bytes: &[u8],
    ) {
        match Message::parse_verified(bytes, &src, &dst) {
            Ok(m) => self.dispatch(now, wall, src, dst, m),
            Err(e) => self.drop_message(src, e.to_string()),
        }
    }

    /// Like [`Mag::handle_message`] for a checksum the kernel already verified.
    pub fn handle_message_trusted(
        &mut self,
        now: Instant,
        wall: WallClock,
        src: Ipv6Addr,
        dst: Ipv6Addr,
        bytes: &[u8],
    ) {
        match Message::parse_bytes(bytes) {
            Ok(m) => self.dispatch(now, wall, src, dst, m),
            Err(e) => self.drop_message(src, e.to_string()),
        }
    }

    fn drop_message(&mut self, from: Ipv6Addr, reason: String) {
        self.stats.dropped += 1;
        self.event(MagEvent::Dropped { from, reason });
    }

    fn dispatch(
        &mut self,
        now: Instant,
        wall: WallClock,
        src: Ipv6Addr,
        dst: Ipv6Addr,
        m: Message<'_>,
    ) {
        let from_lma = src == self.config.lma_address;
        match m {
            Message::BindingAck(ba) if from_lma => match ProxyBindingAck::new(&ba) {
                Ok(pba) => self.on_pba(now, wall, &pba),
                Err(e) => self.drop_message(src, e.to_string()),
            },
            Message::Heartbeat(hb) => {
                let mut tx = Vec::new();
                let mut ev = Vec::new();
                self.heartbeats
                    .on_message(src, &hb, &mut |t| tx.push(t), &mut |e| ev.push(e));
                for t in tx {
                    self.push(MagOutput::Transmit(t));
                }
                for e in ev {
                    self.on_peer_event(now, wall, e);
                }
            }
            Message::BindingRevocation(BindingRevocation::Indication(bri)) if from_lma => {
                self.on_bri(now, src, dst, &bri);
            }
            Message::UpdateNotification(upn) if from_lma => self.on_upn(now, wall, src, dst, &upn),
            Message::HandoverInitiate(hi) if !from_lma => self.on_hi(now, wall, src, dst, &hi),
            Message::HandoverAck(hack) if !from_lma => self.on_hack(now, wall, src, &hack),
            other => self.drop_message(src, format!("{} is not for this MAG", other.mh_type())),
        }
    }

    fn on_peer_event(&mut self, now: Instant, wall: WallClock, e: PeerEvent) {
        if let PeerEvent::Restarted { peer, .. } = e
            && peer == self.config.lma_address
        {
            // RFC 5847 §3.2: the LMA may have lost state; re-register every node.
            self.reregister_all(now, wall);
        }
        self.event(MagEvent::Peer(e));
    }

    /// Sends a refresh for every bound node (after an LMA restart, or on request).
    pub fn reregister_all(&mut self, now: Instant, wall: WallClock) {
        let ids: Vec<String> = self
            .bul
            .values()
            .filter(|e| e.is_bound() && !is_leaving(e))
            .map(|e| e.mn_id.clone())
            .collect();
        for id in ids {
            self.start_refresh(now, wall, &id);
        }
    }

    fn start_refresh(&mut self, now: Instant, wall: WallClock, mn_id: &str) {
        let initial = ms(self.config.timers.initial_bindack_timeout_ms);
        if let Some(e) = self.bul.get_mut(mn_id) {
            e.state = BulState::Refreshing;
            e.transmissions = 0;
            e.retransmit_timeout = initial;
        }
        self.send_pbu(now, wall, mn_id, false);
    }

    /// RFC 5213 §6.9.1.2.
    fn on_pba(&mut self, now: Instant, wall: WallClock, pba: &ProxyBindingAck<'_>) {
        self.stats.pba_received += 1;
        let Some(id) = pba.opts.nai().and_then(|b| core::str::from_utf8(b).ok()) else {
            return;
        };
        let mn_id = id.to_owned();
        let Some(e) = self.bul.get(&mn_id) else {
            return;
        };
        // Rule 5: it must answer the outstanding PBU (by sequence number, or for a sequence
        // number error, by the node).
        let waiting = matches!(
            e.state,
            BulState::Registering | BulState::Refreshing | BulState::Deregistering
        );
        if !waiting
            || (pba.sequence != e.sequence && pba.status != Status::SequenceNumberOutOfWindow)
        {
            return self.event(MagEvent::PbaIgnored {
                mn_id,
                reason: "does not match an outstanding PBU",
            });
        }
        // Rule 6: the echoed options must be ours.
        let echo_ok = pba
            .opts
            .access_technology_type
            .is_none_or(|a| a == e.access_technology_type)
            && pba
                .opts
                .mn_link_layer_id
                .is_none_or(|l| l == e.link_layer.as_bytes());
        if !echo_ok {
            return self.event(MagEvent::PbaIgnored {
                mn_id,
                reason: "echoed options differ from the PBU",
            });
        }
        if e.state == BulState::Deregistering {
            // RFC 5213 §6.9.1.4: done, whatever the status.
            self.forget(&mn_id);
            self.event(MagEvent::Deregistered { mn_id });
            return;
        }
        self.stats.pba_by_status[usize::from(pba.status.value())] += 1;
        if let Some(e) = self.bul.get_mut(&mn_id) {
            e.last_status = Some(pba.status);
        }
        if pba.status.is_accepted() {
            return self.accepted(now, wall, &mn_id, pba);
        }
        self.refused(now, wall, &mn_id, pba);
    }

    /// The registered nodes, to save across a restart of the MAG.
    pub fn save(&self) -> Vec<SavedBinding> {
        let mut v: Vec<SavedBinding> = self
            .bul
            .values()
            .filter(|e| e.is_bound())
            .map(|e| SavedBinding {
                mn_id: e.mn_id.clone(),
                link_layer: e.link_layer,
                link: e.link.0,
                access_technology_type: e.access_technology_type.value(),
                prefixes: e.prefixes.clone(),
                link_local: e.link_local,
                local_routing: e.local_routing,
            })
            .collect();
        v.sort_by(|a, b| a.mn_id.cmp(&b.mn_id));
        v
    }

    /// Takes back bindings saved before a restart: each node is served at once (routes and
    /// a Router Advertisement, so it never notices) and re-registered with the LMA (Handoff
    /// Indicator 5). A node whose profile is gone is skipped. Returns how many were restored.
    pub fn restore(&mut self, now: Instant, wall: WallClock, saved: &[SavedBinding]) -> usize {
        let lma = self.config.lma_address;
        let mut n = 0;
        for s in saved {
            if self.policy.by_link_layer(&s.link_layer).is_none() || s.prefixes.is_empty() {
                continue;
            }
            let entry = BulEntry {
                mn_id: s.mn_id.clone(),
                link_layer: s.link_layer,
                link: AccessLink(s.link),
                access_technology_type: s.access_technology_type.into(),
                prefixes: s.prefixes.clone(),
                link_local: s.link_local,
                local_routing: s.local_routing,
                state: BulState::Bound,
                lifetime: Duration::ZERO,
                attached_at: now,
                registered_at: Some(now),
                // Until the LMA confirms, the binding is assumed to last a retransmission
                // cycle.
                expires_at: Some(now + ms(self.config.timers.max_bindack_timeout_ms) * 2),
                sequence: SequenceNumber(self.rng.next_u16()),
                last_status: None,
                last_handoff_indicator: HandoffIndicator::HandoffStateNotChanged,
                fast: None,
                handoff_hint: HandoffIndicator::HandoffStateNotChanged,
                transmissions: 0,
                retransmit_timeout: ms(self.config.timers.initial_bindack_timeout_ms),
                deadline: None,
                next_ra_at: None,
            };
            self.by_link_layer.insert(s.link_layer, s.mn_id.clone());
            self.bul.insert(s.mn_id.clone(), entry);
            for p in &s.prefixes {
                self.push(MagOutput::Dataplane(DataplaneCommand::SetUplink {
                    prefix: *p,
                    peer: lma,
                }));
                self.push(MagOutput::Dataplane(DataplaneCommand::SetAccessRoute {
                    prefix: *p,
                    link: AccessLink(s.link),
                    local_routing: s.local_routing,
                }));
            }
            self.send_ra(now, &s.mn_id);
            self.heartbeats.add_peer(lma, now);
            self.start_refresh(now, wall, &s.mn_id);
            n += 1;
        }
        n
    }

    fn accepted(&mut self, now: Instant, _wall: WallClock, mn_id: &str, pba: &ProxyBindingAck<'_>) {
        let lma = self.config.lma_address;
        let refresh_pct = u32::from(self.config.timers.refresh_at_percent);
        let ra_interval = secs(self.config.router_advertisement.interval_s);
        let Some(e) = self.bul.get_mut(mn_id) else {
            return;
        };
        let prefixes: Vec<Ipv6Net> = pba
            .home_network_prefixes()
            .filter(|p| !(p.prefix_len() == 0 && p.addr().is_unspecified()))
            .collect();
        if prefixes.is_empty() {
            self.event(MagEvent::PbaIgnored {
                mn_id: mn_id.to_owned(),
                reason: "accepted without a home network prefix",
            });
            return;
        }
        let first = e.state == BulState::Registering;
        let lifetime = Duration::from_secs(u64::from(pba.lifetime.as_secs()));
        let old_prefixes = core::mem::replace(&mut e.prefixes, prefixes.clone());
        if let Some(lla) = pba.opts.link_local_address.filter(|a| !a.is_unspecified()) {
            e.link_local = lla;
        }
        e.state = BulState::Bound;
        e.lifetime = lifetime;
        e.expires_at = Some(now + lifetime);
        e.registered_at.get_or_insert(now);
        e.transmissions = 0;
        let refresh_at = now + lifetime * refresh_pct / 100;
        let link = e.link;
        let local_routing = e.local_routing;
        let after = now - e.attached_at;
        if first {
            e.next_ra_at = (!ra_interval.is_zero()).then(|| now + ra_interval);
        }
        self.set_deadline(mn_id, Some(refresh_at));
        let changed = first || old_prefixes != prefixes;
        if changed {
            let stale: Vec<Ipv6Net> = old_prefixes
                .iter()
                .filter(|p| !prefixes.contains(p))
                .copied()
                .collect();
            if !first {
                self.remove_routes(link, &stale);
            }
            for p in &prefixes {
                self.push(MagOutput::Dataplane(DataplaneCommand::SetUplink {
                    prefix: *p,
                    peer: lma,
                }));
                self.push(MagOutput::Dataplane(DataplaneCommand::SetAccessRoute {
                    prefix: *p,
                    link,
                    local_routing,
                }));
            }
            self.send_ra(now, mn_id);
        }
        self.event(if first {
            MagEvent::Registered {
                mn_id: mn_id.to_owned(),
                prefixes,
                after,
            }
        } else {
            MagEvent::Refreshed {
                mn_id: mn_id.to_owned(),
            }
        });
        if first
            && self
                .bul
                .get(mn_id)
                .and_then(|e| e.fast.as_ref())
                .is_some_and(|f| f.role == FastRole::New && f.phase == FastPhase::Forwarding)
        {
            // (A reactive NMAG still waiting for the PMAG's packets completes when they come.)
            self.complete_as_new(now, mn_id);
        }
    }

    fn refused(&mut self, now: Instant, wall: WallClock, mn_id: &str, pba: &ProxyBindingAck<'_>) {
        let status = pba.status;
        match status {
            // Rule 8: re-assert with a fresh timestamp.
            Status::TimestampLowerThanPrevAccepted
                if self.bul.get(mn_id).is_some_and(|e| {
                    e.transmissions < self.config.timers.max_pbu_transmissions
                }) =>
            {
                self.send_pbu(now, wall, mn_id, false);
                return;
            }
            // RFC 6275 §9.5.1: the PBA carries the last accepted sequence number.
            Status::SequenceNumberOutOfWindow => {
                if let Some(e) = self.bul.get_mut(mn_id)
                    && e.transmissions < self.config.timers.max_pbu_transmissions
                {
                    e.sequence = pba.sequence;
                    self.send_pbu(now, wall, mn_id, false);
                    return;
                }
            }
            // Rule 10: ask for an allocation instead of the refused prefixes.
            Status::NotAuthorizedForHomeNetworkPrefix => {
                if let Some(e) = self.bul.get_mut(mn_id)
                    && !e.prefixes.is_empty()
                    && !e.is_bound()
                {
                    e.prefixes.clear();
                    self.send_pbu(now, wall, mn_id, false);
                    return;
                }
            }
            _ => {}
        }
        // Rule 11: no service. Rules 7 and 9: no retry until an administrative change, or
        // (for a clock problem) a while.
        let until = match status {
            Status::ProxyRegNotEnabled => None,
            _ => Some(now + RETRY_HOLD_DOWN),
        };
        self.deny(now, mn_id, status, until);
    }

    fn deny(&mut self, now: Instant, mn_id: &str, status: Status, until: Option<Instant>) {
        let Some(e) = self.bul.get_mut(mn_id) else {
            return;
        };
        let was_bound = e.is_bound();
        let prefixes = core::mem::take(&mut e.prefixes);
        let link = e.link;
        e.state = BulState::Denied { status, until };
        e.expires_at = None;
        e.next_ra_at = None;
        if was_bound {
            self.remove_routes(link, &prefixes);
            self.send_withdrawal(now, mn_id, &prefixes);
        }
        self.set_deadline(mn_id, until);
        self.event(MagEvent::Rejected {
            mn_id: mn_id.to_owned(),
            status,
        });
    }

    /// RFC 5846 §8.2: the LMA revokes one node's binding, or (G) all of them.
    fn on_bri(
        &mut self,
        now: Instant,
        src: Ipv6Addr,
        dst: Ipv6Addr,
        bri: &BindingRevocationIndication<'_>,
    ) {
        let global = bri.flags.contains(RevocationFlags::G);
        let trigger = bri.trigger;
        let status = if !bri.flags.contains(RevocationFlags::P) {
            BraStatus::ProxyBindingRevocationNotSupported
        } else if matches!(trigger, RevocationTrigger::Unknown(_)) {
            BraStatus::RevocationTriggerNotSupported
        } else if global
            != matches!(
                trigger,
                RevocationTrigger::PerPeerPolicy
                    | RevocationTrigger::RevokingMobilityNodeLocalPolicy
            )
        {
            BraStatus::RevocationFunctionNotSupported
        } else if global {
            let ids: Vec<String> = self.bul.keys().cloned().collect();
            for id in ids {
                self.revoked(now, &id, trigger);
            }
            BraStatus::Success
        } else {
            let id = bri.options.iter().find_map(|o| match o {
                MobilityOption::MobileNodeIdentifier { id, .. } => core::str::from_utf8(id).ok(),
                _ => None,
            });
            match id.map(str::to_owned) {
                None => BraStatus::RevokedMobileNodesIdentityRequired,
                Some(id) if self.bul.contains_key(&id) => {
                    self.revoked(now, &id, trigger);
                    BraStatus::Success
                }
                Some(_) => BraStatus::BindingDoesNotExist,
            }
        };
        let m =
            Message::BindingRevocation(BindingRevocation::Acknowledgement(BindingRevocationAck {
                status,
                sequence: bri.sequence,
                flags: bri.flags,
                options: Options::EMPTY,
            }));
        if let Some(t) = crate::emit(&m, dst, src) {
            self.push(MagOutput::Transmit(t));
        }
    }

    fn revoked(&mut self, now: Instant, mn_id: &str, trigger: RevocationTrigger) {
        if let Some(e) = self.bul.get(mn_id) {
            let prefixes = e.prefixes.clone();
            let link = e.link;
            if e.is_bound() {
                self.remove_routes(link, &prefixes);
                self.send_withdrawal(now, mn_id, &prefixes);
            }
        }
        self.forget(mn_id);
        self.event(MagEvent::Revoked {
            mn_id: mn_id.to_owned(),
            trigger,
        });
    }

    /// RFC 7077 §6.1: FORCE-REREGISTRATION sends a refresh; other reasons are acknowledged as
    /// not applied.
    fn on_upn(
        &mut self,
        now: Instant,
        wall: WallClock,
        src: Ipv6Addr,
        dst: Ipv6Addr,
        upn: &UpdateNotification<'_>,
    ) {
        let id = upn.options.iter().find_map(|o| match o {
            MobilityOption::MobileNodeIdentifier { id, .. } => {
                core::str::from_utf8(id).ok().map(str::to_owned)
            }
            _ => None,
        });
        let status = match (upn.reason, id) {
            (NotificationReason::ForceReregistration, Some(id))
                if self.bul.get(&id).is_some_and(BulEntry::is_bound) =>
            {
                self.start_refresh(now, wall, &id);
                UpaStatus::Success
            }
            (NotificationReason::VendorSpecificReason, _) => UpaStatus::MissingVendorSpecificOption,
            _ => UpaStatus::FailedToUpdateSessionParameters,
        };
        if upn.flags.contains(UpnFlags::A) {
            let m = Message::UpdateNotificationAck(UpdateNotificationAck {
                sequence: upn.sequence,
                status,
                options: upn.options,
            });
            if let Some(t) = crate::emit(&m, dst, src) {
                self.push(MagOutput::Transmit(t));
            }
        }
    }

    // ---------------------------------------------------------------- timers

    pub fn handle_timeout(&mut self, now: Instant, wall: WallClock) {
        while let Some((at, id)) = self.schedule.first().cloned() {
            if at > now {
                break;
            }
            self.schedule.pop_first();
            if let Some(e) = self.bul.get_mut(&id) {
                e.deadline = None;
            }
            self.entry_timer(now, wall, &id);
        }
        while let Some((at, id)) = self.fast_schedule.first().cloned() {
            if at > now {
                break;
            }
            self.fast_schedule.pop_first();
            self.fast_timer(now, wall, &id);
        }
        self.periodic_ras(now);
        let mut tx = Vec::new();
        let mut ev = Vec::new();
        self.heartbeats
            .on_timeout(now, &mut |t| tx.push(t), &mut |e| ev.push(e));
        for t in tx {
            self.push(MagOutput::Transmit(t));
        }
        for e in ev {
            self.on_peer_event(now, wall, e);
        }
    }

    fn entry_timer(&mut self, now: Instant, wall: WallClock, mn_id: &str) {
        let max_tx = self.config.timers.max_pbu_transmissions;
        let Some(e) = self.bul.get(mn_id) else {
            return;
        };
        match e.state {
            BulState::Registering => {
                if e.transmissions >= max_tx {
                    let retry = self.config.timers.registration_retry_s;
                    if retry == 0 {
                        self.forget(mn_id);
                    } else if let Some(e) = self.bul.get_mut(mn_id) {
                        // Hold down, then a fresh round of transmissions while the node stays.
                        e.transmissions = 0;
                        e.retransmit_timeout = ms(self.config.timers.initial_bindack_timeout_ms);
                        self.set_deadline(mn_id, Some(now + Duration::from_secs(retry.into())));
                    }
                    self.event(MagEvent::GaveUp {
                        mn_id: mn_id.to_owned(),
                    });
                } else {
                    self.send_pbu(now, wall, mn_id, false);
                }
            }
            // A node handed over by a fast handover is refreshed by its new MAG now.
            BulState::Bound if is_leaving(e) => {}
            BulState::Bound => self.start_refresh(now, wall, mn_id),
            BulState::Refreshing => {
                if e.expires_at.is_some_and(|x| x <= now) {
                    let prefixes = e.prefixes.clone();
                    let link = e.link;
                    self.remove_routes(link, &prefixes);
                    self.send_withdrawal(now, mn_id, &prefixes);
                    self.forget(mn_id);
                    self.event(MagEvent::Expired {
                        mn_id: mn_id.to_owned(),
                    });
                } else {
                    // Retransmit, but never past the binding's expiry.
                    self.send_pbu(now, wall, mn_id, false);
                    if let Some(x) = self.bul.get(mn_id).and_then(|e| e.expires_at)
                        && self
                            .bul
                            .get(mn_id)
                            .and_then(|e| e.deadline)
                            .is_some_and(|d| d > x)
                    {
                        self.set_deadline(mn_id, Some(x));
                    }
                }
            }
            BulState::Deregistering => {
                // RFC 5213 §6.9.1.4: INITIAL_BINDACK_TIMEOUT passed without a PBA.
                self.forget(mn_id);
                self.event(MagEvent::Deregistered {
                    mn_id: mn_id.to_owned(),
                });
            }
            BulState::Denied { .. } => {
                // The hold-down is over: the node may try again when it next shows up.
                self.forget(mn_id);
            }
            // Its fast-handover timer governs it.
            BulState::Expected => {}
        }
    }

    fn periodic_ras(&mut self, now: Instant) {
        let interval = secs(self.config.router_advertisement.interval_s);
        if interval.is_zero() {
            return;
        }
        let due: Vec<String> = self
            .bul
            .values()
            .filter(|e| e.is_bound() && !is_leaving(e) && e.next_ra_at.is_some_and(|t| t <= now))
            .map(|e| e.mn_id.clone())
            .collect();
        for id in due {
            if let Some(e) = self.bul.get_mut(&id) {
                e.next_ra_at = Some(now + interval);
            }
            self.send_ra(now, &id);
        }
    }

    /// Earliest periodic RA, for [`Mag::poll_timeout`].
    pub fn next_ra_at(&self) -> Option<Instant> {
        self.bul.values().filter_map(|e| e.next_ra_at).min()
    }

    // ---------------------------------------------------------------- helpers

    fn set_deadline(&mut self, mn_id: &str, at: Option<Instant>) {
        let Some(e) = self.bul.get_mut(mn_id) else {
            return;
        };
        if let Some(old) = e.deadline.take() {
            self.schedule.remove(&(old, mn_id.to_owned()));
        }
        if let Some(at) = at {
            e.deadline = Some(at);
            self.schedule.insert((at, mn_id.to_owned()));
        }
    }

    fn unschedule(&mut self, mn_id: &str) {
        self.set_deadline(mn_id, None);
    }

    fn forget(&mut self, mn_id: &str) {
        self.unschedule(mn_id);
        self.clear_fast(mn_id);
        if let Some(e) = self.bul.remove(mn_id) {
            self.by_link_layer.remove(&e.link_layer);
        }
        if self.bul.is_empty() {
            self.heartbeats.remove_peer(&self.config.lma_address);
        }
    }

    fn remove_routes(&mut self, link: AccessLink, prefixes: &[Ipv6Net]) {
        for p in prefixes {
            self.push(MagOutput::Dataplane(DataplaneCommand::RemoveUplink {
                prefix: *p,
            }));
            self.push(MagOutput::Dataplane(DataplaneCommand::RemoveAccessRoute {
                prefix: *p,
                link,
            }));
        }
    }

    fn ra_for(
        &self,
        e: &BulEntry,
        prefixes: Vec<Ipv6Net>,
        withdraw: bool,
        now: Instant,
    ) -> RouterAdvertisement {
        let ra = &self.config.router_advertisement;
        let remaining = e.expires_at.map(|x| x - now).unwrap_or_default();
        let prefix_lifetime = if withdraw {
            Duration::ZERO
        } else {
            ra.prefix_lifetime_s.map(secs).unwrap_or(remaining)
        };
        RouterAdvertisement {
            link: e.link,
            mn_link_layer: e.link_layer,
            src_link_local: e.link_local,
            src_link_layer: self.config.domain.link_local.link_layer_address(),
            prefixes,
            prefix_lifetime,
            router_lifetime: if withdraw {
                Duration::ZERO
            } else {
                Duration::from_secs(u64::from(ra.router_lifetime_s))
            },
            mtu: ra.mtu.unwrap_or(1460),
        }
    }

    fn send_ra(&mut self, now: Instant, mn_id: &str) {
        // Registered, or a fast handover's new MAG that has the prefixes from the context.
        let Some(e) = self.bul.get(mn_id).filter(|e| {
            (e.is_bound() && !is_leaving(e))
                || (e.fast.as_ref().is_some_and(|f| f.role == FastRole::New)
                    && e.state == BulState::Registering
                    && !e.prefixes.is_empty())
        }) else {
            return;
        };
        let ra = self.ra_for(e, e.prefixes.clone(), false, now);
        self.stats.ra_sent += 1;
        self.push(MagOutput::RouterAdvertisement(ra));
    }

    /// An RA that withdraws the prefixes and the default router (RFC 5213 §6.9.1.2 rule 11).
    fn send_withdrawal(&mut self, now: Instant, mn_id: &str, prefixes: &[Ipv6Net]) {
        let Some(e) = self.bul.get(mn_id) else {
            return;
        };
        let ra = self.ra_for(e, prefixes.to_vec(), true, now);
        self.push(MagOutput::RouterAdvertisement(ra));
    }
}

/// A node a fast handover is taking away from this MAG: it is refreshed and advertised by its
/// new MAG from now on.
fn is_leaving(e: &BulEntry) -> bool {
    e.fast
        .as_ref()
        .is_some_and(|f| f.role == FastRole::Previous && f.node_left)
}
