//! `upramp serve`: a long-running, OpenAI-compatible files gateway in front of one provider.
//!
//! Built only from the crates' public API, so it doubles as the reference for embedding them:
//! a [`ProviderClient`] and its blocking view feed an [`Uploader`] routed by a [`FlagStore`] that
//! watches `--flags-file`; a [`PrometheusObserver`] and a [`TracingObserver`] see every upload.
//!
//! - Routes: `POST /v1/files` (multipart `file` + `purpose`), `GET /v1/files`, `GET /v1/files/{id}`,
//!   `GET /v1/files/{id}/content`, `DELETE /v1/files/{id}`; `GET /metrics`, `/healthz`, `/readyz`
//!   (these three need no token, so probes and Prometheus can reach them).
//! - Routing key: the `X-Upramp-Routing-Key` header, else `addr:<client IP>` (one cohort per client
//!   host; set the header behind a proxy, where every request comes from the proxy's address).
//! - Receipt headers: `X-Upramp-Path`, `X-Upramp-Attempts`, `X-Upramp-Upload-Ms`,
//!   `X-Upramp-Receive-Ms` (time spent receiving the body), `X-Upramp-Routing`, `X-Upramp-Sha256`,
//!   and `X-Upramp-Fallback-Reason` / `X-Upramp-Adopted` when they apply.
//! - Timeouts: a client that sends no body bytes for `--body-timeout` (60 s) gets 408 and nothing
//!   is sent on. Each attempt at the provider gets the flag's `timeout_secs` plus 1 s per MiB
//!   (live, up or down: the gateway's floor is 1 s, not the library's 30 s), and is cut sooner
//!   by the uploader's connect (10 s) and stall (30 s) limits. The whole upload, from its body's
//!   last byte, waits for a concurrency slot included, gets `--upload-timeout`, or by default the
//!   uploader's derived deadline for its size and the flag ([`Timeouts::deadline_for`]); it wins
//!   over the flag. Past it the client gets 504; `X-Upramp-Outcome: unknown` (code
//!   `outcome_unknown`) says the provider may hold the file although no receipt names it.
//! - Shutdown: the first SIGTERM or SIGINT turns `/readyz` to 503, stops accepting, lets requests
//!   in progress finish within `--grace` and exits 0 (1 if some had to be cut); a second signal
//!   exits 1 at once. Spool files are removed in every case.
//!
//! The first stdout line is `listening on http://ADDR` once the socket accepts connections.

mod auth;
mod errors;
mod files;
mod http;
mod metrics;
mod response;
mod spool;
mod upload;

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;
use upramp_flags::{EnvSource, FlagSources, FlagStore};
use upramp_providers::{ApiKey, ClientConfig, Limits, ProviderClient, ProviderKind, Region};
use upramp_telemetry::{FanOut, MetricsHandle, PrometheusObserver, TracingObserver};
use upramp_uploader::{Timeouts, Uploader};

use self::auth::ClientTokens;
use self::metrics::GatewayMetrics;
use self::spool::Spool;
use crate::exit::{CliError, CliResult};

