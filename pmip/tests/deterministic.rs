//! The LMA is deterministic: the same seed and the same inputs give the same outputs in the
//! same order, so a failing scenario reproduces. Nothing it does may depend on a hasher's
//! random seed.

use core::time::Duration;
use std::net::Ipv6Addr;

use ipnet::Ipv6Net;
use pmip::Instant;
use pmip::config::{LmaConfig, MobileNodeProfile};
use pmip::lma::{Lma, LmaOutput, LmaSnapshot};
use pmip::types::Nai;
use pmip::wire::*;

const LMA: &str = "2001:db8:ffff::1";
const MAGS: u16 = 24;
const NODES: u16 = 96;

fn mag(i: u16) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 0xdb8, i + 1, 0, 0, 0, 0, 0x10)
}

fn nai(n: u16) -> String {
    format!("mn{n}@example.org")
}

fn config() -> LmaConfig {
    let mut c: LmaConfig = serde_saphyr::from_str(&format!(
        "address: {LMA}\nprefix_pools: [{{prefix: '2001:db8:100::/48'}}]\n"
    ))
    .unwrap();
    c.authorized_mags = (0..MAGS).map(|i| mag(i).into()).collect();
    c.mobile_nodes = (0..NODES)
        .map(|n| MobileNodeProfile::new(Nai::new(nai(n)).unwrap()))
        .collect();
    c.domain.heartbeat.interval_s = 30;
    c
}

fn pbu(n: u16, from: Ipv6Addr, seq: u16, wall: WallClock) -> Vec<u8> {
    let id = nai(n);
    let ll = [2, 0, 0, 0, (n >> 8) as u8, n as u8];
    let opts = [
        MobilityOption::MobileNodeIdentifier {
            subtype: MN_ID_SUBTYPE_NAI,
            id: id.as_bytes(),
        },
        MobilityOption::HomeNetworkPrefix(Ipv6Net::default()),
        MobilityOption::HandoffIndicator(HandoffIndicator::AttachmentOverNewInterface),
        MobilityOption::AccessTechnologyType(AccessTechnologyType::Ieee8023),
        MobilityOption::Timestamp(Timestamp::from_wall_clock(wall)),
        MobilityOption::MnLinkLayerIdentifier(&ll),
    ];
    let m = Message::BindingUpdate(BindingUpdate {
        sequence: SequenceNumber(seq),
        flags: BuFlags::A | BuFlags::P,
        lifetime: Lifetime::from_secs(3600),
        options: Options::List(&opts),
    });
    let mut b = vec![0u8; m.buffer_len()];
    m.emit_with_checksum(&mut b, &from, &LMA.parse().unwrap())
        .unwrap();
    b
}

fn drain(lma: &mut Lma, out: &mut Vec<LmaOutput>) {
    while let Some(o) = lma.poll_output() {
        out.push(o);
    }
}

/// Registers every node (the MAGs round-robin), revokes half of them with every BRI
/// unanswered so their retransmissions and time-outs fall due together, and restarts from a
/// snapshot. Returns everything the LMA said, in order, and the snapshot.
fn run() -> (Vec<LmaOutput>, LmaSnapshot) {
    let mut out = Vec::new();
    let mut now = Instant::from_nanos(1_000_000_000);
    let mut wall = WallClock::from_unix(1_750_000_000, 0);
    let mut lma = Lma::new(config(), 1, 42).unwrap();
    let dst: Ipv6Addr = LMA.parse().unwrap();
    for n in 0..NODES {
        let from = mag(n % MAGS);
        lma.handle_message(now, wall, from, dst, &pbu(n, from, n, wall));
        drain(&mut lma, &mut out);
    }
    now += Duration::from_millis(1);
    wall = wall + Duration::from_millis(1);
    for n in (0..NODES).step_by(2) {
        lma.revoke(now, &nai(n), RevocationTrigger::AdministrativeReason)
            .unwrap();
        drain(&mut lma, &mut out);
    }
    let until = now + Duration::from_secs(5);
    while let Some(t) = lma.poll_timeout().filter(|t| *t <= until) {
        wall = wall + (t - now);
        now = t;
        lma.handle_timeout(now, wall);
        drain(&mut lma, &mut out);
    }
    let snapshot = lma.snapshot(now, wall);
    let mut restored = Lma::restore(
        config(),
        &snapshot,
        2,
        7,
        now,
        wall,
        Duration::from_secs(60),
    )
    .unwrap();
    drain(&mut restored, &mut out);
    let mags: Vec<Ipv6Addr> = restored.mags().map(|(m, _)| *m).collect();
    out.push(LmaOutput::Event(pmip::lma::LmaEvent::Dropped {
        from: Ipv6Addr::UNSPECIFIED,
        reason: format!("{mags:?}"),
    }));
    (out, snapshot)
}

#[test]
fn the_same_seed_and_inputs_give_the_same_outputs_in_the_same_order() {
    let (a, snap_a) = run();
    let (b, snap_b) = run();
    assert!(a.len() > 3 * usize::from(NODES), "the run did something");
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        assert_eq!(x, y, "output {i} differs");
    }
    assert_eq!(a.len(), b.len());
    assert_eq!(snap_a, snap_b);
}
