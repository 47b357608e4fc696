//! Shared setup of the LMA benchmarks: a domain with a wildcard profile, many MAGs, and PBUs
//! as the wire carries them. Each bench binary uses part of it.
#![allow(dead_code)]

use std::net::Ipv6Addr;

use ipnet::Ipv6Net;
use pmip::Instant;
use pmip::config::{LmaConfig, MobileNodeProfile, PrefixPool};
use pmip::lma::{Lma, LmaOutput};
use pmip::types::Nai;
use pmip::wire::*;

pub const MAGS: usize = 100;

pub fn mag(i: usize) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 0xdb8, 0, (i >> 16) as u16, 0, 0, i as u16, 0x10)
}

pub fn lma_addr() -> Ipv6Addr {
    "2001:db8:ffff::1".parse().unwrap()
}

pub fn lma() -> Lma {
    let mut c: LmaConfig = serde_saphyr::from_str(&format!(
        "address: {}\nprefix_pools: [{{prefix: '2001:db8::/32'}}]\n",
        lma_addr()
    ))
    .unwrap();
    c.prefix_pools = vec![PrefixPool {
        prefix: "2400::/16".parse().unwrap(),
        prefix_length: 64,
    }];
    c.authorized_mags = (0..MAGS).map(|i| mag(i).into()).collect();
    c.mobile_nodes = vec![MobileNodeProfile::new(Nai::new("*@bench.example").unwrap())];
    c.domain.heartbeat.interval_s = 0;
    Lma::new(c, 1, 1).unwrap()
}

/// A PBU for node `n` from its MAG, carrying `hnp` (ALL_ZERO for a new registration).
pub fn pbu(n: usize, hnp: Ipv6Net, ts: Timestamp, seq: u16) -> (Ipv6Addr, Vec<u8>) {
    let id = format!("node{n:07}@bench.example");
    let ll = [
        2u8,
        0,
        (n >> 24) as u8,
        (n >> 16) as u8,
        (n >> 8) as u8,
        n as u8,
    ];
    let opts = [
        MobilityOption::MobileNodeIdentifier {
            subtype: 1,
            id: id.as_bytes(),
        },
        MobilityOption::HomeNetworkPrefix(hnp),
        MobilityOption::HandoffIndicator(HandoffIndicator::HandoffStateUnknown),
        MobilityOption::AccessTechnologyType(AccessTechnologyType::Ieee80211),
        MobilityOption::Timestamp(ts),
        MobilityOption::MnLinkLayerIdentifier(&ll),
    ];
    let m = Message::BindingUpdate(BindingUpdate {
        sequence: SequenceNumber(seq),
        flags: BuFlags::A | BuFlags::P,
        lifetime: Lifetime::from_secs(3600),
        options: Options::List(&opts),
    });
    let src = mag(n % MAGS);
    let mut b = vec![0u8; m.buffer_len()];
    m.emit_with_checksum(&mut b, &src, &lma_addr()).unwrap();
    (src, b)
}

/// Rewrites the Timestamp value of a PBU built by [`pbu`].
pub fn set_timestamp(bytes: &mut [u8], ts: Timestamp) {
    let at = timestamp_offset(bytes);
    bytes[at..at + 8].copy_from_slice(&ts.0.to_be_bytes());
}

fn timestamp_offset(bytes: &[u8]) -> usize {
    let m = Message::parse_bytes(bytes).unwrap();
    let Message::BindingUpdate(bu) = m else {
        unreachable!()
    };
    let (at, _) = bu
        .options
        .iter_at()
        .find(|(_, o)| matches!(o, MobilityOption::Timestamp(_)))
        .unwrap();
    at + 2
}

/// Registers `n` nodes and returns their refresh PBUs (with their allocated prefixes).
pub fn register(
    lma: &mut Lma,
    n: usize,
    wall: &mut WallClock,
    now: Instant,
) -> Vec<(Ipv6Addr, Vec<u8>)> {
    let mut refreshes = Vec::with_capacity(n);
    for i in 0..n {
        *wall = *wall + core::time::Duration::from_micros(1);
        let (src, b) = pbu(
            i,
            Ipv6Net::default(),
            Timestamp::from_wall_clock(*wall),
            i as u16,
        );
        lma.handle_message_trusted(now, *wall, src, lma_addr(), &b);
        drain(lma);
    }
    for (i, (_, e)) in lma.cache().iter().enumerate() {
        let n: usize = e.mn_id[4..11].parse().unwrap();
        let _ = i;
        refreshes.push(pbu(n, e.prefixes.as_slice()[0], Timestamp(0), 0));
    }
    refreshes
}

pub fn drain(lma: &mut Lma) -> usize {
    let mut n = 0;
    while let Some(o) = lma.poll_output() {
        if let LmaOutput::Transmit(t) = o {
            n += t.payload.len();
        }
    }
    n
}
