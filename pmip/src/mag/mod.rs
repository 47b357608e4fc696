//! The mobile access gateway as a pure state machine (RFC 5213 §6, RFC 5949, RFC 5846 §9,
//! RFC 5847, RFC 7077 §6).
//!
//! Inputs: attach and detach of mobile nodes on access links, Router Solicitations, messages
//! from the LMA and from other MAGs, indications from the access network, clock ticks.
//! Outputs: Mobility Headers to send, datapath commands, Router Advertisements to send to a
//! node, events, and the changes of the binding update list.
//!
//! Who owns what:
//! - [`Mag`] (this file): the inputs and outputs, the access side (attach, detach, Router
//!   Solicitations and Advertisements), dispatch of messages, the timers.
//! - `bul`: the binding update list, by link-layer address and MN-ID.
//! - `registration`: the PBU / PBA exchange with the LMA (RFC 5213 §6.9).
//! - `lma_requests`: what the LMA asks of the MAG (RFC 5846 revocation, RFC 7077 update
//!   notification).
//! - `fast`: the state of every fast handover (RFC 5949); it returns actions.
//! - `handover`: the MAG carrying those actions out.
//! - `timer`: one table of every deadline.

use core::time::Duration;
use std::collections::VecDeque;
use std::net::Ipv6Addr;

use ipnet::{IpNet, Ipv6Net};

use crate::config::{FastHandoverMode, LinkLocalMode, MagConfig, MobileNodeProfile};
use crate::heartbeat::{Heartbeats, PeerEvent};
use crate::output::{
    AccessLink, DatapathCommand, NeighborSolicitation, RouterAdvertisement, Transmit,
};
use crate::policy::{PolicyError, PolicyStore};
use crate::rng::Rng;
use crate::time::{Instant, ms, secs};
use crate::types::LinkLayerAddress;
use crate::wire::{
    AccessTechnologyType, BindingRevocation, HandoffIndicator, Message, ProxyBindingAck,
    RevocationTrigger, SequenceNumber, Status, WallClock,
};

mod bul;
mod fast;
mod handover;
mod ipv4_release;
mod lma_requests;
mod reachability;
mod registration;
mod timer;

pub use bul::{BulEntry, BulState, Ipv4Release, SavedBinding};
pub use fast::{FastError, FastHandover, FastPhase, FastRole};

