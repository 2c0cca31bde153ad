//! [`PrometheusSource`]: gate inputs read from a Prometheus server's HTTP API with PromQL.
//!
//! Where [`ScrapeSource`](crate::ScrapeSource) keeps its own history of scrapes (a restarted instance
//! loses everything before the restart; one instance down holds the whole rollout; the URL list is
//! fixed), a Prometheus server already holds every instance's series and `increase()` handles counter
//! resets. Each window is three instant queries at the tick's time, `W` being the window and `S` the
//! optional label selector (`job="uploads"`):
//!
//! - counts: `sum by (path, outcome) (increase(upramp_uploads_total{S,path=~"async|sync"}[W]))`;
//! - p99: `histogram_quantile(0.99, sum by (le, path)
//!   (increase(upramp_upload_duration_seconds_bucket{S,path=~"async|sync"}[W])))`;
//! - fallbacks: `sum(increase(upramp_upload_fallbacks_total{S}[W]))`.
//!
//! The same expressions ship as recording rules in `docs/prometheus/recording.yml`.
//!
//! # What holds
//!
//! Every failure is a [`SourceError`] naming the server, the query and the reason, so the controller
//! holds and its audit record says why:
//! - an **empty counts result** is *no data*, never a pass (a wrong selector or a fleet that never
//!   uploaded looks exactly like this);
//! - a **`NaN` or infinite count**;
//! - a **`NaN` p99 on a path that had samples** in the window, or an infinite p99 (a path without
//!   samples has no p99: `NaN` is what `histogram_quantile` returns for it, and that is not an error);
//! - **`status: "error"`** (its `errorType` and `error` are quoted), any other HTTP error status, a body
//!   that is not the API's JSON, a result type other than a vector, and a **timeout**: every query is
//!   bounded by the source's timeout, on the client and, through the API's `timeout` parameter, on
//!   the server.
//!
//! An empty fallbacks result is zero fallbacks: the counter exists only once something fell back.
//!
//! # Evidence
//!
//! [`PrometheusSource::last_queries`] returns the exact expressions of the latest window with the raw
//! values read (or the error), as [`QueryReading`]s an operator can paste into Prometheus.
//!
//! Uses a blocking HTTP client (the crate's one client stack, as [`ScrapeSource`](crate::ScrapeSource)):
//! call it from a plain thread, not from inside an async runtime.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::gates::GateInputs;
use crate::source::{MetricsSource, SourceError, UploadTotals};

/// The time a query may take when the caller sets none.
pub const DEFAULT_QUERY_TIMEOUT: Duration = Duration::from_secs(10);

/// The quantile the p99 query asks for.
const P99: f64 = 0.99;

/// A `--prometheus` URL or `--selector` that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PrometheusConfigError {
    /// The server URL is not an `http://` or `https://` URL.
    #[error("prometheus URL `{url}`: {message}")]
    Url {
        /// The URL as given.
        url: String,
        /// What is wrong.
        message: String,
    },
    /// The label selector is not a comma-separated list of `label="value"` matchers.
    #[error("label selector `{selector}`: {message}")]
    Selector {
        /// The selector as given.
        selector: String,
        /// What is wrong.
        message: String,
    },
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
}

/// A label selector: comma-separated matchers (`job="uploads",env!~"dev|test"`), checked so that a typo
/// is refused at start instead of holding every tick with a PromQL parse error.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector {
    matchers: Vec<String>,
}

