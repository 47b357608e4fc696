//! Keeps `the README's configuration reference` true to the configuration schema of `pmip::config`.
//!
//! - every field of a fully populated `LmaConfig` / `MagConfig` has a row in the reference, and
//!   every row (and every dotted field path written in a table) names a field that exists;
//! - the minimal examples parse, validate and fit together;
//! - the defaults written in the tables are the code's, and the ranges written as `a..=b` are
//!   the ones `validate()` (or the field's type) enforces;
//! - the error messages and YAML notes the reference shows are what the code does.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv6Addr, SocketAddr};

use pmip::config::*;
use pmip::types::{LinkLayerAddress, Nai};
use serde::de::DeserializeOwned;
use serde_json::Value;

const README: &str = include_str!("../../README.md");

/// The README's configuration reference: from its `## Configuration` heading to the end.
static DOC: std::sync::LazyLock<&'static str> = std::sync::LazyLock::new(|| {
    let start = README
        .find("\n## Configuration\n")
        .expect("a `## Configuration` section in the README");
    &README[start..]
});

const LMA_PART: &str = "### LMA configuration file";
const MAG_PART: &str = "### MAG configuration file";
const DOMAIN_PART: &str = "### The shared `domain` section";

/// Fields whose value is a map keyed by names the user chooses: one row documents the map.
const MAP_FIELDS: &[&str] = &["domain.fast_handover.access_points"];

// ------------------------------------------------------------------ the schema's field paths

