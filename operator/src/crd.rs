//! The custom resources: `MobilityDomain` (one LMA and its MAGs) and `MobileNode` (a node's
//! policy profile and, in status, its binding as the LMA sees it). Group `pmip.io`, version
//! `v1alpha1`. `crdgen` prints them; `crds/` holds the checked-in output.
//!
//! Defaults are the RFC defaults (RFC 5213 §9, RFC 5847 §5, RFC 5846 §11) and are written into
//! the schema, so the API server fills them in and `kubectl explain` shows them. Validation that
//! one object can express is in the schema (patterns, ranges, CEL with the Kubernetes IP and
//! CIDR libraries); a pinned prefix inside one of its domain's pools spans two objects and is
//! checked by the chart's ValidatingAdmissionPolicy and again by the reconciler.

#![allow(clippy::duplicated_attributes)] // kube-derive printcolumn(...) repeats `type_ =` by design

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ResourceRequirements, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// API group of the pmip resources.
pub const GROUP: &str = "pmip.io";
/// API version of the pmip resources.
pub const VERSION: &str = "v1alpha1";

/// RFC 4282 NAI in the `user@realm` form PMIPv6 uses for MN-IDs (RFC 4283): printable ASCII
/// without spaces before the `@`, a DNS realm after it. The NAI option holds at most 254 octets.
pub const NAI_PATTERN: &str = r"^[!-?A-~]+@[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$";
/// A link-layer address: 1 to 16 hex bytes separated by `:` or `-`.
pub const LINK_LAYER_PATTERN: &str = r"^[0-9A-Fa-f]{2}([:-][0-9A-Fa-f]{2}){0,15}$";
/// An IPv6 prefix without host bits.
const IPV6_PREFIX_RULE: &str =
    "isCIDR(self) && cidr(self).ip().family() == 6 && cidr(self).masked() == cidr(self)";
/// An IPv4 home subnet without host bits, /8 to /30 (a router and at least one node).
const IPV4_POOL_RULE: &str = "isCIDR(self) && cidr(self).ip().family() == 4 && cidr(self).masked() == cidr(self) && cidr(self).prefixLength() >= 8 && cidr(self).prefixLength() <= 30";

// ---------------------------------------------------------------------------------------------
// MobilityDomain

/// A PMIPv6 domain: one LMA (Deployment, one replica, host network) and a MAG on each selected
/// node (DaemonSet), configured from this object.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "pmip.io",
    version = "v1alpha1",
    kind = "MobilityDomain",
    namespaced,
    shortname = "md",
    category = "pmip",
    status = "MobilityDomainStatus",
    // The LMA's Service is `pmip-<name>-lma`, a DNS label of at most 63 characters, and the
    // name is a label value on every pod.
    validation = kube::core::Rule::new("self.metadata.name.size() <= 54 && !self.metadata.name.contains('.')").message("a MobilityDomain name is at most 54 characters without dots: its LMA Service, pmip-<name>-lma, is a DNS label"),
    printcolumn(name = "LMA", type_ = "string", json_path = ".status.lmaAddress"),
    printcolumn(name = "MAGS", type_ = "integer", json_path = ".status.mags"),
    printcolumn(name = "NODES", type_ = "integer", json_path = ".status.boundNodes"),
    printcolumn(
        name = "READY",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "AGE",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct MobilityDomainSpec {
    /// The local mobility anchor and the domain-wide protocol settings.
    pub lma: LmaSpec,
    /// Where MAGs run and what they treat as access links.
    #[serde(default)]
    pub mags: MagSpec,
    /// The pmip image (it holds every binary).
    #[serde(default)]
    pub image: ImageSpec,
    /// Resource requests and limits of the daemons.
    #[serde(default)]
    pub resources: DaemonResources,
    /// Who sets the sysctls the daemons' datapath needs in the node's network namespace.
    #[serde(default)]
    pub sysctls: SysctlSetter,
    /// TLS between the operator and the daemons' gRPC APIs.
    #[serde(default)]
    pub tls: TlsSpec,
    /// IPsec ESP for the signalling between the LMA and the MAGs (RFC 5213 §4), keyed by
    /// the operator.
    #[serde(default)]
    pub ipsec: IpsecSpec,
}

/// Where ESP runs in the daemons.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default,
)]
pub enum IpsecModeSpec {
    /// Mobility Headers in clear (RFC 5213 §4 wants ESP: for labs only).
    #[default]
    Off,
    /// The daemons do ESP themselves on a raw IP-protocol-50 socket (nodes without ESP).
    Userspace,
    /// The nodes' kernels do ESP (XFRM states and policies the daemons install).
    Kernel,
    /// Kernel when the node's kernel takes the SAs, else userspace.
    Auto,
}

/// The ESP transform of every SA of the domain.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default,
)]
pub enum EspAlgorithmSpec {
    /// AES-128-GCM with a 16-octet ICV (RFC 4106).
    #[default]
    Aes128Gcm,
    /// AES-256-GCM with a 16-octet ICV (RFC 4106).
    Aes256Gcm,
    /// AES-128-CBC (RFC 3602) with HMAC-SHA-256-128 (RFC 4868).
    Aes128CbcHmacSha256,
    /// AES-256-CBC (RFC 3602) with HMAC-SHA-256-128 (RFC 4868).
    Aes256CbcHmacSha256,
}

/// ESP for the signalling. With a mode other than Off, the operator keeps a random master
/// key in Secret `pmip-<domain>-ipsec-master` (read only by the operator) and derives from
/// it one SA pair, with its own keys and SPIs, between the LMA and each MAG, and between MAGs
/// that exchange HI/HAck (fast handovers with access points). It writes them to Secret
/// `pmip-<domain>-ipsec`, which the daemons mount and re-read: a MAG that joins gets its
/// SAs without a restart of the others.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct IpsecSpec {
    /// Off, Userspace, Kernel or Auto.
    #[serde(default)]
    pub mode: IpsecModeSpec,
    /// The ESP transform.
    #[serde(default)]
    pub algorithm: EspAlgorithmSpec,
    /// 64-bit Extended Sequence Numbers (RFC 4303 §2.2.1).
    #[serde(default)]
    pub extended_sequence_numbers: bool,
}

