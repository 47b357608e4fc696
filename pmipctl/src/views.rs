//! What the gRPC commands print: each API message as a serde structure (the JSON and YAML
//! output) and as text for people.
//!
//! JSON keys are the proto field names in snake_case and stay stable. Values:
//! - enum states and reasons are their proto names without the type prefix (`ACTIVE`,
//!   `HANDOFF`, `REGISTERED`); a value the client does not know is its number as text;
//! - RFC-coded values (Access Technology Type, Handoff Indicator, PBA and BRA status) are
//!   `{"value": 3, "name": "IEEE 802.3"}`, as `mh decode` writes them; `null` when not given;
//! - times are RFC 3339 UTC text to the millisecond; durations are numbers whose key names the
//!   unit (`lifetime_remaining_seconds`, `uptime_seconds`);
//! - an empty text field of the API (no link-local address, no previous proxy-CoA) is `null`.
//!
//! A profile is printed with the field names of the LMA configuration's `mobile_nodes`, so the
//! `profile` of `policy list -o yaml` can be given back to `policy apply`.

use std::time::SystemTime;

use pmip::config::MobileNodeProfile;
use pmip::wire::{AccessTechnologyType, HandoffIndicator};
use proto::v1 as pb;
use serde::Serialize;

use crate::CliError;
use crate::show::{self, Table, age, fields, or_dash, seconds, timestamp};

/// An enum value's proto name without its type prefix; the number when unknown.
macro_rules! short_name {
    ($ty:ty, $v:expr, $prefix:literal) => {{
        let v: i32 = $v;
        match <$ty>::try_from(v) {
            Ok(e) => e.as_str_name().trim_start_matches($prefix).to_owned(),
            Err(_) => v.to_string(),
        }
    }};
}

pub fn binding_state(v: i32) -> String {
    short_name!(pb::BindingState, v, "BINDING_STATE_")
}

pub fn bul_state(v: i32) -> String {
    short_name!(pb::BulState, v, "BUL_STATE_")
}

pub fn update_reason(v: i32) -> String {
    short_name!(pb::UpdateReason, v, "UPDATE_REASON_")
}

pub fn delete_reason(v: i32) -> String {
    short_name!(pb::DeleteReason, v, "DELETE_REASON_")
}

pub fn reset_reason(v: i32) -> String {
    short_name!(pb::ResetReason, v, "RESET_REASON_")
}

pub fn policy_source(v: i32) -> String {
    short_name!(pb::PolicySource, v, "POLICY_SOURCE_")
}

pub fn revocation_outcome(v: i32) -> String {
    short_name!(pb::RevocationOutcome, v, "REVOCATION_OUTCOME_")
}

/// An RFC-coded value: its number and the name the RFC gives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Coded {
    pub value: u32,
    pub name: Option<String>,
}

impl Coded {
    fn text(&self) -> String {
        match &self.name {
            Some(n) => n.clone(),
            None => self.value.to_string(),
        }
    }
}

fn text(c: &Option<Coded>) -> String {
    c.as_ref().map_or_else(|| "-".into(), Coded::text)
}

/// Access Technology Type (RFC 5213 §8.5); 0 is "not given".
pub fn access_technology(v: i32) -> Option<Coded> {
    let value = u32::try_from(v).ok().filter(|v| *v != 0)?;
    Some(Coded {
        value,
        name: u8::try_from(value)
            .ok()
            .and_then(|b| AccessTechnologyType::from(b).rfc_name())
            .map(str::to_owned),
    })
}

/// Handoff Indicator (RFC 5213 §8.4); 0 is "not given".
pub fn handoff_indicator(v: i32) -> Option<Coded> {
    let value = u32::try_from(v).ok().filter(|v| *v != 0)?;
    Some(Coded {
        value,
        name: u8::try_from(value)
            .ok()
            .and_then(|b| HandoffIndicator::from(b).rfc_name())
            .map(str::to_owned),
    })
}

