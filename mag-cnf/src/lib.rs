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

/// Increments the MAG's restart counter (RFC 5847 §3.2) kept in `path` and returns it.
pub fn bump_restart_counter(path: &std::path::Path) -> anyhow::Result<u32> {
    let old = match std::fs::read_to_string(path) {
        Ok(s) => s
            .trim()
            .parse::<u32>()
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => return Err(anyhow::anyhow!("{}: {e}", path.display())),
    };
    let new = old.wrapping_add(1);
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, new.to_string())?;
    std::fs::rename(&tmp, path)?;
    Ok(new)
}
