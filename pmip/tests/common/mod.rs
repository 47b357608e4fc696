//! What the RFC and scenario tests share: one LMA, MAGs numbered from 0 and nodes numbered
//! from 1, each node with a profile of its own MAC, all in a simulated domain.
// Each test crate uses its own part of these.
#![allow(dead_code)]

use std::net::Ipv6Addr;

use ipnet::Ipv6Net;
use pmip::cache::BindingCacheEntry;
use pmip::config::{FastHandoverMode, LmaConfig, MagConfig, MobileNodeProfile, ReplayProtection};
use pmip::sim::{Packet, Sim};
use pmip::types::{LinkLayerAddress, Nai};
use pmip::wire::{
    AccessTechnologyType, BindingRevocation, BindingRevocationIndication, BindingUpdate, BuFlags,
    HandoffIndicator, Lifetime, MN_ID_SUBTYPE_NAI, Message, MobilityOption, Options,
    RevocationFlags, RevocationTrigger, SequenceNumber, Timestamp,
};

pub const LMA: &str = "2001:db8:ffff::1";

pub fn mag_addr(i: usize) -> Ipv6Addr {
    format!("2001:db8:{}::10", i + 1).parse().unwrap()
}

pub fn ll(n: u16) -> LinkLayerAddress {
    LinkLayerAddress::mac([2, 0, 0, 0, (n >> 8) as u8, n as u8])
}

pub fn nai(n: u16) -> String {
    format!("mn{n}@example.org")
}

pub fn profile(n: u16) -> MobileNodeProfile {
    let mut p = MobileNodeProfile::new(Nai::new(nai(n)).unwrap());
    p.link_layer_addresses = vec![ll(n)];
    p
}

pub fn lma_config(mags: usize, nodes: u16) -> LmaConfig {
    let mut c: LmaConfig = serde_saphyr::from_str(&format!(
        "address: {LMA}\nprefix_pools: [{{prefix: '2001:db8:100::/48'}}]\n"
    ))
    .unwrap();
    c.authorized_mags = (0..mags).map(|i| mag_addr(i).into()).collect();
    c.mobile_nodes = (1..=nodes).map(profile).collect();
    c.domain.heartbeat.interval_s = 30;
    c
}

pub fn mag_config(i: usize, nodes: u16) -> MagConfig {
    let mut c: MagConfig = serde_saphyr::from_str(&format!(
        "proxy_coa: '{}'\nlma_address: '{LMA}'\naccess_interfaces: ['acc*']\n",
        mag_addr(i)
    ))
    .unwrap();
    c.mobile_nodes = (1..=nodes).map(profile).collect();
    c.domain.heartbeat.interval_s = 30;
    c
}

pub fn domain(mags: usize, nodes: u16) -> Sim {
    let cfgs = (0..mags).map(|i| mag_config(i, nodes)).collect();
    Sim::new(lma_config(mags, nodes), cfgs, 42)
}

/// The access network announces node 1's move from MAG1 to MAG2 as a fast handover of `mode`
/// wants it: predictive, MAG1 gets the handover indication (and 5 ms pass for its HI and
/// the HAck); reactive, MAG2 learns that the node comes from MAG1; off, nothing.
pub fn announce_move(sim: &mut Sim, mode: pmip::config::FastHandoverMode) {
    use pmip::config::FastHandoverMode;
    match mode {
        FastHandoverMode::Predictive => {
            sim.mag_do(0, |m, now, _| {
                m.handle_handover_indication(now, &nai(1), mag_addr(1))
            })
            .unwrap();
            sim.run_for(core::time::Duration::from_millis(5));
        }
        FastHandoverMode::Reactive => {
            sim.mag_do(1, |m, now, _| m.expect_arrival(now, ll(1), mag_addr(0)));
        }
        FastHandoverMode::Off => {}
    }
}

pub fn lma_addr() -> Ipv6Addr {
    LMA.parse().unwrap()
}

