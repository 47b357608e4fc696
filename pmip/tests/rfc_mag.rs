//! Scenario tests of the MAG against RFC 5213 §6, RFC 5949 and RFC 5846 §9, in the simulator.
//! Each names the section it checks.

use core::time::Duration;
use std::net::Ipv6Addr;

use ipnet::IpNet;
use pmip::sim::Sim;
use pmip::types::LinkLayerAddress;
use pmip::wire::*;

mod common;
use common::*;

/// The MN-ID of every PBU `sim` sent from `from` on, in order.
fn pbus_since(sim: &Sim, from: usize) -> Vec<String> {
    sim.sent[from..]
        .iter()
        .filter_map(|(_, p)| match p.message() {
            Some(Message::BindingUpdate(bu)) => {
                let pbu = ProxyBindingUpdate::new(&bu).ok()?;
                Some(String::from_utf8_lossy(pbu.opts.nai()?).into_owned())
            }
            _ => None,
        })
        .collect()
}

/// Issue 12 point 6: a scenario runs the same way every time. Two simulators built alike in
/// one process (whose maps would get different hasher seeds) re-register their nodes in the
/// same order.
#[test]
fn the_same_scenario_sends_the_same_messages_in_the_same_order() {
    let run = || {
        let mut sim = domain(1, 40);
        for n in 1..=40 {
            sim.attach(0, ll(n));
        }
        sim.settle(Duration::from_secs(5));
        let from = sim.sent.len();
        sim.mag_do(0, |m, now, wall| m.reregister_all(now, wall));
        pbus_since(&sim, from)
    };
    let first = run();
    assert_eq!(first.len(), 40);
    for _ in 0..4 {
        assert_eq!(run(), first);
    }
}

/// The binding update list reports its changes as outputs: the daemon answers API calls
/// from them instead of inspecting the state machine.
#[test]
fn binding_update_list_changes_are_outputs() {
    use pmip::mag::{BulChange, BulState};
    let mut sim = domain(1, 1);
    sim.attach(0, ll(1));
    sim.settle(Duration::from_secs(2));
    sim.detach(0, ll(1));
    sim.settle(Duration::from_secs(2));
    let seen: Vec<Option<BulState>> = sim
        .bul_changes
        .iter()
        .map(|(_, _, c)| match c {
            BulChange::Updated { entry, .. } => {
                assert_eq!(entry.link_layer, ll(1));
                Some(entry.state)
            }
            BulChange::Removed { mn_id, link_layer } => {
                assert_eq!((mn_id.as_str(), *link_layer), (nai(1).as_str(), ll(1)));
                None
            }
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            Some(BulState::Registering),
            Some(BulState::Bound),
            Some(BulState::Deregistering),
            None
        ]
    );
    // Each change comes after the other outputs of its input: the Removed after the
    // Deregistered event of the same instant.
    let removed_at = sim.bul_changes.last().unwrap().0;
    assert!(
        sim.mag_events
            .iter()
            .any(|(t, _, e)| *t == removed_at
                && matches!(e, pmip::mag::MagEvent::Deregistered { .. }))
    );
}

/// The previous MAG reports the new MAG's acknowledgement as an event, with the entry's
/// handover in its binding update list change.
#[test]
fn the_previous_mag_reports_the_acknowledged_handover() {
    use pmip::config::FastHandoverMode;
    use pmip::mag::{BulChange, FastPhase, MagEvent};
    let mut sim = fast_domain(FastHandoverMode::Predictive, 2, 1);
    sim.attach(0, ll(1));
    sim.settle(Duration::from_secs(2));
    sim.mag_do(0, |m, now, _| {
        m.handle_handover_indication(now, &nai(1), mag_addr(1))
    })
    .unwrap();
    let phase = |sim: &Sim| {
        sim.bul_changes.iter().rev().find_map(|(_, i, c)| match c {
            BulChange::Updated { handover, .. } if *i == 0 => Some(handover.as_ref()?.phase),
            _ => None,
        })
    };
    assert_eq!(phase(&sim), Some(FastPhase::Initiating));
    assert!(
        !sim.mag_events_of(0)
            .any(|e| matches!(e, MagEvent::HandoverAcknowledged { .. }))
    );
    sim.run_for(Duration::from_millis(5));
    assert!(sim.mag_events_of(0).any(|e| matches!(
        e,
        MagEvent::HandoverAcknowledged { mn_id, peer } if *mn_id == nai(1) && *peer == mag_addr(1)
    )));
    assert_eq!(phase(&sim), Some(FastPhase::Forwarding));
}

/// A domain whose node 1 has two interfaces: `ll(1)` and `ll(0x101)`.
fn two_interface_domain(mags: usize) -> Sim {
    two_interface_fast_domain(mags, pmip::config::FastHandoverMode::Off)
}

