//! The policy store: mobile node profiles (RFC 5213 §6.2) and the MAGs authorized to send
//! Proxy Binding Updates (RFC 5213 §4, §5.3.1 rule 5), each with where it comes from: the
//! configuration file, or the API (over which the file's entries cannot be changed).
//!
//! A profile's MN-ID may be a wildcard: `*@realm` admits every NAI of that realm, `*` every
//! NAI, each with a dynamically allocated prefix. That is how a carrier admits a million
//! subscribers without a million profiles.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::Ipv6Net;

use crate::config::{ConfiguredMag, MobileNodeProfile};
use crate::types::LinkLayerAddress;

/// Why a profile or a MAG cannot be stored, changed or removed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("prefix {prefix} is already pinned to {owner}")]
    PrefixPinnedElsewhere { prefix: Ipv6Net, owner: String },
    /// RFC 5213 §2.2 (Per-MN-Prefix): a prefix holding another node's pinned prefix, or
    /// inside it.
    #[error("prefix {prefix} overlaps {other}, pinned to {owner}")]
    PrefixOverlapsPinned {
        prefix: Ipv6Net,
        other: Ipv6Net,
        owner: String,
    },
    /// An IPv4 home address another node has pinned, or holds (RFC 5844 §3.1.2.2).
    #[error("IPv4 home address {address} is already {how} {owner}")]
    Ipv4AddressTaken {
        address: std::net::Ipv4Addr,
        /// "pinned to" or "held by".
        how: &'static str,
        owner: String,
    },
    #[error("link-layer address {address} already belongs to {owner}")]
    LinkLayerAddressTaken {
        address: LinkLayerAddress,
        owner: String,
    },
    #[error(
        "a wildcard profile ({0}) cannot pin prefixes, IPv4 home addresses or link-layer addresses"
    )]
    WildcardWithPinnedValues(String),
    #[error("{0}")]
    Invalid(String),
    /// A profile or MAG of the configuration file: only the file changes it.
    #[error("{0} comes from the configuration file; change it there")]
    FromConfiguration(String),
    #[error("no profile for {0}")]
    NotFound(String),
}

/// Where a profile or an authorized MAG comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Origin {
    /// The configuration file: it lasts as long as the file says so.
    Configuration,
    /// The API (at the MAG: the LMA's policy service); kept in the daemon's durable state.
    Api,
}

#[derive(Debug, Clone)]
struct Entry {
    profile: MobileNodeProfile,
    origin: Origin,
}

/// Profiles and authorized MAGs, in ordered maps: what iterates over them (snapshots) sees
/// the same order in every run.
#[derive(Debug, Clone, Default)]
pub struct PolicyStore {
    profiles: BTreeMap<String, Entry>,
    by_link_layer: BTreeMap<LinkLayerAddress, String>,
    pinned: BTreeMap<Ipv6Net, String>,
    /// Pinned IPv4 home addresses (RFC 5844 §3.2.2) and their nodes.
    pinned4: BTreeMap<Ipv4Addr, String>,
    /// Realm -> the key of its `*@realm` profile, so a wildcard lookup allocates nothing.
    realms: BTreeMap<String, String>,
    mags: AuthorizedMags,
}

fn is_wildcard(mn_id: &str) -> bool {
    mn_id == "*" || mn_id.starts_with("*@")
}

