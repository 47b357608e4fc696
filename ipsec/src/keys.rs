//! Security associations from the configuration (RFC 4301 §4.4.2.1 manual keying): keys
//! inline or in files, which the caller reads (this crate does no IO).

use std::collections::HashSet;
use std::net::Ipv6Addr;
use std::path::Path;

use pmip::config::{
    ConfigError, IpsecConfig, KeyMaterial, SecurityAssociationConfig, inbound_spi_once,
};

use crate::{Algorithm, Spi};

/// One pair of SAs with a peer, keys resolved.
#[derive(Clone, PartialEq, Eq)]
pub struct SecurityAssociationSpec {
    pub peer: Ipv6Addr,
    pub algorithm: Algorithm,
    /// What the peer sends with.
    pub spi_in: Spi,
    /// What this end sends with.
    pub spi_out: Spi,
    pub key_in: KeyMaterial,
    pub key_out: KeyMaterial,
    pub esn: bool,
}

impl core::fmt::Debug for SecurityAssociationSpec {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SecurityAssociationSpec")
            .field("peer", &self.peer)
            .field("algorithm", &self.algorithm)
            .field("spi_in", &self.spi_in)
            .field("spi_out", &self.spi_out)
            .field("esn", &self.esn)
            .finish_non_exhaustive()
    }
}

impl SecurityAssociationSpec {
    /// The SA of entry `c` (validated), reading key files with `read`.
    pub fn from_config(
        c: &SecurityAssociationConfig,
        at: &str,
        read: &mut dyn FnMut(&Path) -> std::io::Result<String>,
    ) -> Result<Self, ConfigError> {
        c.validate(at)?;
        let mut key = |dir: &str,
                       inline: &Option<KeyMaterial>,
                       file: &Option<std::path::PathBuf>| {
            let field = format!("{at}.key_{dir}_file");
            let k = match (inline, file) {
                (Some(k), _) => k.clone(),
                (None, Some(path)) => {
                    let text = read(path).map_err(|e| {
                        ConfigError::new(&field, format!("cannot read {}: {e}", path.display()))
                    })?;
                    KeyMaterial::from_hex(&text)
                        .map_err(|e| ConfigError::new(&field, format!("{}: {e}", path.display())))?
                }
                (None, None) => {
                    return Err(ConfigError::new(&field, "no key"));
                }
            };
            if k.as_bytes().len() != c.algorithm.key_len() {
                return Err(ConfigError::new(
                    &field,
                    format!(
                        "{} octets; {} needs {}",
                        k.as_bytes().len(),
                        c.algorithm.name(),
                        c.algorithm.key_len()
                    ),
                ));
            }
            Ok(k)
        };
        let key_in = key("in", &c.key_in, &c.key_in_file)?;
        let key_out = key("out", &c.key_out, &c.key_out_file)?;
        Ok(SecurityAssociationSpec {
            peer: c.peer,
            algorithm: c.algorithm,
            spi_in: Spi(c.spi_in),
            spi_out: Spi(c.spi_out),
            key_in,
            key_out,
            esn: c.esn,
        })
    }
}

