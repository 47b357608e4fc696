//! A domain's ESP keys (RFC 5213 §4, RFC 5949 §7): manually keyed SA pairs (RFC 4301
//! §4.4.2.1) between the LMA and every MAG, and between MAGs that exchange HI/HAck, all derived
//! from one random master key the operator keeps in a Secret of its own.
//!
//! Every SA has its own key and SPI, derived with HKDF-SHA-256 (RFC 5869) from the master key
//! and the names of its two ends (`lma`, `mag/<node>`), not their addresses: a node whose
//! address changes keeps its keys. The result is deterministic, so applying it again changes
//! nothing, and a MAG that joins adds its entries without touching the others'. Pure.

use std::collections::{BTreeMap, HashSet};
use std::net::Ipv6Addr;

use pmip::config::{EspAlgorithm, KeyMaterial, SecurityAssociationConfig};
use ring::hkdf;

/// Octets of the master key.
pub const MASTER_LEN: usize = 32;
/// The master key's field in its Secret (hex).
pub const MASTER_FIELD: &str = "master.key";
/// The SA file's field in the Secret the daemons mount.
pub const SA_FILE_FIELD: &str = "security-associations.yaml";
/// What a Secret holds at most (the API server's limit), less room for its metadata.
pub const SECRET_BUDGET: usize = 1_000_000;

/// One end of the domain's SAs: a stable identity and its signalling address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct End {
    /// `lma` or `mag/<node>`.
    pub id: String,
    pub address: Ipv6Addr,
}

impl End {
    pub fn lma(address: Ipv6Addr) -> Self {
        Self {
            id: "lma".into(),
            address,
        }
    }

    pub fn mag(node: &str, address: Ipv6Addr) -> Self {
        Self {
            id: format!("mag/{node}"),
            address,
        }
    }
}

/// A new master key from the system's random number generator.
pub fn new_master() -> Result<Vec<u8>, String> {
    use ring::rand::SecureRandom;
    let mut key = vec![0; MASTER_LEN];
    ring::rand::SystemRandom::new()
        .fill(&mut key)
        .map_err(|_| "the system has no random numbers".to_string())?;
    Ok(key)
}

/// The master key from its Secret's field, if it is one.
pub fn master_of(field: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(field).ok()?;
    let key = KeyMaterial::from_hex(text.trim()).ok()?;
    (key.as_bytes().len() == MASTER_LEN).then(|| key.as_bytes().to_vec())
}

struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

fn derive(master: &[u8], info: &str, len: usize) -> Vec<u8> {
    let prk = hkdf::Prk::new_less_safe(hkdf::HKDF_SHA256, master);
    let mut out = vec![0; len];
    prk.expand(&[info.as_bytes()], Len(len))
        .and_then(|okm| okm.fill(&mut out))
        .expect("HKDF-SHA-256 gives up to 8160 octets");
    out
}

/// The key `from` sends to `to` with in `domain`.
fn key(master: &[u8], domain: &str, from: &End, to: &End, alg: EspAlgorithm) -> KeyMaterial {
    let info = format!(
        "pmip esp key v1|{domain}|{}|{}|{}",
        from.id,
        to.id,
        alg.name()
    );
    KeyMaterial::new(derive(master, &info, alg.key_len()))
}

/// The SPI `from` sends to `to` with: above 255 (RFC 4303 §2.1) and not one `to` already
/// receives with (`taken`), since a kernel finds an inbound SA by destination and SPI.
fn spi(master: &[u8], domain: &str, from: &End, to: &End, taken: &mut HashSet<u32>) -> u32 {
    (0u32..)
        .map(|round| {
            let info = format!("pmip esp spi v1|{domain}|{}|{}|{round}", from.id, to.id);
            let b = derive(master, &info, 4);
            256 + u32::from_be_bytes([b[0], b[1], b[2], b[3]]) % (u32::MAX - 255)
        })
        .find(|s| taken.insert(*s))
        .expect("a free SPI among 2^32")
}

