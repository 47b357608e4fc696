//! `pmipctl mh decode`, run as the real binary.

mod common;

use std::borrow::Cow;
use std::net::Ipv4Addr;
use std::time::Duration;

use common::*;
use pcap_file::DataLink;
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionBlock;
use pcap_file::pcapng::{PcapNgBlock, PcapNgWriter};
use pmip::wire::packet::build_ipv6;
use pmip::wire::*;
use serde_json::{Value, json};

#[test]
fn decodes_a_pbu_as_text() {
    let hexed = hex(&pbu_bytes(&pbu_options()));
    let o = pmipctl(&["mh", "decode", &hexed], b"");
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    for line in [
        "Proxy Binding Update (MH Type 5)",
        "  payload proto: 59",
        "  sequence: 4711",
        "  flags: A|P",
        "  lifetime: 900",
        "  lifetime seconds: 3600",
        "  options:",
        "    Mobile Node Identifier (type 8) at byte 12, length 16",
        "      subtype: 1 NAI",
        "      identifier: mn1@example.org",
        "    Home Network Prefix (type 22) at byte 36, length 18",
        "      prefix length: 64",
        "      home network prefix: 2001:db8:1:1::/64",
        "      handoff indicator: 3 Handoff between mobile access gateways for the same interface",
        "      access technology type: 4 IEEE 802.11a/b/g",
        "      timestamp: 2023-11-14T22:13:20.250000000Z",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing line {line:?} in\n{text}"
        );
    }
    assert!(!text.contains("warning"), "{text}");
}

#[test]
fn separators_and_stdin_are_accepted() {
    let bytes = pbu_bytes(&pbu_options());
    let spaced: Vec<String> = bytes.iter().map(|b| format!("{b:02X}")).collect();
    let want = stdout(&pmipctl(&["mh", "decode", &hex(&bytes)], b""));
    // Several arguments, upper case.
    let mut args = vec!["mh", "decode"];
    args.extend(spaced.iter().map(String::as_str));
    assert_eq!(stdout(&pmipctl(&args, b"")), want);
    // Colons, on standard input, over several lines.
    let colons = spaced.join(":");
    let stdin = format!("{}\n{}\n", &colons[..30], &colons[30..]);
    let o = pmipctl(&["mh", "decode", "-"], stdin.as_bytes());
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), want);
}

#[test]
fn json_has_stable_snake_case_keys() {
    let o = pmipctl(
        &[
            "mh",
            "decode",
            "-o",
            "json",
            &hex(&pbu_bytes(&pbu_options())),
        ],
        b"",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    let want = json!({
        "message": "Proxy Binding Update",
        "mh_type": {"value": 5, "name": "Binding Update"},
        "payload_proto": 59,
        "header_len": 9,
        "length": 80,
        "checksum": v["checksum"],
        "sequence": 4711,
        "flags": ["A", "P"],
        "lifetime": 900,
        "lifetime_seconds": 3600,
        "options": [
            {"type": {"value": 8, "name": "Mobile Node Identifier"}, "offset": 12, "length": 16,
             "subtype": {"value": 1, "name": "NAI"}, "identifier": "mn1@example.org"},
            {"type": {"value": 22, "name": "Home Network Prefix"}, "offset": 36, "length": 18,
             "prefix_length": 64, "home_network_prefix": "2001:db8:1:1::/64"},
            {"type": {"value": 23, "name": "Handoff Indicator"}, "offset": 56, "length": 2,
             "handoff_indicator": {"value": 3,
                "name": "Handoff between mobile access gateways for the same interface"}},
            {"type": {"value": 24, "name": "Access Technology Type"}, "offset": 60, "length": 2,
             "access_technology_type": {"value": 4, "name": "IEEE 802.11a/b/g"}},
            {"type": {"value": 27, "name": "Timestamp"}, "offset": 66, "length": 8,
             "timestamp": "2023-11-14T22:13:20.250000000Z", "seconds": 1_700_000_000u64,
             "fraction": 16384},
        ],
        "warnings": [],
    });
    assert_eq!(v, want, "{}", stdout(&o));
    let checksum = v["checksum"].as_str().unwrap();
    let bytes = pbu_bytes(&pbu_options());
    assert_eq!(checksum, format!("0x{:02x}{:02x}", bytes[4], bytes[5]));
}

#[test]
fn status_codes_carry_number_and_rfc_name() {
    let hexed = hex(&pba_rejected_bytes());
    let text = stdout(&pmipctl(&["mh", "decode", &hexed], b""));
    assert!(
        text.lines()
            .any(|l| l == "  status: 154 MAG_NOT_AUTHORIZED_FOR_PROXY_REG"),
        "{text}"
    );
    assert!(text.lines().any(|l| l == "  flags: P"), "{text}");
    let v: Value = serde_json::from_str(&stdout(&pmipctl(
        &["mh", "decode", &hexed, "-o", "json"],
        b"",
    )))
    .unwrap();
    assert_eq!(
        v["status"],
        json!({"value": 154, "name": "MAG_NOT_AUTHORIZED_FOR_PROXY_REG"})
    );
    assert_eq!(v["message"], "Proxy Binding Acknowledgement");
}

#[test]
fn missing_mandatory_options_are_warnings_not_failures() {
    // A PBU without Handoff Indicator and Access Technology Type (RFC 5213 §5.3.1: the LMA
    // rejects it with 161).
    let opts = pbu_options();
    let bytes = pbu_bytes(&[opts[0], opts[1], opts[4]]);
    let o = pmipctl(&["mh", "decode", &hex(&bytes)], b"");
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o)
            .lines()
            .any(|l| l
                == "  warning: at byte 12: mandatory option 23 (Handoff Indicator) is missing"),
        "{}",
        stdout(&o)
    );
    // And a repeated single-instance option.
    let dup = pbu_bytes(&[opts[0], opts[1], opts[2], opts[3], opts[2]]);
    let v: Value = serde_json::from_str(&stdout(&pmipctl(
        &["mh", "decode", "-o", "json", &hex(&dup)],
        b"",
    )))
    .unwrap();
    assert_eq!(
        v["warnings"],
        json!(["at byte 64: option 23 (Handoff Indicator) appears more than once"])
    );
}

