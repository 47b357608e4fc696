//! The test bed of the signalling and scale benchmarks: two network namespaces joined by a
//! veth pair, the real `pmip-lma` in one, the load generator (many MAG addresses) in the
//! other.
//!
//! ```text
//!   <bed>-gen                                  <bed>-lma
//!   tr0 2001:db8:ffff::2/64                    tr0 2001:db8:ffff::1/64  pmip-lma
//!       2001:db8:ffff::1:0 + i  (MAG i)  ====      (or the echo server)
//! ```
//!
//! The MAG addresses are on the LMA's link, so the seg6 routes the LMA installs point at
//! neighbours and are real routes the kernel resolves. Dropping the bed kills what runs in it
//! and removes both namespaces.

use std::net::Ipv6Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use datapath::Netlink;
use datapath::netns::NetNs;
use e2e::lab::Binaries;
use pmip::config::{DatapathMode, LmaConfig, MobileNodeProfile};
use pmip::types::Nai;

/// The LMA address on the bed.
pub const LMA: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 1);
/// The generator's own address.
pub const GEN: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 2);
/// The pool of home network prefixes: 2^24 /64s, enough for any run.
pub const POOL: &str = "2001:db8:100::/40";
/// The realm of the generated nodes; the LMA has one wildcard profile for it.
pub const REALM: &str = "bench.example";

/// The proxy-CoA of generated MAG `i`.
pub fn mag_address(i: usize) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 1, 0, i as u16 + 1)
}

/// What runs on the LMA side.
#[derive(Debug)]
enum Server {
    Lma(Child),
    Echo(Child),
}

/// Two namespaces and what runs in them.
#[derive(Debug)]
pub struct Bed {
    pub name: String,
    pub lma_ns: NetNs,
    pub gen_ns: NetNs,
    pub dir: PathBuf,
    pub mags: Vec<Ipv6Addr>,
    binaries: Binaries,
    server: Option<Server>,
    namespaces: Vec<String>,
}

fn sysctl(nl: &Netlink, key: &str, value: &str) -> anyhow::Result<()> {
    nl.set_sysctl(key, value)
        .with_context(|| format!("sysctl {key}={value}"))
}

impl Bed {
    /// Builds the namespaces and addresses; nothing runs yet. `dir` receives configurations,
    /// state and logs.
    pub async fn up(
        name: &str,
        mags: usize,
        dir: &Path,
        binaries: Binaries,
    ) -> anyhow::Result<Bed> {
        if !nix::unistd::geteuid().is_root() {
            bail!("the benchmarks build network namespaces and need root");
        }
        let names = vec![format!("{name}-lma"), format!("{name}-gen")];
        for n in &names {
            if NetNs::named(n).path().exists() {
                e2e::lab::remove_namespaces(std::slice::from_ref(n));
            }
        }
        std::fs::create_dir_all(dir)?;
        let mut bed = Bed {
            name: name.to_owned(),
            lma_ns: NetNs::named(&names[0]),
            gen_ns: NetNs::named(&names[1]),
            dir: dir.to_path_buf(),
            mags: (0..mags).map(mag_address).collect(),
            binaries,
            server: None,
            namespaces: Vec::new(),
        };
        for n in &names {
            NetNs::create(n)
                .with_context(|| format!("namespace {n}"))?
                .keep();
            bed.namespaces.push(n.clone());
        }
        let lma = Netlink::connect_in(&bed.lma_ns)?;
        let gen_ = Netlink::connect_in(&bed.gen_ns)?;
        for nl in [&lma, &gen_] {
            sysctl(nl, "net/ipv6/conf/default/accept_dad", "0")?;
            sysctl(nl, "net/ipv6/conf/all/accept_dad", "0")?;
            sysctl(nl, "net/ipv6/conf/all/forwarding", "1")?;
            let lo = nl.link_index("lo").await?;
            nl.set_link_up(lo, true).await?;
        }
        lma.add_veth("tr0", "tr0", &bed.gen_ns).await?;
        for (nl, addrs) in [
            (&lma, vec![LMA]),
            (
                &gen_,
                std::iter::once(GEN)
                    .chain(bed.mags.iter().copied())
                    .collect(),
            ),
        ] {
            let i = nl.link_index("tr0").await?;
            sysctl(nl, "net/ipv6/conf/tr0/accept_dad", "0")?;
            nl.set_link_mtu(i, 1540).await?;
            for a in addrs {
                nl.add_address(i, a, 64).await?;
            }
            nl.set_link_up(i, true).await?;
        }
        Ok(bed)
    }

