//! Prometheus metrics of the operator (prometheus-client), served on `/metrics`.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabels {
    pub controller: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub controller: String,
    pub error: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabels {
    pub event: String,
}

/// The operator's metrics.
#[derive(Debug)]
pub struct Metrics {
    pub registry: Arc<Registry>,
    pub reconciliations: Family<ControllerLabels, Counter>,
    pub failures: Family<ErrorLabels, Counter>,
    pub duration: Family<ControllerLabels, Histogram>,
    pub watch_events: Family<EventLabels, Counter>,
    pub status_writes: Family<ControllerLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("pmip_operator");
        let reconciliations = Family::<ControllerLabels, Counter>::default();
        let failures = Family::<ErrorLabels, Counter>::default();
        let duration = Family::<ControllerLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.005, 2.0, 12))
        });
        let watch_events = Family::<EventLabels, Counter>::default();
        let status_writes = Family::<ControllerLabels, Counter>::default();
        registry.register(
            "reconciliations",
            "Reconciliations started",
            reconciliations.clone(),
        );
        registry.register(
            "reconcile_failures",
            "Reconciliations that failed, by error",
            failures.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time a reconciliation took",
            duration.clone(),
        );
        registry.register(
            "lma_watch_events",
            "Events received from LMA Watch streams",
            watch_events.clone(),
        );
        registry.register(
            "status_writes",
            "Status patches written",
            status_writes.clone(),
        );
        Self {
            registry: Arc::new(registry),
            reconciliations,
            failures,
            duration,
            watch_events,
            status_writes,
        }
    }
}

fn c(controller: &str) -> ControllerLabels {
    ControllerLabels {
        controller: controller.into(),
    }
}

impl Metrics {
    pub fn reconciled(&self, controller: &str, seconds: f64) {
        self.reconciliations.get_or_create(&c(controller)).inc();
        self.duration.get_or_create(&c(controller)).observe(seconds);
    }

    pub fn failed(&self, controller: &str, e: &crate::Error) {
        self.failures
            .get_or_create(&ErrorLabels {
                controller: controller.into(),
                error: e.metric_label().into(),
            })
            .inc();
    }

    pub fn status_written(&self, controller: &str) {
        self.status_writes.get_or_create(&c(controller)).inc();
    }

    pub fn watch_event(&self, ev: &proto::v1::BindingEvent) {
        use proto::v1::binding_event::Event;
        let name = match &ev.event {
            Some(Event::Reset(_)) => "reset",
            Some(Event::Synced(_)) => "synced",
            Some(Event::Added(_)) => "added",
            Some(Event::Updated(_)) => "updated",
            Some(Event::Deleted(_)) => "deleted",
            Some(Event::Rejected(_)) => "rejected",
            None => "unknown",
        };
        self.watch_events
            .get_or_create(&EventLabels { event: name.into() })
            .inc();
    }

    /// The text exposition.
    pub fn encode(&self) -> String {
        let mut s = String::new();
        if prometheus_client::encoding::text::encode(&mut s, &self.registry).is_err() {
            s.clear();
        }
        s
    }
}

/// Serves `/metrics` and `/healthz` on `addr` until the process ends.
pub async fn serve(addr: std::net::SocketAddr, metrics: Arc<Metrics>) -> std::io::Result<()> {
    use http_body_util::Full;
    use hyper::body::Bytes;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;

    let listener = tokio::net::TcpListener::bind(addr).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let metrics = metrics.clone();
                async move {
                    let (status, body, ctype) = match req.uri().path() {
                        "/metrics" => (
                            200,
                            metrics.encode(),
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        ),
                        "/healthz" => (200, "ok\n".to_string(), "text/plain"),
                        _ => (404, "not found\n".to_string(), "text/plain"),
                    };
                    hyper::Response::builder()
                        .status(status)
                        .header("content-type", ctype)
                        .body(Full::new(Bytes::from(body)))
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}
