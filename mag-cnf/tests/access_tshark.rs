//! Cross-check of the Router Advertisement frames against a decoder nobody here wrote:
//! Wireshark's ICMPv6 dissector (`packet-icmpv6.c`, run as `tshark`).
//!
//! Frames built by `router_advertisement_frame` are written to a pcap (LINKTYPE_ETHERNET) and
//! decoded field by field; the test asserts every field of the Ethernet, IPv6 and ICMPv6
//! headers and of every option, that Wireshark verified the checksum as correct, and that it
//! raised no expert warning or error (malformed packets included).
//!
//! Needs `tshark` (Debian package `tshark`). Without it the test fails and says how to
//! install it; set `TSHARK` to use another binary.

use std::process::Command;
use std::time::Duration;

use mag_cnf::access::router_advertisement_frame;
use pmip::output::{AccessLink, RouterAdvertisement};
use pmip::types::LinkLayerAddress;

const MAG_MAC: [u8; 6] = [0x02, 0x00, 0x5e, 0x00, 0x53, 0x01];
const NODE_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x01, 0x01];

/// The fields asked of tshark, one column each; several occurrences are joined with `,`.
const FIELDS: &[&str] = &[
    "eth.dst",
    "eth.src",
    "eth.type",
    "ipv6.version",
    "ipv6.plen",
    "ipv6.nxt",
    "ipv6.hlim",
    "ipv6.src",
    "ipv6.dst",
    "icmpv6.type",
    "icmpv6.code",
    "icmpv6.checksum.status",
    "icmpv6.nd.ra.cur_hop_limit",
    "icmpv6.nd.ra.flag.m",
    "icmpv6.nd.ra.flag.o",
    "icmpv6.nd.ra.router_lifetime",
    "icmpv6.nd.ra.reachable_time",
    "icmpv6.nd.ra.retrans_timer",
    "icmpv6.opt.type",
    "icmpv6.opt.length",
    "icmpv6.opt.linkaddr",
    "icmpv6.opt.mtu",
    "icmpv6.opt.prefix.length",
    "icmpv6.opt.prefix.flag.l",
    "icmpv6.opt.prefix.flag.a",
    "icmpv6.opt.prefix.valid_lifetime",
    "icmpv6.opt.prefix.preferred_lifetime",
    "icmpv6.opt.prefix",
    "_ws.expert.severity",
    "_ws.malformed",
];

fn ra(prefixes: &[&str], lifetime: Duration) -> RouterAdvertisement {
    RouterAdvertisement {
        link: AccessLink(3),
        mn_link_layer: LinkLayerAddress::mac(NODE_MAC),
        src_link_local: "fe80::1".parse().unwrap(),
        src_link_layer: LinkLayerAddress::mac(MAG_MAC),
        prefixes: prefixes.iter().map(|p| p.parse().unwrap()).collect(),
        prefix_lifetime: lifetime,
        router_lifetime: lifetime.min(Duration::from_secs(1800)),
        mtu: 1460,
    }
}

/// A pcap file (LINKTYPE_ETHERNET) holding `frames`.
fn pcap(frames: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&0i32.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&65_535u32.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes());
    for (i, f) in frames.iter().enumerate() {
        out.extend_from_slice(&(1_700_000_000u32 + i as u32).to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        out.extend_from_slice(f);
    }
    out
}

/// Each frame decoded: the value of every field of [`FIELDS`], by name.
fn decode(frames: &[Vec<u8>]) -> Vec<std::collections::HashMap<&'static str, String>> {
    let tshark = std::env::var("TSHARK").unwrap_or_else(|_| "tshark".into());
    let file = std::env::temp_dir().join(format!("pmip-access-ra-{}.pcap", std::process::id()));
    std::fs::write(&file, pcap(frames)).unwrap();
    let mut cmd = Command::new(&tshark);
    cmd.arg("-r").arg(&file).args([
        "-T",
        "fields",
        "-E",
        "separator=/t",
        "-E",
        "occurrence=a",
        "-E",
        "aggregator=,",
    ]);
    for f in FIELDS {
        cmd.args(["-e", f]);
    }
    let out = cmd.output();
    let _ = std::fs::remove_file(&file);
    let out = match out {
        Ok(o) => o,
        Err(e) => panic!(
            "cannot run {tshark} ({e}): install Wireshark's command-line decoder \
             (`apt-get install -y tshark`) or set TSHARK to its path"
        ),
    };
    assert!(
        out.status.success(),
        "tshark failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            FIELDS
                .iter()
                .copied()
                .zip(line.split('\t').map(str::to_owned))
                .collect()
        })
        .collect()
}

