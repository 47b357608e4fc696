//! A route dump read straight from the kernel's bytes: the netlink messages of a
//! `RTM_GETROUTE` dump and, in each, only what [`KRoute`] holds. Pure code, no IO.
//!
//! A million seg6 routes parsed by `netlink-packet-route` build a million vectors of
//! attribute enums (and in each an encapsulation vector and a segment vector) only to be
//! read once; this reads the same fields in place and allocates nothing per route. The
//! tests hold it to `netlink-packet-route` plus [`KRoute::parse`] as the oracle.
//!
//! Layouts (all in host byte order, every header and attribute 4-byte aligned):
//!
//! ```text
//! struct nlmsghdr { u32 len; u16 type; u16 flags; u32 seq; u32 pid; }      (linux/netlink.h)
//! struct rtmsg { u8 family, dst_len, src_len, tos, table, protocol, scope, type; u32 flags; }
//! struct rtattr { u16 len; u16 type; } followed by the value       (linux/rtnetlink.h)
//! RTA_ENCAP of LWTUNNEL_ENCAP_SEG6, SEG6_IPTUNNEL_SRH:                  (linux/seg6_iptunnel.h)
//!   struct seg6_iptunnel_encap { int mode; struct ipv6_sr_hdr srh; }
//!   struct ipv6_sr_hdr { u8 nexthdr, hdrlen, type, segments_left, first_segment, flags;
//!                        u16 tag; struct in6_addr segments[]; }           (linux/seg6.h)
//! ```

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

use crate::msg::{KRoute, RouteKey, SEG6_MODE_ENCAP_RED, Via};

/// `NLMSG_ERROR`: an error (or, in a dump, the kernel refusing the request).
pub(crate) const NLMSG_ERROR: u16 = 2;
/// `NLMSG_DONE`: the end of a dump.
pub(crate) const NLMSG_DONE: u16 = 3;
/// `RTM_NEWROUTE`: one route of the dump.
pub(crate) const RTM_NEWROUTE: u16 = 24;
/// `RTM_GETROUTE`: the dump request.
pub(crate) const RTM_GETROUTE: u16 = 26;
/// `NLM_F_DUMP_INTR`: the dump saw a concurrent change and is inconsistent.
pub(crate) const NLM_F_DUMP_INTR: u16 = 0x10;

pub(crate) const NLMSG_HDR_LEN: usize = 16;
const RTMSG_LEN: usize = 12;
const RTATTR_HDR_LEN: usize = 4;
/// `NLA_TYPE_MASK`: the type without NLA_F_NESTED and NLA_F_NET_BYTEORDER.
const NLA_TYPE_MASK: u16 = 0x3fff;

const RTN_UNICAST: u8 = 1;
const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RTA_PRIORITY: u16 = 6;
const RTA_METRICS: u16 = 8;
const RTA_MULTIPATH: u16 = 9;
const RTA_TABLE: u16 = 15;
const RTA_VIA: u16 = 18;
const RTA_ENCAP_TYPE: u16 = 21;
const RTA_ENCAP: u16 = 22;
const RTA_NH_ID: u16 = 30;
const RTAX_MTU: u16 = 2;
const LWTUNNEL_ENCAP_SEG6: u16 = 5;
const LWTUNNEL_ENCAP_SEG6_LOCAL: u16 = 7;
const SEG6_IPTUNNEL_SRH: u16 = 1;
const SR6_FLAG1_HMAC: u8 = 1 << 3;
const SEG6_LOCAL_ACTION: u16 = 1;
const SEG6_LOCAL_SRH: u16 = 2;
const SEG6_LOCAL_TABLE: u16 = 3;
const SEG6_LOCAL_NH4: u16 = 4;
const SEG6_LOCAL_ACTION_END_DX4: u32 = 6;
const SEG6_LOCAL_ACTION_END_DT6: u32 = 7;
const AF_INET: u8 = 2;
pub(crate) const AF_INET6: u8 = 10;

fn align4(n: usize) -> usize {
    n.saturating_add(3) & !3
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    let x = b.get(at..at.checked_add(2)?)?;
    Some(u16::from_ne_bytes([x[0], x[1]]))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    let x = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_ne_bytes([x[0], x[1], x[2], x[3]]))
}

