//! `AggregatorSource` over the in-process telemetry aggregator.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use upramp_rollout::{AggregatorSource, MetricsSource};
use upramp_telemetry::{
    AggregatorConfig, EventKind, GateAggregator, Outcome, UploadEvent, UploadPath,
};

fn leg(path: UploadPath, outcome: Outcome, fallback: bool, at: SystemTime, ms: u64) -> UploadEvent {
    UploadEvent {
        kind: EventKind::Request,
        provider: "kimi".to_owned(),
        path,
        outcome,
        duration: Duration::from_millis(ms),
        queue_wait: Duration::ZERO,
        bytes: 1_024,
        attempt: 1,
        fallback_reason: fallback.then_some(outcome),
        at,
    }
}

#[test]
fn async_legs_are_judged_and_fallback_legs_stay_out_of_the_control() {
    let aggregator = Arc::new(
        GateAggregator::new(AggregatorConfig::with_window(
            Duration::from_secs(3_600),
            60,
        ))
        .unwrap(),
    );
    let t0 = UNIX_EPOCH + Duration::from_secs(1_714_521_600);
    for i in 0..100u64 {
        let at = t0 + Duration::from_secs(i);
        let async_outcome = match i % 25 {
            0 => Outcome::ServerError,
            1 => Outcome::Timeout,
            2 => Outcome::RateLimited,
            _ => Outcome::Success,
        };
        let failed = async_outcome != Outcome::Success;
        aggregator.record(&leg(UploadPath::Async, async_outcome, failed, at, 50));
        if failed {
            aggregator.record(&leg(
                UploadPath::SyncFallback,
                Outcome::Success,
                false,
                at,
                80,
            ));
        }
        aggregator.record(&leg(UploadPath::Sync, Outcome::Success, false, at, 40));
    }
    let mut source = AggregatorSource::new(aggregator);
    let inputs = source.window(t0 + Duration::from_secs(200)).unwrap();
    assert_eq!(inputs.async_.samples, 100);
    assert_eq!(inputs.async_.successes, 88);
    assert_eq!(
        inputs.async_.errors, 4,
        "timeouts and rate limits are counted apart"
    );
    assert_eq!(inputs.async_.timeouts, 4);
    assert_eq!(inputs.async_.rate_limited, 4);
    assert_eq!(inputs.async_.fallbacks, 12);
    assert_eq!(
        inputs.sync.samples, 100,
        "sync_fallback legs are not in the control"
    );
    assert_eq!(inputs.sync.successes, 100);
    assert_eq!(inputs.sync.fallbacks, 0);
    let p99 = inputs.async_.p99.unwrap();
    assert!(
        p99 >= Duration::from_millis(49) && p99 <= Duration::from_millis(51),
        "{p99:?}"
    );
}
