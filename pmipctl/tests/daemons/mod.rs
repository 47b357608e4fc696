//! Real daemons for the gRPC commands to talk to, in the test process: an LMA core (redb
//! store in a temporary directory, the recording datapath) serving its API on a local TCP
//! port, and a MAG core serving its Gateway service likewise. Signalling moves over channels:
//! the tests build PBUs with `pmip::wire` and hand them to the LMA core, and can forward what
//! the MAG sends to the LMA.

#![allow(dead_code)]

use std::io;
use std::net::{Ipv6Addr, SocketAddr};
use std::process::Output;
use std::time::Duration;

use cnf::Clock;
use cnf::transport::{RecvBatch, SignallingTransport};
use datapath::Datapath;
use ipnet::Ipv6Net;
use pmip::config::{ApiConfig, FastHandoverConfig, LmaConfig, MagConfig};
use pmip::output::{RouterAdvertisement, Transmit};
use pmip::types::LinkLayerAddress;
use pmip::wire::{
    AccessTechnologyType, BindingUpdate, BuFlags, HandoffIndicator, Lifetime, MN_ID_SUBTYPE_NAI,
    Message, MobilityOption, Options, ProxyBindingAck, SequenceNumber, Status, Timestamp,
};
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::timeout;

pub const LMA: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 1);
/// Authorized in the LMA's configuration file.
pub const MAG1: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x10);
pub const MAG2: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 0x10);
/// Not authorized until a test says so.
pub const MAG3: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 3, 0, 0, 0, 0, 0x10);
pub const WAIT: Duration = Duration::from_secs(10);

pub fn nai(n: u8) -> String {
    format!("mn{n}@lab.example")
}

pub fn ll(n: u8) -> LinkLayerAddress {
    LinkLayerAddress::mac([2, 0, 0x5e, 0x10, 0, n])
}

pub fn all_zero() -> Ipv6Net {
    "::/0".parse().unwrap()
}

/// Runs the `pmipctl` binary; the daemons keep running on this test's runtime meanwhile.
pub async fn pmipctl(args: &[&str]) -> Output {
    pmipctl_in(args, b"").await
}

/// Runs `pmipctl` with `stdin`.
pub async fn pmipctl_in(args: &[&str], stdin: &[u8]) -> Output {
    use tokio::io::AsyncWriteExt;
    let mut child = command(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run pmipctl");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin).await.unwrap();
    drop(input);
    timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("pmipctl ends")
        .unwrap()
}

/// The `pmipctl` command, without the `PMIP_*` variables of whoever runs the tests.
pub fn command(args: &[&str]) -> tokio::process::Command {
    let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_pmipctl"));
    c.args(args).kill_on_drop(true);
    for v in ["PMIP_LMA", "PMIP_MAG", "PMIP_CA", "PMIP_CERT", "PMIP_KEY"] {
        c.env_remove(v);
    }
    c
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

/// Asserts that `o` succeeded and returns its output.
pub fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "pmipctl failed ({:?}): {}{}",
        o.status,
        stderr(o),
        stdout(o)
    );
    stdout(o)
}

/// The LMA configuration of the tests: profiles mn1..=mn8 with their link-layer addresses,
/// MAG1 and MAG2 (named `mag-b`) authorized, revocation without retries, waiting 3 s for the acknowledgement.
/// `heartbeat`: HEARTBEAT_INTERVAL in seconds (0: off) and MISSING_HEARTBEATS_ALLOWED.
fn lma_config(state_dir: &std::path::Path, api: ApiConfig, heartbeat: (u32, u32)) -> LmaConfig {
    let nodes: Vec<serde_json::Value> = (1..=8)
        .map(|n| serde_json::json!({"mn_id": nai(n), "link_layer_addresses": [ll(n).to_string()]}))
        .collect();
    let c: LmaConfig = serde_json::from_value(serde_json::json!({
        "name": "lma-test",
        "address": LMA.to_string(),
        "prefix_pools": [{"prefix": "2001:db8:100::/48", "prefix_length": 64}],
        "authorized_mags": [MAG1.to_string(), {"proxy_coa": MAG2.to_string(), "name": "mag-b"}],
        "mobile_nodes": nodes,
        "timers": {"timestamp_validity_window_ms": 60000},
        "revocation": {"max_retries": 0, "initial_delay_ms": 3000, "max_timeout_ms": 3000},
        "domain": {"heartbeat": {"interval_s": heartbeat.0, "missing_allowed": heartbeat.1}},
        "datapath": {"mode": "none"},
        "state_dir": state_dir,
        "metrics": {"listen": null},
        "api": api,
    }))
    .unwrap();
    c.validate().unwrap();
    c
}