impl PolicyStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// The profiles and authorized MAGs of a configuration file.
    pub fn from_configuration(
        profiles: &[MobileNodeProfile],
        mags: &[ConfiguredMag],
    ) -> Result<Self, PolicyError> {
        let mut s = PolicyStore::new();
        for p in profiles {
            s.insert(p.clone(), Origin::Configuration)?;
        }
        s.mags.configure(mags.iter().cloned());
        Ok(s)
    }

    /// Adds or replaces a profile, as the API does (its origin becomes [`Origin::Api`]). Its
    /// pinned prefixes and link-layer addresses must not belong to another node. Whether the
    /// API may change this MN-ID at all is [`PolicyStore::check_api_change`]'s answer.
    pub fn upsert(
        &mut self,
        p: MobileNodeProfile,
    ) -> Result<Option<MobileNodeProfile>, PolicyError> {
        self.insert(p, Origin::Api)
    }

    /// The pinned prefixes that overlap `p` (hold it, are it, or lie inside it), with their
    /// owners: the shorter ones holding it by lookup, the ones inside it by a range of the
    /// ordered map.
    fn pinned_overlapping<'a>(
        &'a self,
        p: &Ipv6Net,
    ) -> impl Iterator<Item = (Ipv6Net, &'a str)> + 'a {
        let p = p.trunc();
        let holding = (0..p.prefix_len())
            .filter_map(move |len| Ipv6Net::new(p.addr(), len).ok().map(|n| n.trunc()))
            .filter_map(|n| self.pinned.get_key_value(&n));
        let inside = self
            .pinned
            .range(p..=Ipv6Net::new(p.broadcast(), 128).unwrap_or(p))
            .filter(move |(q, _)| p.contains(*q));
        holding.chain(inside).map(|(q, owner)| (*q, owner.as_str()))
    }

    fn insert(
        &mut self,
        p: MobileNodeProfile,
        origin: Origin,
    ) -> Result<Option<MobileNodeProfile>, PolicyError> {
        let id = p.mn_id.as_str();
        p.validate("profile")
            .map_err(|e| PolicyError::Invalid(e.to_string()))?;
        if is_wildcard(id)
            && !(p.home_network_prefixes.is_empty()
                && p.link_layer_addresses.is_empty()
                && p.ipv4_home_address.is_none())
        {
            return Err(PolicyError::WildcardWithPinnedValues(id.to_owned()));
        }
        // RFC 5213 §2.2: a prefix is one node's (the Per-MN-Prefix model), so another
        // node's pinned prefix may not hold it, nor lie inside it.
        for prefix in &p.home_network_prefixes {
            if let Some((other, owner)) = self.pinned_overlapping(prefix).find(|(_, o)| *o != id) {
                let owner = owner.to_owned();
                return Err(if other == *prefix {
                    PolicyError::PrefixPinnedElsewhere {
                        prefix: *prefix,
                        owner,
                    }
                } else {
                    PolicyError::PrefixOverlapsPinned {
                        prefix: *prefix,
                        other,
                        owner,
                    }
                });
            }
        }
        for ll in &p.link_layer_addresses {
            if let Some(owner) = self.by_link_layer.get(ll).filter(|o| o.as_str() != id) {
                return Err(PolicyError::LinkLayerAddressTaken {
                    address: *ll,
                    owner: owner.clone(),
                });
            }
        }
        if let Some(a) = p.ipv4_home_address
            && let Some(owner) = self.pinned4.get(&a).filter(|o| o.as_str() != id)
        {
            return Err(PolicyError::Ipv4AddressTaken {
                address: a,
                how: "pinned to",
                owner: owner.clone(),
            });
        }
        let old = self.remove(id);
        if let Some(a) = p.ipv4_home_address {
            self.pinned4.insert(a, id.to_owned());
        }
        for prefix in &p.home_network_prefixes {
            self.pinned.insert(*prefix, id.to_owned());
        }
        for ll in &p.link_layer_addresses {
            self.by_link_layer.insert(*ll, id.to_owned());
        }
        if let Some(realm) = id.strip_prefix("*@") {
            self.realms.insert(realm.to_owned(), id.to_owned());
        }
        self.profiles
            .insert(id.to_owned(), Entry { profile: p, origin });
        Ok(old)
    }

    pub fn remove(&mut self, mn_id: &str) -> Option<MobileNodeProfile> {
        let old = self.profiles.remove(mn_id)?.profile;
        for prefix in &old.home_network_prefixes {
            self.pinned.remove(prefix);
        }
        for ll in &old.link_layer_addresses {
            self.by_link_layer.remove(ll);
        }
        if let Some(a) = old.ipv4_home_address {
            self.pinned4.remove(&a);
        }
        if let Some(realm) = mn_id.strip_prefix("*@") {
            self.realms.remove(realm);
        }
        Some(old)
    }

    /// Whether the API may create, replace or remove the profile of `mn_id`: not when the
    /// configuration file holds it.
    pub fn check_api_change(&self, mn_id: &str) -> Result<(), PolicyError> {
        match self.origin(mn_id) {
            Some(Origin::Configuration) => Err(PolicyError::FromConfiguration(mn_id.to_owned())),
            _ => Ok(()),
        }
    }

    /// Where the profile of exactly `mn_id` (no wildcard) comes from.
    pub fn origin(&self, mn_id: &str) -> Option<Origin> {
        self.profiles.get(mn_id).map(|e| e.origin)
    }

    /// The profile of exactly `mn_id` (no wildcard) and its origin.
    pub fn get(&self, mn_id: &str) -> Option<(&MobileNodeProfile, Origin)> {
        self.profiles.get(mn_id).map(|e| (&e.profile, e.origin))
    }

    /// The profile that applies to `mn_id`: its own, else `*@realm`, else `*`.
    pub fn lookup(&self, mn_id: &str) -> Option<&MobileNodeProfile> {
        if let Some(e) = self.profiles.get(mn_id) {
            return Some(&e.profile);
        }
        if let Some((_, realm)) = mn_id.rsplit_once('@')
            && let Some(key) = self.realms.get(realm)
        {
            return self.profiles.get(key).map(|e| &e.profile);
        }
        self.profiles.get("*").map(|e| &e.profile)
    }

    /// The profile of the node with this link-layer address (how a MAG names a node).
    pub fn by_link_layer(&self, ll: &LinkLayerAddress) -> Option<&MobileNodeProfile> {
        self.by_link_layer
            .get(ll)
            .and_then(|id| self.profiles.get(id))
            .map(|e| &e.profile)
    }

    /// The node a prefix is pinned to.
    pub fn pinned_owner(&self, prefix: &Ipv6Net) -> Option<&str> {
        self.pinned.get(prefix).map(String::as_str)
    }

    pub fn is_pinned(&self, prefix: &Ipv6Net) -> bool {
        self.pinned.contains_key(prefix)
    }

    /// The node an IPv4 home address is pinned to.
    pub fn pinned_ipv4_owner(&self, a: &Ipv4Addr) -> Option<&str> {
        self.pinned4.get(a).map(String::as_str)
    }

    pub fn is_ipv4_pinned(&self, a: &Ipv4Addr) -> bool {
        self.pinned4.contains_key(a)
    }

    pub fn profiles(&self) -> impl Iterator<Item = &MobileNodeProfile> {
        self.profiles.values().map(|e| &e.profile)
    }

    /// Every profile with its origin.
    pub fn profiles_with_origin(&self) -> impl Iterator<Item = (&MobileNodeProfile, Origin)> {
        self.profiles.values().map(|e| (&e.profile, e.origin))
    }

    /// The profiles the API made: what a daemon keeps in its durable state.
    pub fn api_profiles(&self) -> impl Iterator<Item = &MobileNodeProfile> {
        self.profiles_with_origin()
            .filter(|(_, o)| *o == Origin::Api)
            .map(|(p, _)| p)
    }

    pub fn len(&self) -> usize {
        self.profiles.len()
    }

    pub fn is_empty(&self) -> bool {
        self.profiles.is_empty()
    }

    /// The MAGs allowed to send Proxy Binding Updates.
    pub fn mags(&self) -> &AuthorizedMags {
        &self.mags
    }

    pub fn mags_mut(&mut self) -> &mut AuthorizedMags {
        &mut self.mags
    }

    pub fn is_mag_authorized(&self, mag: &Ipv6Addr) -> bool {
        self.mags.is_authorized(mag)
    }
}

