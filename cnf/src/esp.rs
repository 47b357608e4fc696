//! ESP for the signalling (RFC 5213 §4, RFC 5949 §7, RFC 5846 §13), where `ipsec.mode` puts
//! it:
//! - `userspace`: [`EspTransport`]. The daemon seals every Mobility Header into ESP and sends
//!   it on a raw IP-protocol-50 socket; it opens what arrives there with the `ipsec` crate's
//!   security association database. A raw Mobility Header socket stays open only to see
//!   cleartext signalling, which is dropped and counted, never processed.
//! - `kernel`: [`crate::xfrm`]. The kernel does ESP; the daemon installs the same SAs and
//!   policies over XFRM netlink and keeps the plain Mobility Header socket.
//! - `auto`: `kernel` when the kernel accepts the first SA, else `userspace`.
//!
//! [`Signalling`] is what a daemon holds: one of those, or the plain socket with `off`.
//!
//! The protocol rules are in the `ipsec` crate; [`EspService`] is the synchronous part here
//! (counting, logging, the durable sequence numbers, reloading keys), [`EspTransport`] only
//! moves bytes.

use std::io;
use std::net::Ipv6Addr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ipsec::{Counters, ProtectError, SecurityAssociationDatabase, SecurityAssociationSpec};
use pmip::config::{IpsecConfig, IpsecMode, SecurityAssociationConfig};
use pmip::output::Transmit;
use pmip::wire::IPPROTO_MH;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tracing::{error, info, warn};

use crate::transport::{MhSocket, RawSocket, Received, RecvBatch, SignallingTransport, recvmmsg};

/// The file in the state directory that keeps sequence numbers across restarts.
pub const COUNTERS_FILE: &str = "ipsec-sequence-numbers";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DirectionLabel {
    /// `in` or `out`.
    pub direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

/// `pmip_ipsec_*`: what was protected, what was dropped and why.
#[derive(Debug, Clone, Default)]
pub struct IpsecMetrics {
    pub packets: Family<DirectionLabel, Counter>,
    pub dropped: Family<ReasonLabel, Counter>,
    pub security_associations: Gauge,
    pub reloads: Family<ReasonLabel, Counter>,
}

impl IpsecMetrics {
    pub fn new(registry: &mut Registry) -> Self {
        let m = IpsecMetrics::default();
        let r = registry.sub_registry_with_prefix("pmip_ipsec");
        r.register(
            "packets",
            "Mobility Headers protected (out) or opened and accepted (in) with ESP",
            m.packets.clone(),
        );
        r.register(
            "dropped",
            "Signalling dropped by the IPsec policy, by reason: cleartext, malformed, \
             unknown-spi, replay, integrity, padding, dummy, selector, checksum (received); \
             no-sa, not-reserved, sequence-exhausted (not sent)",
            m.dropped.clone(),
        );
        r.register(
            "security_associations",
            "SA pairs installed",
            m.security_associations.clone(),
        );
        r.register(
            "reloads",
            "Reloads of the SAs from their files, by result: changed, error",
            m.reloads.clone(),
        );
        m
    }

    fn drop(&self, reason: &'static str) {
        self.dropped.get_or_create(&ReasonLabel { reason }).inc();
    }
}

/// Every SA of `cfg`: its inline entries and those of its `security_associations_file`, with
/// key files read.
pub fn load_specs(
    cfg: &IpsecConfig,
    local: Ipv6Addr,
) -> anyhow::Result<Vec<SecurityAssociationSpec>> {
    let from_file: Vec<SecurityAssociationConfig> = match &cfg.security_associations_file {
        None => Vec::new(),
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                anyhow::anyhow!("ipsec.security_associations_file {}: {e}", path.display())
            })?;
            if text.trim().is_empty() {
                Vec::new()
            } else {
                serde_saphyr::from_str(&text).map_err(|e| {
                    anyhow::anyhow!("ipsec.security_associations_file {}: {e}", path.display())
                })?
            }
        }
    };
    Ok(ipsec::keys::load(
        cfg,
        local,
        &from_file,
        &mut |p: &Path| std::fs::read_to_string(p),
    )?)
}

