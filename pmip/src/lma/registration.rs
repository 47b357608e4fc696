//! RFC 5213 §5.3.1: a received Proxy Binding Update checked rule by rule and turned into a
//! [`Registration`], the one value the binding cache lookup (§5.4.1) and the updates
//! (§5.3.2-§5.3.5) work from. A PBU held for the previous MAG's de-registration is held as
//! its `Registration`, never re-encoded.

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::Ipv6Net;

use super::Lma;
use super::lookup::{Lookup, LookupKey, lookup};
use crate::cache::{MnId, Prefixes};
use crate::config::MobileNodeProfile;
use crate::time::ms;
use crate::types::LinkLayerAddress;
use crate::wire::{
    AccessTechnologyType, BindingUpdate, BuFlags, ErrorKind, HandoffIndicator, Lifetime,
    MN_ID_SUBTYPE_NAI, MobilityOption, OptionType, Options, ProxyBindingUpdate, SequenceNumber,
    Status, Timestamp, WallClock,
};

/// The ALL_ZERO prefix of a Home Network Prefix option (RFC 5213 §2.2): ask for one.
/// ALL_ZERO is the prefix field's value; the Prefix Length is a field of its own (§8.3), and
/// a MAG may well send `::/64` for it.
fn is_all_zero(p: &Ipv6Net) -> bool {
    p.addr().is_unspecified()
}

/// The home network prefixes a PBU asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestedPrefixes {
    /// The ALL_ZERO prefix alone: the LMA allocates (RFC 5213 §5.3.2 rule 1).
    Allocate,
    /// NON_ZERO prefixes by value (§5.3.2 rule 3, §5.4.1.1).
    Named(Prefixes),
    /// No Home Network Prefix option: a request for IPv4 home address mobility alone
    /// (RFC 5844 §3.1.2.1).
    Absent,
}

impl RequestedPrefixes {
    /// The prefixes by value; empty for [`RequestedPrefixes::Allocate`] and
    /// [`RequestedPrefixes::Absent`].
    pub fn named(&self) -> &[Ipv6Net] {
        match self {
            RequestedPrefixes::Allocate | RequestedPrefixes::Absent => &[],
            RequestedPrefixes::Named(p) => p.as_slice(),
        }
    }
}

/// The IPv4 home address a PBU asks for (RFC 5844 §3.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ipv4Request {
    /// `0.0.0.0`: the LMA allocates one (§3.1.2.2).
    Allocate,
    /// A NON_ZERO address (§3.1.2.2, the lookup key of §3.1.2.7).
    Named(Ipv4Addr),
}

impl Ipv4Request {
    pub fn named(&self) -> Option<Ipv4Addr> {
        match self {
            Ipv4Request::Allocate => None,
            Ipv4Request::Named(a) => Some(*a),
        }
    }
}

/// The value of a Mobile Node Link-layer Identifier option (RFC 5213 §8.6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MnLinkLayerId {
    /// A link-layer address the binding cache keeps and the lookup uses (§5.4.1.2).
    Address(LinkLayerAddress),
    /// An identifier the binding cache cannot keep (empty, or longer than
    /// [`LinkLayerAddress::MAX_LEN`]): copied into the PBA (§5.3.6), not used for the lookup.
    Other(Box<[u8]>),
}

impl MnLinkLayerId {
    fn new(bytes: &[u8]) -> Self {
        match LinkLayerAddress::new(bytes) {
            Some(a) => MnLinkLayerId::Address(a),
            None => MnLinkLayerId::Other(bytes.into()),
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        match self {
            MnLinkLayerId::Address(a) => a.as_bytes(),
            MnLinkLayerId::Other(b) => b,
        }
    }

    pub fn address(&self) -> Option<LinkLayerAddress> {
        match self {
            MnLinkLayerId::Address(a) => Some(*a),
            MnLinkLayerId::Other(_) => None,
        }
    }
}

/// A Proxy Binding Update that passed the checks of RFC 5213 §5.3.1, with what the lookup
/// and the binding cache updates need, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// The PBU's source address: the PBA's destination (§5.3.6).
    pub src: Ipv6Addr,
    /// The PBU's destination address: the PBA's source (§5.3.6).
    pub dst: Ipv6Addr,
    /// The Alternate Care-of Address when present, else the source address (§5.3.1 rule 13).
    pub proxy_coa: Ipv6Addr,
    pub mn_id: MnId,
    pub sequence: SequenceNumber,
    /// The lifetime asked for; zero is a de-registration (§5.3.5).
    pub lifetime: Lifetime,
    pub timestamp: Option<Timestamp>,
    pub prefixes: RequestedPrefixes,
    pub handoff_indicator: HandoffIndicator,
    pub access_technology_type: AccessTechnologyType,
    pub mn_link_layer_id: Option<MnLinkLayerId>,
    /// The Link-local Address option (§5.3.6, §6.8): ALL_ZERO asks the LMA for one.
    pub link_local_address: Option<Ipv6Addr>,
    /// A GRE Key option was present (RFC 5845 §6.4).
    pub gre_key: bool,
    /// The IPv4 Home Address Request option (RFC 5844 §3.3.1), with its Prefix-len.
    pub ipv4: Option<(Ipv4Request, u8)>,
}