fn addr(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

fn full_profile() -> MobileNodeProfile {
    MobileNodeProfile {
        mn_id: Nai::new("02-00-00-00-01-01@example.org").unwrap(),
        mn_id_from_link_layer: Some("example.org".into()),
        link_layer_addresses: vec![LinkLayerAddress::mac([2, 0, 0, 0, 1, 1])],
        home_network_prefixes: vec!["2001:db8:100:1::/64".parse().unwrap()],
        allowed_mags: vec![addr("2001:db8:1::10")],
        access_technology_type: Some(4),
        local_routing: Some(true),
        ipv6: true,
        ipv4: true,
        ipv4_home_address: Some("192.0.2.77".parse().unwrap()),
        proxy_registration_enabled: false,
    }
}

fn full_domain(link_local: LinkLocalMode) -> DomainConfig {
    DomainConfig {
        replay_protection: ReplayProtection::SequenceNumber,
        mobile_node_generated_timestamp: false,
        link_local,
        enable_mag_local_routing: true,
        heartbeat: HeartbeatConfig {
            interval_s: 30,
            missing_allowed: 2,
        },
        fast_handover: FastHandoverConfig {
            mode: FastHandoverMode::Predictive,
            access_points: BTreeMap::from([("ap1".to_owned(), addr("2001:db8:1::10"))]),
            buffer_packets: 100,
            buffer_bytes: 1 << 20,
            handover_timeout_ms: 2000,
            end_marker_wait_ms: 50,
        },
    }
}

fn link_local_modes() -> [LinkLocalMode; 2] {
    [
        LinkLocalMode::Fixed {
            address: addr("fe80::2"),
            link_layer_address: LinkLayerAddress::mac([2, 0, 0x5e, 0, 0x53, 2]),
        },
        LinkLocalMode::LmaGenerated {
            link_layer_address: LinkLayerAddress::mac([2, 0, 0x5e, 0, 0x53, 3]),
        },
    ]
}

fn full_datapath() -> DatapathConfig {
    DatapathConfig {
        mode: DatapathMode::Seg6,
        transport_interface: Some("eth0".into()),
        link_mtu: Some(9000),
        route_protocol: 136,
        table_base: 14000,
        tun_linger_s: 120,
    }
}

fn full_api() -> ApiConfig {
    ApiConfig {
        listen: SocketAddr::from((Ipv6Addr::LOCALHOST, 50052)),
        tls: Some(TlsConfig {
            cert: "tls/server.pem".into(),
            key: "tls/server.key".into(),
            client_ca: Some("tls/ca.pem".into()),
        }),
        health_listen: Some(SocketAddr::from((Ipv6Addr::LOCALHOST, 50053))),
    }
}

fn full_metrics() -> MetricsConfig {
    MetricsConfig {
        listen: Some(SocketAddr::from((Ipv6Addr::LOCALHOST, 9465))),
    }
}

fn full_tracing() -> TracingConfig {
    TracingConfig {
        level: "debug".into(),
        format: LogFormat::Json,
        otlp_endpoint: Some("http://otel-collector:4317".into()),
    }
}

/// Two entries: keys inline in one, in files in the other, so that every field is walked.
fn full_ipsec(peer: &str) -> IpsecConfig {
    IpsecConfig {
        mode: IpsecMode::Off,
        security_associations: vec![
            SecurityAssociationConfig {
                local: Some("2001:db8:5a::1".parse().unwrap()),
                peer: addr(peer),
                algorithm: EspAlgorithm::Aes128Gcm,
                spi_in: 0x1000,
                spi_out: 0x1001,
                key_in: Some(KeyMaterial::new(vec![1; 20])),
                key_in_file: None,
                key_out: Some(KeyMaterial::new(vec![2; 20])),
                key_out_file: None,
                esn: true,
            },
            SecurityAssociationConfig {
                local: Some("2001:db8:5a::1".parse().unwrap()),
                peer: addr(peer),
                algorithm: EspAlgorithm::Aes256CbcHmacSha256,
                spi_in: 0x2000,
                spi_out: 0x2001,
                key_in: None,
                key_in_file: Some("/etc/pmip/ipsec/in.key".into()),
                key_out: None,
                key_out_file: Some("/etc/pmip/ipsec/out.key".into()),
                esn: false,
            },
        ],
        security_associations_file: Some("/etc/pmip/ipsec/sas.yaml".into()),
        replay_window: 128,
        reload_interval_s: 5,
    }
}

fn full_lma(link_local: LinkLocalMode) -> LmaConfig {
    LmaConfig {
        name: "lma1".into(),
        address: addr("2001:db8:ffff::1"),
        domain: full_domain(link_local),
        prefix_pools: vec![PrefixPool {
            prefix: "2001:db8:100::/48".parse().unwrap(),
            prefix_length: 64,
        }],
        ipv4_pools: vec![Ipv4Pool {
            prefix: "192.0.2.0/24".parse().unwrap(),
            default_router: Some("192.0.2.1".parse().unwrap()),
        }],
        timers: LmaTimers::default(),
        revocation: RevocationConfig::default(),
        authorized_mags: vec![ConfiguredMag::named(addr("2001:db8:1::10"), "mag1")],
        mobile_nodes: vec![full_profile()],
        datapath: full_datapath(),
        state_dir: "/var/lib/pmip-lma".into(),
        api: full_api(),
        metrics: full_metrics(),
        tracing: full_tracing(),
        ipsec: full_ipsec("2001:db8:1::10"),
        refused_nodes_kept: 5000,
    }
}

fn full_mag(link_local: LinkLocalMode) -> MagConfig {
    MagConfig {
        name: "mag1".into(),
        proxy_coa: addr("2001:db8:1::10"),
        lma_address: addr("2001:db8:ffff::1"),
        domain: full_domain(link_local),
        access_interfaces: vec!["acc*".into()],
        timers: MagTimers::default(),
        router_advertisement: RouterAdvertisementConfig {
            interval_s: 10,
            router_lifetime_s: 600,
            mtu: Some(1400),
            prefix_lifetime_s: Some(600),
        },
        neighbor_unreachability: NeighborUnreachabilityConfig {
            idle_s: 10,
            probes: 2,
            probe_interval_ms: 500,
        },
        mobile_nodes: vec![full_profile()],
        policy_server: Some("https://[2001:db8:ffff::1]:50051".into()),
        policy_server_tls: Some(ClientTlsConfig {
            ca: "tls/ca.pem".into(),
            cert: Some("tls/client.pem".into()),
            key: Some("tls/client.key".into()),
            server_name: Some("lma.example".into()),
        }),
        datapath: full_datapath(),
        state_dir: "/var/lib/pmip-mag".into(),
        api: full_api(),
        metrics: full_metrics(),
        tracing: full_tracing(),
        ipsec: full_ipsec("2001:db8:ffff::1"),
    }
}

/// Every key of `v` as a dotted path: objects inside lists as `list[].key`, the maps of
/// [`MAP_FIELDS`] as one leaf. Panics on a null or an empty list or map: the configuration
/// would not be fully populated and a field could hide.
fn walk(prefix: &str, v: &Value, out: &mut BTreeSet<String>) {
    let Value::Object(m) = v else {
        panic!("{prefix} is not an object");
    };
    for (k, x) in m {
        let p = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        out.insert(p.clone());
        match x {
            Value::Null => panic!("{p} is null: set it so its fields are walked"),
            Value::Object(o) if MAP_FIELDS.contains(&p.as_str()) => {
                assert!(!o.is_empty(), "{p} is empty");
            }
            Value::Object(_) => walk(&p, x, out),
            Value::Array(a) => {
                assert!(!a.is_empty(), "{p} is empty: give it an element");
                for el in a.iter().filter(|e| e.is_object()) {
                    walk(&format!("{p}[]"), el, out);
                }
            }
            _ => {}
        }
    }
}

fn paths_of<T: serde::Serialize>(configs: &[T]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for c in configs {
        walk("", &serde_json::to_value(c).unwrap(), &mut out);
    }
    out
}

fn lma_paths() -> BTreeSet<String> {
    paths_of(&link_local_modes().map(full_lma))
}

fn mag_paths() -> BTreeSet<String> {
    paths_of(&link_local_modes().map(full_mag))
}

// ------------------------------------------------------------------ the reference's tables

/// The text of the `### ` section whose heading starts with `heading`, up to the next one.
fn part(heading: &str) -> &'static str {
    let doc: &'static str = &DOC;
    let start = doc
        .match_indices("\n### ")
        .map(|(i, _)| i + 1)
        .find(|&i| doc[i..].starts_with(heading))
        .unwrap_or_else(|| panic!("no section {heading:?} in the reference"));
    let end = doc[start + 4..]
        .find("\n### ")
        .map_or(doc.len(), |i| start + 4 + i);
    &doc[start..end]
}

