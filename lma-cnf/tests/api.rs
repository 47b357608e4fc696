//! The LMA's gRPC API end to end: a real core (redb store in a temporary directory, the
//! recording datapath), a signalling transport made of channels, and a tonic client over a
//! local TCP port. The test plays the MAGs: it builds PBUs and BRAs with `pmip::wire`, hands
//! them to the core, and reads the PBAs and BRIs the core sends.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::Duration;

use cnf::Clock;
use cnf::transport::{RecvBatch, SignallingTransport};
use datapath::{Datapath, PrefixRoute};
use ipnet::Ipv6Net;
use lma_cnf::core::{Command, Core, CoreHandle, Parts};
use lma_cnf::metrics::Metrics;
use lma_cnf::store::Store;
use pmip::config::{ApiConfig, LmaConfig};
use pmip::output::Transmit;
use pmip::types::LinkLayerAddress;
use pmip::wire::{
    AccessTechnologyType, BindingRevocation, BindingRevocationAck, BindingUpdate, BraStatus,
    BuFlags, HandoffIndicator, Lifetime, MN_ID_SUBTYPE_NAI, Message, MobilityOption, Options,
    ProxyBindingAck, RevocationTrigger, SequenceNumber, Status, Timestamp,
};
use proto::v1 as pb;
use proto::v1::binding_cache_client::BindingCacheClient;
use proto::v1::binding_event::Event;
use proto::v1::get_binding_request::Key;
use proto::v1::mobile_node_event::Event as ProfileEvent;
use proto::v1::policy_client::PolicyClient;
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Streaming};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

const LMA: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 1);
/// Authorized in the configuration file.
const MAG1: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x10);
const MAG2: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 0x10);
/// Not authorized until a test says so.
const MAG3: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 3, 0, 0, 0, 0, 0x10);
const WAIT: Duration = Duration::from_secs(10);

fn nai(n: u8) -> String {
    format!("mn{n}@example.org")
}

fn ll(n: u8) -> LinkLayerAddress {
    LinkLayerAddress::mac([2, 0, 0, 0, 0, n])
}

fn all_zero() -> Ipv6Net {
    "::/0".parse().unwrap()
}

/// Profiles mn1..=mn8 with their link-layer addresses; MAG1 and MAG2 authorized; short
/// de-registration and revocation timers so the tests see them pass.
fn config(state_dir: &std::path::Path) -> LmaConfig {
    // mn7 and mn8 may have IPv4 home addresses too (RFC 5844); they get one only when a PBU
    // asks for it.
    let nodes: Vec<serde_json::Value> = (1..=8)
        .map(|n| serde_json::json!({"mn_id": nai(n), "link_layer_addresses": [ll(n).to_string()], "ipv4": n >= 7}))
        .collect();
    let c: LmaConfig = serde_json::from_value(serde_json::json!({
        "name": "lma-test",
        "address": LMA.to_string(),
        "prefix_pools": [{"prefix": "2001:db8:100::/48", "prefix_length": 64}],
        "ipv4_pools": [{"prefix": "192.0.2.0/24"}],
        "authorized_mags": [MAG1.to_string(), MAG2.to_string()],
        "mobile_nodes": nodes,
        "timers": {
            "min_delay_before_bce_delete_ms": 300,
            "timestamp_validity_window_ms": 60000,
        },
        "revocation": {"max_retries": 0, "initial_delay_ms": 500, "max_timeout_ms": 500},
        "domain": {"heartbeat": {"interval_s": 0}},
        "datapath": {"mode": "none"},
        "state_dir": state_dir,
        "metrics": {"listen": null},
    }))
    .unwrap();
    c.validate().unwrap();
    c
}

/// The signalling transport of the test: what the core sends goes into a channel. Received
/// messages reach the core as [`Command::Receive`]: a `RecvBatch` can only be filled by the
/// raw socket in `cnf`, so `recv_batch` never returns. Every accepted PBA with a lifetime is
/// checked against the store and the datapath as it leaves: its binding must be on disk at
/// its MAG, and its prefix routed to that MAG.
#[derive(Debug)]
struct Wire {
    sent: mpsc::UnboundedSender<Transmit>,
    store: Arc<Store>,
    datapath: datapath::Fake,
}

impl Wire {
    fn assert_durable(&self, t: &Transmit) {
        let Ok(Message::BindingAck(ba)) = Message::parse_verified(&t.payload, &t.src, &t.dst)
        else {
            return;
        };
        if ba.status != Status::Accepted || ba.lifetime.as_secs() == 0 {
            return;
        }
        let Some(prefix) = ProxyBindingAck::new(&ba)
            .ok()
            .and_then(|v| v.home_network_prefixes().next())
        else {
            return;
        };
        let stored = self.store.load().unwrap().snapshot.bindings;
        assert!(
            stored
                .iter()
                .any(|r| r.home_network_prefixes.first() == Some(&prefix) && r.proxy_coa == t.dst),
            "the PBA for {prefix} at {} left before its binding was on disk",
            t.dst
        );
        assert_eq!(
            self.datapath.state().routes.get(&prefix.trunc()),
            Some(PrefixRoute::Tunnel { peer: t.dst }),
            "the PBA for {prefix} left before its route"
        );
    }
}

impl SignallingTransport for Wire {
    fn local(&self) -> Ipv6Addr {
        LMA
    }

    async fn recv_batch(&self, _batch: &mut RecvBatch) -> io::Result<usize> {
        std::future::pending().await
    }

    async fn send_batch(&self, out: &[Transmit]) -> io::Result<usize> {
        for t in out {
            self.assert_durable(t);
            let _ = self.sent.send(t.clone());
        }
        Ok(out.len())
    }
}

/// A PBA as the MAG reads it.
#[derive(Debug)]
struct Pba {
    status: Status,
    prefixes: Vec<Ipv6Net>,
    /// The IPv4 home address of an IPv4 Home Address Reply (RFC 5844 §3.3.2).
    ipv4: Option<Ipv4Addr>,
}

/// One LMA with its API.
struct Lab {
    core: CoreHandle,
    sent: mpsc::UnboundedReceiver<Transmit>,
    datapath: datapath::Fake,
    channel: Channel,
    stop_api: watch::Sender<bool>,
    stop_core: watch::Sender<bool>,
    api: JoinHandle<()>,
    core_task: JoinHandle<()>,
    dir: TempDir,
    seq: u16,
    /// The core's metrics.
    registry: prometheus_client::registry::Registry,
}

impl Lab {
    async fn start() -> Lab {
        Lab::start_in(tempfile::tempdir().unwrap()).await
    }

    async fn start_in(dir: TempDir) -> Lab {
        Lab::start_with(dir, datapath::Fake::new()).await
    }

    /// Starts on `dir` with `datapath` for the kernel (what it holds is what a restarted LMA
    /// finds).
    async fn start_with(dir: TempDir, datapath: datapath::Fake) -> Lab {
        let config = config(dir.path());
        let store = Arc::new(Store::open(&config.state_dir).unwrap());
        let run = store.begin_run(1_800_000_000).unwrap();
        let clock = Clock::new();
        let (service, _) = lma_cnf::core::restore(config, &store, run, 7, &clock).unwrap();
        let (tx, sent) = mpsc::unbounded_channel();
        let mut registry = prometheus_client::registry::Registry::default();
        let (core, handle) = Core::new(Parts {
            service,
            store: store.clone(),
            run,
            datapath: Datapath::Fake(datapath.clone()),
            transport: Wire {
                sent: tx,
                store,
                datapath: datapath.clone(),
            },
            metrics: Metrics::new(&mut registry),
            clock,
        })
        .await
        .unwrap();
        let (stop_api, api_rx) = watch::channel(false);
        let (stop_core, mut core_rx) = watch::channel(false);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let api = lma_cnf::api::serve_on(&ApiConfig::default(), listener, handle.clone(), api_rx)
            .await
            .unwrap();
        let core_task = tokio::spawn(core.run(async move {
            let _ = core_rx.wait_for(|s| *s).await;
        }));
        let channel = Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        Lab {
            core: handle,
            sent,
            datapath,
            channel,
            stop_api,
            stop_core,
            api,
            core_task,
            dir,
            seq: 0,
            registry,
        }
    }

    /// Stops the API and the core; the state directory stays for a restart.
    async fn stop(self) -> TempDir {
        let Lab {
            channel,
            stop_api,
            stop_core,
            api,
            core_task,
            dir,
            ..
        } = self;
        drop(channel);
        let _ = stop_api.send(true);
        let _ = stop_core.send(true);
        timeout(WAIT, core_task).await.unwrap().unwrap();
        timeout(WAIT, api).await.unwrap().unwrap();
        dir
    }

    /// The metrics as `/metrics` serves them to a text-format client.
    fn metrics(&self) -> String {
        cnf::telemetry::scrape(&self.registry, Some("text/plain"))
            .unwrap()
            .0
    }

    fn bc(&self) -> BindingCacheClient<Channel> {
        BindingCacheClient::new(self.channel.clone())
    }

    fn policy(&self) -> PolicyClient<Channel> {
        PolicyClient::new(self.channel.clone())
    }

    /// Hands a Mobility Header from `src` to the core.
    async fn deliver(&self, src: Ipv6Addr, bytes: Vec<u8>) {
        self.core
            .call(|reply| Command::Receive {
                src,
                dst: LMA,
                bytes,
                reply,
            })
            .await
            .unwrap();
    }

    async fn next_sent(&mut self) -> Transmit {
        timeout(WAIT, self.sent.recv())
            .await
            .expect("the core sends something")
            .expect("the transport is open")
    }

    /// Sends a PBU from `mag` and returns the PBA.
    async fn pbu(
        &mut self,
        mag: Ipv6Addr,
        n: u8,
        hnp: Ipv6Net,
        hi: HandoffIndicator,
        lifetime_s: u32,
    ) -> Pba {
        self.pbu_with(mag, n, Some(hnp), None, hi, lifetime_s).await
    }

    /// Sends a PBU from `mag` with a Home Network Prefix option and an IPv4 Home Address
    /// Request (RFC 5844 §3.3.1) when given, and returns the PBA.
    async fn pbu_with(
        &mut self,
        mag: Ipv6Addr,
        n: u8,
        hnp: Option<Ipv6Net>,
        ipv4: Option<Ipv4Addr>,
        hi: HandoffIndicator,
        lifetime_s: u32,
    ) -> Pba {
        self.send_pbu(mag, n, hnp, ipv4, hi, lifetime_s).await;
        self.next_pba(mag).await
    }

    /// Hands a PBU from `mag` to the core without waiting for its PBA.
    async fn send_pbu(
        &mut self,
        mag: Ipv6Addr,
        n: u8,
        hnp: Option<Ipv6Net>,
        ipv4: Option<Ipv4Addr>,
        hi: HandoffIndicator,
        lifetime_s: u32,
    ) {
        self.seq = self.seq.wrapping_add(1);
        let id = nai(n);
        let link = ll(n);
        let ts = Timestamp::from_wall_clock(Clock::new().wall());
        let mut opts = vec![MobilityOption::MobileNodeIdentifier {
            subtype: MN_ID_SUBTYPE_NAI,
            id: id.as_bytes(),
        }];
        opts.extend(hnp.map(MobilityOption::HomeNetworkPrefix));
        opts.extend(ipv4.map(|address| MobilityOption::Ipv4HomeAddressRequest {
            prefix_len: 0,
            address,
        }));
        opts.extend([
            MobilityOption::HandoffIndicator(hi),
            MobilityOption::AccessTechnologyType(AccessTechnologyType::Ieee8023),
            MobilityOption::MnLinkLayerIdentifier(link.as_bytes()),
            MobilityOption::Timestamp(ts),
        ]);
        let m = Message::BindingUpdate(BindingUpdate {
            sequence: SequenceNumber(self.seq),
            flags: BuFlags::A | BuFlags::P,
            lifetime: Lifetime::from_secs(lifetime_s),
            options: Options::List(&opts),
        });
        let mut bytes = vec![0u8; m.buffer_len()];
        m.emit_with_checksum(&mut bytes, &mag, &LMA).unwrap();
        self.deliver(mag, bytes).await;
    }