fn two_interface_fast_domain(mags: usize, mode: pmip::config::FastHandoverMode) -> Sim {
    let mut lc = lma_config(mags, 1);
    lc.mobile_nodes[0].link_layer_addresses.push(ll(0x101));
    lc.domain.fast_handover.mode = mode;
    let cfgs = (0..mags)
        .map(|i| {
            let mut c = mag_config(i, 1);
            c.mobile_nodes[0].link_layer_addresses.push(ll(0x101));
            c.domain.fast_handover.mode = mode;
            c
        })
        .collect();
    Sim::new(lc, cfgs, 42)
}

fn attach_on(sim: &mut Sim, mag: usize, l: LinkLayerAddress, link: u32) {
    sim.attach_with(
        mag,
        pmip::mag::Attach {
            link_layer: l,
            link: pmip::output::AccessLink(link),
            access_technology_type: None,
            handoff_hint: None,
        },
    );
}

/// Every PBU sent, parsed: (source, MN-LL-ID, Handoff Indicator, lifetime zero).
fn pbus(sim: &Sim) -> Vec<(Ipv6Addr, Vec<u8>, Option<HandoffIndicator>, bool)> {
    sim.sent
        .iter()
        .filter_map(|(_, p)| match p.message() {
            Some(Message::BindingUpdate(bu)) => {
                let pbu = ProxyBindingUpdate::new(&bu).ok()?;
                Some((
                    p.src,
                    pbu.opts.mn_link_layer_id.unwrap_or_default().to_vec(),
                    pbu.opts.handoff_indicator,
                    bu.lifetime.is_zero(),
                ))
            }
            _ => None,
        })
        .collect()
}

/// RFC 5213 §5.4 (multihoming), §6.9.1.1 rules 4-5: two interfaces of one node, attached to
/// two access links of one MAG, are two mobility sessions: two PBUs (the second with Handoff
/// Indicator 1, "attachment over a new interface"), two prefixes, two routes; one interface
/// leaving ends only its own session.
#[test]
fn two_interfaces_of_one_node_on_one_mag_are_two_mobility_sessions() {
    let mut sim = two_interface_domain(1);
    attach_on(&mut sim, 0, ll(1), 1);
    sim.settle(Duration::from_secs(2));
    attach_on(&mut sim, 0, ll(0x101), 2);
    sim.settle(Duration::from_secs(2));

    let entries: Vec<_> = sim.mags[0].bindings_of(&nai(1)).cloned().collect();
    assert_eq!(entries.len(), 2, "{entries:#?}");
    assert!(entries.iter().all(|e| e.is_bound()));
    let by_ll = |l: LinkLayerAddress| entries.iter().find(|e| e.link_layer == l).unwrap();
    let (a, b) = (by_ll(ll(1)), by_ll(ll(0x101)));
    assert_eq!(a.link.0, 1);
    assert_eq!(b.link.0, 2);
    assert_ne!(a.prefixes, b.prefixes);
    let dp = &sim.mag_datapaths[0];
    assert_eq!(
        dp.access_routes
            .get(&IpNet::from(a.prefixes[0]))
            .map(|r| r.0.0),
        Some(1)
    );
    assert_eq!(
        dp.access_routes
            .get(&IpNet::from(b.prefixes[0]))
            .map(|r| r.0.0),
        Some(2)
    );
    assert_eq!(sim.lma.cache().sessions_of(&nai(1)).count(), 2);
    let sent = pbus(&sim);
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert_eq!(sent[0].1, ll(1).as_bytes());
    assert_eq!(sent[1].1, ll(0x101).as_bytes());
    assert_eq!(
        sent[1].2,
        Some(HandoffIndicator::AttachmentOverNewInterface)
    );
    // Each interface got an RA with its own prefix on its own link.
    for e in [a, b] {
        assert!(
            sim.router_advertisements
                .iter()
                .any(|(_, _, ra)| ra.link == e.link
                    && ra.mn_link_layer == e.link_layer
                    && ra.prefixes == e.prefixes)
        );
    }

    // The second interface leaves: its session ends, the first one stays.
    sim.detach(0, ll(0x101));
    sim.settle(Duration::from_secs(2));
    let left: Vec<_> = sim.mags[0].bindings_of(&nai(1)).collect();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].link_layer, ll(1));
    assert!(left[0].is_bound());
    assert!(
        sim.mag_datapaths[0]
            .access_routes
            .contains_key(&IpNet::from(a.prefixes[0]))
    );
    assert!(
        !sim.mag_datapaths[0]
            .access_routes
            .contains_key(&IpNet::from(b.prefixes[0]))
    );
    let cache = sim.lma.cache();
    let live: Vec<_> = cache
        .sessions_of(&nai(1))
        .filter_map(|s| cache.get(s))
        .filter(|e| e.state() != pmip::cache::BindingState::Deregistering)
        .collect();
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].prefixes.as_slice(), &a.prefixes[..]);
}

