//! Gates: the health criteria a stage must meet, judged with confidence intervals, not point estimates.
//!
//! # Rules
//!
//! **Rate gates** (success, error, timeout and fallback rate) are judged with Wilson score intervals:
//! - *pass* when the whole interval at [`Gates::confidence`] is on the right side of the threshold
//!   **and** the async path has at least the stage's minimum samples;
//! - *fail* when the whole *fail interval* is on the wrong side **and** there are at least
//!   [`Gates::min_fail_samples`] samples (below that, one unlucky request among a handful would put the
//!   interval past a 2% threshold: low traffic must hold, never roll back);
//! - *inconclusive* otherwise: the stage holds.
//!
//! **Repeated looks.** The controller re-judges the window every tick, so a stage is many tests, not
//! one. On the async path the fail interval of the stage's `k`-th evaluation ([`EvalContext::look`]) is
//! wider: its near edge has the one-sided error `alpha * 6 / (pi^2 k^2)`
//! ([`spent_alpha`]), where `alpha = (1 - confidence) / 2` is the fixed interval's
//! one-sided error. These add up to less than `alpha` over any number of looks, so a gate whose true
//! rate is within its limit fails some look of a stage with probability at most `alpha` (union bound:
//! it needs neither independent nor nested windows, and the metrics window slides). The pass side keeps
//! the fixed confidence, so promotion is as fast as before; only rolling back needs stronger evidence
//! the longer a stage has been watched. The first look is judged at 96.96% instead of 95% (z 2.16
//! instead of 1.96), the 28th at 99.996% (z 4.11). [`Gates::alpha_spending`] `= false` judges every
//! look at the fixed confidence (the rule before, measured in `docs/statistics.md`). The sync control
//! keeps the fixed confidence on both sides: its failure holds (provider-wide), it never rolls back.
//!
//! A failure is **decisive** when there are at least [`Gates::decisive_min_samples`] samples and even the
//! near edge of the fail interval is [`Gates::decisive_factor`] times past the threshold (for a 2% error
//! limit and factor 2: the lower bound is at least 4%). A decisive failure rolls back at once instead of
//! waiting for [`Plan::failure_limit`](crate::Plan::failure_limit) consecutive failures. Being a failure
//! of the same look, it stays inside the look's error budget.
//!
//! **The p99 ratio gate** (async p99 / sync p99) has no binomial interval: a quantile ratio from
//! histograms has no cheap exact interval, so it is a point ratio guarded by sample counts. It is
//! inconclusive until both paths have [`Gates::min_latency_samples`] samples in the window, then passes
//! when the ratio is at most [`Gates::max_p99_ratio`] and fails above it. It is decisive when the ratio is
//! at least `decisive_factor` times the limit (2.4x for 1.2x) with `decisive_min_samples` on both paths.
//! A ratio above the limit whose absolute difference is below [`Gates::min_p99_excess_ms`] passes: at
//! millisecond latencies a p99 moves by that much between windows by chance alone. A non-decisive breach
//! with fewer than [`Gates::min_latency_fail_samples`] on either path is inconclusive (hold), not a
//! failure: a p99 of a few hundred legs rests on its three or four slowest.
//! When the window has no sync traffic (at 100% the control is gone) the controller supplies the last
//! sync p99 it saw with enough samples; that control was measured under another traffic split, so
//! against it only a decisive regression fails and anything less passes.
//!
//! **Which legs count.** The async path is judged from its own legs: a leg whose request fell back is a
//! failed async leg (its outcome is the failure) and counts as one fallback. The sync control is the
//! `Sync` path only: `SyncFallback` legs are excluded, because they are selected by async failures and
//! would mix the two paths' health.
//!
//! **No data is never a pass.** Below 100% the window must hold [`Gates::min_control_samples`] sync
//! legs before anything passes; with fewer the evaluation is inconclusive (hold) at every stage. A
//! 0% stage (the baseline) judges only the control, so it passes only when every control gate passes on
//! its own interval: the control's health is established before the first advance. A thin control does
//! not veto a failing async gate: rolling back is always the safe direction.
//!
//! **Control comparison.** The sync path's success, error and timeout rates are judged with the same
//! thresholds. When any of them *fails* on its own interval the provider itself is degraded: the
//! evaluation is [`GateOutcome::ProviderWide`], which holds (no rollback, no advance) whatever the async path
//! shows, since rolling back would only move traffic onto an equally broken path.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::stats::{spent_alpha, wilson_interval, z_for_confidence, z_for_upper_tail, Interval};

