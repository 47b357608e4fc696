//! ICMPv6 framing and checksum (RFC 4443 §2.1, §2.3), and the messages an access link
//! carries: Neighbor Discovery (RFC 4861 §4) and Multicast Listener Discovery (RFC 2710,
//! RFC 3810).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |     Type      |     Code      |          Checksum             |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                                                               |
//! +                         Message Body                          +
//! ```
//! The checksum covers the IPv6 pseudo-header (RFC 8200 §8.1, Next Header 58) and the whole
//! message.

use std::net::Ipv6Addr;

use super::error::{Error, ErrorKind, Result};
use super::ipv6::NEXT_HEADER_ICMPV6;
use super::mld::MldRepr;
use super::ndisc::NdiscRepr;
use crate::wire::values::open_enum;

pub(crate) mod field {
    use core::ops::Range;
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: Range<usize> = 2..4;
    pub const BODY: usize = 4;
}

/// Length of the Type, Code and Checksum fields.
pub const HEADER_LEN: usize = field::BODY;

open_enum! {
    /// ICMPv6 message types (RFC 4443 §2.1, RFC 4861 §4, RFC 2710 §3, RFC 3810 §5).
    pub enum Icmpv6Type: u8 {
        DestinationUnreachable = 1 => "Destination Unreachable",
        PacketTooBig = 2 => "Packet Too Big",
        TimeExceeded = 3 => "Time Exceeded",
        ParameterProblem = 4 => "Parameter Problem",
        EchoRequest = 128 => "Echo Request",
        EchoReply = 129 => "Echo Reply",
        MulticastListenerQuery = 130 => "Multicast Listener Query",
        MulticastListenerReport = 131 => "Multicast Listener Report",
        MulticastListenerDone = 132 => "Multicast Listener Done",
        RouterSolicitation = 133 => "Router Solicitation",
        RouterAdvertisement = 134 => "Router Advertisement",
        NeighborSolicitation = 135 => "Neighbor Solicitation",
        NeighborAdvertisement = 136 => "Neighbor Advertisement",
        Redirect = 137 => "Redirect",
        MulticastListenerReportV2 = 143 => "Version 2 Multicast Listener Report",
    }
}

