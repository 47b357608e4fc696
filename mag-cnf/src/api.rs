//! The MAG's gRPC API: `pmip.v1.Gateway` (see `proto/pmip/v1/gateway.proto`), with the
//! standard health service and reflection. Handlers send [`Command`]s to the core task; lab
//! nodes are made here with [`crate::access::lab`].

use std::collections::BTreeMap;
use std::net::Ipv6Addr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use pmip::config::{ApiConfig, FastHandoverConfig, FastHandoverMode};
use pmip::mag::BulState;
use pmip::types::LinkLayerAddress;
use pmip::wire::AccessTechnologyType;
use proto::v1::gateway_server::{Gateway, GatewayServer};
use proto::v1::{self as pb};
use tokio::sync::{Mutex, watch};
use tokio::task::JoinHandle;
use tonic::{Request, Response, Status};
use tracing::error;

use crate::access::lab;
use crate::access_glue::AccessHandle;
use crate::core::{CallError, Command, CoreGone, CoreHandle, EntryView, NodeKey, StatsView};

/// An emulated node: its namespace, access interface and link-layer address.
type LabNodes = BTreeMap<String, (String, String, LinkLayerAddress)>;

/// The Gateway service.
#[derive(Debug)]
pub struct GatewayService {
    core: CoreHandle,
    fast: FastHandoverConfig,
    started: SystemTime,
    version: &'static str,
    /// Emulated nodes: MN-ID -> (namespace, access interface, link-layer address).
    lab: Arc<Mutex<LabNodes>>,
}

fn gone(e: CoreGone) -> Status {
    Status::unavailable(e.to_string())
}

fn call_error(e: CallError) -> Status {
    match e {
        CallError::NotFound(m) => Status::not_found(m),
        CallError::FailedPrecondition(m) => Status::failed_precondition(m),
        CallError::InvalidArgument(m) => Status::invalid_argument(m),
    }
}

fn timestamp(t: SystemTime) -> prost_types::Timestamp {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    prost_types::Timestamp {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
    }
}

/// A BUL entry as the API shows it. Instants of the state machine become wall-clock times
/// through `now`/`since`.
fn entry_to_proto(v: &EntryView, lma: Ipv6Addr) -> pb::BindingUpdateListEntry {
    let e = &v.entry;
    let state = match e.state {
        _ if v.handover => pb::BulState::Handover,
        BulState::Registering | BulState::Expected => pb::BulState::Registering,
        BulState::Bound | BulState::Refreshing => pb::BulState::Registered,
        BulState::Deregistering => pb::BulState::Deregistering,
        BulState::Denied { .. } | BulState::Halted => pb::BulState::Failed,
    };
    pb::BindingUpdateListEntry {
        mn_id: e.mn_id.clone(),
        mn_link_layer_id: e.link_layer.to_string(),
        access_interface: v.access_interface.clone(),
        home_network_prefixes: e.prefixes.iter().map(|p| p.to_string()).collect(),
        ipv4_home_address: e
            .ipv4
            .map(|a| a.with_prefix().to_string())
            .unwrap_or_default(),
        lma_address: lma.to_string(),
        link_local_address: e.link_local.to_string(),
        access_technology_type: i32::from(e.access_technology_type.value()),
        handoff_indicator: i32::from(e.last_handoff_indicator.value()),
        state: state as i32,
        lifetime_granted_seconds: e.lifetime.as_secs() as u32,
        lifetime_remaining_seconds: v.remaining_s,
        last_pba_status: e.last_status.map(|s| u32::from(s.value())),
        last_pba_status_name: e
            .last_status
            .and_then(|s| s.rfc_name())
            .unwrap_or_default()
            .to_owned(),
        retransmissions: e.retransmissions(),
        attached_at: Some(timestamp(SystemTime::now() - v.attached_ago)),
        registered_at: v.registered_ago.map(|d| timestamp(SystemTime::now() - d)),
        lab: v.lab,
    }
}

