//! What can be wrong with a frame on an access link, and where.

use core::fmt;
use std::net::Ipv6Addr;

/// A malformed or invalid frame: what was wrong and at which byte offset from the start of
/// the buffer handed to the parser (the Ethernet frame for [`super::FrameRepr`], the ICMPv6
/// message for [`super::Icmpv6Repr`], and so on).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Error {
    pub offset: usize,
    pub kind: ErrorKind,
}

/// What was wrong. Format errors come first; the validity rules of RFC 4861 §6.1 and §7.1
/// (hop limit, code, addresses, options allowed) after them, so that a receiver can tell a
/// packet it MUST silently discard from one it cannot read at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The buffer ends before a field that must be there.
    Truncated { needed: usize, available: usize },
    /// The frame does not carry IPv6 (EtherType 0x86dd, RFC 2464 §3).
    NotIpv6 { ethertype: u16 },
    /// The IPv6 Version field is not 6 (RFC 8200 §3).
    BadVersion { version: u8 },
    /// The IPv6 Payload Length runs past the end of the frame.
    BadPayloadLength { declared: usize, available: usize },
    /// The upper-layer header after the IPv6 header (and a Hop-by-Hop Options header, if
    /// any) is not ICMPv6.
    NotIcmpv6 { next_header: u8 },
    /// The ICMPv6 checksum over the pseudo-header does not match (RFC 4443 §2.3).
    BadChecksum { found: u16, expected: u16 },
    /// The message is shorter than its type's fixed fields (RFC 4861 §6.1, §7.1: "ICMP
    /// length (derived from the IP length) is N or more octets").
    TooShortForType {
        msg_type: u8,
        minimum: usize,
        length: usize,
    },
    /// An option's length is zero (RFC 4861 §4.6: such a packet MUST be silently
    /// discarded), or not the one its RFC fixes.
    BadOptionLength { option: u8, length: u8 },
    /// An option's length runs past the end of the message.
    OptionOverrun {
        option: u8,
        length: u8,
        remaining: usize,
    },
    /// A field holds a value its RFC does not allow.
    BadValue { field: &'static str, value: u32 },
    /// An ND message whose ICMP Code is not 0 (RFC 4861 §6.1, §7.1).
    BadCode { msg_type: u8, code: u8 },
    /// An ND message whose IP Hop Limit is not 255: it may come from off the link
    /// (RFC 4861 §6.1, §7.1).
    BadHopLimit { hop_limit: u8 },
    /// A source address the message type does not allow (a Router Advertisement not from
    /// a link-local address, RFC 4861 §6.1.2).
    BadSource { address: Ipv6Addr },
    /// A destination address the message type does not allow (a duplicate address
    /// detection solicitation not sent to a solicited-node address, RFC 4861 §7.1.1).
    BadDestination { address: Ipv6Addr },
    /// A Neighbor Solicitation or Advertisement for a multicast address (RFC 4861 §7.1).
    MulticastTarget { target: Ipv6Addr },
    /// An option the message may not carry (a source link-layer address option in a
    /// message from the unspecified address, RFC 4861 §6.1.1, §7.1.1).
    OptionNotAllowed { option: u8 },
    /// A solicited Neighbor Advertisement sent to a multicast address (RFC 4861 §7.1.2).
    SolicitedToMulticast,
    /// A Redirect whose Target Address is neither link-local nor its Destination Address
    /// (RFC 4861 §8.1).
    BadRedirectTarget { target: Ipv6Addr },
    /// The frame does not fit in the output buffer.
    BufferTooSmall { needed: usize, available: usize },
    /// The encoded packet would not fit its length field.
    TooLong { length: usize, maximum: usize },
}

impl Error {
    pub const fn new(offset: usize, kind: ErrorKind) -> Self {
        Self { offset, kind }
    }

    pub(crate) const fn truncated(offset: usize, needed: usize, available: usize) -> Self {
        Self::new(offset, ErrorKind::Truncated { needed, available })
    }

    /// The same error, `by` octets further into an enclosing buffer.
    pub(crate) const fn shifted(self, by: usize) -> Self {
        Self::new(self.offset.saturating_add(by), self.kind)
    }

    pub(crate) const fn buffer_too_small(needed: usize, available: usize) -> Self {
        Self::new(0, ErrorKind::BufferTooSmall { needed, available })
    }

