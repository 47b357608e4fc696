//! The kernel objects the backends program, as plain values, and the netlink messages that
//! add, delete and dump them. Pure code: no sockets; every builder is unit tested here.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use netlink_packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage, AddressProtocol,
    AddressScope,
};
use netlink_packet_route::link::{
    InfoData, InfoIpTunnel, InfoKind, Ip6TunnelFlags, LinkAttribute, LinkFlags, LinkInfo,
    LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteLwEnCapType, RouteLwTunnelEncap, RouteMessage,
    RouteMetric, RouteProtocol, RouteScope, RouteSeg6IpTunnel, RouteSeg6LocalTunnel, RouteType,
    Seg6Header, Seg6LocalAction, Seg6Mode,
};
use netlink_packet_route::rule::{RuleAction, RuleAttribute, RuleMessage};
use netlink_packet_route::{AddressFamily, IpProtocol, RouteNetlinkMessage};

/// The main routing table (`RT_TABLE_MAIN`).
pub const MAIN_TABLE: u32 = 254;
/// The local routing table (`RT_TABLE_LOCAL`).
pub const LOCAL_TABLE: u32 = 255;
/// The metric the kernel gives an IPv6 route added without one (`IP6_RT_PRIO_USER`).
pub(crate) const DEFAULT_METRIC: u32 = 1024;
/// `SEG6_IPTUN_MODE_ENCAP_RED` (include/uapi/linux/seg6_iptunnel.h): with one segment the
/// kernel writes an outer IPv6 header with Next Header 41 and no routing header, which is
/// RFC 2473 encapsulation on the wire.
pub(crate) const SEG6_MODE_ENCAP_RED: u32 = 3;
/// IPv6-in-IPv6 (RFC 2473 §3).
pub(crate) const IPPROTO_IPV6: u8 = 41;
/// IPv4-in-IPv6 (RFC 2473 §3, RFC 5844 §3.1.3): the outer header's Next Header for an IPv4
/// home address's packets.
pub(crate) const IPPROTO_IPIP: u8 = 4;
/// ip6tnl mode `any` (IFLA_IPTUN_PROTO 0): the link carries IPv6 and IPv4 (RFC 5844
/// "IPv4-or-IPv6-over-IPv6").
pub(crate) const IP6TNL_PROTO_ANY: u8 = 0;
/// `RTPROT_KERNEL`, the protocol of the rules the kernel makes at boot.
pub(crate) const RTPROT_KERNEL: u8 = 2;
/// Hop limit of the outer header of ip6tnl links (`IPV6_DEFAULT_TNL_HOPLIMIT`).
pub(crate) const TUNNEL_HOP_LIMIT: u8 = 64;

/// How a route forwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Via {
    /// seg6 reduced encapsulation with the single segment `peer`: RFC 2473 to `peer`.
    Seg6 { peer: Ipv6Addr, oif: u32 },
    /// seg6local End.DT6: decapsulate, look the inner packet up in `lookup`.
    EndDt6 { lookup: u32, oif: u32 },
    /// seg6local End.DX4 with next hop 0.0.0.0: decapsulate IPv4-in-IPv6 and route the
    /// inner IPv4 packet by its own destination.
    EndDx4 { oif: u32 },
    /// On link (or into an ip6tnl link).
    Dev { oif: u32 },
    /// Through the nexthop object `id` (a tunnel link's, [`crate::nexthop`]).
    Nexthop { id: u32 },
    /// A shape this crate never makes (found in a dump).
    Unknown { oif: Option<u32> },
}

impl Via {
    fn oif(&self) -> Option<u32> {
        match *self {
            Via::Seg6 { oif, .. }
            | Via::EndDt6 { oif, .. }
            | Via::EndDx4 { oif }
            | Via::Dev { oif } => Some(oif),
            Via::Unknown { oif } => oif,
            Via::Nexthop { .. } => None,
        }
    }
}

/// What identifies a route to the kernel (a replace swaps the route with this key). The
/// family is the destination's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct RouteKey {
    pub table: u32,
    pub dst: IpNet,
    pub metric: u32,
}

impl RouteKey {
    pub(crate) fn new(table: u32, dst: impl Into<IpNet>) -> Self {
        Self {
            table,
            dst: dst.into().trunc(),
            metric: DEFAULT_METRIC,
        }
    }
}

fn family_of(net: &IpNet) -> AddressFamily {
    match net {
        IpNet::V4(_) => AddressFamily::Inet,
        IpNet::V6(_) => AddressFamily::Inet6,
    }
}

/// An IPv6 or IPv4 unicast route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KRoute {
    pub key: RouteKey,
    pub protocol: u8,
    pub via: Via,
    pub mtu: Option<u32>,
}

fn route_skeleton(key: &RouteKey, protocol: u8) -> RouteMessage {
    let mut m = RouteMessage::default();
    m.header = RouteHeader {
        address_family: family_of(&key.dst),
        destination_prefix_length: key.dst.prefix_len(),
        source_prefix_length: 0,
        tos: 0,
        // Tables above 255 only fit RTA_TABLE; the header then says RT_TABLE_UNSPEC.
        table: u8::try_from(key.table).unwrap_or(RouteHeader::RT_TABLE_UNSPEC),
        protocol: RouteProtocol::from(protocol),
        scope: RouteScope::Universe,
        kind: RouteType::Unicast,
        flags: Default::default(),
    };
    if key.dst.prefix_len() > 0 {
        m.attributes
            .push(RouteAttribute::Destination(RouteAddress::from(
                key.dst.network(),
            )));
    }
    m.attributes.push(RouteAttribute::Table(key.table));
    m.attributes.push(RouteAttribute::Priority(key.metric));
    m
}

/// The `encap seg6 mode encap.red segs PEER` attribute pair.
pub(crate) fn seg6_encap_red(peer: Ipv6Addr) -> [RouteAttribute; 2] {
    let mut srh = Seg6Header::default();
    srh.mode = Seg6Mode::Other(SEG6_MODE_ENCAP_RED);
    srh.segments = vec![peer];
    [
        RouteAttribute::EncapType(RouteLwEnCapType::Seg6),
        RouteAttribute::Encap(vec![RouteLwTunnelEncap::Seg6(RouteSeg6IpTunnel::Seg6(srh))]),
    ]
}

