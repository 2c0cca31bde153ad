//! Upload events: what the uploader reports to its observers.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::TelemetryError;

/// The path a request leg took. Used as the `path` label value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UploadPath {
    /// The streaming tokio path.
    Async,
    /// The legacy buffered blocking path, chosen by the flag.
    Sync,
    /// The legacy path, taken because the async leg of the same request failed.
    SyncFallback,
}

impl UploadPath {
    /// Every path, in label order.
    pub const ALL: [UploadPath; 3] = [
        UploadPath::Async,
        UploadPath::Sync,
        UploadPath::SyncFallback,
    ];

    /// The stable label value: `async`, `sync` or `sync_fallback`.
    pub const fn as_str(self) -> &'static str {
        match self {
            UploadPath::Async => "async",
            UploadPath::Sync => "sync",
            UploadPath::SyncFallback => "sync_fallback",
        }
    }

    /// Whether a request whose leg took this path was routed to the async path by the flag (a
    /// fallback leg's request was).
    pub const fn routed_async(self) -> bool {
        !matches!(self, UploadPath::Sync)
    }

    pub(crate) const fn index(self) -> usize {
        match self {
            UploadPath::Async => 0,
            UploadPath::Sync => 1,
            UploadPath::SyncFallback => 2,
        }
    }
}

impl fmt::Display for UploadPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for UploadPath {
    type Err = TelemetryError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        UploadPath::ALL
            .into_iter()
            .find(|path| path.as_str() == value)
            .ok_or_else(|| TelemetryError::UnknownLabelValue {
                label: "path",
                value: value.to_owned(),
            })
    }
}

/// How an attempt or a request leg ended. Used as the `outcome` and `reason` label values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The provider stored the file.
    Success,
    /// The provider rejected the request (4xx other than 429).
    ClientError,
    /// The provider failed (5xx).
    ServerError,
    /// The provider throttled the request (429).
    RateLimited,
    /// No complete response arrived in time.
    Timeout,
    /// The connection failed (DNS, connect, reset, TLS).
    TransportError,
    /// A local check refused the request before a byte was sent (size, purpose, missing file).
    RejectedBeforeSend,
}

impl Outcome {
    /// Every outcome, in label order.
    pub const ALL: [Outcome; 7] = [
        Outcome::Success,
        Outcome::ClientError,
        Outcome::ServerError,
        Outcome::RateLimited,
        Outcome::Timeout,
        Outcome::TransportError,
        Outcome::RejectedBeforeSend,
    ];

    /// The stable label value, e.g. `success`, `rate_limited`, `rejected_before_send`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::ClientError => "client_error",
            Outcome::ServerError => "server_error",
            Outcome::RateLimited => "rate_limited",
            Outcome::Timeout => "timeout",
            Outcome::TransportError => "transport_error",
            Outcome::RejectedBeforeSend => "rejected_before_send",
        }
    }

    /// True only for [`Outcome::Success`].
    pub const fn is_success(self) -> bool {
        matches!(self, Outcome::Success)
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Outcome {
    type Err = TelemetryError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        Outcome::ALL
            .into_iter()
            .find(|outcome| outcome.as_str() == value)
            .ok_or_else(|| TelemetryError::UnknownLabelValue {
                label: "outcome",
                value: value.to_owned(),
            })
    }
}

/// Whether an event reports one HTTP attempt or one whole leg of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// One HTTP attempt; a leg with retries emits several.
    Attempt,
    /// One leg of a request (the async leg, the sync leg, or the sync fallback leg), after retries.
    Request,
}

impl EventKind {
    /// `attempt` or `request`.
    pub const fn as_str(self) -> &'static str {
        match self {
            EventKind::Attempt => "attempt",
            EventKind::Request => "request",
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One observation of the uploader, timestamped by the caller's [`Clock`](crate::Clock).
///
/// Emission rules (the uploader's side of the contract):
/// - one [`EventKind::Attempt`] event per HTTP attempt, `attempt` counting from 1;
/// - one [`EventKind::Request`] event per leg, with the leg's final outcome, its duration from
///   the moment it held its path's concurrency slot to its end (retries and backoff included,
///   the wait for the slot not), that wait as `queue_wait`, and the number of attempts it took;
/// - when an async leg fails and the request falls back, the async leg's `Request` event carries
///   its failing outcome and `fallback_reason: Some(that outcome)`, and the fallback leg emits its
///   own `Request` event with path [`UploadPath::SyncFallback`].
///
/// The event carries no routing key, file name, API key or error message, so none can leak into a
/// metric label or a log line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadEvent {
    /// Attempt or whole leg.
    pub kind: EventKind,
    /// Provider name, e.g. `kimi`, `glm`, `openai`.
    pub provider: String,
    /// The path this attempt or leg took.
    pub path: UploadPath,
    /// How it ended.
    pub outcome: Outcome,
    /// Wall time it took: an attempt from its start to its answer; a leg from acquiring its path's
    /// concurrency slot to its end (retries and backoff included, the wait for the slot not).
    pub duration: Duration,
    /// For `Request`, how long the leg waited for its path's concurrency slot before it could
    /// start (zero for `Attempt` events and for legs refused before sending).
    #[serde(default)]
    pub queue_wait: Duration,
    /// Payload bytes: the file size for this upload.
    pub bytes: u64,
    /// For `Attempt`, the attempt number (1 = first try); for `Request`, the attempts the leg made.
    pub attempt: u32,
    /// Set on an async leg's `Request` event when the request fell back to the sync path.
    pub fallback_reason: Option<Outcome>,
    /// When the attempt or leg finished, from the caller's clock.
    pub at: SystemTime,
}

impl UploadEvent {
    /// True for a `Request` event of an async leg that fell back to the sync path.
    pub fn fell_back(&self) -> bool {
        self.kind == EventKind::Request && self.fallback_reason.is_some()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn label_values_round_trip_through_str_and_serde() {
        for path in UploadPath::ALL {
            assert_eq!(path.as_str().parse::<UploadPath>().unwrap(), path);
            let json = serde_json::to_string(&path).unwrap();
            assert_eq!(json, format!("\"{}\"", path.as_str()));
        }
        for outcome in Outcome::ALL {
            assert_eq!(outcome.as_str().parse::<Outcome>().unwrap(), outcome);
            let json = serde_json::to_string(&outcome).unwrap();
            assert_eq!(json, format!("\"{}\"", outcome.as_str()));
            assert_eq!(outcome.is_success(), outcome == Outcome::Success);
        }
    }

    #[test]
    fn unknown_label_value_names_the_value() {
        let err = "fast".parse::<UploadPath>().unwrap_err();
        assert_eq!(err.to_string(), "unknown path label value \"fast\"");
    }
}