/// Who sets the sysctls the datapath needs (`net.ipv6.conf.all.forwarding`, and for seg6
/// `seg6_enabled` on `all` and on the transport interface). A container that is not
/// privileged sees `/proc/sys` read-only; the daemons only write a sysctl that differs, so
/// whoever set it before them is enough.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default,
)]
pub enum SysctlSetter {
    /// A privileged init container (`--set-sysctls`) sets them before each daemon starts;
    /// the daemons run as root with NET_ADMIN and NET_RAW only. As Cilium does.
    #[default]
    InitContainer,
    /// The daemon containers run privileged and set them themselves; no init container.
    Privileged,
    /// Nothing in the pods is privileged: the nodes must have them already (a daemon that
    /// finds one missing names it and exits).
    Node,
}

/// TLS between the operator and the daemons.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TlsSpec {
    /// The operator makes a CA for the domain and a certificate signed by it (Secrets
    /// `pmip-<domain>-ca` and `pmip-<domain>-tls`); the daemons' gRPC APIs then require TLS
    /// with a client certificate from that CA, which the operator, the MAGs (towards the
    /// LMA's policy service) and `pmipctl` in the pods present. Off: plain HTTP/2, any client.
    #[serde(default = "d_true")]
    pub enabled: bool,
}

fn d_true() -> bool {
    true
}

impl Default for TlsSpec {
    fn default() -> Self {
        Self { enabled: true }
    }
}

/// The LMA and the settings every entity of the domain shares (RFC 5213 §9.3).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LmaSpec {
    /// The transport network between the LMA and its MAGs.
    #[serde(default)]
    pub transport: TransportSpec,
    /// Secondary networks (Multus) of the LMA pod: exactly one, its Transport attachment,
    /// whose address is the LMA address. Empty: the LMA runs on the host network and its
    /// address is its node's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1))]
    #[x_kube(validation = kube::core::Rule::new("self.all(n, n.role == 'Transport')").message("the LMA attaches to one network, its Transport one"))]
    #[x_kube(validation = kube::core::Rule::new("self.all(n, !has(n.ips) || n.ips.size() == 0 || n.ips.exists(i, isCIDR(i) && cidr(i).ip().family() == 6))").message("the static ips of the LMA's transport attachment must hold an IPv6 address (the LMA address)"))]
    pub networks: Vec<NetworkAttachment>,
    /// Pools that home network prefixes are allocated from, in order.
    #[schemars(length(min = 1, max = 64))]
    pub prefix_pools: Vec<PrefixPoolSpec>,
    /// IPv4 home subnets that IPv4 home addresses are allocated from (RFC 5844 §3.1.2.2), an
    /// address per node. Empty: no IPv4 home addresses in this domain.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub ipv4_pools: Vec<Ipv4PoolSpec>,
    /// LMA timers (RFC 5213 §9.1) and binding lifetime.
    #[serde(default)]
    pub timers: LmaTimersSpec,
    /// TimestampBasedApproachInUse (RFC 5213 §9.3): how PBUs are ordered.
    #[serde(default)]
    pub replay_protection: ReplayProtection,
    /// Where the MAGs' link-local address on access links comes from (RFC 5213 §6.8).
    #[serde(default)]
    pub link_local: LinkLocalSpec,
    /// EnableMAGLocalRouting (RFC 5213 §9.2) for the domain; a MobileNode can override it.
    #[serde(default)]
    pub local_routing: bool,
    /// Which kernel mechanism carries the tunnels.
    #[serde(default)]
    pub datapath: DatapathSpec,
    /// Fast handovers (RFC 5949).
    #[serde(default)]
    pub fast_handover: FastHandoverSpec,
    /// LMA-MAG heartbeat (RFC 5847).
    #[serde(default)]
    pub heartbeat: HeartbeatSpec,
    /// Binding revocation (RFC 5846 §11).
    #[serde(default)]
    pub revocation: RevocationSpec,
    /// Nodes the LMA may run on.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Tolerations of the LMA pod.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// The persistent volume for the LMA's binding and policy store (`/var/lib/pmip`).
    #[serde(default)]
    pub storage: StorageSpec,
    /// PriorityClass of the LMA pod; empty for none. The LMA serves the whole domain.
    #[serde(default = "d_lma_priority_class")]
    #[schemars(length(max = 253))]
    pub priority_class_name: String,
}

fn d_lma_priority_class() -> String {
    "system-cluster-critical".into()
}

/// What pmip uses an attachment for.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetworkRole {
    /// Between the LMA and the MAGs: the LMA address or the proxy-CoA is its address, the
    /// tunnels run over it.
    Transport,
    /// An access link of a MAG: mobile nodes attach on it.
    Access,
}

/// A Multus network selection element (the JSON form of the `k8s.v1.cni.cncf.io/networks`
/// annotation: name, namespace, interface, ips) and its role.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NetworkAttachment {
    /// The NetworkAttachmentDefinition.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub name: String,
    /// Its namespace. Unset: the domain's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub namespace: Option<String>,
    /// The interface name in the pod (also the access interface, and the transport link
    /// whose sysctls the pod sets). `eth0` is the cluster network's.
    /// Lower case, as a sysctl name's segment must be (`net.ipv6.conf.<interface>.*`).
    #[schemars(
        length(min = 1, max = 15),
        regex(pattern = r"^[a-z0-9]([-_a-z0-9]*[a-z0-9])?$")
    )]
    #[x_kube(validation = kube::core::Rule::new("self != 'eth0' && self != 'lo'").message("eth0 and lo are the pod's own interfaces"))]
    pub interface: String,
    /// Static addresses for IPAM that takes them (the `static` plugin), in CIDR form. Unset:
    /// the definition's IPAM allocates.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8), inner(length(max = 49)))]
    #[x_kube(validation = kube::core::Rule::new("self.all(i, isCIDR(i))").message("ips are addresses with a prefix length, e.g. 2001:db8:ff::1/64"))]
    pub ips: Vec<String>,
    /// Transport or Access.
    pub role: NetworkRole,
}

/// Address family of the transport network.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default,
)]
pub enum AddressFamily {
    /// IPv6 transport, IPv6-in-IPv6 tunnels (RFC 5213, RFC 2473). The LMA address and each
    /// proxy-CoA are their node's first global IPv6 address.
    #[default]
    IPv6,
}