impl KRoute {
    /// The RTM_NEWROUTE body (sent with NLM_F_CREATE | NLM_F_REPLACE).
    pub(crate) fn new_message(&self) -> RouteMessage {
        let mut m = route_skeleton(&self.key, self.protocol);
        match self.via {
            Via::Seg6 { peer, oif } => {
                m.attributes.extend(seg6_encap_red(peer));
                m.attributes.push(RouteAttribute::Oif(oif));
            }
            Via::EndDt6 { lookup, oif } => {
                m.attributes
                    .push(RouteAttribute::EncapType(RouteLwEnCapType::Seg6Local));
                m.attributes.push(RouteAttribute::Encap(vec![
                    RouteLwTunnelEncap::Seg6Local(RouteSeg6LocalTunnel::Action(
                        Seg6LocalAction::EndDt6,
                    )),
                    RouteLwTunnelEncap::Seg6Local(RouteSeg6LocalTunnel::Table(lookup)),
                ]));
                m.attributes.push(RouteAttribute::Oif(oif));
            }
            Via::EndDx4 { oif } => {
                m.attributes
                    .push(RouteAttribute::EncapType(RouteLwEnCapType::Seg6Local));
                m.attributes.push(RouteAttribute::Encap(vec![
                    RouteLwTunnelEncap::Seg6Local(RouteSeg6LocalTunnel::Action(
                        Seg6LocalAction::EndDx4,
                    )),
                    RouteLwTunnelEncap::Seg6Local(RouteSeg6LocalTunnel::Nh4(Ipv4Addr::UNSPECIFIED)),
                ]));
                m.attributes.push(RouteAttribute::Oif(oif));
            }
            Via::Dev { oif } => m.attributes.push(RouteAttribute::Oif(oif)),
            Via::Nexthop { id } => m.attributes.push(RouteAttribute::NhId(id)),
            Via::Unknown { oif } => {
                if let Some(oif) = oif {
                    m.attributes.push(RouteAttribute::Oif(oif));
                }
            }
        }
        if let Some(mtu) = self.mtu {
            m.attributes
                .push(RouteAttribute::Metrics(vec![RouteMetric::Mtu(mtu)]));
        }
        m
    }

    /// The RTM_DELROUTE body: the key, the protocol (the kernel deletes only a route of that
    /// protocol) and the output link when known (so a tunnel route and an on-link route of
    /// the same prefix are told apart).
    pub(crate) fn del_message(&self) -> RouteMessage {
        let mut m = route_skeleton(&self.key, self.protocol);
        m.header.scope = RouteScope::NoWhere;
        if let Some(oif) = self.via.oif() {
            m.attributes.push(RouteAttribute::Oif(oif));
        }
        m
    }

    /// Reads a dumped route; `None` for anything but an IPv6 or IPv4 unicast route.
    pub(crate) fn parse(m: &RouteMessage) -> Option<KRoute> {
        let v4 = match m.header.address_family {
            AddressFamily::Inet6 => false,
            AddressFamily::Inet => true,
            _ => return None,
        };
        if m.header.kind != RouteType::Unicast {
            return None;
        }
        let mut table = u32::from(m.header.table);
        let mut dst = if v4 {
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        } else {
            IpAddr::V6(Ipv6Addr::UNSPECIFIED)
        };
        let mut metric = 0;
        let mut oif = None;
        let mut mtu = None;
        let mut encap_type = RouteLwEnCapType::None;
        let mut encap: &[RouteLwTunnelEncap] = &[];
        let mut plain = m.header.source_prefix_length == 0;
        let mut nexthop = None;
        for a in &m.attributes {
            match a {
                RouteAttribute::Table(t) => table = *t,
                RouteAttribute::Destination(RouteAddress::Inet6(d)) if !v4 => dst = IpAddr::V6(*d),
                RouteAttribute::Destination(RouteAddress::Inet(d)) if v4 => dst = IpAddr::V4(*d),
                RouteAttribute::Priority(p) => metric = *p,
                RouteAttribute::Oif(o) => oif = Some(*o),
                RouteAttribute::Metrics(ms) => {
                    for x in ms {
                        if let RouteMetric::Mtu(v) = x {
                            mtu = Some(*v);
                        }
                    }
                }
                RouteAttribute::EncapType(t) => encap_type = *t,
                RouteAttribute::Encap(e) => encap = e,
                RouteAttribute::NhId(id) => nexthop = Some(*id),
                RouteAttribute::Gateway(_)
                | RouteAttribute::MultiPath(_)
                | RouteAttribute::Via(_) => plain = false,
                _ => {}
            }
        }
        let dst = IpNet::new(dst, m.header.destination_prefix_length).ok()?;
        // A kernel in nexthop compatibility mode also describes the nexthop object with the
        // attributes of a route's own nexthop (RTA_OIF, RTA_GATEWAY, RTA_MULTIPATH): the id
        // is what the route holds.
        let via = match nexthop {
            Some(id) if m.header.source_prefix_length == 0 => Via::Nexthop { id },
            Some(_) => Via::Unknown { oif },
            None => match (plain, encap_type, oif) {
                (true, RouteLwEnCapType::Seg6, Some(oif)) => seg6_peer(encap)
                    .map(|peer| Via::Seg6 { peer, oif })
                    .unwrap_or(Via::Unknown { oif: Some(oif) }),
                (true, RouteLwEnCapType::Seg6Local, Some(oif)) => match seg6local(encap) {
                    Some(Seg6Local::Dt6(lookup)) => Via::EndDt6 { lookup, oif },
                    Some(Seg6Local::Dx4Unspecified) => Via::EndDx4 { oif },
                    None => Via::Unknown { oif: Some(oif) },
                },
                (true, RouteLwEnCapType::None, Some(oif)) => Via::Dev { oif },
                _ => Via::Unknown { oif },
            },
        };
        Some(KRoute {
            key: RouteKey { table, dst, metric },
            protocol: u8::from(m.header.protocol),
            via,
            mtu,
        })
    }
}

fn seg6_peer(encap: &[RouteLwTunnelEncap]) -> Option<Ipv6Addr> {
    encap.iter().find_map(|e| match e {
        RouteLwTunnelEncap::Seg6(RouteSeg6IpTunnel::Seg6(h))
            if h.mode == Seg6Mode::Other(SEG6_MODE_ENCAP_RED)
                && h.segments.len() == 1
                && h.hmac.is_none() =>
        {
            h.segments.first().copied()
        }
        _ => None,
    })
}

/// The seg6local behaviours this crate makes.
enum Seg6Local {
    /// End.DT6 and its lookup table.
    Dt6(u32),
    /// End.DX4 with next hop 0.0.0.0.
    Dx4Unspecified,
}

fn seg6local(encap: &[RouteLwTunnelEncap]) -> Option<Seg6Local> {
    let mut action = None;
    let mut table = None;
    let mut nh4 = None;
    for e in encap {
        match e {
            RouteLwTunnelEncap::Seg6Local(RouteSeg6LocalTunnel::Action(a)) => action = Some(*a),
            RouteLwTunnelEncap::Seg6Local(RouteSeg6LocalTunnel::Table(t)) => table = Some(*t),
            RouteLwTunnelEncap::Seg6Local(RouteSeg6LocalTunnel::Nh4(a)) => nh4 = Some(*a),
            RouteLwTunnelEncap::Seg6Local(RouteSeg6LocalTunnel::Srh(_)) => return None,
            _ => {}
        }
    }
    match action? {
        Seg6LocalAction::EndDt6 => table.map(Seg6Local::Dt6),
        Seg6LocalAction::EndDx4 if nh4 == Some(Ipv4Addr::UNSPECIFIED) => {
            Some(Seg6Local::Dx4Unspecified)
        }
        _ => None,
    }
}

/// The address family of a rule (`ip -6 rule` or `ip -4 rule`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Family {
    V6,
    V4,
}

/// A policy routing rule that looks a table up (`ip -6 rule ... lookup TABLE`, or `ip -4`).
/// `src` and `dst` are of the rule's family.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct KRule {
    pub family: Family,
    pub priority: u32,
    pub src: Option<IpNet>,
    pub dst: Option<IpNet>,
    pub ipproto: Option<u8>,
    /// The link packets must arrive by (`iif NAME`).
    pub iif: Option<String>,
    pub table: u32,
    pub protocol: u8,
}

