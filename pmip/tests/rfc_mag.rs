//! Scenario tests of the MAG against RFC 5213 §6, RFC 5949 and RFC 5846 §9, in the simulator.
//! Each names the section it checks.

use core::time::Duration;
use std::net::Ipv6Addr;

use pmip::config::{LmaConfig, MagConfig, MobileNodeProfile};
use pmip::sim::Sim;
use pmip::types::{LinkLayerAddress, Nai};
use pmip::wire::*;

const LMA: &str = "2001:db8:ffff::1";

fn mag_addr(i: usize) -> Ipv6Addr {
    format!("2001:db8:{}::10", i + 1).parse().unwrap()
}

fn ll(n: u16) -> LinkLayerAddress {
    LinkLayerAddress::mac([2, 0, 0, 0, (n >> 8) as u8, n as u8])
}

fn nai(n: u16) -> String {
    format!("mn{n}@example.org")
}

fn profile(n: u16) -> MobileNodeProfile {
    let mut p = MobileNodeProfile::new(Nai::new(nai(n)).unwrap());
    p.link_layer_addresses = vec![ll(n)];
    p
}

fn lma_config(mags: usize, nodes: u16) -> LmaConfig {
    let mut c: LmaConfig = serde_saphyr::from_str(&format!(
        "address: {LMA}\nprefix_pools: [{{prefix: '2001:db8:100::/48'}}]\n"
    ))
    .unwrap();
    c.authorized_mags = (0..mags).map(mag_addr).collect();
    c.mobile_nodes = (1..=nodes).map(profile).collect();
    c.domain.heartbeat.interval_s = 30;
    c
}

fn mag_config(i: usize, nodes: u16) -> MagConfig {
    let mut c: MagConfig = serde_saphyr::from_str(&format!(
        "proxy_coa: '{}'\nlma_address: '{LMA}'\naccess_interfaces: ['acc*']\n",
        mag_addr(i)
    ))
    .unwrap();
    c.mobile_nodes = (1..=nodes).map(profile).collect();
    c.domain.heartbeat.interval_s = 30;
    c
}

fn domain(mags: usize, nodes: u16) -> Sim {
    let cfgs = (0..mags).map(|i| mag_config(i, nodes)).collect();
    Sim::new(lma_config(mags, nodes), cfgs, 42)
}

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

fn fast_domain(mode: pmip::config::FastHandoverMode, mags: usize, nodes: u16) -> Sim {
    let cfgs = (0..mags)
        .map(|i| {
            let mut c = mag_config(i, nodes);
            c.domain.fast_handover.mode = mode;
            c
        })
        .collect();
    let mut lc = lma_config(mags, nodes);
    lc.domain.fast_handover.mode = mode;
    Sim::new(lc, cfgs, 77)
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
