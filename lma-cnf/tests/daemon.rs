//! The `pmip-lma` process as an operator runs it: its spans reach a real OTLP receiver (a
//! gRPC collector from the `opentelemetry-proto` definitions, in this test). The LMA, the
//! test's MAG socket and the collector live in a network namespace of their own, made by one
//! thread of the test and gone with it, with both addresses on its loopback interface. Needs
//! root (the CI runs the tests as root).

use std::net::{Ipv6Addr, SocketAddr};
use std::process::{Child, Command};
use std::time::Duration;

use cnf::Clock;
use cnf::transport::{MhSocket, RecvBatch, SignallingTransport};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use pmip::output::Transmit;
use pmip::types::LinkLayerAddress;
use pmip::wire::{
    AccessTechnologyType, BindingUpdate, BuFlags, HandoffIndicator, Lifetime, MN_ID_SUBTYPE_NAI,
    Message, MobilityOption, Options, SequenceNumber, Status, Timestamp,
};
use tokio::sync::mpsc;

const LMA: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
const MAG: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);

/// Every span exported to it goes down the channel.
struct Collector(mpsc::UnboundedSender<Span>);

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        r: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        for rs in r.into_inner().resource_spans {
            for ss in rs.scope_spans {
                for s in ss.spans {
                    let _ = self.0.send(s);
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `pmip-lma` process; killed when dropped.
struct Lma {
    child: Child,
    dir: tempfile::TempDir,
}

/// What the test's namespace holds.
struct Namespace {
    lma: Lma,
    mag: MhSocket,
    collector: std::net::TcpListener,
}

/// In a new network namespace (made by a thread of its own, so the rest of the test process
/// stays where it is): the loopback up with the LMA and MAG addresses, a listener for the
/// collector, the MAG's socket, and `pmip-lma` started with `extra(collector address)`
/// appended to its configuration.
fn namespace(mn_id: &str, extra: impl FnOnce(SocketAddr) -> String + Send) -> Namespace {
    let rt = tokio::runtime::Handle::current();
    std::thread::scope(|s| {
        s.spawn(|| {
            let _rt = rt.enter();
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
                .expect("a new network namespace (needs root)");
            let ip = |args: &[&str]| {
                let st = Command::new("ip").args(args).status().unwrap();
                assert!(st.success(), "ip {args:?}");
            };
            ip(&["link", "set", "lo", "up"]);
            for a in [LMA, MAG] {
                ip(&[
                    "-6",
                    "addr",
                    "add",
                    &format!("{a}/128"),
                    "dev",
                    "lo",
                    "nodad",
                ]);
            }
            let collector = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            collector.set_nonblocking(true).unwrap();
            let at = collector.local_addr().unwrap();
            let mag = MhSocket::bind(MAG).expect("a raw Mobility Header socket");
            let lma = Lma::start(mn_id, &extra(at));
            Namespace {
                lma,
                mag,
                collector,
            }
        })
        .join()
        .unwrap()
    })
}

impl Lma {
    /// Starts `pmip-lma` with `extra` YAML lines appended to its configuration.
    fn start(mn_id: &str, extra: &str) -> Lma {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("lma.yaml");
        let yaml = format!(
            "name: lma-test\n\
             address: '{LMA}'\n\
             state_dir: '{state}'\n\
             prefix_pools: [{{prefix: '2001:db8:100::/48', prefix_length: 64}}]\n\
             authorized_mags: ['{MAG}']\n\
             mobile_nodes: [{{mn_id: '{mn_id}'}}]\n\
             domain: {{heartbeat: {{interval_s: 0}}}}\n\
             datapath: {{mode: none}}\n\
             api: {{listen: '127.0.0.1:{api}'}}\n\
             metrics: {{listen: null}}\n\
             {extra}\n",
            state = dir.path().join("state").display(),
            api = free_port(),
        );
        std::fs::write(&f, yaml).unwrap();
        let out = |name: &str| std::fs::File::create(dir.path().join(name)).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_pmip-lma"))
            .arg("--config")
            .arg(&f)
            // Spans leave within 100 ms instead of the default 5 s.
            .env("OTEL_BSP_SCHEDULE_DELAY", "100")
            .env_remove("RUST_LOG")
            .stdout(out("stdout"))
            .stderr(out("stderr"))
            .spawn()
            .unwrap();
        Lma { child, dir }
    }

    /// What it wrote to `stdout` or `stderr`.
    fn output(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name)).unwrap()
    }

    fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!("pmip-lma exited: {status}\n{}", self.output("stderr"));
        }
    }
}