impl Registration {
    pub fn is_deregistration(&self) -> bool {
        self.lifetime.is_zero()
    }

    /// What the lookup of §5.4.1 keys on.
    pub fn key(&self) -> LookupKey<'_> {
        LookupKey {
            mn_id: &self.mn_id,
            prefixes: self.prefixes.named(),
            ipv4: match self.ipv4 {
                Some((Ipv4Request::Named(a), _)) => Some(a),
                _ => None,
            },
            handoff_indicator: self.handoff_indicator,
            access_technology_type: self.access_technology_type,
            link_layer_address: self.link_layer_address(),
            proxy_coa: self.proxy_coa,
        }
    }

    /// The link-layer address the lookup and the binding cache entry use.
    pub fn link_layer_address(&self) -> Option<LinkLayerAddress> {
        self.mn_link_layer_id
            .as_ref()
            .and_then(MnLinkLayerId::address)
    }

    /// The PBA fields copied from this request (§5.3.6).
    pub(super) fn reply(&self) -> Reply<'_> {
        Reply {
            src: self.src,
            dst: self.dst,
            sequence: self.sequence,
            proxy: true,
            mn_id: self.mn_id.as_bytes(),
            mn_id_subtype: MN_ID_SUBTYPE_NAI,
            requested: RequestPrefixes::Slice(self.prefixes.named()),
            handoff_indicator: self.handoff_indicator,
            access_technology_type: self.access_technology_type,
            timestamp: self.timestamp,
            mn_link_layer_id: self.mn_link_layer_id.as_ref().map(MnLinkLayerId::as_bytes),
            link_local_address: self.link_local_address,
            ipv4_request: self
                .ipv4
                .map(|(r, len)| (len, r.named().unwrap_or(Ipv4Addr::UNSPECIFIED))),
            home_network_prefix_option: !matches!(self.prefixes, RequestedPrefixes::Absent),
        }
    }
}

/// Where the Home Network Prefixes of a request are, for a refusal that must list them.
#[derive(Debug, Clone, Copy)]
pub(super) enum RequestPrefixes<'a> {
    /// The options of a PBU that did not become a [`Registration`].
    Options(Options<'a>),
    Slice(&'a [Ipv6Net]),
}

impl RequestPrefixes<'_> {
    pub(super) fn to_vec(self) -> Vec<Ipv6Net> {
        match self {
            RequestPrefixes::Options(o) => o
                .iter()
                .filter_map(|o| match o {
                    MobilityOption::HomeNetworkPrefix(p) => Some(p),
                    _ => None,
                })
                .collect(),
            RequestPrefixes::Slice(s) => s.to_vec(),
        }
    }
}

/// The PBA fields that come from the request (RFC 5213 §5.3.6).
#[derive(Debug, Clone, Copy)]
pub(super) struct Reply<'a> {
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    pub sequence: SequenceNumber,
    pub proxy: bool,
    pub mn_id: &'a [u8],
    /// The MN-ID option's subtype, copied as it came (RFC 5213 §5.3.6).
    pub mn_id_subtype: u8,
    pub requested: RequestPrefixes<'a>,
    pub handoff_indicator: HandoffIndicator,
    pub access_technology_type: AccessTechnologyType,
    pub timestamp: Option<Timestamp>,
    pub mn_link_layer_id: Option<&'a [u8]>,
    pub link_local_address: Option<Ipv6Addr>,
    /// The request's IPv4 Home Address Request option (Prefix-len, address): the PBA then
    /// carries an IPv4 Home Address Reply (RFC 5844 §3.1.2.6).
    pub ipv4_request: Option<(u8, Ipv4Addr)>,
    /// The request had a Home Network Prefix option: without one (an IPv4-only request) the
    /// PBA carries none either (RFC 5844 §3.1.2.6).
    pub home_network_prefix_option: bool,
}