/// At most one log line per drop reason and second, with the count of those not logged.
#[derive(Debug, Default)]
struct DropLog {
    last: std::collections::HashMap<&'static str, (Instant, u64)>,
}

impl DropLog {
    fn note(&mut self, reason: &'static str, now: Instant, what: impl FnOnce() -> String) {
        let e = self
            .last
            .entry(reason)
            .or_insert((now - Duration::from_secs(2), 0));
        if now.duration_since(e.0) >= Duration::from_secs(1) {
            let also = e.1;
            e.0 = now;
            e.1 = 0;
            warn!(reason, suppressed = also, "ipsec: dropped: {}", what());
        } else {
            e.1 += 1;
        }
    }
}

/// The synchronous side of userspace ESP: the SA database and what goes around it.
#[derive(Debug)]
pub struct EspService {
    sad: SecurityAssociationDatabase,
    specs: Vec<SecurityAssociationSpec>,
    counters: Option<PathBuf>,
    metrics: IpsecMetrics,
    log: DropLog,
}

impl EspService {
    /// The SAs of `specs`; with `counters`, sequence numbers are durable in that file
    /// (restored from it now, reserved in it before use).
    pub fn new(
        specs: Vec<SecurityAssociationSpec>,
        replay_window: u32,
        counters: Option<PathBuf>,
        metrics: IpsecMetrics,
    ) -> anyhow::Result<Self> {
        let mut sad = SecurityAssociationDatabase::new(&specs, replay_window, counters.is_some())?;
        if let Some(path) = &counters {
            match std::fs::read_to_string(path) {
                Ok(text) => {
                    let c = Counters::parse(&text)
                        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
                    sad.restore(&c);
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => anyhow::bail!("{}: {e}", path.display()),
            }
        }
        metrics.security_associations.set(specs.len() as i64);
        let mut s = EspService {
            sad,
            specs,
            counters,
            metrics,
            log: DropLog::default(),
        };
        s.reserve()?;
        Ok(s)
    }

    /// Makes the next block of sequence numbers durable when it is due.
    fn reserve(&mut self) -> io::Result<()> {
        let (Some(path), Some(c)) = (&self.counters, self.sad.reserve()) else {
            return Ok(());
        };
        write_durably(path, &c.to_text())?;
        self.sad.reserved(&c);
        Ok(())
    }

    /// Writes what a restart needs (at shutdown).
    pub fn save(&self) -> io::Result<()> {
        match &self.counters {
            Some(path) => write_durably(path, &self.sad.snapshot().to_text()),
            None => Ok(()),
        }
    }

    /// Appends the ESP packet that carries `t` to `out`; false (counted and logged) when it
    /// must not be sent.
    pub fn seal(&mut self, t: &Transmit, out: &mut Vec<u8>, now: Instant) -> bool {
        if let Err(e) = self.reserve() {
            error!(error = %e, "ipsec: cannot reserve sequence numbers; not sending");
        }
        match self.sad.protect(t.dst, IPPROTO_MH, &t.payload, out) {
            Ok(()) => {
                self.metrics
                    .packets
                    .get_or_create(&DirectionLabel { direction: "out" })
                    .inc();
                true
            }
            Err(e) => {
                let reason = match e {
                    ProtectError::NoSecurityAssociation(_) => "no-sa",
                    ProtectError::NotReserved { .. } => "not-reserved",
                    ProtectError::SequenceExhausted { .. } => "sequence-exhausted",
                };
                self.metrics.drop(reason);
                self.log.note(reason, now, || e.to_string());
                false
            }
        }
    }

    /// Opens the ESP packet `buf` from `src` to `dst` in place: the range of the Mobility
    /// Header within `buf`, or `None` (counted and logged).
    pub fn open(
        &mut self,
        src: Ipv6Addr,
        dst: Ipv6Addr,
        buf: &mut [u8],
        now: Instant,
    ) -> Option<Range<usize>> {
        let base = buf.as_ptr() as usize;
        match self.sad.unprotect(src, IPPROTO_MH, buf) {
            Ok(o) => {
                // The kernel verified no checksum on this socket: the Mobility Header's own
                // (RFC 6275 §6.1.1) is checked here, as MhSocket's kernel would have.
                if pmip::wire::mh_checksum(&src, &dst, o.payload) != 0 {
                    self.metrics.drop("checksum");
                    self.log.note("checksum", now, || {
                        format!(
                            "Mobility Header from {src} in SA {} has a bad checksum",
                            o.spi
                        )
                    });
                    return None;
                }
                self.metrics
                    .packets
                    .get_or_create(&DirectionLabel { direction: "in" })
                    .inc();
                let start = o.payload.as_ptr() as usize - base;
                Some(start..start + o.payload.len())
            }
            Err(d) => {
                self.metrics.drop(d.reason());
                self.log.note(d.reason(), now, || d.to_string());
                None
            }
        }
    }

    /// A Mobility Header that arrived without ESP: RFC 5213 §4 wants the signalling
    /// protected, so it is never processed.
    pub fn cleartext(&mut self, src: Ipv6Addr, now: Instant) {
        self.metrics.drop("cleartext");
        self.log.note("cleartext", now, || {
            format!("a Mobility Header from {src} without ESP")
        });
    }

    /// Installs `specs` if they differ from the current ones; SAs that stay keep their
    /// sequence numbers and windows.
    pub fn reload(&mut self, specs: Vec<SecurityAssociationSpec>) -> anyhow::Result<bool> {
        if specs == self.specs {
            return Ok(false);
        }
        self.sad.install(&specs)?;
        self.metrics.security_associations.set(specs.len() as i64);
        self.specs = specs;
        self.reserve()?;
        Ok(true)
    }

    pub fn specs(&self) -> &[SecurityAssociationSpec] {
        &self.specs
    }
}

/// Replaces `path` with `text` so that a crash leaves the old or the new file, never a torn
/// one: a temporary file, synced, renamed over it, the directory synced.
pub fn write_durably(path: &Path, text: &str) -> io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(d) = path.parent().and_then(|dir| std::fs::File::open(dir).ok()) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Userspace ESP on raw sockets: ESP (IP protocol 50) for the signalling, and the Mobility
/// Header socket to catch what comes in clear.
#[derive(Debug)]
pub struct EspTransport {
    esp: RawSocket,
    clear: RawSocket,
    config: IpsecConfig,
    service: Mutex<EspService>,
    sealed: Mutex<Vec<Transmit>>,
    next_reload: Mutex<Instant>,
}

impl EspTransport {
    /// Opens both sockets on `local`. Needs CAP_NET_RAW.
    pub fn bind(local: Ipv6Addr, config: IpsecConfig, service: EspService) -> io::Result<Self> {
        let every = Duration::from_secs(u64::from(config.reload_interval_s.max(1)));
        Ok(EspTransport {
            esp: RawSocket::bind(local, ipsec::IPPROTO_ESP, None)?,
            clear: RawSocket::bind(local, IPPROTO_MH, Some(4))?,
            config,
            service: Mutex::new(service),
            sealed: Mutex::new(Vec::new()),
            next_reload: Mutex::new(Instant::now() + every),
        })
    }

