//! The MobileNode reconciler: profile upserted at the LMA, lab-mode attachment, status mirrored
//! from the domain's view of the LMA binding cache; deletion behind a finalizer that revokes the
//! binding (RFC 5846) and removes the profile.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::{Resource, ResourceExt};
use proto::v1::{
    DeleteMobileNodeRequest, LabAttachRequest, LabDetachRequest, MobileNodeProfile,
    RevocationTrigger, RevokeRequest, UpsertMobileNodeRequest,
};
use serde_json::json;
use tonic::Code;

use crate::crd::{MobileNode, MobileNodeStatus, MobilityDomain};
use crate::render::{COMPONENT_LABEL, DOMAIN_LABEL, FIELD_MANAGER, first_global_ipv6};
use crate::{Context, Error, Result, condition, status};

pub const FINALIZER: &str = "pmip.io/mobilenode";
const CONTROLLER: &str = "mobilenode";

/// Entry point for the controller.
pub async fn reconcile(mn: Arc<MobileNode>, ctx: Arc<Context>) -> Result<Action> {
    let start = Instant::now();
    let ns = mn.namespace().unwrap_or_default();
    let api: Api<MobileNode> = Api::namespaced(ctx.client.clone(), &ns);
    let res = finalizer(&api, FINALIZER, mn, |ev| async {
        match ev {
            Finalizer::Apply(mn) => apply(&mn, &ctx).await,
            Finalizer::Cleanup(mn) => cleanup(&mn, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)));
    ctx.metrics
        .reconciled(CONTROLLER, start.elapsed().as_secs_f64());
    res
}

/// Requeue with a per-object exponential backoff; the status already says why.
pub fn error_policy(mn: Arc<MobileNode>, error: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(node = %mn.name_any(), %error, "reconcile failed");
    ctx.metrics.failed(CONTROLLER, error);
    Action::requeue(ctx.next_backoff(&format!(
        "mn/{}/{}",
        mn.namespace().unwrap_or_default(),
        mn.name_any()
    )))
}

fn key(mn: &MobileNode) -> crate::NodeKey {
    (
        mn.namespace().unwrap_or_default(),
        mn.spec.domain.clone(),
        mn.spec.mn_id.clone(),
    )
}

/// The profile the LMA gets: allowed MAG node names resolved to proxy-CoAs with the domain's
/// authorized MAG list. Names not (yet) resolvable are left out: that only narrows the set.
pub fn profile(mn: &MobileNode, md: &MobilityDomain) -> MobileNodeProfile {
    let mags = md
        .status
        .as_ref()
        .map(|s| s.authorized_mags.as_slice())
        .unwrap_or_default();
    let allowed_mags = mn
        .spec
        .allowed_mags
        .iter()
        .filter_map(|m| {
            if m.parse::<std::net::Ipv6Addr>().is_ok() {
                Some(m.clone())
            } else {
                mags.iter()
                    .find(|a| &a.node == m)
                    .map(|a| a.proxy_coa.clone())
            }
        })
        .collect();
    MobileNodeProfile {
        mn_id: mn.spec.mn_id.clone(),
        link_layer_addresses: mn.spec.link_layer_addresses.clone(),
        home_network_prefixes: mn.spec.home_network_prefix.iter().cloned().collect(),
        allowed_mags,
        access_technology_type: mn.spec.access_technology_type.map(|a| i32::from(a.value())),
        local_routing: mn.spec.local_routing,
        proxy_registration_enabled: mn.spec.proxy_registration_enabled,
        ipv6: mn.spec.ipv6,
        ipv4: mn.spec.ipv4,
        ipv4_home_address: mn.spec.ipv4_home_address.clone().unwrap_or_default(),
        mn_id_from_link_layer: None,
    }
}

/// Whether a pinned prefix is one a pool of the domain allocates (the admission policy checks
/// the same; this covers clusters without it and domains changed afterwards).
pub fn prefix_in_pools(mn: &MobileNode, md: &MobilityDomain) -> Result<(), String> {
    let Some(p) = &mn.spec.home_network_prefix else {
        return Ok(());
    };
    let net: ipnet::Ipv6Net = p
        .parse()
        .map_err(|_| format!("{p} is not an IPv6 prefix"))?;
    let inside = md.spec.lma.prefix_pools.iter().any(|pool| {
        pool.prefix
            .parse::<ipnet::Ipv6Net>()
            .map(|agg| agg.contains(&net) && net.prefix_len() == pool.prefix_length)
            .unwrap_or(false)
    });
    if inside {
        Ok(())
    } else {
        Err(format!(
            "homeNetworkPrefix {p} is not a prefix that a pool of MobilityDomain {} allocates",
            md.name_any()
        ))
    }
}

fn unreachable(domain: &str, s: &tonic::Status) -> Error {
    Error::LmaUnreachable {
        domain: domain.into(),
        message: format!("{}: {}", s.code(), s.message()),
    }
}

async fn publish(ctx: &Context, mn: &MobileNode, warning: bool, reason: &str, note: String) {
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
    if let Err(e) = ctx.recorder.publish(&ev, &mn.object_ref(&())).await {
        tracing::warn!(error = %e, "cannot publish event");
    }
}

async fn write_status(ctx: &Context, mn: &MobileNode, new: MobileNodeStatus) -> Result<()> {
    if let Some(old) = &mn.status
        && status::same_ignoring_times(old, &new)
    {
        return Ok(());
    }
    let api: Api<MobileNode> =
        Api::namespaced(ctx.client.clone(), &mn.namespace().unwrap_or_default());
    let patch = Patch::Apply(json!({
        "apiVersion": "pmip.io/v1alpha1",
        "kind": "MobileNode",
        "status": new,
    }));
    api.patch_status(
        &mn.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &patch,
    )
    .await?;
    ctx.metrics.status_written(CONTROLLER);
    Ok(())
}

/// The pod IP of the domain's MAG on `node`.
async fn mag_on(ctx: &Context, ns: &str, domain: &str, node: &str) -> Result<Option<String>> {
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let lp = ListParams::default()
        .labels(&format!("{DOMAIN_LABEL}={domain},{COMPONENT_LABEL}=mag"))
        .fields(&format!("spec.nodeName={node}"));
    let list = pods.list(&lp).await?;
    Ok(list.items.iter().find_map(|p| {
        let st = p.status.as_ref()?;
        let ips: Vec<&str> = st
            .pod_ips
            .iter()
            .flatten()
            .map(|i| i.ip.as_str())
            .chain(st.pod_ip.as_deref())
            .collect();
        first_global_ipv6(ips.iter().copied())
            .map(|a| a.to_string())
            .or_else(|| ips.first().map(|s| s.to_string()))
    }))
}

async fn apply(mn: &MobileNode, ctx: &Context) -> Result<Action> {
    let (ns, domain, mn_id) = key(mn);
    let gen_ = mn.metadata.generation;
    ctx.node_index
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key(mn), mn.name_any());
    let prev = mn.status.clone();
    let prev_conds = prev
        .as_ref()
        .map(|s| s.conditions.clone())
        .unwrap_or_default();
    let mds: Api<MobilityDomain> = Api::namespaced(ctx.client.clone(), &ns);

    let Some(md) = mds.get_opt(&domain).await? else {
        let mut st = prev.clone().unwrap_or_default();
        st.conditions = vec![condition(
            &prev_conds,
            "Ready",
            false,
            "DomainNotFound",
            format!("MobilityDomain {domain} does not exist in namespace {ns}"),
            gen_,
        )];
        st.observed_generation = gen_;
        write_status(ctx, mn, st).await?;
        return Ok(Action::requeue(Duration::from_secs(30)));
    };

    crate::domain::load_tls(ctx, &md).await?;
    if let Err(why) = prefix_in_pools(mn, &md) {
        let mut st = prev.clone().unwrap_or_default();
        st.conditions = vec![condition(
            &prev_conds,
            "Ready",
            false,
            "InvalidSpec",
            why.clone(),
            gen_,
        )];
        st.observed_generation = gen_;
        if prev_conds.iter().all(|c| c.reason != "InvalidSpec") {
            publish(ctx, mn, true, "InvalidSpec", why).await;
        }
        write_status(ctx, mn, st).await?;
        return Ok(Action::await_change());
    }

    // The profile, unless the LMA already has this generation in this epoch.
    let view = ctx.view(&ns, &domain);
    let epoch = view
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .resume_from()
        .map(|c| c.epoch)
        .unwrap_or(0);
    let want = profile(mn, &md);
    let known = ctx
        .synced_profiles
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&key(mn))
        .cloned();
    let mut ready = condition(
        &prev_conds,
        "Ready",
        true,
        "ProfileSynced",
        "the LMA has the profile",
        gen_,
    );
    if known.as_ref() != Some(&(gen_, epoch, want.clone())) {
        let res = match ctx.grpc.policy(&ns, &domain) {
            Ok(mut c) => {
                c.upsert_mobile_node(UpsertMobileNodeRequest {
                    profile: Some(want.clone()),
                })
                .await
            }
            Err(s) => Err(s),
        };
        match res {
            Ok(_) => {
                ctx.synced_profiles
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(key(mn), (gen_, epoch, want));
            }
            Err(s)
                if matches!(
                    s.code(),
                    Code::InvalidArgument
                        | Code::AlreadyExists
                        | Code::OutOfRange
                        | Code::FailedPrecondition
                ) =>
            {
                let msg = format!("the LMA refused the profile: {}", s.message());
                ready = condition(
                    &prev_conds,
                    "Ready",
                    false,
                    "ProfileRefused",
                    msg.clone(),
                    gen_,
                );
                if prev_conds.iter().all(|c| c.reason != "ProfileRefused") {
                    publish(ctx, mn, true, "ProfileRefused", msg).await;
                }
            }
            Err(s) => {
                let e = unreachable(&domain, &s);
                let mut st = prev.clone().unwrap_or_default();
                st.conditions = vec![condition(
                    &prev_conds,
                    "Ready",
                    false,
                    "LmaUnreachable",
                    e.to_string(),
                    gen_,
                )];
                st.observed_generation = gen_;
                write_status(ctx, mn, st).await?;
                return Err(e);
            }
        }
    }

    // Lab mode: move the emulated node to where spec.lab.attachTo says.
    let mut conds = vec![ready];
    let desired = mn.spec.lab.as_ref().and_then(|l| l.attach_to.clone());
    let mut attached = prev.as_ref().and_then(|s| s.lab_attached_to.clone());
    if desired.is_some() || attached.is_some() {
        if !md.spec.mags.lab {
            conds.push(condition(
                &prev_conds,
                "LabReady",
                false,
                "LabModeDisabled",
                format!("MobilityDomain {domain} has mags.lab: false"),
                gen_,
            ));
        } else if desired != attached {
            match lab_move(
                ctx,
                mn,
                &ns,
                &domain,
                attached.as_deref(),
                desired.as_deref(),
            )
            .await
            {
                Ok(()) => {
                    let note = match (&attached, &desired) {
                        (Some(a), Some(d)) => {
                            format!("emulated node moved from MAG {a} to MAG {d}")
                        }
                        (None, Some(d)) => format!("emulated node attached to MAG {d}"),
                        (Some(a), None) => format!("emulated node removed from MAG {a}"),
                        (None, None) => String::new(),
                    };
                    let reason = if attached.is_some() && desired.is_some() {
                        "HandoverRequested"
                    } else {
                        "LabAttachment"
                    };
                    publish(ctx, mn, false, reason, note).await;
                    attached = desired.clone();
                    conds.push(condition(
                        &prev_conds,
                        "LabReady",
                        true,
                        "Attached",
                        "the emulated node is where spec.lab.attachTo says",
                        gen_,
                    ));
                }
                Err(e) => {
                    conds.push(condition(
                        &prev_conds,
                        "LabReady",
                        false,
                        "MagUnreachable",
                        e.to_string(),
                        gen_,
                    ));
                    let mut st = status_now(ctx, mn, attached.as_deref(), prev.as_ref());
                    st.conditions = conds;
                    st.observed_generation = gen_;
                    write_status(ctx, mn, st).await?;
                    return Err(e);
                }
            }
        } else {
            conds.push(condition(
                &prev_conds,
                "LabReady",
                true,
                "Attached",
                "the emulated node is where spec.lab.attachTo says",
                gen_,
            ));
        }
    }

    let mut st = status_now(ctx, mn, attached.as_deref(), prev.as_ref());
    st.conditions = conds;
    st.observed_generation = gen_;
    for n in status::notices(prev.as_ref(), &st) {
        publish(ctx, mn, n.warning, n.reason, n.note).await;
    }
    write_status(ctx, mn, st).await?;
    ctx.reset_backoff(&format!("mn/{ns}/{}", mn.name_any()));
    let _ = mn_id;
    Ok(Action::requeue(Duration::from_secs(300)))
}

