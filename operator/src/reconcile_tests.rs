//! Every reconcile branch against the mocked API server and the fake LMA/MAG, and status
//! mirroring through LMA restarts and out-of-order events.

use std::sync::Arc;
use std::time::Duration;

use proto::v1::binding_event::Event;
use proto::v1::{Binding, BindingState, BindingUpdated, UpdateReason};
use serde_json::json;

use crate::crd::{MobileNodeState, MobileNodeStatus};
use crate::fixtures::*;
use crate::{domain, node};

const MD_PATH: &str = "/apis/pmip.io/v1alpha1/namespaces/pmip/mobilitydomains/lab";
const PODS: &str = "/api/v1/namespaces/pmip/pods";
const DEPLOYMENT: &str = "/apis/apps/v1/namespaces/pmip/deployments/pmip-lab-lma";
const DAEMONSET: &str = "/apis/apps/v1/namespaces/pmip/daemonsets/pmip-lab-mag";

/// The LMA Deployment as the API server has it once its pod runs.
fn available_deployment() -> serde_json::Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
           "metadata": {"name": "pmip-lab-lma", "namespace": "pmip"},
           "status": {"replicas": 1, "availableReplicas": 1, "readyReplicas": 1}})
}

fn mn_path(name: &str) -> String {
    format!("/apis/pmip.io/v1alpha1/namespaces/pmip/mobilenodes/{name}")
}

fn status_of(api: &ApiServer, name: &str) -> MobileNodeStatus {
    let patches = api.find("PATCH", &format!("{}/status", mn_path(name)));
    let last = patches.last().expect("a status patch");
    serde_json::from_value(last.body["status"].clone()).unwrap()
}

fn binding(mag: &str, coa: &str, handovers: u64, state: BindingState) -> Binding {
    Binding {
        mn_id: "mn1@example.org".into(),
        proxy_coa: coa.into(),
        mag_name: Some(mag.into()),
        home_network_prefixes: vec!["2001:db8:100:1::/64".into()],
        lifetime_granted_seconds: 3600,
        handover_count: handovers,
        last_handover_interruption_ms: (handovers > 0).then_some(35),
        state: state as i32,
        ..Binding::default()
    }
}

/// Stores the object as the API server would have it, then reconciles it.
async fn run_node(
    api: &ApiServer,
    mn: crate::crd::MobileNode,
    ctx: Arc<crate::Context>,
) -> crate::Result<kube::runtime::controller::Action> {
    api.put(
        &mn_path(&mn.metadata.name.clone().unwrap()),
        serde_json::to_value(&mn).unwrap(),
    );
    node::reconcile(Arc::new(mn), ctx).await
}

async fn run_domain(
    api: &ApiServer,
    md: crate::crd::MobilityDomain,
    ctx: Arc<crate::Context>,
) -> crate::Result<kube::runtime::controller::Action> {
    api.put(MD_PATH, serde_json::to_value(&md).unwrap());
    domain::reconcile(Arc::new(md), ctx).await
}

async fn wait_for(mut f: impl FnMut() -> bool) {
    for _ in 0..200 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition not reached");
}

#[tokio::test]
async fn node_without_finalizer_gets_one_first() {
    let (ctx, api, lma, _rx) = context().await;
    let mut mn = node("mn1", "mn1@example.org");
    mn.metadata.finalizers = None;
    api.put(&mn_path("mn1"), serde_json::to_value(&mn).unwrap());
    run_node(&api, mn, ctx).await.unwrap();
    let p = api.find("PATCH", &mn_path("mn1"));
    assert_eq!(p.len(), 1);
    assert!(
        p[0].body.to_string().contains(node::FINALIZER),
        "{:?}",
        p[0].body
    );
    assert!(
        lma.calls().is_empty(),
        "no LMA call before the finalizer is in place"
    );
}

#[tokio::test]
async fn node_of_missing_domain_says_so() {
    let (ctx, api, lma, _rx) = context().await;
    run_node(&api, node("mn1", "mn1@example.org"), ctx)
        .await
        .unwrap();
    let st = status_of(&api, "mn1");
    assert_eq!(st.conditions[0].reason, "DomainNotFound");
    assert!(lma.calls().is_empty());
}

