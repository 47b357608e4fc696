//! The kernel datapath of the PMIPv6 LMA and MAGs (RFC 5213), over rtnetlink.
//!
//! The daemons tunnel a mobile node's traffic IPv6-in-IPv6 (RFC 2473) between the LMA and
//! its MAGs, and its IPv4 home address's traffic IPv4-in-IPv6 through the same tunnels
//! (RFC 5844 §3.1.3: "IPv4-or-IPv6-over-IPv6"). This crate programs the Linux kernel for
//! that, and nothing else: no protocol, no timers. It never runs `ip`; every change is a
//! netlink request.
//!
//! # Using it from a daemon
//!
//! ```no_run
//! # async fn run() -> Result<(), datapath::Error> {
//! use datapath::{Datapath, Mode, Netlink, Settings, Termination};
//! let lma: std::net::Ipv6Addr = "2001:db8::1".parse().unwrap();
//! let nl = Netlink::connect()?;
//! // From the daemon's DatapathConfig: transport_interface, link_mtu, route_protocol,
//! // table_base, and the mode.
//! let mut settings = Settings::resolve(&nl, None, lma, None).await?;
//! settings.route_protocol = 135;
//! settings.table_base = 13500;
//! let dp = Datapath::open(Mode::Auto, nl, settings).await?;
//! dp.reconcile(&datapath::DesiredState::new()).await?; // or the state rebuilt from its store
//! dp.prepare_termination(Termination { local: lma, ifindex: dp.settings().transport_ifindex }).await?;
//! dp.add_downlink("2001:db8:100::/64".parse().unwrap(), "2001:db8::10".parse().unwrap()).await?;
//! # Ok(()) }
//! ```
//!
//! [`Datapath`] is an enum over the backends, picked at run time by [`Mode`] (the daemon's
//! `DatapathConfig::mode`, one to one): [`Mode::Seg6`], [`Mode::Ip6tnl`], [`Mode::Tun`],
//! [`Mode::None`] (signalling only) and [`Mode::Auto`] (seg6 when [`probe_seg6`] says the
//! kernel can make such routes, else ip6tnl when [`probe_ip6tnl`] says it can make such
//! links, else tun when [`tun::probe`] can open a packet socket). Tests of a daemon use
//! [`Datapath::Fake`] and look at the recorded [`DesiredState`].
//!
//! Every operation is idempotent: an add replaces what the same key had, a removal of
//! something absent succeeds. Each is also a [`Change`], and [`Datapath::apply`] sends a
//! batch of them pipelined (128 requests per datagram, several datagrams in flight): at the
//! LMA one binding is one route, one request. Calls are serialized per backend; a daemon
//! that must program thousands of bindings a second collects the changes of one turn of its
//! loop and applies them together (measured in a namespace here: about 40,000 downlink
//! routes a second batched, 11,000 one call at a time).
//!
//! # What is owned
//!
//! The kernel backends own the routes and rules (IPv6 and IPv4) marked with
//! [`Settings::route_protocol`] in the main table and in their own tables
//! ([`Settings::table_base`] and the next `2 + max_peers`), the addresses marked with it
//! (IFA_PROTO), and the ip6tnl links (or the userspace tunnel's veth pairs) named
//! [`Settings::tunnel_name_prefix`]`N` (and the pair `<prefix>in`, each pair's other end
//! `<name>io`).
//! [`Datapath::reconcile`] compares exactly those with a complete [`DesiredState`]; it never touches anything else, with one exception the recipe
//! needs: while tunnels terminate here, the kernel's `0: from all lookup local` rule is
//! replaced by the backend's own at [`RulePriorities::local`] (and put back by
//! [`Datapath::cleanup`]). Sysctls it needs (IPv6 and IPv4 forwarding, seg6_enabled) are
//! written only when they differ, and the values found are recorded so that
//! [`sysctl::restore`] puts them back.
//!
//! # IPv4 home addresses
//!
//! The `*4` changes ([`Change::SetDownlink4`], [`Change::SetUplink4`],
//! [`Change::SetLinkRoute4`] and their removals) do for an IPv4 prefix what the others do
//! for an IPv6 one: IPv4 routes with the same seg6 encapsulation (the outer header's Next
//! Header is then 4), `ip -4` uplink rules into the same per-peer tables (each gets an IPv4
//! default route beside its IPv6 one), and IPv4 local routes on access links. Every tunnel
//! end also decapsulates IPv4: a `to <local> ipproto 4` rule before the `local` table leads
//! to a seg6local End.DX4 route with next hop 0.0.0.0, which routes the inner packet by its
//! own destination (one route for every node). IPv4 forwarding is turned on with the first
//! IPv4 prefix. The ip6tnl backend makes its links in mode `any`, which carries both.
//!
//! # seg6, ip6tnl and the userspace tunnel
//!
//! The seg6 backend uses seg6 lightweight tunnels in reduced encapsulation mode with one
//! segment: the outer header is a plain IPv6 header with Next Header 41 and no routing
//! header, which is RFC 2473 on the wire. Decapsulation is a seg6local End.DT6 route reached
//! by a `to <local> ipproto 41` rule placed before the `local` table. This is tested end to
//! end in network namespaces, with real traffic, by this crate's tests.
//!
//! The ip6tnl backend makes one `ip6tnl` link (mode ip6ip6, no encapsulation limit option)
//! per peer and routes into it. Its netlink messages are unit tested attribute by attribute,
//! but **it has not been run against a kernel**: the development and CI machines have no
//! ip6_tunnel module.
//!
//! The tun backend ([`tun`]) is for kernels built without either (some development and CI
//! machines of this project have neither seg6 lightweight tunnels nor ip6tnl): one veth pair
//! per peer, routed into like an ip6tnl link, whose packets the daemon reads from the other
//! end and itself puts behind an outer IPv6 header (raw sockets of protocol 41 and 4, the
//! same RFC 2473 packets as the other two backends, so its peers may run either); what
//! arrives is decapsulated into one more pair and routed by the main table. Every packet
//! crosses the daemon's threads, so it is the slowest of the three. Its pairs and the routes
//! into them outlive the daemon, which takes them over when it restarts, but nothing carries
//! their packets while it is down. It needs CAP_NET_RAW for its packet and raw sockets.
//!
//! [`Mode::Auto`] picks seg6, else ip6tnl, else tun; the tests run whichever
//! of seg6 and tun the kernel has, with real traffic.
//!
//! # MTU
//!
//! The tunnel MTU is the transport link MTU minus 40 ([`Settings::tunnel_mtu`]), and the
//! seg6 routes carry it as their MTU. What the kernel does with it (measured on Linux 6.18,
//! and asserted by the tests):
//!
//! - packets the node itself sends into the tunnel are refused with EMSGSIZE above the route
//!   MTU minus the headroom seg6 reserves, which counts a 24-byte routing header that reduced
//!   mode leaves out: with a 1500-byte transport link the largest is 1396, not 1460;
//! - packets it *forwards* into a seg6 tunnel are encapsulated on input, before any MTU
//!   check: an oversize one is dropped, with the Packet Too Big going to the tunnel entry
//!   itself rather than to the sender. Forwarded packets up to the tunnel MTU pass.
//!
//! So the MAG must advertise the tunnel MTU in its Router Advertisements (or the transport
//! links must carry 40 bytes more than the access links: then full 1500-byte packets pass,
//! as the tests show).
//!
//! # Network namespaces
//!
//! [`netns`] makes named namespaces the way iproute2 does and runs code, sockets, netlink
//! connections and processes inside them; with [`Netlink`]'s link helpers that is what a lab
//! or an end-to-end test needs.

