//! Fast handovers between MAGs (PFMIPv6, RFC 5949): Handover Initiate / Acknowledge with the
//! node's context, forwarding from the previous MAG (PMAG) to the new one (NMAG), and
//! buffering until the node shows up.
//!
//! [`FastHandovers`] owns every piece of RFC 5949 state: the handover in progress per binding
//! update list entry, the arrivals the access network announced, the HI sequence numbers. It
//! never calls into the [`Mag`](super::Mag): it reads the binding update list and returns
//! [`FastAction`]s (send this, program that, register this node, forget that one), which the
//! MAG carries out in order.
//!
//! - Predictive (RFC 5949 §4.1, Figure 2): the access network tells the PMAG that a node is
//!   about to move ([`Mag::handle_handover_indication`](super::Mag::handle_handover_indication)).
//!   The PMAG sends HI with the context; the NMAG answers HAck and buffers the node's
//!   prefixes; the PMAG forwards the node's downlink to it. When the node attaches at the
//!   NMAG, the buffer is flushed to it at once, it gets its Router Advertisement before any
//!   signalling with the LMA, and its uplink goes through the PMAG until the NMAG's own PBA is
//!   accepted. Then the NMAG tells the PMAG that forwarding is complete (HI, Code 2) and the
//!   inter-MAG tunnel goes.
//! - Reactive (Figure 3): the node moves unannounced. The PMAG, seeing it leave, buffers its
//!   downlink instead of de-registering it at once. The NMAG, told by its access network
//!   which MAG the node comes from ([`Mag::expect_arrival`](super::Mag::expect_arrival)),
//!   sends HI when the node attaches; the PMAG answers HAck with the context, flushes its
//!   buffer into the tunnel to the NMAG and forwards what still arrives. The NMAG registers
//!   once the packets are on their way (or the PMAG stays silent).
//!
//! One deviation, so that the two ends tear the tunnel down together: RFC 5949 lets the PMAG
//! send the HI with Code 2; here the NMAG sends it, because only the NMAG knows when its
//! registration with the LMA completed and the LMA stopped sending to the PMAG.

use core::time::Duration;
use std::collections::BTreeMap;
use std::net::Ipv6Addr;

use ipnet::{IpNet, Ipv6Net};

use super::MagEvent;
use super::bul::{BindingUpdateList, BulEntry, BulState};
use crate::config::{FastHandoverMode, MagConfig};
use crate::ipv4_pool::Ipv4HomeAddress;
use crate::output::AccessLink;
use crate::output::{DatapathCommand, Transmit};
use crate::time::{Instant, ms};
use crate::types::LinkLayerAddress;
use crate::wire::{
    AccessTechnologyType, ContextRequest, HackCode, HackFlags, HandoverAck, HandoverContext,
    HandoverInitiate, HiCode, HiFlags, LmaAddress, MN_ID_SUBTYPE_NAI, Message, MobilityOption,
    OptionType, Options, SequenceNumber,
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

/// A fast handover in progress for one binding update list entry.
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
    /// NMAG, reactive: the context came and the HI with the 'F' flag went out (RFC 5949
    /// §4.2: an HI with 'U' first, "followed by another HI message with the 'F' flag set at an
    /// appropriate time").
    pub(super) forward_asked: bool,
}

impl FastHandover {
    fn new(mode: FastHandoverMode, role: FastRole, phase: FastPhase, now: Instant) -> Self {
        FastHandover {
            mode,
            role,
            phase,
            peer: None,
            started: now,
            node_left: false,
            sequence: SequenceNumber(0),
            tries: 0,
            forward_asked: false,
        }
    }
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

/// What the fast-handover owner asks the MAG to do, in order. Node actions name the entry by
/// its link-layer address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum FastAction {
    Transmit(Transmit),
    Datapath(DatapathCommand),
    Event(MagEvent),
    /// A message from another MAG that could not be used.
    Dropped {
        from: Ipv6Addr,
        reason: String,
    },
    /// Arms (or with `None` disarms) the node's handover timer.
    Timer(LinkLayerAddress, Option<Instant>),
    /// Sends the node's first PBU unless its registration has begun.
    Register(LinkLayerAddress),
    /// NMAG, reactive: the context came before the PBA; serve the node from it (RFC 5949
    /// §5.2): its prefixes on its link, its uplink through the PMAG, a Router Advertisement.
    ServeFromContext {
        link_layer: LinkLayerAddress,
        prefixes: Vec<Ipv6Net>,
        ipv4: Option<Ipv4HomeAddress>,
        /// The MAG's link-local address on the node's link, when the context has it.
        link_local: Option<Ipv6Addr>,
        pmag: Ipv6Addr,
    },
    /// NMAG, predictive: the context came; create the node's entry (state `Expected`) and
    /// hand it back through [`FastHandovers::adopted`].
    Expect {
        mn_id: String,
        link_layer: LinkLayerAddress,
        prefixes: Vec<Ipv6Net>,
        ipv4: Option<Ipv4HomeAddress>,
        access_technology_type: Option<AccessTechnologyType>,
        /// The MAG's link-local address on the node's link, when the context has it.
        link_local: Option<Ipv6Addr>,
        pmag: Ipv6Addr,
    },
    /// PMAG: the node left and no MAG took it over: de-register it as without PFMIPv6.
    Deregister(LinkLayerAddress),
    /// The entry goes, without a de-registration.
    Forget(LinkLayerAddress),
}