/// Every SA of `cfg` that belongs to `local` (the daemon's signalling address): its inline
/// entries, then those of its `security_associations_file` (already parsed by the caller into
/// `from_file`), keys read with `read`. An entry whose `local` names another address is
/// skipped (a domain-wide file holds every daemon's entries), but still checked. The order
/// is kept: a peer's first entry is the one used to send.
pub fn load(
    cfg: &IpsecConfig,
    local: Ipv6Addr,
    from_file: &[SecurityAssociationConfig],
    read: &mut dyn FnMut(&Path) -> std::io::Result<String>,
) -> Result<Vec<SecurityAssociationSpec>, ConfigError> {
    let inline = cfg.security_associations.len();
    let at = |i: usize| {
        if i < inline {
            format!("ipsec.security_associations[{i}]")
        } else {
            format!("ipsec.security_associations_file[{}]", i - inline)
        }
    };
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (i, c) in cfg
        .security_associations
        .iter()
        .chain(from_file)
        .enumerate()
    {
        let here = at(i);
        c.validate(&here)?;
        if c.local.is_some_and(|l| l != local) {
            continue;
        }
        inbound_spi_once(&mut seen, c, &here)?;
        out.push(SecurityAssociationSpec::from_config(c, &here, read)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn entry(peer: &str, spi_in: u32) -> SecurityAssociationConfig {
        SecurityAssociationConfig {
            local: None,
            peer: peer.parse().unwrap(),
            algorithm: Algorithm::Aes128Gcm,
            spi_in,
            spi_out: spi_in + 1,
            key_in: Some(KeyMaterial::new(vec![1; 20])),
            key_in_file: None,
            key_out: None,
            key_out_file: Some(PathBuf::from("/keys/out")),
            esn: false,
        }
    }

    #[test]
    fn key_files_are_read_as_hex() {
        let cfg = IpsecConfig {
            security_associations: vec![entry("2001:db8::2", 0x1000)],
            ..IpsecConfig::default()
        };
        let mut asked = Vec::new();
        let specs = load(&cfg, LOCAL, &[], &mut |p| {
            asked.push(p.to_owned());
            Ok("0x0102030405060708090a0b0c0d0e0f1011121314\n".into())
        })
        .unwrap();
        assert_eq!(asked, [PathBuf::from("/keys/out")]);
        assert_eq!(specs[0].key_out.as_bytes()[0], 1);
        assert_eq!(specs[0].key_out.as_bytes()[19], 0x14);
        assert_eq!(specs[0].spi_in, Spi(0x1000));
    }

    #[test]
    fn a_bad_key_file_names_the_entry_and_the_file() {
        let cfg = IpsecConfig {
            security_associations: vec![entry("2001:db8::2", 0x1000)],
            ..IpsecConfig::default()
        };
        let e = load(&cfg, LOCAL, &[], &mut |_| Ok("0102".into())).unwrap_err();
        assert_eq!(e.field, "ipsec.security_associations[0].key_out_file");
        assert!(e.reason.contains("2 octets"), "{e}");
        let e = load(&cfg, LOCAL, &[], &mut |_| {
            Err(std::io::Error::new(std::io::ErrorKind::NotFound, "gone"))
        })
        .unwrap_err();
        assert!(e.reason.contains("cannot read /keys/out"), "{e}");
        let e = load(&cfg, LOCAL, &[], &mut |_| Ok("zz".into())).unwrap_err();
        assert!(e.reason.contains("not a hex digit"), "{e}");
    }

    #[test]
    fn file_entries_follow_the_inline_ones_and_may_not_repeat_an_spi() {
        let cfg = IpsecConfig {
            security_associations: vec![entry("2001:db8::2", 0x1000)],
            ..IpsecConfig::default()
        };
        let read = &mut |_: &Path| Ok("00".repeat(20));
        let specs = load(&cfg, LOCAL, &[entry("2001:db8::2", 0x2000)], read).unwrap();
        assert_eq!(
            specs.iter().map(|s| s.spi_in).collect::<Vec<_>>(),
            [Spi(0x1000), Spi(0x2000)]
        );
        let e = load(&cfg, LOCAL, &[entry("2001:db8::2", 0x1000)], read).unwrap_err();
        assert!(e.reason.contains("already an inbound SPI"), "{e}");
    }

    const LOCAL: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);

    #[test]
    fn a_domain_wide_file_gives_each_daemon_its_own_entries() {
        let cfg = IpsecConfig::default();
        let other: Ipv6Addr = "2001:db8::7".parse().unwrap();
        let mine = |spi| SecurityAssociationConfig {
            local: Some(LOCAL),
            ..entry("2001:db8::2", spi)
        };
        let theirs = |spi| SecurityAssociationConfig {
            local: Some(other),
            ..entry("2001:db8::2", spi)
        };
        let read = &mut |_: &Path| Ok("00".repeat(20));
        // Another daemon's entry may repeat this one's inbound SPI towards the same peer.
        let file = [theirs(0x1000), mine(0x1000), entry("2001:db8::3", 0x1000)];
        let specs = load(&cfg, LOCAL, &file, read).unwrap();
        assert_eq!(specs.len(), 2);
        assert_eq!(specs[0].peer, "2001:db8::2".parse::<Ipv6Addr>().unwrap());
        assert_eq!(load(&cfg, other, &file, read).unwrap().len(), 2);
        let third: Ipv6Addr = "2001:db8::9".parse().unwrap();
        assert_eq!(load(&cfg, third, &file, read).unwrap().len(), 1);
        // Skipped entries are still checked, with their place in the file.
        let bad = SecurityAssociationConfig {
            spi_in: 7,
            ..theirs(0x1000)
        };
        let e = load(&cfg, LOCAL, &[mine(0x1000), bad], read).unwrap_err();
        assert_eq!(e.field, "ipsec.security_associations_file[1].spi_in");
        // An entry whose local address is its peer is refused.
        let looped = SecurityAssociationConfig {
            local: Some("2001:db8::2".parse().unwrap()),
            ..entry("2001:db8::2", 0x1000)
        };
        let e = load(&cfg, LOCAL, &[looped], read).unwrap_err();
        assert_eq!(e.field, "ipsec.security_associations_file[0].local");
    }

    #[test]
    fn debug_never_shows_keys() {
        let cfg = IpsecConfig {
            security_associations: vec![entry("2001:db8::2", 0x1000)],
            ..IpsecConfig::default()
        };
        let specs = load(&cfg, LOCAL, &[], &mut |_| Ok("ab".repeat(20))).unwrap();
        let shown = format!("{specs:?} {:?}", cfg.security_associations);
        assert!(
            !shown.contains("abab") && !shown.contains("0101"),
            "{shown}"
        );
    }
}
