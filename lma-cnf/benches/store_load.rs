//! The store's read at start: decoding binding records in the binary layout against the JSON
//! of earlier versions, in the same run, and a whole `Store::load` of binary records.
//!
//! `cargo bench -p lma-cnf --bench store_load [-- RECORDS]` (default 1,000,000).

use std::hint::black_box;
use std::time::Instant;

use lma_cnf::record;
use lma_cnf::store::{Batch, Store};
use pmip::lma::BindingRecord;

mod common;
use common::binding;

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
