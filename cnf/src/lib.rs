//! What the pmip daemons (`pmip-lma`, `pmip-mag`) share. Each piece is thin: the protocol is in
//! `pmip`, the kernel programming in `datapath`, the API in `proto`.

pub mod address;
pub mod attachment;
pub mod clock;
pub mod config;
pub mod convert;
pub mod core;
pub mod daemon;
pub mod datapath;
pub mod esp;
pub mod grpc;
pub mod restart;
pub mod signal;
pub mod telemetry;
pub mod transport;
pub mod xfrm;

pub use clock::{Clock, ShownTime};
