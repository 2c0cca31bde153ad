//! Windowed gate aggregates: counts and latency quantiles per (provider, path) over a sliding window
//! of caller-supplied time, in memory bounded by the slice count.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::event::{EventKind, Outcome, UploadEvent, UploadPath};
use crate::observer::UploadObserver;
use crate::TelemetryError;

/// Shape and precision of a [`GateAggregator`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AggregatorConfig {
    /// How much time a snapshot covers; split into `slices` equal slices.
    pub window: Duration,
    /// Number of time slices in the window; old slices expire one at a time.
    pub slices: u32,
    /// HDR histogram precision: recorded latencies keep this many significant decimal digits, so a
    /// quantile is within a relative error of `10^-significant_digits` of the exact sample (1% for 2).
    pub significant_digits: u8,
    /// Latencies above this are recorded as this value (the histogram's upper bound).
    pub max_latency: Duration,
    /// Distinct providers tracked; events of further providers are dropped and counted.
    pub max_providers: usize,
}

impl Default for AggregatorConfig {
    /// One hour of 60 one-minute slices, 2 significant digits, latencies up to 10 minutes,
    /// 16 providers.
    fn default() -> Self {
        Self {
            window: Duration::from_secs(3600),
            slices: 60,
            significant_digits: 2,
            max_latency: Duration::from_secs(600),
            max_providers: 16,
        }
    }
}

impl AggregatorConfig {
    /// A default config with `window` split into `slices` slices.
    pub fn with_window(window: Duration, slices: u32) -> Self {
        Self {
            window,
            slices,
            ..Self::default()
        }
    }

    /// The length of one slice: `window / slices`.
    pub fn slice(&self) -> Duration {
        self.window / self.slices.max(1)
    }

    fn validate(&self) -> Result<(), TelemetryError> {
        let invalid = |field: &'static str, value: String, expected: &'static str| {
            Err(TelemetryError::InvalidAggregatorConfig {
                field,
                value,
                expected,
            })
        };
        if !(1..=100_000).contains(&self.slices) {
            return invalid("slices", self.slices.to_string(), "1 to 100000");
        }
        if self.window.is_zero() || self.window.as_nanos() % u128::from(self.slices) != 0 {
            return invalid(
                "window",
                format!("{:?}", self.window),
                "a positive duration divisible into `slices` equal slices",
            );
        }
        if self.slice() < Duration::from_millis(1) {
            return invalid(
                "window",
                format!("{:?}", self.window),
                "slices of at least 1ms (window / slices)",
            );
        }
        if !(1..=5).contains(&self.significant_digits) {
            return invalid(
                "significant_digits",
                self.significant_digits.to_string(),
                "1 to 5",
            );
        }
        if self.max_latency < Duration::from_millis(1)
            || self.max_latency.as_micros() > u128::from(u64::MAX / 2)
        {
            return invalid(
                "max_latency",
                format!("{:?}", self.max_latency),
                "at least 1ms and representable in microseconds",
            );
        }
        if self.max_providers == 0 {
            return invalid("max_providers", "0".to_owned(), "at least 1");
        }
        Ok(())
    }
}

/// Counts and latency quantiles of request legs on one path (for one provider, or merged).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathStats {
    /// Request legs that ended in the window.
    pub samples: u64,
    /// Legs with outcome `success`.
    pub successes: u64,
    /// Legs with any other outcome.
    pub errors: u64,
    /// Legs with outcome `timeout`.
    pub timeouts: u64,
    /// Legs that fell back to the sync path (async legs with a fallback reason).
    pub fallbacks: u64,
    /// Legs with outcome `rate_limited`.
    pub rate_limited: u64,
    /// Median leg duration (all outcomes), `None` without samples.
    pub p50: Option<Duration>,
    /// 95th percentile leg duration.
    pub p95: Option<Duration>,
    /// 99th percentile leg duration.
    pub p99: Option<Duration>,
}

impl PathStats {
    fn rate(&self, count: u64) -> Option<f64> {
        // Counts stay far below 2^53, where u64 -> f64 is exact.
        (self.samples > 0).then(|| count as f64 / self.samples as f64)
    }

