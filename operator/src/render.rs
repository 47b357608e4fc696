//! Pure translation of a MobilityDomain into the daemons' configuration files (`pmip::config`)
//! and into the Kubernetes objects that run them. No IO: the reconciler applies the output.

use std::collections::BTreeMap;
use std::net::Ipv6Addr;

use pmip::config::{
    ConfigError, DatapathConfig, DatapathMode as CfgDatapathMode, DomainConfig, FastHandoverConfig,
    FastHandoverMode as CfgFastHandoverMode, HeartbeatConfig, LinkLocalMode, LmaConfig, LmaTimers,
    MagConfig, MagTimers, PrefixPool, ReplayProtection as CfgReplay, RevocationConfig,
};
use pmip::types::LinkLayerAddress;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::crd::{
    DatapathMode, FastHandoverMode, LinkLocalMode as CrdLinkLocalMode, MobilityDomain,
    MobilityDomainSpec, ReplayProtection,
};

/// Port of the daemons' gRPC API (and of the LMA Service).
pub const GRPC_PORT: u16 = proto::GRPC_PORT;
/// Port of the daemons' `/metrics`.
pub const METRICS_PORT: u16 = proto::METRICS_PORT;
/// Where the ConfigMap is mounted in the daemon pods.
pub const CONFIG_DIR: &str = "/etc/pmip";
/// The LMA's state directory (its PersistentVolumeClaim).
pub const STATE_DIR: &str = "/var/lib/pmip";
/// Label carrying the MobilityDomain name on everything the operator creates.
pub const DOMAIN_LABEL: &str = "pmip.io/domain";
/// `app.kubernetes.io/component`: `lma` or `mag`.
pub const COMPONENT_LABEL: &str = "app.kubernetes.io/component";
/// Pod template annotation holding the hash of the daemon's configuration, so a changed
/// configuration rolls the pods.
pub const CONFIG_HASH_ANNOTATION: &str = "pmip.io/config-hash";
/// The field manager of the operator's server-side applies.
pub const FIELD_MANAGER: &str = "pmip-operator";

/// Object names derived from a domain name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    pub config_map: String,
    pub lma: String,
    pub lma_state: String,
    pub mag: String,
}

impl Names {
    pub fn of(domain: &str) -> Self {
        Self {
            config_map: format!("pmip-{domain}"),
            lma: format!("pmip-{domain}-lma"),
            lma_state: format!("pmip-{domain}-lma-state"),
            mag: format!("pmip-{domain}-mag"),
        }
    }
}

/// The URL of a domain's LMA gRPC API inside the cluster (its Service).
pub fn lma_service_url(namespace: &str, domain: &str) -> String {
    format!(
        "http://{}.{namespace}.svc:{GRPC_PORT}",
        Names::of(domain).lma
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
            DatapathMode::None => CfgDatapathMode::None,
        },
        link_mtu: spec.lma.transport.link_mtu,
        ..DatapathConfig::default()
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
    let cfg = LmaConfig {
        name: format!("{name}-lma"),
        address: Ipv6Addr::UNSPECIFIED,
        domain: domain_config(spec, access_points)?,
        prefix_pools: pools,
        ipv4_pools: Vec::new(),
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
        api: Default::default(),
        metrics: Default::default(),
        tracing: Default::default(),
        ipsec: Default::default(),
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
    let cfg = MagConfig {
        name: format!("{name}-mag"),
        proxy_coa: Ipv6Addr::UNSPECIFIED,
        lma_address,
        domain: domain_config(spec, access_points)?,
        access_interfaces: m.access_interfaces.clone(),
        timers: MagTimers {
            initial_bindack_timeout_ms: m.initial_bindack_timeout_ms,
            requested_lifetime_s: m.requested_lifetime_seconds,
            ..MagTimers::default()
        },
        router_advertisement: Default::default(),
        mobile_nodes: Vec::new(),
        policy_server: Some(lma_service_url(namespace, name)),
        policy_server_tls: None,
        datapath: datapath(spec),
        state_dir: STATE_DIR.into(),
        api: Default::default(),
        metrics: Default::default(),
        tracing: Default::default(),
        ipsec: Default::default(),
    };
    let mut check = cfg.clone();
    check.proxy_coa = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);
    if check.proxy_coa == check.lma_address {
        check.proxy_coa = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 3);
    }
    check.validate()?;
    Ok(cfg)
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

fn owner_ref(md: &MobilityDomain) -> Value {
    json!({
        "apiVersion": "pmip.io/v1alpha1",
        "kind": "MobilityDomain",
        "name": md.metadata.name,
        "uid": md.metadata.uid,
        "controller": true,
        "blockOwnerDeletion": true,
    })
}