fn status(value: u32, name: &str) -> Coded {
    Coded {
        value,
        name: (!name.is_empty()).then(|| name.to_owned()),
    }
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

fn uptime_seconds(d: Option<&prost_types::Duration>) -> u64 {
    d.map_or(0, |d| u64::try_from(d.seconds).unwrap_or(0))
}

// ---- bindings (LMA) ----

/// A binding cache entry (`pmip.v1.Binding`).
#[derive(Debug, Clone, Serialize)]
pub struct BindingView {
    pub mn_id: String,
    pub home_network_prefixes: Vec<String>,
    /// The IPv4 home address with its subnet's prefix length (`192.0.2.10/24`, RFC 5844).
    pub ipv4_home_address: Option<String>,
    pub ipv4_default_router: Option<String>,
    pub proxy_coa: String,
    pub mag_name: Option<String>,
    pub state: String,
    pub access_technology_type: Option<Coded>,
    pub handoff_indicator: Option<Coded>,
    pub mn_link_layer_id: Option<String>,
    pub link_local_address: Option<String>,
    pub lifetime_granted_seconds: u32,
    pub lifetime_remaining_seconds: u32,
    pub registered_at: Option<String>,
    pub updated_at: Option<String>,
    pub handover_count: u64,
    pub last_handover_interruption_ms: Option<u32>,
    pub previous_proxy_coa: Option<String>,
    pub revision: u64,
    pub last_sequence_number: Option<u32>,
    pub last_pbu_timestamp: Option<String>,
}

impl From<&pb::Binding> for BindingView {
    fn from(b: &pb::Binding) -> Self {
        BindingView {
            mn_id: b.mn_id.clone(),
            home_network_prefixes: b.home_network_prefixes.clone(),
            ipv4_home_address: non_empty(&b.ipv4_home_address),
            ipv4_default_router: non_empty(&b.ipv4_default_router),
            proxy_coa: b.proxy_coa.clone(),
            mag_name: b.mag_name.clone().filter(|n| !n.is_empty()),
            state: binding_state(b.state),
            access_technology_type: access_technology(b.access_technology_type),
            handoff_indicator: handoff_indicator(b.handoff_indicator),
            mn_link_layer_id: non_empty(&b.mn_link_layer_id),
            link_local_address: non_empty(&b.link_local_address),
            lifetime_granted_seconds: b.lifetime_granted_seconds,
            lifetime_remaining_seconds: b.lifetime_remaining_seconds,
            registered_at: timestamp(b.registered_at.as_ref()),
            updated_at: timestamp(b.updated_at.as_ref()),
            handover_count: b.handover_count,
            last_handover_interruption_ms: b.last_handover_interruption_ms,
            previous_proxy_coa: non_empty(&b.previous_proxy_coa),
            revision: b.revision,
            last_sequence_number: b.last_sequence_number,
            last_pbu_timestamp: timestamp(b.last_pbu_timestamp.as_ref()),
        }
    }
}

/// `remaining/granted`, e.g. `59m58s/1h`.
fn lifetime(remaining: u32, granted: u32) -> String {
    format!(
        "{}/{}",
        seconds(u64::from(remaining)),
        seconds(u64::from(granted))
    )
}

/// The proxy-CoA with the MAG's name when the LMA knows it.
fn proxy_coa_and_name(coa: &str, name: Option<&str>) -> String {
    match name.filter(|n| !n.is_empty()) {
        Some(n) => format!("{coa} ({n})"),
        None => coa.to_owned(),
    }
}

/// The IPv4 home address with its default router: `192.0.2.10/24 via 192.0.2.1`, or `-`.
fn ipv4_text(v: &BindingView) -> String {
    match (&v.ipv4_home_address, &v.ipv4_default_router) {
        (Some(a), Some(r)) => format!("{a} via {r}"),
        (Some(a), None) => a.clone(),
        (None, _) => "-".into(),
    }
}

/// The `bindings list` table; `wide` adds the access technology, the node's link-layer and
/// link-local addresses, the previous proxy-CoA and the last handover's gap, the times and the
/// revision.
pub fn bindings_table(bs: &[pb::Binding], now: SystemTime, wide: bool) -> Table {
    let mut headings = vec![
        "MN-ID",
        "HOME NETWORK PREFIXES",
        "IPV4 HOME ADDRESS",
        "PROXY-COA",
        "MAG",
        "STATE",
        "LIFETIME",
        "AGE",
        "HANDOVERS",
    ];
    if wide {
        headings.extend([
            "ACCESS TECHNOLOGY",
            "LINK-LAYER ID",
            "LINK-LOCAL",
            "PREVIOUS PROXY-COA",
            "LAST GAP",
            "REGISTERED",
            "UPDATED",
            "REVISION",
        ]);
    }
    let mut t = Table::new(&headings);
    for b in bs {
        let mut row = vec![
            b.mn_id.clone(),
            show::list(&b.home_network_prefixes),
            or_dash(&b.ipv4_home_address),
            b.proxy_coa.clone(),
            or_dash(b.mag_name.as_deref().unwrap_or_default()),
            binding_state(b.state),
            lifetime(b.lifetime_remaining_seconds, b.lifetime_granted_seconds),
            age(b.registered_at.as_ref(), now),
            b.handover_count.to_string(),
        ];
        if wide {
            let v = BindingView::from(b);
            let opt = |o: Option<String>| o.unwrap_or_else(|| "-".into());
            row.extend([
                text(&v.access_technology_type),
                opt(v.mn_link_layer_id),
                opt(v.link_local_address),
                opt(v.previous_proxy_coa),
                v.last_handover_interruption_ms
                    .map_or_else(|| "-".into(), |ms| format!("{ms}ms")),
                opt(v.registered_at),
                opt(v.updated_at),
                v.revision.to_string(),
            ]);
        }
        t.row(row);
    }
    t
}

fn when(t: Option<&prost_types::Timestamp>, now: SystemTime) -> String {
    match timestamp(t) {
        Some(s) => format!("{s} ({} ago)", age(t, now)),
        None => "-".into(),
    }
}

/// One binding, a field per line (`bindings get`).
pub fn binding_text(b: &pb::Binding, now: SystemTime) -> String {
    let v = BindingView::from(b);
    let opt = |o: Option<String>| o.unwrap_or_else(|| "-".into());
    fields(&[
        ("MN-ID", v.mn_id.clone()),
        (
            "Home network prefixes",
            show::list(&v.home_network_prefixes),
        ),
        ("IPv4 home address", ipv4_text(&v)),
        (
            "Proxy-CoA",
            proxy_coa_and_name(&v.proxy_coa, v.mag_name.as_deref()),
        ),
        ("State", v.state.clone()),
        (
            "Lifetime",
            format!(
                "{} remaining of {}",
                seconds(u64::from(v.lifetime_remaining_seconds)),
                seconds(u64::from(v.lifetime_granted_seconds))
            ),
        ),
        ("Access technology", text(&v.access_technology_type)),
        ("Handoff indicator", text(&v.handoff_indicator)),
        ("MN link-layer ID", opt(v.mn_link_layer_id.clone())),
        ("Link-local address", opt(v.link_local_address.clone())),
        ("Registered", when(b.registered_at.as_ref(), now)),
        ("Updated", when(b.updated_at.as_ref(), now)),
        ("Handovers", v.handover_count.to_string()),
        ("Previous proxy-CoA", opt(v.previous_proxy_coa.clone())),
        (
            "Last handover gap",
            v.last_handover_interruption_ms
                .map_or_else(|| "-".into(), |ms| format!("{ms}ms")),
        ),
        (
            "Last sequence number",
            v.last_sequence_number
                .map_or_else(|| "-".into(), |s| s.to_string()),
        ),
        ("Last PBU timestamp", opt(v.last_pbu_timestamp.clone())),
        ("Revision", v.revision.to_string()),
    ])
}

/// A refused registration (`pmip.v1.RegistrationRejected`).
#[derive(Debug, Clone, Serialize)]
pub struct RejectedView {
    pub mn_id: Option<String>,
    pub proxy_coa: String,
    pub mag_name: Option<String>,
    pub status: Coded,
    pub detail: String,
    pub count: u32,
}

impl From<&pb::RegistrationRejected> for RejectedView {
    fn from(r: &pb::RegistrationRejected) -> Self {
        RejectedView {
            mn_id: non_empty(&r.mn_id),
            proxy_coa: r.proxy_coa.clone(),
            mag_name: r.mag_name.clone().filter(|n| !n.is_empty()),
            status: status(r.status, &r.status_name),
            detail: r.detail.clone(),
            count: r.count,
        }
    }
}

/// One event of `bindings watch`: `type` is RESET, SYNCED, ADDED, UPDATED, DELETED or
/// REJECTED; `reason` comes with RESET, UPDATED and DELETED, `binding` with ADDED, UPDATED and
/// DELETED, `rejected` with REJECTED, `object_count` with SYNCED.
#[derive(Debug, Clone, Serialize)]
pub struct EventView {
    pub epoch: u64,
    pub revision: u64,
    pub time: Option<String>,
    #[serde(rename = "type")]
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub binding: Option<BindingView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rejected: Option<RejectedView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object_count: Option<u64>,
}

impl From<&pb::BindingEvent> for EventView {
    fn from(e: &pb::BindingEvent) -> Self {
        use pb::binding_event::Event;
        let mut v = EventView {
            epoch: e.epoch,
            revision: e.revision,
            time: timestamp(e.time.as_ref()),
            kind: "UNKNOWN",
            reason: None,
            binding: None,
            rejected: None,
            object_count: None,
        };
        match &e.event {
            Some(Event::Reset(r)) => {
                v.kind = "RESET";
                v.reason = Some(reset_reason(r.reason));
            }
            Some(Event::Synced(s)) => {
                v.kind = "SYNCED";
                v.object_count = Some(s.object_count);
            }
            Some(Event::Added(b)) => {
                v.kind = "ADDED";
                v.binding = Some(b.into());
            }
            Some(Event::Updated(u)) => {
                v.kind = "UPDATED";
                v.reason = Some(update_reason(u.reason));
                v.binding = u.binding.as_ref().map(Into::into);
            }
            Some(Event::Deleted(d)) => {
                v.kind = "DELETED";
                v.reason = Some(delete_reason(d.reason));
                v.binding = d.binding.as_ref().map(Into::into);
            }
            Some(Event::Rejected(r)) => {
                v.kind = "REJECTED";
                v.rejected = Some(r.into());
            }
            None => {}
        }
        v
    }
}

/// Where a binding is: `2001:db8:100:1::/64 at 2001:db8:1::10 (mag1)`, with the IPv4 home
/// address after the prefixes when there is one.
fn whereabouts(b: &BindingView) -> String {
    let mut homes = b.home_network_prefixes.clone();
    homes.extend(b.ipv4_home_address.clone());
    format!(
        "{} at {}",
        show::list(&homes),
        proxy_coa_and_name(&b.proxy_coa, b.mag_name.as_deref())
    )
}

/// One event as one line for people (`bindings watch`).
pub fn event_line(e: &pb::BindingEvent) -> String {
    let v = EventView::from(e);
    let time = v.time.clone().unwrap_or_else(|| "-".into());
    let reason = v.reason.clone().unwrap_or_default();
    let what = match (v.kind, &v.binding, &v.rejected) {
        ("RESET", _, _) => format!("{reason}: the current state follows"),
        ("SYNCED", _, _) => {
            let n = v.object_count.unwrap_or(0);
            format!(
                "{n} binding{}; live from revision {}.{}",
                if n == 1 { "" } else { "s" },
                v.epoch,
                v.revision
            )
        }
        ("ADDED", Some(b), _) => format!(
            "{}  {}, {}, lifetime {}",
            b.mn_id,
            whereabouts(b),
            b.state,
            seconds(u64::from(b.lifetime_granted_seconds))
        ),
        ("UPDATED", Some(b), _) => {
            let mut s = format!("{}  {reason}: {}, {}", b.mn_id, whereabouts(b), b.state);
            if reason == "HANDOFF"
                && let Some(prev) = &b.previous_proxy_coa
            {
                s.push_str(&format!(", from {prev}"));
                if let Some(ms) = b.last_handover_interruption_ms {
                    s.push_str(&format!(" ({ms}ms gap)"));
                }
            }
            s
        }
        ("DELETED", Some(b), _) => format!("{}  {reason}: was {}", b.mn_id, whereabouts(b)),
        ("REJECTED", _, Some(r)) => {
            let mut s = format!(
                "{}  {} {} from {}",
                r.mn_id.as_deref().unwrap_or("-"),
                r.status.value,
                r.status.name.as_deref().unwrap_or("unknown"),
                proxy_coa_and_name(&r.proxy_coa, r.mag_name.as_deref())
            );
            if !r.detail.is_empty() {
                s.push_str(&format!(": {}", r.detail));
            }
            if r.count > 1 {
                s.push_str(&format!(" ({} in a row)", r.count));
            }
            s
        }
        (kind, _, _) => format!("{kind} event of revision {}", v.revision),
    };
    format!("{time}  {:<8}  {what}", v.kind)
}

/// The outcome of `bindings revoke`.
#[derive(Debug, Clone, Serialize)]
pub struct RevokeView {
    pub mn_id: String,
    pub outcome: String,
    pub bra_status: Option<Coded>,
    pub binding: Option<BindingView>,
    /// A per-MAG revocation: the MAG's proxy-CoA and how many bindings went.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mag: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_bindings: Option<u32>,
}

impl RevokeView {
    pub fn new(mn_id: &str, r: &pb::RevokeResponse) -> Self {
        RevokeView {
            mn_id: mn_id.to_owned(),
            outcome: revocation_outcome(r.outcome),
            bra_status: r.bra_status.map(|s| status(s, &r.bra_status_name)),
            binding: r.binding.as_ref().map(Into::into),
            mag: None,
            revoked_bindings: None,
        }
    }

    /// A per-MAG revocation (`bindings revoke --mag`).
    pub fn of_mag(mag: &str, r: &pb::RevokeResponse) -> Self {
        RevokeView {
            mag: Some(mag.to_owned()),
            revoked_bindings: Some(r.revoked_bindings),
            ..RevokeView::new("", r)
        }
    }

    pub fn text(&self) -> String {
        let how = match self.outcome.as_str() {
            "ACKNOWLEDGED" => "the MAG acknowledged".to_owned(),
            "REFUSED_BY_MAG" => "the MAG refused; the entry was removed anyway".to_owned(),
            "NO_ACKNOWLEDGEMENT" => {
                "no acknowledgement from the MAG; the entry was removed anyway".to_owned()
            }
            other => other.to_owned(),
        };
        let bra = match &self.bra_status {
            Some(c) => format!(" (BRA status {} {})", c.value, c.text()),
            None => String::new(),
        };
        let at = self
            .binding
            .as_ref()
            .map(|b| format!(" at {}", b.proxy_coa))
            .unwrap_or_default();
        if let (Some(mag), Some(n)) = (&self.mag, self.revoked_bindings) {
            return format!("MAG {mag}: {n} binding(s) revoked: {how}{bra}\n");
        }
        format!("{}: binding{at} revoked: {how}{bra}\n", self.mn_id)
    }
}

/// A PBA status counter.
#[derive(Debug, Clone, Serialize)]
pub struct StatusCount {
    pub status: u32,
    pub status_name: String,
    pub count: u64,
}

/// The LMA's counters (`pmipctl stats`).
#[derive(Debug, Clone, Serialize)]
pub struct LmaStatsView {
    pub name: String,
    pub lma_address: String,
    pub version: String,
    pub restart_counter: u64,
    pub revision: u64,
    pub started_at: Option<String>,
    pub uptime_seconds: u64,
    pub bindings: u64,
    pub active_bindings: u64,
    pub allocated_prefixes: u64,
    pub free_prefixes: u64,
    pub mobile_node_profiles: u64,
    pub authorized_mags: u64,
    pub pbus_received: u64,
    pub pbas_by_status: Vec<StatusCount>,
    pub handovers: u64,
    pub revocations: u64,
    pub expirations: u64,
    pub mags_reachable: u64,
    pub watchers: u64,
}

impl From<&pb::LmaStats> for LmaStatsView {
    fn from(s: &pb::LmaStats) -> Self {
        LmaStatsView {
            name: s.name.clone(),
            lma_address: s.lma_address.clone(),
            version: s.version.clone(),
            restart_counter: s.restart_counter,
            revision: s.revision,
            started_at: timestamp(s.started_at.as_ref()),
            uptime_seconds: uptime_seconds(s.uptime.as_ref()),
            bindings: s.bindings,
            active_bindings: s.active_bindings,
            allocated_prefixes: s.allocated_prefixes,
            free_prefixes: s.free_prefixes,
            mobile_node_profiles: s.mobile_node_profiles,
            authorized_mags: s.authorized_mags,
            pbus_received: s.pbus_received,
            pbas_by_status: s
                .pbas_by_status
                .iter()
                .map(|c| StatusCount {
                    status: c.status,
                    status_name: c.status_name.clone(),
                    count: c.count,
                })
                .collect(),
            handovers: s.handovers,
            revocations: s.revocations,
            expirations: s.expirations,
            mags_reachable: s.mags_reachable,
            watchers: s.watchers,
        }
    }
}

fn pba_lines(counts: &[StatusCount]) -> String {
    if counts.is_empty() {
        return "none".into();
    }
    counts
        .iter()
        .map(|c| format!("{} {}: {}", c.status, or_dash(&c.status_name), c.count))
        .collect::<Vec<_>>()
        .join(", ")
}

impl LmaStatsView {
    pub fn text(&self) -> String {
        fields(&[
            ("LMA", format!("{} ({})", self.name, self.lma_address)),
            ("Version", self.version.clone()),
            (
                "Up",
                format!(
                    "{} since {}",
                    seconds(self.uptime_seconds),
                    self.started_at.as_deref().unwrap_or("-")
                ),
            ),
            ("Restart counter", self.restart_counter.to_string()),
            ("Revision", self.revision.to_string()),
            (
                "Bindings",
                format!("{} ({} active)", self.bindings, self.active_bindings),
            ),
            (
                "Prefixes",
                format!(
                    "{} allocated, {} free",
                    self.allocated_prefixes, self.free_prefixes
                ),
            ),
            ("Profiles", self.mobile_node_profiles.to_string()),
            (
                "Authorized MAGs",
                format!(
                    "{} ({} answering heartbeats)",
                    self.authorized_mags, self.mags_reachable
                ),
            ),
            ("PBUs received", self.pbus_received.to_string()),
            ("PBAs sent", pba_lines(&self.pbas_by_status)),
            ("Handovers", self.handovers.to_string()),
            ("Revocations", self.revocations.to_string()),
            ("Expirations", self.expirations.to_string()),
            ("Watchers", self.watchers.to_string()),
        ])
    }
}

// ---- policy (LMA) ----

/// A mobile node profile as the LMA keeps it (`pmip.v1.MobileNodeEntry`).
#[derive(Debug, Clone, Serialize)]
pub struct ProfileEntryView {
    pub profile: MobileNodeProfile,
    pub source: String,
    pub revision: u64,
    pub updated_at: Option<String>,
}

impl ProfileEntryView {
    pub fn new(e: &pb::MobileNodeEntry) -> Result<Self, CliError> {
        let p = e.profile.clone().unwrap_or_default();
        let profile = cnf::convert::profile_from_proto(&p).map_err(|err| {
            CliError::Other(anyhow::anyhow!(
                "the LMA sent a profile that does not read back ({:?}): {err}",
                p.mn_id
            ))
        })?;
        Ok(ProfileEntryView {
            profile,
            source: policy_source(e.source),
            revision: e.revision,
            updated_at: timestamp(e.updated_at.as_ref()),
        })
    }
}

fn strings<T: ToString>(items: &[T]) -> Vec<String> {
    items.iter().map(ToString::to_string).collect()
}

fn att_of_profile(p: &MobileNodeProfile) -> String {
    p.access_technology_type
        .map_or_else(|| "-".into(), |v| text(&access_technology(i32::from(v))))
}

/// The IP versions of a profile (RFC 5844 §3.2.2), with a pinned IPv4 home address:
/// `IPv6`, `IPv6+IPv4`, `IPv4 (192.0.2.10)`.
fn ip_versions(p: &MobileNodeProfile) -> String {
    let mut v = match (p.ipv6, p.ipv4) {
        (true, true) => "IPv6+IPv4".to_owned(),
        (true, false) => "IPv6".to_owned(),
        (false, true) => "IPv4".to_owned(),
        (false, false) => "-".to_owned(),
    };
    if let Some(a) = p.ipv4_home_address {
        v.push_str(&format!(" ({a})"));
    }
    v
}

fn local_routing(p: &MobileNodeProfile) -> String {
    match p.local_routing {
        Some(true) => "on".into(),
        Some(false) => "off".into(),
        None => "-".into(),
    }
}

/// `enabled`, or `refused` when the LMA answers the node's PBUs with PROXY_REG_NOT_ENABLED
/// (152, RFC 5213 §5.3.1 rule 8).
fn proxy_registration(p: &MobileNodeProfile) -> String {
    if p.proxy_registration_enabled {
        "enabled".into()
    } else {
        "refused".into()
    }
}

/// The `policy list` table; `wide` adds the revision and the time of the last change.
pub fn profiles_table(es: &[ProfileEntryView], wide: bool) -> Table {
    let mut headings = vec![
        "MN-ID",
        "LINK-LAYER ADDRESSES",
        "HOME NETWORK PREFIXES",
        "IP",
        "ALLOWED MAGS",
        "ACCESS TECHNOLOGY",
        "LOCAL ROUTING",
        "PROXY REGISTRATION",
        "SOURCE",
    ];
    if wide {
        headings.extend(["REVISION", "UPDATED"]);
    }
    let mut t = Table::new(&headings);
    for e in es {
        let p = &e.profile;
        let mut row = vec![
            p.mn_id.to_string(),
            show::list(&strings(&p.link_layer_addresses)),
            show::list(&strings(&p.home_network_prefixes)),
            ip_versions(p),
            show::list(&strings(&p.allowed_mags)),
            att_of_profile(p),
            local_routing(p),
            proxy_registration(p),
            e.source.clone(),
        ];
        if wide {
            row.push(e.revision.to_string());
            row.push(e.updated_at.clone().unwrap_or_else(|| "-".into()));
        }
        t.row(row);
    }
    t
}

/// One profile, a field per line (`policy get`).
pub fn profile_text(e: &ProfileEntryView) -> String {
    let p = &e.profile;
    fields(&[
        ("MN-ID", p.mn_id.to_string()),
        (
            "Link-layer addresses",
            show::list(&strings(&p.link_layer_addresses)),
        ),
        (
            "Home network prefixes",
            if p.home_network_prefixes.is_empty() {
                "- (allocated from the LMA's pools)".into()
            } else {
                show::list(&strings(&p.home_network_prefixes))
            },
        ),
        ("IP versions", ip_versions(p)),
        (
            "Allowed MAGs",
            if p.allowed_mags.is_empty() {
                "- (any authorized MAG)".into()
            } else {
                show::list(&strings(&p.allowed_mags))
            },
        ),
        ("Access technology", att_of_profile(p)),
        ("Local routing", local_routing(p)),
        ("Proxy registration", proxy_registration(p)),
        ("Source", e.source.clone()),
        ("Revision", e.revision.to_string()),
        (
            "Updated",
            e.updated_at.clone().unwrap_or_else(|| "-".into()),
        ),
    ])
}

/// An authorized MAG (`pmip.v1.AuthorizedMag`).
#[derive(Debug, Clone, Serialize)]
pub struct MagView {
    pub proxy_coa: String,
    pub name: Option<String>,
    pub source: String,
}

impl From<&pb::AuthorizedMag> for MagView {
    fn from(m: &pb::AuthorizedMag) -> Self {
        MagView {
            proxy_coa: m.proxy_coa.clone(),
            name: non_empty(&m.name),
            source: policy_source(m.source),
        }
    }
}

/// The `policy mags list` table.
pub fn mags_table(ms: &[MagView]) -> Table {
    let mut t = Table::new(&["PROXY-COA", "NAME", "SOURCE"]);
    for m in ms {
        t.row(vec![
            m.proxy_coa.clone(),
            or_dash(m.name.as_deref().unwrap_or_default()),
            m.source.clone(),
        ]);
    }
    t
}

// ---- gateway (MAG) ----

/// A binding update list entry (`pmip.v1.BindingUpdateListEntry`).
#[derive(Debug, Clone, Serialize)]
pub struct BulEntryView {
    pub mn_id: String,
    pub mn_link_layer_id: String,
    pub access_interface: Option<String>,
    pub home_network_prefixes: Vec<String>,
    /// The IPv4 home address with its subnet's prefix length (RFC 5844).
    pub ipv4_home_address: Option<String>,
    pub lma_address: String,
    pub link_local_address: Option<String>,
    pub access_technology_type: Option<Coded>,
    pub handoff_indicator: Option<Coded>,
    pub state: String,
    pub lifetime_granted_seconds: u32,
    pub lifetime_remaining_seconds: u32,
    pub last_pba_status: Option<Coded>,
    pub retransmissions: u32,
    pub attached_at: Option<String>,
    pub registered_at: Option<String>,
    pub lab: bool,
}

impl From<&pb::BindingUpdateListEntry> for BulEntryView {
    fn from(e: &pb::BindingUpdateListEntry) -> Self {
        BulEntryView {
            mn_id: e.mn_id.clone(),
            mn_link_layer_id: e.mn_link_layer_id.clone(),
            access_interface: non_empty(&e.access_interface),
            home_network_prefixes: e.home_network_prefixes.clone(),
            ipv4_home_address: non_empty(&e.ipv4_home_address),
            lma_address: e.lma_address.clone(),
            link_local_address: non_empty(&e.link_local_address).filter(|a| {
                a.parse::<std::net::Ipv6Addr>()
                    .map_or(true, |a| !a.is_unspecified())
            }),
            access_technology_type: access_technology(e.access_technology_type),
            handoff_indicator: handoff_indicator(e.handoff_indicator),
            state: bul_state(e.state),
            lifetime_granted_seconds: e.lifetime_granted_seconds,
            lifetime_remaining_seconds: e.lifetime_remaining_seconds,
            last_pba_status: e
                .last_pba_status
                .map(|s| status(s, &e.last_pba_status_name)),
            retransmissions: e.retransmissions,
            attached_at: timestamp(e.attached_at.as_ref()),
            registered_at: timestamp(e.registered_at.as_ref()),
            lab: e.lab,
        }
    }
}

fn pba_text(c: &Option<Coded>) -> String {
    match c {
        Some(c) => format!("{} {}", c.value, c.name.as_deref().unwrap_or("unknown")),
        None => "-".into(),
    }
}

/// The `mag bul` table; `wide` adds the LMA, the link-local address, the access technology,
/// the handoff indicator, the retransmissions and the times.
pub fn bul_table(es: &[pb::BindingUpdateListEntry], now: SystemTime, wide: bool) -> Table {
    let mut headings = vec![
        "MN-ID",
        "LINK-LAYER",
        "INTERFACE",
        "HOME NETWORK PREFIXES",
        "IPV4 HOME ADDRESS",
        "STATE",
        "LIFETIME",
        "LAST PBA",
        "AGE",
    ];
    if wide {
        headings.extend([
            "LMA",
            "LINK-LOCAL",
            "ACCESS TECHNOLOGY",
            "HANDOFF INDICATOR",
            "RETRANSMISSIONS",
            "ATTACHED",
            "REGISTERED",
        ]);
    }
    let mut t = Table::new(&headings);
    for e in es {
        let v = BulEntryView::from(e);
        let mut state = v.state.clone();
        if v.lab {
            state.push_str(" (lab)");
        }
        let mut row = vec![
            v.mn_id.clone(),
            v.mn_link_layer_id.clone(),
            or_dash(v.access_interface.as_deref().unwrap_or_default()),
            show::list(&v.home_network_prefixes),
            or_dash(v.ipv4_home_address.as_deref().unwrap_or_default()),
            state,
            lifetime(v.lifetime_remaining_seconds, v.lifetime_granted_seconds),
            pba_text(&v.last_pba_status),
            age(e.attached_at.as_ref(), now),
        ];
        if wide {
            let opt = |o: &Option<String>| o.clone().unwrap_or_else(|| "-".into());
            row.extend([
                v.lma_address.clone(),
                opt(&v.link_local_address),
                text(&v.access_technology_type),
                text(&v.handoff_indicator),
                v.retransmissions.to_string(),
                opt(&v.attached_at),
                opt(&v.registered_at),
            ]);
        }
        t.row(row);
    }
    t
}

/// One entry, a field per line (`mag attach`, `mag detach`).
pub fn bul_entry_text(e: &pb::BindingUpdateListEntry, now: SystemTime) -> String {
    let v = BulEntryView::from(e);
    let opt = |o: &Option<String>| o.clone().unwrap_or_else(|| "-".into());
    fields(&[
        ("MN-ID", v.mn_id.clone()),
        ("Link-layer address", v.mn_link_layer_id.clone()),
        ("Access interface", opt(&v.access_interface)),
        ("State", v.state.clone()),
        (
            "Home network prefixes",
            show::list(&v.home_network_prefixes),
        ),
        ("IPv4 home address", opt(&v.ipv4_home_address)),
        ("LMA", v.lma_address.clone()),
        ("Link-local address", opt(&v.link_local_address)),
        ("Access technology", text(&v.access_technology_type)),
        ("Handoff indicator", text(&v.handoff_indicator)),
        (
            "Lifetime",
            format!(
                "{} remaining of {}",
                seconds(u64::from(v.lifetime_remaining_seconds)),
                seconds(u64::from(v.lifetime_granted_seconds))
            ),
        ),
        ("Last PBA", pba_text(&v.last_pba_status)),
        ("Retransmissions", v.retransmissions.to_string()),
        ("Attached", when(e.attached_at.as_ref(), now)),
        ("Registered", when(e.registered_at.as_ref(), now)),
    ])
}

/// A MAG's counters (`pmipctl mag stats`).
#[derive(Debug, Clone, Serialize)]
pub struct MagStatsView {
    pub name: String,
    pub proxy_coa: String,
    pub lma_address: String,
    pub version: String,
    pub restart_counter: u64,
    pub started_at: Option<String>,
    pub uptime_seconds: u64,
    pub bul_entries: u64,
    pub registered: u64,
    pub pbus_sent: u64,
    pub pbu_retransmissions: u64,
    pub pbas_by_status: Vec<StatusCount>,
    pub lma_reachable: bool,
    pub lab_nodes: u64,
    pub fast_handovers: u64,
    pub buffered_packets: u64,
    pub mobile_node_profiles: u64,
    pub policy_synced: bool,
}

impl From<&pb::MagStats> for MagStatsView {
    fn from(s: &pb::MagStats) -> Self {
        MagStatsView {
            name: s.name.clone(),
            proxy_coa: s.proxy_coa.clone(),
            lma_address: s.lma_address.clone(),
            version: s.version.clone(),
            restart_counter: s.restart_counter,
            started_at: timestamp(s.started_at.as_ref()),
            uptime_seconds: uptime_seconds(s.uptime.as_ref()),
            bul_entries: s.bul_entries,
            registered: s.registered,
            pbus_sent: s.pbus_sent,
            pbu_retransmissions: s.pbu_retransmissions,
            pbas_by_status: s
                .pbas_by_status
                .iter()
                .map(|c| StatusCount {
                    status: c.status,
                    status_name: c.status_name.clone(),
                    count: c.count,
                })
                .collect(),
            lma_reachable: s.lma_reachable,
            lab_nodes: s.lab_nodes,
            fast_handovers: s.fast_handovers,
            buffered_packets: s.buffered_packets,
            mobile_node_profiles: s.mobile_node_profiles,
            policy_synced: s.policy_synced,
        }
    }
}

impl MagStatsView {
    pub fn text(&self) -> String {
        let yes_no = |b: bool| if b { "yes" } else { "no" }.to_owned();
        fields(&[
            ("MAG", format!("{} ({})", self.name, self.proxy_coa)),
            ("LMA", self.lma_address.clone()),
            ("LMA reachable", yes_no(self.lma_reachable)),
            ("Version", self.version.clone()),
            (
                "Up",
                format!(
                    "{} since {}",
                    seconds(self.uptime_seconds),
                    self.started_at.as_deref().unwrap_or("-")
                ),
            ),
            ("Restart counter", self.restart_counter.to_string()),
            (
                "Binding update list",
                format!(
                    "{} entries ({} registered)",
                    self.bul_entries, self.registered
                ),
            ),
            (
                "PBUs sent",
                format!(
                    "{} ({} retransmissions)",
                    self.pbus_sent, self.pbu_retransmissions
                ),
            ),
            ("PBAs received", pba_lines(&self.pbas_by_status)),
            ("Profiles", self.mobile_node_profiles.to_string()),
            ("Policy synced", yes_no(self.policy_synced)),
            ("Fast handovers", self.fast_handovers.to_string()),
            ("Buffered packets", self.buffered_packets.to_string()),
            ("Lab nodes", self.lab_nodes.to_string()),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enum_names_lose_their_prefix_and_unknown_values_stay_numbers() {
        assert_eq!(binding_state(pb::BindingState::Active as i32), "ACTIVE");
        assert_eq!(
            binding_state(pb::BindingState::AwaitingHandoff as i32),
            "AWAITING_HANDOFF"
        );
        assert_eq!(binding_state(42), "42");
        assert_eq!(update_reason(pb::UpdateReason::Handoff as i32), "HANDOFF");
        assert_eq!(bul_state(pb::BulState::Registered as i32), "REGISTERED");
    }

    #[test]
    fn coded_values_carry_the_rfc_names() {
        assert_eq!(
            access_technology(3),
            Some(Coded {
                value: 3,
                name: Some("IEEE 802.3".into())
            })
        );
        assert_eq!(access_technology(0), None);
        assert_eq!(
            access_technology(300),
            Some(Coded {
                value: 300,
                name: None
            })
        );
        assert_eq!(
            handoff_indicator(1).unwrap().name.as_deref(),
            Some("Attachment over a new interface")
        );
    }

    #[test]
    fn the_ipv4_home_address_is_a_column_a_field_and_a_key() {
        let dual = pb::Binding {
            mn_id: "mn1@example.org".into(),
            home_network_prefixes: vec!["2001:db8:100:1::/64".into()],
            ipv4_home_address: "192.0.2.10/24".into(),
            ipv4_default_router: "192.0.2.1".into(),
            proxy_coa: "2001:db8:1::10".into(),
            state: pb::BindingState::Active as i32,
            ..Default::default()
        };
        let v6 = pb::Binding {
            mn_id: "mn2@example.org".into(),
            home_network_prefixes: vec!["2001:db8:100:2::/64".into()],
            proxy_coa: "2001:db8:1::10".into(),
            ..Default::default()
        };
        let table = bindings_table(&[dual.clone(), v6.clone()], SystemTime::now(), false).render();
        let lines: Vec<&str> = table.lines().collect();
        let col = lines[0].find("IPV4 HOME ADDRESS").expect(&table);
        assert_eq!(&lines[1][col..col + 13], "192.0.2.10/24", "{table}");
        assert_eq!(&lines[2][col..col + 2], "- ", "{table}");
        let text = binding_text(&dual, SystemTime::now());
        assert!(
            text.lines()
                .any(|l| l == "IPv4 home address:      192.0.2.10/24 via 192.0.2.1"),
            "{text}"
        );
        assert!(
            binding_text(&v6, SystemTime::now())
                .lines()
                .any(|l| l == "IPv4 home address:      -")
        );
        let json = serde_json::to_value(BindingView::from(&dual)).unwrap();
        assert_eq!(json["ipv4_home_address"], "192.0.2.10/24");
        assert_eq!(json["ipv4_default_router"], "192.0.2.1");
        let json = serde_json::to_value(BindingView::from(&v6)).unwrap();
        assert_eq!(json["ipv4_home_address"], serde_json::Value::Null);
        // An IPv4-only node: the address is where it is.
        let v4 = pb::Binding {
            home_network_prefixes: Vec::new(),
            ..dual
        };
        let e = pb::BindingEvent {
            event: Some(pb::binding_event::Event::Added(v4)),
            ..Default::default()
        };
        assert!(
            event_line(&e).contains("192.0.2.10/24 at 2001:db8:1::10"),
            "{}",
            event_line(&e)
        );
        let bul = pb::BindingUpdateListEntry {
            mn_id: "mn1@example.org".into(),
            ipv4_home_address: "192.0.2.10/24".into(),
            ..Default::default()
        };
        let t = bul_table(&[bul], SystemTime::now(), false).render();
        assert!(
            t.lines().next().unwrap().contains("IPV4 HOME ADDRESS"),
            "{t}"
        );
        assert!(t.lines().nth(1).unwrap().contains("192.0.2.10/24"), "{t}");
    }

    #[test]
    fn an_event_line_says_what_happened() {
        use pb::binding_event::Event;
        let b = pb::Binding {
            mn_id: "mn1@example.org".into(),
            home_network_prefixes: vec!["2001:db8:100:1::/64".into()],
            proxy_coa: "2001:db8:2::10".into(),
            mag_name: Some("mag2".into()),
            state: pb::BindingState::Active as i32,
            previous_proxy_coa: "2001:db8:1::10".into(),
            last_handover_interruption_ms: Some(12),
            ..Default::default()
        };
        let e = pb::BindingEvent {
            epoch: 3,
            revision: 9,
            time: Some(prost_types::Timestamp {
                seconds: 1_700_000_000,
                nanos: 0,
            }),
            event: Some(Event::Updated(pb::BindingUpdated {
                binding: Some(b),
                reason: pb::UpdateReason::Handoff as i32,
            })),
        };
        assert_eq!(
            event_line(&e),
            "2023-11-14T22:13:20.000Z  UPDATED   mn1@example.org  HANDOFF: 2001:db8:100:1::/64 \
             at 2001:db8:2::10 (mag2), ACTIVE, from 2001:db8:1::10 (12ms gap)"
        );
        let r = pb::BindingEvent {
            epoch: 3,
            revision: 10,
            time: None,
            event: Some(Event::Rejected(pb::RegistrationRejected {
                mn_id: "mn3@example.org".into(),
                proxy_coa: "2001:db8:3::10".into(),
                status: 154,
                status_name: "MAG_NOT_AUTHORIZED_FOR_PROXY_REG".into(),
                detail: "not authorized".into(),
                count: 2,
                ..Default::default()
            })),
        };
        assert_eq!(
            event_line(&r),
            "-  REJECTED  mn3@example.org  154 MAG_NOT_AUTHORIZED_FOR_PROXY_REG from \
             2001:db8:3::10: not authorized (2 in a row)"
        );
        let json = serde_json::to_value(EventView::from(&r)).unwrap();
        assert_eq!(json["type"], "REJECTED");
        assert_eq!(json["rejected"]["status"]["value"], 154);
        assert!(json.get("binding").is_none());
    }
}
