//! Setup helpers on `metrics-exporter-prometheus`: a preset builder, a global install, isolated
//! recorders for tests, a `/metrics` HTTP endpoint and a deterministic rendering.

use std::convert::Infallible;
use std::fmt;
use std::net::SocketAddr;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::metrics::{describe_metrics, names, DURATION_BUCKETS_SECONDS};
use crate::TelemetryError;

/// The content type of the Prometheus text exposition format.
pub const EXPOSITION_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A `PrometheusBuilder` with upramp's duration and queue-wait buckets set, for callers that need more options.
///
/// # Errors
/// [`TelemetryError::Exporter`] if the exporter rejects the bucket configuration.
pub fn prometheus_builder() -> Result<PrometheusBuilder, TelemetryError> {
    PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(names::UPLOAD_DURATION_SECONDS.to_owned()),
            &DURATION_BUCKETS_SECONDS,
        )
        .and_then(|builder| {
            builder.set_buckets_for_metric(
                Matcher::Full(names::UPLOAD_QUEUE_SECONDS.to_owned()),
                &DURATION_BUCKETS_SECONDS,
            )
        })
        .map_err(|err| TelemetryError::Exporter(err.to_string()))
}

/// Installs a Prometheus recorder as the process-wide `metrics` recorder, describes every upramp
/// metric, and returns a handle to render or serve it.
///
/// # Errors
/// [`TelemetryError::Exporter`] if a global recorder is already installed.
pub fn install() -> Result<MetricsHandle, TelemetryError> {
    let handle = prometheus_builder()?
        .install_recorder()
        .map_err(|err| TelemetryError::Exporter(err.to_string()))?;
    describe_metrics();
    Ok(MetricsHandle { inner: handle })
}

/// Reads the metrics of one Prometheus recorder.
#[derive(Clone)]
pub struct MetricsHandle {
    inner: PrometheusHandle,
}

impl fmt::Debug for MetricsHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetricsHandle").finish_non_exhaustive()
    }
}

impl MetricsHandle {
    /// Wraps a handle of a recorder built elsewhere (e.g. from [`prometheus_builder`]).
    pub fn from_prometheus(inner: PrometheusHandle) -> Self {
        Self { inner }
    }

    /// The underlying exporter handle.
    pub fn prometheus(&self) -> &PrometheusHandle {
        &self.inner
    }

    /// The current exposition, in the exporter's (unordered) family order.
    pub fn render(&self) -> String {
        self.inner.render()
    }

    /// The current exposition with families sorted by name and series sorted by labels, so equal
    /// metrics always render to equal text (for snapshots and reports).
    pub fn render_sorted(&self) -> String {
        sort_exposition(&self.render())
    }

    /// Serves `GET /metrics` (and `GET /health`) on `addr` from the current tokio runtime.
    ///
    /// Bind port 0 to let the OS choose; [`MetricsServer::local_addr`] tells the bound address.
    ///
    /// # Errors
    /// [`TelemetryError::Bind`] naming the address if it cannot be bound.
    pub async fn serve(&self, addr: SocketAddr) -> Result<MetricsServer, TelemetryError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| TelemetryError::Bind { addr, source })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| TelemetryError::Bind { addr, source })?;
        let handle = self.clone();
        let task = tokio::spawn(async move { accept_loop(listener, handle).await });
        Ok(MetricsServer { local_addr, task })
    }
}

/// A running `/metrics` endpoint; it stops when shut down or dropped.
#[derive(Debug)]
pub struct MetricsServer {
    local_addr: SocketAddr,
    task: JoinHandle<()>,
}

impl MetricsServer {
    /// The address the endpoint is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting connections.
    pub fn shutdown(self) {
        self.task.abort();
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(listener: TcpListener, handle: MetricsHandle) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _peer)) => stream,
            Err(err) => {
                // Accept errors (e.g. EMFILE) are per connection; keep serving the others.
                tracing::warn!(error = %err, "metrics endpoint failed to accept a connection");
                continue;
            }
        };
        let handle = handle.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request: Request<Incoming>| {
                let response = respond(&handle, &request);
                async move { Ok::<_, Infallible>(response) }
            });
            if let Err(err) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(error = %err, "metrics endpoint connection ended with an error");
            }
        });
    }
}

