//! `pmip-bench`: benchmarks of the real daemons, each one a run that can be repeated and
//! whose comparisons are ratios measured in the same run (the machines this runs on are
//! shared and noisy, so absolute figures drift while ratios hold).
//!
//! - [`signalling`]: a load generator acting as many MAGs against the real `pmip-lma`, with
//!   and without the seg6 datapath, and the ceiling of the same sockets (a raw-socket echo).
//! - [`scale`]: many bindings in one LMA: memory per binding, time to register them all, the
//!   refresh load they make, and recovery after `kill -9`.
//! - [`handover`]: handovers in the namespace lab, as the MAG measures them and as traffic
//!   sees them, for RFC 5213 and both RFC 5949 modes.
//! - [`datapath`]: TCP throughput through the tunnel against plain routing over the same
//!   namespaces.

pub mod bed;
pub mod datapath;
pub mod generator;
pub mod handover;
pub mod report;
pub mod scale;
pub mod signalling;
pub mod stats;
