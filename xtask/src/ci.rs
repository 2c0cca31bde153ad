//! `cargo xtask ci`: the checks every change must pass, in the order that fails fastest.

use std::process::{Command, ExitCode};

use anyhow::Context;

/// Run formatting, clippy and the tests; stop at the first failure.
pub fn run() -> anyhow::Result<ExitCode> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let steps: [&[&str]; 3] = [
        &["fmt", "--all", "--", "--check"],
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
        &["test", "--workspace"],
    ];
    for step in steps {
        eprintln!("xtask ci: cargo {}", step.join(" "));
        let status = Command::new(&cargo)
            .args(step)
            .status()
            .with_context(|| format!("could not start `cargo {}`", step.join(" ")))?;
        if !status.success() {
            eprintln!("xtask ci: `cargo {}` failed", step.join(" "));
            return Ok(ExitCode::FAILURE);
        }
    }
    eprintln!("xtask ci: all checks passed");
    Ok(ExitCode::SUCCESS)
}