/// The transport network between the LMA and its MAGs.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct TransportSpec {
    /// Address family of the transport network; IPv4 transport (RFC 5844) is not supported.
    #[serde(default)]
    pub address_family: AddressFamily,
    /// MTU of the transport links; the tunnel MTU is this minus 40 (RFC 2473 §6.7).
    /// Default: read from the interface.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1320, max = 65535))]
    pub link_mtu: Option<u32>,
}

/// One pool of home network prefixes.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new(
    "!isCIDR(self.prefix) || self.prefixLength >= cidr(self.prefix).prefixLength()"
).message("prefixLength must not be shorter than the pool's own prefix length"))]
pub struct PrefixPoolSpec {
    /// The aggregate, e.g. `2001:db8:100::/48` (IPv6, no host bits).
    #[x_kube(validation = kube::core::Rule::new(IPV6_PREFIX_RULE).message("must be an IPv6 prefix without host bits, e.g. 2001:db8:100::/48"))]
    #[schemars(length(max = 43))]
    pub prefix: String,
    /// Length of each allocated home network prefix (at most 64 for SLAAC).
    #[serde(default = "default_prefix_length")]
    #[schemars(range(min = 1, max = 64))]
    pub prefix_length: u8,
}

fn default_prefix_length() -> u8 {
    64
}

/// One IPv4 home subnet (RFC 5844 §3.1.2.2): every node gets one address of it, the subnet's
/// prefix length and the default router.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new(
    "!has(self.defaultRouter) || !isCIDR(self.prefix) || cidr(self.prefix).containsIP(self.defaultRouter)"
).message("defaultRouter must be inside the pool's prefix"))]
pub struct Ipv4PoolSpec {
    /// The home subnet, e.g. `192.0.2.0/24` (IPv4, no host bits, /8 to /30).
    #[x_kube(validation = kube::core::Rule::new(IPV4_POOL_RULE).message("must be an IPv4 prefix from /8 to /30 without host bits, e.g. 192.0.2.0/24"))]
    #[schemars(length(max = 18))]
    pub prefix: String,
    /// The nodes' default router (RFC 5844 §3.3.3), inside the subnet; no node gets it.
    /// Unset: the subnet's first address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = kube::core::Rule::new("isIP(self) && ip(self).family() == 4").message("must be an IPv4 address"))]
    #[schemars(length(max = 15))]
    pub default_router: Option<String>,
}

/// LMA protocol timers (RFC 5213 §9.1), RFC defaults.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LmaTimersSpec {
    /// MinDelayBeforeBCEDelete (RFC 5213 §9.1), ms: how long a de-registered binding is kept
    /// for a handover.
    #[serde(default = "d_min_delay_before_bce_delete_ms")]
    #[schemars(range(max = 600000))]
    pub min_delay_before_bce_delete_ms: u32,
    /// MaxDelayBeforeNewBCEAssign (RFC 5213 §9.1), ms.
    #[serde(default = "d_max_delay_before_new_bce_assign_ms")]
    #[schemars(range(max = 60000))]
    pub max_delay_before_new_bce_assign_ms: u32,
    /// TimestampValidityWindow (RFC 5213 §9.1), ms.
    #[serde(default = "d_timestamp_validity_window_ms")]
    #[schemars(range(min = 1, max = 60000))]
    pub timestamp_validity_window_ms: u32,
    /// Longest binding lifetime granted, seconds (the PBA lifetime field counts 4 s units).
    #[serde(default = "d_max_binding_lifetime_seconds")]
    #[schemars(range(min = 4, max = 262140))]
    pub max_binding_lifetime_seconds: u32,
}

fn d_min_delay_before_bce_delete_ms() -> u32 {
    10_000
}
fn d_max_delay_before_new_bce_assign_ms() -> u32 {
    1_500
}
fn d_timestamp_validity_window_ms() -> u32 {
    300
}
fn d_max_binding_lifetime_seconds() -> u32 {
    3_600
}

impl Default for LmaTimersSpec {
    fn default() -> Self {
        Self {
            min_delay_before_bce_delete_ms: d_min_delay_before_bce_delete_ms(),
            max_delay_before_new_bce_assign_ms: d_max_delay_before_new_bce_assign_ms(),
            timestamp_validity_window_ms: d_timestamp_validity_window_ms(),
            max_binding_lifetime_seconds: d_max_binding_lifetime_seconds(),
        }
    }
}

/// TimestampBasedApproachInUse (RFC 5213 §9.3).
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default,
)]
pub enum ReplayProtection {
    /// The Timestamp option (the RFC default).
    #[default]
    Timestamp,
    /// Sequence numbers compared modulo 2^16.
    SequenceNumber,
}

/// The link-local address mode (RFC 5213 §6.8).
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default,
)]
pub enum LinkLocalMode {
    /// Every MAG uses the same link-local and link-layer address on every access link.
    #[default]
    Fixed,
    /// The LMA generates the link-local address at the first registration.
    LmaGenerated,
}

/// Link-local address and link-layer address of the MAGs on access links.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("self.mode == 'Fixed' || !has(self.address)")
    .message("address applies to mode Fixed only"))]
pub struct LinkLocalSpec {
    /// Fixed or LmaGenerated.
    #[serde(default)]
    pub mode: LinkLocalMode,
    /// The fixed link-local address (mode Fixed), in fe80::/10. Default fe80::1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = kube::core::Rule::new("isIP(self) && ip(self).isLinkLocalUnicast()").message("must be a link-local (fe80::/10) IPv6 address"))]
    #[schemars(length(max = 45))]
    pub address: Option<String>,
    /// Link-layer address every MAG uses on access links. Default 02:00:5e:00:53:01.
    #[serde(default = "default_mag_link_layer_address")]
    #[schemars(regex(pattern = r"^[0-9A-Fa-f]{2}([:-][0-9A-Fa-f]{2}){0,15}$"))]
    #[x_kube(validation = kube::core::Rule::new("!self.matches('^(00[:-])*00$')").message("must not be all zero"))]
    pub link_layer_address: String,
}

