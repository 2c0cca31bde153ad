//! A load driver: run jobs through a caller-supplied async function at bounded concurrency, and report
//! every result with its latency plus a summary.
//!
//! The harness knows nothing of the uploader: the caller passes the function that does one job.
//!
//! ```
//! use upramp_harness::load;
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let report = load::run((0u64..20).collect(), 4, |n| async move {
//!     if n % 5 == 0 { Err("unlucky") } else { Ok(n * 1024) }
//! })
//! .await;
//! assert_eq!(report.results.len(), 20);
//! let summary = report.summarize(|outcome| if outcome.is_ok() { "ok" } else { "error" }, |bytes| *bytes);
//! assert_eq!(summary.counts["ok"], 16);
//! assert_eq!(summary.counts["error"], 4);
//! assert_eq!(summary.bytes, (0..20).filter(|n| n % 5 != 0).map(|n| n * 1024).sum::<u64>());
//! # });
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::time::{Duration, Instant};

use futures::StreamExt;

/// One job's result.
#[derive(Debug, Clone, PartialEq)]
pub struct JobResult<T, E> {
    /// The job's position in the input.
    pub index: usize,
    /// What the job function returned.
    pub outcome: Result<T, E>,
    /// How long the job function took, from its first poll to completion.
    pub latency: Duration,
}

/// Every job's result, in input order, and the run's wall time.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadReport<T, E> {
    /// One entry per job, in input order.
    pub results: Vec<JobResult<T, E>>,
    /// Wall time of the whole run.
    pub elapsed: Duration,
    /// The concurrency the run used.
    pub concurrency: usize,
}

/// Counts, throughput and latency percentiles of a run.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LoadSummary {
    /// Jobs run.
    pub jobs: usize,
    /// Jobs per outcome class, as the caller classified them.
    pub counts: BTreeMap<String, usize>,
    /// Bytes the caller counted across all jobs.
    pub bytes: u64,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// Jobs per second of wall time.
    pub jobs_per_sec: f64,
    /// Counted bytes per second of wall time.
    pub bytes_per_sec: f64,
    /// Median job latency (nearest rank).
    pub p50: Duration,
    /// 95th percentile job latency (nearest rank).
    pub p95: Duration,
    /// 99th percentile job latency (nearest rank).
    pub p99: Duration,
    /// Slowest job.
    pub max: Duration,
}

