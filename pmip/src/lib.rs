//! Proxy Mobile IPv6 (RFC 5213) and its extensions (RFC 5844, 5845, 5846, 5847, 5949, 7077) as
//! pure, deterministic code.
//!
//! Nothing in this crate does IO or reads a clock: bytes, time and randomness come in as
//! arguments, and what the protocol wants done comes out as data. The daemons (`lma-cnf`,
//! `mag-cnf`) move those in and out of the kernel.
//!
//! - [`wire`]: the Mobility Header and every message and option, parse and emit.
//! - [`lma::Lma`] and [`mag::Mag`]: the two state machines.
//! - [`cache`], [`prefix`], [`ipv4_pool`], [`policy`]: the binding cache, prefix pools, IPv4
//!   home address pools (RFC 5844), policy store.
//! - [`sim`]: a simulator with one LMA, N MAGs, virtual time and lossy links.

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod cache;
pub mod config;
mod free_list;
pub mod heartbeat;
pub mod ipv4_pool;
pub mod lma;
pub mod mag;
pub mod output;
pub mod policy;
pub mod prefix;
pub mod rng;
pub mod sim;
pub mod time;
pub mod types;
pub mod wire;

pub use time::Instant;

use std::net::Ipv6Addr;

use output::Transmit;
use wire::Message;

/// Encodes `m` with its checksum for `src` -> `dst`. `None` when the message cannot be
/// encoded (an option too long), which the callers' own messages never are.
pub(crate) fn emit(m: &Message<'_>, src: Ipv6Addr, dst: Ipv6Addr) -> Option<Transmit> {
    let mut payload = vec![0u8; m.buffer_len()];
    m.emit_with_checksum(&mut payload, &src, &dst).ok()?;
    Some(Transmit { src, dst, payload })
}

/// The Binding Error that answers a message of an MH Type the receiver does not recognize
/// (RFC 6275 §9.2: status 2), from `src` back to its sender `dst`.
pub(crate) fn unrecognized_mh_type(src: Ipv6Addr, dst: Ipv6Addr) -> Option<Transmit> {
    let m = Message::BindingError(wire::BindingError {
        status: wire::BindingErrorStatus::UnrecognizedMhType,
        home_address: Ipv6Addr::UNSPECIFIED,
        options: wire::Options::EMPTY,
    });
    emit(&m, src, dst)
}

/// The Binding Revocation Acknowledgement of `bri` with `status`, from `src` back to the
/// indication's sender `dst`: its sequence number and flags copied (RFC 5846 §6.2, §8.2, §9.1).
pub(crate) fn acknowledge_bri(
    bri: &wire::BindingRevocationIndication<'_>,
    status: wire::BraStatus,
    src: Ipv6Addr,
    dst: Ipv6Addr,
) -> Option<Transmit> {
    let m = Message::BindingRevocation(wire::BindingRevocation::Acknowledgement(
        wire::BindingRevocationAck {
            status,
            sequence: bri.sequence,
            flags: bri.flags,
            options: wire::Options::EMPTY,
        },
    ));
    emit(&m, src, dst)
}
