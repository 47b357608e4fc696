//! Configuration of a PMIPv6 domain, its LMA and its MAGs.
//!
//! One schema, shared by the daemons (which read it from a YAML file) and the operator (which
//! writes it into a ConfigMap), so the two can never disagree on a field. Every protocol
//! variable of RFC 5213 §9, RFC 5847 §5 and RFC 5846 §11 is here with its RFC default.
//! Durations carry their unit in the field name.
//!
//! [`LmaConfig::validate`] and [`MagConfig::validate`] check what serde cannot, and name the
//! offending field in the error.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;

use ipnet::{Ipv4Net, Ipv6Net};
use serde::{Deserialize, Deserializer, Serialize};

use crate::types::{LinkLayerAddress, Nai};

/// A configuration value that is wrong, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct ConfigError {
    /// Dotted path of the field, e.g. `prefix_pools[1].prefix_length`.
    pub field: String,
    pub reason: String,
}

impl ConfigError {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

fn check(ok: bool, field: &str, reason: impl FnOnce() -> String) -> Result<(), ConfigError> {
    if ok {
        Ok(())
    } else {
        Err(ConfigError::new(field, reason()))
    }
}

/// Each profile, and the profiles together: one MN-ID once, a link-layer address or a pinned
/// prefix or IPv4 home address for one node only, no pinned values in a wildcard profile
/// (what the policy store would refuse when the daemon starts).
fn validate_profiles(profiles: &[MobileNodeProfile]) -> Result<(), ConfigError> {
    let mut store = crate::policy::PolicyStore::new();
    let mut ids = std::collections::HashSet::new();
    let mut pinned4 = std::collections::HashMap::new();
    for (i, p) in profiles.iter().enumerate() {
        let at = format!("mobile_nodes[{i}]");
        p.validate(&at)?;
        check(ids.insert(p.mn_id.as_str()), &format!("{at}.mn_id"), || {
            format!("{} has another profile above", p.mn_id)
        })?;
        if let Some(a) = p.ipv4_home_address {
            check(
                !(p.mn_id.as_str() == "*" || p.mn_id.as_str().starts_with("*@")),
                &format!("{at}.ipv4_home_address"),
                || format!("a wildcard profile ({}) cannot pin an address", p.mn_id),
            )?;
            if let Some(j) = pinned4.insert(a, i) {
                return Err(ConfigError::new(
                    format!("{at}.ipv4_home_address"),
                    format!("{a} is already pinned to mobile_nodes[{j}]"),
                ));
            }
        }
        store
            .upsert(p.clone())
            .map_err(|e| ConfigError::new(&at, e.to_string()))?;
    }
    Ok(())
}

/// Most home network prefixes one node can have pinned: as many Prefix Information options
/// (32 bytes each) as fit a Router Advertisement with its source link-layer address and MTU
/// options in 1280 bytes, IPv6's minimum MTU (RFC 8200 §5); a PBU of as many fits the
/// Mobility Header's 2048 bytes as well.
pub const MAX_HOME_NETWORK_PREFIXES: usize = 37;

/// Why an address field refuses an IPv4 address.
const NO_IPV4_TRANSPORT: &str = "is an IPv4 address: the IPv4 transport of RFC 5844 §4 \
    (signalling over UDP port 5436 to an IPv4 LMA address, IPv4 tunnels between the LMA and \
    the MAGs) is not supported; use IPv6 addresses on the transport network (IPv4 home \
    addresses for the mobile nodes are supported: ipv4_pools)";

/// An IPv6 address of the transport network (the LMA address, a proxy-CoA). An IPv4 one is
/// refused with a message saying that the IPv4 transport (RFC 5844 §4) is not supported,
/// instead of serde's "invalid IPv6 address syntax".
pub(crate) fn transport_address<'de, D: Deserializer<'de>>(d: D) -> Result<Ipv6Addr, D::Error> {
    let text = String::deserialize(d)?;
    let text = text.trim();
    if let Ok(v4) = text.parse::<Ipv4Addr>() {
        return Err(serde::de::Error::custom(format!(
            "{v4} {NO_IPV4_TRANSPORT}"
        )));
    }
    text.parse::<Ipv6Addr>()
        .map_err(|e| serde::de::Error::custom(format!("{text:?}: {e}")))
}

/// [`transport_address`] for a command-line value (`--address`, `--proxy-coa`), with the
/// same message.
pub fn parse_transport_address(text: &str) -> Result<Ipv6Addr, String> {
    let text = text.trim();
    if let Ok(v4) = text.parse::<Ipv4Addr>() {
        return Err(format!("{v4} {NO_IPV4_TRANSPORT}"));
    }
    text.parse::<Ipv6Addr>()
        .map_err(|e| format!("{text:?}: {e}"))
}

/// How the LMA orders Proxy Binding Updates (RFC 5213 §5.5, §9.3 TimestampBasedApproachInUse).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReplayProtection {
    /// The Timestamp option (the RFC default).
    #[default]
    Timestamp,
    /// Sequence numbers compared modulo 2^16.
    SequenceNumber,
}

/// Where the link-local address the MAGs use on access links comes from (RFC 5213 §6.8).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "mode", deny_unknown_fields)]
pub enum LinkLocalMode {
    /// Every MAG uses the same link-local and link-layer address on every access link
    /// (FixedMAGLinkLocalAddressOnAllAccessLinks / FixedMAGLinkLayerAddressOnAllAccessLinks),
    /// so a mobile node never sees its default router change.
    Fixed {
        address: Ipv6Addr,
        link_layer_address: LinkLayerAddress,
    },
    /// The LMA generates the link-local address at the first registration and hands it to
    /// every MAG in the Link-local Address option (RFC 5213 §6.8 second approach).
    LmaGenerated {
        /// Link-layer address every MAG uses on access links.
        link_layer_address: LinkLayerAddress,
    },
}

impl Default for LinkLocalMode {
    fn default() -> Self {
        LinkLocalMode::Fixed {
            address: Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1),
            link_layer_address: LinkLayerAddress::mac([0x02, 0x00, 0x5e, 0x00, 0x53, 0x01]),
        }
    }
}

impl LinkLocalMode {
    pub fn link_layer_address(&self) -> LinkLayerAddress {
        match self {
            LinkLocalMode::Fixed {
                link_layer_address, ..
            }
            | LinkLocalMode::LmaGenerated { link_layer_address } => *link_layer_address,
        }
    }
}

/// RFC 5847 heartbeat between the LMA and its MAGs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HeartbeatConfig {
    /// HEARTBEAT_INTERVAL; 0 disables heartbeats. RFC 5847 §5: 60 s, SHOULD be 30..=3600 s.
    /// Values below 30 s are accepted for labs, with a warning at start.
    pub interval_s: u32,
    /// MISSING_HEARTBEATS_ALLOWED (RFC 5847 §5): 3 unanswered requests are tolerated, the 4th
    /// makes the peer unreachable (§3.1).
    pub missing_allowed: u32,
}

impl Default for HeartbeatConfig {
    fn default() -> Self {
        Self {
            interval_s: 60,
            missing_allowed: 3,
        }
    }
}

/// PFMIPv6 (RFC 5949) mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FastHandoverMode {
    /// Plain RFC 5213 handovers.
    #[default]
    Off,
    /// RFC 5949 §5.1: the previous MAG starts on a handover indication.
    Predictive,
    /// RFC 5949 §5.2: the new MAG starts when the node attaches.
    Reactive,
}

/// Fast handover settings of a domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FastHandoverConfig {
    pub mode: FastHandoverMode,
    /// Access point name (as named in a handover indication) -> the proxy-CoA of its MAG.
    pub access_points: BTreeMap<String, Ipv6Addr>,
    /// Packets buffered per node at the new MAG before the oldest is dropped.
    pub buffer_packets: u32,
    /// Bytes buffered per node at the new MAG before the oldest packet is dropped.
    pub buffer_bytes: u32,
    /// A handover that has not completed after this long is abandoned and its buffer freed.
    pub handover_timeout_ms: u32,
    /// End markers (see [`crate::output::DatapathCommand::EndMarker`]): how long at most a
    /// new MAG holds the LMA's packets for a node, waiting for the marker that says the
    /// previous MAG has forwarded everything; 0 turns end markers off (the LMA sends none,
    /// the MAGs hold nothing).
    pub end_marker_wait_ms: u32,
}

impl Default for FastHandoverConfig {
    fn default() -> Self {
        Self {
            mode: FastHandoverMode::Off,
            access_points: BTreeMap::new(),
            buffer_packets: 2048,
            buffer_bytes: 4 << 20,
            handover_timeout_ms: 5000,
            end_marker_wait_ms: 20,
        }
    }
}

/// Variables that must be the same on every entity of a domain (RFC 5213 §9.3), and the
/// domain-wide options built on them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DomainConfig {
    /// TimestampBasedApproachInUse (RFC 5213 §9.3): `timestamp` (default) or `sequence-number`.
    pub replay_protection: ReplayProtection,
    /// MobileNodeGeneratedTimestampInUse (RFC 5213 §9.3). Default false; must be false with
    /// sequence numbers.
    pub mobile_node_generated_timestamp: bool,
    /// The link-local address mode of RFC 5213 §6.8.
    pub link_local: LinkLocalMode,
    /// EnableMAGLocalRouting (RFC 5213 §9.2), applied domain-wide; a node's profile can
    /// override it.
    pub enable_mag_local_routing: bool,
    pub heartbeat: HeartbeatConfig,
    pub fast_handover: FastHandoverConfig,
}

impl Default for DomainConfig {
    fn default() -> Self {
        Self {
            replay_protection: ReplayProtection::Timestamp,
            mobile_node_generated_timestamp: false,
            link_local: LinkLocalMode::default(),
            enable_mag_local_routing: false,
            heartbeat: HeartbeatConfig::default(),
            fast_handover: FastHandoverConfig::default(),
        }
    }
}

impl DomainConfig {
    /// What the RFCs advise against but a lab may want: accepted, and said at start.
    pub fn advisories(&self, at: &str) -> Vec<String> {
        let mut out = Vec::new();
        let hb = self.heartbeat.interval_s;
        if (1..30).contains(&hb) {
            out.push(format!(
                "{at}.heartbeat.interval_s: {hb} s is below 30 s, which RFC 5847 §5 advises \
                 against outside labs (a peer is declared unreachable sooner, and the \
                 signalling load is higher)"
            ));
        }
        out
    }

