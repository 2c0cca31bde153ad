//! `upramp upload`: upload files through the flag-routed async or sync path, one receipt per file.
//!
//! Flags come from the `ASYNC_UPLOAD_*` environment and the TOML file named by `--flags-file` (or
//! `UPRAMP_FLAGS_FILE`). The API key is read from `--key-env` (default: the provider's conventional
//! variable) and never printed. Receipts go to stdout (one JSON object per line with `--json`),
//! errors to stderr, one line per failed file; progress is drawn only when stderr is a terminal.

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{anyhow, Context};
use serde::Serialize;
use upramp_flags::{EnvSource, FlagSources, FlagStore, FLAGS_FILE_ENV};
use upramp_providers::{ApiKey, ClientConfig, ProviderClient, ProviderKind, Region};
use upramp_telemetry::{FanOut, PrometheusObserver, TracingObserver, UploadObserver};
use upramp_uploader::{Receipt, UploadRequest, Uploader};

use crate::exit::{CliError, CliResult};

/// Arguments of `upramp upload`.
#[derive(Debug, clap::Args)]
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
    /// The upload purpose.
    #[arg(long, value_name = "P", default_value = "file-extract")]
    pub purpose: String,
    /// Environment variable holding the API key (default: MOONSHOT_API_KEY, ZHIPUAI_API_KEY or
    /// OPENAI_API_KEY).
    #[arg(long, value_name = "VAR")]
    pub key_env: Option<String>,
    /// Routing key for the flag (default: derived from each file's path and size).
    #[arg(long, value_name = "K")]
    pub routing_key: Option<String>,
    /// Async uploads in flight at once (the sync path stays one at a time).
    #[arg(long, value_name = "N", default_value_t = 8)]
    pub concurrency: usize,
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

/// A receipt as printed with `--json`: the provider's `id` first, then the receipt's fields.
#[derive(Serialize)]
struct JsonReceipt<'a> {
    id: &'a str,
    #[serde(flatten)]
    receipt: &'a Receipt,
}

/// Run `upramp upload`.
pub fn run(args: UploadArgs) -> CliResult {
    if args.concurrency == 0 {
        return Err(CliError::usage(anyhow!(
            "--concurrency must be at least 1, got 0"
        )));
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
    let client = ProviderClient::new(config).map_err(CliError::usage)?;
    let flags = load_flags(args.flags_file.clone())?;
    init_logs()?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
        .map_err(CliError::work)?;
    runtime.block_on(upload_all(args, client, flags))
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
        .map(|path| UploadRequest {
            path: path.clone(),
            purpose: args.purpose.clone(),
            routing_key: args.routing_key.clone(),
            filename: None,
        })
        .collect();
    let total = requests.len();
    let progress = progress_bar(total as u64);
    let mut failed = 0usize;
    // One task per file: the uploader's own semaphores bound how many run (and the sync path
    // stays one at a time); the set yields them as they finish and aborts the rest if dropped.
    let mut results = tokio::task::JoinSet::new();
    for request in requests {
        let uploader = uploader.clone();
        results.spawn(async move { uploader.upload(request).await });
    }
    let stdout = std::io::stdout();
    while let Some(joined) = results.join_next().await {
        let result = joined
            .context("an upload task failed")
            .map_err(CliError::work)?;
        match result {
            Ok(receipt) => {
                let line = if args.json {
                    serde_json::to_string(&JsonReceipt {
                        id: receipt.id(),
                        receipt: &receipt,
                    })
                    .context("cannot encode the receipt")
                    .map_err(CliError::work)?
                } else {
                    human_line(&receipt)
                };
                let printed = match &progress {
                    Some(bar) => bar.suspend(|| writeln!(stdout.lock(), "{line}")),
                    None => writeln!(stdout.lock(), "{line}"),
                };
                printed
                    .context("cannot write to stdout")
                    .map_err(CliError::work)?;
            }
            Err(err) => {
                failed += 1;
                let line = format!("upramp: error: {err}").replace(['\n', '\r'], " ");
                match &progress {
                    Some(bar) => bar.suspend(|| eprintln!("{line}")),
                    None => eprintln!("{line}"),
                }
            }
        }
        if let Some(bar) = &progress {
            bar.inc(1);
        }
    }
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    if failed == 0 {
        Ok(())
    } else {
        Err(CliError::work(anyhow!(
            "{failed} of {total} file(s) failed to upload"
        )))
    }
}

fn human_line(receipt: &Receipt) -> String {
    let mut line = format!(
        "{}: id={} bytes={} sha256={} path={} attempts={} duration={:.1}ms",
        receipt.source.display(),
        receipt.id(),
        receipt.bytes,
        receipt.sha256,
        receipt.path,
        receipt.attempts,
        receipt.duration.as_secs_f64() * 1_000.0,
    );
    if let Some(reason) = receipt.fallback_reason {
        line.push_str(&format!(" fallback_reason={reason}"));
    }
    if receipt.adopted {
        line.push_str(" adopted=true");
    }
    line
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