#[derive(Debug)]
struct Row {
    path: String,
    /// Field, Type, Default, Valid values, Meaning.
    cells: Vec<String>,
}

impl Row {
    fn default_cell(&self) -> &str {
        &self.cells[2]
    }
    fn valid_cell(&self) -> &str {
        &self.cells[3]
    }
}

fn cells(line: &str) -> Vec<String> {
    line.trim()
        .trim_matches('|')
        .split('|')
        .map(|c| c.trim().to_owned())
        .collect()
}

/// The field rows of the tables in `text`: a first cell that is one backticked field path.
fn rows(text: &str) -> Vec<Row> {
    text.lines()
        .filter(|l| l.starts_with("| `"))
        .map(cells)
        .filter_map(|c| {
            let path = c[0].strip_prefix('`')?.strip_suffix('`')?.to_owned();
            (is_path_shaped(&path) && !path.contains('`')).then_some(Row { path, cells: c })
        })
        .inspect(|r| assert_eq!(r.cells.len(), 5, "row {} has not 5 cells", r.path))
        .collect()
}

fn is_path_shaped(s: &str) -> bool {
    !s.is_empty()
        && s.split('.').all(|seg| {
            let name = seg.strip_suffix("[]").unwrap_or(seg);
            // Digits too, not first: `ipv4_pools`, `mobile_nodes[].ipv6`.
            name.starts_with(|c: char| c.is_ascii_lowercase())
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        })
}

/// The first backticked token of a cell.
fn first_code(cell: &str) -> Option<&str> {
    let rest = cell.strip_prefix('`')?;
    Some(&rest[..rest.find('`')?])
}

fn row_paths(text: &str) -> BTreeSet<String> {
    rows(text).into_iter().map(|r| r.path).collect()
}

// ------------------------------------------------------------------ field coverage

#[test]
fn every_field_of_the_schema_has_a_row() {
    let domain = row_paths(part(DOMAIN_PART));
    for (what, paths, own) in [
        ("LMA", lma_paths(), row_paths(part(LMA_PART))),
        ("MAG", mag_paths(), row_paths(part(MAG_PART))),
    ] {
        let documented: BTreeSet<String> = own.union(&domain).cloned().collect();
        let missing: Vec<&String> = paths.difference(&documented).collect();
        assert!(
            missing.is_empty(),
            "{what} fields without a row in the README's configuration reference: {missing:?}"
        );
    }
}

#[test]
fn every_row_names_a_field_of_the_schema() {
    let (lma, mag) = (lma_paths(), mag_paths());
    let both: BTreeSet<String> = lma.intersection(&mag).cloned().collect();
    for (heading, known, at_least) in [
        (LMA_PART, &lma, 40),
        (MAG_PART, &mag, 40),
        (DOMAIN_PART, &both, 15),
    ] {
        let rows = rows(part(heading));
        assert!(
            rows.len() >= at_least,
            "{heading}: only {} field rows",
            rows.len()
        );
        let mut seen = BTreeSet::new();
        for r in &rows {
            assert!(
                known.contains(&r.path),
                "{heading}: `{}` is not a field",
                r.path
            );
            assert!(seen.insert(&r.path), "{heading}: `{}` twice", r.path);
            if heading == DOMAIN_PART {
                assert!(r.path.starts_with("domain."), "{}", r.path);
            } else {
                assert!(!r.path.starts_with("domain."), "{}: {}", heading, r.path);
            }
        }
    }
}

#[test]
fn every_field_path_written_in_a_table_exists() {
    let all: BTreeSet<String> = lma_paths().union(&mag_paths()).cloned().collect();
    let top: BTreeSet<&str> = all
        .iter()
        .filter(|p| !p.contains(['.', '[']))
        .map(String::as_str)
        .collect();
    let mut checked = 0;
    for line in DOC.lines().filter(|l| l.starts_with('|')) {
        for (i, token) in line.split('`').enumerate() {
            let first = token.split(['.', '[']).next().unwrap_or("");
            if i % 2 == 0 || !token.contains('.') || !top.contains(first) {
                continue;
            }
            // `domain.fast_handover.access_points.NAME`: an entry of a documented map.
            if MAP_FIELDS
                .iter()
                .any(|m| token.starts_with(&format!("{m}.")))
            {
                continue;
            }
            assert!(
                is_path_shaped(token) && all.contains(token),
                "`{token}` in a table is not a field: {line}"
            );
            checked += 1;
        }
    }
    assert!(
        checked >= 90,
        "only {checked} field paths found in the tables"
    );
}

