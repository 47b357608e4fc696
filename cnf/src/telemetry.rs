//! Logs, traces and metrics of a daemon: an `EnvFilter` (from `RUST_LOG`, else the config's
//! level), text or JSON lines, spans exported over OTLP/gRPC when an endpoint is configured,
//! and a Prometheus `/metrics` endpoint.

use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pmip::config::{LogFormat, TracingConfig};
use prometheus_client::registry::Registry;
use tracing_subscriber::prelude::*;
use tracing_subscriber::{EnvFilter, Registry as Subscribers};

/// Keeps the tracer provider alive; dropping it flushes spans.
#[derive(Debug)]
pub struct Guard(Option<opentelemetry_sdk::trace::SdkTracerProvider>);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = p.shutdown();
        }
        flush_logs();
    }
}

/// Log lines on their way to standard error. A `write` per line was a tenth of the LMA's time
/// while it registered tens of thousands of nodes a second (one line per binding), so lines
/// are gathered here and written together: at the end of each turn of a daemon's loop
/// ([`flush_logs`]), when [`LOG_BUFFER`] bytes wait, every [`LOG_FLUSH_INTERVAL`] from a
/// thread of their own, before a panic is reported, when the daemon ends, and at once for a
/// warning or an error.
static LOGS: Mutex<Vec<u8>> = Mutex::new(Vec::new());
const LOG_BUFFER: usize = 64 << 10;
const LOG_FLUSH_INTERVAL: Duration = Duration::from_millis(50);

/// Writes the log lines gathered so far to standard error.
pub fn flush_logs() {
    let mut lines = LOGS.lock().unwrap_or_else(|e| e.into_inner());
    if lines.is_empty() {
        return;
    }
    // Written under the lock, so that lines reach the file in the order they were made.
    let _ = std::io::stderr().write_all(&lines);
    lines.clear();
}

/// The fmt layers' writer: into [`LOGS`].
#[derive(Debug, Clone, Copy)]
struct GatheredStderr;

/// One log line (the fmt layer writes a line with one `write_all`).
#[derive(Debug)]
struct LogLine {
    urgent: bool,
}

impl std::io::Write for LogLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut lines = LOGS.lock().unwrap_or_else(|e| e.into_inner());
        lines.extend_from_slice(buf);
        let full = lines.len() >= LOG_BUFFER;
        drop(lines);
        if full {
            flush_logs();
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LogLine {
    fn drop(&mut self) {
        if self.urgent {
            flush_logs();
        }
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for GatheredStderr {
    type Writer = LogLine;

    fn make_writer(&'a self) -> LogLine {
        LogLine { urgent: false }
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> LogLine {
        LogLine {
            urgent: *meta.level() <= tracing::Level::WARN,
        }
    }
}

/// Starts the thread that writes gathered log lines out now and then, and flushes them
/// before a panic's message.
fn start_log_flushing() {
    let _ = std::thread::Builder::new()
        .name("log-flush".into())
        .spawn(|| {
            loop {
                std::thread::sleep(LOG_FLUSH_INTERVAL);
                flush_logs();
            }
        });
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        flush_logs();
        report(info);
    }));
}

/// Checks what [`init`] would refuse, without installing anything: the filter of
/// `tracing.level` and the URL of `tracing.otlp_endpoint`.
pub fn check(cfg: &TracingConfig) -> anyhow::Result<()> {
    EnvFilter::try_new(&cfg.level)
        .map_err(|e| anyhow::anyhow!("tracing.level {:?}: {e}", cfg.level))?;
    if let Some(ep) = cfg.otlp_endpoint.as_deref().filter(|e| !e.is_empty()) {
        let uri: tonic::transport::Uri = ep
            .parse()
            .map_err(|e| anyhow::anyhow!("tracing.otlp_endpoint {ep:?}: {e}"))?;
        if uri.scheme().is_none() || uri.host().is_none() {
            anyhow::bail!(
                "tracing.otlp_endpoint {ep:?}: needs a scheme and a host (http://collector:4317)"
            );
        }
    }
    Ok(())
}

/// Installs the global subscriber. `service` names the spans' service in OTLP.
pub fn init(cfg: &TracingConfig, service: &'static str) -> anyhow::Result<Guard> {
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_otlp::WithExportConfig;

    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&cfg.level))
        .map_err(|e| anyhow::anyhow!("tracing.level {:?}: {e}", cfg.level))?;
    let provider = match cfg.otlp_endpoint.as_deref().filter(|e| !e.is_empty()) {
        Some(ep) => {
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(ep)
                .build()?;
            Some(
                opentelemetry_sdk::trace::SdkTracerProvider::builder()
                    .with_batch_exporter(exporter)
                    .build(),
            )
        }
        None => None,
    };
    let otel = provider
        .as_ref()
        .map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer(service)));
    // Logs go to standard error; colours only when a person is watching it.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let (text, json) = match cfg.format {
        LogFormat::Json => (
            None,
            Some(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(GatheredStderr),
            ),
        ),
        LogFormat::Text => (
            Some(
                tracing_subscriber::fmt::layer()
                    .with_writer(GatheredStderr)
                    .with_ansi(ansi),
            ),
            None,
        ),
    };
    Subscribers::default()
        .with(filter)
        .with(otel)
        .with(text)
        .with(json)
        .try_init()?;
    start_log_flushing();
    Ok(Guard(provider))
}