fn meta(md: &MobilityDomain, name: &str, component: &str) -> Value {
    json!({
        "name": name,
        "namespace": md.metadata.namespace,
        "labels": labels(md.metadata.name.as_deref().unwrap_or_default(), component),
        "ownerReferences": [owner_ref(md)],
    })
}

fn domain_name(md: &MobilityDomain) -> &str {
    md.metadata.name.as_deref().unwrap_or_default()
}

/// The ConfigMap with `lma.yaml` and, once the LMA address is known, `mag.yaml`.
pub fn config_map(md: &MobilityDomain, lma_yaml: &str, mag_yaml: Option<&str>) -> Value {
    let n = Names::of(domain_name(md));
    let mut data = serde_json::Map::new();
    data.insert("lma.yaml".into(), lma_yaml.into());
    if let Some(m) = mag_yaml {
        data.insert("mag.yaml".into(), m.into());
    }
    json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": meta(md, &n.config_map, "config"),
        "data": data,
    })
}

/// The LMA's state volume.
pub fn lma_pvc(md: &MobilityDomain) -> Value {
    let n = Names::of(domain_name(md));
    let s = &md.spec.lma.storage;
    let mut spec = json!({
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": s.size}},
    });
    if let Some(class) = &s.storage_class_name {
        spec["storageClassName"] = class.clone().into();
    }
    json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": meta(md, &n.lma_state, "lma"),
        "spec": spec,
    })
}

/// The Service in front of the LMA's gRPC API (and metrics).
pub fn lma_service(md: &MobilityDomain) -> Value {
    let d = domain_name(md);
    let n = Names::of(d);
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": meta(md, &n.lma, "lma"),
        "spec": {
            "type": "ClusterIP",
            "ipFamilyPolicy": "PreferDualStack",
            "selector": {DOMAIN_LABEL: d, COMPONENT_LABEL: "lma"},
            "ports": [
                {"name": "grpc", "port": GRPC_PORT, "targetPort": GRPC_PORT, "protocol": "TCP", "appProtocol": "grpc"},
                {"name": "metrics", "port": METRICS_PORT, "targetPort": METRICS_PORT, "protocol": "TCP"},
            ],
        },
    })
}

/// Env var from the downward API.
fn field_env(name: &str, path: &str) -> Value {
    json!({"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}})
}

#[allow(clippy::too_many_arguments)]
fn daemon_container(
    component: &str,
    image: &Image,
    config_file: &str,
    env: Vec<Value>,
    caps: &[&str],
    resources: Option<&k8s_openapi::api::core::v1::ResourceRequirements>,
    health_service: &str,
    extra_mounts: Vec<Value>,
) -> Value {
    let mut mounts = vec![json!({"name": "config", "mountPath": CONFIG_DIR, "readOnly": true})];
    mounts.extend(extra_mounts);
    let mut c = json!({
        "name": component,
        "image": image.reference,
        "imagePullPolicy": image.pull_policy,
        "command": [format!("/usr/local/bin/pmip-{component}")],
        "args": ["--config", format!("{CONFIG_DIR}/{config_file}")],
        "env": env,
        "ports": [
            {"name": "grpc", "containerPort": GRPC_PORT, "protocol": "TCP"},
            {"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"},
        ],
        // The standard gRPC health service: the process, and the component's main service
        // once it is ready (see proto/).
        "livenessProbe": {"grpc": {"port": GRPC_PORT}, "periodSeconds": 10, "failureThreshold": 3},
        "readinessProbe": {"grpc": {"port": GRPC_PORT, "service": health_service}, "periodSeconds": 5},
        "startupProbe": {"grpc": {"port": GRPC_PORT}, "periodSeconds": 2, "failureThreshold": 30},
        "securityContext": {
            // Tunnels, routes and raw Mobility Header sockets need NET_ADMIN and NET_RAW in the
            // host's network namespace; nothing else.
            "privileged": false,
            "allowPrivilegeEscalation": false,
            "readOnlyRootFilesystem": true,
            "capabilities": {"drop": ["ALL"], "add": caps},
        },
        "volumeMounts": mounts,
    });
    if let Some(r) = resources {
        c["resources"] = serde_json::to_value(r).unwrap_or(Value::Null);
    }
    c
}

fn common_env(config_hash: &str) -> Vec<Value> {
    vec![
        field_env("PMIP_NODE_NAME", "spec.nodeName"),
        json!({"name": "PMIP_CONFIG_HASH", "value": config_hash}),
        json!({"name": "RUST_LOG", "value": "info"}),
    ]
}

/// Keeps a pod of `component` off the nodes that run `other` of the same domain. The LMA and
/// a MAG of one domain both use the host's network: on one node they would have the same
/// address (LMA address = proxy-CoA), the same ports and the same route tables. The scheduler
/// honours the rule from both sides, so whichever comes second waits (Pending, "didn't match
/// pod anti-affinity rules") instead of breaking the other.
fn apart_from(domain: &str, other: &str) -> Value {
    json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{
        "labelSelector": {"matchLabels": {DOMAIN_LABEL: domain, COMPONENT_LABEL: other}},
        "topologyKey": "kubernetes.io/hostname",
    }]}})
}