type Out = Vec<FastAction>;

/// First wait for a HAck; doubled at every retransmission.
const HI_TIMEOUT: Duration = Duration::from_millis(250);
/// HI transmissions before the handover is given up.
const HI_TRIES: u32 = 4;

/// The context a PMAG sends (RFC 5949 §4.1 step (c), §6.2): MN-ID, prefixes, IPv4 home
/// address, LMA address, link-layer identifier, link-local interface identifier.
fn context_options(e: &BulEntry, lma: Ipv6Addr) -> Vec<MobilityOption<'_>> {
    let mut o = vec![MobilityOption::MobileNodeIdentifier {
        subtype: MN_ID_SUBTYPE_NAI,
        id: e.mn_id.as_bytes(),
    }];
    o.extend(
        e.prefixes
            .iter()
            .map(|p| MobilityOption::HomeNetworkPrefix(*p)),
    );
    // RFC 5949 §4.3, §6.2.7: the IPv4 home address, in the IPv4 Home Address Request format,
    // and the default router the LMA gave with it (RFC 5844 §3.3.3's option: the new MAG needs
    // it to be the node's router before its own PBA; see `context_ipv4`).
    if let Some(v4) = e.ipv4 {
        o.push(MobilityOption::Ipv4HomeAddressRequest {
            prefix_len: v4.prefix_len,
            address: v4.address,
        });
        o.push(MobilityOption::Ipv4DefaultRouterAddress(v4.default_router));
    }
    o.push(MobilityOption::LmaAddress(LmaAddress::V6(lma)));
    o.push(MobilityOption::MnLinkLayerIdentifier(
        e.link_layer.as_bytes(),
    ));
    o.push(MobilityOption::AccessTechnologyType(
        e.access_technology_type,
    ));
    // RFC 5949 §6.2.3: the interface identifier of the node's link-local address, the
    // modified EUI-64 of its link-layer address (6 or 8 bytes); none for another kind (an
    // identifier of zeros would be a wrong one).
    if let Some(iid) = e.link_layer.eui64_interface_id() {
        o.push(MobilityOption::MnLinkLocalInterfaceId(iid));
    }
    if !e.link_local.is_unspecified() {
        o.push(MobilityOption::LinkLocalAddress(e.link_local));
    }
    o
}

/// The link-local address the previous MAG used on the node's link (RFC 5949 §6.2.5: the
/// Link-local Address option of RFC 5213 in the context). A MAG in a domain whose LMA
/// generates these addresses (RFC 5213 §6.8) uses it on the new link before its own PBA, so
/// that the node's default router keeps its address.
fn context_link_local(ctx: &HandoverContext<'_>) -> Option<Ipv6Addr> {
    ctx.opts
        .link_local_address
        .filter(Ipv6Addr::is_unicast_link_local)
}

/// The IPv4 home address in a context (RFC 5949 §4.3, §6.2.7), with its default router.
///
/// RFC 5949 transfers the address alone (the IPv4 Address option, in the format of RFC 5844's
/// IPv4 Home Address Request), but a MAG serving the address before its PBA is the node's
/// IPv4 router on the link (RFC 5844 §3.2.3.2: ARP and DHCP for the default router the LMA
/// assigned). The reading taken: the context carries RFC 5844's IPv4 Default-Router Address
/// option too (an RFC 5949 context is "other mobility options as needed", §6.1.1), and a
/// context without it (a previous MAG that sends the §6.2.7 option alone) gives the new MAG
/// the address only from its PBA, as without fast handovers.
fn context_ipv4(ctx: &HandoverContext<'_>) -> Option<Ipv4HomeAddress> {
    let (prefix_len, address) = ctx.opts.ipv4_home_address_request?;
    let default_router = ctx.opts.ipv4_default_router?;
    let usable = |a: core::net::Ipv4Addr| !a.is_unspecified() && !a.is_broadcast();
    (usable(address) && usable(default_router) && (1..=32).contains(&prefix_len)).then_some(
        Ipv4HomeAddress {
            address,
            prefix_len,
            default_router,
        },
    )
}

/// The owner of every fast handover of one MAG.
#[derive(Debug)]
pub(super) struct FastHandovers {
    mode: FastHandoverMode,
    timeout: Duration,
    proxy_coa: Ipv6Addr,
    lma: Ipv6Addr,
    /// `fast_handover.end_marker_wait_ms`: 0 holds nothing for end markers.
    end_marker_wait_ms: u32,
    handovers: BTreeMap<LinkLayerAddress, FastHandover>,
    /// Reactive: nodes announced by the access network, with their previous MAG, until when
    /// the announcement holds.
    expected: BTreeMap<LinkLayerAddress, (Ipv6Addr, Instant)>,
    next_hi_seq: SequenceNumber,
}

impl FastHandovers {
    pub(super) fn new(config: &MagConfig, first_hi_sequence: SequenceNumber) -> Self {
        FastHandovers {
            mode: config.domain.fast_handover.mode,
            timeout: ms(config.domain.fast_handover.handover_timeout_ms),
            proxy_coa: config.proxy_coa,
            lma: config.lma_address,
            end_marker_wait_ms: config.domain.fast_handover.end_marker_wait_ms,
            handovers: BTreeMap::new(),
            expected: BTreeMap::new(),
            next_hi_seq: first_hi_sequence,
        }
    }

