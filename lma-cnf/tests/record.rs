//! Property tests of the store's binding record (`lma_cnf::record`): every valid record goes
//! round, every damaged encoding is an error that names the damage (never a panic, never a
//! different record), and the encoder refuses what the layout cannot hold.
//!
//! Offsets into an encoding are computed here from the layout as documented, apart from the
//! encoder, so that a test that damages one field damages that field.

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::Ipv6Net;
use lma_cnf::record::{MAX_MN_ID_LEN, MAX_PREFIXES, RecordError, VERSION, decode, encode};
use pmip::ipv4_pool::Ipv4HomeAddress;
use pmip::lma::BindingRecord;
use pmip::types::LinkLayerAddress;
use proptest::prelude::*;

/// An MN-ID of any UTF-8 characters: mostly short, some of a few thousand bytes.
fn mn_id() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::collection::vec(any::<char>(), 0..48).prop_map(String::from_iter),
        1 => prop::collection::vec(any::<char>(), 0..1500).prop_map(String::from_iter),
    ]
}

fn prefix() -> impl Strategy<Value = Ipv6Net> {
    (any::<u128>(), 0u8..=128).prop_map(|(a, l)| Ipv6Net::new(Ipv6Addr::from(a), l).unwrap())
}

fn ipv4_home(prefix_len: impl Strategy<Value = u8>) -> impl Strategy<Value = Ipv4HomeAddress> {
    (any::<u32>(), prefix_len, any::<u32>()).prop_map(|(a, l, d)| Ipv4HomeAddress {
        address: Ipv4Addr::from(a),
        prefix_len: l,
        default_router: Ipv4Addr::from(d),
    })
}

/// Any valid record: every optional field present or absent, 0 to 5 prefixes, link-layer
/// identifiers of every length the type holds.
fn record() -> impl Strategy<Value = BindingRecord> {
    let link_layer = prop::collection::vec(any::<u8>(), 1..=LinkLayerAddress::MAX_LEN)
        .prop_map(|b| LinkLayerAddress::new(&b).unwrap());
    (
        mn_id(),
        prop::collection::vec(prefix(), 0..6),
        any::<u128>(),
        (
            any::<u8>(),
            any::<u8>(),
            any::<u32>(),
            any::<u16>(),
            any::<u32>(),
        ),
        (any::<u64>(), any::<u64>(), any::<u64>()),
        (
            any::<Option<u64>>(),
            any::<Option<u64>>(),
            any::<Option<u64>>(),
        ),
        (
            any::<Option<u128>>(),
            prop::option::of(link_layer),
            prop::option::of(ipv4_home(0u8..=32)),
        ),
    )
        .prop_map(
            |(mn_id, home_network_prefixes, coa, small, times, opt, more)| BindingRecord {
                mn_id,
                home_network_prefixes,
                proxy_coa: Ipv6Addr::from(coa),
                access_technology_type: small.0,
                handoff_indicator: small.1,
                lifetime_s: small.2,
                last_sequence: small.3,
                handover_count: small.4,
                registered_at_ms: times.0,
                updated_at_ms: times.1,
                expires_at_ms: times.2,
                delete_at_ms: opt.0,
                last_timestamp: opt.1,
                last_handover_gap_ms: opt.2,
                link_local_address: more.0.map(Ipv6Addr::from),
                mn_link_layer_id: more.1,
                ipv4_home_address: more.2,
            },
        )
}

/// Where the layout puts the parts of `r`'s encoding that a test damages.
#[derive(Debug)]
struct Offsets {
    link_layer_len: Option<usize>,
    ipv4_prefix_len: Option<usize>,
    prefix_lens: Vec<usize>,
    mn_id: usize,
    len: usize,
}