impl<'a> Reply<'a> {
    /// Reply fields for a PBU that did not become a [`Registration`]: the first instance of
    /// each option (a repeated single-instance option may be why).
    pub(super) fn of(bu: &BindingUpdate<'a>, src: Ipv6Addr, dst: Ipv6Addr) -> Self {
        let find = |t| bu.options.find(t);
        Reply {
            src,
            dst,
            sequence: bu.sequence,
            proxy: bu.flags.contains(BuFlags::P),
            mn_id: match find(OptionType::MobileNodeIdentifier) {
                Some(MobilityOption::MobileNodeIdentifier { id, .. }) => id,
                _ => &[],
            },
            mn_id_subtype: match find(OptionType::MobileNodeIdentifier) {
                Some(MobilityOption::MobileNodeIdentifier { subtype, .. }) => subtype,
                _ => MN_ID_SUBTYPE_NAI,
            },
            requested: RequestPrefixes::Options(bu.options),
            handoff_indicator: match find(OptionType::HandoffIndicator) {
                Some(MobilityOption::HandoffIndicator(h)) => h,
                _ => HandoffIndicator::Reserved,
            },
            access_technology_type: match find(OptionType::AccessTechnologyType) {
                Some(MobilityOption::AccessTechnologyType(a)) => a,
                _ => AccessTechnologyType::Reserved,
            },
            timestamp: match find(OptionType::Timestamp) {
                Some(MobilityOption::Timestamp(t)) => Some(t),
                _ => None,
            },
            mn_link_layer_id: match find(OptionType::MnLinkLayerIdentifier) {
                Some(MobilityOption::MnLinkLayerIdentifier(l)) => Some(l),
                _ => None,
            },
            link_local_address: match find(OptionType::LinkLocalAddress) {
                Some(MobilityOption::LinkLocalAddress(a)) => Some(a),
                _ => None,
            },
            ipv4_request: match find(OptionType::Ipv4HomeAddressRequest) {
                Some(MobilityOption::Ipv4HomeAddressRequest {
                    prefix_len,
                    address,
                }) => Some((prefix_len, address)),
                _ => None,
            },
            home_network_prefix_option: find(OptionType::HomeNetworkPrefix).is_some(),
        }
    }
}

/// A PBU refused by §5.3.1: the status to answer with. The PBA copies the rest from the
/// request ([`Reply::of`]).
#[derive(Debug, Clone, Copy)]
pub(super) struct Refusal {
    pub status: Status,
    /// The LMA's time of day, for the Timestamp option of a 156 or 157 (§5.5 rules 8, 9).
    pub lma_time: Option<Timestamp>,
    /// The last accepted sequence number, for a 135 (RFC 6275 §9.5.1).
    pub sequence: Option<SequenceNumber>,
    /// Who asked: the proxy-CoA, for the event.
    pub mag: Ipv6Addr,
}

