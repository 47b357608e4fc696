//! RFC 5847 heartbeats, shared by the LMA and the MAG: periodic requests to every peer with
//! sessions, responses carrying the Restart Counter, failure detection after
//! MISSING_HEARTBEATS_ALLOWED unanswered requests (§3.1) and restart detection (§3.2).

use core::time::Duration;
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv6Addr;

use crate::output::Transmit;
use crate::time::Instant;
use crate::wire::{
    BindingErrorStatus, Heartbeat, HeartbeatFlags, HeartbeatView, Message, MobilityOption, Options,
};

/// What the heartbeat exchange learned about a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerEvent {
    /// MISSING_HEARTBEATS_ALLOWED requests in a row went unanswered (RFC 5847 §3.1).
    Unreachable { peer: Ipv6Addr },
    /// A peer that was unreachable answered again.
    Reachable { peer: Ipv6Addr },
    /// The peer's Restart Counter changed: it restarted (RFC 5847 §3.2).
    Restarted {
        peer: Ipv6Addr,
        /// The counter seen before, if any: an unsolicited response (U) announces a restart
        /// even from a peer whose counter was not known yet.
        old: Option<u32>,
        new: u32,
    },
    /// The peer answered a Heartbeat Request with a Binding Error, status 2 (unrecognized
    /// MH Type): no more heartbeats with it (RFC 5847 §3).
    Unsupported { peer: Ipv6Addr },
}

#[derive(Debug, Clone)]
struct Peer {
    next_request_at: Instant,
    awaiting: Option<u32>,
    missing: u32,
    restart_counter: Option<u32>,
    reachable: bool,
}

/// Heartbeat state towards every peer.
#[derive(Debug, Clone)]
pub struct Heartbeats {
    local: Ipv6Addr,
    interval: Duration,
    missing_allowed: u32,
    restart_counter: u32,
    peers: BTreeMap<Ipv6Addr, Peer>,
    schedule: BTreeSet<(Instant, Ipv6Addr)>,
    next_seq: u32,
    /// Peers that do not support heartbeats (RFC 5847 §3: "MUST NOT use Heartbeat messages
    /// with the other end again").
    unsupported: BTreeSet<Ipv6Addr>,
}

impl Heartbeats {
    /// `interval` zero disables requests (responses are still sent).
    pub fn new(
        local: Ipv6Addr,
        interval: Duration,
        missing_allowed: u32,
        restart_counter: u32,
        first_seq: u32,
    ) -> Self {
        Heartbeats {
            local,
            interval,
            missing_allowed,
            restart_counter,
            peers: BTreeMap::new(),
            schedule: BTreeSet::new(),
            next_seq: first_seq,
            unsupported: BTreeSet::new(),
        }
    }

    pub fn restart_counter(&self) -> u32 {
        self.restart_counter
    }

    /// Starts heartbeats to `peer` (no effect if already known). The first request goes out
    /// at once, so the peer's Restart Counter is known before it could change.
    pub fn add_peer(&mut self, peer: Ipv6Addr, now: Instant) {
        if self.peers.contains_key(&peer) || self.unsupported.contains(&peer) {
            return;
        }
        let at = now;
        self.peers.insert(
            peer,
            Peer {
                next_request_at: at,
                awaiting: None,
                missing: 0,
                restart_counter: None,
                reachable: true,
            },
        );
        if !self.interval.is_zero() {
            self.schedule.insert((at, peer));
        }
    }

    /// Stops heartbeats to `peer` (no more sessions with it).
    pub fn remove_peer(&mut self, peer: &Ipv6Addr) {
        if let Some(p) = self.peers.remove(peer) {
            self.schedule.remove(&(p.next_request_at, *peer));
        }
    }

    /// A Binding Error from `src` (RFC 5847 §3): with status 2, in answer to our outstanding
    /// Heartbeat Request, the peer does not support heartbeats and is never sent one again.
    /// The reading taken for "in response to a Heartbeat Request": a Binding Error carries no
    /// sequence number, so one with status 2 from a peer with a request outstanding answers
    /// that request. Returns whether heartbeats with `src` stopped.
    pub fn on_binding_error(
        &mut self,
        src: Ipv6Addr,
        status: BindingErrorStatus,
        event: &mut impl FnMut(PeerEvent),
    ) -> bool {
        let awaiting = self.peers.get(&src).is_some_and(|p| p.awaiting.is_some());
        if status != BindingErrorStatus::UnrecognizedMhType || !awaiting {
            return false;
        }
        self.remove_peer(&src);
        self.unsupported.insert(src);
        event(PeerEvent::Unsupported { peer: src });
        true
    }

    /// Whether heartbeats with `peer` stopped for good (see [`Heartbeats::on_binding_error`]).
    pub fn is_unsupported(&self, peer: &Ipv6Addr) -> bool {
        self.unsupported.contains(peer)
    }

    pub fn has_peer(&self, peer: &Ipv6Addr) -> bool {
        self.peers.contains_key(peer)
    }

    pub fn is_reachable(&self, peer: &Ipv6Addr) -> bool {
        self.peers.get(peer).is_some_and(|p| p.reachable)
    }

