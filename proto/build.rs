//! Generates the tonic clients and servers of `pmip.v1` and an encoded FileDescriptorSet for
//! gRPC server reflection. protoc comes from `protoc-bin-vendored`: no system protoc needed.

use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "pmip/v1/common.proto",
    "pmip/v1/binding_cache.proto",
    "pmip/v1/policy.proto",
    "pmip/v1/gateway.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    let wkt = protoc_bin_vendored::include_path()?;

    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc);

    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let protos: Vec<PathBuf> = PROTOS.iter().map(|p| manifest.join(p)).collect();
    let includes = [manifest.clone(), wkt];

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .file_descriptor_set_path(out.join("pmip_v1_descriptor.bin"))
        .compile_with_config(config, &protos, &includes)?;

    println!("cargo:rerun-if-changed=pmip");
    Ok(())
}
