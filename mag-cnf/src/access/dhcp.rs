//! The MAG's DHCPv4 server on access links (RFC 5844 §3.4.1, §3.4.3; RFC 2131): it hands a
//! node the IPv4 home address the LMA assigned, with the home subnet's mask and the default
//! router the LMA gave, and uses that default router as its Server Identifier, so that a node
//! renewing its lease after a handover reaches the DHCP server of its new MAG (RFC 5844
//! §3.4.1 Figure 8).
//!
//! Pure code: an Ethernet frame in, a [`Decision`] out. The DHCP message itself is read and
//! written by `dhcproto`; this module adds the Ethernet, IPv4 and UDP headers around it and
//! the RFC 2131 rules of which message gets which answer. What the node holds is the
//! [`Ipv4HomeAddress`] of its binding update list entry, given by the caller.
//!
//! ```text
//!  node                      MAG (this server)                LMA
//!   |-- DHCPDISCOVER -------->|                                  |
//!   |                         |-- PBU (IPv4 Home Address Req.) ->|   RFC 5844 §3.4.1 steps 1-4:
//!   |                         |<- PBA (IPv4 HoA, default router)-|   Decision::AwaitAddress
//!   |<-------- DHCPOFFER -----|                                  |   until the address comes
//!   |-- DHCPREQUEST --------->|                                  |
//!   |<-------- DHCPACK -------|                                  |
//! ```

use std::net::Ipv4Addr;

use dhcproto::v4::{DhcpOption, HType, Message, MessageType, Opcode, OptionCode};
use dhcproto::{Decodable, Decoder, Encodable};
use pmip::ipv4_pool::Ipv4HomeAddress;

/// UDP ports of DHCP (RFC 2131 §4.1).
pub const SERVER_PORT: u16 = 67;
pub const CLIENT_PORT: u16 = 68;
/// EtherType of IPv4.
pub const ETH_P_IP: u16 = 0x0800;
const ETHERNET_HEADER_LEN: usize = 14;
const IPV4_HEADER_LEN: usize = 20;
const UDP_HEADER_LEN: usize = 8;
const IPPROTO_UDP: u8 = 17;
/// The magic cookie before the options (RFC 2131 §3).
const MAGIC_COOKIE: [u8; 4] = [99, 130, 83, 99];
/// Offset of the magic cookie in a BOOTP message: op .. file (RFC 2131 §2 Figure 1).
const COOKIE_AT: usize = 236;
const TTL: u8 = 64;

/// What the server needs besides the node's address: the same on every MAG of a domain
/// (RFC 5844 §3.4: "the same set of DHCP option values"), except the MTU of this MAG's
/// tunnel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DhcpSettings {
    /// The domain's fixed MAG link-layer address: the source of every reply.
    pub own_mac: [u8; 6],
    /// The lease handed out. RFC 5844 §3.4.3: it need not match the binding lifetime.
    pub lease_time_s: u32,
    /// The Interface MTU option (RFC 5844 §3.4.3: MUST be included, SHOULD be the tunnel
    /// MTU).
    pub mtu: u16,
    /// Domain Name Server option, when not empty.
    pub dns_servers: Vec<Ipv4Addr>,
}

/// A DHCP message a node sent, as read from its frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DhcpRequest {
    /// Ethernet source: the node (the link-layer identity the MAG registers it with).
    pub mac: [u8; 6],
    pub message: Message,
}

/// What to do with a node's DHCP message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Send this Ethernet frame back on the link.
    Reply { kind: MessageType, frame: Vec<u8> },
    /// The node wants an address and the MAG has none from the LMA yet: register (or wait
    /// for the registration) and answer again once the address is there (RFC 5844 §3.4.3:
    /// the DHCPDISCOVER is the trigger; RFC 2131 §4.3.2: a server with no record of an
    /// INIT-REBOOT client stays silent meanwhile).
    AwaitAddress,
    /// The node released its address (RFC 5844 §3.4.3: a trigger for de-registering the
    /// IPv4 home address, never the IPv6 prefixes).
    Released(Ipv4Addr),
    /// The node declined the address: another host on its link uses it (RFC 2131 §4.3.3).
    Declined(Ipv4Addr),
    /// Nothing to send, and why (for logs).
    Ignore(&'static str),
}

