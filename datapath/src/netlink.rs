//! A route netlink connection, bound to one network namespace, that sends many requests in
//! few system calls and names the object of every failure.

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::io;
use std::net::Ipv6Addr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use ipnet::Ipv6Net;
use netlink_packet_route::address::AddressMessage;
use netlink_packet_route::link::{
    AfSpecInet, AfSpecUnspec, BridgeStpState, InfoBridge, InfoData, InfoKind, InfoVeth,
    LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteMessage};
use netlink_packet_route::rule::RuleMessage;
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use rtnetlink::packet_core::{
    NLM_F_CREATE, NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_EXCL, NLM_F_REPLACE, NLM_F_REQUEST,
    NetlinkMessage, NetlinkPayload,
};
use rtnetlink::proto::{Connection, ConnectionHandle};
use rtnetlink::sys::AsyncSocket;

use crate::dump;
use crate::error::{Error, Result};
use crate::msg::{self, KAddr, KLink, KRoute, RouteKey, Via};
use crate::netns::{self, NetNs};
use crate::nexthop::{self, KNexthop, NexthopChange};
use crate::sysctl::{Ensured, Sysctl};
use crate::writer;

/// Receive buffer asked for (as root, beyond `rmem_max`): the answers of many datagrams.
const RCVBUF: usize = 4 << 20;
/// A kernel that has not answered by then is not going to.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);
/// Repeats of requests refused with ENOMEM.
const RETRIES: u32 = 5;
/// Attempts at a dump that the kernel reports as interrupted by a concurrent change.
const DUMP_ATTEMPTS: usize = 5;

/// What a request may find that still counts as success, for idempotent adds and deletes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tolerate {
    Nothing,
    /// EEXIST: the object is already there (rules and addresses have no replace).
    Exists,
    /// ENOENT, ESRCH, ENODEV, EADDRNOTAVAIL: the object to delete is not there.
    Absent,
}

/// One request: a message, its create/replace flags and what failure is fine.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    pub msg: RouteNetlinkMessage,
    pub flags: u16,
    pub tolerate: Tolerate,
}

impl Request {
    pub(crate) fn replace_route(r: &KRoute) -> Self {
        Self {
            msg: RouteNetlinkMessage::NewRoute(r.new_message()),
            flags: NLM_F_CREATE | NLM_F_REPLACE,
            tolerate: Tolerate::Nothing,
        }
    }
    pub(crate) fn delete_route(r: &KRoute) -> Self {
        Self {
            msg: RouteNetlinkMessage::DelRoute(r.del_message()),
            flags: 0,
            tolerate: Tolerate::Absent,
        }
    }
    /// Rules have no replace: without NLM_F_EXCL the kernel would add a duplicate.
    pub(crate) fn add_rule(r: &msg::KRule) -> Self {
        Self {
            msg: RouteNetlinkMessage::NewRule(r.message()),
            flags: NLM_F_CREATE | NLM_F_EXCL,
            tolerate: Tolerate::Exists,
        }
    }
    pub(crate) fn delete_rule(r: &msg::KRule) -> Self {
        Self {
            msg: RouteNetlinkMessage::DelRule(r.message()),
            flags: 0,
            tolerate: Tolerate::Absent,
        }
    }
    pub(crate) fn replace_address(a: &KAddr, protocol: u8) -> Self {
        Self {
            msg: RouteNetlinkMessage::NewAddress(a.new_message(Some(protocol))),
            flags: NLM_F_CREATE | NLM_F_REPLACE,
            tolerate: Tolerate::Nothing,
        }
    }
    pub(crate) fn delete_address(a: &KAddr) -> Self {
        Self {
            msg: RouteNetlinkMessage::DelAddress(a.del_message()),
            flags: 0,
            tolerate: Tolerate::Absent,
        }
    }
    pub(crate) fn set_link(m: LinkMessage) -> Self {
        Self {
            msg: RouteNetlinkMessage::SetLink(m),
            flags: 0,
            tolerate: Tolerate::Nothing,
        }
    }
    pub(crate) fn new_link(m: LinkMessage) -> Self {
        Self {
            msg: RouteNetlinkMessage::NewLink(m),
            flags: NLM_F_CREATE | NLM_F_EXCL,
            tolerate: Tolerate::Nothing,
        }
    }
    pub(crate) fn delete_link(index: u32) -> Self {
        Self {
            msg: RouteNetlinkMessage::DelLink(msg::del_link_message(index)),
            flags: 0,
            tolerate: Tolerate::Absent,
        }
    }
}

/// RTM_NEWLINK body of a veth pair: `name` (at ifindex `index`, 0 for the kernel's choice)
/// and its other end `peer_name`, in the namespace of `peer_netns` when given.
fn veth_message(
    index: u32,
    name: &str,
    peer_name: &str,
    peer_netns: Option<std::os::fd::RawFd>,
) -> LinkMessage {
    let mut peer = LinkMessage::default();
    peer.attributes
        .push(LinkAttribute::IfName(peer_name.to_owned()));
    if let Some(fd) = peer_netns {
        peer.attributes.push(LinkAttribute::NetNsFd(fd));
    }
    let mut m = LinkMessage::default();
    m.header.index = index;
    m.attributes.push(LinkAttribute::IfName(name.to_owned()));
    m.attributes.push(LinkAttribute::LinkInfo(vec![
        LinkInfo::Kind(InfoKind::Veth),
        LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))),
    ]));
    m
}

/// How a request ended when it did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Done,
    /// Tolerated EEXIST / ENOENT: nothing changed.
    Unchanged,
}

/// A route netlink connection in one network namespace.
///
/// Cloning is cheap and shares the socket. Requests from clones are answered independently.
/// The connection runs as a task on the tokio runtime it was made on and ends when the last
/// clone is dropped.
#[derive(Clone)]
pub struct Netlink {
    handle: ConnectionHandle<RouteNetlinkMessage>,
    /// The changes go on a socket of their own ([`crate::writer`]), one datagram at a time;
    /// the callers waiting for it wait without holding a thread of the runtime.
    writer: Arc<tokio::sync::Mutex<Writer>>,
    netns: Option<NetNs>,
}

