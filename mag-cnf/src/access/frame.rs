//! What the MAG hears from a mobile node on an access link. Pure: no IO.
//!
//! A Linux host whose link comes up sends, within milliseconds: MLDv2 reports for its
//! solicited-node group (ICMPv6 143 behind a Hop-by-Hop header with the Router Alert option,
//! RFC 3810 §5.2), a Neighbor Solicitation for duplicate address detection from `::`
//! (RFC 4862 §5.4.2), then Router Solicitations (RFC 4861 §6.3.7). Any of them tells the MAG
//! that a node is there and what its MAC is. Later, Neighbor Solicitations of neighbor
//! unreachability detection keep coming while the node talks to its router, so a MAG that
//! restarted learns about a node that was already attached.
//!
//! The capture socket sees every IPv6 frame received on every link of the namespace, user
//! traffic included; the filter (`filter.rs`) lets through only the ICMPv6 messages above,
//! so the rest never leaves the kernel. [`parse`] then reads each frame with the views and
//! representations of [`pmip::wire::nd`], whatever the filter did.

use std::net::Ipv6Addr;

use pmip::wire::nd::{
    EtherType, EthernetFrame, FrameRepr, Icmpv6Packet, Icmpv6Repr, Icmpv6Type, Ipv6Packet,
    NEXT_HEADER_ICMPV6, NdiscRepr,
};

/// The ICMPv6 messages that show a node: MLD reports (v1 and v2), Neighbor Solicitations and
/// Advertisements, Router Solicitations, and Echo Replies (the answer to the MAG's presence
/// probe, `ra.rs` `presence_probe_frame`, from a node that still knows the MAG's address and
/// needs no Neighbor Solicitation first). Not Router Advertisements: a node is no router.
pub(crate) const NODE_MESSAGES: [Icmpv6Type; 6] = [
    Icmpv6Type::RouterSolicitation,
    Icmpv6Type::NeighborSolicitation,
    Icmpv6Type::MulticastListenerReportV2,
    Icmpv6Type::MulticastListenerReport,
    Icmpv6Type::NeighborAdvertisement,
    Icmpv6Type::EchoReply,
];

/// A frame from a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Heard {
    /// The Ethernet source address: the node's MAC.
    pub source: [u8; 6],
    /// A valid Router Solicitation (RFC 4861 §6.1.1).
    pub router_solicitation: bool,
    /// The node's link-local address, when the frame tells it: its IPv6 source, or for a
    /// duplicate address detection from `::` the Neighbor Solicitation's target (RFC 4862
    /// §5.4.2). What Neighbor Unreachability Detection probes.
    pub link_local: Option<Ipv6Addr>,
}

/// fe80::/10.
fn is_link_local(a: &Ipv6Addr) -> bool {
    a.segments()[0] & 0xffc0 == 0xfe80
}

