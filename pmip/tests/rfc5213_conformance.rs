//! RFC 5213 rules the code keeps but no other test asserted, one test per rule, each named
//! after its section. The messages are read back with the crate's wire parser; PBUs are
//! built by hand where a MAG would not send them.

use core::time::Duration;
use std::net::Ipv6Addr;

use ipnet::{IpNet, Ipv6Net};
use pmip::cache::BindingState;
use pmip::config::FastHandoverMode;
use pmip::mag::{Attach, BulState, MagEvent};
use pmip::output::AccessLink;
use pmip::sim::{Downlink, Packet, Sim};
use pmip::time::Instant;
use pmip::wire::*;

mod common;
use common::*;

/// The options of a PBU or PBA, owned, in the order the message has them.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Opts {
    mn_id: Option<(u8, Vec<u8>)>,
    prefixes: Vec<Ipv6Net>,
    handoff_indicator: Option<HandoffIndicator>,
    access_technology_type: Option<AccessTechnologyType>,
    timestamp: Option<Timestamp>,
    mn_link_layer_id: Option<Vec<u8>>,
    link_local_address: Option<Ipv6Addr>,
    alternate_care_of_address: Option<Ipv6Addr>,
}

fn opts_of(options: &Options<'_>) -> Opts {
    let c = CommonOptions::collect(options).expect("no repeated option");
    Opts {
        mn_id: c.mn_id.map(|(s, id)| (s, id.to_vec())),
        prefixes: options
            .iter()
            .filter_map(|o| match o {
                MobilityOption::HomeNetworkPrefix(p) => Some(p),
                _ => None,
            })
            .collect(),
        handoff_indicator: c.handoff_indicator,
        access_technology_type: c.access_technology_type,
        timestamp: c.timestamp,
        mn_link_layer_id: c.mn_link_layer_id.map(<[u8]>::to_vec),
        link_local_address: c.link_local_address,
        alternate_care_of_address: c.alternate_care_of_address,
    }
}

/// A Proxy Binding Update as sent.
#[derive(Debug, Clone)]
struct Pbu {
    at: Instant,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    flags: BuFlags,
    sequence: SequenceNumber,
    lifetime: Lifetime,
    opts: Opts,
}

/// A Proxy Binding Acknowledgement as sent.
#[derive(Debug, Clone)]
struct Pba {
    at: Instant,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    status: Status,
    flags: BaFlags,
    sequence: SequenceNumber,
    lifetime: Lifetime,
    opts: Opts,
}

/// Every Binding Update sent, dropped ones included, in order.
fn pbus(sim: &Sim) -> Vec<Pbu> {
    sim.sent
        .iter()
        .filter_map(|(at, p)| match p.message() {
            Some(Message::BindingUpdate(bu)) => Some(Pbu {
                at: *at,
                src: p.src,
                dst: p.dst,
                flags: bu.flags,
                sequence: bu.sequence,
                lifetime: bu.lifetime,
                opts: opts_of(&bu.options),
            }),
            _ => None,
        })
        .collect()
}

/// Every Binding Acknowledgement sent, dropped ones included, in order.
fn pbas(sim: &Sim) -> Vec<Pba> {
    sim.sent
        .iter()
        .filter_map(|(at, p)| match p.message() {
            Some(Message::BindingAck(ba)) => Some(Pba {
                at: *at,
                src: p.src,
                dst: p.dst,
                status: ba.status,
                flags: ba.flags,
                sequence: ba.sequence,
                lifetime: ba.lifetime,
                opts: opts_of(&ba.options),
            }),
            _ => None,
        })
        .collect()
}

fn last_pba(sim: &Sim) -> Pba {
    pbas(sim).pop().expect("a PBA")
}