impl KRule {
    /// The RTM_NEWRULE / RTM_DELRULE body (a delete matches every attribute given).
    pub(crate) fn message(&self) -> RuleMessage {
        let mut m = RuleMessage::default();
        m.header.family = match self.family {
            Family::V6 => AddressFamily::Inet6,
            Family::V4 => AddressFamily::Inet,
        };
        m.header.action = RuleAction::ToTable;
        m.header.table = u8::try_from(self.table).unwrap_or(0);
        m.attributes.push(RuleAttribute::Priority(self.priority));
        if let Some(src) = self.src {
            m.header.src_len = src.prefix_len();
            m.attributes.push(RuleAttribute::Source(src.network()));
        }
        if let Some(dst) = self.dst {
            m.header.dst_len = dst.prefix_len();
            m.attributes.push(RuleAttribute::Destination(dst.network()));
        }
        if let Some(p) = self.ipproto {
            m.attributes
                .push(RuleAttribute::IpProtocol(IpProtocol::from(i32::from(p))));
        }
        if let Some(iif) = &self.iif {
            m.attributes.push(RuleAttribute::Iifname(iif.clone()));
        }
        m.attributes.push(RuleAttribute::Table(self.table));
        m.attributes
            .push(RuleAttribute::Protocol(RouteProtocol::from(self.protocol)));
        m
    }

    /// Reads a dumped rule; `None` for anything but an IPv6 or IPv4 `lookup` rule.
    pub(crate) fn parse(m: &RuleMessage) -> Option<KRule> {
        let family = match m.header.family {
            AddressFamily::Inet6 => Family::V6,
            AddressFamily::Inet => Family::V4,
            _ => return None,
        };
        if m.header.action != RuleAction::ToTable {
            return None;
        }
        let of_family = |a: &IpAddr| {
            matches!(
                (family, a),
                (Family::V6, IpAddr::V6(_)) | (Family::V4, IpAddr::V4(_))
            )
        };
        let mut r = KRule {
            family,
            priority: 0,
            src: None,
            dst: None,
            ipproto: None,
            iif: None,
            table: u32::from(m.header.table),
            protocol: 0,
        };
        for a in &m.attributes {
            match a {
                RuleAttribute::Priority(p) => r.priority = *p,
                RuleAttribute::Source(s) if of_family(s) => {
                    r.src = IpNet::new(*s, m.header.src_len).ok();
                }
                RuleAttribute::Destination(d) if of_family(d) => {
                    r.dst = IpNet::new(*d, m.header.dst_len).ok();
                }
                RuleAttribute::IpProtocol(p) => r.ipproto = Some(u8::from(*p)),
                RuleAttribute::Iifname(n) => r.iif = Some(n.clone()),
                RuleAttribute::Table(t) => r.table = *t,
                RuleAttribute::Protocol(p) => r.protocol = u8::from(*p),
                _ => {}
            }
        }
        Some(r)
    }

    /// The kernel's own IPv6 `0: from all lookup local`.
    pub(crate) fn boot_local() -> KRule {
        KRule {
            family: Family::V6,
            priority: 0,
            src: None,
            dst: None,
            ipproto: None,
            iif: None,
            table: LOCAL_TABLE,
            protocol: RTPROT_KERNEL,
        }
    }

    /// Same selectors and table, whatever the protocol.
    pub(crate) fn same_match(&self, other: &KRule) -> bool {
        KRule {
            protocol: other.protocol,
            ..self.clone()
        } == *other
    }
}

/// An IPv6 address on a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct KAddr {
    pub ifindex: u32,
    pub addr: Ipv6Addr,
    pub prefix_len: u8,
}

impl KAddr {
    /// RTM_NEWADDR body: no duplicate address detection, marked with `protocol` (IFA_PROTO).
    pub(crate) fn new_message(&self, protocol: Option<u8>) -> AddressMessage {
        let mut m = self.del_message();
        m.header.flags = AddressHeaderFlags::Nodad;
        m.attributes
            .push(AddressAttribute::Flags(AddressFlags::Nodad));
        if let Some(p) = protocol {
            m.attributes
                .push(AddressAttribute::Protocol(AddressProtocol::from(p)));
        }
        m
    }

    /// RTM_DELADDR body.
    pub(crate) fn del_message(&self) -> AddressMessage {
        let mut m = AddressMessage::default();
        m.header.family = AddressFamily::Inet6;
        m.header.prefix_len = self.prefix_len;
        m.header.index = self.ifindex;
        m.header.scope = if self.addr.is_unicast_link_local() {
            AddressScope::Link
        } else {
            AddressScope::Universe
        };
        m.attributes
            .push(AddressAttribute::Address(IpAddr::V6(self.addr)));
        m
    }

    /// Reads a dumped IPv6 address and its IFA_PROTO.
    pub(crate) fn parse(m: &AddressMessage) -> Option<(KAddr, Option<u8>)> {
        if m.header.family != AddressFamily::Inet6 {
            return None;
        }
        let mut addr = None;
        let mut proto = None;
        for a in &m.attributes {
            match a {
                AddressAttribute::Address(IpAddr::V6(x)) => addr = Some(*x),
                AddressAttribute::Local(IpAddr::V6(x)) => addr = addr.or(Some(*x)),
                AddressAttribute::Protocol(p) => proto = Some(u8::from(*p)),
                _ => {}
            }
        }
        Some((
            KAddr {
                ifindex: m.header.index,
                addr: addr?,
                prefix_len: m.header.prefix_len,
            },
            proto,
        ))
    }
}

/// An ip6tnl link carrying IPv6 and IPv4 in IPv6 (RFC 2473, RFC 5844 §3.1.2.2) from `local`
/// to `remote`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KTunnel {
    pub name: String,
    /// The transport link the outer packets leave by.
    pub underlay: u32,
    pub local: Ipv6Addr,
    pub remote: Ipv6Addr,
    pub mtu: u32,
}

impl KTunnel {
    /// RTM_NEWLINK body, like `ip link add NAME up mtu MTU type ip6tnl mode any local L
    /// remote R dev UNDERLAY hoplimit 64 encaplimit none`. Mode `any` carries IPv6 (Next
    /// Header 41) and IPv4 (Next Header 4) home address traffic alike. No Tunnel
    /// Encapsulation Limit option (RFC 2473 §5.1) is added, so the outer header's Next Header
    /// is 41 or 4 exactly like the seg6 backend's and a peer of either kind decapsulates it.
    pub(crate) fn new_message(&self) -> LinkMessage {
        let mut m = LinkMessage::default();
        m.header.flags = LinkFlags::Up;
        m.header.change_mask = LinkFlags::Up;
        m.attributes.push(LinkAttribute::IfName(self.name.clone()));
        m.attributes.push(LinkAttribute::Mtu(self.mtu));
        m.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Ip6Tnl),
            LinkInfo::Data(InfoData::IpTunnel(vec![
                InfoIpTunnel::Link(self.underlay),
                InfoIpTunnel::Local(IpAddr::V6(self.local)),
                InfoIpTunnel::Remote(IpAddr::V6(self.remote)),
                InfoIpTunnel::Ttl(TUNNEL_HOP_LIMIT),
                InfoIpTunnel::Ipv6Flags(Ip6TunnelFlags::IgnEncapLimit),
                InfoIpTunnel::Protocol(IpProtocol::from(i32::from(IP6TNL_PROTO_ANY))),
            ])),
        ]));
        m
    }
}

