//! The Router Advertisement a MAG sends to one mobile node, as a whole Ethernet frame
//! (RFC 4861 §4.2, §6.2.3; RFC 5213 §6.7, §6.9.2, §6.9.3): what goes in it. The wire format
//! is [`pmip::wire::nd`]'s. Pure: no IO.
//!
//! ```text
//! Ethernet        dst = the node's MAC, src = the domain's fixed MAG MAC
//! IPv6            hop limit 255, src = the MAG's link-local address on this link, dst = ff02::1
//! ICMPv6 RA       Cur Hop Limit 64, M = O = 0 (SLAAC), Router Lifetime, Reachable Time and
//!                 Retrans Timer 0 (unspecified: the node keeps its own)
//! Source Link-Layer Address option   the MAG MAC
//! MTU option                         the tunnel MTU (RFC 5213 §6.9.2 item 3)
//! Prefix Information option, each    the node's home network prefixes, L = A = 1
//! ```
//!
//! The frame goes to the node's own MAC while the IPv6 destination is all-nodes: the access
//! link is point-to-point (one node), and a node accepts an RA to ff02::1 whatever unicast
//! frame carries it.

use core::time::Duration;
use std::net::Ipv6Addr;

use pmip::output::{NeighborSolicitation, RouterAdvertisement};
use pmip::types::LinkLayerAddress;
use pmip::wire::nd::{
    EthernetAddress, FrameRepr, ICMPV6_HEADER_LEN, IPV6_HEADER_LEN, Icmpv6Repr, Icmpv6Type,
    MTU_LEN, ND_HOP_LIMIT, NaFlags, NdOption, NdOptions, NdiscRepr, PREFIX_INFORMATION_LEN,
    PrefixFlags, PrefixInformation, RaFlags,
};

use super::Error;

pub use pmip::wire::nd::ALL_NODES;

/// RA fields after Type, Code and Checksum (RFC 4861 §4.2).
const RA_FIXED_LEN: usize = 12;
/// A Source Link-layer Address option with a MAC (RFC 2464 §8).
const SLLA_OPTION_LEN: usize = 8;
/// AdvCurHopLimit: the value of "Assigned Numbers" (RFC 4861 §6.2.1).
const CUR_HOP_LIMIT: u8 = 64;

/// Prefix Information options an RA can carry: the frame must fit a 1280-byte IPv6 MTU.
pub const MAX_PREFIXES: usize =
    (1280 - IPV6_HEADER_LEN - ICMPV6_HEADER_LEN - RA_FIXED_LEN - SLLA_OPTION_LEN - MTU_LEN)
        / PREFIX_INFORMATION_LEN;

/// The whole Ethernet frame of `ra`, ready for a raw `AF_PACKET` socket.
pub fn router_advertisement_frame(ra: &RouterAdvertisement) -> Result<Vec<u8>, Error> {
    let node = mac_of(&ra.mn_link_layer)?;
    let mag = mac_of(&ra.src_link_layer)?;
    if ra.prefixes.len() > MAX_PREFIXES {
        return Err(Error::TooManyPrefixes(ra.prefixes.len()));
    }
    let lifetime = lifetime_secs(ra.prefix_lifetime);
    let mut options = Vec::with_capacity(2 + ra.prefixes.len());
    options.push(NdOption::SourceLinkLayerAddress(&mag));
    options.push(NdOption::Mtu(ra.mtu));
    options.extend(ra.prefixes.iter().map(|p| {
        NdOption::PrefixInformation(PrefixInformation {
            prefix_len: p.prefix_len(),
            flags: PrefixFlags::ON_LINK | PrefixFlags::AUTONOMOUS,
            valid_lifetime: lifetime,
            preferred_lifetime: lifetime,
            prefix: p.trunc().network(),
        })
    }));
    let frame = FrameRepr {
        eth_source: EthernetAddress(mag),
        eth_destination: EthernetAddress(node),
        source: ra.src_link_local,
        destination: ALL_NODES,
        hop_limit: ND_HOP_LIMIT,
        hop_by_hop: None,
        message: Icmpv6Repr::Ndisc(NdiscRepr::RouterAdvertisement {
            cur_hop_limit: CUR_HOP_LIMIT,
            // M = O = 0: addresses by SLAAC, no DHCPv6.
            flags: RaFlags::empty(),
            router_lifetime: router_lifetime(ra.router_lifetime),
            reachable_time: 0,
            retrans_timer: 0,
            options: NdOptions::List(&options),
        }),
    };
    let mut f = vec![0u8; frame.buffer_len()];
    frame.emit(&mut f)?;
    Ok(f)
}

