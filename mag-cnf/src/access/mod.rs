//! The MAG's access side: which access links are up, which mobile node is on each, its
//! Router Solicitations, and the Router Advertisements sent back (RFC 5213 §6.7, §6.9;
//! RFC 4861). Plus [`lab`], which emulates mobile nodes in network namespaces.
//!
//! # API
//!
//! ```no_run
//! # async fn run(
//! #     config: pmip::config::MagConfig,
//! #     ras: Vec<pmip::output::RouterAdvertisement>,
//! # ) -> Result<(), mag_cnf::access::Error> {
//! use mag_cnf::access::{Access, AccessEvent};
//!
//! let ll = config.domain.link_local.link_layer_address();
//! let own_mac: [u8; 6] = ll.as_bytes().try_into().expect("validated: 6 bytes");
//! let (access, mut events) = Access::start(&config.access_interfaces, own_mac).await?;
//! while let Some(event) = events.recv().await {
//!     match event {
//!         // Prepare the link (datapath `Change::PrepareAccessLink`: the fixed MAC and
//!         // link-local address); `mtu` caps the MTU option of the RAs.
//!         AccessEvent::LinkUp { ifindex, name, mtu } => {}
//!         // Detach whatever node was on the link.
//!         AccessEvent::LinkDown { ifindex } => {}
//!         // `Mag::handle_attach` with `AccessLink(ifindex)`.
//!         AccessEvent::NodeSeen { ifindex, link_layer } => {}
//!         // `Mag::handle_node_heard` (Neighbor Unreachability Detection).
//!         AccessEvent::NodeHeard { ifindex, link_layer, link_local } => {}
//!         // `Mag::handle_router_solicitation`.
//!         AccessEvent::RouterSolicitation { ifindex, link_layer } => {}
//!     }
//!     // Each `MagOutput::RouterAdvertisement(ra)` of the state machine:
//!     for ra in &ras {
//!         access.send_ra(ra).await?;
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! - [`Access::start`] opens its sockets in the calling thread's network namespace (the
//!   daemon's) and spawns one task on the current tokio runtime; [`Access::start_in`] does
//!   the same in another namespace (tests, labs). The first events are an
//!   [`AccessEvent::LinkUp`] for every access link that is up at start. The receiver yields
//!   `None` once the task ends: when [`Access`] is dropped, or after a socket failed (logged).
//! - [`Access::send_ra`] sends one [`RouterAdvertisement`] as built by [`ra`] (the frame
//!   alone: [`router_advertisement_frame`]).
//! - [`Access::send_ns`] sends one [`NeighborSolicitation`], a probe of Neighbor
//!   Unreachability Detection ([`neighbor_solicitation_frame`]).
//! - [`Access::send_probe`] asks whoever is on a link that just came up to show itself at
//!   once instead of with its MLD reports milliseconds later ([`presence_probe_frame`]).
//! - [`Access::stats`] counts frames and RAs, for metrics.
//! - [`lab::attach`] / [`lab::detach`] make and remove an emulated mobile node.
//!
//! # Events
//!
//! - `LinkUp { ifindex, name, mtu }`: an access link (its name matches an entry of
//!   `access_interfaces`, exactly or as a `*` pattern; an Ethernet link) is administratively
//!   up, has carrier and is not dormant — or a node was heard on it, which proves the same
//!   before the kernel's carrier report comes. Sent again, without a `LinkDown` before it,
//!   when its MTU or name changes while up.
//! - `LinkDown { ifindex }`: an access link that was up was deleted, moved to another network
//!   namespace, lost its carrier, was set down or dormant, or renamed away from the patterns.
//! - `NodeSeen { ifindex, link_layer }`: the first frame from a MAC on an up access link,
//!   once per (link, MAC) until the link goes down. Frames that count are the ones a host
//!   sends when its link comes up or while it talks to its router: MLD reports, Neighbor
//!   Solicitations and Advertisements, Router Solicitations, and Echo Replies (its answer to
//!   [`Access::send_probe`]) (`frame.rs` says why). A node
//!   that only ever sends other traffic is not seen. Access links are point-to-point
//!   (RFC 5213 §6.3): one node per link is expected, a second MAC is reported all the same.
//! - `NodeHeard { ifindex, link_layer, link_local }`: every frame of a node on an up access
//!   link (after its `NodeSeen`), with the node's link-local address when the frame tells it
//!   (its source, or the target of its duplicate address detection): the node is still there
//!   (RFC 5213 §6.13, Neighbor Unreachability Detection).
//! - `RouterSolicitation { ifindex, link_layer }`: every valid Router Solicitation
//!   (RFC 4861 §6.1.1), after the `NodeSeen` of its sender. `link_layer` is the frame's
//!   Ethernet source: an RS from `::` carries no source link-layer address option.
//!
//! Frames whose source is the MAG's own MAC (the domain's fixed one, or the link's) are
//! ignored, and so are frames the MAG sends itself.
//!
//! # How
//!
//! One route netlink socket in the link multicast group, which also carries the link dumps
//! (at start, and again if the kernel reports lost messages). One `AF_PACKET` socket for
//! IPv6 bound to every link, so no frame is missed between a link appearing and a per-link
//! socket being opened; a classic BPF filter lets only the node messages above reach user
//! space (user traffic, also on the access links, stays in the kernel), and a frame from a
//! link not yet known makes the task read the queued netlink reports first. Sending uses a
//! separate `AF_PACKET` socket that receives nothing.

