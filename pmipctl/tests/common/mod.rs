//! Helpers shared by the integration tests: running the real binary, and messages to feed it.

#![allow(dead_code)]

use std::io::Write;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::process::{Command, Output, Stdio};

use pmip::wire::*;

pub const MAG: &str = "2001:db8:a::1";
pub const LMA: &str = "2001:db8:b::1";
pub const NAI: &[u8] = b"mn1@example.org";

pub fn v6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

/// Runs `pmipctl` with `args`, feeding `stdin`.
pub fn pmipctl(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pmipctl"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run pmipctl");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// 2023-11-14T22:13:20.25Z.
pub fn timestamp() -> Timestamp {
    Timestamp((1_700_000_000u64 << 16) | 0x4000)
}

/// The options of a typical PBU: MN-ID, HNP, Handoff Indicator, ATT, Timestamp.
pub fn pbu_options() -> [MobilityOption<'static>; 5] {
    [
        MobilityOption::MobileNodeIdentifier {
            subtype: MN_ID_SUBTYPE_NAI,
            id: NAI,
        },
        MobilityOption::HomeNetworkPrefix("2001:db8:1:1::/64".parse().unwrap()),
        MobilityOption::HandoffIndicator(HandoffIndicator::HandoffBetweenMags),
        MobilityOption::AccessTechnologyType(AccessTechnologyType::Ieee80211),
        MobilityOption::Timestamp(timestamp()),
    ]
}

/// Emits `m` with the checksum for `src` -> `dst`.
pub fn emit(m: &Message<'_>, src: &str, dst: &str) -> Vec<u8> {
    let mut buf = vec![0u8; m.buffer_len()];
    m.emit_with_checksum(&mut buf, &v6(src), &v6(dst)).unwrap();
    buf
}

pub fn pbu_bytes(options: &[MobilityOption<'_>]) -> Vec<u8> {
    let m = Message::BindingUpdate(BindingUpdate {
        sequence: SequenceNumber(4711),
        flags: BuFlags::A | BuFlags::P,
        lifetime: Lifetime::from_secs(3600),
        options: Options::List(options),
    });
    emit(&m, MAG, LMA)
}

pub fn pba_rejected_bytes() -> Vec<u8> {
    let opts = [
        MobilityOption::MobileNodeIdentifier {
            subtype: MN_ID_SUBTYPE_NAI,
            id: NAI,
        },
        MobilityOption::Timestamp(timestamp()),
    ];
    let m = Message::BindingAck(BindingAck {
        status: Status::MagNotAuthorizedForProxyReg,
        flags: BaFlags::P,
        sequence: SequenceNumber(4711),
        lifetime: Lifetime::ZERO,
        options: Options::List(&opts),
    });
    emit(&m, LMA, MAG)
}

/// An IPv4-UDP-MH packet (RFC 5844 §4) carrying a PBA with an IPv4 Home Address Reply.
pub fn ipv4_udp_pba() -> Vec<u8> {
    let opts = [
        MobilityOption::MobileNodeIdentifier {
            subtype: MN_ID_SUBTYPE_NAI,
            id: NAI,
        },
        MobilityOption::HomeNetworkPrefix("2001:db8:1:1::/64".parse().unwrap()),
        MobilityOption::Ipv4HomeAddressReply {
            status: Ipv4HoaStatus::Success,
            prefix_len: 24,
            address: Ipv4Addr::new(10, 1, 2, 3),
        },
    ];
    let m = Message::BindingAck(BindingAck {
        status: Status::Accepted,
        flags: BaFlags::P,
        sequence: SequenceNumber(1),
        lifetime: Lifetime::from_secs(600),
        options: Options::List(&opts),
    });
    let mut mh = vec![0u8; m.buffer_len()];
    m.emit(&mut mh).unwrap();
    packet::build_ipv4_udp(
        Ipv4Addr::new(192, 0, 2, 1),
        Ipv4Addr::new(192, 0, 2, 10),
        64,
        &mh,
    )
}

/// A PBU whose Home Network Prefix option has length 17 (RFC 5213 §8.3 fixes 18), at byte 12.
pub fn malformed_pbu() -> Vec<u8> {
    let mut b = pbu_bytes(&[MobilityOption::HomeNetworkPrefix(
        "2001:db8:1:1::/64".parse().unwrap(),
    )]);
    assert_eq!(b[12], 22);
    b[13] = 17;
    b
}
