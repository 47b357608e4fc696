//! The kernel backends (seg6 and ip6tnl): the model's changes as netlink requests.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv6Addr;
use std::sync::Arc;

use ipnet::IpNet;
use netlink_packet_route::AddressFamily;
use tokio::sync::Mutex;

use crate::Settings;
use crate::error::{Error, Result};
use crate::model::{Change, DesiredState, Pending, PrefixRoute, Previous, ReconcileReport};
use crate::msg::{
    self, Family, KAddr, KRoute, KRule, KTunnel, LOCAL_TABLE, MAIN_TABLE, RouteKey, Via,
};
use crate::netlink::{Netlink, Outcome, Request};
use crate::nexthop::NexthopChange;
use crate::plan::{self, Actual, Layout, Tunnel};
use crate::sysctl::{Ensured, Ledger, Sysctl};
use crate::tun::Forwarder;

const IPV4_FORWARDING: &str = "net/ipv4/ip_forward";

/// A kernel backend: seg6 or ip6tnl tunnels programmed over one netlink connection.
///
/// It keeps what it believes is programmed (read back from the kernel when opened) so that
/// every change is only the requests it needs. Clones share everything; calls are serialized.
#[derive(Debug, Clone)]
pub struct Kernel {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    nl: Netlink,
    layout: Layout,
    shadow: Mutex<Shadow>,
    /// The sysctl values found before this backend changed them.
    ledger: std::sync::Mutex<Ledger>,
    /// The userspace tunnel's devices and threads ([`Tunnel::Tun`] only).
    tun: Option<Forwarder>,
}

/// What is programmed, as the model says it, plus the per-peer bookkeeping.
#[derive(Debug, Default)]
struct Shadow {
    state: DesiredState,
    /// Per-peer slot: table `peer_table(slot)` and (ip6tnl) link `tunnel_name(slot)`.
    slots: BTreeMap<Ipv6Addr, u32>,
    /// ip6tnl link index per peer.
    tunnels: BTreeMap<Ipv6Addr, u32>,
    /// Peers whose table has its IPv6 default route.
    defaults: BTreeSet<Ipv6Addr>,
    /// Peers whose table has its IPv4 default route.
    defaults4: BTreeSet<Ipv6Addr>,
    /// IPv6 and IPv4 uplinks per peer.
    uplink_refs: BTreeMap<Ipv6Addr, usize>,
    uplink4_refs: BTreeMap<Ipv6Addr, usize>,
    /// IPv6 and IPv4 tunnel routes per peer.
    downlink_refs: BTreeMap<Ipv6Addr, usize>,
    /// IPv4 forwarding was turned on (once an IPv4 home address is routed).
    ipv4_forwarding: bool,
    /// What `open` read, kept for a `reconcile` that follows before any change: the dump of
    /// a million routes takes seconds, and a restarted daemon reconciles right after opening.
    opened: Option<(std::time::Instant, Actual)>,
    /// The state was assumed ([`Kernel::assume`]) and is not yet reconciled.
    pending: Option<Pending>,
}

/// Requests of a reconcile per lock: the daemon's changes wait for at most this many.
const RECONCILE_STEP: usize = 1024;

/// What a reconcile request counts as in its report.
#[derive(Debug, Clone, Copy)]
enum Kind {
    RouteAdd,
    RouteDel,
    RuleAdd,
    RuleDel,
    AddrAdd,
    AddrDel,
    LinkSet,
}

/// One request of a reconcile, with its main-table destination when it is a route there.
#[derive(Debug, Clone)]
struct Step {
    kind: Kind,
    object: Object,
    dst: Option<IpNet>,
}

/// What a step sends: a route's request is made when it is sent ([`Step::request`]).
#[derive(Debug, Clone)]
enum Object {
    Route(KRoute),
    Other(Request),
}

impl Step {
    /// Its request. A route's netlink message (its attributes on the heap) is made here, a
    /// chunk at a time: made ahead for every route of a reconcile, two million of them took
    /// hundreds of megabytes, and the kernel's zeroing of those fresh pages was half of a
    /// restarted LMA's time before its first route went out.
    fn request(&self) -> Request {
        match (&self.object, self.kind) {
            (Object::Route(r), Kind::RouteDel) => Request::delete_route(r),
            (Object::Route(r), _) => Request::replace_route(r),
            (Object::Other(r), _) => r.clone(),
        }
    }
}

/// The requests that turn one set of objects into another, in a safe order: what is added
/// before what is removed, our `local` rule in before the kernel's goes.
fn steps(l: &Layout, d: plan::Diff) -> Vec<Step> {
    let mut out = Vec::with_capacity(d.routes_to_replace.len() + d.routes_to_delete.len());
    let route = |kind: Kind, r: KRoute| Step {
        kind,
        dst: (r.key.table == MAIN_TABLE).then_some(r.key.dst),
        object: Object::Route(r),
    };
    let other = |kind: Kind, request: Request| Step {
        kind,
        object: Object::Other(request),
        dst: None,
    };
    out.extend(
        d.routes_to_replace
            .into_iter()
            .map(|r| route(Kind::RouteAdd, r)),
    );
    for (index, mac) in &d.macs_to_set {
        out.push(other(
            Kind::LinkSet,
            Request::set_link(msg::set_mac_message(*index, *mac)),
        ));
    }
    for a in &d.addresses_to_replace {
        out.push(other(
            Kind::AddrAdd,
            Request::replace_address(a, l.s.route_protocol),
        ));
    }
    for r in &d.rules_to_add {
        out.push(other(Kind::RuleAdd, Request::add_rule(r)));
    }
    for r in &d.foreign_local_rules_to_delete {
        out.push(other(Kind::RuleDel, Request::delete_rule(r)));
    }
    if d.restore_boot_local {
        out.push(other(
            Kind::RuleAdd,
            Request::add_rule(&KRule::boot_local()),
        ));
    }
    for r in &d.rules_to_delete {
        out.push(other(Kind::RuleDel, Request::delete_rule(r)));
    }
    out.extend(
        d.routes_to_delete
            .into_iter()
            .map(|r| route(Kind::RouteDel, r)),
    );
    for a in &d.addresses_to_delete {
        out.push(other(Kind::AddrDel, Request::delete_address(a)));
    }
    out
}

/// Sends `steps` and counts what they did in `report`; returns the failures.
async fn execute_steps(nl: &Netlink, steps: &[&Step], report: &mut ReconcileReport) -> Vec<Error> {
    let requests: Vec<Request> = steps.iter().map(|s| s.request()).collect();
    let mut failures = Vec::new();
    for (step, result) in steps.iter().zip(nl.execute(&requests).await) {
        let counts = match step.kind {
            Kind::RouteAdd => &mut report.routes.added,
            Kind::RouteDel => &mut report.routes.removed,
            Kind::RuleAdd => &mut report.rules.added,
            Kind::RuleDel => &mut report.rules.removed,
            Kind::AddrAdd => &mut report.addresses.added,
            Kind::AddrDel => &mut report.addresses.removed,
            Kind::LinkSet => &mut report.links.added,
        };
        match result {
            Ok(Outcome::Done) => *counts += 1,
            Ok(Outcome::Unchanged) => {}
            Err(e) => failures.push(e),
        }
    }
    failures
}