/// The socket changes are written on, its next sequence number and its buffers.
struct Writer {
    socket: rtnetlink::sys::Socket,
    seq: u32,
    out: Vec<u8>,
    answers: Vec<u8>,
}

impl Writer {
    /// On the calling thread, in its network namespace.
    fn open() -> Result<Self> {
        let (socket, _) = raw_socket(false)?;
        let socket_error = |source: io::Error| Error::Socket {
            netns: None,
            source,
        };
        // A datagram's answers must fit; as root the buffer may exceed rmem_max.
        if nix::sys::socket::setsockopt(&socket, nix::sys::socket::sockopt::RcvBufForce, &RCVBUF)
            .is_err()
        {
            nix::sys::socket::setsockopt(&socket, nix::sys::socket::sockopt::RcvBuf, &RCVBUF)
                .map_err(|e| socket_error(e.into()))?;
        }
        // Error answers without a copy of the request: less to read back.
        socket.set_cap_ack(true).map_err(socket_error)?;
        Ok(Self {
            socket,
            seq: 0,
            out: Vec::new(),
            answers: vec![0; 64 << 10],
        })
    }

    /// Reads and drops whatever an earlier exchange left unread (it ended before its last
    /// answer): a receive queue that overflowed drops every answer until it is empty, and
    /// the next exchange would wait for answers that never come.
    fn drain(&mut self) {
        loop {
            let mut into: &mut [u8] = &mut self.answers[..];
            match self.socket.recv(&mut into, libc::MSG_DONTWAIT) {
                Ok(_) => {}
                // The overflow is reported once, then reading goes on.
                Err(e)
                    if e.kind() == io::ErrorKind::Interrupted
                        || e.raw_os_error() == Some(libc::ENOBUFS) => {}
                Err(_) => return,
            }
        }
    }

    /// Sends one datagram of `chunk` and reads what the kernel answered: one result per
    /// request, in order.
    fn exchange(&mut self, chunk: &[Request]) -> Vec<Result<Outcome>> {
        self.drain();
        let first = self.seq.wrapping_add(1);
        self.seq = self.seq.wrapping_add(chunk.len() as u32);
        writer::serialize(chunk, first, &mut self.out);
        let answered = self.socket.send(&self.out, 0).and_then(|_| {
            let (socket, buf) = (&self.socket, &mut self.answers);
            writer::answers(chunk.len(), first, || {
                loop {
                    let mut into: &mut [u8] = &mut buf[..];
                    match socket.recv(&mut into, 0) {
                        Ok(n) => return Ok(buf[..n.min(buf.len())].to_vec()),
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(e),
                    }
                }
            })
        });
        match answered {
            Ok(errors) => {
                let mut out: Vec<Result<Outcome>> =
                    chunk.iter().map(|_| Ok(Outcome::Done)).collect();
                for (at, code) in errors {
                    if let (Some(slot), Some(r)) = (out.get_mut(at), chunk.get(at)) {
                        *slot = writer::outcome(r, code);
                    }
                }
                out
            }
            Err(e) => chunk
                .iter()
                .map(|r| {
                    let (op, object) = msg::describe(&r.msg);
                    Err(Error::Protocol {
                        op,
                        object,
                        detail: format!("no answer from the kernel: {e}"),
                    })
                })
                .collect(),
        }
    }
}

impl fmt::Debug for Netlink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Netlink")
            .field("netns", &self.netns.as_ref().map(NetNs::name))
            .finish_non_exhaustive()
    }
}

type Parts = (
    Connection<RouteNetlinkMessage>,
    ConnectionHandle<RouteNetlinkMessage>,
);

fn open_socket() -> io::Result<Parts> {
    let (mut conn, handle, _unsolicited) =
        rtnetlink::proto::new_connection(rtnetlink::sys::protocols::NETLINK_ROUTE)?;
    // Successful requests are answered with an acknowledgement; the answers of a datagram
    // are matched to its requests by their order, so every one is needed.
    conn.set_forward_ack(true);
    let socket = conn.socket_mut().socket_mut();
    // A window of acknowledgements must fit; as root the buffer may exceed rmem_max.
    if nix::sys::socket::setsockopt(&*socket, nix::sys::socket::sockopt::RcvBufForce, &RCVBUF)
        .is_err()
    {
        socket.set_rx_buf_sz(RCVBUF)?;
    }
    // Error answers without a copy of the request: less to read back.
    socket.set_cap_ack(true)?;
    Ok((conn, handle))
}

impl Netlink {
    /// Connects in the current network namespace. Needs a tokio runtime.
    pub fn connect() -> Result<Self> {
        let rt = netns::runtime(None)?;
        let (conn, handle) = {
            let _entered = rt.enter();
            open_socket().map_err(|source| Error::Socket {
                netns: None,
                source,
            })?
        };
        rt.spawn(conn);
        Ok(Self {
            handle,
            writer: Arc::new(tokio::sync::Mutex::new(Writer::open()?)),
            netns: None,
        })
    }

    /// Connects inside `netns` (the socket is made on a thread that entered it). Needs a
    /// tokio runtime.
    pub fn connect_in(netns: &NetNs) -> Result<Self> {
        let rt = netns::runtime(Some(netns))?;
        let enter = rt.clone();
        let in_netns = |source| Error::Socket {
            netns: Some(netns.name().to_owned()),
            source,
        };
        let (conn, handle) = netns
            .run(move || {
                let _entered = enter.enter();
                open_socket()
            })?
            .map_err(in_netns)?;
        let writer = netns.run(Writer::open)?.map_err(|e| match e {
            Error::Socket { source, .. } => in_netns(source),
            other => other,
        })?;
        rt.spawn(conn);
        Ok(Self {
            handle,
            writer: Arc::new(tokio::sync::Mutex::new(writer)),
            netns: Some(netns.clone()),
        })
    }

