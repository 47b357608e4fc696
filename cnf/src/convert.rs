//! Conversions between the gRPC messages of `pmip.v1` and the protocol's types, shared by the
//! daemons and `pmipctl`. Text in (surrounding blanks ignored), typed values out; every failure
//! names the field, and a server answers it as INVALID_ARGUMENT "field: reason".

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::Ipv6Net;
use pmip::config::MobileNodeProfile;
use pmip::types::{LinkLayerAddress, Nai};
use proto::v1;

/// A field that did not parse: `field` is its path in the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct FieldError {
    pub field: String,
    pub reason: String,
}

impl From<FieldError> for tonic::Status {
    fn from(e: FieldError) -> Self {
        tonic::Status::invalid_argument(e.to_string())
    }
}

fn err(field: impl Into<String>, reason: impl Into<String>) -> FieldError {
    FieldError {
        field: field.into(),
        reason: reason.into(),
    }
}

/// An IPv6 address in any text form the standard library reads.
pub fn ipv6(field: &str, s: &str) -> Result<Ipv6Addr, FieldError> {
    s.trim()
        .parse()
        .map_err(|_| err(field, format!("{s:?} is not an IPv6 address")))
}

/// An IPv4 address in dotted-quad text.
pub fn ipv4(field: &str, s: &str) -> Result<Ipv4Addr, FieldError> {
    s.trim()
        .parse()
        .map_err(|_| err(field, format!("{s:?} is not an IPv4 address")))
}

/// A proxy-CoA: a global unicast IPv6 address (the source of a MAG's PBUs).
pub fn proxy_coa(field: &str, s: &str) -> Result<Ipv6Addr, FieldError> {
    let a = ipv6(field, s)?;
    if !pmip::config::is_global_unicast(&a) {
        return Err(err(
            field,
            format!("{a} cannot be a proxy-CoA (unspecified, loopback, multicast or link-local)"),
        ));
    }
    Ok(a)
}

/// An IPv6 prefix ("2001:db8::/64").
pub fn prefix(field: &str, s: &str) -> Result<Ipv6Net, FieldError> {
    s.trim()
        .parse()
        .map_err(|_| err(field, format!("{s} is not an IPv6 prefix")))
}

/// A Mobile Node Identifier (RFC 4283 NAI).
pub fn nai(field: &str, s: &str) -> Result<Nai, FieldError> {
    Nai::new(s).map_err(|e| err(field, e.to_string()))
}

pub fn link_layer(field: &str, s: &str) -> Result<LinkLayerAddress, FieldError> {
    s.trim()
        .parse()
        .map_err(|e: pmip::types::BadLinkLayerAddress| err(field, e.to_string()))
}

/// A profile from its message, checked like a configuration file's.
pub fn profile_from_proto(p: &v1::MobileNodeProfile) -> Result<MobileNodeProfile, FieldError> {
    let mut lls = Vec::with_capacity(p.link_layer_addresses.len());
    for (i, l) in p.link_layer_addresses.iter().enumerate() {
        lls.push(link_layer(&format!("link_layer_addresses[{i}]"), l)?);
    }
    let mut out = match (&p.mn_id_from_link_layer, lls.as_slice()) {
        (Some(realm), [ll]) if p.mn_id.is_empty() => {
            MobileNodeProfile::from_link_layer(*ll, realm).map_err(|e| err(&e.field, e.reason))?
        }
        _ => {
            let mut out = MobileNodeProfile::new(nai("mn_id", &p.mn_id)?);
            out.mn_id_from_link_layer = p.mn_id_from_link_layer.clone();
            out
        }
    };
    out.link_layer_addresses = lls;
    for (i, h) in p.home_network_prefixes.iter().enumerate() {
        out.home_network_prefixes
            .push(prefix(&format!("home_network_prefixes[{i}]"), h)?);
    }
    for (i, m) in p.allowed_mags.iter().enumerate() {
        out.allowed_mags
            .push(ipv6(&format!("allowed_mags[{i}]"), m)?);
    }
    // 0 (UNSPECIFIED, Reserved in RFC 5213 §8.5) means "not given", like an unset field.
    out.access_technology_type = p
        .access_technology_type
        .filter(|v| *v != 0)
        .map(|v| {
            u8::try_from(v).map_err(|_| {
                err(
                    "access_technology_type",
                    format!("{v} is not a value from 0 to 255"),
                )
            })
        })
        .transpose()?;
    out.local_routing = p.local_routing;
    out.proxy_registration_enabled = p.proxy_registration_enabled.unwrap_or(true);
    out.ipv6 = p.ipv6.unwrap_or(true);
    out.ipv4 = p.ipv4.unwrap_or(false);
    out.ipv4_home_address = match p.ipv4_home_address.trim() {
        "" => None,
        s => Some(ipv4("ipv4_home_address", s)?),
    };
    out.validate("profile")
        .map_err(|e| err(e.field.trim_start_matches("profile."), e.reason))?;
    Ok(out)
}

