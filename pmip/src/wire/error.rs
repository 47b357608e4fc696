use core::fmt;

use super::option::OptionType;

/// A malformed Mobility Header: what was wrong and at which byte offset from the start of the
/// Mobility Header (the Payload Proto octet is offset 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Error {
    pub offset: usize,
    pub kind: ErrorKind,
}

/// What was wrong. Each variant lets the receiver pick the RFC's answer (for example a PBA
/// status for a missing option) instead of dropping the message blindly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The buffer ends before a field that must be there.
    Truncated { needed: usize, available: usize },
    /// Header Len says the message is `declared` octets but the buffer holds `available`.
    BadHeaderLength { declared: usize, available: usize },
    /// The message is too short for its MH Type's fixed fields.
    TooShortForType {
        mh_type: u8,
        minimum: usize,
        length: usize,
    },
    /// The Mobility Header checksum over the pseudo-header does not match.
    BadChecksum { found: u16, expected: u16 },
    /// An option's length field runs past the end of the message.
    OptionOverrun {
        option: u8,
        length: u8,
        remaining: usize,
    },
    /// An option's length is not the one its RFC fixes.
    BadOptionLength { option: u8, length: u8 },
    /// A field holds a value the RFC does not allow.
    BadValue { field: &'static str, value: u32 },
    /// A mandatory option is absent.
    MissingOption(OptionType),
    /// An option that may appear once appears again.
    DuplicateOption(OptionType),
    /// A mandatory flag is clear (for instance P in a Proxy Binding Update).
    MissingFlag { flag: &'static str },
    /// The message does not fit in the output buffer.
    BufferTooSmall { needed: usize, available: usize },
    /// The encoded message would be longer than Header Len can say (2048 octets).
    MessageTooLong { length: usize },
}

impl Error {
    pub const fn new(offset: usize, kind: ErrorKind) -> Self {
        Self { offset, kind }
    }

    pub(crate) const fn truncated(offset: usize, needed: usize, available: usize) -> Self {
        Self::new(offset, ErrorKind::Truncated { needed, available })
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at byte {}: {}", self.offset, self.kind)
    }
}

/// The RFC name of an option type, without its number (the messages print that already).
fn option_name(option: u8) -> &'static str {
    OptionType::from(option).rfc_name().unwrap_or("unknown")
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ErrorKind::Truncated { needed, available } => write!(
                f,
                "truncated: {needed} more octets needed, {available} available"
            ),
            ErrorKind::BadHeaderLength {
                declared,
                available,
            } => write!(
                f,
                "Header Len declares {declared} octets but {available} are present"
            ),
            ErrorKind::TooShortForType {
                mh_type,
                minimum,
                length,
            } => write!(
                f,
                "MH Type {mh_type} needs at least {minimum} octets, the message has {length}"
            ),
            ErrorKind::BadChecksum { found, expected } => {
                write!(f, "bad checksum 0x{found:04x}, expected 0x{expected:04x}")
            }
            ErrorKind::OptionOverrun {
                option,
                length,
                remaining,
            } => write!(
                f,
                "option {option} ({}) has length {length} but only {remaining} octets remain in the message",
                option_name(option)
            ),
            ErrorKind::BadOptionLength { option, length } => write!(
                f,
                "option {option} ({}) has length {length}, which its RFC does not allow",
                option_name(option)
            ),
            ErrorKind::BadValue { field, value } => write!(f, "{field} = {value} is not allowed"),
            ErrorKind::MissingOption(t) => write!(
                f,
                "mandatory option {} ({}) is missing",
                t.value(),
                option_name(t.value())
            ),
            ErrorKind::DuplicateOption(t) => {
                write!(
                    f,
                    "option {} ({}) appears more than once",
                    t.value(),
                    option_name(t.value())
                )
            }
            ErrorKind::MissingFlag { flag } => write!(f, "mandatory flag {flag} is not set"),
            ErrorKind::BufferTooSmall { needed, available } => write!(
                f,
                "output buffer too small: {needed} octets needed, {available} available"
            ),
            ErrorKind::MessageTooLong { length } => write!(
                f,
                "message of {length} octets is longer than Header Len can express (2048)"
            ),
        }
    }
}

impl core::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn option_errors_name_the_option_once() {
        let e = Error::new(
            13,
            ErrorKind::BadOptionLength {
                option: 22,
                length: 17,
            },
        );
        assert_eq!(
            e.to_string(),
            "at byte 13: option 22 (Home Network Prefix) has length 17, which its RFC does not allow"
        );
        let e = ErrorKind::OptionOverrun {
            option: 200,
            length: 9,
            remaining: 2,
        };
        assert_eq!(
            e.to_string(),
            "option 200 (unknown) has length 9 but only 2 octets remain in the message"
        );
        assert_eq!(
            ErrorKind::MissingOption(OptionType::HandoffIndicator).to_string(),
            "mandatory option 23 (Handoff Indicator) is missing"
        );
        assert_eq!(
            ErrorKind::DuplicateOption(OptionType::Timestamp).to_string(),
            "option 27 (Timestamp) appears more than once"
        );
    }
}