    fn service(&self) -> std::sync::MutexGuard<'_, EspService> {
        self.service.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn reload(&self) {
        let every = Duration::from_secs(u64::from(self.config.reload_interval_s.max(1)));
        *self.next_reload.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now() + every;
        let loaded = load_specs(&self.config, self.esp.local);
        let mut svc = self.service();
        match loaded.and_then(|specs| svc.reload(specs)) {
            Ok(false) => {}
            Ok(true) => {
                svc.metrics
                    .reloads
                    .get_or_create(&ReasonLabel { reason: "changed" })
                    .inc();
                info!(
                    sas = svc.specs().len(),
                    "ipsec: security associations reloaded"
                );
            }
            Err(e) => {
                svc.metrics
                    .reloads
                    .get_or_create(&ReasonLabel { reason: "error" })
                    .inc();
                error!(error = %e, "ipsec: reload failed; the SAs in use stay");
            }
        }
    }
}

impl std::ops::Drop for EspTransport {
    fn drop(&mut self) {
        if let Err(e) = self.service().save() {
            error!(error = %e, "ipsec: cannot save the sequence numbers");
        }
    }
}

impl SignallingTransport for EspTransport {
    fn local(&self) -> Ipv6Addr {
        self.esp.local
    }

    async fn recv_batch(&self, batch: &mut RecvBatch) -> io::Result<usize> {
        loop {
            let reload_at = *self.next_reload.lock().unwrap_or_else(|p| p.into_inner());
            tokio::select! {
                g = self.esp.fd.readable() => {
                    let mut g = g?;
                    let Ok(r) = g.try_io(|s| recvmmsg(s.get_ref(), batch, self.esp.local)) else {
                        continue;
                    };
                    r?;
                    let now = Instant::now();
                    let mut svc = self.service();
                    let kept = batch.retain_map(|m: Received, buf| svc.open(m.src, m.dst, buf, now));
                    if kept > 0 {
                        return Ok(kept);
                    }
                }
                g = self.clear.fd.readable() => {
                    let mut g = g?;
                    let Ok(r) = g.try_io(|s| recvmmsg(s.get_ref(), batch, self.clear.local)) else {
                        continue;
                    };
                    r?;
                    let now = Instant::now();
                    let mut svc = self.service();
                    batch.retain_map(|m: Received, _| {
                        svc.cleartext(m.src, now);
                        None
                    });
                }
                _ = tokio::time::sleep_until(reload_at.into()) => self.reload(),
            }
        }
    }

