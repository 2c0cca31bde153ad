//! `cargo xtask bench` (owned by the benchmark work; placeholder until it lands).

use std::process::ExitCode;

/// Options of `cargo xtask bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Every scenario at a small size; asserts no speed.
    #[arg(long)]
    pub quick: bool,
}

/// Run the benchmarks.
pub fn run(_args: BenchArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("bench is not available in this build yet")
}
