//! The rollout's state and its pure transitions: what a tick or an operator decides, as the next state
//! and the record to audit. Nothing here reads the clock, a metrics source, a file or a sink; the
//! [`Controller`](crate::Controller) and [`commit`](crate::commit) write what these functions return.

use std::fmt;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use thiserror::Error;
use upramp_flags::Percent;

use crate::gates::{
    evaluate, EvalContext, Evaluation, GateInputs, GateOutcome, GateVerdict, Verdict,
};
use crate::plan::{Plan, PlanError, Stage};
use crate::source::SourceError;
use crate::timefmt::format_duration;

/// What the controller decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Moved to the next stage (or started the first one).
    Advance,
    /// Stayed where it is.
    Hold,
    /// Set the rollout to 0% and stopped.
    Rollback,
    /// Finished the last stage.
    Complete,
    /// An operator paused automatic promotion.
    Pause,
    /// An operator resumed a paused rollout.
    Resume,
}

impl Decision {
    /// Stable lowercase name, used as the `decision` metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Advance => "advance",
            Self::Hold => "hold",
            Self::Rollback => "rollback",
            Self::Complete => "complete",
            Self::Pause => "pause",
            Self::Resume => "resume",
        }
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where the rollout is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Phase {
    /// Created, no tick yet; nothing applied.
    Pending,
    /// Baking `stage` (0-based) since `since`.
    Baking {
        /// Stage index.
        stage: usize,
        /// When the bake started (shifted forward by time spent paused).
        #[serde(with = "crate::timefmt::timestamp_text")]
        since: SystemTime,
    },
    /// Paused by an operator: the percent stays, promotion stops, rollback protection stays on.
    Paused {
        /// Stage index.
        stage: usize,
        /// When the bake started.
        #[serde(with = "crate::timefmt::timestamp_text")]
        since: SystemTime,
        /// When it was paused.
        #[serde(with = "crate::timefmt::timestamp_text")]
        paused_at: SystemTime,
        /// The operator's reason.
        reason: String,
    },
    /// Rolled back to 0% from `stage`; terminal.
    RolledBack {
        /// The stage it rolled back from.
        stage: usize,
        /// Why.
        reason: String,
        /// When.
        #[serde(with = "crate::timefmt::timestamp_text")]
        at: SystemTime,
    },
    /// Every stage passed; terminal.
    Completed {
        /// When.
        #[serde(with = "crate::timefmt::timestamp_text")]
        at: SystemTime,
    },
}

impl Phase {
    /// Stable lowercase name: `pending`, `baking`, `paused`, `rolled_back`, `completed`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Baking { .. } => "baking",
            Self::Paused { .. } => "paused",
            Self::RolledBack { .. } => "rolled_back",
            Self::Completed { .. } => "completed",
        }
    }

    /// Whether no tick will change it any more.
    pub fn is_terminal(&self) -> bool {
        matches!(self, Self::RolledBack { .. } | Self::Completed { .. })
    }
}

/// Everything a restarted controller needs to resume exactly; the state file's content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ControllerState {
    /// The plan being followed.
    pub plan: Plan,
    /// Where the rollout is.
    pub phase: Phase,
    /// The desired percent: what the controller last decided (0% while pending and after a rollback).
    /// The controller re-applies it every tick until the sink confirms it.
    pub percent: Percent,
    /// The percent the flag sink last confirmed; `None` before the first confirmed apply (and in state
    /// files written before this field existed). Differs from [`percent`](Self::percent) while an apply
    /// is failing or after a crash between a decision and its apply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_percent: Option<Percent>,
    /// Bumped by every committed write. A commit succeeds only if the stored generation is still the one
    /// its decision was made from (compare-and-swap), so a tick that raced an operator is discarded.
    #[serde(default)]
    pub generation: u64,
    /// Failed evaluations since the last passing one.
    pub consecutive_failures: u32,
    /// Windows judged since the current stage began: the last evaluation's look number, on which the
    /// rate gates' fail side spends its error budget ([`Gates::alpha_spending`](crate::Gates)). Reset
    /// to 0 by every stage change; 0 in state files written before it existed, so a rollout upgraded
    /// mid-stage starts its budget afresh.
    #[serde(default)]
    pub evaluations_in_stage: u32,
    /// The last sync p99 seen with enough samples: the p99 ratio's control when a window has no sync
    /// traffic (at 100%).
    #[serde(with = "crate::timefmt::opt_duration_text", default)]
    pub control_p99: Option<Duration>,
    /// The last decision, for `status`.
    pub last_decision: Option<DecisionRecord>,
    /// Where operators' tools append the audit log, when chosen at creation (`upramp rollout init
    /// --audit`); the controller itself writes to whatever [`AuditLog`](crate::AuditLog) it is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_log: Option<std::path::PathBuf>,
}