    async fn send_batch(&self, out: &[Transmit]) -> io::Result<usize> {
        let mut sealed =
            std::mem::take(&mut *self.sealed.lock().unwrap_or_else(|p| p.into_inner()));
        sealed.resize_with(out.len().max(sealed.len()), || Transmit {
            src: Ipv6Addr::UNSPECIFIED,
            dst: Ipv6Addr::UNSPECIFIED,
            payload: Vec::new(),
        });
        let mut n = 0;
        {
            let now = Instant::now();
            let mut svc = self.service();
            for t in out {
                let slot = &mut sealed[n];
                slot.payload.clear();
                if svc.seal(t, &mut slot.payload, now) {
                    slot.src = t.src;
                    slot.dst = t.dst;
                    n += 1;
                }
            }
        }
        let r = self.esp.send_batch(&sealed[..n]).await;
        *self.sealed.lock().unwrap_or_else(|p| p.into_inner()) = sealed;
        r
    }
}

/// A daemon's signalling transport, with ESP where `ipsec.mode` puts it.
#[derive(Debug)]
pub enum Signalling {
    /// `ipsec.mode: off`.
    Clear(MhSocket),
    /// ESP in the daemon.
    Userspace(Box<EspTransport>),
    /// ESP in the kernel: the plain socket, and the XFRM states and policies to remove.
    Kernel(MhSocket, Box<crate::xfrm::Installed>),
}

impl Signalling {
    /// Opens the transport on `local` for `cfg` (the daemon's `ipsec` section), keeping
    /// durable sequence numbers in `state_dir`.
    pub fn open(
        local: Ipv6Addr,
        cfg: &IpsecConfig,
        state_dir: &Path,
        registry: &mut Registry,
    ) -> anyhow::Result<Self> {
        use anyhow::Context;
        let bind_err = || format!("signalling socket on {local} (needs CAP_NET_RAW)");
        if cfg.mode == IpsecMode::Off {
            return Ok(Signalling::Clear(
                MhSocket::bind(local).with_context(bind_err)?,
            ));
        }
        let specs = load_specs(cfg, local)?;
        if specs.is_empty() {
            // A domain-wide file (the operator's) may not hold this daemon's entries yet: it
            // is re-read, and nothing is sent to a peer until its SA is there.
            let Some(file) = &cfg.security_associations_file else {
                anyhow::bail!(
                    "ipsec.mode is {:?} but no security association is configured for {local}",
                    cfg.mode
                );
            };
            warn!(
                file = %file.display(),
                "ipsec: no security association for {local} yet; nothing is sent to a peer \
                 until the file has one (re-read every {} s)",
                cfg.reload_interval_s
            );
        }
        let metrics = IpsecMetrics::new(registry);
        let counters = state_dir.join(COUNTERS_FILE);
        let kernel = match cfg.mode {
            IpsecMode::Kernel => true,
            // Nothing to probe the kernel with: ESP in the daemon, which needs nothing from it.
            IpsecMode::Auto if specs.is_empty() => false,
            IpsecMode::Auto => match crate::xfrm::probe(local, &specs[0]) {
                Ok(()) => true,
                Err(e) => {
                    info!(reason = %e, "ipsec: the kernel has no ESP for these SAs; ESP runs in the daemon");
                    false
                }
            },
            _ => false,
        };
        if kernel {
            let installed = crate::xfrm::Installed::install(local, &specs, cfg, &counters, metrics)
                .context("ipsec: installing the SAs in the kernel (XFRM)")?;
            info!(sas = specs.len(), "ipsec: ESP in the kernel");
            return Ok(Signalling::Kernel(
                MhSocket::bind(local).with_context(bind_err)?,
                Box::new(installed),
            ));
        }
        std::fs::create_dir_all(state_dir)
            .with_context(|| format!("state_dir {}", state_dir.display()))?;
        let service = EspService::new(specs, cfg.replay_window, Some(counters), metrics)?;
        info!(
            sas = service.specs().len(),
            "ipsec: ESP in the daemon (raw IP-protocol-50 socket)"
        );
        Ok(Signalling::Userspace(Box::new(
            EspTransport::bind(local, cfg.clone(), service).with_context(bind_err)?,
        )))
    }

