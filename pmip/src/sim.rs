//! A deterministic simulator of one PMIPv6 domain: one LMA, N MAGs, a virtual clock, per-link
//! latency and a drop filter, and a fake datapath on every node. Days of protocol time run in
//! milliseconds of real time, so retransmission, expiry, reordering and handover are tested
//! exactly.

use core::time::Duration;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::net::Ipv6Addr;

use ipnet::IpNet;

use crate::config::{LmaConfig, MagConfig};
use crate::lma::{Lma, LmaEvent, LmaOutput, LmaSnapshot};
use crate::mag::{Attach, BulChange, BulState, Mag, MagEvent, MagOutput};
use crate::output::{
    AccessLink, DatapathCommand, NeighborSolicitation, RouterAdvertisement, Transmit,
};
use crate::time::Instant;
use crate::types::LinkLayerAddress;
use crate::wire::{Message, WallClock};

/// A Mobility Header on its way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    pub bytes: Vec<u8>,
}

impl Packet {
    /// The message, parsed (for drop filters and assertions).
    pub fn message(&self) -> Option<Message<'_>> {
        Message::parse_verified(&self.bytes, &self.src, &self.dst).ok()
    }
}

/// The LMA's datapath as the commands left it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Downlink {
    Tunnel(Ipv6Addr),
    Drop,
}

/// A MAG's datapath as the commands left it. A prefix has one route: onto an access link,
/// into the tunnel to another MAG, or into the buffer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MagDatapath {
    pub uplinks: BTreeMap<IpNet, Ipv6Addr>,
    pub access_routes: BTreeMap<IpNet, (AccessLink, bool)>,
    pub forwards: BTreeMap<IpNet, Ipv6Addr>,
    pub buffering: std::collections::BTreeSet<IpNet>,
    /// Prefixes whose buffer delivers straight to the node until their route changes.
    pub delivering: BTreeMap<IpNet, (AccessLink, LinkLayerAddress)>,
    /// Every buffer flush and discard, in order.
    pub flushed: Vec<IpNet>,
    pub discarded: Vec<IpNet>,
    /// Every hold for an end marker: the prefix held, the prefix whose marker ends it, from
    /// whom, and for how long at most.
    pub end_marker_holds: Vec<(IpNet, IpNet, Ipv6Addr, u32)>,
}

/// What a drop filter decides for a packet.
pub type DropFilter = Box<dyn FnMut(&Packet) -> bool>;

/// One LMA, several MAGs, and the network between them.
pub struct Sim {
    pub now: Instant,
    wall_origin: WallClock,
    pub lma: Lma,
    lma_config: LmaConfig,
    pub mags: Vec<Mag>,
    /// Clock offset of each MAG from the LMA, in milliseconds (positive: ahead).
    pub mag_clock_skew_ms: Vec<i64>,
    /// One-way latency of every signalling packet.
    pub latency: Duration,
    /// Returns true to drop a packet.
    pub drop: Option<DropFilter>,
    in_flight: BinaryHeap<Reverse<(Instant, u64, usize)>>,
    packets: BTreeMap<usize, Packet>,
    next_packet: usize,
    seq: u64,
    /// Home network prefixes and IPv4 home addresses (`/32`).
    pub lma_datapath: BTreeMap<IpNet, Downlink>,
    /// Every end marker the LMA sent: when, for which prefix, to which MAG, and where the
    /// prefix's route went by then.
    pub lma_end_markers: Vec<(Instant, IpNet, Ipv6Addr, Option<Downlink>)>,
    pub mag_datapaths: Vec<MagDatapath>,
    pub lma_events: Vec<(Instant, LmaEvent)>,
    pub mag_events: Vec<(Instant, usize, MagEvent)>,
    pub router_advertisements: Vec<(Instant, usize, RouterAdvertisement)>,
    /// The probes of Neighbor Unreachability Detection each MAG sent.
    pub neighbor_solicitations: Vec<(Instant, usize, NeighborSolicitation)>,
    /// Every binding update list change each MAG reported.
    pub bul_changes: Vec<(Instant, usize, BulChange)>,
    /// Every packet sent, in order (before the drop filter).
    pub sent: Vec<(Instant, Packet)>,
    pub dropped: usize,
}

impl core::fmt::Debug for Sim {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Sim")
            .field("now", &self.now)
            .field("mags", &self.mags.len())
            .finish()
    }
}

