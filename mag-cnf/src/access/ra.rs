//! The Router Advertisement a MAG sends to one mobile node, as a whole Ethernet frame
//! (RFC 4861 §4.2, §4.6; RFC 5213 §6.7, §6.9.3). Pure: no IO.
//!
//! ```text
//! Ethernet (14)   dst = the node's MAC, src = the domain's fixed MAG MAC, type 0x86dd
//! IPv6 (40)       hop limit 255, src = the MAG link-local (fe80::1), dst = ff02::1
//! ICMPv6 RA (16)
//!     0                   1                   2                   3
//!     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//!    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//!    |     Type      |     Code      |          Checksum             |
//!    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//!    | Cur Hop Limit |M|O|  Reserved |       Router Lifetime         |
//!    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//!    |                         Reachable Time                        |
//!    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//!    |                          Retrans Timer                        |
//!    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//!    |   Options ...
//! Source Link-Layer Address option (8)   type 1, length 1, the MAG MAC
//! MTU option (8)                         type 5, length 1, reserved, MTU
//! Prefix Information option (32) each    type 3, length 4, prefix length, L=1 A=1,
//!                                        valid lifetime, preferred lifetime, reserved, prefix
//! ```
//!
//! The frame goes to the node's own MAC while the IPv6 destination is all-nodes: the access
//! link is point-to-point (one node), and a node accepts an RA to ff02::1 whatever unicast
//! frame carries it.

use core::time::Duration;
use std::net::Ipv6Addr;

use pmip::output::RouterAdvertisement;
use pmip::types::LinkLayerAddress;

use super::Error;

pub(crate) const ETHERNET_HEADER_LEN: usize = 14;
pub(crate) const ETHERTYPE_IPV6: u16 = 0x86dd;
pub(crate) const IPV6_HEADER_LEN: usize = 40;
pub(crate) const NEXT_HEADER_HOP_BY_HOP: u8 = 0;
pub(crate) const NEXT_HEADER_ICMPV6: u8 = 58;
/// Neighbor Discovery messages are sent, and must arrive, with hop limit 255 (RFC 4861 §6.1).
pub(crate) const ND_HOP_LIMIT: u8 = 255;

/// ICMPv6 types (RFC 4443 §2.1, RFC 4861 §4, RFC 2710 §3, RFC 3810 §5.2).
pub(crate) const ICMPV6_MLD_REPORT: u8 = 131;
pub(crate) const ICMPV6_ROUTER_SOLICITATION: u8 = 133;
pub(crate) const ICMPV6_ROUTER_ADVERTISEMENT: u8 = 134;
pub(crate) const ICMPV6_NEIGHBOR_SOLICITATION: u8 = 135;
pub(crate) const ICMPV6_NEIGHBOR_ADVERTISEMENT: u8 = 136;
pub(crate) const ICMPV6_MLDV2_REPORT: u8 = 143;

/// Neighbor Discovery option types (RFC 4861 §4.6).
pub(crate) const ND_OPT_SOURCE_LINK_LAYER_ADDRESS: u8 = 1;
const ND_OPT_PREFIX_INFORMATION: u8 = 3;
const ND_OPT_MTU: u8 = 5;

const RA_HEADER_LEN: usize = 16;
const SLLA_OPTION_LEN: usize = 8;
const MTU_OPTION_LEN: usize = 8;
const PREFIX_OPTION_LEN: usize = 32;
/// On-link (L) and autonomous address-configuration (A) flags (RFC 4861 §4.6.2).
const PREFIX_FLAGS_ON_LINK_AUTONOMOUS: u8 = 0x80 | 0x40;
/// AdvCurHopLimit: the value of "Assigned Numbers" (RFC 4861 §6.2.1).
const CUR_HOP_LIMIT: u8 = 64;

/// ff02::1, all nodes on the link.
pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

/// Prefix Information options an RA can carry: the frame must fit a 1280-byte IPv6 MTU.
pub const MAX_PREFIXES: usize =
    (1280 - IPV6_HEADER_LEN - RA_HEADER_LEN - SLLA_OPTION_LEN - MTU_OPTION_LEN) / PREFIX_OPTION_LEN;

