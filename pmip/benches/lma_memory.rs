//! Memory of the binding cache and prefix allocation at 1,000,000 bindings, measured with a
//! counting allocator (live heap bytes), not estimated.
//!
//! `cargo bench -p pmip --bench lma_memory` (prints the figures; BINDINGS=N to change the count)

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use pmip::Instant;
use pmip::wire::WallClock;

mod common;
use common::*;

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

#[allow(unsafe_code)]
// SAFETY: forwards to the system allocator and only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let n = LIVE.fetch_add(l.size(), Ordering::Relaxed) + l.size();
        PEAK.fetch_max(n, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        if new >= l.size() {
            let n = LIVE.fetch_add(new - l.size(), Ordering::Relaxed) + new - l.size();
            PEAK.fetch_max(n, Ordering::Relaxed);
        } else {
            LIVE.fetch_sub(l.size() - new, Ordering::Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static A: Counting = Counting;

fn main() {
    // `cargo bench` passes --bench; nothing else is read.
    let n: usize = std::env::var("BINDINGS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let mut lma = lma();
    let now = Instant::from_nanos(1_000_000_000);
    let mut wall = WallClock::from_unix(1_750_000_000, 0);
    let before = LIVE.load(Ordering::Relaxed);
    let start = std::time::Instant::now();
    let refreshes = register(&mut lma, n, &mut wall, now);
    let took = start.elapsed();
    // The refresh PBUs kept for the throughput bench are not part of the LMA.
    let pbus: usize = refreshes
        .iter()
        .map(|(_, b)| b.capacity() + 40)
        .sum::<usize>()
        + refreshes.capacity() * core::mem::size_of::<(std::net::Ipv6Addr, Vec<u8>)>();
    drop(refreshes);
    let live = LIVE.load(Ordering::Relaxed) - before;
    let _ = pbus;
    assert_eq!(lma.cache().len(), n);
    println!("bindings                     {n}");
    println!(
        "registration (incl. PBA emit) {:.2} s, {:.0} PBU/s",
        took.as_secs_f64(),
        n as f64 / took.as_secs_f64()
    );
    println!(
        "live heap after registration {} bytes = {:.1} bytes/binding (counting allocator)",
        live,
        live as f64 / n as f64
    );
    println!(
        "binding cache + allocator    {} bytes = {:.1} bytes/binding (own accounting)",
        lma.memory_bytes(),
        lma.memory_bytes() as f64 / n as f64
    );
    println!("target                       256 bytes/binding");
}
