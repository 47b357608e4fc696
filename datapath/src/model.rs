//! What a daemon asks of the datapath, as values: the [`Change`]s it makes one at a time and
//! the [`DesiredState`] they add up to. Pure code; [`DesiredState::apply`] defines what every
//! change means, for the kernel backends and the fake alike.

use std::collections::{BTreeMap, HashSet};
use std::net::Ipv6Addr;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use crate::PrefixRoutes;

/// A local tunnel end: packets tunnelled to `local` (the LMA address, or a MAG's proxy-CoA)
/// arriving on link `ifindex` are decapsulated and routed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Termination {
    pub local: Ipv6Addr,
    /// The transport link the tunnelled packets come in by.
    pub ifindex: u32,
}

/// Where traffic destined to a prefix goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PrefixRoute {
    /// Into the RFC 2473 tunnel to `peer`: at the LMA a home network prefix to its proxy-CoA
    /// (downlink); at a MAG a prefix forwarded to another MAG during a fast handover.
    Tunnel { peer: Ipv6Addr },
    /// Onto a local link: at a MAG a mobile node's prefix on its access link, or a TUN device
    /// that buffers its packets during a handover.
    Link {
        ifindex: u32,
        /// EnableMAGLocalRouting (RFC 5213 §9.2, §6.10.3): traffic to this prefix from a
        /// mobile node on the same MAG stays local instead of going through the LMA.
        local_routing: bool,
    },
}

/// How a MAG presents itself on an access link so that every MAG looks like the same router
/// to a mobile node (RFC 5213 §6.8, §6.9.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AccessLinkAddresses {
    /// Link-layer address set on the link (FixedMAGLinkLayerAddressOnAllAccessLinks).
    pub link_layer_address: [u8; 6],
    /// Link-local address added on the link as a /64, without duplicate address detection
    /// (every MAG has the same one), e.g. `fe80::1`.
    pub link_local: Ipv6Addr,
}

/// The complete state a backend should have programmed. Prefixes are kept truncated to their
/// length.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DesiredState {
    /// Local tunnel ends, by local address; the value is the ingress link.
    pub terminations: BTreeMap<Ipv6Addr, u32>,
    /// Traffic destined to each prefix (a compact map: one per binding at an LMA).
    pub routes: PrefixRoutes,
    /// Traffic sourced from each prefix goes into the tunnel to this peer (MAG uplink to the
    /// LMA; MAG to MAG reverse tunnel during a fast handover).
    pub uplinks: BTreeMap<Ipv6Net, Ipv6Addr>,
    /// Traffic destined to each IPv4 prefix (RFC 5844 IPv4 home addresses, usually /32):
    /// the same tunnels carry it IPv4-in-IPv6 (RFC 5844 §3.1.3). Compact too: one per
    /// dual-stack or IPv4 binding at an LMA.
    pub routes4: PrefixRoutes<Ipv4Net>,
    /// Traffic sourced from each IPv4 prefix goes into the tunnel to this peer.
    pub uplinks4: BTreeMap<Ipv4Net, Ipv6Addr>,
    /// Prepared access links, by link index.
    pub access_links: BTreeMap<u32, AccessLinkAddresses>,
}

