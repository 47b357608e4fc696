//! The MAG daemon's synchronous service: the state machine [`pmip::mag::Mag`] and what only the
//! daemon knows around it (access links by index, lab nodes, profiles learned from the LMA's
//! policy service, API calls waiting for a registration or a handover, when each node was
//! seen). It answers the API's [`Command`]s and access-side events, and turns the state
//! machine's outputs into this turn's datapath steps, Router Advertisements and messages. No
//! IO and no clock: time comes in as arguments, so it is tested without a runtime;
//! [`crate::core`] drives it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv6Addr;
use std::time::Duration;

use ::datapath::{AccessLinkAddresses, Change};
use cnf::datapath;
use ipnet::Ipv6Net;
use pmip::Instant;
use pmip::config::{FastHandoverMode, LinkLocalMode, MagConfig, MobileNodeProfile};
use pmip::heartbeat::PeerEvent;
use pmip::mag::{
    Attach, BulChange, BulEntry, BulState, FastHandover, FastPhase, FastRole, Mag, MagEvent,
    MagOutput, SavedBinding,
};
use pmip::output::{
    AccessLink, DatapathCommand, NeighborSolicitation, RouterAdvertisement, Transmit,
};
use pmip::policy::{Origin, PolicyError};
use pmip::types::LinkLayerAddress;
use pmip::wire::{AccessTechnologyType, Status, WallClock};
use tokio::sync::oneshot;
use tracing::{debug, info, warn};

pub use crate::access::AccessEvent as AccessInput;

/// How often the link of a node detached by Neighbor Unreachability Detection is probed
/// while it stays up (see [`crate::access::presence_probe_frame`]).
pub const PRESENCE_PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// When a link that came up is probed again while no node has shown itself on it, after the
/// probe sent at once: the link's report can come before the node can be reached over it (a
/// bridge or switch port on the way that forwards only once its own carrier change has been
/// handled), and the first probe is lost; or the node answers it before it can send, and
/// holds its answer until it has resolved the MAG's address (the repeats announce it, see
/// [`crate::access::router_announcement_frame`]). Then the node would be found only by its
/// own MLD reports, 10 ms or more later.
pub const LINK_UP_PROBES_AFTER: [Duration; 4] = [
    Duration::from_millis(1),
    Duration::from_millis(2),
    Duration::from_millis(4),
    Duration::from_millis(8),
];
pub use crate::access::ipv4::Ipv4Frame;
use crate::access::{MAX_NEIGHBOR_ADVERTISEMENT, PresenceProbe, arp, dhcp};

/// A binding update list entry as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryView {
    pub entry: BulEntry,
    /// A fast handover is in progress for the entry.
    pub handover: bool,
    pub access_interface: String,
    pub remaining_s: u32,
    /// How long ago the node attached, and registered.
    pub attached_ago: Duration,
    pub registered_ago: Option<Duration>,
    pub lab: bool,
}

/// Counters and facts for the Stats RPC.
#[derive(Debug, Clone)]
pub struct StatsView {
    pub name: String,
    pub proxy_coa: Ipv6Addr,
    pub lma_address: Ipv6Addr,
    pub restart_counter: u32,
    pub uptime: Duration,
    pub bul_entries: usize,
    pub registered: usize,
    pub pbus_sent: u64,
    pub pbu_retransmissions: u64,
    pub pbas_by_status: Vec<(Status, u64)>,
    pub lma_reachable: bool,
    pub lab_nodes: usize,
    pub profiles: usize,
    pub policy_synced: bool,
    pub fast_handovers: u64,
    pub buffered_packets: u64,
}

/// Which node a Detach names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeKey {
    LinkLayer(LinkLayerAddress),
    MnId(String),
}

/// Why an API call failed (mapped to gRPC codes by the API).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    InvalidArgument(String),
}

/// A request from the API (or the policy client) to the core.
#[derive(Debug)]
pub enum Command {
    List {
        reply: oneshot::Sender<Vec<EntryView>>,
    },
    Attach {
        link_layer: LinkLayerAddress,
        interface: String,
        access_technology_type: Option<AccessTechnologyType>,
        /// Reply after the PBA (or the give-up) instead of at once.
        wait: bool,
        reply: oneshot::Sender<Result<EntryView, CallError>>,
    },
    Detach {
        node: NodeKey,
        reply: oneshot::Sender<Result<EntryView, CallError>>,
    },
    Stats {
        reply: oneshot::Sender<StatsView>,
    },
    /// A profile learned from the LMA's policy service (or removed there).
    UpsertProfile(MobileNodeProfile),
    RemoveProfile(String),
    /// The policy stream is in sync (true) or lost (false).
    PolicySynced(bool),
    /// The policy stream restarts from a snapshot: profiles learned so far that the snapshot
    /// does not repeat are dropped when it is in sync again.
    PolicyReset,
    /// Predictive fast handover (RFC 5949 §4.1 step (b)): `mn_id` is about to move to the MAG
    /// at `new_mag`. Replies once that MAG acknowledged (forwarding has begun) or the
    /// handover failed.
    HandoverIndication {
        mn_id: String,
        new_mag: Ipv6Addr,
        reply: oneshot::Sender<Result<(), CallError>>,
    },
    /// Reactive fast handover: the node with this link-layer address is arriving from the MAG
    /// at `previous_mag` (the access network's Old AP ID).
    ExpectArrival {
        link_layer: LinkLayerAddress,
        previous_mag: Ipv6Addr,
    },
    /// Whether a profile has this link-layer address.
    KnowsNode {
        link_layer: LinkLayerAddress,
        reply: oneshot::Sender<bool>,
    },
    /// The first link-layer address of a node's profile.
    LinkLayerOf {
        mn_id: String,
        reply: oneshot::Sender<Option<LinkLayerAddress>>,
    },
    /// A lab node (an emulated mobile node) was created or removed on `interface`.
    LabNode {
        mn_id: String,
        interface: String,
        present: bool,
    },
}

/// One step of this turn's datapath work, in the order the state machine asked for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// A kernel change.
    Change(Change),
    /// A command of the fast-handover buffer (see [`crate::buffer::Buffer::plan`]).
    Buffer(DatapathCommand),
}

/// The kinds of state machine events counted in [`Stats::events`], in order.
pub const EVENT_KINDS: [&str; 17] = [
    "unknown-node",
    "registered",
    "refreshed",
    "rejected",
    "gave-up",
    "deregistered",
    "expired",
    "revoked",
    "pba-ignored",
    "peer",
    "handover-started",
    "handover-acknowledged",
    "handover-completed",
    "handover-failed",
    "dropped",
    "ipv4-released",
    "unreachable",
];

/// The counters of the service, for [`crate::metrics::Metrics::observe`]: totals since the
/// start, gauges as they are now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub pbu_sent: u64,
    pub pbu_retransmitted: u64,
    pub pba_received: u64,
    /// PBAs received, by status value (only those received at least once).
    pub pba_by_status: Vec<(Status, u64)>,
    pub bul_entries: usize,
    pub registered: usize,
    /// Events by kind, in the order of [`EVENT_KINDS`].
    pub events: [u64; EVENT_KINDS.len()],
    /// Fast handovers by mode and outcome (e.g. `("predictive", "completed")`).
    pub handovers: BTreeMap<(&'static str, &'static str), u64>,
    /// The fast-handover buffer's counters, as the driver last reported them.
    pub buffer: Option<crate::buffer::BufferStats>,
    /// Whether the LMA answers heartbeats (true until it misses them, RFC 5847 §3.1).
    pub lma_reachable: bool,
    /// Frames the MAG answered nodes with on access links, by kind, in the order of
    /// [`IPV4_REPLY_KINDS`] (RFC 5844 §3.4, §3.2.3.2).
    pub ipv4_replies: [u64; IPV4_REPLY_KINDS.len()],
}

/// The kinds of IPv4 answers [`Stats::ipv4_replies`] counts: DHCPOFFER, DHCPACK, DHCPNAK
/// and ARP replies.
pub const IPV4_REPLY_KINDS: [&str; 4] = ["dhcp-offer", "dhcp-ack", "dhcp-nak", "arp"];

/// The fast-handover modes and outcomes [`Stats::handovers`] counts (RFC 5949 §5.1, §5.2).
pub const HANDOVER_MODES: [&str; 2] = ["predictive", "reactive"];
pub const HANDOVER_OUTCOMES: [&str; 2] = ["completed", "failed"];

/// A fast-handover mode as logs and metrics name it.
pub fn mode_name(mode: FastHandoverMode) -> &'static str {
    match mode {
        FastHandoverMode::Off => "off",
        FastHandoverMode::Predictive => "predictive",
        FastHandoverMode::Reactive => "reactive",
    }
}

/// A MAG's role in a fast handover as logs name it.
fn role_name(role: FastRole) -> &'static str {
    match role {
        FastRole::Previous => "previous",
        FastRole::New => "new",
    }
}

/// Prefixes as one log field: `2001:db8:1::/64,2001:db8:2::/64`.
fn prefix_list(prefixes: &[Ipv6Net]) -> String {
    let v: Vec<String> = prefixes.iter().map(ToString::to_string).collect();
    v.join(",")
}

/// What the service needs to start.
#[derive(Debug)]
pub struct Start<'a> {
    pub config: MagConfig,
    pub restart_counter: u32,
    pub seed: u64,
    /// The nodes the previous run saved.
    pub saved: &'a [SavedBinding],
}

/// The MAG daemon's state and its API's answers.
#[derive(Debug)]
pub struct Service {
    mag: Mag,
    config: MagConfig,
    started: Instant,
    /// The time of the input being handled (views made while draining use it).
    now: Instant,
    restart_counter: u32,
    links: HashMap<u32, String>,
    /// Access links that went down and have not come up since: a node's frame from one of
    /// them was read after the link's event, and is stale.
    down: BTreeSet<u32>,
    lab: BTreeMap<String, String>,
    fast_handovers: u64,
    /// Profiles learned from the policy server that a reset's snapshot has not repeated yet.
    stale: BTreeSet<String>,
    lma_reachable: bool,
    policy_synced: bool,
    waiting: Vec<(String, oneshot::Sender<Result<EntryView, CallError>>)>,
    indications: Vec<(String, oneshot::Sender<Result<(), CallError>>)>,
    events: [u64; EVENT_KINDS.len()],
    handovers: BTreeMap<(&'static str, &'static str), u64>,
    /// When each node was last seen arriving on an access link: for the attach → RA and
    /// attach → first delivered packet histograms.
    seen_at: HashMap<LinkLayerAddress, Instant>,
    awaiting_delivery: HashMap<LinkLayerAddress, Instant>,
    /// Whether fast handovers (and so the buffer) are on, and its counters as the driver last
    /// saw them.
    buffering: bool,
    buffer: Option<crate::buffer::BufferStats>,
    /// What the previous save wrote, and whether the binding update list changed since.
    saved: Vec<SavedBinding>,
    dirty: bool,
    /// MTU of each up access link, for the DHCP Interface MTU option.
    link_mtu: HashMap<u32, u32>,
    /// Nodes detached by Neighbor Unreachability Detection while their link stayed up, by
    /// (link, node): the access side reports a node seen once per link, so the next frame
    /// heard from one of them is its attachment again.
    unreachable: BTreeSet<(u32, LinkLayerAddress)>,
    /// The LMA-generated link-local address put on each up access link (RFC 5213 §6.8).
    link_locals: HashMap<u32, Ipv6Addr>,
    /// (link, node) pairs heard on the IPv4 side since the link came up: the first frame of
    /// a node is its attachment, as a `NodeSeen` is on the IPv6 side (an IPv4-only node
    /// sends nothing else, RFC 5844 §3.4.3).
    ipv4_heard: BTreeSet<(u32, LinkLayerAddress)>,
    /// The latest DHCP message of each node that waits for its IPv4 home address from the
    /// LMA (RFC 5844 §3.4.1: a delayed response rather than a dropped DHCPDISCOVER).
    dhcp_waiting: BTreeMap<LinkLayerAddress, (u32, dhcp::DhcpRequest)>,
    ipv4_replies: [u64; IPV4_REPLY_KINDS.len()],
    // This turn's outputs.
    tx: Vec<Transmit>,
    steps: Vec<Step>,
    ras: Vec<RouterAdvertisement>,
    solicitations: Vec<NeighborSolicitation>,
    /// Access links that just came up, to ask for their node at once.
    probes: Vec<PresenceProbe>,
    /// When the links of [`Self::unreachable`] nodes are probed next: a node that answers
    /// again is heard and attached again, even one whose neighbor entry for the MAG is still
    /// reachable and so sends nothing else the MAG hears.
    next_presence_probe: Option<Instant>,
    /// Links that came up and on which no node has shown itself yet: when each came up and
    /// how many of [`LINK_UP_PROBES_AFTER`] it had.
    link_up_probes: BTreeMap<u32, (Instant, usize)>,
    registrations: Vec<Duration>,
    /// Ethernet frames (DHCP and ARP answers) to send on access links, by link index.
    ipv4_frames: Vec<(u32, Vec<u8>)>,
    /// Nodes whose DHCPRELEASE is to be acted on (RFC 5844 §3.4.3).
    ipv4_released: Vec<(LinkLayerAddress, std::net::Ipv4Addr)>,
    /// Answers that promise something of the datapath ("forwarding has begun", "registered"):
    /// the driver sends them once this turn's steps are in the kernel, so that a caller who
    /// acts on the answer (moves the node) does not race the route change.
    replies: Vec<Reply>,
}