impl GatewayService {
    pub fn new(core: CoreHandle, fast: FastHandoverConfig) -> Self {
        GatewayService {
            core,
            fast,
            started: SystemTime::now(),
            version: env!("CARGO_PKG_VERSION"),
            lab: Arc::default(),
        }
    }

    fn access_point(&self, name: &str, what: &str) -> Result<Ipv6Addr, Status> {
        self.fast.access_points.get(name).copied().ok_or_else(|| {
            Status::not_found(format!(
                "{what}: {name:?} is not in the domain's access-point map (fast_handover.access_points)"
            ))
        })
    }

    async fn stats(&self) -> Result<StatsView, Status> {
        self.core
            .call(|reply| Command::Stats { reply })
            .await
            .map_err(gone)
    }
}

#[tonic::async_trait]
impl Gateway for GatewayService {
    async fn list_binding_update_list(
        &self,
        req: Request<pb::ListBindingUpdateListRequest>,
    ) -> Result<Response<pb::ListBindingUpdateListResponse>, Status> {
        let r = req.into_inner();
        let size = match r.page_size {
            0 => 100,
            n => n.min(1000) as usize,
        };
        let all = self
            .core
            .call(|reply| Command::List { reply })
            .await
            .map_err(gone)?;
        let stats = self.stats().await?;
        // The token is the last entry shown: its MN-ID and link-layer address (one node may
        // have an entry per interface), the order the list is sorted in.
        let start = if r.page_token.is_empty() {
            0
        } else {
            let (mn_id, ll) = r
                .page_token
                .rsplit_once(' ')
                .and_then(|(id, ll)| {
                    // A link-layer address may be empty (RFC 5213 §8.6 sets no minimum).
                    let ll = match ll {
                        "" => Vec::new(),
                        ll => ll.parse::<LinkLayerAddress>().ok()?.as_bytes().to_vec(),
                    };
                    Some((id, ll))
                })
                .ok_or_else(|| {
                    Status::invalid_argument(format!(
                        "page_token: {:?} was not issued by this MAG",
                        r.page_token
                    ))
                })?;
            let after = (mn_id, ll.as_slice());
            all.iter()
                .position(|v| (v.entry.mn_id.as_str(), v.entry.link_layer.as_bytes()) > after)
                .unwrap_or(all.len())
        };
        let page: Vec<&EntryView> = all.iter().skip(start).take(size).collect();
        let next = if start + page.len() < all.len() {
            page.last()
                .map(|v| format!("{} {}", v.entry.mn_id, v.entry.link_layer))
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(pb::ListBindingUpdateListResponse {
            entries: page
                .iter()
                .map(|v| entry_to_proto(v, stats.lma_address))
                .collect(),
            next_page_token: next,
            total_size: all.len() as u64,
        }))
    }

    async fn attach(
        &self,
        req: Request<pb::AttachRequest>,
    ) -> Result<Response<pb::AttachResponse>, Status> {
        let r = req.into_inner();
        let ll = cnf::convert::link_layer("link_layer_address", &r.link_layer_address)?;
        if r.access_interface.is_empty() {
            return Err(Status::invalid_argument("access_interface: empty"));
        }
        let att = r
            .access_technology_type
            .filter(|v| *v != 0)
            .map(|v| {
                u8::try_from(v)
                    .map(AccessTechnologyType::from)
                    .map_err(|_| {
                        Status::invalid_argument(format!(
                            "access_technology_type: {v} is not a value from 0 to 255"
                        ))
                    })
            })
            .transpose()?;
        let lma = self.stats().await?.lma_address;
        let v = self
            .core
            .call(|reply| Command::Attach {
                link_layer: ll,
                interface: r.access_interface,
                access_technology_type: att,
                wait: r.wait,
                reply,
            })
            .await
            .map_err(gone)?
            .map_err(call_error)?;
        Ok(Response::new(pb::AttachResponse {
            entry: Some(entry_to_proto(&v, lma)),
        }))
    }

