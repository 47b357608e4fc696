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
    assert_eq!(predictive.lost_packets, 0, "predictive loses nothing");
    assert_eq!(
        predictive.reordered_packets, 0,
        "predictive keeps the order"
    );
    assert!(
        reactive.lost_packets < plain.lost_packets,
        "reactive lost {} against plain {}",
        reactive.lost_packets,
        plain.lost_packets
    );
}
