//! The binding update list (RFC 5213 §6.1): one entry per attached interface of a mobile node,
//! keyed by the interface's link-layer address and indexed by MN-ID. It remembers which
//! entries changed, so the MAG can report them as outputs instead of being inspected.

use core::time::Duration;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv6Net};

use crate::ipv4_pool::Ipv4HomeAddress;
use crate::output::AccessLink;
use crate::time::Instant;
use crate::types::LinkLayerAddress;
use crate::wire::{AccessTechnologyType, HandoffIndicator, SequenceNumber, Status};

/// Where a binding update list entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BulState {
    /// Waiting for the PBA of the initial registration.
    Registering,
    /// Registered.
    Bound,
    /// Registered, and a refresh is outstanding.
    Refreshing,
    /// De-registration sent; the entry goes on its PBA or after INITIAL_BINDACK_TIMEOUT.
    Deregistering,
    /// New MAG of a predictive fast handover: the node's context came in a Handover Initiate;
    /// its packets are buffered until it attaches (RFC 5949 §4.1 step (f)).
    Expected,
    /// Refused by the LMA; no service until `until` (or an administrative change).
    Denied {
        status: Status,
        until: Option<Instant>,
    },
    /// A PBA whose echoed options differed from the PBU was ignored (RFC 5213 §6.9.1.2 rule
    /// 6): no PBU until an administrative action (a detach: by the API, or by removing the
    /// profile). A binding the node had is served until it expires.
    Halted,
}

/// A binding update list entry (RFC 5213 §6.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulEntry {
    pub mn_id: String,
    pub link_layer: LinkLayerAddress,
    pub link: AccessLink,
    pub access_technology_type: AccessTechnologyType,
    pub prefixes: Vec<Ipv6Net>,
    /// The IPv4 home address the LMA assigned, with its subnet and the default router it
    /// gave (RFC 5844 §3.2.1).
    pub ipv4: Option<Ipv4HomeAddress>,
    /// The LMA said this MAG is to be the node's DHCP server (IPv4 DHCP Support Mode option
    /// with S=1, RFC 5844 §3.2.3.2).
    pub dhcp_server: bool,
    /// IPv6 home address mobility is asked for (the profile's, less a refusal with
    /// NOT_AUTHORIZED_FOR_IPV6_MOBILITY_SERVICE, RFC 5844 §3.2.3.2).
    pub ipv6_service: bool,
    /// IPv4 home address mobility is asked for (the profile's, less a refusal with
    /// NOT_AUTHORIZED_FOR_IPV4_MOBILITY_SERVICE).
    pub ipv4_service: bool,
    /// The IPv4 home address to ask for while none is assigned: the pinned one, dropped
    /// after a NOT_AUTHORIZED_FOR_IPV4_HOME_ADDRESS (§3.2.3.2); `None` asks for any.
    pub ipv4_request: Option<Ipv4Addr>,
    /// The IPv4 home address the node released (RFC 5844 §3.4.3) while its selective
    /// de-registration (§3.2.3.3) is outstanding.
    pub ipv4_release: Option<Ipv4Release>,
    /// The link-local address the MAG uses towards this node.
    pub link_local: Ipv6Addr,
    pub local_routing: bool,
    pub state: BulState,
    pub lifetime: Duration,
    pub attached_at: Instant,
    pub registered_at: Option<Instant>,
    pub expires_at: Option<Instant>,
    /// Sequence number of the outstanding or last PBU.
    pub sequence: SequenceNumber,
    /// Status of the last PBA for this node.
    pub last_status: Option<Status>,
    /// Handoff Indicator of the last PBU sent.
    pub last_handoff_indicator: HandoffIndicator,
    /// The home addresses this MAG routes to the node on its link: the prefixes it has
    /// advertised and the IPv4 home address as a host route (RFC 5844 §3.2.3.2); the
    /// registered ones, or before the PBA those of a fast handover's context (RFC 5949
    /// §5.2). What has to be withdrawn and unrouted when the service ends.
    pub served: Vec<IpNet>,
    pub(super) handoff_hint: HandoffIndicator,
    pub(super) transmissions: u32,
    pub(super) retransmit_timeout: Duration,
}

/// A selective de-registration of the IPv4 home address in progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Release {
    /// The address, as the PBU names it.
    pub home: Ipv4HomeAddress,
    /// When the session's refresh is due once the release is done.
    pub refresh_at: Instant,
}

