//! The store's binding record on disk: a fixed binary layout, versioned by its first byte.
//!
//! Restarting at a million bindings spends most of its store read decoding records, and JSON
//! was the larger part of it. This layout is a version byte, a presence byte, the fixed-size
//! fields in network byte order, then the optional and variable-length ones, each length
//! bounded; decoding checks every length, every prefix length and the MN-ID's UTF-8, and a
//! record with a byte too many or too few is an error, never a guess.
//!
//! Records written by earlier versions are JSON (their first byte is `{`): they are still read,
//! and rewritten in this layout the next time the binding changes. A record is held to the
//! same bounds whichever format it is read from and before it is written, so that whatever is
//! read can be written again and whatever is written can be read back.
//!
//! The layout is canonical: a record has one encoding, and bytes that decode are exactly the
//! encoding of the record they decode to.
//!
//! ```text
//! u8   version (2)
//! u8   present: 1 link-layer id, 2 link-local address, 4 delete_at, 8 last timestamp,
//!               16 last handover gap, 32 IPv4 home address (other bits: an error)
//! [16] proxy-CoA
//! u8   access technology type        u8   handoff indicator
//! u32  lifetime (s)                  u16  last sequence      u32 handover count
//! u64  registered_at, updated_at, expires_at (ms since the Unix epoch)
//! u64  delete_at, u64 last timestamp, u64 last handover gap       (if present, in this order)
//! [16] link-local address                                          (if present)
//! u8 length + bytes: link-layer id (1..=16 bytes)                  (if present)
//! [4] address, u8 prefix length, [4] default router: IPv4 home     (if present)
//! u16  number of prefixes, then [16] address + u8 length for each
//! u16  MN-ID length, then its UTF-8 bytes
//! ```

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::Ipv6Net;
use pmip::ipv4_pool::Ipv4HomeAddress;
use pmip::lma::BindingRecord;
use pmip::types::LinkLayerAddress;

/// The first byte of a record in this layout.
pub const VERSION: u8 = 2;

const LINK_LAYER: u8 = 1;
const LINK_LOCAL: u8 = 2;
const DELETE_AT: u8 = 4;
const TIMESTAMP: u8 = 8;
const GAP: u8 = 16;
const IPV4: u8 = 32;
const KNOWN: u8 = LINK_LAYER | LINK_LOCAL | DELETE_AT | TIMESTAMP | GAP | IPV4;

/// Longest MN-ID, in bytes, the layout holds: its length is 16 bits.
pub const MAX_MN_ID_LEN: usize = u16::MAX as usize;
/// Most home network prefixes the layout holds: their count is 16 bits.
pub const MAX_PREFIXES: usize = u16::MAX as usize;

/// Why a record could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("empty record")]
    Empty,
    #[error("record format {0} is not known to this version")]
    Version(u8),
    #[error("record ends {0} bytes early")]
    Short(usize),
    #[error("{0} bytes after the end of the record")]
    Trailing(usize),
    #[error("{0}")]
    Bad(&'static str),
    #[error("JSON record: {0}")]
    Json(String),
}

/// What a record must be for the layout to hold it, and for decoding it to give it back:
/// checked before a record is written and on every record read, in either format.
fn check(r: &BindingRecord) -> Result<(), RecordError> {
    if r.home_network_prefixes.len() > MAX_PREFIXES {
        return Err(RecordError::Bad("more than 65535 prefixes"));
    }
    if r.mn_id.len() > MAX_MN_ID_LEN {
        return Err(RecordError::Bad("MN-ID longer than 65535 bytes"));
    }
    if r.ipv4_home_address.is_some_and(|v4| v4.prefix_len > 32) {
        return Err(RecordError::Bad("IPv4 prefix length over 32"));
    }
    Ok(())
}

