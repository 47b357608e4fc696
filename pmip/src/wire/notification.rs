//! Update Notification and its Acknowledgement (MH Types 19 and 20; RFC 7077 §4.1, §4.2).
//!
//! ```text
//! UPN:                            +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//!                                 |           Sequence #          |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |    Notification Reason        |A|D|          Reserved         |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! .                        Mobility options                       .
//!
//! UPA:                            +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//!                                 |           Sequence #          |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |   Status Code |                   Reserved                    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! .                        Mobility options                       .
//! ```

use super::Result;
use super::header::MhType;
use super::message::Body;
use super::option::Options;
use super::sequence::SequenceNumber;
use super::values::{NotificationReason, UpaStatus, flags};

flags! {
    /// Update Notification flags (RFC 7077 §4.1).
    pub struct UpnFlags: u8 {
        /// Acknowledgement requested.
        const A = 0x80, "A";
        /// Retransmission.
        const D = 0x40, "D";
    }
}

/// Update Notification (RFC 7077 §4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpdateNotification<'a> {
    pub sequence: SequenceNumber,
    pub reason: NotificationReason,
    pub flags: UpnFlags,
    pub options: Options<'a>,
}

impl<'a> Body<'a> for UpdateNotification<'a> {
    const MH_TYPE: MhType = MhType::UpdateNotification;
    const FIXED_LEN: usize = 6;
    fn from_parts(f: &[u8], options: Options<'a>) -> Result<Self> {
        Ok(UpdateNotification {
            sequence: SequenceNumber(u16::from_be_bytes([f[0], f[1]])),
            reason: NotificationReason::from(u16::from_be_bytes([f[2], f[3]])),
            flags: UpnFlags(f[4] & 0xc0),
            options,
        })
    }
    fn write_fixed(&self, f: &mut [u8]) {
        f[0..2].copy_from_slice(&self.sequence.0.to_be_bytes());
        f[2..4].copy_from_slice(&self.reason.value().to_be_bytes());
        f[4] = self.flags.0 & 0xc0;
    }
    fn options(&self) -> Options<'a> {
        self.options
    }
}

/// Update Notification Acknowledgement (RFC 7077 §4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpdateNotificationAck<'a> {
    pub sequence: SequenceNumber,
    pub status: UpaStatus,
    pub options: Options<'a>,
}

impl<'a> Body<'a> for UpdateNotificationAck<'a> {
    const MH_TYPE: MhType = MhType::UpdateNotificationAck;
    const FIXED_LEN: usize = 6;
    fn from_parts(f: &[u8], options: Options<'a>) -> Result<Self> {
        Ok(UpdateNotificationAck {
            sequence: SequenceNumber(u16::from_be_bytes([f[0], f[1]])),
            status: UpaStatus::from(f[2]),
            options,
        })
    }
    fn write_fixed(&self, f: &mut [u8]) {
        f[0..2].copy_from_slice(&self.sequence.0.to_be_bytes());
        f[2] = self.status.value();
    }
    fn options(&self) -> Options<'a> {
        self.options
    }
}