    /// The next PBA the core sends, to `mag`.
    async fn next_pba(&mut self, mag: Ipv6Addr) -> Pba {
        // A restarted LMA tells its MAGs with heartbeats; they are not the answer.
        let t = loop {
            let t = self.next_sent().await;
            match Message::parse_verified(&t.payload, &t.src, &t.dst) {
                Ok(Message::Heartbeat(_)) => continue,
                _ => break t,
            }
        };
        assert_eq!((t.src, t.dst), (LMA, mag));
        match Message::parse_verified(&t.payload, &t.src, &t.dst).unwrap() {
            Message::BindingAck(ba) => {
                let v = ProxyBindingAck::new(&ba).unwrap();
                Pba {
                    status: ba.status,
                    prefixes: v.home_network_prefixes().collect(),
                    ipv4: ba.options.iter().find_map(|o| match o {
                        MobilityOption::Ipv4HomeAddressReply { address, .. } => Some(address),
                        _ => None,
                    }),
                }
            }
            other => panic!("expected a PBA, got {other:?}"),
        }
    }

    /// Registers node `n` at `mag` for the first time; returns its prefix.
    async fn attach(&mut self, mag: Ipv6Addr, n: u8) -> Ipv6Net {
        let pba = self
            .pbu(
                mag,
                n,
                all_zero(),
                HandoffIndicator::AttachmentOverNewInterface,
                3600,
            )
            .await;
        assert_eq!(pba.status, Status::Accepted, "{pba:?}");
        assert_eq!(pba.prefixes.len(), 1);
        pba.prefixes[0]
    }

    /// Answers the next BRI the core sends with a BRA of `status`; returns the BRI's trigger
    /// and the MAG it went to.
    async fn answer_bri(&mut self, status: BraStatus) -> (RevocationTrigger, Ipv6Addr) {
        let t = self.next_sent().await;
        let (trigger, bra) = match Message::parse_verified(&t.payload, &t.src, &t.dst).unwrap() {
            Message::BindingRevocation(BindingRevocation::Indication(bri)) => {
                let m = Message::BindingRevocation(BindingRevocation::Acknowledgement(
                    BindingRevocationAck {
                        status,
                        sequence: bri.sequence,
                        flags: bri.flags,
                        options: Options::EMPTY,
                    },
                ));
                let mut b = vec![0u8; m.buffer_len()];
                m.emit_with_checksum(&mut b, &t.dst, &LMA).unwrap();
                (bri.trigger, b)
            }
            other => panic!("expected a BRI, got {other:?}"),
        };
        self.deliver(t.dst, bra).await;
        (trigger, t.dst)
    }

    async fn stats(&self) -> pb::LmaStats {
        self.bc()
            .stats(pb::LmaStatsRequest {})
            .await
            .unwrap()
            .into_inner()
    }

