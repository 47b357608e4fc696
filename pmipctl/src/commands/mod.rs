//! One module per subcommand group. `mh` works offline on Mobility Header bytes; `bindings`,
//! `stats`, `policy` and `mags` talk to the LMA, `mag` to a MAG; `completion` prints a shell's
//! completion script. Each group has an `Args` struct, a
//! variant in [`Command`] and an arm in [`run`].

use std::future::Future;
use std::io::{Read, Write};

use clap::Subcommand;

use crate::client::ConnectArgs;
use crate::{CliError, OutputFormat};

pub mod bindings;
pub mod mag;
pub mod mags;
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
    /// The MAGs the LMA knows: heartbeat state and since when, bindings, restarts.
    Mags(mags::MagsArgs),
    /// A MAG: its binding update list, attachments, handovers and counters.
    Mag(mag::MagArgs),
    /// Print a completion script for a shell.
    #[command(after_help = "Examples:\n  \
        pmipctl completion bash > /etc/bash_completion.d/pmipctl\n  \
        pmipctl completion zsh > \"${fpath[1]}/_pmipctl\"\n  \
        pmipctl completion fish > ~/.config/fish/completions/pmipctl.fish")]
    Completion(CompletionArgs),
}

#[derive(Debug, clap::Args)]
pub struct CompletionArgs {
    #[arg(value_enum)]
    pub shell: Shell,
}

/// The shells `pmipctl completion` writes for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

fn completion(args: CompletionArgs, io: &mut Io<'_>) -> Result<(), CliError> {
    use clap::CommandFactory;
    let shell = match args.shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut crate::Cli::command(), "pmipctl", &mut script);
    io.stdout.write_all(&script)?;
    io.stdout.flush()?;
    Ok(())
}

/// Where a command reads and writes: the process's standard streams, or buffers in tests.
pub struct Io<'a> {
    pub stdin: &'a mut dyn Read,
    pub stdout: &'a mut dyn Write,
    /// Notes for people that are not the command's output (a stream that reconnects).
    pub stderr: &'a mut dyn Write,
    pub output: OutputFormat,
    /// Tables without their heading line.
    pub no_headers: bool,
}

impl Io<'_> {
    /// How tables are written.
    pub fn style(&self) -> crate::show::Style {
        crate::show::Style {
            wide: self.output == OutputFormat::Wide,
            headers: !self.no_headers,
        }
    }
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
        Command::Mags(args) => block_on(mags::run(args, conn, io)),
        Command::Mag(args) => block_on(mag::run(args, conn, io)),
        Command::Completion(args) => completion(args, io),
    }
}
