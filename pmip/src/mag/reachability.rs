//! Detachment by Neighbor Unreachability Detection (RFC 5213 §6.13, RFC 4861 §7.3): a node
//! on an access link that stays up when it leaves (Wi-Fi behind a bridge reports no link
//! down) is probed once it has been silent for a while, and taken as detached when it does
//! not answer.
//!
//! Readings taken:
//! - §6.13 leaves the detection method to the access technology and lists "IPv6 Neighbor
//!   Unreachability Detection event from IPv6 stack". RFC 4861 §7.3.1 confirms reachability
//!   by a solicited Neighbor Advertisement; here any Neighbor Solicitation or Advertisement,
//!   Router Solicitation or MLD report from the node's MAC on its link counts, because the
//!   access side hears exactly those (a frame from the node proves it is on the link).
//! - The probes are RFC 4861 §7.3.3's PROBE state: unicast Neighbor Solicitations for the
//!   node's link-local address, `probe_interval_ms` (RETRANS_TIMER) apart,
//!   `probes` (MAX_UNICAST_SOLICIT) of them; the silence before them is `idle_s`
//!   (REACHABLE_TIME plus DELAY_FIRST_PROBE_TIME taken as one).
//! - A node whose link-local address was never heard is not probed: a guessed address
//!   (EUI-64 from the MAC) would detach a node that uses another one.
//! - Only registered nodes are probed; the detachment is the de-registration of §6.9.1.4,
//!   which also removes the Binding Update List entry as §6.13 asks.

use std::collections::BTreeMap;
use std::net::Ipv6Addr;

use super::timer::Timer;
use super::{Mag, MagEvent, MagOutput};
use crate::output::{AccessLink, NeighborSolicitation};
use crate::time::{Instant, ms, secs};
use crate::types::LinkLayerAddress;
use crate::wire::WallClock;

/// What the MAG knows of one node's reachability.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct NodeReachability {
    /// The node's link-local address, the target of the probes.
    address: Option<Ipv6Addr>,
    /// Probes sent since the node was last heard.
    probes: u32,
}

/// The reachability of every node heard on its link, by link-layer address.
#[derive(Debug, Default)]
pub(super) struct Reachabilities(BTreeMap<LinkLayerAddress, NodeReachability>);

impl Reachabilities {
    pub(super) fn remove(&mut self, ll: &LinkLayerAddress) {
        self.0.remove(ll);
    }
}

/// A unicast link-local address: what a node's link-local address can be.
fn is_unicast_link_local(a: &Ipv6Addr) -> bool {
    a.segments()[0] & 0xffc0 == 0xfe80
}

impl Mag {
    /// A frame from node `ll` on `link` (a Neighbor Solicitation or Advertisement, a Router
    /// Solicitation, an MLD report): it is there. `address` is the node's link-local address
    /// when the frame tells it (its source, or the target of its duplicate address
    /// detection).
    pub fn handle_node_heard(
        &mut self,
        now: Instant,
        link: AccessLink,
        ll: LinkLayerAddress,
        address: Option<Ipv6Addr>,
    ) {
        let cfg = self.config.neighbor_unreachability;
        if !cfg.enabled() || self.bul.get(&ll).is_none_or(|e| e.link != link) {
            return;
        }
        let r = self.reachability.0.entry(ll).or_default();
        if let Some(a) = address.filter(is_unicast_link_local) {
            r.address = Some(a);
        }
        r.probes = 0;
        self.timers
            .set(Timer::Reachability(ll), Some(now + secs(cfg.idle_s)));
    }

    /// The node was silent for `idle_s`, or a probe went unanswered.
    pub(super) fn reachability_timer(
        &mut self,
        now: Instant,
        wall: WallClock,
        ll: LinkLayerAddress,
    ) {
        let cfg = self.config.neighbor_unreachability;
        let Some(e) = self.bul.get(&ll) else {
            self.reachability.remove(&ll);
            return;
        };
        let probing = e.is_bound() && !self.fast.is_leaving(&ll);
        let Some(r) = self.reachability.0.get_mut(&ll) else {
            return;
        };
        let target = match r.address {
            Some(a) if probing => a,
            // Not registered (yet), handed over, or its address unknown: nothing to probe.
            _ => {
                r.probes = 0;
                self.timers
                    .set(Timer::Reachability(ll), Some(now + secs(cfg.idle_s)));
                return;
            }
        };
        if r.probes < cfg.probes {
            r.probes += 1;
            let ns = NeighborSolicitation {
                link: e.link,
                mn_link_layer: ll,
                target,
                src_link_local: e.link_local,
                src_link_layer: self.config.domain.link_local.link_layer_address(),
            };
            self.push(MagOutput::NeighborSolicitation(ns));
            self.timers.set(
                Timer::Reachability(ll),
                Some(now + ms(cfg.probe_interval_ms)),
            );
            return;
        }
        let (mn_id, link) = (e.mn_id.clone(), e.link);
        self.reachability.remove(&ll);
        self.event(MagEvent::Unreachable {
            mn_id,
            link_layer: ll,
            link,
        });
        self.handle_detach(now, wall, &ll);
    }
}