fn status_now(
    ctx: &Context,
    mn: &MobileNode,
    lab: Option<&str>,
    prev: Option<&MobileNodeStatus>,
) -> MobileNodeStatus {
    let (ns, domain, mn_id) = key(mn);
    let obs = ctx
        .view(&ns, &domain)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .observe(&mn_id);
    status::from_observation(&obs, lab, prev)
}

async fn lab_move(
    ctx: &Context,
    mn: &MobileNode,
    ns: &str,
    domain: &str,
    from: Option<&str>,
    to: Option<&str>,
) -> Result<()> {
    let mag_err = |mag: &str, message: String| Error::Mag {
        mag: mag.into(),
        message,
    };
    if let Some(old) = from
        && let Some(ip) = mag_on(ctx, ns, domain, old).await?
    {
        let mut g = ctx
            .grpc
            .gateway(ns, domain, &ip)
            .map_err(|s| mag_err(old, s.to_string()))?;
        match g
            .lab_detach(LabDetachRequest {
                mn_id: mn.spec.mn_id.clone(),
            })
            .await
        {
            Ok(_) => {}
            Err(s) if s.code() == Code::NotFound => {}
            Err(s) => return Err(mag_err(old, format!("LabDetach: {}", s.message()))),
        }
    }
    if let Some(new) = to {
        let ip = mag_on(ctx, ns, domain, new)
            .await?
            .ok_or_else(|| mag_err(new, format!("no MAG of domain {domain} runs on node {new}")))?;
        let mut g = ctx
            .grpc
            .gateway(ns, domain, &ip)
            .map_err(|s| mag_err(new, s.to_string()))?;
        g.lab_attach(LabAttachRequest {
            mn_id: mn.spec.mn_id.clone(),
            link_layer_address: mn
                .spec
                .link_layer_addresses
                .first()
                .cloned()
                .unwrap_or_default(),
            namespace: String::new(),
            access_interface: String::new(),
            access_technology_type: mn.spec.access_technology_type.map(|a| i32::from(a.value())),
        })
        .await
        .map_err(|s| mag_err(new, format!("LabAttach: {}", s.message())))?;
    }
    Ok(())
}

