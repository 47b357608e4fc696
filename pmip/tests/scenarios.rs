//! Scenario tests of the LMA and MAG state machines in the simulator: virtual time, lossy
//! links, one LMA and several MAGs.

use core::time::Duration;
use std::net::Ipv6Addr;

use ipnet::{IpNet, Ipv6Net};
use pmip::cache::BindingState;
use pmip::config::{MobileNodeProfile, PrefixPool};
use pmip::lma::{LmaEvent, RemovalReason};
use pmip::mag::{BulState, MagEvent};
use pmip::sim::{Downlink, Packet, Sim};
use pmip::wire::*;

mod common;
use common::*;

fn statuses(sim: &Sim) -> Vec<u8> {
    sim.sent
        .iter()
        .filter_map(|(_, p)| match p.message() {
            Some(Message::BindingAck(ba)) => Some(ba.status.value()),
            _ => None,
        })
        .collect()
}

/// De-registrations (PBUs with lifetime 0) the simulation has sent.
fn deregistrations(sim: &Sim) -> usize {
    sim.sent
        .iter()
        .filter(|(_, pk)| matches!(pk.message(), Some(Message::BindingUpdate(bu)) if bu.lifetime.is_zero()))
        .count()
}

#[test]
fn first_attach_registers_programs_both_ends_and_advertises() {
    let mut sim = domain(1, 1);
    sim.attach(0, ll(1));
    sim.settle(Duration::from_secs(5));
    assert!(bound_at(&sim, 0, 1));
    let p = prefix_of(&sim, 1);
    assert_eq!(p.to_string(), "2001:db8:100::/64");
    assert_eq!(
        sim.lma_datapath.get(&IpNet::from(p)),
        Some(&Downlink::Tunnel(mag_addr(0)))
    );
    assert_eq!(
        sim.mag_datapaths[0].uplinks.get(&IpNet::from(p)),
        Some(&LMA.parse().unwrap())
    );
    assert!(
        sim.mag_datapaths[0]
            .access_routes
            .contains_key(&IpNet::from(p))
    );
    let (_, _, ra) = sim.router_advertisements.last().unwrap();
    assert_eq!(ra.prefixes, vec![p]);
    assert_eq!(ra.mn_link_layer, ll(1));
    assert_eq!(ra.src_link_local, "fe80::1".parse::<Ipv6Addr>().unwrap());
    assert!(ra.router_lifetime > Duration::ZERO);
    // Two messages: one PBU, one PBA (status 0), 2 ms apart.
    assert_eq!(statuses(&sim), vec![0]);
    match sim
        .mag_events_of(0)
        .find(|e| matches!(e, MagEvent::Registered { .. }))
    {
        Some(MagEvent::Registered { after, .. }) => assert_eq!(*after, Duration::from_millis(2)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn refresh_over_days_keeps_one_binding_and_the_prefix() {
    let mut sim = domain(1, 1);
    sim.attach(0, ll(1));
    sim.settle(Duration::from_secs(5));
    let p = prefix_of(&sim, 1);
    sim.run_for(Duration::from_secs(3 * 24 * 3600));
    assert!(bound_at(&sim, 0, 1));
    assert_eq!(prefix_of(&sim, 1), p);
    assert_eq!(sim.lma.cache().len(), 1);
    // 3600 s lifetime refreshed at 80 %: 2880 s (plus a 2 ms round trip) apart, so 89
    // refreshes in 3 days.
    let refreshes = sim
        .mag_events_of(0)
        .filter(|e| matches!(e, MagEvent::Refreshed { .. }))
        .count();
    assert_eq!(refreshes, 89);
    assert!(
        !sim.lma_events
            .iter()
            .any(|(_, e)| matches!(e, LmaEvent::BindingRemoved { .. }))
    );
}

#[test]
fn lost_pbus_are_retransmitted_with_exponential_backoff() {
    let mut sim = domain(1, 1);
    let mut dropped = 0;
    sim.drop = Some(Box::new(move |p: &Packet| {
        let pbu = matches!(p.message(), Some(Message::BindingUpdate(_)));
        if pbu && dropped < 3 {
            dropped += 1;
            return true;
        }
        false
    }));
    sim.attach(0, ll(1));
    sim.settle(Duration::from_secs(60));
    assert!(bound_at(&sim, 0, 1));
    let times: Vec<Duration> = sim
        .sent
        .iter()
        .filter(|(_, p)| matches!(p.message(), Some(Message::BindingUpdate(_))))
        .map(|(t, _)| *t - pmip::Instant::ZERO)
        .collect();
    let gaps: Vec<u64> = times
        .windows(2)
        .map(|w| (w[1] - w[0]).as_millis() as u64)
        .collect();
    // INITIAL_BINDACK_TIMEOUT 1 s, doubling (RFC 5213 §6.9.4).
    assert_eq!(gaps, vec![1000, 2000, 4000]);
    // Each retransmission is a new message: a new sequence number and timestamp.
    let seqs: Vec<u16> = sim
        .sent
        .iter()
        .filter_map(|(_, p)| match p.message() {
            Some(Message::BindingUpdate(bu)) => Some(bu.sequence.0),
            _ => None,
        })
        .collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0].wrapping_add(1)));
}

#[test]
fn a_lost_pba_is_recovered_by_the_retransmitted_pbu() {
    let mut sim = domain(1, 1);
    let mut dropped = false;
    sim.drop = Some(Box::new(move |p: &Packet| {
        if !dropped && matches!(p.message(), Some(Message::BindingAck(_))) {
            dropped = true;
            return true;
        }
        false
    }));
    sim.attach(0, ll(1));
    sim.settle(Duration::from_secs(10));
    assert!(bound_at(&sim, 0, 1));
    // The LMA saw two PBUs but created one session: the second refreshed it.
    assert_eq!(sim.lma.cache().len(), 1);
    assert_eq!(statuses(&sim), vec![0, 0]);
}

#[test]
fn after_giving_up_the_mag_tries_again_while_the_node_stays() {
    let mut sim = domain(1, 1);
    let lma_down = std::rc::Rc::new(std::cell::Cell::new(true));
    let down = lma_down.clone();
    sim.drop = Some(Box::new(move |p: &Packet| {
        down.get() && matches!(p.message(), Some(Message::BindingUpdate(_)))
    }));
    sim.attach(0, ll(1));
    // 8 transmissions take 127 s; the LMA is back after 150 s, during the 60 s hold-down.
    sim.run_for(Duration::from_secs(150));
    assert!(
        sim.mag_events_of(0)
            .any(|e| matches!(e, MagEvent::GaveUp { .. }))
    );
    assert!(sim.router_advertisements.is_empty());
    lma_down.set(false);
    sim.run_for(Duration::from_secs(60));
    assert!(bound_at(&sim, 0, 1), "registered on the retry round");
    assert!(!sim.router_advertisements.is_empty());
    // The retry round started from INITIAL_BINDACK_TIMEOUT again: one more PBU did it.
    let n = sim
        .sent
        .iter()
        .filter(|(_, p)| matches!(p.message(), Some(Message::BindingUpdate(_))))
        .count();
    assert_eq!(n, 9);
}

#[test]
fn giving_up_after_max_transmissions_is_reported() {
    let mut cfg = mag_config(0, 1);
    cfg.timers.registration_retry_s = 0;
    let mut sim = Sim::new(lma_config(1, 1), vec![cfg], 42);
    sim.drop = Some(Box::new(|p: &Packet| {
        matches!(p.message(), Some(Message::BindingUpdate(_)))
    }));
    sim.attach(0, ll(1));
    sim.run_for(Duration::from_secs(600));
    assert!(
        sim.mag_events_of(0)
            .any(|e| matches!(e, MagEvent::GaveUp { .. }))
    );
    assert!(sim.mags[0].binding(&nai(1)).is_none());
    // 8 transmissions, the backoff capped at MAX_BINDACK_TIMEOUT (32 s).
    let n = sim
        .sent
        .iter()
        .filter(|(_, p)| matches!(p.message(), Some(Message::BindingUpdate(_))))
        .count();
    assert_eq!(n, 8);
    assert!(sim.router_advertisements.is_empty());
}

#[test]
fn lifetime_expiry_removes_the_binding_at_both_ends() {
    let mut sim = domain(1, 1);
    sim.attach(0, ll(1));
    sim.settle(Duration::from_secs(5));
    let p = prefix_of(&sim, 1);
    // The MAG goes silent (its refreshes are lost).
    sim.drop = Some(Box::new(|p: &Packet| {
        matches!(p.message(), Some(Message::BindingUpdate(_)))
    }));
    sim.run_for(Duration::from_secs(3700));
    assert!(sim.lma.cache().is_empty());
    assert!(!sim.lma_datapath.contains_key(&IpNet::from(p)));
    assert!(sim.lma_events.iter().any(|(_, e)| matches!(
        e,
        LmaEvent::BindingRemoved {
            reason: RemovalReason::Expired,
            ..
        }
    )));
    assert!(
        sim.mag_events_of(0)
            .any(|e| matches!(e, MagEvent::Expired { .. }))
    );
    assert!(sim.mag_datapaths[0].uplinks.is_empty());
    // The MAG withdrew the prefix from the node.
    let (_, _, ra) = sim.router_advertisements.last().unwrap();
    assert_eq!(ra.router_lifetime, Duration::ZERO);
    assert_eq!(ra.prefix_lifetime, Duration::ZERO);
}

#[test]
fn reattach_within_min_delay_keeps_the_prefix_and_after_it_the_entry_is_gone() {
    let mut sim = domain(1, 2);
    sim.attach(0, ll(1));
    sim.settle(Duration::from_secs(2));
    let p = prefix_of(&sim, 1);
    sim.detach(0, ll(1));
    sim.settle(Duration::from_secs(2));
    let s = sim.lma.cache().sessions_of(&nai(1)).next().unwrap();
    assert!(matches!(
        sim.lma.cache().get(s).unwrap().state(),
        BindingState::Deregistering
    ));
    // What the Stats RPC reports, counted as the state changed.
    assert_eq!((sim.lma.cache().active(), sim.lma.cache().len()), (0, 1));
    assert_eq!(sim.lma.cache().prefix_count(), 1);
    assert_eq!(sim.lma_datapath.get(&IpNet::from(p)), Some(&Downlink::Drop));
    assert!(sim.mags[0].binding(&nai(1)).is_none());
    // Back within MinDelayBeforeBCEDelete (10 s): same prefix.
    sim.run_for(Duration::from_secs(5));
    sim.attach(0, ll(1));
    sim.settle(Duration::from_secs(2));
    assert_eq!(prefix_of(&sim, 1), p);
    assert_eq!(sim.lma.cache().active(), 1);
    assert_eq!(
        sim.lma_datapath.get(&IpNet::from(p)),
        Some(&Downlink::Tunnel(mag_addr(0)))
    );
    // Detach again and stay away: the entry goes after 10 s.
    sim.detach(0, ll(1));
    sim.run_for(Duration::from_secs(11));
    assert!(sim.lma.cache().is_empty());
    assert_eq!(
        (sim.lma.cache().active(), sim.lma.cache().prefix_count()),
        (0, 0)
    );
    assert!(sim.lma_events.iter().any(|(_, e)| matches!(
        e,
        LmaEvent::BindingRemoved {
            reason: RemovalReason::Deregistered,
            ..
        }
    )));
}

