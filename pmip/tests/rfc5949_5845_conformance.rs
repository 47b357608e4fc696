//! Rules of RFC 5949 (fast handovers) and RFC 5845 (GRE key option) that the code follows
//! but no other test checks. Handover Initiates and Proxy Binding Updates are built by hand
//! as a peer MAG would send them; the answers are read back with the crate's parser. Each
//! test names the section it checks.

use core::time::Duration;
use std::net::Ipv6Addr;

use ipnet::{IpNet, Ipv6Net};
use pmip::config::FastHandoverMode;
use pmip::mag::MagEvent;
use pmip::sim::{Packet, Sim};
use pmip::types::LinkLayerAddress;
use pmip::wire::*;

mod common;
use common::*;

fn hi(
    from: Ipv6Addr,
    to: Ipv6Addr,
    seq: u16,
    flags: HiFlags,
    code: HiCode,
    opts: &[MobilityOption<'_>],
) -> Packet {
    let m = Message::HandoverInitiate(HandoverInitiate {
        sequence: SequenceNumber(seq),
        flags,
        code,
        options: Options::List(opts),
    });
    packet(from, to, &m)
}

fn nai_opt(id: &[u8]) -> MobilityOption<'_> {
    MobilityOption::MobileNodeIdentifier {
        subtype: MN_ID_SUBTYPE_NAI,
        id,
    }
}

/// A Handover Acknowledge as it went on the wire, with what the tests look at.
#[derive(Debug)]
struct Hack {
    src: Ipv6Addr,
    dst: Ipv6Addr,
    sequence: u16,
    flags: HackFlags,
    code: HackCode,
    mn_id: Option<(u8, Vec<u8>)>,
    prefixes: Vec<Ipv6Net>,
    lma: Option<LmaAddress>,
    mn_ll_id: Option<Vec<u8>>,
    ipv4: bool,
    /// Every option but padding.
    options: usize,
}

/// The Handover Acknowledges MAG `mag` sent from the `from`th packet on, in order.
fn hacks_since(sim: &Sim, mag: usize, from: usize) -> Vec<Hack> {
    sim.sent[from..]
        .iter()
        .filter(|(_, p)| p.src == mag_addr(mag))
        .filter_map(|(_, p)| match p.message() {
            Some(Message::HandoverAck(h)) => {
                let o = CommonOptions::collect(&h.options).unwrap();
                Some(Hack {
                    src: p.src,
                    dst: p.dst,
                    sequence: h.sequence.0,
                    flags: h.flags,
                    code: h.code,
                    mn_id: o.mn_id.map(|(s, id)| (s, id.to_vec())),
                    prefixes: h
                        .options
                        .iter()
                        .filter_map(|o| match o {
                            MobilityOption::HomeNetworkPrefix(p) => Some(p),
                            _ => None,
                        })
                        .collect(),
                    lma: o.lma_address,
                    mn_ll_id: o.mn_link_layer_id.map(<[u8]>::to_vec),
                    ipv4: o.ipv4_home_address_request.is_some() || o.ipv4_default_router.is_some(),
                    options: h.options.iter().count(),
                })
            }
            _ => None,
        })
        .collect()
}

/// Every Mobility Header MAG `mag` sent from the `from`th packet on.
fn sent_by(sim: &Sim, mag: usize, from: usize) -> Vec<Packet> {
    sim.sent[from..]
        .iter()
        .filter(|(_, p)| p.src == mag_addr(mag))
        .map(|(_, p)| p.clone())
        .collect()
}

fn dropped_from(sim: &Sim, mag: usize, peer: Ipv6Addr) -> usize {
    sim.mag_events_of(mag)
        .filter(|e| matches!(e, MagEvent::Dropped { from, .. } if *from == peer))
        .count()
}

/// A Context Request option asking for `types`, in `buf`.
fn context_request<'b>(types: &[OptionType], buf: &'b mut [u8; 8]) -> MobilityOption<'b> {
    MobilityOption::ContextRequest(ContextRequest::encode_types(types, buf).unwrap())
}

/// Node 1 attached at MAG1 (index 0) and registered.
fn node_at_first_mag(mode: FastHandoverMode) -> Sim {
    let mut sim = fast_domain(mode, 2, 2);
    sim.attach(0, ll(1));
    sim.settle(Duration::from_secs(2));
    assert!(sim.mags[0].binding(&nai(1)).unwrap().is_bound());
    sim
}

fn prefixes_at(sim: &Sim, mag: usize, n: u16) -> Vec<Ipv6Net> {
    sim.mags[mag].binding(&nai(n)).unwrap().prefixes.clone()
}

// ------------------------------------------------------------------ RFC 5949 §4

