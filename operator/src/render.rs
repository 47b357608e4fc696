//! Pure translation of a MobilityDomain into the daemons' configuration files (`pmip::config`)
//! and into the typed Kubernetes objects that run them. No IO: the reconciler applies them.
//!
//! # How the pods run (the privilege model)
//!
//! Both daemons run in the node's network namespace (`hostNetwork`), as root: the LMA's and
//! the MAGs' addresses are their nodes' addresses, and a non-root container gets no added
//! capability in its effective set under containerd or CRI-O (Kubernetes has no ambient
//! capabilities), so the capabilities are given to UID 0 and everything else is dropped:
//! `NET_ADMIN` (routes, rules, tunnels, addresses) and `NET_RAW` (the Mobility Header and
//! access-link raw sockets), `readOnlyRootFilesystem`, no privilege escalation, the runtime's
//! seccomp profile, no service account token. `/proc/sys` is read-only in such a container,
//! so the sysctls the datapath needs are set by whoever `spec.sysctls` names: by default a
//! privileged init container running the same daemon with `--set-sysctls` (as Cilium's
//! agent does), or the daemon itself run privileged, or the node's own configuration. Lab mode
//! MAGs create namespaces and set sysctls in them: they run privileged. A hostNetwork pod
//! needs a namespace whose Pod Security level is `privileged` ([`POD_SECURITY_LEVEL`]).
//! A daemon that may open a TUN device (the MAG's fast-handover buffer; the userspace tunnel
//! runs on veth pairs and needs none) gets the node's
//! `/dev/net/tun` as a `CharDevice` hostPath volume ([`needs_tun_device`]): the runtime's
//! default device rules allow the device but do not create it in the container.
//!
//! # On secondary networks (Multus)
//!
//! A daemon whose `networks` are given runs in its own pod network namespace instead, with
//! the `k8s.v1.cni.cncf.io/networks` annotation asking Multus for its attachments. Its address
//! is its Transport attachment's: a static IPv6 address from the spec, else what the
//! `k8s.v1.cni.cncf.io/network-status` annotation (mounted through the downward API) or the
//! attachment's interface shows. The sysctls are the pod's own (`securityContext.sysctls`,
//! [`pod_sysctls`]): no privileged init container, but the kubelet must allow them
//! (`--allowed-unsafe-sysctls`, none is in the safe set), and Pod Security `baseline` refuses
//! them as it refuses NET_ADMIN. Such pods share a node with any other domain's.

use std::collections::BTreeMap;
use std::net::{Ipv6Addr, SocketAddr};

use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::{
    DaemonSet, DaemonSetSpec, DaemonSetUpdateStrategy, Deployment, DeploymentSpec,
    DeploymentStrategy, RollingUpdateDaemonSet,
};
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, ConfigMap, ConfigMapVolumeSource, Container, ContainerPort,
    DownwardAPIVolumeFile, DownwardAPIVolumeSource, EmptyDirVolumeSource, EnvVar, EnvVarSource,
    GRPCAction, HostPathVolumeSource, KeyToPath, NodeAffinity, NodeSelector,
    NodeSelectorRequirement, NodeSelectorTerm, ObjectFieldSelector, PersistentVolumeClaim,
    PersistentVolumeClaimSpec, PersistentVolumeClaimVolumeSource, PodAffinityTerm, PodAntiAffinity,
    PodSecurityContext, PodSpec, PodTemplateSpec, Probe, ResourceRequirements, SeccompProfile,
    Secret, SecretVolumeSource, SecurityContext, Service, ServicePort, ServiceSpec, Sysctl, Volume,
    VolumeMount, VolumeResourceRequirements, WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use pmip::config::{
    ApiConfig, ClientTlsConfig, ConfigError, DatapathConfig, DatapathMode as CfgDatapathMode,
    DomainConfig, EspAlgorithm, FastHandoverConfig, FastHandoverMode as CfgFastHandoverMode,
    HeartbeatConfig, IpsecConfig, IpsecMode, Ipv4Pool, LinkLocalMode, LmaConfig, LmaTimers,
    MagConfig, MagTimers, PrefixPool, ReplayProtection as CfgReplay, RevocationConfig, TlsConfig,
};
use pmip::types::LinkLayerAddress;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::crd::{
    DatapathMode, EspAlgorithmSpec, FastHandoverMode, IpsecModeSpec,
    LinkLocalMode as CrdLinkLocalMode, MobilityDomain, MobilityDomainSpec, NetworkAttachment,
    NetworkRole, ReplayProtection, SysctlSetter,
};

/// Port of the daemons' gRPC API (and of the LMA Service).
pub const GRPC_PORT: u16 = proto::GRPC_PORT;
/// Port of the daemons' plain-text gRPC health listener (`api.health_listen`): the kubelet's
/// gRPC probes cannot do TLS.
pub const HEALTH_PORT: u16 = GRPC_PORT + 1;
/// Port of the daemons' `/metrics`.
pub const METRICS_PORT: u16 = proto::METRICS_PORT;
/// Where the ConfigMap is mounted in the daemon pods.
pub const CONFIG_DIR: &str = "/etc/pmip/config";
/// Where the domain's TLS Secret is mounted (`tls.crt`, `tls.key`, `ca.crt`).
pub const TLS_DIR: &str = "/etc/pmip/tls";
/// Where the domain's SA Secret is mounted.
pub const IPSEC_DIR: &str = "/etc/pmip/ipsec";
/// The LMA's state directory (its PersistentVolumeClaim).
pub const STATE_DIR: &str = "/var/lib/pmip";
/// Label carrying the MobilityDomain name on everything the operator creates.
pub const DOMAIN_LABEL: &str = "pmip.io/domain";
/// `app.kubernetes.io/component`: `lma` or `mag`.
pub const COMPONENT_LABEL: &str = "app.kubernetes.io/component";
/// Pod template annotation holding the hash of the daemon's configuration (and of its TLS
/// certificate), so a changed configuration or a renewed certificate rolls the pods.
pub const CONFIG_HASH_ANNOTATION: &str = "pmip.io/config-hash";
/// The field manager of the operator's server-side applies.
pub const FIELD_MANAGER: &str = "pmip-operator";
/// The Pod Security Standards level the namespace of a domain must allow: its pods use the
/// host's network namespace (and, by default, a privileged init container), which `baseline`
/// forbids.
pub const POD_SECURITY_LEVEL: &str = "privileged";
/// The name of the init container that sets the sysctls.
pub const SYSCTL_INIT_CONTAINER: &str = "sysctls";
/// Where the pod's own annotations are mounted (downward API) for a daemon on secondary
/// networks.
pub const PODINFO_DIR: &str = "/etc/pmip/podinfo";
/// The file in [`PODINFO_DIR`] holding the `k8s.v1.cni.cncf.io/network-status` annotation.
pub const NETWORK_STATUS_FILE: &str = "network-status";
pub use pmip::config::{NETWORK_STATUS_ANNOTATION, NETWORKS_ANNOTATION};

/// Object names derived from a domain name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    pub config_map: String,
    pub lma: String,
    pub lma_state: String,
    pub mag: String,
    /// The domain's CA (certificate and key): only the operator reads it.
    pub ca: String,
    /// The daemons' certificate, its key and the CA certificate (`kubernetes.io/tls`).
    pub tls: String,
    /// The ESP master key: only the operator reads it.
    pub ipsec_master: String,
    /// The SAs derived from it, mounted in every daemon.
    pub ipsec: String,
}

impl Names {
    pub fn of(domain: &str) -> Self {
        Self {
            config_map: format!("pmip-{domain}"),
            lma: format!("pmip-{domain}-lma"),
            lma_state: format!("pmip-{domain}-lma-state"),
            mag: format!("pmip-{domain}-mag"),
            ca: format!("pmip-{domain}-ca"),
            tls: format!("pmip-{domain}-tls"),
            ipsec_master: format!("pmip-{domain}-ipsec-master"),
            ipsec: format!("pmip-{domain}-ipsec"),
        }
    }
}

/// The DNS name of a domain's LMA Service, which its certificate carries.
pub fn lma_service_host(namespace: &str, domain: &str) -> String {
    format!("{}.{namespace}.svc", Names::of(domain).lma)
}

/// The name the MAGs' certificate is checked against: they are reached by address, and the
/// domain's one certificate carries this name for them.
pub fn mag_tls_name(namespace: &str, domain: &str) -> String {
    format!("{}.{namespace}.svc", Names::of(domain).mag)
}

/// The URL of a domain's LMA gRPC API inside the cluster (its Service).
pub fn lma_service_url(namespace: &str, domain: &str, tls: bool) -> String {
    let scheme = if tls { "https" } else { "http" };
    format!(
        "{scheme}://{}:{GRPC_PORT}",
        lma_service_host(namespace, domain)
    )
}

fn err(field: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::new(field, reason)
}

