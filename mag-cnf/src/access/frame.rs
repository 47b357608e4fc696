//! What the MAG hears from a mobile node on an access link, and the socket filter that keeps
//! everything else in the kernel. Pure: no IO.
//!
//! A Linux host whose link comes up sends, within milliseconds: MLDv2 reports for its
//! solicited-node group (ICMPv6 143 behind a Hop-by-Hop header with the Router Alert option,
//! RFC 3810 §5.2), a Neighbor Solicitation for duplicate address detection from `::`
//! (RFC 4862 §5.4.2), then Router Solicitations (RFC 4861 §6.3.7). Any of them tells the MAG
//! that a node is there and what its MAC is. Later, Neighbor Solicitations of neighbor
//! unreachability detection keep coming while the node talks to its router, so a MAG that
//! restarted learns about a node that was already attached.
//!
//! The capture socket sees every IPv6 frame received on every link of the namespace, user
//! traffic included; [`filter_program`] lets through only the ICMPv6 messages above, so the
//! rest never leaves the kernel. [`parse`] then checks each frame in full, whatever the
//! filter did.

use std::net::Ipv6Addr;

use super::ra::{
    ETHERNET_HEADER_LEN, ETHERTYPE_IPV6, ICMPV6_MLD_REPORT, ICMPV6_MLDV2_REPORT,
    ICMPV6_NEIGHBOR_ADVERTISEMENT, ICMPV6_NEIGHBOR_SOLICITATION, ICMPV6_ROUTER_SOLICITATION,
    IPV6_HEADER_LEN, ND_HOP_LIMIT, ND_OPT_SOURCE_LINK_LAYER_ADDRESS, NEXT_HEADER_HOP_BY_HOP,
    NEXT_HEADER_ICMPV6, icmpv6_checksum,
};

/// The ICMPv6 messages that show a node: MLD reports (v1 and v2), Neighbor Solicitations and
/// Advertisements, Router Solicitations. Not Router Advertisements: a node is no router.
pub(crate) const NODE_MESSAGES: [u8; 5] = [
    ICMPV6_ROUTER_SOLICITATION,
    ICMPV6_NEIGHBOR_SOLICITATION,
    ICMPV6_MLDV2_REPORT,
    ICMPV6_MLD_REPORT,
    ICMPV6_NEIGHBOR_ADVERTISEMENT,
];

/// A frame from a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Heard {
    /// The Ethernet source address: the node's MAC.
    pub source: [u8; 6],
    /// A valid Router Solicitation (RFC 4861 §6.1.1).
    pub router_solicitation: bool,
}

/// What a received Ethernet frame tells, or `None` when it is not one of [`NODE_MESSAGES`]
/// from a unicast source address (or is cut short).
pub(crate) fn parse(frame: &[u8]) -> Option<Heard> {
    let source: [u8; 6] = frame.get(6..12)?.try_into().ok()?;
    // A group or all-zero address is never a node's own.
    if source[0] & 0x01 != 0 || source == [0; 6] {
        return None;
    }
    if frame.get(12..14)? != ETHERTYPE_IPV6.to_be_bytes() {
        return None;
    }
    let ip = frame.get(ETHERNET_HEADER_LEN..)?;
    if ip.first()? >> 4 != 6 {
        return None;
    }
    let payload_len = usize::from(u16::from_be_bytes([*ip.get(4)?, *ip.get(5)?]));
    let hop_limit = *ip.get(7)?;
    let src = Ipv6Addr::from(<[u8; 16]>::try_from(ip.get(8..24)?).ok()?);
    let dst = Ipv6Addr::from(<[u8; 16]>::try_from(ip.get(24..40)?).ok()?);
    // Ethernet pads short frames: the IPv6 payload length says where the packet ends.
    let mut payload = ip.get(IPV6_HEADER_LEN..IPV6_HEADER_LEN + payload_len)?;
    let mut next_header = *ip.get(6)?;
    if next_header == NEXT_HEADER_HOP_BY_HOP {
        let len = (usize::from(*payload.get(1)?) + 1) * 8;
        next_header = *payload.first()?;
        payload = payload.get(len..)?;
    }
    if next_header != NEXT_HEADER_ICMPV6 {
        return None;
    }
    let icmp_type = *payload.first()?;
    if !NODE_MESSAGES.contains(&icmp_type) {
        return None;
    }
    Some(Heard {
        source,
        router_solicitation: icmp_type == ICMPV6_ROUTER_SOLICITATION
            && valid_router_solicitation(hop_limit, &src, &dst, payload),
    })
}

