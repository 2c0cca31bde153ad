//! `upramp mock` (owned by the harness work; placeholder until it lands).

use crate::exit::{CliError, CliResult};

/// Arguments of `upramp mock`.
#[derive(Debug, clap::Args)]
pub struct MockArgs {}

/// Run `upramp mock`.
pub fn run(_args: MockArgs) -> CliResult {
    Err(CliError::usage(anyhow::anyhow!("mock is not available in this build yet")))
}
