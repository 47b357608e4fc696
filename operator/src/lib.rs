//! The pmip Kubernetes operator: `MobilityDomain` → an LMA Deployment and a MAG DaemonSet
//! configured from one ConfigMap; `MobileNode` → a profile at the LMA, its binding mirrored into
//! status. It is the only pmip component that talks to Kubernetes; the daemons are plain
//! network programs it drives over their gRPC API (`proto`). See `README.md` beside this crate
//! for the contract with the daemons.

pub mod crd;
pub mod domain;
pub mod esp_keys;
pub mod lma;
pub mod metrics;
pub mod mirror;
pub mod node;
pub mod pki;
pub mod rbac;
pub mod render;
pub mod status;
pub mod telemetry;

#[cfg(test)]
pub(crate) mod fixtures;
#[cfg(test)]
mod reconcile_tests;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use crd::crd_yaml;
use kube::Client;
use kube::runtime::events::Recorder;
use tokio::sync::mpsc;

/// Errors of a reconcile; each variant is a metrics label.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    #[error("the LMA of domain {domain} is not reachable: {message}")]
    LmaUnreachable { domain: String, message: String },
    #[error("MAG {mag}: {message}")]
    Mag { mag: String, message: String },
    #[error("serializing the daemon configuration: {0}")]
    Config(String),
}

impl Error {
    /// Short label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::Finalizer(_) => "finalizer",
            Error::LmaUnreachable { .. } => "lma_unreachable",
            Error::Mag { .. } => "mag",
            Error::Config(_) => "config",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Key of a mobile node inside the operator: (namespace, domain, MN-ID).
pub type NodeKey = (String, String, String);

/// State shared by the controllers.
#[derive(Clone)]
#[allow(clippy::type_complexity)]
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Arc<metrics::Metrics>,
    /// gRPC channels to LMAs and MAGs.
    pub grpc: Arc<lma::Connector>,
    /// Per-domain mirror of the LMA binding cache, keyed by (namespace, domain).
    pub views: Arc<Mutex<HashMap<(String, String), Arc<Mutex<mirror::DomainView>>>>>,
    /// Running watch tasks, by (namespace, domain).
    pub watchers: Arc<Mutex<HashMap<(String, String), tokio::task::JoinHandle<()>>>>,
    /// Where watch tasks report changed nodes (to the coalescer, then the MobileNode controller).
    pub changed: mpsc::Sender<mirror::Changed>,
    /// MobileNode object name by (namespace, domain, MN-ID), kept by the MobileNode reconciler.
    pub node_index: Arc<Mutex<HashMap<NodeKey, String>>>,
    /// What was last upserted at the LMA per node: (generation, LMA epoch, profile) so a status
    /// refresh does not resend it.
    pub synced_profiles:
        Arc<Mutex<HashMap<NodeKey, (Option<i64>, u64, proto::v1::MobileNodeProfile)>>>,
    /// What was last given to SetAuthorizedMags per domain.
    pub authorized: Arc<Mutex<HashMap<(String, String), Vec<proto::v1::AuthorizedMag>>>>,
    /// Image of the daemons when a domain names none (the operator's own).
    pub default_image: String,
    pub default_pull_policy: String,
    /// Requeue after an error: doubled per consecutive failure of one object, up to 5 minutes.
    pub backoff: Arc<Mutex<HashMap<String, u32>>>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("grpc", &self.grpc)
            .field("default_image", &self.default_image)
            .finish_non_exhaustive()
    }
}

impl Context {
    pub fn new(
        client: Client,
        grpc: lma::Connector,
        changed: mpsc::Sender<mirror::Changed>,
    ) -> Self {
        let recorder = Recorder::new(client.clone(), "pmip-operator".into());
        Self {
            client,
            recorder,
            metrics: Arc::new(metrics::Metrics::default()),
            grpc: Arc::new(grpc),
            views: Arc::default(),
            watchers: Arc::default(),
            changed,
            node_index: Arc::default(),
            synced_profiles: Arc::default(),
            authorized: Arc::default(),
            default_image: std::env::var("PMIP_IMAGE")
                .unwrap_or_else(|_| format!("ghcr.io/pmip-io/pmip:{}", env!("CARGO_PKG_VERSION"))),
            default_pull_policy: std::env::var("PMIP_IMAGE_PULL_POLICY")
                .unwrap_or_else(|_| "IfNotPresent".into()),
            backoff: Arc::default(),
        }
    }

    /// The view of one domain, created empty on first use.
    pub fn view(&self, namespace: &str, domain: &str) -> Arc<Mutex<mirror::DomainView>> {
        let mut views = self.views.lock().unwrap_or_else(|e| e.into_inner());
        views
            .entry((namespace.to_string(), domain.to_string()))
            .or_default()
            .clone()
    }

    /// Exponential requeue delay for an object that failed again.
    pub fn next_backoff(&self, key: &str) -> Duration {
        let mut b = self.backoff.lock().unwrap_or_else(|e| e.into_inner());
        let n = b.entry(key.to_string()).or_insert(0);
        *n = (*n + 1).min(10);
        Duration::from_secs(5u64.saturating_mul(1 << (*n - 1)).min(300))
    }

    pub fn reset_backoff(&self, key: &str) {
        self.backoff
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }
}

/// Longest Event note the API server takes (events.k8s.io/v1: 1 KiB).
pub const EVENT_NOTE_MAX: usize = 1024;

/// An Event note cut to fit [`EVENT_NOTE_MAX`] bytes (at a character boundary, marked with
/// `...`): a longer one makes the API server refuse the Event, and the reason with it.
pub fn event_note(note: String) -> String {
    if note.len() <= EVENT_NOTE_MAX {
        return note;
    }
    let mut end = EVENT_NOTE_MAX - 3;
    while !note.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &note[..end])
}

/// A condition with its transition time kept when the status did not change.
pub fn condition(
    previous: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
    type_: &str,
    ok: bool,
    reason: &str,
    message: impl Into<String>,
    generation: Option<i64>,
) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
    let status = if ok { "True" } else { "False" };
    let last = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone());
    Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message: message.into(),
        observed_generation: generation,
        last_transition_time: last.unwrap_or_else(|| Time(jiff::Timestamp::now())),
    }
}
