//! The MAG's side of a fast handover (RFC 5949): the access network's indications go to
//! [`FastHandovers`], and the [`FastAction`]s it returns are carried out here, on the binding
//! update list, the datapath and the registration with the LMA.

use std::net::Ipv6Addr;

use ipnet::Ipv6Net;

use super::bul::{BindingUpdateList, BulState};
use super::fast::{FastAction, FastError, FastHandovers};
use super::timer::Timer;
use super::{Mag, MagOutput};
use crate::ipv4_pool::Ipv4HomeAddress;
use crate::output::{AccessLink, DatapathCommand};
use crate::time::Instant;
use crate::types::LinkLayerAddress;
use crate::wire::{AccessTechnologyType, HandoffIndicator, WallClock};

/// What a previous MAG's context gives the new MAG (RFC 5949 §4.1, §6.2).
struct Context {
    prefixes: Vec<Ipv6Net>,
    ipv4: Option<Ipv4HomeAddress>,
    access_technology_type: Option<AccessTechnologyType>,
    link_local: Option<Ipv6Addr>,
}

impl Mag {
    /// Predictive fast handover (RFC 5949 §4.1 steps (b)-(c)): the access network says that
    /// `mn_id`, attached here, is about to move to the MAG at `new_mag`. Sends the HI.
    pub fn handle_handover_indication(
        &mut self,
        now: Instant,
        mn_id: &str,
        new_mag: Ipv6Addr,
    ) -> Result<(), FastError> {
        let ll = self
            .bul
            .of_mn_id(mn_id)
            .find(|e| e.is_bound())
            .or_else(|| self.bul.of_mn_id(mn_id).next())
            .map(|e| e.link_layer);
        // Starting a handover registers nothing with the LMA, so no wall clock is needed.
        self.with_fast(now, WallClock::default(), |f, bul, out| {
            let e = ll.and_then(|ll| bul.get(&ll));
            f.start_predictive(now, mn_id, e, new_mag, out)
        })
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
        self.fast.expect_arrival(now, link_layer, previous_mag);
    }

    /// Runs `f` on the fast-handover owner with the binding update list, then carries out
    /// what it asked for.
    pub(super) fn with_fast<R>(
        &mut self,
        now: Instant,
        wall: WallClock,
        f: impl FnOnce(&mut FastHandovers, &BindingUpdateList, &mut Vec<FastAction>) -> R,
    ) -> R {
        let mut out = Vec::new();
        let r = f(&mut self.fast, &self.bul, &mut out);
        self.apply(now, wall, out);
        r
    }

    fn apply(&mut self, now: Instant, wall: WallClock, actions: Vec<FastAction>) {
        for a in actions {
            match a {
                FastAction::Transmit(t) => self.push(MagOutput::Transmit(t)),
                FastAction::Datapath(c) => self.push(MagOutput::Datapath(c)),
                FastAction::Event(e) => self.event(e),
                FastAction::Dropped { from, reason } => self.drop_message(from, reason),
                FastAction::Timer(ll, at) => {
                    self.timers.set(Timer::Handover(ll), at);
                    self.bul.touch(&ll);
                }
                FastAction::Register(ll) => self.register_if_waiting(now, wall, ll),
                FastAction::ServeFromContext {
                    link_layer,
                    prefixes,
                    ipv4,
                    link_local,
                    pmag,
                } => self.serve_from_context(
                    now,
                    link_layer,
                    Context {
                        prefixes,
                        ipv4,
                        access_technology_type: None,
                        link_local,
                    },
                    pmag,
                ),
                FastAction::Expect {
                    mn_id,
                    link_layer,
                    prefixes,
                    ipv4,
                    access_technology_type,
                    link_local,
                    pmag,
                } => self.expect_with_context(
                    now,
                    wall,
                    &mn_id,
                    link_layer,
                    Context {
                        prefixes,
                        ipv4,
                        access_technology_type,
                        link_local,
                    },
                    pmag,
                ),
                FastAction::Deregister(ll) => self.detach_now(now, wall, ll),
                FastAction::Forget(ll) => self.forget(ll),
            }
        }
    }

    /// The domain's LMA generates the MAG's link-local address per node (RFC 5213 §6.8).
    fn lma_generated_link_local(&self) -> bool {
        matches!(
            self.config.domain.link_local,
            crate::config::LinkLocalMode::LmaGenerated { .. }
        )
    }

    /// A reactive NMAG registers once the PMAG forwards (or does not answer).
    fn register_if_waiting(&mut self, now: Instant, wall: WallClock, ll: LinkLayerAddress) {
        if self
            .bul
            .get(&ll)
            .is_some_and(|e| e.state == BulState::Registering && e.transmissions == 0)
        {
            self.send_pbu(now, wall, ll, false);
        }
    }