#[tokio::test]
async fn node_profile_is_upserted_with_mag_names_resolved() {
    let (ctx, api, lma, _rx) = context().await;
    let mut md = serde_json::to_value(domain("lab")).unwrap();
    md["status"] = json!({"authorizedMags": [{"node": "w1", "proxyCoa": "2001:db8::10"}]});
    api.put(MD_PATH, md);
    let mut mn = node("mn1", "mn1@example.org");
    mn.spec.allowed_mags = vec!["w1".into(), "2001:db8::99".into(), "unknown-node".into()];
    mn.spec.home_network_prefix = Some("2001:db8:100:7::/64".into());
    run_node(&api, mn.clone(), ctx.clone()).await.unwrap();
    assert_eq!(lma.calls(), vec!["Upsert(mn1@example.org)"]);
    let p = lma.state.lock().unwrap().profiles["mn1@example.org"].clone();
    assert_eq!(p.allowed_mags, vec!["2001:db8::10", "2001:db8::99"]);
    assert_eq!(p.home_network_prefixes, vec!["2001:db8:100:7::/64"]);
    let st = status_of(&api, "mn1");
    assert_eq!(st.state, MobileNodeState::Detached);
    assert_eq!(st.conditions[0].reason, "ProfileSynced");
    // A second reconcile of the same generation does not resend the profile.
    run_node(&api, mn, ctx).await.unwrap();
    assert_eq!(lma.calls().len(), 1);
}

#[tokio::test]
async fn node_with_prefix_outside_the_pools_is_refused_without_lma_call() {
    let (ctx, api, lma, _rx) = context().await;
    api.put(MD_PATH, serde_json::to_value(domain("lab")).unwrap());
    let mut mn = node("mn1", "mn1@example.org");
    mn.spec.home_network_prefix = Some("2001:db8:999:1::/64".into());
    run_node(&api, mn, ctx).await.unwrap();
    assert_eq!(status_of(&api, "mn1").conditions[0].reason, "InvalidSpec");
    assert_eq!(api.events(), vec!["InvalidSpec"]);
    assert!(lma.calls().is_empty());
}

#[tokio::test]
async fn unreachable_lma_is_an_error_with_a_condition_and_backoff() {
    let (ctx, api, lma, _rx) = context().await;
    api.put(MD_PATH, serde_json::to_value(domain("lab")).unwrap());
    lma.state.lock().unwrap().down = true;
    let mn = Arc::new(node("mn1", "mn1@example.org"));
    let err = run_node(&api, (*mn).clone(), ctx.clone())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not reachable"), "{err}");
    let st = status_of(&api, "mn1");
    assert_eq!(st.conditions[0].reason, "LmaUnreachable");
    let first = ctx.next_backoff("x");
    let second = ctx.next_backoff("x");
    assert!(second > first);
    // Once the LMA answers, the profile goes through.
    lma.state.lock().unwrap().down = false;
    run_node(&api, (*mn).clone(), ctx).await.unwrap();
    assert!(
        lma.calls()
            .ends_with(&["Upsert(mn1@example.org)".to_string()])
    );
}

#[tokio::test]
async fn lab_attach_then_handover_by_patching_attach_to() {
    let (ctx, api, lma, _rx) = context().await;
    let mut md = domain("lab");
    md.spec.mags.lab = true;
    api.put(MD_PATH, serde_json::to_value(&md).unwrap());
    api.put_list(
        PODS,
        vec![
            pod("mag-a", "mag", "w1", "2001:db8::10"),
            pod("mag-b", "mag", "w2", "2001:db8::20"),
        ],
    );
    let mut mn = node("mn1", "mn1@example.org");
    mn.spec.lab = Some(crate::crd::LabSpec {
        attach_to: Some("w1".into()),
    });
    run_node(&api, mn.clone(), ctx.clone()).await.unwrap();
    assert!(
        lma.calls()
            .contains(&"LabAttach(mn1@example.org,02:00:00:00:01:01)".to_string())
    );
    let st = status_of(&api, "mn1");
    assert_eq!(st.lab_attached_to.as_deref(), Some("w1"));
    assert_eq!(st.state, MobileNodeState::Registering);
    // kubectl patch ... attachTo: w2
    mn.status = Some(st);
    mn.spec.lab = Some(crate::crd::LabSpec {
        attach_to: Some("w2".into()),
    });
    mn.metadata.generation = Some(2);
    run_node(&api, mn, ctx).await.unwrap();
    let calls = lma.calls();
    let n = calls.len();
    assert_eq!(
        &calls[n - 2..],
        &[
            "LabDetach(mn1@example.org)".to_string(),
            "LabAttach(mn1@example.org,02:00:00:00:01:01)".to_string()
        ]
    );
    assert_eq!(
        status_of(&api, "mn1").lab_attached_to.as_deref(),
        Some("w2")
    );
    assert!(api.events().contains(&"HandoverRequested".to_string()));
    // The MAG pods were looked up by node.
    assert!(
        api.find("GET", PODS)
            .iter()
            .any(|c| c.query.contains("spec.nodeName%3Dw2"))
    );
}

