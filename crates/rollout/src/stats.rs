//! Binomial confidence intervals: the Wilson score interval the rate gates are judged with, and the
//! alpha-spending rule that sets its level for the fail side of each repeated look.

use serde::{Deserialize, Serialize};

/// A closed interval `[lo, hi]` of proportions in `0.0..=1.0`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    /// Lower bound.
    pub lo: f64,
    /// Upper bound.
    pub hi: f64,
}

impl Interval {
    /// Whether `value` lies inside the interval (bounds included).
    pub fn contains(&self, value: f64) -> bool {
        self.lo <= value && value <= self.hi
    }
}

/// The two-sided standard normal quantile for a confidence level: `z` such that
/// `P(-z <= Z <= z) = confidence`.
///
/// Returns `None` unless `0 < confidence < 1`.
///
/// ```
/// let z = upramp_rollout::z_for_confidence(0.95).unwrap();
/// assert!((z - 1.959_964).abs() < 1e-5);
/// ```
pub fn z_for_confidence(confidence: f64) -> Option<f64> {
    if !(confidence > 0.0 && confidence < 1.0) {
        return None;
    }
    Some(inverse_normal_cdf(1.0 - (1.0 - confidence) / 2.0))
}

/// The standard normal quantile with upper tail `tail`: `z` such that `P(Z > z) = tail`.
///
/// Returns `None` unless `0 < tail < 1`. Unlike going through [`z_for_confidence`] it stays accurate
/// for tails far below `f64::EPSILON` (`1 - tail` would round to 1), which late looks under
/// [`spent_alpha`] reach.
///
/// ```
/// let z = upramp_rollout::z_for_upper_tail(0.025).unwrap();
/// assert!((z - 1.959_964).abs() < 1e-5);
/// assert!(upramp_rollout::z_for_upper_tail(1e-30).unwrap() > 11.0);
/// ```
pub fn z_for_upper_tail(tail: f64) -> Option<f64> {
    if !(tail > 0.0 && tail < 1.0) {
        return None;
    }
    Some(-inverse_normal_cdf(tail))
}

/// The error budget the `look`-th evaluation of a stage may spend out of a stage's `alpha`:
/// `alpha * 6 / (pi^2 * look^2)` (look 0 counts as the first).
///
/// Because `sum 1/k^2 = pi^2 / 6`, the budgets of any number of looks add up to less than `alpha`, so
/// by the union bound a gate whose every look fails with probability at most its budget fails on some
/// look of the stage with probability at most `alpha`, however often the controller ticks and however
/// much consecutive windows overlap. The price is paid up front: the first look spends
/// `6 / pi^2 = 0.61` of `alpha`, not all of it.
///
/// ```
/// use upramp_rollout::spent_alpha;
/// assert!((spent_alpha(0.025, 1) - 0.025 * 6.0 / std::f64::consts::PI.powi(2)).abs() < 1e-15);
/// assert!(spent_alpha(0.025, 2) == spent_alpha(0.025, 1) / 4.0);
/// ```
pub fn spent_alpha(alpha: f64, look: u32) -> f64 {
    let k = f64::from(look.max(1));
    alpha * 6.0 / (std::f64::consts::PI * std::f64::consts::PI * k * k)
}

/// The Wilson score interval for `successes` out of `trials` at the given two-sided `z`.
///
/// With no trials nothing is known, so the interval is the whole `[0, 1]`. Unlike the normal
/// approximation it stays inside `[0, 1]` and behaves at proportions near 0 and 1, which is where
/// upload error rates live.
///
/// ```
/// let iv = upramp_rollout::wilson_interval(5, 100, 1.96);
/// assert!(iv.lo > 0.02 && iv.hi < 0.12);
/// ```
pub fn wilson_interval(successes: u64, trials: u64, z: f64) -> Interval {
    if trials == 0 {
        return Interval { lo: 0.0, hi: 1.0 };
    }
    let n = trials as f64;
    let p = (successes.min(trials) as f64) / n;
    let z2 = z * z;
    let denom = 1.0 + z2 / n;
    let centre = (p + z2 / (2.0 * n)) / denom;
    let half = z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt() / denom;
    // At the extremes the bound is exact; float cancellation would otherwise leave ~1e-20 residues.
    let lo = if successes == 0 {
        0.0
    } else {
        (centre - half).clamp(0.0, 1.0)
    };
    let hi = if successes >= trials {
        1.0
    } else {
        (centre + half).clamp(0.0, 1.0)
    };
    Interval { lo, hi }
}