/// Counts and latency of one upload path in one evaluation window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct PathSample {
    /// Request legs completed in the window.
    pub samples: u64,
    /// Legs that succeeded.
    pub successes: u64,
    /// Legs that failed other than by a timeout or a rate limit (client, server, transport errors and
    /// local rejections).
    pub errors: u64,
    /// Legs that timed out.
    pub timeouts: u64,
    /// Legs that were rate limited by the provider.
    pub rate_limited: u64,
    /// Async legs that failed and were re-sent on the sync path (always 0 for the sync path).
    pub fallbacks: u64,
    /// 99th percentile latency of the legs, if any completed.
    #[serde(with = "crate::timefmt::opt_duration_text", default)]
    pub p99: Option<Duration>,
}

/// What a [`MetricsSource`](crate::MetricsSource) reports for one window: the async path under test and
/// the sync path as its control.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct GateInputs {
    /// The async path's legs.
    #[serde(rename = "async")]
    pub async_: PathSample,
    /// The sync (control) path's legs; `SyncFallback` legs are not included.
    pub sync: PathSample,
}

/// Gate thresholds and the statistics that judge them. Rates are fractions (`0.98` is 98%).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gates {
    /// Minimum success rate (default 0.98).
    pub min_success_rate: f64,
    /// Maximum error rate: server, transport and client errors (default 0.02).
    pub max_error_rate: f64,
    /// Maximum timeout rate (default 0.01).
    pub max_timeout_rate: f64,
    /// Maximum share of async legs that fell back to the sync path (default 0.02).
    pub max_fallback_rate: f64,
    /// Maximum async p99 / sync p99 (default 1.2).
    pub max_p99_ratio: f64,
    /// Two-sided confidence of the Wilson intervals, in `(0.5, 1)` (default 0.95).
    pub confidence: f64,
    /// A rate gate cannot fail with fewer samples than this (default 50).
    pub min_fail_samples: u64,
    /// The p99 ratio needs this many samples on both paths (default 200).
    pub min_latency_samples: u64,
    /// How far past the threshold a decisive breach is, as a multiple of the limit (default 2.0).
    pub decisive_factor: f64,
    /// A decisive breach needs at least this many samples (default 500).
    pub decisive_min_samples: u64,
    /// The p99 ratio gate fails only when the async p99 is also at least this many milliseconds above
    /// the control's (default 10). Histogram quantiles of a few hundred loopback-fast samples swing by
    /// a few milliseconds from window to window; a difference that small is noise, not a regression
    /// anyone would roll back for.
    #[serde(default = "default_min_p99_excess_ms")]
    pub min_p99_excess_ms: u64,
    /// Below this many samples on either path a non-decisive p99 breach is inconclusive (the stage
    /// holds) rather than a failure (default 1000). A p99 of a few hundred legs is decided by its
    /// three or four slowest, and with mixed file sizes those are whichever large files the cohort
    /// happened to draw.
    #[serde(default = "default_min_latency_fail_samples")]
    pub min_latency_fail_samples: u64,
    /// Below 100%, no evaluation passes until the window holds this many sync (control) samples
    /// (default 200; at least [`min_fail_samples`](Self::min_fail_samples)): a thin window is
    /// inconclusive, at every stage. At 0% every control gate must also pass on its own interval.
    #[serde(default = "default_min_control_samples")]
    pub min_control_samples: u64,
    /// Spend the fail side's error budget across a stage's evaluations (default `true`; see the module
    /// documentation): the `k`-th look fails only on an interval whose near edge has the one-sided error
    /// `(1 - confidence) / 2 * 6 / (pi^2 k^2)`. `false` judges every look at the fixed confidence, which
    /// rolls back a path healthy but near its limits far more often the more often the controller ticks.
    #[serde(default = "default_alpha_spending")]
    pub alpha_spending: bool,
}

fn default_min_control_samples() -> u64 {
    200
}

fn default_alpha_spending() -> bool {
    true
}

