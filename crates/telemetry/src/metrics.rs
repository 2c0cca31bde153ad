//! Prometheus metrics through the `metrics` facade: names, descriptions, the observer and the
//! flag/rollout recording functions.
//!
//! Every label value comes from a closed set: paths and outcomes are enums, providers are checked
//! against an allow-list, and flag/variant/decision values must look like identifiers and are capped
//! in number, so a routing key, file name, API key or error message cannot become a label.

use std::collections::HashSet;
use std::sync::{Mutex, OnceLock, PoisonError};

use metrics::{
    counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Unit,
};

use crate::event::{EventKind, UploadEvent, UploadPath};
use crate::observer::UploadObserver;
use crate::TelemetryError;

/// Metric and label names, kept in one place (they are a public interface: dashboards and alerts
/// query them).
pub mod names {
    /// Counter of request legs, by `provider`, `path`, `outcome`.
    pub const UPLOADS_TOTAL: &str = "upramp_uploads_total";
    /// Histogram of request-leg durations in seconds, from acquiring the path's concurrency slot
    /// to the leg's end, by `provider`, `path`.
    pub const UPLOAD_DURATION_SECONDS: &str = "upramp_upload_duration_seconds";
    /// Histogram of the time request legs waited for their path's concurrency slot, in seconds,
    /// by `provider`, `path`.
    pub const UPLOAD_QUEUE_SECONDS: &str = "upramp_upload_queue_seconds";
    /// Counter of bytes uploaded by successful legs, by `provider`, `path`.
    pub const UPLOAD_BYTES_TOTAL: &str = "upramp_upload_bytes_total";
    /// Counter of retry attempts (attempt number above 1), by `provider`, `path`.
    pub const UPLOAD_RETRIES_TOTAL: &str = "upramp_upload_retries_total";
    /// Counter of async legs that fell back to the sync path, by `provider`, `reason`.
    pub const UPLOAD_FALLBACKS_TOTAL: &str = "upramp_upload_fallbacks_total";
    /// Gauge of request legs holding their path's concurrency slot, by `provider`, `path`.
    pub const UPLOADS_IN_FLIGHT: &str = "upramp_uploads_in_flight";
    /// Gauge of request legs waiting for their path's concurrency slot, by `provider`, `path`.
    pub const UPLOADS_QUEUED: &str = "upramp_uploads_queued";
    /// Counter of flag evaluations, by `flag`, `variant`.
    pub const FLAG_EVALUATIONS_TOTAL: &str = "upramp_flag_evaluations_total";
    /// Gauge of the applied rollout percentage (0-100), by `flag`.
    pub const ROLLOUT_PERCENT: &str = "upramp_rollout_percent";
    /// Counter of rollout controller decisions, by `flag`, `decision`.
    pub const ROLLOUT_DECISIONS_TOTAL: &str = "upramp_rollout_decisions_total";
    /// Counter of failed attempts to apply a rollout percent (the flag sink refused), by `flag`.
    pub const ROLLOUT_APPLY_FAILURES_TOTAL: &str = "upramp_rollout_apply_failures_total";
    /// Gauge of the rollout percent the controller wants applied (0-100), by `flag`.
    pub const ROLLOUT_DESIRED_PERCENT: &str = "upramp_rollout_desired_percent";
    /// Gauge of the rollout percent the flag sink last confirmed (0-100), by `flag`.
    pub const ROLLOUT_APPLIED_PERCENT: &str = "upramp_rollout_applied_percent";

    /// Every metric name above.
    pub const ALL: [&str; 14] = [
        UPLOADS_TOTAL,
        UPLOAD_DURATION_SECONDS,
        UPLOAD_QUEUE_SECONDS,
        UPLOAD_BYTES_TOTAL,
        UPLOAD_RETRIES_TOTAL,
        UPLOAD_FALLBACKS_TOTAL,
        UPLOADS_IN_FLIGHT,
        UPLOADS_QUEUED,
        FLAG_EVALUATIONS_TOTAL,
        ROLLOUT_PERCENT,
        ROLLOUT_DECISIONS_TOTAL,
        ROLLOUT_APPLY_FAILURES_TOTAL,
        ROLLOUT_DESIRED_PERCENT,
        ROLLOUT_APPLIED_PERCENT,
    ];

