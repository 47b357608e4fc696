//! The security association database (RFC 4301 §4.4.2) of one signalling address, and the
//! processing rules around it: outbound (RFC 4303 §3.3) and inbound (RFC 4303 §3.4, RFC 4301
//! §5.2).
//!
//! - Per peer, a list of SA pairs in configuration order. The first pair's outbound SA sends;
//!   every pair's inbound SA receives. A key rollover is two pairs at once, so that no message
//!   in flight is lost whichever end changes first (see the README's rollover steps).
//! - Inbound SAs are found by source address and SPI (RFC 4301 §4.1 allows the receiver to use
//!   more than the SPI; the source address makes SPIs per peer, so two peers may pick the
//!   same one).
//! - The outbound sequence number never cycles (RFC 4303 §3.3.3) and never goes back across a
//!   restart: the daemon persists a reservation ahead of it ([`Counters`]) before using it, so
//!   that a restarted daemon neither repeats a GCM nonce under the same key nor falls left of
//!   its peer's anti-replay window. RFC 4303 §3.3.3 lets manually keyed SAs go without
//!   anti-replay for exactly this reason; here anti-replay stays on and the counter is made
//!   durable instead.
//! - Inbound, in the order RFC 4303 §3.4 gives: SA lookup, sequence number check, ICV check
//!   and decryption, window update, then the SA's selector check after decryption (RFC 4301
//!   §5.2 step 4: the SAs carry the Mobility Header only, so any other next header is
//!   dropped). Every drop names its reason ([`Drop`]) so the daemon can count and log it.

use std::collections::HashMap;
use std::net::Ipv6Addr;

use crate::crypto::{SequenceNumber, Transform};
use crate::replay::{Replay, ReplayWindow};
use crate::wire::{EspPacket, NEXT_HEADER_NO_NEXT, Spi};
use crate::{Error, SecurityAssociationSpec};

/// Sequence numbers reserved at a time. A restart skips what is left of the block: with 32-bit
/// sequence numbers an SA survives 4096 restarts before it must be rekeyed.
pub const RESERVATION_BLOCK: u64 = 1 << 20;

/// Why an outgoing message was not protected (and so not sent: RFC 5213 §4 never sends the
/// signalling in clear once ESP is on).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProtectError {
    #[error("no security association with {0}")]
    NoSecurityAssociation(Ipv6Addr),
    /// RFC 4303 §3.3.3: the counter would cycle; the SA must be replaced (an auditable event).
    #[error("the sequence number of SA {spi} to {peer} would cycle: configure a new SA")]
    SequenceExhausted { peer: Ipv6Addr, spi: Spi },
    /// The durable reservation does not cover the next sequence number yet.
    #[error("sequence numbers of SA {spi} to {peer} are not reserved yet")]
    NotReserved { peer: Ipv6Addr, spi: Spi },
}

/// Why an incoming packet was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Drop {
    /// Too short, or a ciphertext that is not whole blocks.
    #[error("malformed ESP packet: {0}")]
    Malformed(Error),
    /// No inbound SA for this source and SPI (RFC 4303 §3.4.2: discard, auditable).
    #[error("no inbound SA {spi} from {src}")]
    UnknownSpi { src: Ipv6Addr, spi: Spi },
    /// RFC 4303 §3.4.3.
    #[error("replay on SA {spi} from {src}: {replay}")]
    Replay {
        src: Ipv6Addr,
        spi: Spi,
        replay: Replay,
    },
    /// RFC 4303 §3.4.4: the ICV did not verify.
    #[error("integrity check failed on SA {spi} from {src}")]
    Integrity { src: Ipv6Addr, spi: Spi },
    /// RFC 4303 §2.4: the decrypted padding is not the default series.
    #[error("bad padding on SA {spi} from {src}")]
    BadPadding { src: Ipv6Addr, spi: Spi },
    /// A dummy packet (next header 59), which RFC 4303 §2.6 says to discard.
    #[error("dummy packet on SA {spi} from {src}")]
    Dummy { src: Ipv6Addr, spi: Spi },
    /// Authenticated, but not a Mobility Header: outside the SA's selectors (RFC 4301 §5.2).
    #[error("next header {next_header} on SA {spi} from {src} is not the Mobility Header")]
    Selector {
        src: Ipv6Addr,
        spi: Spi,
        next_header: u8,
    },
}

