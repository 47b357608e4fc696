//! IPsec ESP in transport mode (RFC 4303) for the Proxy Mobile IPv6 signalling: what RFC 5213
//! §4 asks of PBU/PBA, RFC 5949 §7 of HI/HAck and RFC 5846 §13 of BRI/BRA.
//!
//! Pure code, like `pmip`: no sockets, no files, no clock. The daemons move bytes in and out:
//! - [`wire`]: the ESP header view and the trailer (RFC 4303 §2);
//! - [`crypto`]: AES-GCM (RFC 4106) and AES-CBC + HMAC-SHA-256-128 (RFC 3602, RFC 4868);
//! - [`replay`]: the anti-replay window and Extended Sequence Numbers (RFC 4303 §3.4.3,
//!   Appendix A);
//! - [`sad`]: the security association database: SAs per peer and direction, two valid at once
//!   during a rollover, sequence numbers that survive a restart, and the inbound policy (what
//!   is dropped, and why);
//! - [`keys`]: security associations from the configuration and from key files;
//! - [`xfrm`]: the XFRM netlink messages that hand the same SAs and policies to a kernel that
//!   has ESP.
//!
//! Where ESP runs is the daemons' choice (`ipsec.mode`): in the daemon on a raw
//! IP-protocol-50 socket with this crate's transforms, or in the kernel with [`xfrm`].

pub mod crypto;
pub mod keys;
pub mod replay;
pub mod sad;
pub mod wire;
pub mod xfrm;

pub use crypto::Transform;
pub use keys::SecurityAssociationSpec;
pub use pmip::config::EspAlgorithm as Algorithm;
pub use replay::{Replay, ReplayWindow};
pub use sad::{Counters, Drop, Opened, ProtectError, SecurityAssociationDatabase};
pub use wire::{EspHeader, EspPacket, IPPROTO_ESP, Spi, Trailer};

/// What is wrong with an ESP packet or a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Shorter than its header, IV, trailer and ICV.
    #[error("truncated ESP packet")]
    Truncated,
    /// A ciphertext that is not a whole number of cipher blocks (RFC 4303 §2.4).
    #[error("ciphertext length is not a multiple of the block size")]
    BadLength,
    /// The ICV did not verify (RFC 4303 §3.4.4): forged, corrupted or the wrong key.
    #[error("integrity check failed")]
    Integrity,
    /// Pad Length beyond the plaintext, or padding other than 1, 2, 3, ... (RFC 4303 §2.4).
    #[error("bad ESP padding")]
    BadPadding,
    /// Keying material of the wrong length for the algorithm.
    #[error("keying material is {got} octets, the algorithm needs {expected}")]
    KeyLength { expected: usize, got: usize },
}
