//! ARP (RFC 826) on access links: the MAG answers for the IPv4 default router of a node and,
//! as proxy ARP, for the other addresses of the node's home subnet (RFC 5844 §3.2.3.2,
//! §3.2.4), always from the domain's fixed MAG link-layer address, so that after a handover
//! the node finds the same router on the new link, as it does for IPv6 (RFC 5213 §6.9.3,
//! RFC 5844 §1.1).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |     Hardware type (1)         |    Protocol type (0x0800)     |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |  HW len (6)   | Proto len (4) |          Operation            |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |            Sender hardware address (6) ...                    |
//! |   ... Sender protocol address (4) ... Target hardware (6) ... |
//! |            Target protocol address (4)                        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! Pure code: frames in, frames out.

use std::net::Ipv4Addr;

use pmip::ipv4_pool::Ipv4HomeAddress;

/// EtherType of ARP.
pub const ETH_P_ARP: u16 = 0x0806;
/// Ethernet header: destination, source, EtherType.
pub const ETHERNET_HEADER_LEN: usize = 14;
/// An ARP packet for IPv4 over Ethernet.
pub const ARP_LEN: usize = 28;

const HTYPE_ETHERNET: u16 = 1;
const PTYPE_IPV4: u16 = 0x0800;
const OP_REQUEST: u16 = 1;
const OP_REPLY: u16 = 2;

mod field {
    use std::ops::Range;
    pub const HTYPE: Range<usize> = 0..2;
    pub const PTYPE: Range<usize> = 2..4;
    pub const HLEN: usize = 4;
    pub const PLEN: usize = 5;
    pub const OPER: Range<usize> = 6..8;
    pub const SHA: Range<usize> = 8..14;
    pub const SPA: Range<usize> = 14..18;
    pub const THA: Range<usize> = 18..24;
    pub const TPA: Range<usize> = 24..28;
}

/// What the MAG reads from an ARP packet (IPv4 over Ethernet only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArpRepr {
    pub request: bool,
    pub sender_mac: [u8; 6],
    pub sender_ip: Ipv4Addr,
    pub target_mac: [u8; 6],
    pub target_ip: Ipv4Addr,
}

fn mac(b: &[u8]) -> [u8; 6] {
    let mut m = [0u8; 6];
    if let Some(s) = b.get(..6) {
        m.copy_from_slice(s);
    }
    m
}

fn ipv4(b: &[u8]) -> Ipv4Addr {
    match b.get(..4) {
        Some(&[a, b, c, d]) => Ipv4Addr::new(a, b, c, d),
        _ => Ipv4Addr::UNSPECIFIED,
    }
}

impl ArpRepr {
    /// Parses the ARP packet after the Ethernet header; `None` for anything but an IPv4
    /// over Ethernet request or reply (never panics).
    pub fn parse(packet: &[u8]) -> Option<Self> {
        let p = packet.get(..ARP_LEN)?;
        let u16_at = |r: std::ops::Range<usize>| p.get(r).map(|b| u16::from_be_bytes([b[0], b[1]]));
        if u16_at(field::HTYPE)? != HTYPE_ETHERNET
            || u16_at(field::PTYPE)? != PTYPE_IPV4
            || p[field::HLEN] != 6
            || p[field::PLEN] != 4
        {
            return None;
        }
        let request = match u16_at(field::OPER)? {
            OP_REQUEST => true,
            OP_REPLY => false,
            _ => return None,
        };
        Some(ArpRepr {
            request,
            sender_mac: mac(&p[field::SHA]),
            sender_ip: ipv4(&p[field::SPA]),
            target_mac: mac(&p[field::THA]),
            target_ip: ipv4(&p[field::TPA]),
        })
    }

    /// Parses a whole Ethernet frame carrying ARP.
    pub fn parse_frame(frame: &[u8]) -> Option<Self> {
        let ethertype = frame.get(12..14)?;
        if u16::from_be_bytes([ethertype[0], ethertype[1]]) != ETH_P_ARP {
            return None;
        }
        Self::parse(frame.get(ETHERNET_HEADER_LEN..)?)
    }

    /// Writes the 28-byte packet into `buf` (which must hold [`ARP_LEN`] bytes).
    pub fn emit(&self, buf: &mut [u8]) {
        let Some(p) = buf.get_mut(..ARP_LEN) else {
            return;
        };
        p[field::HTYPE].copy_from_slice(&HTYPE_ETHERNET.to_be_bytes());
        p[field::PTYPE].copy_from_slice(&PTYPE_IPV4.to_be_bytes());
        p[field::HLEN] = 6;
        p[field::PLEN] = 4;
        let op = if self.request { OP_REQUEST } else { OP_REPLY };
        p[field::OPER].copy_from_slice(&op.to_be_bytes());
        p[field::SHA].copy_from_slice(&self.sender_mac);
        p[field::SPA].copy_from_slice(&self.sender_ip.octets());
        p[field::THA].copy_from_slice(&self.target_mac);
        p[field::TPA].copy_from_slice(&self.target_ip.octets());
    }

    /// The Ethernet frame carrying this packet from `src` to `dst`.
    pub fn frame(&self, dst: [u8; 6], src: [u8; 6]) -> Vec<u8> {
        let mut f = vec![0u8; ETHERNET_HEADER_LEN + ARP_LEN];
        f[0..6].copy_from_slice(&dst);
        f[6..12].copy_from_slice(&src);
        f[12..14].copy_from_slice(&ETH_P_ARP.to_be_bytes());
        self.emit(&mut f[ETHERNET_HEADER_LEN..]);
        f
    }
}

