//! Mobility options (RFC 6275 §6.2) and every option PMIPv6 and its extensions define.
//!
//! ```text
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |  Option Type  | Option Length |   Option Data...
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//! Option Length excludes the Type and Length octets; Pad1 is a lone zero octet.
//!
//! Alignment requirements are written `xn+y`: the option's Type octet sits at an offset from
//! the start of the Mobility Header that is `y` modulo `x`. The emitter inserts Pad1/PadN to
//! meet them and pads the message to a multiple of 8; the parser accepts any padding.

use core::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::Ipv6Net;

use super::Result;
use super::error::{Error, ErrorKind};
use super::timestamp::Timestamp;
use super::values::{AccessTechnologyType, HandoffIndicator, Ipv4HoaStatus, open_enum};

open_enum! {
    /// Mobility option types (CONSTANTS.md §4; RFC 6275 §6.2 for 0..=5).
    pub enum OptionType: u8 {
        Pad1 = 0 => "Pad1",
        PadN = 1 => "PadN",
        BindingRefreshAdvice = 2 => "Binding Refresh Advice",
        AlternateCareOfAddress = 3 => "Alternate Care-of Address",
        NonceIndices = 4 => "Nonce Indices",
        BindingAuthorizationData = 5 => "Binding Authorization Data",
        MobileNodeIdentifier = 8 => "Mobile Node Identifier",
        VendorSpecific = 19 => "Vendor-Specific",
        HomeNetworkPrefix = 22 => "Home Network Prefix",
        HandoffIndicator = 23 => "Handoff Indicator",
        AccessTechnologyType = 24 => "Access Technology Type",
        MnLinkLayerIdentifier = 25 => "Mobile Node Link-layer Identifier",
        LinkLocalAddress = 26 => "Link-local Address",
        Timestamp = 27 => "Timestamp",
        RestartCounter = 28 => "Restart Counter",
        GreKey = 33 => "GRE Key",
        Ipv4HomeAddressRequest = 36 => "IPv4 Home Address Request",
        Ipv4HomeAddressReply = 37 => "IPv4 Home Address Reply",
        Ipv4DefaultRouterAddress = 38 => "IPv4 Default-Router Address",
        Ipv4DhcpSupportMode = 39 => "IPv4 DHCP Support Mode",
        ContextRequest = 40 => "Context Request",
        LmaAddress = 41 => "Local Mobility Anchor Address",
        MnLinkLocalAddressInterfaceId = 42 => "MN Link-local Address Interface Identifier",
    }
}

/// An alignment requirement `xn+y` (RFC 6275 §6.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Alignment {
    pub x: u8,
    pub y: u8,
}

impl Alignment {
    pub const NONE: Alignment = Alignment { x: 1, y: 0 };
    const fn new(x: u8, y: u8) -> Self {
        Alignment { x, y }
    }

    /// Octets of padding needed before an option placed at `offset`.
    pub fn padding_at(self, offset: usize) -> usize {
        let x = usize::from(self.x);
        (usize::from(self.y) + x - offset % x) % x
    }
}

/// The address in a Local Mobility Anchor Address option (RFC 5949 §6.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LmaAddress {
    /// Option-Code 1: the LMA's IPv6 address (LMAA).
    V6(Ipv6Addr),
    /// Option-Code 2: the LMA's IPv4 address (IPv4-LMAA).
    V4(Ipv4Addr),
}

/// The request list of a Context Request option (RFC 5949 §6.2.1): pairs of (Req-type,
/// Req-option data). Validated when parsed; iterate with [`ContextRequest::iter`].
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ContextRequest<'a> {
    list: &'a [u8],
}

impl<'a> ContextRequest<'a> {
    /// Wraps an encoded request list (the octets after the option's Reserved field).
    pub fn from_encoded(list: &'a [u8]) -> core::result::Result<Self, usize> {
        let mut it = ContextRequestIter { rest: list, pos: 0 };
        for r in &mut it {
            r?;
        }
        Ok(ContextRequest { list })
    }

    /// Encodes requests for option types with no further data (e.g. HNP, MN LL-ID) into
    /// `buf`, returning the request list.
    pub fn encode_types<'b>(types: &[OptionType], buf: &'b mut [u8]) -> Option<ContextRequest<'b>> {
        let n = types.len() * 2;
        let out = buf.get_mut(..n)?;
        for (pair, t) in out.chunks_exact_mut(2).zip(types) {
            pair.copy_from_slice(&[t.value(), 0]);
        }
        Some(ContextRequest { list: out })
    }

    pub fn encoded(&self) -> &'a [u8] {
        self.list
    }

    /// (Req-type, Req-option) pairs.
    pub fn iter(&self) -> impl Iterator<Item = (OptionType, &'a [u8])> + use<'a> {
        ContextRequestIter {
            rest: self.list,
            pos: 0,
        }
        .map_while(|r| r.ok())
    }

    /// True when the option type is requested.
    pub fn requests(&self, t: OptionType) -> bool {
        self.iter().any(|(r, _)| r == t)
    }
}

