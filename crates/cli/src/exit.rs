//! The exit-code convention shared by every subcommand: 0 ok, 1 failed work, 2 bad usage or config.

use std::fmt;
use std::process::ExitCode;

/// Why a subcommand failed, which decides its exit code.
#[derive(Debug)]
pub enum CliError {
    /// Bad usage or configuration (exit 2): a malformed argument, env value, config or state file.
    Usage(anyhow::Error),
    /// The work itself failed (exit 1): an upload that did not succeed, a provider that refused.
    Work(anyhow::Error),
}

impl CliError {
    /// Bad usage or configuration: exit 2.
    pub fn usage(err: impl Into<anyhow::Error>) -> Self {
        Self::Usage(err.into())
    }

    /// Failed work: exit 1.
    pub fn work(err: impl Into<anyhow::Error>) -> Self {
        Self::Work(err.into())
    }

    fn code(&self) -> u8 {
        match self {
            Self::Usage(_) => 2,
            Self::Work(_) => 1,
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (Self::Usage(err) | Self::Work(err)) = self;
        // `{:#}` joins the context chain with ": ", keeping the message on one line.
        let one_line = format!("{err:#}").replace(['\n', '\r'], " ");
        f.write_str(&one_line)
    }
}

/// Result of a subcommand.
pub type CliResult = Result<(), CliError>;

/// Print a failure as one line on stderr and turn the result into the process exit code.
pub fn finish(result: CliResult) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("upramp: error: {err}");
            ExitCode::from(err.code())
        }
    }
}
