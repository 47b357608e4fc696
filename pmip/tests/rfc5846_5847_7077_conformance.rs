//! Binding revocation (RFC 5846), heartbeats (RFC 5847) and update notifications (RFC 7077),
//! rule by rule, in the simulator: each test names the rule it checks. The LMA's BRIs and
//! UPNs, and the MAG's BRAs, are built by hand where a peer would send them, and what comes
//! back is read with the wire parser.

use core::time::Duration;
use std::net::Ipv6Addr;

use ipnet::{IpNet, Ipv6Net};
use pmip::Instant;
use pmip::config::HeartbeatConfig;
use pmip::lma::LmaEvent;
use pmip::mag::{BulState, MagEvent};
use pmip::sim::{Packet, Sim};
use pmip::wire::*;

mod common;
use common::*;

fn mn(id: &[u8]) -> MobilityOption<'_> {
    MobilityOption::MobileNodeIdentifier {
        subtype: MN_ID_SUBTYPE_NAI,
        id,
    }
}

/// A BRI from the LMA to MAG 0.
fn lma_bri(
    seq: u16,
    trigger: RevocationTrigger,
    flags: RevocationFlags,
    opts: &[MobilityOption<'_>],
) -> Packet {
    bri_packet(lma_addr(), mag_addr(0), seq, trigger, flags, opts)
}

/// A BRA from `src` to the LMA.
fn bra(src: Ipv6Addr, seq: u16, status: BraStatus) -> Packet {
    let m = Message::BindingRevocation(BindingRevocation::Acknowledgement(BindingRevocationAck {
        status,
        sequence: SequenceNumber(seq),
        flags: RevocationFlags::P,
        options: Options::EMPTY,
    }));
    packet(src, lma_addr(), &m)
}

/// A BRA as sent: source, destination, status, sequence number, flags.
type SentBra = (Ipv6Addr, Ipv6Addr, BraStatus, u16, RevocationFlags);

/// Every BRA sent from `from`, in order.
fn bras_from(sim: &Sim, from: Ipv6Addr) -> Vec<SentBra> {
    sim.sent
        .iter()
        .filter(|(_, p)| p.src == from)
        .filter_map(|(_, p)| match p.message() {
            Some(Message::BindingRevocation(BindingRevocation::Acknowledgement(a))) => {
                Some((p.src, p.dst, a.status, a.sequence.0, a.flags))
            }
            _ => None,
        })
        .collect()
}

/// Every BRI sent: (destination, sequence number).
fn bris(sim: &Sim) -> Vec<(Ipv6Addr, u16)> {
    sim.sent
        .iter()
        .filter_map(|(_, p)| match p.message() {
            Some(Message::BindingRevocation(BindingRevocation::Indication(i))) => {
                Some((p.dst, i.sequence.0))
            }
            _ => None,
        })
        .collect()
}

/// Node 1 bound at MAG 0 of a one-MAG domain of `nodes` nodes, and its prefix.
fn one_bound(nodes: u16) -> (Sim, Ipv6Net) {
    let mut sim = domain(1, nodes);
    sim.attach(0, ll(1));
    sim.settle(Duration::from_secs(2));
    let p = sim.mags[0].binding(&nai(1)).unwrap().prefixes[0];
    (sim, p)
}

/// Node 1 is still bound at MAG 0 and at the LMA, with its prefix routed onto its link.
fn still_bound(sim: &Sim, p: Ipv6Net) -> bool {
    sim.mags[0].binding(&nai(1)).is_some_and(|e| e.is_bound())
        && sim.lma.cache().sessions_of(&nai(1)).next().is_some()
        && sim.mag_datapaths[0]
            .access_routes
            .contains_key(&IpNet::from(p))
}

// ------------------------------------------------------------------ RFC 5846 §6.1.2

/// §6.1.2: "If the (P) bit is set in the received Binding Revocation Indication, the
/// responder MUST set the (P) bit", and the same for G and V; the Sequence Number is copied
/// and the BRA goes to the BRI's source. The MAG copies the flags whatever the status, and
/// sets none the BRI did not have.
#[test]
fn rfc5846_6_1_2_the_mags_bra_copies_the_p_g_and_v_flags_of_the_bri() {
    let (mut sim, _) = one_bound(2);
    let (n1, n2) = (nai(1), nai(2));
    let p = RevocationFlags::P;
    let pv = RevocationFlags::P | RevocationFlags::V;
    let pg = RevocationFlags::P | RevocationFlags::G;
    let admin = RevocationTrigger::AdministrativeReason;
    let cases = [
        (
            11,
            admin,
            RevocationFlags::empty(),
            vec![mn(n1.as_bytes())],
            BraStatus::ProxyBindingRevocationNotSupported,
        ),
        (
            12,
            admin,
            p,
            vec![mn(n2.as_bytes())],
            BraStatus::BindingDoesNotExist,
        ),
        (
            13,
            admin,
            pv,
            vec![mn(n1.as_bytes())],
            BraStatus::Ipv4HomeAddressOptionRequired,
        ),
        (
            14,
            admin,
            pg,
            vec![],
            BraStatus::RevocationFunctionNotSupported,
        ),
        (
            15,
            RevocationTrigger::PerPeerPolicy,
            pg,
            vec![],
            BraStatus::Success,
        ),
    ];
    for (seq, trigger, flags, opts, status) in &cases {
        sim.inject(lma_bri(*seq, *trigger, *flags, opts));
        sim.run_for(Duration::from_millis(5));
        assert_eq!(
            bras_from(&sim, mag_addr(0)).last(),
            Some(&(mag_addr(0), lma_addr(), *status, *seq, *flags)),
            "BRI {seq}"
        );
    }
    assert_eq!(bras_from(&sim, mag_addr(0)).len(), cases.len());
    assert!(
        sim.mags[0].binding(&nai(1)).is_none(),
        "the last one revoked"
    );
}

/// §6.1.2, the LMA as the responder to a MAG's BRI (§8.2): P, G and V copied into its BRA,
/// with the Sequence Number, back to the MAG.
#[test]
fn rfc5846_6_1_2_the_lmas_bra_copies_the_p_g_and_v_flags_of_the_bri() {
    let (mut sim, p1) = one_bound(1);
    let n1 = nai(1);
    let admin = RevocationTrigger::AdministrativeReason;
    let peer = RevocationTrigger::PerPeerPolicy;
    let cases = [
        (
            21,
            admin,
            RevocationFlags::empty(),
            vec![mn(n1.as_bytes())],
            BraStatus::ProxyBindingRevocationNotSupported,
        ),
        (
            22,
            admin,
            RevocationFlags::P | RevocationFlags::V,
            vec![mn(n1.as_bytes())],
            BraStatus::Ipv4HomeAddressOptionRequired,
        ),
        (
            23,
            peer,
            RevocationFlags::P | RevocationFlags::G,
            vec![],
            BraStatus::GlobalRevocationNotAuthorized,
        ),
        (
            24,
            peer,
            RevocationFlags::P | RevocationFlags::G | RevocationFlags::V,
            vec![],
            BraStatus::GlobalRevocationNotAuthorized,
        ),
        (
            25,
            admin,
            RevocationFlags::P,
            vec![mn(n1.as_bytes())],
            BraStatus::Success,
        ),
    ];
    for (seq, trigger, flags, opts, status) in &cases {
        sim.inject(bri_packet(
            mag_addr(0),
            lma_addr(),
            *seq,
            *trigger,
            *flags,
            opts,
        ));
        sim.run_for(Duration::from_millis(5));
        assert_eq!(
            bras_from(&sim, lma_addr()).last(),
            Some(&(lma_addr(), mag_addr(0), *status, *seq, *flags)),
            "BRI {seq}"
        );
    }
    assert!(sim.lma.cache().sessions_of(&nai(1)).next().is_none());
    assert!(!sim.lma_datapath.contains_key(&IpNet::from(p1)));
}

/// §6.1.2: "If the Source Address field of the IPv6 header that carried the Binding
/// Revocation Indication message does not contain a unicast address, the Binding Revocation
/// Indication packet MUST be silently discarded." The MAG hears BRIs only from its LMA, whose
/// address must be a unicast one; a BRI that would revoke the node, from a multicast or the
/// unspecified source, gets no BRA and revokes nothing. The same BRI from the LMA does.
#[test]
fn rfc5846_6_1_2_a_bri_from_a_non_unicast_source_is_discarded_without_a_bra() {
    let (mut sim, p) = one_bound(1);
    let id = nai(1);
    let opts = [mn(id.as_bytes())];
    let admin = RevocationTrigger::AdministrativeReason;
    let sources: [Ipv6Addr; 3] = [
        "ff02::1".parse().unwrap(),
        "ff05::2".parse().unwrap(),
        Ipv6Addr::UNSPECIFIED,
    ];
    for (seq, src) in (1..).zip(sources) {
        sim.inject(bri_packet(
            src,
            mag_addr(0),
            seq,
            admin,
            RevocationFlags::P,
            &opts,
        ));
        sim.run_for(Duration::from_millis(5));
        assert!(sim.mag_events_of(0).any(|e| matches!(
            e,
            MagEvent::Dropped { from, .. } if *from == src
        )));
        // The LMA gets a BRI from a non-unicast source just the same.
        sim.inject(bri_packet(
            src,
            lma_addr(),
            seq,
            admin,
            RevocationFlags::P,
            &opts,
        ));
        sim.run_for(Duration::from_millis(5));
        assert!(sim.lma_events.iter().any(|(_, e)| matches!(
            e,
            LmaEvent::Dropped { from, .. } if *from == src
        )));
    }
    assert!(bras_from(&sim, mag_addr(0)).is_empty());
    assert!(bras_from(&sim, lma_addr()).is_empty());
    assert!(still_bound(&sim, p));
    // A non-unicast LMA address, which would let such a source through, is refused.
    for bad in ["ff02::1", "::"] {
        let mut c = mag_config(0, 1);
        c.lma_address = bad.parse().unwrap();
        assert_eq!(c.validate().unwrap_err().field, "lma_address", "{bad}");
    }
    sim.inject(lma_bri(9, admin, RevocationFlags::P, &opts));
    sim.run_for(Duration::from_millis(5));
    assert_eq!(
        bras_from(&sim, mag_addr(0)),
        vec![(
            mag_addr(0),
            lma_addr(),
            BraStatus::Success,
            9,
            RevocationFlags::P
        )]
    );
    assert!(sim.mags[0].binding(&nai(1)).is_none());
}

// ------------------------------------------------------------------ RFC 5846 §6.2.1, §9.1

/// Sends MAG 0 each BRI and checks its BRA has `status`, and that node 1 kept its binding.
fn refused(
    sim: &mut Sim,
    p: Ipv6Net,
    cases: &[(
        u16,
        RevocationTrigger,
        RevocationFlags,
        Vec<MobilityOption<'_>>,
    )],
    status: BraStatus,
) {
    for (seq, trigger, flags, opts) in cases {
        sim.inject(lma_bri(*seq, *trigger, *flags, opts));
        sim.run_for(Duration::from_millis(5));
        let sent = bras_from(sim, mag_addr(0));
        let (_, _, got, got_seq, _) = sent.last().copied().expect("a BRA");
        assert_eq!((got, got_seq), (status, *seq), "BRI {seq} ({trigger:?})");
        assert!(still_bound(sim, p), "BRI {seq} revoked the binding");
    }
}

/// §6.2.1: "If the Revocation Trigger field is set to a value that the responder does not
/// support, the responder SHOULD reject the Binding Revocation Indication message using
/// status code 'Revocation Trigger NOT Supported'" (133): values the RFC does not allocate,
/// per node and global.
#[test]
fn rfc5846_6_2_1_an_unsupported_trigger_gets_revocation_trigger_not_supported() {
    let (mut sim, p) = one_bound(1);
    let id = nai(1);
    let per_node = vec![mn(id.as_bytes())];
    let cases = vec![
        (
            1,
            RevocationTrigger::from(8),
            RevocationFlags::P,
            per_node.clone(),
        ),
        (
            2,
            RevocationTrigger::from(127),
            RevocationFlags::P,
            per_node.clone(),
        ),
        (
            3,
            RevocationTrigger::from(130),
            RevocationFlags::P | RevocationFlags::G,
            vec![],
        ),
        (
            4,
            RevocationTrigger::from(255),
            RevocationFlags::P,
            per_node,
        ),
    ];
    refused(
        &mut sim,
        p,
        &cases,
        BraStatus::RevocationTriggerNotSupported,
    );
}

/// §6.2.1: "If the Revocation Trigger value is NOT allowed with the Binding Revocation
/// Indication message intent, e.g., the Global (G) bit is set and the Revocation Trigger
/// field value is Per-MN-specific, the responder SHOULD reject ... using status code
/// 'Revocation Function NOT Supported'" (134); and a global trigger without G.
#[test]
fn rfc5846_6_2_1_a_trigger_not_allowed_with_g_or_without_it_gets_revocation_function_not_supported()
{
    let (mut sim, p) = one_bound(1);
    let id = nai(1);
    let n = vec![mn(id.as_bytes())];
    let p_only = RevocationFlags::P;
    let g = RevocationFlags::P | RevocationFlags::G;
    let cases = vec![
        (1, RevocationTrigger::AdministrativeReason, g, n.clone()),
        (2, RevocationTrigger::InterMagHandoverUnknown, g, n.clone()),
        (3, RevocationTrigger::Unspecified, g, vec![]),
        (4, RevocationTrigger::PerPeerPolicy, p_only, n.clone()),
        (
            5,
            RevocationTrigger::RevokingMobilityNodeLocalPolicy,
            p_only,
            vec![mn(b"@example.org")],
        ),
    ];
    refused(
        &mut sim,
        p,
        &cases,
        BraStatus::RevocationFunctionNotSupported,
    );
}

/// §6.2.1: "If the responder failed to identify the mobile node(s) bindings as identified in
/// the Binding Revocation Indication message, the responder MUST reject the BRI using status
/// code 'Binding Does NOT Exist'" (128): a known node with no binding here, a node nobody
/// knows, and the bound node narrowed to a prefix that is not its own.
#[test]
fn rfc5846_6_2_1_bindings_not_found_get_binding_does_not_exist() {
    let (mut sim, p) = one_bound(2);
    let (n1, n2) = (nai(1), nai(2));
    let other: Ipv6Net = "2001:db8:100:ff::/64".parse().unwrap();
    assert_ne!(other, p);
    let admin = RevocationTrigger::AdministrativeReason;
    let cases = vec![
        (1, admin, RevocationFlags::P, vec![mn(n2.as_bytes())]),
        (
            2,
            RevocationTrigger::UserInitiatedSessionTermination,
            RevocationFlags::P,
            vec![mn(b"stranger@example.org")],
        ),
        (
            3,
            admin,
            RevocationFlags::P,
            vec![mn(n1.as_bytes()), MobilityOption::HomeNetworkPrefix(other)],
        ),
        (
            4,
            RevocationTrigger::InterMagHandoverUnknown,
            RevocationFlags::P,
            vec![mn(n2.as_bytes())],
        ),
    ];
    refused(&mut sim, p, &cases, BraStatus::BindingDoesNotExist);
    // Named with its own prefix, the node goes.
    sim.inject(lma_bri(
        5,
        admin,
        RevocationFlags::P,
        &[mn(n1.as_bytes()), MobilityOption::HomeNetworkPrefix(p)],
    ));
    sim.run_for(Duration::from_millis(5));
    assert_eq!(
        bras_from(&sim, mag_addr(0)).last().map(|b| (b.2, b.3)),
        Some((BraStatus::Success, 5))
    );
    assert!(sim.mags[0].binding(&nai(1)).is_none());
}

/// §9.1 (with §8.1, a per-node BRI carries the MN-ID): the MAG identifies the binding by the
/// MN-ID option; a per-node BRI without one is answered "Revoked Mobile Nodes Identity
/// Required" (131), even when it names the node's prefix, and revokes nothing.
#[test]
fn rfc5846_9_1_a_per_node_bri_without_an_mn_id_gets_revoked_mobile_nodes_identity_required() {
    let (mut sim, p) = one_bound(1);
    let cases = vec![
        (
            1,
            RevocationTrigger::AdministrativeReason,
            RevocationFlags::P,
            vec![],
        ),
        (
            2,
            RevocationTrigger::AdministrativeReason,
            RevocationFlags::P,
            vec![MobilityOption::HomeNetworkPrefix(p)],
        ),
        (
            3,
            RevocationTrigger::InterMagHandoverUnknown,
            RevocationFlags::P,
            vec![MobilityOption::HomeNetworkPrefix(p)],
        ),
        (
            4,
            RevocationTrigger::PossibleOutOfSyncBceState,
            RevocationFlags::P,
            vec![MobilityOption::AlternateCareOfAddress(mag_addr(0))],
        ),
    ];
    refused(
        &mut sim,
        p,
        &cases,
        BraStatus::RevokedMobileNodesIdentityRequired,
    );
}

// ------------------------------------------------------------------ RFC 5846 §6.2.2, §8.1

/// §6.2.2: "If the sequence number does not match a sequence number of any of the outstanding
/// Binding Revocation Indication messages, the initiator MUST silently discard the message."
/// The LMA revokes node 1; the MAG's answer is lost. A BRA with another number, the right
/// number from another MAG, and (once the revocation is done) the right one again change
/// nothing; the right one from the MAG completes the revocation.
#[test]
fn rfc5846_6_2_2_a_bra_matching_no_outstanding_bri_is_discarded() {
    let mut sim = domain(2, 1);
    sim.attach(0, ll(1));
    sim.settle(Duration::from_secs(2));
    sim.drop = Some(Box::new(|p: &Packet| {
        matches!(p.message(), Some(Message::BindingRevocation(_)))
    }));
    sim.lma_do(|l, now, _| l.revoke(now, &nai(1), RevocationTrigger::AdministrativeReason))
        .unwrap();
    let revoked_at = sim.now;
    let sent = bris(&sim);
    assert_eq!(sent.len(), 1);
    let seq = sent[0].1;
    sim.drop = None;
    let acknowledged = |sim: &Sim| {
        sim.lma_events
            .iter()
            .filter(|(_, e)| matches!(e, LmaEvent::RevocationAcknowledged { .. }))
            .count()
    };
    for (src, s) in [
        (mag_addr(0), seq.wrapping_add(1)),
        (mag_addr(0), seq.wrapping_sub(1)),
        (mag_addr(1), seq),
    ] {
        sim.inject(bra(src, s, BraStatus::Success));
        sim.run_for(Duration::from_millis(5));
        assert!(
            sim.lma.cache().sessions_of(&nai(1)).next().is_some(),
            "BRA {s} from {src} removed the binding"
        );
        assert_eq!(acknowledged(&sim), 0);
    }
    assert!(
        sim.now - revoked_at < Duration::from_millis(1000),
        "still before the first retransmission (InitMINDelayBRIs)"
    );
    sim.inject(bra(mag_addr(0), seq, BraStatus::Success));
    sim.run_for(Duration::from_millis(5));
    assert!(sim.lma.cache().sessions_of(&nai(1)).next().is_none());
    assert_eq!(acknowledged(&sim), 1);
    // The MAG still holds the node and registers it again; the same BRA once more matches
    // nothing outstanding.
    sim.mag_do(0, |m, now, wall| m.reregister_all(now, wall));
    sim.settle(Duration::from_secs(2));
    assert!(sim.lma.cache().sessions_of(&nai(1)).next().is_some());
    sim.inject(bra(mag_addr(0), seq, BraStatus::Success));
    sim.run_for(Duration::from_millis(5));
    assert!(sim.lma.cache().sessions_of(&nai(1)).next().is_some());
    assert_eq!(acknowledged(&sim), 1);
    assert_eq!(bris(&sim).len(), 1, "no BRI after the acknowledgement");
}

/// §8.1: the LMA sends the BRI to the proxy-CoA of the binding it revokes. The node moved
/// from MAG 1 to MAG 2: the BRI goes to MAG 2 only, from the LMA's address, and MAG 2's BRA
/// completes it.
#[test]
fn rfc5846_8_1_the_bri_goes_to_the_proxy_coa_of_the_binding() {
    let mut sim = domain(2, 1);
    sim.attach(0, ll(1));
    sim.settle(Duration::from_secs(2));
    sim.run_for(Duration::from_millis(50));
    sim.attach(1, ll(1));
    sim.settle(Duration::from_secs(2));
    let s = sim.lma.cache().sessions_of(&nai(1)).next().unwrap();
    assert_eq!(sim.lma.cache().get(s).unwrap().proxy_coa, mag_addr(1));
    sim.lma_do(|l, now, _| l.revoke(now, &nai(1), RevocationTrigger::AdministrativeReason))
        .unwrap();
    let p = sim
        .sent
        .iter()
        .map(|(_, p)| p)
        .rfind(|p| {
            matches!(
                p.message(),
                Some(Message::BindingRevocation(BindingRevocation::Indication(_)))
            )
        })
        .expect("a BRI");
    assert_eq!((p.src, p.dst), (lma_addr(), mag_addr(1)));
    assert_eq!(bris(&sim).len(), 1);
    sim.run_for(Duration::from_millis(10));
    assert_eq!(
        bras_from(&sim, mag_addr(1)).last().map(|b| b.2),
        Some(BraStatus::Success)
    );
    assert!(bras_from(&sim, mag_addr(0)).is_empty());
    assert!(sim.lma.cache().sessions_of(&nai(1)).next().is_none());
}

// ------------------------------------------------------------------ RFC 5847 §5

/// §5: HEARTBEAT_INTERVAL is 60 s by default and "SHOULD NOT be set to less than 30 seconds
/// or more than 3600 seconds": a configuration above 3600 s is refused, at the LMA and the
/// MAG; 30 and 3600 are accepted, and 0 (heartbeats off).
#[test]
fn rfc5847_5_heartbeat_interval_is_60_s_by_default_and_refused_above_3600_s() {
    assert_eq!(HeartbeatConfig::default().interval_s, 60);
    for (s, ok) in [
        (0, true),
        (30, true),
        (60, true),
        (3600, true),
        (3601, false),
        (86_400, false),
    ] {
        let mut l = lma_config(1, 1);
        l.domain.heartbeat.interval_s = s;
        let mut m = mag_config(0, 1);
        m.domain.heartbeat.interval_s = s;
        for r in [l.validate(), m.validate()] {
            match r {
                Ok(()) => assert!(ok, "{s} s accepted"),
                Err(e) => {
                    assert!(!ok, "{s} s refused: {e:?}");
                    assert_eq!(e.field, "domain.heartbeat.interval_s");
                }
            }
        }
    }
}

/// §3.1, §5: with the largest interval allowed, 3600 s, the MAG's Heartbeat Requests to its
/// LMA are 3600 s apart (the first goes when the binding comes).
#[test]
fn rfc5847_5_a_3600_s_heartbeat_interval_spaces_the_requests_by_3600_s() {
    let mut lc = lma_config(1, 1);
    lc.domain.heartbeat.interval_s = 3600;
    let mut mc = mag_config(0, 1);
    mc.domain.heartbeat.interval_s = 3600;
    let mut sim = Sim::new(lc, vec![mc], 3);
    sim.attach(0, ll(1));
    sim.settle(Duration::from_secs(2));
    sim.run_for(Duration::from_secs(3 * 3600 + 60));
    let requests: Vec<Instant> = sim
        .sent
        .iter()
        .filter(|(_, p)| p.src == mag_addr(0) && p.dst == lma_addr())
        .filter_map(|(t, p)| match p.message() {
            Some(Message::Heartbeat(h)) if !h.is_response() => Some(*t),
            _ => None,
        })
        .collect();
    assert_eq!(requests.len(), 4, "{requests:?}");
    for w in requests.windows(2) {
        assert_eq!(w[1] - w[0], Duration::from_secs(3600));
    }
}

// ------------------------------------------------------------------ RFC 7077 §6

/// An Update Notification from the LMA to MAG 0.
fn upn(
    seq: u16,
    reason: NotificationReason,
    flags: UpnFlags,
    opts: &[MobilityOption<'_>],
) -> Packet {
    let m = Message::UpdateNotification(UpdateNotification {
        sequence: SequenceNumber(seq),
        reason,
        flags,
        options: Options::List(opts),
    });
    packet(lma_addr(), mag_addr(0), &m)
}

/// A UPA as sent: source, destination, sequence number, status, MN-IDs it carries.
type SentUpa = (Ipv6Addr, Ipv6Addr, u16, UpaStatus, Vec<Vec<u8>>);

/// Every UPA sent, in order.
fn upas(sim: &Sim) -> Vec<SentUpa> {
    sim.sent
        .iter()
        .filter_map(|(_, p)| match p.message() {
            Some(Message::UpdateNotificationAck(a)) => {
                let ids = (a.options.iter())
                    .filter_map(|o| match o {
                        MobilityOption::MobileNodeIdentifier { id, .. } => Some(id.to_vec()),
                        _ => None,
                    })
                    .collect();
                Some((p.src, p.dst, a.sequence.0, a.status, ids))
            }
            _ => None,
        })
        .collect()
}

/// A PBU as sent: MN-ID, first HNP, MN-LL-ID, lifetime in seconds.
type SentPbu = (Vec<u8>, Option<Ipv6Net>, Vec<u8>, u32);

/// The PBUs MAG 0 sent from `from` on.
fn pbus_since(sim: &Sim, from: usize) -> Vec<SentPbu> {
    sim.sent[from..]
        .iter()
        .filter(|(_, p)| p.src == mag_addr(0) && p.dst == lma_addr())
        .filter_map(|(_, p)| match p.message() {
            Some(Message::BindingUpdate(bu)) => {
                let pbu = ProxyBindingUpdate::new(&bu).ok()?;
                Some((
                    pbu.opts.nai()?.to_vec(),
                    pbu.opts.first_hnp,
                    pbu.opts.mn_link_layer_id.unwrap_or_default().to_vec(),
                    bu.lifetime.as_secs(),
                ))
            }
            _ => None,
        })
        .collect()
}

fn refreshes(sim: &Sim) -> usize {
    sim.mag_events_of(0)
        .filter(|e| matches!(e, MagEvent::Refreshed { mn_id } if *mn_id == nai(1)))
        .count()
}

/// §6.1: "If the Notification Reason is set to a value of (1) 'FORCE-REREGISTRATION', then the
/// mobile access gateway MUST send a Proxy Binding Update message to the local mobility anchor
/// and obtain the updated session parameters for that mobility session": a refresh of the
/// node's session (its MN-ID, prefix and link-layer identifier, a lifetime), accepted by the
/// LMA. Without A there is no UPA; with A a SUCCESS one.
#[test]
fn rfc7077_6_1_force_reregistration_sends_a_pbu_for_the_session() {
    let (mut sim, p) = one_bound(2);
    let id = nai(1);
    let l = ll(1);
    let expected = (id.as_bytes().to_vec(), Some(p), l.as_bytes().to_vec());
    let opts = [mn(id.as_bytes())];
    for (round, (seq, flags)) in [(31, UpnFlags::empty()), (32, UpnFlags::A)]
        .into_iter()
        .enumerate()
    {
        let from = sim.sent.len();
        sim.inject(upn(
            seq,
            NotificationReason::ForceReregistration,
            flags,
            &opts,
        ));
        sim.run_for(Duration::from_millis(10));
        let sent = pbus_since(&sim, from);
        assert_eq!(sent.len(), 1, "UPN {seq}: {sent:?}");
        let (got_id, got_hnp, got_ll, lifetime) = sent[0].clone();
        assert_eq!((got_id, got_hnp, got_ll), expected.clone());
        assert!(lifetime > 0, "a refresh, not a de-registration");
        assert_eq!(refreshes(&sim), round + 1);
        assert_eq!(sim.mags[0].binding(&nai(1)).unwrap().state, BulState::Bound);
    }
    let sent = upas(&sim);
    assert_eq!(sent.len(), 1, "only the UPN with A is answered");
    assert_eq!((sent[0].2, sent[0].3), (32, UpaStatus::Success));
    // Node 2 has no session here: nothing to re-register.
    let n2 = nai(2);
    let from = sim.sent.len();
    sim.inject(upn(
        33,
        NotificationReason::ForceReregistration,
        UpnFlags::empty(),
        &[mn(n2.as_bytes())],
    ));
    sim.run_for(Duration::from_millis(10));
    assert!(pbus_since(&sim, from).is_empty());
}

/// §6.1: a retransmission (D set, the same Sequence Number): "The mobile access gateway MUST
/// always respond to the retransmitted request if the (A) flag is set", and "SHOULD redo the
/// requested update action". Both copies are answered with the same number and status, and
/// each sends the refresh.
#[test]
fn rfc7077_6_1_a_retransmitted_upn_is_answered_again() {
    let (mut sim, _) = one_bound(1);
    let id = nai(1);
    let opts = [mn(id.as_bytes())];
    let reason = NotificationReason::ForceReregistration;
    let from = sim.sent.len();
    sim.inject(upn(41, reason, UpnFlags::A, &opts));
    sim.run_for(Duration::from_millis(10));
    sim.inject(upn(41, reason, UpnFlags::A | UpnFlags::D, &opts));
    sim.run_for(Duration::from_millis(10));
    let answered: Vec<(u16, UpaStatus)> = upas(&sim).iter().map(|u| (u.2, u.3)).collect();
    assert_eq!(
        answered,
        vec![(41, UpaStatus::Success), (41, UpaStatus::Success)]
    );
    assert_eq!(pbus_since(&sim, from).len(), 2);
    assert_eq!(refreshes(&sim), 2);
    assert!(sim.mags[0].binding(&nai(1)).unwrap().is_bound());
}

/// §6.1: "If the mobile access gateway has not seen the (potentially lost) initial request
/// message, it MUST treat the received Update Notification message (with the (D) flag set) as
/// an initial request": the first UPN is lost, its retransmission does what it asks.
#[test]
fn rfc7077_6_1_a_retransmission_whose_first_copy_was_lost_is_handled_as_a_new_request() {
    let (mut sim, p) = one_bound(1);
    let id = nai(1);
    let from = sim.sent.len();
    sim.inject(upn(
        51,
        NotificationReason::ForceReregistration,
        UpnFlags::A | UpnFlags::D,
        &[mn(id.as_bytes())],
    ));
    sim.run_for(Duration::from_millis(10));
    let sent = pbus_since(&sim, from);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].1, Some(p));
    assert_eq!(refreshes(&sim), 1);
    let answered: Vec<(u16, UpaStatus)> = upas(&sim).iter().map(|u| (u.2, u.3)).collect();
    assert_eq!(answered, vec![(51, UpaStatus::Success)]);
}