/// The domain-wide settings (RFC 5213 §9.3) shared by the LMA and the MAGs. `access_points`
/// are already resolved to proxy-CoAs.
pub fn domain_config(
    spec: &MobilityDomainSpec,
    access_points: BTreeMap<String, Ipv6Addr>,
) -> Result<DomainConfig, ConfigError> {
    let l = &spec.lma;
    let ll: LinkLayerAddress = l
        .link_local
        .link_layer_address
        .parse()
        .map_err(|e| err("lma.linkLocal.linkLayerAddress", format!("{e}")))?;
    let link_local = match l.link_local.mode {
        CrdLinkLocalMode::Fixed => LinkLocalMode::Fixed {
            address: match &l.link_local.address {
                Some(a) => a.parse().map_err(|_| {
                    err(
                        "lma.linkLocal.address",
                        format!("{a} is not an IPv6 address"),
                    )
                })?,
                None => Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1),
            },
            link_layer_address: ll,
        },
        CrdLinkLocalMode::LmaGenerated => LinkLocalMode::LmaGenerated {
            link_layer_address: ll,
        },
    };
    let fh = FastHandoverConfig {
        mode: match l.fast_handover.mode {
            FastHandoverMode::Off => CfgFastHandoverMode::Off,
            FastHandoverMode::Predictive => CfgFastHandoverMode::Predictive,
            FastHandoverMode::Reactive => CfgFastHandoverMode::Reactive,
        },
        access_points,
        buffer_packets: l.fast_handover.buffer_packets,
        handover_timeout_ms: l.fast_handover.handover_timeout_ms,
        end_marker_wait_ms: l.fast_handover.end_marker_wait_ms,
        ..FastHandoverConfig::default()
    };
    Ok(DomainConfig {
        replay_protection: match l.replay_protection {
            ReplayProtection::Timestamp => CfgReplay::Timestamp,
            ReplayProtection::SequenceNumber => CfgReplay::SequenceNumber,
        },
        mobile_node_generated_timestamp: false,
        link_local,
        enable_mag_local_routing: l.local_routing,
        heartbeat: HeartbeatConfig {
            interval_s: l.heartbeat.interval_seconds,
            missing_allowed: l.heartbeat.missing_allowed,
        },
        fast_handover: fh,
    })
}

fn datapath(spec: &MobilityDomainSpec) -> DatapathConfig {
    DatapathConfig {
        mode: match spec.lma.datapath.mode {
            DatapathMode::Auto => CfgDatapathMode::Auto,
            DatapathMode::Seg6 => CfgDatapathMode::Seg6,
            DatapathMode::Ip6tnl => CfgDatapathMode::Ip6tnl,
            DatapathMode::Tun => CfgDatapathMode::Tun,
            DatapathMode::None => CfgDatapathMode::None,
        },
        link_mtu: spec.lma.transport.link_mtu,
        ..DatapathConfig::default()
    }
}

/// The daemons' API: TLS with client certificates from the domain's CA unless the domain
/// turns it off, and the plain-text health listener the probes use.
/// The daemons' `ipsec` section: the mode, and the SA file the operator writes.
fn ipsec_config(spec: &MobilityDomainSpec) -> IpsecConfig {
    let mode = match spec.ipsec.mode {
        IpsecModeSpec::Off => return IpsecConfig::default(),
        IpsecModeSpec::Userspace => IpsecMode::Userspace,
        IpsecModeSpec::Kernel => IpsecMode::Kernel,
        IpsecModeSpec::Auto => IpsecMode::Auto,
    };
    IpsecConfig {
        mode,
        security_associations_file: Some(
            format!("{IPSEC_DIR}/{}", crate::esp_keys::SA_FILE_FIELD).into(),
        ),
        ..IpsecConfig::default()
    }
}

/// The configuration's name of the domain's ESP transform.
pub fn esp_algorithm(spec: &MobilityDomainSpec) -> EspAlgorithm {
    match spec.ipsec.algorithm {
        EspAlgorithmSpec::Aes128Gcm => EspAlgorithm::Aes128Gcm,
        EspAlgorithmSpec::Aes256Gcm => EspAlgorithm::Aes256Gcm,
        EspAlgorithmSpec::Aes128CbcHmacSha256 => EspAlgorithm::Aes128CbcHmacSha256,
        EspAlgorithmSpec::Aes256CbcHmacSha256 => EspAlgorithm::Aes256CbcHmacSha256,
    }
}

fn api(spec: &MobilityDomainSpec) -> ApiConfig {
    ApiConfig {
        tls: spec.tls.enabled.then(|| TlsConfig {
            cert: format!("{TLS_DIR}/tls.crt").into(),
            key: format!("{TLS_DIR}/tls.key").into(),
            client_ca: Some(format!("{TLS_DIR}/ca.crt").into()),
        }),
        health_listen: Some(SocketAddr::from((Ipv6Addr::UNSPECIFIED, HEALTH_PORT))),
        ..ApiConfig::default()
    }
}

/// The LMA's configuration file. Its address is left out: the daemon takes it from
/// `PMIP_LMA_ADDRESS` (the downward API's `status.hostIPs`). Profiles and authorized MAGs come
/// over the API, not in the file.
pub fn lma_config(
    name: &str,
    spec: &MobilityDomainSpec,
    access_points: BTreeMap<String, Ipv6Addr>,
) -> Result<LmaConfig, ConfigError> {
    check_networks(spec)?;
    let l = &spec.lma;
    let mut pools = Vec::new();
    for (i, p) in l.prefix_pools.iter().enumerate() {
        pools.push(PrefixPool {
            prefix: p.prefix.parse().map_err(|_| {
                err(
                    &format!("lma.prefixPools[{i}].prefix"),
                    format!("{} is not an IPv6 prefix", p.prefix),
                )
            })?,
            prefix_length: p.prefix_length,
        });
    }
    let mut ipv4_pools = Vec::new();
    for (i, p) in l.ipv4_pools.iter().enumerate() {
        ipv4_pools.push(Ipv4Pool {
            prefix: p.prefix.parse().map_err(|_| {
                err(
                    &format!("lma.ipv4Pools[{i}].prefix"),
                    format!("{} is not an IPv4 prefix", p.prefix),
                )
            })?,
            default_router: p
                .default_router
                .as_deref()
                .map(|r| {
                    r.parse().map_err(|_| {
                        err(
                            &format!("lma.ipv4Pools[{i}].defaultRouter"),
                            format!("{r} is not an IPv4 address"),
                        )
                    })
                })
                .transpose()?,
        });
    }
    let cfg = LmaConfig {
        name: format!("{name}-lma"),
        address: Ipv6Addr::UNSPECIFIED,
        domain: domain_config(spec, access_points)?,
        prefix_pools: pools,
        ipv4_pools,
        timers: LmaTimers {
            min_delay_before_bce_delete_ms: l.timers.min_delay_before_bce_delete_ms,
            max_delay_before_new_bce_assign_ms: l.timers.max_delay_before_new_bce_assign_ms,
            timestamp_validity_window_ms: l.timers.timestamp_validity_window_ms,
            max_binding_lifetime_s: l.timers.max_binding_lifetime_seconds,
        },
        revocation: RevocationConfig {
            max_retries: l.revocation.max_retries,
            initial_delay_ms: l.revocation.initial_delay_ms,
            max_timeout_ms: l.revocation.max_timeout_ms,
        },
        authorized_mags: Vec::new(),
        mobile_nodes: Vec::new(),
        datapath: datapath(spec),
        state_dir: STATE_DIR.into(),
        api: api(spec),
        metrics: Default::default(),
        tracing: Default::default(),
        ipsec: ipsec_config(spec),
        refused_nodes_kept: pmip::config::DEFAULT_REFUSED_NODES_KEPT,
    };
    // Validate as the daemon will, with a stand-in for the address it learns at start.
    let mut check = cfg.clone();
    check.address = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
    check.validate()?;
    Ok(cfg)
}

/// A MAG's configuration file (the same for every MAG of the domain: the proxy-CoA comes from
/// `PMIP_PROXY_COA`, the name from `PMIP_NODE_NAME`).
pub fn mag_config(
    namespace: &str,
    name: &str,
    spec: &MobilityDomainSpec,
    lma_address: Ipv6Addr,
    access_points: BTreeMap<String, Ipv6Addr>,
) -> Result<MagConfig, ConfigError> {
    let m = &spec.mags;
    let tls = spec.tls.enabled;
    let cfg = MagConfig {
        name: format!("{name}-mag"),
        proxy_coa: Ipv6Addr::UNSPECIFIED,
        lma_address,
        domain: domain_config(spec, access_points)?,
        access_interfaces: access_interfaces(spec),
        timers: MagTimers {
            initial_bindack_timeout_ms: m.initial_bindack_timeout_ms,
            requested_lifetime_s: m.requested_lifetime_seconds,
            ..MagTimers::default()
        },
        router_advertisement: Default::default(),
        neighbor_unreachability: Default::default(),
        mobile_nodes: Vec::new(),
        policy_server: Some(lma_service_url(namespace, name, tls)),
        policy_server_tls: tls.then(|| ClientTlsConfig {
            ca: format!("{TLS_DIR}/ca.crt").into(),
            cert: Some(format!("{TLS_DIR}/tls.crt").into()),
            key: Some(format!("{TLS_DIR}/tls.key").into()),
            server_name: None,
        }),
        datapath: datapath(spec),
        state_dir: STATE_DIR.into(),
        api: api(spec),
        metrics: Default::default(),
        tracing: Default::default(),
        ipsec: ipsec_config(spec),
    };
    let mut check = cfg.clone();
    check.proxy_coa = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);
    if check.proxy_coa == check.lma_address {
        check.proxy_coa = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 3);
    }
    check.validate()?;
    Ok(cfg)
}

/// The MAGs' access interfaces: the spec's names and patterns and the interfaces of their
/// Access attachments.
pub fn access_interfaces(spec: &MobilityDomainSpec) -> Vec<String> {
    let mut v = spec.mags.access_interfaces.clone();
    for n in &spec.mags.networks {
        if n.role == NetworkRole::Access && !v.contains(&n.interface) {
            v.push(n.interface.clone());
        }
    }
    v
}