    pub(super) fn get(&self, ll: &LinkLayerAddress) -> Option<&FastHandover> {
        self.handovers.get(ll)
    }

    /// A node a fast handover is taking away from this MAG: it is refreshed and advertised by
    /// its new MAG from now on.
    pub(super) fn is_leaving(&self, ll: &LinkLayerAddress) -> bool {
        self.handovers
            .get(ll)
            .is_some_and(|f| f.role == FastRole::Previous && f.node_left)
    }

    /// This MAG is the node's new MAG and holds its context.
    pub(super) fn is_new_mag_of(&self, ll: &LinkLayerAddress) -> bool {
        self.handovers
            .get(ll)
            .is_some_and(|f| f.role == FastRole::New)
    }

    /// Drops the entry's handover without a word (the entry itself goes).
    pub(super) fn forget(&mut self, ll: &LinkLayerAddress) {
        self.handovers.remove(ll);
    }

    fn clear(&mut self, ll: LinkLayerAddress, out: &mut Out) -> Option<FastHandover> {
        let f = self.handovers.remove(&ll)?;
        out.push(FastAction::Timer(ll, None));
        Some(f)
    }

    fn next_hi_sequence(&mut self) -> SequenceNumber {
        let s = self.next_hi_seq;
        self.next_hi_seq = s.next();
        s
    }

    /// NMAG, before the node's PBU: what the LMA will send the node directly waits for the
    /// end marker the LMA sends the PMAG, which forwards it behind the node's older packets
    /// (see `DatapathCommand::EndMarker`). The marker is that of the node's first IPv6
    /// prefix, or of its IPv4 home address if it has none (IPv4 only, RFC 5844).
    fn hold_for_end_marker(&self, e: &BulEntry, out: &mut Out) {
        if self.end_marker_wait_ms == 0 {
            return;
        }
        let homes = e.home_nets();
        let Some(marker) = homes
            .iter()
            .find(|p| matches!(p, IpNet::V6(_)))
            .or(homes.first())
            .copied()
        else {
            return;
        };
        for prefix in homes {
            out.push(FastAction::Datapath(DatapathCommand::HoldForEndMarker {
                prefix,
                marker,
                lma: self.lma,
                wait_ms: self.end_marker_wait_ms,
            }));
        }
    }

    fn arm(&self, ll: LinkLayerAddress, at: Instant, out: &mut Out) {
        out.push(FastAction::Timer(ll, Some(at)));
    }

    /// Predictive fast handover (RFC 5949 §4.1 steps (b)-(c)): the access network says that
    /// the node of entry `e`, attached here, is about to move to the MAG at `new_mag`. Sends
    /// the HI.
    pub(super) fn start_predictive(
        &mut self,
        now: Instant,
        mn_id: &str,
        e: Option<&BulEntry>,
        new_mag: Ipv6Addr,
        out: &mut Out,
    ) -> Result<(), FastError> {
        if self.mode == FastHandoverMode::Off {
            return Err(FastError::Disabled);
        }
        if new_mag == self.proxy_coa {
            return Err(FastError::SameMag);
        }
        let e = e
            .filter(|e| e.is_bound())
            .ok_or_else(|| FastError::NotRegistered(mn_id.to_owned()))?;
        if self.handovers.contains_key(&e.link_layer) {
            return Err(FastError::InProgress(mn_id.to_owned()));
        }
        // The handover's mode, whatever the domain's: an indication makes it predictive.
        let mut f = FastHandover::new(
            FastHandoverMode::Predictive,
            FastRole::Previous,
            FastPhase::Initiating,
            now,
        );
        f.peer = Some(new_mag);
        f.sequence = self.next_hi_sequence();
        self.handovers.insert(e.link_layer, f);
        self.send_context_hi(now, e, out);
        out.push(FastAction::Event(MagEvent::HandoverStarted {
            mn_id: e.mn_id.clone(),
            mode: FastHandoverMode::Predictive,
            role: FastRole::Previous,
            peer: new_mag,
        }));
        Ok(())
    }

    /// Reactive fast handover (RFC 5949 §4.1, Figure 3 step (b)): the access network says the
    /// node with `link_layer` is coming from the MAG at `previous_mag` (its Old AP ID).
    pub(super) fn expect_arrival(
        &mut self,
        now: Instant,
        link_layer: LinkLayerAddress,
        previous_mag: Ipv6Addr,
    ) {
        if previous_mag == self.proxy_coa {
            return;
        }
        let until = now + self.timeout;
        self.expected.retain(|_, (_, u)| *u > now);
        self.expected.insert(link_layer, (previous_mag, until));
    }

    /// The previous MAG of a node that attaches now, if the access network announced it.
    pub(super) fn take_expected(
        &mut self,
        now: Instant,
        ll: &LinkLayerAddress,
    ) -> Option<Ipv6Addr> {
        self.expected
            .remove(ll)
            .filter(|(_, until)| *until > now)
            .map(|(m, _)| m)
            .filter(|_| self.mode != FastHandoverMode::Off)
    }

