//! The MAG's binding registration with the LMA (RFC 5213 §6.9): building and retransmitting
//! PBUs, processing PBAs, refreshing, and taking saved bindings back after a restart.

use core::time::Duration;

use std::net::Ipv4Addr;

use ipnet::Ipv6Net;

use super::bul::{BulEntry, BulState, SavedBinding};
use super::timer::Timer;
use super::{Mag, MagEvent, MagOutput, RETRY_HOLD_DOWN, Withdrawal};
use crate::config::{LinkLocalMode, ReplayProtection};
use crate::ipv4_pool::Ipv4HomeAddress;
use crate::output::{AccessLink, DatapathCommand};
use crate::time::{Instant, ms, secs};

/// TimestampValidityWindow (RFC 5213 §9.1): how far apart two clocks in step may be.
const TIMESTAMP_VALIDITY_WINDOW: Duration = Duration::from_millis(300);
use crate::types::LinkLayerAddress;
use crate::wire::{
    BindingUpdate, BuFlags, HandoffIndicator, Lifetime, MN_ID_SUBTYPE_NAI, Message, MobilityOption,
    Options, ProxyBindingAck, SequenceNumber, Status, Timestamp, WallClock,
};

impl Mag {
    /// Sends (or re-sends) the entry's PBU: registration, refresh or de-registration. Every
    /// transmission carries a fresh timestamp and a new sequence number (RFC 5213 §6.9.4).
    pub(super) fn send_pbu(
        &mut self,
        now: Instant,
        wall: WallClock,
        ll: LinkLayerAddress,
        deregister: bool,
    ) {
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
                .get(&ll)
                .map(|e| e.sequence.next())
                .unwrap_or_default()
        };
        let lma = self.config.lma_address;
        let src = self.config.proxy_coa;
        let max_timeout = ms(self.config.timers.max_bindack_timeout_ms);
        let initial = ms(self.config.timers.initial_bindack_timeout_ms);
        let Some(e) = self.bul.get_mut(&ll) else {
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
        // RFC 5844 §3.2.3.3: a selective de-registration of the IPv4 home address has no
        // prefix option, exactly one IPv4 Home Address Request naming the address and its
        // prefix length, and lifetime 0.
        let release = e.ipv4_release.map(|r| r.home);
        // RFC 5844 §3.2.3.1: prefix options only when IPv6 service is wanted.
        let prefixes: &[Ipv6Net] = if release.is_some() || !e.ipv6_service {
            &[]
        } else if e.prefixes.is_empty() {
            &all_zero
        } else {
            &e.prefixes
        };
        // RFC 5844 §3.2.3.1 and §3.2.3.3: exactly one IPv4 Home Address Request, with the
        // assigned address (and its prefix length) once there is one, else the pinned
        // address, else ALL_ZERO. The prefix length of a pinned address is not known here:
        // 0, which the LMA ignores (it uses its pool's).
        let ipv4_request = match release {
            Some(v4) => Some((v4.prefix_len, v4.address)),
            None => e.ipv4_service.then(|| match e.ipv4 {
                Some(v4) => (v4.prefix_len, v4.address),
                None => (0, e.ipv4_request.unwrap_or(Ipv4Addr::UNSPECIFIED)),
            }),
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
        if let Some((prefix_len, address)) = ipv4_request {
            opts.push(MobilityOption::Ipv4HomeAddressRequest {
                prefix_len,
                address,
            });
        }
        let m = Message::BindingUpdate(BindingUpdate {
            sequence: seq,
            flags: BuFlags::A | BuFlags::P,
            lifetime: if deregister || release.is_some() {
                Lifetime::ZERO
            } else {
                requested_lifetime
            },
            options: Options::List(&opts),
        });
        let t = crate::emit(&m, src, lma);
        let deadline = if deregister || release.is_some() || e.state == BulState::Deregistering {
            // RFC 5213 §6.9.1.4: the entry goes (or, for a selective de-registration of the
            // IPv4 home address, the address) after INITIAL_BINDACK_TIMEOUT at most.
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
        self.set_deadline(ll, Some(deadline));
        if let Some(t) = t {
            self.push(MagOutput::Transmit(t));
        }
    }

    /// Sends a refresh for every bound node (after an LMA restart, or on request).
    pub fn reregister_all(&mut self, now: Instant, wall: WallClock) {
        let due: Vec<LinkLayerAddress> = self
            .bul
            .iter()
            .filter(|e| e.is_bound() && !self.fast.is_leaving(&e.link_layer))
            .map(|e| e.link_layer)
            .collect();
        for ll in due {
            self.start_refresh(now, wall, ll);
        }
    }

    pub(super) fn start_refresh(&mut self, now: Instant, wall: WallClock, ll: LinkLayerAddress) {
        let initial = ms(self.config.timers.initial_bindack_timeout_ms);
        if let Some(e) = self.bul.get_mut(&ll) {
            e.state = BulState::Refreshing;
            e.transmissions = 0;
            e.retransmit_timeout = initial;
        }
        self.send_pbu(now, wall, ll, false);
    }

    /// RFC 5213 §6.9.1.2.
    pub(super) fn on_pba(&mut self, now: Instant, wall: WallClock, pba: &ProxyBindingAck<'_>) {
        // Every PBA received counts by its status, de-registration acknowledgements and the
        // ones ignored below included: the total is the sum of the statuses.
        self.stats.pba_received += 1;
        self.stats.pba_by_status[usize::from(pba.status.value())] += 1;
        let Some(id) = pba.opts.nai().and_then(|b| core::str::from_utf8(b).ok()) else {
            return;
        };
        let mn_id = id.to_owned();
        // Rule 5: it must answer an outstanding PBU.
        let Some(e) = self.pba_entry(&mn_id, pba) else {
            if self.bul.of_mn_id(&mn_id).next().is_some() {
                self.event(MagEvent::PbaIgnored {
                    mn_id,
                    reason: "does not match an outstanding PBU",
                });
            }
            return;
        };
        let ll = e.link_layer;
        // Rule 6: the echoed options must be those of the PBU (the MN-ID matched above).
        let echo_ok = pba
            .opts
            .handoff_indicator
            .is_none_or(|h| h == e.last_handoff_indicator)
            && pba
                .opts
                .access_technology_type
                .is_none_or(|a| a == e.access_technology_type)
            && pba
                .opts
                .mn_link_layer_id
                .is_none_or(|l| l == e.link_layer.as_bytes());
        if !echo_ok {
            // "MUST NOT retransmit the Proxy Binding Update message until an administrative
            // action is taken". A de-registration is not retransmitted anyway: its entry
            // goes at its timer (§6.9.1.4).
            if e.state != BulState::Deregistering {
                self.halt(now, ll);
            }
            return self.event(MagEvent::PbaIgnored {
                mn_id,
                reason: "echoed options differ from the PBU: no PBU until an administrative action",
            });
        }
        if e.state == BulState::Deregistering {
            // RFC 5213 §6.9.1.4: done, whatever the status.
            self.forget(ll);
            self.event(MagEvent::Deregistered { mn_id });
            return;
        }
        if e.ipv4_release.is_some() {
            return self.ipv4_release_answered(now, ll, Some(pba.status));
        }
        if let Some(e) = self.bul.get_mut(&ll) {
            e.last_status = Some(pba.status);
        }
        if pba.status.is_accepted() {
            return self.accepted(now, wall, ll, pba);
        }
        self.refused(now, wall, ll, pba);
    }

    /// RFC 5213 §6.9.1.2 rule 5: the node's entry whose outstanding PBU `pba` answers, "by
    /// the sequence number" when the node has more than one. A sequence-number error carries
    /// the LMA's last accepted number instead of ours (RFC 6275 §9.5.1): its entry is the one
    /// whose link-layer identifier it echoes, or the node's only entry waiting for a PBA.
    fn pba_entry(&self, mn_id: &str, pba: &ProxyBindingAck<'_>) -> Option<&BulEntry> {
        let mut waiting = self.bul.of_mn_id(mn_id).filter(|e| {
            matches!(
                e.state,
                BulState::Registering | BulState::Refreshing | BulState::Deregistering
            )
        });
        if pba.status != Status::SequenceNumberOutOfWindow {
            return waiting.find(|e| e.sequence == pba.sequence);
        }
        let waiting: Vec<&BulEntry> = waiting.collect();
        match pba.opts.mn_link_layer_id {
            Some(l) => waiting.into_iter().find(|e| e.link_layer.as_bytes() == l),
            None => match waiting[..] {
                [only] => Some(only),
                _ => None,
            },
        }
    }

    fn accepted(
        &mut self,
        now: Instant,
        wall: WallClock,
        ll: LinkLayerAddress,
        pba: &ProxyBindingAck<'_>,
    ) {
        let lma = self.config.lma_address;
        let refresh_pct = u32::from(self.config.timers.refresh_at_percent);
        let ra_interval = secs(self.config.router_advertisement.interval_s);
        let Some(e) = self.bul.get_mut(&ll) else {
            return;
        };
        let mn_id = e.mn_id.clone();
        let prefixes: Vec<Ipv6Net> = pba
            .home_network_prefixes()
            // ALL_ZERO, whatever its Prefix Length (RFC 5213 §2.2), is no prefix.
            .filter(|p| !p.addr().is_unspecified())
            .collect();
        // RFC 5844 §3.2.3.2: IPv4 service only with an accepting IPv4 Home Address Reply
        // (and the default router the LMA gave); without one, none.
        let ipv4 = match (
            pba.opts.ipv4_home_address_reply,
            pba.opts.ipv4_default_router,
        ) {
            (Some((status, prefix_len, address)), Some(default_router))
                if e.ipv4_service && status.value() < 128 && !address.is_unspecified() =>
            {
                Some(Ipv4HomeAddress {
                    address,
                    prefix_len,
                    default_router,
                })
            }
            _ => None,
        };
        let dhcp_server = pba
            .options
            .iter()
            .any(|o| matches!(o, MobilityOption::Ipv4DhcpSupportMode { server: true }));
        if prefixes.is_empty() && ipv4.is_none() {
            self.event(MagEvent::PbaIgnored {
                mn_id,
                reason: "accepted without a home network prefix or an IPv4 home address",
            });
            return;
        }
        let first = e.state == BulState::Registering;
        let lifetime = Duration::from_secs(u64::from(pba.lifetime.as_secs()));
        let old_prefixes = core::mem::replace(&mut e.prefixes, prefixes.clone());
        let old_ipv4 = core::mem::replace(&mut e.ipv4, ipv4);
        e.dhcp_server = dhcp_server;
        let homes = e.home_nets();
        let served_before = e.served != homes;
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
        if first && !ra_interval.is_zero() {
            self.timers
                .set(Timer::RouterAdvertisement(ll), Some(now + ra_interval));
        }
        self.set_deadline(ll, Some(refresh_at));
        self.sync_lma_peer(now);
        let changed = first || old_prefixes != prefixes || old_ipv4 != ipv4 || served_before;
        if changed {
            // RFC 5844 §3.2.3.2: the node's IPv4 packets go through the tunnel, and the
            // address is routed onto its access link, like the prefixes.
            for p in homes.iter().copied() {
                self.push(MagOutput::Datapath(DatapathCommand::SetUplink {
                    prefix: p,
                    peer: lma,
                }));
                self.push(MagOutput::Datapath(DatapathCommand::SetLinkRoute {
                    prefix: p,
                    link,
                    local_routing,
                }));
            }
            self.send_ra(now, ll);
            // What was served before and is not the node's any more (a refresh that changed
            // the prefixes, or a context whose prefix the LMA did not confirm, RFC 5949 §5.2)
            // is withdrawn and unrouted; an IPv4 home address no longer assigned too (RFC 5844
            // §3.2.3.3).
            self.unserve(now, ll, &homes, Withdrawal::Prefixes);
            if let Some(e) = self.bul.get_mut(&ll) {
                e.served = homes;
            }
        }
        self.event(if first {
            MagEvent::Registered {
                mn_id,
                prefixes,
                after,
            }
        } else {
            MagEvent::Refreshed { mn_id }
        });
        if first {
            self.with_fast(now, wall, |f, bul, out| {
                if let Some(e) = bul.get(&ll) {
                    f.registered(now, e, out);
                }
            });
        }
    }

    fn refused(
        &mut self,
        now: Instant,
        wall: WallClock,
        ll: LinkLayerAddress,
        pba: &ProxyBindingAck<'_>,
    ) {
        let status = pba.status;
        let max_tx = self.config.timers.max_pbu_transmissions;
        match status {
            // Rule 8: re-assert with a fresh timestamp.
            Status::TimestampLowerThanPrevAccepted
                if self.bul.get(&ll).is_some_and(|e| e.transmissions < max_tx) =>
            {
                self.send_pbu(now, wall, ll, false);
                return;
            }
            // Rule 9: again only with a clock in step with the domain's. The PBA carries the
            // LMA's time: within TimestampValidityWindow (§9.1, 300 ms) of ours, the clock is
            // in step, and what the LMA refused was this PBU's timestamp (one equal to the
            // last accepted, which another MAG's PBU of the same instant can carry).
            Status::TimestampMismatch
                if self.bul.get(&ll).is_some_and(|e| e.transmissions < max_tx)
                    && pba.opts.timestamp.is_some_and(|lma| {
                        lma.abs_diff(Timestamp::from_wall_clock(wall)) <= TIMESTAMP_VALIDITY_WINDOW
                    }) =>
            {
                self.send_pbu(now, wall, ll, false);
                return;
            }
            // RFC 6275 §9.5.1: the PBA carries the last accepted sequence number.
            Status::SequenceNumberOutOfWindow => {
                if let Some(e) = self.bul.get_mut(&ll)
                    && e.transmissions < max_tx
                {
                    e.sequence = pba.sequence;
                    self.send_pbu(now, wall, ll, false);
                    return;
                }
            }
            // RFC 5844 §3.2.3.2: no IPv4 request until an administrative action; the node
            // keeps its IPv6 service if it has that.
            Status::NotAuthorizedForIpv4MobilityService => {
                if let Some(e) = self.bul.get_mut(&ll)
                    && e.ipv4_service
                    && e.ipv6_service
                {
                    e.ipv4_service = false;
                    e.ipv4 = None;
                    self.send_pbu(now, wall, ll, false);
                    return;
                }
            }
            // §3.2.3.2: likewise without prefix options, for a node with IPv4 service.
            Status::NotAuthorizedForIpv6MobilityService => {
                if let Some(e) = self.bul.get_mut(&ll)
                    && e.ipv6_service
                    && e.ipv4_service
                {
                    e.ipv6_service = false;
                    e.prefixes.clear();
                    self.send_pbu(now, wall, ll, false);
                    return;
                }
            }
            // §3.2.3.2: not the same address again, but any (ALL_ZERO) may be asked for.
            Status::NotAuthorizedForIpv4HomeAddress => {
                if let Some(e) = self.bul.get_mut(&ll)
                    && (e.ipv4_request.is_some() || e.ipv4.is_some())
                    && !e.is_bound()
                {
                    e.ipv4_request = None;
                    e.ipv4 = None;
                    self.send_pbu(now, wall, ll, false);
                    return;
                }
            }
            // Rule 10: ask for an allocation instead of the refused prefixes.
            Status::NotAuthorizedForHomeNetworkPrefix => {
                if let Some(e) = self.bul.get_mut(&ll)
                    && !e.prefixes.is_empty()
                    && !e.is_bound()
                {
                    e.prefixes.clear();
                    self.send_pbu(now, wall, ll, false);
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
        self.deny(now, ll, status, until);
    }

    /// RFC 5213 §6.9.1.2 rule 6: no more PBUs for the entry. A node never registered loses
    /// what a fast handover's context gave it; a registered one keeps its binding until it
    /// expires.
    fn halt(&mut self, now: Instant, ll: LinkLayerAddress) {
        let Some(e) = self.bul.get_mut(&ll) else {
            return;
        };
        let expiry = e.expires_at.filter(|_| e.registered_at.is_some());
        e.state = BulState::Halted;
        e.transmissions = 0;
        self.timers.set(Timer::RouterAdvertisement(ll), None);
        if expiry.is_none() {
            self.unserve(now, ll, &[], Withdrawal::PrefixesAndRouter);
        }
        self.set_deadline(ll, expiry);
    }

    fn deny(&mut self, now: Instant, ll: LinkLayerAddress, status: Status, until: Option<Instant>) {
        let Some(e) = self.bul.get_mut(&ll) else {
            return;
        };
        e.prefixes.clear();
        e.ipv4 = None;
        let mn_id = e.mn_id.clone();
        e.state = BulState::Denied { status, until };
        e.expires_at = None;
        self.timers.set(Timer::RouterAdvertisement(ll), None);
        self.unserve(now, ll, &[], Withdrawal::PrefixesAndRouter);
        self.set_deadline(ll, until);
        self.sync_lma_peer(now);
        self.event(MagEvent::Rejected { mn_id, status });
    }

    /// The registered nodes, to save across a restart of the MAG.
    pub fn save(&self) -> Vec<SavedBinding> {
        let mut v: Vec<SavedBinding> = self
            .bul
            .iter()
            .filter(|e| e.is_bound())
            .map(|e| SavedBinding {
                mn_id: e.mn_id.clone(),
                link_layer: e.link_layer,
                link: e.link.0,
                access_technology_type: e.access_technology_type.value(),
                prefixes: e.prefixes.clone(),
                link_local: e.link_local,
                local_routing: e.local_routing,
                ipv4: e.ipv4,
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
            if self.policy.by_link_layer(&s.link_layer).is_none()
                || (s.prefixes.is_empty() && s.ipv4.is_none())
            {
                continue;
            }
            let mut entry = BulEntry {
                mn_id: s.mn_id.clone(),
                link_layer: s.link_layer,
                link: AccessLink(s.link),
                access_technology_type: s.access_technology_type.into(),
                prefixes: s.prefixes.clone(),
                ipv4: s.ipv4,
                dhcp_server: s.ipv4.is_some(),
                ipv6_service: !s.prefixes.is_empty(),
                ipv4_service: s.ipv4.is_some(),
                ipv4_request: None,
                ipv4_release: None,
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
                served: Vec::new(),
                handoff_hint: HandoffIndicator::HandoffStateNotChanged,
                transmissions: 0,
                retransmit_timeout: ms(self.config.timers.initial_bindack_timeout_ms),
            };
            let homes = entry.home_nets();
            entry.served = homes.clone();
            self.discard(s.link_layer);
            self.bul.insert(entry);
            for p in homes {
                self.push(MagOutput::Datapath(DatapathCommand::SetUplink {
                    prefix: p,
                    peer: lma,
                }));
                self.push(MagOutput::Datapath(DatapathCommand::SetLinkRoute {
                    prefix: p,
                    link: AccessLink(s.link),
                    local_routing: s.local_routing,
                }));
            }
            self.send_ra(now, s.link_layer);
            self.sync_lma_peer(now);
            self.start_refresh(now, wall, s.link_layer);
            n += 1;
        }
        n
    }
}
