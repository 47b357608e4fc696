//! Turns a parsed Mobility Header into a [`Record`]: an ordered list of named fields that
//! serialises to JSON with stable snake_case keys (after the RFCs' field names) and renders as
//! text (see [`crate::render`]).
//!
//! Numbers stay numbers; addresses and prefixes use their usual text form; every coded value
//! (status, Handoff Indicator, Access Technology Type, ...) carries its number and, when it is
//! one the RFCs define, its RFC name.

use std::net::{IpAddr, Ipv6Addr};

use pmip::wire::packet::{FoundMh, Transport};
use pmip::wire::{
    BindingRevocation, CommonOptions, HandoverContext, HeartbeatFlags, HeartbeatView, LmaAddress,
    Message, MhPacket, MobilityOption, OptionType, ProxyBindingAck, ProxyBindingUpdate, Timestamp,
};
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};

/// One decoded value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Number(u64),
    Text(String),
    Bool(bool),
    /// A coded value: its number and the RFC's name for it (`None` for a value no RFC we
    /// implement names). JSON: `{"value": 154, "name": "MAG_NOT_AUTHORIZED_FOR_PROXY_REG"}`.
    Named {
        value: u64,
        name: Option<&'static str>,
    },
    /// A flags field: the letters of the flags that are set. JSON: `["A", "P"]`.
    Flags(Vec<&'static str>),
    List(Vec<Value>),
    Record(Record),
}

/// Named fields in wire order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Record(pub Vec<(&'static str, Value)>);

impl Record {
    pub fn new() -> Self {
        Record(Vec::new())
    }

    pub fn push(&mut self, key: &'static str, value: Value) -> &mut Self {
        self.0.push((key, value));
        self
    }

    pub fn num(&mut self, key: &'static str, v: impl Into<u64>) -> &mut Self {
        self.push(key, Value::Number(v.into()))
    }

    pub fn text(&mut self, key: &'static str, v: impl ToString) -> &mut Self {
        self.push(key, Value::Text(v.to_string()))
    }

    /// The value of the first field called `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }
}

impl Serialize for Record {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Number(n) => s.serialize_u64(*n),
            Value::Text(t) => s.serialize_str(t),
            Value::Bool(b) => s.serialize_bool(*b),
            Value::Named { value, name } => {
                let mut m = s.serialize_map(Some(2))?;
                m.serialize_entry("value", value)?;
                m.serialize_entry("name", name)?;
                m.end()
            }
            Value::Flags(letters) => {
                let mut q = s.serialize_seq(Some(letters.len()))?;
                for l in letters {
                    q.serialize_element(l)?;
                }
                q.end()
            }
            Value::List(items) => {
                let mut q = s.serialize_seq(Some(items.len()))?;
                for i in items {
                    q.serialize_element(i)?;
                }
                q.end()
            }
            Value::Record(r) => r.serialize(s),
        }
    }
}

fn named(value: impl Into<u64>, name: Option<&'static str>) -> Value {
    Value::Named {
        value: value.into(),
        name,
    }
}

macro_rules! flags_value {
    ($flags:expr, $ty:ty) => {{
        let f = $flags;
        Value::Flags(
            <$ty>::NAMED
                .iter()
                .filter(|(bit, _)| f.contains(*bit))
                .map(|(_, letter)| *letter)
                .collect(),
        )
    }};
}

/// Lower-case hex, octets separated by colons (the usual text form of link-layer addresses).
pub fn hex_colons(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len() * 3);
    for (i, x) in b.iter().enumerate() {
        if i > 0 {
            s.push(':');
        }
        s.push_str(&format!("{x:02x}"));
    }
    s
}

/// RFC 3339 text of a Timestamp option's value (RFC 5213 §8.8), to the nanosecond.
pub fn rfc3339(ts: Timestamp) -> String {
    let wall = ts.to_wall_clock().since_epoch();
    crate::show::rfc3339(
        i64::try_from(wall.as_secs()).unwrap_or(i64::MAX),
        wall.subsec_nanos(),
        9,
    )
}

/// A Mobile Node Identifier as text when it is printable UTF-8 (an NAI), else `None`.
fn printable(id: &[u8]) -> Option<&str> {
    let s = std::str::from_utf8(id).ok()?;
    (!s.chars().any(char::is_control)).then_some(s)
}