/// One change to the datapath. Every change is idempotent: an add replaces what the same
/// key had, a removal of something absent does nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Change {
    /// Terminate tunnels on a local address.
    PrepareTermination(Termination),
    /// Stop terminating tunnels on `local`.
    RemoveTermination { local: Ipv6Addr },
    /// Tunnel traffic destined to `prefix` to `peer` ([`PrefixRoute::Tunnel`]); replaces any
    /// route of the prefix, so a handover is one atomic replace.
    SetDownlink { prefix: Ipv6Net, peer: Ipv6Addr },
    /// Removes the route of `prefix` if it is a tunnel route.
    RemoveDownlink { prefix: Ipv6Net },
    /// Tunnel traffic sourced from `prefix` to `peer`.
    SetUplink { prefix: Ipv6Net, peer: Ipv6Addr },
    /// Stop tunnelling traffic sourced from `prefix`.
    RemoveUplink { prefix: Ipv6Net },
    /// Route `prefix` onto link `ifindex` ([`PrefixRoute::Link`]); replaces any route of the
    /// prefix.
    SetLinkRoute {
        prefix: Ipv6Net,
        ifindex: u32,
        local_routing: bool,
    },
    /// Removes the route of `prefix` if it goes onto link `ifindex`.
    RemoveLinkRoute { prefix: Ipv6Net, ifindex: u32 },
    /// Set the link-layer address of access link `ifindex` and add the link-local address.
    PrepareAccessLink {
        ifindex: u32,
        link: AccessLinkAddresses,
    },
    /// Remove the link-local address added by [`Change::PrepareAccessLink`] (the link-layer
    /// address is left as it is).
    RemoveAccessLink { ifindex: u32 },
    /// [`Change::SetDownlink`] for an IPv4 prefix (an IPv4 home address, RFC 5844 §3.1.2.2:
    /// the LMA's host route into the tunnel; at a MAG, forwarding to another MAG).
    SetDownlink4 { prefix: Ipv4Net, peer: Ipv6Addr },
    /// [`Change::RemoveDownlink`] for an IPv4 prefix.
    RemoveDownlink4 { prefix: Ipv4Net },
    /// [`Change::SetUplink`] for an IPv4 prefix (RFC 5844 §3.2.3.2: the MAG's route for the
    /// node's IPv4 packets into the tunnel).
    SetUplink4 { prefix: Ipv4Net, peer: Ipv6Addr },
    /// [`Change::RemoveUplink`] for an IPv4 prefix.
    RemoveUplink4 { prefix: Ipv4Net },
    /// [`Change::SetLinkRoute`] for an IPv4 prefix (the node's IPv4 home address on its
    /// access link).
    SetLinkRoute4 {
        prefix: Ipv4Net,
        ifindex: u32,
        local_routing: bool,
    },
    /// [`Change::RemoveLinkRoute`] for an IPv4 prefix.
    RemoveLinkRoute4 { prefix: Ipv4Net, ifindex: u32 },
    /// Sends the end marker of `prefix` ([`crate::marker`]) to `peer`, the MAG the prefix's
    /// route went to before a handover: after the changes before it in the batch, and after
    /// every packet routed into the tunnel to `peer` before them. Changes no state.
    SendEndMarker { prefix: IpNet, peer: Ipv6Addr },
    /// Holds what `from` sends through the tunnel to `prefix` until the end marker of
    /// `marker` comes, or `wait` passes ([`crate::marker::Holds::arm`]). Only the userspace
    /// tunnel can hold; the kernel's decapsulation lets everything through. Changes no state.
    HoldForEndMarker {
        prefix: IpNet,
        marker: IpNet,
        from: Ipv6Addr,
        wait: std::time::Duration,
    },
}

/// What a change replaced or removed: the value its key had before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Previous {
    None,
    Termination(Option<u32>),
    Route(Option<PrefixRoute>),
    Uplink(Option<Ipv6Addr>),
    AccessLinkAddresses(Option<AccessLinkAddresses>),
}

impl DesiredState {
    /// Nothing at all: what [`crate::Datapath::cleanup`] reconciles to.
    pub fn new() -> Self {
        Self::default()
    }

    /// True when nothing is desired.
    pub fn is_empty(&self) -> bool {
        self.terminations.is_empty()
            && self.routes.is_empty()
            && self.uplinks.is_empty()
            && self.routes4.is_empty()
            && self.uplinks4.is_empty()
            && self.access_links.is_empty()
    }

    /// Applies one change, as every backend does.
    pub fn apply(&mut self, change: &Change) {
        self.apply_returning_previous(change);
    }