    /// Another connection in the same namespace, with a socket of its own.
    pub fn reconnect(&self) -> Result<Self> {
        match &self.netns {
            Some(ns) => Self::connect_in(ns),
            None => Self::connect(),
        }
    }

    /// The namespace this connection lives in; `None` for the process's own.
    pub fn netns(&self) -> Option<&NetNs> {
        self.netns.as_ref()
    }

    /// Sends every request, in order, [`writer::CHUNK`] per datagram on the writer socket,
    /// and returns one result per request, in the same order.
    async fn send(&self, requests: &[Request]) -> Vec<Result<Outcome>> {
        let mut results = Vec::with_capacity(requests.len());
        for chunk in requests.chunks(writer::CHUNK) {
            // The kernel handles a datagram inside the send, and its answers are queued
            // when the send returns: nothing here waits on anything else.
            results.extend(self.writer.lock().await.exchange(chunk));
            tokio::task::yield_now().await;
        }
        results
    }

    /// [`Netlink::send`], then the requests the kernel refused for lack of memory are sent
    /// again after a pause, a few times. seg6 routes take per-CPU memory that the kernel
    /// allocates without waiting and refills in the background: a burst of thousands of
    /// routes sees a few transient ENOMEM. Only requests whose object no later request of
    /// the batch touches are repeated (all are idempotent), so the outcome stays the one of
    /// the batch in order.
    pub(crate) async fn execute(&self, requests: &[Request]) -> Vec<Result<Outcome>> {
        let mut results = self.send(requests).await;
        let is_enomem =
            |r: &Result<Outcome>| matches!(r, Err(e) if e.errno() == Some(libc::ENOMEM));
        // The last request of the batch touching each object, computed once: asked per
        // failure of a batch of thousands, that question was quadratic.
        let mut last: Option<HashMap<String, usize>> = None;
        for attempt in 1..=RETRIES {
            if !results.iter().any(is_enomem) {
                break;
            }
            let last = last.get_or_insert_with(|| {
                requests
                    .iter()
                    .enumerate()
                    .map(|(i, r)| (msg::object_key(&r.msg), i))
                    .collect()
            });
            let retry: Vec<usize> = results
                .iter()
                .enumerate()
                .filter(|(_, r)| is_enomem(r))
                .map(|(i, _)| i)
                .filter(|&i| {
                    requests
                        .get(i)
                        .is_some_and(|r| last.get(&msg::object_key(&r.msg)) == Some(&i))
                })
                .collect();
            if retry.is_empty() {
                break;
            }
            tracing::debug!(
                count = retry.len(),
                attempt,
                "netlink: retrying after ENOMEM"
            );
            tokio::time::sleep(Duration::from_millis(10 << attempt)).await;
            let again: Vec<Request> = retry
                .iter()
                .filter_map(|&i| requests.get(i).cloned())
                .collect();
            for (i, r) in retry.into_iter().zip(self.send(&again).await) {
                if let Some(slot) = results.get_mut(i) {
                    *slot = r;
                }
            }
        }
        results
    }

    /// Sends the requests and fails with the first failure (all are sent regardless).
    pub(crate) async fn execute_all(&self, requests: &[Request]) -> Result<Vec<Outcome>> {
        self.execute(requests).await.into_iter().collect()
    }

