//! Every Mobility Header parser and typed view on arbitrary bytes, and the round trip of
//! whatever parses: parse(emit(parse(x))) == parse(x), and emitting that again gives the same
//! octets.
//!
//! The first input octet picks how the rest is read: as a Mobility Header, as an IP packet,
//! or as a captured frame of some link type.

#![no_main]

use std::net::Ipv6Addr;

use libfuzzer_sys::fuzz_target;
use pmip::wire::packet::{find_mh, ip_from_frame, linktype};
use pmip::wire::{
    CommonOptions, ContextRequest, ErrorKind, HandoverContext, HeartbeatView, Message, MhPacket,
    MobilityOption, Options, OptionsIter, ProxyBindingAck, ProxyBindingUpdate,
};

const SRC: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xa, 0, 0, 0, 0, 1);
const DST: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xb, 0, 0, 0, 0, 1);

/// Reads everything a receiver would read from a parsed message.
fn views(m: &Message<'_>) {
    let _ = format!("{m:?}");
    let _ = m.mh_type().rfc_name();
    for (at, o) in m.options().iter_at() {
        assert!(at >= 6, "option at {at}, inside the header");
        let _ = o.option_type().to_string();
        let _ = o.alignment().padding_at(at);
        if let MobilityOption::ContextRequest(c) = o {
            for (t, d) in c.iter() {
                let _ = (t.rfc_name(), d.len());
            }
            // The encoded list must be accepted again as it is.
            assert!(ContextRequest::from_encoded(c.encoded()).is_ok());
        }
    }
    let _ = CommonOptions::collect(&m.options());
    match m {
        Message::BindingUpdate(bu) => {
            if let Ok(p) = ProxyBindingUpdate::new(bu) {
                let _ = p.check_mandatory();
                let _ = p.home_network_prefixes().count();
                let _ = (p.requests_new_prefix(), p.is_deregistration());
                let _ = p.opts.nai();
            }
        }
        Message::BindingAck(ba) => {
            if let Ok(p) = ProxyBindingAck::new(ba) {
                let _ = p.check_mandatory();
                let _ = p.home_network_prefixes().count();
            }
        }
        Message::HandoverInitiate(hi) => {
            if let Ok(c) = HandoverContext::of_hi(hi) {
                let _ = c.home_network_prefixes().count();
            }
        }
        Message::HandoverAck(h) => {
            let _ = HandoverContext::of_hack(h);
        }
        Message::Heartbeat(h) => {
            let _ = HeartbeatView::new(h);
        }
        _ => {}
    }
}

/// parse(emit(m)) == m, and emit is stable.
fn round_trip(m: &Message<'_>) {
    let n = m.buffer_len();
    let mut buf = vec![0u8; n];
    match m.emit(&mut buf) {
        Ok(len) => assert_eq!(len, n),
        // The emitter pads options to their alignment, which a received message need not do:
        // re-emitting a full-size message can need more than 2048 octets.
        Err(e) if matches!(e.kind, ErrorKind::MessageTooLong { .. }) => {
            assert!(n > 2048, "{e} for a {n}-octet message");
            return;
        }
        Err(e) => panic!("a parsed message does not emit: {e} ({m:?})"),
    }
    let back = Message::parse_bytes(&buf)
        .unwrap_or_else(|e| panic!("emitted message does not parse: {e} ({m:?})"));
    assert_eq!(&back, m);
    let mut again = vec![0u8; back.buffer_len()];
    back.emit(&mut again).expect("second emit");
    assert_eq!(again, buf);
    // With a checksum, it verifies.
    let mut summed = vec![0u8; n];
    m.emit_with_checksum(&mut summed, &SRC, &DST)
        .expect("emit with checksum");
    assert_eq!(Message::parse_verified(&summed, &SRC, &DST).as_ref(), Ok(m));
}

fn mobility_header(mh: &[u8]) {
    // The options iterator on its own, at every offset a message kind uses.
    for offset in [8usize, 10, 12, 24] {
        let _ = OptionsIter::new(mh, offset).count();
        let _ = Options::parse(mh, offset);
    }
    if let Ok(p) = MhPacket::new_checked(mh) {
        let _ = (p.payload_proto(), p.mh_type(), p.message_data().len());
        let _ = p.check_checksum(&SRC, &DST);
    }
    let _ = Message::parse_verified(mh, &SRC, &DST);
    match Message::parse_bytes(mh) {
        Ok(m) => {
            views(&m);
            round_trip(&m);
        }
        Err(e) => {
            let _ = e.to_string();
            assert!(
                e.offset <= mh.len().max(8),
                "error offset {} past {}",
                e.offset,
                mh.len()
            );
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    match selector % 4 {
        0 | 1 => mobility_header(rest),
        2 => {
            if let Ok(found) = find_mh(rest) {
                assert!(found.offset <= rest.len());
                mobility_header(found.mh);
            }
        }
        _ => {
            let links = [
                linktype::NULL,
                linktype::ETHERNET,
                linktype::RAW,
                linktype::LINUX_SLL,
                linktype::LINUX_SLL2,
                linktype::IPV4,
                linktype::IPV6,
            ];
            let link = links[usize::from(selector >> 2) % links.len()];
            if let Some(ip) = ip_from_frame(link, rest)
                && let Ok(found) = find_mh(ip)
            {
                mobility_header(found.mh);
            }
        }
    }
});