#[test]
fn malformed_message_is_one_line_with_offset_and_exit_2() {
    let o = pmipctl(&["mh", "decode", &hex(&malformed_pbu())], b"");
    assert_eq!(o.status.code(), Some(2));
    assert!(o.stdout.is_empty());
    assert_eq!(
        stderr(&o),
        "error: at byte 13: option 22 (Home Network Prefix) has length 17, which its RFC does not allow\n"
    );
    // Header Len disagreeing with the length.
    let mut b = pbu_bytes(&pbu_options());
    b.truncate(b.len() - 8);
    let o = pmipctl(&["mh", "decode", &hex(&b)], b"");
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        stderr(&o),
        "error: at byte 1: Header Len declares 80 octets but 72 are present\n"
    );
}

#[test]
fn bad_input_and_usage_exit_2_other_errors_exit_1() {
    let o = pmipctl(&["mh", "decode", "3b01zz"], b"");
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        stderr(&o),
        "error: invalid hex digit 'z' at input position 4\n"
    );
    assert_eq!(pmipctl(&["mh", "decode"], b"").status.code(), Some(2));
    assert_eq!(
        pmipctl(&["mh", "decode", "--pcap", "x", "3b"], b"")
            .status
            .code(),
        Some(2)
    );
    assert_eq!(
        pmipctl(&["mh", "decode", "-", "3b"], b"").status.code(),
        Some(2)
    );
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pcap");
    let o = pmipctl(&["mh", "decode", "--pcap", missing.to_str().unwrap()], b"");
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).starts_with("error: cannot read "),
        "{}",
        stderr(&o)
    );
    // A file that is not a capture is malformed input.
    let junk = dir.path().join("junk.pcap");
    std::fs::write(&junk, b"not a capture at all").unwrap();
    let o = pmipctl(&["mh", "decode", "--pcap", junk.to_str().unwrap()], b"");
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(pmipctl(&["--help"], b"").status.success());
}

