//! The IPv6 header (RFC 8200 §3) and the Hop-by-Hop Options header (RFC 8200 §4.3), which
//! MLD messages carry for their Router Alert option (RFC 2711, RFC 3810 §5).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |Version| Traffic Class |           Flow Label                  |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |         Payload Length        |  Next Header  |   Hop Limit   |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                                                               |
//! +                         Source Address (16)                   +
//! |                                                               |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                                                               |
//! +                      Destination Address (16)                 +
//! |                                                               |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//!
//! Hop-by-Hop Options header:
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |  Next Header  |  Hdr Ext Len  |                               |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+                               +
//! .                            Options                            .
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//! Hdr Ext Len counts 8-octet units after the first 8 octets.

use std::net::Ipv6Addr;

use super::error::{Error, ErrorKind, Result};

pub(crate) mod field {
    use core::ops::Range;
    pub const VERSION_TC_FLOW: Range<usize> = 0..4;
    pub const PAYLOAD_LEN: Range<usize> = 4..6;
    pub const NEXT_HEADER: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SOURCE: Range<usize> = 8..24;
    pub const DESTINATION: Range<usize> = 24..40;
    pub const PAYLOAD: usize = 40;
}

/// Length of the IPv6 header.
pub const HEADER_LEN: usize = field::PAYLOAD;
/// Next Header value of a Hop-by-Hop Options header (RFC 8200 §4.3).
pub const NEXT_HEADER_HOP_BY_HOP: u8 = 0;
/// Next Header value of ICMPv6 (RFC 4443 §1).
pub const NEXT_HEADER_ICMPV6: u8 = 58;
/// The Router Alert option (RFC 2711 §2.1) with value 0, "Datagram contains a Multicast
/// Listener Discovery message" (RFC 2710 §3), then PadN for the two octets left: the
/// options of the Hop-by-Hop header MLD messages carry.
pub const MLD_ROUTER_ALERT_OPTIONS: [u8; 6] = [5, 2, 0, 0, 1, 0];

fn addr_at(b: &[u8], r: core::ops::Range<usize>) -> Ipv6Addr {
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[r]);
    Ipv6Addr::from(a)
}