#[test]
fn a_late_deregistration_from_the_previous_mag_does_not_remove_the_new_binding() {
    let mut sim = domain(2, 1);
    sim.attach(0, ll(1));
    sim.settle(Duration::from_secs(2));
    let p = prefix_of(&sim, 1);
    // MAG1's de-registration is held in the network for 200 ms (within the 300 ms
    // TimestampValidityWindow); MAG2 registers meanwhile.
    sim.latency = Duration::from_millis(200);
    sim.detach(0, ll(1));
    sim.latency = Duration::from_millis(1);
    sim.run_for(Duration::from_millis(10));
    sim.attach(1, ll(1));
    sim.settle(Duration::from_secs(2));
    sim.run_for(Duration::from_secs(1));
    assert!(bound_at(&sim, 1, 1));
    assert_eq!(prefix_of(&sim, 1), p);
    let s = sim.lma.cache().sessions_of(&nai(1)).next().unwrap();
    let e = sim.lma.cache().get(s).unwrap();
    assert_eq!(e.proxy_coa, mag_addr(1));
    assert_eq!(e.state(), BindingState::Active);
    assert_eq!(
        sim.lma_datapath.get(&IpNet::from(p)),
        Some(&Downlink::Tunnel(mag_addr(1)))
    );
    assert_eq!(e.handover_count, 1);
    // The late de-registration was refused (its timestamp is older than the accepted one)
    // and nothing changed.
    assert!(statuses(&sim).contains(&157));
    sim.run_for(Duration::from_secs(20));
    assert_eq!(sim.lma.cache().len(), 1);
}

#[test]
fn a_deregistration_from_a_mag_that_no_longer_holds_the_binding_is_ignored() {
    // Same race with sequence numbers: no timestamp to refuse it, so RFC 5213 §5.3.5 rule 1
    // (the source is not the binding's proxy-CoA) is what protects the new binding.
    let mut lc = lma_config(2, 1);
    lc.domain.replay_protection = pmip::config::ReplayProtection::SequenceNumber;
    let mags = (0..2)
        .map(|i| {
            let mut c = mag_config(i, 1);
            c.domain.replay_protection = pmip::config::ReplayProtection::SequenceNumber;
            c
        })
        .collect();
    let mut sim = Sim::new(lc, mags, 5);
    sim.attach(0, ll(1));
    sim.settle(Duration::from_secs(2));
    let p = prefix_of(&sim, 1);
    sim.latency = Duration::from_millis(500);
    sim.detach(0, ll(1));
    sim.latency = Duration::from_millis(1);
    sim.run_for(Duration::from_millis(10));
    sim.attach(1, ll(1));
    sim.run_for(Duration::from_secs(5));
    let s = sim.lma.cache().sessions_of(&nai(1)).next().unwrap();
    let e = sim.lma.cache().get(s).unwrap();
    assert_eq!(e.proxy_coa, mag_addr(1));
    assert_eq!(e.state(), BindingState::Active);
    assert!(bound_at(&sim, 1, 1));
    // A de-registration from MAG1 whose sequence number is newer than anything accepted:
    // the ordering check passes, and only rule 1 stands between it and the binding.
    let last = e.ordering.sequence.0;
    let id = nai(1);
    let l = ll(1);
    let opts = [
        MobilityOption::MobileNodeIdentifier {
            subtype: 1,
            id: id.as_bytes(),
        },
        MobilityOption::HomeNetworkPrefix(p),
        MobilityOption::HandoffIndicator(HandoffIndicator::HandoffStateUnknown),
        MobilityOption::AccessTechnologyType(AccessTechnologyType::Ieee8023),
        MobilityOption::MnLinkLayerIdentifier(l.as_bytes()),
    ];
    let sent_before = sim.sent.len();
    sim.inject(pbu_bytes(mag_addr(0), last.wrapping_add(100), 0, &opts));
    sim.run_for(Duration::from_secs(1));
    assert_eq!(sim.lma.stats().pbu_ignored, 1);
    // Ignored means no answer at all (RFC 5213 §5.3.5 rule 1).
    assert_eq!(sim.sent.len(), sent_before + 1);
    let e = sim.lma.cache().get(s).unwrap();
    assert_eq!(e.state(), BindingState::Active);
    assert_eq!(
        sim.lma_datapath.get(&IpNet::from(p)),
        Some(&Downlink::Tunnel(mag_addr(1)))
    );
}

#[test]
fn a_thousand_handoffs_keep_the_prefix() {
    let mut sim = domain(2, 1);
    sim.attach(0, ll(1));
    sim.settle(Duration::from_secs(2));
    let p = prefix_of(&sim, 1);
    for i in 0..1000 {
        let (from, to) = if i % 2 == 0 { (0, 1) } else { (1, 0) };
        sim.detach(from, ll(1));
        sim.run_for(Duration::from_millis(5));
        sim.attach(to, ll(1));
        sim.run_for(Duration::from_millis(20));
        assert!(bound_at(&sim, to, 1), "handoff {i}");
        assert_eq!(prefix_of(&sim, 1), p, "handoff {i}");
        assert_eq!(
            sim.lma_datapath.get(&IpNet::from(p)),
            Some(&Downlink::Tunnel(mag_addr(to)))
        );
    }
    assert_eq!(sim.lma.cache().len(), 1);
    let s = sim.lma.cache().sessions_of(&nai(1)).next().unwrap();
    let e = sim.lma.cache().get(s).unwrap();
    assert_eq!(e.handover_count, 1000);
    // The signalling gap: the de-registration is seen 1 ms after the detach, the new
    // registration 5 + 1 ms after it.
    assert_eq!(e.last_handover_gap(), Some(Duration::from_millis(5)));
}

#[test]
fn handoff_without_deregistration_moves_the_binding() {
    // The old MAG never notices the node left (no link event): the new MAG's PBU moves the
    // binding anyway, matched by MN-ID, ATT and link-layer identifier.
    let mut sim = domain(2, 1);
    sim.attach(0, ll(1));
    sim.settle(Duration::from_secs(2));
    let p = prefix_of(&sim, 1);
    sim.attach(1, ll(1));
    sim.settle(Duration::from_secs(2));
    assert_eq!(prefix_of(&sim, 1), p);
    assert_eq!(
        sim.lma_datapath.get(&IpNet::from(p)),
        Some(&Downlink::Tunnel(mag_addr(1)))
    );
}

/// A PBU from `mag` for node `n` with the given options, as raw bytes.
fn pbu_bytes(mag: Ipv6Addr, seq: u16, lifetime_s: u32, opts: &[MobilityOption<'_>]) -> Packet {
    bu_packet(
        mag,
        lma_addr(),
        BuFlags::A | BuFlags::P,
        seq,
        lifetime_s,
        opts,
    )
}

fn last_pba(sim: &Sim) -> (Status, u16, Vec<Ipv6Net>, Option<Timestamp>) {
    sim.sent
        .iter()
        .rev()
        .find_map(|(_, p)| match p.message() {
            Some(Message::BindingAck(ba)) => {
                let v = ProxyBindingAck::new(&ba).unwrap();
                if ba.flags.contains(BaFlags::P) {
                    v.check_mandatory().unwrap();
                }
                Some((
                    ba.status,
                    ba.sequence.0,
                    v.home_network_prefixes().collect(),
                    v.opts.timestamp,
                ))
            }
            _ => None,
        })
        .expect("a PBA")
}

fn std_opts<'a>(id: &'a [u8], ts: Timestamp, hnp: Ipv6Net) -> Vec<MobilityOption<'a>> {
    vec![
        MobilityOption::MobileNodeIdentifier { subtype: 1, id },
        MobilityOption::HomeNetworkPrefix(hnp),
        MobilityOption::HandoffIndicator(HandoffIndicator::AttachmentOverNewInterface),
        MobilityOption::AccessTechnologyType(AccessTechnologyType::Ieee8023),
        MobilityOption::Timestamp(ts),
    ]
}

#[test]
fn timestamps_outside_the_window_or_older_than_accepted_are_refused() {
    let mut sim = domain(1, 1);
    // The MAG's clock is 400 ms ahead: beyond the 300 ms TimestampValidityWindow.
    sim.mag_clock_skew_ms[0] = 400;
    sim.attach(0, ll(1));
    sim.settle(Duration::from_secs(2));
    let (status, _, _, ts) = last_pba(&sim);
    assert_eq!(status, Status::TimestampMismatch);
    // The PBA carries the LMA's own time (RFC 5213 §5.5 rule 9), not the MAG's.
    let lma_now = Timestamp::from_wall_clock(sim.wall());
    assert!(ts.unwrap().abs_diff(lma_now) < Duration::from_millis(5));
    assert!(matches!(
        sim.mags[0].binding(&nai(1)).unwrap().state,
        BulState::Denied {
            status: Status::TimestampMismatch,
            ..
        }
    ));
    assert!(sim.router_advertisements.is_empty());
    // Within the window it works.
    sim.mag_clock_skew_ms[0] = 200;
    sim.run_for(Duration::from_secs(31));
    sim.attach(0, ll(1));
    sim.settle(Duration::from_secs(2));
    assert!(bound_at(&sim, 0, 1));
}

#[test]
fn a_replayed_old_pbu_is_refused_and_changes_nothing() {
    let mut sim = domain(2, 1);
    sim.attach(0, ll(1));
    sim.settle(Duration::from_secs(2));
    let p = prefix_of(&sim, 1);
    let original = sim
        .sent
        .iter()
        .find(|(_, p)| matches!(p.message(), Some(Message::BindingUpdate(_))))
        .unwrap()
        .1
        .clone();
    sim.run_for(Duration::from_millis(100));
    sim.attach(1, ll(1));
    sim.settle(Duration::from_secs(2));
    // Replay MAG1's first PBU 100 ms later: within the window, but older than accepted.
    sim.inject(original);
    sim.settle(Duration::from_secs(1));
    assert_eq!(last_pba(&sim).0, Status::TimestampLowerThanPrevAccepted);
    assert_eq!(
        sim.lma_datapath.get(&IpNet::from(p)),
        Some(&Downlink::Tunnel(mag_addr(1)))
    );
    // A replay much later falls outside the window.
    sim.run_for(Duration::from_secs(10));
    let replay = sim
        .sent
        .iter()
        .find(|(_, p)| matches!(p.message(), Some(Message::BindingUpdate(_))))
        .unwrap()
        .1
        .clone();
    sim.inject(replay);
    sim.settle(Duration::from_secs(1));
    assert_eq!(last_pba(&sim).0, Status::TimestampMismatch);
    assert_eq!(
        sim.lma_datapath.get(&IpNet::from(p)),
        Some(&Downlink::Tunnel(mag_addr(1)))
    );
}

#[test]
fn an_unauthorized_mag_gets_154_and_nothing_changes() {
    let mut sim = domain(2, 1);
    sim.lma.set_authorized_mags([mag_addr(0)]);
    sim.attach(0, ll(1));
    sim.settle(Duration::from_secs(2));
    let p = prefix_of(&sim, 1);
    sim.attach(1, ll(1));
    sim.settle(Duration::from_secs(2));
    assert_eq!(last_pba(&sim).0, Status::MagNotAuthorizedForProxyReg);
    assert!(matches!(
        sim.mags[1].binding(&nai(1)).unwrap().state,
        BulState::Denied { .. }
    ));
    assert_eq!(
        sim.lma_datapath.get(&IpNet::from(p)),
        Some(&Downlink::Tunnel(mag_addr(0)))
    );
    assert!(sim.mag_datapaths[1].uplinks.is_empty());
    assert!(sim.router_advertisements.iter().all(|(_, m, _)| *m == 0));
}

