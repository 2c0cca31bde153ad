//! The crate's error type.

use std::net::SocketAddr;

/// Everything that can go wrong setting telemetry up. Recording never fails.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TelemetryError {
    /// A string is not one of a label's closed set of values.
    #[error("unknown {label} label value {value:?}")]
    UnknownLabelValue {
        /// The label, e.g. `path`.
        label: &'static str,
        /// The rejected value.
        value: String,
    },
    /// A configured label value is not a lowercase identifier.
    #[error("invalid {label} label value {value:?}: expected a lowercase identifier ([a-z][a-z0-9_]*, at most 48 characters)")]
    InvalidLabelValue {
        /// The label, e.g. `provider`.
        label: &'static str,
        /// The rejected value.
        value: String,
    },
    /// A [`GateAggregator`](crate::GateAggregator) setting is out of range.
    #[error("invalid aggregator config: {field} = {value} (expected {expected})")]
    InvalidAggregatorConfig {
        /// The config field.
        field: &'static str,
        /// Its value.
        value: String,
        /// What it should be.
        expected: &'static str,
    },
    /// The Prometheus exporter could not be built or installed.
    #[error("prometheus exporter: {0}")]
    Exporter(String),
    /// The `/metrics` listener could not bind.
    #[error("cannot serve /metrics on {addr}: {source}")]
    Bind {
        /// The requested address.
        addr: SocketAddr,
        /// Why binding failed.
        #[source]
        source: std::io::Error,
    },
    /// A log filter (e.g. `RUST_LOG`) does not parse.
    #[error("invalid log filter {value:?}: {reason}")]
    InvalidLogFilter {
        /// The filter string.
        value: String,
        /// The parser's complaint.
        reason: String,
    },
    /// A log format name is neither `human` nor `json`.
    #[error("unknown log format {0:?} (expected human or json)")]
    UnknownLogFormat(String),
    /// A global tracing subscriber was installed before.
    #[error("a global tracing subscriber is already installed")]
    TracingAlreadyInstalled,
}
