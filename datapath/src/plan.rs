//! From the model to kernel objects and back, and the difference between two sets of kernel
//! objects. Pure code: the kernel backends feed it dumps and send what it returns.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv6Addr;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use crate::Settings;
use crate::error::{Error, Result};
use crate::model::{AccessLinkAddresses, DesiredState, PrefixRoute};
use crate::msg::{
    Family, IPPROTO_IPIP, IPPROTO_IPV6, KAddr, KLink, KRoute, KRule, KTunnel, LOCAL_TABLE,
    MAIN_TABLE, RouteKey, Via,
};
use crate::nexthop::KNexthop;

/// Which kernel mechanism carries the RFC 2473 tunnels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tunnel {
    /// seg6 lightweight tunnels in reduced encapsulation mode (one segment, so no routing
    /// header) and seg6local End.DT6 (IPv6) and End.DX4 (IPv4) to decapsulate.
    Seg6,
    /// One ip6tnl link (mode any: IPv6 and IPv4 inside) per peer.
    Ip6tnl,
    /// One veth pair per peer, whose packets the daemon reads from the pair's other end,
    /// encapsulates itself and sends on a raw socket; what arrives with Next Header 41 or 4 it
    /// decapsulates into the ingress pair ([`crate::tun`]).
    Tun,
}

impl Tunnel {
    /// Whether each peer has a link of its own (which must exist before its routes).
    pub fn has_links(self) -> bool {
        matches!(self, Tunnel::Ip6tnl | Tunnel::Tun)
    }
}

/// Prefix length of the link-local address on access links.
pub(crate) const LINK_LOCAL_PREFIX_LEN: u8 = 64;

/// The settings and the tunnel kind: everything that decides which kernel objects a state is.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    pub s: Settings,
    pub kind: Tunnel,
    /// Whether the routes into a peer's link name its nexthop object ([`crate::nexthop`]):
    /// the backends with links, where the kernel has nexthop objects.
    pub nexthops: bool,
}

impl Layout {
    pub(crate) fn owns_route(&self, r: &KRoute) -> bool {
        r.protocol == self.s.route_protocol
            && (r.key.table == MAIN_TABLE || self.s.owns_table(r.key.table))
    }

    pub(crate) fn owns_rule(&self, r: &KRule) -> bool {
        r.protocol == self.s.route_protocol
    }

    /// How traffic enters the tunnel to `peer` (its slot and, for the backends with links,
    /// the index of its link); `None` before its link exists.
    pub(crate) fn tunnel_via(
        &self,
        peer: Ipv6Addr,
        slots: &BTreeMap<Ipv6Addr, u32>,
        tunnels: &BTreeMap<Ipv6Addr, u32>,
    ) -> Option<Via> {
        match self.kind {
            Tunnel::Seg6 => Some(Via::Seg6 {
                peer,
                oif: self.s.transport_ifindex,
            }),
            Tunnel::Ip6tnl | Tunnel::Tun => {
                let oif = *tunnels.get(&peer)?;
                if self.nexthops {
                    let slot = *slots.get(&peer)?;
                    Some(Via::Nexthop {
                        id: self.nexthop_id(slot),
                    })
                } else {
                    Some(Via::Dev { oif })
                }
            }
        }
    }

    /// The id of the nexthop object of the link in `slot`: the number of the slot's table,
    /// so that each daemon's ids are as apart as its tables.
    pub(crate) fn nexthop_id(&self, slot: u32) -> u32 {
        self.s.peer_table(slot)
    }

    /// Whether nexthop object `nh` is one this backend makes: of its protocol, with an id of
    /// one of its slots.
    pub(crate) fn owns_nexthop(&self, nh: &KNexthop) -> bool {
        nh.protocol == self.s.route_protocol && self.s.slot_of_table(nh.id).is_some()
    }

    /// seg6 needs the MTU on the route (its output drops oversize packets without a Packet
    /// Too Big); an ip6tnl link has the tunnel MTU itself.
    fn tunnel_route_mtu(&self) -> Option<u32> {
        match self.kind {
            Tunnel::Seg6 => Some(self.s.tunnel_mtu()),
            Tunnel::Ip6tnl | Tunnel::Tun => None,
        }
    }

    fn route(&self, table: u32, dst: impl Into<IpNet>, via: Via, mtu: Option<u32>) -> KRoute {
        KRoute {
            key: RouteKey {
                metric: self.s.route_metric,
                ..RouteKey::new(table, dst)
            },
            protocol: self.s.route_protocol,
            via,
            mtu,
        }
    }

    fn rule(&self, family: Family, priority: u32, table: u32) -> KRule {
        KRule {
            family,
            priority,
            src: None,
            dst: None,
            ipproto: None,
            iif: None,
            table,
            protocol: self.s.route_protocol,
        }
    }

    pub(crate) fn tunnel_route(&self, table: u32, dst: impl Into<IpNet>, via: Via) -> KRoute {
        self.route(table, dst, via, self.tunnel_route_mtu())
    }