impl ControllerState {
    /// A pending rollout of `plan` (validated).
    pub fn new(plan: Plan) -> Result<Self, PlanError> {
        plan.validate()?;
        Ok(Self {
            plan,
            phase: Phase::Pending,
            percent: Percent::ZERO,
            applied_percent: None,
            generation: 0,
            consecutive_failures: 0,
            evaluations_in_stage: 0,
            control_p99: None,
            last_decision: None,
            audit_log: None,
        })
    }

    /// The current (or last) stage index, 0-based.
    pub fn stage_index(&self) -> usize {
        match &self.phase {
            Phase::Pending => 0,
            Phase::Baking { stage, .. }
            | Phase::Paused { stage, .. }
            | Phase::RolledBack { stage, .. } => *stage,
            Phase::Completed { .. } => self.plan.stages.len().saturating_sub(1),
        }
    }

    /// The current stage.
    pub fn stage(&self) -> Option<&Stage> {
        self.plan.stages.get(self.stage_index())
    }

    /// Consistency checks for a loaded state; the message names the problem.
    pub(crate) fn check(&self) -> Result<(), String> {
        self.plan.validate().map_err(|e| e.to_string())?;
        let index = self.stage_index();
        if index >= self.plan.stages.len() {
            return Err(format!(
                "stage {index} is outside the plan's {} stages",
                self.plan.stages.len()
            ));
        }
        let highest = self
            .plan
            .stages
            .iter()
            .map(|s| s.percent)
            .max()
            .unwrap_or(Percent::ZERO);
        if self.percent > highest {
            return Err(format!(
                "percent {} exceeds the plan's highest {}",
                self.percent, highest
            ));
        }
        Ok(())
    }

    /// A status summary at `now`.
    pub fn status(&self, now: SystemTime) -> Status {
        let stage = self.stage();
        let time_in_stage = match &self.phase {
            Phase::Baking { since, .. } => Some(now.duration_since(*since).unwrap_or_default()),
            Phase::Paused {
                since, paused_at, ..
            } => Some(paused_at.duration_since(*since).unwrap_or_default()),
            _ => None,
        };
        Status {
            state: self.phase.as_str().to_owned(),
            stage_index: self.stage_index(),
            stage_count: self.plan.stages.len(),
            stage: stage.map(|s| s.name.clone()).unwrap_or_default(),
            stage_percent: stage.map(|s| s.percent).unwrap_or(Percent::ZERO),
            percent: self.percent,
            applied_percent: self.applied_percent,
            time_in_stage,
            min_bake: stage.map(|s| s.min_bake),
            consecutive_failures: self.consecutive_failures,
            failure_limit: self.plan.failure_limit,
            phase_reason: match &self.phase {
                Phase::Paused { reason, .. } | Phase::RolledBack { reason, .. } => {
                    Some(reason.clone())
                }
                _ => None,
            },
            last_decision: self.last_decision.as_ref().map(|d| LastDecision {
                at: d.at,
                decision: d.decision,
                reason: d.reason.clone(),
            }),
        }
    }
}

/// What `upramp rollout status` shows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Status {
    /// `pending`, `baking`, `paused`, `rolled_back` or `completed`.
    pub state: String,
    /// Current stage, 0-based.
    pub stage_index: usize,
    /// Number of stages.
    pub stage_count: usize,
    /// Current stage name.
    pub stage: String,
    /// The current stage's target percent.
    pub stage_percent: Percent,
    /// The desired percent.
    pub percent: Percent,
    /// The percent the flag sink last confirmed (`null` before the first apply).
    pub applied_percent: Option<Percent>,
    /// Time baked in the current stage (excluding pauses).
    #[serde(with = "crate::timefmt::opt_duration_text")]
    pub time_in_stage: Option<Duration>,
    /// The stage's minimum bake.
    #[serde(with = "crate::timefmt::opt_duration_text")]
    pub min_bake: Option<Duration>,
    /// Failed evaluations since the last passing one.
    pub consecutive_failures: u32,
    /// Failures that roll back.
    pub failure_limit: u32,
    /// Why it is paused or rolled back.
    pub phase_reason: Option<String>,
    /// The last decision.
    pub last_decision: Option<LastDecision>,
}

