//! `pmip.v1.BindingCache`: list, get, watch and revoke binding cache entries; the LMA's
//! counters.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pmip::wire::WallClock;
use proto::v1 as pb;
use proto::v1::binding_cache_server::BindingCache;
use proto::v1::binding_event::Event;
use tokio::sync::watch;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::convert::{self, invalid};
use super::watch::{Feed, core_gone, spawn};
use crate::core::{BindingPage, Command, CoreGone, CoreHandle, RevokeOutcome};
use crate::hub::{BindingChange, ResetReason, Stamped, WatchStart};

/// The BindingCache service.
#[derive(Debug, Clone)]
pub struct BindingCacheService {
    core: CoreHandle,
    stop: watch::Receiver<bool>,
    watchers: Arc<AtomicU64>,
}

impl BindingCacheService {
    pub fn new(core: CoreHandle, stop: watch::Receiver<bool>, watchers: Arc<AtomicU64>) -> Self {
        Self {
            core,
            stop,
            watchers,
        }
    }
}

pub(super) fn gone(_: CoreGone) -> Status {
    core_gone()
}

pub(super) fn wall_now() -> WallClock {
    WallClock(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default(),
    )
}

/// The Watch stream of bindings, optionally of one node or of one IPv4 home address.
struct Bindings {
    core: CoreHandle,
    mn_id: Option<String>,
    ipv4: Option<Ipv4Addr>,
}

impl Bindings {
    fn wants(&self, c: &BindingChange) -> bool {
        let (mn, ipv4) = match c {
            BindingChange::Added(v)
            | BindingChange::Updated(v, _)
            | BindingChange::Deleted(v, _) => (
                &v.record.mn_id,
                v.record.ipv4_home_address.map(|a| a.address),
            ),
            BindingChange::Rejected(r) => (&r.mn_id, None),
        };
        self.mn_id.as_ref().is_none_or(|want| mn == want)
            && self.ipv4.is_none_or(|want| ipv4 == Some(want))
    }

    fn event(epoch: u64, revision: u64, time: WallClock, event: Event) -> pb::BindingEvent {
        pb::BindingEvent {
            epoch,
            revision,
            time: Some(convert::timestamp(time)),
            event: Some(event),
        }
    }
}

impl Feed for Bindings {
    type Change = BindingChange;
    type Item = BindingChange;
    type Event = pb::BindingEvent;

    async fn start(
        &self,
        cursor: Option<(u64, u64)>,
    ) -> Result<WatchStart<BindingChange, BindingChange>, CoreGone> {
        self.core
            .call(|reply| Command::WatchBindings { cursor, reply })
            .await
    }

    fn reset(&self, epoch: u64, revision: u64, reason: ResetReason) -> pb::BindingEvent {
        Self::event(
            epoch,
            revision,
            wall_now(),
            Event::Reset(pb::Reset {
                reason: convert::reset_reason(reason) as i32,
            }),
        )
    }

    fn synced(&self, epoch: u64, revision: u64, objects: u64) -> pb::BindingEvent {
        Self::event(
            epoch,
            revision,
            wall_now(),
            Event::Synced(pb::Synced {
                object_count: objects,
            }),
        )
    }

    fn item(
        &self,
        epoch: u64,
        revision: u64,
        item: &BindingChange,
    ) -> Option<(pb::BindingEvent, bool)> {
        if !self.wants(item) {
            return None;
        }
        let object = matches!(item, BindingChange::Added(_));
        let ev = Self::event(epoch, revision, wall_now(), convert::binding_event(item));
        Some((ev, object))
    }

    fn change(&self, c: &Stamped<BindingChange>) -> Option<pb::BindingEvent> {
        if !self.wants(&c.item) {
            return None;
        }
        Some(Self::event(
            c.epoch,
            c.revision,
            c.time,
            convert::binding_event(&c.item),
        ))
    }

    async fn resumed_objects(&self, objects: u64) -> u64 {
        match (&self.mn_id, self.ipv4) {
            (None, None) => objects,
            (Some(mn_id), None) => {
                let mn_id = mn_id.clone();
                self.core
                    .call(|reply| Command::BindingsOf { mn_id, reply })
                    .await
                    .map_or(0, |v| v.len() as u64)
            }
            (_, Some(address)) => self
                .core
                .call(|reply| Command::BindingByIpv4 { address, reply })
                .await
                .ok()
                .flatten()
                .filter(|v| self.mn_id.as_ref().is_none_or(|m| *m == v.record.mn_id))
                .map_or(0, |_| 1),
        }
    }
}

