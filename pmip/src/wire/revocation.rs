//! Binding Revocation (MH Type 16; RFC 5846 §5): Indication (B.R. Type 1) and
//! Acknowledgement (B.R. Type 2).
//!
//! ```text
//!                                 +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//!                                 | B.R. Type = 1 |  R. Trigger   |   (BRA: Type 2, Status)
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |          Sequence #           |P|V|G|       Reserved          |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! .                        Mobility options                       .
//! ```

use super::Result;
use super::error::{Error, ErrorKind};
use super::header::{MhType, field};
use super::message::{Body, parse_body};
use super::option::Options;
use super::sequence::SequenceNumber;
use super::values::{BraStatus, RevocationTrigger, flags};

flags! {
    /// Binding Revocation flags (RFC 5846 §5.1, §5.2).
    pub struct RevocationFlags: u8 {
        /// Proxy binding.
        const P = 0x80, "P";
        /// IPv4 HoA binding only.
        const V = 0x40, "V";
        /// Global.
        const G = 0x20, "G";
    }
}

const BRI: u8 = 1;
const BRA: u8 = 2;

/// Binding Revocation Indication (RFC 5846 §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BindingRevocationIndication<'a> {
    pub trigger: RevocationTrigger,
    pub sequence: SequenceNumber,
    pub flags: RevocationFlags,
    pub options: Options<'a>,
}

/// Binding Revocation Acknowledgement (RFC 5846 §5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BindingRevocationAck<'a> {
    pub status: BraStatus,
    pub sequence: SequenceNumber,
    pub flags: RevocationFlags,
    pub options: Options<'a>,
}

/// MH Type 16, either kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindingRevocation<'a> {
    Indication(BindingRevocationIndication<'a>),
    Acknowledgement(BindingRevocationAck<'a>),
}

impl<'a> BindingRevocation<'a> {
    pub(crate) fn parse(data: &'a [u8]) -> Result<Self> {
        match data.first() {
            Some(&BRI) => Ok(BindingRevocation::Indication(parse_body(data)?)),
            Some(&BRA) => Ok(BindingRevocation::Acknowledgement(parse_body(data)?)),
            Some(&t) => Err(Error::new(
                field::DATA,
                ErrorKind::BadValue {
                    field: "B.R. Type",
                    value: u32::from(t),
                },
            )),
            None => Err(Error::truncated(field::DATA, 6, 0)),
        }
    }

    pub fn options(&self) -> Options<'a> {
        match self {
            BindingRevocation::Indication(b) => b.options,
            BindingRevocation::Acknowledgement(b) => b.options,
        }
    }
}

impl<'a> Body<'a> for BindingRevocationIndication<'a> {
    const MH_TYPE: MhType = MhType::BindingRevocation;
    const FIXED_LEN: usize = 6;
    fn from_parts(f: &[u8], options: Options<'a>) -> Result<Self> {
        Ok(BindingRevocationIndication {
            trigger: RevocationTrigger::from(f[1]),
            sequence: SequenceNumber(u16::from_be_bytes([f[2], f[3]])),
            flags: RevocationFlags(f[4] & 0xe0),
            options,
        })
    }
    fn write_fixed(&self, f: &mut [u8]) {
        f[0] = BRI;
        f[1] = self.trigger.value();
        f[2..4].copy_from_slice(&self.sequence.0.to_be_bytes());
        f[4] = self.flags.0 & 0xe0;
    }
    fn options(&self) -> Options<'a> {
        self.options
    }
}

impl<'a> Body<'a> for BindingRevocationAck<'a> {
    const MH_TYPE: MhType = MhType::BindingRevocation;
    const FIXED_LEN: usize = 6;
    fn from_parts(f: &[u8], options: Options<'a>) -> Result<Self> {
        Ok(BindingRevocationAck {
            status: BraStatus::from(f[1]),
            sequence: SequenceNumber(u16::from_be_bytes([f[2], f[3]])),
            flags: RevocationFlags(f[4] & 0xe0),
            options,
        })
    }
    fn write_fixed(&self, f: &mut [u8]) {
        f[0] = BRA;
        f[1] = self.status.value();
        f[2..4].copy_from_slice(&self.sequence.0.to_be_bytes());
        f[4] = self.flags.0 & 0xe0;
    }
    fn options(&self) -> Options<'a> {
        self.options
    }
}
