//! Traffic volumes and time compression of a run, derived from the plan and its gates rather than
//! picked by hand, so the report can say why each stage saw the traffic it saw.

use std::time::Duration;

use upramp_harness::corpus::FileKind;
use upramp_rollout::{wilson_interval, z_for_confidence, Gates, Plan, Stage};
use upramp_uploader::RetryPolicy;

/// How much traffic a run drives and how time is compressed.
#[derive(Debug, Clone)]
pub(crate) struct Profile {
    pub(crate) quick: bool,
    /// Simulated time between controller ticks.
    pub(crate) tick: Duration,
    /// The gate aggregator's sliding window (what each evaluation judges).
    pub(crate) window: Duration,
    /// Slices of that window.
    pub(crate) window_slices: u32,
    /// Requests in flight at once; also each uploader's sync concurrency, so sync legs never queue
    /// behind each other (a fleet of that many legacy workers) and their latency is the upload's own.
    pub(crate) workers: usize,
    /// Returning tenants: keys that come back across stages (the stickiness evidence).
    pub(crate) returning_keys: usize,
    /// Share of requests from returning tenants; the rest carry a fresh key each.
    pub(crate) returning_share: f64,
    /// Headroom over the minimum samples a stage's window needs.
    pub(crate) margin: f64,
    /// Factor applied to the plan's minimum async samples.
    pub(crate) min_sample_scale: f64,
    /// Requests per tick at the 0% stage (only the sync control is judged there).
    pub(crate) baseline_per_tick: usize,
    /// One big upload every this many ticks.
    pub(crate) big_every: u64,
    /// The big files (10-50 MB).
    pub(crate) big_files: Vec<(FileKind, u64)>,
    /// Retry backoff: the production policy's shape, compressed like simulated time.
    pub(crate) retry: RetryPolicy,
}

const MIB: u64 = 1024 * 1024;

impl Profile {
    /// The full run, or the `--quick` one (same plan, gates and checks; less traffic).
    pub(crate) fn new(quick: bool) -> Self {
        Profile {
            quick,
            tick: Duration::from_secs(6 * 3600),
            window: Duration::from_secs(5 * 86_400),
            window_slices: 120,
            workers: 12,
            returning_keys: if quick { 2_000 } else { 4_000 },
            returning_share: 0.2,
            margin: if quick { 1.1 } else { 1.25 },
            min_sample_scale: if quick { 0.2 } else { 1.0 },
            baseline_per_tick: if quick { 60 } else { 250 },
            big_every: if quick { 16 } else { 4 },
            big_files: if quick {
                vec![(FileKind::Binary, 10 * MIB), (FileKind::Csv, 12 * MIB)]
            } else {
                vec![
                    (FileKind::Binary, 48 * MIB),
                    (FileKind::Json, 24 * MIB),
                    (FileKind::Text, 10 * MIB),
                ]
            },
            retry: RetryPolicy {
                base: Duration::from_millis(2),
                cap: Duration::from_millis(100),
                retry_after_cap: Duration::from_millis(300),
            },
        }
    }

    /// The default three-week plan with the profile's minimum-sample scaling.
    pub(crate) fn plan(&self) -> Plan {
        let mut plan = Plan::default_three_week();
        plan.scale_min_samples(self.min_sample_scale);
        plan
    }

    /// Ticks per simulated window.
    pub(crate) fn window_ticks(&self) -> u64 {
        (self.window.as_secs() / self.tick.as_secs().max(1)).max(1)
    }

    /// Ticks a stage bakes at least.
    pub(crate) fn bake_ticks(&self, stage: &Stage) -> u64 {
        stage
            .min_bake
            .as_secs()
            .div_ceil(self.tick.as_secs().max(1))
            .max(1)
    }

    /// Async samples a stage's window must hold before it can pass: the larger of the stage's minimum
    /// and what its gates need to pass at all.
    pub(crate) fn async_samples_needed(stage: &Stage) -> u64 {
        stage.min_async_samples.max(gate_floor(&stage.gates))
    }

    /// Requests per tick at `stage`, sized so the stage's window holds the samples it needs by the end
    /// of its bake: `margin × needed / (share × ticks judged)`.
    pub(crate) fn per_tick(&self, stage: &Stage) -> usize {
        let share = stage.percent.as_f64() / 100.0;
        if share <= 0.0 {
            return self.baseline_per_tick;
        }
        let ticks = self.window_ticks().min(self.bake_ticks(stage)) as f64;
        let needed = Self::async_samples_needed(stage) as f64;
        // Where the sync path still carries traffic it is the p99 control and needs its own samples.
        let control = if share < 1.0 {
            stage.gates.min_latency_samples as f64 / (1.0 - share)
        } else {
            0.0
        };
        let per_tick = (needed / share).max(control) * self.margin / ticks;
        (per_tick.ceil() as usize).max(self.baseline_per_tick / 4)
    }

    /// One line for the report: how minimum samples were scaled and which minimum binds.
    pub(crate) fn scaling_note(&self, plan: &Plan) -> String {
        let floor = plan.stages.first().map_or(0, |s| gate_floor(&s.gates));
        format!(
            "plan minimums × {} ({} traffic); the default gates cannot pass on fewer than {} async samples \
             (a 1% timeout limit at 95% confidence with zero timeouts), so that is the binding minimum \
             wherever the scaled one is lower; each stage's traffic is sized to reach its minimum in a \
             {}-day window with {}× headroom",
            self.min_sample_scale,
            if self.quick { "quick" } else { "full" },
            floor,
            self.window.as_secs() / 86_400,
            self.margin
        )
    }
}

/// The fewest async samples with which every rate gate can pass (all successes, no errors, timeouts or
/// fallbacks), and which the p99 gate needs.
pub(crate) fn gate_floor(gates: &Gates) -> u64 {
    let z = z_for_confidence(gates.confidence).unwrap_or(1.959_964);
    let limits = [
        1.0 - gates.min_success_rate,
        gates.max_error_rate,
        gates.max_timeout_rate,
        gates.max_fallback_rate,
    ];
    let strictest = limits.into_iter().fold(f64::INFINITY, f64::min);
    let mut n = 1u64;
    while n < 1_000_000 && wilson_interval(0, n, z).hi > strictest {
        n += 1;
    }
    n.max(gates.min_latency_samples)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_gates_need_about_381_samples() {
        // Zero timeouts out of n: the Wilson upper bound drops under 1% at n = 381 for z = 1.96.
        let floor = gate_floor(&Gates::default());
        assert!((375..=390).contains(&floor), "{floor}");
    }

    #[test]
    fn traffic_reaches_each_stage_minimum_within_its_window() {
        for quick in [true, false] {
            let profile = Profile::new(quick);
            for stage in profile
                .plan()
                .stages
                .iter()
                .filter(|s| s.percent.as_f64() > 0.0)
            {
                let ticks = profile.window_ticks().min(profile.bake_ticks(stage));
                let expected_async =
                    profile.per_tick(stage) as f64 * ticks as f64 * stage.percent.as_f64() / 100.0;
                let needed = Profile::async_samples_needed(stage) as f64;
                assert!(
                    expected_async >= needed * profile.margin * 0.999,
                    "{}: {expected_async} < {needed}",
                    stage.name
                );
            }
        }
    }
}