#[tonic::async_trait]
impl BindingCache for BindingCacheService {
    async fn list(
        &self,
        request: Request<pb::ListBindingsRequest>,
    ) -> Result<Response<pb::ListBindingsResponse>, Status> {
        let r = request.into_inner();
        let epoch = self.core.epoch();
        let after = convert::parse_slot(epoch, &r.page_token)?;
        let proxy_coa = match r.proxy_coa.as_str() {
            "" => None,
            s => Some(convert::ipv6("proxy_coa", s)?),
        };
        let limit = convert::page_size(r.page_size);
        let BindingPage {
            bindings,
            next,
            total,
            revision,
        } = self
            .core
            .call(|reply| Command::ListBindings {
                after,
                limit,
                proxy_coa,
                reply,
            })
            .await
            .map_err(gone)?;
        Ok(Response::new(pb::ListBindingsResponse {
            bindings: bindings.iter().map(convert::binding).collect(),
            next_page_token: next
                .map(|s| convert::page_token(epoch, &s.to_string()))
                .unwrap_or_default(),
            total_size: total as u64,
            cursor: Some(pb::WatchCursor { epoch, revision }),
        }))
    }

    async fn get(
        &self,
        request: Request<pb::GetBindingRequest>,
    ) -> Result<Response<pb::Binding>, Status> {
        use pb::get_binding_request::Key;
        match request.into_inner().key {
            None => Err(invalid(
                "key",
                "give one of mn_id, home_network_prefix or ipv4_home_address",
            )),
            Some(Key::Ipv4HomeAddress(s)) => {
                let address = convert::ipv4("ipv4_home_address", &s)?;
                self.core
                    .call(|reply| Command::BindingByIpv4 { address, reply })
                    .await
                    .map_err(gone)?
                    .map(|v| Response::new(convert::binding(&v)))
                    .ok_or_else(|| {
                        Status::not_found(format!("no binding holds IPv4 home address {address}"))
                    })
            }
            Some(Key::MnId(s)) => {
                let mn_id = convert::nai("mn_id", &s)?.to_string();
                let views = self
                    .core
                    .call(|reply| Command::BindingsOf {
                        mn_id: mn_id.clone(),
                        reply,
                    })
                    .await
                    .map_err(gone)?;
                // A multihomed node has a session per interface: the one that changed last.
                views
                    .iter()
                    .max_by_key(|v| (v.record.updated_at_ms, v.revision))
                    .map(|v| Response::new(convert::binding(v)))
                    .ok_or_else(|| Status::not_found(format!("{mn_id} has no binding")))
            }
            Some(Key::HomeNetworkPrefix(s)) => {
                let prefix = convert::prefix_or_address("home_network_prefix", &s)?;
                self.core
                    .call(|reply| Command::BindingByPrefix { prefix, reply })
                    .await
                    .map_err(gone)?
                    .map(|v| Response::new(convert::binding(&v)))
                    .ok_or_else(|| {
                        Status::not_found(format!("no binding holds or covers {prefix}"))
                    })
            }
        }
    }

    type WatchStream = ReceiverStream<Result<pb::BindingEvent, Status>>;

    async fn watch(
        &self,
        request: Request<pb::WatchBindingsRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let r = request.into_inner();
        let mn_id = match r.mn_id.as_str() {
            "" => None,
            s => Some(convert::nai("mn_id", s)?.to_string()),
        };
        let ipv4 = match r.ipv4_home_address.trim() {
            "" => None,
            s => Some(convert::ipv4("ipv4_home_address", s)?),
        };
        let cursor = r.resume_from.map(|c| (c.epoch, c.revision));
        let feed = Bindings {
            core: self.core.clone(),
            mn_id,
            ipv4,
        };
        let first = feed.start(cursor).await.map_err(gone)?;
        Ok(Response::new(spawn(
            feed,
            first,
            cursor,
            self.stop.clone(),
            self.watchers.clone(),
        )))
    }

