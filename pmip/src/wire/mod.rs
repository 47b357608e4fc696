//! The Mobility Header wire format (RFC 6275 §6.1) and every message and option that Proxy
//! Mobile IPv6 and its extensions use.
//!
//! Layout after smoltcp's `wire` module:
//! - [`MhPacket`] is a zero-copy view of a Mobility Header; after [`MhPacket::new_checked`] no
//!   accessor panics.
//! - [`Message`] is the high-level representation (`parse` / `buffer_len` / `emit`). It borrows
//!   from the packet and never allocates; emitting never allocates either.
//! - Options are kept as a validated byte range ([`Options`]) and read with an iterator that
//!   skips Pad1/PadN; unknown options are kept and re-emitted verbatim.
//! - Typed views ([`ProxyBindingUpdate`], [`ProxyBindingAck`], ...) pick out the options a
//!   message kind uses and report missing or repeated ones.
//!
//! Every number here comes from the RFC text; the section is named next to it.

mod checksum;
mod error;
mod handover;
mod header;
mod heartbeat;
mod message;
pub mod nd;
mod notification;
mod option;
pub mod packet;
mod proxy;
mod revocation;
mod sequence;
mod timestamp;
mod values;

pub use checksum::{mh_checksum, pseudo_header_sum};
pub use error::{Error, ErrorKind};
pub use handover::{HackFlags, HandoverAck, HandoverInitiate, HiFlags};
pub use header::{MhPacket, MhType};
pub use heartbeat::{Heartbeat, HeartbeatFlags};
pub use message::{BindingAck, BindingError, BindingUpdate, Message};
pub use notification::{UpdateNotification, UpdateNotificationAck, UpnFlags};
pub use option::{
    Alignment, ContextRequest, ContextRequestIter, LmaAddress, MobilityOption, OptionType, Options,
    OptionsIter,
};
pub use proxy::{
    CommonOptions, HandoverContext, HeartbeatView, ProxyBindingAck, ProxyBindingUpdate,
};
pub use revocation::{
    BindingRevocation, BindingRevocationAck, BindingRevocationIndication, RevocationFlags,
};
pub use sequence::SequenceNumber;
pub use timestamp::{Timestamp, WallClock};
pub use values::{
    AccessTechnologyType, BaFlags, BindingErrorStatus, BraStatus, BuFlags, HackCode,
    HandoffIndicator, HiCode, Ipv4HoaStatus, Lifetime, MN_ID_SUBTYPE_NAI, NotificationReason,
    RevocationTrigger, Status, UpaStatus,
};

/// IPv6 Next Header value of the Mobility Header (RFC 6275 §6.1.1, §14).
pub const IPPROTO_MH: u8 = 135;
/// Payload Proto value senders SHOULD use: IPPROTO_NONE (RFC 6275 §6.1.1).
pub const IPPROTO_NONE: u8 = 59;
/// UDP port `pmip6-cntl` for the Mobility Header over IPv4 (RFC 5844 §4, §6).
pub const PMIP6_CNTL_UDP_PORT: u16 = 5436;
/// UDP port `pmip6-data` for IPv4-UDP data encapsulation (RFC 5844 §4.1.4.1, §6).
pub const PMIP6_DATA_UDP_PORT: u16 = 5437;

/// Result of the wire-format functions.
pub type Result<T> = core::result::Result<T, Error>;