async fn cleanup(mn: &MobileNode, ctx: &Context) -> Result<Action> {
    let (ns, domain, mn_id) = key(mn);
    ctx.node_index
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&key(mn));
    ctx.synced_profiles
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&key(mn));
    let mds: Api<MobilityDomain> = Api::namespaced(ctx.client.clone(), &ns);
    let live = mds
        .get_opt(&domain)
        .await?
        .filter(|md| md.metadata.deletion_timestamp.is_none());
    let Some(md) = live else {
        // The LMA goes with its domain: nothing to revoke.
        return Ok(Action::await_change());
    };
    crate::domain::load_tls(ctx, &md).await?;
    if let Some(at) = mn.status.as_ref().and_then(|s| s.lab_attached_to.clone())
        && md.spec.mags.lab
    {
        lab_move(ctx, mn, &ns, &domain, Some(&at), None).await?;
    }
    let mut bc = ctx
        .grpc
        .binding_cache(&ns, &domain)
        .map_err(|s| unreachable(&domain, &s))?;
    let note = match bc
        .revoke(RevokeRequest {
            mn_id: mn_id.clone(),
            trigger: RevocationTrigger::AdministrativeReason as i32,
            proxy_coa: String::new(),
        })
        .await
    {
        Ok(r) => {
            let r = r.into_inner();
            Some(format!(
                "binding revoked (RFC 5846), outcome {:?}",
                r.outcome()
            ))
        }
        Err(s) if s.code() == Code::NotFound => None,
        Err(s) => return Err(unreachable(&domain, &s)),
    };
    let mut pol = ctx
        .grpc
        .policy(&ns, &domain)
        .map_err(|s| unreachable(&domain, &s))?;
    match pol
        .delete_mobile_node(DeleteMobileNodeRequest { mn_id })
        .await
    {
        Ok(_) => {}
        Err(s) if s.code() == Code::NotFound => {}
        Err(s) => return Err(unreachable(&domain, &s)),
    }
    publish(
        ctx,
        mn,
        false,
        "Deleted",
        note.unwrap_or_else(|| "profile removed from the LMA".into()),
    )
    .await;
    Ok(Action::await_change())
}
