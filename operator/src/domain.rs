//! The MobilityDomain reconciler: the domain's PKI (Secrets), ConfigMap, LMA (PVC, Deployment,
//! Service), MAG DaemonSet, the LMA's authorized MAGs from the nodes running MAGs, the Watch
//! task feeding MobileNode status, and the domain's status.
//!
//! What to apply is decided by pure code ([`render`], [`crate::pki::decide`]); how the domain
//! stands is decided by pure code too ([`lma_condition`], [`mags_condition`]) from what the
//! API server answered. Every call the API server refuses (a 422 for a bad quantity or a
//! changed storage class, a 403 from missing RBAC) ends as `Ready=False` with the API's reason
//! and message and a Warning event, never as a reconcile that stops before the status.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::net::Ipv6Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Secret, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::{Client, Resource, ResourceExt};
use proto::v1::{AuthorizedMag, LmaStatsRequest, SetAuthorizedMagsRequest};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::crd::{
    AuthorizedMagStatus, FastHandoverMode, IpsecModeSpec, MobilityDomain, MobilityDomainStatus,
};
use crate::esp_keys;
use crate::pki::{self, Issue, Material};
use crate::render::{
    self, COMPONENT_LABEL, Component, DOMAIN_LABEL, FIELD_MANAGER, Image, Names, PodInputs,
};
use crate::{Context, Error, Result, condition, mirror};

const CONTROLLER: &str = "mobilitydomain";

pub async fn reconcile(md: Arc<MobilityDomain>, ctx: Arc<Context>) -> Result<Action> {
    let start = Instant::now();
    let res = apply(&md, &ctx).await;
    ctx.metrics
        .reconciled(CONTROLLER, start.elapsed().as_secs_f64());
    res
}

pub fn error_policy(md: Arc<MobilityDomain>, error: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(domain = %md.name_any(), %error, "reconcile failed");
    ctx.metrics.failed(CONTROLLER, error);
    Action::requeue(ctx.next_backoff(&format!(
        "md/{}/{}",
        md.namespace().unwrap_or_default(),
        md.name_any()
    )))
}

async fn publish(ctx: &Context, md: &MobilityDomain, warning: bool, reason: &str, note: String) {
    let ev = Event {
        type_: if warning {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: reason.into(),
        note: Some(crate::event_note(note)),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&ev, &md.object_ref(&())).await {
        tracing::warn!(error = %e, "cannot publish event");
    }
}

/// A call the API server refused or could not answer, as a condition and an event say it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiFailure {
    /// `Forbidden` (403), `Invalid` (422 and 400), `Conflict` (409), `ApiError` (any other
    /// answer) or `ApiUnreachable` (no answer).
    pub reason: &'static str,
    pub message: String,
    /// Whether trying again may help without a change to the domain (RBAC being fixed, the
    /// API server coming back); an invalid object waits for a change.
    pub transient: bool,
}

/// What `what` (e.g. `apply Deployment pmip-lab-lma`) failing with `e` means for the status.
pub fn api_failure(what: &str, e: &kube::Error) -> ApiFailure {
    match e {
        kube::Error::Api(s) => {
            let (reason, transient) = match s.code {
                403 => ("Forbidden", true),
                400 | 422 => ("Invalid", false),
                409 => ("Conflict", true),
                _ => ("ApiError", true),
            };
            let detail = if s.message.is_empty() {
                s.reason.clone()
            } else {
                s.message.clone()
            };
            ApiFailure {
                reason,
                message: format!("{what}: the API server answered {}: {detail}", s.code),
                transient,
            }
        }
        other => ApiFailure {
            reason: "ApiUnreachable",
            message: format!("{what}: {other}"),
            transient: true,
        },
    }
}

/// A failed step of the reconcile and what it failed with.
#[derive(Debug)]
struct Failed {
    what: String,
    error: Cause,
}

#[derive(Debug)]
enum Cause {
    Api(kube::Error),
    Pki(pki::PkiError),
    Spec(pmip::config::ConfigError),
}

fn failed(what: impl Into<String>) -> impl FnOnce(kube::Error) -> Failed {
    let what = what.into();
    move |error| Failed {
        what,
        error: Cause::Api(error),
    }
}

/// Server-side apply of `obj` in its namespace with the operator's field manager (forced: the
/// operator owns these objects), returning the object as stored.
pub async fn apply_object<K>(client: &Client, obj: &K) -> Result<K, kube::Error>
where
    K: Resource<Scope = NamespaceResourceScope> + Clone + Debug + Serialize + DeserializeOwned,
    K::DynamicType: Default,
{
    let ns = obj.meta().namespace.clone().unwrap_or_default();
    let name = obj.meta().name.clone().unwrap_or_default();
    Api::<K>::namespaced(client.clone(), &ns)
        .patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(obj),
        )
        .await
}

async fn apply_one<K>(ctx: &Context, obj: &K) -> Result<K, Failed>
where
    K: Resource<Scope = NamespaceResourceScope> + Clone + Debug + Serialize + DeserializeOwned,
    K::DynamicType: Default,
{
    let what = format!(
        "apply {} {}",
        K::kind(&K::DynamicType::default()),
        obj.meta().name.as_deref().unwrap_or_default()
    );
    apply_object(&ctx.client, obj).await.map_err(failed(what))
}

/// The domain's pods as the reconciler needs them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodsView {
    /// The LMA's address: the first global IPv6 address of its node.
    pub lma_address: Option<Ipv6Addr>,
    /// The node the LMA pod is bound to, with or without an address yet.
    pub lma_node: Option<String>,
    /// MAGs with an address, by node.
    pub mags: Vec<AuthorizedMagStatus>,
    /// Nodes running a pod of the domain whose node addresses hold no global IPv6 address,
    /// with the addresses they have.
    pub without_ipv6: BTreeMap<String, Vec<String>>,
}

fn host_ips(p: &Pod) -> Vec<String> {
    let Some(st) = p.status.as_ref() else {
        return Vec::new();
    };
    let mut v: Vec<String> = st.host_ips.iter().flatten().map(|i| i.ip.clone()).collect();
    if v.is_empty() {
        v.extend(st.host_ip.clone());
    }
    v
}

fn component(p: &Pod) -> String {
    p.labels().get(COMPONENT_LABEL).cloned().unwrap_or_default()
}

fn node_of(p: &Pod) -> Option<String> {
    p.spec.as_ref()?.node_name.clone()
}

