//! Metrics sources: where the controller's per-window [`GateInputs`] come from.
//!
//! - [`AggregatorSource`]: the in-process telemetry [`GateAggregator`](upramp_telemetry::GateAggregator).
//! - [`ScrapeSource`]: Prometheus text exposition from one or more `/metrics` URLs, summed across
//!   instances, as windowed deltas between scrapes; lets a small fleet be driven from outside.
//! - [`FnSource`]: any `FnMut(SystemTime) -> Result<GateInputs, SourceError>` closure, for tests and
//!   simulations.
//!
//! The trait takes only the time, so a Prometheus-server source (a PromQL `increase(...[window])`
//! query per figure) fits the same shape later.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use std::sync::Arc;

use upramp_telemetry::{GateAggregator, PathStats, UploadPath};

use crate::gates::{GateInputs, PathSample};

/// Why a source could not produce a window. The controller holds (never advances or rolls back) on it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SourceError {
    /// A scrape failed: connection, HTTP status, or body.
    #[error("scrape {url}: {message}")]
    Fetch {
        /// The URL.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// A scraped body is not valid Prometheus text exposition.
    #[error("scrape {url}: {error}")]
    Parse {
        /// The URL.
        url: String,
        /// The parse error.
        error: ExpositionError,
    },
    /// A scrape URL that cannot be scraped (not a URL, or not `http`/`https`).
    #[error("invalid scrape URL `{url}`: {problem}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        problem: String,
    },
    /// Any other source failure.
    #[error("metrics source: {0}")]
    Other(String),
}

/// Supplies the metrics of the window ending at `now`.
pub trait MetricsSource {
    /// Counts and p99 per path over the source's window ending at `now`.
    fn window(&mut self, now: SystemTime) -> Result<GateInputs, SourceError>;

    /// The queries the last [`window`](Self::window) sent and what they returned, for the decision's
    /// audit record (empty for sources that run no queries).
    fn evidence(&self) -> Vec<QueryReading> {
        Vec::new()
    }
}

/// One series of an instant-vector result: its labels and the value as Prometheus sent it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeriesValue {
    /// The series' labels.
    pub labels: BTreeMap<String, String>,
    /// The value's text (`"42"`, `"NaN"`, `"+Inf"`).
    pub value: String,
}

/// One query of a window as it was sent and what came back: the evidence for an audit record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryReading {
    /// The PromQL expression.
    pub query: String,
    /// The evaluation time, RFC 3339.
    pub time: String,
    /// The series read; empty when the result was empty or the query failed.
    pub values: Vec<SeriesValue>,
    /// Why the query failed, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A source computed by a closure of the time: synthetic streams in tests and simulations.
pub struct FnSource<F>(pub F);

impl<F> std::fmt::Debug for FnSource<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FnSource")
    }
}

impl<F> MetricsSource for FnSource<F>
where
    F: FnMut(SystemTime) -> Result<GateInputs, SourceError>,
{
    fn window(&mut self, now: SystemTime) -> Result<GateInputs, SourceError> {
        (self.0)(now)
    }
}

impl<S: MetricsSource + ?Sized> MetricsSource for Box<S> {
    fn window(&mut self, now: SystemTime) -> Result<GateInputs, SourceError> {
        (**self).window(now)
    }

    fn evidence(&self) -> Vec<QueryReading> {
        (**self).evidence()
    }
}

/// A malformed line in a Prometheus exposition.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("line {line}: {message}: `{text}`")]
pub struct ExpositionError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub message: String,
    /// The line (truncated to 120 characters).
    pub text: String,
}

/// One sample line of a Prometheus text exposition.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricSample {
    /// Metric name, including a `_bucket`, `_sum` or `_count` suffix.
    pub name: String,
    /// Label pairs in the order they appeared.
    pub labels: Vec<(String, String)>,
    /// The value.
    pub value: f64,
}