impl Lma {
    /// RFC 5213 §5.3.1 rules 4-12 (rules 1-3, authentication and the Mobility Header checks
    /// of RFC 6275 §9.2, happen before a message gets here), and the message checks of other
    /// sections that refuse a PBU before its binding cache entry is looked up.
    pub(super) fn validate(
        &self,
        wall: WallClock,
        src: Ipv6Addr,
        dst: Ipv6Addr,
        bu: &BindingUpdate<'_>,
    ) -> Result<Registration, Refusal> {
        let pbu = match ProxyBindingUpdate::new(bu) {
            Ok(p) => p,
            Err(e) => {
                let status = match e.kind {
                    ErrorKind::DuplicateOption(OptionType::Ipv4HomeAddressRequest) => {
                        Status::MultipleIpv4HomeAddressAssignmentNotSupported
                    }
                    _ => Status::ReasonUnspecified,
                };
                return Err(Refusal {
                    status,
                    lma_time: None,
                    sequence: None,
                    mag: src,
                });
            }
        };
        let o = &pbu.opts;
        let proxy_coa = o.alternate_care_of_address.unwrap_or(src);
        let refuse = |status| {
            Err(Refusal {
                status,
                lma_time: None,
                sequence: None,
                mag: proxy_coa,
            })
        };
        // A Binding Update without P is no proxy registration (RFC 5213 §8.1), and an LMA is
        // neither a home agent nor a correspondent node doing route optimization: a home
        // registration gets 131 as from any node not configured as a home agent (RFC 6275
        // §10.3.1); a correspondent registration, for which RFC 6275 has no such status, the
        // generic 129. PROXY_REG_NOT_ENABLED is rule 8's, a per-node policy.
        if !pbu.flags.contains(BuFlags::P) {
            return refuse(if pbu.flags.contains(BuFlags::H) {
                Status::HomeRegistrationNotSupported
            } else {
                Status::AdministrativelyProhibited
            });
        }
        // Rule 4. An option with an empty identifier identifies nobody: as missing.
        let Some((subtype, id)) = o.mn_id.filter(|(_, id)| !id.is_empty()) else {
            return refuse(Status::MissingMnIdentifierOption);
        };
        // Rules 5-8. An identifier of a subtype other than the NAI (RFC 4283 §5: the only
        // one allocated) identifies no node here: rule 7, NOT_LMA_FOR_THIS_MOBILE_NODE, once
        // rules 5-6 found the MAG authorized. The option is there, so rule 4's status is not
        // the one.
        let mn_id = (subtype == MN_ID_SUBTYPE_NAI)
            .then(|| core::str::from_utf8(id).ok())
            .flatten();
        // Rules 5-6 authorize the sender (its security association's peer), not the
        // Alternate Care-of Address, which only names the tunnel end (rule 13).
        let (ipv6_service, ipv4_service) = match self.authorize(src, mn_id) {
            Ok(profile) => (profile.ipv6, profile.ipv4),
            Err(status) => return refuse(status),
        };
        let mn_id = mn_id.unwrap_or_default();
        // A prefix sent with host bits set names the prefix they sit in (RFC 4291 §2.3).
        let requested = Prefixes::collect(pbu.home_network_prefixes().map(|p| p.trunc()));
        // Rule 9: the Timestamp option, or without one the sequence number (§5.5).
        if let Some(ts) = o.timestamp {
            let lma_now = Timestamp::from_wall_clock(wall);
            let window = ms(self.config.timers.timestamp_validity_window_ms);
            let refuse_at = |status| {
                Err(Refusal {
                    status,
                    lma_time: Some(lma_now),
                    sequence: None,
                    mag: proxy_coa,
                })
            };
            if ts.abs_diff(lma_now) > window {
                return refuse_at(Status::TimestampMismatch);
            }
            let newest = self
                .cache
                .sessions_of(mn_id)
                .filter_map(|s| self.cache.get(s).and_then(|e| e.ordering.timestamp()))
                .max();
            // Rule 8: lower than accepted is 157. Rule 6 wants it greater: an equal one is
            // not valid, and rule 9 answers what is not valid with 156.
            match newest.map(|n| ts.cmp(&n)) {
                Some(core::cmp::Ordering::Less) => {
                    return refuse_at(Status::TimestampLowerThanPrevAccepted);
                }
                Some(core::cmp::Ordering::Equal) => return refuse_at(Status::TimestampMismatch),
                _ => {}
            }
        } else {
            // Sequence numbers are kept per mobility session (§5.5): the session is the one
            // the lookup of §5.4.1 finds with what the PBU carries. Its table keys a PBU
            // without any Home Network Prefix option like one with ALL_ZERO ("no HNP option
            // with a NON_ZERO value"), so a PBU that rules 10-12 will refuse still gets the
            // status of this rule first. RFC 6275 §9.5.1: not newer than the last accepted
            // is refused with 135 and the last accepted number.
            let named: Prefixes = Prefixes::collect(
                requested
                    .as_slice()
                    .iter()
                    .copied()
                    .filter(|p| !is_all_zero(p)),
            );
            let key = LookupKey {
                mn_id,
                prefixes: named.as_slice(),
                ipv4: o
                    .ipv4_home_address_request
                    .map(|(_, a)| a)
                    .filter(|a| !a.is_unspecified()),
                handoff_indicator: o.handoff_indicator.unwrap_or(HandoffIndicator::Reserved),
                access_technology_type: o
                    .access_technology_type
                    .unwrap_or(AccessTechnologyType::Reserved),
                link_layer_address: o.mn_link_layer_id.and_then(LinkLayerAddress::new),
                proxy_coa,
            };
            if let Lookup::Existing(s) = lookup(&self.cache, &key, true)
                && let Some(e) = self.cache.get(s)
                && !pbu.sequence.is_newer_than(e.ordering.sequence)
            {
                return Err(Refusal {
                    status: Status::SequenceNumberOutOfWindow,
                    lma_time: None,
                    sequence: Some(e.ordering.sequence),
                    mag: proxy_coa,
                });
            }
        }
        // Rules 10-12. RFC 5844 §3.1.2.1: an IPv4 Home Address Request alone is not a
        // missing prefix option; with neither, it is.
        if o.hnp_count == 0 && o.ipv4_home_address_request.is_none() {
            return refuse(Status::MissingHomeNetworkPrefixOption);
        }
        let Some(handoff_indicator) = o.handoff_indicator else {
            return refuse(Status::MissingHandoffIndicatorOption);
        };
        let Some(access_technology_type) = o.access_technology_type else {
            return refuse(Status::MissingAccessTechTypeOption);
        };
        // RFC 5844 §4.1.3.1 and §5.1: the F flag forces IPv4-UDP encapsulation, which needs
        // the IPv4 transport (not built); AcceptForcedIPv4UDPEncapsulationRequest is 0.
        if pbu.flags.contains(BuFlags::F) {
            return refuse(Status::AdministrativelyProhibited);
        }
        // RFC 5844 §3.1.2.1: a prefix option for a node not entitled to IPv6 service.
        if o.hnp_count > 0 && !ipv6_service {
            return refuse(Status::NotAuthorizedForIpv6MobilityService);
        }
        // RFC 5844 §3.1.2.1: an IPv4 request for a node not entitled to IPv4 service, or
        // with no IPv4 home subnet here ("IPv4 routing is not enabled in the home network").
        if o.ipv4_home_address_request.is_some() && !(ipv4_service && self.ipv4.is_enabled()) {
            return refuse(Status::NotAuthorizedForIpv4MobilityService);
        }
        let ipv4 = o.ipv4_home_address_request.map(|(prefix_len, address)| {
            let r = if address.is_unspecified() {
                Ipv4Request::Allocate
            } else {
                Ipv4Request::Named(address)
            };
            (r, prefix_len)
        });
        // RFC 5213 §6.9.1.1 rule 3: ALL_ZERO must be the only prefix option.
        let all_zero = requested.as_slice().iter().any(is_all_zero);
        let prefixes = match (all_zero, requested.as_slice().len()) {
            (_, 0) => RequestedPrefixes::Absent,
            (true, 1) => RequestedPrefixes::Allocate,
            (true, _) => return refuse(Status::ReasonUnspecified),
            (false, _) => RequestedPrefixes::Named(requested),
        };
        Ok(Registration {
            src,
            dst,
            proxy_coa,
            mn_id: mn_id.into(),
            sequence: pbu.sequence,
            lifetime: pbu.lifetime,
            timestamp: o.timestamp,
            prefixes,
            handoff_indicator,
            access_technology_type,
            mn_link_layer_id: o.mn_link_layer_id.map(MnLinkLayerId::new),
            link_local_address: o.link_local_address,
            gre_key: o.gre_key.is_some(),
            ipv4,
        })
    }