    /// Into the tunnel, by destination: an IPv6 prefix or (RFC 5844 §3.1.3) an IPv4 home
    /// address.
    pub(crate) fn downlink(&self, prefix: impl Into<IpNet>, via: Via) -> KRoute {
        self.tunnel_route(MAIN_TABLE, prefix, via)
    }

    pub(crate) fn peer_default(&self, slot: u32, via: Via) -> KRoute {
        self.tunnel_route(self.s.peer_table(slot), Ipv6Net::default(), via)
    }

    /// The IPv4 default route of a peer's table, next to the IPv6 one (same table number,
    /// the other family's table).
    pub(crate) fn peer_default4(&self, slot: u32, via: Via) -> KRoute {
        self.tunnel_route(self.s.peer_table(slot), Ipv4Net::default(), via)
    }

    pub(crate) fn local_route(&self, prefix: impl Into<IpNet>, ifindex: u32) -> KRoute {
        self.route(MAIN_TABLE, prefix, Via::Dev { oif: ifindex }, None)
    }

    pub(crate) fn local_routing_route(&self, prefix: impl Into<IpNet>, ifindex: u32) -> KRoute {
        self.route(
            self.s.local_routing_table(),
            prefix,
            Via::Dev { oif: ifindex },
            None,
        )
    }

    /// Looked up before the uplink rules: a prefix routed locally with local routing on is
    /// found there, so traffic to it from another node on this MAG does not go to the LMA.
    pub(crate) fn local_routing_rule(&self) -> KRule {
        self.rule(
            Family::V6,
            self.s.priorities.local_routing,
            self.s.local_routing_table(),
        )
    }

    /// [`Layout::local_routing_rule`] for IPv4 home addresses.
    pub(crate) fn local_routing_rule4(&self) -> KRule {
        self.rule(
            Family::V4,
            self.s.priorities.local_routing,
            self.s.local_routing_table(),
        )
    }

    /// `lookup local`, moved below the termination rule (the kernel's is at 0).
    pub(crate) fn local_rule(&self) -> KRule {
        self.rule(Family::V6, self.s.priorities.local, LOCAL_TABLE)
    }

    /// What the userspace tunnel decapsulates enters by one device, and is routed by the main
    /// table like what End.DT6 decapsulates: not by the uplink rules, which would send a
    /// packet for another node of the same MAG back up the tunnel it came from.
    pub(crate) fn tun_ingress_rule(&self, family: Family) -> KRule {
        KRule {
            iif: Some(self.s.tun_ingress_name()),
            ..self.rule(family, self.s.priorities.termination, MAIN_TABLE)
        }
    }

    /// Protocol 41 to a local tunnel end goes to the End.DT6 route before the local table
    /// would deliver it (a seg6local route never sees packets for a local address).
    pub(crate) fn termination_rule(&self, local: Ipv6Addr) -> KRule {
        KRule {
            dst: Some(Ipv6Net::from(local).into()),
            ipproto: Some(IPPROTO_IPV6),
            iif: None,
            ..self.rule(
                Family::V6,
                self.s.priorities.termination,
                self.s.termination_table(),
            )
        }
    }

    /// Protocol 4 (IPv4-in-IPv6, RFC 5844 §3.1.3) to a local tunnel end goes to the End.DX4
    /// route, in its own table because the End.DT6 route has the same destination.
    pub(crate) fn termination4_rule(&self, local: Ipv6Addr) -> KRule {
        KRule {
            dst: Some(Ipv6Net::from(local).into()),
            ipproto: Some(IPPROTO_IPIP),
            iif: None,
            ..self.rule(
                Family::V6,
                self.s.priorities.termination,
                self.s.termination4_table(),
            )
        }
    }

    /// End.DX4 with next hop 0.0.0.0 routes the inner IPv4 packet by its own destination
    /// (through the main table and the rules), so one route serves every node.
    pub(crate) fn termination4_route(&self, local: Ipv6Addr, ifindex: u32) -> KRoute {
        self.route(
            self.s.termination4_table(),
            Ipv6Net::from(local),
            Via::EndDx4 { oif: ifindex },
            None,
        )
    }

    pub(crate) fn termination_route(&self, local: Ipv6Addr, ifindex: u32) -> KRoute {
        self.route(
            self.s.termination_table(),
            Ipv6Net::from(local),
            Via::EndDt6 {
                lookup: MAIN_TABLE,
                oif: ifindex,
            },
            None,
        )
    }

    pub(crate) fn uplink_rule(&self, prefix: impl Into<IpNet>, slot: Option<u32>) -> KRule {
        let prefix = prefix.into().trunc();
        let family = match prefix {
            IpNet::V4(_) => Family::V4,
            IpNet::V6(_) => Family::V6,
        };
        KRule {
            src: Some(prefix),
            // Table 0 in a delete matches any table.
            ..self.rule(
                family,
                self.s.priorities.uplink,
                slot.map_or(0, |s| self.s.peer_table(s)),
            )
        }
    }

    pub(crate) fn link_local(&self, ifindex: u32, link: &AccessLinkAddresses) -> KAddr {
        KAddr {
            ifindex,
            addr: link.link_local,
            prefix_len: LINK_LOCAL_PREFIX_LEN,
        }
    }