impl Selector {
    /// Parse `text`; surrounding braces are allowed (`{job="uploads"}`), an empty text selects all.
    ///
    /// ```
    /// let selector = upramp_rollout::Selector::parse(r#"job="uploads", env=~"prod|canary""#)?;
    /// assert_eq!(selector.to_string(), r#"job="uploads",env=~"prod|canary""#);
    /// assert!(upramp_rollout::Selector::parse("job=uploads").is_err());
    /// # Ok::<(), upramp_rollout::PrometheusConfigError>(())
    /// ```
    pub fn parse(text: &str) -> Result<Self, PrometheusConfigError> {
        let err = |message: &str| PrometheusConfigError::Selector {
            selector: text.to_owned(),
            message: message.to_owned(),
        };
        let mut s = text.trim();
        if let Some(inner) = s.strip_prefix('{') {
            s = inner
                .strip_suffix('}')
                .ok_or_else(|| err("an opening `{` without its closing `}`"))?
                .trim();
        }
        let mut matchers = Vec::new();
        while !s.is_empty() {
            let name_end = s
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(s.len());
            let name = &s[..name_end];
            if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
                return Err(err("expected a label name"));
            }
            let rest = s[name_end..].trim_start();
            let op = ["=~", "!~", "!=", "="]
                .into_iter()
                .find(|op| rest.starts_with(op))
                .ok_or_else(|| err("expected `=`, `!=`, `=~` or `!~` after a label name"))?;
            let rest = rest[op.len()..].trim_start();
            let body = rest
                .strip_prefix('"')
                .ok_or_else(|| err("label values must be double-quoted"))?;
            let mut escaped = false;
            let close = body
                .char_indices()
                .find(|&(_, c)| {
                    let end = c == '"' && !escaped;
                    escaped = c == '\\' && !escaped;
                    end
                })
                .map(|(i, _)| i)
                .ok_or_else(|| err("an unterminated label value"))?;
            matchers.push(format!("{name}{op}\"{}\"", &body[..close]));
            s = body[close + 1..].trim_start();
            if let Some(after) = s.strip_prefix(',') {
                s = after.trim_start();
            } else if !s.is_empty() {
                return Err(err("expected `,` between matchers"));
            }
        }
        Ok(Self { matchers })
    }

    /// The matchers with `extra` appended, inside braces (`{job="uploads",path=~"async|sync"}`);
    /// nothing at all when there are none.
    fn braces(&self, extra: &[&str]) -> String {
        let all: Vec<&str> = self
            .matchers
            .iter()
            .map(String::as_str)
            .chain(extra.iter().copied())
            .collect();
        if all.is_empty() {
            String::new()
        } else {
            format!("{{{}}}", all.join(","))
        }
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.matchers.join(","))
    }
}

/// The three PromQL expressions of one window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GateQueries {
    /// Upload legs by path and outcome.
    pub counts: String,
    /// p99 duration by path.
    pub p99: String,
    /// Fallbacks, all providers and reasons.
    pub fallbacks: String,
}

impl GateQueries {
    /// The expressions for a window of `window` scoped by `selector`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use upramp_rollout::{GateQueries, Selector};
    /// let q = GateQueries::new(&Selector::parse(r#"job="uploads""#)?, Duration::from_secs(60));
    /// assert_eq!(
    ///     q.counts,
    ///     r#"sum by (path, outcome) (increase(upramp_uploads_total{job="uploads",path=~"async|sync"}[60s]))"#
    /// );
    /// # Ok::<(), upramp_rollout::PrometheusConfigError>(())
    /// ```
    pub fn new(selector: &Selector, window: Duration) -> Self {
        let range = promql_duration(window);
        let paths = selector.braces(&[r#"path=~"async|sync""#]);
        Self {
            counts: format!(
                "sum by (path, outcome) (increase(upramp_uploads_total{paths}[{range}]))"
            ),
            p99: format!(
                "histogram_quantile({P99}, sum by (le, path) (increase(upramp_upload_duration_seconds_bucket{paths}[{range}])))"
            ),
            fallbacks: format!(
                "sum(increase(upramp_upload_fallbacks_total{}[{range}]))",
                selector.braces(&[])
            ),
        }
    }
}

/// A PromQL range: whole seconds when possible, else milliseconds (at least `1ms`).
fn promql_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 && d.as_secs() > 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis().max(1))
    }
}

pub use crate::source::{QueryReading, SeriesValue};