fn default_mag_link_layer_address() -> String {
    "02:00:5e:00:53:01".into()
}

impl Default for LinkLocalSpec {
    fn default() -> Self {
        Self {
            mode: LinkLocalMode::Fixed,
            address: None,
            link_layer_address: default_mag_link_layer_address(),
        }
    }
}

/// Kernel tunnel mechanism.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default,
)]
pub enum DatapathMode {
    /// seg6 when the kernel has it, else ip6tnl when the kernel has it, else Tun.
    #[default]
    Auto,
    /// seg6 lightweight tunnels.
    Seg6,
    /// One ip6tnl link per peer.
    Ip6tnl,
    /// One veth pair per peer: the daemons encapsulate themselves (RFC 2473) and send on raw
    /// sockets, for kernels with neither seg6 nor ip6tnl.
    Tun,
    /// Signalling only: no routes, no tunnels.
    None,
}

/// Datapath settings.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct DatapathSpec {
    /// Which kernel mechanism carries the tunnels.
    #[serde(default)]
    pub mode: DatapathMode,
}

/// PFMIPv6 mode (RFC 5949).
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default,
)]
pub enum FastHandoverMode {
    /// Plain RFC 5213 handovers.
    #[default]
    Off,
    /// RFC 5949 §5.1: the previous MAG starts on a handover indication.
    Predictive,
    /// RFC 5949 §5.2: the new MAG starts when the node attaches.
    Reactive,
}

/// Fast handovers (RFC 5949).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FastHandoverSpec {
    /// Off, Predictive or Reactive.
    #[serde(default)]
    pub mode: FastHandoverMode,
    /// Access point name (as named in handover indications) -> the MAG serving it: a node
    /// name running a MAG, or the MAG's proxy-CoA (IPv6).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 1024))]
    pub access_points: BTreeMap<String, String>,
    /// Packets buffered per node at the new MAG.
    #[serde(default = "d_buffer_packets")]
    #[schemars(range(min = 1, max = 1048576))]
    pub buffer_packets: u32,
    /// A handover not completed after this long is abandoned, ms.
    #[serde(default = "d_handover_timeout_ms")]
    #[schemars(range(min = 100, max = 60000))]
    pub handover_timeout_ms: u32,
    /// How long at most a new MAG holds the LMA's packets for a node until the previous
    /// MAG's forwarded ones have ended (the end marker), ms; 0 turns end markers off.
    #[serde(default = "d_end_marker_wait_ms")]
    #[schemars(range(min = 0, max = 1000))]
    pub end_marker_wait_ms: u32,
}

fn d_buffer_packets() -> u32 {
    2048
}
fn d_handover_timeout_ms() -> u32 {
    5000
}
fn d_end_marker_wait_ms() -> u32 {
    pmip::config::FastHandoverConfig::default().end_marker_wait_ms
}

impl Default for FastHandoverSpec {
    fn default() -> Self {
        Self {
            mode: FastHandoverMode::Off,
            access_points: BTreeMap::new(),
            buffer_packets: d_buffer_packets(),
            handover_timeout_ms: d_handover_timeout_ms(),
            end_marker_wait_ms: d_end_marker_wait_ms(),
        }
    }
}

/// RFC 5847 heartbeat.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HeartbeatSpec {
    /// HEARTBEAT_INTERVAL, seconds; 0 disables heartbeats (RFC 5847 §5: 60, at most 3600).
    #[serde(default = "d_heartbeat_interval")]
    #[schemars(range(max = 3600))]
    pub interval_seconds: u32,
    /// MISSING_HEARTBEATS_ALLOWED (RFC 5847 §5).
    #[serde(default = "d_missing_heartbeats")]
    #[schemars(range(min = 1, max = 100))]
    pub missing_allowed: u32,
}

fn d_heartbeat_interval() -> u32 {
    60
}
fn d_missing_heartbeats() -> u32 {
    3
}

impl Default for HeartbeatSpec {
    fn default() -> Self {
        Self {
            interval_seconds: d_heartbeat_interval(),
            missing_allowed: d_missing_heartbeats(),
        }
    }
}

/// Binding revocation (RFC 5846 §11).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("self.maxTimeoutMs >= self.initialDelayMs")
    .message("maxTimeoutMs must be at least initialDelayMs"))]
pub struct RevocationSpec {
    /// BRIMaxRetriesNumber.
    #[serde(default = "d_bri_retries")]
    #[schemars(range(max = 10))]
    pub max_retries: u32,
    /// InitMINDelayBRIs, ms (not below 500).
    #[serde(default = "d_bri_delay")]
    #[schemars(range(min = 500, max = 60000))]
    pub initial_delay_ms: u32,
    /// MAX_BRACK_TIMEOUT, ms.
    #[serde(default = "d_brack_timeout")]
    #[schemars(range(min = 500, max = 600000))]
    pub max_timeout_ms: u32,
}

fn d_bri_retries() -> u32 {
    1
}
fn d_bri_delay() -> u32 {
    1000
}
fn d_brack_timeout() -> u32 {
    2000
}

impl Default for RevocationSpec {
    fn default() -> Self {
        Self {
            max_retries: d_bri_retries(),
            initial_delay_ms: d_bri_delay(),
            max_timeout_ms: d_brack_timeout(),
        }
    }
}

/// The LMA's persistent volume.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StorageSpec {
    /// Requested size.
    #[serde(default = "d_storage_size")]
    pub size: String,
    /// StorageClass; unset: the cluster default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
}

fn d_storage_size() -> String {
    "1Gi".into()
}

impl Default for StorageSpec {
    fn default() -> Self {
        Self {
            size: d_storage_size(),
            storage_class_name: None,
        }
    }
}

