//! Typed views of the PMIPv6 messages: the options each kind uses, picked out once, with
//! repeated single-instance options and missing mandatory ones reported as errors.
//!
//! Building a view never allocates: repeated options (Home Network Prefix) stay in the
//! message and are iterated on demand.

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::Ipv6Net;

use super::Result;
use super::error::{Error, ErrorKind};
use super::handover::{HackFlags, HandoverAck, HandoverInitiate, HiFlags};
use super::heartbeat::Heartbeat;
use super::message::{BindingAck, BindingUpdate};
use super::option::{ContextRequest, LmaAddress, MobilityOption, OptionType, Options};
use super::sequence::SequenceNumber;
use super::timestamp::Timestamp;
use super::values::{
    AccessTechnologyType, BaFlags, BuFlags, HandoffIndicator, Ipv4HoaStatus, Lifetime,
    MN_ID_SUBTYPE_NAI, Status,
};

/// Stores `v` in `slot`, refusing a second instance of a single-instance option.
fn once<T>(slot: &mut Option<T>, v: T, t: OptionType, at: usize) -> Result<()> {
    if slot.is_some() {
        return Err(Error::new(at, ErrorKind::DuplicateOption(t)));
    }
    *slot = Some(v);
    Ok(())
}

/// The options shared by PBU, PBA, HI and HAck (RFC 5213 §8.1, §8.2; RFC 5949 §6.2).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CommonOptions<'a> {
    /// Identifier octets of the Mobile Node Identifier option, with its subtype.
    pub mn_id: Option<(u8, &'a [u8])>,
    pub hnp_count: usize,
    /// The first Home Network Prefix option, so that the usual single prefix needs no second
    /// pass over the options.
    pub first_hnp: Option<Ipv6Net>,
    pub handoff_indicator: Option<HandoffIndicator>,
    pub access_technology_type: Option<AccessTechnologyType>,
    pub timestamp: Option<Timestamp>,
    pub mn_link_layer_id: Option<&'a [u8]>,
    pub link_local_address: Option<Ipv6Addr>,
    pub alternate_care_of_address: Option<Ipv6Addr>,
    pub gre_key: Option<Option<u32>>,
    pub ipv4_home_address_request: Option<(u8, Ipv4Addr)>,
    pub ipv4_home_address_reply: Option<(Ipv4HoaStatus, u8, Ipv4Addr)>,
    pub ipv4_default_router: Option<Ipv4Addr>,
    pub ipv4_dhcp_server: Option<bool>,
    pub lma_address: Option<LmaAddress>,
    pub mn_link_local_iid: Option<[u8; 8]>,
    pub context_request: Option<ContextRequest<'a>>,
    pub restart_counter: Option<u32>,
}