/// RFC 5949 §4: "A MAG that receives a RtSolPr or FBU message from a mobile node SHOULD
/// behave as if they do not implement FMIPv6". A Fast Binding Update (MH Type 8, RFC 5568
/// §6.3.1) from the node's home address is answered, with fast handovers on, exactly as with
/// them off: a Binding Error with status 2 (RFC 6275 §9.2), no Handover Initiate, and the
/// node's binding, routes and buffers as they were.
#[test]
fn rfc5949_4_a_fast_binding_update_from_a_node_is_answered_as_without_fmipv6() {
    let mut answers = Vec::new();
    for mode in [
        FastHandoverMode::Off,
        FastHandoverMode::Predictive,
        FastHandoverMode::Reactive,
    ] {
        let mut sim = node_at_first_mag(mode);
        let p = prefixes_at(&sim, 0, 1)[0];
        let node = Ipv6Addr::from(u128::from(p.addr()) | 1);
        let datapath = sim.mag_datapaths[0].clone();
        let events = sim.mag_events_of(0).count();
        // Sequence #, A flag, Lifetime, then a PadN to the 8-octet multiple.
        let data = [0, 9, 0x80, 0, 0, 10, 1, 2, 0, 0];
        let fbu = Message::Unknown {
            mh_type: 8,
            data: &data,
        };
        let from = sim.sent.len();
        sim.inject(packet(node, mag_addr(0), &fbu));
        sim.run_for(Duration::from_millis(50));

        let sent = sent_by(&sim, 0, from);
        assert_eq!(sent.len(), 1, "{mode:?}: {sent:?}");
        assert_eq!(sent[0].dst, node, "{mode:?}");
        let Some(Message::BindingError(be)) = sent[0].message() else {
            panic!("{mode:?}: not a Binding Error: {:?}", sent[0].message())
        };
        assert_eq!(
            be.status,
            BindingErrorStatus::UnrecognizedMhType,
            "{mode:?}"
        );
        assert!(
            sim.sent[from..]
                .iter()
                .all(|(_, p)| !matches!(p.message(), Some(Message::HandoverInitiate(_)))),
            "{mode:?}"
        );
        assert_eq!(sim.mag_datapaths[0], datapath, "{mode:?}");
        let e = sim.mags[0].binding(&nai(1)).unwrap();
        assert!(e.is_bound(), "{mode:?}");
        assert!(sim.mags[0].handover(&ll(1)).is_none(), "{mode:?}");
        let new_events: Vec<&MagEvent> = sim.mag_events_of(0).skip(events).collect();
        assert!(
            new_events
                .iter()
                .all(|e| matches!(e, MagEvent::Dropped { from, .. } if *from == node)),
            "{mode:?}: {new_events:?}"
        );
        answers.push((be.status, new_events.len()));
    }
    assert!(answers.windows(2).all(|w| w[0] == w[1]), "{answers:?}");
}

/// RFC 5949 §4, the other message it names: a Router Solicitation for Proxy Advertisement
/// (ICMPv6 Type 154, RFC 5568 §6.1.1) from a node's link-local address to the routers of
/// its link is read by the access link's parser as an ICMPv6 message of its own, never as a
/// Router Solicitation: the MAG answers it neither with a Proxy Router Advertisement nor with
/// a Router Advertisement, as a MAG without FMIPv6.
#[test]
fn rfc5949_4_an_rtsolpr_from_a_node_is_not_read_as_a_router_solicitation() {
    use pmip::wire::nd::{
        ALL_ROUTERS, EthernetAddress, FrameRepr, Icmpv6Repr, Icmpv6Type, NdiscRepr,
    };
    let mac = [2, 0, 0, 0, 0, 1];
    // Subtype 2, Reserved, Identifier; a Source Link-layer Address option.
    let body = [2, 0, 0x12, 0x34, 1, 1, 2, 0, 0, 0, 0, 1];
    let rtsolpr = FrameRepr {
        eth_source: EthernetAddress(mac),
        eth_destination: EthernetAddress::ipv6_multicast(&ALL_ROUTERS),
        source: "fe80::ff:fe00:1".parse().unwrap(),
        destination: ALL_ROUTERS,
        hop_limit: 255,
        hop_by_hop: None,
        message: Icmpv6Repr::Other {
            msg_type: Icmpv6Type::from(154),
            code: 0,
            body: &body,
        },
    };
    let mut buf = vec![0u8; rtsolpr.buffer_len()];
    rtsolpr.emit(&mut buf).unwrap();
    let read = FrameRepr::parse(&buf).unwrap();
    assert_eq!(read.message.msg_type().value(), 154);
    assert_ne!(read.message.msg_type(), Icmpv6Type::RouterSolicitation);
    assert!(
        matches!(read.message, Icmpv6Repr::Other { .. }),
        "{:?}",
        read.message
    );
    assert!(!matches!(
        read.message,
        Icmpv6Repr::Ndisc(NdiscRepr::RouterSolicitation { .. })
    ));
}

// ------------------------------------------------------------------ RFC 5949 §4.1, §6.1.2

