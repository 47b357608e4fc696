//! PFMIPv6 (RFC 5949) in the lab: a 1000 packet/s downlink UDP stream with sequence numbers
//! runs to a node while it is handed over 20 times in each mode, plain RFC 5213, predictive
//! and reactive; the three are printed side by side. Needs root.

use std::io::Write;
use std::time::Duration;

use e2e::demo::{self, DemoSpec, HandoverMode, ModeSummary};
use e2e::lab::Binaries;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_handovers_in_each_mode_side_by_side() {
    let bins = Binaries::fresh(
        std::path::Path::new(env!("CARGO_BIN_EXE_pmip-lab")),
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".."),
    );
    let spec = DemoSpec {
        handovers: 20,
        interval: Duration::from_millis(800),
        probe_rate_pps: 1000,
        tcp_rate_bps: 2_000_000,
        ..DemoSpec::default()
    };
    let modes = [
        HandoverMode::Plain,
        HandoverMode::Predictive,
        HandoverMode::Reactive,
    ];
    let name = format!("fh{}", std::process::id() % 100_000);
    let reports = demo::compare(&name, &modes, &spec, &bins)
        .await
        .expect("three labs");
    let rows: Vec<ModeSummary> = reports.iter().map(ModeSummary::of).collect();
    let _ = write!(
        std::io::stderr(),
        "[e2e] {}",
        demo::side_by_side(&rows, spec.probe_rate_pps)
    );
    let [plain, predictive, reactive] = &rows[..] else {
        panic!("three modes");
    };
    for r in &rows {
        assert_eq!(r.handovers, 20, "{:?}", r.mode);
        assert!(r.tcp_survived, "{:?}: TCP broke", r.mode);
        assert!(r.address_unchanged, "{:?}: the address changed", r.mode);
        assert_eq!(r.duplicated_packets, 0, "{:?}", r.mode);
    }
    // Plain handovers lose what arrives while the node is between MAGs: the test measures
    // something.
    assert!(
        plain.lost_packets >= 20,
        "plain lost {}",
        plain.lost_packets
    );
    if e2e::lab::kernel_tunnels(None).await.unwrap() {
        assert_eq!(predictive.lost_packets, 0, "predictive loses nothing");
        assert_eq!(
            predictive.reordered_packets, 0,
            "predictive keeps the order"
        );
    } else {
        // The userspace tunnel: each hop through a daemon costs a thread's wake-up, so the
        // packets the LMA sent through the previous MAG just before it turned to the new one
        // arrive after its first direct ones; the new MAG holds those until the LMA's end
        // marker comes through the previous MAG (`datapath::marker`), at most
        // `end_marker_wait_ms` (20 ms), which a busy machine can exceed. Bounded, not zero:
        // at most 5 ms of the stream per handover, where a plain handover loses tens.
        let slack = 5 * predictive.handovers as u64;
        assert!(
            predictive.lost_packets + predictive.reordered_packets <= slack,
            "predictive with the userspace tunnel lost {} and reordered {} (at most {slack})",
            predictive.lost_packets,
            predictive.reordered_packets
        );
        let _ = writeln!(
            std::io::stderr(),
            "[e2e] predictive: {} lost, {} reordered with the userspace tunnel; 0 and 0 are \
             asserted with the kernel's seg6 or ip6tnl, not run on this kernel",
            predictive.lost_packets,
            predictive.reordered_packets
        );
    }
    assert!(
        reactive.lost_packets < plain.lost_packets,
        "reactive lost {} against plain {}",
        reactive.lost_packets,
        plain.lost_packets
    );
}

/// Issue 13 item 14, "a node lost its prefix", as it was seen with three MAGs and five
/// nodes: node 1's predictive handover MAG1 -> MAG2 fails because MAG2 never sees the node
/// (its end of the link stays down), so MAG1 gives up ("did not complete in time"),
/// de-registers it and the LMA deletes the entry after MinDelayBeforeBCEDelete. Then a
/// reactive handover to MAG3 and a plain one back to MAG1: the node gets the prefix and the
/// address it had every time, and no other node gets its prefix meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_predictive_handover_keeps_the_prefix_through_reactive_and_plain_ones() {
    use e2e::lab::{Lab, Spec};
    let bins = Binaries::fresh(
        std::path::Path::new(env!("CARGO_BIN_EXE_pmip-lab")),
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".."),
    );
    let mut spec = Spec::new(&format!("fp{}", std::process::id() % 100_000), 3, 5);
    spec.fast_handover = pmip::config::FastHandoverMode::Predictive;
    let mut lab = Lab::up(spec, bins).await.expect("lab");
    for n in 0..5 {
        lab.attach(n).await.unwrap();
    }
    let mut addrs = Vec::new();
    for n in 0..5 {
        addrs.push(
            lab.wait_node_address(n, Duration::from_secs(10))
                .await
                .unwrap(),
        );
    }
    let ids: Vec<String> = lab.nodes.iter().map(|n| n.mn_id.clone()).collect();
    let prefix_of = |bs: &[proto::v1::Binding], n: usize| -> Option<String> {
        bs.iter()
            .find(|b| b.mn_id == ids[n])
            .and_then(|b| b.home_network_prefixes.first().cloned())
    };
    let before = lab.bindings().await.unwrap();
    let p1 = prefix_of(&before, 0).expect("node 1's prefix");
    // Predictive MAG1 -> MAG2, and the node's end of its new link stays down.
    lab.handover_indication(0, 0, "ap2", "").await.unwrap();
    node_link(&lab, false).await;
    lab.move_node(0, 1).await.unwrap();
    // The handover times out (5 s), MAG1 de-registers, the LMA deletes the entry 10 s later.
    let t = std::time::Instant::now();
    loop {
        let bs = lab.bindings().await.unwrap();
        if prefix_of(&bs, 0).is_none() {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(25),
            "node 1's binding never went"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mag1_log = std::fs::read_to_string(lab.log_path("mag1")).unwrap_or_default();
    assert!(
        mag1_log.contains("did not complete in time"),
        "MAG1 gave the handover up"
    );
    // Reactive MAG2 -> MAG3, the node's link up again there.
    lab.handover_indication(2, 0, "", "ap2").await.unwrap();
    lab.move_node(0, 2).await.unwrap();
    node_link(&lab, true).await;
    let a = lab
        .wait_node_address(0, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(a, addrs[0], "the address after the reactive handover");
    let bs = lab.bindings().await.unwrap();
    assert_eq!(prefix_of(&bs, 0).as_deref(), Some(p1.as_str()));
    // Plain MAG3 -> MAG1.
    lab.move_node(0, 0).await.unwrap();
    let t = std::time::Instant::now();
    loop {
        let bs = lab.bindings().await.unwrap();
        let at_mag1 = bs
            .iter()
            .any(|b| b.mn_id == ids[0] && b.proxy_coa == e2e::lab::mag_address(0).to_string());
        if at_mag1 {
            assert_eq!(prefix_of(&bs, 0).as_deref(), Some(p1.as_str()));
            for n in 1..5 {
                assert_eq!(prefix_of(&bs, n), prefix_of(&before, n), "node {}", n + 1);
            }
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "node 1 not at MAG1");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(lab.node_address(0), Some(addrs[0]));
}

/// Sets node 1's end of its access link up or down.
async fn node_link(lab: &e2e::lab::Lab, up: bool) {
    let nl = lab.nl(&lab.nodes[0].ns).unwrap();
    let e = nl.link_index("eth0").await.unwrap();
    nl.set_link_up(e, up).await.unwrap();
}
