//! Reading a daemon's configuration file: YAML through serde-saphyr, then the schema's own
//! validation. Any error names the field and the reason; the daemon exits with code 2.

use std::path::Path;

use serde::de::DeserializeOwned;

/// The exit code of a daemon that was given a bad configuration.
pub const EXIT_BAD_CONFIG: i32 = 2;

/// Why a configuration file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigLoadError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
    #[error("{path}: {source}")]
    Invalid {
        path: String,
        source: pmip::config::ConfigError,
    },
}

/// Reads and parses `path`; `validate` runs after any command-line overrides were applied by
/// `adjust`.
pub fn load<T: DeserializeOwned>(
    path: &Path,
    adjust: impl FnOnce(&mut T),
    validate: impl FnOnce(&T) -> Result<(), pmip::config::ConfigError>,
) -> Result<T, ConfigLoadError> {
    let p = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ConfigLoadError::Read {
        path: p.clone(),
        source,
    })?;
    let mut cfg: T = serde_saphyr::from_str(&text).map_err(|e| ConfigLoadError::Parse {
        path: p.clone(),
        // The YAML parser names the line, not the field: a bad link-layer address (in a
        // tagged section or a list) gets its field path in front.
        message: match bad_link_layer_field(&text) {
            Some(field) => format!("{field}: {e}"),
            None => e.to_string(),
        },
    })?;
    adjust(&mut cfg);
    validate(&cfg).map_err(|source| ConfigLoadError::Invalid { path: p, source })?;
    Ok(cfg)
}

/// The field path of the first link-layer address in `text` that does not parse
/// (`mobile_nodes[1].link_layer_addresses[0]`, `domain.link_local.link_layer_address`).
pub fn bad_link_layer_field(text: &str) -> Option<String> {
    let v: serde_json::Value = serde_saphyr::from_str(text).ok()?;
    bad_link_layer_path(&v, "")
}

/// [`bad_link_layer_field`] of a parsed document, below `at`.
pub fn bad_link_layer_path(v: &serde_json::Value, at: &str) -> Option<String> {
    fn bad(v: &serde_json::Value) -> bool {
        v.as_str()
            .is_none_or(|s| s.parse::<pmip::types::LinkLayerAddress>().is_err())
    }
    fn walk(v: &serde_json::Value, at: &str) -> Option<String> {
        match v {
            serde_json::Value::Object(m) => m.iter().find_map(|(k, v)| {
                let here = if at.is_empty() {
                    k.clone()
                } else {
                    format!("{at}.{k}")
                };
                match (k.as_str(), v) {
                    ("link_layer_address", v) if bad(v) => Some(here),
                    ("link_layer_addresses", serde_json::Value::Array(items)) => {
                        items.iter().position(bad).map(|i| format!("{here}[{i}]"))
                    }
                    _ => walk(v, &here),
                }
            }),
            serde_json::Value::Array(items) => {
                (items.iter().enumerate()).find_map(|(i, v)| walk(v, &format!("{at}[{i}]")))
            }
            _ => None,
        }
    }
    walk(v, at)
}

/// The first global IPv6 address of a comma-separated list (how the downward API hands a pod
/// its host's addresses).
pub fn first_global_ipv6(list: &str) -> Option<std::net::Ipv6Addr> {
    list.split(',')
        .filter_map(|a| a.trim().parse::<std::net::Ipv6Addr>().ok())
        .find(|a| {
            !(a.is_loopback() || a.is_unspecified() || a.is_multicast())
                && a.segments()[0] & 0xffc0 != 0xfe80
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use pmip::config::LmaConfig;

    #[test]
    fn errors_name_the_file_and_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("lma.yaml");
        std::fs::write(&f, "address: 2001:db8::1\nprefix_pools: []\n").unwrap();
        let e = load::<LmaConfig>(&f, |_| {}, LmaConfig::validate).unwrap_err();
        assert!(
            e.to_string().ends_with(
                "prefix_pools: at least one pool is needed to allocate home network prefixes"
            ),
            "{e}"
        );
        std::fs::write(&f, "address: 2001:db8::1\nprefix_pools: [{prefix: nope}]\n").unwrap();
        let e = load::<LmaConfig>(&f, |_| {}, LmaConfig::validate).unwrap_err();
        assert!(matches!(e, ConfigLoadError::Parse { .. }), "{e}");
        let e = load::<LmaConfig>(
            &dir.path().join("missing.yaml"),
            |_| {},
            LmaConfig::validate,
        )
        .unwrap_err();
        assert!(matches!(e, ConfigLoadError::Read { .. }), "{e}");
    }

    #[test]
    fn a_bad_link_layer_address_is_found_by_its_field_path() {
        let f = |t: &str| bad_link_layer_field(t);
        assert_eq!(
            f("mobile_nodes:\n  - mn_id: a@x\n    link_layer_addresses: [02:00:00:00:00:01]\n  - mn_id: b@x\n    link_layer_addresses: [\"02:00:00:00:00:01\", \"zz\"]\n")
                .as_deref(),
            Some("mobile_nodes[1].link_layer_addresses[1]")
        );
        assert_eq!(
            f("domain:\n  link_local: {mode: lma-generated, link_layer_address: nope}\n")
                .as_deref(),
            Some("domain.link_local.link_layer_address")
        );
        assert_eq!(
            f("mobile_nodes: [{mn_id: a@x, link_layer_addresses: [\"02:00:5e:00:00:01\"]}]\n"),
            None
        );
        assert_eq!(f("not: [valid"), None);
    }

    #[test]
    fn picks_the_first_global_ipv6_address() {
        assert_eq!(
            first_global_ipv6("10.0.0.1, fe80::1,2001:db8::5,2001:db8::6"),
            Some("2001:db8::5".parse().unwrap())
        );
        assert_eq!(first_global_ipv6("10.0.0.1"), None);
    }
}
