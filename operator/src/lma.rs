//! gRPC channels to the LMAs and MAGs. Channels are lazy and cached per URL; where the URL of
//! a domain's LMA or of a node's MAG comes from is pluggable, so tests point it at a fake.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use proto::v1::binding_cache_client::BindingCacheClient;
use proto::v1::gateway_client::GatewayClient;
use proto::v1::policy_client::PolicyClient;
use tonic::transport::{Channel, Endpoint};

type UrlFn = Box<dyn Fn(&str, &str) -> String + Send + Sync>;

/// Makes clients for the daemons' gRPC APIs.
pub struct Connector {
    /// (namespace, domain) -> URL of the LMA API.
    lma_url: UrlFn,
    /// (namespace, MAG pod IP) -> URL of the MAG API.
    mag_url: UrlFn,
    channels: Mutex<HashMap<String, Channel>>,
    timeout: Duration,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Connector {
    /// In the cluster: the LMA through its Service, a MAG at its pod (host) address.
    pub fn in_cluster() -> Self {
        Self::new(
            crate::render::lma_service_url,
            |_ns, ip| match ip.parse::<std::net::IpAddr>() {
                Ok(std::net::IpAddr::V6(a)) => format!("http://[{a}]:{}", proto::GRPC_PORT),
                _ => format!("http://{ip}:{}", proto::GRPC_PORT),
            },
        )
    }

    pub fn new(
        lma_url: impl Fn(&str, &str) -> String + Send + Sync + 'static,
        mag_url: impl Fn(&str, &str) -> String + Send + Sync + 'static,
    ) -> Self {
        Self {
            lma_url: Box::new(lma_url),
            mag_url: Box::new(mag_url),
            channels: Mutex::default(),
            timeout: Duration::from_secs(10),
        }
    }

    fn channel(&self, url: &str) -> Result<Channel, tonic::Status> {
        let mut c = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(ch) = c.get(url) {
            return Ok(ch.clone());
        }
        let ch = Endpoint::from_shared(url.to_string())
            .map_err(|e| tonic::Status::invalid_argument(format!("{url}: {e}")))?
            .connect_timeout(Duration::from_secs(3))
            .timeout(self.timeout)
            .connect_lazy();
        c.insert(url.to_string(), ch.clone());
        Ok(ch)
    }

    /// A channel without the per-call timeout, for Watch streams.
    pub fn lma_stream_channel(&self, ns: &str, domain: &str) -> Result<Channel, tonic::Status> {
        let url = (self.lma_url)(ns, domain);
        Ok(Endpoint::from_shared(url.clone())
            .map_err(|e| tonic::Status::invalid_argument(format!("{url}: {e}")))?
            .connect_timeout(Duration::from_secs(3))
            .http2_keep_alive_interval(Duration::from_secs(30))
            .connect_lazy())
    }

    pub fn lma_url(&self, ns: &str, domain: &str) -> String {
        (self.lma_url)(ns, domain)
    }

    pub fn binding_cache(
        &self,
        ns: &str,
        domain: &str,
    ) -> Result<BindingCacheClient<Channel>, tonic::Status> {
        Ok(BindingCacheClient::new(
            self.channel(&(self.lma_url)(ns, domain))?,
        ))
    }

    pub fn policy(&self, ns: &str, domain: &str) -> Result<PolicyClient<Channel>, tonic::Status> {
        Ok(PolicyClient::new(
            self.channel(&(self.lma_url)(ns, domain))?,
        ))
    }

    pub fn gateway(
        &self,
        ns: &str,
        mag_pod_ip: &str,
    ) -> Result<GatewayClient<Channel>, tonic::Status> {
        Ok(GatewayClient::new(
            self.channel(&(self.mag_url)(ns, mag_pod_ip))?,
        ))
    }
}
