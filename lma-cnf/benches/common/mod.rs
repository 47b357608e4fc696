//! The binding records the store benchmarks write and read back.

use ipnet::Ipv6Net;
use pmip::ipv4_pool::Ipv4HomeAddress;
use pmip::lma::BindingRecord;
use pmip::types::LinkLayerAddress;

/// Node `n`'s record: a /64 of 2001:db8::/32, one of 16 MAGs, an IPv4 home address of
/// 10.0.0.0/8 for every other node, expiring an hour after 1,800,000,000 s.
pub fn binding(n: u32) -> BindingRecord {
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