impl MetricSample {
    /// The value of label `name`, if present.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Parse Prometheus text exposition format 0.0.4: comments and blank lines are skipped, timestamps
/// ignored, label values unescaped (`\\`, `\"`, `\n`).
///
/// ```
/// let text = "# TYPE upramp_uploads_total counter\nupramp_uploads_total{provider=\"kimi\",path=\"async\",outcome=\"success\"} 3\n";
/// let samples = upramp_rollout::parse_exposition(text)?;
/// assert_eq!(samples[0].label("path"), Some("async"));
/// assert_eq!(samples[0].value, 3.0);
/// # Ok::<(), upramp_rollout::ExpositionError>(())
/// ```
pub fn parse_exposition(text: &str) -> Result<Vec<MetricSample>, ExpositionError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let err = |message: &str| ExpositionError {
            line: i + 1,
            message: message.to_owned(),
            text: line.chars().take(120).collect(),
        };
        let name_end = line
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(line.len());
        let name = &line[..name_end];
        if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(err("expected a metric name"));
        }
        let mut rest = &line[name_end..];
        let mut labels = Vec::new();
        if let Some(after) = rest.strip_prefix('{') {
            let (parsed, remaining) = parse_labels(after).map_err(&err)?;
            labels = parsed;
            rest = remaining;
        }
        let mut fields = rest.split_whitespace();
        let value_text = fields.next().ok_or_else(|| err("missing value"))?;
        let value = parse_value(value_text).ok_or_else(|| err("invalid value"))?;
        if let Some(ts) = fields.next() {
            if ts.parse::<i64>().is_err() {
                return Err(err("invalid timestamp"));
            }
        }
        if fields.next().is_some() {
            return Err(err("unexpected text after the value"));
        }
        out.push(MetricSample {
            name: name.to_owned(),
            labels,
            value,
        });
    }
    Ok(out)
}

type Labels = Vec<(String, String)>;

fn parse_labels(mut s: &str) -> Result<(Labels, &str), &'static str> {
    let mut labels = Vec::new();
    loop {
        s = s.trim_start();
        if let Some(rest) = s.strip_prefix('}') {
            return Ok((labels, rest));
        }
        let eq = s.find('=').ok_or("expected `label=\"value\"`")?;
        let key = s[..eq].trim();
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err("invalid label name");
        }
        s = s[eq + 1..]
            .trim_start()
            .strip_prefix('"')
            .ok_or("label value must be quoted")?;
        let mut value = String::new();
        let mut chars = s.char_indices();
        let end = loop {
            match chars.next() {
                None => return Err("unterminated label value"),
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c @ ('\\' | '"'))) => value.push(c),
                    _ => return Err("invalid escape in label value"),
                },
                Some((_, c)) => value.push(c),
            }
        };
        labels.push((key.to_owned(), value));
        s = s[end + 1..].trim_start();
        if let Some(rest) = s.strip_prefix(',') {
            s = rest;
        } else if !s.starts_with('}') {
            return Err("expected `,` or `}` after a label");
        }
    }
}

fn parse_value(text: &str) -> Option<f64> {
    match text {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => text.parse().ok(),
    }
}

const UPLOADS_TOTAL: &str = "upramp_uploads_total";
const FALLBACKS_TOTAL: &str = "upramp_upload_fallbacks_total";
const DURATION_BUCKET: &str = "upramp_upload_duration_seconds_bucket";

/// Cumulative upload counters of one path, summed over providers (and instances when added up).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PathTotals {
    /// `upramp_uploads_total` by outcome label.
    pub outcomes: BTreeMap<String, f64>,
    /// Cumulative histogram bucket counts by upper bound (`le`), in seconds; `+Inf` included.
    pub buckets: Vec<(f64, f64)>,
}

/// The upload counters the gates need, from one exposition (or a sum or difference of several).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UploadTotals {
    /// The `async` path.
    pub async_: PathTotals,
    /// The `sync` path (the control; `sync_fallback` is not included).
    pub sync: PathTotals,
    /// `upramp_upload_fallbacks_total`, all providers and reasons.
    pub fallbacks: f64,
}

impl UploadTotals {
    /// Pick the upload counters out of parsed samples, summing over providers.
    pub fn from_samples(samples: &[MetricSample]) -> Self {
        let mut totals = Self::default();
        for s in samples {
            if !s.value.is_finite() {
                continue;
            }
            let path = match s.label("path") {
                Some("async") => Some(&mut totals.async_),
                Some("sync") => Some(&mut totals.sync),
                _ => None,
            };
            match s.name.as_str() {
                UPLOADS_TOTAL => {
                    if let (Some(path), Some(outcome)) = (path, s.label("outcome")) {
                        *path.outcomes.entry(outcome.to_owned()).or_default() += s.value;
                    }
                }
                FALLBACKS_TOTAL => totals.fallbacks += s.value,
                DURATION_BUCKET => {
                    if let (Some(path), Some(le)) = (path, s.label("le").and_then(parse_value)) {
                        add_bucket(&mut path.buckets, le, s.value);
                    }
                }
                _ => {}
            }
        }
        totals
    }

    /// Add another instance's totals.
    pub fn add(&mut self, other: &UploadTotals) {
        for (mine, theirs) in [
            (&mut self.async_, &other.async_),
            (&mut self.sync, &other.sync),
        ] {
            for (k, v) in &theirs.outcomes {
                *mine.outcomes.entry(k.clone()).or_default() += v;
            }
            for &(le, v) in &theirs.buckets {
                add_bucket(&mut mine.buckets, le, v);
            }
        }
        self.fallbacks += other.fallbacks;
    }

