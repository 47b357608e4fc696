//! The LMA's restart at scale, without the kernel: the store of N bindings read and the
//! binding cache restored from it, the way `pmip-lma` starts (`Service::load`: records
//! restored as a thread reads them), against the whole store read into a list first and the
//! cache restored after (`Store::load`, then `Service::new`), then the routes the datapath is
//! given (`Service::desired`). Same store, same run.
//!
//! `cargo bench -p lma-cnf --bench restart [-- BINDINGS]` (default 1,000,000).

use std::time::{Duration, Instant};

use lma_cnf::service::{Service, Start};
use lma_cnf::store::{Batch, Store};
use pmip::config::{Ipv4Pool, LmaConfig, PrefixPool};
use pmip::wire::WallClock;

mod common;
use common::binding;

fn config() -> LmaConfig {
    let mut c: LmaConfig =
        serde_json::from_str(r#"{"address": "2001:db8:ffff::ffff", "prefix_pools": []}"#).unwrap();
    c.prefix_pools = vec![PrefixPool {
        prefix: "2001:db8::/32".parse().unwrap(),
        prefix_length: 64,
    }];
    c.ipv4_pools = vec![Ipv4Pool {
        prefix: "10.0.0.0/8".parse().unwrap(),
        default_router: None,
    }];
    c.domain.heartbeat.interval_s = 0;
    c
}

fn start() -> Start {
    Start {
        config: config(),
        restart_counter: 1,
        epoch: 2,
        seed: 7,
    }
}

fn main() {
    let n: u32 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    for from in (0..n).step_by(100_000) {
        let mut b = Batch::default();
        for i in from..n.min(from + 100_000) {
            b.put_binding(binding(i));
        }
        store.commit(&b).unwrap();
    }
    let now = pmip::Instant::from_duration(Duration::from_secs(1));
    let wall = WallClock(Duration::from_secs(1_800_000_100));

    let t = Instant::now();
    let loaded = store.load().unwrap();
    let list_read = t.elapsed();
    let t = Instant::now();
    let s = Service::new(start(), &loaded.snapshot, now, wall).unwrap();
    let list_restore = t.elapsed();
    assert_eq!(s.lma().cache().len(), n as usize);
    drop((s, loaded));

    let t = Instant::now();
    let (s, loading) = Service::load(start(), &store, now, wall).unwrap();
    let streamed = t.elapsed();
    assert_eq!(loading.restored, n as usize);
    let t = Instant::now();
    let desired = s.desired(1);
    let desired_s = t.elapsed().as_secs_f64();
    assert_eq!(desired.routes.len(), n as usize);

    println!("restart: {n} bindings, store read and binding cache restored");
    println!(
        "  list first (Store::load + Service::new)   {:.3} s = read {:.3} s + restore {:.3} s",
        (list_read + list_restore).as_secs_f64(),
        list_read.as_secs_f64(),
        list_restore.as_secs_f64()
    );
    println!(
        "  streamed (Service::load)                  {:.3} s, {:.3} s of it waiting for the store",
        streamed.as_secs_f64(),
        loading.store_wait.as_secs_f64()
    );
    println!(
        "  desired routes (Service::desired)         {desired_s:.3} s; streamed is {:.2}x the list's time, same run",
        streamed.as_secs_f64() / (list_read + list_restore).as_secs_f64()
    );
}
