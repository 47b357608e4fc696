//! The CRDs checked in under `crds/` and shipped in `charts/pmip/crds/` must be exactly what
//! `crdgen` generates from the Rust types.

use std::path::Path;

fn check(rel: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel);
    let generated = operator::crd_yaml().expect("CRDs serialize");
    let on_disk = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; generate it with `cargo run -p operator --bin crdgen > {rel}`",
            path.display()
        )
    });
    assert!(
        on_disk == generated,
        "{rel} differs from what crdgen generates; regenerate it with \
         `cargo run -p operator --bin crdgen > {rel}` and commit it"
    );
}

#[test]
fn crds_directory_matches_crdgen() {
    check("crds/pmip.io.yaml");
}

#[test]
fn chart_crds_match_crdgen() {
    check("charts/pmip/crds/pmip.io.yaml");
}