#[tokio::test]
async fn lab_mode_off_in_the_domain_is_a_condition() {
    let (ctx, api, lma, _rx) = context().await;
    api.put(MD_PATH, serde_json::to_value(domain("lab")).unwrap());
    let mut mn = node("mn1", "mn1@example.org");
    mn.spec.lab = Some(crate::crd::LabSpec {
        attach_to: Some("w1".into()),
    });
    run_node(&api, mn, ctx).await.unwrap();
    let st = status_of(&api, "mn1");
    assert!(
        st.conditions
            .iter()
            .any(|c| c.type_ == "LabReady" && c.reason == "LabModeDisabled")
    );
    assert!(!lma.calls().iter().any(|c| c.starts_with("LabAttach")));
}

#[tokio::test]
async fn deletion_revokes_the_binding_and_removes_the_profile() {
    let (ctx, api, lma, _rx) = context().await;
    api.put(MD_PATH, serde_json::to_value(domain("lab")).unwrap());
    lma.change(Event::Added(binding(
        "w1",
        "2001:db8::10",
        0,
        BindingState::Active,
    )));
    lma.state
        .lock()
        .unwrap()
        .profiles
        .insert("mn1@example.org".into(), Default::default());
    let mut mn = node("mn1", "mn1@example.org");
    mn.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        jiff::Timestamp::now(),
    ));
    api.put(&mn_path("mn1"), serde_json::to_value(&mn).unwrap());
    run_node(&api, mn, ctx).await.unwrap();
    assert_eq!(
        lma.calls(),
        vec![
            "Revoke(mn1@example.org,1)",
            "DeleteProfile(mn1@example.org)"
        ]
    );
    let p = api.find("PATCH", &mn_path("mn1"));
    assert!(
        p.last().unwrap().body.to_string().contains("remove"),
        "finalizer removed"
    );
    assert_eq!(api.events(), vec!["Deleted"]);
}

#[tokio::test]
async fn deletion_with_the_lma_down_keeps_the_finalizer() {
    let (ctx, api, lma, _rx) = context().await;
    api.put(MD_PATH, serde_json::to_value(domain("lab")).unwrap());
    lma.state.lock().unwrap().down = true;
    let mut mn = node("mn1", "mn1@example.org");
    mn.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        jiff::Timestamp::now(),
    ));
    assert!(run_node(&api, mn, ctx).await.is_err());
    assert!(
        api.find("PATCH", &mn_path("mn1")).is_empty(),
        "finalizer stays until revoked"
    );
}

#[tokio::test]
async fn domain_creates_lma_first_then_mags_once_the_lma_has_an_address() {
    let (ctx, api, lma, _rx) = context().await;
    let md = Arc::new(domain("lab"));
    // No pods yet: the LMA address is unknown.
    run_domain(&api, (*md).clone(), ctx.clone()).await.unwrap();
    let kinds: Vec<String> = api
        .calls()
        .iter()
        .filter(|c| c.method == "PATCH")
        .map(|c| c.path.clone())
        .collect();
    assert!(kinds.iter().any(|p| p.ends_with("/configmaps/pmip-lab")));
    assert!(
        kinds
            .iter()
            .any(|p| p.ends_with("/persistentvolumeclaims/pmip-lab-lma-state"))
    );
    assert!(
        kinds
            .iter()
            .any(|p| p.ends_with("/deployments/pmip-lab-lma"))
    );
    assert!(kinds.iter().any(|p| p.ends_with("/services/pmip-lab-lma")));
    assert!(
        !kinds.iter().any(|p| p.contains("daemonsets")),
        "no MAGs without an LMA address"
    );
    let cm = api.find("PATCH", "/configmaps/pmip-lab")[0].body.clone();
    assert!(
        cm["data"]["lma.yaml"]
            .as_str()
            .unwrap()
            .contains("min_delay_before_bce_delete_ms: 10000")
    );
    assert!(cm["data"].get("mag.yaml").is_none());
    assert!(cm["metadata"]["ownerReferences"][0]["uid"] == "uid-md");
    let st = api
        .find("PATCH", "/mobilitydomains/lab/status")
        .last()
        .unwrap()
        .body["status"]
        .clone();
    let conds = st["conditions"].as_array().unwrap();
    assert!(
        conds
            .iter()
            .any(|c| c["type"] == "MAGsReady" && c["reason"] == "WaitingForLma")
    );
    assert!(lma.calls().contains(&"Stats".to_string()));

    // The LMA and two MAGs are scheduled: MAGs get their config and are authorized.
    api.put_list(
        PODS,
        vec![
            pod("lma", "lma", "cp", "2001:db8::1"),
            pod("mag-a", "mag", "w1", "2001:db8::10"),
            pod("mag-b", "mag", "w2", "2001:db8::20"),
        ],
    );
    run_domain(&api, (*md).clone(), ctx.clone()).await.unwrap();
    let cm = api
        .find("PATCH", "/configmaps/pmip-lab")
        .last()
        .unwrap()
        .body
        .clone();
    let mag_yaml = cm["data"]["mag.yaml"].as_str().unwrap();
    assert!(mag_yaml.contains("lma_address: 2001:db8::1"), "{mag_yaml}");
    assert!(mag_yaml.contains("policy_server: https://pmip-lab-lma.pmip.svc:50051"));
    assert_eq!(api.find("PATCH", "/daemonsets/pmip-lab-mag").len(), 1);
    assert!(
        lma.calls()
            .contains(&"SetAuthorizedMags(w1=2001:db8::10,w2=2001:db8::20)".to_string())
    );
    let st = api
        .find("PATCH", "/mobilitydomains/lab/status")
        .last()
        .unwrap()
        .body["status"]
        .clone();
    assert_eq!(st["lmaAddress"], "2001:db8::1");
    assert_eq!(st["authorizedMags"].as_array().unwrap().len(), 2);
    assert!(
        ctx.watchers
            .lock()
            .unwrap()
            .contains_key(&("pmip".into(), "lab".into()))
    );
}