mod dump;
mod error;
mod fake;
mod kernel;
pub mod marker;
mod model;
mod msg;
mod netlink;
pub mod netns;
mod nexthop;
mod plan;
mod routes;
pub mod sysctl;
pub mod tun;
mod writer;

/// The two ways of reading a route dump, side by side, for `benches/route_dump.rs`.
#[doc(hidden)]
pub mod bench {
    use crate::msg::KRoute;
    use crate::{Netlink, Result};
    use netlink_packet_route::AddressFamily;

    /// Routes of `protocol` (both families) through `netlink-packet-route` and
    /// [`KRoute::parse`], as the datapath read them before [`crate::dump`].
    pub async fn dump_with_netlink_packet_route(nl: &Netlink, protocol: u8) -> Result<usize> {
        let mut n = 0;
        for family in [AddressFamily::Inet6, AddressFamily::Inet] {
            n += nl
                .dump_routes(family)
                .await?
                .iter()
                .filter_map(KRoute::parse)
                .filter(|r| r.protocol == protocol)
                .count();
        }
        Ok(n)
    }

    /// Routes of `protocol` (both families) read in place by [`crate::dump`].
    pub async fn dump_in_place(nl: &Netlink, protocol: u8) -> Result<usize> {
        let mut n = 0;
        for ipv6 in [true, false] {
            n += nl.dump_routes_of(ipv6, protocol, |_| true).await?.len();
        }
        Ok(n)
    }
}