fn default_min_latency_fail_samples() -> u64 {
    1000
}

fn default_min_p99_excess_ms() -> u64 {
    10
}

impl Default for Gates {
    fn default() -> Self {
        Self {
            min_success_rate: 0.98,
            max_error_rate: 0.02,
            max_timeout_rate: 0.01,
            max_fallback_rate: 0.02,
            max_p99_ratio: 1.2,
            confidence: 0.95,
            min_fail_samples: 50,
            min_latency_samples: 200,
            decisive_factor: 2.0,
            decisive_min_samples: 500,
            min_p99_excess_ms: default_min_p99_excess_ms(),
            min_latency_fail_samples: default_min_latency_fail_samples(),
            min_control_samples: default_min_control_samples(),
            alpha_spending: default_alpha_spending(),
        }
    }
}

impl Gates {
    /// Check every field's range; on error returns `(field, message)`.
    pub(crate) fn check(&self) -> Result<(), (&'static str, String)> {
        let rate = |name: &'static str, v: f64| {
            if (0.0..=1.0).contains(&v) {
                Ok(())
            } else {
                Err((
                    name,
                    format!("{v} is not a fraction in 0..=1 (write 0.98 for 98%)"),
                ))
            }
        };
        rate("min_success_rate", self.min_success_rate)?;
        rate("max_error_rate", self.max_error_rate)?;
        rate("max_timeout_rate", self.max_timeout_rate)?;
        rate("max_fallback_rate", self.max_fallback_rate)?;
        if !(self.max_p99_ratio.is_finite() && self.max_p99_ratio > 0.0) {
            return Err((
                "max_p99_ratio",
                format!("{} must be a positive ratio", self.max_p99_ratio),
            ));
        }
        if !(self.confidence > 0.5 && self.confidence < 1.0) {
            return Err((
                "confidence",
                format!("{} must lie strictly between 0.5 and 1", self.confidence),
            ));
        }
        if !(self.decisive_factor.is_finite() && self.decisive_factor >= 1.0) {
            return Err((
                "decisive_factor",
                format!("{} must be at least 1", self.decisive_factor),
            ));
        }
        Ok(())
    }

    fn z(&self) -> f64 {
        // `check` keeps confidence in range; the fallback is the documented default's z.
        z_for_confidence(self.confidence).unwrap_or(1.959_964)
    }

    /// The one-sided error of the fail interval's near edge at the stage's `look`-th evaluation.
    pub fn fail_alpha(&self, look: u32) -> f64 {
        let alpha = (1.0 - self.confidence) / 2.0;
        if self.alpha_spending {
            spent_alpha(alpha, look)
        } else {
            alpha
        }
    }

    /// The z of the fail interval at the stage's `look`-th evaluation (at least the fixed one's).
    fn fail_z(&self, look: u32) -> f64 {
        // A budget is positive for every look a u32 counts (the smallest is about 1e-21 of alpha).
        z_for_upper_tail(self.fail_alpha(look))
            .unwrap_or_else(|| self.z())
            .max(self.z())
    }
}

/// Which gate a verdict is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GateKind {
    /// Share of legs that succeeded, at least the limit.
    SuccessRate,
    /// Share of legs that errored, at most the limit.
    ErrorRate,
    /// Share of legs that timed out, at most the limit.
    TimeoutRate,
    /// Share of async legs that fell back, at most the limit.
    FallbackRate,
    /// Async p99 over sync p99, at most the limit.
    P99Ratio,
}

impl GateKind {
    /// Stable snake_case name, as in audit records.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SuccessRate => "success_rate",
            Self::ErrorRate => "error_rate",
            Self::TimeoutRate => "timeout_rate",
            Self::FallbackRate => "fallback_rate",
            Self::P99Ratio => "p99_ratio",
        }
    }

    fn is_minimum(self) -> bool {
        self == Self::SuccessRate
    }
}

/// The path a verdict judges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PathRole {
    /// The async path under rollout.
    Async,
    /// The sync path, judged as the control.
    Sync,
}

/// A gate's three-way result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Entirely on the right side of the threshold, with enough samples.
    Pass,
    /// Entirely on the wrong side of the threshold, with enough samples.
    Fail,
    /// Not enough evidence either way: hold.
    Inconclusive,
}