/// Run every job through `job` with at most `concurrency` in flight (0 is treated as 1), and return
/// each result with its latency, in input order.
pub async fn run<J, F, Fut, T, E>(jobs: Vec<J>, concurrency: usize, job: F) -> LoadReport<T, E>
where
    F: Fn(J) -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let concurrency = concurrency.max(1);
    let started = Instant::now();
    let job = &job;
    let mut results: Vec<JobResult<T, E>> = futures::stream::iter(jobs.into_iter().enumerate())
        .map(|(index, input)| async move {
            let begun = Instant::now();
            let outcome = job(input).await;
            JobResult {
                index,
                outcome,
                latency: begun.elapsed(),
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    results.sort_by_key(|result| result.index);
    LoadReport {
        results,
        elapsed: started.elapsed(),
        concurrency,
    }
}

impl<T, E> LoadReport<T, E> {
    /// Summarise with `Ok` counted as `ok` and `Err` as `error`, and no byte counts.
    pub fn summary(&self) -> LoadSummary {
        self.summarize(
            |outcome| if outcome.is_ok() { "ok" } else { "error" },
            |_| 0,
        )
    }

    /// Summarise with the caller's outcome classes and the bytes each successful job moved.
    pub fn summarize<C, K>(&self, classify: C, bytes: impl Fn(&T) -> u64) -> LoadSummary
    where
        C: Fn(&Result<T, E>) -> K,
        K: Into<String>,
    {
        let mut counts = BTreeMap::new();
        let mut total_bytes = 0u64;
        for result in &self.results {
            *counts.entry(classify(&result.outcome).into()).or_insert(0) += 1;
            if let Ok(value) = &result.outcome {
                total_bytes += bytes(value);
            }
        }
        let mut latencies: Vec<Duration> =
            self.results.iter().map(|result| result.latency).collect();
        latencies.sort_unstable();
        let seconds = self.elapsed.as_secs_f64();
        let per_second = |amount: f64| if seconds > 0.0 { amount / seconds } else { 0.0 };
        LoadSummary {
            jobs: self.results.len(),
            counts,
            bytes: total_bytes,
            elapsed: self.elapsed,
            jobs_per_sec: per_second(self.results.len() as f64),
            bytes_per_sec: per_second(total_bytes as f64),
            p50: quantile(&latencies, 0.50).unwrap_or_default(),
            p95: quantile(&latencies, 0.95).unwrap_or_default(),
            p99: quantile(&latencies, 0.99).unwrap_or_default(),
            max: latencies.last().copied().unwrap_or_default(),
        }
    }
}

/// The `q` quantile (`0.0..=1.0`, clamped) of `sorted` values by the nearest-rank method: the value
/// at rank `ceil(q * n)` (at least 1), so it is always one of the values, never an interpolation.
/// `None` when there are none.
///
/// The one definition of a percentile in upramp's reports: the load summary, the validation
/// report and the benchmarks all rank this way.
///
/// ```
/// use upramp_harness::load::quantile;
///
/// let sorted: Vec<u32> = (1..=100).collect();
/// assert_eq!(quantile(&sorted, 0.99), Some(99));
/// assert_eq!(quantile(&sorted, 0.07), Some(7));
/// assert_eq!(quantile(&[1.5, 2.5], 0.5), Some(1.5));
/// assert_eq!(quantile::<u32>(&[], 0.5), None);
/// ```
pub fn quantile<T: Copy>(sorted: &[T], q: f64) -> Option<T> {
    let n = sorted.len();
    if n == 0 {
        return None;
    }
    let exact = q.clamp(0.0, 1.0) * n as f64;
    // `0.07 * 100.0` is 7.000000000000001 in binary floating point: a product within rounding
    // error of a whole rank is that rank, not the next one.
    let whole = exact.round();
    let rank = if (exact - whole).abs() <= 1e-9 * n as f64 {
        whole
    } else {
        exact.ceil()
    };
    sorted.get((rank as usize).clamp(1, n) - 1).copied()
}

impl fmt::Display for LoadSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let counts: Vec<String> = self
            .counts
            .iter()
            .map(|(class, count)| format!("{class}={count}"))
            .collect();
        write!(
            f,
            "{} jobs in {:.3}s ({:.1} jobs/s, {:.1} MiB/s): {}; latency p50 {:?} p95 {:?} p99 {:?} max {:?}",
            self.jobs,
            self.elapsed.as_secs_f64(),
            self.jobs_per_sec,
            self.bytes_per_sec / (1024.0 * 1024.0),
            counts.join(" "),
            self.p50,
            self.p95,
            self.p99,
            self.max,
        )
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use proptest::prelude::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[tokio::test]
    async fn concurrency_is_bounded_and_results_keep_input_order() {
        let in_flight = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let report = run((0..40usize).collect(), 3, |n| {
            let in_flight = Arc::clone(&in_flight);
            let peak = Arc::clone(&peak);
            async move {
                let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                // Yield a few times so other jobs get a chance to overlap.
                for _ in 0..n % 4 + 1 {
                    tokio::task::yield_now().await;
                }
                in_flight.fetch_sub(1, Ordering::SeqCst);
                if n % 10 == 9 {
                    Err(format!("job {n} failed"))
                } else {
                    Ok(n)
                }
            }
        })
        .await;
        assert!(peak.load(Ordering::SeqCst) <= 3);
        assert_eq!(report.concurrency, 3);
        let indices: Vec<usize> = report.results.iter().map(|result| result.index).collect();
        assert_eq!(indices, (0..40).collect::<Vec<_>>());
        assert_eq!(report.results[9].outcome, Err("job 9 failed".to_owned()));
        let summary = report.summary();
        assert_eq!(summary.jobs, 40);
        assert_eq!(summary.counts["ok"], 36);
        assert_eq!(summary.counts["error"], 4);
        assert!(
            summary.p50 <= summary.p95 && summary.p95 <= summary.p99 && summary.p99 <= summary.max
        );
    }

    #[tokio::test]
    async fn zero_concurrency_still_runs_everything() {
        let report = run(vec![1, 2, 3], 0, |n| async move { Ok::<_, ()>(n) }).await;
        assert_eq!(report.concurrency, 1);
        assert_eq!(report.results.len(), 3);
        let empty = run(Vec::<u8>::new(), 4, |n| async move { Ok::<_, ()>(n) }).await;
        assert_eq!(empty.summary().p99, Duration::ZERO);
    }

    #[test]
    fn nearest_rank_percentiles() {
        let sorted: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let at = |q| quantile(&sorted, q).unwrap();
        assert_eq!(at(0.50), Duration::from_millis(50));
        assert_eq!(at(0.95), Duration::from_millis(95));
        assert_eq!(at(0.99), Duration::from_millis(99));
        assert_eq!(at(1.0), Duration::from_millis(100));
        assert_eq!(at(0.0), Duration::from_millis(1));
        assert_eq!(at(1.5), Duration::from_millis(100));
        assert_eq!(quantile(&sorted[..1], 0.99), Some(Duration::from_millis(1)));
        assert_eq!(quantile::<Duration>(&[], 0.5), None);
    }

    #[test]
    fn summary_display_is_one_line() {
        let report = LoadReport {
            results: vec![
                JobResult {
                    index: 0,
                    outcome: Ok::<u64, ()>(2 << 20),
                    latency: Duration::from_millis(10),
                },
                JobResult {
                    index: 1,
                    outcome: Err(()),
                    latency: Duration::from_millis(30),
                },
            ],
            elapsed: Duration::from_secs(2),
            concurrency: 2,
        };
        let summary = report.summarize(
            |outcome| {
                if outcome.is_ok() {
                    "success"
                } else {
                    "timeout"
                }
            },
            |bytes| *bytes,
        );
        insta::assert_snapshot!(summary.to_string(), @"2 jobs in 2.000s (1.0 jobs/s, 1.0 MiB/s): success=1 timeout=1; latency p50 10ms p95 30ms p99 30ms max 30ms");
    }

    proptest! {
        #[test]
        fn percentiles_are_ordered_members(mut millis in proptest::collection::vec(0u64..10_000, 1..200)) {
            millis.sort_unstable();
            let sorted: Vec<Duration> = millis.iter().copied().map(Duration::from_millis).collect();
            let at = |q| quantile(&sorted, q).unwrap();
            let (p50, p95, p99) = (at(0.50), at(0.95), at(0.99));
            prop_assert!(p50 <= p95 && p95 <= p99);
            prop_assert!(sorted.contains(&p50) && sorted.contains(&p99));
        }

        /// A whole percent ranks exactly as integer arithmetic does, whatever the float rounding.
        #[test]
        fn whole_percents_rank_exactly(n in 1usize..3_000, percent in 0usize..=100) {
            let sorted: Vec<usize> = (1..=n).collect();
            let rank = (percent * n).div_ceil(100).max(1);
            prop_assert_eq!(quantile(&sorted, percent as f64 / 100.0), Some(rank));
        }
    }
}