/// A UPN with `reason` and nothing the MAG can apply: with A the UPA has `status`; without A
/// no UPA. Either way nothing is sent to the LMA but the UPA, and the binding is unchanged.
fn not_applied(reason: NotificationReason, opts: &[MobilityOption<'_>], status: UpaStatus) {
    let (mut sim, p) = one_bound(1);
    let before = sim.mags[0].binding(&nai(1)).unwrap().clone();
    let from = sim.sent.len();
    sim.inject(upn(61, reason, UpnFlags::empty(), opts));
    sim.run_for(Duration::from_millis(10));
    assert!(upas(&sim).is_empty(), "{reason:?} without A answered");
    // "drop the received Update Notification message and log the error".
    let lma = lma_addr();
    assert_eq!(
        sim.mag_events_of(0)
            .filter(|e| matches!(e, MagEvent::Dropped { from, reason } if *from == lma && reason.contains("sequence 61")))
            .count(),
        1,
        "{reason:?} without A not logged"
    );
    sim.inject(upn(62, reason, UpnFlags::A, opts));
    sim.run_for(Duration::from_millis(10));
    let answered: Vec<(u16, UpaStatus)> = upas(&sim).iter().map(|u| (u.2, u.3)).collect();
    assert_eq!(answered, vec![(62, status)], "{reason:?}");
    let to_lma = sim.sent[from..]
        .iter()
        .filter(|(_, q)| q.src == mag_addr(0))
        .filter(|(_, q)| !matches!(q.message(), Some(Message::UpdateNotificationAck(_))))
        .filter(|(_, q)| !matches!(q.message(), Some(Message::Heartbeat(_))))
        .count();
    assert_eq!(to_lma, 0, "{reason:?}");
    assert_eq!(sim.mags[0].binding(&nai(1)).unwrap(), &before);
    assert!(still_bound(&sim, p));
}

/// §6.1: UPDATE-SESSION-PARAMETERS the MAG is unable to apply: "If the received Update
/// Notification message has the (A) flag ... set to a value of (0), then the mobile access
/// gateway MUST drop the received Update Notification message"; with A set, a UPA with
/// FAILED-TO-UPDATE-SESSION-PARAMETERS (128).
#[test]
fn rfc7077_6_1_update_session_parameters_gets_128_with_a_and_is_dropped_without() {
    let id = nai(1);
    not_applied(
        NotificationReason::UpdateSessionParameters,
        &[mn(id.as_bytes())],
        UpaStatus::FailedToUpdateSessionParameters,
    );
}

/// §6.1: VENDOR-SPECIFIC-REASON "if there is no Vendor-Specific Mobility option present in the
/// message": dropped when A is clear; with A set, a UPA with MISSING-VENDOR-SPECIFIC-OPTION
/// (129).
#[test]
fn rfc7077_6_1_vendor_specific_reason_without_the_option_gets_129_with_a_and_is_dropped_without() {
    let id = nai(1);
    not_applied(
        NotificationReason::VendorSpecificReason,
        &[mn(id.as_bytes())],
        UpaStatus::MissingVendorSpecificOption,
    );
}

/// §6.2: the UPA's Sequence Number is the UPN's, its Status says how the UPN was handled, it
/// carries the UPN's MN-ID option, and its source and destination are the UPN's destination
/// and source.
#[test]
fn rfc7077_6_2_the_upa_carries_the_upns_sequence_number_status_and_mn_id_with_addresses_swapped() {
    let (mut sim, _) = one_bound(2);
    let (n1, n2) = (nai(1), nai(2));
    let cases = [
        (
            0xfffe,
            NotificationReason::ForceReregistration,
            &n1,
            UpaStatus::Success,
        ),
        (
            0,
            NotificationReason::UpdateSessionParameters,
            &n2,
            UpaStatus::FailedToUpdateSessionParameters,
        ),
        (
            0x8001,
            NotificationReason::VendorSpecificReason,
            &n1,
            UpaStatus::MissingVendorSpecificOption,
        ),
    ];
    for (seq, reason, id, status) in cases {
        let u = upn(seq, reason, UpnFlags::A, &[mn(id.as_bytes())]);
        let (src, dst) = (u.src, u.dst);
        sim.inject(u);
        sim.run_for(Duration::from_millis(10));
        assert_eq!(
            upas(&sim).last(),
            Some(&(dst, src, seq, status, vec![id.as_bytes().to_vec()])),
            "UPN {seq}"
        );
    }
    assert_eq!(upas(&sim).len(), cases.len());
}