/// A u32 attribute value: exactly four bytes.
pub(crate) fn u32_value(v: &[u8]) -> Option<u32> {
    if v.len() == 4 { u32_at(v, 0) } else { None }
}

fn ipv6_value(v: &[u8]) -> Option<Ipv6Addr> {
    <[u8; 16]>::try_from(v).ok().map(Ipv6Addr::from)
}

/// Why a dump's bytes could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DumpError {
    /// A message header says more (or less) than the datagram holds.
    BadMessageLength { offset: usize },
    /// A route message whose fixed header or attributes do not add up.
    BadRoute { offset: usize },
}

impl std::fmt::Display for DumpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DumpError::BadMessageLength { offset } => {
                write!(f, "netlink message at byte {offset}: bad length")
            }
            DumpError::BadRoute { offset } => {
                write!(f, "route message at byte {offset}: malformed attributes")
            }
        }
    }
}

/// One netlink message of a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Message<'a> {
    pub kind: u16,
    pub flags: u16,
    pub seq: u32,
    /// Where it starts in the datagram (for errors).
    pub offset: usize,
    /// What follows the netlink header.
    pub payload: &'a [u8],
}

impl Message<'_> {
    /// The errno of an `NLMSG_ERROR` message (0 is an acknowledgement); `None` when it is
    /// too short to say.
    pub(crate) fn error_code(&self) -> Option<i32> {
        u32_at(self.payload, 0).map(|c| c as i32)
    }
}

/// The netlink messages of one datagram, in order; stops at the first that does not fit.
#[derive(Debug, Clone)]
pub(crate) struct Messages<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Messages<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf, at: 0 }
    }
}

impl<'a> Iterator for Messages<'a> {
    type Item = Result<Message<'a>, DumpError>;

    fn next(&mut self) -> Option<Self::Item> {
        let offset = self.at;
        let rest = self.buf.get(offset..)?;
        if rest.is_empty() {
            return None;
        }
        let bad = DumpError::BadMessageLength { offset };
        let (Some(len), Some(kind), Some(flags), Some(seq)) = (
            u32_at(rest, 0),
            u16_at(rest, 4),
            u16_at(rest, 6),
            u32_at(rest, 8),
        ) else {
            self.at = self.buf.len();
            return Some(Err(bad));
        };
        let len = len as usize;
        let Some(payload) = rest
            .get(NLMSG_HDR_LEN..len)
            .filter(|_| len >= NLMSG_HDR_LEN)
        else {
            self.at = self.buf.len();
            return Some(Err(bad));
        };
        self.at = offset.saturating_add(align4(len)).min(self.buf.len());
        Some(Ok(Message {
            kind,
            flags,
            seq,
            offset,
            payload,
        }))
    }
}

/// The attributes of a buffer as (type without flags, value); stops at the first that does
/// not fit, and says so.
pub(crate) struct Attributes<'a> {
    buf: &'a [u8],
    pub(crate) broken: bool,
}

impl<'a> Attributes<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf, broken: false }
    }
}

impl<'a> Iterator for Attributes<'a> {
    type Item = (u16, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        if self.buf.is_empty() {
            return None;
        }
        let (Some(len), Some(kind)) = (u16_at(self.buf, 0), u16_at(self.buf, 2)) else {
            self.broken = true;
            return None;
        };
        let len = usize::from(len);
        let Some(value) = self
            .buf
            .get(RTATTR_HDR_LEN..len)
            .filter(|_| len >= RTATTR_HDR_LEN)
        else {
            self.broken = true;
            return None;
        };
        self.buf = self.buf.get(align4(len)..).unwrap_or(&[]);
        Some((kind & NLA_TYPE_MASK, value))
    }
}