/// Reads gate inputs from a Prometheus server; see the [module documentation](self).
///
/// ```no_run
/// use std::time::{Duration, SystemTime};
/// use upramp_rollout::{MetricsSource, PrometheusSource, Selector};
/// let mut source = PrometheusSource::new(
///     "http://127.0.0.1:9090",
///     &Selector::parse(r#"job="uploads""#)?,
///     Duration::from_secs(300),
/// )?;
/// match source.window(SystemTime::now()) {
///     Ok(inputs) => println!("async legs: {}", inputs.async_.samples),
///     Err(e) => println!("holding: {e}"),
/// }
/// for reading in source.last_queries() {
///     println!("{} -> {:?}", reading.query, reading.values);
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct PrometheusSource {
    base: String,
    query_url: reqwest::Url,
    queries: GateQueries,
    timeout: Duration,
    client: reqwest::blocking::Client,
    last: Vec<QueryReading>,
}

impl PrometheusSource {
    /// A source querying the server at `url` (`http://host:9090`, a path prefix allowed) for windows
    /// of `window`, each query timing out after [`DEFAULT_QUERY_TIMEOUT`].
    pub fn new(
        url: &str,
        selector: &Selector,
        window: Duration,
    ) -> Result<Self, PrometheusConfigError> {
        Self::with_timeout(url, selector, window, DEFAULT_QUERY_TIMEOUT)
    }

    /// As [`new`](Self::new) with a query timeout of `timeout`.
    pub fn with_timeout(
        url: &str,
        selector: &Selector,
        window: Duration,
        timeout: Duration,
    ) -> Result<Self, PrometheusConfigError> {
        let bad = |message: &str| PrometheusConfigError::Url {
            url: url.to_owned(),
            message: message.to_owned(),
        };
        let parsed = reqwest::Url::parse(url).map_err(|e| bad(&e.to_string()))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(bad("the scheme must be http or https"));
        }
        if parsed.host_str().is_none_or(str::is_empty) {
            return Err(bad("no host"));
        }
        if parsed.query().is_some() || parsed.fragment().is_some() {
            return Err(bad(
                "give the server's base URL, without a query or fragment",
            ));
        }
        if timeout.is_zero() {
            return Err(bad("the query timeout must be positive"));
        }
        let base = url.trim_end_matches('/').to_owned();
        let query_url = reqwest::Url::parse(&format!("{base}/api/v1/query"))
            .map_err(|e| bad(&e.to_string()))?;
        let client = reqwest::blocking::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| PrometheusConfigError::Client(e.to_string()))?;
        Ok(Self {
            base,
            query_url,
            queries: GateQueries::new(selector, window),
            timeout,
            client,
            last: Vec::new(),
        })
    }

    /// The server's base URL.
    pub fn url(&self) -> &str {
        &self.base
    }

    /// The expressions every window sends.
    pub fn queries(&self) -> &GateQueries {
        &self.queries
    }

    /// The queries of the latest [`window`](MetricsSource::window) call with the values read or the
    /// error, in the order sent (a failed query ends the window, so later ones are absent).
    pub fn last_queries(&self) -> &[QueryReading] {
        &self.last
    }

    fn error(&self, query: &str, message: impl fmt::Display) -> SourceError {
        SourceError::Other(format!(
            "prometheus {}: query `{query}`: {message}",
            self.base
        ))
    }

    /// Run one instant query at `time`, recording the reading.
    fn query(&mut self, query: &str, time: SystemTime) -> Result<Vec<Series>, SourceError> {
        let result = self.fetch(query, time);
        let (values, error) = match &result {
            Ok(series) => (series.iter().map(|s| s.raw.clone()).collect(), None),
            Err(e) => (Vec::new(), Some(e.clone())),
        };
        self.last.push(QueryReading {
            query: query.to_owned(),
            time: crate::timefmt::format_timestamp(time),
            values,
            error,
        });
        result.map_err(|e| self.error(query, e))
    }

    fn fetch(&self, query: &str, time: SystemTime) -> Result<Vec<Series>, String> {
        let secs = time
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        let response = self
            .client
            .get(self.query_url.clone())
            .query(&[
                ("query", query.to_owned()),
                ("time", format!("{secs:.3}")),
                ("timeout", promql_duration(self.timeout)),
            ])
            .send()
            .map_err(|e| describe_reqwest(&e, self.timeout))?;
        let status = response.status();
        let body = response
            .text()
            .map_err(|e| describe_reqwest(&e, self.timeout))?;
        parse_response(status.as_u16(), &body)
    }
}

