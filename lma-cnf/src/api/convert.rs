//! Between `pmip.v1` messages and the core's types, in one place.
//!
//! Text from clients is parsed here, and every refusal is an INVALID_ARGUMENT whose message
//! starts with the field it is about ("home_network_prefixes[1]: 2001:db8::/129 is not an IPv6
//! prefix"). What goes out is in canonical text form (RFC 5952 addresses, colon-hex link-layer
//! addresses), with status codes as their number and RFC name.

use std::net::Ipv6Addr;
use std::time::Duration;

use ipnet::Ipv6Net;
use pmip::wire::{RevocationTrigger, Status as PbaStatus, Timestamp, WallClock};
use proto::v1 as pb;
use tonic::Status;

use crate::core::{MagPeerView, MagView, PeerState, ProfileView};
use crate::hub::{self, BindingView, Rejection, ViewState};

/// Default and largest page of the List RPCs (`common.proto`).
pub const DEFAULT_PAGE_SIZE: usize = 100;
pub const MAX_PAGE_SIZE: usize = 1000;

pub use cnf::convert::{ipv4, ipv6, nai, prefix, profile_from_proto, profile_to_proto, proxy_coa};

/// INVALID_ARGUMENT about `field`.
pub fn invalid(field: &str, why: impl std::fmt::Display) -> Status {
    Status::invalid_argument(format!("{field}: {why}"))
}

/// A prefix, or an address as its /128.
pub fn prefix_or_address(field: &str, s: &str) -> Result<Ipv6Net, Status> {
    if s.contains('/') {
        return Ok(prefix(field, s)?);
    }
    let a: Ipv6Addr = s.trim().parse().map_err(|_| {
        invalid(
            field,
            format_args!("{s:?} is neither an IPv6 prefix nor an IPv6 address"),
        )
    })?;
    Ok(Ipv6Net::from(a))
}

/// The `page_size` rule of `common.proto`.
pub fn page_size(n: u32) -> usize {
    match n as usize {
        0 => DEFAULT_PAGE_SIZE,
        n => n.min(MAX_PAGE_SIZE),
    }
}

/// A page token: the epoch it was issued in and where to continue.
pub fn page_token(epoch: u64, after: &str) -> String {
    format!("{epoch}.{after}")
}

/// The position in a token this server issued in `epoch`; `None` for an empty token.
pub fn parse_page_token(epoch: u64, token: &str) -> Result<Option<&str>, Status> {
    if token.is_empty() {
        return Ok(None);
    }
    let bad = || {
        invalid(
            "page_token",
            format_args!("{token:?} was not issued by this LMA"),
        )
    };
    let (e, after) = token.split_once('.').ok_or_else(bad)?;
    let e: u64 = e.parse().map_err(|_| bad())?;
    if e != epoch {
        return Err(invalid(
            "page_token",
            format_args!(
                "the token is from LMA epoch {e}, this is epoch {epoch} (the LMA restarted): \
                 list again from the first page"
            ),
        ));
    }
    if after.is_empty() {
        return Err(bad());
    }
    Ok(Some(after))
}

/// A binding cache slot from a page token.
pub fn parse_slot(epoch: u64, token: &str) -> Result<Option<u32>, Status> {
    parse_page_token(epoch, token)?
        .map(|s| {
            s.parse::<u32>().map_err(|_| {
                invalid(
                    "page_token",
                    format_args!("{token:?} was not issued by this LMA"),
                )
            })
        })
        .transpose()
}

/// A revocation trigger for one node: RFC 5846 §5.1 values below 128.
pub fn revocation_trigger(v: i32) -> Result<RevocationTrigger, Status> {
    match u8::try_from(v) {
        Ok(t) if t < 128 => Ok(RevocationTrigger::from(t)),
        _ => Err(invalid(
            "trigger",
            format_args!(
                "{v} is not a per-node revocation trigger (RFC 5846 §5.1: 0 to 127; global \
                 triggers from 128 are not available over this API)"
            ),
        )),
    }
}

pub fn source(from_config: bool) -> pb::PolicySource {
    if from_config {
        pb::PolicySource::Config
    } else {
        pb::PolicySource::Api
    }
}

pub fn profile_entry(v: &ProfileView) -> pb::MobileNodeEntry {
    pb::MobileNodeEntry {
        profile: Some(profile_to_proto(&v.profile)),
        source: source(v.from_config) as i32,
        revision: v.revision,
        updated_at: v.updated_at.map(timestamp),
    }
}