/// What a link dump says about one link.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct KLink {
    pub index: u32,
    pub name: String,
    pub mtu: u32,
    pub mac: Vec<u8>,
    pub up: bool,
    /// For an ip6tnl link: underlay, local, remote.
    pub ip6tnl: Option<(u32, Ipv6Addr, Ipv6Addr)>,
    /// For an ip6tnl link: what it carries (IFLA_IPTUN_PROTO: 41 IPv6 only, 0 both).
    pub ip6tnl_proto: Option<u8>,
    /// For a device of the userspace tunnel: local and remote end, from its alias.
    pub tun: Option<(Ipv6Addr, Ipv6Addr)>,
    /// For a veth: the link index of its other end (IFLA_LINK), when that is in the same
    /// namespace.
    pub veth_peer: Option<u32>,
    /// Whether the link resolves no neighbours (IFF_NOARP).
    pub noarp: bool,
}

impl KLink {
    pub(crate) fn parse(m: &LinkMessage) -> KLink {
        let mut l = KLink {
            index: m.header.index,
            up: m.header.flags.contains(LinkFlags::Up),
            noarp: m.header.flags.contains(LinkFlags::Noarp),
            ..KLink::default()
        };
        let (mut veth, mut other_end, mut other_netns) = (false, None, false);
        for a in &m.attributes {
            match a {
                LinkAttribute::IfName(n) => l.name = n.clone(),
                LinkAttribute::Mtu(v) => l.mtu = *v,
                LinkAttribute::Address(mac) => l.mac = mac.clone(),
                LinkAttribute::IfAlias(a) => l.tun = crate::tun::parse_alias(a),
                LinkAttribute::LinkInfo(infos) => {
                    l.ip6tnl = ip6tnl_info(infos);
                    l.ip6tnl_proto = ip6tnl_proto(infos);
                    veth = infos
                        .iter()
                        .any(|i| matches!(i, LinkInfo::Kind(InfoKind::Veth)));
                }
                LinkAttribute::Link(i) => other_end = Some(*i),
                LinkAttribute::LinkNetNsId(_) => other_netns = true,
                _ => {}
            }
        }
        l.veth_peer = other_end.filter(|_| veth && !other_netns);
        l
    }
}

fn ip6tnl_info(infos: &[LinkInfo]) -> Option<(u32, Ipv6Addr, Ipv6Addr)> {
    if !infos
        .iter()
        .any(|i| matches!(i, LinkInfo::Kind(InfoKind::Ip6Tnl)))
    {
        return None;
    }
    let (mut link, mut local, mut remote) = (0, Ipv6Addr::UNSPECIFIED, Ipv6Addr::UNSPECIFIED);
    for i in infos {
        if let LinkInfo::Data(InfoData::IpTunnel(attrs)) = i {
            for a in attrs {
                match a {
                    InfoIpTunnel::Link(x) => link = *x,
                    InfoIpTunnel::Local(IpAddr::V6(x)) => local = *x,
                    InfoIpTunnel::Remote(IpAddr::V6(x)) => remote = *x,
                    _ => {}
                }
            }
        }
    }
    Some((link, local, remote))
}

fn ip6tnl_proto(infos: &[LinkInfo]) -> Option<u8> {
    infos.iter().find_map(|i| match i {
        LinkInfo::Data(InfoData::IpTunnel(attrs)) => attrs.iter().find_map(|a| match a {
            InfoIpTunnel::Protocol(p) => Some(u8::from(*p)),
            _ => None,
        }),
        _ => None,
    })
}

/// RTM_SETLINK body changing the link-layer address of `index`.
pub(crate) fn set_mac_message(index: u32, mac: [u8; 6]) -> LinkMessage {
    let mut m = LinkMessage::default();
    m.header.index = index;
    m.attributes.push(LinkAttribute::Address(mac.to_vec()));
    m
}

/// RTM_SETLINK body for the up flag and/or the MTU of `index`.
pub(crate) fn set_link_message(index: u32, up: Option<bool>, mtu: Option<u32>) -> LinkMessage {
    let mut m = LinkMessage::default();
    m.header.index = index;
    if let Some(up) = up {
        m.header.change_mask = LinkFlags::Up;
        if up {
            m.header.flags = LinkFlags::Up;
        }
    }
    if let Some(mtu) = mtu {
        m.attributes.push(LinkAttribute::Mtu(mtu));
    }
    m
}

/// IPV4_DEVCONF_RP_FILTER (<linux/ip.h>): a link's IPv4 reverse-path filter.
pub(crate) const IPV4_DEVCONF_RP_FILTER: u16 = 8;

/// IFLA_INET_CONF, nested, setting each IPv4 devconf value given (for RTM_SETLINK's
/// IFLA_AF_SPEC / AF_INET). netlink-packet-route's own request form leaves out values of 0.
pub(crate) fn inet_devconf(values: &[(u16, u32)]) -> rtnetlink::packet_core::DefaultNla {
    const IFLA_INET_CONF: u16 = 1;
    const NLA_F_NESTED: u16 = 0x8000;
    let mut inner = Vec::with_capacity(values.len() * 8);
    for &(kind, value) in values {
        inner.extend_from_slice(&8u16.to_ne_bytes());
        inner.extend_from_slice(&kind.to_ne_bytes());
        inner.extend_from_slice(&value.to_ne_bytes());
    }
    rtnetlink::packet_core::DefaultNla::new(IFLA_INET_CONF | NLA_F_NESTED, inner)
}

/// RTM_DELLINK body for `index`.
pub(crate) fn del_link_message(index: u32) -> LinkMessage {
    let mut m = LinkMessage::default();
    m.header.index = index;
    m
}

/// How a netlink request is named in errors: the operation, and the object as `ip` says it.
pub(crate) fn describe(msg: &RouteNetlinkMessage) -> (&'static str, String) {
    use RouteNetlinkMessage as M;
    match msg {
        M::NewRoute(r) => ("add route", route_text(r)),
        M::DelRoute(r) => ("delete route", route_text(r)),
        M::GetRoute(r) => ("dump routes", route_text(r)),
        M::NewRule(r) => ("add rule", rule_text(r)),
        M::DelRule(r) => ("delete rule", rule_text(r)),
        M::GetRule(r) => (
            "dump rules",
            match r.header.family {
                AddressFamily::Inet => "(all IPv4 rules)".into(),
                _ => "(all IPv6 rules)".into(),
            },
        ),
        M::NewAddress(a) => ("add address", addr_text(a)),
        M::DelAddress(a) => ("delete address", addr_text(a)),
        M::GetAddress(_) => ("dump addresses", "(all IPv6 addresses)".into()),
        M::NewLink(l) => ("add link", link_text(l)),
        M::SetLink(l) => ("set link", link_text(l)),
        M::DelLink(l) => ("delete link", link_text(l)),
        M::GetLink(l) => ("get link", link_text(l)),
        _ => ("netlink request", String::new()),
    }
}

