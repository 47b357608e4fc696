//! The access link's wire format: Ethernet, IPv6, ICMPv6 Neighbor Discovery (RFC 4861) and
//! Multicast Listener Discovery (RFC 2710, RFC 3810), as a MAG hears them from a mobile
//! node and sends them to one (RFC 5213 §6.7, §6.9.2, §6.9.3).
//!
//! Layout as for the Mobility Header, after smoltcp's `wire` module:
//! - a zero-copy view per header with `new_checked`, after which no accessor panics:
//!   [`EthernetFrame`], [`Ipv6Packet`], [`HopByHopHeader`], [`Icmpv6Packet`];
//! - a representation per layer with `parse` / `buffer_len` / `emit`: [`EthernetRepr`],
//!   [`Ipv6Repr`], [`HopByHopRepr`], [`Icmpv6Repr`] (which holds an [`NdiscRepr`], an
//!   [`MldRepr`] or any other message as it came), and [`FrameRepr`] for a whole frame,
//!   emitted with its checksum. Emitting never allocates;
//! - options as a validated byte range or a list to emit ([`NdOptions`]), read with an
//!   iterator that yields `Result`s and stops at the first error; unknown options are kept
//!   and emitted again as they came;
//! - errors with the offset and a precise kind ([`ErrorKind`]), which tells a malformed
//!   packet from one the RFC's validity rules discard ([`Error::is_invalid_nd`]).
//!
//! Why not smoltcp's `wire` module (without default features, it would fit a `no_std`-like
//! pure crate): its `NdiscRepr::RouterAdvert` carries at most one Prefix Information
//! option, and a MAG advertises every home network prefix of the node in one RA (RFC 5213
//! §6.9.1.2 rule 14); its RS, NS and NA reprs refuse a message with an option they do not
//! know, where RFC 4861 §4.6 says to skip it; and its error is a unit value, where the
//! MAG must tell an invalid Router Solicitation (the node is there all the same) from a
//! frame it cannot read. Neither does it keep unknown options to emit them again.

mod error;
mod ethernet;
mod frame;
mod icmpv6;
mod ipv6;
mod mld;
mod ndisc;
mod option;

pub use error::{Error, ErrorKind, Result};
pub use ethernet::{
    EtherType, EthernetAddress, EthernetFrame, EthernetRepr, HEADER_LEN as ETHERNET_HEADER_LEN,
};
pub use frame::FrameRepr;
pub use icmpv6::{
    HEADER_LEN as ICMPV6_HEADER_LEN, Icmpv6Packet, Icmpv6Repr, Icmpv6Type, icmpv6_checksum,
};
pub use ipv6::{
    HEADER_LEN as IPV6_HEADER_LEN, HopByHopHeader, HopByHopRepr, Ipv6Packet, Ipv6Repr,
    MLD_ROUTER_ALERT_OPTIONS, NEXT_HEADER_HOP_BY_HOP, NEXT_HEADER_ICMPV6,
};
pub use mld::{MldRecord, MldRecordType, MldRecords, MldRepr};
pub use ndisc::{
    ND_HOP_LIMIT, NaFlags, NdiscRepr, RaFlags, is_link_local, is_solicited_node_multicast,
    solicited_node,
};
pub use option::{
    MAX_OPTION_LEN, MTU_LEN, NdOption, NdOptionType, NdOptions, NdOptionsIter,
    PREFIX_INFORMATION_LEN, PrefixFlags, PrefixInformation,
};

use std::net::Ipv6Addr;

/// ff02::1, all nodes on the link (RFC 4291 §2.7.1).
pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
/// ff02::2, all routers on the link (RFC 4291 §2.7.1).
pub const ALL_ROUTERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 2);
/// ff02::16, all MLDv2-capable routers (RFC 3810 §5.2.14).
pub const ALL_MLDV2_ROUTERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x16);
