//! Finding and framing a Mobility Header in whole packets: IPv6 with next header 135 (after
//! any extension headers), and IPv4-UDP-MH on port 5436 (RFC 5844 §4), where the Mobility
//! Header checksum is zero and the UDP checksum is used instead.
//!
//! Used to decode captures and to build test packets; the daemons' sockets hand over the
//! Mobility Header alone.

use core::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{IPPROTO_MH, PMIP6_CNTL_UDP_PORT};

const IPPROTO_HOPOPTS: u8 = 0;
const IPPROTO_UDP: u8 = 17;
const IPPROTO_ROUTING: u8 = 43;
const IPPROTO_FRAGMENT: u8 = 44;
const IPPROTO_DSTOPTS: u8 = 60;

/// How a Mobility Header was carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Directly in IPv6 (next header 135).
    Ipv6,
    /// IPv4-UDP-MH (RFC 5844 §4): UDP ports and whether the UDP checksum verified.
    Ipv4Udp {
        src_port: u16,
        dst_port: u16,
        udp_checksum_ok: bool,
    },
}

/// A Mobility Header found in a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FoundMh<'a> {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub transport: Transport,
    /// Offset of the Mobility Header in the packet.
    pub offset: usize,
    pub mh: &'a [u8],
}

/// Why a packet holds no Mobility Header we can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketError {
    /// Not IPv6 with a Mobility Header, nor IPv4-UDP on port 5436.
    NotMobility,
    /// A fragment: the Mobility Header cannot be read from one fragment.
    Fragment,
    /// The packet is shorter than its headers say.
    Truncated { offset: usize },
}

impl fmt::Display for PacketError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PacketError::NotMobility => f.write_str("not a Mobility Header packet"),
            PacketError::Fragment => f.write_str("IPv6 fragment: reassembly is not supported"),
            PacketError::Truncated { offset } => {
                write!(f, "packet truncated at byte {offset}")
            }
        }
    }
}

impl core::error::Error for PacketError {}

fn v6_at(b: &[u8], at: usize) -> Option<Ipv6Addr> {
    let s: [u8; 16] = b.get(at..at + 16)?.try_into().ok()?;
    Some(Ipv6Addr::from(s))
}

/// Finds the Mobility Header in an IP packet (IPv4 or IPv6, chosen by the version nibble).
pub fn find_mh(packet: &[u8]) -> Result<FoundMh<'_>, PacketError> {
    match packet.first().map(|b| b >> 4) {
        Some(6) => find_in_ipv6(packet),
        Some(4) => find_in_ipv4(packet),
        Some(_) => Err(PacketError::NotMobility),
        None => Err(PacketError::Truncated { offset: 0 }),
    }
}

fn find_in_ipv6(p: &[u8]) -> Result<FoundMh<'_>, PacketError> {
    let trunc = |offset| PacketError::Truncated { offset };
    let payload_len = usize::from(u16::from_be_bytes([
        *p.get(4).ok_or(trunc(4))?,
        *p.get(5).ok_or(trunc(5))?,
    ]));
    let mut next = *p.get(6).ok_or(trunc(6))?;
    let src = v6_at(p, 8).ok_or(trunc(8))?;
    let dst = v6_at(p, 24).ok_or(trunc(24))?;
    let end = 40 + payload_len;
    let p = p.get(..end).ok_or(trunc(p.len()))?;
    let mut at = 40usize;
    loop {
        match next {
            IPPROTO_MH => {
                let mh = p.get(at..).ok_or(trunc(at))?;
                return Ok(FoundMh {
                    src: IpAddr::V6(src),
                    dst: IpAddr::V6(dst),
                    transport: Transport::Ipv6,
                    offset: at,
                    mh,
                });
            }
            IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS => {
                let nh = *p.get(at).ok_or(trunc(at))?;
                let len = (usize::from(*p.get(at + 1).ok_or(trunc(at + 1))?) + 1) * 8;
                next = nh;
                at += len;
            }
            IPPROTO_FRAGMENT => return Err(PacketError::Fragment),
            _ => return Err(PacketError::NotMobility),
        }
    }
}

