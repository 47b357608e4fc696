//! Mobility Header framing (RFC 6275 §6.1.1).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! | Payload Proto |  Header Len   |   MH Type     |   Reserved    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |           Checksum            |                               |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+                               |
//! .                       Message Data                            .
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//! Header Len counts 8-octet units after the first 8 octets: a Mobility Header is 8 to 2048
//! octets long and always a multiple of 8.

use std::net::Ipv6Addr;

use super::Result;
use super::checksum::mh_checksum;
use super::error::{Error, ErrorKind};
use super::values::open_enum;

pub(crate) mod field {
    use core::ops::Range;
    pub const PAYLOAD_PROTO: usize = 0;
    pub const HEADER_LEN: usize = 1;
    pub const MH_TYPE: usize = 2;
    pub const RESERVED: usize = 3;
    pub const CHECKSUM: Range<usize> = 4..6;
    pub const DATA: usize = 6;
}

/// Shortest Mobility Header: Header Len 0.
pub const MIN_LEN: usize = 8;
/// Longest Mobility Header: Header Len 255.
pub const MAX_LEN: usize = 8 + 255 * 8;

open_enum! {
    /// MH Type values (CONSTANTS.md §2; RFC 6275 §6.1, RFC 5568, RFC 5847, RFC 5846, RFC 7077).
    pub enum MhType: u8 {
        BindingRefreshRequest = 0 => "Binding Refresh Request",
        HomeTestInit = 1 => "Home Test Init",
        CareOfTestInit = 2 => "Care-of Test Init",
        HomeTest = 3 => "Home Test",
        CareOfTest = 4 => "Care-of Test",
        BindingUpdate = 5 => "Binding Update",
        BindingAcknowledgement = 6 => "Binding Acknowledgement",
        BindingError = 7 => "Binding Error",
        FastBindingUpdate = 8 => "Fast Binding Update",
        FastBindingAck = 9 => "Fast Binding Acknowledgement",
        FastNeighborAdvertisement = 10 => "Fast Neighbor Advertisement",
        Experimental = 11 => "Experimental Mobility Header",
        HomeAgentSwitch = 12 => "Home Agent Switch",
        Heartbeat = 13 => "Heartbeat",
        HandoverInitiate = 14 => "Handover Initiate",
        HandoverAcknowledge = 15 => "Handover Acknowledge",
        BindingRevocation = 16 => "Binding Revocation",
        LocalizedRoutingInitiation = 17 => "Localized Routing Initiation",
        LocalizedRoutingAck = 18 => "Localized Routing Acknowledgement",
        UpdateNotification = 19 => "Update Notification",
        UpdateNotificationAck = 20 => "Update Notification Acknowledgement",
    }
}

/// A read/write view of a Mobility Header in a buffer.
#[derive(Debug, Clone)]
pub struct MhPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> MhPacket<T> {
    /// Wraps a buffer without checking it; accessors may then panic on a short buffer.
    pub const fn new_unchecked(buffer: T) -> Self {
        MhPacket { buffer }
    }