/// MAG placement and behaviour.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MagSpec {
    /// Nodes that run a MAG. Empty: every node.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Tolerations of the MAG pods.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// Secondary networks (Multus) of every MAG pod: one Transport attachment, whose address
    /// is the MAG's proxy-CoA, and one or more Access attachments, the access links that
    /// carry mobile nodes (their interfaces are access interfaces). The definitions are
    /// node-local (a macvlan on a node's NIC, a bridge), so each MAG gets its own links.
    /// Empty: the MAGs run on the host network.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    #[x_kube(validation = kube::core::Rule::new("self.size() == 0 || (self.exists_one(n, n.role == 'Transport') && self.exists(n, n.role == 'Access'))").message("MAG networks need exactly one Transport attachment and at least one Access attachment"))]
    #[x_kube(validation = kube::core::Rule::new("self.all(a, self.exists_one(b, b.interface == a.interface))").message("each attachment needs an interface name of its own"))]
    #[x_kube(validation = kube::core::Rule::new("self.all(n, !has(n.ips) || n.ips.size() == 0)").message("static ips on MAG networks would give every MAG of the DaemonSet the same address: use IPAM that allocates per pod"))]
    pub networks: Vec<NetworkAttachment>,
    /// Access interfaces by name or pattern with `*` (e.g. `wlan*`).
    #[serde(default = "d_access_interfaces")]
    #[schemars(length(min = 1, max = 64), inner(length(min = 1, max = 15)))]
    #[x_kube(validation = kube::core::Rule::new("self.all(i, i.matches('^[^/ ]{1,15}$'))").message("interface names and patterns are 1 to 15 bytes without '/' or spaces"))]
    pub access_interfaces: Vec<String>,
    /// INITIAL_BINDACK_TIMEOUT (RFC 6275 §12), ms.
    #[serde(default = "d_initial_bindack")]
    #[schemars(range(min = 10, max = 60000))]
    pub initial_bindack_timeout_ms: u32,
    /// Binding lifetime requested in PBUs, seconds.
    #[serde(default = "d_requested_lifetime")]
    #[schemars(range(min = 4, max = 262140))]
    pub requested_lifetime_seconds: u32,
    /// Lab mode: MAGs may create emulated mobile nodes (MobileNode `spec.lab`). The MAG
    /// pods run privileged, to create network namespaces and set sysctls in them: for demos,
    /// not production.
    #[serde(default)]
    pub lab: bool,
    /// PriorityClass of the MAG pods; empty for none. A MAG is its node's mobility service.
    #[serde(default = "d_mag_priority_class")]
    #[schemars(length(max = 253))]
    pub priority_class_name: String,
}

fn d_mag_priority_class() -> String {
    "system-node-critical".into()
}

fn d_access_interfaces() -> Vec<String> {
    vec!["pmip*".into()]
}
fn d_initial_bindack() -> u32 {
    1000
}
fn d_requested_lifetime() -> u32 {
    3600
}

impl Default for MagSpec {
    fn default() -> Self {
        Self {
            node_selector: BTreeMap::new(),
            tolerations: Vec::new(),
            networks: Vec::new(),
            access_interfaces: d_access_interfaces(),
            initial_bindack_timeout_ms: d_initial_bindack(),
            requested_lifetime_seconds: d_requested_lifetime(),
            lab: false,
            priority_class_name: d_mag_priority_class(),
        }
    }
}

/// The container image.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ImageSpec {
    /// Repository; unset: the operator's own image repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    /// Tag; unset: the operator's own tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// Pull policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["Always", "IfNotPresent", "Never"]))]
    pub pull_policy: Option<String>,
}

/// Resources of the daemons. Unset: requests of 100m CPU and 128Mi for the LMA, 50m and 64Mi
/// for a MAG, memory limits of 1Gi and 256Mi (the LMA holds every binding; size it for the
/// domain), and 10m, 16Mi and a 64Mi limit for the sysctl init container.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct DaemonResources {
    /// Of the LMA container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lma: Option<ResourceRequirements>,
    /// Of each MAG container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mag: Option<ResourceRequirements>,
}

/// Observed state of a MobilityDomain.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct MobilityDomainStatus {
    /// Ready, LMAReady, MAGsReady.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// The LMA address (its transport attachment's address, or its node's first global IPv6
    /// address on the host network).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lma_address: Option<String>,
    /// MAG pods ready.
    #[serde(default)]
    pub mags: i32,
    /// Bindings in the LMA's cache.
    #[serde(default)]
    pub bound_nodes: i64,
    /// The LMA's restart counter (RFC 5847), from its Stats.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lma_restart_counter: Option<i64>,
    /// MAGs authorized at the LMA (name and proxy-CoA).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub authorized_mags: Vec<AuthorizedMagStatus>,
    /// The generation this status reflects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// A MAG authorized at the LMA.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "camelCase")]
pub struct AuthorizedMagStatus {
    /// Node name (the MAG's name).
    pub node: String,
    /// Its proxy-CoA.
    pub proxy_coa: String,
}

// ---------------------------------------------------------------------------------------------
// MobileNode

