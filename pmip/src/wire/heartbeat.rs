//! Heartbeat (MH Type 13; RFC 5847 §3.3).
//!
//! ```text
//!                                 +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//!                                 |            Reserved       |U|R|
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                       Sequence Number                         |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! .                        Mobility Options                       .
//! ```

use core::fmt;

use super::Result;
use super::header::MhType;
use super::message::Body;
use super::option::Options;
use super::values::flags;

flags! {
    /// Heartbeat flags (RFC 5847 §3.3).
    pub struct HeartbeatFlags: u16 {
        /// Unsolicited Heartbeat Response.
        const U = 0x0002, "U";
        /// 1 = response, 0 = request.
        const R = 0x0001, "R";
    }
}

/// A Heartbeat request or response. Responses carry a Restart Counter option (§3.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heartbeat<'a> {
    pub flags: HeartbeatFlags,
    /// 32-bit sequence number matching a response to its request.
    pub sequence: u32,
    pub options: Options<'a>,
}

impl Heartbeat<'_> {
    pub fn is_response(&self) -> bool {
        self.flags.contains(HeartbeatFlags::R)
    }
}

impl<'a> Body<'a> for Heartbeat<'a> {
    const MH_TYPE: MhType = MhType::Heartbeat;
    const FIXED_LEN: usize = 6;
    fn from_parts(f: &[u8], options: Options<'a>) -> Result<Self> {
        Ok(Heartbeat {
            flags: HeartbeatFlags(u16::from_be_bytes([f[0], f[1]]) & 0x0003),
            sequence: u32::from_be_bytes([f[2], f[3], f[4], f[5]]),
            options,
        })
    }
    fn write_fixed(&self, f: &mut [u8]) {
        f[0..2].copy_from_slice(&(self.flags.0 & 0x0003).to_be_bytes());
        f[2..6].copy_from_slice(&self.sequence.to_be_bytes());
    }
    fn options(&self) -> Options<'a> {
        self.options
    }
}

impl fmt::Display for HeartbeatFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.letters())
    }
}