/// The address of a daemon pod: on the host network its node's first global IPv6 address,
/// on secondary networks its transport attachment's (the spec's static address, else the one
/// Multus reports in the pod's `network-status` annotation).
fn pod_address(md: &MobilityDomain, component: Component, p: &Pod) -> Option<Ipv6Addr> {
    let Some(t) = render::transport_attachment(md, component) else {
        let ips = host_ips(p);
        return render::first_global_ipv6(ips.iter().map(String::as_str));
    };
    if let Some(a) = render::static_ipv6(t).first() {
        return Some(*a);
    }
    let text = p.annotations().get(render::NETWORK_STATUS_ANNOTATION)?;
    let statuses: Vec<pmip::config::AttachmentStatus> = serde_json::from_str(text).ok()?;
    pmip::config::attachment_address(&statuses, &render::network_key(md, t), Some(&t.interface))
}

/// The domain's pods: the LMA address and node, the authorized MAGs by node, and the nodes
/// without an IPv6 address.
pub fn pods_view(md: &MobilityDomain, pods: &[Pod]) -> PodsView {
    let alive = |p: &&Pod| p.metadata.deletion_timestamp.is_none();
    let mut v = PodsView::default();
    for p in pods.iter().filter(alive) {
        let comp = match component(p).as_str() {
            "lma" => Component::Lma,
            "mag" => Component::Mag,
            _ => continue,
        };
        let addr = pod_address(md, comp, p);
        let node = node_of(p);
        let ips = host_ips(p);
        if render::on_host_network(md, comp)
            && let (None, Some(n), false) = (addr, &node, ips.is_empty())
        {
            v.without_ipv6.insert(n.clone(), ips.clone());
        }
        match comp {
            Component::Lma => {
                if v.lma_address.is_none() {
                    v.lma_address = addr;
                }
                if v.lma_node.is_none() || addr.is_some() {
                    v.lma_node = node.or(v.lma_node.take());
                }
            }
            Component::Mag => {
                if let (Some(node), Some(a)) = (node, addr) {
                    v.mags.push(AuthorizedMagStatus {
                        node,
                        proxy_coa: a.to_string(),
                    });
                }
            }
        }
    }
    v.mags.sort();
    v.mags.dedup();
    v
}

/// Access-point map values: an IPv6 proxy-CoA as is, a node name through the MAG list.
pub fn resolve_access_points(
    md: &MobilityDomain,
    mags: &[AuthorizedMagStatus],
) -> (BTreeMap<String, Ipv6Addr>, Vec<String>) {
    let mut out = BTreeMap::new();
    let mut missing = Vec::new();
    for (ap, target) in &md.spec.lma.fast_handover.access_points {
        let addr = target.parse::<Ipv6Addr>().ok().or_else(|| {
            mags.iter()
                .find(|m| &m.node == target)
                .and_then(|m| m.proxy_coa.parse().ok())
        });
        match addr {
            Some(a) => {
                out.insert(ap.clone(), a);
            }
            None => missing.push(format!("{ap} -> {target}")),
        }
    }
    (out, missing)
}

/// A condition's verdict before it gets its type and times.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub ok: bool,
    pub reason: &'static str,
    pub message: String,
}

fn verdict(ok: bool, reason: &'static str, message: impl Into<String>) -> Verdict {
    Verdict {
        ok,
        reason,
        message: message.into(),
    }
}

/// How to let a namespace run the domain's pods.
fn pod_security_hint(ns: &str) -> String {
    format!(
        "the namespace must allow Pod Security level {0}: kubectl label namespace {ns} \
         pod-security.kubernetes.io/enforce={0}",
        render::POD_SECURITY_LEVEL
    )
}

/// Why a pod waits, from its scheduling condition and its containers' states.
fn pod_trouble(p: &Pod) -> Option<(&'static str, String)> {
    let st = p.status.as_ref()?;
    // Refused by the kubelet as it admitted it (an unsafe sysctl it does not allow, a node
    // out of a resource): the pod is Failed at once, its controller makes another.
    if st.phase.as_deref() == Some("Failed") {
        return Some((
            "PodFailed",
            format!(
                "pod {} failed: {}{}",
                p.metadata.name.as_deref().unwrap_or_default(),
                st.reason.as_deref().unwrap_or("no reason given"),
                st.message
                    .as_deref()
                    .map(|m| format!(" ({m})"))
                    .unwrap_or_default()
            ),
        ));
    }
    if let Some(c) = st
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "PodScheduled" && c.status == "False")
    {
        return Some((
            "Unschedulable",
            c.message.clone().unwrap_or_else(|| "not scheduled".into()),
        ));
    }
    for cs in st
        .init_container_statuses
        .iter()
        .flatten()
        .chain(st.container_statuses.iter().flatten())
    {
        if let Some(w) = cs.state.as_ref().and_then(|s| s.waiting.as_ref()) {
            let reason = w.reason.clone().unwrap_or_default();
            if matches!(reason.as_str(), "ContainerCreating" | "PodInitializing") {
                continue;
            }
            let last = cs
                .last_state
                .as_ref()
                .and_then(|s| s.terminated.as_ref())
                .map(|t| {
                    format!(
                        "; it last exited with {}{}",
                        t.exit_code,
                        t.message
                            .as_deref()
                            .map(|m| format!(": {m}"))
                            .unwrap_or_default()
                    )
                })
                .unwrap_or_default();
            return Some((
                "ContainerWaiting",
                format!(
                    "container {} is waiting: {reason}{}{last}",
                    cs.name,
                    w.message
                        .as_deref()
                        .map(|m| format!(" ({m})"))
                        .unwrap_or_default()
                ),
            ));
        }
    }
    None
}

/// What the LMA condition is built from.
#[derive(Debug, Clone, Copy)]
pub struct LmaInputs<'a> {
    pub namespace: &'a str,
    pub deployment: Option<&'a Deployment>,
    pub pvc: Option<&'a PersistentVolumeClaim>,
    pub pods: &'a [Pod],
    pub view: &'a PodsView,
    /// The answer to the Stats call: `Err` with the reason when the API did not answer.
    pub api: &'a std::result::Result<(), String>,
    pub url: &'a str,
}