    /// `successes / samples`, `None` without samples.
    pub fn success_rate(&self) -> Option<f64> {
        self.rate(self.successes)
    }

    /// `errors / samples`, `None` without samples.
    pub fn error_rate(&self) -> Option<f64> {
        self.rate(self.errors)
    }

    /// `timeouts / samples`, `None` without samples.
    pub fn timeout_rate(&self) -> Option<f64> {
        self.rate(self.timeouts)
    }

    /// `fallbacks / samples`, `None` without samples.
    pub fn fallback_rate(&self) -> Option<f64> {
        self.rate(self.fallbacks)
    }

    /// `rate_limited / samples`, `None` without samples.
    pub fn rate_limited_rate(&self) -> Option<f64> {
        self.rate(self.rate_limited)
    }
}

/// The stats of one (provider, path) pair in a [`WindowSnapshot`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderPathStats {
    /// Provider name as given in the events.
    pub provider: String,
    /// Upload path.
    pub path: UploadPath,
    /// Its stats over the window.
    pub stats: PathStats,
}

/// An immutable view of a [`GateAggregator`]'s window at one instant.
///
/// The window is made of whole slices: it starts at the beginning of the oldest slice still kept and
/// ends at `as_of`, so it spans between `window - slice` and `window`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowSnapshot {
    as_of: SystemTime,
    window_start: SystemTime,
    entries: Vec<ProviderPathStats>,
    by_path: BTreeMap<UploadPath, PathStats>,
    dropped_too_old: u64,
    dropped_over_provider_cap: u64,
}

impl WindowSnapshot {
    /// The instant the snapshot was taken for.
    pub fn as_of(&self) -> SystemTime {
        self.as_of
    }

    /// The start of the oldest slice in the window.
    pub fn window_start(&self) -> SystemTime {
        self.window_start
    }

    /// Stats of `path` merged over every provider (zeros when there were no samples).
    pub fn path_stats(&self, path: UploadPath) -> PathStats {
        self.by_path.get(&path).copied().unwrap_or_default()
    }

    /// Stats of one (provider, path) pair, `None` when it had no samples in the window.
    pub fn provider_stats(&self, provider: &str, path: UploadPath) -> Option<PathStats> {
        self.entries
            .iter()
            .find(|entry| entry.provider == provider && entry.path == path)
            .map(|entry| entry.stats)
    }

    /// Every (provider, path) pair with samples, sorted by provider then path.
    pub fn entries(&self) -> &[ProviderPathStats] {
        &self.entries
    }

    /// Request legs in the window over every provider and path.
    pub fn total_samples(&self) -> u64 {
        self.by_path.values().map(|stats| stats.samples).sum()
    }

    /// Events dropped since the aggregator was created because their slice had already been reused
    /// by newer time (or they predate the Unix epoch).
    pub fn dropped_too_old(&self) -> u64 {
        self.dropped_too_old
    }

    /// Events dropped since the aggregator was created because their provider exceeded
    /// [`AggregatorConfig::max_providers`].
    pub fn dropped_over_provider_cap(&self) -> u64 {
        self.dropped_over_provider_cap
    }
}

/// The size of an aggregator's state, for checking that memory stays bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Footprint {
    /// Providers tracked (at most `max_providers`).
    pub providers: usize,
    /// Time slices allocated: `providers * 3 paths * slices`.
    pub slices: usize,
    /// Histograms allocated (at most one per slice, reused when a slice expires).
    pub histograms: usize,
    /// Counter cells across those histograms.
    pub histogram_cells: usize,
}

