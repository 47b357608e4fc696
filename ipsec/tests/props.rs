//! Properties of the ESP code on arbitrary input: parsing and opening never panic, what is
//! sealed opens to the same payload, and the anti-replay window agrees with a plain model.

use std::collections::BTreeSet;
use std::net::Ipv6Addr;

use ipsec::{
    Algorithm, EspPacket, ReplayWindow, SecurityAssociationDatabase, SecurityAssociationSpec, Spi,
    Trailer, xfrm,
};
use pmip::config::KeyMaterial;
use proptest::prelude::*;

const MH: u8 = 135;
const ALGS: [Algorithm; 4] = [
    Algorithm::Aes128Gcm,
    Algorithm::Aes256Gcm,
    Algorithm::Aes128CbcHmacSha256,
    Algorithm::Aes256CbcHmacSha256,
];

fn local() -> Ipv6Addr {
    "2001:db8::1".parse().unwrap()
}
fn peer() -> Ipv6Addr {
    "2001:db8::2".parse().unwrap()
}

/// The two ends of one SA pair; `spi` inbound at `local`.
fn ends(
    alg: Algorithm,
    spi: u32,
    esn: bool,
) -> (SecurityAssociationDatabase, SecurityAssociationDatabase) {
    let k1 = KeyMaterial::new((0..alg.key_len() as u8).collect());
    let k2 = KeyMaterial::new((0..alg.key_len() as u8).rev().collect());
    let at_local = SecurityAssociationSpec {
        peer: peer(),
        algorithm: alg,
        spi_in: Spi(spi),
        spi_out: Spi(spi + 1),
        key_in: k1.clone(),
        key_out: k2.clone(),
        esn,
    };
    let at_peer = SecurityAssociationSpec {
        peer: local(),
        algorithm: alg,
        spi_in: Spi(spi + 1),
        spi_out: Spi(spi),
        key_in: k2,
        key_out: k1,
        esn,
    };
    (
        SecurityAssociationDatabase::new(&[at_local], 64, false).unwrap(),
        SecurityAssociationDatabase::new(&[at_peer], 64, false).unwrap(),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn views_and_trailers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        if let Ok(p) = EspPacket::new_checked(&bytes[..]) {
            let _ = (p.spi(), p.sequence_number(), p.payload());
        }
        if let Ok((payload, t)) = Trailer::split(&bytes) {
            prop_assert_eq!(payload.len() + usize::from(t.pad_length) + 2, bytes.len());
        }
        let _ = xfrm::acks(&bytes);
    }

    /// Arbitrary bytes, and arbitrary bytes behind a valid SPI, from the peer and from
    /// elsewhere: a clean drop every time, never a panic, never a payload.
    #[test]
    fn opening_garbage_is_a_drop(
        alg in 0usize..4,
        tail in proptest::collection::vec(any::<u8>(), 0..200),
        seq in any::<u32>(),
        from_peer in any::<bool>(),
    ) {
        let (mut db, _) = ends(ALGS[alg], 0x1000, false);
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&0x1000u32.to_be_bytes());
        bytes.extend_from_slice(&seq.to_be_bytes());
        bytes.extend_from_slice(&tail);
        let src = if from_peer { peer() } else { local() };
        prop_assert!(db.unprotect(src, MH, &mut bytes).is_err());
        let mut raw = tail.clone();
        prop_assert!(db.unprotect(src, MH, &mut raw).is_err());
    }

    #[test]
    fn what_is_sealed_opens_to_the_same_payload(
        alg in 0usize..4,
        esn in any::<bool>(),
        msgs in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 1..8),
    ) {
        let (mut rx, mut tx) = ends(ALGS[alg], 0x5000, esn);
        let mut sent = Vec::new();
        for m in &msgs {
            let mut wire = Vec::new();
            tx.protect(local(), MH, m, &mut wire).unwrap();
            prop_assert_eq!(wire.len(), m.len() + ipsec::crypto::overhead(ALGS[alg], m.len()));
            sent.push(wire);
        }
        // Delivered in reverse order: all within the window, all accepted once.
        for (m, wire) in msgs.iter().zip(&sent).rev() {
            let mut w = wire.clone();
            let opened = rx.unprotect(peer(), MH, &mut w).unwrap();
            prop_assert_eq!(opened.payload, &m[..]);
        }
        for wire in &sent {
            let mut w = wire.clone();
            prop_assert_eq!(rx.unprotect(peer(), MH, &mut w).unwrap_err().reason(), "replay");
        }
    }

    /// Any single flipped bit of a sealed packet is refused (by SPI lookup, replay check or
    /// ICV), never delivered.
    #[test]
    fn a_flipped_bit_is_never_delivered(alg in 0usize..4, len in 0usize..100, bit in any::<prop::sample::Index>()) {
        let (mut rx, mut tx) = ends(ALGS[alg], 0x5000, false);
        let mut wire = Vec::new();
        tx.protect(local(), MH, &vec![0x5a; len], &mut wire).unwrap();
        let b = bit.index(wire.len() * 8);
        wire[b / 8] ^= 1 << (b % 8);
        prop_assert!(rx.unprotect(peer(), MH, &mut wire).is_err());
    }

    /// The window against a model: a sequence number is accepted iff it is not zero, was not
    /// accepted before and is not W or more below the highest accepted one.
    #[test]
    fn the_window_agrees_with_a_model(
        size in prop::sample::select(vec![32u32, 64, 100, 1024]),
        seqs in proptest::collection::vec(1u32..3000, 1..400),
    ) {
        let mut w = ReplayWindow::new(size, false);
        let mut accepted = BTreeSet::new();
        let mut top = 0u64;
        for s in seqs {
            let s = u64::from(s);
            let model = !accepted.contains(&s) && (s > top || top - s < u64::from(size));
            let got = w.check(s as u32);
            prop_assert_eq!(got.is_ok(), model, "seq {} top {} size {}", s, top, size);
            if let Ok(v) = got {
                w.accept(v);
                accepted.insert(s);
                top = top.max(s);
            }
        }
    }
}
