//! The one error type of the crate.

use std::io;
use std::net::Ipv6Addr;
use std::path::PathBuf;

/// What failed, on which object, and why (for kernel refusals, the errno text).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The kernel answered a netlink request with an error.
    #[error("{op} {object}: {source}")]
    Kernel {
        /// e.g. `add route`, `delete rule`.
        op: &'static str,
        /// The object as `ip` would print it, e.g. `2001:db8:1::/64 table 254`.
        object: String,
        /// The kernel's errno, as text and number.
        #[source]
        source: io::Error,
    },
    /// A netlink socket could not be opened or configured.
    #[error("open netlink socket{}: {source}", in_netns(.netns))]
    Socket {
        netns: Option<String>,
        #[source]
        source: io::Error,
    },
    /// The netlink connection task is gone, or answered something that is not netlink.
    #[error("{op} {object}: {detail}")]
    Protocol {
        op: &'static str,
        object: String,
        detail: String,
    },
    /// The kernel did not answer in time.
    #[error("{op} {object}: no answer from the kernel within {seconds} s")]
    Timeout {
        op: &'static str,
        object: String,
        seconds: u64,
    },
    /// A sysctl could not be read or set; the message names it and, when the container is the
    /// cause, where it can be set instead.
    #[error("sysctl {key}={value}{}: {source}{}", in_netns(.netns), crate::sysctl::explain(.source))]
    Sysctl {
        key: crate::sysctl::Sysctl,
        value: String,
        netns: Option<String>,
        #[source]
        source: io::Error,
    },
    /// The file recording the sysctl values found before a change could not be read or written.
    #[error("sysctl ledger {}: {source}", path.display())]
    SysctlLedger {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A network namespace operation failed.
    #[error("{op} network namespace {name}: {source}")]
    NetNs {
        /// e.g. `create`, `enter`, `delete`.
        op: &'static str,
        name: String,
        #[source]
        source: io::Error,
    },
    /// No link with that name or index exists.
    #[error("no network interface {0}")]
    NoSuchLink(String),
    /// Every per-peer table (and ip6tnl link) slot is taken.
    #[error(
        "tunnel to {peer}: all {slots} per-peer slots (tables {first_table}..) are in use; raise max_peers"
    )]
    PeersExhausted {
        peer: Ipv6Addr,
        slots: u32,
        first_table: u32,
    },
    /// The call makes no sense in the backend's current state or with these settings.
    #[error("{op}: {reason}")]
    Invalid { op: &'static str, reason: String },
    /// Some changes of a batch failed; the others were applied.
    #[error("{failed} of {total} changes failed; first: {first}")]
    Batch {
        failed: usize,
        total: usize,
        first: Box<Error>,
    },
}

fn in_netns(netns: &Option<String>) -> String {
    match netns {
        Some(n) => format!(" in network namespace {n}"),
        None => String::new(),
    }
}

impl Error {
    /// The errno of a kernel refusal, if this is one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Kernel { source, .. } | Error::Sysctl { source, .. } => source.raw_os_error(),
            Error::Batch { first, .. } => first.errno(),
            _ => None,
        }
    }
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