/// Every SA entry of a domain, each with the `local` address of the daemon it belongs to:
/// a pair between the LMA and each MAG, and, with `mag_pairs`, between those MAGs (indices
/// into `mags`, each pair once). Entries come by end, LMA first.
pub fn domain_sas(
    domain: &str,
    master: &[u8],
    lma: &End,
    mags: &[End],
    mag_pairs: &[(usize, usize)],
    algorithm: EspAlgorithm,
    esn: bool,
) -> Vec<SecurityAssociationConfig> {
    let mut pairs: Vec<(&End, &End)> = mags.iter().map(|m| (lma, m)).collect();
    pairs.extend(mag_pairs.iter().map(|&(a, b)| (&mags[a], &mags[b])));
    // SPIs are picked in a stable order: by the pair's names.
    pairs.sort_by(|x, y| (&x.0.id, &x.1.id).cmp(&(&y.0.id, &y.1.id)));
    let mut inbound: BTreeMap<&str, HashSet<u32>> = BTreeMap::new();
    let mut by_end: BTreeMap<(bool, &str), Vec<SecurityAssociationConfig>> = BTreeMap::new();
    for (a, b) in pairs {
        let a_to_b = spi(master, domain, a, b, inbound.entry(&b.id).or_default());
        let b_to_a = spi(master, domain, b, a, inbound.entry(&a.id).or_default());
        let entry = |me: &End, peer: &End, spi_in, spi_out| SecurityAssociationConfig {
            local: Some(me.address),
            peer: peer.address,
            algorithm,
            spi_in,
            spi_out,
            key_in: Some(key(master, domain, peer, me, algorithm)),
            key_in_file: None,
            key_out: Some(key(master, domain, me, peer, algorithm)),
            key_out_file: None,
            esn,
        };
        by_end
            .entry((a.id != "lma", &a.id))
            .or_default()
            .push(entry(a, b, b_to_a, a_to_b));
        by_end
            .entry((b.id != "lma", &b.id))
            .or_default()
            .push(entry(b, a, a_to_b, b_to_a));
    }
    by_end.into_values().flatten().collect()
}