fn describe_reqwest(e: &reqwest::Error, timeout: Duration) -> String {
    if e.is_timeout() {
        format!(
            "timed out after {}",
            crate::timefmt::format_duration(timeout)
        )
    } else {
        // Walk the sources: reqwest's own message ("error sending request") hides the cause.
        let mut message = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            message = format!("{message}: {s}");
            source = s.source();
        }
        message
    }
}

/// One series read: the raw form for the evidence, the parsed value for the inputs.
#[derive(Debug)]
struct Series {
    raw: SeriesValue,
    value: f64,
}

impl Series {
    fn label(&self, name: &str) -> Option<&str> {
        self.raw.labels.get(name).map(String::as_str)
    }
}

#[derive(Deserialize)]
struct ApiResponse {
    status: String,
    #[serde(default)]
    data: Option<ApiData>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct ApiData {
    #[serde(rename = "resultType")]
    result_type: String,
    result: serde_json::Value,
}

#[derive(Deserialize)]
struct ApiSample {
    #[serde(default)]
    metric: BTreeMap<String, String>,
    value: (serde_json::Value, String),
}

/// Decode an instant-query response: the API answers errors with a JSON body and a 4xx/5xx status,
/// so the body is read first and the status only reported when the body says nothing better.
fn parse_response(status: u16, body: &str) -> Result<Vec<Series>, String> {
    let snippet = || {
        let s: String = body.chars().take(120).collect();
        if s.trim().is_empty() {
            "an empty body".to_owned()
        } else {
            format!("`{}`", s.trim())
        }
    };
    let decoded: ApiResponse = match serde_json::from_str(body) {
        Ok(r) => r,
        Err(e) if (200..300).contains(&status) => {
            return Err(format!(
                "the response is not the query API's JSON ({e}): {}",
                snippet()
            ))
        }
        Err(_) => return Err(format!("HTTP {status}: {}", snippet())),
    };
    if decoded.status != "success" {
        return Err(format!(
            "status `{}` (HTTP {status}), errorType `{}`: {}",
            decoded.status,
            decoded.error_type.as_deref().unwrap_or("none"),
            decoded.error.as_deref().unwrap_or("no error message")
        ));
    }
    if !(200..300).contains(&status) {
        return Err(format!("HTTP {status} with a success body: {}", snippet()));
    }
    let data = decoded
        .data
        .ok_or_else(|| "a success response without `data`".to_owned())?;
    if data.result_type != "vector" {
        return Err(format!(
            "result type `{}`, expected `vector`",
            data.result_type
        ));
    }
    let samples: Vec<ApiSample> = serde_json::from_value(data.result)
        .map_err(|e| format!("a malformed vector result: {e}"))?;
    samples
        .into_iter()
        .map(|s| {
            let (_, text) = s.value;
            let value = parse_sample_value(&text)
                .ok_or_else(|| format!("the sample value `{text}` is not a number"))?;
            Ok(Series {
                raw: SeriesValue {
                    labels: s.metric,
                    value: text,
                },
                value,
            })
        })
        .collect()
}

fn parse_sample_value(text: &str) -> Option<f64> {
    match text {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => text.parse().ok(),
    }
}

fn series_name(s: &Series) -> String {
    let labels: Vec<String> = s
        .raw
        .labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{v}\""))
        .collect();
    format!("{{{}}}", labels.join(","))
}