use bul::BindingUpdateList;
use fast::FastHandovers;
use timer::{Timer, TimerTable};

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
    /// The node stopped answering Neighbor Solicitations on a link that stays up: it is
    /// taken as detached (RFC 5213 §6.13).
    Unreachable {
        mn_id: String,
        link_layer: LinkLayerAddress,
        link: AccessLink,
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
    /// The node released its IPv4 home address (a DHCPRELEASE, RFC 5844 §3.4.3): it is
    /// de-registered alone, or with the session when that had nothing else.
    Ipv4Released {
        mn_id: String,
        address: std::net::Ipv4Addr,
        session_ended: bool,
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
    /// PMAG: the new MAG acknowledged the handover (or asked for the node itself): the
    /// node's downlink goes to it from now on.
    HandoverAcknowledged {
        mn_id: String,
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

/// A change of the binding update list. The changes of one input come after its other
/// outputs, one per entry, with the entry as it is then.
#[derive(Debug, Clone, PartialEq, Eq)]
// Outputs live for one turn of the daemon's loop; boxing the entry would cost an allocation
// per change for nothing.
#[allow(clippy::large_enum_variant)]
pub enum BulChange {
    /// The entry was created or changed; with its fast handover, if one is in progress.
    Updated {
        entry: Box<BulEntry>,
        handover: Option<FastHandover>,
    },
    /// The entry is gone.
    Removed {
        mn_id: String,
        link_layer: LinkLayerAddress,
    },
}

/// One thing for the daemon to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MagOutput {
    Transmit(Transmit),
    Datapath(DatapathCommand),
    RouterAdvertisement(RouterAdvertisement),
    /// A probe of Neighbor Unreachability Detection.
    NeighborSolicitation(NeighborSolicitation),
    Event(MagEvent),
    BindingUpdateList(BulChange),
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
    bul: BindingUpdateList,
    fast: FastHandovers,
    timers: TimerTable,
    heartbeats: Heartbeats,
    /// Neighbor Unreachability Detection of each node heard on its link.
    reachability: reachability::Reachabilities,
    outputs: VecDeque<MagOutput>,
    rng: Rng,
    /// The per-MAG counter used as Sequence Number with timestamps (RFC 5213 §6.9.1.1 r. 6).
    next_sequence: SequenceNumber,
    stats: MagStats,
}

/// What the node is told when prefixes stop being served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Withdrawal {
    /// Nothing: it left the link.
    Silent,
    /// An RA with the prefixes at lifetime zero; this MAG stays its router.
    Prefixes,
    /// An RA with the prefixes and the router lifetime at zero: no service here.
    PrefixesAndRouter,
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
        let policy = PolicyStore::from_configuration(&config.mobile_nodes, &[])?;
        let next_sequence = SequenceNumber(rng.next_u16());
        let fast = FastHandovers::new(&config, SequenceNumber(rng.next_u16()));
        Ok(Mag {
            config,
            policy,
            bul: BindingUpdateList::default(),
            fast,
            timers: TimerTable::default(),
            heartbeats,
            reachability: Default::default(),
            outputs: VecDeque::new(),
            rng,
            next_sequence,
            stats: MagStats::default(),
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

    /// The binding update list, by link-layer address.
    pub fn bindings(&self) -> impl Iterator<Item = &BulEntry> {
        self.bul.iter()
    }

    /// A node's entry; of a node attached through several interfaces, the first by
    /// link-layer address (see [`Mag::bindings_of`]).
    pub fn binding(&self, mn_id: &str) -> Option<&BulEntry> {
        self.bul.of_mn_id(mn_id).next()
    }

    /// Every entry of a node: one per attached interface.
    pub fn bindings_of<'a>(&'a self, mn_id: &str) -> impl Iterator<Item = &'a BulEntry> {
        self.bul.of_mn_id(mn_id)
    }

    pub fn binding_by_link_layer(&self, ll: &LinkLayerAddress) -> Option<&BulEntry> {
        self.bul.get(ll)
    }

    /// The fast handover in progress for the entry of `ll`.
    pub fn handover(&self, ll: &LinkLayerAddress) -> Option<&FastHandover> {
        self.fast.get(ll)
    }

    pub fn poll_output(&mut self) -> Option<MagOutput> {
        if self.outputs.is_empty() && self.bul.has_changes() {
            self.report_bul_changes();
        }
        self.outputs.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    fn report_bul_changes(&mut self) {
        for (ll, mn_id) in self.bul.take_changed() {
            let change = match self.bul.get(&ll) {
                Some(e) => BulChange::Updated {
                    entry: Box::new(e.clone()),
                    handover: self.fast.get(&ll).cloned(),
                },
                None => BulChange::Removed {
                    mn_id,
                    link_layer: ll,
                },
            };
            self.outputs.push_back(MagOutput::BindingUpdateList(change));
        }
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
        if self.policy.remove(mn_id).is_some() {
            for ll in self.bul.keys_of(mn_id) {
                self.handle_detach(now, wall, &ll);
            }
        }
    }

    // ---------------------------------------------------------------- access side

    /// A node attached (link up, association, or an API call): identify it and register it
    /// (RFC 5213 §6.9.1.1).
    pub fn handle_attach(&mut self, now: Instant, wall: WallClock, a: Attach) {
        if self
            .bul
            .get(&a.link_layer)
            .is_some_and(|e| e.state == BulState::Expected)
        {
            self.arrived_with_context(now, wall, a.link_layer, a.link);
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
        let pinned = profile.home_network_prefixes.clone();
        // RFC 5844 §3.2.3.1: the profile says which IP versions the node is served with.
        let (ipv6_service, ipv4_service, pinned_ipv4) =
            (profile.ipv6, profile.ipv4, profile.ipv4_home_address);
        let ll = a.link_layer;
        if self.fast.is_leaving(&ll) {
            self.came_back(now, wall, ll, a.link, local_routing);
            return;
        }
        // RFC 5213 §6.1: an entry per attached interface. An interface known here already:
        if let Some(e) = self.bul.get(&ll) {
            match e.state {
                BulState::Denied {
                    until: Some(until), ..
                } if until <= now => {}
                BulState::Denied { .. } | BulState::Halted => return,
                BulState::Deregistering => {}
                _ if e.link == a.link => {
                    // A repeated link event or solicitation.
                    if e.is_bound() {
                        self.send_ra(now, ll);
                    }
                    return;
                }
                _ => {
                    // The same interface on another access link of this MAG (§6.9.1.1 rule
                    // 5, case (a)): the same session; its route moves.
                    let served = e.served.clone();
                    if let Some(e) = self.bul.get_mut(&ll) {
                        e.link = a.link;
                    }
                    for p in served {
                        self.push(MagOutput::Datapath(DatapathCommand::SetLinkRoute {
                            prefix: p,
                            link: a.link,
                            local_routing,
                        }));
                    }
                    self.send_ra(now, ll);
                    return;
                }
            }
        }
        // Another interface of the node is attached here: this one is a new interface
        // (§6.9.1.1 rule 5, case (b)), a mobility session of its own (§5.4) with prefixes of
        // its own: the pinned prefixes another session of the node holds are not asked for
        // again (the LMA would take the PBU for that session's).
        let others: Vec<&BulEntry> = self
            .bul
            .of_mn_id(&mn_id)
            .filter(|e| e.link_layer != ll)
            .filter(|e| !matches!(e.state, BulState::Deregistering | BulState::Denied { .. }))
            .collect();
        let new_interface = !others.is_empty();
        let requested: Vec<Ipv6Net> = pinned
            .into_iter()
            .filter(|p| !others.iter().any(|e| e.prefixes.contains(p)))
            .collect();
        // Likewise the pinned IPv4 home address (RFC 5844 §3.1.2.7: the LMA would look the
        // PBU up by it and take it for that session's).
        let ipv4_request = pinned_ipv4.filter(|a| {
            !others
                .iter()
                .any(|e| e.ipv4.map(|v4| v4.address) == Some(*a) || e.ipv4_request == Some(*a))
        });
        let mut entry = self.new_entry(&mn_id, a.link_layer, a.link, att, local_routing, now);
        entry.prefixes = requested;
        entry.ipv6_service = ipv6_service;
        entry.ipv4_service = ipv4_service;
        entry.ipv4_request = ipv4_request;
        let previous_mag = self.fast.take_expected(now, &ll);
        entry.handoff_hint = match (previous_mag, a.handoff_hint) {
            // The access network knows the node comes from another MAG (RFC 5213 §6.9.1.1
            // rule 4).
            (Some(_), _) => HandoffIndicator::HandoffBetweenMags,
            (None, Some(h)) => h,
            (None, None) if new_interface => HandoffIndicator::AttachmentOverNewInterface,
            (None, None) => HandoffIndicator::HandoffStateUnknown,
        };
        // The entry it replaces (a de-registration in progress, a hold-down that ended).
        self.discard(ll);
        self.bul.insert(entry);
        match previous_mag {
            // RFC 5949 Figure 3: HI / HAck first, then the PBU (steps (g)-(h)), so that the
            // previous MAG's packets reach the node before the LMA sends it new ones.
            Some(pmag) => self.with_fast(now, wall, |f, bul, out| {
                if let Some(e) = bul.get(&ll) {
                    f.start_reactive(now, e, pmag, out);
                }
            }),
            None => self.send_pbu(now, wall, ll, false),
        }
    }

    /// The node of `ll` came back (on `link`) while a fast handover was taking it to another
    /// MAG ([`fast`]): the handover is dropped, the node's downlink comes back here, and it
    /// is registered again as a handoff between MAGs.
    fn came_back(
        &mut self,
        now: Instant,
        wall: WallClock,
        ll: LinkLayerAddress,
        link: AccessLink,
        local_routing: bool,
    ) {
        self.with_fast(now, wall, |f, bul, out| {
            if let Some(e) = bul.get(&ll) {
                f.returned(e, link, local_routing, out);
            }
        });
        let Some(e) = self.bul.get_mut(&ll) else {
            return;
        };
        e.link = link;
        e.local_routing = local_routing;
        e.attached_at = now;
        e.state = BulState::Registering;
        e.handoff_hint = HandoffIndicator::HandoffBetweenMags;
        e.served = e.home_nets();
        self.send_ra(now, ll);
        self.send_pbu(now, wall, ll, false);
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
            ipv4: None,
            dhcp_server: false,
            ipv6_service: true,
            ipv4_service: false,
            ipv4_request: None,
            ipv4_release: None,
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
            served: Vec::new(),
            handoff_hint: HandoffIndicator::HandoffStateUnknown,
            transmissions: 0,
            retransmit_timeout: ms(self.config.timers.initial_bindack_timeout_ms),
        }
    }

    /// The node left the access link: de-register it (RFC 5213 §6.9.1.4), unless a fast
    /// handover takes it over (see [`fast`]).
    pub fn handle_detach(&mut self, now: Instant, wall: WallClock, ll: &LinkLayerAddress) {
        let ll = *ll;
        if !self.bul.contains(&ll) {
            return;
        }
        let taken = self.with_fast(now, wall, |f, bul, out| {
            bul.get(&ll).is_some_and(|e| f.departed(now, e, out))
        });
        if taken {
            self.bul.touch(&ll);
            return;
        }
        self.detach_now(now, wall, ll);
    }

    fn detach_now(&mut self, now: Instant, wall: WallClock, ll: LinkLayerAddress) {
        let Some(e) = self.bul.get_mut(&ll) else {
            return;
        };
        match e.state {
            BulState::Bound | BulState::Refreshing | BulState::Registering => {
                // Never registered: a de-registration still clears whatever the LMA may
                // have created from a PBU whose PBA we have not seen.
                e.state = BulState::Deregistering;
                e.transmissions = 0;
                self.unserve(now, ll, &[], Withdrawal::Silent);
                self.send_pbu(now, wall, ll, true);
            }
            BulState::Deregistering | BulState::Expected => {}
            // An administrative action lifts a refusal or a halt (RFC 5213 §6.9.1.2 rules 6-7).
            BulState::Denied { .. } | BulState::Halted => self.forget(ll),
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
        match self.bul.get(&ll).map(|e| (e.is_bound(), e.link)) {
            Some((true, l)) if l == link => self.send_ra(now, ll),
            Some((_, l)) if l == link => {}
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

    // ---------------------------------------------------------------- messages

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
                self.sync_heartbeat_timer();
                for t in tx {
                    self.push(MagOutput::Transmit(t));
                }
                for e in ev {
                    self.on_peer_event(now, wall, e);
                }
            }
            Message::BindingError(be) if from_lma => {
                let mut ev = Vec::new();
                if self
                    .heartbeats
                    .on_binding_error(src, be.status, &mut |e| ev.push(e))
                {
                    self.sync_heartbeat_timer();
                }
                for e in ev {
                    self.on_peer_event(now, wall, e);
                }
            }
            Message::BindingRevocation(BindingRevocation::Indication(bri)) if from_lma => {
                self.on_bri(now, src, dst, &bri);
            }
            Message::UpdateNotification(upn) if from_lma => self.on_upn(now, wall, src, dst, &upn),
            Message::HandoverInitiate(hi) if !from_lma => {
                self.with_fast(now, wall, |f, bul, out| {
                    f.on_hi(now, src, dst, &hi, bul, out)
                });
            }
            Message::HandoverAck(hack) if !from_lma => {
                self.with_fast(now, wall, |f, bul, out| {
                    f.on_hack(now, src, &hack, bul, out)
                });
            }
            Message::Unknown { mh_type, .. } => {
                // RFC 6275 §9.2: an unrecognised MH Type is answered with a Binding Error,
                // status 2 (how the LMA and other MAGs learn what this one does not support,
                // RFC 5846 §6.2, RFC 5847 §3).
                if let Some(t) = crate::unrecognized_mh_type(dst, src) {
                    self.push(MagOutput::Transmit(t));
                }
                self.drop_message(src, format!("unrecognized MH Type {mh_type}"));
            }
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

    // ---------------------------------------------------------------- timers

    pub fn handle_timeout(&mut self, now: Instant, wall: WallClock) {
        while let Some(t) = self.timers.pop_due(now) {
            match t {
                Timer::Registration(ll) => self.registration_timer(now, wall, ll),
                Timer::Handover(ll) => self.with_fast(now, wall, |f, bul, out| {
                    if let Some(e) = bul.get(&ll) {
                        f.on_timer(now, e, out);
                    }
                }),
                Timer::RouterAdvertisement(ll) => self.periodic_ra(now, ll),
                Timer::Reachability(ll) => self.reachability_timer(now, wall, ll),
                Timer::Heartbeat => {
                    let mut tx = Vec::new();
                    let mut ev = Vec::new();
                    self.heartbeats
                        .on_timeout(now, &mut |t| tx.push(t), &mut |e| ev.push(e));
                    self.sync_heartbeat_timer();
                    for t in tx {
                        self.push(MagOutput::Transmit(t));
                    }
                    for e in ev {
                        self.on_peer_event(now, wall, e);
                    }
                }
            }
        }
    }

    fn registration_timer(&mut self, now: Instant, wall: WallClock, ll: LinkLayerAddress) {
        let max_tx = self.config.timers.max_pbu_transmissions;
        let Some(e) = self.bul.get(&ll) else {
            return;
        };
        let mn_id = e.mn_id.clone();
        match e.state {
            BulState::Registering => {
                if e.transmissions >= max_tx {
                    let retry = self.config.timers.registration_retry_s;
                    // RFC 5213 §6.9.2 rule 2, RFC 5949 §5.2: what a fast handover's context
                    // let this MAG advertise before the PBA is withdrawn.
                    self.unserve(now, ll, &[], Withdrawal::PrefixesAndRouter);
                    if retry == 0 {
                        self.forget(ll);
                    } else if let Some(e) = self.bul.get_mut(&ll) {
                        // Hold down, then a fresh round of transmissions while the node stays.
                        e.transmissions = 0;
                        e.retransmit_timeout = ms(self.config.timers.initial_bindack_timeout_ms);
                        self.set_deadline(ll, Some(now + Duration::from_secs(retry.into())));
                    }
                    self.event(MagEvent::GaveUp { mn_id });
                } else {
                    self.send_pbu(now, wall, ll, false);
                }
            }
            // A node handed over by a fast handover is refreshed by its new MAG now.
            BulState::Bound if self.fast.is_leaving(&ll) => {}
            BulState::Bound => self.start_refresh(now, wall, ll),
            // A selective de-registration of the IPv4 home address is not retransmitted
            // (RFC 5213 §6.9.1.4 as for any de-registration).
            BulState::Refreshing if e.ipv4_release.is_some() => {
                self.ipv4_release_answered(now, ll, None)
            }
            BulState::Refreshing => {
                if e.expires_at.is_some_and(|x| x <= now) {
                    self.unserve(now, ll, &[], Withdrawal::PrefixesAndRouter);
                    self.forget(ll);
                    self.event(MagEvent::Expired { mn_id });
                } else {
                    // Retransmit, but never past the binding's expiry.
                    let expiry = e.expires_at;
                    self.send_pbu(now, wall, ll, false);
                    if let Some(x) = expiry
                        && self
                            .timers
                            .get(Timer::Registration(ll))
                            .is_some_and(|d| d > x)
                    {
                        self.set_deadline(ll, Some(x));
                    }
                }
            }
            BulState::Deregistering => {
                // RFC 5213 §6.9.1.4: INITIAL_BINDACK_TIMEOUT passed without a PBA.
                self.forget(ll);
                self.event(MagEvent::Deregistered { mn_id });
            }
            BulState::Denied { .. } => {
                // The hold-down is over: the node may try again when it next shows up.
                self.forget(ll);
            }
            // The binding it kept after its PBUs stopped ran out; the entry waits for an
            // administrative action.
            BulState::Halted => {
                self.unserve(now, ll, &[], Withdrawal::PrefixesAndRouter);
                if let Some(e) = self.bul.get_mut(&ll) {
                    e.expires_at = None;
                }
                self.event(MagEvent::Expired { mn_id });
            }
            // Its fast-handover timer governs it.
            BulState::Expected => {}
        }
    }

    fn periodic_ra(&mut self, now: Instant, ll: LinkLayerAddress) {
        let interval = secs(self.config.router_advertisement.interval_s);
        let Some(e) = self.bul.get(&ll) else {
            return;
        };
        if interval.is_zero() {
            return;
        }
        let due = e.is_bound() && !self.fast.is_leaving(&ll);
        self.timers
            .set(Timer::RouterAdvertisement(ll), Some(now + interval));
        if due {
            self.send_ra(now, ll);
        }
    }

    // ---------------------------------------------------------------- helpers

    fn set_deadline(&mut self, ll: LinkLayerAddress, at: Option<Instant>) {
        if self.bul.contains(&ll) {
            self.timers.set(Timer::Registration(ll), at);
        }
    }

    /// RFC 5847 §3: heartbeats to the LMA while, and only while, the LMA holds a binding
    /// of a node attached here ("can be sent only if the MAG has at least one proxy Binding
    /// Cache entry at the LMA"): from the first accepting PBA to the last binding's end.
    fn sync_lma_peer(&mut self, now: Instant) {
        let lma = self.config.lma_address;
        let bound = self.bul.iter().any(|e| e.is_bound());
        if bound {
            self.heartbeats.add_peer(lma, now);
        } else {
            self.heartbeats.remove_peer(&lma);
        }
        self.sync_heartbeat_timer();
    }

    fn sync_heartbeat_timer(&mut self) {
        self.timers
            .set(Timer::Heartbeat, self.heartbeats.next_deadline());
    }

    /// Drops an entry and its timers and handover, without a word (it is being replaced).
    fn discard(&mut self, ll: LinkLayerAddress) {
        self.timers.clear_node(ll);
        self.reachability.remove(&ll);
        self.fast.forget(&ll);
        self.bul.remove(&ll);
    }

    /// The entry goes; with the last binding, the heartbeats to the LMA stop.
    fn forget(&mut self, ll: LinkLayerAddress) {
        self.discard(ll);
        if !self.bul.iter().any(|e| e.is_bound()) {
            self.heartbeats.remove_peer(&self.config.lma_address);
            self.sync_heartbeat_timer();
        }
    }

    /// The node's served home addresses but `keep` stop being served: their routes go
    /// (for the IPv4 home address, RFC 5844 §3.2.3.3: "MUST remove any forwarding state set
    /// up for the mobile node's IPv4 home address") and, but for [`Withdrawal::Silent`], an
    /// RA withdraws the prefixes among them (RFC 5213 §6.9.1.2 rule 11, RFC 5949 §5.2). A
    /// home address served from a fast handover's context may still sit in the buffer.
    fn unserve(&mut self, now: Instant, ll: LinkLayerAddress, keep: &[IpNet], w: Withdrawal) {
        let fast = self.config.domain.fast_handover.mode != FastHandoverMode::Off;
        let Some(e) = self.bul.get_mut(&ll) else {
            return;
        };
        let (kept, gone): (Vec<IpNet>, Vec<IpNet>) =
            e.served.iter().partition(|p| keep.contains(p));
        e.served = kept;
        if gone.is_empty() {
            return;
        }
        let (link, from_context) = (e.link, e.registered_at.is_none());
        self.remove_routes(link, &gone);
        if fast && from_context {
            for p in &gone {
                self.push(MagOutput::Datapath(DatapathCommand::DiscardBuffer {
                    prefix: *p,
                }));
            }
        }
        // RFC 5844 §3: an IPv4 home address is not advertised, so it is not withdrawn by an
        // RA; a node that loses only that gets none.
        let prefixes: Vec<Ipv6Net> = gone
            .iter()
            .filter_map(|p| match p {
                IpNet::V6(p) => Some(*p),
                IpNet::V4(_) => None,
            })
            .collect();
        if prefixes.is_empty() {
            return;
        }
        match w {
            Withdrawal::Silent => {}
            Withdrawal::Prefixes => self.send_withdrawal(now, ll, &prefixes, false),
            Withdrawal::PrefixesAndRouter => self.send_withdrawal(now, ll, &prefixes, true),
        }
    }

    /// Removes the uplinks and access routes of home addresses (prefixes, or an IPv4 home
    /// address as a host route).
    fn remove_routes(&mut self, link: AccessLink, homes: &[IpNet]) {
        for p in homes {
            self.push(MagOutput::Datapath(DatapathCommand::RemoveUplink {
                prefix: *p,
            }));
            self.push(MagOutput::Datapath(DatapathCommand::RemoveLinkRoute {
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
        withdraw_router: bool,
        now: Instant,
    ) -> RouterAdvertisement {
        let ra = &self.config.router_advertisement;
        // Before the PBA (prefixes from a fast handover's context, RFC 5949 §5.2) the
        // binding's lifetime is not known yet: the one asked for.
        let remaining = e
            .expires_at
            .map(|x| x - now)
            .unwrap_or_else(|| secs(self.config.timers.requested_lifetime_s));
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
            router_lifetime: if withdraw_router {
                Duration::ZERO
            } else {
                Duration::from_secs(u64::from(ra.router_lifetime_s))
            },
            mtu: ra.mtu.unwrap_or(1460),
        }
    }

    fn send_ra(&mut self, now: Instant, ll: LinkLayerAddress) {
        // Registered, or a fast handover's new MAG that has the prefixes from the context.
        // RFC 5844 §3: an IPv4-only node gets no IPv6 service, so no Router Advertisement.
        let Some(e) = self.bul.get(&ll).filter(|e| {
            e.ipv6_service && (e.is_bound() && !self.fast.is_leaving(&ll))
                || (self.fast.is_new_mag_of(&ll)
                    && e.state == BulState::Registering
                    && !e.prefixes.is_empty())
        }) else {
            return;
        };
        let ra = self.ra_for(e, e.prefixes.clone(), false, false, now);
        self.stats.ra_sent += 1;
        self.push(MagOutput::RouterAdvertisement(ra));
    }

    /// An RA that withdraws the prefixes (RFC 5949 §5.2), and with `router` the default
    /// router too (RFC 5213 §6.9.1.2 rule 11).
    fn send_withdrawal(
        &mut self,
        now: Instant,
        ll: LinkLayerAddress,
        prefixes: &[Ipv6Net],
        router: bool,
    ) {
        let Some(e) = self.bul.get(&ll) else {
            return;
        };
        let ra = self.ra_for(e, prefixes.to_vec(), true, router, now);
        self.push(MagOutput::RouterAdvertisement(ra));
    }
}
