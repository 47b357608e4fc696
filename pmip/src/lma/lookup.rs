//! RFC 5213 §5.4.1: which mobility session a request belongs to, from the binding cache
//! alone.

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::Ipv6Net;

use crate::cache::{BindingCache, BindingCacheEntry, BindingState, SessionId};
use crate::types::LinkLayerAddress;
use crate::wire::{AccessTechnologyType, HandoffIndicator, Status};

/// What the lookup of §5.4.1 keys on, borrowed from a [`super::Registration`] or, for the
/// sequence number check of §5.3.1 rule 9, from a PBU not yet validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LookupKey<'a> {
    pub mn_id: &'a str,
    /// The request's NON_ZERO prefixes; empty when it has none (ALL_ZERO, or no option).
    pub prefixes: &'a [Ipv6Net],
    /// The request's NON_ZERO IPv4 home address, if any (RFC 5844 §3.1.2.7).
    pub ipv4: Option<Ipv4Addr>,
    pub handoff_indicator: HandoffIndicator,
    pub access_technology_type: AccessTechnologyType,
    pub link_layer_address: Option<LinkLayerAddress>,
    pub proxy_coa: Ipv6Addr,
}

/// How a registration relates to the binding cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// It updates (or de-registers) this session.
    Existing(SessionId),
    /// It asks for a new mobility session (§5.3.2).
    New,
    /// Handoff state unknown: wait for the previous MAG to de-register this session, at most
    /// MaxDelayBeforeNewBCEAssign (§5.4.1.2 rule 4, §5.4.1.3 rule 3).
    Wait(SessionId),
    Reject(Status),
}

/// The lookup of §5.4.1, its subsections in the RFC's order. `wait_for_deregistration` is
/// the LMA's choice between waiting and a new session at once when the handoff state is
/// unknown (the MAY of §5.4.1.2 rule 4 and §5.4.1.3 rule 3).
pub fn lookup(cache: &BindingCache, key: &LookupKey<'_>, wait_for_deregistration: bool) -> Lookup {
    let att = key.access_technology_type;
    let hi = key.handoff_indicator;
    let ll = key.link_layer_address;
    let requested = key.prefixes;
    if !requested.is_empty() {
        // §5.4.1.1 rules 1 and 2.
        let Some(s) = requested.iter().find_map(|p| cache.by_prefix(p)) else {
            return Lookup::New;
        };
        let Some(e) = cache.get(s) else {
            return Lookup::New;
        };
        // Rule 3.
        if *e.mn_id != *key.mn_id {
            return Lookup::Reject(Status::NotAuthorizedForHomeNetworkPrefix);
        }
        // Rule 4.
        if !e.prefixes.same_set(requested) {
            return Lookup::Reject(Status::BcePbuPrefixSetDoNotMatch);
        }
        // Rule 5; rule 6: otherwise a new mobility session. Its prefixes are held by this one, so
        // §5.3.2 rule 3 refuses a registration (155); a de-registration associated with no
        // session is silently ignored.
        return if updates(e, key) {
            Lookup::Existing(s)
        } else {
            Lookup::New
        };
    }
    if let Some(a) = key.ipv4 {
        // RFC 5844 §3.1.2.7: no NON_ZERO prefix, a NON_ZERO IPv4 home address: the rules of
        // §5.4.1.1 with that one address as the key, in the request and in the entry.
        let Some(s) = cache.by_ipv4(&a) else {
            return Lookup::New;
        };
        let Some(e) = cache.get(s) else {
            return Lookup::New;
        };
        // Rule 3, with the IPv4 status of RFC 5844 §3.3.5. Rule 4 (the same set) holds: one
        // address, found by itself.
        if *e.mn_id != *key.mn_id {
            return Lookup::Reject(Status::NotAuthorizedForIpv4HomeAddress);
        }
        // Rules 5 and 6 as above: a new session, whose registration is refused because the
        // address is this one's (§3.1.2.2); a de-registration is ignored.
        return if updates(e, key) {
            Lookup::Existing(s)
        } else {
            Lookup::New
        };
    }
    let mut sessions = cache.sessions_of(key.mn_id);
    let only_one = match (sessions.next(), sessions.next()) {
        (Some(one), None) => Some(one),
        _ => None,
    };
    let wait_or_update = |s: SessionId| -> Lookup {
        match cache.get(s).map(|e| (e.state(), e.proxy_coa)) {
            // Already de-registered by the previous MAG: nothing to wait for.
            Some((BindingState::Deregistering, _)) => Lookup::Existing(s),
            // From the MAG that holds it: there is no previous MAG to wait for (a refresh or a
            // de-registration that names no prefix, as some MAGs send them).
            Some((_, coa)) if coa == key.proxy_coa => Lookup::Existing(s),
            _ if !wait_for_deregistration => Lookup::New,
            _ => Lookup::Wait(s),
        }
    };
    if let Some(ll) = ll {
        // §5.4.1.2 rules 1 and 2.
        let matching = cache.sessions_of(key.mn_id).find(|s| {
            cache
                .get(*s)
                .is_some_and(|e| e.mn_link_layer_id == Some(ll) && e.access_technology_type == att)
        });
        if let Some(s) = matching {
            return Lookup::Existing(s);
        }
        // Rules 3-5.
        return match (hi, only_one) {
            (HandoffIndicator::HandoffBetweenInterfaces, Some(s)) => Lookup::Existing(s),
            (HandoffIndicator::HandoffStateUnknown, Some(s)) => wait_or_update(s),
            _ => Lookup::New,
        };
    }
    // §5.4.1.3.
    match (hi, only_one) {
        (
            HandoffIndicator::HandoffBetweenInterfaces | HandoffIndicator::HandoffBetweenMags,
            Some(s),
        ) => Lookup::Existing(s),
        (HandoffIndicator::HandoffStateUnknown, Some(s)) => wait_or_update(s),
        _ => Lookup::New,
    }
}

