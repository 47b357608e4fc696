//! A node gives up its IPv4 home address (RFC 5844 §3.4.3: a DHCPRELEASE "should [be
//! considered] as a trigger for de-registering the mobile node's IPv4 home address"; the
//! de-registration follows §3.2.3.3, and "MUST NOT release any IPv6 home network
//! prefix(es)").
//!
//! A dual-stack node keeps its mobility session: the MAG sends a selective de-registration
//! (a PBU with lifetime 0, no Home Network Prefix option and exactly one IPv4 Home Address
//! Request naming the address and its prefix length, §3.2.3.3) and stops forwarding the
//! address at once. Like any de-registration (RFC 5213 §6.9.1.4) it is sent once and done
//! on its PBA or after INITIAL_BINDACK_TIMEOUT: a retransmission after the LMA removed the
//! address would name an address no session holds, which the LMA ignores. An IPv4-only node has
//! nothing else in its session: it is de-registered as a whole.
//!
//! A node that asks for an address again (its next DHCPDISCOVER) gets one with a refresh
//! carrying an IPv4 Home Address Request (§3.2.3.3: an IPv4 home address "determined [to
//! be] requested subsequently").

use std::net::Ipv4Addr;

use ipnet::IpNet;

use super::bul::{BulState, Ipv4Release};
use super::timer::Timer;
use super::{Mag, MagEvent, Withdrawal};
use crate::time::{Instant, ms};
use crate::types::LinkLayerAddress;
use crate::wire::{Status, WallClock};

impl Mag {
    /// The node behind `ll` released IPv4 home address `address` (a DHCPRELEASE). Returns
    /// whether the MAG de-registers it: the node must be registered with that address.
    pub fn handle_ipv4_release(
        &mut self,
        now: Instant,
        wall: WallClock,
        ll: &LinkLayerAddress,
        address: Ipv4Addr,
    ) -> bool {
        let ll = *ll;
        let initial = ms(self.config.timers.initial_bindack_timeout_ms);
        // The refresh that was due, to keep after the release (a refresh already under way
        // is sent again then).
        let refresh_at = self.timers.get(Timer::Registration(ll));
        let Some(e) = self.bul.get_mut(&ll) else {
            return false;
        };
        let Some(home) = e.ipv4.filter(|v4| v4.address == address) else {
            return false;
        };
        if !e.is_bound() || e.ipv4_release.is_some() {
            return false;
        }
        let mn_id = e.mn_id.clone();
        if e.prefixes.is_empty() {
            // An IPv4-only session: the address was all it had (§3.2.3.3 with RFC 5213
            // §6.9.1.4, as when the node leaves).
            self.event(MagEvent::Ipv4Released {
                mn_id,
                address,
                session_ended: true,
            });
            self.detach_now(now, wall, ll);
            return true;
        }
        let refresh_at = match (e.state, refresh_at) {
            (BulState::Bound, Some(at)) => at,
            _ => now,
        };
        e.ipv4 = None;
        // Not asked for again in this session's refreshes (§3.2.3.3: the IPv4 Home Address
        // Request is in a refresh only while an address is assigned).
        e.ipv4_service = false;
        e.ipv4_request = None;
        e.ipv4_release = Some(Ipv4Release { home, refresh_at });
        e.state = BulState::Refreshing;
        e.transmissions = 0;
        e.retransmit_timeout = initial;
        // §3.2.3.3: no forwarding state for the address from now on; the prefixes stay.
        let keep: Vec<IpNet> = e.prefixes.iter().map(|p| IpNet::from(*p)).collect();
        self.unserve(now, ll, &keep, Withdrawal::Silent);
        self.event(MagEvent::Ipv4Released {
            mn_id,
            address,
            session_ended: false,
        });
        self.send_pbu(now, wall, ll, false);
        true
    }

    /// The node behind `ll` asks for an IPv4 home address (a DHCPDISCOVER) while its session
    /// has none after a release: the next refresh, sent now, asks for one (the pinned one, or
    /// any). Returns whether a refresh was started.
    pub fn handle_ipv4_request(
        &mut self,
        now: Instant,
        wall: WallClock,
        ll: &LinkLayerAddress,
    ) -> bool {
        let ll = *ll;
        let Some(profile) = self.policy.by_link_layer(&ll) else {
            return false;
        };
        let (entitled, pinned) = (profile.ipv4, profile.ipv4_home_address);
        let Some(e) = self.bul.get_mut(&ll) else {
            return false;
        };
        if !entitled
            || e.ipv4_service
            || e.ipv4.is_some()
            || e.ipv4_release.is_some()
            || e.state != BulState::Bound
        {
            return false;
        }
        e.ipv4_service = true;
        e.ipv4_request = pinned;
        self.start_refresh(now, wall, ll);
        true
    }

    /// The PBA of a selective de-registration (`None`: INITIAL_BINDACK_TIMEOUT passed
    /// without one): whatever its status, as for a de-registration (RFC 5213 §6.9.1.4), the
    /// address is gone and the session goes on with its prefixes, refreshed when it was due.
    pub(super) fn ipv4_release_answered(
        &mut self,
        now: Instant,
        ll: LinkLayerAddress,
        status: Option<Status>,
    ) {
        let Some(e) = self.bul.get_mut(&ll) else {
            return;
        };
        let Some(r) = e.ipv4_release.take() else {
            return;
        };
        if status.is_some() {
            e.last_status = status;
        }
        e.state = BulState::Bound;
        e.transmissions = 0;
        e.retransmit_timeout = ms(self.config.timers.initial_bindack_timeout_ms);
        let at = r.refresh_at.max(now);
        let at = e.expires_at.map_or(at, |x| at.min(x));
        self.set_deadline(ll, Some(at));
    }
}