    pub(crate) fn tunnel_link(&self, slot: u32, local: Ipv6Addr, remote: Ipv6Addr) -> KTunnel {
        KTunnel {
            name: self.s.tunnel_name(slot),
            underlay: self.s.transport_ifindex,
            local,
            remote,
            mtu: self.s.tunnel_mtu(),
        }
    }

    /// Whether `peer` needs a slot (a table, and for ip6tnl a link) in `state`.
    pub(crate) fn peers_needing_slots(&self, state: &DesiredState) -> BTreeSet<Ipv6Addr> {
        match self.kind {
            Tunnel::Seg6 => state.uplink_peers(),
            Tunnel::Ip6tnl | Tunnel::Tun => state.peers(),
        }
    }
}

/// Keeps the slots of peers still needed, gives the lowest free slots to new ones.
pub(crate) fn assign_slots(
    s: &Settings,
    existing: &BTreeMap<Ipv6Addr, u32>,
    needed: &BTreeSet<Ipv6Addr>,
) -> Result<BTreeMap<Ipv6Addr, u32>> {
    let mut slots = BTreeMap::new();
    let mut used = BTreeSet::new();
    for (&peer, &slot) in existing {
        if needed.contains(&peer) && slot < s.max_peers && used.insert(slot) {
            slots.insert(peer, slot);
        }
    }
    for peer in needed {
        if slots.contains_key(peer) {
            continue;
        }
        let free = (0..s.max_peers)
            .find(|i| !used.contains(i))
            .ok_or(Error::PeersExhausted {
                peer: *peer,
                slots: s.max_peers,
                first_table: s.peer_table(0),
            })?;
        used.insert(free);
        slots.insert(*peer, free);
    }
    Ok(slots)
}

/// The kernel objects a state is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Objects {
    pub routes: BTreeMap<RouteKey, KRoute>,
    pub rules: BTreeSet<KRule>,
    pub addresses: BTreeSet<KAddr>,
    pub macs: BTreeMap<u32, [u8; 6]>,
}

impl Objects {
    fn route(&mut self, r: KRoute) {
        self.routes.insert(r.key, r);
    }
}

/// The objects `state` needs, given each peer's slot and (ip6tnl) the index of its link.
pub(crate) fn objects(
    l: &Layout,
    state: &DesiredState,
    slots: &BTreeMap<Ipv6Addr, u32>,
    tunnels: &BTreeMap<Ipv6Addr, u32>,
) -> Result<Objects> {
    let mut o = Objects::default();
    let via = |peer: Ipv6Addr| {
        l.tunnel_via(peer, slots, tunnels)
            .ok_or_else(|| Error::Invalid {
                op: "tunnel",
                reason: format!("no tunnel link to {peer}"),
            })
    };
    if l.kind == Tunnel::Seg6 && !state.terminations.is_empty() {
        o.rules.insert(l.local_rule());
        for (&local, &ifindex) in &state.terminations {
            o.rules.insert(l.termination_rule(local));
            o.route(l.termination_route(local, ifindex));
            o.rules.insert(l.termination4_rule(local));
            o.route(l.termination4_route(local, ifindex));
        }
    }
    if l.kind == Tunnel::Tun && !state.terminations.is_empty() {
        o.rules.insert(l.tun_ingress_rule(Family::V6));
        o.rules.insert(l.tun_ingress_rule(Family::V4));
    }
    for (prefix, route) in &state.routes {
        match route {
            PrefixRoute::Tunnel { peer } => o.route(l.downlink(prefix, via(peer)?)),
            PrefixRoute::Link {
                ifindex,
                local_routing,
            } => {
                o.route(l.local_route(prefix, ifindex));
                if local_routing {
                    o.route(l.local_routing_route(prefix, ifindex));
                    o.rules.insert(l.local_routing_rule());
                }
            }
        }
    }
    for (prefix, route) in &state.routes4 {
        match route {
            PrefixRoute::Tunnel { peer } => o.route(l.downlink(prefix, via(peer)?)),
            PrefixRoute::Link {
                ifindex,
                local_routing,
            } => {
                o.route(l.local_route(prefix, ifindex));
                if local_routing {
                    o.route(l.local_routing_route(prefix, ifindex));
                    o.rules.insert(l.local_routing_rule4());
                }
            }
        }
    }
    let uplink_peers: BTreeSet<Ipv6Addr> = state.uplinks.values().copied().collect();
    for peer in uplink_peers {
        let slot = slot_of(slots, peer)?;
        o.route(l.peer_default(slot, via(peer)?));
    }
    let uplink4_peers: BTreeSet<Ipv6Addr> = state.uplinks4.values().copied().collect();
    for peer in uplink4_peers {
        let slot = slot_of(slots, peer)?;
        o.route(l.peer_default4(slot, via(peer)?));
    }
    for (&prefix, &peer) in &state.uplinks {
        o.rules
            .insert(l.uplink_rule(prefix, Some(slot_of(slots, peer)?)));
    }
    for (&prefix, &peer) in &state.uplinks4 {
        o.rules
            .insert(l.uplink_rule(prefix, Some(slot_of(slots, peer)?)));
    }
    for (&ifindex, link) in &state.access_links {
        o.addresses.insert(l.link_local(ifindex, link));
        o.macs.insert(ifindex, link.link_layer_address);
    }
    Ok(o)
}

