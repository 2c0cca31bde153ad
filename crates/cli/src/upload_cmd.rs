//! `upramp upload`: upload files through the flag-routed async or sync path, one line per file.
//!
//! Flags come from the `ASYNC_UPLOAD_*` environment and the TOML file named by `--flags-file` (or
//! `UPRAMP_FLAGS_FILE`). The API key is read from `--key-env` (default: the provider's conventional
//! variable) and never printed. Receipts go to stdout (one JSON object per line with `--json`),
//! errors to stderr, one line per failed file; progress is drawn only when stderr is a terminal.
//! Every file gets exactly one line, also when a signal or a closed stdout stops the batch early
//! (see [`batch`]): a receipt that stdout cannot take is printed on stderr after
//! `upramp: receipt: `.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context};
use upramp_flags::{EnvSource, FlagSources, FlagStore, FLAGS_FILE_ENV};
use upramp_providers::{ApiKey, ClientConfig, ProviderClient, ProviderKind, Region};
use upramp_telemetry::{FanOut, PrometheusObserver, TracingObserver, UploadObserver};
use upramp_uploader::{UploadRequest, Uploader};

use crate::exit::{CliError, CliResult};

mod batch;
mod report;

/// What the exit status of `upramp upload` means (shown by `--help`).
const EXIT_STATUS_HELP: &str = "\
Exit status:
  0        every file was uploaded
  1        a file failed, or stdout could not be written (the receipts it could not take are
           printed on stderr, after `upramp: receipt: `)
  2        bad usage or configuration; nothing was uploaded
  130/143  stopped by SIGINT/SIGTERM

On SIGINT or SIGTERM no further upload starts, those in flight get --grace to finish, and a second
signal stops them at once. Every file still gets one line: its receipt, its error, `not started`,
or `interrupted in flight ... outcome unknown` for an upload cut off before its answer arrived.";

/// Arguments of `upramp upload`.
#[derive(Debug, clap::Args)]
#[command(after_help = EXIT_STATUS_HELP)]
pub struct UploadArgs {
    /// Files to upload.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// The provider: kimi, glm or openai.
    #[arg(long, value_name = "kimi|glm|openai")]
    pub provider: String,
    /// The API root (default: the provider's international endpoint; required for openai).
    #[arg(long, value_name = "URL")]
    pub base_url: Option<String>,
    /// The upload purpose; one the provider accepts (kimi: file-extract, image, video, batch).
    #[arg(long, value_name = "P", default_value = "file-extract")]
    pub purpose: String,
    /// Environment variable holding the API key (default: MOONSHOT_API_KEY, ZHIPUAI_API_KEY or
    /// OPENAI_API_KEY).
    #[arg(long, value_name = "VAR")]
    pub key_env: Option<String>,
    /// Routing key for the flag, not empty (default: derived from each file's path and size).
    #[arg(long, value_name = "K")]
    pub routing_key: Option<String>,
    /// Uploads in flight at once (the sync path stays one at a time).
    #[arg(long, value_name = "N", default_value_t = 8)]
    pub concurrency: usize,
    /// After SIGINT or SIGTERM, how long the uploads in flight may take to finish (`30s`, `2m`;
    /// `0s` stops them at once).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_grace)]
    pub grace: Duration,
    /// Print one JSON receipt per line.
    #[arg(long)]
    pub json: bool,
    /// Serve Prometheus metrics on this address while uploading.
    #[arg(long, value_name = "ADDR")]
    pub metrics_addr: Option<SocketAddr>,
    /// Flags file (TOML); default: $UPRAMP_FLAGS_FILE if set.
    #[arg(long, value_name = "F")]
    pub flags_file: Option<PathBuf>,
}

fn parse_grace(text: &str) -> Result<Duration, String> {
    upramp_rollout::parse_duration(text).map_err(|err| err.to_string())
}

/// Run `upramp upload`.
pub fn run(args: UploadArgs) -> CliResult {
    if args.concurrency == 0 {
        return Err(CliError::usage(anyhow!(
            "--concurrency must be at least 1, got 0"
        )));
    }
    if let Some(key) = &args.routing_key {
        if key.trim().is_empty() {
            return Err(CliError::usage(anyhow!(
                "--routing-key {key:?}: must not be empty or blank (omit it to derive a key per file)"
            )));
        }
    }
    let kind: ProviderKind = args
        .provider
        .parse()
        .map_err(|err| CliError::usage(anyhow!("--provider {:?}: {err}", args.provider)))?;
    let key_env = args
        .key_env
        .clone()
        .unwrap_or_else(|| kind.default_key_env().to_owned());
    let key = ApiKey::from_env(&key_env).map_err(CliError::usage)?;
    let config = client_config(kind, args.base_url.as_deref(), key, &args.purpose)?;
    check_purpose(&config, &args.purpose)?;
    let client = ProviderClient::new(config).map_err(CliError::usage)?;
    let flags = load_flags(args.flags_file.clone())?;
    init_logs()?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
        .map_err(CliError::work)?;
    let result = runtime.block_on(upload_all(args, client, flags));
    // A sync attempt cut off in flight keeps its blocking thread until its own timeout; its file is
    // already reported as outcome unknown, so the process does not wait for it.
    runtime.shutdown_background();
    result
}

