//! `pmip-operator run`: the controllers for MobilityDomain and MobileNode, metrics on
//! `/metrics`. `pmip-operator check-health URL`: the standard gRPC health check of a pmip
//! daemon (the chart's `helm test` pod).

use std::net::{Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use futures::StreamExt;
use kube::runtime::controller::{Config as ControllerConfig, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, Client};
use operator::crd::{MobileNode, MobilityDomain};
use operator::render::DOMAIN_LABEL;
use operator::{Context, domain, lma, mirror, node, telemetry};

#[derive(Parser, Debug)]
#[command(
    name = "pmip-operator",
    version,
    about = "Kubernetes operator for pmip (Proxy Mobile IPv6)"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run the controllers (the default).
    Run {
        /// Port of /metrics and /healthz.
        #[arg(long, default_value_t = proto::METRICS_PORT)]
        metrics_port: u16,
        /// Window in which LMA changes of one node are coalesced into one status write.
        #[arg(long, default_value_t = 500)]
        coalesce_ms: u64,
        /// Watch this namespace only (the chart's `rbac.namespaced`, where the operator has a
        /// Role in it rather than a ClusterRole). Default: every namespace.
        #[arg(long, env = "PMIP_WATCH_NAMESPACE")]
        namespace: Option<String>,
    },
    /// Print the CustomResourceDefinitions this operator serves (YAML), e.g. to upgrade them
    /// before `helm upgrade`: `pmip-operator crds | kubectl apply --server-side -f -`.
    Crds,
    /// Ask a daemon's grpc.health.v1 service; exit 0 when SERVING.
    CheckHealth {
        /// e.g. http://pmip-lab-lma.pmip.svc:50051
        url: String,
        /// Service name to check; empty checks the whole server.
        #[arg(long, default_value = "")]
        service: String,
        #[arg(long, default_value_t = 5)]
        timeout_seconds: u64,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.cmd.unwrap_or(Cmd::Run {
        metrics_port: proto::METRICS_PORT,
        coalesce_ms: 500,
        namespace: std::env::var("PMIP_WATCH_NAMESPACE")
            .ok()
            .filter(|n| !n.is_empty()),
    }) {
        Cmd::Crds => {
            print!("{}", operator::crd_yaml()?);
            Ok(())
        }
        Cmd::CheckHealth {
            url,
            service,
            timeout_seconds,
        } => check_health(&url, &service, timeout_seconds).await,
        Cmd::Run {
            metrics_port,
            coalesce_ms,
            namespace,
        } => {
            run(
                metrics_port,
                coalesce_ms,
                namespace.filter(|n| !n.is_empty()),
            )
            .await
        }
    }
}

async fn check_health(url: &str, service: &str, timeout: u64) -> anyhow::Result<()> {
    use tonic_health::pb::health_check_response::ServingStatus;
    let ch = tonic::transport::Endpoint::from_shared(url.to_string())?
        .connect_timeout(Duration::from_secs(timeout))
        .timeout(Duration::from_secs(timeout))
        .connect()
        .await?;
    let mut c = tonic_health::pb::health_client::HealthClient::new(ch);
    let r = c
        .check(tonic_health::pb::HealthCheckRequest {
            service: service.into(),
        })
        .await?
        .into_inner();
    let status = ServingStatus::try_from(r.status).unwrap_or(ServingStatus::Unknown);
    println!("{url} {service:?}: {status:?}");
    anyhow::ensure!(status == ServingStatus::Serving, "not serving");
    Ok(())
}

/// The objects of kind `K` the operator watches: in one namespace, or in all.
fn scope<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

async fn run(metrics_port: u16, coalesce_ms: u64, namespace: Option<String>) -> anyhow::Result<()> {
    let json = std::env::var("PMIP_LOG_JSON").is_ok_and(|v| v == "true");
    let _guard = telemetry::init(
        json,
        std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").ok().as_deref(),
    )?;
    let client = Client::try_default().await?;
    let (changed_tx, changed_rx) = tokio::sync::mpsc::channel(4096);
    let ctx = Arc::new(Context::new(
        client.clone(),
        lma::Connector::in_cluster(),
        changed_tx,
    ));

    let metrics = ctx.metrics.clone();
    tokio::spawn(async move {
        let addr = SocketAddr::from((Ipv6Addr::UNSPECIFIED, metrics_port));
        if let Err(e) = operator::metrics::serve(addr, metrics).await {
            tracing::error!(error = %e, "metrics server stopped");
        }
    });

    // LMA changes -> coalesced -> the MobileNode objects they concern.
    let index = ctx.node_index.clone();
    let triggers = mirror::coalesce(changed_rx, Duration::from_millis(coalesce_ms)).filter_map(
        move |(ns, domain, mn)| {
            let name = index
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&(ns.clone(), domain, mn))
                .cloned();
            futures::future::ready(name.map(|n| ObjectRef::<MobileNode>::new(&n).within(&ns)))
        },
    );

    let ns = namespace.as_deref();
    let mds: Api<MobilityDomain> = scope(&client, ns);
    let mns: Api<MobileNode> = scope(&client, ns);
    let owned = watcher::Config::default().labels("app.kubernetes.io/managed-by=pmip-operator");
    let domains = Controller::new(mds, watcher::Config::default())
        .owns(
            scope::<k8s_openapi::api::core::v1::ConfigMap>(&client, ns),
            owned.clone(),
        )
        .owns(
            scope::<k8s_openapi::api::apps::v1::Deployment>(&client, ns),
            owned.clone(),
        )
        .owns(
            scope::<k8s_openapi::api::apps::v1::DaemonSet>(&client, ns),
            owned.clone(),
        )
        .watches(
            scope::<k8s_openapi::api::core::v1::Pod>(&client, ns),
            watcher::Config::default().labels("app.kubernetes.io/part-of=pmip"),
            |pod: k8s_openapi::api::core::v1::Pod| {
                let ns = pod.metadata.namespace.clone()?;
                let d = pod.metadata.labels.as_ref()?.get(DOMAIN_LABEL)?.clone();
                Some(ObjectRef::<MobilityDomain>::new(&d).within(&ns))
            },
        )
        .with_config(ControllerConfig::default().debounce(Duration::from_millis(500)))
        .shutdown_on_signal()
        .run(domain::reconcile, domain::error_policy, ctx.clone())
        .for_each(|_| futures::future::ready(()));
    let nodes = Controller::new(mns, watcher::Config::default())
        .watches(
            scope::<MobilityDomain>(&client, ns),
            watcher::Config::default(),
            {
                let index = ctx.node_index.clone();
                move |md: MobilityDomain| {
                    // A domain change (its MAG list, its deletion) concerns its nodes.
                    let ns = md.metadata.namespace.clone().unwrap_or_default();
                    let d = md.metadata.name.clone().unwrap_or_default();
                    index
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .iter()
                        .filter(|((n, dd, _), _)| *n == ns && *dd == d)
                        .map(|(_, name)| ObjectRef::<MobileNode>::new(name).within(&ns))
                        .collect::<Vec<_>>()
                }
            },
        )
        .reconcile_on(triggers)
        .shutdown_on_signal()
        .run(node::reconcile, node::error_policy, ctx.clone())
        .for_each(|_| futures::future::ready(()));
    tracing::info!(namespace = ns.unwrap_or("(all)"), "pmip-operator running");
    tokio::join!(domains, nodes);
    Ok(())
}