/// The whole Ethernet frame of a Neighbor Unreachability Detection probe (RFC 4861 §7.2.2,
/// §7.3.3): a unicast Neighbor Solicitation for the node's link-local address, to its MAC,
/// from the MAG's link-local address on the link, hop limit 255, with the MAG's MAC in a
/// Source Link-Layer Address option (so the node can answer without resolving ours).
pub fn neighbor_solicitation_frame(ns: &NeighborSolicitation) -> Result<Vec<u8>, Error> {
    let node = mac_of(&ns.mn_link_layer)?;
    let mag = mac_of(&ns.src_link_layer)?;
    let options = [NdOption::SourceLinkLayerAddress(&mag)];
    let frame = FrameRepr {
        eth_source: EthernetAddress(mag),
        eth_destination: EthernetAddress(node),
        source: ns.src_link_local,
        destination: ns.target,
        hop_limit: ND_HOP_LIMIT,
        hop_by_hop: None,
        message: Icmpv6Repr::Ndisc(NdiscRepr::NeighborSolicitation {
            target: ns.target,
            options: NdOptions::List(&options),
        }),
    };
    let mut f = vec![0u8; frame.buffer_len()];
    frame.emit(&mut f)?;
    Ok(f)
}

/// A probe for the node on an access link that has just got its carrier (see
/// [`presence_probe_frame`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PresenceProbe {
    /// The access link's index.
    pub link: u32,
    /// The MAG's address on the link: the source, which the node resolves to answer.
    pub src_link_local: Ipv6Addr,
    /// The MAG's MAC on the link.
    pub src_link_layer: LinkLayerAddress,
    /// Preceded by an unsolicited Neighbor Advertisement of the MAG's address
    /// ([`router_announcement_frame`]): for a probe sent again, whose node may be waiting to
    /// resolve that address after answering an earlier one.
    pub announce: bool,
}

/// Identifier of the probe's Echo Request ("PM"); the sequence number is 0.
pub const PRESENCE_PROBE_IDENTIFIER: u16 = 0x504d;

/// The whole Ethernet frame of a [`PresenceProbe`]: an ICMPv6 Echo Request (RFC 4443 §4.1)
/// to all-nodes (ff02::1, 33:33:00:00:00:01) from the MAG's link-local address.
///
/// A node shows itself unasked only with its MLD reports once its link comes up, and Linux
/// sends those from a work item two jiffies later (8 ms at 250 Hz, more on a busy machine):
/// the MAG waited that long before it even knew of the node. A host answers an Echo Request at
/// once, in the kernel's receive path; to answer it must resolve the MAG's address, and a
/// host drops its neighbors when its link loses its carrier (Linux's
/// `ndisc_evict_nocarrier`), so what comes back first is its Neighbor Solicitation, which
/// the MAG hears as it hears any (`frame.rs`). A host that ignores multicast echoes is still
/// found by its MLD reports or Router Solicitations, as before.
pub fn presence_probe_frame(p: &PresenceProbe) -> Result<Vec<u8>, Error> {
    let mag = mac_of(&p.src_link_layer)?;
    let [hi, lo] = PRESENCE_PROBE_IDENTIFIER.to_be_bytes();
    let body = [hi, lo, 0, 0];
    to_all_nodes(
        p,
        mag,
        Icmpv6Repr::Other {
            msg_type: Icmpv6Type::EchoRequest,
            code: 0,
            body: &body,
        },
    )
}

/// The whole Ethernet frame of `message` from the MAG's address and MAC on the link of `p`
/// (`mag`) to all-nodes, hop limit 255.
fn to_all_nodes(
    p: &PresenceProbe,
    mag: [u8; 6],
    message: Icmpv6Repr<'_>,
) -> Result<Vec<u8>, Error> {
    let frame = FrameRepr {
        eth_source: EthernetAddress(mag),
        eth_destination: EthernetAddress::ipv6_multicast(&ALL_NODES),
        source: p.src_link_local,
        destination: ALL_NODES,
        hop_limit: ND_HOP_LIMIT,
        hop_by_hop: None,
        message,
    };
    let mut f = vec![0u8; frame.buffer_len()];
    frame.emit(&mut f)?;
    Ok(f)
}