    /// RFC 5213 §5.3.1 rules 5-8: the sender may register this node, and the node is ours.
    /// Checked on arrival and again when a held PBU goes ahead, since policy may have
    /// changed while it waited.
    /// Rules 5-8 for a PBU that `sender` sent (RFC 5213 §5.3.1 rule 5: "sent by a trusted
    /// mobile access gateway").
    pub(super) fn authorize(
        &self,
        sender: Ipv6Addr,
        mn_id: Option<&str>,
    ) -> Result<&MobileNodeProfile, Status> {
        // Rules 5 and 6.
        if !self.policy.is_mag_authorized(&sender) {
            return Err(Status::MagNotAuthorizedForProxyReg);
        }
        // Rule 7.
        let profile = mn_id
            .and_then(|id| self.policy.lookup(id))
            .ok_or(Status::NotLmaForThisMobileNode)?;
        // Rule 6 again, per node: a profile may limit the MAGs that serve it.
        if !profile.allowed_mags.is_empty() && !profile.allowed_mags.contains(&sender) {
            return Err(Status::MagNotAuthorizedForProxyReg);
        }
        // Rule 8.
        if !profile.proxy_registration_enabled {
            return Err(Status::ProxyRegNotEnabled);
        }
        Ok(profile)
    }
}

#[cfg(test)]
mod tests {
    use core::time::Duration;
    use std::net::Ipv4Addr;

