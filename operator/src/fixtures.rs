//! Test helpers (controller-rs `fixtures.rs` pattern): a mocked API server that answers like
//! the real one and records every request, and a fake LMA/MAG gRPC server on loopback.

use std::collections::{BTreeMap, HashMap};
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use futures::Stream;
use http::{Request, Response, StatusCode};
use kube::Client;
use kube::client::Body;
use proto::v1::binding_cache_server::{BindingCache, BindingCacheServer};
use proto::v1::gateway_server::{Gateway, GatewayServer};
use proto::v1::policy_server::{Policy, PolicyServer};
use proto::v1::*;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};
use tonic::{Request as GReq, Response as GResp, Status};

use crate::Context;
use crate::crd::{MobileNode, MobilityDomain};

pub fn domain(name: &str) -> MobilityDomain {
    serde_json::from_value(json!({
        "apiVersion": "pmip.io/v1alpha1", "kind": "MobilityDomain",
        "metadata": {"name": name, "namespace": "pmip", "uid": "uid-md", "generation": 1},
        "spec": {"lma": {"prefixPools": [{"prefix": "2001:db8:100::/48", "prefixLength": 64}]}}
    }))
    .unwrap()
}

pub fn node(name: &str, mn_id: &str) -> MobileNode {
    serde_json::from_value(json!({
        "apiVersion": "pmip.io/v1alpha1", "kind": "MobileNode",
        "metadata": {"name": name, "namespace": "pmip", "uid": format!("uid-{name}"), "generation": 1,
                     "finalizers": [crate::node::FINALIZER]},
        "spec": {"domain": "lab", "mnId": mn_id, "linkLayerAddresses": ["02:00:00:00:01:01"]}
    }))
    .unwrap()
}

pub fn pod(name: &str, component: &str, node: &str, host_ip: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "pmip",
                     "labels": {"pmip.io/domain": "lab", "app.kubernetes.io/component": component}},
        "spec": {"nodeName": node, "containers": [{"name": component, "image": "x"}]},
        "status": {"hostIP": host_ip, "hostIPs": [{"ip": "10.0.0.9"}, {"ip": host_ip}],
                   "podIP": host_ip, "podIPs": [{"ip": host_ip}]}
    })
}

/// (API group, resource or `resource/subresource`, whether one object is named) of an API path.
fn api_resource(path: &str) -> Option<(String, String, bool)> {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (group, rest) = match parts.as_slice() {
        ["api", _version, rest @ ..] => ("", rest),
        ["apis", group, _version, rest @ ..] => (*group, rest),
        _ => return None,
    };
    let rest = match rest {
        ["namespaces", _ns, rest @ ..] if !rest.is_empty() => rest,
        rest => rest,
    };
    match rest {
        [resource] => Some((group.into(), (*resource).into(), false)),
        [resource, _name] => Some((group.into(), (*resource).into(), true)),
        [resource, _name, sub] => Some((group.into(), format!("{resource}/{sub}"), true)),
        _ => None,
    }
}

/// One request the mocked API server saw.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    pub path: String,
    pub query: String,
    pub body: Value,
}

/// A mocked API server: GETs are answered from `objects` (by path) or 404, lists from
/// `lists` (by path), PATCHes and POSTs echo the body as the stored object. Every request is
/// recorded in order.
#[derive(Clone, Default)]
pub struct ApiServer {
    pub calls: Arc<Mutex<Vec<Call>>>,
    pub objects: Arc<Mutex<HashMap<String, Value>>>,
    pub lists: Arc<Mutex<HashMap<String, Vec<Value>>>>,
    /// (method, path suffix) -> the failure Status to answer with, as a real API server
    /// refuses an invalid object (422) or a request RBAC does not allow (403).
    pub refusals: Arc<Mutex<Vec<(String, String, Value)>>>,
}

impl ApiServer {
    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    pub fn put(&self, path: &str, obj: Value) {
        self.objects.lock().unwrap().insert(path.into(), obj);
    }