/// One authorized MAG: authorized by the configuration file, by the API, or by both (the API
/// may give a configured MAG a name).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthorizedMag {
    /// Its name over the API (a node name); empty when it has none.
    pub name: String,
    /// Its name in the configuration file, when it gives one.
    pub configured_name: Option<String>,
    /// Listed in the configuration file's `authorized_mags`.
    pub configured: bool,
    /// Added over the API (or named there).
    pub by_api: bool,
}

impl AuthorizedMag {
    /// The name to show: the API's, else the configuration file's.
    pub fn shown_name(&self) -> Option<&str> {
        Some(self.name.as_str())
            .filter(|n| !n.is_empty())
            .or(self.configured_name.as_deref())
    }

    /// The configuration file wins: a MAG it lists stays until the file changes.
    pub fn origin(&self) -> Origin {
        if self.configured {
            Origin::Configuration
        } else {
            Origin::Api
        }
    }
}

/// What replacing the MAGs of the API changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MagChanges {
    pub added: Vec<Ipv6Addr>,
    pub removed: Vec<Ipv6Addr>,
    pub renamed: Vec<Ipv6Addr>,
}

impl MagChanges {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.renamed.is_empty()
    }
}

/// The authorized MAGs (RFC 5213 §5.3.1 rule 5: "the mobile access gateway sending the Proxy
/// Binding Update is authorized"), in address order.
#[derive(Debug, Clone, Default)]
pub struct AuthorizedMags {
    mags: BTreeMap<Ipv6Addr, AuthorizedMag>,
}