    /// True for the validity rules of RFC 4861 §6.1 and §7.1: the message could be read,
    /// and the RFC says to discard it.
    pub fn is_invalid_nd(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::BadCode { .. }
                | ErrorKind::BadHopLimit { .. }
                | ErrorKind::BadSource { .. }
                | ErrorKind::BadDestination { .. }
                | ErrorKind::MulticastTarget { .. }
                | ErrorKind::OptionNotAllowed { .. }
                | ErrorKind::SolicitedToMulticast
                | ErrorKind::BadRedirectTarget { .. }
        )
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at byte {}: {}", self.offset, self.kind)
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ErrorKind::Truncated { needed, available } => write!(
                f,
                "truncated: {needed} more octets needed, {available} available"
            ),
            ErrorKind::NotIpv6 { ethertype } => {
                write!(f, "EtherType 0x{ethertype:04x} is not IPv6")
            }
            ErrorKind::BadVersion { version } => write!(f, "IP version {version}, not 6"),
            ErrorKind::BadPayloadLength {
                declared,
                available,
            } => write!(
                f,
                "Payload Length declares {declared} octets but {available} follow the header"
            ),
            ErrorKind::NotIcmpv6 { next_header } => {
                write!(f, "next header {next_header} is not ICMPv6 (58)")
            }
            ErrorKind::BadChecksum { found, expected } => {
                write!(f, "bad checksum 0x{found:04x}, expected 0x{expected:04x}")
            }
            ErrorKind::TooShortForType {
                msg_type,
                minimum,
                length,
            } => write!(
                f,
                "ICMPv6 type {msg_type} needs at least {minimum} octets, the message has {length}"
            ),
            ErrorKind::BadOptionLength { option, length } => write!(
                f,
                "option {option} has length {length}, which its RFC does not allow"
            ),
            ErrorKind::OptionOverrun {
                option,
                length,
                remaining,
            } => write!(
                f,
                "option {option} has length {length} (x8 octets) but only {remaining} octets remain"
            ),
            ErrorKind::BadValue { field, value } => write!(f, "{field} = {value} is not allowed"),
            ErrorKind::BadCode { msg_type, code } => {
                write!(f, "ICMPv6 type {msg_type} with code {code}, not 0")
            }
            ErrorKind::BadHopLimit { hop_limit } => {
                write!(f, "hop limit {hop_limit}, not 255: not from this link")
            }
            ErrorKind::BadSource { address } => write!(f, "source {address} is not allowed"),
            ErrorKind::BadDestination { address } => {
                write!(f, "destination {address} is not allowed")
            }
            ErrorKind::MulticastTarget { target } => {
                write!(f, "target {target} is a multicast address")
            }
            ErrorKind::OptionNotAllowed { option } => {
                write!(f, "option {option} is not allowed in this message")
            }
            ErrorKind::SolicitedToMulticast => {
                f.write_str("a solicited Neighbor Advertisement to a multicast address")
            }
            ErrorKind::BadRedirectTarget { target } => write!(
                f,
                "Redirect Target Address {target} is neither link-local nor the Destination Address"
            ),
            ErrorKind::BufferTooSmall { needed, available } => write!(
                f,
                "output buffer too small: {needed} octets needed, {available} available"
            ),
            ErrorKind::TooLong { length, maximum } => {
                write!(
                    f,
                    "{length} octets do not fit a length field of at most {maximum}"
                )
            }
        }
    }
}

impl core::error::Error for Error {}

/// Result of the ND wire functions.
pub type Result<T> = core::result::Result<T, Error>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_offset_and_the_rule() {
        let e = Error::new(54, ErrorKind::BadHopLimit { hop_limit: 64 });
        assert_eq!(
            e.to_string(),
            "at byte 54: hop limit 64, not 255: not from this link"
        );
        assert!(e.is_invalid_nd());
        let e = Error::truncated(3, 5, 2).shifted(14);
        assert_eq!(e.offset, 17);
        assert!(!e.is_invalid_nd());
        assert_eq!(
            ErrorKind::NotIpv6 { ethertype: 0x0806 }.to_string(),
            "EtherType 0x0806 is not IPv6"
        );
    }
}