/// An answer sent after this turn's datapath steps.
#[derive(Debug)]
pub enum Reply {
    Attach(
        oneshot::Sender<Result<EntryView, CallError>>,
        Box<Result<EntryView, CallError>>,
    ),
    Indication(
        oneshot::Sender<Result<(), CallError>>,
        Result<(), CallError>,
    ),
}

impl Reply {
    /// Sends it (a caller that went away is no error).
    pub fn send(self) {
        let _ = match self {
            Reply::Attach(tx, answer) => tx.send(*answer).map_err(drop),
            Reply::Indication(tx, answer) => tx.send(answer).map_err(drop),
        };
    }
}

impl Service {
    /// The state machine with the nodes of the previous run restored (their routes are this
    /// turn's steps, their refreshes this turn's messages), and the number restored.
    pub fn new(
        s: Start<'_>,
        now: Instant,
        wall: WallClock,
    ) -> Result<(Service, usize), PolicyError> {
        let mut mag = Mag::new(s.config.clone(), s.restart_counter, s.seed)?;
        let restored = mag.restore(now, wall, s.saved);
        let buffering = s.config.domain.fast_handover.mode != pmip::config::FastHandoverMode::Off;
        let mut service = Service {
            mag,
            policy_synced: s.config.policy_server.is_none(),
            config: s.config,
            started: now,
            now,
            restart_counter: s.restart_counter,
            links: HashMap::new(),
            down: BTreeSet::new(),
            lab: BTreeMap::new(),
            fast_handovers: 0,
            stale: BTreeSet::new(),
            lma_reachable: true,
            waiting: Vec::new(),
            indications: Vec::new(),
            events: [0; EVENT_KINDS.len()],
            handovers: BTreeMap::new(),
            seen_at: HashMap::new(),
            awaiting_delivery: HashMap::new(),
            buffering,
            buffer: None,
            saved: s.saved.to_vec(),
            dirty: false,
            link_mtu: HashMap::new(),
            link_locals: HashMap::new(),
            unreachable: BTreeSet::new(),
            ipv4_heard: BTreeSet::new(),
            dhcp_waiting: BTreeMap::new(),
            ipv4_replies: [0; IPV4_REPLY_KINDS.len()],
            tx: Vec::new(),
            steps: Vec::new(),
            ras: Vec::new(),
            solicitations: Vec::new(),
            probes: Vec::new(),
            next_presence_probe: None,
            link_up_probes: BTreeMap::new(),
            registrations: Vec::new(),
            ipv4_frames: Vec::new(),
            ipv4_released: Vec::new(),
            replies: Vec::new(),
        };
        service.drain();
        Ok((service, restored))
    }

    pub fn mag(&self) -> &Mag {
        &self.mag
    }

    // ------------------------------------------------------------------------ inputs

    /// A message from the signalling transport (its checksum verified by the kernel).
    pub fn handle_message(
        &mut self,
        now: Instant,
        wall: WallClock,
        src: Ipv6Addr,
        dst: Ipv6Addr,
        bytes: &[u8],
    ) {
        self.now = now;
        self.mag.handle_message_trusted(now, wall, src, dst, bytes);
        self.drain();
    }

    pub fn handle_timeout(&mut self, now: Instant, wall: WallClock) {
        self.now = now;
        self.mag.handle_timeout(now, wall);
        self.drain();
        self.probe_for_unreachable(now);
        self.probe_links_up(now);
        // A release answered once the node's registration concluded.
        self.release_ipv4(now, wall);
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        let probes = self
            .link_up_probes
            .values()
            .filter_map(|(up, n)| LINK_UP_PROBES_AFTER.get(*n).map(|d| *up + *d));
        [self.mag.poll_timeout(), self.next_presence_probe]
            .into_iter()
            .flatten()
            .chain(probes)
            .min()
    }

    /// The probes of links that came up and are still without a node, as
    /// [`LINK_UP_PROBES_AFTER`] has them.
    fn probe_links_up(&mut self, now: Instant) {
        let mut due = Vec::new();
        self.link_up_probes.retain(|link, (up, n)| {
            let Some(after) = LINK_UP_PROBES_AFTER.get(*n) else {
                return false;
            };
            if *up + *after <= now {
                due.push((*link, *n));
                *n += 1;
            }
            *n < LINK_UP_PROBES_AFTER.len()
        });
        for (link, n) in due {
            // The node may have answered an earlier probe while it could not send yet: the
            // first repeats announce the MAG's address, which lets its answer out.
            self.probes
                .extend(self.presence_probe(link).map(|p| PresenceProbe {
                    announce: n < MAX_NEIGHBOR_ADVERTISEMENT,
                    ..p
                }));
        }
    }

    /// The presence probe of an up access link, from the link's fixed address; `None` in the
    /// LMA-generated mode, where the link has no address of the MAG's before the node
    /// registers.
    fn presence_probe(&self, ifindex: u32) -> Option<PresenceProbe> {
        match &self.config.domain.link_local {
            LinkLocalMode::Fixed { address, .. } => Some(PresenceProbe {
                link: ifindex,
                src_link_local: *address,
                src_link_layer: self.config.domain.link_local.link_layer_address(),
                announce: false,
            }),
            LinkLocalMode::LmaGenerated { .. } => None,
        }
    }

    /// Every [`PRESENCE_PROBE_INTERVAL`] while nodes detached by Neighbor Unreachability
    /// Detection are on links that stay up: their links are probed.
    fn probe_for_unreachable(&mut self, now: Instant) {
        if self.next_presence_probe.is_none_or(|t| now < t) {
            return;
        }
        let links: BTreeSet<u32> = self.unreachable.iter().map(|(i, _)| *i).collect();
        for link in &links {
            if self.links.contains_key(link)
                && let Some(p) = self.presence_probe(*link)
            {
                self.probes.push(p);
            }
        }
        self.next_presence_probe = (!links.is_empty()).then(|| now + PRESENCE_PROBE_INTERVAL);
    }

    /// What the access side saw.
    pub fn handle_access(&mut self, now: Instant, wall: WallClock, a: AccessInput) {
        self.now = now;
        match a {
            AccessInput::LinkUp { ifindex, name, mtu } => {
                debug!(ifindex, %name, mtu, "access link up");
                self.down.remove(&ifindex);
                self.links.insert(ifindex, name);
                self.link_mtu.insert(ifindex, mtu);
                // In the LMA-generated mode the address is per node; the link gets it when
                // the node registers, and until then has only its MAC (and no probe: there is
                // no address of the MAG's to ask from; the node's own reports find it).
                if let Some(probe) = self.presence_probe(ifindex) {
                    let mut mac = [0u8; 6];
                    if probe.src_link_layer.as_bytes().len() == 6 {
                        mac.copy_from_slice(probe.src_link_layer.as_bytes());
                    }
                    self.steps.push(Step::Change(Change::PrepareAccessLink {
                        ifindex,
                        link: AccessLinkAddresses {
                            link_layer_address: mac,
                            link_local: probe.src_link_local,
                        },
                    }));
                    // The node that brought the link up shows itself unasked only with its
                    // MLD reports, milliseconds later: ask it now (an Echo Request to
                    // all-nodes, which it answers by resolving this address), and again while
                    // it does not answer.
                    self.probes.push(probe);
                    self.link_up_probes.insert(ifindex, (now, 0));
                }
            }
            AccessInput::LinkDown { ifindex } => {
                self.link_up_probes.remove(&ifindex);
                self.down.insert(ifindex);
                self.links.remove(&ifindex);
                self.link_mtu.remove(&ifindex);
                // A link that goes down loses its IPv6 addresses: the next RA puts the
                // address back.
                self.link_locals.remove(&ifindex);
                self.unreachable.retain(|(i, _)| *i != ifindex);
                self.ipv4_heard.retain(|(i, _)| *i != ifindex);
                self.dhcp_waiting.retain(|_, (i, _)| *i != ifindex);
                let gone: Vec<LinkLayerAddress> = (self.mag.bindings())
                    .filter(|e| e.link == AccessLink(ifindex))
                    .map(|e| e.link_layer)
                    .collect();
                for ll in gone {
                    self.seen_at.remove(&ll);
                    self.awaiting_delivery.remove(&ll);
                    self.mag.handle_detach(now, wall, &ll);
                }
            }
            // A frame read after its link went down (the link's event came first on a busy
            // machine) is stale: the node is not there any more, and taking it for an attach
            // re-registered a node that had moved to another MAG, and took its binding away.
            AccessInput::NodeSeen { ifindex, .. }
            | AccessInput::NodeHeard { ifindex, .. }
            | AccessInput::RouterSolicitation { ifindex, .. }
                if self.down.contains(&ifindex) =>
            {
                debug!(ifindex, "a node's frame from a link that is down: ignored");
            }
            AccessInput::NodeSeen {
                ifindex,
                link_layer,
            } => {
                self.link_up_probes.remove(&ifindex);
                self.node_seen(now, wall, ifindex, link_layer);
            }
            AccessInput::NodeHeard {
                ifindex,
                link_layer,
                link_local,
            } => {
                if self.unreachable.remove(&(ifindex, link_layer)) {
                    self.node_seen(now, wall, ifindex, link_layer);
                }
                self.mag
                    .handle_node_heard(now, AccessLink(ifindex), link_layer, link_local);
            }
            AccessInput::RouterSolicitation {
                ifindex,
                link_layer,
            } => {
                self.mag
                    .handle_router_solicitation(now, wall, AccessLink(ifindex), link_layer);
            }
        }
        self.drain();
    }

    fn node_seen(&mut self, now: Instant, wall: WallClock, ifindex: u32, ll: LinkLayerAddress) {
        self.seen_at.entry(ll).or_insert(now);
        if self.buffering {
            self.awaiting_delivery.entry(ll).or_insert(now);
        }
        self.mag.handle_attach(
            now,
            wall,
            Attach {
                link_layer: ll,
                link: AccessLink(ifindex),
                access_technology_type: None,
                handoff_hint: None,
            },
        );
    }