/// An [`UploadObserver`] that keeps the windowed aggregates the rollout gates judge.
///
/// It reads only `Request` events. Each (provider, path) has a ring of `slices` fixed time slices
/// keyed by the event's own timestamp (`slice number = at / slice length`), each with counters and
/// an HDR histogram of latencies (microseconds, [`AggregatorConfig::significant_digits`]
/// precision). A slice is reset and reused when newer time maps onto it, so memory is bounded by
/// `max_providers * 3 * slices` slices whatever the traffic. An event whose slice has already been
/// reused by newer time is dropped and counted; an event from the future occupies only its own
/// slice and shows up once `snapshot`'s `now` reaches it.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use upramp_telemetry::{
///     AggregatorConfig, EventKind, GateAggregator, Outcome, UploadEvent, UploadObserver, UploadPath,
/// };
///
/// let gate = GateAggregator::new(AggregatorConfig::with_window(Duration::from_secs(600), 10))?;
/// let t0 = UNIX_EPOCH + Duration::from_secs(1_000_000);
/// for (i, outcome) in [Outcome::Success, Outcome::Success, Outcome::Timeout].into_iter().enumerate() {
///     gate.on_event(&UploadEvent {
///         kind: EventKind::Request,
///         provider: "kimi".into(),
///         path: UploadPath::Async,
///         outcome,
///         duration: Duration::from_millis(100 * (i as u64 + 1)),
///         queue_wait: Duration::ZERO,
///         bytes: 1024,
///         attempt: 1,
///         fallback_reason: None,
///         at: t0,
///     });
/// }
/// let stats = gate.snapshot(t0).path_stats(UploadPath::Async);
/// assert_eq!((stats.samples, stats.successes, stats.timeouts), (3, 2, 1));
/// assert_eq!(stats.timeout_rate(), Some(1.0 / 3.0));
/// // Ten minutes later every slice holding those events has expired.
/// assert_eq!(gate.snapshot(t0 + Duration::from_secs(600)).total_samples(), 0);
/// # Ok::<(), upramp_telemetry::TelemetryError>(())
/// ```
#[derive(Debug)]
pub struct GateAggregator {
    config: AggregatorConfig,
    slice_nanos: u128,
    max_micros: u64,
    template: Histogram<u32>,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    providers: HashMap<String, [Ring; 3]>,
    dropped_too_old: u64,
    dropped_over_provider_cap: u64,
}

#[derive(Debug)]
struct Ring {
    slots: Vec<Slot>,
}

#[derive(Debug, Default)]
struct Slot {
    /// The slice number this slot holds, `None` until first used.
    slice: Option<u64>,
    counts: Counts,
    latencies: Option<Histogram<u32>>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    samples: u64,
    successes: u64,
    timeouts: u64,
    fallbacks: u64,
    rate_limited: u64,
}

impl Counts {
    fn add(&mut self, other: &Counts) {
        self.samples += other.samples;
        self.successes += other.successes;
        self.timeouts += other.timeouts;
        self.fallbacks += other.fallbacks;
        self.rate_limited += other.rate_limited;
    }
}

impl GateAggregator {
    /// An empty aggregator.
    ///
    /// # Errors
    /// [`TelemetryError::InvalidAggregatorConfig`] naming the field and value that is out of range.
    pub fn new(config: AggregatorConfig) -> Result<Self, TelemetryError> {
        config.validate()?;
        let max_micros = u64::try_from(config.max_latency.as_micros()).unwrap_or(u64::MAX / 2);
        let template = Histogram::new_with_bounds(1, max_micros.max(2), config.significant_digits)
            .map_err(|_| TelemetryError::InvalidAggregatorConfig {
                field: "significant_digits",
                value: config.significant_digits.to_string(),
                expected: "a precision the histogram can represent for max_latency",
            })?;
        Ok(Self {
            slice_nanos: config.slice().as_nanos(),
            config,
            max_micros,
            template,
            state: Mutex::new(State::default()),
        })
    }

    /// Its configuration.
    pub fn config(&self) -> &AggregatorConfig {
        &self.config
    }

