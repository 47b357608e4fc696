//! The LMA against RFC 5213 §5.3-§5.4, RFC 5846 and RFC 5847, rule by rule: each test names
//! the rule it checks. PBUs are built by hand where a MAG would not send them.

use core::time::Duration;
use std::net::Ipv6Addr;

use ipnet::{IpNet, Ipv6Net};
use pmip::cache::BindingState;
use pmip::mag::BulState;
use pmip::sim::{Downlink, Packet, Sim};
use pmip::wire::*;

mod common;
use common::*;

fn session_of(sim: &Sim, n: u16) -> pmip::cache::SessionId {
    sim.lma
        .cache()
        .sessions_of(&nai(n))
        .next()
        .expect("a session")
}

/// A Binding Update from `from` to the LMA, as raw bytes.
fn bu(
    from: Ipv6Addr,
    flags: BuFlags,
    seq: u16,
    lifetime_s: u32,
    opts: &[MobilityOption<'_>],
) -> Packet {
    bu_packet(from, lma_addr(), flags, seq, lifetime_s, opts)
}

fn pbu(from: Ipv6Addr, seq: u16, lifetime_s: u32, opts: &[MobilityOption<'_>]) -> Packet {
    bu(from, BuFlags::A | BuFlags::P, seq, lifetime_s, opts)
}

/// The Binding Acknowledgements the LMA sent, in order.
fn acks(sim: &Sim) -> Vec<(Ipv6Addr, Status, BaFlags, u16)> {
    sim.sent
        .iter()
        .filter(|(_, p)| p.src == lma_addr())
        .filter_map(|(_, p)| match p.message() {
            Some(Message::BindingAck(ba)) => Some((p.dst, ba.status, ba.flags, ba.sequence.0)),
            _ => None,
        })
        .collect()
}

/// The MN-ID of every PBU sent from `from` on, in order.
fn pbus_since(sim: &Sim, from: usize) -> Vec<String> {
    sim.sent[from..]
        .iter()
        .filter_map(|(_, p)| match p.message() {
            Some(Message::BindingUpdate(bu)) if bu.flags.contains(BuFlags::P) => {
                let pbu = ProxyBindingUpdate::new(&bu).ok()?;
                Some(String::from_utf8_lossy(pbu.opts.nai()?).into_owned())
            }
            _ => None,
        })
        .collect()
}

fn last_ack(sim: &Sim) -> (Ipv6Addr, Status, BaFlags, u16) {
    *acks(sim).last().expect("a Binding Acknowledgement")
}

// ------------------------------------------------------------------ RFC 5213 §5.3.1

/// Item 1 of the RFC-exact issue: §5.3.1 rule 9 (the sequence number, §5.5) comes before
/// rule 10 (a Home Network Prefix option): a PBU without a Timestamp, with a stale sequence
/// number and without an HNP is refused for its sequence number, with the last accepted one.
#[test]
fn rfc5213_5_3_1_a_pbu_with_several_faults_gets_the_status_of_the_first_rule_it_fails() {
    let mut sim = sequence_domain(1, 1);
    sim.attach(0, ll(1));
    sim.settle(Duration::from_secs(2));
    let p = prefix_of(&sim, 1);
    let last = sim
        .lma
        .cache()
        .get(session_of(&sim, 1))
        .unwrap()
        .ordering
        .sequence;
    let id = nai(1);
    let l = ll(1);
    let opts = [
        mn_id_opt(id.as_bytes()),
        hi(HandoffIndicator::HandoffStateNotChanged),
        ETH,
        MobilityOption::MnLinkLayerIdentifier(l.as_bytes()),
    ];
    sim.inject(pbu(mag_addr(0), last.0.wrapping_sub(1), 3600, &opts));
    sim.run_for(Duration::from_millis(10));
    let (_, status, _, seq) = last_ack(&sim);
    assert_eq!(status, Status::SequenceNumberOutOfWindow);
    assert_eq!(
        seq, last.0,
        "RFC 6275 §9.5.1: the last accepted sequence number"
    );
    // With a newer sequence number the same PBU fails rule 10.
    sim.inject(pbu(mag_addr(0), last.0.wrapping_add(1), 3600, &opts));
    sim.run_for(Duration::from_millis(10));
    assert_eq!(last_ack(&sim).1, Status::MissingHomeNetworkPrefixOption);
    // Refusals change nothing.
    assert_eq!(prefix_of(&sim, 1), p);
    let e = sim.lma.cache().get(session_of(&sim, 1)).unwrap();
    assert_eq!(e.ordering.sequence, last);
}

// ------------------------------------------------------------------ RFC 5213 §5.3.5, §5.4.1

/// Item 2: a de-registration that cannot be associated with the session holding its prefix
/// (§5.4.1.1 rule 6), or whose source is not the session's proxy-CoA (§5.3.5 rule 1), is
/// ignored: no PBA, nothing changed. The previous MAG's late de-registration is the usual case.
#[test]
fn rfc5213_5_3_5_and_5_4_1_1_a_late_deregistration_from_the_previous_mag_is_ignored() {
    let mut sim = domain(2, 1);
    sim.attach(0, ll(1));
    sim.settle(Duration::from_secs(2));
    let p = prefix_of(&sim, 1);
    sim.run_for(Duration::from_millis(50));
    sim.attach(1, ll(1));
    sim.settle(Duration::from_secs(2));
    assert_eq!(
        sim.lma_datapath.get(&IpNet::from(p)),
        Some(&Downlink::Tunnel(mag_addr(1)))
    );
    let id = nai(1);
    let l = ll(1);
    let before = sim.lma.cache().get(session_of(&sim, 1)).unwrap().clone();
    let unchanged = |sim: &Sim| {
        let e = sim.lma.cache().get(session_of(sim, 1)).unwrap();
        assert_eq!(e, &before);
        assert_eq!(e.state(), BindingState::Active);
        assert_eq!(
            sim.lma_datapath.get(&IpNet::from(p)),
            Some(&Downlink::Tunnel(mag_addr(1)))
        );
    };
    let hnp = MobilityOption::HomeNetworkPrefix(p);
    // §5.4.1.1 rule 6: no LL-ID, HI 1, another proxy-CoA: no update condition holds.
    let acks_before = acks(&sim).len();
    let ignored_before = sim.lma.stats().pbu_ignored;
    sim.run_for(Duration::from_millis(10));
    let opts = [
        mn_id_opt(id.as_bytes()),
        hnp,
        hi(HandoffIndicator::AttachmentOverNewInterface),
        ETH,
        ts_now(&sim),
    ];
    sim.inject(pbu(mag_addr(0), 7, 0, &opts));
    sim.run_for(Duration::from_millis(10));
    assert_eq!(acks(&sim).len(), acks_before, "no PBA");
    assert_eq!(sim.lma.stats().pbu_ignored, ignored_before + 1);
    unchanged(&sim);
    // §5.3.5 rule 1: the lookup finds the session (same LL-ID and ATT), but the source is not
    // its proxy-CoA.
    let opts = [
        mn_id_opt(id.as_bytes()),
        hnp,
        hi(HandoffIndicator::HandoffStateUnknown),
        ETH,
        ts_now(&sim),
        MobilityOption::MnLinkLayerIdentifier(l.as_bytes()),
    ];
    sim.inject(pbu(mag_addr(0), 8, 0, &opts));
    sim.run_for(Duration::from_millis(10));
    assert_eq!(acks(&sim).len(), acks_before, "no PBA");
    assert_eq!(sim.lma.stats().pbu_ignored, ignored_before + 2);
    unchanged(&sim);
    // The same request as the first with a lifetime asks for a new session with prefixes
    // another session holds: §5.3.2 rule 3 refuses it.
    sim.run_for(Duration::from_millis(10));
    let opts = [
        mn_id_opt(id.as_bytes()),
        hnp,
        hi(HandoffIndicator::AttachmentOverNewInterface),
        ETH,
        ts_now(&sim),
    ];
    sim.inject(pbu(mag_addr(0), 9, 3600, &opts));
    sim.run_for(Duration::from_millis(10));
    assert_eq!(
        last_ack(&sim),
        (
            mag_addr(0),
            Status::NotAuthorizedForHomeNetworkPrefix,
            BaFlags::P,
            9
        )
    );
    unchanged(&sim);
}

/// Item 5: §5.3.1 rule 8, a node not authorized for network-based mobility, is refused with
/// PROXY_REG_NOT_ENABLED (152), a per-node policy; rule 8 comes before rules 9-12. The MAG
/// then denies the node service and sends no more PBUs for it (§6.9.1.2 rule 7).
#[test]
fn rfc5213_5_3_1_rule_8_a_node_without_proxy_registration_gets_152() {
    let mut lc = lma_config(1, 2);
    lc.mobile_nodes[1].proxy_registration_enabled = false;
    let mut sim = Sim::new(lc, vec![mag_config(0, 2)], 42);
    sim.attach(0, ll(1));
    sim.attach(0, ll(2));
    sim.settle(Duration::from_secs(2));
    assert!(sim.lma.cache().sessions_of(&nai(1)).next().is_some());
    assert!(sim.lma.cache().sessions_of(&nai(2)).next().is_none());
    let refused: Vec<_> = acks(&sim)
        .into_iter()
        .filter(|a| a.1 == Status::ProxyRegNotEnabled)
        .collect();
    assert_eq!(refused.len(), 1, "{:?}", acks(&sim));
    assert!(sim.lma_events.iter().any(|(_, e)| matches!(
        e,
        pmip::lma::LmaEvent::Rejected { mn_id, status: Status::ProxyRegNotEnabled, .. }
            if *mn_id == nai(2)
    )));
    // Before the timestamp (rule 9) and the options (rules 10-12).
    let id = nai(2);
    let stale = MobilityOption::Timestamp(Timestamp(1));
    sim.inject(pbu(
        mag_addr(0),
        1,
        3600,
        &[mn_id_opt(id.as_bytes()), stale],
    ));
    sim.run_for(Duration::from_millis(10));
    assert_eq!(last_ack(&sim).1, Status::ProxyRegNotEnabled);
    // At the MAG (§6.9.1.2 rule 7): no service, and no PBU for the node again until an
    // administrative action.
    assert!(matches!(
        sim.mags[0].binding(&nai(2)).unwrap().state,
        BulState::Denied {
            status: Status::ProxyRegNotEnabled,
            until: None
        }
    ));
    let from = sim.sent.len();
    sim.run_for(Duration::from_secs(600));
    assert!(!pbus_since(&sim, from).contains(&nai(2)));
    assert_eq!(
        sim.mag_datapaths[0].uplinks.len(),
        1,
        "only node 1 is served"
    );
    // A registered node whose profile is disabled keeps its binding until its next refresh,
    // which is refused: rule 8 holds for every PBU, not only the first.
    let mut p = profile(1);
    p.proxy_registration_enabled = false;
    sim.lma.upsert_profile(p).unwrap();
    sim.run_for(Duration::from_secs(4000));
    assert!(sim.lma.cache().sessions_of(&nai(1)).next().is_none());
    assert!(matches!(
        sim.mags[0].binding(&nai(1)).unwrap().state,
        BulState::Denied {
            status: Status::ProxyRegNotEnabled,
            ..
        }
    ));
    // Enabled again, the node registers.
    let mut p = profile(2);
    p.proxy_registration_enabled = true;
    sim.lma.upsert_profile(p).unwrap();
    sim.detach(0, ll(2));
    sim.attach(0, ll(2));
    sim.settle(Duration::from_secs(2));
    assert!(sim.lma.cache().sessions_of(&nai(2)).next().is_some());
}

/// A Binding Update without the P flag is not a proxy registration at all: a Mobile IPv6
/// home registration (H) gets 131, as from any node that is no home agent (RFC 6275
/// §10.3.1); a correspondent registration gets 129, since an LMA does no route
/// optimization. Either answer is a Binding Acknowledgement without P and without the
/// PMIPv6 options.
#[test]
fn a_binding_update_without_p_is_not_answered_as_a_proxy_registration() {
    let mut sim = domain(1, 1);
    let id = nai(1);
    let opts = [
        mn_id_opt(id.as_bytes()),
        MobilityOption::HomeNetworkPrefix(Ipv6Net::default()),
        hi(HandoffIndicator::AttachmentOverNewInterface),
        ETH,
        ts_now(&sim),
    ];
    for (flags, want) in [
        (
            BuFlags::A | BuFlags::H,
            Status::HomeRegistrationNotSupported,
        ),
        (BuFlags::A, Status::AdministrativelyProhibited),
    ] {
        sim.inject(bu(mag_addr(0), flags, 1, 3600, &opts));
        sim.run_for(Duration::from_millis(10));
        let (to, status, ba_flags, seq) = last_ack(&sim);
        assert_eq!((to, status, seq), (mag_addr(0), want, 1));
        assert!(!ba_flags.contains(BaFlags::P));
        let p = &sim.sent.last().unwrap().1;
        let Some(Message::BindingAck(ba)) = p.message() else {
            panic!("not a BA")
        };
        assert_eq!(ba.options.iter().count(), 0, "no PMIPv6 options");
    }
    assert!(sim.lma.cache().is_empty());
}

fn mn(b: &[u8]) -> MobilityOption<'_> {
    MobilityOption::MobileNodeIdentifier { subtype: 1, id: b }
}

/// A BRI from MAG `mag` to the LMA.
fn mag_bri(
    mag: usize,
    seq: u16,
    trigger: RevocationTrigger,
    flags: RevocationFlags,
    opts: &[MobilityOption<'_>],
) -> Packet {
    bri_packet(mag_addr(mag), lma_addr(), seq, trigger, flags, opts)
}

/// The status of the LMA's acknowledgement of BRI `seq`.
fn lma_bra(sim: &Sim, seq: u16) -> Option<BraStatus> {
    sim.sent.iter().find_map(|(_, p)| match p.message() {
        Some(Message::BindingRevocation(BindingRevocation::Acknowledgement(a)))
            if p.src == lma_addr() && a.sequence == SequenceNumber(seq) =>
        {
            Some(a.status)
        }
        _ => None,
    })
}

/// RFC 5846 §8.2: the LMA answers a MAG's BRI. Per node (the MN-ID, and the HNPs to narrow
/// it) or, with G and "Per-Peer Policy" and the MAG's identity in an MN-ID option, every
/// binding of that MAG; the bindings go at once. A MAG revokes only its own bindings
/// (another's: "Binding Does NOT Exist"; a global one for another proxy-CoA: "Global
/// Revocation NOT Authorized"); without the MN-ID: 131 per node, 130 global; a global
/// trigger without G or G with another trigger: 134; no P: 135.
#[test]
fn rfc5846_8_2_the_lma_answers_a_mags_revocation() {
    let mut sim = domain(2, 3);
    sim.attach(0, ll(1));
    sim.attach(0, ll(2));
    sim.attach(1, ll(3));
    sim.settle(Duration::from_secs(2));
    let p1 = prefix_of(&sim, 1);
    let id = |s: &str| s.as_bytes().to_vec();
    let (n1, n3, m1) = (id(&nai(1)), id(&nai(3)), id("mag1"));

    let p = RevocationFlags::P;
    let g = RevocationFlags::P | RevocationFlags::G;
    let admin = RevocationTrigger::AdministrativeReason;
    let peer = RevocationTrigger::PerPeerPolicy;
    let cases: Vec<(
        u16,
        RevocationTrigger,
        RevocationFlags,
        Vec<MobilityOption<'_>>,
        BraStatus,
    )> = vec![
        (
            1,
            admin,
            p,
            vec![],
            BraStatus::RevokedMobileNodesIdentityRequired,
        ),
        (2, admin, p, vec![mn(&n3)], BraStatus::BindingDoesNotExist),
        (
            3,
            admin,
            RevocationFlags::empty(),
            vec![mn(&n1)],
            BraStatus::ProxyBindingRevocationNotSupported,
        ),
        (4, peer, g, vec![], BraStatus::GlobalRevocationNotAuthorized),
        (
            5,
            peer,
            g,
            vec![mn(&m1), MobilityOption::AlternateCareOfAddress(mag_addr(1))],
            BraStatus::GlobalRevocationNotAuthorized,
        ),
        (
            6,
            admin,
            g,
            vec![mn(&m1)],
            BraStatus::RevocationFunctionNotSupported,
        ),
        (
            7,
            peer,
            p,
            vec![mn(&n1)],
            BraStatus::RevocationFunctionNotSupported,
        ),
        (
            8,
            admin,
            p,
            vec![
                mn(&n1),
                MobilityOption::HomeNetworkPrefix(prefix_of(&sim, 2)),
            ],
            BraStatus::BindingDoesNotExist,
        ),
    ];
    for (seq, trigger, flags, opts, status) in &cases {
        sim.inject(mag_bri(0, *seq, *trigger, *flags, opts));
        sim.run_for(Duration::from_millis(5));
        assert_eq!(lma_bra(&sim, *seq), Some(*status), "BRI {seq}");
    }
    assert_eq!(sim.lma.cache().len(), 3, "nothing revoked yet");
    sim.inject(mag_bri(
        0,
        9,
        admin,
        p,
        &[mn(&n1), MobilityOption::HomeNetworkPrefix(p1)],
    ));
    sim.run_for(Duration::from_millis(5));
    assert_eq!(lma_bra(&sim, 9), Some(BraStatus::Success));
    assert!(sim.lma.cache().sessions_of(&nai(1)).next().is_none());
    assert!(!sim.lma_datapath.contains_key(&IpNet::from(p1)));
    sim.inject(mag_bri(0, 10, peer, g, &[mn(&m1)]));
    sim.run_for(Duration::from_millis(5));
    assert_eq!(lma_bra(&sim, 10), Some(BraStatus::Success));
    assert!(sim.lma.cache().sessions_of(&nai(2)).next().is_none());
    assert_eq!(sim.lma.cache().len(), 1, "MAG2's binding stays");
    assert!(sim.lma.cache().sessions_of(&nai(3)).next().is_some());
}

/// RFC 5213 §5.3.1 rules 4-7 with RFC 4283 §5: an MN-ID option whose subtype is not the NAI
/// (the only one allocated) is present, so rule 4 (160) does not apply; the LMA cannot
/// identify the node by it: rule 7, NOT_LMA_FOR_THIS_MOBILE_NODE (153), after rules 5-6 (an
/// unauthorized MAG still gets 154). The PBA's MN-ID option is the PBU's, subtype included
/// (§5.3.6). No option at all: 160.
#[test]
fn rfc5213_5_3_1_an_mn_id_of_an_unknown_subtype_gets_153() {
    let mut sim = domain(1, 1);
    let id = nai(1);
    let l = ll(1);
    let opts = |subtype: Option<u8>| {
        let mut o: Vec<MobilityOption<'_>> = subtype
            .map(|subtype| MobilityOption::MobileNodeIdentifier {
                subtype,
                id: id.as_bytes(),
            })
            .into_iter()
            .collect();
        o.extend([
            MobilityOption::HomeNetworkPrefix(Ipv6Net::default()),
            hi(HandoffIndicator::AttachmentOverNewInterface),
            ETH,
            MobilityOption::Timestamp(Timestamp::from_wall_clock(sim.wall())),
            MobilityOption::MnLinkLayerIdentifier(l.as_bytes()),
        ]);
        o
    };
    let (o99, o1, none) = (opts(Some(99)), opts(Some(1)), opts(None));
    sim.inject(pbu(mag_addr(0), 1, 3600, &o99));
    sim.run_for(Duration::from_millis(5));
    assert_eq!(last_ack(&sim).1, Status::NotLmaForThisMobileNode);
    let echoed = sim.sent.iter().rev().find_map(|(_, p)| match p.message() {
        Some(Message::BindingAck(ba)) => ba.options.iter().find_map(|o| match o {
            MobilityOption::MobileNodeIdentifier { subtype, id } => Some((subtype, id.to_vec())),
            _ => None,
        }),
        _ => None,
    });
    assert_eq!(echoed, Some((99, id.as_bytes().to_vec())));
    sim.inject(pbu(mag_addr(5), 2, 3600, &o99));
    sim.run_for(Duration::from_millis(5));
    assert_eq!(last_ack(&sim).1, Status::MagNotAuthorizedForProxyReg);
    sim.inject(pbu(mag_addr(0), 3, 3600, &none));
    sim.run_for(Duration::from_millis(5));
    assert_eq!(last_ack(&sim).1, Status::MissingMnIdentifierOption);
    assert_eq!(sim.lma.cache().len(), 0);
    // The NAI registers.
    sim.inject(pbu(mag_addr(0), 4, 3600, &o1));
    sim.run_for(Duration::from_millis(5));
    assert_eq!(last_ack(&sim).1, Status::Accepted);
}