    /// A DHCP message or ARP packet a node sent (the IPv4 side of the access links, RFC 5844
    /// §3.4 and §3.2.3.2). Frames from links that are not up access links are not the
    /// MAG's to answer (the capture sees every link of the namespace).
    pub fn handle_ipv4(&mut self, now: Instant, wall: WallClock, frame: Ipv4Frame) {
        self.now = now;
        let ifindex = frame.ifindex();
        if !self.links.contains_key(&ifindex) {
            return;
        }
        let ll = LinkLayerAddress::mac(frame.node());
        // RFC 5844 §3.4.3: the DHCPDISCOVER (or any first IPv4 frame of a node that sends
        // no IPv6) triggers the registration, as the node's first IPv6 frame does.
        let here = |e: &BulEntry| e.link == AccessLink(ifindex);
        let attached = self.mag.binding_by_link_layer(&ll).is_some_and(here);
        if self.ipv4_heard.insert((ifindex, ll)) && !attached {
            self.node_seen(now, wall, ifindex, ll);
            self.drain();
        }
        match frame {
            Ipv4Frame::Dhcp { request, .. } => {
                // A node that released its address and asks again (RFC 5844 §3.2.3.3).
                if request.message.opts().msg_type() == Some(dhcproto::v4::MessageType::Discover)
                    && self.mag.handle_ipv4_request(now, wall, &ll)
                {
                    self.drain();
                }
                self.dhcp_waiting.insert(ll, (ifindex, request));
                self.answer_dhcp(ll);
                self.release_ipv4(now, wall);
            }
            Ipv4Frame::Arp { request, .. } => {
                // RFC 5844 §3.2.3.2, §3.2.4: only for a node served with IPv4 here.
                let Some(home) = self.served_ipv4(&ll, ifindex) else {
                    return;
                };
                if let Some(f) = arp::answer(&request, &home, self.own_mac()) {
                    self.ipv4_frames.push((ifindex, f));
                    self.ipv4_replies[3] += 1;
                }
            }
        }
    }

    /// De-registers the IPv4 home addresses released with a DHCPRELEASE (RFC 5844 §3.4.3):
    /// the address alone, or the session of an IPv4-only node.
    fn release_ipv4(&mut self, now: Instant, wall: WallClock) {
        for (ll, a) in std::mem::take(&mut self.ipv4_released) {
            if !self.mag.handle_ipv4_release(now, wall, &ll, a) {
                continue;
            }
            if self
                .mag
                .binding_by_link_layer(&ll)
                .is_none_or(|e| e.prefixes.is_empty())
            {
                // An IPv4-only node: its next DHCPDISCOVER registers it again, as its first
                // one did.
                self.ipv4_heard.retain(|(_, l)| *l != ll);
            }
            self.drain();
        }
    }

    /// The domain's fixed MAG link-layer address (validated: 6 bytes).
    fn own_mac(&self) -> [u8; 6] {
        let fixed = self.config.domain.link_local.link_layer_address();
        fixed.as_bytes().try_into().unwrap_or([0; 6])
    }

    /// The IPv4 home address of node `ll` if it is registered on link `ifindex` with one.
    fn served_ipv4(
        &self,
        ll: &LinkLayerAddress,
        ifindex: u32,
    ) -> Option<pmip::ipv4_pool::Ipv4HomeAddress> {
        (self.mag.binding_by_link_layer(ll))
            .filter(|e| e.link == AccessLink(ifindex) && e.is_bound())
            .and_then(|e| e.ipv4)
    }

    /// Answers the waiting DHCP message of `ll` if its registration concluded: with the
    /// LMA-assigned address once there is one (RFC 5844 §3.4.1); silently dropped when the
    /// node is not served with IPv4 on this link (§3.4.3: the MAG "MUST NOT enable IPv4
    /// home address mobility support"; RFC 2131 §4.3.2: no record, no answer).
    fn answer_dhcp(&mut self, ll: LinkLayerAddress) {
        let Some((ifindex, _)) = self.dhcp_waiting.get(&ll) else {
            return;
        };
        let ifindex = *ifindex;
        let entry = self.mag.binding_by_link_layer(&ll);
        let registering = entry.is_some_and(|e| {
            e.link == AccessLink(ifindex)
                && e.ipv4_service
                && (matches!(e.state, BulState::Registering | BulState::Expected)
                    // A refresh that asks for an address again (RFC 5844 §3.2.3.3).
                    || (e.state == BulState::Refreshing && e.ipv4.is_none()))
        });
        if registering {
            return;
        }
        let home = self.served_ipv4(&ll, ifindex);
        let lifetime = entry.map_or(0, |e| e.lifetime.as_secs());
        let Some((_, request)) = self.dhcp_waiting.remove(&ll) else {
            return;
        };
        let Some(home) = home else {
            debug!(link_layer = %ll, link = ifindex, "DHCP ignored: no IPv4 home address for the node here");
            return;
        };
        let settings = dhcp::DhcpSettings {
            own_mac: self.own_mac(),
            // RFC 5844 §3.4.3 lets the lease differ from the binding lifetime; the reading
            // taken: the lifetime the LMA granted, so that the node renews (at half of it)
            // while its binding is refreshed, and a node that left stops using the address
            // no later than its binding ends.
            lease_time_s: u32::try_from(lifetime).unwrap_or(u32::MAX).max(1),
            // §3.4.3: the Interface MTU option SHOULD be the tunnel MTU, and never more than
            // the access link carries.
            mtu: (self.config.router_advertisement.mtu.unwrap_or(1460))
                .min(self.link_mtu.get(&ifindex).copied().unwrap_or(u32::MAX))
                .clamp(576, u32::from(u16::MAX)) as u16,
            dns_servers: Vec::new(),
        };
        match dhcp::answer(&request, Some(&home), &settings) {
            dhcp::Decision::Reply { kind, frame } => {
                let k = match kind {
                    dhcproto::v4::MessageType::Offer => 0,
                    dhcproto::v4::MessageType::Nak => 2,
                    _ => 1,
                };
                self.ipv4_replies[k] += 1;
                info!(link_layer = %ll, link = ifindex, kind = ?kind, address = %home.address, "DHCP answered");
                self.ipv4_frames.push((ifindex, frame));
            }
            dhcp::Decision::Released(a) => {
                // RFC 5844 §3.4.3: the trigger for de-registering the IPv4 home address (the
                // prefixes stay; an IPv4-only session ends).
                info!(link_layer = %ll, address = %a, "the node released its IPv4 home address");
                self.ipv4_released.push((ll, a));
            }
            dhcp::Decision::Declined(a) => {
                warn!(link_layer = %ll, address = %a, "the node declined its IPv4 home address")
            }
            dhcp::Decision::AwaitAddress => {}
            dhcp::Decision::Ignore(why) => debug!(link_layer = %ll, why, "DHCP ignored"),
        }
    }

    /// De-registers every node (before an exit with `--deregister-on-exit`).
    pub fn detach_all(&mut self, now: Instant, wall: WallClock) {
        self.now = now;
        let lls: Vec<LinkLayerAddress> = self.mag.bindings().map(|e| e.link_layer).collect();
        for ll in lls {
            self.mag.handle_detach(now, wall, &ll);
        }
        self.drain();
    }

    // ------------------------------------------------------------------------ outputs

    /// A change that goes before everything else of this turn (the tunnel termination at
    /// start).
    pub fn prepare(&mut self, c: Change) {
        self.steps.insert(0, Step::Change(c));
    }

    /// This turn's datapath steps, in order.
    pub fn take_steps(&mut self) -> Vec<Step> {
        std::mem::take(&mut self.steps)
    }

    /// The answers to send now that this turn's steps are applied.
    pub fn take_replies(&mut self) -> Vec<Reply> {
        std::mem::take(&mut self.replies)
    }

    pub fn take_router_advertisements(&mut self) -> Vec<RouterAdvertisement> {
        std::mem::take(&mut self.ras)
    }

    pub fn take_neighbor_solicitations(&mut self) -> Vec<NeighborSolicitation> {
        std::mem::take(&mut self.solicitations)
    }

    /// Probes for the nodes of links that just came up ([`crate::access::presence_probe_frame`]).
    pub fn take_presence_probes(&mut self) -> Vec<PresenceProbe> {
        std::mem::take(&mut self.probes)
    }

    pub fn take_transmits(&mut self) -> Vec<Transmit> {
        std::mem::take(&mut self.tx)
    }

    /// From attachment to the accepting PBA, for each registration of this turn.
    pub fn take_registrations(&mut self) -> Vec<Duration> {
        std::mem::take(&mut self.registrations)
    }

    /// DHCP and ARP answers to send, each on its access link: after this turn's steps, so
    /// that the node's address is routed before it is offered (RFC 5844 §3.4.1 step 4).
    pub fn take_ipv4_frames(&mut self) -> Vec<(u32, Vec<u8>)> {
        std::mem::take(&mut self.ipv4_frames)
    }

    /// A Router Advertisement went out at `now`: the L3 handover time of its node when it is
    /// the first with a prefix since the node was seen.
    pub fn ra_sent(&mut self, ra: &RouterAdvertisement, now: Instant) -> Option<Duration> {
        if ra.prefixes.is_empty() {
            return None;
        }
        self.seen_at.remove(&ra.mn_link_layer).map(|t| now - t)
    }

    /// Buffered packets of `prefix` reached their node at `now`: the time since it was seen,
    /// the first time.
    pub fn delivered(&mut self, prefix: &ipnet::IpNet, now: Instant) -> Option<Duration> {
        let ll = (self.mag.bindings())
            .find(|e| e.home_nets().contains(prefix))
            .map(|e| e.link_layer)?;
        self.delivered_to(&ll, now)
    }

    /// Buffered packets reached the node `ll` at `now`: the time since it was seen, the first
    /// time.
    pub fn delivered_to(&mut self, ll: &LinkLayerAddress, now: Instant) -> Option<Duration> {
        self.awaiting_delivery.remove(ll).map(|t| now - t)
    }

    /// The registered nodes to write when they changed since the last save (or, with `force`,
    /// when they differ from what was written or the file is missing).
    pub fn to_save(&mut self, force: bool, file_exists: bool) -> Option<Vec<SavedBinding>> {
        if !(self.dirty || force) {
            return None;
        }
        self.dirty = false;
        let now = self.mag.save();
        (now != self.saved || !file_exists).then_some(now)
    }

    /// `saved` is on disk.
    pub fn saved(&mut self, saved: Vec<SavedBinding>) {
        self.saved = saved;
    }

    /// Forgets what was written, so that the next save writes whatever there is.
    pub fn forget_saved(&mut self) {
        self.saved.clear();
        self.dirty = true;
    }

    /// The fast-handover buffer's counters now (the driver owns the buffer).
    pub fn observe_buffer(&mut self, stats: crate::buffer::BufferStats) {
        self.buffer = Some(stats);
    }

    pub fn stats(&self) -> Stats {
        let s = self.mag.stats();
        Stats {
            pbu_sent: s.pbu_sent,
            pbu_retransmitted: s.pbu_retransmitted,
            pba_received: s.pba_received,
            pba_by_status: (s.pba_by_status.iter().enumerate())
                .filter(|(_, n)| **n > 0)
                .map(|(k, n)| (Status::from(k as u8), *n))
                .collect(),
            bul_entries: self.mag.bindings().count(),
            registered: self.mag.bindings().filter(|e| e.is_bound()).count(),
            events: self.events,
            handovers: self.handovers.clone(),
            buffer: self.buffer,
            lma_reachable: self.lma_reachable,
            ipv4_replies: self.ipv4_replies,
        }
    }