    /// The restart counter last seen from `peer`.
    pub fn peer_restart_counter(&self, peer: &Ipv6Addr) -> Option<u32> {
        self.peers.get(peer).and_then(|p| p.restart_counter)
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.schedule.first().map(|(t, _)| *t)
    }

    /// Sends the requests that are due, counting the unanswered ones.
    pub fn on_timeout(
        &mut self,
        now: Instant,
        transmit: &mut impl FnMut(Transmit),
        event: &mut impl FnMut(PeerEvent),
    ) {
        while let Some(&(at, addr)) = self.schedule.first() {
            if at > now {
                break;
            }
            self.schedule.pop_first();
            let seq = self.next_seq;
            self.next_seq = self.next_seq.wrapping_add(1);
            let Some(p) = self.peers.get_mut(&addr) else {
                continue;
            };
            if p.awaiting.is_some() {
                p.missing += 1;
                // RFC 5847 §3.1: unreachable "when this local variable MISSING_HEARTBEAT
                // exceeds" MISSING_HEARTBEATS_ALLOWED, "the maximum number of consecutive
                // Heartbeat Request messages for which [no] response [was received] before
                // concluding that the peer is not reachable" (§5): that many are tolerated.
                if p.missing > self.missing_allowed && p.reachable {
                    p.reachable = false;
                    event(PeerEvent::Unreachable { peer: addr });
                }
            }
            p.awaiting = Some(seq);
            p.next_request_at = at + self.interval;
            // A late timer does not send a burst: the next request is an interval from now.
            if p.next_request_at <= now {
                p.next_request_at = now + self.interval;
            }
            self.schedule.insert((p.next_request_at, addr));
            if let Some(t) = self.message(addr, HeartbeatFlags::empty(), seq, None) {
                transmit(t);
            }
        }
    }

    /// Handles a Heartbeat from `src`: answers a request, matches a response.
    pub fn on_message(
        &mut self,
        src: Ipv6Addr,
        hb: &Heartbeat<'_>,
        transmit: &mut impl FnMut(Transmit),
        event: &mut impl FnMut(PeerEvent),
    ) {
        let Ok(view) = HeartbeatView::new(hb) else {
            return;
        };
        if !view.is_response {
            if let Some(t) = self.message(
                src,
                HeartbeatFlags::R,
                view.sequence,
                Some(self.restart_counter),
            ) {
                transmit(t);
            }
            return;
        }
        let Some(p) = self.peers.get_mut(&src) else {
            return;
        };
        if !view.unsolicited && p.awaiting != Some(view.sequence) {
            return;
        }
        if !view.unsolicited {
            p.awaiting = None;
            p.missing = 0;
            if !p.reachable {
                p.reachable = true;
                event(PeerEvent::Reachable { peer: src });
            }
        }
        if let Some(new) = view.restart_counter {
            match p.restart_counter.replace(new) {
                Some(old) if old != new => event(PeerEvent::Restarted {
                    peer: src,
                    old: Some(old),
                    new,
                }),
                None if view.unsolicited => event(PeerEvent::Restarted {
                    peer: src,
                    old: None,
                    new,
                }),
                _ => {}
            }
        }
    }

    /// Unsolicited responses announcing our Restart Counter to `peers` (RFC 5847 §3.2): sent
    /// after a restart to every node that had sessions with us.
    pub fn announce_restart(&self, peers: impl IntoIterator<Item = Ipv6Addr>) -> Vec<Transmit> {
        peers
            .into_iter()
            .filter_map(|p| {
                self.message(
                    p,
                    HeartbeatFlags::R | HeartbeatFlags::U,
                    0,
                    Some(self.restart_counter),
                )
            })
            .collect()
    }

    fn message(
        &self,
        dst: Ipv6Addr,
        flags: HeartbeatFlags,
        seq: u32,
        rc: Option<u32>,
    ) -> Option<Transmit> {
        let opt = rc.map(MobilityOption::RestartCounter);
        let opts = opt.as_slice();
        let m = Message::Heartbeat(Heartbeat {
            flags,
            sequence: seq,
            options: Options::List(opts),
        });
        crate::emit(&m, self.local, dst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 5847 §3.1: a peer is unreachable when the count of unanswered requests exceeds
    /// MISSING_HEARTBEATS_ALLOWED: with 3 allowed, after the 4th request goes unanswered,
    /// which is seen when the 5th is sent.
    #[test]
    fn unreachable_once_the_missing_count_exceeds_the_allowed_one() {
        let peer: Ipv6Addr = "2001:db8::2".parse().unwrap();
        let second = Duration::from_secs(1);
        let mut h = Heartbeats::new("2001:db8::1".parse().unwrap(), second, 3, 7, 0);
        let start = Instant::from_nanos(0);
        h.add_peer(peer, start);
        let mut sent = 0;
        let mut unreachable_at = None;
        for i in 0..6u32 {
            h.on_timeout(start + second * i, &mut |_| sent += 1, &mut |e| {
                if let PeerEvent::Unreachable { .. } = e {
                    unreachable_at.get_or_insert(i + 1);
                }
            });
        }
        assert_eq!(sent, 6);
        assert_eq!(
            unreachable_at,
            Some(5),
            "the 5th request finds 4 unanswered"
        );
        assert!(!h.is_reachable(&peer));
    }
}
