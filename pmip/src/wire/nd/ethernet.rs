//! Ethernet II framing, as IPv6 uses it (RFC 2464 §3, §7).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                  Destination Address (6 octets)               |
//! +                               +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                               |                               |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+                               +
//! |                    Source Address (6 octets)                  |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |           EtherType           |  Payload ...
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//! A received frame may be longer than its payload says: Ethernet pads frames to 60 octets.
//! The IPv6 Payload Length, not the frame, says where the packet ends.

use core::fmt;
use std::net::Ipv6Addr;

use super::error::{Error, Result};
use crate::wire::values::open_enum;

pub(crate) mod field {
    use core::ops::Range;
    pub const DESTINATION: Range<usize> = 0..6;
    pub const SOURCE: Range<usize> = 6..12;
    pub const ETHERTYPE: Range<usize> = 12..14;
    pub const PAYLOAD: usize = 14;
}

/// Length of the Ethernet header.
pub const HEADER_LEN: usize = field::PAYLOAD;

open_enum! {
    /// EtherType values (IEEE registry; RFC 2464 §3 for IPv6).
    pub enum EtherType: u16 {
        Ipv4 = 0x0800 => "IPv4",
        Arp = 0x0806 => "ARP",
        Ipv6 = 0x86dd => "IPv6",
    }
}

/// A 48-bit IEEE 802 MAC address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct EthernetAddress(pub [u8; 6]);

impl EthernetAddress {
    pub const BROADCAST: Self = Self([0xff; 6]);

    /// The address an IPv6 multicast packet to `group` goes to: 33:33 and the group's last
    /// four octets (RFC 2464 §7).
    pub fn ipv6_multicast(group: &Ipv6Addr) -> Self {
        let o = group.octets();
        Self([0x33, 0x33, o[12], o[13], o[14], o[15]])
    }

    /// From a slice of exactly six octets.
    pub fn from_bytes(b: &[u8]) -> Option<Self> {
        b.try_into().ok().map(Self)
    }

    pub const fn as_bytes(&self) -> &[u8; 6] {
        &self.0
    }

    /// The group bit (I/G) is clear.
    pub const fn is_unicast(&self) -> bool {
        self.0[0] & 0x01 == 0
    }

    /// A unicast address that is not all zero: one a node can have as its own.
    pub fn is_station(&self) -> bool {
        self.is_unicast() && self.0 != [0; 6]
    }
}

impl fmt::Display for EthernetAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

impl fmt::Debug for EthernetAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl From<[u8; 6]> for EthernetAddress {
    fn from(b: [u8; 6]) -> Self {
        Self(b)
    }
}

/// A read/write view of an Ethernet frame.
#[derive(Debug, Clone)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// Wraps a buffer without checking it; accessors may then panic on a short buffer.
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Wraps a buffer that holds at least the header. No accessor panics afterwards.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let f = Self { buffer };
        f.check_len()?;
        Ok(f)
    }

    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::truncated(len, HEADER_LEN - len, len));
        }
        Ok(())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn mac(&self, r: core::ops::Range<usize>) -> EthernetAddress {
        let mut a = [0u8; 6];
        a.copy_from_slice(&self.buffer.as_ref()[r]);
        EthernetAddress(a)
    }

    pub fn destination(&self) -> EthernetAddress {
        self.mac(field::DESTINATION)
    }

    pub fn source(&self) -> EthernetAddress {
        self.mac(field::SOURCE)
    }

    pub fn ethertype(&self) -> EtherType {
        let b = self.buffer.as_ref();
        EtherType::from(u16::from_be_bytes([b[12], b[13]]))
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> EthernetFrame<&'a T> {
    /// Everything after the header, link padding included.
    pub fn payload(&self) -> &'a [u8] {
        let b: &'a [u8] = self.buffer.as_ref();
        &b[field::PAYLOAD..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    pub fn set_destination(&mut self, a: EthernetAddress) {
        self.buffer.as_mut()[field::DESTINATION].copy_from_slice(&a.0);
    }

    pub fn set_source(&mut self, a: EthernetAddress) {
        self.buffer.as_mut()[field::SOURCE].copy_from_slice(&a.0);
    }

    pub fn set_ethertype(&mut self, t: EtherType) {
        self.buffer.as_mut()[field::ETHERTYPE].copy_from_slice(&t.value().to_be_bytes());
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD..]
    }
}