/// Arguments of `upramp serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on, e.g. 127.0.0.1:8080 (port 0 picks a free one). A non-loopback address
    /// needs --client-token-env.
    #[arg(long, value_name = "ADDR")]
    pub listen: String,
    /// The provider behind the gateway: kimi, glm or openai.
    #[arg(long, value_name = "kimi|glm|openai")]
    pub provider: String,
    /// The provider's API root (default: its international endpoint; required for openai).
    #[arg(long, value_name = "URL")]
    pub base_url: Option<String>,
    /// Environment variable holding the provider API key (default: MOONSHOT_API_KEY,
    /// ZHIPUAI_API_KEY or OPENAI_API_KEY).
    #[arg(long, value_name = "VAR")]
    pub key_env: Option<String>,
    /// Flags file (TOML), watched and reloaded on change (a Kubernetes ConfigMap mount works);
    /// default: $UPRAMP_FLAGS_FILE if set. ASYNC_UPLOAD_* variables override it.
    #[arg(long, value_name = "F")]
    pub flags_file: Option<PathBuf>,
    /// Environment variable holding the client bearer token(s), comma-separated; without it the
    /// gateway takes no token and may only listen on loopback.
    #[arg(long, value_name = "VAR")]
    pub client_token_env: Option<String>,
    /// Directory for request bodies in transit (default: a free one under $TMPDIR/upramp-serve/).
    /// One gateway per directory; stale files in it are removed at start.
    #[arg(long, value_name = "DIR")]
    pub spool_dir: Option<PathBuf>,
    /// Bytes the spool may hold at once; an upload that finds it full gets 503 with Retry-After.
    #[arg(long, value_name = "N", default_value_t = 4 * 1024 * 1024 * 1024)]
    pub max_spool_bytes: u64,
    /// Async uploads in flight to the provider at once.
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub concurrency: usize,
    /// Sync (legacy) uploads in flight at once.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub sync_concurrency: usize,
    /// How long requests in progress may take to finish after SIGTERM/SIGINT (e.g. 30s, 500ms, 2m).
    #[arg(long, value_name = "DURATION", default_value = "30s")]
    pub grace: String,
    /// The longest an upload may take from its body's last byte to its answer, waits for a
    /// concurrency slot, retries, fallback and dedupe lookups included; past it the client gets
    /// 504 (with `X-Upramp-Outcome: unknown` when the provider may hold the file). Default: derived
    /// per request from the flag (retries, fallback, `timeout_secs`) and the file's size. The flag's
    /// `timeout_secs` still bounds each attempt; this bounds the whole request, and wins.
    #[arg(long, value_name = "DURATION")]
    pub upload_timeout: Option<String>,
    /// A client that sends no body bytes for this long is answered 408 and nothing is sent on.
    #[arg(long, value_name = "DURATION", default_value = "60s")]
    pub body_timeout: String,
}

/// Everything a request handler needs.
pub struct Gateway {
    uploader: Uploader,
    provider: Arc<ProviderClient>,
    limits: Limits,
    max_file_bytes: u64,
    key: ApiKey,
    tokens: Option<ClientTokens>,
    flags: FlagStore,
    spool: Arc<Spool>,
    exposition: MetricsHandle,
    metrics: GatewayMetrics,
    draining: AtomicBool,
    /// The uploader's timeouts, to derive each request's deadline the same way it does.
    timeouts: Timeouts,
    body_timeout: Duration,
}

/// The lowest per-attempt total the gateway's uploader allows, so the flag's `timeout_secs`
/// (at least 1 s) sets each attempt's budget both ways: an operator can tighten it live, not only
/// loosen it.
const ATTEMPT_FLOOR: Duration = Duration::from_secs(1);

impl Gateway {
    fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The largest file any purpose accepts.
    fn max_file_bytes(&self) -> u64 {
        self.max_file_bytes
    }

    fn provider_name(&self) -> &str {
        self.provider.config().name.as_str()
    }
}

/// The validated configuration.
struct Config {
    listen: SocketAddr,
    client: ProviderClient,
    key: ApiKey,
    flags: FlagStore,
    watch_flags: bool,
    tokens: Option<ClientTokens>,
    spool_dir: Option<PathBuf>,
    max_spool_bytes: u64,
    concurrency: usize,
    sync_concurrency: usize,
    grace: Duration,
    upload_timeout: Option<Duration>,
    body_timeout: Duration,
}

/// Run `upramp serve`.
pub fn run(args: ServeArgs) -> CliResult {
    let config = configure(args)?;
    upramp_telemetry::init_tracing(upramp_telemetry::LogFormat::Human).map_err(CliError::usage)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
        .map_err(CliError::work)?;
    let result = runtime.block_on(serve(config));
    // Uploads cut at the end of the grace period may still sit on blocking threads.
    runtime.shutdown_timeout(Duration::from_secs(1));
    result
}