fn batch_error(mut failures: Vec<Error>, total: usize) -> Error {
    Error::Batch {
        failed: failures.len(),
        total,
        first: Box::new(failures.swap_remove(0)),
    }
}

impl Shadow {
    fn from_state(
        state: DesiredState,
        slots: BTreeMap<Ipv6Addr, u32>,
        tunnels: BTreeMap<Ipv6Addr, u32>,
    ) -> Self {
        let mut s = Shadow {
            slots,
            tunnels,
            ..Shadow::default()
        };
        for peer in state.uplinks.values() {
            *s.uplink_refs.entry(*peer).or_default() += 1;
            s.defaults.insert(*peer);
        }
        for peer in state.uplinks4.values() {
            *s.uplink4_refs.entry(*peer).or_default() += 1;
            s.defaults4.insert(*peer);
        }
        // Per distinct route, not per prefix: the maps count their routes' users.
        for (r, n) in state.routes.counts().chain(state.routes4.counts()) {
            if let PrefixRoute::Tunnel { peer } = r {
                *s.downlink_refs.entry(peer).or_default() += n;
            }
        }
        s.state = state;
        s
    }
}

fn inc(refs: &mut BTreeMap<Ipv6Addr, usize>, peer: Ipv6Addr) {
    *refs.entry(peer).or_default() += 1;
}

fn dec(refs: &mut BTreeMap<Ipv6Addr, usize>, peer: Ipv6Addr) {
    if let Some(n) = refs.get_mut(&peer) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            refs.remove(&peer);
        }
    }
}

/// Requests collected for one `apply`, each remembering the change it is for.
#[derive(Default)]
struct Batch {
    requests: Vec<Request>,
    owners: Vec<usize>,
    failures: Vec<(usize, Error)>,
    current: usize,
    /// Userspace tunnel devices left without routes once the requests are sent: they linger
    /// for their peers ([`Forwarder::idle`]).
    idles: Vec<u32>,
    /// End markers to send once the requests are done ([`Change::SendEndMarker`]): prefix,
    /// peer, and the local tunnel end they go from.
    markers: Vec<(IpNet, Ipv6Addr, Option<Ipv6Addr>)>,
}

impl Batch {
    fn push(&mut self, r: Request) {
        self.requests.push(r);
        self.owners.push(self.current);
    }

    /// Sends what is queued (before a tunnel link is made: the queue may delete one of the
    /// same name), then lets the devices queued idle.
    async fn flush(&mut self, nl: &Netlink, tun: Option<&Forwarder>) {
        let requests = std::mem::take(&mut self.requests);
        let owners = std::mem::take(&mut self.owners);
        for (owner, result) in owners.into_iter().zip(nl.execute(&requests).await) {
            if let Err(e) = result {
                self.failures.push((owner, e));
            }
        }
        if let Some(tun) = tun {
            for index in self.idles.drain(..) {
                tun.idle(index);
            }
        }
        // After the routes moved: the prefixes' packets go to their new peers now.
        for (prefix, peer, local) in self.markers.drain(..) {
            let sent = match tun {
                Some(tun) => tun.send_end_marker(peer, prefix),
                // The kernel encapsulates as it routes: what it routed to the peer before the
                // change has left, and the marker follows it from a socket of its own.
                None => local.is_some_and(|local| {
                    crate::tun::send_end_marker_once(nl, local, peer, prefix)
                        .inspect_err(|e| tracing::debug!(error = %e, %peer, "end marker refused"))
                        .is_ok()
                }),
            };
            if !sent {
                tracing::debug!(%prefix, %peer, "no tunnel end to send an end marker from");
            }
        }
    }
}

/// How long what `open` read stands for the kernel's state in the first `reconcile`.
const OPENED_FRESH: std::time::Duration = std::time::Duration::from_secs(60);

impl Kernel {
    /// Opens a backend of `kind` on `nl` and reads back what an earlier run programmed.
    pub async fn open(nl: Netlink, settings: Settings, kind: Tunnel) -> Result<Self> {
        Self::open_reading(nl, settings, kind, true).await
    }

    /// [`Kernel::open`] without reading back the routes (rules, addresses and links only):
    /// for a daemon that tells the backend what the kernel holds with [`Kernel::assume`], and
    /// reconciles later. The dump of a million routes takes seconds.
    pub async fn open_without_routes(
        nl: Netlink,
        settings: Settings,
        kind: Tunnel,
    ) -> Result<Self> {
        Self::open_reading(nl, settings, kind, false).await
    }

    async fn open_reading(
        nl: Netlink,
        settings: Settings,
        kind: Tunnel,
        routes: bool,
    ) -> Result<Self> {
        settings.validate()?;
        let ledger = match &settings.sysctl_ledger {
            Some(file) => Ledger::open(file.clone())?,
            None => Ledger::in_memory(),
        };
        // Nexthop objects for the routes into links where the kernel has them (a kernel
        // without them refuses the dump).
        let nexthops = kind.has_links()
            && match nl.dump_nexthops().await {
                Ok(_) => true,
                // A kernel before Linux 5.3 does not know the request.
                Err(e) if matches!(e.errno(), Some(libc::EOPNOTSUPP | libc::EINVAL)) => {
                    tracing::info!(error = %e, "no nexthop objects: each route into a tunnel link carries its own nexthop");
                    false
                }
                Err(e) => return Err(e),
            };
        let layout = Layout {
            s: settings,
            kind,
            nexthops,
        };
        let tun = (kind == Tunnel::Tun).then(|| Forwarder::new(layout.s.tun_linger));
        let k = Kernel {
            inner: Arc::new(Inner {
                nl,
                layout,
                shadow: Mutex::new(Shadow::default()),
                ledger: std::sync::Mutex::new(ledger),
                tun,
            }),
        };
        let actual = read_actual(&k.inner.nl, &k.inner.layout, routes).await?;
        let (state, slots, tunnels) = plan::read_back(&k.inner.layout, &actual);
        let mut shadow = Shadow::from_state(state, slots, tunnels);
        if routes {
            shadow.opened = Some((std::time::Instant::now(), actual));
        }
        *k.inner.shadow.lock().await = shadow;
        Ok(k)
    }

    /// Which tunnels this backend makes.
    pub fn tunnel(&self) -> Tunnel {
        self.inner.layout.kind
    }

    /// What the userspace tunnel carried ([`Tunnel::Tun`] only).
    pub fn tun_counters(&self) -> Option<&Arc<crate::tun::TunCounters>> {
        self.inner.tun.as_ref().map(Forwarder::counters)
    }

    /// The settings it was opened with.
    pub fn settings(&self) -> &Settings {
        &self.inner.layout.s
    }

    /// The connection it programs through.
    pub fn netlink(&self) -> &Netlink {
        &self.inner.nl
    }

    /// What the backend believes is programmed.
    pub async fn state(&self) -> DesiredState {
        self.inner.shadow.lock().await.state.clone()
    }

    /// What the kernel has that this backend owns, read back into the model (a fresh dump).
    pub async fn read_back(&self) -> Result<DesiredState> {
        let actual = self.read_actual().await?;
        Ok(plan::read_back(&self.inner.layout, &actual).0)
    }

    async fn read_actual(&self) -> Result<Actual> {
        read_actual(&self.inner.nl, &self.inner.layout, true).await
    }