/// Acklam's rational approximation of the standard normal quantile (relative error < 1.2e-9),
/// enough for a confidence level that is itself a configuration knob.
fn inverse_normal_cdf(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    const P_LOW: f64 = 0.024_25;
    if p < P_LOW {
        let q = (-2.0 * p.ln()).sqrt();
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    } else if p <= 1.0 - P_LOW {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    } else {
        let q = (-2.0 * (1.0 - p).ln()).sqrt();
        -(((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_quantiles() {
        assert!((z_for_confidence(0.90).unwrap() - 1.644_854).abs() < 1e-5);
        assert!((z_for_confidence(0.99).unwrap() - 2.575_829).abs() < 1e-5);
        assert!((z_for_confidence(0.999).unwrap() - 3.290_527).abs() < 1e-5);
        assert_eq!(z_for_confidence(1.0), None);
        assert_eq!(z_for_confidence(0.0), None);
        assert_eq!(z_for_confidence(f64::NAN), None);
    }

    #[test]
    fn wilson_matches_reference_values() {
        // Reference: 10 of 100 at 95% gives [0.0552, 0.1744].
        let iv = wilson_interval(10, 100, 1.959_964);
        assert!((iv.lo - 0.0552).abs() < 1e-4, "{iv:?}");
        assert!((iv.hi - 0.1744).abs() < 1e-4, "{iv:?}");
        // Zero events still leaves a non-zero upper bound.
        let iv = wilson_interval(0, 200, 1.959_964);
        assert_eq!(iv.lo, 0.0);
        assert!(iv.hi > 0.018 && iv.hi < 0.02, "{iv:?}");
    }

    #[test]
    fn upper_tail_quantiles_match_the_two_sided_ones_and_reach_tiny_tails() {
        for confidence in [0.8, 0.9, 0.95, 0.99, 0.999] {
            let two_sided = z_for_confidence(confidence).unwrap();
            let one_sided = z_for_upper_tail((1.0 - confidence) / 2.0).unwrap();
            assert!((two_sided - one_sided).abs() < 1e-9, "{confidence}");
        }
        // Reference values of the normal upper tail: 1e-9 at 5.997807, 1e-15 at 7.941345.
        assert!((z_for_upper_tail(1e-9).unwrap() - 5.997_807).abs() < 1e-5);
        assert!((z_for_upper_tail(1e-15).unwrap() - 7.941_345).abs() < 1e-5);
        assert_eq!(z_for_upper_tail(0.0), None);
        assert_eq!(z_for_upper_tail(1.0), None);
        assert_eq!(z_for_upper_tail(f64::NAN), None);
    }

    #[test]
    fn the_first_look_spends_six_over_pi_squared_of_the_budget() {
        let ratio = spent_alpha(0.025, 1) / 0.025;
        assert!((ratio - 0.607_927_1).abs() < 1e-7, "{ratio}");
        assert_eq!(spent_alpha(0.025, 0), spent_alpha(0.025, 1));
        // The stricter level of the first look: one-sided z 2.165 instead of the fixed 1.96.
        let z1 = z_for_upper_tail(spent_alpha(0.025, 1)).unwrap();
        assert!((z1 - 2.165).abs() < 1e-3, "{z1}");
    }

    proptest! {
        #[test]
        fn spent_budgets_never_add_up_past_alpha(alpha in 1e-6f64..0.5, looks in 1u32..200_000) {
            // Summed smallest first, so rounding cannot hide an excess.
            let total: f64 = (1..=looks).rev().map(|k| spent_alpha(alpha, k)).sum();
            prop_assert!(total < alpha, "{looks} looks spend {total} of {alpha}");
            // The bound is tight: the tail after `looks` is below 6 / (pi^2 looks).
            let left = alpha - total;
            prop_assert!(left <= alpha * 6.0 / (std::f64::consts::PI.powi(2) * f64::from(looks)) + 1e-15);
        }

        #[test]
        fn later_looks_spend_less_and_need_a_wider_interval(alpha in 1e-6f64..0.5, look in 1u32..u32::MAX) {
            let now = spent_alpha(alpha, look);
            let next = spent_alpha(alpha, look + 1);
            prop_assert!(0.0 < next && next < now && now < alpha);
            let (z_now, z_next) = (z_for_upper_tail(now).unwrap(), z_for_upper_tail(next).unwrap());
            prop_assert!(z_now < z_next, "look {look}: z {z_now} then {z_next}");
            prop_assert!(z_now > z_for_upper_tail(alpha).unwrap());
        }


        #[test]
        fn interval_is_ordered_bounded_and_contains_the_estimate(k in 0u64..5_000, extra in 0u64..5_000, conf in 0.5f64..0.999) {
            let n = k + extra;
            let z = z_for_confidence(conf).unwrap();
            let iv = wilson_interval(k, n, z);
            prop_assert!(0.0 <= iv.lo && iv.lo <= iv.hi && iv.hi <= 1.0);
            if n > 0 {
                let p = k as f64 / n as f64;
                prop_assert!(iv.lo <= p + 1e-12 && p <= iv.hi + 1e-12);
            }
        }
    }
}