/// What a request acts on, to tell whether two requests touch the same object (routes by
/// table, destination and metric; rules by everything but protocol; addresses by link and
/// address; links by index or name).
pub(crate) fn object_key(msg: &RouteNetlinkMessage) -> String {
    use RouteNetlinkMessage as M;
    match msg {
        M::NewRoute(r) | M::DelRoute(r) => match KRoute::parse(r) {
            Some(k) => format!("route {:?}", k.key),
            None => format!("route {:?}", r.header),
        },
        M::NewRule(r) | M::DelRule(r) => match KRule::parse(r) {
            Some(k) => format!("rule {}", KRule { protocol: 0, ..k }),
            None => format!("rule {:?}", r.header),
        },
        M::NewAddress(a) | M::DelAddress(a) => format!("address {}", addr_text(a)),
        M::NewLink(l) | M::SetLink(l) | M::DelLink(l) => format!("link {}", link_text(l)),
        other => format!("{:?}", other.message_type()),
    }
}

fn route_text(r: &RouteMessage) -> String {
    match KRoute::parse(r) {
        Some(k) => k.to_string(),
        None => format!("{:?}", r.header),
    }
}

fn rule_text(r: &RuleMessage) -> String {
    match KRule::parse(r) {
        Some(k) => k.to_string(),
        None => format!("{:?}", r.header),
    }
}

fn addr_text(a: &AddressMessage) -> String {
    match KAddr::parse(a) {
        Some((k, _)) => format!("{}/{} dev #{}", k.addr, k.prefix_len, k.ifindex),
        None => format!("{:?}", a.header),
    }
}

fn link_text(l: &LinkMessage) -> String {
    let k = KLink::parse(l);
    match (k.name.is_empty(), k.index) {
        (false, _) => k.name,
        (true, 0) => "(unnamed)".into(),
        (true, i) => format!("#{i}"),
    }
}

fn table_name(t: u32) -> String {
    match t {
        MAIN_TABLE => "main".into(),
        LOCAL_TABLE => "local".into(),
        t => t.to_string(),
    }
}

impl fmt::Display for KRoute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.key.dst)?;
        match self.via {
            Via::Seg6 { peer, oif } => {
                write!(f, " encap seg6 mode encap.red segs {peer} dev #{oif}")?
            }
            Via::EndDt6 { lookup, oif } => write!(
                f,
                " encap seg6local action End.DT6 table {} dev #{oif}",
                table_name(lookup)
            )?,
            Via::EndDx4 { oif } => {
                write!(f, " encap seg6local action End.DX4 nh4 0.0.0.0 dev #{oif}")?
            }
            Via::Dev { oif } | Via::Unknown { oif: Some(oif) } => write!(f, " dev #{oif}")?,
            Via::Nexthop { id } => write!(f, " nhid {id}")?,
            Via::Unknown { oif: None } => {}
        }
        write!(f, " table {}", table_name(self.key.table))?;
        if self.key.metric != 0 {
            write!(f, " metric {}", self.key.metric)?;
        }
        if let Some(mtu) = self.mtu {
            write!(f, " mtu {mtu}")?;
        }
        write!(f, " proto {}", self.protocol)
    }
}