#[tokio::test]
async fn domain_with_invalid_spec_creates_nothing() {
    let (ctx, api, _lma, _rx) = context().await;
    let mut md = domain("lab");
    md.spec.lma.prefix_pools[0].prefix_length = 40; // shorter than the /48 pool
    run_domain(&api, md, ctx).await.unwrap();
    assert!(
        api.calls()
            .iter()
            .all(|c| c.method != "PATCH" || c.path.ends_with("/status"))
    );
    let st = api.find("PATCH", "/mobilitydomains/lab/status")[0].body["status"].clone();
    assert_eq!(st["conditions"][0]["reason"], "InvalidSpec");
    assert_eq!(api.events(), vec!["InvalidSpec"]);
}

#[tokio::test]
async fn domain_with_lma_down_reports_why_and_errors() {
    let (ctx, api, lma, _rx) = context().await;
    lma.state.lock().unwrap().down = true;
    api.put(DEPLOYMENT, available_deployment());
    assert!(run_domain(&api, domain("lab"), ctx).await.is_err());
    let st = api.find("PATCH", "/mobilitydomains/lab/status")[0].body["status"].clone();
    let c = st["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "LMAReady")
        .unwrap()
        .clone();
    assert_eq!(c["reason"], "LmaUnreachable");
    assert!(c["message"].as_str().unwrap().contains("LMA starting"));
}

#[tokio::test]
async fn status_mirrors_handovers_through_an_lma_restart() {
    let (ctx, api, lma, mut changed) = context().await;
    api.put(MD_PATH, serde_json::to_value(domain("lab")).unwrap());
    lma.change(Event::Added(binding(
        "w1",
        "2001:db8::10",
        0,
        BindingState::Active,
    )));
    crate::domain::ensure_watch(&ctx, "pmip", "lab");
    assert_eq!(changed.recv().await.unwrap().2, "mn1@example.org");
    let mn = Arc::new(node("mn1", "mn1@example.org"));
    run_node(&api, (*mn).clone(), ctx.clone()).await.unwrap();
    let st = status_of(&api, "mn1");
    assert_eq!(
        (st.state, st.mag.as_deref(), st.handovers),
        (MobileNodeState::Attached, Some("w1"), 0)
    );
    assert!(api.events().contains(&"Attached".to_string()));

    // A burst of handovers: the view keeps the last.
    for i in 1..=5u64 {
        let (mag, coa) = if i % 2 == 1 {
            ("w2", "2001:db8::20")
        } else {
            ("w1", "2001:db8::10")
        };
        lma.change(Event::Updated(BindingUpdated {
            binding: Some(binding(mag, coa, i, BindingState::Active)),
            reason: UpdateReason::Handoff as i32,
        }));
    }
    wait_for(|| {
        ctx.view("pmip", "lab")
            .lock()
            .unwrap()
            .observe("mn1@example.org")
            .binding
            .map(|b| b.handover_count)
            == Some(5)
    })
    .await;
    let mut mn2 = (*mn).clone();
    mn2.status = Some(st);
    run_node(&api, mn2.clone(), ctx.clone()).await.unwrap();
    let st = status_of(&api, "mn1");
    assert_eq!(
        (
            st.mag.as_deref(),
            st.handovers,
            st.last_handover_interruption_ms
        ),
        (Some("w2"), 5, Some(35))
    );
    assert_eq!(
        api.events().iter().filter(|e| *e == "HandedOver").count(),
        1,
        "one event for the burst"
    );

    // The LMA restarts (new epoch, no history) and the node moved meanwhile: the watch task
    // reconnects, gets RESET + snapshot, and the status follows.
    lma.restart();
    lma.state.lock().unwrap().bindings.insert(
        "mn1@example.org".into(),
        binding("w1", "2001:db8::10", 6, BindingState::Active),
    );
    lma.live_restart();
    wait_for(|| {
        ctx.view("pmip", "lab")
            .lock()
            .unwrap()
            .resume_from()
            .map(|c| c.epoch)
            == Some(2)
    })
    .await;
    mn2.status = Some(st);
    run_node(&api, mn2, ctx.clone()).await.unwrap();
    let st = status_of(&api, "mn1");
    assert_eq!((st.mag.as_deref(), st.handovers), (Some("w1"), 6));
    assert!(st.lma_revision.unwrap().starts_with("2/"));
    let watches: Vec<String> = lma
        .calls()
        .into_iter()
        .filter(|c| c.starts_with("Watch"))
        .collect();
    assert!(watches.len() >= 2, "reconnected: {watches:?}");
    assert!(
        watches[1].contains("epoch: 1"),
        "resumed with its epoch-1 cursor: {watches:?}"
    );
    // The profile is sent again to the restarted LMA (new epoch).
    assert_eq!(
        lma.calls()
            .iter()
            .filter(|c| c.starts_with("Upsert"))
            .count(),
        2
    );
}

fn last_domain_status(api: &ApiServer) -> serde_json::Value {
    api.find("PATCH", "/mobilitydomains/lab/status")
        .last()
        .expect("a status patch")
        .body["status"]
        .clone()
}

fn condition_of(st: &serde_json::Value, type_: &str) -> serde_json::Value {
    st["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == type_)
        .unwrap_or_else(|| panic!("no {type_} in {st}"))
        .clone()
}

/// With the defaults (no selector) on three nodes: the LMA on one, MAGs on the two others,
/// the DaemonSet kept off the LMA's node by node affinity, and the domain Ready.
#[tokio::test]
async fn domain_is_ready_with_the_defaults_on_three_nodes() {
    let (ctx, api, lma, _rx) = context().await;
    api.put(DEPLOYMENT, available_deployment());
    api.put(
        DAEMONSET,
        json!({"apiVersion": "apps/v1", "kind": "DaemonSet",
               "metadata": {"name": "pmip-lab-mag", "namespace": "pmip"},
               "status": {"desiredNumberScheduled": 2, "currentNumberScheduled": 2,
                          "numberReady": 2, "numberMisscheduled": 0}}),
    );
    api.put_list(
        PODS,
        vec![
            pod("lma", "lma", "node-1", "2001:db8::1"),
            pod("mag-a", "mag", "node-2", "2001:db8::2"),
            pod("mag-b", "mag", "node-3", "2001:db8::3"),
        ],
    );
    run_domain(&api, domain("lab"), ctx).await.unwrap();
    let ds = api.find("PATCH", "/daemonsets/pmip-lab-mag")[0]
        .body
        .clone();
    let term = &ds["spec"]["template"]["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        ["nodeSelectorTerms"][0];
    assert_eq!(
        term["matchFields"][0],
        json!({"key": "metadata.name", "operator": "NotIn", "values": ["node-1"]})
    );
    let st = last_domain_status(&api);
    let ready = condition_of(&st, "Ready");
    assert_eq!(ready["status"], "True", "{st}");
    assert_eq!(st["mags"], 2);
    assert!(api.events().contains(&"Ready".to_string()));
    // The operator reached the fake LMA over TLS with its client certificate.
    assert!(
        lma.calls()
            .contains(&"SetAuthorizedMags(node-2=2001:db8::2,node-3=2001:db8::3)".to_string()),
        "{:?}",
        lma.calls()
    );
}

/// A one-node cluster: the MAGs have nowhere to go, and the condition says so.
#[tokio::test]
async fn one_node_is_too_few_and_the_status_says_so() {
    let (ctx, api, _lma, _rx) = context().await;
    api.put(DEPLOYMENT, available_deployment());
    api.put(
        DAEMONSET,
        json!({"apiVersion": "apps/v1", "kind": "DaemonSet",
               "metadata": {"name": "pmip-lab-mag", "namespace": "pmip"},
               "status": {"desiredNumberScheduled": 0, "currentNumberScheduled": 0,
                          "numberReady": 0, "numberMisscheduled": 0}}),
    );
    api.put_list(PODS, vec![pod("lma", "lma", "node-1", "2001:db8::1")]);
    run_domain(&api, domain("lab"), ctx).await.unwrap();
    let st = last_domain_status(&api);
    let ready = condition_of(&st, "Ready");
    assert_eq!(ready["status"], "False");
    assert_eq!(ready["reason"], "NoNodes");
    let m = ready["message"].as_str().unwrap();
    assert!(
        m.contains("node-1") && m.contains("at least two nodes"),
        "{m}"
    );
}

/// A 422 from the API server (here a storage size it cannot parse) ends as Ready=False with
/// the API's message and a Warning event, and the reconcile waits for a change.
#[tokio::test]
async fn a_refused_apply_is_a_condition_and_a_warning_event() {
    let (ctx, api, _lma, _rx) = context().await;
    let long = format!(
        "PersistentVolumeClaim \"pmip-lab-lma-state\" is invalid: spec.resources[storage]: \
         Invalid value: \"lots\": quantities must match the regular expression {}",
        "x".repeat(2000)
    );
    api.refuse(
        "PATCH",
        "/persistentvolumeclaims/pmip-lab-lma-state",
        422,
        "Invalid",
        &long,
    );
    let action = run_domain(&api, domain("lab"), ctx).await.unwrap();
    assert_eq!(
        action,
        kube::runtime::controller::Action::requeue(Duration::from_secs(300))
    );
    let st = last_domain_status(&api);
    let ready = condition_of(&st, "Ready");
    assert_eq!(ready["status"], "False");
    assert_eq!(ready["reason"], "Invalid");
    let m = ready["message"].as_str().unwrap();
    assert!(
        m.starts_with("apply PersistentVolumeClaim pmip-lab-lma-state: the API server answered 422: PersistentVolumeClaim"),
        "{m}"
    );
    let ev = api.find("POST", "/events");
    let warning = ev.iter().find(|c| c.body["reason"] == "Invalid").unwrap();
    assert_eq!(warning.body["type"], "Warning");
    let note = warning.body["note"].as_str().unwrap();
    assert!(
        note.len() <= 1024 && note.ends_with("..."),
        "{}",
        note.len()
    );
    // A refused claim stops nothing else: the LMA's Deployment and Service are applied (its
    // volume stays as it was), so the domain keeps running and its MAGs get authorized.
    assert!(!api.find("PATCH", "/deployments/pmip-lab-lma").is_empty());
    assert!(!api.find("PATCH", "/services/pmip-lab-lma").is_empty());
}

/// A 403 (RBAC) is the same, and is retried with backoff.
#[tokio::test]
async fn a_forbidden_apply_is_a_condition_and_an_error() {
    let (ctx, api, _lma, _rx) = context().await;
    api.refuse(
        "PATCH",
        "/deployments/pmip-lab-lma",
        403,
        "Forbidden",
        "deployments.apps \"pmip-lab-lma\" is forbidden: User \"system:serviceaccount:pmip:pmip\" cannot patch resource \"deployments\"",
    );
    assert!(run_domain(&api, domain("lab"), ctx).await.is_err());
    let ready = condition_of(&last_domain_status(&api), "Ready");
    assert_eq!(ready["reason"], "Forbidden");
    assert!(ready["message"].as_str().unwrap().contains("cannot patch"));
    assert!(api.events().contains(&"Forbidden".to_string()));
}

/// A domain without its Secrets gets a CA and a certificate for its names; a fake LMA that
/// trusts another CA then refuses the operator, which is an unreachable LMA.
#[tokio::test]
async fn a_domain_without_certificates_gets_them() {
    let (ctx, api, _lma, _rx) = context().await;
    api.objects
        .lock()
        .unwrap()
        .retain(|p, _| !p.starts_with(SECRETS));
    ctx.grpc.set_tls("pmip", "lab", None);
    api.put(DEPLOYMENT, available_deployment());
    let _ = run_domain(&api, domain("lab"), ctx).await;
    let ca = api.find("PATCH", "/secrets/pmip-lab-ca");
    let tls = api.find("PATCH", "/secrets/pmip-lab-tls");
    assert_eq!((ca.len(), tls.len()), (1, 1));
    assert_eq!(tls[0].body["type"], "kubernetes.io/tls");
    let secret: k8s_openapi::api::core::v1::Secret =
        serde_json::from_value(tls[0].body.clone()).unwrap();
    let m = crate::pki::material_of(&secret).unwrap();
    let parsed = crate::pki::parse(&m.cert).unwrap();
    assert!(parsed.names.contains(&"pmip-lab-lma.pmip.svc".to_string()));
    assert!(api.events().contains(&"CertificateIssued".to_string()));
    let lma = condition_of(&last_domain_status(&api), "LMAReady");
    assert_eq!(lma["reason"], "LmaUnreachable", "{lma}");
}

/// The mocked API server enforces the operator's RBAC rules: what they do not list is
/// refused with 403, as a real API server with the chart's ClusterRole refuses it.
#[tokio::test]
async fn the_mocked_api_server_enforces_the_rbac_rules() {
    use k8s_openapi::api::core::v1::{Node, Secret};
    let (ctx, _api, _lma, _rx) = context().await;
    let nodes = kube::Api::<Node>::all(ctx.client.clone());
    match nodes.list(&Default::default()).await {
        Err(kube::Error::Api(s)) => assert_eq!(s.code, 403),
        other => panic!("listing nodes must be forbidden: {other:?}"),
    }
    let secrets = kube::Api::<Secret>::namespaced(ctx.client.clone(), "pmip");
    match secrets.list(&Default::default()).await {
        Err(kube::Error::Api(s)) => assert_eq!(s.code, 403),
        other => panic!("listing secrets must be forbidden: {other:?}"),
    }
    assert!(secrets.get_opt("pmip-lab-tls").await.unwrap().is_some());
}

/// The SA entries of the domain's ESP Secret as the operator applied it last.
fn applied_sas(api: &ApiServer) -> Vec<pmip::config::SecurityAssociationConfig> {
    let patches = api.find("PATCH", "/secrets/pmip-lab-ipsec");
    let secret: k8s_openapi::api::core::v1::Secret =
        serde_json::from_value(patches.last().expect("the SA Secret").body.clone()).unwrap();
    let data = secret.data.unwrap();
    let text = std::str::from_utf8(&data[crate::esp_keys::SA_FILE_FIELD].0).unwrap();
    serde_saphyr::from_str(text).unwrap()
}

/// With ESP on, the operator makes the domain's master key once, derives a pair of SAs
/// between the LMA and each MAG into the Secret every daemon mounts (before the pods that
/// mount it), and points the daemons' configuration at it; a MAG that joins gets its pair
/// and the others keep theirs.
#[tokio::test]
async fn a_domain_with_esp_gets_keys_for_the_lma_and_every_mag() {
    use crate::crd::IpsecModeSpec;
    let (ctx, api, _lma, _rx) = context().await;
    let mut md = domain("lab");
    md.spec.ipsec.mode = IpsecModeSpec::Userspace;
    api.put(DEPLOYMENT, available_deployment());
    let mut pods = vec![
        pod("lma", "lma", "node-1", "2001:db8::1"),
        pod("mag-a", "mag", "node-2", "2001:db8::2"),
    ];
    api.put_list(PODS, pods.clone());
    let _ = run_domain(&api, md.clone(), ctx.clone()).await;
    assert_eq!(api.find("PATCH", "/secrets/pmip-lab-ipsec-master").len(), 1);
    assert!(api.events().contains(&"IpsecKeyMade".to_string()));
    let first = applied_sas(&api);
    let lma: std::net::Ipv6Addr = "2001:db8::1".parse().unwrap();
    let mag_a: std::net::Ipv6Addr = "2001:db8::2".parse().unwrap();
    assert_eq!(first.len(), 2, "{first:?}");
    assert_eq!((first[0].local, first[0].peer), (Some(lma), mag_a));
    assert_eq!((first[1].local, first[1].peer), (Some(mag_a), lma));
    assert_eq!(first[0].key_out, first[1].key_in);
    // The Secret is applied before the pods that mount it.
    let calls = api.calls();
    let at = |p: &str| {
        calls
            .iter()
            .position(|c| c.method == "PATCH" && c.path.ends_with(p))
    };
    assert!(at("/secrets/pmip-lab-ipsec") < at("/deployments/pmip-lab-lma"));
    let dep = api.find("PATCH", "/deployments/pmip-lab-lma");
    let spec = &dep.last().unwrap().body["spec"]["template"]["spec"];
    assert!(
        spec["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["secret"]["secretName"] == "pmip-lab-ipsec"),
        "{spec}"
    );
    let cm = api.find("PATCH", "/configmaps/pmip-lab");
    let lma_yaml = cm.last().unwrap().body["data"]["lma.yaml"]
        .as_str()
        .unwrap()
        .to_string();
    let cfg: pmip::config::LmaConfig = serde_saphyr::from_str(&lma_yaml).unwrap();
    assert_eq!(cfg.ipsec.mode, pmip::config::IpsecMode::Userspace);
    assert_eq!(
        cfg.ipsec.security_associations_file.unwrap(),
        std::path::Path::new("/etc/pmip/ipsec/security-associations.yaml")
    );

    // A second MAG joins: the master key is read back, not made again.
    pods.push(pod("mag-b", "mag", "node-3", "2001:db8::3"));
    api.put_list(PODS, pods);
    let _ = run_domain(&api, md, ctx).await;
    assert_eq!(api.find("PATCH", "/secrets/pmip-lab-ipsec-master").len(), 1);
    let second = applied_sas(&api);
    assert_eq!(second.len(), 4);
    for sa in &first {
        assert!(second.contains(sa), "{sa:?} changed when a MAG joined");
    }
}

/// A master key Secret that holds no key (edited by hand) is replaced, with a warning.
#[tokio::test]
async fn a_broken_master_key_is_replaced_with_a_warning() {
    use crate::crd::IpsecModeSpec;
    let (ctx, api, _lma, _rx) = context().await;
    let mut md = domain("lab");
    md.spec.ipsec.mode = IpsecModeSpec::Auto;
    api.put(
        &format!("{SECRETS}/pmip-lab-ipsec-master"),
        json!({"apiVersion": "v1", "kind": "Secret",
               "metadata": {"name": "pmip-lab-ipsec-master", "namespace": "pmip"},
               "data": {"master.key": "bm90IGEga2V5"}}),
    );
    api.put_list(PODS, vec![pod("lma", "lma", "node-1", "2001:db8::1")]);
    let _ = run_domain(&api, md, ctx).await;
    let made = api.find("PATCH", "/secrets/pmip-lab-ipsec-master");
    assert_eq!(made.len(), 1);
    let secret: k8s_openapi::api::core::v1::Secret =
        serde_json::from_value(made[0].body.clone()).unwrap();
    let key = &secret.data.unwrap()[crate::esp_keys::MASTER_FIELD];
    assert!(crate::esp_keys::master_of(&key.0).is_some());
    assert!(applied_sas(&api).is_empty(), "no MAG yet");
}

/// A domain on Multus attachments: the pods are off the host network with the networks
/// annotation and their own sysctls, the MAGs' LMA address is the LMA's transport address
/// from its pod's network-status annotation, the proxy-CoAs likewise, and a MAG may share the
/// LMA's node.
#[tokio::test]
async fn domain_on_secondary_networks_takes_addresses_from_network_status() {
    let (ctx, api, lma, _rx) = context().await;
    let mut md = domain("lab");
    md.spec.lma.networks = serde_json::from_value(json!([
        {"name": "transport", "interface": "transport", "role": "Transport"}
    ]))
    .unwrap();
    md.spec.mags.networks = serde_json::from_value(json!([
        {"name": "transport", "interface": "transport", "role": "Transport"},
        {"name": "access", "namespace": "radio", "interface": "access0", "role": "Access"}
    ]))
    .unwrap();
    let status = |addr: &str| {
        json!([
            {"name": "cbr0", "interface": "eth0", "ips": ["10.244.0.7"], "default": true},
            {"name": "pmip/transport", "interface": "transport", "ips": [addr]},
            {"name": "radio/access", "interface": "access0", "ips": []}
        ])
        .to_string()
    };
    let with_status = |mut p: serde_json::Value, addr: &str| {
        p["metadata"]["annotations"] = json!({"k8s.v1.cni.cncf.io/network-status": status(addr)});
        p
    };
    api.put_list(
        PODS,
        vec![
            with_status(pod("lma", "lma", "node-1", "2001:db8::1"), "2001:db8:ff::1"),
            with_status(
                pod("mag-a", "mag", "node-1", "2001:db8::1"),
                "2001:db8:ff::10",
            ),
            with_status(
                pod("mag-b", "mag", "node-2", "2001:db8::2"),
                "2001:db8:ff::20",
            ),
        ],
    );
    run_domain(&api, md, ctx).await.unwrap();

    let dep = api.find("PATCH", "/deployments/pmip-lab-lma")[0]
        .body
        .clone();
    let tpl = &dep["spec"]["template"];
    let nets: serde_json::Value = serde_json::from_str(
        tpl["metadata"]["annotations"]["k8s.v1.cni.cncf.io/networks"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        nets,
        json!([{"name": "transport", "interface": "transport"}])
    );
    let pod_spec = &tpl["spec"];
    assert!(pod_spec.get("hostNetwork").is_none(), "{pod_spec}");
    assert!(pod_spec.get("initContainers").is_none());
    let sysctls = pod_spec["securityContext"]["sysctls"].as_array().unwrap();
    assert!(sysctls.contains(&json!({"name": "net.ipv6.conf.all.forwarding", "value": "1"})));
    assert!(
        sysctls.contains(&json!({"name": "net.ipv6.conf.transport.seg6_enabled", "value": "1"}))
    );

    let cm = api
        .find("PATCH", "/configmaps/pmip-lab")
        .last()
        .unwrap()
        .body
        .clone();
    let mag_yaml = cm["data"]["mag.yaml"].as_str().unwrap();
    assert!(
        mag_yaml.contains("lma_address: 2001:db8:ff::1"),
        "{mag_yaml}"
    );
    assert!(mag_yaml.contains("- access0"), "{mag_yaml}");

    let ds = api.find("PATCH", "/daemonsets/pmip-lab-mag")[0]
        .body
        .clone();
    let tpl = &ds["spec"]["template"];
    assert!(
        tpl["spec"]["affinity"].get("nodeAffinity").is_none(),
        "a MAG off the host network may share the LMA's node: {tpl}"
    );
    assert!(
        tpl["metadata"]["annotations"]["k8s.v1.cni.cncf.io/networks"]
            .as_str()
            .unwrap()
            .contains(r#""namespace":"radio""#)
    );
    assert!(
        lma.calls().contains(
            &"SetAuthorizedMags(node-1=2001:db8:ff::10,node-2=2001:db8:ff::20)".to_string()
        ),
        "{:?}",
        lma.calls()
    );
    assert_eq!(last_domain_status(&api)["lmaAddress"], "2001:db8:ff::1");
}