    /// Label: provider name from the observer's allow-list, or `other`.
    pub const LABEL_PROVIDER: &str = "provider";
    /// Label: `async`, `sync` or `sync_fallback`.
    pub const LABEL_PATH: &str = "path";
    /// Label: an [`Outcome`](crate::Outcome) value.
    pub const LABEL_OUTCOME: &str = "outcome";
    /// Label: the failing [`Outcome`](crate::Outcome) that caused a fallback.
    pub const LABEL_REASON: &str = "reason";
    /// Label: a flag name.
    pub const LABEL_FLAG: &str = "flag";
    /// Label: the variant a flag evaluated to.
    pub const LABEL_VARIANT: &str = "variant";
    /// Label: a rollout controller decision.
    pub const LABEL_DECISION: &str = "decision";

    /// Label value for a provider outside the allow-list, or a value past its label's cap.
    pub const OTHER: &str = "other";
    /// Label value replacing a flag/variant/decision value that is not an identifier.
    pub const INVALID: &str = "invalid";
}

/// Upper bounds (seconds) of the `upramp_upload_duration_seconds` and
/// `upramp_upload_queue_seconds` buckets: from 5 ms to 10 min.
pub const DURATION_BUCKETS_SECONDS: [f64; 16] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];

/// Providers the [`PrometheusObserver`] labels by name unless told otherwise.
pub const DEFAULT_PROVIDERS: [&str; 3] = ["kimi", "glm", "openai"];

/// Registers help text and units for every upramp metric with the current recorder.
///
/// [`install`](crate::install) and [`LocalMetrics::new`](crate::LocalMetrics::new) call it; call it
/// yourself only when you install your own recorder.
pub fn describe_metrics() {
    describe_counter!(
        names::UPLOADS_TOTAL,
        Unit::Count,
        "Upload request legs by provider, path and final outcome."
    );
    describe_histogram!(
        names::UPLOAD_DURATION_SECONDS,
        Unit::Seconds,
        "Duration of upload request legs from acquiring the path's concurrency slot to the end, retries included, by provider and path."
    );
    describe_histogram!(
        names::UPLOAD_QUEUE_SECONDS,
        Unit::Seconds,
        "Time upload request legs waited for their path's concurrency slot, by provider and path."
    );
    describe_counter!(
        names::UPLOAD_BYTES_TOTAL,
        Unit::Bytes,
        "Bytes uploaded by successful request legs, by provider and path."
    );
    describe_counter!(
        names::UPLOAD_RETRIES_TOTAL,
        Unit::Count,
        "Upload attempts after the first (retries), by provider and path."
    );
    describe_counter!(
        names::UPLOAD_FALLBACKS_TOTAL,
        Unit::Count,
        "Async upload legs that fell back to the sync path, by provider and failing outcome."
    );
    describe_gauge!(
        names::UPLOADS_IN_FLIGHT,
        Unit::Count,
        "Upload request legs holding their path's concurrency slot, by provider and path."
    );
    describe_gauge!(
        names::UPLOADS_QUEUED,
        Unit::Count,
        "Upload request legs waiting for their path's concurrency slot, by provider and path."
    );
    describe_counter!(
        names::FLAG_EVALUATIONS_TOTAL,
        Unit::Count,
        "Feature flag evaluations by flag and resulting variant."
    );
    describe_gauge!(
        names::ROLLOUT_PERCENT,
        Unit::Percent,
        "Rollout percentage currently applied to a flag (0-100)."
    );
    describe_counter!(
        names::ROLLOUT_DECISIONS_TOTAL,
        Unit::Count,
        "Rollout controller decisions by flag and decision."
    );
}

