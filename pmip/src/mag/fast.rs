//! Fast handovers between MAGs (PFMIPv6, RFC 5949): Handover Initiate / Acknowledge with the
//! node's context, forwarding from the previous MAG (PMAG) to the new one (NMAG), and
//! buffering until the node shows up.
//!
//! - Predictive (RFC 5949 §4.1, Figure 2): the access network tells the PMAG that a node is
//!   about to move ([`Mag::handle_handover_indication`]). The PMAG sends HI with the context;
//!   the NMAG answers HAck and buffers the node's prefixes; the PMAG forwards the node's
//!   downlink to it. When the node attaches at the NMAG, the buffer is flushed to it at once,
//!   it gets its Router Advertisement before any signalling with the LMA, and its uplink goes
//!   through the PMAG until the NMAG's own PBA is accepted. Then the NMAG tells the PMAG that
//!   forwarding is complete (HI, Code 2) and the inter-MAG tunnel goes.
//! - Reactive (Figure 3): the node moves unannounced. The PMAG, seeing it leave, buffers its
//!   downlink instead of de-registering it at once. The NMAG, told by its access network
//!   which MAG the node comes from ([`Mag::expect_arrival`]), sends HI when the node
//!   attaches (and its PBU in parallel); the PMAG answers HAck with the context, flushes its
//!   buffer into the tunnel to the NMAG and forwards what still arrives.
//!
//! One deviation, so that the two ends tear the tunnel down together: RFC 5949 lets the PMAG
//! send the HI with Code 2; here the NMAG sends it, because only the NMAG knows when its
//! registration with the LMA completed and the LMA stopped sending to the PMAG.

use core::time::Duration;
use std::net::Ipv6Addr;

use ipnet::Ipv6Net;

use super::{BulEntry, BulState, Mag, MagEvent, MagOutput};
use crate::config::FastHandoverMode;
use crate::output::{AccessLink, DataplaneCommand};
use crate::time::{Instant, ms};
use crate::types::LinkLayerAddress;
use crate::wire::{
    AccessTechnologyType, ContextRequest, HackCode, HackFlags, HandoffIndicator, HandoverAck,
    HandoverContext, HandoverInitiate, HiCode, HiFlags, LmaAddress, MN_ID_SUBTYPE_NAI, Message,
    MobilityOption, OptionType, Options, SequenceNumber, WallClock,
};

/// Which side of a fast handover this MAG is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FastRole {
    /// The MAG the node leaves.
    Previous,
    /// The MAG the node goes to.
    New,
}

/// Where a fast handover is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FastPhase {
    /// HI sent, waiting for the HAck.
    Initiating,
    /// PMAG, reactive: the node left; its downlink is buffered until the NMAG's HI.
    AwaitingPeer,
    /// Packets go (or will go) through the inter-MAG tunnel.
    Forwarding,
}

/// A fast handover in progress for one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FastHandover {
    pub mode: FastHandoverMode,
    pub role: FastRole,
    pub phase: FastPhase,
    /// The other MAG, once known.
    pub peer: Option<Ipv6Addr>,
    pub started: Instant,
    /// PMAG: the node has left its access link.
    pub node_left: bool,
    /// Sequence number of the outstanding HI.
    pub(super) sequence: SequenceNumber,
    pub(super) tries: u32,
    pub(super) deadline: Instant,
    /// NMAG, reactive: the context came and the HI with the 'F' flag went out (RFC 5949
    /// §4.2: an HI with 'U' first, "followed by another HI message with the 'F' flag set at an
    /// appropriate time").
    pub(super) forward_asked: bool,
}

/// Why a handover indication was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FastError {
    #[error("fast handovers are not enabled in this domain (fast_handover.mode)")]
    Disabled,
    #[error("{0} is not registered at this MAG")]
    NotRegistered(String),
    #[error("{0} is already being handed over")]
    InProgress(String),
    #[error("the new MAG is this MAG")]
    SameMag,
}

/// First wait for a HAck; doubled at every retransmission.
const HI_TIMEOUT: Duration = Duration::from_millis(250);
/// HI transmissions before the handover is given up.
const HI_TRIES: u32 = 4;

