//! The LMA's gRPC API: `pmip.v1.BindingCache` and `pmip.v1.Policy` (see `proto/pmip/v1/`),
//! with the standard health service and reflection. Handlers never touch protocol state: they
//! send [`Command`](crate::core::Command)s to the core task.
//!
//! - [`convert`]: proto messages to and from the core's types; every parse error names its field.
//! - [`binding_cache`] and [`policy`]: the two services.
//! - [`watch`]: the resumable Watch streams both services serve.

pub mod binding_cache;
pub mod convert;
pub mod policy;
pub mod watch;

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use pmip::config::ApiConfig;
use proto::service_names;
use proto::v1::binding_cache_server::BindingCacheServer;
use proto::v1::policy_server::PolicyServer;
use tokio::net::TcpListener;
use tokio::sync::watch as signal;
use tokio::task::JoinHandle;
use tonic_health::ServingStatus;
use tracing::{error, info};

pub use binding_cache::BindingCacheService;
pub use policy::PolicyService;

use crate::core::CoreHandle;

/// Health names this server reports: the process ("") and both services.
pub const HEALTH_NAMES: [&str; 3] = ["", service_names::BINDING_CACHE, service_names::POLICY];

/// Binds `cfg.listen` and starts the API server; it stops when `stop` turns true.
pub async fn serve(
    cfg: ApiConfig,
    core: CoreHandle,
    stop: signal::Receiver<bool>,
) -> anyhow::Result<JoinHandle<()>> {
    let listener = TcpListener::bind(cfg.listen).await?;
    serve_on(&cfg, listener, core, stop).await
}

/// Starts the API server on a bound listener (tests bind port 0).
pub async fn serve_on(
    cfg: &ApiConfig,
    listener: TcpListener,
    core: CoreHandle,
    stop: signal::Receiver<bool>,
) -> anyhow::Result<JoinHandle<()>> {
    let (reporter, health, reflection, reflection_v1alpha) =
        cnf::grpc::health_and_reflection(&[service_names::BINDING_CACHE, service_names::POLICY]);
    let watchers = Arc::new(AtomicU64::new(0));
    let bindings = BindingCacheService::new(core.clone(), stop.clone(), watchers.clone());
    let policy = PolicyService::new(core, stop.clone(), watchers);
    let health_only = {
        let mut stop = stop.clone();
        cnf::grpc::serve_health_listener(cfg, health.clone(), async move {
            watch::stopped(&mut stop).await;
        })
        .await?
    };
    let router = cnf::grpc::server(cfg)?
        .add_service(health)
        .add_service(reflection)
        .add_service(reflection_v1alpha)
        .add_service(BindingCacheServer::new(bindings))
        .add_service(PolicyServer::new(policy));
    let local = listener.local_addr()?;
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    for name in HEALTH_NAMES {
        reporter
            .set_service_status(name, ServingStatus::Serving)
            .await;
    }
    info!(%local, "gRPC API serving");
    let mut stop = stop;
    Ok(tokio::spawn(async move {
        let r = router
            .serve_with_incoming_shutdown(incoming, async move {
                watch::stopped(&mut stop).await;
                for name in HEALTH_NAMES {
                    reporter
                        .set_service_status(name, ServingStatus::NotServing)
                        .await;
                }
            })
            .await;
        if let Err(e) = r {
            error!(error = %e, "gRPC server");
        }
        if let Some(h) = health_only {
            let _ = h.await;
        }
    }))
}