fn find_in_ipv4(p: &[u8]) -> Result<FoundMh<'_>, PacketError> {
    let trunc = |offset| PacketError::Truncated { offset };
    let ihl = usize::from(p.first().ok_or(trunc(0))? & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([
        *p.get(2).ok_or(trunc(2))?,
        *p.get(3).ok_or(trunc(3))?,
    ]));
    if *p.get(9).ok_or(trunc(9))? != IPPROTO_UDP {
        return Err(PacketError::NotMobility);
    }
    let frag = u16::from_be_bytes([*p.get(6).ok_or(trunc(6))?, *p.get(7).ok_or(trunc(7))?]);
    if frag & 0x3fff != 0 {
        return Err(PacketError::Fragment);
    }
    let a = |at: usize| -> Result<Ipv4Addr, PacketError> {
        let s: [u8; 4] = p
            .get(at..at + 4)
            .ok_or(trunc(at))?
            .try_into()
            .map_err(|_| trunc(at))?;
        Ok(Ipv4Addr::from(s))
    };
    let (src, dst) = (a(12)?, a(16)?);
    let p = p.get(..total).ok_or(trunc(p.len()))?;
    let udp = p.get(ihl..).ok_or(trunc(ihl))?;
    let sport = u16::from_be_bytes([
        *udp.first().ok_or(trunc(ihl))?,
        *udp.get(1).ok_or(trunc(ihl + 1))?,
    ]);
    let dport = u16::from_be_bytes([
        *udp.get(2).ok_or(trunc(ihl + 2))?,
        *udp.get(3).ok_or(trunc(ihl + 3))?,
    ]);
    if sport != PMIP6_CNTL_UDP_PORT && dport != PMIP6_CNTL_UDP_PORT {
        return Err(PacketError::NotMobility);
    }
    let ulen = usize::from(u16::from_be_bytes([
        *udp.get(4).ok_or(trunc(ihl + 4))?,
        *udp.get(5).ok_or(trunc(ihl + 5))?,
    ]));
    let udp = udp.get(..ulen).ok_or(trunc(ihl + udp.len()))?;
    let stored = u16::from_be_bytes([
        *udp.get(6).ok_or(trunc(ihl + 6))?,
        *udp.get(7).ok_or(trunc(ihl + 7))?,
    ]);
    let udp_checksum_ok = stored == 0 || udp4_checksum(src, dst, udp) == 0;
    Ok(FoundMh {
        src: IpAddr::V4(src),
        dst: IpAddr::V4(dst),
        transport: Transport::Ipv4Udp {
            src_port: sport,
            dst_port: dport,
            udp_checksum_ok,
        },
        offset: ihl + 8,
        mh: udp.get(8..).ok_or(trunc(ihl + 8))?,
    })
}

