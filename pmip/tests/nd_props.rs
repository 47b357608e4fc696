//! Property tests of the access link's wire format (`pmip::wire::nd`): parse(emit(x)) == x
//! for generated frames of every kind, no panic on any input, and whatever parses emits
//! again to the same octets.

use std::net::Ipv6Addr;

use pmip::wire::nd::*;
use proptest::prelude::*;

/// An owned ND option, from which a borrowed [`NdOption`] is made.
#[derive(Debug, Clone)]
enum Opt {
    Sll(Vec<u8>),
    Tll(Vec<u8>),
    Pio(u8, u8, u32, u32, Ipv6Addr),
    Mtu(u32),
    Unknown(u8, Vec<u8>),
}

impl Opt {
    fn as_option(&self) -> NdOption<'_> {
        match self {
            Opt::Sll(a) => NdOption::SourceLinkLayerAddress(a),
            Opt::Tll(a) => NdOption::TargetLinkLayerAddress(a),
            Opt::Pio(l, f, v, p, prefix) => NdOption::PrefixInformation(PrefixInformation {
                prefix_len: *l,
                flags: PrefixFlags(*f & 0xe0),
                valid_lifetime: *v,
                preferred_lifetime: *p,
                prefix: *prefix,
            }),
            Opt::Mtu(m) => NdOption::Mtu(*m),
            Opt::Unknown(t, d) => NdOption::Unknown {
                option_type: *t,
                data: d,
            },
        }
    }
}

/// Option data as it comes back from the wire: 8n - 2 octets.
fn padded_data() -> impl Strategy<Value = Vec<u8>> {
    (0usize..4).prop_flat_map(|n| proptest::collection::vec(any::<u8>(), n * 8 + 6))
}

fn v6() -> impl Strategy<Value = Ipv6Addr> {
    any::<u128>().prop_map(Ipv6Addr::from)
}

fn link_local() -> impl Strategy<Value = Ipv6Addr> {
    any::<u64>().prop_map(|iid| Ipv6Addr::from((0xfe80u128 << 112) | u128::from(iid)))
}

fn unicast() -> impl Strategy<Value = Ipv6Addr> {
    v6().prop_filter("not multicast", |a| !a.is_multicast())
}

fn opt(slla: bool) -> impl Strategy<Value = Opt> {
    let sll = if slla {
        padded_data().prop_map(Opt::Sll).boxed()
    } else {
        Just(Opt::Mtu(1280)).boxed()
    };
    prop_oneof![
        sll,
        padded_data().prop_map(Opt::Tll),
        (0u8..=128, any::<u8>(), any::<u32>(), any::<u32>(), v6())
            .prop_map(|(l, f, v, p, a)| Opt::Pio(l, f, v, p, a)),
        any::<u32>().prop_map(Opt::Mtu),
        (
            any::<u8>().prop_filter("unknown", |t| ![1, 2, 3, 5].contains(t)),
            padded_data()
        )
            .prop_map(|(t, d)| Opt::Unknown(t, d)),
    ]
}

fn opts(slla: bool) -> impl Strategy<Value = Vec<Opt>> {
    proptest::collection::vec(opt(slla), 0..5)
}

/// A valid ND message with its IPv6 source and destination.
#[derive(Debug, Clone)]
enum Msg {
    Rs(Ipv6Addr, Vec<Opt>),
    Ra(Ipv6Addr, u8, u8, u16, u32, u32, Vec<Opt>),
    Ns(Ipv6Addr, Ipv6Addr, Ipv6Addr, Vec<Opt>),
    Na(Ipv6Addr, Ipv6Addr, u8, Ipv6Addr, Vec<Opt>),
    Mld(Vec<(u8, Ipv6Addr, Vec<u8>, Vec<u8>)>),
    Echo(u8, Vec<u8>),
}