#[test]
fn whole_ip_packets_have_their_checksums_verified() {
    let mh = pbu_bytes(&pbu_options());
    let packet = build_ipv6(v6(MAG), v6(LMA), 64, &mh);
    let o = pmipctl(&["mh", "decode", "--ip", &hex(&packet)], b"");
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(
        text.starts_with(
            "2001:db8:a::1 -> 2001:db8:b::1 over IPv6, Mobility Header at byte 40\n\
             Proxy Binding Update (MH Type 5)\n"
        ),
        "{text}"
    );
    assert!(!text.contains("warning"), "{text}");
    // The same message from another source: the checksum is wrong, which is a warning.
    let other = build_ipv6(v6("2001:db8:a::2"), v6(LMA), 64, &mh);
    let v: Value = serde_json::from_str(&stdout(&pmipctl(
        &["mh", "decode", "--ip", "-o", "json", &hex(&other)],
        b"",
    )))
    .unwrap();
    let w = v["message"]["warnings"][0].as_str().unwrap();
    assert!(w.starts_with("at byte 4: bad checksum"), "{w}");
    assert_eq!(v["transport"], "IPv6");
    assert_eq!(v["mh_offset"], 40);
    // IPv4-UDP (RFC 5844 §4).
    let o = pmipctl(&["mh", "decode", "--ip", &hex(&ipv4_udp_pba())], b"");
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(
        text.starts_with(
            "192.0.2.1 -> 192.0.2.10 over IPv4-UDP (UDP 5436 -> 5436), Mobility Header at byte 28\n"
        ),
        "{text}"
    );
    assert!(text.contains("      status: 0 Success\n"), "{text}");
    assert!(
        text.contains("      ipv4 home address: 10.1.2.3\n"),
        "{text}"
    );
    // A malformed Mobility Header names its offset in the packet too.
    let bad = build_ipv6(v6(MAG), v6(LMA), 64, &malformed_pbu());
    let o = pmipctl(&["mh", "decode", "--ip", &hex(&bad)], b"");
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        stderr(&o),
        "error: at byte 13 (packet byte 53): option 22 (Home Network Prefix) has length 17, \
         which its RFC does not allow\n"
    );
}

// ---------------------------------------------------------------------------------------------
// Captures.

fn ethernet(ip: &[u8]) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2];
    f.extend(if ip[0] >> 4 == 6 {
        [0x86, 0xdd]
    } else {
        [0x08, 0x00]
    });
    f.extend(ip);
    f
}

fn sll2(ip: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend(if ip[0] >> 4 == 6 {
        [0x86, 0xdd]
    } else {
        [0x08, 0x00]
    });
    f.extend([0, 0, 0, 0, 0, 2, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0]);
    f.extend(ip);
    f
}

fn sll(ip: &[u8]) -> Vec<u8> {
    let mut f = vec![0, 0, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0];
    f.extend(if ip[0] >> 4 == 6 {
        [0x86, 0xdd]
    } else {
        [0x08, 0x00]
    });
    f.extend(ip);
    f
}

fn null(ip: &[u8]) -> Vec<u8> {
    // BSD loopback: the address family in host byte order (AF_INET6 is 24, 28 or 30).
    let mut f = if ip[0] >> 4 == 6 { 30u32 } else { 2 }
        .to_le_bytes()
        .to_vec();
    f.extend(ip);
    f
}

/// A UDP packet to port 53: not a Mobility Header, to be skipped.
fn not_mobility() -> Vec<u8> {
    let mut p = packet::build_ipv4_udp(
        Ipv4Addr::new(192, 0, 2, 1),
        Ipv4Addr::new(192, 0, 2, 2),
        64,
        &[0u8; 8],
    );
    p[22..24].copy_from_slice(&53u16.to_be_bytes());
    p[20..22].copy_from_slice(&53u16.to_be_bytes());
    p
}

fn write_pcap(path: &std::path::Path, link: DataLink, frames: &[Vec<u8>]) {
    let header = PcapHeader {
        datalink: link,
        ..PcapHeader::default()
    };
    let mut w = PcapWriter::with_header(std::fs::File::create(path).unwrap(), header).unwrap();
    for (i, f) in frames.iter().enumerate() {
        w.write_packet(&PcapPacket::new(
            Duration::from_secs(1_700_000_000 + i as u64),
            f.len() as u32,
            f,
        ))
        .unwrap();
    }
}

