//! End markers: keeping a fast handover's packets in order at the new MAG.
//!
//! During a fast handover (RFC 5949) a node's downlink reaches the new MAG by two paths:
//! through the previous MAG (what the LMA sent there before the binding moved, forwarded
//! MAG to MAG) and, once the LMA has moved the binding, from the LMA directly. The forwarded
//! packets are older but take longer: the previous MAG hands them on 0.1 to 2 ms after they
//! reach it (tens of milliseconds on a loaded machine), and at the new MAG the LMA's first
//! direct packets overtake them. RFC 5949 has nothing against that. This is the remedy 3GPP
//! uses for GTP-U (the End Marker of TS 29.281 §7.3.2), carried in RFC 2473 tunnels:
//!
//! - The LMA, once a prefix's route points at the new MAG, sends one last packet into the
//!   tunnel to the previous MAG, after everything it routed there: a packet to the prefix
//!   ([`end_marker`]). It is an ordinary packet to the previous MAG, which forwards it along
//!   the prefix's route, behind what it forwards before it: to the new MAG.
//! - The new MAG, before it registers the node, holds what the LMA sends it directly for the
//!   node's prefixes ([`Holds::arm`]), and lets what comes by any other path through. The
//!   marker, arriving by the previous MAG, ends the hold: the held packets follow it, in
//!   order, and the marker is dropped. A marker that never comes (a lost packet, an LMA that
//!   sends none) ends the hold when it expires; so does a hold that grows past its bounds.
//!   Nothing is dropped either way: the worst case is the order without markers.
//!
//! A node's markers and hold go by its first IPv6 prefix; a node without one (IPv4 only,
//! RFC 5844) has them go by its IPv4 home address. The marker is a packet nobody else takes
//! for theirs:
//!
//! - For an IPv6 prefix: to the prefix's reserved subnet anycast address (RFC 2526 §2,
//!   anycast ID 0), from the LMA's tunnel address, with a Destination Options header carrying
//!   an experimental option (type 0x1E, RFC 4727 §5.1.1: skipped by whoever does not know it)
//!   and No Next Header. A node that gets one (a new MAG that was not holding, a backend that
//!   cannot hold) drops it: the address is not its own.
//! - For an IPv4 home address, which has no anycast address to spare: an ICMP message to
//!   the home address of an experimental type (253, RFC 4727 §8), carrying the same four
//!   bytes, from the IPv4 dummy address 192.0.0.8 (RFC 7600: a source for a message that no
//!   address of the sender's fits; the LMA and the MAGs may have no IPv4 address). A node that
//!   gets one drops it in silence: RFC 1122 §3.2.2, an unknown ICMP type MUST be silently
//!   discarded. Its source is nobody's: whatever answers it, nothing loops back.

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use ipnet::{IpNet, Ipv6Net};

/// Length of an IPv6 marker: the IPv6 header and an 8-byte Destination Options header.
pub const MARKER_LEN: usize = 48;
/// Length of an IPv4 marker: the IPv4 header and an 8-byte ICMP header.
pub const MARKER4_LEN: usize = 28;

/// The experimental Destination Option (RFC 4727 §5.1.1; action 00: skip when unknown).
const OPTION_TYPE: u8 = 0x1E;
/// What the option (the IPv4 marker's ICMP header) carries: who it is from.
const OPTION_DATA: [u8; 4] = *b"pmEM";
/// IPv6 Next Header values.
const DESTINATION_OPTIONS: u8 = 60;
const NO_NEXT_HEADER: u8 = 59;
/// IPv4 protocol ICMP, and its type for experiments (RFC 4727 §8).
const ICMP: u8 = 1;
const ICMP_EXPERIMENT: u8 = 253;
/// The IPv4 dummy address (RFC 7600), the IPv4 marker's source.
pub const DUMMY_SOURCE4: Ipv4Addr = Ipv4Addr::new(192, 0, 0, 8);
/// Hop limit: the LMA, the previous MAG and the new MAG forward it.
const MARKER_HOP_LIMIT: u8 = 64;