fn offsets(r: &BindingRecord) -> Offsets {
    // version, present, proxy-CoA, ATT, HI, lifetime, sequence, handovers, three times.
    let mut at = 1 + 1 + 16 + 1 + 1 + 4 + 2 + 4 + 3 * 8;
    at += 8 * [r.delete_at_ms, r.last_timestamp, r.last_handover_gap_ms]
        .iter()
        .flatten()
        .count();
    if r.link_local_address.is_some() {
        at += 16;
    }
    let link_layer_len = r.mn_link_layer_id.map(|l| {
        let here = at;
        at += 1 + l.as_bytes().len();
        here
    });
    let ipv4_prefix_len = r.ipv4_home_address.map(|_| {
        let here = at + 4;
        at += 4 + 1 + 4;
        here
    });
    at += 2;
    let prefix_lens = (0..r.home_network_prefixes.len())
        .map(|i| at + 17 * i + 16)
        .collect();
    at += 17 * r.home_network_prefixes.len() + 2;
    Offsets {
        link_layer_len,
        ipv4_prefix_len,
        prefix_lens,
        mn_id: at,
        len: at + r.mn_id.len(),
    }
}

/// Whatever `bytes` decode to is exactly what they say: encoding it again gives them back
/// (binary) or a record that decodes the same (JSON).
fn assert_faithful(bytes: &[u8]) -> Result<(), TestCaseError> {
    if let Ok(r) = decode(bytes) {
        let again = encode(&r);
        prop_assert!(again.is_ok(), "{r:?} was read but cannot be written");
        let again = again.unwrap();
        if bytes.first() == Some(&VERSION) {
            prop_assert_eq!(&again[..], bytes);
        }
        prop_assert_eq!(decode(&again), Ok(r));
    }
    Ok(())
}

