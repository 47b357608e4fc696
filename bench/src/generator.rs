//! The load generator: many MAGs, each a raw Mobility Header socket (next header 135) bound
//! to its own proxy-CoA, sending Proxy Binding Updates built with `pmip::wire` in batches
//! (`sendmmsg` / `recvmmsg`, the daemons' own [`MhSocket`]) and timing each PBU to its PBA.
//! With [`GenIpsec`], each MAG seals its PBUs into ESP and opens the PBAs as a MAG daemon
//! does (the daemons' own [`Signalling`] transport on a raw IP-protocol-50 socket).
//!
//! The load is a closed loop: each MAG keeps up to `window / mags` PBUs outstanding and sends
//! the next ones as answers come, so the rate measured is what the LMA sustains, and the
//! latency measured is what a PBU waits at that rate. A `Light` phase sends one PBU at a time
//! for the latency without queueing. PBUs unanswered after `timeout` are sent again with a
//! new sequence number and the latency counts from the first transmission.

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use cnf::esp::Signalling;
use cnf::transport::{MhSocket, RecvBatch, SignallingTransport};
use datapath::netns::NetNs;
use ipnet::Ipv6Net;
use pmip::config::IpsecConfig;
use pmip::output::Transmit;
use pmip::wire::{
    AccessTechnologyType, BindingUpdate, BuFlags, HandoffIndicator, Lifetime, MN_ID_SUBTYPE_NAI,
    Message, MobilityOption, Options, SequenceNumber, Timestamp, WallClock,
};
use serde::Serialize;

use crate::bed::REALM;
use crate::stats::{Dist, round};

/// What to generate.
#[derive(Debug, Clone)]
pub struct GenSpec {
    pub lma: Ipv6Addr,
    pub mags: Vec<Ipv6Addr>,
    pub nodes: usize,
    /// PBUs outstanding at once, over all MAGs.
    pub window: usize,
    /// Lifetime requested in every PBU.
    pub lifetime_s: u32,
    /// The other side echoes PBUs back instead of answering with PBAs.
    pub echo: bool,
    pub timeout: Duration,
    /// The process on the other side, whose CPU time each phase reports.
    pub server_pid: Option<u32>,
    /// ESP for the signalling, or PBUs in clear.
    pub ipsec: Option<GenIpsec>,
    /// Dual-stack nodes: every PBU asks for an IPv4 home address too (RFC 5844 §3.2.3.1),
    /// the refreshes carry the one assigned.
    pub ipv4: bool,
}

/// ESP for the generated MAGs, as a MAG daemon does it.
#[derive(Debug, Clone)]
pub struct GenIpsec {
    /// The `ipsec` section of each MAG, in the order of [`GenSpec::mags`].
    pub mags: Vec<IpsecConfig>,
    /// Where each MAG keeps its sequence-number reservations (a directory per MAG below it).
    pub state_dir: PathBuf,
}

/// One step of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Registers every node: new bindings, home network prefix allocated by the LMA.
    Register,
    /// Refreshes every node `rounds` times, at most `limit` PBUs in all.
    Refresh { rounds: usize, limit: Option<usize> },
    /// `count` refreshes, one at a time.
    Light { count: usize },
}

impl Phase {
    fn name(&self) -> &'static str {
        match self {
            Phase::Register => "register",
            Phase::Refresh { .. } => "refresh",
            Phase::Light { .. } => "unloaded",
        }
    }
}

/// What one phase measured.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PhaseResult {
    pub phase: String,
    /// PBUs answered.
    pub answered: u64,
    pub accepted: u64,
    pub rejected: u64,
    /// Rejections by PBA status.
    pub rejected_by_status: BTreeMap<u8, u64>,
    pub retransmitted: u64,
    /// Refused with TIMESTAMP_MISMATCH (they queued past the LMA's validity window) and
    /// sent again; counted in `retransmitted` too.
    pub timestamp_retries: u64,
    /// Given up after five transmissions.
    pub unanswered: u64,
    pub seconds: f64,
    /// Answered PBUs per second.
    pub rate: f64,
    /// From the first transmission of a PBU to its answer, in milliseconds.
    pub latency_ms: Option<Dist>,
    /// CPU time of the generator and of the process on the other side over the phase, in
    /// cores (1.0 = one core busy all the time).
    pub generator_cores: f64,
    pub server_cores: Option<f64>,
    #[serde(skip)]
    pub latencies_us: Vec<u32>,
}