/// The address a marker for `prefix` goes to. For an IPv6 prefix, its reserved subnet
/// anycast address with anycast ID 0 (RFC 2526 §2: the interface identifier all ones but its
/// last 7 bits, the universal/local bit clear in the EUI-64 format a /64 uses); for an IPv4
/// one (a home address, a /32), its address.
pub fn marker_address(prefix: IpNet) -> IpAddr {
    match prefix {
        IpNet::V6(p) => IpAddr::V6(marker_address6(p)),
        IpNet::V4(p) => IpAddr::V4(p.addr()),
    }
}

fn marker_address6(prefix: Ipv6Net) -> Ipv6Addr {
    let prefix = prefix.trunc();
    let net = u128::from(prefix.network());
    let host = u128::from(prefix.hostmask());
    let mut id = host & !0x7F;
    if prefix.prefix_len() == 64 {
        // EUI-64 format: the universal/local bit (bit 6 of the identifier's first byte) is 0.
        id &= !(1u128 << 57);
    }
    Ipv6Addr::from(net | id)
}

/// The end marker the LMA at `src` sends for `prefix` (see the module documentation).
pub fn end_marker(src: Ipv6Addr, prefix: IpNet) -> Vec<u8> {
    match prefix {
        IpNet::V6(p) => end_marker6(src, p).to_vec(),
        IpNet::V4(p) => end_marker4(p.addr()).to_vec(),
    }
}

fn end_marker6(src: Ipv6Addr, prefix: Ipv6Net) -> [u8; MARKER_LEN] {
    let mut p = [0u8; MARKER_LEN];
    p[0] = 0x60;
    p[4..6].copy_from_slice(&8u16.to_be_bytes());
    p[6] = DESTINATION_OPTIONS;
    p[7] = MARKER_HOP_LIMIT;
    p[8..24].copy_from_slice(&src.octets());
    p[24..40].copy_from_slice(&marker_address6(prefix).octets());
    p[40] = NO_NEXT_HEADER;
    p[41] = 0;
    p[42] = OPTION_TYPE;
    p[43] = OPTION_DATA.len() as u8;
    p[44..48].copy_from_slice(&OPTION_DATA);
    p
}

fn end_marker4(home: Ipv4Addr) -> [u8; MARKER4_LEN] {
    let mut p = [0u8; MARKER4_LEN];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(MARKER4_LEN as u16).to_be_bytes());
    // Don't Fragment: it is never split.
    p[6] = 0x40;
    p[8] = MARKER_HOP_LIMIT;
    p[9] = ICMP;
    p[12..16].copy_from_slice(&DUMMY_SOURCE4.octets());
    p[16..20].copy_from_slice(&home.octets());
    let sum = internet_checksum(&p[..20]);
    p[10..12].copy_from_slice(&sum.to_be_bytes());
    p[20] = ICMP_EXPERIMENT;
    p[24..28].copy_from_slice(&OPTION_DATA);
    let sum = internet_checksum(&p[20..]);
    p[22..24].copy_from_slice(&sum.to_be_bytes());
    p
}

/// The Internet checksum (RFC 1071) of `data` (an even length) whose checksum field is zero.
fn internet_checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xFFFF {
        sum = (sum & 0xFFFF) + (sum >> 16);
    }
    !(sum as u16)
}

/// The destination of `pkt` if it is an end marker.
pub fn marker_destination(pkt: &[u8]) -> Option<IpAddr> {
    match pkt.first()? >> 4 {
        6 => marker_destination6(pkt).map(IpAddr::V6),
        4 => marker_destination4(pkt).map(IpAddr::V4),
        _ => None,
    }
}

fn marker_destination6(pkt: &[u8]) -> Option<Ipv6Addr> {
    if pkt.len() < MARKER_LEN
        || pkt[6] != DESTINATION_OPTIONS
        || pkt[40] != NO_NEXT_HEADER
        || pkt[42] != OPTION_TYPE
        || pkt[43] != OPTION_DATA.len() as u8
        || pkt[44..48] != OPTION_DATA
    {
        return None;
    }
    Some(Ipv6Addr::from(<[u8; 16]>::try_from(&pkt[24..40]).ok()?))
}