#[test]
fn pcap_with_ethernet_frames() {
    let pbu = build_ipv6(v6(MAG), v6(LMA), 64, &pbu_bytes(&pbu_options()));
    let pba = build_ipv6(v6(LMA), v6(MAG), 64, &pba_rejected_bytes());
    let frames = [
        ethernet(&not_mobility()),
        ethernet(&pbu),
        ethernet(&ipv4_udp_pba()),
        ethernet(&pba),
    ];
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("eth.pcap");
    write_pcap(&path, DataLink::ETHERNET, &frames);
    let p = path.to_str().unwrap();

    let o = pmipctl(&["mh", "decode", "--pcap", p], b"");
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    let headings: Vec<&str> = text.lines().filter(|l| l.starts_with("frame ")).collect();
    assert_eq!(
        headings,
        [
            "frame 2: 2001:db8:a::1 -> 2001:db8:b::1 over IPv6, Mobility Header at byte 40",
            "frame 3: 192.0.2.1 -> 192.0.2.10 over IPv4-UDP (UDP 5436 -> 5436), Mobility Header at byte 28",
            "frame 4: 2001:db8:b::1 -> 2001:db8:a::1 over IPv6, Mobility Header at byte 40",
        ],
        "{text}"
    );
    assert!(text.contains("  status: 154 MAG_NOT_AUTHORIZED_FOR_PROXY_REG\n"));
    assert!(
        text.ends_with("3 Mobility Header messages in 4 frames\n"),
        "{text}"
    );

    let v: Value = serde_json::from_str(&stdout(&pmipctl(
        &["mh", "decode", "--pcap", p, "-o", "json"],
        b"",
    )))
    .unwrap();
    let list = v.as_array().unwrap();
    assert_eq!(list.len(), 3);
    assert_eq!(list[0]["frame"], 2);
    assert_eq!(list[0]["message"]["sequence"], 4711);
    assert_eq!(list[1]["transport"], "IPv4-UDP");
    assert_eq!(list[1]["udp_checksum_ok"], true);
    assert_eq!(list[1]["message"]["warnings"], json!([]));
    assert_eq!(
        list[2]["message"]["status"],
        json!({"value": 154, "name": "MAG_NOT_AUTHORIZED_FOR_PROXY_REG"})
    );

    // The capture on standard input.
    let o = pmipctl(
        &["mh", "decode", "--pcap", "-"],
        &std::fs::read(&path).unwrap(),
    );
    assert!(o.status.success());
    assert_eq!(stdout(&o), text);
}

#[test]
fn pcap_with_every_link_type() {
    let pbu = build_ipv6(v6(MAG), v6(LMA), 64, &pbu_bytes(&pbu_options()));
    let dir = tempfile::tempdir().unwrap();
    for (link, frame, at) in [
        (DataLink::RAW, pbu.clone(), 40),
        (DataLink::IPV6, pbu.clone(), 40),
        (DataLink::LINUX_SLL, sll(&pbu), 56),
        (DataLink::LINUX_SLL2, sll2(&pbu), 60),
        (DataLink::NULL, null(&pbu), 44),
        (DataLink::ETHERNET, ethernet(&pbu), 54),
    ] {
        let path = dir.path().join("one.pcap");
        write_pcap(&path, link, &[frame]);
        let v: Value = serde_json::from_str(&stdout(&pmipctl(
            &[
                "mh",
                "decode",
                "-o",
                "json",
                "--pcap",
                path.to_str().unwrap(),
            ],
            b"",
        )))
        .unwrap();
        assert_eq!(v[0]["message"]["sequence"], 4711, "{link:?}");
        // mh_offset is in the IP packet; the frame offset of an error adds the link header.
        assert_eq!(v[0]["mh_offset"], 40, "{link:?}");
        let bad = build_ipv6(v6(MAG), v6(LMA), 64, &malformed_pbu());
        let framed = match link {
            DataLink::LINUX_SLL => sll(&bad),
            DataLink::LINUX_SLL2 => sll2(&bad),
            DataLink::NULL => null(&bad),
            DataLink::ETHERNET => ethernet(&bad),
            _ => bad,
        };
        write_pcap(&path, link, &[framed]);
        let v: Value = serde_json::from_str(&stdout(&pmipctl(
            &[
                "mh",
                "decode",
                "-o",
                "json",
                "--pcap",
                path.to_str().unwrap(),
            ],
            b"",
        )))
        .unwrap();
        assert_eq!(v[0]["error"]["offset"], 13, "{link:?}");
        assert_eq!(v[0]["error"]["frame_offset"], at + 13, "{link:?}");
    }
}