/// The `networks` rules of the CRD's schema and CEL, checked again by the reconciler (an
/// object stored before them, or written past them, gets a condition naming the field).
pub fn check_networks(spec: &MobilityDomainSpec) -> Result<(), ConfigError> {
    for (field, nets) in [
        ("spec.lma.networks", &spec.lma.networks),
        ("spec.mags.networks", &spec.mags.networks),
    ] {
        for (i, n) in nets.iter().enumerate() {
            let f = format!("{field}[{i}]");
            let ifname = &n.interface;
            if ifname.is_empty()
                || ifname.len() > 15
                || ifname == "eth0"
                || ifname == "lo"
                || ifname.contains(['/', ' ', '.', ':'])
            {
                return Err(err(
                    &format!("{f}.interface"),
                    format!(
                        "{ifname:?} cannot name an attachment's interface (1 to 15 bytes, not eth0 or lo)"
                    ),
                ));
            }
            if nets.iter().filter(|o| &o.interface == ifname).count() > 1 {
                return Err(err(
                    &format!("{f}.interface"),
                    format!("{ifname} is named twice"),
                ));
            }
            for ip in &n.ips {
                if ip.parse::<ipnet::IpNet>().is_err() {
                    return Err(err(
                        &format!("{f}.ips"),
                        format!("{ip} is not an address with a prefix length"),
                    ));
                }
            }
        }
        let transports = nets
            .iter()
            .filter(|n| n.role == NetworkRole::Transport)
            .count();
        let accesses = nets.len() - transports;
        let lma = field == "spec.lma.networks";
        if !nets.is_empty() && transports != 1 {
            return Err(err(field, "exactly one Transport attachment is needed"));
        }
        if lma && accesses > 0 {
            return Err(err(
                field,
                "the LMA attaches to one network, its Transport one",
            ));
        }
        if !lma && !nets.is_empty() && accesses == 0 {
            return Err(err(field, "MAGs need at least one Access attachment"));
        }
        if !lma && nets.iter().any(|n| !n.ips.is_empty()) {
            return Err(err(
                field,
                "static ips would give every MAG of the DaemonSet the same address",
            ));
        }
        if lma
            && nets
                .iter()
                .any(|n| !n.ips.is_empty() && static_ipv6(n).is_empty())
        {
            return Err(err(
                field,
                "the static ips of the LMA's transport attachment must hold a global IPv6 address",
            ));
        }
    }
    Ok(())
}

/// The daemon's secondary networks (empty: host network).
pub fn networks(md: &MobilityDomain, component: Component) -> &[NetworkAttachment] {
    match component {
        Component::Lma => &md.spec.lma.networks,
        Component::Mag => &md.spec.mags.networks,
    }
}

/// Whether the daemon runs on the host network: when it is given no secondary network.
pub fn on_host_network(md: &MobilityDomain, component: Component) -> bool {
    networks(md, component).is_empty()
}

/// The daemon's Transport attachment, when it is on secondary networks.
pub fn transport_attachment(
    md: &MobilityDomain,
    component: Component,
) -> Option<&NetworkAttachment> {
    networks(md, component)
        .iter()
        .find(|n| n.role == NetworkRole::Transport)
}

/// `namespace/name` of an attachment's network, as Multus names it in `network-status`.
pub fn network_key(md: &MobilityDomain, n: &NetworkAttachment) -> String {
    let ns = n
        .namespace
        .as_deref()
        .or(md.metadata.namespace.as_deref())
        .unwrap_or("default");
    format!("{ns}/{}", n.name)
}

/// The static IPv6 addresses of an attachment (its `ips` without their prefix lengths).
pub fn static_ipv6(n: &NetworkAttachment) -> Vec<Ipv6Addr> {
    n.ips
        .iter()
        .filter_map(|i| i.split('/').next()?.parse::<Ipv6Addr>().ok())
        .filter(pmip::config::is_global_unicast)
        .collect()
}

/// The `k8s.v1.cni.cncf.io/networks` annotation: the attachments as Multus network selection
/// elements (JSON), or `None` on the host network.
pub fn networks_annotation(md: &MobilityDomain, component: Component) -> Option<String> {
    #[derive(Serialize)]
    struct Selection<'a> {
        name: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        namespace: Option<&'a str>,
        interface: &'a str,
        #[serde(skip_serializing_if = "<[String]>::is_empty")]
        ips: &'a [String],
    }
    let nets = networks(md, component);
    if nets.is_empty() {
        return None;
    }
    let v: Vec<Selection<'_>> = nets
        .iter()
        .map(|n| Selection {
            name: &n.name,
            namespace: n.namespace.as_deref(),
            interface: &n.interface,
            ips: &n.ips,
        })
        .collect();
    serde_json::to_string(&v).ok()
}

/// The `net.*` sysctls a daemon on its own pod network namespace sets with the pod's
/// `securityContext.sysctls` (what the init container sets on the host network): IPv6 and
/// IPv4 forwarding, and for seg6 `seg6_enabled` on `all`, `default` and the transport
/// interface. Empty on the host network, where the pod cannot set them, for a privileged
/// daemon (it sets them itself) and without a datapath.
pub fn pod_sysctls(md: &MobilityDomain, component: Component) -> Vec<(String, String)> {
    let Some(transport) = transport_attachment(md, component) else {
        return Vec::new();
    };
    if runs_privileged(md, component) || md.spec.lma.datapath.mode == DatapathMode::None {
        return Vec::new();
    }
    let mut v = vec![
        ("net.ipv6.conf.all.forwarding", "1".to_string()),
        ("net.ipv4.ip_forward", "1".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect::<Vec<_>>();
    if matches!(
        md.spec.lma.datapath.mode,
        DatapathMode::Auto | DatapathMode::Seg6
    ) {
        for dev in ["all", "default", transport.interface.as_str()] {
            v.push((format!("net.ipv6.conf.{dev}.seg6_enabled"), "1".into()));
        }
    }
    v
}

/// Short, stable hash of a configuration text.
pub fn config_hash(text: &str) -> String {
    let d = Sha256::digest(text.as_bytes());
    hex_prefix(&d, 16)
}

fn hex_prefix(bytes: &[u8], n: usize) -> String {
    bytes
        .iter()
        .take(n / 2)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The first global unicast IPv6 address of a comma-separated or listed set, as the daemons
/// pick it from `PMIP_LMA_ADDRESS` / `PMIP_PROXY_COA`.
pub fn first_global_ipv6<'a>(addrs: impl IntoIterator<Item = &'a str>) -> Option<Ipv6Addr> {
    addrs
        .into_iter()
        .flat_map(|s| s.split(','))
        .filter_map(|s| s.trim().parse::<Ipv6Addr>().ok())
        .find(|a| {
            !(a.is_unspecified()
                || a.is_loopback()
                || a.is_multicast()
                || a.segments()[0] & 0xffc0 == 0xfe80)
        })
}

/// Labels of everything created for a domain's component.
pub fn labels(domain: &str, component: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".into(), format!("pmip-{component}")),
        ("app.kubernetes.io/instance".into(), domain.into()),
        ("app.kubernetes.io/part-of".into(), "pmip".into()),
        (
            "app.kubernetes.io/managed-by".into(),
            "pmip-operator".into(),
        ),
        (COMPONENT_LABEL.into(), component.into()),
        (DOMAIN_LABEL.into(), domain.into()),
    ])
}

fn selector(domain: &str, component: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (DOMAIN_LABEL.into(), domain.into()),
        (COMPONENT_LABEL.into(), component.into()),
    ])
}

/// Image and pull policy for a domain's daemons.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    pub reference: String,
    pub pull_policy: String,
}

impl Image {
    /// The domain's `spec.image` over the operator's own image.
    pub fn for_domain(md: &MobilityDomain, default_image: &str, default_policy: &str) -> Self {
        let (repo, tag) = match default_image.rsplit_once(':') {
            Some((r, t)) if !t.contains('/') => (r.to_string(), t.to_string()),
            _ => (default_image.to_string(), "latest".to_string()),
        };
        let i = &md.spec.image;
        Self {
            reference: format!(
                "{}:{}",
                i.repository.clone().unwrap_or(repo),
                i.tag.clone().unwrap_or(tag)
            ),
            pull_policy: i
                .pull_policy
                .clone()
                .unwrap_or_else(|| default_policy.into()),
        }
    }
}