    /// Applies the changes in order, pipelined: requests go `CHUNK` per datagram and the
    /// kernel's answers are read as they come. Changes after a failed one are still applied.
    pub async fn apply(&self, changes: &[Change]) -> Result<()> {
        let mut sh = self.inner.shadow.lock().await;
        sh.opened = None;
        let mut batch = Batch::default();
        for (i, c) in changes.iter().enumerate() {
            batch.current = i;
            let sh = &mut *sh;
            if let Some(p) = sh.pending.as_mut() {
                p.note(c, &sh.state);
            }
            if let Err(e) = self.plan_change(sh, &mut batch, c).await {
                batch.failures.push((i, e));
            }
        }
        let requests = batch.requests.len();
        batch.flush(&self.inner.nl, self.inner.tun.as_ref()).await;
        drop(sh);
        tracing::debug!(
            changes = changes.len(),
            requests,
            failed = batch.failures.len(),
            "datapath: applied"
        );
        batch_result(changes.len(), batch.failures)
    }

    /// IPv4 home addresses (RFC 5844) are forwarded between the access link, the tunnel and
    /// the correspondents: turned on with the first of them, not before.
    fn enable_ipv4_forwarding(&self, sh: &mut Shadow) -> Result<()> {
        if !sh.ipv4_forwarding {
            self.ensure_sysctl(&Sysctl::new(IPV4_FORWARDING), "1")?;
            sh.ipv4_forwarding = true;
            if self.inner.layout.kind == Tunnel::Tun {
                self.warn_of_reverse_path_filtering();
            }
        }
        Ok(())
    }

    /// The userspace tunnel's decapsulated IPv4 packets enter by its ingress pair, whose
    /// reverse-path filter is off; but the kernel filters by the larger of a link's value and
    /// `all`'s, and drops them when `all` asks for filtering. Setting `all` is the host's
    /// decision, not the daemon's: it says so, once, when IPv4 home addresses first appear.
    fn warn_of_reverse_path_filtering(&self) {
        let key = Sysctl::new("net/ipv4/conf/all/rp_filter");
        match self.inner.nl.read_sysctl(&key) {
            Ok(v) if v.trim() != "0" => tracing::warn!(
                sysctl = %key,
                value = v.trim(),
                "IPv4 home addresses through the userspace tunnel: the kernel drops their \
                 decapsulated packets while reverse-path filtering is on for all links; set \
                 net.ipv4.conf.all.rp_filter=0 (the tunnel's links have it off), or use a \
                 kernel with seg6 or ip6tnl"
            ),
            Ok(_) => {}
            Err(e) => tracing::debug!(error = %e, "rp_filter not readable"),
        }
    }

    /// The sysctls that terminating tunnels arriving on link `ifindex` needs, with their values.
    pub async fn termination_sysctls(&self, ifindex: u32) -> Result<Vec<(Sysctl, &'static str)>> {
        let mut v = vec![(Sysctl::new("net/ipv6/conf/all/forwarding"), "1")];
        if self.inner.layout.kind == Tunnel::Seg6 {
            // The kernel drops SRv6 (and so End.DT6) input unless seg6 is on for the
            // ingress link; `all` alone is not enough.
            v.push((Sysctl::new("net/ipv6/conf/all/seg6_enabled"), "1"));
            let name = self.inner.nl.link_name(ifindex).await?;
            v.push((
                Sysctl::new(&format!("net/ipv6/conf/{name}/seg6_enabled")),
                "1",
            ));
        }
        Ok(v)
    }

    async fn enable_termination(&self, ifindex: u32) -> Result<()> {
        for (key, value) in self.termination_sysctls(ifindex).await? {
            self.ensure_sysctl(&key, value)?;
        }
        Ok(())
    }

    /// Sets `key` unless it has `value` already; a change is logged and the value found is
    /// recorded for [`crate::sysctl::restore`].
    fn ensure_sysctl(&self, key: &Sysctl, value: &str) -> Result<Ensured> {
        let done = self.inner.nl.ensure_sysctl(key, value)?;
        if let Ensured::Changed { previous } = &done {
            tracing::info!(sysctl = %key, from = %previous, to = value, "sysctl set");
            self.inner
                .ledger
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .record(key, previous)?;
        }
        Ok(done)
    }

    /// Sets the sysctls the datapath needs on the transport link (what terminating tunnels
    /// there needs), before any tunnel exists; what a privileged init container runs for a
    /// daemon that cannot write `/proc/sys` itself.
    /// IPv4 forwarding is among them: whether IPv4 home addresses (RFC 5844) come later is not
    /// known when an init container runs, and a Kubernetes node forwards IPv4 already.
    pub async fn ensure_sysctls(&self) -> Result<Vec<(Sysctl, String, Ensured)>> {
        let mut out = Vec::new();
        let mut wanted = self
            .termination_sysctls(self.inner.layout.s.transport_ifindex)
            .await?;
        wanted.push((Sysctl::new(IPV4_FORWARDING), "1"));
        for (key, value) in wanted {
            let done = self.ensure_sysctl(&key, value)?;
            out.push((key, value.to_owned(), done));
        }
        Ok(out)
    }

    /// The way into the tunnel to `peer`, making its link (ip6tnl, or veth pair) first if
    /// needed.
    async fn via(&self, sh: &mut Shadow, batch: &mut Batch, peer: Ipv6Addr) -> Result<Via> {
        let l = &self.inner.layout;
        if l.kind.has_links() && !sh.tunnels.contains_key(&peer) {
            let slot = self.slot(sh, peer)?;
            let local = first_termination(&sh.state)?;
            batch.flush(&self.inner.nl, self.inner.tun.as_ref()).await;
            let index = self
                .create_tunnel(slot, &l.tunnel_link(slot, local, peer))
                .await?;
            sh.tunnels.insert(peer, index);
        }
        l.tunnel_via(peer, &sh.slots, &sh.tunnels)
            .ok_or_else(|| Error::Invalid {
                op: "tunnel",
                reason: format!("no tunnel link to {peer}"),
            })
    }

    /// Makes the link `t` of `slot` and (where the routes name one) its nexthop object.
    async fn create_tunnel(&self, slot: u32, t: &KTunnel) -> Result<u32> {
        let nl = &self.inner.nl;
        let index = match &self.inner.tun {
            Some(tun) => tun.create(nl, t).await?,
            None => {
                nl.execute_all(&[Request::new_link(t.new_message())])
                    .await?;
                nl.link_index(&t.name).await?
            }
        };
        let l = &self.inner.layout;
        if l.nexthops {
            let set = nl
                .change_nexthops(vec![NexthopChange::Set {
                    id: l.nexthop_id(slot),
                    oif: index,
                    protocol: l.s.route_protocol,
                }])
                .await;
            if let Err(e) = set {
                // An ip6tnl link left behind would refuse the next try (it is made with
                // NLM_F_EXCL); a pair of the userspace tunnel is found again by its name.
                if self.inner.tun.is_none() {
                    nl.execute(&[Request::delete_link(index)]).await;
                }
                return Err(e);
            }
        }
        Ok(index)
    }