    pub(crate) fn apply_returning_previous(&mut self, change: &Change) -> Previous {
        match *change {
            Change::PrepareTermination(t) => {
                Previous::Termination(self.terminations.insert(t.local, t.ifindex))
            }
            Change::RemoveTermination { local } => {
                Previous::Termination(self.terminations.remove(&local))
            }
            Change::SetDownlink { prefix, peer } => Previous::Route(
                self.routes
                    .insert(prefix.trunc(), PrefixRoute::Tunnel { peer }),
            ),
            Change::RemoveDownlink { prefix } => {
                let prefix = prefix.trunc();
                match self.routes.get(&prefix) {
                    Some(PrefixRoute::Tunnel { .. }) => {
                        Previous::Route(self.routes.remove(&prefix))
                    }
                    _ => Previous::None,
                }
            }
            Change::SetUplink { prefix, peer } => {
                Previous::Uplink(self.uplinks.insert(prefix.trunc(), peer))
            }
            Change::RemoveUplink { prefix } => {
                Previous::Uplink(self.uplinks.remove(&prefix.trunc()))
            }
            Change::SetLinkRoute {
                prefix,
                ifindex,
                local_routing,
            } => Previous::Route(self.routes.insert(
                prefix.trunc(),
                PrefixRoute::Link {
                    ifindex,
                    local_routing,
                },
            )),
            Change::RemoveLinkRoute { prefix, ifindex } => {
                let prefix = prefix.trunc();
                match self.routes.get(&prefix) {
                    Some(PrefixRoute::Link { ifindex: i, .. }) if i == ifindex => {
                        Previous::Route(self.routes.remove(&prefix))
                    }
                    _ => Previous::None,
                }
            }
            Change::PrepareAccessLink { ifindex, link } => {
                Previous::AccessLinkAddresses(self.access_links.insert(ifindex, link))
            }
            Change::RemoveAccessLink { ifindex } => {
                Previous::AccessLinkAddresses(self.access_links.remove(&ifindex))
            }
            Change::SendEndMarker { .. } | Change::HoldForEndMarker { .. } => Previous::None,
            Change::SetDownlink4 { prefix, peer } => Previous::Route(
                self.routes4
                    .insert(prefix.trunc(), PrefixRoute::Tunnel { peer }),
            ),
            Change::RemoveDownlink4 { prefix } => {
                let prefix = prefix.trunc();
                match self.routes4.get(&prefix) {
                    Some(PrefixRoute::Tunnel { .. }) => {
                        Previous::Route(self.routes4.remove(&prefix))
                    }
                    _ => Previous::None,
                }
            }
            Change::SetUplink4 { prefix, peer } => {
                Previous::Uplink(self.uplinks4.insert(prefix.trunc(), peer))
            }
            Change::RemoveUplink4 { prefix } => {
                Previous::Uplink(self.uplinks4.remove(&prefix.trunc()))
            }
            Change::SetLinkRoute4 {
                prefix,
                ifindex,
                local_routing,
            } => Previous::Route(self.routes4.insert(
                prefix.trunc(),
                PrefixRoute::Link {
                    ifindex,
                    local_routing,
                },
            )),
            Change::RemoveLinkRoute4 { prefix, ifindex } => {
                let prefix = prefix.trunc();
                match self.routes4.get(&prefix) {
                    Some(PrefixRoute::Link { ifindex: i, .. }) if i == ifindex => {
                        Previous::Route(self.routes4.remove(&prefix))
                    }
                    _ => Previous::None,
                }
            }
        }
    }

    /// Whether any IPv4 prefix is routed or tunnelled: IPv4 forwarding is needed.
    pub fn has_ipv4(&self) -> bool {
        !(self.routes4.is_empty() && self.uplinks4.is_empty())
    }

    /// Peers some prefix (IPv6 or IPv4) is tunnelled to, either way.
    pub fn peers(&self) -> std::collections::BTreeSet<Ipv6Addr> {
        let down = self
            .routes
            .values()
            .chain(self.routes4.values())
            .filter_map(|r| match r {
                PrefixRoute::Tunnel { peer } => Some(peer),
                PrefixRoute::Link { .. } => None,
            });
        down.chain(self.uplinks.values().copied())
            .chain(self.uplinks4.values().copied())
            .collect()
    }

    /// Peers some prefix of either family is tunnelled to from here (uplinks).
    pub(crate) fn uplink_peers(&self) -> std::collections::BTreeSet<Ipv6Addr> {
        self.uplinks
            .values()
            .chain(self.uplinks4.values())
            .copied()
            .collect()
    }

    /// Whether any IPv6 prefix is routed locally with local routing on.
    pub(crate) fn any_local_routing(&self) -> bool {
        self.routes.values().any(|r| is_local_routing(&r))
    }

