//! Neighbor Discovery options (RFC 4861 §4.6).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |     Type      |    Length     |              ...              |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ~                              ...                              ~
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//! Length counts 8-octet units, Type and Length included; zero is invalid (§4.6: the packet
//! MUST be silently discarded). Receivers skip options they do not know (§4.6); here they
//! are kept and emitted again as they came.
//!
//! Source/Target Link-layer Address (§4.6.1; 6 octets on Ethernet, RFC 2464 §8):
//! ```text
//! |     Type      |    Length     |    Link-Layer Address ...
//! ```
//! Prefix Information (§4.6.2), Length 4:
//! ```text
//! |     Type      |    Length     | Prefix Length |L|A| Reserved1 |
//! |                         Valid Lifetime                        |
//! |                       Preferred Lifetime                      |
//! |                           Reserved2                           |
//! |                            Prefix (16)                        |
//! ```
//! MTU (§4.6.4), Length 1:
//! ```text
//! |     Type      |    Length     |           Reserved            |
//! |                              MTU                              |
//! ```

use core::fmt;
use std::net::Ipv6Addr;

use super::error::{Error, ErrorKind, Result};
use crate::wire::values::{flags, open_enum};

open_enum! {
    /// ND option types (RFC 4861 §4.6; IANA "IPv6 Neighbor Discovery Option Formats").
    pub enum NdOptionType: u8 {
        SourceLinkLayerAddress = 1 => "Source Link-layer Address",
        TargetLinkLayerAddress = 2 => "Target Link-layer Address",
        PrefixInformation = 3 => "Prefix Information",
        RedirectedHeader = 4 => "Redirected Header",
        Mtu = 5 => "MTU",
    }
}

flags! {
    /// Prefix Information flags (RFC 4861 §4.6.2; R: RFC 6275 §7.2).
    pub struct PrefixFlags: u8 {
        /// On-link.
        const ON_LINK = 0x80, "L";
        /// Autonomous address configuration.
        const AUTONOMOUS = 0x40, "A";
        /// Router address (RFC 6275 §7.2).
        const ROUTER_ADDRESS = 0x20, "R";
    }
}

/// Length of a Prefix Information option (Length 4).
pub const PREFIX_INFORMATION_LEN: usize = 32;
/// Length of an MTU option (Length 1).
pub const MTU_LEN: usize = 8;
/// Longest option: Length 255.
pub const MAX_OPTION_LEN: usize = 255 * 8;

/// A Prefix Information option. Reserved fields are not kept (sent as zero, §4.6.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrefixInformation {
    pub prefix_len: u8,
    pub flags: PrefixFlags,
    /// Seconds; 0xffffffff is infinity.
    pub valid_lifetime: u32,
    /// Seconds; 0xffffffff is infinity.
    pub preferred_lifetime: u32,
    pub prefix: Ipv6Addr,
}

