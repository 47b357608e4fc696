//! `pmipctl mh decode` on arbitrary input: the decoder and its text and JSON output for a
//! Mobility Header, the hex reader, and the pcap/pcapng reader with everything it finds.

#![no_main]

use libfuzzer_sys::fuzz_target;
use pmip::wire::packet::{find_mh, ip_from_frame};
use pmipctl::decode::{decode_mh, packet_record, packet_warnings};
use pmipctl::input::{for_each_frame, parse_hex};
use pmipctl::render::{message_text, packet_heading};

fn decode(mh: &[u8]) {
    if let Ok(r) = decode_mh(mh) {
        let text = message_text(&r);
        assert!(text.ends_with('\n'));
        let json = serde_json::to_string(&r).expect("a record serialises");
        let back: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
        assert!(back.is_object());
    }
}

fuzz_target!(|data: &[u8]| {
    decode(data);
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(bytes) = parse_hex(text)
    {
        decode(&bytes);
    }
    let _ = for_each_frame(data, |f| {
        if let Some(ip) = ip_from_frame(f.link_type, f.data)
            && let Ok(found) = find_mh(ip)
        {
            let p = packet_record(&found);
            let _ = packet_heading(Some(f.number), &p);
            let _ = packet_warnings(&found);
            decode(found.mh);
        }
    });
});
