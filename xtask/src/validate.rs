//! `cargo xtask validate` (owned by the validation work; placeholder until it lands).

use std::process::ExitCode;

/// Options of `cargo xtask validate`.
#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    /// Less traffic, same checks.
    #[arg(long)]
    pub quick: bool,
}

/// Run the validation.
pub fn run(_args: ValidateArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("validate is not available in this build yet")
}
