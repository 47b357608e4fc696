//! Errors of the command line, each with its exit code.

use std::process::ExitCode;

/// What went wrong, and so which exit code `pmipctl` ends with.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Malformed input: a message, hex text, capture or profile file that cannot be decoded.
    /// Exit code 2.
    #[error("{0}")]
    Malformed(String),
    /// A request that makes no sense (clap reports most of these itself). Exit code 2.
    #[error("{0}")]
    Usage(String),
    /// The daemon answered with a gRPC error: `NOT_FOUND: mn1@example.org has no binding`.
    /// The status code is written by its gRPC name. Exit code 1.
    #[error("{}: {message}", crate::client::code_name(*code))]
    Grpc { code: tonic::Code, message: String },
    /// No connection to `url` could be made. Exit code 1.
    #[error("cannot reach {url}: {reason}")]
    Unreachable { url: String, reason: String },
    /// The connection to `url` broke during a call. Exit code 1.
    #[error("the connection to {url} failed: {reason}")]
    Connection { url: String, reason: String },
    /// Anything else: a file that cannot be read, a broken output. Exit code 1.
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl CliError {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            CliError::Malformed(_) | CliError::Usage(_) => ExitCode::from(2),
            CliError::Grpc { .. }
            | CliError::Unreachable { .. }
            | CliError::Connection { .. }
            | CliError::Other(_) => ExitCode::from(1),
        }
    }

    /// True when the error is only that standard output was closed (`pmipctl ... | head`).
    pub fn is_broken_pipe(&self) -> bool {
        match self {
            CliError::Other(e) => e.chain().any(|cause| {
                cause
                    .downcast_ref::<std::io::Error>()
                    .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
            }),
            _ => false,
        }
    }
}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> Self {
        CliError::Other(e.into())
    }
}