/// A Binding Update with A and P from `src` to `dst`, its checksum over those addresses.
fn pbu_packet(
    src: Ipv6Addr,
    dst: Ipv6Addr,
    seq: u16,
    lifetime_s: u32,
    opts: &[MobilityOption<'_>],
) -> Packet {
    bu_packet(src, dst, BuFlags::A | BuFlags::P, seq, lifetime_s, opts)
}

/// Sends the LMA a PBU from MAG `mag` and lets it answer.
fn pbu_to_lma(sim: &mut Sim, mag: usize, seq: u16, lifetime_s: u32, opts: &[MobilityOption<'_>]) {
    sim.inject(pbu_packet(mag_addr(mag), lma_addr(), seq, lifetime_s, opts));
    sim.run_for(Duration::from_millis(5));
}

const ALL_ZERO_HNP: MobilityOption<'static> =
    MobilityOption::HomeNetworkPrefix(Ipv6Net::new_assert(Ipv6Addr::UNSPECIFIED, 0));

fn net(s: &str) -> Ipv6Net {
    s.parse().unwrap()
}

fn addr(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

// ------------------------------------------------------------------ LMA: §5.1, §5.3.5, §5.3.6

/// §5.1: the binding cache entry's timestamp "MUST be set to ALL_ZERO" when the PBU had no
/// Timestamp option (the sequence-number scheme), through registration, refresh and
/// de-registration, and so is the record a snapshot keeps.
#[test]
fn rfc5213_5_1_the_timestamp_field_is_all_zero_under_the_sequence_number_scheme() {
    let mut sim = sequence_domain(1, 1);
    sim.attach(0, ll(1));
    sim.settle(Duration::from_secs(2));
    assert!(bound_at(&sim, 0, 1));
    let check = |sim: &Sim| {
        let e = entry(sim, 1);
        assert_eq!(e.ordering.timestamp(), None);
        let last = pbus(sim).pop().unwrap();
        assert_eq!(last.opts.timestamp, None, "no Timestamp option sent");
        assert_eq!(
            e.ordering.sequence, last.sequence,
            "ordered by the sequence"
        );
        let snap = sim.lma.snapshot(sim.now, sim.wall());
        assert_eq!(snap.bindings.len(), 1);
        assert_eq!(snap.bindings[0].last_timestamp, None);
    };
    check(&sim);
    sim.run_for(Duration::from_secs(10));
    sim.mag_do(0, |m, now, wall| m.reregister_all(now, wall));
    sim.settle(Duration::from_secs(2));
    assert_eq!(last_pba(&sim).status, Status::Accepted);
    check(&sim);
    sim.detach(0, ll(1));
    sim.run_for(Duration::from_millis(10));
    assert_eq!(entry(&sim, 1).state(), BindingState::Deregistering);
    check(&sim);
}

/// §5.5 rules 6 and 8 in a domain using timestamps: a PBU without a Timestamp option (the LMA
/// falls back to sequence numbers for it) does not make an older timestamp acceptable again:
/// the entry keeps the highest timestamp accepted, and a PBU older than it gets 157.
#[test]
fn rfc5213_5_5_a_pbu_without_a_timestamp_does_not_reopen_older_timestamps() {
    let mut sim = domain(1, 1);
    sim.attach(0, ll(1));
    sim.settle(Duration::from_secs(2));
    let p = entry(&sim, 1).prefixes.as_slice()[0];
    let id = nai(1);
    let l = ll(1);
    let refresh = |ts: Option<Timestamp>| {
        let mut o = vec![
            mn_id_opt(id.as_bytes()),
            MobilityOption::HomeNetworkPrefix(p),
            hi(HandoffIndicator::HandoffStateNotChanged),
            ETH,
            MobilityOption::MnLinkLayerIdentifier(l.as_bytes()),
        ];
        o.extend(ts.map(MobilityOption::Timestamp));
        o
    };
    let mut seq = entry(&sim, 1).ordering.sequence.0;
    let mut send = |sim: &mut Sim, ts: Option<Timestamp>| {
        seq = seq.wrapping_add(1);
        pbu_to_lma(sim, 0, seq, 3600, &refresh(ts));
        last_pba(sim).status
    };
    sim.run_for(Duration::from_secs(1));
    let older = Timestamp::from_wall_clock(sim.wall());
    let newer = Timestamp::from_wall_clock(sim.wall() + Duration::from_millis(100));
    assert_eq!(send(&mut sim, Some(newer)), Status::Accepted);
    assert_eq!(
        send(&mut sim, Some(older)),
        Status::TimestampLowerThanPrevAccepted
    );
    assert_eq!(send(&mut sim, None), Status::Accepted);
    assert_eq!(entry(&sim, 1).ordering.timestamp(), Some(newer));
    assert_eq!(
        send(&mut sim, Some(older)),
        Status::TimestampLowerThanPrevAccepted,
        "an older timestamp accepted after a PBU without one"
    );
}

/// §5.3.5: an accepted de-registration is answered with a PBA of status 0 (and lifetime 0),
/// built by §5.3.6 from the de-registration: the MAG then removes its entry at once, without
/// waiting out INITIAL_BINDACK_TIMEOUT.
#[test]
fn rfc5213_5_3_5_an_accepted_deregistration_is_answered_with_status_0() {
    let mut sim = domain(1, 1);
    sim.attach(0, ll(1));
    sim.settle(Duration::from_secs(2));
    let p = entry(&sim, 1).prefixes.as_slice()[0];
    sim.run_for(Duration::from_secs(1));
    let detached = sim.now;
    sim.detach(0, ll(1));
    sim.run_for(Duration::from_millis(10));
    let dereg = pbus(&sim).pop().unwrap();
    assert!(dereg.lifetime.is_zero());
    let pba = last_pba(&sim);
    assert!(pba.at > dereg.at);
    assert_eq!(pba.status, Status::Accepted);
    assert!(pba.flags.contains(BaFlags::P));
    assert!(pba.lifetime.is_zero());
    assert_eq!(pba.sequence, dereg.sequence);
    assert_eq!(pba.dst, mag_addr(0));
    assert_eq!(
        pba.opts.mn_id,
        Some((MN_ID_SUBTYPE_NAI, nai(1).into_bytes()))
    );
    assert_eq!(pba.opts.prefixes, vec![p]);
    assert_eq!(
        pba.opts.handoff_indicator,
        Some(HandoffIndicator::HandoffStateUnknown)
    );
    assert_eq!(
        pba.opts.access_technology_type,
        dereg.opts.access_technology_type
    );
    assert_eq!(pba.opts.timestamp, dereg.opts.timestamp);
    assert_eq!(pba.opts.mn_link_layer_id, dereg.opts.mn_link_layer_id);
    assert_eq!(entry(&sim, 1).state(), BindingState::Deregistering);
    // The MAG took the PBA as the end of the binding: gone a round trip after the detach.
    assert!(sim.mags[0].binding(&nai(1)).is_none());
    let gone = sim
        .mag_events
        .iter()
        .find(|(_, _, e)| matches!(e, MagEvent::Deregistered { .. }))
        .map(|(t, _, _)| *t)
        .unwrap();
    assert!(gone - detached < Duration::from_millis(10));
}

/// §5.3.6: the PBA's source is the PBU's destination and its destination the PBU's source,
/// for an LMA reached at another of its addresses, for a refusal, and for a PBU whose
/// Alternate Care-of Address names another proxy-CoA than its source.
#[test]
fn rfc5213_5_3_6_the_pba_goes_from_the_pbus_destination_to_the_pbus_source() {
    let mut sim = domain(1, 2);
    let other_lma_addr = addr("2001:db8:ffff::2");
    let id1 = nai(1);
    let l1 = ll(1);
    let ask = |sim: &Sim, id: &[u8], l: &[u8]| -> Vec<u8> {
        let opts = [
            mn_id_opt(id),
            ALL_ZERO_HNP,
            hi(HandoffIndicator::AttachmentOverNewInterface),
            ETH,
            ts_now(sim),
            MobilityOption::MnLinkLayerIdentifier(l),
        ];
        pbu_packet(mag_addr(0), other_lma_addr, 1, 3600, &opts).bytes
    };
    // Accepted, sent to the LMA's other address.
    let bytes = ask(&sim, id1.as_bytes(), l1.as_bytes());
    sim.lma_do(|l, now, wall| l.handle_message(now, wall, mag_addr(0), other_lma_addr, &bytes));
    let pba = last_pba(&sim);
    assert_eq!(pba.status, Status::Accepted);
    assert_eq!((pba.src, pba.dst), (other_lma_addr, mag_addr(0)));
    // Refused (an unknown node), the same way.
    sim.run_for(Duration::from_millis(5));
    let bytes = ask(&sim, b"nobody@example.org", &[2, 0, 0, 0, 0, 99]);
    sim.lma_do(|l, now, wall| l.handle_message(now, wall, mag_addr(0), other_lma_addr, &bytes));
    let pba = last_pba(&sim);
    assert_eq!(pba.status, Status::NotLmaForThisMobileNode);
    assert_eq!((pba.src, pba.dst), (other_lma_addr, mag_addr(0)));
    // An Alternate Care-of Address: the binding's proxy-CoA, not the PBA's destination.
    let alternate = addr("2001:db8:1::99");
    let id2 = nai(2);
    let l2 = ll(2);
    let opts = [
        mn_id_opt(id2.as_bytes()),
        ALL_ZERO_HNP,
        hi(HandoffIndicator::AttachmentOverNewInterface),
        ETH,
        ts_now(&sim),
        MobilityOption::MnLinkLayerIdentifier(l2.as_bytes()),
        MobilityOption::AlternateCareOfAddress(alternate),
    ];
    pbu_to_lma(&mut sim, 0, 2, 3600, &opts);
    let pba = last_pba(&sim);
    assert_eq!(pba.status, Status::Accepted);
    assert_eq!((pba.src, pba.dst), (lma_addr(), mag_addr(0)));
    let e = entry(&sim, 2);
    assert_eq!(e.proxy_coa, alternate);
    assert_eq!(
        sim.lma_datapath.get(&IpNet::from(e.prefixes.as_slice()[0])),
        Some(&Downlink::Tunnel(alternate))
    );
}

/// §5.3.6: a rejected PBA carries every Home Network Prefix option of the request, with its
/// value, in order; a request without one gets a single ALL_ZERO option.
#[test]
fn rfc5213_5_3_6_a_rejected_pba_carries_the_requests_prefixes_or_all_zero() {
    let mut sim = domain(1, 1);
    let id = nai(1);
    let l = ll(1);
    // Two prefixes that are not the LMA's: 155.
    let (a, b) = (net("2001:db8:999::/64"), net("2001:db8:998::/64"));
    let opts = [
        mn_id_opt(id.as_bytes()),
        MobilityOption::HomeNetworkPrefix(a),
        MobilityOption::HomeNetworkPrefix(b),
        hi(HandoffIndicator::AttachmentOverNewInterface),
        ETH,
        ts_now(&sim),
        MobilityOption::MnLinkLayerIdentifier(l.as_bytes()),
    ];
    pbu_to_lma(&mut sim, 0, 1, 3600, &opts);
    let pba = last_pba(&sim);
    assert_eq!(pba.status, Status::NotAuthorizedForHomeNetworkPrefix);
    assert_eq!(pba.opts.prefixes, vec![a, b]);
    // No prefix option at all: 158, with one ALL_ZERO prefix.
    sim.run_for(Duration::from_millis(5));
    let opts = [
        mn_id_opt(id.as_bytes()),
        hi(HandoffIndicator::AttachmentOverNewInterface),
        ETH,
        ts_now(&sim),
        MobilityOption::MnLinkLayerIdentifier(l.as_bytes()),
    ];
    pbu_to_lma(&mut sim, 0, 2, 3600, &opts);
    let pba = last_pba(&sim);
    assert_eq!(pba.status, Status::MissingHomeNetworkPrefixOption);
    assert_eq!(pba.opts.prefixes.len(), 1);
    assert!(pba.opts.prefixes[0].addr().is_unspecified());
    // An ALL_ZERO request refused for another reason (an unknown node, 153) gets it back.
    sim.run_for(Duration::from_millis(5));
    let requested = net("::/64");
    let opts = [
        mn_id_opt(b"nobody@example.org"),
        MobilityOption::HomeNetworkPrefix(requested),
        hi(HandoffIndicator::AttachmentOverNewInterface),
        ETH,
        ts_now(&sim),
    ];
    pbu_to_lma(&mut sim, 0, 3, 3600, &opts);
    let pba = last_pba(&sim);
    assert_eq!(pba.status, Status::NotLmaForThisMobileNode);
    assert_eq!(pba.opts.prefixes, vec![requested]);
    assert!(sim.lma.cache().is_empty());
}

/// §5.3.6: the mandatory options of a PBA answering a PBU that lacks them: a zero-length
/// MN-ID, Handoff Indicator 0 and Access Technology Type 0.
#[test]
fn rfc5213_5_3_6_mandatory_options_absent_from_the_pbu_are_zero_in_the_pba() {
    let mut sim = domain(1, 1);
    let id = nai(1);
    let opts = [ALL_ZERO_HNP, ts_now(&sim)];
    pbu_to_lma(&mut sim, 0, 1, 3600, &opts);
    let pba = last_pba(&sim);
    assert_eq!(pba.status, Status::MissingMnIdentifierOption);
    assert_eq!(pba.opts.mn_id, Some((MN_ID_SUBTYPE_NAI, Vec::new())));
    assert_eq!(pba.opts.handoff_indicator, Some(HandoffIndicator::Reserved));
    assert_eq!(
        pba.opts.access_technology_type,
        Some(AccessTechnologyType::Reserved)
    );
    sim.run_for(Duration::from_millis(5));
    let opts = [mn_id_opt(id.as_bytes()), ALL_ZERO_HNP, ts_now(&sim)];
    pbu_to_lma(&mut sim, 0, 2, 3600, &opts);
    let pba = last_pba(&sim);
    assert_eq!(pba.status, Status::MissingHandoffIndicatorOption);
    assert_eq!(
        pba.opts.mn_id,
        Some((MN_ID_SUBTYPE_NAI, id.clone().into_bytes()))
    );
    assert_eq!(pba.opts.handoff_indicator, Some(HandoffIndicator::Reserved));
    assert_eq!(
        pba.opts.access_technology_type,
        Some(AccessTechnologyType::Reserved)
    );
}

/// §5.3.6: the Timestamp, Mobile Node Link-layer Identifier and Link-local Address options
/// are in the PBA only when they were in the PBU, accepted or not; when present, the
/// link-layer identifier is the PBU's.
#[test]
fn rfc5213_5_3_6_optional_options_are_in_the_pba_only_when_in_the_pbu() {
    let mut sim = domain(1, 2);
    let (id1, id2) = (nai(1), nai(2));
    // No Timestamp, no MN-LL-ID, no Link-local Address: accepted (sequence numbers).
    let bare = [
        mn_id_opt(id1.as_bytes()),
        ALL_ZERO_HNP,
        hi(HandoffIndicator::AttachmentOverNewInterface),
        ETH,
    ];
    pbu_to_lma(&mut sim, 0, 1, 3600, &bare);
    let pba = last_pba(&sim);
    assert_eq!(pba.status, Status::Accepted);
    assert_eq!(pba.opts.timestamp, None);
    assert_eq!(pba.opts.mn_link_layer_id, None);
    assert_eq!(pba.opts.link_local_address, None);
    assert_eq!(entry(&sim, 1).mn_link_layer_id, None);
    // The same, refused (no Access Technology Type, 162).
    pbu_to_lma(&mut sim, 0, 2, 3600, &bare[..3]);
    let pba = last_pba(&sim);
    assert_eq!(pba.status, Status::MissingAccessTechTypeOption);
    assert_eq!(pba.opts.timestamp, None);
    assert_eq!(pba.opts.mn_link_layer_id, None);
    assert_eq!(pba.opts.link_local_address, None);
    // With a Timestamp and an MN-LL-ID but no Link-local Address.
    let identifier = [2, 0, 0, 0, 0, 2];
    let opts = [
        mn_id_opt(id2.as_bytes()),
        ALL_ZERO_HNP,
        hi(HandoffIndicator::AttachmentOverNewInterface),
        ETH,
        ts_now(&sim),
        MobilityOption::MnLinkLayerIdentifier(&identifier),
    ];
    pbu_to_lma(&mut sim, 0, 3, 3600, &opts);
    let pba = last_pba(&sim);
    assert_eq!(pba.status, Status::Accepted);
    assert!(pba.opts.timestamp.is_some());
    assert_eq!(pba.opts.mn_link_layer_id, Some(identifier.to_vec()));
    assert_eq!(pba.opts.link_local_address, None);
}

/// §5.3.6: a rejected PBA copies the request's Link-local Address, ALL_ZERO or not; it never
/// generates one, nor takes the one a binding of the node holds.
#[test]
fn rfc5213_5_3_6_a_rejected_pba_copies_the_link_local_address() {
    let mut sim = domain(1, 1);
    let id = nai(1);
    let l = ll(1);
    let held = addr("fe80::1:2");
    let opts = [
        mn_id_opt(id.as_bytes()),
        ALL_ZERO_HNP,
        hi(HandoffIndicator::AttachmentOverNewInterface),
        ETH,
        ts_now(&sim),
        MobilityOption::MnLinkLayerIdentifier(l.as_bytes()),
        MobilityOption::LinkLocalAddress(held),
    ];
    pbu_to_lma(&mut sim, 0, 1, 3600, &opts);
    assert_eq!(last_pba(&sim).status, Status::Accepted);
    assert_eq!(entry(&sim, 1).link_local_address, Some(held));
    let p = entry(&sim, 1).prefixes.as_slice()[0];
    for (seq, asked) in [(2, Ipv6Addr::UNSPECIFIED), (3, addr("fe80::ab:cd"))] {
        // An unknown node (153).
        sim.run_for(Duration::from_millis(5));
        let opts = [
            mn_id_opt(b"nobody@example.org"),
            ALL_ZERO_HNP,
            hi(HandoffIndicator::AttachmentOverNewInterface),
            ETH,
            ts_now(&sim),
            MobilityOption::LinkLocalAddress(asked),
        ];
        pbu_to_lma(&mut sim, 0, seq, 3600, &opts);
        let pba = last_pba(&sim);
        assert_eq!(pba.status, Status::NotLmaForThisMobileNode);
        assert_eq!(pba.opts.link_local_address, Some(asked));
        // The registered node, refused (no Access Technology Type, 162).
        sim.run_for(Duration::from_millis(5));
        let opts = [
            mn_id_opt(id.as_bytes()),
            MobilityOption::HomeNetworkPrefix(p),
            hi(HandoffIndicator::HandoffStateNotChanged),
            ts_now(&sim),
            MobilityOption::MnLinkLayerIdentifier(l.as_bytes()),
            MobilityOption::LinkLocalAddress(asked),
        ];
        pbu_to_lma(&mut sim, 0, seq, 3600, &opts);
        let pba = last_pba(&sim);
        assert_eq!(pba.status, Status::MissingAccessTechTypeOption);
        assert_eq!(pba.opts.link_local_address, Some(asked));
        assert_eq!(entry(&sim, 1).link_local_address, Some(held), "unchanged");
    }
}

/// §5.3.6: an accepted NON_ZERO Link-local Address is copied into the PBA and into the
/// binding cache entry, which later ALL_ZERO requests get back; an ALL_ZERO request without
/// an entry gets a generated address, stored as well.
#[test]
fn rfc5213_5_3_6_a_non_zero_link_local_address_is_copied_and_stored() {
    let mut sim = domain(1, 2);
    let (id1, id2) = (nai(1), nai(2));
    let (l1, l2) = (ll(1), ll(2));
    let first = addr("fe80::a:b");
    let register = |sim: &mut Sim, seq: u16, lla: Ipv6Addr, hnp: MobilityOption<'_>, h| {
        sim.run_for(Duration::from_millis(5));
        let opts = [
            mn_id_opt(id1.as_bytes()),
            hnp,
            hi(h),
            ETH,
            ts_now(sim),
            MobilityOption::MnLinkLayerIdentifier(l1.as_bytes()),
            MobilityOption::LinkLocalAddress(lla),
        ];
        pbu_to_lma(sim, 0, seq, 3600, &opts);
        let pba = last_pba(sim);
        assert_eq!(pba.status, Status::Accepted);
        pba.opts.link_local_address
    };
    let got = register(
        &mut sim,
        1,
        first,
        ALL_ZERO_HNP,
        HandoffIndicator::AttachmentOverNewInterface,
    );
    assert_eq!(got, Some(first));
    assert_eq!(entry(&sim, 1).link_local_address, Some(first));
    let hnp = MobilityOption::HomeNetworkPrefix(entry(&sim, 1).prefixes.as_slice()[0]);
    // A refresh asking with ALL_ZERO gets the stored one.
    let refresh = HandoffIndicator::HandoffStateNotChanged;
    let got = register(&mut sim, 2, Ipv6Addr::UNSPECIFIED, hnp, refresh);
    assert_eq!(got, Some(first));
    // A refresh with another NON_ZERO address: copied and stored.
    let second = addr("fe80::c:d");
    let got = register(&mut sim, 3, second, hnp, refresh);
    assert_eq!(got, Some(second));
    assert_eq!(entry(&sim, 1).link_local_address, Some(second));
    let got = register(&mut sim, 4, Ipv6Addr::UNSPECIFIED, hnp, refresh);
    assert_eq!(got, Some(second));
    // ALL_ZERO for a new session: generated, link-local, and stored.
    let opts = [
        mn_id_opt(id2.as_bytes()),
        ALL_ZERO_HNP,
        hi(HandoffIndicator::AttachmentOverNewInterface),
        ETH,
        ts_now(&sim),
        MobilityOption::MnLinkLayerIdentifier(l2.as_bytes()),
        MobilityOption::LinkLocalAddress(Ipv6Addr::UNSPECIFIED),
    ];
    pbu_to_lma(&mut sim, 0, 5, 3600, &opts);
    let pba = last_pba(&sim);
    assert_eq!(pba.status, Status::Accepted);
    let generated = pba.opts.link_local_address.unwrap();
    assert!(generated.is_unicast_link_local(), "{generated}");
    assert_eq!(entry(&sim, 2).link_local_address, Some(generated));
}

/// §5.3.6: "the Type 2 Routing header MUST NOT be present". What the LMA hands its daemon
/// for a PBA is one Mobility Header and nothing else: its Payload Proto says no header
/// follows (IPPROTO_NONE), and its length is the whole of what is sent.
#[test]
fn rfc5213_5_3_6_the_pba_is_one_mobility_header_and_nothing_else() {
    let mut sim = domain(2, 1);
    sim.attach(0, ll(1));
    sim.settle(Duration::from_secs(2));
    sim.attach(1, ll(1));
    sim.settle(Duration::from_secs(2));
    sim.detach(1, ll(1));
    sim.settle(Duration::from_secs(2));
    let from_lma: Vec<&Packet> = sim
        .sent
        .iter()
        .map(|(_, p)| p)
        .filter(|p| p.src == lma_addr())
        .filter(|p| matches!(p.message(), Some(Message::BindingAck(_))))
        .collect();
    assert!(from_lma.len() >= 3, "{}", from_lma.len());
    for p in from_lma {
        let mh = MhPacket::new_checked(&p.bytes[..]).unwrap();
        assert_eq!(mh.payload_proto(), IPPROTO_NONE);
        assert_eq!(mh.total_len(), p.bytes.len());
        assert_eq!(mh.mh_type(), MhType::BindingAcknowledgement);
    }
}

// ------------------------------------------------------------------ MAG: §6.9

/// §6.9.1.1 rules 4-5: Handoff Indicator 3 only when the access network says the node comes
/// from another MAG (an attach hint, or a reactive fast handover's expected arrival); a node
/// whose attachment nothing explains gets 4, also when it did move between MAGs.
#[test]
fn rfc5213_6_9_1_1_handoff_indicator_3_only_when_known_else_4() {
    let hi_of_last_pbu_from = |sim: &Sim, mag: usize| {
        pbus(sim)
            .into_iter()
            .rfind(|p| p.src == mag_addr(mag))
            .and_then(|p| p.opts.handoff_indicator)
    };
    let mut sim = domain(3, 1);
    sim.attach(0, ll(1));
    sim.settle(Duration::from_secs(2));
    assert_eq!(
        hi_of_last_pbu_from(&sim, 0),
        Some(HandoffIndicator::HandoffStateUnknown)
    );
    // It moves without a word from the access network.
    sim.detach(0, ll(1));
    sim.run_for(Duration::from_millis(5));
    sim.attach(1, ll(1));
    sim.settle(Duration::from_secs(2));
    assert!(bound_at(&sim, 1, 1));
    assert_eq!(
        hi_of_last_pbu_from(&sim, 1),
        Some(HandoffIndicator::HandoffStateUnknown)
    );
    // The access network says it comes from another MAG.
    sim.attach_with(
        2,
        Attach {
            link_layer: ll(1),
            link: AccessLink(1),
            access_technology_type: None,
            handoff_hint: Some(HandoffIndicator::HandoffBetweenMags),
        },
    );
    sim.settle(Duration::from_secs(2));
    assert!(bound_at(&sim, 2, 1));
    assert_eq!(
        hi_of_last_pbu_from(&sim, 2),
        Some(HandoffIndicator::HandoffBetweenMags)
    );
    // A reactive fast handover: the new MAG was told the node comes from the previous one.
    let mut lc = lma_config(2, 1);
    lc.domain.fast_handover.mode = FastHandoverMode::Reactive;
    let cfgs = (0..2)
        .map(|i| {
            let mut c = mag_config(i, 1);
            c.domain.fast_handover.mode = FastHandoverMode::Reactive;
            c
        })
        .collect();
    let mut sim = Sim::new(lc, cfgs, 42);
    sim.attach(0, ll(1));
    sim.settle(Duration::from_secs(2));
    announce_move(&mut sim, FastHandoverMode::Reactive);
    sim.detach(0, ll(1));
    sim.attach(1, ll(1));
    sim.settle(Duration::from_secs(2));
    sim.run_for(Duration::from_millis(50));
    assert!(bound_at(&sim, 1, 1));
    assert_eq!(
        hi_of_last_pbu_from(&sim, 1),
        Some(HandoffIndicator::HandoffBetweenMags)
    );
    // No PBU of either scenario carried 2, which the MAG never knows.
    assert!(
        pbus(&sim)
            .iter()
            .all(|p| p.opts.handoff_indicator != Some(HandoffIndicator::HandoffBetweenInterfaces))
    );
}

/// `pba` re-encoded with `status` and `sequence`.
fn altered_pba(pba: &Packet, status: Status, sequence: SequenceNumber) -> Packet {
    let Some(Message::BindingAck(ba)) = pba.message() else {
        panic!("not a PBA")
    };
    let m = Message::BindingAck(BindingAck {
        status,
        sequence,
        ..ba
    });
    let mut bytes = vec![0u8; m.buffer_len()];
    m.emit_with_checksum(&mut bytes, &pba.src, &pba.dst)
        .unwrap();
    Packet {
        src: pba.src,
        dst: pba.dst,
        bytes,
    }
}

/// §6.9.1.2 rule 5: a PBA that matches no outstanding PBU is ignored: one for a node whose
/// binding is settled (even a refusal), and one whose sequence number is not the
/// outstanding PBU's.
#[test]
fn rfc5213_6_9_1_2_a_pba_for_no_outstanding_pbu_is_ignored() {
    let mut sim = domain(1, 1);
    // Registering: the LMA's PBA is held back, a copy with another sequence number goes.
    sim.drop = Some(Box::new(|p: &Packet| {
        matches!(p.message(), Some(Message::BindingAck(_)))
    }));
    sim.attach(0, ll(1));
    sim.run_for(Duration::from_millis(5));
    sim.drop = None;
    let held = last_pba_packet(&sim);
    let Some(Message::BindingAck(ba)) = held.message() else {
        panic!("not a PBA")
    };
    let seq = ba.sequence;
    sim.inject(altered_pba(
        &held,
        Status::Accepted,
        SequenceNumber(seq.0.wrapping_add(1)),
    ));
    sim.run_for(Duration::from_millis(5));
    assert_eq!(
        sim.mags[0].binding(&nai(1)).unwrap().state,
        BulState::Registering
    );
    assert!(sim.mag_datapaths[0].uplinks.is_empty());
    assert!(sim.router_advertisements.is_empty());
    let ignored = |sim: &Sim| {
        sim.mag_events_of(0)
            .filter(|e| {
                matches!(e, MagEvent::PbaIgnored { reason, .. } if reason.contains("outstanding"))
            })
            .count()
    };
    assert_eq!(ignored(&sim), 1);
    // The matching one registers the node.
    sim.inject(held.clone());
    sim.run_for(Duration::from_millis(5));
    assert!(bound_at(&sim, 0, 1));
    let p = sim.mags[0].binding(&nai(1)).unwrap().prefixes[0];
    // Bound: a refusal with the last PBU's own sequence number answers nothing outstanding.
    let ras = sim.router_advertisements.len();
    sim.inject(altered_pba(&held, Status::InsufficientResources, seq));
    sim.run_for(Duration::from_millis(5));
    assert_eq!(ignored(&sim), 2);
    assert_eq!(sim.mags[0].binding(&nai(1)).unwrap().state, BulState::Bound);
    assert!(sim.mag_datapaths[0].uplinks.contains_key(&IpNet::from(p)));
    assert_eq!(sim.router_advertisements.len(), ras, "no withdrawal");
    assert!(
        !sim.mag_events_of(0)
            .any(|e| matches!(e, MagEvent::Rejected { .. }))
    );
}

/// §6.9.1.2 rule 8: after TIMESTAMP_LOWER_THAN_PREV_ACCEPTED (157) the MAG registers again at
/// once, with the latest timestamp, and the node is served. Here the previous MAG's clock
/// runs 30 ms ahead, so the new MAG's first PBU is older than the de-registration accepted
/// just before.
#[test]
fn rfc5213_6_9_1_2_after_157_the_mag_registers_again_with_a_fresh_timestamp() {
    let mut sim = domain(2, 1);
    sim.latency = Duration::from_millis(10);
    sim.mag_clock_skew_ms[0] = 30;
    sim.attach(0, ll(1));
    sim.settle(Duration::from_secs(2));
    let p = entry(&sim, 1).prefixes.as_slice()[0];
    sim.detach(0, ll(1));
    sim.settle(Duration::from_secs(2));
    sim.attach(1, ll(1));
    sim.settle(Duration::from_secs(2));
    let refused = pbas(&sim)
        .into_iter()
        .find(|a| a.dst == mag_addr(1) && a.status == Status::TimestampLowerThanPrevAccepted)
        .expect("a 157 for the new MAG");
    let from_mag2: Vec<Pbu> = pbus(&sim)
        .into_iter()
        .filter(|p| p.src == mag_addr(1))
        .collect();
    assert!(from_mag2.len() >= 2, "{from_mag2:?}");
    let (first, again) = (&from_mag2[0], &from_mag2[1]);
    assert_eq!(refused.sequence, first.sequence);
    // Sent as the 157 arrived, not at the retransmission timer.
    assert_eq!(again.at, refused.at + sim.latency);
    assert!(again.opts.timestamp.unwrap() > first.opts.timestamp.unwrap());
    assert_ne!(again.sequence, first.sequence);
    assert!(again.lifetime > Lifetime::ZERO);
    assert!(bound_at(&sim, 1, 1));
    assert_eq!(sim.mags[1].binding(&nai(1)).unwrap().prefixes, vec![p]);
    assert_eq!(
        sim.lma_datapath.get(&IpNet::from(p)),
        Some(&Downlink::Tunnel(mag_addr(1)))
    );
}

/// §6.9.1.2 rule 10: after NOT_AUTHORIZED_FOR_HOME_NETWORK_PREFIX (155) the MAG does not ask
/// for the refused prefix again but for an allocation (one ALL_ZERO prefix), and never
/// advertises the refused one.
#[test]
fn rfc5213_6_9_1_2_after_155_the_mag_asks_for_an_allocation_not_the_same_prefix() {
    let refused = net("2001:db8:999::/64");
    let mut mc = mag_config(0, 1);
    // The MAG's profile names a prefix the LMA does not hold for the node.
    mc.mobile_nodes[0].home_network_prefixes = vec![refused];
    let mut sim = Sim::new(lma_config(1, 1), vec![mc], 42);
    sim.attach(0, ll(1));
    sim.settle(Duration::from_secs(2));
    let acks = pbas(&sim);
    assert_eq!(acks[0].status, Status::NotAuthorizedForHomeNetworkPrefix);
    let sent = pbus(&sim);
    assert_eq!(sent[0].opts.prefixes, vec![refused]);
    assert_eq!(sent[1].opts.prefixes.len(), 1);
    assert!(sent[1].opts.prefixes[0].addr().is_unspecified());
    assert!(bound_at(&sim, 0, 1));
    let p = entry(&sim, 1).prefixes.as_slice()[0];
    assert_ne!(p, refused);
    assert_eq!(sim.mags[0].binding(&nai(1)).unwrap().prefixes, vec![p]);
    // Refreshes ask for the assigned prefix, never the refused one again.
    let lifetime = sim.mags[0].binding(&nai(1)).unwrap().lifetime;
    sim.run_for(lifetime * 2);
    let later = pbus(&sim);
    assert!(later.len() >= 4, "{}", later.len());
    assert!(later[2..].iter().all(|p2| p2.opts.prefixes == vec![p]));
    assert!(bound_at(&sim, 0, 1));
    assert!(
        sim.router_advertisements
            .iter()
            .all(|(_, _, ra)| !ra.prefixes.contains(&refused))
    );
    assert!(
        !sim.mag_datapaths[0]
            .uplinks
            .contains_key(&IpNet::from(refused))
    );
}

/// §6.9.1.2 rule 3 with §5.5 and RFC 6275 §9.5.1: under the sequence-number scheme, a PBA
/// with status 135 carries the LMA's last accepted sequence number, and the MAG goes on
/// from it: its next PBU has the number after it and is accepted.
#[test]
fn rfc5213_6_9_1_2_after_135_the_mag_goes_on_from_the_lmas_sequence_number() {
    let mut sim = sequence_domain(1, 1);
    sim.attach(0, ll(1));
    sim.settle(Duration::from_secs(2));
    let p = entry(&sim, 1).prefixes.as_slice()[0];
    // The LMA accepts a refresh numbered well past the MAG's counter.
    let ahead = entry(&sim, 1).ordering.sequence.0.wrapping_add(1000);
    let id = nai(1);
    let l = ll(1);
    let opts = [
        mn_id_opt(id.as_bytes()),
        MobilityOption::HomeNetworkPrefix(p),
        hi(HandoffIndicator::HandoffStateNotChanged),
        ETH,
        MobilityOption::MnLinkLayerIdentifier(l.as_bytes()),
    ];
    pbu_to_lma(&mut sim, 0, ahead, 3600, &opts);
    assert_eq!(last_pba(&sim).status, Status::Accepted);
    assert_eq!(entry(&sim, 1).ordering.sequence, SequenceNumber(ahead));
    let from = pbus(&sim).len();
    sim.mag_do(0, |m, now, wall| m.reregister_all(now, wall));
    sim.settle(Duration::from_secs(2));
    let sent = pbus(&sim);
    let after = &sent[from..];
    assert_eq!(after.len(), 2, "{after:?}");
    let out_of_window = pbas(&sim)
        .into_iter()
        .find(|a| a.status == Status::SequenceNumberOutOfWindow)
        .expect("a 135");
    assert_eq!(out_of_window.sequence, SequenceNumber(ahead));
    assert_eq!(after[1].sequence, SequenceNumber(ahead).next());
    assert_eq!(last_pba(&sim).status, Status::Accepted);
    assert!(bound_at(&sim, 0, 1));
    assert_eq!(
        entry(&sim, 1).ordering.sequence,
        SequenceNumber(ahead).next()
    );
}

/// §6.9.1.4: the de-registration has lifetime 0, Handoff Indicator 4, a Home Network Prefix
/// option for each assigned prefix (not the ALL_ZERO of the first PBU), and otherwise the
/// options of the initial PBU.
#[test]
fn rfc5213_6_9_1_4_the_deregistration_has_handoff_indicator_4_and_the_assigned_prefixes() {
    let mut sim = domain(2, 1);
    sim.attach(0, ll(1));
    sim.settle(Duration::from_secs(2));
    // Moved in by a handoff the access network announced (3), then leaving.
    sim.attach_with(
        1,
        Attach {
            link_layer: ll(1),
            link: AccessLink(1),
            access_technology_type: None,
            handoff_hint: Some(HandoffIndicator::HandoffBetweenMags),
        },
    );
    sim.settle(Duration::from_secs(2));
    let p = entry(&sim, 1).prefixes.as_slice()[0];
    sim.run_for(Duration::from_secs(5));
    sim.detach(1, ll(1));
    sim.settle(Duration::from_secs(2));
    let from_mag2: Vec<Pbu> = pbus(&sim)
        .into_iter()
        .filter(|p| p.src == mag_addr(1))
        .collect();
    let (initial, dereg) = (&from_mag2[0], from_mag2.last().unwrap());
    assert!(initial.opts.prefixes[0].addr().is_unspecified());
    assert_eq!(
        initial.opts.handoff_indicator,
        Some(HandoffIndicator::HandoffBetweenMags)
    );
    assert!(dereg.lifetime.is_zero());
    assert_eq!(
        dereg.opts.handoff_indicator,
        Some(HandoffIndicator::HandoffStateUnknown)
    );
    assert_eq!(dereg.opts.prefixes, vec![p]);
    assert_eq!(dereg.opts.mn_id, initial.opts.mn_id);
    assert_eq!(
        dereg.opts.access_technology_type,
        initial.opts.access_technology_type
    );
    assert_eq!(dereg.opts.mn_link_layer_id, initial.opts.mn_link_layer_id);
    assert_eq!(
        dereg.opts.link_local_address,
        initial.opts.link_local_address
    );
    assert!(dereg.opts.timestamp.unwrap() > initial.opts.timestamp.unwrap());
    assert!(sim.mags[1].binding(&nai(1)).is_none());
}

/// §6.9.1.5: every PBU the MAG builds (registration, retransmission, refresh,
/// de-registration) goes from its proxy-CoA to the LMA with A and P set, is one Mobility
/// Header and nothing else (no Home Address option can ride with it), and names no other
/// proxy-CoA.
#[test]
fn rfc5213_6_9_1_5_every_pbu_has_a_and_p_and_goes_from_the_proxy_coa_to_the_lma() {
    let mut sim = domain(1, 1);
    let mut dropped = false;
    sim.drop = Some(Box::new(move |p: &Packet| {
        let pbu = matches!(p.message(), Some(Message::BindingUpdate(_)));
        let first = pbu && !dropped;
        dropped |= pbu;
        first
    }));
    sim.attach(0, ll(1));
    sim.settle(Duration::from_secs(5));
    let lifetime = sim.mags[0].binding(&nai(1)).unwrap().lifetime;
    sim.run_for(lifetime);
    sim.detach(0, ll(1));
    sim.settle(Duration::from_secs(2));
    let sent = pbus(&sim);
    assert!(sent.len() >= 4, "{sent:?}");
    let untimed = |p: &Pbu| Opts {
        timestamp: None,
        ..p.opts.clone()
    };
    assert_eq!(untimed(&sent[1]), untimed(&sent[0]), "a retransmission");
    assert!(sent[1].opts.timestamp > sent[0].opts.timestamp);
    assert!(sent.last().unwrap().lifetime.is_zero());
    for p in &sent {
        assert!(p.flags.contains(BuFlags::A), "{p:?}");
        assert!(p.flags.contains(BuFlags::P), "{p:?}");
        assert!(!p.flags.contains(BuFlags::H), "{p:?}");
        assert_eq!((p.src, p.dst), (mag_addr(0), lma_addr()));
        assert_eq!(p.opts.alternate_care_of_address, None);
    }
    for (_, p) in sim.sent.iter().filter(|(_, p)| p.src == mag_addr(0)) {
        let mh = MhPacket::new_checked(&p.bytes[..]).unwrap();
        assert_eq!(mh.payload_proto(), IPPROTO_NONE);
        assert_eq!(mh.total_len(), p.bytes.len());
    }
}

/// §6.9.4 rule 2: PBUs are retransmitted only while the node is attached: a detach during
/// the retransmissions of a registration, or of a refresh, ends them; what follows is one
/// de-registration, and the entry goes after INITIAL_BINDACK_TIMEOUT.
#[test]
fn rfc5213_6_9_4_a_detach_during_retransmissions_stops_them() {
    let pbus_lost = |p: &Packet| matches!(p.message(), Some(Message::BindingUpdate(_)));
    // A registration.
    let mut sim = domain(1, 1);
    sim.drop = Some(Box::new(pbus_lost));
    sim.attach(0, ll(1));
    sim.run_for(Duration::from_millis(1500));
    assert_eq!(pbus(&sim).len(), 2, "sent and retransmitted once");
    let from = pbus(&sim).len();
    sim.detach(0, ll(1));
    sim.run_for(Duration::from_millis(1100));
    assert!(sim.mags[0].binding(&nai(1)).is_none());
    sim.run_for(Duration::from_secs(600));
    let after: Vec<Pbu> = pbus(&sim).split_off(from);
    assert_eq!(after.len(), 1, "{after:?}");
    assert!(after[0].lifetime.is_zero());
    // A refresh.
    let mut sim = domain(1, 1);
    sim.attach(0, ll(1));
    sim.settle(Duration::from_secs(2));
    let lifetime = sim.mags[0].binding(&nai(1)).unwrap().lifetime;
    sim.drop = Some(Box::new(pbus_lost));
    let from = pbus(&sim).len();
    sim.run_for(lifetime * 8 / 10 + Duration::from_millis(1500));
    assert_eq!(
        pbus(&sim).len() - from,
        2,
        "refreshed and retransmitted once"
    );
    let from = pbus(&sim).len();
    sim.detach(0, ll(1));
    sim.run_for(Duration::from_secs(600));
    let after: Vec<Pbu> = pbus(&sim).split_off(from);
    assert_eq!(after.len(), 1, "{after:?}");
    assert!(after[0].lifetime.is_zero());
    assert!(sim.mags[0].binding(&nai(1)).is_none());
}

/// §6.9.2 rule 1: a Router Solicitation gets a Router Advertisement with the node's home
/// network prefix at once, but only once the registration is complete.
#[test]
fn rfc5213_6_9_2_a_router_solicitation_is_answered_once_registered() {
    let mut sim = domain(1, 1);
    let solicit = |sim: &mut Sim| {
        sim.mag_do(0, |m, now, wall| {
            m.handle_router_solicitation(now, wall, AccessLink(1), ll(1))
        })
    };
    sim.drop = Some(Box::new(|p: &Packet| {
        matches!(p.message(), Some(Message::BindingAck(_)))
    }));
    sim.attach(0, ll(1));
    sim.run_for(Duration::from_millis(5));
    solicit(&mut sim);
    assert!(sim.router_advertisements.is_empty(), "not registered yet");
    sim.drop = None;
    sim.settle(Duration::from_secs(5));
    assert!(bound_at(&sim, 0, 1));
    let p = sim.mags[0].binding(&nai(1)).unwrap().prefixes[0];
    // Between the periodic advertisements: the answer is the solicitation's.
    sim.run_for(Duration::from_secs(10));
    let before = sim.router_advertisements.len();
    solicit(&mut sim);
    assert_eq!(sim.router_advertisements.len(), before + 1);
    let (at, mag, ra) = sim.router_advertisements.last().unwrap();
    assert_eq!((*at, *mag), (sim.now, 0));
    assert_eq!(ra.prefixes, vec![p]);
    assert_eq!((ra.link, ra.mn_link_layer), (AccessLink(1), ll(1)));
    assert!(ra.router_lifetime > Duration::ZERO);
    assert!(ra.prefix_lifetime > Duration::ZERO);
}
