//! The ESP packet format (RFC 4303 §2): a zero-copy view of the cleartext header and the
//! parser of the trailer that decryption reveals.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+ ----
//! |               Security Parameters Index (SPI)                 | ^Int.
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+ |Cov-
//! |                      Sequence Number                          | |ered
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+ | ----
//! |                    Payload Data* (variable)                   | |   ^
//! ~                                                               ~ |   |
//! |                                                               | |Conf.
//! +               +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+ |Cov-
//! |               |     Padding (0-255 bytes)                     | |ered*
//! +-+-+-+-+-+-+-+-+               +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+ |   |
//! |                               |  Pad Length   | Next Header   | v   v
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+ ------
//! |         Integrity Check Value-ICV   (variable)                |
//! ~                                                               ~
//! |                                                               |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//! (RFC 4303 Figure 1.) The algorithms used here carry their IV at the start of the Payload
//! Data (RFC 3602 §3, RFC 4106 §3).

use core::fmt;

use crate::Error;

mod field {
    use core::ops::Range;
    pub const SPI: Range<usize> = 0..4;
    pub const SEQUENCE_NUMBER: Range<usize> = 4..8;
    pub const PAYLOAD: usize = 8;
}

/// Length of the ESP header: SPI and Sequence Number (RFC 4303 §2).
pub const HEADER_LEN: usize = field::PAYLOAD;
/// Pad Length and Next Header (RFC 4303 §2.5, §2.6).
pub const TRAILER_LEN: usize = 2;
/// Next Header value of a dummy packet, which the receiver discards (RFC 4303 §2.6).
pub const NEXT_HEADER_NO_NEXT: u8 = 59;
/// IP protocol number of ESP (RFC 4303 §2).
pub const IPPROTO_ESP: u8 = 50;

/// A Security Parameters Index (RFC 4303 §2.1).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Spi(pub u32);

impl Spi {
    /// RFC 4303 §2.1: 0 is reserved for local use and MUST NOT be sent on the wire; 1..=255
    /// are reserved by IANA. An SA is configured only with a value above them.
    pub fn is_assignable(self) -> bool {
        self.0 > 255
    }
}

impl fmt::Debug for Spi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#010x}", self.0)
    }
}

impl fmt::Display for Spi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#010x}", self.0)
    }
}

/// A read-only view of an ESP packet (what follows the IPv6 header and any extension headers
/// before ESP). After [`EspPacket::new_checked`] no accessor panics.
#[derive(Debug, Clone, Copy)]
pub struct EspPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EspPacket<T> {
    /// Wraps `buffer` without checking it.
    pub const fn new_unchecked(buffer: T) -> Self {
        EspPacket { buffer }
    }

    /// Wraps `buffer` after checking it holds at least the ESP header.
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        Ok(EspPacket { buffer })
    }

    pub fn spi(&self) -> Spi {
        Spi(be32(&self.buffer.as_ref()[field::SPI]))
    }

    /// The low-order 32 bits of the sequence number (all of it without ESN, RFC 4303 §2.2).
    pub fn sequence_number(&self) -> u32 {
        be32(&self.buffer.as_ref()[field::SEQUENCE_NUMBER])
    }

    /// IV, ciphertext and ICV.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD..]
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }
}

fn be32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(b);
    u32::from_be_bytes(a)
}

/// The cleartext ESP header (RFC 4303 §2.1, §2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EspHeader {
    pub spi: Spi,
    /// The low-order 32 bits of the sender's counter.
    pub sequence_number: u32,
}

impl EspHeader {
    pub fn parse<T: AsRef<[u8]>>(p: &EspPacket<T>) -> Self {
        EspHeader {
            spi: p.spi(),
            sequence_number: p.sequence_number(),
        }
    }

    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header into the first [`HEADER_LEN`] octets of `buf`.
    pub fn emit(&self, buf: &mut [u8; HEADER_LEN]) {
        buf[field::SPI].copy_from_slice(&self.spi.0.to_be_bytes());
        buf[field::SEQUENCE_NUMBER].copy_from_slice(&self.sequence_number.to_be_bytes());
    }
}

/// What decryption reveals at the end of the plaintext (RFC 4303 §2.4 to §2.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trailer {
    pub pad_length: u8,
    pub next_header: u8,
}