    /// Dumps every object of one kind (`msg` is the GET request), retrying when the kernel
    /// says a concurrent change interrupted the dump.
    pub(crate) async fn dump(&self, msg: RouteNetlinkMessage) -> Result<Vec<RouteNetlinkMessage>> {
        let (op, object) = msg::describe(&msg);
        'attempt: for _ in 0..DUMP_ATTEMPTS {
            let mut req = NetlinkMessage::from(msg.clone());
            req.header.flags = NLM_F_REQUEST | NLM_F_DUMP;
            let mut answers = self
                .handle
                .request(req, rtnetlink::sys::SocketAddr::new(0, 0))
                .map_err(|e| Error::Protocol {
                    op,
                    object: object.clone(),
                    detail: format!("netlink connection closed: {e}"),
                })?;
            let mut out = Vec::new();
            loop {
                let next = tokio::time::timeout(ANSWER_TIMEOUT, answers.next()).await;
                let Ok(next) = next else {
                    return Err(Error::Timeout {
                        op,
                        object,
                        seconds: ANSWER_TIMEOUT.as_secs(),
                    });
                };
                let Some(m) = next else { break };
                if m.header.flags & NLM_F_DUMP_INTR != 0 {
                    continue 'attempt;
                }
                match m.payload {
                    NetlinkPayload::InnerMessage(inner) => out.push(inner),
                    NetlinkPayload::Error(e) if e.code.is_some() => {
                        return Err(Error::Kernel {
                            op,
                            object,
                            source: e.to_io(),
                        });
                    }
                    _ => {}
                }
            }
            return Ok(out);
        }
        Err(Error::Protocol {
            op,
            object,
            detail: format!("interrupted by concurrent changes {DUMP_ATTEMPTS} times"),
        })
    }

    /// The routes of one family (IPv6 or IPv4).
    pub(crate) async fn dump_routes(&self, family: AddressFamily) -> Result<Vec<RouteMessage>> {
        let mut get = RouteMessage::default();
        get.header.address_family = family;
        Ok(self
            .dump(RouteNetlinkMessage::GetRoute(get))
            .await?
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewRoute(r) => Some(r),
                _ => None,
            })
            .collect())
    }

    /// The routes of `protocol` of one family (IPv6 or IPv4) that `keep` accepts, read
    /// straight from the kernel's bytes ([`crate::dump`]) on a socket of its own, on a
    /// blocking thread: what a million routes need, where [`Netlink::dump_routes`] builds a
    /// `netlink-packet-route` message per route and passes each through a channel. The kernel
    /// sends only the routes of `protocol` (strict checking, Linux 4.20 and later; an older
    /// kernel sends all, and `keep` still sees only those of `protocol`).
    pub(crate) async fn dump_routes_of(
        &self,
        ipv6: bool,
        protocol: u8,
        keep: impl Fn(&KRoute) -> bool + Send + Sync + 'static,
    ) -> Result<Vec<KRoute>> {
        self.blocking("dump routes", move || {
            let keep = move |r: &KRoute| r.protocol == protocol && keep(r);
            dump_routes_blocking(ipv6, protocol, &keep)
        })
        .await
    }

    /// The nexthop objects of the namespace, every owner's, on a socket of its own.
    pub(crate) async fn dump_nexthops(&self) -> Result<Vec<KNexthop>> {
        self.blocking("dump nexthops", dump_nexthops_blocking).await
    }

    /// Makes and removes nexthop objects, in order, on a socket of its own; removing one
    /// that is not there is no error.
    pub(crate) async fn change_nexthops(&self, changes: Vec<NexthopChange>) -> Result<()> {
        if changes.is_empty() {
            return Ok(());
        }
        self.blocking("change nexthops", move || {
            change_nexthops_blocking(&changes)
        })
        .await
    }

    /// Runs `f` on a blocking thread in this connection's namespace.
    async fn blocking<T: Send + 'static>(
        &self,
        op: &'static str,
        f: impl FnOnce() -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let netns = self.netns.clone();
        tokio::task::spawn_blocking(move || match &netns {
            Some(ns) => ns.run(f)?,
            None => f(),
        })
        .await
        .map_err(|e| Error::Protocol {
            op,
            object: String::new(),
            detail: format!("the netlink thread failed: {e}"),
        })?
    }

    /// The policy rules of one family (IPv6 or IPv4).
    pub(crate) async fn dump_rules(&self, family: AddressFamily) -> Result<Vec<RuleMessage>> {
        let mut get = RuleMessage::default();
        get.header.family = family;
        Ok(self
            .dump(RouteNetlinkMessage::GetRule(get))
            .await?
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewRule(r) => Some(r),
                _ => None,
            })
            .collect())
    }

    pub(crate) async fn dump_addresses(&self) -> Result<Vec<AddressMessage>> {
        let mut get = AddressMessage::default();
        get.header.family = AddressFamily::Inet6;
        Ok(self
            .dump(RouteNetlinkMessage::GetAddress(get))
            .await?
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewAddress(a) => Some(a),
                _ => None,
            })
            .collect())
    }

    pub(crate) async fn dump_links(&self) -> Result<Vec<KLink>> {
        Ok(self
            .dump(RouteNetlinkMessage::GetLink(LinkMessage::default()))
            .await?
            .iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(KLink::parse(l)),
                _ => None,
            })
            .collect())
    }

    async fn one(&self, request: Request) -> Result<Outcome> {
        self.execute(std::slice::from_ref(&request))
            .await
            .into_iter()
            .next()
            .unwrap_or_else(|| {
                Err(Error::Protocol {
                    op: "netlink request",
                    object: String::new(),
                    detail: "no answer".into(),
                })
            })
    }

    /// The index of the link named `name`.
    pub async fn link_index(&self, name: &str) -> Result<u32> {
        self.dump_links()
            .await?
            .into_iter()
            .find(|l| l.name == name)
            .map(|l| l.index)
            .ok_or_else(|| Error::NoSuchLink(self.where_(name)))
    }

    /// The name of link `index`.
    pub async fn link_name(&self, index: u32) -> Result<String> {
        Ok(self.link(index).await?.name)
    }

    /// The MTU of link `index`.
    pub async fn link_mtu(&self, index: u32) -> Result<u32> {
        Ok(self.link(index).await?.mtu)
    }

    /// The link-layer address of link `index` (empty for links without one).
    pub async fn link_address(&self, index: u32) -> Result<Vec<u8>> {
        Ok(self.link(index).await?.mac)
    }

    async fn link(&self, index: u32) -> Result<KLink> {
        self.dump_links()
            .await?
            .into_iter()
            .find(|l| l.index == index)
            .ok_or_else(|| Error::NoSuchLink(self.where_(&format!("#{index}"))))
    }

    fn where_(&self, link: &str) -> String {
        match &self.netns {
            Some(ns) => format!("{link} in network namespace {}", ns.name()),
            None => link.to_owned(),
        }
    }

    /// The index of the link holding `address`.
    pub async fn link_with_address(&self, address: Ipv6Addr) -> Result<u32> {
        self.dump_addresses()
            .await?
            .iter()
            .filter_map(KAddr::parse)
            .find(|(a, _)| a.addr == address)
            .map(|(a, _)| a.ifindex)
            .ok_or_else(|| Error::NoSuchLink(self.where_(&format!("holding {address}"))))
    }

    /// Sets link `index` up or down.
    pub async fn set_link_up(&self, index: u32, up: bool) -> Result<()> {
        self.one(Request::set_link(msg::set_link_message(
            index,
            Some(up),
            None,
        )))
        .await
        .map(drop)
    }

    /// Sets the MTU of link `index`.
    pub async fn set_link_mtu(&self, index: u32, mtu: u32) -> Result<()> {
        self.one(Request::set_link(msg::set_link_message(
            index,
            None,
            Some(mtu),
        )))
        .await
        .map(drop)
    }

    /// Sets the kernel's end of a pair of the userspace tunnel up, without neighbour
    /// resolution (what is routed into it goes to its own MAC address, straight to the other
    /// end), with its MTU and its alias (which names the tunnel's ends, [`crate::tun`]).
    ///
    /// Its IPv4 reverse-path filter is off (`rp_filter` 0) whatever the namespace's `default`
    /// says: a decapsulated IPv4 packet enters by the ingress pair while the route to its
    /// source leads elsewhere, and the kernel drops it under either filtering mode on a link
    /// without an IPv4 address. (The kernel takes the larger of `all` and the link's value:
    /// `all` above 0 still drops them, see [`crate::Kernel`]'s warning.)
    pub(crate) async fn set_tun_link(&self, index: u32, mtu: u32, alias: &str) -> Result<()> {
        let mut m = msg::set_link_message(index, Some(true), Some(mtu));
        m.header.flags |= LinkFlags::Noarp;
        m.header.change_mask |= LinkFlags::Noarp;
        m.attributes.push(LinkAttribute::IfAlias(alias.to_owned()));
        m.attributes
            .push(LinkAttribute::AfSpecUnspec(vec![AfSpecUnspec::Inet(vec![
                AfSpecInet::Other(msg::inet_devconf(&[(msg::IPV4_DEVCONF_RP_FILTER, 0)])),
            ])]));
        self.one(Request::set_link(m)).await.map(drop)
    }

    /// Makes a veth pair of the userspace tunnel ([`crate::tun`]): `name` and its other end
    /// `other` (or a name the kernel picks when `other` is a template with `%d`), both in this
    /// namespace and down.
    pub(crate) async fn add_tun_pair(&self, name: &str, other: &str) -> Result<()> {
        self.one(Request::new_link(veth_message(0, name, other, None)))
            .await
            .map(drop)
    }

    /// Sets the link-layer (MAC) address of link `index`.
    pub async fn set_link_address(&self, index: u32, mac: [u8; 6]) -> Result<()> {
        self.one(Request::set_link(msg::set_mac_message(index, mac)))
            .await
            .map(drop)
    }

    /// Adds (or replaces) `address/prefix_len` on link `index`, without duplicate address
    /// detection so it is usable at once.
    pub async fn add_address(&self, index: u32, address: Ipv6Addr, prefix_len: u8) -> Result<()> {
        let a = KAddr {
            ifindex: index,
            addr: address,
            prefix_len,
        };
        self.one(Request {
            msg: RouteNetlinkMessage::NewAddress(a.new_message(None)),
            flags: NLM_F_CREATE | NLM_F_REPLACE,
            tolerate: Tolerate::Nothing,
        })
        .await
        .map(drop)
    }

    /// Adds (or replaces) the IPv4 address `address/prefix_len` on link `index` (as `ip -4
    /// addr replace`): for labs and tests that carry IPv4 beside the IPv6 transport.
    pub async fn add_address4(
        &self,
        index: u32,
        address: std::net::Ipv4Addr,
        prefix_len: u8,
    ) -> Result<()> {
        use netlink_packet_route::address::AddressAttribute;
        let mut m = AddressMessage::default();
        m.header.family = AddressFamily::Inet;
        m.header.prefix_len = prefix_len;
        m.header.index = index;
        let a = std::net::IpAddr::V4(address);
        m.attributes.push(AddressAttribute::Local(a));
        m.attributes.push(AddressAttribute::Address(a));
        self.one(Request {
            msg: RouteNetlinkMessage::NewAddress(m),
            flags: NLM_F_CREATE | NLM_F_REPLACE,
            tolerate: Tolerate::Nothing,
        })
        .await
        .map(drop)
    }

    /// Adds (or replaces) an IPv4 route in the main table to `dst` out of link `index`,
    /// through `gateway` when given (as `ip -4 route replace DST [via GW] dev IF`).
    pub async fn add_route4(
        &self,
        dst: ipnet::Ipv4Net,
        gateway: Option<std::net::Ipv4Addr>,
        index: u32,
    ) -> Result<()> {
        let r = route_at(dst, index, msg::DEFAULT_METRIC, RTPROT_STATIC);
        self.replace_route_through(r, gateway.map(RouteAddress::Inet))
            .await
    }

    /// Adds (or replaces) a route in the main table to `dst` out of link `index`, through
    /// `gateway` when given (as `ip -6 route replace DST [via GW] dev IF`).
    pub async fn add_route(
        &self,
        dst: Ipv6Net,
        gateway: Option<Ipv6Addr>,
        index: u32,
    ) -> Result<()> {
        let r = route_at(dst, index, msg::DEFAULT_METRIC, RTPROT_STATIC);
        self.replace_route_through(r, gateway.map(RouteAddress::Inet6))
            .await
    }

    /// Routes `dst` in the main table through `gateway` on link `index`, at `metric` and
    /// with `protocol`, replacing the route of the same metric (as `ip -6 route replace DST
    /// via GW dev IF metric M proto P`). While `gateway` is unresolved the kernel queues what
    /// it routes this way on the gateway's neighbor entry; [`Netlink::set_neighbor`]
    /// releases the queue in order.
    pub async fn replace_route_via(
        &self,
        dst: Ipv6Net,
        gateway: Ipv6Addr,
        index: u32,
        metric: u32,
        protocol: u8,
    ) -> Result<()> {
        let r = route_at(dst, index, metric, protocol);
        self.replace_route_through(r, Some(RouteAddress::Inet6(gateway)))
            .await
    }

    /// Routes `dst` in the main table out of link `index`, at `metric` and with `protocol`,
    /// replacing the route of the same metric (as `ip -6 route replace DST dev IF metric M
    /// proto P`).
    pub async fn replace_route_at(
        &self,
        dst: Ipv6Net,
        index: u32,
        metric: u32,
        protocol: u8,
    ) -> Result<()> {
        self.replace_route_through(route_at(dst, index, metric, protocol), None)
            .await
    }

    /// Adds `r`, through `gateway` when given, replacing the route with the same key.
    async fn replace_route_through(&self, r: KRoute, gateway: Option<RouteAddress>) -> Result<()> {
        let mut m = r.new_message();
        if let Some(gw) = gateway {
            m.attributes.push(RouteAttribute::Gateway(gw));
        }
        self.one(Request {
            msg: RouteNetlinkMessage::NewRoute(m),
            flags: NLM_F_CREATE | NLM_F_REPLACE,
            tolerate: Tolerate::Nothing,
        })
        .await
        .map(drop)
    }

    /// Deletes the main-table route of `dst` at `metric` (a route already gone is fine).
    pub async fn delete_route_at(
        &self,
        dst: Ipv6Net,
        index: u32,
        metric: u32,
        protocol: u8,
    ) -> Result<()> {
        self.one(Request::delete_route(&route_at(
            dst, index, metric, protocol,
        )))
        .await
        .map(drop)
    }

    /// A permanent neighbor entry: `address` on link `index` is at `lladdr` (as `ip -6 neigh
    /// replace ADDR lladdr MAC dev IF nud permanent`). What the kernel queued for the address
    /// while it was unresolved leaves now, in arrival order.
    pub async fn set_neighbor(&self, index: u32, address: Ipv6Addr, lladdr: [u8; 6]) -> Result<()> {
        let mut m = neighbor_message(index, address);
        m.header.state = NeighbourState::Permanent;
        m.attributes
            .push(NeighbourAttribute::LinkLayerAddress(lladdr.to_vec()));
        self.one(Request {
            msg: RouteNetlinkMessage::NewNeighbour(m),
            flags: NLM_F_CREATE | NLM_F_REPLACE,
            tolerate: Tolerate::Nothing,
        })
        .await
        .map(drop)
    }

    /// Deletes the neighbor entry of `address` on link `index` (none is fine).
    pub async fn delete_neighbor(&self, index: u32, address: Ipv6Addr) -> Result<()> {
        self.one(Request {
            msg: RouteNetlinkMessage::DelNeighbour(neighbor_message(index, address)),
            flags: 0,
            tolerate: Tolerate::Absent,
        })
        .await
        .map(drop)
    }

    /// Creates a veth pair: `name` in this connection's namespace and `peer_name` in
    /// `peer_netns` (as `ip link add NAME type veth peer name PEER netns NS`). Both ends
    /// start down.
    pub async fn add_veth(&self, name: &str, peer_name: &str, peer_netns: &NetNs) -> Result<()> {
        let ns_file = File::open(peer_netns.path()).map_err(|source| Error::NetNs {
            op: "open",
            name: peer_netns.name().to_owned(),
            source,
        })?;
        let m = veth_message(0, name, peer_name, Some(ns_file.as_raw_fd()));
        // The file must stay open until the kernel has read the descriptor.
        let done = self.one(Request::new_link(m)).await.map(drop);
        drop(ns_file);
        done
    }

    /// As [`Netlink::add_veth`], with `index` as the ifindex of this end (`ip link add NAME
    /// index N type veth peer ...`). The kernel announces a veth's carrier change at once only
    /// when its ifindex differs from its peer's (`linkwatch_urgent_event`); a pair whose ends
    /// have the same index in their two namespaces has its carrier changes announced up to a
    /// second late. An index no namespace reaches on its own avoids that.
    pub async fn add_veth_at(
        &self,
        name: &str,
        index: u32,
        peer_name: &str,
        peer_netns: &NetNs,
    ) -> Result<()> {
        let ns_file = File::open(peer_netns.path()).map_err(|source| Error::NetNs {
            op: "open",
            name: peer_netns.name().to_owned(),
            source,
        })?;
        let m = veth_message(index, name, peer_name, Some(ns_file.as_raw_fd()));
        // The file must stay open until the kernel has read the descriptor.
        let done = self.one(Request::new_link(m)).await.map(drop);
        drop(ns_file);
        done
    }

    /// Creates a bridge `name` that only forwards (as `ip link add NAME type bridge stp_state
    /// 0 mcast_snooping 0`): without spanning tree a port forwards as soon as it is up, and
    /// without multicast snooping every multicast frame reaches every port. It starts down.
    pub async fn add_bridge(&self, name: &str) -> Result<()> {
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(name.to_owned()));
        m.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Bridge),
            LinkInfo::Data(InfoData::Bridge(vec![
                InfoBridge::StpState(BridgeStpState::Disabled),
                InfoBridge::MulticastSnooping(false),
            ])),
        ]));
        self.one(Request::new_link(m)).await.map(drop)
    }

    /// Makes link `index` a port of the bridge `master` (as `ip link set IF master BR`).
    pub async fn set_link_master(&self, index: u32, master: u32) -> Result<()> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        m.attributes.push(LinkAttribute::Controller(master));
        self.one(Request::set_link(m)).await.map(drop)
    }

    /// Sets several links up or down, in this order, in one exchange with the kernel.
    pub async fn set_links_up(&self, links: &[(u32, bool)]) -> Result<()> {
        let requests: Vec<Request> = links
            .iter()
            .map(|(index, up)| Request::set_link(msg::set_link_message(*index, Some(*up), None)))
            .collect();
        self.execute_all(&requests).await.map(drop)
    }

    /// Moves link `index` into `netns`, renamed to `new_name` when given (as `ip link set
    /// dev IF netns NS name NEW`). The link arrives down; how a lab hands a node over from one
    /// MAG to another.
    pub async fn move_link(&self, index: u32, netns: &NetNs, new_name: Option<&str>) -> Result<()> {
        let ns_file = File::open(netns.path()).map_err(|source| Error::NetNs {
            op: "open",
            name: netns.name().to_owned(),
            source,
        })?;
        let mut m = LinkMessage::default();
        m.header.index = index;
        m.attributes
            .push(LinkAttribute::NetNsFd(ns_file.as_raw_fd()));
        if let Some(n) = new_name {
            m.attributes.push(LinkAttribute::IfName(n.to_owned()));
        }
        // The file must stay open until the kernel has read the descriptor.
        let done = self.one(Request::set_link(m)).await.map(drop);
        drop(ns_file);
        done
    }

    /// Deletes link `index` (and, for a veth, its peer). Absent is fine.
    pub async fn delete_link(&self, index: u32) -> Result<()> {
        self.one(Request::delete_link(index)).await.map(drop)
    }

    /// Writes `value` to `/proc/sys/KEY` in this connection's namespace, where `key` is the
    /// path below `/proc/sys` with `/` separators (e.g. `net/ipv6/conf/all/forwarding`; an
    /// interface name may contain dots, so dotted keys are not accepted).
    pub fn set_sysctl(&self, key: &str, value: &str) -> Result<()> {
        let key = Sysctl::new(key);
        let write = {
            let path = key.file();
            let value = value.to_owned();
            move || std::fs::write(&path, value.as_bytes())
        };
        let written = match &self.netns {
            // /proc/sys/net shows the network namespace of the thread that opens it.
            Some(ns) => ns.run(write)?,
            None => write(),
        };
        written.map_err(|source| self.sysctl_error(key, value, source))
    }

    /// Sets a sysctl in this connection's namespace only when it differs from `value`: one
    /// that is right already is not written, so a container that sees `/proc/sys` read-only
    /// runs as long as someone set it before. The error names the sysctl.
    pub fn ensure_sysctl(&self, key: &Sysctl, value: &str) -> Result<Ensured> {
        let ensure = {
            let key = key.clone();
            let value = value.to_owned();
            move || crate::sysctl::ensure_here(&key, &value)
        };
        let done = match &self.netns {
            Some(ns) => ns.run(ensure)?,
            None => ensure(),
        };
        done.map_err(|source| self.sysctl_error(key.clone(), value, source))
    }

    /// Reads a sysctl in this connection's namespace, without the trailing newline.
    pub fn read_sysctl(&self, key: &Sysctl) -> Result<String> {
        let read = {
            let file = key.file();
            move || std::fs::read_to_string(file)
        };
        let got = match &self.netns {
            Some(ns) => ns.run(read)?,
            None => read(),
        };
        got.map(|s| s.trim().to_owned())
            .map_err(|source| self.sysctl_error(key.clone(), "?", source))
    }

    fn sysctl_error(&self, key: Sysctl, value: &str, source: std::io::Error) -> Error {
        Error::Sysctl {
            key,
            value: value.to_owned(),
            netns: self.netns.as_ref().map(|n| n.name().to_owned()),
            source,
        }
    }
}