    async fn detach(
        &self,
        req: Request<pb::DetachRequest>,
    ) -> Result<Response<pb::DetachResponse>, Status> {
        let r = req.into_inner();
        let node = match r.node {
            Some(pb::detach_request::Node::LinkLayerAddress(l)) => {
                NodeKey::LinkLayer(cnf::convert::link_layer("link_layer_address", &l)?)
            }
            Some(pb::detach_request::Node::MnId(id)) => NodeKey::MnId(id),
            None => {
                return Err(Status::invalid_argument(
                    "node: give link_layer_address or mn_id",
                ));
            }
        };
        let lma = self.stats().await?.lma_address;
        let v = self
            .core
            .call(|reply| Command::Detach { node, reply })
            .await
            .map_err(gone)?
            .map_err(call_error)?;
        Ok(Response::new(pb::DetachResponse {
            entry: Some(entry_to_proto(&v, lma)),
        }))
    }

    async fn handover_indication(
        &self,
        req: Request<pb::HandoverIndicationRequest>,
    ) -> Result<Response<pb::HandoverIndicationResponse>, Status> {
        let r = req.into_inner();
        if self.fast.mode == FastHandoverMode::Off {
            return Err(Status::failed_precondition(
                "fast handovers are off in this domain (fast_handover.mode)",
            ));
        }
        match (
            r.new_access_point.is_empty(),
            r.previous_access_point.is_empty(),
        ) {
            // Predictive: this is the previous MAG.
            (false, true) => {
                let new_mag = self.access_point(&r.new_access_point, "new_access_point")?;
                self.core
                    .call(|reply| Command::HandoverIndication {
                        mn_id: r.mn_id,
                        new_mag,
                        reply,
                    })
                    .await
                    .map_err(gone)?
                    .map_err(call_error)?;
                Ok(Response::new(pb::HandoverIndicationResponse {
                    new_proxy_coa: new_mag.to_string(),
                    hack_code: 0,
                }))
            }
            // Reactive: this is the new MAG; the node comes from there.
            (true, false) => {
                let previous =
                    self.access_point(&r.previous_access_point, "previous_access_point")?;
                let ll = self.node_link_layer(&r.mn_id).await?;
                self.core
                    .send(Command::ExpectArrival {
                        link_layer: ll,
                        previous_mag: previous,
                    })
                    .await
                    .map_err(gone)?;
                Ok(Response::new(pb::HandoverIndicationResponse {
                    new_proxy_coa: String::new(),
                    hack_code: 0,
                }))
            }
            _ => Err(Status::invalid_argument(
                "set exactly one of new_access_point (predictive, at the previous MAG) and previous_access_point (reactive, at the new MAG)",
            )),
        }
    }

    async fn stats(
        &self,
        _: Request<pb::MagStatsRequest>,
    ) -> Result<Response<pb::MagStats>, Status> {
        let s = GatewayService::stats(self).await?;
        let uptime = self.started.elapsed().unwrap_or_default();
        Ok(Response::new(pb::MagStats {
            name: s.name,
            proxy_coa: s.proxy_coa.to_string(),
            lma_address: s.lma_address.to_string(),
            version: self.version.to_owned(),
            restart_counter: u64::from(s.restart_counter),
            started_at: Some(timestamp(self.started)),
            uptime: Some(prost_types::Duration {
                seconds: uptime.as_secs() as i64,
                nanos: uptime.subsec_nanos() as i32,
            }),
            bul_entries: s.bul_entries as u64,
            registered: s.registered as u64,
            pbus_sent: s.pbus_sent,
            pbu_retransmissions: s.pbu_retransmissions,
            pbas_by_status: s
                .pbas_by_status
                .iter()
                .map(|(st, n)| pb::PbaCount {
                    status: u32::from(st.value()),
                    status_name: st.rfc_name().unwrap_or("unknown").to_owned(),
                    count: *n,
                })
                .collect(),
            lma_reachable: s.lma_reachable,
            lab_nodes: s.lab_nodes as u64,
            fast_handovers: s.fast_handovers,
            buffered_packets: s.buffered_packets,
            mobile_node_profiles: s.profiles as u64,
            policy_synced: s.policy_synced,
        }))
    }