    /// The configuration of the LMA under test: every generated MAG authorized, one wildcard
    /// profile for the realm, heartbeats off (the generator does not answer them), the store
    /// in `state`.
    pub fn lma_config(&self, datapath: DatapathMode, state: &Path) -> anyhow::Result<LmaConfig> {
        self.lma_config_with_ipv4(datapath, state, &[])
    }

    /// [`Bed::lma_config`] with IPv4 home addresses (RFC 5844) from `ipv4_pools` for every
    /// node, when there are any.
    pub fn lma_config_with_ipv4(
        &self,
        datapath: DatapathMode,
        state: &Path,
        ipv4_pools: &[&str],
    ) -> anyhow::Result<LmaConfig> {
        let mut c: LmaConfig = serde_saphyr::from_str(&format!(
            "address: '{LMA}'\nprefix_pools: [{{prefix: '{POOL}'}}]\n"
        ))?;
        c.name = "bench".into();
        c.authorized_mags = self.mags.iter().map(|a| (*a).into()).collect();
        let mut everyone =
            MobileNodeProfile::new(Nai::new(format!("*@{REALM}")).map_err(|e| anyhow!("{e}"))?);
        everyone.ipv4 = !ipv4_pools.is_empty();
        c.mobile_nodes = vec![everyone];
        c.ipv4_pools = (ipv4_pools.iter())
            .map(|p| -> anyhow::Result<_> {
                Ok(pmip::config::Ipv4Pool {
                    prefix: p.parse()?,
                    default_router: None,
                })
            })
            .collect::<anyhow::Result<_>>()?;
        c.domain.heartbeat.interval_s = 0;
        c.datapath.mode = datapath;
        c.datapath.transport_interface = Some("tr0".into());
        c.state_dir = state.to_path_buf();
        c.api.listen = "[::]:50051".parse()?;
        c.metrics.listen = Some("[::]:9464".parse()?);
        c.validate()?;
        Ok(c)
    }