/// Reads a frame the capture delivered: Ethernet, IPv4 without options or with, UDP to
/// port 67, a BOOTREQUEST with the DHCP magic cookie, an Ethernet client hardware address
/// equal to the frame's source. `None` for anything else; never panics.
pub fn parse_frame(frame: &[u8]) -> Option<DhcpRequest> {
    let ethertype = u16::from_be_bytes(frame.get(12..14)?.try_into().ok()?);
    if ethertype != ETH_P_IP {
        return None;
    }
    let mac: [u8; 6] = frame.get(6..12)?.try_into().ok()?;
    let ip = frame.get(ETHERNET_HEADER_LEN..)?;
    let (&vihl, _) = ip.split_first()?;
    let ihl = usize::from(vihl & 0x0f) * 4;
    if vihl >> 4 != 4 || ihl < IPV4_HEADER_LEN {
        return None;
    }
    let total = usize::from(u16::from_be_bytes(ip.get(2..4)?.try_into().ok()?));
    let flags_fragment = u16::from_be_bytes(ip.get(6..8)?.try_into().ok()?);
    // A fragment (More Fragments, or an offset) is no whole DHCP message.
    if *ip.get(9)? != IPPROTO_UDP || flags_fragment & 0x3fff != 0 || total < ihl {
        return None;
    }
    if finish(sum(0, ip.get(..ihl)?)) != 0 {
        return None;
    }
    let udp = ip.get(ihl..total)?;
    let dst_port = u16::from_be_bytes(udp.get(2..4)?.try_into().ok()?);
    let udp_len = usize::from(u16::from_be_bytes(udp.get(4..6)?.try_into().ok()?));
    if dst_port != SERVER_PORT || udp_len < UDP_HEADER_LEN {
        return None;
    }
    // The UDP checksum is not verified: a node on a veth in the same host may hand over a
    // packet whose checksum the kernel left to an offload that never ran.
    let payload = udp.get(UDP_HEADER_LEN..udp_len)?;
    if payload.get(COOKIE_AT..COOKIE_AT + 4)? != MAGIC_COOKIE {
        return None;
    }
    let message = Message::decode(&mut Decoder::new(&sanitized(payload)?)).ok()?;
    // `chaddr()` slices by `hlen`: only an Ethernet one (6) is read.
    if message.opcode() != Opcode::BootRequest
        || message.htype() != HType::Eth
        || message.hlen() != 6
        || message.chaddr() != mac
    {
        return None;
    }
    Some(DhcpRequest { mac, message })
}

/// The options the server reads (RFC 2132 §9.6 Message Type, §9.1 Requested IP Address,
/// §9.7 Server Identifier), each checked for its fixed length: what `dhcproto` gets to
/// decode. Its option decoder asserts lengths of options this server never reads (a debug
/// build panics on a malformed Client FQDN or Client Network Interface option), so the rest
/// is left out. `None` for a truncated option area or a read option that repeats (RFC 3396
/// concatenation, which no client uses for these).
fn sanitized(payload: &[u8]) -> Option<Vec<u8>> {
    const KEPT: [(u8, usize); 3] = [(53, 1), (50, 4), (54, 4)];
    let header = payload.get(..COOKIE_AT + 4)?;
    let mut out = header.to_vec();
    let mut seen = [false; 3];
    let mut at = COOKIE_AT + 4;
    while let Some(&code) = payload.get(at) {
        match code {
            0 => at += 1,
            255 => break,
            _ => {
                let len = usize::from(*payload.get(at + 1)?);
                let data = payload.get(at + 2..at + 2 + len)?;
                if let Some(i) = KEPT.iter().position(|(c, _)| *c == code) {
                    if seen[i] || len != KEPT[i].1 {
                        return None;
                    }
                    seen[i] = true;
                    out.extend_from_slice(&[code, len as u8]);
                    out.extend_from_slice(data);
                }
                at += 2 + len;
            }
        }
    }
    out.push(255);
    Some(out)
}

