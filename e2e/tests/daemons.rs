//! The daemons end to end (the daemons issue's done-when): an LMA, two MAGs, a correspondent
//! node and a mobile node that runs nothing but the kernel's own SLAAC, in network namespaces,
//! with the real `pmip-lma` and `pmip-mag`. Needs root (the CI runs the tests as root).

use std::time::{Duration, Instant};

use e2e::lab::{Binaries, CN_ADDRESS, Lab, Spec, mag_address};
use e2e::traffic::{TcpFlow, ping};

fn name(tag: &str) -> String {
    format!("{tag}{}", std::process::id() % 100_000)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_attaches_reaches_the_cn_moves_and_survives_an_lma_crash() {
    let bins = Binaries::fresh(
        std::path::Path::new(env!("CARGO_BIN_EXE_pmip-lab")),
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".."),
    );
    eprintln!("daemons: {:?}", bins);
    let mut spec = Spec::new(&name("d"), 2, 1);
    spec.dir = std::env::var_os("PMIP_LAB_DIR").map(Into::into);
    let mut lab = Lab::up(spec, bins).await.expect("lab");
    let t = Instant::now();
    lab.attach(0).await.unwrap();
    let addr = lab
        .wait_node_address(0, Duration::from_secs(10))
        .await
        .unwrap();
    eprintln!("node address {addr} after {:?}", t.elapsed());
    assert!(lab.node_has_default_route(0), "default route via fe80::1");

    // `pmipctl bindings list -o json` in the LMA's namespace: the binding at MAG1.
    let at = |lab: &Lab| -> (String, Vec<String>) {
        let out = lab
            .pmipctl(&lab.lma_ns, &["bindings", "list", "-o", "json"])
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        let b = v
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["mn_id"] == "mn1@lab.example")
            .expect("mn1's binding");
        (
            b["proxy_coa"].as_str().unwrap().to_owned(),
            b["home_network_prefixes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p.as_str().unwrap().to_owned())
                .collect(),
        )
    };
    let (coa, prefixes) = at(&lab);
    assert_eq!(coa, mag_address(0).to_string());
    let prefix: ipnet::Ipv6Net = prefixes[0].parse().unwrap();
    assert!(prefix.contains(&addr), "{addr} from {prefix}");

    // Small and full-size packets, both directions, through the tunnel.
    let mn = lab.nodes[0].ns.clone();
    for size in [64, 1500] {
        assert_eq!(
            ping(&mn, CN_ADDRESS, size, 5, Duration::from_secs(3)).unwrap(),
            5,
            "MN -> CN, {size} octets"
        );
        assert_eq!(
            ping(&lab.cn, addr, size, 5, Duration::from_secs(3)).unwrap(),
            5,
            "CN -> MN, {size} octets"
        );
    }

    // Move the node to MAG2 while a TCP connection runs: same address, connection alive.
    let flow = TcpFlow::start(&mn, &lab.cn, CN_ADDRESS, 7000, 8_000_000).unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let t = Instant::now();
    lab.move_node(0, 1).await.unwrap();
    // The node keeps its address and reaches the CN through MAG2.
    let mut back = false;
    while t.elapsed() < Duration::from_secs(10) {
        if ping(&mn, CN_ADDRESS, 64, 1, Duration::from_millis(200)).unwrap() == 1 {
            back = true;
            break;
        }
    }
    assert!(back, "the node reaches the CN again after the move");
    eprintln!("reachable again {:?} after the move", t.elapsed());
    assert_eq!(lab.node_address(0), Some(addr), "same address at MAG2");
    assert_eq!(at(&lab), (mag_address(1).to_string(), prefixes.clone()));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let r = flow.finish();
    assert!(r.survived, "TCP survived the handover: {:?}", r.error);
    assert!(r.bytes > 100_000, "{} bytes", r.bytes);

    // kill -9 of the LMA: after its restart the node is served again, same prefix.
    lab.kill_lma().unwrap();
    let t = Instant::now();
    lab.start_lma().unwrap();
    let lma_ns = lab.lma_ns.clone();
    lab.wait_ready(&lma_ns, "LMA").await.unwrap();
    let mut back = false;
    while t.elapsed() < Duration::from_secs(20) {
        if ping(&mn, CN_ADDRESS, 64, 1, Duration::from_millis(200)).unwrap() == 1 {
            back = true;
            break;
        }
    }
    assert!(back, "the node reaches the CN after the LMA restarted");
    eprintln!("LMA restart: traffic back after {:?}", t.elapsed());
    assert_eq!(lab.node_address(0), Some(addr));
    assert_eq!(at(&lab), (mag_address(1).to_string(), prefixes));
}
