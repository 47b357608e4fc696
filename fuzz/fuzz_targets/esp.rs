//! The ESP code of the `ipsec` crate on arbitrary bytes: the header view, the trailer, the
//! inbound path of the security association database (SA lookup, anti-replay, ICV, padding,
//! selector), the XFRM acknowledgement reader and the counters file. What a sender seals must
//! open to the same payload, and any single changed octet must be refused.
//!
//! The first input octet picks what the rest is.

#![no_main]

use std::net::Ipv6Addr;

use ipsec::{
    Algorithm, Counters, EspPacket, SecurityAssociationDatabase, SecurityAssociationSpec, Spi,
    Trailer, xfrm,
};
use libfuzzer_sys::fuzz_target;
use pmip::config::KeyMaterial;

const LOCAL: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
const PEER: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);
const MH: u8 = 135;
const ALGS: [Algorithm; 4] = [
    Algorithm::Aes128Gcm,
    Algorithm::Aes256Gcm,
    Algorithm::Aes128CbcHmacSha256,
    Algorithm::Aes256CbcHmacSha256,
];

/// SPI `0x1000 + i` carries algorithm `i`; `esn` for the odd ones.
fn specs(from_local: bool) -> Vec<SecurityAssociationSpec> {
    ALGS.iter()
        .enumerate()
        .map(|(i, &alg)| {
            let up = KeyMaterial::new(vec![i as u8 + 1; alg.key_len()]);
            let down = KeyMaterial::new(vec![i as u8 + 101; alg.key_len()]);
            let (spi_in, spi_out) = (Spi(0x1000 + i as u32), Spi(0x2000 + i as u32));
            if from_local {
                SecurityAssociationSpec {
                    peer: PEER,
                    algorithm: alg,
                    spi_in,
                    spi_out,
                    key_in: up,
                    key_out: down,
                    esn: i % 2 == 1,
                }
            } else {
                SecurityAssociationSpec {
                    peer: LOCAL,
                    algorithm: alg,
                    spi_in: spi_out,
                    spi_out: spi_in,
                    key_in: down,
                    key_out: up,
                    esn: i % 2 == 1,
                }
            }
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 5 {
        0 => {
            if let Ok(p) = EspPacket::new_checked(rest) {
                let _ = (p.spi(), p.sequence_number(), p.payload().len());
            }
            if let Ok((payload, t)) = Trailer::split(rest) {
                assert_eq!(payload.len() + usize::from(t.pad_length) + 2, rest.len());
            }
            let _ = xfrm::acks(rest);
        }
        1 => {
            // Arbitrary packets (the seeds are genuine ones) from the peer and from a stranger.
            let mut db = SecurityAssociationDatabase::new(&specs(true), 64, false).unwrap();
            let mut a = rest.to_vec();
            if let Ok(o) = db.unprotect(PEER, MH, &mut a) {
                assert!(o.payload.len() + 8 + 8 + 2 + 16 <= rest.len());
                let mut again = rest.to_vec();
                assert!(
                    db.unprotect(PEER, MH, &mut again).is_err(),
                    "accepted twice"
                );
            }
            let mut b = rest.to_vec();
            assert!(
                db.unprotect(LOCAL, MH, &mut b).is_err(),
                "SPIs belong to their peer"
            );
        }
        2 => {
            // Seal with the SA the input picks, open, replay, and change one octet.
            let Some((&pick, rest)) = rest.split_first() else {
                return;
            };
            let Some((&at, payload)) = rest.split_first() else {
                return;
            };
            let mut rx = SecurityAssociationDatabase::new(&specs(true), 64, false).unwrap();
            let mut all = specs(false);
            all.rotate_left(usize::from(pick) % ALGS.len());
            let mut tx = SecurityAssociationDatabase::new(&all[..1], 64, false).unwrap();
            let mut wire = Vec::new();
            tx.protect(LOCAL, MH, payload, &mut wire).unwrap();
            let mut changed = wire.clone();
            let i = usize::from(at) % changed.len();
            changed[i] ^= 0x80;
            assert!(rx.unprotect(PEER, MH, &mut changed).is_err());
            let mut w = wire.clone();
            assert_eq!(rx.unprotect(PEER, MH, &mut w).unwrap().payload, payload);
            assert_eq!(
                rx.unprotect(PEER, MH, &mut wire).unwrap_err().reason(),
                "replay"
            );
        }
        3 => {
            if let Ok(text) = std::str::from_utf8(rest) {
                if let Ok(c) = Counters::parse(text) {
                    assert_eq!(Counters::parse(&c.to_text()).unwrap(), c);
                    let mut db = SecurityAssociationDatabase::new(&specs(true), 64, true).unwrap();
                    db.restore(&c);
                    let _ = db.reserve();
                }
                if let Ok(k) = KeyMaterial::from_hex(text) {
                    assert_eq!(KeyMaterial::from_hex(&k.to_hex()).unwrap(), k);
                }
            }
        }
        _ => {
            // A stream of packets, each a length octet and that many octets, through one
            // database: state from earlier packets must not make a later one panic.
            let mut db = SecurityAssociationDatabase::new(&specs(true), 32, false).unwrap();
            let mut rest = rest;
            while let Some((&n, tail)) = rest.split_first() {
                let n = usize::from(n).min(tail.len());
                let mut p = tail[..n].to_vec();
                let _ = db.unprotect(PEER, MH, &mut p);
                rest = &tail[n..];
            }
        }
    }
});
