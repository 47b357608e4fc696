//! The access link's wire format (`pmip::wire::nd`) on arbitrary bytes: every view and
//! representation, and the round trip of whatever parses: parse(emit(parse(x))) == parse(x),
//! and emitting that again gives the same octets.
//!
//! The first input octet picks how the rest is read: as an Ethernet frame (as it is, or
//! with its ICMPv6 checksum made right, so that the message parsers are reached), as a bare
//! ICMPv6 message (checksum made right), as an ND options area, or as an IPv6 packet.

#![no_main]

use std::net::Ipv6Addr;

use libfuzzer_sys::fuzz_target;
use pmip::wire::nd::*;

const SRC: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);
const DST: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

/// Reads everything a receiver would read from a parsed message.
fn views(m: &Icmpv6Repr<'_>) {
    let _ = format!("{m:?}");
    let _ = m.msg_type().rfc_name();
    match m {
        Icmpv6Repr::Ndisc(n) => {
            for o in n.options().iter() {
                let _ = (
                    o.option_type().to_string(),
                    o.buffer_len(),
                    o.ethernet_address(),
                );
            }
            let _ = n.options().source_link_layer_address();
            let _ = n.options().target_link_layer_address();
            for hop_limit in [1, 255] {
                for (s, d) in [(SRC, DST), (Ipv6Addr::UNSPECIFIED, solicited_node(&SRC))] {
                    if let Err(e) = n.check_validity(&s, &d, hop_limit, 40) {
                        assert!(e.is_invalid_nd(), "{e}");
                        let _ = e.to_string();
                    }
                }
            }
        }
        Icmpv6Repr::Mld(MldRepr::ReportV2 { records }) => {
            for r in records.iter() {
                assert_eq!(r.sources().count() * 16, r.sources.len());
                assert_eq!(r.aux_data.len() % 4, 0);
            }
        }
        _ => {}
    }
}

/// parse(emit(m)) == m for an ICMPv6 message, and emitting is stable.
fn message_round_trip(m: &Icmpv6Repr<'_>) {
    let n = m.buffer_len();
    let mut buf = vec![0u8; n];
    assert_eq!(m.emit(&SRC, &DST, &mut buf), Ok(n), "{m:?}");
    let p = Icmpv6Packet::new_checked(&buf[..]).expect("an emitted message has a header");
    let back = Icmpv6Repr::parse(&SRC, &DST, &p)
        .unwrap_or_else(|e| panic!("emitted message does not parse: {e} ({m:?})"));
    assert_eq!(&back, m);
    let mut again = vec![0u8; back.buffer_len()];
    back.emit(&SRC, &DST, &mut again).expect("second emit");
    assert_eq!(again, buf);
}

fn frame(bytes: &[u8]) {
    if let Ok(f) = EthernetFrame::new_checked(bytes) {
        let _ = (
            f.source(),
            f.destination(),
            f.ethertype(),
            f.payload().len(),
        );
        let _ = EthernetRepr::parse(&f);
        ipv6(f.payload());
    }
    match FrameRepr::parse(bytes) {
        Ok(r) => {
            views(&r.message);
            let n = r.buffer_len();
            assert!(n <= bytes.len(), "{n} octets from {}", bytes.len());
            let mut out = vec![0u8; n];
            assert_eq!(r.emit(&mut out), Ok(n));
            let back = FrameRepr::parse(&out)
                .unwrap_or_else(|e| panic!("emitted frame does not parse: {e} ({r:?})"));
            assert_eq!(back, r);
            let mut again = vec![0u8; n];
            back.emit(&mut again).expect("second emit");
            assert_eq!(again, out);
        }
        Err(e) => {
            let _ = e.to_string();
            assert!(
                e.offset <= bytes.len().max(60),
                "error offset {} past {}",
                e.offset,
                bytes.len()
            );
        }
    }
}

