//! A whole access-link frame as the MAG reads and writes it: Ethernet, IPv6, an optional
//! Hop-by-Hop Options header, and an ICMPv6 message.
//!
//! ```text
//! +----------------+------------+---------------------+----------------------+
//! | Ethernet (14)  | IPv6 (40)  | Hop-by-Hop (8n, opt)| ICMPv6 message       |
//! +----------------+------------+---------------------+----------------------+
//! ```
//! Parsing is strict: the checksum must be right, and an ND message must pass the
//! validity rules of RFC 4861 §6.1, §7.1 and §8.1. Whoever wants to look at a frame that
//! fails them (a node is on the link even if its Router Solicitation is invalid) uses the
//! views: [`super::EthernetFrame`], [`super::Ipv6Packet`], [`super::Icmpv6Packet`].

use std::net::Ipv6Addr;

use super::error::{Error, ErrorKind, Result};
use super::ethernet::{EtherType, EthernetAddress, EthernetFrame, HEADER_LEN as ETH_LEN};
use super::icmpv6::{Icmpv6Packet, Icmpv6Repr};
use super::ipv6::{
    HEADER_LEN as IP_LEN, HopByHopHeader, HopByHopRepr, Ipv6Packet, Ipv6Repr,
    NEXT_HEADER_HOP_BY_HOP, NEXT_HEADER_ICMPV6,
};

/// An ICMPv6 message in an IPv6 packet in an Ethernet frame. The IPv6 Next Header and
/// Payload Length, and the ICMPv6 checksum, follow from the rest and are not kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameRepr<'a> {
    pub eth_source: EthernetAddress,
    pub eth_destination: EthernetAddress,
    pub source: Ipv6Addr,
    pub destination: Ipv6Addr,
    pub hop_limit: u8,
    pub hop_by_hop: Option<HopByHopRepr<'a>>,
    pub message: Icmpv6Repr<'a>,
}

impl<'a> FrameRepr<'a> {
    /// Reads a frame; octets after the IPv6 packet (Ethernet padding) are ignored.
    pub fn parse(frame: &'a [u8]) -> Result<Self> {
        let eth = EthernetFrame::new_checked(frame)?;
        if eth.ethertype() != EtherType::Ipv6 {
            return Err(Error::new(
                12,
                ErrorKind::NotIpv6 {
                    ethertype: eth.ethertype().value(),
                },
            ));
        }
        let ip = Ipv6Packet::new_checked(eth.payload()).map_err(|e| e.shifted(ETH_LEN))?;
        let ip_repr = Ipv6Repr::parse(&ip).map_err(|e| e.shifted(ETH_LEN))?;
        let (next_header, at, upper) = ip.upper_layer().map_err(|e| e.shifted(ETH_LEN))?;
        let hop_by_hop = if ip_repr.next_header == NEXT_HEADER_HOP_BY_HOP {
            let h = HopByHopHeader::new_checked(ip.payload()).map_err(|e| e.shifted(ETH_LEN))?;
            Some(HopByHopRepr::parse(&h))
        } else {
            None
        };
        if next_header != NEXT_HEADER_ICMPV6 {
            return Err(Error::new(
                ETH_LEN + if hop_by_hop.is_some() { IP_LEN } else { 6 },
                ErrorKind::NotIcmpv6 { next_header },
            ));
        }
        let icmp = Icmpv6Packet::new_checked(upper).map_err(|e| e.shifted(ETH_LEN + at))?;
        let message = Icmpv6Repr::parse(&ip_repr.source, &ip_repr.destination, &icmp)
            .map_err(|e| e.shifted(ETH_LEN + at))?;
        if let Icmpv6Repr::Ndisc(n) = &message {
            n.check_validity(&ip_repr.source, &ip_repr.destination, ip_repr.hop_limit, at)
                .map_err(|e| e.shifted(ETH_LEN))?;
        }
        Ok(Self {
            eth_source: eth.source(),
            eth_destination: eth.destination(),
            source: ip_repr.source,
            destination: ip_repr.destination,
            hop_limit: ip_repr.hop_limit,
            hop_by_hop,
            message,
        })
    }

    fn ip_payload_len(&self) -> usize {
        self.hop_by_hop.map_or(0, |h| h.buffer_len()) + self.message.buffer_len()
    }

