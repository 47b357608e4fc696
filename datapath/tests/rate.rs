//! How fast the tunnel backend under test (seg6 where the kernel has it, else tun: see
//! `common::tunnel_under_test`) programs bindings (run as root). In its own test binary so
//! that no other test's namespaces are created or torn down meanwhile: both take the kernel's
//! routing lock.

mod common;

use std::time::Instant;

use common::*;
use datapath::{Change, Datapath, Settings, Termination, Tunnel};

/// Routes programmed per second at the LMA, N = 10000 bindings: pipelined in one batch, and
/// one call per binding. Printed; the floor asserted is far below what a quiet machine does.
#[tokio::test]
async fn downlink_programming_rate() {
    const N: u32 = 10_000;
    let n = Node::new("bench").await;
    let peer = Node::new("peer").await;
    link(&n, "t0", &peer, "t0", 1500).await;
    n.addr("t0", "2001:db8::1", 64).await;
    let mut settings = Settings::resolve(&n.nl, Some("t0"), a("2001:db8::1"), None)
        .await
        .unwrap();
    let t0 = settings.transport_ifindex;
    let tunnel = tunnel_under_test(&n.nl).await;
    if tunnel == Tunnel::Tun {
        // Every peer has a device (and a slot), not only those of uplinks as with seg6.
        settings.max_peers = 64;
    }
    let dp = Datapath::open(mode(tunnel), n.nl.clone(), settings)
        .await
        .unwrap();
    if tunnel == Tunnel::Tun {
        // Its devices send from the local tunnel end.
        dp.prepare_termination(Termination {
            local: a("2001:db8::1"),
            ifindex: t0,
        })
        .await
        .unwrap();
    }
    let prefix = |i: u32, hi: u16| {
        ipnet::Ipv6Net::new(
            std::net::Ipv6Addr::new(0x2001, 0xdb8, hi, i as u16, 0, 0, 0, 0),
            64,
        )
        .unwrap()
    };
    let mag = |i: u32| std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 1, (i % 50) as u16);
    let batch: Vec<Change> = (0..N)
        .map(|i| Change::SetDownlink {
            prefix: prefix(i, 0x1000),
            peer: mag(i),
        })
        .collect();
    let t = Instant::now();
    dp.apply(&batch).await.unwrap();
    let batched = f64::from(N) / t.elapsed().as_secs_f64();

    let t = Instant::now();
    for i in 0..N {
        dp.add_downlink(prefix(i, 0x2000), mag(i)).await.unwrap();
    }
    let single = f64::from(N) / t.elapsed().as_secs_f64();

    // A handover of every binding, batched: replace, not add.
    let moved: Vec<Change> = (0..N)
        .map(|i| Change::SetDownlink {
            prefix: prefix(i, 0x1000),
            peer: mag(i + 1),
        })
        .collect();
    let t = Instant::now();
    dp.apply(&moved).await.unwrap();
    let replaced = f64::from(N) / t.elapsed().as_secs_f64();

    let t = Instant::now();
    let report = dp.cleanup().await.unwrap();
    let removed = f64::from(2 * N) / t.elapsed().as_secs_f64();
    match tunnel {
        // The routes go with the 50 MAGs' devices, which the kernel removes: the report
        // counts the devices.
        Tunnel::Tun => {
            assert_eq!(report.links.removed, 50, "{report:?}");
            let left = n.ip_output("-6 route show proto 135");
            assert_eq!(left, "", "every route went with its device");
            let links = n.ip_output("link show");
            assert!(!links.contains("pmip6t"), "{links}");
        }
        _ => assert_eq!(report.routes.removed, 2 * N as usize),
    }

    eprintln!(
        "{} downlink routes per second, N={N}: batched {batched:.0}, one call each \
         {single:.0}, batched replace {replaced:.0}; cleanup removed {removed:.0}/s",
        name(tunnel)
    );
    assert!(batched > 2_000.0, "batched {batched:.0}/s");
    assert!(single > 1_000.0, "single {single:.0}/s");
}