use std::net::Ipv6Addr;

use ipnet::{Ipv4Net, Ipv6Net};

pub use error::{Error, Result};
pub use fake::{Fake, ReconcileHold};
pub use kernel::{Kernel, probe_ip6tnl, probe_seg6};
pub use model::{
    AccessLinkAddresses, Change, Counts, DesiredState, PrefixRoute, ReconcileReport, Termination,
};
pub use msg::{LOCAL_TABLE, MAIN_TABLE};
pub use netlink::Netlink;
pub use plan::Tunnel;
pub use routes::{Prefix, PrefixRoutes};

/// Which backend to run; one to one with the daemons' `DatapathConfig::mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// seg6 when the kernel can ([`probe_seg6`]), else ip6tnl ([`probe_ip6tnl`]), else the
    /// userspace tunnel ([`probe_tun`]).
    #[default]
    Auto,
    Seg6,
    Ip6tnl,
    /// RFC 2473 encapsulation done by the daemon itself: one veth pair per peer, raw
    /// sockets for Next Header 41 and 4. For kernels with neither seg6 nor ip6tnl.
    Tun,
    /// Signalling only: every call succeeds and does nothing.
    None,
}

/// Priorities of the policy rules the kernel backends add. Lower is looked up first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RulePriorities {
    /// `to <local> ipproto 41 lookup <termination table>` (seg6).
    pub termination: u32,
    /// `lookup local`, moved here from 0 (seg6, while a tunnel terminates here).
    pub local: u32,
    /// `lookup <local-routing table>`: prefixes routed locally with local routing on.
    pub local_routing: u32,
    /// `from <prefix> lookup <peer table>`: uplinks.
    pub uplink: u32,
}

impl Default for RulePriorities {
    fn default() -> Self {
        Self {
            termination: 100,
            local: 1000,
            local_routing: 1100,
            uplink: 1200,
        }
    }
}

/// [`Settings::max_peers`] by default.
pub const DEFAULT_MAX_PEERS: u32 = 14;

/// [`Settings::max_peers`] for the backends with a link per peer (ip6tnl, tun) when it was
/// left at [`DEFAULT_MAX_PEERS`]: an LMA's MAGs are peers too.
pub const LINKED_MAX_PEERS: u32 = 1024;

/// The peers a backend with a link per peer gets by default: [`LINKED_MAX_PEERS`], or fewer
/// where the slot numbers would not fit the 15 characters of a link name after `prefix`
/// (never fewer than [`DEFAULT_MAX_PEERS`]).
fn linked_max_peers(prefix: &str) -> u32 {
    let digits = 15usize.saturating_sub(prefix.len()).min(9) as u32;
    10u32.pow(digits).clamp(DEFAULT_MAX_PEERS, LINKED_MAX_PEERS)
}

/// What the names of a backend's links start with unless [`Settings::tunnel_name_prefix`]
/// says otherwise (the daemons never do).
pub const DEFAULT_TUNNEL_NAME_PREFIX: &str = "pmip6t";

/// How long an idle pair of the userspace tunnel stays by default ([`Settings::tun_linger`]).
pub const DEFAULT_TUN_LINGER: std::time::Duration = std::time::Duration::from_secs(60);

/// What a kernel backend needs to know: the transport link, and what marks its objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The link towards the transport network; tunnels leave by it.
    pub transport_ifindex: u32,
    /// MTU of the transport link; the tunnel MTU is 40 less (RFC 2473 §6.7).
    pub link_mtu: u32,
    /// Routing protocol number that marks this backend's routes, rules and addresses.
    pub route_protocol: u8,
    /// Metric of this backend's routes. A route replace swaps the route of the same table,
    /// prefix and metric whoever owns it, so this differs from the 1024 that `ip route` and
    /// most tools use: a route someone else made for the same prefix is left alone (and
    /// loses to this one).
    pub route_metric: u32,
    /// First of this backend's tables: `table_base` terminates tunnels (seg6 End.DT6),
    /// `table_base + 1` holds locally routed prefixes, `table_base + 2 + i` is the uplink
    /// table of the peer in slot `i`, and `table_base + 2 + max_peers` terminates the
    /// IPv4-in-IPv6 of IPv4 home addresses (seg6 End.DX4).
    pub table_base: u32,
    /// Peers (LMA, other MAGs) that uplinks (and for ip6tnl and tun, any tunnel) can go to at
    /// once. ip6tnl and tun need a slot (a link) for every peer, an LMA's every MAG among
    /// them: [`Datapath::open`] raises the default ([`DEFAULT_MAX_PEERS`]) to
    /// [`LINKED_MAX_PEERS`] for them (their tables above the peers' are not used).
    pub max_peers: u32,
    pub priorities: RulePriorities,
    /// ip6tnl link names are this and the peer's slot number.
    pub tunnel_name_prefix: String,
    /// Where the sysctl values found before a change are recorded (a [`sysctl::Ledger`]),
    /// for [`sysctl::restore`]; in memory only when `None`.
    pub sysctl_ledger: Option<std::path::PathBuf>,
    /// How long the userspace tunnel keeps a peer's veth pair after its last route went
    /// ([`Tunnel::Tun`] only): a node moving back finds it made.
    pub tun_linger: std::time::Duration,
}