fn ipv6(bytes: &[u8]) {
    let Ok(ip) = Ipv6Packet::new_checked(bytes) else {
        return;
    };
    let _ = (
        ip.version(),
        ip.traffic_class(),
        ip.flow_label(),
        ip.hop_limit(),
    );
    let _ = Ipv6Repr::parse(&ip);
    let (src, dst) = (ip.source(), ip.destination());
    if ip.next_header() == NEXT_HEADER_HOP_BY_HOP
        && let Ok(h) = HopByHopHeader::new_checked(ip.payload())
    {
        let r = HopByHopRepr::parse(&h);
        let _ = r.router_alert();
        let mut out = vec![0u8; r.buffer_len()];
        assert_eq!(r.emit(h.next_header(), &mut out), Ok(out.len()));
        assert_eq!(out[..], ip.payload()[..h.total_len()]);
    }
    if let Ok((_, _, upper)) = ip.upper_layer()
        && let Ok(icmp) = Icmpv6Packet::new_checked(upper)
    {
        let _ = (icmp.msg_type(), icmp.msg_code(), icmp.body().len());
        let _ = icmp.check_checksum(&src, &dst);
        if let Ok(m) = Icmpv6Repr::parse(&src, &dst, &icmp) {
            views(&m);
        }
    }
}

/// `bytes` as an ICMPv6 message from [`SRC`] to [`DST`], with its checksum made right.
fn message(bytes: &[u8]) {
    let mut msg = bytes.to_vec();
    if msg.len() < ICMPV6_HEADER_LEN {
        assert!(Icmpv6Packet::new_checked(&msg[..]).is_err());
        return;
    }
    Icmpv6Packet::new_unchecked(&mut msg[..]).fill_checksum(&SRC, &DST);
    let p = Icmpv6Packet::new_checked(&msg[..]).expect("four octets or more");
    assert!(p.verify_checksum(&SRC, &DST));
    match Icmpv6Repr::parse(&SRC, &DST, &p) {
        Ok(m) => {
            views(&m);
            message_round_trip(&m);
        }
        Err(e) => {
            let _ = e.to_string();
            assert!(
                e.offset <= msg.len(),
                "error offset {} past {}",
                e.offset,
                msg.len()
            );
        }
    }
}

/// `bytes` as a frame whose ICMPv6 checksum is made right, when it gets that far.
fn frame_with_checksum(bytes: &[u8]) {
    let mut f = bytes.to_vec();
    let at = {
        let Ok(eth) = EthernetFrame::new_checked(&f[..]) else {
            return frame(bytes);
        };
        let Ok(ip) = Ipv6Packet::new_checked(eth.payload()) else {
            return frame(bytes);
        };
        let Ok((_, at, upper)) = ip.upper_layer() else {
            return frame(bytes);
        };
        (
            ETHERNET_HEADER_LEN + at,
            upper.len(),
            ip.source(),
            ip.destination(),
        )
    };
    let (start, len, src, dst) = at;
    if len >= ICMPV6_HEADER_LEN {
        Icmpv6Packet::new_unchecked(&mut f[start..start + len]).fill_checksum(&src, &dst);
    }
    frame(&f);
}

fn options(bytes: &[u8]) {
    let n = NdOptionsIter::new(bytes, 8).count();
    match NdOptions::parse(bytes, 8) {
        Ok(o) => {
            assert_eq!(o.iter().count(), n);
            let len = o.buffer_len();
            assert_eq!(len, bytes.len());
            let mut out = vec![0u8; len];
            o.emit(&mut out, 8).expect("parsed options emit");
            let back = NdOptions::parse(&out, 8).expect("emitted options parse");
            assert_eq!(back, o);
        }
        Err(e) => assert!(e.offset <= bytes.len() + 8),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    match selector % 5 {
        0 => frame(rest),
        1 => frame_with_checksum(rest),
        2 => message(rest),
        3 => options(rest),
        _ => ipv6(rest),
    }
});