impl fmt::Display for KRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.family == Family::V4 {
            write!(f, "-4 ")?;
        }
        write!(f, "pref {}", self.priority)?;
        if let Some(s) = self.src {
            write!(f, " from {s}")?;
        }
        if let Some(d) = self.dst {
            write!(f, " to {d}")?;
        }
        if let Some(iif) = &self.iif {
            write!(f, " iif {iif}")?;
        }
        if let Some(p) = self.ipproto {
            write!(f, " ipproto {p}")?;
        }
        write!(
            f,
            " lookup {} proto {}",
            table_name(self.table),
            self.protocol
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_inet_devconf_request_carries_zero_values_too() {
        use rtnetlink::packet_core::Emitable;
        let nla = inet_devconf(&[(IPV4_DEVCONF_RP_FILTER, 0), (1, 1)]);
        let mut buf = vec![0u8; nla.buffer_len()];
        nla.emit(&mut buf);
        let mut want = Vec::new();
        for (len, kind) in [(20u16, 0x8001u16), (8, 8)] {
            want.extend_from_slice(&len.to_ne_bytes());
            want.extend_from_slice(&kind.to_ne_bytes());
        }
        want.extend_from_slice(&0u32.to_ne_bytes());
        for v in [8u16, 1] {
            want.extend_from_slice(&v.to_ne_bytes());
        }
        want.extend_from_slice(&1u32.to_ne_bytes());
        assert_eq!(buf, want);
    }
    use rtnetlink::packet_core::{Emitable, NlaBuffer, NlasIterator, Parseable};

    const NLA_F_NESTED: u16 = 0x8000;

    /// The top-level attributes of an emitted message body after its fixed header, as
    /// (type with flags, value bytes).
    fn nlas(bytes: &[u8], header_len: usize) -> Vec<(u16, Vec<u8>)> {
        NlasIterator::new(&bytes[header_len..])
            .map(|n| {
                let n = n.unwrap();
                (
                    n.kind() | if n.nested_flag() { NLA_F_NESTED } else { 0 },
                    n.value().to_vec(),
                )
            })
            .collect()
    }

    fn nla(list: &[(u16, Vec<u8>)], kind: u16) -> &[u8] {
        let found = list.iter().find(|(k, _)| k & !NLA_F_NESTED == kind);
        &found
            .unwrap_or_else(|| panic!("no attribute {kind} in {list:?}"))
            .1
    }

    fn emit<T: Emitable>(m: &T) -> Vec<u8> {
        let mut b = vec![0u8; m.buffer_len()];
        m.emit(&mut b);
        b
    }

    fn p6(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    fn net(s: &str) -> ipnet::Ipv6Net {
        s.parse().unwrap()
    }

    // rtmsg is 12 bytes: family, dst_len, src_len, tos, table, protocol, scope, type, flags.
    const RTMSG_LEN: usize = 12;
    const RTA_DST: u16 = 1;
    const RTA_OIF: u16 = 4;
    const RTA_PRIORITY: u16 = 6;
    const RTA_METRICS: u16 = 8;
    const RTA_TABLE: u16 = 15;
    const RTA_ENCAP_TYPE: u16 = 21;
    const RTA_ENCAP: u16 = 22;
    const RTAX_MTU: u16 = 2;
    const LWTUNNEL_ENCAP_SEG6: u16 = 5;
    const LWTUNNEL_ENCAP_SEG6_LOCAL: u16 = 7;

    fn downlink() -> KRoute {
        KRoute {
            key: RouteKey::new(MAIN_TABLE, net("2001:db8:100::/64")),
            protocol: 135,
            via: Via::Seg6 {
                peer: p6("2001:db8::2"),
                oif: 7,
            },
            mtu: Some(1460),
        }
    }

    /// `ip -6 route replace 2001:db8:100::/64 encap seg6 mode encap.red segs 2001:db8::2
    /// dev #7 mtu 1460 proto 135`, checked field by field against include/uapi/linux/rtnetlink.h,
    /// lwtunnel.h, seg6_iptunnel.h and seg6.h.
    #[test]
    fn seg6_reduced_encap_route_bytes() {
        let b = emit(&downlink().new_message());
        assert_eq!(b[0], libc::AF_INET6 as u8);
        assert_eq!(b[1], 64, "dst_len");
        assert_eq!(b[4], 254, "rtm_table");
        assert_eq!(b[5], 135, "rtm_protocol");
        assert_eq!(b[6], 0, "RT_SCOPE_UNIVERSE");
        assert_eq!(b[7], 1, "RTN_UNICAST");
        let a = nlas(&b, RTMSG_LEN);
        assert_eq!(nla(&a, RTA_DST), p6("2001:db8:100::").octets());
        assert_eq!(nla(&a, RTA_TABLE), 254u32.to_ne_bytes());
        assert_eq!(nla(&a, RTA_PRIORITY), 1024u32.to_ne_bytes());
        assert_eq!(nla(&a, RTA_OIF), 7u32.to_ne_bytes());
        assert_eq!(nla(&a, RTA_ENCAP_TYPE), LWTUNNEL_ENCAP_SEG6.to_ne_bytes());
        // RTA_ENCAP must carry NLA_F_NESTED: the kernel parses it with nla_parse_nested().
        let encap = a
            .iter()
            .find(|(k, _)| k & !NLA_F_NESTED == RTA_ENCAP)
            .unwrap();
        assert_eq!(encap.0 & NLA_F_NESTED, NLA_F_NESTED);
        let inner = nlas(&encap.1, 0);
        assert_eq!(inner.len(), 1);
        let srh = nla(&inner, 1); // SEG6_IPTUNNEL_SRH
        let mut want = Vec::new();
        want.extend_from_slice(&3u32.to_ne_bytes()); // mode: SEG6_IPTUN_MODE_ENCAP_RED
        want.extend_from_slice(&[
            0, // nexthdr (the kernel fills it)
            2, // hdrlen: (8 + 16) / 8 - 1
            4, // type: IPV6_SRCRT_TYPE_4
            0, // segments_left
            0, // first_segment (last entry)
            0, // flags
            0, 0, // tag
        ]);
        want.extend_from_slice(&p6("2001:db8::2").octets());
        assert_eq!(srh, want.as_slice());
        let metrics = nlas(nla(&a, RTA_METRICS), 0);
        assert_eq!(nla(&metrics, RTAX_MTU), 1460u32.to_ne_bytes());
    }

    #[test]
    fn end_dt6_route_bytes() {
        let r = KRoute {
            key: RouteKey::new(13500, net("2001:db8::1/128")),
            protocol: 135,
            via: Via::EndDt6 {
                lookup: MAIN_TABLE,
                oif: 3,
            },
            mtu: None,
        };
        let b = emit(&r.new_message());
        assert_eq!(b[1], 128);
        assert_eq!(b[4], 0, "table above 255 is RT_TABLE_UNSPEC in the header");
        let a = nlas(&b, RTMSG_LEN);
        assert_eq!(nla(&a, RTA_TABLE), 13500u32.to_ne_bytes());
        assert_eq!(
            nla(&a, RTA_ENCAP_TYPE),
            LWTUNNEL_ENCAP_SEG6_LOCAL.to_ne_bytes()
        );
        let inner = nlas(nla(&a, RTA_ENCAP), 0);
        assert_eq!(nla(&inner, 1), 7u32.to_ne_bytes()); // SEG6_LOCAL_ACTION: End.DT6
        assert_eq!(nla(&inner, 3), 254u32.to_ne_bytes()); // SEG6_LOCAL_TABLE
        assert!(a.iter().all(|(k, _)| *k != RTA_METRICS));
    }

    #[test]
    fn routes_round_trip_through_the_parser() {
        let dt6 = KRoute {
            key: RouteKey::new(13500, net("2001:db8::1/128")),
            protocol: 135,
            via: Via::EndDt6 {
                lookup: 254,
                oif: 3,
            },
            mtu: None,
        };
        let default = KRoute {
            key: RouteKey::new(13502, net("::/0")),
            protocol: 135,
            via: Via::Seg6 {
                peer: p6("2001:db8::1"),
                oif: 3,
            },
            mtu: Some(1460),
        };
        let onlink = KRoute {
            key: RouteKey::new(254, net("2001:db8:100::/64")),
            protocol: 99,
            via: Via::Dev { oif: 9 },
            mtu: None,
        };
        for r in [downlink(), dt6, default, onlink] {
            let bytes = emit(&r.new_message());
            let back = RouteMessage::parse(&bytes[..]).unwrap();
            assert_eq!(KRoute::parse(&back), Some(r));
        }
    }

    #[test]
    fn default_route_has_no_destination_attribute() {
        let r = KRoute {
            key: RouteKey::new(13502, net("::/0")),
            protocol: 135,
            via: Via::Dev { oif: 1 },
            mtu: None,
        };
        let b = emit(&r.new_message());
        assert!(nlas(&b, RTMSG_LEN).iter().all(|(k, _)| *k != RTA_DST));
    }

    #[test]
    fn route_delete_names_protocol_and_link() {
        let b = emit(&downlink().del_message());
        assert_eq!(b[5], 135);
        let a = nlas(&b, RTMSG_LEN);
        assert_eq!(nla(&a, RTA_OIF), 7u32.to_ne_bytes());
        assert!(a.iter().all(|(k, _)| k & !NLA_F_NESTED != RTA_ENCAP));
    }

    // fib_rule_hdr is 12 bytes: family, dst_len, src_len, tos, table, res1, res2, action, flags.
    const RULE_HDR_LEN: usize = 12;
    const FRA_DST: u16 = 1;
    const FRA_SRC: u16 = 2;
    const FRA_PRIORITY: u16 = 6;
    const FRA_TABLE: u16 = 15;
    const FRA_PROTOCOL: u16 = 21;
    const FRA_IP_PROTO: u16 = 22;

    /// `ip -6 rule add pref 100 to 2001:db8::1 ipproto 41 lookup 13500 proto 135`.
    #[test]
    fn termination_rule_bytes() {
        let r = KRule {
            family: Family::V6,
            priority: 100,
            src: None,
            dst: Some(net("2001:db8::1/128").into()),
            ipproto: Some(41),
            iif: None,
            table: 13500,
            protocol: 135,
        };
        let b = emit(&r.message());
        assert_eq!(b[0], libc::AF_INET6 as u8);
        assert_eq!(b[1], 128, "dst_len");
        assert_eq!(b[2], 0, "src_len");
        assert_eq!(b[4], 0, "table above 255 only in FRA_TABLE");
        assert_eq!(b[7], 1, "FR_ACT_TO_TBL");
        let a = nlas(&b, RULE_HDR_LEN);
        assert_eq!(nla(&a, FRA_PRIORITY), 100u32.to_ne_bytes());
        assert_eq!(nla(&a, FRA_DST), p6("2001:db8::1").octets());
        assert_eq!(nla(&a, FRA_IP_PROTO), [41]);
        assert_eq!(nla(&a, FRA_TABLE), 13500u32.to_ne_bytes());
        assert_eq!(nla(&a, FRA_PROTOCOL), [135]);
        assert!(a.iter().all(|(k, _)| *k != FRA_SRC));
        let back = RuleMessage::parse(&b[..]).unwrap();
        assert_eq!(KRule::parse(&back), Some(r));
    }

    /// `ip -6 rule add pref 1200 from 2001:db8:100::/64 lookup 13502 proto 135`.
    #[test]
    fn uplink_rule_bytes() {
        let r = KRule {
            family: Family::V6,
            priority: 1200,
            src: Some(net("2001:db8:100::/64").into()),
            dst: None,
            ipproto: None,
            iif: None,
            table: 13502,
            protocol: 135,
        };
        let b = emit(&r.message());
        assert_eq!((b[1], b[2]), (0, 64));
        let a = nlas(&b, RULE_HDR_LEN);
        assert_eq!(nla(&a, FRA_SRC), p6("2001:db8:100::").octets());
        assert!(a.iter().all(|(k, _)| *k != FRA_IP_PROTO && *k != FRA_DST));
        assert_eq!(KRule::parse(&RuleMessage::parse(&b[..]).unwrap()), Some(r));
    }

    /// `ip -6 rule add pref 0 lookup local` as the kernel has it at boot.
    #[test]
    fn boot_local_rule_bytes() {
        let b = emit(&KRule::boot_local().message());
        assert_eq!(b[4], 255);
        let a = nlas(&b, RULE_HDR_LEN);
        assert_eq!(nla(&a, FRA_PRIORITY), 0u32.to_ne_bytes());
        assert_eq!(nla(&a, FRA_PROTOCOL), [2]);
    }

    const IFLA_MTU: u16 = 4;
    const IFLA_IFNAME: u16 = 3;
    const IFLA_LINKINFO: u16 = 18;
    const IFLA_INFO_KIND: u16 = 1;
    const IFLA_INFO_DATA: u16 = 2;
    const IFLA_IPTUN_LINK: u16 = 1;
    const IFLA_IPTUN_LOCAL: u16 = 2;
    const IFLA_IPTUN_REMOTE: u16 = 3;
    const IFLA_IPTUN_TTL: u16 = 4;
    const IFLA_IPTUN_FLAGS: u16 = 8;
    const IFLA_IPTUN_PROTO: u16 = 9;
    // ifinfomsg: family, pad, type (u16), index (i32), flags (u32), change (u32).
    const IFINFOMSG_LEN: usize = 16;

    /// `ip link add pmip6t0 up mtu 1460 type ip6tnl mode ip6ip6 local 2001:db8::1 remote
    /// 2001:db8::2 dev #3 hoplimit 64 encaplimit none`, attribute by attribute against
    /// include/uapi/linux/if_link.h, if_tunnel.h and ip6_tunnel.h. Not run against a kernel
    /// here (no ip6_tunnel on the development machine).
    #[test]
    fn ip6tnl_link_bytes() {
        let t = KTunnel {
            name: "pmip6t0".into(),
            underlay: 3,
            local: p6("2001:db8::1"),
            remote: p6("2001:db8::2"),
            mtu: 1460,
        };
        let b = emit(&t.new_message());
        assert_eq!(&b[8..12], 1u32.to_ne_bytes(), "ifi_flags: IFF_UP");
        assert_eq!(&b[12..16], 1u32.to_ne_bytes(), "ifi_change: IFF_UP");
        let a = nlas(&b, IFINFOMSG_LEN);
        assert_eq!(a.len(), 3);
        assert_eq!(nla(&a, IFLA_IFNAME), b"pmip6t0\0");
        assert_eq!(nla(&a, IFLA_MTU), 1460u32.to_ne_bytes());
        let info = nlas(nla(&a, IFLA_LINKINFO), 0);
        assert_eq!(info.len(), 2);
        assert_eq!(nla(&info, IFLA_INFO_KIND), b"ip6tnl\0");
        let data = nlas(nla(&info, IFLA_INFO_DATA), 0);
        let kinds: Vec<u16> = data.iter().map(|(k, _)| *k).collect();
        assert_eq!(
            kinds,
            [
                IFLA_IPTUN_LINK,
                IFLA_IPTUN_LOCAL,
                IFLA_IPTUN_REMOTE,
                IFLA_IPTUN_TTL,
                IFLA_IPTUN_FLAGS,
                IFLA_IPTUN_PROTO
            ]
        );
        assert_eq!(nla(&data, IFLA_IPTUN_LINK), 3u32.to_ne_bytes());
        assert_eq!(nla(&data, IFLA_IPTUN_LOCAL), p6("2001:db8::1").octets());
        assert_eq!(nla(&data, IFLA_IPTUN_REMOTE), p6("2001:db8::2").octets());
        assert_eq!(nla(&data, IFLA_IPTUN_TTL), [64]);
        // IP6_TNL_F_IGN_ENCAP_LIMIT: no Tunnel Encapsulation Limit option.
        assert_eq!(nla(&data, IFLA_IPTUN_FLAGS), 1u32.to_ne_bytes());
        // Mode `any` (0): IPv6 (41) and IPv4 (4) home address traffic through one link.
        assert_eq!(nla(&data, IFLA_IPTUN_PROTO), [0]);

        let back = LinkMessage::parse(&b[..]).unwrap();
        let k = KLink::parse(&back);
        assert_eq!(k.name, "pmip6t0");
        assert_eq!(k.mtu, 1460);
        assert_eq!(k.ip6tnl, Some((3, t.local, t.remote)));
        assert_eq!(k.ip6tnl_proto, Some(0));
    }

    fn p4(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn net4(s: &str) -> ipnet::Ipv4Net {
        s.parse().unwrap()
    }

    /// `ip route replace 198.51.100.7/32 encap seg6 mode encap.red segs 2001:db8::2 dev #7
    /// mtu 1460 proto 135`: an IPv4 home address's downlink at the LMA (RFC 5844 §3.1.3).
    /// The same encap attributes as the IPv6 route, in an AF_INET route message.
    #[test]
    fn ipv4_route_into_the_seg6_tunnel_bytes() {
        let r = KRoute {
            key: RouteKey::new(MAIN_TABLE, net4("198.51.100.7/32")),
            protocol: 135,
            via: Via::Seg6 {
                peer: p6("2001:db8::2"),
                oif: 7,
            },
            mtu: Some(1460),
        };
        let b = emit(&r.new_message());
        assert_eq!(b[0], libc::AF_INET as u8);
        assert_eq!(b[1], 32, "dst_len");
        assert_eq!(b[4], 254);
        let a = nlas(&b, RTMSG_LEN);
        assert_eq!(nla(&a, RTA_DST), p4("198.51.100.7").octets());
        assert_eq!(nla(&a, RTA_ENCAP_TYPE), LWTUNNEL_ENCAP_SEG6.to_ne_bytes());
        let inner = nlas(nla(&a, RTA_ENCAP), 0);
        let srh = nla(&inner, 1);
        assert_eq!(&srh[..4], 3u32.to_ne_bytes(), "encap.red");
        assert_eq!(&srh[12..], p6("2001:db8::2").octets());
        let metrics = nlas(nla(&a, RTA_METRICS), 0);
        assert_eq!(nla(&metrics, RTAX_MTU), 1460u32.to_ne_bytes());
        let back = RouteMessage::parse(&b[..]).unwrap();
        assert_eq!(KRoute::parse(&back), Some(r));
        // A default route of a peer table has no RTA_DST and parses back as 0.0.0.0/0.
        let d = KRoute {
            key: RouteKey::new(13502, net4("0.0.0.0/0")),
            ..downlink()
        };
        let b = emit(&d.new_message());
        assert!(nlas(&b, RTMSG_LEN).iter().all(|(k, _)| *k != RTA_DST));
        assert_eq!(
            KRoute::parse(&RouteMessage::parse(&b[..]).unwrap()),
            Some(d)
        );
    }

    /// `ip -6 route replace 2001:db8::2/128 encap seg6local action End.DX4 nh4 0.0.0.0 dev
    /// #3 table 13516 proto 135`, against include/uapi/linux/seg6_local.h.
    #[test]
    fn end_dx4_route_bytes() {
        let r = KRoute {
            key: RouteKey::new(13516, net("2001:db8::2/128")),
            protocol: 135,
            via: Via::EndDx4 { oif: 3 },
            mtu: None,
        };
        let b = emit(&r.new_message());
        assert_eq!(b[0], libc::AF_INET6 as u8);
        let a = nlas(&b, RTMSG_LEN);
        assert_eq!(
            nla(&a, RTA_ENCAP_TYPE),
            LWTUNNEL_ENCAP_SEG6_LOCAL.to_ne_bytes()
        );
        let inner = nlas(nla(&a, RTA_ENCAP), 0);
        assert_eq!(nla(&inner, 1), 6u32.to_ne_bytes()); // SEG6_LOCAL_ACTION: End.DX4
        assert_eq!(nla(&inner, 4), [0, 0, 0, 0]); // SEG6_LOCAL_NH4
        assert_eq!(nla(&a, RTA_OIF), 3u32.to_ne_bytes());
        assert_eq!(
            KRoute::parse(&RouteMessage::parse(&b[..]).unwrap()),
            Some(r.clone())
        );
        assert_eq!(
            r.to_string(),
            "2001:db8::2/128 encap seg6local action End.DX4 nh4 0.0.0.0 dev #3 table 13516 \
             metric 1024 proto 135"
        );
    }

    /// `ip -4 rule add pref 1200 from 198.51.100.7/32 lookup 13502 proto 135` and
    /// `ip -6 rule add pref 100 to 2001:db8::2 ipproto 4 lookup 13516 proto 135`.
    #[test]
    fn ipv4_uplink_and_ipip_termination_rule_bytes() {
        let r = KRule {
            family: Family::V4,
            priority: 1200,
            src: Some(net4("198.51.100.7/32").into()),
            dst: None,
            ipproto: None,
            iif: None,
            table: 13502,
            protocol: 135,
        };
        let b = emit(&r.message());
        assert_eq!(b[0], libc::AF_INET as u8);
        assert_eq!((b[1], b[2]), (0, 32));
        let a = nlas(&b, RULE_HDR_LEN);
        assert_eq!(nla(&a, FRA_SRC), p4("198.51.100.7").octets());
        assert_eq!(
            KRule::parse(&RuleMessage::parse(&b[..]).unwrap()),
            Some(r.clone())
        );
        assert_eq!(
            r.to_string(),
            "-4 pref 1200 from 198.51.100.7/32 lookup 13502 proto 135"
        );
        let t = KRule {
            family: Family::V6,
            priority: 100,
            src: None,
            dst: Some(net("2001:db8::2/128").into()),
            ipproto: Some(IPPROTO_IPIP),
            iif: None,
            table: 13516,
            protocol: 135,
        };
        let b = emit(&t.message());
        let a = nlas(&b, RULE_HDR_LEN);
        assert_eq!(nla(&a, FRA_IP_PROTO), [4]);
        assert_eq!(KRule::parse(&RuleMessage::parse(&b[..]).unwrap()), Some(t));
    }

    const IFA_ADDRESS: u16 = 1;
    const IFA_FLAGS: u16 = 8;
    const IFA_PROTO: u16 = 11;

    /// `ip addr add fe80::1/64 dev #5 nodad proto 135`.
    #[test]
    fn link_local_address_bytes() {
        let a = KAddr {
            ifindex: 5,
            addr: p6("fe80::1"),
            prefix_len: 64,
        };
        let b = emit(&a.new_message(Some(135)));
        // ifaddrmsg: family, prefixlen, flags, scope, index (u32).
        assert_eq!(b[0], libc::AF_INET6 as u8);
        assert_eq!(b[1], 64);
        assert_eq!(b[2], 0x02, "IFA_F_NODAD");
        assert_eq!(b[3], 253, "RT_SCOPE_LINK");
        assert_eq!(&b[4..8], 5u32.to_ne_bytes());
        let n = nlas(&b, 8);
        assert_eq!(nla(&n, IFA_ADDRESS), p6("fe80::1").octets());
        assert_eq!(nla(&n, IFA_FLAGS), 0x02u32.to_ne_bytes());
        assert_eq!(nla(&n, IFA_PROTO), [135]);
        let back = AddressMessage::parse(&b[..]).unwrap();
        assert_eq!(KAddr::parse(&back), Some((a, Some(135))));
    }

    #[test]
    fn mac_and_link_settings_bytes() {
        let b = emit(&set_mac_message(5, [2, 0, 0x5e, 0, 0x53, 1]));
        assert_eq!(&b[4..8], 5u32.to_ne_bytes());
        assert_eq!(nla(&nlas(&b, IFINFOMSG_LEN), 1), [2, 0, 0x5e, 0, 0x53, 1]); // IFLA_ADDRESS
        let b = emit(&set_link_message(5, Some(true), Some(1540)));
        assert_eq!(&b[8..12], 1u32.to_ne_bytes());
        assert_eq!(&b[12..16], 1u32.to_ne_bytes());
        assert_eq!(
            nla(&nlas(&b, IFINFOMSG_LEN), IFLA_MTU),
            1540u32.to_ne_bytes()
        );
        let b = emit(&set_link_message(5, Some(false), None));
        assert_eq!(&b[8..12], 0u32.to_ne_bytes());
        assert_eq!(&b[12..16], 1u32.to_ne_bytes());
    }

    #[test]
    fn errors_name_the_object_like_ip_does() {
        let (op, obj) = describe(&RouteNetlinkMessage::NewRoute(downlink().new_message()));
        assert_eq!(op, "add route");
        assert_eq!(
            obj,
            "2001:db8:100::/64 encap seg6 mode encap.red segs 2001:db8::2 dev #7 table main \
             metric 1024 mtu 1460 proto 135"
        );
        let r = KRule {
            family: Family::V6,
            priority: 1200,
            src: Some(net("2001:db8:100::/64").into()),
            dst: None,
            ipproto: None,
            iif: None,
            table: 13502,
            protocol: 135,
        };
        let (op, obj) = describe(&RouteNetlinkMessage::DelRule(r.message()));
        assert_eq!(op, "delete rule");
        assert_eq!(
            obj,
            "pref 1200 from 2001:db8:100::/64 lookup 13502 proto 135"
        );
    }

    #[test]
    fn nla_buffer_helper_sees_nested_flag() {
        // Guards the helper above: an attribute with NLA_F_NESTED is reported with it.
        let bytes = [8u8, 0, 0x16, 0x80, 1, 2, 3, 4];
        let n = NlaBuffer::new_checked(&bytes[..]).unwrap();
        assert!(n.nested_flag());
        assert_eq!(n.kind(), 0x16);
    }
}
