//! The policy store: mobile node profiles (RFC 5213 §6.2) and the MAGs authorized to send
//! Proxy Binding Updates (RFC 5213 §4, §5.3.1 rule 5).
//!
//! A profile's MN-ID may be a wildcard: `*@realm` admits every NAI of that realm, `*` every
//! NAI, each with a dynamically allocated prefix. That is how a carrier admits a million
//! subscribers without a million profiles.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv6Addr;

use ipnet::Ipv6Net;

use crate::config::MobileNodeProfile;
use crate::types::LinkLayerAddress;

/// Why a profile cannot be stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("prefix {prefix} is already pinned to {owner}")]
    PrefixPinnedElsewhere { prefix: Ipv6Net, owner: String },
    #[error("link-layer address {address} already belongs to {owner}")]
    LinkLayerAddressTaken {
        address: LinkLayerAddress,
        owner: String,
    },
    #[error("a wildcard profile ({0}) cannot pin prefixes or link-layer addresses")]
    WildcardWithPinnedValues(String),
    #[error("{0}")]
    Invalid(String),
}

/// Profiles and authorized MAGs, in ordered maps: what iterates over them (snapshots) sees
/// the same order in every run.
#[derive(Debug, Clone, Default)]
pub struct PolicyStore {
    profiles: BTreeMap<String, MobileNodeProfile>,
    by_link_layer: BTreeMap<LinkLayerAddress, String>,
    pinned: BTreeMap<Ipv6Net, String>,
    /// Realm -> the key of its `*@realm` profile, so a wildcard lookup allocates nothing.
    realms: BTreeMap<String, String>,
    authorized_mags: BTreeSet<Ipv6Addr>,
}

fn is_wildcard(mn_id: &str) -> bool {
    mn_id == "*" || mn_id.starts_with("*@")
}

impl PolicyStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces a profile. Its pinned prefixes and link-layer addresses must not
    /// belong to another node.
    pub fn upsert(
        &mut self,
        p: MobileNodeProfile,
    ) -> Result<Option<MobileNodeProfile>, PolicyError> {
        let id = p.mn_id.as_str();
        p.validate("profile")
            .map_err(|e| PolicyError::Invalid(e.to_string()))?;
        if is_wildcard(id)
            && !(p.home_network_prefixes.is_empty() && p.link_layer_addresses.is_empty())
        {
            return Err(PolicyError::WildcardWithPinnedValues(id.to_owned()));
        }
        for prefix in &p.home_network_prefixes {
            if let Some(owner) = self.pinned.get(prefix).filter(|o| o.as_str() != id) {
                return Err(PolicyError::PrefixPinnedElsewhere {
                    prefix: *prefix,
                    owner: owner.clone(),
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
        let old = self.remove(id);
        for prefix in &p.home_network_prefixes {
            self.pinned.insert(*prefix, id.to_owned());
        }
        for ll in &p.link_layer_addresses {
            self.by_link_layer.insert(*ll, id.to_owned());
        }
        if let Some(realm) = id.strip_prefix("*@") {
            self.realms.insert(realm.to_owned(), id.to_owned());
        }
        self.profiles.insert(id.to_owned(), p);
        Ok(old)
    }

    pub fn remove(&mut self, mn_id: &str) -> Option<MobileNodeProfile> {
        let old = self.profiles.remove(mn_id)?;
        for prefix in &old.home_network_prefixes {
            self.pinned.remove(prefix);
        }
        for ll in &old.link_layer_addresses {
            self.by_link_layer.remove(ll);
        }
        if let Some(realm) = mn_id.strip_prefix("*@") {
            self.realms.remove(realm);
        }
        Some(old)
    }

    /// The profile that applies to `mn_id`: its own, else `*@realm`, else `*`.
    pub fn lookup(&self, mn_id: &str) -> Option<&MobileNodeProfile> {
        if let Some(p) = self.profiles.get(mn_id) {
            return Some(p);
        }
        if let Some((_, realm)) = mn_id.rsplit_once('@')
            && let Some(key) = self.realms.get(realm)
        {
            return self.profiles.get(key);
        }
        self.profiles.get("*")
    }

    /// The profile of the node with this link-layer address (how a MAG names a node).
    pub fn by_link_layer(&self, ll: &LinkLayerAddress) -> Option<&MobileNodeProfile> {
        self.by_link_layer
            .get(ll)
            .and_then(|id| self.profiles.get(id))
    }

    /// The node a prefix is pinned to.
    pub fn pinned_owner(&self, prefix: &Ipv6Net) -> Option<&str> {
        self.pinned.get(prefix).map(String::as_str)
    }

    pub fn is_pinned(&self, prefix: &Ipv6Net) -> bool {
        self.pinned.contains_key(prefix)
    }

    pub fn profiles(&self) -> impl Iterator<Item = &MobileNodeProfile> {
        self.profiles.values()
    }

    pub fn len(&self) -> usize {
        self.profiles.len()
    }

    pub fn is_empty(&self) -> bool {
        self.profiles.is_empty()
    }

    pub fn authorize_mag(&mut self, mag: Ipv6Addr) -> bool {
        self.authorized_mags.insert(mag)
    }

    pub fn deauthorize_mag(&mut self, mag: &Ipv6Addr) -> bool {
        self.authorized_mags.remove(mag)
    }

    /// Replaces the set of authorized MAGs.
    pub fn set_authorized_mags(&mut self, mags: impl IntoIterator<Item = Ipv6Addr>) {
        self.authorized_mags = mags.into_iter().collect();
    }

    pub fn is_mag_authorized(&self, mag: &Ipv6Addr) -> bool {
        self.authorized_mags.contains(mag)
    }

    pub fn authorized_mags(&self) -> impl Iterator<Item = &Ipv6Addr> {
        self.authorized_mags.iter()
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
}