impl<'a> CommonOptions<'a> {
    pub fn collect(options: &Options<'a>) -> Result<Self> {
        use MobilityOption as O;
        let mut c = CommonOptions::default();
        for (at, o) in options.iter_at() {
            let t = o.option_type();
            match o {
                O::MobileNodeIdentifier { subtype, id } => {
                    once(&mut c.mn_id, (subtype, id), t, at)?
                }
                O::HomeNetworkPrefix(p) => {
                    c.hnp_count += 1;
                    c.first_hnp.get_or_insert(p);
                }
                O::HandoffIndicator(v) => once(&mut c.handoff_indicator, v, t, at)?,
                O::AccessTechnologyType(v) => once(&mut c.access_technology_type, v, t, at)?,
                O::Timestamp(v) => once(&mut c.timestamp, v, t, at)?,
                O::MnLinkLayerIdentifier(v) => once(&mut c.mn_link_layer_id, v, t, at)?,
                O::LinkLocalAddress(v) => once(&mut c.link_local_address, v, t, at)?,
                O::AlternateCareOfAddress(v) => once(&mut c.alternate_care_of_address, v, t, at)?,
                O::GreKey(v) => once(&mut c.gre_key, v, t, at)?,
                O::Ipv4HomeAddressRequest {
                    prefix_len,
                    address,
                } => once(
                    &mut c.ipv4_home_address_request,
                    (prefix_len, address),
                    t,
                    at,
                )?,
                O::Ipv4HomeAddressReply {
                    status,
                    prefix_len,
                    address,
                } => once(
                    &mut c.ipv4_home_address_reply,
                    (status, prefix_len, address),
                    t,
                    at,
                )?,
                O::Ipv4DefaultRouterAddress(v) => once(&mut c.ipv4_default_router, v, t, at)?,
                O::Ipv4DhcpSupportMode { server } => once(&mut c.ipv4_dhcp_server, server, t, at)?,
                O::LmaAddress(v) => once(&mut c.lma_address, v, t, at)?,
                O::MnLinkLocalInterfaceId(v) => once(&mut c.mn_link_local_iid, v, t, at)?,
                O::ContextRequest(v) => once(&mut c.context_request, v, t, at)?,
                O::RestartCounter(v) => once(&mut c.restart_counter, v, t, at)?,
                // Any number of Vendor-Specific options (RFC 5213 §8.1); unknown ones are
                // skipped (RFC 6275 §6.2.1).
                O::VendorSpecific { .. } | O::Unknown { .. } => {}
            }
        }
        Ok(c)
    }

    /// The NAI of the Mobile Node Identifier option, when it has subtype 1.
    pub fn nai(&self) -> Option<&'a [u8]> {
        match self.mn_id {
            Some((MN_ID_SUBTYPE_NAI, id)) => Some(id),
            _ => None,
        }
    }
}

fn prefixes<'a>(options: Options<'a>) -> impl Iterator<Item = Ipv6Net> + use<'a> {
    options.iter().filter_map(|o| match o {
        MobilityOption::HomeNetworkPrefix(p) => Some(p),
        _ => None,
    })
}

/// A Proxy Binding Update (RFC 5213 §8.1) with its options picked out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyBindingUpdate<'a> {
    pub sequence: SequenceNumber,
    pub flags: BuFlags,
    pub lifetime: Lifetime,
    pub opts: CommonOptions<'a>,
    pub options: Options<'a>,
}

impl<'a> ProxyBindingUpdate<'a> {
    /// Picks out the options of a Binding Update. Fails only on a repeated single-instance
    /// option; use [`ProxyBindingUpdate::check_mandatory`] for flags and missing options.
    pub fn new(bu: &BindingUpdate<'a>) -> Result<Self> {
        Ok(ProxyBindingUpdate {
            sequence: bu.sequence,
            flags: bu.flags,
            lifetime: bu.lifetime,
            opts: CommonOptions::collect(&bu.options)?,
            options: bu.options,
        })
    }

    /// The checks of RFC 5213 §5.3.1 that need nothing but the message, in the RFC's order:
    /// the P flag (→ PROXY_REG_NOT_ENABLED), the MN-ID (→ 160), a Home Network Prefix
    /// (→ 158), the Handoff Indicator (→ 161) and the Access Technology Type (→ 162).
    /// Policy checks come between the MN-ID and the prefix; the LMA interleaves them.
    pub fn check_mandatory(&self) -> Result<()> {
        if !self.flags.contains(BuFlags::P) {
            return Err(Error::new(8, ErrorKind::MissingFlag { flag: "P" }));
        }
        let missing = |t| Err(Error::new(12, ErrorKind::MissingOption(t)));
        if self.opts.mn_id.is_none() {
            return missing(OptionType::MobileNodeIdentifier);
        }
        if self.opts.hnp_count == 0 {
            return missing(OptionType::HomeNetworkPrefix);
        }
        if self.opts.handoff_indicator.is_none() {
            return missing(OptionType::HandoffIndicator);
        }
        if self.opts.access_technology_type.is_none() {
            return missing(OptionType::AccessTechnologyType);
        }
        Ok(())
    }