    /// PMAG, predictive: (re)sends the HI with the node's context (F and U set: forward, and
    /// buffer at the NMAG until the node arrives).
    fn send_context_hi(&mut self, now: Instant, e: &BulEntry, out: &mut Out) {
        let Some(f) = self.handovers.get(&e.link_layer) else {
            return;
        };
        let Some(peer) = f.peer else {
            return;
        };
        let opts = context_options(e, self.lma);
        let m = Message::HandoverInitiate(HandoverInitiate {
            sequence: f.sequence,
            flags: HiFlags::P | HiFlags::F | HiFlags::U,
            code: HiCode::AllAvailableContextTransferred,
            options: Options::List(&opts),
        });
        let t = crate::emit(&m, self.proxy_coa, peer);
        self.arm_hi_retransmission(now, e.link_layer, out);
        if let Some(t) = t {
            out.push(FastAction::Transmit(t));
        }
    }

    /// NMAG, reactive: (re)sends the HI asking the PMAG for the node's context and to keep
    /// buffering its packets ('U'), or, once the context is in place, for the packets ('F').
    fn send_request_hi(&mut self, now: Instant, e: &BulEntry, out: &mut Out) {
        let Some(f) = self.handovers.get(&e.link_layer) else {
            return;
        };
        let Some(peer) = f.peer else {
            return;
        };
        // §6.2.1: the HNP and the link-layer identifier by default; for a node with IPv4
        // service, its IPv4 home address (§6.2.7) and default router (see `context_ipv4`).
        // Not for others: a previous MAG "MUST return the HAck message with the Code value
        // 131" when requested context is not available.
        let types = [
            OptionType::HomeNetworkPrefix,
            OptionType::MnLinkLayerIdentifier,
            OptionType::Ipv4HomeAddressRequest,
            OptionType::Ipv4DefaultRouterAddress,
        ];
        let types = if e.ipv4_service {
            &types[..]
        } else {
            &types[..2]
        };
        let mut buf = [0u8; 8];
        let Some(cr) = ContextRequest::encode_types(types, &mut buf) else {
            return;
        };
        // The link-layer identifier names the interface, for a node with several (RFC 5213
        // §5.4).
        let opts = [
            MobilityOption::MobileNodeIdentifier {
                subtype: MN_ID_SUBTYPE_NAI,
                id: e.mn_id.as_bytes(),
            },
            MobilityOption::MnLinkLayerIdentifier(e.link_layer.as_bytes()),
            MobilityOption::ContextRequest(cr),
        ];
        let (flags, opts) = if f.forward_asked {
            (HiFlags::P | HiFlags::F, &opts[..2])
        } else {
            (HiFlags::P | HiFlags::U, &opts[..])
        };
        let m = Message::HandoverInitiate(HandoverInitiate {
            sequence: f.sequence,
            flags,
            code: HiCode::Default,
            options: Options::List(opts),
        });
        let t = crate::emit(&m, self.proxy_coa, peer);
        self.arm_hi_retransmission(now, e.link_layer, out);
        if let Some(t) = t {
            out.push(FastAction::Transmit(t));
        }
    }

    fn arm_hi_retransmission(&mut self, now: Instant, ll: LinkLayerAddress, out: &mut Out) {
        let Some(f) = self.handovers.get_mut(&ll) else {
            return;
        };
        let wait = HI_TIMEOUT * (1 << f.tries.min(4));
        f.tries += 1;
        self.arm(ll, now + wait, out);
    }