    /// NMAG, reactive: the PMAG's context came before the PBA: serve the node from it, with
    /// what its profile asks for (RFC 5844 §3.2.3.1): its prefixes and its IPv4 home address
    /// on its link, their uplink through the PMAG, a Router Advertisement.
    fn serve_from_context(
        &mut self,
        now: Instant,
        ll: LinkLayerAddress,
        ctx: Context,
        pmag: Ipv6Addr,
    ) {
        let generated = self.lma_generated_link_local();
        let Some(e) = self.bul.get_mut(&ll) else {
            return;
        };
        if e.ipv6_service && !ctx.prefixes.is_empty() {
            e.prefixes = ctx.prefixes;
        }
        if e.ipv4_service && ctx.ipv4.is_some() {
            e.ipv4 = ctx.ipv4;
        }
        // RFC 5213 §6.8, RFC 5949 §6.2.5: the node's router keeps the link-local address the
        // LMA gave it, before this MAG's PBA brings the same one.
        if let Some(a) = ctx
            .link_local
            .filter(|_| generated && e.link_local.is_unspecified())
        {
            e.link_local = a;
        }
        let homes = e.home_nets();
        e.served.clone_from(&homes);
        let (link, local_routing) = (e.link, e.local_routing);
        for p in homes {
            self.push(MagOutput::Datapath(DatapathCommand::SetLinkRoute {
                prefix: p,
                link,
                local_routing,
            }));
            self.push(MagOutput::Datapath(DatapathCommand::SetUplink {
                prefix: p,
                peer: pmag,
            }));
        }
        self.send_ra(now, ll);
    }

    /// NMAG, predictive: the node's context arrived; its entry waits for it (`Expected`),
    /// with the services its profile here asks for (RFC 5844 §3.2.3.1), or without one, those
    /// the context shows.
    fn expect_with_context(
        &mut self,
        now: Instant,
        wall: WallClock,
        mn_id: &str,
        ll: LinkLayerAddress,
        ctx: Context,
        pmag: Ipv6Addr,
    ) {
        for key in self.bul.keys_of(mn_id) {
            self.forget(key);
        }
        self.forget(ll);
        let profile = self.policy.by_link_layer(&ll);
        let local_routing = profile
            .and_then(|p| p.local_routing)
            .unwrap_or(self.config.domain.enable_mag_local_routing);
        let (ipv6_service, ipv4_service, pinned_ipv4) = match profile {
            Some(p) => (p.ipv6, p.ipv4, p.ipv4_home_address),
            None => (!ctx.prefixes.is_empty(), ctx.ipv4.is_some(), None),
        };
        let mut e = self.new_entry(
            mn_id,
            ll,
            AccessLink(0),
            ctx.access_technology_type
                .unwrap_or(AccessTechnologyType::Ieee8023),
            local_routing,
            now,
        );
        e.state = BulState::Expected;
        e.ipv6_service = ipv6_service;
        e.ipv4_service = ipv4_service;
        e.ipv4_request = pinned_ipv4;
        if ipv6_service {
            e.prefixes = ctx.prefixes;
        }
        if ipv4_service {
            e.ipv4 = ctx.ipv4;
        }
        // RFC 5213 §6.8, RFC 5949 §6.2.5: with the LMA generating the MAG's link-local
        // address, the node's router keeps the one it had: the RA at the node's arrival,
        // before this MAG's PBA, comes from it and the link has it first.
        if let Some(a) = ctx.link_local.filter(|_| self.lma_generated_link_local()) {
            e.link_local = a;
        }
        e.handoff_hint = HandoffIndicator::HandoffBetweenMags;
        self.bul.insert(e);
        self.with_fast(now, wall, |f, bul, out| {
            if let Some(e) = bul.get(&ll) {
                f.adopted(now, e, pmag, out);
            }
        });
    }

    /// NMAG, predictive: the expected node attached. Flush its buffer to it, advertise its
    /// prefixes at once, send uplink through the PMAG and register with the LMA.
    pub(super) fn arrived_with_context(
        &mut self,
        now: Instant,
        wall: WallClock,
        ll: LinkLayerAddress,
        link: AccessLink,
    ) {
        let Some(e) = self.bul.get_mut(&ll) else {
            return;
        };
        e.link = link;
        e.attached_at = now;
        e.state = BulState::Registering;
        e.served = e.home_nets();
        self.with_fast(now, wall, |f, bul, out| {
            if let Some(e) = bul.get(&ll) {
                f.arrived(e, out);
            }
        });
        self.send_ra(now, ll);
        self.send_pbu(now, wall, ll, false);
    }
}