/// RFC 5949 §4.1 step (d), §6.1.2: the previous MAG's HAck to the new MAG's HI has P set,
/// its source and destination swapped from the HI's, the HI's sequence number and MN-ID, the
/// node's HNP(s), its MN-LL-ID (valid, non-zero) and the address of the LMA serving it, and
/// every context the Context Request asked for, with Code 6 (all available context
/// transferred); and "the transferred context MUST be for one mobile node per message". The
/// later HI with F gets a HAck with F and the forwarding.
#[test]
fn rfc5949_4_1_the_previous_mags_hack_carries_the_prefixes_the_lma_address_and_the_mn_ll_id() {
    let mut sim = node_at_first_mag(FastHandoverMode::Reactive);
    let prefixes = prefixes_at(&sim, 0, 1);
    let id = nai(1);
    let l = ll(1);
    let mut buf = [0u8; 8];
    let cr = context_request(
        &[
            OptionType::HomeNetworkPrefix,
            OptionType::MnLinkLayerIdentifier,
        ],
        &mut buf,
    );
    let hacks = request_hi(
        &mut sim,
        0x1234,
        HiFlags::P | HiFlags::U,
        &[
            nai_opt(id.as_bytes()),
            MobilityOption::MnLinkLayerIdentifier(l.as_bytes()),
            cr,
        ],
    );
    assert_eq!(hacks.len(), 1, "{hacks:?}");
    let h = &hacks[0];
    assert_eq!((h.src, h.dst), (mag_addr(0), mag_addr(1)));
    assert_eq!(h.sequence, 0x1234);
    assert!(h.flags.contains(HackFlags::P));
    assert!(h.flags.contains(HackFlags::U));
    assert!(!h.flags.contains(HackFlags::F));
    assert_eq!(h.code, HackCode::AllAvailableContextTransferred);
    assert_eq!(h.mn_id, Some((MN_ID_SUBTYPE_NAI, id.as_bytes().to_vec())));
    assert!(!prefixes.is_empty());
    assert_eq!(h.prefixes, prefixes);
    assert_eq!(h.lma, Some(LmaAddress::V6(lma_addr())));
    assert_eq!(h.mn_ll_id.as_deref(), Some(l.as_bytes()));
    assert!(l.as_bytes().iter().any(|b| *b != 0));
    // A node without IPv4 service: no IPv4 context, which was not asked for either.
    assert!(!h.ipv4);

    // The HI with F: the packets go to the new MAG.
    let hacks = request_hi(
        &mut sim,
        0x1235,
        HiFlags::P | HiFlags::F,
        &[
            nai_opt(id.as_bytes()),
            MobilityOption::MnLinkLayerIdentifier(l.as_bytes()),
        ],
    );
    assert_eq!(hacks.len(), 1, "{hacks:?}");
    let h = &hacks[0];
    assert_eq!(h.sequence, 0x1235);
    assert!(h.flags.contains(HackFlags::P) && h.flags.contains(HackFlags::F));
    assert_eq!(h.code, HackCode::AllAvailableContextTransferred);
    assert_eq!(h.prefixes, prefixes);
    assert_eq!(h.lma, Some(LmaAddress::V6(lma_addr())));
    assert_eq!(h.mn_ll_id.as_deref(), Some(l.as_bytes()));
    for p in &prefixes {
        assert_eq!(
            sim.mag_datapaths[0].forwards.get(&IpNet::from(*p)),
            Some(&mag_addr(1))
        );
    }
}