fn marker_destination4(pkt: &[u8]) -> Option<Ipv4Addr> {
    if pkt.len() < MARKER4_LEN
        || pkt[0] != 0x45
        || pkt[9] != ICMP
        || pkt[2..4] != (MARKER4_LEN as u16).to_be_bytes()
        || pkt[12..16] != DUMMY_SOURCE4.octets()
        || pkt[20] != ICMP_EXPERIMENT
        || pkt[21] != 0
        || pkt[24..28] != OPTION_DATA
    {
        return None;
    }
    Some(Ipv4Addr::from(<[u8; 4]>::try_from(&pkt[16..20]).ok()?))
}

/// Most packets one hold keeps; past it the hold ends (what it kept goes first).
pub const HOLD_PACKETS: usize = 4096;
/// Most bytes one hold keeps.
pub const HOLD_BYTES: usize = 8 << 20;

/// What the new MAG holds for one node until its end marker.
#[derive(Debug)]
struct Hold {
    /// Where the marker that ends it goes ([`marker_address`]).
    marker: IpAddr,
    /// Whose packets it holds: the LMA's tunnel address.
    from: Ipv6Addr,
    /// The node's prefixes (its IPv6 prefixes, its IPv4 home address).
    prefixes: Vec<IpNet>,
    until: Instant,
    queue: VecDeque<Vec<u8>>,
    bytes: usize,
}

impl Hold {
    fn covers(&self, dst: IpAddr) -> bool {
        self.prefixes.iter().any(|p| p.contains(&dst))
    }
}

/// How a hold ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Its marker came.
    Marker,
    /// It expired before its marker.
    Expired,
    /// It grew past [`HOLD_PACKETS`] or [`HOLD_BYTES`].
    Full,
}

/// What to do with a received packet.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Let it through.
    Pass,
    /// Kept: a hold has it.
    Held,
    /// It was a marker that ended a hold: drop it and let these through, in order.
    Marker(Vec<Vec<u8>>),
    /// It filled a hold: let these through (the packet last), in order.
    Full(Vec<Vec<u8>>),
}

/// The holds of one tunnel end.
#[derive(Debug, Default)]
pub struct Holds {
    holds: Vec<Hold>,
}

impl Holds {
    /// Whether no hold is armed.
    pub fn is_empty(&self) -> bool {
        self.holds.is_empty()
    }

    /// Holds what `from` sends to `prefix` until the marker for `marker` comes, or `wait`.
    /// A node's prefixes share one hold (one marker); arming again renews it.
    pub fn arm(&mut self, prefix: IpNet, marker: IpNet, from: Ipv6Addr, wait: Duration) {
        let marker = marker_address(marker);
        let until = Instant::now() + wait;
        let prefix = prefix.trunc();
        match self
            .holds
            .iter_mut()
            .find(|h| h.marker == marker && h.from == from)
        {
            Some(h) => {
                h.until = h.until.max(until);
                if !h.prefixes.contains(&prefix) {
                    h.prefixes.push(prefix);
                }
            }
            None => self.holds.push(Hold {
                marker,
                from,
                prefixes: vec![prefix],
                until,
                queue: VecDeque::new(),
                bytes: 0,
            }),
        }
    }

    /// Decides on `pkt`, received from `src`.
    pub fn receive(&mut self, src: Ipv6Addr, pkt: &[u8]) -> Verdict {
        if self.holds.is_empty() {
            return Verdict::Pass;
        }
        if let Some(dst) = marker_destination(pkt)
            && let Some(i) = self.holds.iter().position(|h| h.marker == dst)
        {
            let h = self.holds.swap_remove(i);
            return Verdict::Marker(h.queue.into());
        }
        let Some(dst) = crate::tun::destination(pkt) else {
            return Verdict::Pass;
        };
        let Some(i) = self
            .holds
            .iter()
            .position(|h| h.from == src && h.covers(dst))
        else {
            return Verdict::Pass;
        };
        let h = &mut self.holds[i];
        if h.queue.len() >= HOLD_PACKETS || h.bytes + pkt.len() > HOLD_BYTES {
            let h = self.holds.swap_remove(i);
            let mut all: Vec<Vec<u8>> = h.queue.into();
            all.push(pkt.to_vec());
            return Verdict::Full(all);
        }
        h.bytes += pkt.len();
        h.queue.push_back(pkt.to_vec());
        Verdict::Held
    }