impl Settings {
    /// Defaults of the daemons' `DatapathConfig` for the rest: protocol 135, tables from
    /// 13500, 14 peers (tables 13500..=13516); route metric 1000.
    pub fn new(transport_ifindex: u32, link_mtu: u32) -> Self {
        Self {
            transport_ifindex,
            link_mtu,
            route_protocol: 135,
            route_metric: 1000,
            table_base: 13500,
            max_peers: DEFAULT_MAX_PEERS,
            priorities: RulePriorities::default(),
            tunnel_name_prefix: DEFAULT_TUNNEL_NAME_PREFIX.into(),
            sysctl_ledger: None,
            tun_linger: DEFAULT_TUN_LINGER,
        }
    }

    /// Finds the transport link like the daemons' config says: by name when given,
    /// otherwise the link holding `local` (the LMA address or proxy-CoA); its MTU unless
    /// `link_mtu` is given.
    pub async fn resolve(
        nl: &Netlink,
        transport_interface: Option<&str>,
        local: Ipv6Addr,
        link_mtu: Option<u32>,
    ) -> Result<Self> {
        let ifindex = match transport_interface {
            Some(name) => nl.link_index(name).await?,
            None => nl.link_with_address(local).await?,
        };
        let mtu = match link_mtu {
            Some(m) => m,
            None => nl.link_mtu(ifindex).await?,
        };
        Ok(Self::new(ifindex, mtu))
    }

    /// Transport MTU minus the 40-byte outer header.
    pub fn tunnel_mtu(&self) -> u32 {
        self.link_mtu.saturating_sub(40)
    }

    /// The table of the End.DT6 routes (seg6).
    pub fn termination_table(&self) -> u32 {
        self.table_base
    }

    /// The table of the End.DX4 routes (seg6): the same local address as the End.DT6 route,
    /// so a table of its own, after the peers' tables.
    pub fn termination4_table(&self) -> u32 {
        self.table_base
            .saturating_add(2)
            .saturating_add(self.max_peers)
    }

    /// The table of the locally routed prefixes.
    pub fn local_routing_table(&self) -> u32 {
        self.table_base.saturating_add(1)
    }

    /// The uplink table of the peer in `slot`.
    pub fn peer_table(&self, slot: u32) -> u32 {
        self.table_base.saturating_add(2).saturating_add(slot)
    }

    pub(crate) fn slot_of_table(&self, table: u32) -> Option<u32> {
        let slot = table.checked_sub(self.peer_table(0))?;
        (slot < self.max_peers).then_some(slot)
    }

    pub(crate) fn owns_table(&self, table: u32) -> bool {
        table == self.termination_table()
            || table == self.local_routing_table()
            || table == self.termination4_table()
            || self.slot_of_table(table).is_some()
    }

    pub(crate) fn tunnel_name(&self, slot: u32) -> String {
        format!("{}{slot}", self.tunnel_name_prefix)
    }

    /// The userspace tunnel's device that decapsulated packets enter by.
    pub(crate) fn tun_ingress_name(&self) -> String {
        format!("{}in", self.tunnel_name_prefix)
    }

    pub(crate) fn slot_of_tunnel_name(&self, name: &str) -> Option<u32> {
        let slot: u32 = name.strip_prefix(&self.tunnel_name_prefix)?.parse().ok()?;
        (slot < self.max_peers && self.tunnel_name(slot) == name).then_some(slot)
    }