pub fn authorized_mag(m: &MagView) -> pb::AuthorizedMag {
    pb::AuthorizedMag {
        proxy_coa: m.address.to_string(),
        name: m.name.clone(),
        source: source(m.from_config) as i32,
    }
}

pub fn mag_peer(m: &MagPeerView) -> pb::MagPeer {
    pb::MagPeer {
        proxy_coa: m.address.to_string(),
        name: m.name.clone(),
        authorization: m.authorized.map_or(pb::PolicySource::Unspecified, source) as i32,
        state: match m.state {
            PeerState::Up => pb::MagPeerState::Up,
            PeerState::Down => pb::MagPeerState::Down,
            PeerState::Idle => pb::MagPeerState::Idle,
            PeerState::Unmonitored => pb::MagPeerState::Unmonitored,
        } as i32,
        since: Some(timestamp(m.since)),
        bindings: m.sessions,
        restart_counter: m.restart_counter,
        restarts: m.restarts,
        last_restart_at: m.last_restart.map(timestamp),
    }
}

pub fn timestamp(w: WallClock) -> prost_types::Timestamp {
    let d = w.0;
    prost_types::Timestamp {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: d.subsec_nanos() as i32,
    }
}

pub fn timestamp_ms(ms: u64) -> prost_types::Timestamp {
    timestamp(WallClock(Duration::from_millis(ms)))
}

pub fn duration(d: Duration) -> prost_types::Duration {
    prost_types::Duration {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: d.subsec_nanos() as i32,
    }
}

/// A PBA status's RFC name, or "unknown".
pub fn status_name(s: PbaStatus) -> String {
    s.rfc_name().unwrap_or("unknown").to_owned()
}

pub fn binding(v: &BindingView) -> pb::Binding {
    let r = &v.record;
    pb::Binding {
        mn_id: r.mn_id.clone(),
        home_network_prefixes: r
            .home_network_prefixes
            .iter()
            .map(ToString::to_string)
            .collect(),
        proxy_coa: r.proxy_coa.to_string(),
        mag_name: v.mag_name.clone(),
        access_technology_type: i32::from(r.access_technology_type),
        handoff_indicator: i32::from(r.handoff_indicator),
        mn_link_layer_id: r
            .mn_link_layer_id
            .map(|l| l.to_string())
            .unwrap_or_default(),
        link_local_address: r
            .link_local_address
            .map(|a| a.to_string())
            .unwrap_or_default(),
        lifetime_granted_seconds: r.lifetime_s,
        lifetime_remaining_seconds: v.remaining_s,
        state: match v.state {
            ViewState::Active => pb::BindingState::Active,
            ViewState::Deregistering => pb::BindingState::Deregistering,
            ViewState::Revoking => pb::BindingState::Revoking,
        } as i32,
        registered_at: Some(timestamp_ms(r.registered_at_ms)),
        updated_at: Some(timestamp_ms(r.updated_at_ms)),
        handover_count: u64::from(r.handover_count),
        last_handover_interruption_ms: r
            .last_handover_gap_ms
            .map(|g| u32::try_from(g).unwrap_or(u32::MAX)),
        previous_proxy_coa: v
            .previous_proxy_coa
            .map(|a| a.to_string())
            .unwrap_or_default(),
        revision: v.revision,
        last_sequence_number: Some(u32::from(r.last_sequence)),
        last_pbu_timestamp: r
            .last_timestamp
            .map(|t| timestamp(Timestamp(t).to_wall_clock())),
        ipv4_home_address: r
            .ipv4_home_address
            .map(|a| a.with_prefix().to_string())
            .unwrap_or_default(),
        ipv4_default_router: r
            .ipv4_home_address
            .map(|a| a.default_router.to_string())
            .unwrap_or_default(),
    }
}

/// What a person reads about a refused registration.
fn rejection_detail(r: &Rejection) -> String {
    match r.status {
        PbaStatus::MagNotAuthorizedForProxyReg => format!(
            "proxy-CoA {} is not an authorized MAG, or not one the profile of {} allows",
            r.mag, r.mn_id
        ),
        PbaStatus::NotLmaForThisMobileNode => {
            format!("the LMA has no mobile node profile for {}", r.mn_id)
        }
        PbaStatus::NotAuthorizedForHomeNetworkPrefix => format!(
            "the PBU asked for a home network prefix that {} may not use",
            r.mn_id
        ),
        PbaStatus::InsufficientResources => {
            "no home network prefix is free in the LMA's pools".to_owned()
        }
        PbaStatus::MissingMnIdentifierOption => "the PBU carried no MN-ID".to_owned(),
        PbaStatus::TimestampMismatch | PbaStatus::TimestampLowerThanPrevAccepted => format!(
            "the PBU from {} failed the timestamp check (clocks out of step, or a replay)",
            r.mag
        ),
        s => format!("the LMA refused the PBU from {} with status {s}", r.mag),
    }
}