/// Records upload events as Prometheus metrics through the `metrics` facade.
///
/// It writes to whichever recorder is current when an event arrives (the global one from
/// [`install`](crate::install), or a [`LocalMetrics`](crate::LocalMetrics) scope in tests).
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use upramp_telemetry::{
///     EventKind, LocalMetrics, Outcome, PrometheusObserver, UploadEvent, UploadObserver, UploadPath,
/// };
///
/// let metrics = LocalMetrics::new()?;
/// let observer = PrometheusObserver::new();
/// metrics.scope(|| {
///     observer.on_event(&UploadEvent {
///         kind: EventKind::Request,
///         provider: "kimi".into(),
///         path: UploadPath::Async,
///         outcome: Outcome::Success,
///         duration: Duration::from_millis(120),
///         queue_wait: Duration::ZERO,
///         bytes: 2048,
///         attempt: 1,
///         fallback_reason: None,
///         at: UNIX_EPOCH,
///     });
/// });
/// let text = metrics.render();
/// assert!(text.contains(r#"upramp_uploads_total{provider="kimi",path="async",outcome="success"} 1"#));
/// # Ok::<(), upramp_telemetry::TelemetryError>(())
/// ```
#[derive(Debug, Clone)]
pub struct PrometheusObserver {
    providers: Vec<String>,
}

impl Default for PrometheusObserver {
    fn default() -> Self {
        Self::new()
    }
}

impl PrometheusObserver {
    /// An observer labelling [`DEFAULT_PROVIDERS`] by name and any other provider as `other`.
    pub fn new() -> Self {
        Self {
            providers: DEFAULT_PROVIDERS.iter().map(|p| (*p).to_owned()).collect(),
        }
    }

    /// An observer labelling exactly `providers` by name and any other provider as `other`.
    ///
    /// # Errors
    /// [`TelemetryError::InvalidLabelValue`] naming the first entry that is not a lowercase
    /// identifier (`[a-z][a-z0-9_]*`, at most 48 characters).
    pub fn with_providers<I, S>(providers: I) -> Result<Self, TelemetryError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut allowed = Vec::new();
        for provider in providers {
            let provider = provider.into();
            if !is_identifier(&provider) {
                return Err(TelemetryError::InvalidLabelValue {
                    label: names::LABEL_PROVIDER,
                    value: provider,
                });
            }
            if !allowed.contains(&provider) {
                allowed.push(provider);
            }
        }
        Ok(Self { providers: allowed })
    }

    /// The provider label value used for `provider`: itself if allowed, else `other`.
    pub fn provider_label(&self, provider: &str) -> &str {
        self.providers
            .iter()
            .find(|allowed| allowed.as_str() == provider)
            .map_or(names::OTHER, String::as_str)
    }
}

impl UploadObserver for PrometheusObserver {
    fn on_event(&self, event: &UploadEvent) {
        let provider = self.provider_label(&event.provider).to_owned();
        let path = event.path.as_str();
        match event.kind {
            EventKind::Attempt => {
                if event.attempt > 1 {
                    counter!(names::UPLOAD_RETRIES_TOTAL,
                        names::LABEL_PROVIDER => provider, names::LABEL_PATH => path)
                    .increment(1);
                }
            }
            EventKind::Request => {
                counter!(names::UPLOADS_TOTAL,
                    names::LABEL_PROVIDER => provider.clone(), names::LABEL_PATH => path,
                    names::LABEL_OUTCOME => event.outcome.as_str())
                .increment(1);
                histogram!(names::UPLOAD_DURATION_SECONDS,
                    names::LABEL_PROVIDER => provider.clone(), names::LABEL_PATH => path)
                .record(event.duration.as_secs_f64());
                histogram!(names::UPLOAD_QUEUE_SECONDS,
                    names::LABEL_PROVIDER => provider.clone(), names::LABEL_PATH => path)
                .record(event.queue_wait.as_secs_f64());
                if event.outcome.is_success() {
                    counter!(names::UPLOAD_BYTES_TOTAL,
                        names::LABEL_PROVIDER => provider.clone(), names::LABEL_PATH => path)
                    .increment(event.bytes);
                }
                if let Some(reason) = event.fallback_reason {
                    counter!(names::UPLOAD_FALLBACKS_TOTAL,
                        names::LABEL_PROVIDER => provider, names::LABEL_REASON => reason.as_str())
                    .increment(1);
                }
            }
        }
    }

