//! `pmip.v1.Policy`: mobile node profiles and authorized MAGs.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use tracing::info;

use proto::v1 as pb;
use proto::v1::mobile_node_event::Event;
use proto::v1::policy_server::Policy;
use tokio::sync::watch;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::binding_cache::gone;
use super::convert::{self, invalid};
use super::watch::{Feed, spawn};
use crate::core::{Command, CoreGone, CoreHandle, PolicyRefusal, ProfileView, Upserted};
use crate::hub::{ProfileChange, ResetReason, Stamped, WatchStart};

/// The Policy service.
#[derive(Debug, Clone)]
pub struct PolicyService {
    core: CoreHandle,
    stop: watch::Receiver<bool>,
    watchers: Arc<AtomicU64>,
}

impl PolicyService {
    pub fn new(core: CoreHandle, stop: watch::Receiver<bool>, watchers: Arc<AtomicU64>) -> Self {
        Self {
            core,
            stop,
            watchers,
        }
    }
}

fn refused(e: PolicyRefusal) -> Status {
    let m = e.to_string();
    match e {
        PolicyRefusal::FromConfig(_) => Status::failed_precondition(m),
        PolicyRefusal::NotFound(_) => Status::not_found(m),
        PolicyRefusal::Conflict(_) => Status::already_exists(m),
        PolicyRefusal::OutOfRange(_) => Status::out_of_range(m),
        PolicyRefusal::Invalid(_) => Status::invalid_argument(m),
    }
}

/// The profile stream.
struct Profiles {
    core: CoreHandle,
}

impl Profiles {
    fn event(epoch: u64, revision: u64, event: Event) -> pb::MobileNodeEvent {
        pb::MobileNodeEvent {
            epoch,
            revision,
            event: Some(event),
        }
    }
}

impl Feed for Profiles {
    type Change = ProfileChange;
    type Item = ProfileView;
    type Event = pb::MobileNodeEvent;

    async fn start(
        &self,
        cursor: Option<(u64, u64)>,
    ) -> Result<WatchStart<ProfileChange, ProfileView>, CoreGone> {
        self.core
            .call(|reply| Command::WatchProfiles { cursor, reply })
            .await
    }

    fn reset(&self, epoch: u64, revision: u64, reason: ResetReason) -> pb::MobileNodeEvent {
        Self::event(
            epoch,
            revision,
            Event::Reset(pb::Reset {
                reason: convert::reset_reason(reason) as i32,
            }),
        )
    }

    fn synced(&self, epoch: u64, revision: u64, objects: u64) -> pb::MobileNodeEvent {
        Self::event(
            epoch,
            revision,
            Event::Synced(pb::Synced {
                object_count: objects,
            }),
        )
    }

    fn item(
        &self,
        epoch: u64,
        revision: u64,
        item: &ProfileView,
    ) -> Option<(pb::MobileNodeEvent, bool)> {
        let ev = Self::event(
            epoch,
            revision,
            Event::Upserted(convert::profile_entry(item)),
        );
        Some((ev, true))
    }

    fn change(&self, c: &Stamped<ProfileChange>) -> Option<pb::MobileNodeEvent> {
        let event = match &c.item {
            // Configuration-file profiles never change while the LMA runs: every change
            // comes through this API.
            ProfileChange::Upserted(p) => Event::Upserted(convert::profile_entry(&ProfileView {
                profile: p.clone(),
                from_config: false,
                revision: c.revision,
                updated_at: Some(c.time),
            })),
            ProfileChange::Deleted(mn_id) => Event::DeletedMnId(mn_id.clone()),
        };
        Some(Self::event(c.epoch, c.revision, event))
    }
}

#[tonic::async_trait]
impl Policy for PolicyService {
    async fn upsert_mobile_node(
        &self,
        request: Request<pb::UpsertMobileNodeRequest>,
    ) -> Result<Response<pb::UpsertMobileNodeResponse>, Status> {
        let caller = cnf::grpc::caller(&request);
        let p = request
            .into_inner()
            .profile
            .ok_or_else(|| invalid("profile", "missing"))?;
        let profile = convert::profile_from_proto(&p)?;
        let Upserted {
            view,
            created,
            changed,
        } = self
            .core
            .call(|reply| Command::UpsertProfile { profile, reply })
            .await
            .map_err(gone)?
            .map_err(refused)?;
        if changed {
            info!(%caller, mn_id = %view.profile.mn_id, created, "profile set over the API");
        }
        Ok(Response::new(pb::UpsertMobileNodeResponse {
            entry: Some(convert::profile_entry(&view)),
            created,
            changed,
        }))
    }

