//! Errors of the command line, each with its exit code.

use std::process::ExitCode;

/// What went wrong, and so which exit code `pmipctl` ends with.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Malformed input: a message, hex text or capture that cannot be decoded. Exit code 2.
    #[error("{0}")]
    Malformed(String),
    /// A request that makes no sense (clap reports most of these itself). Exit code 2.
    #[error("{0}")]
    Usage(String),
    /// Anything else: a file that cannot be read, a broken output. Exit code 1.
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl CliError {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            CliError::Malformed(_) | CliError::Usage(_) => ExitCode::from(2),
            CliError::Other(_) => ExitCode::from(1),
        }
    }

    /// True when the error is only that standard output was closed (`pmipctl ... | head`).
    pub fn is_broken_pipe(&self) -> bool {
        match self {
            CliError::Other(e) => e
                .downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe),
            _ => false,
        }
    }
}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> Self {
        CliError::Other(e.into())
    }
}
