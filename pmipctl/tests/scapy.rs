//! A Proxy Binding Update built by an independent encoder (scapy, see `scapy_pbu.py`) decodes
//! correctly with `pmipctl mh decode`, checksum included.
//!
//! Needs Python 3 with scapy (`python3 -m pip install scapy`, or Debian's `python3-scapy`).
//! Without it the test fails and says so; `PMIP_PYTHON` picks the interpreter.

mod common;

use std::process::Command;

use common::{pmipctl, stderr, stdout};
use serde_json::{Value, json};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/scapy_pbu.py");

/// Runs the scapy script with the first interpreter that has scapy.
fn scapy_pbu() -> Value {
    let candidates: Vec<String> = match std::env::var("PMIP_PYTHON") {
        Ok(p) => vec![p],
        // Debian's python3-scapy installs for the system interpreter, which another python3
        // (pyenv, a venv) may hide on PATH.
        Err(_) => vec!["python3".into(), "/usr/bin/python3".into()],
    };
    let mut tried = Vec::new();
    for py in &candidates {
        match Command::new(py).arg(SCRIPT).output() {
            Ok(o) if o.status.success() => {
                return serde_json::from_slice(&o.stdout).expect("script output is JSON");
            }
            Ok(o) => tried.push(format!(
                "{py}: exit {:?}: {}",
                o.status.code(),
                String::from_utf8_lossy(&o.stderr).trim()
            )),
            Err(e) => tried.push(format!("{py}: {e}")),
        }
    }
    panic!(
        "cannot build the PBU with scapy ({}). This test needs Python 3 with scapy: \
         `python3 -m pip install scapy` or `apt-get install python3-scapy` \
         (PMIP_PYTHON selects the interpreter)",
        tried.join("; ")
    );
}

#[test]
fn a_pbu_built_by_scapy_decodes_field_by_field() {
    let s = scapy_pbu();
    let packet = s["packet"].as_str().unwrap();
    let o = pmipctl(&["mh", "decode", "--ip", "-o", "json", packet], b"");
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();

    assert_eq!(v["src"], s["src"]);
    assert_eq!(v["dst"], s["dst"]);
    assert_eq!(v["transport"], "IPv6");
    assert_eq!(v["mh_offset"], s["mh_offset"]);
    let m = &v["message"];
    // No warning: scapy's checksum verifies over the pseudo-header, and every mandatory PBU
    // option is there once.
    assert_eq!(m["warnings"], json!([]), "{m:#}");
    assert_eq!(m["message"], "Proxy Binding Update");
    assert_eq!(m["mh_type"], json!({"value": 5, "name": "Binding Update"}));
    assert_eq!(m["payload_proto"], 59);
    assert_eq!(m["checksum"], s["checksum"]);
    assert_eq!(m["sequence"], s["sequence"]);
    assert_eq!(m["flags"], json!(["A", "P"]));
    assert_eq!(m["lifetime"], s["lifetime"]);
    assert_eq!(m["lifetime_seconds"], s["lifetime"].as_u64().unwrap() * 4);

    let opts = m["options"].as_array().unwrap();
    let types: Vec<u64> = opts
        .iter()
        .map(|o| o["type"]["value"].as_u64().unwrap())
        .collect();
    assert_eq!(types, [8, 22, 23, 24, 27, 33], "{m:#}");
    assert_eq!(opts[0]["subtype"], json!({"value": 1, "name": "NAI"}));
    assert_eq!(opts[0]["identifier"], s["nai"]);
    assert_eq!(opts[1]["home_network_prefix"], s["home_network_prefix"]);
    assert_eq!(opts[1]["prefix_length"], 64);
    assert_eq!(
        opts[2]["handoff_indicator"],
        json!({"value": s["handoff_indicator"], "name": "Handoff state unknown"})
    );
    assert_eq!(
        opts[3]["access_technology_type"],
        json!({"value": s["access_technology_type"], "name": "3GPP E-UTRAN"})
    );
    assert_eq!(opts[4]["seconds"], s["timestamp_seconds"]);
    assert_eq!(opts[4]["fraction"], s["timestamp_fraction"]);
    assert_eq!(opts[4]["timestamp"], "2025-06-15T15:06:40.750000000Z");
    assert_eq!(opts[5]["gre_key_identifier"], s["gre_key"]);

    // The Mobility Header alone decodes to the same message.
    let mh = &packet[2 * s["mh_offset"].as_u64().unwrap() as usize..];
    let alone: Value =
        serde_json::from_str(&stdout(&pmipctl(&["mh", "decode", "-o", "json", mh], b""))).unwrap();
    assert_eq!(&alone, m);

    // And a flipped bit in scapy's packet shows as a checksum warning, not a failure.
    let mut bytes = hex::decode(packet).unwrap();
    bytes[50] ^= 0x01;
    let o = pmipctl(
        &["mh", "decode", "--ip", "-o", "json", &hex::encode(&bytes)],
        b"",
    );
    assert!(o.status.success());
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    let w = v["message"]["warnings"][0].as_str().unwrap();
    assert!(w.starts_with("at byte 4: bad checksum"), "{w}");
}