#[test]
fn the_fully_populated_configs_are_valid_and_round_trip_through_yaml() {
    for ll in link_local_modes() {
        let lma = full_lma(ll.clone());
        lma.validate().unwrap();
        let back: LmaConfig =
            serde_saphyr::from_str(&serde_saphyr::to_string(&lma).unwrap()).unwrap();
        assert_eq!(back, lma);
        let mag = full_mag(ll);
        mag.validate().unwrap();
        let back: MagConfig =
            serde_saphyr::from_str(&serde_saphyr::to_string(&mag).unwrap()).unwrap();
        assert_eq!(back, mag);
    }
}

// ------------------------------------------------------------------ the minimal examples

/// The first ```yaml block of the section whose heading starts with `heading`.
fn yaml_example(heading: &str) -> &'static str {
    let text = part(heading);
    let start = text
        .find("```yaml\n")
        .unwrap_or_else(|| panic!("{heading}: no ```yaml block"))
        + "```yaml\n".len();
    let len = text[start..].find("```").expect("unterminated block");
    &text[start..start + len]
}

fn minimal_lma() -> LmaConfig {
    serde_saphyr::from_str(yaml_example("### Minimal LMA configuration")).unwrap()
}

fn minimal_mag() -> MagConfig {
    serde_saphyr::from_str(yaml_example("### Minimal MAG configuration")).unwrap()
}

#[test]
fn minimal_examples_parse_validate_and_fit_together() {
    let lma = minimal_lma();
    lma.validate().unwrap();
    let mag = minimal_mag();
    mag.validate().unwrap();
    // The MAG registers with this LMA, which authorizes it and knows its nodes.
    assert_eq!(mag.lma_address, lma.address);
    assert!(
        lma.authorized_mags
            .iter()
            .any(|m| m.proxy_coa == mag.proxy_coa)
    );
    assert!(!mag.mobile_nodes.is_empty());
    for m in &mag.mobile_nodes {
        assert!(
            !m.link_layer_addresses.is_empty(),
            "the MAG recognises {} by link-layer address",
            m.mn_id
        );
        assert!(lma.mobile_nodes.iter().any(|l| l.mn_id == m.mn_id));
    }
    // Minimal: the defaults that the examples do not restate.
    assert_eq!(lma.timers, LmaTimers::default());
    assert_eq!(mag.timers, MagTimers::default());
    assert_eq!(lma.domain, DomainConfig::default());
    assert_eq!(mag.domain, lma.domain);
}

#[test]
fn error_messages_in_the_reference_are_the_real_ones() {
    let intro = part("### How a bad file is reported");

    let mut lma = minimal_lma();
    lma.prefix_pools.push(PrefixPool {
        prefix: "2001:db8:100:8000::/49".parse().unwrap(),
        prefix_length: 64,
    });
    let e = lma.validate().unwrap_err();
    assert_eq!(e.field, "prefix_pools[1].prefix");
    let line = format!("pmip-lma: lma.yaml: {e}\n");
    assert!(intro.contains(&line), "{line}");

    let yaml: String = yaml_example("### Minimal MAG configuration")
        .lines()
        .filter(|l| !l.starts_with("proxy_coa:"))
        .map(|l| format!("{l}\n"))
        .collect();
    let mag: MagConfig = serde_saphyr::from_str(&yaml).unwrap();
    let e = mag.validate().unwrap_err();
    let line = format!("pmip-mag: mag.yaml: {e}\n");
    assert!(intro.contains(&line), "{line}");

    let yaml = format!(
        "{}timers:\n  min_delay_before_bce_delete: 3\n",
        yaml_example("### Minimal LMA configuration")
    );
    let e = serde_saphyr::from_str::<LmaConfig>(&yaml)
        .unwrap_err()
        .to_string();
    let first = e.lines().next().unwrap();
    // The minimal example plus a `timers` section: the misspelt key is on line 9.
    let shown = "error: line 9 column 3: unknown field `min_delay_before_bce_delete`, expected one of min_delay_before_bce_delete_ms, ";
    assert!(first.starts_with(shown), "{first}");
    let shown_line = format!("pmip-lma: lma.yaml: {shown}...\n");
    assert!(intro.contains(&shown_line), "{shown_line}");
}

// ------------------------------------------------------------------ defaults

fn parse<T: DeserializeOwned>(yaml: &str) -> Result<T, String> {
    serde_saphyr::from_str(yaml).map_err(|e| e.to_string())
}

/// A configuration with only its required fields, as JSON, and one element of each list of
/// objects (and the optional `api.tls` section) with only its required fields.
struct Bare {
    config: Value,
    elements: BTreeMap<&'static str, Value>,
}

impl Bare {
    fn lma() -> Self {
        let c: LmaConfig =
            parse("address: 2001:db8:ffff::1\nprefix_pools:\n  - prefix: 2001:db8:100::/48\n")
                .unwrap();
        Self::with(serde_json::to_value(c).unwrap())
    }