/// The context a PMAG sends (RFC 5949 §4.1 step (c), §6.2): MN-ID, prefixes, LMA address,
/// link-layer identifier, link-local interface identifier.
fn context_options<'a>(
    e: &'a BulEntry,
    lma: Ipv6Addr,
    iid: &'a [u8; 8],
) -> Vec<MobilityOption<'a>> {
    let mut o = vec![MobilityOption::MobileNodeIdentifier {
        subtype: MN_ID_SUBTYPE_NAI,
        id: e.mn_id.as_bytes(),
    }];
    o.extend(
        e.prefixes
            .iter()
            .map(|p| MobilityOption::HomeNetworkPrefix(*p)),
    );
    o.push(MobilityOption::LmaAddress(LmaAddress::V6(lma)));
    o.push(MobilityOption::MnLinkLayerIdentifier(
        e.link_layer.as_bytes(),
    ));
    o.push(MobilityOption::AccessTechnologyType(
        e.access_technology_type,
    ));
    o.push(MobilityOption::MnLinkLocalInterfaceId(*iid));
    if !e.link_local.is_unspecified() {
        o.push(MobilityOption::LinkLocalAddress(e.link_local));
    }
    o
}

impl Mag {
    fn fast_mode(&self) -> FastHandoverMode {
        self.config.domain.fast_handover.mode
    }

    fn handover_timeout(&self) -> Duration {
        ms(self.config.domain.fast_handover.handover_timeout_ms)
    }

    /// Predictive fast handover (RFC 5949 §4.1 steps (b)-(c)): the access network says that
    /// `mn_id`, attached here, is about to move to the MAG at `new_mag`. Sends the HI.
    pub fn handle_handover_indication(
        &mut self,
        now: Instant,
        mn_id: &str,
        new_mag: Ipv6Addr,
    ) -> Result<(), FastError> {
        if self.fast_mode() == FastHandoverMode::Off {
            return Err(FastError::Disabled);
        }
        if new_mag == self.config.proxy_coa {
            return Err(FastError::SameMag);
        }
        let e = self
            .bul
            .get(mn_id)
            .filter(|e| e.is_bound())
            .ok_or_else(|| FastError::NotRegistered(mn_id.to_owned()))?;
        if e.fast.is_some() {
            return Err(FastError::InProgress(mn_id.to_owned()));
        }
        let seq = self.next_hi_sequence();
        let mode = self.fast_mode();
        if let Some(e) = self.bul.get_mut(mn_id) {
            e.fast = Some(FastHandover {
                mode,
                role: FastRole::Previous,
                phase: FastPhase::Initiating,
                peer: Some(new_mag),
                started: now,
                node_left: false,
                sequence: seq,
                tries: 0,
                deadline: now,
                forward_asked: false,
            });
        }
        self.send_context_hi(now, mn_id);
        self.event(MagEvent::HandoverStarted {
            mn_id: mn_id.to_owned(),
            mode: FastHandoverMode::Predictive,
            role: FastRole::Previous,
            peer: new_mag,
        });
        Ok(())
    }

    /// Reactive fast handover (RFC 5949 §4.1, Figure 3 step (b)): the access network says the
    /// node with `link_layer` is coming from the MAG at `previous_mag` (its Old AP ID). When it
    /// attaches, this MAG asks that MAG for its context and packets.
    pub fn expect_arrival(
        &mut self,
        now: Instant,
        link_layer: LinkLayerAddress,
        previous_mag: Ipv6Addr,
    ) {
        if previous_mag == self.config.proxy_coa {
            return;
        }
        let until = now + self.handover_timeout();
        self.expected.retain(|_, (_, u)| *u > now);
        self.expected.insert(link_layer, (previous_mag, until));
    }

    pub(super) fn next_hi_sequence(&mut self) -> SequenceNumber {
        let s = self.next_hi_seq;
        self.next_hi_seq = s.next();
        s
    }

