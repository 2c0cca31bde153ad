//! What a validation run records: plain data, independent of the crates that produced it, so the checks
//! in [`crate::checks`] are pure functions that unit tests can feed by hand.

use std::fmt;

use serde::{Deserialize, Serialize};
pub use upramp_telemetry::UploadPath;

use crate::stats::Interval;

/// A provider stand-in the run talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// Moonshot's Kimi file API.
    Kimi,
    /// Zhipu's GLM file API.
    Glm,
}

impl Provider {
    /// Both providers, in report order.
    pub const ALL: [Provider; 2] = [Provider::Kimi, Provider::Glm];

    /// Stable lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Kimi => "kimi",
            Provider::Glm => "glm",
        }
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How one upload request ended, as the caller saw it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum RequestResult {
    /// The uploader returned a receipt.
    Receipt {
        /// The provider's file id.
        file_id: String,
        /// The path the successful leg took.
        path: UploadPath,
        /// SHA-256 (hex) the uploader computed over the bytes it sent.
        sha256: String,
        /// Bytes sent.
        bytes: u64,
        /// HTTP attempts made, over all legs.
        attempts: u32,
    },
    /// The uploader returned an error (recorded, so the request is accounted for).
    Error {
        /// The error, as displayed.
        message: String,
    },
}

/// One upload request and its result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestRecord {
    /// Which stand-in it went to.
    pub provider: Provider,
    /// The stickiness key the flag decided on.
    pub routing_key: String,
    /// Whether the flag, evaluated by the driver for the same key at submit time, said async.
    pub decided_async: bool,
    /// SHA-256 (hex) of the source file.
    pub source_sha256: String,
    /// Size of the source file.
    pub source_bytes: u64,
    /// What the uploader returned.
    pub result: RequestResult,
}

impl RequestRecord {
    /// Whether the request went to the async path: the receipt's path when there is one, the flag decision
    /// otherwise.
    pub fn routed_async(&self) -> bool {
        match &self.result {
            RequestResult::Receipt { path, .. } => path.routed_async(),
            RequestResult::Error { .. } => self.decided_async,
        }
    }

    /// Whether the caller got a receipt.
    pub fn succeeded(&self) -> bool {
        matches!(self.result, RequestResult::Receipt { .. })
    }
}

/// A file the stand-in says it stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredRecord {
    /// Which stand-in holds it.
    pub provider: Provider,
    /// The file id the stand-in assigned.
    pub id: String,
    /// Size in bytes.
    pub bytes: u64,
    /// SHA-256 (hex) the stand-in computed over what it received.
    pub sha256: String,
}

/// One leg of a request as the telemetry observer saw it (a `Request` event).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LegRecord {
    /// Simulated hours since the start of the run (or scenario) when the leg ended.
    pub at_hours: f64,
    /// Which path the leg ran on.
    pub path: UploadPath,
    /// Whether the leg succeeded.
    pub success: bool,
    /// Wall-clock duration of the leg in milliseconds.
    pub duration_ms: f64,
}

/// What the controller decided on one tick (or one manual operation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecisionKind {
    /// Moved to the next stage.
    Advance,
    /// Stayed in the stage.
    Hold,
    /// Rolled back to 0%.
    Rollback,
    /// Finished the last stage.
    Complete,
}

impl DecisionKind {
    /// Stable lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            DecisionKind::Advance => "advance",
            DecisionKind::Hold => "hold",
            DecisionKind::Rollback => "rollback",
            DecisionKind::Complete => "complete",
        }
    }
}

/// A gate's verdict on one evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The interval lies on the right side of the threshold, with enough samples.
    Pass,
    /// The interval lies on the wrong side of the threshold.
    Fail,
    /// Not enough evidence either way.
    Inconclusive,
}

/// One gate's verdict with its numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateRecord {
    /// Gate name as the controller reports it (e.g. `success_rate`).
    pub name: String,
    /// True for a verdict on the sync control (which must only not fail), false for the async path
    /// under rollout (which must pass).
    pub control: bool,
    /// The verdict.
    pub verdict: Verdict,
    /// The measured value, when there was one.
    pub value: Option<f64>,
    /// The threshold it was judged against.
    pub threshold: Option<f64>,
    /// The interval around the value, when the gate is statistical.
    pub interval: Option<Interval>,
}

/// One controller decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecisionRecord {
    /// Simulated hours since the start of the run (or scenario).
    pub at_hours: f64,
    /// Stage index the decision was taken in.
    pub stage_index: usize,
    /// Applied rollout percent after the decision.
    pub percent_after: f64,
    /// The decision.
    pub kind: DecisionKind,
    /// The controller's reason, as it states it.
    pub reason: String,
    /// Async-path samples the decision saw.
    pub async_samples: u64,
    /// Each gate's verdict.
    pub gates: Vec<GateRecord>,
}

/// A rollback as the audit log (the file, read back) records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRollback {
    /// The decision's reason.
    pub reason: String,
    /// The gates the record marks as failed, with their numbers.
    pub failed_gates: Vec<GateRecord>,
}

/// Where a controller stood, as read back from its state (before a stop, or after a restart).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControllerPosition {
    /// Current stage index.
    pub stage_index: usize,
    /// Applied percent, in thousandths.
    pub percent_thousandths: u32,
    /// State name (e.g. `baking`).
    pub state: String,
    /// When the stage's bake began (RFC 3339 or seconds since the epoch; compared as text).
    pub bake_started: String,
    /// Consecutive failed evaluations so far.
    pub consecutive_failures: u32,
}