#[test]
fn an_unknown_node_is_refused_and_gets_no_prefix() {
    let mut sim = domain(1, 1);
    // The MAG knows the node, the LMA does not.
    sim.mags[0].upsert_profile(profile(7)).unwrap();
    sim.attach(0, ll(7));
    sim.settle(Duration::from_secs(2));
    assert_eq!(last_pba(&sim).0, Status::NotLmaForThisMobileNode);
    assert!(sim.lma.cache().is_empty());
    assert!(sim.router_advertisements.is_empty());
    // A node neither knows: the MAG does not even ask.
    sim.attach(0, ll(8));
    assert!(
        sim.mag_events_of(0)
            .any(|e| matches!(e, MagEvent::UnknownNode { .. }))
    );
}

#[test]
fn pool_exhaustion_gets_130() {
    let mut lc = lma_config(1, 5);
    lc.prefix_pools = vec![PrefixPool {
        prefix: "2001:db8:100::/63".parse().unwrap(),
        prefix_length: 64,
    }];
    let mut sim = Sim::new(lc, vec![mag_config(0, 5)], 1);
    for n in 1..=3 {
        sim.attach(0, ll(n));
    }
    sim.settle(Duration::from_secs(2));
    assert!(bound_at(&sim, 0, 1) && bound_at(&sim, 0, 2));
    assert_eq!(last_pba(&sim).0, Status::InsufficientResources);
    assert!(!bound_at(&sim, 0, 3));
    assert_eq!(sim.lma.cache().len(), 2);
}

/// Twenty nodes on two MAGs, their prefixes, and an LMA snapshot taken 3 s before now,
/// round-tripped through JSON as the daemon's store would do.
#[test]
fn a_prefix_kept_for_a_node_goes_to_another_only_when_the_pool_is_dry() {
    let mut lc = lma_config(1, 5);
    lc.prefix_pools = vec![PrefixPool {
        prefix: "2001:db8:100::/63".parse().unwrap(),
        prefix_length: 64,
    }];
    let mut sim = Sim::new(lc, vec![mag_config(0, 5)], 1);
    sim.attach(0, ll(1));
    sim.settle(Duration::from_secs(2));
    let p1 = prefix_of(&sim, 1);
    // Node 1 leaves; its entry goes after MinDelayBeforeBCEDelete, its prefix stays its own.
    sim.detach(0, ll(1));
    sim.run_for(Duration::from_secs(12));
    assert_eq!(sim.lma.cache().len(), 0);
    assert_eq!(sim.lma.prefixes_available(), 1);
    sim.attach(0, ll(2));
    sim.settle(Duration::from_secs(2));
    assert_ne!(prefix_of(&sim, 2), p1);
    // The pool is dry: node 3 gets what was kept for node 1 rather than a 130.
    sim.attach(0, ll(3));
    sim.settle(Duration::from_secs(2));
    assert!(bound_at(&sim, 0, 3));
    assert_eq!(prefix_of(&sim, 3), p1);
}

fn twenty_nodes_and_an_lma_snapshot() -> (Sim, Vec<Ipv6Net>, pmip::lma::LmaSnapshot) {
    let mut sim = domain(2, 20);
    for n in 1..=20 {
        sim.attach((n % 2) as usize, ll(n));
    }
    sim.settle(Duration::from_secs(2));
    let before: Vec<Ipv6Net> = (1..=20).map(|n| prefix_of(&sim, n)).collect();
    let snap = sim.lma.snapshot(sim.now, sim.wall());
    let snap: pmip::lma::LmaSnapshot =
        serde_json::from_str(&serde_json::to_string(&snap).unwrap()).unwrap();
    sim.run_for(Duration::from_secs(3));
    (sim, before, snap)
}

#[test]
fn lma_restart_from_a_whole_snapshot_keeps_its_counter_and_every_binding_without_signalling() {
    // RFC 5847 §3.2: the Restart Counter MUST NOT be incremented when the sessions survived;
    // the MAGs notice nothing and refresh on their own schedule, not all at once.
    let (mut sim, before, snap) = twenty_nodes_and_an_lma_snapshot();
    let restarted_at = sim.now;
    sim.restart_lma(&snap);
    assert_eq!(sim.lma.restart_counter(), snap.restart_counter);
    assert_eq!(sim.lma_datapath.len(), 20);
    // Longer than a heartbeat interval: the periodic heartbeats see the same counter.
    sim.run_for(Duration::from_secs(90));
    for m in 0..2 {
        assert!(!sim.mag_events_of(m).any(|e| matches!(
            e,
            MagEvent::Peer(pmip::heartbeat::PeerEvent::Restarted { .. })
        )));
    }
    let refreshes_soon_after = sim
        .mag_events
        .iter()
        .filter(|(t, _, e)| {
            *t > restarted_at
                && *t < restarted_at + Duration::from_secs(5)
                && matches!(e, MagEvent::Refreshed { .. })
        })
        .count();
    assert_eq!(refreshes_soon_after, 0, "no re-registration storm");
    let after: Vec<Ipv6Net> = (1..=20).map(|n| prefix_of(&sim, n)).collect();
    assert_eq!(before, after);
    for n in 1..=20u16 {
        assert!(bound_at(&sim, (n % 2) as usize, n));
    }
}

#[test]
fn lma_restart_that_lost_state_re_registers_every_node_with_the_same_prefix() {
    let (mut sim, before, snap) = twenty_nodes_and_an_lma_snapshot();
    sim.restart_lma_after_loss(&snap);
    assert_eq!(sim.lma.restart_counter(), 2);
    // Restored: datapath reprogrammed before any signalling.
    assert_eq!(sim.lma_datapath.len(), 20);
    sim.settle(Duration::from_secs(5));
    // The unsolicited heartbeat response told both MAGs; each re-registered its nodes.
    for m in 0..2 {
        assert!(sim.mag_events_of(m).any(|e| matches!(
            e,
            MagEvent::Peer(pmip::heartbeat::PeerEvent::Restarted {
                old: Some(1),
                new: 2,
                ..
            })
        )));
    }
    let refreshes = sim
        .mag_events
        .iter()
        .filter(|(t, _, e)| *t > pmip::Instant::ZERO && matches!(e, MagEvent::Refreshed { .. }))
        .count();
    assert_eq!(refreshes, 20);
    let after: Vec<Ipv6Net> = (1..=20).map(|n| prefix_of(&sim, n)).collect();
    assert_eq!(before, after);
    for n in 1..=20u16 {
        assert!(bound_at(&sim, (n % 2) as usize, n));
    }
}

#[test]
fn lma_restart_is_also_found_by_periodic_heartbeats() {
    let mut sim = domain(1, 1);
    sim.attach(0, ll(1));
    sim.settle(Duration::from_secs(2));
    let p = prefix_of(&sim, 1);
    let snap = sim.lma.snapshot(sim.now, sim.wall());
    // The unsolicited announcement is lost.
    sim.drop = Some(Box::new(
        |p: &Packet| matches!(p.message(), Some(Message::Heartbeat(h)) if h.flags.contains(HeartbeatFlags::U)),
    ));
    sim.run_for(Duration::from_secs(40));
    sim.restart_lma_after_loss(&snap);
    sim.run_for(Duration::from_secs(40));
    assert!(sim.mag_events_of(0).any(|e| matches!(
        e,
        MagEvent::Peer(pmip::heartbeat::PeerEvent::Restarted { .. })
    )));
    assert_eq!(prefix_of(&sim, 1), p);
    assert!(bound_at(&sim, 0, 1));
}

#[test]
fn an_unreachable_lma_is_detected_by_missing_heartbeats() {
    let mut sim = domain(1, 1);
    sim.attach(0, ll(1));
    sim.settle(Duration::from_secs(2));
    sim.drop = Some(Box::new(|p: &Packet| {
        matches!(p.message(), Some(Message::Heartbeat(_)))
    }));
    sim.run_for(Duration::from_secs(200));
    assert!(sim.mag_events_of(0).any(|e| matches!(
        e,
        MagEvent::Peer(pmip::heartbeat::PeerEvent::Unreachable { .. })
    )));
    sim.drop = None;
    sim.run_for(Duration::from_secs(40));
    assert!(sim.mag_events_of(0).any(|e| matches!(
        e,
        MagEvent::Peer(pmip::heartbeat::PeerEvent::Reachable { .. })
    )));
}

#[test]
fn revocation_tears_down_both_ends() {
    let mut sim = domain(1, 2);
    sim.attach(0, ll(1));
    sim.attach(0, ll(2));
    sim.settle(Duration::from_secs(2));
    let p = prefix_of(&sim, 1);
    assert!(sim.lma_do(|lma, now, _| lma.remove_profile(now, &nai(1), true)));
    sim.settle(Duration::from_secs(2));
    assert!(sim.lma.cache().sessions_of(&nai(1)).next().is_none());
    assert!(!sim.lma_datapath.contains_key(&IpNet::from(p)));
    assert!(sim.mags[0].binding(&nai(1)).is_none());
    assert!(
        sim.mag_events_of(0)
            .any(|e| matches!(e, MagEvent::Revoked { .. }))
    );
    assert!(sim.lma_events.iter().any(|(_, e)| matches!(
        e,
        LmaEvent::RevocationAcknowledged {
            status: BraStatus::Success,
            ..
        }
    )));
    // The node is told its prefix is gone, the other node is untouched.
    let (_, _, ra) = sim.router_advertisements.last().unwrap();
    assert_eq!(ra.mn_link_layer, ll(1));
    assert_eq!(ra.router_lifetime, Duration::ZERO);
    assert!(bound_at(&sim, 0, 2));
    // Re-attaching now fails: the profile is gone.
    sim.mags[0].upsert_profile(profile(1)).unwrap();
    sim.attach(0, ll(1));
    sim.settle(Duration::from_secs(2));
    assert_eq!(last_pba(&sim).0, Status::NotLmaForThisMobileNode);
}

#[test]
fn revocation_without_answer_is_retried_then_completed() {
    let mut sim = domain(1, 1);
    sim.attach(0, ll(1));
    sim.settle(Duration::from_secs(2));
    sim.drop = Some(Box::new(|p: &Packet| {
        matches!(p.message(), Some(Message::BindingRevocation(_)))
    }));
    sim.lma_do(|lma, now, _| lma.revoke(now, &nai(1), RevocationTrigger::AdministrativeReason))
        .unwrap();
    sim.run_for(Duration::from_secs(5));
    let bris: Vec<_> = sim
        .sent
        .iter()
        .filter(|(_, p)| matches!(p.message(), Some(Message::BindingRevocation(_))))
        .map(|(t, _)| *t)
        .collect();
    // BRIMaxRetriesNumber = 1 retransmission after InitMINDelayBRIs (1 s).
    assert_eq!(bris.len(), 2);
    assert_eq!(bris[1] - bris[0], Duration::from_secs(1));
    assert!(sim.lma.cache().is_empty());
    assert!(
        sim.lma_events
            .iter()
            .any(|(_, e)| matches!(e, LmaEvent::RevocationTimedOut { .. }))
    );
}