    pub fn validate(&self, at: &str) -> Result<(), ConfigError> {
        check(
            !(self.mobile_node_generated_timestamp
                && self.replay_protection == ReplayProtection::SequenceNumber),
            &format!("{at}.mobile_node_generated_timestamp"),
            || "must be false when replay_protection is sequence-number (RFC 5213 §9.3)".into(),
        )?;
        check(
            !self.mobile_node_generated_timestamp,
            &format!("{at}.mobile_node_generated_timestamp"),
            || "mobile-node-generated timestamps are not supported".into(),
        )?;
        if let LinkLocalMode::Fixed { address, .. } = &self.link_local {
            check(
                address.segments()[0] & 0xffc0 == 0xfe80,
                &format!("{at}.link_local.address"),
                || format!("{address} is not a link-local (fe80::/10) address"),
            )?;
        }
        let mac = self.link_local.link_layer_address();
        // The MAGs answer on Ethernet access links with it (RFC 5213 §6.8, §6.9.3): a
        // unicast 6-byte MAC, or the MAG could not start its access side.
        check(
            mac.as_bytes().len() == 6,
            &format!("{at}.link_local.link_layer_address"),
            || {
                format!(
                    "{mac} is {} bytes; the MAGs' address on Ethernet access links is a \
                     6-byte MAC",
                    mac.as_bytes().len()
                )
            },
        )?;
        check(
            mac.as_bytes() != [0u8; 6].as_slice(),
            &format!("{at}.link_local.link_layer_address"),
            || "must not be all zero".into(),
        )?;
        check(
            mac.as_bytes().first().is_some_and(|b| b & 1 == 0),
            &format!("{at}.link_local.link_layer_address"),
            || format!("{mac} is a multicast MAC; a unicast one is needed"),
        )?;
        let hb = &self.heartbeat;
        check(
            hb.interval_s <= 3600,
            &format!("{at}.heartbeat.interval_s"),
            || {
                format!(
                    "{} is above 3600 s, the RFC 5847 §5 upper bound",
                    hb.interval_s
                )
            },
        )?;
        check(
            hb.interval_s == 0 || hb.missing_allowed >= 1,
            &format!("{at}.heartbeat.missing_allowed"),
            || "must be at least 1".into(),
        )?;
        let fh = &self.fast_handover;
        check(
            fh.buffer_packets >= 1,
            &format!("{at}.fast_handover.buffer_packets"),
            || "must be at least 1".into(),
        )?;
        check(
            fh.buffer_bytes >= 1500,
            &format!("{at}.fast_handover.buffer_bytes"),
            || "must hold at least one 1500-byte packet".into(),
        )?;
        check(
            (100..=60_000).contains(&fh.handover_timeout_ms),
            &format!("{at}.fast_handover.handover_timeout_ms"),
            || "must be between 100 and 60000".into(),
        )?;
        check(
            fh.end_marker_wait_ms <= 1000,
            &format!("{at}.fast_handover.end_marker_wait_ms"),
            || "must be between 0 and 1000".into(),
        )?;
        for (name, addr) in &fh.access_points {
            check(
                !name.is_empty(),
                &format!("{at}.fast_handover.access_points"),
                || "an access point name is empty".into(),
            )?;
            check(
                is_global_unicast(addr),
                &format!("{at}.fast_handover.access_points.{name}"),
                || format!("{addr} is not a unicast address a MAG can have"),
            )?;
        }
        Ok(())
    }
}

/// A mobile node's policy profile (RFC 5213 §6.2), the unit of authorization at the LMA and
/// of identification at the MAG.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "ProfileFile")]
pub struct MobileNodeProfile {
    /// The Mobile Node Identifier, an NAI (RFC 4283). With `mn_id_from_link_layer`, derived
    /// from the link-layer address (a file may leave it out).
    pub mn_id: Nai,
    /// The realm of an MN-ID derived from the node's (only) link-layer address (the seed's
    /// "MN-ID, e.g. the MN's MAC"): `02-00-00-10-00-01@realm`, see [`Nai::from_link_layer`].
    /// It goes on the wire as an NAI (subtype 1, the only one RFC 4283 allocates).
    #[serde(default)]
    pub mn_id_from_link_layer: Option<String>,
    /// Link-layer addresses the node attaches with; the MAG maps them to `mn_id`.
    #[serde(default)]
    pub link_layer_addresses: Vec<LinkLayerAddress>,
    /// Pinned home network prefixes. Empty: the LMA allocates one from its pools.
    #[serde(default)]
    pub home_network_prefixes: Vec<Ipv6Net>,
    /// Proxy-CoAs of the MAGs this node may register through. Empty: any authorized MAG.
    #[serde(default)]
    pub allowed_mags: Vec<Ipv6Addr>,
    /// Access technology type (RFC 5213 §8.5) used when the access link does not say.
    #[serde(default)]
    pub access_technology_type: Option<u8>,
    /// Overrides the domain's EnableMAGLocalRouting for this node (RFC 5213 §9.2).
    #[serde(default)]
    pub local_routing: Option<bool>,
    /// IPv6 home address mobility (home network prefixes). `false` for an IPv4-only node
    /// (RFC 5844 §3.2.2: the IP versions the node is entitled to).
    #[serde(default = "yes")]
    pub ipv6: bool,
    /// IPv4 home address mobility (RFC 5844 §3): the node gets an IPv4 home address from
    /// the LMA's `ipv4_pools`, by DHCP from its MAG.
    #[serde(default)]
    pub ipv4: bool,
    /// Pinned IPv4 home address (RFC 5844 §3.2.2, optional section of the profile); inside
    /// one of the LMA's `ipv4_pools`. Unset: the LMA allocates one.
    #[serde(default)]
    pub ipv4_home_address: Option<Ipv4Addr>,
    /// Whether the node is authorized for network-based mobility management (RFC 5213
    /// §5.3.1 rule 8). `false`: the LMA refuses its PBUs with PROXY_REG_NOT_ENABLED (152).
    #[serde(default = "yes")]
    pub proxy_registration_enabled: bool,
}

fn yes() -> bool {
    true
}

impl MobileNodeProfile {
    pub fn new(mn_id: Nai) -> Self {
        Self {
            mn_id,
            mn_id_from_link_layer: None,
            link_layer_addresses: Vec::new(),
            home_network_prefixes: Vec::new(),
            allowed_mags: Vec::new(),
            access_technology_type: None,
            local_routing: None,
            ipv6: true,
            ipv4: false,
            ipv4_home_address: None,
            proxy_registration_enabled: true,
        }
    }

    /// The profile of a node whose MN-ID is derived from its link-layer address `ll` in
    /// `realm` (see [`Nai::from_link_layer`]).
    pub fn from_link_layer(ll: LinkLayerAddress, realm: &str) -> Result<Self, ConfigError> {
        let mn_id = Nai::from_link_layer(&ll, realm)
            .map_err(|e| ConfigError::new("mn_id_from_link_layer", e.to_string()))?;
        let mut p = Self::new(mn_id);
        p.mn_id_from_link_layer = Some(realm.to_owned());
        p.link_layer_addresses = vec![ll];
        Ok(p)
    }

    /// With `mn_id_from_link_layer`: the MN-ID its link-layer address gives, or why there is
    /// none.
    fn derived_mn_id(&self, at: &str) -> Result<Option<Nai>, ConfigError> {
        derive_mn_id(
            self.mn_id_from_link_layer.as_deref(),
            &self.link_layer_addresses,
            at,
        )
    }

    pub fn validate(&self, at: &str) -> Result<(), ConfigError> {
        if let Some(derived) = self.derived_mn_id(at)? {
            check(derived == self.mn_id, &format!("{at}.mn_id"), || {
                format!(
                    "{} differs from {derived}, the MN-ID mn_id_from_link_layer makes; leave \
                     mn_id out",
                    self.mn_id
                )
            })?;
        }
        check(self.ipv6 || self.ipv4, &format!("{at}.ipv6"), || {
            "a node needs IPv6 or IPv4 home address mobility (or both); both are off".into()
        })?;
        check(
            self.ipv6 || self.home_network_prefixes.is_empty(),
            &format!("{at}.home_network_prefixes"),
            || "pinned prefixes need ipv6: true".into(),
        )?;
        if let Some(a) = self.ipv4_home_address {
            check(self.ipv4, &format!("{at}.ipv4_home_address"), || {
                format!("{a} is pinned but ipv4 is false; set ipv4: true")
            })?;
            check(
                !(a.is_unspecified() || a.is_loopback() || a.is_multicast() || a.is_broadcast()),
                &format!("{at}.ipv4_home_address"),
                || format!("{a} cannot be a home address"),
            )?;
        }
        check(
            self.home_network_prefixes.len() <= MAX_HOME_NETWORK_PREFIXES,
            &format!("{at}.home_network_prefixes"),
            || {
                format!(
                    "{} prefixes: at most {MAX_HOME_NETWORK_PREFIXES}, as many as a Router \
                     Advertisement carries in IPv6's minimum MTU",
                    self.home_network_prefixes.len()
                )
            },
        )?;
        for (i, p) in self.home_network_prefixes.iter().enumerate() {
            if let Some(j) = (self.home_network_prefixes.iter().take(i))
                .position(|q| q.contains(p) || p.contains(q))
            {
                return Err(ConfigError::new(
                    format!("{at}.home_network_prefixes[{i}]"),
                    format!(
                        "{p} overlaps home_network_prefixes[{j}] ({})",
                        self.home_network_prefixes[j]
                    ),
                ));
            }
            check(
                p.prefix_len() <= 64,
                &format!("{at}.home_network_prefixes[{i}]"),
                || format!("{p}: a home network prefix must be /64 or shorter for SLAAC"),
            )?;
            check(
                p.network() == p.addr(),
                &format!("{at}.home_network_prefixes[{i}]"),
                || format!("{p} has host bits set; did you mean {}?", p.trunc()),
            )?;
        }
        for (i, m) in self.allowed_mags.iter().enumerate() {
            check(
                is_global_unicast(m),
                &format!("{at}.allowed_mags[{i}]"),
                || {
                    format!(
                        "{m} cannot be a proxy-CoA (unspecified, loopback, multicast or link-local)"
                    )
                },
            )?;
        }
        Ok(())
    }
}

/// The MN-ID of a profile with `mn_id_from_link_layer: realm` and link-layer addresses
/// `lls` (exactly one is needed); `None` without a realm.
fn derive_mn_id(
    realm: Option<&str>,
    lls: &[LinkLayerAddress],
    at: &str,
) -> Result<Option<Nai>, ConfigError> {
    let Some(realm) = realm else {
        return Ok(None);
    };
    let [ll] = lls else {
        return Err(ConfigError::new(
            format!("{at}.link_layer_addresses"),
            format!(
                "mn_id_from_link_layer needs exactly one link-layer address to make the MN-ID \
                 of; there are {}",
                lls.len()
            ),
        ));
    };
    Nai::from_link_layer(ll, realm)
        .map(Some)
        .map_err(|e| ConfigError::new(format!("{at}.mn_id_from_link_layer"), e.to_string()))
}

/// A profile as a file writes it: the MN-ID may be left out when it is derived from the
/// link-layer address (`mn_id_from_link_layer`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileFile {
    #[serde(default)]
    mn_id: Option<Nai>,
    #[serde(default)]
    mn_id_from_link_layer: Option<String>,
    #[serde(default)]
    link_layer_addresses: Vec<LinkLayerAddress>,
    #[serde(default)]
    home_network_prefixes: Vec<Ipv6Net>,
    #[serde(default)]
    allowed_mags: Vec<Ipv6Addr>,
    #[serde(default)]
    access_technology_type: Option<u8>,
    #[serde(default)]
    local_routing: Option<bool>,
    #[serde(default = "yes")]
    ipv6: bool,
    #[serde(default)]
    ipv4: bool,
    #[serde(default)]
    ipv4_home_address: Option<Ipv4Addr>,
    #[serde(default = "yes")]
    proxy_registration_enabled: bool,
}

impl TryFrom<ProfileFile> for MobileNodeProfile {
    type Error = ConfigError;

