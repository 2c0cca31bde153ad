//! A fixed, realistic sequence of upload events and flag/rollout records, shared by the exposition
//! snapshot test and the `exposition` example (which CI pipes into `promtool check metrics`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use upramp_telemetry::{
    record_flag_evaluation, record_rollout_decision, record_rollout_percent, EventKind, Outcome,
    UploadEvent, UploadObserver, UploadPath,
};

/// 2023-11-14T22:13:20Z: any fixed instant will do.
pub fn start() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

struct Leg<'a> {
    provider: &'a str,
    path: UploadPath,
    bytes: u64,
    /// (outcome, duration in ms) of each attempt, in order.
    attempts: &'a [(Outcome, u64)],
    fallback: bool,
}

/// Emits the scenario's events to `observer`, one leg per second from [`start`].
pub fn emit(observer: &dyn UploadObserver) {
    use Outcome::*;
    use UploadPath::*;
    let legs = [
        Leg {
            provider: "kimi",
            path: Async,
            bytes: 1_200_000,
            attempts: &[(Success, 850)],
            fallback: false,
        },
        Leg {
            provider: "glm",
            path: Async,
            bytes: 40_000,
            attempts: &[(ServerError, 120), (Success, 95)],
            fallback: false,
        },
        // An async leg that times out twice and falls back; the sync fallback leg then succeeds.
        Leg {
            provider: "kimi",
            path: Async,
            bytes: 8_000_000,
            attempts: &[(Timeout, 30_000), (Timeout, 30_000)],
            fallback: true,
        },
        Leg {
            provider: "kimi",
            path: SyncFallback,
            bytes: 8_000_000,
            attempts: &[(Success, 4_200)],
            fallback: false,
        },
        Leg {
            provider: "glm",
            path: Sync,
            bytes: 512,
            attempts: &[(ClientError, 30)],
            fallback: false,
        },
        Leg {
            provider: "kimi",
            path: Sync,
            bytes: 3_000_000,
            attempts: &[(RateLimited, 15), (Success, 2_400)],
            fallback: false,
        },
        // Rejected locally before a byte was sent: a leg with no HTTP attempt.
        Leg {
            provider: "openai",
            path: Async,
            bytes: 600_000_000,
            attempts: &[],
            fallback: false,
        },
        Leg {
            provider: "glm",
            path: Async,
            bytes: 75_000,
            attempts: &[(Success, 4)],
            fallback: false,
        },
    ];
    let mut at = start();
    for (index, leg) in (0u64..).zip(legs) {
        observer.on_queued(leg.provider, leg.path, 1);
        observer.on_queued(leg.provider, leg.path, -1);
        observer.on_in_flight(leg.provider, leg.path, 1);
        let mut total = Duration::ZERO;
        for (number, (outcome, millis)) in (1u32..).zip(leg.attempts) {
            let duration = Duration::from_millis(*millis);
            total += duration;
            observer.on_event(&UploadEvent {
                kind: EventKind::Attempt,
                provider: leg.provider.to_owned(),
                path: leg.path,
                outcome: *outcome,
                duration,
                queue_wait: Duration::ZERO,
                bytes: leg.bytes,
                attempt: number,
                fallback_reason: None,
                at: at + total,
            });
        }
        let outcome = leg
            .attempts
            .last()
            .map_or(RejectedBeforeSend, |(outcome, _)| *outcome);
        observer.on_event(&UploadEvent {
            kind: EventKind::Request,
            provider: leg.provider.to_owned(),
            path: leg.path,
            outcome,
            duration: total,
            queue_wait: Duration::from_millis(3 * index),
            bytes: leg.bytes,
            attempt: leg.attempts.len() as u32,
            fallback_reason: leg.fallback.then_some(outcome),
            at: at + total,
        });
        observer.on_in_flight(leg.provider, leg.path, -1);
        at += Duration::from_secs(1);
    }
    // One upload still running when the exposition is rendered.
    observer.on_in_flight("kimi", Async, 1);
    // And one waiting for its slot.
    observer.on_queued("kimi", Async, 1);
}

/// Records the scenario's flag and rollout metrics with the current recorder.
pub fn record_flags() {
    for variant in ["async", "async", "async", "sync", "sync"] {
        record_flag_evaluation("async_upload", variant);
    }
    record_rollout_percent("async_upload", 10.0);
    record_rollout_decision("async_upload", "advance");
    record_rollout_decision("async_upload", "hold");
    upramp_telemetry::record_rollout_apply_failure("async_upload");
    upramp_telemetry::record_rollout_apply_state("async_upload", 10.0, Some(1.0));
}
