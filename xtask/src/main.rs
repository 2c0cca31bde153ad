//! Project automation for upramp, run as `cargo xtask <command>` (an alias in `.cargo/config.toml`).
//!
//! - `validate`: the accelerated five-stage rollout against local provider stand-ins (the main job).
//! - `fleet`: the production loop in real time, as separate processes: a real Prometheus, stand-ins,
//!   three `upramp serve` gateways, `upramp rollout run --prometheus` and a load generator.
//! - `bench`: every performance claim measured side by side in one run.
//! - `ci`: formatting, clippy with `-D warnings`, and the workspace tests, as CI runs them.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod bench;
mod ci;
mod fleet;
mod validate;

#[derive(Debug, Parser)]
#[command(name = "cargo xtask", about = "upramp project automation")]
struct Xtask {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the five-stage rollout end to end against local stand-ins, in compressed time.
    Validate(validate::ValidateArgs),
    /// Run the production loop on real processes: Prometheus, stand-ins, three gateways, the controller.
    Fleet(fleet::FleetArgs),
    /// Measure memory, throughput, latency and flag evaluation side by side.
    Bench(bench::BenchArgs),
    /// Run `cargo fmt --check`, clippy with `-D warnings`, and the workspace tests.
    Ci,
}

fn main() -> ExitCode {
    let args = match Xtask::try_parse() {
        Ok(args) => args,
        Err(err) => {
            let _ = err.print();
            return ExitCode::from(if err.use_stderr() { 2 } else { 0 });
        }
    };
    let result = match args.command {
        Command::Validate(args) => validate::run(args),
        Command::Fleet(args) => fleet::run(&args),
        Command::Bench(args) => bench::run(args),
        Command::Ci => ci::run(),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("xtask: error: {}", format!("{err:#}").replace('\n', " "));
            ExitCode::from(2)
        }
    }
}
