//! Property tests of the wire format: parse(emit(x)) == x for generated messages of every
//! kind, and no panic on any input (random bytes, and valid messages cut or corrupted).

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::Ipv6Net;
use pmip::wire::*;
use proptest::prelude::*;

/// An owned option, from which a borrowed [`MobilityOption`] is made.
#[derive(Debug, Clone)]
enum Opt {
    AltCoa(Ipv6Addr),
    MnId(u8, Vec<u8>),
    Vendor(u32, u8, Vec<u8>),
    Hnp(Ipv6Addr, u8),
    Hi(u8),
    Att(u8),
    LlId(Vec<u8>),
    Lla(Ipv6Addr),
    Ts(u64),
    Restart(u32),
    Gre(Option<u32>),
    V4Req(u8, Ipv4Addr),
    V4Rep(u8, u8, Ipv4Addr),
    V4Dr(Ipv4Addr),
    Dhcp(bool),
    Ctx(Vec<u8>),
    Lma6(Ipv6Addr),
    Lma4(Ipv4Addr),
    Iid([u8; 8]),
    Unknown(u8, Vec<u8>),
}

impl Opt {
    fn as_option(&self) -> MobilityOption<'_> {
        match self {
            Opt::AltCoa(a) => MobilityOption::AlternateCareOfAddress(*a),
            Opt::MnId(s, id) => MobilityOption::MobileNodeIdentifier { subtype: *s, id },
            Opt::Vendor(v, s, d) => MobilityOption::VendorSpecific {
                vendor_id: *v,
                sub_type: *s,
                data: d,
            },
            Opt::Hnp(a, l) => MobilityOption::HomeNetworkPrefix(Ipv6Net::new(*a, *l).unwrap()),
            Opt::Hi(v) => MobilityOption::HandoffIndicator((*v).into()),
            Opt::Att(v) => MobilityOption::AccessTechnologyType((*v).into()),
            Opt::LlId(id) => MobilityOption::MnLinkLayerIdentifier(id),
            Opt::Lla(a) => MobilityOption::LinkLocalAddress(*a),
            Opt::Ts(t) => MobilityOption::Timestamp(Timestamp(*t)),
            Opt::Restart(c) => MobilityOption::RestartCounter(*c),
            Opt::Gre(k) => MobilityOption::GreKey(*k),
            Opt::V4Req(p, a) => MobilityOption::Ipv4HomeAddressRequest {
                prefix_len: *p,
                address: *a,
            },
            Opt::V4Rep(s, p, a) => MobilityOption::Ipv4HomeAddressReply {
                status: (*s).into(),
                prefix_len: *p,
                address: *a,
            },
            Opt::V4Dr(a) => MobilityOption::Ipv4DefaultRouterAddress(*a),
            Opt::Dhcp(s) => MobilityOption::Ipv4DhcpSupportMode { server: *s },
            Opt::Ctx(enc) => {
                MobilityOption::ContextRequest(ContextRequest::from_encoded(enc).unwrap())
            }
            Opt::Lma6(a) => MobilityOption::LmaAddress(LmaAddress::V6(*a)),
            Opt::Lma4(a) => MobilityOption::LmaAddress(LmaAddress::V4(*a)),
            Opt::Iid(i) => MobilityOption::MnLinkLocalInterfaceId(*i),
            Opt::Unknown(t, d) => MobilityOption::Unknown {
                option_type: *t,
                data: d,
            },
        }
    }
}

fn v6() -> impl Strategy<Value = Ipv6Addr> {
    any::<u128>().prop_map(Ipv6Addr::from)
}

fn v4() -> impl Strategy<Value = Ipv4Addr> {
    any::<u32>().prop_map(Ipv4Addr::from)
}

/// Option types this crate parses into their own variants: an Unknown option must not use them.
fn is_typed(t: u8) -> bool {
    matches!(t, 0 | 1 | 3 | 8 | 19 | 22..=28 | 33 | 36..=42)
}