impl Verdict {
    /// Stable lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pass => "pass",
            Self::Fail => "fail",
            Self::Inconclusive => "inconclusive",
        }
    }
}

/// One gate's verdict with the numbers behind it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateVerdict {
    /// The gate.
    pub gate: GateKind,
    /// The path judged.
    pub path: PathRole,
    /// Pass, fail or inconclusive.
    pub verdict: Verdict,
    /// Point estimate: a rate as a fraction, or the p99 ratio; `None` without data.
    pub observed: Option<f64>,
    /// Wilson interval of a rate gate at [`Gates::confidence`], which decides a pass; `None` for the p99
    /// ratio (a point rule) or without data.
    pub interval: Option<Interval>,
    /// The wider interval that decides a failure at this look of the stage (async rate gates under
    /// [`Gates::alpha_spending`]); `None` where `interval` decides both ways, and in records written
    /// before alpha spending.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail_side: Option<FailSide>,
    /// The limit (a minimum for `success_rate`, a maximum otherwise).
    pub threshold: f64,
    /// Samples behind the verdict (for the p99 ratio: the smaller of the two paths' counts).
    pub samples: u64,
    /// A failure far enough past the threshold to roll back at once.
    pub decisive: bool,
}

/// The interval a rate gate's failure was judged with at one look of a stage.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FailSide {
    /// Which evaluation of the stage this was, from 1.
    pub look: u32,
    /// The one-sided error of the interval's near edge: the look's share of the stage's budget.
    pub alpha: f64,
    /// The Wilson interval at that level (two-sided confidence `1 - 2 alpha`).
    pub interval: Interval,
}

impl fmt::Display for GateVerdict {
    /// One line, e.g. `async error_rate 5.00% [4.10%, 6.08%] vs max 2.00% (n=2000; look 3 fail interval
    /// [3.62%, 6.84%]): fail (decisive)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = match self.path {
            PathRole::Async => "async",
            PathRole::Sync => "sync",
        };
        let bound = if self.gate.is_minimum() { "min" } else { "max" };
        write!(f, "{path} {} ", self.gate.as_str())?;
        if self.gate == GateKind::P99Ratio {
            match self.observed {
                Some(r) => write!(f, "{r:.2}x")?,
                None => f.write_str("n/a")?,
            }
            write!(f, " vs {bound} {:.2}x", self.threshold)?;
        } else {
            match self.observed {
                Some(p) => write!(f, "{:.2}%", p * 100.0)?,
                None => f.write_str("n/a")?,
            }
            if let Some(iv) = self.interval {
                write!(f, " [{:.2}%, {:.2}%]", iv.lo * 100.0, iv.hi * 100.0)?;
            }
            write!(f, " vs {bound} {:.2}%", self.threshold * 100.0)?;
        }
        write!(f, " (n={}", self.samples)?;
        if let Some(side) = &self.fail_side {
            write!(
                f,
                "; look {} fail interval [{:.2}%, {:.2}%]",
                side.look,
                side.interval.lo * 100.0,
                side.interval.hi * 100.0
            )?;
        }
        write!(f, "): {}", self.verdict.as_str())?;
        if self.decisive {
            f.write_str(" (decisive)")?;
        }
        Ok(())
    }
}

/// What one evaluation of all gates amounts to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GateOutcome {
    /// Every async gate passed (or the stage sends no async traffic) and the control is healthy.
    Pass,
    /// Some async gate is inconclusive and none failed.
    Inconclusive,
    /// Some async gate failed; `decisive` if any failure was decisive.
    Fail {
        /// Whether to roll back at once.
        decisive: bool,
    },
    /// The sync control fails its own gates: a provider-wide degradation, hold.
    ProviderWide,
}

/// What the evaluation needs to know about the stage and the controller's memory.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EvalContext {
    /// Async samples a gate needs before it can pass (the stage's minimum).
    pub min_async_samples: u64,
    /// Whether the stage sends async traffic at all; a 0% stage judges only the control.
    pub judge_async: bool,
    /// Whether the stage sends sync traffic (below 100%): then nothing passes until the control has
    /// [`Gates::min_control_samples`].
    pub expect_control: bool,
    /// A sync p99 remembered from an earlier window, used when this window has too little sync traffic.
    pub remembered_control_p99: Option<Duration>,
    /// Which evaluation of the stage this is, from 1: the async rate gates' fail side spends the error
    /// budget of this look (see [`Gates::alpha_spending`]). 0 counts as 1.
    pub look: u32,
}

