//! Packet captures of the lab's links (`dumpcap` inside a namespace) and what Wireshark's
//! dissectors (`tshark`) make of them: whether any Mobility Header crossed the link in clear,
//! and whether every ESP packet decrypts, with the lab's SA keys in Wireshark's SA table, to a
//! well-formed Mobility Header with a good ICV. An independent check of the ESP the daemons do.

use std::io::{BufRead, BufReader};
use std::net::Ipv6Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use datapath::netns::NetNs;
use pmip::config::EspAlgorithm;

use crate::lab::LabSa;

/// A running capture of one link into a pcap file.
#[derive(Debug)]
pub struct Capture {
    child: Child,
    path: PathBuf,
}

impl Capture {
    /// Starts `dumpcap` on `ifname` in `ns`, writing classic pcap to `path`; returns once it
    /// captures.
    pub fn start(ns: &NetNs, ifname: &str, path: &Path) -> anyhow::Result<Capture> {
        let mut c = ns.command("dumpcap")?;
        c.args(["-i", ifname, "-P", "-w"])
            .arg(path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = c
            .spawn()
            .context("dumpcap (Debian package wireshark-common, with tshark)")?;
        let stderr = child.stderr.take().context("dumpcap's stderr")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let t = Instant::now();
        let mut seen = Vec::new();
        while t.elapsed() < Duration::from_secs(10) {
            match rx.recv_timeout(Duration::from_millis(100)) {
                // "File: <path>" comes once the interface is open.
                Ok(l) if l.starts_with("File:") => {
                    return Ok(Capture {
                        child,
                        path: path.to_owned(),
                    });
                }
                Ok(l) => seen.push(l),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(_) => break,
            }
        }
        let _ = child.kill();
        bail!("dumpcap on {ifname} did not start: {}", seen.join(" / "))
    }

    /// Stops the capture (SIGINT, so the file is complete) and returns its path.
    pub fn stop(mut self) -> anyhow::Result<PathBuf> {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(10) {
            if self.child.try_wait()?.is_some() {
                return Ok(std::mem::take(&mut self.path));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        bail!("dumpcap did not stop")
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Wireshark's SA table line (`-o uat:esp_sa:...`, tshark 4.0 columns) for `sa`.
pub fn esp_uat(sa: &LabSa) -> String {
    let hex = |b: &[u8]| {
        let mut s = String::from("0x");
        for x in b {
            s.push_str(&format!("{x:02x}"));
        }
        s
    };
    let (enc, enc_key, auth, auth_key) = match sa.algorithm {
        EspAlgorithm::Aes128Gcm | EspAlgorithm::Aes256Gcm => (
            "AES-GCM with 16 octet ICV [RFC4106]",
            hex(&sa.key),
            "NULL",
            String::new(),
        ),
        EspAlgorithm::Aes128CbcHmacSha256 | EspAlgorithm::Aes256CbcHmacSha256 => {
            let (e, a) = sa.key.split_at(sa.key.len() - 32);
            (
                "AES-CBC [RFC3602]",
                hex(e),
                "HMAC-SHA-256-128 [RFC4868]",
                hex(a),
            )
        }
    };
    format!(
        "uat:esp_sa:\"IPv6\",\"{}\",\"{}\",\"{:#010x}\",\"{enc}\",\"{enc_key}\",\"{auth}\",\"{auth_key}\"",
        sa.src, sa.dst, sa.spi
    )
}

/// What a capture held, as Wireshark read it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SignallingCheck {
    /// ESP packets.
    pub esp_packets: usize,
    /// Mobility Headers outside ESP.
    pub cleartext_mobility_headers: usize,
    /// The Mobility Header types found inside ESP, in capture order.
    pub decrypted_types: Vec<u8>,
    /// ESP packets that did not decrypt to a good Mobility Header: why, one line each.
    pub bad: Vec<String>,
}

impl SignallingCheck {
    /// Every Mobility Header was in ESP, and every ESP packet held a good one.
    pub fn protected(&self) -> bool {
        self.esp_packets > 0
            && self.cleartext_mobility_headers == 0
            && self.bad.is_empty()
            && self.decrypted_types.len() == self.esp_packets
    }
}

fn tshark(args: &[String]) -> anyhow::Result<String> {
    let out = Command::new("tshark")
        .args(args)
        .output()
        .context("tshark (Debian package tshark)")?;
    if !out.status.success() {
        bail!("tshark: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Reads `pcap` twice with tshark: without keys (any Mobility Header it recognises is one in
/// clear) and with `sas` in its SA table and ESP decryption and ICV checking on.
pub fn check_signalling(pcap: &Path, sas: &[LabSa]) -> anyhow::Result<SignallingCheck> {
    let file = pcap.display().to_string();
    let plain = tshark(&[
        "-n".into(),
        "-r".into(),
        file.clone(),
        "-Y".into(),
        "esp || mipv6".into(),
        "-T".into(),
        "fields".into(),
        "-e".into(),
        "esp.spi".into(),
        "-e".into(),
        "mip6.mhtype".into(),
    ])?;
    let mut c = SignallingCheck::default();
    for line in plain.lines() {
        let (spi, mh) = line.split_once('\t').unwrap_or((line, ""));
        if !spi.is_empty() {
            c.esp_packets += 1;
        } else if !mh.is_empty() {
            c.cleartext_mobility_headers += 1;
        }
    }
    let mut args: Vec<String> = vec![
        "-n".into(),
        "-o".into(),
        "esp.enable_encryption_decode:TRUE".into(),
        "-o".into(),
        "esp.enable_authentication_check:TRUE".into(),
    ];
    for sa in sas {
        args.push("-o".into());
        args.push(esp_uat(sa));
    }
    args.extend(
        [
            "-r",
            &file,
            "-Y",
            "esp",
            "-T",
            "fields",
            "-E",
            "separator=|",
            "-e",
            "frame.number",
            "-e",
            "esp.spi",
            "-e",
            "mip6.mhtype",
            "-e",
            "esp.icv_good",
            "-e",
            "_ws.malformed",
        ]
        .map(String::from),
    );
    let decrypted = tshark(&args)?;
    for line in decrypted.lines() {
        let f: Vec<&str> = line.split('|').collect();
        let [frame, spi, mh, good, malformed] = f[..] else {
            c.bad.push(format!("unexpected tshark line {line:?}"));
            continue;
        };
        match mh.parse::<u8>() {
            Ok(t) if good == "1" && malformed.is_empty() => c.decrypted_types.push(t),
            _ => c.bad.push(format!(
                "frame {frame} SPI {spi}: Mobility Header type {mh:?}, ICV good {good:?}, malformed {malformed:?}"
            )),
        }
    }
    Ok(c)
}

/// The ESP payloads from `src` to `dst` in a pcap of Ethernet frames carrying IPv6 without
/// extension headers (what the lab's veths capture), oldest first.
pub fn esp_payloads(pcap: &Path, src: Ipv6Addr, dst: Ipv6Addr) -> anyhow::Result<Vec<Vec<u8>>> {
    let b = std::fs::read(pcap)?;
    if b.len() < 24 || b[..4] != 0xa1b2_c3d4u32.to_le_bytes() {
        bail!("{}: not a little-endian classic pcap", pcap.display());
    }
    let linktype = u32::from_le_bytes(b[20..24].try_into()?);
    if linktype != 1 {
        bail!("{}: link type {linktype}, not Ethernet", pcap.display());
    }
    let mut out = Vec::new();
    let mut at = 24;
    while at + 16 <= b.len() {
        let incl = u32::from_le_bytes(b[at + 8..at + 12].try_into()?) as usize;
        let Some(frame) = b.get(at + 16..at + 16 + incl) else {
            break;
        };
        at += 16 + incl;
        if frame.len() < 14 + 40 || frame[12..14] != [0x86, 0xdd] {
            continue;
        }
        let ip = &frame[14..];
        let nh = ip[6];
        let s = Ipv6Addr::from(<[u8; 16]>::try_from(&ip[8..24])?);
        let d = Ipv6Addr::from(<[u8; 16]>::try_from(&ip[24..40])?);
        let len = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
        if nh == ipsec::IPPROTO_ESP
            && s == src
            && d == dst
            && let Some(p) = ip.get(40..40 + len)
        {
            out.push(p.to_vec());
        }
    }
    Ok(out)
}
