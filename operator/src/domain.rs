//! The MobilityDomain reconciler: ConfigMap, LMA (PVC, Deployment, Service), MAG DaemonSet,
//! the LMA's authorized MAGs from the nodes running MAGs, the Watch task feeding MobileNode
//! status, and the domain's status from the workloads and the LMA's Stats.

use std::collections::BTreeMap;
use std::net::Ipv6Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};
use proto::v1::{AuthorizedMag, LmaStatsRequest, SetAuthorizedMagsRequest};
use serde_json::{Value, json};

use crate::crd::{AuthorizedMagStatus, MobilityDomain, MobilityDomainStatus};
use crate::render::{self, COMPONENT_LABEL, DOMAIN_LABEL, FIELD_MANAGER, Image, Names};
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
        note: Some(note),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&ev, &md.object_ref(&())).await {
        tracing::warn!(error = %e, "cannot publish event");
    }
}

async fn ssa(ctx: &Context, ns: &str, obj: Value) -> Result<Value> {
    let kind = obj["kind"].as_str().unwrap_or_default().to_string();
    let name = obj["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    let patch = Patch::Apply(&obj);
    let c = ctx.client.clone();
    let v = match kind.as_str() {
        "ConfigMap" => serde_json::to_value(
            Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(c, ns)
                .patch(&name, &pp, &patch)
                .await?,
        ),
        "PersistentVolumeClaim" => serde_json::to_value(
            Api::<k8s_openapi::api::core::v1::PersistentVolumeClaim>::namespaced(c, ns)
                .patch(&name, &pp, &patch)
                .await?,
        ),
        "Service" => serde_json::to_value(
            Api::<k8s_openapi::api::core::v1::Service>::namespaced(c, ns)
                .patch(&name, &pp, &patch)
                .await?,
        ),
        "Deployment" => serde_json::to_value(
            Api::<Deployment>::namespaced(c, ns)
                .patch(&name, &pp, &patch)
                .await?,
        ),
        "DaemonSet" => serde_json::to_value(
            Api::<DaemonSet>::namespaced(c, ns)
                .patch(&name, &pp, &patch)
                .await?,
        ),
        other => return Err(Error::Config(format!("no apply for kind {other}"))),
    };
    v.map_err(|e| Error::Config(e.to_string()))
}

/// The domain's pods: (LMA address, authorized MAGs by node).
pub fn addresses(pods: &[Pod]) -> (Option<Ipv6Addr>, Vec<AuthorizedMagStatus>) {
    let host_ips = |p: &Pod| -> Option<Ipv6Addr> {
        let st = p.status.as_ref()?;
        let ips: Vec<&str> = st
            .host_ips
            .iter()
            .flatten()
            .map(|i| i.ip.as_str())
            .chain(st.host_ip.as_deref())
            .collect();
        render::first_global_ipv6(ips)
    };
    let component = |p: &Pod| p.labels().get(COMPONENT_LABEL).cloned().unwrap_or_default();
    let alive = |p: &Pod| p.metadata.deletion_timestamp.is_none();
    let lma = pods
        .iter()
        .filter(|p| component(p) == "lma" && alive(p))
        .find_map(host_ips);
    let mut mags: Vec<AuthorizedMagStatus> = pods
        .iter()
        .filter(|p| component(p) == "mag" && alive(p))
        .filter_map(|p| {
            Some(AuthorizedMagStatus {
                node: p.spec.as_ref()?.node_name.clone()?,
                proxy_coa: host_ips(p)?.to_string(),
            })
        })
        .collect();
    mags.sort();
    mags.dedup();
    (lma, mags)
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

async fn apply(md: &MobilityDomain, ctx: &Context) -> Result<Action> {
    let ns = md.namespace().unwrap_or_default();
    let name = md.name_any();
    let gen_ = md.metadata.generation;
    let prev = md.status.clone().unwrap_or_default();
    let pc = prev.conditions.clone();

    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let pod_list = pods
        .list(&ListParams::default().labels(&format!("{DOMAIN_LABEL}={name}")))
        .await?;
    let (lma_address, mags) = addresses(&pod_list.items);
    let (aps, unresolved) = resolve_access_points(md, &mags);

    let lma_cfg = match render::lma_config(&name, &md.spec, aps.clone()) {
        Ok(c) => c,
        Err(e) => {
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
    };
    let lma_yaml = serde_saphyr::to_string(&lma_cfg).map_err(|e| Error::Config(e.to_string()))?;
    let mag_yaml = match lma_address {
        Some(a) => {
            let cfg = render::mag_config(&ns, &name, &md.spec, a, aps)
                .map_err(|e| Error::Config(e.to_string()))?;
            Some(serde_saphyr::to_string(&cfg).map_err(|e| Error::Config(e.to_string()))?)
        }
        None => None,
    };
    let image = Image::for_domain(md, &ctx.default_image, &ctx.default_pull_policy);

    ssa(
        ctx,
        &ns,
        render::config_map(md, &lma_yaml, mag_yaml.as_deref()),
    )
    .await?;
    ssa(ctx, &ns, render::lma_pvc(md)).await?;
    let dep = ssa(
        ctx,
        &ns,
        render::lma_deployment(md, &image, &render::config_hash(&lma_yaml)),
    )
    .await?;
    ssa(ctx, &ns, render::lma_service(md)).await?;
    let ds = match &mag_yaml {
        Some(y) => Some(
            ssa(
                ctx,
                &ns,
                render::mag_daemonset(md, &image, &render::config_hash(y)),
            )
            .await?,
        ),
        None => None,
    };
    let lma_available = dep["status"]["availableReplicas"].as_i64().unwrap_or(0) >= 1;
    let mags_ready = ds
        .as_ref()
        .and_then(|d| d["status"]["numberReady"].as_i64())
        .unwrap_or(0);
    let mags_desired = ds
        .as_ref()
        .and_then(|d| d["status"]["desiredNumberScheduled"].as_i64())
        .unwrap_or(0);

    // Talk to the LMA: authorized MAGs, Stats, the Watch task.
    let mut bound = prev.bound_nodes;
    let mut restart_counter = prev.lma_restart_counter;
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

    let mut conds = Vec::new();
    let lma_ok = lma_result.is_ok() && lma_available;
    let lma_cond = match &lma_result {
        Err(s) => condition(
            &pc,
            "LMAReady",
            false,
            "LmaUnreachable",
            format!(
                "{} at {}: {} ({})",
                if lma_available {
                    "LMA API not answering"
                } else {
                    "LMA not available yet"
                },
                ctx.grpc.lma_url(&ns, &name),
                s.message(),
                s.code()
            ),
            gen_,
        ),
        Ok(()) if !lma_available => condition(
            &pc,
            "LMAReady",
            false,
            "Starting",
            "the LMA Deployment has no available replica",
            gen_,
        ),
        Ok(()) => condition(
            &pc,
            "LMAReady",
            true,
            "Running",
            "the LMA answers on its gRPC API",
            gen_,
        ),
    };
    conds.push(lma_cond);
    let mags_ok = lma_address.is_some() && mags_desired > 0 && mags_ready >= mags_desired;
    conds.push(match lma_address {
        None => condition(
            &pc,
            "MAGsReady",
            false,
            "WaitingForLma",
            "MAGs start once the LMA has an IPv6 address",
            gen_,
        ),
        Some(_) if mags_desired == 0 => condition(
            &pc,
            "MAGsReady",
            false,
            "NoNodes",
            "no node matches mags.nodeSelector",
            gen_,
        ),
        Some(_) if !mags_ok => condition(
            &pc,
            "MAGsReady",
            false,
            "Starting",
            format!("{mags_ready} of {mags_desired} MAGs ready"),
            gen_,
        ),
        Some(_) if !unresolved.is_empty() => condition(
            &pc,
            "MAGsReady",
            true,
            "AccessPointsUnresolved",
            format!(
                "{mags_ready} MAGs ready; access points without a MAG: {}",
                unresolved.join(", ")
            ),
            gen_,
        ),
        Some(_) => condition(
            &pc,
            "MAGsReady",
            true,
            "Running",
            format!("{mags_ready} MAGs ready"),
            gen_,
        ),
    });
    let ready = lma_ok && mags_ok;
    conds.insert(
        0,
        condition(
            &pc,
            "Ready",
            ready,
            if ready { "Ready" } else { "NotReady" },
            if ready {
                "the LMA and every MAG are running".to_string()
            } else {
                "see LMAReady and MAGsReady".to_string()
            },
            gen_,
        ),
    );
    if ready && !pc.iter().any(|c| c.type_ == "Ready" && c.status == "True") {
        publish(
            ctx,
            md,
            false,
            "Ready",
            format!(
                "LMA at {} with {mags_ready} MAGs",
                lma_address.map(|a| a.to_string()).unwrap_or_default()
            ),
        )
        .await;
    }

    let st = MobilityDomainStatus {
        conditions: conds,
        lma_address: lma_address.map(|a| a.to_string()),
        mags: mags_ready as i32,
        bound_nodes: bound,
        lma_restart_counter: restart_counter,
        authorized_mags: mags,
        observed_generation: gen_,
    };
    write_status(ctx, md, &prev, st).await?;
    match lma_result {
        Err(s) => Err(Error::LmaUnreachable {
            domain: name,
            message: s.message().to_string(),
        }),
        Ok(()) => {
            ctx.reset_backoff(&format!("md/{ns}/{name}"));
            Ok(Action::requeue(Duration::from_secs(if ready {
                60
            } else {
                10
            })))
        }
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
    let _ = Names::of(&md.name_any());
    Ok(())
}