/// The Ethernet header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EthernetRepr {
    pub source: EthernetAddress,
    pub destination: EthernetAddress,
    pub ethertype: EtherType,
}

impl EthernetRepr {
    pub fn parse<T: AsRef<[u8]>>(frame: &EthernetFrame<T>) -> Result<Self> {
        frame.check_len()?;
        Ok(Self {
            source: frame.source(),
            destination: frame.destination(),
            ethertype: frame.ethertype(),
        })
    }

    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header into the first [`HEADER_LEN`] octets of `out`.
    pub fn emit(&self, out: &mut [u8]) -> Result<usize> {
        if out.len() < HEADER_LEN {
            return Err(Error::buffer_too_small(HEADER_LEN, out.len()));
        }
        let mut f = EthernetFrame::new_unchecked(out);
        f.set_destination(self.destination);
        f.set_source(self.source);
        f.set_ethertype(self.ethertype);
        Ok(HEADER_LEN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::nd::ErrorKind;

    // The first 14 octets of an RA frame of `mag-cnf` (see its tests): to 02:00:00:00:01:01
    // from 02:00:5e:00:53:01, IPv6. Wireshark: "Ethernet II, Src: 02:00:5e:00:53:01,
    // Dst: 02:00:00:00:01:01, Type: IPv6 (0x86dd)".
    const HEADER: [u8; 14] = [2, 0, 0, 0, 1, 1, 2, 0, 0x5e, 0, 0x53, 1, 0x86, 0xdd];

    #[test]
    fn parse_and_emit_both_ways() {
        let f = EthernetFrame::new_checked(&HEADER[..]).unwrap();
        let r = EthernetRepr::parse(&f).unwrap();
        assert_eq!(
            r,
            EthernetRepr {
                source: EthernetAddress([2, 0, 0x5e, 0, 0x53, 1]),
                destination: EthernetAddress([2, 0, 0, 0, 1, 1]),
                ethertype: EtherType::Ipv6,
            }
        );
        assert!(f.payload().is_empty());
        let mut out = [0u8; 14];
        assert_eq!(r.emit(&mut out), Ok(14));
        assert_eq!(out, HEADER);
        assert_eq!(
            format!("{} > {:?}", r.source, r.destination),
            "02:00:5e:00:53:01 > 02:00:00:00:01:01"
        );
    }

    #[test]
    fn short_buffers_are_refused() {
        for n in 0..14 {
            let e = EthernetFrame::new_checked(&HEADER[..n]).unwrap_err();
            assert_eq!(
                e.kind,
                ErrorKind::Truncated {
                    needed: 14 - n,
                    available: n
                }
            );
        }
        let r = EthernetRepr::parse(&EthernetFrame::new_checked(&HEADER[..]).unwrap()).unwrap();
        assert!(matches!(
            r.emit(&mut [0u8; 13]).unwrap_err().kind,
            ErrorKind::BufferTooSmall {
                needed: 14,
                available: 13
            }
        ));
    }

    #[test]
    fn addresses() {
        let g: Ipv6Addr = "ff02::1:ff01:101".parse().unwrap();
        assert_eq!(
            EthernetAddress::ipv6_multicast(&g),
            EthernetAddress([0x33, 0x33, 0xff, 0x01, 0x01, 0x01])
        );
        assert!(EthernetAddress([2, 0, 0, 0, 1, 1]).is_station());
        assert!(!EthernetAddress([0; 6]).is_station());
        assert!(!EthernetAddress::BROADCAST.is_unicast());
        assert!(!EthernetAddress([0x33, 0x33, 0, 0, 0, 1]).is_station());
        assert_eq!(EtherType::from(0x0806), EtherType::Arp);
        assert_eq!(EtherType::from(0x88cc), EtherType::Unknown(0x88cc));
        assert_eq!(EthernetAddress::from_bytes(&[1, 2, 3]), None);
    }
}