    use super::*;
    use crate::cache::{BindingCacheEntry, Ordering};
    use crate::config::LmaConfig;
    use crate::time::Instant;
    use crate::types::Nai;
    use crate::wire::MN_ID_SUBTYPE_NAI;

    const LMA: &str = "2001:db8:ffff::1";
    const MN: &[u8] = b"mn@example.org";

    fn mag(n: u16) -> Ipv6Addr {
        Ipv6Addr::new(0x2001, 0xdb8, n, 0, 0, 0, 0, 0x10)
    }

    fn wall() -> WallClock {
        WallClock::from_unix(1_750_000_000, 0)
    }

    /// An LMA that serves `mn@example.org`, `limited@example.org` (through MAG 2 only),
    /// `v4only@example.org` (IPv4 only) and `disabled@example.org` (proxy registration not
    /// enabled), authorizes MAGs 1 and 2, and has a binding for `mn@example.org` accepted at
    /// `wall()`.
    fn lma() -> Lma {
        let mut c: LmaConfig = serde_saphyr::from_str(&format!(
            "address: {LMA}\nprefix_pools: [{{prefix: '2001:db8:100::/48'}}]\n"
        ))
        .unwrap();
        c.authorized_mags = vec![mag(1).into(), mag(2).into()];
        let mut limited = MobileNodeProfile::new(Nai::new("limited@example.org").unwrap());
        limited.allowed_mags = vec![mag(2)];
        let mut v4only = MobileNodeProfile::new(Nai::new("v4only@example.org").unwrap());
        v4only.ipv6 = false;
        v4only.ipv4 = true;
        let mut disabled = MobileNodeProfile::new(Nai::new("disabled@example.org").unwrap());
        disabled.proxy_registration_enabled = false;
        c.mobile_nodes = vec![
            MobileNodeProfile::new(Nai::new("mn@example.org").unwrap()),
            limited,
            v4only,
            disabled,
        ];
        let mut lma = Lma::new(c, 1, 1).unwrap();
        lma.cache.insert(BindingCacheEntry::new(
            "mn@example.org".into(),
            Prefixes::One("2001:db8:100:7::/64".parse().unwrap()),
            mag(1),
            AccessTechnologyType::Ieee8023,
            HandoffIndicator::AttachmentOverNewInterface,
            None,
            None,
            3600,
            Instant::ZERO,
            Ordering::new(Some(Timestamp::from_wall_clock(wall())), SequenceNumber(1)),
        ));
        lma
    }