    fn mag() -> Self {
        let c: MagConfig = parse(
            "proxy_coa: 2001:db8:1::10\nlma_address: 2001:db8:ffff::1\naccess_interfaces: [acc0]\n",
        )
        .unwrap();
        Self::with(serde_json::to_value(c).unwrap())
    }

    fn with(config: Value) -> Self {
        let profile: MobileNodeProfile = parse("mn_id: mn1@example.org\n").unwrap();
        let pool: PrefixPool = parse("prefix: 2001:db8:100::/48\n").unwrap();
        let tls: TlsConfig = parse("cert: server.pem\nkey: server.key\n").unwrap();
        let sa: SecurityAssociationConfig =
            parse("peer: 2001:db8::2\nalgorithm: aes-128-gcm\nspi_in: 256\nspi_out: 257\n")
                .unwrap();
        // The mapping form with only its required field, field by field (an unnamed MAG is
        // written back as its bare address).
        let mag: ConfiguredMag = parse("{proxy_coa: 2001:db8:1::10}").unwrap();
        let mag = serde_json::json!({"proxy_coa": mag.proxy_coa, "name": mag.name});
        let client_tls: ClientTlsConfig = parse("ca: ca.pem\n").unwrap();
        Bare {
            config,
            elements: BTreeMap::from([
                ("mobile_nodes", serde_json::to_value(profile).unwrap()),
                ("prefix_pools", serde_json::to_value(pool).unwrap()),
                ("authorized_mags", mag),
                ("api.tls", serde_json::to_value(tls).unwrap()),
                (
                    "ipsec.security_associations",
                    serde_json::to_value(sa).unwrap(),
                ),
                (
                    "policy_server_tls",
                    serde_json::to_value(client_tls).unwrap(),
                ),
            ]),
        }
    }

    fn get(&self, path: &str) -> Option<&Value> {
        let (root, rest) = match path.split_once("[].") {
            Some((list, rest)) => (self.elements.get(list)?, rest),
            // Optional sections are not set by default: their fields are compared with a
            // bare section's.
            None => match ["api.tls", "policy_server_tls"]
                .into_iter()
                .find_map(|sec| Some((sec, path.strip_prefix(sec)?.strip_prefix('.')?)))
            {
                Some((sec, rest)) => (self.elements.get(sec)?, rest),
                None => (&self.config, path),
            },
        };
        rest.split('.').try_fold(root, |v, k| v.get(k))
    }
}

/// The literal a default cell starts with, compared with the value's JSON form (strings
/// without quotes).
fn render(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Checks every row of `text` whose default is a literal or "not set"; returns how many.
fn check_defaults(text: &str, bare: &Bare) -> usize {
    let mut n = 0;
    for r in rows(text) {
        let cell = r.default_cell();
        let value = || {
            bare.get(&r.path)
                .unwrap_or_else(|| panic!("`{}` has no default value to compare", r.path))
        };
        if let Some(lit) = first_code(cell) {
            assert_eq!(lit, render(value()), "default of `{}`", r.path);
            n += 1;
        } else if cell.starts_with("not set") {
            let v = value();
            assert!(v.is_null(), "`{}` is documented as not set: {v}", r.path);
            n += 1;
        } else {
            assert!(
                cell.starts_with("required")
                    || cell.starts_with("all defaults")
                    || cell.starts_with("the "),
                "`{}`: default cell {cell:?} is neither a literal, \"not set\", \"required\" nor a section",
                r.path
            );
        }
    }
    n
}

#[test]
fn defaults_in_the_tables_are_the_code_defaults() {
    let (lma, mag) = (Bare::lma(), Bare::mag());
    let n = check_defaults(part(LMA_PART), &lma)
        + check_defaults(part(MAG_PART), &mag)
        + check_defaults(part(DOMAIN_PART), &lma)
        + check_defaults(part(DOMAIN_PART), &mag);
    assert!(n >= 80, "only {n} defaults compared");
}

/// The integer a row's default cell starts with.
fn documented_default(heading: &str, path: &str) -> u64 {
    let r = rows(part(heading))
        .into_iter()
        .find(|r| r.path == path)
        .unwrap_or_else(|| panic!("{heading}: no row `{path}`"));
    first_code(r.default_cell())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("`{path}`: default {:?} is not an integer", r.default_cell()))
}

