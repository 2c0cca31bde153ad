//! Gate aggregator invariants: quantile precision, exact counts, window expiry, bounded memory.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use proptest::prelude::*;
use upramp_telemetry::{
    AggregatorConfig, EventKind, GateAggregator, Outcome, PathStats, UploadEvent, UploadPath,
};

const PROVIDERS: [&str; 3] = ["kimi", "glm", "openai"];

fn t0() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

fn request(
    provider: &str,
    path: UploadPath,
    outcome: Outcome,
    micros: u64,
    at: SystemTime,
) -> UploadEvent {
    UploadEvent {
        kind: EventKind::Request,
        provider: provider.to_owned(),
        path,
        outcome,
        duration: Duration::from_micros(micros),
        queue_wait: Duration::ZERO,
        bytes: 1,
        attempt: 1,
        fallback_reason: (path == UploadPath::Async && !outcome.is_success()).then_some(outcome),
        at,
    }
}

/// The nearest-rank quantile, ranked exactly as HdrHistogram ranks (`ceil(q * n)`, at least 1).
fn exact_quantile(sorted: &[u64], q: f64) -> u64 {
    let rank = ((q * sorted.len() as f64).ceil() as usize).max(1);
    sorted[rank - 1]
}

#[derive(Debug, Clone)]
struct Sample {
    provider: usize,
    path: usize,
    outcome: usize,
    /// Offset from `t0()` in milliseconds.
    offset_ms: u64,
}

fn samples(max_offset_ms: u64) -> impl Strategy<Value = Vec<Sample>> {
    prop::collection::vec(
        (
            0..PROVIDERS.len(),
            0..3usize,
            0..Outcome::ALL.len(),
            0..max_offset_ms,
        )
            .prop_map(|(provider, path, outcome, offset_ms)| Sample {
                provider,
                path,
                outcome,
                offset_ms,
            }),
        0..300,
    )
}

/// Exact tallies of `samples` as the aggregator should report them (latency fields left out).
fn tally<'a>(samples: impl Iterator<Item = &'a Sample>) -> BTreeMap<(usize, usize), PathStats> {
    let mut stats: BTreeMap<(usize, usize), PathStats> = BTreeMap::new();
    for sample in samples {
        let entry = stats.entry((sample.provider, sample.path)).or_default();
        let outcome = Outcome::ALL[sample.outcome];
        entry.samples += 1;
        entry.successes += u64::from(outcome.is_success());
        entry.errors += u64::from(!outcome.is_success());
        entry.timeouts += u64::from(outcome == Outcome::Timeout);
        entry.rate_limited += u64::from(outcome == Outcome::RateLimited);
        entry.fallbacks +=
            u64::from(UploadPath::ALL[sample.path] == UploadPath::Async && !outcome.is_success());
    }
    stats
}

fn counts_only(stats: PathStats) -> PathStats {
    PathStats {
        p50: None,
        p95: None,
        p99: None,
        ..stats
    }
}