    fn try_from(f: ProfileFile) -> Result<Self, ConfigError> {
        let derived = derive_mn_id(
            f.mn_id_from_link_layer.as_deref(),
            &f.link_layer_addresses,
            "mobile_nodes[]",
        )?;
        // Both given: `validate` says whether they agree (a profile written back out has
        // both).
        let Some(mn_id) = f.mn_id.or(derived) else {
            return Err(ConfigError::new(
                "mobile_nodes[].mn_id",
                "missing: give the node's NAI, or mn_id_from_link_layer with a realm",
            ));
        };
        Ok(MobileNodeProfile {
            mn_id,
            mn_id_from_link_layer: f.mn_id_from_link_layer,
            link_layer_addresses: f.link_layer_addresses,
            home_network_prefixes: f.home_network_prefixes,
            allowed_mags: f.allowed_mags,
            access_technology_type: f.access_technology_type,
            local_routing: f.local_routing,
            ipv6: f.ipv6,
            ipv4: f.ipv4,
            ipv4_home_address: f.ipv4_home_address,
            proxy_registration_enabled: f.proxy_registration_enabled,
        })
    }
}

/// One pool the LMA allocates home network prefixes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrefixPool {
    /// The aggregate, e.g. `2001:db8:100::/48`.
    pub prefix: Ipv6Net,
    /// Length of each allocated prefix; 64 by default.
    #[serde(default = "default_prefix_length")]
    pub prefix_length: u8,
}

fn default_prefix_length() -> u8 {
    64
}

/// One IPv4 home subnet the LMA allocates IPv4 home addresses from (RFC 5844 §3.1.2.2), one
/// address per node, with the subnet's prefix length and the pool's default router.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ipv4Pool {
    /// The home subnet, e.g. `192.0.2.0/24`; `/8` to `/30`.
    pub prefix: Ipv4Net,
    /// The nodes' default router (RFC 5844 §3.3.3), inside the subnet; never given to a
    /// node. Default: the subnet's first address.
    #[serde(default)]
    pub default_router: Option<Ipv4Addr>,
}

impl Ipv4Pool {
    fn validate(&self, at: &str) -> Result<(), ConfigError> {
        let p = self.prefix;
        check(p.network() == p.addr(), &format!("{at}.prefix"), || {
            format!("{p} has host bits set; did you mean {}?", p.trunc())
        })?;
        check(
            (8..=30).contains(&p.prefix_len()),
            &format!("{at}.prefix"),
            || format!("{p}: a pool is /8 to /30 (a router and at least one node)"),
        )?;
        check(
            !(p.network().is_loopback()
                || p.network().is_multicast()
                || p.network().is_unspecified()
                || p.network().octets()[0] >= 240),
            &format!("{at}.prefix"),
            || format!("{p} is not unicast address space"),
        )?;
        if let Some(r) = self.default_router {
            check(
                p.contains(&r) && r != p.network() && r != p.broadcast(),
                &format!("{at}.default_router"),
                || format!("{r} is not a host address of {p}"),
            )?;
        }
        Ok(())
    }
}

/// LMA protocol timers (RFC 5213 §9.1) and binding lifetimes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LmaTimers {
    /// MinDelayBeforeBCEDelete (RFC 5213 §9.1): 10000 ms.
    pub min_delay_before_bce_delete_ms: u32,
    /// MaxDelayBeforeNewBCEAssign (RFC 5213 §9.1): 1500 ms.
    pub max_delay_before_new_bce_assign_ms: u32,
    /// TimestampValidityWindow (RFC 5213 §9.1): 300 ms.
    pub timestamp_validity_window_ms: u32,
    /// Longest lifetime granted in a PBA; a longer request is cut down to this.
    pub max_binding_lifetime_s: u32,
}

impl Default for LmaTimers {
    fn default() -> Self {
        Self {
            min_delay_before_bce_delete_ms: 10_000,
            max_delay_before_new_bce_assign_ms: 1_500,
            timestamp_validity_window_ms: 300,
            max_binding_lifetime_s: 3_600,
        }
    }
}

/// Binding revocation (RFC 5846 §11).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RevocationConfig {
    /// BRIMaxRetriesNumber: 1.
    pub max_retries: u32,
    /// InitMINDelayBRIs: 1000 ms, not below 500 ms.
    pub initial_delay_ms: u32,
    /// MAX_BRACK_TIMEOUT: 2000 ms.
    pub max_timeout_ms: u32,
}

impl Default for RevocationConfig {
    fn default() -> Self {
        Self {
            max_retries: 1,
            initial_delay_ms: 1_000,
            max_timeout_ms: 2_000,
        }
    }
}

/// Which kernel mechanism carries the RFC 2473 IPv6-in-IPv6 tunnels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DatapathMode {
    /// `seg6` when the kernel has it, else `ip6tnl` when the kernel has it, else `tun`.
    #[default]
    Auto,
    /// seg6 lightweight tunnels in reduced encapsulation mode.
    Seg6,
    /// One ip6tnl link per peer.
    Ip6tnl,
    /// One veth pair per peer: the daemon reads what is routed into it on a packet socket,
    /// encapsulates it itself (RFC 2473 IPv6-in-IPv6 and IPv4-in-IPv6) and sends on raw
    /// sockets, for kernels with neither seg6 nor ip6tnl.
    Tun,
    /// Signalling only: no routes, no tunnels (for benchmarks and tests).
    None,
}

/// Datapath settings of a daemon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatapathConfig {
    pub mode: DatapathMode,
    /// Interface towards the transport network. Default: the one holding the signalling address.
    pub transport_interface: Option<String>,
    /// MTU of the transport link; the tunnel MTU is this minus 40 (RFC 2473 §6.7).
    /// Default: read from the transport interface.
    pub link_mtu: Option<u32>,
    /// Routing protocol number that marks the routes this daemon owns.
    pub route_protocol: u8,
    /// First of the routing tables this daemon owns.
    pub table_base: u32,
    /// Seconds a veth pair of the userspace tunnel (`mode: tun`) stays, idle, after the last
    /// route into it went: a node that moves back to that peer finds it made. 0: it is
    /// deleted at once.
    pub tun_linger_s: u32,
}

/// The longest `datapath.tun_linger_s` (a day).
pub const MAX_TUN_LINGER_S: u32 = 86_400;

impl Default for DatapathConfig {
    fn default() -> Self {
        Self {
            mode: DatapathMode::Auto,
            transport_interface: None,
            link_mtu: None,
            route_protocol: 135,
            table_base: 13500,
            tun_linger_s: 60,
        }
    }
}

impl DatapathConfig {
    fn validate(&self, at: &str) -> Result<(), ConfigError> {
        if let Some(mtu) = self.link_mtu {
            check(
                (1320..=65535).contains(&mtu),
                &format!("{at}.link_mtu"),
                || format!("{mtu}: IPv6 needs 1280 plus 40 for the tunnel header"),
            )?;
        }
        // Protocol numbers the kernel and routing daemons use (rtnetlink.h: 0..=4 kernel,
        // 186+ routing daemons) are refused so we never adopt someone else's routes.
        check(
            (5..=185).contains(&self.route_protocol),
            &format!("{at}.route_protocol"),
            || {
                format!(
                    "{} is reserved by the kernel or a routing daemon; use 5..=185",
                    self.route_protocol
                )
            },
        )?;
        check(
            (256..=u32::MAX - 16).contains(&self.table_base),
            &format!("{at}.table_base"),
            || "must be between 256 and 2^32-17 (0-255 are the kernel's tables)".into(),
        )?;
        check(
            self.tun_linger_s <= MAX_TUN_LINGER_S,
            &format!("{at}.tun_linger_s"),
            || format!("{}: at most {MAX_TUN_LINGER_S} (a day)", self.tun_linger_s),
        )?;
        Ok(())
    }
}

/// TLS for the gRPC API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// When set, clients must present a certificate signed by this CA.
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
}

/// gRPC API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    pub listen: SocketAddr,
    pub tls: Option<TlsConfig>,
    /// A second listener serving only the standard health service, in plain HTTP/2 whatever
    /// `tls` says: for probes that cannot do TLS (the kubelet's gRPC probes).
    pub health_listen: Option<SocketAddr>,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from((Ipv6Addr::UNSPECIFIED, 50051)),
            tls: None,
            health_listen: None,
        }
    }
}

/// TLS towards a gRPC server: the CA that signed its certificate, and the client certificate
/// to present when it asks for one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientTlsConfig {
    /// PEM certificate of the CA the server's certificate must chain to.
    pub ca: PathBuf,
    /// PEM client certificate; needs `key`.
    #[serde(default)]
    pub cert: Option<PathBuf>,
    /// PEM private key of `cert`.
    #[serde(default)]
    pub key: Option<PathBuf>,
    /// Name to check the server's certificate against, when it is not the URL's host.
    #[serde(default)]
    pub server_name: Option<String>,
}

/// Prometheus metrics endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// `None` disables the endpoint.
    pub listen: Option<SocketAddr>,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            listen: Some(SocketAddr::from((Ipv6Addr::UNSPECIFIED, 9464))),
        }
    }
}

/// Log output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Logging and tracing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TracingConfig {
    /// An `EnvFilter` directive, e.g. `info` or `info,pmip=debug`. `RUST_LOG` wins when set.
    pub level: String,
    pub format: LogFormat,
    /// OTLP/gRPC endpoint to export spans to, e.g. `http://otel-collector:4317`.
    pub otlp_endpoint: Option<String>,
}

impl Default for TracingConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: LogFormat::Text,
            otlp_endpoint: None,
        }
    }
}

/// Where the ESP protection of the signalling runs (RFC 5213 §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum IpsecMode {
    /// No ESP: Mobility Headers go in clear (a lab without keys; RFC 5213 §4 wants ESP).
    #[default]
    Off,
    /// The daemon does ESP itself on a raw IP-protocol-50 socket (a kernel without ESP).
    Userspace,
    /// The kernel does ESP: the daemon installs XFRM states and policies over netlink.
    Kernel,
    /// `kernel` when the kernel accepts an ESP state with the configured algorithm, else
    /// `userspace`.
    Auto,
}

/// An ESP transform (RFC 8221 §5, §6 name them as MUST and SHOULD+).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EspAlgorithm {
    /// AES-GCM with a 16-octet ICV and a 128-bit key (RFC 4106): 20 octets of keying
    /// material, the key then the 4-octet salt (RFC 4106 §8.1).
    #[serde(rename = "aes-128-gcm")]
    Aes128Gcm,
    /// AES-GCM, 256-bit key: 36 octets of keying material.
    #[serde(rename = "aes-256-gcm")]
    Aes256Gcm,
    /// AES-CBC with a 128-bit key (RFC 3602) and HMAC-SHA-256-128 (RFC 4868): 48 octets,
    /// the encryption key then the 32-octet HMAC key.
    #[serde(rename = "aes-128-cbc-hmac-sha-256")]
    Aes128CbcHmacSha256,
    /// AES-CBC with a 256-bit key and HMAC-SHA-256-128: 64 octets.
    #[serde(rename = "aes-256-cbc-hmac-sha-256")]
    Aes256CbcHmacSha256,
}