    // ------------------------------------------------------------------------ the state machine's outputs

    fn drain(&mut self) {
        while let Some(o) = self.mag.poll_output() {
            match o {
                MagOutput::Transmit(t) => self.tx.push(t),
                MagOutput::Datapath(c) => self.steps.push(match datapath::change(&c) {
                    // The end of a relay is the buffer's to see: the route may be its own.
                    Some(_) if matches!(c, DatapathCommand::RemoveDownlink { .. }) => {
                        Step::Buffer(c)
                    }
                    Some(ch) => Step::Change(ch),
                    None => Step::Buffer(c),
                }),
                MagOutput::RouterAdvertisement(mut ra) => {
                    // RFC 5213 §6.9.2, §6.9.5: the tunnel MTU, or the access link's when that
                    // is lower (never below the IPv6 minimum, RFC 8200 §5).
                    if let Some(&link) = self.link_mtu.get(&ra.link.0) {
                        ra.mtu = ra.mtu.min(link.max(1280));
                    }
                    self.put_link_local(&ra);
                    self.ras.push(ra);
                }
                MagOutput::NeighborSolicitation(ns) => self.solicitations.push(ns),
                MagOutput::Event(e) => self.event(e),
                MagOutput::BindingUpdateList(c) => self.bul_changed(c),
            }
        }
        let waiting: Vec<LinkLayerAddress> = self.dhcp_waiting.keys().copied().collect();
        for ll in waiting {
            self.answer_dhcp(ll);
        }
    }

    /// RFC 5213 §6.9.1.2 rule 15: in the LMA-generated mode the MAG "SHOULD configure that
    /// link-local address on that point-to-point link" - before the RA that has it as its
    /// source, as §6.8 asks (the node must find its router's address taken when it runs
    /// DAD). The address goes on with `nodad`: the kernel answers the node's Neighbor
    /// Solicitations for it (its DAD probes included) from then on, which is the defence.
    /// The steps of a turn are applied before its RAs are sent. The domain's link-layer
    /// address goes on the link with it, as in the fixed mode, so that the node's frames to
    /// the MAC its RAs name reach the MAG. Reading: the case where the node already uses the
    /// address (rule 15's "MUST NOT use that address") is not detected; with the LMA's
    /// addresses generated at random, a node collides with one only by chance.
    fn put_link_local(&mut self, ra: &RouterAdvertisement) {
        let LinkLocalMode::LmaGenerated { link_layer_address } = &self.config.domain.link_local
        else {
            return;
        };
        let (ifindex, address) = (ra.link.0, ra.src_link_local);
        // A withdrawal needs no router. An RA before the PBA comes from the address of a fast
        // handover's context (RFC 5949 §6.2.5), or, from a previous MAG that sent none, from
        // no address yet.
        if address.is_unspecified()
            || ra.router_lifetime.is_zero()
            || !self.links.contains_key(&ifindex)
            || self.link_locals.get(&ifindex) == Some(&address)
        {
            return;
        }
        let Ok(mac) = <[u8; 6]>::try_from(link_layer_address.as_bytes()) else {
            return;
        };
        self.link_locals.insert(ifindex, address);
        self.steps.push(Step::Change(Change::PrepareAccessLink {
            ifindex,
            link: AccessLinkAddresses {
                link_layer_address: mac,
                link_local: address,
            },
        }));
    }

    /// Answers the API calls that wait on this entry's change: an attach waits for the end
    /// of its registration, a handover indication for the new MAG's acknowledgement.
    fn bul_changed(&mut self, c: BulChange) {
        if let BulChange::Removed { link_layer, .. } = &c {
            // A node that comes back on the same link is an attachment again.
            self.ipv4_heard.retain(|(_, ll)| ll != link_layer);
        }
        let (mn_id, entry, handover) = match &c {
            BulChange::Updated { entry, handover } => {
                (&entry.mn_id, Some(&**entry), handover.as_ref())
            }
            BulChange::Removed { mn_id, .. } => (mn_id, None, None),
        };
        if self.waiting.iter().any(|(id, _)| id == mn_id) {
            self.answer_waiting(mn_id.clone(), entry, handover.is_some());
        }
        if self.indications.iter().any(|(id, _)| id == mn_id) {
            self.answer_indications(mn_id.clone(), handover.cloned());
        }
    }

    /// Replies to the handover indications of `mn_id` once the HAck came (or the handover
    /// failed): `handover` is its fast handover now.
    fn answer_indications(&mut self, mn_id: String, handover: Option<FastHandover>) {
        if matches!(&handover, Some(f) if f.phase == FastPhase::Initiating) {
            return;
        }
        let (done, keep) = std::mem::take(&mut self.indications)
            .into_iter()
            .partition(|(id, _)| *id == mn_id);
        self.indications = keep;
        for (_, reply) in done {
            let answer = match &handover {
                Some(_) => Ok(()),
                None => Err(CallError::FailedPrecondition(format!(
                    "{mn_id}: the new MAG did not acknowledge the handover"
                ))),
            };
            self.replies.push(Reply::Indication(reply, answer));
        }
    }

    /// Replies to the `Attach { wait: true }` calls of `mn_id` once its registration
    /// concluded: `entry` is its entry now (`None`: gone).
    fn answer_waiting(&mut self, mn_id: String, entry: Option<&BulEntry>, handover: bool) {
        if entry.is_some_and(|e| e.state == BulState::Registering) {
            return;
        }
        let (done, keep) = std::mem::take(&mut self.waiting)
            .into_iter()
            .partition(|(id, _)| *id == mn_id);
        self.waiting = keep;
        for (_, reply) in done {
            let answer = match entry {
                Some(e) => Ok(self.view_of(e, handover, self.now)),
                None => Err(CallError::NotFound(format!(
                    "{mn_id}: registration gave up (no PBA)"
                ))),
            };
            self.replies.push(Reply::Attach(reply, Box::new(answer)));
        }
    }

    fn event(&mut self, e: MagEvent) {
        let kind = match &e {
            MagEvent::UnknownNode { link_layer, link } => {
                info!(%link_layer, link = link.0, "a node without a profile attached: no service");
                0
            }
            MagEvent::Registered {
                mn_id,
                prefixes,
                after,
            } => {
                info!(
                    %mn_id,
                    prefixes = %prefix_list(prefixes),
                    after_ms = after.as_secs_f64() * 1e3,
                    "registered"
                );
                self.registrations.push(*after);
                self.dirty = true;
                1
            }
            MagEvent::Refreshed { .. } => 2,
            MagEvent::Rejected { mn_id, status } => {
                warn!(%mn_id, %status, "registration refused");
                self.dirty = true;
                3
            }
            MagEvent::GaveUp { mn_id } => {
                warn!(%mn_id, "no PBA after every retransmission");
                self.dirty = true;
                4
            }
            MagEvent::Deregistered { mn_id } => {
                info!(%mn_id, "de-registered");
                self.dirty = true;
                5
            }
            MagEvent::Expired { mn_id } => {
                warn!(%mn_id, "binding expired");
                self.dirty = true;
                6
            }
            MagEvent::Revoked { mn_id, trigger } => {
                info!(%mn_id, %trigger, "binding revoked by the LMA");
                self.dirty = true;
                7
            }
            MagEvent::PbaIgnored { mn_id, reason } => {
                debug!(%mn_id, reason, "PBA ignored");
                8
            }
            MagEvent::Peer(p) => {
                match p {
                    PeerEvent::Unreachable { peer } => {
                        warn!(%peer, "LMA does not answer heartbeats");
                        self.lma_reachable = false;
                    }
                    PeerEvent::Reachable { peer } => {
                        info!(%peer, "LMA answers heartbeats again");
                        self.lma_reachable = true;
                    }
                    PeerEvent::Restarted { peer, old, new } => {
                        info!(%peer, old = *old, new, "LMA restarted: re-registering every node");
                    }
                    PeerEvent::Unsupported { peer } => {
                        warn!(%peer, "LMA does not support heartbeats (Binding Error, status 2): none sent to it again");
                    }
                }
                9
            }
            MagEvent::HandoverStarted {
                mn_id,
                mode,
                role,
                peer,
            } => {
                info!(
                    %mn_id,
                    mode = mode_name(*mode),
                    role = role_name(*role),
                    %peer,
                    "fast handover started"
                );
                10
            }
            MagEvent::HandoverAcknowledged { mn_id, peer } => {
                info!(%mn_id, %peer, "fast handover acknowledged: forwarding to the new MAG");
                11
            }
            MagEvent::HandoverCompleted {
                mn_id,
                mode,
                role,
                peer,
                took,
            } => {
                info!(
                    %mn_id,
                    mode = mode_name(*mode),
                    role = role_name(*role),
                    %peer,
                    took_ms = took.as_secs_f64() * 1e3,
                    "fast handover completed"
                );
                *(self.handovers)
                    .entry((mode_name(*mode), "completed"))
                    .or_default() += 1;
                self.fast_handovers += 1;
                self.dirty = true;
                12
            }
            MagEvent::HandoverFailed {
                mn_id,
                mode,
                role,
                reason,
            } => {
                warn!(
                    %mn_id,
                    mode = mode_name(*mode),
                    role = role_name(*role),
                    reason,
                    "fast handover failed"
                );
                *(self.handovers)
                    .entry((mode_name(*mode), "failed"))
                    .or_default() += 1;
                13
            }
            MagEvent::Dropped { from, reason } => {
                debug!(%from, %reason, "message dropped");
                14
            }
            MagEvent::Ipv4Released {
                mn_id,
                address,
                session_ended,
            } => {
                info!(%mn_id, %address, session_ended, "IPv4 home address de-registered after a DHCPRELEASE");
                self.dirty = true;
                15
            }
            MagEvent::Unreachable {
                mn_id,
                link_layer,
                link,
            } => {
                info!(%mn_id, %link_layer, link = link.0, "the node stopped answering on its link: detached");
                self.unreachable.insert((link.0, *link_layer));
                if self.next_presence_probe.is_none() {
                    self.next_presence_probe = Some(self.now + PRESENCE_PROBE_INTERVAL);
                }
                16
            }
        };
        self.events[kind] += 1;
    }

    fn view(&self, e: &BulEntry, now: Instant) -> EntryView {
        self.view_of(e, self.mag.handover(&e.link_layer).is_some(), now)
    }

    fn view_of(&self, e: &BulEntry, handover: bool, now: Instant) -> EntryView {
        EntryView {
            handover,
            access_interface: self.links.get(&e.link.0).cloned().unwrap_or_default(),
            remaining_s: e.expires_at.map_or(0, |x| (x - now).as_secs() as u32),
            attached_ago: now - e.attached_at,
            registered_ago: e.registered_at.map(|r| now - r),
            lab: self.lab.contains_key(&e.mn_id),
            entry: e.clone(),
        }
    }

    // ------------------------------------------------------------------------ the API