/// All verdicts of one evaluation and what they amount to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// Verdicts on the async path (empty for a 0% stage).
    pub gates: Vec<GateVerdict>,
    /// Verdicts on the sync control path.
    pub control: Vec<GateVerdict>,
    /// The combined outcome.
    pub outcome: GateOutcome,
}

impl Evaluation {
    /// The failing verdicts, async first, then control.
    pub fn failing(&self) -> impl Iterator<Item = &GateVerdict> {
        self.gates
            .iter()
            .chain(&self.control)
            .filter(|v| v.verdict == Verdict::Fail)
    }
}

/// Judge `inputs` against `gates`; see the module documentation for the rules.
pub fn evaluate(gates: &Gates, inputs: &GateInputs, ctx: &EvalContext) -> Evaluation {
    let z = gates.z();
    let look = ctx.look.max(1);
    let async_fail = FailLevel {
        look,
        alpha: gates.fail_alpha(look),
        z: gates.fail_z(look),
    };
    let a = &inputs.async_;
    let s = &inputs.sync;
    let mut async_verdicts = Vec::new();
    if ctx.judge_async {
        let min_pass = ctx.min_async_samples.max(1);
        for gate in [
            GateKind::SuccessRate,
            GateKind::ErrorRate,
            GateKind::TimeoutRate,
            GateKind::FallbackRate,
        ] {
            async_verdicts.push(rate(
                gates,
                z,
                gates.alpha_spending.then_some(async_fail),
                gate,
                PathRole::Async,
                a,
                min_pass,
            ));
        }
        async_verdicts.push(p99_ratio(gates, a, s, ctx.remembered_control_p99));
    }
    let control_min = gates.min_control_samples.max(gates.min_fail_samples).max(1);
    let control: Vec<GateVerdict> = [
        GateKind::SuccessRate,
        GateKind::ErrorRate,
        GateKind::TimeoutRate,
    ]
    .into_iter()
    .map(|gate| rate(gates, z, None, gate, PathRole::Sync, s, control_min))
    .collect();
    // No data is never a pass: below 100% the control must be there, and a stage that sends no async
    // traffic (the baseline) has nothing to pass but the control's own health.
    let control_thin = ctx.expect_control && s.samples < control_min;
    let control_healthy = control.iter().all(|v| v.verdict == Verdict::Pass);
    let outcome = if control.iter().any(|v| v.verdict == Verdict::Fail) {
        GateOutcome::ProviderWide
    } else if async_verdicts.iter().any(|v| v.verdict == Verdict::Fail) {
        GateOutcome::Fail {
            decisive: async_verdicts.iter().any(|v| v.decisive),
        }
    } else if control_thin || (!ctx.judge_async && !control_healthy) {
        GateOutcome::Inconclusive
    } else if async_verdicts.iter().all(|v| v.verdict == Verdict::Pass) {
        GateOutcome::Pass
    } else {
        GateOutcome::Inconclusive
    };
    Evaluation {
        gates: async_verdicts,
        control,
        outcome,
    }
}

/// Which count of a path a rate gate judges, and its threshold.
fn rate_of(gates: &Gates, gate: GateKind, p: &PathSample) -> (u64, f64) {
    match gate {
        GateKind::SuccessRate => (p.successes, gates.min_success_rate),
        GateKind::ErrorRate => (p.errors, gates.max_error_rate),
        GateKind::TimeoutRate => (p.timeouts, gates.max_timeout_rate),
        GateKind::FallbackRate => (p.fallbacks, gates.max_fallback_rate),
        // Not a rate; `p99_ratio` judges it.
        GateKind::P99Ratio => (0, gates.max_p99_ratio),
    }
}

/// The level of a look's fail interval.
#[derive(Debug, Clone, Copy)]
struct FailLevel {
    look: u32,
    alpha: f64,
    z: f64,
}