/// RFC 2131 §4.3 for a node that holds `home` (or nothing yet).
pub fn answer(
    request: &DhcpRequest,
    home: Option<&Ipv4HomeAddress>,
    settings: &DhcpSettings,
) -> Decision {
    let m = &request.message;
    if !m.giaddr().is_unspecified() {
        // Access links are point to point (RFC 5213 §6.3): nothing is relayed to us.
        return Decision::Ignore("relayed through a relay agent");
    }
    let opts = m.opts();
    let requested = match opts.get(OptionCode::RequestedIpAddress) {
        Some(DhcpOption::RequestedIpAddress(a)) => Some(*a),
        _ => None,
    };
    let server_id = match opts.get(OptionCode::ServerIdentifier) {
        Some(DhcpOption::ServerIdentifier(a)) => Some(*a),
        _ => None,
    };
    let Some(kind) = opts.msg_type() else {
        return Decision::Ignore("BOOTP without a DHCP message type");
    };
    match kind {
        MessageType::Discover => match home {
            // §4.3.1: the offer is the address the LMA assigned, whatever the node hints.
            Some(h) => reply(request, MessageType::Offer, Some(h), h, settings),
            None => Decision::AwaitAddress,
        },
        MessageType::Request => {
            let ciaddr = m.ciaddr();
            match (server_id, requested, home) {
                // §4.3.2 SELECTING: the node chose a server; if not this one, stay quiet.
                (Some(sid), _, Some(h)) if sid != h.default_router => {
                    Decision::Ignore("the node chose another DHCP server")
                }
                (Some(_), _, None) => Decision::AwaitAddress,
                (Some(_), Some(r), Some(h)) if r == h.address => {
                    reply(request, MessageType::Ack, Some(h), h, settings)
                }
                // INIT-REBOOT (after a link change, RFC 5844 §3.4.3), or SELECTING for an
                // address that is not the node's.
                (_, Some(r), Some(h)) => {
                    if r == h.address {
                        reply(request, MessageType::Ack, Some(h), h, settings)
                    } else {
                        // RFC 5844 §3.4.1: not the address the LMA gave: DHCPNAK.
                        reply(request, MessageType::Nak, None, h, settings)
                    }
                }
                (None, Some(_), None) => Decision::AwaitAddress,
                // RENEWING or REBINDING: the lease is in ciaddr.
                (None, None, Some(h)) if !ciaddr.is_unspecified() => {
                    if ciaddr == h.address {
                        reply(request, MessageType::Ack, Some(h), h, settings)
                    } else {
                        reply(request, MessageType::Nak, None, h, settings)
                    }
                }
                (None, None, None) if !ciaddr.is_unspecified() => Decision::AwaitAddress,
                _ => Decision::Ignore("DHCPREQUEST without an address to confirm"),
            }
        }
        MessageType::Inform => match home {
            // §4.3.5: configuration only, no lease, no yiaddr.
            Some(h) if m.ciaddr() == h.address => {
                reply(request, MessageType::Ack, None, h, settings)
            }
            _ => Decision::Ignore("DHCPINFORM from an address that is not the node's"),
        },
        MessageType::Release => match home {
            Some(h) if m.ciaddr() == h.address => Decision::Released(h.address),
            _ => Decision::Ignore("DHCPRELEASE of an address the node does not hold"),
        },
        MessageType::Decline => match (requested, home) {
            (Some(r), Some(h)) if r == h.address => Decision::Declined(r),
            _ => Decision::Ignore("DHCPDECLINE of an address the node does not hold"),
        },
        _ => Decision::Ignore("not a message a client sends to a server"),
    }
}

