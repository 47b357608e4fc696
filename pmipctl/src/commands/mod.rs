//! One module per subcommand group. `mh` works offline on Mobility Header bytes; `bindings`,
//! `stats` and `policy` talk to the LMA, `mag` to a MAG. Each group has an `Args` struct, a
//! variant in [`Command`] and an arm in [`run`].

use std::future::Future;
use std::io::{Read, Write};

use clap::Subcommand;

use crate::client::ConnectArgs;
use crate::{CliError, OutputFormat};

pub mod bindings;
pub mod mag;
pub mod mh;
pub mod policy;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Mobility Header tools: decode messages from hex or from a capture.
    Mh(mh::MhArgs),
    /// The LMA's binding cache: list, get, watch and revoke bindings.
    Bindings(bindings::BindingsArgs),
    /// The LMA's counters and identity.
    Stats,
    /// The LMA's policy: mobile node profiles and authorized MAGs.
    Policy(policy::PolicyArgs),
    /// A MAG: its binding update list, attachments, handovers and counters.
    Mag(mag::MagArgs),
}

/// Where a command reads and writes: the process's standard streams, or buffers in tests.
pub struct Io<'a> {
    pub stdin: &'a mut dyn Read,
    pub stdout: &'a mut dyn Write,
    /// Notes for people that are not the command's output (a stream that reconnects).
    pub stderr: &'a mut dyn Write,
    pub output: OutputFormat,
}

impl std::fmt::Debug for Io<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Io").field("output", &self.output).finish()
    }
}

/// Runs `fut` to completion on a runtime of its own: one thread is plenty for a client.
fn block_on<T>(fut: impl Future<Output = Result<T, CliError>>) -> Result<T, CliError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Other(anyhow::anyhow!("cannot start the async runtime: {e}")))?;
    rt.block_on(fut)
}

pub fn run(command: Command, conn: &ConnectArgs, io: &mut Io<'_>) -> Result<(), CliError> {
    match command {
        Command::Mh(args) => mh::run(args, io),
        Command::Bindings(args) => block_on(bindings::run(args, conn, io)),
        Command::Stats => block_on(bindings::stats(conn, io)),
        Command::Policy(args) => block_on(policy::run(args, conn, io)),
        Command::Mag(args) => block_on(mag::run(args, conn, io)),
    }
}
