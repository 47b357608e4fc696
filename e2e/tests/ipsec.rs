//! The signalling under IPsec ESP (RFC 5213 §4, RFC 5949 §7, RFC 5846 §13) in the lab, with the
//! real daemons: `ipsec.mode: auto` (on a kernel without ESP, as here, ESP runs in the
//! daemons). Needs root, `dumpcap` and `tshark`.
//!
//! 1. Attach, a plain handover, a predictive and a reactive fast handover (HI/HAck between the
//!    MAGs) and a revocation (BRI/BRA) all work, the node keeping its address and its traffic.
//! 2. The captures of the LMA's and MAG 1's transport links hold no Mobility Header in clear,
//!    only ESP; Wireshark, given the SA keys, decrypts every ESP packet to a well-formed
//!    Mobility Header with a good ICV (PBU, PBA, HI, HAck, BRI/BRA among them).
//! 3. A de-registration PBU for the node sent from its MAG's address without ESP, the same PBU
//!    in ESP with the right SPI and a wrong key, and an ESP packet of the capture sent again
//!    change no binding, and each is dropped and counted by reason in
//!    `pmip_ipsec_dropped_total`.

use std::net::Ipv6Addr;
use std::time::{Duration, Instant};

use e2e::capture::{Capture, check_signalling, esp_payloads};
use e2e::demo::{HandoverMode, hand_over};
use e2e::lab::{
    Binaries, CN_ADDRESS, LMA_ADDRESS, Lab, Spec, mag_address, metric, node_id, node_mac,
};
use e2e::traffic::ping;
use pmip::config::{FastHandoverMode, IpsecMode, KeyMaterial};
use pmip::wire::{
    AccessTechnologyType, BindingUpdate, BuFlags, HandoffIndicator, Lifetime, MN_ID_SUBTYPE_NAI,
    Message, MobilityOption, Options, SequenceNumber, Timestamp, WallClock,
};

macro_rules! say {
    ($($t:tt)*) => {{
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), "[e2e] {}", format!($($t)*));
    }};
}

fn binaries() -> Binaries {
    Binaries::fresh(
        std::path::Path::new(env!("CARGO_BIN_EXE_pmip-lab")),
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".."),
    )
}

/// The node reaches the correspondent node within `within`.
fn reaches_cn(lab: &Lab, n: usize, within: Duration) -> bool {
    let t = Instant::now();
    while t.elapsed() < within {
        if ping(
            &lab.nodes[n].ns,
            CN_ADDRESS,
            64,
            1,
            Duration::from_millis(50),
        )
        .unwrap_or(0)
            == 1
        {
            return true;
        }
    }
    false
}

/// The binding of node `n` (0-based) at the LMA: (proxy-CoA, state, prefixes).
async fn binding(lab: &Lab, n: usize) -> Option<(String, i32, Vec<String>)> {
    let id = node_id(n + 1);
    lab.bindings()
        .await
        .unwrap()
        .into_iter()
        .find(|b| b.mn_id == id)
        .map(|b| (b.proxy_coa, b.state, b.home_network_prefixes))
}

fn dropped(lab: &Lab, reason: &str) -> f64 {
    let m = lab.metrics(&lab.lma_ns).unwrap();
    metric(
        &m,
        &format!("pmip_ipsec_dropped_total{{reason=\"{reason}\"}}"),
    )
}

/// A de-registration PBU (lifetime 0) for node `n` (0-based) from MAG 2 with a fresh timestamp
/// and its checksum: what a MAG sends when the node leaves, so the LMA would take it if it
/// were processed.
fn deregistration(n: usize, hnp: &str) -> Vec<u8> {
    let id = node_id(n + 1);
    let ll = node_mac(n + 1);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let opts = [
        MobilityOption::MobileNodeIdentifier {
            subtype: MN_ID_SUBTYPE_NAI,
            id: id.as_bytes(),
        },
        MobilityOption::HomeNetworkPrefix(hnp.parse().unwrap()),
        MobilityOption::HandoffIndicator(HandoffIndicator::HandoffStateUnknown),
        MobilityOption::AccessTechnologyType(AccessTechnologyType::Ieee8023),
        MobilityOption::Timestamp(Timestamp::from_wall_clock(WallClock(now))),
        MobilityOption::MnLinkLayerIdentifier(&ll),
    ];
    let m = Message::BindingUpdate(BindingUpdate {
        sequence: SequenceNumber(4000),
        flags: BuFlags::A | BuFlags::P,
        lifetime: Lifetime::from_secs(0),
        options: Options::List(&opts),
    });
    let mut b = vec![0u8; m.buffer_len()];
    m.emit_with_checksum(&mut b, &mag_address(1), &LMA_ADDRESS)
        .unwrap();
    b
}