impl PhaseResult {
    fn merge(&mut self, o: PhaseResult) {
        self.answered += o.answered;
        self.accepted += o.accepted;
        self.rejected += o.rejected;
        for (k, v) in o.rejected_by_status {
            *self.rejected_by_status.entry(k).or_default() += v;
        }
        self.retransmitted += o.retransmitted;
        self.timestamp_retries += o.timestamp_retries;
        self.unanswered += o.unanswered;
        self.latencies_us.extend(o.latencies_us);
    }

    fn finish(&mut self, elapsed: Duration) {
        self.seconds = round(elapsed.as_secs_f64(), 3);
        self.rate = round(self.answered as f64 / elapsed.as_secs_f64().max(1e-9), 0);
        self.latency_ms = Dist::of_micros(&self.latencies_us).map(|d| Dist {
            p50: round(d.p50, 3),
            p99: round(d.p99, 3),
            max: round(d.max, 3),
            mean: round(d.mean, 3),
            ..d
        });
    }
}

/// Runs `phases` in order from inside `ns` (on a thread of its own, with its own runtime);
/// blocks until they are done.
pub fn run(ns: &NetNs, spec: GenSpec, phases: &[Phase]) -> anyhow::Result<Vec<PhaseResult>> {
    let phases = phases.to_vec();
    ns.run(move || -> anyhow::Result<Vec<PhaseResult>> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(run_in(spec, phases))
    })?
}

async fn run_in(spec: GenSpec, phases: Vec<Phase>) -> anyhow::Result<Vec<PhaseResult>> {
    let k = spec.mags.len().max(1);
    let mut mags = Vec::with_capacity(k);
    for (i, a) in spec.mags.iter().enumerate() {
        let sock = match &spec.ipsec {
            None => {
                Signalling::Clear(MhSocket::bind(*a).with_context(|| format!("MAG socket on {a}"))?)
            }
            Some(g) => Signalling::open(
                *a,
                g.mags.get(i).context("an ipsec section per MAG")?,
                &g.state_dir.join(format!("mag{i}")),
                &mut prometheus_client::registry::Registry::default(),
            )
            .with_context(|| format!("MAG {a} with ESP"))?,
        };
        let local = (spec.nodes + k - 1 - i) / k;
        mags.push(Mag {
            sock,
            addr: *a,
            index: i,
            count: k,
            hnp: vec![None; local],
            ipv4: if spec.ipv4 {
                vec![None; local]
            } else {
                Vec::new()
            },
            seq: 0,
            pending: HashMap::new(),
            retry: Vec::new(),
            spec: spec.clone(),
        });
    }
    warm_up(&spec).await?;
    let mut out = Vec::new();
    for phase in phases {
        let cpu0 = thread_cpu();
        let srv0 = spec.server_pid.and_then(process_cpu);
        let t = Instant::now();
        let mut total = PhaseResult {
            phase: phase.name().into(),
            ..PhaseResult::default()
        };
        match phase {
            Phase::Light { count } => {
                let per = count.div_ceil(k);
                for m in &mut mags {
                    let items: Vec<usize> = (0..m.hnp.len()).take(per).collect();
                    total.merge(m.run_phase(&items, phase, 1).await?);
                }
            }
            _ => {
                let window = (spec.window / k).max(1);
                let mut tasks = Vec::new();
                for mut m in mags.drain(..) {
                    let local = m.hnp.len();
                    let items: Vec<usize> = match phase {
                        Phase::Refresh { rounds, limit } => {
                            let per = limit.map_or(usize::MAX, |l| l.div_ceil(k));
                            (0..rounds).flat_map(|_| 0..local).take(per).collect()
                        }
                        _ => (0..local).collect(),
                    };
                    tasks.push(tokio::spawn(async move {
                        let r = m.run_phase(&items, phase, window).await;
                        (m, r)
                    }));
                }
                for task in tasks {
                    let (m, r) = task.await?;
                    total.merge(r?);
                    mags.push(m);
                }
                mags.sort_by_key(|m| m.index);
            }
        }
        let elapsed = t.elapsed();
        total.finish(elapsed);
        total.generator_cores = round((thread_cpu() - cpu0) / elapsed.as_secs_f64(), 2);
        total.server_cores = srv0
            .zip(spec.server_pid.and_then(process_cpu))
            .map(|(a, b)| round((b - a) / elapsed.as_secs_f64(), 2));
        out.push(total);
    }
    Ok(out)
}

