//! `upramp rollout` (owned by the rollout work; placeholder until it lands).

use crate::exit::{CliError, CliResult};

/// Subcommands of `upramp rollout`.
#[derive(Debug, clap::Subcommand)]
pub enum RolloutCommand {
    /// Show the rollout state.
    Status,
}

/// Run `upramp rollout`.
pub fn run(_cmd: RolloutCommand) -> CliResult {
    Err(CliError::usage(anyhow::anyhow!("rollout is not available in this build yet")))
}