#[test]
fn handoff_state_unknown_waits_for_the_deregistration() {
    // No link-layer identifier on these links: the LMA matches by MN-ID alone and, with
    // "handoff state unknown", waits MaxDelayBeforeNewBCEAssign for the old MAG.
    let mut sim = domain(2, 1);
    let id = nai(1);
    let mag1 = mag_addr(0);
    let mag2 = mag_addr(1);
    let wall = sim.wall();
    let opts = std_opts(
        id.as_bytes(),
        Timestamp::from_wall_clock(wall),
        Ipv6Net::default(),
    );
    sim.inject(pbu_bytes(mag1, 1, 3600, &opts));
    sim.settle(Duration::from_secs(1));
    let p = prefix_of(&sim, 1);
    // MAG2: same node, HI = 4, no LL-ID.
    let mut o2 = std_opts(
        id.as_bytes(),
        Timestamp::from_wall_clock(sim.wall()),
        Ipv6Net::default(),
    );
    o2[2] = MobilityOption::HandoffIndicator(HandoffIndicator::HandoffStateUnknown);
    sim.inject(pbu_bytes(mag2, 1, 3600, &o2));
    sim.run_for(Duration::from_millis(500));
    // Nothing yet: waiting.
    assert_eq!(
        sim.lma_datapath.get(&IpNet::from(p)),
        Some(&Downlink::Tunnel(mag1))
    );
    // MAG1 de-registers: the waiting PBU goes ahead as a handoff, prefix kept.
    let mut o1 = std_opts(id.as_bytes(), Timestamp::from_wall_clock(sim.wall()), p);
    o1[2] = MobilityOption::HandoffIndicator(HandoffIndicator::HandoffStateUnknown);
    sim.inject(pbu_bytes(mag1, 2, 0, &o1));
    sim.settle(Duration::from_secs(1));
    assert_eq!(sim.lma.cache().len(), 1);
    assert_eq!(prefix_of(&sim, 1), p);
    assert_eq!(
        sim.lma_datapath.get(&IpNet::from(p)),
        Some(&Downlink::Tunnel(mag2))
    );

    // And without a de-registration, MaxDelayBeforeNewBCEAssign (1.5 s) later, a new session.
    let mut sim = domain(2, 1);
    sim.inject(pbu_bytes(
        mag1,
        1,
        3600,
        &std_opts(
            id.as_bytes(),
            Timestamp::from_wall_clock(sim.wall()),
            Ipv6Net::default(),
        ),
    ));
    sim.settle(Duration::from_secs(1));
    let mut o2 = std_opts(
        id.as_bytes(),
        Timestamp::from_wall_clock(sim.wall()),
        Ipv6Net::default(),
    );
    o2[2] = MobilityOption::HandoffIndicator(HandoffIndicator::HandoffStateUnknown);
    sim.inject(pbu_bytes(mag2, 1, 3600, &o2));
    sim.run_for(Duration::from_millis(1400));
    assert_eq!(sim.lma.cache().len(), 1);
    sim.run_for(Duration::from_millis(200));
    assert_eq!(sim.lma.cache().len(), 2);
}

/// Every status the LMA sends, each from the message that earns it.
#[test]
fn every_lma_status_code_is_produced() {
    let mut sim = domain(2, 3);
    let mag = mag_addr(0);
    let id = nai(1);
    let id2 = nai(2);
    let all_zero = Ipv6Net::default();
    let seq = std::cell::Cell::new(100u16);
    let send =
        |sim: &mut Sim, opts: &[MobilityOption<'_>], lifetime: u32, flags: BuFlags| -> Status {
            seq.set(seq.get().wrapping_add(1));
            let m = Message::BindingUpdate(BindingUpdate {
                sequence: SequenceNumber(seq.get()),
                flags,
                lifetime: Lifetime::from_secs(lifetime),
                options: Options::List(opts),
            });
            let lma: Ipv6Addr = LMA.parse().unwrap();
            let mut b = vec![0u8; m.buffer_len()];
            m.emit_with_checksum(&mut b, &mag, &lma).unwrap();
            sim.inject(Packet {
                src: mag,
                dst: lma,
                bytes: b,
            });
            sim.settle(Duration::from_millis(100));
            last_pba(sim).0
        };
    let ap = BuFlags::A | BuFlags::P;
    let ts = |sim: &Sim| Timestamp::from_wall_clock(sim.wall());
    let hi = MobilityOption::HandoffIndicator(HandoffIndicator::AttachmentOverNewInterface);
    let att = MobilityOption::AccessTechnologyType(AccessTechnologyType::Ieee8023);
    let mnid = MobilityOption::MobileNodeIdentifier {
        subtype: 1,
        id: id.as_bytes(),
    };
    let hnp0 = MobilityOption::HomeNetworkPrefix(all_zero);

    // 0
    let t = MobilityOption::Timestamp(ts(&sim));
    assert_eq!(
        send(&mut sim, &[mnid, hnp0, hi, att, t], 3600, ap),
        Status::Accepted
    );
    let p = prefix_of(&sim, 1);
    // 2: a GRE Key option; GRE is not used here.
    let t = MobilityOption::Timestamp(ts(&sim));
    let hnp = MobilityOption::HomeNetworkPrefix(p);
    assert_eq!(
        send(
            &mut sim,
            &[mnid, hnp, hi, att, t, MobilityOption::GreKey(None)],
            3600,
            ap
        ),
        Status::GreKeyOptionNotRequired
    );
    // 128: a repeated single-instance option.
    let t = MobilityOption::Timestamp(ts(&sim));
    assert_eq!(
        send(&mut sim, &[mnid, hnp, hi, hi, att, t], 3600, ap),
        Status::ReasonUnspecified
    );
    // 129 and 131: no P flag, so no proxy registration (a correspondent or home
    // registration, neither of which an LMA serves).
    let t = MobilityOption::Timestamp(ts(&sim));
    assert_eq!(
        send(&mut sim, &[mnid, hnp, hi, att, t], 3600, BuFlags::A),
        Status::AdministrativelyProhibited
    );
    let t = MobilityOption::Timestamp(ts(&sim));
    assert_eq!(
        send(
            &mut sim,
            &[mnid, hnp, hi, att, t],
            3600,
            BuFlags::A | BuFlags::H
        ),
        Status::HomeRegistrationNotSupported
    );
    // 160: no MN-ID; the PBA carries a zero-length identifier.
    let t = MobilityOption::Timestamp(ts(&sim));
    assert_eq!(
        send(&mut sim, &[hnp, hi, att, t], 3600, ap),
        Status::MissingMnIdentifierOption
    );
    // 153: an identifier nobody knows.
    let t = MobilityOption::Timestamp(ts(&sim));
    let stranger = MobilityOption::MobileNodeIdentifier {
        subtype: 1,
        id: b"nobody@example.org",
    };
    assert_eq!(
        send(&mut sim, &[stranger, hnp0, hi, att, t], 3600, ap),
        Status::NotLmaForThisMobileNode
    );
    // 156 and 157.
    let old =
        Timestamp::from_wall_clock(WallClock(sim.wall().since_epoch() - Duration::from_secs(1)));
    assert_eq!(
        send(
            &mut sim,
            &[mnid, hnp, hi, att, MobilityOption::Timestamp(old)],
            3600,
            ap
        ),
        Status::TimestampMismatch
    );
    let accepted = sim
        .lma
        .cache()
        .get(sim.lma.cache().sessions_of(&id).next().unwrap())
        .unwrap()
        .ordering
        .timestamp()
        .unwrap();
    let older = Timestamp(accepted.0 - 1);
    assert_eq!(
        send(
            &mut sim,
            &[mnid, hnp, hi, att, MobilityOption::Timestamp(older)],
            3600,
            ap
        ),
        Status::TimestampLowerThanPrevAccepted
    );
    // 158, 161, 162.
    let t = MobilityOption::Timestamp(ts(&sim));
    assert_eq!(
        send(&mut sim, &[mnid, hi, att, t], 3600, ap),
        Status::MissingHomeNetworkPrefixOption
    );
    let t = MobilityOption::Timestamp(ts(&sim));
    assert_eq!(
        send(&mut sim, &[mnid, hnp, att, t], 3600, ap),
        Status::MissingHandoffIndicatorOption
    );
    let t = MobilityOption::Timestamp(ts(&sim));
    assert_eq!(
        send(&mut sim, &[mnid, hnp, hi, t], 3600, ap),
        Status::MissingAccessTechTypeOption
    );
    // 155: another node's prefix.
    let mnid2 = MobilityOption::MobileNodeIdentifier {
        subtype: 1,
        id: id2.as_bytes(),
    };
    let t = MobilityOption::Timestamp(ts(&sim));
    assert_eq!(
        send(&mut sim, &[mnid2, hnp, hi, att, t], 3600, ap),
        Status::NotAuthorizedForHomeNetworkPrefix
    );
    // 159: the right prefix plus one more.
    let extra = MobilityOption::HomeNetworkPrefix("2001:db8:100:ff::/64".parse().unwrap());
    let t = MobilityOption::Timestamp(ts(&sim));
    assert_eq!(
        send(&mut sim, &[mnid, hnp, extra, hi, att, t], 3600, ap),
        Status::BcePbuPrefixSetDoNotMatch
    );
    // 170 and 173: IPv4 home addresses are not offered.
    let v4 = MobilityOption::Ipv4HomeAddressRequest {
        prefix_len: 0,
        address: std::net::Ipv4Addr::UNSPECIFIED,
    };
    let t = MobilityOption::Timestamp(ts(&sim));
    assert_eq!(
        send(&mut sim, &[mnid, hnp, hi, att, t, v4], 3600, ap),
        Status::NotAuthorizedForIpv4MobilityService
    );
    let t = MobilityOption::Timestamp(ts(&sim));
    assert_eq!(
        send(&mut sim, &[mnid, hnp, hi, att, t, v4, v4], 3600, ap),
        Status::MultipleIpv4HomeAddressAssignmentNotSupported
    );
    // 152: a node not authorized for network-based mobility (RFC 5213 §5.3.1 rule 8).
    let mut disabled = profile(3);
    disabled.proxy_registration_enabled = false;
    sim.lma.upsert_profile(disabled).unwrap();
    let id3 = nai(3);
    let mnid3 = MobilityOption::MobileNodeIdentifier {
        subtype: 1,
        id: id3.as_bytes(),
    };
    let t = MobilityOption::Timestamp(ts(&sim));
    assert_eq!(
        send(&mut sim, &[mnid3, hnp0, hi, att, t], 3600, ap),
        Status::ProxyRegNotEnabled
    );
    // 154: a node limited to another MAG.
    let mut limited = profile(3);
    limited.allowed_mags = vec![mag_addr(1)];
    sim.lma.upsert_profile(limited).unwrap();
    let t = MobilityOption::Timestamp(ts(&sim));
    assert_eq!(
        send(&mut sim, &[mnid3, hnp0, hi, att, t], 3600, ap),
        Status::MagNotAuthorizedForProxyReg
    );
    // 135: sequence numbers (no Timestamp option), not newer than the last accepted.
    let t = MobilityOption::Timestamp(ts(&sim));
    assert_eq!(
        send(&mut sim, &[mnid2, hnp0, hi, att, t], 3600, ap),
        Status::Accepted
    );
    let p2 = prefix_of(&sim, 2);
    let hnp2 = MobilityOption::HomeNetworkPrefix(p2);
    let s2 = sim.lma.cache().sessions_of(&id2).next().unwrap();
    let last = sim.lma.cache().get(s2).unwrap().ordering.sequence;
    seq.set(last.0.wrapping_sub(2));
    assert_eq!(
        send(&mut sim, &[mnid2, hnp2, hi, att], 3600, ap),
        Status::SequenceNumberOutOfWindow
    );
    assert_eq!(
        last_pba(&sim).1,
        last.0,
        "the PBA carries the last accepted sequence number"
    );
    // 130: pool exhausted.
    let mut lc = lma_config(1, 2);
    lc.prefix_pools = vec![PrefixPool {
        prefix: "2001:db8:100::/64".parse().unwrap(),
        prefix_length: 64,
    }];
    let mut small = Sim::new(lc, vec![mag_config(0, 2)], 3);
    small.attach(0, ll(1));
    small.attach(0, ll(2));
    small.settle(Duration::from_secs(1));
    assert_eq!(last_pba(&small).0, Status::InsufficientResources);
}