/// The last decision in a [`Status`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LastDecision {
    /// When.
    #[serde(with = "crate::timefmt::timestamp_text")]
    pub at: SystemTime,
    /// What.
    pub decision: Decision,
    /// Why.
    pub reason: String,
}

impl fmt::Display for Status {
    /// Human-readable, one fact per line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "state:     {}", self.state)?;
        writeln!(
            f,
            "stage:     {}/{} `{}` (target {})",
            self.stage_index + 1,
            self.stage_count,
            self.stage,
            self.stage_percent
        )?;
        match self.applied_percent {
            Some(applied) if applied == self.percent => writeln!(f, "percent:   {}", self.percent)?,
            Some(applied) => writeln!(
                f,
                "percent:   {} (applied: {applied}; `upramp rollout run` re-applies it)",
                self.percent
            )?,
            None => writeln!(f, "percent:   {} (not applied yet)", self.percent)?,
        }
        if let (Some(t), Some(min)) = (self.time_in_stage, self.min_bake) {
            writeln!(
                f,
                "baked:     {} of {}",
                format_duration(t),
                format_duration(min)
            )?;
        }
        writeln!(
            f,
            "failures:  {} of {} consecutive",
            self.consecutive_failures, self.failure_limit
        )?;
        if let Some(reason) = &self.phase_reason {
            writeln!(f, "reason:    {reason}")?;
        }
        match &self.last_decision {
            Some(d) => writeln!(
                f,
                "last:      {} at {}: {}",
                d.decision,
                crate::timefmt::format_timestamp(d.at),
                d.reason
            ),
            None => writeln!(f, "last:      none"),
        }
    }
}

/// What triggered a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// A controller tick.
    Tick,
    /// An operator command.
    Manual,
}

/// One audited decision: a JSON line in the audit log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecisionRecord {
    /// When (the tick's `now`).
    #[serde(with = "crate::timefmt::timestamp_text")]
    pub at: SystemTime,
    /// Tick or manual.
    pub trigger: Trigger,
    /// The stage judged (0-based).
    pub stage_index: usize,
    /// Its name.
    pub stage: String,
    /// The percent before the decision.
    pub from_percent: Percent,
    /// The desired percent after it.
    pub percent: Percent,
    /// The state after it.
    pub state: String,
    /// The decision.
    pub decision: Decision,
    /// One human line saying why, citing the deciding gate's numbers.
    pub reason: String,
    /// Failed evaluations in a row after this decision.
    pub consecutive_failures: u32,
    /// The window's metrics, when the tick read some.
    pub inputs: Option<GateInputs>,
    /// What the gates amounted to, when evaluated.
    pub outcome: Option<GateOutcome>,
    /// Async-path verdicts.
    pub gates: Vec<GateVerdict>,
    /// Sync-control verdicts.
    pub control: Vec<GateVerdict>,
    /// The state generation this decision committed (0 in records written before generations existed).
    #[serde(default)]
    pub generation: u64,
    /// The queries the metrics source sent for this window and what they returned (a Prometheus
    /// source's PromQL, to paste into Prometheus); empty for other sources and manual decisions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub queries: Vec<crate::source::QueryReading>,
}

impl DecisionRecord {
    /// The failing verdicts (async first, then control).
    pub fn failing_gates(&self) -> impl Iterator<Item = &GateVerdict> {
        self.gates
            .iter()
            .chain(&self.control)
            .filter(|v| v.verdict == Verdict::Fail)
    }
}

/// An operation that is not possible, refused before anything is written.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TransitionError {
    /// The operation is not possible in the current state.
    #[error("cannot {operation} a rollout that is {state}")]
    InvalidTransition {
        /// The operation.
        operation: &'static str,
        /// The current state name.
        state: &'static str,
    },
    /// A manual operation without a reason.
    #[error("{operation} needs a non-empty --reason")]
    MissingReason {
        /// The operation.
        operation: &'static str,
    },
}

