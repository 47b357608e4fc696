//! gRPC channels to the LMAs and MAGs. Channels are lazy and cached per URL and certificate;
//! where a domain's LMA or a node's MAG is reached is pluggable, so tests point it at a fake.
//! A domain whose TLS material is known ([`Connector::set_tls`]) is reached over TLS with the
//! domain's certificate as the client certificate, each daemon's certificate checked against
//! the name the domain's PKI gives it ([`crate::render::lma_service_host`],
//! [`crate::render::mag_tls_name`]).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use proto::v1::binding_cache_client::BindingCacheClient;
use proto::v1::gateway_client::GatewayClient;
use proto::v1::policy_client::PolicyClient;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::pki::Material;
use crate::render::{lma_service_host, mag_tls_name};

type AddrFn = Box<dyn Fn(&str, &str) -> String + Send + Sync>;

/// Makes clients for the daemons' gRPC APIs.
pub struct Connector {
    /// (namespace, domain) -> `host:port` of the LMA API.
    lma_addr: AddrFn,
    /// (namespace, MAG pod IP) -> `host:port` of the MAG API.
    mag_addr: AddrFn,
    /// TLS material by (namespace, domain).
    tls: Mutex<HashMap<(String, String), Material>>,
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
            |ns, domain| format!("{}:{}", lma_service_host(ns, domain), proto::GRPC_PORT),
            |_ns, ip| match ip.parse::<std::net::IpAddr>() {
                Ok(std::net::IpAddr::V6(a)) => format!("[{a}]:{}", proto::GRPC_PORT),
                _ => format!("{ip}:{}", proto::GRPC_PORT),
            },
        )
    }

    /// With where the LMAs ((namespace, domain) -> `host:port`) and the MAGs ((namespace,
    /// pod IP) -> `host:port`) are reached.
    pub fn new(
        lma_addr: impl Fn(&str, &str) -> String + Send + Sync + 'static,
        mag_addr: impl Fn(&str, &str) -> String + Send + Sync + 'static,
    ) -> Self {
        Self {
            lma_addr: Box::new(lma_addr),
            mag_addr: Box::new(mag_addr),
            tls: Mutex::default(),
            channels: Mutex::default(),
            timeout: Duration::from_secs(10),
        }
    }

    /// The domain's TLS material, or `None` for plain HTTP/2.
    pub fn set_tls(&self, ns: &str, domain: &str, material: Option<Material>) {
        let mut t = self.tls.lock().unwrap_or_else(|e| e.into_inner());
        let key = (ns.to_string(), domain.to_string());
        match material {
            Some(m) => t.insert(key, m),
            None => t.remove(&key),
        };
    }

    /// Whether the domain's TLS material is known.
    pub fn has_tls(&self, ns: &str, domain: &str) -> bool {
        self.material(ns, domain).is_some()
    }

    fn material(&self, ns: &str, domain: &str) -> Option<Material> {
        self.tls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(ns.to_string(), domain.to_string()))
            .cloned()
    }

    /// The endpoint of `authority` in a domain, over TLS when the domain has its material,
    /// the certificate checked against `server_name`; and the key to cache its channel under.
    fn endpoint(
        &self,
        ns: &str,
        domain: &str,
        authority: &str,
        server_name: String,
    ) -> Result<(Endpoint, String), tonic::Status> {
        let tls = self.material(ns, domain);
        let scheme = if tls.is_some() { "https" } else { "http" };
        let url = format!("{scheme}://{authority}");
        let bad = |e: tonic::transport::Error| {
            tonic::Status::invalid_argument(format!("{url}: {}", causes(&e)))
        };
        let mut e = Endpoint::from_shared(url.clone()).map_err(bad)?;
        let mut key = url.clone();
        if let Some(m) = tls {
            key.push('#');
            key.push_str(&crate::render::config_hash(&m.cert));
            e = e
                .tls_config(
                    ClientTlsConfig::new()
                        .ca_certificate(Certificate::from_pem(&m.ca))
                        .identity(Identity::from_pem(&m.cert, &m.key))
                        .domain_name(server_name),
                )
                .map_err(bad)?;
        }
        Ok((e.connect_timeout(Duration::from_secs(3)), key))
    }

    fn channel(
        &self,
        ns: &str,
        domain: &str,
        authority: &str,
        server_name: String,
    ) -> Result<Channel, tonic::Status> {
        let (e, key) = self.endpoint(ns, domain, authority, server_name)?;
        let mut c = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(ch) = c.get(&key) {
            return Ok(ch.clone());
        }
        let ch = e.timeout(self.timeout).connect_lazy();
        c.insert(key, ch.clone());
        Ok(ch)
    }

    fn lma_channel(&self, ns: &str, domain: &str) -> Result<Channel, tonic::Status> {
        self.channel(
            ns,
            domain,
            &(self.lma_addr)(ns, domain),
            lma_service_host(ns, domain),
        )
    }

    /// A channel without the per-call timeout, for Watch streams.
    pub fn lma_stream_channel(&self, ns: &str, domain: &str) -> Result<Channel, tonic::Status> {
        let (e, _) = self.endpoint(
            ns,
            domain,
            &(self.lma_addr)(ns, domain),
            lma_service_host(ns, domain),
        )?;
        Ok(e.http2_keep_alive_interval(Duration::from_secs(30))
            .connect_lazy())
    }

    /// The LMA's URL, for messages.
    pub fn lma_url(&self, ns: &str, domain: &str) -> String {
        let scheme = if self.material(ns, domain).is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", (self.lma_addr)(ns, domain))
    }

    pub fn binding_cache(
        &self,
        ns: &str,
        domain: &str,
    ) -> Result<BindingCacheClient<Channel>, tonic::Status> {
        Ok(BindingCacheClient::new(self.lma_channel(ns, domain)?))
    }

    pub fn policy(&self, ns: &str, domain: &str) -> Result<PolicyClient<Channel>, tonic::Status> {
        Ok(PolicyClient::new(self.lma_channel(ns, domain)?))
    }

    /// The MAG of `domain` at pod (host) address `mag_pod_ip`.
    pub fn gateway(
        &self,
        ns: &str,
        domain: &str,
        mag_pod_ip: &str,
    ) -> Result<GatewayClient<Channel>, tonic::Status> {
        Ok(GatewayClient::new(self.channel(
            ns,
            domain,
            &(self.mag_addr)(ns, mag_pod_ip),
            mag_tls_name(ns, domain),
        )?))
    }
}

/// An error with its causes, one after the other.
fn causes(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut next = e.source();
    while let Some(c) = next {
        s.push_str(": ");
        s.push_str(&c.to_string());
        next = c.source();
    }
    s
}
