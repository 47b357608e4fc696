//! Mobility Header messages: the [`Message`] representation, and the Binding Update,
//! Binding Acknowledgement and Binding Error bodies (RFC 6275 §6.1.7-§6.1.9 with the RFC 5213
//! §8.1/§8.2 and RFC 5845 §6.2/§6.3 flags).

use std::net::Ipv6Addr;

use super::Result;
use super::error::{Error, ErrorKind};
use super::handover::{HandoverAck, HandoverInitiate};
use super::header::{self, MhPacket, MhType, field};
use super::heartbeat::Heartbeat;
use super::notification::{UpdateNotification, UpdateNotificationAck};
use super::option::Options;
use super::revocation::BindingRevocation;
use super::sequence::SequenceNumber;
use super::values::{BaFlags, BindingErrorStatus, BuFlags, Lifetime, Status};
use super::{IPPROTO_NONE, checksum};

/// A message kind's fixed fields, between the Checksum and the options.
pub(crate) trait Body<'a>: Sized {
    const MH_TYPE: MhType;
    /// Octets of fixed Message Data after the Checksum.
    const FIXED_LEN: usize;
    /// Offset of the options from the start of the Mobility Header.
    const OPTIONS_AT: usize = field::DATA + Self::FIXED_LEN;
    /// Builds the body from its fixed fields (exactly `FIXED_LEN` octets) and options.
    fn from_parts(fixed: &[u8], options: Options<'a>) -> Result<Self>;
    /// Writes the fixed fields into `fixed` (exactly `FIXED_LEN` octets, zeroed).
    fn write_fixed(&self, fixed: &mut [u8]);
    fn options(&self) -> Options<'a>;
}

pub(crate) fn parse_body<'a, B: Body<'a>>(data: &'a [u8]) -> Result<B> {
    if data.len() < B::FIXED_LEN {
        return Err(Error::new(
            0,
            ErrorKind::TooShortForType {
                mh_type: B::MH_TYPE.value(),
                minimum: header::MIN_LEN.max(B::OPTIONS_AT),
                length: field::DATA + data.len(),
            },
        ));
    }
    let (fixed, opts) = data.split_at(B::FIXED_LEN);
    let options = Options::parse(opts, B::OPTIONS_AT)?;
    B::from_parts(fixed, options)
}

fn body_len<'a, B: Body<'a>>(b: &B) -> usize {
    B::OPTIONS_AT + b.options().buffer_len(B::OPTIONS_AT)
}

fn emit_body<'a, B: Body<'a>>(b: &B, data: &mut [u8]) -> Result<()> {
    let (fixed, opts) = data.split_at_mut(B::FIXED_LEN);
    fixed.fill(0);
    b.write_fixed(fixed);
    b.options().emit(opts, B::OPTIONS_AT)
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// Binding Update (MH Type 5; RFC 6275 §6.1.7), a Proxy Binding Update when P is set
/// (RFC 5213 §8.1).
///
/// ```text
///                                 +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
///                                 |          Sequence #           |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |A|H|L|K|M|R|P|F|T|B| Reserved  |           Lifetime            |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// .                        Mobility options                       .
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BindingUpdate<'a> {
    pub sequence: SequenceNumber,
    pub flags: BuFlags,
    pub lifetime: Lifetime,
    pub options: Options<'a>,
}

impl<'a> Body<'a> for BindingUpdate<'a> {
    const MH_TYPE: MhType = MhType::BindingUpdate;
    const FIXED_LEN: usize = 6;
    fn from_parts(f: &[u8], options: Options<'a>) -> Result<Self> {
        Ok(BindingUpdate {
            sequence: SequenceNumber(be16(f, 0)),
            flags: BuFlags(be16(f, 2)),
            lifetime: Lifetime(be16(f, 4)),
            options,
        })
    }
    fn write_fixed(&self, f: &mut [u8]) {
        f[0..2].copy_from_slice(&self.sequence.0.to_be_bytes());
        f[2..4].copy_from_slice(&self.flags.0.to_be_bytes());
        f[4..6].copy_from_slice(&self.lifetime.0.to_be_bytes());
    }
    fn options(&self) -> Options<'a> {
        self.options
    }
}

/// Binding Acknowledgement (MH Type 6; RFC 6275 §6.1.8), a Proxy Binding Acknowledgement when
/// P is set (RFC 5213 §8.2).
///
/// ```text
///                                 +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
///                                 |   Status      |K|R|P|T|B| Res |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |         Sequence #            |           Lifetime            |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// .                        Mobility options                       .
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BindingAck<'a> {
    pub status: Status,
    pub flags: BaFlags,
    pub sequence: SequenceNumber,
    pub lifetime: Lifetime,
    pub options: Options<'a>,
}