/// Signalling over channels. A `RecvBatch` can only be filled by the raw socket, so nothing
/// is ever received this way: the LMA gets its messages as `Command::Receive`.
#[derive(Debug)]
struct Wire {
    local: Ipv6Addr,
    sent: mpsc::UnboundedSender<Transmit>,
}

impl SignallingTransport for Wire {
    fn local(&self) -> Ipv6Addr {
        self.local
    }

    async fn recv_batch(&self, _batch: &mut RecvBatch) -> io::Result<usize> {
        std::future::pending().await
    }

    async fn send_batch(&self, out: &[Transmit]) -> io::Result<usize> {
        for t in out {
            let _ = self.sent.send(t.clone());
        }
        Ok(out.len())
    }
}

/// A real LMA core with its gRPC API on `127.0.0.1`.
pub struct Lma {
    pub core: lma_cnf::core::CoreHandle,
    pub sent: mpsc::UnboundedReceiver<Transmit>,
    pub addr: SocketAddr,
    pub url: String,
    api_config: ApiConfig,
    stop_api: watch::Sender<bool>,
    stop_core: watch::Sender<bool>,
    api: Option<JoinHandle<()>>,
    core_task: JoinHandle<()>,
    _dir: TempDir,
    seq: u16,
}

impl Lma {
    pub async fn start() -> Lma {
        Lma::start_with(ApiConfig::default()).await
    }

    /// With `api` (its `listen` is not used: the API gets a free local port).
    pub async fn start_with(api: ApiConfig) -> Lma {
        Lma::start_inner(api, (0, 3)).await
    }

    /// With heartbeats every `interval_s` seconds, a MAG unreachable after `missing`
    /// unanswered requests.
    pub async fn start_with_heartbeats(interval_s: u32, missing: u32) -> Lma {
        Lma::start_inner(ApiConfig::default(), (interval_s, missing)).await
    }