impl fmt::Debug for ContextRequest<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// Iterator over an encoded Context Request list; yields `Err(offset)` at a malformed entry.
#[derive(Debug, Clone)]
pub struct ContextRequestIter<'a> {
    rest: &'a [u8],
    pos: usize,
}

impl<'a> Iterator for ContextRequestIter<'a> {
    type Item = core::result::Result<(OptionType, &'a [u8]), usize>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let (t, len) = match self.rest {
            [t, len, ..] => (*t, usize::from(*len)),
            _ => {
                self.rest = &[];
                return Some(Err(self.pos));
            }
        };
        let Some(data) = self.rest.get(2..2 + len) else {
            self.rest = &[];
            return Some(Err(self.pos));
        };
        self.rest = self.rest.get(2 + len..).unwrap_or(&[]);
        self.pos += 2 + len;
        Some(Ok((OptionType::from(t), data)))
    }
}

/// One mobility option. Padding (Pad1, PadN) is not represented: the parser skips it and the
/// emitter inserts it. Reserved fields are ignored on receipt and sent as zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MobilityOption<'a> {
    /// Alternate Care-of Address (RFC 6275 §6.2.5), 8n+6.
    AlternateCareOfAddress(Ipv6Addr),
    /// Mobile Node Identifier (RFC 4283 §3): subtype 1 is an NAI. No alignment. The
    /// identifier may be empty (RFC 5213 §5.3.1 rule 4).
    MobileNodeIdentifier { subtype: u8, id: &'a [u8] },
    /// Vendor-Specific Mobility Option (RFC 5094 §3), 4n+2.
    VendorSpecific {
        vendor_id: u32,
        sub_type: u8,
        data: &'a [u8],
    },
    /// Home Network Prefix (RFC 5213 §8.3), 8n+4. `::/0` (ALL_ZERO) asks for an allocation.
    HomeNetworkPrefix(Ipv6Net),
    /// Handoff Indicator (RFC 5213 §8.4). No alignment.
    HandoffIndicator(HandoffIndicator),
    /// Access Technology Type (RFC 5213 §8.5). No alignment.
    AccessTechnologyType(AccessTechnologyType),
    /// Mobile Node Link-layer Identifier (RFC 5213 §8.6), 2n: the identifier octets.
    MnLinkLayerIdentifier(&'a [u8]),
    /// Link-local Address (RFC 5213 §8.7), 8n+6.
    LinkLocalAddress(Ipv6Addr),
    /// Timestamp (RFC 5213 §8.8), 8n+2.
    Timestamp(Timestamp),
    /// Restart Counter (RFC 5847 §3.4), 4n+2.
    RestartCounter(u32),
    /// GRE Key (RFC 5845 §6.1), 4n: length 2 without a key, 6 with one.
    GreKey(Option<u32>),
    /// IPv4 Home Address Request (RFC 5844 §3.3.1), 4n. `0.0.0.0` asks for an allocation.
    Ipv4HomeAddressRequest { prefix_len: u8, address: Ipv4Addr },
    /// IPv4 Home Address Reply (RFC 5844 §3.3.2), 4n.
    Ipv4HomeAddressReply {
        status: Ipv4HoaStatus,
        prefix_len: u8,
        address: Ipv4Addr,
    },
    /// IPv4 Default-Router Address (RFC 5844 §3.3.3), 4n.
    Ipv4DefaultRouterAddress(Ipv4Addr),
    /// IPv4 DHCP Support Mode (RFC 5844 §3.3.4): S=1 server, S=0 relay. No alignment.
    Ipv4DhcpSupportMode { server: bool },
    /// Context Request (RFC 5949 §6.2.1). No alignment stated; none used.
    ContextRequest(ContextRequest<'a>),
    /// Local Mobility Anchor Address (RFC 5949 §6.2.2), 4n here (none is stated).
    LmaAddress(LmaAddress),
    /// MN Link-local Address Interface Identifier (RFC 5949 §6.2.3), 8n+4 so the identifier
    /// is 8-octet aligned (none is stated).
    MnLinkLocalInterfaceId([u8; 8]),
    /// Any other option, kept and re-emitted verbatim.
    Unknown { option_type: u8, data: &'a [u8] },
}

impl<'a> MobilityOption<'a> {
    pub fn option_type(&self) -> OptionType {
        use MobilityOption as O;
        match self {
            O::AlternateCareOfAddress(_) => OptionType::AlternateCareOfAddress,
            O::MobileNodeIdentifier { .. } => OptionType::MobileNodeIdentifier,
            O::VendorSpecific { .. } => OptionType::VendorSpecific,
            O::HomeNetworkPrefix(_) => OptionType::HomeNetworkPrefix,
            O::HandoffIndicator(_) => OptionType::HandoffIndicator,
            O::AccessTechnologyType(_) => OptionType::AccessTechnologyType,
            O::MnLinkLayerIdentifier(_) => OptionType::MnLinkLayerIdentifier,
            O::LinkLocalAddress(_) => OptionType::LinkLocalAddress,
            O::Timestamp(_) => OptionType::Timestamp,
            O::RestartCounter(_) => OptionType::RestartCounter,
            O::GreKey(_) => OptionType::GreKey,
            O::Ipv4HomeAddressRequest { .. } => OptionType::Ipv4HomeAddressRequest,
            O::Ipv4HomeAddressReply { .. } => OptionType::Ipv4HomeAddressReply,
            O::Ipv4DefaultRouterAddress(_) => OptionType::Ipv4DefaultRouterAddress,
            O::Ipv4DhcpSupportMode { .. } => OptionType::Ipv4DhcpSupportMode,
            O::ContextRequest(_) => OptionType::ContextRequest,
            O::LmaAddress(_) => OptionType::LmaAddress,
            O::MnLinkLocalInterfaceId(_) => OptionType::MnLinkLocalAddressInterfaceId,
            O::Unknown { option_type, .. } => OptionType::from(*option_type),
        }
    }

    /// The option's alignment requirement (see the variant docs for the RFC sections).
    pub fn alignment(&self) -> Alignment {
        use MobilityOption as O;
        match self {
            O::AlternateCareOfAddress(_) | O::LinkLocalAddress(_) => Alignment::new(8, 6),
            O::VendorSpecific { .. } | O::RestartCounter(_) => Alignment::new(4, 2),
            O::HomeNetworkPrefix(_) | O::MnLinkLocalInterfaceId(_) => Alignment::new(8, 4),
            O::Timestamp(_) => Alignment::new(8, 2),
            O::MnLinkLayerIdentifier(_) => Alignment::new(2, 0),
            O::GreKey(_)
            | O::Ipv4HomeAddressRequest { .. }
            | O::Ipv4HomeAddressReply { .. }
            | O::Ipv4DefaultRouterAddress(_)
            | O::LmaAddress(_) => Alignment::new(4, 0),
            O::MobileNodeIdentifier { .. }
            | O::HandoffIndicator(_)
            | O::AccessTechnologyType(_)
            | O::Ipv4DhcpSupportMode { .. }
            | O::ContextRequest(_)
            | O::Unknown { .. } => Alignment::NONE,
        }
    }

    /// Option Length: the octets after Type and Length.
    pub fn data_len(&self) -> usize {
        use MobilityOption as O;
        match self {
            O::AlternateCareOfAddress(_) | O::LinkLocalAddress(_) => 16,
            O::MobileNodeIdentifier { id, .. } => 1 + id.len(),
            O::VendorSpecific { data, .. } => 5 + data.len(),
            O::HomeNetworkPrefix(_) => 18,
            O::HandoffIndicator(_) | O::AccessTechnologyType(_) => 2,
            O::MnLinkLayerIdentifier(id) => 2 + id.len(),
            O::Timestamp(_) => 8,
            O::RestartCounter(_) => 4,
            O::GreKey(k) => {
                if k.is_some() {
                    6
                } else {
                    2
                }
            }
            O::Ipv4HomeAddressRequest { .. }
            | O::Ipv4HomeAddressReply { .. }
            | O::Ipv4DefaultRouterAddress(_) => 6,
            O::Ipv4DhcpSupportMode { .. } => 2,
            O::ContextRequest(c) => 2 + c.list.len(),
            O::LmaAddress(LmaAddress::V6(_)) => 18,
            O::LmaAddress(LmaAddress::V4(_)) => 6,
            O::MnLinkLocalInterfaceId(_) => 10,
            O::Unknown { data, .. } => data.len(),
        }
    }

    /// Parses one option's data. `offset` is where the option's Type octet is, for errors.
    pub fn parse(option_type: u8, data: &'a [u8], offset: usize) -> Result<Self> {
        use MobilityOption as O;
        let t = OptionType::from(option_type);
        let bad_len = || {
            Error::new(
                offset + 1,
                ErrorKind::BadOptionLength {
                    option: option_type,
                    length: data.len() as u8,
                },
            )
        };
        let bad_value = |at: usize, field: &'static str, value: u32| {
            Error::new(offset + 2 + at, ErrorKind::BadValue { field, value })
        };
        let v6 = |d: &[u8]| -> Ipv6Addr {
            let mut o = [0u8; 16];
            o.copy_from_slice(d);
            Ipv6Addr::from(o)
        };
        let v4 = |d: &[u8]| Ipv4Addr::new(d[0], d[1], d[2], d[3]);
        Ok(match t {
            OptionType::AlternateCareOfAddress | OptionType::LinkLocalAddress => {
                if data.len() != 16 {
                    return Err(bad_len());
                }
                let a = v6(data);
                if t == OptionType::LinkLocalAddress {
                    O::LinkLocalAddress(a)
                } else {
                    O::AlternateCareOfAddress(a)
                }
            }
            OptionType::MobileNodeIdentifier => match data {
                // An empty identifier is legal: a PBA answering a PBU without one carries a
                // zero-length identifier (RFC 5213 §5.3.1 rule 4).
                [subtype, id @ ..] => O::MobileNodeIdentifier {
                    subtype: *subtype,
                    id,
                },
                _ => return Err(bad_len()),
            },
            OptionType::VendorSpecific => match data {
                [a, b, c, d, sub_type, rest @ ..] => O::VendorSpecific {
                    vendor_id: u32::from_be_bytes([*a, *b, *c, *d]),
                    sub_type: *sub_type,
                    data: rest,
                },
                _ => return Err(bad_len()),
            },
            OptionType::HomeNetworkPrefix => match data {
                [_reserved, plen, prefix @ ..] if prefix.len() == 16 => {
                    let net = Ipv6Net::new(v6(prefix), *plen)
                        .map_err(|_| bad_value(1, "Prefix Length", u32::from(*plen)))?;
                    O::HomeNetworkPrefix(net)
                }
                _ => return Err(bad_len()),
            },
            OptionType::HandoffIndicator => match data {
                [_reserved, hi] => O::HandoffIndicator(HandoffIndicator::from(*hi)),
                _ => return Err(bad_len()),
            },
            OptionType::AccessTechnologyType => match data {
                [_reserved, att] => O::AccessTechnologyType(AccessTechnologyType::from(*att)),
                _ => return Err(bad_len()),
            },
            OptionType::MnLinkLayerIdentifier => match data {
                [_r0, _r1, id @ ..] if !id.is_empty() => O::MnLinkLayerIdentifier(id),
                _ => return Err(bad_len()),
            },
            OptionType::Timestamp => {
                let b = <[u8; 8]>::try_from(data).map_err(|_| bad_len())?;
                O::Timestamp(Timestamp(u64::from_be_bytes(b)))
            }
            OptionType::RestartCounter => {
                let b = <[u8; 4]>::try_from(data).map_err(|_| bad_len())?;
                O::RestartCounter(u32::from_be_bytes(b))
            }
            OptionType::GreKey => match data {
                [_, _] => O::GreKey(None),
                [_, _, a, b, c, d] => O::GreKey(Some(u32::from_be_bytes([*a, *b, *c, *d]))),
                _ => return Err(bad_len()),
            },
            OptionType::Ipv4HomeAddressRequest => match data {
                [plen, _reserved, addr @ ..] if addr.len() == 4 => {
                    let prefix_len = plen >> 2;
                    if prefix_len > 32 {
                        return Err(bad_value(0, "Prefix-len", u32::from(prefix_len)));
                    }
                    O::Ipv4HomeAddressRequest {
                        prefix_len,
                        address: v4(addr),
                    }
                }
                _ => return Err(bad_len()),
            },
            OptionType::Ipv4HomeAddressReply => match data {
                [status, plen, addr @ ..] if addr.len() == 4 => {
                    let prefix_len = plen >> 2;
                    if prefix_len > 32 {
                        return Err(bad_value(1, "Pref-len", u32::from(prefix_len)));
                    }
                    O::Ipv4HomeAddressReply {
                        status: Ipv4HoaStatus::from(*status),
                        prefix_len,
                        address: v4(addr),
                    }
                }
                _ => return Err(bad_len()),
            },
            OptionType::Ipv4DefaultRouterAddress => match data {
                [_r0, _r1, addr @ ..] if addr.len() == 4 => O::Ipv4DefaultRouterAddress(v4(addr)),
                _ => return Err(bad_len()),
            },
            OptionType::Ipv4DhcpSupportMode => match data {
                [_r, s] => O::Ipv4DhcpSupportMode {
                    server: s & 0x01 != 0,
                },
                _ => return Err(bad_len()),
            },
            OptionType::ContextRequest => match data {
                [_r0, _r1, list @ ..] => {
                    let c = ContextRequest::from_encoded(list).map_err(|at| {
                        Error::new(
                            offset + 4 + at,
                            ErrorKind::BadValue {
                                field: "Context Request Req-length",
                                value: u32::from(list.get(at + 1).copied().unwrap_or(0)),
                            },
                        )
                    })?;
                    O::ContextRequest(c)
                }
                _ => return Err(bad_len()),
            },
            OptionType::LmaAddress => match data {
                [1, _reserved, addr @ ..] if addr.len() == 16 => {
                    O::LmaAddress(LmaAddress::V6(v6(addr)))
                }
                [2, _reserved, addr @ ..] if addr.len() == 4 => {
                    O::LmaAddress(LmaAddress::V4(v4(addr)))
                }
                [1 | 2, ..] => return Err(bad_len()),
                [code, ..] => {
                    return Err(bad_value(0, "LMA Address Option-Code", u32::from(*code)));
                }
                [] => return Err(bad_len()),
            },
            OptionType::MnLinkLocalAddressInterfaceId => match data {
                [_r0, _r1, iid @ ..] if iid.len() == 8 => {
                    let mut o = [0u8; 8];
                    o.copy_from_slice(iid);
                    O::MnLinkLocalInterfaceId(o)
                }
                _ => return Err(bad_len()),
            },
            _ => O::Unknown { option_type, data },
        })
    }

    /// Writes Type, Length and data into `out`, which must be `2 + data_len()` long.
    fn emit_into(&self, out: &mut [u8]) {
        use MobilityOption as O;
        let n = self.data_len();
        out[0] = self.option_type().value();
        out[1] = n as u8;
        let d = &mut out[2..2 + n];
        d.fill(0);
        match self {
            O::AlternateCareOfAddress(a) | O::LinkLocalAddress(a) => d.copy_from_slice(&a.octets()),
            O::MobileNodeIdentifier { subtype, id } => {
                d[0] = *subtype;
                d[1..].copy_from_slice(id);
            }
            O::VendorSpecific {
                vendor_id,
                sub_type,
                data,
            } => {
                d[..4].copy_from_slice(&vendor_id.to_be_bytes());
                d[4] = *sub_type;
                d[5..].copy_from_slice(data);
            }
            O::HomeNetworkPrefix(p) => {
                d[1] = p.prefix_len();
                d[2..].copy_from_slice(&p.addr().octets());
            }
            O::HandoffIndicator(hi) => d[1] = hi.value(),
            O::AccessTechnologyType(att) => d[1] = att.value(),
            O::MnLinkLayerIdentifier(id) => d[2..].copy_from_slice(id),
            O::Timestamp(t) => d.copy_from_slice(&t.0.to_be_bytes()),
            O::RestartCounter(c) => d.copy_from_slice(&c.to_be_bytes()),
            O::GreKey(k) => {
                if let Some(k) = k {
                    d[2..].copy_from_slice(&k.to_be_bytes());
                }
            }
            O::Ipv4HomeAddressRequest {
                prefix_len,
                address,
            } => {
                d[0] = prefix_len << 2;
                d[2..].copy_from_slice(&address.octets());
            }
            O::Ipv4HomeAddressReply {
                status,
                prefix_len,
                address,
            } => {
                d[0] = status.value();
                d[1] = prefix_len << 2;
                d[2..].copy_from_slice(&address.octets());
            }
            O::Ipv4DefaultRouterAddress(a) => d[2..].copy_from_slice(&a.octets()),
            O::Ipv4DhcpSupportMode { server } => d[1] = u8::from(*server),
            O::ContextRequest(c) => d[2..].copy_from_slice(c.list),
            O::LmaAddress(LmaAddress::V6(a)) => {
                d[0] = 1;
                d[2..].copy_from_slice(&a.octets());
            }
            O::LmaAddress(LmaAddress::V4(a)) => {
                d[0] = 2;
                d[2..].copy_from_slice(&a.octets());
            }
            O::MnLinkLocalInterfaceId(iid) => d[2..].copy_from_slice(iid),
            O::Unknown { data, .. } => d.copy_from_slice(data),
        }
    }

    /// Checks that the option can be encoded: lengths fit in one octet, values in their bits.
    fn check_encodable(&self) -> Result<()> {
        use MobilityOption as O;
        let t = self.option_type().value();
        let len_err = Error::new(
            0,
            ErrorKind::BadOptionLength {
                option: t,
                length: self.data_len().min(255) as u8,
            },
        );
        if self.data_len() > 255 {
            return Err(len_err);
        }
        let ok = match self {
            O::MnLinkLayerIdentifier(id) => !id.is_empty(),
            O::Ipv4HomeAddressRequest { prefix_len, .. }
            | O::Ipv4HomeAddressReply { prefix_len, .. } => {
                if *prefix_len > 32 {
                    return Err(Error::new(
                        0,
                        ErrorKind::BadValue {
                            field: "IPv4 prefix length",
                            value: u32::from(*prefix_len),
                        },
                    ));
                }
                true
            }
            O::Unknown { option_type, .. } => {
                // Padding is the emitter's business, and a type this module parses must use
                // its own variant so that its length rules apply.
                let pad = matches!(
                    OptionType::from(*option_type),
                    OptionType::Pad1 | OptionType::PadN
                );
                let typed = !matches!(
                    MobilityOption::parse(*option_type, &[], 0),
                    Ok(MobilityOption::Unknown { .. })
                );
                if pad || typed {
                    return Err(Error::new(
                        0,
                        ErrorKind::BadValue {
                            field: "option type of an Unknown option",
                            value: u32::from(*option_type),
                        },
                    ));
                }
                true
            }
            _ => true,
        };
        if ok { Ok(()) } else { Err(len_err) }
    }
}

/// The mobility options of a message: either a validated byte range from a received message,
/// or a list to emit. Compared by their options, ignoring padding.
#[derive(Clone, Copy)]
pub enum Options<'a> {
    /// Received options: `bytes` start at `offset` from the start of the Mobility Header.
    /// Only constructed by [`Options::parse`], which validates every option.
    Wire { bytes: &'a [u8], offset: usize },
    /// Options to send, in order.
    List(&'a [MobilityOption<'a>]),
}

impl<'a> Options<'a> {
    pub const EMPTY: Options<'static> = Options::List(&[]);

    /// Validates the options area of a message: `bytes` start `offset` octets into the Mobility
    /// Header. Every option must fit and be well formed; unknown ones are kept.
    pub fn parse(bytes: &'a [u8], offset: usize) -> Result<Self> {
        for o in OptionsIter::new(bytes, offset) {
            o?;
        }
        Ok(Options::Wire { bytes, offset })
    }

    /// The options, without padding.
    pub fn iter(&self) -> impl Iterator<Item = MobilityOption<'a>> + use<'a> {
        let (wire, list): (Option<OptionsIter<'a>>, &'a [MobilityOption<'a>]) = match *self {
            Options::Wire { bytes, offset } => (Some(OptionsIter::new(bytes, offset)), &[]),
            Options::List(l) => (None, l),
        };
        wire.into_iter()
            .flatten()
            .map_while(|r| r.ok())
            .chain(list.iter().copied())
    }

    /// The options with the offset of each option's Type octet from the start of the Mobility
    /// Header (for a `List`, the offsets they would have once emitted).
    pub fn iter_at(&self) -> impl Iterator<Item = (usize, MobilityOption<'a>)> + use<'a> {
        let (wire, list): (Option<OptionsIter<'a>>, &'a [MobilityOption<'a>]) = match *self {
            Options::Wire { bytes, offset } => (Some(OptionsIter::new(bytes, offset)), &[]),
            Options::List(l) => (None, l),
        };
        let wire = wire.into_iter().flat_map(|mut it| {
            core::iter::from_fn(move || match it.next()? {
                Ok(o) => Some((it.last_at, o)),
                Err(_) => None,
            })
        });
        let mut pos = 0usize;
        let list = list.iter().map(move |o| {
            pos += o.alignment().padding_at(pos);
            let at = pos;
            pos += 2 + o.data_len();
            (at, *o)
        });
        wire.chain(list)
    }

    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }

    /// The first option of type `t`.
    pub fn find(&self, t: OptionType) -> Option<MobilityOption<'a>> {
        self.iter().find(|o| o.option_type() == t)
    }

    /// Length of the options area when emitted starting at `offset`, including the padding
    /// that brings the whole message to a multiple of 8.
    pub fn buffer_len(&self, offset: usize) -> usize {
        let mut pos = offset;
        for o in self.iter() {
            pos += o.alignment().padding_at(pos) + 2 + o.data_len();
        }
        pos += Alignment::new(8, 0).padding_at(pos);
        pos - offset
    }

    /// Writes the options into `out` (which must be exactly `buffer_len(offset)` long),
    /// with the padding each alignment needs and trailing padding to a multiple of 8.
    pub fn emit(&self, out: &mut [u8], offset: usize) -> Result<()> {
        let mut pos = 0usize;
        for o in self.iter() {
            o.check_encodable()
                .map_err(|e| Error::new(offset + pos, e.kind))?;
            let pad = o.alignment().padding_at(offset + pos);
            write_padding(&mut out[pos..pos + pad]);
            pos += pad;
            let n = 2 + o.data_len();
            o.emit_into(&mut out[pos..pos + n]);
            pos += n;
        }
        write_padding(&mut out[pos..]);
        Ok(())
    }
}

impl fmt::Debug for Options<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl PartialEq for Options<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Eq for Options<'_> {}

/// Fills `out` with Pad1 (one octet) or PadN (RFC 6275 §6.2.2, §6.2.3).
fn write_padding(out: &mut [u8]) {
    match out.len() {
        0 => {}
        1 => out[0] = OptionType::Pad1.value(),
        n => {
            out[0] = OptionType::PadN.value();
            out[1] = (n - 2) as u8;
            out[2..].fill(0);
        }
    }
}

/// Iterator over an options area: yields each option (skipping Pad1 and PadN) and stops after
/// the first error.
#[derive(Debug, Clone)]
pub struct OptionsIter<'a> {
    rest: &'a [u8],
    offset: usize,
    last_at: usize,
}

impl<'a> OptionsIter<'a> {
    pub fn new(bytes: &'a [u8], offset: usize) -> Self {
        OptionsIter {
            rest: bytes,
            offset,
            last_at: offset,
        }
    }
}

impl<'a> Iterator for OptionsIter<'a> {
    type Item = Result<MobilityOption<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let (&t, after_type) = self.rest.split_first()?;
            if t == OptionType::Pad1.value() {
                self.rest = after_type;
                self.offset += 1;
                continue;
            }
            let Some((&len, body)) = after_type.split_first() else {
                let e = Error::truncated(self.offset + 1, 1, 0);
                self.rest = &[];
                return Some(Err(e));
            };
            let len_usize = usize::from(len);
            if body.len() < len_usize {
                let e = Error::new(
                    self.offset + 1,
                    ErrorKind::OptionOverrun {
                        option: t,
                        length: len,
                        remaining: body.len(),
                    },
                );
                self.rest = &[];
                return Some(Err(e));
            }
            let (data, rest) = body.split_at(len_usize);
            let at = self.offset;
            self.last_at = at;
            self.rest = rest;
            self.offset += 2 + len_usize;
            if t == OptionType::PadN.value() {
                continue;
            }
            let parsed = MobilityOption::parse(t, data, at);
            if parsed.is_err() {
                self.rest = &[];
            }
            return Some(parsed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(opts: &[MobilityOption<'_>], offset: usize) -> Vec<u8> {
        let o = Options::List(opts);
        let n = o.buffer_len(offset);
        assert_eq!((offset + n) % 8, 0);
        let mut buf = vec![0xeeu8; n];
        o.emit(&mut buf, offset).unwrap();
        let back = Options::parse(&buf, offset).unwrap();
        assert_eq!(back, o);
        buf
    }

    #[test]
    fn alignment_is_honoured_and_padding_inserted() {
        let ts = MobilityOption::Timestamp(Timestamp(0x0102_0304_0506_0708));
        let hnp = MobilityOption::HomeNetworkPrefix("2001:db8:1:2::/64".parse().unwrap());
        let lla = MobilityOption::LinkLocalAddress("fe80::1".parse().unwrap());
        // Options of a BU start at offset 12.
        let buf = roundtrip(&[hnp, ts, lla], 12);
        // HNP is 8n+4: at offset 12, no padding.
        assert_eq!(buf[0], 22);
        assert_eq!(buf[1], 18);
        // After HNP (20 octets) we are at 32; Timestamp wants 8n+2: a PadN of 2 (type 1, len 0).
        assert_eq!(&buf[20..22], &[1, 0]);
        assert_eq!(buf[22], 27);
        // Timestamp ends at 34+8=44; LLA wants 8n+6: 46, so a PadN of 2 again.
        assert_eq!(&buf[32..34], &[1, 0]);
        assert_eq!(buf[34], 26);
        // LLA ends at 64: multiple of 8, no trailing padding.
        assert_eq!(buf.len(), 64 - 12);
    }

    #[test]
    fn pad1_is_used_for_one_octet() {
        // Restart Counter is 4n+2; at offset 13 it needs one octet of padding.
        let buf = roundtrip(&[MobilityOption::RestartCounter(7)], 13);
        assert_eq!(buf[0], 0);
        assert_eq!(buf[1], 28);
    }

    #[test]
    fn every_option_round_trips() {
        let cr_buf = [22u8, 0, 25, 0, 19, 5, 0, 0, 0x7f, 0xff, 1];
        let all = [
            MobilityOption::AlternateCareOfAddress("2001:db8::99".parse().unwrap()),
            MobilityOption::MobileNodeIdentifier {
                subtype: 1,
                id: b"mn1@example.org",
            },
            MobilityOption::VendorSpecific {
                vendor_id: 32473,
                sub_type: 7,
                data: &[1, 2, 3],
            },
            MobilityOption::HomeNetworkPrefix("::/0".parse().unwrap()),
            MobilityOption::HandoffIndicator(HandoffIndicator::HandoffBetweenMags),
            MobilityOption::AccessTechnologyType(AccessTechnologyType::Ieee80211),
            MobilityOption::MnLinkLayerIdentifier(&[2, 0, 0, 0, 1, 1]),
            MobilityOption::LinkLocalAddress("fe80::1".parse().unwrap()),
            MobilityOption::Timestamp(Timestamp(u64::MAX)),
            MobilityOption::RestartCounter(u32::MAX),
            MobilityOption::GreKey(None),
            MobilityOption::GreKey(Some(0xdead_beef)),
            MobilityOption::Ipv4HomeAddressRequest {
                prefix_len: 24,
                address: Ipv4Addr::UNSPECIFIED,
            },
            MobilityOption::Ipv4HomeAddressReply {
                status: Ipv4HoaStatus::Success,
                prefix_len: 24,
                address: Ipv4Addr::new(10, 0, 0, 7),
            },
            MobilityOption::Ipv4DefaultRouterAddress(Ipv4Addr::new(10, 0, 0, 1)),
            MobilityOption::Ipv4DhcpSupportMode { server: true },
            MobilityOption::ContextRequest(ContextRequest::from_encoded(&cr_buf).unwrap()),
            MobilityOption::LmaAddress(LmaAddress::V6("2001:db8::1".parse().unwrap())),
            MobilityOption::LmaAddress(LmaAddress::V4(Ipv4Addr::new(192, 0, 2, 1))),
            MobilityOption::MnLinkLocalInterfaceId([1, 2, 3, 4, 5, 6, 7, 8]),
            MobilityOption::Unknown {
                option_type: 200,
                data: &[9, 9, 9],
            },
        ];
        for offset in [10, 12, 24] {
            roundtrip(&all, offset);
        }
        let c = match all[16] {
            MobilityOption::ContextRequest(c) => c,
            _ => unreachable!(),
        };
        let reqs: Vec<_> = c.iter().collect();
        assert_eq!(reqs.len(), 3);
        assert_eq!(reqs[0], (OptionType::HomeNetworkPrefix, &[][..]));
        assert_eq!(
            reqs[2],
            (OptionType::VendorSpecific, &[0, 0, 0x7f, 0xff, 1][..])
        );
    }

    #[test]
    fn malformed_options_say_what_and_where() {
        // HNP with length 17 at offset 12.
        let mut b = vec![22u8, 17];
        b.extend([0u8; 17]);
        let e = Options::parse(&b, 12).unwrap_err();
        assert_eq!(e.offset, 13);
        assert_eq!(
            e.kind,
            ErrorKind::BadOptionLength {
                option: 22,
                length: 17
            }
        );
        // An option running past the end.
        let e = Options::parse(&[1, 0, 8, 10, 1, 2], 12).unwrap_err();
        assert_eq!(e.offset, 15);
        assert_eq!(
            e.kind,
            ErrorKind::OptionOverrun {
                option: 8,
                length: 10,
                remaining: 2
            }
        );
        // A type octet with no length after it.
        assert_eq!(
            Options::parse(&[0, 0, 27], 12).unwrap_err().kind,
            ErrorKind::Truncated {
                needed: 1,
                available: 0
            }
        );
        // Prefix length above 128.
        let mut b = vec![22u8, 18, 0, 129];
        b.extend([0u8; 16]);
        assert_eq!(
            Options::parse(&b, 12).unwrap_err().kind,
            ErrorKind::BadValue {
                field: "Prefix Length",
                value: 129
            }
        );
        // A Context Request entry overrunning its option.
        let e = Options::parse(&[40, 4, 0, 0, 19, 5], 12).unwrap_err();
        assert_eq!(e.offset, 16);
    }

    #[test]
    fn emit_refuses_what_cannot_be_encoded() {
        let long = [b'a'; 255];
        let o = [MobilityOption::MobileNodeIdentifier {
            subtype: 1,
            id: &long,
        }];
        let opts = Options::List(&o);
        let mut buf = vec![0u8; opts.buffer_len(12)];
        assert!(matches!(
            opts.emit(&mut buf, 12).unwrap_err().kind,
            ErrorKind::BadOptionLength { option: 8, .. }
        ));
        let o = [MobilityOption::Unknown {
            option_type: 22,
            data: &[1],
        }];
        let opts = Options::List(&o);
        let mut buf = vec![0u8; opts.buffer_len(12)];
        assert!(opts.emit(&mut buf, 12).is_err());
    }
}