fn slot_of(slots: &BTreeMap<Ipv6Addr, u32>, peer: Ipv6Addr) -> Result<u32> {
    slots.get(&peer).copied().ok_or_else(|| Error::Invalid {
        op: "uplink",
        reason: format!("no table assigned to {peer}"),
    })
}

/// What a dump found that this backend owns, plus what it needs to know about the rest.
#[derive(Debug, Clone, Default)]
pub(crate) struct Actual {
    pub routes: BTreeMap<RouteKey, KRoute>,
    pub rules: BTreeSet<KRule>,
    /// Rules of other owners that look the local table up (the kernel's at 0, usually).
    pub foreign_local_rules: Vec<KRule>,
    pub addresses: BTreeSet<KAddr>,
    pub links: Vec<KLink>,
    /// The nexthop objects this backend owns ([`Layout::owns_nexthop`]).
    pub nexthops: Vec<KNexthop>,
}

impl Actual {
    /// The owned tunnel links (ip6tnl links, or the kernel's ends of the userspace tunnel's
    /// pairs), by slot.
    pub(crate) fn tunnels(&self, l: &Layout) -> BTreeMap<u32, &KLink> {
        self.links
            .iter()
            .filter(|k| match l.kind {
                Tunnel::Tun => k.tun.is_some(),
                Tunnel::Seg6 | Tunnel::Ip6tnl => k.ip6tnl.is_some(),
            })
            .filter_map(|k| l.s.slot_of_tunnel_name(&k.name).map(|slot| (slot, k)))
            .collect()
    }
}

/// What the owned objects in `actual` say the state is (the inverse of [`objects`]), with
/// each peer's slot and (ip6tnl) link index. Objects that fit no model entry are left out,
/// so a reconcile removes them.
pub(crate) fn read_back(
    l: &Layout,
    actual: &Actual,
) -> (
    DesiredState,
    BTreeMap<Ipv6Addr, u32>,
    BTreeMap<Ipv6Addr, u32>,
) {
    let mut state = DesiredState::new();
    let mut slots = BTreeMap::new();
    let mut tunnels = BTreeMap::new();
    let mut peer_of_link = BTreeMap::new();
    for (slot, link) in actual.tunnels(l) {
        if let Some((local, remote)) = link.ip6tnl.map(|(_, l, r)| (l, r)).or(link.tun) {
            slots.insert(remote, slot);
            tunnels.insert(remote, link.index);
            peer_of_link.insert(link.index, remote);
            state.terminations.insert(local, l.s.transport_ifindex);
        }
    }
    // The userspace tunnel's ingress device names its local end.
    let ingress = l.s.tun_ingress_name();
    for link in &actual.links {
        if l.kind == Tunnel::Tun
            && link.name == ingress
            && let Some((local, remote)) = link.tun
            && remote.is_unspecified()
        {
            state.terminations.insert(local, l.s.transport_ifindex);
        }
    }
    let mut peer_of_slot: BTreeMap<u32, Ipv6Addr> = slots.iter().map(|(p, s)| (*s, *p)).collect();
    // Default routes of the per-peer tables name the peers (seg6).
    for r in actual.routes.values() {
        if let Some(slot) = l.s.slot_of_table(r.key.table)
            && r.key.dst.prefix_len() == 0
            && let Via::Seg6 { peer, .. } = r.via
        {
            slots.insert(peer, slot);
            peer_of_slot.insert(slot, peer);
        }
    }
    let local_routed: BTreeSet<IpNet> = actual
        .routes
        .values()
        .filter(|r| r.key.table == l.s.local_routing_table())
        .map(|r| r.key.dst)
        .collect();
    for r in actual.routes.values() {
        // Routes of the prefix at other metrics (a daemon's own: a MAG's hold and fallback
        // routes) are not the prefix's route; a reconcile removes them.
        if r.key.table == MAIN_TABLE && r.key.metric == l.s.route_metric {
            let route = match r.via {
                Via::Seg6 { peer, .. } => Some(PrefixRoute::Tunnel { peer }),
                Via::Nexthop { id } => {
                    l.s.slot_of_table(id)
                        .and_then(|slot| peer_of_slot.get(&slot))
                        .map(|&peer| PrefixRoute::Tunnel { peer })
                }
                Via::Dev { oif } => Some(match peer_of_link.get(&oif) {
                    Some(&peer) => PrefixRoute::Tunnel { peer },
                    None => PrefixRoute::Link {
                        ifindex: oif,
                        local_routing: local_routed.contains(&r.key.dst),
                    },
                }),
                _ => None,
            };
            match (route, r.key.dst) {
                (Some(route), IpNet::V6(dst)) => {
                    state.routes.insert(dst, route);
                }
                (Some(route), IpNet::V4(dst)) => {
                    state.routes4.insert(dst, route);
                }
                (None, _) => {}
            }
        } else if r.key.table == l.s.termination_table()
            && let Via::EndDt6 { oif, .. } = r.via
            && let IpNet::V6(dst) = r.key.dst
        {
            state.terminations.insert(dst.addr(), oif);
        }
    }
    for rule in &actual.rules {
        if rule.priority == l.s.priorities.uplink
            && let Some(src) = rule.src
            && let Some(slot) = l.s.slot_of_table(rule.table)
            && let Some(&peer) = peer_of_slot.get(&slot)
        {
            match src {
                IpNet::V6(src) => state.uplinks.insert(src, peer),
                IpNet::V4(src) => state.uplinks4.insert(src, peer),
            };
        }
    }
    let macs: BTreeMap<u32, &Vec<u8>> = actual.links.iter().map(|k| (k.index, &k.mac)).collect();
    for a in &actual.addresses {
        if a.prefix_len == LINK_LOCAL_PREFIX_LEN
            && let Some(mac) = macs.get(&a.ifindex)
            && let Ok(mac) = <[u8; 6]>::try_from(mac.as_slice())
        {
            state.access_links.insert(
                a.ifindex,
                AccessLinkAddresses {
                    link_layer_address: mac,
                    link_local: a.addr,
                },
            );
        }
    }
    slots.retain(|p, _| l.peers_needing_slots(&state).contains(p));
    (state, slots, tunnels)
}