/// RFC 5213 §6.9.1.1 rule 5 case (a): one interface moving between two access links of one
/// MAG is the same session: its route moves, nothing is signalled.
#[test]
fn one_interface_moving_between_links_of_one_mag_keeps_its_session() {
    let mut sim = two_interface_domain(1);
    attach_on(&mut sim, 0, ll(1), 1);
    sim.settle(Duration::from_secs(2));
    let p = sim.mags[0].binding(&nai(1)).unwrap().prefixes[0];
    attach_on(&mut sim, 0, ll(1), 2);
    sim.settle(Duration::from_secs(2));
    assert_eq!(sim.mags[0].bindings_of(&nai(1)).count(), 1);
    assert_eq!(sim.mags[0].binding(&nai(1)).unwrap().link.0, 2);
    assert_eq!(
        sim.mag_datapaths[0]
            .access_routes
            .get(&IpNet::from(p))
            .map(|r| r.0.0),
        Some(2)
    );
    assert_eq!(pbus(&sim).len(), 1);
}

/// RFC 5213 §5.4 with RFC 5949 §4.1 (reactive): of a node with two interfaces on one MAG,
/// the one that moves to another MAG takes its own session along; the previous MAG hands
/// over that interface's context and prefix, and keeps serving the other interface.
#[test]
fn a_reactive_handover_of_one_interface_leaves_the_other_in_place() {
    use pmip::config::FastHandoverMode;
    let mut sim = two_interface_fast_domain(2, FastHandoverMode::Reactive);
    attach_on(&mut sim, 0, ll(1), 1);
    sim.settle(Duration::from_secs(2));
    attach_on(&mut sim, 0, ll(0x101), 2);
    sim.settle(Duration::from_secs(2));
    let prefix = |sim: &Sim, mag: usize, l| {
        sim.mags[mag]
            .binding_by_link_layer(&ll(l))
            .map(|e| e.prefixes.clone())
    };
    let (pa, pb) = (prefix(&sim, 0, 1).unwrap(), prefix(&sim, 0, 0x101).unwrap());
    sim.mag_do(1, |m, now, _| m.expect_arrival(now, ll(0x101), mag_addr(0)));
    sim.detach(0, ll(0x101));
    attach_on(&mut sim, 1, ll(0x101), 1);
    sim.settle(Duration::from_secs(2));
    sim.run_for(Duration::from_millis(50));
    assert_eq!(
        prefix(&sim, 1, 0x101),
        Some(pb.clone()),
        "its own prefix moved"
    );
    assert!(
        sim.mags[1]
            .binding_by_link_layer(&ll(0x101))
            .unwrap()
            .is_bound()
    );
    assert_eq!(prefix(&sim, 0, 1), Some(pa.clone()), "the other stays");
    assert!(
        sim.mags[0]
            .binding_by_link_layer(&ll(1))
            .unwrap()
            .is_bound()
    );
    assert!(sim.mags[0].binding_by_link_layer(&ll(0x101)).is_none());
    assert!(
        sim.mag_datapaths[0]
            .access_routes
            .contains_key(&IpNet::from(pa[0]))
    );
    assert!(sim.mag_datapaths[0].forwards.is_empty());
    assert!(
        sim.mag_datapaths[1]
            .access_routes
            .contains_key(&IpNet::from(pb[0]))
    );
    assert!(
        !sim.mag_datapaths[1]
            .access_routes
            .contains_key(&IpNet::from(pa[0]))
    );
}

/// Whether MAG `mag` sent node `l` an RA withdrawing `prefix` (prefix lifetime zero).
fn withdrawn(sim: &Sim, mag: usize, l: LinkLayerAddress, prefix: ipnet::Ipv6Net) -> bool {
    sim.router_advertisements.iter().any(|(_, i, ra)| {
        *i == mag
            && ra.mn_link_layer == l
            && ra.prefixes.contains(&prefix)
            && ra.prefix_lifetime.is_zero()
    })
}

/// Whether MAG `mag` advertised `prefix` to node `l` with a lifetime.
fn advertised(sim: &Sim, mag: usize, l: LinkLayerAddress, prefix: ipnet::Ipv6Net) -> bool {
    sim.router_advertisements.iter().any(|(_, i, ra)| {
        *i == mag
            && ra.mn_link_layer == l
            && ra.prefixes.contains(&prefix)
            && !ra.prefix_lifetime.is_zero()
    })
}

/// Nothing of `prefix` is left in MAG `mag`'s datapath: no route to the node, no uplink, no
/// buffer handing it packets.
fn unrouted(sim: &Sim, mag: usize, prefix: ipnet::Ipv6Net) -> bool {
    let d = &sim.mag_datapaths[mag];
    !d.access_routes.contains_key(&IpNet::from(prefix))
        && !d.uplinks.contains_key(&IpNet::from(prefix))
        && !d.delivering.contains_key(&IpNet::from(prefix))
        && !d.buffering.contains(&IpNet::from(prefix))
}

/// A two-MAG fast-handover domain where the LMA does not authorize MAG2: its PBUs get 154.
fn fast_domain_mag2_unauthorized(mode: pmip::config::FastHandoverMode) -> Sim {
    let cfgs = (0..2)
        .map(|i| {
            let mut c = mag_config(i, 1);
            c.domain.fast_handover.mode = mode;
            c
        })
        .collect();
    let mut lc = lma_config(1, 1);
    lc.domain.fast_handover.mode = mode;
    Sim::new(lc, cfgs, 77)
}