/// The fields of one mobility option, after its `type`, `name`, `offset` and `length`.
fn option_fields(o: &MobilityOption<'_>, r: &mut Record) {
    use MobilityOption as O;
    match *o {
        O::AlternateCareOfAddress(a) => {
            r.text("alternate_care_of_address", a);
        }
        O::MobileNodeIdentifier { subtype, id } => {
            r.push(
                "subtype",
                named(
                    subtype,
                    (subtype == pmip::wire::MN_ID_SUBTYPE_NAI).then_some("NAI"),
                ),
            );
            match printable(id) {
                Some(s) => r.text("identifier", s),
                None => r.text("identifier_hex", hex_colons(id)),
            };
        }
        O::VendorSpecific {
            vendor_id,
            sub_type,
            data,
        } => {
            r.num("vendor_id", vendor_id)
                .num("sub_type", sub_type)
                .text("data", hex_colons(data));
        }
        O::HomeNetworkPrefix(p) => {
            r.num("prefix_length", p.prefix_len())
                .text("home_network_prefix", p);
        }
        O::HandoffIndicator(hi) => {
            r.push("handoff_indicator", named(hi.value(), hi.rfc_name()));
        }
        O::AccessTechnologyType(att) => {
            r.push("access_technology_type", named(att.value(), att.rfc_name()));
        }
        O::MnLinkLayerIdentifier(id) => {
            r.text("link_layer_identifier", hex_colons(id));
        }
        O::LinkLocalAddress(a) => {
            r.text("link_local_address", a);
        }
        O::Timestamp(t) => {
            r.text("timestamp", rfc3339(t))
                .num("seconds", t.seconds())
                .num("fraction", t.fraction());
        }
        O::RestartCounter(c) => {
            r.num("restart_counter", c);
        }
        O::GreKey(k) => {
            match k {
                Some(k) => r.num("gre_key_identifier", k),
                None => r.push("gre_key_identifier", Value::Text("none".into())),
            };
        }
        O::Ipv4HomeAddressRequest {
            prefix_len,
            address,
        } => {
            r.num("prefix_len", prefix_len)
                .text("ipv4_home_address", address);
        }
        O::Ipv4HomeAddressReply {
            status,
            prefix_len,
            address,
        } => {
            r.push("status", named(status.value(), status.rfc_name()))
                .num("prefix_len", prefix_len)
                .text("ipv4_home_address", address);
        }
        O::Ipv4DefaultRouterAddress(a) => {
            r.text("ipv4_default_router_address", a);
        }
        O::Ipv4DhcpSupportMode { server } => {
            r.push("s_flag", Value::Bool(server))
                .text("mode", if server { "DHCP server" } else { "DHCP relay" });
        }
        O::ContextRequest(c) => {
            let reqs = c
                .iter()
                .map(|(t, data)| {
                    let mut q = Record::new();
                    q.push("req_type", named(t.value(), t.rfc_name()));
                    q.num("req_length", data.len() as u64);
                    if !data.is_empty() {
                        q.text("req_option", hex_colons(data));
                    }
                    Value::Record(q)
                })
                .collect();
            r.push("requests", Value::List(reqs));
        }
        O::LmaAddress(a) => {
            let (code, addr) = match a {
                LmaAddress::V6(a) => (1u8, IpAddr::V6(a)),
                LmaAddress::V4(a) => (2u8, IpAddr::V4(a)),
            };
            r.push(
                "option_code",
                named(
                    code,
                    Some(if code == 1 { "IPv6 LMAA" } else { "IPv4-LMAA" }),
                ),
            )
            .text("lma_address", addr);
        }
        O::MnLinkLocalInterfaceId(iid) => {
            // The interface identifier in the usual form of an IPv6 address's last 64 bits.
            let mut a = [0u8; 16];
            a[8..].copy_from_slice(&iid);
            r.text("interface_identifier", Ipv6Addr::from(a));
        }
        O::Unknown { data, .. } => {
            r.text("data", hex_colons(data));
        }
    }
}

fn option_record(at: usize, o: &MobilityOption<'_>) -> Record {
    let t: OptionType = o.option_type();
    let mut r = Record::new();
    r.push("type", named(t.value(), t.rfc_name()))
        .num("offset", at as u64)
        .num("length", o.data_len() as u64);
    option_fields(o, &mut r);
    r
}

/// What a message is, in words: "Proxy Binding Update", "Heartbeat Response", ...
pub fn message_name(m: &Message<'_>) -> String {
    use pmip::wire::{BaFlags, BuFlags};
    match m {
        Message::BindingUpdate(b) if b.flags.contains(BuFlags::P) => "Proxy Binding Update".into(),
        Message::BindingAck(b) if b.flags.contains(BaFlags::P) => {
            "Proxy Binding Acknowledgement".into()
        }
        Message::Heartbeat(h) if h.is_response() => "Heartbeat Response".into(),
        Message::Heartbeat(_) => "Heartbeat Request".into(),
        Message::BindingRevocation(BindingRevocation::Indication(_)) => {
            "Binding Revocation Indication".into()
        }
        Message::BindingRevocation(BindingRevocation::Acknowledgement(_)) => {
            "Binding Revocation Acknowledgement".into()
        }
        m => m.mh_type().rfc_name().unwrap_or("Unknown message").into(),
    }
}