impl BulEntry {
    pub fn is_bound(&self) -> bool {
        matches!(self.state, BulState::Bound | BulState::Refreshing)
    }

    /// Retransmissions of the current PBU transaction.
    pub fn retransmissions(&self) -> u32 {
        self.transmissions.saturating_sub(1)
    }

    /// The node's home addresses as the datapath routes them: its prefixes and its IPv4
    /// home address as a host route.
    pub fn home_nets(&self) -> Vec<IpNet> {
        self.prefixes
            .iter()
            .map(|p| IpNet::from(*p))
            .chain(self.ipv4.map(|v4| IpNet::from(v4.host())))
            .collect()
    }
}

/// A registered node as the MAG keeps it across its own restarts: enough to take the binding
/// back without the node noticing (an upgrade is not a detach).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SavedBinding {
    pub mn_id: String,
    pub link_layer: LinkLayerAddress,
    /// Access link index when saved.
    pub link: u32,
    pub access_technology_type: u8,
    pub prefixes: Vec<Ipv6Net>,
    pub link_local: Ipv6Addr,
    pub local_routing: bool,
    /// The IPv4 home address (RFC 5844); none in bindings saved before IPv4 support.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv4: Option<Ipv4HomeAddress>,
}

/// The entries, by link-layer address, with an index by MN-ID. Every mutable access marks
/// the entry as changed.
#[derive(Debug, Default)]
pub(super) struct BindingUpdateList {
    entries: BTreeMap<LinkLayerAddress, BulEntry>,
    by_mn_id: BTreeMap<String, BTreeSet<LinkLayerAddress>>,
    /// Entries changed (or removed) since [`Self::take_changed`], with their MN-ID.
    changed: BTreeMap<LinkLayerAddress, String>,
}

impl BindingUpdateList {
    pub(super) fn get(&self, ll: &LinkLayerAddress) -> Option<&BulEntry> {
        self.entries.get(ll)
    }

    pub(super) fn get_mut(&mut self, ll: &LinkLayerAddress) -> Option<&mut BulEntry> {
        let e = self.entries.get_mut(ll)?;
        self.changed.insert(*ll, e.mn_id.clone());
        Some(e)
    }

    /// Marks the entry as changed (its fast handover changed, say).
    pub(super) fn touch(&mut self, ll: &LinkLayerAddress) {
        if let Some(e) = self.entries.get(ll) {
            self.changed.insert(*ll, e.mn_id.clone());
        }
    }

    pub(super) fn contains(&self, ll: &LinkLayerAddress) -> bool {
        self.entries.contains_key(ll)
    }

    /// Adds `e`, replacing the entry of the same link-layer address.
    pub(super) fn insert(&mut self, e: BulEntry) {
        let ll = e.link_layer;
        self.remove(&ll);
        self.by_mn_id.entry(e.mn_id.clone()).or_default().insert(ll);
        self.changed.insert(ll, e.mn_id.clone());
        self.entries.insert(ll, e);
    }

    pub(super) fn remove(&mut self, ll: &LinkLayerAddress) -> Option<BulEntry> {
        let e = self.entries.remove(ll)?;
        if let Some(set) = self.by_mn_id.get_mut(&e.mn_id) {
            set.remove(ll);
            if set.is_empty() {
                self.by_mn_id.remove(&e.mn_id);
            }
        }
        self.changed.insert(*ll, e.mn_id.clone());
        Some(e)
    }

    /// The link-layer addresses of a node's entries, in order.
    pub(super) fn keys_of(&self, mn_id: &str) -> Vec<LinkLayerAddress> {
        self.by_mn_id
            .get(mn_id)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default()
    }

    pub(super) fn of_mn_id<'a>(&'a self, mn_id: &str) -> impl Iterator<Item = &'a BulEntry> {
        self.by_mn_id
            .get(mn_id)
            .into_iter()
            .flatten()
            .filter_map(|ll| self.entries.get(ll))
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = &BulEntry> {
        self.entries.values()
    }

    /// Every link-layer address, in order.
    pub(super) fn keys(&self) -> Vec<LinkLayerAddress> {
        self.entries.keys().copied().collect()
    }

    /// The entries changed since the last call, in key order: `(link-layer address, MN-ID)`.
    pub(super) fn take_changed(&mut self) -> BTreeMap<LinkLayerAddress, String> {
        core::mem::take(&mut self.changed)
    }

    pub(super) fn has_changes(&self) -> bool {
        !self.changed.is_empty()
    }
}