pub fn rejection(r: &Rejection) -> pb::RegistrationRejected {
    pb::RegistrationRejected {
        mn_id: r.mn_id.clone(),
        proxy_coa: r.mag.to_string(),
        mag_name: r.mag_name.clone(),
        status: u32::from(r.status.value()),
        status_name: status_name(r.status),
        detail: rejection_detail(r),
        count: r.count,
    }
}

pub fn reset_reason(r: hub::ResetReason) -> pb::ResetReason {
    match r {
        hub::ResetReason::NoCursor => pb::ResetReason::NoCursor,
        hub::ResetReason::NewEpoch => pb::ResetReason::NewEpoch,
        hub::ResetReason::HistoryTooOld => pb::ResetReason::HistoryTooOld,
        hub::ResetReason::CursorInFuture => pb::ResetReason::CursorInFuture,
        hub::ResetReason::SlowConsumer => pb::ResetReason::SlowConsumer,
    }
}

pub fn update_reason(r: hub::UpdateReason) -> pb::UpdateReason {
    match r {
        hub::UpdateReason::Refresh => pb::UpdateReason::Refresh,
        hub::UpdateReason::Handoff => pb::UpdateReason::Handoff,
        hub::UpdateReason::Deregistered => pb::UpdateReason::Deregistered,
        hub::UpdateReason::State => pb::UpdateReason::State,
    }
}

pub fn delete_reason(r: hub::DeleteReason) -> pb::DeleteReason {
    match r {
        hub::DeleteReason::Deregistered => pb::DeleteReason::Deregistered,
        hub::DeleteReason::Expired => pb::DeleteReason::Expired,
        hub::DeleteReason::Revoked => pb::DeleteReason::Revoked,
    }
}

/// One binding change as the event it is on the stream.
pub fn binding_event(c: &hub::BindingChange) -> pb::binding_event::Event {
    use pb::binding_event::Event;
    match c {
        hub::BindingChange::Added(v) => Event::Added(binding(v)),
        hub::BindingChange::Updated(v, why) => Event::Updated(pb::BindingUpdated {
            binding: Some(binding(v)),
            reason: update_reason(*why) as i32,
        }),
        hub::BindingChange::Deleted(v, why) => Event::Deleted(pb::BindingDeleted {
            binding: Some(binding(v)),
            reason: delete_reason(*why) as i32,
        }),
        hub::BindingChange::Rejected(r) => Event::Rejected(rejection(r)),
    }
}

#[cfg(test)]
mod tests {
    use pmip::lma::BindingRecord;
    use tonic::Code;

    use super::*;

    fn message(r: Result<impl std::fmt::Debug, impl Into<Status>>) -> String {
        let e: Status = r.expect_err("refused").into();
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
        e.message().to_owned()
    }

    fn proto_profile() -> pb::MobileNodeProfile {
        pb::MobileNodeProfile {
            mn_id: "mn1@example.org".into(),
            link_layer_addresses: vec!["02-00-5E-10-00-01".into()],
            home_network_prefixes: vec![
                "2001:db8:100:1::/64".into(),
                "2001:DB8:100:2:0::/64".into(),
            ],
            allowed_mags: vec!["2001:db8:0:0::10".into()],
            access_technology_type: Some(pb::AccessTechnologyType::Ieee8023 as i32),
            local_routing: Some(true),
            proxy_registration_enabled: None,
            ..Default::default()
        }
    }

    #[test]
    fn a_profile_round_trips_in_canonical_form() {
        let p = profile_from_proto(&proto_profile()).unwrap();
        assert_eq!(p.mn_id.as_str(), "mn1@example.org");
        assert_eq!(p.access_technology_type, Some(3));
        let back = profile_to_proto(&p);
        assert_eq!(back.link_layer_addresses, vec!["02:00:5e:10:00:01"]);
        assert_eq!(
            back.home_network_prefixes,
            vec!["2001:db8:100:1::/64", "2001:db8:100:2::/64"]
        );
        assert_eq!(back.allowed_mags, vec!["2001:db8::10"]);
        assert_eq!(back.local_routing, Some(true));
        // Canonical text parses back to the same profile.
        assert_eq!(profile_from_proto(&back).unwrap(), p);
        let bare = pb::MobileNodeProfile {
            mn_id: "*@example.org".into(),
            ..Default::default()
        };
        let p = profile_from_proto(&bare).unwrap();
        assert_eq!(profile_to_proto(&p), bare);
    }