/// Encodes `r` in this layout. Fails only on what the layout cannot hold (more than 65535
/// prefixes, an MN-ID longer than 65535 bytes, an IPv4 prefix length over 32), which no
/// valid binding has.
pub fn encode(r: &BindingRecord) -> Result<Vec<u8>, RecordError> {
    check(r)?;
    let mut out = Vec::with_capacity(96 + r.mn_id.len() + 17 * r.home_network_prefixes.len());
    let mut present = 0u8;
    for (flag, set) in [
        (LINK_LAYER, r.mn_link_layer_id.is_some()),
        (LINK_LOCAL, r.link_local_address.is_some()),
        (DELETE_AT, r.delete_at_ms.is_some()),
        (TIMESTAMP, r.last_timestamp.is_some()),
        (GAP, r.last_handover_gap_ms.is_some()),
        (IPV4, r.ipv4_home_address.is_some()),
    ] {
        if set {
            present |= flag;
        }
    }
    out.extend([VERSION, present]);
    out.extend(r.proxy_coa.octets());
    out.extend([r.access_technology_type, r.handoff_indicator]);
    out.extend(r.lifetime_s.to_be_bytes());
    out.extend(r.last_sequence.to_be_bytes());
    out.extend(r.handover_count.to_be_bytes());
    for t in [r.registered_at_ms, r.updated_at_ms, r.expires_at_ms] {
        out.extend(t.to_be_bytes());
    }
    for t in [r.delete_at_ms, r.last_timestamp, r.last_handover_gap_ms]
        .into_iter()
        .flatten()
    {
        out.extend(t.to_be_bytes());
    }
    if let Some(a) = r.link_local_address {
        out.extend(a.octets());
    }
    if let Some(l) = &r.mn_link_layer_id {
        let b = l.as_bytes();
        out.push(b.len() as u8);
        out.extend(b);
    }
    if let Some(v4) = &r.ipv4_home_address {
        out.extend(v4.address.octets());
        out.push(v4.prefix_len);
        out.extend(v4.default_router.octets());
    }
    let n = u16::try_from(r.home_network_prefixes.len())
        .map_err(|_| RecordError::Bad("more than 65535 prefixes"))?;
    out.extend(n.to_be_bytes());
    for p in &r.home_network_prefixes {
        out.extend(p.addr().octets());
        out.push(p.prefix_len());
    }
    let n = u16::try_from(r.mn_id.len())
        .map_err(|_| RecordError::Bad("MN-ID longer than 65535 bytes"))?;
    out.extend(n.to_be_bytes());
    out.extend(r.mn_id.as_bytes());
    Ok(out)
}

/// Decodes a record in this layout, or in the JSON of earlier versions.
pub fn decode(bytes: &[u8]) -> Result<BindingRecord, RecordError> {
    match bytes.first() {
        None => Err(RecordError::Empty),
        Some(b'{') => {
            let r = serde_json::from_slice(bytes).map_err(|e| RecordError::Json(e.to_string()))?;
            check(&r)?;
            Ok(r)
        }
        Some(&VERSION) => decode_v2(bytes.get(1..).unwrap_or_default()),
        Some(&v) => Err(RecordError::Version(v)),
    }
}