impl EspAlgorithm {
    /// Octets of keying material per direction.
    pub fn key_len(self) -> usize {
        match self {
            EspAlgorithm::Aes128Gcm => 20,
            EspAlgorithm::Aes256Gcm => 36,
            EspAlgorithm::Aes128CbcHmacSha256 => 48,
            EspAlgorithm::Aes256CbcHmacSha256 => 64,
        }
    }

    /// The configuration's name for it.
    pub fn name(self) -> &'static str {
        match self {
            EspAlgorithm::Aes128Gcm => "aes-128-gcm",
            EspAlgorithm::Aes256Gcm => "aes-256-gcm",
            EspAlgorithm::Aes128CbcHmacSha256 => "aes-128-cbc-hmac-sha-256",
            EspAlgorithm::Aes256CbcHmacSha256 => "aes-256-cbc-hmac-sha-256",
        }
    }
}

/// Keying material, written as hex (an optional `0x`, then two digits per octet). Never
/// printed by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyMaterial(Vec<u8>);

impl KeyMaterial {
    pub fn new(octets: Vec<u8>) -> Self {
        KeyMaterial(octets)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Reads hex text: an optional `0x`, hex digits, and any whitespace or `:` between them
    /// (a key file with a trailing newline, a key copied from `ip xfrm state`).
    pub fn from_hex(text: &str) -> Result<Self, String> {
        let t = text.trim();
        let t = t
            .strip_prefix("0x")
            .or_else(|| t.strip_prefix("0X"))
            .unwrap_or(t);
        let digits: Vec<u8> = t
            .bytes()
            .filter(|b| !(b.is_ascii_whitespace() || *b == b':'))
            .collect();
        if digits.is_empty() {
            return Err("no hex digits".into());
        }
        if !digits.len().is_multiple_of(2) {
            return Err(format!("{} hex digits: not whole octets", digits.len()));
        }
        let nibble = |b: u8| match b {
            b'0'..=b'9' => Ok(b - b'0'),
            b'a'..=b'f' => Ok(b - b'a' + 10),
            b'A'..=b'F' => Ok(b - b'A' + 10),
            _ => Err(format!("{:?} is not a hex digit", char::from(b))),
        };
        let mut out = Vec::with_capacity(digits.len() / 2);
        for pair in digits.chunks_exact(2) {
            out.push(nibble(pair[0])? << 4 | nibble(pair[1])?);
        }
        Ok(KeyMaterial(out))
    }

    pub fn to_hex(&self) -> String {
        let mut s = String::with_capacity(2 + self.0.len() * 2);
        s.push_str("0x");
        for b in &self.0 {
            s.push_str(&format!("{b:02x}"));
        }
        s
    }
}

impl std::fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyMaterial({} octets)", self.0.len())
    }
}

impl Serialize for KeyMaterial {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for KeyMaterial {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        KeyMaterial::from_hex(&s).map_err(serde::de::Error::custom)
    }
}

/// One manually keyed pair of ESP security associations with a peer (RFC 4301 §4.4.2.1):
/// one inbound, one outbound, each with its own SPI and key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecurityAssociationConfig {
    /// The local signalling address this entry belongs to. Not set: this daemon's. Set: the
    /// entry is used only by the daemon whose address (LMA address or proxy-CoA) it is, so
    /// that one file can hold the SAs of a whole domain (as the operator writes it).
    #[serde(default)]
    pub local: Option<Ipv6Addr>,
    /// The peer's signalling address: the LMA address at a MAG; a MAG's proxy-CoA at the LMA
    /// or (for HI/HAck, RFC 5949 §7) at another MAG.
    pub peer: Ipv6Addr,
    pub algorithm: EspAlgorithm,
    /// SPI of the inbound SA (what the peer sends with). Above 255 (RFC 4303 §2.1).
    pub spi_in: u32,
    /// SPI of the outbound SA (what this daemon sends with). Above 255.
    pub spi_out: u32,
    /// Inbound keying material in hex. Exactly one of `key_in` and `key_in_file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_in: Option<KeyMaterial>,
    /// A file holding the inbound keying material in hex (e.g. a mounted Secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_in_file: Option<PathBuf>,
    /// Outbound keying material in hex. Exactly one of `key_out` and `key_out_file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_out: Option<KeyMaterial>,
    /// A file holding the outbound keying material in hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_out_file: Option<PathBuf>,
    /// 64-bit Extended Sequence Numbers (RFC 4303 §2.2.1); both ends must agree.
    #[serde(default)]
    pub esn: bool,
}

impl SecurityAssociationConfig {
    pub fn validate(&self, at: &str) -> Result<(), ConfigError> {
        if let Some(local) = self.local {
            check(is_global_unicast(&local), &format!("{at}.local"), || {
                format!("{local} cannot be a signalling address")
            })?;
            check(local != self.peer, &format!("{at}.local"), || {
                format!("{local} is also the entry's peer")
            })?;
        }
        check(is_global_unicast(&self.peer), &format!("{at}.peer"), || {
            format!("{} cannot be a signalling peer", self.peer)
        })?;
        for (name, spi) in [("spi_in", self.spi_in), ("spi_out", self.spi_out)] {
            check(spi > 255, &format!("{at}.{name}"), || {
                format!("{spi}: SPIs 0..=255 are reserved (RFC 4303 §2.1)")
            })?;
        }
        for (dir, key, file) in [
            ("in", &self.key_in, &self.key_in_file),
            ("out", &self.key_out, &self.key_out_file),
        ] {
            check(
                key.is_some() != file.is_some(),
                &format!("{at}.key_{dir}"),
                || format!("give exactly one of key_{dir} and key_{dir}_file"),
            )?;
            if let Some(k) = key {
                check(
                    k.as_bytes().len() == self.algorithm.key_len(),
                    &format!("{at}.key_{dir}"),
                    || {
                        format!(
                            "{} octets; {} needs {}",
                            k.as_bytes().len(),
                            self.algorithm.name(),
                            self.algorithm.key_len()
                        )
                    },
                )?;
            }
        }
        Ok(())
    }
}

/// IPsec ESP for the signalling (RFC 5213 §4, RFC 5949 §7, RFC 5846 §13).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IpsecConfig {
    pub mode: IpsecMode,
    /// Manually keyed SAs, one entry per peer and key generation. The first entry of a peer
    /// is used to send; every entry is accepted on receipt (a rollover has two).
    pub security_associations: Vec<SecurityAssociationConfig>,
    /// A YAML file with more entries of the same shape (keys inline), re-read when it
    /// changes: how keys are rolled over without a restart (a mounted Secret).
    pub security_associations_file: Option<PathBuf>,
    /// Anti-replay window in packets (RFC 4303 §3.4.3: at least 32, 64 by default).
    pub replay_window: u32,
    /// How often the key and SA files are checked for changes.
    pub reload_interval_s: u32,
}

impl Default for IpsecConfig {
    fn default() -> Self {
        Self {
            mode: IpsecMode::Off,
            security_associations: Vec::new(),
            security_associations_file: None,
            replay_window: 64,
            reload_interval_s: 10,
        }
    }
}

impl IpsecConfig {
    pub fn validate(&self, at: &str) -> Result<(), ConfigError> {
        check(
            (32..=1024).contains(&self.replay_window),
            &format!("{at}.replay_window"),
            || {
                format!(
                    "{} must be between 32 (RFC 4303 §3.4.3) and 1024",
                    self.replay_window
                )
            },
        )?;
        check(
            (1..=3600).contains(&self.reload_interval_s),
            &format!("{at}.reload_interval_s"),
            || "must be between 1 and 3600".into(),
        )?;
        check(
            self.mode == IpsecMode::Off
                || !self.security_associations.is_empty()
                || self.security_associations_file.is_some(),
            &format!("{at}.security_associations"),
            || {
                "ESP is on but no security association is configured (nor a \
                 security_associations_file)"
                    .into()
            },
        )?;
        validate_security_associations(
            &self.security_associations,
            &format!("{at}.security_associations"),
        )
    }
}

/// Each entry, and the entries together: one inbound SPI once per peer (RFC 4301 §4.1: the
/// receiver finds the SA by SPI and source address).
pub fn validate_security_associations(
    sas: &[SecurityAssociationConfig],
    at: &str,
) -> Result<(), ConfigError> {
    let mut seen = std::collections::HashSet::new();
    for (i, sa) in sas.iter().enumerate() {
        let here = format!("{at}[{i}]");
        sa.validate(&here)?;
        inbound_spi_once(&mut seen, sa, &here)?;
    }
    Ok(())
}

/// `sa`'s inbound SPI is not one of `seen` for the same peer (then it is added).
pub fn inbound_spi_once(
    seen: &mut std::collections::HashSet<(Ipv6Addr, u32)>,
    sa: &SecurityAssociationConfig,
    here: &str,
) -> Result<(), ConfigError> {
    check(
        seen.insert((sa.peer, sa.spi_in)),
        &format!("{here}.spi_in"),
        || {
            format!(
                "{} is already an inbound SPI of {} in an entry above",
                sa.spi_in, sa.peer
            )
        },
    )
}

/// The LMA daemon's configuration file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LmaConfig {
    /// A name for logs and metrics.
    #[serde(default = "default_lma_name")]
    pub name: String,
    /// The LMA address (LMAA): where MAGs send PBUs and the LMA end of every tunnel.
    /// May be left out when the daemon is given it with `--address` or `PMIP_LMA_ADDRESS`
    /// (how a Kubernetes pod learns its host's address). IPv6 only: the IPv4 transport of
    /// RFC 5844 §4 is refused.
    #[serde(default = "unspecified", deserialize_with = "transport_address")]
    pub address: Ipv6Addr,
    #[serde(default)]
    pub domain: DomainConfig,
    /// Pools that home network prefixes are allocated from, in order.
    pub prefix_pools: Vec<PrefixPool>,
    /// IPv4 home subnets that IPv4 home addresses are allocated from, in order (RFC 5844
    /// §3). Empty: no IPv4 home address mobility (PBUs asking for it get status 170).
    #[serde(default)]
    pub ipv4_pools: Vec<Ipv4Pool>,
    #[serde(default)]
    pub timers: LmaTimers,
    #[serde(default)]
    pub revocation: RevocationConfig,
    /// MAGs (proxy-CoAs) allowed to send PBUs, in addition to those added over the API;
    /// each an address, or an address with a name for people.
    #[serde(default)]
    pub authorized_mags: Vec<ConfiguredMag>,
    /// Mobile node profiles, in addition to those added over the API.
    #[serde(default)]
    pub mobile_nodes: Vec<MobileNodeProfile>,
    #[serde(default)]
    pub datapath: DatapathConfig,
    /// Directory of the durable binding and policy store.
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    #[serde(default)]
    pub api: ApiConfig,
    #[serde(default)]
    pub metrics: MetricsConfig,
    #[serde(default)]
    pub tracing: TracingConfig,
    /// ESP for the signalling with the MAGs: PBU/PBA, heartbeats, BRI/BRA (RFC 5213 §4,
    /// RFC 5846 §13).
    #[serde(default)]
    pub ipsec: IpsecConfig,
    /// Nodes whose last PBU was refused that the LMA remembers for the gRPC Watch (REJECTED
    /// events), the oldest forgotten first: what bounds the memory a flood of refused PBUs
    /// takes. 0 remembers none.
    #[serde(default = "default_refused_nodes_kept")]
    pub refused_nodes_kept: u32,
}