#[test]
fn rfc_timer_and_heartbeat_defaults_match_the_default_impls() {
    let t = LmaTimers::default();
    let r = RevocationConfig::default();
    let m = MagTimers::default();
    let h = HeartbeatConfig::default();
    let f = FastHandoverConfig::default();
    let ra = RouterAdvertisementConfig::default();
    let d = DatapathConfig::default();
    let cases: &[(&str, &str, u64)] = &[
        (
            LMA_PART,
            "timers.min_delay_before_bce_delete_ms",
            t.min_delay_before_bce_delete_ms.into(),
        ),
        (
            LMA_PART,
            "timers.max_delay_before_new_bce_assign_ms",
            t.max_delay_before_new_bce_assign_ms.into(),
        ),
        (
            LMA_PART,
            "timers.timestamp_validity_window_ms",
            t.timestamp_validity_window_ms.into(),
        ),
        (
            LMA_PART,
            "timers.max_binding_lifetime_s",
            t.max_binding_lifetime_s.into(),
        ),
        (LMA_PART, "revocation.max_retries", r.max_retries.into()),
        (
            LMA_PART,
            "revocation.initial_delay_ms",
            r.initial_delay_ms.into(),
        ),
        (
            LMA_PART,
            "revocation.max_timeout_ms",
            r.max_timeout_ms.into(),
        ),
        (LMA_PART, "datapath.route_protocol", d.route_protocol.into()),
        (LMA_PART, "datapath.table_base", d.table_base.into()),
        (LMA_PART, "datapath.tun_linger_s", d.tun_linger_s.into()),
        (
            MAG_PART,
            "timers.initial_bindack_timeout_ms",
            m.initial_bindack_timeout_ms.into(),
        ),
        (
            MAG_PART,
            "timers.max_bindack_timeout_ms",
            m.max_bindack_timeout_ms.into(),
        ),
        (
            MAG_PART,
            "timers.max_pbu_transmissions",
            m.max_pbu_transmissions.into(),
        ),
        (
            MAG_PART,
            "timers.registration_retry_s",
            m.registration_retry_s.into(),
        ),
        (
            MAG_PART,
            "timers.requested_lifetime_s",
            m.requested_lifetime_s.into(),
        ),
        (
            MAG_PART,
            "timers.refresh_at_percent",
            m.refresh_at_percent.into(),
        ),
        (
            MAG_PART,
            "router_advertisement.interval_s",
            ra.interval_s.into(),
        ),
        (
            MAG_PART,
            "router_advertisement.router_lifetime_s",
            ra.router_lifetime_s.into(),
        ),
        (
            DOMAIN_PART,
            "domain.heartbeat.interval_s",
            h.interval_s.into(),
        ),
        (
            DOMAIN_PART,
            "domain.heartbeat.missing_allowed",
            h.missing_allowed.into(),
        ),
        (
            DOMAIN_PART,
            "domain.fast_handover.buffer_packets",
            f.buffer_packets.into(),
        ),
        (
            DOMAIN_PART,
            "domain.fast_handover.buffer_bytes",
            f.buffer_bytes.into(),
        ),
        (
            DOMAIN_PART,
            "domain.fast_handover.handover_timeout_ms",
            f.handover_timeout_ms.into(),
        ),
        (
            DOMAIN_PART,
            "domain.fast_handover.end_marker_wait_ms",
            f.end_marker_wait_ms.into(),
        ),
    ];
    for &(heading, path, code) in cases {
        assert_eq!(
            documented_default(heading, path),
            code,
            "default of `{path}`"
        );
    }
    // The RFC values themselves (RFC 5213 §9.1, RFC 6275 §12, RFC 5847 §5).
    assert_eq!(
        documented_default(LMA_PART, "timers.min_delay_before_bce_delete_ms"),
        10_000
    );
    assert_eq!(
        documented_default(LMA_PART, "timers.max_delay_before_new_bce_assign_ms"),
        1_500
    );
    assert_eq!(
        documented_default(LMA_PART, "timers.timestamp_validity_window_ms"),
        300
    );
    assert_eq!(
        documented_default(MAG_PART, "timers.initial_bindack_timeout_ms"),
        1_000
    );
    assert_eq!(
        documented_default(MAG_PART, "timers.max_bindack_timeout_ms"),
        32_000
    );
    assert_eq!(
        documented_default(DOMAIN_PART, "domain.heartbeat.interval_s"),
        60
    );
    assert_eq!(
        documented_default(DOMAIN_PART, "domain.heartbeat.missing_allowed"),
        3
    );
}

#[test]
fn rfc_variables_cite_their_rfc() {
    let cases = [
        (
            LMA_PART,
            "timers.min_delay_before_bce_delete_ms",
            "RFC 5213 §9.1",
        ),
        (
            LMA_PART,
            "timers.max_delay_before_new_bce_assign_ms",
            "RFC 5213 §9.1",
        ),
        (
            LMA_PART,
            "timers.timestamp_validity_window_ms",
            "RFC 5213 §9.1",
        ),
        (LMA_PART, "revocation.initial_delay_ms", "RFC 5846 §11"),
        (
            MAG_PART,
            "timers.initial_bindack_timeout_ms",
            "RFC 6275 §12",
        ),
        (MAG_PART, "timers.max_bindack_timeout_ms", "RFC 6275 §12"),
        (DOMAIN_PART, "domain.replay_protection", "RFC 5213 §9.3"),
        (
            DOMAIN_PART,
            "domain.mobile_node_generated_timestamp",
            "RFC 5213 §9.3",
        ),
        (
            DOMAIN_PART,
            "domain.enable_mag_local_routing",
            "RFC 5213 §9.2",
        ),
        (DOMAIN_PART, "domain.link_local", "RFC 5213 §6.8"),
        (DOMAIN_PART, "domain.heartbeat.interval_s", "RFC 5847 §5"),
        (
            DOMAIN_PART,
            "domain.heartbeat.missing_allowed",
            "RFC 5847 §5",
        ),
        (DOMAIN_PART, "domain.fast_handover.mode", "RFC 5949 §5.1"),
        (DOMAIN_PART, "domain.fast_handover.mode", "RFC 5949 §5.2"),
    ];
    for (heading, path, rfc) in cases {
        let r = rows(part(heading))
            .into_iter()
            .find(|r| r.path == path)
            .unwrap_or_else(|| panic!("no row `{path}`"));
        assert!(r.cells[4].contains(rfc), "`{path}` does not cite {rfc}");
    }
}