    /// Answers one command (an attach with `wait` and a handover indication answer later).
    pub fn command(&mut self, now: Instant, wall: WallClock, cmd: Command) {
        self.now = now;
        match cmd {
            Command::List { reply } => {
                let _ = reply.send(self.list(now));
            }
            Command::Attach {
                link_layer,
                interface,
                access_technology_type,
                wait,
                reply,
            } => {
                let Some(ifindex) = (self.links.iter())
                    .find(|(_, n)| **n == interface)
                    .map(|(i, _)| *i)
                else {
                    let _ = reply.send(Err(CallError::FailedPrecondition(format!(
                        "{interface} is not an access interface of this MAG (or it is down)"
                    ))));
                    return;
                };
                let Some(mn_id) = (self.mag.policy())
                    .by_link_layer(&link_layer)
                    .map(|p| p.mn_id.to_string())
                else {
                    let _ = reply.send(Err(CallError::NotFound(format!(
                        "no profile has link-layer address {link_layer}"
                    ))));
                    return;
                };
                self.mag.handle_attach(
                    now,
                    wall,
                    Attach {
                        link_layer,
                        link: AccessLink(ifindex),
                        access_technology_type,
                        handoff_hint: None,
                    },
                );
                self.drain();
                if wait {
                    self.waiting.push((mn_id.clone(), reply));
                    // A node already registered here changes nothing: it answers at once.
                    let entry = self.mag.binding(&mn_id).cloned();
                    let handover = entry
                        .as_ref()
                        .is_some_and(|e| self.mag.handover(&e.link_layer).is_some());
                    self.answer_waiting(mn_id, entry.as_ref(), handover);
                } else if let Some(e) = self.mag.binding(&mn_id) {
                    let v = self.view(e, now);
                    let _ = reply.send(Ok(v));
                }
            }
            Command::Detach { node, reply } => {
                let entry = match &node {
                    NodeKey::LinkLayer(ll) => self.mag.binding_by_link_layer(ll),
                    NodeKey::MnId(id) => self.mag.binding(id),
                };
                let Some(e) = entry else {
                    let _ = reply.send(Err(CallError::NotFound(format!("no entry for {node:?}"))));
                    return;
                };
                let v = self.view(e, now);
                let ll = e.link_layer;
                self.mag.handle_detach(now, wall, &ll);
                self.drain();
                let _ = reply.send(Ok(v));
            }
            Command::Stats { reply } => {
                let _ = reply.send(self.stats_view(now));
            }
            Command::UpsertProfile(p) => {
                let id = p.mn_id.to_string();
                // Local profiles win (MagConfig::policy_server).
                if self.mag.policy().check_api_change(&id).is_err() {
                    return;
                }
                match self.mag.upsert_profile(p) {
                    Ok(()) => {
                        self.stale.remove(&id);
                    }
                    Err(e) => warn!(error = %e, "profile from the policy server refused"),
                }
            }
            Command::RemoveProfile(id) => {
                if self.mag.policy().origin(&id) == Some(Origin::Api) {
                    self.mag.remove_profile(now, wall, &id);
                    self.drain();
                }
            }
            Command::HandoverIndication {
                mn_id,
                new_mag,
                reply,
            } => match self.mag.handle_handover_indication(now, &mn_id, new_mag) {
                Ok(()) => {
                    self.indications.push((mn_id.clone(), reply));
                    self.drain();
                    let handover = (self.mag.binding(&mn_id))
                        .and_then(|e| self.mag.handover(&e.link_layer))
                        .cloned();
                    self.answer_indications(mn_id, handover);
                }
                Err(e) => {
                    let _ = reply.send(Err(match e {
                        pmip::mag::FastError::NotRegistered(_) => {
                            CallError::NotFound(e.to_string())
                        }
                        _ => CallError::FailedPrecondition(e.to_string()),
                    }));
                }
            },
            Command::ExpectArrival {
                link_layer,
                previous_mag,
            } => self.mag.expect_arrival(now, link_layer, previous_mag),
            Command::KnowsNode { link_layer, reply } => {
                let _ = reply.send(self.mag.policy().by_link_layer(&link_layer).is_some());
            }
            Command::LinkLayerOf { mn_id, reply } => {
                let ll = (self.mag.policy().get(&mn_id))
                    .and_then(|(p, _)| p.link_layer_addresses.first().copied());
                let _ = reply.send(ll);
            }
            Command::PolicyReset => {
                self.stale = (self.mag.policy().profiles_with_origin())
                    .filter(|(_, o)| *o == Origin::Api)
                    .map(|(p, _)| p.mn_id.to_string())
                    .collect();
            }
            Command::PolicySynced(s) => {
                self.policy_synced = s;
                if s {
                    for id in std::mem::take(&mut self.stale) {
                        self.mag.remove_profile(now, wall, &id);
                    }
                    self.drain();
                }
            }
            Command::LabNode {
                mn_id,
                interface,
                present,
            } => {
                if present {
                    self.lab.insert(mn_id, interface);
                } else {
                    self.lab.remove(&mn_id);
                }
            }
        }
    }

    /// The binding update list, by MN-ID.
    pub fn list(&self, now: Instant) -> Vec<EntryView> {
        let mut v: Vec<EntryView> = self.mag.bindings().map(|e| self.view(e, now)).collect();
        // By MN-ID, then link-layer address: a node attached with two interfaces has two
        // entries, and a page token names the pair (`api.rs`).
        v.sort_by(|a, b| {
            (a.entry.mn_id.as_str(), a.entry.link_layer.as_bytes())
                .cmp(&(b.entry.mn_id.as_str(), b.entry.link_layer.as_bytes()))
        });
        v
    }

    pub fn stats_view(&self, now: Instant) -> StatsView {
        let s = self.stats();
        StatsView {
            name: self.config.name.clone(),
            proxy_coa: self.config.proxy_coa,
            lma_address: self.config.lma_address,
            restart_counter: self.restart_counter,
            uptime: now - self.started,
            bul_entries: s.bul_entries,
            registered: s.registered,
            pbus_sent: s.pbu_sent,
            pbu_retransmissions: s.pbu_retransmitted,
            pbas_by_status: s.pba_by_status,
            lma_reachable: self.lma_reachable,
            lab_nodes: self.lab.len(),
            profiles: self.mag.policy().len(),
            policy_synced: self.policy_synced,
            fast_handovers: self.fast_handovers,
            buffered_packets: self.buffer.map_or(0, |b| b.held),
        }
    }
}

#[cfg(test)]
mod tests {
    //! The service without a runtime, against a real LMA state machine: what the service
    //! sends goes to the LMA, what the LMA answers comes back, on a clock the test moves.

    use super::*;
    use pmip::config::LmaConfig;
    use pmip::lma::{Lma, LmaOutput};