fn respond(handle: &MetricsHandle, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    let (status, body, content_type) = match (request.method(), request.uri().path()) {
        (&Method::GET, "/metrics") => (StatusCode::OK, handle.render(), EXPOSITION_CONTENT_TYPE),
        (&Method::GET, "/health") => (StatusCode::OK, "OK\n".to_owned(), "text/plain"),
        (_, "/metrics" | "/health") => (
            StatusCode::METHOD_NOT_ALLOWED,
            "only GET is allowed\n".to_owned(),
            "text/plain",
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "not found: try /metrics\n".to_owned(),
            "text/plain",
        ),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    if status == StatusCode::METHOD_NOT_ALLOWED {
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET"));
    }
    response
}

/// A test double (feature `test-util`): a Prometheus recorder that is not installed globally: metrics recorded inside
/// [`scope`](LocalMetrics::scope) on the calling thread go to it alone, so tests stay independent of
/// each other and of the global recorder.
///
/// ```
/// use upramp_telemetry::{record_rollout_percent, LocalMetrics};
///
/// let metrics = LocalMetrics::new()?;
/// metrics.scope(|| record_rollout_percent("async_upload", 10.0));
/// assert!(metrics.render().contains(r#"upramp_rollout_percent{flag="async_upload"} 10"#));
/// # Ok::<(), upramp_telemetry::TelemetryError>(())
/// ```
#[cfg(feature = "test-util")]
pub struct LocalMetrics {
    recorder: metrics_exporter_prometheus::PrometheusRecorder,
    handle: MetricsHandle,
}

#[cfg(feature = "test-util")]
impl fmt::Debug for LocalMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalMetrics").finish_non_exhaustive()
    }
}

#[cfg(feature = "test-util")]
impl LocalMetrics {
    /// A fresh recorder with upramp's buckets and metric descriptions.
    ///
    /// # Errors
    /// [`TelemetryError::Exporter`] if the exporter rejects the bucket configuration.
    pub fn new() -> Result<Self, TelemetryError> {
        let recorder = prometheus_builder()?.build_recorder();
        let handle = MetricsHandle {
            inner: recorder.handle(),
        };
        metrics::with_local_recorder(&recorder, describe_metrics);
        Ok(Self { recorder, handle })
    }

    /// Runs `f` with this recorder as the current thread's recorder.
    pub fn scope<T>(&self, f: impl FnOnce() -> T) -> T {
        metrics::with_local_recorder(&self.recorder, f)
    }

    /// A handle to this recorder.
    pub fn handle(&self) -> &MetricsHandle {
        &self.handle
    }

    /// The exposition, sorted as by [`MetricsHandle::render_sorted`].
    pub fn render(&self) -> String {
        self.handle.render_sorted()
    }
}

/// Reorders a Prometheus text exposition deterministically: families (blocks of `# HELP`/`# TYPE`
/// and their samples) by name, and within a family the series by labels. A histogram's bucket,
/// `_sum` and `_count` lines stay together and in their original order, so the output is still a
/// valid exposition.
pub fn sort_exposition(text: &str) -> String {
    let mut families: Vec<(String, Vec<&str>, Vec<&str>)> = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            continue;
        }
        let continues_current = families.last().is_some_and(|(current, _, _)| {
            !line.starts_with('#') && belongs_to(sample_name(line), current)
        });
        if !continues_current {
            let name = family_name(line);
            if families
                .last()
                .is_none_or(|(current, _, _)| *current != name)
            {
                families.push((name, Vec::new(), Vec::new()));
            }
        }
        if let Some((_, comments, samples)) = families.last_mut() {
            if line.starts_with('#') {
                comments.push(line);
            } else {
                samples.push(line);
            }
        }
    }
    families.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out = String::with_capacity(text.len());
    for (_, comments, mut samples) in families {
        // Stable: lines with equal keys (one histogram's buckets) keep the exporter's `le` order.
        samples.sort_by_cached_key(|line| series_key(line));
        for line in comments.into_iter().chain(samples) {
            out.push_str(line);
            out.push('\n');
        }
        out.push('\n');
    }
    out
}

