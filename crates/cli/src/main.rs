//! `upramp`: upload files to LLM providers, inspect feature flags, operate a staged rollout and run
//! provider stand-ins.
//!
//! Each subcommand lives in its own module; they share only the exit-code convention in [`exit`]:
//! 0 success, 1 failed work, 2 bad usage or configuration. Every error is printed as one line on stderr.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod exit;
mod flags_cmd;
mod mock_cmd;
mod rollout_cmd;
mod serve;
mod upload_cmd;

/// Move file uploads to LLM providers from a blocking path to a streaming one, safely.
#[derive(Debug, Parser)]
#[command(name = "upramp", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Upload files through the flag-routed async or sync path and print one receipt per file.
    Upload(upload_cmd::UploadArgs),
    /// Show the effective flag configuration or evaluate routing keys.
    #[command(subcommand)]
    Flags(flags_cmd::FlagsCommand),
    /// Operate a staged percentage rollout from its state file.
    #[command(subcommand)]
    Rollout(rollout_cmd::RolloutCommand),
    /// Run a Kimi or GLM provider stand-in on loopback until interrupted.
    Mock(mock_cmd::MockArgs),
    /// Run the OpenAI-compatible files gateway in front of one provider until SIGTERM/SIGINT.
    Serve(serve::ServeArgs),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            // clap prints help and version to stdout with exit 0, usage errors to stderr with exit 2.
            let _ = err.print();
            return ExitCode::from(if err.use_stderr() { 2 } else { 0 });
        }
    };
    let result = match cli.command {
        Command::Upload(args) => upload_cmd::run(args),
        Command::Flags(cmd) => flags_cmd::run(cmd),
        Command::Rollout(cmd) => rollout_cmd::run(cmd),
        Command::Mock(args) => mock_cmd::run(args),
        Command::Serve(args) => serve::run(args),
    };
    exit::finish(result)
}
