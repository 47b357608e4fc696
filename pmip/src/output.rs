//! What the state machines ask their daemon to do: send bytes, program the datapath, send a
//! Router Advertisement, or report an event. All of it is plain data the tests assert on.

use core::time::Duration;
use std::net::Ipv6Addr;

use ipnet::{IpNet, Ipv6Net};

use crate::types::LinkLayerAddress;

/// A Mobility Header to send over IPv6 (next header 135) from `src` to `dst`, checksum filled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    pub payload: Vec<u8>,
}

/// An access interface, as the daemon numbers it (the kernel's ifindex).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AccessLink(pub u32);

/// A change to the kernel datapath. Each command is idempotent: `Set*` replaces whatever was
/// there for the prefix, `Remove*` tolerates absence. A prefix is a home network prefix, or
/// an IPv4 home address as a `/32` (RFC 5844 §3.1.2.2, §3.2.3.2): the same tunnels carry
/// both, IPv4-in-IPv6.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatapathCommand {
    /// Tunnel traffic for `prefix` to `peer`. At the LMA the node's MAG, its proxy-CoA
    /// (RFC 5213 §5.6.1, §5.6.2); at a MAG during a fast handover, the new MAG the previous
    /// one forwards to (RFC 5949 §4.2).
    SetDownlink {
        prefix: IpNet,
        peer: Ipv6Addr,
    },
    /// LMA: drop traffic for `prefix` (a de-registered session waiting to be deleted,
    /// RFC 5213 §5.3.5).
    DropDownlink {
        prefix: IpNet,
    },
    /// Stop tunnelling traffic for `prefix`: the LMA forgets the session; a MAG stops
    /// forwarding it to another MAG.
    RemoveDownlink {
        prefix: IpNet,
    },
    /// MAG: tunnel traffic from `prefix` to `peer`: the LMA (RFC 5213 §6.10.5), or during a
    /// fast handover the previous MAG (RFC 5949 §4.1 step (j)).
    SetUplink {
        prefix: IpNet,
        peer: Ipv6Addr,
    },
    RemoveUplink {
        prefix: IpNet,
    },
    /// MAG: `prefix` is on-link on `link`; with `local_routing`, traffic between nodes of
    /// this MAG stays local (EnableMAGLocalRouting, RFC 5213 §6.10.3).
    SetLinkRoute {
        prefix: IpNet,
        link: AccessLink,
        local_routing: bool,
    },
    RemoveLinkRoute {
        prefix: IpNet,
        link: AccessLink,
    },
    /// MAG, fast handover: hold traffic for `prefix` in the buffer (RFC 5949 §4.1: "packets
    /// ... MAY be buffered"), bounded by `fast_handover.buffer_packets` / `buffer_bytes`.
    Buffer {
        prefix: IpNet,
    },
    /// MAG, fast handover: release what the buffer holds for `prefix`, in arrival order.
    /// Without `deliver`, along the prefix's route as it is now (the tunnel to the new MAG) and
    /// buffering stops. With `deliver`, straight to the node on its link (its link-layer
    /// address), and whatever else reaches the buffer for the prefix follows the same way
    /// until the prefix's route changes: so nothing that arrives meanwhile can overtake the
    /// buffered packets.
    FlushBuffer {
        prefix: IpNet,
        deliver: Option<(AccessLink, LinkLayerAddress)>,
    },
    /// MAG, fast handover: send what the buffer holds for `prefix` to the MAG at `peer`
    /// through the tunnel, in arrival order, then route the prefix into that tunnel like
    /// `SetDownlink` until `RemoveDownlink` (the reactive PMAG). Nothing that arrives
    /// meanwhile may overtake what was held; and what follows must not wait for the buffer,
    /// or the packets the LMA sends the new MAG directly once it moved the binding would
    /// overtake it there.
    ForwardBuffer {
        prefix: IpNet,
        peer: Ipv6Addr,
    },
    /// MAG, fast handover: drop what the buffer holds for `prefix` (the handover failed).
    DiscardBuffer {
        prefix: IpNet,
    },
    /// LMA: a handover moved `prefix` away from the MAG at `peer`: once the prefix's route
    /// points at the new MAG, send `peer` the prefix's end marker, after every packet sent it
    /// before. The previous MAG forwards it to the new MAG behind the packets it forwards
    /// there (a fast handover, RFC 5949), and the new MAG knows from it that the forwarded
    /// stream has ended.
    EndMarker {
        prefix: IpNet,
        peer: Ipv6Addr,
    },
    /// MAG, fast handover, new MAG: until the end marker of `marker` (the node's first IPv6
    /// prefix, or its IPv4 home address if it has none) arrives through the previous MAG, or
    /// `wait_ms` passes, hold what `lma` sends directly to `prefix`; then it follows what the
    /// previous MAG forwarded, in order.
    HoldForEndMarker {
        prefix: IpNet,
        marker: IpNet,
        lma: Ipv6Addr,
        wait_ms: u32,
    },
}

/// A Router Advertisement the MAG must send to one mobile node (RFC 4861 §6.2.3, RFC 5213
/// §6.7, §6.9.3): unicast to `mn_link_layer`, from the domain's link-local and link-layer
/// address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouterAdvertisement {
    pub link: AccessLink,
    pub mn_link_layer: LinkLayerAddress,
    /// Source: the fixed MAG link-local address, or the one the LMA generated.
    pub src_link_local: Ipv6Addr,
    pub src_link_layer: LinkLayerAddress,
    /// Prefix Information options (on-link, autonomous). Empty with `router_lifetime` zero:
    /// the withdrawal sent when a node is denied or leaves.
    pub prefixes: Vec<Ipv6Net>,
    /// Valid and preferred lifetime of the prefixes.
    pub prefix_lifetime: Duration,
    pub router_lifetime: Duration,
    /// MTU option value.
    pub mtu: u32,
}

/// A unicast Neighbor Solicitation the MAG sends to probe whether a node is still on its
/// access link (Neighbor Unreachability Detection, RFC 4861 §7.3.3; RFC 5213 §6.13): to
/// `mn_link_layer` for `target` (the node's link-local address), from the MAG's link-local
/// and link-layer address on that link, with a Source Link-Layer Address option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NeighborSolicitation {
    pub link: AccessLink,
    pub mn_link_layer: LinkLayerAddress,
    pub target: Ipv6Addr,
    pub src_link_local: Ipv6Addr,
    pub src_link_layer: LinkLayerAddress,
}