    #[test]
    fn every_bad_field_is_named() {
        let with = |f: &dyn Fn(&mut pb::MobileNodeProfile)| {
            let mut p = proto_profile();
            f(&mut p);
            message(profile_from_proto(&p))
        };
        assert_eq!(
            with(&|p| p.home_network_prefixes[1] = "2001:db8::/129".into()),
            "home_network_prefixes[1]: 2001:db8::/129 is not an IPv6 prefix"
        );
        assert_eq!(
            with(&|p| p.home_network_prefixes[0] = "2001:db8:100:1::/80".into()),
            "home_network_prefixes[0]: 2001:db8:100:1::/80: a home network prefix must be /64 \
             or shorter for SLAAC"
        );
        assert_eq!(
            with(&|p| p.home_network_prefixes[0] = "2001:db8:100:1::1/64".into()),
            "home_network_prefixes[0]: 2001:db8:100:1::1/64 has host bits set; did you mean \
             2001:db8:100:1::/64?"
        );
        assert!(
            with(&|p| p.mn_id = "mn 1@example.org".into())
                .starts_with("mn_id: the mobile node identifier contains a space")
        );
        assert_eq!(
            with(&|p| p.mn_id = String::new()),
            "mn_id: the mobile node identifier is empty"
        );
        assert!(with(&|p| p.mn_id = "a".repeat(255)).starts_with("mn_id: "));
        assert!(
            with(&|p| p.link_layer_addresses.push("02:00:5e:zz".into()))
                .starts_with("link_layer_addresses[1]: link-layer address \"02:00:5e:zz\"")
        );
        assert_eq!(
            with(&|p| p.allowed_mags[0] = "ff02::1".into()),
            "allowed_mags[0]: ff02::1 cannot be a proxy-CoA (unspecified, loopback, multicast \
             or link-local)"
        );
        assert_eq!(
            with(&|p| p.allowed_mags[0] = "mag-1".into()),
            "allowed_mags[0]: \"mag-1\" is not an IPv6 address"
        );
        let mut unspecified = proto_profile();
        unspecified.access_technology_type = Some(0);
        assert_eq!(
            profile_from_proto(&unspecified)
                .unwrap()
                .access_technology_type,
            None
        );
        assert_eq!(
            with(&|p| p.access_technology_type = Some(300)),
            "access_technology_type: 300 is not a value from 0 to 255"
        );
    }

    #[test]
    fn prefixes_addresses_and_keys() {
        assert_eq!(
            prefix_or_address("home_network_prefix", "2001:db8:100:1::5")
                .unwrap()
                .to_string(),
            "2001:db8:100:1::5/128"
        );
        assert_eq!(
            prefix_or_address("home_network_prefix", "2001:db8:100:1::/64")
                .unwrap()
                .to_string(),
            "2001:db8:100:1::/64"
        );
        assert_eq!(
            message(prefix_or_address("home_network_prefix", "nope")),
            "home_network_prefix: \"nope\" is neither an IPv6 prefix nor an IPv6 address"
        );
        assert_eq!(
            proxy_coa("p", " 2001:db8::1 ").unwrap().to_string(),
            "2001:db8::1"
        );
        assert!(message(proxy_coa("p", "fe80::1")).contains("link-local"));
        assert!(message(proxy_coa("p", "::")).contains("unspecified"));
    }

    #[test]
    fn page_sizes_and_tokens() {
        assert_eq!(page_size(0), 100);
        assert_eq!(page_size(7), 7);
        assert_eq!(page_size(5000), 1000);
        let t = page_token(4, "17");
        assert_eq!(parse_slot(4, &t).unwrap(), Some(17));
        assert_eq!(parse_slot(4, "").unwrap(), None);
        assert!(message(parse_slot(5, &t)).contains("epoch 4, this is epoch 5"));
        for bad in ["17", "4.", "4.x", "x.17", "4.-1"] {
            assert!(
                message(parse_slot(4, bad)).starts_with("page_token: "),
                "{bad}"
            );
        }
        let t = page_token(4, "a.b@example.org");
        assert_eq!(parse_page_token(4, &t).unwrap(), Some("a.b@example.org"));
    }

