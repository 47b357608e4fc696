//! Serving a daemon's gRPC services: optional TLS with client certificates, the standard
//! health service, and reflection.

use std::net::SocketAddr;

use pmip::config::{ApiConfig, TlsConfig};
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tonic_health::server::HealthReporter;

/// Why the API could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("api.tls: cannot read {path}: {source}")]
    ReadTls {
        path: String,
        source: std::io::Error,
    },
    #[error("api.tls: {0}")]
    Tls(tonic::transport::Error),
}

/// A server builder with TLS as configured.
pub fn server(cfg: &ApiConfig) -> Result<Server, ApiError> {
    let mut b = Server::builder();
    if let Some(tls) = &cfg.tls {
        b = b.tls_config(tls_config(tls)?).map_err(ApiError::Tls)?;
    }
    Ok(b)
}

fn read(path: &std::path::Path) -> Result<Vec<u8>, ApiError> {
    std::fs::read(path).map_err(|source| ApiError::ReadTls {
        path: path.display().to_string(),
        source,
    })
}

fn tls_config(t: &TlsConfig) -> Result<ServerTlsConfig, ApiError> {
    let identity = Identity::from_pem(read(&t.cert)?, read(&t.key)?);
    let mut c = ServerTlsConfig::new().identity(identity);
    if let Some(ca) = &t.client_ca {
        c = c.client_ca_root(Certificate::from_pem(read(ca)?));
    }
    Ok(c)
}

/// The health service (every named service starts NOT_SERVING until the daemon says so) and
/// server reflection, both `grpc.reflection.v1` and the older `v1alpha` that many clients
/// still use (Python's grpcio-reflection, older grpcurl). Reflection lists `services` (the
/// daemon's own), health and itself, not every service of `pmip.v1`.
pub fn health_and_reflection(
    services: &[&str],
) -> (
    HealthReporter,
    tonic_health::pb::health_server::HealthServer<impl tonic_health::pb::health_server::Health>,
    tonic_reflection::server::v1::ServerReflectionServer<
        impl tonic_reflection::server::v1::ServerReflection,
    >,
    tonic_reflection::server::v1alpha::ServerReflectionServer<
        impl tonic_reflection::server::v1alpha::ServerReflection,
    >,
) {
    let (reporter, health) = tonic_health::server::health_reporter();
    let builder = || {
        // Both reflection versions describe both, so that each lists what it can describe.
        let mut b = tonic_reflection::server::Builder::configure()
            .include_reflection_service(false)
            .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(
                tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
            );
        for name in services.iter().copied().chain(REFLECTED_ALWAYS) {
            b = b.with_service_name(name);
        }
        b
    };
    // The descriptor sets are compiled in and always parse: a failure is a build defect.
    let v1 = builder()
        .build_v1()
        .unwrap_or_else(|e| unreachable!("reflection v1 over the compiled-in descriptors: {e}"));
    let v1alpha = builder().build_v1alpha().unwrap_or_else(|e| {
        unreachable!("reflection v1alpha over the compiled-in descriptors: {e}")
    });
    (reporter, health, v1, v1alpha)
}

/// What reflection lists besides a daemon's own services.
const REFLECTED_ALWAYS: [&str; 3] = [
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
];

/// Who made an API call, for the audit log: the peer's address, and whether it showed a client
/// certificate (the server accepted it, so it is one of `api.tls.client_ca`'s).
pub fn caller<T>(r: &tonic::Request<T>) -> String {
    let addr = r
        .remote_addr()
        .map_or_else(|| "unknown".to_owned(), |a| a.to_string());
    match r.peer_certs() {
        Some(certs) if !certs.is_empty() => format!("{addr} (client certificate)"),
        _ => addr,
    }
}

/// The listen address of the API.
pub fn listen(cfg: &ApiConfig) -> SocketAddr {
    cfg.listen
}

/// Serves `health` alone, in plain HTTP/2, on `cfg.health_listen` when it is set, until
/// `stopped` completes: for probes that cannot do TLS (the kubelet's gRPC probes). The
/// statuses are the API's own, since both servers share the reporter.
pub async fn serve_health_listener<H>(
    cfg: &ApiConfig,
    health: tonic_health::pb::health_server::HealthServer<H>,
    stopped: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<Option<tokio::task::JoinHandle<()>>>
where
    H: tonic_health::pb::health_server::Health,
{
    let Some(addr) = cfg.health_listen else {
        return Ok(None);
    };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("api.health_listen {addr}: {e}")))?;
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    tracing::info!(%addr, "gRPC health listener (plain text)");
    Ok(Some(tokio::spawn(async move {
        if let Err(e) = Server::builder()
            .add_service(health)
            .serve_with_incoming_shutdown(incoming, stopped)
            .await
        {
            tracing::error!(error = %e, "gRPC health listener");
        }
    })))
}