/// The fixed fields of a message, after its header.
fn body_fields(m: &Message<'_>, r: &mut Record) {
    use pmip::wire::{BaFlags, BuFlags, HackFlags, HiFlags, RevocationFlags, UpnFlags};
    match m {
        Message::BindingUpdate(b) => {
            r.num("sequence", b.sequence.0)
                .push("flags", flags_value!(b.flags, BuFlags))
                .num("lifetime", b.lifetime.0)
                .num("lifetime_seconds", b.lifetime.as_secs());
        }
        Message::BindingAck(b) => {
            r.push("status", named(b.status.value(), b.status.rfc_name()))
                .push("flags", flags_value!(b.flags, BaFlags))
                .num("sequence", b.sequence.0)
                .num("lifetime", b.lifetime.0)
                .num("lifetime_seconds", b.lifetime.as_secs());
        }
        Message::BindingError(b) => {
            r.push("status", named(b.status.value(), b.status.rfc_name()))
                .text("home_address", b.home_address);
        }
        Message::Heartbeat(h) => {
            r.push("flags", flags_value!(h.flags, HeartbeatFlags))
                .num("sequence", h.sequence);
        }
        Message::HandoverInitiate(h) => {
            r.num("sequence", h.sequence.0)
                .push("flags", flags_value!(h.flags, HiFlags))
                .push("code", named(h.code.value(), h.code.rfc_name()));
        }
        Message::HandoverAck(h) => {
            r.num("sequence", h.sequence.0)
                .push("flags", flags_value!(h.flags, HackFlags))
                .push("code", named(h.code.value(), h.code.rfc_name()));
        }
        Message::BindingRevocation(BindingRevocation::Indication(b)) => {
            r.push("br_type", named(1u8, Some("Binding Revocation Indication")))
                .push(
                    "revocation_trigger",
                    named(b.trigger.value(), b.trigger.rfc_name()),
                )
                .num("sequence", b.sequence.0)
                .push("flags", flags_value!(b.flags, RevocationFlags));
        }
        Message::BindingRevocation(BindingRevocation::Acknowledgement(b)) => {
            r.push(
                "br_type",
                named(2u8, Some("Binding Revocation Acknowledgement")),
            )
            .push("status", named(b.status.value(), b.status.rfc_name()))
            .num("sequence", b.sequence.0)
            .push("flags", flags_value!(b.flags, RevocationFlags));
        }
        Message::UpdateNotification(u) => {
            r.num("sequence", u.sequence.0)
                .push(
                    "notification_reason",
                    named(u.reason.value(), u.reason.rfc_name()),
                )
                .push("flags", flags_value!(u.flags, UpnFlags));
        }
        Message::UpdateNotificationAck(u) => {
            r.num("sequence", u.sequence.0)
                .push("status", named(u.status.value(), u.status.rfc_name()));
        }
        Message::Unknown { data, .. } => {
            r.text("message_data", hex_colons(data));
        }
    }
}

/// The checks of the typed views (missing mandatory options and flags, repeated options) and
/// a few RFC SHOULDs, as warnings: the message still decodes.
pub fn warnings(m: &Message<'_>, mh: &[u8]) -> Vec<String> {
    let mut w = Vec::new();
    let mut push = |e: pmip::wire::Error| w.push(e.to_string());
    match m {
        Message::BindingUpdate(bu) => match ProxyBindingUpdate::new(bu) {
            Ok(pbu) => {
                if let Err(e) = pbu.check_mandatory() {
                    push(e);
                }
            }
            Err(e) => push(e),
        },
        Message::BindingAck(ba) => match ProxyBindingAck::new(ba) {
            Ok(pba) => {
                if let Err(e) = pba.check_mandatory() {
                    push(e);
                }
            }
            Err(e) => push(e),
        },
        Message::HandoverInitiate(hi) => {
            if let Err(e) = HandoverContext::of_hi(hi) {
                push(e);
            }
        }
        Message::HandoverAck(hack) => {
            if let Err(e) = HandoverContext::of_hack(hack) {
                push(e);
            }
        }
        Message::Heartbeat(hb) => {
            if let Err(e) = HeartbeatView::new(hb) {
                push(e);
            }
        }
        Message::Unknown { .. } => {}
        other => {
            if let Err(e) = CommonOptions::collect(&other.options()) {
                push(e);
            }
        }
    }
    // RFC 6275 §6.1.1: Payload Proto SHOULD be IPPROTO_NONE (59).
    if let Some(&pp) = mh.first()
        && pp != pmip::wire::IPPROTO_NONE
    {
        w.push(format!(
            "at byte 0: Payload Proto is {pp}, RFC 6275 §6.1.1 says it SHOULD be 59"
        ));
    }
    w
}