/// Judge one rate gate: pass on the interval at `z`, fail on the one at `fail` (or at `z` without).
fn rate(
    gates: &Gates,
    z: f64,
    fail: Option<FailLevel>,
    gate: GateKind,
    path: PathRole,
    sample: &PathSample,
    min_pass: u64,
) -> GateVerdict {
    let (count, threshold) = rate_of(gates, gate, sample);
    let samples = sample.samples;
    let count = count.min(samples);
    if samples == 0 {
        return GateVerdict {
            gate,
            path,
            verdict: Verdict::Inconclusive,
            observed: None,
            interval: None,
            fail_side: None,
            threshold,
            samples,
            decisive: false,
        };
    }
    let interval = wilson_interval(count, samples, z);
    let fail_side = fail.map(|level| FailSide {
        look: level.look,
        alpha: level.alpha,
        interval: wilson_interval(count, samples, level.z),
    });
    let fail_interval = fail_side.map_or(interval, |side| side.interval);
    let observed = count as f64 / samples as f64;
    // Judge every gate as a "bad share at most a limit" so one rule covers both directions: a failure
    // needs the fail interval's near edge past the limit, a pass the fixed interval's far edge within.
    // The fail interval contains the fixed one, so both cannot hold at once.
    let (bad_fail_lo, bad_hi, bad_limit) = if gate.is_minimum() {
        (1.0 - fail_interval.hi, 1.0 - interval.lo, 1.0 - threshold)
    } else {
        (fail_interval.lo, interval.hi, threshold)
    };
    let verdict = if bad_fail_lo > bad_limit && samples >= gates.min_fail_samples {
        Verdict::Fail
    } else if bad_hi <= bad_limit && samples >= min_pass {
        Verdict::Pass
    } else {
        Verdict::Inconclusive
    };
    let decisive = verdict == Verdict::Fail
        && samples >= gates.decisive_min_samples
        && bad_fail_lo >= gates.decisive_factor * bad_limit;
    GateVerdict {
        gate,
        path,
        verdict,
        observed: Some(observed),
        interval: Some(interval),
        fail_side,
        threshold,
        samples,
        decisive,
    }
}

fn p99_ratio(
    gates: &Gates,
    a: &PathSample,
    s: &PathSample,
    remembered: Option<Duration>,
) -> GateVerdict {
    let threshold = gates.max_p99_ratio;
    let live_control = s.p99.filter(|_| s.samples >= gates.min_latency_samples);
    let (control_p99, control_samples) = match (live_control, remembered) {
        (Some(p99), _) => (Some(p99), s.samples),
        // A remembered control already had enough samples when it was taken.
        (None, Some(p99)) => (
            Some(p99),
            gates.min_latency_samples.max(gates.decisive_min_samples),
        ),
        (None, None) => (None, s.samples),
    };
    let samples = a.samples.min(control_samples);
    let observed = match (a.p99, control_p99) {
        (Some(ap), Some(sp)) => {
            // A zero control p99 only happens with a coarse clock; a microsecond floor keeps the ratio finite.
            let floor = Duration::from_micros(1);
            Some(ap.max(floor).as_secs_f64() / sp.max(floor).as_secs_f64())
        }
        _ => None,
    };
    let excess = match (a.p99, control_p99) {
        (Some(ap), Some(sp)) => ap.saturating_sub(sp),
        _ => Duration::ZERO,
    };
    let within_noise = excess < Duration::from_millis(gates.min_p99_excess_ms);
    let control_is_live = live_control.is_some();
    let (verdict, decisive) = match observed {
        Some(r) if a.samples >= gates.min_latency_samples && control_p99.is_some() => {
            let decisive =
                samples >= gates.decisive_min_samples && r >= threshold * gates.decisive_factor;
            if r <= threshold || within_noise || (!control_is_live && !decisive) {
                (Verdict::Pass, false)
            } else if decisive || samples >= gates.min_latency_fail_samples {
                (Verdict::Fail, decisive)
            } else {
                (Verdict::Inconclusive, false)
            }
        }
        _ => (Verdict::Inconclusive, false),
    };
    GateVerdict {
        gate: GateKind::P99Ratio,
        path: PathRole::Async,
        verdict,
        observed,
        interval: None,
        fail_side: None,
        threshold,
        samples,
        decisive,
    }
}