/// Resolves the neighbours both ways before anything is timed: each MAG address sends an
/// ICMPv6 Echo Request to the LMA address and waits for the reply, so the LMA side has learnt
/// every MAG's link-layer address from its Neighbor Solicitation (otherwise the first burst of
/// answers to a MAG waits for, and partly overflows, neighbour discovery).
async fn warm_up(spec: &GenSpec) -> anyhow::Result<()> {
    use socket2::{Domain, Protocol, Socket, Type};
    use std::net::SocketAddrV6;
    for a in &spec.mags {
        let s = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::ICMPV6))?;
        s.bind(&SocketAddrV6::new(*a, 0, 0, 0).into())?;
        s.set_read_timeout(Some(Duration::from_millis(100)))?;
        let req = [128u8, 0, 0, 0, 0xbe, 0x0c, 0, 1];
        let mut buf = [0u8; 256];
        let mut ok = false;
        for _ in 0..20 {
            s.send_to(&req, &SocketAddrV6::new(spec.lma, 0, 0, 0).into())?;
            let t = Instant::now();
            while t.elapsed() < Duration::from_millis(100) {
                match std::io::Read::read(&mut &s, &mut buf) {
                    Ok(n) if n >= 1 && buf[0] == 129 => {
                        ok = true;
                        break;
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
            if ok {
                break;
            }
        }
        if !ok {
            anyhow::bail!("no ICMPv6 echo reply from {} to {a}", spec.lma);
        }
    }
    Ok(())
}

/// PBA status TIMESTAMP_MISMATCH (RFC 5213 §8.9).
const TIMESTAMP_MISMATCH: u8 = 156;

/// A PBU waiting for its answer.
#[derive(Debug, Clone, Copy)]
struct Pending {
    local: usize,
    first: Instant,
    last: Instant,
    tries: u8,
}

/// One generated MAG.
#[derive(Debug)]
struct Mag {
    sock: Signalling,
    addr: Ipv6Addr,
    index: usize,
    count: usize,
    /// Per node of this MAG (node = local * count + index): its prefix once registered.
    hnp: Vec<Option<Ipv6Net>>,
    /// With [`GenSpec::ipv4`], per node: its IPv4 home address (prefix length, address)
    /// once assigned.
    ipv4: Vec<Option<(u8, Ipv4Addr)>>,
    seq: u16,
    pending: HashMap<u16, Pending>,
    /// Refused for their timestamp (they waited too long at the LMA): sent again at once
    /// with a fresh one, as a MAG does (RFC 5213 §6.9.1.3 allows the retry).
    retry: Vec<Pending>,
    spec: GenSpec,
}

/// The link-layer identifier of generated node `n`.
pub fn node_mac(n: usize) -> [u8; 6] {
    [
        0x02,
        0xbe,
        (n >> 24) as u8,
        (n >> 16) as u8,
        (n >> 8) as u8,
        n as u8,
    ]
}

/// The MN-ID of generated node `n`.
pub fn node_id(n: usize) -> String {
    format!("n{n}@{REALM}")
}

fn wall_now() -> WallClock {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    WallClock::from_unix(d.as_secs(), d.subsec_nanos())
}

/// A Proxy Binding Update as a MAG sends it (RFC 5213 §6.9.1.1): MN-ID, home network prefix
/// (all zero to ask for one), handoff indicator, access technology, timestamp and the
/// node's link-layer identifier; with `ipv4`, an IPv4 Home Address Request (RFC 5844
/// §3.2.3.1: prefix length and address, 0 and 0.0.0.0 to ask for one). The checksum is left
/// to the kernel (`IPV6_CHECKSUM`).
pub fn pbu(
    node: usize,
    hnp: Option<Ipv6Net>,
    ipv4: Option<(u8, Ipv4Addr)>,
    sequence: u16,
    lifetime_s: u32,
    handoff: HandoffIndicator,
) -> anyhow::Result<Vec<u8>> {
    let id = node_id(node);
    let ll = node_mac(node);
    let mut opts = vec![
        MobilityOption::MobileNodeIdentifier {
            subtype: MN_ID_SUBTYPE_NAI,
            id: id.as_bytes(),
        },
        MobilityOption::HomeNetworkPrefix(hnp.unwrap_or_default()),
        MobilityOption::HandoffIndicator(handoff),
        MobilityOption::AccessTechnologyType(AccessTechnologyType::Ieee8023),
        MobilityOption::Timestamp(Timestamp::from_wall_clock(wall_now())),
        MobilityOption::MnLinkLayerIdentifier(&ll),
    ];
    if let Some((prefix_len, address)) = ipv4 {
        opts.push(MobilityOption::Ipv4HomeAddressRequest {
            prefix_len,
            address,
        });
    }
    let m = Message::BindingUpdate(BindingUpdate {
        sequence: SequenceNumber(sequence),
        flags: BuFlags::A | BuFlags::P,
        lifetime: Lifetime::from_secs(lifetime_s),
        options: Options::List(&opts),
    });
    let mut b = vec![0u8; m.buffer_len()];
    m.emit(&mut b).map_err(|e| anyhow::anyhow!("PBU: {e}"))?;
    Ok(b)
}

impl Mag {
    fn transmit(&mut self, local: usize, phase: Phase) -> anyhow::Result<(u16, Transmit)> {
        // Sequence numbers skip those still outstanding (a window never comes near 2^16).
        loop {
            self.seq = self.seq.wrapping_add(1);
            if !self.pending.contains_key(&self.seq) {
                break;
            }
        }
        let node = local * self.count + self.index;
        let (hnp, hi) = match phase {
            Phase::Register => (None, HandoffIndicator::AttachmentOverNewInterface),
            _ => (self.hnp[local], HandoffIndicator::HandoffStateNotChanged),
        };
        let ipv4 = self.spec.ipv4.then(|| match phase {
            Phase::Register => (0, Ipv4Addr::UNSPECIFIED),
            _ => (self.ipv4.get(local).copied().flatten()).unwrap_or((0, Ipv4Addr::UNSPECIFIED)),
        });
        let mut payload = pbu(node, hnp, ipv4, self.seq, self.spec.lifetime_s, hi)?;
        if self.spec.ipsec.is_some() {
            // Sealed here, so the kernel cannot fill in the checksum (RFC 6275 §6.1.1) as it
            // does on the plain Mobility Header socket: the daemons compute it likewise.
            let c = pmip::wire::mh_checksum(&self.addr, &self.spec.lma, &payload);
            payload[4..6].copy_from_slice(&c.to_be_bytes());
        }
        Ok((
            self.seq,
            Transmit {
                src: self.addr,
                dst: self.spec.lma,
                payload,
            },
        ))
    }

    /// Sends `p` again with a new sequence number; its latency still counts from the first.
    fn resend(
        &mut self,
        p: Pending,
        phase: Phase,
        now: Instant,
        out: &mut Vec<Transmit>,
        r: &mut PhaseResult,
    ) -> anyhow::Result<()> {
        let (seq, t) = self.transmit(p.local, phase)?;
        out.push(t);
        r.retransmitted += 1;
        self.pending.insert(
            seq,
            Pending {
                last: now,
                tries: p.tries + 1,
                ..p
            },
        );
        Ok(())
    }

    async fn run_phase(
        &mut self,
        items: &[usize],
        phase: Phase,
        window: usize,
    ) -> anyhow::Result<PhaseResult> {
        let mut r = PhaseResult::default();
        r.latencies_us.reserve(items.len());
        let mut batch = RecvBatch::default();
        let mut out: Vec<Transmit> = Vec::with_capacity(window.min(1024));
        let mut next = 0;
        let mut last_check = Instant::now();
        let mut last_progress = Instant::now();
        let pending_before = self.pending.len();
        while next < items.len() || self.pending.len() > pending_before || !self.retry.is_empty() {
            out.clear();
            let now = Instant::now();
            for p in std::mem::take(&mut self.retry) {
                self.resend(p, phase, now, &mut out, &mut r)?;
            }
            while self.pending.len() < window && next < items.len() {
                let local = items[next];
                next += 1;
                if phase != Phase::Register && self.hnp[local].is_none() {
                    continue;
                }
                let (seq, t) = self.transmit(local, phase)?;
                out.push(t);
                self.pending.insert(
                    seq,
                    Pending {
                        local,
                        first: now,
                        last: now,
                        tries: 1,
                    },
                );
            }
            if now.duration_since(last_check) > Duration::from_millis(20) {
                last_check = now;
                let expired: Vec<u16> = self
                    .pending
                    .iter()
                    .filter(|(_, p)| now.duration_since(p.last) > self.spec.timeout)
                    .map(|(s, _)| *s)
                    .collect();
                for s in expired {
                    let Some(p) = self.pending.remove(&s) else {
                        continue;
                    };
                    if p.tries >= 5 {
                        r.unanswered += 1;
                        continue;
                    }
                    self.resend(p, phase, now, &mut out, &mut r)?;
                }
            }
            if !out.is_empty() {
                self.sock.send_batch(&out).await?;
            }
            match tokio::time::timeout(Duration::from_millis(20), self.sock.recv_batch(&mut batch))
                .await
            {
                Ok(Ok(_)) => {
                    last_progress = Instant::now();
                    for (_, bytes) in batch.iter() {
                        self.answer(bytes, phase, &mut r);
                    }
                }
                Ok(Err(e)) => return Err(e.into()),
                Err(_) => {
                    if last_progress.elapsed() > self.spec.timeout * 8 {
                        r.unanswered += self.pending.len() as u64;
                        self.pending.clear();
                        break;
                    }
                }
            }
        }
        Ok(r)
    }

    fn answer(&mut self, bytes: &[u8], phase: Phase, r: &mut PhaseResult) {
        let Ok(msg) = Message::parse_bytes(bytes) else {
            return;
        };
        let (seq, status, hnp, ipv4) = match msg {
            Message::BindingAck(ba) => (
                ba.sequence.0,
                ba.status.value(),
                ba.options.iter().find_map(|o| match o {
                    MobilityOption::HomeNetworkPrefix(p) if p.prefix_len() > 0 => Some(p),
                    _ => None,
                }),
                // RFC 5844 §3.3.2: status below 128 is an assigned address.
                ba.options.iter().find_map(|o| match o {
                    MobilityOption::Ipv4HomeAddressReply {
                        status,
                        prefix_len,
                        address,
                    } if status.value() < 128 => Some((prefix_len, address)),
                    _ => None,
                }),
            ),
            Message::BindingUpdate(bu) if self.spec.echo => (bu.sequence.0, 0, None, None),
            _ => return,
        };
        let Some(p) = self.pending.remove(&seq) else {
            return;
        };
        if status == TIMESTAMP_MISMATCH && p.tries < 5 {
            r.timestamp_retries += 1;
            self.retry.push(p);
            return;
        }
        r.answered += 1;
        r.latencies_us
            .push(p.first.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
        // RFC 5213 §8.9: status values below 128 accept the update.
        if status < 128 {
            r.accepted += 1;
            if phase == Phase::Register {
                self.hnp[p.local] = hnp.or(self.hnp[p.local]).or(self.spec.echo.then(|| {
                    // The echo allocates nothing; refreshes still need a prefix to carry.
                    Ipv6Net::new(Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0, 0, 0, 0, 0), 64)
                        .unwrap_or_default()
                }));
                if let (Some(a), Some(slot)) = (ipv4, self.ipv4.get_mut(p.local)) {
                    *slot = Some(a);
                }
            }
        } else {
            r.rejected += 1;
            *r.rejected_by_status.entry(status).or_default() += 1;
        }
    }
}

/// CPU seconds of the calling thread.
fn thread_cpu() -> f64 {
    std::fs::read_to_string("/proc/thread-self/stat")
        .ok()
        .and_then(|s| cpu_of_stat(&s))
        .unwrap_or(0.0)
}

/// CPU seconds of a process.
pub fn process_cpu(pid: u32) -> Option<f64> {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| cpu_of_stat(&s))
}