/// `LMAReady`: refused pods, an unschedulable pod (a volume claim not bound, for one), a node
/// without an IPv6 address, a waiting container, an API that does not answer, or running.
pub fn lma_condition(i: &LmaInputs<'_>) -> Verdict {
    let dep_status = i.deployment.and_then(|d| d.status.as_ref());
    if let Some(c) = dep_status
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| {
            cs.iter().find(|c| {
                c.type_.as_deref() == Some("ReplicaFailure") && c.status.as_deref() == Some("True")
            })
        })
    {
        let msg = c.message.clone().unwrap_or_default();
        let mut m = format!("the LMA pod cannot be created: {msg}");
        if msg.contains("PodSecurity") {
            m.push_str("; ");
            m.push_str(&pod_security_hint(i.namespace));
        }
        return verdict(false, "PodsRefused", m);
    }
    let available = dep_status.and_then(|s| s.available_replicas).unwrap_or(0) >= 1;
    let lma_pods: Vec<&Pod> = i
        .pods
        .iter()
        .filter(|p| component(p) == "lma" && p.metadata.deletion_timestamp.is_none())
        .collect();
    let pvc_phase = i
        .pvc
        .and_then(|p| p.status.as_ref())
        .and_then(|s| s.phase.clone());
    if !available {
        for p in &lma_pods {
            if let Some((reason, message)) = pod_trouble(p) {
                if reason == "Unschedulable" && pvc_phase.as_deref() != Some("Bound") {
                    let name = i
                        .pvc
                        .and_then(|p| p.metadata.name.clone())
                        .unwrap_or_default();
                    return verdict(
                        false,
                        "PvcUnbound",
                        format!(
                            "the LMA's volume claim {name} is {}: the cluster needs a \
                             StorageClass that can provision it (spec.lma.storage.\
                             storageClassName, or a default class); the scheduler says: {message}",
                            pvc_phase.as_deref().unwrap_or("not bound")
                        ),
                    );
                }
                return verdict(false, reason, format!("LMA pod: {message}"));
            }
        }
    }
    if let Some(node) = &i.view.lma_node
        && i.view.lma_address.is_none()
        && let Some(addrs) = i.view.without_ipv6.get(node)
    {
        return verdict(
            false,
            "NoIPv6NodeAddress",
            format!(
                "the LMA's node {node} has no global IPv6 address (its addresses: {}): pmip \
                 needs IPv6 node addresses on the transport network, a dual-stack or IPv6 cluster",
                addrs.join(", ")
            ),
        );
    }
    if !available {
        return verdict(
            false,
            "Starting",
            if lma_pods.is_empty() {
                "the LMA Deployment has no pod yet".to_string()
            } else {
                "the LMA Deployment has no available replica".to_string()
            },
        );
    }
    match i.api {
        Err(e) => verdict(
            false,
            "LmaUnreachable",
            format!("LMA API not answering at {}: {e}", i.url),
        ),
        Ok(()) => verdict(true, "Running", "the LMA answers on its gRPC API"),
    }
}

/// What the MAGs condition is built from.
#[derive(Debug, Clone, Copy)]
pub struct MagInputs<'a> {
    pub md: &'a MobilityDomain,
    pub daemonset: Option<&'a DaemonSet>,
    pub pods: &'a [Pod],
    pub view: &'a PodsView,
    pub unresolved_access_points: &'a [String],
}

/// `MAGsReady`: waiting for the LMA, no node for a MAG (too few nodes), pods the DaemonSet
/// controller could not create, nodes without IPv6, MAGs starting, or running.
pub fn mags_condition(i: &MagInputs<'_>) -> Verdict {
    if i.view.lma_address.is_none() {
        return verdict(
            false,
            "WaitingForLma",
            "MAGs start once the LMA has an IPv6 address",
        );
    }
    let st = i.daemonset.and_then(|d| d.status.as_ref());
    let desired = st.map(|s| s.desired_number_scheduled).unwrap_or(0);
    let current = st.map(|s| s.current_number_scheduled).unwrap_or(0);
    let ready = st.map(|s| s.number_ready).unwrap_or(0);
    let lma_node = i.view.lma_node.as_deref().unwrap_or("?");
    if desired == 0 {
        let sel = &i.md.spec.mags.node_selector;
        let both_on_host = render::on_host_network(i.md, Component::Lma)
            && render::on_host_network(i.md, Component::Mag);
        if !both_on_host {
            // On secondary networks the LMA's node is no obstacle.
            let which = if sel.is_empty() {
                "no node can run one (taints?)".to_string()
            } else {
                format!("no node matches mags.nodeSelector {sel:?}")
            };
            return verdict(false, "NoNodes", format!("no MAG can run: {which}"));
        }
        let which = if sel.is_empty() {
            "no other node can run one".to_string()
        } else {
            format!("no other node matches mags.nodeSelector {sel:?}")
        };
        return verdict(
            false,
            "NoNodes",
            format!(
                "no MAG can run: a MAG on the host network never shares the LMA's node \
                 ({lma_node}) with an LMA on the host network, and {which}; a domain needs at \
                 least two nodes, one for the LMA and one per MAG, or secondary networks \
                 (spec.lma.networks, spec.mags.networks)"
            ),
        );
    }
    let mag_nodes: Vec<String> = i
        .pods
        .iter()
        .filter(|p| component(p) == "mag")
        .filter_map(node_of)
        .collect();
    let bare: Vec<String> = i
        .view
        .without_ipv6
        .iter()
        .filter(|(n, _)| mag_nodes.contains(n))
        .map(|(n, a)| format!("{n} ({})", a.join(", ")))
        .collect();
    if !bare.is_empty() {
        return verdict(
            false,
            "NoIPv6NodeAddress",
            format!(
                "nodes without a global IPv6 address cannot run a MAG: {}; pmip needs IPv6 node \
                 addresses, a dual-stack or IPv6 cluster",
                bare.join(", ")
            ),
        );
    }
    if current < desired {
        let name = i
            .daemonset
            .and_then(|d| d.metadata.name.clone())
            .unwrap_or_default();
        let ns = i.md.metadata.namespace.as_deref().unwrap_or_default();
        return verdict(
            false,
            "PodsMissing",
            format!(
                "{current} of {desired} MAG pods exist: the DaemonSet controller could not create \
                 the others (kubectl -n {ns} describe daemonset/{name} shows why; if Pod Security \
                 admission refused them, {})",
                pod_security_hint(ns)
            ),
        );
    }
    if ready < desired {
        let why: Vec<String> = i
            .pods
            .iter()
            .filter(|p| component(p) == "mag")
            .filter_map(|p| {
                pod_trouble(p).map(|(_, m)| format!("{}: {m}", node_of(p).unwrap_or_default()))
            })
            .collect();
        return verdict(
            false,
            "Starting",
            format!(
                "{ready} of {desired} MAGs ready{}",
                if why.is_empty() {
                    String::new()
                } else {
                    format!("; {}", why.join("; "))
                }
            ),
        );
    }
    if !i.unresolved_access_points.is_empty() {
        return verdict(
            true,
            "AccessPointsUnresolved",
            format!(
                "{ready} MAGs ready; access points without a MAG: {}",
                i.unresolved_access_points.join(", ")
            ),
        );
    }
    verdict(true, "Running", format!("{ready} MAGs ready"))
}