fn opt() -> impl Strategy<Value = Opt> {
    prop_oneof![
        v6().prop_map(Opt::AltCoa),
        (any::<u8>(), prop::collection::vec(any::<u8>(), 0..60)).prop_map(|(s, i)| Opt::MnId(s, i)),
        (
            any::<u32>(),
            any::<u8>(),
            prop::collection::vec(any::<u8>(), 0..40)
        )
            .prop_map(|(v, s, d)| Opt::Vendor(v, s, d)),
        (v6(), 0u8..=128).prop_map(|(a, l)| Opt::Hnp(a, l)),
        any::<u8>().prop_map(Opt::Hi),
        any::<u8>().prop_map(Opt::Att),
        prop::collection::vec(any::<u8>(), 1..20).prop_map(Opt::LlId),
        v6().prop_map(Opt::Lla),
        any::<u64>().prop_map(Opt::Ts),
        any::<u32>().prop_map(Opt::Restart),
        any::<Option<u32>>().prop_map(Opt::Gre),
        (0u8..=32, v4()).prop_map(|(p, a)| Opt::V4Req(p, a)),
        (any::<u8>(), 0u8..=32, v4()).prop_map(|(s, p, a)| Opt::V4Rep(s, p, a)),
        v4().prop_map(Opt::V4Dr),
        any::<bool>().prop_map(Opt::Dhcp),
        prop::collection::vec(
            (any::<u8>(), prop::collection::vec(any::<u8>(), 0..6)),
            0..5
        )
        .prop_map(|reqs| {
            let mut enc = Vec::new();
            for (t, d) in &reqs {
                enc.push(*t);
                enc.push(d.len() as u8);
                enc.extend(d);
            }
            Opt::Ctx(enc)
        }),
        v6().prop_map(Opt::Lma6),
        v4().prop_map(Opt::Lma4),
        any::<[u8; 8]>().prop_map(Opt::Iid),
        (
            any::<u8>().prop_filter("untyped", |t| !is_typed(*t)),
            prop::collection::vec(any::<u8>(), 0..30)
        )
            .prop_map(|(t, d)| Opt::Unknown(t, d)),
    ]
}

/// A message kind and its fixed fields, as plain numbers.
#[derive(Debug, Clone)]
enum Kind {
    Bu(u16, u16, u16),
    Ba(u8, u8, u16, u16),
    Be(u8, Ipv6Addr),
    Hb(u16, u32),
    Hi(u16, u8, u8),
    Hack(u16, u8, u8),
    Bri(u8, u16, u8),
    Bra(u8, u16, u8),
    Upn(u16, u16, u8),
    Upa(u16, u8),
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        (any::<u16>(), any::<u16>(), any::<u16>()).prop_map(|(s, f, l)| Kind::Bu(s, f, l)),
        (any::<u8>(), any::<u8>(), any::<u16>(), any::<u16>())
            .prop_map(|(st, f, s, l)| Kind::Ba(st, f, s, l)),
        (any::<u8>(), v6()).prop_map(|(s, a)| Kind::Be(s, a)),
        (0u16..4, any::<u32>()).prop_map(|(f, s)| Kind::Hb(f, s)),
        (any::<u16>(), any::<u8>(), any::<u8>()).prop_map(|(s, f, c)| Kind::Hi(s, f & 0xf0, c)),
        (any::<u16>(), any::<u8>(), any::<u8>()).prop_map(|(s, f, c)| Kind::Hack(s, f & 0xe0, c)),
        (any::<u8>(), any::<u16>(), any::<u8>()).prop_map(|(t, s, f)| Kind::Bri(t, s, f & 0xe0)),
        (any::<u8>(), any::<u16>(), any::<u8>()).prop_map(|(t, s, f)| Kind::Bra(t, s, f & 0xe0)),
        (any::<u16>(), any::<u16>(), any::<u8>()).prop_map(|(s, r, f)| Kind::Upn(s, r, f & 0xc0)),
        (any::<u16>(), any::<u8>()).prop_map(|(s, st)| Kind::Upa(s, st)),
    ]
}

fn message<'a>(k: &Kind, options: Options<'a>) -> Message<'a> {
    match *k {
        Kind::Bu(s, f, l) => Message::BindingUpdate(BindingUpdate {
            sequence: SequenceNumber(s),
            flags: BuFlags(f),
            lifetime: Lifetime(l),
            options,
        }),
        Kind::Ba(st, f, s, l) => Message::BindingAck(BindingAck {
            status: st.into(),
            flags: BaFlags(f),
            sequence: SequenceNumber(s),
            lifetime: Lifetime(l),
            options,
        }),
        Kind::Be(st, a) => Message::BindingError(BindingError {
            status: st.into(),
            home_address: a,
            options,
        }),
        Kind::Hb(f, s) => Message::Heartbeat(Heartbeat {
            flags: HeartbeatFlags(f),
            sequence: s,
            options,
        }),
        Kind::Hi(s, f, c) => Message::HandoverInitiate(HandoverInitiate {
            sequence: SequenceNumber(s),
            flags: HiFlags(f),
            code: c.into(),
            options,
        }),
        Kind::Hack(s, f, c) => Message::HandoverAck(HandoverAck {
            sequence: SequenceNumber(s),
            flags: HackFlags(f),
            code: c.into(),
            options,
        }),
        Kind::Bri(t, s, f) => {
            Message::BindingRevocation(BindingRevocation::Indication(BindingRevocationIndication {
                trigger: t.into(),
                sequence: SequenceNumber(s),
                flags: RevocationFlags(f),
                options,
            }))
        }
        Kind::Bra(st, s, f) => {
            Message::BindingRevocation(BindingRevocation::Acknowledgement(BindingRevocationAck {
                status: st.into(),
                sequence: SequenceNumber(s),
                flags: RevocationFlags(f),
                options,
            }))
        }
        Kind::Upn(s, r, f) => Message::UpdateNotification(UpdateNotification {
            sequence: SequenceNumber(s),
            reason: r.into(),
            flags: UpnFlags(f),
            options,
        }),
        Kind::Upa(s, st) => Message::UpdateNotificationAck(UpdateNotificationAck {
            sequence: SequenceNumber(s),
            status: st.into(),
            options,
        }),
    }
}