impl MetricsSource for PrometheusSource {
    fn evidence(&self) -> Vec<QueryReading> {
        self.last.clone()
    }

    fn window(&mut self, now: SystemTime) -> Result<GateInputs, SourceError> {
        self.last.clear();
        let queries = self.queries.clone();

        let counts = self.query(&queries.counts, now)?;
        if counts.is_empty() {
            return Err(self.error(
                &queries.counts,
                "an empty result: no upload series in the window (no data; check the selector and that Prometheus scrapes the fleet)",
            ));
        }
        let mut totals = UploadTotals::default();
        for s in &counts {
            if !s.value.is_finite() {
                return Err(self.error(
                    &queries.counts,
                    format_args!("{} for {}", s.raw.value, series_name(s)),
                ));
            }
            let path = match s.label("path") {
                Some("async") => &mut totals.async_,
                Some("sync") => &mut totals.sync,
                _ => continue,
            };
            if let Some(outcome) = s.label("outcome") {
                *path.outcomes.entry(outcome.to_owned()).or_default() += s.value;
            }
        }

        let fallbacks = self.query(&queries.fallbacks, now)?;
        for s in &fallbacks {
            if !s.value.is_finite() {
                return Err(self.error(
                    &queries.fallbacks,
                    format_args!("{} for {}", s.raw.value, series_name(s)),
                ));
            }
            totals.fallbacks += s.value;
        }

        let p99 = self.query(&queries.p99, now)?;
        let mut inputs = totals.to_inputs();
        for s in &p99 {
            let sample = match s.label("path") {
                Some("async") => &mut inputs.async_,
                Some("sync") => &mut inputs.sync,
                _ => continue,
            };
            if s.value.is_nan() && sample.samples == 0 {
                // No observations on this path in the window: no p99, as the scrape source says.
                continue;
            }
            if !(s.value.is_finite() && s.value >= 0.0) {
                return Err(self.error(
                    &queries.p99,
                    format_args!(
                        "{} for {} with {} legs in the window",
                        s.raw.value,
                        series_name(s),
                        sample.samples
                    ),
                ));
            }
            sample.p99 = Some(Duration::from_secs_f64(s.value));
        }
        Ok(inputs)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn selectors_parse_or_name_the_problem() {
        for (text, want) in [
            ("", ""),
            ("{}", ""),
            (r#"job="uploads""#, r#"job="uploads""#),
            (
                r#"{ job = "a\"b" , env!~"x|y" }"#,
                r#"job="a\"b",env!~"x|y""#,
            ),
        ] {
            assert_eq!(Selector::parse(text).unwrap().to_string(), want, "{text}");
        }
        for bad in [
            "job=uploads",
            r#"job="x"#,
            r#"{job="x""#,
            r#"job="x" env="y""#,
            r#"="x""#,
            r#"job~"x""#,
            r#"1job="x""#,
        ] {
            let e = Selector::parse(bad).unwrap_err();
            assert!(e.to_string().contains(bad), "{e}");
        }
    }

    #[test]
    fn durations_become_promql_ranges() {
        assert_eq!(promql_duration(Duration::from_secs(3600)), "3600s");
        assert_eq!(promql_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(promql_duration(Duration::ZERO), "1ms");
    }

    #[test]
    fn bad_urls_are_refused() {
        for bad in [
            "not a url",
            "ftp://x:9090",
            "http://h:9090/?q=1",
            "file:///tmp",
        ] {
            let e = PrometheusSource::new(bad, &Selector::default(), Duration::from_secs(60))
                .unwrap_err();
            assert!(e.to_string().contains(bad), "{e}");
        }
        let ok = PrometheusSource::new(
            "http://127.0.0.1:9090/prom/",
            &Selector::default(),
            Duration::from_secs(60),
        )
        .unwrap();
        assert_eq!(
            ok.query_url.as_str(),
            "http://127.0.0.1:9090/prom/api/v1/query"
        );
    }
}