/// The reply of `kind` to `request`: for an Offer or Ack with `lease`, `yiaddr` and the
/// lease time; always the Server Identifier (the default router, RFC 5844 §3.4.1) and, but
/// for a Nak, the Subnet Mask, Router and Interface MTU options (§3.4.3).
fn reply(
    request: &DhcpRequest,
    kind: MessageType,
    lease: Option<&Ipv4HomeAddress>,
    home: &Ipv4HomeAddress,
    settings: &DhcpSettings,
) -> Decision {
    let m = &request.message;
    let mut r = Message::default();
    r.set_opcode(Opcode::BootReply)
        .set_htype(HType::Eth)
        .set_xid(m.xid())
        .set_flags(m.flags())
        .set_chaddr(&request.mac);
    let server = home.default_router;
    let o = r.opts_mut();
    o.insert(DhcpOption::MessageType(kind));
    o.insert(DhcpOption::ServerIdentifier(server));
    if kind != MessageType::Nak {
        o.insert(DhcpOption::SubnetMask(home.netmask()));
        o.insert(DhcpOption::Router(vec![home.default_router]));
        o.insert(DhcpOption::InterfaceMtu(settings.mtu));
        if !settings.dns_servers.is_empty() {
            o.insert(DhcpOption::DomainNameServer(settings.dns_servers.clone()));
        }
    }
    if let Some(l) = lease {
        o.insert(DhcpOption::AddressLeaseTime(settings.lease_time_s));
        r.set_yiaddr(l.address);
    }
    if kind == MessageType::Ack && lease.is_none() {
        // DHCPINFORM: ciaddr back, nothing leased.
        r.set_ciaddr(m.ciaddr());
    }
    let Ok(payload) = r.to_vec() else {
        return Decision::Ignore("the reply could not be encoded");
    };
    // RFC 2131 §4.1: a Nak is broadcast; a client with an address (ciaddr) gets a unicast;
    // one that asked for broadcast gets broadcast; the others are unicast to their hardware
    // address and the address offered.
    let broadcast = (Ipv4Addr::BROADCAST, [0xff; 6]);
    let (dst_ip, dst_mac) = if kind == MessageType::Nak {
        broadcast
    } else if !m.ciaddr().is_unspecified() {
        (m.ciaddr(), request.mac)
    } else if m.flags().broadcast() {
        broadcast
    } else {
        (
            lease.map_or(Ipv4Addr::BROADCAST, |l| l.address),
            request.mac,
        )
    };
    let frame = udp_frame(
        (settings.own_mac, server, SERVER_PORT),
        (dst_mac, dst_ip, CLIENT_PORT),
        &payload,
    );
    Decision::Reply { kind, frame }
}

/// An Ethernet frame with an IPv4 header (no options, TTL 64) and a UDP header, both
/// checksums filled in, around `payload`.
pub fn udp_frame(
    (src_mac, src_ip, src_port): ([u8; 6], Ipv4Addr, u16),
    (dst_mac, dst_ip, dst_port): ([u8; 6], Ipv4Addr, u16),
    payload: &[u8],
) -> Vec<u8> {
    let udp_len = UDP_HEADER_LEN + payload.len();
    let total = IPV4_HEADER_LEN + udp_len;
    let mut f = vec![0u8; ETHERNET_HEADER_LEN + total];
    f[0..6].copy_from_slice(&dst_mac);
    f[6..12].copy_from_slice(&src_mac);
    f[12..14].copy_from_slice(&ETH_P_IP.to_be_bytes());
    let ip = &mut f[ETHERNET_HEADER_LEN..];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    ip[8] = TTL;
    ip[9] = IPPROTO_UDP;
    ip[12..16].copy_from_slice(&src_ip.octets());
    ip[16..20].copy_from_slice(&dst_ip.octets());
    let c = finish(sum(0, &ip[..IPV4_HEADER_LEN]));
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let udp = &mut ip[IPV4_HEADER_LEN..];
    udp[0..2].copy_from_slice(&src_port.to_be_bytes());
    udp[2..4].copy_from_slice(&dst_port.to_be_bytes());
    udp[4..6].copy_from_slice(&(udp_len as u16).to_be_bytes());
    udp[UDP_HEADER_LEN..].copy_from_slice(payload);
    let mut pseudo = [0u8; 12];
    pseudo[0..4].copy_from_slice(&src_ip.octets());
    pseudo[4..8].copy_from_slice(&dst_ip.octets());
    pseudo[9] = IPPROTO_UDP;
    pseudo[10..12].copy_from_slice(&(udp_len as u16).to_be_bytes());
    let c = finish(sum(sum(0, &pseudo), udp));
    // RFC 768: a computed zero is sent as all ones.
    let c = if c == 0 { 0xffff } else { c };
    udp[6..8].copy_from_slice(&c.to_be_bytes());
    f
}

fn sum(mut acc: u32, bytes: &[u8]) -> u32 {
    let mut chunks = bytes.chunks_exact(2);
    for c in &mut chunks {
        acc += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        acc += u32::from(*last) << 8;
    }
    acc
}

