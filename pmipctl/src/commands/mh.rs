//! `pmipctl mh`: Mobility Header tools.
//!
//! `pmipctl mh decode HEX|-` decodes one message; `--ip` takes a whole IP packet instead (and
//! verifies its checksums); `--pcap FILE` decodes every Mobility Header packet of a capture
//! (IPv6 next header 135, and UDP port 5436 over IPv4).

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use pmip::wire::Message;
use pmip::wire::packet::{FoundMh, find_mh, ip_from_frame};

use super::Io;
use crate::decode::{Record, Value, message_record, packet_record, packet_warnings};
use crate::input::{for_each_frame, parse_hex, read_all};
use crate::render::{message_text, packet_heading};
use crate::{CliError, OutputFormat};

#[derive(Debug, Args)]
pub struct MhArgs {
    #[command(subcommand)]
    pub command: MhCommand,
}

#[derive(Debug, Subcommand)]
pub enum MhCommand {
    /// Decode Mobility Header messages (RFC 6275 §6.1 and the PMIPv6 extensions).
    ///
    /// A malformed message is reported on one line with the byte offset and what was wrong,
    /// and the exit code is 2. Missing mandatory options and repeated ones are warnings.
    #[command(after_help = "Examples:\n  \
        pmipctl mh decode 3b 01 0d 00 00 00 00 01 00 00 00 07 01 02 00 00\n  \
        echo 3b010d00... | pmipctl mh decode - -o json\n  \
        pmipctl mh decode --ip 6000000000108740...\n  \
        pmipctl mh decode --pcap capture.pcapng")]
    Decode(DecodeArgs),
}

#[derive(Debug, Args)]
pub struct DecodeArgs {
    /// The Mobility Header in hex (spaces, colons allowed; may span several arguments), or `-`
    /// to read the hex from standard input.
    #[arg(
        value_name = "HEX|-",
        required_unless_present = "pcap",
        conflicts_with = "pcap"
    )]
    pub hex: Vec<String>,

    /// The hex is a whole IP packet: IPv6 carrying the Mobility Header (next header 135), or
    /// IPv4-UDP on port 5436 (RFC 5844 §4). Checksums are verified.
    #[arg(long)]
    pub ip: bool,

    /// Decode every Mobility Header packet of a pcap or pcapng capture (`-` for standard
    /// input). Link types: Ethernet, raw IP, Linux SLL and SLL2, BSD loopback.
    #[arg(long, value_name = "FILE", conflicts_with = "ip")]
    pub pcap: Option<PathBuf>,
}

pub fn run(args: MhArgs, io: &mut Io<'_>) -> Result<(), CliError> {
    match args.command {
        MhCommand::Decode(d) => decode(d, io),
    }
}

fn decode(args: DecodeArgs, io: &mut Io<'_>) -> Result<(), CliError> {
    if let Some(path) = &args.pcap {
        return decode_capture(path, io);
    }
    let text = if args.hex == ["-"] {
        let raw = read_all(io.stdin).context("cannot read standard input")?;
        String::from_utf8(raw)
            .map_err(|_| CliError::Malformed("standard input is not hex text".into()))?
    } else if args.hex.iter().any(|h| h == "-") {
        return Err(CliError::Usage(
            "`-` (read standard input) must be the only HEX argument".into(),
        ));
    } else {
        args.hex.join(" ")
    };
    let bytes = parse_hex(&text).map_err(|e| CliError::Malformed(e.to_string()))?;
    if args.ip {
        let found = find_mh(&bytes).map_err(|e| CliError::Malformed(e.to_string()))?;
        match packet_entry(None, &found, 0) {
            Ok(entry) => write_one(io, &entry, |r| {
                format!(
                    "{}\n{}",
                    packet_heading(None, r),
                    message_text(inner_message(r))
                )
            }),
            Err((_, e)) => Err(CliError::Malformed(e)),
        }
    } else {
        let m = Message::parse_bytes(&bytes).map_err(|e| CliError::Malformed(e.to_string()))?;
        let r = message_record(&m, &bytes);
        write_one(io, &r, message_text)
    }
}