/// An MN-ID of exactly `len` bytes: as many `c` as fit, then ASCII.
fn mn_id_of_len(c: char, len: usize) -> String {
    let mut s = c.to_string().repeat(len / c.len_utf8());
    while s.len() < len {
        s.push('a');
    }
    s
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_record_round_trips_in_both_formats(r in record()) {
        let b = encode(&r).unwrap();
        prop_assert_eq!(b[0], VERSION);
        prop_assert_eq!(b.len(), offsets(&r).len);
        prop_assert_eq!(decode(&b), Ok(r.clone()));
        let json = serde_json::to_vec(&r).unwrap();
        prop_assert_eq!(decode(&json), Ok(r));
    }

    #[test]
    fn every_truncation_is_an_error(r in record()) {
        let b = encode(&r).unwrap();
        prop_assert_eq!(decode(&b[..0]), Err(RecordError::Empty));
        for cut in 1..b.len() {
            let got = decode(&b[..cut]);
            prop_assert!(matches!(got, Err(RecordError::Short(_))), "cut at {}: {:?}", cut, got);
        }
        let json = serde_json::to_vec(&r).unwrap();
        for cut in 1..json.len() {
            let got = decode(&json[..cut]);
            prop_assert!(matches!(got, Err(RecordError::Json(_))), "cut at {}: {:?}", cut, got);
        }
    }

    #[test]
    fn trailing_bytes_are_an_error(
        r in record(),
        extra in prop::collection::vec(any::<u8>(), 1..20),
    ) {
        let mut b = encode(&r).unwrap();
        b.extend(&extra);
        prop_assert_eq!(decode(&b), Err(RecordError::Trailing(extra.len())));
        let mut json = serde_json::to_vec(&r).unwrap();
        json.extend(&extra);
        // Only white space may follow a JSON record.
        if !extra.iter().all(u8::is_ascii_whitespace) {
            prop_assert!(matches!(decode(&json), Err(RecordError::Json(_))));
        }
    }

    #[test]
    fn another_version_byte_is_an_error(r in record(), v in any::<u8>()) {
        prop_assume!(v != VERSION);
        let mut b = encode(&r).unwrap();
        b[0] = v;
        let got = decode(&b);
        if v == b'{' {
            prop_assert!(matches!(got, Err(RecordError::Json(_))), "{:?}", got);
        } else {
            prop_assert_eq!(got, Err(RecordError::Version(v)));
        }
    }

    #[test]
    fn unknown_presence_bits_are_an_error(r in record(), bits in 1u8..=3) {
        let mut b = encode(&r).unwrap();
        b[1] |= bits << 6;
        prop_assert_eq!(decode(&b), Err(RecordError::Bad("unknown presence bits")));
    }

    #[test]
    fn a_prefix_length_over_128_is_an_error(
        r in record(),
        which in any::<prop::sample::Index>(),
        len in 129u8..,
    ) {
        prop_assume!(!r.home_network_prefixes.is_empty());
        let mut b = encode(&r).unwrap();
        let o = offsets(&r);
        let at = o.prefix_lens[which.index(o.prefix_lens.len())];
        prop_assert_eq!(b[at], r.home_network_prefixes[which.index(o.prefix_lens.len())].prefix_len());
        b[at] = len;
        prop_assert_eq!(decode(&b), Err(RecordError::Bad("prefix length over 128")));
    }

    #[test]
    fn an_ipv4_prefix_length_over_32_is_an_error(
        r in record(),
        v4 in ipv4_home(0u8..=32),
        len in 33u8..,
    ) {
        let r = BindingRecord { ipv4_home_address: Some(v4), ..r };
        let mut b = encode(&r).unwrap();
        let at = offsets(&r).ipv4_prefix_len.unwrap();
        prop_assert_eq!(b[at], v4.prefix_len);
        b[at] = len;
        prop_assert_eq!(decode(&b), Err(RecordError::Bad("IPv4 prefix length over 32")));
        // Nor is it written, or read from JSON.
        let bad = BindingRecord {
            ipv4_home_address: Some(Ipv4HomeAddress { prefix_len: len, ..v4 }),
            ..r
        };
        prop_assert_eq!(encode(&bad), Err(RecordError::Bad("IPv4 prefix length over 32")));
        let json = serde_json::to_vec(&bad).unwrap();
        prop_assert_eq!(decode(&json), Err(RecordError::Bad("IPv4 prefix length over 32")));
    }

    #[test]
    fn a_link_layer_identifier_of_a_bad_length_is_an_error(
        r in record(),
        len in prop_oneof![Just(0u8), (LinkLayerAddress::MAX_LEN as u8 + 1)..],
    ) {
        let r = BindingRecord { mn_link_layer_id: Some(LinkLayerAddress::mac([2, 0, 0, 0, 0, 1])), ..r };
        let mut b = encode(&r).unwrap();
        let at = offsets(&r).link_layer_len.unwrap();
        prop_assert_eq!(b[at], 6);
        b[at] = len;
        let got = decode(&b);
        if len == 0 || b.len() >= at + 1 + len as usize {
            prop_assert_eq!(got, Err(RecordError::Bad("link-layer identifier of a bad length")));
        } else {
            prop_assert!(matches!(got, Err(RecordError::Short(_))), "{:?}", got);
        }
    }

    #[test]
    fn an_mn_id_that_is_not_utf8_is_an_error(
        r in record(),
        id in prop::collection::vec(any::<u8>(), 1..64)
            .prop_filter("not UTF-8", |b| std::str::from_utf8(b).is_err()),
    ) {
        let r = BindingRecord { mn_id: "x".repeat(id.len()), ..r };
        let mut b = encode(&r).unwrap();
        let at = offsets(&r).mn_id;
        b[at..].copy_from_slice(&id);
        prop_assert_eq!(decode(&b), Err(RecordError::Bad("MN-ID is not UTF-8")));
    }

    /// Near the bound, in characters of every UTF-8 width.
    #[test]
    fn an_mn_id_round_trips_up_to_the_bound_and_is_refused_over_it(
        r in record(),
        c in any::<char>(),
        len in (MAX_MN_ID_LEN - 8)..=(MAX_MN_ID_LEN + 8),
    ) {
        let r = BindingRecord { mn_id: mn_id_of_len(c, len), ..r };
        prop_assert_eq!(r.mn_id.len(), len);
        let json = serde_json::to_vec(&r).unwrap();
        // Compared without printing records of 64 KiB.
        if len <= MAX_MN_ID_LEN {
            prop_assert!(decode(&encode(&r).unwrap()) == Ok(r.clone()), "{} bytes of {:?}", len, c);
            prop_assert!(decode(&json) == Ok(r), "JSON: {} bytes of {:?}", len, c);
        } else {
            let too_long = RecordError::Bad("MN-ID longer than 65535 bytes");
            prop_assert_eq!(encode(&r).err(), Some(too_long.clone()));
            prop_assert_eq!(decode(&json).err(), Some(too_long));
        }
    }

    /// A changed byte is an error or, when the layout allows that byte, exactly the record
    /// those bytes say: never a record that is written back differently.
    #[test]
    fn a_changed_byte_is_an_error_or_what_it_says(
        r in record(),
        at in any::<prop::sample::Index>(),
        x in 1u8..,
    ) {
        let mut b = encode(&r).unwrap();
        let i = at.index(b.len());
        b[i] ^= x;
        assert_faithful(&b)?;
    }

    #[test]
    fn any_bytes_never_panic(
        first in prop_oneof![Just(VERSION), Just(b'{'), any::<u8>()],
        rest in prop::collection::vec(any::<u8>(), 0..300),
    ) {
        let mut b = vec![first];
        b.extend(rest);
        assert_faithful(&b)?;
        assert_faithful(&b[1..])?;
    }
}