    fn on_in_flight(&self, provider: &str, path: UploadPath, delta: i64) {
        let provider = self.provider_label(provider).to_owned();
        // Deltas are +-1 in practice; f64 holds every integer below 2^53 exactly.
        gauge!(names::UPLOADS_IN_FLIGHT,
            names::LABEL_PROVIDER => provider, names::LABEL_PATH => path.as_str())
        .increment(delta as f64);
    }

    fn on_queued(&self, provider: &str, path: UploadPath, delta: i64) {
        let provider = self.provider_label(provider).to_owned();
        gauge!(names::UPLOADS_QUEUED,
            names::LABEL_PROVIDER => provider, names::LABEL_PATH => path.as_str())
        .increment(delta as f64);
    }
}

/// Counts one evaluation of `flag` that resulted in `variant` (e.g. `async` / `sync`) in
/// `upramp_flag_evaluations_total{flag,variant}`.
///
/// Values must be lowercase identifiers (`[a-z][a-z0-9_]*`, at most 48 characters), anything else
/// is recorded as `invalid`; past 32 distinct flags or 16 distinct variants per process, new values
/// are recorded as `other`. So a routing key or file name passed by mistake cannot blow up
/// cardinality.
pub fn record_flag_evaluation(flag: &str, variant: &str) {
    counter!(names::FLAG_EVALUATIONS_TOTAL,
        names::LABEL_FLAG => FLAGS.admit(flag), names::LABEL_VARIANT => VARIANTS.admit(variant))
    .increment(1);
}

/// Sets `upramp_rollout_percent{flag}` to `percent` (0-100). Flag names follow the rules of
/// [`record_flag_evaluation`].
pub fn record_rollout_percent(flag: &str, percent: f64) {
    gauge!(names::ROLLOUT_PERCENT, names::LABEL_FLAG => FLAGS.admit(flag)).set(percent);
}

/// Counts one rollout controller `decision` (e.g. `advance`, `hold`, `rollback`) for `flag` in
/// `upramp_rollout_decisions_total{flag,decision}`. Values follow the rules of
/// [`record_flag_evaluation`] (at most 16 distinct decisions).
pub fn record_rollout_decision(flag: &str, decision: &str) {
    counter!(names::ROLLOUT_DECISIONS_TOTAL,
        names::LABEL_FLAG => FLAGS.admit(flag), names::LABEL_DECISION => DECISIONS.admit(decision))
    .increment(1);
}

const MAX_LABEL_LEN: usize = 48;

static FLAGS: LabelGuard = LabelGuard::new(32);
static VARIANTS: LabelGuard = LabelGuard::new(16);
static DECISIONS: LabelGuard = LabelGuard::new(16);

