//! `upramp mock`: run a Kimi or GLM stand-in in the foreground until Ctrl-C or SIGTERM.
//!
//! The first stdout line is the base URL a client uses, alone on its line, so scripts can read it with
//! `head -n1`; everything else goes to stderr.

use std::io::Write;
use std::net::SocketAddr;

use anyhow::Context;
use upramp_harness::{FaultPlan, Flavor, StandIn, StandInConfig, DEFAULT_API_KEY};

use crate::exit::{CliError, CliResult};

/// Arguments of `upramp mock`.
#[derive(Debug, clap::Args)]
pub struct MockArgs {
    /// Provider to imitate: kimi or glm.
    #[arg(long, value_parser = parse_flavor)]
    provider: Flavor,
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    addr: SocketAddr,
    /// Bearer token clients must send.
    #[arg(long, default_value = DEFAULT_API_KEY, hide_default_value = true)]
    api_key: String,
    /// Faults to inject into uploads, e.g. `500:0.1,429:0.05,latency:50ms,reset:0.01@async`.
    /// Kinds: 500, 502, 503, 429, 429-date, quota, 401, stall, reset, drop, malformed (probabilities);
    /// latency, jitter (durations: us, ms, s); bandwidth (bytes/s: b, kb, mb, gb). `@async`/`@sync`
    /// limits an item to requests whose User-Agent names that upload path.
    #[arg(long, default_value = "none")]
    faults: String,
    /// Seed of the fault decisions and file ids.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Kimi's stored-file cap (the account's 1,000 by default); long load runs raise it.
    #[arg(long, value_name = "N")]
    max_files: Option<usize>,
}

fn parse_flavor(name: &str) -> Result<Flavor, String> {
    name.parse::<Flavor>().map_err(|err| err.to_string())
}

/// Run `upramp mock`.
pub fn run(args: MockArgs) -> CliResult {
    let faults = FaultPlan::parse(&args.faults)
        .map_err(|err| CliError::usage(anyhow::anyhow!("--faults: {err}")))?;
    let config = StandInConfig::new(args.provider)
        .with_addr(args.addr)
        .with_api_key(args.api_key)
        .with_faults(faults)
        .with_seed(args.seed);
    let config = match args.max_files {
        Some(max) => config.with_max_files(max),
        None => config,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("could not start the async runtime")
        .map_err(CliError::work)?;
    runtime.block_on(serve(config))
}

async fn serve(config: StandInConfig) -> CliResult {
    let flavor = config.flavor;
    let faults = config.faults.to_string();
    let seed = config.seed;
    let stand_in = StandIn::start(config).await.map_err(CliError::usage)?;
    {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "{}", stand_in.base_url())
            .and_then(|()| stdout.flush())
            .context("could not write the base URL to stdout")
            .map_err(CliError::work)?;
    }
    eprintln!(
        "upramp mock: {flavor} stand-in listening (faults: {faults}, seed: {seed}); Ctrl-C to stop"
    );
    wait_for_signal().await.map_err(CliError::work)?;
    let stats = stand_in.stats();
    stand_in.shutdown().await;
    eprintln!(
        "upramp mock: stopped after {} requests ({} uploads stored, {} dropped after accept)",
        stats.requests, stats.uploads_accepted, stats.uploads_dropped_after_accept
    );
    Ok(())
}

#[cfg(unix)]
async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate()).context("could not listen for SIGTERM")?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result.context("could not listen for Ctrl-C"),
        _ = terminate.recv() => Ok(()),
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() -> anyhow::Result<()> {
    tokio::signal::ctrl_c()
        .await
        .context("could not listen for Ctrl-C")
}