/// RFC 4861 §6.1.1: hop limit 255, a correct checksum, code 0, at least 8 octets, every
/// option of non-zero length, and no source link-layer address option when sent from `::`.
fn valid_router_solicitation(hop_limit: u8, src: &Ipv6Addr, dst: &Ipv6Addr, rs: &[u8]) -> bool {
    if hop_limit != ND_HOP_LIMIT || rs.len() < 8 || rs.get(1) != Some(&0) {
        return false;
    }
    if icmpv6_checksum(src, dst, rs) != 0 {
        return false;
    }
    let mut options = rs.get(8..).unwrap_or(&[]);
    while !options.is_empty() {
        let (Some(&kind), Some(&len)) = (options.first(), options.get(1)) else {
            return false;
        };
        let len = usize::from(len) * 8;
        if len == 0 || len > options.len() {
            return false;
        }
        if kind == ND_OPT_SOURCE_LINK_LAYER_ADDRESS && src.is_unspecified() {
            return false;
        }
        options = options.get(len..).unwrap_or(&[]);
    }
    true
}

/// One classic BPF instruction (`struct sock_filter`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Insn {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

// Classic BPF opcodes (linux/filter.h, linux/bpf_common.h).
const LD_H_ABS: u16 = 0x28;
const LD_W_ABS: u16 = 0x20;
const LD_B_ABS: u16 = 0x30;
const LD_B_IND: u16 = 0x50;
const JEQ_K: u16 = 0x15;
const JGE_K: u16 = 0x35;
const JA: u16 = 0x05;
const ADD_K: u16 = 0x04;
const LSH_K: u16 = 0x64;
const TAX: u16 = 0x07;
const RET_K: u16 = 0x06;
/// `SKF_AD_OFF + SKF_AD_PKTTYPE`: the ancillary word holding the packet type.
const PKTTYPE: u32 = 0xffff_f000 + 4;
/// `PACKET_OUTGOING`; `PACKET_LOOPBACK` and the kernel-internal types come after it.
const PACKET_OUTGOING: u32 = 4;
/// Bytes kept of an accepted frame: all of it (what tcpdump asks for).
const SNAPLEN: u32 = 262_144;
/// Where the IPv6 header's fields and the first extension header sit in the frame.
const AT_NEXT_HEADER: u32 = 14 + 6;
const AT_PAYLOAD: u32 = 14 + 40;