/// §5.4.1.1 rule 5: whether a request that names an entry's prefixes (or its IPv4 home
/// address) updates that entry.
fn updates(e: &BindingCacheEntry, key: &LookupKey<'_>) -> bool {
    let ll = key.link_layer_address;
    let same_att = e.access_technology_type == key.access_technology_type;
    let hi = key.handoff_indicator;
    (ll.is_some() && ll == e.mn_link_layer_id && same_att)
        || hi == HandoffIndicator::HandoffBetweenInterfaces
        || (ll.is_none()
            && e.mn_link_layer_id.is_none()
            && same_att
            && hi == HandoffIndicator::HandoffBetweenMags)
        || (e.proxy_coa == key.proxy_coa && same_att)
}

#[cfg(test)]
mod tests {
    use std::net::Ipv6Addr;

    use ipnet::Ipv6Net;

    use super::*;
    use crate::cache::{BindingCacheEntry, Ordering, Prefixes};
    use crate::lma::registration::{MnLinkLayerId, Registration, RequestedPrefixes};
    use crate::time::Instant;
    use crate::wire::{AccessTechnologyType as Att, HandoffIndicator as Hi, Lifetime};
    use crate::wire::{SequenceNumber, Status};

    const MN: &str = "mn@example.org";
    const OTHER: &str = "other@example.org";
    const WIFI: Att = Att::Ieee80211;
    const ETH: Att = Att::Ieee8023;

    fn mag(n: u8) -> Ipv6Addr {
        Ipv6Addr::new(0x2001, 0xdb8, u16::from(n), 0, 0, 0, 0, 0x10)
    }

    fn net(n: u16) -> Ipv6Net {
        Ipv6Net::new(Ipv6Addr::new(0x2001, 0xdb8, 0x100, n, 0, 0, 0, 0), 64).unwrap()
    }

    fn ll(n: u8) -> LinkLayerAddress {
        LinkLayerAddress::mac([2, 0, 0, 0, 0, n])
    }

    /// A binding cache entry: who, which prefixes, through which MAG, ATT and LL-ID.
    struct Bce {
        mn: &'static str,
        prefixes: &'static [u16],
        mag: u8,
        att: Att,
        ll: Option<u8>,
        deregistering: bool,
    }

    const fn bce(mn: &'static str, prefixes: &'static [u16], mag: u8, att: Att) -> Bce {
        Bce {
            mn,
            prefixes,
            mag,
            att,
            ll: None,
            deregistering: false,
        }
    }

    impl Bce {
        const fn ll(mut self, n: u8) -> Self {
            self.ll = Some(n);
            self
        }
        const fn deregistering(mut self) -> Self {
            self.deregistering = true;
            self
        }
    }

    /// A request: which prefixes (none: ALL_ZERO), from which MAG, ATT, HI and LL-ID.
    struct Req {
        mn: &'static str,
        prefixes: &'static [u16],
        mag: u8,
        att: Att,
        hi: Hi,
        ll: Option<u8>,
    }

    const fn req(prefixes: &'static [u16], mag: u8, att: Att, hi: Hi, ll: Option<u8>) -> Req {
        Req {
            mn: MN,
            prefixes,
            mag,
            att,
            hi,
            ll,
        }
    }