impl Drop for Lma {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends a PBU for `mn_id` from the MAG until its PBA comes back (the LMA may still be
/// starting); returns the PBA's status.
async fn register(mag: &MhSocket, mn_id: &str, lma: &mut Lma) -> Status {
    let ll = LinkLayerAddress::mac([2, 0, 0, 0, 0, 1]);
    let sequence = (std::process::id() & 0xffff) as u16;
    let mut batch = RecvBatch::default();
    for _ in 0..50 {
        lma.assert_running();
        let opts = [
            MobilityOption::MobileNodeIdentifier {
                subtype: MN_ID_SUBTYPE_NAI,
                id: mn_id.as_bytes(),
            },
            MobilityOption::HomeNetworkPrefix("::/0".parse().unwrap()),
            MobilityOption::HandoffIndicator(HandoffIndicator::AttachmentOverNewInterface),
            MobilityOption::AccessTechnologyType(AccessTechnologyType::Ieee8023),
            MobilityOption::MnLinkLayerIdentifier(ll.as_bytes()),
            MobilityOption::Timestamp(Timestamp::from_wall_clock(Clock::new().wall())),
        ];
        let m = Message::BindingUpdate(BindingUpdate {
            sequence: SequenceNumber(sequence),
            flags: BuFlags::A | BuFlags::P,
            lifetime: Lifetime::from_secs(3600),
            options: Options::List(&opts),
        });
        let mut payload = vec![0u8; m.buffer_len()];
        m.emit_with_checksum(&mut payload, &MAG, &LMA).unwrap();
        let t = Transmit {
            src: MAG,
            dst: LMA,
            payload,
        };
        mag.send_batch(std::slice::from_ref(&t)).await.unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_millis(200);
        while let Ok(Ok(n)) = tokio::time::timeout_at(deadline, mag.recv_batch(&mut batch)).await {
            for (_, bytes) in batch.iter().take(n) {
                if let Ok(Message::BindingAck(ba)) = Message::parse_bytes(bytes)
                    && ba.sequence == SequenceNumber(sequence)
                {
                    return ba.status;
                }
            }
        }
    }
    panic!("no PBA from pmip-lma");
}

fn attribute(s: &Span, key: &str) -> Option<String> {
    s.attributes.iter().find(|a| a.key == key).and_then(|a| {
        match a.value.as_ref()?.value.as_ref()? {
            Value::StringValue(v) => Some(v.clone()),
            other => Some(format!("{other:?}")),
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registrations_span_reaches_the_otlp_receiver() {
    let (tx, mut spans) = mpsc::unbounded_channel();
    let mn_id = "mn1@example.org";
    let Namespace {
        mut lma,
        mag,
        collector,
    } = namespace(mn_id, |at| {
        format!("tracing: {{level: info, otlp_endpoint: 'http://{at}'}}")
    });
    let listener = tokio::net::TcpListener::from_std(collector).unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(Collector(tx)))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    assert_eq!(register(&mag, mn_id, &mut lma).await, Status::Accepted);
    // The PBU's span, with its MAG and the binding it created logged inside it.
    let span = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let s = spans.recv().await.expect("the collector runs");
            if s.name == "pbu" {
                break s;
            }
        }
    })
    .await
    .expect("the PBU's span within 20 s");
    assert_eq!(attribute(&span, "mag"), Some(MAG.to_string()));
    let created = (span.events.iter())
        .find(|e| e.name == "binding created")
        .unwrap_or_else(|| panic!("{:?}", span.events));
    let field = |k: &str| {
        (created.attributes.iter())
            .find(|a| a.key == k)
            .and_then(|a| match a.value.as_ref()?.value.as_ref()? {
                Value::StringValue(v) => Some(v.clone()),
                _ => None,
            })
    };
    assert_eq!(field("mn_id").as_deref(), Some(mn_id));
    assert_eq!(field("mag"), Some(MAG.to_string()));
    lma.assert_running();
    // SIGTERM: the spans are flushed while the runtime still runs, and the process ends.
    let pid = nix::unistd::Pid::from_raw(lma.child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let t = std::time::Instant::now();
    let status = loop {
        if let Some(st) = lma.child.try_wait().unwrap() {
            break st;
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "pmip-lma did not stop"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status}");
    // Logs go to standard error, as the README says; without colours, since it is a file.
    let (out, err) = (lma.output("stdout"), lma.output("stderr"));
    assert_eq!(out, "", "nothing on standard output");
    let line = (err.lines())
        .find(|l| l.contains("binding created"))
        .unwrap_or_else(|| panic!("{err}"));
    assert!(
        line.contains(" INFO ") && line.contains(&format!("mn_id={mn_id}")),
        "{line}"
    );
    assert!(!err.contains('\x1b'), "no ANSI escapes: {err:?}");
}