impl Drop {
    /// A short name for metrics labels.
    pub fn reason(&self) -> &'static str {
        match self {
            Drop::Malformed(_) => "malformed",
            Drop::UnknownSpi { .. } => "unknown-spi",
            Drop::Replay { .. } => "replay",
            Drop::Integrity { .. } => "integrity",
            Drop::BadPadding { .. } => "padding",
            Drop::Dummy { .. } => "dummy",
            Drop::Selector { .. } => "selector",
        }
    }
}

/// A packet that passed every inbound check.
#[derive(Debug, PartialEq, Eq)]
pub struct Opened<'a> {
    /// The Mobility Header, within the caller's buffer.
    pub payload: &'a [u8],
    pub spi: Spi,
    pub sequence_number: u64,
}

struct Outbound {
    spi: Spi,
    transform: Transform,
    esn: bool,
    /// The last sequence number sent (0: none).
    seq: u64,
    /// The highest sequence number that may be sent: what is durably reserved.
    reserved: u64,
}

struct Inbound {
    transform: Transform,
    window: ReplayWindow,
}

/// The SAs of one signalling address with all its peers.
pub struct SecurityAssociationDatabase {
    outbound: HashMap<Ipv6Addr, Vec<Outbound>>,
    inbound: HashMap<(Ipv6Addr, Spi), Inbound>,
    replay_window: u32,
    durable: bool,
}

impl core::fmt::Debug for SecurityAssociationDatabase {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SecurityAssociationDatabase")
            .field("peers", &self.outbound.len())
            .field("inbound", &self.inbound.len())
            .field("replay_window", &self.replay_window)
            .field("durable", &self.durable)
            .finish()
    }
}

/// Sequence numbers worth keeping across a restart: per outbound SA what is reserved, per
/// inbound SA the right edge of its window. A line-based text file:
/// `out <peer> <spi> <value>` / `in <peer> <spi> <value>`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    pub outbound: Vec<(Ipv6Addr, Spi, u64)>,
    pub inbound: Vec<(Ipv6Addr, Spi, u64)>,
}

impl Counters {
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        for (dir, list) in [("out", &self.outbound), ("in", &self.inbound)] {
            for (peer, spi, v) in list {
                s.push_str(&format!("{dir} {peer} {:#x} {v}\n", spi.0));
            }
        }
        s
    }

    /// Parses [`Counters::to_text`]; a line that does not parse is an error naming it.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut c = Counters::default();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = || format!("line {}: {line:?}", n + 1);
            let f: Vec<&str> = line.split_ascii_whitespace().collect();
            let [dir, peer, spi, value] = f[..] else {
                return Err(bad());
            };
            let peer: Ipv6Addr = peer.parse().map_err(|_| bad())?;
            let spi = spi
                .strip_prefix("0x")
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .ok_or_else(bad)?;
            let value: u64 = value.parse().map_err(|_| bad())?;
            match dir {
                "out" => c.outbound.push((peer, Spi(spi), value)),
                "in" => c.inbound.push((peer, Spi(spi), value)),
                _ => return Err(bad()),
            }
        }
        Ok(c)
    }
}

impl SecurityAssociationDatabase {
    /// The SAs of `specs` (already validated: no inbound SPI twice for one peer). With
    /// `durable`, nothing is sent before [`SecurityAssociationDatabase::reserve`] and
    /// [`SecurityAssociationDatabase::reserved`] made the sequence numbers durable; without,
    /// sequence numbers start at 1 at every start (tests, benchmarks).
    pub fn new(
        specs: &[SecurityAssociationSpec],
        replay_window: u32,
        durable: bool,
    ) -> Result<Self, Error> {
        let mut db = SecurityAssociationDatabase {
            outbound: HashMap::new(),
            inbound: HashMap::new(),
            replay_window,
            durable,
        };
        db.install(specs)?;
        Ok(db)
    }