    fn slot(&self, sh: &mut Shadow, peer: Ipv6Addr) -> Result<u32> {
        if let Some(&s) = sh.slots.get(&peer) {
            return Ok(s);
        }
        let s = &self.inner.layout.s;
        let used: BTreeSet<u32> = sh.slots.values().copied().collect();
        // The userspace tunnel: the peer's idle device keeps its slot for it; the slots of
        // others' idle devices are taken last (their devices close then).
        let (mine, others) = match &self.inner.tun {
            Some(tun) => {
                let local = sh.state.terminations.keys().next().copied();
                let (mine, others) = tun.lingering(local, peer);
                let slot = |n: &String| s.slot_of_tunnel_name(n);
                (
                    mine.as_ref().and_then(slot),
                    others.iter().filter_map(slot).collect(),
                )
            }
            None => (None, BTreeSet::new()),
        };
        let free = mine
            .filter(|m| !used.contains(m))
            .or_else(|| (0..s.max_peers).find(|i| !used.contains(i) && !others.contains(i)))
            .or_else(|| (0..s.max_peers).find(|i| !used.contains(i)))
            .ok_or(Error::PeersExhausted {
                peer,
                slots: s.max_peers,
                first_table: s.peer_table(0),
            })?;
        sh.slots.insert(peer, free);
        Ok(free)
    }

    /// Removes what `peer` no longer needs: its table's default route of a family once no
    /// uplink of that family uses it, its slot (and ip6tnl link) once nothing does.
    fn settle(&self, sh: &mut Shadow, batch: &mut Batch, peer: Ipv6Addr) {
        let l = &self.inner.layout;
        let up6 = sh.uplink_refs.contains_key(&peer);
        let up4 = sh.uplink4_refs.contains_key(&peer);
        let up = up6 || up4;
        let down = sh.downlink_refs.contains_key(&peer);
        let slot = sh.slots.get(&peer).copied();
        let via = l.tunnel_via(peer, &sh.slots, &sh.tunnels);
        if !up6
            && sh.defaults.remove(&peer)
            && let (Some(slot), Some(via)) = (slot, via.clone())
        {
            batch.push(Request::delete_route(&l.peer_default(slot, via)));
        }
        if !up4
            && sh.defaults4.remove(&peer)
            && let (Some(slot), Some(via)) = (slot, via)
        {
            batch.push(Request::delete_route(&l.peer_default4(slot, via)));
        }
        let needed = match l.kind {
            Tunnel::Seg6 => up,
            Tunnel::Ip6tnl | Tunnel::Tun => up || down,
        };
        if !needed {
            sh.slots.remove(&peer);
            if let Some(index) = sh.tunnels.remove(&peer) {
                if self.inner.tun.is_some() {
                    batch.idles.push(index);
                } else {
                    batch.push(Request::delete_link(index));
                }
            }
        }
    }

    fn local_routing_gone(&self, sh: &Shadow, batch: &mut Batch) {
        if !sh.state.any_local_routing() {
            batch.push(Request::delete_rule(
                &self.inner.layout.local_routing_rule(),
            ));
        }
    }

    fn local_routing4_gone(&self, sh: &Shadow, batch: &mut Batch) {
        if !sh.state.any_local_routing4() {
            batch.push(Request::delete_rule(
                &self.inner.layout.local_routing_rule4(),
            ));
        }
    }

