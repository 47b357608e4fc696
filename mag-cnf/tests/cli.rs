//! The command line of `pmip-mag`: a bad configuration names the field and exits with code 2
//! before anything starts; `--check-config` accepts a good one.

use std::process::Command;

fn run(yaml: &str, extra: &[&str]) -> (Option<i32>, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("mag.yaml");
    std::fs::write(&f, yaml).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_pmip-mag"))
        .arg("--config")
        .arg(&f)
        .args(extra)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_good_file_passes_the_check() {
    let (code, out, err) = run(
        "proxy_coa: '2001:db8:1::1'\nlma_address: '2001:db8::1'\naccess_interfaces: ['acc*']\n",
        &["--check-config"],
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(out.ends_with(": ok\n"), "{out}");
}

#[test]
fn a_bad_field_is_named_and_exits_2() {
    let (code, _, err) = run(
        "proxy_coa: '2001:db8:1::1'\nlma_address: '2001:db8::1'\naccess_interfaces: ['acc*']\ntimers: {max_pbu_transmissions: 0}\n",
        &[],
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("max_pbu_transmissions"), "{err}");
}

#[test]
fn an_unknown_field_is_named_and_exits_2() {
    let (code, _, err) = run(
        "proxy_coa: '2001:db8:1::1'\nlma_address: '2001:db8::1'\naccess_interfaces: ['acc*']\nno_such_field: 1\n",
        &[],
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("no_such_field"), "{err}");
}

#[test]
fn a_missing_file_exits_2() {
    let out = Command::new(env!("CARGO_BIN_EXE_pmip-mag"))
        .args(["--config", "/nonexistent/mag.yaml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("mag.yaml"));
}

const MAG: &str =
    "proxy_coa: '2001:db8:1::1'\nlma_address: '2001:db8::1'\naccess_interfaces: ['acc*']\n";

#[test]
fn check_config_refuses_a_link_layer_address_the_mag_could_not_use() {
    // 8 bytes: a valid link-layer address, but not the MAC of an Ethernet access link.
    let (code, out, err) = run(
        &format!(
            "{MAG}domain:\n  link_local:\n    mode: fixed\n    address: fe80::1\n    \
             link_layer_address: 02:00:5e:00:53:01:02:03\n"
        ),
        &["--check-config"],
    );
    assert_eq!(code, Some(2), "{out}{err}");
    assert!(
        err.contains("domain.link_local.link_layer_address: 02:00:5e:00:53:01:02:03 is 8 bytes"),
        "{err}"
    );
    // A multicast MAC.
    let (code, _, err) = run(
        &format!(
            "{MAG}domain:\n  link_local:\n    mode: lma-generated\n    \
             link_layer_address: 01:00:5e:00:53:01\n"
        ),
        &["--check-config"],
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("domain.link_local.link_layer_address: 01:00:5e:00:53:01 is a multicast MAC"),
        "{err}"
    );
}

#[test]
fn every_link_layer_address_error_names_its_field() {
    for (yaml, field) in [
        (
            format!(
                "{MAG}domain:\n  link_local:\n    mode: fixed\n    address: fe80::1\n    \
                 link_layer_address: 02:00:5e\n"
            ),
            "domain.link_local.link_layer_address",
        ),
        (
            format!(
                "{MAG}domain:\n  link_local:\n    mode: lma-generated\n    link_layer_address: nope\n"
            ),
            "domain.link_local.link_layer_address",
        ),
        (
            format!(
                "{MAG}mobile_nodes:\n  - mn_id: a@x\n  - mn_id: b@x\n    link_layer_addresses: [\"02:00:00:00:00:01\", \"zz:00\"]\n"
            ),
            "mobile_nodes[1].link_layer_addresses[1]",
        ),
    ] {
        let (code, _, err) = run(&yaml, &["--check-config"]);
        assert_eq!(code, Some(2), "{yaml}: {err}");
        assert!(err.contains(field), "{field} not named for\n{yaml}: {err}");
    }
}

/// Issue 13 item 7: the Neighbor Unreachability Detection settings are checked.
#[test]
fn neighbor_unreachability_settings_are_checked() {
    let (code, _, err) = run(
        &format!(
            "{MAG}neighbor_unreachability: {{idle_s: 5, probes: 2, probe_interval_ms: 500}}\n"
        ),
        &["--check-config"],
    );
    assert_eq!(code, Some(0), "{err}");
    // Off: the other values do not matter.
    let (code, _, err) = run(
        &format!("{MAG}neighbor_unreachability: {{idle_s: 0, probes: 0}}\n"),
        &["--check-config"],
    );
    assert_eq!(code, Some(0), "{err}");
    for (yaml, field) in [
        ("{probes: 0}", "neighbor_unreachability.probes"),
        ("{probes: 11}", "neighbor_unreachability.probes"),
        (
            "{probe_interval_ms: 99}",
            "neighbor_unreachability.probe_interval_ms",
        ),
        ("{idle_s: 86401}", "neighbor_unreachability.idle_s"),
    ] {
        let (code, _, err) = run(
            &format!("{MAG}neighbor_unreachability: {yaml}\n"),
            &["--check-config"],
        );
        assert_eq!(code, Some(2), "{yaml}: {err}");
        assert!(err.contains(field), "{field} not named for {yaml}: {err}");
    }
}

/// Issue 13 item 8: an MN-ID derived from the link-layer address; its bad values name
/// their field.
#[test]
fn an_mn_id_from_the_link_layer_address_is_checked() {
    let good = format!(
        "{MAG}mobile_nodes:\n  - mn_id_from_link_layer: lab.example\n    \
         link_layer_addresses: [\"02:00:00:10:00:01\"]\n  \
         - mn_id: 02-00-00-10-00-02@lab.example\n    mn_id_from_link_layer: lab.example\n    \
         link_layer_addresses: [\"02:00:00:10:00:02\"]\n"
    );
    let (code, _, err) = run(&good, &["--check-config"]);
    assert_eq!(code, Some(0), "{err}");
    for (profile, field) in [
        (
            "mn_id_from_link_layer: 'lab example'\n    link_layer_addresses: [\"02:00:00:10:00:01\"]",
            "mn_id_from_link_layer",
        ),
        (
            "mn_id_from_link_layer: lab.example\n    link_layer_addresses: []",
            "link_layer_addresses",
        ),
        (
            "mn_id_from_link_layer: lab.example\n    \
             link_layer_addresses: [\"02:00:00:10:00:01\", \"02:00:00:10:00:02\"]",
            "link_layer_addresses",
        ),
        (
            "mn_id: mn1@lab.example\n    mn_id_from_link_layer: lab.example\n    \
             link_layer_addresses: [\"02:00:00:10:00:01\"]",
            "mobile_nodes[0].mn_id",
        ),
        ("link_layer_addresses: [\"02:00:00:10:00:01\"]", "mn_id"),
    ] {
        let yaml = format!("{MAG}mobile_nodes:\n  - {profile}\n");
        let (code, _, err) = run(&yaml, &["--check-config"]);
        assert_eq!(code, Some(2), "{yaml}: {err}");
        assert!(err.contains(field), "{field} not named for\n{yaml}: {err}");
    }
}
