//! ESP in the kernel (`ipsec.mode: kernel`, or `auto` on a kernel that has ESP): the SAs of
//! the configuration installed as XFRM states, and policies that require ESP for every
//! Mobility Header between this address and each peer. The messages are built (and
//! unit-tested octet for octet against iproute2) in `ipsec::xfrm`; this is the socket.
//!
//! Per SA pair: an outbound state (this address to the peer, `spi_out`) and an inbound one
//! (the peer to this address, `spi_in`). Per peer: an `out` policy whose template names the
//! first pair's outbound state (its `reqid`), so the kernel sends on the first pair as the
//! userspace transport does, and an `in` policy whose template takes any of our states
//! (reqid 0), so both pairs of a rollover are accepted.
//!
//! Sequence numbers: at shutdown the kernel's counters are read back and saved, and the states
//! and policies removed; at start an outbound state continues from the saved value. While
//! running, the saved value is kept a block ahead of the kernel's counter (checked at every
//! reload tick), so that after a crash and a reboot the kernel does not go back. A state that
//! survived a daemon crash (the node did not reboot) is left as it is.
//!
//! What the kernel drops (cleartext Mobility Headers, bad ICVs, replays) it counts in
//! `/proc/net/xfrm_stat`; those counters are added to `pmip_ipsec_dropped_total` at every tick.

use std::io;
use std::net::Ipv6Addr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ipsec::sad::RESERVATION_BLOCK;
use ipsec::xfrm::{self, Direction, Policy, State};
use ipsec::{Counters, SecurityAssociationSpec};
use netlink_sys::{Socket, protocols::NETLINK_XFRM};
use pmip::config::IpsecConfig;
use tracing::{error, info, warn};

use crate::esp::{IpsecMetrics, ReasonLabel, load_specs, write_durably};

/// Priority of our policies (lower wins); below the default of `ip xfrm policy` (0) would
/// shadow an operator's own, so a middle value.
const PRIORITY: u32 = 1000;

/// A netlink XFRM socket that sends one request at a time and reads its acknowledgement.
struct Nl {
    sock: Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl Nl {
    fn open() -> io::Result<Self> {
        let mut sock = Socket::new(NETLINK_XFRM)?;
        sock.bind_auto()?;
        Ok(Nl {
            sock,
            seq: 1,
            buf: Vec::with_capacity(64 * 1024),
        })
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    /// Sends `msg` and waits for its acknowledgement: `Ok(())` or the errno. A state the
    /// kernel sends back (the answer to a GETSA) is returned as well.
    fn request(&mut self, msg: &[u8]) -> io::Result<Option<Vec<u8>>> {
        let seq = u32::from_ne_bytes([msg[8], msg[9], msg[10], msg[11]]);
        self.sock.send(msg, 0)?;
        let mut answer = None;
        loop {
            self.buf.clear();
            let n = self.sock.recv(&mut self.buf, 0)?;
            let got = &self.buf[..n.min(self.buf.len())];
            if xfrm::state_counters(got).is_some() {
                answer = Some(got.to_vec());
                return Ok(answer);
            }
            if let Some(a) = xfrm::acks(got).into_iter().find(|a| a.seq == seq) {
                return if a.errno == 0 {
                    Ok(answer)
                } else {
                    Err(io::Error::from_raw_os_error(a.errno))
                };
            }
        }
    }
}

fn outbound<'a>(
    local: Ipv6Addr,
    s: &'a SecurityAssociationSpec,
    window: u32,
    oseq: u64,
) -> State<'a> {
    State {
        src: local,
        dst: s.peer,
        spi: s.spi_out,
        algorithm: s.algorithm,
        key: s.key_out.as_bytes(),
        esn: s.esn,
        replay_window: window,
        reqid: s.spi_out.0,
        oseq,
    }
}

fn inbound<'a>(local: Ipv6Addr, s: &'a SecurityAssociationSpec, window: u32) -> State<'a> {
    State {
        src: s.peer,
        dst: local,
        spi: s.spi_in,
        algorithm: s.algorithm,
        key: s.key_in.as_bytes(),
        esn: s.esn,
        replay_window: window,
        reqid: s.spi_out.0,
        oseq: 0,
    }
}