fn msg() -> impl Strategy<Value = Msg> {
    prop_oneof![
        (link_local(), opts(true)).prop_map(|(s, o)| Msg::Rs(s, o)),
        opts(false).prop_map(|o| Msg::Rs(Ipv6Addr::UNSPECIFIED, o)),
        (
            link_local(),
            any::<u8>(),
            any::<u8>(),
            any::<u16>(),
            any::<u32>(),
            any::<u32>(),
            opts(true)
        )
            .prop_map(|(s, h, f, l, r, t, o)| Msg::Ra(s, h, f, l, r, t, o)),
        (link_local(), unicast(), unicast(), opts(true))
            .prop_map(|(s, d, t, o)| Msg::Ns(s, d, t, o)),
        (unicast(), opts(false)).prop_map(|(t, o)| Msg::Ns(
            Ipv6Addr::UNSPECIFIED,
            solicited_node(&t),
            t,
            o
        )),
        (link_local(), unicast(), any::<u8>(), unicast(), opts(true))
            .prop_map(|(s, d, f, t, o)| Msg::Na(s, d, f, t, o)),
        (link_local(), any::<u8>(), unicast(), opts(true)).prop_map(|(s, f, t, o)| Msg::Na(
            s,
            ALL_NODES,
            f & !0x40,
            t,
            o
        )),
        proptest::collection::vec(
            (
                any::<u8>(),
                v6(),
                (0usize..3).prop_flat_map(|n| proptest::collection::vec(any::<u8>(), n * 16)),
                (0usize..3).prop_flat_map(|n| proptest::collection::vec(any::<u8>(), n * 4)),
            ),
            0..4
        )
        .prop_map(Msg::Mld),
        (128u8..=129, proptest::collection::vec(any::<u8>(), 4..40))
            .prop_map(|(t, b)| Msg::Echo(t, b)),
    ]
}

/// Builds the frame of `m`, emits it, and checks that parsing gives it back.
fn check_round_trip(
    m: &Msg,
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
) -> std::result::Result<(), TestCaseError> {
    fn list(o: &[Opt]) -> Vec<NdOption<'_>> {
        o.iter().map(Opt::as_option).collect()
    }
    let (src, dst, hop_limit, hbh, owned_opts, records);
    let message = match m {
        Msg::Rs(s, o) => {
            (src, dst, hop_limit, hbh) = (*s, ALL_ROUTERS, 255, None);
            owned_opts = list(o);
            Icmpv6Repr::Ndisc(NdiscRepr::RouterSolicitation {
                options: NdOptions::List(&owned_opts),
            })
        }
        Msg::Ra(s, h, f, l, r, t, o) => {
            (src, dst, hop_limit, hbh) = (*s, ALL_NODES, 255, None);
            owned_opts = list(o);
            Icmpv6Repr::Ndisc(NdiscRepr::RouterAdvertisement {
                cur_hop_limit: *h,
                flags: RaFlags(*f),
                router_lifetime: *l,
                reachable_time: *r,
                retrans_timer: *t,
                options: NdOptions::List(&owned_opts),
            })
        }
        Msg::Ns(s, d, t, o) => {
            (src, dst, hop_limit, hbh) = (*s, *d, 255, None);
            owned_opts = list(o);
            Icmpv6Repr::Ndisc(NdiscRepr::NeighborSolicitation {
                target: *t,
                options: NdOptions::List(&owned_opts),
            })
        }
        Msg::Na(s, d, f, t, o) => {
            (src, dst, hop_limit, hbh) = (*s, *d, 255, None);
            owned_opts = list(o);
            Icmpv6Repr::Ndisc(NdiscRepr::NeighborAdvertisement {
                flags: NaFlags(*f & 0xe0),
                target: *t,
                options: NdOptions::List(&owned_opts),
            })
        }
        Msg::Mld(rs) => {
            (src, dst, hop_limit, hbh) = (
                Ipv6Addr::UNSPECIFIED,
                ALL_MLDV2_ROUTERS,
                1,
                Some(HopByHopRepr::MLD),
            );
            records = rs
                .iter()
                .map(|(t, g, s, a)| MldRecord {
                    record_type: MldRecordType::from(*t),
                    group: *g,
                    sources: s,
                    aux_data: a,
                })
                .collect::<Vec<_>>();
            Icmpv6Repr::Mld(MldRepr::ReportV2 {
                records: MldRecords::List(&records),
            })
        }
        Msg::Echo(t, b) => {
            (src, dst, hop_limit, hbh) = ("2001:db8::1".parse().unwrap(), ALL_NODES, 64, None);
            Icmpv6Repr::Other {
                msg_type: Icmpv6Type::from(*t),
                code: 0,
                body: b,
            }
        }
    };
    let r = FrameRepr {
        eth_source: EthernetAddress(src_mac),
        eth_destination: EthernetAddress(dst_mac),
        source: src,
        destination: dst,
        hop_limit,
        hop_by_hop: hbh,
        message,
    };
    let mut buf = vec![0u8; r.buffer_len()];
    prop_assert_eq!(r.emit(&mut buf), Ok(buf.len()));
    prop_assert_eq!(FrameRepr::parse(&buf), Ok(r));
    Ok(())
}