// ------------------------------------------------------------------ ranges

fn set(v: &mut Value, path: &str, x: i64) {
    let mut cur = v;
    let mut keys = path.split('.').peekable();
    while let Some(k) = keys.next() {
        let obj = cur.as_object_mut().unwrap();
        assert!(obj.contains_key(k), "no key {k} in {path}");
        let next = obj.get_mut(k).unwrap();
        if keys.peek().is_none() {
            *next = Value::from(x);
            return;
        }
        cur = next;
    }
}

/// `Ok(())` when the value is accepted; `Err(field)` with the field the parser or
/// `validate()` refused (the parser's refusals are attributed to `path`).
fn try_value<T, F>(base: &Value, path: &str, x: i64, validate: F) -> Result<(), String>
where
    T: DeserializeOwned,
    F: Fn(&T) -> Result<(), ConfigError>,
{
    let mut v = base.clone();
    set(&mut v, path, x);
    match serde_json::from_value::<T>(v) {
        Err(_) => Err(path.to_owned()),
        Ok(c) => validate(&c).map_err(|e| e.field),
    }
}

fn check_ranges<T, F>(text: &str, base: &Value, validate: F) -> usize
where
    T: DeserializeOwned,
    F: Fn(&T) -> Result<(), ConfigError> + Copy,
{
    let mut n = 0;
    for r in rows(text).iter().filter(|r| !r.path.contains("[]")) {
        let Some((lo, hi)) = first_code(r.valid_cell()).and_then(|c| c.split_once("..=")) else {
            continue;
        };
        let (lo, hi): (i64, i64) = (lo.parse().unwrap(), hi.parse().unwrap());
        for x in [lo, hi] {
            let got = try_value::<T, F>(base, &r.path, x, validate);
            assert!(
                got.as_ref().err() != Some(&r.path),
                "`{}` = {x} is documented as valid but refused",
                r.path
            );
        }
        for x in [lo - 1, hi + 1] {
            assert_eq!(
                try_value::<T, F>(base, &r.path, x, validate),
                Err(r.path.clone()),
                "`{}` = {x} is outside the documented range but not refused for that field",
                r.path
            );
        }
        n += 1;
    }
    n
}

#[test]
fn documented_ranges_are_enforced() {
    let lma = serde_json::to_value(minimal_lma()).unwrap();
    let mag = serde_json::to_value(minimal_mag()).unwrap();
    let n = check_ranges(part(LMA_PART), &lma, LmaConfig::validate)
        + check_ranges(part(MAG_PART), &mag, MagConfig::validate)
        + check_ranges(part(DOMAIN_PART), &lma, LmaConfig::validate)
        + check_ranges(part(DOMAIN_PART), &mag, MagConfig::validate);
    assert!(n >= 30, "only {n} ranges checked");
}

// ------------------------------------------------------------------ YAML notes

/// The words a row lists in its valid-values cell (each backticked token).
fn listed_words(cell: &str) -> Vec<&str> {
    cell.split('`').skip(1).step_by(2).collect()
}

