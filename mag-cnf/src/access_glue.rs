//! The access side as the core uses it: [`crate::access::Access`] behind an `Arc`, as the
//! core's [`RaSender`](crate::core::RaSender).

use std::sync::Arc;

use pmip::output::{NeighborSolicitation, RouterAdvertisement};
use pmip::types::LinkLayerAddress;
use tokio::sync::mpsc;

use crate::access::{Access, AccessEvent, PresenceProbe};
use crate::core::RaSender;

/// A shareable handle on the running access side.
#[derive(Debug, Clone)]
pub struct AccessHandle(Arc<Access>);

impl RaSender for AccessHandle {
    async fn send_ra(&self, ra: &RouterAdvertisement) -> anyhow::Result<()> {
        Ok(self.0.send_ra(ra).await?)
    }

    async fn send_ns(&self, ns: &NeighborSolicitation) -> anyhow::Result<()> {
        Ok(self.0.send_ns(ns).await?)
    }

    async fn send_probe(&self, probe: &PresenceProbe) -> anyhow::Result<()> {
        Ok(self.0.send_probe(probe).await?)
    }
}

/// Starts the access side on the links matching `patterns`; `mac` is the domain's fixed MAG
/// link-layer address.
pub async fn start(
    patterns: &[String],
    mac: LinkLayerAddress,
) -> anyhow::Result<(AccessHandle, mpsc::Receiver<AccessEvent>)> {
    let own: [u8; 6] = mac.as_bytes().try_into().map_err(|_| {
        anyhow::anyhow!("domain.link_local.link_layer_address: {mac} is not a 6-byte MAC")
    })?;
    let (access, rx) = Access::start(patterns, own).await?;
    Ok((AccessHandle(Arc::new(access)), rx))
}