    async fn plan_change(&self, sh: &mut Shadow, batch: &mut Batch, c: &Change) -> Result<()> {
        let l = &self.inner.layout;
        match *c {
            Change::PrepareTermination(t) => {
                self.enable_termination(t.ifindex).await?;
                sh.state.apply(c);
                if l.kind == Tunnel::Seg6 {
                    batch.push(Request::add_rule(&l.termination_rule(t.local)));
                    batch.push(Request::replace_route(
                        &l.termination_route(t.local, t.ifindex),
                    ));
                    batch.push(Request::add_rule(&l.termination4_rule(t.local)));
                    batch.push(Request::replace_route(
                        &l.termination4_route(t.local, t.ifindex),
                    ));
                    batch.push(Request::add_rule(&l.local_rule()));
                    // Only once ours is in: the kernel's `0: lookup local` would deliver
                    // protocol 41 to the local address before the termination rule.
                    batch.push(Request::delete_rule(&KRule {
                        protocol: 0,
                        ..KRule::boot_local()
                    }));
                }
                if let Some(tun) = &self.inner.tun {
                    tun.terminate(&self.inner.nl, t.local, &l.s.tun_ingress_name())
                        .await?;
                    batch.push(Request::add_rule(&l.tun_ingress_rule(Family::V6)));
                    batch.push(Request::add_rule(&l.tun_ingress_rule(Family::V4)));
                }
            }
            Change::RemoveTermination { local } => {
                if let Previous::Termination(Some(ifindex)) = sh.state.apply_returning_previous(c)
                    && l.kind == Tunnel::Seg6
                {
                    batch.push(Request::delete_rule(&l.termination_rule(local)));
                    batch.push(Request::delete_route(&l.termination_route(local, ifindex)));
                    batch.push(Request::delete_rule(&l.termination4_rule(local)));
                    batch.push(Request::delete_route(&l.termination4_route(local, ifindex)));
                    if sh.state.terminations.is_empty() {
                        batch.push(Request::add_rule(&KRule::boot_local()));
                        batch.push(Request::delete_rule(&l.local_rule()));
                    }
                }
                if let Some(tun) = &self.inner.tun {
                    match sh.state.terminations.keys().next() {
                        Some(&other) => {
                            tun.terminate(&self.inner.nl, other, &l.s.tun_ingress_name())
                                .await?;
                        }
                        None => {
                            tun.stop_terminating(&self.inner.nl, &l.s.tun_ingress_name())
                                .await?;
                            batch.push(Request::delete_rule(&l.tun_ingress_rule(Family::V6)));
                            batch.push(Request::delete_rule(&l.tun_ingress_rule(Family::V4)));
                        }
                    }
                }
            }
            Change::SendEndMarker { prefix, peer } => {
                let local = sh.state.terminations.keys().next().copied();
                batch.markers.push((prefix, peer, local));
            }
            Change::HoldForEndMarker {
                prefix,
                marker,
                from,
                wait,
            } => {
                if let Some(tun) = &self.inner.tun {
                    tun.hold_for_end_marker(prefix, marker, from, wait);
                }
            }
            Change::SetDownlink { prefix, peer } => {
                let via = self.via(sh, batch, peer).await?;
                let prev = sh.state.apply_returning_previous(c);
                batch.push(Request::replace_route(&l.downlink(prefix, via)));
                if prev != Previous::Route(Some(PrefixRoute::Tunnel { peer })) {
                    inc(&mut sh.downlink_refs, peer);
                }
                self.after_route_replaced(sh, batch, prefix.trunc().into(), prev, Some(peer));
            }
            Change::RemoveDownlink { prefix } => {
                if let Previous::Route(Some(PrefixRoute::Tunnel { peer })) =
                    sh.state.apply_returning_previous(c)
                {
                    if let Some(via) = l.tunnel_via(peer, &sh.slots, &sh.tunnels) {
                        batch.push(Request::delete_route(&l.downlink(prefix, via)));
                    }
                    dec(&mut sh.downlink_refs, peer);
                    self.settle(sh, batch, peer);
                }
            }
            Change::SetLinkRoute {
                prefix,
                ifindex,
                local_routing,
            } => {
                let prev = sh.state.apply_returning_previous(c);
                batch.push(Request::replace_route(&l.local_route(prefix, ifindex)));
                if local_routing {
                    batch.push(Request::replace_route(
                        &l.local_routing_route(prefix, ifindex),
                    ));
                    batch.push(Request::add_rule(&l.local_routing_rule()));
                }
                self.after_route_replaced(sh, batch, prefix.trunc().into(), prev, None);
            }
            Change::RemoveLinkRoute { prefix, ifindex } => {
                if let Previous::Route(Some(PrefixRoute::Link { local_routing, .. })) =
                    sh.state.apply_returning_previous(c)
                {
                    batch.push(Request::delete_route(&l.local_route(prefix, ifindex)));
                    if local_routing {
                        batch.push(Request::delete_route(
                            &l.local_routing_route(prefix, ifindex),
                        ));
                        self.local_routing_gone(sh, batch);
                    }
                }
            }
            Change::SetUplink { prefix, peer } => {
                let prefix = prefix.trunc();
                let old = sh.state.uplinks.get(&prefix).copied();
                let slot = self.slot(sh, peer)?;
                if !sh.defaults.contains(&peer) {
                    let via = self.via(sh, batch, peer).await?;
                    batch.push(Request::replace_route(&l.peer_default(slot, via)));
                    sh.defaults.insert(peer);
                }
                // The new rule goes in before the old one goes, so the prefix's traffic is
                // never looked up in the main table untunnelled.
                batch.push(Request::add_rule(&l.uplink_rule(prefix, Some(slot))));
                sh.state.apply(c);
                if old != Some(peer) {
                    inc(&mut sh.uplink_refs, peer);
                }
                if let Some(old) = old.filter(|o| *o != peer) {
                    let old_slot = sh.slots.get(&old).copied();
                    batch.push(Request::delete_rule(&l.uplink_rule(prefix, old_slot)));
                    dec(&mut sh.uplink_refs, old);
                    self.settle(sh, batch, old);
                }
            }
            Change::RemoveUplink { prefix } => {
                if let Previous::Uplink(Some(peer)) = sh.state.apply_returning_previous(c) {
                    let slot = sh.slots.get(&peer).copied();
                    batch.push(Request::delete_rule(&l.uplink_rule(prefix, slot)));
                    dec(&mut sh.uplink_refs, peer);
                    self.settle(sh, batch, peer);
                }
            }
            Change::PrepareAccessLink { ifindex, link } => {
                let prev = sh.state.apply_returning_previous(c);
                batch.push(Request::set_link(msg::set_mac_message(
                    ifindex,
                    link.link_layer_address,
                )));
                batch.push(Request::replace_address(
                    &l.link_local(ifindex, &link),
                    l.s.route_protocol,
                ));
                if let Previous::AccessLinkAddresses(Some(old)) = prev
                    && old.link_local != link.link_local
                {
                    batch.push(Request::delete_address(&l.link_local(ifindex, &old)));
                }
            }
            Change::RemoveAccessLink { ifindex } => {
                if let Previous::AccessLinkAddresses(Some(old)) =
                    sh.state.apply_returning_previous(c)
                {
                    batch.push(Request::delete_address(&l.link_local(ifindex, &old)));
                }
            }
            Change::SetDownlink4 { prefix, peer } => {
                self.enable_ipv4_forwarding(sh)?;
                let via = self.via(sh, batch, peer).await?;
                let prev = sh.state.apply_returning_previous(c);
                batch.push(Request::replace_route(&l.downlink(prefix, via)));
                if prev != Previous::Route(Some(PrefixRoute::Tunnel { peer })) {
                    inc(&mut sh.downlink_refs, peer);
                }
                self.after_route_replaced(sh, batch, prefix.trunc().into(), prev, Some(peer));
            }
            Change::RemoveDownlink4 { prefix } => {
                if let Previous::Route(Some(PrefixRoute::Tunnel { peer })) =
                    sh.state.apply_returning_previous(c)
                {
                    if let Some(via) = l.tunnel_via(peer, &sh.slots, &sh.tunnels) {
                        batch.push(Request::delete_route(&l.downlink(prefix, via)));
                    }
                    dec(&mut sh.downlink_refs, peer);
                    self.settle(sh, batch, peer);
                }
            }
            Change::SetLinkRoute4 {
                prefix,
                ifindex,
                local_routing,
            } => {
                self.enable_ipv4_forwarding(sh)?;
                let prev = sh.state.apply_returning_previous(c);
                batch.push(Request::replace_route(&l.local_route(prefix, ifindex)));
                if local_routing {
                    batch.push(Request::replace_route(
                        &l.local_routing_route(prefix, ifindex),
                    ));
                    batch.push(Request::add_rule(&l.local_routing_rule4()));
                }
                self.after_route_replaced(sh, batch, prefix.trunc().into(), prev, None);
            }
            Change::RemoveLinkRoute4 { prefix, ifindex } => {
                if let Previous::Route(Some(PrefixRoute::Link { local_routing, .. })) =
                    sh.state.apply_returning_previous(c)
                {
                    batch.push(Request::delete_route(&l.local_route(prefix, ifindex)));
                    if local_routing {
                        batch.push(Request::delete_route(
                            &l.local_routing_route(prefix, ifindex),
                        ));
                        self.local_routing4_gone(sh, batch);
                    }
                }
            }
            Change::SetUplink4 { prefix, peer } => {
                self.enable_ipv4_forwarding(sh)?;
                let prefix = prefix.trunc();
                let old = sh.state.uplinks4.get(&prefix).copied();
                let slot = self.slot(sh, peer)?;
                if !sh.defaults4.contains(&peer) {
                    let via = self.via(sh, batch, peer).await?;
                    batch.push(Request::replace_route(&l.peer_default4(slot, via)));
                    sh.defaults4.insert(peer);
                }
                // As for IPv6: the new rule before the old one goes.
                batch.push(Request::add_rule(&l.uplink_rule(prefix, Some(slot))));
                sh.state.apply(c);
                if old != Some(peer) {
                    inc(&mut sh.uplink4_refs, peer);
                }
                if let Some(old) = old.filter(|o| *o != peer) {
                    let old_slot = sh.slots.get(&old).copied();
                    batch.push(Request::delete_rule(&l.uplink_rule(prefix, old_slot)));
                    dec(&mut sh.uplink4_refs, old);
                    self.settle(sh, batch, old);
                }
            }
            Change::RemoveUplink4 { prefix } => {
                if let Previous::Uplink(Some(peer)) = sh.state.apply_returning_previous(c) {
                    let slot = sh.slots.get(&peer).copied();
                    batch.push(Request::delete_rule(&l.uplink_rule(prefix, slot)));
                    dec(&mut sh.uplink4_refs, peer);
                    self.settle(sh, batch, peer);
                }
            }
        }
        Ok(())
    }