fn write_one(
    io: &mut Io<'_>,
    r: &Record,
    text: impl Fn(&Record) -> String,
) -> Result<(), CliError> {
    match io.output {
        OutputFormat::Json | OutputFormat::Yaml => {
            crate::show::emit(io, r, String::new)?;
        }
        OutputFormat::Table | OutputFormat::Wide => write!(io.stdout, "{}", text(r))?,
    }
    Ok(())
}

fn inner_message(r: &Record) -> &Record {
    static EMPTY: Record = Record(Vec::new());
    match r.get("message") {
        Some(Value::Record(m)) => m,
        _ => &EMPTY,
    }
}

/// A Mobility Header found in a packet, decoded: its packet fields and `message`, or, when it
/// is malformed, the same packet fields with `error` and the one-line error text.
/// `link_len` is how many octets of link-layer header came before the IP packet.
fn packet_entry(
    frame: Option<u64>,
    found: &FoundMh<'_>,
    link_len: usize,
) -> Result<Record, (Record, String)> {
    let mut r = Record::new();
    if let Some(n) = frame {
        r.num("frame", n);
    }
    r.0.extend(packet_record(found).0);
    match Message::parse_bytes(found.mh) {
        Ok(m) => {
            let mut msg = message_record(&m, found.mh);
            let extra = packet_warnings(found);
            if let Some((_, Value::List(ws))) = msg.0.iter_mut().find(|(k, _)| *k == "warnings") {
                ws.extend(extra.into_iter().map(Value::Text));
            }
            r.push("message", Value::Record(msg));
            Ok(r)
        }
        Err(e) => {
            let in_frame = link_len + found.offset + e.offset;
            let what = if frame.is_some() { "frame" } else { "packet" };
            let line = format!("at byte {} ({what} byte {in_frame}): {}", e.offset, e.kind);
            let mut err = Record::new();
            err.num("offset", e.offset as u64)
                .num("frame_offset", in_frame as u64)
                .text("description", e.kind);
            r.push("error", Value::Record(err));
            Err((r, line))
        }
    }
}

fn decode_capture(path: &std::path::Path, io: &mut Io<'_>) -> Result<(), CliError> {
    let name = path.display().to_string();
    let data = if name == "-" {
        read_all(io.stdin).context("cannot read standard input")?
    } else {
        std::fs::read(path).with_context(|| format!("cannot read {name}"))?
    };
    let mut entries: Vec<(Record, Option<String>)> = Vec::new();
    let mut frames = 0u64;
    for_each_frame(&data, |f| {
        frames += 1;
        let Some(ip) = ip_from_frame(f.link_type, f.data) else {
            return;
        };
        // Frames that are not Mobility Header packets (or fragments of one) are skipped.
        let Ok(found) = find_mh(ip) else {
            return;
        };
        let link_len = f.data.len() - ip.len();
        entries.push(match packet_entry(Some(f.number), &found, link_len) {
            Ok(r) => (r, None),
            Err((r, line)) => (r, Some(line)),
        });
    })
    .map_err(|e| CliError::Malformed(format!("{name}: {e}")))?;

    let malformed = entries.iter().filter(|(_, e)| e.is_some()).count();
    match io.output {
        OutputFormat::Json | OutputFormat::Yaml => {
            let list: Vec<&Record> = entries.iter().map(|(r, _)| r).collect();
            crate::show::emit(io, &list, String::new)?;
        }
        OutputFormat::Table | OutputFormat::Wide => {
            for (r, err) in &entries {
                let n = match r.get("frame") {
                    Some(Value::Number(n)) => Some(*n),
                    _ => None,
                };
                writeln!(io.stdout, "{}", packet_heading(n, r))?;
                match err {
                    None => write!(io.stdout, "{}", message_text(inner_message(r)))?,
                    Some(line) => writeln!(io.stdout, "error: {line}")?,
                }
                writeln!(io.stdout)?;
            }
            writeln!(
                io.stdout,
                "{} Mobility Header message{} in {frames} frame{}{}",
                entries.len(),
                if entries.len() == 1 { "" } else { "s" },
                if frames == 1 { "" } else { "s" },
                if malformed > 0 {
                    format!(", {malformed} malformed")
                } else {
                    String::new()
                }
            )?;
        }
    }
    if malformed > 0 {
        return Err(CliError::Malformed(format!(
            "{name}: {malformed} malformed Mobility Header message{}",
            if malformed == 1 { "" } else { "s" }
        )));
    }
    Ok(())
}