impl Trailer {
    /// Splits a decrypted `plaintext` (Payload Data, Padding, Pad Length, Next Header) into
    /// the payload and the trailer.
    ///
    /// RFC 4303 §2.4: the default padding is the series 1, 2, 3, ...; "the receiver SHOULD
    /// inspect the Padding field": a padding that is not that series is refused, since every
    /// sender this code talks to (itself, the kernel, strongSwan) uses the default.
    pub fn split(plaintext: &[u8]) -> Result<(&[u8], Trailer), Error> {
        let n = plaintext.len();
        if n < TRAILER_LEN {
            return Err(Error::Truncated);
        }
        let trailer = Trailer {
            pad_length: plaintext[n - 2],
            next_header: plaintext[n - 1],
        };
        let pad = usize::from(trailer.pad_length);
        let Some(payload_len) = (n - TRAILER_LEN).checked_sub(pad) else {
            return Err(Error::BadPadding);
        };
        let padding = &plaintext[payload_len..n - TRAILER_LEN];
        if !padding.iter().zip(1u8..).all(|(&b, want)| b == want) {
            return Err(Error::BadPadding);
        }
        Ok((&plaintext[..payload_len], trailer))
    }

    /// Octets of padding that make `payload_len` plus the trailer a multiple of `align`
    /// (RFC 4303 §2.4: the cipher's block size, and at least 4 so that the ICV is aligned
    /// on a 4-octet boundary).
    pub fn padding_for(payload_len: usize, align: usize) -> usize {
        let align = align.max(4);
        (align - (payload_len + TRAILER_LEN) % align) % align
    }

    /// Writes the default padding (1, 2, 3, ...) and the trailer after a payload into `out`,
    /// which must be `padding + 2` octets long.
    pub fn emit(&self, out: &mut [u8]) {
        let n = out.len();
        for (b, v) in out[..n.saturating_sub(TRAILER_LEN)].iter_mut().zip(1u8..) {
            *b = v;
        }
        if n >= TRAILER_LEN {
            out[n - 2] = self.pad_length;
            out[n - 1] = self.next_header;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_view_and_repr_agree() {
        let bytes = [0, 0, 0x43, 0x21, 0, 0, 0, 8, 0xaa];
        let p = EspPacket::new_checked(&bytes[..]).unwrap();
        assert_eq!(p.spi(), Spi(0x4321));
        assert_eq!(p.sequence_number(), 8);
        assert_eq!(p.payload(), &[0xaa]);
        let h = EspHeader::parse(&p);
        let mut out = [0u8; HEADER_LEN];
        h.emit(&mut out);
        assert_eq!(out, bytes[..8]);
    }

    #[test]
    fn short_packets_are_refused() {
        for n in 0..HEADER_LEN {
            assert_eq!(
                EspPacket::new_checked(&[0u8; 8][..n]).unwrap_err(),
                Error::Truncated
            );
        }
    }

    #[test]
    fn trailer_round_trip_and_padding_series() {
        let mut buf = vec![0xee; 5];
        let pad = Trailer::padding_for(5, 16);
        assert_eq!(pad, 9);
        buf.resize(5 + pad + TRAILER_LEN, 0);
        Trailer {
            pad_length: pad as u8,
            next_header: 135,
        }
        .emit(&mut buf[5..]);
        assert_eq!(&buf[5..], &[1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 135]);
        let (payload, t) = Trailer::split(&buf).unwrap();
        assert_eq!(payload, &[0xee; 5]);
        assert_eq!(t.next_header, 135);
    }

    #[test]
    fn bad_trailers_are_refused() {
        assert_eq!(Trailer::split(&[7]).unwrap_err(), Error::Truncated);
        // Pad length beyond the plaintext.
        assert_eq!(
            Trailer::split(&[1, 2, 3, 135]).unwrap_err(),
            Error::BadPadding
        );
        // Padding not 1, 2, ...
        assert_eq!(
            Trailer::split(&[9, 1, 3, 2, 135]).unwrap_err(),
            Error::BadPadding
        );
        // Zero padding, empty payload.
        assert_eq!(Trailer::split(&[0, 135]).unwrap().0, &[] as &[u8]);
    }

    #[test]
    fn padding_aligns_to_four_at_least() {
        for len in 0..64 {
            for align in [1, 4, 16] {
                let p = Trailer::padding_for(len, align);
                assert_eq!((len + p + 2) % align.max(4), 0);
                assert!(p < align.max(4));
            }
        }
    }

    #[test]
    fn spi_reservations() {
        assert!(!Spi(0).is_assignable());
        assert!(!Spi(255).is_assignable());
        assert!(Spi(256).is_assignable());
    }
}
