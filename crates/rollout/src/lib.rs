//! Staged percentage rollouts judged by statistics: plans, gates with Wilson score intervals, a
//! restartable controller state machine, its state store and audit log, metrics sources and flag sinks.
//!
//! # Main types
//!
//! - [`Plan`] / [`Stage`]: ordered stages (percent, minimum bake, minimum async samples, [`Gates`]);
//!   [`Plan::default_three_week`] follows the legacy runbook; [`Plan::from_toml_str`] refuses bad plans
//!   with one-line errors naming the stage and field.
//! - [`Gates`] and [`evaluate`]: success, error, timeout and fallback rates judged with Wilson
//!   intervals, the fail side spending its error budget across a stage's looks ([`spent_alpha`]), the
//!   async/sync p99 ratio with a point rule, the sync path as control (see [`gates`]).
//! - [`Controller`]: `tick(now)` reads a [`MetricsSource`], decides a [`Decision`], applies the percent
//!   through a [`FlagSink`], saves the [`ControllerState`] with a [`StateStore`] and appends a
//!   [`DecisionRecord`] to the [`AuditLog`]. Manual `pause`, `resume`, `advance`, `rollback`.
//! - Sources: [`AggregatorSource`] (in-process telemetry), [`ScrapeSource`] (Prometheus `/metrics`),
//!   [`PrometheusSource`] (PromQL against a Prometheus server), [`FnSource`] (a closure). Sinks: [`StoreSink`] ([`FlagStore`](upramp_flags::FlagStore)),
//!   [`FileSink`] (flags TOML, atomic), [`NullSink`]; with the `test-util` feature, the
//!   `RecordingSink` test double.
//! - [`Clock`], [`SystemClock`], [`SimulatedClock`] are re-exported from telemetry. The controller never
//!   reads the clock itself: callers pass `now`, so simulated weeks run in milliseconds.
//!
//! # Controller rules
//!
//! - A tick in `pending` starts the first stage. In `baking`, the window is judged:
//!   - **pass** (every async gate passes, the control is healthy) resets the failure count and advances
//!     once the stage has baked `min_bake` and the window holds `min_async_samples` async samples; after
//!     the last stage the rollout completes;
//!   - **inconclusive** holds;
//!   - **fail** counts a failed evaluation; [`Plan::failure_limit`] consecutive failures (default 2), or
//!     one decisive breach, roll back: the percent goes to 0% at once and the rollout stops;
//!   - **provider-wide** (the sync control fails its own gates) holds, neither rolling back nor advancing;
//!   - a source error holds.
//! - Inconclusive and provider-wide evaluations neither count as failures nor reset the count.
//! - Every judged window is a look: [`ControllerState::evaluations_in_stage`] counts them from the stage's
//!   start (a failed metrics read is none), and the `k`-th look fails a rate gate only on the wider
//!   interval of its share of the error budget, so watching a stage longer does not make a false
//!   rollback likelier (see [`gates`]).
//! - `paused` keeps the percent and the rollback protection but never promotes; on resume the bake start
//!   moves forward by the pause's length.
//! - No data is never a pass: below 100% nothing passes without [`Gates::min_control_samples`] sync
//!   samples, and the 0% baseline passes only once every control gate passes on its own interval.
//! - `rolled_back` and `completed` are terminal (a new rollout starts from a new state), but their final
//!   percent is still re-applied until the sink confirms it, and `rollback` on a rolled-back rollout asks
//!   for 0% again.
//! - Every write goes through a [`Journal`]: compare-and-swap on [`ControllerState::generation`] under
//!   the state's commit lock, then the audit record, then the apply, then the confirmation
//!   ([`ControllerState::applied_percent`]); see [`commit`] for the order and what a crash leaves. A tick
//!   whose window read raced an operator's commit is discarded, never written over it.
//! - The state types and their pure transitions live in [`state`]; the [`Controller`] only commits.
//! - The applied percent is always 0% or a stage's percent, so it never exceeds the plan's.
//!
//! # Example
//!
//! ```
//! use std::time::{Duration, UNIX_EPOCH};
//! use upramp_rollout::{
//!     AuditLog, Controller, Decision, FnSource, GateInputs, NullSink, PathSample, Plan, SourceError,
//! };
//!
//! // An async path failing 10% of uploads while the sync control is healthy.
//! let window = |_now| -> Result<GateInputs, SourceError> {
//!     let p99 = Some(Duration::from_millis(120));
//!     Ok(GateInputs {
//!         async_: PathSample { samples: 2_000, successes: 1_800, errors: 200, p99, ..Default::default() },
//!         sync: PathSample { samples: 18_000, successes: 17_990, errors: 10, p99, ..Default::default() },
//!     })
//! };
//! let mut plan = Plan::default_three_week();
//! plan.stages.remove(0); // start at 1%
//! let mut controller = Controller::new(plan, FnSource(window), NullSink)?
//!     .with_audit(AuditLog::in_memory());
//! let start = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
//! assert_eq!(controller.tick(start)?.decision, Decision::Advance); // starts stage 1 at 1%
//! let record = controller.tick(start + Duration::from_secs(60))?;
//! assert_eq!(record.decision, Decision::Rollback); // a decisive breach: 10% errors vs 2%
//! assert_eq!(controller.state().applied_percent.map(|p| p.thousandths()), Some(0));
//! println!("{}", record.reason);
//! # Ok::<(), upramp_rollout::RolloutError>(())
//! ```

pub mod audit;
pub mod commit;
pub mod controller;
pub mod gates;
pub mod plan;
pub mod prometheus;
pub mod sink;
pub mod source;
pub mod state;
pub mod stats;
pub mod store;
pub mod timefmt;

pub use audit::{AuditError, AuditLog};
pub use commit::{commit_manual, CommitStep, Committed, Journal, RolloutError};
pub use controller::Controller;
pub use gates::{
    evaluate, EvalContext, Evaluation, FailSide, GateInputs, GateKind, GateOutcome, GateVerdict,
    Gates, PathRole, PathSample, Verdict,
};
pub use plan::{Plan, PlanError, Stage};
pub use prometheus::{
    GateQueries, PrometheusConfigError, PrometheusSource, QueryReading, Selector, SeriesValue,
    DEFAULT_QUERY_TIMEOUT,
};
#[cfg(feature = "test-util")]
pub use sink::RecordingSink;
pub use sink::{FileSink, FlagSink, NullSink, SinkError, StoreSink};
pub use source::{
    parse_exposition, quantile_from_buckets, AggregatorSource, ExpositionError, FnSource,
    MetricSample, MetricsSource, PathTotals, ScrapeSource, SourceError, UploadTotals,
};
pub use state::{
    ControllerState, Decision, DecisionRecord, LastDecision, Phase, Status, Transition,
    TransitionError, Trigger,
};
pub use stats::{spent_alpha, wilson_interval, z_for_confidence, z_for_upper_tail, Interval};
pub use store::{CommitGuard, OwnerLock, StateError, StateStore, STATE_TEMP_PREFIX};
pub use timefmt::{
    format_duration, format_timestamp, parse_duration, parse_timestamp, TimeFormatError,
};
pub use upramp_telemetry::{Clock, SimulatedClock, SystemClock};