/// The metric family a line belongs to: the name in a comment, or the sample name without a
/// histogram/summary suffix.
fn family_name(line: &str) -> String {
    if let Some(rest) = line.strip_prefix('#') {
        let mut words = rest.split_whitespace();
        return match (words.next(), words.next()) {
            (Some("HELP" | "TYPE"), Some(name)) => name.to_owned(),
            _ => String::new(),
        };
    }
    let name = sample_name(line);
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix) {
            return base.to_owned();
        }
    }
    name.to_owned()
}

/// Whether a sample named `sample` is part of the family `family` (itself or a histogram part).
fn belongs_to(sample: &str, family: &str) -> bool {
    sample == family
        || sample
            .strip_prefix(family)
            .is_some_and(|suffix| matches!(suffix, "_bucket" | "_sum" | "_count"))
}

fn sample_name(line: &str) -> &str {
    let end = line.find(['{', ' ']).unwrap_or(line.len());
    &line[..end]
}

/// Sort key of a sample: its labels without `le` (so one series' lines tie), then whether it is a
/// bucket, sum or count line.
fn series_key(line: &str) -> (String, u8) {
    let name = sample_name(line);
    let rank = if name.ends_with("_bucket") {
        0
    } else if name.ends_with("_sum") {
        1
    } else if name.ends_with("_count") {
        2
    } else {
        0
    };
    let labels = match (line.find('{'), line.rfind('}')) {
        (Some(open), Some(close)) if open < close => &line[open + 1..close],
        _ => "",
    };
    let without_le: Vec<&str> = split_labels(labels)
        .into_iter()
        .filter(|pair| !pair.starts_with("le="))
        .collect();
    (without_le.join(","), rank)
}

/// Splits `a="x",b="y"` on the commas outside quoted values.
fn split_labels(labels: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut in_quotes = false;
    let mut escaped = false;
    let mut start = 0;
    for (i, c) in labels.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if in_quotes => escaped = true,
            '"' => in_quotes = !in_quotes,
            ',' if !in_quotes => {
                parts.push(&labels[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if start < labels.len() {
        parts.push(&labels[start..]);
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorting_keeps_histogram_lines_together_and_in_order() {
        let text = "\
# TYPE z_total counter
z_total{a=\"2\"} 1
z_total{a=\"1\"} 2

# TYPE h histogram
h_bucket{p=\"b\",le=\"0.5\"} 1
h_bucket{p=\"b\",le=\"+Inf\"} 1
h_sum{p=\"b\"} 0.1
h_count{p=\"b\"} 1
h_bucket{p=\"a,x\",le=\"0.5\"} 0
h_bucket{p=\"a,x\",le=\"+Inf\"} 2
h_sum{p=\"a,x\"} 3
h_count{p=\"a,x\"} 2
";
        let expected = "\
# TYPE h histogram
h_bucket{p=\"a,x\",le=\"0.5\"} 0
h_bucket{p=\"a,x\",le=\"+Inf\"} 2
h_sum{p=\"a,x\"} 3
h_count{p=\"a,x\"} 2
h_bucket{p=\"b\",le=\"0.5\"} 1
h_bucket{p=\"b\",le=\"+Inf\"} 1
h_sum{p=\"b\"} 0.1
h_count{p=\"b\"} 1

# TYPE z_total counter
z_total{a=\"1\"} 2
z_total{a=\"2\"} 1

";
        assert_eq!(sort_exposition(text), expected);
        assert_eq!(sort_exposition(expected), expected);
    }
}