pub mod arp;
pub mod dhcp;
mod filter;
mod frame;
pub mod ipv4;
#[cfg(test)]
mod kernel_tests;
#[cfg(feature = "lab")]
pub mod lab;
/// Built without the `lab` feature: making an emulated node is refused.
#[cfg(not(feature = "lab"))]
#[path = "lab_disabled.rs"]
pub mod lab;
mod links;
mod monitor;
pub mod pattern;
pub mod ra;
pub(crate) mod sys;

use std::io;
use std::net::Ipv6Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use datapath::netns::NetNs;
use pmip::output::{NeighborSolicitation, RouterAdvertisement};
use pmip::types::LinkLayerAddress;
use socket2::Socket;
use tokio::io::unix::AsyncFd;
use tokio::sync::mpsc;

pub use pattern::InterfacePatterns;
pub use ra::{
    MAX_NEIGHBOR_ADVERTISEMENT, PresenceProbe, neighbor_solicitation_frame, presence_probe_frame,
    router_advertisement_frame, router_announcement_frame,
};

use links::LinkTable;
use monitor::Monitor;

/// Events buffered for a consumer that is slower than the links.
const EVENT_QUEUE: usize = 1024;

/// What happened on the access links.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessEvent {
    LinkUp {
        ifindex: u32,
        name: String,
        mtu: u32,
    },
    LinkDown {
        ifindex: u32,
    },
    NodeSeen {
        ifindex: u32,
        link_layer: LinkLayerAddress,
    },
    NodeHeard {
        ifindex: u32,
        link_layer: LinkLayerAddress,
        link_local: Option<Ipv6Addr>,
    },
    RouterSolicitation {
        ifindex: u32,
        link_layer: LinkLayerAddress,
    },
}