    fn registration(r: &Req) -> Registration {
        let named: Vec<Ipv6Net> = r.prefixes.iter().map(|n| net(*n)).collect();
        Registration {
            src: mag(r.mag),
            dst: "2001:db8:ffff::1".parse().unwrap(),
            proxy_coa: mag(r.mag),
            mn_id: r.mn.into(),
            sequence: SequenceNumber(1),
            lifetime: Lifetime::from_secs(3600),
            timestamp: None,
            prefixes: if named.is_empty() {
                RequestedPrefixes::Allocate
            } else {
                RequestedPrefixes::Named(Prefixes::from_slice(&named))
            },
            handoff_indicator: r.hi,
            access_technology_type: r.att,
            mn_link_layer_id: r.ll.map(|n| MnLinkLayerId::Address(ll(n))),
            link_local_address: None,
            gre_key: false,
            ipv4: None,
        }
    }

    fn cache(entries: &[Bce]) -> (BindingCache, Vec<SessionId>) {
        let mut c = BindingCache::new();
        let ids = entries
            .iter()
            .map(|b| {
                let prefixes: Vec<Ipv6Net> = b.prefixes.iter().map(|n| net(*n)).collect();
                let mut e = BindingCacheEntry::new(
                    b.mn.into(),
                    Prefixes::from_slice(&prefixes),
                    mag(b.mag),
                    b.att,
                    Hi::AttachmentOverNewInterface,
                    b.ll.map(ll),
                    None,
                    3600,
                    Instant::ZERO,
                    Ordering::new(None, SequenceNumber(0)),
                );
                if b.deregistering {
                    e = e.with_state(BindingState::Deregistering);
                }
                c.insert(e)
            })
            .collect();
        (c, ids)
    }

