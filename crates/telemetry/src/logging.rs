//! Structured logs: a tracing observer for upload attempts and a subscriber setup honouring
//! `RUST_LOG`.

use std::fmt;
use std::str::FromStr;

use tracing::Subscriber;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

use crate::event::{EventKind, UploadEvent, UploadPath};
use crate::observer::UploadObserver;
use crate::TelemetryError;

/// The tracing target of upload logs, for filtering (`RUST_LOG=upramp::upload=debug`).
pub const UPLOAD_LOG_TARGET: &str = "upramp::upload";

/// The filter used when `RUST_LOG` is unset or empty.
pub const DEFAULT_LOG_FILTER: &str = "info";

/// Logs each upload attempt as a structured `tracing` event.
///
/// Successful attempts log at `info`, failed ones at `warn`, both with the fields `provider`,
/// `path`, `bytes`, `duration_ms`, `outcome` and `attempt`. Request legs log at `debug` with
/// `fallback_reason` added. Events carry no keys, file names or contents, so none are logged.
#[derive(Debug, Clone, Copy, Default)]
pub struct TracingObserver;

impl TracingObserver {
    /// A new tracing observer.
    pub fn new() -> Self {
        Self
    }
}

impl UploadObserver for TracingObserver {
    fn on_event(&self, event: &UploadEvent) {
        let provider = event.provider.as_str();
        let path = event.path.as_str();
        let outcome = event.outcome.as_str();
        let bytes = event.bytes;
        let attempt = event.attempt;
        // Sub-millisecond precision is kept as a fraction; u128 -> f64 is exact far beyond any upload.
        let duration_ms = event.duration.as_secs_f64() * 1000.0;
        match event.kind {
            EventKind::Attempt if event.outcome.is_success() => tracing::info!(
                target: UPLOAD_LOG_TARGET,
                provider, path, bytes, duration_ms, outcome, attempt,
                "upload attempt succeeded"
            ),
            EventKind::Attempt => tracing::warn!(
                target: UPLOAD_LOG_TARGET,
                provider, path, bytes, duration_ms, outcome, attempt,
                "upload attempt failed"
            ),
            EventKind::Request => {
                let fallback_reason = event.fallback_reason.map(|reason| reason.as_str());
                let queue_ms = event.queue_wait.as_secs_f64() * 1000.0;
                tracing::debug!(
                    target: UPLOAD_LOG_TARGET,
                    provider, path, bytes, duration_ms, queue_ms, outcome, attempts = attempt, fallback_reason,
                    "upload leg finished"
                );
            }
        }
    }

    fn on_in_flight(&self, provider: &str, path: UploadPath, delta: i64) {
        tracing::trace!(target: UPLOAD_LOG_TARGET, provider, path = path.as_str(), delta, "in-flight change");
    }

    fn on_queued(&self, provider: &str, path: UploadPath, delta: i64) {
        tracing::trace!(target: UPLOAD_LOG_TARGET, provider, path = path.as_str(), delta, "queued change");
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Human,
    /// One JSON object per line.
    Json,
}

impl LogFormat {
    /// `human` or `json`.
    pub const fn as_str(self) -> &'static str {
        match self {
            LogFormat::Human => "human",
            LogFormat::Json => "json",
        }
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for LogFormat {
    type Err = TelemetryError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "human" => Ok(LogFormat::Human),
            "json" => Ok(LogFormat::Json),
            _ => Err(TelemetryError::UnknownLogFormat(value.to_owned())),
        }
    }
}

/// Parses a `RUST_LOG`-style filter directive string.
///
/// # Errors
/// [`TelemetryError::InvalidLogFilter`] naming the value.
pub fn parse_log_filter(directives: &str) -> Result<EnvFilter, TelemetryError> {
    EnvFilter::builder()
        .parse(directives)
        .map_err(|err| TelemetryError::InvalidLogFilter {
            value: directives.to_owned(),
            reason: err.to_string(),
        })
}

/// A subscriber writing `format` lines that pass `filter` to `writer`, with ANSI colours in human
/// lines when `ansi` is set (what [`init_tracing`] installs, with stderr as the writer and colours
/// on a terminal only; tests pass a buffer).
pub fn build_subscriber<W>(
    format: LogFormat,
    filter: EnvFilter,
    writer: W,
    ansi: bool,
) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(ansi && format == LogFormat::Human);
    match format {
        LogFormat::Human => Box::new(builder.finish()),
        LogFormat::Json => Box::new(builder.json().flatten_event(true).finish()),
    }
}

/// Installs the global tracing subscriber: `format` lines on stderr, filtered by `RUST_LOG`
/// (default [`DEFAULT_LOG_FILTER`]).
///
/// # Errors
/// [`TelemetryError::InvalidLogFilter`] if `RUST_LOG` is set but does not parse (or is not
/// UTF-8); [`TelemetryError::TracingAlreadyInstalled`] if a global subscriber exists.
pub fn init_tracing(format: LogFormat) -> Result<(), TelemetryError> {
    let directives = match std::env::var(EnvFilter::DEFAULT_ENV) {
        Ok(value) if !value.trim().is_empty() => value,
        Ok(_) | Err(std::env::VarError::NotPresent) => DEFAULT_LOG_FILTER.to_owned(),
        Err(std::env::VarError::NotUnicode(raw)) => {
            return Err(TelemetryError::InvalidLogFilter {
                value: raw.to_string_lossy().into_owned(),
                reason: "not valid UTF-8".to_owned(),
            })
        }
    };
    let filter = parse_log_filter(&directives)?;
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing::subscriber::set_global_default(build_subscriber(format, filter, std::io::stderr, ansi))
        .map_err(|_| TelemetryError::TracingAlreadyInstalled)
}