/// Moves node 1 from MAG1 to MAG2 with a fast handover of `mode`.
fn fast_move(sim: &mut Sim, mode: pmip::config::FastHandoverMode) {
    announce_move(sim, mode);
    sim.detach(0, ll(1));
    sim.attach(1, ll(1));
}

/// RFC 5949 §5.2: a new MAG that advertised the node's prefix from the context before its
/// PBA "MUST withdraw the advertised HNP by sending another RA with zero prefix lifetime"
/// when "the subsequent PMIPv6 binding registration for the HNP fails", and removes what it
/// routed for it (RFC 5213 §6.9.1.2 rule 11).
#[test]
fn a_new_mag_withdraws_the_context_prefix_when_the_lma_refuses_it() {
    use pmip::config::FastHandoverMode;
    for mode in [FastHandoverMode::Predictive, FastHandoverMode::Reactive] {
        let mut sim = fast_domain_mag2_unauthorized(mode);
        sim.attach(0, ll(1));
        sim.settle(Duration::from_secs(2));
        let p = sim.mags[0].binding(&nai(1)).unwrap().prefixes[0];
        fast_move(&mut sim, mode);
        sim.run_for(Duration::from_millis(20));
        assert!(advertised(&sim, 1, ll(1), p), "{mode:?}: advertised early");
        assert!(matches!(
            sim.mags[1].binding(&nai(1)).unwrap().state,
            pmip::mag::BulState::Denied { .. }
        ));
        assert!(withdrawn(&sim, 1, ll(1), p), "{mode:?}: not withdrawn");
        assert!(unrouted(&sim, 1, p), "{mode:?}: {:?}", sim.mag_datapaths[1]);
    }
}

/// RFC 5949 §5.2, the registration failing for want of an answer: after the last PBU the
/// new MAG withdraws what it advertised from the context.
#[test]
fn a_new_mag_withdraws_the_context_prefix_when_its_registration_gives_up() {
    use pmip::config::FastHandoverMode;
    for mode in [FastHandoverMode::Predictive, FastHandoverMode::Reactive] {
        let mut sim = fast_domain(mode, 2, 1);
        sim.attach(0, ll(1));
        sim.settle(Duration::from_secs(2));
        let p = sim.mags[0].binding(&nai(1)).unwrap().prefixes[0];
        let mag2 = mag_addr(1);
        sim.drop = Some(Box::new(move |pk: &pmip::sim::Packet| {
            pk.src == mag2 && matches!(pk.message(), Some(Message::BindingUpdate(_)))
        }));
        fast_move(&mut sim, mode);
        sim.run_for(Duration::from_millis(20));
        assert!(advertised(&sim, 1, ll(1), p), "{mode:?}: advertised early");
        sim.run_for(Duration::from_secs(300));
        assert!(
            sim.mag_events_of(1)
                .any(|e| matches!(e, pmip::mag::MagEvent::GaveUp { .. })),
            "{mode:?}"
        );
        assert!(withdrawn(&sim, 1, ll(1), p), "{mode:?}: not withdrawn");
        assert!(unrouted(&sim, 1, p), "{mode:?}: {:?}", sim.mag_datapaths[1]);
    }
}

/// A Handover Initiate with the context of node 1, as a PMAG sends it.
fn context_hi(from: Ipv6Addr, to: Ipv6Addr, prefix: ipnet::Ipv6Net) -> pmip::sim::Packet {
    let id = nai(1);
    let l = ll(1);
    let opts = [
        MobilityOption::MobileNodeIdentifier {
            subtype: 1,
            id: id.as_bytes(),
        },
        MobilityOption::HomeNetworkPrefix(prefix),
        MobilityOption::LmaAddress(LmaAddress::V6(LMA.parse().unwrap())),
        MobilityOption::MnLinkLayerIdentifier(l.as_bytes()),
    ];
    let m = Message::HandoverInitiate(HandoverInitiate {
        sequence: SequenceNumber(7),
        flags: HiFlags::P | HiFlags::F | HiFlags::U,
        code: HiCode::AllAvailableContextTransferred,
        options: Options::List(&opts),
    });
    let mut b = vec![0u8; m.buffer_len()];
    m.emit_with_checksum(&mut b, &from, &to).unwrap();
    pmip::sim::Packet {
        src: from,
        dst: to,
        bytes: b,
    }
}

