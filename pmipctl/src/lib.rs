//! `pmipctl`: the command-line client of pmip.
//!
//! - `pmipctl mh decode HEX|-` and `pmipctl mh decode --pcap FILE` decode Mobility Header
//!   messages for a person (text) or a program (`-o json`).
//!
//! The decoder is a library ([`decode`], [`render`]) so that it is tested without the binary;
//! `main.rs` only parses the command line and maps errors to exit codes: 0 ok, 2 malformed
//! input or bad usage, 1 anything else.
//!
//! JSON output (`-o json`): one message is an object with `message` (what it is, in words),
//! `mh_type`, `payload_proto`, `header_len`, `length`, `checksum`, the message's fixed fields
//! (`sequence`, `flags`, `lifetime`, `status`, ...), `options` (each with `type`, `offset`,
//! `length` and its fields) and `warnings`. Coded values are `{"value": 154, "name":
//! "MAG_NOT_AUTHORIZED_FOR_PROXY_REG"}` (`name` null when no RFC names the value), flags a list
//! of letters. `--ip` wraps the message as `{"src", "dst", "transport", "mh_offset", "message"}`;
//! `--pcap` prints a list of those with `frame`, and `error` (`offset`, `frame_offset`,
//! `description`) in place of `message` for a malformed one.

use std::io::{Read, Write};

use clap::{Parser, ValueEnum};

pub mod commands;
pub mod decode;
mod error;
pub mod input;
pub mod render;

pub use error::CliError;

/// Output format, shared by every subcommand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum OutputFormat {
    /// Readable text: one line per field.
    #[default]
    Text,
    /// JSON with stable snake_case keys.
    Json,
}

#[derive(Debug, Parser)]
#[command(
    name = "pmipctl",
    version,
    about = "Command-line client for pmip (Proxy Mobile IPv6)"
)]
pub struct Cli {
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t, global = true)]
    pub output: OutputFormat,

    #[command(subcommand)]
    pub command: commands::Command,
}

/// Runs a parsed command line against the given streams.
pub fn run(cli: Cli, stdin: &mut dyn Read, stdout: &mut dyn Write) -> Result<(), CliError> {
    let mut io = commands::Io {
        stdin,
        stdout,
        output: cli.output,
    };
    commands::run(cli.command, &mut io)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn command_line_is_consistent() {
        Cli::command().debug_assert();
    }
}