impl<'a> Body<'a> for BindingAck<'a> {
    const MH_TYPE: MhType = MhType::BindingAcknowledgement;
    const FIXED_LEN: usize = 6;
    fn from_parts(f: &[u8], options: Options<'a>) -> Result<Self> {
        Ok(BindingAck {
            status: Status::from(f[0]),
            flags: BaFlags(f[1]),
            sequence: SequenceNumber(be16(f, 2)),
            lifetime: Lifetime(be16(f, 4)),
            options,
        })
    }
    fn write_fixed(&self, f: &mut [u8]) {
        f[0] = self.status.value();
        f[1] = self.flags.0;
        f[2..4].copy_from_slice(&self.sequence.0.to_be_bytes());
        f[4..6].copy_from_slice(&self.lifetime.0.to_be_bytes());
    }
    fn options(&self) -> Options<'a> {
        self.options
    }
}

/// Binding Error (MH Type 7; RFC 6275 §6.1.9).
///
/// ```text
///                                 +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
///                                 |     Status    |   Reserved    |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// +                          Home Address (16)                    +
/// .                        Mobility Options                       .
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BindingError<'a> {
    pub status: BindingErrorStatus,
    pub home_address: Ipv6Addr,
    pub options: Options<'a>,
}

impl<'a> Body<'a> for BindingError<'a> {
    const MH_TYPE: MhType = MhType::BindingError;
    const FIXED_LEN: usize = 18;
    fn from_parts(f: &[u8], options: Options<'a>) -> Result<Self> {
        let mut a = [0u8; 16];
        a.copy_from_slice(&f[2..18]);
        Ok(BindingError {
            status: BindingErrorStatus::from(f[0]),
            home_address: Ipv6Addr::from(a),
            options,
        })
    }
    fn write_fixed(&self, f: &mut [u8]) {
        f[0] = self.status.value();
        f[2..18].copy_from_slice(&self.home_address.octets());
    }
    fn options(&self) -> Options<'a> {
        self.options
    }
}