/// A mobile node's policy profile in a MobilityDomain; the status mirrors its binding at the LMA.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "pmip.io",
    version = "v1alpha1",
    kind = "MobileNode",
    namespaced,
    shortname = "mn",
    category = "pmip",
    status = "MobileNodeStatus",
    printcolumn(name = "DOMAIN", type_ = "string", json_path = ".spec.domain"),
    printcolumn(name = "MAG", type_ = "string", json_path = ".status.mag"),
    printcolumn(name = "PREFIX", type_ = "string", json_path = ".status.prefix"),
    printcolumn(name = "IPV4", type_ = "string", json_path = ".status.ipv4Address"),
    printcolumn(name = "STATE", type_ = "string", json_path = ".status.state"),
    printcolumn(name = "HANDOVERS", type_ = "integer", json_path = ".status.handovers"),
    printcolumn(
        name = "AGE",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct MobileNodeSpec {
    /// Name of the MobilityDomain (same namespace). Immutable.
    #[x_kube(validation = kube::core::Rule::new("self == oldSelf").message("domain is immutable; delete and recreate the node"))]
    #[schemars(length(min = 1, max = 253))]
    pub domain: String,
    /// The Mobile Node Identifier, an NAI `user@realm` (RFC 4283). Immutable.
    #[schemars(
        length(min = 3, max = 254),
        regex(
            pattern = r"^[!-?A-~]+@[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
        )
    )]
    #[x_kube(validation = kube::core::Rule::new("self == oldSelf").message("mnId is immutable; delete and recreate the node"))]
    pub mn_id: String,
    /// Link-layer addresses the node attaches with (e.g. `02:00:00:00:01:01`).
    #[schemars(length(min = 1, max = 16), inner(length(max = 47)))]
    #[x_kube(validation = kube::core::Rule::new("self.all(a, a.matches('^[0-9A-Fa-f]{2}([:-][0-9A-Fa-f]{2}){0,15}$'))").message("link-layer addresses are 1 to 16 hex bytes separated by ':' or '-'"))]
    pub link_layer_addresses: Vec<String>,
    /// A pinned home network prefix (IPv6, /64 or shorter, inside one of the domain's pools).
    /// Unset: the LMA allocates one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = kube::core::Rule::new("isCIDR(self) && cidr(self).ip().family() == 6 && cidr(self).masked() == cidr(self) && cidr(self).prefixLength() <= 64").message("must be an IPv6 prefix of length 64 or shorter without host bits"))]
    #[schemars(length(max = 43))]
    pub home_network_prefix: Option<String>,
    /// IPv6 home address mobility (home network prefixes). Unset: true; false: an IPv4-only
    /// node (RFC 5844 §3.2.2), which needs `ipv4`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6: Option<bool>,
    /// IPv4 home address mobility (RFC 5844 §3): the node gets an IPv4 home address from the
    /// domain's `ipv4Pools`, by DHCP from its MAG. Unset: false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv4: Option<bool>,
    /// A pinned IPv4 home address inside one of the domain's `ipv4Pools`; needs `ipv4`.
    /// Unset: the LMA allocates one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = kube::core::Rule::new("isIP(self) && ip(self).family() == 4").message("must be an IPv4 address"))]
    #[schemars(length(max = 15))]
    pub ipv4_home_address: Option<String>,
    /// MAGs the node may register through: node names running a MAG, or proxy-CoAs (IPv6).
    /// Empty: any MAG of the domain.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256), inner(length(min = 1, max = 253)))]
    #[x_kube(validation = kube::core::Rule::new("self.all(m, isIP(m) ? ip(m).family() == 6 && ip(m).isGlobalUnicast() : m.matches('^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$'))").message("each entry is a node name or a global unicast IPv6 proxy-CoA"))]
    pub allowed_mags: Vec<String>,
    /// Access technology (RFC 5213 §8.5) when the access link does not say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_technology_type: Option<AccessTechnology>,
    /// Overrides the domain's localRouting (EnableMAGLocalRouting) for this node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_routing: Option<bool>,
    /// Whether the node may use network-based mobility (RFC 5213 §5.3.1 rule 8). Unset:
    /// true; false: the LMA refuses the node's registrations (PROXY_REG_NOT_ENABLED).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_registration_enabled: Option<bool>,
    /// Lab mode: an emulated node created by a MAG of a domain with `mags.lab: true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lab: Option<LabSpec>,
}

/// Access Technology Type (RFC 5213 §8.5, IANA).
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccessTechnology {
    /// 1: Virtual.
    Virtual,
    /// 2: PPP.
    PPP,
    /// 3: IEEE 802.3.
    #[serde(rename = "IEEE802.3")]
    Ieee8023,
    /// 4: IEEE 802.11a/b/g.
    #[serde(rename = "IEEE802.11")]
    Ieee80211,
    /// 5: IEEE 802.16e.
    #[serde(rename = "IEEE802.16e")]
    Ieee80216e,
    /// 6: 3GPP GERAN.
    #[serde(rename = "3GPP-GERAN")]
    Geran,
    /// 7: 3GPP UTRAN.
    #[serde(rename = "3GPP-UTRAN")]
    Utran,
    /// 8: 3GPP E-UTRAN.
    #[serde(rename = "3GPP-EUTRAN")]
    Eutran,
    /// 13: 3GPP NB-IoT.
    #[serde(rename = "3GPP-NB-IoT")]
    NbIot,
}

impl AccessTechnology {
    /// The option value.
    pub fn value(self) -> u8 {
        match self {
            Self::Virtual => 1,
            Self::PPP => 2,
            Self::Ieee8023 => 3,
            Self::Ieee80211 => 4,
            Self::Ieee80216e => 5,
            Self::Geran => 6,
            Self::Utran => 7,
            Self::Eutran => 8,
            Self::NbIot => 13,
        }
    }
}

/// Lab mode: where the emulated node is attached.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LabSpec {
    /// The MAG (node name) the emulated node is attached to. Changing it hands the node over;
    /// unset detaches it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub attach_to: Option<String>,
}

/// The state of a mobile node as the LMA sees it.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default,
)]
pub enum MobileNodeState {
    /// No binding at the LMA.
    #[default]
    Detached,
    /// Attached to a MAG (lab mode) or held by the LMA, registration not complete.
    Registering,
    /// A binding is active.
    Attached,
    /// The serving MAG de-registered, or a new MAG registered, and the LMA keeps the binding
    /// for the handover to complete (MinDelayBeforeBCEDelete / MaxDelayBeforeNewBCEAssign).
    HandingOver,
    /// The LMA rejected the node's last registration: see `reason`.
    Rejected,
}