    /// PMAG, predictive: (re)sends the HI with the node's context (F and U set: forward, and
    /// buffer at the NMAG until the node arrives).
    fn send_context_hi(&mut self, now: Instant, mn_id: &str) {
        let lma = self.config.lma_address;
        let src = self.config.proxy_coa;
        let Some(e) = self.bul.get(mn_id) else {
            return;
        };
        let Some(f) = e.fast.as_ref() else {
            return;
        };
        let Some(peer) = f.peer else {
            return;
        };
        let iid = e.link_layer.eui64_interface_id().unwrap_or([0; 8]);
        let opts = context_options(e, lma, &iid);
        let m = Message::HandoverInitiate(HandoverInitiate {
            sequence: f.sequence,
            flags: HiFlags::P | HiFlags::F | HiFlags::U,
            code: HiCode::AllAvailableContextTransferred,
            options: Options::List(&opts),
        });
        let t = crate::emit(&m, src, peer);
        self.arm_hi_retransmission(now, mn_id);
        if let Some(t) = t {
            self.push(MagOutput::Transmit(t));
        }
    }

    /// NMAG, reactive: (re)sends the HI asking the PMAG for the node's context and to keep
    /// buffering its packets ('U'), or, once the context is in place, for the packets ('F').
    fn send_request_hi(&mut self, now: Instant, mn_id: &str) {
        let src = self.config.proxy_coa;
        let Some(e) = self.bul.get(mn_id) else {
            return;
        };
        let Some(f) = e.fast.as_ref() else {
            return;
        };
        let Some(peer) = f.peer else {
            return;
        };
        let mut buf = [0u8; 4];
        let Some(cr) = ContextRequest::encode_types(
            &[
                OptionType::HomeNetworkPrefix,
                OptionType::MnLinkLayerIdentifier,
            ],
            &mut buf,
        ) else {
            return;
        };
        let opts = [
            MobilityOption::MobileNodeIdentifier {
                subtype: MN_ID_SUBTYPE_NAI,
                id: e.mn_id.as_bytes(),
            },
            MobilityOption::ContextRequest(cr),
        ];
        let (flags, opts) = if f.forward_asked {
            (HiFlags::P | HiFlags::F, &opts[..1])
        } else {
            (HiFlags::P | HiFlags::U, &opts[..])
        };
        let m = Message::HandoverInitiate(HandoverInitiate {
            sequence: f.sequence,
            flags,
            code: HiCode::Default,
            options: Options::List(opts),
        });
        let t = crate::emit(&m, src, peer);
        self.arm_hi_retransmission(now, mn_id);
        if let Some(t) = t {
            self.push(MagOutput::Transmit(t));
        }
    }

    fn arm_hi_retransmission(&mut self, now: Instant, mn_id: &str) {
        let Some(f) = self.bul.get_mut(mn_id).and_then(|e| e.fast.as_mut()) else {
            return;
        };
        let wait = HI_TIMEOUT * (1 << f.tries.min(4));
        f.tries += 1;
        let at = now + wait;
        self.set_fast_deadline(mn_id, at);
    }

    pub(super) fn set_fast_deadline(&mut self, mn_id: &str, at: Instant) {
        let Some(f) = self.bul.get_mut(mn_id).and_then(|e| e.fast.as_mut()) else {
            return;
        };
        self.fast_schedule.remove(&(f.deadline, mn_id.to_owned()));
        f.deadline = at;
        self.fast_schedule.insert((at, mn_id.to_owned()));
    }

    pub(super) fn clear_fast(&mut self, mn_id: &str) -> Option<FastHandover> {
        let f = self.bul.get_mut(mn_id).and_then(|e| e.fast.take())?;
        self.fast_schedule.remove(&(f.deadline, mn_id.to_owned()));
        Some(f)
    }