/// Whether the kernel takes the first SA: adds its outbound state and removes it again.
pub fn probe(local: Ipv6Addr, first: &SecurityAssociationSpec) -> io::Result<()> {
    let mut nl = Nl::open()?;
    let seq = nl.next_seq();
    match nl.request(&xfrm::state(
        xfrm::XFRM_MSG_NEWSA,
        seq,
        &outbound(local, first, 64, 0),
    )) {
        Ok(_) => {
            let seq = nl.next_seq();
            let _ = nl.request(&xfrm::delete_state(seq, local, first.peer, first.spi_out));
            Ok(())
        }
        // A state left by a previous run of this daemon: the kernel has ESP.
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(()),
        Err(e) => Err(e),
    }
}

struct Programmed {
    nl: Nl,
    specs: Vec<SecurityAssociationSpec>,
    peers: Vec<Ipv6Addr>,
    /// The last `/proc/net/xfrm_stat` counters added to the metrics.
    stats: Vec<(String, u64)>,
    /// The outbound values last saved.
    saved: Counters,
}

/// The states and policies this daemon installed; removed (counters saved) when dropped.
pub struct Installed {
    local: Ipv6Addr,
    config: IpsecConfig,
    counters: PathBuf,
    metrics: IpsecMetrics,
    state: Mutex<Programmed>,
    next_reload: Mutex<Instant>,
}

impl std::fmt::Debug for Installed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Installed")
            .field("local", &self.local)
            .finish_non_exhaustive()
    }
}

