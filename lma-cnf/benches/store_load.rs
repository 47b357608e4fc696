//! The store's read at start: decoding binding records in the binary layout against the JSON
//! of earlier versions, in the same run, and a whole `Store::load` of binary records.
//!
//! `cargo bench -p lma-cnf --bench store_load [-- RECORDS]` (default 1,000,000).

use std::hint::black_box;
use std::time::Instant;

use ipnet::Ipv6Net;
use lma_cnf::record;
use lma_cnf::store::{Batch, Store};
use pmip::ipv4_pool::Ipv4HomeAddress;
use pmip::lma::BindingRecord;
use pmip::types::LinkLayerAddress;

fn binding(n: u32) -> BindingRecord {
    let b = n.to_be_bytes();
    BindingRecord {
        mn_id: format!("mn{n}@example.org"),
        home_network_prefixes: vec![
            Ipv6Net::new(
                format!("2001:db8:{:x}:{:x}::", n >> 16, n & 0xffff)
                    .parse()
                    .unwrap(),
                64,
            )
            .unwrap(),
        ],
        proxy_coa: format!("2001:db8:ffff::{:x}", n % 16 + 1).parse().unwrap(),
        access_technology_type: 3,
        handoff_indicator: 1,
        mn_link_layer_id: LinkLayerAddress::new(&[2, 0, b[0], b[1], b[2], b[3]]),
        link_local_address: Some("fe80::1".parse().unwrap()),
        lifetime_s: 3600,
        registered_at_ms: 1_800_000_000_000 + u64::from(n),
        updated_at_ms: 1_800_000_000_000 + u64::from(n),
        expires_at_ms: 1_800_003_600_000 + u64::from(n),
        delete_at_ms: None,
        last_timestamp: Some(0x1234_5678_0000_0000 + u64::from(n)),
        last_sequence: n as u16,
        handover_count: n % 5,
        last_handover_gap_ms: (!n.is_multiple_of(5)).then_some(30),
        ipv4_home_address: n.is_multiple_of(2).then(|| Ipv4HomeAddress {
            address: std::net::Ipv4Addr::from(0x0a00_0000 | n),
            prefix_len: 8,
            default_router: "10.0.0.1".parse().unwrap(),
        }),
    }
}

fn main() {
    let n: u32 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let records: Vec<BindingRecord> = (0..n).map(binding).collect();
    let json: Vec<Vec<u8>> = records
        .iter()
        .map(|r| serde_json::to_vec(r).unwrap())
        .collect();
    let binary: Vec<Vec<u8>> = records.iter().map(|r| record::encode(r).unwrap()).collect();
    let size = |v: &[Vec<u8>]| v.iter().map(Vec::len).sum::<usize>() as f64 / f64::from(n);

    let t = Instant::now();
    for b in &json {
        black_box(serde_json::from_slice::<BindingRecord>(b).unwrap());
    }
    let json_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    for b in &binary {
        black_box(record::decode(b).unwrap());
    }
    let bin_s = t.elapsed().as_secs_f64();

    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    for chunk in records.chunks(100_000) {
        let mut b = Batch::default();
        for r in chunk {
            b.put_binding(r.clone());
        }
        store.commit(&b).unwrap();
    }
    let t = Instant::now();
    let loaded = store.load().unwrap();
    let load_s = t.elapsed().as_secs_f64();
    assert_eq!(loaded.snapshot.bindings.len(), n as usize);

    println!("store_load: {n} binding records");
    println!(
        "  {:<28} {:>10} {:>12} {:>14}",
        "format", "bytes/rec", "decode s", "records/s"
    );
    for (name, bytes, s) in [
        ("JSON (schema 1)", size(&json), json_s),
        ("binary (schema 2)", size(&binary), bin_s),
    ] {
        println!(
            "  {name:<28} {bytes:>10.0} {s:>12.3} {:>14.0}",
            f64::from(n) / s
        );
    }
    println!(
        "  binary decodes {:.1}x faster than JSON, same run; Store::load of {n} binary records: {load_s:.2} s",
        json_s / bin_s
    );
}