impl Sim {
    /// A domain from its configurations. The MAGs' LMA address must be the LMA's.
    pub fn new(lma: LmaConfig, mags: Vec<MagConfig>, seed: u64) -> Self {
        let n = mags.len();
        let lma_sm = Lma::new(lma.clone(), 1, seed).unwrap_or_else(|e| {
            unreachable_config(&e.to_string());
        });
        let mags = mags
            .into_iter()
            .enumerate()
            .map(|(i, c)| {
                Mag::new(c, 1, seed.wrapping_add(1 + i as u64))
                    .unwrap_or_else(|e| unreachable_config(&e.to_string()))
            })
            .collect();
        Sim {
            now: Instant::from_nanos(1_000_000_000),
            wall_origin: WallClock::from_unix(1_750_000_000, 0),
            lma: lma_sm,
            lma_config: lma,
            mags,
            mag_clock_skew_ms: vec![0; n],
            latency: Duration::from_millis(1),
            drop: None,
            in_flight: BinaryHeap::new(),
            packets: BTreeMap::new(),
            next_packet: 0,
            seq: 0,
            lma_datapath: BTreeMap::new(),
            lma_end_markers: Vec::new(),
            mag_datapaths: vec![MagDatapath::default(); n],
            lma_events: Vec::new(),
            mag_events: Vec::new(),
            router_advertisements: Vec::new(),
            neighbor_solicitations: Vec::new(),
            bul_changes: Vec::new(),
            sent: Vec::new(),
            dropped: 0,
        }
    }

    /// The LMA's wall clock now.
    pub fn wall(&self) -> WallClock {
        self.wall_origin + (self.now - Instant::ZERO)
    }

    fn mag_wall(&self, i: usize) -> WallClock {
        let skew = self.mag_clock_skew_ms.get(i).copied().unwrap_or(0);
        let w = self.wall().since_epoch();
        let d = Duration::from_millis(skew.unsigned_abs());
        WallClock(if skew >= 0 {
            w + d
        } else {
            w.saturating_sub(d)
        })
    }

    pub fn attach(&mut self, mag: usize, ll: LinkLayerAddress) {
        self.attach_with(
            mag,
            Attach {
                link_layer: ll,
                link: AccessLink(1),
                access_technology_type: None,
                handoff_hint: None,
            },
        );
    }

    pub fn attach_with(&mut self, mag: usize, a: Attach) {
        let (now, wall) = (self.now, self.mag_wall(mag));
        if let Some(m) = self.mags.get_mut(mag) {
            m.handle_attach(now, wall, a);
        }
        self.drain();
    }

    pub fn detach(&mut self, mag: usize, ll: LinkLayerAddress) {
        let (now, wall) = (self.now, self.mag_wall(mag));
        if let Some(m) = self.mags.get_mut(mag) {
            m.handle_detach(now, wall, &ll);
        }
        self.drain();
    }

    /// Runs `f` on the LMA (an administrative command) and sends what it produced.
    pub fn lma_do<R>(&mut self, f: impl FnOnce(&mut Lma, Instant, WallClock) -> R) -> R {
        let (now, wall) = (self.now, self.wall());
        let r = f(&mut self.lma, now, wall);
        self.drain();
        r
    }

    /// Runs `f` on MAG `i` (an indication from its access network, say) and sends what it
    /// produced.
    pub fn mag_do<R>(&mut self, i: usize, f: impl FnOnce(&mut Mag, Instant, WallClock) -> R) -> R {
        let (now, wall) = (self.now, self.mag_wall(i));
        let r = f(&mut self.mags[i], now, wall);
        self.drain();
        r
    }

    /// Hands a packet to the network as if `src` had sent it (a forged or replayed message).
    pub fn inject(&mut self, p: Packet) {
        self.send(p);
    }

    /// Replaces the LMA with one restored from `snapshot` (after a crash that kept its
    /// state: the restart counter is the snapshot's, RFC 5847 §3.2).
    pub fn restart_lma(&mut self, snapshot: &LmaSnapshot) {
        self.restart_lma_with_counter(snapshot, snapshot.restart_counter);
    }