/// A purpose the provider does not accept is a usage error for the whole command, not a failure
/// of each file.
fn check_purpose(config: &ClientConfig, purpose: &str) -> Result<(), CliError> {
    if config.limits.get(purpose).is_some() {
        return Ok(());
    }
    let allowed: Vec<&str> = config.limits.purposes().collect();
    Err(CliError::usage(anyhow!(
        "--purpose {purpose:?}: not accepted by {} (allowed: {})",
        config.kind,
        allowed.join(", ")
    )))
}

/// Logs on stderr, filtered by `RUST_LOG`; `warn` by default, so a normal run prints receipts and
/// errors only, while `RUST_LOG=info` shows every attempt.
fn init_logs() -> Result<(), CliError> {
    let directives = std::env::var("RUST_LOG")
        .ok()
        .filter(|value| !value.trim().is_empty())
        .unwrap_or_else(|| "warn".to_owned());
    let filter = upramp_telemetry::parse_log_filter(&directives).map_err(CliError::usage)?;
    let ansi = std::io::stderr().is_terminal();
    let subscriber = upramp_telemetry::build_subscriber(
        upramp_telemetry::LogFormat::Human,
        filter,
        std::io::stderr,
        ansi,
    );
    // An already installed subscriber (an embedding process) is fine: logs go there.
    let _ = tracing::subscriber::set_global_default(subscriber);
    Ok(())
}

fn client_config(
    kind: ProviderKind,
    base_url: Option<&str>,
    key: ApiKey,
    purpose: &str,
) -> Result<ClientConfig, CliError> {
    Ok(match (kind, base_url) {
        (ProviderKind::OpenAi, Some(url)) => ClientConfig::openai_compatible(url, key, [purpose]),
        (ProviderKind::OpenAi, None) => {
            return Err(CliError::usage(anyhow!(
                "--provider openai needs --base-url (there is no default endpoint)"
            )))
        }
        (_, Some(url)) => ClientConfig::new(kind, url, key),
        (_, None) => {
            let url = Region::International.base_url(kind).unwrap_or_default();
            ClientConfig::new(kind, url, key)
        }
    })
}

fn load_flags(flags_file: Option<PathBuf>) -> Result<FlagStore, CliError> {
    let file = flags_file.or_else(|| {
        std::env::var_os(FLAGS_FILE_ENV)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    });
    let mut sources = FlagSources::async_upload();
    if let Some(file) = file {
        sources = sources.with_file(file);
    }
    FlagStore::from_sources(sources, EnvSource::process()).map_err(CliError::usage)
}

async fn upload_all(args: UploadArgs, client: ProviderClient, flags: FlagStore) -> CliResult {
    let mut observers = FanOut::new().with(Arc::new(TracingObserver::new()));
    let _metrics_server = match args.metrics_addr {
        Some(addr) => {
            let handle = upramp_telemetry::install().map_err(CliError::work)?;
            let server = handle.serve(addr).await.map_err(CliError::usage)?;
            eprintln!("upramp: metrics on http://{}/metrics", server.local_addr());
            observers.push(Arc::new(PrometheusObserver::new()));
            Some(server)
        }
        None => None,
    };
    let observer: Arc<dyn UploadObserver> = Arc::new(observers);
    let blocking = client.blocking();
    let uploader = Uploader::builder(Arc::new(client), Arc::new(blocking))
        .flags(flags)
        .observer(observer)
        .concurrency(args.concurrency)
        .build()
        .map_err(CliError::usage)?;

    let requests: Vec<UploadRequest> = args
        .files
        .iter()
        .map(|path| {
            let request = UploadRequest::new(path, args.purpose.as_str());
            match &args.routing_key {
                Some(key) => request.routing_key(key.as_str()),
                None => request,
            }
        })
        .collect();
    let total = requests.len();
    let mut report = report::Report::new(args.json, progress_bar(total as u64));
    let ending = batch::run(
        &uploader,
        requests,
        args.concurrency,
        args.grace,
        &mut report,
    )
    .await;
    let stdout_error = report.stdout_error().map(ToString::to_string);
    let tally = report.finish();
    let tally_line = format!(
        "{} uploaded, {} failed, {} outcome unknown, {} not started, of {total} file(s)",
        tally.receipts, tally.failed, tally.unknown, tally.not_started
    );
    match ending? {
        batch::Ending::Interrupted(signal) => Err(CliError::Interrupted(
            signal,
            anyhow!("interrupted by {signal}: {tally_line}"),
        )),
        batch::Ending::OutputFailed => Err(CliError::work(anyhow!(
            "cannot write to stdout ({}): {} receipt(s) printed on stderr instead; {tally_line}",
            stdout_error.unwrap_or_default(),
            tally.receipts_on_stderr
        ))),
        batch::Ending::Complete if tally.failed > 0 => Err(CliError::work(anyhow!(
            "{} of {total} file(s) failed to upload",
            tally.failed
        ))),
        batch::Ending::Complete if tally.receipts_on_stderr > 0 || tally.unknown > 0 => {
            Err(CliError::work(anyhow!("{tally_line}; see the lines above")))
        }
        batch::Ending::Complete => Ok(()),
    }
}

/// A file-count bar on stderr, only when stderr is a terminal (pipes and CI logs stay clean).
fn progress_bar(files: u64) -> Option<indicatif::ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(files);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{spinner} uploading [{bar:30}] {pos}/{len} files {elapsed}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    Some(bar)
}
