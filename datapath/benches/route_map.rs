//! The datapath's route map ([`datapath::PrefixRoutes`]) against the `BTreeMap` it replaced, at
//! N routes (one per binding at an LMA): live heap bytes per route (a counting allocator,
//! measured, not estimated) and nanoseconds per operation, for IPv6 /64 home network prefixes
//! and IPv4 /32 home addresses (RFC 5844), added in allocation order as an LMA adds them.
//! Same run, same machine: compare the ratios.
//!
//! `cargo bench -p datapath --bench route_map` (ROUTES=N to change the count, default 1000000)

use std::collections::BTreeMap;
use std::hint::black_box;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Instant;

use datapath::{Prefix, PrefixRoute, PrefixRoutes};
use ipnet::{Ipv4Net, Ipv6Net};

/// The operations both maps are timed on.
trait Map<P>: Default {
    fn insert(&mut self, p: P, r: PrefixRoute);
    fn get(&self, p: &P) -> Option<PrefixRoute>;
    fn remove(&mut self, p: &P) -> Option<PrefixRoute>;
    fn sum(&self) -> usize;
}

impl<P: Ord + Copy> Map<P> for BTreeMap<P, PrefixRoute> {
    fn insert(&mut self, p: P, r: PrefixRoute) {
        BTreeMap::insert(self, p, r);
    }
    fn get(&self, p: &P) -> Option<PrefixRoute> {
        BTreeMap::get(self, p).copied()
    }
    fn remove(&mut self, p: &P) -> Option<PrefixRoute> {
        BTreeMap::remove(self, p)
    }
    fn sum(&self) -> usize {
        self.values()
            .filter(|r| matches!(r, PrefixRoute::Tunnel { .. }))
            .count()
    }
}

impl<P: Prefix> Map<P> for PrefixRoutes<P> {
    fn insert(&mut self, p: P, r: PrefixRoute) {
        PrefixRoutes::insert(self, p, r);
    }
    fn get(&self, p: &P) -> Option<PrefixRoute> {
        PrefixRoutes::get(self, p)
    }
    fn remove(&mut self, p: &P) -> Option<PrefixRoute> {
        PrefixRoutes::remove(self, p)
    }
    fn sum(&self) -> usize {
        self.values()
            .filter(|r| matches!(r, PrefixRoute::Tunnel { .. }))
            .count()
    }
}

fn mag(i: usize) -> PrefixRoute {
    PrefixRoute::Tunnel {
        peer: Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 1, (i % 16) as u16),
    }
}

fn hnp(i: usize) -> Ipv6Net {
    Ipv6Net::new(
        Ipv6Addr::from((0x2001_0db8_u128 << 96) | ((i as u128) << 64)),
        64,
    )
    .unwrap()
}

fn hoa(i: usize) -> Ipv4Net {
    Ipv4Net::new(Ipv4Addr::from(0x0a00_0000 + i as u32), 32).unwrap()
}

fn ns(start: Instant, n: usize) -> f64 {
    start.elapsed().as_nanos() as f64 / n as f64
}

/// One map's row: bytes per route, then ns per insert (in order), lookup, handover (replace
/// with another MAG), iteration step, and removal of every tenth route.
fn row<P: Copy, M: Map<P>>(n: usize, prefix: impl Fn(usize) -> P) -> [f64; 6] {
    let mut m = None;
    let start = Instant::now();
    let info = allocation_counter::measure(|| {
        let mut map = M::default();
        for i in 0..n {
            map.insert(prefix(i), mag(i));
        }
        m = Some(map);
    });
    let insert = ns(start, n);
    let mut m = m.expect("built");
    let bytes = info.bytes_current as f64 / n as f64;
    // A fixed stride through the keys: not the order they were added in.
    let stride = |k: usize| (k * 7919) % n;
    let start = Instant::now();
    let found = (0..n)
        .filter(|&k| m.get(&prefix(stride(k))).is_some())
        .count();
    let get = ns(start, n);
    assert_eq!(found, n);
    let start = Instant::now();
    for k in 0..n {
        m.insert(prefix(stride(k)), mag(k + 1));
    }
    let replace = ns(start, n);
    let start = Instant::now();
    assert_eq!(black_box(m.sum()), n);
    let iterate = ns(start, n);
    let start = Instant::now();
    for k in (0..n).step_by(10) {
        assert!(m.remove(&prefix(stride(k))).is_some());
    }
    let remove = ns(start, n.div_ceil(10));
    [bytes, insert, get, replace, iterate, remove]
}

fn print(name: &str, r: [f64; 6]) {
    println!(
        "  {name:<34} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1}",
        r[0], r[1], r[2], r[3], r[4], r[5]
    );
}

fn main() {
    // `cargo bench` passes --bench; nothing else is read.
    let n: usize = std::env::var("ROUTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    println!("route_map: {n} routes to 16 MAGs, added in prefix order");
    println!(
        "  {:<34} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "map", "B/route", "insert", "get", "replace", "iterate", "remove"
    );
    let v6_tree = row::<_, BTreeMap<Ipv6Net, PrefixRoute>>(n, hnp);
    let v6 = row::<_, PrefixRoutes<Ipv6Net>>(n, hnp);
    let v4_tree = row::<_, BTreeMap<Ipv4Net, PrefixRoute>>(n, hoa);
    let v4 = row::<_, PrefixRoutes<Ipv4Net>>(n, hoa);
    print("BTreeMap<Ipv6Net, PrefixRoute> /64", v6_tree);
    print("PrefixRoutes<Ipv6Net> /64", v6);
    print("BTreeMap<Ipv4Net, PrefixRoute> /32", v4_tree);
    print("PrefixRoutes<Ipv4Net> /32", v4);
    println!("  (bytes: live heap per route; the rest: ns per operation)");
    // A restarted LMA builds its map at once from the restored bindings (`collect`).
    for (order, stride) in [("in order", 1), ("out of order", 7919)] {
        let routes: Vec<(Ipv6Net, PrefixRoute)> =
            (0..n).map(|k| (hnp((k * stride) % n), mag(k))).collect();
        let start = Instant::now();
        let tree: BTreeMap<_, _> = routes.iter().copied().collect();
        let tree_ms = start.elapsed().as_secs_f64() * 1e3;
        let start = Instant::now();
        let compact: PrefixRoutes = routes.iter().copied().collect();
        let compact_ms = start.elapsed().as_secs_f64() * 1e3;
        assert_eq!(tree.len(), compact.len());
        println!(
            "  collect {n} IPv6 routes {order}: BTreeMap {tree_ms:.1} ms, PrefixRoutes {compact_ms:.1} ms"
        );
    }
    for (family, tree, compact) in [("IPv6", v6_tree, v6), ("IPv4", v4_tree, v4)] {
        println!(
            "  {family}: {:.2}x less memory; insert {:.2}x, get {:.2}x, replace {:.2}x, remove {:.2}x the BTreeMap's time",
            tree[0] / compact[0],
            compact[1] / tree[1],
            compact[2] / tree[2],
            compact[3] / tree[3],
            compact[5] / tree[5],
        );
    }
}