/// Observed state of a MobileNode.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct MobileNodeStatus {
    /// Detached, Registering, Attached, HandingOver or Rejected.
    #[serde(default)]
    pub state: MobileNodeState,
    /// Why the node is in its state, e.g. the PBA status of a rejection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The serving MAG (node name, or proxy-CoA when unknown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mag: Option<String>,
    /// The serving MAG's proxy-CoA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_coa: Option<String>,
    /// The first home network prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// All home network prefixes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prefixes: Vec<String>,
    /// The IPv4 home address with its home subnet's prefix length, e.g. `192.0.2.10/24`
    /// (RFC 5844).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv4_address: Option<String>,
    /// Lifetime granted by the LMA, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifetime_seconds: Option<u32>,
    /// Handovers between MAGs in the current mobility session.
    #[serde(default)]
    pub handovers: u64,
    /// Signalling gap of the last handover as the LMA saw it, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handover_interruption_ms: Option<u32>,
    /// Lab mode: the MAG the emulated node is attached to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lab_attached_to: Option<String>,
    /// The LMA (epoch, revision) this status reflects, as `epoch/revision`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lma_revision: Option<String>,
    /// Ready (profile accepted by the LMA), LabReady (lab mode).
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// The generation this status reflects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// Every CRD of pmip as one YAML stream (what `crdgen` prints and `crds/` holds).
pub fn crd_yaml() -> Result<String, serde_saphyr::ser::Error> {
    use kube::CustomResourceExt;
    let mut out =
        String::from("# Generated by `cargo run -p operator --bin crdgen`; do not edit.\n");
    for crd in [MobilityDomain::crd(), MobileNode::crd()] {
        out.push_str("---\n");
        out.push_str(&serde_saphyr::to_string(&crd)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use kube::core::cel::validate_cel;
    use serde_json::json;

    use super::*;

    fn domain(lma: serde_json::Value) -> MobilityDomain {
        serde_json::from_value(json!({
            "apiVersion": "pmip.io/v1alpha1", "kind": "MobilityDomain",
            "metadata": {"name": "d", "namespace": "default"},
            "spec": {"lma": lma}
        }))
        .unwrap()
    }

    fn node(spec: serde_json::Value) -> MobileNode {
        serde_json::from_value(json!({
            "apiVersion": "pmip.io/v1alpha1", "kind": "MobileNode",
            "metadata": {"name": "n", "namespace": "default"},
            "spec": spec
        }))
        .unwrap()
    }

    #[test]
    fn defaults_are_the_rfc_defaults() {
        let d = domain(json!({"prefixPools": [{"prefix": "2001:db8:100::/48"}]}));
        let t = &d.spec.lma.timers;
        assert_eq!(t.min_delay_before_bce_delete_ms, 10_000);
        assert_eq!(t.max_delay_before_new_bce_assign_ms, 1_500);
        assert_eq!(t.timestamp_validity_window_ms, 300);
        assert_eq!(d.spec.lma.replay_protection, ReplayProtection::Timestamp);
        assert_eq!(d.spec.lma.heartbeat.interval_seconds, 60);
        assert_eq!(d.spec.lma.heartbeat.missing_allowed, 3);
        assert_eq!(d.spec.lma.revocation.max_retries, 1);
        assert_eq!(d.spec.lma.revocation.initial_delay_ms, 1_000);
        assert_eq!(d.spec.lma.revocation.max_timeout_ms, 2_000);
        assert_eq!(d.spec.lma.prefix_pools[0].prefix_length, 64);
        assert!(!d.spec.lma.local_routing);
        // The schema carries them too, so the API server fills them in.
        let yaml = crd_yaml().unwrap();
        assert!(yaml.contains("minDelayBeforeBceDeleteMs:\n"), "{yaml}");
        assert!(yaml.contains("default: 10000"));
    }

    #[test]
    fn cel_accepts_good_domains_and_refuses_bad_prefixes() {
        let good =
            domain(json!({"prefixPools": [{"prefix": "2001:db8:100::/48", "prefixLength": 64}]}));
        validate_cel(&good).unwrap();
        let dual = domain(json!({"prefixPools": [{"prefix": "2001:db8:100::/48"}],
            "ipv4Pools": [{"prefix": "192.0.2.0/24"}, {"prefix": "198.51.100.0/28", "defaultRouter": "198.51.100.14"}]}));
        validate_cel(&dual).unwrap();
        assert_eq!(dual.spec.lma.ipv4_pools.len(), 2);
        for (bad, why) in [
            (
                json!({"prefixPools": [{"prefix": "2001:db8:100::1/48"}]}),
                "host bits",
            ),
            (json!({"prefixPools": [{"prefix": "10.0.0.0/8"}]}), "IPv4"),
            (
                json!({"prefixPools": [{"prefix": "nonsense"}]}),
                "not a prefix",
            ),
            (
                json!({"prefixPools": [{"prefix": "2001:db8:100::/56", "prefixLength": 48}]}),
                "shorter",
            ),
            (
                json!({"prefixPools": [{"prefix": "2001:db8::/48"}],
                    "ipv4Pools": [{"prefix": "192.0.2.1/24"}]}),
                "IPv4 pool with host bits",
            ),
            (
                json!({"prefixPools": [{"prefix": "2001:db8::/48"}],
                    "ipv4Pools": [{"prefix": "192.0.2.0/31"}]}),
                "IPv4 pool /31",
            ),
            (
                json!({"prefixPools": [{"prefix": "2001:db8::/48"}],
                    "ipv4Pools": [{"prefix": "2001:db8:1::/64"}]}),
                "IPv6 as an IPv4 pool",
            ),
            (
                json!({"prefixPools": [{"prefix": "2001:db8::/48"}],
                    "ipv4Pools": [{"prefix": "192.0.2.0/24", "defaultRouter": "198.51.100.1"}]}),
                "default router outside the pool",
            ),
            (
                json!({"prefixPools": [{"prefix": "2001:db8::/48"}],
                    "revocation": {"initialDelayMs": 5000, "maxTimeoutMs": 1000}}),
                "revocation",
            ),
            (
                json!({"prefixPools": [{"prefix": "2001:db8::/48"}],
                    "linkLocal": {"mode": "LmaGenerated", "address": "fe80::1"}}),
                "mode",
            ),
            (
                json!({"prefixPools": [{"prefix": "2001:db8::/48"}],
                    "linkLocal": {"address": "2001:db8::1"}}),
                "link-local",
            ),
        ] {
            assert!(validate_cel(&domain(bad)).is_err(), "{why} accepted");
        }
        // The name: its LMA Service pmip-<name>-lma must be a DNS label.
        let named = |name: &str| {
            let mut d = good.clone();
            d.metadata.name = Some(name.into());
            validate_cel(&d)
        };
        named(&"d".repeat(54)).unwrap();
        for bad in ["d".repeat(55), "lab.example".into()] {
            assert!(named(&bad).is_err(), "{bad} accepted");
        }
        let yaml = crd_yaml().unwrap();
        assert!(
            yaml.contains("^[a-z0-9]([-_a-z0-9]*[a-z0-9])?$"),
            "interface pattern"
        );
    }

    #[test]
    fn cel_checks_mobile_nodes() {
        let good = node(json!({
            "domain": "d", "mnId": "mn1@example.org", "linkLayerAddresses": ["02:00:00:00:01:01"],
            "homeNetworkPrefix": "2001:db8:100:1::/64", "allowedMags": ["kind-worker", "2001:db8::10"]
        }));
        validate_cel(&good).unwrap();
        let v4 = node(json!({
            "domain": "d", "mnId": "mn1@example.org", "linkLayerAddresses": ["02:00:00:00:01:01"],
            "ipv6": false, "ipv4": true, "ipv4HomeAddress": "192.0.2.10"
        }));
        validate_cel(&v4).unwrap();
        for (bad, why) in [
            (
                json!({"domain": "d", "mnId": "mn1@example.org", "linkLayerAddresses": ["zz"]}),
                "ll",
            ),
            (
                json!({"domain": "d", "mnId": "mn1@example.org", "linkLayerAddresses": ["02:00:00:00:01:01"],
                    "homeNetworkPrefix": "2001:db8:100:1::/80"}),
                "/80",
            ),
            (
                json!({"domain": "d", "mnId": "mn1@example.org", "linkLayerAddresses": ["02:00:00:00:01:01"],
                    "homeNetworkPrefix": "2001:db8:100:1::1/64"}),
                "host bits",
            ),
            (
                json!({"domain": "d", "mnId": "mn1@example.org", "linkLayerAddresses": ["02:00:00:00:01:01"],
                    "allowedMags": ["fe80::1"]}),
                "link-local MAG",
            ),
            (
                json!({"domain": "d", "mnId": "mn1@example.org", "linkLayerAddresses": ["02:00:00:00:01:01"],
                    "allowedMags": ["Not_A_Node"]}),
                "bad node name",
            ),
            (
                json!({"domain": "d", "mnId": "mn1@example.org", "linkLayerAddresses": ["02:00:00:00:01:01"],
                    "ipv4": true, "ipv4HomeAddress": "2001:db8::1"}),
                "IPv6 as the IPv4 home address",
            ),
        ] {
            assert!(validate_cel(&node(bad)).is_err(), "{why} accepted");
        }
    }

    #[test]
    fn datapath_modes_are_in_the_schema() {
        use kube::CustomResourceExt;
        let crd = serde_json::to_value(MobilityDomain::crd()).unwrap();
        let mode = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
            ["lma"]["properties"]["datapath"]["properties"]["mode"];
        // Exhaustive: a new mode fails to compile here until it is listed.
        let listed = |m: DatapathMode| match m {
            DatapathMode::Auto
            | DatapathMode::Seg6
            | DatapathMode::Ip6tnl
            | DatapathMode::Tun
            | DatapathMode::None => serde_json::to_value(m).unwrap(),
        };
        let all = [
            DatapathMode::Auto,
            DatapathMode::Seg6,
            DatapathMode::Ip6tnl,
            DatapathMode::Tun,
            DatapathMode::None,
        ]
        .map(listed);
        assert_eq!(
            mode["enum"],
            serde_json::Value::from(all.to_vec()),
            "{mode}"
        );
        let d = domain(json!({"prefixPools": [{"prefix": "2001:db8:100::/48"}],
            "datapath": {"mode": "Tun"}}));
        assert_eq!(d.spec.lma.datapath.mode, DatapathMode::Tun);
    }

    #[test]
    fn schema_patterns_are_the_published_ones() {
        let yaml = crd_yaml().unwrap();
        // serde-saphyr may quote the patterns; compare their distinctive parts.
        assert!(
            yaml.contains("[!-?A-~]+@[A-Za-z0-9]"),
            "NAI pattern missing"
        );
        assert!(NAI_PATTERN.starts_with("^[!-?A-~]+@[A-Za-z0-9]"));
        assert!(LINK_LAYER_PATTERN.contains("([:-][0-9A-Fa-f]{2}){0,15}"));
        for ok in [
            "mn1@example.org",
            "imsi-001010000000001@epc.mnc001.mcc001.3gppnetwork.org",
        ] {
            assert!(pmip::types::Nai::new(ok).is_ok());
        }
    }

    #[test]
    fn cel_checks_networks() {
        let pools = json!([{"prefix": "2001:db8:100::/48"}]);
        let with = |lma_nets: serde_json::Value, mag_nets: serde_json::Value| {
            let mut d = domain(json!({"prefixPools": pools, "networks": lma_nets}));
            d.spec.mags = serde_json::from_value(json!({"networks": mag_nets})).unwrap();
            d
        };
        let transport = json!({"name": "transport", "interface": "transport", "role": "Transport"});
        let access = json!({"name": "access-a", "namespace": "labs", "interface": "access0", "role": "Access"});
        validate_cel(&with(
            json!([{"name": "transport", "interface": "transport", "role": "Transport",
                    "ips": ["2001:db8:ff::1/64"]}]),
            json!([transport, access]),
        ))
        .unwrap();
        validate_cel(&with(json!([]), json!([]))).unwrap();
        for (lma, mags, why) in [
            (json!([access]), json!([]), "an LMA access attachment"),
            (
                json!([{"name": "transport", "interface": "transport", "role": "Transport",
                        "ips": ["10.0.0.1/24"]}]),
                json!([]),
                "an LMA without a static IPv6 address",
            ),
            (
                json!([{"name": "transport", "interface": "transport", "role": "Transport",
                        "ips": ["2001:db8:ff::1"]}]),
                json!([]),
                "an address without prefix length",
            ),
            (
                json!([]),
                json!([transport]),
                "MAGs without an access attachment",
            ),
            (
                json!([]),
                json!([access]),
                "MAGs without a transport attachment",
            ),
            (
                json!([]),
                json!([transport, access, {"name": "t2", "interface": "t2", "role": "Transport"}]),
                "two transport attachments",
            ),
            (
                json!([]),
                json!([transport, {"name": "access-b", "interface": "transport", "role": "Access"}]),
                "one interface twice",
            ),
            (
                json!([]),
                json!([transport, {"name": "access-b", "interface": "eth0", "role": "Access"}]),
                "eth0",
            ),
            (
                json!([]),
                json!([{"name": "transport", "interface": "transport", "role": "Transport",
                        "ips": ["2001:db8:ff::2/64"]}, access]),
                "static MAG addresses",
            ),
        ] {
            assert!(validate_cel(&with(lma, mags)).is_err(), "{why} accepted");
        }
    }
}