/// A decided change: the state to commit and the record to audit. Produced by the pure transitions of
/// [`ControllerState`]; written by [`commit`](crate::commit).
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    /// The state after the decision (its `generation` is set when committed).
    pub next: ControllerState,
    /// The audit record (its `generation` is set when committed).
    pub record: DecisionRecord,
}

impl ControllerState {
    /// Whether a tick in this state judges a metrics window (baking or paused).
    pub fn needs_window(&self) -> bool {
        matches!(self.phase, Phase::Baking { .. } | Phase::Paused { .. })
    }

    /// The tick at `now`: starts a pending rollout, judges the window `read` returns while baking or
    /// paused (it is called only then), holds a finished one. See the crate documentation for the rules.
    pub fn on_tick(
        &self,
        now: SystemTime,
        read: impl FnOnce(SystemTime) -> Result<GateInputs, SourceError>,
    ) -> Transition {
        let before = self;
        let mut next = before.clone();
        let stage_index = before.stage_index();
        let mut record = blank_record(now, Trigger::Tick, before);
        match &before.phase {
            Phase::Pending => {
                let stage = &before.plan.stages[0];
                next.phase = Phase::Baking {
                    stage: 0,
                    since: now,
                };
                next.percent = stage.percent;
                next.evaluations_in_stage = 0;
                record.decision = Decision::Advance;
                record.reason = format!(
                    "rollout started: stage 1/{} `{}` at {}",
                    before.plan.stages.len(),
                    stage.name,
                    stage.percent
                );
            }
            Phase::RolledBack { reason, .. } => {
                record.decision = Decision::Hold;
                record.reason = format!(
                    "rolled back ({reason}); start a new rollout with `upramp rollout init`"
                );
            }
            Phase::Completed { .. } => {
                record.decision = Decision::Hold;
                record.reason = "rollout completed".to_owned();
            }
            Phase::Baking { since, .. } | Phase::Paused { since, .. } => {
                let since = *since;
                let stage = &before.plan.stages[stage_index];
                match read(now) {
                    Err(e) => {
                        record.decision = Decision::Hold;
                        record.reason = format!("metrics unavailable, holding: {e}");
                    }
                    Ok(inputs) => {
                        let look = before.evaluations_in_stage.saturating_add(1);
                        next.evaluations_in_stage = look;
                        let eval = evaluate(
                            &stage.gates,
                            &inputs,
                            &EvalContext {
                                min_async_samples: stage.min_async_samples,
                                judge_async: stage.percent > Percent::ZERO,
                                expect_control: stage.percent < Percent::HUNDRED,
                                remembered_control_p99: before.control_p99,
                                look,
                            },
                        );
                        if inputs.sync.samples >= stage.gates.min_latency_samples {
                            if let Some(p99) = inputs.sync.p99 {
                                next.control_p99 = Some(p99);
                            }
                        }
                        let (decision, reason) =
                            judge(before, &mut next, stage_index, since, now, &inputs, &eval);
                        record.decision = decision;
                        record.reason = reason;
                        record.inputs = Some(inputs);
                        record.outcome = Some(eval.outcome);
                        record.gates = eval.gates;
                        record.control = eval.control;
                    }
                }
            }
        }
        finish(record, next)
    }

    /// Pause promotion (the percent stays; failing gates still roll back). Only from baking.
    pub fn pause(&self, now: SystemTime, reason: &str) -> Result<Transition, TransitionError> {
        let reason = require_reason("pause", reason)?;
        let Phase::Baking { stage, since } = self.phase else {
            return Err(invalid("pause", &self.phase));
        };
        let mut next = self.clone();
        next.phase = Phase::Paused {
            stage,
            since,
            paused_at: now,
            reason: reason.clone(),
        };
        let mut record = blank_record(now, Trigger::Manual, self);
        record.decision = Decision::Pause;
        record.reason = format!("paused by operator: {reason}");
        Ok(finish(record, next))
    }