    /// What the lookup must find: the n-th entry, a new session, a wait for the n-th entry,
    /// or a refusal.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Want {
        Update(usize),
        New,
        Wait(usize),
        Reject(Status),
    }

    /// One row per rule of RFC 5213 §5.4.1.1-§5.4.1.3 (Figures 7-9), and per branch of it.
    #[test]
    fn the_rfc_lookup_table() {
        use Want::*;
        let one_eth = || vec![bce(MN, &[1], 1, ETH)];
        let one_eth_ll = || vec![bce(MN, &[1], 1, ETH).ll(1)];
        let two = || vec![bce(MN, &[1], 1, ETH).ll(1), bce(MN, &[2], 1, WIFI).ll(2)];
        #[rustfmt::skip]
        let rows: Vec<(&str, Vec<Bce>, Req, bool, Want)> = vec![
            // §5.4.1.1: a NON_ZERO prefix; lookup key: any of the request's prefixes.
            ("5.4.1.1 r2: no entry holds the prefix",
                one_eth(), req(&[9], 2, ETH, Hi::HandoffBetweenMags, None), true, New),
            ("5.4.1.1 r2: any one of the prefixes finds the entry",
                vec![bce(MN, &[1, 2], 1, ETH)], req(&[2, 1], 1, ETH, Hi::HandoffStateNotChanged, None), true, Update(0)),
            ("5.4.1.1 r3: the entry is another node's",
                vec![bce(OTHER, &[1], 1, ETH)], req(&[1], 1, ETH, Hi::HandoffStateNotChanged, None), true,
                Reject(Status::NotAuthorizedForHomeNetworkPrefix)),
            ("5.4.1.1 r4: one prefix more than the entry",
                one_eth(), req(&[1, 2], 1, ETH, Hi::HandoffStateNotChanged, None), true,
                Reject(Status::BcePbuPrefixSetDoNotMatch)),
            ("5.4.1.1 r4: one prefix fewer than the entry",
                vec![bce(MN, &[1, 2], 1, ETH)], req(&[1], 1, ETH, Hi::HandoffStateNotChanged, None), true,
                Reject(Status::BcePbuPrefixSetDoNotMatch)),
            ("5.4.1.1 r5 (a): same LL-ID and ATT, another MAG",
                one_eth_ll(), req(&[1], 2, ETH, Hi::HandoffStateUnknown, Some(1)), true, Update(0)),
            ("5.4.1.1 r5 (b): HI 2, another ATT and MAG",
                one_eth_ll(), req(&[1], 2, WIFI, Hi::HandoffBetweenInterfaces, Some(7)), true, Update(0)),
            ("5.4.1.1 r5 (c): no LL-ID on either side, same ATT, HI 3",
                one_eth(), req(&[1], 2, ETH, Hi::HandoffBetweenMags, None), true, Update(0)),
            ("5.4.1.1 r5 (d): same proxy-CoA and ATT",
                one_eth_ll(), req(&[1], 1, ETH, Hi::AttachmentOverNewInterface, Some(7)), true, Update(0)),
            ("5.4.1.1 r6: (c) fails when the entry has an LL-ID",
                one_eth_ll(), req(&[1], 2, ETH, Hi::HandoffBetweenMags, None), true, New),
            ("5.4.1.1 r6: (a) and (d) fail on another ATT",
                one_eth_ll(), req(&[1], 1, WIFI, Hi::HandoffStateUnknown, Some(1)), true, New),
            // §5.4.1.2: no NON_ZERO prefix, an LL-ID; key: MN-ID + ATT + LL-ID.
            ("5.4.1.2 r2: MN-ID, ATT and LL-ID match",
                two(), req(&[], 3, WIFI, Hi::AttachmentOverNewInterface, Some(2)), true, Update(1)),
            ("5.4.1.2 r3: HI 2 and one entry for the node",
                one_eth_ll(), req(&[], 2, WIFI, Hi::HandoffBetweenInterfaces, Some(9)), true, Update(0)),
            ("5.4.1.2 r3: HI 2 but two entries",
                two(), req(&[], 2, ETH, Hi::HandoffBetweenInterfaces, Some(9)), true, New),
            ("5.4.1.2 r4: HI 4 and one entry: wait for its de-registration",
                one_eth_ll(), req(&[], 2, WIFI, Hi::HandoffStateUnknown, Some(9)), true, Wait(0)),
            ("5.4.1.2 r4: ... unless configured not to wait",
                one_eth_ll(), req(&[], 2, WIFI, Hi::HandoffStateUnknown, Some(9)), false, New),
            ("5.4.1.2 r4: ... or it is de-registered already",
                vec![bce(MN, &[1], 1, ETH).ll(1).deregistering()],
                req(&[], 2, WIFI, Hi::HandoffStateUnknown, Some(9)), true, Update(0)),
            ("5.4.1.2 r4: HI 4 but two entries",
                two(), req(&[], 2, ETH, Hi::HandoffStateUnknown, Some(9)), true, New),
            ("5.4.1.2 r5: LL-ID matches, ATT does not, HI 3",
                one_eth_ll(), req(&[], 2, WIFI, Hi::HandoffBetweenMags, Some(1)), true, New),
            ("5.4.1.2 r5: no entry for the node",
                vec![bce(OTHER, &[1], 1, ETH).ll(1)], req(&[], 1, ETH, Hi::HandoffStateUnknown, Some(1)), true, New),
            // §5.4.1.3: neither; key: MN-ID.
            ("5.4.1.3 r2: one entry, HI 2",
                one_eth(), req(&[], 2, WIFI, Hi::HandoffBetweenInterfaces, None), true, Update(0)),
            ("5.4.1.3 r2: one entry, HI 3",
                one_eth(), req(&[], 2, ETH, Hi::HandoffBetweenMags, None), true, Update(0)),
            ("5.4.1.3 r3: one entry, HI 4: wait",
                one_eth(), req(&[], 2, ETH, Hi::HandoffStateUnknown, None), true, Wait(0)),
            ("5.4.1.3 r3: ... or not, by configuration",
                one_eth(), req(&[], 2, ETH, Hi::HandoffStateUnknown, None), false, New),
            ("5.4.1.3 r3: HI 4 from the entry's own MAG: no previous MAG to wait for",
                one_eth(), req(&[], 1, ETH, Hi::HandoffStateUnknown, None), true, Update(0)),
            ("5.4.1.2 r4: likewise with an LL-ID",
                one_eth_ll(), req(&[], 1, WIFI, Hi::HandoffStateUnknown, Some(9)), true, Update(0)),
            ("5.4.1.3 r4: one entry, HI 1",
                one_eth(), req(&[], 2, ETH, Hi::AttachmentOverNewInterface, None), true, New),
            ("5.4.1.3 r4: two entries, HI 3",
                vec![bce(MN, &[1], 1, ETH), bce(MN, &[2], 1, WIFI)],
                req(&[], 2, ETH, Hi::HandoffBetweenMags, None), true, New),
            ("5.4.1.3 r4: no entry",
                vec![], req(&[], 2, ETH, Hi::HandoffBetweenMags, None), true, New),
        ];
        for (what, entries, r, wait, want) in rows {
            let (c, ids) = cache(&entries);
            let got = lookup(&c, &registration(&r).key(), wait);
            let want = match want {
                Update(i) => Lookup::Existing(ids[i]),
                New => Lookup::New,
                Wait(i) => Lookup::Wait(ids[i]),
                Reject(s) => Lookup::Reject(s),
            };
            assert_eq!(got, want, "{what}");
        }
    }
}