    async fn apply_mobile_nodes(
        &self,
        request: Request<pb::ApplyMobileNodesRequest>,
    ) -> Result<Response<pb::ApplyMobileNodesResponse>, Status> {
        let mut profiles = Vec::new();
        for (i, p) in request.into_inner().profiles.iter().enumerate() {
            profiles.push(convert::profile_from_proto(p).map_err(|e| {
                invalid(
                    &format!("profiles[{i}].{}", e.field),
                    format_args!("{}; nothing was changed", e.reason),
                )
            })?);
        }
        let ids: Vec<String> = profiles.iter().map(|p| p.mn_id.to_string()).collect();
        let done = self
            .core
            .call(|reply| Command::UpsertProfiles { profiles, reply })
            .await
            .map_err(gone)?
            .map_err(|(i, e)| {
                let s = refused(e);
                Status::new(
                    s.code(),
                    format!(
                        "profiles[{i}] ({}): {}; nothing was changed",
                        ids.get(i).map_or("", String::as_str),
                        s.message()
                    ),
                )
            })?;
        Ok(Response::new(pb::ApplyMobileNodesResponse {
            results: done
                .into_iter()
                .map(|u| pb::UpsertMobileNodeResponse {
                    entry: Some(convert::profile_entry(&u.view)),
                    created: u.created,
                    changed: u.changed,
                })
                .collect(),
        }))
    }

    async fn delete_mobile_node(
        &self,
        request: Request<pb::DeleteMobileNodeRequest>,
    ) -> Result<Response<pb::DeleteMobileNodeResponse>, Status> {
        let caller = cnf::grpc::caller(&request);
        let mn_id = convert::nai("mn_id", &request.into_inner().mn_id)?.to_string();
        // The binding stays (policy.proto): BindingCache.Revoke ends it.
        self.core
            .call(|reply| Command::DeleteProfile {
                mn_id: mn_id.clone(),
                revoke: false,
                reply,
            })
            .await
            .map_err(gone)?
            .map_err(refused)?;
        info!(%caller, %mn_id, "profile deleted over the API");
        Ok(Response::new(pb::DeleteMobileNodeResponse {}))
    }

    async fn get_mobile_node(
        &self,
        request: Request<pb::GetMobileNodeRequest>,
    ) -> Result<Response<pb::MobileNodeEntry>, Status> {
        let mn_id = convert::nai("mn_id", &request.into_inner().mn_id)?.to_string();
        self.core
            .call(|reply| Command::GetProfile {
                mn_id: mn_id.clone(),
                reply,
            })
            .await
            .map_err(gone)?
            .map(|v| Response::new(convert::profile_entry(&v)))
            .ok_or_else(|| Status::not_found(format!("no profile for {mn_id}")))
    }

    async fn list_mobile_nodes(
        &self,
        request: Request<pb::ListMobileNodesRequest>,
    ) -> Result<Response<pb::ListMobileNodesResponse>, Status> {
        let r = request.into_inner();
        let epoch = self.core.epoch();
        let after = convert::parse_page_token(epoch, &r.page_token)?.map(str::to_owned);
        let limit = convert::page_size(r.page_size);
        let all = self
            .core
            .call(|reply| Command::ListProfiles { reply })
            .await
            .map_err(gone)?;
        let total = all.len() as u64;
        // Sorted by MN-ID: continue after the last one sent.
        let start = after.as_deref().map_or(0, |a| {
            all.partition_point(|v| v.profile.mn_id.as_str() <= a)
        });
        let page: Vec<pb::MobileNodeEntry> = all
            .iter()
            .skip(start)
            .take(limit)
            .map(convert::profile_entry)
            .collect();
        let next_page_token = if start + page.len() < all.len() {
            all.get(start + page.len() - 1)
                .map(|v| convert::page_token(epoch, v.profile.mn_id.as_str()))
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(pb::ListMobileNodesResponse {
            entries: page,
            next_page_token,
            total_size: total,
        }))
    }