    #[test]
    fn triggers_below_128_only() {
        assert_eq!(
            revocation_trigger(pb::RevocationTrigger::AdministrativeReason as i32).unwrap(),
            RevocationTrigger::AdministrativeReason
        );
        assert_eq!(
            revocation_trigger(9).unwrap(),
            RevocationTrigger::Unknown(9)
        );
        for bad in [128, 129, 300, -1] {
            assert!(
                message(revocation_trigger(bad)).starts_with("trigger: "),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_binding_view_becomes_a_binding() {
        let v = BindingView {
            record: BindingRecord {
                mn_id: "mn1@example.org".into(),
                home_network_prefixes: vec!["2001:db8:100:1::/64".parse().unwrap()],
                proxy_coa: "2001:db8::20".parse().unwrap(),
                access_technology_type: 3,
                handoff_indicator: 3,
                mn_link_layer_id: Some(pmip::types::LinkLayerAddress::mac([
                    2, 0, 0x5e, 0x10, 0, 1,
                ])),
                link_local_address: Some("fe80::1".parse().unwrap()),
                lifetime_s: 3600,
                registered_at_ms: 1_700_000_000_250,
                updated_at_ms: 1_700_000_100_000,
                expires_at_ms: 1_700_003_700_000,
                delete_at_ms: None,
                last_timestamp: Some(
                    Timestamp::from_wall_clock(WallClock::from_unix(1_700_000_100, 500_000_000)).0,
                ),
                last_sequence: 7,
                handover_count: 2,
                last_handover_gap_ms: Some(12),
                ipv4_home_address: Some(pmip::ipv4_pool::Ipv4HomeAddress {
                    address: "192.0.2.10".parse().unwrap(),
                    prefix_len: 24,
                    default_router: "192.0.2.1".parse().unwrap(),
                }),
            },
            state: ViewState::Revoking,
            revision: 42,
            previous_proxy_coa: Some("2001:db8::10".parse().unwrap()),
            mag_name: Some("node-b".into()),
            remaining_s: 3599,
        };
        let b = binding(&v);
        assert_eq!(b.home_network_prefixes, vec!["2001:db8:100:1::/64"]);
        assert_eq!(b.ipv4_home_address, "192.0.2.10/24");
        assert_eq!(b.ipv4_default_router, "192.0.2.1");
        let mut v6only = v.clone();
        v6only.record.ipv4_home_address = None;
        let b6 = binding(&v6only);
        assert_eq!(
            (
                b6.ipv4_home_address.as_str(),
                b6.ipv4_default_router.as_str()
            ),
            ("", "")
        );
        assert_eq!(b.proxy_coa, "2001:db8::20");
        assert_eq!(b.previous_proxy_coa, "2001:db8::10");
        assert_eq!(b.mag_name.as_deref(), Some("node-b"));
        assert_eq!(
            b.access_technology_type(),
            pb::AccessTechnologyType::Ieee8023
        );
        assert_eq!(b.handoff_indicator(), pb::HandoffIndicator::SameInterface);
        assert_eq!(b.mn_link_layer_id, "02:00:5e:10:00:01");
        assert_eq!(b.link_local_address, "fe80::1");
        assert_eq!(b.state(), pb::BindingState::Revoking);
        assert_eq!(
            b.registered_at,
            Some(prost_types::Timestamp {
                seconds: 1_700_000_000,
                nanos: 250_000_000
            })
        );
        assert_eq!(b.last_handover_interruption_ms, Some(12));
        assert_eq!(b.handover_count, 2);
        assert_eq!(b.revision, 42);
        assert_eq!(b.last_sequence_number, Some(7));
        assert_eq!(
            b.last_pbu_timestamp,
            Some(prost_types::Timestamp {
                seconds: 1_700_000_100,
                nanos: 500_000_000
            })
        );
        assert_eq!(
            (b.lifetime_granted_seconds, b.lifetime_remaining_seconds),
            (3600, 3599)
        );
    }

    #[test]
    fn a_rejection_names_its_status() {
        let r = rejection(&Rejection {
            mn_id: "mn1@example.org".into(),
            mag: "2001:db8::30".parse().unwrap(),
            mag_name: None,
            status: PbaStatus::MagNotAuthorizedForProxyReg,
            count: 2,
        });
        assert_eq!(r.status, 154);
        assert_eq!(r.status_name, "MAG_NOT_AUTHORIZED_FOR_PROXY_REG");
        assert!(
            r.detail
                .contains("proxy-CoA 2001:db8::30 is not an authorized MAG")
        );
        assert_eq!(r.count, 2);
        assert_eq!(status_name(PbaStatus::from(200)), "unknown");
    }
}