/// The reply the MAG sends, from `own_mac`, to an ARP request of the node holding `home`
/// (the IPv4 home address the LMA assigned, with its subnet and default router), or `None`
/// when it must stay quiet:
/// - for the default router (RFC 5844 §3.2.3.2: the MAG "SHOULD ... respond to any ARP
///   requests ... to resolve the hardware address of the default router"), also to a probe;
/// - for any other address of the home subnet (RFC 5844 §3.2.4: proxy ARP "for the
///   destinations on the mobile node's home subnet"), except the node's own address (its
///   duplicate address probe must find nobody), the subnet's network and broadcast
///   addresses, and for probes (sender 0.0.0.0) and announcements (sender = target).
pub fn answer(request: &ArpRepr, home: &Ipv4HomeAddress, own_mac: [u8; 6]) -> Option<Vec<u8>> {
    if !request.request || request.sender_mac == own_mac {
        return None;
    }
    let tip = request.target_ip;
    let subnet = home.with_prefix().trunc();
    let for_router = tip == home.default_router;
    let proxied = subnet.contains(&tip)
        && tip != home.address
        && tip != subnet.network()
        && tip != subnet.broadcast()
        && !request.sender_ip.is_unspecified()
        && request.sender_ip != tip;
    if !(for_router || proxied) {
        return None;
    }
    let reply = ArpRepr {
        request: false,
        sender_mac: own_mac,
        sender_ip: tip,
        target_mac: request.sender_mac,
        target_ip: request.sender_ip,
    };
    Some(reply.frame(request.sender_mac, own_mac))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAG: [u8; 6] = [0x02, 0x00, 0x5e, 0x00, 0x53, 0x01];
    const NODE: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x01, 0x01];

    fn a(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn home() -> Ipv4HomeAddress {
        Ipv4HomeAddress {
            address: a("192.0.2.10"),
            prefix_len: 24,
            default_router: a("192.0.2.1"),
        }
    }

    fn request(sender: &str, target: &str) -> ArpRepr {
        ArpRepr {
            request: true,
            sender_mac: NODE,
            sender_ip: a(sender),
            target_mac: [0; 6],
            target_ip: a(target),
        }
    }

    /// `arping -I eth0 192.0.2.1` from 192.0.2.10 as captured (Wireshark: "Who has
    /// 192.0.2.1? Tell 192.0.2.10"), and the reply Wireshark shows as "192.0.2.1 is at
    /// 02:00:5e:00:53:01".
    #[test]
    fn answers_for_the_default_router_from_the_fixed_mac() {
        let frame: [u8; 42] = [
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0x00, 0x00, 0x00, 0x01, 0x01, 0x08,
            0x06, //
            0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, //
            0x02, 0x00, 0x00, 0x00, 0x01, 0x01, 192, 0, 2, 10, //
            0, 0, 0, 0, 0, 0, 192, 0, 2, 1,
        ];
        let req = ArpRepr::parse_frame(&frame).unwrap();
        assert_eq!(req, request("192.0.2.10", "192.0.2.1"));
        let reply = answer(&req, &home(), MAG).unwrap();
        let want: [u8; 42] = [
            0x02, 0x00, 0x00, 0x00, 0x01, 0x01, 0x02, 0x00, 0x5e, 0x00, 0x53, 0x01, 0x08,
            0x06, //
            0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x02, //
            0x02, 0x00, 0x5e, 0x00, 0x53, 0x01, 192, 0, 2, 1, //
            0x02, 0x00, 0x00, 0x00, 0x01, 0x01, 192, 0, 2, 10,
        ];
        assert_eq!(reply, want);
        // A probe for the router is answered too: the address is taken.
        assert!(answer(&request("0.0.0.0", "192.0.2.1"), &home(), MAG).is_some());
    }

    #[test]
    fn proxies_the_home_subnet_but_not_the_node_itself() {
        let h = home();
        assert!(answer(&request("192.0.2.10", "192.0.2.77"), &h, MAG).is_some());
        for (sender, target, why) in [
            (
                "0.0.0.0",
                "192.0.2.10",
                "the node's own duplicate address probe",
            ),
            ("192.0.2.10", "192.0.2.10", "the node's announcement"),
            ("0.0.0.0", "192.0.2.77", "someone else's probe"),
            ("192.0.2.10", "192.0.2.0", "the subnet's network address"),
            (
                "192.0.2.10",
                "192.0.2.255",
                "the subnet's broadcast address",
            ),
            (
                "192.0.2.10",
                "198.51.100.2",
                "off the home subnet: the node routes it",
            ),
        ] {
            assert!(answer(&request(sender, target), &h, MAG).is_none(), "{why}");
        }
        let mut reply = request("192.0.2.1", "192.0.2.10");
        reply.request = false;
        assert!(answer(&reply, &h, MAG).is_none(), "a reply is not answered");
        let mut own = request("192.0.2.10", "192.0.2.1");
        own.sender_mac = MAG;
        assert!(answer(&own, &h, MAG).is_none(), "our own request");
    }

    #[test]
    fn parse_refuses_what_is_not_ipv4_over_ethernet_and_never_panics() {
        let good = request("192.0.2.10", "192.0.2.1").frame([0xff; 6], NODE);
        for n in 0..good.len() {
            assert!(
                ArpRepr::parse_frame(&good[..n]).is_none(),
                "truncated at {n}"
            );
        }
        for (at, value) in [(12, 0x86), (15, 6), (16, 0x86), (18, 8), (19, 16), (21, 3)] {
            let mut bad = good.clone();
            bad[at] = value;
            assert!(ArpRepr::parse_frame(&bad).is_none(), "byte {at} = {value}");
        }
        let mut x: u32 = 7;
        for len in 0..200 {
            let junk: Vec<u8> = (0..len)
                .map(|_| {
                    x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                    (x >> 16) as u8
                })
                .collect();
            let _ = ArpRepr::parse_frame(&junk);
        }
    }
}