/// `Ready` from the two: ready when both are, else the first one's reason and message.
pub fn ready_verdict(lma: &Verdict, mags: &Verdict) -> Verdict {
    if lma.ok && mags.ok {
        return verdict(true, "Ready", "the LMA and every MAG are running");
    }
    let (what, v) = if !lma.ok {
        ("LMA", lma)
    } else {
        ("MAGs", mags)
    };
    verdict(false, v.reason, format!("{what}: {}", v.message))
}

fn conditions_of(
    pc: &[Condition],
    generation: Option<i64>,
    list: &[(&str, &Verdict)],
) -> Vec<Condition> {
    list.iter()
        .map(|(t, v)| condition(pc, t, v.ok, v.reason, v.message.clone(), generation))
        .collect()
}

/// The domain's TLS material: the Secrets as they are, or a CA and certificate (re)issued and
/// applied when [`pki::decide`] says so.
async fn ensure_tls(ctx: &Context, md: &MobilityDomain) -> Result<Material, Failed> {
    let ns = md.namespace().unwrap_or_default();
    let name = md.name_any();
    let n = Names::of(&name);
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let ca_secret = secrets
        .get_opt(&n.ca)
        .await
        .map_err(failed(format!("get Secret {}", n.ca)))?;
    let tls_secret = secrets
        .get_opt(&n.tls)
        .await
        .map_err(failed(format!("get Secret {}", n.tls)))?;
    let mut ca = ca_secret.as_ref().and_then(pki::ca_of);
    let material = tls_secret.as_ref().and_then(pki::material_of);
    let names = pki::subject_names(&ns, &name);
    let now = jiff::Timestamp::now().as_second();
    let issue = pki::decide(ca.as_ref(), material.as_ref(), &names, now);
    let pki_failure = |e: pki::PkiError| Failed {
        what: "make the domain's certificates".into(),
        error: Cause::Pki(e),
    };
    if issue == Issue::CaAndLeaf {
        let (cert, key) = pki::new_ca(&ns, &name, now).map_err(pki_failure)?;
        apply_one(ctx, &render::ca_secret(md, &cert, &key)).await?;
        ca = Some((cert, key));
    }
    match (issue, ca, material) {
        (Issue::Nothing, _, Some(m)) => Ok(m),
        (_, Some((ca_cert, ca_key)), _) => {
            let (cert, key) = pki::new_leaf(&ca_cert, &ca_key, &names, now).map_err(pki_failure)?;
            apply_one(ctx, &render::tls_secret(md, &ca_cert, &cert, &key)).await?;
            publish(
                ctx,
                md,
                false,
                "CertificateIssued",
                format!(
                    "{} a certificate for {} signed by the domain's CA (Secret {})",
                    if issue == Issue::CaAndLeaf {
                        "made a CA and"
                    } else {
                        "renewed"
                    },
                    names.join(", "),
                    n.tls
                ),
            )
            .await;
            Ok(Material {
                ca: ca_cert,
                cert,
                key,
            })
        }
        _ => unreachable!("decide gives a CA or asks for one"),
    }
}

/// The domain's ESP master key: from its Secret, or made and stored there when the Secret is
/// missing or does not hold one.
async fn ensure_ipsec_master(ctx: &Context, md: &MobilityDomain) -> Result<Vec<u8>, Failed> {
    let ns = md.namespace().unwrap_or_default();
    let n = Names::of(&md.name_any());
    let found = Api::<Secret>::namespaced(ctx.client.clone(), &ns)
        .get_opt(&n.ipsec_master)
        .await
        .map_err(failed(format!("get Secret {}", n.ipsec_master)))?;
    let known = found
        .as_ref()
        .and_then(|s| s.data.as_ref()?.get(esp_keys::MASTER_FIELD))
        .and_then(|v| esp_keys::master_of(&v.0));
    if let Some(master) = known {
        return Ok(master);
    }
    let master = esp_keys::new_master().map_err(|e| Failed {
        what: "make the domain's ESP master key".into(),
        error: Cause::Spec(pmip::config::ConfigError::new("spec.ipsec", e)),
    })?;
    apply_one(ctx, &render::ipsec_master_secret(md, &master)).await?;
    publish(
        ctx,
        md,
        found.is_some(),
        "IpsecKeyMade",
        format!(
            "{} an ESP master key (Secret {}); the daemons' SAs are derived from it",
            if found.is_some() {
                "replaced with"
            } else {
                "made"
            },
            n.ipsec_master
        ),
    )
    .await;
    Ok(master)
}

/// Makes sure the connector knows the domain's TLS material: the MobileNode reconciler may
/// talk to a domain's daemons before this process has reconciled the domain (after a restart
/// of the operator), so the material is read from the domain's Secret then.
pub async fn load_tls(ctx: &Context, md: &MobilityDomain) -> Result<()> {
    let ns = md.namespace().unwrap_or_default();
    let name = md.name_any();
    if !md.spec.tls.enabled {
        ctx.grpc.set_tls(&ns, &name, None);
        return Ok(());
    }
    if ctx.grpc.has_tls(&ns, &name) {
        return Ok(());
    }
    let secret = Api::<Secret>::namespaced(ctx.client.clone(), &ns)
        .get_opt(&Names::of(&name).tls)
        .await?;
    ctx.grpc
        .set_tls(&ns, &name, secret.as_ref().and_then(pki::material_of));
    Ok(())
}

/// Everything a domain's reconcile applies besides its Secrets, in the order it applies them.
#[derive(Debug, Clone)]
pub struct Desired {
    pub config_map: ConfigMap,
    pub pvc: PersistentVolumeClaim,
    pub lma: Deployment,
    pub service: Service,
    /// Once the LMA has an address: it is in the MAGs' configuration.
    pub mags: Option<DaemonSet>,
    /// With ESP on and the master key known: the SAs of every daemon of the domain.
    pub ipsec: Option<Secret>,
}

fn yaml<T: Serialize>(v: &T) -> Result<String, pmip::config::ConfigError> {
    serde_saphyr::to_string(v).map_err(|e| pmip::config::ConfigError::new("", e.to_string()))
}

