//! Logs, traces and metrics of a daemon: an `EnvFilter` (from `RUST_LOG`, else the config's
//! level), text or JSON lines, spans exported over OTLP/gRPC when an endpoint is configured,
//! and a Prometheus `/metrics` endpoint.

use std::net::SocketAddr;
use std::sync::Arc;

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
    }
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
    let (text, json) = match cfg.format {
        LogFormat::Json => (None, Some(tracing_subscriber::fmt::layer().json())),
        LogFormat::Text => (Some(tracing_subscriber::fmt::layer()), None),
    };
    Subscribers::default()
        .with(filter)
        .with(otel)
        .with(text)
        .with(json)
        .try_init()?;
    Ok(Guard(provider))
}

/// Serves `GET /metrics` (Prometheus text format) on `addr` until the task is dropped.
pub async fn serve_metrics(addr: SocketAddr, registry: Arc<Registry>) -> std::io::Result<()> {
    use axum::http::{StatusCode, header};
    use axum::routing::get;

    let app = axum::Router::new().route(
        "/metrics",
        get(move || {
            let registry = registry.clone();
            async move {
                let mut body = String::new();
                match prometheus_client::encoding::text::encode(&mut body, &registry) {
                    Ok(()) => (
                        StatusCode::OK,
                        [(
                            header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        body,
                    ),
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

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::counter::Counter;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

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
        let mut body = String::new();
        for _ in 0..50 {
            if let Ok(mut s) = tokio::net::TcpStream::connect(addr).await {
                s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    .await
                    .unwrap();
                s.read_to_string(&mut body).await.unwrap();
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert!(body.starts_with("HTTP/1.1 200"), "{body}");
        assert!(body.contains("pbu_received_total 7"), "{body}");
    }
}