impl AuthorizedMags {
    pub fn is_authorized(&self, mag: &Ipv6Addr) -> bool {
        self.mags.contains_key(mag)
    }

    pub fn get(&self, mag: &Ipv6Addr) -> Option<&AuthorizedMag> {
        self.mags.get(mag)
    }

    /// Its name: the API's, else the configuration file's.
    pub fn name(&self, mag: &Ipv6Addr) -> Option<&str> {
        self.mags.get(mag).and_then(AuthorizedMag::shown_name)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&Ipv6Addr, &AuthorizedMag)> {
        self.mags.iter()
    }

    pub fn len(&self) -> usize {
        self.mags.len()
    }

    pub fn is_empty(&self) -> bool {
        self.mags.is_empty()
    }

    /// Replaces the MAGs of the configuration file (with the names it gives them); those of
    /// the API stay.
    pub fn configure<M: Into<ConfiguredMag>>(&mut self, mags: impl IntoIterator<Item = M>) {
        for m in self.mags.values_mut() {
            m.configured = false;
            m.configured_name = None;
        }
        for c in mags {
            let c: ConfiguredMag = c.into();
            let m = self.mags.entry(c.proxy_coa).or_default();
            m.configured = true;
            m.configured_name = c.name;
        }
        self.mags.retain(|_, m| m.configured || m.by_api);
    }

    /// Authorizes `mag` over the API with `name` (a configured MAG gets the name). True when
    /// the API had not authorized it before.
    pub fn add(&mut self, mag: Ipv6Addr, name: String) -> bool {
        let m = self.mags.entry(mag).or_default();
        m.name = name;
        !std::mem::replace(&mut m.by_api, true)
    }

    /// Takes back the API's authorization of `mag`. A MAG of the configuration file is refused;
    /// `Ok(false)` when the API had not authorized it.
    pub fn remove(&mut self, mag: &Ipv6Addr) -> Result<bool, PolicyError> {
        match self.mags.get(mag) {
            Some(m) if m.configured => Err(PolicyError::FromConfiguration(mag.to_string())),
            Some(_) => Ok(self.mags.remove(mag).is_some()),
            None => Ok(false),
        }
    }

    /// Replaces every authorization of the API with `mags` (address -> name); those of the
    /// configuration file stay, and may get a name this way.
    pub fn set(&mut self, mags: BTreeMap<Ipv6Addr, String>) -> MagChanges {
        let mut changes = MagChanges::default();
        for (a, name) in &mags {
            match self.mags.get(a) {
                Some(m) if m.by_api && m.name != *name => changes.renamed.push(*a),
                Some(m) if !m.by_api && m.configured && !name.is_empty() => {
                    changes.renamed.push(*a)
                }
                None => changes.added.push(*a),
                _ => {}
            }
        }
        changes.removed = (self.mags.iter())
            .filter(|(a, m)| m.by_api && !m.configured && !mags.contains_key(a))
            .map(|(a, _)| *a)
            .collect();
        for m in self.mags.values_mut() {
            m.by_api = false;
            m.name.clear();
        }
        for (a, name) in mags {
            let m = self.mags.entry(a).or_default();
            m.by_api = true;
            m.name = name;
        }
        self.mags.retain(|_, m| m.configured || m.by_api);
        changes
    }

