//! upramp-telemetry: upload events, the observer trait, Prometheus metrics, tracing logs, the clock,
//! and the windowed aggregates the rollout gates judge.
//!
//! The uploader reports every HTTP attempt and every request leg as an [`UploadEvent`] to an
//! [`UploadObserver`]. This crate provides the observers:
//!
//! - [`PrometheusObserver`]: counters, a duration histogram and an in-flight gauge through the
//!   `metrics` facade, under the names in [`names`]; [`install`] sets up the exporter and
//!   [`MetricsHandle::serve`] exposes `/metrics`. [`record_flag_evaluation`],
//!   [`record_rollout_percent`] and [`record_rollout_decision`] record the flag and rollout metrics.
//! - [`GateAggregator`]: per (provider, path) counts and latency quantiles over a sliding window of
//!   caller-supplied time, read as an immutable [`WindowSnapshot`].
//! - [`TracingObserver`]: a structured log line per attempt; [`init_tracing`] installs a subscriber
//!   honouring `RUST_LOG`.
//! - [`FanOut`] sends each event to several observers. With the `test-util` feature, `RecordingObserver`
//!   (a test double that keeps every event) and `LocalMetrics` (an isolated recorder) serve tests of code
//!   built on this crate.
//!
//! Timestamps come from a [`Clock`] the caller owns: [`SystemClock`] in production,
//! [`SimulatedClock`] in tests and validation runs.
//!
//! Label values come from closed sets (paths and outcomes are enums, providers an allow-list, flag
//! values capped identifiers), so routing keys, file names, API keys and error messages never
//! become labels.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use upramp_telemetry::{
//!     AggregatorConfig, Clock, EventKind, FanOut, GateAggregator, LocalMetrics, Outcome,
//!     PrometheusObserver, SimulatedClock, UploadEvent, UploadObserver, UploadPath,
//! };
//!
//! let clock = SimulatedClock::starting_at(std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000));
//! let gate = Arc::new(GateAggregator::new(AggregatorConfig::default())?);
//! let observers = FanOut::new()
//!     .with(Arc::new(PrometheusObserver::new()))
//!     .with(gate.clone());
//!
//! let metrics = LocalMetrics::new()?; // tests use an isolated recorder; services call `install()`
//! metrics.scope(|| {
//!     observers.on_event(&UploadEvent {
//!         kind: EventKind::Request,
//!         provider: "glm".into(),
//!         path: UploadPath::Async,
//!         outcome: Outcome::Success,
//!         duration: Duration::from_millis(250),
//!         queue_wait: Duration::ZERO,
//!         bytes: 4096,
//!         attempt: 1,
//!         fallback_reason: None,
//!         at: clock.now(),
//!     });
//! });
//!
//! assert_eq!(gate.snapshot(clock.now()).path_stats(UploadPath::Async).success_rate(), Some(1.0));
//! assert!(metrics.render().contains(r#"upramp_upload_bytes_total{provider="glm",path="async"} 4096"#));
//! # Ok::<(), upramp_telemetry::TelemetryError>(())
//! ```

mod aggregate;
mod clock;
mod error;
mod event;
mod exporter;
mod logging;
mod metrics;
mod observer;
#[cfg(feature = "test-util")]
mod test_util;

pub use crate::aggregate::{
    AggregatorConfig, Footprint, GateAggregator, PathStats, ProviderPathStats, WindowSnapshot,
};
pub use crate::clock::{Clock, SimulatedClock, SystemClock};
pub use crate::error::TelemetryError;
pub use crate::event::{EventKind, Outcome, UploadEvent, UploadPath};
#[cfg(feature = "test-util")]
pub use crate::exporter::LocalMetrics;
pub use crate::exporter::{
    install, prometheus_builder, sort_exposition, MetricsHandle, MetricsServer,
    EXPOSITION_CONTENT_TYPE,
};
pub use crate::logging::{
    build_subscriber, init_tracing, parse_log_filter, LogFormat, TracingObserver,
    DEFAULT_LOG_FILTER, UPLOAD_LOG_TARGET,
};
pub use crate::metrics::{
    describe_metrics, names, record_flag_evaluation, record_rollout_decision,
    record_rollout_percent, PrometheusObserver, DEFAULT_PROVIDERS, DURATION_BUCKETS_SECONDS,
};
pub use crate::metrics::{record_rollout_apply_failure, record_rollout_apply_state};
pub use crate::observer::{FanOut, NoopObserver, Observers, UploadObserver};
#[cfg(feature = "test-util")]
pub use crate::test_util::RecordingObserver;