    /// Answers `method` on paths ending in `path_ends` with a failure Status.
    pub fn refuse(&self, method: &str, path_ends: &str, code: u16, reason: &str, message: &str) {
        self.refusals.lock().unwrap().push((
            method.into(),
            path_ends.into(),
            json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                   "reason": reason, "code": code, "message": message}),
        ));
    }

    pub fn put_list(&self, path: &str, items: Vec<Value>) {
        self.lists.lock().unwrap().insert(path.into(), items);
    }

    /// Requests matching method and path suffix.
    pub fn find(&self, method: &str, path_ends: &str) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| c.method == method && c.path.ends_with(path_ends))
            .collect()
    }

    pub fn events(&self) -> Vec<String> {
        self.find("POST", "/events")
            .into_iter()
            .map(|c| c.body["reason"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    fn spawn(self, mut handle: tower_test::mock::Handle<Request<Body>, Response<Body>>) {
        tokio::spawn(async move {
            while let Some((req, send)) = handle.next_request().await {
                let method = req.method().to_string();
                let path = req.uri().path().to_string();
                let query = req.uri().query().unwrap_or_default().to_string();
                let bytes = req.into_body().collect_bytes().await.unwrap_or_default();
                let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                self.calls.lock().unwrap().push(Call {
                    method: method.clone(),
                    path: path.clone(),
                    query: query.clone(),
                    body: body.clone(),
                });
                let (code, out) = match self.forbidden(&method, &path, &query, &body) {
                    Some(refusal) => (StatusCode::FORBIDDEN, refusal),
                    None => self.answer(&method, &path, body),
                };
                send.send_response(
                    Response::builder()
                        .status(code)
                        .body(Body::from(serde_json::to_vec(&out).unwrap()))
                        .unwrap(),
                );
            }
        });
    }

    /// A 403 Status when [`crate::rbac::RULES`] do not allow the request, as a real API
    /// server with the chart's RBAC would answer.
    fn forbidden(&self, method: &str, path: &str, query: &str, body: &Value) -> Option<Value> {
        let (group, resource, named) = api_resource(path)?;
        let mut verbs = vec![match (method, named) {
            ("GET", true) => "get",
            ("GET", false) if query.contains("watch=true") => "watch",
            ("GET", false) => "list",
            ("POST", _) => "create",
            ("PUT", _) => "update",
            ("PATCH", _) => "patch",
            ("DELETE", _) => "delete",
            _ => return None,
        }];
        // Server-side apply of an object that does not exist yet is also a create.
        let base = path.trim_end_matches("/status");
        if method == "PATCH"
            && body.get("apiVersion").is_some()
            && !resource.contains('/')
            && !self.objects.lock().unwrap().contains_key(base)
        {
            verbs.push("create");
        }
        let denied = verbs
            .into_iter()
            .find(|v| !crate::rbac::allows(&group, &resource, v))?;
        Some(
            json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "reason": "Forbidden", "code": 403,
            "message": format!("{resource}.{group} is forbidden: User \"system:serviceaccount:pmip:pmip-operator\" cannot {denied} resource \"{resource}\" in API group \"{group}\"")}),
        )
    }

    fn answer(&self, method: &str, path: &str, body: Value) -> (StatusCode, Value) {
        if let Some((_, _, status)) = self
            .refusals
            .lock()
            .unwrap()
            .iter()
            .find(|(m, p, _)| m == method && path.ends_with(p.as_str()))
        {
            let code = status["code"].as_u64().unwrap_or(500) as u16;
            return (
                StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                status.clone(),
            );
        }
        let not_found = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                               "reason": "NotFound", "code": 404, "message": format!("{path} not found")});
        match method {
            "GET" => {
                if let Some(items) = self.lists.lock().unwrap().get(path) {
                    return (
                        StatusCode::OK,
                        json!({"apiVersion": "v1", "kind": "List", "metadata": {}, "items": items}),
                    );
                }
                match self.objects.lock().unwrap().get(path) {
                    Some(o) => (StatusCode::OK, o.clone()),
                    None if path.ends_with("/pods") => (
                        StatusCode::OK,
                        json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": []}),
                    ),
                    None => (StatusCode::NOT_FOUND, not_found),
                }
            }
            "PATCH" => {
                let base = path.trim_end_matches("/status");
                let mut stored = self
                    .objects
                    .lock()
                    .unwrap()
                    .get(base)
                    .cloned()
                    .unwrap_or_else(|| json!({}));
                if body.is_array() {
                    // A JSON patch (the finalizer helper): apply the adds/removes it makes.
                    for op in body.as_array().unwrap() {
                        if op["op"] == "add" && op["path"] == "/metadata/finalizers" {
                            stored["metadata"]["finalizers"] = op["value"].clone();
                        }
                        if op["op"] == "remove"
                            && op["path"]
                                .as_str()
                                .unwrap_or("")
                                .starts_with("/metadata/finalizers")
                        {
                            stored["metadata"]["finalizers"] = json!([]);
                        }
                    }
                } else if let Value::Object(m) = body {
                    for (k, v) in m {
                        if k != "metadata" || stored.get("metadata").is_none() {
                            stored[k] = v;
                        }
                    }
                }
                if stored
                    .get("metadata")
                    .is_none_or(|m| m.get("name").is_none())
                {
                    let name = base.rsplit('/').next().unwrap_or_default();
                    stored["metadata"] =
                        json!({"name": name, "namespace": "pmip", "uid": format!("uid-{name}")});
                }
                self.objects
                    .lock()
                    .unwrap()
                    .insert(base.into(), stored.clone());
                (StatusCode::OK, stored)
            }
            "POST" => (StatusCode::CREATED, body),
            _ => (StatusCode::METHOD_NOT_ALLOWED, not_found),
        }
    }
}

