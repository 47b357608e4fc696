//! Writes a seed corpus for the fuzz targets: one message of every kind the crate emits, with
//! every option, as a bare Mobility Header, inside IPv6 and IPv4-UDP packets, in Ethernet
//! frames, as hex text and as a pcap file.
//!
//! Also the access link's frames of `pmip::wire::nd`: every ND message, MLD reports, with
//! every option kind; and the LMA store's binding records, in its binary layout and as JSON.
//!
//! `cargo run --release --example seeds` (from `fuzz/`) fills `corpus/mh/`,
//! `corpus/pmipctl_decode/`, `corpus/nd/`, `corpus/esp/` and `corpus/store_record/`.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;

use pmip::wire::packet::{build_ipv4_udp, build_ipv6};
use pmip::wire::*;

fn v6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

fn messages(emit_one: &mut dyn FnMut(&Message<'_>)) {
    let mut cr = [0u8; 4];
    let ctx = ContextRequest::encode_types(
        &[
            OptionType::HomeNetworkPrefix,
            OptionType::MnLinkLayerIdentifier,
        ],
        &mut cr,
    )
    .unwrap();
    let all = [
        MobilityOption::MobileNodeIdentifier {
            subtype: MN_ID_SUBTYPE_NAI,
            id: b"mn1@example.org",
        },
        MobilityOption::HomeNetworkPrefix("2001:db8:1:1::/64".parse().unwrap()),
        MobilityOption::HomeNetworkPrefix("::/0".parse().unwrap()),
        MobilityOption::HandoffIndicator(HandoffIndicator::AttachmentOverNewInterface),
        MobilityOption::AccessTechnologyType(AccessTechnologyType::Ieee8023),
        MobilityOption::Timestamp(Timestamp(0x6553_f100_4000)),
        MobilityOption::MnLinkLayerIdentifier(&[2, 0, 0x5e, 0, 0x53, 1]),
        MobilityOption::LinkLocalAddress(v6("fe80::1")),
        MobilityOption::AlternateCareOfAddress(v6("2001:db8:a::2")),
        MobilityOption::RestartCounter(3),
        MobilityOption::GreKey(Some(0x1234_5678)),
        MobilityOption::GreKey(None),
        MobilityOption::Ipv4HomeAddressRequest {
            prefix_len: 24,
            address: Ipv4Addr::new(10, 1, 2, 3),
        },
        MobilityOption::Ipv4HomeAddressReply {
            status: Ipv4HoaStatus::Success,
            prefix_len: 24,
            address: Ipv4Addr::new(10, 1, 2, 3),
        },
        MobilityOption::Ipv4DefaultRouterAddress(Ipv4Addr::new(10, 1, 2, 1)),
        MobilityOption::Ipv4DhcpSupportMode { server: true },
        MobilityOption::VendorSpecific {
            vendor_id: 32473,
            sub_type: 7,
            data: &[1, 2, 3, 4],
        },
        MobilityOption::ContextRequest(ctx),
        MobilityOption::LmaAddress(LmaAddress::V6(v6("2001:db8:b::1"))),
        MobilityOption::LmaAddress(LmaAddress::V4(Ipv4Addr::new(192, 0, 2, 1))),
        MobilityOption::MnLinkLocalInterfaceId([2, 0, 0x5e, 0xff, 0xfe, 0, 0x53, 1]),
        MobilityOption::Unknown {
            option_type: 200,
            data: &[0xde, 0xad],
        },
    ];
    // The typical PBU, and each option alone in a PBU, then every kind with all options.
    let typical = &all[..6];
    let bu = |o: &[MobilityOption<'_>], f: &mut dyn FnMut(&Message<'_>)| {
        f(&Message::BindingUpdate(BindingUpdate {
            sequence: SequenceNumber(4711),
            flags: BuFlags::A | BuFlags::P,
            lifetime: Lifetime::from_secs(3600),
            options: Options::List(o),
        }))
    };
    bu(typical, emit_one);
    for o in &all {
        bu(std::slice::from_ref(o), emit_one);
    }
    let opts = Options::List(&all);
    let seq = SequenceNumber(9);
    for m in [
        Message::BindingUpdate(BindingUpdate {
            sequence: seq,
            flags: BuFlags::A | BuFlags::P,
            lifetime: Lifetime(1),
            options: opts,
        }),
        Message::BindingAck(BindingAck {
            status: Status::MagNotAuthorizedForProxyReg,
            flags: BaFlags::P,
            sequence: seq,
            lifetime: Lifetime(0),
            options: opts,
        }),
        Message::BindingError(BindingError {
            status: BindingErrorStatus::UnrecognizedMhType,
            home_address: v6("2001:db8::99"),
            options: Options::EMPTY,
        }),
        Message::Heartbeat(Heartbeat {
            flags: HeartbeatFlags::R,
            sequence: 7,
            options: Options::List(&all[9..10]),
        }),
        Message::HandoverInitiate(HandoverInitiate {
            sequence: seq,
            flags: HiFlags::P | HiFlags::U,
            code: HiCode::Default,
            options: opts,
        }),
        Message::HandoverAck(HandoverAck {
            sequence: seq,
            flags: HackFlags::P,
            code: HackCode::ContextTransferAccepted,
            options: opts,
        }),
        Message::BindingRevocation(BindingRevocation::Indication(BindingRevocationIndication {
            trigger: RevocationTrigger::AdministrativeReason,
            sequence: seq,
            flags: RevocationFlags::P,
            options: Options::List(&all[..1]),
        })),
        Message::BindingRevocation(BindingRevocation::Acknowledgement(BindingRevocationAck {
            status: BraStatus::Success,
            sequence: seq,
            flags: RevocationFlags::P,
            options: Options::List(&all[..1]),
        })),
        Message::UpdateNotification(UpdateNotification {
            sequence: seq,
            reason: NotificationReason::ForceReregistration,
            flags: UpnFlags::A,
            options: Options::List(&all[..1]),
        }),
        Message::UpdateNotificationAck(UpdateNotificationAck {
            sequence: seq,
            status: UpaStatus::Success,
            options: Options::List(&all[..1]),
        }),
    ] {
        emit_one(&m);
    }
}

fn pcap(frames: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend(0xa1b2_c3d4u32.to_le_bytes());
    out.extend(2u16.to_le_bytes());
    out.extend(4u16.to_le_bytes());
    out.extend([0u8; 8]);
    out.extend(65535u32.to_le_bytes());
    out.extend(packet::linktype::ETHERNET.to_le_bytes());
    for f in frames {
        out.extend([0u8; 8]);
        out.extend((f.len() as u32).to_le_bytes());
        out.extend((f.len() as u32).to_le_bytes());
        out.extend(f);
    }
    out
}

/// One frame of every kind `pmip::wire::nd` reads, as whole Ethernet frames.
fn nd_frames() -> Vec<Vec<u8>> {
    use pmip::wire::nd::*;
    let node = [2, 0, 0, 0, 1, 1];
    let mag = [2, 0, 0x5e, 0, 0x53, 1];
    let pio = |p: &str| {
        NdOption::PrefixInformation(PrefixInformation {
            prefix_len: 64,
            flags: PrefixFlags::ON_LINK | PrefixFlags::AUTONOMOUS,
            valid_lifetime: 3600,
            preferred_lifetime: 1800,
            prefix: v6(p),
        })
    };
    let ra_opts = [
        NdOption::SourceLinkLayerAddress(&mag),
        NdOption::Mtu(1460),
        pio("2001:db8:1::"),
        pio("2001:db8:2::"),
        NdOption::Unknown {
            option_type: 25,
            data: &[
                0, 0, 0, 0, 0x0e, 0x10, 0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x53,
            ],
        },
    ];
    let slla = [NdOption::SourceLinkLayerAddress(&node)];
    let tlla = [NdOption::TargetLinkLayerAddress(&mag)];
    let records = [MldRecord {
        record_type: MldRecordType::ChangeToExclude,
        group: v6("ff02::1:ff00:101"),
        sources: &[],
        aux_data: &[],
    }];
    let node_ll = v6("fe80::ff:fe00:101");
    let nd = |source, destination, message| FrameRepr {
        eth_source: EthernetAddress(node),
        eth_destination: EthernetAddress(mag),
        source,
        destination,
        hop_limit: ND_HOP_LIMIT,
        hop_by_hop: None,
        message: Icmpv6Repr::Ndisc(message),
    };
    let frames = [
        nd(
            v6("fe80::1"),
            ALL_NODES,
            NdiscRepr::RouterAdvertisement {
                cur_hop_limit: 64,
                flags: RaFlags::empty(),
                router_lifetime: 1800,
                reachable_time: 0,
                retrans_timer: 0,
                options: NdOptions::List(&ra_opts),
            },
        ),
        nd(
            node_ll,
            ALL_ROUTERS,
            NdiscRepr::RouterSolicitation {
                options: NdOptions::List(&slla),
            },
        ),
        nd(
            Ipv6Addr::UNSPECIFIED,
            ALL_ROUTERS,
            NdiscRepr::RouterSolicitation {
                options: NdOptions::EMPTY,
            },
        ),
        nd(
            Ipv6Addr::UNSPECIFIED,
            solicited_node(&node_ll),
            NdiscRepr::NeighborSolicitation {
                target: node_ll,
                options: NdOptions::EMPTY,
            },
        ),
        nd(
            v6("fe80::1"),
            node_ll,
            NdiscRepr::NeighborSolicitation {
                target: node_ll,
                options: NdOptions::List(&slla),
            },
        ),
        nd(
            node_ll,
            v6("fe80::1"),
            NdiscRepr::NeighborAdvertisement {
                flags: NaFlags::SOLICITED | NaFlags::OVERRIDE,
                target: node_ll,
                options: NdOptions::List(&tlla),
            },
        ),
        nd(
            v6("fe80::1"),
            node_ll,
            NdiscRepr::Redirect {
                target: v6("fe80::2"),
                destination: v6("2001:db8::7"),
                options: NdOptions::EMPTY,
            },
        ),
        FrameRepr {
            hop_limit: 1,
            hop_by_hop: Some(HopByHopRepr::MLD),
            message: Icmpv6Repr::Mld(MldRepr::ReportV2 {
                records: MldRecords::List(&records),
            }),
            ..nd(
                Ipv6Addr::UNSPECIFIED,
                ALL_MLDV2_ROUTERS,
                NdiscRepr::RouterSolicitation {
                    options: NdOptions::EMPTY,
                },
            )
        },
        FrameRepr {
            hop_limit: 1,
            hop_by_hop: Some(HopByHopRepr::MLD),
            message: Icmpv6Repr::Mld(MldRepr::Report {
                max_response: 0,
                group: v6("ff02::1:ff00:101"),
            }),
            ..nd(
                node_ll,
                v6("ff02::1:ff00:101"),
                NdiscRepr::RouterSolicitation {
                    options: NdOptions::EMPTY,
                },
            )
        },
    ];
    frames
        .iter()
        .map(|f| {
            let mut b = vec![0u8; f.buffer_len()];
            f.emit(&mut b).unwrap();
            b
        })
        .collect()
}

/// Seeds of the `esp` target: Mobility Headers to seal (selector 2), and the ESP packets of
/// each SA of the target, alone (selector 1) and as a stream with a replay (selector 4).
fn esp_seeds(dir: &Path, mhs: &[Vec<u8>]) {
    use ipsec::{Algorithm, SecurityAssociationDatabase, SecurityAssociationSpec, Spi};
    use pmip::config::KeyMaterial;
    std::fs::create_dir_all(dir).unwrap();
    let algs = [
        Algorithm::Aes128Gcm,
        Algorithm::Aes256Gcm,
        Algorithm::Aes128CbcHmacSha256,
        Algorithm::Aes256CbcHmacSha256,
    ];
    // The target's SAs as the peer holds them (see fuzz_targets/esp.rs).
    let specs: Vec<SecurityAssociationSpec> = algs
        .iter()
        .enumerate()
        .map(|(i, &alg)| SecurityAssociationSpec {
            peer: v6("2001:db8::1"),
            algorithm: alg,
            spi_in: Spi(0x2000 + i as u32),
            spi_out: Spi(0x1000 + i as u32),
            key_in: KeyMaterial::new(vec![i as u8 + 101; alg.key_len()]),
            key_out: KeyMaterial::new(vec![i as u8 + 1; alg.key_len()]),
            esn: i % 2 == 1,
        })
        .collect();
    for (i, mh) in mhs.iter().enumerate().take(12) {
        let mut s = vec![2, i as u8, (i * 7) as u8];
        s.extend_from_slice(mh);
        std::fs::write(dir.join(format!("seed-{i:03}-seal")), s).unwrap();
        let mut stream = vec![4];
        for (j, spec) in specs.iter().enumerate() {
            let mut tx =
                SecurityAssociationDatabase::new(std::slice::from_ref(spec), 64, false).unwrap();
            let mut wire = Vec::new();
            tx.protect(v6("2001:db8::1"), 135, mh, &mut wire).unwrap();
            let mut one = vec![1];
            one.extend_from_slice(&wire);
            std::fs::write(dir.join(format!("seed-{i:03}-sa{j}")), one).unwrap();
            if wire.len() < 256 {
                for _ in 0..2 {
                    stream.push(wire.len() as u8);
                    stream.extend_from_slice(&wire);
                }
            }
        }
        std::fs::write(dir.join(format!("seed-{i:03}-stream")), stream).unwrap();
    }
}

/// Seeds of the `store_record` target: binding records with every optional field, with none,
/// IPv4-only, with many prefixes and a long non-ASCII MN-ID, each in the binary layout and as
/// the JSON of earlier versions.
fn store_record_seeds(dir: &Path) {
    use pmip::ipv4_pool::Ipv4HomeAddress;
    use pmip::lma::BindingRecord;
    use pmip::types::LinkLayerAddress;
    std::fs::create_dir_all(dir).unwrap();
    let full = BindingRecord {
        mn_id: "mn1@example.org".into(),
        home_network_prefixes: vec![
            "2001:db8:1:1::/64".parse().unwrap(),
            "2001:db8:2::/56".parse().unwrap(),
        ],
        proxy_coa: v6("2001:db8:a::1"),
        access_technology_type: 3,
        handoff_indicator: 4,
        mn_link_layer_id: LinkLayerAddress::new(&[2, 0, 0x5e, 0, 0x53, 1]),
        link_local_address: Some(v6("fe80::1")),
        lifetime_s: 3600,
        registered_at_ms: 1_800_000_000_000,
        updated_at_ms: 1_800_000_001_000,
        expires_at_ms: 1_800_003_601_000,
        delete_at_ms: Some(1_800_000_002_000),
        last_timestamp: Some(0x6553_f100_4000),
        last_sequence: 4711,
        handover_count: 7,
        last_handover_gap_ms: Some(12),
        ipv4_home_address: Some(Ipv4HomeAddress {
            address: Ipv4Addr::new(192, 0, 2, 10),
            prefix_len: 24,
            default_router: Ipv4Addr::new(192, 0, 2, 1),
        }),
    };
    let bare = BindingRecord {
        home_network_prefixes: vec!["2001:db8:1:2::/64".parse().unwrap()],
        mn_link_layer_id: None,
        link_local_address: None,
        delete_at_ms: None,
        last_timestamp: None,
        last_handover_gap_ms: None,
        ipv4_home_address: None,
        ..full.clone()
    };
    let ipv4_only = BindingRecord {
        home_network_prefixes: vec![],
        mn_link_layer_id: LinkLayerAddress::new(&[1, 2, 3, 4, 5, 6, 7, 8]),
        ..full.clone()
    };
    let many = BindingRecord {
        mn_id: "nœud-mobile-é€𝄞@example.org".repeat(8),
        home_network_prefixes: (0..20u16)
            .map(|i| format!("2001:db8:{i:x}::/{}", 48 + i).parse().unwrap())
            .collect(),
        ..bare.clone()
    };
    for (i, r) in [full, bare, ipv4_only, many].iter().enumerate() {
        let bin = lma_cnf::record::encode(r).unwrap();
        std::fs::write(dir.join(format!("seed-{i:03}-bin")), bin).unwrap();
        let json = serde_json::to_vec(r).unwrap();
        std::fs::write(dir.join(format!("seed-{i:03}-json")), json).unwrap();
    }
}

fn main() {
    let (src, dst) = (v6("2001:db8:a::1"), v6("2001:db8:b::1"));
    let mut mhs: Vec<Vec<u8>> = Vec::new();
    messages(&mut |m| {
        let mut b = vec![0u8; m.buffer_len()];
        m.emit_with_checksum(&mut b, &src, &dst).unwrap();
        mhs.push(b);
    });
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let (mh_dir, ctl_dir) = (root.join("mh"), root.join("pmipctl_decode"));
    std::fs::create_dir_all(&mh_dir).unwrap();
    std::fs::create_dir_all(&ctl_dir).unwrap();
    let mut frames = Vec::new();
    for (i, mh) in mhs.iter().enumerate() {
        let ip6 = build_ipv6(src, dst, 64, mh);
        let mut udp_mh = mh.clone();
        udp_mh[4..6].fill(0);
        let ip4 = build_ipv4_udp(
            Ipv4Addr::new(192, 0, 2, 10),
            Ipv4Addr::new(192, 0, 2, 1),
            64,
            &udp_mh,
        );
        let mut eth = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x86, 0xdd];
        eth.extend(&ip6);
        // Selector octet of the `mh` target: 0 bare header, 2 IP packet, 3 + 4k link type k.
        let seeds: [(u8, &[u8]); 4] = [(0, mh), (2, &ip6), (2, &ip4), (3 + 4, &eth)];
        for (j, (sel, body)) in seeds.iter().enumerate() {
            let mut s = vec![*sel];
            s.extend_from_slice(body);
            std::fs::write(mh_dir.join(format!("seed-{i:03}-{j}")), s).unwrap();
        }
        std::fs::write(ctl_dir.join(format!("seed-{i:03}-mh")), mh).unwrap();
        let hex: String = mh.iter().map(|b| format!("{b:02x} ")).collect();
        std::fs::write(ctl_dir.join(format!("seed-{i:03}-hex")), hex).unwrap();
        frames.push(eth);
    }
    std::fs::write(ctl_dir.join("seed-capture.pcap"), pcap(&frames)).unwrap();
    // Selector octet of the `nd` target: 0 frame, 1 frame with its checksum made right,
    // 2 ICMPv6 message, 3 options area, 4 IPv6 packet.
    let nd_dir = root.join("nd");
    std::fs::create_dir_all(&nd_dir).unwrap();
    let nd = nd_frames();
    for (i, f) in nd.iter().enumerate() {
        let ip = &f[14..];
        // The ICMPv6 message after the IPv6 header and a Hop-by-Hop header.
        let icmp = if ip[6] == 0 { &ip[48..] } else { &ip[40..] };
        let opts_at = match icmp[0] {
            133 => 8,
            134 => 16,
            135 | 136 => 24,
            _ => icmp.len(),
        };
        let seeds: [(u8, &[u8]); 5] = [(0, f), (1, f), (2, icmp), (3, &icmp[opts_at..]), (4, ip)];
        for (j, (sel, body)) in seeds.iter().enumerate() {
            let mut s = vec![*sel];
            s.extend_from_slice(body);
            std::fs::write(nd_dir.join(format!("seed-{i:03}-{j}")), s).unwrap();
        }
    }
    esp_seeds(&root.join("esp"), &mhs);
    store_record_seeds(&root.join("store_record"));
    println!(
        "{} messages: seeds in {} and {}; {} frames in {}",
        mhs.len(),
        mh_dir.display(),
        ctl_dir.display(),
        nd.len(),
        nd_dir.display()
    );
}