/// [`LmaConfig::refused_nodes_kept`] by default.
pub const DEFAULT_REFUSED_NODES_KEPT: u32 = 100_000;

fn default_refused_nodes_kept() -> u32 {
    DEFAULT_REFUSED_NODES_KEPT
}

/// A MAG the LMA accepts Proxy Binding Updates from (RFC 5213 §5.3.1): its proxy-CoA, and a
/// name the LMA shows with its bindings. Written as the bare address, or as
/// `{proxy_coa: ..., name: ...}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(from = "ConfiguredMagForm", into = "ConfiguredMagForm")]
pub struct ConfiguredMag {
    pub proxy_coa: Ipv6Addr,
    pub name: Option<String>,
}

impl ConfiguredMag {
    /// An unnamed MAG.
    pub fn new(proxy_coa: Ipv6Addr) -> Self {
        Self {
            proxy_coa,
            name: None,
        }
    }

    pub fn named(proxy_coa: Ipv6Addr, name: impl Into<String>) -> Self {
        Self {
            proxy_coa,
            name: Some(name.into()),
        }
    }
}

impl From<Ipv6Addr> for ConfiguredMag {
    fn from(a: Ipv6Addr) -> Self {
        Self::new(a)
    }
}

/// The two ways of writing an [`ConfiguredMag`].
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum ConfiguredMagForm {
    Address(Ipv6Addr),
    Named(NamedMag),
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct NamedMag {
    proxy_coa: Ipv6Addr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
}

impl From<ConfiguredMagForm> for ConfiguredMag {
    fn from(f: ConfiguredMagForm) -> Self {
        match f {
            ConfiguredMagForm::Address(a) => Self::new(a),
            ConfiguredMagForm::Named(n) => Self {
                proxy_coa: n.proxy_coa,
                name: n.name.filter(|n| !n.is_empty()),
            },
        }
    }
}

impl From<ConfiguredMag> for ConfiguredMagForm {
    fn from(m: ConfiguredMag) -> Self {
        match m.name {
            None => ConfiguredMagForm::Address(m.proxy_coa),
            Some(name) => ConfiguredMagForm::Named(NamedMag {
                proxy_coa: m.proxy_coa,
                name: Some(name),
            }),
        }
    }
}

/// Whether `p` can be pinned to a node by an LMA with these pools: outside every pool, or
/// exactly one of the prefixes a pool hands out (inside it, with its `prefix_length`). A
/// pinned prefix that overlaps a pool otherwise would overlap prefixes the pool allocates to
/// other nodes. The one rule for the configuration file and the gRPC API; the error says why.
pub fn check_pinned_prefix(pools: &[PrefixPool], p: &Ipv6Net) -> Result<(), String> {
    for pool in pools {
        let overlaps = pool.prefix.contains(p) || p.contains(&pool.prefix);
        if overlaps && !(pool.prefix.contains(p) && p.prefix_len() == pool.prefix_length) {
            return Err(format!(
                "{p} overlaps the pool {} without being one of its /{} prefixes",
                pool.prefix, pool.prefix_length
            ));
        }
    }
    Ok(())
}

fn default_lma_name() -> String {
    "lma".into()
}

fn default_mag_name() -> String {
    "mag".into()
}

fn unspecified() -> Ipv6Addr {
    Ipv6Addr::UNSPECIFIED
}

fn default_state_dir() -> PathBuf {
    PathBuf::from("/var/lib/pmip")
}

/// An address a MAG can use as its proxy-CoA (and an LMA as its address): not unspecified,
/// loopback, multicast or link-local.
pub fn is_global_unicast(a: &Ipv6Addr) -> bool {
    !(a.is_unspecified()
        || a.is_loopback()
        || a.is_multicast()
        || a.segments()[0] & 0xffc0 == 0xfe80)
}

/// The annotation Multus writes on a pod: a JSON list of its attachments as
/// [`AttachmentStatus`] entries (Network Plumbing Working Group, "Kubernetes Network Custom
/// Resource Definition De-facto Standard" v1, §4.1.2).
pub const NETWORK_STATUS_ANNOTATION: &str = "k8s.v1.cni.cncf.io/network-status";
/// The annotation that asks Multus for secondary attachments (a JSON list of network selection
/// elements, same standard §4.1.2).
pub const NETWORKS_ANNOTATION: &str = "k8s.v1.cni.cncf.io/networks";

/// One entry of the `k8s.v1.cni.cncf.io/network-status` annotation: an attachment of the pod
/// (`name` is `namespace/name` of its NetworkAttachmentDefinition, or the cluster network's
/// name for the default one), its interface in the pod and its addresses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct AttachmentStatus {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ips: Vec<String>,
    #[serde(default)]
    pub default: bool,
}

impl AttachmentStatus {
    /// Whether this entry is the attachment `network` (`namespace/name`, or a bare name)
    /// and, when one is given, on `interface`.
    pub fn is(&self, network: &str, interface: Option<&str>) -> bool {
        let bare = |n: &str| n.rsplit_once('/').map_or(n, |(_, b)| b).to_owned();
        let same_name = self.name == network
            || (!self.name.contains('/') || !network.contains('/'))
                && bare(&self.name) == bare(network);
        let same_interface = match (interface, self.interface.as_deref()) {
            (Some(want), Some(have)) => want == have,
            _ => true,
        };
        same_name && same_interface
    }

    /// Its first global unicast IPv6 address (`ips` may carry a prefix length).
    pub fn first_global_ipv6(&self) -> Option<Ipv6Addr> {
        self.ips
            .iter()
            .filter_map(|i| i.split('/').next()?.trim().parse::<Ipv6Addr>().ok())
            .find(is_global_unicast)
    }
}

/// The address a daemon (or the operator, for a daemon) takes from its transport attachment:
/// the first global unicast IPv6 address of the entry for `network` (on `interface` when one
/// is named). `None` while Multus has not reported it, or when it has no such address.
pub fn attachment_address(
    statuses: &[AttachmentStatus],
    network: &str,
    interface: Option<&str>,
) -> Option<Ipv6Addr> {
    statuses
        .iter()
        .filter(|s| !s.default && s.is(network, interface))
        .find_map(AttachmentStatus::first_global_ipv6)
}

impl LmaConfig {
    /// See [`DomainConfig::advisories`].
    pub fn advisories(&self) -> Vec<String> {
        self.domain.advisories("domain")
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        check(!self.address.is_unspecified(), "address", || {
            "missing: set it in the file, with --address or with PMIP_LMA_ADDRESS".into()
        })?;
        check(is_global_unicast(&self.address), "address", || {
            format!(
                "{} cannot be an LMA address (unspecified, loopback, multicast or link-local)",
                self.address
            )
        })?;
        self.domain.validate("domain")?;
        check(
            self.refused_nodes_kept <= 1_000_000,
            "refused_nodes_kept",
            || format!("{} is above 1000000", self.refused_nodes_kept),
        )?;
        check(!self.prefix_pools.is_empty(), "prefix_pools", || {
            "at least one pool is needed to allocate home network prefixes".into()
        })?;
        for (i, pool) in self.prefix_pools.iter().enumerate() {
            let at = format!("prefix_pools[{i}]");
            check(
                is_global_unicast(&pool.prefix.network()),
                &format!("{at}.prefix"),
                || {
                    format!(
                        "{} cannot hold home network prefixes (unspecified, loopback, multicast or \
                     link-local)",
                        pool.prefix
                    )
                },
            )?;
            // A home network prefix holding the LMA's or a MAG's own address would route the
            // signalling and the tunnels to it into a node's tunnel.
            for (what, a) in std::iter::once(("the LMA's address", self.address)).chain(
                (self.authorized_mags.iter()).map(|m| ("an authorized MAG's address", m.proxy_coa)),
            ) {
                check(!pool.prefix.contains(&a), &format!("{at}.prefix"), || {
                    format!("{} holds {a}, {what}", pool.prefix)
                })?;
            }
            check(
                pool.prefix.network() == pool.prefix.addr(),
                &format!("{at}.prefix"),
                || {
                    format!(
                        "{} has host bits set; did you mean {}?",
                        pool.prefix,
                        pool.prefix.trunc()
                    )
                },
            )?;
            check(
                (pool.prefix.prefix_len()..=64).contains(&pool.prefix_length),
                &format!("{at}.prefix_length"),
                || {
                    format!(
                        "{} must be between the pool's own length ({}) and 64",
                        pool.prefix_length,
                        pool.prefix.prefix_len()
                    )
                },
            )?;
            for (j, other) in self.prefix_pools.iter().enumerate().take(i) {
                check(
                    !(other.prefix.contains(&pool.prefix) || pool.prefix.contains(&other.prefix)),
                    &format!("{at}.prefix"),
                    || {
                        format!(
                            "{} overlaps prefix_pools[{j}] ({})",
                            pool.prefix, other.prefix
                        )
                    },
                )?;
            }
        }
        for (i, pool) in self.ipv4_pools.iter().enumerate() {
            let at = format!("ipv4_pools[{i}]");
            pool.validate(&at)?;
            for (j, other) in self.ipv4_pools.iter().enumerate().take(i) {
                check(
                    !(other.prefix.contains(&pool.prefix) || pool.prefix.contains(&other.prefix)),
                    &format!("{at}.prefix"),
                    || {
                        format!(
                            "{} overlaps ipv4_pools[{j}] ({})",
                            pool.prefix, other.prefix
                        )
                    },
                )?;
            }
        }
        let v4 = crate::ipv4_pool::Ipv4Allocator::new(&self.ipv4_pools);
        for (i, p) in self.mobile_nodes.iter().enumerate() {
            if let Some(a) = p.ipv4_home_address {
                check(
                    v4.lease_for(a).is_some(),
                    &format!("mobile_nodes[{i}].ipv4_home_address"),
                    || {
                        format!(
                            "{a} is not a node address of any ipv4_pools entry (RFC 5844 \
                             §3.1.2.2: the address must be anchored at this LMA)"
                        )
                    },
                )?;
            }
        }
        let t = &self.timers;
        check(
            t.min_delay_before_bce_delete_ms <= 600_000,
            "timers.min_delay_before_bce_delete_ms",
            || "must be at most 600000".into(),
        )?;
        check(
            t.max_delay_before_new_bce_assign_ms <= 60_000,
            "timers.max_delay_before_new_bce_assign_ms",
            || "must be at most 60000".into(),
        )?;
        check(
            (1..=60_000).contains(&t.timestamp_validity_window_ms),
            "timers.timestamp_validity_window_ms",
            || "must be between 1 and 60000".into(),
        )?;
        check(
            (4..=262_140).contains(&t.max_binding_lifetime_s),
            "timers.max_binding_lifetime_s",
            || "must be between 4 and 262140 (the 16-bit lifetime field in 4 s units)".into(),
        )?;
        check(
            self.revocation.initial_delay_ms >= 500,
            "revocation.initial_delay_ms",
            || "must be at least 500 (RFC 5846 §11 InitMINDelayBRIs)".into(),
        )?;
        check(
            self.revocation.max_timeout_ms >= self.revocation.initial_delay_ms,
            "revocation.max_timeout_ms",
            || "must be at least revocation.initial_delay_ms".into(),
        )?;
        for (i, m) in self.authorized_mags.iter().enumerate() {
            let a = m.proxy_coa;
            check(
                is_global_unicast(&a),
                &format!("authorized_mags[{i}]"),
                || format!("{a} cannot be a proxy-CoA"),
            )?;
            check(
                !self.authorized_mags[..i].iter().any(|o| o.proxy_coa == a),
                &format!("authorized_mags[{i}]"),
                || format!("{a} is given twice"),
            )?;
        }
        validate_profiles(&self.mobile_nodes)?;
        for (i, p) in self.mobile_nodes.iter().enumerate() {
            for (j, h) in p.home_network_prefixes.iter().enumerate() {
                check_pinned_prefix(&self.prefix_pools, h).map_err(|reason| {
                    ConfigError::new(
                        format!("mobile_nodes[{i}].home_network_prefixes[{j}]"),
                        reason,
                    )
                })?;
            }
        }
        self.datapath.validate("datapath")?;
        self.ipsec.validate("ipsec")?;
        Ok(())
    }
}