/// One ND option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NdOption<'a> {
    /// The sender's link-layer address: the option's data as received (on Ethernet the six
    /// octets of the MAC; a longer option keeps its padding).
    SourceLinkLayerAddress(&'a [u8]),
    TargetLinkLayerAddress(&'a [u8]),
    PrefixInformation(PrefixInformation),
    Mtu(u32),
    /// Any other option: its type and the octets after Type and Length.
    Unknown {
        option_type: u8,
        data: &'a [u8],
    },
}

impl<'a> NdOption<'a> {
    pub fn option_type(&self) -> NdOptionType {
        match self {
            NdOption::SourceLinkLayerAddress(_) => NdOptionType::SourceLinkLayerAddress,
            NdOption::TargetLinkLayerAddress(_) => NdOptionType::TargetLinkLayerAddress,
            NdOption::PrefixInformation(_) => NdOptionType::PrefixInformation,
            NdOption::Mtu(_) => NdOptionType::Mtu,
            NdOption::Unknown { option_type, .. } => NdOptionType::from(*option_type),
        }
    }

    /// Octets after Type and Length before padding.
    fn data_len(&self) -> usize {
        match self {
            NdOption::SourceLinkLayerAddress(a) | NdOption::TargetLinkLayerAddress(a) => a.len(),
            NdOption::PrefixInformation(_) => PREFIX_INFORMATION_LEN - 2,
            NdOption::Mtu(_) => MTU_LEN - 2,
            NdOption::Unknown { data, .. } => data.len(),
        }
    }

    /// The option's length on the wire: Type, Length, data and zero padding to a multiple
    /// of 8 (§4.6.1: link-layer addresses are padded).
    pub fn buffer_len(&self) -> usize {
        (2 + self.data_len()).next_multiple_of(8)
    }

    /// The link-layer address of a Source or Target Link-layer Address option on Ethernet:
    /// Length 1, six octets (RFC 2464 §8).
    pub fn ethernet_address(&self) -> Option<[u8; 6]> {
        match self {
            NdOption::SourceLinkLayerAddress(a) | NdOption::TargetLinkLayerAddress(a) => {
                (*a).try_into().ok()
            }
            _ => None,
        }
    }

    /// Reads one option from `data` (the octets after Type and Length, `length` 8-octet
    /// units in all). `offset` is where the option starts, for errors.
    fn parse(option_type: u8, length: u8, data: &'a [u8], offset: usize) -> Result<Self> {
        let bad_len = Error::new(
            offset + 1,
            ErrorKind::BadOptionLength {
                option: option_type,
                length,
            },
        );
        let u32_at =
            |at: usize| u32::from_be_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]]);
        Ok(match NdOptionType::from(option_type) {
            NdOptionType::SourceLinkLayerAddress => NdOption::SourceLinkLayerAddress(data),
            NdOptionType::TargetLinkLayerAddress => NdOption::TargetLinkLayerAddress(data),
            NdOptionType::PrefixInformation => {
                if usize::from(length) * 8 != PREFIX_INFORMATION_LEN {
                    return Err(bad_len);
                }
                let prefix_len = data[0];
                if prefix_len > 128 {
                    return Err(Error::new(
                        offset + 2,
                        ErrorKind::BadValue {
                            field: "Prefix Length",
                            value: u32::from(prefix_len),
                        },
                    ));
                }
                let mut prefix = [0u8; 16];
                prefix.copy_from_slice(&data[14..30]);
                NdOption::PrefixInformation(PrefixInformation {
                    prefix_len,
                    flags: PrefixFlags(data[1] & 0xe0),
                    valid_lifetime: u32_at(2),
                    preferred_lifetime: u32_at(6),
                    prefix: Ipv6Addr::from(prefix),
                })
            }
            NdOptionType::Mtu => {
                if usize::from(length) * 8 != MTU_LEN {
                    return Err(bad_len);
                }
                NdOption::Mtu(u32_at(2))
            }
            NdOptionType::RedirectedHeader | NdOptionType::Unknown(_) => {
                NdOption::Unknown { option_type, data }
            }
        })
    }

    /// Writes the option into `out`, which is exactly [`NdOption::buffer_len`] long.
    fn emit_into(&self, out: &mut [u8]) {
        out.fill(0);
        out[0] = self.option_type().value();
        out[1] = (out.len() / 8) as u8;
        let body = &mut out[2..];
        match self {
            NdOption::SourceLinkLayerAddress(a) | NdOption::TargetLinkLayerAddress(a) => {
                body[..a.len()].copy_from_slice(a);
            }
            NdOption::PrefixInformation(p) => {
                body[0] = p.prefix_len;
                body[1] = p.flags.0;
                body[2..6].copy_from_slice(&p.valid_lifetime.to_be_bytes());
                body[6..10].copy_from_slice(&p.preferred_lifetime.to_be_bytes());
                body[14..30].copy_from_slice(&p.prefix.octets());
            }
            NdOption::Mtu(mtu) => body[2..6].copy_from_slice(&mtu.to_be_bytes()),
            NdOption::Unknown { data, .. } => body[..data.len()].copy_from_slice(data),
        }
    }

    /// What would make this option impossible to send as it is.
    fn check_encodable(&self) -> Result<()> {
        let n = self.buffer_len();
        if n > MAX_OPTION_LEN {
            return Err(Error::new(
                0,
                ErrorKind::TooLong {
                    length: n,
                    maximum: MAX_OPTION_LEN,
                },
            ));
        }
        if let NdOption::PrefixInformation(p) = self
            && p.prefix_len > 128
        {
            return Err(Error::new(
                2,
                ErrorKind::BadValue {
                    field: "Prefix Length",
                    value: u32::from(p.prefix_len),
                },
            ));
        }
        // A known type as Unknown would be read back as that type, or refused.
        if let NdOption::Unknown { option_type, .. } = self
            && matches!(
                NdOptionType::from(*option_type),
                NdOptionType::SourceLinkLayerAddress
                    | NdOptionType::TargetLinkLayerAddress
                    | NdOptionType::PrefixInformation
                    | NdOptionType::Mtu
            )
        {
            return Err(Error::new(
                0,
                ErrorKind::BadValue {
                    field: "unknown option type",
                    value: u32::from(*option_type),
                },
            ));
        }
        Ok(())
    }
}