/// The LMA: one replica on the host network, its state on a PVC.
pub fn lma_deployment(md: &MobilityDomain, image: &Image, config_hash: &str) -> Value {
    let d = domain_name(md);
    let n = Names::of(d);
    let mut env = common_env(config_hash);
    // hostNetwork: status.hostIPs are the node's addresses; the daemon takes the first global IPv6.
    env.insert(0, field_env("PMIP_LMA_ADDRESS", "status.hostIPs"));
    let container = daemon_container(
        "lma",
        image,
        "lma.yaml",
        env,
        &["NET_ADMIN", "NET_RAW"],
        md.spec.resources.lma.as_ref(),
        proto::service_names::BINDING_CACHE,
        vec![json!({"name": "state", "mountPath": STATE_DIR})],
    );
    let mut pod_spec = json!({
        "hostNetwork": true,
        "dnsPolicy": "ClusterFirstWithHostNet",
        "enableServiceLinks": false,
        "terminationGracePeriodSeconds": 30,
        "securityContext": {"runAsUser": 0, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [container],
        "volumes": [
            {"name": "config", "configMap": {"name": n.config_map, "items": [{"key": "lma.yaml", "path": "lma.yaml"}]}},
            {"name": "state", "persistentVolumeClaim": {"claimName": n.lma_state}},
        ],
        "affinity": apart_from(d, "mag"),
    });
    if !md.spec.lma.node_selector.is_empty() {
        pod_spec["nodeSelector"] = json!(md.spec.lma.node_selector);
    }
    if !md.spec.lma.tolerations.is_empty() {
        pod_spec["tolerations"] = json!(md.spec.lma.tolerations);
    }
    let l = labels(d, "lma");
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": meta(md, &n.lma, "lma"),
        "spec": {
            "replicas": 1,
            // One LMA at a time: it owns the host's Mobility Header socket and the PVC.
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": {DOMAIN_LABEL: d, COMPONENT_LABEL: "lma"}},
            "template": {
                "metadata": {"labels": l, "annotations": {CONFIG_HASH_ANNOTATION: config_hash}},
                "spec": pod_spec,
            },
        },
    })
}