fn feed(gate: &GateAggregator, samples: &[Sample]) {
    for sample in samples {
        gate.record(&request(
            PROVIDERS[sample.provider],
            UploadPath::ALL[sample.path],
            Outcome::ALL[sample.outcome],
            1_000,
            t0() + Duration::from_millis(sample.offset_ms),
        ));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn quantiles_match_an_exact_sort_within_the_stated_precision(
        micros in prop::collection::vec(1u64..=600_000_000, 1..400),
        significant_digits in 1u8..=3,
    ) {
        let config = AggregatorConfig { significant_digits, ..AggregatorConfig::default() };
        let gate = GateAggregator::new(config).unwrap();
        for &value in &micros {
            gate.record(&request("kimi", UploadPath::Async, Outcome::Success, value, t0()));
        }
        let mut sorted = micros.clone();
        sorted.sort_unstable();
        let stats = gate.snapshot(t0()).path_stats(UploadPath::Async);
        let relative_error = 10f64.powi(-i32::from(significant_digits));
        for (q, reported) in [(0.50, stats.p50), (0.95, stats.p95), (0.99, stats.p99)] {
            let exact = exact_quantile(&sorted, q);
            let reported = reported.unwrap().as_micros() as u64;
            // HdrHistogram reports the top of the exact value's bucket: never below it, and above it
            // by at most the bucket width.
            prop_assert!(reported >= exact, "q{q}: {reported} < exact {exact}");
            prop_assert!(
                (reported - exact) as f64 <= exact as f64 * relative_error,
                "q{q}: {reported} vs exact {exact} beyond {relative_error}"
            );
        }
    }

    #[test]
    fn counts_and_rates_match_exact_tallies(samples in samples(60_000)) {
        let gate = GateAggregator::new(AggregatorConfig::with_window(Duration::from_secs(600), 10)).unwrap();
        feed(&gate, &samples);
        let snapshot = gate.snapshot(t0() + Duration::from_secs(60));
        let expected = tally(samples.iter());
        prop_assert_eq!(snapshot.entries().len(), expected.len());
        for (&(provider, path), stats) in &expected {
            let got = snapshot.provider_stats(PROVIDERS[provider], UploadPath::ALL[path]).unwrap();
            prop_assert_eq!(counts_only(got), *stats);
        }
        for path in UploadPath::ALL {
            let got = snapshot.path_stats(path);
            let mut merged = PathStats::default();
            for ((_, p), stats) in &expected {
                if UploadPath::ALL[*p] == path {
                    merged.samples += stats.samples;
                    merged.successes += stats.successes;
                    merged.errors += stats.errors;
                    merged.timeouts += stats.timeouts;
                    merged.rate_limited += stats.rate_limited;
                    merged.fallbacks += stats.fallbacks;
                }
            }
            prop_assert_eq!(counts_only(got), merged);
            let rate = |count: u64| (merged.samples > 0).then(|| count as f64 / merged.samples as f64);
            prop_assert_eq!(got.success_rate(), rate(merged.successes));
            prop_assert_eq!(got.error_rate(), rate(merged.errors));
            prop_assert_eq!(got.timeout_rate(), rate(merged.timeouts));
            prop_assert_eq!(got.fallback_rate(), rate(merged.fallbacks));
            prop_assert_eq!(got.p50.is_some(), merged.samples > 0);
        }
        prop_assert_eq!(snapshot.dropped_too_old(), 0);
    }

    #[test]
    fn old_slices_expire_as_time_moves_on(
        mut samples in samples(3_600_000),
        later_ms in 0u64..1_800_000,
    ) {
        // 10 minutes of 60 ten-second slices, events spread over an hour, fed in time order.
        let window = Duration::from_secs(600);
        let slice_ms = 10_000;
        let gate = GateAggregator::new(AggregatorConfig::with_window(window, 60)).unwrap();
        samples.sort_by_key(|sample| sample.offset_ms);
        feed(&gate, &samples);
        let last_ms = samples.last().map_or(0, |sample| sample.offset_ms);
        let now_ms = last_ms + later_ms;
        let snapshot = gate.snapshot(t0() + Duration::from_millis(now_ms));

        // t0 is a whole number of ten-second slices after the epoch, so slice boundaries fall on
        // whole multiples of `slice_ms` from t0; the oldest slice may lie before t0.
        let oldest_slice = (now_ms / slice_ms) as i64 - 59;
        let in_window = samples.iter().filter(|sample| (sample.offset_ms / slice_ms) as i64 >= oldest_slice);
        let expected = tally(in_window);
        prop_assert_eq!(snapshot.entries().len(), expected.len());
        for (&(provider, path), stats) in &expected {
            let got = snapshot.provider_stats(PROVIDERS[provider], UploadPath::ALL[path]).unwrap();
            prop_assert_eq!(counts_only(got), *stats);
        }
        let start_offset = Duration::from_millis(oldest_slice.unsigned_abs() * slice_ms);
        let expected_start = if oldest_slice >= 0 { t0() + start_offset } else { t0() - start_offset };
        prop_assert_eq!(snapshot.window_start(), expected_start);
        prop_assert_eq!(snapshot.dropped_too_old(), 0);
    }
}

#[test]
fn memory_does_not_grow_with_event_count() {
    // 20 providers against a cap of 16, every path, one hour of one-minute slices.
    let providers: Vec<String> = (0..20).map(|i| format!("provider{i}")).collect();
    let gate = GateAggregator::new(AggregatorConfig::default()).unwrap();
    let mut event = request("kimi", UploadPath::Async, Outcome::Success, 1_000, t0());
    let mut feed_range = |range: std::ops::Range<u64>| {
        for i in range {
            // One event per second; (provider, path) repeats every 60 events, so each pair gets one
            // event per one-minute slice and after 3600 events every slot holds a histogram.
            event.provider.clone_from(&providers[(i % 20) as usize]);
            event.path = UploadPath::ALL[(i % 3) as usize];
            event.outcome = Outcome::ALL[(i % 7) as usize];
            event.duration = Duration::from_micros(1 + (i * 7_919) % 300_000_000);
            event.at = t0() + Duration::from_secs(i);
            gate.record(&event);
        }
    };
    feed_range(0..7_200);
    let warm = gate.footprint();
    assert_eq!(warm.providers, 16);
    assert_eq!(warm.slices, 16 * 3 * 60);
    assert_eq!(warm.histograms, warm.slices);
    feed_range(7_200..200_000);
    assert_eq!(gate.footprint(), warm);

    let now_secs = 199_999;
    let snapshot = gate.snapshot(t0() + Duration::from_secs(now_secs));
    // The window starts 59 one-minute slices (counted from the epoch) before the current one.
    let t0_secs = t0().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let window_start_secs = ((t0_secs + now_secs) / 60 - 59) * 60 - t0_secs;
    let tracked_in_window = (window_start_secs..=now_secs)
        .filter(|i| i % 20 < 16)
        .count() as u64;
    assert_eq!(snapshot.total_samples(), tracked_in_window);
    assert!(snapshot.dropped_over_provider_cap() > 0);
}

#[test]
fn snapshot_serializes_and_reports_empty_rates_as_none() {
    let gate = GateAggregator::new(AggregatorConfig::default()).unwrap();
    gate.record(&request(
        "glm",
        UploadPath::Sync,
        Outcome::Timeout,
        2_000_000,
        t0(),
    ));
    let snapshot = gate.snapshot(t0());
    let empty = snapshot.path_stats(UploadPath::Async);
    assert_eq!(empty.samples, 0);
    assert_eq!(empty.success_rate(), None);
    assert_eq!(empty.p99, None);
    let sync = snapshot.path_stats(UploadPath::Sync);
    assert_eq!(sync.timeout_rate(), Some(1.0));
    assert_eq!(sync.p50.map(|d| d.as_secs()), Some(2));
    let json = serde_json::to_value(&snapshot).unwrap();
    assert_eq!(json["by_path"]["sync"]["timeouts"], 1);
    assert_eq!(json["entries"][0]["provider"], "glm");
    let clone = snapshot.clone();
    assert_eq!(clone, snapshot);
}