/// What to send to turn `actual` into `want`, in a safe order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Diff {
    pub routes_to_replace: Vec<KRoute>,
    pub routes_to_delete: Vec<KRoute>,
    pub rules_to_add: Vec<KRule>,
    pub rules_to_delete: Vec<KRule>,
    /// The kernel's `0: lookup local`, to remove once ours is in (tunnels terminate here).
    pub foreign_local_rules_to_delete: Vec<KRule>,
    /// Put back the kernel's `0: lookup local` before ours goes (no tunnel ends any more).
    pub restore_boot_local: bool,
    pub addresses_to_replace: Vec<KAddr>,
    pub addresses_to_delete: Vec<KAddr>,
    pub macs_to_set: Vec<(u32, [u8; 6])>,
}

pub(crate) fn diff(l: &Layout, actual: &Actual, want: &Objects) -> Diff {
    let mut d = Diff::default();
    // Both maps in key order side by side: a million routes compared in one pass, without
    // a lookup per route.
    let mut have = actual.routes.iter().peekable();
    for (key, r) in &want.routes {
        while let Some((_, stale)) = have.next_if(|(k, _)| *k < key) {
            d.routes_to_delete.push(stale.clone());
        }
        match have.next_if(|(k, _)| *k == key) {
            Some((_, found)) if found == r => {}
            _ => d.routes_to_replace.push(r.clone()),
        }
    }
    d.routes_to_delete
        .extend(have.map(|(_, stale)| stale.clone()));
    d.rules_to_add = want.rules.difference(&actual.rules).cloned().collect();
    d.rules_to_delete = actual.rules.difference(&want.rules).cloned().collect();
    let ours = l.local_rule();
    if want.rules.contains(&ours) {
        d.foreign_local_rules_to_delete = actual
            .foreign_local_rules
            .iter()
            .filter(|r| r.same_match(&KRule::boot_local()))
            .cloned()
            .collect();
    } else {
        // Never leave the namespace without a local table lookup.
        let ours_goes = actual.rules.contains(&ours);
        d.restore_boot_local = ours_goes && actual.foreign_local_rules.is_empty();
    }
    d.addresses_to_replace = want
        .addresses
        .difference(&actual.addresses)
        .copied()
        .collect();
    d.addresses_to_delete = actual
        .addresses
        .difference(&want.addresses)
        .copied()
        .collect();
    let macs: BTreeMap<u32, &Vec<u8>> = actual.links.iter().map(|k| (k.index, &k.mac)).collect();
    d.macs_to_set = want
        .macs
        .iter()
        .filter(|(i, m)| {
            macs.get(i)
                .is_none_or(|have| have.as_slice() != m.as_slice())
        })
        .map(|(i, m)| (*i, *m))
        .collect();
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Change;

    fn net(s: &str) -> Ipv6Net {
        s.parse().unwrap()
    }
    fn a(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    fn layout(kind: Tunnel) -> Layout {
        Layout {
            s: Settings::new(3, 1500),
            kind,
            nexthops: false,
        }
    }

    fn mag_state() -> DesiredState {
        let mut s = DesiredState::new();
        for c in [
            Change::PrepareTermination(crate::Termination {
                local: a("2001:db8::2"),
                ifindex: 3,
            }),
            Change::SetLinkRoute {
                prefix: net("2001:db8:100::/64"),
                ifindex: 5,
                local_routing: true,
            },
            Change::SetLinkRoute {
                prefix: net("2001:db8:101::/64"),
                ifindex: 5,
                local_routing: false,
            },
            Change::SetUplink {
                prefix: net("2001:db8:100::/64"),
                peer: a("2001:db8::1"),
            },
            Change::SetUplink {
                prefix: net("2001:db8:101::/64"),
                peer: a("2001:db8::1"),
            },
            Change::SetDownlink {
                prefix: net("2001:db8:102::/64"),
                peer: a("2001:db8::3"),
            },
            Change::PrepareAccessLink {
                ifindex: 5,
                link: AccessLinkAddresses {
                    link_layer_address: [2, 0, 0x5e, 0, 0x53, 1],
                    link_local: a("fe80::1"),
                },
            },
            Change::SetLinkRoute4 {
                prefix: net4("198.51.100.7/32"),
                ifindex: 5,
                local_routing: true,
            },
            Change::SetUplink4 {
                prefix: net4("198.51.100.7/32"),
                peer: a("2001:db8::1"),
            },
            Change::SetDownlink4 {
                prefix: net4("198.51.100.9/32"),
                peer: a("2001:db8::3"),
            },
        ] {
            s.apply(&c);
        }
        s
    }

    fn net4(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    fn as_actual(o: &Objects, links: Vec<KLink>) -> Actual {
        Actual {
            routes: o.routes.clone(),
            rules: o.rules.clone(),
            foreign_local_rules: vec![],
            addresses: o.addresses.clone(),
            links,
            nexthops: vec![],
        }
    }

    #[test]
    fn seg6_mag_objects_follow_the_recipe() {
        let l = layout(Tunnel::Seg6);
        let st = mag_state();
        let slots = assign_slots(&l.s, &BTreeMap::new(), &l.peers_needing_slots(&st)).unwrap();
        assert_eq!(slots, BTreeMap::from([(a("2001:db8::1"), 0)]));
        let o = objects(&l, &st, &slots, &BTreeMap::new()).unwrap();
        let rules: Vec<String> = o.rules.iter().map(|r| r.to_string()).collect();
        assert_eq!(
            rules,
            [
                // RFC 5844 §3.1.3: IPv4 home addresses come IPv4-in-IPv6 (Next Header 4).
                "pref 100 to 2001:db8::2/128 ipproto 4 lookup 13516 proto 135",
                "pref 100 to 2001:db8::2/128 ipproto 41 lookup 13500 proto 135",
                "pref 1000 lookup local proto 135",
                "pref 1100 lookup 13501 proto 135",
                "pref 1200 from 2001:db8:100::/64 lookup 13502 proto 135",
                "pref 1200 from 2001:db8:101::/64 lookup 13502 proto 135",
                "-4 pref 1100 lookup 13501 proto 135",
                "-4 pref 1200 from 198.51.100.7/32 lookup 13502 proto 135",
            ]
        );
        let routes: Vec<String> = o.routes.values().map(|r| r.to_string()).collect();
        assert_eq!(
            routes,
            [
                "198.51.100.7/32 dev #5 table main metric 1000 proto 135",
                "198.51.100.9/32 encap seg6 mode encap.red segs 2001:db8::3 dev #3 table main \
                 metric 1000 mtu 1460 proto 135",
                "2001:db8:100::/64 dev #5 table main metric 1000 proto 135",
                "2001:db8:101::/64 dev #5 table main metric 1000 proto 135",
                "2001:db8:102::/64 encap seg6 mode encap.red segs 2001:db8::3 dev #3 table main \
                 metric 1000 mtu 1460 proto 135",
                "2001:db8::2/128 encap seg6local action End.DT6 table main dev #3 table 13500 \
                 metric 1000 proto 135",
                "198.51.100.7/32 dev #5 table 13501 metric 1000 proto 135",
                "2001:db8:100::/64 dev #5 table 13501 metric 1000 proto 135",
                "0.0.0.0/0 encap seg6 mode encap.red segs 2001:db8::1 dev #3 table 13502 \
                 metric 1000 mtu 1460 proto 135",
                "::/0 encap seg6 mode encap.red segs 2001:db8::1 dev #3 table 13502 metric 1000 \
                 mtu 1460 proto 135",
                "2001:db8::2/128 encap seg6local action End.DX4 nh4 0.0.0.0 dev #3 table 13516 \
                 metric 1000 proto 135",
            ]
        );
        assert_eq!(o.addresses.len(), 1);
        assert_eq!(o.macs.get(&5), Some(&[2, 0, 0x5e, 0, 0x53, 1]));
    }

    /// ip6tnl: IPv4 home addresses go into the same per-peer link as IPv6 (mode any), by
    /// an IPv4 route to the link; no seg6local termination objects.
    #[test]
    fn ip6tnl_routes_ipv4_into_the_peer_link() {
        let l = layout(Tunnel::Ip6tnl);
        let st = mag_state();
        let slots = assign_slots(&l.s, &BTreeMap::new(), &l.peers_needing_slots(&st)).unwrap();
        assert_eq!(slots.len(), 2, "the LMA and the other MAG");
        let tunnels: BTreeMap<Ipv6Addr, u32> = slots.iter().map(|(p, s)| (*p, 100 + s)).collect();
        let o = objects(&l, &st, &slots, &tunnels).unwrap();
        let routes: Vec<String> = o.routes.values().map(|r| r.to_string()).collect();
        let lma_link = tunnels[&a("2001:db8::1")];
        let mag_link = tunnels[&a("2001:db8::3")];
        for want in [
            format!("198.51.100.9/32 dev #{mag_link} table main metric 1000 proto 135"),
            format!("0.0.0.0/0 dev #{lma_link} table 13502 metric 1000 proto 135"),
            "198.51.100.7/32 dev #5 table main metric 1000 proto 135".to_string(),
        ] {
            assert!(routes.contains(&want), "{want} not in {routes:?}");
        }
        assert!(routes.iter().all(|r| !r.contains("seg6")), "{routes:?}");
        let t = l.tunnel_link(0, a("2001:db8::2"), a("2001:db8::1"));
        assert_eq!(t.name, "pmip6t0");
    }

    /// With nexthop objects, a route into a peer's link names the object of the peer's slot
    /// (IPv4 routes too), never the link.
    #[test]
    fn routes_into_links_name_the_slots_nexthop() {
        let mut l = layout(Tunnel::Tun);
        l.nexthops = true;
        let st = mag_state();
        let slots = assign_slots(&l.s, &BTreeMap::new(), &l.peers_needing_slots(&st)).unwrap();
        let tunnels: BTreeMap<Ipv6Addr, u32> = slots.iter().map(|(p, s)| (*p, 100 + s)).collect();
        let o = objects(&l, &st, &slots, &tunnels).unwrap();
        let routes: Vec<String> = o.routes.values().map(|r| r.to_string()).collect();
        let lma = l.nexthop_id(slots[&a("2001:db8::1")]);
        let mag = l.nexthop_id(slots[&a("2001:db8::3")]);
        assert_ne!(lma, mag);
        for want in [
            format!("198.51.100.9/32 nhid {mag} table main metric 1000 proto 135"),
            format!("0.0.0.0/0 nhid {lma} table 13502 metric 1000 proto 135"),
            "198.51.100.7/32 dev #5 table main metric 1000 proto 135".to_string(),
        ] {
            assert!(routes.contains(&want), "{want} not in {routes:?}");
        }
        assert!(routes.iter().all(|r| !r.contains("dev #10")), "{routes:?}");
        // Only this backend's ids of its protocol are its own.
        let nh = |id, protocol| KNexthop {
            id,
            protocol,
            ipv6: true,
            dev: Some(100),
        };
        assert!(l.owns_nexthop(&nh(lma, l.s.route_protocol)));
        assert!(!l.owns_nexthop(&nh(lma, 4)));
        assert!(!l.owns_nexthop(&nh(l.s.termination_table(), l.s.route_protocol)));
    }

    #[test]
    fn read_back_inverts_objects() {
        for (kind, nexthops) in [
            (Tunnel::Seg6, false),
            (Tunnel::Ip6tnl, false),
            (Tunnel::Ip6tnl, true),
        ] {
            let mut l = layout(kind);
            l.nexthops = nexthops;
            let mut st = mag_state();
            if kind == Tunnel::Ip6tnl {
                // ip6tnl terminations are only visible through their links.
                st.terminations.clear();
                st.terminations.insert(a("2001:db8::2"), 3);
            }
            let slots = assign_slots(&l.s, &BTreeMap::new(), &l.peers_needing_slots(&st)).unwrap();
            let mut links = vec![KLink {
                index: 5,
                name: "acc0".into(),
                mac: vec![2, 0, 0x5e, 0, 0x53, 1],
                ..KLink::default()
            }];
            let mut tunnels = BTreeMap::new();
            if kind == Tunnel::Ip6tnl {
                for (peer, slot) in &slots {
                    let index = 100 + slot;
                    tunnels.insert(*peer, index);
                    links.push(KLink {
                        index,
                        name: l.s.tunnel_name(*slot),
                        ip6tnl: Some((3, a("2001:db8::2"), *peer)),
                        ip6tnl_proto: Some(crate::msg::IP6TNL_PROTO_ANY),
                        ..KLink::default()
                    });
                }
            }
            let o = objects(&l, &st, &slots, &tunnels).unwrap();
            let (back, back_slots, back_tunnels) = read_back(&l, &as_actual(&o, links));
            assert_eq!(back, st, "{kind:?}, nexthops {nexthops}");
            assert_eq!(back_slots, slots);
            assert_eq!(back_tunnels, tunnels);
        }
    }

    #[test]
    fn diff_of_equal_states_is_empty_and_stale_objects_go() {
        let l = layout(Tunnel::Seg6);
        let st = mag_state();
        let slots = assign_slots(&l.s, &BTreeMap::new(), &l.peers_needing_slots(&st)).unwrap();
        let o = objects(&l, &st, &slots, &BTreeMap::new()).unwrap();
        let links = vec![KLink {
            index: 5,
            mac: vec![2, 0, 0x5e, 0, 0x53, 1],
            ..KLink::default()
        }];
        let mut actual = as_actual(&o, links);
        assert_eq!(diff(&l, &actual, &o), Diff::default());

        let stale = l.downlink(
            net("2001:db8:1::/64"),
            Via::Seg6 {
                peer: a("2001:db8::9"),
                oif: 3,
            },
        );
        actual.routes.insert(stale.key, stale.clone());
        let d = diff(&l, &actual, &o);
        assert_eq!(d.routes_to_delete, [stale]);
        assert!(d.routes_to_replace.is_empty());
    }

    proptest::proptest! {
        /// The one-pass comparison of two route maps finds what a lookup per route finds.
        #[test]
        fn route_diff_is_the_lookup_diff(
            want in proptest::collection::vec((0u32..3, 0u8..40, 0u32..2, 0u16..3), 0..60),
            have in proptest::collection::vec((0u32..3, 0u8..40, 0u32..2, 0u16..3), 0..60),
        ) {
            let l = layout(Tunnel::Seg6);
            let routes = |v: &[(u32, u8, u32, u16)]| -> BTreeMap<RouteKey, KRoute> {
                v.iter()
                    .map(|&(t, d, m, peer)| {
                        let mut r = l.downlink(
                            Ipv6Net::new(Ipv6Addr::new(0x2001, 0xdb8, u16::from(d), 0, 0, 0, 0, 0), 48)
                                .unwrap(),
                            Via::Seg6 { peer: Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, peer), oif: 3 },
                        );
                        r.key.table = 254 + t;
                        r.key.metric = 1000 + m;
                        (r.key, r)
                    })
                    .collect()
            };
            let want = Objects { routes: routes(&want), ..Objects::default() };
            let actual = Actual { routes: routes(&have), ..Actual::default() };
            let d = diff(&l, &actual, &want);
            let replace: Vec<KRoute> = want
                .routes
                .iter()
                .filter(|(k, r)| actual.routes.get(k) != Some(r))
                .map(|(_, r)| r.clone())
                .collect();
            let delete: Vec<KRoute> = actual
                .routes
                .iter()
                .filter(|(k, _)| !want.routes.contains_key(k))
                .map(|(_, r)| r.clone())
                .collect();
            proptest::prop_assert_eq!(d.routes_to_replace, replace);
            proptest::prop_assert_eq!(d.routes_to_delete, delete);
        }
    }

    #[test]
    fn handover_is_one_replace() {
        let l = layout(Tunnel::Seg6);
        let p = net("2001:db8:1::/64");
        let mut st = DesiredState::new();
        st.apply(&Change::SetDownlink {
            prefix: p,
            peer: a("2001:db8::2"),
        });
        let before = objects(&l, &st, &BTreeMap::new(), &BTreeMap::new()).unwrap();
        st.apply(&Change::SetDownlink {
            prefix: p,
            peer: a("2001:db8::3"),
        });
        let after = objects(&l, &st, &BTreeMap::new(), &BTreeMap::new()).unwrap();
        let d = diff(&l, &as_actual(&before, vec![]), &after);
        assert_eq!(d.routes_to_replace.len(), 1);
        assert!(d.routes_to_delete.is_empty());
    }

    #[test]
    fn boot_local_rule_goes_with_the_first_termination_and_comes_back_after_the_last() {
        let l = layout(Tunnel::Seg6);
        let mut st = DesiredState::new();
        st.apply(&Change::PrepareTermination(crate::Termination {
            local: a("2001:db8::1"),
            ifindex: 3,
        }));
        let want = objects(&l, &st, &BTreeMap::new(), &BTreeMap::new()).unwrap();
        let fresh = Actual {
            foreign_local_rules: vec![KRule::boot_local()],
            ..Actual::default()
        };
        let d = diff(&l, &fresh, &want);
        assert_eq!(d.foreign_local_rules_to_delete, [KRule::boot_local()]);
        assert!(d.rules_to_add.contains(&l.local_rule()));
        assert!(!d.restore_boot_local);

        let programmed = as_actual(&want, vec![]);
        let d = diff(&l, &programmed, &Objects::default());
        assert!(d.restore_boot_local);
        assert!(d.rules_to_delete.contains(&l.local_rule()));
    }

    #[test]
    fn slots_are_kept_and_exhaustion_is_an_error() {
        let mut s = Settings::new(3, 1500);
        s.max_peers = 2;
        let existing = BTreeMap::from([(a("2001:db8::2"), 1)]);
        let needed = BTreeSet::from([a("2001:db8::1"), a("2001:db8::2")]);
        let slots = assign_slots(&s, &existing, &needed).unwrap();
        assert_eq!(slots[&a("2001:db8::2")], 1);
        assert_eq!(slots[&a("2001:db8::1")], 0);
        let needed = BTreeSet::from([a("2001:db8::1"), a("2001:db8::2"), a("2001:db8::3")]);
        let err = assign_slots(&s, &existing, &needed).unwrap_err();
        assert!(
            matches!(err, Error::PeersExhausted { slots: 2, .. }),
            "{err}"
        );
    }

    #[test]
    fn ownership_is_protocol_and_table_range() {
        let l = layout(Tunnel::Seg6);
        let mine = l.local_route(net("2001:db8:1::/64"), 4);
        assert!(l.owns_route(&mine));
        let foreign = KRoute {
            protocol: 4,
            ..mine.clone()
        };
        assert!(!l.owns_route(&foreign));
        let elsewhere = KRoute {
            key: RouteKey::new(100, net("2001:db8:1::/64")),
            ..mine
        };
        assert!(!l.owns_route(&elsewhere));
    }
}
