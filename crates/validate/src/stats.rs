//! Binomial tolerance math for the async-share check.
//!
//! The flag routes a key to the async path when its bucket falls under the rollout percent, and the keys are
//! drawn at random, so the number of async-routed requests in a stage is binomial with the target
//! probability. A measured share is on target when it lies inside the normal-approximation band around the
//! target (with a continuity correction, so small samples are not failed by rounding).
//!
//! The Wilson interval and the nearest-rank quantile are re-exported from their owners (the rollout
//! crate and the harness), so the report computes them exactly as the gates and the load driver do.

/// Intervals of proportions are the rollout crate's: one type for the gates and the report.
pub use upramp_rollout::Interval;

/// Nearest-rank quantiles are the harness's: the report ranks latencies as the load driver and the
/// benchmarks do.
pub use upramp_harness::load::quantile;

/// The z value of a two-sided 99.9% normal interval: a healthy share fails it about once in a thousand
/// stages, and the run is seeded, so a given seed passes or fails the same way every time.
pub const SHARE_Z: f64 = 3.2905;

/// The z value of a two-sided 95% normal interval, used for the interval reported around a measured share.
pub const REPORT_Z: f64 = 1.96;

/// The Wilson score interval of `successes` out of `trials` at normal quantile `z`: the rollout
/// crate's [`upramp_rollout::wilson_interval`], the one the gates judge with, so the report's interval
/// around a measured share is computed exactly as a gate's would be (exact bounds at 0 and `trials`).
///
/// Returns `[0, 1]` for zero trials: no evidence either way.
///
/// ```
/// let i = upramp_validate::stats::wilson(98, 100, 1.96);
/// assert!(i.lo > 0.92 && i.hi < 0.995);
/// assert_eq!(upramp_validate::stats::wilson(0, 50, 1.96).lo, 0.0);
/// ```
pub fn wilson(successes: u64, trials: u64, z: f64) -> Interval {
    upramp_rollout::wilson_interval(successes, trials, z)
}

/// The band of measured shares accepted around `target` (a probability) for `trials` requests.
///
/// A target of exactly 0 or 1 has no tolerance at all: nobody may be routed async at 0%, everybody must be at
/// 100%.
///
/// ```
/// let band = upramp_validate::stats::share_band(0.10, 2_000, upramp_validate::stats::SHARE_Z);
/// assert!(band.contains(0.11) && !band.contains(0.14));
/// assert_eq!(upramp_validate::stats::share_band(0.0, 2_000, 3.0).hi, 0.0);
/// ```
pub fn share_band(target: f64, trials: u64, z: f64) -> Interval {
    if target <= 0.0 {
        return Interval { lo: 0.0, hi: 0.0 };
    }
    if target >= 1.0 {
        return Interval { lo: 1.0, hi: 1.0 };
    }
    if trials == 0 {
        return Interval { lo: 0.0, hi: 1.0 };
    }
    let n = trials as f64;
    let tolerance = z * (target * (1.0 - target) / n).sqrt() + 0.5 / n;
    Interval {
        lo: (target - tolerance).max(0.0),
        hi: (target + tolerance).min(1.0),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn wilson_matches_a_known_value() {
        // 95% Wilson interval for 10/100 is about [0.0552, 0.1744].
        let i = wilson(10, 100, REPORT_Z);
        assert!((i.lo - 0.0552).abs() < 1e-3, "{i:?}");
        assert!((i.hi - 0.1744).abs() < 1e-3, "{i:?}");
    }

    #[test]
    fn wilson_is_exact_at_the_extremes() {
        // No failure seen means an upper bound of exactly 1 (and none seen a lower bound of exactly
        // 0), not a float residue a threshold comparison could trip over.
        for trials in 1..2_000 {
            assert_eq!(wilson(0, trials, REPORT_Z).lo, 0.0, "0 of {trials}");
            assert_eq!(
                wilson(trials, trials, REPORT_Z).hi,
                1.0,
                "{trials} of {trials}"
            );
            assert_eq!(
                wilson(trials, trials, SHARE_Z).hi,
                1.0,
                "{trials} of {trials}"
            );
        }
    }

    #[test]
    fn share_band_is_exact_at_the_ends() {
        assert_eq!(share_band(0.0, 10, SHARE_Z), Interval { lo: 0.0, hi: 0.0 });
        assert_eq!(share_band(1.0, 10, SHARE_Z), Interval { lo: 1.0, hi: 1.0 });
    }

    #[test]
    fn share_band_narrows_with_more_trials() {
        let small = share_band(0.5, 100, SHARE_Z);
        let large = share_band(0.5, 10_000, SHARE_Z);
        assert!(large.hi - large.lo < small.hi - small.lo);
    }

    proptest! {
        #[test]
        fn wilson_contains_the_point_estimate(trials in 1u64..5_000, frac in 0.0f64..=1.0) {
            let successes = (trials as f64 * frac).round() as u64;
            let i = wilson(successes, trials, REPORT_Z);
            let p = successes as f64 / trials as f64;
            prop_assert!(i.lo <= p + 1e-12 && p <= i.hi + 1e-12);
            prop_assert!(0.0 <= i.lo && i.hi <= 1.0);
        }

        #[test]
        fn share_band_contains_its_target(target in 0.0f64..=1.0, trials in 0u64..100_000) {
            prop_assert!(share_band(target, trials, SHARE_Z).contains(target));
        }
    }
}