/// RFC 5949 §4.1 step (d): "If the requested context is not available for some reason, the
/// previous MAG MUST return the HAck message with the Code value 131", and §6.1.2 "without
/// any context information". A new MAG asks for a node this MAG does not serve (known to its
/// policy, never attached): Code 131, the MN-ID alone, and nothing buffered or forwarded.
#[test]
fn rfc5949_4_1_a_context_request_for_a_node_not_served_here_gets_code_131() {
    let mut sim = node_at_first_mag(FastHandoverMode::Reactive);
    let datapath = sim.mag_datapaths[0].clone();
    let id = nai(2);
    let l = ll(2);
    let mut buf = [0u8; 8];
    let cr = context_request(
        &[
            OptionType::HomeNetworkPrefix,
            OptionType::MnLinkLayerIdentifier,
        ],
        &mut buf,
    );
    let requests: [&[MobilityOption<'_>]; 2] = [
        &[
            nai_opt(id.as_bytes()),
            MobilityOption::MnLinkLayerIdentifier(l.as_bytes()),
            cr,
        ],
        // Without the MN-LL-ID.
        &[nai_opt(id.as_bytes()), cr],
    ];
    for (i, opts) in requests.into_iter().enumerate() {
        let seq = 40 + i as u16;
        let hacks = request_hi(&mut sim, seq, HiFlags::P | HiFlags::U, opts);
        assert_eq!(hacks.len(), 1, "{i}: {hacks:?}");
        let h = &hacks[0];
        assert_eq!(h.code, HackCode::RequestedContextNotAvailable, "{i}");
        assert_eq!(h.sequence, seq);
        assert!(h.flags.contains(HackFlags::P));
        assert_eq!(h.mn_id, Some((MN_ID_SUBTYPE_NAI, id.as_bytes().to_vec())));
        assert_eq!(h.options, 1, "{i}: {h:?}");
        assert!(sim.mags[0].binding(&nai(2)).is_none(), "{i}");
        assert_eq!(sim.mag_datapaths[0], datapath, "{i}");
    }
    // The node this MAG serves is untouched.
    assert!(sim.mags[0].binding(&nai(1)).unwrap().is_bound());
    assert!(sim.mags[0].handover(&ll(1)).is_none());
}

/// §4.1 (d), §6.1.2: the previous MAG serving the node, asked only for context it does not
/// hold (an IPv4 home address and router for an IPv6-only node), answers Code 131 with no
/// context and neither forwards nor holds the node's traffic; asked for that and for its
/// prefix, it sends what it holds (Code 6).
#[test]
fn rfc5949_4_1_a_served_node_whose_requested_context_is_not_held_gets_code_131() {
    let mut sim = node_at_first_mag(FastHandoverMode::Reactive);
    let id = nai(1);
    let l = ll(1);
    let datapath = sim.mag_datapaths[0].clone();
    let mut buf = [0u8; 8];
    let only_ipv4 = context_request(
        &[
            OptionType::Ipv4HomeAddressRequest,
            OptionType::Ipv4DefaultRouterAddress,
        ],
        &mut buf,
    );
    let hacks = request_hi(
        &mut sim,
        50,
        HiFlags::P | HiFlags::U | HiFlags::F,
        &[
            nai_opt(id.as_bytes()),
            MobilityOption::MnLinkLayerIdentifier(l.as_bytes()),
            only_ipv4,
        ],
    );
    assert_eq!(hacks.len(), 1, "{hacks:?}");
    assert_eq!(hacks[0].code, HackCode::RequestedContextNotAvailable);
    assert_eq!(hacks[0].sequence, 50);
    assert_eq!(hacks[0].options, 1, "only the MN-ID: {:?}", hacks[0]);
    assert!(sim.mags[0].handover(&l).is_none(), "no forwarding, no hold");
    assert_eq!(sim.mag_datapaths[0], datapath);
    assert!(sim.mags[0].binding(&id).unwrap().is_bound());

    let mut buf = [0u8; 8];
    let with_prefix = context_request(
        &[
            OptionType::Ipv4HomeAddressRequest,
            OptionType::HomeNetworkPrefix,
        ],
        &mut buf,
    );
    let hacks = request_hi(
        &mut sim,
        51,
        HiFlags::P | HiFlags::U,
        &[
            nai_opt(id.as_bytes()),
            MobilityOption::MnLinkLayerIdentifier(l.as_bytes()),
            with_prefix,
        ],
    );
    assert_eq!(hacks.len(), 1, "{hacks:?}");
    assert_eq!(hacks[0].code, HackCode::AllAvailableContextTransferred);
    assert_eq!(hacks[0].prefixes, prefixes_at(&sim, 0, 1));

    // A request naming only the MN-ID names context held (the MN-ID is always sent).
    let mut buf = [0u8; 8];
    let only_mn_id = context_request(&[OptionType::MobileNodeIdentifier], &mut buf);
    let hacks = request_hi(
        &mut sim,
        52,
        HiFlags::P | HiFlags::U,
        &[
            nai_opt(id.as_bytes()),
            MobilityOption::MnLinkLayerIdentifier(l.as_bytes()),
            only_mn_id,
        ],
    );
    assert_eq!(hacks.len(), 1, "{hacks:?}");
    assert_eq!(hacks[0].code, HackCode::AllAvailableContextTransferred);
}

/// A request HI (Code 0) from MAG 1 to MAG 0 with `flags` and `opts`: the HAcks MAG 0 sent
/// back within 5 ms.
fn request_hi(sim: &mut Sim, seq: u16, flags: HiFlags, opts: &[MobilityOption<'_>]) -> Vec<Hack> {
    let from = sim.sent.len();
    sim.inject(hi(
        mag_addr(1),
        mag_addr(0),
        seq,
        flags,
        HiCode::Default,
        opts,
    ));
    sim.run_for(Duration::from_millis(5));
    hacks_since(sim, 0, from)
}

/// A Handover Initiate with a context (Code 3) from the previous MAG, as it would send it,
/// with `prefix` and `link_layer` when given.
fn context_hi(
    seq: u16,
    id: &[u8],
    prefix: Option<Ipv6Net>,
    link_layer: Option<LinkLayerAddress>,
) -> Packet {
    let lma = MobilityOption::LmaAddress(LmaAddress::V6(lma_addr()));
    let mut opts = vec![nai_opt(id)];
    opts.extend(prefix.map(MobilityOption::HomeNetworkPrefix));
    opts.push(lma);
    let l = link_layer.map(|l| l.as_bytes().to_vec());
    opts.extend(l.as_deref().map(MobilityOption::MnLinkLayerIdentifier));
    hi(
        mag_addr(0),
        mag_addr(1),
        seq,
        HiFlags::P | HiFlags::F | HiFlags::U,
        HiCode::AllAvailableContextTransferred,
        &opts,
    )
}

/// RFC 5949 §4.1: the context is "the HNP(s) and/or IPv4-MN-HoA" and the MN-LL-ID, which
/// the new MAG needs to serve the node before it registers. A context HI without any home
/// network prefix or IPv4 home address, or without the MN-LL-ID, gets Code 131 with the
/// MN-ID alone, and the new MAG expects no node and buffers nothing; the same HI with both
/// gets Code 5.
#[test]
fn rfc5949_4_1_a_context_without_prefixes_or_mn_ll_id_gets_code_131() {
    let mut sim = node_at_first_mag(FastHandoverMode::Predictive);
    let p = prefixes_at(&sim, 0, 1)[0];
    let id = nai(1);
    let datapath = sim.mag_datapaths[1].clone();
    for (seq, prefix, link_layer) in [(21, None, Some(ll(1))), (22, Some(p), None)] {
        let from = sim.sent.len();
        sim.inject(context_hi(seq, id.as_bytes(), prefix, link_layer));
        sim.run_for(Duration::from_millis(5));
        let hacks = hacks_since(&sim, 1, from);
        assert_eq!(hacks.len(), 1, "{seq}: {hacks:?}");
        let h = &hacks[0];
        assert_eq!(h.code, HackCode::RequestedContextNotAvailable, "{seq}");
        assert_eq!((h.src, h.dst, h.sequence), (mag_addr(1), mag_addr(0), seq));
        assert!(h.flags.contains(HackFlags::P));
        assert_eq!(h.mn_id, Some((MN_ID_SUBTYPE_NAI, id.as_bytes().to_vec())));
        assert_eq!(h.options, 1, "{seq}: {h:?}");
        assert!(sim.mags[1].binding(&nai(1)).is_none(), "{seq}");
        assert!(sim.mags[1].handover(&ll(1)).is_none(), "{seq}");
        assert_eq!(sim.mag_datapaths[1], datapath, "{seq}");
    }
    // With both, the context is taken.
    let from = sim.sent.len();
    sim.inject(context_hi(23, id.as_bytes(), Some(p), Some(ll(1))));
    sim.run_for(Duration::from_millis(5));
    let hacks = hacks_since(&sim, 1, from);
    assert_eq!(hacks.len(), 1, "{hacks:?}");
    assert_eq!(hacks[0].code, HackCode::ContextTransferAccepted);
    assert!(sim.mags[1].binding(&nai(1)).is_some());
    assert!(sim.mag_datapaths[1].buffering.contains(&IpNet::from(p)));
}

// ------------------------------------------------------------------ RFC 5949 §4.2

/// RFC 5949 §4.2: a MAG that cannot serve an HI answers at once with an error HAck "and no
/// tunnelling". With fast handovers off, both a new MAG's request for a node this MAG
/// serves and a previous MAG's context get Code 129 (Administratively prohibited), with P
/// set, the MN-ID copied and no context; nothing is buffered or forwarded and no node is
/// expected.
#[test]
fn rfc5949_4_2_with_fast_handovers_off_an_hi_gets_code_129_and_no_tunnel() {
    let mut sim = node_at_first_mag(FastHandoverMode::Off);
    let p = prefixes_at(&sim, 0, 1)[0];
    let id = nai(1);
    let l = ll(1);
    let before = sim.mag_datapaths.clone();

    // To the MAG serving the node: a request asking for the context and the packets.
    let mut buf = [0u8; 8];
    let cr = context_request(
        &[
            OptionType::HomeNetworkPrefix,
            OptionType::MnLinkLayerIdentifier,
        ],
        &mut buf,
    );
    let from = sim.sent.len();
    sim.inject(hi(
        mag_addr(1),
        mag_addr(0),
        5,
        HiFlags::P | HiFlags::U | HiFlags::F,
        HiCode::Default,
        &[
            nai_opt(id.as_bytes()),
            MobilityOption::MnLinkLayerIdentifier(l.as_bytes()),
            cr,
        ],
    ));
    // To the other MAG: a context.
    sim.inject(context_hi(6, id.as_bytes(), Some(p), Some(l)));
    sim.run_for(Duration::from_millis(5));

    for (mag, seq) in [(0, 5), (1, 6)] {
        let hacks = hacks_since(&sim, mag, from);
        assert_eq!(hacks.len(), 1, "MAG {mag}: {hacks:?}");
        let h = &hacks[0];
        assert_eq!(h.code, HackCode::AdministrativelyProhibited, "MAG {mag}");
        assert_eq!(h.sequence, seq);
        assert!(h.flags.contains(HackFlags::P));
        assert_eq!(h.mn_id, Some((MN_ID_SUBTYPE_NAI, id.as_bytes().to_vec())));
        assert_eq!(h.options, 1, "MAG {mag}: {h:?}");
        assert!(h.prefixes.is_empty() && h.lma.is_none() && h.mn_ll_id.is_none() && !h.ipv4);
    }
    assert_eq!(sim.mag_datapaths, before);
    assert!(sim.mags[0].binding(&nai(1)).unwrap().is_bound());
    assert!(sim.mags[0].handover(&l).is_none());
    assert!(sim.mags[1].binding(&nai(1)).is_none());
    // The node stays where it is, its binding the first MAG's.
    sim.run_for(Duration::from_secs(5));
    assert!(sim.mags[0].binding(&nai(1)).unwrap().is_bound());
    assert_eq!(
        sim.lma_datapath.get(&IpNet::from(p)),
        Some(&pmip::sim::Downlink::Tunnel(mag_addr(0)))
    );
}

// ------------------------------------------------------------------ RFC 5949 §6.1.1

/// Sends `bad` (a request to MAG1 for node 1) and `bad_context` (a context to MAG2) and
/// checks that both MAGs dropped them: no HAck, a Dropped event, nothing changed.
fn assert_both_dropped(sim: &mut Sim, bad: Packet, bad_context: Packet) {
    let before = sim.mag_datapaths.clone();
    let dropped = (
        dropped_from(sim, 0, mag_addr(1)),
        dropped_from(sim, 1, mag_addr(0)),
    );
    sim.inject(bad);
    sim.inject(bad_context);
    // What the MAGs send from here on (the forged context went out as the first MAG's).
    let from = sim.sent.len();
    sim.run_for(Duration::from_millis(5));
    assert!(hacks_since(sim, 0, from).is_empty());
    assert!(hacks_since(sim, 1, from).is_empty());
    assert!(sent_by(sim, 0, from).is_empty());
    assert!(sent_by(sim, 1, from).is_empty());
    assert_eq!(dropped_from(sim, 0, mag_addr(1)), dropped.0 + 1);
    assert_eq!(dropped_from(sim, 1, mag_addr(0)), dropped.1 + 1);
    assert_eq!(sim.mag_datapaths, before);
    assert!(sim.mags[0].binding(&nai(1)).unwrap().is_bound());
    assert!(sim.mags[0].handover(&ll(1)).is_none());
    assert!(sim.mags[1].binding(&nai(1)).is_none());
}

/// A request for node 1 to MAG1 and a context of node 1 to MAG2, with `flags` and the
/// option `mn_id` in place of the node's NAI when given.
fn request_and_context(
    sim: &Sim,
    flags: HiFlags,
    mn_id: Option<MobilityOption<'_>>,
) -> (Packet, Packet) {
    let id = nai(1);
    let l = ll(1);
    let p = prefixes_at(sim, 0, 1)[0];
    let mn_id: Vec<MobilityOption<'_>> = match mn_id {
        Some(o) => vec![o],
        None => vec![nai_opt(id.as_bytes())],
    };
    let mut request = mn_id.clone();
    request.push(MobilityOption::MnLinkLayerIdentifier(l.as_bytes()));
    let mut context = mn_id;
    context.extend([
        MobilityOption::HomeNetworkPrefix(p),
        MobilityOption::LmaAddress(LmaAddress::V6(lma_addr())),
        MobilityOption::MnLinkLayerIdentifier(l.as_bytes()),
    ]);
    (
        hi(
            mag_addr(1),
            mag_addr(0),
            60,
            flags | HiFlags::U,
            HiCode::Default,
            &request,
        ),
        hi(
            mag_addr(0),
            mag_addr(1),
            61,
            flags | HiFlags::F | HiFlags::U,
            HiCode::AllAvailableContextTransferred,
            &context,
        ),
    )
}

/// RFC 5949 §6.1.1: the 'P' flag "MUST be set in all new message formats defined in this
/// document". An HI without it (RFC 5568's, which these MAGs do not implement) is dropped by
/// the MAG serving the node and by the other one alike: no HAck, no buffering, no context.
#[test]
fn rfc5949_6_1_1_an_hi_without_the_p_flag_is_dropped() {
    let mut sim = node_at_first_mag(FastHandoverMode::Predictive);
    let (a, b) = request_and_context(&sim, HiFlags::empty(), None);
    assert_both_dropped(&mut sim, a, b);
    // The same messages with P are answered.
    let (a, b) = request_and_context(&sim, HiFlags::P, None);
    let from = sim.sent.len();
    sim.inject(a);
    sim.inject(b);
    sim.run_for(Duration::from_millis(5));
    assert_eq!(hacks_since(&sim, 0, from).len(), 1);
    assert_eq!(hacks_since(&sim, 1, from).len(), 1);
}

/// RFC 5949 §6.1.1: the 'S' flag "MUST be set to zero in this specification". An HI with P
/// and S is dropped by both MAGs: no HAck, no buffering, no context.
#[test]
fn rfc5949_6_1_1_an_hi_with_the_s_flag_is_dropped() {
    let mut sim = node_at_first_mag(FastHandoverMode::Predictive);
    let (a, b) = request_and_context(&sim, HiFlags::P | HiFlags::S, None);
    assert_both_dropped(&mut sim, a, b);
}

/// RFC 5949 §6.1.1: "the mobile node identifier MUST be contained in the Mobile Node
/// Identifier option". An HI without one, or with an identifier that is no NAI (another
/// subtype), is dropped by both MAGs: no HAck, no buffering, no context.
#[test]
fn rfc5949_6_1_1_an_hi_without_a_mobile_node_identifier_is_dropped() {
    let mut sim = node_at_first_mag(FastHandoverMode::Predictive);
    // Without the option: the MN-LL-ID alone names the node.
    let l = ll(1);
    let p = prefixes_at(&sim, 0, 1)[0];
    let request = hi(
        mag_addr(1),
        mag_addr(0),
        70,
        HiFlags::P | HiFlags::U,
        HiCode::Default,
        &[MobilityOption::MnLinkLayerIdentifier(l.as_bytes())],
    );
    let context = hi(
        mag_addr(0),
        mag_addr(1),
        71,
        HiFlags::P | HiFlags::F | HiFlags::U,
        HiCode::AllAvailableContextTransferred,
        &[
            MobilityOption::HomeNetworkPrefix(p),
            MobilityOption::LmaAddress(LmaAddress::V6(lma_addr())),
            MobilityOption::MnLinkLayerIdentifier(l.as_bytes()),
        ],
    );
    assert_both_dropped(&mut sim, request, context);
    // An identifier of another subtype than the NAI.
    let id = nai(1);
    let other = MobilityOption::MobileNodeIdentifier {
        subtype: 99,
        id: id.as_bytes(),
    };
    let (a, b) = request_and_context(&sim, HiFlags::P, Some(other));
    assert_both_dropped(&mut sim, a, b);
}

// ------------------------------------------------------------------ RFC 5845

/// A Proxy Binding Update for `node` from MAG `mag` to the LMA.
#[derive(Debug, Clone, Copy)]
struct Pbu {
    mag: usize,
    node: u16,
    flags: BuFlags,
    seq: u16,
    lifetime_s: u32,
    prefix: Ipv6Net,
    handoff: HandoffIndicator,
    /// The GRE Key option, with or without a key.
    gre: Option<Option<u32>>,
}

impl Pbu {
    /// A registration or refresh for an hour, with A and P, without a GRE Key option.
    fn new(mag: usize, node: u16, seq: u16, prefix: Ipv6Net, handoff: HandoffIndicator) -> Self {
        Pbu {
            mag,
            node,
            flags: BuFlags::A | BuFlags::P,
            seq,
            lifetime_s: 3600,
            prefix,
            handoff,
            gre: None,
        }
    }

    /// The message, timestamped with `sim`'s clock.
    fn packet(&self, sim: &Sim) -> Packet {
        let id = nai(self.node);
        let l = ll(self.node);
        let mut opts = vec![
            nai_opt(id.as_bytes()),
            MobilityOption::HomeNetworkPrefix(self.prefix),
            MobilityOption::HandoffIndicator(self.handoff),
            MobilityOption::AccessTechnologyType(AccessTechnologyType::Ieee8023),
            MobilityOption::MnLinkLayerIdentifier(l.as_bytes()),
            MobilityOption::Timestamp(Timestamp::from_wall_clock(sim.wall())),
        ];
        opts.extend(self.gre.map(MobilityOption::GreKey));
        let m = Message::BindingUpdate(BindingUpdate {
            sequence: SequenceNumber(self.seq),
            flags: self.flags,
            lifetime: Lifetime::from_secs(self.lifetime_s),
            options: Options::List(&opts),
        });
        packet(mag_addr(self.mag), lma_addr(), &m)
    }
}

/// A Proxy Binding Acknowledgement as it went on the wire.
#[derive(Debug)]
struct Pba {
    dst: Ipv6Addr,
    status: Status,
    flags: BaFlags,
    sequence: u16,
    gre_key: Option<Option<u32>>,
    prefixes: Vec<Ipv6Net>,
}

/// The Binding Acknowledgements the LMA sent from the `from`th packet on.
fn pbas_since(sim: &Sim, from: usize) -> Vec<Pba> {
    sim.sent[from..]
        .iter()
        .filter(|(_, p)| p.src == lma_addr())
        .filter_map(|(_, p)| match p.message() {
            Some(Message::BindingAck(ba)) => {
                let pba = ProxyBindingAck::new(&ba).unwrap();
                Some(Pba {
                    dst: p.dst,
                    status: pba.status,
                    flags: pba.flags,
                    sequence: pba.sequence.0,
                    gre_key: pba.opts.gre_key,
                    prefixes: pba.home_network_prefixes().collect(),
                })
            }
            _ => None,
        })
        .collect()
}

/// Sends `p` to the LMA and returns its one answer.
fn answer(sim: &mut Sim, p: Packet) -> Pba {
    let from = sim.sent.len();
    sim.inject(p);
    sim.run_for(Duration::from_millis(20));
    let mut pbas = pbas_since(sim, from);
    assert_eq!(pbas.len(), 1, "{pbas:?}");
    pbas.remove(0)
}

fn answer_pbu(sim: &mut Sim, b: Pbu) -> Pba {
    let p = b.packet(sim);
    answer(sim, p)
}

/// RFC 5845 §3.3.2, §5.2: GRE encapsulation is not required here, so a PBU with the GRE
/// Key option that the LMA accepts gets status 2 (GRE_KEY_OPTION_NOT_REQUIRED), and "the
/// local mobility anchor MUST NOT include the GRE Key option in the Proxy Binding
/// Acknowledgement": at the initial registration (with or without a downlink key), at a
/// refresh, at a handoff to another MAG and at the de-registration. Without the option the
/// status is 0, and no GRE Key option either.
#[test]
fn rfc5845_5_2_a_pba_with_gre_key_option_not_required_carries_no_gre_key_option() {
    use HandoffIndicator as H;
    let mut sim = domain(2, 2);
    let zero = Ipv6Net::default();

    // Node 1: initial registration with a downlink key.
    let first = Pbu {
        gre: Some(Some(0xdead_beef)),
        ..Pbu::new(0, 1, 1, zero, H::AttachmentOverNewInterface)
    };
    let a = answer_pbu(&mut sim, first);
    assert_eq!(a.status, Status::GreKeyOptionNotRequired);
    assert!(a.status.is_accepted());
    assert_eq!(a.gre_key, None);
    assert!(a.flags.contains(BaFlags::P));
    assert_eq!(a.prefixes.len(), 1);
    let p = a.prefixes[0];
    assert_ne!(p, zero);

    // Node 2: initial registration with the option but no key.
    let a = answer_pbu(
        &mut sim,
        Pbu {
            gre: Some(None),
            ..Pbu::new(0, 2, 1, zero, H::AttachmentOverNewInterface)
        },
    );
    assert_eq!(
        (a.status, a.gre_key),
        (Status::GreKeyOptionNotRequired, None)
    );

    // Node 1: a refresh with a key, then one without the option.
    let a = answer_pbu(
        &mut sim,
        Pbu {
            gre: Some(Some(0xdead_beef)),
            ..Pbu::new(0, 1, 2, p, H::HandoffStateNotChanged)
        },
    );
    assert_eq!(
        (a.status, a.gre_key),
        (Status::GreKeyOptionNotRequired, None)
    );
    let a = answer_pbu(&mut sim, Pbu::new(0, 1, 3, p, H::HandoffStateNotChanged));
    assert_eq!((a.status, a.gre_key), (Status::Accepted, None));

    // Node 1 moves to the second MAG, which asks for GRE.
    let handoff = Pbu {
        gre: Some(Some(7)),
        ..Pbu::new(1, 1, 1, p, H::HandoffBetweenMags)
    };
    let a = answer_pbu(&mut sim, handoff);
    assert_eq!(a.dst, mag_addr(1));
    assert_eq!(
        (a.status, a.gre_key),
        (Status::GreKeyOptionNotRequired, None)
    );
    assert_eq!(a.prefixes, vec![p]);

    // And de-registers with the option.
    let a = answer_pbu(
        &mut sim,
        Pbu {
            seq: 2,
            lifetime_s: 0,
            ..handoff
        },
    );
    assert!(a.status.is_accepted(), "{a:?}");
    assert_eq!(a.gre_key, None);
}

/// RFC 5845 §7.2: "the local mobility anchor MUST NOT set the TLV-header format (T) flag
/// unless it was set in the Proxy Binding Update". A node's whole life with MAGs that never
/// set T (registration, refresh, handoff, de-registration), and PBUs the LMA refuses, get
/// PBAs without T.
#[test]
fn rfc5845_7_2_no_pba_sets_the_t_flag_when_the_pbu_did_not() {
    let mut sim = domain(2, 2);
    sim.attach(0, ll(1));
    sim.settle(Duration::from_secs(2));
    sim.mag_do(0, |m, now, wall| m.reregister_all(now, wall));
    sim.settle(Duration::from_secs(2));
    sim.detach(0, ll(1));
    sim.attach(1, ll(1));
    sim.settle(Duration::from_secs(2));
    sim.detach(1, ll(1));
    sim.run_for(Duration::from_secs(5));
    // Refused: a node the LMA does not know, and a prefix that is not the node's.
    let id = b"nobody@example.org";
    let stranger = Message::BindingUpdate(BindingUpdate {
        sequence: SequenceNumber(9),
        flags: BuFlags::A | BuFlags::P,
        lifetime: Lifetime::from_secs(3600),
        options: Options::List(&[
            nai_opt(id),
            MobilityOption::HomeNetworkPrefix(Ipv6Net::default()),
            MobilityOption::HandoffIndicator(HandoffIndicator::AttachmentOverNewInterface),
            MobilityOption::AccessTechnologyType(AccessTechnologyType::Ieee8023),
            MobilityOption::Timestamp(Timestamp::from_wall_clock(sim.wall())),
        ]),
    });
    let a = answer(&mut sim, packet(mag_addr(0), lma_addr(), &stranger));
    assert_eq!(a.status, Status::NotLmaForThisMobileNode);
    let foreign: Ipv6Net = "2001:db8:ee::/64".parse().unwrap();
    let a = answer_pbu(
        &mut sim,
        Pbu::new(
            0,
            2,
            1,
            foreign,
            HandoffIndicator::AttachmentOverNewInterface,
        ),
    );
    assert!(!a.status.is_accepted(), "{a:?}");

    let pbas = pbas_since(&sim, 0);
    let statuses: Vec<Status> = pbas.iter().map(|a| a.status).collect();
    assert!(statuses.len() >= 6, "{statuses:?}");
    assert!(statuses.iter().filter(|s| s.is_accepted()).count() >= 4);
    // No PBU had T.
    assert!(sim.sent.iter().all(|(_, p)| match p.message() {
        Some(Message::BindingUpdate(bu)) => !bu.flags.contains(BuFlags::T),
        _ => true,
    }));
    for a in &pbas {
        assert!(!a.flags.contains(BaFlags::T), "{a:?}");
    }
}

/// RFC 5845 §7.4: the LMA sets T in the PBA only if "it can accept the TLV-header UDP-based
/// encapsulation format. ... Otherwise, the local mobility anchor MUST NOT set the
/// TLV-header format (T) flag". This LMA has no UDP tunnelling: PBUs with T, with or without
/// the GRE Key option, are answered without T, and since GRE is not required the status is
/// 2, not 3 (GRE_TUNNELING_BUT_TLV_HEADER_NOT_SUPPORTED, which says GRE was negotiated).
#[test]
fn rfc5845_7_4_an_lma_without_tlv_header_tunnelling_never_sets_the_t_flag() {
    use HandoffIndicator as H;
    let mut sim = domain(1, 1);
    let apt = BuFlags::A | BuFlags::P | BuFlags::T;
    let first = Pbu {
        flags: apt,
        gre: Some(Some(42)),
        ..Pbu::new(0, 1, 1, Ipv6Net::default(), H::AttachmentOverNewInterface)
    };
    let a = answer_pbu(&mut sim, first);
    assert_eq!(a.status, Status::GreKeyOptionNotRequired);
    assert!(!a.flags.contains(BaFlags::T), "{a:?}");
    assert_eq!(a.gre_key, None);
    let p = a.prefixes[0];
    let refresh = Pbu {
        flags: apt,
        ..Pbu::new(0, 1, 2, p, H::HandoffStateNotChanged)
    };
    let a = answer_pbu(&mut sim, refresh);
    assert_eq!(a.status, Status::Accepted);
    assert!(!a.flags.contains(BaFlags::T), "{a:?}");
    assert_eq!(a.sequence, 2);
    let last = Pbu {
        seq: 3,
        lifetime_s: 0,
        gre: Some(None),
        ..refresh
    };
    let a = answer_pbu(&mut sim, last);
    assert!(a.status.is_accepted(), "{a:?}");
    assert!(!a.flags.contains(BaFlags::T), "{a:?}");
}