    async fn start_inner(api: ApiConfig, heartbeat: (u32, u32)) -> Lma {
        use lma_cnf::core::{Core, Parts};
        let dir = tempfile::tempdir().unwrap();
        let config = lma_config(dir.path(), api.clone(), heartbeat);
        let store = lma_cnf::store::Store::open(&config.state_dir).unwrap();
        let run = store.begin_run(1_800_000_000).unwrap();
        let clock = Clock::new();
        let (service, _) = lma_cnf::core::restore(config, &store, run, 7, &clock).unwrap();
        let (tx, sent) = mpsc::unbounded_channel();
        let mut registry = prometheus_client::registry::Registry::default();
        let (core, handle) = Core::new(Parts {
            service,
            store: std::sync::Arc::new(store),
            run,
            datapath: Datapath::Fake(datapath::Fake::new()),
            transport: Wire {
                local: LMA,
                sent: tx,
            },
            metrics: lma_cnf::metrics::Metrics::new(&mut registry),
            clock,
        })
        .await
        .unwrap();
        let (stop_core, mut core_rx) = watch::channel(false);
        let core_task = tokio::spawn(core.run(async move {
            let _ = core_rx.wait_for(|s| *s).await;
        }));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop_api, api_rx) = watch::channel(false);
        let task = lma_cnf::api::serve_on(&api, listener, handle.clone(), api_rx)
            .await
            .unwrap();
        let scheme = if api.tls.is_some() { "https" } else { "http" };
        Lma {
            core: handle,
            sent,
            addr,
            url: format!("{scheme}://{addr}"),
            api_config: api,
            stop_api,
            stop_core,
            api: Some(task),
            core_task,
            _dir: dir,
            seq: 0,
        }
    }

    /// Stops the API server (streams end with UNAVAILABLE); the core goes on.
    pub async fn stop_api(&mut self) {
        let _ = self.stop_api.send(true);
        if let Some(t) = self.api.take() {
            timeout(WAIT, t).await.unwrap().unwrap();
        }
    }

    /// Serves the API again on the same port.
    pub async fn start_api(&mut self) {
        let listener = TcpListener::bind(self.addr).await.unwrap();
        let (stop_api, api_rx) = watch::channel(false);
        self.stop_api = stop_api;
        let task = lma_cnf::api::serve_on(&self.api_config, listener, self.core.clone(), api_rx)
            .await
            .unwrap();
        self.api = Some(task);
    }

    pub async fn stop(mut self) {
        self.stop_api().await;
        let _ = self.stop_core.send(true);
        timeout(WAIT, self.core_task).await.unwrap().unwrap();
    }

    /// Hands a Mobility Header from `src` to the core.
    pub async fn deliver(&self, src: Ipv6Addr, bytes: Vec<u8>) {
        self.core
            .call(|reply| lma_cnf::core::Command::Receive {
                src,
                dst: LMA,
                bytes,
                reply,
            })
            .await
            .unwrap();
    }

    /// Sends a PBU for node `n` from `mag`; returns the PBA's status and prefixes.
    pub async fn pbu(
        &mut self,
        mag: Ipv6Addr,
        n: u8,
        hnp: Ipv6Net,
        hi: HandoffIndicator,
        lifetime_s: u32,
    ) -> (Status, Vec<Ipv6Net>) {
        self.seq = self.seq.wrapping_add(1);
        let id = nai(n);
        let link = ll(n);
        let opts = [
            MobilityOption::MobileNodeIdentifier {
                subtype: MN_ID_SUBTYPE_NAI,
                id: id.as_bytes(),
            },
            MobilityOption::HomeNetworkPrefix(hnp),
            MobilityOption::HandoffIndicator(hi),
            MobilityOption::AccessTechnologyType(AccessTechnologyType::Ieee80211),
            MobilityOption::MnLinkLayerIdentifier(link.as_bytes()),
            MobilityOption::Timestamp(Timestamp::from_wall_clock(Clock::new().wall())),
        ];
        let m = Message::BindingUpdate(BindingUpdate {
            sequence: SequenceNumber(self.seq),
            flags: BuFlags::A | BuFlags::P,
            lifetime: Lifetime::from_secs(lifetime_s),
            options: Options::List(&opts),
        });
        let mut bytes = vec![0u8; m.buffer_len()];
        m.emit_with_checksum(&mut bytes, &mag, &LMA).unwrap();
        self.deliver(mag, bytes).await;
        loop {
            let t = timeout(WAIT, self.sent.recv())
                .await
                .expect("the LMA answers")
                .expect("the transport is open");
            if t.dst != mag {
                continue;
            }
            if let Ok(Message::BindingAck(ba)) = Message::parse_verified(&t.payload, &t.src, &t.dst)
            {
                let v = ProxyBindingAck::new(&ba).unwrap();
                return (ba.status, v.home_network_prefixes().collect());
            }
        }
    }

    /// Registers node `n` at `mag` for the first time; returns its prefix.
    pub async fn attach(&mut self, mag: Ipv6Addr, n: u8) -> Ipv6Net {
        let (status, prefixes) = self
            .pbu(
                mag,
                n,
                all_zero(),
                HandoffIndicator::AttachmentOverNewInterface,
                3600,
            )
            .await;
        assert_eq!(status, Status::Accepted);
        prefixes[0]
    }
}

/// Router Advertisements and Neighbor Solicitations go nowhere: the MAG's access links are made up.
#[derive(Debug)]
struct NoRa;