/// RFC 5949 §5.2: the first PBA gives another prefix than the one the context carried and
/// the new MAG advertised: that one is withdrawn and unrouted, the LMA's is served.
#[test]
fn a_stale_context_prefix_is_withdrawn_and_unrouted_after_the_first_accept() {
    use pmip::config::FastHandoverMode;
    let mut sim = fast_domain(FastHandoverMode::Predictive, 2, 1);
    sim.attach(0, ll(1));
    sim.settle(Duration::from_secs(2));
    let p = sim.mags[0].binding(&nai(1)).unwrap().prefixes[0];
    // A context with a prefix the node does not have (outside the LMA's pools).
    let wrong: ipnet::Ipv6Net = "2001:db8:ee::/64".parse().unwrap();
    sim.inject(context_hi(mag_addr(0), mag_addr(1), wrong));
    sim.run_for(Duration::from_millis(5));
    sim.detach(0, ll(1));
    sim.attach(1, ll(1));
    assert!(advertised(&sim, 1, ll(1), wrong));
    sim.settle(Duration::from_secs(2));
    let e = sim.mags[1].binding(&nai(1)).unwrap();
    assert!(e.is_bound());
    assert_eq!(e.prefixes, vec![p]);
    assert!(advertised(&sim, 1, ll(1), p));
    assert!(
        withdrawn(&sim, 1, ll(1), wrong),
        "stale prefix not withdrawn"
    );
    assert!(!withdrawn(&sim, 1, ll(1), p));
    assert!(unrouted(&sim, 1, wrong), "{:?}", sim.mag_datapaths[1]);
    assert!(
        sim.mag_datapaths[1]
            .access_routes
            .contains_key(&IpNet::from(p))
    );
    // Withdrawing a stale prefix does not withdraw the default router.
    let (_, _, last) = sim
        .router_advertisements
        .iter()
        .rev()
        .find(|(_, i, _)| *i == 1)
        .unwrap();
    assert!(!last.router_lifetime.is_zero());
}

/// RFC 5949 §6.1.2: "when the PMAG sends the HI message to the NMAG with the context
/// information and the NMAG successfully receives it, the NMAG returns the HAck message with
/// Code value 5"; the handover goes on.
#[test]
fn the_new_mag_acknowledges_a_context_with_code_5() {
    use pmip::config::FastHandoverMode;
    let mut sim = fast_domain(FastHandoverMode::Predictive, 2, 1);
    sim.attach(0, ll(1));
    sim.settle(Duration::from_secs(2));
    sim.mag_do(0, |m, now, _| {
        m.handle_handover_indication(now, &nai(1), mag_addr(1))
    })
    .unwrap();
    sim.run_for(Duration::from_millis(5));
    let codes: Vec<HackCode> = sim
        .sent
        .iter()
        .filter(|(_, p)| p.src == mag_addr(1))
        .filter_map(|(_, p)| match p.message() {
            Some(Message::HandoverAck(h)) => Some(h.code),
            _ => None,
        })
        .collect();
    assert_eq!(codes, vec![HackCode::ContextTransferAccepted]);
    let p = sim.mags[0].binding(&nai(1)).unwrap().prefixes[0];
    assert_eq!(
        sim.mag_datapaths[0].forwards.get(&IpNet::from(p)),
        Some(&mag_addr(1))
    );
}

/// `pba` re-encoded with its Handoff Indicator option set to `hi`.
fn with_handoff_indicator(pba: &pmip::sim::Packet, hi: HandoffIndicator) -> pmip::sim::Packet {
    let Some(Message::BindingAck(ba)) = pba.message() else {
        panic!("not a PBA")
    };
    let opts: Vec<MobilityOption<'_>> = ba
        .options
        .iter()
        .map(|o| match o {
            MobilityOption::HandoffIndicator(_) => MobilityOption::HandoffIndicator(hi),
            o => o,
        })
        .collect();
    let m = Message::BindingAck(BindingAck {
        options: Options::List(&opts),
        ..ba
    });
    let mut b = vec![0u8; m.buffer_len()];
    m.emit_with_checksum(&mut b, &pba.src, &pba.dst).unwrap();
    pmip::sim::Packet {
        src: pba.src,
        dst: pba.dst,
        bytes: b,
    }
}

fn pbus_from(sim: &Sim, mag: usize) -> usize {
    sim.sent
        .iter()
        .filter(|(_, p)| {
            p.src == mag_addr(mag) && matches!(p.message(), Some(Message::BindingUpdate(_)))
        })
        .count()
}

/// Drops the LMA's PBAs (the test sends its own instead).
fn tamper_next_pba(sim: &mut Sim) {
    sim.drop = Some(Box::new(|p: &pmip::sim::Packet| {
        matches!(p.message(), Some(Message::BindingAck(_)))
    }));
}

