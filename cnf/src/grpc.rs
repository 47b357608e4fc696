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
/// the reflection service of `pmip.v1`.
pub fn health_and_reflection() -> (
    HealthReporter,
    tonic_health::pb::health_server::HealthServer<impl tonic_health::pb::health_server::Health>,
    tonic_reflection::server::v1::ServerReflectionServer<
        impl tonic_reflection::server::v1::ServerReflection,
    >,
) {
    let (reporter, health) = tonic_health::server::health_reporter();
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .unwrap_or_else(|_| {
            // The descriptor sets are compiled in; they always parse.
            tonic_reflection::server::Builder::configure()
                .build_v1()
                .unwrap_or_else(|e| unreachable!("empty reflection service: {e}"))
        });
    (reporter, health, reflection)
}

/// The listen address of the API.
pub fn listen(cfg: &ApiConfig) -> SocketAddr {
    cfg.listen
}