/// What one route dump socket reads at a time: the kernel fills at most 32 KiB of dump per
/// read.
const DUMP_READ: usize = 64 << 10;

/// A `NETLINK_ROUTE` socket of its own on the calling thread, in its network namespace,
/// with [`ANSWER_TIMEOUT`] on its reads; with `strict`, asking for strict checking of dump
/// requests (whether the kernel has it is the second value).
fn raw_socket(strict: bool) -> Result<(rtnetlink::sys::Socket, bool)> {
    let socket_error = |source: io::Error| Error::Socket {
        netns: None,
        source,
    };
    let mut socket = rtnetlink::sys::Socket::new(rtnetlink::sys::protocols::NETLINK_ROUTE)
        .map_err(socket_error)?;
    socket.bind_auto().map_err(socket_error)?;
    socket
        .connect(&rtnetlink::sys::SocketAddr::new(0, 0))
        .map_err(socket_error)?;
    // Without it the kernel ignores the filters of a dump request and sends everything.
    let filtered = strict && socket.set_netlink_get_strict_chk(true).is_ok();
    nix::sys::socket::setsockopt(
        &socket,
        nix::sys::socket::sockopt::ReceiveTimeout,
        &nix::sys::time::TimeVal::new(ANSWER_TIMEOUT.as_secs() as i64, 0),
    )
    .map_err(|e| socket_error(e.into()))?;
    Ok((socket, filtered))
}