/// Exercises every read path on whatever parses; must never panic.
fn read_everything(bytes: &[u8]) {
    let src: Ipv6Addr = "2001:db8::1".parse().unwrap();
    let _ = Message::parse_verified(bytes, &src, &src);
    if let Ok(m) = Message::parse_bytes(bytes) {
        let _ = format!("{m:?}");
        for (_, o) in m.options().iter_at() {
            let _ = o.option_type().to_string();
            if let MobilityOption::ContextRequest(c) = o {
                let _ = c.iter().count();
            }
        }
        match m {
            Message::BindingUpdate(bu) => {
                if let Ok(p) = ProxyBindingUpdate::new(&bu) {
                    let _ = p.check_mandatory();
                    let _ = p.home_network_prefixes().count();
                }
            }
            Message::BindingAck(ba) => {
                if let Ok(p) = ProxyBindingAck::new(&ba) {
                    let _ = p.check_mandatory();
                }
            }
            Message::HandoverInitiate(hi) => {
                let _ = HandoverContext::of_hi(&hi);
            }
            Message::HandoverAck(h) => {
                let _ = HandoverContext::of_hack(&h);
            }
            Message::Heartbeat(h) => {
                let _ = HeartbeatView::new(&h);
            }
            _ => {}
        }
        let mut out = vec![0u8; m.buffer_len().max(8)];
        let _ = m.emit(&mut out);
    }
    let _ = packet::find_mh(bytes);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn parse_emit_round_trip(k in kind(), opts in prop::collection::vec(opt(), 0..12)) {
        let list: Vec<MobilityOption<'_>> = opts.iter().map(Opt::as_option).collect();
        let m = message(&k, Options::List(&list));
        let n = m.buffer_len();
        prop_assume!(n <= 2048);
        let src: Ipv6Addr = "2001:db8::10".parse().unwrap();
        let dst: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let mut buf = vec![0u8; n];
        prop_assert_eq!(m.emit_with_checksum(&mut buf, &src, &dst).unwrap(), n);
        prop_assert_eq!(n % 8, 0);
        let back = Message::parse_verified(&buf, &src, &dst).unwrap();
        prop_assert_eq!(back, m);
        // And emitting what was parsed gives the same bytes.
        let mut again = vec![0u8; back.buffer_len()];
        back.emit_with_checksum(&mut again, &src, &dst).unwrap();
        prop_assert_eq!(again, buf);
    }

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        read_everything(&bytes);
    }

    #[test]
    fn random_mobility_headers_never_panic(
        mh_type in 0u8..24,
        body in prop::collection::vec(any::<u8>(), 0..200),
    ) {
        // Well-framed headers reach the message and option parsers, unlike random bytes.
        let mut b = vec![59u8, 0, mh_type, 0, 0, 0];
        b.extend(body);
        let n = b.len().div_ceil(8).max(1) * 8;
        b.resize(n, 0);
        b[1] = (n / 8 - 1) as u8;
        read_everything(&b);
    }

    #[test]
    fn corrupted_messages_never_panic(
        k in kind(),
        opts in prop::collection::vec(opt(), 0..8),
        flips in prop::collection::vec((any::<usize>(), any::<u8>()), 1..6),
        cut in any::<usize>(),
    ) {
        let list: Vec<MobilityOption<'_>> = opts.iter().map(Opt::as_option).collect();
        let m = message(&k, Options::List(&list));
        prop_assume!(m.buffer_len() <= 2048);
        let mut buf = vec![0u8; m.buffer_len()];
        m.emit(&mut buf).unwrap();
        for (at, x) in flips {
            let i = at % buf.len();
            buf[i] ^= x;
        }
        read_everything(&buf);
        read_everything(&buf[..cut % (buf.len() + 1)]);
    }
}