/// The objects that run a domain, from the domain, its pods (where the LMA and the MAGs run,
/// with their addresses), its image and its TLS material: the daemons' configuration files,
/// the LMA's volume, Deployment and Service, and, once the LMA has an address, the MAGs'
/// DaemonSet kept off the LMA's node, and with ESP on and its master key, the SA Secret. Pure.
/// A renewed certificate changes the pods' hash, so it rolls them as a changed configuration
/// does; SAs do not (the daemons re-read them). An error names the field of the spec the
/// daemons would refuse.
pub fn decide(
    md: &MobilityDomain,
    view: &PodsView,
    image: &Image,
    tls: Option<&Material>,
    ipsec_master: Option<&[u8]>,
) -> Result<Desired, pmip::config::ConfigError> {
    let ns = md.namespace().unwrap_or_default();
    let name = md.name_any();
    let (aps, _) = resolve_access_points(md, &view.mags);
    let lma_yaml = yaml(&render::lma_config(&name, &md.spec, aps.clone())?)?;
    // While the LMA has no address (its pod gone or pending), the MAGs keep the configuration
    // of the last one the status recorded: a ConfigMap without mag.yaml fails the mount of
    // every MAG pod that starts meanwhile. The DaemonSet itself waits for an address.
    let last = (md.status.as_ref())
        .and_then(|s| s.lma_address.as_deref())
        .and_then(|a| a.parse().ok());
    let mag_yaml = match view.lma_address.or(last) {
        Some(a) => Some(yaml(&render::mag_config(
            &ns,
            &name,
            &md.spec,
            a,
            aps.clone(),
        )?)?),
        None => None,
    };
    let cert = tls.map(|m| m.cert.as_str()).unwrap_or("");
    let lma_hash = render::config_hash(&format!("{lma_yaml}{cert}"));
    let lma = render::lma_deployment(
        md,
        &PodInputs {
            image,
            config_hash: &lma_hash,
        },
    );
    let mags = mag_yaml
        .as_ref()
        .filter(|_| view.lma_address.is_some())
        .map(|y| {
            let hash = render::config_hash(&format!("{y}{cert}"));
            render::mag_daemonset(
                md,
                &PodInputs {
                    image,
                    config_hash: &hash,
                },
                view.lma_node.as_deref(),
            )
        });
    let ipsec = match ipsec_master {
        Some(master) if md.spec.ipsec.mode != IpsecModeSpec::Off => {
            Some(render::ipsec_secret(md, &sa_file(md, view, &aps, master)?))
        }
        _ => None,
    };
    Ok(Desired {
        config_map: render::config_map(md, &lma_yaml, mag_yaml.as_deref()),
        pvc: render::lma_pvc(md),
        lma,
        service: render::lma_service(md),
        mags,
        ipsec,
    })
}

/// The domain's SA file: a pair between the LMA and each MAG with an address, and with fast
/// handovers between MAGs that exchange HI/HAck. Empty (`[]`) until the LMA has an address.
fn sa_file(
    md: &MobilityDomain,
    view: &PodsView,
    access_points: &BTreeMap<String, Ipv6Addr>,
    master: &[u8],
) -> Result<String, pmip::config::ConfigError> {
    let mags: Vec<esp_keys::End> = view
        .mags
        .iter()
        .filter_map(|m| Some(esp_keys::End::mag(&m.node, m.proxy_coa.parse().ok()?)))
        .collect();
    let sas = match view.lma_address {
        None => Vec::new(),
        Some(lma) => {
            let pairs = if md.spec.lma.fast_handover.mode == FastHandoverMode::Off {
                Vec::new()
            } else {
                let targets: Vec<Ipv6Addr> = access_points.values().copied().collect();
                esp_keys::fast_handover_pairs(&mags, &targets)
            };
            esp_keys::domain_sas(
                &md.name_any(),
                master,
                &esp_keys::End::lma(lma),
                &mags,
                &pairs,
                render::esp_algorithm(&md.spec),
                md.spec.ipsec.extended_sequence_numbers,
            )
        }
    };
    let text = yaml(&sas)?;
    if text.len() > esp_keys::SECRET_BUDGET {
        return Err(pmip::config::ConfigError::new(
            "spec.lma.fastHandover.accessPoints",
            format!(
                "the domain's {} ESP security associations take {} octets, more than a \
                 Secret holds: name fewer MAGs as access points",
                sas.len(),
                text.len()
            ),
        ));
    }
    Ok(text)
}

/// What was applied, for the status.
#[derive(Debug, Default)]
struct Applied {
    pvc: Option<PersistentVolumeClaim>,
    deployment: Option<Deployment>,
    daemonset: Option<DaemonSet>,
}