#[test]
fn pinned_prefixes_win_and_are_never_handed_to_others() {
    let mut lc = lma_config(1, 3);
    let pinned: Ipv6Net = "2001:db8:100::/64".parse().unwrap();
    lc.mobile_nodes[1].home_network_prefixes = vec![pinned];
    let mut sim = Sim::new(lc, vec![mag_config(0, 3)], 9);
    sim.attach(0, ll(1));
    sim.attach(0, ll(3));
    sim.attach(0, ll(2));
    sim.settle(Duration::from_secs(2));
    assert_eq!(prefix_of(&sim, 2), pinned);
    assert_ne!(prefix_of(&sim, 1), pinned);
    assert_ne!(prefix_of(&sim, 3), pinned);
}

#[test]
fn lma_generated_link_local_addresses_are_kept_across_handoffs() {
    let mut lc = lma_config(2, 1);
    let lmode = pmip::config::LinkLocalMode::LmaGenerated {
        link_layer_address: "02:00:5e:00:53:01".parse().unwrap(),
    };
    lc.domain.link_local = lmode.clone();
    let mags = (0..2)
        .map(|i| {
            let mut c = mag_config(i, 1);
            c.domain.link_local = lmode.clone();
            c
        })
        .collect();
    let mut sim = Sim::new(lc, mags, 11);
    sim.attach(0, ll(1));
    sim.settle(Duration::from_secs(2));
    let lla = sim.mags[0].binding(&nai(1)).unwrap().link_local;
    assert!(lla.segments()[0] == 0xfe80 && lla != "fe80::1".parse::<Ipv6Addr>().unwrap());
    sim.detach(0, ll(1));
    sim.attach(1, ll(1));
    sim.settle(Duration::from_secs(2));
    assert_eq!(sim.mags[1].binding(&nai(1)).unwrap().link_local, lla);
    let (_, m, ra) = sim.router_advertisements.last().unwrap();
    assert_eq!(*m, 1);
    assert_eq!(ra.src_link_local, lla);
}

/// RFC 5213 §6.8 with RFC 5949 §6.2.5: in a domain whose LMA generates the MAG's link-local
/// address, a fast handover's new MAG advertises the node's prefix before its own PBA, from
/// the address the context carries (the one the node's router had), not from `::`.
#[test]
fn a_fast_handovers_new_mag_advertises_from_the_lma_generated_link_local_before_its_pba() {
    use pmip::config::FastHandoverMode;
    for mode in [FastHandoverMode::Predictive, FastHandoverMode::Reactive] {
        let lmode = pmip::config::LinkLocalMode::LmaGenerated {
            link_layer_address: "02:00:5e:00:53:01".parse().unwrap(),
        };
        let mags = (0..2)
            .map(|i| {
                let mut c = mag_config(i, 1);
                c.domain.fast_handover.mode = mode;
                c.domain.link_local = lmode.clone();
                c
            })
            .collect();
        let mut lc = lma_config(2, 1);
        lc.domain.fast_handover.mode = mode;
        lc.domain.link_local = lmode;
        let mut sim = Sim::new(lc, mags, 77);
        sim.attach(0, ll(1));
        sim.settle(Duration::from_secs(2));
        let lla = sim.mags[0].binding(&nai(1)).unwrap().link_local;
        assert!(lla.is_unicast_link_local(), "{mode:?}: {lla}");
        announce_move(&mut sim, mode);
        let ras_before = sim.router_advertisements.len();
        sim.detach(0, ll(1));
        let attached = sim.now;
        sim.attach(1, ll(1));
        sim.settle(Duration::from_secs(2));
        // The new MAG's first RA, and the PBA it got for the node.
        let (t_ra, m, ra) = sim.router_advertisements[ras_before].clone();
        let t_pba = sim
            .sent
            .iter()
            .find(|(t, pk)| {
                *t >= attached
                    && pk.dst == mag_addr(1)
                    && matches!(pk.message(), Some(Message::BindingAck(_)))
            })
            .map(|(t, _)| *t)
            .expect("a PBA for the new MAG");
        assert_eq!(m, 1, "{mode:?}");
        assert!(
            t_ra < t_pba,
            "{mode:?}: the RA under test comes before the PBA"
        );
        assert_eq!(ra.src_link_local, lla, "{mode:?}: the RA's source");
        assert!(bound_at(&sim, 1, 1), "{mode:?}");
        assert_eq!(
            sim.mags[1].binding(&nai(1)).unwrap().link_local,
            lla,
            "{mode:?}: the LMA keeps the address"
        );
    }
}

#[test]
fn predictive_fast_handover_buffers_forwards_and_hands_over() {
    use pmip::config::FastHandoverMode;
    use pmip::mag::FastRole;
    let mut sim = fast_domain(FastHandoverMode::Predictive, 2, 1);
    sim.attach(0, ll(1));
    sim.settle(Duration::from_secs(2));
    let p = prefix_of(&sim, 1);
    // The access network announces the move: MAG1 sends HI, MAG2 answers and buffers.
    sim.mag_do(0, |m, now, _| {
        m.handle_handover_indication(now, &nai(1), mag_addr(1))
    })
    .unwrap();
    sim.run_for(Duration::from_millis(5));
    // The context names the node's link-local interface identifier (RFC 5949 §6.2.3): the
    // modified EUI-64 of its MAC, no address having been heard.
    let iid = sim.sent.iter().find_map(|(_, pk)| match pk.message() {
        Some(Message::HandoverInitiate(hi)) => hi.options.iter().find_map(|o| match o {
            MobilityOption::MnLinkLocalInterfaceId(i) => Some(i),
            _ => None,
        }),
        _ => None,
    });
    assert_eq!(iid, ll(1).eui64_interface_id());
    assert!(
        sim.mag_datapaths[1].buffering.contains(&IpNet::from(p)),
        "NMAG buffers"
    );
    assert_eq!(
        sim.mag_datapaths[0].forwards.get(&IpNet::from(p)),
        Some(&mag_addr(1)),
        "PMAG forwards"
    );
    assert!(
        !sim.mag_datapaths[0]
            .access_routes
            .contains_key(&IpNet::from(p))
    );
    assert_eq!(
        sim.mags[1].binding(&nai(1)).unwrap().state,
        pmip::mag::BulState::Expected
    );
    // The LMA knows nothing yet: the binding still points at MAG1.
    assert_eq!(
        sim.lma_datapath.get(&IpNet::from(p)),
        Some(&Downlink::Tunnel(mag_addr(0)))
    );
    let ras_before = sim.router_advertisements.len();
    // The node moves. At MAG2 it is served from the context before the PBA returns: the
    // buffer is flushed onto its link and it gets its RA in the same instant it attaches.
    sim.detach(0, ll(1));
    let t_attach = sim.now;
    sim.attach(1, ll(1));
    assert!(sim.mag_datapaths[1].flushed.contains(&IpNet::from(p)));
    // The buffer delivers straight to the node until the PBA switches the route.
    assert_eq!(
        sim.mag_datapaths[1].delivering.get(&IpNet::from(p)),
        Some(&(pmip::output::AccessLink(1), ll(1)))
    );
    assert!(
        !sim.mag_datapaths[1]
            .access_routes
            .contains_key(&IpNet::from(p))
    );
    assert_eq!(
        sim.mag_datapaths[1].uplinks.get(&IpNet::from(p)),
        Some(&mag_addr(0)),
        "uplink via the PMAG"
    );
    let (t_ra, m, ra) = sim.router_advertisements[ras_before].clone();
    assert_eq!((t_ra, m), (t_attach, 1));
    assert_eq!(ra.prefixes, vec![p]);
    // MAG1 did not de-register: no PBU with lifetime 0.
    sim.settle(Duration::from_secs(2));
    sim.run_for(Duration::from_millis(50));
    let deregs = deregistrations(&sim);
    assert_eq!(deregs, 0);
    // The PBA switched everything to the normal path and the tunnel between MAGs is gone.
    assert_eq!(
        sim.lma_datapath.get(&IpNet::from(p)),
        Some(&Downlink::Tunnel(mag_addr(1)))
    );
    assert_eq!(
        sim.mag_datapaths[1].uplinks.get(&IpNet::from(p)),
        Some(&LMA.parse().unwrap())
    );
    assert!(
        sim.mag_datapaths[1]
            .access_routes
            .contains_key(&IpNet::from(p))
    );
    assert!(sim.mag_datapaths[1].delivering.is_empty());
    assert!(sim.mag_datapaths[0].forwards.is_empty());
    assert!(sim.mags[0].binding(&nai(1)).is_none());
    assert!(bound_at(&sim, 1, 1));
    assert_eq!(prefix_of(&sim, 1), p);
    for (mag, role) in [(0, FastRole::Previous), (1, FastRole::New)] {
        assert!(
            sim.mag_events_of(mag)
                .any(|e| matches!(e, MagEvent::HandoverCompleted { role: r, .. } if *r == role)),
            "MAG{} completes as {role:?}",
            mag + 1
        );
    }
    // The LMA saw a handoff, not a new session.
    let s = sim.lma.cache().sessions_of(&nai(1)).next().unwrap();
    assert_eq!(sim.lma.cache().get(s).unwrap().handover_count, 1);
}

/// Runs one handover of node 1 from MAG1 to MAG2 in `sim` (predictive, reactive or plain as
/// the domain says), stepping until MAG2's first PBU has left; returns MAG2's end-marker
/// holds at that moment, then lets the handover finish.
fn handover_holds_at_first_pbu(
    sim: &mut Sim,
    mode: pmip::config::FastHandoverMode,
) -> Vec<(IpNet, IpNet, Ipv6Addr, u32)> {
    sim.attach(0, ll(1));
    sim.settle(Duration::from_secs(2));
    announce_move(sim, mode);
    sim.detach(0, ll(1));
    sim.run_for(Duration::from_millis(1));
    sim.attach(1, ll(1));
    let pbu_of_mag2 = |sim: &Sim| {
        sim.sent.iter().any(|(_, pk)| {
            pk.src == mag_addr(1) && matches!(pk.message(), Some(Message::BindingUpdate(_)))
        })
    };
    for _ in 0..1000 {
        if pbu_of_mag2(sim) {
            break;
        }
        sim.run_for(Duration::from_micros(100));
    }
    assert!(pbu_of_mag2(sim), "MAG2 registers the node");
    let holds = sim.mag_datapaths[1].end_marker_holds.clone();
    sim.settle(Duration::from_secs(2));
    sim.run_for(Duration::from_millis(50));
    assert!(bound_at(sim, 1, 1));
    holds
}

#[test]
fn a_fast_handovers_new_mag_holds_the_lmas_packets_until_the_previous_mags_end_marker() {
    use pmip::config::FastHandoverMode;
    let lma: Ipv6Addr = LMA.parse().unwrap();
    for mode in [FastHandoverMode::Predictive, FastHandoverMode::Reactive] {
        let mut sim = fast_domain(mode, 2, 1);
        let holds = handover_holds_at_first_pbu(&mut sim, mode);
        let p = prefix_of(&sim, 1);
        // Armed before the PBU left: the LMA's first direct packet finds it.
        assert_eq!(holds, vec![(p.into(), p.into(), lma, 20)], "{mode:?}");
        // The LMA sent MAG1 the prefix's marker once the route pointed at MAG2, and only then.
        let markers: Vec<_> = sim
            .lma_end_markers
            .iter()
            .map(|&(_, prefix, peer, route)| (prefix, peer, route))
            .collect();
        assert_eq!(
            markers,
            vec![(p.into(), mag_addr(0), Some(Downlink::Tunnel(mag_addr(1))))],
            "{mode:?}"
        );
        // The node keeps its prefix; the hold did not touch the protocol.
        assert_eq!(prefix_of(&sim, 1), p);
    }
}

