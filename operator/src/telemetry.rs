//! Logging and tracing as in the daemons: `RUST_LOG` filter, text or JSON lines, and spans
//! exported over OTLP/gRPC when `OTEL_EXPORTER_OTLP_ENDPOINT` is set.

use tracing_subscriber::prelude::*;
use tracing_subscriber::{EnvFilter, Registry};

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

pub fn init(json: bool, otlp_endpoint: Option<&str>) -> anyhow::Result<Guard> {
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_otlp::WithExportConfig;

    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let provider = match otlp_endpoint.filter(|e| !e.is_empty()) {
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
        .map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer("pmip-operator")));
    let (text, json_layer) = if json {
        (None, Some(tracing_subscriber::fmt::layer().json()))
    } else {
        (Some(tracing_subscriber::fmt::layer()), None)
    };
    Registry::default()
        .with(filter)
        .with(otel)
        .with(text)
        .with(json_layer)
        .try_init()?;
    Ok(Guard(provider))
}
