//! The wire format on the hot path: parsing a typical Proxy Binding Update (MN-ID, HNP,
//! Handoff Indicator, ATT, Timestamp) into its typed view, and emitting it and a PBA.
//!
//! `cargo bench -p pmip --bench wire`. Before the timings it prints how many heap allocations
//! each operation makes (all zero; `tests/wire_alloc.rs` asserts it).

use std::hint::black_box;
use std::net::Ipv6Addr;

use criterion::{Criterion, criterion_group, criterion_main};
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

fn pba<'a>(options: &'a [MobilityOption<'a>]) -> Message<'a> {
    Message::BindingAck(BindingAck {
        status: Status::Accepted,
        flags: BaFlags::P,
        sequence: SequenceNumber(4711),
        lifetime: Lifetime::from_secs(3600),
        options: Options::List(options),
    })
}

/// What the LMA does with a received PBU before any policy: pick out the options, run the
/// RFC 5213 §5.3.1 message checks, read the identifier and prefixes.
fn view(m: Message<'_>) -> (usize, SequenceNumber) {
    let Message::BindingUpdate(bu) = m else {
        panic!("not a BU")
    };
    let pbu = ProxyBindingUpdate::new(&bu).unwrap();
    pbu.check_mandatory().unwrap();
    let nai_len = pbu.opts.nai().map_or(0, <[u8]>::len);
    (nai_len + pbu.home_network_prefixes().count(), pbu.sequence)
}

fn parse_and_view(bytes: &[u8]) -> (usize, SequenceNumber) {
    view(Message::parse_bytes(bytes).unwrap())
}

fn report_allocations(bytes: &[u8]) {
    let opts = typical_options();
    let mut out = [0u8; 128];
    let parse = allocation_counter::measure(|| {
        black_box(parse_and_view(black_box(bytes)));
    });
    let emit = allocation_counter::measure(|| {
        black_box(pbu(&opts).emit(black_box(&mut out)).unwrap());
    });
    let emit_pba = allocation_counter::measure(|| {
        black_box(
            pba(&opts)
                .emit_with_checksum(black_box(&mut out), &LMA, &MAG)
                .unwrap(),
        );
    });
    println!(
        "heap allocations: parse+view PBU {}, emit PBU {}, emit PBA with checksum {}",
        parse.count_total, emit.count_total, emit_pba.count_total
    );
}

fn bench(c: &mut Criterion) {
    let opts = typical_options();
    let mut bytes = vec![0u8; pbu(&opts).buffer_len()];
    let n = pbu(&opts)
        .emit_with_checksum(&mut bytes, &MAG, &LMA)
        .unwrap();
    assert_eq!(n, bytes.len());
    report_allocations(&bytes);

    c.bench_function("wire/parse+view PBU", |b| {
        b.iter(|| parse_and_view(black_box(&bytes)))
    });
    c.bench_function("wire/parse_verified+view PBU", |b| {
        b.iter(|| view(Message::parse_verified(black_box(&bytes), &MAG, &LMA).unwrap()))
    });
    let mut out = [0u8; 128];
    c.bench_function("wire/emit PBU", |b| {
        b.iter(|| pbu(black_box(&opts)).emit(black_box(&mut out)).unwrap())
    });
    c.bench_function("wire/emit PBU with checksum", |b| {
        b.iter(|| {
            pbu(black_box(&opts))
                .emit_with_checksum(black_box(&mut out), &MAG, &LMA)
                .unwrap()
        })
    });
    c.bench_function("wire/emit PBA with checksum", |b| {
        b.iter(|| {
            pba(black_box(&opts))
                .emit_with_checksum(black_box(&mut out), &LMA, &MAG)
                .unwrap()
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