    /// Writes `config` and starts `pmip-lma` with it (does not wait for it).
    pub fn start_lma(&mut self, config: &LmaConfig, tag: &str) -> anyhow::Result<()> {
        self.stop();
        let path = self.dir.join(format!("lma-{tag}.yaml"));
        std::fs::write(&path, serde_saphyr::to_string(config)?)?;
        let log = self.dir.join(format!("lma-{tag}.log"));
        let (prog, rest) = self
            .binaries
            .lma
            .split_first()
            .ok_or_else(|| anyhow!("no pmip-lma"))?;
        let mut c = self.lma_ns.command(prog)?;
        c.args(rest)
            .arg("--config")
            .arg(&path)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::from(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&log)?,
            ))
            .stderr(Stdio::from(
                std::fs::OpenOptions::new().append(true).open(&log)?,
            ));
        let child = c
            .spawn()
            .with_context(|| format!("starting {}", prog.display()))?;
        self.server = Some(Server::Lma(child));
        Ok(())
    }

    /// Starts the raw-socket echo on the LMA address (this executable's `__echo`).
    pub fn start_echo(&mut self) -> anyhow::Result<()> {
        self.stop();
        let exe = std::env::current_exe()?;
        let mut c = self.lma_ns.command(exe)?;
        c.arg("__echo")
            .arg("--address")
            .arg(LMA.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        self.server = Some(Server::Echo(c.spawn().context("starting the echo server")?));
        Ok(())
    }

    /// The process id of what runs on the LMA side.
    pub fn server_pid(&self) -> Option<u32> {
        match &self.server {
            Some(Server::Lma(c)) | Some(Server::Echo(c)) => Some(c.id()),
            None => None,
        }
    }

    /// `kill -9` of what runs on the LMA side.
    pub fn stop(&mut self) {
        if let Some(Server::Lma(mut c) | Server::Echo(mut c)) = self.server.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Waits until the LMA answers its gRPC health check; fails if it exited.
    pub async fn wait_serving(&mut self, timeout: Duration) -> anyhow::Result<Duration> {
        let t = Instant::now();
        loop {
            if e2e::lab::grpc_serving(&self.lma_ns).await {
                return Ok(t.elapsed());
            }
            if let Some(Server::Lma(c)) = &mut self.server
                && let Some(status) = c.try_wait()?
            {
                bail!(
                    "pmip-lma exited ({status}); its log is in {}",
                    self.dir.display()
                );
            }
            if t.elapsed() > timeout {
                bail!("pmip-lma did not serve within {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Resident memory of what runs on the LMA side (`VmRSS`), in bytes.
    pub fn rss(&self) -> anyhow::Result<u64> {
        let pid = self.server_pid().ok_or_else(|| anyhow!("nothing runs"))?;
        rss_of(pid)
    }

    /// The LMA's gRPC `BindingCache.Stats`.
    pub async fn stats(&self) -> anyhow::Result<proto::v1::LmaStats> {
        e2e::lab::in_ns(&self.lma_ns, || async {
            let ch = tonic::transport::Endpoint::from_static("http://[::1]:50051")
                .connect_timeout(Duration::from_secs(2))
                .timeout(Duration::from_secs(30))
                .connect()
                .await?;
            let mut c = proto::v1::binding_cache_client::BindingCacheClient::new(ch);
            let s = c
                .stats(proto::v1::LmaStatsRequest {})
                .await
                .map_err(|s| anyhow!("BindingCache.Stats: {}", s.message()))?
                .into_inner();
            Ok(s)
        })
        .await
    }

    /// IPv6 routes in the LMA namespace (a netlink dump; `/proc/net/ipv6_route` takes
    /// minutes at a million routes).
    pub async fn lma_routes(&self) -> anyhow::Result<usize> {
        use futures::TryStreamExt;
        let h = self.lma_ns.rtnetlink()?;
        let mut s = h
            .route()
            .get(rtnetlink::RouteMessageBuilder::<Ipv6Addr>::new().build())
            .execute();
        let mut n = 0;
        while s.try_next().await?.is_some() {
            n += 1;
        }
        Ok(n)
    }
}

impl Bed {
    /// IPv6 and IPv4 routes of routing protocol `protocol` in the LMA namespace (a netlink
    /// dump, as [`Bed::lma_routes`]).
    pub async fn lma_routes_of(&self, protocol: u8) -> anyhow::Result<usize> {
        use futures::TryStreamExt;
        let h = self.lma_ns.rtnetlink()?;
        let mut n = 0;
        let mut s = h
            .route()
            .get(rtnetlink::RouteMessageBuilder::<Ipv6Addr>::new().build())
            .execute();
        while let Some(r) = s.try_next().await? {
            n += usize::from(u8::from(r.header.protocol) == protocol);
        }
        let mut s = h
            .route()
            .get(rtnetlink::RouteMessageBuilder::<std::net::Ipv4Addr>::new().build())
            .execute();
        while let Some(r) = s.try_next().await? {
            n += usize::from(u8::from(r.header.protocol) == protocol);
        }
        Ok(n)
    }
}

/// `VmRSS` of a process, in bytes.
pub fn rss_of(pid: u32) -> anyhow::Result<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb: u64 = s
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow!("no VmRSS for process {pid}"))?;
    Ok(kb * 1024)
}

impl Drop for Bed {
    fn drop(&mut self) {
        self.stop();
        e2e::lab::remove_namespaces(&self.namespaces);
    }
}

/// The daemons next to this executable, or this executable running their code.
pub fn binaries() -> anyhow::Result<Binaries> {
    // The fallback is `<this executable> __lma` / `__mag`, which `main` dispatches.
    Ok(Binaries::locate(&std::env::current_exe()?))
}

/// The raw-socket echo: every Mobility Header received on `address` goes back to its sender
/// unchanged, in batches, through the daemons' own socket. Runs until killed.
pub async fn echo(address: Ipv6Addr) -> anyhow::Result<()> {
    use cnf::transport::{MhSocket, RecvBatch, SignallingTransport};
    use pmip::output::Transmit;
    let s = MhSocket::bind(address).with_context(|| format!("raw socket on {address}"))?;
    let mut batch = RecvBatch::default();
    let mut out = Vec::with_capacity(cnf::transport::BATCH);
    loop {
        s.recv_batch(&mut batch).await?;
        out.clear();
        out.extend(batch.iter().map(|(m, bytes)| Transmit {
            src: address,
            dst: m.src,
            payload: bytes.to_vec(),
        }));
        s.send_batch(&out).await?;
    }
}
