//! The wire path allocates nothing: parsing a typical Proxy Binding Update into its typed
//! view, and emitting PBUs and PBAs, make no heap allocation (counted by a global allocator
//! that counts, installed by `allocation-counter` in this test binary only).

use std::hint::black_box;
use std::net::Ipv6Addr;

use pmip::wire::*;

const MAG: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xa, 0, 0, 0, 0, 1);
const LMA: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xb, 0, 0, 0, 0, 1);

fn typical_options() -> [MobilityOption<'static>; 5] {
    [
        MobilityOption::MobileNodeIdentifier {
            subtype: MN_ID_SUBTYPE_NAI,
            id: b"mn1@example.org",
        },
        MobilityOption::HomeNetworkPrefix("2001:db8:1:1::/64".parse().unwrap()),
        MobilityOption::HandoffIndicator(HandoffIndicator::HandoffBetweenMags),
        MobilityOption::AccessTechnologyType(AccessTechnologyType::Ieee80211),
        MobilityOption::Timestamp(Timestamp(0x6553_f100_4000)),
    ]
}

fn pbu<'a>(options: &'a [MobilityOption<'a>]) -> Message<'a> {
    Message::BindingUpdate(BindingUpdate {
        sequence: SequenceNumber(4711),
        flags: BuFlags::A | BuFlags::P,
        lifetime: Lifetime::from_secs(3600),
        options: Options::List(options),
    })
}

#[test]
fn the_counter_counts() {
    // Without this the zeros below would prove nothing.
    let info = allocation_counter::measure(|| {
        black_box(vec![1u8; 10]);
    });
    assert_eq!(info.count_total, 1);
}

#[test]
fn parse_and_view_of_a_pbu_allocate_nothing() {
    let opts = typical_options();
    let mut bytes = [0u8; 128];
    let n = pbu(&opts)
        .emit_with_checksum(&mut bytes, &MAG, &LMA)
        .unwrap();
    let bytes = &bytes[..n];
    let mut prefixes = 0;
    let info = allocation_counter::measure(|| {
        let m = Message::parse_verified(black_box(bytes), &MAG, &LMA).unwrap();
        let Message::BindingUpdate(bu) = m else {
            panic!("not a BU")
        };
        let pbu = ProxyBindingUpdate::new(&bu).unwrap();
        pbu.check_mandatory().unwrap();
        assert_eq!(pbu.opts.nai(), Some(&b"mn1@example.org"[..]));
        assert_eq!(
            pbu.opts.handoff_indicator,
            Some(HandoffIndicator::HandoffBetweenMags)
        );
        prefixes = pbu.home_network_prefixes().count();
        for (at, o) in bu.options.iter_at() {
            black_box((at, o));
        }
    });
    assert_eq!(prefixes, 1);
    assert_eq!(info.count_total, 0, "{info:?}");
}

#[test]
fn emitting_allocates_nothing() {
    let opts = typical_options();
    let mut out = [0u8; 128];
    let info = allocation_counter::measure(|| {
        black_box(pbu(&opts).emit(&mut out).unwrap());
        black_box(pbu(&opts).emit_with_checksum(&mut out, &MAG, &LMA).unwrap());
        let pba = Message::BindingAck(BindingAck {
            status: Status::MagNotAuthorizedForProxyReg,
            flags: BaFlags::P,
            sequence: SequenceNumber(4711),
            lifetime: Lifetime::ZERO,
            options: Options::List(&opts[..1]),
        });
        black_box(pba.emit_with_checksum(&mut out, &LMA, &MAG).unwrap());
    });
    assert_eq!(info.count_total, 0, "{info:?}");
}