    /// Checks what the kernel would otherwise refuse half-way.
    pub fn validate(&self) -> Result<()> {
        let bad = |reason: String| {
            Err(Error::Invalid {
                op: "datapath settings",
                reason,
            })
        };
        if self.tunnel_mtu() < 1280 {
            return bad(format!(
                "link MTU {} leaves a tunnel MTU below the IPv6 minimum of 1280",
                self.link_mtu
            ));
        }
        if self.route_protocol < 5 {
            return bad(format!(
                "route protocol {} belongs to the kernel",
                self.route_protocol
            ));
        }
        if self.max_peers == 0 {
            return bad("max_peers must be at least 1".into());
        }
        if self.table_base < 256
            || self
                .table_base
                .checked_add(2)
                .and_then(|t| t.checked_add(self.max_peers))
                .is_none()
        {
            return bad(format!(
                "tables {}..={}+{} do not fit between 256 and 2^32-1",
                self.table_base,
                self.table_base,
                2 + u64::from(self.max_peers)
            ));
        }
        let p = self.priorities;
        if !(p.termination < p.local && p.local < p.local_routing && p.local_routing < p.uplink) {
            return bad(format!(
                "rule priorities must increase: termination < local < local_routing < uplink, got {p:?}"
            ));
        }
        if self.tunnel_name(self.max_peers - 1).len() > 15 || self.tunnel_name_prefix.is_empty() {
            return bad(format!(
                "tunnel link names {:?} do not fit 15 characters",
                self.tunnel_name(self.max_peers - 1)
            ));
        }
        Ok(())
    }
}

/// The datapath of a daemon, whichever backend it runs. Clones share the backend.
#[derive(Debug, Clone)]
pub enum Datapath {
    /// seg6 or ip6tnl tunnels in the kernel.
    Kernel(Kernel),
    /// Records the state in memory (daemon tests).
    Fake(Fake),
    /// Does nothing ([`Mode::None`]).
    None,
}

impl Datapath {
    /// Opens the backend `mode` asks for; for [`Mode::Auto`] seg6 when the kernel can make
    /// such routes (the backend this project runs in its tests), else ip6tnl when it can make
    /// such links.
    pub async fn open(mode: Mode, nl: Netlink, settings: Settings) -> Result<Self> {
        Self::open_reading(mode, nl, settings, true).await
    }

    /// [`Datapath::open`], reading back no routes: for a daemon that restarts with its store
    /// and tells the backend what the kernel holds with [`Datapath::assume`] (seg6), or
    /// reconciles at once (ip6tnl).
    pub async fn open_without_routes(mode: Mode, nl: Netlink, settings: Settings) -> Result<Self> {
        Self::open_reading(mode, nl, settings, false).await
    }

    async fn open_reading(
        mode: Mode,
        nl: Netlink,
        settings: Settings,
        routes: bool,
    ) -> Result<Self> {
        let tunnel = match mode {
            Mode::None => return Ok(Datapath::None),
            Mode::Seg6 => Tunnel::Seg6,
            Mode::Ip6tnl => Tunnel::Ip6tnl,
            Mode::Tun => Tunnel::Tun,
            Mode::Auto => {
                if probe_seg6(&nl).await? {
                    Tunnel::Seg6
                } else if probe_ip6tnl(&nl).await? {
                    Tunnel::Ip6tnl
                } else if tun::probe() {
                    tracing::warn!(
                        "this kernel has neither seg6 lightweight tunnels nor ip6tnl: the \
                         tunnels are carried in userspace (veth pairs)"
                    );
                    Tunnel::Tun
                } else {
                    return Err(Error::Invalid {
                        op: "open datapath",
                        reason: "this kernel has neither seg6 lightweight tunnels \
                                 (CONFIG_IPV6_SEG6_LWTUNNEL) nor ip6tnl (CONFIG_IPV6_TUNNEL), \
                                 and no packet socket can be opened for the userspace tunnel: \
                                 give the daemon CAP_NET_RAW, or run it with mode none for \
                                 signalling only"
                            .into(),
                    });
                }
            }
        };
        let mut settings = settings;
        if tunnel.has_links() && settings.max_peers == DEFAULT_MAX_PEERS {
            settings.max_peers = linked_max_peers(&settings.tunnel_name_prefix);
        }
        Ok(Datapath::Kernel(if routes {
            Kernel::open(nl, settings, tunnel).await?
        } else {
            Kernel::open_without_routes(nl, settings, tunnel).await?
        }))
    }

    /// What the userspace tunnel carried: packets encapsulated, decapsulated, refused and
    /// failed ([`tun::TunCounters`]); `None` for the other backends.
    pub fn tun_counters(&self) -> Option<[u64; 4]> {
        self.tun_counters_shared().map(|c| c.snapshot())
    }

