//! One module per subcommand group. `mh` works offline on Mobility Header bytes; the gRPC
//! groups (`bindings`, `policy`, `mag`) go next to it, each as `commands/<group>.rs` with an
//! `Args` struct, a variant in [`Command`] and an arm in [`run`].

use std::io::{Read, Write};

use clap::Subcommand;

use crate::{CliError, OutputFormat};

pub mod mh;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Mobility Header tools: decode messages from hex or from a capture.
    Mh(mh::MhArgs),
}

/// Where a command reads and writes: the process's standard streams, or buffers in tests.
pub struct Io<'a> {
    pub stdin: &'a mut dyn Read,
    pub stdout: &'a mut dyn Write,
    pub output: OutputFormat,
}

impl std::fmt::Debug for Io<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Io").field("output", &self.output).finish()
    }
}

pub fn run(command: Command, io: &mut Io<'_>) -> Result<(), CliError> {
    match command {
        Command::Mh(args) => mh::run(args, io),
    }
}