    /// Resume a paused rollout; the bake clock does not count the pause.
    pub fn resume(&self, now: SystemTime, reason: &str) -> Result<Transition, TransitionError> {
        let reason = require_reason("resume", reason)?;
        let Phase::Paused {
            stage,
            since,
            paused_at,
            ..
        } = self.phase
        else {
            return Err(invalid("resume", &self.phase));
        };
        let mut next = self.clone();
        let paused_for = now.duration_since(paused_at).unwrap_or_default();
        next.phase = Phase::Baking {
            stage,
            since: since.checked_add(paused_for).unwrap_or(since),
        };
        let mut record = blank_record(now, Trigger::Manual, self);
        record.decision = Decision::Resume;
        record.reason = format!(
            "resumed by operator after {}: {reason}",
            format_duration(paused_for)
        );
        Ok(finish(record, next))
    }

    /// Promote to the next stage now (or complete from the last one), whatever the gates say.
    pub fn advance(&self, now: SystemTime, reason: &str) -> Result<Transition, TransitionError> {
        let reason = require_reason("advance", reason)?;
        if self.phase.is_terminal() {
            return Err(invalid("advance", &self.phase));
        }
        let mut next = self.clone();
        let index = self.stage_index();
        next.consecutive_failures = 0;
        next.evaluations_in_stage = 0;
        let mut record = blank_record(now, Trigger::Manual, self);
        if index + 1 >= self.plan.stages.len() {
            next.phase = Phase::Completed { at: now };
            next.percent = self.plan.stages[index].percent;
            record.decision = Decision::Complete;
            record.reason = format!("completed by operator: {reason}");
        } else {
            let to = &self.plan.stages[index + 1];
            next.phase = Phase::Baking {
                stage: index + 1,
                since: now,
            };
            next.percent = to.percent;
            record.decision = Decision::Advance;
            record.reason = format!(
                "advanced by operator to `{}` at {}: {reason}",
                to.name, to.percent
            );
        }
        Ok(finish(record, next))
    }

    /// Roll back to 0% now, from any state. On a rollout already rolled back it changes nothing but
    /// asks for 0% again (an operator can always re-apply a rollback that could not be written).
    pub fn rollback(&self, now: SystemTime, reason: &str) -> Result<Transition, TransitionError> {
        let reason = require_reason("rollback", reason)?;
        let mut next = self.clone();
        let mut record = blank_record(now, Trigger::Manual, self);
        record.decision = Decision::Rollback;
        if matches!(self.phase, Phase::RolledBack { .. }) {
            record.reason = format!("rollback re-applied (0%) by operator: {reason}");
        } else {
            next.phase = Phase::RolledBack {
                stage: self.stage_index(),
                reason: format!("manual: {reason}"),
                at: now,
            };
            record.reason = format!("rolled back to 0% by operator: {reason}");
        }
        next.percent = Percent::ZERO;
        Ok(finish(record, next))
    }
}

/// Fill the record's "after" fields from `next`.
fn finish(mut record: DecisionRecord, next: ControllerState) -> Transition {
    record.percent = next.percent;
    record.state = next.phase.as_str().to_owned();
    record.consecutive_failures = next.consecutive_failures;
    Transition { next, record }
}

fn blank_record(now: SystemTime, trigger: Trigger, before: &ControllerState) -> DecisionRecord {
    DecisionRecord {
        at: now,
        trigger,
        stage_index: before.stage_index(),
        stage: before.stage().map(|s| s.name.clone()).unwrap_or_default(),
        from_percent: before.percent,
        percent: before.percent,
        state: before.phase.as_str().to_owned(),
        decision: Decision::Hold,
        reason: String::new(),
        consecutive_failures: before.consecutive_failures,
        inputs: None,
        outcome: None,
        gates: Vec::new(),
        control: Vec::new(),
        generation: before.generation,
        queries: Vec::new(),
    }
}