/// A domain whose MAGs and LMA order PBUs by sequence number (RFC 5213 §5.5).
pub fn sequence_domain(mags: usize, nodes: u16) -> Sim {
    let mut lc = lma_config(mags, nodes);
    lc.domain.replay_protection = ReplayProtection::SequenceNumber;
    let cfgs = (0..mags)
        .map(|i| {
            let mut c = mag_config(i, nodes);
            c.domain.replay_protection = ReplayProtection::SequenceNumber;
            c
        })
        .collect();
    Sim::new(lc, cfgs, 42)
}

/// A domain of `mags` MAGs and `nodes` nodes with fast handovers in `mode` everywhere.
pub fn fast_domain(mode: FastHandoverMode, mags: usize, nodes: u16) -> Sim {
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

/// `m` as a packet from `from` to `to`, with its checksum.
pub fn packet(from: Ipv6Addr, to: Ipv6Addr, m: &Message<'_>) -> Packet {
    let mut b = vec![0u8; m.buffer_len()];
    m.emit_with_checksum(&mut b, &from, &to).unwrap();
    Packet {
        src: from,
        dst: to,
        bytes: b,
    }
}

pub fn mn_id_opt(id: &[u8]) -> MobilityOption<'_> {
    MobilityOption::MobileNodeIdentifier {
        subtype: MN_ID_SUBTYPE_NAI,
        id,
    }
}

pub const ETH: MobilityOption<'static> =
    MobilityOption::AccessTechnologyType(AccessTechnologyType::Ieee8023);

pub fn hi(h: HandoffIndicator) -> MobilityOption<'static> {
    MobilityOption::HandoffIndicator(h)
}

pub fn ts_now(sim: &Sim) -> MobilityOption<'static> {
    MobilityOption::Timestamp(Timestamp::from_wall_clock(sim.wall()))
}

/// Whether node `n` is bound at MAG `mag`.
pub fn bound_at(sim: &Sim, mag: usize, n: u16) -> bool {
    sim.mags[mag].binding(&nai(n)).is_some_and(|e| e.is_bound())
}

/// A Binding Revocation Indication from `src` to `dst`, with its checksum.
pub fn bri_packet(
    src: Ipv6Addr,
    dst: Ipv6Addr,
    seq: u16,
    trigger: RevocationTrigger,
    flags: RevocationFlags,
    opts: &[MobilityOption<'_>],
) -> Packet {
    let m =
        Message::BindingRevocation(BindingRevocation::Indication(BindingRevocationIndication {
            trigger,
            sequence: SequenceNumber(seq),
            flags,
            options: Options::List(opts),
        }));
    packet(src, dst, &m)
}

/// A Binding Update from `src` to `dst` with `flags`, its checksum over those addresses.
pub fn bu_packet(
    src: Ipv6Addr,
    dst: Ipv6Addr,
    flags: BuFlags,
    seq: u16,
    lifetime_s: u32,
    opts: &[MobilityOption<'_>],
) -> Packet {
    let m = Message::BindingUpdate(BindingUpdate {
        sequence: SequenceNumber(seq),
        flags,
        lifetime: Lifetime::from_secs(lifetime_s),
        options: Options::List(opts),
    });
    packet(src, dst, &m)
}

/// Node `n`'s (first) binding cache entry at the LMA.
pub fn entry(sim: &Sim, n: u16) -> &BindingCacheEntry {
    let s = sim
        .lma
        .cache()
        .sessions_of(&nai(n))
        .next()
        .expect("a session");
    sim.lma.cache().get(s).unwrap()
}

/// Node `n`'s first home network prefix at the LMA.
pub fn prefix_of(sim: &Sim, n: u16) -> Ipv6Net {
    entry(sim, n).prefixes.as_slice()[0]
}

/// The last Binding Acknowledgement sent, whole.
pub fn last_pba_packet(sim: &Sim) -> Packet {
    sim.sent
        .iter()
        .rev()
        .find(|(_, p)| matches!(p.message(), Some(Message::BindingAck(_))))
        .map(|(_, p)| p.clone())
        .unwrap()
}