/// The owner reference every object of a domain carries. `blockOwnerDeletion` needs the
/// `update` right on `mobilitydomains/finalizers` where OwnerReferencesPermissionEnforcement
/// is on (the chart's RBAC has it).
pub fn owner_ref(md: &MobilityDomain) -> OwnerReference {
    OwnerReference {
        api_version: format!("{}/{}", crate::crd::GROUP, crate::crd::VERSION),
        kind: "MobilityDomain".into(),
        name: domain_name(md).into(),
        uid: md.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

fn meta(md: &MobilityDomain, name: &str, component: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: md.metadata.namespace.clone(),
        labels: Some(labels(domain_name(md), component)),
        owner_references: Some(vec![owner_ref(md)]),
        ..ObjectMeta::default()
    }
}

fn domain_name(md: &MobilityDomain) -> &str {
    md.metadata.name.as_deref().unwrap_or_default()
}

/// The ConfigMap with `lma.yaml` and, once the LMA address is known, `mag.yaml`.
pub fn config_map(md: &MobilityDomain, lma_yaml: &str, mag_yaml: Option<&str>) -> ConfigMap {
    let n = Names::of(domain_name(md));
    let mut data = BTreeMap::from([("lma.yaml".to_string(), lma_yaml.to_string())]);
    if let Some(m) = mag_yaml {
        data.insert("mag.yaml".into(), m.into());
    }
    ConfigMap {
        metadata: meta(md, &n.config_map, "config"),
        data: Some(data),
        ..ConfigMap::default()
    }
}

/// A Secret of the domain with these fields.
fn secret(md: &MobilityDomain, name: &str, type_: &str, fields: &[(&str, &[u8])]) -> Secret {
    Secret {
        metadata: meta(md, name, "tls"),
        type_: Some(type_.into()),
        data: Some(
            fields
                .iter()
                .map(|(k, v)| (k.to_string(), ByteString(v.to_vec())))
                .collect(),
        ),
        ..Secret::default()
    }
}

/// The domain's CA (certificate and key), read only by the operator.
pub fn ca_secret(md: &MobilityDomain, cert_pem: &str, key_pem: &str) -> Secret {
    let n = Names::of(domain_name(md));
    secret(
        md,
        &n.ca,
        "Opaque",
        &[
            (crate::pki::CA_CERT, cert_pem.as_bytes()),
            (crate::pki::CA_KEY, key_pem.as_bytes()),
        ],
    )
}

/// The daemons' certificate and key and the CA's certificate, mounted at [`TLS_DIR`].
pub fn tls_secret(md: &MobilityDomain, ca_pem: &str, cert_pem: &str, key_pem: &str) -> Secret {
    let n = Names::of(domain_name(md));
    secret(
        md,
        &n.tls,
        "kubernetes.io/tls",
        &[
            (crate::pki::CA_CERT, ca_pem.as_bytes()),
            (crate::pki::TLS_CERT, cert_pem.as_bytes()),
            (crate::pki::TLS_KEY, key_pem.as_bytes()),
        ],
    )
}

/// The domain's ESP master key (hex), read only by the operator.
pub fn ipsec_master_secret(md: &MobilityDomain, master: &[u8]) -> Secret {
    let n = Names::of(domain_name(md));
    let hex = pmip::config::KeyMaterial::new(master.to_vec()).to_hex();
    secret(
        md,
        &n.ipsec_master,
        "Opaque",
        &[(crate::esp_keys::MASTER_FIELD, hex.as_bytes())],
    )
}

/// The domain's SA file (every daemon's entries, each with its `local` address), mounted at
/// [`IPSEC_DIR`] in every daemon.
pub fn ipsec_secret(md: &MobilityDomain, sa_yaml: &str) -> Secret {
    let n = Names::of(domain_name(md));
    secret(
        md,
        &n.ipsec,
        "Opaque",
        &[(crate::esp_keys::SA_FILE_FIELD, sa_yaml.as_bytes())],
    )
}

/// The LMA's state volume.
pub fn lma_pvc(md: &MobilityDomain) -> PersistentVolumeClaim {
    let n = Names::of(domain_name(md));
    let s = &md.spec.lma.storage;
    PersistentVolumeClaim {
        metadata: meta(md, &n.lma_state, "lma"),
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_string(),
                    Quantity(s.size.clone()),
                )])),
                ..VolumeResourceRequirements::default()
            }),
            storage_class_name: s.storage_class_name.clone(),
            ..PersistentVolumeClaimSpec::default()
        }),
        ..PersistentVolumeClaim::default()
    }
}

fn service_port(name: &str, port: u16, app_protocol: Option<&str>) -> ServicePort {
    ServicePort {
        name: Some(name.into()),
        port: i32::from(port),
        target_port: Some(IntOrString::Int(i32::from(port))),
        protocol: Some("TCP".into()),
        app_protocol: app_protocol.map(str::to_string),
        ..ServicePort::default()
    }
}

/// The Service in front of the LMA's gRPC API, its health listener and its metrics.
pub fn lma_service(md: &MobilityDomain) -> Service {
    let d = domain_name(md);
    let n = Names::of(d);
    Service {
        metadata: meta(md, &n.lma, "lma"),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            ip_family_policy: Some("PreferDualStack".into()),
            selector: Some(selector(d, "lma")),
            ports: Some(vec![
                service_port("grpc", GRPC_PORT, Some("grpc")),
                service_port("health", HEALTH_PORT, Some("grpc")),
                service_port("metrics", METRICS_PORT, None),
            ]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// The two daemons.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Component {
    Lma,
    Mag,
}

impl Component {
    /// The label value and container name.
    pub fn name(self) -> &'static str {
        match self {
            Component::Lma => "lma",
            Component::Mag => "mag",
        }
    }

    fn program(self) -> String {
        format!("/usr/local/bin/pmip-{}", self.name())
    }

    fn config_file(self) -> String {
        format!("{CONFIG_DIR}/{}.yaml", self.name())
    }

    /// The gRPC health service name that says the daemon is ready.
    pub fn health_service(self) -> &'static str {
        match self {
            Component::Lma => proto::service_names::BINDING_CACHE,
            Component::Mag => proto::service_names::GATEWAY,
        }
    }

    /// The variable the daemon takes its address from.
    fn address_env(self) -> &'static str {
        match self {
            Component::Lma => "PMIP_LMA_ADDRESS",
            Component::Mag => "PMIP_PROXY_COA",
        }
    }

    /// Requests and limits when the domain gives none.
    fn default_resources(self) -> ResourceRequirements {
        match self {
            Component::Lma => resources("100m", "128Mi", "1Gi"),
            Component::Mag => resources("50m", "64Mi", "256Mi"),
        }
    }
}

fn resources(cpu: &str, memory: &str, memory_limit: &str) -> ResourceRequirements {
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_string(), Quantity(cpu.into())),
            ("memory".to_string(), Quantity(memory.into())),
        ])),
        limits: Some(BTreeMap::from([(
            "memory".to_string(),
            Quantity(memory_limit.into()),
        )])),
        ..ResourceRequirements::default()
    }
}

/// Env var from the downward API.
fn field_env(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.into(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

fn env(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        ..EnvVar::default()
    }
}

fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: read_only.then_some(true),
        ..VolumeMount::default()
    }
}

fn grpc_probe(service: Option<&str>, period: i32, failures: i32) -> Probe {
    Probe {
        grpc: Some(GRPCAction {
            port: i32::from(HEALTH_PORT),
            service: service.map(str::to_string),
            ..GRPCAction::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        ..Probe::default()
    }
}

/// Whether a daemon container runs privileged: when the domain says so, and for lab-mode
/// MAGs (they make network namespaces and set sysctls inside them).
pub fn runs_privileged(md: &MobilityDomain, component: Component) -> bool {
    md.spec.sysctls == SysctlSetter::Privileged || (component == Component::Mag && md.spec.mags.lab)
}

/// Whether the daemon container of `component` gets the node's `/dev/net/tun`: only the MAG
/// with fast handovers, whose packet buffer is a TUN device. The userspace tunnel (the `Tun`
/// datapath, and `Auto` on a kernel with neither seg6 nor ip6tnl) runs on veth pairs and
/// packet sockets, which need no device node. A privileged container has the node's devices
/// already.
pub fn needs_tun_device(md: &MobilityDomain, component: Component) -> bool {
    !runs_privileged(md, component)
        && component == Component::Mag
        && md.spec.lma.fast_handover.mode != FastHandoverMode::Off
}

/// Whether the pods of `component` get the privileged init container that sets the sysctls.
pub fn has_sysctl_init(md: &MobilityDomain, component: Component) -> bool {
    md.spec.sysctls == SysctlSetter::InitContainer
        && on_host_network(md, component)
        && !runs_privileged(md, component)
        && md.spec.lma.datapath.mode != DatapathMode::None
}

fn daemon_security(privileged: bool) -> SecurityContext {
    if privileged {
        // The API server refuses allowPrivilegeEscalation: false beside privileged: true.
        SecurityContext {
            privileged: Some(true),
            run_as_user: Some(0),
            run_as_non_root: Some(false),
            read_only_root_filesystem: Some(true),
            ..SecurityContext::default()
        }
    } else {
        SecurityContext {
            privileged: Some(false),
            allow_privilege_escalation: Some(false),
            run_as_user: Some(0),
            run_as_non_root: Some(false),
            read_only_root_filesystem: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                add: Some(vec!["NET_ADMIN".into(), "NET_RAW".into()]),
            }),
            ..SecurityContext::default()
        }
    }
}

/// Where the daemon takes its address from. On the host network: `status.hostIPs`, the
/// node's addresses (the daemon takes the first global IPv6). On secondary networks: the
/// transport attachment's static address, else the attachment (its `network-status` entry,
/// or its interface) named to the daemon.
fn address_env(md: &MobilityDomain, component: Component) -> Vec<EnvVar> {
    let Some(t) = transport_attachment(md, component) else {
        return vec![field_env(component.address_env(), "status.hostIPs")];
    };
    let mut v = Vec::new();
    let fixed = static_ipv6(t);
    if !fixed.is_empty() {
        let list: Vec<String> = fixed.iter().map(Ipv6Addr::to_string).collect();
        v.push(env(component.address_env(), list.join(",")));
    }
    v.push(env(
        "PMIP_NETWORK_STATUS",
        format!("{PODINFO_DIR}/{NETWORK_STATUS_FILE}"),
    ));
    v.push(env("PMIP_TRANSPORT_NETWORK", network_key(md, t)));
    v.push(env("PMIP_TRANSPORT_INTERFACE", t.interface.clone()));
    v
}

/// The daemon's environment: its address and name from the downward API, and what `pmipctl`
/// in the container needs to reach the daemons (`kubectl exec ... -- pmipctl bindings list`).
fn daemon_env(md: &MobilityDomain, component: Component) -> Vec<EnvVar> {
    let ns = md.metadata.namespace.as_deref().unwrap_or_default();
    let tls = md.spec.tls.enabled;
    let scheme = if tls { "https" } else { "http" };
    let mut v = address_env(md, component);
    v.push(field_env("PMIP_NODE_NAME", "spec.nodeName"));
    v.push(env("RUST_LOG", "info"));
    let own = format!("{scheme}://[::1]:{GRPC_PORT}");
    match component {
        Component::Lma => v.push(env("PMIP_LMA", own)),
        Component::Mag => {
            v.push(env("PMIP_MAG", own));
            v.push(env("PMIP_LMA", lma_service_url(ns, domain_name(md), tls)));
        }
    }
    if tls {
        v.push(env("PMIP_CA", format!("{TLS_DIR}/ca.crt")));
        v.push(env("PMIP_CERT", format!("{TLS_DIR}/tls.crt")));
        v.push(env("PMIP_KEY", format!("{TLS_DIR}/tls.key")));
    }
    v
}

/// What a rendered pod template depends on besides the domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodInputs<'a> {
    pub image: &'a Image,
    /// Hash of the daemon's configuration and certificate ([`config_hash`]).
    pub config_hash: &'a str,
}