    type WatchMobileNodesStream = ReceiverStream<Result<pb::MobileNodeEvent, Status>>;

    async fn watch_mobile_nodes(
        &self,
        request: Request<pb::WatchMobileNodesRequest>,
    ) -> Result<Response<Self::WatchMobileNodesStream>, Status> {
        let cursor = request
            .into_inner()
            .resume_from
            .map(|c| (c.epoch, c.revision));
        let feed = Profiles {
            core: self.core.clone(),
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

    async fn add_authorized_mag(
        &self,
        request: Request<pb::AddAuthorizedMagRequest>,
    ) -> Result<Response<pb::AuthorizedMag>, Status> {
        let caller = cnf::grpc::caller(&request);
        let m = request
            .into_inner()
            .mag
            .ok_or_else(|| invalid("mag", "missing"))?;
        let address = convert::proxy_coa("mag.proxy_coa", &m.proxy_coa)?;
        self.core
            .call(|reply| Command::AddMag {
                address,
                name: m.name.clone(),
                reply,
            })
            .await
            .map_err(gone)?;
        info!(%caller, mag = %address, name = %m.name, "MAG authorized over the API");
        let mags = self
            .core
            .call(|reply| Command::ListMags { reply })
            .await
            .map_err(gone)?;
        mags.iter()
            .find(|v| v.address == address)
            .map(|v| Response::new(convert::authorized_mag(v)))
            .ok_or_else(|| Status::aborted(format!("{address} was removed while being added")))
    }

    async fn remove_authorized_mag(
        &self,
        request: Request<pb::RemoveAuthorizedMagRequest>,
    ) -> Result<Response<pb::RemoveAuthorizedMagResponse>, Status> {
        let caller = cnf::grpc::caller(&request);
        let address = convert::ipv6("proxy_coa", &request.into_inner().proxy_coa)?;
        let removed = self
            .core
            .call(|reply| Command::RemoveMag { address, reply })
            .await
            .map_err(gone)?
            .map_err(Status::failed_precondition)?;
        if removed {
            info!(%caller, mag = %address, "MAG authorization removed over the API");
            Ok(Response::new(pb::RemoveAuthorizedMagResponse {}))
        } else {
            Err(Status::not_found(format!(
                "{address} is not a MAG authorized through the API"
            )))
        }
    }

    async fn list_authorized_mags(
        &self,
        _request: Request<pb::ListAuthorizedMagsRequest>,
    ) -> Result<Response<pb::ListAuthorizedMagsResponse>, Status> {
        let mut mags = self
            .core
            .call(|reply| Command::ListMags { reply })
            .await
            .map_err(gone)?;
        mags.sort_by_key(|m| m.address);
        Ok(Response::new(pb::ListAuthorizedMagsResponse {
            mags: mags.iter().map(convert::authorized_mag).collect(),
        }))
    }

    async fn set_authorized_mags(
        &self,
        request: Request<pb::SetAuthorizedMagsRequest>,
    ) -> Result<Response<pb::SetAuthorizedMagsResponse>, Status> {
        let caller = cnf::grpc::caller(&request);
        let mut mags = BTreeMap::new();
        for (i, m) in request.into_inner().mags.into_iter().enumerate() {
            let field = format!("mags[{i}].proxy_coa");
            let a = convert::proxy_coa(&field, &m.proxy_coa)?;
            if mags.insert(a, m.name).is_some() {
                return Err(invalid(
                    &field,
                    format_args!("{a} is given twice; nothing was changed"),
                ));
            }
        }
        let c = self
            .core
            .call(|reply| Command::SetMags { mags, reply })
            .await
            .map_err(gone)?;
        let list = |v: &[std::net::Ipv6Addr]| {
            v.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(",")
        };
        if !(c.added.is_empty() && c.removed.is_empty() && c.renamed.is_empty()) {
            info!(
                %caller,
                added = %list(&c.added),
                removed = %list(&c.removed),
                renamed = %list(&c.renamed),
                "authorized MAGs set over the API"
            );
        }
        let text = |v: Vec<std::net::Ipv6Addr>| v.iter().map(ToString::to_string).collect();
        Ok(Response::new(pb::SetAuthorizedMagsResponse {
            added: text(c.added),
            removed: text(c.removed),
            renamed: text(c.renamed),
        }))
    }
}