/// What every view gives for `bytes`, without panicking.
fn read_views(bytes: &[u8]) {
    if let Ok(f) = EthernetFrame::new_checked(bytes) {
        let _ = (
            f.source(),
            f.destination(),
            f.ethertype(),
            f.payload().len(),
        );
        if let Ok(ip) = Ipv6Packet::new_checked(f.payload()) {
            let _ = (ip.traffic_class(), ip.flow_label(), ip.hop_limit());
            let _ = (ip.source(), ip.destination(), ip.payload().len());
            if let Ok((_, _, upper)) = ip.upper_layer()
                && let Ok(icmp) = Icmpv6Packet::new_checked(upper)
            {
                let _ = (icmp.msg_type(), icmp.msg_code(), icmp.checksum());
                let _ = icmp.check_checksum(&ip.source(), &ip.destination());
                let _ = Icmpv6Repr::parse(&ip.source(), &ip.destination(), &icmp);
            }
        }
    }
}

/// Whatever parses emits again, parses to the same, and emits the same octets.
fn stable(bytes: &[u8]) -> std::result::Result<(), TestCaseError> {
    read_views(bytes);
    if let Ok(r) = FrameRepr::parse(bytes) {
        let _ = format!("{r:?}");
        let mut out = vec![0u8; r.buffer_len()];
        prop_assert_eq!(r.emit(&mut out), Ok(out.len()));
        let again = FrameRepr::parse(&out);
        prop_assert_eq!(again, Ok(r));
        let mut out2 = vec![0u8; r.buffer_len()];
        prop_assert!(again.unwrap().emit(&mut out2).is_ok());
        prop_assert_eq!(out, out2);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn generated_frames_round_trip(m in msg(), s in any::<[u8; 6]>(), d in any::<[u8; 6]>()) {
        check_round_trip(&m, s, d)?;
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        stable(&bytes)?;
    }

    /// A frame that starts like an ND frame (so that the parsers get past the headers),
    /// then random octets.
    #[test]
    fn random_messages_never_panic(
        hbh in any::<bool>(),
        src in prop_oneof![Just(Ipv6Addr::UNSPECIFIED), link_local()],
        msg_type in prop_oneof![130u8..=137, Just(143u8), any::<u8>()],
        body in proptest::collection::vec(any::<u8>(), 0..120),
        fix_checksum in any::<bool>(),
    ) {
        let mut icmp = vec![msg_type, 0, 0, 0];
        icmp.extend_from_slice(&body);
        let dst = ALL_NODES;
        if fix_checksum {
            let c = icmpv6_checksum(&src, &dst, &icmp);
            icmp[2..4].copy_from_slice(&c.to_be_bytes());
        }
        let mut f = vec![2, 0, 0, 0, 1, 1, 2, 0, 0, 0, 2, 2, 0x86, 0xdd, 0x60, 0, 0, 0];
        let ext: &[u8] = if hbh { &[58, 0, 5, 2, 0, 0, 1, 0] } else { &[] };
        f.extend_from_slice(&((ext.len() + icmp.len()) as u16).to_be_bytes());
        f.push(if hbh { 0 } else { 58 });
        f.push(255);
        f.extend_from_slice(&src.octets());
        f.extend_from_slice(&dst.octets());
        f.extend_from_slice(ext);
        f.extend_from_slice(&icmp);
        stable(&f)?;
    }

    /// Valid frames cut short or with one octet changed.
    #[test]
    fn damaged_frames_never_panic(m in msg(), cut in any::<prop::sample::Index>(),
                                  at in any::<prop::sample::Index>(), x in 1u8..) {
        // Rebuild the valid frame (the round trip test checks it).
        let mut buf = Vec::new();
        {
            let list: Vec<Opt> = match &m { Msg::Rs(_, o) | Msg::Ra(.., o) | Msg::Ns(.., o)
                | Msg::Na(.., o) => o.clone(), _ => vec![] };
            let opts: Vec<_> = list.iter().map(Opt::as_option).collect();
            let r = FrameRepr {
                eth_source: EthernetAddress([2, 0, 0, 0, 1, 1]),
                eth_destination: EthernetAddress([2, 0, 0, 0, 2, 2]),
                source: "fe80::1".parse().unwrap(),
                destination: ALL_NODES,
                hop_limit: 255,
                hop_by_hop: None,
                message: Icmpv6Repr::Ndisc(NdiscRepr::RouterAdvertisement {
                    cur_hop_limit: 64, flags: RaFlags::empty(), router_lifetime: 1800,
                    reachable_time: 0, retrans_timer: 0, options: NdOptions::List(&opts),
                }),
            };
            buf.resize(r.buffer_len(), 0);
            r.emit(&mut buf).unwrap();
        }
        stable(&buf[..cut.index(buf.len() + 1)])?;
        let i = at.index(buf.len());
        buf[i] ^= x;
        stable(&buf)?;
    }
}