/// The body and `Content-Type` of a scrape: OpenMetrics 1.0 when the client's `Accept` header
/// prefers it (as Prometheus does), else the Prometheus text format 0.0.4, which `promtool` and
/// the older text clients read.
pub fn scrape(
    registry: &Registry,
    accept: Option<&str>,
) -> Result<(String, &'static str), std::fmt::Error> {
    let mut body = String::new();
    if wants_openmetrics(accept.unwrap_or("")) {
        prometheus_client::encoding::text::encode(&mut body, registry)?;
        Ok((
            body,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        ))
    } else {
        prometheus_client::encoding::prometheus_text::encode(&mut body, registry)?;
        Ok((
            body,
            prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
        ))
    }
}

/// Whether an `Accept` header ranks `application/openmetrics-text` above `text/plain`
/// (RFC 9110 §12.5.1 quality values; a missing `q` is 1).
fn wants_openmetrics(accept: &str) -> bool {
    let (mut openmetrics, mut text) = (0.0f32, 0.0f32);
    for range in accept.split(',') {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or("").to_ascii_lowercase();
        let q = parts
            .filter_map(|p| p.strip_prefix("q="))
            .find_map(|q| q.parse::<f32>().ok())
            .unwrap_or(1.0);
        match media.as_str() {
            "application/openmetrics-text" => openmetrics = openmetrics.max(q),
            "text/plain" | "text/*" | "*/*" => text = text.max(q),
            _ => {}
        }
    }
    openmetrics > 0.0 && openmetrics >= text
}

