//! Proxy Mobile IPv6 (RFC 5213) and its extensions (RFC 5844, 5845, 5846, 5847, 5949, 7077) as
//! pure, deterministic code.
//!
//! Nothing in this crate does IO or reads a clock: bytes, time and randomness come in as
//! arguments, and what the protocol wants done comes out as data. The daemons (`lma-cnf`,
//! `mag-cnf`) move those in and out of the kernel.

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod config;
pub mod types;
pub mod wire;