/// What a [`dump_blocking`] is: its name and object for errors, its request, and the type of
/// the messages it reads.
struct DumpOf<'a> {
    op: &'static str,
    object: &'a dyn Fn() -> String,
    request: &'a dyn Fn(u32) -> Vec<u8>,
    kind: u16,
}

/// Reads the datagram the kernel sends next on `socket` into `buf`.
fn recv_blocking(
    socket: &rtnetlink::sys::Socket,
    buf: &mut [u8],
    op: &'static str,
    object: &dyn Fn() -> String,
) -> Result<usize> {
    loop {
        let mut into: &mut [u8] = &mut buf[..];
        return match socket.recv(&mut into, 0) {
            Ok(n) => Ok(n.min(buf.len())),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Err(Error::Timeout {
                    op,
                    object: object(),
                    seconds: ANSWER_TIMEOUT.as_secs(),
                })
            }
            Err(source) => Err(Error::Kernel {
                op,
                object: object(),
                source,
            }),
        };
    }
}

/// Runs the dump `d` on `socket`, passing each message of its kind to `take` with what it
/// has taken so far; a dump the kernel marks as interrupted by a concurrent change is run
/// again, from nothing, up to [`DUMP_ATTEMPTS`] times.
fn dump_blocking<T>(
    socket: &rtnetlink::sys::Socket,
    d: &DumpOf<'_>,
    take: &mut dyn FnMut(&dump::Message<'_>, &mut Vec<T>),
) -> Result<Vec<T>> {
    let (op, object) = (d.op, d.object);
    let mut buf = vec![0u8; DUMP_READ];
    'attempt: for attempt in 0..DUMP_ATTEMPTS {
        let seq = attempt as u32 + 1;
        socket
            .send(&(d.request)(seq), 0)
            .map_err(|source| Error::Kernel {
                op,
                object: object(),
                source,
            })?;
        let mut taken = Vec::new();
        let mut interrupted = false;
        loop {
            let n = recv_blocking(socket, &mut buf, op, object)?;
            let Some(datagram) = buf.get(..n) else { break };
            for m in dump::Messages::new(datagram) {
                let m = m.map_err(|e| Error::Protocol {
                    op,
                    object: object(),
                    detail: e.to_string(),
                })?;
                if m.seq != seq {
                    continue;
                }
                if m.flags & dump::NLM_F_DUMP_INTR != 0 {
                    interrupted = true;
                }
                match m.kind {
                    k if k == d.kind => take(&m, &mut taken),
                    dump::NLMSG_DONE => {
                        // A dump that failed half-way ends with the error in its DONE.
                        if let Some(code) = m.error_code().filter(|c| *c < 0) {
                            return Err(Error::Kernel {
                                op,
                                object: object(),
                                source: io::Error::from_raw_os_error(code.saturating_abs()),
                            });
                        }
                        if interrupted {
                            continue 'attempt;
                        }
                        return Ok(taken);
                    }
                    dump::NLMSG_ERROR => match m.error_code() {
                        Some(0) => {}
                        code => {
                            return Err(Error::Kernel {
                                op,
                                object: object(),
                                source: io::Error::from_raw_os_error(
                                    code.map_or(libc::EPROTO, |c| c.saturating_abs()),
                                ),
                            });
                        }
                    },
                    _ => {}
                }
            }
        }
    }
    Err(Error::Protocol {
        op,
        object: object(),
        detail: format!("interrupted by concurrent changes {DUMP_ATTEMPTS} times"),
    })
}