    /// Ends the holds expired at `now`: how many, and what they kept, hold by hold, in
    /// order.
    pub fn expire(&mut self, now: Instant) -> (usize, Vec<Vec<u8>>) {
        let mut out = Vec::new();
        let mut ended = 0;
        let mut i = 0;
        while i < self.holds.len() {
            if self.holds[i].until <= now {
                out.extend(self.holds.remove(i).queue);
                ended += 1;
            } else {
                i += 1;
            }
        }
        (ended, out)
    }

    /// When the next hold expires.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.holds.iter().map(|h| h.until).min()
    }

    /// Ends every hold: what they kept, in order (the tunnel end is closing).
    pub fn release_all(&mut self) -> Vec<Vec<u8>> {
        self.holds.drain(..).flat_map(|h| h.queue).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }
    fn n(s: &str) -> Ipv6Net {
        s.parse().unwrap()
    }
    fn v6(src: &str, dst: &str, tag: u8) -> Vec<u8> {
        let mut p = vec![0u8; 41];
        p[0] = 0x60;
        p[6] = 17;
        p[8..24].copy_from_slice(&a(src).octets());
        p[24..40].copy_from_slice(&a(dst).octets());
        p[40] = tag;
        p
    }
    fn v4(dst: [u8; 4], tag: u8) -> Vec<u8> {
        let mut p = vec![0u8; 21];
        p[0] = 0x45;
        p[16..20].copy_from_slice(&dst);
        p[20] = tag;
        p
    }

    const LMA: &str = "2001:db8::1";
    const PMAG: &str = "2001:db8::10";
    const HNP: &str = "2001:db8:100::/64";

    #[test]
    fn the_marker_goes_to_the_reserved_anycast_address_and_reads_back() {
        let anycast = |p: &str| marker_address(n(p).into());
        assert_eq!(anycast(HNP), a("2001:db8:100:0:fdff:ffff:ffff:ff80"));
        assert_eq!(
            anycast("2001:db8:100::/56"),
            a("2001:db8:100:ff:ffff:ffff:ffff:ff80")
        );
        assert_eq!(anycast("2001:db8:100::5/120"), a("2001:db8:100::80"));
        let m = end_marker(a(LMA), n(HNP).into());
        assert_eq!(m.len(), MARKER_LEN);
        assert_eq!(marker_destination(&m), Some(anycast(HNP)));
        // The payload length covers the options header; the source is the LMA.
        assert_eq!(u16::from_be_bytes([m[4], m[5]]), 8);
        assert_eq!(
            Ipv6Addr::from(<[u8; 16]>::try_from(&m[8..24]).unwrap()),
            a(LMA)
        );
        // Anything else is not one.
        assert_eq!(marker_destination(&m[..47]), None);
        for i in [0, 6, 40, 42, 43, 44, 47] {
            let mut bad = m.clone();
            bad[i] ^= if i == 0 { 0x80 } else { 0x01 };
            assert_eq!(marker_destination(&bad), None, "byte {i}");
        }
        assert_eq!(marker_destination(&v6(LMA, "2001:db8:100::1", 0)), None);
    }

    #[test]
    fn an_ipv4_home_addresss_marker_is_a_valid_icmp_message_of_an_experimental_type() {
        let home: IpNet = "192.0.2.7/32".parse().unwrap();
        let to = IpAddr::from([192, 0, 2, 7]);
        assert_eq!(marker_address(home), to);
        let m = end_marker(a(LMA), home);
        assert_eq!(m.len(), MARKER4_LEN);
        assert_eq!(marker_destination(&m), Some(to));
        // A header any router forwards: IPv4, 20 bytes, its total length, a TTL, ICMP, from
        // the dummy address, both checksums right (the sum over a checksummed part is 0).
        assert_eq!(m[0], 0x45);
        assert_eq!(usize::from(u16::from_be_bytes([m[2], m[3]])), m.len());
        assert_eq!((m[8], m[9]), (64, 1));
        assert_eq!(m[12..16], [192, 0, 0, 8]);
        assert_eq!(internet_checksum(&m[..20]), 0);
        assert_eq!(internet_checksum(&m[20..]), 0);
        assert_eq!((m[20], m[21]), (253, 0), "RFC 4727 experimental type");
        // Anything else is not one: a truncated one, any byte of what marks it changed.
        assert_eq!(marker_destination(&m[..MARKER4_LEN - 1]), None);
        for i in [0, 2, 3, 9, 12, 15, 20, 21, 24, 27] {
            let mut bad = m.clone();
            bad[i] ^= 0x01;
            assert_eq!(marker_destination(&bad), None, "byte {i}");
        }
        assert_eq!(marker_destination(&v4([192, 0, 2, 7], 0)), None);
    }

    #[test]
    fn an_ipv4_only_nodes_hold_ends_with_its_home_addresss_marker() {
        let home: IpNet = "192.0.2.7/32".parse().unwrap();
        let mut h = Holds::default();
        h.arm(home, home, a(LMA), Duration::from_secs(10));
        let direct = [v4([192, 0, 2, 7], 1), v4([192, 0, 2, 7], 2)];
        for p in &direct {
            assert_eq!(h.receive(a(LMA), p), Verdict::Held);
        }
        assert_eq!(h.receive(a(LMA), &v4([192, 0, 2, 8], 3)), Verdict::Pass);
        // Another address's marker, or an IPv6 prefix's, ends nothing.
        let other = end_marker(a(LMA), "192.0.2.8/32".parse().unwrap());
        assert_eq!(h.receive(a(PMAG), &other), Verdict::Pass);
        assert_eq!(
            h.receive(a(PMAG), &end_marker(a(LMA), n(HNP).into())),
            Verdict::Pass
        );
        let m = end_marker(a(LMA), home);
        assert_eq!(h.receive(a(PMAG), &m), Verdict::Marker(direct.to_vec()));
        assert!(h.is_empty());
    }

    #[test]
    fn the_lmas_packets_wait_for_the_marker_and_follow_it_in_order() {
        let mut h = Holds::default();
        assert_eq!(
            h.receive(a(LMA), &v6(LMA, "2001:db8:100::2", 0)),
            Verdict::Pass
        );
        h.arm(
            n(HNP).into(),
            n(HNP).into(),
            a(LMA),
            Duration::from_secs(10),
        );
        h.arm(
            "192.0.2.7/32".parse().unwrap(),
            n(HNP).into(),
            a(LMA),
            Duration::from_secs(10),
        );
        let direct = [
            v6(LMA, "2001:db8:100::2", 1),
            v4([192, 0, 2, 7], 2),
            v6(LMA, "2001:db8:100::2", 3),
        ];
        for p in &direct {
            assert_eq!(h.receive(a(LMA), p), Verdict::Held);
        }
        // Through the previous MAG, another node's, and the LMA's for another prefix: through.
        assert_eq!(
            h.receive(a(PMAG), &v6(LMA, "2001:db8:100::2", 9)),
            Verdict::Pass
        );
        assert_eq!(
            h.receive(a(LMA), &v6(LMA, "2001:db8:200::2", 9)),
            Verdict::Pass
        );
        assert_eq!(h.receive(a(LMA), &v4([192, 0, 2, 8], 9)), Verdict::Pass);
        // Another prefix's marker ends nothing; this one's ends the hold, whoever brings it.
        let other = end_marker(a(LMA), n("2001:db8:200::/64").into());
        assert_eq!(h.receive(a(PMAG), &other), Verdict::Pass);
        let m = end_marker(a(LMA), n(HNP).into());
        assert_eq!(h.receive(a(PMAG), &m), Verdict::Marker(direct.to_vec()));
        assert!(h.is_empty());
        assert_eq!(h.receive(a(LMA), &direct[0]), Verdict::Pass);
        assert_eq!(h.receive(a(PMAG), &m), Verdict::Pass);
    }

    #[test]
    fn a_hold_without_its_marker_expires_and_a_full_one_ends() {
        let mut h = Holds::default();
        h.arm(
            n(HNP).into(),
            n(HNP).into(),
            a(LMA),
            Duration::from_millis(20),
        );
        h.arm(
            "2001:db8:300::/64".parse().unwrap(),
            n("2001:db8:300::/64").into(),
            a(LMA),
            Duration::from_secs(60),
        );
        let p = v6(LMA, "2001:db8:100::2", 1);
        assert_eq!(h.receive(a(LMA), &p), Verdict::Held);
        let first = h.next_expiry().unwrap();
        assert!(first <= Instant::now() + Duration::from_millis(20));
        assert_eq!(h.expire(Instant::now()), (0, vec![]));
        assert_eq!(h.expire(first), (1, vec![p.clone()]));
        assert_eq!(h.receive(a(LMA), &p), Verdict::Pass);
        // The other hold fills up: everything goes, the last packet too, in order.
        let q = v6(LMA, "2001:db8:300::2", 0);
        for _ in 0..HOLD_PACKETS {
            assert_eq!(h.receive(a(LMA), &q), Verdict::Held);
        }
        match h.receive(a(LMA), &q) {
            Verdict::Full(all) => assert_eq!(all.len(), HOLD_PACKETS + 1),
            v => panic!("{v:?}"),
        }
        assert!(h.is_empty());
        h.arm(
            n(HNP).into(),
            n(HNP).into(),
            a(LMA),
            Duration::from_secs(60),
        );
        assert_eq!(h.receive(a(LMA), &p), Verdict::Held);
        assert_eq!(h.release_all(), vec![p]);
        assert_eq!(h.next_expiry(), None);
    }

    proptest::proptest! {
        #[test]
        fn no_packet_is_lost_or_reordered_whatever_arrives(
            arrivals in proptest::collection::vec((0u8..4, proptest::prelude::any::<Vec<u8>>()), 0..64)
        ) {
            let mut h = Holds::default();
            h.arm(n(HNP).into(), n(HNP).into(), a(LMA), Duration::from_secs(60));
            let mut passed = Vec::new();
            let mut sent = Vec::new();
            let mut lma = Vec::new();
            for (i, (kind, junk)) in arrivals.into_iter().enumerate() {
                let (src, pkt) = match kind {
                    0 => (a(LMA), v6(LMA, "2001:db8:100::2", i as u8)),
                    1 => (a(PMAG), v6(LMA, "2001:db8:100::2", i as u8)),
                    2 => (a(LMA), junk),
                    _ => (a(PMAG), end_marker(a(LMA), n(HNP).into())),
                };
                let marker = marker_destination(&pkt).is_some();
                if !marker {
                    sent.push(pkt.clone());
                }
                if kind == 0 {
                    lma.push(pkt.clone());
                }
                match h.receive(src, &pkt) {
                    Verdict::Pass if marker => {}
                    Verdict::Pass => passed.push(pkt),
                    Verdict::Held => {}
                    Verdict::Marker(v) | Verdict::Full(v) => passed.extend(v),
                }
            }
            passed.extend(h.release_all());
            // Everything comes out once; the LMA's packets keep their order.
            proptest::prop_assert_eq!(passed.len(), sent.len());
            let direct: Vec<&Vec<u8>> = sent.iter().filter(|p| lma.contains(p)).collect();
            let out: Vec<&Vec<u8>> = passed.iter().filter(|p| lma.contains(p)).collect();
            proptest::prop_assert_eq!(out, direct);
        }
    }
}