    /// Replaces the LMA with one restored from `snapshot` after a restart that lost state:
    /// its restart counter is bumped and it tells its MAGs.
    pub fn restart_lma_after_loss(&mut self, snapshot: &LmaSnapshot) {
        self.restart_lma_with_counter(snapshot, snapshot.restart_counter + 1);
    }

    fn restart_lma_with_counter(&mut self, snapshot: &LmaSnapshot, rc: u32) {
        let (now, wall) = (self.now, self.wall());
        self.lma = Lma::restore(
            self.lma_config.clone(),
            snapshot,
            rc,
            7,
            now,
            wall,
            Duration::from_secs(60),
        )
        .unwrap_or_else(|e| unreachable_config(&e.to_string()));
        self.lma_datapath.clear();
        let routes: Vec<DatapathCommand> = self.lma.restored_routes().collect();
        for c in routes {
            self.lma_datapath(c);
        }
        // Packets to the old process are lost with it.
        let lma = self.lma.address();
        self.in_flight
            .retain(|Reverse((_, _, id))| self.packets.get(id).is_some_and(|p| p.dst != lma));
        self.drain();
    }

    fn send(&mut self, p: Packet) {
        self.sent.push((self.now, p.clone()));
        if let Some(f) = self.drop.as_mut()
            && f(&p)
        {
            self.dropped += 1;
            return;
        }
        let id = self.next_packet;
        self.next_packet += 1;
        self.seq += 1;
        self.in_flight
            .push(Reverse((self.now + self.latency, self.seq, id)));
        self.packets.insert(id, p);
    }

    /// Moves every pending output into the network, the datapaths and the logs.
    fn drain(&mut self) {
        loop {
            let mut progressed = false;
            while let Some(o) = self.lma.poll_output() {
                progressed = true;
                match o {
                    LmaOutput::Transmit(t) => self.send(packet(t)),
                    LmaOutput::Datapath(c) => self.lma_datapath(c),
                    LmaOutput::Event(e) => self.lma_events.push((self.now, e)),
                }
            }
            for i in 0..self.mags.len() {
                while let Some(o) = self.mags[i].poll_output() {
                    progressed = true;
                    match o {
                        MagOutput::Transmit(t) => self.send(packet(t)),
                        MagOutput::Datapath(c) => mag_datapath(&mut self.mag_datapaths[i], c),
                        MagOutput::RouterAdvertisement(ra) => {
                            self.router_advertisements.push((self.now, i, ra))
                        }
                        MagOutput::NeighborSolicitation(ns) => {
                            self.neighbor_solicitations.push((self.now, i, ns))
                        }
                        MagOutput::Event(e) => self.mag_events.push((self.now, i, e)),
                        MagOutput::BindingUpdateList(c) => self.bul_changes.push((self.now, i, c)),
                    }
                }
            }
            if !progressed {
                break;
            }
        }
    }

    fn lma_datapath(&mut self, c: DatapathCommand) {
        match c {
            DatapathCommand::SetDownlink { prefix, peer } => {
                self.lma_datapath.insert(prefix, Downlink::Tunnel(peer));
            }
            DatapathCommand::DropDownlink { prefix } => {
                self.lma_datapath.insert(prefix, Downlink::Drop);
            }
            DatapathCommand::RemoveDownlink { prefix } => {
                self.lma_datapath.remove(&prefix);
            }
            DatapathCommand::EndMarker { prefix, peer } => {
                let route = self.lma_datapath.get(&prefix).copied();
                self.lma_end_markers.push((self.now, prefix, peer, route));
            }
            _ => {}
        }
    }

    /// The time of the next packet arrival or timer.
    fn next_event(&mut self) -> Option<Instant> {
        let mut t = self.in_flight.peek().map(|Reverse((t, _, _))| *t);
        let mut consider = |x: Option<Instant>| {
            if let Some(x) = x {
                t = Some(t.map_or(x, |t| t.min(x)));
            }
        };
        consider(self.lma.poll_timeout());
        for m in &self.mags {
            consider(m.poll_timeout());
        }
        t
    }