/// Reads one `RTM_NEWROUTE` body (`rtmsg` and attributes) as [`KRoute::parse`] reads the
/// `netlink-packet-route` message: `Ok(None)` for anything but an IPv6 or IPv4 unicast
/// route. An encapsulation or a metric this crate does not know leaves the route
/// [`Via::Unknown`], so a reconcile still replaces it; a body whose attributes do not add
/// up is an error.
pub(crate) fn parse_route(body: &[u8], offset: usize) -> Result<Option<KRoute>, DumpError> {
    let bad = DumpError::BadRoute { offset };
    let header = body.get(..RTMSG_LEN).ok_or(bad)?;
    let (family, dst_len, src_len, table, protocol, kind) = (
        header[0], header[1], header[2], header[4], header[5], header[7],
    );
    let v4 = match family {
        AF_INET6 => false,
        AF_INET => true,
        _ => return Ok(None),
    };
    if kind != RTN_UNICAST {
        return Ok(None);
    }
    let mut table = u32::from(table);
    let mut dst = if v4 {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    } else {
        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
    };
    let mut metric = 0;
    let mut oif = None;
    let mut mtu = None;
    let mut encap_type = 0;
    let mut encap: &[u8] = &[];
    let mut plain = src_len == 0;
    let mut nexthop = None;
    let mut attrs = Attributes::new(&body[RTMSG_LEN..]);
    for (t, v) in attrs.by_ref() {
        match t {
            RTA_TABLE => table = u32_value(v).ok_or(bad)?,
            RTA_DST => {
                dst = match (v4, v.len()) {
                    (false, 16) => IpAddr::V6(ipv6_value(v).ok_or(bad)?),
                    (true, 4) => IpAddr::V4(Ipv4Addr::from(u32_at(v, 0).ok_or(bad)?.to_ne_bytes())),
                    _ => return Err(bad),
                }
            }
            RTA_PRIORITY => metric = u32_value(v).ok_or(bad)?,
            RTA_OIF => oif = Some(u32_value(v).ok_or(bad)?),
            RTA_METRICS => {
                let mut metrics = Attributes::new(v);
                for (m, x) in metrics.by_ref() {
                    if m == RTAX_MTU {
                        mtu = Some(u32_value(x).ok_or(bad)?);
                    }
                }
                if metrics.broken {
                    return Err(bad);
                }
            }
            RTA_ENCAP_TYPE => encap_type = u16_at(v, 0).filter(|_| v.len() == 2).ok_or(bad)?,
            RTA_ENCAP => encap = v,
            RTA_NH_ID => nexthop = Some(u32_value(v).ok_or(bad)?),
            RTA_GATEWAY | RTA_MULTIPATH | RTA_VIA => plain = false,
            _ => {}
        }
    }
    if attrs.broken {
        return Err(bad);
    }
    let Ok(dst) = IpNet::new(dst, dst_len) else {
        return Ok(None);
    };
    // As `KRoute::parse`: the id is what a route through a nexthop object holds, whatever
    // a kernel in compatibility mode adds to describe it.
    let via = match nexthop {
        Some(id) if src_len == 0 => Via::Nexthop { id },
        Some(_) => Via::Unknown { oif },
        None => match (plain, encap_type, oif) {
            (true, LWTUNNEL_ENCAP_SEG6, Some(oif)) => seg6_peer(encap)
                .map(|peer| Via::Seg6 { peer, oif })
                .unwrap_or(Via::Unknown { oif: Some(oif) }),
            (true, LWTUNNEL_ENCAP_SEG6_LOCAL, Some(oif)) => match seg6local(encap) {
                Some(Seg6Local::Dt6(lookup)) => Via::EndDt6 { lookup, oif },
                Some(Seg6Local::Dx4Unspecified) => Via::EndDx4 { oif },
                None => Via::Unknown { oif: Some(oif) },
            },
            (true, 0, Some(oif)) => Via::Dev { oif },
            _ => Via::Unknown { oif },
        },
    };
    Ok(Some(KRoute {
        key: RouteKey { table, dst, metric },
        protocol,
        via,
        mtu,
    }))
}