    /// The API's authorizations (address -> name): what a daemon keeps in its durable state.
    pub fn api(&self) -> BTreeMap<Ipv6Addr, String> {
        self.mags
            .iter()
            .filter(|(_, m)| m.by_api)
            .map(|(a, m)| (*a, m.name.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Nai;

    fn profile(id: &str) -> MobileNodeProfile {
        MobileNodeProfile::new(Nai::new(id).unwrap())
    }

    #[test]
    fn wildcards_apply_after_exact_profiles() {
        let mut s = PolicyStore::new();
        s.upsert(profile("*@campus.example")).unwrap();
        let mut exact = profile("alice@campus.example");
        exact.allowed_mags = vec!["2001:db8::10".parse().unwrap()];
        s.upsert(exact).unwrap();
        assert_eq!(
            s.lookup("alice@campus.example").unwrap().allowed_mags.len(),
            1
        );
        assert_eq!(
            s.lookup("bob@campus.example").unwrap().mn_id.as_str(),
            "*@campus.example"
        );
        assert!(s.lookup("eve@other.example").is_none());
        s.upsert(profile("*")).unwrap();
        assert_eq!(s.lookup("eve@other.example").unwrap().mn_id.as_str(), "*");
    }

    #[test]
    fn pinned_prefixes_and_link_layer_addresses_are_exclusive() {
        let mut s = PolicyStore::new();
        let p: Ipv6Net = "2001:db8:1::/64".parse().unwrap();
        let ll = LinkLayerAddress::mac([2, 0, 0, 0, 0, 1]);
        let mut a = profile("a@x");
        a.home_network_prefixes = vec![p];
        a.link_layer_addresses = vec![ll];
        s.upsert(a.clone()).unwrap();
        let mut b = profile("b@x");
        b.home_network_prefixes = vec![p];
        assert!(matches!(
            s.upsert(b.clone()),
            Err(PolicyError::PrefixPinnedElsewhere { .. })
        ));
        // Nor may a shorter prefix holding it, or a longer one inside it (RFC 5213 §2.2).
        let mut c = profile("c@x");
        c.home_network_prefixes = vec!["2001:db8:2::/56".parse().unwrap()];
        s.upsert(c).unwrap();
        for (other, err) in [
            (
                "2001:db8:1::/48",
                "2001:db8:1::/48 overlaps 2001:db8:1::/64, pinned to a@x",
            ),
            (
                "2001:db8:2:7::/64",
                "2001:db8:2:7::/64 overlaps 2001:db8:2::/56, pinned to c@x",
            ),
        ] {
            b.home_network_prefixes = vec![other.parse().unwrap()];
            let e = s.upsert(b.clone()).unwrap_err();
            assert!(matches!(e, PolicyError::PrefixOverlapsPinned { .. }), "{e}");
            assert_eq!(e.to_string(), format!("prefix {err}"));
        }
        s.remove("c@x");
        // Beside it is fine; a's own prefixes may nest (its profile alone decides).
        b.home_network_prefixes = vec!["2001:db8:1:1::/64".parse().unwrap()];
        s.upsert(b.clone()).unwrap();
        s.remove("b@x");
        b.home_network_prefixes.clear();
        b.link_layer_addresses = vec![ll];
        assert!(matches!(
            s.upsert(b.clone()),
            Err(PolicyError::LinkLayerAddressTaken { .. })
        ));
        // Replacing a's own profile is fine, and removing it frees its values.
        assert!(s.upsert(a).unwrap().is_some());
        assert_eq!(s.by_link_layer(&ll).unwrap().mn_id.as_str(), "a@x");
        s.remove("a@x");
        assert!(s.upsert(b).is_ok());
        assert!(!s.is_pinned(&p));
        let mut w = profile("*@x");
        w.home_network_prefixes = vec![p];
        assert!(matches!(
            s.upsert(w),
            Err(PolicyError::WildcardWithPinnedValues(_))
        ));
    }

    #[test]
    fn the_api_cannot_change_what_the_configuration_file_holds() {
        let mag: Ipv6Addr = "2001:db8::10".parse().unwrap();
        let mut s = PolicyStore::from_configuration(&[profile("a@x")], &[mag.into()]).unwrap();
        assert_eq!(s.origin("a@x"), Some(Origin::Configuration));
        assert_eq!(
            s.check_api_change("a@x"),
            Err(PolicyError::FromConfiguration("a@x".into()))
        );
        assert_eq!(s.check_api_change("b@x"), Ok(()));
        s.upsert(profile("b@x")).unwrap();
        assert_eq!(s.origin("b@x"), Some(Origin::Api));
        let api: Vec<&str> = s.api_profiles().map(|p| p.mn_id.as_str()).collect();
        assert_eq!(api, ["b@x"]);
        assert!(matches!(
            s.mags_mut().remove(&mag),
            Err(PolicyError::FromConfiguration(_))
        ));
        assert!(s.is_mag_authorized(&mag));
        assert_eq!(s.mags().get(&mag).unwrap().origin(), Origin::Configuration);
    }

    #[test]
    fn a_name_from_the_configuration_is_shown_unless_the_api_gives_one() {
        let a = |n: u16| Ipv6Addr::new(0x2001, 0xdb8, n, 0, 0, 0, 0, 0x10);
        let mut m = AuthorizedMags::default();
        m.configure([ConfiguredMag::named(a(1), "mag1"), ConfiguredMag::new(a(2))]);
        assert_eq!(m.name(&a(1)), Some("mag1"));
        assert_eq!(m.name(&a(2)), None);
        m.add(a(1), "node-1".into());
        assert_eq!(m.name(&a(1)), Some("node-1"));
        // The API's name goes, the file's comes back.
        m.set(BTreeMap::new());
        assert_eq!(m.name(&a(1)), Some("mag1"));
        m.configure([a(1)]);
        assert_eq!(m.name(&a(1)), None);
    }

    #[test]
    fn api_mags_are_added_renamed_replaced_and_removed() {
        let a = |n: u16| Ipv6Addr::new(0x2001, 0xdb8, n, 0, 0, 0, 0, 0x10);
        let mut m = AuthorizedMags::default();
        m.configure([a(1)]);
        assert!(m.add(a(2), "two".into()));
        assert!(!m.add(a(2), "deux".into()), "already there: renamed");
        assert_eq!(m.name(&a(2)), Some("deux"));
        assert_eq!(m.name(&a(1)), None);
        // A configured MAG named over the API stays configured.
        let changes = m.set([(a(1), "one".into()), (a(3), String::new())].into());
        assert_eq!(
            changes,
            MagChanges {
                added: vec![a(3)],
                removed: vec![a(2)],
                renamed: vec![a(1)],
            }
        );
        assert!(!m.is_authorized(&a(2)));
        assert_eq!(m.name(&a(1)), Some("one"));
        assert_eq!(m.get(&a(1)).unwrap().origin(), Origin::Configuration);
        assert_eq!(m.get(&a(3)).unwrap().origin(), Origin::Api);
        assert_eq!(
            m.api(),
            [(a(1), "one".to_owned()), (a(3), String::new())].into()
        );
        // Without the API's name, the configured MAG is still there; the API's one is gone.
        assert!(m.set(BTreeMap::new()).removed == vec![a(3)]);
        assert!(m.is_authorized(&a(1)) && !m.is_authorized(&a(3)));
        assert_eq!(m.remove(&a(3)), Ok(false));
        assert!(m.add(a(4), String::new()));
        assert_eq!(m.remove(&a(4)), Ok(true));
        let addrs: Vec<Ipv6Addr> = m.iter().map(|(a, _)| *a).collect();
        assert_eq!(addrs, [a(1)]);
    }
}