/// Why the access side failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("cannot open the {what} socket: {source}")]
    Socket {
        what: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("cannot list the links: {0}")]
    Dump(#[source] io::Error),
    #[error("the kernel did not list the links within {0:?}")]
    DumpTimeout(Duration),
    #[error("cannot send a presence probe on link #{ifindex}: {source}")]
    SendProbe {
        ifindex: u32,
        #[source]
        source: io::Error,
    },
    #[error("cannot send a Neighbor Solicitation on link #{ifindex}: {source}")]
    SendNs {
        ifindex: u32,
        #[source]
        source: io::Error,
    },
    #[error("cannot send a Router Advertisement on link #{ifindex}: {source}")]
    Send {
        ifindex: u32,
        #[source]
        source: io::Error,
    },
    #[error("link-layer address {0} is not a 6-byte Ethernet MAC")]
    NotEthernet(LinkLayerAddress),
    #[error(
        "{0} prefixes do not fit one Router Advertisement (at most {max})",
        max = ra::MAX_PREFIXES
    )]
    TooManyPrefixes(usize),
    #[error("cannot build the frame: {0}")]
    Frame(#[from] pmip::wire::nd::Error),
    #[error("lab: {0}")]
    Lab(String),
    #[error("lab: this pmip-mag is built without the `lab` feature: it makes no emulated nodes")]
    LabDisabled,
    #[error(transparent)]
    Datapath(#[from] datapath::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, Default)]
struct Counters {
    frames_read: AtomicU64,
    frames_ignored: AtomicU64,
    router_advertisements_sent: AtomicU64,
    link_resyncs: AtomicU64,
}

/// Counters of the access side since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AccessStats {
    /// Frames the capture filter let through to user space.
    pub frames_read: u64,
    /// Of those, frames that showed no node: not a node message, from the MAG itself, or not
    /// on an access link.
    pub frames_ignored: u64,
    pub router_advertisements_sent: u64,
    /// Full link dumps after the kernel reported lost link messages.
    pub link_resyncs: u64,
}

/// The running access side. Dropping it stops the task.
pub struct Access {
    sender: AsyncFd<Socket>,
    counters: Arc<Counters>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Access")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

struct Sockets {
    netlink: rtnetlink::sys::Socket,
    capture: Socket,
    sender: Socket,
}

fn open_sockets() -> Result<Sockets> {
    let err = |what| move |source| Error::Socket { what, source };
    Ok(Sockets {
        netlink: sys::link_socket().map_err(err("route netlink"))?,
        capture: sys::capture_socket().map_err(err("packet capture"))?,
        sender: sys::send_socket().map_err(err("packet send"))?,
    })
}

impl Access {
    /// Starts watching the links of the current network namespace whose names match
    /// `patterns` (exact names, or with `*`); `own_mac` is the domain's fixed MAG link-layer
    /// address, whose frames are not a node's. Needs a tokio runtime and CAP_NET_RAW
    /// (CAP_NET_ADMIN lets the receive buffers grow beyond `rmem_max`).
    pub async fn start(
        patterns: &[String],
        own_mac: [u8; 6],
    ) -> Result<(Self, mpsc::Receiver<AccessEvent>)> {
        Self::with_sockets(open_sockets()?, patterns, own_mac).await
    }

    /// [`Access::start`] for the links of network namespace `netns`.
    pub async fn start_in(
        netns: &NetNs,
        patterns: &[String],
        own_mac: [u8; 6],
    ) -> Result<(Self, mpsc::Receiver<AccessEvent>)> {
        let sockets = netns.run(open_sockets)??;
        Self::with_sockets(sockets, patterns, own_mac).await
    }

    async fn with_sockets(
        s: Sockets,
        patterns: &[String],
        own_mac: [u8; 6],
    ) -> Result<(Self, mpsc::Receiver<AccessEvent>)> {
        let register = |what| move |source| Error::Socket { what, source };
        let netlink = sys::register(s.netlink).map_err(register("route netlink"))?;
        let capture = sys::register(s.capture).map_err(register("packet capture"))?;
        let sender = sys::register(s.sender).map_err(register("packet send"))?;
        let counters = Arc::new(Counters::default());
        let table = LinkTable::new(InterfacePatterns::new(patterns), own_mac);
        let mut monitor = Monitor::new(netlink, capture, table, counters.clone());
        monitor.initial_dump().await?;
        let (tx, rx) = mpsc::channel(EVENT_QUEUE);
        let task = tokio::spawn(monitor.run(tx));
        Ok((
            Self {
                sender,
                counters,
                task,
            },
            rx,
        ))
    }

    /// Sends a whole IPv6 Ethernet frame out of access link `ifindex`.
    async fn send_frame(&self, ifindex: u32, frame: &[u8]) -> std::io::Result<()> {
        loop {
            let mut guard = self.sender.writable().await?;
            if let Ok(r) = guard.try_io(|s| sys::send_frame(s.get_ref(), ifindex, frame)) {
                return r;
            }
        }
    }

    /// Sends `ra` on its access link ([`router_advertisement_frame`] says what is in it).
    pub async fn send_ra(&self, ra: &RouterAdvertisement) -> Result<()> {
        let frame = router_advertisement_frame(ra)?;
        let ifindex = ra.link.0;
        self.send_frame(ifindex, &frame)
            .await
            .map_err(|source| Error::Send { ifindex, source })?;
        self.counters
            .router_advertisements_sent
            .fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Sends `ns` on its access link ([`neighbor_solicitation_frame`] says what is in it).
    pub async fn send_ns(&self, ns: &NeighborSolicitation) -> Result<()> {
        let frame = neighbor_solicitation_frame(ns)?;
        let ifindex = ns.link.0;
        self.send_frame(ifindex, &frame)
            .await
            .map_err(|source| Error::SendNs { ifindex, source })
    }

    /// Sends `probe` on its access link ([`presence_probe_frame`] says what is in it).
    /// With `announce`, an unsolicited Neighbor Advertisement of the MAG's address goes first
    /// ([`router_announcement_frame`]).
    pub async fn send_probe(&self, probe: &PresenceProbe) -> Result<()> {
        let ifindex = probe.link;
        if probe.announce {
            let frame = router_announcement_frame(probe)?;
            self.send_frame(ifindex, &frame)
                .await
                .map_err(|source| Error::SendProbe { ifindex, source })?;
        }
        let frame = presence_probe_frame(probe)?;
        self.send_frame(ifindex, &frame)
            .await
            .map_err(|source| Error::SendProbe { ifindex, source })
    }

    pub fn stats(&self) -> AccessStats {
        let c = &self.counters;
        AccessStats {
            frames_read: c.frames_read.load(Ordering::Relaxed),
            frames_ignored: c.frames_ignored.load(Ordering::Relaxed),
            router_advertisements_sent: c.router_advertisements_sent.load(Ordering::Relaxed),
            link_resyncs: c.link_resyncs.load(Ordering::Relaxed),
        }
    }
}

impl Drop for Access {
    fn drop(&mut self) {
        self.task.abort();
    }
}
