//! Following the LMA's policy service (`pmip.v1.Policy/WatchMobileNodes`): the MAG learns the
//! mobile nodes' profiles (which link-layer address is which MN-ID) from the LMA, keeps them
//! current, and resumes the stream from its cursor after a disconnect.

use std::time::Duration;

use anyhow::Context;
use proto::v1::mobile_node_event::Event;
use proto::v1::policy_client::PolicyClient;
use proto::v1::{WatchCursor, WatchMobileNodesRequest};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
use tracing::{info, warn};

use crate::core::{Command, CoreHandle};

/// The endpoint of the policy server: `url`, over TLS when `tls` is given (`policy_server_tls`;
/// the files are read here, so a missing one is reported at start).
pub fn endpoint(
    url: &str,
    tls: Option<&pmip::config::ClientTlsConfig>,
) -> anyhow::Result<Endpoint> {
    let mut e =
        Endpoint::from_shared(url.to_owned()).with_context(|| format!("policy_server {url}"))?;
    if let Some(t) = tls {
        let read = |p: &std::path::Path, field: &str| {
            std::fs::read(p)
                .with_context(|| format!("policy_server_tls.{field}: cannot read {}", p.display()))
        };
        let mut c =
            ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read(&t.ca, "ca")?));
        if let (Some(cert), Some(key)) = (&t.cert, &t.key) {
            c = c.identity(Identity::from_pem(read(cert, "cert")?, read(key, "key")?));
        }
        if let Some(name) = &t.server_name {
            c = c.domain_name(name.clone());
        }
        e = e
            .tls_config(c)
            .with_context(|| format!("policy_server_tls for {url}"))?;
    }
    Ok(e.connect_timeout(Duration::from_secs(5)))
}

/// Runs until the core stops, reconnecting with backoff.
pub async fn follow(endpoint: Endpoint, core: CoreHandle) {
    let url = endpoint.uri().to_string();
    let mut cursor: Option<WatchCursor> = None;
    let mut backoff = Duration::from_millis(200);
    loop {
        match stream(&endpoint, &core, &mut cursor).await {
            Ok(()) => backoff = Duration::from_millis(200),
            // The whole chain: a bare "transport error" hides DNS, TLS or refused connections.
            Err(e) => warn!(%url, error = format!("{e:#}"), "policy server stream"),
        }
        if core.send(Command::PolicySynced(false)).await.is_err() {
            return;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

async fn stream(
    endpoint: &Endpoint,
    core: &CoreHandle,
    cursor: &mut Option<WatchCursor>,
) -> anyhow::Result<()> {
    let mut client = PolicyClient::new(endpoint.connect().await?);
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