/// The pod of `component`: on the host network, as root with NET_ADMIN and NET_RAW (or
/// privileged where [`runs_privileged`] says), its configuration, TLS files and state mounted,
/// probes on the plain-text health listener.
pub fn daemon_pod(md: &MobilityDomain, component: Component, inputs: &PodInputs<'_>) -> PodSpec {
    let n = Names::of(domain_name(md));
    let privileged = runs_privileged(md, component);
    let name = component.name();
    let config_key = format!("{name}.yaml");
    let mut volumes = vec![Volume {
        name: "config".into(),
        config_map: Some(ConfigMapVolumeSource {
            name: n.config_map.clone(),
            items: Some(vec![KeyToPath {
                key: config_key.clone(),
                path: config_key,
                ..KeyToPath::default()
            }]),
            ..ConfigMapVolumeSource::default()
        }),
        ..Volume::default()
    }];
    let mut mounts = vec![
        mount("config", CONFIG_DIR, true),
        mount("state", STATE_DIR, false),
    ];
    volumes.push(match component {
        Component::Lma => Volume {
            name: "state".into(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: n.lma_state.clone(),
                ..PersistentVolumeClaimVolumeSource::default()
            }),
            ..Volume::default()
        },
        Component::Mag => Volume {
            name: "state".into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        },
    });
    if md.spec.tls.enabled {
        volumes.push(Volume {
            name: "tls".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(n.tls.clone()),
                // Keys are for root's eyes only.
                default_mode: Some(0o400),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        });
        mounts.push(mount("tls", TLS_DIR, true));
    }
    if md.spec.ipsec.mode != IpsecModeSpec::Off {
        volumes.push(Volume {
            name: "ipsec".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(n.ipsec.clone()),
                default_mode: Some(0o400),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        });
        mounts.push(mount("ipsec", IPSEC_DIR, true));
    }
    if !on_host_network(md, component) {
        // The network-status annotation Multus writes, kept current by the kubelet.
        volumes.push(Volume {
            name: "podinfo".into(),
            downward_api: Some(DownwardAPIVolumeSource {
                items: Some(vec![DownwardAPIVolumeFile {
                    path: NETWORK_STATUS_FILE.into(),
                    field_ref: Some(ObjectFieldSelector {
                        field_path: format!("metadata.annotations['{NETWORK_STATUS_ANNOTATION}']"),
                        ..ObjectFieldSelector::default()
                    }),
                    ..DownwardAPIVolumeFile::default()
                }]),
                ..DownwardAPIVolumeSource::default()
            }),
            ..Volume::default()
        });
        mounts.push(mount("podinfo", PODINFO_DIR, true));
    }
    if needs_tun_device(md, component) {
        // The runtime's default device rules allow /dev/net/tun but do not create it in the
        // container.
        volumes.push(Volume {
            name: "tun".into(),
            host_path: Some(HostPathVolumeSource {
                path: "/dev/net/tun".into(),
                type_: Some("CharDevice".into()),
            }),
            ..Volume::default()
        });
        mounts.push(mount("tun", "/dev/net/tun", false));
    }
    if component == Component::Mag && md.spec.mags.lab {
        // Lab mode: emulated nodes live in network namespaces the MAG creates and names.
        volumes.push(Volume {
            name: "netns".into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        });
        mounts.push(mount("netns", "/run/netns", false));
    }
    let daemon_resources = match component {
        Component::Lma => md.spec.resources.lma.clone(),
        Component::Mag => md.spec.resources.mag.clone(),
    }
    .unwrap_or_else(|| component.default_resources());
    let container = Container {
        name: name.into(),
        image: Some(inputs.image.reference.clone()),
        image_pull_policy: Some(inputs.image.pull_policy.clone()),
        command: Some(vec![component.program()]),
        args: Some(vec!["--config".into(), component.config_file()]),
        env: Some(daemon_env(md, component)),
        ports: Some(vec![
            container_port("grpc", GRPC_PORT),
            container_port("health", HEALTH_PORT),
            container_port("metrics", METRICS_PORT),
        ]),
        // The standard gRPC health service on the plain-text listener: the process (""), and
        // the component's main service once it is ready (see proto/).
        startup_probe: Some(grpc_probe(None, 2, 30)),
        liveness_probe: Some(grpc_probe(None, 10, 3)),
        readiness_probe: Some(grpc_probe(Some(component.health_service()), 5, 3)),
        security_context: Some(daemon_security(privileged)),
        resources: Some(daemon_resources.clone()),
        volume_mounts: Some(mounts),
        ..Container::default()
    };
    // The init container reads the same configuration file, which names the TLS files (they
    // are checked when it is read).
    let mut init_mounts = vec![
        mount("config", CONFIG_DIR, true),
        mount("state", STATE_DIR, false),
    ];
    if md.spec.tls.enabled {
        init_mounts.push(mount("tls", TLS_DIR, true));
    }
    let init_containers = has_sysctl_init(md, component).then(|| {
        vec![Container {
            name: SYSCTL_INIT_CONTAINER.into(),
            image: Some(inputs.image.reference.clone()),
            image_pull_policy: Some(inputs.image.pull_policy.clone()),
            command: Some(vec![component.program()]),
            args: Some(vec![
                "--config".into(),
                component.config_file(),
                "--set-sysctls".into(),
            ]),
            // The address tells the daemon which link is the transport link.
            env: Some(vec![
                field_env(component.address_env(), "status.hostIPs"),
                field_env("PMIP_NODE_NAME", "spec.nodeName"),
            ]),
            // /proc/sys is writable only in a privileged container.
            security_context: Some(daemon_security(true)),
            // The daemon's: the pod asks for no more than its daemon does (its request is the
            // larger of the two), and a namespace quota that wants limits the domain sets
            // (spec.resources) finds them here too.
            resources: Some(daemon_resources.clone()),
            // The state volume: the values found are recorded there, for --cleanup.
            volume_mounts: Some(init_mounts),
            ..Container::default()
        }]
    });
    let (node_selector, tolerations, priority) = match component {
        Component::Lma => (
            &md.spec.lma.node_selector,
            &md.spec.lma.tolerations,
            &md.spec.lma.priority_class_name,
        ),
        Component::Mag => (
            &md.spec.mags.node_selector,
            &md.spec.mags.tolerations,
            &md.spec.mags.priority_class_name,
        ),
    };
    let host = on_host_network(md, component);
    let sysctls = pod_sysctls(md, component);
    PodSpec {
        host_network: host.then_some(true),
        dns_policy: host.then(|| "ClusterFirstWithHostNet".into()),
        enable_service_links: Some(false),
        // The daemons do not talk to the Kubernetes API.
        automount_service_account_token: Some(false),
        termination_grace_period_seconds: Some(30),
        priority_class_name: (!priority.is_empty()).then(|| priority.clone()),
        security_context: Some(PodSecurityContext {
            run_as_user: Some(0),
            run_as_non_root: Some(false),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".into(),
                ..SeccompProfile::default()
            }),
            sysctls: (!sysctls.is_empty()).then(|| {
                sysctls
                    .into_iter()
                    .map(|(name, value)| Sysctl { name, value })
                    .collect()
            }),
            ..PodSecurityContext::default()
        }),
        init_containers,
        containers: vec![container],
        volumes: Some(volumes),
        node_selector: (!node_selector.is_empty()).then(|| node_selector.clone()),
        tolerations: (!tolerations.is_empty()).then(|| tolerations.clone()),
        ..PodSpec::default()
    }
}

fn container_port(name: &str, port: u16) -> ContainerPort {
    ContainerPort {
        name: Some(name.into()),
        container_port: i32::from(port),
        protocol: Some("TCP".into()),
        ..ContainerPort::default()
    }
}

fn template(
    md: &MobilityDomain,
    component: Component,
    inputs: &PodInputs<'_>,
    affinity: Affinity,
) -> PodTemplateSpec {
    let mut spec = daemon_pod(md, component, inputs);
    spec.affinity = Some(affinity);
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(labels(domain_name(md), component.name())),
            annotations: Some({
                let mut a = BTreeMap::from([(
                    CONFIG_HASH_ANNOTATION.to_string(),
                    inputs.config_hash.to_string(),
                )]);
                if let Some(n) = networks_annotation(md, component) {
                    a.insert(NETWORKS_ANNOTATION.to_string(), n);
                }
                a
            }),
            ..ObjectMeta::default()
        }),
        spec: Some(spec),
    }
}

/// The LMA: one replica on the host network, its state on a PVC. It prefers a node without a
/// MAG of its domain; the MAGs are kept off its node by the DaemonSet's node affinity
/// ([`mag_daemonset`]). A required anti-affinity here would leave a rescheduled LMA Pending
/// for good once every other node runs a MAG.
pub fn lma_deployment(md: &MobilityDomain, inputs: &PodInputs<'_>) -> Deployment {
    let d = domain_name(md);
    let n = Names::of(d);
    // Only two daemons on the host network share the node's address and ports.
    let both_on_host = on_host_network(md, Component::Lma) && on_host_network(md, Component::Mag);
    let affinity = Affinity {
        pod_anti_affinity: both_on_host.then(|| PodAntiAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(vec![
                WeightedPodAffinityTerm {
                    weight: 100,
                    pod_affinity_term: PodAffinityTerm {
                        label_selector: Some(LabelSelector {
                            match_labels: Some(selector(d, "mag")),
                            ..LabelSelector::default()
                        }),
                        topology_key: "kubernetes.io/hostname".into(),
                        ..PodAffinityTerm::default()
                    },
                },
            ]),
            ..PodAntiAffinity::default()
        }),
        ..Affinity::default()
    };
    Deployment {
        metadata: meta(md, &n.lma, "lma"),
        spec: DeploymentSpec {
            replicas: Some(1),
            // One LMA at a time: it owns the host's Mobility Header socket and the PVC.
            strategy: Some(DeploymentStrategy {
                type_: Some("Recreate".into()),
                ..DeploymentStrategy::default()
            }),
            selector: LabelSelector {
                match_labels: Some(selector(d, "lma")),
                ..LabelSelector::default()
            },
            template: template(md, Component::Lma, inputs, affinity),
            ..DeploymentSpec::default()
        },
        ..Deployment::default()
    }
}