/// RFC 5213 §6.9.1.2 rule 6: a PBA whose Handoff Indicator differs from the PBU's "MUST be
/// ignored", and "the mobile access gateway MUST NOT retransmit the Proxy Binding Update
/// message until an administrative action is taken": no service, no more PBUs, until the
/// node is detached (an API call or a profile change) and attaches again.
#[test]
fn a_pba_with_another_handoff_indicator_is_ignored_and_the_pbu_is_not_retransmitted() {
    use pmip::mag::{BulState, MagEvent};
    let mut sim = domain(1, 1);
    tamper_next_pba(&mut sim);
    sim.attach(0, ll(1));
    sim.run_for(Duration::from_millis(5));
    sim.drop = None;
    let bad = with_handoff_indicator(&last_pba_packet(&sim), HandoffIndicator::HandoffBetweenMags);
    sim.inject(bad);
    sim.run_for(Duration::from_millis(5));
    assert!(sim.mag_events_of(0).any(|e| matches!(
        e,
        MagEvent::PbaIgnored { reason, .. } if reason.contains("echoed")
    )));
    let e = sim.mags[0].binding(&nai(1)).unwrap();
    assert_eq!(e.state, BulState::Halted);
    assert!(!e.is_bound());
    assert!(sim.mag_datapaths[0].access_routes.is_empty());
    sim.run_for(Duration::from_secs(600));
    assert_eq!(pbus_from(&sim, 0), 1, "retransmitted after an ignored PBA");
    // The node showing up again is not an administrative action.
    sim.attach(0, ll(1));
    sim.mag_do(0, |m, now, wall| {
        m.handle_router_solicitation(now, wall, pmip::output::AccessLink(1), ll(1))
    });
    sim.run_for(Duration::from_secs(5));
    assert_eq!(pbus_from(&sim, 0), 1);
    // A detach (the API's, or the profile's removal) is: then the node registers again.
    sim.detach(0, ll(1));
    assert!(sim.mags[0].binding(&nai(1)).is_none());
    sim.attach(0, ll(1));
    sim.settle(Duration::from_secs(2));
    assert!(sim.mags[0].binding(&nai(1)).unwrap().is_bound());
}

/// RFC 5213 §6.9.1.2 rule 6 during a refresh: no more PBUs; the node keeps the binding it has
/// until it expires, then its prefix is withdrawn, and the MAG still waits for an
/// administrative action.
#[test]
fn a_refresh_answered_with_another_handoff_indicator_is_not_retransmitted() {
    use pmip::mag::{BulState, MagEvent};
    let mut sim = domain(1, 1);
    sim.attach(0, ll(1));
    sim.settle(Duration::from_secs(2));
    let p = sim.mags[0].binding(&nai(1)).unwrap().prefixes[0];
    let lifetime = sim.mags[0].binding(&nai(1)).unwrap().lifetime;
    tamper_next_pba(&mut sim);
    // Up to the refresh (at 80 % of the lifetime) and its PBA.
    sim.run_for(lifetime * 8 / 10 + Duration::from_millis(5));
    assert_eq!(pbus_from(&sim, 0), 2);
    sim.drop = None;
    let bad = with_handoff_indicator(&last_pba_packet(&sim), HandoffIndicator::HandoffBetweenMags);
    sim.inject(bad);
    sim.run_for(Duration::from_millis(5));
    assert_eq!(
        sim.mags[0].binding(&nai(1)).unwrap().state,
        BulState::Halted
    );
    assert!(
        sim.mag_datapaths[0]
            .access_routes
            .contains_key(&IpNet::from(p)),
        "served until expiry"
    );
    sim.run_for(lifetime);
    assert_eq!(pbus_from(&sim, 0), 2, "retransmitted after an ignored PBA");
    assert!(sim.mag_datapaths[0].access_routes.is_empty());
    assert!(withdrawn(&sim, 0, ll(1), p));
    assert!(
        sim.mag_events_of(0)
            .any(|e| matches!(e, MagEvent::Expired { .. }))
    );
    assert_eq!(
        sim.mags[0].binding(&nai(1)).unwrap().state,
        BulState::Halted
    );
}

/// A BRI from the LMA to MAG `mag` for node 1 with `trigger`.
fn bri(mag: usize, trigger: RevocationTrigger, seq: u16) -> pmip::sim::Packet {
    let id = nai(1);
    let opts = [mn_id_opt(id.as_bytes())];
    bri_packet(
        lma_addr(),
        mag_addr(mag),
        seq,
        trigger,
        RevocationFlags::P,
        &opts,
    )
}

/// The status of MAG `mag`'s acknowledgement of BRI `seq`.
fn bra_status(sim: &Sim, mag: usize, seq: u16) -> Option<BraStatus> {
    sim.sent.iter().find_map(|(_, p)| match p.message() {
        Some(Message::BindingRevocation(BindingRevocation::Acknowledgement(a)))
            if p.src == mag_addr(mag) && a.sequence == SequenceNumber(seq) =>
        {
            Some(a.status)
        }
        _ => None,
    })
}