/// Unsolicited Neighbor Advertisements a MAG sends for its address on a link that came up
/// (RFC 4861 §10, MAX_NEIGHBOR_ADVERTISEMENT).
pub const MAX_NEIGHBOR_ADVERTISEMENT: usize = 3;

/// The whole Ethernet frame of an unsolicited Neighbor Advertisement (RFC 4861 §4.4, §7.2.6)
/// of the MAG's address on the link of `p`: to all-nodes, Router and Override set, Solicited
/// not, with the MAG's MAC in a Target Link-Layer Address option.
///
/// A node that answered an earlier probe while its own link could not send yet (Linux
/// drops what a device sends until its carrier change has been handled) holds its answer in
/// an INCOMPLETE neighbor entry for the MAG's address, and solicits again only after its
/// retransmission timer, a second later. This advertisement completes that entry (§7.2.5),
/// and the held answer goes out. A node without an entry for the address ignores it; one with
/// an entry keeps the same MAC (every MAG of the domain has it, RFC 5213 §6.8), and the
/// Router flag keeps the MAG its default router.
pub fn router_announcement_frame(p: &PresenceProbe) -> Result<Vec<u8>, Error> {
    let mag = mac_of(&p.src_link_layer)?;
    let options = [NdOption::TargetLinkLayerAddress(&mag)];
    to_all_nodes(
        p,
        mag,
        Icmpv6Repr::Ndisc(NdiscRepr::NeighborAdvertisement {
            flags: NaFlags::ROUTER | NaFlags::OVERRIDE,
            target: p.src_link_local,
            options: NdOptions::List(&options),
        }),
    )
}

fn mac_of(ll: &LinkLayerAddress) -> Result<[u8; 6], Error> {
    ll.as_bytes()
        .try_into()
        .map_err(|_| Error::NotEthernet(*ll))
}

/// Seconds, rounded up so that a lifetime that has not quite run out is not sent as zero
/// (zero withdraws); saturating at the field's maximum (0xffffffff is infinity for the
/// prefix lifetimes, RFC 4861 §4.6.2).
fn lifetime_secs(d: Duration) -> u32 {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    u32::try_from(secs).unwrap_or(u32::MAX)
}

/// The 16-bit Router Lifetime, saturating (RFC 8319 allows up to 65535 s).
fn router_lifetime(d: Duration) -> u16 {
    u16::try_from(lifetime_secs(d)).unwrap_or(u16::MAX)
}

#[cfg(test)]
mod tests {
    use std::net::Ipv6Addr;

    use super::*;
    use pmip::output::AccessLink;
    use pmip::wire::nd::{ETHERNET_HEADER_LEN, icmpv6_checksum};