fn finish(mut acc: u32) -> u16 {
    while acc >> 16 != 0 {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dhcproto::v4::Flags;

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

    fn settings() -> DhcpSettings {
        DhcpSettings {
            own_mac: MAG,
            lease_time_s: 3600,
            mtu: 1460,
            dns_servers: vec![a("198.51.100.53")],
        }
    }

    /// A client message as a node sends it: from 0.0.0.0 (or `ciaddr`) to the broadcast
    /// address, port 68 to 67.
    fn client(kind: MessageType, ciaddr: &str, opts: Vec<DhcpOption>, broadcast: bool) -> Vec<u8> {
        let mut m = Message::default();
        m.set_opcode(Opcode::BootRequest)
            .set_htype(HType::Eth)
            .set_xid(0x1234_5678)
            .set_chaddr(&NODE)
            .set_ciaddr(a(ciaddr));
        if broadcast {
            m.set_flags(Flags::default().set_broadcast());
        }
        m.opts_mut().insert(DhcpOption::MessageType(kind));
        for o in opts {
            m.opts_mut().insert(o);
        }
        udp_frame(
            (NODE, a(ciaddr), CLIENT_PORT),
            ([0xff; 6], Ipv4Addr::BROADCAST, SERVER_PORT),
            &m.to_vec().unwrap(),
        )
    }

    fn decide(frame: &[u8], home: Option<&Ipv4HomeAddress>) -> Decision {
        answer(
            &parse_frame(frame).expect("a DHCP frame"),
            home,
            &settings(),
        )
    }

    /// The reply frame's Ethernet and IP destinations and its DHCP message.
    fn reply_of(d: Decision) -> (MessageType, [u8; 6], Ipv4Addr, Message) {
        let Decision::Reply { kind, frame } = d else {
            panic!("no reply: {d:?}")
        };
        let ip = &frame[14..];
        assert_eq!(finish(sum(0, &ip[..20])), 0, "IPv4 header checksum");
        let udp_len = usize::from(u16::from_be_bytes([ip[24], ip[25]]));
        let mut pseudo = [0u8; 12];
        pseudo[0..8].copy_from_slice(&ip[12..20]);
        pseudo[9] = 17;
        pseudo[10..12].copy_from_slice(&(udp_len as u16).to_be_bytes());
        assert_eq!(finish(sum(sum(0, &pseudo), &ip[20..])), 0, "UDP checksum");
        assert_eq!(&frame[6..12], MAG, "from the fixed MAG MAC");
        assert_eq!(&ip[12..16], [192, 0, 2, 1], "from the default router");
        assert_eq!(&ip[20..24], [0, 67, 0, 68]);
        let m = Message::decode(&mut Decoder::new(&ip[28..])).unwrap();
        assert_eq!(m.opts().msg_type(), Some(kind));
        assert_eq!(m.xid(), 0x1234_5678);
        let dst_mac: [u8; 6] = frame[0..6].try_into().unwrap();
        (
            kind,
            dst_mac,
            Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]),
            m,
        )
    }

    /// RFC 5844 §3.4.1 and §3.4.3: the offer carries the LMA's address, the subnet mask,
    /// the default router as Router and Server Identifier, the Interface MTU.
    #[test]
    fn discover_waits_for_the_lma_then_offers_its_address_with_mask_router_and_mtu() {
        let discover = client(MessageType::Discover, "0.0.0.0", vec![], false);
        assert_eq!(decide(&discover, None), Decision::AwaitAddress);
        let (kind, mac, ip, m) = reply_of(decide(&discover, Some(&home())));
        assert_eq!(kind, MessageType::Offer);
        assert_eq!(
            (mac, ip),
            (NODE, a("192.0.2.10")),
            "unicast to chaddr and yiaddr"
        );
        assert_eq!(m.yiaddr(), a("192.0.2.10"));
        assert_eq!(m.chaddr(), NODE);
        let o = m.opts();
        assert_eq!(
            o.get(OptionCode::SubnetMask),
            Some(&DhcpOption::SubnetMask(a("255.255.255.0")))
        );
        assert_eq!(
            o.get(OptionCode::Router),
            Some(&DhcpOption::Router(vec![a("192.0.2.1")]))
        );
        assert_eq!(
            o.get(OptionCode::ServerIdentifier),
            Some(&DhcpOption::ServerIdentifier(a("192.0.2.1")))
        );
        assert_eq!(
            o.get(OptionCode::InterfaceMtu),
            Some(&DhcpOption::InterfaceMtu(1460))
        );
        assert_eq!(
            o.get(OptionCode::AddressLeaseTime),
            Some(&DhcpOption::AddressLeaseTime(3600))
        );
        assert_eq!(
            o.get(OptionCode::DomainNameServer),
            Some(&DhcpOption::DomainNameServer(vec![a("198.51.100.53")]))
        );
        // A client that asks for broadcast gets it.
        let discover = client(MessageType::Discover, "0.0.0.0", vec![], true);
        let (_, mac, ip, _) = reply_of(decide(&discover, Some(&home())));
        assert_eq!((mac, ip), ([0xff; 6], Ipv4Addr::BROADCAST));
    }

    #[test]
    fn request_for_the_lmas_address_is_acked_and_any_other_is_naked() {
        let h = home();
        let selecting = |ip: &str, sid: &str| {
            client(
                MessageType::Request,
                "0.0.0.0",
                vec![
                    DhcpOption::RequestedIpAddress(a(ip)),
                    DhcpOption::ServerIdentifier(a(sid)),
                ],
                false,
            )
        };
        let (kind, _, _, m) = reply_of(decide(&selecting("192.0.2.10", "192.0.2.1"), Some(&h)));
        assert_eq!((kind, m.yiaddr()), (MessageType::Ack, a("192.0.2.10")));
        assert_eq!(
            decide(&selecting("192.0.2.10", "203.0.113.1"), Some(&h)),
            Decision::Ignore("the node chose another DHCP server")
        );
        let (kind, mac, ip, m) = reply_of(decide(&selecting("192.0.2.99", "192.0.2.1"), Some(&h)));
        assert_eq!(kind, MessageType::Nak);
        assert_eq!(
            (mac, ip),
            ([0xff; 6], Ipv4Addr::BROADCAST),
            "a Nak is broadcast"
        );
        assert!(m.opts().get(OptionCode::Router).is_none());
        assert_eq!(m.yiaddr(), Ipv4Addr::UNSPECIFIED);

        // INIT-REBOOT after a handover (RFC 5844 §3.4.3): same address, Ack; unknown yet: wait.
        let reboot = |ip: &str| {
            client(
                MessageType::Request,
                "0.0.0.0",
                vec![DhcpOption::RequestedIpAddress(a(ip))],
                false,
            )
        };
        assert_eq!(decide(&reboot("192.0.2.10"), None), Decision::AwaitAddress);
        let (kind, ..) = reply_of(decide(&reboot("192.0.2.10"), Some(&h)));
        assert_eq!(kind, MessageType::Ack);
        let (kind, ..) = reply_of(decide(&reboot("192.0.2.11"), Some(&h)));
        assert_eq!(kind, MessageType::Nak);

        // RENEWING: unicast from the lease, answered by unicast.
        let renew = client(MessageType::Request, "192.0.2.10", vec![], false);
        let (kind, mac, ip, m) = reply_of(decide(&renew, Some(&h)));
        assert_eq!((kind, mac, ip), (MessageType::Ack, NODE, a("192.0.2.10")));
        assert_eq!(m.yiaddr(), a("192.0.2.10"));
        let stale = client(MessageType::Request, "192.0.2.11", vec![], false);
        assert_eq!(reply_of(decide(&stale, Some(&h))).0, MessageType::Nak);
        assert_eq!(decide(&renew, None), Decision::AwaitAddress);
    }

    #[test]
    fn release_decline_and_inform() {
        let h = home();
        let release = client(MessageType::Release, "192.0.2.10", vec![], false);
        assert_eq!(
            decide(&release, Some(&h)),
            Decision::Released(a("192.0.2.10"))
        );
        assert!(matches!(decide(&release, None), Decision::Ignore(_)));
        let decline = client(
            MessageType::Decline,
            "0.0.0.0",
            vec![DhcpOption::RequestedIpAddress(a("192.0.2.10"))],
            false,
        );
        assert_eq!(
            decide(&decline, Some(&h)),
            Decision::Declined(a("192.0.2.10"))
        );
        let inform = client(MessageType::Inform, "192.0.2.10", vec![], false);
        let (kind, _, ip, m) = reply_of(decide(&inform, Some(&h)));
        assert_eq!((kind, ip), (MessageType::Ack, a("192.0.2.10")));
        assert_eq!(m.yiaddr(), Ipv4Addr::UNSPECIFIED, "nothing leased");
        assert!(m.opts().get(OptionCode::AddressLeaseTime).is_none());
    }

    #[test]
    fn frames_that_are_not_a_nodes_dhcp_request_are_refused_without_panicking() {
        let good = client(MessageType::Discover, "0.0.0.0", vec![], false);
        assert!(parse_frame(&good).is_some());
        for n in 0..good.len() {
            let _ = parse_frame(&good[..n]);
        }
        let corrupt = |at: usize, v: u8| {
            let mut b = good.clone();
            b[at] = v;
            parse_frame(&b)
        };
        assert!(corrupt(12, 0x86).is_none(), "not IPv4");
        assert!(corrupt(14 + 9, 6).is_none(), "not UDP");
        assert!(corrupt(14 + 8, 1).is_none(), "IPv4 header checksum");
        assert!(corrupt(14 + 23, 68).is_none(), "not to port 67");
        assert!(corrupt(14 + 28, 2).is_none(), "a BOOTREPLY");
        assert!(
            corrupt(14 + 28 + 2, 17).is_none(),
            "hlen 17 (dhcproto would panic)"
        );
        assert!(
            corrupt(14 + 28 + 28, 0x99).is_none(),
            "chaddr is not the frame's source"
        );
        assert!(corrupt(14 + 28 + 236, 0).is_none(), "no magic cookie");
        // Options the server does not read are left to nobody, malformed or not (a Client
        // FQDN of one byte makes dhcproto's decoder assert); a read one of the wrong length,
        // repeated, or running past the end refuses the frame.
        let with_options = |extra: &[u8]| {
            let mut m = good[42..42 + 240].to_vec();
            m.extend_from_slice(&[53, 1, 1]);
            m.extend_from_slice(extra);
            m.push(255);
            let mut f = udp_frame(
                (NODE, Ipv4Addr::UNSPECIFIED, CLIENT_PORT),
                ([0xff; 6], Ipv4Addr::BROADCAST, SERVER_PORT),
                &m,
            );
            f[6..12].copy_from_slice(&NODE);
            parse_frame(&f)
        };
        let r = with_options(&[81, 1, 0, 94, 3, 1, 2, 3]).expect("unread options skipped");
        assert_eq!(r.message.opts().msg_type(), Some(MessageType::Discover));
        assert!(
            with_options(&[50, 3, 192, 0, 2]).is_none(),
            "Requested IP of 3 bytes"
        );
        assert!(with_options(&[53, 1, 3]).is_none(), "two message types");
        assert!(with_options(&[12, 200, 1]).is_none(), "past the end");
        let mut x: u32 = 11;
        let mut junk = good.clone();
        for _ in 0..2000 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            let at = 14 + 28 + (x as usize >> 8) % (good.len() - 42);
            junk[at] = (x >> 16) as u8;
            if let Some(r) = parse_frame(&junk) {
                let _ = answer(&r, Some(&home()), &settings());
            }
        }
    }

    proptest::proptest! {
        /// Any bytes after a valid Ethernet, IPv4 and UDP header, and any frame at all: no
        /// panic, in the parser or in the answer.
        #[test]
        fn no_input_makes_the_server_panic(
            tail in proptest::collection::vec(proptest::num::u8::ANY, 0..600),
            any in proptest::collection::vec(proptest::num::u8::ANY, 0..400),
        ) {
            // A valid BOOTP header and cookie, then random options: what reaches dhcproto.
            let good = client(MessageType::Discover, "0.0.0.0", vec![], false);
            let mut payload = good[42..42 + 240].to_vec();
            payload.extend_from_slice(&tail);
            let options = udp_frame(
                (NODE, Ipv4Addr::UNSPECIFIED, CLIENT_PORT),
                ([0xff; 6], Ipv4Addr::BROADCAST, SERVER_PORT),
                &payload,
            );
            let mut raw = udp_frame(
                (NODE, Ipv4Addr::UNSPECIFIED, CLIENT_PORT),
                ([0xff; 6], Ipv4Addr::BROADCAST, SERVER_PORT),
                &tail,
            );
            raw[6..12].copy_from_slice(&NODE);
            for frame in [&options, &raw, &any] {
                if let Some(r) = parse_frame(frame) {
                    let _ = answer(&r, Some(&home()), &settings());
                    let _ = answer(&r, None, &settings());
                }
                let _ = crate::access::arp::ArpRepr::parse_frame(frame);
            }
        }
    }
}