    /// Whether any IPv4 prefix is routed locally with local routing on.
    pub(crate) fn any_local_routing4(&self) -> bool {
        self.routes4.values().any(|r| is_local_routing(&r))
    }
}

fn is_local_routing(r: &PrefixRoute) -> bool {
    matches!(
        r,
        PrefixRoute::Link {
            local_routing: true,
            ..
        }
    )
}

/// How many kernel objects (or, for the fake backend, state entries) a reconcile added
/// (or replaced) and removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub added: usize,
    pub removed: usize,
}

/// What [`crate::Datapath::reconcile`] did.
///
/// For the kernel backends: routes, policy rules, addresses and links (ip6tnl links created
/// or removed, and link-layer addresses set). For the fake backend: prefix routes of both
/// families as `routes`, uplinks and terminations as `rules`, access links as `addresses`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReconcileReport {
    pub routes: Counts,
    pub rules: Counts,
    pub addresses: Counts,
    pub links: Counts,
}

impl ReconcileReport {
    /// True when the reconcile found everything as desired.
    pub fn is_noop(&self) -> bool {
        *self == ReconcileReport::default()
    }
}

/// A reconcile that runs beside the daemon's changes ([`crate::Kernel::reconcile_pending`]).
#[derive(Debug, Default)]
pub(crate) struct Pending {
    /// Main-table destinations a change sent a request for since the reconcile took its
    /// picture of the state: the change wrote them after the picture, so the reconcile
    /// leaves them alone.
    pub(crate) touched: HashSet<IpNet>,
    /// A change of another kind (uplinks, link routes, access links, terminations) was
    /// applied: the reconcile gives way to a whole one, under the lock.
    pub(crate) other: bool,
}