    /// After the main-table route of `prefix` was replaced: undo what the previous route
    /// had besides (its local-routing entry, its reference to a peer).
    fn after_route_replaced(
        &self,
        sh: &mut Shadow,
        batch: &mut Batch,
        prefix: IpNet,
        prev: Previous,
        new_peer: Option<Ipv6Addr>,
    ) {
        let l = &self.inner.layout;
        let now = match prefix {
            IpNet::V6(p) => sh.state.routes.get(&p),
            IpNet::V4(p) => sh.state.routes4.get(&p),
        };
        let still_local_routing = matches!(
            now,
            Some(PrefixRoute::Link {
                local_routing: true,
                ..
            })
        );
        match prev {
            Previous::Route(Some(PrefixRoute::Link {
                ifindex,
                local_routing: true,
            })) if !still_local_routing => {
                batch.push(Request::delete_route(
                    &l.local_routing_route(prefix, ifindex),
                ));
                match prefix {
                    IpNet::V6(_) => self.local_routing_gone(sh, batch),
                    IpNet::V4(_) => self.local_routing4_gone(sh, batch),
                }
            }
            Previous::Route(Some(PrefixRoute::Tunnel { peer })) if Some(peer) != new_peer => {
                dec(&mut sh.downlink_refs, peer);
                self.settle(sh, batch, peer);
            }
            _ => {}
        }
    }

    /// Makes the kernel hold exactly what `desired` needs among the objects this backend
    /// owns (routes and rules of its protocol in the main table and its own tables,
    /// addresses of its protocol, its ip6tnl links), and nothing else of its own.
    pub async fn reconcile(&self, desired: &DesiredState) -> Result<ReconcileReport> {
        let mut sh = self.inner.shadow.lock().await;
        self.reconcile_locked(&mut sh, normalized(desired.clone()))
            .await
    }

    async fn reconcile_locked(
        &self,
        sh: &mut Shadow,
        desired: DesiredState,
    ) -> Result<ReconcileReport> {
        let l = &self.inner.layout;
        let nl = &self.inner.nl;
        for &ifindex in desired.terminations.values() {
            self.enable_termination(ifindex).await?;
        }
        if desired.has_ipv4() {
            self.enable_ipv4_forwarding(sh)?;
        }
        let actual = match sh.opened.take() {
            Some((at, actual)) if at.elapsed() < OPENED_FRESH => actual,
            _ => self.read_actual().await?,
        };
        let mut report = ReconcileReport::default();
        let (slots, tunnels) = self.links(sh, &desired, &actual, &mut report).await?;
        let want = plan::objects(l, &desired, &slots, &tunnels)?;
        let steps = steps(l, plan::diff(l, &actual, &want));
        let all: Vec<&Step> = steps.iter().collect();
        let failures = execute_steps(nl, &all, &mut report).await;
        let ipv4_forwarding = sh.ipv4_forwarding;
        *sh = Shadow::from_state(desired, slots, tunnels);
        sh.ipv4_forwarding = ipv4_forwarding;
        tracing::info!(?report, failed = failures.len(), "datapath: reconciled");
        if failures.is_empty() {
            Ok(report)
        } else {
            Err(batch_error(failures, all.len()))
        }
    }

    /// Each peer's slot for `desired` (the slots `actual` and `sh` hold kept), and for the
    /// backends with a link per peer (ip6tnl, tun) the links made right: returns the slots and
    /// each peer's link index. The tun backend's ingress end follows `desired`'s termination.
    async fn links(
        &self,
        sh: &Shadow,
        desired: &DesiredState,
        actual: &Actual,
        report: &mut ReconcileReport,
    ) -> Result<(BTreeMap<Ipv6Addr, u32>, BTreeMap<Ipv6Addr, u32>)> {
        let l = &self.inner.layout;
        let (_, mut existing, _) = plan::read_back(l, actual);
        for (peer, slot) in &sh.slots {
            existing.entry(*peer).or_insert(*slot);
        }
        let slots = plan::assign_slots(&l.s, &existing, &l.peers_needing_slots(desired))?;
        if let Some(tun) = &self.inner.tun {
            match desired.terminations.keys().next() {
                Some(&local) => {
                    tun.check_ingress(&actual.links);
                    tun.terminate(&self.inner.nl, local, &l.s.tun_ingress_name())
                        .await?;
                }
                None => {
                    tun.stop_terminating(&self.inner.nl, &l.s.tun_ingress_name())
                        .await?
                }
            }
        }
        let tunnels = if l.kind.has_links() {
            self.reconcile_tunnels(desired, actual, &slots, report)
                .await?
        } else {
            BTreeMap::new()
        };
        Ok((slots, tunnels))
    }

    /// Takes `desired` for what the kernel holds, without looking at its routes: what a
    /// daemon restarted with its store does, since the routes it made outlive it (seg6 routes,
    /// and the routes into ip6tnl links and the userspace tunnel's pairs). Changes are
    /// planned against it from now on, and [`Kernel::reconcile_pending`] checks it against the
    /// kernel afterwards. The sysctls tunnels need are set now. The backends with a link per
    /// peer (ip6tnl, tun) make or take over their links now, since routes need them (a few,
    /// one per peer): the tun backend opens its packet sockets on the pairs it finds right,
    /// which keeps the routes into them.
    pub async fn assume(&self, desired: DesiredState) -> Result<()> {
        let l = &self.inner.layout;
        let desired = normalized(desired);
        let mut sh = self.inner.shadow.lock().await;
        for &ifindex in desired.terminations.values() {
            self.enable_termination(ifindex).await?;
        }
        if desired.has_ipv4() {
            self.enable_ipv4_forwarding(&mut sh)?;
        }
        let (slots, tunnels) = if l.kind.has_links() {
            let actual = read_actual(&self.inner.nl, l, false).await?;
            let mut report = ReconcileReport::default();
            let made = self.links(&sh, &desired, &actual, &mut report).await?;
            tracing::info!(?report, "datapath: links made; routes reconciled later");
            made
        } else {
            let slots = plan::assign_slots(&l.s, &sh.slots, &l.peers_needing_slots(&desired))?;
            (slots, std::mem::take(&mut sh.tunnels))
        };
        let ipv4_forwarding = sh.ipv4_forwarding;
        *sh = Shadow::from_state(desired, slots, tunnels);
        sh.ipv4_forwarding = ipv4_forwarding;
        sh.pending = Some(Pending::default());
        Ok(())
    }

    /// Whether an assumed state ([`Kernel::assume`]) still waits for its reconcile.
    pub async fn is_pending(&self) -> bool {
        self.inner.shadow.lock().await.pending.is_some()
    }

