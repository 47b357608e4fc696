//! Handover Initiate and Handover Acknowledge in their PFMIPv6 form (MH Types 14 and 15 with
//! P=1; RFC 5949 §6.1.1, §6.1.2, extending RFC 5568).
//!
//! ```text
//! HI:                             +-------------------------------+
//!                                 |           Sequence #          |
//! +-+-+-+-+-------+---------------+-------------------------------+
//! |S|U|P|F|Resv'd |      Code     |                               |
//! +-+-+-+-+-------+---------------+                               |
//! .                       Mobility options                        .
//!
//! HAck:                           +-------------------------------+
//!                                 |           Sequence #          |
//! +-+-+-+---------+---------------+-------------------------------+
//! |U|P|F|Reserved |      Code     |                               |
//! +-+-+-+---------+---------------+                               |
//! .                       Mobility options                        .
//! ```

use super::Result;
use super::header::MhType;
use super::message::Body;
use super::option::Options;
use super::sequence::SequenceNumber;
use super::values::{HackCode, HiCode, flags};

flags! {
    /// Handover Initiate flags (RFC 5949 §6.1.1): S MUST be 0 and P MUST be 1 in PFMIPv6.
    pub struct HiFlags: u8 {
        const S = 0x80, "S";
        /// Buffer.
        const U = 0x40, "U";
        /// Proxy.
        const P = 0x20, "P";
        /// Forwarding.
        const F = 0x10, "F";
    }
}

flags! {
    /// Handover Acknowledge flags (RFC 5949 §6.1.2).
    pub struct HackFlags: u8 {
        const U = 0x80, "U";
        const P = 0x40, "P";
        const F = 0x20, "F";
    }
}

/// Handover Initiate. Carries the Mobile Node Identifier and the context (RFC 5949 §6.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandoverInitiate<'a> {
    pub sequence: SequenceNumber,
    pub flags: HiFlags,
    pub code: HiCode,
    pub options: Options<'a>,
}

impl<'a> Body<'a> for HandoverInitiate<'a> {
    const MH_TYPE: MhType = MhType::HandoverInitiate;
    const FIXED_LEN: usize = 4;
    fn from_parts(f: &[u8], options: Options<'a>) -> Result<Self> {
        Ok(HandoverInitiate {
            sequence: SequenceNumber(u16::from_be_bytes([f[0], f[1]])),
            flags: HiFlags(f[2] & 0xf0),
            code: HiCode::from(f[3]),
            options,
        })
    }
    fn write_fixed(&self, f: &mut [u8]) {
        f[0..2].copy_from_slice(&self.sequence.0.to_be_bytes());
        f[2] = self.flags.0 & 0xf0;
        f[3] = self.code.value();
    }
    fn options(&self) -> Options<'a> {
        self.options
    }
}

/// Handover Acknowledge (RFC 5949 §6.1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandoverAck<'a> {
    pub sequence: SequenceNumber,
    pub flags: HackFlags,
    pub code: HackCode,
    pub options: Options<'a>,
}

impl<'a> Body<'a> for HandoverAck<'a> {
    const MH_TYPE: MhType = MhType::HandoverAcknowledge;
    const FIXED_LEN: usize = 4;
    fn from_parts(f: &[u8], options: Options<'a>) -> Result<Self> {
        Ok(HandoverAck {
            sequence: SequenceNumber(u16::from_be_bytes([f[0], f[1]])),
            flags: HackFlags(f[2] & 0xe0),
            code: HackCode::from(f[3]),
            options,
        })
    }
    fn write_fixed(&self, f: &mut [u8]) {
        f[0..2].copy_from_slice(&self.sequence.0.to_be_bytes());
        f[2] = self.flags.0 & 0xe0;
        f[3] = self.code.value();
    }
    fn options(&self) -> Options<'a> {
        self.options
    }
}