/// The MAGs: one per selected node, on the host network, never on the node that runs the
/// domain's LMA (`lma_node`): both would have the node's address, ports and route tables. The
/// node is excluded by a node affinity, which the DaemonSet controller honours when it counts
/// the nodes that should run a MAG, so `desiredNumberScheduled` leaves it out and the domain
/// becomes Ready with no selector on a cluster of two nodes or more.
pub fn mag_daemonset(
    md: &MobilityDomain,
    inputs: &PodInputs<'_>,
    lma_node: Option<&str>,
) -> DaemonSet {
    let d = domain_name(md);
    let n = Names::of(d);
    let both_on_host = on_host_network(md, Component::Lma) && on_host_network(md, Component::Mag);
    let affinity = Affinity {
        node_affinity: lma_node.filter(|_| both_on_host).map(|node| NodeAffinity {
            required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                node_selector_terms: vec![NodeSelectorTerm {
                    match_fields: Some(vec![NodeSelectorRequirement {
                        key: "metadata.name".into(),
                        operator: "NotIn".into(),
                        values: Some(vec![node.to_string()]),
                    }]),
                    ..NodeSelectorTerm::default()
                }],
            }),
            ..NodeAffinity::default()
        }),
        ..Affinity::default()
    };
    DaemonSet {
        metadata: meta(md, &n.mag, "mag"),
        spec: DaemonSetSpec {
            selector: LabelSelector {
                match_labels: Some(selector(d, "mag")),
                ..LabelSelector::default()
            },
            update_strategy: Some(DaemonSetUpdateStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDaemonSet {
                    max_unavailable: Some(IntOrString::Int(1)),
                    ..RollingUpdateDaemonSet::default()
                }),
            }),
            template: template(md, Component::Mag, inputs, affinity),
            ..DaemonSetSpec::default()
        },
        ..DaemonSet::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::domain;

    fn image() -> Image {
        Image {
            reference: "ghcr.io/pmip-io/pmip:0.1.0".into(),
            pull_policy: "IfNotPresent".into(),
        }
    }

    fn inputs(img: &Image) -> PodInputs<'_> {
        PodInputs {
            image: img,
            config_hash: "abc",
        }
    }

    #[test]
    fn lma_config_round_trips_and_keeps_rfc_defaults() {
        let md = domain("lab");
        let cfg = lma_config("lab", &md.spec, BTreeMap::new()).unwrap();
        let yaml = serde_saphyr::to_string(&cfg).unwrap();
        let back: LmaConfig = serde_saphyr::from_str(&yaml).unwrap();
        assert_eq!(back, cfg);
        assert_eq!(back.timers, LmaTimers::default());
        assert_eq!(back.revocation, RevocationConfig::default());
        assert_eq!(back.domain.heartbeat, HeartbeatConfig::default());
        assert!(
            back.address.is_unspecified(),
            "the address comes from PMIP_LMA_ADDRESS"
        );
        // TLS with client certificates by default, and the plain-text health listener.
        let tls = back.api.tls.unwrap();
        assert_eq!(
            tls.client_ca.as_deref(),
            Some(std::path::Path::new("/etc/pmip/tls/ca.crt"))
        );
        assert_eq!(back.api.health_listen, Some("[::]:50052".parse().unwrap()));
    }

    #[test]
    fn mag_config_points_at_the_lma_and_its_policy_service() {
        let md = domain("lab");
        let lma: Ipv6Addr = "2001:db8:ffff::1".parse().unwrap();
        let aps = BTreeMap::from([("ap1".to_string(), "2001:db8::20".parse().unwrap())]);
        let cfg = mag_config("pmip", "lab", &md.spec, lma, aps).unwrap();
        let back: MagConfig =
            serde_saphyr::from_str(&serde_saphyr::to_string(&cfg).unwrap()).unwrap();
        assert_eq!(back.lma_address, lma);
        assert_eq!(
            back.policy_server.as_deref(),
            Some("https://pmip-lab-lma.pmip.svc:50051")
        );
        let tls = back.policy_server_tls.unwrap();
        assert!(tls.cert.is_some() && tls.key.is_some());
        assert_eq!(back.access_interfaces, vec!["pmip*".to_string()]);
        assert_eq!(back.domain.fast_handover.access_points.len(), 1);
        // Without TLS: plain URLs, no TLS sections.
        let mut plain = domain("lab");
        plain.spec.tls.enabled = false;
        let cfg = mag_config("pmip", "lab", &plain.spec, lma, BTreeMap::new()).unwrap();
        assert_eq!(
            cfg.policy_server.as_deref(),
            Some("http://pmip-lab-lma.pmip.svc:50051")
        );
        assert!(cfg.policy_server_tls.is_none() && cfg.api.tls.is_none());
    }

    #[test]
    fn invalid_domain_names_the_field() {
        let mut md = domain("lab");
        md.spec.lma.prefix_pools[0].prefix_length = 32; // shorter than the /48 pool
        let e = lma_config("lab", &md.spec, BTreeMap::new()).unwrap_err();
        assert_eq!(e.field, "prefix_pools[0].prefix_length");
        let mut md = domain("lab");
        md.spec.lma.prefix_pools[0].prefix = "not-a-prefix".into();
        let e = lma_config("lab", &md.spec, BTreeMap::new()).unwrap_err();
        assert_eq!(e.field, "lma.prefixPools[0].prefix");
    }

    #[test]
    fn ipv4_pools_reach_the_lma_and_bad_ones_name_the_field() {
        use crate::crd::Ipv4PoolSpec;
        let mut md = domain("lab");
        assert!(
            lma_config("lab", &md.spec, BTreeMap::new())
                .unwrap()
                .ipv4_pools
                .is_empty()
        );
        md.spec.lma.ipv4_pools = vec![
            Ipv4PoolSpec {
                prefix: "192.0.2.0/24".into(),
                default_router: None,
            },
            Ipv4PoolSpec {
                prefix: "198.51.100.0/28".into(),
                default_router: Some("198.51.100.14".into()),
            },
        ];
        let cfg = lma_config("lab", &md.spec, BTreeMap::new()).unwrap();
        assert_eq!(
            cfg.ipv4_pools,
            vec![
                Ipv4Pool {
                    prefix: "192.0.2.0/24".parse().unwrap(),
                    default_router: None,
                },
                Ipv4Pool {
                    prefix: "198.51.100.0/28".parse().unwrap(),
                    default_router: Some("198.51.100.14".parse().unwrap()),
                },
            ]
        );
        let back: LmaConfig =
            serde_saphyr::from_str(&serde_saphyr::to_string(&cfg).unwrap()).unwrap();
        assert_eq!(back.ipv4_pools, cfg.ipv4_pools);
        let mut bad = md.clone();
        bad.spec.lma.ipv4_pools[1].prefix = "198.51.100.0/33".into();
        let e = lma_config("lab", &bad.spec, BTreeMap::new()).unwrap_err();
        assert_eq!(e.field, "lma.ipv4Pools[1].prefix");
        let mut bad = md.clone();
        bad.spec.lma.ipv4_pools[1].default_router = Some("198.51.100.300".into());
        let e = lma_config("lab", &bad.spec, BTreeMap::new()).unwrap_err();
        assert_eq!(e.field, "lma.ipv4Pools[1].defaultRouter");
        // Overlapping pools: the daemon's own check, run here before the ConfigMap is written.
        let mut bad = md;
        bad.spec.lma.ipv4_pools[1].prefix = "192.0.2.0/25".into();
        bad.spec.lma.ipv4_pools[1].default_router = None;
        let e = lma_config("lab", &bad.spec, BTreeMap::new()).unwrap_err();
        assert_eq!(e.field, "ipv4_pools[1].prefix");
    }

    #[test]
    fn picks_first_global_ipv6() {
        assert_eq!(
            first_global_ipv6(["10.0.0.1,fe80::1,2001:db8::7,2001:db8::8"]),
            Some("2001:db8::7".parse().unwrap())
        );
        assert_eq!(first_global_ipv6(["10.0.0.1", "::1"]), None);
    }

    fn containers(pod: &PodSpec) -> Vec<&Container> {
        pod.init_containers
            .iter()
            .flatten()
            .chain(pod.containers.iter())
            .collect()
    }

    /// The default privilege model: the daemons as root with NET_ADMIN and NET_RAW only and
    /// nothing to escalate with, a privileged init container for the sysctls; probes on the
    /// health port; TLS files mounted; the MAGs kept off the LMA's node by node affinity.
    #[test]
    fn default_pods_run_as_the_privilege_model_says() {
        let md = domain("lab");
        let img = image();
        let dep = lma_deployment(&md, &inputs(&img));
        let pod = dep.spec.template.spec.unwrap();
        assert_eq!(pod.host_network, Some(true));
        assert_eq!(pod.automount_service_account_token, Some(false));
        assert_eq!(
            pod.priority_class_name.as_deref(),
            Some("system-cluster-critical")
        );
        let c = &pod.containers[0];
        let sc = c.security_context.as_ref().unwrap();
        assert_eq!(sc.privileged, Some(false));
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(sc.run_as_user, Some(0));
        let caps = sc.capabilities.as_ref().unwrap();
        assert_eq!(caps.drop.as_deref(), Some(&["ALL".to_string()][..]));
        assert_eq!(
            caps.add.as_deref(),
            Some(&["NET_ADMIN".to_string(), "NET_RAW".to_string()][..])
        );
        let init = &pod.init_containers.as_ref().unwrap()[0];
        assert_eq!(init.name, SYSCTL_INIT_CONTAINER);
        assert_eq!(
            init.security_context.as_ref().unwrap().privileged,
            Some(true)
        );
        assert!(
            init.args
                .as_ref()
                .unwrap()
                .contains(&"--set-sysctls".into())
        );
        for c in containers(&pod) {
            assert!(
                c.resources.as_ref().unwrap().requests.is_some(),
                "{}",
                c.name
            );
            assert!(c.resources.as_ref().unwrap().limits.is_some(), "{}", c.name);
        }
        let ready = c.readiness_probe.as_ref().unwrap().grpc.as_ref().unwrap();
        assert_eq!(ready.port, i32::from(HEALTH_PORT));
        assert_eq!(ready.service.as_deref(), Some("pmip.v1.BindingCache"));
        let env = c.env.as_ref().unwrap();
        let find = |n: &str| env.iter().find(|e| e.name == n).unwrap().clone();
        assert_eq!(
            find("PMIP_LMA_ADDRESS")
                .value_from
                .unwrap()
                .field_ref
                .unwrap()
                .field_path,
            "status.hostIPs"
        );
        assert_eq!(
            find("PMIP_LMA").value.as_deref(),
            Some("https://[::1]:50051")
        );
        assert_eq!(
            find("PMIP_CA").value.as_deref(),
            Some("/etc/pmip/tls/ca.crt")
        );
        let vols = pod.volumes.as_ref().unwrap();
        assert!(vols.iter().any(|v| v.persistent_volume_claim.is_some()));
        let tls = vols.iter().find(|v| v.name == "tls").unwrap();
        assert_eq!(
            tls.secret.as_ref().unwrap().secret_name.as_deref(),
            Some("pmip-lab-tls")
        );
        // The LMA prefers a node without a MAG; it does not require one.
        let anti = pod.affinity.unwrap().pod_anti_affinity.unwrap();
        assert!(
            anti.required_during_scheduling_ignored_during_execution
                .is_none()
        );
        assert_eq!(
            anti.preferred_during_scheduling_ignored_during_execution
                .unwrap()[0]
                .pod_affinity_term
                .topology_key,
            "kubernetes.io/hostname"
        );

        let ds = mag_daemonset(&md, &inputs(&img), Some("node-1"));
        let pod = ds.spec.template.spec.unwrap();
        assert_eq!(
            pod.priority_class_name.as_deref(),
            Some("system-node-critical")
        );
        let term = &pod
            .affinity
            .clone()
            .unwrap()
            .node_affinity
            .unwrap()
            .required_during_scheduling_ignored_during_execution
            .unwrap()
            .node_selector_terms[0];
        let f = &term.match_fields.as_ref().unwrap()[0];
        assert_eq!(
            (f.key.as_str(), f.operator.as_str(), f.values.clone()),
            ("metadata.name", "NotIn", Some(vec!["node-1".to_string()]))
        );
        // Auto may pick the userspace tunnel, which runs on veth pairs: no device, and no
        // host path at all (no fast handovers, no buffer).
        assert!(!has_tun_device(&pod), "MAG");
        assert!(pod.volumes.iter().flatten().all(|v| v.host_path.is_none()));
        assert!(
            !has_tun_device(&daemon_pod(&md, Component::Lma, &inputs(&img))),
            "LMA"
        );
    }

    /// The sysctl init container asks for what its daemon asks for: a quota that wants limits
    /// set through spec.resources finds them on every container of the pod.
    #[test]
    fn the_sysctl_init_container_has_its_daemons_resources() {
        let img = image();
        let mut md = crate::fixtures::domain("lab");
        let pod = daemon_pod(&md, Component::Mag, &inputs(&img));
        let init = &pod.init_containers.as_ref().expect("an init container")[0];
        assert_eq!(init.resources, pod.containers[0].resources);
        md.spec.resources.lma = Some(
            serde_json::from_value(serde_json::json!({
                "requests": {"cpu": "200m", "memory": "256Mi"},
                "limits": {"cpu": "1", "memory": "1Gi"}
            }))
            .unwrap(),
        );
        let pod = daemon_pod(&md, Component::Lma, &inputs(&img));
        let init = &pod.init_containers.as_ref().expect("an init container")[0];
        assert_eq!(init.resources, md.spec.resources.lma);
        assert_eq!(init.resources, pod.containers[0].resources);
    }

    /// Whether the daemon container (and only it) mounts the node's `/dev/net/tun`.
    fn has_tun_device(pod: &PodSpec) -> bool {
        let vol = pod
            .volumes
            .as_ref()
            .unwrap()
            .iter()
            .find(|v| v.name == "tun");
        let mounted = |c: &Container| {
            c.volume_mounts
                .as_ref()
                .is_some_and(|m| m.iter().any(|m| m.name == "tun"))
        };
        for init in pod.init_containers.iter().flatten() {
            assert!(!mounted(init), "{} mounts the TUN device", init.name);
        }
        let Some(vol) = vol else {
            assert!(!mounted(&pod.containers[0]), "a mount without its volume");
            return false;
        };
        let hp = vol.host_path.as_ref().unwrap();
        assert_eq!(
            (hp.path.as_str(), hp.type_.as_deref()),
            ("/dev/net/tun", Some("CharDevice"))
        );
        let m = pod.containers[0]
            .volume_mounts
            .as_ref()
            .unwrap()
            .iter()
            .find(|m| m.name == "tun")
            .expect("the TUN volume is mounted");
        assert_eq!(m.mount_path, "/dev/net/tun");
        assert_ne!(m.read_only, Some(true), "the device is opened read-write");
        true
    }

    #[test]
    fn the_tun_device_goes_where_a_tun_device_may_be_opened() {
        let img = image();
        let pods = |md: &MobilityDomain| {
            [Component::Lma, Component::Mag]
                .map(|c| has_tun_device(&daemon_pod(md, c, &inputs(&img))))
        };
        for (mode, fast, want) in [
            // The userspace tunnel runs on veth pairs: no device.
            (DatapathMode::Auto, false, [false, false]),
            (DatapathMode::Tun, false, [false, false]),
            (DatapathMode::Seg6, false, [false, false]),
            (DatapathMode::Ip6tnl, false, [false, false]),
            (DatapathMode::None, false, [false, false]),
            // The MAG's fast-handover buffer is a TUN device whatever the datapath.
            (DatapathMode::Seg6, true, [false, true]),
            (DatapathMode::None, true, [false, true]),
            (DatapathMode::Tun, true, [false, true]),
        ] {
            let mut md = domain("lab");
            md.spec.lma.datapath.mode = mode;
            if fast {
                md.spec.lma.fast_handover.mode = FastHandoverMode::Predictive;
            }
            assert_eq!(pods(&md), want, "{mode:?}, fast handovers {fast}");
            for c in [Component::Lma, Component::Mag] {
                assert_eq!(
                    needs_tun_device(&md, c),
                    want[usize::from(c == Component::Mag)]
                );
            }
        }
        // The Tun datapath reaches both daemons' configurations.
        let mut md = domain("lab");
        md.spec.lma.datapath.mode = DatapathMode::Tun;
        let lma = lma_config("lab", &md.spec, BTreeMap::new()).unwrap();
        assert_eq!(lma.datapath.mode, CfgDatapathMode::Tun);
        let mag = mag_config(
            "pmip",
            "lab",
            &md.spec,
            "2001:db8:ff::1".parse().unwrap(),
            BTreeMap::new(),
        )
        .unwrap();
        assert_eq!(mag.datapath.mode, CfgDatapathMode::Tun);
        // Its sysctls (forwarding) are set by the init container as for the others.
        assert!(has_sysctl_init(&md, Component::Lma));
        // A privileged container has the node's devices: no volume. Lab-mode MAGs run
        // privileged; their LMA does not.
        let mut md = domain("lab");
        md.spec.lma.datapath.mode = DatapathMode::Tun;
        md.spec.sysctls = SysctlSetter::Privileged;
        assert_eq!(pods(&md), [false, false]);
        let mut md = domain("lab");
        md.spec.lma.datapath.mode = DatapathMode::Tun;
        md.spec.lma.fast_handover.mode = FastHandoverMode::Predictive;
        md.spec.mags.lab = true;
        assert_eq!(pods(&md), [false, false]);
        md.spec.mags.lab = false;
        assert_eq!(pods(&md), [false, true]);
    }

    #[test]
    fn privileged_node_and_lab_modes() {
        let img = image();
        let mut md = domain("lab");
        md.spec.sysctls = SysctlSetter::Privileged;
        let pod = daemon_pod(&md, Component::Lma, &inputs(&img));
        assert!(pod.init_containers.is_none());
        let sc = pod.containers[0].security_context.clone().unwrap();
        assert_eq!(sc.privileged, Some(true));
        assert_eq!(
            sc.allow_privilege_escalation, None,
            "the API refuses false beside privileged"
        );

        md.spec.sysctls = SysctlSetter::Node;
        let pod = daemon_pod(&md, Component::Mag, &inputs(&img));
        assert!(pod.init_containers.is_none());
        assert_eq!(
            pod.containers[0]
                .security_context
                .clone()
                .unwrap()
                .privileged,
            Some(false)
        );

        // Lab mode: the MAG runs privileged whatever spec.sysctls says; the LMA does not.
        let mut md = domain("lab");
        md.spec.mags.lab = true;
        let pod = daemon_pod(&md, Component::Mag, &inputs(&img));
        assert!(pod.init_containers.is_none());
        assert_eq!(
            pod.containers[0]
                .security_context
                .clone()
                .unwrap()
                .privileged,
            Some(true)
        );
        assert!(
            daemon_pod(&md, Component::Lma, &inputs(&img))
                .init_containers
                .is_some()
        );

        // Fast handovers: the MAG gets the TUN device.
        let mut md = domain("lab");
        md.spec.lma.datapath.mode = DatapathMode::Seg6;
        md.spec.lma.fast_handover.mode = FastHandoverMode::Predictive;
        let pod = daemon_pod(&md, Component::Mag, &inputs(&img));
        assert!(has_tun_device(&pod));

        // No datapath: no sysctls, no init container.
        let mut md = domain("lab");
        md.spec.lma.datapath.mode = DatapathMode::None;
        assert!(
            daemon_pod(&md, Component::Lma, &inputs(&img))
                .init_containers
                .is_none()
        );

        // Empty priority class names mean none.
        let mut md = domain("lab");
        md.spec.lma.priority_class_name.clear();
        assert!(
            daemon_pod(&md, Component::Lma, &inputs(&img))
                .priority_class_name
                .is_none()
        );
    }

    /// Every object serializes to what the API expects (apiVersion, kind, owner reference with
    /// blockOwnerDeletion) and parses back.
    #[test]
    fn objects_serialize_with_kind_and_owner() {
        let md = domain("lab");
        let img = image();
        let values = [
            serde_json::to_value(config_map(&md, "a: 1", Some("b: 2"))).unwrap(),
            serde_json::to_value(lma_pvc(&md)).unwrap(),
            serde_json::to_value(lma_service(&md)).unwrap(),
            serde_json::to_value(lma_deployment(&md, &inputs(&img))).unwrap(),
            serde_json::to_value(mag_daemonset(&md, &inputs(&img), None)).unwrap(),
            serde_json::to_value(ca_secret(&md, "c", "k")).unwrap(),
            serde_json::to_value(tls_secret(&md, "a", "c", "k")).unwrap(),
        ];
        let kinds: Vec<&str> = values.iter().map(|v| v["kind"].as_str().unwrap()).collect();
        assert_eq!(
            kinds,
            [
                "ConfigMap",
                "PersistentVolumeClaim",
                "Service",
                "Deployment",
                "DaemonSet",
                "Secret",
                "Secret"
            ]
        );
        for v in &values {
            let o = &v["metadata"]["ownerReferences"][0];
            assert_eq!(o["kind"], "MobilityDomain");
            assert_eq!(o["uid"], "uid-md");
            assert_eq!(o["blockOwnerDeletion"], true);
            assert_eq!(v["metadata"]["namespace"], "pmip");
        }
        let svc = lma_service(&md);
        let ports: Vec<i32> = svc
            .spec
            .unwrap()
            .ports
            .unwrap()
            .iter()
            .map(|p| p.port)
            .collect();
        assert_eq!(ports, [50051, 50052, 9464]);
        assert_eq!(
            serde_json::to_value(lma_pvc(&md)).unwrap()["spec"]["resources"]["requests"]["storage"],
            "1Gi"
        );
    }

    fn on_networks() -> MobilityDomain {
        let mut md = domain("lab");
        md.spec.lma.networks = serde_json::from_value(serde_json::json!([
            {"name": "transport", "interface": "transport", "role": "Transport",
             "ips": ["2001:db8:ff::1/64"]}
        ]))
        .unwrap();
        md.spec.mags.networks = serde_json::from_value(serde_json::json!([
            {"name": "transport", "interface": "transport", "role": "Transport"},
            {"name": "access-a", "interface": "access0", "role": "Access"},
            {"name": "access-b", "namespace": "radio", "interface": "access1", "role": "Access"}
        ]))
        .unwrap();
        md
    }

    fn env_of(pod: &PodSpec, name: &str) -> Option<EnvVar> {
        pod.containers[0]
            .env
            .as_ref()
            .unwrap()
            .iter()
            .find(|e| e.name == name)
            .cloned()
    }

    /// On Multus attachments: no host network, the networks annotation, the pod's own
    /// sysctls instead of the privileged init container, the address from the static ips or
    /// the attachment, the network-status annotation mounted, and no node kept apart.
    #[test]
    fn pods_on_secondary_networks() {
        let md = on_networks();
        let img = image();
        let dep = lma_deployment(&md, &inputs(&img));
        let tpl = dep.spec.template;
        let ann = tpl.metadata.unwrap().annotations.unwrap();
        let nets: serde_json::Value = serde_json::from_str(&ann[NETWORKS_ANNOTATION]).unwrap();
        assert_eq!(
            nets,
            serde_json::json!([{"name": "transport", "interface": "transport",
                                "ips": ["2001:db8:ff::1/64"]}])
        );
        let pod = tpl.spec.unwrap();
        assert_eq!(pod.host_network, None);
        assert_eq!(pod.dns_policy, None);
        assert!(pod.init_containers.is_none(), "sysctls are the pod's own");
        assert!(pod.affinity.as_ref().unwrap().pod_anti_affinity.is_none());
        let sysctls: Vec<(String, String)> = pod
            .security_context
            .clone()
            .unwrap()
            .sysctls
            .unwrap()
            .into_iter()
            .map(|s| (s.name, s.value))
            .collect();
        let names: Vec<&str> = sysctls.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "net.ipv6.conf.all.forwarding",
                "net.ipv4.ip_forward",
                "net.ipv6.conf.all.seg6_enabled",
                "net.ipv6.conf.default.seg6_enabled",
                "net.ipv6.conf.transport.seg6_enabled"
            ]
        );
        assert!(sysctls.iter().all(|(_, v)| v == "1"));
        assert_eq!(
            env_of(&pod, "PMIP_LMA_ADDRESS").unwrap().value.as_deref(),
            Some("2001:db8:ff::1")
        );
        assert_eq!(
            env_of(&pod, "PMIP_TRANSPORT_NETWORK")
                .unwrap()
                .value
                .as_deref(),
            Some("pmip/transport")
        );
        let podinfo = pod
            .volumes
            .as_ref()
            .unwrap()
            .iter()
            .find(|v| v.name == "podinfo")
            .unwrap();
        assert_eq!(
            podinfo
                .downward_api
                .as_ref()
                .unwrap()
                .items
                .as_ref()
                .unwrap()[0]
                .field_ref
                .as_ref()
                .unwrap()
                .field_path,
            "metadata.annotations['k8s.v1.cni.cncf.io/network-status']"
        );

        let ds = mag_daemonset(&md, &inputs(&img), Some("node-1"));
        let pod = ds.spec.template.spec.unwrap();
        assert!(pod.affinity.as_ref().unwrap().node_affinity.is_none());
        assert!(
            env_of(&pod, "PMIP_PROXY_COA").is_none(),
            "no static MAG address"
        );
        assert_eq!(
            env_of(&pod, "PMIP_TRANSPORT_INTERFACE")
                .unwrap()
                .value
                .as_deref(),
            Some("transport")
        );
        let cfg = mag_config(
            "pmip",
            "lab",
            &md.spec,
            "2001:db8:ff::1".parse().unwrap(),
            BTreeMap::new(),
        )
        .unwrap();
        assert_eq!(cfg.access_interfaces, ["pmip*", "access0", "access1"]);

        // A privileged daemon sets its sysctls itself; without a datapath there are none.
        let mut p = on_networks();
        p.spec.sysctls = SysctlSetter::Privileged;
        assert!(pod_sysctls(&p, Component::Mag).is_empty());
        let mut p = on_networks();
        p.spec.lma.datapath.mode = DatapathMode::Ip6tnl;
        assert_eq!(pod_sysctls(&p, Component::Lma).len(), 2);
        // The TUN datapath needs forwarding only, and the device in its own network namespace.
        let mut p = on_networks();
        p.spec.lma.datapath.mode = DatapathMode::Tun;
        assert_eq!(
            pod_sysctls(&p, Component::Lma),
            [
                ("net.ipv6.conf.all.forwarding".to_string(), "1".to_string()),
                ("net.ipv4.ip_forward".to_string(), "1".to_string()),
            ]
        );
        let pod = daemon_pod(&p, Component::Lma, &inputs(&img));
        assert_eq!(pod.host_network, None);
        assert!(!has_tun_device(&pod), "veth pairs: no device");
        // The LMA on its attachment, the MAGs on the host network: they do not clash either.
        let mut p = on_networks();
        p.spec.mags.networks.clear();
        let pod = daemon_pod(&p, Component::Mag, &inputs(&img));
        assert_eq!(pod.host_network, Some(true));
        assert!(pod.init_containers.is_some());
        let ds = mag_daemonset(&p, &inputs(&img), Some("node-1"));
        assert!(
            ds.spec
                .template
                .spec
                .unwrap()
                .affinity
                .unwrap()
                .node_affinity
                .is_none()
        );
    }

    #[test]
    fn bad_networks_name_the_field() {
        for (lma, mags, field) in [
            (
                serde_json::json!([{"name": "t", "interface": "eth0", "role": "Transport"}]),
                serde_json::json!([]),
                "spec.lma.networks[0].interface",
            ),
            (
                serde_json::json!([{"name": "t", "interface": "t", "role": "Transport", "ips": ["10.0.0.1/24"]}]),
                serde_json::json!([]),
                "spec.lma.networks",
            ),
            (
                serde_json::json!([]),
                serde_json::json!([{"name": "t", "interface": "t", "role": "Transport"}]),
                "spec.mags.networks",
            ),
            (
                serde_json::json!([]),
                serde_json::json!([{"name": "t", "interface": "t", "role": "Transport"},
                                   {"name": "a", "interface": "t", "role": "Access"}]),
                "spec.mags.networks[0].interface",
            ),
        ] {
            let mut md = domain("lab");
            md.spec.lma.networks = serde_json::from_value(lma).unwrap();
            md.spec.mags.networks = serde_json::from_value(mags).unwrap();
            let e = lma_config("lab", &md.spec, BTreeMap::new()).unwrap_err();
            assert_eq!(e.field, field, "{e}");
        }
        lma_config("lab", &on_networks().spec, BTreeMap::new()).unwrap();
    }
}