    fn slice_of(&self, at: SystemTime) -> Option<u64> {
        let since_epoch = at.duration_since(UNIX_EPOCH).ok()?;
        u64::try_from(since_epoch.as_nanos() / self.slice_nanos).ok()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds a `Request` event to its slice; `Attempt` events are ignored.
    pub fn record(&self, event: &UploadEvent) {
        if event.kind != EventKind::Request {
            return;
        }
        let micros = u64::try_from(event.duration.as_micros())
            .unwrap_or(u64::MAX)
            .clamp(1, self.max_micros);
        let slice = self.slice_of(event.at);
        let slots = self.config.slices as usize;
        let mut state = self.lock();
        let Some(slice) = slice else {
            state.dropped_too_old += 1;
            return;
        };
        if !state.providers.contains_key(event.provider.as_str()) {
            if state.providers.len() >= self.config.max_providers {
                state.dropped_over_provider_cap += 1;
                return;
            }
            let rings = std::array::from_fn(|_| Ring {
                slots: (0..slots).map(|_| Slot::default()).collect(),
            });
            state.providers.insert(event.provider.clone(), rings);
        }
        let Some(rings) = state.providers.get_mut(event.provider.as_str()) else {
            return;
        };
        // `slices` fits in usize and the modulus is below it.
        let slot =
            &mut rings[event.path.index()].slots[(slice % u64::from(self.config.slices)) as usize];
        match slot.slice {
            Some(held) if held > slice => {
                state.dropped_too_old += 1;
                return;
            }
            Some(held) if held == slice => {}
            _ => {
                slot.slice = Some(slice);
                slot.counts = Counts::default();
                if let Some(latencies) = slot.latencies.as_mut() {
                    latencies.reset();
                }
            }
        }
        let counts = &mut slot.counts;
        counts.samples += 1;
        match event.outcome {
            Outcome::Success => counts.successes += 1,
            Outcome::Timeout => counts.timeouts += 1,
            Outcome::RateLimited => counts.rate_limited += 1,
            _ => {}
        }
        if event.fallback_reason.is_some() {
            counts.fallbacks += 1;
        }
        slot.latencies
            .get_or_insert_with(|| self.template.clone())
            .saturating_record(micros);
    }

    /// The aggregates of the slices in the window ending at `now` (slices after `now` are left out).
    pub fn snapshot(&self, now: SystemTime) -> WindowSnapshot {
        let newest = self.slice_of(now);
        let oldest = newest.map(|n| n.saturating_sub(u64::from(self.config.slices) - 1));
        let window_start = oldest
            .and_then(|slice| {
                let nanos = u128::from(slice) * self.slice_nanos;
                UNIX_EPOCH.checked_add(Duration::from_nanos(u64::try_from(nanos).ok()?))
            })
            .unwrap_or(now);
        let mut merged: Vec<(String, UploadPath, Counts, Histogram<u32>)> = Vec::new();
        let (dropped_too_old, dropped_over_provider_cap) = {
            let state = self.lock();
            if let (Some(oldest), Some(newest)) = (oldest, newest) {
                for (provider, rings) in &state.providers {
                    for path in UploadPath::ALL {
                        let mut counts = Counts::default();
                        let mut latencies = self.template.clone();
                        for slot in &rings[path.index()].slots {
                            let in_window =
                                slot.slice.is_some_and(|s| (oldest..=newest).contains(&s));
                            if !in_window {
                                continue;
                            }
                            counts.add(&slot.counts);
                            if let Some(slot_latencies) = &slot.latencies {
                                // Cannot fail: every histogram is a clone of the same template.
                                let _ = latencies.add(slot_latencies);
                            }
                        }
                        if counts.samples > 0 {
                            merged.push((provider.clone(), path, counts, latencies));
                        }
                    }
                }
            }
            (state.dropped_too_old, state.dropped_over_provider_cap)
        };

        merged.sort_by(|a, b| (a.0.as_str(), a.1).cmp(&(b.0.as_str(), b.1)));
        let mut per_path: BTreeMap<UploadPath, (Counts, Histogram<u32>)> = UploadPath::ALL
            .into_iter()
            .map(|path| (path, (Counts::default(), self.template.clone())))
            .collect();
        let mut entries = Vec::with_capacity(merged.len());
        for (provider, path, counts, latencies) in merged {
            if let Some((path_counts, path_latencies)) = per_path.get_mut(&path) {
                path_counts.add(&counts);
                // Cannot fail: same template as above.
                let _ = path_latencies.add(&latencies);
            }
            entries.push(ProviderPathStats {
                provider,
                path,
                stats: stats_of(&counts, &latencies),
            });
        }
        let by_path = per_path
            .into_iter()
            .map(|(path, (counts, latencies))| (path, stats_of(&counts, &latencies)))
            .collect();
        WindowSnapshot {
            as_of: now,
            window_start,
            entries,
            by_path,
            dropped_too_old,
            dropped_over_provider_cap,
        }
    }

    /// How much state the aggregator holds now.
    pub fn footprint(&self) -> Footprint {
        let state = self.lock();
        let mut footprint = Footprint {
            providers: state.providers.len(),
            slices: 0,
            histograms: 0,
            histogram_cells: 0,
        };
        for ring in state.providers.values().flatten() {
            footprint.slices += ring.slots.len();
            for latencies in ring.slots.iter().filter_map(|slot| slot.latencies.as_ref()) {
                footprint.histograms += 1;
                footprint.histogram_cells += latencies.distinct_values();
            }
        }
        footprint
    }
}

fn stats_of(counts: &Counts, latencies: &Histogram<u32>) -> PathStats {
    let quantile = |q: f64| {
        (!latencies.is_empty()).then(|| Duration::from_micros(latencies.value_at_quantile(q)))
    };
    PathStats {
        samples: counts.samples,
        successes: counts.successes,
        errors: counts.samples - counts.successes,
        timeouts: counts.timeouts,
        fallbacks: counts.fallbacks,
        rate_limited: counts.rate_limited,
        p50: quantile(0.50),
        p95: quantile(0.95),
        p99: quantile(0.99),
    }
}

impl UploadObserver for GateAggregator {
    fn on_event(&self, event: &UploadEvent) {
        self.record(event);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn event(provider: &str, path: UploadPath, outcome: Outcome, at: SystemTime) -> UploadEvent {
        UploadEvent {
            kind: EventKind::Request,
            provider: provider.into(),
            path,
            outcome,
            duration: Duration::from_millis(10),
            queue_wait: Duration::ZERO,
            bytes: 1,
            attempt: 1,
            fallback_reason: None,
            at,
        }
    }

    #[test]
    fn config_errors_name_field_and_value() {
        let err = GateAggregator::new(AggregatorConfig::with_window(Duration::from_secs(10), 0))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid aggregator config: slices = 0 (expected 1 to 100000)"
        );
        let err = GateAggregator::new(AggregatorConfig::with_window(Duration::from_secs(10), 3))
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("invalid aggregator config: window = 10s"),
            "{err}"
        );
        let config = AggregatorConfig {
            significant_digits: 6,
            ..AggregatorConfig::default()
        };
        assert!(GateAggregator::new(config).is_err());
    }