/// RFC 5846 §9.1: for a BRI whose trigger is an inter-MAG handover, the MAG "SHOULD ensure
/// that the mobile node is no longer attached ... before accepting", and "if the mobile access
/// gateway verified that the mobile node is still directly attached, the mobile access
/// gateway MUST reject the BRI using status code 'Revocation failed - MN is Attached'" (132).
/// A node that left (here: the previous MAG of a reactive handover still holding it) is
/// revoked; another trigger revokes an attached node.
#[test]
fn an_inter_mag_revocation_of_an_attached_node_is_refused_with_132() {
    use pmip::config::FastHandoverMode;
    let mut sim = fast_domain(FastHandoverMode::Reactive, 2, 1);
    sim.attach(0, ll(1));
    sim.settle(Duration::from_secs(2));
    let p = sim.mags[0].binding(&nai(1)).unwrap().prefixes[0];
    for (seq, t) in [
        (1, RevocationTrigger::InterMagHandoverSameAccessType),
        (2, RevocationTrigger::InterMagHandoverDifferentAccessType),
        (3, RevocationTrigger::InterMagHandoverUnknown),
    ] {
        sim.inject(bri(0, t, seq));
        sim.run_for(Duration::from_millis(5));
        assert_eq!(
            bra_status(&sim, 0, seq),
            Some(BraStatus::RevocationFailedMnIsAttached),
            "{t:?}"
        );
        assert!(sim.mags[0].binding(&nai(1)).unwrap().is_bound());
        assert!(
            sim.mag_datapaths[0]
                .access_routes
                .contains_key(&IpNet::from(p))
        );
    }
    // The node leaves (reactive: MAG1 holds its binding while a new MAG may ask for it).
    sim.detach(0, ll(1));
    assert!(sim.mags[0].binding(&nai(1)).is_some());
    sim.inject(bri(0, RevocationTrigger::InterMagHandoverUnknown, 4));
    sim.run_for(Duration::from_millis(5));
    assert_eq!(bra_status(&sim, 0, 4), Some(BraStatus::Success));
    assert!(sim.mags[0].binding(&nai(1)).is_none());
    // Another trigger revokes an attached node.
    sim.attach(0, ll(1));
    sim.settle(Duration::from_secs(2));
    sim.inject(bri(0, RevocationTrigger::AdministrativeReason, 5));
    sim.run_for(Duration::from_millis(5));
    assert_eq!(bra_status(&sim, 0, 5), Some(BraStatus::Success));
    assert!(sim.mags[0].binding(&nai(1)).is_none());
}

/// A BRI from the LMA to MAG 0 with `flags` and `options`.
fn bri_with(
    trigger: RevocationTrigger,
    seq: u16,
    flags: RevocationFlags,
    opts: &[MobilityOption<'_>],
) -> pmip::sim::Packet {
    bri_packet(lma_addr(), mag_addr(0), seq, trigger, flags, opts)
}

/// RFC 5846 §9.1 with §8.1: a global BRI (G) with "Revoking Mobility Node Local Policy"
/// (129) revokes the bindings of the realm its MN-ID option names ("@example.com" names
/// "a@example.com", not "a@foo.example.com"), and only those; without the option, or with
/// no realm in it, the MAG answers "Revoked Mobile Nodes Identity Required" (131); a realm
/// with no binding here gets "Binding Does NOT Exist" (128). "Per-Peer Policy" (128) revokes
/// every binding.
#[test]
fn a_global_revocation_by_realm_covers_only_that_realm() {
    let other = |n: u16| {
        let mut p = profile(n);
        p.mn_id = pmip::types::Nai::new(format!("mn{n}@other.example")).unwrap();
        p
    };
    let mut lc = lma_config(1, 2);
    let mut mc = mag_config(0, 2);
    for n in [8, 9] {
        lc.mobile_nodes.push(other(n));
        mc.mobile_nodes.push(other(n));
    }
    let sub = |n: u16| {
        let mut p = profile(n);
        p.mn_id = pmip::types::Nai::new(format!("mn{n}@foo.other.example")).unwrap();
        p
    };
    lc.mobile_nodes.push(sub(7));
    mc.mobile_nodes.push(sub(7));
    let mut sim = Sim::new(lc, vec![mc], 5);
    for n in [1, 2, 7, 8, 9] {
        sim.attach(0, ll(n));
    }
    sim.settle(Duration::from_secs(2));
    assert_eq!(sim.mags[0].bindings().count(), 5);
    let g = RevocationFlags::P | RevocationFlags::G;
    let local = RevocationTrigger::RevokingMobilityNodeLocalPolicy;
    let id = |s: &'static str| MobilityOption::MobileNodeIdentifier {
        subtype: 1,
        id: s.as_bytes(),
    };
    for (seq, opts) in [(1, vec![]), (2, vec![id("no-realm")]), (3, vec![id("x@")])] {
        sim.inject(bri_with(local, seq, g, &opts));
        sim.run_for(Duration::from_millis(5));
        assert_eq!(
            bra_status(&sim, 0, seq),
            Some(BraStatus::RevokedMobileNodesIdentityRequired),
            "{opts:?}"
        );
    }
    sim.inject(bri_with(local, 4, g, &[id("@nowhere.example")]));
    sim.run_for(Duration::from_millis(5));
    assert_eq!(bra_status(&sim, 0, 4), Some(BraStatus::BindingDoesNotExist));
    assert_eq!(sim.mags[0].bindings().count(), 5, "nothing revoked yet");
    sim.inject(bri_with(local, 5, g, &[id("@Other.Example")]));
    sim.run_for(Duration::from_millis(5));
    assert_eq!(bra_status(&sim, 0, 5), Some(BraStatus::Success));
    let left: Vec<String> = sim.mags[0].bindings().map(|e| e.mn_id.clone()).collect();
    assert_eq!(left.len(), 3, "{left:?}");
    for n in [1, 2] {
        assert!(sim.mags[0].binding(&nai(n)).is_some_and(|e| e.is_bound()));
    }
    assert!(sim.mags[0].binding("mn7@foo.other.example").is_some());
    sim.inject(bri_with(RevocationTrigger::PerPeerPolicy, 6, g, &[]));
    sim.run_for(Duration::from_millis(5));
    assert_eq!(bra_status(&sim, 0, 6), Some(BraStatus::Success));
    assert_eq!(sim.mags[0].bindings().count(), 0);
}