#[test]
fn pcapng_with_two_interfaces_and_a_malformed_message() {
    let pbu = build_ipv6(v6(MAG), v6(LMA), 64, &pbu_bytes(&pbu_options()));
    let bad = build_ipv6(v6(MAG), v6(LMA), 64, &malformed_pbu());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("two.pcapng");
    let mut w = PcapNgWriter::new(std::fs::File::create(&path).unwrap()).unwrap();
    for link in [DataLink::ETHERNET, DataLink::RAW] {
        w.write_block(&InterfaceDescriptionBlock::new(link, 0).into_block())
            .unwrap();
    }
    for (iface, data) in [(0u32, ethernet(&pbu)), (1, bad.clone()), (1, pbu.clone())] {
        let epb = EnhancedPacketBlock {
            interface_id: iface,
            timestamp: Duration::from_secs(1_700_000_000),
            original_len: data.len() as u32,
            data: Cow::Owned(data),
            options: vec![],
        };
        w.write_block(&epb.into_block()).unwrap();
    }
    drop(w);
    let p = path.to_str().unwrap();
    let o = pmipctl(&["mh", "decode", "--pcap", p], b"");
    assert_eq!(o.status.code(), Some(2));
    let text = stdout(&o);
    assert!(
        text.contains(
            "frame 2: 2001:db8:a::1 -> 2001:db8:b::1 over IPv6, Mobility Header at byte 40\n\
             error: at byte 13 (frame byte 53): option 22 (Home Network Prefix) has length 17, \
             which its RFC does not allow\n"
        ),
        "{text}"
    );
    assert!(text.contains("frame 3: "), "{text}");
    assert!(
        text.ends_with("3 Mobility Header messages in 3 frames, 1 malformed\n"),
        "{text}"
    );
    assert_eq!(
        stderr(&o),
        format!("error: {p}: 1 malformed Mobility Header message\n")
    );
    let v: Value = serde_json::from_str(&stdout(&pmipctl(
        &["mh", "decode", "--pcap", p, "-o", "json"],
        b"",
    )))
    .unwrap();
    assert_eq!(v[0]["message"]["sequence"], 4711);
    assert_eq!(
        v[1]["error"],
        json!({"offset": 13, "frame_offset": 53,
               "description": "option 22 (Home Network Prefix) has length 17, which its RFC does not allow"})
    );
    assert!(v[1].get("message").is_none());
    assert_eq!(v[2]["frame"], 3);
}

