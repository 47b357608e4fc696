//! The classic BPF program on the capture socket: it keeps in the kernel every frame that is
//! not one of the ICMPv6 messages a node shows itself with ([`NODE_MESSAGES`]), so user
//! traffic on the access links never reaches the MAG's user space. Pure: the socket in
//! `sys.rs` attaches it. [`super::frame::parse`] checks each frame it lets through in full.

use pmip::wire::nd::{ETHERNET_HEADER_LEN, EtherType, NEXT_HEADER_HOP_BY_HOP, NEXT_HEADER_ICMPV6};

use super::frame::NODE_MESSAGES;

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
const AT_NEXT_HEADER: u32 = ETHERNET_HEADER_LEN as u32 + 6;
const AT_PAYLOAD: u32 = (ETHERNET_HEADER_LEN + pmip::wire::nd::IPV6_HEADER_LEN) as u32;

/// The filter on the capture socket: an IPv6 frame received from the link (not sent, not
/// looped back) carrying one of [`NODE_MESSAGES`], directly or behind one Hop-by-Hop header.
pub(crate) fn filter_program() -> Vec<Insn> {
    const ACCEPT: usize = 23;
    const DROP: usize = 24;
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
    let [t0, t1, t2, t3, t4, t5] = NODE_MESSAGES.map(|t| u32::from(t.value()));
    let program = vec![
        /* 0 */ i(LD_H_ABS, 12),
        /* 1 */ jeq(1, u32::from(EtherType::Ipv6.value()), 2, DROP),
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
        /* 21 */ jeq(21, t4, ACCEPT, 22),
        /* 22 */ jeq(22, t5, ACCEPT, DROP),
        /* 23 */ i(RET_K, SNAPLEN),
        /* 24 */ i(RET_K, 0),
    ];
    debug_assert_eq!(program.len(), DROP + 1);
    program
}

#[cfg(test)]
mod tests {
    use super::super::frame::parse;
    use super::super::frame::tests::{SLLAO, frame, rs};
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
            // The answer to the presence probe.
            frame(
                "fe80::1:1",
                "fe80::1",
                false,
                58,
                &[129, 0, 0, 0, 0x50, 0x4d, 0, 0],
                64,
            ),
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