    async fn lab_attach(
        &self,
        req: Request<pb::LabAttachRequest>,
    ) -> Result<Response<pb::LabAttachResponse>, Status> {
        let r = req.into_inner();
        let id = cnf::convert::nai("mn_id", &r.mn_id)?;
        let ll = cnf::convert::link_layer("link_layer_address", &r.link_layer_address)?;
        if ll.as_bytes().len() != 6 {
            return Err(Status::invalid_argument(
                "link_layer_address: 6 bytes (a MAC)",
            ));
        }
        if r.access_interface.len() > 15 {
            return Err(Status::invalid_argument(
                "access_interface: at most 15 bytes",
            ));
        }
        let mut nodes = self.lab.lock().await;
        if let Some((ns, acc, mac)) = nodes.get(id.as_str()) {
            if *mac == ll {
                return Ok(Response::new(pb::LabAttachResponse {
                    namespace: ns.clone(),
                    access_interface: acc.clone(),
                    node_interface: "eth0".into(),
                    existed: true,
                }));
            }
            return Err(Status::already_exists(format!(
                "{} exists with link-layer address {mac}",
                id.as_str()
            )));
        }
        if nodes.len() >= 256 {
            return Err(Status::resource_exhausted("at most 256 lab nodes per MAG"));
        }
        // Names no other lab node has: two MN-IDs of one user part in different realms, or a
        // node attached after another was removed, get names of their own.
        let name = if r.namespace.is_empty() {
            let base = lab_name(id.as_str());
            first_free(&base, |n| nodes.values().any(|(ns, _, _)| ns == n))
        } else {
            r.namespace.clone()
        };
        let ifname = if r.access_interface.is_empty() {
            first_free("lab1", |n| nodes.values().any(|(_, acc, _)| acc == n))
        } else {
            r.access_interface.clone()
        };
        let known = self
            .core
            .call(|reply| Command::KnowsNode {
                link_layer: ll,
                reply,
            })
            .await
            .map_err(gone)?;
        if !known {
            return Err(Status::not_found(format!(
                "no profile has link-layer address {ll}; create the MobileNode (or the profile) first"
            )));
        }
        let node = lab::attach(&name, ll, &ifname).await.map_err(|e| {
            if e.to_string().contains("Operation not permitted") {
                Status::failed_precondition(format!(
                    "creating the lab node needs CAP_SYS_ADMIN: {e}"
                ))
            } else {
                Status::internal(format!("creating the lab node: {e}"))
            }
        })?;
        nodes.insert(id.as_str().to_owned(), (name.clone(), ifname.clone(), ll));
        let _ = self
            .core
            .send(Command::LabNode {
                mn_id: id.as_str().to_owned(),
                interface: node.access_ifname.clone(),
                present: true,
            })
            .await;
        Ok(Response::new(pb::LabAttachResponse {
            namespace: name,
            access_interface: node.access_ifname,
            node_interface: "eth0".into(),
            existed: false,
        }))
    }

    async fn lab_detach(
        &self,
        req: Request<pb::LabDetachRequest>,
    ) -> Result<Response<pb::LabDetachResponse>, Status> {
        let r = req.into_inner();
        let mut nodes = self.lab.lock().await;
        let Some((ns, _, ll)) = nodes.remove(&r.mn_id) else {
            return Err(Status::not_found(format!("no lab node {}", r.mn_id)));
        };
        // De-register first (lifetime 0), then remove the namespace and its veth.
        let _ = self
            .core
            .call(|reply| Command::Detach {
                node: NodeKey::LinkLayer(ll),
                reply,
            })
            .await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        lab::detach(&ns)
            .await
            .map_err(|e| Status::internal(format!("removing the lab node: {e}")))?;
        let _ = self
            .core
            .send(Command::LabNode {
                mn_id: r.mn_id,
                interface: String::new(),
                present: false,
            })
            .await;
        Ok(Response::new(pb::LabDetachResponse {}))
    }
}