/// The whole decoded message: header, fixed fields, options and warnings.
///
/// `mh` must be the bytes `m` was parsed from (they give the header fields).
pub fn message_record(m: &Message<'_>, mh: &[u8]) -> Record {
    let mut r = Record::new();
    r.text("message", message_name(m));
    let t = m.mh_type();
    r.push("mh_type", named(t.value(), t.rfc_name()));
    if let Ok(p) = MhPacket::new_checked(mh) {
        r.num("payload_proto", p.payload_proto())
            .num("header_len", p.header_len())
            .num("length", p.total_len() as u64)
            .text("checksum", format!("0x{:04x}", p.checksum()));
    }
    body_fields(m, &mut r);
    let opts: Vec<Value> = m
        .options()
        .iter_at()
        .map(|(at, o)| Value::Record(option_record(at, &o)))
        .collect();
    if !matches!(m, Message::Unknown { .. }) {
        r.push("options", Value::List(opts));
    }
    let w = warnings(m, mh);
    r.push(
        "warnings",
        Value::List(w.into_iter().map(Value::Text).collect()),
    );
    r
}

/// Decodes one Mobility Header (no checksum check: its addresses are not known).
pub fn decode_mh(mh: &[u8]) -> Result<Record, pmip::wire::Error> {
    let m = Message::parse_bytes(mh)?;
    Ok(message_record(&m, mh))
}

/// Where a Mobility Header found in a packet came from, and what its checksums say.
pub fn packet_record(found: &FoundMh<'_>) -> Record {
    let mut r = Record::new();
    r.text("src", found.src).text("dst", found.dst);
    match found.transport {
        Transport::Ipv6 => {
            r.text("transport", "IPv6");
        }
        Transport::Ipv4Udp {
            src_port,
            dst_port,
            udp_checksum_ok,
        } => {
            r.text("transport", "IPv4-UDP")
                .num("src_port", src_port)
                .num("dst_port", dst_port)
                .push("udp_checksum_ok", Value::Bool(udp_checksum_ok));
        }
    }
    r.num("mh_offset", found.offset as u64);
    r
}

/// Checksum findings for a Mobility Header found in a packet (RFC 6275 §6.1.1 over IPv6;
/// RFC 5844 §4: zero Mobility Header checksum and the UDP checksum over IPv4).
pub fn packet_warnings(found: &FoundMh<'_>) -> Vec<String> {
    let mut w = Vec::new();
    let Ok(p) = MhPacket::new_checked(found.mh) else {
        return w;
    };
    match (found.transport, found.src, found.dst) {
        (Transport::Ipv6, IpAddr::V6(s), IpAddr::V6(d)) => {
            if let Err(e) = p.check_checksum(&s, &d) {
                w.push(e.to_string());
            }
        }
        (
            Transport::Ipv4Udp {
                udp_checksum_ok, ..
            },
            _,
            _,
        ) => {
            if p.checksum() != 0 {
                w.push(format!(
                    "at byte 4: Mobility Header checksum 0x{:04x} over UDP, RFC 5844 §4 wants 0",
                    p.checksum()
                ));
            }
            if !udp_checksum_ok {
                w.push("UDP checksum is wrong".into());
            }
        }
        _ => {}
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_of_timestamps() {
        assert_eq!(
            rfc3339(Timestamp((1_700_000_000u64 << 16) | 0x4000)),
            "2023-11-14T22:13:20.250000000Z"
        );
        assert_eq!(rfc3339(Timestamp(0)), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            rfc3339(Timestamp(951_782_400u64 << 16)),
            "2000-02-29T00:00:00.000000000Z"
        );
    }

    #[test]
    fn an_unknown_mh_type_keeps_its_data() {
        let r = decode_mh(&[59, 0, 99, 0, 0, 0, 0xaa, 0xbb]).unwrap();
        assert_eq!(
            crate::render::message_text(&r),
            "Unknown message (MH Type 99)\n  payload proto: 59\n  header len: 0\n  length: 8\n  \
             checksum: 0x0000\n  message data: aa:bb\n"
        );
        assert_eq!(r.get("mh_type"), Some(&named(99u8, None)));
    }

    #[test]
    fn named_values_serialise_with_number_and_name() {
        let mut r = Record::new();
        r.push(
            "status",
            named(154u8, Some("MAG_NOT_AUTHORIZED_FOR_PROXY_REG")),
        )
        .push("flags", Value::Flags(vec!["A", "P"]))
        .push("x", named(200u8, None));
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"status":{"value":154,"name":"MAG_NOT_AUTHORIZED_FOR_PROXY_REG"},"flags":["A","P"],"x":{"value":200,"name":null}}"#
        );
    }
}