#[allow(clippy::too_many_arguments)]
fn judge(
    before: &ControllerState,
    next: &mut ControllerState,
    stage_index: usize,
    since: SystemTime,
    now: SystemTime,
    inputs: &GateInputs,
    eval: &Evaluation,
) -> (Decision, String) {
    let plan = &before.plan;
    let stage = &plan.stages[stage_index];
    let paused = matches!(before.phase, Phase::Paused { .. });
    match eval.outcome {
        GateOutcome::ProviderWide => {
            let degraded = list(eval.control.iter().filter(|v| v.verdict == Verdict::Fail));
            (
                Decision::Hold,
                format!("provider-wide degradation, holding (no rollback, no advance): the sync control fails too: {degraded}"),
            )
        }
        GateOutcome::Fail { decisive } => {
            next.consecutive_failures = before.consecutive_failures.saturating_add(1);
            let failing = list(eval.gates.iter().filter(|v| v.verdict == Verdict::Fail));
            if decisive || next.consecutive_failures >= plan.failure_limit {
                let why = if decisive {
                    format!("decisive breach: {failing}")
                } else {
                    format!(
                        "{} consecutive failed evaluations: {failing}",
                        next.consecutive_failures
                    )
                };
                next.phase = Phase::RolledBack {
                    stage: stage_index,
                    reason: why.clone(),
                    at: now,
                };
                next.percent = Percent::ZERO;
                (Decision::Rollback, format!("rolled back to 0%: {why}"))
            } else {
                (
                    Decision::Hold,
                    format!(
                        "failed evaluation {} of {} before rollback: {failing}",
                        next.consecutive_failures, plan.failure_limit
                    ),
                )
            }
        }
        GateOutcome::Inconclusive => {
            let inconclusive = |verdicts: &[GateVerdict]| {
                verdicts
                    .iter()
                    .filter(|v| v.verdict == Verdict::Inconclusive)
                    .count()
            };
            // Name the async gates that hold; when none does, the control is what is missing.
            let pending = if inconclusive(&eval.gates) > 0 {
                list(
                    eval.gates
                        .iter()
                        .filter(|v| v.verdict == Verdict::Inconclusive),
                )
            } else {
                format!(
                    "the sync control is not established: {}",
                    list(
                        eval.control
                            .iter()
                            .filter(|v| v.verdict == Verdict::Inconclusive)
                    )
                )
            };
            let prefix = if paused { "paused; " } else { "" };
            (
                Decision::Hold,
                format!("{prefix}inconclusive, holding: {pending}"),
            )
        }
        GateOutcome::Pass => {
            next.consecutive_failures = 0;
            let baked = now.duration_since(since).unwrap_or_default();
            if let Phase::Paused { reason, .. } = &before.phase {
                return (Decision::Hold, format!("paused ({reason}); gates pass"));
            }
            if baked < stage.min_bake {
                return (
                    Decision::Hold,
                    format!(
                        "baking: {} of {}; gates pass",
                        format_duration(baked),
                        format_duration(stage.min_bake)
                    ),
                );
            }
            if inputs.async_.samples < stage.min_async_samples {
                return (
                    Decision::Hold,
                    format!(
                        "waiting for samples: {} of {} async",
                        inputs.async_.samples, stage.min_async_samples
                    ),
                );
            }
            if stage_index + 1 >= plan.stages.len() {
                next.phase = Phase::Completed { at: now };
                return (
                    Decision::Complete,
                    format!(
                        "stage `{}` passed after {}; rollout complete at {}",
                        stage.name,
                        format_duration(baked),
                        stage.percent
                    ),
                );
            }
            let to = &plan.stages[stage_index + 1];
            next.phase = Phase::Baking {
                stage: stage_index + 1,
                since: now,
            };
            next.percent = to.percent;
            next.evaluations_in_stage = 0;
            (
                Decision::Advance,
                format!(
                    "stage `{}` passed after {}; advancing to `{}` at {}",
                    stage.name,
                    format_duration(baked),
                    to.name,
                    to.percent
                ),
            )
        }
    }
}

fn list<'a>(verdicts: impl Iterator<Item = &'a GateVerdict>) -> String {
    let parts: Vec<String> = verdicts.map(ToString::to_string).collect();
    if parts.is_empty() {
        "none".to_owned()
    } else {
        parts.join("; ")
    }
}

fn require_reason(operation: &'static str, reason: &str) -> Result<String, TransitionError> {
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(TransitionError::MissingReason { operation });
    }
    Ok(reason.replace(['\n', '\r'], " "))
}

fn invalid(operation: &'static str, phase: &Phase) -> TransitionError {
    TransitionError::InvalidTransition {
        operation,
        state: phase.as_str(),
    }
}