    /// The Home Network Prefix options, in order.
    pub fn home_network_prefixes(&self) -> impl Iterator<Item = Ipv6Net> + use<'a> {
        let single = (self.opts.hnp_count == 1)
            .then_some(self.opts.first_hnp)
            .flatten();
        let rest = (self.opts.hnp_count != 1).then(|| prefixes(self.options));
        single.into_iter().chain(rest.into_iter().flatten())
    }

    /// True when the PBU carries only the ALL_ZERO prefix (of any Prefix Length, RFC 5213
    /// §2.2): the MAG asks for an allocation.
    pub fn requests_new_prefix(&self) -> bool {
        self.home_network_prefixes()
            .all(|p| p.addr().is_unspecified())
    }

    pub fn is_deregistration(&self) -> bool {
        self.lifetime.is_zero()
    }
}

/// A Proxy Binding Acknowledgement (RFC 5213 §8.2) with its options picked out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyBindingAck<'a> {
    pub status: Status,
    pub flags: BaFlags,
    pub sequence: SequenceNumber,
    pub lifetime: Lifetime,
    pub opts: CommonOptions<'a>,
    pub options: Options<'a>,
}

impl<'a> ProxyBindingAck<'a> {
    pub fn new(ba: &BindingAck<'a>) -> Result<Self> {
        Ok(ProxyBindingAck {
            status: ba.status,
            flags: ba.flags,
            sequence: ba.sequence,
            lifetime: ba.lifetime,
            opts: CommonOptions::collect(&ba.options)?,
            options: ba.options,
        })
    }

    /// A PBA MUST have P set and carry the MN-ID (RFC 5213 §8.2, §5.3.6); an accepted one
    /// carries the prefix(es) too.
    pub fn check_mandatory(&self) -> Result<()> {
        if !self.flags.contains(BaFlags::P) {
            return Err(Error::new(7, ErrorKind::MissingFlag { flag: "P" }));
        }
        if self.opts.mn_id.is_none() {
            return Err(Error::new(
                12,
                ErrorKind::MissingOption(OptionType::MobileNodeIdentifier),
            ));
        }
        if self.status.is_accepted() && self.opts.hnp_count == 0 {
            return Err(Error::new(
                12,
                ErrorKind::MissingOption(OptionType::HomeNetworkPrefix),
            ));
        }
        Ok(())
    }

    pub fn home_network_prefixes(&self) -> impl Iterator<Item = Ipv6Net> + use<'a> {
        prefixes(self.options)
    }
}

/// The mobile node's context carried by a Handover Initiate or Acknowledge (RFC 5949 §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandoverContext<'a> {
    pub opts: CommonOptions<'a>,
    pub options: Options<'a>,
}

impl<'a> HandoverContext<'a> {
    fn new(options: Options<'a>) -> Result<Self> {
        Ok(HandoverContext {
            opts: CommonOptions::collect(&options)?,
            options,
        })
    }

    /// Context of a Handover Initiate: P set, S clear, an MN-ID present (RFC 5949 §6.1.1).
    pub fn of_hi(hi: &HandoverInitiate<'a>) -> Result<Self> {
        if !hi.flags.contains(HiFlags::P) {
            return Err(Error::new(8, ErrorKind::MissingFlag { flag: "P" }));
        }
        if hi.flags.contains(HiFlags::S) {
            return Err(Error::new(
                8,
                ErrorKind::BadValue {
                    field: "HI S flag (MUST be 0 with P=1)",
                    value: 1,
                },
            ));
        }
        Self::with_mn_id(hi.options)
    }

    /// Context of a Handover Acknowledge: P set, the MN-ID copied from the HI (§6.1.2).
    pub fn of_hack(hack: &HandoverAck<'a>) -> Result<Self> {
        if !hack.flags.contains(HackFlags::P) {
            return Err(Error::new(8, ErrorKind::MissingFlag { flag: "P" }));
        }
        Self::with_mn_id(hack.options)
    }