    /// A Handover Initiate from another MAG.
    pub(super) fn on_hi(
        &mut self,
        now: Instant,
        src: Ipv6Addr,
        dst: Ipv6Addr,
        hi: &HandoverInitiate<'_>,
        bul: &BindingUpdateList,
        out: &mut Out,
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
            crate::emit(&m, dst, src).map(FastAction::Transmit)
        };
        let ctx = match HandoverContext::of_hi(hi) {
            Ok(c) => c,
            Err(e) => {
                out.push(FastAction::Dropped {
                    from: src,
                    reason: format!("Handover Initiate: {e}"),
                });
                return;
            }
        };
        let Some(mn_id) = ctx
            .opts
            .nai()
            .and_then(|b| core::str::from_utf8(b).ok())
            .map(str::to_owned)
        else {
            out.push(FastAction::Dropped {
                from: src,
                reason: "Handover Initiate without an NAI".into(),
            });
            return;
        };
        let id_opt = [MobilityOption::MobileNodeIdentifier {
            subtype: MN_ID_SUBTYPE_NAI,
            id: mn_id.as_bytes(),
        }];
        if self.mode == FastHandoverMode::Off {
            out.extend(ack(HackCode::AdministrativelyProhibited, &id_opt));
            return;
        }
        let ctx_ll = ctx.opts.mn_link_layer_id.and_then(LinkLayerAddress::new);
        // Code 2: the NMAG says forwarding is complete (see the module docs).
        if hi.code == HiCode::CompletionOfForwarding {
            out.extend(ack(HackCode::HandoverAccepted, &id_opt));
            self.forwarding_complete(now, &mn_id, ctx_ll, src, bul, out);
            return;
        }
        let here = ctx_ll
            .and_then(|l| bul.get(&l).filter(|e| e.mn_id == mn_id))
            .or_else(|| bul.of_mn_id(&mn_id).next());
        // A previous MAG's context (Code 3) for a node that is on one of our links already:
        // it arrived before the HI (the first one was lost, or slow). RFC 5949 §4.1 does not
        // cover that order; the reading taken: we are its new MAG, the context is accepted
        // (Code 5, §6.1.2) but not used, since our own registration is under way or done,
        // and the previous MAG's forwarding ends when that registration completes, as in a
        // predictive handover. The node's entry is neither replaced by an expected one nor
        // taken for a node leaving us.
        if hi.code == HiCode::AllAvailableContextTransferred
            && let Some(e) = here.filter(|e| {
                matches!(
                    e.state,
                    BulState::Registering | BulState::Bound | BulState::Refreshing
                ) && ctx_ll.is_none_or(|l| l == e.link_layer)
            })
            && self
                .handovers
                .get(&e.link_layer)
                .is_none_or(|f| f.role == FastRole::New)
        {
            out.extend(ack(HackCode::ContextTransferAccepted, &id_opt));
            if self.handovers.contains_key(&e.link_layer) {
                return;
            }
            let mut f = FastHandover::new(
                FastHandoverMode::Predictive,
                FastRole::New,
                FastPhase::Forwarding,
                now,
            );
            f.peer = Some(src);
            self.handovers.insert(e.link_layer, f);
            out.push(FastAction::Event(MagEvent::HandoverStarted {
                mn_id: e.mn_id.clone(),
                mode: FastHandoverMode::Predictive,
                role: FastRole::New,
                peer: src,
            }));
            if e.is_bound() {
                self.complete_as_new(now, e, out);
            } else {
                self.arm(e.link_layer, now + self.timeout, out);
            }
            return;
        }
        match here {
            // We are the PMAG and the NMAG asks (reactive, or a predictive HI crossing).
            Some(e) if e.is_bound() => {
                let opts = context_options(e, self.lma);
                // RFC 5949 §4.1 (d), §6.1.2: a Context Request naming only context this MAG
                // does not hold is answered with Code 131 and no context, and nothing is
                // forwarded for it; otherwise every context held goes, asked for or not.
                if ctx.opts.context_request.is_some_and(|r| {
                    r.iter().next().is_some()
                        && !r
                            .iter()
                            .any(|(t, _)| opts.iter().any(|o| o.option_type() == t))
                }) {
                    out.extend(ack(HackCode::RequestedContextNotAvailable, &id_opt));
                    return;
                }
                out.extend(ack(HackCode::AllAvailableContextTransferred, &opts));
                if hi.flags.contains(HiFlags::F) {
                    let mode = self
                        .handovers
                        .get(&e.link_layer)
                        .map_or(FastHandoverMode::Reactive, |f| f.mode);
                    self.start_forwarding(now, e, src, mode, out);
                } else if hi.flags.contains(HiFlags::U) {
                    self.hold_for_peer(now, e, src, out);
                }
            }
            // We are the NMAG of a predictive handover: take the context, buffer.
            _ => {
                let prefixes: Vec<Ipv6Net> = ctx.home_network_prefixes().collect();
                let ipv4 = context_ipv4(&ctx);
                let Some(ll) = ctx_ll else {
                    out.extend(ack(HackCode::RequestedContextNotAvailable, &id_opt));
                    return;
                };
                // §4.1: the context is "the HNP(s) and/or IPv4-MN-HoA".
                if prefixes.is_empty() && ipv4.is_none() {
                    out.extend(ack(HackCode::RequestedContextNotAvailable, &id_opt));
                    return;
                }
                // §6.1.2: a PMAG-initiated HI with the context is answered with Code 5,
                // "Context Transfer Accepted or Successful".
                out.extend(ack(HackCode::ContextTransferAccepted, &id_opt));
                if here.is_some_and(|e| e.state == BulState::Expected) {
                    // A retransmitted HI: the context is already here.
                    return;
                }
                out.push(FastAction::Expect {
                    mn_id,
                    link_layer: ll,
                    prefixes,
                    ipv4,
                    access_technology_type: ctx.opts.access_technology_type,
                    link_local: context_link_local(&ctx),
                    pmag: src,
                });
            }
        }
    }

    /// NMAG, predictive: the MAG created the entry `e` of an expected node from its context:
    /// buffer its prefixes until it attaches.
    pub(super) fn adopted(&mut self, now: Instant, e: &BulEntry, pmag: Ipv6Addr, out: &mut Out) {
        let mut f = FastHandover::new(
            FastHandoverMode::Predictive,
            FastRole::New,
            FastPhase::Forwarding,
            now,
        );
        f.peer = Some(pmag);
        self.handovers.insert(e.link_layer, f);
        for p in e.home_nets() {
            out.push(FastAction::Datapath(DatapathCommand::Buffer { prefix: p }));
        }
        self.arm(e.link_layer, now + self.timeout, out);
        out.push(FastAction::Event(MagEvent::HandoverStarted {
            mn_id: e.mn_id.clone(),
            mode: FastHandoverMode::Predictive,
            role: FastRole::New,
            peer: pmag,
        }));
    }

    /// NMAG, predictive: the expected node of entry `e` attached (the MAG has put it on its
    /// link). Flush its buffer to it and send its uplink through the PMAG until the PBA.
    pub(super) fn arrived(&mut self, e: &BulEntry, out: &mut Out) {
        let pmag = self.handovers.get(&e.link_layer).and_then(|f| f.peer);
        self.hold_for_end_marker(e, out);
        for p in e.home_nets() {
            // The buffer hands the node its packets, and keeps doing so for what still comes
            // through the previous MAG, until the PBA switches the route to the access link:
            // nothing overtakes what was buffered.
            out.push(FastAction::Datapath(DatapathCommand::FlushBuffer {
                prefix: p,
                deliver: Some((e.link, e.link_layer)),
            }));
            if let Some(pmag) = pmag {
                out.push(FastAction::Datapath(DatapathCommand::SetUplink {
                    prefix: p,
                    peer: pmag,
                }));
            }
        }
    }

    /// NMAG, reactive: the node of entry `e` attached and its previous MAG is known: ask it
    /// for the context and the packets.
    pub(super) fn start_reactive(
        &mut self,
        now: Instant,
        e: &BulEntry,
        pmag: Ipv6Addr,
        out: &mut Out,
    ) {
        let mut f = FastHandover::new(
            FastHandoverMode::Reactive,
            FastRole::New,
            FastPhase::Initiating,
            now,
        );
        f.peer = Some(pmag);
        f.sequence = self.next_hi_sequence();
        self.handovers.insert(e.link_layer, f);
        self.send_request_hi(now, e, out);
        out.push(FastAction::Event(MagEvent::HandoverStarted {
            mn_id: e.mn_id.clone(),
            mode: FastHandoverMode::Reactive,
            role: FastRole::New,
            peer: pmag,
        }));
    }

    /// PMAG, reactive: the NMAG has the node and asks to keep its packets ('U') until it is
    /// ready for them. Buffer them if that has not started (the node's departure may not have
    /// been seen here yet).
    fn hold_for_peer(&mut self, now: Instant, e: &BulEntry, nmag: Ipv6Addr, out: &mut Out) {
        let ll = e.link_layer;
        let buffering = match self.handovers.get_mut(&ll) {
            Some(f) if f.phase == FastPhase::Forwarding => return,
            Some(f) => {
                let was = f.node_left;
                f.node_left = true;
                f.peer = Some(nmag);
                was
            }
            None => {
                let mut f =
                    FastHandover::new(self.mode, FastRole::Previous, FastPhase::AwaitingPeer, now);
                f.peer = Some(nmag);
                f.node_left = true;
                self.handovers.insert(ll, f);
                false
            }
        };
        if !buffering {
            for p in e.home_nets() {
                out.push(FastAction::Datapath(DatapathCommand::Buffer { prefix: p }));
            }
        }
        self.arm(ll, now + self.timeout, out);
    }

    /// PMAG: forward the node's downlink to the NMAG (and flush what was buffered).
    fn start_forwarding(
        &mut self,
        now: Instant,
        e: &BulEntry,
        nmag: Ipv6Addr,
        mode: FastHandoverMode,
        out: &mut Out,
    ) {
        let ll = e.link_layer;
        let current = self.handovers.get(&ll);
        let fresh = current.is_none_or(|f| f.phase != FastPhase::Forwarding);
        let left = current.is_some_and(|f| f.node_left);
        let acknowledged = current.is_some_and(|f| f.phase == FastPhase::Initiating);
        let f = self.handovers.entry(ll).or_insert_with(|| {
            FastHandover::new(mode, FastRole::Previous, FastPhase::Forwarding, now)
        });
        f.phase = FastPhase::Forwarding;
        f.peer = Some(nmag);
        if fresh {
            for p in e.home_nets() {
                // What the buffer holds goes first, and what follows goes the same way.
                out.push(FastAction::Datapath(if left {
                    DatapathCommand::ForwardBuffer {
                        prefix: p,
                        peer: nmag,
                    }
                } else {
                    DatapathCommand::SetDownlink {
                        prefix: p,
                        peer: nmag,
                    }
                }));
            }
        }
        self.arm(ll, now + self.timeout, out);
        if acknowledged {
            out.push(FastAction::Event(MagEvent::HandoverAcknowledged {
                mn_id: e.mn_id.clone(),
                peer: nmag,
            }));
        }
    }

    /// A Handover Acknowledge from another MAG.
    pub(super) fn on_hack(
        &mut self,
        now: Instant,
        src: Ipv6Addr,
        hack: &HandoverAck<'_>,
        bul: &BindingUpdateList,
        out: &mut Out,
    ) {
        let ctx = match HandoverContext::of_hack(hack) {
            Ok(c) => c,
            Err(e) => {
                out.push(FastAction::Dropped {
                    from: src,
                    reason: format!("Handover Acknowledge: {e}"),
                });
                return;
            }
        };
        let Some(mn_id) = ctx.opts.nai().and_then(|b| core::str::from_utf8(b).ok()) else {
            return;
        };
        // The entry whose outstanding HI this answers.
        let Some(e) = bul.of_mn_id(mn_id).find(|e| {
            self.handovers.get(&e.link_layer).is_some_and(|f| {
                f.peer == Some(src)
                    && f.sequence == hack.sequence
                    && f.phase == FastPhase::Initiating
            })
        }) else {
            return;
        };
        let ll = e.link_layer;
        let Some(f) = self.handovers.get(&ll).cloned() else {
            return;
        };
        if hack.code.value() >= 128 {
            self.clear(ll, out);
            out.push(FastAction::Register(ll));
            out.push(FastAction::Event(MagEvent::HandoverFailed {
                mn_id: e.mn_id.clone(),
                mode: f.mode,
                role: f.role,
                reason: "refused by the peer MAG",
            }));
            return;
        }
        match f.role {
            FastRole::Previous => self.start_forwarding(now, e, src, f.mode, out),
            FastRole::New if f.forward_asked => {
                // Reactive, second HAck: the PMAG forwards now. If the PBA came meanwhile, the
                // handover is complete.
                if let Some(fh) = self.handovers.get_mut(&ll) {
                    fh.phase = FastPhase::Forwarding;
                }
                self.arm(ll, now + self.timeout, out);
                // The PMAG's forwarding starts now, the end marker behind it (in its buffer,
                // if the LMA already moved the binding).
                self.hold_for_end_marker(e, out);
                if e.is_bound() {
                    self.complete_as_new(now, e, out);
                } else {
                    out.push(FastAction::Register(ll));
                }
            }
            FastRole::New => {
                // Reactive, first HAck: the context. If the PBA has not come yet, the node is
                // served from it now (RFC 5949 §4.1: the NMAG "can create ... the routes for
                // the whole HNP(s), even before the mobile node performs Neighbor
                // Discovery"). With the routes in place, ask for the packets (HI with 'F'):
                // none of them arrives before there is a route to the node.
                let prefixes: Vec<Ipv6Net> = ctx.home_network_prefixes().collect();
                let ipv4 = context_ipv4(&ctx);
                let seq = self.next_hi_sequence();
                if let Some(fh) = self.handovers.get_mut(&ll) {
                    fh.forward_asked = true;
                    fh.sequence = seq;
                    fh.tries = 0;
                }
                if e.state == BulState::Registering && (!prefixes.is_empty() || ipv4.is_some()) {
                    out.push(FastAction::ServeFromContext {
                        link_layer: ll,
                        prefixes,
                        ipv4,
                        link_local: context_link_local(&ctx),
                        pmag: src,
                    });
                }
                self.send_request_hi(now, e, out);
            }
        }
    }

    /// The LMA accepted the first registration of entry `e`: as the NMAG whose packets are on
    /// their way, the handover is complete.
    pub(super) fn registered(&mut self, now: Instant, e: &BulEntry, out: &mut Out) {
        if self
            .handovers
            .get(&e.link_layer)
            .is_some_and(|f| f.role == FastRole::New && f.phase == FastPhase::Forwarding)
        {
            // (A reactive NMAG still waiting for the PMAG's packets completes when they come.)
            self.complete_as_new(now, e, out);
        }
    }

    /// NMAG: its registration completed; tell the PMAG to stop forwarding.
    fn complete_as_new(&mut self, now: Instant, e: &BulEntry, out: &mut Out) {
        let Some(f) = self.clear(e.link_layer, out) else {
            return;
        };
        let Some(pmag) = f.peer else {
            return;
        };
        let opts = [
            MobilityOption::MobileNodeIdentifier {
                subtype: MN_ID_SUBTYPE_NAI,
                id: e.mn_id.as_bytes(),
            },
            MobilityOption::MnLinkLayerIdentifier(e.link_layer.as_bytes()),
        ];
        let m = Message::HandoverInitiate(HandoverInitiate {
            sequence: self.next_hi_sequence(),
            flags: HiFlags::P | HiFlags::F,
            code: HiCode::CompletionOfForwarding,
            options: Options::List(&opts),
        });
        if let Some(t) = crate::emit(&m, self.proxy_coa, pmag) {
            out.push(FastAction::Transmit(t));
        }
        out.push(FastAction::Event(MagEvent::HandoverCompleted {
            mn_id: e.mn_id.clone(),
            mode: f.mode,
            role: FastRole::New,
            peer: pmag,
            took: now - f.started,
        }));
    }

    /// PMAG: the NMAG's registration completed: the binding is the NMAG's now; drop the
    /// tunnel and the entry, without a de-registration.
    fn forwarding_complete(
        &mut self,
        now: Instant,
        mn_id: &str,
        ll: Option<LinkLayerAddress>,
        nmag: Ipv6Addr,
        bul: &BindingUpdateList,
        out: &mut Out,
    ) {
        let Some(e) = bul.of_mn_id(mn_id).find(|e| {
            ll.is_none_or(|l| l == e.link_layer)
                && self
                    .handovers
                    .get(&e.link_layer)
                    .is_some_and(|f| f.peer == Some(nmag))
        }) else {
            return;
        };
        let Some(f) = self.clear(e.link_layer, out) else {
            return;
        };
        for p in e.home_nets() {
            out.push(FastAction::Datapath(DatapathCommand::RemoveDownlink {
                prefix: p,
            }));
            out.push(FastAction::Datapath(DatapathCommand::RemoveUplink {
                prefix: p,
            }));
            out.push(FastAction::Datapath(DatapathCommand::RemoveLinkRoute {
                prefix: p,
                link: e.link,
            }));
        }
        out.push(FastAction::Forget(e.link_layer));
        out.push(FastAction::Event(MagEvent::HandoverCompleted {
            mn_id: e.mn_id.clone(),
            mode: f.mode,
            role: FastRole::Previous,
            peer: nmag,
            took: now - f.started,
        }));
    }

    /// PMAG: the node of entry `e` left its access link while fast handovers are on. In a
    /// predictive handover nothing changes (forwarding goes on); otherwise its downlink is
    /// buffered while the NMAG may still ask for it (reactive). Returns false when the MAG
    /// should de-register as usual.
    pub(super) fn departed(&mut self, now: Instant, e: &BulEntry, out: &mut Out) -> bool {
        if self.mode == FastHandoverMode::Off || !e.is_bound() {
            return false;
        }
        let buffer = |out: &mut Out| {
            for p in e.home_nets() {
                out.push(FastAction::Datapath(DatapathCommand::Buffer { prefix: p }));
            }
        };
        match self.handovers.get_mut(&e.link_layer) {
            Some(f) if f.role == FastRole::Previous => {
                f.node_left = true;
                if f.phase == FastPhase::Initiating {
                    // No HAck yet: keep the packets until it comes.
                    buffer(out);
                }
                true
            }
            Some(_) => false,
            None => {
                let mut f =
                    FastHandover::new(self.mode, FastRole::Previous, FastPhase::AwaitingPeer, now);
                f.node_left = true;
                self.handovers.insert(e.link_layer, f);
                buffer(out);
                self.arm(e.link_layer, now + self.timeout, out);
                true
            }
        }
    }

    /// PMAG: the node of entry `e` came back to this MAG (on `link`) before its handover to
    /// another MAG completed: a ping-pong RFC 5949 does not cover. The handover is dropped and
    /// what it did to the node's downlink undone: what the buffer holds goes to the node, and
    /// packets that went to the new MAG come back to the access link. The MAG registers the
    /// node again (the binding may be the other MAG's by now). False when `e` was not leaving.
    pub(super) fn returned(
        &mut self,
        e: &BulEntry,
        link: AccessLink,
        local_routing: bool,
        out: &mut Out,
    ) -> bool {
        let ll = e.link_layer;
        if !self.is_leaving(&ll) {
            return false;
        }
        let Some(f) = self.clear(ll, out) else {
            return false;
        };
        for p in e.home_nets() {
            out.push(FastAction::Datapath(match f.phase {
                FastPhase::Forwarding => DatapathCommand::SetLinkRoute {
                    prefix: p,
                    link,
                    local_routing,
                },
                FastPhase::Initiating | FastPhase::AwaitingPeer => DatapathCommand::FlushBuffer {
                    prefix: p,
                    deliver: Some((link, ll)),
                },
            }));
        }
        out.push(FastAction::Event(MagEvent::HandoverFailed {
            mn_id: e.mn_id.clone(),
            mode: f.mode,
            role: f.role,
            reason: "the node came back before the handover completed",
        }));
        true
    }

    /// The handover timer of entry `e`: HI retransmission, or the handover timing out.
    pub(super) fn on_timer(&mut self, now: Instant, e: &BulEntry, out: &mut Out) {
        let ll = e.link_layer;
        let Some(f) = self.handovers.get(&ll).cloned() else {
            return;
        };
        if f.phase == FastPhase::Initiating && f.tries < HI_TRIES {
            match f.role {
                FastRole::Previous => self.send_context_hi(now, e, out),
                FastRole::New => {
                    // A silent PMAG must not hold the registration: the PBU goes at the first
                    // HI timeout.
                    out.push(FastAction::Register(ll));
                    self.send_request_hi(now, e, out);
                }
            }
            return;
        }
        // Timed out (or no HAck after every HI).
        self.clear(ll, out);
        out.push(FastAction::Register(ll));
        let reason = match (f.role, f.phase) {
            (_, FastPhase::Initiating) => "no Handover Acknowledge",
            (FastRole::Previous, FastPhase::AwaitingPeer) if f.peer.is_some() => {
                "the new MAG did not ask for the packets"
            }
            (FastRole::Previous, FastPhase::AwaitingPeer) => "no new MAG asked for the node",
            _ => "the handover did not complete in time",
        };
        for p in e.home_nets() {
            out.push(FastAction::Datapath(DatapathCommand::DiscardBuffer {
                prefix: p,
            }));
            if f.role == FastRole::Previous && f.phase == FastPhase::Forwarding {
                out.push(FastAction::Datapath(DatapathCommand::RemoveDownlink {
                    prefix: p,
                }));
            }
        }
        out.push(FastAction::Event(MagEvent::HandoverFailed {
            mn_id: e.mn_id.clone(),
            mode: f.mode,
            role: f.role,
            reason,
        }));
        match (f.role, e.state) {
            // The PMAG's node left and nobody took it over: de-register as without PFMIPv6.
            (FastRole::Previous, _) if f.node_left => out.push(FastAction::Deregister(ll)),
            // The NMAG's expected node never came.
            (FastRole::New, BulState::Expected) => out.push(FastAction::Forget(ll)),
            _ => {}
        }
    }
}
