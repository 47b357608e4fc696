//! Every deadline of the MAG in one table: a node's registration timer (retransmission,
//! refresh, expiry, end of a hold-down or of a de-registration), its fast-handover timer, its
//! next unsolicited Router Advertisement, and the heartbeats. `poll_timeout` is the table's
//! first entry; `handle_timeout` pops what is due, earliest first.

use std::collections::{BTreeMap, BTreeSet};

use crate::time::Instant;
use crate::types::LinkLayerAddress;

/// What a deadline is for. Node timers are keyed by the link-layer address of the node's
/// interface, which identifies its binding update list entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Timer {
    /// PBU retransmission (RFC 5213 §6.9.4), refresh (§6.9.1.3), binding expiry, the end of a
    /// de-registration (§6.9.1.4) or of a hold-down.
    Registration(LinkLayerAddress),
    /// HI retransmission or the end of a fast handover (RFC 5949).
    Handover(LinkLayerAddress),
    /// The next unsolicited Router Advertisement to the node (RFC 4861 §6.2.4).
    RouterAdvertisement(LinkLayerAddress),
    /// The next heartbeat request (RFC 5847 §3.1).
    Heartbeat,
    /// Neighbor Unreachability Detection of the node: the next probe, or the end of the
    /// last one (RFC 5213 §6.13, RFC 4861 §7.3).
    Reachability(LinkLayerAddress),
}

/// One deadline per [`Timer`], ordered by time (ties by timer, so the order never depends on
/// how the table was filled).
#[derive(Debug, Default)]
pub(super) struct TimerTable {
    at: BTreeMap<Timer, Instant>,
    order: BTreeSet<(Instant, Timer)>,
}

impl TimerTable {
    /// Arms `t` at `at` (replacing its previous deadline), or disarms it with `None`.
    pub(super) fn set(&mut self, t: Timer, at: Option<Instant>) {
        if let Some(old) = self.at.remove(&t) {
            self.order.remove(&(old, t));
        }
        if let Some(at) = at {
            self.at.insert(t, at);
            self.order.insert((at, t));
        }
    }

    pub(super) fn get(&self, t: Timer) -> Option<Instant> {
        self.at.get(&t).copied()
    }

    /// The earliest deadline.
    pub(super) fn next(&self) -> Option<Instant> {
        self.order.first().map(|(at, _)| *at)
    }

    /// Disarms and returns the earliest timer due at `now`.
    pub(super) fn pop_due(&mut self, now: Instant) -> Option<Timer> {
        let &(at, t) = self.order.first()?;
        if at > now {
            return None;
        }
        self.order.pop_first();
        self.at.remove(&t);
        Some(t)
    }

    /// Disarms every timer of one node.
    pub(super) fn clear_node(&mut self, ll: LinkLayerAddress) {
        for t in [
            Timer::Registration(ll),
            Timer::Handover(ll),
            Timer::RouterAdvertisement(ll),
            Timer::Reachability(ll),
        ] {
            self.set(t, None);
        }
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.at.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::time::Duration;

    fn ll(n: u8) -> LinkLayerAddress {
        LinkLayerAddress::mac([2, 0, 0, 0, 0, n])
    }

    #[test]
    fn pops_earliest_first_and_rearming_replaces() {
        let t0 = Instant::ZERO;
        let s = |n| t0 + Duration::from_secs(n);
        let mut tt = TimerTable::default();
        tt.set(Timer::Registration(ll(1)), Some(s(5)));
        tt.set(Timer::Heartbeat, Some(s(3)));
        tt.set(Timer::Handover(ll(2)), Some(s(4)));
        tt.set(Timer::Registration(ll(1)), Some(s(2)));
        assert_eq!(tt.len(), 3);
        assert_eq!(tt.next(), Some(s(2)));
        assert_eq!(tt.pop_due(s(1)), None);
        assert_eq!(tt.pop_due(s(4)), Some(Timer::Registration(ll(1))));
        assert_eq!(tt.pop_due(s(4)), Some(Timer::Heartbeat));
        assert_eq!(tt.pop_due(s(4)), Some(Timer::Handover(ll(2))));
        assert_eq!(tt.pop_due(s(4)), None);
        assert_eq!(tt.next(), None);
    }

    #[test]
    fn a_node_s_timers_go_together_and_ties_have_a_fixed_order() {
        let at = Instant::ZERO + Duration::from_secs(1);
        let mut tt = TimerTable::default();
        for n in [3, 1, 2] {
            tt.set(Timer::RouterAdvertisement(ll(n)), Some(at));
            tt.set(Timer::Registration(ll(n)), Some(at));
        }
        tt.clear_node(ll(2));
        let order: Vec<Timer> = core::iter::from_fn(|| tt.pop_due(at)).collect();
        assert_eq!(
            order,
            vec![
                Timer::Registration(ll(1)),
                Timer::Registration(ll(3)),
                Timer::RouterAdvertisement(ll(1)),
                Timer::RouterAdvertisement(ll(3)),
            ]
        );
        assert_eq!(tt.get(Timer::Heartbeat), None);
    }
}