async fn apply(md: &MobilityDomain, ctx: &Context) -> Result<Action> {
    let ns = md.namespace().unwrap_or_default();
    let name = md.name_any();
    let gen_ = md.metadata.generation;
    let prev = md.status.clone().unwrap_or_default();
    let pc = prev.conditions.clone();

    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let pod_list = match pods
        .list(&ListParams::default().labels(&format!("{DOMAIN_LABEL}={name}")))
        .await
    {
        Ok(l) => l.items,
        Err(e) => return api_failed(ctx, md, &prev, failed("list Pods")(e)).await,
    };
    let view = pods_view(md, &pod_list);
    let (_, unresolved) = resolve_access_points(md, &view.mags);

    let image = Image::for_domain(md, &ctx.default_image, &ctx.default_pull_policy);
    // What the daemons would refuse is found before anything is made.
    if let Err(e) = decide(md, &view, &image, None, None) {
        let msg = format!("invalid spec: {e}");
        if pc
            .iter()
            .all(|c| c.reason != "InvalidSpec" || c.message != msg)
        {
            publish(ctx, md, true, "InvalidSpec", msg.clone()).await;
        }
        let st = MobilityDomainStatus {
            conditions: vec![condition(&pc, "Ready", false, "InvalidSpec", msg, gen_)],
            observed_generation: gen_,
            ..prev.clone()
        };
        write_status(ctx, md, &prev, st).await?;
        return Ok(Action::await_change());
    }

    let applied: Result<(Applied, Option<Failed>), Failed> = async {
        let material = if md.spec.tls.enabled {
            Some(ensure_tls(ctx, md).await?)
        } else {
            None
        };
        ctx.grpc.set_tls(&ns, &name, material.clone());
        let master = if md.spec.ipsec.mode != IpsecModeSpec::Off {
            Some(ensure_ipsec_master(ctx, md).await?)
        } else {
            None
        };
        let want =
            decide(md, &view, &image, material.as_ref(), master.as_deref()).map_err(|e| {
                Failed {
                    what: "render the domain".into(),
                    error: Cause::Spec(e),
                }
            })?;
        // The SAs before the pods that mount them.
        if let Some(sas) = &want.ipsec {
            apply_one(ctx, sas).await?;
        }
        apply_one(ctx, &want.config_map).await?;
        // A claim the API server refuses to change (a smaller size, another StorageClass, a
        // class without expansion) stops nothing else: the LMA keeps its volume as it is,
        // the rest of the domain is applied and its MAGs authorized, and the refusal is the
        // domain's condition.
        let pvc = apply_one(ctx, &want.pvc).await;
        let deployment = apply_one(ctx, &want.lma).await?;
        apply_one(ctx, &want.service).await?;
        let daemonset = match &want.mags {
            Some(ds) => Some(apply_one(ctx, ds).await?),
            None => None,
        };
        let (pvc, pvc_failed) = match pvc {
            Ok(p) => (Some(p), None),
            Err(f) => (None, Some(f)),
        };
        Ok((
            Applied {
                pvc,
                deployment: Some(deployment),
                daemonset,
            },
            pvc_failed,
        ))
    }
    .await;
    let (applied, pvc_failed) = match applied {
        Ok(a) => a,
        Err(f) => return api_failed(ctx, md, &prev, f).await,
    };

    // Talk to the LMA: authorized MAGs, Stats, the Watch task.
    let mut bound = prev.bound_nodes;
    let mut restart_counter = prev.lma_restart_counter;
    let mags = view.mags.clone();
    let lma_result: Result<(), tonic::Status> = async {
        let want: Vec<AuthorizedMag> = mags
            .iter()
            .map(|m| AuthorizedMag {
                proxy_coa: m.proxy_coa.clone(),
                name: m.node.clone(),
                source: 0,
            })
            .collect();
        let key = (ns.clone(), name.clone());
        let stats = ctx
            .grpc
            .binding_cache(&ns, &name)?
            .stats(LmaStatsRequest {})
            .await?
            .into_inner();
        let restarted = restart_counter.is_some_and(|r| r != stats.restart_counter as i64);
        let known = ctx
            .authorized
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .cloned();
        if known.as_ref() != Some(&want) || restarted {
            let r = ctx
                .grpc
                .policy(&ns, &name)?
                .set_authorized_mags(SetAuthorizedMagsRequest { mags: want.clone() })
                .await?
                .into_inner();
            if !r.added.is_empty() || !r.removed.is_empty() {
                publish(
                    ctx,
                    md,
                    false,
                    "AuthorizedMags",
                    format!(
                        "MAGs authorized at the LMA: +{:?} -{:?}",
                        r.added, r.removed
                    ),
                )
                .await;
            }
            ctx.authorized
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(key, want);
        }
        if restarted {
            publish(
                ctx,
                md,
                true,
                "LmaRestarted",
                format!(
                    "LMA restart counter {} -> {}",
                    restart_counter.unwrap_or(0),
                    stats.restart_counter
                ),
            )
            .await;
        }
        bound = stats.bindings as i64;
        restart_counter = Some(stats.restart_counter as i64);
        Ok(())
    }
    .await;
    ensure_watch(ctx, &ns, &name);
    if let Some(f) = pvc_failed {
        return api_failed(ctx, md, &prev, f).await;
    }

    let api_answer = lma_result
        .as_ref()
        .map(|_| ())
        .map_err(|s| format!("{} ({})", s.message(), s.code()));
    let url = ctx.grpc.lma_url(&ns, &name);
    let lma = lma_condition(&LmaInputs {
        namespace: &ns,
        deployment: applied.deployment.as_ref(),
        pvc: applied.pvc.as_ref(),
        pods: &pod_list,
        view: &view,
        api: &api_answer,
        url: &url,
    });
    let magv = mags_condition(&MagInputs {
        md,
        daemonset: applied.daemonset.as_ref(),
        pods: &pod_list,
        view: &view,
        unresolved_access_points: &unresolved,
    });
    let ready = ready_verdict(&lma, &magv);
    if ready.ok && !pc.iter().any(|c| c.type_ == "Ready" && c.status == "True") {
        publish(
            ctx,
            md,
            false,
            "Ready",
            format!(
                "LMA at {} with {} MAGs",
                view.lma_address.map(|a| a.to_string()).unwrap_or_default(),
                mags.len()
            ),
        )
        .await;
    }
    let mags_ready = applied
        .daemonset
        .as_ref()
        .and_then(|d| d.status.as_ref())
        .map(|s| s.number_ready)
        .unwrap_or(0);
    let st = MobilityDomainStatus {
        conditions: conditions_of(
            &pc,
            gen_,
            &[("Ready", &ready), ("LMAReady", &lma), ("MAGsReady", &magv)],
        ),
        lma_address: view.lma_address.map(|a| a.to_string()),
        mags: mags_ready,
        bound_nodes: bound,
        lma_restart_counter: restart_counter,
        authorized_mags: mags,
        observed_generation: gen_,
    };
    write_status(ctx, md, &prev, st).await?;
    match lma_result {
        Err(s) if lma.reason == "LmaUnreachable" => Err(Error::LmaUnreachable {
            domain: name,
            message: s.message().to_string(),
        }),
        _ => {
            ctx.reset_backoff(&format!("md/{ns}/{name}"));
            Ok(Action::requeue(Duration::from_secs(if ready.ok {
                60
            } else {
                10
            })))
        }
    }
}

/// A refused or failed API call: `Ready=False` with the API's reason and message (the other
/// conditions as they were), a Warning event when that is news, then a retry with backoff,
/// or, for an object the API server finds invalid, a wait for the domain to change.
async fn api_failed(
    ctx: &Context,
    md: &MobilityDomain,
    prev: &MobilityDomainStatus,
    f: Failed,
) -> Result<Action> {
    let failure = match &f.error {
        Cause::Api(e) => api_failure(&f.what, e),
        Cause::Pki(e) => ApiFailure {
            reason: "CertificateError",
            message: format!("{}: {e}", f.what),
            transient: false,
        },
        Cause::Spec(e) => ApiFailure {
            reason: "InvalidSpec",
            message: format!("{}: {e}", f.what),
            transient: false,
        },
    };
    let pc = &prev.conditions;
    if !pc
        .iter()
        .any(|c| c.type_ == "Ready" && c.reason == failure.reason && c.message == failure.message)
    {
        publish(ctx, md, true, failure.reason, failure.message.clone()).await;
    }
    let mut conditions = vec![condition(
        pc,
        "Ready",
        false,
        failure.reason,
        failure.message.clone(),
        md.metadata.generation,
    )];
    conditions.extend(pc.iter().filter(|c| c.type_ != "Ready").cloned());
    let st = MobilityDomainStatus {
        conditions,
        observed_generation: md.metadata.generation,
        ..prev.clone()
    };
    write_status(ctx, md, prev, st).await?;
    match f.error {
        Cause::Api(e) if failure.transient => Err(Error::Kube(e)),
        _ => Ok(Action::requeue(Duration::from_secs(300))),
    }
}