/// One Mobility Header message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message<'a> {
    BindingUpdate(BindingUpdate<'a>),
    BindingAck(BindingAck<'a>),
    BindingError(BindingError<'a>),
    Heartbeat(Heartbeat<'a>),
    HandoverInitiate(HandoverInitiate<'a>),
    HandoverAck(HandoverAck<'a>),
    BindingRevocation(BindingRevocation<'a>),
    UpdateNotification(UpdateNotification<'a>),
    UpdateNotificationAck(UpdateNotificationAck<'a>),
    /// Any other MH Type: its Message Data, kept verbatim. A receiver answers it with a
    /// Binding Error, status 2 (RFC 6275 §9.2).
    Unknown {
        mh_type: u8,
        data: &'a [u8],
    },
}

impl<'a> Message<'a> {
    /// Parses a Mobility Header checked by [`MhPacket::new_checked`]. The checksum is not
    /// looked at (see [`Message::parse_verified`]).
    pub fn parse(packet: &MhPacket<&'a [u8]>) -> Result<Message<'a>> {
        // RFC 6275 §9.2: a Payload Proto other than IPPROTO_NONE: discarded.
        let proto = packet.payload_proto();
        if proto != IPPROTO_NONE {
            return Err(Error::new(
                field::PAYLOAD_PROTO,
                ErrorKind::BadValue {
                    field: "Payload Proto",
                    value: u32::from(proto),
                },
            ));
        }
        let bytes: &'a [u8] = packet.clone().into_inner();
        let data = bytes.get(field::DATA..packet.total_len()).unwrap_or(&[]);
        Ok(match packet.mh_type() {
            MhType::BindingUpdate => Message::BindingUpdate(parse_body(data)?),
            MhType::BindingAcknowledgement => Message::BindingAck(parse_body(data)?),
            MhType::BindingError => Message::BindingError(parse_body(data)?),
            MhType::Heartbeat => Message::Heartbeat(parse_body(data)?),
            MhType::HandoverInitiate => Message::HandoverInitiate(parse_body(data)?),
            MhType::HandoverAcknowledge => Message::HandoverAck(parse_body(data)?),
            MhType::BindingRevocation => {
                Message::BindingRevocation(BindingRevocation::parse(data)?)
            }
            MhType::UpdateNotification => Message::UpdateNotification(parse_body(data)?),
            MhType::UpdateNotificationAck => Message::UpdateNotificationAck(parse_body(data)?),
            t => Message::Unknown {
                mh_type: t.value(),
                data,
            },
        })
    }

    /// Parses a buffer holding exactly one Mobility Header, without looking at the checksum
    /// (the kernel verified it, or it is zero as in RFC 5844 §4 UDP framing).
    pub fn parse_bytes(bytes: &'a [u8]) -> Result<Message<'a>> {
        Message::parse(&MhPacket::new_checked(bytes)?)
    }

    /// Parses a Mobility Header received from `src` for `dst`, verifying its checksum.
    pub fn parse_verified(bytes: &'a [u8], src: &Ipv6Addr, dst: &Ipv6Addr) -> Result<Message<'a>> {
        let p = MhPacket::new_checked(bytes)?;
        p.check_checksum(src, dst)?;
        Message::parse(&p)
    }

    pub fn mh_type(&self) -> MhType {
        match self {
            Message::BindingUpdate(_) => MhType::BindingUpdate,
            Message::BindingAck(_) => MhType::BindingAcknowledgement,
            Message::BindingError(_) => MhType::BindingError,
            Message::Heartbeat(_) => MhType::Heartbeat,
            Message::HandoverInitiate(_) => MhType::HandoverInitiate,
            Message::HandoverAck(_) => MhType::HandoverAcknowledge,
            Message::BindingRevocation(_) => MhType::BindingRevocation,
            Message::UpdateNotification(_) => MhType::UpdateNotification,
            Message::UpdateNotificationAck(_) => MhType::UpdateNotificationAck,
            Message::Unknown { mh_type, .. } => MhType::from(*mh_type),
        }
    }

    /// The message's options (none for an unknown MH Type).
    pub fn options(&self) -> Options<'a> {
        match self {
            Message::BindingUpdate(b) => b.options,
            Message::BindingAck(b) => b.options,
            Message::BindingError(b) => b.options,
            Message::Heartbeat(b) => b.options,
            Message::HandoverInitiate(b) => b.options,
            Message::HandoverAck(b) => b.options,
            Message::BindingRevocation(b) => b.options(),
            Message::UpdateNotification(b) => b.options,
            Message::UpdateNotificationAck(b) => b.options,
            Message::Unknown { .. } => Options::EMPTY,
        }
    }

    /// Length of the encoded Mobility Header, padding included.
    pub fn buffer_len(&self) -> usize {
        match self {
            Message::BindingUpdate(b) => body_len(b),
            Message::BindingAck(b) => body_len(b),
            Message::BindingError(b) => body_len(b),
            Message::Heartbeat(b) => body_len(b),
            Message::HandoverInitiate(b) => body_len(b),
            Message::HandoverAck(b) => body_len(b),
            Message::BindingRevocation(BindingRevocation::Indication(b)) => body_len(b),
            Message::BindingRevocation(BindingRevocation::Acknowledgement(b)) => body_len(b),
            Message::UpdateNotification(b) => body_len(b),
            Message::UpdateNotificationAck(b) => body_len(b),
            Message::Unknown { data, .. } => field::DATA + data.len(),
        }
    }

    /// Writes the message into `buf` with a zero checksum and returns its length. Never
    /// allocates. Use [`Message::emit_with_checksum`] for IPv6 transport; a zero checksum is
    /// what RFC 5844 §4 wants over UDP.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        let n = self.buffer_len();
        if n > header::MAX_LEN {
            return Err(Error::new(0, ErrorKind::MessageTooLong { length: n }));
        }
        if !n.is_multiple_of(8) || n < header::MIN_LEN {
            // Only an Unknown message can have a length that is not a multiple of 8.
            return Err(Error::new(
                field::HEADER_LEN,
                ErrorKind::BadHeaderLength {
                    declared: n,
                    available: n,
                },
            ));
        }
        let available = buf.len();
        let out = buf.get_mut(..n).ok_or(Error::new(
            0,
            ErrorKind::BufferTooSmall {
                needed: n,
                available,
            },
        ))?;
        let mut p = MhPacket::new_unchecked(&mut *out);
        p.set_payload_proto(IPPROTO_NONE);
        p.set_total_len(n);
        p.set_mh_type(self.mh_type());
        p.clear_reserved();
        p.set_checksum(0);
        let data = &mut out[field::DATA..];
        match self {
            Message::BindingUpdate(b) => emit_body(b, data)?,
            Message::BindingAck(b) => emit_body(b, data)?,
            Message::BindingError(b) => emit_body(b, data)?,
            Message::Heartbeat(b) => emit_body(b, data)?,
            Message::HandoverInitiate(b) => emit_body(b, data)?,
            Message::HandoverAck(b) => emit_body(b, data)?,
            Message::BindingRevocation(BindingRevocation::Indication(b)) => emit_body(b, data)?,
            Message::BindingRevocation(BindingRevocation::Acknowledgement(b)) => {
                emit_body(b, data)?
            }
            Message::UpdateNotification(b) => emit_body(b, data)?,
            Message::UpdateNotificationAck(b) => emit_body(b, data)?,
            Message::Unknown { data: d, .. } => data.copy_from_slice(d),
        }
        Ok(n)
    }

    /// Writes the message with its checksum for an IPv6 packet from `src` to `dst`.
    pub fn emit_with_checksum(
        &self,
        buf: &mut [u8],
        src: &Ipv6Addr,
        dst: &Ipv6Addr,
    ) -> Result<usize> {
        let n = self.emit(buf)?;
        let c = checksum::mh_checksum(src, dst, &buf[..n]);
        buf[field::CHECKSUM].copy_from_slice(&c.to_be_bytes());
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::option::MobilityOption;
    use crate::wire::timestamp::Timestamp;
    use crate::wire::values::{AccessTechnologyType, HandoffIndicator};

    fn pbu_options() -> [MobilityOption<'static>; 5] {
        [
            MobilityOption::MobileNodeIdentifier {
                subtype: 1,
                id: b"mn1@example.org",
            },
            MobilityOption::HomeNetworkPrefix("::/0".parse().unwrap()),
            MobilityOption::HandoffIndicator(HandoffIndicator::AttachmentOverNewInterface),
            MobilityOption::AccessTechnologyType(AccessTechnologyType::Ieee8023),
            MobilityOption::Timestamp(Timestamp(0x6000_0000_8000)),
        ]
    }

    #[test]
    fn pbu_round_trip_with_checksum() {
        let opts = pbu_options();
        let m = Message::BindingUpdate(BindingUpdate {
            sequence: SequenceNumber(7),
            flags: BuFlags::A | BuFlags::P,
            lifetime: Lifetime::from_secs(3600),
            options: Options::List(&opts),
        });
        let src: Ipv6Addr = "2001:db8::10".parse().unwrap();
        let dst: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let mut buf = [0u8; 256];
        let n = m.emit_with_checksum(&mut buf, &src, &dst).unwrap();
        assert_eq!(n % 8, 0);
        assert_eq!(n, m.buffer_len());
        assert_eq!(buf[0], 59);
        assert_eq!(usize::from(buf[1]), n / 8 - 1);
        assert_eq!(buf[2], 5);
        assert_eq!(&buf[6..12], &[0, 7, 0x82, 0, 0x03, 0x84]);
        let back = Message::parse_verified(&buf[..n], &src, &dst).unwrap();
        assert_eq!(back, m);
        // Another source address makes the checksum fail.
        let other: Ipv6Addr = "2001:db8::11".parse().unwrap();
        assert!(matches!(
            Message::parse_verified(&buf[..n], &other, &dst)
                .unwrap_err()
                .kind,
            ErrorKind::BadChecksum { .. }
        ));
    }

    #[test]
    fn short_messages_are_refused_with_the_minimum() {
        // A Binding Error needs 24 octets before options; 16 are given.
        let b = [59u8, 1, 7, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        let e = Message::parse_bytes(&b).unwrap_err();
        assert_eq!(
            e.kind,
            ErrorKind::TooShortForType {
                mh_type: 7,
                minimum: 24,
                length: 16
            }
        );
    }

    #[test]
    fn unknown_mh_type_is_kept() {
        let b = [59u8, 0, 99, 0, 0, 0, 0xaa, 0xbb];
        let m = Message::parse_bytes(&b).unwrap();
        assert_eq!(
            m,
            Message::Unknown {
                mh_type: 99,
                data: &[0xaa, 0xbb]
            }
        );
        let mut out = [0u8; 8];
        assert_eq!(m.emit(&mut out).unwrap(), 8);
        assert_eq!(out, b);
    }

    /// RFC 6275 §9.2: a Payload Proto other than IPPROTO_NONE (59) is discarded, whatever
    /// the message.
    #[test]
    fn a_payload_proto_other_than_59_is_refused() {
        for proto in [0u8, 6, 17, 58, 60, 255] {
            let b = [proto, 0, 99, 0, 0, 0, 0xaa, 0xbb];
            let e = Message::parse_bytes(&b).unwrap_err();
            assert_eq!(e.offset, field::PAYLOAD_PROTO, "{proto}");
            assert!(
                matches!(e.kind, ErrorKind::BadValue { field: "Payload Proto", value } if value == u32::from(proto)),
                "{proto}: {e}"
            );
        }
    }

    #[test]
    fn emit_into_a_small_buffer_fails_cleanly() {
        let opts = pbu_options();
        let m = Message::BindingUpdate(BindingUpdate {
            sequence: SequenceNumber(1),
            flags: BuFlags::A | BuFlags::P,
            lifetime: Lifetime(1),
            options: Options::List(&opts),
        });
        let mut buf = [0u8; 16];
        assert!(matches!(
            m.emit(&mut buf).unwrap_err().kind,
            ErrorKind::BufferTooSmall { .. }
        ));
    }
}
