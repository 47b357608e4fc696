//! Small value types shared by the wire format, the policy store and the configuration.

use core::fmt;
use core::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A link-layer address (RFC 4861 §4.6.1 form: the bytes of the address, no type or length),
/// as carried in the Mobile Node Link-layer Identifier option (RFC 5213 §8.6). Usually a
/// 6-byte IEEE 802 MAC; up to 16 bytes are kept inline so an entry never allocates for it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LinkLayerAddress {
    len: u8,
    bytes: [u8; LinkLayerAddress::MAX_LEN],
}

impl LinkLayerAddress {
    /// Longest link-layer address kept (IEEE EUI-64 is 8, InfiniBand 20 is not supported).
    pub const MAX_LEN: usize = 16;

    /// `None` when `bytes` is empty or longer than [`Self::MAX_LEN`].
    pub fn new(bytes: &[u8]) -> Option<Self> {
        if bytes.is_empty() || bytes.len() > Self::MAX_LEN {
            return None;
        }
        let mut out = [0u8; Self::MAX_LEN];
        out.get_mut(..bytes.len())?.copy_from_slice(bytes);
        Some(Self {
            len: bytes.len() as u8,
            bytes: out,
        })
    }

    /// An IEEE 802 MAC address.
    pub const fn mac(m: [u8; 6]) -> Self {
        let mut bytes = [0u8; Self::MAX_LEN];
        bytes[0] = m[0];
        bytes[1] = m[1];
        bytes[2] = m[2];
        bytes[3] = m[3];
        bytes[4] = m[4];
        bytes[5] = m[5];
        Self { len: 6, bytes }
    }

    pub fn as_bytes(&self) -> &[u8] {
        self.bytes.get(..self.len as usize).unwrap_or(&[])
    }

    /// RFC 4291 Appendix A modified EUI-64 interface identifier of a 6-byte MAC (EUI-48) or
    /// of an 8-byte EUI-64: what a mobile node derives its link-local and SLAAC addresses
    /// from. `None` for a link-layer address of another length.
    pub fn eui64_interface_id(&self) -> Option<[u8; 8]> {
        match *self.as_bytes() {
            [a, b, c, d, e, f] => Some([a ^ 0x02, b, c, 0xff, 0xfe, d, e, f]),
            [a, b, c, d, e, f, g, h] => Some([a ^ 0x02, b, c, d, e, f, g, h]),
            _ => None,
        }
    }
}

impl fmt::Display for LinkLayerAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.as_bytes().iter().enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for LinkLayerAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LinkLayerAddress({self})")
    }
}

/// Why a link-layer address did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("link-layer address {0:?} is not 1 to 16 hex bytes separated by ':' or '-'")]
pub struct BadLinkLayerAddress(pub String);

impl FromStr for LinkLayerAddress {
    type Err = BadLinkLayerAddress;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadLinkLayerAddress(s.to_owned());
        let mut out = [0u8; Self::MAX_LEN];
        let mut n = 0usize;
        for part in s.split([':', '-']) {
            if part.len() != 2 {
                return Err(bad());
            }
            let b = u8::from_str_radix(part, 16).map_err(|_| bad())?;
            *out.get_mut(n).ok_or_else(bad)? = b;
            n += 1;
        }
        LinkLayerAddress::new(out.get(..n).ok_or_else(bad)?).ok_or_else(bad)
    }
}

impl Serialize for LinkLayerAddress {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for LinkLayerAddress {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A Mobile Node Identifier in its NAI form `user@realm` (RFC 4283 §3, RFC 4282).
///
/// Checked only as far as PMIPv6 needs: non-empty, at most 255 octets once the subtype is
/// counted (the option length is one octet), printable ASCII or UTF-8 without controls or spaces.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Nai(String);

/// Why a string is not a usable NAI.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadNai {
    #[error("the mobile node identifier is empty")]
    Empty,
    #[error("the mobile node identifier is {0} octets long; at most 254 fit in the option")]
    TooLong(usize),
    #[error("the mobile node identifier contains a space or control character at octet {0}")]
    BadCharacter(usize),
}

impl Nai {
    /// Longest identifier: the option length octet also counts the subtype (RFC 4283 §3).
    pub const MAX_LEN: usize = 254;

    pub fn new(s: impl Into<String>) -> Result<Self, BadNai> {
        let s = s.into();
        Self::check(s.as_bytes())?;
        Ok(Self(s))
    }