/// Starts the domain's Watch task unless it runs.
pub fn ensure_watch(ctx: &Context, ns: &str, name: &str) {
    let key = (ns.to_string(), name.to_string());
    let mut w = ctx.watchers.lock().unwrap_or_else(|e| e.into_inner());
    if w.get(&key).is_some_and(|h| !h.is_finished()) {
        return;
    }
    let Ok(channel) = ctx.grpc.lma_stream_channel(ns, name) else {
        return;
    };
    let view = ctx.view(ns, name);
    let h = tokio::spawn(mirror::watch_domain(
        ns.into(),
        name.into(),
        channel,
        view,
        ctx.changed.clone(),
        ctx.metrics.clone(),
    ));
    w.insert(key, h);
}

async fn write_status(
    ctx: &Context,
    md: &MobilityDomain,
    prev: &MobilityDomainStatus,
    st: MobilityDomainStatus,
) -> Result<()> {
    let strip = |s: &MobilityDomainStatus| {
        let mut s = s.clone();
        for c in &mut s.conditions {
            c.last_transition_time =
                k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::UNIX_EPOCH);
        }
        s
    };
    if md.status.is_some() && strip(prev) == strip(&st) {
        return Ok(());
    }
    let api: Api<MobilityDomain> =
        Api::namespaced(ctx.client.clone(), &md.namespace().unwrap_or_default());
    let patch = Patch::Apply(
        json!({"apiVersion": "pmip.io/v1alpha1", "kind": "MobilityDomain", "status": st}),
    );
    api.patch_status(
        &md.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &patch,
    )
    .await?;
    ctx.metrics.status_written(CONTROLLER);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{domain, pod};

    fn pods(v: Vec<serde_json::Value>) -> Vec<Pod> {
        v.into_iter()
            .map(|p| serde_json::from_value(p).unwrap())
            .collect()
    }

    fn deployment(status: serde_json::Value) -> Deployment {
        serde_json::from_value(json!({"metadata": {"name": "pmip-lab-lma"}, "status": status}))
            .unwrap()
    }

    fn lma_verdict(
        dep: &Deployment,
        pvc: Option<&PersistentVolumeClaim>,
        pods: &[Pod],
        api: std::result::Result<(), String>,
    ) -> Verdict {
        let view = pods_view(&crate::fixtures::domain("lab"), pods);
        lma_condition(&LmaInputs {
            namespace: "pmip",
            deployment: Some(dep),
            pvc,
            pods,
            view: &view,
            api: &api,
            url: "https://pmip-lab-lma.pmip.svc:50051",
        })
    }

    /// While the LMA has no address, mag.yaml stays in the ConfigMap with the last address
    /// the status recorded (a MAG pod starting meanwhile mounts it), and the DaemonSet waits.
    #[test]
    fn mag_yaml_outlives_the_lmas_address_and_the_daemonset_waits() {
        let image = Image {
            reference: "pmip:test".into(),
            pull_policy: "IfNotPresent".into(),
        };
        let mut md = crate::fixtures::domain("lab");
        let none = PodsView::default();
        let d = decide(&md, &none, &image, None, None).unwrap();
        let data = d.config_map.data.clone().unwrap_or_default();
        assert!(!data.contains_key("mag.yaml"), "never an address: none");
        assert!(d.mags.is_none());
        md.status = Some(serde_json::from_value(json!({"lmaAddress": "2001:db8::1"})).unwrap());
        let d = decide(&md, &none, &image, None, None).unwrap();
        let data = d.config_map.data.unwrap_or_default();
        assert!(
            data["mag.yaml"].contains("lma_address: 2001:db8::1"),
            "{data:?}"
        );
        assert!(d.mags.is_none(), "the DaemonSet waits for an address");
        let up = PodsView {
            lma_address: Some("2001:db8::2".parse().unwrap()),
            ..PodsView::default()
        };
        let d = decide(&md, &up, &image, None, None).unwrap();
        let data = d.config_map.data.unwrap_or_default();
        assert!(
            data["mag.yaml"].contains("lma_address: 2001:db8::2"),
            "{data:?}"
        );
        assert!(d.mags.is_some());
    }

    #[test]
    fn lma_refused_by_pod_security_says_which_label() {
        let dep = deployment(json!({"conditions": [{
            "type": "ReplicaFailure", "status": "True", "reason": "FailedCreate",
            "message": "pods \"pmip-lab-lma-5d\" is forbidden: violates PodSecurity \"baseline:latest\": host namespaces (hostNetwork=true), non-default capabilities (container \"lma\" must not include \"NET_ADMIN\", \"NET_RAW\" in securityContext.capabilities.add)"
        }]}));
        let v = lma_verdict(&dep, None, &[], Ok(()));
        assert_eq!(v.reason, "PodsRefused");
        assert!(
            v.message.contains("hostNetwork=true")
                && v.message
                    .contains("pod-security.kubernetes.io/enforce=privileged"),
            "{}",
            v.message
        );
    }

    /// A pod the kubelet refused (here an unsafe sysctl it does not allow) is Failed: the
    /// condition names the reason and the kubelet's message.
    #[test]
    fn a_pod_the_kubelet_refused_is_named_with_its_reason() {
        let dep = deployment(json!({"replicas": 1}));
        let mut p = pod("pmip-lab-lma-1", "lma", "node-1", "2001:db8::9");
        p["status"]["phase"] = json!("Failed");
        p["status"]["reason"] = json!("SysctlForbidden");
        p["status"]["message"] =
            json!("Pod forbidden sysctl: \"net.ipv6.conf.transport.seg6_enabled\" not allowlisted");
        let v = lma_verdict(&dep, None, &pods(vec![p]), Ok(()));
        assert!(
            v.message.contains("SysctlForbidden") && v.message.contains("not allowlisted"),
            "{} {}",
            v.reason,
            v.message
        );
    }

    #[test]
    fn unbound_volume_claim_and_unschedulable_pods() {
        let dep = deployment(json!({"replicas": 1}));
        let mut p = pod("lma", "lma", "", "");
        p["spec"]["nodeName"] = serde_json::Value::Null;
        p["status"] = json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False",
            "reason": "Unschedulable", "message": "0/3 nodes are available: pod has unbound immediate PersistentVolumeClaims."}]});
        let pvc: PersistentVolumeClaim = serde_json::from_value(
            json!({"metadata": {"name": "pmip-lab-lma-state"}, "status": {"phase": "Pending"}}),
        )
        .unwrap();
        let v = lma_verdict(&dep, Some(&pvc), &pods(vec![p.clone()]), Ok(()));
        assert_eq!(v.reason, "PvcUnbound");
        assert!(
            v.message.contains("pmip-lab-lma-state is Pending")
                && v.message.contains("StorageClass"),
            "{}",
            v.message
        );
        let bound: PersistentVolumeClaim = serde_json::from_value(
            json!({"metadata": {"name": "pmip-lab-lma-state"}, "status": {"phase": "Bound"}}),
        )
        .unwrap();
        p["status"]["conditions"][0]["message"] =
            json!("0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector.");
        let v = lma_verdict(&dep, Some(&bound), &pods(vec![p]), Ok(()));
        assert_eq!(v.reason, "Unschedulable");
        assert!(v.message.contains("node affinity"), "{}", v.message);
    }

    #[test]
    fn a_node_without_ipv6_is_named() {
        let dep = deployment(json!({"replicas": 1}));
        let mut p = pod("lma", "lma", "node-1", "10.0.0.1");
        p["status"]["hostIPs"] = json!([{"ip": "10.0.0.1"}]);
        let v = lma_verdict(&dep, None, &pods(vec![p]), Ok(()));
        assert_eq!(v.reason, "NoIPv6NodeAddress");
        assert!(
            v.message.contains("node-1") && v.message.contains("10.0.0.1"),
            "{}",
            v.message
        );
    }

    #[test]
    fn a_crash_looping_lma_says_how_it_exited() {
        let dep = deployment(json!({"replicas": 1}));
        let mut p = pod("lma", "lma", "node-1", "2001:db8::1");
        p["status"]["containerStatuses"] = json!([{
            "name": "lma", "image": "x", "imageID": "", "ready": false, "restartCount": 3,
            "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s"}},
            "lastState": {"terminated": {"exitCode": 1,
                "message": "sysctl net.ipv6.conf.all.forwarding=1: Read-only file system"}}
        }]);
        let v = lma_verdict(&dep, None, &pods(vec![p]), Ok(()));
        assert_eq!(v.reason, "ContainerWaiting");
        assert!(
            v.message.contains("CrashLoopBackOff")
                && v.message
                    .contains("exited with 1: sysctl net.ipv6.conf.all.forwarding"),
            "{}",
            v.message
        );
        let up = deployment(json!({"replicas": 1, "availableReplicas": 1}));
        let v = lma_verdict(
            &up,
            None,
            &pods(vec![pod("lma", "lma", "node-1", "2001:db8::1")]),
            Err("connection refused (Unavailable)".into()),
        );
        assert_eq!(v.reason, "LmaUnreachable");
        let v = lma_verdict(
            &up,
            None,
            &pods(vec![pod("lma", "lma", "node-1", "2001:db8::1")]),
            Ok(()),
        );
        assert!(v.ok);
    }

    #[test]
    fn mags_missing_and_mags_on_nodes_without_ipv6() {
        let md = domain("lab");
        let ds = |desired: i32, current: i32, ready: i32| -> DaemonSet {
            serde_json::from_value(json!({"metadata": {"name": "pmip-lab-mag"}, "status": {
                "desiredNumberScheduled": desired, "currentNumberScheduled": current,
                "numberReady": ready, "numberMisscheduled": 0}}))
            .unwrap()
        };
        let run = |d: &DaemonSet, p: &[Pod]| {
            let view = pods_view(&crate::fixtures::domain("lab"), p);
            mags_condition(&MagInputs {
                md: &md,
                daemonset: Some(d),
                pods: p,
                view: &view,
                unresolved_access_points: &[],
            })
        };
        let base = pods(vec![
            pod("lma", "lma", "node-1", "2001:db8::1"),
            pod("mag-a", "mag", "node-2", "2001:db8::2"),
        ]);
        let v = run(&ds(2, 1, 1), &base);
        assert_eq!(v.reason, "PodsMissing");
        assert!(
            v.message.contains("1 of 2") && v.message.contains("describe daemonset/pmip-lab-mag"),
            "{}",
            v.message
        );
        let mut v4 = base.clone();
        v4.extend(pods(vec![{
            let mut p = pod("mag-b", "mag", "node-3", "10.0.0.3");
            p["status"]["hostIPs"] = json!([{"ip": "10.0.0.3"}]);
            p
        }]));
        let v = run(&ds(2, 2, 1), &v4);
        assert_eq!(v.reason, "NoIPv6NodeAddress");
        assert!(v.message.contains("node-3 (10.0.0.3)"), "{}", v.message);
        assert!(run(&ds(1, 1, 1), &base).ok);
        let ready = ready_verdict(&verdict(true, "Running", "x"), &run(&ds(2, 1, 1), &base));
        assert_eq!(
            (ready.ok, ready.reason),
            (false, "PodsMissing"),
            "Ready carries the reason that holds it back"
        );
    }

    #[test]
    fn api_errors_map_to_reasons() {
        let status = |code: u16| {
            kube::Error::Api(Box::new(
                serde_json::from_value(json!({"status": "Failure", "code": code,
                    "reason": "X", "message": "refused"}))
                .unwrap(),
            ))
        };
        let f = api_failure("apply Service s", &status(403));
        assert_eq!((f.reason, f.transient), ("Forbidden", true));
        assert_eq!(
            f.message,
            "apply Service s: the API server answered 403: refused"
        );
        assert_eq!(api_failure("x", &status(422)).reason, "Invalid");
        assert!(!api_failure("x", &status(422)).transient);
        assert_eq!(api_failure("x", &status(409)).reason, "Conflict");
        assert_eq!(api_failure("x", &status(500)).reason, "ApiError");
    }

    #[test]
    fn event_notes_fit_a_kibibyte() {
        assert_eq!(crate::event_note("short".into()), "short");
        let long = "é".repeat(1000);
        let n = crate::event_note(long);
        assert!(n.len() <= crate::EVENT_NOTE_MAX && n.ends_with("..."));
    }
}