impl GatewayService {
    async fn node_link_layer(&self, mn_id: &str) -> Result<LinkLayerAddress, Status> {
        self.core
            .call(|reply| Command::LinkLayerOf {
                mn_id: mn_id.to_owned(),
                reply,
            })
            .await
            .map_err(gone)?
            .ok_or_else(|| Status::not_found(format!("no profile for {mn_id}")))
    }
}

/// The namespace name of a lab node: the MN-ID's user part (`mn` when it has none).
fn lab_name(mn_id: &str) -> String {
    let user: String = mn_id
        .split('@')
        .next()
        .unwrap_or(mn_id)
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(40)
        .collect();
    if user.is_empty() { "mn".into() } else { user }
}

/// `base` if it is not `taken`, else the first of `base`'s stem followed by 2, 3, ... that is
/// not (`lab1` gives `lab2`, `mn1` gives `mn1-2`).
fn first_free(base: &str, taken: impl Fn(&str) -> bool) -> String {
    if !taken(base) {
        return base.to_owned();
    }
    let (stem, sep) = match base.strip_suffix('1') {
        Some(stem) if stem == "lab" => (stem, ""),
        _ => (base, "-"),
    };
    (2..)
        .map(|i| format!("{stem}{sep}{i}"))
        .find(|n| !taken(n))
        .unwrap_or_else(|| base.to_owned())
}

/// Starts the API server; it stops when `stop` turns true.
pub async fn serve(
    cfg: ApiConfig,
    fast: FastHandoverConfig,
    core: CoreHandle,
    _access: AccessHandle,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(cfg.listen).await?;
    serve_on(&cfg, fast, core, listener, stop).await
}

/// Starts the API server on a bound listener (tests bind port 0).
pub async fn serve_on(
    cfg: &ApiConfig,
    fast: FastHandoverConfig,
    core: CoreHandle,
    listener: tokio::net::TcpListener,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<JoinHandle<()>> {
    let (reporter, health, reflection, reflection_v1alpha) =
        cnf::grpc::health_and_reflection(&[proto::service_names::GATEWAY]);
    reporter
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    reporter
        .set_service_status(
            proto::service_names::GATEWAY,
            tonic_health::ServingStatus::Serving,
        )
        .await;
    let health_only = {
        let mut stop = stop.clone();
        cnf::grpc::serve_health_listener(cfg, health.clone(), async move {
            let _ = stop.wait_for(|s| *s).await;
        })
        .await?
    };
    let router = cnf::grpc::server(cfg)?
        .add_service(health)
        .add_service(reflection)
        .add_service(reflection_v1alpha)
        .add_service(GatewayServer::new(GatewayService::new(core, fast)));
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
        if let Some(h) = health_only {
            let _ = h.await;
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lab_names_are_the_user_part_and_never_reused_while_taken() {
        assert_eq!(lab_name("mn1@a.example"), "mn1");
        assert_eq!(lab_name("a.b_c@x"), "a-b-c");
        assert_eq!(lab_name("@x"), "mn");
        let used = ["lab1", "lab3", "mn1"];
        let taken = |n: &str| used.contains(&n);
        assert_eq!(first_free("lab1", taken), "lab2");
        assert_eq!(
            first_free("lab1", |n| n != "lab4" && n.starts_with("lab")),
            "lab4"
        );
        assert_eq!(first_free("mn1", taken), "mn1-2");
        assert_eq!(first_free("mn2", taken), "mn2");
    }
}