impl Pending {
    /// Records `c`, about to be planned against `state`.
    pub(crate) fn note(&mut self, c: &Change, state: &DesiredState) {
        let tunnel = |r: Option<&PrefixRoute>| matches!(r, Some(PrefixRoute::Tunnel { .. }));
        let (dst, sends, replaces_tunnel) = match *c {
            Change::SetDownlink { prefix, .. } => {
                let p = prefix.trunc();
                let old = state.routes.get(&p);
                (IpNet::from(p), true, old.is_none() || tunnel(old.as_ref()))
            }
            Change::SetDownlink4 { prefix, .. } => {
                let p = prefix.trunc();
                let old = state.routes4.get(&p);
                (IpNet::from(p), true, old.is_none() || tunnel(old.as_ref()))
            }
            // A removal sends a request only for a tunnel route the shadow has.
            Change::RemoveDownlink { prefix } => {
                let p = prefix.trunc();
                (IpNet::from(p), tunnel(state.routes.get(&p).as_ref()), true)
            }
            Change::RemoveDownlink4 { prefix } => {
                let p = prefix.trunc();
                (IpNet::from(p), tunnel(state.routes4.get(&p).as_ref()), true)
            }
            // Packets, not state: nothing for a reconcile to look at.
            Change::SendEndMarker { .. } | Change::HoldForEndMarker { .. } => return,
            _ => {
                self.other = true;
                return;
            }
        };
        if sends {
            self.touched.insert(dst);
        }
        // A tunnel route over a link route also removes the link route's other table entry.
        if !replaces_tunnel {
            self.other = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv6Net {
        s.parse().unwrap()
    }
    fn a(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    /// What a pending reconcile leaves to the changes: a downlink a change wrote, or removed
    /// where the state had it; a removal of what the state lacks sends nothing and is left
    /// to the reconcile; any other kind of change makes the reconcile a whole one.
    #[test]
    fn a_pending_reconcile_notes_the_routes_changes_wrote() {
        let mut state = DesiredState::new();
        let (p1, p2, p3) = (
            net("2001:db8:1::/64"),
            net("2001:db8:2::/64"),
            net("2001:db8:3::/64"),
        );
        state.apply(&Change::SetDownlink {
            prefix: p2,
            peer: a("2001:db8::2"),
        });
        let mut p = Pending::default();
        p.note(
            &Change::SetDownlink {
                prefix: net("2001:db8:1::1/64"),
                peer: a("2001:db8::3"),
            },
            &state,
        );
        p.note(&Change::RemoveDownlink { prefix: p2 }, &state);
        p.note(&Change::RemoveDownlink { prefix: p3 }, &state);
        let want: HashSet<IpNet> = [p1.into(), p2.into()].into();
        assert_eq!(p.touched, want);
        assert!(!p.other);
        p.note(
            &Change::SetUplink {
                prefix: p1,
                peer: a("2001:db8::3"),
            },
            &state,
        );
        assert!(p.other);
    }

    #[test]
    fn downlink_replaces_local_route_and_removals_check_the_kind() {
        let mut s = DesiredState::new();
        let p = net("2001:db8:1::/64");
        s.apply(&Change::SetLinkRoute {
            prefix: p,
            ifindex: 4,
            local_routing: true,
        });
        assert!(s.any_local_routing());
        let prev = s.apply_returning_previous(&Change::SetDownlink {
            prefix: p,
            peer: a("2001:db8::2"),
        });
        assert_eq!(
            prev,
            Previous::Route(Some(PrefixRoute::Link {
                ifindex: 4,
                local_routing: true
            }))
        );
        assert!(!s.any_local_routing());
        // Not a local route any more: removing it as one does nothing.
        s.apply(&Change::RemoveLinkRoute {
            prefix: p,
            ifindex: 4,
        });
        assert_eq!(s.routes.len(), 1);
        s.apply(&Change::RemoveDownlink { prefix: p });
        assert!(s.is_empty());
        // Absent: still fine.
        s.apply(&Change::RemoveDownlink { prefix: p });
        assert!(s.is_empty());
    }

    #[test]
    fn prefixes_are_truncated() {
        let mut s = DesiredState::new();
        s.apply(&Change::SetUplink {
            prefix: net("2001:db8:1::5/64"),
            peer: a("2001:db8::1"),
        });
        assert!(s.uplinks.contains_key(&net("2001:db8:1::/64")));
        s.apply(&Change::RemoveUplink {
            prefix: net("2001:db8:1::/64"),
        });
        assert!(s.is_empty());
    }

    #[test]
    fn ipv4_changes_keep_their_own_maps() {
        let mut s = DesiredState::new();
        let v4: Ipv4Net = "198.51.100.7/32".parse().unwrap();
        s.apply(&Change::SetLinkRoute4 {
            prefix: v4,
            ifindex: 4,
            local_routing: true,
        });
        assert!(s.any_local_routing4() && !s.any_local_routing());
        assert!(s.has_ipv4() && s.routes.is_empty());
        // A fast handover: the same address forwarded to another MAG replaces the link route.
        let prev = s.apply_returning_previous(&Change::SetDownlink4 {
            prefix: v4,
            peer: a("2001:db8::3"),
        });
        assert!(matches!(
            prev,
            Previous::Route(Some(PrefixRoute::Link { .. }))
        ));
        s.apply(&Change::RemoveLinkRoute4 {
            prefix: v4,
            ifindex: 4,
        });
        assert_eq!(s.routes4.len(), 1, "not a link route any more");
        s.apply(&Change::SetUplink4 {
            prefix: "198.51.100.7/24".parse().unwrap(),
            peer: a("2001:db8::1"),
        });
        assert!(s.uplinks4.contains_key(&"198.51.100.0/24".parse().unwrap()));
        assert_eq!(s.peers().len(), 2);
        assert_eq!(
            s.uplink_peers().into_iter().collect::<Vec<_>>(),
            [a("2001:db8::1")]
        );
        s.apply(&Change::RemoveDownlink4 { prefix: v4 });
        s.apply(&Change::RemoveUplink4 {
            prefix: "198.51.100.0/24".parse().unwrap(),
        });
        assert!(s.is_empty() && !s.has_ipv4());
    }

    #[test]
    fn peers_cover_both_directions() {
        let mut s = DesiredState::new();
        s.apply(&Change::SetDownlink {
            prefix: net("2001:db8:1::/64"),
            peer: a("2001:db8::2"),
        });
        s.apply(&Change::SetUplink {
            prefix: net("2001:db8:1::/64"),
            peer: a("2001:db8::3"),
        });
        assert_eq!(
            s.peers().into_iter().collect::<Vec<_>>(),
            [a("2001:db8::2"), a("2001:db8::3")]
        );
    }
}
