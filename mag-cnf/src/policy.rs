//! Following the LMA's policy service (`pmip.v1.Policy/WatchMobileNodes`): the MAG learns the
//! mobile nodes' profiles (which link-layer address is which MN-ID) from the LMA, keeps them
//! current, and resumes the stream from its cursor after a disconnect.

use std::time::Duration;

use proto::v1::mobile_node_event::Event;
use proto::v1::policy_client::PolicyClient;
use proto::v1::{WatchCursor, WatchMobileNodesRequest};
use tracing::{info, warn};

use crate::core::{Command, CoreHandle};

/// Runs until the core stops, reconnecting with backoff.
pub async fn follow(url: String, core: CoreHandle) {
    let mut cursor: Option<WatchCursor> = None;
    let mut backoff = Duration::from_millis(200);
    loop {
        match stream(&url, &core, &mut cursor).await {
            Ok(()) => backoff = Duration::from_millis(200),
            Err(e) => warn!(%url, error = %e, "policy server stream"),
        }
        if core.send(Command::PolicySynced(false)).await.is_err() {
            return;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

async fn stream(
    url: &str,
    core: &CoreHandle,
    cursor: &mut Option<WatchCursor>,
) -> anyhow::Result<()> {
    let mut client = PolicyClient::connect(url.to_owned()).await?;
    let mut s = client
        .watch_mobile_nodes(WatchMobileNodesRequest {
            resume_from: *cursor,
        })
        .await?
        .into_inner();
    let mut synced = false;
    while let Some(ev) = s.message().await? {
        let at = WatchCursor {
            epoch: ev.epoch,
            revision: ev.revision,
        };
        match ev.event {
            Some(Event::Reset(r)) => {
                info!(reason = r.reason, "policy stream starts from a snapshot");
                core.send(Command::PolicyReset).await?;
                synced = false;
            }
            Some(Event::Synced(_)) => {
                synced = true;
                *cursor = Some(at);
                core.send(Command::PolicySynced(true)).await?;
            }
            Some(Event::Upserted(entry)) => {
                if let Some(p) = entry.profile.as_ref() {
                    match cnf::convert::profile_from_proto(p) {
                        Ok(p) => core.send(Command::UpsertProfile(p)).await?,
                        Err(e) => warn!(error = %e, "profile from the policy server refused"),
                    }
                }
                if synced {
                    *cursor = Some(at);
                }
            }
            Some(Event::DeletedMnId(id)) => {
                core.send(Command::RemoveProfile(id)).await?;
                if synced {
                    *cursor = Some(at);
                }
            }
            None => {}
        }
    }
    Ok(())
}