/// The options of an ND message: a validated byte range from a received message, or a list
/// to emit. Compared by their options.
#[derive(Clone, Copy)]
pub enum NdOptions<'a> {
    /// Received options, starting `offset` octets into the ICMPv6 message. Only made by
    /// [`NdOptions::parse`], which validates every option.
    Wire { bytes: &'a [u8], offset: usize },
    /// Options to send, in order.
    List(&'a [NdOption<'a>]),
}

impl<'a> NdOptions<'a> {
    pub const EMPTY: NdOptions<'static> = NdOptions::List(&[]);

    /// Validates an options area that starts `offset` octets into the message.
    pub fn parse(bytes: &'a [u8], offset: usize) -> Result<Self> {
        for o in NdOptionsIter::new(bytes, offset) {
            o?;
        }
        Ok(NdOptions::Wire { bytes, offset })
    }

    pub fn iter(&self) -> impl Iterator<Item = NdOption<'a>> + use<'a> {
        let (wire, list): (Option<NdOptionsIter<'a>>, &'a [NdOption<'a>]) = match *self {
            NdOptions::Wire { bytes, offset } => (Some(NdOptionsIter::new(bytes, offset)), &[]),
            NdOptions::List(l) => (None, l),
        };
        wire.into_iter()
            .flatten()
            .map_while(|r| r.ok())
            .chain(list.iter().copied())
    }

    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }

    /// The link-layer address of the first Source Link-layer Address option.
    pub fn source_link_layer_address(&self) -> Option<&'a [u8]> {
        self.iter().find_map(|o| match o {
            NdOption::SourceLinkLayerAddress(a) => Some(a),
            _ => None,
        })
    }

    /// The link-layer address of the first Target Link-layer Address option.
    pub fn target_link_layer_address(&self) -> Option<&'a [u8]> {
        self.iter().find_map(|o| match o {
            NdOption::TargetLinkLayerAddress(a) => Some(a),
            _ => None,
        })
    }

    pub fn contains(&self, t: NdOptionType) -> bool {
        self.iter().any(|o| o.option_type() == t)
    }

    pub fn buffer_len(&self) -> usize {
        self.iter().map(|o| o.buffer_len()).sum()
    }

    /// Writes the options into `out`, which is exactly [`NdOptions::buffer_len`] long.
    /// `offset` is where they start in the message, for errors.
    pub fn emit(&self, out: &mut [u8], offset: usize) -> Result<()> {
        let mut pos = 0;
        let available = out.len();
        for o in self.iter() {
            o.check_encodable().map_err(|e| e.shifted(offset + pos))?;
            let n = o.buffer_len();
            let dst = out.get_mut(pos..pos + n).ok_or(Error::buffer_too_small(
                offset + pos + n,
                offset + available,
            ))?;
            o.emit_into(dst);
            pos += n;
        }
        Ok(())
    }
}

impl fmt::Debug for NdOptions<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl PartialEq for NdOptions<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Eq for NdOptions<'_> {}

/// Iterator over an options area: yields each option and stops after the first error.
#[derive(Debug, Clone)]
pub struct NdOptionsIter<'a> {
    rest: &'a [u8],
    offset: usize,
}

impl<'a> NdOptionsIter<'a> {
    /// Options in `bytes`, which start `offset` octets into the message.
    pub fn new(bytes: &'a [u8], offset: usize) -> Self {
        Self {
            rest: bytes,
            offset,
        }
    }
}