fn ones_sum(mut acc: u32, data: &[u8]) -> u32 {
    let mut it = data.chunks_exact(2);
    for c in &mut it {
        acc += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [b] = it.remainder() {
        acc += u32::from(*b) << 8;
    }
    acc
}

fn finish(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

/// UDP-over-IPv4 checksum of `udp` (header with its checksum field as it is, and payload).
fn udp4_checksum(src: Ipv4Addr, dst: Ipv4Addr, udp: &[u8]) -> u16 {
    let mut acc = ones_sum(0, &src.octets());
    acc = ones_sum(acc, &dst.octets());
    acc += u32::from(IPPROTO_UDP) + udp.len() as u32;
    finish(ones_sum(acc, udp))
}

/// An IPv6 packet carrying `mh` (whose checksum the caller has filled).
pub fn build_ipv6(src: Ipv6Addr, dst: Ipv6Addr, hop_limit: u8, mh: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(40 + mh.len());
    p.extend_from_slice(&[0x60, 0, 0, 0]);
    p.extend_from_slice(&(mh.len() as u16).to_be_bytes());
    p.push(IPPROTO_MH);
    p.push(hop_limit);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    p.extend_from_slice(mh);
    p
}

/// An IPv4-UDP-MH packet (RFC 5844 §4): UDP 5436 to 5436 around `mh` (whose checksum must be
/// zero), with the IPv4 header checksum and the UDP checksum filled in.
pub fn build_ipv4_udp(src: Ipv4Addr, dst: Ipv4Addr, ttl: u8, mh: &[u8]) -> Vec<u8> {
    let udp_len = 8 + mh.len();
    let total = 20 + udp_len;
    let mut p = Vec::with_capacity(total);
    p.extend_from_slice(&[0x45, 0]);
    p.extend_from_slice(&(total as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0, 0x40, 0, ttl, IPPROTO_UDP, 0, 0]);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    let hc = finish(ones_sum(0, &p[..20]));
    p[10..12].copy_from_slice(&hc.to_be_bytes());
    p.extend_from_slice(&PMIP6_CNTL_UDP_PORT.to_be_bytes());
    p.extend_from_slice(&PMIP6_CNTL_UDP_PORT.to_be_bytes());
    p.extend_from_slice(&(udp_len as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(mh);
    let mut uc = udp4_checksum(src, dst, &p[20..]);
    if uc == 0 {
        uc = 0xffff;
    }
    p[26..28].copy_from_slice(&uc.to_be_bytes());
    p
}

/// pcap link types we can take an IP packet out of.
pub mod linktype {
    pub const NULL: u32 = 0;
    pub const ETHERNET: u32 = 1;
    pub const RAW: u32 = 101;
    pub const LINUX_SLL: u32 = 113;
    pub const IPV4: u32 = 228;
    pub const IPV6: u32 = 229;
    pub const LINUX_SLL2: u32 = 276;
}

/// The IP packet inside a captured frame of the given pcap link type, if it is IP.
pub fn ip_from_frame(link_type: u32, frame: &[u8]) -> Option<&[u8]> {
    const ETH_IPV4: u16 = 0x0800;
    const ETH_IPV6: u16 = 0x86dd;
    const ETH_VLAN: [u16; 2] = [0x8100, 0x88a8];
    let is_ip = |et: u16| et == ETH_IPV4 || et == ETH_IPV6;
    let be16 = |at: usize| -> Option<u16> {
        Some(u16::from_be_bytes([*frame.get(at)?, *frame.get(at + 1)?]))
    };
    match link_type {
        linktype::RAW | linktype::IPV4 | linktype::IPV6 => Some(frame),
        linktype::NULL => frame.get(4..),
        linktype::ETHERNET => {
            let mut at = 12;
            let mut et = be16(at)?;
            while ETH_VLAN.contains(&et) {
                at += 4;
                et = be16(at)?;
            }
            if is_ip(et) { frame.get(at + 2..) } else { None }
        }
        linktype::LINUX_SLL => {
            if is_ip(be16(14)?) {
                frame.get(16..)
            } else {
                None
            }
        }
        linktype::LINUX_SLL2 => {
            if is_ip(be16(0)?) {
                frame.get(20..)
            } else {
                None
            }
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_with_a_destination_option_header() {
        let src: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let dst: Ipv6Addr = "2001:db8::2".parse().unwrap();
        let mh = [59u8, 0, 13, 0, 0, 0, 0, 0];
        let mut p = build_ipv6(src, dst, 64, &mh);
        // Insert an 8-octet Destination Options header (PadN) before the MH.
        p[6] = IPPROTO_DSTOPTS;
        let dopt = [IPPROTO_MH, 0, 1, 4, 0, 0, 0, 0];
        p.splice(40..40, dopt);
        p[4..6].copy_from_slice(&((mh.len() + 8) as u16).to_be_bytes());
        let f = find_mh(&p).unwrap();
        assert_eq!(f.offset, 48);
        assert_eq!(f.mh, &mh);
        assert_eq!(f.src, IpAddr::V6(src));
        assert_eq!(
            find_mh(&p[..30]).unwrap_err(),
            PacketError::Truncated { offset: 24 }
        );
    }

    #[test]
    fn ipv4_udp_round_trip_with_checksums() {
        let mh = [59u8, 0, 13, 0, 0, 0, 0, 1];
        let src = Ipv4Addr::new(192, 0, 2, 1);
        let dst = Ipv4Addr::new(192, 0, 2, 2);
        let p = build_ipv4_udp(src, dst, 64, &mh);
        assert_eq!(finish(ones_sum(0, &p[..20])), 0, "IPv4 header checksum");
        let f = find_mh(&p).unwrap();
        assert_eq!(f.mh, &mh);
        assert_eq!(
            f.transport,
            Transport::Ipv4Udp {
                src_port: 5436,
                dst_port: 5436,
                udp_checksum_ok: true
            }
        );
        let mut bad = p.clone();
        bad[28] ^= 0xff;
        assert!(matches!(
            find_mh(&bad).unwrap().transport,
            Transport::Ipv4Udp {
                udp_checksum_ok: false,
                ..
            }
        ));
    }

    #[test]
    fn frames() {
        let ip = [0x60u8, 0, 0, 0];
        let mut eth = vec![0u8; 12];
        eth.extend([0x81, 0x00, 0, 1, 0x86, 0xdd]);
        eth.extend(ip);
        assert_eq!(ip_from_frame(linktype::ETHERNET, &eth), Some(&ip[..]));
        assert_eq!(ip_from_frame(linktype::RAW, &ip), Some(&ip[..]));
        assert_eq!(ip_from_frame(999, &ip), None);
    }
}
