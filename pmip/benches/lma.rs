//! LMA state machine throughput, IO excluded: PBUs per second for refreshes of existing
//! bindings and for new registrations, on one core.
//!
//! `cargo bench -p pmip --bench lma`

use core::time::Duration;
use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ipnet::Ipv6Net;
use pmip::Instant;
use pmip::wire::{Timestamp, WallClock};

mod common;
use common::*;

const BINDINGS: usize = 100_000;

fn refresh(c: &mut Criterion) {
    let mut lma = lma();
    let now = Instant::from_nanos(1_000_000_000);
    let mut wall = WallClock::from_unix(1_750_000_000, 0);
    let mut pbus = register(&mut lma, BINDINGS, &mut wall, now);
    let mut g = c.benchmark_group("lma");
    g.throughput(Throughput::Elements(1));
    let mut i = 0usize;
    g.bench_function("refresh_pbu", |b| {
        b.iter_custom(|iters| {
            // Timestamps are patched outside the timed section, 1 µs apart, as a real MAG's
            // would be.
            let mut batch = Vec::with_capacity(iters as usize);
            for _ in 0..iters {
                wall = wall + Duration::from_micros(1);
                let k = i % pbus.len();
                i += 1;
                set_timestamp(&mut pbus[k].1, Timestamp::from_wall_clock(wall));
                batch.push((k, wall));
            }
            let dst = lma_addr();
            let start = std::time::Instant::now();
            for (k, w) in batch {
                let (src, bytes) = &pbus[k];
                lma.handle_message_trusted(now, w, *src, dst, bytes);
                black_box(drain(&mut lma));
            }
            start.elapsed()
        })
    });
    g.finish();
    assert_eq!(lma.cache().len(), BINDINGS);
}

fn new_registration(c: &mut Criterion) {
    let mut g = c.benchmark_group("lma");
    g.throughput(Throughput::Elements(1));
    let now = Instant::from_nanos(1_000_000_000);
    let mut next = 0usize;
    g.bench_function("new_registration_pbu", |b| {
        b.iter_custom(|iters| {
            let mut lma = lma();
            let mut wall = WallClock::from_unix(1_750_000_000, 0);
            let batch: Vec<_> = (0..iters as usize)
                .map(|k| {
                    wall = wall + Duration::from_micros(1);
                    next += 1;
                    let (src, b) = pbu(
                        next,
                        Ipv6Net::default(),
                        Timestamp::from_wall_clock(wall),
                        k as u16,
                    );
                    (src, b, wall)
                })
                .collect();
            let dst = lma_addr();
            let start = std::time::Instant::now();
            for (src, bytes, w) in &batch {
                lma.handle_message_trusted(now, *w, *src, dst, bytes);
                black_box(drain(&mut lma));
            }
            let t = start.elapsed();
            assert_eq!(lma.cache().len(), iters as usize);
            t
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(Duration::from_secs(5));
    targets = refresh, new_registration
}
criterion_main!(benches);
