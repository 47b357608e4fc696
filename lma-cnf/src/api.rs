//! The LMA's gRPC API: `pmip.v1.BindingCache` and `pmip.v1.Policy` (see `proto/pmip/v1/`),
//! with the standard health service and reflection. Handlers never touch protocol state: they
//! send [`Command`](crate::core::Command)s to the core task.

use pmip::config::ApiConfig;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::error;

use crate::core::CoreHandle;

/// Starts the API server; it stops when `stop` turns true.
pub async fn serve(
    cfg: ApiConfig,
    core: CoreHandle,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<JoinHandle<()>> {
    let _ = core;
    let (reporter, health, reflection) = cnf::grpc::health_and_reflection();
    reporter
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    let router = cnf::grpc::server(&cfg)?
        .add_service(health)
        .add_service(reflection);
    let listener = tokio::net::TcpListener::bind(cfg.listen).await?;
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    Ok(tokio::spawn(async move {
        let r = router
            .serve_with_incoming_shutdown(incoming, async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .await;
        if let Err(e) = r {
            error!(error = %e, "gRPC server");
        }
    }))
}