/// A read/write view of an IPv6 packet.
#[derive(Debug, Clone)]
pub struct Ipv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv6Packet<T> {
    /// Wraps a buffer without checking it; accessors may then panic on a short buffer.
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Wraps a buffer holding an IPv6 packet: version 6, and at least as many octets as the
    /// header and its Payload Length (more are link padding). No accessor panics afterwards.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self { buffer };
        p.check_len()?;
        Ok(p)
    }

    pub fn check_len(&self) -> Result<()> {
        let b = self.buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(Error::truncated(b.len(), HEADER_LEN - b.len(), b.len()));
        }
        let version = b[0] >> 4;
        if version != 6 {
            return Err(Error::new(0, ErrorKind::BadVersion { version }));
        }
        let declared = usize::from(u16::from_be_bytes([b[4], b[5]]));
        let available = b.len() - HEADER_LEN;
        if declared > available {
            return Err(Error::new(
                field::PAYLOAD_LEN.start,
                ErrorKind::BadPayloadLength {
                    declared,
                    available,
                },
            ));
        }
        Ok(())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[0] >> 4
    }

    pub fn traffic_class(&self) -> u8 {
        let b = self.buffer.as_ref();
        (b[0] << 4) | (b[1] >> 4)
    }

    pub fn flow_label(&self) -> u32 {
        let b = self.buffer.as_ref();
        u32::from_be_bytes([0, b[1] & 0x0f, b[2], b[3]])
    }

    pub fn payload_len(&self) -> usize {
        let b = self.buffer.as_ref();
        usize::from(u16::from_be_bytes([b[4], b[5]]))
    }

    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[field::NEXT_HEADER]
    }

    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::HOP_LIMIT]
    }

    pub fn source(&self) -> Ipv6Addr {
        addr_at(self.buffer.as_ref(), field::SOURCE)
    }

    pub fn destination(&self) -> Ipv6Addr {
        addr_at(self.buffer.as_ref(), field::DESTINATION)
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Ipv6Packet<&'a T> {
    /// The payload as Payload Length says: link padding after it is not part of it.
    pub fn payload(&self) -> &'a [u8] {
        let b: &'a [u8] = self.buffer.as_ref();
        let end = HEADER_LEN + usize::from(u16::from_be_bytes([b[4], b[5]]));
        &b[HEADER_LEN..end]
    }

    /// The upper-layer header's Next Header value and its octets, after a Hop-by-Hop
    /// Options header if there is one (RFC 8200 §4.1: it can only come first), with the
    /// offset of the upper-layer header in the packet.
    pub fn upper_layer(&self) -> Result<(u8, usize, &'a [u8])> {
        let payload = self.payload();
        if self.next_header() != NEXT_HEADER_HOP_BY_HOP {
            return Ok((self.next_header(), HEADER_LEN, payload));
        }
        let h = HopByHopHeader::new_checked(payload).map_err(|e| e.shifted(HEADER_LEN))?;
        let len = h.total_len();
        Ok((h.next_header(), HEADER_LEN + len, &payload[len..]))
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv6Packet<T> {
    /// Version 6, traffic class and flow label 0.
    pub fn set_version_clear_flow(&mut self) {
        self.buffer.as_mut()[field::VERSION_TC_FLOW].copy_from_slice(&[0x60, 0, 0, 0]);
    }

    pub fn set_payload_len(&mut self, len: u16) {
        self.buffer.as_mut()[field::PAYLOAD_LEN].copy_from_slice(&len.to_be_bytes());
    }

    pub fn set_next_header(&mut self, v: u8) {
        self.buffer.as_mut()[field::NEXT_HEADER] = v;
    }

    pub fn set_hop_limit(&mut self, v: u8) {
        self.buffer.as_mut()[field::HOP_LIMIT] = v;
    }

    pub fn set_source(&mut self, a: &Ipv6Addr) {
        self.buffer.as_mut()[field::SOURCE].copy_from_slice(&a.octets());
    }

    pub fn set_destination(&mut self, a: &Ipv6Addr) {
        self.buffer.as_mut()[field::DESTINATION].copy_from_slice(&a.octets());
    }
}

/// The IPv6 header. Traffic Class and Flow Label are not kept: ND and MLD do not use them,
/// and they are sent as zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Repr {
    pub source: Ipv6Addr,
    pub destination: Ipv6Addr,
    pub next_header: u8,
    pub payload_len: usize,
    pub hop_limit: u8,
}

impl Ipv6Repr {
    pub fn parse<T: AsRef<[u8]>>(p: &Ipv6Packet<T>) -> Result<Self> {
        p.check_len()?;
        Ok(Self {
            source: p.source(),
            destination: p.destination(),
            next_header: p.next_header(),
            payload_len: p.payload_len(),
            hop_limit: p.hop_limit(),
        })
    }

    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header (not the payload) into the first [`HEADER_LEN`] octets of `out`.
    pub fn emit(&self, out: &mut [u8]) -> Result<usize> {
        if out.len() < HEADER_LEN {
            return Err(Error::buffer_too_small(HEADER_LEN, out.len()));
        }
        let len = u16::try_from(self.payload_len).map_err(|_| {
            Error::new(
                field::PAYLOAD_LEN.start,
                ErrorKind::TooLong {
                    length: self.payload_len,
                    maximum: usize::from(u16::MAX),
                },
            )
        })?;
        let mut p = Ipv6Packet::new_unchecked(out);
        p.set_version_clear_flow();
        p.set_payload_len(len);
        p.set_next_header(self.next_header);
        p.set_hop_limit(self.hop_limit);
        p.set_source(&self.source);
        p.set_destination(&self.destination);
        Ok(HEADER_LEN)
    }
}