fn configure(args: ServeArgs) -> Result<Config, CliError> {
    let usage = |message: String| CliError::usage(anyhow!(message));
    let listen: SocketAddr = args.listen.parse().map_err(|_| {
        usage(format!(
            "--listen {:?}: expected IP:PORT, e.g. 127.0.0.1:8080",
            args.listen
        ))
    })?;
    let kind: ProviderKind = args
        .provider
        .parse()
        .map_err(|err| usage(format!("--provider {:?}: {err}", args.provider)))?;
    for (name, value) in [
        ("--concurrency", args.concurrency),
        ("--sync-concurrency", args.sync_concurrency),
    ] {
        if value == 0 {
            return Err(usage(format!("{name} must be at least 1, got 0")));
        }
    }
    if args.max_spool_bytes == 0 {
        return Err(usage("--max-spool-bytes must be at least 1, got 0".into()));
    }
    let grace = parse_duration(&args.grace).ok_or_else(|| {
        usage(format!(
            "--grace {:?}: expected a duration like 30s, 500ms or 2m",
            args.grace
        ))
    })?;
    let positive = |name: &str, text: &str| {
        parse_duration(text)
            .filter(|d| !d.is_zero())
            .ok_or_else(|| {
                usage(format!(
                    "{name} {text:?}: expected a duration above zero like 30s, 500ms or 2m"
                ))
            })
    };
    let upload_timeout = args
        .upload_timeout
        .as_deref()
        .map(|text| positive("--upload-timeout", text))
        .transpose()?;
    let body_timeout = positive("--body-timeout", &args.body_timeout)?;
    let tokens = match &args.client_token_env {
        Some(var) => {
            let value = std::env::var(var).map_err(|_| {
                usage(format!(
                    "--client-token-env {var}: the variable is not set (or not UTF-8)"
                ))
            })?;
            Some(ClientTokens::parse(&value).ok_or_else(|| {
                usage(format!(
                    "--client-token-env {var}: the variable holds no token"
                ))
            })?)
        }
        None => None,
    };
    if tokens.is_none() && !listen.ip().is_loopback() {
        return Err(usage(format!(
            "--listen {listen}: refusing a non-loopback address without --client-token-env (anyone who can reach it could upload with the provider key)"
        )));
    }
    let key_env = args
        .key_env
        .clone()
        .unwrap_or_else(|| kind.default_key_env().to_owned());
    let key = ApiKey::from_env(&key_env).map_err(CliError::usage)?;
    let client_config = match (kind, args.base_url.as_deref()) {
        (ProviderKind::OpenAi, None) => {
            return Err(usage(
                "--provider openai needs --base-url (there is no default endpoint)".into(),
            ))
        }
        (_, Some(url)) => ClientConfig::new(kind, url, key.clone()),
        (_, None) => ClientConfig::new(
            kind,
            Region::International.base_url(kind).unwrap_or_default(),
            key.clone(),
        ),
    };
    let client = ProviderClient::new(client_config).map_err(CliError::usage)?;
    let flags_file = args.flags_file.clone().or_else(|| {
        std::env::var_os(upramp_flags::FLAGS_FILE_ENV)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    });
    let mut sources = FlagSources::async_upload();
    let watch_flags = flags_file.is_some();
    if let Some(file) = flags_file {
        sources = sources.with_file(file);
    }
    let flags = FlagStore::from_sources(sources, EnvSource::process()).map_err(CliError::usage)?;
    Ok(Config {
        listen,
        client,
        key,
        flags,
        watch_flags,
        tokens,
        spool_dir: args.spool_dir,
        max_spool_bytes: args.max_spool_bytes,
        concurrency: args.concurrency,
        sync_concurrency: args.sync_concurrency,
        grace,
        upload_timeout,
        body_timeout,
    })
}

/// `30s`, `500ms`, `2m`, or a bare number of seconds.
fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let seconds = match unit {
        "" | "s" => number,
        "ms" => number / 1_000.0,
        "m" => number * 60.0,
        _ => return None,
    };
    (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds))
}

