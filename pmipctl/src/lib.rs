//! `pmipctl`: the command-line client of pmip.
//!
//! - `pmipctl mh decode HEX|-` and `pmipctl mh decode --pcap FILE` decode Mobility Header
//!   messages for a person (text) or a program (`-o json`). This works offline.
//! - `pmipctl bindings list|get|watch|revoke` and `pmipctl stats` talk to the LMA's
//!   `pmip.v1.BindingCache` service; `pmipctl policy ...` to its `pmip.v1.Policy` service
//!   (mobile node profiles and authorized MAGs); `pmipctl mag ...` to a MAG's `pmip.v1.Gateway`
//!   service. `--lma URL` and `--mag URL` say where (see [`client`]).
//!
//! The decoder is a library ([`decode`], [`render`]) so that it is tested without the binary;
//! `main.rs` only parses the command line and maps errors to exit codes: 0 ok, 2 malformed
//! input or bad usage, 1 anything else (a gRPC error, a daemon that cannot be reached).
//!
//! Output (`-o`): `table` (the default, for people: aligned columns, ages like `2m13s`, RFC
//! names), `wide` (tables with more columns), `json` or `yaml` (stable snake_case keys, for
//! programs; see [`views`]). `--no-headers` leaves out a table's heading line. A closed
//! standard output (`pmipctl ... | head`) ends the command quietly with exit code 0.
//! `pmipctl completion bash|zsh|fish` prints a shell completion script.
//!
//! JSON of `mh decode`: one message is an object with `message` (what it is, in words),
//! `mh_type`, `payload_proto`, `header_len`, `length`, `checksum`, the message's fixed fields
//! (`sequence`, `flags`, `lifetime`, `status`, ...), `options` (each with `type`, `offset`,
//! `length` and its fields) and `warnings`. Coded values are `{"value": 154, "name":
//! "MAG_NOT_AUTHORIZED_FOR_PROXY_REG"}` (`name` null when no RFC names the value), flags a list
//! of letters. `--ip` wraps the message as `{"src", "dst", "transport", "mh_offset", "message"}`;
//! `--pcap` prints a list of those with `frame`, and `error` (`offset`, `frame_offset`,
//! `description`) in place of `message` for a malformed one.

use std::io::{Read, Write};

use clap::{Parser, ValueEnum};

pub mod client;
pub mod commands;
pub mod decode;
mod error;
pub mod input;
pub mod render;
pub mod show;
pub mod views;

pub use error::CliError;

impl OutputFormat {
    /// Text for people (`table` or `wide`), not data for programs.
    pub fn is_text(self) -> bool {
        matches!(self, OutputFormat::Table | OutputFormat::Wide)
    }
}

/// Output format, shared by every subcommand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum OutputFormat {
    /// For people: aligned tables, or one line per field (`text` is another name for it).
    #[default]
    #[value(alias = "text")]
    Table,
    /// As `table`, with more columns where the command prints a table.
    Wide,
    /// JSON with stable snake_case keys (one object per line for `bindings watch`).
    Json,
    /// YAML with the same keys as JSON.
    Yaml,
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

    /// Tables without their heading line (for scripts).
    #[arg(long, global = true)]
    pub no_headers: bool,

    #[command(flatten)]
    pub connect: client::ConnectArgs,

    #[command(subcommand)]
    pub command: commands::Command,
}

/// Runs a parsed command line against the given streams. Commands that talk to a daemon run
/// on a runtime of their own: call this from outside any async runtime.
pub fn run(
    cli: Cli,
    stdin: &mut dyn Read,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
) -> Result<(), CliError> {
    let mut io = commands::Io {
        stdin,
        stdout,
        stderr,
        output: cli.output,
        no_headers: cli.no_headers,
    };
    commands::run(cli.command, &cli.connect, &mut io)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_do_not_clash_with_arguments_of_the_same_name() {
        let cli = Cli::try_parse_from([
            "pmipctl",
            "bindings",
            "get",
            "mn1@lab.example",
            "--key",
            "k.pem",
            "--cert",
            "c.pem",
            "--mag",
            "[::1]:7000",
        ])
        .unwrap();
        assert_eq!(
            cli.connect.key.as_deref(),
            Some(std::path::Path::new("k.pem"))
        );
        assert_eq!(
            cli.connect.cert.as_deref(),
            Some(std::path::Path::new("c.pem"))
        );
        match cli.command {
            commands::Command::Bindings(b) => match b.command {
                commands::bindings::BindingsCommand::Get(g) => {
                    assert_eq!(g.key, "mn1@lab.example")
                }
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        }
        let cli =
            Cli::try_parse_from(["pmipctl", "mag", "detach", "mn1@x", "--mag", "m:1"]).unwrap();
        assert_eq!(cli.connect.mag, "m:1");
    }

    #[test]
    fn text_is_another_name_for_table() {
        let cli = Cli::try_parse_from(["pmipctl", "-o", "text", "stats"]).unwrap();
        assert_eq!(cli.output, OutputFormat::Table);
        let cli = Cli::try_parse_from(["pmipctl", "stats", "-o", "yaml"]).unwrap();
        assert_eq!(cli.output, OutputFormat::Yaml);
    }
}