    const NODE: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x01, 0x01];
    const MAG: [u8; 6] = [0x02, 0x00, 0x5e, 0x00, 0x53, 0x01];

    fn ra(
        prefixes: &[&str],
        prefix_lifetime: Duration,
        router_lifetime: Duration,
    ) -> RouterAdvertisement {
        RouterAdvertisement {
            link: AccessLink(7),
            mn_link_layer: LinkLayerAddress::mac(NODE),
            src_link_local: "fe80::1".parse().unwrap(),
            src_link_layer: LinkLayerAddress::mac(MAG),
            prefixes: prefixes.iter().map(|p| p.parse().unwrap()).collect(),
            prefix_lifetime,
            router_lifetime,
            mtu: 1460,
        }
    }

    /// The frame of an RA with one prefix, byte by byte; the checksum is checked by summing
    /// (`pmip::wire::nd`'s `checksum_matches_a_hand_computed_sum` checks the sum). Wireshark decodes
    /// frames of this function field by field and verifies their checksum in
    /// `tests/access_tshark.rs`.
    #[test]
    fn one_prefix_byte_layout() {
        let f = router_advertisement_frame(&ra(
            &["2001:db8:1::/64"],
            Duration::from_secs(3600),
            Duration::from_secs(1800),
        ))
        .unwrap();
        #[rustfmt::skip]
        let expected_without_checksum: Vec<u8> = [
            // Ethernet
            &NODE[..], &MAG[..], &[0x86, 0xdd],
            // IPv6: version, payload length 64, next header 58, hop limit 255
            &[0x60, 0, 0, 0, 0, 64, 58, 255],
            &[0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            &[0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            // RA: type 134, code 0, checksum (zeroed here), hop limit 64, M=O=0,
            // router lifetime 1800, reachable 0, retrans 0
            &[134, 0, 0, 0, 64, 0, 0x07, 0x08, 0, 0, 0, 0, 0, 0, 0, 0],
            // SLLAO
            &[1, 1], &MAG[..],
            // MTU 1460
            &[5, 1, 0, 0, 0, 0, 0x05, 0xb4],
            // PIO: /64, L|A, valid 3600, preferred 3600, reserved, prefix
            &[3, 4, 64, 0xc0, 0, 0, 0x0e, 0x10, 0, 0, 0x0e, 0x10, 0, 0, 0, 0],
            &[0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        ]
        .concat();
        assert_eq!(f.len(), 14 + 40 + 64);
        let mut zeroed = f.clone();
        zeroed[56] = 0;
        zeroed[57] = 0;
        assert_eq!(zeroed, expected_without_checksum);
        // A correct checksum makes the message sum to zero.
        let src = "fe80::1".parse().unwrap();
        assert_eq!(icmpv6_checksum(&src, &ALL_NODES, &f[54..]), 0);
        assert_ne!(u16::from_be_bytes([f[56], f[57]]), 0);
    }

    #[test]
    fn withdrawal_has_zero_lifetimes() {
        let f = router_advertisement_frame(&ra(
            &["2001:db8:1::/64", "2001:db8:2::/64"],
            Duration::ZERO,
            Duration::ZERO,
        ))
        .unwrap();
        assert_eq!(f.len(), 14 + 40 + 16 + 8 + 8 + 2 * 32);
        assert_eq!(&f[60..62], &[0, 0], "router lifetime");
        for pio in [86, 118] {
            assert_eq!(f[pio], 3);
            assert_eq!(
                &f[pio + 4..pio + 12],
                &[0; 8],
                "valid and preferred lifetime"
            );
        }
        assert_eq!(&f[118 + 16..118 + 22], &[0x20, 0x01, 0x0d, 0xb8, 0, 2]);
    }

    #[test]
    fn an_empty_withdrawal_carries_no_prefix() {
        let f = router_advertisement_frame(&ra(&[], Duration::ZERO, Duration::ZERO)).unwrap();
        assert_eq!(f.len(), 14 + 40 + 16 + 8 + 8);
        assert_eq!(&f[18..20], &[0, 32], "payload length");
    }

    #[test]
    fn lifetimes_round_up_and_saturate() {
        assert_eq!(lifetime_secs(Duration::ZERO), 0);
        assert_eq!(lifetime_secs(Duration::from_millis(1)), 1);
        assert_eq!(lifetime_secs(Duration::from_millis(3_599_500)), 3600);
        assert_eq!(lifetime_secs(Duration::from_secs(u64::MAX)), u32::MAX);
        assert_eq!(router_lifetime(Duration::from_secs(70_000)), u16::MAX);
    }

    #[test]
    fn host_bits_of_a_prefix_are_cleared() {
        let f = router_advertisement_frame(&ra(
            &["2001:db8:1::77/64"],
            Duration::from_secs(1),
            Duration::from_secs(1),
        ))
        .unwrap();
        assert_eq!(
            &f[102..118],
            &"2001:db8:1::".parse::<Ipv6Addr>().unwrap().octets()
        );
    }

    #[test]
    fn refuses_what_cannot_be_sent() {
        let mut r = ra(&[], Duration::ZERO, Duration::ZERO);
        r.mn_link_layer = LinkLayerAddress::new(&[1, 2, 3, 4, 5, 6, 7, 8]).unwrap();
        assert!(matches!(
            router_advertisement_frame(&r),
            Err(Error::NotEthernet(_))
        ));
        let mut r = ra(&[], Duration::ZERO, Duration::ZERO);
        r.src_link_layer = LinkLayerAddress::new(&[1]).unwrap();
        assert!(matches!(
            router_advertisement_frame(&r),
            Err(Error::NotEthernet(_))
        ));
        let many: Vec<String> = (0..=MAX_PREFIXES)
            .map(|i| format!("2001:db8:{i:x}::/64"))
            .collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        assert!(matches!(
            router_advertisement_frame(&ra(&many, Duration::ZERO, Duration::ZERO)),
            Err(Error::TooManyPrefixes(n)) if n == MAX_PREFIXES + 1
        ));
        // A profile cannot pin more than an RA carries.
        assert_eq!(MAX_PREFIXES, pmip::config::MAX_HOME_NETWORK_PREFIXES);
    }

    #[test]
    fn a_probe_is_a_unicast_neighbor_solicitation_that_parses_back() {
        let ns = NeighborSolicitation {
            link: AccessLink(7),
            mn_link_layer: LinkLayerAddress::mac(NODE),
            target: "fe80::1:1".parse().unwrap(),
            src_link_local: "fe80::1".parse().unwrap(),
            src_link_layer: LinkLayerAddress::mac(MAG),
        };
        let f = neighbor_solicitation_frame(&ns).unwrap();
        assert_eq!(&f[..6], &NODE);
        assert_eq!(&f[6..12], &MAG);
        let r = FrameRepr::parse(&f).unwrap();
        assert_eq!(r.source, ns.src_link_local);
        assert_eq!(r.destination, ns.target);
        assert_eq!(r.hop_limit, 255);
        match r.message {
            Icmpv6Repr::Ndisc(NdiscRepr::NeighborSolicitation { target, options }) => {
                assert_eq!(target, ns.target);
                let o: Vec<_> = options.iter().collect();
                assert_eq!(o.len(), 1);
            }
            m => panic!("{m:?}"),
        }
    }

    #[test]
    fn the_largest_frame_fits_the_ipv6_minimum_mtu() {
        let many: Vec<String> = (0..MAX_PREFIXES)
            .map(|i| format!("2001:db8:{i:x}::/64"))
            .collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        let f = router_advertisement_frame(&ra(&many, Duration::ZERO, Duration::ZERO)).unwrap();
        assert!(f.len() - ETHERNET_HEADER_LEN <= 1280, "{}", f.len());
    }

    /// A probe of link 7 from fe80::1 and the MAG's MAC; `frame` makes its frame, which
    /// goes from that MAC to all-nodes (checked, with the IPv6 addresses), and is parsed back.
    fn probe_frame(
        announce: bool,
        frame: fn(&PresenceProbe) -> Result<Vec<u8>, Error>,
    ) -> (PresenceProbe, Vec<u8>) {
        let p = PresenceProbe {
            link: 7,
            src_link_local: "fe80::1".parse().unwrap(),
            src_link_layer: LinkLayerAddress::mac(MAG),
            announce,
        };
        let f = frame(&p).unwrap();
        assert_eq!(&f[..6], &[0x33, 0x33, 0, 0, 0, 1]);
        assert_eq!(&f[6..12], &MAG);
        let r = FrameRepr::parse(&f).unwrap();
        assert_eq!(r.source, p.src_link_local);
        assert_eq!(r.destination, ALL_NODES);
        (p, f)
    }

    #[test]
    fn a_presence_probe_is_an_echo_request_to_all_nodes_that_parses_back() {
        let (p, f) = probe_frame(false, presence_probe_frame);
        let r = FrameRepr::parse(&f).unwrap();
        assert_eq!(
            r.message,
            Icmpv6Repr::Other {
                msg_type: Icmpv6Type::EchoRequest,
                code: 0,
                body: &[0x50, 0x4d, 0, 0],
            }
        );
        // The MAG's own frame is never taken for a node's.
        assert_eq!(super::super::frame::parse(&f), None);
        let mut bad = p;
        bad.src_link_layer = LinkLayerAddress::new(&[1, 2, 3]).unwrap();
        assert!(matches!(
            presence_probe_frame(&bad),
            Err(Error::NotEthernet(_))
        ));
    }

    #[test]
    fn the_announcement_advertises_the_mags_address_as_a_router_unsolicited() {
        let (p, f) = probe_frame(true, router_announcement_frame);
        let r = FrameRepr::parse(&f).unwrap();
        assert_eq!(r.hop_limit, 255);
        let Icmpv6Repr::Ndisc(NdiscRepr::NeighborAdvertisement {
            flags,
            target,
            options,
        }) = r.message
        else {
            panic!("not an NA: {:?}", r.message);
        };
        assert_eq!(flags, NaFlags::ROUTER | NaFlags::OVERRIDE);
        assert_eq!(target, p.src_link_local);
        let tlla: Vec<_> = options
            .iter()
            .filter_map(|o| match o {
                NdOption::TargetLinkLayerAddress(a) => Some(a.to_vec()),
                _ => None,
            })
            .collect();
        assert_eq!(tlla, vec![MAG.to_vec()]);
        // Read back from the capture, it comes from the MAG's MAC, which the link table
        // takes as the MAG's own (links.rs `the_mags_own_frames_are_ignored`).
        assert_eq!(super::super::frame::parse(&f).map(|h| h.source), Some(MAG));
    }
}