/// RFC 5213 §6.13 (the seed's handoff step 1): a node that goes silent on an access link
/// that stays up (no link-down event, as Wi-Fi behind a bridge) is probed with unicast
/// Neighbor Solicitations for its link-local address and, unanswered, taken as detached and
/// de-registered within `idle_s + probes × probe_interval_ms`. A node that answers stays; a
/// node whose link-local address was never heard is not probed.
#[test]
fn rfc5213_6_13_a_silent_node_is_detached_by_neighbor_unreachability_detection() {
    use pmip::mag::MagEvent;
    use pmip::output::AccessLink;
    let mut c = mag_config(0, 3);
    c.neighbor_unreachability.idle_s = 5;
    c.neighbor_unreachability.probes = 3;
    c.neighbor_unreachability.probe_interval_ms = 1_000;
    let mut sim = Sim::new(lma_config(1, 3), vec![c], 42);
    let lla = |n: u16| Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 1, n);
    for n in 1..=3 {
        sim.attach(0, ll(n));
    }
    sim.settle(Duration::from_secs(1));
    for n in 1..=3 {
        assert!(sim.mags[0].binding(&nai(n)).unwrap().is_bound());
    }
    let heard = |sim: &mut Sim, n: u16, address: Option<Ipv6Addr>| {
        sim.mag_do(0, |m, now, _| {
            m.handle_node_heard(now, AccessLink(1), ll(n), address)
        });
    };
    let start = sim.now;
    heard(&mut sim, 1, Some(lla(1)));
    heard(&mut sim, 2, Some(lla(2)));
    // Node 3 was heard only from addresses that tell no link-local one.
    heard(&mut sim, 3, None);
    let mut answered = 0;
    while sim.now < start + Duration::from_secs(20) {
        sim.run_for(Duration::from_millis(100));
        // Node 2 answers every probe at once; node 1 never does.
        let probes: Vec<_> = sim
            .neighbor_solicitations
            .drain(..)
            .map(|(_, _, ns)| ns)
            .collect();
        for ns in probes {
            assert_eq!(ns.src_link_local, "fe80::1".parse::<Ipv6Addr>().unwrap());
            assert_eq!(ns.target, lla(u16::from(ns.mn_link_layer.as_bytes()[5])));
            if ns.mn_link_layer == ll(2) {
                answered += 1;
                heard(&mut sim, 2, None);
            } else {
                assert_eq!(ns.mn_link_layer, ll(1), "node 3 is never probed");
            }
        }
    }
    assert!(
        answered >= 3,
        "node 2 is probed after each silence: {answered}"
    );
    let detached: Vec<_> = sim
        .mag_events
        .iter()
        .filter_map(|(t, _, e)| match e {
            MagEvent::Unreachable { mn_id, .. } => Some((*t - start, mn_id.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(detached.len(), 1, "{detached:?}");
    assert_eq!(detached[0].1, nai(1));
    // Silent for idle_s, then three probes a second apart, the last one unanswered too.
    assert!(
        detached[0].0 <= Duration::from_secs(5 + 3),
        "{:?}",
        detached[0].0
    );
    assert!(sim.mags[0].binding(&nai(1)).is_none());
    assert_eq!(sim.lma.cache().sessions_of(&nai(1)).count(), 0);
    for n in [2, 3] {
        assert!(sim.mags[0].binding(&nai(n)).unwrap().is_bound(), "node {n}");
        assert_eq!(sim.lma.cache().sessions_of(&nai(n)).count(), 1);
    }
}

/// With `neighbor_unreachability.idle_s: 0` nothing is probed and nobody is detached.
#[test]
fn neighbor_unreachability_detection_can_be_turned_off() {
    use pmip::output::AccessLink;
    let mut c = mag_config(0, 1);
    c.neighbor_unreachability.idle_s = 0;
    let mut sim = Sim::new(lma_config(1, 1), vec![c], 42);
    sim.attach(0, ll(1));
    sim.settle(Duration::from_secs(1));
    sim.mag_do(0, |m, now, _| {
        m.handle_node_heard(
            now,
            AccessLink(1),
            ll(1),
            Some("fe80::1:1".parse().unwrap()),
        )
    });
    sim.run_for(Duration::from_secs(120));
    assert!(sim.neighbor_solicitations.is_empty());
    assert!(sim.mags[0].binding(&nai(1)).unwrap().is_bound());
}