/// The MAGs: one per selected node, on the host network.
pub fn mag_daemonset(md: &MobilityDomain, image: &Image, config_hash: &str) -> Value {
    let d = domain_name(md);
    let n = Names::of(d);
    let mut env = common_env(config_hash);
    env.insert(0, field_env("PMIP_PROXY_COA", "status.hostIPs"));
    let mut caps = vec!["NET_ADMIN", "NET_RAW"];
    let mut volumes = vec![
        json!({"name": "config", "configMap": {"name": n.config_map, "items": [{"key": "mag.yaml", "path": "mag.yaml"}]}}),
        json!({"name": "state", "emptyDir": {}}),
    ];
    let mut mounts = vec![json!({"name": "state", "mountPath": STATE_DIR})];
    if md.spec.mags.lab {
        // Lab mode: emulated nodes live in network namespaces the MAG creates and names.
        caps.push("SYS_ADMIN");
        volumes.push(json!({"name": "netns", "emptyDir": {}}));
        mounts.push(json!({"name": "netns", "mountPath": "/run/netns"}));
    }
    let container = daemon_container(
        "mag",
        image,
        "mag.yaml",
        env,
        &caps,
        md.spec.resources.mag.as_ref(),
        proto::service_names::GATEWAY,
        mounts,
    );
    let mut pod_spec = json!({
        "hostNetwork": true,
        "dnsPolicy": "ClusterFirstWithHostNet",
        "enableServiceLinks": false,
        "terminationGracePeriodSeconds": 30,
        "securityContext": {"runAsUser": 0, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [container],
        "volumes": volumes,
        "affinity": apart_from(d, "lma"),
    });
    if !md.spec.mags.node_selector.is_empty() {
        pod_spec["nodeSelector"] = json!(md.spec.mags.node_selector);
    }
    if !md.spec.mags.tolerations.is_empty() {
        pod_spec["tolerations"] = json!(md.spec.mags.tolerations);
    }
    json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": meta(md, &n.mag, "mag"),
        "spec": {
            "selector": {"matchLabels": {DOMAIN_LABEL: d, COMPONENT_LABEL: "mag"}},
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
            "template": {
                "metadata": {"labels": labels(d, "mag"), "annotations": {CONFIG_HASH_ANNOTATION: config_hash}},
                "spec": pod_spec,
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
    use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Service};

    use super::*;
    use crate::fixtures::domain;

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
            Some("http://pmip-lab-lma.pmip.svc:50051")
        );
        assert_eq!(back.access_interfaces, vec!["pmip*".to_string()]);
        assert_eq!(back.domain.fast_handover.access_points.len(), 1);
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
    fn picks_first_global_ipv6() {
        assert_eq!(
            first_global_ipv6(["10.0.0.1,fe80::1,2001:db8::7,2001:db8::8"]),
            Some("2001:db8::7".parse().unwrap())
        );
        assert_eq!(first_global_ipv6(["10.0.0.1", "::1"]), None);
    }

    #[test]
    fn workloads_are_valid_kubernetes_objects() {
        let mut md = domain("lab");
        md.spec.mags.lab = true;
        let img = Image::for_domain(&md, "ghcr.io/pmip-io/pmip:0.1.0", "IfNotPresent");
        assert_eq!(img.reference, "ghcr.io/pmip-io/pmip:0.1.0");
        let dep: Deployment = serde_json::from_value(lma_deployment(&md, &img, "abc")).unwrap();
        let pod = dep.spec.template.spec.unwrap();
        let lma_pod = pod.clone();
        assert_eq!(pod.host_network, Some(true));
        let c = &pod.containers[0];
        let sc = c.security_context.as_ref().unwrap();
        assert_eq!(sc.privileged, Some(false));
        let caps = sc.capabilities.as_ref().unwrap();
        assert_eq!(
            caps.add.as_deref(),
            Some(&["NET_ADMIN".to_string(), "NET_RAW".to_string()][..])
        );
        assert!(c.liveness_probe.as_ref().unwrap().grpc.is_some());
        let ready = c.readiness_probe.as_ref().unwrap().grpc.as_ref().unwrap();
        assert_eq!(ready.service.as_deref(), Some("pmip.v1.BindingCache"));
        let env = c.env.as_ref().unwrap();
        let lma_env = env.iter().find(|e| e.name == "PMIP_LMA_ADDRESS").unwrap();
        assert_eq!(
            lma_env
                .value_from
                .as_ref()
                .unwrap()
                .field_ref
                .as_ref()
                .unwrap()
                .field_path,
            "status.hostIPs"
        );
        assert!(
            pod.volumes
                .unwrap()
                .iter()
                .any(|v| v.persistent_volume_claim.is_some())
        );

        let ds: DaemonSet = serde_json::from_value(mag_daemonset(&md, &img, "def")).unwrap();
        let pod = ds.spec.template.spec.unwrap();
        let caps = pod.containers[0]
            .security_context
            .as_ref()
            .unwrap()
            .capabilities
            .as_ref()
            .unwrap();
        assert!(
            caps.add
                .as_ref()
                .unwrap()
                .contains(&"SYS_ADMIN".to_string()),
            "lab mode"
        );
        // The LMA and a MAG of the domain never share a node, from either side.
        for (pod, other) in [(&lma_pod, "mag"), (&pod, "lma")] {
            let terms = pod
                .affinity
                .as_ref()
                .and_then(|a| a.pod_anti_affinity.as_ref())
                .and_then(|a| {
                    a.required_during_scheduling_ignored_during_execution
                        .as_ref()
                })
                .unwrap();
            assert_eq!(terms.len(), 1);
            assert_eq!(terms[0].topology_key, "kubernetes.io/hostname");
            let sel = terms[0].label_selector.as_ref().unwrap();
            assert_eq!(
                sel.match_labels.as_ref().unwrap(),
                &BTreeMap::from([
                    (DOMAIN_LABEL.to_string(), "lab".to_string()),
                    (COMPONENT_LABEL.to_string(), other.to_string()),
                ])
            );
        }
        let _: ConfigMap = serde_json::from_value(config_map(&md, "a: 1", Some("b: 2"))).unwrap();
        let _: PersistentVolumeClaim = serde_json::from_value(lma_pvc(&md)).unwrap();
        let svc: Service = serde_json::from_value(lma_service(&md)).unwrap();
        assert_eq!(svc.spec.unwrap().ports.unwrap()[0].port, 50051);
    }
}
