//! `upramp flags` (owned by the flags work; placeholder until it lands).

use crate::exit::{CliError, CliResult};

/// Subcommands of `upramp flags`.
#[derive(Debug, clap::Subcommand)]
pub enum FlagsCommand {
    /// Show the effective configuration.
    Show,
}

/// Run `upramp flags`.
pub fn run(_cmd: FlagsCommand) -> CliResult {
    Err(CliError::usage(anyhow::anyhow!("flags is not available in this build yet")))
}