    /// The increase from `base` to `self`; a series that went down was reset (a restarted instance)
    /// and counts from zero.
    pub fn delta_since(&self, base: &UploadTotals) -> UploadTotals {
        let inc = |now: f64, then: f64| if now >= then { now - then } else { now };
        let path = |now: &PathTotals, then: &PathTotals| PathTotals {
            outcomes: now
                .outcomes
                .iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        inc(*v, then.outcomes.get(k).copied().unwrap_or(0.0)),
                    )
                })
                .collect(),
            buckets: now
                .buckets
                .iter()
                .map(|&(le, v)| {
                    let before = then
                        .buckets
                        .iter()
                        .find(|(l, _)| *l == le)
                        .map_or(0.0, |(_, c)| *c);
                    (le, inc(v, before))
                })
                .collect(),
        };
        UploadTotals {
            async_: path(&self.async_, &base.async_),
            sync: path(&self.sync, &base.sync),
            fallbacks: inc(self.fallbacks, base.fallbacks),
        }
    }

    /// Turn (windowed) totals into gate inputs; p99 is estimated from the histogram buckets.
    pub fn to_inputs(&self) -> GateInputs {
        let mut inputs = GateInputs {
            async_: path_sample(&self.async_),
            sync: path_sample(&self.sync),
        };
        inputs.async_.fallbacks = count(self.fallbacks).min(inputs.async_.samples);
        inputs
    }
}

fn add_bucket(buckets: &mut Vec<(f64, f64)>, le: f64, value: f64) {
    match buckets.iter_mut().find(|(l, _)| *l == le) {
        Some((_, v)) => *v += value,
        None => {
            buckets.push((le, value));
            buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        }
    }
}

fn count(value: f64) -> u64 {
    // Counters are integers carried as floats; rounding absorbs float noise from summing.
    if value.is_finite() && value > 0.0 {
        value.round() as u64
    } else {
        0
    }
}

fn path_sample(t: &PathTotals) -> PathSample {
    let get = |k: &str| count(t.outcomes.get(k).copied().unwrap_or(0.0));
    let samples: u64 = t.outcomes.values().map(|v| count(*v)).sum();
    let successes = get("success");
    let timeouts = get("timeout");
    let rate_limited = get("rate_limited");
    PathSample {
        samples,
        successes,
        // Every other outcome, including ones this version does not know, is an error.
        errors: samples.saturating_sub(successes + timeouts + rate_limited),
        timeouts,
        rate_limited,
        fallbacks: 0,
        p99: quantile_from_buckets(&t.buckets, 0.99),
    }
}

/// Estimate a quantile from cumulative histogram buckets `(le, count)` sorted by `le`, interpolating
/// linearly inside the bucket like PromQL's `histogram_quantile`. A quantile that falls in the `+Inf`
/// bucket is reported as the largest finite bound. `None` without observations.
///
/// ```
/// use std::time::Duration;
/// let buckets = [(0.1, 50.0), (0.2, 100.0), (f64::INFINITY, 100.0)];
/// let p99 = upramp_rollout::quantile_from_buckets(&buckets, 0.99).unwrap();
/// assert!((p99.as_secs_f64() - 0.198).abs() < 1e-9);
/// ```
pub fn quantile_from_buckets(buckets: &[(f64, f64)], q: f64) -> Option<Duration> {
    let total = buckets.last()?.1;
    if total.is_nan() || total <= 0.0 {
        return None;
    }
    let rank = q.clamp(0.0, 1.0) * total;
    let mut prev_le = 0.0;
    let mut prev_count = 0.0;
    for &(le, cumulative) in buckets {
        if cumulative >= rank {
            let secs = if le.is_infinite() {
                prev_le
            } else if cumulative > prev_count {
                prev_le + (le - prev_le) * (rank - prev_count) / (cumulative - prev_count)
            } else {
                le
            };
            return Some(Duration::from_secs_f64(secs.max(0.0)));
        }
        if le.is_finite() {
            prev_le = le;
        }
        prev_count = cumulative;
    }
    Some(Duration::from_secs_f64(prev_le))
}

/// Reads `/metrics` from one or more instances; each [`window`](MetricsSource::window) scrapes them all
/// and returns the increase over the window (the difference to the newest earlier scrape at least a
/// window old, or to the oldest one kept). The first call has nothing to compare with and returns empty
/// counts, which the gates judge inconclusive.
///
/// Uses a blocking HTTP client: call it from a plain thread, not from inside an async runtime.
#[derive(Debug)]
pub struct ScrapeSource {
    urls: Vec<String>,
    window: Duration,
    client: reqwest::blocking::Client,
    history: VecDeque<(SystemTime, Vec<UploadTotals>)>,
}