/// The MAG pairs that exchange HI/HAck (RFC 5949 §7): with fast handovers, every MAG with
/// every MAG an access point names (either may be the previous or the new MAG), each pair once.
pub fn fast_handover_pairs(mags: &[End], access_point_mags: &[Ipv6Addr]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    for a in 0..mags.len() {
        for b in a + 1..mags.len() {
            if access_point_mags.contains(&mags[a].address)
                || access_point_mags.contains(&mags[b].address)
            {
                out.push((a, b));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use pmip::config::validate_security_associations;

    fn a(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    fn three_mags() -> (End, Vec<End>) {
        (
            End::lma(a("2001:db8:ffff::1")),
            vec![
                End::mag("node-a", a("2001:db8:1::1")),
                End::mag("node-b", a("2001:db8:2::1")),
                End::mag("node-c", a("2001:db8:3::1")),
            ],
        )
    }

    fn of(sas: &[SecurityAssociationConfig], local: Ipv6Addr) -> Vec<SecurityAssociationConfig> {
        sas.iter()
            .filter(|s| s.local == Some(local))
            .cloned()
            .collect()
    }

    #[test]
    fn the_two_ends_of_each_pair_mirror_each_other() {
        let (lma, mags) = three_mags();
        let master = [7u8; MASTER_LEN];
        let pairs = fast_handover_pairs(&mags, &[mags[0].address]);
        assert_eq!(pairs, [(0, 1), (0, 2)]);
        let alg = EspAlgorithm::Aes128Gcm;
        let sas = domain_sas("d", &master, &lma, &mags, &pairs, alg, false);
        // LMA-MAG pairs and the two MAG-MAG pairs, each with an entry at both ends.
        assert_eq!(sas.len(), 2 * (3 + 2));
        for s in &sas {
            let here = s.local.unwrap();
            let there: Vec<_> = of(&sas, s.peer)
                .into_iter()
                .filter(|t| t.peer == here)
                .collect();
            assert_eq!(there.len(), 1, "{here} -> {}", s.peer);
            let t = &there[0];
            assert_eq!((s.spi_in, s.spi_out), (t.spi_out, t.spi_in));
            assert_eq!(s.key_in, t.key_out);
            assert_eq!(s.key_out, t.key_in);
            assert_ne!(s.key_in, s.key_out, "each direction has its own key");
            assert_eq!(s.key_in.as_ref().unwrap().as_bytes().len(), alg.key_len());
        }
        // node-b and node-c exchange nothing: neither is an access point.
        assert!(
            of(&sas, mags[1].address)
                .iter()
                .all(|s| s.peer != mags[2].address)
        );
        // Each daemon's entries pass the daemon's own checks.
        for end in std::iter::once(&lma).chain(&mags) {
            validate_security_associations(&of(&sas, end.address), "sas").unwrap();
        }
        assert_eq!(of(&sas, lma.address).len(), 3);
        assert_eq!(sas[0].local, Some(lma.address), "the LMA's entries first");
    }

    #[test]
    fn keys_depend_on_the_master_the_domain_and_the_names_not_the_addresses() {
        let (lma, mags) = three_mags();
        let m1 = [1u8; MASTER_LEN];
        let m2 = [2u8; MASTER_LEN];
        let alg = EspAlgorithm::Aes256CbcHmacSha256;
        let one = domain_sas("d", &m1, &lma, &mags, &[], alg, true);
        assert_eq!(one, domain_sas("d", &m1, &lma, &mags, &[], alg, true));
        let keys = |v: &[SecurityAssociationConfig]| -> Vec<_> {
            v.iter().map(|s| s.key_out.clone()).collect()
        };
        for other in [
            domain_sas("d", &m2, &lma, &mags, &[], alg, true),
            domain_sas("e", &m1, &lma, &mags, &[], alg, true),
        ] {
            assert!(keys(&one).iter().all(|k| !keys(&other).contains(k)));
        }
        // node-b moves to another address: same keys and SPIs, new peer address.
        let mut moved = mags.clone();
        moved[1].address = a("2001:db8:22::1");
        let after = domain_sas("d", &m1, &lma, &moved, &[], alg, true);
        assert_eq!(keys(&one), keys(&after));
        assert!(after.iter().any(|s| s.peer == moved[1].address));
        // A MAG that joins leaves the others' entries as they were.
        let mut more = mags.clone();
        more.push(End::mag("node-d", a("2001:db8:4::1")));
        let grown = domain_sas("d", &m1, &lma, &more, &[], alg, true);
        for s in &one {
            assert!(grown.contains(s), "{s:?} changed when a MAG joined");
        }
    }

    #[test]
    fn many_mags_get_distinct_inbound_spis_at_the_lma() {
        let lma = End::lma(a("2001:db8:ffff::1"));
        let mags: Vec<End> = (0..500u16)
            .map(|i| {
                End::mag(
                    &format!("n{i}"),
                    Ipv6Addr::new(0x2001, 0xdb8, i, 0, 0, 0, 0, 1),
                )
            })
            .collect();
        let sas = domain_sas(
            "d",
            &[9; MASTER_LEN],
            &lma,
            &mags,
            &[],
            EspAlgorithm::Aes128Gcm,
            false,
        );
        let at_lma = of(&sas, lma.address);
        let spis: HashSet<u32> = at_lma.iter().map(|s| s.spi_in).collect();
        assert_eq!(spis.len(), 500);
        assert!(sas.iter().all(|s| s.spi_in > 255 && s.spi_out > 255));
    }

    #[test]
    fn a_master_key_reads_back_and_garbage_does_not() {
        let m = new_master().unwrap();
        assert_eq!(m.len(), MASTER_LEN);
        assert_ne!(m, new_master().unwrap());
        let hex = KeyMaterial::new(m.clone()).to_hex();
        assert_eq!(master_of(hex.as_bytes()), Some(m));
        assert_eq!(master_of(b"00ff"), None, "too short");
        assert_eq!(master_of(b"zz"), None);
        assert_eq!(master_of(&[0xff, 0xfe]), None);
    }
}
