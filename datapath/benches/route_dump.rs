//! How long the background reconcile of a restarted LMA takes ([`datapath::Kernel::reconcile_pending`]),
//! with N seg6 downlinks already in the kernel (run as root: it makes a network namespace).
//!
//! `cargo bench -p datapath --bench route_dump -- [N]` (default 200000).

use std::net::Ipv6Addr;
use std::time::Instant;

use datapath::netns::NetNs;
use datapath::{Change, Datapath, Mode, Netlink, Settings};

fn prefix(i: u32) -> ipnet::Ipv6Net {
    ipnet::Ipv6Net::new(
        Ipv6Addr::new(
            0x2001,
            0xdb8,
            0x1000 | (i >> 16) as u16,
            i as u16,
            0,
            0,
            0,
            0,
        ),
        64,
    )
    .unwrap()
}

fn mag(i: u32) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 1, (i % 16) as u16)
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter("datapath=info")
        .with_writer(std::io::stderr)
        .init();
    let n: u32 = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .and_then(|a| a.parse().ok())
        .unwrap_or(200_000);
    let ns = NetNs::create(&format!("dpbench-{}", std::process::id())).expect("namespace");
    let nl = Netlink::connect_in(&ns).expect("netlink");
    nl.set_link_up(1, true).await.expect("lo up");
    let settings = Settings::new(1, 1500);
    let dp = Datapath::open(Mode::Seg6, nl.clone(), settings.clone())
        .await
        .expect("open");
    let t = Instant::now();
    let changes: Vec<Change> = (0..n)
        .map(|i| Change::SetDownlink {
            prefix: prefix(i),
            peer: mag(i),
        })
        .collect();
    // seg6 routes take per-CPU memory the kernel refills in the background: a burst of a
    // million sees ENOMEM now and then, beyond what `apply` retries.
    for chunk in changes.chunks(8192) {
        let mut tries = 0;
        while let Err(e) = dp.apply(chunk).await {
            tries += 1;
            assert!(tries < 10, "apply: {e}");
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }
    let state = dp.state().await;
    eprintln!(
        "{n} seg6 routes installed in {:.2} s",
        t.elapsed().as_secs_f64()
    );

    for run in 0..3 {
        let t = Instant::now();
        let old = datapath::bench::dump_with_netlink_packet_route(&nl, settings.route_protocol)
            .await
            .expect("dump");
        let old_s = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let new = datapath::bench::dump_in_place(&nl, settings.route_protocol)
            .await
            .expect("dump");
        let new_s = t.elapsed().as_secs_f64();
        assert_eq!(old, new);
        eprintln!(
            "run {run}: dump+parse of {new} routes: netlink-packet-route {old_s:.3} s, in place {new_s:.3} s ({:.1}x)",
            old_s / new_s
        );
    }
    for run in 0..3 {
        // As a restarted LMA: open without the routes, assume the store's state, reconcile.
        let t = Instant::now();
        let restarted = Datapath::open_without_routes(Mode::Seg6, nl.clone(), settings.clone())
            .await
            .expect("open without routes");
        restarted.assume(state.clone()).await.expect("assume");
        let report = restarted.reconcile_pending().await.expect("reconcile");
        eprintln!(
            "run {run}: open, assume, reconcile_pending of {n} routes: {:.3} s ({report:?})",
            t.elapsed().as_secs_f64()
        );
        assert!(report.is_noop(), "{report:?}");
    }
    drop(dp);
    drop(ns);
}
