//! RFC 5844 §3 (IPv4 home address mobility over the IPv6 transport) in the simulator: one
//! scenario per rule and status, the MAG and the LMA state machines talking to each other.

use core::time::Duration;
use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net};
use pmip::config::{Ipv4Pool, LmaConfig, MagConfig, MobileNodeProfile};
use pmip::ipv4_pool::Ipv4HomeAddress;
use pmip::mag::{BulState, MagEvent};
use pmip::sim::{Downlink, Sim};
use pmip::types::{LinkLayerAddress, Nai};
use pmip::wire::*;

const LMA: &str = "2001:db8:ffff::1";

fn mag_addr(i: usize) -> Ipv6Addr {
    format!("2001:db8:{}::10", i + 1).parse().unwrap()
}

fn ll(n: u16) -> LinkLayerAddress {
    LinkLayerAddress::mac([2, 0, 0, 4, (n >> 8) as u8, n as u8])
}

fn nai(n: u16) -> String {
    format!("mn{n}@example.org")
}

fn a4(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

/// Node `n`: dual-stack unless told otherwise.
fn profile(n: u16, ipv6: bool, ipv4: bool) -> MobileNodeProfile {
    let mut p = MobileNodeProfile::new(Nai::new(nai(n)).unwrap());
    p.link_layer_addresses = vec![ll(n)];
    p.ipv6 = ipv6;
    p.ipv4 = ipv4;
    p
}

fn lma_config(mags: usize, profiles: &[MobileNodeProfile], pools: &[&str]) -> LmaConfig {
    let mut c: LmaConfig = serde_saphyr::from_str(&format!(
        "address: {LMA}\nprefix_pools: [{{prefix: '2001:db8:100::/48'}}]\n"
    ))
    .unwrap();
    c.ipv4_pools = pools
        .iter()
        .map(|p| Ipv4Pool {
            prefix: p.parse().unwrap(),
            default_router: None,
        })
        .collect();
    c.authorized_mags = (0..mags).map(|i| mag_addr(i).into()).collect();
    c.mobile_nodes = profiles.to_vec();
    c
}

fn mag_config(i: usize, profiles: &[MobileNodeProfile]) -> MagConfig {
    let mut c: MagConfig = serde_saphyr::from_str(&format!(
        "proxy_coa: '{}'\nlma_address: '{LMA}'\naccess_interfaces: ['acc*']\n",
        mag_addr(i)
    ))
    .unwrap();
    c.mobile_nodes = profiles.to_vec();
    c
}

/// A domain where the LMA and the MAGs have the same profiles.
fn domain(mags: usize, profiles: &[MobileNodeProfile], pools: &[&str]) -> Sim {
    domain_with(mags, profiles, profiles, pools)
}

/// The LMA's profiles and the MAGs' may differ (what a MAG asks for, what the LMA allows).
fn domain_with(
    mags: usize,
    at_lma: &[MobileNodeProfile],
    at_mag: &[MobileNodeProfile],
    pools: &[&str],
) -> Sim {
    let cfgs = (0..mags).map(|i| mag_config(i, at_mag)).collect();
    Sim::new(lma_config(mags, at_lma, pools), cfgs, 7)
}

/// Every PBA sent: status, IPv4 Home Address Reply (status, Prefix-len, address), IPv4
/// Default-Router Address, whether a Home Network Prefix option was in it.
type Pba = (u8, Option<(u8, u8, Ipv4Addr)>, Option<Ipv4Addr>, bool);

fn pbas(sim: &Sim) -> Vec<Pba> {
    sim.sent
        .iter()
        .filter_map(|(_, p)| match p.message() {
            Some(Message::BindingAck(ba)) => {
                let mut reply = None;
                let mut router = None;
                let mut hnp = false;
                for o in ba.options.iter() {
                    match o {
                        MobilityOption::Ipv4HomeAddressReply {
                            status,
                            prefix_len,
                            address,
                        } => reply = Some((status.value(), prefix_len, address)),
                        MobilityOption::Ipv4DefaultRouterAddress(r) => router = Some(r),
                        MobilityOption::HomeNetworkPrefix(_) => hnp = true,
                        _ => {}
                    }
                }
                Some((ba.status.value(), reply, router, hnp))
            }
            _ => None,
        })
        .collect()
}

/// Every PBU sent: its IPv4 Home Address Request and whether it had a prefix option.
fn pbus(sim: &Sim) -> Vec<(Option<(u8, Ipv4Addr)>, bool)> {
    sim.sent
        .iter()
        .filter_map(|(_, p)| match p.message() {
            Some(Message::BindingUpdate(bu)) => {
                let mut v4 = None;
                let mut hnp = false;
                for o in bu.options.iter() {
                    match o {
                        MobilityOption::Ipv4HomeAddressRequest {
                            prefix_len,
                            address,
                        } => v4 = Some((prefix_len, address)),
                        MobilityOption::HomeNetworkPrefix(_) => hnp = true,
                        _ => {}
                    }
                }
                Some((v4, hnp))
            }
            _ => None,
        })
        .collect()
}

fn host(a: Ipv4Addr) -> IpNet {
    IpNet::V4(Ipv4Net::from(a))
}

fn ipv4_at_mag(sim: &Sim, mag: usize, n: u16) -> Option<Ipv4HomeAddress> {
    sim.mags[mag].binding(&nai(n)).and_then(|e| e.ipv4)
}

/// §3.1.2.2, §3.1.2.6, §3.2.3.1, §3.2.3.2: a dual-stack node gets a prefix and an IPv4 home
/// address from the pool, with the subnet's prefix length and default router; the PBA says
/// so with an IPv4 Home Address Reply (status 0) and the IPv4 Default-Router Address; both
/// ends route the address through the tunnel and onto the access link.
#[test]
fn dual_stack_node_gets_an_ipv4_home_address_and_both_ends_route_it() {
    let p = [profile(1, true, true)];
    let mut sim = domain(1, &p, &["192.0.2.0/24"]);
    sim.attach(0, ll(1));
    sim.settle(Duration::from_secs(5));
    let v4 = ipv4_at_mag(&sim, 0, 1).expect("an IPv4 home address in the BUL");
    assert_eq!(
        v4.address,
        a4("192.0.2.2"),
        "the first node address (.1 is the router)"
    );
    assert_eq!((v4.prefix_len, v4.default_router), (24, a4("192.0.2.1")));
    assert!(sim.mags[0].binding(&nai(1)).unwrap().dhcp_server, "S=1");
    assert_eq!(pbus(&sim)[0], (Some((0, Ipv4Addr::UNSPECIFIED)), true));
    assert_eq!(
        pbas(&sim)[0],
        (
            0,
            Some((0, 24, a4("192.0.2.2"))),
            Some(a4("192.0.2.1")),
            true
        )
    );
    let h = host(v4.address);
    assert_eq!(
        sim.lma_datapath.get(&h),
        Some(&Downlink::Tunnel(mag_addr(0)))
    );
    assert_eq!(
        sim.mag_datapaths[0].uplinks.get(&h),
        Some(&LMA.parse().unwrap())
    );
    assert!(sim.mag_datapaths[0].access_routes.contains_key(&h));
    let s = sim
        .lma
        .cache()
        .by_ipv4(&v4.address)
        .expect("found by its IPv4 address");
    assert_eq!(sim.lma.cache().get(s).unwrap().prefixes.as_slice().len(), 1);
}

/// §3.1.2.1, §3.1.2.6, §3.2.3.1: an IPv4-only node: no prefix option in the PBU nor in the
/// PBA, no Router Advertisement, the IPv4 home address only.
#[test]
fn ipv4_only_node_registers_without_a_prefix() {
    let p = [profile(1, false, true)];
    let mut sim = domain(1, &p, &["198.51.100.0/28"]);
    sim.attach(0, ll(1));
    sim.settle(Duration::from_secs(5));
    assert!(sim.mags[0].binding(&nai(1)).unwrap().is_bound());
    assert_eq!(pbus(&sim)[0], (Some((0, Ipv4Addr::UNSPECIFIED)), false));
    let (status, reply, router, hnp) = pbas(&sim)[0];
    assert_eq!((status, hnp), (0, false));
    assert_eq!(reply, Some((0, 28, a4("198.51.100.2"))));
    assert_eq!(router, Some(a4("198.51.100.1")));
    let s = sim.lma.cache().sessions_of(&nai(1)).next().unwrap();
    assert!(
        sim.lma
            .cache()
            .get(s)
            .unwrap()
            .prefixes
            .as_slice()
            .is_empty()
    );
    assert!(
        sim.router_advertisements.is_empty(),
        "no IPv6 on the link of an IPv4-only node"
    );
}

/// §3.1.2.2: no address left in the pool: 130 (Insufficient resources) with an IPv4 Home
/// Address Reply of status 128, echoing the request.
#[test]
fn an_exhausted_pool_gives_130() {
    // A /30 has one node address.
    let p = [profile(1, true, true), profile(2, true, true)];
    let mut sim = domain(1, &p, &["203.0.113.0/30"]);
    sim.attach(0, ll(1));
    sim.settle(Duration::from_secs(5));
    assert_eq!(ipv4_at_mag(&sim, 0, 1).unwrap().address, a4("203.0.113.2"));
    sim.attach(0, ll(2));
    sim.settle(Duration::from_secs(5));
    let refused: Vec<Pba> = pbas(&sim).into_iter().filter(|p| p.0 >= 128).collect();
    assert_eq!(
        refused[0],
        (130, Some((128, 0, Ipv4Addr::UNSPECIFIED)), None, true)
    );
    assert!(matches!(
        sim.mags[0].binding(&nai(2)).unwrap().state,
        BulState::Denied { .. }
    ));
}

/// §3.1.2.2: an address not anchored here (outside every pool), or held by another node:
/// 171 with an IPv4 Home Address Reply of status 129. §3.2.3.2: the MAG does not ask for
/// the same address again but asks for any (ALL_ZERO), and the node is served.
#[test]
fn an_address_outside_the_pools_or_held_by_another_node_gives_171_then_any_is_asked_for() {
    let lma_side = [profile(1, true, true), profile(2, true, true)];
    let mut outside = profile(1, true, true);
    outside.ipv4_home_address = Some(a4("198.51.100.9"));
    let mut taken = profile(2, true, true);
    taken.ipv4_home_address = Some(a4("192.0.2.2"));
    let mut sim = domain_with(1, &lma_side, &[outside, taken], &["192.0.2.0/24"]);
    sim.attach(0, ll(1));
    sim.settle(Duration::from_secs(5));
    let seen = pbas(&sim);
    assert_eq!(
        seen[0],
        (171, Some((129, 0, a4("198.51.100.9"))), None, true)
    );
    assert_eq!(seen[1].0, 0);
    assert_eq!(
        pbus(&sim)[1].0,
        Some((0, Ipv4Addr::UNSPECIFIED)),
        "the retry asks for any"
    );
    let got = ipv4_at_mag(&sim, 0, 1).unwrap().address;
    assert_eq!(got, a4("192.0.2.2"));
    // Node 2's MAG asks for the address node 1 holds.
    sim.attach(0, ll(2));
    sim.settle(Duration::from_secs(5));
    let refused: Vec<Pba> = pbas(&sim).into_iter().skip(2).collect();
    assert_eq!(
        refused[0],
        (171, Some((129, 0, a4("192.0.2.2"))), None, true)
    );
    assert_ne!(ipv4_at_mag(&sim, 0, 2).unwrap().address, got);
    assert_eq!(
        ipv4_at_mag(&sim, 0, 1).unwrap().address,
        got,
        "node 1 keeps it"
    );
}

/// §3.1.2.1: a node not authorized for IPv4 (or an LMA without an IPv4 pool): 170. §3.2.3.2:
/// the MAG stops asking for IPv4 and the node keeps its IPv6 service.
#[test]
fn not_authorized_for_ipv4_gives_170_and_the_node_keeps_ipv6() {
    for pools in [&["192.0.2.0/24"][..], &[][..]] {
        let at_lma = [profile(1, true, pools.is_empty())];
        let at_mag = [profile(1, true, true)];
        let mut sim = domain_with(1, &at_lma, &at_mag, pools);
        sim.attach(0, ll(1));
        sim.settle(Duration::from_secs(5));
        let seen = pbas(&sim);
        assert_eq!(seen[0].0, 170, "{pools:?}");
        assert_eq!(seen[0].1, Some((129, 0, Ipv4Addr::UNSPECIFIED)));
        assert_eq!(seen[1].0, 0);
        assert_eq!(pbus(&sim)[1], (None, true), "no IPv4 request after a 170");
        let e = sim.mags[0].binding(&nai(1)).unwrap();
        assert!(e.is_bound() && e.ipv4.is_none() && !e.prefixes.is_empty());
    }
}

/// §3.1.2.1: a prefix option for a node not authorized for IPv6: 172; §3.2.3.2: the MAG
/// goes on with IPv4 alone.
#[test]
fn not_authorized_for_ipv6_gives_172_and_the_node_keeps_ipv4() {
    let at_lma = [profile(1, false, true)];
    let at_mag = [profile(1, true, true)];
    let mut sim = domain_with(1, &at_lma, &at_mag, &["192.0.2.0/24"]);
    sim.attach(0, ll(1));
    sim.settle(Duration::from_secs(5));
    let seen = pbas(&sim);
    assert_eq!(seen[0].0, 172);
    assert_eq!((seen[1].0, seen[1].3), (0, false));
    assert_eq!(pbus(&sim)[1], (Some((0, Ipv4Addr::UNSPECIFIED)), false));
    assert!(ipv4_at_mag(&sim, 0, 1).is_some());
}

/// §3.3.5: two IPv4 Home Address Request options: 173, with a reply to the first.
#[test]
fn two_ipv4_requests_give_173() {
    let p = [profile(1, true, true)];
    let mut sim = domain(1, &p, &["192.0.2.0/24"]);
    let id = nai(1);
    let opts = [
        MobilityOption::MobileNodeIdentifier {
            subtype: MN_ID_SUBTYPE_NAI,
            id: id.as_bytes(),
        },
        MobilityOption::HomeNetworkPrefix(Default::default()),
        MobilityOption::HandoffIndicator(HandoffIndicator::AttachmentOverNewInterface),
        MobilityOption::AccessTechnologyType(AccessTechnologyType::Ieee8023),
        MobilityOption::Ipv4HomeAddressRequest {
            prefix_len: 0,
            address: Ipv4Addr::UNSPECIFIED,
        },
        MobilityOption::Ipv4HomeAddressRequest {
            prefix_len: 0,
            address: a4("192.0.2.9"),
        },
    ];
    let m = Message::BindingUpdate(BindingUpdate {
        sequence: SequenceNumber(1),
        flags: BuFlags::A | BuFlags::P,
        lifetime: Lifetime::from_secs(60),
        options: Options::List(&opts),
    });
    let (src, dst) = (mag_addr(0), LMA.parse().unwrap());
    let mut bytes = vec![0u8; m.buffer_len()];
    m.emit_with_checksum(&mut bytes, &src, &dst).unwrap();
    sim.lma_do(|lma, now, wall| lma.handle_message(now, wall, src, dst, &bytes));
    let (status, reply, router, _) = pbas(&sim)[0];
    assert_eq!(status, 173);
    assert_eq!(reply, Some((128, 0, Ipv4Addr::UNSPECIFIED)));
    assert_eq!(router, None, "no default router in a refusal");
}

/// §3.1.2.4, §3.1.2.7, §3.2.3.3: after a handover the new MAG asks for any address and the
/// node keeps the same one; the LMA's host route follows the node; re-registrations carry
/// the assigned address.
#[test]
fn a_handover_keeps_the_ipv4_home_address() {
    let p = [profile(1, true, true)];
    let mut sim = domain(2, &p, &["192.0.2.0/24"]);
    sim.attach(0, ll(1));
    sim.settle(Duration::from_secs(5));
    let before = ipv4_at_mag(&sim, 0, 1).unwrap();
    sim.detach(0, ll(1));
    sim.attach(1, ll(1));
    sim.settle(Duration::from_secs(20));
    let after = ipv4_at_mag(&sim, 1, 1).expect("served at the new MAG");
    assert_eq!(after, before);
    assert_eq!(
        sim.lma_datapath.get(&host(before.address)),
        Some(&Downlink::Tunnel(mag_addr(1)))
    );
    assert!(
        !sim.mag_datapaths[0]
            .uplinks
            .contains_key(&host(before.address))
    );
    // A refresh at the new MAG names the address (§3.2.3.3).
    sim.mag_do(1, |m, now, wall| m.reregister_all(now, wall));
    sim.settle(Duration::from_secs(5));
    assert_eq!(
        pbus(&sim).last().unwrap().0,
        Some((24, before.address)),
        "{:?}",
        pbus(&sim)
    );
    assert_eq!(pbas(&sim).last().unwrap().0, 0);
}

/// The durable record carries the IPv4 home address: an LMA restored from a snapshot finds
/// the session by it, programs its host route again, and gives it to nobody else.
#[test]
fn a_restored_lma_keeps_every_ipv4_home_address() {
    let p = [
        profile(1, true, true),
        profile(2, false, true),
        profile(3, true, true),
    ];
    let mut sim = domain(1, &p, &["192.0.2.0/29"]);
    for n in 1..=2 {
        sim.attach(0, ll(n));
    }
    sim.settle(Duration::from_secs(5));
    let held: Vec<Ipv4Addr> = (1..=2)
        .map(|n| ipv4_at_mag(&sim, 0, n).unwrap().address)
        .collect();
    let snapshot = sim.lma.snapshot(sim.now, sim.wall());
    assert!(
        snapshot
            .bindings
            .iter()
            .all(|r| r.ipv4_home_address.is_some())
    );
    let json = serde_json::to_string(&snapshot).unwrap();
    let back: pmip::lma::LmaSnapshot = serde_json::from_str(&json).unwrap();
    sim.restart_lma(&back);
    sim.settle(Duration::from_secs(5));
    for a in &held {
        assert!(sim.lma.cache().by_ipv4(a).is_some(), "{a}");
        assert_eq!(
            sim.lma_datapath.get(&host(*a)),
            Some(&Downlink::Tunnel(mag_addr(0)))
        );
    }
    sim.attach(0, ll(3));
    sim.settle(Duration::from_secs(5));
    let third = ipv4_at_mag(&sim, 0, 3).unwrap().address;
    assert!(!held.contains(&third), "{third} was held");
}

/// §3.1.2.5 with §3.2.3.3: a de-registration naming only the IPv4 home address removes it
/// and keeps the session with its prefix.
#[test]
fn a_selective_deregistration_removes_only_the_ipv4_home_address() {
    let p = [profile(1, true, true)];
    let mut sim = domain(1, &p, &["192.0.2.0/24"]);
    sim.attach(0, ll(1));
    sim.settle(Duration::from_secs(5));
    let v4 = ipv4_at_mag(&sim, 0, 1).unwrap();
    let s = sim.lma.cache().sessions_of(&nai(1)).next().unwrap();
    let id = nai(1);
    let node = ll(1);
    let opts = [
        MobilityOption::MobileNodeIdentifier {
            subtype: MN_ID_SUBTYPE_NAI,
            id: id.as_bytes(),
        },
        MobilityOption::HandoffIndicator(HandoffIndicator::HandoffStateNotChanged),
        MobilityOption::AccessTechnologyType(AccessTechnologyType::Ieee8023),
        MobilityOption::Timestamp(Timestamp::from_wall_clock(sim.wall())),
        MobilityOption::MnLinkLayerIdentifier(node.as_bytes()),
        MobilityOption::Ipv4HomeAddressRequest {
            prefix_len: 24,
            address: v4.address,
        },
    ];
    let m = Message::BindingUpdate(BindingUpdate {
        sequence: SequenceNumber(999),
        flags: BuFlags::A | BuFlags::P,
        lifetime: Lifetime::ZERO,
        options: Options::List(&opts),
    });
    let (src, dst) = (mag_addr(0), LMA.parse().unwrap());
    let mut bytes = vec![0u8; m.buffer_len()];
    m.emit_with_checksum(&mut bytes, &src, &dst).unwrap();
    sim.lma_do(|lma, now, wall| lma.handle_message(now, wall, src, dst, &bytes));
    let e = sim.lma.cache().get(s).expect("the session stays");
    assert!(e.ipv4.is_none());
    assert_eq!(e.prefixes.as_slice().len(), 1);
    assert!(sim.lma.cache().by_ipv4(&v4.address).is_none());
    assert!(!sim.lma_datapath.contains_key(&host(v4.address)));
    assert_eq!(pbas(&sim).last().unwrap().0, 0);
}

/// §3.2.3.2: an accepted PBA without an IPv4 Home Address Reply enables no IPv4 (a MAG that
/// asked for none gets none, and nothing is routed).
#[test]
fn no_ipv4_asked_none_given() {
    let p = [profile(1, true, false)];
    let mut sim = domain(1, &p, &["192.0.2.0/24"]);
    sim.attach(0, ll(1));
    sim.settle(Duration::from_secs(5));
    assert_eq!(pbus(&sim)[0].0, None);
    assert_eq!(pbas(&sim)[0], (0, None, None, true));
    assert!(ipv4_at_mag(&sim, 0, 1).is_none());
    assert!(
        sim.lma_datapath.keys().all(|k| matches!(k, IpNet::V6(_))),
        "{:?}",
        sim.lma_datapath
    );
    assert!(
        sim.mag_events_of(0)
            .any(|e| matches!(e, MagEvent::Registered { .. }))
    );
}

fn routed_at_mag(sim: &Sim, mag: usize, h: &IpNet) -> bool {
    let d = &sim.mag_datapaths[mag];
    d.uplinks.contains_key(h) || d.access_routes.contains_key(h)
}

/// §3.2.3.3: "the mobile access gateway MUST remove any forwarding state set up for the mobile
/// node's IPv4 home address": when the node leaves (de-registration) as for its prefixes.
#[test]
fn a_detach_unroutes_the_ipv4_home_address_with_the_prefix() {
    let p = [profile(1, true, true)];
    let mut sim = domain(1, &p, &["192.0.2.0/24"]);
    sim.attach(0, ll(1));
    sim.settle(Duration::from_secs(5));
    let v4 = ipv4_at_mag(&sim, 0, 1).unwrap();
    let prefix = IpNet::V6(sim.mags[0].binding(&nai(1)).unwrap().prefixes[0]);
    let h = host(v4.address);
    assert!(routed_at_mag(&sim, 0, &h) && routed_at_mag(&sim, 0, &prefix));
    sim.detach(0, ll(1));
    // Past the LMA's MinDelayBeforeBCEDelete (RFC 5213 §5.3.5).
    sim.run_for(Duration::from_secs(20));
    assert!(!routed_at_mag(&sim, 0, &h), "{:?}", sim.mag_datapaths[0]);
    assert!(!routed_at_mag(&sim, 0, &prefix));
    assert!(!sim.lma_datapath.contains_key(&h), "{:?}", sim.lma_datapath);
    assert!(!sim.lma_datapath.contains_key(&prefix));
}

/// §3.2.3.3 on expiry: an IPv4-only node whose binding lapses (the LMA stops answering) loses
/// its IPv4 routes at the MAG, and gets no Router Advertisement withdrawing anything: it never
/// had IPv6 service on the link (§3.2.3.1).
#[test]
fn an_expired_ipv4_only_binding_is_unrouted_without_an_ra() {
    let p = [profile(1, false, true)];
    let mut sim = domain(1, &p, &["198.51.100.0/28"]);
    sim.attach(0, ll(1));
    sim.settle(Duration::from_secs(5));
    let h = host(ipv4_at_mag(&sim, 0, 1).unwrap().address);
    assert!(routed_at_mag(&sim, 0, &h));
    let lma: Ipv6Addr = LMA.parse().unwrap();
    sim.drop = Some(Box::new(move |pk: &pmip::sim::Packet| pk.src == lma));
    sim.run_for(Duration::from_secs(4 * 3600));
    assert!(
        sim.mag_events_of(0)
            .any(|e| matches!(e, MagEvent::Expired { .. })),
        "{:?}",
        sim.mag_events_of(0).collect::<Vec<_>>()
    );
    assert!(!routed_at_mag(&sim, 0, &h), "{:?}", sim.mag_datapaths[0]);
    assert!(
        sim.router_advertisements.is_empty(),
        "{:?}",
        sim.router_advertisements
    );
}

/// RFC 5846 §8.2 rule 4: a MAG's BRI with V, the MN-ID and the IPv4 Home Address Request
/// option removes only the IPv4 home address binding; the prefix stays. Without the option:
/// "IPv4 Home Address Option Required"; another address: "Binding Does NOT Exist".
#[test]
fn a_mags_revocation_with_v_releases_only_the_ipv4_home_address() {
    let p = [profile(1, true, true)];
    let mut sim = domain(1, &p, &["192.0.2.0/24"]);
    sim.attach(0, ll(1));
    sim.settle(Duration::from_secs(5));
    let home = ipv4_at_mag(&sim, 0, 1).unwrap();
    let s = sim.lma.cache().sessions_of(&nai(1)).next().unwrap();
    let prefix = sim.lma.cache().get(s).unwrap().prefixes.as_slice()[0];
    let id = nai(1);
    let bri = |seq: u16, v4: Option<Ipv4Addr>| {
        let mut opts = vec![MobilityOption::MobileNodeIdentifier {
            subtype: 1,
            id: id.as_bytes(),
        }];
        if let Some(a) = v4 {
            opts.push(MobilityOption::Ipv4HomeAddressRequest {
                prefix_len: 24,
                address: a,
            });
        }
        let m = Message::BindingRevocation(BindingRevocation::Indication(
            BindingRevocationIndication {
                trigger: RevocationTrigger::UserInitiatedSessionTermination,
                sequence: SequenceNumber(seq),
                flags: RevocationFlags::P | RevocationFlags::V,
                options: Options::List(&opts),
            },
        ));
        let (src, dst): (Ipv6Addr, Ipv6Addr) = (mag_addr(0), LMA.parse().unwrap());
        let mut b = vec![0u8; m.buffer_len()];
        m.emit_with_checksum(&mut b, &src, &dst).unwrap();
        pmip::sim::Packet { src, dst, bytes: b }
    };
    let bra = |sim: &Sim, seq: u16| {
        sim.sent.iter().find_map(|(_, p)| match p.message() {
            Some(Message::BindingRevocation(BindingRevocation::Acknowledgement(a)))
                if a.sequence == SequenceNumber(seq) =>
            {
                Some(a.status)
            }
            _ => None,
        })
    };
    sim.inject(bri(1, None));
    sim.inject(bri(2, Some(a4("192.0.2.250"))));
    sim.run_for(Duration::from_millis(5));
    assert_eq!(bra(&sim, 1), Some(BraStatus::Ipv4HomeAddressOptionRequired));
    assert_eq!(bra(&sim, 2), Some(BraStatus::BindingDoesNotExist));
    sim.inject(bri(3, Some(home.address)));
    sim.run_for(Duration::from_millis(5));
    assert_eq!(bra(&sim, 3), Some(BraStatus::Success));
    let e = sim.lma.cache().get(s).expect("the session stays");
    assert_eq!(e.ipv4, None);
    assert_eq!(e.prefixes.as_slice(), &[prefix]);
    assert!(!sim.lma_datapath.contains_key(&host(home.address)));
    assert_eq!(
        sim.lma_datapath.get(&IpNet::from(prefix)),
        Some(&Downlink::Tunnel(mag_addr(0)))
    );
}

/// RFC 5846 §9.1: a BRI with V from the LMA makes the MAG release only the node's IPv4 home
/// address (its routes go; the node keeps its prefix and binding, and asks for no IPv4 in
/// its refreshes); without the IPv4 Home Address Request option, 129; another address, 128.
#[test]
fn a_revocation_with_v_at_the_mag_releases_only_the_ipv4_home_address() {
    let p = [profile(1, true, true)];
    let mut sim = domain(1, &p, &["192.0.2.0/24"]);
    sim.attach(0, ll(1));
    sim.settle(Duration::from_secs(5));
    let home = ipv4_at_mag(&sim, 0, 1).unwrap();
    let id = nai(1);
    let bri = |seq: u16, v4: Option<Ipv4Addr>| {
        let mut opts = vec![MobilityOption::MobileNodeIdentifier {
            subtype: 1,
            id: id.as_bytes(),
        }];
        if let Some(a) = v4 {
            opts.push(MobilityOption::Ipv4HomeAddressRequest {
                prefix_len: 24,
                address: a,
            });
        }
        let m = Message::BindingRevocation(BindingRevocation::Indication(
            BindingRevocationIndication {
                trigger: RevocationTrigger::UserInitiatedSessionTermination,
                sequence: SequenceNumber(seq),
                flags: RevocationFlags::P | RevocationFlags::V,
                options: Options::List(&opts),
            },
        ));
        let (src, dst): (Ipv6Addr, Ipv6Addr) = (LMA.parse().unwrap(), mag_addr(0));
        let mut b = vec![0u8; m.buffer_len()];
        m.emit_with_checksum(&mut b, &src, &dst).unwrap();
        pmip::sim::Packet { src, dst, bytes: b }
    };
    let bra = |sim: &Sim, seq: u16| {
        sim.sent.iter().find_map(|(_, p)| match p.message() {
            Some(Message::BindingRevocation(BindingRevocation::Acknowledgement(a)))
                if p.src == mag_addr(0) && a.sequence == SequenceNumber(seq) =>
            {
                Some(a.status)
            }
            _ => None,
        })
    };
    sim.inject(bri(1, None));
    sim.inject(bri(2, Some(a4("192.0.2.250"))));
    sim.run_for(Duration::from_millis(5));
    assert_eq!(bra(&sim, 1), Some(BraStatus::Ipv4HomeAddressOptionRequired));
    assert_eq!(bra(&sim, 2), Some(BraStatus::BindingDoesNotExist));
    assert_eq!(ipv4_at_mag(&sim, 0, 1), Some(home));
    sim.inject(bri(3, Some(home.address)));
    sim.run_for(Duration::from_millis(5));
    assert_eq!(bra(&sim, 3), Some(BraStatus::Success));
    let e = sim.mags[0].binding(&nai(1)).expect("the binding stays");
    assert!(e.is_bound());
    assert_eq!(e.ipv4, None);
    assert_eq!(e.prefixes.len(), 1);
    assert!(
        !sim.mag_datapaths[0]
            .uplinks
            .contains_key(&host(home.address))
    );
    assert!(
        sim.mag_datapaths[0]
            .uplinks
            .contains_key(&IpNet::from(e.prefixes[0]))
    );
    // Its refresh asks for no IPv4 home address.
    sim.mag_do(0, |m, now, wall| m.reregister_all(now, wall));
    sim.settle(Duration::from_secs(5));
    assert_eq!(pbus(&sim).last().unwrap().0, None);
}

/// A PBU as sent: lifetime (4 s units), IPv4 Home Address Request, whether a Home Network
/// Prefix option was in it.
type SentPbu = (u16, Option<(u8, Ipv4Addr)>, bool);

/// The PBUs sent after the first `from` packets.
fn pbus_since(sim: &Sim, from: usize) -> Vec<SentPbu> {
    sim.sent[from..]
        .iter()
        .filter_map(|(_, p)| match p.message() {
            Some(Message::BindingUpdate(bu)) => {
                let mut v4 = None;
                let mut hnp = false;
                for o in bu.options.iter() {
                    match o {
                        MobilityOption::Ipv4HomeAddressRequest {
                            prefix_len,
                            address,
                        } => v4 = Some((prefix_len, address)),
                        MobilityOption::HomeNetworkPrefix(_) => hnp = true,
                        _ => {}
                    }
                }
                Some((bu.lifetime.0, v4, hnp))
            }
            _ => None,
        })
        .collect()
}

/// §3.4.3 with §3.2.3.3: a DHCPRELEASE of a dual-stack node de-registers its IPv4 home
/// address alone: a PBU with lifetime 0, no prefix option and exactly one IPv4 Home Address
/// Request naming the address and its prefix length, retransmitted until its PBA. Both ends
/// stop routing the address; the session, its prefix and their routes stay ("MUST NOT
/// release any IPv6 home network prefix(es)"), and its refreshes no longer ask for IPv4.
#[test]
fn a_dhcp_release_de_registers_the_ipv4_home_address_and_keeps_the_prefix() {
    let p = [profile(1, true, true)];
    let mut sim = domain(1, &p, &["192.0.2.0/24"]);
    sim.attach(0, ll(1));
    sim.settle(Duration::from_secs(5));
    let v4 = ipv4_at_mag(&sim, 0, 1).unwrap();
    let prefix = sim.mags[0].binding(&nai(1)).unwrap().prefixes[0];
    let s = sim.lma.cache().sessions_of(&nai(1)).next().unwrap();
    let (h, p6) = (host(v4.address), IpNet::from(prefix));
    assert!(routed_at_mag(&sim, 0, &h) && sim.lma_datapath.contains_key(&h));
    // Not this node's address, or not a node here: nothing happens.
    let before = sim.sent.len();
    assert!(!sim.mag_do(0, |m, now, wall| m.handle_ipv4_release(
        now,
        wall,
        &ll(1),
        a4("192.0.2.200")
    )));
    assert!(!sim.mag_do(0, |m, now, wall| m.handle_ipv4_release(
        now,
        wall,
        &ll(9),
        v4.address
    )));
    assert_eq!(sim.sent.len(), before, "no PBU for a wrong release");

    // The LMA's answer is lost: a de-registration is not retransmitted (RFC 5213 §6.9.1.4),
    // the MAG is done after INITIAL_BINDACK_TIMEOUT.
    let lma: Ipv6Addr = LMA.parse().unwrap();
    let mut first = true;
    sim.drop = Some(Box::new(move |pk: &pmip::sim::Packet| {
        let drop = first && pk.src == lma;
        first &= !drop;
        drop
    }));
    assert!(sim.mag_do(0, |m, now, wall| m.handle_ipv4_release(
        now,
        wall,
        &ll(1),
        v4.address
    )));
    // The MAG stops forwarding the address at once; the prefix stays routed.
    assert!(!routed_at_mag(&sim, 0, &h), "{:?}", sim.mag_datapaths[0]);
    assert!(routed_at_mag(&sim, 0, &p6));
    sim.settle(Duration::from_secs(10));
    let release = (0, Some((v4.prefix_len, v4.address)), false);
    assert_eq!(pbus_since(&sim, before), vec![release]);
    assert_eq!(sim.dropped, 1, "the PBA");
    assert!(sim.mag_events_of(0).any(|e| matches!(
        e,
        MagEvent::Ipv4Released { address, session_ended: false, .. } if *address == v4.address
    )));
    // The LMA: the session and its prefix stay, the address and its route go.
    let e = sim.lma.cache().get(s).expect("the session stays");
    assert!(e.ipv4.is_none());
    assert_eq!(e.prefixes.as_slice(), &[prefix]);
    assert!(sim.lma.cache().by_ipv4(&v4.address).is_none());
    assert!(!sim.lma_datapath.contains_key(&h));
    assert!(sim.lma_datapath.contains_key(&p6));
    // The MAG: bound, with its prefix and no IPv4 home address.
    let m = sim.mags[0].binding(&nai(1)).unwrap();
    assert_eq!(
        (m.state, m.ipv4, m.prefixes.as_slice()),
        (BulState::Bound, None, &[prefix][..])
    );
    // The next refreshes carry the prefix and no IPv4 request, and are accepted.
    let before = sim.sent.len();
    sim.run_for(Duration::from_secs(2 * 3600));
    let refreshes = pbus_since(&sim, before);
    assert!(!refreshes.is_empty());
    assert!(
        refreshes
            .iter()
            .all(|(l, v4, hnp)| *l > 0 && v4.is_none() && *hnp),
        "{refreshes:?}"
    );
    assert!(sim.mags[0].binding(&nai(1)).unwrap().is_bound());
    assert!(sim.lma.cache().get(s).is_some() && routed_at_mag(&sim, 0, &p6));

    // §3.2.3.3: asked for again (a new DHCPDISCOVER), the address comes back with a refresh
    // carrying an IPv4 Home Address Request for any address, and is routed again.
    let before = sim.sent.len();
    assert!(sim.mag_do(0, |m, now, wall| m.handle_ipv4_request(now, wall, &ll(1))));
    sim.settle(Duration::from_secs(5));
    let again = pbus_since(&sim, before);
    assert_eq!(again[0].1, Some((0, Ipv4Addr::UNSPECIFIED)), "{again:?}");
    assert!(again[0].0 > 0 && again[0].2);
    let v4b = ipv4_at_mag(&sim, 0, 1).expect("an IPv4 home address again");
    assert!(routed_at_mag(&sim, 0, &host(v4b.address)));
    assert_eq!(
        sim.lma.cache().by_ipv4(&v4b.address),
        Some(s),
        "the same session"
    );
    // Once it has one, nothing more to ask.
    assert!(!sim.mag_do(0, |m, now, wall| m.handle_ipv4_request(now, wall, &ll(1))));
}

/// §3.4.3: an IPv4-only node that releases its address has nothing left in its session:
/// it is de-registered (lifetime 0 naming the address), and both ends forget it.
#[test]
fn a_dhcp_release_of_an_ipv4_only_node_ends_its_session() {
    let p = [profile(1, false, true)];
    let mut sim = domain(1, &p, &["198.51.100.0/28"]);
    sim.attach(0, ll(1));
    sim.settle(Duration::from_secs(5));
    let v4 = ipv4_at_mag(&sim, 0, 1).unwrap();
    let h = host(v4.address);
    let before = sim.sent.len();
    assert!(sim.mag_do(0, |m, now, wall| m.handle_ipv4_release(
        now,
        wall,
        &ll(1),
        v4.address
    )));
    sim.run_for(Duration::from_secs(30));
    assert_eq!(
        pbus_since(&sim, before)[0],
        (0, Some((v4.prefix_len, v4.address)), false)
    );
    assert!(sim.mag_events_of(0).any(|e| matches!(
        e,
        MagEvent::Ipv4Released {
            session_ended: true,
            ..
        }
    )));
    assert!(sim.mags[0].binding(&nai(1)).is_none());
    assert!(!routed_at_mag(&sim, 0, &h));
    assert_eq!(sim.lma.cache().len(), 0, "MinDelayBeforeBCEDelete passed");
    assert!(!sim.lma_datapath.contains_key(&h));
}

// ------------------------------------------------ fast handovers (RFC 5949 §4.3, §6.2.7)

/// A domain with fast handovers in `mode`.
fn fast_domain(
    mode: pmip::config::FastHandoverMode,
    profiles: &[MobileNodeProfile],
    pools: &[&str],
) -> Sim {
    let mut lc = lma_config(2, profiles, pools);
    lc.domain.fast_handover.mode = mode;
    let mags = (0..2)
        .map(|i| {
            let mut c = mag_config(i, profiles);
            c.domain.fast_handover.mode = mode;
            c
        })
        .collect();
    Sim::new(lc, mags, 77)
}

/// A context's IPv4 part: the message's name, the IPv4 Address option (Prefix-len, address)
/// and the IPv4 Default-Router Address option.
type Ipv4Context = (&'static str, Option<(u8, Ipv4Addr)>, Option<Ipv4Addr>);

/// The IPv4 part of every HI and HAck sent.
fn contexts(sim: &Sim) -> Vec<Ipv4Context> {
    let v4 = |options: &Options<'_>| {
        let mut a = None;
        let mut r = None;
        for o in options.iter() {
            match o {
                MobilityOption::Ipv4HomeAddressRequest {
                    prefix_len,
                    address,
                } => a = Some((prefix_len, address)),
                MobilityOption::Ipv4DefaultRouterAddress(d) => r = Some(d),
                _ => {}
            }
        }
        (a, r)
    };
    sim.sent
        .iter()
        .filter_map(|(_, p)| match p.message() {
            Some(Message::HandoverInitiate(hi)) => {
                let (a, r) = v4(&hi.options);
                Some(("HI", a, r))
            }
            Some(Message::HandoverAck(hack)) => {
                let (a, r) = v4(&hack.options);
                Some(("HAck", a, r))
            }
            _ => None,
        })
        .collect()
}

/// Predictive: the previous MAG's context carries the IPv4 home address (§6.2.7) with its
/// default router; the new MAG buffers it with the prefix, flushes it to the node when it
/// attaches, sends its uplink through the previous MAG before its own PBA, asks the LMA for
/// the same address, and the node keeps it.
#[test]
fn a_predictive_fast_handover_serves_the_ipv4_home_address_from_the_context() {
    use pmip::config::FastHandoverMode;
    let p = [profile(1, true, true)];
    let mut sim = fast_domain(FastHandoverMode::Predictive, &p, &["192.0.2.0/24"]);
    sim.attach(0, ll(1));
    sim.settle(Duration::from_secs(2));
    let v4 = ipv4_at_mag(&sim, 0, 1).unwrap();
    let h = host(v4.address);
    sim.mag_do(0, |m, now, _| {
        m.handle_handover_indication(now, &nai(1), mag_addr(1))
    })
    .unwrap();
    sim.run_for(Duration::from_millis(5));
    assert_eq!(
        contexts(&sim)[0],
        ("HI", Some((24, v4.address)), Some(v4.default_router))
    );
    assert!(sim.mag_datapaths[1].buffering.contains(&h), "NMAG buffers");
    assert_eq!(sim.mag_datapaths[0].forwards.get(&h), Some(&mag_addr(1)));
    assert_eq!(ipv4_at_mag(&sim, 1, 1), Some(v4), "from the context");
    let pbus_before = sim.sent.len();
    sim.detach(0, ll(1));
    sim.attach(1, ll(1));
    assert!(sim.mag_datapaths[1].flushed.contains(&h));
    assert_eq!(
        sim.mag_datapaths[1].delivering.get(&h),
        Some(&(pmip::output::AccessLink(1), ll(1)))
    );
    assert_eq!(
        sim.mag_datapaths[1].uplinks.get(&h),
        Some(&mag_addr(0)),
        "uplink via the PMAG"
    );
    sim.settle(Duration::from_secs(2));
    sim.run_for(Duration::from_millis(50));
    // The new MAG's PBU names the address (RFC 5844 §3.2.3.1).
    assert_eq!(pbus_since(&sim, pbus_before)[0].1, Some((24, v4.address)));
    assert_eq!(ipv4_at_mag(&sim, 1, 1), Some(v4));
    assert_eq!(
        sim.lma_datapath.get(&h),
        Some(&Downlink::Tunnel(mag_addr(1)))
    );
    assert_eq!(
        sim.mag_datapaths[1].uplinks.get(&h),
        Some(&LMA.parse().unwrap())
    );
    assert!(routed_at_mag(&sim, 1, &h));
    assert!(sim.mag_datapaths[1].delivering.is_empty());
    assert!(sim.mag_datapaths[0].forwards.is_empty());
    assert!(sim.mags[0].binding(&nai(1)).is_none());
}

/// Predictive, IPv4-only node: a context with an IPv4 home address and no prefix is a
/// context (the HAck "MUST include the HNP(s) and/or IPv4-MN-HoA", §4.1): accepted with
/// Code 5, and the address buffered.
#[test]
fn a_predictive_fast_handover_of_an_ipv4_only_node() {
    use pmip::config::FastHandoverMode;
    let p = [profile(1, false, true)];
    let mut sim = fast_domain(FastHandoverMode::Predictive, &p, &["192.0.2.0/24"]);
    sim.attach(0, ll(1));
    sim.settle(Duration::from_secs(2));
    let v4 = ipv4_at_mag(&sim, 0, 1).unwrap();
    let h = host(v4.address);
    sim.mag_do(0, |m, now, _| {
        m.handle_handover_indication(now, &nai(1), mag_addr(1))
    })
    .unwrap();
    sim.run_for(Duration::from_millis(5));
    let codes: Vec<u8> = (sim.sent.iter())
        .filter_map(|(_, p)| match p.message() {
            Some(Message::HandoverAck(a)) => Some(a.code.value()),
            _ => None,
        })
        .collect();
    assert_eq!(codes, [5]);
    assert!(sim.mag_datapaths[1].buffering.contains(&h));
    sim.detach(0, ll(1));
    sim.attach(1, ll(1));
    assert!(sim.mag_datapaths[1].flushed.contains(&h));
    sim.settle(Duration::from_secs(2));
    sim.run_for(Duration::from_millis(50));
    assert_eq!(ipv4_at_mag(&sim, 1, 1), Some(v4));
    assert!(sim.mags[1].binding(&nai(1)).unwrap().prefixes.is_empty());
    assert_eq!(
        sim.lma_datapath.get(&h),
        Some(&Downlink::Tunnel(mag_addr(1)))
    );
    assert!(
        sim.mag_events_of(1)
            .any(|e| matches!(e, MagEvent::HandoverCompleted { .. }))
    );
    // Without an IPv6 prefix, the end marker and the new MAG's hold go by the IPv4 home
    // address: held until the marker, sent once the route pointed at the new MAG.
    assert_end_marker(&sim, &[h], h);
}

/// The new MAG (MAG2) held `held` for the marker of `marker`, and the LMA sent MAG1 that
/// marker alone, once `marker`'s route pointed at MAG2.
fn assert_end_marker(sim: &Sim, held: &[IpNet], marker: IpNet) {
    let lma: Ipv6Addr = LMA.parse().unwrap();
    let holds: Vec<_> = held.iter().map(|&p| (p, marker, lma, 20)).collect();
    assert_eq!(sim.mag_datapaths[1].end_marker_holds, holds);
    let markers: Vec<_> = (sim.lma_end_markers.iter())
        .map(|&(_, prefix, peer, route)| (prefix, peer, route))
        .collect();
    assert_eq!(
        markers,
        [(marker, mag_addr(0), Some(Downlink::Tunnel(mag_addr(1))))]
    );
}

/// Reactive: the new MAG asks for the IPv4 context too (Context Request), and routes the
/// address onto the node's link from the HAck, before its PBA; the previous MAG sends it the
/// address's buffered packets.
#[test]
fn a_reactive_fast_handover_routes_the_ipv4_home_address_before_the_pba() {
    use pmip::config::FastHandoverMode;
    let p = [profile(1, true, true)];
    let mut sim = fast_domain(FastHandoverMode::Reactive, &p, &["192.0.2.0/24"]);
    sim.attach(0, ll(1));
    sim.settle(Duration::from_secs(2));
    let v4 = ipv4_at_mag(&sim, 0, 1).unwrap();
    let h = host(v4.address);
    sim.mag_do(1, |m, now, _| m.expect_arrival(now, ll(1), mag_addr(0)));
    sim.detach(0, ll(1));
    assert!(sim.mag_datapaths[0].buffering.contains(&h));
    sim.run_for(Duration::from_millis(30));
    sim.attach(1, ll(1));
    sim.run_for(Duration::from_micros(2500));
    let requested: Vec<OptionType> = (sim.sent.iter())
        .find_map(|(_, p)| match p.message() {
            Some(Message::HandoverInitiate(hi)) => hi.options.iter().find_map(|o| match o {
                MobilityOption::ContextRequest(c) => Some(c.iter().map(|(t, _)| t).collect()),
                _ => None,
            }),
            _ => None,
        })
        .expect("a Context Request");
    assert!(requested.contains(&OptionType::Ipv4HomeAddressRequest));
    assert!(requested.contains(&OptionType::Ipv4DefaultRouterAddress));
    assert!(
        sim.mag_datapaths[1].access_routes.contains_key(&h),
        "routed onto the link from the context"
    );
    assert_eq!(sim.mag_datapaths[1].uplinks.get(&h), Some(&mag_addr(0)));
    assert_eq!(ipv4_at_mag(&sim, 1, 1), Some(v4));
    // Then the packets (HI with 'F'): the previous MAG flushes its buffer into the tunnel.
    sim.run_for(Duration::from_millis(1));
    assert_eq!(sim.mag_datapaths[0].forwards.get(&h), Some(&mag_addr(1)));
    assert!(sim.mag_datapaths[0].flushed.contains(&h));
    sim.settle(Duration::from_secs(2));
    sim.run_for(Duration::from_millis(20));
    assert_eq!(ipv4_at_mag(&sim, 1, 1), Some(v4));
    assert_eq!(
        sim.mag_datapaths[1].uplinks.get(&h),
        Some(&LMA.parse().unwrap())
    );
    assert_eq!(
        sim.lma_datapath.get(&h),
        Some(&Downlink::Tunnel(mag_addr(1)))
    );
    assert!(sim.mag_datapaths[0].forwards.is_empty());
    // A dual-stack node's hold covers both; its IPv6 prefix's marker ends it.
    let prefix = IpNet::from(sim.mags[1].binding(&nai(1)).unwrap().prefixes[0]);
    assert_end_marker(&sim, &[prefix, h], prefix);
}