    /// Replaces the SAs with `specs` (a reloaded configuration). SAs that stay (same peer
    /// and SPI) keep their sequence numbers and windows, so bindings and messages in flight
    /// are not disturbed; the others start fresh.
    pub fn install(&mut self, specs: &[SecurityAssociationSpec]) -> Result<(), Error> {
        let mut outbound: HashMap<Ipv6Addr, Vec<Outbound>> = HashMap::new();
        let mut inbound = HashMap::new();
        for s in specs {
            let (seq, reserved) = self
                .outbound
                .get(&s.peer)
                .and_then(|l| l.iter().find(|o| o.spi == s.spi_out))
                .map_or((0, if self.durable { 0 } else { u64::MAX }), |o| {
                    (o.seq, o.reserved)
                });
            let list = outbound.entry(s.peer).or_default();
            if !list.iter().any(|o| o.spi == s.spi_out) {
                list.push(Outbound {
                    spi: s.spi_out,
                    transform: Transform::new(s.algorithm, s.key_out.as_bytes())?,
                    esn: s.esn,
                    seq,
                    reserved,
                });
            }
            let window = self.inbound.get(&(s.peer, s.spi_in)).map_or_else(
                || ReplayWindow::new(self.replay_window, s.esn),
                |i| i.window.clone(),
            );
            inbound.insert(
                (s.peer, s.spi_in),
                Inbound {
                    transform: Transform::new(s.algorithm, s.key_in.as_bytes())?,
                    window,
                },
            );
        }
        self.outbound = outbound;
        self.inbound = inbound;
        Ok(())
    }

    /// Whether any SA with `peer` exists.
    pub fn has_peer(&self, peer: &Ipv6Addr) -> bool {
        self.outbound.contains_key(peer)
    }

    /// The peers, in no particular order.
    pub fn peers(&self) -> impl Iterator<Item = &Ipv6Addr> {
        self.outbound.keys()
    }

    /// Appends to `out` the ESP packet that carries the Mobility Header `mh` to `peer`.
    pub fn protect(
        &mut self,
        peer: Ipv6Addr,
        next_header: u8,
        mh: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), ProtectError> {
        let sa = self
            .outbound
            .get_mut(&peer)
            .and_then(|l| l.first_mut())
            .ok_or(ProtectError::NoSecurityAssociation(peer))?;
        let limit = if sa.esn {
            u64::MAX
        } else {
            u64::from(u32::MAX)
        };
        if sa.seq >= limit {
            return Err(ProtectError::SequenceExhausted { peer, spi: sa.spi });
        }
        let next = sa.seq + 1;
        if next > sa.reserved {
            return Err(ProtectError::NotReserved { peer, spi: sa.spi });
        }
        sa.seq = next;
        sa.transform.seal(
            sa.spi,
            SequenceNumber {
                value: next,
                esn: sa.esn,
            },
            next_header,
            mh,
            out,
        );
        Ok(())
    }

