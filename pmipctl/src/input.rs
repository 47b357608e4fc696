//! Reading what the user hands over: hex text, and pcap or pcapng captures.

use std::io::Read;

use pcap_file::pcap::PcapReader;
use pcap_file::pcapng::{Block, PcapNgReader};

/// Hex text that is not hex.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HexError {
    #[error("invalid hex digit {found:?} at input position {position}")]
    BadDigit { found: char, position: usize },
    #[error("odd number of hex digits ({0}): the last octet is incomplete")]
    OddLength(usize),
    #[error("no hex digits in the input")]
    Empty,
}

/// Octets from hex text. Whitespace, `:`, `-` and `.` between digits are ignored, and a
/// leading `0x` is allowed, so `3b 01 05 00`, `3b:01:05:00`, `3b010500` and Wireshark's
/// "Copy as Hex Stream" all work.
pub fn parse_hex(text: &str) -> Result<Vec<u8>, HexError> {
    let trimmed = text.trim_start();
    let skipped = text.len() - trimmed.len();
    let (body, base) = match trimmed
        .strip_prefix("0x")
        .or_else(|| trimmed.strip_prefix("0X"))
    {
        Some(rest) => (rest, skipped + 2),
        None => (trimmed, skipped),
    };
    let mut digits = Vec::with_capacity(body.len());
    for (i, c) in body.char_indices() {
        if c.is_whitespace() || matches!(c, ':' | '-' | '.') {
            continue;
        }
        match c.to_digit(16) {
            Some(d) => digits.push(d as u8),
            None => {
                return Err(HexError::BadDigit {
                    found: c,
                    position: base + i,
                });
            }
        }
    }
    if digits.is_empty() {
        return Err(HexError::Empty);
    }
    if digits.len() % 2 != 0 {
        return Err(HexError::OddLength(digits.len()));
    }
    Ok(digits.chunks_exact(2).map(|p| (p[0] << 4) | p[1]).collect())
}

/// A capture that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("not a pcap or pcapng file (magic number {0:#010x})")]
    UnknownFormat(u32),
    #[error("file too short to be a capture")]
    TooShort,
    #[error("unreadable capture: {0}")]
    Pcap(#[from] pcap_file::PcapError),
}

/// One captured frame.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    /// 1-based, as Wireshark numbers frames.
    pub number: u64,
    /// LINKTYPE_* of the interface it was captured on.
    pub link_type: u32,
    pub data: &'a [u8],
}

const PCAPNG_SHB: u32 = 0x0a0d_0d0a;
const PCAP_MAGICS: [u32; 4] = [0xa1b2_c3d4, 0xd4c3_b2a1, 0xa1b2_3c4d, 0x4d3c_b2a1];

/// Calls `f` for every frame of a pcap or pcapng capture, in order.
pub fn for_each_frame(capture: &[u8], mut f: impl FnMut(Frame<'_>)) -> Result<(), CaptureError> {
    let magic = match capture {
        [a, b, c, d, ..] => u32::from_be_bytes([*a, *b, *c, *d]),
        _ => return Err(CaptureError::TooShort),
    };
    let mut number = 0u64;
    if PCAP_MAGICS.contains(&magic) {
        let mut r = PcapReader::new(capture)?;
        let link_type = u32::from(r.header().datalink);
        while let Some(p) = r.next_packet() {
            let p = p?;
            number += 1;
            f(Frame {
                number,
                link_type,
                data: &p.data,
            });
        }
        Ok(())
    } else if magic == PCAPNG_SHB {
        let mut r = PcapNgReader::new(capture)?;
        // Interface link types of the current section, by interface id.
        let mut interfaces: Vec<u32> = Vec::new();
        while let Some(block) = r.next_block() {
            let (iface, data) = match block? {
                Block::SectionHeader(_) => {
                    interfaces.clear();
                    continue;
                }
                Block::InterfaceDescription(idb) => {
                    interfaces.push(u32::from(idb.linktype));
                    continue;
                }
                Block::EnhancedPacket(epb) => (epb.interface_id, epb.data),
                Block::SimplePacket(spb) => (0, spb.data),
                Block::Packet(pb) => (u32::from(pb.interface_id), pb.data),
                _ => continue,
            };
            number += 1;
            // A packet naming no known interface cannot be taken apart; LINKTYPE 0xffff_ffff
            // matches no link type, so the frame is skipped like any non-IP frame.
            let link_type = interfaces.get(iface as usize).copied().unwrap_or(u32::MAX);
            f(Frame {
                number,
                link_type,
                data: &data,
            });
        }
        Ok(())
    } else {
        Err(CaptureError::UnknownFormat(magic))
    }
}

/// Reads everything from `r`.
pub fn read_all(r: &mut dyn Read) -> std::io::Result<Vec<u8>> {
    let mut v = Vec::new();
    r.read_to_end(&mut v)?;
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_forms() {
        let want = vec![0x3b, 0x01, 0x05, 0xff];
        for s in [
            "3b0105ff",
            "3b 01 05 ff",
            "3b:01:05:FF",
            "0x3b0105ff",
            "  3b-01-05-ff\n",
            "3b01\n05ff",
        ] {
            assert_eq!(parse_hex(s).unwrap(), want, "{s:?}");
        }
        assert_eq!(
            parse_hex("3b 0g").unwrap_err(),
            HexError::BadDigit {
                found: 'g',
                position: 4
            }
        );
        assert_eq!(parse_hex("3b0").unwrap_err(), HexError::OddLength(3));
        assert_eq!(parse_hex(" \n").unwrap_err(), HexError::Empty);
    }

    #[test]
    fn not_a_capture() {
        assert!(matches!(
            for_each_frame(b"hello world", |_| {}),
            Err(CaptureError::UnknownFormat(0x6865_6c6c))
        ));
        assert!(matches!(
            for_each_frame(b"ab", |_| {}),
            Err(CaptureError::TooShort)
        ));
    }
}
