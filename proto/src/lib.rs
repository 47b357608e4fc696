//! The gRPC API of the pmip daemons, package `pmip.v1`.
//!
//! | service | served by | what |
//! |---|---|---|
//! | [`BindingCache`](v1::binding_cache_server::BindingCache) | `pmip-lma` | list, get, watch (resumable) and revoke binding cache entries; LMA counters |
//! | [`Policy`](v1::policy_server::Policy) | `pmip-lma` | mobile node profiles and authorized MAGs |
//! | [`Gateway`](v1::gateway_server::Gateway) | `pmip-mag` | binding update list, attach/detach, fast-handover indication, lab mode |
//!
//! The `.proto` files under `pmip/v1/` are the reference: every field and every status code an
//! RPC returns is documented there. Both daemons listen on [`GRPC_PORT`] and also serve the
//! standard `grpc.health.v1.Health` service and server reflection from [`FILE_DESCRIPTOR_SET`].

/// Generated code of package `pmip.v1`: messages, `*_client` and `*_server` modules.
pub mod v1 {
    #![allow(missing_debug_implementations, clippy::all, clippy::pedantic)]
    tonic::include_proto!("pmip.v1");
}

/// The encoded `FileDescriptorSet` of `pmip.v1` (with its imports), for `tonic-reflection`'s
/// `Builder::register_encoded_file_descriptor_set`.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/pmip_v1_descriptor.bin"));

/// The gRPC port of `pmip-lma` and `pmip-mag`.
pub const GRPC_PORT: u16 = 50051;

/// The Prometheus metrics port (`/metrics`) of every pmip daemon and of the operator.
pub const METRICS_PORT: u16 = 9464;

/// Fully qualified service names, as the health service and reflection report them.
pub mod service_names {
    /// `pmip.v1.BindingCache`.
    pub const BINDING_CACHE: &str = "pmip.v1.BindingCache";
    /// `pmip.v1.Policy`.
    pub const POLICY: &str = "pmip.v1.Policy";
    /// `pmip.v1.Gateway`.
    pub const GATEWAY: &str = "pmip.v1.Gateway";
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    #[test]
    fn descriptor_set_has_every_service_and_the_well_known_types() {
        let fds = prost_types::FileDescriptorSet::decode(FILE_DESCRIPTOR_SET).unwrap();
        let files: Vec<&str> = fds.file.iter().map(|f| f.name()).collect();
        for f in [
            "pmip/v1/common.proto",
            "pmip/v1/binding_cache.proto",
            "pmip/v1/policy.proto",
            "pmip/v1/gateway.proto",
            "google/protobuf/timestamp.proto",
        ] {
            assert!(files.contains(&f), "{f} missing from {files:?}");
        }
        let services: Vec<String> = fds
            .file
            .iter()
            .flat_map(|f| {
                f.service
                    .iter()
                    .map(|s| format!("{}.{}", f.package(), s.name()))
            })
            .collect();
        for s in [
            service_names::BINDING_CACHE,
            service_names::POLICY,
            service_names::GATEWAY,
        ] {
            assert!(
                services.iter().any(|x| x == s),
                "{s} missing from {services:?}"
            );
        }
    }

    #[test]
    fn every_field_and_rpc_is_documented() {
        // The daemons are written against these files by others: a field without a comment
        // is a bug of the API, so the build's source info is checked here.
        let fds = prost_types::FileDescriptorSet::decode(FILE_DESCRIPTOR_SET).unwrap();
        let mut undocumented = Vec::new();
        for f in fds.file.iter().filter(|f| f.package() == "pmip.v1") {
            let info = f.source_code_info.as_ref().expect("source info kept");
            let documented = |path: &[i32]| {
                info.location
                    .iter()
                    .any(|l| l.path == path && !l.leading_comments().trim().is_empty())
            };
            // FileDescriptorProto: message_type = 4, enum_type = 5, service = 6;
            // DescriptorProto.field = 2, EnumDescriptorProto.value = 2,
            // ServiceDescriptorProto.method = 2.
            for (mi, m) in f.message_type.iter().enumerate() {
                for (fi, field) in m.field.iter().enumerate() {
                    if !documented(&[4, mi as i32, 2, fi as i32]) {
                        undocumented.push(format!("{}: {}.{}", f.name(), m.name(), field.name()));
                    }
                }
            }
            for (ei, e) in f.enum_type.iter().enumerate() {
                for (vi, v) in e.value.iter().enumerate() {
                    if !documented(&[5, ei as i32, 2, vi as i32]) {
                        undocumented.push(format!("{}: {}", f.name(), v.name()));
                    }
                }
            }
            for (si, s) in f.service.iter().enumerate() {
                for (ri, r) in s.method.iter().enumerate() {
                    if !documented(&[6, si as i32, 2, ri as i32]) {
                        undocumented.push(format!("{}: {}.{}", f.name(), s.name(), r.name()));
                    }
                }
            }
        }
        assert!(undocumented.is_empty(), "undocumented: {undocumented:#?}");
    }
}

#[cfg(test)]
mod reflection_tests {
    #[test]
    fn reflection_accepts_the_descriptor_set() {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(super::FILE_DESCRIPTOR_SET)
            .build_v1()
            .expect("a reflection service is built from the descriptor set");
    }
}