    /// The userspace tunnel's live counters, for a metrics collector that reads them when
    /// scraped; `None` for the other backends.
    pub fn tun_counters_shared(&self) -> Option<std::sync::Arc<tun::TunCounters>> {
        match self {
            Datapath::Kernel(k) => k.tun_counters().cloned(),
            _ => None,
        }
    }

    /// `seg6`, `ip6tnl`, `tun`, `fake` or `none`, for logs and metrics.
    pub fn backend_name(&self) -> &'static str {
        match self {
            Datapath::Kernel(k) => match k.tunnel() {
                Tunnel::Seg6 => "seg6",
                Tunnel::Ip6tnl => "ip6tnl",
                Tunnel::Tun => "tun",
            },
            Datapath::Fake(_) => "fake",
            Datapath::None => "none",
        }
    }

    /// The kernel backend's settings (defaults for the others).
    pub fn settings(&self) -> Settings {
        match self {
            Datapath::Kernel(k) => k.settings().clone(),
            _ => Settings::new(0, 1500),
        }
    }

    /// Applies changes in order; for the kernel backends pipelined. Each change is applied
    /// even when an earlier one failed; the error then counts the failed ones and carries
    /// the first failure (a single change's failure is returned as it is).
    pub async fn apply(&self, changes: &[Change]) -> Result<()> {
        match self {
            Datapath::Kernel(k) => k.apply(changes).await,
            Datapath::Fake(f) => f.apply(changes),
            Datapath::None => Ok(()),
        }
    }

    async fn one(&self, change: Change) -> Result<()> {
        self.apply(std::slice::from_ref(&change)).await
    }

    /// Terminates tunnels on a local address (the LMA address, or a MAG's proxy-CoA)
    /// arriving on a transport link. seg6: forwarding and seg6_enabled on (all, and the
    /// link), the `ipproto 41` rule, the `local` rule moved down, the End.DT6 route.
    pub async fn prepare_termination(&self, t: Termination) -> Result<()> {
        self.one(Change::PrepareTermination(t)).await
    }

    /// Stops terminating tunnels on `local`; after the last one, puts the `local` rule back.
    pub async fn remove_termination(&self, local: Ipv6Addr) -> Result<()> {
        self.one(Change::RemoveTermination { local }).await
    }

    /// Tunnels traffic destined to `prefix` to `peer` (LMA: home network prefix to the
    /// proxy-CoA; MAG: forwarding to another MAG). Replaces any route of the prefix, so a
    /// handover from one proxy-CoA to another is one atomic route replace.
    pub async fn add_downlink(&self, prefix: Ipv6Net, peer: Ipv6Addr) -> Result<()> {
        self.one(Change::SetDownlink { prefix, peer }).await
    }

    /// Removes the route of `prefix` if it is a tunnel.
    pub async fn remove_downlink(&self, prefix: Ipv6Net) -> Result<()> {
        self.one(Change::RemoveDownlink { prefix }).await
    }

    /// Tunnels traffic sourced from `prefix` to `peer` (MAG uplink to the LMA, or reverse
    /// tunnel to another MAG): a `from <prefix>` rule into the peer's table, whose default
    /// route enters the tunnel.
    pub async fn add_uplink(&self, prefix: Ipv6Net, peer: Ipv6Addr) -> Result<()> {
        self.one(Change::SetUplink { prefix, peer }).await
    }

    /// Stops tunnelling traffic sourced from `prefix`.
    pub async fn remove_uplink(&self, prefix: Ipv6Net) -> Result<()> {
        self.one(Change::RemoveUplink { prefix }).await
    }

    /// Routes `prefix` onto link `ifindex` (a node's access link, or a buffering TUN
    /// device). With `local_routing` (RFC 5213 EnableMAGLocalRouting), traffic to the
    /// prefix from nodes on this MAG stays local instead of going through the LMA.
    pub async fn add_local_route(
        &self,
        prefix: Ipv6Net,
        ifindex: u32,
        local_routing: bool,
    ) -> Result<()> {
        self.one(Change::SetLinkRoute {
            prefix,
            ifindex,
            local_routing,
        })
        .await
    }

    /// Removes the route of `prefix` if it goes onto link `ifindex`.
    pub async fn remove_local_route(&self, prefix: Ipv6Net, ifindex: u32) -> Result<()> {
        self.one(Change::RemoveLinkRoute { prefix, ifindex }).await
    }

    /// Tunnels traffic destined to an IPv4 prefix (an IPv4 home address, RFC 5844 §3.1.3)
    /// to `peer`, IPv4-in-IPv6; replaces any route of the prefix.
    pub async fn add_downlink4(&self, prefix: Ipv4Net, peer: Ipv6Addr) -> Result<()> {
        self.one(Change::SetDownlink4 { prefix, peer }).await
    }

    /// Removes the route of an IPv4 prefix if it is a tunnel.
    pub async fn remove_downlink4(&self, prefix: Ipv4Net) -> Result<()> {
        self.one(Change::RemoveDownlink4 { prefix }).await
    }

    /// Tunnels traffic sourced from an IPv4 prefix to `peer` (RFC 5844 §3.2.4).
    pub async fn add_uplink4(&self, prefix: Ipv4Net, peer: Ipv6Addr) -> Result<()> {
        self.one(Change::SetUplink4 { prefix, peer }).await
    }

    /// Stops tunnelling traffic sourced from an IPv4 prefix.
    pub async fn remove_uplink4(&self, prefix: Ipv4Net) -> Result<()> {
        self.one(Change::RemoveUplink4 { prefix }).await
    }

    /// Routes an IPv4 prefix onto link `ifindex` (the node's IPv4 home address on its
    /// access link); `local_routing` as for [`Datapath::add_local_route`].
    pub async fn add_local_route4(
        &self,
        prefix: Ipv4Net,
        ifindex: u32,
        local_routing: bool,
    ) -> Result<()> {
        self.one(Change::SetLinkRoute4 {
            prefix,
            ifindex,
            local_routing,
        })
        .await
    }

    /// Removes the route of an IPv4 prefix if it goes onto link `ifindex`.
    pub async fn remove_local_route4(&self, prefix: Ipv4Net, ifindex: u32) -> Result<()> {
        self.one(Change::RemoveLinkRoute4 { prefix, ifindex }).await
    }

    /// Sets the access link's link-layer address and adds its fixed link-local address, so
    /// every MAG looks like the same router to a node.
    pub async fn prepare_access_link(&self, ifindex: u32, link: AccessLinkAddresses) -> Result<()> {
        self.one(Change::PrepareAccessLink { ifindex, link }).await
    }

    /// Removes the access link's link-local address (the link-layer address stays).
    pub async fn remove_access_link(&self, ifindex: u32) -> Result<()> {
        self.one(Change::RemoveAccessLink { ifindex }).await
    }

    /// Makes the backend hold exactly `desired`: what it owns and `desired` lacks is
    /// removed, what is missing or different is added; nothing it does not own is touched.
    pub async fn reconcile(&self, desired: &DesiredState) -> Result<ReconcileReport> {
        match self {
            Datapath::Kernel(k) => k.reconcile(desired).await,
            Datapath::Fake(f) => f.reconcile(desired),
            Datapath::None => Ok(ReconcileReport::default()),
        }
    }

    /// Whether the backend can take a state for granted ([`Datapath::assume`]) and reconcile
    /// it later, so that a restarted daemon serves first: every backend (ip6tnl and tun make
    /// their links when they assume, and tun writes its routes in that later reconcile).
    pub fn reconciles_later(&self) -> bool {
        true
    }

    /// Takes `desired` for what the kernel holds, without looking (the routes a daemon made
    /// outlive it): changes are applied against it at once, and
    /// [`Datapath::reconcile_pending`] checks it against the kernel afterwards, beside them.
    /// Only where [`Datapath::reconciles_later`].
    pub async fn assume(&self, desired: DesiredState) -> Result<()> {
        match self {
            Datapath::Kernel(k) => k.assume(desired).await,
            Datapath::Fake(f) => {
                f.assume(desired);
                Ok(())
            }
            Datapath::None => Ok(()),
        }
    }

    /// Makes the kernel hold the assumed state and every change applied since, beside the
    /// changes still coming: a route a change wrote meanwhile keeps that change's value. An
    /// empty report when nothing is pending. See [`Kernel::reconcile_pending`].
    pub async fn reconcile_pending(&self) -> Result<ReconcileReport> {
        match self {
            Datapath::Kernel(k) => k.reconcile_pending().await,
            Datapath::Fake(f) => f.reconcile_pending().await,
            Datapath::None => Ok(ReconcileReport::default()),
        }
    }

    /// Removes everything the backend owns (a reconcile to the empty state). The sysctls it
    /// set stay: [`sysctl::restore`] puts back what it found.
    pub async fn cleanup(&self) -> Result<ReconcileReport> {
        self.reconcile(&DesiredState::new()).await
    }

    /// Sets the sysctls the kernel backends need on the transport link (each only when it
    /// differs), recording the values found; nothing for the others. Returns each sysctl, the
    /// value it needs and what was done.
    pub async fn ensure_sysctls(&self) -> Result<Vec<(sysctl::Sysctl, String, sysctl::Ensured)>> {
        match self {
            Datapath::Kernel(k) => k.ensure_sysctls().await,
            Datapath::Fake(_) | Datapath::None => Ok(Vec::new()),
        }
    }

    /// What the backend believes it has programmed.
    pub async fn state(&self) -> DesiredState {
        match self {
            Datapath::Kernel(k) => k.state().await,
            Datapath::Fake(f) => f.state(),
            Datapath::None => DesiredState::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backends_with_links_get_as_many_peers_as_their_names_fit() {
        assert_eq!(linked_max_peers("pmip6t"), LINKED_MAX_PEERS);
        // 3 characters left: slots 0..=999; 2: 0..=99; 1 or none: the default stays.
        assert_eq!(linked_max_peers("averylongpfx"), 1000);
        assert_eq!(linked_max_peers("averylongpfxy"), 100);
        assert_eq!(linked_max_peers("averylongprefi"), DEFAULT_MAX_PEERS);
        assert_eq!(linked_max_peers("averylongprefix"), DEFAULT_MAX_PEERS);
        for prefix in ["pmip6t", "averylongpfx", "averylongpfxy"] {
            let mut s = Settings::new(3, 1500);
            s.tunnel_name_prefix = prefix.into();
            s.max_peers = linked_max_peers(prefix);
            s.validate().unwrap();
        }
    }

    #[test]
    fn settings_layout_and_validation() {
        let s = Settings::new(3, 1500);
        s.validate().unwrap();
        assert_eq!(s.tunnel_mtu(), 1460);
        assert_eq!(s.termination_table(), 13500);
        assert_eq!(s.local_routing_table(), 13501);
        assert_eq!(s.peer_table(13), 13515);
        assert_eq!(s.slot_of_table(13515), Some(13));
        assert_eq!(s.slot_of_table(13516), None);
        assert_eq!(s.termination4_table(), 13516);
        assert!(s.owns_table(13500) && s.owns_table(13515) && s.owns_table(13516));
        assert!(!s.owns_table(13517) && !s.owns_table(13499));
        assert_eq!(s.slot_of_tunnel_name("pmip6t13"), Some(13));
        assert_eq!(s.slot_of_tunnel_name("pmip6t013"), None);
        assert_eq!(s.slot_of_tunnel_name("pmip6t14"), None);
        assert_eq!(s.slot_of_tunnel_name("eth0"), None);

        let err = |f: fn(&mut Settings)| {
            let mut s = Settings::new(3, 1500);
            f(&mut s);
            s.validate().unwrap_err().to_string()
        };
        assert!(err(|s| s.link_mtu = 1300).contains("1280"));
        assert!(err(|s| s.route_protocol = 2).contains("kernel"));
        assert!(err(|s| s.table_base = u32::MAX - 3).contains("do not fit"));
        assert!(err(|s| s.priorities.local = 50).contains("increase"));
        assert!(err(|s| s.tunnel_name_prefix = "averylongprefix".into()).contains("15"));
    }

    #[tokio::test]
    async fn fake_records_changes_and_reconciles() {
        let fake = Fake::new();
        let dp = Datapath::Fake(fake.clone());
        let p: Ipv6Net = "2001:db8:1::/64".parse().unwrap();
        let a: Ipv6Addr = "2001:db8::2".parse().unwrap();
        let b: Ipv6Addr = "2001:db8::3".parse().unwrap();
        dp.add_downlink(p, a).await.unwrap();
        dp.add_downlink(p, b).await.unwrap();
        assert_eq!(
            fake.state().routes.get(&p),
            Some(PrefixRoute::Tunnel { peer: b })
        );
        assert_eq!(fake.take_changes().len(), 2);
        let report = dp.cleanup().await.unwrap();
        assert_eq!(report.routes.removed, 1);
        assert!(fake.state().is_empty());
        fake.fail_with(Some(libc::EPERM));
        let e = dp.add_uplink(p, a).await.unwrap_err();
        assert_eq!(e.errno(), Some(libc::EPERM));
        assert!(e.to_string().contains("Operation not permitted"), "{e}");
    }

    #[tokio::test]
    async fn none_backend_does_nothing() {
        let dp = Datapath::None;
        dp.add_downlink("2001:db8::/64".parse().unwrap(), Ipv6Addr::LOCALHOST)
            .await
            .unwrap();
        assert!(dp.state().await.is_empty());
        assert!(dp.cleanup().await.unwrap().is_noop());
        assert_eq!(dp.backend_name(), "none");
    }
}