    /// A Handover Initiate from another MAG.
    pub(super) fn on_hi(
        &mut self,
        now: Instant,
        wall: WallClock,
        src: Ipv6Addr,
        dst: Ipv6Addr,
        hi: &HandoverInitiate<'_>,
    ) {
        let ack = |code: HackCode, opts: &[MobilityOption<'_>]| {
            let m = Message::HandoverAck(HandoverAck {
                sequence: hi.sequence,
                flags: HackFlags::P
                    | if hi.flags.contains(HiFlags::F) {
                        HackFlags::F
                    } else {
                        HackFlags::empty()
                    }
                    | if hi.flags.contains(HiFlags::U) {
                        HackFlags::U
                    } else {
                        HackFlags::empty()
                    },
                code,
                options: Options::List(opts),
            });
            crate::emit(&m, dst, src)
        };
        let ctx = match HandoverContext::of_hi(hi) {
            Ok(c) => c,
            Err(e) => {
                self.drop_message(src, format!("Handover Initiate: {e}"));
                return;
            }
        };
        let Some(mn_id) = ctx
            .opts
            .nai()
            .and_then(|b| core::str::from_utf8(b).ok())
            .map(str::to_owned)
        else {
            self.drop_message(src, "Handover Initiate without an NAI".into());
            return;
        };
        let id_opt = [MobilityOption::MobileNodeIdentifier {
            subtype: MN_ID_SUBTYPE_NAI,
            id: mn_id.as_bytes(),
        }];
        if self.fast_mode() == FastHandoverMode::Off {
            if let Some(t) = ack(HackCode::AdministrativelyProhibited, &id_opt) {
                self.push(MagOutput::Transmit(t));
            }
            return;
        }
        // Code 2: the NMAG says forwarding is complete (see the module docs).
        if hi.code == HiCode::CompletionOfForwarding {
            if let Some(t) = ack(HackCode::HandoverAccepted, &id_opt) {
                self.push(MagOutput::Transmit(t));
            }
            self.forwarding_complete(now, &mn_id, src);
            return;
        }
        let here = self.bul.get(&mn_id).map(|e| (e.is_bound(), e.fast.clone()));
        match here {
            // We are the PMAG and the NMAG asks (reactive, or a predictive HI crossing).
            Some((true, fast)) => {
                let iid = self
                    .bul
                    .get(&mn_id)
                    .and_then(|e| e.link_layer.eui64_interface_id())
                    .unwrap_or([0; 8]);
                let lma = self.config.lma_address;
                let forward = hi.flags.contains(HiFlags::F);
                let (opts, prefixes): (Vec<MobilityOption<'_>>, Vec<Ipv6Net>) =
                    match self.bul.get(&mn_id) {
                        Some(e) => (context_options(e, lma, &iid), e.prefixes.clone()),
                        None => return,
                    };
                if let Some(t) = ack(HackCode::AllAvailableContextTransferred, &opts) {
                    self.push(MagOutput::Transmit(t));
                }
                if forward {
                    let mode = fast.map_or(FastHandoverMode::Reactive, |f| f.mode);
                    self.start_forwarding(now, &mn_id, src, &prefixes, mode);
                } else if hi.flags.contains(HiFlags::U) {
                    self.hold_for_peer(now, &mn_id, src, &prefixes);
                }
                let _ = wall;
            }
            // We are the NMAG of a predictive handover: take the context, buffer.
            _ => {
                let prefixes: Vec<Ipv6Net> = ctx.home_network_prefixes().collect();
                let Some(ll) = ctx.opts.mn_link_layer_id.and_then(LinkLayerAddress::new) else {
                    if let Some(t) = ack(HackCode::RequestedContextNotAvailable, &id_opt) {
                        self.push(MagOutput::Transmit(t));
                    }
                    return;
                };
                if prefixes.is_empty() {
                    if let Some(t) = ack(HackCode::RequestedContextNotAvailable, &id_opt) {
                        self.push(MagOutput::Transmit(t));
                    }
                    return;
                }
                if let Some(t) = ack(HackCode::HandoverAccepted, &id_opt) {
                    self.push(MagOutput::Transmit(t));
                }
                if self
                    .bul
                    .get(&mn_id)
                    .is_some_and(|e| e.state == BulState::Expected)
                {
                    // A retransmitted HI: the context is already here.
                    return;
                }
                self.expect_with_context(
                    now,
                    &mn_id,
                    ll,
                    prefixes,
                    ctx.opts.access_technology_type,
                    src,
                );
            }
        }
    }

    /// NMAG, predictive: the node's context arrived; buffer its prefixes until it attaches.
    fn expect_with_context(
        &mut self,
        now: Instant,
        mn_id: &str,
        ll: LinkLayerAddress,
        prefixes: Vec<Ipv6Net>,
        att: Option<AccessTechnologyType>,
        pmag: Ipv6Addr,
    ) {
        self.forget(mn_id);
        let local_routing = self
            .policy
            .by_link_layer(&ll)
            .and_then(|p| p.local_routing)
            .unwrap_or(self.config.domain.enable_mag_local_routing);
        let mut e = self.new_entry(
            mn_id,
            ll,
            AccessLink(0),
            att.unwrap_or(AccessTechnologyType::Ieee8023),
            local_routing,
            now,
        );
        e.state = BulState::Expected;
        e.prefixes = prefixes.clone();
        e.handoff_hint = HandoffIndicator::HandoffBetweenMags;
        e.fast = Some(FastHandover {
            mode: FastHandoverMode::Predictive,
            role: FastRole::New,
            phase: FastPhase::Forwarding,
            peer: Some(pmag),
            started: now,
            node_left: false,
            sequence: SequenceNumber(0),
            tries: 0,
            deadline: now,
            forward_asked: false,
        });
        self.by_link_layer.insert(ll, mn_id.to_owned());
        self.bul.insert(mn_id.to_owned(), e);
        for p in &prefixes {
            self.push(MagOutput::Dataplane(DataplaneCommand::Buffer {
                prefix: *p,
            }));
        }
        let until = now + self.handover_timeout();
        self.set_fast_deadline(mn_id, until);
        self.event(MagEvent::HandoverStarted {
            mn_id: mn_id.to_owned(),
            mode: FastHandoverMode::Predictive,
            role: FastRole::New,
            peer: pmag,
        });
    }

    /// NMAG, predictive: the expected node attached. Flush its buffer to it, advertise its
    /// prefixes at once, send uplink through the PMAG and register with the LMA.
    pub(super) fn arrived_with_context(
        &mut self,
        now: Instant,
        wall: WallClock,
        mn_id: &str,
        link: AccessLink,
    ) {
        let Some(e) = self.bul.get_mut(mn_id) else {
            return;
        };
        e.link = link;
        e.attached_at = now;
        e.state = BulState::Registering;
        let prefixes = e.prefixes.clone();
        let ll = e.link_layer;
        let pmag = e.fast.as_ref().and_then(|f| f.peer);
        for p in &prefixes {
            // The buffer hands the node its packets, and keeps doing so for what still comes
            // through the previous MAG, until the PBA switches the route to the access link
            // (see `accepted`): nothing overtakes what was buffered.
            self.push(MagOutput::Dataplane(DataplaneCommand::FlushBuffer {
                prefix: *p,
                deliver: Some((link, ll)),
            }));
            if let Some(pmag) = pmag {
                self.push(MagOutput::Dataplane(DataplaneCommand::SetUplink {
                    prefix: *p,
                    peer: pmag,
                }));
            }
        }
        self.send_ra(now, mn_id);
        self.heartbeats.add_peer(self.config.lma_address, now);
        self.send_pbu(now, wall, mn_id, false);
    }

    /// NMAG, reactive: the node attached and its previous MAG is known: ask it for the
    /// context and the packets (the PBU has gone out already).
    pub(super) fn start_reactive(&mut self, now: Instant, mn_id: &str, pmag: Ipv6Addr) {
        let seq = self.next_hi_sequence();
        if let Some(e) = self.bul.get_mut(mn_id) {
            e.fast = Some(FastHandover {
                mode: FastHandoverMode::Reactive,
                role: FastRole::New,
                phase: FastPhase::Initiating,
                peer: Some(pmag),
                started: now,
                node_left: false,
                sequence: seq,
                tries: 0,
                deadline: now,
                forward_asked: false,
            });
        }
        self.send_request_hi(now, mn_id);
        self.event(MagEvent::HandoverStarted {
            mn_id: mn_id.to_owned(),
            mode: FastHandoverMode::Reactive,
            role: FastRole::New,
            peer: pmag,
        });
    }

    /// PMAG, reactive: the NMAG has the node and asks to keep its packets ('U') until it is
    /// ready for them. Buffer them if that has not started (the node's departure may not have
    /// been seen here yet).
    fn hold_for_peer(&mut self, now: Instant, mn_id: &str, nmag: Ipv6Addr, prefixes: &[Ipv6Net]) {
        let mode = self.fast_mode();
        let Some(e) = self.bul.get_mut(mn_id) else {
            return;
        };
        let buffering = match e.fast.as_mut() {
            Some(f) if f.phase == FastPhase::Forwarding => return,
            Some(f) => {
                let was = f.node_left;
                f.node_left = true;
                f.peer = Some(nmag);
                was
            }
            None => {
                e.fast = Some(FastHandover {
                    mode,
                    role: FastRole::Previous,
                    phase: FastPhase::AwaitingPeer,
                    peer: Some(nmag),
                    started: now,
                    node_left: true,
                    sequence: SequenceNumber(0),
                    tries: 0,
                    deadline: now,
                    forward_asked: false,
                });
                false
            }
        };
        if !buffering {
            for p in prefixes {
                self.push(MagOutput::Dataplane(DataplaneCommand::Buffer {
                    prefix: *p,
                }));
            }
        }
        let until = now + self.handover_timeout();
        self.set_fast_deadline(mn_id, until);
    }

    /// PMAG: forward the node's downlink to the NMAG (and flush what was buffered).
    fn start_forwarding(
        &mut self,
        now: Instant,
        mn_id: &str,
        nmag: Ipv6Addr,
        prefixes: &[Ipv6Net],
        mode: FastHandoverMode,
    ) {
        let fresh = self
            .bul
            .get(mn_id)
            .and_then(|e| e.fast.as_ref())
            .is_none_or(|f| f.phase != FastPhase::Forwarding);
        let left = self
            .bul
            .get(mn_id)
            .and_then(|e| e.fast.as_ref())
            .is_some_and(|f| f.node_left);
        if let Some(e) = self.bul.get_mut(mn_id) {
            let f = e.fast.get_or_insert(FastHandover {
                mode,
                role: FastRole::Previous,
                phase: FastPhase::Forwarding,
                peer: Some(nmag),
                started: now,
                node_left: false,
                sequence: SequenceNumber(0),
                tries: 0,
                deadline: now,
                forward_asked: false,
            });
            f.phase = FastPhase::Forwarding;
            f.peer = Some(nmag);
        }
        if fresh {
            for p in prefixes {
                // What the buffer holds goes first, and what follows goes the same way.
                self.push(MagOutput::Dataplane(if left {
                    DataplaneCommand::ForwardBuffer {
                        prefix: *p,
                        peer: nmag,
                    }
                } else {
                    DataplaneCommand::ForwardDownlink {
                        prefix: *p,
                        peer: nmag,
                    }
                }));
            }
        }
        let until = now + self.handover_timeout();
        self.set_fast_deadline(mn_id, until);
    }

    /// A Handover Acknowledge from another MAG.
    pub(super) fn on_hack(
        &mut self,
        now: Instant,
        wall: WallClock,
        src: Ipv6Addr,
        hack: &HandoverAck<'_>,
    ) {
        let ctx = match HandoverContext::of_hack(hack) {
            Ok(c) => c,
            Err(e) => {
                self.drop_message(src, format!("Handover Acknowledge: {e}"));
                return;
            }
        };
        let Some(mn_id) = ctx
            .opts
            .nai()
            .and_then(|b| core::str::from_utf8(b).ok())
            .map(str::to_owned)
        else {
            return;
        };
        let Some(f) = self.bul.get(&mn_id).and_then(|e| e.fast.clone()) else {
            return;
        };
        if f.peer != Some(src) || f.sequence != hack.sequence || f.phase != FastPhase::Initiating {
            return;
        }
        let accepted = hack.code.value() < 128;
        if !accepted {
            self.clear_fast(&mn_id);
            self.register_if_waiting(now, wall, &mn_id);
            self.event(MagEvent::HandoverFailed {
                mn_id,
                mode: f.mode,
                role: f.role,
                reason: "refused by the peer MAG",
            });
            return;
        }
        match f.role {
            FastRole::Previous => {
                let prefixes = self
                    .bul
                    .get(&mn_id)
                    .map(|e| e.prefixes.clone())
                    .unwrap_or_default();
                self.start_forwarding(now, &mn_id, src, &prefixes, f.mode);
            }
            FastRole::New if f.forward_asked => {
                // Reactive, second HAck: the PMAG forwards now. If the PBA came meanwhile, the
                // handover is complete.
                let until = now + self.handover_timeout();
                let bound = self.bul.get_mut(&mn_id).is_some_and(|e| {
                    if let Some(fh) = e.fast.as_mut() {
                        fh.phase = FastPhase::Forwarding;
                    }
                    e.is_bound()
                });
                self.set_fast_deadline(&mn_id, until);
                if bound {
                    self.complete_as_new(now, &mn_id);
                } else {
                    self.register_if_waiting(now, wall, &mn_id);
                }
            }
            FastRole::New => {
                // Reactive, first HAck: the context. If the PBA has not come yet, the node is
                // served from it now (RFC 5949 §4.1: the NMAG "can create ... the routes for
                // the whole HNP(s), even before the mobile node performs Neighbor
                // Discovery"). With the routes in place, ask for the packets (HI with 'F'):
                // none of them arrives before there is a route to the node.
                let prefixes: Vec<Ipv6Net> = ctx.home_network_prefixes().collect();
                let seq = self.next_hi_sequence();
                if let Some(e) = self.bul.get_mut(&mn_id) {
                    if let Some(fh) = e.fast.as_mut() {
                        fh.forward_asked = true;
                        fh.sequence = seq;
                        fh.tries = 0;
                    }
                    if e.state == BulState::Registering && !prefixes.is_empty() {
                        e.prefixes = prefixes.clone();
                        let (link, lr) = (e.link, e.local_routing);
                        for p in &prefixes {
                            self.push(MagOutput::Dataplane(DataplaneCommand::SetAccessRoute {
                                prefix: *p,
                                link,
                                local_routing: lr,
                            }));
                            self.push(MagOutput::Dataplane(DataplaneCommand::SetUplink {
                                prefix: *p,
                                peer: src,
                            }));
                        }
                        self.send_ra(now, &mn_id);
                    }
                }
                self.send_request_hi(now, &mn_id);
            }
        }
    }

    /// NMAG: its registration completed; tell the PMAG to stop forwarding.
    pub(super) fn complete_as_new(&mut self, now: Instant, mn_id: &str) {
        let Some(f) = self.clear_fast(mn_id) else {
            return;
        };
        if let Some(pmag) = f.peer {
            let opts = [MobilityOption::MobileNodeIdentifier {
                subtype: MN_ID_SUBTYPE_NAI,
                id: mn_id.as_bytes(),
            }];
            let seq = self.next_hi_sequence();
            let m = Message::HandoverInitiate(HandoverInitiate {
                sequence: seq,
                flags: HiFlags::P | HiFlags::F,
                code: HiCode::CompletionOfForwarding,
                options: Options::List(&opts),
            });
            if let Some(t) = crate::emit(&m, self.config.proxy_coa, pmag) {
                self.push(MagOutput::Transmit(t));
            }
            self.event(MagEvent::HandoverCompleted {
                mn_id: mn_id.to_owned(),
                mode: f.mode,
                role: FastRole::New,
                peer: pmag,
                took: now - f.started,
            });
        }
    }

    /// PMAG: the NMAG's registration completed: the binding is the NMAG's now; drop the
    /// tunnel and the entry, without a de-registration.
    fn forwarding_complete(&mut self, now: Instant, mn_id: &str, nmag: Ipv6Addr) {
        let Some(e) = self.bul.get(mn_id) else {
            return;
        };
        if e.fast.as_ref().and_then(|f| f.peer) != Some(nmag) {
            return;
        }
        let prefixes = e.prefixes.clone();
        let link = e.link;
        let Some(f) = self.clear_fast(mn_id) else {
            return;
        };
        for p in &prefixes {
            self.push(MagOutput::Dataplane(DataplaneCommand::RemoveForward {
                prefix: *p,
            }));
            self.push(MagOutput::Dataplane(DataplaneCommand::RemoveUplink {
                prefix: *p,
            }));
            self.push(MagOutput::Dataplane(DataplaneCommand::RemoveAccessRoute {
                prefix: *p,
                link,
            }));
        }
        self.forget(mn_id);
        self.event(MagEvent::HandoverCompleted {
            mn_id: mn_id.to_owned(),
            mode: f.mode,
            role: FastRole::Previous,
            peer: nmag,
            took: now - f.started,
        });
    }

    /// PMAG: the node left its access link while fast handovers are on. In a predictive
    /// handover nothing changes (forwarding goes on); otherwise its downlink is buffered while
    /// the NMAG may still ask for it (reactive). Returns false when the caller should
    /// de-register as usual.
    pub(super) fn departed(&mut self, now: Instant, mn_id: &str) -> bool {
        if self.fast_mode() == FastHandoverMode::Off {
            return false;
        }
        let Some(e) = self.bul.get_mut(mn_id) else {
            return false;
        };
        if !e.is_bound() {
            return false;
        }
        let prefixes = e.prefixes.clone();
        let mode = self.config.domain.fast_handover.mode;
        match e.fast.as_mut() {
            Some(f) if f.role == FastRole::Previous => {
                f.node_left = true;
                if f.phase == FastPhase::Initiating {
                    // No HAck yet: keep the packets until it comes.
                    for p in &prefixes {
                        self.push(MagOutput::Dataplane(DataplaneCommand::Buffer {
                            prefix: *p,
                        }));
                    }
                }
                true
            }
            Some(_) => false,
            None => {
                e.fast = Some(FastHandover {
                    mode,
                    role: FastRole::Previous,
                    phase: FastPhase::AwaitingPeer,
                    peer: None,
                    started: now,
                    node_left: true,
                    sequence: SequenceNumber(0),
                    tries: 0,
                    deadline: now,
                    forward_asked: false,
                });
                for p in &prefixes {
                    self.push(MagOutput::Dataplane(DataplaneCommand::Buffer {
                        prefix: *p,
                    }));
                }
                let until = now + self.handover_timeout();
                self.set_fast_deadline(mn_id, until);
                true
            }
        }
    }

    /// A fast-handover timer: HI retransmission, or the handover timing out.
    pub(super) fn fast_timer(&mut self, now: Instant, wall: WallClock, mn_id: &str) {
        let Some(f) = self.bul.get(mn_id).and_then(|e| e.fast.clone()) else {
            return;
        };
        if f.phase == FastPhase::Initiating && f.tries < HI_TRIES {
            match f.role {
                FastRole::Previous => self.send_context_hi(now, mn_id),
                FastRole::New => {
                    // A silent PMAG must not hold the registration: the PBU goes at the first
                    // HI timeout.
                    self.register_if_waiting(now, wall, mn_id);
                    self.send_request_hi(now, mn_id);
                }
            }
            return;
        }
        // Timed out (or no HAck after every HI).
        let Some(f) = self.clear_fast(mn_id) else {
            return;
        };
        self.register_if_waiting(now, wall, mn_id);
        let Some(e) = self.bul.get(mn_id) else {
            return;
        };
        let prefixes = e.prefixes.clone();
        let state = e.state;
        let reason = match (f.role, f.phase) {
            (_, FastPhase::Initiating) => "no Handover Acknowledge",
            (FastRole::Previous, FastPhase::AwaitingPeer) if f.peer.is_some() => {
                "the new MAG did not ask for the packets"
            }
            (FastRole::Previous, FastPhase::AwaitingPeer) => "no new MAG asked for the node",
            _ => "the handover did not complete in time",
        };
        for p in &prefixes {
            self.push(MagOutput::Dataplane(DataplaneCommand::DiscardBuffer {
                prefix: *p,
            }));
            if f.role == FastRole::Previous && f.phase == FastPhase::Forwarding {
                self.push(MagOutput::Dataplane(DataplaneCommand::RemoveForward {
                    prefix: *p,
                }));
            }
        }
        self.event(MagEvent::HandoverFailed {
            mn_id: mn_id.to_owned(),
            mode: f.mode,
            role: f.role,
            reason,
        });
        match (f.role, state) {
            // The PMAG's node left and nobody took it over: de-register as without PFMIPv6.
            (FastRole::Previous, _) if f.node_left => {
                let ll = self.bul.get(mn_id).map(|e| e.link_layer);
                if let Some(ll) = ll {
                    self.detach_now(now, wall, &ll);
                }
            }
            // The NMAG's expected node never came.
            (FastRole::New, BulState::Expected) => self.forget(mn_id),
            _ => {}
        }
    }
}