impl mag_cnf::core::RaSender for NoRa {
    async fn send_ra(&self, _ra: &RouterAdvertisement) -> anyhow::Result<()> {
        Ok(())
    }

    async fn send_ns(&self, _ns: &pmip::output::NeighborSolicitation) -> anyhow::Result<()> {
        Ok(())
    }
}

/// The access interface the MAG tests attach nodes on.
pub const ACCESS: &str = "acc0";

/// A real MAG core (proxy-CoA MAG1, profiles mn1..=mn4, mn4 with two link-layer addresses,
/// reactive fast handovers with access
/// point `ap-2` at MAG2) with its Gateway service on `127.0.0.1`, and one access link
/// [`ACCESS`] up. What it sends comes out of `sent`.
pub struct Mag {
    pub url: String,
    pub sent: mpsc::UnboundedReceiver<Transmit>,
    stop: watch::Sender<bool>,
    core_task: JoinHandle<()>,
    api: JoinHandle<()>,
    _access: mpsc::Sender<mag_cnf::core::AccessInput>,
    _dir: TempDir,
}

impl Mag {
    pub async fn start() -> Mag {
        use mag_cnf::core::{AccessInput, Core, Parts};
        let dir = tempfile::tempdir().unwrap();
        // Node 4 has two interfaces: ll(4) and ll(5).
        let nodes: Vec<serde_json::Value> = (1..=4)
            .map(|n| {
                let lls: Vec<String> = match n {
                    4 => vec![ll(4).to_string(), ll(5).to_string()],
                    n => vec![ll(n).to_string()],
                };
                serde_json::json!({"mn_id": nai(n), "link_layer_addresses": lls})
            })
            .collect();
        let fast =
            serde_json::json!({"mode": "reactive", "access_points": {"ap-2": MAG2.to_string()}});
        let config: MagConfig = serde_json::from_value(serde_json::json!({
            "name": "mag-test",
            "proxy_coa": MAG1.to_string(),
            "lma_address": LMA.to_string(),
            "access_interfaces": ["acc*"],
            "mobile_nodes": nodes,
            "domain": {"heartbeat": {"interval_s": 0}, "fast_handover": fast},
            "datapath": {"mode": "none"},
            "state_dir": dir.path(),
            "metrics": {"listen": null},
        }))
        .unwrap();
        config.validate().unwrap();
        let fast: FastHandoverConfig = config.domain.fast_handover.clone();
        let (tx, sent) = mpsc::unbounded_channel();
        let (access_tx, access_rx) = mpsc::channel(16);
        let mut registry = prometheus_client::registry::Registry::default();
        let (core, handle) = Core::new(
            Parts {
                state_file: dir.path().join("bul.json"),
                config,
                restart_counter: 1,
                epoch: 1,
                datapath: Datapath::Fake(datapath::Fake::new()),
                transport: Wire {
                    local: MAG1,
                    sent: tx,
                },
                ra: NoRa,
                access: access_rx,
                ipv4: None,
                buffer: None,
                metrics: mag_cnf::metrics::Metrics::new(&mut registry),
                clock: Clock::new(),
                seed: 11,
            },
            &[],
        )
        .await
        .unwrap();
        let (stop, mut rx) = watch::channel(false);
        let core_task = tokio::spawn(core.run(
            async move {
                let _ = rx.wait_for(|s| *s).await;
            },
            false,
        ));
        access_tx
            .send(AccessInput::LinkUp {
                ifindex: 7,
                name: ACCESS.into(),
                mtu: 1500,
            })
            .await
            .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let api = mag_cnf::api::serve_on(
            &ApiConfig::default(),
            fast,
            handle,
            listener,
            stop.subscribe(),
        )
        .await
        .unwrap();
        Mag {
            url: format!("http://{addr}"),
            sent,
            stop,
            core_task,
            api,
            _access: access_tx,
            _dir: dir,
        }
    }

    pub async fn stop(self) {
        let _ = self.stop.send(true);
        timeout(WAIT, self.core_task).await.unwrap().unwrap();
        timeout(WAIT, self.api).await.unwrap().unwrap();
    }
}