/// A cursor over the record's bytes that never reads past them.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], RecordError> {
        if self.rest.len() < n {
            return Err(RecordError::Short(n - self.rest.len()));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], RecordError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn u8(&mut self) -> Result<u8, RecordError> {
        Ok(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16, RecordError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, RecordError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, RecordError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    fn ipv6(&mut self) -> Result<Ipv6Addr, RecordError> {
        Ok(Ipv6Addr::from(self.array::<16>()?))
    }

    fn ipv4(&mut self) -> Result<Ipv4Addr, RecordError> {
        Ok(Ipv4Addr::from(self.array::<4>()?))
    }

    fn optional_u64(&mut self, present: bool) -> Result<Option<u64>, RecordError> {
        present.then(|| self.u64()).transpose()
    }
}

fn decode_v2(bytes: &[u8]) -> Result<BindingRecord, RecordError> {
    let mut r = Reader { rest: bytes };
    let present = r.u8()?;
    if present & !KNOWN != 0 {
        return Err(RecordError::Bad("unknown presence bits"));
    }
    let has = |flag: u8| present & flag != 0;
    let proxy_coa = r.ipv6()?;
    let access_technology_type = r.u8()?;
    let handoff_indicator = r.u8()?;
    let lifetime_s = r.u32()?;
    let last_sequence = r.u16()?;
    let handover_count = r.u32()?;
    let registered_at_ms = r.u64()?;
    let updated_at_ms = r.u64()?;
    let expires_at_ms = r.u64()?;
    let delete_at_ms = r.optional_u64(has(DELETE_AT))?;
    let last_timestamp = r.optional_u64(has(TIMESTAMP))?;
    let last_handover_gap_ms = r.optional_u64(has(GAP))?;
    let link_local_address = has(LINK_LOCAL).then(|| r.ipv6()).transpose()?;
    let mn_link_layer_id = if has(LINK_LAYER) {
        let n = r.u8()? as usize;
        Some(
            LinkLayerAddress::new(r.take(n)?)
                .ok_or(RecordError::Bad("link-layer identifier of a bad length"))?,
        )
    } else {
        None
    };
    let ipv4_home_address = if has(IPV4) {
        let address = r.ipv4()?;
        let prefix_len = r.u8()?;
        if prefix_len > 32 {
            return Err(RecordError::Bad("IPv4 prefix length over 32"));
        }
        let default_router = r.ipv4()?;
        Some(Ipv4HomeAddress {
            address,
            prefix_len,
            default_router,
        })
    } else {
        None
    };
    let n = r.u16()? as usize;
    // Each prefix takes 17 bytes: a count the rest cannot hold is refused before allocating.
    if r.rest.len() < n.saturating_mul(17) {
        return Err(RecordError::Short(n * 17 - r.rest.len()));
    }
    let mut home_network_prefixes = Vec::with_capacity(n);
    for _ in 0..n {
        let a = r.ipv6()?;
        let len = r.u8()?;
        home_network_prefixes
            .push(Ipv6Net::new(a, len).map_err(|_| RecordError::Bad("prefix length over 128"))?);
    }
    let n = r.u16()? as usize;
    let mn_id = std::str::from_utf8(r.take(n)?)
        .map_err(|_| RecordError::Bad("MN-ID is not UTF-8"))?
        .to_owned();
    if !r.rest.is_empty() {
        return Err(RecordError::Trailing(r.rest.len()));
    }
    Ok(BindingRecord {
        mn_id,
        home_network_prefixes,
        proxy_coa,
        access_technology_type,
        handoff_indicator,
        mn_link_layer_id,
        link_local_address,
        lifetime_s,
        registered_at_ms,
        updated_at_ms,
        expires_at_ms,
        delete_at_ms,
        last_timestamp,
        last_sequence,
        handover_count,
        last_handover_gap_ms,
        ipv4_home_address,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full() -> BindingRecord {
        BindingRecord {
            mn_id: "mn1@example.org".into(),
            home_network_prefixes: vec![
                "2001:db8:100:1::/64".parse().unwrap(),
                "2001:db8:200::/56".parse().unwrap(),
            ],
            proxy_coa: "2001:db8:1::10".parse().unwrap(),
            access_technology_type: 3,
            handoff_indicator: 4,
            mn_link_layer_id: LinkLayerAddress::new(&[2, 0, 0, 0, 0, 1]),
            link_local_address: Some("fe80::1".parse().unwrap()),
            lifetime_s: 3600,
            registered_at_ms: 1_800_000_000_000,
            updated_at_ms: 1_800_000_001_000,
            expires_at_ms: 1_800_003_601_000,
            delete_at_ms: Some(1_800_000_002_000),
            last_timestamp: Some(0x1234_5678_9abc_def0),
            last_sequence: 65535,
            handover_count: 7,
            last_handover_gap_ms: Some(12),
            ipv4_home_address: Some(Ipv4HomeAddress {
                address: "192.0.2.10".parse().unwrap(),
                prefix_len: 24,
                default_router: "192.0.2.1".parse().unwrap(),
            }),
        }
    }

    fn bare() -> BindingRecord {
        BindingRecord {
            home_network_prefixes: vec![],
            mn_link_layer_id: None,
            link_local_address: None,
            delete_at_ms: None,
            last_timestamp: None,
            last_handover_gap_ms: None,
            ipv4_home_address: None,
            ..full()
        }
    }

    #[test]
    fn every_field_round_trips_present_or_absent() {
        for r in [full(), bare()] {
            let b = encode(&r).unwrap();
            assert_eq!(b[0], VERSION);
            assert_eq!(decode(&b).unwrap(), r);
        }
        // The binary record is a fraction of the JSON one.
        let (bin, json) = (
            encode(&full()).unwrap().len(),
            serde_json::to_vec(&full()).unwrap().len(),
        );
        assert!(bin * 3 < json, "{bin} bytes against {json} in JSON");
    }

    #[test]
    fn records_of_earlier_versions_in_json_are_read() {
        let json = serde_json::to_vec(&full()).unwrap();
        assert_eq!(decode(&json).unwrap(), full());
        assert!(matches!(
            decode(b"{\"mn_id\": 1}"),
            Err(RecordError::Json(_))
        ));
    }

    #[test]
    fn damage_is_an_error_that_says_what() {
        let b = encode(&full()).unwrap();
        assert_eq!(decode(&[]), Err(RecordError::Empty));
        assert_eq!(decode(&[9, 0]), Err(RecordError::Version(9)));
        assert_eq!(decode(&b[..b.len() - 1]), Err(RecordError::Short(1)));
        let mut long = b.clone();
        long.push(0);
        assert_eq!(decode(&long), Err(RecordError::Trailing(1)));
        let mut bits = b.clone();
        bits[1] |= 0x80;
        assert_eq!(
            decode(&bits),
            Err(RecordError::Bad("unknown presence bits"))
        );
        // The first prefix's length byte: after the 2-byte count that follows the IPv4 part.
        let r = bare();
        let mut one = r.clone();
        one.home_network_prefixes = vec!["2001:db8::/64".parse().unwrap()];
        let mut b = encode(&one).unwrap();
        let at = b.len() - 2 - one.mn_id.len() - 1;
        b[at] = 129;
        assert_eq!(decode(&b), Err(RecordError::Bad("prefix length over 128")));
        // A prefix count the record cannot hold.
        let mut b = encode(&r).unwrap();
        let at = b.len() - 2 - r.mn_id.len() - 2;
        b[at..at + 2].copy_from_slice(&u16::MAX.to_be_bytes());
        assert!(matches!(decode(&b), Err(RecordError::Short(_))));
    }
}