    /// Makes the kernel hold what the backend believes it holds after [`Kernel::assume`],
    /// beside the daemon's changes: the kernel is dumped on a connection of its own without
    /// the lock, the state is pictured under it, and the requests the difference needs are
    /// sent [`RECONCILE_STEP`] at a time, each step under the lock and in order with the
    /// changes. A route a change wrote after the picture is left to that change: a handover
    /// during the reconcile ends with its new route, never the pictured one. A change of any
    /// other kind than a downlink makes it give way to a whole [`Kernel::reconcile`] of the
    /// state then, under the lock. Nothing pending: an empty report.
    pub async fn reconcile_pending(&self) -> Result<ReconcileReport> {
        let l = &self.inner.layout;
        if !self.is_pending().await {
            return Ok(ReconcileReport::default());
        }
        let started = std::time::Instant::now();
        // The picture first, so that the objects it needs are built while the kernel is
        // dumped: a change made after the picture is left to itself (below), whether the dump
        // saw it or not.
        let (picture, slots, tunnels) = {
            let mut sh = self.inner.shadow.lock().await;
            match sh.pending.as_mut() {
                None => return Ok(ReconcileReport::default()),
                Some(p) if p.other => return self.reconcile_to_shadow(&mut sh).await,
                Some(p) => p.touched.clear(),
            }
            (sh.state.clone(), sh.slots.clone(), sh.tunnels.clone())
        };
        let layout = l.clone();
        let wanted =
            tokio::task::spawn_blocking(move || plan::objects(&layout, &picture, &slots, &tunnels));
        // The replies of a million routes must not queue before the acknowledgements the
        // daemon's changes wait for.
        let dump = self.inner.nl.reconnect()?;
        let actual = read_actual(&dump, l, true).await?;
        drop(dump);
        let dumped = started.elapsed();
        let joined = |e: tokio::task::JoinError| Error::Invalid {
            op: "reconcile",
            reason: e.to_string(),
        };
        let want = wanted.await.map_err(joined)??;
        let pictured = started.elapsed();
        let layout = l.clone();
        // The maps of a million routes are dropped there too.
        let steps = tokio::task::spawn_blocking(move || {
            steps(&layout, plan::diff(&layout, &actual, &want))
        })
        .await
        .map_err(joined)?;
        let planned = started.elapsed();
        let mut report = ReconcileReport::default();
        let mut failures = Vec::new();
        let mut total = 0;
        for chunk in steps.chunks(RECONCILE_STEP) {
            let mut sh = self.inner.shadow.lock().await;
            let todo: Vec<&Step> = match sh.pending.as_ref() {
                // A whole reconcile ran meanwhile.
                None => return Ok(report),
                Some(p) if p.other => return self.reconcile_to_shadow(&mut sh).await,
                Some(p) => chunk
                    .iter()
                    .filter(|s| s.dst.is_none_or(|d| !p.touched.contains(&d)))
                    .collect(),
            };
            total += todo.len();
            failures.extend(execute_steps(&self.inner.nl, &todo, &mut report).await);
            drop(sh);
            tokio::task::yield_now().await;
        }
        tracing::info!(
            ?report,
            failed = failures.len(),
            dump_s = dumped.as_secs_f64(),
            // The objects the picture needs, made beside the dump: what is left of it.
            objects_s = (pictured - dumped).as_secs_f64(),
            diff_s = (planned - pictured).as_secs_f64(),
            send_s = (started.elapsed() - planned).as_secs_f64(),
            "datapath: reconciled"
        );
        if !failures.is_empty() {
            return Err(batch_error(failures, total));
        }
        self.inner.shadow.lock().await.pending = None;
        Ok(report)
    }

    /// The fallback of [`Kernel::reconcile_pending`]: a whole reconcile to the state the
    /// backend believes in now.
    async fn reconcile_to_shadow(&self, sh: &mut Shadow) -> Result<ReconcileReport> {
        let state = sh.state.clone();
        self.reconcile_locked(sh, state).await
    }

    /// ip6tnl: keeps the owned links that are right, removes the others, makes the missing
    /// ones; returns the link index per peer.
    async fn reconcile_tunnels(
        &self,
        desired: &DesiredState,
        actual: &Actual,
        slots: &BTreeMap<Ipv6Addr, u32>,
        report: &mut ReconcileReport,
    ) -> Result<BTreeMap<Ipv6Addr, u32>> {
        let l = &self.inner.layout;
        let nl = &self.inner.nl;
        let local = if slots.is_empty() {
            Ipv6Addr::UNSPECIFIED
        } else {
            first_termination(desired)?
        };
        let by_slot: BTreeMap<u32, Ipv6Addr> = slots.iter().map(|(p, s)| (*s, *p)).collect();
        let mut tunnels = BTreeMap::new();
        let mut stale = Vec::new();
        let mut closed = Vec::new();
        for (slot, link) in actual.tunnels(l) {
            // A link of an earlier version (mode ip6ip6) is made again in mode any, which
            // also carries IPv4 home addresses.
            let peer = by_slot
                .get(&slot)
                // A link someone took down lost its nexthop object (and the routes into it):
                // it is made again.
                .filter(|_| link.up)
                .copied();
            let kept = match (peer, &self.inner.tun) {
                (None, _) => None,
                (Some(peer), Some(tun)) => {
                    let mtu = l.s.tunnel_mtu();
                    if link.tun != Some((local, peer)) || link.mtu != mtu {
                        None
                    } else if tun.holds(link.index)
                        && crate::tun::right_pair(link, &actual.links, (local, peer), mtu).is_some()
                    {
                        Some(link.index)
                    } else {
                        // A pair a stopped daemon left, with the routes into it: taken over
                        // as it is when it is right. Made again otherwise, also one of ours
                        // that is no longer right (its daemon's end set down, say: its
                        // carrier went, and the kernel flushed its nexthop and routes).
                        tun.close(link.index);
                        Some(tun.create(nl, &l.tunnel_link(slot, local, peer)).await?)
                    }
                }
                (Some(peer), None) => (link.ip6tnl == Some((l.s.transport_ifindex, local, peer))
                    && link.ip6tnl_proto == Some(msg::IP6TNL_PROTO_ANY)
                    && link.mtu == l.s.tunnel_mtu())
                .then_some(link.index),
            };
            match (kept, peer) {
                (Some(index), Some(peer)) => {
                    if let Some(tun) = &self.inner.tun {
                        tun.carry(index);
                    }
                    if index != link.index {
                        report.links.added += 1;
                    }
                    tunnels.insert(peer, index);
                }
                // A pair of ours stops being carried, and is deleted like any other.
                _ if self.inner.tun.as_ref().is_some_and(|t| t.close(link.index)) => {
                    closed.push(Request::delete_link(link.index));
                }
                _ => stale.push(Request::delete_link(link.index)),
            }
        }
        if let Some(tun) = &self.inner.tun {
            // Pairs the dump did not show (made or gone meanwhile) stop being carried, and go.
            let kept: BTreeSet<u32> = tunnels.values().copied().collect();
            for index in tun.indexes() {
                if !kept.contains(&index) && tun.close(index) {
                    closed.push(Request::delete_link(index));
                }
            }
        }
        report.links.removed += stale.len() + closed.len();
        stale.extend(closed);
        nl.execute_all(&stale).await?;
        // The kept links' nexthop objects, made again where missing or wrong, before the
        // routes that name them; the others' removed (the kernel removes those of a removed
        // link itself).
        if l.nexthops {
            let mut changes = Vec::new();
            for (peer, &index) in &tunnels {
                let Some(&slot) = slots.get(peer) else {
                    continue;
                };
                let id = l.nexthop_id(slot);
                let protocol = l.s.route_protocol;
                if !actual
                    .nexthops
                    .iter()
                    .any(|n| n.id == id && n.is(protocol, index))
                {
                    changes.push(NexthopChange::Set {
                        id,
                        oif: index,
                        protocol,
                    });
                }
            }
            let wanted: BTreeSet<u32> = slots.values().map(|&s| l.nexthop_id(s)).collect();
            changes.extend(
                actual
                    .nexthops
                    .iter()
                    .filter(|n| !wanted.contains(&n.id))
                    .map(|n| NexthopChange::Delete { id: n.id }),
            );
            nl.change_nexthops(changes).await?;
        }
        for (&peer, &slot) in slots {
            if let std::collections::btree_map::Entry::Vacant(e) = tunnels.entry(peer) {
                let index = self
                    .create_tunnel(slot, &l.tunnel_link(slot, local, peer))
                    .await?;
                e.insert(index);
                report.links.added += 1;
            }
        }
        Ok(tunnels)
    }
}