impl ScrapeSource {
    /// Scrape `urls` and judge windows of length `window`; each scrape times out after 10 s.
    /// Every URL must be an `http` or `https` URL ([`SourceError::InvalidUrl`] otherwise).
    pub fn new(urls: Vec<String>, window: Duration) -> Result<Self, SourceError> {
        Self::with_timeout(urls, window, Duration::from_secs(10))
    }

    /// As [`new`](Self::new), with each scrape timing out after `timeout` (a controller loop passes
    /// its interval, so a hung instance costs at most one interval).
    pub fn with_timeout(
        urls: Vec<String>,
        window: Duration,
        timeout: Duration,
    ) -> Result<Self, SourceError> {
        if urls.is_empty() {
            return Err(SourceError::Other("no scrape URL given".to_owned()));
        }
        for url in &urls {
            check_url(url)?;
        }
        let client = reqwest::blocking::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| SourceError::Other(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            urls,
            window,
            client,
            history: VecDeque::new(),
        })
    }

    /// The scraped URLs.
    pub fn urls(&self) -> &[String] {
        &self.urls
    }

    fn scrape(&self, url: &str) -> Result<UploadTotals, SourceError> {
        let fetch = |message: String| SourceError::Fetch {
            url: url.to_owned(),
            message,
        };
        let response = self
            .client
            .get(url)
            .send()
            .map_err(|e| fetch(e.without_url().to_string()))?;
        let status = response.status();
        if !status.is_success() {
            return Err(fetch(format!("HTTP {status}")));
        }
        let body = response
            .text()
            .map_err(|e| fetch(e.without_url().to_string()))?;
        let samples = parse_exposition(&body).map_err(|error| SourceError::Parse {
            url: url.to_owned(),
            error,
        })?;
        Ok(UploadTotals::from_samples(&samples))
    }
}

fn check_url(url: &str) -> Result<(), SourceError> {
    let invalid = |problem: String| SourceError::InvalidUrl {
        url: url.to_owned(),
        problem,
    };
    let parsed = reqwest::Url::parse(url).map_err(|e| invalid(e.to_string()))?;
    match parsed.scheme() {
        "http" | "https" => {}
        other => return Err(invalid(format!("scheme `{other}` is not http or https"))),
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(invalid("no host".to_owned()));
    }
    Ok(())
}

impl MetricsSource for ScrapeSource {
    fn window(&mut self, now: SystemTime) -> Result<GateInputs, SourceError> {
        let current = self
            .urls
            .iter()
            .map(|u| self.scrape(u))
            .collect::<Result<Vec<_>, _>>()?;
        let cutoff = now
            .checked_sub(self.window)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        // Keep the newest scrape at or before the cutoff as the base, drop everything older.
        while self.history.len() >= 2 && self.history[1].0 <= cutoff {
            self.history.pop_front();
        }
        let mut windowed = UploadTotals::default();
        if let Some((_, base)) = self.history.front() {
            for (now_totals, base_totals) in current.iter().zip(base) {
                windowed.add(&now_totals.delta_since(base_totals));
            }
        }
        self.history.push_back((now, current));
        Ok(windowed.to_inputs())
    }
}

/// Reads the in-process telemetry [`GateAggregator`]: its window is the aggregator's own.
#[derive(Debug, Clone)]
pub struct AggregatorSource {
    aggregator: Arc<GateAggregator>,
}

impl AggregatorSource {
    /// A source over `aggregator` (the same one the uploader's observers feed).
    pub fn new(aggregator: Arc<GateAggregator>) -> Self {
        Self { aggregator }
    }
}

impl From<PathStats> for PathSample {
    /// Telemetry counts timeouts and rate limits among its `errors`; the gates judge them apart.
    fn from(stats: PathStats) -> Self {
        PathSample {
            samples: stats.samples,
            successes: stats.successes,
            errors: stats
                .errors
                .saturating_sub(stats.timeouts + stats.rate_limited),
            timeouts: stats.timeouts,
            rate_limited: stats.rate_limited,
            fallbacks: stats.fallbacks,
            p99: stats.p99,
        }
    }
}

impl MetricsSource for AggregatorSource {
    fn window(&mut self, now: SystemTime) -> Result<GateInputs, SourceError> {
        let snapshot = self.aggregator.snapshot(now);
        let mut sync = PathSample::from(snapshot.path_stats(UploadPath::Sync));
        // Only async legs fall back; a sync control never counts fallbacks.
        sync.fallbacks = 0;
        Ok(GateInputs {
            async_: PathSample::from(snapshot.path_stats(UploadPath::Async)),
            sync,
        })
    }
}