    async fn watch(
        &self,
        resume_from: Option<(u64, u64)>,
        mn_id: &str,
    ) -> Streaming<pb::BindingEvent> {
        self.bc()
            .watch(pb::WatchBindingsRequest {
                resume_from: resume_from
                    .map(|(epoch, revision)| pb::WatchCursor { epoch, revision }),
                mn_id: mn_id.into(),
                ipv4_home_address: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
    }

    async fn get(&self, key: Key) -> Result<pb::Binding, tonic::Status> {
        self.bc()
            .get(pb::GetBindingRequest { key: Some(key) })
            .await
            .map(|r| r.into_inner())
    }
}

async fn next<T>(s: &mut Streaming<T>) -> T {
    timeout(WAIT, s.message())
        .await
        .expect("an event in time")
        .expect("the stream is healthy")
        .expect("the stream goes on")
}

/// Reads until SYNCED; returns the events before it and SYNCED.
async fn until_synced(
    s: &mut Streaming<pb::BindingEvent>,
) -> (Vec<pb::BindingEvent>, pb::BindingEvent) {
    let mut before = Vec::new();
    loop {
        let e = next(s).await;
        if matches!(e.event, Some(Event::Synced(_))) {
            return (before, e);
        }
        before.push(e);
    }
}

fn code<T: std::fmt::Debug>(r: Result<T, tonic::Status>) -> (Code, String) {
    let e = r.expect_err("an error");
    (e.code(), e.message().to_owned())
}

fn added(e: &pb::BindingEvent) -> &pb::Binding {
    match &e.event {
        Some(Event::Added(b)) => b,
        other => panic!("expected ADDED, got {other:?}"),
    }
}

fn updated(e: &pb::BindingEvent) -> (&pb::Binding, pb::UpdateReason) {
    match &e.event {
        Some(Event::Updated(u)) => (u.binding.as_ref().unwrap(), u.reason()),
        other => panic!("expected UPDATED, got {other:?}"),
    }
}

/// PBUs that arrive while a store commit is in flight are handled at once, and their PBAs
/// wait for the commit that carries their bindings (the transport checks each against the
/// disk as it leaves); they leave in the order the PBUs came.
#[tokio::test]
async fn pbas_made_while_a_commit_is_in_flight_wait_for_the_next_commit() {
    let mut lab = Lab::start().await;
    for n in 1..=6 {
        lab.send_pbu(
            if n % 2 == 0 { MAG2 } else { MAG1 },
            n,
            Some(all_zero()),
            None,
            HandoffIndicator::AttachmentOverNewInterface,
            3600,
        )
        .await;
    }
    let mut prefixes = Vec::new();
    for n in 1..=6u8 {
        let pba = lab.next_pba(if n % 2 == 0 { MAG2 } else { MAG1 }).await;
        assert_eq!(pba.status, Status::Accepted, "mn{n}: {pba:?}");
        prefixes.extend(pba.prefixes);
    }
    let stats = lab.stats().await;
    assert_eq!(stats.bindings, 6);
    // Every binding is on disk, each with its own prefix.
    prefixes.sort();
    prefixes.dedup();
    assert_eq!(prefixes.len(), 6);
    let dir = lab.stop().await;
    let stored = Store::open(dir.path())
        .unwrap()
        .load()
        .unwrap()
        .snapshot
        .bindings;
    assert_eq!(stored.len(), 6);
}

#[tokio::test]
async fn list_pages_through_the_cache_and_filters_by_proxy_coa() {
    let mut lab = Lab::start().await;
    for n in 1..=3 {
        lab.attach(MAG1, n).await;
    }
    for n in 4..=5 {
        lab.attach(MAG2, n).await;
    }
    let stats = lab.stats().await;
    let mut seen = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let r = lab
            .bc()
            .list(pb::ListBindingsRequest {
                page_size: 2,
                page_token: token.clone(),
                proxy_coa: String::new(),
            })
            .await
            .unwrap()
            .into_inner();
        pages += 1;
        assert!(r.bindings.len() <= 2);
        assert_eq!(r.total_size, 5);
        assert_eq!(
            r.cursor,
            Some(pb::WatchCursor {
                epoch: stats.epoch,
                revision: stats.revision
            })
        );
        seen.extend(r.bindings.into_iter().map(|b| b.mn_id));
        if r.next_page_token.is_empty() {
            break;
        }
        token = r.next_page_token;
    }
    assert_eq!(pages, 3);
    seen.sort();
    assert_eq!(seen, (1..=5).map(nai).collect::<Vec<_>>());

    // The default page holds everything; the filter keeps MAG2's.
    let all = lab
        .bc()
        .list(pb::ListBindingsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.bindings.len(), 5);
    assert!(all.next_page_token.is_empty());
    let at2 = lab
        .bc()
        .list(pb::ListBindingsRequest {
            proxy_coa: "2001:db8:2:0::10".into(),
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(at2.total_size, 2);
    assert_eq!(at2.bindings.len(), 1);
    assert_eq!(at2.bindings[0].proxy_coa, MAG2.to_string());
    let rest = lab
        .bc()
        .list(pb::ListBindingsRequest {
            proxy_coa: MAG2.to_string(),
            page_size: 1,
            page_token: at2.next_page_token,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rest.bindings.len(), 1);
    assert_ne!(rest.bindings[0].mn_id, at2.bindings[0].mn_id);
    assert!(rest.next_page_token.is_empty());

    // A token of this epoch naming the last slot there can be: past everything, an empty
    // last page (a client's number is never added to without a check), and the LMA serves on.
    let past = lab
        .bc()
        .list(pb::ListBindingsRequest {
            page_token: format!("{}.{}", stats.epoch, u32::MAX),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(past.bindings.is_empty() && past.next_page_token.is_empty());
    assert_eq!(lab.stats().await.bindings, 5);

    for (token, proxy_coa, field) in [
        ("garbage", "", "page_token: "),
        ("99.0", "", "page_token: the token is from LMA epoch 99"),
        ("", "mag-2", "proxy_coa: \"mag-2\" is not an IPv6 address"),
    ] {
        let (c, m) = code(
            lab.bc()
                .list(pb::ListBindingsRequest {
                    page_token: token.into(),
                    proxy_coa: proxy_coa.into(),
                    page_size: 0,
                })
                .await,
        );
        assert_eq!(c, Code::InvalidArgument);
        assert!(m.starts_with(field), "{m}");
    }
    lab.stop().await;
}

#[tokio::test]
async fn get_finds_a_binding_by_mn_id_prefix_or_address() {
    let mut lab = Lab::start().await;
    let before = Clock::new().wall();
    let p = lab.attach(MAG1, 1).await;
    lab.attach(MAG1, 2).await;
    // The datapath tunnels the prefix to the MAG before the PBA left.
    assert_eq!(
        lab.datapath.state().routes.get(&p),
        Some(PrefixRoute::Tunnel { peer: MAG1 })
    );

    let b = lab.get(Key::MnId(nai(1))).await.unwrap();
    assert_eq!(b.mn_id, nai(1));
    assert_eq!(b.home_network_prefixes, vec![p.to_string()]);
    assert_eq!(b.proxy_coa, MAG1.to_string());
    assert_eq!(b.state(), pb::BindingState::Active);
    assert_eq!(
        b.access_technology_type(),
        pb::AccessTechnologyType::Ieee8023
    );
    assert_eq!(b.handoff_indicator(), pb::HandoffIndicator::NewInterface);
    assert_eq!(b.mn_link_layer_id, "02:00:00:00:00:01");
    assert_eq!(b.lifetime_granted_seconds, 3600);
    assert!((3590..=3600).contains(&b.lifetime_remaining_seconds));
    assert_eq!(b.handover_count, 0);
    assert!(b.previous_proxy_coa.is_empty());
    assert!(b.revision > 0);
    let registered = b.registered_at.unwrap();
    assert!(registered.seconds as u64 >= before.0.as_secs() - 1);
    assert!(b.last_pbu_timestamp.is_some());

    let by_prefix = lab
        .get(Key::HomeNetworkPrefix(p.to_string()))
        .await
        .unwrap();
    // The same entry; its wall-clock times are recomputed from the monotonic clock at every
    // read, to the millisecond.
    assert_eq!(
        (
            &by_prefix.mn_id,
            &by_prefix.home_network_prefixes,
            by_prefix.revision
        ),
        (&b.mn_id, &b.home_network_prefixes, b.revision)
    );
    let again = by_prefix.registered_at.unwrap();
    let ms = |t: &prost_types::Timestamp| t.seconds * 1000 + i64::from(t.nanos / 1_000_000);
    assert!((ms(&again) - ms(&registered)).abs() <= 5);
    let inside = Ipv6Addr::from(u128::from(p.addr()) | 0x42);
    let by_address = lab
        .get(Key::HomeNetworkPrefix(inside.to_string()))
        .await
        .unwrap();
    assert_eq!(by_address.mn_id, nai(1));

    assert_eq!(
        code(lab.get(Key::MnId(nai(3))).await),
        (Code::NotFound, format!("{} has no binding", nai(3)))
    );
    assert_eq!(
        code(
            lab.get(Key::HomeNetworkPrefix("2001:db8:200::/64".into()))
                .await
        )
        .0,
        Code::NotFound
    );
    let (c, m) = code(lab.bc().get(pb::GetBindingRequest { key: None }).await);
    assert_eq!((c, m.starts_with("key: ")), (Code::InvalidArgument, true));
    let (c, m) = code(lab.get(Key::MnId("no one@example.org".into())).await);
    assert_eq!(c, Code::InvalidArgument);
    assert!(
        m.starts_with("mn_id: the mobile node identifier contains a space"),
        "{m}"
    );
    let (c, m) = code(
        lab.get(Key::HomeNetworkPrefix("2001:db8::/129".into()))
            .await,
    );
    assert_eq!(c, Code::InvalidArgument);
    assert_eq!(
        m,
        "home_network_prefix: 2001:db8::/129 is not an IPv6 prefix"
    );
    lab.stop().await;
}

/// RFC 5844: the IPv4 home address is in the binding views, a key of Get and a filter of
/// Watch, for a dual-stack node and an IPv4-only one.
#[tokio::test]
async fn ipv4_home_addresses_are_shown_found_and_watched() {
    let mut lab = Lab::start().await;
    let any = Ipv4Addr::UNSPECIFIED;
    // mn7 dual-stack, mn8 IPv4-only (no prefix option at all).
    let dual = lab
        .pbu_with(
            MAG1,
            7,
            Some(all_zero()),
            Some(any),
            HandoffIndicator::AttachmentOverNewInterface,
            3600,
        )
        .await;
    assert_eq!(dual.status, Status::Accepted, "{dual:?}");
    let a7 = dual.ipv4.expect("an IPv4 Home Address Reply");
    let only = lab
        .pbu_with(
            MAG2,
            8,
            None,
            Some(any),
            HandoffIndicator::AttachmentOverNewInterface,
            3600,
        )
        .await;
    assert_eq!(only.status, Status::Accepted, "{only:?}");
    assert!(only.prefixes.is_empty());
    let a8 = only.ipv4.expect("an IPv4 Home Address Reply");
    assert_ne!(a7, a8);
    lab.attach(MAG1, 1).await;

    let b7 = lab.get(Key::MnId(nai(7))).await.unwrap();
    assert_eq!(b7.ipv4_home_address, format!("{a7}/24"));
    assert_eq!(b7.ipv4_default_router, "192.0.2.1");
    assert_eq!(b7.home_network_prefixes, vec![dual.prefixes[0].to_string()]);
    let b8 = lab.get(Key::Ipv4HomeAddress(a8.to_string())).await.unwrap();
    assert_eq!(
        (b8.mn_id.as_str(), b8.ipv4_home_address.clone()),
        (nai(8).as_str(), format!("{a8}/24"))
    );
    assert!(b8.home_network_prefixes.is_empty());
    let b1 = lab.get(Key::MnId(nai(1))).await.unwrap();
    assert_eq!(
        (
            b1.ipv4_home_address.as_str(),
            b1.ipv4_default_router.as_str()
        ),
        ("", "")
    );
    let page = lab
        .bc()
        .list(pb::ListBindingsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let mut listed: Vec<(&str, &str)> = page
        .bindings
        .iter()
        .map(|b| (b.mn_id.as_str(), b.ipv4_home_address.as_str()))
        .collect();
    listed.sort();
    let (s7, s8) = (format!("{a7}/24"), format!("{a8}/24"));
    assert_eq!(
        listed,
        vec![
            (nai(1).as_str(), ""),
            (nai(7).as_str(), s7.as_str()),
            (nai(8).as_str(), s8.as_str())
        ]
    );
    assert_eq!(
        code(lab.get(Key::Ipv4HomeAddress("192.0.2.250".into())).await),
        (
            Code::NotFound,
            "no binding holds IPv4 home address 192.0.2.250".into()
        )
    );
    assert_eq!(
        code(lab.get(Key::Ipv4HomeAddress("2001:db8::1".into())).await),
        (
            Code::InvalidArgument,
            "ipv4_home_address: \"2001:db8::1\" is not an IPv4 address".into()
        )
    );

    // Watch by IPv4 home address: the snapshot holds mn8 only, then only mn8's changes.
    let mut by_v4 = lab
        .bc()
        .watch(pb::WatchBindingsRequest {
            resume_from: None,
            mn_id: String::new(),
            ipv4_home_address: a8.to_string(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(matches!(
        next(&mut by_v4).await.event,
        Some(Event::Reset(_))
    ));
    assert_eq!(added(&next(&mut by_v4).await).mn_id, nai(8));
    match next(&mut by_v4).await.event {
        Some(Event::Synced(s)) => assert_eq!(s.object_count, 1),
        other => panic!("expected SYNCED, got {other:?}"),
    }
    // A refresh of mn7 is not shown; mn8's handover to MAG1 is, with the same address.
    let r7 = lab
        .pbu_with(
            MAG1,
            7,
            Some(dual.prefixes[0]),
            Some(a7),
            HandoffIndicator::HandoffStateNotChanged,
            3600,
        )
        .await;
    assert_eq!((r7.status, r7.ipv4), (Status::Accepted, Some(a7)));
    let h8 = lab
        .pbu_with(
            MAG1,
            8,
            None,
            Some(a8),
            HandoffIndicator::HandoffBetweenMags,
            3600,
        )
        .await;
    assert_eq!((h8.status, h8.ipv4), (Status::Accepted, Some(a8)));
    let (b, why) = {
        let e = next(&mut by_v4).await;
        let (b, why) = updated(&e);
        (b.clone(), why)
    };
    assert_eq!(
        (b.mn_id.as_str(), why),
        (nai(8).as_str(), pb::UpdateReason::Handoff)
    );
    assert_eq!(
        (b.proxy_coa.clone(), b.ipv4_home_address),
        (MAG1.to_string(), s8)
    );
    let (c, m) = code(
        lab.bc()
            .watch(pb::WatchBindingsRequest {
                resume_from: None,
                mn_id: String::new(),
                ipv4_home_address: "192.0.2.x".into(),
            })
            .await,
    );
    assert_eq!(c, Code::InvalidArgument);
    assert!(m.starts_with("ipv4_home_address: "), "{m}");
    lab.stop().await;
}

#[tokio::test]
async fn watch_sends_a_snapshot_then_every_change_live() {
    let mut lab = Lab::start().await;
    let p1 = lab.attach(MAG1, 1).await;
    let epoch = lab.stats().await.epoch;

    let mut all = lab.watch(None, "").await;
    let mut only2 = lab.watch(None, &nai(2)).await;
    let reset = next(&mut all).await;
    assert_eq!(reset.epoch, epoch);
    match reset.event {
        Some(Event::Reset(r)) => assert_eq!(r.reason(), pb::ResetReason::NoCursor),
        other => panic!("expected RESET, got {other:?}"),
    }
    let (snapshot, synced) = until_synced(&mut all).await;
    assert_eq!(snapshot.len(), 1);
    let b = added(&snapshot[0]);
    assert_eq!(
        (b.mn_id.as_str(), b.home_network_prefixes[0].as_str()),
        (nai(1).as_str(), p1.to_string().as_str())
    );
    assert_eq!(snapshot[0].revision, reset.revision);
    assert_eq!(synced.revision, reset.revision);
    match synced.event {
        Some(Event::Synced(s)) => assert_eq!(s.object_count, 1),
        _ => unreachable!(),
    }
    // The filtered stream's snapshot has nothing of mn2 yet.
    assert!(matches!(
        next(&mut only2).await.event,
        Some(Event::Reset(_))
    ));
    let (snap2, _) = until_synced(&mut only2).await;
    assert!(snap2.is_empty());
    assert_eq!(lab.stats().await.watchers, 2);

    // A new registration, a handoff, a de-registration, the deletion after
    // MinDelayBeforeBCEDelete: each live, in revision order.
    let p2 = lab.attach(MAG1, 2).await;
    let e = next(&mut all).await;
    assert_eq!(added(&e).mn_id, nai(2));
    assert_eq!(added(&e).revision, e.revision);
    let mut last = e.revision;
    assert!(last > synced.revision);
    assert!(e.time.is_some());

    let pba = lab
        .pbu(MAG2, 2, p2, HandoffIndicator::HandoffBetweenMags, 3600)
        .await;
    assert_eq!(pba.status, Status::Accepted);
    let e = next(&mut all).await;
    let (b, why) = updated(&e);
    assert_eq!(why, pb::UpdateReason::Handoff);
    assert_eq!(b.proxy_coa, MAG2.to_string());
    assert_eq!(b.previous_proxy_coa, MAG1.to_string());
    assert_eq!(b.handover_count, 1);
    assert!(e.revision > last);
    last = e.revision;
    assert_eq!(
        lab.datapath.state().routes.get(&p2),
        Some(PrefixRoute::Tunnel { peer: MAG2 })
    );

    let pba = lab
        .pbu(MAG2, 2, p2, HandoffIndicator::HandoffStateNotChanged, 0)
        .await;
    assert_eq!(pba.status, Status::Accepted);
    let e = next(&mut all).await;
    let (b, why) = updated(&e);
    assert_eq!(why, pb::UpdateReason::Deregistered);
    assert_eq!(b.state(), pb::BindingState::Deregistering);
    assert_eq!(b.lifetime_remaining_seconds, 0);
    assert!(e.revision > last);
    last = e.revision;

    let e = next(&mut all).await;
    match &e.event {
        Some(Event::Deleted(d)) => {
            assert_eq!(d.reason(), pb::DeleteReason::Deregistered);
            assert_eq!(d.binding.as_ref().unwrap().mn_id, nai(2));
        }
        other => panic!("expected DELETED, got {other:?}"),
    }
    assert!(e.revision > last);

    // A PBU from a MAG nobody authorized is refused, and the watchers hear why.
    let pba = lab
        .pbu(
            MAG3,
            3,
            all_zero(),
            HandoffIndicator::AttachmentOverNewInterface,
            3600,
        )
        .await;
    assert_eq!(pba.status, Status::MagNotAuthorizedForProxyReg);
    let e = next(&mut all).await;
    match &e.event {
        Some(Event::Rejected(r)) => {
            assert_eq!(r.mn_id, nai(3));
            assert_eq!(r.proxy_coa, MAG3.to_string());
            assert_eq!(
                (r.status, r.status_name.as_str()),
                (154, "MAG_NOT_AUTHORIZED_FOR_PROXY_REG")
            );
            assert_eq!(r.count, 1);
            assert!(r.detail.contains("not an authorized MAG"), "{}", r.detail);
        }
        other => panic!("expected REJECTED, got {other:?}"),
    }

    // The filtered stream saw mn2's four changes and nothing else.
    let mut kinds = Vec::new();
    for _ in 0..4 {
        let e = next(&mut only2).await;
        kinds.push(match e.event {
            Some(Event::Added(b)) => format!("added {}", b.mn_id),
            Some(Event::Updated(u)) => format!("updated {}", u.binding.unwrap().mn_id),
            Some(Event::Deleted(d)) => format!("deleted {}", d.binding.unwrap().mn_id),
            other => format!("{other:?}"),
        });
    }
    let n2 = nai(2);
    assert_eq!(
        kinds,
        vec![
            format!("added {n2}"),
            format!("updated {n2}"),
            format!("updated {n2}"),
            format!("deleted {n2}")
        ]
    );
    assert!(
        timeout(Duration::from_millis(300), only2.message())
            .await
            .is_err()
    );

    // The snapshot of a new watcher shows the remembered refusal.
    let mut fresh = lab.watch(None, "").await;
    next(&mut fresh).await;
    let (snap, _) = until_synced(&mut fresh).await;
    let kinds: Vec<&str> = snap
        .iter()
        .map(|e| match &e.event {
            Some(Event::Added(_)) => "added",
            Some(Event::Rejected(_)) => "rejected",
            _ => "other",
        })
        .collect();
    assert_eq!(kinds, vec!["added", "rejected"]);

    let (c, m) = code(
        lab.bc()
            .watch(pb::WatchBindingsRequest {
                resume_from: None,
                mn_id: "a b".into(),
                ipv4_home_address: String::new(),
            })
            .await,
    );
    assert_eq!(c, Code::InvalidArgument);
    assert!(m.starts_with("mn_id: "));
    drop((all, only2, fresh));
    lab.stop().await;
}

#[tokio::test]
async fn watch_resumes_with_only_the_missed_events() {
    let mut lab = Lab::start().await;
    let p1 = lab.attach(MAG1, 1).await;
    let mut w = lab.watch(None, "").await;
    next(&mut w).await;
    let (_, synced) = until_synced(&mut w).await;
    let cursor = (synced.epoch, synced.revision);
    drop(w);

    // Missed while disconnected: a new node and a refresh of the first.
    lab.attach(MAG1, 2).await;
    let pba = lab
        .pbu(MAG1, 1, p1, HandoffIndicator::HandoffStateNotChanged, 3600)
        .await;
    assert_eq!(pba.status, Status::Accepted);

    let mut w = lab.watch(Some(cursor), "").await;
    let (missed, synced) = until_synced(&mut w).await;
    assert_eq!(missed.len(), 2, "{missed:?}");
    assert_eq!(added(&missed[0]).mn_id, nai(2));
    let (b, why) = updated(&missed[1]);
    assert_eq!(
        (b.mn_id.as_str(), why),
        (nai(1).as_str(), pb::UpdateReason::Refresh)
    );
    assert_eq!(missed[0].revision, cursor.1 + 1);
    assert_eq!(missed[1].revision, cursor.1 + 2);
    assert_eq!(synced.revision, missed[1].revision);
    match synced.event {
        Some(Event::Synced(s)) => assert_eq!(s.object_count, 2),
        _ => unreachable!(),
    }
    // Then live.
    lab.attach(MAG2, 3).await;
    let e = next(&mut w).await;
    assert_eq!(added(&e).mn_id, nai(3));
    assert_eq!(e.revision, synced.revision + 1);

    // Up to date: nothing replayed, SYNCED at once.
    let mut w2 = lab.watch(Some((e.epoch, e.revision)), "").await;
    let (missed, synced) = until_synced(&mut w2).await;
    assert!(missed.is_empty());
    assert_eq!(synced.revision, e.revision);

    // A cursor ahead of the server starts over.
    let mut w3 = lab.watch(Some((e.epoch, e.revision + 10)), "").await;
    match next(&mut w3).await.event {
        Some(Event::Reset(r)) => assert_eq!(r.reason(), pb::ResetReason::CursorInFuture),
        other => panic!("expected RESET, got {other:?}"),
    }
    let (snap, _) = until_synced(&mut w3).await;
    assert_eq!(snap.len(), 3);
    drop((w, w2, w3));
    lab.stop().await;
}

#[tokio::test]
async fn after_a_restart_an_old_cursor_gets_a_reset_and_the_restored_state() {
    let mut lab = Lab::start().await;
    let p = lab.attach(MAG1, 1).await;
    let mut w = lab.watch(None, "").await;
    next(&mut w).await;
    let (_, synced) = until_synced(&mut w).await;
    let old = (synced.epoch, synced.revision);
    let page = lab
        .bc()
        .list(pb::ListBindingsRequest {
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    drop(w);
    let counter = lab.stats().await.restart_counter;
    let dir = lab.stop().await;

    let lab = Lab::start_in(dir).await;
    let stats = lab.stats().await;
    // RFC 5847 §3.2: the store kept every session, so the Restart Counter MUST NOT change;
    // the run (the Watch epoch) did.
    assert_eq!(stats.restart_counter, counter);
    assert_eq!(stats.epoch, old.0 + 1);
    let mut w = lab.watch(Some(old), "").await;
    let reset = next(&mut w).await;
    assert_eq!(reset.epoch, old.0 + 1);
    match reset.event {
        Some(Event::Reset(r)) => assert_eq!(r.reason(), pb::ResetReason::NewEpoch),
        other => panic!("expected RESET, got {other:?}"),
    }
    let (snap, synced) = until_synced(&mut w).await;
    assert_eq!(snap.len(), 1);
    assert_eq!(added(&snap[0]).home_network_prefixes, vec![p.to_string()]);
    assert_eq!(synced.epoch, old.0 + 1);

    // A page token of the previous epoch is refused, even one for a page that exists.
    let token = format!("{}.0", old.0);
    assert!(page.next_page_token.is_empty() || page.next_page_token == token);
    let (c, m) = code(
        lab.bc()
            .list(pb::ListBindingsRequest {
                page_token: token,
                ..Default::default()
            })
            .await,
    );
    assert_eq!(c, Code::InvalidArgument);
    assert!(m.contains("the LMA restarted"), "{m}");
    drop(w);
    lab.stop().await;
}

#[tokio::test]
async fn revoke_waits_for_the_mags_answer_or_its_absence() {
    let mut lab = Lab::start().await;
    let p1 = lab.attach(MAG1, 1).await;
    lab.attach(MAG2, 2).await;
    lab.attach(MAG1, 3).await;
    let mut w = lab.watch(None, &nai(1)).await;
    next(&mut w).await;
    until_synced(&mut w).await;

    // Acknowledged.
    let mut bc = lab.bc();
    let call = tokio::spawn(async move {
        bc.revoke(pb::RevokeRequest {
            mn_id: nai(1),
            trigger: pb::RevocationTrigger::AdministrativeReason as i32,
            proxy_coa: String::new(),
        })
        .await
    });
    let (trigger, to) = lab.answer_bri(BraStatus::Success).await;
    assert_eq!(
        (trigger, to),
        (RevocationTrigger::AdministrativeReason, MAG1)
    );
    let r = timeout(WAIT, call)
        .await
        .unwrap()
        .unwrap()
        .unwrap()
        .into_inner();
    assert_eq!(r.outcome(), pb::RevocationOutcome::Acknowledged);
    assert_eq!(
        (r.bra_status, r.bra_status_name.as_str()),
        (Some(0), "success")
    );
    let b = r.binding.unwrap();
    assert_eq!(
        (b.mn_id.as_str(), b.home_network_prefixes[0].as_str()),
        (nai(1).as_str(), p1.to_string().as_str())
    );
    assert_eq!(code(lab.get(Key::MnId(nai(1))).await).0, Code::NotFound);
    assert!(!lab.datapath.state().routes.contains_key(&p1));
    let e = next(&mut w).await;
    match e.event {
        Some(Event::Deleted(d)) => assert_eq!(d.reason(), pb::DeleteReason::Revoked),
        other => panic!("expected DELETED, got {other:?}"),
    }

    // The MAG refuses: the entry goes anyway.
    let mut bc = lab.bc();
    let call = tokio::spawn(async move {
        bc.revoke(pb::RevokeRequest {
            mn_id: nai(3),
            trigger: pb::RevocationTrigger::PossibleOutOfSyncBceState as i32,
            proxy_coa: String::new(),
        })
        .await
    });
    let (trigger, _) = lab
        .answer_bri(BraStatus::RevocationFailedMnIsAttached)
        .await;
    assert_eq!(trigger, RevocationTrigger::PossibleOutOfSyncBceState);
    let r = timeout(WAIT, call)
        .await
        .unwrap()
        .unwrap()
        .unwrap()
        .into_inner();
    assert_eq!(r.outcome(), pb::RevocationOutcome::RefusedByMag);
    assert_eq!(r.bra_status, Some(132));
    assert_eq!(r.bra_status_name, "Revocation Failed - MN is Attached");

    // Nobody answers: the retries run out (500 ms here) and the entry goes.
    let started = std::time::Instant::now();
    let r = lab
        .bc()
        .revoke(pb::RevokeRequest {
            mn_id: nai(2),
            trigger: 0,
            proxy_coa: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(started.elapsed() >= Duration::from_millis(450));
    assert_eq!(r.outcome(), pb::RevocationOutcome::NoAcknowledgement);
    assert_eq!((r.bra_status, r.bra_status_name.as_str()), (None, ""));
    assert_eq!(r.binding.unwrap().proxy_coa, MAG2.to_string());
    assert_eq!(code(lab.get(Key::MnId(nai(2))).await).0, Code::NotFound);

    // Nothing left to revoke; a global trigger is not for one node.
    let (c, m) = code(
        lab.bc()
            .revoke(pb::RevokeRequest {
                mn_id: nai(1),
                trigger: 1,
                proxy_coa: String::new(),
            })
            .await,
    );
    assert_eq!(
        (c, m),
        (
            Code::NotFound,
            format!("{} has no binding: nothing to revoke", nai(1))
        )
    );
    let (c, m) = code(
        lab.bc()
            .revoke(pb::RevokeRequest {
                mn_id: nai(1),
                trigger: 128,
                proxy_coa: String::new(),
            })
            .await,
    );
    assert_eq!(c, Code::InvalidArgument);
    assert!(
        m.starts_with("trigger: 128 is not a per-node revocation trigger"),
        "{m}"
    );
    assert_eq!(lab.stats().await.revocations, 3);
    drop(w);
    lab.stop().await;
}

/// Get by an address finds the home network prefix that covers it whatever its length: here a
/// /56 pinned outside every pool, not only the pools' lengths.
#[tokio::test]
async fn get_by_an_address_finds_a_pinned_prefix_of_any_length() {
    let mut lab = Lab::start().await;
    upsert(
        &lab,
        pb::MobileNodeProfile {
            mn_id: nai(9),
            link_layer_addresses: vec![ll(9).to_string()],
            home_network_prefixes: vec!["2001:db8:300::/56".into()],
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let p = lab.attach(MAG1, 9).await;
    assert_eq!(p, "2001:db8:300::/56".parse::<Ipv6Net>().unwrap());
    for inside in ["2001:db8:300::1", "2001:db8:300:ff:1:2:3:4"] {
        let b = lab
            .get(Key::HomeNetworkPrefix(inside.into()))
            .await
            .unwrap();
        assert_eq!(b.mn_id, nai(9), "{inside}");
    }
    assert_eq!(
        code(
            lab.get(Key::HomeNetworkPrefix("2001:db8:300:100::1".into()))
                .await
        )
        .0,
        Code::NotFound
    );
    lab.stop().await;
}

fn api_profile(mn_id: &str) -> pb::MobileNodeProfile {
    pb::MobileNodeProfile {
        mn_id: mn_id.into(),
        link_layer_addresses: vec!["02-00-00-00-01-01".into()],
        home_network_prefixes: vec!["2001:db8:100:ff::/64".into()],
        allowed_mags: vec![MAG1.to_string()],
        access_technology_type: Some(pb::AccessTechnologyType::Ieee80211 as i32),
        local_routing: None,
        proxy_registration_enabled: None,
        ..Default::default()
    }
}

async fn upsert(
    lab: &Lab,
    p: pb::MobileNodeProfile,
) -> Result<pb::UpsertMobileNodeResponse, tonic::Status> {
    lab.policy()
        .upsert_mobile_node(pb::UpsertMobileNodeRequest { profile: Some(p) })
        .await
        .map(|r| r.into_inner())
}

/// RFC 5844 §3.2.2 over the Policy API (what the operator sends for a MobileNode): an
/// IPv4-only profile with a pinned IPv4 home address is stored and read back as sent, its
/// node registers without a prefix and gets that address; a pin outside every IPv4 pool is
/// refused with a message that names the field.
#[tokio::test]
async fn ipv4_profiles_go_over_the_api_and_a_pin_outside_the_pools_is_refused() {
    let mut lab = Lab::start().await;
    let v4 = pb::MobileNodeProfile {
        mn_id: nai(9),
        link_layer_addresses: vec![ll(9).to_string()],
        ipv6: Some(false),
        ipv4: Some(true),
        ipv4_home_address: "192.0.2.77".into(),
        ..Default::default()
    };
    upsert(&lab, v4.clone()).await.unwrap();
    let back = lab
        .policy()
        .get_mobile_node(pb::GetMobileNodeRequest { mn_id: nai(9) })
        .await
        .unwrap()
        .into_inner()
        .profile
        .unwrap();
    assert_eq!(back, v4);
    let pba = lab
        .pbu_with(
            MAG1,
            9,
            None,
            Some(Ipv4Addr::UNSPECIFIED),
            HandoffIndicator::AttachmentOverNewInterface,
            3600,
        )
        .await;
    assert_eq!(
        (pba.status, pba.ipv4, pba.prefixes.len()),
        (Status::Accepted, Some(Ipv4Addr::new(192, 0, 2, 77)), 0)
    );
    let (c, m) = code(
        upsert(
            &lab,
            pb::MobileNodeProfile {
                mn_id: nai(10),
                ipv4_home_address: "198.51.100.7".into(),
                ..v4.clone()
            },
        )
        .await,
    );
    assert_ne!(c, Code::Ok);
    assert!(m.contains("ipv4_home_address"), "{c:?} {m}");
    let (c, m) = code(
        upsert(
            &lab,
            pb::MobileNodeProfile {
                mn_id: nai(10),
                ipv4_home_address: "192.0.2".into(),
                ..v4
            },
        )
        .await,
    );
    assert_eq!(c, Code::InvalidArgument);
    assert_eq!(m, "ipv4_home_address: \"192.0.2\" is not an IPv4 address");
    lab.stop().await;
}

/// RFC 5213 §5.3.1 rule 8 over the Policy API: a profile with proxy_registration_enabled
/// false is stored, read back and kept across a restart, and its node's PBUs get
/// PROXY_REG_NOT_ENABLED until the profile allows it again.
#[tokio::test]
async fn a_profile_without_proxy_registration_gets_152_also_after_a_restart() {
    let mut lab = Lab::start().await;
    let off = pb::MobileNodeProfile {
        mn_id: nai(9),
        link_layer_addresses: vec![ll(9).to_string()],
        proxy_registration_enabled: Some(false),
        ..Default::default()
    };
    upsert(&lab, off).await.unwrap();
    let get = |lab: &Lab| {
        let mut c = lab.policy();
        async move {
            c.get_mobile_node(pb::GetMobileNodeRequest { mn_id: nai(9) })
                .await
                .unwrap()
                .into_inner()
                .profile
                .unwrap()
                .proxy_registration_enabled
        }
    };
    assert_eq!(get(&lab).await, Some(false));
    async fn refused(lab: &mut Lab) -> Pba {
        lab.pbu(
            MAG1,
            9,
            all_zero(),
            HandoffIndicator::AttachmentOverNewInterface,
            3600,
        )
        .await
    }
    assert_eq!(refused(&mut lab).await.status, Status::ProxyRegNotEnabled);
    let dir = lab.stop().await;

    let mut lab = Lab::start_in(dir).await;
    assert_eq!(get(&lab).await, Some(false));
    assert_eq!(refused(&mut lab).await.status, Status::ProxyRegNotEnabled);
    // Unset is enabled.
    let on = pb::MobileNodeProfile {
        mn_id: nai(9),
        link_layer_addresses: vec![ll(9).to_string()],
        ..Default::default()
    };
    upsert(&lab, on).await.unwrap();
    assert_eq!(get(&lab).await, None);
    lab.attach(MAG1, 9).await;
    lab.stop().await;
}

#[tokio::test]
async fn profiles_are_upserted_listed_and_deleted_with_clear_refusals() {
    let mut lab = Lab::start().await;
    let r = upsert(&lab, api_profile("api1@example.org")).await.unwrap();
    assert!(r.created && r.changed);
    let entry = r.entry.unwrap();
    assert_eq!(entry.source(), pb::PolicySource::Api);
    assert!(entry.revision > 0);
    assert!(entry.updated_at.is_some());
    let stored = entry.profile.unwrap();
    assert_eq!(stored.link_layer_addresses, vec!["02:00:00:00:01:01"]);
    assert_eq!(stored.access_technology_type, Some(4));

    // The same again changes nothing; a change keeps the entry and moves its revision.
    let again = upsert(&lab, api_profile("api1@example.org")).await.unwrap();
    assert!(!again.created && !again.changed);
    assert_eq!(again.entry.unwrap().revision, entry.revision);
    let mut changed = api_profile("api1@example.org");
    changed.local_routing = Some(true);
    let r = upsert(&lab, changed).await.unwrap();
    assert!(!r.created && r.changed);
    assert!(r.entry.unwrap().revision > entry.revision);

    // Refusals, each with the code the proto promises and a message naming the problem.
    let cases: Vec<(pb::MobileNodeProfile, Code, &str)> = vec![
        (
            pb::MobileNodeProfile {
                home_network_prefixes: vec!["2001:db8:100:fe::/64".into(), "2001:db8::/129".into()],
                ..api_profile("api2@example.org")
            },
            Code::InvalidArgument,
            "home_network_prefixes[1]: 2001:db8::/129 is not an IPv6 prefix",
        ),
        (
            pb::MobileNodeProfile {
                home_network_prefixes: vec!["2001:db8:100:fe::1/64".into()],
                ..api_profile("api2@example.org")
            },
            Code::InvalidArgument,
            "home_network_prefixes[0]: 2001:db8:100:fe::1/64 has host bits set",
        ),
        (
            pb::MobileNodeProfile {
                link_layer_addresses: vec![ll(1).to_string()],
                home_network_prefixes: vec![],
                ..api_profile("api2@example.org")
            },
            Code::AlreadyExists,
            "link-layer address 02:00:00:00:00:01 already belongs to mn1@example.org",
        ),
        (
            pb::MobileNodeProfile {
                link_layer_addresses: vec![],
                ..api_profile("api2@example.org")
            },
            Code::AlreadyExists,
            "prefix 2001:db8:100:ff::/64 is already pinned to api1@example.org",
        ),
        (
            pb::MobileNodeProfile {
                link_layer_addresses: vec![],
                home_network_prefixes: vec!["2001:db8:100:1000::/56".into()],
                ..api_profile("api2@example.org")
            },
            Code::OutOfRange,
            "home_network_prefixes[0]: 2001:db8:100:1000::/56 overlaps the pool 2001:db8:100::/48 \
             without being one of its /64 prefixes",
        ),
        (
            pb::MobileNodeProfile {
                link_layer_addresses: vec![],
                home_network_prefixes: vec!["2001:db8:100::/47".into()],
                ..api_profile("api2@example.org")
            },
            Code::OutOfRange,
            "home_network_prefixes[0]: 2001:db8:100::/47 overlaps the pool",
        ),
        (
            pb::MobileNodeProfile {
                mn_id: nai(1),
                link_layer_addresses: vec![ll(1).to_string()],
                home_network_prefixes: vec![],
                ..Default::default()
            },
            Code::FailedPrecondition,
            "mn1@example.org comes from the configuration file; change it there",
        ),
    ];
    for (p, want, msg) in cases {
        let (c, m) = code(upsert(&lab, p).await);
        assert_eq!(c, want, "{m}");
        assert!(m.starts_with(msg), "{m} does not start with {msg}");
    }
    let (c, m) = code(
        lab.policy()
            .upsert_mobile_node(pb::UpsertMobileNodeRequest { profile: None })
            .await,
    );
    assert_eq!((c, m.as_str()), (Code::InvalidArgument, "profile: missing"));

    // Get and list, with their source.
    let got = lab
        .policy()
        .get_mobile_node(pb::GetMobileNodeRequest { mn_id: nai(1) })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.source(), pb::PolicySource::Config);
    assert_eq!(
        got.profile.unwrap().link_layer_addresses,
        vec![ll(1).to_string()]
    );
    let got = lab
        .policy()
        .get_mobile_node(pb::GetMobileNodeRequest {
            mn_id: "api1@example.org".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.source(), pb::PolicySource::Api);
    assert_eq!(got.profile.unwrap().local_routing, Some(true));
    assert_eq!(
        code(
            lab.policy()
                .get_mobile_node(pb::GetMobileNodeRequest {
                    mn_id: "nobody@example.org".into()
                })
                .await
        ),
        (Code::NotFound, "no profile for nobody@example.org".into())
    );
    let mut ids = Vec::new();
    let mut token = String::new();
    loop {
        let r = lab
            .policy()
            .list_mobile_nodes(pb::ListMobileNodesRequest {
                page_size: 4,
                page_token: token,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.total_size, 9);
        assert!(r.entries.len() <= 4);
        ids.extend(r.entries.into_iter().map(|e| e.profile.unwrap().mn_id));
        if r.next_page_token.is_empty() {
            break;
        }
        token = r.next_page_token;
    }
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted);
    assert_eq!(ids.len(), 9);
    assert_eq!(ids[0], "api1@example.org");
    let (c, _) = code(
        lab.policy()
            .list_mobile_nodes(pb::ListMobileNodesRequest {
                page_size: 4,
                page_token: "x".into(),
            })
            .await,
    );
    assert_eq!(c, Code::InvalidArgument);

    // A registration under the API profile, then its deletion: the binding stays.
    let pba = lab
        .pbu(
            MAG1,
            0,
            all_zero(),
            HandoffIndicator::AttachmentOverNewInterface,
            3600,
        )
        .await;
    // Node 0 (mn0@example.org) has no profile.
    assert_eq!(pba.status, Status::NotLmaForThisMobileNode);
    let policy = lab.policy();
    let delete = |mn_id: &str| {
        let mut c = policy.clone();
        let mn_id = mn_id.to_owned();
        async move {
            c.delete_mobile_node(pb::DeleteMobileNodeRequest { mn_id })
                .await
                .map(|r| r.into_inner())
        }
    };
    let p1 = lab.attach(MAG1, 1).await;
    assert_eq!(
        code(delete(&nai(1)).await),
        (
            Code::FailedPrecondition,
            "mn1@example.org comes from the configuration file; change it there".into()
        )
    );
    delete("api1@example.org").await.unwrap();
    assert_eq!(
        code(delete("api1@example.org").await),
        (Code::NotFound, "no profile for api1@example.org".into())
    );
    assert_eq!(code(delete("").await).0, Code::InvalidArgument);
    assert_eq!(
        lab.get(Key::MnId(nai(1)))
            .await
            .unwrap()
            .home_network_prefixes,
        vec![p1.to_string()]
    );
    lab.stop().await;
}

async fn apply(
    lab: &Lab,
    profiles: Vec<pb::MobileNodeProfile>,
) -> Result<Vec<pb::UpsertMobileNodeResponse>, tonic::Status> {
    lab.policy()
        .apply_mobile_nodes(pb::ApplyMobileNodesRequest { profiles })
        .await
        .map(|r| r.into_inner().results)
}

async fn profile_ids(lab: &Lab) -> Vec<String> {
    lab.policy()
        .list_mobile_nodes(pb::ListMobileNodesRequest {
            page_size: 1000,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .entries
        .into_iter()
        .map(|e| e.profile.unwrap().mn_id)
        .collect()
}

#[tokio::test]
async fn apply_changes_every_profile_or_none() {
    let lab = Lab::start().await;
    let bare = |id: &str| pb::MobileNodeProfile {
        mn_id: id.into(),
        ..Default::default()
    };
    upsert(&lab, api_profile("api1@example.org")).await.unwrap();
    let before = profile_ids(&lab).await;
    let mut events = lab
        .policy()
        .watch_mobile_nodes(pb::WatchMobileNodesRequest { resume_from: None })
        .await
        .unwrap()
        .into_inner();
    let cursor = loop {
        let e = next(&mut events).await;
        if let Some(pb::mobile_node_event::Event::Synced(_)) = e.event {
            break (e.epoch, e.revision);
        }
    };

    // The third profile takes the link-layer address of a configuration profile: the first
    // is not created, and the change to api1 is undone.
    let mut api1 = api_profile("api1@example.org");
    api1.local_routing = Some(true);
    let (c, m) = code(
        apply(
            &lab,
            vec![
                bare("new6@example.org"),
                api1,
                pb::MobileNodeProfile {
                    link_layer_addresses: vec![ll(1).to_string()],
                    ..bare("new7@example.org")
                },
            ],
        )
        .await,
    );
    assert_eq!(c, Code::AlreadyExists, "{m}");
    assert_eq!(
        m,
        "profiles[2] (new7@example.org): link-layer address 02:00:00:00:00:01 already belongs \
         to mn1@example.org; nothing was changed"
    );
    assert_eq!(profile_ids(&lab).await, before);
    let api1_now = lab
        .policy()
        .get_mobile_node(pb::GetMobileNodeRequest {
            mn_id: "api1@example.org".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(api1_now.profile.unwrap().local_routing, None);

    // Refusals found before anything is tried: a profile of the configuration file, a
    // pinned prefix across the pool, the same MN-ID twice, a malformed field.
    let cases: Vec<(Vec<pb::MobileNodeProfile>, Code, &str)> = vec![
        (
            vec![bare("new6@example.org"), bare(&nai(2))],
            Code::FailedPrecondition,
            "profiles[1] (mn2@example.org): mn2@example.org comes from the configuration file",
        ),
        (
            vec![
                bare("new6@example.org"),
                pb::MobileNodeProfile {
                    home_network_prefixes: vec!["2001:db8:100::/56".into()],
                    ..bare("new7@example.org")
                },
            ],
            Code::OutOfRange,
            "profiles[1] (new7@example.org): home_network_prefixes[0]: 2001:db8:100::/56 overlaps",
        ),
        (
            vec![bare("new6@example.org"), bare("new6@example.org")],
            Code::InvalidArgument,
            "profiles[1] (new6@example.org): new6@example.org is given twice",
        ),
        (
            vec![bare("new6@example.org"), bare("not an nai")],
            Code::InvalidArgument,
            "profiles[1].mn_id: ",
        ),
    ];
    for (ps, want, msg) in cases {
        let (c, m) = code(apply(&lab, ps).await);
        assert_eq!(c, want, "{m}");
        assert!(m.starts_with(msg), "{m} does not start with {msg}");
        assert!(m.ends_with("nothing was changed"), "{m}");
        assert_eq!(profile_ids(&lab).await, before);
    }
    // Nothing was published meanwhile.
    assert!(
        tokio::time::timeout(Duration::from_millis(200), events.message())
            .await
            .is_err(),
        "a refused batch published a change"
    );

    // A batch that fits is applied whole, in order; a prefix outside every pool may be
    // pinned, as in the configuration file.
    let done = apply(
        &lab,
        vec![
            bare("new6@example.org"),
            api_profile("api1@example.org"),
            pb::MobileNodeProfile {
                home_network_prefixes: vec!["2001:db8:200::/64".into()],
                ..bare("new7@example.org")
            },
        ],
    )
    .await
    .unwrap();
    let flags: Vec<(bool, bool)> = done.iter().map(|r| (r.created, r.changed)).collect();
    assert_eq!(flags, [(true, true), (false, false), (true, true)]);
    let ids = profile_ids(&lab).await;
    assert!(
        ids.contains(&"new6@example.org".to_owned())
            && ids.contains(&"new7@example.org".to_owned())
    );
    let mut published = Vec::new();
    while published.len() < 2 {
        let e = next(&mut events).await;
        if let Some(pb::mobile_node_event::Event::Upserted(u)) = e.event {
            assert!((e.epoch, e.revision) > cursor);
            published.push(u.profile.unwrap().mn_id);
        }
    }
    assert_eq!(published, ["new6@example.org", "new7@example.org"]);
    lab.stop().await;
}

#[tokio::test]
async fn authorized_mags_are_set_added_and_removed() {
    let mut lab = Lab::start().await;
    let list = |lab: &Lab| {
        let mut c = lab.policy();
        async move {
            c.list_authorized_mags(pb::ListAuthorizedMagsRequest {})
                .await
                .unwrap()
                .into_inner()
                .mags
                .into_iter()
                .map(|m| (m.proxy_coa.clone(), m.name.clone(), m.source()))
                .collect::<Vec<_>>()
        }
    };
    let set = |lab: &Lab, mags: &[(Ipv6Addr, &str)]| {
        let mut c = lab.policy();
        let mags = mags
            .iter()
            .map(|(a, n)| pb::AuthorizedMag {
                proxy_coa: a.to_string(),
                name: (*n).into(),
                source: 0,
            })
            .collect();
        async move {
            c.set_authorized_mags(pb::SetAuthorizedMagsRequest { mags })
                .await
                .map(|r| r.into_inner())
        }
    };
    let config = pb::PolicySource::Config;
    assert_eq!(
        list(&lab).await,
        vec![
            (MAG1.to_string(), String::new(), config),
            (MAG2.to_string(), String::new(), config)
        ]
    );
    assert_eq!(
        lab.pbu(
            MAG3,
            1,
            all_zero(),
            HandoffIndicator::AttachmentOverNewInterface,
            3600
        )
        .await
        .status,
        Status::MagNotAuthorizedForProxyReg
    );

    let r = set(&lab, &[(MAG3, "node-c")]).await.unwrap();
    assert_eq!(
        (r.added, r.removed, r.renamed),
        (vec![MAG3.to_string()], vec![], vec![])
    );
    let r = set(&lab, &[(MAG3, "node-c")]).await.unwrap();
    assert!(r.added.is_empty() && r.removed.is_empty() && r.renamed.is_empty());
    let r = set(&lab, &[(MAG3, "node-c2")]).await.unwrap();
    assert_eq!(r.renamed, vec![MAG3.to_string()]);
    assert_eq!(
        list(&lab).await[2],
        (MAG3.to_string(), "node-c2".into(), pb::PolicySource::Api)
    );
    // Now MAG3 may register nodes, and the binding carries its name.
    lab.attach(MAG3, 1).await;
    assert_eq!(
        lab.get(Key::MnId(nai(1)))
            .await
            .unwrap()
            .mag_name
            .as_deref(),
        Some("node-c2")
    );

    // A set with a mistake changes nothing.
    let (c, m) = code(set(&lab, &[(MAG2, "b"), (MAG3, "c"), (MAG3, "d")]).await);
    assert_eq!(c, Code::InvalidArgument);
    assert_eq!(
        m,
        format!("mags[2].proxy_coa: {MAG3} is given twice; nothing was changed")
    );
    let (c, m) = code(set(&lab, &[("fe80::1".parse().unwrap(), "x")]).await);
    assert_eq!(c, Code::InvalidArgument);
    assert!(
        m.starts_with("mags[0].proxy_coa: fe80::1 cannot be a proxy-CoA"),
        "{m}"
    );
    assert_eq!(list(&lab).await.len(), 3);

    let r = set(&lab, &[]).await.unwrap();
    assert_eq!(r.removed, vec![MAG3.to_string()]);
    assert_eq!(list(&lab).await.len(), 2);
    // The binding stays; new registrations through MAG3 are refused.
    assert!(lab.get(Key::MnId(nai(1))).await.is_ok());
    assert_eq!(
        lab.pbu(
            MAG3,
            2,
            all_zero(),
            HandoffIndicator::AttachmentOverNewInterface,
            3600
        )
        .await
        .status,
        Status::MagNotAuthorizedForProxyReg
    );

    // One at a time.
    let mut p = lab.policy();
    let m = p
        .add_authorized_mag(pb::AddAuthorizedMagRequest {
            mag: Some(pb::AuthorizedMag {
                proxy_coa: "2001:db8:3:0:0:0:0:10".into(),
                name: "node-c".into(),
                source: pb::PolicySource::Config as i32,
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (m.proxy_coa.as_str(), m.name.as_str(), m.source()),
        ("2001:db8:3::10", "node-c", pb::PolicySource::Api)
    );
    let (c, m) = code(
        p.add_authorized_mag(pb::AddAuthorizedMagRequest {
            mag: Some(pb::AuthorizedMag {
                proxy_coa: "ff02::2".into(),
                ..Default::default()
            }),
        })
        .await,
    );
    assert_eq!(c, Code::InvalidArgument);
    assert!(
        m.starts_with("mag.proxy_coa: ff02::2 cannot be a proxy-CoA"),
        "{m}"
    );
    p.remove_authorized_mag(pb::RemoveAuthorizedMagRequest {
        proxy_coa: MAG3.to_string(),
    })
    .await
    .unwrap();
    let (c, _) = code(
        p.remove_authorized_mag(pb::RemoveAuthorizedMagRequest {
            proxy_coa: MAG3.to_string(),
        })
        .await,
    );
    assert_eq!(c, Code::NotFound);
    let (c, m) = code(
        p.remove_authorized_mag(pb::RemoveAuthorizedMagRequest {
            proxy_coa: MAG1.to_string(),
        })
        .await,
    );
    assert_eq!(c, Code::FailedPrecondition);
    assert!(m.contains("configuration file"), "{m}");
    lab.stop().await;
}

#[tokio::test]
async fn watch_mobile_nodes_snapshots_resumes_and_follows_changes() {
    let lab = Lab::start().await;
    let watch = |resume_from: Option<pb::WatchCursor>| {
        let mut c = lab.policy();
        async move {
            c.watch_mobile_nodes(pb::WatchMobileNodesRequest { resume_from })
                .await
                .unwrap()
                .into_inner()
        }
    };
    let mut w = watch(None).await;
    let reset = next(&mut w).await;
    match reset.event {
        Some(ProfileEvent::Reset(r)) => assert_eq!(r.reason(), pb::ResetReason::NoCursor),
        other => panic!("expected RESET, got {other:?}"),
    }
    let mut snapshot = Vec::new();
    let synced = loop {
        let e = next(&mut w).await;
        match e.event {
            Some(ProfileEvent::Upserted(entry)) => {
                assert_eq!(entry.source(), pb::PolicySource::Config);
                snapshot.push(entry.profile.unwrap().mn_id);
            }
            Some(ProfileEvent::Synced(s)) => {
                assert_eq!(s.object_count, 8);
                break e;
            }
            other => panic!("unexpected {other:?}"),
        }
    };
    snapshot.sort();
    assert_eq!(snapshot, (1..=8).map(nai).collect::<Vec<_>>());
    assert_eq!(synced.revision, reset.revision);

    upsert(&lab, api_profile("api1@example.org")).await.unwrap();
    let e = next(&mut w).await;
    match &e.event {
        Some(ProfileEvent::Upserted(entry)) => {
            assert_eq!(entry.source(), pb::PolicySource::Api);
            assert_eq!(entry.revision, e.revision);
            assert_eq!(entry.profile.as_ref().unwrap().mn_id, "api1@example.org");
        }
        other => panic!("expected UPSERTED, got {other:?}"),
    }
    assert_eq!(e.revision, synced.revision + 1);
    let cursor = pb::WatchCursor {
        epoch: e.epoch,
        revision: e.revision,
    };
    drop(w);

    // Missed: a second profile and the first's removal.
    upsert(
        &lab,
        pb::MobileNodeProfile {
            mn_id: "api2@example.org".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    lab.policy()
        .delete_mobile_node(pb::DeleteMobileNodeRequest {
            mn_id: "api1@example.org".into(),
        })
        .await
        .unwrap();
    let mut w = watch(Some(cursor)).await;
    let e = next(&mut w).await;
    assert!(
        matches!(&e.event, Some(ProfileEvent::Upserted(x)) if x.profile.as_ref().unwrap().mn_id == "api2@example.org"),
        "{e:?}"
    );
    let e = next(&mut w).await;
    assert_eq!(
        e.event,
        Some(ProfileEvent::DeletedMnId("api1@example.org".into()))
    );
    let s = next(&mut w).await;
    match s.event {
        Some(ProfileEvent::Synced(x)) => assert_eq!(x.object_count, 9),
        other => panic!("expected SYNCED, got {other:?}"),
    }
    assert_eq!(s.revision, e.revision);

    // From another epoch: start over.
    let mut w2 = watch(Some(pb::WatchCursor {
        epoch: cursor.epoch + 5,
        revision: 1,
    }))
    .await;
    match next(&mut w2).await.event {
        Some(ProfileEvent::Reset(r)) => assert_eq!(r.reason(), pb::ResetReason::NewEpoch),
        other => panic!("expected RESET, got {other:?}"),
    }
    drop((w, w2));
    lab.stop().await;
}

#[tokio::test]
async fn stats_count_what_happened() {
    let mut lab = Lab::start().await;
    let before = lab.stats().await;
    assert_eq!(before.name, "lma-test");
    assert_eq!(before.lma_address, LMA.to_string());
    assert_eq!(before.version, env!("CARGO_PKG_VERSION"));
    assert_eq!(
        before.restart_counter, 1_800_000_000,
        "a new store's is the clock's"
    );
    assert_eq!(before.epoch, 1);
    assert_eq!(
        (
            before.bindings,
            before.mobile_node_profiles,
            before.authorized_mags
        ),
        (0, 8, 2)
    );
    assert!(before.started_at.is_some() && before.uptime.is_some());

    let p1 = lab.attach(MAG1, 1).await;
    lab.attach(MAG1, 2).await;
    lab.pbu(MAG2, 1, p1, HandoffIndicator::HandoffBetweenMags, 3600)
        .await;
    lab.pbu(
        MAG3,
        3,
        all_zero(),
        HandoffIndicator::AttachmentOverNewInterface,
        3600,
    )
    .await;
    let s = lab.stats().await;
    assert_eq!(s.bindings, 2);
    assert_eq!(s.active_bindings, 2);
    assert_eq!(s.allocated_prefixes, 2);
    assert_eq!(s.free_prefixes, before.free_prefixes - 2);
    assert_eq!(s.pbus_received, 4);
    assert_eq!(s.handovers, 1);
    // Two ADDED, one handoff UPDATED, one REJECTED.
    assert_eq!(s.revision, before.revision + 4);
    let by_status: Vec<(u32, &str, u64)> = s
        .pbas_by_status
        .iter()
        .map(|c| (c.status, c.status_name.as_str(), c.count))
        .collect();
    assert_eq!(
        by_status,
        vec![
            (0, "PBU_ACCEPTED", 3),
            (154, "MAG_NOT_AUTHORIZED_FOR_PROXY_REG", 1)
        ]
    );
    assert_eq!(
        (s.revocations, s.expirations, s.mags_reachable, s.watchers),
        (0, 0, 0, 0)
    );
    lab.stop().await;
}

/// The value of a sample line of `text` (`name{labels} value`).
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// `promtool check metrics` (Prometheus' own linter) on `text`: its complaints, if any.
pub fn promtool(text: &str) -> Result<(), String> {
    use std::io::Write;
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus; scripts/test-all.sh installs it)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() && said.trim().is_empty() {
        Ok(())
    } else {
        Err(format!("promtool: {}: {said}", out.status))
    }
}

#[tokio::test]
async fn the_metrics_pass_promtool_and_start_at_zero() {
    let lab = Lab::start().await;
    let text = lab.metrics();
    promtool(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    for series in [
        "pmip_lma_pba_sent_total{status=\"0\",name=\"PBU_ACCEPTED\"} 0",
        "pmip_lma_pba_sent_total{status=\"154\",name=\"MAG_NOT_AUTHORIZED_FOR_PROXY_REG\"} 0",
        "pmip_lma_revocations_total{kind=\"timed-out\"} 0",
        "pmip_lma_peer_events_total{kind=\"unreachable\"} 0",
        "pmip_lma_datapath_changes_total{kind=\"set-downlink\"} 0",
        "pmip_lma_free_prefixes{pool=\"2001:db8:100::/48\"} 65536",
    ] {
        assert!(text.contains(series), "{series}\n{text}");
    }
    assert!(
        text.contains("# HELP pmip_lma_pbu_received_total "),
        "{text}"
    );
    assert!(text.contains("pmip_lma_build_info{version="), "{text}");
    assert!(text.contains("process_resident_memory_bytes "), "{text}");
    // The MAGs of the configuration, before they send anything.
    let mag_bindings = |text: &str, mag: Ipv6Addr| {
        text.lines()
            .find(|l| l.starts_with(&format!("pmip_lma_mag_bindings{{mag=\"{mag}\"")))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
    };
    assert_eq!(mag_bindings(&text, MAG1), Some(0.0), "{text}");
    assert_eq!(mag_bindings(&text, MAG2), Some(0.0), "{text}");
    lab.stop().await;
}

#[tokio::test]
async fn the_registration_latency_is_of_pbus_not_of_every_message() {
    let mut lab = Lab::start().await;
    for seq in 0..5 {
        let m = Message::Heartbeat(pmip::wire::Heartbeat {
            flags: pmip::wire::HeartbeatFlags::empty(),
            sequence: seq,
            options: Options::EMPTY,
        });
        let mut b = vec![0u8; m.buffer_len()];
        m.emit_with_checksum(&mut b, &MAG1, &LMA).unwrap();
        lab.deliver(MAG1, b).await;
    }
    lab.attach(MAG1, 1).await;
    lab.attach(MAG2, 2).await;
    let refused = lab
        .pbu(
            MAG3,
            3,
            all_zero(),
            HandoffIndicator::AttachmentOverNewInterface,
            3600,
        )
        .await;
    assert_eq!(refused.status, Status::MagNotAuthorizedForProxyReg);
    let text = lab.metrics();
    assert_eq!(
        sample(&text, "pmip_lma_pbu_received_total"),
        Some(3.0),
        "{text}"
    );
    // Three PBUs answered; the five heartbeats are not registrations.
    assert_eq!(
        sample(&text, "pmip_lma_registration_seconds_count"),
        Some(3.0),
        "{text}"
    );
    let per_status: f64 = (text.lines())
        .filter(|l| l.starts_with("pmip_lma_pba_sent_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(per_status, 3.0, "{text}");
    assert_eq!(
        sample(&text, "pmip_lma_free_prefixes{pool=\"2001:db8:100::/48\"}"),
        Some(65534.0),
        "{text}"
    );
    for mag in [MAG1, MAG2] {
        assert!(
            text.lines().any(
                |l| l.starts_with(&format!("pmip_lma_mag_bindings{{mag=\"{mag}\""))
                    && l.ends_with(" 1")
            ),
            "{mag}: {text}"
        );
    }
    promtool(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    lab.stop().await;
}

#[tokio::test]
async fn health_follows_the_server_and_a_stopped_core_is_unavailable() {
    let lab = Lab::start().await;
    let mut health = HealthClient::new(lab.channel.clone());
    for service in ["", "pmip.v1.BindingCache", "pmip.v1.Policy"] {
        let r = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.status(), ServingStatus::Serving, "{service:?}");
    }
    let mut hw = health
        .watch(HealthCheckRequest {
            service: "pmip.v1.BindingCache".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let first: HealthCheckResponse = next(&mut hw).await;
    assert_eq!(first.status(), ServingStatus::Serving);

    // The core stops first: calls and open streams say UNAVAILABLE.
    let mut w = lab.watch(None, "").await;
    next(&mut w).await;
    until_synced(&mut w).await;
    let _ = lab.stop_core.send(true);
    let e = timeout(WAIT, w.message()).await.unwrap().unwrap_err();
    assert_eq!(e.code(), Code::Unavailable);
    assert_eq!(e.message(), "the LMA is shutting down");
    let (c, _) = code(lab.bc().stats(pb::LmaStatsRequest {}).await);
    assert_eq!(c, Code::Unavailable);

    // Then the server: NOT_SERVING for those still watching its health.
    let _ = lab.stop_api.send(true);
    let next_status: HealthCheckResponse = next(&mut hw).await;
    assert_eq!(next_status.status(), ServingStatus::NotServing);
    drop(hw);
    timeout(WAIT, lab.core_task).await.unwrap().unwrap();
    timeout(WAIT, lab.api).await.unwrap().unwrap();
}

impl Lab {
    /// Stops the core without its shutdown (nothing deferred is written by it), as a crash;
    /// the state directory, and the kernel with the routes that outlive the process (every
    /// backend's do), stay for a restart ([`Lab::start_with`]).
    async fn crash(self) -> (TempDir, datapath::Fake) {
        let Lab {
            core_task,
            api,
            stop_api,
            dir,
            datapath,
            ..
        } = self;
        core_task.abort();
        assert!(core_task.await.unwrap_err().is_cancelled());
        let _ = stop_api.send(true);
        timeout(WAIT, api).await.unwrap().unwrap();
        // A commit that was in flight finishes on its blocking thread and lets the file go.
        let t = std::time::Instant::now();
        while let Err(e) = Store::open(dir.path()) {
            assert!(t.elapsed() < WAIT, "the store stays open: {e}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        (dir, datapath)
    }
}

#[tokio::test]
async fn refreshes_are_written_soon_after_and_never_over_a_later_change() {
    let mut lab = Lab::start().await;
    let p1 = lab.attach(MAG1, 1).await;
    let p2 = lab.attach(MAG1, 2).await;
    // A refresh's PBA does not wait for the disk; its write follows within the interval.
    let pba = lab
        .pbu(MAG1, 1, p1, HandoffIndicator::HandoffStateNotChanged, 1800)
        .await;
    assert_eq!(pba.status, Status::Accepted);
    tokio::time::sleep(lma_cnf::service::DEFERRED_INTERVAL * 3).await;
    let lab = {
        let (dir, kernel) = lab.crash().await;
        Lab::start_with(dir, kernel).await
    };
    let b = lab.get(Key::MnId(nai(1))).await.unwrap();
    assert_eq!(b.lifetime_granted_seconds, 1800, "the refresh was written");

    // A refresh deferred, then a handoff of the same node in a later turn: the handoff is
    // written with the refresh before it, and wins.
    let mut lab = lab;
    lab.pbu(MAG1, 2, p2, HandoffIndicator::HandoffStateNotChanged, 1200)
        .await;
    let pba = lab
        .pbu(MAG2, 2, p2, HandoffIndicator::HandoffBetweenMags, 900)
        .await;
    assert_eq!(pba.status, Status::Accepted);
    // A refresh right before a crash may be lost; the binding it refreshed is not.
    lab.pbu(MAG1, 1, p1, HandoffIndicator::HandoffStateNotChanged, 600)
        .await;
    let lab = {
        let (dir, kernel) = lab.crash().await;
        Lab::start_with(dir, kernel).await
    };
    let b = lab.get(Key::MnId(nai(2))).await.unwrap();
    assert_eq!(
        (b.proxy_coa.as_str(), b.lifetime_granted_seconds),
        (MAG2.to_string().as_str(), 900)
    );
    let b = lab.get(Key::MnId(nai(1))).await.unwrap();
    assert_eq!(b.home_network_prefixes, vec![p1.to_string()]);
    assert!(matches!(b.lifetime_granted_seconds, 600 | 1800), "{b:?}");

    // A clean stop writes what waits.
    let mut lab = lab;
    lab.pbu(MAG1, 1, p1, HandoffIndicator::HandoffStateNotChanged, 300)
        .await;
    let lab = Lab::start_in(lab.stop().await).await;
    let b = lab.get(Key::MnId(nai(1))).await.unwrap();
    assert_eq!(b.lifetime_granted_seconds, 300);
    lab.stop().await;
}

/// Log lines of one test's thread (a current-thread runtime: the core and the API run on the
/// test's thread).
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

thread_local! {
    /// Where this thread's log lines go, if anywhere.
    static CAPTURE: std::cell::RefCell<Option<Captured>> = const { std::cell::RefCell::new(None) };
}

/// The process' subscriber, at INFO: each thread's lines go to its [`CAPTURE`], or nowhere.
/// Global rather than a thread's default, because tracing caches per call site whether anyone
/// listens, and other tests' threads would otherwise have it decide "nobody".
struct PerThread;

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for PerThread {
    type Writer = Box<dyn std::io::Write>;
    fn make_writer(&'a self) -> Self::Writer {
        match CAPTURE.with(|c| c.borrow().clone()) {
            Some(c) => Box::new(c),
            None => Box::new(std::io::sink()),
        }
    }
}

impl Captured {
    /// Captures what this thread logs from now on.
    fn start() -> Captured {
        static GLOBAL: std::sync::Once = std::sync::Once::new();
        GLOBAL.call_once(|| {
            tracing::subscriber::set_global_default(
                tracing_subscriber::fmt()
                    .with_writer(PerThread)
                    .with_ansi(false)
                    .with_max_level(tracing::Level::INFO)
                    .finish(),
            )
            .expect("the only subscriber of this test binary");
        });
        let c = Captured::default();
        CAPTURE.with(|cell| *cell.borrow_mut() = Some(c.clone()));
        c
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// The line with `message` that has every one of `fields` (`key=value`).
    fn line(&self, message: &str, fields: &[String]) -> Option<String> {
        self.text()
            .lines()
            .find(|l| l.contains(message) && fields.iter().all(|f| l.contains(f.as_str())))
            .map(str::to_owned)
    }
}

#[tokio::test]
async fn registrations_handoffs_revocations_and_api_changes_are_logged_at_info() {
    let logs = Captured::start();
    let mut lab = Lab::start().await;
    let p1 = lab.attach(MAG1, 1).await;
    lab.pbu(MAG2, 1, p1, HandoffIndicator::HandoffBetweenMags, 3600)
        .await;
    lab.pbu(MAG2, 1, p1, HandoffIndicator::HandoffBetweenMags, 0)
        .await;
    lab.policy()
        .add_authorized_mag(pb::AddAuthorizedMagRequest {
            mag: Some(pb::AuthorizedMag {
                proxy_coa: MAG3.to_string(),
                name: "mag-c".into(),
                source: 0,
            }),
        })
        .await
        .unwrap();
    lab.policy()
        .remove_authorized_mag(pb::RemoveAuthorizedMagRequest {
            proxy_coa: MAG3.to_string(),
        })
        .await
        .unwrap();
    let who = |k: &str, v: &dyn std::fmt::Display| format!("{k}={v}");
    let mn1 = who("mn_id", &nai(1));
    for (message, fields) in [
        (
            "binding created",
            vec![mn1.clone(), who("mag", &MAG1), who("prefixes", &p1)],
        ),
        (
            "binding handed off",
            vec![mn1.clone(), who("from", &MAG1), who("mag", &MAG2)],
        ),
        (
            "binding de-registered",
            vec![mn1.clone(), who("mag", &MAG2)],
        ),
        (
            "MAG authorized over the API",
            vec![
                who("mag", &MAG3),
                "name=mag-c".into(),
                "caller=127.0.0.1:".into(),
            ],
        ),
        (
            "MAG authorization removed over the API",
            vec![who("mag", &MAG3), "caller=127.0.0.1:".into()],
        ),
    ] {
        assert!(
            logs.line(message, &fields)
                .is_some_and(|l| l.contains("INFO")),
            "{message} {fields:?}:\n{}",
            logs.text()
        );
    }
    lab.stop().await;
}

/// RFC 5846 §8.1 through the API: `Revoke` with a proxy-CoA revokes every binding of that MAG
/// with one global BRI (G, Per-Peer Policy) and answers with how many went; the other MAG's
/// binding stays; a MAG without bindings is NOT_FOUND, and a node and a MAG together are
/// refused.
#[tokio::test]
async fn revoke_by_mag_removes_every_binding_of_that_mag() {
    let mut lab = Lab::start().await;
    lab.attach(MAG1, 1).await;
    lab.attach(MAG2, 2).await;
    lab.attach(MAG1, 3).await;
    let mut bc = lab.bc();
    let call = tokio::spawn(async move {
        bc.revoke(pb::RevokeRequest {
            proxy_coa: MAG1.to_string(),
            ..Default::default()
        })
        .await
    });
    let (trigger, to) = lab.answer_bri(BraStatus::Success).await;
    assert_eq!((trigger, to), (RevocationTrigger::PerPeerPolicy, MAG1));
    let r = timeout(WAIT, call)
        .await
        .unwrap()
        .unwrap()
        .unwrap()
        .into_inner();
    assert_eq!(r.outcome(), pb::RevocationOutcome::Acknowledged);
    assert_eq!(r.revoked_bindings, 2);
    for n in [1, 3] {
        assert_eq!(code(lab.get(Key::MnId(nai(n))).await).0, Code::NotFound);
    }
    assert!(lab.get(Key::MnId(nai(2))).await.is_ok());
    let (c, _) = code(
        lab.bc()
            .revoke(pb::RevokeRequest {
                proxy_coa: MAG1.to_string(),
                ..Default::default()
            })
            .await,
    );
    assert_eq!(c, Code::NotFound);
    let (c, _) = code(
        lab.bc()
            .revoke(pb::RevokeRequest {
                mn_id: nai(2),
                proxy_coa: MAG2.to_string(),
                ..Default::default()
            })
            .await,
    );
    assert_eq!(c, Code::InvalidArgument);
    lab.stop().await;
}

/// Issue 18: after a restart the LMA answers PBUs and serves its API from the store at once,
/// taking the store's routes for the kernel's (they outlive the process), and reconciles the
/// datapath in the background. A handover while that runs ends with its new route, not the
/// stored one; a stale route the kernel kept goes; Stats and the metric say when it is done.
#[tokio::test]
async fn a_restart_serves_before_the_datapath_is_reconciled_and_a_handover_meanwhile_keeps_its_route()
 {
    let mut lab = Lab::start().await;
    let p1 = lab.attach(MAG1, 1).await;
    let p2 = lab.attach(MAG1, 2).await;
    until_reconciled(&lab).await;
    let dir = lab.stop().await;

    // The kernel as the restarted LMA finds it: the routes of both bindings, and one that no
    // binding needs any more.
    let kernel = datapath::Fake::new();
    let stale: Ipv6Net = "2001:db8:100:ff::/64".parse().unwrap();
    Datapath::Fake(kernel.clone())
        .apply(&[
            datapath::Change::SetDownlink {
                prefix: p1,
                peer: MAG1,
            },
            datapath::Change::SetDownlink {
                prefix: p2,
                peer: MAG1,
            },
            datapath::Change::SetDownlink {
                prefix: stale,
                peer: MAG2,
            },
        ])
        .await
        .unwrap();
    let hold = kernel.hold_reconciles();
    let mut lab = Lab::start_with(dir, kernel.clone()).await;

    // Serving while the reconcile waits: Stats, and a PBU answered.
    let s = lab.stats().await;
    assert_eq!(s.bindings, 2);
    assert!(!s.datapath_reconciled);
    assert!(s.datapath_reconciled_after.is_none());
    assert_eq!(
        sample(&lab.metrics(), "pmip_lma_datapath_reconciled"),
        Some(0.0)
    );
    assert!(kernel.is_pending());
    let pba = lab
        .pbu(MAG2, 1, p1, HandoffIndicator::HandoffBetweenMags, 3600)
        .await;
    assert_eq!(pba.status, Status::Accepted);
    assert_eq!(
        kernel.state().routes.get(&p1),
        Some(PrefixRoute::Tunnel { peer: MAG2 })
    );

    drop(hold);
    let s = until_reconciled(&lab).await;
    assert!(s.datapath_reconciled_after.is_some());
    assert_eq!(
        sample(&lab.metrics(), "pmip_lma_datapath_reconciled"),
        Some(1.0)
    );
    assert!(!kernel.is_pending());
    let routes = kernel.state().routes;
    assert_eq!(
        routes.get(&p1),
        Some(PrefixRoute::Tunnel { peer: MAG2 }),
        "the handover's route, not the stored one"
    );
    assert_eq!(routes.get(&p2), Some(PrefixRoute::Tunnel { peer: MAG1 }));
    assert!(!routes.contains_key(&stale), "{routes:?}");
    lab.stop().await;
}

/// Stats once the datapath was reconciled (in the background after a start).
async fn until_reconciled(lab: &Lab) -> pb::LmaStats {
    timeout(WAIT, async {
        loop {
            let s = lab.stats().await;
            if s.datapath_reconciled {
                break s;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the background reconcile ends")
}