#[test]
fn datapath_modes_in_the_reference_are_the_enums() {
    // Exhaustive: a new mode fails to compile here until it is listed.
    let all = |m: DatapathMode| match m {
        DatapathMode::Auto
        | DatapathMode::Seg6
        | DatapathMode::Ip6tnl
        | DatapathMode::Tun
        | DatapathMode::None => m,
    };
    let modes = [
        DatapathMode::Auto,
        DatapathMode::Seg6,
        DatapathMode::Ip6tnl,
        DatapathMode::Tun,
        DatapathMode::None,
    ]
    .map(all);
    let words: Vec<String> = modes
        .iter()
        .map(|m| {
            serde_json::to_value(m)
                .unwrap()
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    for heading in [LMA_PART, MAG_PART] {
        let row = rows(part(heading))
            .into_iter()
            .find(|r| r.path == "datapath.mode")
            .unwrap_or_else(|| panic!("no datapath.mode row under {heading:?}"));
        assert_eq!(listed_words(row.valid_cell()), words, "{heading}");
    }
    for (word, mode) in words.iter().zip(modes) {
        let c: DatapathConfig = parse(&format!("mode: {word}\n")).unwrap();
        assert_eq!(c.mode, mode, "{word}");
    }
}

#[test]
fn yaml_notes_in_the_reference_hold() {
    let lma = yaml_example("### Minimal LMA configuration");
    let with = |extra: &str| parse::<LmaConfig>(&format!("{lma}{extra}"));

    // Unquoted link-layer addresses, dashes and capitals.
    let c = with(
        "domain:\n  link_local: {mode: lma-generated, link_layer_address: 02-00-5E-00-53-09}\n",
    )
    .unwrap();
    assert_eq!(
        c.domain.link_local.link_layer_address(),
        LinkLayerAddress::mac([2, 0, 0x5e, 0, 0x53, 9])
    );
    // `off` and `none` are the words, not a boolean or null.
    let c = with("domain: {fast_handover: {mode: off}}\ndatapath: {mode: none}\n").unwrap();
    assert_eq!(c.domain.fast_handover.mode, FastHandoverMode::Off);
    assert_eq!(c.datapath.mode, DatapathMode::None);
    // null, ~ and nothing all leave an optional value unset (and turn the metrics off).
    for v in ["null", "~", ""] {
        let c = with(&format!("metrics:\n  listen: {v}\n")).unwrap();
        assert_eq!(c.metrics.listen, None, "{v:?}");
    }
    // A socket address must be quoted.
    assert!(with("api:\n  listen: [::]:50052\n").is_err());
    assert_eq!(
        with("api:\n  listen: \"[::]:50052\"\n").unwrap().api.listen,
        "[::]:50052".parse::<SocketAddr>().unwrap()
    );
    // Unknown keys are refused at every level, and named.
    for extra in [
        "colour: blue\n",
        "timers: {colour: blue}\n",
        "domain: {heartbeat: {colour: blue}}\n",
    ] {
        let e = with(extra).unwrap_err();
        assert!(e.contains("unknown field `colour`"), "{e}");
    }
    // A section with some fields keeps the defaults of the others...
    let c = with("timers:\n  timestamp_validity_window_ms: 500\n").unwrap();
    assert_eq!(c.timers.timestamp_validity_window_ms, 500);
    assert_eq!(
        c.timers.min_delay_before_bce_delete_ms,
        LmaTimers::default().min_delay_before_bce_delete_ms
    );
    // ...except `domain.link_local` and `api.tls`, which must be complete.
    let e = with("domain:\n  link_local: {mode: fixed, link_layer_address: 02:00:5e:00:53:01}\n")
        .unwrap_err();
    assert!(e.contains("missing field `address`"), "{e}");
    let e = with("api:\n  tls: {cert: server.pem}\n").unwrap_err();
    assert!(e.contains("missing field `key`"), "{e}");
    // `address` is refused with `lma-generated`.
    let e = with(
        "domain:\n  link_local: {mode: lma-generated, address: \"fe80::1\", link_layer_address: 02:00:5e:00:53:01}\n",
    )
    .unwrap_err();
    assert!(e.contains("unknown field `address`"), "{e}");
}

/// `policy_server_tls` goes with an `https://` policy server and only with one, and its
/// client certificate and key go together: each refusal names the field.
#[test]
fn policy_server_tls_goes_with_an_https_policy_server() {
    let mag = |extra: &str| -> Result<MagConfig, String> {
        let c: MagConfig = serde_saphyr::from_str(&format!(
            "proxy_coa: 2001:db8:1::10\nlma_address: 2001:db8:ffff::1\naccess_interfaces: [acc0]\n{extra}"
        ))
        .map_err(|e| e.to_string())?;
        c.validate().map(|()| c).map_err(|e| e.to_string())
    };
    let tls = "policy_server_tls: {ca: ca.pem, cert: mag.pem, key: mag.key}\n";
    let c = mag(&format!(
        "policy_server: 'https://lma.example:50051'\n{tls}"
    ))
    .unwrap();
    assert_eq!(
        c.policy_server_tls.unwrap().cert.unwrap(),
        std::path::PathBuf::from("mag.pem")
    );
    mag("policy_server: 'http://[2001:db8:ffff::1]:50051'\n").unwrap();
    for (bad, field) in [
        (
            "policy_server: 'https://lma.example:50051'\n",
            "policy_server_tls",
        ),
        (
            &format!("policy_server: 'http://lma.example:50051'\n{tls}"),
            "policy_server_tls",
        ),
        (tls, "policy_server_tls"),
        (
            "policy_server: 'https://lma.example:50051'\npolicy_server_tls: {ca: ca.pem, cert: mag.pem}\n",
            "policy_server_tls.key",
        ),
        ("policy_server: 'lma.example:50051'\n", "policy_server"),
    ] {
        let e = mag(bad).unwrap_err();
        assert!(e.contains(field), "{bad}: {e}");
    }
}