/// The one segment of a reduced-mode seg6 encapsulation without HMAC; `None` for any other.
fn seg6_peer(encap: &[u8]) -> Option<Ipv6Addr> {
    let (_, srh) = Attributes::new(encap).find(|(t, _)| *t == SEG6_IPTUNNEL_SRH)?;
    let mode = u32_at(srh, 0)?;
    let hdrlen = *srh.get(5)?;
    let flags = *srh.get(9)?;
    // hdrlen counts 8-octet units after the first 8: one segment is 2.
    if mode != SEG6_MODE_ENCAP_RED || hdrlen != 2 || flags & SR6_FLAG1_HMAC != 0 {
        return None;
    }
    ipv6_value(srh.get(12..28)?)
}

enum Seg6Local {
    Dt6(u32),
    Dx4Unspecified,
}

fn seg6local(encap: &[u8]) -> Option<Seg6Local> {
    let (mut action, mut table, mut nh4) = (None, None, None);
    for (t, v) in Attributes::new(encap) {
        match t {
            SEG6_LOCAL_ACTION => action = Some(u32_value(v)?),
            SEG6_LOCAL_TABLE => table = Some(u32_value(v)?),
            SEG6_LOCAL_NH4 => nh4 = Some(<[u8; 4]>::try_from(v).ok()?),
            SEG6_LOCAL_SRH => return None,
            _ => {}
        }
    }
    match action? {
        SEG6_LOCAL_ACTION_END_DT6 => table.map(Seg6Local::Dt6),
        SEG6_LOCAL_ACTION_END_DX4 if nh4 == Some([0; 4]) => Some(Seg6Local::Dx4Unspecified),
        _ => None,
    }
}