/// MAG protocol timers (RFC 5213 §6.9.4, RFC 6275 §12).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MagTimers {
    /// INITIAL_BINDACK_TIMEOUT (RFC 6275 §12): 1000 ms.
    pub initial_bindack_timeout_ms: u32,
    /// MAX_BINDACK_TIMEOUT (RFC 6275 §12): 32000 ms.
    pub max_bindack_timeout_ms: u32,
    /// PBU transmissions before the MAG gives up on a registration.
    pub max_pbu_transmissions: u32,
    /// After giving up, the MAG tries again after this many seconds for as long as the node
    /// stays on its link (an LMA that was unreachable comes back); 0: never again.
    pub registration_retry_s: u32,
    /// Lifetime requested in PBUs.
    pub requested_lifetime_s: u32,
    /// A binding is refreshed when this share (per cent) of its granted lifetime has passed.
    pub refresh_at_percent: u8,
}

impl Default for MagTimers {
    fn default() -> Self {
        Self {
            initial_bindack_timeout_ms: 1_000,
            max_bindack_timeout_ms: 32_000,
            max_pbu_transmissions: 8,
            registration_retry_s: 60,
            requested_lifetime_s: 3_600,
            refresh_at_percent: 80,
        }
    }
}

/// Router Advertisements the MAG sends on access links (RFC 4861 §6.2.1, RFC 5213 §6.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RouterAdvertisementConfig {
    /// Interval of unsolicited RAs to each attached node; 0 disables them.
    pub interval_s: u32,
    /// Router Lifetime field.
    pub router_lifetime_s: u16,
    /// MTU option value. Default: the tunnel MTU (the transport link's MTU minus the 40-octet
    /// tunnel header), which the MAG daemon fills in at start.
    pub mtu: Option<u32>,
    /// Valid and preferred lifetime of the prefix. Default: the binding's lifetime.
    pub prefix_lifetime_s: Option<u32>,
}

impl Default for RouterAdvertisementConfig {
    fn default() -> Self {
        Self {
            interval_s: 30,
            router_lifetime_s: 1_800,
            mtu: None,
            prefix_lifetime_s: None,
        }
    }
}

/// Detachment by Neighbor Unreachability Detection (RFC 5213 §6.13, RFC 4861 §7.3): for
/// access links that stay up when the node leaves (Wi-Fi behind a bridge). A registered
/// node the MAG has not heard from for `idle_s` is sent unicast Neighbor Solicitations,
/// `probe_interval_ms` apart; after `probes` unanswered ones it counts as detached (a
/// de-registration). So a node that goes silent is detached within `idle_s +
/// probes × probe_interval_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NeighborUnreachabilityConfig {
    /// Silence before the first probe (RFC 4861 REACHABLE_TIME, 30 s); 0 turns detection
    /// off (then only a link going down detaches).
    pub idle_s: u32,
    /// Unanswered probes before the node counts as detached (MAX_UNICAST_SOLICIT, 3).
    pub probes: u32,
    /// Between probes (RETRANS_TIMER, 1000 ms).
    pub probe_interval_ms: u32,
}

impl Default for NeighborUnreachabilityConfig {
    fn default() -> Self {
        Self {
            idle_s: 30,
            probes: 3,
            probe_interval_ms: 1_000,
        }
    }
}

impl NeighborUnreachabilityConfig {
    pub fn enabled(&self) -> bool {
        self.idle_s > 0
    }

    fn validate(&self, at: &str) -> Result<(), ConfigError> {
        if !self.enabled() {
            return Ok(());
        }
        check(self.idle_s <= 86_400, &format!("{at}.idle_s"), || {
            format!(
                "{} s: at most 86400 (a day); 0 turns detection off",
                self.idle_s
            )
        })?;
        check(
            (1..=10).contains(&self.probes),
            &format!("{at}.probes"),
            || format!("{}: between 1 and 10", self.probes),
        )?;
        check(
            (100..=60_000).contains(&self.probe_interval_ms),
            &format!("{at}.probe_interval_ms"),
            || format!("{} ms: between 100 and 60000", self.probe_interval_ms),
        )
    }
}

/// The MAG daemon's configuration file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MagConfig {
    #[serde(default = "default_mag_name")]
    pub name: String,
    /// This MAG's address on the transport network: the proxy-CoA. May be left out when the
    /// daemon is given it with `--proxy-coa` or `PMIP_PROXY_COA`. IPv6 only (no RFC 5844 §4
    /// IPv4-Proxy-CoA).
    #[serde(default = "unspecified", deserialize_with = "transport_address")]
    pub proxy_coa: Ipv6Addr,
    /// The LMA address. IPv6 only (no RFC 5844 §4 IPv4-LMAA).
    #[serde(deserialize_with = "transport_address")]
    pub lma_address: Ipv6Addr,
    #[serde(default)]
    pub domain: DomainConfig,
    /// Access interfaces by name or by a pattern with `*` (e.g. `wlan*`).
    pub access_interfaces: Vec<String>,
    #[serde(default)]
    pub timers: MagTimers,
    #[serde(default)]
    pub router_advertisement: RouterAdvertisementConfig,
    /// Detachment of nodes that stop answering on a link that stays up.
    #[serde(default)]
    pub neighbor_unreachability: NeighborUnreachabilityConfig,
    /// Mobile node profiles known locally.
    #[serde(default)]
    pub mobile_nodes: Vec<MobileNodeProfile>,
    /// gRPC address of the LMA's Policy service (e.g. `http://[2001:db8::1]:50051`): profiles
    /// are fetched from there and kept current. Local `mobile_nodes` win on conflict.
    #[serde(default)]
    pub policy_server: Option<String>,
    /// TLS towards `policy_server` (its URL then starts with `https://`).
    #[serde(default)]
    pub policy_server_tls: Option<ClientTlsConfig>,
    #[serde(default)]
    pub datapath: DatapathConfig,
    /// Directory for the MAG's small durable state (restart counter, binding update list).
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    #[serde(default)]
    pub api: ApiConfig,
    #[serde(default)]
    pub metrics: MetricsConfig,
    #[serde(default)]
    pub tracing: TracingConfig,
    /// ESP for the signalling with the LMA (PBU/PBA, heartbeats, BRI/BRA) and with other MAGs
    /// (HI/HAck, RFC 5949 §7).
    #[serde(default)]
    pub ipsec: IpsecConfig,
}