/// What the fake LMA and MAG were asked, in order.
#[derive(Default, Debug)]
pub struct FakeState {
    pub calls: Vec<String>,
    pub profiles: BTreeMap<String, MobileNodeProfile>,
    pub authorized: Vec<AuthorizedMag>,
    pub epoch: u64,
    pub revision: u64,
    pub bindings: BTreeMap<String, Binding>,
    /// History of the current epoch, for resumes.
    pub history: Vec<BindingEvent>,
    /// Answer every RPC with UNAVAILABLE.
    pub down: bool,
}

/// A fake `pmip-lma` (BindingCache, Policy) and `pmip-mag` (Gateway) on one loopback port.
#[derive(Clone)]
pub struct FakeLma {
    pub state: Arc<Mutex<FakeState>>,
    live_slot: Arc<Mutex<broadcast::Sender<BindingEvent>>>,
}

impl FakeLma {
    /// A fake in plain HTTP/2 or, given TLS material, one that serves with its certificate
    /// and requires a client certificate from its CA, as the daemons do. Returns it and its
    /// `host:port`.
    pub async fn start_with(tls: Option<crate::pki::Material>) -> (Self, String) {
        let (live, _) = broadcast::channel(1024);
        let me = Self {
            state: Arc::new(Mutex::new(FakeState {
                epoch: 1,
                ..Default::default()
            })),
            live_slot: Arc::new(Mutex::new(live)),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let authority = listener.local_addr().unwrap().to_string();
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        let svc = me.clone();
        let mut server = tonic::transport::Server::builder();
        if let Some(m) = tls {
            server = server
                .tls_config(
                    tonic::transport::ServerTlsConfig::new()
                        .identity(tonic::transport::Identity::from_pem(&m.cert, &m.key))
                        .client_ca_root(tonic::transport::Certificate::from_pem(&m.ca)),
                )
                .unwrap();
        }
        tokio::spawn(async move {
            server
                .add_service(BindingCacheServer::new(svc.clone()))
                .add_service(PolicyServer::new(svc.clone()))
                .add_service(GatewayServer::new(svc))
                .serve_with_incoming(incoming)
                .await
                .unwrap();
        });
        (me, authority)
    }

    fn enter(&self, what: &str) -> Result<(), Status> {
        let mut s = self.state.lock().unwrap();
        s.calls.push(what.to_string());
        if s.down {
            Err(Status::unavailable("LMA starting"))
        } else {
            Ok(())
        }
    }

    pub fn calls(&self) -> Vec<String> {
        self.state.lock().unwrap().calls.clone()
    }

    /// A binding change as the LMA would publish it.
    pub fn change(&self, event: binding_event::Event) {
        let ev = {
            let mut s = self.state.lock().unwrap();
            s.revision += 1;
            match &event {
                binding_event::Event::Added(b)
                | binding_event::Event::Updated(BindingUpdated {
                    binding: Some(b), ..
                }) => {
                    s.bindings.insert(b.mn_id.clone(), b.clone());
                }
                binding_event::Event::Deleted(BindingDeleted {
                    binding: Some(b), ..
                }) => {
                    s.bindings.remove(&b.mn_id);
                }
                _ => {}
            }
            let ev = BindingEvent {
                epoch: s.epoch,
                revision: s.revision,
                time: None,
                event: Some(event),
            };
            s.history.push(ev.clone());
            ev
        };
        let _ = self.live_slot.lock().unwrap().send(ev);
    }

    /// An LMA restart: a new epoch, history gone, bindings kept (its durable store).
    pub fn restart(&self) {
        let mut s = self.state.lock().unwrap();
        s.epoch += 1;
        s.revision = 0;
        s.history.clear();
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<BindingEvent, Status>> + Send>>;
type ProfileStream = Pin<Box<dyn Stream<Item = Result<MobileNodeEvent, Status>> + Send>>;

#[tonic::async_trait]
impl BindingCache for FakeLma {
    async fn list(
        &self,
        _: GReq<ListBindingsRequest>,
    ) -> Result<GResp<ListBindingsResponse>, Status> {
        self.enter("List")?;
        let s = self.state.lock().unwrap();
        Ok(GResp::new(ListBindingsResponse {
            bindings: s.bindings.values().cloned().collect(),
            ..Default::default()
        }))
    }
    async fn get(&self, r: GReq<GetBindingRequest>) -> Result<GResp<Binding>, Status> {
        self.enter("Get")?;
        let Some(get_binding_request::Key::MnId(id)) = r.into_inner().key else {
            return Err(Status::invalid_argument("key"));
        };
        self.state
            .lock()
            .unwrap()
            .bindings
            .get(&id)
            .cloned()
            .map(GResp::new)
            .ok_or_else(|| Status::not_found(id))
    }
    type WatchStream = EventStream;
    async fn watch(&self, r: GReq<WatchBindingsRequest>) -> Result<GResp<EventStream>, Status> {
        let from = r.into_inner().resume_from;
        self.enter(&format!("Watch({from:?})"))?;
        let mut rx = self.live_slot.lock().unwrap().subscribe();
        let (tx, out) = mpsc::channel(1024);
        let first: Vec<BindingEvent> = {
            let s = self.state.lock().unwrap();
            let ev = |revision, e| BindingEvent {
                epoch: s.epoch,
                revision,
                time: None,
                event: Some(e),
            };
            let resumable = from.is_some_and(|c| {
                c.epoch == s.epoch
                    && c.revision <= s.revision
                    && (c.revision == s.revision
                        || s.history.iter().any(|h| h.revision == c.revision + 1))
            });
            let mut v = Vec::new();
            if resumable {
                let c = from.unwrap_or_default();
                v.extend(
                    s.history
                        .iter()
                        .filter(|h| h.revision > c.revision)
                        .cloned(),
                );
            } else {
                v.push(ev(
                    s.revision,
                    binding_event::Event::Reset(Reset {
                        reason: ResetReason::NewEpoch as i32,
                    }),
                ));
                v.extend(
                    s.bindings
                        .values()
                        .map(|b| ev(s.revision, binding_event::Event::Added(b.clone()))),
                );
            }
            v.push(ev(
                s.revision,
                binding_event::Event::Synced(Synced {
                    object_count: s.bindings.len() as u64,
                }),
            ));
            v
        };
        tokio::spawn(async move {
            for e in first {
                if tx.send(Ok(e)).await.is_err() {
                    return;
                }
            }
            while let Ok(e) = rx.recv().await {
                if tx.send(Ok(e)).await.is_err() {
                    return;
                }
            }
        });
        Ok(GResp::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(out),
        )))
    }
    async fn revoke(&self, r: GReq<RevokeRequest>) -> Result<GResp<RevokeResponse>, Status> {
        let r = r.into_inner();
        self.enter(&format!("Revoke({},{})", r.mn_id, r.trigger))?;
        let b = self
            .state
            .lock()
            .unwrap()
            .bindings
            .get(&r.mn_id)
            .cloned()
            .ok_or_else(|| Status::not_found("no binding"))?;
        self.change(binding_event::Event::Deleted(BindingDeleted {
            binding: Some(b.clone()),
            reason: DeleteReason::Revoked as i32,
        }));
        Ok(GResp::new(RevokeResponse {
            outcome: RevocationOutcome::Acknowledged as i32,
            bra_status: Some(0),
            bra_status_name: "success".into(),
            binding: Some(b),
            revoked_bindings: 0,
        }))
    }
    async fn stats(&self, _: GReq<LmaStatsRequest>) -> Result<GResp<LmaStats>, Status> {
        self.enter("Stats")?;
        let s = self.state.lock().unwrap();
        Ok(GResp::new(LmaStats {
            restart_counter: s.epoch,
            revision: s.revision,
            bindings: s.bindings.len() as u64,
            ..Default::default()
        }))
    }
    async fn list_mag_peers(
        &self,
        _: GReq<ListMagPeersRequest>,
    ) -> Result<GResp<ListMagPeersResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
}

#[tonic::async_trait]
impl Policy for FakeLma {
    async fn upsert_mobile_node(
        &self,
        r: GReq<UpsertMobileNodeRequest>,
    ) -> Result<GResp<UpsertMobileNodeResponse>, Status> {
        let p = r
            .into_inner()
            .profile
            .ok_or_else(|| Status::invalid_argument("profile"))?;
        self.enter(&format!("Upsert({})", p.mn_id))?;
        let created = self
            .state
            .lock()
            .unwrap()
            .profiles
            .insert(p.mn_id.clone(), p.clone())
            .is_none();
        Ok(GResp::new(UpsertMobileNodeResponse {
            entry: Some(MobileNodeEntry {
                profile: Some(p),
                ..Default::default()
            }),
            created,
            changed: true,
        }))
    }
    async fn apply_mobile_nodes(
        &self,
        _: GReq<ApplyMobileNodesRequest>,
    ) -> Result<GResp<ApplyMobileNodesResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn delete_mobile_node(
        &self,
        r: GReq<DeleteMobileNodeRequest>,
    ) -> Result<GResp<DeleteMobileNodeResponse>, Status> {
        let id = r.into_inner().mn_id;
        self.enter(&format!("DeleteProfile({id})"))?;
        self.state
            .lock()
            .unwrap()
            .profiles
            .remove(&id)
            .map(|_| GResp::new(DeleteMobileNodeResponse {}))
            .ok_or_else(|| Status::not_found(id))
    }
    async fn get_mobile_node(
        &self,
        _: GReq<GetMobileNodeRequest>,
    ) -> Result<GResp<MobileNodeEntry>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn list_mobile_nodes(
        &self,
        _: GReq<ListMobileNodesRequest>,
    ) -> Result<GResp<ListMobileNodesResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    type WatchMobileNodesStream = ProfileStream;
    async fn watch_mobile_nodes(
        &self,
        _: GReq<WatchMobileNodesRequest>,
    ) -> Result<GResp<ProfileStream>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn add_authorized_mag(
        &self,
        _: GReq<AddAuthorizedMagRequest>,
    ) -> Result<GResp<AuthorizedMag>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn remove_authorized_mag(
        &self,
        _: GReq<RemoveAuthorizedMagRequest>,
    ) -> Result<GResp<RemoveAuthorizedMagResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn list_authorized_mags(
        &self,
        _: GReq<ListAuthorizedMagsRequest>,
    ) -> Result<GResp<ListAuthorizedMagsResponse>, Status> {
        self.enter("ListAuthorizedMags")?;
        Ok(GResp::new(ListAuthorizedMagsResponse {
            mags: self.state.lock().unwrap().authorized.clone(),
        }))
    }
    async fn set_authorized_mags(
        &self,
        r: GReq<SetAuthorizedMagsRequest>,
    ) -> Result<GResp<SetAuthorizedMagsResponse>, Status> {
        let mags = r.into_inner().mags;
        self.enter(&format!(
            "SetAuthorizedMags({})",
            mags.iter()
                .map(|m| format!("{}={}", m.name, m.proxy_coa))
                .collect::<Vec<_>>()
                .join(",")
        ))?;
        let added = mags.iter().map(|m| m.proxy_coa.clone()).collect();
        self.state.lock().unwrap().authorized = mags;
        Ok(GResp::new(SetAuthorizedMagsResponse {
            added,
            ..Default::default()
        }))
    }
}

#[tonic::async_trait]
impl Gateway for FakeLma {
    async fn list_binding_update_list(
        &self,
        _: GReq<ListBindingUpdateListRequest>,
    ) -> Result<GResp<ListBindingUpdateListResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn attach(&self, _: GReq<AttachRequest>) -> Result<GResp<AttachResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn detach(&self, _: GReq<DetachRequest>) -> Result<GResp<DetachResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn handover_indication(
        &self,
        _: GReq<HandoverIndicationRequest>,
    ) -> Result<GResp<HandoverIndicationResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn stats(&self, _: GReq<MagStatsRequest>) -> Result<GResp<MagStats>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn lab_attach(
        &self,
        r: GReq<LabAttachRequest>,
    ) -> Result<GResp<LabAttachResponse>, Status> {
        let r = r.into_inner();
        self.enter(&format!("LabAttach({},{})", r.mn_id, r.link_layer_address))?;
        Ok(GResp::new(LabAttachResponse {
            namespace: "mn".into(),
            access_interface: "lab0".into(),
            node_interface: "eth0".into(),
            existed: false,
        }))
    }
    async fn lab_detach(
        &self,
        r: GReq<LabDetachRequest>,
    ) -> Result<GResp<LabDetachResponse>, Status> {
        self.enter(&format!("LabDetach({})", r.into_inner().mn_id))?;
        Ok(GResp::new(LabDetachResponse {}))
    }
}

/// A Context on a mocked API server and a fake LMA; MAG URLs record which pod IP was asked
/// by prefixing it in the fake's call log.
pub async fn context() -> (
    Arc<Context>,
    ApiServer,
    FakeLma,
    mpsc::Receiver<crate::mirror::Changed>,
) {
    let (svc, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let api = ApiServer::default();
    api.clone().spawn(handle);
    let client = Client::new(svc, "pmip");
    // Domain "lab" has its CA and certificate already (as a domain reconcile leaves them);
    // the fake daemons serve with the certificate and require a client certificate.
    let tls = tls_material("pmip", "lab");
    let md = domain("lab");
    api.put(
        &format!("{SECRETS}/pmip-lab-ca"),
        serde_json::to_value(crate::render::ca_secret(&md, &tls.ca, &tls.ca_key)).unwrap(),
    );
    api.put(
        &format!("{SECRETS}/pmip-lab-tls"),
        serde_json::to_value(crate::render::tls_secret(
            &md,
            &tls.material.ca,
            &tls.material.cert,
            &tls.material.key,
        ))
        .unwrap(),
    );
    let (lma, url) = FakeLma::start_with(Some(tls.material.clone())).await;
    let (tx, rx) = mpsc::channel(1024);
    let u1 = url.clone();
    let conn = crate::lma::Connector::new(move |_, _| u1.clone(), move |_, _| url.clone());
    // As a domain reconcile leaves it.
    conn.set_tls("pmip", "lab", Some(tls.material));
    let mut ctx = Context::new(client, conn, tx);
    ctx.default_image = "ghcr.io/pmip-io/pmip:test".into();
    (Arc::new(ctx), api, lma, rx)
}

/// Where the mocked API server keeps the Secrets of namespace `pmip`.
pub const SECRETS: &str = "/api/v1/namespaces/pmip/secrets";

/// A domain's CA (with its key) and the daemons' material signed by it.
pub struct Tls {
    pub ca: String,
    pub ca_key: String,
    pub material: crate::pki::Material,
}

pub fn tls_material(ns: &str, domain: &str) -> Tls {
    let now = jiff::Timestamp::now().as_second();
    let (ca, ca_key) = crate::pki::new_ca(ns, domain, now).unwrap();
    let (cert, key) =
        crate::pki::new_leaf(&ca, &ca_key, &crate::pki::subject_names(ns, domain), now).unwrap();
    Tls {
        material: crate::pki::Material {
            ca: ca.clone(),
            cert,
            key,
        },
        ca,
        ca_key,
    }
}

impl FakeLma {
    /// Ends every open Watch stream, as a restarting LMA does.
    pub fn live_restart(&self) {
        // Dropping all receivers: replace the sender so that stream tasks see a closed channel.
        let (tx, _) = broadcast::channel(1024);
        let old = std::mem::replace(&mut *self.live_slot.lock().unwrap(), tx);
        drop(old);
    }
}