/// [`Netlink::dump_routes_of`] on the calling thread, in its network namespace.
fn dump_routes_blocking(
    ipv6: bool,
    protocol: u8,
    keep: &dyn Fn(&KRoute) -> bool,
) -> Result<Vec<KRoute>> {
    let object = || {
        String::from(if ipv6 {
            "(all IPv6 routes)"
        } else {
            "(all IPv4 routes)"
        })
    };
    let (socket, filtered) = raw_socket(true)?;
    let request =
        |seq| dump::route_dump_request(ipv6, if filtered { protocol } else { 0 }, seq).to_vec();
    let mut malformed = 0usize;
    let mut first_malformed = None;
    let routes = dump_blocking(
        &socket,
        &DumpOf {
            op: "dump routes",
            object: &object,
            request: &request,
            kind: dump::RTM_NEWROUTE,
        },
        &mut |m, routes| match dump::parse_route(m.payload, m.offset) {
            Ok(Some(r)) if keep(&r) => routes.push(r),
            Ok(_) => {}
            Err(e) => {
                malformed += 1;
                first_malformed.get_or_insert(e);
            }
        },
    )?;
    if let Some(e) = first_malformed {
        tracing::warn!(malformed, first = %e, "netlink: unreadable routes in a dump, left out");
    }
    Ok(routes)
}