/// Sends `payload` as IP protocol `proto` from `src` to the LMA, from inside `ns`.
fn send_raw(ns: &datapath::netns::NetNs, src: Ipv6Addr, proto: u8, payload: Vec<u8>) {
    ns.run(move || {
        use socket2::{Domain, Protocol, Socket, Type};
        let s = Socket::new(
            Domain::IPV6,
            Type::RAW,
            Some(Protocol::from(i32::from(proto))),
        )
        .unwrap();
        s.bind(&std::net::SocketAddrV6::new(src, 0, 0, 0).into())
            .unwrap();
        s.send_to(
            &payload,
            &std::net::SocketAddrV6::new(LMA_ADDRESS, 0, 0, 0).into(),
        )
        .unwrap();
    })
    .unwrap();
}

async fn wait_for(mut cond: impl FnMut() -> bool, within: Duration) -> bool {
    let t = Instant::now();
    while t.elapsed() < within {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cond()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn esp_protects_every_exchange_and_drops_what_is_not_protected() {
    let name = format!("esp{}", std::process::id() % 100_000);
    let mut spec = Spec::new(&name, 2, 2);
    spec.fast_handover = FastHandoverMode::Predictive;
    spec.ipsec = IpsecMode::Auto;
    let mut lab = Lab::up(spec, binaries())
        .await
        .unwrap_or_else(|e| panic!("lab {name}: {e:#}"));
    let lma_log = std::fs::read_to_string(lab.log_path("lma")).unwrap();
    say!(
        "ESP at the LMA: {}",
        lma_log
            .lines()
            .find(|l| l.contains("ipsec: ESP in the"))
            .unwrap_or("(no line)")
    );
    let cap_lma = Capture::start(&lab.lma_ns, "tr0", &lab.dir.join("lma-tr0.pcap")).unwrap();
    let cap_mag = Capture::start(&lab.mag_ns[0], "tr0", &lab.dir.join("mag1-tr0.pcap")).unwrap();

    // 1. Attach, three handovers, a revocation.
    let t = Instant::now();
    lab.attach(0).await.unwrap();
    let address = lab
        .wait_node_address(0, Duration::from_secs(10))
        .await
        .unwrap();
    assert!(
        reaches_cn(&lab, 0, Duration::from_secs(5)),
        "no traffic after attach"
    );
    say!("attached in {:?} with {address}", t.elapsed());
    for (to, mode) in [
        (1, HandoverMode::Predictive),
        (0, HandoverMode::Reactive),
        (1, HandoverMode::Plain),
    ] {
        let t = Instant::now();
        hand_over(&mut lab, 0, to, mode).await.unwrap();
        let want = mag_address(to).to_string();
        assert!(
            wait_for_binding(&lab, 0, &want).await,
            "{mode:?}: the binding did not move to MAG {}",
            to + 1
        );
        assert!(
            reaches_cn(&lab, 0, Duration::from_secs(5)),
            "{mode:?}: no traffic"
        );
        assert_eq!(
            lab.node_address(0),
            Some(address),
            "{mode:?}: the address changed"
        );
        say!("{mode:?} handover to MAG{} in {:?}", to + 1, t.elapsed());
    }
    lab.attach(1).await.unwrap();
    lab.wait_node_address(1, Duration::from_secs(10))
        .await
        .unwrap();
    let out = lab
        .pmipctl(&lab.lma_ns, &["bindings", "revoke", &node_id(2)])
        .unwrap();
    assert!(out.contains("the MAG acknowledged"), "revocation: {out}");
    assert!(
        binding(&lab, 1).await.is_none(),
        "the revoked binding stays"
    );
    say!("revocation: {}", out.trim());
    // A heartbeat round trip, so that the capture holds one too.
    tokio::time::sleep(Duration::from_secs(
        u64::from(lab.spec.heartbeat_interval_s) + 1,
    ))
    .await;

    // 2. The captures.
    let sas = lab.esp_sas().unwrap();
    let lma_pcap = cap_lma.stop().unwrap();
    let mag_pcap = cap_mag.stop().unwrap();
    for (what, pcap, want) in [
        ("LMA", &lma_pcap, &[5u8, 6, 13, 16][..]),
        ("MAG 1", &mag_pcap, &[5, 6, 14, 15][..]),
    ] {
        let c = check_signalling(pcap, &sas).unwrap();
        say!(
            "{what}'s link: {} ESP packets, {} Mobility Headers in clear, decrypted types {:?}",
            c.esp_packets,
            c.cleartext_mobility_headers,
            {
                let mut t = c.decrypted_types.clone();
                t.sort();
                t.dedup();
                t
            }
        );
        assert_eq!(
            c.cleartext_mobility_headers, 0,
            "{what}: Mobility Headers in clear"
        );
        assert!(c.bad.is_empty(), "{what}: {:#?}", c.bad);
        assert!(c.protected(), "{what}: {c:?}");
        for t in want {
            assert!(
                c.decrypted_types.contains(t),
                "{what}: no MH type {t} inside ESP: {c:?}"
            );
        }
    }

    // 3. Spoofed, forged and replayed signalling.
    let before = binding(&lab, 0).await.expect("node 1 is bound");
    let hnp = before.2[0].clone();
    let mag2 = mag_address(1);
    let pbus = || {
        let m = lab.metrics(&lab.lma_ns).unwrap();
        metric(&m, "pmip_lma_pbu_received_total")
    };
    let pbus_before = pbus();

    let n = dropped(&lab, "cleartext");
    send_raw(&lab.mag_ns[1], mag2, 135, deregistration(0, &hnp));
    assert!(
        wait_for(
            || dropped(&lab, "cleartext") >= n + 1.0,
            Duration::from_secs(5)
        )
        .await,
        "the cleartext PBU was not counted"
    );

    // The right SPI (MAG 2 to the LMA), a key of the right length that is not the SA's.
    let up = sas
        .iter()
        .find(|s| s.src == mag2 && s.dst == LMA_ADDRESS)
        .unwrap()
        .clone();
    let forger = ipsec::SecurityAssociationSpec {
        peer: LMA_ADDRESS,
        algorithm: up.algorithm,
        spi_in: ipsec::Spi(up.spi ^ 0xff),
        spi_out: ipsec::Spi(up.spi),
        key_in: KeyMaterial::new(vec![0; up.key.len()]),
        key_out: KeyMaterial::new(up.key.iter().map(|b| b ^ 0x5a).collect()),
        esn: false,
    };
    let mut db = ipsec::SecurityAssociationDatabase::new(&[forger], 64, false).unwrap();
    // A sequence number far ahead of the LMA's window, so that the packet passes the replay
    // check (RFC 4303 §3.4.3 checks it first) and is refused by its ICV.
    db.restore(&ipsec::Counters {
        outbound: vec![(LMA_ADDRESS, ipsec::Spi(up.spi), 1_000_000)],
        inbound: Vec::new(),
    });
    let mut forged = Vec::new();
    db.protect(LMA_ADDRESS, 135, &deregistration(0, &hnp), &mut forged)
        .unwrap();
    let n = dropped(&lab, "integrity");
    send_raw(&lab.mag_ns[1], mag2, ipsec::IPPROTO_ESP, forged);
    assert!(
        wait_for(
            || dropped(&lab, "integrity") >= n + 1.0,
            Duration::from_secs(5)
        )
        .await,
        "the PBU with a wrong key was not counted"
    );

    // A genuine ESP packet from MAG 2 to the LMA, captured above, sent again.
    let captured = esp_payloads(&lma_pcap, mag2, LMA_ADDRESS).unwrap();
    let replayed = captured
        .last()
        .expect("an ESP packet from MAG 2 in the capture")
        .clone();
    let n = dropped(&lab, "replay");
    send_raw(&lab.mag_ns[1], mag2, ipsec::IPPROTO_ESP, replayed);
    assert!(
        wait_for(
            || dropped(&lab, "replay") >= n + 1.0,
            Duration::from_secs(5)
        )
        .await,
        "the replayed packet was not counted"
    );

    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        binding(&lab, 0).await,
        Some(before.clone()),
        "a binding changed"
    );
    assert_eq!(pbus(), pbus_before, "the LMA processed a PBU");
    assert!(
        reaches_cn(&lab, 0, Duration::from_secs(2)),
        "the node lost its traffic"
    );
    let log = std::fs::read_to_string(lab.log_path("lma")).unwrap();
    for reason in ["cleartext", "integrity", "replay"] {
        assert!(
            log.lines()
                .any(|l| l.contains("ipsec: dropped") && l.contains(reason)),
            "no log line for {reason}"
        );
    }
    say!(
        "dropped at the LMA: cleartext {}, integrity {}, replay {}; binding unchanged: {} at {}",
        dropped(&lab, "cleartext"),
        dropped(&lab, "integrity"),
        dropped(&lab, "replay"),
        node_id(1),
        before.0
    );
}

async fn wait_for_binding(lab: &Lab, n: usize, proxy_coa: &str) -> bool {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(10) {
        if binding(lab, n).await.is_some_and(|b| b.0 == proxy_coa) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// `pmip-lab demo --ipsec --capture FILE --json`: the report says the signalling was
/// protected, and FILE is a capture of the LMA's transport link in which Wireshark found ESP
/// and no Mobility Header in clear.
#[test]
fn the_demo_with_ipsec_reports_protected_signalling_and_writes_the_capture() {
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("lma.pcap");
    // Lab names have at most 8 characters.
    let name = format!("ed{}", std::process::id() % 100_000);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pmip-lab"))
        .args(["demo", "--ipsec", "--capture"])
        .arg(&pcap)
        .args(["--json", "--handovers", "2", "--interval-ms", "500"])
        .args(["--name", &name])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pmip-lab demo: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    assert_eq!(r["signalling_protected"], true, "{r:#}");
    let s = &r["signalling"];
    assert!(s["esp_packets"].as_u64().unwrap() > 0, "{s:#}");
    assert_eq!(s["cleartext_mobility_headers"], 0, "{s:#}");
    assert!(s["bad"].as_array().unwrap().is_empty(), "{s:#}");
    assert_eq!(r["tcp_survived"], true, "{r:#}");
    say!(
        "demo --ipsec: signalling_protected {}, {} ESP packets on the LMA's link, capture {} octets",
        r["signalling_protected"],
        s["esp_packets"],
        std::fs::metadata(&pcap).unwrap().len()
    );
}