    pub fn buffer_len(&self) -> usize {
        ETH_LEN + IP_LEN + self.ip_payload_len()
    }

    /// Writes the frame, with its ICMPv6 checksum, into the first
    /// [`FrameRepr::buffer_len`] octets of `out`. Never allocates.
    pub fn emit(&self, out: &mut [u8]) -> Result<usize> {
        let n = self.buffer_len();
        if out.len() < n {
            return Err(Error::buffer_too_small(n, out.len()));
        }
        let eth = super::ethernet::EthernetRepr {
            source: self.eth_source,
            destination: self.eth_destination,
            ethertype: EtherType::Ipv6,
        };
        eth.emit(out)?;
        let ip = Ipv6Repr {
            source: self.source,
            destination: self.destination,
            next_header: if self.hop_by_hop.is_some() {
                NEXT_HEADER_HOP_BY_HOP
            } else {
                NEXT_HEADER_ICMPV6
            },
            payload_len: self.ip_payload_len(),
            hop_limit: self.hop_limit,
        };
        ip.emit(&mut out[ETH_LEN..])
            .map_err(|e| e.shifted(ETH_LEN))?;
        let mut at = ETH_LEN + IP_LEN;
        if let Some(h) = &self.hop_by_hop {
            at += h
                .emit(NEXT_HEADER_ICMPV6, &mut out[at..])
                .map_err(|e| e.shifted(at))?;
        }
        self.message
            .emit(&self.source, &self.destination, &mut out[at..n])
            .map_err(|e| e.shifted(at))?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::super::mld::{MldRecord, MldRecordType, MldRecords, MldRepr};
    use super::super::ndisc::{NdiscRepr, RaFlags};
    use super::super::option::{NdOption, NdOptions, PrefixFlags, PrefixInformation};
    use super::*;

    fn a(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    const NODE: EthernetAddress = EthernetAddress([2, 0, 0, 0, 1, 1]);
    const MAG: EthernetAddress = EthernetAddress([2, 0, 0x5e, 0, 0x53, 1]);

    /// The RA `mag-cnf` sends for one prefix, byte by byte, as its tests wrote it out before
    /// this module existed (Wireshark decodes these frames field by field in
    /// `mag-cnf/tests/access_tshark.rs`). tshark 4.x read this frame from a pcap: "ICMPv6
    /// Router Advertisement from 02:00:5e:00:53:01", checksum 0xe8a0 `[correct]`.
    #[rustfmt::skip]
    const RA_FRAME: [u8; 118] = [
        2, 0, 0, 0, 1, 1, 2, 0, 0x5e, 0, 0x53, 1, 0x86, 0xdd,
        0x60, 0, 0, 0, 0, 64, 58, 255,
        0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,
        0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,
        134, 0, 0xe8, 0xa0, 64, 0, 0x07, 0x08, 0, 0, 0, 0, 0, 0, 0, 0,
        1, 1, 2, 0, 0x5e, 0, 0x53, 1,
        5, 1, 0, 0, 0, 0, 0x05, 0xb4,
        3, 4, 64, 0xc0, 0, 0, 0x0e, 0x10, 0, 0, 0x0e, 0x10, 0, 0, 0, 0,
        0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];

    fn ra_options() -> [NdOption<'static>; 3] {
        [
            NdOption::SourceLinkLayerAddress(&MAG.0),
            NdOption::Mtu(1460),
            NdOption::PrefixInformation(PrefixInformation {
                prefix_len: 64,
                flags: PrefixFlags::ON_LINK | PrefixFlags::AUTONOMOUS,
                valid_lifetime: 3600,
                preferred_lifetime: 3600,
                prefix: a("2001:db8:1::"),
            }),
        ]
    }

    #[test]
    fn a_router_advertisement_both_ways() {
        let opts = ra_options();
        let r = FrameRepr {
            eth_source: MAG,
            eth_destination: NODE,
            source: a("fe80::1"),
            destination: a("ff02::1"),
            hop_limit: 255,
            hop_by_hop: None,
            message: Icmpv6Repr::Ndisc(NdiscRepr::RouterAdvertisement {
                cur_hop_limit: 64,
                flags: RaFlags::empty(),
                router_lifetime: 1800,
                reachable_time: 0,
                retrans_timer: 0,
                options: NdOptions::List(&opts),
            }),
        };
        assert_eq!(r.buffer_len(), 118);
        let mut out = [0u8; 118];
        assert_eq!(r.emit(&mut out), Ok(118));
        assert_eq!(out, RA_FRAME);
        assert_eq!(FrameRepr::parse(&RA_FRAME), Ok(r));
    }

    // An MLDv2 Report behind a Hop-by-Hop header with a Router Alert, from ::, hop limit 1,
    // as a Linux host sends it when its link comes up.
    #[test]
    fn an_mld_report_behind_hop_by_hop_both_ways() {
        let records = [MldRecord {
            record_type: MldRecordType::ChangeToExclude,
            group: a("ff02::1:ff00:101"),
            sources: &[],
            aux_data: &[],
        }];
        let r = FrameRepr {
            eth_source: NODE,
            eth_destination: EthernetAddress::ipv6_multicast(&a("ff02::16")),
            source: Ipv6Addr::UNSPECIFIED,
            destination: a("ff02::16"),
            hop_limit: 1,
            hop_by_hop: Some(HopByHopRepr::MLD),
            message: Icmpv6Repr::Mld(MldRepr::ReportV2 {
                records: MldRecords::List(&records),
            }),
        };
        let mut out = vec![0u8; r.buffer_len()];
        r.emit(&mut out).unwrap();
        assert_eq!(out.len(), 14 + 40 + 8 + 28);
        assert_eq!(out[20], 0, "next header: Hop-by-Hop");
        assert_eq!(out[54], 58, "the Hop-by-Hop header's next header: ICMPv6");
        assert_eq!(FrameRepr::parse(&out), Ok(r));
        // Ethernet padding is not part of the packet.
        out.extend_from_slice(&[0; 10]);
        assert_eq!(FrameRepr::parse(&out), Ok(r));
    }

    #[test]
    fn errors_name_their_offset_in_the_frame() {
        let mut f = RA_FRAME;
        f[12] = 0x08;
        f[13] = 0x06;
        assert_eq!(
            FrameRepr::parse(&f),
            Err(Error::new(12, ErrorKind::NotIpv6 { ethertype: 0x0806 }))
        );
        let mut f = RA_FRAME;
        f[14 + 7] = 64;
        assert_eq!(
            FrameRepr::parse(&f),
            Err(Error::new(21, ErrorKind::BadHopLimit { hop_limit: 64 }))
        );
        let mut f = RA_FRAME;
        f[56] ^= 1;
        assert!(matches!(
            FrameRepr::parse(&f),
            Err(Error {
                offset: 56,
                kind: ErrorKind::BadChecksum { .. }
            })
        ));
        let mut f = RA_FRAME;
        f[14 + 6] = 17;
        assert_eq!(
            FrameRepr::parse(&f),
            Err(Error::new(20, ErrorKind::NotIcmpv6 { next_header: 17 }))
        );
        // An RA from a global address (RFC 4861 §6.1.2), checksum made right for it.
        let mut f = RA_FRAME;
        f[22] = 0x20;
        f[23] = 0x01;
        f[56] = 0;
        f[57] = 0;
        let c = super::super::icmpv6::icmpv6_checksum(&a("2001::1"), &a("ff02::1"), &f[54..]);
        f[56..58].copy_from_slice(&c.to_be_bytes());
        assert_eq!(
            FrameRepr::parse(&f),
            Err(Error::new(
                22,
                ErrorKind::BadSource {
                    address: a("2001::1")
                }
            ))
        );
        // Every cut is refused without a panic.
        for cut in 0..RA_FRAME.len() {
            assert!(FrameRepr::parse(&RA_FRAME[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn a_small_buffer_is_refused() {
        let opts = ra_options();
        let r = FrameRepr {
            eth_source: MAG,
            eth_destination: NODE,
            source: a("fe80::1"),
            destination: a("ff02::1"),
            hop_limit: 255,
            hop_by_hop: None,
            message: Icmpv6Repr::Ndisc(NdiscRepr::RouterSolicitation {
                options: NdOptions::List(&opts),
            }),
        };
        let n = r.buffer_len();
        assert!(matches!(
            r.emit(&mut vec![0; n - 1]).unwrap_err().kind,
            ErrorKind::BufferTooSmall { .. }
        ));
    }
}