impl MagConfig {
    /// See [`DomainConfig::advisories`].
    pub fn advisories(&self) -> Vec<String> {
        self.domain.advisories("domain")
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        check(!self.proxy_coa.is_unspecified(), "proxy_coa", || {
            "missing: set it in the file, with --proxy-coa or with PMIP_PROXY_COA".into()
        })?;
        check(is_global_unicast(&self.proxy_coa), "proxy_coa", || {
            format!("{} cannot be a proxy-CoA", self.proxy_coa)
        })?;
        check(is_global_unicast(&self.lma_address), "lma_address", || {
            format!("{} cannot be an LMA address", self.lma_address)
        })?;
        check(self.proxy_coa != self.lma_address, "lma_address", || {
            "equals proxy_coa".into()
        })?;
        self.domain.validate("domain")?;
        check(
            !self.access_interfaces.is_empty(),
            "access_interfaces",
            || "at least one access interface name or pattern is needed".into(),
        )?;
        for (i, name) in self.access_interfaces.iter().enumerate() {
            check(
                !name.is_empty() && name.len() < 16 && !name.contains(['/', ' ']),
                &format!("access_interfaces[{i}]"),
                || format!("{name:?} is not an interface name or pattern"),
            )?;
        }
        let t = &self.timers;
        check(
            t.initial_bindack_timeout_ms >= 10,
            "timers.initial_bindack_timeout_ms",
            || "must be at least 10".into(),
        )?;
        check(
            t.max_bindack_timeout_ms >= t.initial_bindack_timeout_ms,
            "timers.max_bindack_timeout_ms",
            || "must be at least timers.initial_bindack_timeout_ms".into(),
        )?;
        check(
            t.max_pbu_transmissions >= 1,
            "timers.max_pbu_transmissions",
            || "must be at least 1".into(),
        )?;
        check(
            (4..=262_140).contains(&t.requested_lifetime_s),
            "timers.requested_lifetime_s",
            || "must be between 4 and 262140 (the 16-bit lifetime field in 4 s units)".into(),
        )?;
        check(
            (10..=95).contains(&t.refresh_at_percent),
            "timers.refresh_at_percent",
            || "must be between 10 and 95".into(),
        )?;
        let ra = &self.router_advertisement;
        if let Some(mtu) = ra.mtu {
            check(mtu >= 1280, "router_advertisement.mtu", || {
                format!("{mtu} is below the IPv6 minimum of 1280")
            })?;
        }
        // RFC 4861 §6.2.1: AdvDefaultLifetime MUST be 0 or between MaxRtrAdvInterval and
        // 9000 seconds.
        let lifetime = u32::from(ra.router_lifetime_s);
        check(
            lifetime == 0 || (ra.interval_s..=9000).contains(&lifetime),
            "router_advertisement.router_lifetime_s",
            || {
                format!(
                    "{lifetime} must be 0 (not a default router) or from interval_s ({}) to \
                     9000 (RFC 4861 §6.2.1)",
                    ra.interval_s
                )
            },
        )?;
        if let Some(l) = ra.prefix_lifetime_s {
            check(l > 0, "router_advertisement.prefix_lifetime_s", || {
                "0 would have the node drop the prefix at once (RFC 4862 §5.5.3): at least 1".into()
            })?;
        }
        self.neighbor_unreachability
            .validate("neighbor_unreachability")?;
        validate_profiles(&self.mobile_nodes)?;
        if let Some(url) = &self.policy_server {
            check(
                url.starts_with("http://") || url.starts_with("https://"),
                "policy_server",
                || format!("{url:?}: an http:// or https:// URL"),
            )?;
            check(
                url.starts_with("https://") == self.policy_server_tls.is_some(),
                "policy_server_tls",
                || {
                    if self.policy_server_tls.is_some() {
                        format!("given, but policy_server {url} is not an https:// URL")
                    } else {
                        format!("needed for policy_server {url} (https)")
                    }
                },
            )?;
        }
        if let Some(t) = &self.policy_server_tls {
            check(self.policy_server.is_some(), "policy_server_tls", || {
                "given without policy_server".into()
            })?;
            check(
                t.cert.is_some() == t.key.is_some(),
                "policy_server_tls.key",
                || "cert and key go together".into(),
            )?;
        }
        self.datapath.validate("datapath")?;
        self.ipsec.validate("ipsec")?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LMA: &str = r#"
address: 2001:db8:ffff::1
prefix_pools:
  - prefix: 2001:db8:100::/48
mobile_nodes:
  - mn_id: mn1@example.org
    link_layer_addresses: ["02:00:00:00:01:01"]
"#;

    #[test]
    fn lma_defaults_are_the_rfc_defaults() {
        let c: LmaConfig = serde_saphyr::from_str(LMA).unwrap();
        c.validate().unwrap();
        assert_eq!(c.timers.min_delay_before_bce_delete_ms, 10_000);
        assert_eq!(c.timers.max_delay_before_new_bce_assign_ms, 1_500);
        assert_eq!(c.timers.timestamp_validity_window_ms, 300);
        assert_eq!(c.domain.replay_protection, ReplayProtection::Timestamp);
        assert!(!c.domain.mobile_node_generated_timestamp);
        assert!(!c.domain.enable_mag_local_routing);
        assert_eq!(c.domain.heartbeat.interval_s, 60);
        assert_eq!(c.domain.heartbeat.missing_allowed, 3);
        assert_eq!(c.revocation.max_retries, 1);
        assert_eq!(c.prefix_pools[0].prefix_length, 64);
    }

    #[test]
    fn unknown_field_is_named() {
        let bad = format!("{LMA}\nprefix_pool: []\n");
        let err = serde_saphyr::from_str::<LmaConfig>(&bad)
            .unwrap_err()
            .to_string();
        assert!(err.contains("prefix_pool"), "{err}");
    }

    #[test]
    fn semantic_errors_name_the_field() {
        let mut c: LmaConfig = serde_saphyr::from_str(LMA).unwrap();
        c.prefix_pools[0].prefix_length = 72;
        assert_eq!(
            c.validate().unwrap_err().field,
            "prefix_pools[0].prefix_length"
        );
        c.prefix_pools[0].prefix_length = 64;
        c.prefix_pools.push(PrefixPool {
            prefix: "2001:db8:100:8000::/49".parse().unwrap(),
            prefix_length: 64,
        });
        assert_eq!(c.validate().unwrap_err().field, "prefix_pools[1].prefix");
        c.prefix_pools.pop();
        c.domain.replay_protection = ReplayProtection::SequenceNumber;
        c.domain.mobile_node_generated_timestamp = true;
        assert_eq!(
            c.validate().unwrap_err().field,
            "domain.mobile_node_generated_timestamp"
        );
        c.domain.mobile_node_generated_timestamp = false;
        c.address = "fe80::1".parse().unwrap();
        assert_eq!(c.validate().unwrap_err().field, "address");
    }

    #[test]
    fn the_tun_linger_is_bounded_and_names_its_field() {
        let mut c: LmaConfig = serde_saphyr::from_str(LMA).unwrap();
        assert_eq!(c.datapath.tun_linger_s, 60);
        c.datapath.tun_linger_s = 0;
        c.validate().unwrap();
        c.datapath.tun_linger_s = MAX_TUN_LINGER_S;
        c.validate().unwrap();
        c.datapath.tun_linger_s = MAX_TUN_LINGER_S + 1;
        let e = c.validate().unwrap_err();
        assert_eq!(e.field, "datapath.tun_linger_s");
        assert!(e.to_string().contains("86401"), "{e}");
    }

    #[test]
    fn profiles_that_clash_are_refused_by_validate() {
        let mut c: LmaConfig = serde_saphyr::from_str(LMA).unwrap();
        let mut a = MobileNodeProfile::new(Nai::new("a@x.example").unwrap());
        a.link_layer_addresses = vec![LinkLayerAddress::mac([2, 0, 0, 0, 0, 1])];
        let mut b = MobileNodeProfile::new(Nai::new("b@x.example").unwrap());
        b.link_layer_addresses = a.link_layer_addresses.clone();
        c.mobile_nodes = vec![a.clone(), b.clone()];
        let e = c.validate().unwrap_err();
        assert_eq!(e.field, "mobile_nodes[1]");
        assert!(e.to_string().contains("a@x.example"), "{e}");
        b.link_layer_addresses = vec![LinkLayerAddress::mac([2, 0, 0, 0, 0, 2])];
        c.mobile_nodes = vec![a.clone(), b.clone()];
        c.validate().unwrap();
        c.mobile_nodes = vec![a.clone(), a.clone()];
        assert_eq!(c.validate().unwrap_err().field, "mobile_nodes[1].mn_id");
        let mut w = MobileNodeProfile::new(Nai::new("*@x.example").unwrap());
        w.home_network_prefixes = vec!["2001:db8:100:1::/64".parse().unwrap()];
        c.mobile_nodes = vec![w];
        assert_eq!(c.validate().unwrap_err().field, "mobile_nodes[0]");
        a.allowed_mags = vec!["2001:db8::10".parse().unwrap(), "fe80::10".parse().unwrap()];
        c.mobile_nodes = vec![a];
        let e = c.validate().unwrap_err();
        assert_eq!(e.field, "mobile_nodes[0].allowed_mags[1]");
        assert!(e.reason.contains("cannot be a proxy-CoA"), "{e}");
    }

    #[test]
    fn a_profiles_own_prefixes_do_not_overlap_and_fit_a_router_advertisement() {
        let mut a = MobileNodeProfile::new(Nai::new("a@x.example").unwrap());
        let p = |s: &str| -> Ipv6Net { s.parse().unwrap() };
        a.home_network_prefixes = vec![p("2001:db8:200::/64"), p("2001:db8:200::/64")];
        let e = a.validate("p").unwrap_err();
        assert_eq!(e.field, "p.home_network_prefixes[1]");
        assert_eq!(
            e.reason,
            "2001:db8:200::/64 overlaps home_network_prefixes[0] (2001:db8:200::/64)"
        );
        a.home_network_prefixes = vec![p("2001:db8:200:1::/64"), p("2001:db8:200::/56")];
        assert_eq!(
            a.validate("p").unwrap_err().field,
            "p.home_network_prefixes[1]"
        );
        a.home_network_prefixes = (0..MAX_HOME_NETWORK_PREFIXES)
            .map(|i| p(&format!("2001:db8:200:{i:x}::/64")))
            .collect();
        a.validate("p").unwrap();
        a.home_network_prefixes.push(p("2001:db8:201::/64"));
        let e = a.validate("p").unwrap_err();
        assert_eq!(e.field, "p.home_network_prefixes");
        assert!(e.reason.starts_with("38 prefixes: at most 37"), "{e}");
    }

    #[test]
    fn a_pool_holds_global_unicast_prefixes_and_no_lmas_or_mags_address() {
        let base: LmaConfig = serde_saphyr::from_str(LMA).unwrap();
        let mut c = base.clone();
        c.prefix_pools[0].prefix = "::/0".parse().unwrap();
        c.prefix_pools[0].prefix_length = 0;
        let e = c.validate().unwrap_err();
        assert_eq!(e.field, "prefix_pools[0].prefix");
        assert!(
            e.reason.contains("cannot hold home network prefixes"),
            "{e}"
        );
        for (pool, mag, what) in [
            (base.address, None, "the LMA's address"),
            (
                "2001:db8:7::10".parse().unwrap(),
                Some("2001:db8:7::10".parse().unwrap()),
                "an authorized MAG's address",
            ),
        ] {
            let mut c = base.clone();
            c.prefix_pools[0].prefix = Ipv6Net::new(pool, 48).unwrap().trunc();
            c.authorized_mags = mag.into_iter().map(ConfiguredMag::new).collect();
            let e = c.validate().unwrap_err();
            assert_eq!(e.field, "prefix_pools[0].prefix");
            assert!(e.reason.ends_with(what), "{e}");
        }
    }

    #[test]
    fn an_authorized_mag_is_an_address_or_an_address_with_a_name() {
        let c: LmaConfig = serde_saphyr::from_str(&format!(
            "{LMA}authorized_mags:\n  - 2001:db8:1::10\n  - {{proxy_coa: 2001:db8:2::10, name: mag2}}\n"
        ))
        .unwrap();
        c.validate().unwrap();
        let a: Ipv6Addr = "2001:db8:1::10".parse().unwrap();
        let b: Ipv6Addr = "2001:db8:2::10".parse().unwrap();
        assert_eq!(
            c.authorized_mags,
            [ConfiguredMag::new(a), ConfiguredMag::named(b, "mag2")]
        );
        // Written back the same way.
        let text = serde_saphyr::to_string(&c).unwrap();
        let back: LmaConfig = serde_saphyr::from_str(&text).unwrap();
        assert_eq!(back.authorized_mags, c.authorized_mags);
        assert_eq!(
            serde_json::to_value(&c.authorized_mags).unwrap(),
            serde_json::json!(["2001:db8:1::10", {"proxy_coa": "2001:db8:2::10", "name": "mag2"}])
        );
        let bad = format!("{LMA}authorized_mags: [{{proxy_coa: 2001:db8:2::10, colour: red}}]\n");
        assert!(serde_saphyr::from_str::<LmaConfig>(&bad).is_err());
        let mut twice = c.clone();
        twice.authorized_mags.push(ConfiguredMag::named(a, "again"));
        let e = twice.validate().unwrap_err();
        assert_eq!(e.field, "authorized_mags[2]");
        assert_eq!(e.reason, "2001:db8:1::10 is given twice");
    }

    #[test]
    fn a_pinned_prefix_lies_outside_the_pools_or_is_one_they_allocate() {
        let pools = [PrefixPool {
            prefix: "2001:db8:100::/48".parse().unwrap(),
            prefix_length: 64,
        }];
        let ok = |p: &str| check_pinned_prefix(&pools, &p.parse().unwrap());
        assert_eq!(ok("2001:db8:100:7::/64"), Ok(()));
        assert_eq!(ok("2001:db8:200::/64"), Ok(()));
        assert_eq!(ok("2001:db8:200::/56"), Ok(()));
        assert_eq!(
            ok("2001:db8:100:100::/56"),
            Err(
                "2001:db8:100:100::/56 overlaps the pool 2001:db8:100::/48 without being one \
                 of its /64 prefixes"
                    .into()
            )
        );
        assert!(ok("2001:db8:100::/47").is_err());
        // The configuration file follows the same rule.
        let mut c: LmaConfig = serde_saphyr::from_str(LMA).unwrap();
        c.mobile_nodes[0].home_network_prefixes = vec!["2001:db8:200::/64".parse().unwrap()];
        c.validate().unwrap();
        c.mobile_nodes[0].home_network_prefixes = vec![
            "2001:db8:100:1::/64".parse().unwrap(),
            "2001:db8:100:100::/56".parse().unwrap(),
        ];
        let e = c.validate().unwrap_err();
        assert_eq!(e.field, "mobile_nodes[0].home_network_prefixes[1]");
    }

    #[test]
    fn mag_config_parses_and_validates() {
        let c: MagConfig = serde_saphyr::from_str(
            r#"
proxy_coa: 2001:db8::10
lma_address: 2001:db8:ffff::1
access_interfaces: ["acc*"]
domain:
  link_local: { mode: fixed, address: "fe80::1", link_layer_address: "02:00:5e:00:53:01" }
  fast_handover:
    mode: predictive
    access_points: { ap2: "2001:db8::20" }
"#,
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.timers.initial_bindack_timeout_ms, 1_000);
        assert_eq!(c.timers.max_bindack_timeout_ms, 32_000);
        assert_eq!(c.domain.fast_handover.mode, FastHandoverMode::Predictive);
        let mut bad = c.clone();
        bad.timers.max_bindack_timeout_ms = 10;
        assert_eq!(
            bad.validate().unwrap_err().field,
            "timers.max_bindack_timeout_ms"
        );
        let mut bad = c;
        bad.access_interfaces.clear();
        assert_eq!(bad.validate().unwrap_err().field, "access_interfaces");
    }

    #[test]
    fn ipv4_pools_and_profiles_are_checked_and_name_the_field() {
        let text = format!(
            "{LMA}ipv4_pools:\n  - prefix: 192.0.2.0/24\n  - prefix: 198.51.100.0/28\n    default_router: 198.51.100.14\n"
        );
        let mut c: LmaConfig = serde_saphyr::from_str(&text).unwrap();
        c.validate().unwrap();
        assert_eq!(c.ipv4_pools[0].default_router, None);
        assert!(
            c.mobile_nodes[0].ipv6 && !c.mobile_nodes[0].ipv4,
            "defaults"
        );

        fn bad(c: &LmaConfig, f: &dyn Fn(&mut LmaConfig)) -> ConfigError {
            let mut b = c.clone();
            f(&mut b);
            b.validate().unwrap_err()
        }
        let e = bad(&c, &|b| {
            b.mobile_nodes[0].ipv4 = true;
            b.mobile_nodes[0].ipv4_home_address = Some("203.0.113.5".parse().unwrap());
        });
        assert_eq!(e.field, "mobile_nodes[0].ipv4_home_address");
        assert!(
            e.reason.contains("203.0.113.5") && e.reason.contains("ipv4_pools"),
            "{e}"
        );
        // The router, network and broadcast addresses are not node addresses either.
        for not_a_node in [
            "198.51.100.14",
            "198.51.100.0",
            "198.51.100.15",
            "192.0.2.1",
        ] {
            let e = bad(&c, &|b| {
                b.mobile_nodes[0].ipv4 = true;
                b.mobile_nodes[0].ipv4_home_address = Some(not_a_node.parse().unwrap());
            });
            assert_eq!(e.field, "mobile_nodes[0].ipv4_home_address", "{not_a_node}");
        }
        c.mobile_nodes[0].ipv4 = true;
        c.mobile_nodes[0].ipv4_home_address = Some("192.0.2.77".parse().unwrap());
        c.validate().unwrap();
        let e = bad(&c, &|b| b.mobile_nodes[0].ipv4 = false);
        assert_eq!(e.field, "mobile_nodes[0].ipv4_home_address");
        let e = bad(&c, &|b| {
            b.mobile_nodes[0].ipv6 = false;
            b.mobile_nodes[0].ipv4 = false;
            b.mobile_nodes[0].ipv4_home_address = None;
        });
        assert_eq!(e.field, "mobile_nodes[0].ipv6");
        let e = bad(&c, &|b| {
            let mut other = b.mobile_nodes[0].clone();
            other.mn_id = Nai::new("mn2@example.org").unwrap();
            other.link_layer_addresses.clear();
            b.mobile_nodes.push(other);
        });
        assert_eq!(e.field, "mobile_nodes[1].ipv4_home_address");
        assert!(e.reason.contains("mobile_nodes[0]"), "{e}");
        let e = bad(&c, &|b| {
            b.ipv4_pools[1] = Ipv4Pool {
                prefix: "192.0.2.128/25".parse().unwrap(),
                default_router: None,
            }
        });
        assert_eq!(e.field, "ipv4_pools[1].prefix");
        let e = bad(&c, &|b| {
            b.ipv4_pools[0].prefix = "192.0.2.1/24".parse().unwrap()
        });
        assert!(e.reason.contains("host bits"), "{e}");
        let e = bad(&c, &|b| {
            b.ipv4_pools[0].prefix = "192.0.2.0/31".parse().unwrap()
        });
        assert_eq!(e.field, "ipv4_pools[0].prefix");
        let e = bad(&c, &|b| {
            b.ipv4_pools[1].default_router = Some("192.0.2.1".parse().unwrap())
        });
        assert_eq!(e.field, "ipv4_pools[1].default_router");
    }

    #[test]
    fn the_ipv4_transport_is_refused_with_a_clear_message() {
        let e = serde_saphyr::from_str::<LmaConfig>(
            "address: 192.0.2.1\nprefix_pools: [{prefix: \"2001:db8::/48\"}]\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("192.0.2.1 is an IPv4 address"), "{e}");
        assert!(e.contains("RFC 5844 §4") && e.contains("5436"), "{e}");
        let e = serde_saphyr::from_str::<MagConfig>(
            "proxy_coa: 2001:db8::10\nlma_address: 198.51.100.1\naccess_interfaces: [a0]\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("198.51.100.1 is an IPv4 address"), "{e}");
        let e = serde_saphyr::from_str::<MagConfig>(
            "proxy_coa: 2001:db8::10\nlma_address: nonsense\naccess_interfaces: [a0]\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("nonsense") && !e.contains("IPv4"), "{e}");
        assert!(
            parse_transport_address("192.0.2.1")
                .unwrap_err()
                .contains("RFC 5844 §4")
        );
        assert_eq!(
            parse_transport_address(" 2001:db8::1 "),
            Ok("2001:db8::1".parse().unwrap())
        );
    }

    #[test]
    fn config_round_trips_through_yaml() {
        let c: LmaConfig = serde_saphyr::from_str(LMA).unwrap();
        let y = serde_saphyr::to_string(&c).unwrap();
        let back: LmaConfig = serde_saphyr::from_str(&y).unwrap();
        assert_eq!(c, back);
    }

    #[test]
    fn key_material_reads_hex_in_the_usual_spellings() {
        let k = KeyMaterial::from_hex("0x0102 0a:0B\n").unwrap();
        assert_eq!(k.as_bytes(), [1, 2, 10, 11]);
        assert_eq!(k.to_hex(), "0x01020a0b");
        assert_eq!(KeyMaterial::from_hex(&k.to_hex()).unwrap(), k);
        assert!(KeyMaterial::from_hex("").is_err());
        assert!(
            KeyMaterial::from_hex("0x123")
                .unwrap_err()
                .contains("whole octets")
        );
        assert!(
            KeyMaterial::from_hex("zz")
                .unwrap_err()
                .contains("not a hex digit")
        );
        assert_eq!(format!("{k:?}"), "KeyMaterial(4 octets)");
    }

    #[test]
    fn security_associations_parse_from_yaml_and_are_checked() {
        let yaml = r#"
mode: userspace
security_associations:
  - peer: "2001:db8::10"
    algorithm: aes-128-gcm
    spi_in: 0x1000
    spi_out: 4097
    key_in: 0x000102030405060708090a0b0c0d0e0f10111213
    key_out_file: /etc/pmip/ipsec/out.key
    esn: true
"#;
        let c: IpsecConfig = serde_saphyr::from_str(yaml).unwrap();
        c.validate("ipsec").unwrap();
        let sa = &c.security_associations[0];
        assert_eq!((sa.spi_in, sa.spi_out), (0x1000, 0x1001));
        assert_eq!(sa.key_in.as_ref().unwrap().as_bytes().len(), 20);
        assert_eq!(c.replay_window, 64);

        let field = |c: &IpsecConfig| c.validate("ipsec").unwrap_err().field;
        let mut bad = c.clone();
        bad.security_associations[0].spi_in = 255;
        assert_eq!(field(&bad), "ipsec.security_associations[0].spi_in");
        let mut bad = c.clone();
        bad.security_associations[0].key_in_file = Some("/k".into());
        assert_eq!(field(&bad), "ipsec.security_associations[0].key_in");
        let mut bad = c.clone();
        bad.security_associations[0].key_out_file = None;
        assert_eq!(field(&bad), "ipsec.security_associations[0].key_out");
        let mut bad = c.clone();
        bad.security_associations[0].algorithm = EspAlgorithm::Aes256Gcm;
        let e = bad.validate("ipsec").unwrap_err();
        assert_eq!(e.field, "ipsec.security_associations[0].key_in");
        assert!(e.reason.contains("20 octets; aes-256-gcm needs 36"), "{e}");
        let mut bad = c.clone();
        bad.security_associations
            .push(bad.security_associations[0].clone());
        assert_eq!(field(&bad), "ipsec.security_associations[1].spi_in");
        let mut bad = c.clone();
        bad.security_associations[0].peer = "fe80::1".parse().unwrap();
        assert_eq!(field(&bad), "ipsec.security_associations[0].peer");
        let mut bad = c.clone();
        bad.replay_window = 16;
        assert_eq!(field(&bad), "ipsec.replay_window");
        let mut bad = c;
        bad.security_associations.clear();
        assert_eq!(field(&bad), "ipsec.security_associations");
        bad.mode = IpsecMode::Off;
        bad.validate("ipsec").unwrap();
    }

    #[test]
    fn attachment_address_is_the_named_networks_first_global_ipv6() {
        // As Multus 4 writes it: the cluster network first, then each attachment.
        let st = vec![
            AttachmentStatus {
                name: "cbr0".into(),
                interface: Some("eth0".into()),
                ips: vec!["10.244.1.5".into(), "fd00:10:244:1::5".into()],
                default: true,
            },
            AttachmentStatus {
                name: "pmip/transport".into(),
                interface: Some("transport".into()),
                ips: vec!["fe80::1".into(), "2001:db8:ff::10".into()],
                default: false,
            },
            AttachmentStatus {
                name: "pmip/access-a".into(),
                interface: Some("access0".into()),
                ips: vec!["2001:db8:aa::1/64".into()],
                default: false,
            },
        ];
        let a = |s: &str| s.parse::<Ipv6Addr>().unwrap();
        assert_eq!(
            attachment_address(&st, "pmip/transport", None),
            Some(a("2001:db8:ff::10"))
        );
        assert_eq!(
            attachment_address(&st, "transport", Some("transport")),
            Some(a("2001:db8:ff::10"))
        );
        assert_eq!(
            attachment_address(&st, "pmip/access-a", None),
            Some(a("2001:db8:aa::1"))
        );
        // Another namespace's network of that name, another interface, the cluster network.
        assert_eq!(attachment_address(&st, "other/transport", None), None);
        assert_eq!(
            attachment_address(&st, "pmip/transport", Some("net1")),
            None
        );
        assert_eq!(attachment_address(&st, "cbr0", None), None);
        let parsed: Vec<AttachmentStatus> = serde_saphyr::from_str(
            r#"[{"name":"pmip/transport","interface":"transport","ips":["2001:db8:ff::10"],"mac":"02:00:00:00:00:01","dns":{}}]"#,
        )
        .unwrap();
        assert_eq!(
            attachment_address(&parsed, "pmip/transport", None),
            Some(a("2001:db8:ff::10"))
        );
    }
}