#[test]
fn plain_handovers_and_a_zero_wait_send_no_end_markers_and_hold_nothing() {
    use pmip::config::FastHandoverMode;
    let mut sim = fast_domain(FastHandoverMode::Off, 2, 1);
    assert!(handover_holds_at_first_pbu(&mut sim, FastHandoverMode::Off).is_empty());
    assert!(sim.lma_end_markers.is_empty());
    // end_marker_wait_ms 0 turns them off in a fast handover too.
    let mags = (0..2)
        .map(|i| {
            let mut c = mag_config(i, 1);
            c.domain.fast_handover.mode = FastHandoverMode::Predictive;
            c.domain.fast_handover.end_marker_wait_ms = 0;
            c
        })
        .collect();
    let mut lc = lma_config(2, 1);
    lc.domain.fast_handover.mode = FastHandoverMode::Predictive;
    lc.domain.fast_handover.end_marker_wait_ms = 0;
    let mut sim = Sim::new(lc, mags, 77);
    assert!(handover_holds_at_first_pbu(&mut sim, FastHandoverMode::Predictive).is_empty());
    assert!(sim.lma_end_markers.is_empty());
    assert!(
        sim.mag_events_of(1)
            .any(|e| matches!(e, MagEvent::HandoverCompleted { .. }))
    );
}

#[test]
fn reactive_fast_handover_recovers_the_previous_mags_packets() {
    use pmip::config::FastHandoverMode;
    let mut sim = fast_domain(FastHandoverMode::Reactive, 2, 1);
    sim.attach(0, ll(1));
    sim.settle(Duration::from_secs(2));
    let p = prefix_of(&sim, 1);
    // MAG2's access network knows the node comes from MAG1.
    sim.mag_do(1, |m, now, _| m.expect_arrival(now, ll(1), mag_addr(0)));
    // The node leaves MAG1 unannounced: MAG1 buffers instead of de-registering.
    sim.detach(0, ll(1));
    assert!(sim.mag_datapaths[0].buffering.contains(&IpNet::from(p)));
    sim.run_for(Duration::from_millis(30));
    // It appears at MAG2: HI with 'U' to MAG1 (keep buffering, send the context), and a PBU
    // to the LMA.
    sim.attach(1, ll(1));
    sim.run_for(Duration::from_micros(1500));
    assert!(
        sim.mag_datapaths[0].buffering.contains(&IpNet::from(p)),
        "still buffering"
    );
    assert!(sim.mag_datapaths[0].forwards.is_empty());
    // The HAck brings the context: MAG2 routes the prefix to the node, advertises it, and
    // only then asks for the packets (HI with 'F'); MAG1 flushes into the tunnel.
    sim.run_for(Duration::from_millis(1));
    assert!(
        sim.mag_datapaths[1]
            .access_routes
            .contains_key(&IpNet::from(p))
    );
    assert!(
        sim.mag_datapaths[0].flushed.is_empty(),
        "not before MAG2 is ready"
    );
    sim.run_for(Duration::from_millis(1));
    assert_eq!(
        sim.mag_datapaths[0].forwards.get(&IpNet::from(p)),
        Some(&mag_addr(1))
    );
    assert!(sim.mag_datapaths[0].flushed.contains(&IpNet::from(p)));
    let hi_flags: Vec<_> = sim
        .sent
        .iter()
        .filter_map(|(_, pk)| match pk.message() {
            Some(Message::HandoverInitiate(hi)) => Some(hi.flags),
            _ => None,
        })
        .collect();
    use pmip::wire::HiFlags;
    assert_eq!(
        &hi_flags[..2],
        &[HiFlags::P | HiFlags::U, HiFlags::P | HiFlags::F]
    );
    sim.settle(Duration::from_secs(2));
    sim.run_for(Duration::from_millis(20));
    assert!(bound_at(&sim, 1, 1));
    // RFC 5949 Figure 3: MAG2's PBU follows the HI / HAck exchange, so the LMA turns to MAG2
    // only after MAG1 has sent it the packets it held.
    let pos = |f: &dyn Fn(&Packet) -> bool| sim.sent.iter().position(|(_, pk)| f(pk));
    let first_pbu_of_mag2 =
        pos(&|pk| pk.src == mag_addr(1) && matches!(pk.message(), Some(Message::BindingUpdate(_))))
            .expect("MAG2 registers");
    let second_hack = sim
        .sent
        .iter()
        .enumerate()
        .filter(|(_, (_, pk))| matches!(pk.message(), Some(Message::HandoverAck(_))))
        .nth(1)
        .map(|(i, _)| i)
        .expect("two HAcks");
    assert!(first_pbu_of_mag2 > second_hack);

    assert_eq!(prefix_of(&sim, 1), p);
    assert!(sim.mags[0].binding(&nai(1)).is_none());
    assert!(sim.mag_datapaths[0].forwards.is_empty());
    assert!(
        sim.mag_events_of(1)
            .any(|e| matches!(e, MagEvent::HandoverCompleted { .. }))
    );
    let deregs = deregistrations(&sim);
    assert_eq!(deregs, 0);
}

/// The LMA's binding of node `n`: where it is and whether it is active.
fn lma_binding_at(sim: &Sim, n: u16) -> Option<(std::net::Ipv6Addr, BindingState)> {
    let s = sim.lma.cache().sessions_of(&nai(n)).next()?;
    let e = sim.lma.cache().get(s)?;
    Some((e.proxy_coa, e.state()))
}

#[test]
fn a_node_back_at_its_previous_mag_before_anyone_claims_it_gets_its_packets_and_stays() {
    use pmip::config::FastHandoverMode;
    let mut sim = fast_domain(FastHandoverMode::Reactive, 2, 1);
    sim.attach(0, ll(1));
    sim.settle(Duration::from_secs(2));
    let p = prefix_of(&sim, 1);
    // It leaves unannounced (MAG1 buffers, waiting for a new MAG) and comes back.
    sim.detach(0, ll(1));
    sim.run_for(Duration::from_millis(200));
    assert!(sim.mag_datapaths[0].buffering.contains(&IpNet::from(p)));
    sim.attach(0, ll(1));
    sim.settle(Duration::from_secs(2));
    // The buffer went to the node, the prefix is routed to its link again, and after the
    // handover timeout (5 s) nothing de-registers it.
    assert!(sim.mag_datapaths[0].flushed.contains(&IpNet::from(p)));
    assert!(
        sim.mag_datapaths[0]
            .access_routes
            .contains_key(&IpNet::from(p))
    );
    sim.run_for(Duration::from_secs(8));
    assert!(bound_at(&sim, 0, 1));
    assert_eq!(prefix_of(&sim, 1), p);
    assert_eq!(
        lma_binding_at(&sim, 1),
        Some((mag_addr(0), BindingState::Active))
    );
    assert!(sim.mag_events_of(0).any(|e| matches!(
        e,
        MagEvent::HandoverFailed { reason, .. } if reason.contains("came back")
    )));
    let deregs = deregistrations(&sim);
    assert_eq!(deregs, 0);
}

/// A ping-pong: the node reaches MAG2 (a reactive handover: MAG1 forwards its packets there)
/// and is back at MAG1 before MAG2 told MAG1 the handover completed. MAG1 must take it as an
/// attachment: before, it took it for a repeated link event of a node it still held, and
/// registered nothing, while MAG2 de-registered the node when it left.
#[test]
fn a_node_back_at_its_previous_mag_during_a_handover_is_registered_there_again() {
    use pmip::config::FastHandoverMode;
    let mut sim = fast_domain(FastHandoverMode::Reactive, 2, 1);
    sim.attach(0, ll(1));
    sim.settle(Duration::from_secs(2));
    let p = prefix_of(&sim, 1);
    sim.mag_do(1, |m, now, _| m.expect_arrival(now, ll(1), mag_addr(0)));
    sim.detach(0, ll(1));
    sim.run_for(Duration::from_millis(30));
    sim.attach(1, ll(1));
    // HI, HAck, HI with 'F': MAG1 forwards to MAG2.
    sim.run_for(Duration::from_millis(3));
    assert_eq!(
        sim.mag_datapaths[0].forwards.get(&IpNet::from(p)),
        Some(&mag_addr(1))
    );
    // Back to MAG1 at once.
    sim.detach(1, ll(1));
    sim.attach(0, ll(1));
    sim.settle(Duration::from_secs(2));
    sim.run_for(Duration::from_secs(8));
    assert!(bound_at(&sim, 0, 1), "MAG1 holds the node");
    assert!(!bound_at(&sim, 1, 1), "MAG2 let it go");
    assert_eq!(prefix_of(&sim, 1), p);
    assert_eq!(
        lma_binding_at(&sim, 1),
        Some((mag_addr(0), BindingState::Active))
    );
    assert!(sim.mag_datapaths[0].forwards.is_empty());
    assert!(
        sim.mag_datapaths[0]
            .access_routes
            .contains_key(&IpNet::from(p))
    );
}

#[test]
fn a_departed_node_nobody_claims_is_deregistered_after_the_handover_timeout() {
    use pmip::config::FastHandoverMode;
    let mut sim = fast_domain(FastHandoverMode::Reactive, 2, 1);
    sim.attach(0, ll(1));
    sim.settle(Duration::from_secs(2));
    let p = prefix_of(&sim, 1);
    sim.detach(0, ll(1));
    sim.run_for(Duration::from_secs(4));
    assert!(
        sim.mags[0].binding(&nai(1)).is_some(),
        "still waiting (5 s timeout)"
    );
    sim.run_for(Duration::from_secs(2));
    assert!(sim.mag_datapaths[0].discarded.contains(&IpNet::from(p)));
    assert!(sim.mags[0].binding(&nai(1)).is_none());
    assert!(
        sim.mag_events_of(0)
            .any(|e| matches!(e, MagEvent::HandoverFailed { .. }))
    );
    // ... and de-registered as without PFMIPv6.
    let s = sim.lma.cache().sessions_of(&nai(1)).next().unwrap();
    assert_eq!(
        sim.lma.cache().get(s).unwrap().state(),
        BindingState::Deregistering
    );
}

#[test]
fn a_predictive_handover_to_a_silent_mag_fails_cleanly() {
    use pmip::config::FastHandoverMode;
    let mut sim = fast_domain(FastHandoverMode::Predictive, 2, 1);
    sim.attach(0, ll(1));
    sim.settle(Duration::from_secs(2));
    let p = prefix_of(&sim, 1);
    sim.drop = Some(Box::new(|pk: &Packet| {
        matches!(pk.message(), Some(Message::HandoverInitiate(_)))
    }));
    sim.mag_do(0, |m, now, _| {
        m.handle_handover_indication(now, &nai(1), mag_addr(1))
    })
    .unwrap();
    sim.run_for(Duration::from_secs(6));
    let his = sim
        .sent
        .iter()
        .filter(|(_, pk)| matches!(pk.message(), Some(Message::HandoverInitiate(_))))
        .count();
    assert_eq!(his, 4, "HI retransmitted, then given up");
    assert!(sim.mag_events_of(0).any(|e| matches!(
        e,
        MagEvent::HandoverFailed {
            reason: "no Handover Acknowledge",
            ..
        }
    )));
    // Nothing changed for the node: still served by MAG1.
    assert!(bound_at(&sim, 0, 1));
    assert!(
        sim.mag_datapaths[0]
            .access_routes
            .contains_key(&IpNet::from(p))
    );
    assert!(sim.mag_datapaths[0].forwards.is_empty());
}