/// The `RTM_GETROUTE` dump request for one family (`AF_INET6` or `AF_INET`), asking the
/// kernel (with `NETLINK_GET_STRICT_CHK` on the socket) for the routes of `protocol` only;
/// a kernel without strict checking ignores the filter and sends every route.
pub(crate) fn route_dump_request(
    ipv6: bool,
    protocol: u8,
    seq: u32,
) -> [u8; NLMSG_HDR_LEN + RTMSG_LEN] {
    const NLM_F_REQUEST: u16 = 1;
    const NLM_F_DUMP: u16 = 0x300;
    let mut b = [0u8; NLMSG_HDR_LEN + RTMSG_LEN];
    b[0..4].copy_from_slice(&((NLMSG_HDR_LEN + RTMSG_LEN) as u32).to_ne_bytes());
    b[4..6].copy_from_slice(&RTM_GETROUTE.to_ne_bytes());
    b[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    b[8..12].copy_from_slice(&seq.to_ne_bytes());
    b[NLMSG_HDR_LEN] = if ipv6 { AF_INET6 } else { AF_INET };
    b[NLMSG_HDR_LEN + 5] = protocol;
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_route::AddressFamily;
    use netlink_packet_route::route::{
        RouteAddress, RouteAttribute, RouteHeader, RouteLwEnCapType, RouteLwTunnelEncap,
        RouteMessage, RouteMetric, RouteNextHop, RoutePreference, RouteProtocol, RouteSeg6IpTunnel,
        RouteSeg6LocalTunnel, RouteType, Seg6Header, Seg6LocalAction, Seg6Mode,
    };
    use proptest::prelude::*;
    use rtnetlink::packet_core::{DefaultNla, Emitable, Parseable};

    fn emit(m: &RouteMessage) -> Vec<u8> {
        let mut b = vec![0u8; m.buffer_len()];
        m.emit(&mut b);
        b
    }

    /// What the datapath read before: `netlink-packet-route`, then [`KRoute::parse`].
    fn oracle(body: &[u8]) -> Option<KRoute> {
        KRoute::parse(&RouteMessage::parse(body).expect("netlink-packet-route parses it"))
    }

    /// How traffic leaves, in every shape the kernel may dump: the crate's own and others.
    #[derive(Debug, Clone)]
    enum Shape {
        Plain,
        Seg6 {
            mode: u32,
            segments: Vec<Ipv6Addr>,
            hmac: Option<u32>,
        },
        Seg6Local {
            action: u32,
            table: Option<u32>,
            nh4: Option<Ipv4Addr>,
        },
    }

    #[derive(Debug, Clone)]
    struct Generated {
        v4: bool,
        dst: u128,
        dst_len: u8,
        src_len: u8,
        header_table: u8,
        table: Option<u32>,
        protocol: u8,
        unicast: bool,
        metric: Option<u32>,
        oif: Option<u32>,
        shape: Shape,
        gateway: bool,
        multipath: bool,
        mtu: Option<u32>,
        window: Option<u32>,
        unknown: Option<(u16, Vec<u8>)>,
        preference: bool,
    }

    fn shape() -> impl Strategy<Value = Shape> {
        prop_oneof![
            Just(Shape::Plain),
            (
                prop_oneof![Just(3u32), 0u32..5],
                prop::collection::vec(any::<u128>().prop_map(Ipv6Addr::from), 1..4),
                prop::option::of(any::<u32>()),
            )
                .prop_map(|(mode, segments, hmac)| Shape::Seg6 {
                    mode,
                    segments,
                    hmac
                }),
            (
                prop_oneof![Just(7u32), Just(6u32), 1u32..17],
                prop::option::of(prop_oneof![Just(254u32), any::<u32>()]),
                prop::option::of(prop_oneof![
                    Just(Ipv4Addr::UNSPECIFIED),
                    any::<u32>().prop_map(Ipv4Addr::from)
                ]),
            )
                .prop_map(|(action, table, nh4)| Shape::Seg6Local {
                    action,
                    table,
                    nh4
                }),
        ]
    }

    fn generated() -> impl Strategy<Value = Generated> {
        (
            (
                any::<bool>(),
                any::<u128>(),
                any::<u8>(),
                prop_oneof![4 => Just(0u8), 1 => 1u8..129],
            ),
            (
                any::<u8>(),
                prop::option::of(any::<u32>()),
                prop_oneof![Just(135u8), any::<u8>()],
            ),
            (
                prop_oneof![5 => Just(true), 1 => Just(false)],
                prop::option::of(any::<u32>()),
            ),
            (prop::option::of(any::<u32>()), shape()),
            (
                prop_oneof![6 => Just(false), 1 => Just(true)],
                prop_oneof![6 => Just(false), 1 => Just(true)],
            ),
            (
                prop::option::of(any::<u32>()),
                prop::option::of(any::<u32>()),
            ),
            (
                prop::option::of((200u16..300, prop::collection::vec(any::<u8>(), 0..9))),
                any::<bool>(),
            ),
        )
            .prop_map(
                |(
                    (v4, dst, len, src_len),
                    (header_table, table, protocol),
                    (unicast, metric),
                    (oif, shape),
                    (gateway, multipath),
                    (mtu, window),
                    (unknown, preference),
                )| Generated {
                    v4,
                    dst,
                    dst_len: len % if v4 { 33 } else { 129 },
                    src_len,
                    header_table,
                    table,
                    protocol,
                    unicast,
                    metric,
                    oif,
                    shape,
                    gateway,
                    multipath,
                    mtu,
                    window,
                    unknown,
                    preference,
                },
            )
    }

    fn message(g: &Generated) -> RouteMessage {
        let mut m = RouteMessage::default();
        m.header = RouteHeader {
            address_family: if g.v4 {
                AddressFamily::Inet
            } else {
                AddressFamily::Inet6
            },
            destination_prefix_length: g.dst_len,
            source_prefix_length: g.src_len,
            tos: 0,
            table: g.header_table,
            protocol: RouteProtocol::from(g.protocol),
            scope: Default::default(),
            kind: if g.unicast {
                RouteType::Unicast
            } else {
                RouteType::BlackHole
            },
            flags: Default::default(),
        };
        let addr = |x: u128| {
            if g.v4 {
                RouteAddress::Inet(Ipv4Addr::from(x as u32))
            } else {
                RouteAddress::Inet6(Ipv6Addr::from(x))
            }
        };
        let a = &mut m.attributes;
        if let Some(t) = g.table {
            a.push(RouteAttribute::Table(t));
        }
        if g.dst_len > 0 {
            a.push(RouteAttribute::Destination(addr(g.dst)));
        }
        if g.preference {
            a.push(RouteAttribute::Preference(RoutePreference::High));
        }
        if let Some(p) = g.metric {
            a.push(RouteAttribute::Priority(p));
        }
        if let Some((kind, value)) = &g.unknown {
            a.push(RouteAttribute::Other(DefaultNla::new(*kind, value.clone())));
        }
        match &g.shape {
            Shape::Plain => {}
            Shape::Seg6 {
                mode,
                segments,
                hmac,
            } => {
                let mut h = Seg6Header::default();
                h.mode = Seg6Mode::from(*mode);
                h.segments = segments.clone();
                h.hmac = *hmac;
                a.push(RouteAttribute::Encap(vec![RouteLwTunnelEncap::Seg6(
                    RouteSeg6IpTunnel::Seg6(h),
                )]));
                a.push(RouteAttribute::EncapType(RouteLwEnCapType::Seg6));
            }
            Shape::Seg6Local { action, table, nh4 } => {
                a.push(RouteAttribute::EncapType(RouteLwEnCapType::Seg6Local));
                let mut e = vec![RouteLwTunnelEncap::Seg6Local(RouteSeg6LocalTunnel::Action(
                    Seg6LocalAction::from(*action),
                ))];
                if let Some(t) = table {
                    e.push(RouteLwTunnelEncap::Seg6Local(RouteSeg6LocalTunnel::Table(
                        *t,
                    )));
                }
                if let Some(n) = nh4 {
                    e.push(RouteLwTunnelEncap::Seg6Local(RouteSeg6LocalTunnel::Nh4(*n)));
                }
                a.push(RouteAttribute::Encap(e));
            }
        }
        if let Some(o) = g.oif {
            a.push(RouteAttribute::Oif(o));
        }
        if g.gateway {
            a.push(RouteAttribute::Gateway(addr(g.dst ^ 1)));
        }
        if g.multipath {
            let mut hop = RouteNextHop::default();
            hop.interface_index = 3;
            hop.attributes
                .push(RouteAttribute::Gateway(addr(g.dst ^ 2)));
            a.push(RouteAttribute::MultiPath(vec![hop.clone(), hop]));
        }
        let mut metrics = Vec::new();
        if let Some(w) = g.window {
            metrics.push(RouteMetric::Window(w));
        }
        if let Some(mtu) = g.mtu {
            metrics.push(RouteMetric::Mtu(mtu));
        }
        if !metrics.is_empty() {
            a.push(RouteAttribute::Metrics(metrics));
        }
        m
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        /// Every generated route (the crate's own shapes, foreign ones, IPv4, multipath,
        /// unknown attributes and metrics) reads as `netlink-packet-route` reads it.
        #[test]
        fn reads_routes_like_netlink_packet_route(g in generated()) {
            let body = emit(&message(&g));
            prop_assert_eq!(parse_route(&body, 0), Ok(oracle(&body)));
        }

        /// Cut or damaged, a message is an error or a route, never a panic; the datagram
        /// iterator likewise.
        #[test]
        fn damaged_bytes_never_panic(
            g in generated(),
            cut in any::<prop::sample::Index>(),
            flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        ) {
            let mut body = emit(&message(&g));
            for (at, x) in flips {
                let i = at.index(body.len());
                body[i] ^= x;
            }
            let cut = cut.index(body.len() + 1);
            let _ = parse_route(&body[..cut], 0);
            let mut datagram = Vec::new();
            datagram.extend_from_slice(&((16 + body.len()) as u32).to_ne_bytes());
            datagram.extend_from_slice(&RTM_NEWROUTE.to_ne_bytes());
            datagram.extend_from_slice(&[0; 10]);
            datagram.extend_from_slice(&body);
            for m in Messages::new(&datagram[..cut.min(datagram.len())]).flatten() {
                let _ = parse_route(m.payload, m.offset);
            }
        }

        #[test]
        fn random_datagrams_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            for m in Messages::new(&bytes).flatten() {
                let _ = parse_route(m.payload, m.offset);
                let _ = m.error_code();
            }
            let _ = parse_route(&bytes, 0);
        }
    }

    /// The crate's own routes, as it sends them, read back to themselves.
    #[test]
    fn own_routes_round_trip() {
        let peer: Ipv6Addr = "2001:db8::2".parse().unwrap();
        let dst: ipnet::Ipv6Net = "2001:db8:100::/64".parse().unwrap();
        let v4: ipnet::Ipv4Net = "198.51.100.7/32".parse().unwrap();
        for r in [
            KRoute {
                key: RouteKey {
                    metric: 1000,
                    ..RouteKey::new(254, dst)
                },
                protocol: 135,
                via: Via::Seg6 { peer, oif: 7 },
                mtu: Some(1460),
            },
            KRoute {
                key: RouteKey {
                    metric: 1000,
                    ..RouteKey::new(254, v4)
                },
                protocol: 135,
                via: Via::Seg6 { peer, oif: 7 },
                mtu: Some(1460),
            },
            KRoute {
                key: RouteKey::new(13500, ipnet::Ipv6Net::from(peer)),
                protocol: 135,
                via: Via::EndDt6 {
                    lookup: 254,
                    oif: 3,
                },
                mtu: None,
            },
            KRoute {
                key: RouteKey::new(13516, ipnet::Ipv6Net::from(peer)),
                protocol: 135,
                via: Via::EndDx4 { oif: 3 },
                mtu: None,
            },
            KRoute {
                key: RouteKey::new(254, dst),
                protocol: 135,
                via: Via::Dev { oif: 5 },
                mtu: None,
            },
        ] {
            let body = emit(&r.new_message());
            assert_eq!(parse_route(&body, 0), Ok(Some(r.clone())), "{r}");
        }
    }

    #[test]
    fn datagram_messages_and_their_errors() {
        let r = KRoute {
            key: RouteKey::new(254, "2001:db8:1::/64".parse::<ipnet::Ipv6Net>().unwrap()),
            protocol: 135,
            via: Via::Dev { oif: 5 },
            mtu: None,
        };
        let body = emit(&r.new_message());
        let mut d = Vec::new();
        let mut push = |kind: u16, flags: u16, payload: &[u8]| {
            d.extend_from_slice(&((16 + payload.len()) as u32).to_ne_bytes());
            d.extend_from_slice(&kind.to_ne_bytes());
            d.extend_from_slice(&flags.to_ne_bytes());
            d.extend_from_slice(&7u32.to_ne_bytes());
            d.extend_from_slice(&0u32.to_ne_bytes());
            d.extend_from_slice(payload);
            while d.len() % 4 != 0 {
                d.push(0);
            }
        };
        push(RTM_NEWROUTE, NLM_F_DUMP_INTR, &body);
        push(NLMSG_DONE, 0, &(-16i32).to_ne_bytes());
        let got: Vec<_> = Messages::new(&d).collect::<Result<_, _>>().unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].flags, NLM_F_DUMP_INTR);
        assert_eq!(got[0].seq, 7);
        assert_eq!(parse_route(got[0].payload, got[0].offset), Ok(Some(r)));
        assert_eq!(got[1].error_code(), Some(-16));
        // A length beyond the datagram is an error, and the end.
        let mut bad = d.clone();
        bad[0] = 0xff;
        let mut it = Messages::new(&bad);
        assert_eq!(
            it.next(),
            Some(Err(DumpError::BadMessageLength { offset: 0 }))
        );
        assert_eq!(it.next(), None);
        // Attributes that run past the body: an error naming the message.
        let mut cut = body.clone();
        cut.truncate(body.len() - 2);
        assert_eq!(
            parse_route(&cut, 40),
            Err(DumpError::BadRoute { offset: 40 })
        );
    }

    #[test]
    fn request_asks_for_one_family_and_protocol() {
        let b = route_dump_request(true, 135, 9);
        assert_eq!(u32_at(&b, 0), Some(28));
        assert_eq!(u16_at(&b, 4), Some(RTM_GETROUTE));
        assert_eq!(u16_at(&b, 6), Some(0x301));
        assert_eq!(u32_at(&b, 8), Some(9));
        assert_eq!(&b[16..28], &[AF_INET6, 0, 0, 0, 0, 135, 0, 0, 0, 0, 0, 0]);
        assert_eq!(route_dump_request(false, 0, 1)[16], AF_INET);
    }
}