    fn with_mn_id(options: Options<'a>) -> Result<Self> {
        let c = Self::new(options)?;
        if c.opts.mn_id.is_none() {
            return Err(Error::new(
                10,
                ErrorKind::MissingOption(OptionType::MobileNodeIdentifier),
            ));
        }
        Ok(c)
    }

    pub fn home_network_prefixes(&self) -> impl Iterator<Item = Ipv6Net> + use<'a> {
        prefixes(self.options)
    }
}

/// A Heartbeat with its Restart Counter (RFC 5847 §3.4: only in responses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeartbeatView {
    pub sequence: u32,
    pub is_response: bool,
    pub unsolicited: bool,
    pub restart_counter: Option<u32>,
}

impl HeartbeatView {
    pub fn new(hb: &Heartbeat<'_>) -> Result<Self> {
        let opts = CommonOptions::collect(&hb.options)?;
        Ok(HeartbeatView {
            sequence: hb.sequence,
            is_response: hb.is_response(),
            unsolicited: hb.flags.contains(super::heartbeat::HeartbeatFlags::U),
            restart_counter: opts.restart_counter,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::message::Message;

    #[test]
    fn missing_options_are_reported_in_rfc_order() {
        let hnp = MobilityOption::HomeNetworkPrefix("::/0".parse().unwrap());
        let id = MobilityOption::MobileNodeIdentifier {
            subtype: 1,
            id: b"a@b",
        };
        let hi = MobilityOption::HandoffIndicator(HandoffIndicator::AttachmentOverNewInterface);
        let att = MobilityOption::AccessTechnologyType(AccessTechnologyType::Ieee8023);
        let cases: [(&[MobilityOption<'_>], Option<OptionType>); 5] = [
            (&[], Some(OptionType::MobileNodeIdentifier)),
            (&[id], Some(OptionType::HomeNetworkPrefix)),
            (&[id, hnp], Some(OptionType::HandoffIndicator)),
            (&[id, hnp, hi], Some(OptionType::AccessTechnologyType)),
            (&[att, hi, hnp, id], None),
        ];
        for (opts, want) in cases {
            let bu = BindingUpdate {
                sequence: SequenceNumber(1),
                flags: BuFlags::A | BuFlags::P,
                lifetime: Lifetime(10),
                options: Options::List(opts),
            };
            let pbu = ProxyBindingUpdate::new(&bu).unwrap();
            match want {
                Some(t) => assert_eq!(
                    pbu.check_mandatory().unwrap_err().kind,
                    ErrorKind::MissingOption(t)
                ),
                None => {
                    pbu.check_mandatory().unwrap();
                    assert!(pbu.requests_new_prefix());
                }
            }
        }
        let bu = BindingUpdate {
            sequence: SequenceNumber(1),
            flags: BuFlags::A,
            lifetime: Lifetime(10),
            options: Options::List(&[]),
        };
        assert_eq!(
            ProxyBindingUpdate::new(&bu)
                .unwrap()
                .check_mandatory()
                .unwrap_err()
                .kind,
            ErrorKind::MissingFlag { flag: "P" }
        );
    }

    #[test]
    fn a_repeated_option_is_refused_with_its_offset() {
        let opts = [
            MobilityOption::HandoffIndicator(HandoffIndicator::HandoffBetweenMags),
            MobilityOption::HandoffIndicator(HandoffIndicator::HandoffStateUnknown),
        ];
        let m = Message::BindingUpdate(BindingUpdate {
            sequence: SequenceNumber(1),
            flags: BuFlags::A | BuFlags::P,
            lifetime: Lifetime(10),
            options: Options::List(&opts),
        });
        let mut buf = [0u8; 64];
        let n = m.emit(&mut buf).unwrap();
        let Message::BindingUpdate(bu) = Message::parse_bytes(&buf[..n]).unwrap() else {
            panic!("not a BU")
        };
        let e = ProxyBindingUpdate::new(&bu).unwrap_err();
        assert_eq!(e.offset, 16);
        assert_eq!(
            e.kind,
            ErrorKind::DuplicateOption(OptionType::HandoffIndicator)
        );
    }
}
