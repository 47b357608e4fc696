//! Multicast Listener Discovery: MLDv1 (RFC 2710 §3) and the MLDv2 Report (RFC 3810 §5.2).
//! A host whose link comes up reports its solicited-node groups at once (RFC 3810 §6.1;
//! RFC 4862 §5.4.2), so a report is often the first thing a MAG hears from a node.
//!
//! ```text
//! MLDv1 Query (130), Report (131), Done (132), after Type, Code and Checksum:
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |     Maximum Response Delay    |          Reserved             |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                     Multicast Address (16)                    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! (an MLDv2 Query, RFC 3810 §5.1, has more fields after these: kept as they came)
//!
//! MLDv2 Report (143), after Type, Reserved and Checksum:
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |           Reserved            |Nr of Mcast Address Records (M)|
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                  Multicast Address Record [1..M]              |
//!
//! Multicast Address Record:
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |  Record Type  |  Aux Data Len |     Number of Sources (N)     |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                    Multicast Address (16)                     |
//! |                    Source Address [1..N] (16 each)            |
//! |                    Auxiliary Data (Aux Data Len x 4)          |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```

use core::fmt;
use std::net::Ipv6Addr;

use super::error::{Error, ErrorKind, Result};
use super::icmpv6::{HEADER_LEN as ICMP_HEADER_LEN, Icmpv6Type};
use crate::wire::values::open_enum;

/// MLDv1 fields after Type, Code and Checksum.
const V1_BODY_LEN: usize = 20;
/// MLDv2 Report fields before the records.
const V2_REPORT_FIXED: usize = 4;
/// A record's fixed fields: type, aux length, source count, group.
const RECORD_FIXED: usize = 20;

open_enum! {
    /// Multicast Address Record types (RFC 3810 §5.2.12).
    pub enum MldRecordType: u8 {
        ModeIsInclude = 1 => "MODE_IS_INCLUDE",
        ModeIsExclude = 2 => "MODE_IS_EXCLUDE",
        ChangeToInclude = 3 => "CHANGE_TO_INCLUDE_MODE",
        ChangeToExclude = 4 => "CHANGE_TO_EXCLUDE_MODE",
        AllowNewSources = 5 => "ALLOW_NEW_SOURCES",
        BlockOldSources = 6 => "BLOCK_OLD_SOURCES",
    }
}

/// One Multicast Address Record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MldRecord<'a> {
    pub record_type: MldRecordType,
    pub group: Ipv6Addr,
    /// The source addresses, 16 octets each.
    pub sources: &'a [u8],
    /// Auxiliary data, a multiple of 4 octets.
    pub aux_data: &'a [u8],
}

impl MldRecord<'_> {
    pub fn sources(&self) -> impl Iterator<Item = Ipv6Addr> + '_ {
        self.sources.chunks_exact(16).map(|c| {
            let mut a = [0u8; 16];
            a.copy_from_slice(c);
            Ipv6Addr::from(a)
        })
    }

    fn buffer_len(&self) -> usize {
        RECORD_FIXED + self.sources.len() + self.aux_data.len()
    }

    fn emit_into(&self, out: &mut [u8], offset: usize) -> Result<()> {
        let bad = |field, value: usize| {
            Error::new(
                offset,
                ErrorKind::BadValue {
                    field,
                    value: u32::try_from(value).unwrap_or(u32::MAX),
                },
            )
        };
        let n = self.sources.len() / 16;
        if !self.sources.len().is_multiple_of(16) || n > usize::from(u16::MAX) {
            return Err(bad("MLDv2 record sources length", self.sources.len()));
        }
        if !self.aux_data.len().is_multiple_of(4) || self.aux_data.len() / 4 > usize::from(u8::MAX)
        {
            return Err(bad("MLDv2 record aux data length", self.aux_data.len()));
        }
        out[0] = self.record_type.value();
        out[1] = (self.aux_data.len() / 4) as u8;
        out[2..4].copy_from_slice(&(n as u16).to_be_bytes());
        out[4..20].copy_from_slice(&self.group.octets());
        let (src, aux) = out[20..].split_at_mut(self.sources.len());
        src.copy_from_slice(self.sources);
        aux.copy_from_slice(self.aux_data);
        Ok(())
    }
}

/// The records of an MLDv2 Report: validated octets from a received message, or a list to
/// emit.
#[derive(Clone, Copy)]
pub enum MldRecords<'a> {
    /// `count` records in `bytes`; only made by [`MldRepr::parse`], which checks them.
    Wire {
        bytes: &'a [u8],
        count: u16,
    },
    List(&'a [MldRecord<'a>]),
}