    async fn revoke(
        &self,
        request: Request<pb::RevokeRequest>,
    ) -> Result<Response<pb::RevokeResponse>, Status> {
        let caller = cnf::grpc::caller(&request);
        let r = request.into_inner();
        if !r.proxy_coa.is_empty() {
            if !r.mn_id.is_empty() {
                return Err(Status::invalid_argument(
                    "mn_id and proxy_coa: one or the other",
                ));
            }
            let mag: std::net::Ipv6Addr = r.proxy_coa.parse().map_err(|_| {
                Status::invalid_argument(format!(
                    "proxy_coa {:?} is not an IPv6 address",
                    r.proxy_coa
                ))
            })?;
            tracing::info!(%caller, %mag, "per-MAG revocation requested over the API");
            let (outcome, n) = self
                .core
                .call(|reply| Command::RevokeMag { mag, reply })
                .await
                .map_err(gone)?;
            let (outcome, status) = match outcome {
                RevokeOutcome::NoBinding => {
                    return Err(Status::not_found(format!(
                        "no binding registered through {mag}: nothing to revoke"
                    )));
                }
                RevokeOutcome::Acknowledged(s) if s.value() < 128 => {
                    (pb::RevocationOutcome::Acknowledged, Some(s))
                }
                RevokeOutcome::Acknowledged(s) => (pb::RevocationOutcome::RefusedByMag, Some(s)),
                RevokeOutcome::TimedOut | RevokeOutcome::Cancelled => {
                    (pb::RevocationOutcome::NoAcknowledgement, None)
                }
            };
            return Ok(Response::new(pb::RevokeResponse {
                outcome: outcome as i32,
                bra_status: status.map(|s| u32::from(s.value())),
                bra_status_name: status
                    .map(|s| s.rfc_name().unwrap_or("unknown").to_owned())
                    .unwrap_or_default(),
                binding: None,
                revoked_bindings: u32::try_from(n).unwrap_or(u32::MAX),
            }));
        }
        let mn_id = convert::nai("mn_id", &r.mn_id)?.to_string();
        let trigger = convert::revocation_trigger(r.trigger)?;
        tracing::info!(%caller, %mn_id, %trigger, "revocation requested over the API");
        let before = self
            .core
            .call(|reply| Command::BindingsOf {
                mn_id: mn_id.clone(),
                reply,
            })
            .await
            .map_err(gone)?;
        let binding = before
            .iter()
            .max_by_key(|v| (v.record.updated_at_ms, v.revision))
            .map(convert::binding);
        let outcome = self
            .core
            .call(|reply| Command::Revoke {
                mn_id: mn_id.clone(),
                trigger,
                reply,
            })
            .await
            .map_err(gone)?;
        let (outcome, status) = match outcome {
            RevokeOutcome::NoBinding => {
                return Err(Status::not_found(format!(
                    "{mn_id} has no binding: nothing to revoke"
                )));
            }
            RevokeOutcome::TimedOut => (pb::RevocationOutcome::NoAcknowledgement, None),
            RevokeOutcome::Cancelled => (pb::RevocationOutcome::CancelledByRegistration, None),
            RevokeOutcome::Acknowledged(s) if s.value() < 128 => {
                (pb::RevocationOutcome::Acknowledged, Some(s))
            }
            RevokeOutcome::Acknowledged(s) => (pb::RevocationOutcome::RefusedByMag, Some(s)),
        };
        Ok(Response::new(pb::RevokeResponse {
            outcome: outcome as i32,
            bra_status: status.map(|s| u32::from(s.value())),
            bra_status_name: status
                .map(|s| s.rfc_name().unwrap_or("unknown").to_owned())
                .unwrap_or_default(),
            binding,
            revoked_bindings: 0,
        }))
    }

    async fn stats(
        &self,
        _request: Request<pb::LmaStatsRequest>,
    ) -> Result<Response<pb::LmaStats>, Status> {
        let s = self
            .core
            .call(|reply| Command::Stats { reply })
            .await
            .map_err(gone)?;
        let now = wall_now();
        let started = WallClock(now.0.checked_sub(s.uptime).unwrap_or(Duration::ZERO));
        Ok(Response::new(pb::LmaStats {
            name: s.name,
            lma_address: s.address.to_string(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            restart_counter: u64::from(s.restart_counter),
            epoch: s.epoch,
            revision: s.revision,
            started_at: Some(convert::timestamp(started)),
            uptime: Some(convert::duration(s.uptime)),
            bindings: s.bindings as u64,
            active_bindings: s.active_bindings as u64,
            allocated_prefixes: s.allocated_prefixes as u64,
            free_prefixes: s.prefixes_available,
            mobile_node_profiles: s.profiles as u64,
            authorized_mags: s.authorized_mags as u64,
            pbus_received: s.pbu_received,
            pbas_by_status: s
                .pba_by_status
                .iter()
                .map(|(st, n)| pb::PbaStatusCount {
                    status: u32::from(st.value()),
                    status_name: convert::status_name(*st),
                    count: *n,
                })
                .collect(),
            handovers: s.handovers,
            revocations: s.revocations,
            expirations: s.expirations,
            mags_reachable: s.mags_reachable as u64,
            watchers: self.watchers.load(Ordering::Relaxed),
            datapath_reconciled: s.datapath_reconciled_after.is_some(),
            datapath_reconciled_after: s.datapath_reconciled_after.map(convert::duration),
        }))
    }

    async fn list_mag_peers(
        &self,
        _request: Request<pb::ListMagPeersRequest>,
    ) -> Result<Response<pb::ListMagPeersResponse>, Status> {
        let mags = self
            .core
            .call(|reply| Command::ListMagPeers { reply })
            .await
            .map_err(gone)?;
        Ok(Response::new(pb::ListMagPeersResponse {
            mags: mags.iter().map(convert::mag_peer).collect(),
        }))
    }
}