/// One's complement sum of `data` in 16-bit words, an odd last octet padded with zero.
fn sum_words(mut acc: u64, data: &[u8]) -> u64 {
    let mut words = data.chunks_exact(2);
    for w in &mut words {
        acc += u64::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [last] = words.remainder() {
        acc += u64::from(*last) << 8;
    }
    acc
}

/// The ICMPv6 checksum of `message` from `src` to `dst`. With the message's checksum field
/// zero this is the value to write there; with the field filled in, a correct message gives
/// zero (RFC 4443 §2.3).
pub fn icmpv6_checksum(src: &Ipv6Addr, dst: &Ipv6Addr, message: &[u8]) -> u16 {
    let mut acc = sum_words(0, &src.octets());
    acc = sum_words(acc, &dst.octets());
    // Upper-Layer Packet Length (32 bits) and Next Header (RFC 8200 §8.1).
    acc = sum_words(acc, &(message.len() as u32).to_be_bytes());
    acc += u64::from(NEXT_HEADER_ICMPV6);
    acc = sum_words(acc, message);
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

/// A read/write view of an ICMPv6 message.
#[derive(Debug, Clone)]
pub struct Icmpv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Icmpv6Packet<T> {
    /// Wraps a buffer without checking it; accessors may then panic on a short buffer.
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Wraps a buffer that holds one ICMPv6 message (at least its four first octets). No
    /// accessor panics afterwards.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self { buffer };
        p.check_len()?;
        Ok(p)
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

    pub fn msg_type(&self) -> Icmpv6Type {
        Icmpv6Type::from(self.buffer.as_ref()[field::TYPE])
    }

    pub fn msg_code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }

    pub fn checksum(&self) -> u16 {
        let b = self.buffer.as_ref();
        u16::from_be_bytes([b[2], b[3]])
    }

    pub fn verify_checksum(&self, src: &Ipv6Addr, dst: &Ipv6Addr) -> bool {
        icmpv6_checksum(src, dst, self.buffer.as_ref()) == 0
    }

    /// Checks the checksum, saying what was expected when it is wrong.
    pub fn check_checksum(&self, src: &Ipv6Addr, dst: &Ipv6Addr) -> Result<()> {
        if self.verify_checksum(src, dst) {
            return Ok(());
        }
        let b = self.buffer.as_ref();
        // The sum with the field zeroed: subtracting the field in one's complement.
        let found = self.checksum();
        let mut acc = u64::from(!icmpv6_checksum(src, dst, b));
        acc += u64::from(!found);
        while acc > 0xffff {
            acc = (acc & 0xffff) + (acc >> 16);
        }
        let expected = !(acc as u16);
        Err(Error::new(
            field::CHECKSUM.start,
            ErrorKind::BadChecksum { found, expected },
        ))
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Icmpv6Packet<&'a T> {
    /// Everything after Type, Code and Checksum.
    pub fn body(&self) -> &'a [u8] {
        let b: &'a [u8] = self.buffer.as_ref();
        &b[field::BODY..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv6Packet<T> {
    pub fn set_msg_type(&mut self, t: Icmpv6Type) {
        self.buffer.as_mut()[field::TYPE] = t.value();
    }

    pub fn set_msg_code(&mut self, c: u8) {
        self.buffer.as_mut()[field::CODE] = c;
    }

    pub fn body_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::BODY..]
    }

    /// Computes the checksum for `src` -> `dst` and writes it.
    pub fn fill_checksum(&mut self, src: &Ipv6Addr, dst: &Ipv6Addr) {
        let b = self.buffer.as_mut();
        b[field::CHECKSUM].fill(0);
        let c = icmpv6_checksum(src, dst, b);
        b[field::CHECKSUM].copy_from_slice(&c.to_be_bytes());
    }
}

/// An ICMPv6 message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Icmpv6Repr<'a> {
    /// Router and Neighbor Solicitations and Advertisements, Redirect (code 0).
    Ndisc(NdiscRepr<'a>),
    /// MLD Queries, Reports and Dones.
    Mld(MldRepr<'a>),
    /// Any other message, kept as it came.
    Other {
        msg_type: Icmpv6Type,
        code: u8,
        body: &'a [u8],
    },
}

impl<'a> Icmpv6Repr<'a> {
    /// Reads a message from `src` to `dst` whose checksum is right. An ND message must have
    /// code 0 (RFC 4861 §6.1, §7.1), or it is refused.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(
        src: &Ipv6Addr,
        dst: &Ipv6Addr,
        p: &Icmpv6Packet<&'a T>,
    ) -> Result<Self> {
        p.check_len()?;
        p.check_checksum(src, dst)?;
        let t = p.msg_type();
        if NdiscRepr::is_ndisc(t) {
            if p.msg_code() != 0 {
                return Err(Error::new(
                    field::CODE,
                    ErrorKind::BadCode {
                        msg_type: t.value(),
                        code: p.msg_code(),
                    },
                ));
            }
            return NdiscRepr::parse(t, p.body()).map(Icmpv6Repr::Ndisc);
        }
        if MldRepr::is_mld(t) {
            // MLD codes are "initialized to zero by the sender; ignored by receivers"
            // (RFC 2710 §3.2, RFC 3810 §5.1.2).
            return MldRepr::parse(t, p.body()).map(Icmpv6Repr::Mld);
        }
        Ok(Icmpv6Repr::Other {
            msg_type: t,
            code: p.msg_code(),
            body: p.body(),
        })
    }

    pub fn msg_type(&self) -> Icmpv6Type {
        match self {
            Icmpv6Repr::Ndisc(n) => n.msg_type(),
            Icmpv6Repr::Mld(m) => m.msg_type(),
            Icmpv6Repr::Other { msg_type, .. } => *msg_type,
        }
    }

    pub fn buffer_len(&self) -> usize {
        HEADER_LEN
            + match self {
                Icmpv6Repr::Ndisc(n) => n.body_len(),
                Icmpv6Repr::Mld(m) => m.body_len(),
                Icmpv6Repr::Other { body, .. } => body.len(),
            }
    }

    /// Writes the message, with its checksum for `src` -> `dst`, into the first
    /// [`Icmpv6Repr::buffer_len`] octets of `out`.
    pub fn emit(&self, src: &Ipv6Addr, dst: &Ipv6Addr, out: &mut [u8]) -> Result<usize> {
        let n = self.buffer_len();
        let available = out.len();
        let out = out
            .get_mut(..n)
            .ok_or(Error::buffer_too_small(n, available))?;
        let code = match self {
            Icmpv6Repr::Other { msg_type, code, .. } => {
                if NdiscRepr::is_ndisc(*msg_type) || MldRepr::is_mld(*msg_type) {
                    // It would be read back as another variant.
                    return Err(Error::new(
                        field::TYPE,
                        ErrorKind::BadValue {
                            field: "ICMPv6 Type of Other",
                            value: u32::from(msg_type.value()),
                        },
                    ));
                }
                *code
            }
            _ => 0,
        };
        let mut p = Icmpv6Packet::new_unchecked(&mut *out);
        p.set_msg_type(self.msg_type());
        p.set_msg_code(code);
        let body = p.body_mut();
        match self {
            Icmpv6Repr::Ndisc(r) => r.emit_body(body).map_err(|e| e.shifted(HEADER_LEN))?,
            Icmpv6Repr::Mld(r) => r.emit_body(body).map_err(|e| e.shifted(HEADER_LEN))?,
            Icmpv6Repr::Other { body: b, .. } => body.copy_from_slice(b),
        }
        p.fill_checksum(src, dst);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);
    const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

    #[test]
    fn checksum_matches_a_hand_computed_sum() {
        // fe80::1 -> ff02::1, an Echo Request type 128 code 0 id 0 seq 0 with no data:
        // 0xfe80 + 0x0001 + 0xff02 + 0x0001 + length 8 + next header 58 + 0x8000 = 0x27dc6,
        // folded 0x7dc8; the complement is 0x8237.
        let msg = [128, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(icmpv6_checksum(&SRC, &ALL_NODES, &msg), 0x8237);
        // An odd length is padded with a zero octet: one more for the length and 0x1200 for
        // the last octet give 0x8fc9, complement 0x7036.
        let odd = icmpv6_checksum(&SRC, &ALL_NODES, &[128, 0, 0, 0, 0, 0, 0, 0, 0x12]);
        assert_eq!(odd, 0x7036);
    }

    #[test]
    fn other_messages_round_trip_and_bad_checksums_say_what_was_expected() {
        let mut buf = [128u8, 0, 0, 0, 0, 7, 0, 1, 0xde, 0xad];
        let r = Icmpv6Repr::Other {
            msg_type: Icmpv6Type::EchoRequest,
            code: 0,
            body: &[0, 7, 0, 1, 0xde, 0xad],
        };
        assert_eq!(r.buffer_len(), 10);
        assert_eq!(r.emit(&SRC, &ALL_NODES, &mut buf), Ok(10));
        let p = Icmpv6Packet::new_checked(&buf[..]).unwrap();
        assert!(p.verify_checksum(&SRC, &ALL_NODES));
        assert_eq!(Icmpv6Repr::parse(&SRC, &ALL_NODES, &p), Ok(r));
        let good = p.checksum();

        let mut bad = buf;
        bad[2] ^= 0x40;
        let p = Icmpv6Packet::new_checked(&bad[..]).unwrap();
        assert_eq!(
            Icmpv6Repr::parse(&SRC, &ALL_NODES, &p),
            Err(Error::new(
                2,
                ErrorKind::BadChecksum {
                    found: good ^ 0x4000,
                    expected: good
                }
            ))
        );
        // The same message between other addresses does not verify either.
        let p = Icmpv6Packet::new_checked(&buf[..]).unwrap();
        assert!(!p.verify_checksum(&SRC, &"ff02::2".parse().unwrap()));
    }

    #[test]
    fn short_buffers_are_refused() {
        for n in 0..4 {
            assert!(Icmpv6Packet::new_checked(&[128u8, 0, 0][..n.min(3)]).is_err());
        }
        let r = Icmpv6Repr::Other {
            msg_type: Icmpv6Type::EchoReply,
            code: 0,
            body: &[1, 2, 3, 4],
        };
        assert!(matches!(
            r.emit(&SRC, &ALL_NODES, &mut [0u8; 7]).unwrap_err().kind,
            ErrorKind::BufferTooSmall {
                needed: 8,
                available: 7
            }
        ));
        // An ND type cannot hide in Other.
        let r = Icmpv6Repr::Other {
            msg_type: Icmpv6Type::RouterSolicitation,
            code: 0,
            body: &[0; 4],
        };
        assert!(r.emit(&SRC, &ALL_NODES, &mut [0u8; 8]).is_err());
    }
}