/// [`Netlink::dump_nexthops`] on the calling thread, in its network namespace.
fn dump_nexthops_blocking() -> Result<Vec<KNexthop>> {
    let (socket, _) = raw_socket(false)?;
    dump_blocking(
        &socket,
        &DumpOf {
            op: "dump nexthops",
            object: &|| "(all nexthop objects)".to_owned(),
            request: &nexthop::dump_request,
            kind: nexthop::RTM_NEWNEXTHOP,
        },
        &mut |m, all| all.extend(nexthop::parse_nexthop(m.payload)),
    )
}

/// [`Netlink::change_nexthops`] on the calling thread, in its network namespace: each
/// request in turn, waiting for its acknowledgement.
fn change_nexthops_blocking(changes: &[NexthopChange]) -> Result<()> {
    let (socket, _) = raw_socket(false)?;
    let mut buf = vec![0u8; 8 << 10];
    for (i, change) in changes.iter().enumerate() {
        let seq = i as u32 + 1;
        let (op, request, id) = match *change {
            NexthopChange::Set { id, oif, protocol } => (
                "set nexthop",
                nexthop::set_request(seq, id, oif, protocol),
                id,
            ),
            NexthopChange::Delete { id } => {
                ("delete nexthop", nexthop::delete_request(seq, id), id)
            }
        };
        let object = || format!("nexthop id {id}");
        socket.send(&request, 0).map_err(|source| Error::Kernel {
            op,
            object: object(),
            source,
        })?;
        // The answer of a datagram of one request, as the writer reads its datagrams'.
        let mut failed = None;
        let answered = writer::answers(1, seq, || {
            match recv_blocking(&socket, &mut buf, op, &object) {
                Ok(n) => Ok(buf[..n].to_vec()),
                Err(e) => {
                    failed = Some(e);
                    Err(io::Error::other("read failed"))
                }
            }
        });
        if let Some(e) = failed {
            return Err(e);
        }
        let code = match answered {
            Ok(errors) => errors.first().map_or(0, |&(_, code)| code),
            Err(source) => {
                return Err(Error::Kernel {
                    op,
                    object: object(),
                    source,
                });
            }
        };
        let absent = matches!(change, NexthopChange::Delete { .. }) && code == -libc::ENOENT;
        if code != 0 && !absent {
            return Err(Error::Kernel {
                op,
                object: object(),
                source: io::Error::from_raw_os_error(code.saturating_abs()),
            });
        }
    }
    Ok(())
}

/// `RTPROT_STATIC`, the protocol `ip route add` gives a route.
const RTPROT_STATIC: u8 = 4;

fn route_at(dst: impl Into<ipnet::IpNet>, index: u32, metric: u32, protocol: u8) -> KRoute {
    let mut key = RouteKey::new(msg::MAIN_TABLE, dst);
    key.metric = metric;
    KRoute {
        key,
        protocol,
        via: Via::Dev { oif: index },
        mtu: None,
    }
}

fn neighbor_message(index: u32, address: Ipv6Addr) -> NeighbourMessage {
    let mut m = NeighbourMessage::default();
    m.header.family = AddressFamily::Inet6;
    m.header.ifindex = index;
    m.attributes
        .push(NeighbourAttribute::Destination(NeighbourAddress::Inet6(
            address,
        )));
    m
}