/// Serves `GET /metrics` (OpenMetrics or Prometheus text, as [`scrape`] chooses) on `addr`
/// until the task is dropped.
pub async fn serve_metrics(addr: SocketAddr, registry: Arc<Registry>) -> std::io::Result<()> {
    use axum::http::{HeaderMap, StatusCode, header};
    use axum::routing::get;

    let app = axum::Router::new().route(
        "/metrics",
        get(move |headers: HeaderMap| {
            let registry = registry.clone();
            async move {
                let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
                match scrape(&registry, accept) {
                    Ok((body, content_type)) => {
                        (StatusCode::OK, [(header::CONTENT_TYPE, content_type)], body)
                    }
                    Err(e) => (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        [(header::CONTENT_TYPE, "text/plain")],
                        e.to_string(),
                    ),
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, app).await
}

/// What every daemon's `/metrics` has besides its own: `<prefix>_build_info` (1, labelled
/// with the version) and the standard `process_*` metrics of the process.
pub fn register_common(registry: &mut Registry, prefix: &str) {
    use prometheus_client::encoding::EncodeLabelSet;
    use prometheus_client::metrics::family::Family;
    use prometheus_client::metrics::gauge::Gauge;

    #[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
    struct Build {
        version: &'static str,
    }
    let info: Family<Build, Gauge> = Family::default();
    info.get_or_create(&Build {
        version: env!("CARGO_PKG_VERSION"),
    })
    .set(1);
    registry.sub_registry_with_prefix(prefix).register(
        "build_info",
        "Always 1; labelled with the version of the running daemon",
        info,
    );
    registry.register_collector(Box::new(ProcessCollector));
}

/// The `process_*` metrics of Prometheus' client libraries, read from `/proc/self` on each
/// scrape (absent where `/proc` cannot be read).
#[derive(Debug)]
struct ProcessCollector;

/// The unit of the CPU times in `/proc/<pid>/stat`: `USER_HZ`, which Linux exposes as 100 on
/// every architecture (proc(5)).
const USER_HZ: f64 = 100.0;

impl prometheus_client::collector::Collector for ProcessCollector {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder<'_>,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric;
        use prometheus_client::metrics::counter::ConstCounter;
        use prometheus_client::metrics::gauge::ConstGauge;

        let Some(p) = ProcessStat::read() else {
            return Ok(());
        };
        let cpu = ConstCounter::new(p.cpu_seconds);
        cpu.encode(encoder.encode_descriptor(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds",
            None,
            cpu.metric_type(),
        )?)?;
        for (name, help, value) in [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                p.resident_bytes,
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes",
                p.virtual_bytes,
            ),
            (
                "process_start_time_seconds",
                "Start time of the process since the Unix epoch in seconds",
                p.start_time_seconds,
            ),
            (
                "process_open_fds",
                "Number of open file descriptors",
                p.open_fds,
            ),
            (
                "process_max_fds",
                "Maximum number of open file descriptors",
                p.max_fds,
            ),
            (
                "process_threads",
                "Number of OS threads in the process",
                p.threads,
            ),
        ] {
            let g = ConstGauge::new(value);
            g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)?;
        }
        Ok(())
    }
}

/// What [`ProcessCollector`] reports.
#[derive(Debug, Default, PartialEq)]
struct ProcessStat {
    cpu_seconds: f64,
    resident_bytes: f64,
    virtual_bytes: f64,
    start_time_seconds: f64,
    open_fds: f64,
    max_fds: f64,
    threads: f64,
}

impl ProcessStat {
    fn read() -> Option<ProcessStat> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let boot = std::fs::read_to_string("/proc/stat").ok()?;
        let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
        let open_fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count());
        Self::parse(&stat, &status, &boot, &limits, open_fds)
    }

    /// From `/proc/self/stat`, `/proc/self/status`, `/proc/stat` and `/proc/self/limits`
    /// (proc(5)).
    fn parse(stat: &str, status: &str, boot: &str, limits: &str, open_fds: usize) -> Option<Self> {
        // The command name is in parentheses and may hold spaces: count fields after it.
        let rest = &stat[stat.rfind(')')? + 1..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        // After ")": field 3 (state) is f[0], so field n is f[n - 3].
        let field = |n: usize| f.get(n - 3)?.parse::<f64>().ok();
        let kib = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
                .map(|k| k * 1024.0)
        };
        let btime = boot
            .lines()
            .find_map(|l| l.strip_prefix("btime "))
            .and_then(|v| v.trim().parse::<f64>().ok())?;
        let max_fds = limits
            .lines()
            .find_map(|l| l.strip_prefix("Max open files"))
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            .unwrap_or(0.0);
        Some(ProcessStat {
            cpu_seconds: (field(14)? + field(15)?) / USER_HZ,
            threads: field(20)?,
            start_time_seconds: btime + field(22)? / USER_HZ,
            resident_bytes: kib("VmRSS:").unwrap_or(0.0),
            virtual_bytes: kib("VmSize:").unwrap_or(0.0),
            open_fds: open_fds as f64,
            max_fds,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::counter::Counter;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn gathered() -> Vec<u8> {
        LOGS.lock().unwrap().clone()
    }

    /// The metadata of an event at `level`, as a `tracing` macro makes it.
    struct Callsite(&'static tracing::Metadata<'static>);
    impl tracing::callsite::Callsite for Callsite {
        fn set_interest(&self, _: tracing::subscriber::Interest) {}
        fn metadata(&self) -> &tracing::Metadata<'_> {
            self.0
        }
    }
    macro_rules! event_at {
        ($cs:ident, $meta:ident, $level:expr) => {
            static $cs: Callsite = Callsite(&$meta);
            static $meta: tracing::Metadata<'static> = tracing::Metadata::new(
                "event",
                "t",
                $level,
                None,
                None,
                None,
                tracing::field::FieldSet::new(&[], tracing::callsite::Identifier(&$cs)),
                tracing::metadata::Kind::EVENT,
            );
        };
    }
    event_at!(INFO_CS, INFO, tracing::Level::INFO);
    event_at!(WARN_CS, WARN, tracing::Level::WARN);

    #[test]
    fn log_lines_are_gathered_until_flushed_and_warnings_go_at_once() {
        use tracing_subscriber::fmt::MakeWriter;
        let mut line = GatheredStderr.make_writer_for(&INFO);
        line.write_all(b"one line\n").unwrap();
        drop(line);
        assert!(gathered().ends_with(b"one line\n"));
        flush_logs();
        assert!(gathered().is_empty());
        let mut line = GatheredStderr.make_writer_for(&WARN);
        line.write_all(b"a warning\n").unwrap();
        drop(line);
        assert!(gathered().is_empty(), "a warning is written at once");
    }

    #[tokio::test]
    async fn metrics_endpoint_serves_the_registry() {
        let mut r = Registry::default();
        let c: Counter = Counter::default();
        r.register("pbu_received", "PBUs received", c.clone());
        c.inc_by(7);
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        tokio::spawn(serve_metrics(addr, Arc::new(r)));
        let get = |accept: &'static str| async move {
            let mut body = String::new();
            for _ in 0..50 {
                if let Ok(mut s) = tokio::net::TcpStream::connect(addr).await {
                    let req = format!(
                        "GET /metrics HTTP/1.1\r\nHost: x\r\n{accept}Connection: close\r\n\r\n"
                    );
                    s.write_all(req.as_bytes()).await.unwrap();
                    s.read_to_string(&mut body).await.unwrap();
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            body
        };
        // What Prometheus asks for: OpenMetrics.
        let body = get(
            "Accept: application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.4,*/*;q=0.1\r\n",
        )
        .await;
        assert!(body.starts_with("HTTP/1.1 200"), "{body}");
        assert!(body.contains("application/openmetrics-text"), "{body}");
        assert!(body.contains("# HELP pbu_received PBUs received"), "{body}");
        assert!(body.contains("pbu_received_total 7"), "{body}");
        assert!(body.ends_with("# EOF\n"), "{body}");
        // No Accept header, or text: the text format 0.0.4, help on the sample's name.
        for accept in ["", "Accept: text/plain\r\n", "Accept: */*\r\n"] {
            let body = get(accept).await;
            assert!(body.starts_with("HTTP/1.1 200"), "{body}");
            assert!(
                body.contains("text/plain; version=0.0.4"),
                "{accept}: {body}"
            );
            assert!(
                body.contains("# HELP pbu_received_total PBUs received"),
                "{accept}: {body}"
            );
            assert!(body.contains("pbu_received_total 7"), "{body}");
            assert!(!body.contains("# EOF"), "{body}");
        }
    }

    #[test]
    fn accept_headers_choose_the_format() {
        for (accept, openmetrics) in [
            ("", false),
            ("text/plain", false),
            ("*/*", false),
            ("application/openmetrics-text", true),
            ("application/openmetrics-text; version=1.0.0", true),
            (
                "text/plain;q=0.9, application/openmetrics-text;q=0.5",
                false,
            ),
            ("application/openmetrics-text;q=0.5,text/plain;q=0.4", true),
            ("application/openmetrics-text;q=0", false),
            ("application/json", false),
        ] {
            assert_eq!(wants_openmetrics(accept), openmetrics, "{accept:?}");
        }
    }

    #[test]
    fn process_metrics_are_read_from_proc() {
        let stat = "1234 (pmip lma) S 1 1234 1234 0 -1 4194560 500 0 0 0 250 50 0 0 20 0 7 0 \
                    4200 1000000 300 18446744073709551615";
        let status = "Name:\tpmip-lma\nVmSize:\t  20000 kB\nVmRSS:\t    3000 kB\n";
        let boot = "cpu  1 2 3\nbtime 1700000000\nprocesses 9\n";
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            1024                 524288               files\n";
        let p = ProcessStat::parse(stat, status, boot, limits, 12).unwrap();
        assert_eq!(
            p,
            ProcessStat {
                cpu_seconds: 3.0,
                resident_bytes: 3000.0 * 1024.0,
                virtual_bytes: 20000.0 * 1024.0,
                start_time_seconds: 1_700_000_042.0,
                open_fds: 12.0,
                max_fds: 1024.0,
                threads: 7.0,
            }
        );
        assert!(ProcessStat::parse("garbage", status, boot, limits, 0).is_none());
        // This process, for real.
        let me = ProcessStat::read().expect("/proc/self");
        assert!(me.threads >= 1.0 && me.resident_bytes > 0.0 && me.open_fds > 0.0);
        assert!(me.start_time_seconds > 1_600_000_000.0);
    }

    #[test]
    fn build_info_and_process_metrics_are_registered() {
        let mut r = Registry::default();
        register_common(&mut r, "pmip_test");
        let (text, _) = scrape(&r, None).unwrap();
        assert!(
            text.contains(&format!(
                "pmip_test_build_info{{version=\"{}\"}} 1",
                env!("CARGO_PKG_VERSION")
            )),
            "{text}"
        );
        for name in [
            "process_cpu_seconds_total ",
            "process_resident_memory_bytes ",
            "process_start_time_seconds ",
            "process_open_fds ",
        ] {
            assert!(text.contains(name), "{name}: {text}");
        }
    }
}