/// The filter on the capture socket: an IPv6 frame received from the link (not sent, not
/// looped back) carrying one of [`NODE_MESSAGES`], directly or behind one Hop-by-Hop header.
pub(crate) fn filter_program() -> Vec<Insn> {
    const ACCEPT: usize = 22;
    const DROP: usize = 23;
    const ICMP_DIRECT: usize = 16;
    const TYPES: usize = 17;
    let i = |code, k| Insn {
        code,
        jt: 0,
        jf: 0,
        k,
    };
    // Offsets are counted from the next instruction.
    let to = |from: usize, target: usize| (target - from - 1) as u8;
    let jeq = |at: usize, k: u32, jt: usize, jf: usize| Insn {
        code: JEQ_K,
        jt: to(at, jt),
        jf: to(at, jf),
        k,
    };
    let [t0, t1, t2, t3, t4] = NODE_MESSAGES.map(u32::from);
    let program = vec![
        /* 0 */ i(LD_H_ABS, 12),
        /* 1 */ jeq(1, u32::from(ETHERTYPE_IPV6), 2, DROP),
        /* 2 */ i(LD_W_ABS, PKTTYPE),
        /* 3 */
        Insn {
            code: JGE_K,
            jt: to(3, DROP),
            jf: 0,
            k: PACKET_OUTGOING,
        },
        /* 4 */ i(LD_B_ABS, AT_NEXT_HEADER),
        /* 5 */ jeq(5, u32::from(NEXT_HEADER_ICMPV6), ICMP_DIRECT, 6),
        /* 6 */ jeq(6, u32::from(NEXT_HEADER_HOP_BY_HOP), 7, DROP),
        /* 7 */ i(LD_B_ABS, AT_PAYLOAD),
        /* 8 */ jeq(8, u32::from(NEXT_HEADER_ICMPV6), 9, DROP),
        // X = 54 + (Hdr Ext Len + 1) * 8: where the ICMPv6 message starts.
        /* 9 */
        i(LD_B_ABS, AT_PAYLOAD + 1),
        /* 10 */ i(ADD_K, 1),
        /* 11 */ i(LSH_K, 3),
        /* 12 */ i(ADD_K, AT_PAYLOAD),
        /* 13 */ i(TAX, 0),
        /* 14 */ i(LD_B_IND, 0),
        /* 15 */ i(JA, (TYPES - 15 - 1) as u32),
        /* 16 */ i(LD_B_ABS, AT_PAYLOAD),
        /* 17 */ jeq(17, t0, ACCEPT, 18),
        /* 18 */ jeq(18, t1, ACCEPT, 19),
        /* 19 */ jeq(19, t2, ACCEPT, 20),
        /* 20 */ jeq(20, t3, ACCEPT, 21),
        /* 21 */ jeq(21, t4, ACCEPT, DROP),
        /* 22 */ i(RET_K, SNAPLEN),
        /* 23 */ i(RET_K, 0),
    ];
    debug_assert_eq!(program.len(), DROP + 1);
    program
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Runs a classic BPF program the way the kernel does for the opcodes above: a load past
    /// the end of the packet ends the program with 0 (drop).
    fn run(program: &[Insn], packet: &[u8], pkttype: u32) -> u32 {
        let (mut a, mut x, mut pc) = (0u32, 0u32, 0usize);
        let byte = |at: u32| packet.get(at as usize).copied().map(u32::from);
        while let Some(insn) = program.get(pc) {
            pc += 1;
            match insn.code {
                LD_H_ABS => match (byte(insn.k), byte(insn.k + 1)) {
                    (Some(h), Some(l)) => a = (h << 8) | l,
                    _ => return 0,
                },
                LD_W_ABS if insn.k == PKTTYPE => a = pkttype,
                LD_B_ABS => match byte(insn.k) {
                    Some(b) => a = b,
                    None => return 0,
                },
                LD_B_IND => match byte(x + insn.k) {
                    Some(b) => a = b,
                    None => return 0,
                },
                JEQ_K => pc += usize::from(if a == insn.k { insn.jt } else { insn.jf }),
                JGE_K => pc += usize::from(if a >= insn.k { insn.jt } else { insn.jf }),
                JA => pc += insn.k as usize,
                ADD_K => a = a.wrapping_add(insn.k),
                LSH_K => a <<= insn.k,
                TAX => x = a,
                RET_K => return insn.k,
                other => panic!("opcode {other:#x} not emulated"),
            }
        }
        panic!("fell off the end of the program")
    }

    pub(crate) const NODE: [u8; 6] = [0x02, 0, 0, 0, 0x01, 0x01];

    /// An Ethernet frame from `NODE` to 33:33:00:00:00:02 with an IPv6 packet from `src` to
    /// `dst` carrying `upper` (next header `nh`), optionally behind a Hop-by-Hop header with
    /// a Router Alert option (as MLD reports are sent); the ICMPv6 checksum is filled in.
    pub(crate) fn frame(
        src: &str,
        dst: &str,
        hbh: bool,
        nh: u8,
        upper: &[u8],
        hop_limit: u8,
    ) -> Vec<u8> {
        frame_from(NODE, src, dst, hbh, nh, upper, hop_limit)
    }

    /// [`frame`] from Ethernet source `mac`.
    pub(crate) fn frame_from(
        mac: [u8; 6],
        src: &str,
        dst: &str,
        hbh: bool,
        nh: u8,
        upper: &[u8],
        hop_limit: u8,
    ) -> Vec<u8> {
        let src: Ipv6Addr = src.parse().unwrap();
        let dst: Ipv6Addr = dst.parse().unwrap();
        let mut upper = upper.to_vec();
        if nh == NEXT_HEADER_ICMPV6 && upper.len() >= 4 {
            upper[2] = 0;
            upper[3] = 0;
            let c = icmpv6_checksum(&src, &dst, &upper);
            upper[2..4].copy_from_slice(&c.to_be_bytes());
        }
        let ext: &[u8] = if hbh {
            // Next header, length 0 (8 octets), Router Alert (MLD), PadN of 0.
            &[nh, 0, 5, 2, 0, 0, 1, 0]
        } else {
            &[]
        };
        let mut f = vec![0x33, 0x33, 0, 0, 0, 2];
        f.extend_from_slice(&mac);
        f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
        f.extend_from_slice(&((ext.len() + upper.len()) as u16).to_be_bytes());
        f.push(if hbh { 0 } else { nh });
        f.push(hop_limit);
        f.extend_from_slice(&src.octets());
        f.extend_from_slice(&dst.octets());
        f.extend_from_slice(ext);
        f.extend_from_slice(&upper);
        f
    }

    fn rs(options: &[u8]) -> Vec<u8> {
        [&[133, 0, 0, 0, 0, 0, 0, 0][..], options].concat()
    }

    const SLLAO: [u8; 8] = [1, 1, 0x02, 0, 0, 0, 0x01, 0x01];

    #[test]
    fn router_solicitations_from_a_link_local_and_from_the_unspecified_address() {
        let f = frame("fe80::1:1", "ff02::2", false, 58, &rs(&SLLAO), 255);
        assert_eq!(
            parse(&f),
            Some(Heard {
                source: NODE,
                router_solicitation: true
            })
        );
        let f = frame("::", "ff02::2", false, 58, &rs(&[]), 255);
        assert_eq!(
            parse(&f),
            Some(Heard {
                source: NODE,
                router_solicitation: true
            })
        );
    }

    #[test]
    fn invalid_router_solicitations_still_show_the_node() {
        let seen_only = Some(Heard {
            source: NODE,
            router_solicitation: false,
        });
        // From `::` with a source link-layer address option.
        let f = frame("::", "ff02::2", false, 58, &rs(&SLLAO), 255);
        assert_eq!(parse(&f), seen_only);
        // Forwarded (hop limit below 255).
        let f = frame("fe80::1:1", "ff02::2", false, 58, &rs(&[]), 64);
        assert_eq!(parse(&f), seen_only);
        // An option of length zero.
        let f = frame(
            "fe80::1:1",
            "ff02::2",
            false,
            58,
            &rs(&[1, 0, 0, 0, 0, 0, 0, 0]),
            255,
        );
        assert_eq!(parse(&f), seen_only);
        // A bad checksum.
        let mut f = frame("fe80::1:1", "ff02::2", false, 58, &rs(&[]), 255);
        f[56] ^= 0xff;
        assert_eq!(parse(&f), seen_only);
        // Code 1.
        let f = frame(
            "fe80::1:1",
            "ff02::2",
            false,
            58,
            &[133, 1, 0, 0, 0, 0, 0, 0],
            255,
        );
        assert_eq!(parse(&f), seen_only);
    }

    #[test]
    fn mld_reports_behind_hop_by_hop_and_dad_solicitations_show_the_node() {
        let mld = [143, 0, 0, 0, 0, 0, 0, 1, 4, 0, 0, 0];
        let mut group = mld.to_vec();
        group.extend_from_slice(&"ff02::1:ff01:101".parse::<Ipv6Addr>().unwrap().octets());
        let f = frame("::", "ff02::16", true, 58, &group, 1);
        assert_eq!(
            parse(&f),
            Some(Heard {
                source: NODE,
                router_solicitation: false
            })
        );
        let mut ns = vec![135, 0, 0, 0, 0, 0, 0, 0];
        ns.extend_from_slice(&"fe80::1:1".parse::<Ipv6Addr>().unwrap().octets());
        let f = frame("::", "ff02::1:ff01:101", false, 58, &ns, 255);
        assert!(parse(&f).is_some());
    }

    #[test]
    fn other_traffic_is_not_heard() {
        // UDP, an Echo Request, a Router Advertisement.
        assert_eq!(
            parse(&frame(
                "2001:db8::1",
                "2001:db8::2",
                false,
                17,
                &[0; 12],
                64
            )),
            None
        );
        assert_eq!(
            parse(&frame(
                "2001:db8::1",
                "2001:db8::2",
                false,
                58,
                &[128, 0, 0, 0, 0, 0, 0, 0],
                64
            )),
            None
        );
        assert_eq!(
            parse(&frame(
                "fe80::1",
                "ff02::1",
                false,
                58,
                &[134, 0, 0, 0, 64, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                255
            )),
            None
        );
        // UDP behind a Hop-by-Hop header.
        assert_eq!(
            parse(&frame("2001:db8::1", "2001:db8::2", true, 17, &[0; 12], 64)),
            None
        );
        // A group source address, an IPv4 frame, truncated frames.
        let mut f = frame("fe80::1:1", "ff02::2", false, 58, &rs(&[]), 255);
        f[6] |= 1;
        assert_eq!(parse(&f), None);
        let mut f = frame("fe80::1:1", "ff02::2", false, 58, &rs(&[]), 255);
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        assert_eq!(parse(&f), None);
        let f = frame("fe80::1:1", "ff02::2", false, 58, &rs(&[]), 255);
        for cut in 0..f.len() {
            assert_eq!(parse(&f[..cut]), None, "cut at {cut}");
        }
    }

    #[test]
    fn ethernet_padding_is_not_part_of_the_packet() {
        let mut f = frame("fe80::1:1", "ff02::2", false, 58, &rs(&[]), 255);
        f.extend_from_slice(&[0xaa; 6]);
        assert_eq!(parse(&f).map(|h| h.router_solicitation), Some(true));
    }

    /// The filter lets through what [`parse`] hears, and drops what it does not hear (here:
    /// the frames of the tests above), sent frames and looped-back frames.
    #[test]
    fn filter_program_agrees_with_parse() {
        let p = filter_program();
        let mut mld = vec![143, 0, 0, 0, 0, 0, 0, 1, 4, 0, 0, 0];
        mld.extend_from_slice(&[0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 1, 1, 1]);
        let heard = [
            frame("fe80::1:1", "ff02::2", false, 58, &rs(&SLLAO), 255),
            frame("::", "ff02::2", false, 58, &rs(&[]), 255),
            frame("::", "ff02::16", true, 58, &mld, 1),
            frame(
                "::",
                "ff02::1:ff01:101",
                false,
                58,
                &[135, 0, 0, 0, 0, 0, 0, 0],
                255,
            ),
            frame(
                "fe80::1:1",
                "ff02::1",
                false,
                58,
                &[136, 0, 0, 0, 0, 0, 0, 0],
                255,
            ),
            frame("::", "ff02::16", false, 58, &[131, 0, 0, 0, 0, 0, 0, 0], 1),
        ];
        for f in &heard {
            assert!(parse(f).is_some());
            for pkttype in 0..4 {
                assert_eq!(run(&p, f, pkttype), SNAPLEN, "pkttype {pkttype}: {f:02x?}");
            }
            // PACKET_OUTGOING, PACKET_LOOPBACK
            assert_eq!(run(&p, f, 4), 0);
            assert_eq!(run(&p, f, 5), 0);
        }
        // A Hop-by-Hop header of 16 octets.
        let mut long = frame("::", "ff02::16", true, 58, &mld, 1);
        long[55] = 1;
        long.splice(62..62, [1, 6, 0, 0, 0, 0, 0, 0]);
        long[19] += 8;
        assert!(parse(&long).is_some());
        assert_eq!(run(&p, &long, 2), SNAPLEN);

        let not_heard = [
            frame("2001:db8::1", "2001:db8::2", false, 17, &[0; 12], 64),
            frame("2001:db8::1", "2001:db8::2", true, 17, &[0; 12], 64),
            frame(
                "2001:db8::1",
                "2001:db8::2",
                false,
                58,
                &[128, 0, 0, 0, 0, 0, 0, 0],
                64,
            ),
            frame(
                "fe80::1",
                "ff02::1",
                false,
                58,
                &[134, 0, 0, 0, 64, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                255,
            ),
            frame("2001:db8::1", "2001:db8::2", false, 6, &[0; 20], 64),
        ];
        for f in &not_heard {
            assert_eq!(parse(f), None);
            assert_eq!(run(&p, f, 0), 0, "{f:02x?}");
        }
        let mut arp = heard[0].clone();
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert_eq!(run(&p, &arp, 1), 0);
        // Cut short: the kernel drops a frame a load runs past.
        assert_eq!(run(&p, &heard[0][..54], 0), 0);
        assert_eq!(run(&p, &heard[2][..60], 0), 0);
    }
}