/// utime + stime of a `/proc/.../stat` line, in seconds (clock ticks of 1/100 s).
fn cpu_of_stat(s: &str) -> Option<f64> {
    let rest = s.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the command: state is field 3, utime 14 and stime 15 (proc(5)).
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pmip::wire::ProxyBindingUpdate;

    #[test]
    fn a_generated_pbu_is_a_valid_proxy_binding_update() {
        let b = pbu(
            42,
            None,
            None,
            7,
            3600,
            HandoffIndicator::AttachmentOverNewInterface,
        )
        .unwrap();
        let m = Message::parse_bytes(&b).unwrap();
        let Message::BindingUpdate(bu) = m else {
            panic!("{m:?}")
        };
        assert_eq!(bu.sequence.0, 7);
        let p = ProxyBindingUpdate::new(&bu).unwrap();
        p.check_mandatory().unwrap();
        assert_eq!(
            p.opts.mn_id,
            Some((MN_ID_SUBTYPE_NAI, node_id(42).as_bytes()))
        );
        assert_eq!(p.opts.ipv4_home_address_request, None);
        // A dual-stack node's refresh carries the IPv4 home address it was assigned.
        let home = (8, Ipv4Addr::new(10, 0, 0, 7));
        let b = pbu(
            42,
            None,
            Some(home),
            8,
            3600,
            HandoffIndicator::HandoffStateNotChanged,
        )
        .unwrap();
        let Message::BindingUpdate(bu) = Message::parse_bytes(&b).unwrap() else {
            panic!("a PBU")
        };
        let p = ProxyBindingUpdate::new(&bu).unwrap();
        p.check_mandatory().unwrap();
        assert_eq!(p.opts.ipv4_home_address_request, Some(home));
    }

    #[test]
    fn cpu_fields_of_a_stat_line() {
        let line = "12 (a b) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0";
        assert_eq!(cpu_of_stat(line), Some(3.0));
    }
}