    /// Whether the signalling is protected, and where.
    pub fn protection(&self) -> &'static str {
        match self {
            Signalling::Clear(_) => "off",
            Signalling::Userspace(_) => "userspace",
            Signalling::Kernel(..) => "kernel",
        }
    }
}

impl SignallingTransport for Signalling {
    fn local(&self) -> Ipv6Addr {
        match self {
            Signalling::Clear(s) | Signalling::Kernel(s, _) => s.local(),
            Signalling::Userspace(t) => t.local(),
        }
    }

    async fn recv_batch(&self, batch: &mut RecvBatch) -> io::Result<usize> {
        match self {
            Signalling::Clear(s) => s.recv_batch(batch).await,
            Signalling::Userspace(t) => t.recv_batch(batch).await,
            Signalling::Kernel(s, k) => loop {
                tokio::select! {
                    r = s.recv_batch(batch) => return r,
                    _ = tokio::time::sleep_until(k.next_reload().into()) => k.reload(),
                }
            },
        }
    }

    async fn send_batch(&self, out: &[Transmit]) -> io::Result<usize> {
        match self {
            Signalling::Clear(s) | Signalling::Kernel(s, _) => s.send_batch(out).await,
            Signalling::Userspace(t) => t.send_batch(out).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipsec::{Algorithm, Spi};
    use pmip::config::KeyMaterial;

    fn spec(local_is_lma: bool) -> SecurityAssociationSpec {
        let (lma, mag): (Ipv6Addr, Ipv6Addr) = ("::1".parse().unwrap(), "::1".parse().unwrap());
        let up = KeyMaterial::new(vec![1; 20]);
        let down = KeyMaterial::new(vec![2; 20]);
        if local_is_lma {
            SecurityAssociationSpec {
                peer: mag,
                algorithm: Algorithm::Aes128Gcm,
                spi_in: Spi(0x1000),
                spi_out: Spi(0x1000),
                key_in: up,
                key_out: down.clone(),
                esn: false,
            }
        } else {
            SecurityAssociationSpec {
                peer: lma,
                algorithm: Algorithm::Aes128Gcm,
                spi_in: Spi(0x1000),
                spi_out: Spi(0x1000),
                key_in: down,
                key_out: KeyMaterial::new(vec![1; 20]),
                esn: false,
            }
        }
    }

    /// One daemon talking to itself on loopback (the same SPI both ways, so its own packets
    /// open): a message goes out as ESP and comes back as the Mobility Header; a cleartext
    /// Mobility Header on the same address is dropped and counted; a replay is dropped.
    /// Needs CAP_NET_RAW (the tests run as root).
    #[tokio::test]
    async fn esp_round_trip_on_loopback_and_cleartext_is_dropped() {
        let lo = Ipv6Addr::LOCALHOST;
        let mut s = spec(true);
        s.key_out = s.key_in.clone();
        let metrics = IpsecMetrics::default();
        let dir = tempfile::tempdir().unwrap();
        let counters = dir.path().join(COUNTERS_FILE);
        let service =
            EspService::new(vec![s], 64, Some(counters.clone()), metrics.clone()).unwrap();
        assert!(counters.exists(), "a first reservation is written at start");
        let cfg = IpsecConfig {
            mode: IpsecMode::Userspace,
            ..IpsecConfig::default()
        };
        let t = EspTransport::bind(lo, cfg, service).expect("raw sockets (run as root)");
        // A heartbeat request with its checksum.
        let mut hb = vec![59u8, 1, 13, 0, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 0];
        let c = pmip::wire::mh_checksum(&lo, &lo, &hb);
        hb[4..6].copy_from_slice(&c.to_be_bytes());
        let tx = Transmit {
            src: lo,
            dst: lo,
            payload: hb.clone(),
        };
        assert_eq!(t.send_batch(std::slice::from_ref(&tx)).await.unwrap(), 1);
        let mut batch = RecvBatch::default();
        let n = tokio::time::timeout(Duration::from_secs(5), t.recv_batch(&mut batch))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(n, 1);
        let (m, bytes) = batch.iter().next().unwrap();
        assert_eq!((m.src, bytes), (lo, &hb[..]));
        // In clear, on the plain socket: dropped, counted, never delivered.
        let plain = MhSocket::bind(lo).unwrap();
        plain.send_batch(std::slice::from_ref(&tx)).await.unwrap();
        assert_eq!(t.send_batch(std::slice::from_ref(&tx)).await.unwrap(), 1);
        let n = tokio::time::timeout(Duration::from_secs(5), t.recv_batch(&mut batch))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(n, 1, "only the protected one");
        // The cleartext one may still be queued: nothing is delivered while it is dropped.
        let more = tokio::time::timeout(Duration::from_millis(300), t.recv_batch(&mut batch)).await;
        assert!(more.is_err(), "nothing else is delivered");
        let dropped = |r| {
            metrics
                .dropped
                .get_or_create(&ReasonLabel { reason: r })
                .get()
        };
        // At least ours: other tests of this process send Mobility Headers on loopback too.
        assert!(dropped("cleartext") >= 1);
        let sent = |d| {
            metrics
                .packets
                .get_or_create(&DirectionLabel { direction: d })
                .get()
        };
        assert_eq!((sent("out"), sent("in")), (2, 2));
        drop(t);
        let saved = Counters::parse(&std::fs::read_to_string(&counters).unwrap()).unwrap();
        assert_eq!(
            saved.inbound[0].2, 2,
            "the window's edge is saved at shutdown"
        );
    }
}