/// The message of a profile.
pub fn profile_to_proto(p: &MobileNodeProfile) -> v1::MobileNodeProfile {
    v1::MobileNodeProfile {
        mn_id: p.mn_id.to_string(),
        link_layer_addresses: p
            .link_layer_addresses
            .iter()
            .map(|l| l.to_string())
            .collect(),
        home_network_prefixes: p
            .home_network_prefixes
            .iter()
            .map(|h| h.to_string())
            .collect(),
        allowed_mags: p.allowed_mags.iter().map(|m| m.to_string()).collect(),
        access_technology_type: p.access_technology_type.map(i32::from),
        local_routing: p.local_routing,
        // Unset means enabled, the default.
        proxy_registration_enabled: (!p.proxy_registration_enabled).then_some(false),
        // Unset means the defaults: IPv6 on, IPv4 off.
        ipv6: (!p.ipv6).then_some(false),
        ipv4: p.ipv4.then_some(true),
        ipv4_home_address: p
            .ipv4_home_address
            .map(|a| a.to_string())
            .unwrap_or_default(),
        mn_id_from_link_layer: p.mn_id_from_link_layer.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 13 item 8: an MN-ID derived from the link-layer address over the Policy API.
    #[test]
    fn a_profile_may_derive_its_mn_id_from_the_link_layer_address() {
        let m = v1::MobileNodeProfile {
            link_layer_addresses: vec!["02:00:00:10:00:01".into()],
            mn_id_from_link_layer: Some("lab.example".into()),
            ..Default::default()
        };
        let p = profile_from_proto(&m).unwrap();
        assert_eq!(p.mn_id.as_str(), "02-00-00-10-00-01@lab.example");
        let back = profile_to_proto(&p);
        assert_eq!(back.mn_id, "02-00-00-10-00-01@lab.example");
        assert_eq!(profile_from_proto(&back).unwrap(), p);
        for (bad, field) in [
            (
                v1::MobileNodeProfile {
                    mn_id_from_link_layer: Some("lab example".into()),
                    ..m.clone()
                },
                "mn_id_from_link_layer",
            ),
            (
                v1::MobileNodeProfile {
                    link_layer_addresses: Vec::new(),
                    ..m.clone()
                },
                "mn_id",
            ),
            (
                v1::MobileNodeProfile {
                    mn_id: "mn1@lab.example".into(),
                    ..m.clone()
                },
                "mn_id",
            ),
        ] {
            let e = profile_from_proto(&bad).unwrap_err().to_string();
            assert!(e.starts_with(field), "{field}: {e}");
        }
    }

    #[test]
    fn profile_round_trip_and_field_errors() {
        let m = v1::MobileNodeProfile {
            mn_id: "mn1@example.org".into(),
            link_layer_addresses: vec!["02:00:00:00:00:01".into()],
            home_network_prefixes: vec!["2001:db8:100:1::/64".into()],
            allowed_mags: vec!["2001:db8::10".into()],
            access_technology_type: Some(4),
            local_routing: Some(true),
            proxy_registration_enabled: Some(false),
            ipv6: None,
            ipv4: None,
            ipv4_home_address: String::new(),
            mn_id_from_link_layer: None,
        };
        let p = profile_from_proto(&m).unwrap();
        assert_eq!(profile_to_proto(&p), m);
        assert!(p.ipv6 && !p.ipv4, "the defaults: IPv6 only");
        // An IPv4-only node with a pinned IPv4 home address (RFC 5844 §3.2.2).
        let v4 = v1::MobileNodeProfile {
            home_network_prefixes: Vec::new(),
            ipv6: Some(false),
            ipv4: Some(true),
            ipv4_home_address: "192.0.2.10".into(),
            ..m.clone()
        };
        let p4 = profile_from_proto(&v4).unwrap();
        assert!(!p4.ipv6 && p4.ipv4);
        assert_eq!(p4.ipv4_home_address, Some(Ipv4Addr::new(192, 0, 2, 10)));
        assert_eq!(profile_to_proto(&p4), v4);
        let e = profile_from_proto(&v1::MobileNodeProfile {
            ipv4_home_address: "192.0.2".into(),
            ..v4.clone()
        })
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "ipv4_home_address: \"192.0.2\" is not an IPv4 address"
        );
        // Both families off; a pinned IPv4 home address without IPv4.
        let e = profile_from_proto(&v1::MobileNodeProfile {
            ipv4: None,
            ..v4.clone()
        })
        .unwrap_err();
        assert_eq!(e.field, "ipv6");
        let e = profile_from_proto(&v1::MobileNodeProfile {
            ipv6: None,
            ipv4: None,
            ..v4
        })
        .unwrap_err();
        assert_eq!(e.field, "ipv4_home_address");
        let mut bad = m.clone();
        bad.home_network_prefixes.push("2001:db8::/129".into());
        let e = profile_from_proto(&bad).unwrap_err();
        assert_eq!(e.field, "home_network_prefixes[1]");
        let mut bad = m;
        bad.link_layer_addresses = vec!["02:00".into(), "zz".into()];
        assert_eq!(
            profile_from_proto(&bad).unwrap_err().field,
            "link_layer_addresses[1]"
        );
    }
}