#[test]
fn a_mag_restart_keeps_its_nodes_without_a_detach() {
    let mut sim = domain(1, 3);
    for n in 1..=3 {
        sim.attach(0, ll(n));
    }
    sim.settle(Duration::from_secs(2));
    let before: Vec<Ipv6Net> = (1..=3).map(|n| prefix_of(&sim, n)).collect();
    let saved = sim.mags[0].save();
    assert_eq!(saved.len(), 3);
    // A new process: empty state machine, same configuration, then the saved nodes.
    sim.mags[0] = pmip::mag::Mag::new(mag_config(0, 3), 2, 99).unwrap();
    let n = sim.mag_do(0, |m, now, wall| m.restore(now, wall, &saved));
    assert_eq!(n, 3);
    sim.settle(Duration::from_secs(2));
    for (i, n) in (1..=3).enumerate() {
        assert!(bound_at(&sim, 0, n));
        assert_eq!(prefix_of(&sim, n), before[i]);
    }
    // Re-registered as refreshes (Handoff Indicator 5), never de-registered.
    assert_eq!(sim.lma.cache().len(), 3);
    let hi5 = sim
        .sent
        .iter()
        .filter(|(_, pk)| match pk.message() {
            Some(Message::BindingUpdate(bu)) => {
                ProxyBindingUpdate::new(&bu).unwrap().opts.handoff_indicator
                    == Some(HandoffIndicator::HandoffStateNotChanged)
            }
            _ => false,
        })
        .count();
    assert_eq!(hi5, 3);
    assert!(sim.mag_datapaths[0].uplinks.len() == 3);
}

/// Issue 14 ("a node lost its prefix"), as the lab showed it with three MAGs and five nodes:
/// a predictive handover MAG1 -> MAG2 whose new MAG never sees the node arrive (MAG1: "did
/// not complete in time", and the LMA never hears from MAG2), so MAG1 de-registers it and the
/// LMA deletes the entry after MinDelayBeforeBCEDelete; then a reactive handover to MAG3 and a
/// plain one back to MAG1. While its profile lasts, the node keeps its prefix: the LMA hands
/// its last prefix back to it (RFC 5213 §5.3.2 leaves the choice of prefix to the LMA; see
/// `Lma::create_session`), and gives it to no other node meanwhile.
#[test]
fn a_failed_predictive_handover_then_reactive_and_plain_ones_keep_the_prefix() {
    use pmip::config::FastHandoverMode;
    let mode = FastHandoverMode::Predictive;
    let mags = (0..3)
        .map(|i| {
            let mut c = mag_config(i, 6);
            c.domain.fast_handover.mode = mode;
            c
        })
        .collect();
    let mut lc = lma_config(3, 6);
    lc.domain.fast_handover.mode = mode;
    let mut sim = Sim::new(lc, mags, 77);
    for n in 1..=5 {
        sim.attach(usize::from(n - 1) % 3, ll(n));
    }
    sim.settle(Duration::from_secs(2));
    let p = prefix_of(&sim, 1);
    let others: Vec<Ipv6Net> = (2..=5).map(|n| prefix_of(&sim, n)).collect();
    let pbus_of_mag2 = |sim: &Sim| {
        sim.sent
            .iter()
            .filter(|(_, pk)| {
                pk.src == mag_addr(1) && matches!(pk.message(), Some(Message::BindingUpdate(_)))
            })
            .count()
    };
    let before = pbus_of_mag2(&sim);
    sim.mag_do(0, |m, now, _| {
        m.handle_handover_indication(now, &nai(1), mag_addr(1))
    })
    .unwrap();
    sim.run_for(Duration::from_millis(5));
    // The node leaves MAG1; MAG2 does not see it arrive.
    sim.detach(0, ll(1));
    sim.run_for(Duration::from_secs(6));
    assert!(sim.mag_events_of(0).any(|e| matches!(
        e,
        MagEvent::HandoverFailed {
            reason: "the handover did not complete in time",
            ..
        }
    )));
    assert_eq!(pbus_of_mag2(&sim), before, "the LMA never hears from MAG2");
    // MinDelayBeforeBCEDelete after MAG1's de-registration the entry is gone.
    sim.run_for(Duration::from_secs(12));
    assert!(sim.lma.cache().sessions_of(&nai(1)).next().is_none());
    // Meanwhile another node attaches: it does not get node 1's prefix.
    sim.attach(0, ll(6));
    sim.settle(Duration::from_secs(2));
    assert_ne!(prefix_of(&sim, 6), p, "node 1's prefix stays node 1's");
    // Reactive MAG2 -> MAG3: MAG2 has no context for it.
    sim.mag_do(2, |m, now, _| m.expect_arrival(now, ll(1), mag_addr(1)));
    sim.attach(2, ll(1));
    sim.settle(Duration::from_secs(8));
    assert!(bound_at(&sim, 2, 1));
    assert_eq!(
        prefix_of(&sim, 1),
        p,
        "the same prefix after the reactive handover"
    );
    // Plain MAG3 -> MAG1.
    sim.detach(2, ll(1));
    sim.attach(0, ll(1));
    sim.settle(Duration::from_secs(8));
    assert!(bound_at(&sim, 0, 1));
    assert_eq!(
        prefix_of(&sim, 1),
        p,
        "the same prefix after the plain handover"
    );
    let (_, _, ra) = sim
        .router_advertisements
        .iter()
        .rev()
        .find(|(_, m, ra)| *m == 0 && ra.mn_link_layer == ll(1))
        .unwrap();
    assert_eq!(ra.prefixes, vec![p]);
    for (n, q) in (2..=5).zip(&others) {
        assert_eq!(prefix_of(&sim, n), *q);
    }
}

/// Issue 14: the node reaches the new MAG before the previous MAG's HI does (the first HI was
/// lost, the retransmission comes while the new MAG's own PBU is outstanding). The new MAG
/// keeps serving the node on its link and registering it, and ends the previous MAG's
/// forwarding when its PBA comes: the context HI neither replaces the node's entry nor makes
/// the new MAG forward the node's packets away (RFC 5949 §4.1 does not cover the order).
#[test]
fn a_predictive_hi_that_arrives_after_the_node_does_not_take_the_node_off_its_link() {
    late_predictive_hi(true);
}

/// The same when the new MAG's registration completed before the HI came: it tells the
/// previous MAG at once, instead of taking itself for the node's previous MAG and
/// forwarding the node's packets back to it.
#[test]
fn a_predictive_hi_that_arrives_after_the_registration_completes_it_at_once() {
    late_predictive_hi(false);
}

fn late_predictive_hi(lose_first_pba: bool) {
    use pmip::config::FastHandoverMode;
    use pmip::mag::FastRole;
    let mut sim = fast_domain(FastHandoverMode::Predictive, 2, 1);
    sim.attach(0, ll(1));
    sim.settle(Duration::from_secs(2));
    let p = prefix_of(&sim, 1);
    let (mut his, mut pbas) = (0, 0);
    let mag2 = mag_addr(1);
    sim.drop = Some(Box::new(move |pk: &Packet| match pk.message() {
        Some(Message::HandoverInitiate(_)) => {
            his += 1;
            his == 1
        }
        Some(Message::BindingAck(_)) if pk.dst == mag2 && lose_first_pba => {
            pbas += 1;
            pbas == 1
        }
        _ => false,
    }));
    sim.mag_do(0, |m, now, _| {
        m.handle_handover_indication(now, &nai(1), mag_addr(1))
    })
    .unwrap();
    sim.run_for(Duration::from_millis(5));
    sim.detach(0, ll(1));
    sim.attach(1, ll(1));
    // The HI is retransmitted 250 ms later, while MAG2's PBU waits for its PBA.
    sim.run_for(Duration::from_millis(300));
    let e = sim.mags[1].binding(&nai(1)).expect("MAG2 keeps the node");
    if lose_first_pba {
        assert_eq!(e.state, BulState::Registering);
    } else {
        assert!(e.is_bound());
    }
    assert_eq!(e.link, pmip::output::AccessLink(1));
    assert!(sim.mag_datapaths[1].forwards.is_empty());
    sim.settle(Duration::from_secs(8));
    assert!(bound_at(&sim, 1, 1));
    assert_eq!(prefix_of(&sim, 1), p);
    assert!(sim.mag_datapaths[1].forwards.is_empty());
    assert!(sim.mag_datapaths[0].forwards.is_empty());
    assert!(sim.mags[0].binding(&nai(1)).is_none());
    assert!(
        sim.mag_events_of(0).any(|e| matches!(
            e,
            MagEvent::HandoverCompleted {
                role: FastRole::Previous,
                ..
            }
        )),
        "MAG1 is told the handover completed"
    );
    assert!(
        !sim.mag_events
            .iter()
            .any(|(_, _, e)| matches!(e, MagEvent::HandoverFailed { .. })),
        "{:?}",
        sim.mag_events
    );
}

/// A predictive handover in a domain set to reactive ones is reported as predictive by both
/// MAGs (the mode is the handover's, not the domain's).
#[test]
fn a_predictive_handover_is_reported_as_predictive_in_a_reactive_domain() {
    use pmip::config::FastHandoverMode;
    let mut sim = fast_domain(FastHandoverMode::Reactive, 2, 1);
    sim.attach(0, ll(1));
    sim.settle(Duration::from_secs(2));
    sim.mag_do(0, |m, now, _| {
        m.handle_handover_indication(now, &nai(1), mag_addr(1))
    })
    .unwrap();
    sim.run_for(Duration::from_millis(5));
    sim.detach(0, ll(1));
    sim.attach(1, ll(1));
    sim.settle(Duration::from_secs(2));
    for mag in 0..2 {
        let modes: Vec<FastHandoverMode> = sim
            .mag_events_of(mag)
            .filter_map(|e| match e {
                MagEvent::HandoverCompleted { mode, .. } => Some(*mode),
                _ => None,
            })
            .collect();
        assert_eq!(modes, vec![FastHandoverMode::Predictive], "MAG{}", mag + 1);
    }
}

fn heartbeat_requests(sim: &Sim, from: Ipv6Addr, since: usize) -> usize {
    sim.sent[since..]
        .iter()
        .filter(|(_, pk)| {
            pk.src == from
                && matches!(pk.message(), Some(Message::Heartbeat(h)) if !h.flags.contains(HeartbeatFlags::R))
        })
        .count()
}

fn binding_error(src: Ipv6Addr, dst: Ipv6Addr, status: BindingErrorStatus) -> Packet {
    let m = Message::BindingError(BindingError {
        status,
        home_address: Ipv6Addr::UNSPECIFIED,
        options: Options::EMPTY,
    });
    let mut b = vec![0u8; m.buffer_len()];
    m.emit_with_checksum(&mut b, &src, &dst).unwrap();
    Packet { src, dst, bytes: b }
}

/// RFC 5847 §3: "A Heartbeat Request message can be sent only if the MAG has at least one
/// proxy Binding Cache entry at the LMA": not while the only node's registration is being
/// refused, and from the PBA that accepts one.
#[test]
fn heartbeats_start_only_once_a_binding_exists() {
    // The LMA does not know node 2; the MAG does.
    let mut sim = Sim::new(lma_config(1, 1), vec![mag_config(0, 2)], 3);
    let lma: Ipv6Addr = LMA.parse().unwrap();
    sim.attach(0, ll(2));
    sim.run_for(Duration::from_secs(90));
    assert!(!bound_at(&sim, 0, 2));
    assert_eq!(heartbeat_requests(&sim, mag_addr(0), 0), 0);
    let since = sim.sent.len();
    sim.attach(0, ll(1));
    sim.run_for(Duration::from_millis(10));
    assert!(bound_at(&sim, 0, 1));
    assert_eq!(
        heartbeat_requests(&sim, mag_addr(0), since),
        1,
        "at the PBA"
    );
    assert_eq!(
        heartbeat_requests(&sim, lma, since),
        1,
        "the LMA's to the MAG"
    );
    // The binding ends: no more requests either way.
    sim.detach(0, ll(1));
    sim.run_for(Duration::from_secs(15));
    let since = sim.sent.len();
    sim.run_for(Duration::from_secs(120));
    assert_eq!(heartbeat_requests(&sim, mag_addr(0), since), 0);
    assert_eq!(heartbeat_requests(&sim, lma, since), 0);
}