#[test]
fn wireshark_reads_our_router_advertisements_as_we_meant_them() {
    let frames = vec![
        router_advertisement_frame(&ra(
            &["2001:db8:1::/64", "2001:db8:2:3::/64"],
            Duration::from_secs(3600),
        ))
        .unwrap(),
        router_advertisement_frame(&ra(&["2001:db8:1::/64"], Duration::ZERO)).unwrap(),
        router_advertisement_frame(&ra(&[], Duration::ZERO)).unwrap(),
    ];
    let decoded = decode(&frames);
    assert_eq!(decoded.len(), 3, "{decoded:?}");

    for (i, d) in decoded.iter().enumerate() {
        let f = |name: &str| d.get(name).map(String::as_str).unwrap_or_default();
        assert_eq!(f("eth.dst"), "02:00:00:00:01:01", "frame {i}");
        assert_eq!(f("eth.src"), "02:00:5e:00:53:01");
        assert_eq!(f("eth.type"), "0x86dd");
        assert_eq!(f("ipv6.version"), "6");
        assert_eq!(f("ipv6.plen"), (frames[i].len() - 54).to_string());
        assert_eq!(f("ipv6.nxt"), "58");
        assert_eq!(f("ipv6.hlim"), "255");
        assert_eq!(f("ipv6.src"), "fe80::1");
        assert_eq!(f("ipv6.dst"), "ff02::1");
        assert_eq!(f("icmpv6.type"), "134");
        assert_eq!(f("icmpv6.code"), "0");
        // PROTO_CHECKSUM_E_GOOD
        assert_eq!(f("icmpv6.checksum.status"), "1", "checksum of frame {i}");
        assert_eq!(f("icmpv6.nd.ra.cur_hop_limit"), "64");
        assert_eq!(f("icmpv6.nd.ra.flag.m"), "0");
        assert_eq!(f("icmpv6.nd.ra.flag.o"), "0");
        assert_eq!(f("icmpv6.nd.ra.reachable_time"), "0");
        assert_eq!(f("icmpv6.nd.ra.retrans_timer"), "0");
        assert_eq!(f("icmpv6.opt.linkaddr"), "02:00:5e:00:53:01");
        assert_eq!(f("icmpv6.opt.mtu"), "1460");
        assert_eq!(f("_ws.malformed"), "", "frame {i} is malformed");
        assert_eq!(f("_ws.expert.severity"), "", "frame {i}: expert info");
    }

    let f = |i: usize, name: &str| decoded[i].get(name).cloned().unwrap_or_default();
    // Source link-layer address, MTU, then the prefixes.
    assert_eq!(f(0, "icmpv6.opt.type"), "1,5,3,3");
    assert_eq!(f(0, "icmpv6.opt.length"), "1,1,4,4");
    assert_eq!(f(0, "icmpv6.nd.ra.router_lifetime"), "1800");
    assert_eq!(f(0, "icmpv6.opt.prefix"), "2001:db8:1::,2001:db8:2:3::");
    assert_eq!(f(0, "icmpv6.opt.prefix.length"), "64,64");
    assert_eq!(f(0, "icmpv6.opt.prefix.flag.l"), "1,1");
    assert_eq!(f(0, "icmpv6.opt.prefix.flag.a"), "1,1");
    assert_eq!(f(0, "icmpv6.opt.prefix.valid_lifetime"), "3600,3600");
    assert_eq!(f(0, "icmpv6.opt.prefix.preferred_lifetime"), "3600,3600");

    // The withdrawal: lifetimes zero.
    assert_eq!(f(1, "icmpv6.opt.type"), "1,5,3");
    assert_eq!(f(1, "icmpv6.nd.ra.router_lifetime"), "0");
    assert_eq!(f(1, "icmpv6.opt.prefix.valid_lifetime"), "0");
    assert_eq!(f(1, "icmpv6.opt.prefix.preferred_lifetime"), "0");

    // Without prefixes.
    assert_eq!(f(2, "icmpv6.opt.type"), "1,5");
    assert_eq!(f(2, "icmpv6.opt.prefix"), "");
}