/// The whole Ethernet frame of `ra`, ready for a raw `AF_PACKET` socket.
pub fn router_advertisement_frame(ra: &RouterAdvertisement) -> Result<Vec<u8>, Error> {
    let node = mac_of(&ra.mn_link_layer)?;
    let mag = mac_of(&ra.src_link_layer)?;
    if ra.prefixes.len() > MAX_PREFIXES {
        return Err(Error::TooManyPrefixes(ra.prefixes.len()));
    }
    let icmp_len =
        RA_HEADER_LEN + SLLA_OPTION_LEN + MTU_OPTION_LEN + PREFIX_OPTION_LEN * ra.prefixes.len();
    let mut f = Vec::with_capacity(ETHERNET_HEADER_LEN + IPV6_HEADER_LEN + icmp_len);

    f.extend_from_slice(&node);
    f.extend_from_slice(&mag);
    f.extend_from_slice(&ETHERTYPE_IPV6.to_be_bytes());

    // Version 6, traffic class 0, flow label 0.
    f.extend_from_slice(&[0x60, 0, 0, 0]);
    f.extend_from_slice(&(icmp_len as u16).to_be_bytes());
    f.push(NEXT_HEADER_ICMPV6);
    f.push(ND_HOP_LIMIT);
    f.extend_from_slice(&ra.src_link_local.octets());
    f.extend_from_slice(&ALL_NODES.octets());

    let icmp = f.len();
    f.extend_from_slice(&[ICMPV6_ROUTER_ADVERTISEMENT, 0, 0, 0]);
    // M = O = 0: addresses by SLAAC, no DHCPv6.
    f.extend_from_slice(&[CUR_HOP_LIMIT, 0]);
    f.extend_from_slice(&router_lifetime(ra.router_lifetime).to_be_bytes());
    // Reachable Time and Retrans Timer unspecified: the node keeps its own.
    f.extend_from_slice(&[0; 8]);

    f.extend_from_slice(&[ND_OPT_SOURCE_LINK_LAYER_ADDRESS, 1]);
    f.extend_from_slice(&mag);

    f.extend_from_slice(&[ND_OPT_MTU, 1, 0, 0]);
    f.extend_from_slice(&ra.mtu.to_be_bytes());

    let lifetime = lifetime_secs(ra.prefix_lifetime).to_be_bytes();
    for p in &ra.prefixes {
        let p = p.trunc();
        f.extend_from_slice(&[
            ND_OPT_PREFIX_INFORMATION,
            4,
            p.prefix_len(),
            PREFIX_FLAGS_ON_LINK_AUTONOMOUS,
        ]);
        f.extend_from_slice(&lifetime); // valid
        f.extend_from_slice(&lifetime); // preferred
        f.extend_from_slice(&[0; 4]);
        f.extend_from_slice(&p.network().octets());
    }

    let sum = icmpv6_checksum(&ra.src_link_local, &ALL_NODES, f.get(icmp..).unwrap_or(&[]));
    if let Some(c) = f.get_mut(icmp + 2..icmp + 4) {
        c.copy_from_slice(&sum.to_be_bytes());
    }
    Ok(f)
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

/// The ICMPv6 checksum of `message` (its checksum field zero or not: a message whose field
/// holds the right checksum sums to zero, RFC 4443 §2.3), over the IPv6 pseudo-header
/// (RFC 8200 §8.1).
pub(crate) fn icmpv6_checksum(src: &Ipv6Addr, dst: &Ipv6Addr, message: &[u8]) -> u16 {
    let mut sum: u64 = 0;
    let mut add = |bytes: &[u8]| {
        for pair in bytes.chunks(2) {
            let hi = u64::from(pair.first().copied().unwrap_or(0));
            let lo = u64::from(pair.get(1).copied().unwrap_or(0));
            sum += (hi << 8) | lo;
        }
    };
    add(&src.octets());
    add(&dst.octets());
    add(&(message.len() as u32).to_be_bytes());
    add(&[0, 0, 0, NEXT_HEADER_ICMPV6]);
    add(message);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pmip::output::AccessLink;

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
    /// (below, and `checksum_matches_a_hand_computed_sum` checks the sum). Wireshark decodes
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
    fn checksum_matches_a_hand_computed_sum() {
        // fe80::1 -> ff02::1, an Echo Request type 128 code 0 id 0 seq 0 with no data:
        // 0xfe80 + 0x0001 + 0xff02 + 0x0001 + length 8 + next header 58 + 0x8000 = 0x27dc6,
        // folded 0x7dc8; the complement is 0x8237.
        let src: Ipv6Addr = "fe80::1".parse().unwrap();
        let msg = [128, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(icmpv6_checksum(&src, &ALL_NODES, &msg), 0x8237);
        // An odd length is padded with a zero byte: one more for the length and 0x1200 for
        // the last byte give 0x8fc9, complement 0x7036.
        let odd = icmpv6_checksum(&src, &ALL_NODES, &[128, 0, 0, 0, 0, 0, 0, 0, 0x12]);
        assert_eq!(odd, 0x7036);
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
}