impl Installed {
    /// Installs `specs` (states, then policies), outbound states continuing from the
    /// counters saved in `counters`.
    pub fn install(
        local: Ipv6Addr,
        specs: &[SecurityAssociationSpec],
        config: &IpsecConfig,
        counters: &Path,
        metrics: IpsecMetrics,
    ) -> anyhow::Result<Self> {
        let saved = match std::fs::read_to_string(counters) {
            Ok(t) => {
                Counters::parse(&t).map_err(|e| anyhow::anyhow!("{}: {e}", counters.display()))?
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Counters::default(),
            Err(e) => anyhow::bail!("{}: {e}", counters.display()),
        };
        let mut p = Programmed {
            nl: Nl::open()?,
            specs: Vec::new(),
            peers: Vec::new(),
            stats: read_xfrm_stat(),
            saved,
        };
        p.program(local, specs, config.replay_window)?;
        metrics.security_associations.set(specs.len() as i64);
        let every = Duration::from_secs(u64::from(config.reload_interval_s.max(1)));
        let me = Installed {
            local,
            config: config.clone(),
            counters: counters.to_owned(),
            metrics,
            state: Mutex::new(p),
            next_reload: Mutex::new(Instant::now() + every),
        };
        me.persist(false);
        Ok(me)
    }

    /// When the periodic work is next due.
    pub fn next_reload(&self) -> Instant {
        *self.next_reload.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The periodic work: reload the SAs from their files, keep the saved counters ahead of
    /// the kernel's, add the kernel's drop counters to the metrics.
    pub fn reload(&self) {
        let every = Duration::from_secs(u64::from(self.config.reload_interval_s.max(1)));
        *self.next_reload.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now() + every;
        match load_specs(&self.config, self.local) {
            Ok(specs) => {
                let mut p = self.state.lock().unwrap_or_else(|p| p.into_inner());
                if specs != p.specs {
                    match p.program(self.local, &specs, self.config.replay_window) {
                        Ok(()) => {
                            self.metrics
                                .reloads
                                .get_or_create(&ReasonLabel { reason: "changed" })
                                .inc();
                            self.metrics.security_associations.set(specs.len() as i64);
                            info!(sas = specs.len(), "ipsec: kernel SAs reloaded");
                        }
                        Err(e) => {
                            self.metrics
                                .reloads
                                .get_or_create(&ReasonLabel { reason: "error" })
                                .inc();
                            error!(error = %e, "ipsec: reprogramming the kernel SAs failed");
                        }
                    }
                }
            }
            Err(e) => {
                self.metrics
                    .reloads
                    .get_or_create(&ReasonLabel { reason: "error" })
                    .inc();
                error!(error = %e, "ipsec: reload failed; the SAs in use stay");
            }
        }
        self.persist(false);
        self.count_kernel_drops();
    }

    /// Saves the kernel's counters: exact at shutdown, a block ahead while running.
    fn persist(&self, exact: bool) {
        let mut p = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = p.read_counters(self.local);
        let mut c = Counters::default();
        let mut due = exact;
        for (peer, spi, oseq) in now.outbound {
            let before = p
                .saved
                .outbound
                .iter()
                .find(|(a, s, _)| *a == peer && *s == spi)
                .map_or(0, |x| x.2);
            let v = if exact {
                oseq.max(before)
            } else if before.saturating_sub(oseq) < RESERVATION_BLOCK / 2 {
                due = true;
                oseq + RESERVATION_BLOCK
            } else {
                before
            };
            c.outbound.push((peer, spi, v));
        }
        c.inbound = now.inbound;
        if due {
            match write_durably(&self.counters, &c.to_text()) {
                Ok(()) => p.saved = c,
                Err(e) => error!(error = %e, "ipsec: cannot save the kernel's sequence numbers"),
            }
        }
    }

    fn count_kernel_drops(&self) {
        let now = read_xfrm_stat();
        let mut p = self.state.lock().unwrap_or_else(|p| p.into_inner());
        for (name, v) in &now {
            let before = p.stats.iter().find(|(n, _)| n == name).map_or(0, |x| x.1);
            let reason = match name.as_str() {
                "XfrmInNoStates" => "unknown-spi",
                "XfrmInStateProtoError" => "integrity",
                "XfrmInStateSeqError" => "replay",
                "XfrmInTmplMismatch" | "XfrmInNoPols" | "XfrmInPolBlock" => "cleartext",
                "XfrmInHdrError" | "XfrmInError" => "malformed",
                _ => continue,
            };
            if *v > before {
                self.metrics
                    .dropped
                    .get_or_create(&ReasonLabel { reason })
                    .inc_by(*v - before);
                warn!(reason, count = *v - before, counter = %name, "ipsec: the kernel dropped signalling");
            }
        }
        p.stats = now;
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        self.persist(true);
        let mut p = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let specs = std::mem::take(&mut p.specs);
        p.remove(self.local, &specs, &[]);
        info!("ipsec: kernel states and policies removed");
    }
}

impl Programmed {
    /// Makes the kernel hold exactly `specs`: new states added, states of SAs that are gone
    /// removed, policies updated.
    fn program(
        &mut self,
        local: Ipv6Addr,
        specs: &[SecurityAssociationSpec],
        window: u32,
    ) -> io::Result<()> {
        for s in specs {
            let oseq = self
                .saved
                .outbound
                .iter()
                .find(|(a, spi, _)| *a == s.peer && *spi == s.spi_out)
                .map_or(0, |x| x.2);
            for st in [outbound(local, s, window, oseq), inbound(local, s, window)] {
                let seq = self.nl.next_seq();
                match self
                    .nl
                    .request(&xfrm::state(xfrm::XFRM_MSG_NEWSA, seq, &st))
                {
                    Ok(_) => {}
                    // Left by a run that crashed: keep it, with its counters.
                    Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
                    Err(e) => {
                        return Err(io::Error::new(
                            e.kind(),
                            format!("state {} -> {} SPI {}: {e}", st.src, st.dst, st.spi),
                        ));
                    }
                }
            }
        }
        let mut peers: Vec<Ipv6Addr> = Vec::new();
        for s in specs {
            if peers.contains(&s.peer) {
                continue;
            }
            peers.push(s.peer);
            let out = Policy {
                src: local,
                dst: s.peer,
                dir: Direction::Out,
                priority: PRIORITY,
                reqid: s.spi_out.0,
            };
            let inp = Policy {
                src: s.peer,
                dst: local,
                dir: Direction::In,
                priority: PRIORITY,
                reqid: 0,
            };
            for p in [out, inp] {
                let seq = self.nl.next_seq();
                self.nl
                    .request(&xfrm::policy(xfrm::XFRM_MSG_UPDPOLICY, seq, &p))
                    .map_err(|e| {
                        io::Error::new(e.kind(), format!("policy {} -> {}: {e}", p.src, p.dst))
                    })?;
            }
        }
        let old = std::mem::take(&mut self.specs);
        let gone: Vec<SecurityAssociationSpec> = old
            .into_iter()
            .filter(|o| {
                !specs
                    .iter()
                    .any(|s| s.peer == o.peer && s.spi_in == o.spi_in && s.spi_out == o.spi_out)
            })
            .collect();
        self.remove(local, &gone, &peers);
        self.specs = specs.to_vec();
        self.peers = peers;
        Ok(())
    }

    /// Removes the states of `specs`, and the policies of their peers that are not in `keep`.
    fn remove(&mut self, local: Ipv6Addr, specs: &[SecurityAssociationSpec], keep: &[Ipv6Addr]) {
        for s in specs {
            for (src, dst, spi) in [(local, s.peer, s.spi_out), (s.peer, local, s.spi_in)] {
                let seq = self.nl.next_seq();
                if let Err(e) = self.nl.request(&xfrm::delete_state(seq, src, dst, spi))
                    && e.raw_os_error() != Some(libc::ESRCH)
                {
                    warn!(%src, %dst, %spi, error = %e, "ipsec: removing a kernel state");
                }
            }
        }
        let mut done: Vec<Ipv6Addr> = Vec::new();
        for s in specs {
            if keep.contains(&s.peer) || done.contains(&s.peer) {
                continue;
            }
            done.push(s.peer);
            for (src, dst, dir) in [
                (local, s.peer, Direction::Out),
                (s.peer, local, Direction::In),
            ] {
                let seq = self.nl.next_seq();
                if let Err(e) = self.nl.request(&xfrm::delete_policy(seq, src, dst, dir))
                    && e.raw_os_error() != Some(libc::ENOENT)
                {
                    warn!(%src, %dst, error = %e, "ipsec: removing a kernel policy");
                }
            }
        }
    }

    /// The kernel's counters of every state of ours.
    fn read_counters(&mut self, local: Ipv6Addr) -> Counters {
        let mut c = Counters::default();
        let specs = self.specs.clone();
        for s in &specs {
            for (src, dst, spi, out) in [
                (local, s.peer, s.spi_out, true),
                (s.peer, local, s.spi_in, false),
            ] {
                let seq = self.nl.next_seq();
                if let Ok(Some(m)) = self.nl.request(&xfrm::get_state(seq, src, dst, spi))
                    && let Some(k) = xfrm::state_counters(&m)
                {
                    if out {
                        c.outbound.push((s.peer, spi, k.oseq));
                    } else {
                        c.inbound.push((s.peer, spi, k.seq));
                    }
                }
            }
        }
        c
    }
}

/// `/proc/net/xfrm_stat`: name and value per line; empty when the file is absent.
fn read_xfrm_stat() -> Vec<(String, u64)> {
    std::fs::read_to_string("/proc/net/xfrm_stat")
        .map(|t| parse_xfrm_stat(&t))
        .unwrap_or_default()
}

fn parse_xfrm_stat(text: &str) -> Vec<(String, u64)> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            Some((f.next()?.to_owned(), f.next()?.parse().ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `auto` decides as iproute2 would: in a fresh namespace, the probe and `ip xfrm state
    /// add ... proto esp` with the same algorithm agree (on this project's CI kernel both
    /// refuse, having no ESP; on a kernel with ESP both accept). Needs root.
    #[test]
    fn the_probe_agrees_with_iproute2() {
        use ipsec::{Algorithm, Spi};
        use pmip::config::KeyMaterial;
        let name = format!("ipsec-probe-{}", std::process::id());
        let ns = datapath::netns::NetNs::create(&name).expect("a network namespace (run as root)");
        let local: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let spec = SecurityAssociationSpec {
            peer: "2001:db8::2".parse().unwrap(),
            algorithm: Algorithm::Aes128Gcm,
            spi_in: Spi(0x1000),
            spi_out: Spi(0x1001),
            key_in: KeyMaterial::new(vec![1; 20]),
            key_out: KeyMaterial::new(vec![2; 20]),
            esn: false,
        };
        let probe = ns
            .run(move || probe(local, &spec).map_err(|e| e.raw_os_error()))
            .unwrap();
        let ip = std::process::Command::new("ip")
            .args([
                "-n",
                &name,
                "xfrm",
                "state",
                "add",
                "src",
                "2001:db8::1",
                "dst",
                "2001:db8::2",
            ])
            .args(["proto", "esp", "spi", "0x1001", "mode", "transport"])
            .args([
                "aead",
                "rfc4106(gcm(aes))",
                "0x0202020202020202020202020202020202020202",
                "128",
            ])
            .output()
            .expect("iproute2");
        assert_eq!(
            probe.is_ok(),
            ip.status.success(),
            "probe {probe:?}, ip: {}",
            String::from_utf8_lossy(&ip.stderr)
        );
        if probe.is_ok() {
            // The probe removed its state again; iproute2's is the only one.
            let out = std::process::Command::new("ip")
                .args(["-n", &name, "xfrm", "state"])
                .output()
                .unwrap();
            assert_eq!(
                String::from_utf8_lossy(&out.stdout)
                    .matches("spi 0x00001001")
                    .count(),
                1
            );
        }
        drop(ns);
    }

    #[test]
    fn xfrm_stat_lines_are_read() {
        let t = "XfrmInError             \t0\nXfrmInNoStates          \t12\nbad\n";
        assert_eq!(
            parse_xfrm_stat(t),
            [
                ("XfrmInError".to_owned(), 0),
                ("XfrmInNoStates".to_owned(), 12)
            ]
        );
    }
}