impl<'a> Iterator for NdOptionsIter<'a> {
    type Item = Result<NdOption<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        let at = self.offset;
        let result = match self.rest {
            [] => return None,
            [_] => Err(Error::truncated(at + 1, 1, 0)),
            [t, len, ..] => {
                let (t, len) = (*t, *len);
                let n = usize::from(len) * 8;
                if len == 0 {
                    Err(Error::new(
                        at + 1,
                        ErrorKind::BadOptionLength {
                            option: t,
                            length: 0,
                        },
                    ))
                } else if n > self.rest.len() {
                    Err(Error::new(
                        at + 1,
                        ErrorKind::OptionOverrun {
                            option: t,
                            length: len,
                            remaining: self.rest.len(),
                        },
                    ))
                } else {
                    let (this, rest) = self.rest.split_at(n);
                    self.rest = rest;
                    self.offset += n;
                    return Some(NdOption::parse(t, len, &this[2..], at));
                }
            }
        };
        self.rest = &[];
        Some(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The options of an RA of `mag-cnf` for 2001:db8:1::/64: SLLA 02:00:5e:00:53:01, MTU
    // 1460, a Prefix Information /64 L|A valid and preferred 3600 s. Wireshark (see
    // mag-cnf/tests/access_tshark.rs) decodes these field by field.
    #[rustfmt::skip]
    const RA_OPTIONS: [u8; 48] = [
        1, 1, 2, 0, 0x5e, 0, 0x53, 1,
        5, 1, 0, 0, 0, 0, 0x05, 0xb4,
        3, 4, 64, 0xc0, 0, 0, 0x0e, 0x10, 0, 0, 0x0e, 0x10, 0, 0, 0, 0,
        0x20, 1, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];

    const MAG: [u8; 6] = [2, 0, 0x5e, 0, 0x53, 1];

    fn pio() -> PrefixInformation {
        PrefixInformation {
            prefix_len: 64,
            flags: PrefixFlags::ON_LINK | PrefixFlags::AUTONOMOUS,
            valid_lifetime: 3600,
            preferred_lifetime: 3600,
            prefix: "2001:db8:1::".parse().unwrap(),
        }
    }

    #[test]
    fn parse_and_emit_both_ways() {
        let opts = NdOptions::parse(&RA_OPTIONS, 16).unwrap();
        let list = [
            NdOption::SourceLinkLayerAddress(&MAG),
            NdOption::Mtu(1460),
            NdOption::PrefixInformation(pio()),
        ];
        assert_eq!(opts, NdOptions::List(&list));
        assert_eq!(opts.source_link_layer_address(), Some(&MAG[..]));
        assert_eq!(list[0].ethernet_address(), Some(MAG));
        assert!(opts.contains(NdOptionType::Mtu));
        assert_eq!(opts.target_link_layer_address(), None);
        let l = NdOptions::List(&list);
        assert_eq!(l.buffer_len(), 48);
        let mut out = [0xffu8; 48];
        l.emit(&mut out, 16).unwrap();
        assert_eq!(out, RA_OPTIONS);
    }

    #[test]
    fn unknown_options_are_kept_and_emitted_again() {
        // A Recursive DNS Server option (type 25, RFC 8106) and a Redirected Header.
        let mut bytes = vec![25, 3, 0, 0, 0, 0, 0x0e, 0x10];
        bytes.extend_from_slice(&[0x20, 1, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x53]);
        bytes.extend_from_slice(&[4, 1, 0, 0, 0, 0, 0, 0]);
        let opts = NdOptions::parse(&bytes, 8).unwrap();
        let v: Vec<_> = opts.iter().collect();
        assert_eq!(v.len(), 2);
        assert_eq!(
            v[0],
            NdOption::Unknown {
                option_type: 25,
                data: &bytes[2..24]
            }
        );
        assert_eq!(v[1].option_type(), NdOptionType::RedirectedHeader);
        let mut out = vec![0u8; opts.buffer_len()];
        opts.emit(&mut out, 8).unwrap();
        assert_eq!(out, bytes);
    }

    #[test]
    fn a_long_link_layer_address_keeps_its_padding() {
        // Length 3 (an IPoIB-sized address): 22 octets of data.
        let bytes: Vec<u8> = [2u8, 3].into_iter().chain(1..=22).collect();
        let opts = NdOptions::parse(&bytes, 24).unwrap();
        let o = opts.iter().next().unwrap();
        assert_eq!(o, NdOption::TargetLinkLayerAddress(&bytes[2..]));
        assert_eq!(o.ethernet_address(), None);
        let mut out = vec![0u8; 24];
        opts.emit(&mut out, 24).unwrap();
        assert_eq!(out, bytes);
    }

    #[test]
    fn malformed_options_are_refused_at_their_offset() {
        let err = |b: &[u8]| NdOptions::parse(b, 16).unwrap_err();
        // Length zero (RFC 4861 §4.6).
        assert_eq!(
            err(&[1, 0, 0, 0, 0, 0, 0, 0]),
            Error::new(
                17,
                ErrorKind::BadOptionLength {
                    option: 1,
                    length: 0
                }
            )
        );
        // Past the end.
        assert_eq!(
            err(&[1, 1, 2, 0, 0, 0, 0, 0, 3, 4, 64, 0]),
            Error::new(
                25,
                ErrorKind::OptionOverrun {
                    option: 3,
                    length: 4,
                    remaining: 4
                }
            )
        );
        // A lone type octet.
        assert!(matches!(err(&[5]).kind, ErrorKind::Truncated { .. }));
        // Fixed lengths.
        assert_eq!(
            err(&[5, 2, 0, 0, 0, 0, 5, 0xdc, 0, 0, 0, 0, 0, 0, 0, 0]).kind,
            ErrorKind::BadOptionLength {
                option: 5,
                length: 2
            }
        );
        assert_eq!(
            err(&[3, 1, 64, 0xc0, 0, 0, 0, 0]).kind,
            ErrorKind::BadOptionLength {
                option: 3,
                length: 1
            }
        );
        let mut bad_plen = RA_OPTIONS;
        bad_plen[18] = 129;
        assert_eq!(
            err(&bad_plen),
            Error::new(
                34,
                ErrorKind::BadValue {
                    field: "Prefix Length",
                    value: 129
                }
            )
        );
        // Iteration stops at the first error.
        let mut it = NdOptionsIter::new(&[1, 1, 0, 0, 0, 0, 0, 0, 9, 0, 1, 1], 0);
        assert!(it.next().unwrap().is_ok());
        assert!(it.next().unwrap().is_err());
        assert!(it.next().is_none());
    }

    #[test]
    fn what_cannot_be_sent_is_refused() {
        let big = [0u8; 2040];
        let l = [NdOption::Unknown {
            option_type: 200,
            data: &big,
        }];
        let o = NdOptions::List(&l);
        let mut out = vec![0u8; o.buffer_len()];
        assert!(matches!(
            o.emit(&mut out, 8).unwrap_err().kind,
            ErrorKind::TooLong { .. }
        ));
        let mut p = pio();
        p.prefix_len = 200;
        let l = [NdOption::Mtu(1280), NdOption::PrefixInformation(p)];
        let mut out = [0u8; 40];
        assert_eq!(
            NdOptions::List(&l).emit(&mut out, 16).unwrap_err().offset,
            16 + 8 + 2
        );
        let l = [NdOption::Unknown {
            option_type: 5,
            data: &[0; 6],
        }];
        assert!(NdOptions::List(&l).emit(&mut [0u8; 8], 0).is_err());
        let l = [NdOption::Mtu(1280)];
        assert!(matches!(
            NdOptions::List(&l).emit(&mut [0u8; 4], 0).unwrap_err().kind,
            ErrorKind::BufferTooSmall { .. }
        ));
    }

    #[test]
    fn reserved_bits_are_dropped() {
        let mut b = RA_OPTIONS;
        b[19] |= 0x1f;
        b[28] = 0xff;
        let o = NdOptions::parse(&b[16..], 32).unwrap();
        assert_eq!(o.iter().next(), Some(NdOption::PrefixInformation(pio())));
    }
}