#[test]
fn every_message_kind_decodes() {
    // One of each kind the wire module emits, decoded without error or warning.
    let mn = [MobilityOption::MobileNodeIdentifier {
        subtype: MN_ID_SUBTYPE_NAI,
        id: NAI,
    }];
    let mut cr = [0u8; 2];
    let ctx = ContextRequest::encode_types(&[OptionType::HomeNetworkPrefix], &mut cr).unwrap();
    let hi_opts = [
        mn[0],
        MobilityOption::ContextRequest(ctx),
        MobilityOption::LmaAddress(LmaAddress::V6(v6(LMA))),
        MobilityOption::MnLinkLocalInterfaceId([2, 0, 0x5e, 0xff, 0xfe, 0, 0x53, 1]),
    ];
    let rc = [MobilityOption::RestartCounter(3)];
    let messages = [
        (
            Message::BindingError(BindingError {
                status: BindingErrorStatus::UnrecognizedMhType,
                home_address: v6("2001:db8:1:1::99"),
                options: Options::EMPTY,
            }),
            "Binding Error (MH Type 7)\n",
            "  status: 2 Unrecognized MH Type value\n",
        ),
        (
            Message::Heartbeat(Heartbeat {
                flags: HeartbeatFlags::R,
                sequence: 9,
                options: Options::List(&rc),
            }),
            "Heartbeat Response (MH Type 13)\n",
            "      restart counter: 3\n",
        ),
        (
            Message::HandoverInitiate(HandoverInitiate {
                sequence: SequenceNumber(77),
                flags: HiFlags::P | HiFlags::F,
                code: HiCode::Default,
                options: Options::List(&hi_opts),
            }),
            "Handover Initiate (MH Type 14)\n",
            "      interface identifier: ::200:5eff:fe00:5301\n",
        ),
        (
            Message::HandoverAck(HandoverAck {
                sequence: SequenceNumber(77),
                flags: HackFlags::P,
                code: HackCode::ContextTransferAccepted,
                options: Options::List(&mn),
            }),
            "Handover Acknowledge (MH Type 15)\n",
            "  code: 5 Context Transfer Accepted or Successful\n",
        ),
        (
            Message::BindingRevocation(BindingRevocation::Indication(
                BindingRevocationIndication {
                    trigger: RevocationTrigger::AdministrativeReason,
                    sequence: SequenceNumber(3),
                    flags: RevocationFlags::P,
                    options: Options::List(&mn),
                },
            )),
            "Binding Revocation Indication (MH Type 16)\n",
            "  revocation trigger: 1 Administrative Reason\n",
        ),
        (
            Message::BindingRevocation(BindingRevocation::Acknowledgement(BindingRevocationAck {
                status: BraStatus::RevocationFailedMnIsAttached,
                sequence: SequenceNumber(3),
                flags: RevocationFlags::P,
                options: Options::List(&mn),
            })),
            "Binding Revocation Acknowledgement (MH Type 16)\n",
            "  status: 132 Revocation Failed - MN is Attached\n",
        ),
        (
            Message::UpdateNotification(UpdateNotification {
                sequence: SequenceNumber(5),
                reason: NotificationReason::ForceReregistration,
                flags: UpnFlags::A,
                options: Options::List(&mn),
            }),
            "Update Notification (MH Type 19)\n",
            "  notification reason: 1 FORCE-REREGISTRATION\n",
        ),
        (
            Message::UpdateNotificationAck(UpdateNotificationAck {
                sequence: SequenceNumber(5),
                status: UpaStatus::Success,
                options: Options::List(&mn),
            }),
            "Update Notification Acknowledgement (MH Type 20)\n",
            "  status: 0 SUCCESS\n",
        ),
    ];
    for (m, title, line) in messages {
        let o = pmipctl(&["mh", "decode", &hex(&emit(&m, MAG, LMA))], b"");
        assert!(o.status.success(), "{title}: {}", stderr(&o));
        let text = stdout(&o);
        assert!(text.starts_with(title), "{text}");
        assert!(text.contains(line), "{line:?} in\n{text}");
        assert!(!text.contains("warning"), "{text}");
    }
}

/// Runs `pmipctl` with its standard output closed before it writes anything, as
/// `pmipctl ... | head` leaves it once `head` has had enough.
fn into_closed_pipe(args: &[&str]) -> std::process::Output {
    use std::process::{Command, Stdio};
    let (reader, writer) = std::io::pipe().unwrap();
    // No reader from the start: the first write fails with EPIPE.
    drop(reader);
    Command::new(env!("CARGO_BIN_EXE_pmipctl"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(writer))
        .stderr(Stdio::piped())
        .output()
        .unwrap()
}

#[test]
fn a_closed_pipe_ends_quietly() {
    let pbu = hex(&pbu_bytes(&pbu_options()));
    for args in [
        vec!["mh", "decode", pbu.as_str()],
        vec!["mh", "decode", "-o", "json", pbu.as_str()],
        vec!["mh", "decode", "-o", "yaml", pbu.as_str()],
        vec!["completion", "bash"],
    ] {
        let o = into_closed_pipe(&args);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", stderr(&o));
        assert_eq!(stderr(&o), "", "{args:?}");
    }
}

#[test]
fn completion_scripts_for_bash_zsh_and_fish() {
    for (shell, mark) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef pmipctl"),
        ("fish", "complete -c pmipctl"),
    ] {
        let o = pmipctl(&["completion", shell], b"");
        assert!(o.status.success(), "{shell}: {}", stderr(&o));
        let script = stdout(&o);
        assert!(script.contains(mark), "{shell}: no {mark:?}");
        // Every command group and the global options are offered.
        for word in ["bindings", "policy", "mags", "no-headers", "wide"] {
            assert!(script.contains(word), "{shell}: no {word}");
        }
    }
    // The bash script is valid bash.
    let o = pmipctl(&["completion", "bash"], b"");
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("pmipctl.bash");
    std::fs::write(&f, &o.stdout).unwrap();
    if let Ok(check) = std::process::Command::new("bash")
        .arg("-n")
        .arg(&f)
        .output()
    {
        assert!(
            check.status.success(),
            "{}",
            String::from_utf8_lossy(&check.stderr)
        );
    }
    let o = pmipctl(&["completion", "tcsh"], b"");
    assert_eq!(o.status.code(), Some(2));
}