    fn id(id: &[u8]) -> MobilityOption<'_> {
        MobilityOption::MobileNodeIdentifier {
            subtype: MN_ID_SUBTYPE_NAI,
            id,
        }
    }

    fn hnp(s: &str) -> MobilityOption<'static> {
        MobilityOption::HomeNetworkPrefix(s.parse().unwrap())
    }

    const HI: MobilityOption<'static> =
        MobilityOption::HandoffIndicator(HandoffIndicator::AttachmentOverNewInterface);
    const ATT: MobilityOption<'static> =
        MobilityOption::AccessTechnologyType(AccessTechnologyType::Ieee8023);
    const V4: MobilityOption<'static> = MobilityOption::Ipv4HomeAddressRequest {
        prefix_len: 0,
        address: Ipv4Addr::UNSPECIFIED,
    };

    /// 10 ms after the accepted binding: valid.
    fn ts() -> MobilityOption<'static> {
        MobilityOption::Timestamp(Timestamp::from_wall_clock(
            wall() + Duration::from_millis(10),
        ))
    }

    fn ts_at(offset_ms: i64) -> MobilityOption<'static> {
        let w = wall().since_epoch();
        let d = Duration::from_millis(offset_ms.unsigned_abs());
        MobilityOption::Timestamp(Timestamp::from_wall_clock(WallClock(if offset_ms >= 0 {
            w + d
        } else {
            w - d
        })))
    }

    fn validate(
        lma: &Lma,
        flags: BuFlags,
        from: u16,
        opts: &[MobilityOption<'_>],
    ) -> Result<Registration, Status> {
        let bu = BindingUpdate {
            sequence: SequenceNumber(9),
            flags,
            lifetime: Lifetime::from_secs(3600),
            options: Options::List(opts),
        };
        let now = wall() + Duration::from_millis(20);
        lma.validate(now, mag(from), LMA.parse().unwrap(), &bu)
            .map_err(|r| r.status)
    }

    /// RFC 5213 §5.3.1 rules 4-12, one row per refusal, each PBU failing that rule and
    /// every rule after it that it can fail: the first rule decides.
    #[test]
    fn each_rule_refuses_with_its_status_in_the_rfcs_order() {
        use Status as S;
        let ap = BuFlags::A | BuFlags::P;
        let lma = lma();
        let all_zero = hnp("::/0");
        #[rustfmt::skip]
        let rows: Vec<(&str, BuFlags, u16, Vec<MobilityOption<'_>>, Status)> = vec![
            ("a repeated option (RFC 6275 §9.2)", ap, 1, vec![id(MN), all_zero, HI, HI, ATT], S::ReasonUnspecified),
            ("two IPv4 requests (RFC 5844 §3.3.5)", ap, 1, vec![id(MN), all_zero, HI, ATT, V4, V4], S::MultipleIpv4HomeAddressAssignmentNotSupported),
            ("no P flag, H: not a home agent", BuFlags::A | BuFlags::H, 9, vec![], S::HomeRegistrationNotSupported),
            ("no P flag: no route optimization", BuFlags::A, 9, vec![], S::AdministrativelyProhibited),
            ("rule 4: no MN-ID", ap, 9, vec![], S::MissingMnIdentifierOption),
            ("rule 4: an MN-ID option with an empty identifier", ap, 9, vec![id(b"")], S::MissingMnIdentifierOption),
            ("rules 5-6: a MAG nobody authorized", ap, 9, vec![id(b"nobody@x")], S::MagNotAuthorizedForProxyReg),
            ("rules 5-6: the sender is authorized, not an Alternate CoA it names", ap, 9, vec![id(MN), MobilityOption::AlternateCareOfAddress(mag(1))], S::MagNotAuthorizedForProxyReg),
            ("rule 7: a node nobody knows", ap, 1, vec![id(b"nobody@x")], S::NotLmaForThisMobileNode),
            ("rule 7: an identifier that is not UTF-8", ap, 1, vec![id(&[0xff, 0xfe])], S::NotLmaForThisMobileNode),
            ("rule 6: a MAG the profile does not allow", ap, 1, vec![id(b"limited@example.org"), ts_at(-9000)], S::MagNotAuthorizedForProxyReg),
            ("rule 8: proxy registration not enabled", ap, 2, vec![id(b"disabled@example.org"), ts_at(-9000)], S::ProxyRegNotEnabled),
            ("rule 9: a timestamp outside the window", ap, 1, vec![id(MN), ts_at(-9000)], S::TimestampMismatch),
            ("rule 8: a timestamp lower than accepted", ap, 1, vec![id(MN), ts_at(-5)], S::TimestampLowerThanPrevAccepted),
            ("rules 6 and 9: a timestamp equal to the accepted one is not valid", ap, 1, vec![id(MN), ts_at(0)], S::TimestampMismatch),
            ("rule 10: no HNP", ap, 1, vec![id(MN), ts()], S::MissingHomeNetworkPrefixOption),
            ("rule 10 and RFC 5844 §3.1.2.1: no HNP but IPv4 is not missing a prefix", ap, 1, vec![id(MN), V4], S::MissingHandoffIndicatorOption),
            ("rule 11: no HI", ap, 1, vec![id(MN), all_zero], S::MissingHandoffIndicatorOption),
            ("rule 12: no ATT", ap, 1, vec![id(MN), all_zero, HI], S::MissingAccessTechTypeOption),
            ("RFC 5844 §4.1.3.1: F (forced IPv4-UDP) is not accepted", ap | BuFlags::F, 1, vec![id(MN), all_zero, HI, ATT], S::AdministrativelyProhibited),
            ("RFC 5844 §3.1.2.1: an IPv4-only node asks for a prefix", ap, 1, vec![id(b"v4only@example.org"), all_zero, HI, ATT, V4], S::NotAuthorizedForIpv6MobilityService),
            ("RFC 5844 §3.1.2.1: a node not entitled to IPv4", ap, 1, vec![id(MN), all_zero, HI, ATT, V4], S::NotAuthorizedForIpv4MobilityService),
            ("RFC 5844 §3.1.2.1: IPv4 alone, not entitled", ap, 1, vec![id(MN), HI, ATT, V4], S::NotAuthorizedForIpv4MobilityService),
            ("RFC 5844 §3.1.2.1: entitled, but no IPv4 home subnet here", ap, 1, vec![id(b"v4only@example.org"), HI, ATT, V4], S::NotAuthorizedForIpv4MobilityService),
            ("§6.9.1.1: ALL_ZERO with another prefix", ap, 1, vec![id(MN), all_zero, hnp("2001:db8:100:7::/64"), HI, ATT], S::ReasonUnspecified),
        ];
        for (what, flags, from, opts, want) in rows {
            assert_eq!(
                validate(&lma, flags, from, &opts).err(),
                Some(want),
                "{what}"
            );
        }
    }

    #[test]
    fn a_valid_pbu_becomes_a_registration() {
        let lma = lma();
        let ll = [2, 0, 0, 0, 0, 1];
        let acoa = Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 0x10);
        let opts = [
            id(MN),
            hnp("2001:db8:100:7::/64"),
            HI,
            ATT,
            ts(),
            MobilityOption::MnLinkLayerIdentifier(&ll),
            MobilityOption::LinkLocalAddress(Ipv6Addr::UNSPECIFIED),
            MobilityOption::AlternateCareOfAddress(acoa),
            MobilityOption::GreKey(None),
        ];
        let r = validate(&lma, BuFlags::A | BuFlags::P, 1, &opts).unwrap();
        assert_eq!(r.src, mag(1));
        assert_eq!(
            r.proxy_coa, acoa,
            "the Alternate Care-of Address is the proxy-CoA"
        );
        assert_eq!(&*r.mn_id, "mn@example.org");
        assert_eq!(r.sequence, SequenceNumber(9));
        assert!(!r.is_deregistration());
        assert_eq!(
            r.prefixes.named(),
            &["2001:db8:100:7::/64".parse::<Ipv6Net>().unwrap()]
        );
        assert_eq!(r.link_layer_address(), LinkLayerAddress::new(&ll));
        assert_eq!(r.link_local_address, Some(Ipv6Addr::UNSPECIFIED));
        assert!(r.gre_key);
        // ALL_ZERO alone asks for an allocation; an identifier the cache cannot keep is
        // kept for the PBA only.
        let long = [7u8; 20];
        let opts = [
            id(MN),
            hnp("::/0"),
            HI,
            ATT,
            MobilityOption::MnLinkLayerIdentifier(&long),
        ];
        let r = validate(&lma, BuFlags::A | BuFlags::P, 2, &opts).unwrap();
        assert_eq!(r.prefixes, RequestedPrefixes::Allocate);
        // ALL_ZERO is the prefix's value, whatever length a MAG gives it (RFC 5213 §2.2).
        for all_zero in ["::/64", "::/128"] {
            let opts = [id(MN), hnp(all_zero), HI, ATT];
            let r = validate(&lma, BuFlags::A | BuFlags::P, 2, &opts).unwrap();
            assert_eq!(r.prefixes, RequestedPrefixes::Allocate, "{all_zero}");
        }
        // An authorized sender may name a tunnel end nobody listed (rule 13).
        let unlisted = Ipv6Addr::new(0x2001, 0xdb8, 0x77, 0, 0, 0, 0, 0x10);
        let opts = [
            id(MN),
            hnp("::/0"),
            HI,
            ATT,
            MobilityOption::AlternateCareOfAddress(unlisted),
        ];
        let r2 = validate(&lma, BuFlags::A | BuFlags::P, 1, &opts).unwrap();
        assert_eq!((r2.src, r2.proxy_coa), (mag(1), unlisted));
        // A prefix with host bits names the prefix they are in.
        let opts = [id(MN), hnp("2001:db8:100:7::1/64"), HI, ATT];
        let host_bits = validate(&lma, BuFlags::A | BuFlags::P, 2, &opts).unwrap();
        assert_eq!(
            host_bits.prefixes.named(),
            &["2001:db8:100:7::/64".parse::<Ipv6Net>().unwrap()]
        );
        assert_eq!(r.timestamp, None);
        assert_eq!(r.link_layer_address(), None);
        assert_eq!(r.reply().mn_link_layer_id, Some(&long[..]));
    }
}