async fn serve(config: Config) -> CliResult {
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("--listen {}: cannot bind", config.listen))
        .map_err(CliError::usage)?;
    let local = listener
        .local_addr()
        .context("cannot read the bound address")
        .map_err(CliError::work)?;
    let (spool, stale) = Spool::open(config.spool_dir.as_deref(), config.max_spool_bytes)
        .map_err(CliError::usage)?;
    if stale > 0 {
        tracing::info!(target: "upramp::serve", removed = stale, dir = %spool.dir().display(), "removed stale spool files");
    }
    let exposition = upramp_telemetry::install().map_err(CliError::work)?;
    let _watch = if config.watch_flags {
        Some(config.flags.watch_file().map_err(CliError::usage)?)
    } else {
        None
    };
    let observer = FanOut::new()
        .with(Arc::new(TracingObserver::new()))
        .with(Arc::new(PrometheusObserver::new()));
    let provider = Arc::new(config.client);
    let blocking = provider.blocking();
    let timeouts = Timeouts {
        total_floor: ATTEMPT_FLOOR,
        deadline: config.upload_timeout,
        ..Timeouts::default()
    };
    let uploader = Uploader::builder(provider.clone(), Arc::new(blocking))
        .flags(config.flags.clone())
        .observer(Arc::new(observer))
        .concurrency(config.concurrency)
        .sync_concurrency(config.sync_concurrency)
        .timeouts(timeouts)
        .build()
        .map_err(CliError::usage)?;
    let limits = provider.config().limits.clone();
    let max_file_bytes = limits
        .purposes()
        .filter_map(|purpose| limits.get(purpose).map(|l| l.max_bytes))
        .max()
        .unwrap_or(0);
    let gateway = Arc::new(Gateway {
        uploader,
        provider,
        limits,
        max_file_bytes,
        key: config.key,
        tokens: config.tokens,
        flags: config.flags,
        spool: Arc::clone(&spool),
        exposition,
        metrics: GatewayMetrics::default(),
        draining: AtomicBool::new(false),
        timeouts,
        body_timeout: config.body_timeout,
    });

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let mut terminate = signal(SignalKind::terminate())
        .context("cannot listen for SIGTERM")
        .map_err(CliError::work)?;
    let mut interrupt = signal(SignalKind::interrupt())
        .context("cannot listen for SIGINT")
        .map_err(CliError::work)?;

    {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "listening on http://{local}")
            .and_then(|()| stdout.flush())
            .context("cannot write to stdout")
            .map_err(CliError::work)?;
    }
    tracing::info!(target: "upramp::serve", addr = %local, provider = gateway.provider_name(), spool = %spool.dir().display(), "gateway listening");

    let accepting = tokio::spawn(http::accept_loop(
        listener,
        Arc::clone(&gateway),
        shutdown_rx,
    ));
    tokio::select! {
        _ = terminate.recv() => {}
        _ = interrupt.recv() => {}
    }
    // Readiness first, then stop accepting, then drain.
    gateway.draining.store(true, Ordering::SeqCst);
    tracing::info!(target: "upramp::serve", grace_ms = config.grace.as_millis() as u64, "shutting down: draining requests in progress");
    let _ = shutdown_tx.send(true);
    let mut connections = accepting
        .await
        .context("the accept loop failed")
        .map_err(CliError::work)?;
    let drain = async { while connections.join_next().await.is_some() {} };
    let second_signal = async {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
    };
    let outcome = tokio::select! {
        () = drain => Ok(()),
        () = tokio::time::sleep(config.grace) => {
            let open = connections.len();
            connections.abort_all();
            Err(CliError::work(anyhow!(
                "grace period of {:?} over with {open} connection(s) still busy; they were cut",
                config.grace
            )))
        }
        () = second_signal => {
            connections.abort_all();
            Err(CliError::work(anyhow!("second signal: exiting at once")))
        }
    };
    // Cut requests drop their spool files; sweep anything left all the same.
    drop(connections);
    spool.sweep();
    if outcome.is_ok() {
        tracing::info!(target: "upramp::serve", "gateway stopped");
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("5"), Some(Duration::from_secs(5)));
        assert_eq!(parse_duration("5h"), None);
        assert_eq!(parse_duration("s"), None);
        assert_eq!(parse_duration("-1s"), None);
    }
}