fn base() -> BindingRecord {
    BindingRecord {
        mn_id: "mn1@example.org".into(),
        home_network_prefixes: vec!["2001:db8:1::/64".parse().unwrap()],
        proxy_coa: "2001:db8::10".parse().unwrap(),
        access_technology_type: 3,
        handoff_indicator: 1,
        mn_link_layer_id: None,
        link_local_address: None,
        lifetime_s: 3600,
        registered_at_ms: 1,
        updated_at_ms: 2,
        expires_at_ms: 3,
        delete_at_ms: None,
        last_timestamp: None,
        last_sequence: 1,
        handover_count: 0,
        last_handover_gap_ms: None,
        ipv4_home_address: None,
    }
}

#[test]
fn an_mn_id_of_the_bound_in_characters_of_every_width_round_trips() {
    for c in ['a', 'é', '€', '𝄞'] {
        let r = BindingRecord {
            mn_id: mn_id_of_len(c, MAX_MN_ID_LEN),
            ..base()
        };
        let b = encode(&r).unwrap();
        assert_eq!(b.len(), offsets(&r).len);
        assert!(decode(&b) == Ok(r), "{c:?}");
    }
    // The byte count is what is bounded: one 4-byte character too many is refused.
    let r = BindingRecord {
        mn_id: "𝄞".repeat(MAX_MN_ID_LEN / 4 + 1),
        ..base()
    };
    assert_eq!(
        encode(&r).err(),
        Some(RecordError::Bad("MN-ID longer than 65535 bytes"))
    );
}

#[test]
fn the_most_prefixes_round_trip_and_one_more_is_refused() {
    let mut r = BindingRecord {
        home_network_prefixes: (0..MAX_PREFIXES as u128)
            .map(|i| {
                Ipv6Net::new(Ipv6Addr::from((0x2001_0db8_u128 << 96) | (i << 64)), 64).unwrap()
            })
            .collect(),
        ..base()
    };
    // Compared without printing 65535 prefixes.
    let b = encode(&r).unwrap();
    assert_eq!(b.len(), offsets(&r).len);
    assert!(decode(&b) == Ok(r.clone()));
    r.home_network_prefixes
        .push("2001:db8:ffff::/48".parse().unwrap());
    let too_many = RecordError::Bad("more than 65535 prefixes");
    assert_eq!(encode(&r).err(), Some(too_many.clone()));
    let json = serde_json::to_vec(&r).unwrap();
    assert_eq!(decode(&json).err(), Some(too_many));
}

/// A record of an earlier version with an IPv4 prefix length no subnet has is refused when
/// read, not read and then left unwritable (or written in a form that cannot be read back).
#[test]
fn a_json_record_with_an_ipv4_prefix_length_over_32_is_refused() {
    let mut v = serde_json::to_value(BindingRecord {
        ipv4_home_address: Some(Ipv4HomeAddress {
            address: Ipv4Addr::new(192, 0, 2, 10),
            prefix_len: 24,
            default_router: Ipv4Addr::new(192, 0, 2, 1),
        }),
        ..base()
    })
    .unwrap();
    v["ipv4_home_address"]["prefix_len"] = 33.into();
    let json = serde_json::to_vec(&v).unwrap();
    assert_eq!(
        decode(&json),
        Err(RecordError::Bad("IPv4 prefix length over 32"))
    );
}