    /// Runs one event (a delivery or the timers due) if there is one at or before `limit`.
    pub fn step(&mut self, limit: Instant) -> bool {
        let Some(t) = self.next_event().filter(|t| *t <= limit) else {
            return false;
        };
        if t > self.now {
            self.now = t;
        }
        let (now, wall) = (self.now, self.wall());
        if let Some(Reverse((at, _, id))) = self.in_flight.peek().copied()
            && at <= now
        {
            self.in_flight.pop();
            if let Some(p) = self.packets.remove(&id) {
                self.deliver(p);
            }
        } else {
            self.lma.handle_timeout(now, wall);
            for i in 0..self.mags.len() {
                let w = self.mag_wall(i);
                if self.mags[i].poll_timeout().is_some_and(|d| d <= now) {
                    self.mags[i].handle_timeout(now, w);
                }
            }
        }
        self.drain();
        true
    }

    fn deliver(&mut self, p: Packet) {
        let now = self.now;
        if p.dst == self.lma.address() {
            let wall = self.wall();
            self.lma.handle_message(now, wall, p.src, p.dst, &p.bytes);
            return;
        }
        if let Some(i) = self.mags.iter().position(|m| m.proxy_coa() == p.dst) {
            let wall = self.mag_wall(i);
            self.mags[i].handle_message(now, wall, p.src, p.dst, &p.bytes);
        }
    }

    /// Runs until `d` of virtual time has passed.
    pub fn run_for(&mut self, d: Duration) {
        let limit = self.now + d;
        while self.step(limit) {}
        self.now = limit;
    }

    /// Runs until nothing is in flight and every MAG's entries are settled (registered or
    /// refused, none waiting for a PBA), or until `horizon` has passed.
    pub fn settle(&mut self, horizon: Duration) {
        let limit = self.now + horizon;
        while self.step(limit) {
            let quiet = self.in_flight.is_empty()
                && self.mags.iter().all(|m| {
                    m.bindings()
                        .all(|e| matches!(e.state, BulState::Bound | BulState::Denied { .. }))
                });
            if quiet {
                break;
            }
        }
    }

    pub fn mag_events_of(&self, mag: usize) -> impl Iterator<Item = &MagEvent> {
        self.mag_events
            .iter()
            .filter(move |(_, i, _)| *i == mag)
            .map(|(_, _, e)| e)
    }
}

fn mag_datapath(d: &mut MagDatapath, c: DatapathCommand) {
    match c {
        DatapathCommand::SetUplink { prefix, peer } => {
            d.uplinks.insert(prefix, peer);
        }
        DatapathCommand::RemoveUplink { prefix } => {
            d.uplinks.remove(&prefix);
        }
        DatapathCommand::SetLinkRoute {
            prefix,
            link,
            local_routing,
        } => {
            d.forwards.remove(&prefix);
            d.delivering.remove(&prefix);
            d.access_routes.insert(prefix, (link, local_routing));
        }
        DatapathCommand::SetDownlink { prefix, peer } => {
            d.access_routes.remove(&prefix);
            d.forwards.insert(prefix, peer);
        }
        DatapathCommand::RemoveDownlink { prefix } => {
            d.forwards.remove(&prefix);
        }
        DatapathCommand::Buffer { prefix } => {
            d.buffering.insert(prefix);
        }
        DatapathCommand::FlushBuffer { prefix, deliver } => {
            d.buffering.remove(&prefix);
            d.flushed.push(prefix);
            if let Some(link) = deliver {
                d.delivering.insert(prefix, link);
            }
        }
        DatapathCommand::ForwardBuffer { prefix, peer } => {
            d.buffering.remove(&prefix);
            d.flushed.push(prefix);
            d.forwards.insert(prefix, peer);
        }
        DatapathCommand::DiscardBuffer { prefix } => {
            d.buffering.remove(&prefix);
            d.discarded.push(prefix);
        }
        DatapathCommand::HoldForEndMarker {
            prefix,
            marker,
            lma,
            wait_ms,
        } => d.end_marker_holds.push((prefix, marker, lma, wait_ms)),
        DatapathCommand::RemoveLinkRoute { prefix, .. } => {
            // The prefix's route changes: a buffer handing it to the node stops.
            d.access_routes.remove(&prefix);
            d.delivering.remove(&prefix);
        }
        _ => {}
    }
}

fn packet(t: Transmit) -> Packet {
    Packet {
        src: t.src,
        dst: t.dst,
        bytes: t.payload,
    }
}

/// The simulator is built from configurations its caller wrote; a policy conflict there is a
/// bug in the test, reported as such.
#[allow(clippy::panic)]
fn unreachable_config(e: &str) -> ! {
    panic!("simulator configuration rejected: {e}")
}