    #[test]
    fn attempts_are_ignored_and_too_old_events_are_dropped() {
        let gate = GateAggregator::new(AggregatorConfig::with_window(Duration::from_secs(10), 10))
            .unwrap();
        let t = UNIX_EPOCH + Duration::from_secs(100);
        let mut attempt = event("kimi", UploadPath::Async, Outcome::Success, t);
        attempt.kind = EventKind::Attempt;
        gate.record(&attempt);
        assert_eq!(gate.snapshot(t).total_samples(), 0);

        gate.record(&event("kimi", UploadPath::Async, Outcome::Success, t));
        // 10s earlier maps onto the same slot, which now holds newer time.
        gate.record(&event(
            "kimi",
            UploadPath::Async,
            Outcome::Success,
            t - Duration::from_secs(10),
        ));
        let snapshot = gate.snapshot(t);
        assert_eq!(snapshot.total_samples(), 1);
        assert_eq!(snapshot.dropped_too_old(), 1);
    }

    #[test]
    fn future_events_wait_for_their_slice_and_provider_cap_holds() {
        let config = AggregatorConfig {
            max_providers: 1,
            ..AggregatorConfig::with_window(Duration::from_secs(10), 10)
        };
        let gate = GateAggregator::new(config).unwrap();
        let t = UNIX_EPOCH + Duration::from_secs(100);
        gate.record(&event(
            "kimi",
            UploadPath::Sync,
            Outcome::Success,
            t + Duration::from_secs(5),
        ));
        gate.record(&event("glm", UploadPath::Sync, Outcome::Success, t));
        let now = gate.snapshot(t);
        assert_eq!(now.total_samples(), 0);
        assert_eq!(now.dropped_over_provider_cap(), 1);
        let later = gate.snapshot(t + Duration::from_secs(5));
        assert_eq!(
            later
                .provider_stats("kimi", UploadPath::Sync)
                .map(|s| s.samples),
            Some(1)
        );
        assert_eq!(later.provider_stats("glm", UploadPath::Sync), None);
    }
}