/// What the kernel holds that `l` owns (with `routes` false, no routes: those are the dump
/// that takes seconds at a million bindings).
async fn read_actual(nl: &Netlink, l: &Layout, routes: bool) -> Result<Actual> {
    // One after the other: a netlink socket runs one dump at a time, and a second dump
    // requested while the first is still being read is refused with EBUSY.
    let routes = if routes {
        owned_routes(nl, l).await?
    } else {
        BTreeMap::new()
    };
    let mut rules = nl.dump_rules(AddressFamily::Inet6).await?;
    rules.extend(nl.dump_rules(AddressFamily::Inet).await?);
    let addresses = nl.dump_addresses().await?;
    let links = nl.dump_links().await?;
    let nexthops = if l.nexthops {
        let mut all = nl.dump_nexthops().await?;
        // An object of another owner under one of the slots' ids would be replaced by the
        // slot's, and that owner's routes would enter a tunnel.
        if let Some(n) = all
            .iter()
            .find(|n| l.s.slot_of_table(n.id).is_some() && !l.owns_nexthop(n))
        {
            return Err(Error::Invalid {
                op: "nexthop",
                reason: format!(
                    "nexthop object {} is another owner's (protocol {}), and this backend \
                     gives each tunnel slot the id of its table ({}..={}): move the tables \
                     (datapath.table_base) or that object",
                    n.id,
                    n.protocol,
                    l.s.peer_table(0),
                    l.s.peer_table(l.s.max_peers.saturating_sub(1)),
                ),
            });
        }
        all.retain(|n| l.owns_nexthop(n));
        all
    } else {
        Vec::new()
    };
    let mut a = Actual {
        links,
        routes,
        nexthops,
        ..Actual::default()
    };
    for r in rules.iter().filter_map(KRule::parse) {
        if l.owns_rule(&r) {
            a.rules.insert(r);
        } else if r.table == LOCAL_TABLE && r.family == msg::Family::V6 {
            a.foreign_local_rules.push(r);
        }
    }
    for (addr, proto) in addresses.iter().filter_map(KAddr::parse) {
        if proto == Some(l.s.route_protocol) {
            a.addresses.insert(addr);
        }
    }
    Ok(a)
}

/// The routes of both families that `l` owns, by key.
async fn owned_routes(nl: &Netlink, l: &Layout) -> Result<BTreeMap<RouteKey, KRoute>> {
    let mut routes = Vec::new();
    for ipv6 in [true, false] {
        let layout = l.clone();
        routes.extend(
            nl.dump_routes_of(ipv6, l.s.route_protocol, move |r| layout.owns_route(r))
                .await?,
        );
    }
    // Sorting a million keys is not for the runtime's threads.
    tokio::task::spawn_blocking(move || routes.into_iter().map(|r| (r.key, r)).collect())
        .await
        .map_err(|e| Error::Invalid {
            op: "dump routes",
            reason: e.to_string(),
        })
}

fn first_termination(state: &DesiredState) -> Result<Ipv6Addr> {
    state
        .terminations
        .keys()
        .next()
        .copied()
        .ok_or_else(|| Error::Invalid {
            op: "tunnel",
            reason: "a tunnel link (ip6tnl, tun) needs a local address: prepare a termination \
                     first"
                .into(),
        })
}

/// `d` with every prefix truncated to its length (a map is rebuilt only when one is not).
fn normalized(mut d: DesiredState) -> DesiredState {
    fn trunc<P: Ord + Copy, V>(m: BTreeMap<P, V>, t: impl Fn(P) -> P + Copy) -> BTreeMap<P, V> {
        if m.keys().all(|p| t(*p) == *p) {
            m
        } else {
            m.into_iter().map(|(p, r)| (t(p), r)).collect()
        }
    }
    if d.routes.keys().any(|p| p.trunc() != p) {
        d.routes = d.routes.iter().map(|(p, r)| (p.trunc(), r)).collect();
    }
    if d.routes4.keys().any(|p| p.trunc() != p) {
        d.routes4 = d.routes4.iter().map(|(p, r)| (p.trunc(), r)).collect();
    }
    d.uplinks = trunc(d.uplinks, |p| p.trunc());
    d.uplinks4 = trunc(d.uplinks4, |p| p.trunc());
    d
}

pub(crate) fn batch_result(total: usize, mut failures: Vec<(usize, Error)>) -> Result<()> {
    if failures.is_empty() {
        return Ok(());
    }
    if total == 1 {
        return Err(failures.swap_remove(0).1);
    }
    let failed = failures
        .iter()
        .map(|(i, _)| *i)
        .collect::<BTreeSet<_>>()
        .len();
    Err(Error::Batch {
        failed,
        total,
        first: Box::new(failures.swap_remove(0).1),
    })
}

/// Whether the kernel of `nl`'s namespace can make seg6 lightweight tunnels: adds a seg6
/// route to a documentation prefix in a table nothing uses (on the loopback link) and deletes
/// it.
pub async fn probe_seg6(nl: &Netlink) -> Result<bool> {
    let lo = nl.link_index("lo").await?;
    let doc = Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0xffff, 0, 0, 0, 0x7e57);
    let probe = KRoute {
        key: RouteKey::new(
            0x7e57_0000 + std::process::id() % 0xffff,
            ipnet::Ipv6Net::from(doc),
        ),
        protocol: crate::Settings::new(0, 1500).route_protocol,
        via: Via::Seg6 { peer: doc, oif: lo },
        mtu: None,
    };
    match nl.execute_all(&[Request::replace_route(&probe)]).await {
        Ok(_) => {
            nl.execute_all(&[Request::delete_route(&probe)]).await?;
            Ok(true)
        }
        // No seg6 lightweight tunnels: the encap type is unknown.
        Err(e)
            if matches!(
                e.errno(),
                Some(libc::EOPNOTSUPP | libc::EINVAL | libc::ENOENT)
            ) =>
        {
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

/// Whether the kernel of `nl`'s namespace can make ip6tnl links: makes one (down, to a
/// documentation address) and deletes it.
pub async fn probe_ip6tnl(nl: &Netlink) -> Result<bool> {
    let name = format!("pmprobe{}", std::process::id() % 100_000_000);
    let probe = KTunnel {
        name: name.clone(),
        underlay: 0,
        local: Ipv6Addr::UNSPECIFIED,
        remote: Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0xffff, 0, 0, 0, 0x7e57),
        mtu: 1280,
    };
    let mut m = probe.new_message();
    m.header.flags = Default::default();
    m.header.change_mask = Default::default();
    match nl.execute_all(&[Request::new_link(m)]).await {
        Ok(_) => {
            let index = nl.link_index(&name).await?;
            nl.delete_link(index).await?;
            Ok(true)
        }
        // No ip6_tunnel: "Unknown device type" (EOPNOTSUPP), or no module to load.
        Err(e)
            if matches!(
                e.errno(),
                Some(libc::EOPNOTSUPP | libc::ENODEV | libc::ENOENT)
            ) =>
        {
            Ok(false)
        }
        Err(e) => Err(e),
    }
}
