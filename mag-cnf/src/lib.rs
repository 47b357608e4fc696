//! The PMIPv6 mobile access gateway daemon, `pmip-mag` (RFC 5213 §6), as a library the binary
//! and its tests share. The protocol is the pure state machine `pmip::mag::Mag`; this crate
//! moves bytes, link events and clock ticks in and out of it.
//!
//! - [`access`]: the access side: access link monitoring, mobile node detection, Router
//!   Advertisements, and the network-namespace lab that emulates mobile nodes.

pub mod access;
pub mod access_glue;
pub mod api;
pub mod buffer;
pub mod cli;
pub mod core;
pub mod metrics;
pub mod policy;
pub mod service;