/// What a received Ethernet frame tells, or `None` when it is not one of [`NODE_MESSAGES`]
/// from a unicast source address (or is cut short).
///
/// Any such message shows the node, even one the RFC's validity rules discard (a frame
/// from its MAC proves it is on the link); only a Router Solicitation that passes them
/// (RFC 4861 §6.1.1: hop limit 255, checksum, code 0, length, options, no source link-layer
/// address option from `::`) is one.
pub(crate) fn parse(frame: &[u8]) -> Option<Heard> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    // A group or all-zero address is never a node's own.
    if !eth.source().is_station() || eth.ethertype() != EtherType::Ipv6 {
        return None;
    }
    // Ethernet pads short frames: the IPv6 payload length says where the packet ends.
    let ip = Ipv6Packet::new_checked(eth.payload()).ok()?;
    let (next_header, _, upper) = ip.upper_layer().ok()?;
    if next_header != NEXT_HEADER_ICMPV6 {
        return None;
    }
    let icmp = Icmpv6Packet::new_checked(upper).ok()?;
    let msg_type = icmp.msg_type();
    if !NODE_MESSAGES.contains(&msg_type) {
        return None;
    }
    let router_solicitation = msg_type == Icmpv6Type::RouterSolicitation
        && matches!(
            FrameRepr::parse(frame),
            Ok(FrameRepr {
                message: Icmpv6Repr::Ndisc(NdiscRepr::RouterSolicitation { .. }),
                ..
            })
        );
    let source = ip.source();
    let link_local = if is_link_local(&source) {
        Some(source)
    } else if source.is_unspecified() && msg_type == Icmpv6Type::NeighborSolicitation {
        // Reserved (4 octets) after type, code and checksum, then the target.
        upper
            .get(8..24)
            .and_then(|t| <[u8; 16]>::try_from(t).ok())
            .map(Ipv6Addr::from)
            .filter(is_link_local)
    } else {
        None
    };
    Some(Heard {
        source: eth.source().0,
        router_solicitation,
        link_local,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use std::net::Ipv6Addr;

    use pmip::wire::nd::icmpv6_checksum;

    use super::*;

    pub(crate) const NODE: [u8; 6] = [0x02, 0, 0, 0, 0x01, 0x01];

    /// An Ethernet frame from `NODE` to 33:33:00:00:00:02 with an IPv6 packet from `src` to
    /// `dst` carrying `upper` (next header `nh`), optionally behind a Hop-by-Hop header with
    /// a Router Alert option (as MLD reports are sent); the ICMPv6 checksum is filled in.
    pub(crate) fn frame(
        src: &str,
        dst: &str,
        hbh: bool,
        nh: u8,
        upper: &[u8],
        hop_limit: u8,
    ) -> Vec<u8> {
        frame_from(NODE, src, dst, hbh, nh, upper, hop_limit)
    }

    /// [`frame`] from Ethernet source `mac`.
    pub(crate) fn frame_from(
        mac: [u8; 6],
        src: &str,
        dst: &str,
        hbh: bool,
        nh: u8,
        upper: &[u8],
        hop_limit: u8,
    ) -> Vec<u8> {
        let src: Ipv6Addr = src.parse().unwrap();
        let dst: Ipv6Addr = dst.parse().unwrap();
        let mut upper = upper.to_vec();
        if nh == 58 && upper.len() >= 4 {
            upper[2] = 0;
            upper[3] = 0;
            let c = icmpv6_checksum(&src, &dst, &upper);
            upper[2..4].copy_from_slice(&c.to_be_bytes());
        }
        let ext: &[u8] = if hbh {
            // Next header, length 0 (8 octets), Router Alert (MLD), PadN of 0.
            &[nh, 0, 5, 2, 0, 0, 1, 0]
        } else {
            &[]
        };
        let mut f = vec![0x33, 0x33, 0, 0, 0, 2];
        f.extend_from_slice(&mac);
        f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
        f.extend_from_slice(&((ext.len() + upper.len()) as u16).to_be_bytes());
        f.push(if hbh { 0 } else { nh });
        f.push(hop_limit);
        f.extend_from_slice(&src.octets());
        f.extend_from_slice(&dst.octets());
        f.extend_from_slice(ext);
        f.extend_from_slice(&upper);
        f
    }

    pub(crate) fn rs(options: &[u8]) -> Vec<u8> {
        [&[133, 0, 0, 0, 0, 0, 0, 0][..], options].concat()
    }

    pub(crate) const SLLAO: [u8; 8] = [1, 1, 0x02, 0, 0, 0, 0x01, 0x01];

    #[test]
    fn router_solicitations_from_a_link_local_and_from_the_unspecified_address() {
        let f = frame("fe80::1:1", "ff02::2", false, 58, &rs(&SLLAO), 255);
        assert_eq!(
            parse(&f),
            Some(Heard {
                source: NODE,
                router_solicitation: true,
                link_local: Some("fe80::1:1".parse().unwrap()),
            })
        );
        let f = frame("::", "ff02::2", false, 58, &rs(&[]), 255);
        assert_eq!(
            parse(&f),
            Some(Heard {
                source: NODE,
                router_solicitation: true,
                link_local: None,
            })
        );
    }

    #[test]
    fn invalid_router_solicitations_still_show_the_node() {
        let heard = Heard {
            source: NODE,
            router_solicitation: false,
            link_local: Some("fe80::1:1".parse().unwrap()),
        };
        let seen_only = Some(heard);
        // From `::` with a source link-layer address option.
        let f = frame("::", "ff02::2", false, 58, &rs(&SLLAO), 255);
        assert_eq!(
            parse(&f),
            Some(Heard {
                link_local: None,
                ..heard
            })
        );
        // Forwarded (hop limit below 255).
        let f = frame("fe80::1:1", "ff02::2", false, 58, &rs(&[]), 64);
        assert_eq!(parse(&f), seen_only);
        // An option of length zero.
        let f = frame(
            "fe80::1:1",
            "ff02::2",
            false,
            58,
            &rs(&[1, 0, 0, 0, 0, 0, 0, 0]),
            255,
        );
        assert_eq!(parse(&f), seen_only);
        // A bad checksum.
        let mut f = frame("fe80::1:1", "ff02::2", false, 58, &rs(&[]), 255);
        f[56] ^= 0xff;
        assert_eq!(parse(&f), seen_only);
        // Code 1.
        let f = frame(
            "fe80::1:1",
            "ff02::2",
            false,
            58,
            &[133, 1, 0, 0, 0, 0, 0, 0],
            255,
        );
        assert_eq!(parse(&f), seen_only);
    }

    #[test]
    fn mld_reports_behind_hop_by_hop_and_dad_solicitations_show_the_node() {
        let mld = [143, 0, 0, 0, 0, 0, 0, 1, 4, 0, 0, 0];
        let mut group = mld.to_vec();
        group.extend_from_slice(&"ff02::1:ff01:101".parse::<Ipv6Addr>().unwrap().octets());
        let f = frame("::", "ff02::16", true, 58, &group, 1);
        assert_eq!(
            parse(&f),
            Some(Heard {
                source: NODE,
                router_solicitation: false,
                link_local: None,
            })
        );
        // Duplicate address detection tells the address the node is about to use.
        let mut ns = vec![135, 0, 0, 0, 0, 0, 0, 0];
        ns.extend_from_slice(&"fe80::1:1".parse::<Ipv6Addr>().unwrap().octets());
        let f = frame("::", "ff02::1:ff01:101", false, 58, &ns, 255);
        assert_eq!(
            parse(&f).and_then(|h| h.link_local),
            Some("fe80::1:1".parse().unwrap())
        );
        // A global source tells no link-local address.
        let f = frame("2001:db8::1", "ff02::1:ff01:101", false, 58, &ns, 255);
        assert_eq!(parse(&f).map(|h| h.link_local), Some(None));
    }

    #[test]
    fn other_traffic_is_not_heard() {
        // UDP, an Echo Request, a Router Advertisement.
        assert_eq!(
            parse(&frame(
                "2001:db8::1",
                "2001:db8::2",
                false,
                17,
                &[0; 12],
                64
            )),
            None
        );
        assert_eq!(
            parse(&frame(
                "2001:db8::1",
                "2001:db8::2",
                false,
                58,
                &[128, 0, 0, 0, 0, 0, 0, 0],
                64
            )),
            None
        );
        assert_eq!(
            parse(&frame(
                "fe80::1",
                "ff02::1",
                false,
                58,
                &[134, 0, 0, 0, 64, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                255
            )),
            None
        );
        // UDP behind a Hop-by-Hop header.
        assert_eq!(
            parse(&frame("2001:db8::1", "2001:db8::2", true, 17, &[0; 12], 64)),
            None
        );
        // A group source address, an IPv4 frame, truncated frames.
        let mut f = frame("fe80::1:1", "ff02::2", false, 58, &rs(&[]), 255);
        f[6] |= 1;
        assert_eq!(parse(&f), None);
        let mut f = frame("fe80::1:1", "ff02::2", false, 58, &rs(&[]), 255);
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        assert_eq!(parse(&f), None);
        let f = frame("fe80::1:1", "ff02::2", false, 58, &rs(&[]), 255);
        for cut in 0..f.len() {
            assert_eq!(parse(&f[..cut]), None, "cut at {cut}");
        }
    }

    #[test]
    fn ethernet_padding_is_not_part_of_the_packet() {
        let mut f = frame("fe80::1:1", "ff02::2", false, 58, &rs(&[]), 255);
        f.extend_from_slice(&[0xaa; 6]);
        assert_eq!(parse(&f).map(|h| h.router_solicitation), Some(true));
    }
}