/// A read view of a Hop-by-Hop Options header.
#[derive(Debug, Clone)]
pub struct HopByHopHeader<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> HopByHopHeader<T> {
    /// Wraps a buffer that starts with a whole Hop-by-Hop header (more may follow it).
    pub fn new_checked(buffer: T) -> Result<Self> {
        let b = buffer.as_ref();
        if b.len() < 2 {
            return Err(Error::truncated(b.len(), 2 - b.len(), b.len()));
        }
        let total = (usize::from(b[1]) + 1) * 8;
        if b.len() < total {
            return Err(Error::truncated(b.len(), total - b.len(), b.len()));
        }
        Ok(Self { buffer })
    }

    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[0]
    }

    /// The whole header's length in octets.
    pub fn total_len(&self) -> usize {
        (usize::from(self.buffer.as_ref()[1]) + 1) * 8
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> HopByHopHeader<&'a T> {
    /// The options area: everything after the first two octets.
    pub fn options(&self) -> &'a [u8] {
        let b: &'a [u8] = self.buffer.as_ref();
        &b[2..(usize::from(b[1]) + 1) * 8]
    }
}

/// A Hop-by-Hop Options header: its options are kept as they are (8n + 6 octets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HopByHopRepr<'a> {
    pub options: &'a [u8],
}