    /// Wraps a buffer holding exactly one Mobility Header, after checking that Header Len
    /// matches the buffer's length. No accessor panics afterwards.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = MhPacket { buffer };
        p.check_len()?;
        Ok(p)
    }

    /// Checks the length rules of RFC 6275 §6.1.1.
    pub fn check_len(&self) -> Result<()> {
        let b = self.buffer.as_ref();
        if b.len() < MIN_LEN {
            return Err(Error::truncated(b.len(), MIN_LEN - b.len(), b.len()));
        }
        let declared = declared_len(b[field::HEADER_LEN]);
        if declared != b.len() {
            return Err(Error::new(
                field::HEADER_LEN,
                ErrorKind::BadHeaderLength {
                    declared,
                    available: b.len(),
                },
            ));
        }
        Ok(())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn payload_proto(&self) -> u8 {
        self.buffer.as_ref()[field::PAYLOAD_PROTO]
    }

    pub fn header_len(&self) -> u8 {
        self.buffer.as_ref()[field::HEADER_LEN]
    }

    /// Length of the whole Mobility Header in octets, from Header Len.
    pub fn total_len(&self) -> usize {
        declared_len(self.header_len())
    }

    pub fn mh_type(&self) -> MhType {
        MhType::from(self.buffer.as_ref()[field::MH_TYPE])
    }

    pub fn checksum(&self) -> u16 {
        let b = self.buffer.as_ref();
        u16::from_be_bytes([b[field::CHECKSUM.start], b[field::CHECKSUM.start + 1]])
    }

    /// Message Data: everything after the checksum.
    pub fn message_data(&self) -> &[u8] {
        &self.buffer.as_ref()[field::DATA..self.total_len()]
    }

    /// The whole Mobility Header.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buffer.as_ref()[..self.total_len()]
    }

    /// True when the checksum over the pseudo-header for `src` -> `dst` is right.
    pub fn verify_checksum(&self, src: &Ipv6Addr, dst: &Ipv6Addr) -> bool {
        mh_checksum(src, dst, self.as_bytes()) == 0
    }

    /// Checks the checksum, saying what was expected when it is wrong.
    pub fn check_checksum(&self, src: &Ipv6Addr, dst: &Ipv6Addr) -> Result<()> {
        if self.verify_checksum(src, dst) {
            return Ok(());
        }
        let mut copy = [0u8; MAX_LEN];
        let n = self.total_len();
        copy[..n].copy_from_slice(self.as_bytes());
        copy[field::CHECKSUM].fill(0);
        Err(Error::new(
            field::CHECKSUM.start,
            ErrorKind::BadChecksum {
                found: self.checksum(),
                expected: mh_checksum(src, dst, &copy[..n]),
            },
        ))
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> MhPacket<T> {
    pub fn set_payload_proto(&mut self, v: u8) {
        self.buffer.as_mut()[field::PAYLOAD_PROTO] = v;
    }

    /// Sets Header Len for a message of `total_len` octets (a multiple of 8, 8..=2048).
    pub fn set_total_len(&mut self, total_len: usize) {
        self.buffer.as_mut()[field::HEADER_LEN] = ((total_len - MIN_LEN) / 8) as u8;
    }

    pub fn set_mh_type(&mut self, t: MhType) {
        self.buffer.as_mut()[field::MH_TYPE] = t.value();
    }

    pub fn clear_reserved(&mut self) {
        self.buffer.as_mut()[field::RESERVED] = 0;
    }

    pub fn set_checksum(&mut self, v: u16) {
        self.buffer.as_mut()[field::CHECKSUM].copy_from_slice(&v.to_be_bytes());
    }

    /// Computes and stores the checksum for `src` -> `dst`.
    pub fn fill_checksum(&mut self, src: &Ipv6Addr, dst: &Ipv6Addr) {
        self.set_checksum(0);
        let n = self.total_len();
        let c = mh_checksum(src, dst, &self.buffer.as_ref()[..n]);
        self.set_checksum(c);
    }

    pub fn message_data_mut(&mut self) -> &mut [u8] {
        let n = self.total_len();
        &mut self.buffer.as_mut()[field::DATA..n]
    }
}

fn declared_len(header_len: u8) -> usize {
    MIN_LEN + usize::from(header_len) * 8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_rules() {
        assert_eq!(
            MhPacket::new_checked(&[59u8, 0, 5][..]).unwrap_err().kind,
            ErrorKind::Truncated {
                needed: 5,
                available: 3
            }
        );
        let e = MhPacket::new_checked(&[59u8, 1, 5, 0, 0, 0, 0, 0][..]).unwrap_err();
        assert_eq!(e.offset, 1);
        assert_eq!(
            e.kind,
            ErrorKind::BadHeaderLength {
                declared: 16,
                available: 8
            }
        );
        let p = MhPacket::new_checked(&[59u8, 0, 13, 0, 0xab, 0xcd, 0, 0][..]).unwrap();
        assert_eq!(p.mh_type(), MhType::Heartbeat);
        assert_eq!(p.checksum(), 0xabcd);
        assert_eq!(p.message_data(), &[0, 0]);
    }

    #[test]
    fn checksum_error_names_the_expected_value() {
        let a: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let mut buf = [59u8, 0, 13, 0, 0, 0, 0, 1];
        let mut p = MhPacket::new_checked(&mut buf[..]).unwrap();
        p.fill_checksum(&a, &a);
        let good = p.checksum();
        assert!(p.verify_checksum(&a, &a));
        p.set_checksum(good ^ 1);
        let e = p.check_checksum(&a, &a).unwrap_err();
        assert_eq!(e.offset, 4);
        assert_eq!(
            e.kind,
            ErrorKind::BadChecksum {
                found: good ^ 1,
                expected: good
            }
        );
    }
}