    /// Checks and decrypts the ESP packet `packet` from `src` in place.
    pub fn unprotect<'a>(
        &mut self,
        src: Ipv6Addr,
        expected_next_header: u8,
        packet: &'a mut [u8],
    ) -> Result<Opened<'a>, Drop> {
        let view = EspPacket::new_checked(&packet[..]).map_err(Drop::Malformed)?;
        let spi = view.spi();
        let low = view.sequence_number();
        let sa = self
            .inbound
            .get_mut(&(src, spi))
            .ok_or(Drop::UnknownSpi { src, spi })?;
        // RFC 4303 §3.4.3: the sequence number is checked before the ICV...
        let seq = sa
            .window
            .check(low)
            .map_err(|replay| Drop::Replay { src, spi, replay })?;
        let esn = sa.window.esn();
        let (payload, trailer) = sa
            .transform
            .open(SequenceNumber { value: seq, esn }, packet)
            .map_err(|e| match e {
                Error::Integrity => Drop::Integrity { src, spi },
                Error::BadPadding => Drop::BadPadding { src, spi },
                other => Drop::Malformed(other),
            })?;
        // ...and the window moves only once the ICV verified.
        sa.window.accept(seq);
        if trailer.next_header == NEXT_HEADER_NO_NEXT {
            return Err(Drop::Dummy { src, spi });
        }
        if trailer.next_header != expected_next_header {
            return Err(Drop::Selector {
                src,
                spi,
                next_header: trailer.next_header,
            });
        }
        Ok(Opened {
            payload,
            spi,
            sequence_number: seq,
        })
    }

    /// When an outbound SA has used half of its reservation (or has none), the counters to
    /// persist before sending more: every outbound SA reserved a block ahead of where it is,
    /// every inbound SA's right edge. Hand them to [`SecurityAssociationDatabase::reserved`]
    /// once they are on disk.
    pub fn reserve(&self) -> Option<Counters> {
        if !self.durable {
            return None;
        }
        let due = self
            .outbound
            .values()
            .flatten()
            .any(|o| o.reserved.saturating_sub(o.seq) < RESERVATION_BLOCK / 2);
        due.then(|| self.counters(|o| o.reserved.max(o.seq.saturating_add(RESERVATION_BLOCK))))
    }

    /// What to write at shutdown: the same as [`SecurityAssociationDatabase::reserve`] would,
    /// whether due or not.
    pub fn snapshot(&self) -> Counters {
        self.counters(|o| o.reserved.max(o.seq))
    }

    fn counters(&self, out: impl Fn(&Outbound) -> u64) -> Counters {
        let mut c = Counters::default();
        for (peer, list) in &self.outbound {
            for o in list {
                c.outbound.push((*peer, o.spi, out(o)));
            }
        }
        for ((peer, spi), i) in &self.inbound {
            c.inbound.push((*peer, *spi, i.window.top()));
        }
        c.outbound.sort();
        c.inbound.sort();
        c
    }

    /// `c` (from [`SecurityAssociationDatabase::reserve`]) is durable: send up to it.
    pub fn reserved(&mut self, c: &Counters) {
        for (peer, spi, v) in &c.outbound {
            if let Some(o) = self.outbound_mut(peer, *spi) {
                o.reserved = o.reserved.max(*v);
            }
        }
    }

    /// At start: continue after what a previous run reserved (never reusing a sequence
    /// number it may have sent), and refuse what a previous run already accepted.
    pub fn restore(&mut self, c: &Counters) {
        let durable = self.durable;
        for (peer, spi, v) in &c.outbound {
            if let Some(o) = self.outbound_mut(peer, *spi) {
                o.seq = o.seq.max(*v);
                if durable {
                    o.reserved = o.reserved.min(o.seq);
                }
            }
        }
        for (peer, spi, v) in &c.inbound {
            if let Some(i) = self.inbound.get_mut(&(*peer, *spi)) {
                i.window.restore(*v);
            }
        }
    }

    fn outbound_mut(&mut self, peer: &Ipv6Addr, spi: Spi) -> Option<&mut Outbound> {
        self.outbound
            .get_mut(peer)
            .and_then(|l| l.iter_mut().find(|o| o.spi == spi))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Algorithm;
    use pmip::config::KeyMaterial;

    const MH: u8 = pmip::wire::IPPROTO_MH;

    fn a(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    fn lma() -> Ipv6Addr {
        a("2001:db8::1")
    }
    fn mag() -> Ipv6Addr {
        a("2001:db8::10")
    }

    /// The SA pair between the LMA and a MAG with SPIs `base`, `base + 1` and keys from `seed`,
    /// as seen from `side` (true: the LMA's entry).
    fn pair(lma_side: bool, base: u32, seed: u8, alg: Algorithm) -> SecurityAssociationSpec {
        let k_up = KeyMaterial::new(vec![seed; alg.key_len()]);
        let k_down = KeyMaterial::new(vec![seed.wrapping_add(1); alg.key_len()]);
        // Upstream (MAG -> LMA) uses SPI `base`, downstream `base + 1`.
        if lma_side {
            SecurityAssociationSpec {
                peer: mag(),
                algorithm: alg,
                spi_in: Spi(base),
                spi_out: Spi(base + 1),
                key_in: k_up,
                key_out: k_down,
                esn: false,
            }
        } else {
            SecurityAssociationSpec {
                peer: lma(),
                algorithm: alg,
                spi_in: Spi(base + 1),
                spi_out: Spi(base),
                key_in: k_down,
                key_out: k_up,
                esn: false,
            }
        }
    }

    fn db(specs: &[SecurityAssociationSpec]) -> SecurityAssociationDatabase {
        SecurityAssociationDatabase::new(specs, 64, false).unwrap()
    }

    /// MAG sends `msg` to the LMA; what the LMA makes of it.
    fn up(
        m: &mut SecurityAssociationDatabase,
        l: &mut SecurityAssociationDatabase,
        msg: &[u8],
    ) -> Result<Vec<u8>, Drop> {
        let mut wire = Vec::new();
        m.protect(lma(), MH, msg, &mut wire).unwrap();
        l.unprotect(mag(), MH, &mut wire)
            .map(|o| o.payload.to_vec())
    }

    #[test]
    fn each_algorithm_carries_messages_both_ways() {
        for alg in [
            Algorithm::Aes128Gcm,
            Algorithm::Aes256Gcm,
            Algorithm::Aes128CbcHmacSha256,
            Algorithm::Aes256CbcHmacSha256,
        ] {
            let mut l = db(&[pair(true, 0x1000, 1, alg)]);
            let mut m = db(&[pair(false, 0x1000, 1, alg)]);
            for i in 0..5u8 {
                assert_eq!(up(&mut m, &mut l, &[i; 40]).unwrap(), [i; 40]);
                let mut wire = Vec::new();
                l.protect(mag(), MH, b"pba", &mut wire).unwrap();
                assert_eq!(
                    EspPacket::new_checked(&wire[..]).unwrap().spi(),
                    Spi(0x1001)
                );
                assert_eq!(m.unprotect(lma(), MH, &mut wire).unwrap().payload, b"pba");
            }
        }
    }

    #[test]
    fn a_replayed_packet_is_dropped_and_moves_nothing() {
        let mut l = db(&[pair(true, 0x1000, 1, Algorithm::Aes128Gcm)]);
        let mut m = db(&[pair(false, 0x1000, 1, Algorithm::Aes128Gcm)]);
        let mut wire = Vec::new();
        m.protect(lma(), MH, b"pbu", &mut wire).unwrap();
        let captured = wire.clone();
        assert!(l.unprotect(mag(), MH, &mut wire).is_ok());
        let mut again = captured.clone();
        let e = l.unprotect(mag(), MH, &mut again).unwrap_err();
        assert_eq!(e.reason(), "replay");
        assert!(matches!(
            e,
            Drop::Replay {
                replay: Replay::Duplicate(1),
                ..
            }
        ));
        // Later packets still pass.
        assert_eq!(up(&mut m, &mut l, b"next").unwrap(), b"next");
    }

    #[test]
    fn a_wrong_key_fails_integrity_and_does_not_move_the_window() {
        let mut l = db(&[pair(true, 0x1000, 1, Algorithm::Aes128Gcm)]);
        // A sender with the right SPI but another key.
        let mut forger = db(&[pair(false, 0x1000, 77, Algorithm::Aes128Gcm)]);
        let mut wire = Vec::new();
        forger
            .protect(lma(), MH, b"spoofed pbu", &mut wire)
            .unwrap();
        let e = l.unprotect(mag(), MH, &mut wire).unwrap_err();
        assert_eq!(
            e,
            Drop::Integrity {
                src: mag(),
                spi: Spi(0x1000)
            }
        );
        // The genuine MAG's first packet (sequence number 1, like the forgery) still passes:
        // a forgery never moves the window.
        let mut m = db(&[pair(false, 0x1000, 1, Algorithm::Aes128Gcm)]);
        assert!(up(&mut m, &mut l, b"pbu").is_ok());
    }

    #[test]
    fn spis_belong_to_their_source_address() {
        let mut l = db(&[pair(true, 0x1000, 1, Algorithm::Aes128Gcm)]);
        let mut m = db(&[pair(false, 0x1000, 1, Algorithm::Aes128Gcm)]);
        let mut wire = Vec::new();
        m.protect(lma(), MH, b"pbu", &mut wire).unwrap();
        let other = a("2001:db8::99");
        assert_eq!(
            l.unprotect(other, MH, &mut wire.clone()).unwrap_err(),
            Drop::UnknownSpi {
                src: other,
                spi: Spi(0x1000)
            }
        );
        wire[3] ^= 1;
        assert_eq!(
            l.unprotect(mag(), MH, &mut wire).unwrap_err().reason(),
            "unknown-spi"
        );
        assert_eq!(
            l.unprotect(mag(), MH, &mut [0, 0, 0x10]).unwrap_err(),
            Drop::Malformed(Error::Truncated)
        );
        assert_eq!(
            m.protect(other, MH, b"x", &mut Vec::new()).unwrap_err(),
            ProtectError::NoSecurityAssociation(other)
        );
    }

    #[test]
    fn only_the_mobility_header_passes_and_dummies_are_discarded() {
        let mut l = db(&[pair(true, 0x1000, 1, Algorithm::Aes128CbcHmacSha256)]);
        let mut m = db(&[pair(false, 0x1000, 1, Algorithm::Aes128CbcHmacSha256)]);
        let mut wire = Vec::new();
        m.protect(lma(), 17, b"udp", &mut wire).unwrap();
        assert_eq!(
            l.unprotect(mag(), MH, &mut wire).unwrap_err(),
            Drop::Selector {
                src: mag(),
                spi: Spi(0x1000),
                next_header: 17
            }
        );
        wire.clear();
        m.protect(lma(), NEXT_HEADER_NO_NEXT, b"", &mut wire)
            .unwrap();
        assert_eq!(
            l.unprotect(mag(), MH, &mut wire).unwrap_err().reason(),
            "dummy"
        );
    }

    /// The three steps of a rollover, each end changing at its own time: nothing in flight is
    /// dropped at any point.
    #[test]
    fn a_rollover_loses_nothing_whichever_end_moves_first() {
        let alg = Algorithm::Aes128Gcm;
        let (old_l, old_m) = (pair(true, 0x1000, 1, alg), pair(false, 0x1000, 1, alg));
        let (new_l, new_m) = (pair(true, 0x2000, 9, alg), pair(false, 0x2000, 9, alg));
        let mut l = db(std::slice::from_ref(&old_l));
        let mut m = db(std::slice::from_ref(&old_m));
        let exchange = |m: &mut SecurityAssociationDatabase,
                        l: &mut SecurityAssociationDatabase| {
            assert!(up(m, l, b"pbu").is_ok());
            let mut w = Vec::new();
            l.protect(mag(), MH, b"pba", &mut w).unwrap();
            let spi = EspPacket::new_checked(&w[..]).unwrap().spi();
            assert!(m.unprotect(lma(), MH, &mut w).is_ok());
            spi
        };
        exchange(&mut m, &mut l);
        // Step 1: the new pair is added second. The LMA first, then the MAG.
        l.install(&[old_l.clone(), new_l.clone()]).unwrap();
        assert_eq!(exchange(&mut m, &mut l), Spi(0x1001));
        m.install(&[old_m.clone(), new_m.clone()]).unwrap();
        assert_eq!(exchange(&mut m, &mut l), Spi(0x1001));
        // Step 2: the new pair goes first. The MAG first this time.
        m.install(&[new_m.clone(), old_m.clone()]).unwrap();
        assert_eq!(
            exchange(&mut m, &mut l),
            Spi(0x1001),
            "the LMA still sends on the old SA"
        );
        l.install(&[new_l.clone(), old_l.clone()]).unwrap();
        assert_eq!(exchange(&mut m, &mut l), Spi(0x2001));
        // Step 3: the old pair goes.
        l.install(std::slice::from_ref(&new_l)).unwrap();
        m.install(std::slice::from_ref(&new_m)).unwrap();
        assert_eq!(exchange(&mut m, &mut l), Spi(0x2001));
    }

    #[test]
    fn an_sa_that_stays_keeps_its_window_across_a_reload() {
        let mut l = db(&[pair(true, 0x1000, 1, Algorithm::Aes128Gcm)]);
        let mut m = db(&[pair(false, 0x1000, 1, Algorithm::Aes128Gcm)]);
        let mut wire = Vec::new();
        m.protect(lma(), MH, b"pbu", &mut wire).unwrap();
        let captured = wire.clone();
        l.unprotect(mag(), MH, &mut wire).unwrap();
        l.install(&[
            pair(true, 0x1000, 1, Algorithm::Aes128Gcm),
            pair(true, 0x3000, 3, Algorithm::Aes128Gcm),
        ])
        .unwrap();
        assert_eq!(
            l.unprotect(mag(), MH, &mut captured.clone())
                .unwrap_err()
                .reason(),
            "replay"
        );
    }

    #[test]
    fn durable_sequence_numbers_are_reserved_before_use_and_survive_a_restart() {
        let spec = pair(false, 0x1000, 1, Algorithm::Aes128Gcm);
        let mut m =
            SecurityAssociationDatabase::new(std::slice::from_ref(&spec), 64, true).unwrap();
        assert_eq!(
            m.protect(lma(), MH, b"x", &mut Vec::new()).unwrap_err(),
            ProtectError::NotReserved {
                peer: lma(),
                spi: Spi(0x1000)
            }
        );
        let c = m.reserve().expect("nothing reserved yet");
        assert_eq!(c.outbound, [(lma(), Spi(0x1000), RESERVATION_BLOCK)]);
        m.reserved(&c);
        assert!(m.reserve().is_none(), "a fresh block is not due");
        let mut l = db(&[pair(true, 0x1000, 1, Algorithm::Aes128Gcm)]);
        for _ in 0..3 {
            up(&mut m, &mut l, b"pbu").unwrap();
        }
        // The file as written, read back after a crash: the MAG continues above the block,
        // so the LMA (which did not restart) accepts it, and no GCM nonce repeats.
        let text = c.to_text();
        let mut m2 = SecurityAssociationDatabase::new(&[spec], 64, true).unwrap();
        m2.restore(&Counters::parse(&text).unwrap());
        assert!(
            m2.protect(lma(), MH, b"x", &mut Vec::new()).is_err(),
            "reserve first"
        );
        let c2 = m2.reserve().unwrap();
        assert_eq!(c2.outbound[0].2, 2 * RESERVATION_BLOCK);
        m2.reserved(&c2);
        let mut w = Vec::new();
        m2.protect(lma(), MH, b"after restart", &mut w).unwrap();
        assert_eq!(
            EspPacket::new_checked(&w[..]).unwrap().sequence_number() as u64,
            RESERVATION_BLOCK + 1
        );
        assert_eq!(
            l.unprotect(mag(), MH, &mut w).unwrap().payload,
            b"after restart"
        );
    }

    #[test]
    fn a_reservation_is_due_at_half_the_block() {
        let spec = pair(false, 0x1000, 1, Algorithm::Aes128Gcm);
        let mut m = SecurityAssociationDatabase::new(&[spec], 64, true).unwrap();
        let c = Counters {
            outbound: vec![(lma(), Spi(0x1000), RESERVATION_BLOCK / 2 + 10)],
            inbound: vec![],
        };
        m.restore(&c);
        m.reserved(&Counters {
            outbound: vec![(lma(), Spi(0x1000), RESERVATION_BLOCK + 5)],
            inbound: vec![],
        });
        assert!(m.reserve().is_some(), "less than half a block left");
    }

    #[test]
    fn restored_windows_refuse_what_came_before_a_restart() {
        let mut l = db(&[pair(true, 0x1000, 1, Algorithm::Aes128Gcm)]);
        let mut m = db(&[pair(false, 0x1000, 1, Algorithm::Aes128Gcm)]);
        let mut old = Vec::new();
        m.protect(lma(), MH, b"pbu", &mut old).unwrap();
        for _ in 0..100 {
            up(&mut m, &mut l, b"pbu").unwrap();
        }
        let saved = l.snapshot();
        assert_eq!(saved.inbound, [(mag(), Spi(0x1000), 101)]);
        let mut l2 = db(&[pair(true, 0x1000, 1, Algorithm::Aes128Gcm)]);
        l2.restore(&saved);
        assert_eq!(
            l2.unprotect(mag(), MH, &mut old).unwrap_err().reason(),
            "replay"
        );
    }

    #[test]
    fn the_counter_never_cycles_without_esn() {
        let mut m = db(&[pair(false, 0x1000, 1, Algorithm::Aes128Gcm)]);
        m.restore(&Counters {
            outbound: vec![(lma(), Spi(0x1000), u64::from(u32::MAX) - 1)],
            inbound: vec![],
        });
        assert!(m.protect(lma(), MH, b"last", &mut Vec::new()).is_ok());
        assert_eq!(
            m.protect(lma(), MH, b"one too many", &mut Vec::new())
                .unwrap_err(),
            ProtectError::SequenceExhausted {
                peer: lma(),
                spi: Spi(0x1000)
            }
        );
    }

    #[test]
    fn esn_sas_cross_the_32_bit_boundary() {
        let mut ls = pair(true, 0x1000, 1, Algorithm::Aes128CbcHmacSha256);
        let mut ms = pair(false, 0x1000, 1, Algorithm::Aes128CbcHmacSha256);
        ls.esn = true;
        ms.esn = true;
        let mut l = db(&[ls]);
        let mut m = db(&[ms]);
        let near = u64::from(u32::MAX) - 2;
        m.restore(&Counters {
            outbound: vec![(lma(), Spi(0x1000), near)],
            inbound: vec![],
        });
        l.restore(&Counters {
            outbound: vec![],
            inbound: vec![(mag(), Spi(0x1000), near)],
        });
        for _ in 0..6 {
            assert!(up(&mut m, &mut l, b"pbu").is_ok());
        }
        assert_eq!(l.snapshot().inbound[0].2, near + 6);
    }

    #[test]
    fn counters_text_round_trips_and_refuses_garbage() {
        let c = Counters {
            outbound: vec![(lma(), Spi(0x1000), 5)],
            inbound: vec![(mag(), Spi(0xffff_ffff), u64::MAX)],
        };
        assert_eq!(Counters::parse(&c.to_text()).unwrap(), c);
        assert_eq!(
            Counters::parse("# comment\n\n").unwrap(),
            Counters::default()
        );
        for bad in [
            "out",
            "out ::1 0x10",
            "up ::1 0x10 1",
            "out x 0x10 1",
            "out ::1 16 1",
            "in ::1 0x10 -1",
        ] {
            assert!(Counters::parse(bad).is_err(), "{bad}");
        }
    }
}
