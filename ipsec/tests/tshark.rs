//! Cross-check of the ESP code against an implementation nobody here wrote: Wireshark's ESP
//! dissector (`packet-ipsec.c`, run as `tshark`) with its decryption on and the SA keys in its
//! SA table (`uat:esp_sa`).
//!
//! For each algorithm, Mobility Headers (heartbeat requests with their checksums) are sealed by
//! this crate into ESP, written to a pcap of raw IPv6 frames and read by tshark. Every frame
//! must decrypt to a Mobility Header of the right type and sequence number with nothing
//! malformed; Wireshark also checks the ICV (the HMAC, or the GCM tag) and must find it good,
//! and find it bad in a frame whose ICV was changed. Wireshark 4.0 has no ESN in its SA
//! table, so the SAs here have none.
//!
//! Needs `tshark` (Debian package `tshark`); set `TSHARK` to use another binary.

use std::net::Ipv6Addr;
use std::process::Command;

use ipsec::{Algorithm, SecurityAssociationDatabase, SecurityAssociationSpec, Spi};
use pmip::config::KeyMaterial;

const MAG: &str = "2001:db8:a::1";
const LMA: &str = "2001:db8:b::1";
const LINKTYPE_RAW: u32 = 101;

fn v6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

/// A heartbeat request (RFC 5847 §3.1, MH type 13) with sequence number `seq`, padded with
/// a PadN option to its 16 octets.
fn heartbeat(seq: u32, src: Ipv6Addr, dst: Ipv6Addr) -> Vec<u8> {
    let mut mh = vec![59u8, 1, 13, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 0, 0];
    mh[8..12].copy_from_slice(&seq.to_be_bytes());
    let c = pmip::wire::mh_checksum(&src, &dst, &mh);
    mh[4..6].copy_from_slice(&c.to_be_bytes());
    mh
}

fn ipv6_esp(src: Ipv6Addr, dst: Ipv6Addr, esp: &[u8]) -> Vec<u8> {
    let mut p = vec![0x60, 0, 0, 0];
    p.extend_from_slice(&(esp.len() as u16).to_be_bytes());
    p.push(ipsec::IPPROTO_ESP);
    p.push(64);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    p.extend_from_slice(esp);
    p
}

fn pcap(frames: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend(0xa1b2_c3d4u32.to_le_bytes());
    out.extend(2u16.to_le_bytes());
    out.extend(4u16.to_le_bytes());
    out.extend(0i32.to_le_bytes());
    out.extend(0u32.to_le_bytes());
    out.extend(65535u32.to_le_bytes());
    out.extend(LINKTYPE_RAW.to_le_bytes());
    for (i, f) in frames.iter().enumerate() {
        out.extend((1_700_000_000u32 + i as u32).to_le_bytes());
        out.extend(0u32.to_le_bytes());
        out.extend((f.len() as u32).to_le_bytes());
        out.extend((f.len() as u32).to_le_bytes());
        out.extend(f);
    }
    out
}

/// Wireshark's SA table line for one SA from `src` to `dst`.
fn uat(src: &str, dst: &str, spi: Spi, alg: Algorithm, key: &[u8]) -> String {
    let hex = |b: &[u8]| format!("0x{}", hex::encode(b));
    let (enc, enc_key, auth, auth_key) = match alg {
        Algorithm::Aes128Gcm | Algorithm::Aes256Gcm => (
            "AES-GCM with 16 octet ICV [RFC4106]",
            hex(key),
            "NULL",
            String::new(),
        ),
        Algorithm::Aes128CbcHmacSha256 | Algorithm::Aes256CbcHmacSha256 => {
            let (e, a) = key.split_at(key.len() - 32);
            (
                "AES-CBC [RFC3602]",
                hex(e),
                "HMAC-SHA-256-128 [RFC4868]",
                hex(a),
            )
        }
    };
    format!(
        "uat:esp_sa:\"IPv6\",\"{src}\",\"{dst}\",\"{:#010x}\",\"{enc}\",\"{enc_key}\",\"{auth}\",\"{auth_key}\"",
        spi.0
    )
}

#[test]
fn wireshark_decrypts_what_we_seal_and_checks_our_icvs() {
    let algs = [
        Algorithm::Aes128Gcm,
        Algorithm::Aes256Gcm,
        Algorithm::Aes128CbcHmacSha256,
        Algorithm::Aes256CbcHmacSha256,
    ];
    let (mag, lma) = (v6(MAG), v6(LMA));
    let mut frames = Vec::new();
    let mut uats = Vec::new();
    // (frame, SPI, heartbeat sequence, ICV changed)
    let mut expect = Vec::new();
    for (i, &alg) in algs.iter().enumerate() {
        let key: Vec<u8> = (0..alg.key_len()).map(|k| (k * 7 + i) as u8).collect();
        let spi = Spi(0x1000 + i as u32);
        let spec = SecurityAssociationSpec {
            peer: lma,
            algorithm: alg,
            spi_in: Spi(0x2000 + i as u32),
            spi_out: spi,
            key_in: KeyMaterial::new(vec![0; alg.key_len()]),
            key_out: KeyMaterial::new(key.clone()),
            esn: false,
        };
        let mut db = SecurityAssociationDatabase::new(&[spec], 64, false).unwrap();
        uats.push(uat(MAG, LMA, spi, alg, &key));
        for n in 0..3u32 {
            let seq = (i as u32) * 100 + n;
            let mut esp = Vec::new();
            db.protect(lma, 135, &heartbeat(seq, mag, lma), &mut esp)
                .unwrap();
            let changed = n == 2;
            if changed {
                let last = esp.len() - 1;
                esp[last] ^= 1;
            }
            frames.push(ipv6_esp(mag, lma, &esp));
            expect.push((spi, seq, changed));
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("esp.pcap");
    std::fs::write(&path, pcap(&frames)).unwrap();
    let tshark = std::env::var("TSHARK").unwrap_or_else(|_| "tshark".into());
    let mut cmd = Command::new(&tshark);
    cmd.args(["-n", "-o", "esp.enable_encryption_decode:TRUE"])
        .args(["-o", "esp.enable_authentication_check:TRUE"]);
    for u in &uats {
        cmd.args(["-o", u]);
    }
    cmd.args(["-T", "fields", "-E", "separator=|"])
        .args(["-e", "esp.spi", "-e", "mip6.mhtype", "-e", "mip6.hb.seqnr"])
        .args([
            "-e",
            "esp.icv_good",
            "-e",
            "esp.icv_bad",
            "-e",
            "_ws.malformed",
        ])
        .arg("-r")
        .arg(&path);
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{tshark}: {e} (apt-get install tshark)"));
    assert!(
        out.status.success(),
        "tshark failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), expect.len(), "{text}");
    for (line, (spi, seq, changed)) in lines.iter().zip(&expect) {
        let f: Vec<&str> = line.split('|').collect();
        assert_eq!(f[0], format!("{:#010x}", spi.0), "{line}");
        assert_eq!(f[5], "", "malformed: {line}");
        if *changed {
            // Wireshark checked the ICV (the HMAC, or GCM's tag) and found the change.
            assert_eq!((f[3], f[4]), ("0", "1"), "ICV not found bad: {line}");
            continue;
        }
        assert_eq!(f[1], "13", "not decrypted to a heartbeat: {line}");
        assert_eq!(f[2], seq.to_string(), "{line}");
        assert_eq!((f[3], f[4]), ("1", "0"), "ICV not found good: {line}");
    }
}