/// RFC 5847 §3: a Binding Error with status 2 in answer to a Heartbeat Request: "the
/// initiating MAG or the LMA MUST NOT use Heartbeat messages with the other end again", also
/// when later bindings would start them. Another status changes nothing.
#[test]
fn a_binding_error_with_status_2_stops_heartbeats_to_that_peer_for_good() {
    let mut sim = domain(1, 2);
    let lma: Ipv6Addr = LMA.parse().unwrap();
    let mag = mag_addr(0);
    // Neither end answers the other's heartbeats (as if neither supported them).
    sim.drop = Some(Box::new(|pk: &Packet| {
        matches!(pk.message(), Some(Message::Heartbeat(_)))
    }));
    sim.attach(0, ll(1));
    sim.run_for(Duration::from_millis(10));
    assert_eq!(heartbeat_requests(&sim, mag, 0), 1);
    assert_eq!(heartbeat_requests(&sim, lma, 0), 1);
    sim.inject(binding_error(
        lma,
        mag,
        BindingErrorStatus::UnknownBindingForHomeAddressDestinationOption,
    ));
    sim.run_for(Duration::from_secs(31));
    assert_eq!(
        heartbeat_requests(&sim, mag, 0),
        2,
        "status 1 stops nothing"
    );
    sim.inject(binding_error(
        lma,
        mag,
        BindingErrorStatus::UnrecognizedMhType,
    ));
    sim.inject(binding_error(
        mag,
        lma,
        BindingErrorStatus::UnrecognizedMhType,
    ));
    sim.run_for(Duration::from_millis(10));
    assert!(sim.mag_events_of(0).any(|e| matches!(
        e,
        MagEvent::Peer(pmip::heartbeat::PeerEvent::Unsupported { .. })
    )));
    assert!(sim.lma_events.iter().any(|(_, e)| matches!(
        e,
        LmaEvent::Peer(pmip::heartbeat::PeerEvent::Unsupported { .. })
    )));
    let since = sim.sent.len();
    // A second node, a de-registration of both and a new registration: still none.
    sim.attach(0, ll(2));
    sim.run_for(Duration::from_secs(100));
    sim.detach(0, ll(1));
    sim.detach(0, ll(2));
    sim.run_for(Duration::from_secs(15));
    sim.attach(0, ll(1));
    sim.run_for(Duration::from_secs(100));
    assert!(bound_at(&sim, 0, 1));
    assert_eq!(heartbeat_requests(&sim, mag, since), 0);
    assert_eq!(heartbeat_requests(&sim, lma, since), 0);
}

/// RFC 5846 §8.1: a PBU the LMA accepts while the binding's revocation is in progress ends
/// the revocation: no BRI is retransmitted, the revocation does not time out into removing
/// the binding, and the BRA of the first BRI, arriving late, removes nothing.
#[test]
fn a_pbu_during_a_revocation_cancels_it_and_the_late_bra_removes_nothing() {
    let mut sim = domain(1, 1);
    sim.attach(0, ll(1));
    sim.settle(Duration::from_secs(2));
    let p = prefix_of(&sim, 1);
    // The MAG's BRA is held back.
    sim.drop = Some(Box::new(|pk: &Packet| {
        matches!(
            pk.message(),
            Some(Message::BindingRevocation(
                BindingRevocation::Acknowledgement(_)
            ))
        )
    }));
    let since = sim.sent.len();
    sim.lma_do(|lma, now, _| lma.revoke(now, &nai(1), RevocationTrigger::AdministrativeReason))
        .unwrap();
    sim.run_for(Duration::from_millis(5));
    assert!(sim.mags[0].binding(&nai(1)).is_none(), "the MAG revoked");
    let bra = sim.sent[since..]
        .iter()
        .find(|(_, pk)| {
            matches!(
                pk.message(),
                Some(Message::BindingRevocation(
                    BindingRevocation::Acknowledgement(_)
                ))
            )
        })
        .map(|(_, pk)| pk.clone())
        .expect("a BRA");
    // The node is still there and registers again, before the LMA retransmits the BRI.
    sim.attach(0, ll(1));
    sim.run_for(Duration::from_millis(10));
    assert!(bound_at(&sim, 0, 1));
    assert!(sim.lma_events.iter().any(|(_, e)| matches!(
        e,
        LmaEvent::RevocationCancelled { mn_id } if *mn_id == nai(1)
    )));
    sim.drop = None;
    sim.inject(bra);
    sim.run_for(Duration::from_secs(10));
    let bris = sim.sent[since..]
        .iter()
        .filter(|(_, pk)| {
            matches!(
                pk.message(),
                Some(Message::BindingRevocation(BindingRevocation::Indication(_)))
            )
        })
        .count();
    assert_eq!(bris, 1, "no retransmission");
    assert!(bound_at(&sim, 0, 1));
    assert_eq!(prefix_of(&sim, 1), p);
    assert_eq!(
        sim.lma_datapath.get(&IpNet::from(p)),
        Some(&Downlink::Tunnel(mag_addr(0)))
    );
    assert!(
        !sim.lma_events
            .iter()
            .any(|(_, e)| matches!(e, LmaEvent::BindingRemoved { .. }))
    );
}

/// RFC 5846 §8.1: the LMA revokes every binding of one MAG with a single global BRI (G,
/// "Per-Peer Policy", no options); the MAG revokes all its nodes and acknowledges; the
/// bindings of the other MAGs stay.
#[test]
fn a_per_peer_revocation_removes_every_binding_of_that_mag_and_only_those() {
    let mut sim = domain(2, 3);
    sim.attach(0, ll(1));
    sim.attach(0, ll(2));
    sim.attach(1, ll(3));
    sim.settle(Duration::from_secs(2));
    let since = sim.sent.len();
    let n = sim.lma_do(|lma, now, _| lma.revoke_peer(now, mag_addr(0)));
    assert_eq!(n, Ok(2));
    sim.settle(Duration::from_secs(2));
    let bris: Vec<(RevocationFlags, RevocationTrigger, usize)> = sim.sent[since..]
        .iter()
        .filter_map(|(_, pk)| match pk.message() {
            Some(Message::BindingRevocation(BindingRevocation::Indication(bri))) => {
                Some((bri.flags, bri.trigger, bri.options.iter().count()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        bris,
        vec![(
            RevocationFlags::P | RevocationFlags::G,
            RevocationTrigger::PerPeerPolicy,
            0
        )]
    );
    assert!(sim.lma_events.iter().any(|(_, e)| matches!(
        e,
        LmaEvent::PeerRevocationEnded {
            status: Some(BraStatus::Success),
            bindings: 2,
            ..
        }
    )));
    for n in [1, 2] {
        assert!(sim.lma.cache().sessions_of(&nai(n)).next().is_none());
        assert!(sim.mags[0].binding(&nai(n)).is_none());
    }
    assert!(bound_at(&sim, 1, 3));
    assert_eq!(sim.lma.cache().len(), 1);
    assert!(
        sim.lma_do(|lma, now, _| lma.revoke_peer(now, mag_addr(0)))
            .is_err()
    );
}

/// Issue 13 item 8 (the seed: "MN-ID, e.g. the MN's MAC"): a profile whose MN-ID is derived
/// from the node's link-layer address. The PBU carries it as an NAI (subtype 1, the only
/// one RFC 4283 allocates) `02-00-00-00-00-07@example.org`, the LMA knows the node by it, and
/// the node moves between MAGs under it. The files of both ends name only the realm.
#[test]
fn an_mn_id_derived_from_the_link_layer_address_registers_and_moves() {
    let derived = |n: u16| -> MobileNodeProfile {
        serde_saphyr::from_str(&format!(
            "mn_id_from_link_layer: example.org\nlink_layer_addresses: ['{}']\n",
            ll(n)
        ))
        .unwrap()
    };
    let mut lma = lma_config(2, 0);
    lma.mobile_nodes = vec![derived(7)];
    lma.validate().unwrap();
    let mags = (0..2)
        .map(|i| {
            let mut c = mag_config(i, 0);
            c.mobile_nodes = vec![derived(7)];
            c.validate().unwrap();
            c
        })
        .collect();
    let mut sim = Sim::new(lma, mags, 42);
    let id = "02-00-00-00-00-07@example.org";
    sim.attach(0, ll(7));
    sim.settle(Duration::from_secs(1));
    let ids: Vec<(u8, Vec<u8>)> = sim
        .sent
        .iter()
        .filter_map(|(_, p)| match p.message() {
            Some(Message::BindingUpdate(bu)) => bu.options.iter().find_map(|o| match o {
                MobilityOption::MobileNodeIdentifier { subtype, id } => {
                    Some((subtype, id.to_vec()))
                }
                _ => None,
            }),
            _ => None,
        })
        .collect();
    assert_eq!(ids, vec![(MN_ID_SUBTYPE_NAI, id.as_bytes().to_vec())]);
    let e = sim.mags[0]
        .binding(id)
        .expect("bound under the derived MN-ID");
    assert!(e.is_bound());
    let prefix = e.prefixes[0];
    assert_eq!(sim.lma.cache().sessions_of(id).count(), 1);
    sim.detach(0, ll(7));
    sim.attach(1, ll(7));
    sim.settle(Duration::from_secs(1));
    let e = sim.mags[1].binding(id).expect("bound at the new MAG");
    assert_eq!(e.prefixes, vec![prefix], "the same prefix after the move");
}

/// RFC 6275 §9.2: a Mobility Header of a type the receiver does not recognize is answered
/// with a Binding Error of status 2, by the LMA and by a MAG alike (how a peer learns that a
/// message such as RFC 5847's Heartbeat or RFC 5846's BRI is not supported).
#[test]
fn an_unrecognized_mh_type_gets_a_binding_error_from_the_lma_and_from_a_mag() {
    let mut sim = domain(1, 1);
    sim.attach(0, ll(1));
    sim.settle(Duration::from_secs(2));
    let lma: Ipv6Addr = LMA.parse().unwrap();
    let mag = mag_addr(0);
    for (src, dst) in [(mag, lma), (lma, mag)] {
        // Payload Proto 59, Header Len 0, MH Type 50, Reserved, Checksum, 2 octets of data.
        let mut bytes = vec![59, 0, 50, 0, 0, 0, 0, 0];
        let c = pmip::wire::mh_checksum(&src, &dst, &bytes);
        bytes[4..6].copy_from_slice(&c.to_be_bytes());
        let since = sim.sent.len();
        sim.inject(Packet { src, dst, bytes });
        sim.run_for(Duration::from_millis(10));
        let errors: Vec<_> = (sim.sent[since..].iter())
            .filter(|(_, p)| p.src == dst && p.dst == src)
            .filter_map(|(_, p)| match p.message() {
                Some(Message::BindingError(be)) => Some(be.status),
                _ => None,
            })
            .collect();
        assert_eq!(
            errors,
            [BindingErrorStatus::UnrecognizedMhType],
            "from {dst}"
        );
    }
    assert!(bound_at(&sim, 0, 1), "nothing else changed");
}