impl<'a> HopByHopRepr<'a> {
    /// The header MLD messages carry: a Router Alert for MLD.
    pub const MLD: HopByHopRepr<'static> = HopByHopRepr {
        options: &MLD_ROUTER_ALERT_OPTIONS,
    };

    pub fn parse<T: AsRef<[u8]> + ?Sized>(h: &HopByHopHeader<&'a T>) -> Self {
        Self {
            options: h.options(),
        }
    }

    pub const fn buffer_len(&self) -> usize {
        2 + self.options.len()
    }

    /// The value of a Router Alert option (RFC 2711 §2.1), if there is one. Options are
    /// TLVs, Pad1 a single zero octet (RFC 8200 §4.2).
    pub fn router_alert(&self) -> Option<u16> {
        let mut rest = self.options;
        while let Some((&t, after)) = rest.split_first() {
            if t == 0 {
                rest = after;
                continue;
            }
            let (&len, body) = after.split_first()?;
            let data = body.get(..usize::from(len))?;
            if t == 5 && len == 2 {
                return Some(u16::from_be_bytes([data[0], data[1]]));
            }
            rest = &body[usize::from(len)..];
        }
        None
    }

    /// Writes the header with `next_header` into `out`.
    pub fn emit(&self, next_header: u8, out: &mut [u8]) -> Result<usize> {
        let n = self.buffer_len();
        if !n.is_multiple_of(8) || n > 256 * 8 {
            return Err(Error::new(
                1,
                ErrorKind::BadValue {
                    field: "Hop-by-Hop options length (8n + 6)",
                    value: u32::try_from(self.options.len()).unwrap_or(u32::MAX),
                },
            ));
        }
        let available = out.len();
        let out = out
            .get_mut(..n)
            .ok_or(Error::buffer_too_small(n, available))?;
        out[0] = next_header;
        out[1] = (n / 8 - 1) as u8;
        out[2..].copy_from_slice(self.options);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An MLDv2 Report's IPv6 header and Hop-by-Hop header, as Linux sends it when its
    /// link comes up: from ::, to ff02::16, hop limit 1, a Router Alert for MLD (RFC 3810
    /// §5). Wireshark: "Hop-by-Hop Option, Router Alert: MLD (0), PadN".
    #[rustfmt::skip]
    const MLD_HEAD: [u8; 48] = [
        0x60, 0, 0, 0, 0, 36, 0, 1,
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x16,
        58, 0, 5, 2, 0, 0, 1, 0,
    ];

    fn with_payload(len: usize) -> Vec<u8> {
        let mut p = MLD_HEAD.to_vec();
        p.resize(40 + len, 0xab);
        p[40..48].copy_from_slice(&MLD_HEAD[40..48]);
        p
    }

    #[test]
    fn parse_and_emit_both_ways() {
        let buf = with_payload(36);
        let p = Ipv6Packet::new_checked(&buf[..]).unwrap();
        let r = Ipv6Repr::parse(&p).unwrap();
        assert_eq!(
            r,
            Ipv6Repr {
                source: Ipv6Addr::UNSPECIFIED,
                destination: "ff02::16".parse().unwrap(),
                next_header: 0,
                payload_len: 36,
                hop_limit: 1,
            }
        );
        let mut out = [0u8; 40];
        assert_eq!(r.emit(&mut out), Ok(40));
        assert_eq!(out[..], buf[..40]);

        let (nh, at, upper) = p.upper_layer().unwrap();
        assert_eq!((nh, at, upper.len()), (58, 48, 28));
        let h = HopByHopHeader::new_checked(p.payload()).unwrap();
        let hr = HopByHopRepr::parse(&h);
        assert_eq!(hr, HopByHopRepr::MLD);
        assert_eq!(hr.router_alert(), Some(0));
        let mut out = [0u8; 8];
        assert_eq!(hr.emit(58, &mut out), Ok(8));
        assert_eq!(out[..], MLD_HEAD[40..48]);
    }

    #[test]
    fn link_padding_is_not_payload() {
        let mut buf = with_payload(36);
        buf.extend_from_slice(&[0xee; 6]);
        let p = Ipv6Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(p.payload().len(), 36);
    }

    #[test]
    fn malformed_packets_are_refused() {
        let buf = with_payload(36);
        for n in 0..40 {
            assert!(matches!(
                Ipv6Packet::new_checked(&buf[..n]).unwrap_err().kind,
                ErrorKind::Truncated { .. }
            ));
        }
        for n in 40..buf.len() {
            assert_eq!(
                Ipv6Packet::new_checked(&buf[..n]).unwrap_err(),
                Error::new(
                    4,
                    ErrorKind::BadPayloadLength {
                        declared: 36,
                        available: n - 40
                    }
                )
            );
        }
        let mut v4 = buf.clone();
        v4[0] = 0x45;
        assert_eq!(
            Ipv6Packet::new_checked(&v4[..]).unwrap_err().kind,
            ErrorKind::BadVersion { version: 4 }
        );
        // A Hop-by-Hop header longer than the payload.
        let mut long = buf.clone();
        long[41] = 9;
        let p = Ipv6Packet::new_checked(&long[..]).unwrap();
        let e = p.upper_layer().unwrap_err();
        assert!(matches!(e.kind, ErrorKind::Truncated { .. }));
        assert_eq!(e.offset, 40 + 36);
    }

    #[test]
    fn router_alert_scan_stops_at_malformed_options() {
        let r = |options: &'static [u8]| HopByHopRepr { options }.router_alert();
        assert_eq!(r(&[0, 0, 5, 2, 0x12, 0x34, 0, 0]), Some(0x1234));
        assert_eq!(r(&[1, 4, 0, 0, 0, 0]), None);
        assert_eq!(r(&[1, 9, 0, 0]), None);
        assert_eq!(r(&[1]), None);
        assert_eq!(r(&[]), None);
        // A bad length cannot be emitted.
        let bad = HopByHopRepr { options: &[0; 5] };
        assert!(bad.emit(58, &mut [0u8; 16]).is_err());
        assert!(HopByHopRepr::MLD.emit(58, &mut [0u8; 7]).is_err());
    }

    #[test]
    fn a_payload_too_long_for_its_field_is_not_emitted() {
        let mut r =
            Ipv6Repr::parse(&Ipv6Packet::new_checked(&with_payload(36)[..]).unwrap()).unwrap();
        r.payload_len = 70_000;
        assert!(matches!(
            r.emit(&mut [0u8; 40]).unwrap_err().kind,
            ErrorKind::TooLong { .. }
        ));
    }
}