    /// Checks identifier bytes as they come off the wire.
    pub fn check(b: &[u8]) -> Result<(), BadNai> {
        if b.is_empty() {
            return Err(BadNai::Empty);
        }
        if b.len() > Self::MAX_LEN {
            return Err(BadNai::TooLong(b.len()));
        }
        if let Some(i) = b.iter().position(|c| *c <= b' ' || *c == 0x7f) {
            return Err(BadNai::BadCharacter(i));
        }
        Ok(())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The MN-ID derived from a link-layer address (the seed's "MN-ID, e.g. the MN's MAC"):
    /// an NAI whose user part is the address's octets in lowercase hexadecimal joined by `-`
    /// (IEEE 802's hexadecimal form, RFC 7042 §2.1), in `realm`:
    /// `02-00-00-10-00-01@lab.example`. RFC 4283 allocates only subtype 1 (NAI), so it goes
    /// on the wire as one, like any other NAI.
    pub fn from_link_layer(ll: &LinkLayerAddress, realm: &str) -> Result<Nai, BadRealm> {
        check_realm(realm)?;
        let user: Vec<String> = ll.as_bytes().iter().map(|b| format!("{b:02x}")).collect();
        Nai::new(format!("{}@{realm}", user.join("-"))).map_err(BadRealm::Nai)
    }

    /// The realm after the last `@`, if any.
    pub fn realm(&self) -> Option<&str> {
        self.0.rsplit_once('@').map(|(_, r)| r)
    }
}

impl fmt::Display for Nai {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Nai {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Nai({:?})", self.0)
    }
}

impl FromStr for Nai {
    type Err = BadNai;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Nai::new(s)
    }
}

/// Why a realm cannot make an MN-ID from a link-layer address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadRealm {
    #[error("the realm is empty")]
    Empty,
    #[error(
        "{0:?} is not a realm: DNS labels of letters, digits and '-' separated by '.' \
         (RFC 4282 §2.1)"
    )]
    NotARealm(String),
    #[error(transparent)]
    Nai(BadNai),
}

/// A realm as RFC 4282 §2.1 writes it: DNS labels (letters, digits, `-` inside) joined by
/// `.`, at most 253 octets.
fn check_realm(realm: &str) -> Result<(), BadRealm> {
    if realm.is_empty() {
        return Err(BadRealm::Empty);
    }
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && l.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if realm.len() > 253 || !realm.split('.').all(label_ok) {
        return Err(BadRealm::NotARealm(realm.to_owned()));
    }
    Ok(())
}

impl<'de> Deserialize<'de> for Nai {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Nai::new(s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_mn_id_from_a_link_layer_address() {
        let mac = LinkLayerAddress::mac([0x02, 0, 0, 0x10, 0xab, 1]);
        assert_eq!(
            Nai::from_link_layer(&mac, "lab.example").unwrap().as_str(),
            "02-00-00-10-ab-01@lab.example"
        );
        let eui64 = LinkLayerAddress::new(&[0, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77]).unwrap();
        assert_eq!(
            Nai::from_link_layer(&eui64, "x").unwrap().as_str(),
            "00-11-22-33-44-55-66-77@x"
        );
        assert_eq!(Nai::from_link_layer(&mac, ""), Err(BadRealm::Empty));
        for bad in ["a b", "a..b", ".a", "a.", "-a", "a@b", "ü", &"a".repeat(64)] {
            assert!(
                matches!(Nai::from_link_layer(&mac, bad), Err(BadRealm::NotARealm(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn link_layer_address_text_round_trip() {
        let a: LinkLayerAddress = "02:00:5e:10:00:01".parse().unwrap();
        assert_eq!(a, LinkLayerAddress::mac([2, 0, 0x5e, 0x10, 0, 1]));
        assert_eq!(a.to_string(), "02:00:5e:10:00:01");
        assert_eq!("02-00-5E-10-00-01".parse::<LinkLayerAddress>().unwrap(), a);
        assert!("".parse::<LinkLayerAddress>().is_err());
        assert!("0:1".parse::<LinkLayerAddress>().is_err());
        assert!("zz:00".parse::<LinkLayerAddress>().is_err());
        assert!(
            "00:01:02:03:04:05:06:07:08:09:0a:0b:0c:0d:0e:0f:10"
                .parse::<LinkLayerAddress>()
                .is_err()
        );
    }

    #[test]
    fn eui64_flips_universal_local_bit() {
        let a = LinkLayerAddress::mac([0x02, 0x11, 0x22, 0x33, 0x44, 0x55]);
        assert_eq!(
            a.eui64_interface_id(),
            Some([0x00, 0x11, 0x22, 0xff, 0xfe, 0x33, 0x44, 0x55])
        );
        // An EUI-64 keeps its 8 bytes, the U/L bit inverted (RFC 4291 Appendix A).
        let e = LinkLayerAddress::new(&[0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77]).unwrap();
        assert_eq!(
            e.eui64_interface_id(),
            Some([0x02, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77])
        );
        assert_eq!(
            LinkLayerAddress::new(&[1, 2, 3])
                .unwrap()
                .eui64_interface_id(),
            None
        );
    }

    #[test]
    fn nai_checks() {
        assert!(Nai::new("mn1@example.org").is_ok());
        assert_eq!(Nai::new(""), Err(BadNai::Empty));
        assert_eq!(Nai::new("a b"), Err(BadNai::BadCharacter(1)));
        assert_eq!(Nai::new("a".repeat(255)), Err(BadNai::TooLong(255)));
        assert_eq!(
            Nai::new("mn1@example.org").unwrap().realm(),
            Some("example.org")
        );
    }
}