    const LMA: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 1);
    const MAG1: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x10);
    const ACC: u32 = 7;

    fn nai(n: u8) -> String {
        format!("mn{n}@example.org")
    }

    fn ll(n: u8) -> LinkLayerAddress {
        LinkLayerAddress::mac([2, 0, 0, 0, 0, n])
    }

    fn profiles(ns: &[u8]) -> Vec<serde_json::Value> {
        ns.iter()
            .map(|n| serde_json::json!({"mn_id": nai(*n), "link_layer_addresses": [ll(*n).to_string()]}))
            .collect()
    }

    fn mag_config() -> MagConfig {
        let c: MagConfig = serde_json::from_value(serde_json::json!({
            "name": "mag-test",
            "proxy_coa": MAG1.to_string(),
            "lma_address": LMA.to_string(),
            "access_interfaces": ["acc*"],
            "mobile_nodes": profiles(&[1, 2]),
            "domain": {"heartbeat": {"interval_s": 0}},
            "datapath": {"mode": "none"},
        }))
        .unwrap();
        c.validate().unwrap();
        c
    }

    fn lma() -> Lma {
        let c: LmaConfig = serde_json::from_value(serde_json::json!({
            "address": LMA.to_string(),
            "prefix_pools": [{"prefix": "2001:db8:100::/48", "prefix_length": 64}],
            "authorized_mags": [MAG1.to_string()],
            "mobile_nodes": profiles(&[1, 2, 9]),
            "domain": {"heartbeat": {"interval_s": 0}},
            "datapath": {"mode": "none"},
        }))
        .unwrap();
        c.validate().unwrap();
        Lma::new(c, 1, 3).unwrap()
    }

    /// The service of a MAG started with `config` (restart counter 1, seed 11).
    fn service(
        config: MagConfig,
        saved: &[SavedBinding],
        now: Instant,
        wall: WallClock,
    ) -> Service {
        Service::new(
            Start {
                config,
                restart_counter: 1,
                seed: 11,
                saved,
            },
            now,
            wall,
        )
        .unwrap()
        .0
    }

    struct Bench {
        s: Service,
        lma: Lma,
        now: Instant,
        wall: WallClock,
        /// What the service sent, and the LMA answered, so far.
        sent: usize,
    }

    impl Bench {
        fn new(saved: &[SavedBinding]) -> Bench {
            let now = Instant::from_duration(Duration::from_secs(1));
            let wall = WallClock(Duration::from_secs(1_800_000_000));
            let mut b = Bench {
                s: service(mag_config(), saved, now, wall),
                lma: lma(),
                now,
                wall,
                sent: 0,
            };
            b.access(AccessInput::LinkUp {
                ifindex: ACC,
                name: "acc0".into(),
                mtu: 1500,
            });
            b
        }

        /// A MAG and an LMA where node 3 is served with IPv4 and IPv6, node 4 asks for IPv4
        /// but the LMA does not entitle it, node 1 has IPv6 only.
        fn ipv4() -> Bench {
            let mut b = Bench::new(&[]);
            let mut nodes = profiles(&[1, 3, 4]);
            nodes[1]["ipv4"] = true.into();
            nodes[2]["ipv4"] = true.into();
            let mut c = mag_config();
            c.mobile_nodes = serde_json::from_value(nodes.clone().into()).unwrap();
            c.validate().unwrap();
            let s = service(c, &[], b.now, b.wall);
            nodes[2]["ipv4"] = false.into();
            let l: LmaConfig = serde_json::from_value(serde_json::json!({
                "address": LMA.to_string(),
                "prefix_pools": [{"prefix": "2001:db8:100::/48", "prefix_length": 64}],
                "ipv4_pools": [{"prefix": "10.20.0.0/24", "default_router": "10.20.0.254"}],
                "authorized_mags": [MAG1.to_string()],
                "mobile_nodes": nodes,
                "domain": {"heartbeat": {"interval_s": 0}},
                "datapath": {"mode": "none"},
            }))
            .unwrap();
            l.validate().unwrap();
            b.s = s;
            b.lma = Lma::new(l, 1, 3).unwrap();
            b.access(AccessInput::LinkUp {
                ifindex: ACC,
                name: "acc0".into(),
                mtu: 1400,
            });
            b
        }

        fn ipv4_frame(&mut self, f: Ipv4Frame) {
            self.s.handle_ipv4(self.now, self.wall, f);
        }

        fn access(&mut self, a: AccessInput) {
            self.s.handle_access(self.now, self.wall, a);
        }

        fn advance(&mut self, d: Duration) {
            self.now += d;
            self.wall = WallClock(self.wall.0 + d);
        }

        /// Carries messages between the service and the LMA until both are quiet.
        /// Carries messages both ways until none is left, then answers as the driver does
        /// once the turn's steps are applied.
        fn exchange(&mut self) {
            self.relay();
            self.replies();
        }

        fn relay(&mut self) {
            loop {
                let out = self.s.take_transmits();
                if out.is_empty() {
                    return;
                }
                self.sent += out.len();
                for t in out {
                    self.lma
                        .handle_message(self.now, self.wall, t.src, t.dst, &t.payload);
                }
                while let Some(o) = self.lma.poll_output() {
                    if let LmaOutput::Transmit(t) = o {
                        self.s
                            .handle_message(self.now, self.wall, t.src, t.dst, &t.payload);
                    }
                }
            }
        }

        fn call<R>(&mut self, make: impl FnOnce(oneshot::Sender<R>) -> Command) -> R {
            let (tx, mut rx) = oneshot::channel();
            self.s.command(self.now, self.wall, make(tx));
            self.replies();
            rx.try_recv().expect("answered in the same turn")
        }

        /// The access link ACC comes up.
        fn link_up(&mut self) {
            self.link_up_with_mtu(1500);
        }

        fn link_up_with_mtu(&mut self, mtu: u32) {
            self.access(AccessInput::LinkUp {
                ifindex: ACC,
                name: "acc0".into(),
                mtu,
            });
        }

        /// Node `n` is seen on ACC, and registers 3 ms later.
        fn node_registers(&mut self, n: u8) {
            self.access(AccessInput::NodeSeen {
                ifindex: ACC,
                link_layer: ll(n),
            });
            self.advance(Duration::from_millis(3));
            self.exchange();
        }

        /// What the driver does once the turn's steps are applied.
        fn replies(&mut self) {
            for r in self.s.take_replies() {
                r.send();
            }
        }
    }

    /// RFC 5213 §6.9.2, §6.9.5: the RA's MTU is the tunnel MTU, or the access link's when
    /// that is lower.
    #[test]
    fn the_advertised_mtu_is_the_tunnel_mtu_or_the_access_links_when_lower() {
        for link in [1500, 1400, 9000] {
            let mut b = Bench::new(&[]);
            let tunnel = (b.s.mag().config().router_advertisement.mtu).unwrap_or(1460);
            assert!(tunnel > 1400 && tunnel < 9000, "{tunnel}");
            let want = tunnel.min(link);
            b.link_up_with_mtu(link);
            b.s.take_router_advertisements();
            b.node_registers(1);
            let ras = b.s.take_router_advertisements();
            let ra = ras.iter().find(|r| !r.prefixes.is_empty()).unwrap();
            assert_eq!(ra.mtu, want, "access link MTU {link}");
        }
    }

    #[test]
    fn a_node_seen_on_an_access_link_is_registered_routed_advertised_and_saved() {
        let mut b = Bench::new(&[]);
        b.s.take_steps();
        b.node_registers(1);
        let e = b.s.mag().binding(&nai(1)).unwrap();
        assert!(e.is_bound());
        let prefix = e.prefixes[0];
        let steps = b.s.take_steps();
        assert!(
            steps.contains(&Step::Change(Change::SetUplink { prefix, peer: LMA })),
            "{steps:?}"
        );
        assert!(steps.iter().any(|s| matches!(
            s,
            Step::Change(Change::SetLinkRoute { prefix: p, ifindex: ACC, .. }) if *p == prefix
        )));
        let ras = b.s.take_router_advertisements();
        let ra = ras.iter().find(|r| !r.prefixes.is_empty()).unwrap();
        assert_eq!(ra.prefixes, vec![prefix]);
        // The L3 handover time, from the node seen to its Router Advertisement.
        assert_eq!(b.s.ra_sent(ra, b.now), Some(Duration::from_millis(3)));
        assert_eq!(b.s.ra_sent(ra, b.now), None, "only the first");
        assert_eq!(b.s.take_registrations().len(), 1);
        let saved = b.s.to_save(false, true).expect("a registration is saved");
        assert_eq!(saved.len(), 1);
        b.s.saved(saved);
        assert!(b.s.to_save(false, true).is_none());
        assert!(b.s.to_save(true, true).is_none(), "the file holds it");
        assert!(b.s.to_save(true, false).is_some(), "the file is gone");
        let st = b.s.stats();
        assert_eq!(st.registered, 1);
        assert_eq!(st.events[1], 1, "registered");
        assert_eq!(st.pba_received, 1);

        // A restart with what was saved restores the node and refreshes it.
        let saved = b.s.mag().save();
        let mut again = Bench::new(&saved);
        assert!(again.s.mag().binding(&nai(1)).is_some_and(|e| e.is_bound()));
        assert!(
            again
                .s
                .take_steps()
                .contains(&Step::Change(Change::SetUplink { prefix, peer: LMA }))
        );
        assert_eq!(again.s.take_transmits().len(), 1, "the refresh");
    }

    /// A link that comes up is probed for its node at once, from the link's fixed address;
    /// in the LMA-generated mode the link has no address of the MAG's yet and is not.
    #[test]
    fn a_link_that_comes_up_is_probed_for_its_node_from_its_fixed_address() {
        let mut b = Bench::new(&[]);
        let fixed = b.s.config.domain.link_local.link_layer_address();
        assert_eq!(
            b.s.take_presence_probes(),
            vec![PresenceProbe {
                link: ACC,
                src_link_local: Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1),
                src_link_layer: fixed,
                announce: false,
            }]
        );
        assert_eq!(b.s.take_presence_probes(), vec![], "taken once");
        // A node seen is not probed for again; the link's next coming up is.
        b.access(AccessInput::NodeSeen {
            ifindex: ACC,
            link_layer: ll(1),
        });
        b.exchange();
        assert_eq!(b.s.take_presence_probes(), vec![]);
        b.access(AccessInput::LinkDown { ifindex: ACC });
        assert_eq!(b.s.take_presence_probes(), vec![]);
        b.link_up();
        assert_eq!(b.s.take_presence_probes().len(), 1);

        let mut c = mag_config();
        c.domain.link_local = serde_json::from_value(
            serde_json::json!({"mode": "lma-generated", "link_layer_address": "02:00:5e:00:53:07"}),
        )
        .unwrap();
        c.validate().unwrap();
        b.s = service(c, &[], b.now, b.wall);
        b.link_up();
        assert_eq!(b.s.take_presence_probes(), vec![]);
    }

    /// A link that came up and shows no node is probed again 1, 2, 4 and 8 ms after it came
    /// up (the first probe can be lost on a path that forwards only a little after the link's
    /// report), and no more; a node seen ends it, the link going down too.
    #[test]
    fn a_link_without_a_node_is_probed_again_until_one_shows_itself() {
        let mut b = Bench::new(&[]);
        let up_at = b.now;
        assert_eq!(b.s.take_presence_probes().len(), 1, "at once");
        let mut probed_at = Vec::new();
        while let Some(t) = b.s.poll_timeout() {
            if t > up_at + Duration::from_secs(1) {
                break;
            }
            b.advance(t.saturating_duration_since(b.now));
            b.s.handle_timeout(b.now, b.wall);
            for p in b.s.take_presence_probes() {
                assert_eq!(p.link, ACC);
                probed_at.push((b.now.saturating_duration_since(up_at), p.announce));
            }
        }
        // The first three repeats announce the MAG's address (RFC 4861 §10: at most
        // MAX_NEIGHBOR_ADVERTISEMENT unsolicited advertisements), the last does not.
        assert_eq!(
            probed_at,
            LINK_UP_PROBES_AFTER
                .iter()
                .enumerate()
                .map(|(i, d)| (*d, i < 3))
                .collect::<Vec<_>>()
        );

        // Up again: probed at once and 1 ms later; then the node shows itself: no more.
        b.access(AccessInput::LinkDown { ifindex: ACC });
        b.link_up();
        let up_at = b.now;
        assert_eq!(b.s.take_presence_probes().len(), 1);
        b.advance(LINK_UP_PROBES_AFTER[0]);
        b.s.handle_timeout(b.now, b.wall);
        assert_eq!(b.s.take_presence_probes().len(), 1);
        b.access(AccessInput::NodeSeen {
            ifindex: ACC,
            link_layer: ll(1),
        });
        b.exchange();
        b.advance(Duration::from_millis(20));
        b.s.handle_timeout(b.now, b.wall);
        assert_eq!(b.s.take_presence_probes(), vec![]);
        assert!(
            b.s.poll_timeout()
                .is_none_or(|t| t > up_at + Duration::from_millis(20))
        );

        // Down before its node showed itself: no more probes either.
        b.access(AccessInput::LinkDown { ifindex: ACC });
        b.link_up();
        b.s.take_presence_probes();
        b.access(AccessInput::LinkDown { ifindex: ACC });
        b.advance(Duration::from_millis(20));
        b.s.handle_timeout(b.now, b.wall);
        assert_eq!(b.s.take_presence_probes(), vec![]);
    }

    /// A node detached by Neighbor Unreachability Detection on a link that stays up: its
    /// link is probed every second, so that it is heard (and attached) again as soon as it
    /// answers; once it is back the probes stop.
    #[test]
    fn the_link_of_an_unreachable_node_is_probed_until_the_node_is_back() {
        let mut b = Bench::new(&[]);
        b.s.take_presence_probes();
        let node_ll: Ipv6Addr = "fe80::1:1".parse().unwrap();
        b.access(AccessInput::NodeSeen {
            ifindex: ACC,
            link_layer: ll(1),
        });
        b.access(AccessInput::NodeHeard {
            ifindex: ACC,
            link_layer: ll(1),
            link_local: Some(node_ll),
        });
        b.exchange();
        assert!(b.s.mag().binding(&nai(1)).is_some());
        // Silence: nothing answers the MAG's Neighbor Solicitations.
        let mut detached_at = None;
        let mut probed_at = Vec::new();
        for _ in 0..1000 {
            let Some(t) = b.s.poll_timeout() else { break };
            let d = t.saturating_duration_since(b.now);
            b.advance(d.max(Duration::from_millis(1)));
            b.s.handle_timeout(b.now, b.wall);
            b.exchange();
            b.s.take_neighbor_solicitations();
            if detached_at.is_none() && b.s.mag().binding(&nai(1)).is_none() {
                detached_at = Some(b.now);
            }
            let p = b.s.take_presence_probes();
            if !p.is_empty() {
                assert_eq!(p.len(), 1);
                assert_eq!(p[0].link, ACC);
                probed_at.push(b.now);
            }
            if probed_at.len() == 3 {
                break;
            }
        }
        let detached_at = detached_at.expect("detached");
        assert_eq!(probed_at.len(), 3, "probed while it is away");
        assert!(probed_at[0] > detached_at);
        assert_eq!(
            probed_at[0].saturating_duration_since(detached_at),
            PRESENCE_PROBE_INTERVAL
        );
        assert_eq!(
            probed_at[2].saturating_duration_since(probed_at[1]),
            PRESENCE_PROBE_INTERVAL
        );
        // It answers (an Echo Reply is a frame like any): attached again, and no more probes.
        b.access(AccessInput::NodeHeard {
            ifindex: ACC,
            link_layer: ll(1),
            link_local: Some(node_ll),
        });
        b.exchange();
        assert!(b.s.mag().binding(&nai(1)).is_some(), "attached again");
        b.advance(PRESENCE_PROBE_INTERVAL);
        b.s.handle_timeout(b.now, b.wall);
        assert_eq!(b.s.take_presence_probes(), vec![]);
        assert_eq!(b.s.next_presence_probe, None);
    }

    /// RFC 5213 §6.8, §6.9.1.2 rule 15: in the LMA-generated mode the link gets the address
    /// of the PBA (with the domain's MAC, so the node's frames to its router reach the
    /// MAG) before the RA from that address goes out: the kernel then answers the node's
    /// Neighbor Solicitations for it, DAD included. Once per link while it is up.
    #[test]
    fn lma_generated_link_local_is_put_on_the_link_before_the_router_advertisement() {
        let mut b = Bench::new(&[]);
        let generated =
            serde_json::json!({"mode": "lma-generated", "link_layer_address": "02:00:5e:00:53:07"});
        let mut c = mag_config();
        c.domain.link_local = serde_json::from_value(generated.clone()).unwrap();
        c.validate().unwrap();
        let s = service(c, &[], b.now, b.wall);
        b.s = s;
        let l: LmaConfig = serde_json::from_value(serde_json::json!({
            "address": LMA.to_string(),
            "prefix_pools": [{"prefix": "2001:db8:100::/48", "prefix_length": 64}],
            "authorized_mags": [MAG1.to_string()],
            "mobile_nodes": profiles(&[1, 2]),
            "domain": {"heartbeat": {"interval_s": 0}, "link_local": generated},
            "datapath": {"mode": "none"},
        }))
        .unwrap();
        l.validate().unwrap();
        b.lma = Lma::new(l, 1, 3).unwrap();
        b.link_up();
        assert_eq!(
            b.s.take_steps(),
            vec![],
            "no address before the LMA gave one"
        );
        b.access(AccessInput::NodeSeen {
            ifindex: ACC,
            link_layer: ll(1),
        });
        b.exchange();
        let lla = b.s.mag().binding(&nai(1)).unwrap().link_local;
        assert!(lla.segments()[0] == 0xfe80 && lla != Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1));
        let prepare = Step::Change(Change::PrepareAccessLink {
            ifindex: ACC,
            link: AccessLinkAddresses {
                link_layer_address: [2, 0, 0x5e, 0, 0x53, 7],
                link_local: lla,
            },
        });
        assert!(b.s.take_steps().contains(&prepare));
        let ras = b.s.take_router_advertisements();
        assert!(!ras.is_empty() && ras.iter().all(|r| r.src_link_local == lla));
        // The next RA (a solicitation) needs nothing more on the link.
        b.access(AccessInput::RouterSolicitation {
            ifindex: ACC,
            link_layer: ll(1),
        });
        assert_eq!(b.s.take_router_advertisements().len(), 1);
        assert!(!b.s.take_steps().contains(&prepare));
        // A link that went down lost its addresses: they are put back with the next RA.
        b.advance(Duration::from_millis(100));
        b.access(AccessInput::LinkDown { ifindex: ACC });
        b.exchange();
        b.s.take_steps();
        b.advance(Duration::from_millis(100));
        b.link_up();
        b.access(AccessInput::NodeSeen {
            ifindex: ACC,
            link_layer: ll(1),
        });
        b.exchange();
        let again = b.s.mag().binding(&nai(1)).unwrap().link_local;
        assert!(b.s.take_steps().iter().any(|s| matches!(
            s,
            Step::Change(Change::PrepareAccessLink { ifindex: ACC, link }) if link.link_local == again
        )));
    }

    /// A node's frames read after its link went down (queued behind the link's event on a
    /// busy machine) attach nothing: the node has left.
    #[test]
    fn frames_from_a_link_that_went_down_attach_nothing() {
        let mut b = Bench::new(&[]);
        b.link_up();
        b.access(AccessInput::NodeSeen {
            ifindex: ACC,
            link_layer: ll(1),
        });
        b.exchange();
        assert!(b.s.mag().binding(&nai(1)).is_some_and(|e| e.is_bound()));
        b.advance(Duration::from_millis(100));
        b.access(AccessInput::LinkDown { ifindex: ACC });
        b.exchange();
        b.advance(Duration::from_secs(2));
        b.exchange();
        assert!(b.s.mag().binding(&nai(1)).is_none(), "de-registered");
        for stale in [
            AccessInput::RouterSolicitation {
                ifindex: ACC,
                link_layer: ll(1),
            },
            AccessInput::NodeSeen {
                ifindex: ACC,
                link_layer: ll(1),
            },
            AccessInput::NodeHeard {
                ifindex: ACC,
                link_layer: ll(1),
                link_local: Some("fe80::1:2".parse().unwrap()),
            },
        ] {
            b.access(stale);
            b.exchange();
            assert!(b.s.mag().binding(&nai(1)).is_none(), "nothing attached");
        }
        // Up again, the node is seen again.
        b.link_up();
        b.access(AccessInput::NodeSeen {
            ifindex: ACC,
            link_layer: ll(1),
        });
        b.exchange();
        assert!(b.s.mag().binding(&nai(1)).is_some_and(|e| e.is_bound()));
    }

    #[test]
    fn an_attach_is_answered_only_after_the_turns_datapath_steps() {
        let mut b = Bench::new(&[]);
        b.s.take_steps();
        let (tx, mut rx) = oneshot::channel();
        b.s.command(
            b.now,
            b.wall,
            Command::Attach {
                link_layer: ll(2),
                interface: "acc0".into(),
                access_technology_type: None,
                wait: true,
                reply: tx,
            },
        );
        b.advance(Duration::from_millis(5));
        b.relay();
        assert!(
            rx.try_recv().is_err(),
            "the PBA came, but the routes are not applied yet"
        );
        let prefix = b.s.mag().binding(&nai(2)).unwrap().prefixes[0];
        assert!(
            b.s.take_steps()
                .contains(&Step::Change(Change::SetUplink { prefix, peer: LMA }))
        );
        let replies = b.s.take_replies();
        assert_eq!(replies.len(), 1);
        for r in replies {
            r.send();
        }
        assert!(rx.try_recv().unwrap().unwrap().entry.is_bound());
    }

    #[test]
    fn an_attach_over_the_api_waits_for_its_pba_when_asked() {
        let mut b = Bench::new(&[]);
        let r = b.call(|reply| Command::Attach {
            link_layer: ll(1),
            interface: "wlan9".into(),
            access_technology_type: None,
            wait: true,
            reply,
        });
        assert!(matches!(r, Err(CallError::FailedPrecondition(_))), "{r:?}");
        let r = b.call(|reply| Command::Attach {
            link_layer: ll(5),
            interface: "acc0".into(),
            access_technology_type: None,
            wait: true,
            reply,
        });
        assert!(matches!(r, Err(CallError::NotFound(_))), "{r:?}");
        let (tx, mut rx) = oneshot::channel();
        b.s.command(
            b.now,
            b.wall,
            Command::Attach {
                link_layer: ll(2),
                interface: "acc0".into(),
                access_technology_type: None,
                wait: true,
                reply: tx,
            },
        );
        assert!(rx.try_recv().is_err(), "waits for the PBA");
        b.advance(Duration::from_millis(5));
        b.exchange();
        let v = rx.try_recv().unwrap().unwrap();
        assert_eq!(v.entry.mn_id, nai(2));
        assert_eq!(v.access_interface, "acc0");
        assert!(v.entry.is_bound());
        assert_eq!(v.registered_ago, Some(Duration::ZERO));
        let list = b.call(|reply| Command::List { reply });
        assert_eq!(list.len(), 1);
        let d = b.call(|reply| Command::Detach {
            node: NodeKey::MnId(nai(2)),
            reply,
        });
        assert!(d.is_ok());
        b.exchange();
        assert!(b.s.mag().binding(&nai(2)).is_none());
        assert_eq!(b.s.stats().events[5], 1, "de-registered");
    }

    #[test]
    fn profiles_learned_from_the_lma_never_replace_the_files_and_go_after_a_reset() {
        let mut b = Bench::new(&[]);
        let mut p = MobileNodeProfile::new(pmip::types::Nai::new(nai(1)).unwrap());
        p.link_layer_addresses = vec![ll(8)];
        b.s.command(b.now, b.wall, Command::UpsertProfile(p));
        assert_eq!(
            b.s.mag()
                .policy()
                .by_link_layer(&ll(1))
                .unwrap()
                .mn_id
                .as_str(),
            nai(1),
            "the file's profile stays"
        );
        let mut learned = MobileNodeProfile::new(pmip::types::Nai::new(nai(9)).unwrap());
        learned.link_layer_addresses = vec![ll(9)];
        b.s.command(b.now, b.wall, Command::UpsertProfile(learned));
        assert!(b.call(|reply| Command::KnowsNode {
            link_layer: ll(9),
            reply
        }));
        assert_eq!(
            b.call(|reply| Command::LinkLayerOf {
                mn_id: nai(9),
                reply
            }),
            Some(ll(9))
        );
        // The file's profiles cannot be removed by the LMA.
        b.s.command(b.now, b.wall, Command::RemoveProfile(nai(1)));
        assert!(b.s.mag().policy().get(&nai(1)).is_some());
        // A snapshot that does not repeat mn9 removes it once in sync.
        b.s.command(b.now, b.wall, Command::PolicyReset);
        b.s.command(b.now, b.wall, Command::PolicySynced(true));
        assert!(b.s.mag().policy().get(&nai(9)).is_none());
        assert!(b.s.mag().policy().get(&nai(1)).is_some());
        let st = b.call(|reply| Command::Stats { reply });
        assert_eq!(st.profiles, 2);
        assert!(st.policy_synced);
    }

    #[test]
    fn every_pba_is_counted_by_its_status_de_registrations_too() {
        let mut b = Bench::new(&[]);
        for n in [1, 2] {
            b.access(AccessInput::NodeSeen {
                ifindex: ACC,
                link_layer: ll(n),
            });
            b.exchange();
        }
        b.access(AccessInput::LinkDown { ifindex: ACC });
        b.exchange();
        assert!(b.s.mag().bindings().next().is_none(), "both de-registered");
        let st = b.s.stats();
        assert_eq!(st.pba_received, 4);
        let by_status: u64 = st.pba_by_status.iter().map(|(_, n)| n).sum();
        assert_eq!(by_status, st.pba_received, "{:?}", st.pba_by_status);
        // And so in the metrics.
        let mut registry = prometheus_client::registry::Registry::default();
        let m = crate::metrics::Metrics::new(&mut registry);
        m.observe(&st);
        let (text, _) = cnf::telemetry::scrape(&registry, None).unwrap();
        let total: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix("pmip_mag_pba_received_total "))
            .unwrap()
            .parse()
            .unwrap();
        let per_status: f64 = text
            .lines()
            .filter(|l| l.starts_with("pmip_mag_pba_received_by_status_total{"))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
            .sum();
        assert_eq!((total, per_status), (4.0, 4.0), "{text}");
        // Prometheus' own linter takes it as it is.
        use std::io::Write;
        let mut promtool = std::process::Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("promtool (Debian package prometheus; scripts/test-all.sh installs it)");
        (promtool.stdin.take().unwrap())
            .write_all(text.as_bytes())
            .unwrap();
        let out = promtool.wait_with_output().unwrap();
        let said = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && said.trim().is_empty(),
            "promtool: {said}\n{text}"
        );
        // Labelled series exist from the start; mode and outcome are separate labels.
        for series in [
            "pmip_mag_handovers_total{mode=\"predictive\",outcome=\"failed\"} 0",
            "pmip_mag_events_total{kind=\"gave-up\"} 0",
            "pmip_mag_pba_received_by_status_total{status=\"154\",name=\"MAG_NOT_AUTHORIZED_FOR_PROXY_REG\"} 0",
            "pmip_mag_build_info{version=",
            "pmip_mag_lma_up 1",
            "process_cpu_seconds_total ",
        ] {
            assert!(text.contains(series), "{series}\n{text}");
        }
    }

    // ------------------------------------------------------------------ IPv4 (RFC 5844)

    const FIXED_MAC: [u8; 6] = [0x02, 0x00, 0x5e, 0x00, 0x53, 0x01];

    fn mac(n: u8) -> [u8; 6] {
        [2, 0, 0, 0, 0, n]
    }

    /// A DHCP message of node `n` as a client sends it (from 0.0.0.0 to the broadcast
    /// address), read back as the capture delivers it.
    fn dhcp_from(
        n: u8,
        kind: dhcproto::v4::MessageType,
        opts: Vec<dhcproto::v4::DhcpOption>,
    ) -> Ipv4Frame {
        use dhcproto::v4::{DhcpOption, HType, Message, Opcode};
        let mut m = Message::default();
        m.set_opcode(Opcode::BootRequest)
            .set_htype(HType::Eth)
            .set_xid(0x0bad_cafe)
            .set_chaddr(&mac(n));
        m.opts_mut().insert(DhcpOption::MessageType(kind));
        for o in opts {
            m.opts_mut().insert(o);
        }
        let frame = dhcp::udp_frame(
            (mac(n), std::net::Ipv4Addr::UNSPECIFIED, dhcp::CLIENT_PORT),
            ([0xff; 6], std::net::Ipv4Addr::BROADCAST, dhcp::SERVER_PORT),
            &dhcproto::Encodable::to_vec(&m).unwrap(),
        );
        Ipv4Frame::Dhcp {
            ifindex: ACC,
            request: dhcp::parse_frame(&frame).expect("a DHCP request"),
        }
    }

    fn discover(n: u8) -> Ipv4Frame {
        dhcp_from(n, dhcproto::v4::MessageType::Discover, vec![])
    }

    /// The DHCP message in a reply frame.
    fn dhcp_reply(frame: &[u8]) -> dhcproto::v4::Message {
        use dhcproto::Decodable;
        assert_eq!(&frame[6..12], FIXED_MAC, "from the domain's fixed MAG MAC");
        dhcproto::v4::Message::decode(&mut dhcproto::Decoder::new(&frame[14 + 28..])).unwrap()
    }

    fn arp_for(n: u8, target: std::net::Ipv4Addr) -> Ipv4Frame {
        Ipv4Frame::Arp {
            ifindex: ACC,
            request: arp::ArpRepr {
                request: true,
                sender_mac: mac(n),
                sender_ip: "10.20.0.1".parse().unwrap(),
                target_mac: [0; 6],
                target_ip: target,
            },
        }
    }

    #[test]
    fn a_dhcpdiscover_registers_the_node_and_is_offered_the_lma_address_after_its_route() {
        use dhcproto::v4::{DhcpOption, MessageType, OptionCode};
        let mut b = Bench::ipv4();
        b.s.take_steps();
        // RFC 5844 §3.4.1 steps 1-2: the DISCOVER of a node not registered yet is the trigger
        // of its PBU; no answer before the PBA.
        b.ipv4_frame(discover(3));
        assert!(b.s.take_ipv4_frames().is_empty(), "no offer before the PBA");
        assert_eq!(b.s.stats().pbu_sent, 1, "the PBU");
        b.exchange();
        let e = b.s.mag().binding(&nai(3)).unwrap().clone();
        let home = e.ipv4.expect("the LMA assigned an IPv4 home address");
        assert_eq!(
            home.default_router,
            "10.20.0.254".parse::<std::net::Ipv4Addr>().unwrap()
        );
        // Steps 3-5: the route first (this turn's steps go to the kernel before the frames).
        let steps = b.s.take_steps();
        assert!(
            steps.iter().any(|s| matches!(s, Step::Change(Change::SetLinkRoute4 { prefix, ifindex, .. }) if *prefix == home.host() && *ifindex == ACC)),
            "{steps:?}"
        );
        let frames = b.s.take_ipv4_frames();
        assert_eq!(frames.len(), 1, "one DHCPOFFER");
        assert_eq!(frames[0].0, ACC);
        let offer = dhcp_reply(&frames[0].1);
        assert_eq!(offer.opts().msg_type(), Some(MessageType::Offer));
        assert_eq!(offer.xid(), 0x0bad_cafe);
        assert_eq!(offer.yiaddr(), home.address);
        assert_eq!(
            offer.opts().get(OptionCode::Router),
            Some(&DhcpOption::Router(vec![home.default_router]))
        );
        assert_eq!(
            offer.opts().get(OptionCode::ServerIdentifier),
            Some(&DhcpOption::ServerIdentifier(home.default_router))
        );
        assert_eq!(
            offer.opts().get(OptionCode::AddressLeaseTime),
            Some(&DhcpOption::AddressLeaseTime(e.lifetime.as_secs() as u32)),
            "the lease is the binding lifetime the LMA granted"
        );
        // The link's MTU (1400) is below the tunnel's default (1460).
        assert_eq!(
            offer.opts().get(OptionCode::InterfaceMtu),
            Some(&DhcpOption::InterfaceMtu(1400))
        );
        // Steps 6-7: the REQUEST for it is acknowledged at once, with no new PBU.
        let sent = b.sent;
        b.ipv4_frame(dhcp_from(
            3,
            MessageType::Request,
            vec![
                DhcpOption::ServerIdentifier(home.default_router),
                DhcpOption::RequestedIpAddress(home.address),
            ],
        ));
        b.exchange();
        assert_eq!(b.sent, sent, "no signalling for a node already served");
        let frames = b.s.take_ipv4_frames();
        assert_eq!(frames.len(), 1);
        let ack = dhcp_reply(&frames[0].1);
        assert_eq!(ack.opts().msg_type(), Some(MessageType::Ack));
        assert_eq!(ack.yiaddr(), home.address);
        // INIT-REBOOT for another address: DHCPNAK (RFC 5844 §3.4.1).
        b.ipv4_frame(dhcp_from(
            3,
            MessageType::Request,
            vec![DhcpOption::RequestedIpAddress(
                "10.20.0.200".parse().unwrap(),
            )],
        ));
        let frames = b.s.take_ipv4_frames();
        assert_eq!(
            dhcp_reply(&frames[0].1).opts().msg_type(),
            Some(MessageType::Nak)
        );
        assert_eq!(b.s.stats().ipv4_replies, [1, 1, 1, 0]);
    }

    #[test]
    fn a_dhcprelease_de_registers_the_ipv4_home_address_and_keeps_the_prefix() {
        use dhcproto::v4::MessageType;
        let mut b = Bench::ipv4();
        b.ipv4_frame(discover(3));
        b.exchange();
        b.s.take_ipv4_frames();
        let e = b.s.mag().binding(&nai(3)).unwrap().clone();
        let home = e.ipv4.unwrap();
        assert_eq!(e.prefixes.len(), 1);
        b.s.take_steps();
        // A DHCPRELEASE names the address in ciaddr (RFC 2131 §4.4.6).
        let mut release = dhcp_from(3, MessageType::Release, vec![]);
        if let Ipv4Frame::Dhcp { request, .. } = &mut release {
            request.message.set_ciaddr(home.address);
        }
        // Later than the registration: the PBU's timestamp is newer (RFC 5213 §5.3.1 rule 9).
        b.advance(Duration::from_secs(1));
        let sent = b.sent;
        b.ipv4_frame(release);
        b.exchange();
        assert_eq!(b.sent, sent + 1, "one selective de-registration PBU");
        assert!(
            b.s.take_ipv4_frames().is_empty(),
            "a release gets no answer"
        );
        let steps = b.s.take_steps();
        assert!(
            steps.iter().any(|s| matches!(s, Step::Change(Change::RemoveLinkRoute4 { prefix, .. }) if *prefix == home.host())),
            "{steps:?}"
        );
        let e = b.s.mag().binding(&nai(3)).unwrap();
        assert_eq!((e.ipv4, e.prefixes.len(), e.is_bound()), (None, 1, true));
        assert!(b.lma.cache().by_ipv4(&home.address).is_none());
        assert_eq!(b.lma.cache().len(), 1, "the session stays at the LMA");
        assert_eq!(b.s.stats().events[15], 1, "ipv4-released");
        // The node's next DISCOVER asks the LMA for an address again, and is offered it.
        b.advance(Duration::from_secs(1));
        let sent = b.sent;
        b.ipv4_frame(discover(3));
        assert!(b.s.take_ipv4_frames().is_empty(), "no offer before the PBA");
        b.exchange();
        assert_eq!(b.sent, sent + 1, "a refresh asking for IPv4");
        let again =
            b.s.mag()
                .binding(&nai(3))
                .unwrap()
                .ipv4
                .expect("an address again");
        let frames = b.s.take_ipv4_frames();
        assert_eq!(frames.len(), 1, "one DHCPOFFER");
        assert_eq!(dhcp_reply(&frames[0].1).yiaddr(), again.address);
    }

    #[test]
    fn arp_for_the_default_router_is_answered_with_the_fixed_mac_only_for_a_served_node() {
        let mut b = Bench::ipv4();
        let router: std::net::Ipv4Addr = "10.20.0.254".parse().unwrap();
        // Not registered yet: the ARP is its attachment (an IPv4-only node sends nothing
        // else), but nothing is answered for an address it does not have.
        b.ipv4_frame(arp_for(3, router));
        assert!(b.s.take_ipv4_frames().is_empty());
        b.exchange();
        assert!(b.s.mag().binding(&nai(3)).unwrap().is_bound(), "registered");
        b.ipv4_frame(arp_for(3, router));
        let frames = b.s.take_ipv4_frames();
        assert_eq!(frames.len(), 1);
        let reply = arp::ArpRepr::parse_frame(&frames[0].1).unwrap();
        assert!(!reply.request);
        assert_eq!(reply.sender_mac, FIXED_MAC, "the same MAC on every MAG");
        assert_eq!(reply.sender_ip, router);
        assert_eq!(reply.target_mac, mac(3));
        // Node 1 has no IPv4 service: no answer for the same address.
        b.access(AccessInput::NodeSeen {
            ifindex: ACC,
            link_layer: ll(1),
        });
        b.exchange();
        b.ipv4_frame(arp_for(1, router));
        assert!(b.s.take_ipv4_frames().is_empty());
        assert_eq!(b.s.stats().ipv4_replies[3], 1);
    }

    #[test]
    fn no_ipv4_answer_for_a_node_the_lma_does_not_serve_with_ipv4_nor_off_the_access_links() {
        let mut b = Bench::ipv4();
        // Node 4 asks for IPv4 and the LMA refuses it (RFC 5844 §3.1.2.1, status 170): it
        // keeps IPv6 only, and its DISCOVER is dropped (§3.4.3: MUST NOT enable IPv4).
        b.ipv4_frame(discover(4));
        b.exchange();
        let e = b.s.mag().binding(&nai(4)).unwrap();
        assert!(
            e.is_bound() && e.ipv4.is_none() && !e.prefixes.is_empty(),
            "{e:?}"
        );
        assert!(b.s.take_ipv4_frames().is_empty());
        b.ipv4_frame(discover(4));
        assert!(b.s.take_ipv4_frames().is_empty(), "still nothing");
        // Node 1 has no IPv4 in its profile: registered by the DISCOVER, never offered.
        b.ipv4_frame(discover(1));
        b.exchange();
        assert!(b.s.mag().binding(&nai(1)).unwrap().is_bound());
        assert!(b.s.take_ipv4_frames().is_empty());
        // A frame from a link that is not an access link (the transport link, say) is not
        // the MAG's to answer, and registers nobody.
        let sent = b.sent;
        let mut f = discover(3);
        if let Ipv4Frame::Dhcp { ifindex, .. } = &mut f {
            *ifindex = ACC + 1;
        }
        b.ipv4_frame(f);
        b.exchange();
        assert_eq!(b.sent, sent);
        assert!(b.s.mag().binding(&nai(3)).is_none());
        assert_eq!(b.s.stats().ipv4_replies, [0; 4]);
    }

    #[test]
    fn the_offer_waits_through_pbu_retransmissions_and_is_dropped_when_the_link_goes() {
        let mut b = Bench::ipv4();
        b.ipv4_frame(discover(3));
        // The LMA does not answer (the PBU is lost): no offer, the DISCOVER waits.
        let _lost = b.s.take_transmits();
        b.advance(Duration::from_secs(2));
        b.s.handle_timeout(b.now, b.wall);
        assert!(b.s.take_ipv4_frames().is_empty());
        // The retransmission gets through: the offer follows the PBA.
        b.exchange();
        let frames = b.s.take_ipv4_frames();
        assert_eq!(frames.len(), 1, "offered after the retransmitted PBU's PBA");
        // A DISCOVER waiting when its link goes down is not answered on the next link.
        let mut b = Bench::ipv4();
        b.ipv4_frame(discover(3));
        let _lost = b.s.take_transmits();
        b.access(AccessInput::LinkDown { ifindex: ACC });
        b.link_up();
        b.advance(Duration::from_secs(2));
        b.s.handle_timeout(b.now, b.wall);
        b.exchange();
        assert!(b.s.take_ipv4_frames().is_empty());
    }
}