/// `[a-z][a-z0-9_]*`, at most [`MAX_LABEL_LEN`] bytes: rules out paths, file names with
/// extensions, messages with spaces, and most key formats (`sk-...`, mixed case).
fn is_identifier(value: &str) -> bool {
    let mut bytes = value.bytes();
    value.len() <= MAX_LABEL_LEN
        && bytes.next().is_some_and(|b| b.is_ascii_lowercase())
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Admits at most `cap` distinct identifier values for one label over the process lifetime.
struct LabelGuard {
    cap: usize,
    seen: OnceLock<Mutex<HashSet<String>>>,
}

impl LabelGuard {
    const fn new(cap: usize) -> Self {
        Self {
            cap,
            seen: OnceLock::new(),
        }
    }

    fn admit(&self, value: &str) -> String {
        if !is_identifier(value) {
            return names::INVALID.to_owned();
        }
        let mut seen = self
            .seen
            .get_or_init(Mutex::default)
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if seen.contains(value) {
            return value.to_owned();
        }
        if seen.len() < self.cap {
            seen.insert(value.to_owned());
            return value.to_owned();
        }
        names::OTHER.to_owned()
    }
}

/// Counts one failed apply of a rollout percent for `flag` in `upramp_rollout_apply_failures_total`
/// (the controller retries every tick; an alert fires while it keeps failing). Flag names follow the
/// rules of [`record_flag_evaluation`].
pub fn record_rollout_apply_failure(flag: &str) {
    describe_rollout_apply_metrics();
    counter!(names::ROLLOUT_APPLY_FAILURES_TOTAL, names::LABEL_FLAG => FLAGS.admit(flag))
        .increment(1);
}

/// Sets the desired/applied gauge pair `upramp_rollout_desired_percent{flag}` and
/// `upramp_rollout_applied_percent{flag}` (0-100); `applied` is `None` before any confirmed apply,
/// recorded as -1 so the pair never looks in agreement by accident.
pub fn record_rollout_apply_state(flag: &str, desired: f64, applied: Option<f64>) {
    describe_rollout_apply_metrics();
    let flag = FLAGS.admit(flag);
    gauge!(names::ROLLOUT_DESIRED_PERCENT, names::LABEL_FLAG => flag.clone()).set(desired);
    gauge!(names::ROLLOUT_APPLIED_PERCENT, names::LABEL_FLAG => flag).set(applied.unwrap_or(-1.0));
}

/// Rollout ticks are seconds apart, so describing on every record is cheap and reaches whichever
/// recorder is current.
fn describe_rollout_apply_metrics() {
    {
        describe_counter!(
            names::ROLLOUT_APPLY_FAILURES_TOTAL,
            Unit::Count,
            "Failed attempts to apply a rollout percent, by flag; retried every tick."
        );
        describe_gauge!(
            names::ROLLOUT_DESIRED_PERCENT,
            Unit::Percent,
            "Rollout percentage the controller wants applied to a flag (0-100)."
        );
        describe_gauge!(
            names::ROLLOUT_APPLIED_PERCENT,
            Unit::Percent,
            "Rollout percentage the flag sink last confirmed (0-100; -1 before the first apply)."
        );
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn identifiers_are_checked() {
        for good in ["async_upload", "a", "kimi2", "sync_fallback"] {
            assert!(is_identifier(good), "{good}");
        }
        let long = "a".repeat(MAX_LABEL_LEN + 1);
        for bad in [
            "",
            "Async",
            "report.pdf",
            "sk-abc",
            "a b",
            "/tmp/x",
            "1abc",
            long.as_str(),
        ] {
            assert!(!is_identifier(bad), "{bad}");
        }
    }

    #[test]
    fn guard_caps_distinct_values() {
        let guard = LabelGuard::new(2);
        assert_eq!(guard.admit("one"), "one");
        assert_eq!(guard.admit("two"), "two");
        assert_eq!(guard.admit("three"), names::OTHER);
        assert_eq!(guard.admit("one"), "one");
        assert_eq!(guard.admit("Not Valid"), names::INVALID);
    }

    #[test]
    fn provider_allow_list_is_validated() {
        let err = PrometheusObserver::with_providers(["kimi", "my.provider"]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid provider label value \"my.provider\": expected a lowercase identifier ([a-z][a-z0-9_]*, at most 48 characters)"
        );
        let observer = PrometheusObserver::with_providers(["kimi", "acme"]).unwrap_or_default();
        assert_eq!(observer.provider_label("acme"), "acme");
        assert_eq!(observer.provider_label("glm"), names::OTHER);
    }
}