impl<'a> MldRecords<'a> {
    pub fn iter(&self) -> impl Iterator<Item = MldRecord<'a>> + use<'a> {
        let (wire, list): (Option<RecordIter<'a>>, &'a [MldRecord<'a>]) = match *self {
            MldRecords::Wire { bytes, count } => (
                Some(RecordIter {
                    rest: bytes,
                    left: count,
                    offset: 0,
                }),
                &[],
            ),
            MldRecords::List(l) => (None, l),
        };
        wire.into_iter()
            .flatten()
            .map_while(|r| r.ok())
            .chain(list.iter().copied())
    }

    pub fn len(&self) -> usize {
        match self {
            MldRecords::Wire { count, .. } => usize::from(*count),
            MldRecords::List(l) => l.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl fmt::Debug for MldRecords<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl PartialEq for MldRecords<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for MldRecords<'_> {}

/// Reads records one by one; stops after the first error.
struct RecordIter<'a> {
    rest: &'a [u8],
    left: u16,
    /// Offset of `rest` from the start of the records.
    offset: usize,
}

impl<'a> Iterator for RecordIter<'a> {
    type Item = Result<MldRecord<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let b = self.rest;
        let fail = |s: &mut Self, e| {
            s.left = 0;
            Some(Err(e))
        };
        if b.len() < RECORD_FIXED {
            return fail(
                self,
                Error::truncated(self.offset + b.len(), RECORD_FIXED - b.len(), b.len()),
            );
        }
        let aux = usize::from(b[1]) * 4;
        let sources = usize::from(u16::from_be_bytes([b[2], b[3]])) * 16;
        let total = RECORD_FIXED + sources + aux;
        if b.len() < total {
            return fail(
                self,
                Error::truncated(self.offset + b.len(), total - b.len(), b.len()),
            );
        }
        let mut g = [0u8; 16];
        g.copy_from_slice(&b[4..20]);
        let r = MldRecord {
            record_type: MldRecordType::from(b[0]),
            group: Ipv6Addr::from(g),
            sources: &b[RECORD_FIXED..RECORD_FIXED + sources],
            aux_data: &b[RECORD_FIXED + sources..total],
        };
        self.rest = &b[total..];
        self.offset += total;
        Some(Ok(r))
    }
}

/// An MLD message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MldRepr<'a> {
    /// A Query: v1 fields, and what an MLDv2 Query has after them (RFC 3810 §5.1).
    Query {
        max_response: u16,
        group: Ipv6Addr,
        v2_fields: &'a [u8],
    },
    /// An MLDv1 Report (RFC 2710 §3).
    Report { max_response: u16, group: Ipv6Addr },
    /// An MLDv1 Done (RFC 2710 §3).
    Done { max_response: u16, group: Ipv6Addr },
    /// An MLDv2 Report (RFC 3810 §5.2).
    ReportV2 { records: MldRecords<'a> },
}

impl<'a> MldRepr<'a> {
    pub fn is_mld(t: Icmpv6Type) -> bool {
        matches!(
            t,
            Icmpv6Type::MulticastListenerQuery
                | Icmpv6Type::MulticastListenerReport
                | Icmpv6Type::MulticastListenerDone
                | Icmpv6Type::MulticastListenerReportV2
        )
    }

    pub fn msg_type(&self) -> Icmpv6Type {
        match self {
            MldRepr::Query { .. } => Icmpv6Type::MulticastListenerQuery,
            MldRepr::Report { .. } => Icmpv6Type::MulticastListenerReport,
            MldRepr::Done { .. } => Icmpv6Type::MulticastListenerDone,
            MldRepr::ReportV2 { .. } => Icmpv6Type::MulticastListenerReportV2,
        }
    }

    /// Reads the body (what follows Type, Code and Checksum) of a message of type `t`.
    pub(crate) fn parse(t: Icmpv6Type, body: &'a [u8]) -> Result<Self> {
        let too_short = |minimum: usize| {
            Error::new(
                0,
                ErrorKind::TooShortForType {
                    msg_type: t.value(),
                    minimum: ICMP_HEADER_LEN + minimum,
                    length: ICMP_HEADER_LEN + body.len(),
                },
            )
        };
        if t == Icmpv6Type::MulticastListenerReportV2 {
            if body.len() < V2_REPORT_FIXED {
                return Err(too_short(V2_REPORT_FIXED));
            }
            let count = u16::from_be_bytes([body[2], body[3]]);
            let bytes = &body[V2_REPORT_FIXED..];
            let mut it = RecordIter {
                rest: bytes,
                left: count,
                offset: 0,
            };
            for r in &mut it {
                r.map_err(|e| e.shifted(ICMP_HEADER_LEN + V2_REPORT_FIXED))?;
            }
            // Octets after the last record are not part of any (RFC 3810 §5.2 has nothing
            // there): the message ends with its records.
            let used = bytes.len() - it.rest.len();
            return Ok(MldRepr::ReportV2 {
                records: MldRecords::Wire {
                    bytes: &bytes[..used],
                    count,
                },
            });
        }
        if body.len() < V1_BODY_LEN {
            return Err(too_short(V1_BODY_LEN));
        }
        let max_response = u16::from_be_bytes([body[0], body[1]]);
        let mut g = [0u8; 16];
        g.copy_from_slice(&body[4..20]);
        let group = Ipv6Addr::from(g);
        Ok(match t {
            Icmpv6Type::MulticastListenerQuery => MldRepr::Query {
                max_response,
                group,
                v2_fields: &body[V1_BODY_LEN..],
            },
            Icmpv6Type::MulticastListenerDone => MldRepr::Done {
                max_response,
                group,
            },
            _ => MldRepr::Report {
                max_response,
                group,
            },
        })
    }

    pub(crate) fn body_len(&self) -> usize {
        match self {
            MldRepr::Query { v2_fields, .. } => V1_BODY_LEN + v2_fields.len(),
            MldRepr::Report { .. } | MldRepr::Done { .. } => V1_BODY_LEN,
            MldRepr::ReportV2 { records } => {
                V2_REPORT_FIXED + records.iter().map(|r| r.buffer_len()).sum::<usize>()
            }
        }
    }

    /// Writes the body into `out`, which is exactly [`MldRepr::body_len`] long.
    pub(crate) fn emit_body(&self, out: &mut [u8]) -> Result<()> {
        let fixed = match self {
            MldRepr::ReportV2 { .. } => V2_REPORT_FIXED,
            _ => V1_BODY_LEN,
        };
        if out.len() < fixed {
            return Err(Error::buffer_too_small(fixed, out.len()));
        }
        out[..fixed].fill(0);
        match *self {
            MldRepr::Query {
                max_response,
                group,
                v2_fields,
            } => {
                out[0..2].copy_from_slice(&max_response.to_be_bytes());
                out[4..20].copy_from_slice(&group.octets());
                out[20..].copy_from_slice(v2_fields);
            }
            MldRepr::Report {
                max_response,
                group,
            }
            | MldRepr::Done {
                max_response,
                group,
            } => {
                out[0..2].copy_from_slice(&max_response.to_be_bytes());
                out[4..20].copy_from_slice(&group.octets());
            }
            MldRepr::ReportV2 { records } => {
                let count = u16::try_from(records.len()).map_err(|_| {
                    Error::new(
                        2,
                        ErrorKind::TooLong {
                            length: records.len(),
                            maximum: usize::from(u16::MAX),
                        },
                    )
                })?;
                out[2..4].copy_from_slice(&count.to_be_bytes());
                let mut pos = V2_REPORT_FIXED;
                for r in records.iter() {
                    let n = r.buffer_len();
                    let available = out.len();
                    let dst = out
                        .get_mut(pos..pos + n)
                        .ok_or(Error::buffer_too_small(pos + n, available))?;
                    r.emit_into(dst, pos)?;
                    pos += n;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::icmpv6::{Icmpv6Packet, Icmpv6Repr};
    use super::*;

    fn a(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    fn round_trip(m: MldRepr<'_>) -> Vec<u8> {
        let (src, dst) = (Ipv6Addr::UNSPECIFIED, a("ff02::16"));
        let r = Icmpv6Repr::Mld(m);
        let mut buf = vec![0u8; r.buffer_len()];
        assert_eq!(r.emit(&src, &dst, &mut buf), Ok(buf.len()));
        let p = Icmpv6Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(Icmpv6Repr::parse(&src, &dst, &p), Ok(r));
        buf
    }

    // What Linux sends when an interface comes up (`mld_send_report`, kernel 6.x): one
    // record, CHANGE_TO_EXCLUDE_MODE with no source, for its solicited-node group.
    // Wireshark: "Multicast Listener Report Message v2, 1 Multicast Address Record
    // Changed to exclude: ff02::1:ff00:101".
    #[test]
    fn a_v2_report_both_ways() {
        let records = [MldRecord {
            record_type: MldRecordType::ChangeToExclude,
            group: a("ff02::1:ff00:101"),
            sources: &[],
            aux_data: &[],
        }];
        let b = round_trip(MldRepr::ReportV2 {
            records: MldRecords::List(&records),
        });
        assert_eq!(b.len(), 28);
        assert_eq!(b[..2], [143, 0]);
        assert_eq!(b[4..12], [0, 0, 0, 1, 4, 0, 0, 0]);
        assert_eq!(b[12..28], a("ff02::1:ff00:101").octets());
    }

    #[test]
    fn records_with_sources_and_aux_data() {
        let mut sources = [0u8; 32];
        sources[..16].copy_from_slice(&a("2001:db8::1").octets());
        sources[16..].copy_from_slice(&a("2001:db8::2").octets());
        let records = [
            MldRecord {
                record_type: MldRecordType::AllowNewSources,
                group: a("ff3e::8000:1"),
                sources: &sources,
                aux_data: &[1, 2, 3, 4],
            },
            MldRecord {
                record_type: MldRecordType::Unknown(9),
                group: a("ff05::1:3"),
                sources: &[],
                aux_data: &[],
            },
        ];
        let m = MldRepr::ReportV2 {
            records: MldRecords::List(&records),
        };
        let b = round_trip(m);
        assert_eq!(b.len(), 8 + 20 + 32 + 4 + 20);
        let srcs: Vec<_> = records[0].sources().collect();
        assert_eq!(srcs, [a("2001:db8::1"), a("2001:db8::2")]);
    }

    #[test]
    fn v1_messages_both_ways() {
        for m in [
            MldRepr::Report {
                max_response: 0,
                group: a("ff02::1:ff00:101"),
            },
            MldRepr::Done {
                max_response: 0,
                group: a("ff02::1:ff00:101"),
            },
            MldRepr::Query {
                max_response: 10_000,
                group: Ipv6Addr::UNSPECIFIED,
                v2_fields: &[0, 125, 0, 0],
            },
        ] {
            let b = round_trip(m);
            assert_eq!(
                b.len(),
                24 + if matches!(m, MldRepr::Query { .. }) {
                    4
                } else {
                    0
                }
            );
        }
    }

    #[test]
    fn truncated_records_are_refused_at_their_offset() {
        let body = |count: u16, records: &[u8]| {
            let mut b = vec![0, 0];
            b.extend_from_slice(&count.to_be_bytes());
            b.extend_from_slice(records);
            b
        };
        let t = Icmpv6Type::MulticastListenerReportV2;
        // Two records announced, one there.
        let one = [
            4u8, 0, 0, 0, 0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0, 1, 1,
        ];
        let e = MldRepr::parse(t, &body(2, &one)).unwrap_err();
        assert_eq!(e, Error::truncated(4 + 4 + 20, 20, 0));
        // A record that says it has a source, without it.
        let mut with_source = one;
        with_source[3] = 1;
        let e = MldRepr::parse(t, &body(1, &with_source)).unwrap_err();
        assert_eq!(
            e.kind,
            ErrorKind::Truncated {
                needed: 16,
                available: 20
            }
        );
        // Aux data length past the end.
        let mut with_aux = one;
        with_aux[1] = 255;
        assert!(MldRepr::parse(t, &body(1, &with_aux)).is_err());
        // Too short for the fixed fields.
        assert!(MldRepr::parse(t, &[0, 0, 0]).is_err());
        assert!(MldRepr::parse(Icmpv6Type::MulticastListenerReport, &[0; 19]).is_err());
        // Octets after the last record are not kept.
        let mut trailing = body(1, &one);
        trailing.extend_from_slice(&[0xee; 3]);
        let MldRepr::ReportV2 { records } = MldRepr::parse(t, &trailing).unwrap() else {
            panic!("not a v2 report");
        };
        assert_eq!(records.len(), 1);
        assert_eq!(MldRepr::ReportV2 { records }.body_len(), 24);
    }

    #[test]
    fn records_that_cannot_be_sent_are_refused() {
        let bad = [MldRecord {
            record_type: MldRecordType::ModeIsInclude,
            group: a("ff02::1"),
            sources: &[0; 15],
            aux_data: &[],
        }];
        let m = MldRepr::ReportV2 {
            records: MldRecords::List(&bad),
        };
        let mut out = vec![0u8; m.body_len()];
        assert!(m.emit_body(&mut out).is_err());
        let bad = [MldRecord {
            record_type: MldRecordType::ModeIsInclude,
            group: a("ff02::1"),
            sources: &[],
            aux_data: &[0; 3],
        }];
        let m = MldRepr::ReportV2 {
            records: MldRecords::List(&bad),
        };
        let mut out = vec![0u8; m.body_len()];
        assert!(m.emit_body(&mut out).is_err());
    }
}
