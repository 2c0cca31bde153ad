//! The controller state machine: each `tick(now)` reads a window of metrics, judges the stage's gates,
//! decides advance / hold / rollback / complete, applies the percent, persists the state and audits.

use std::fmt;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use thiserror::Error;
use upramp_flags::Percent;

use crate::audit::{AuditError, AuditLog};
use crate::gates::{evaluate, EvalContext, Evaluation, GateInputs, GateVerdict, Outcome, Verdict};
use crate::plan::{Plan, PlanError, Stage};
use crate::sink::{FlagSink, SinkError};
use crate::source::MetricsSource;
use crate::store::{StateError, StateStore};
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
    /// The percent the controller last decided (0% while pending and after a rollback).
    pub percent: Percent,
    /// Failed evaluations since the last passing one.
    pub consecutive_failures: u32,
    /// The last sync p99 seen with enough samples: the p99 ratio's control when a window has no sync
    /// traffic (at 100%).
    #[serde(with = "crate::timefmt::opt_duration_text", default)]
    pub control_p99: Option<Duration>,
    /// The last decision, for `status`.
    pub last_decision: Option<DecisionRecord>,
    /// Where operators' tools append the audit log, when chosen at creation (`upramp rollout init
    /// --audit`); the controller itself writes to whatever [`AuditLog`] it is given.
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
            consecutive_failures: 0,
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
    /// The percent currently applied.
    pub percent: Percent,
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
        writeln!(f, "percent:   {}", self.percent)?;
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
    /// The percent applied after it.
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
    pub outcome: Option<Outcome>,
    /// Async-path verdicts.
    pub gates: Vec<GateVerdict>,
    /// Sync-control verdicts.
    pub control: Vec<GateVerdict>,
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

/// Why a controller operation failed.
#[derive(Debug, Error)]
pub enum RolloutError {
    /// The plan is invalid.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// Applying the percent failed.
    #[error(transparent)]
    Sink(#[from] SinkError),
    /// Saving or loading the state failed.
    #[error(transparent)]
    State(#[from] StateError),
    /// Appending to the audit log failed.
    #[error(transparent)]
    Audit(#[from] AuditError),
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

/// The rollout controller. Generic over where metrics come from and where the percent goes; it never
/// sleeps or reads the wall clock: the caller passes `now` to every operation.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use upramp_rollout::{Controller, Decision, FnSource, GateInputs, PathSample, Plan, RecordingSink, SourceError};
///
/// let healthy = |_now| -> Result<GateInputs, SourceError> {
///     let path = PathSample { samples: 5_000, successes: 5_000, p99: Some(Duration::from_millis(80)), ..Default::default() };
///     Ok(GateInputs { async_: path, sync: path })
/// };
/// let mut controller = Controller::new(Plan::default_three_week(), FnSource(healthy), RecordingSink::default())?;
/// let mut now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
/// let mut decisions = Vec::new();
/// while !controller.state().phase.is_terminal() {
///     decisions.push(controller.tick(now)?.decision);
///     now += Duration::from_secs(3_600);
/// }
/// assert_eq!(decisions.iter().filter(|d| **d == Decision::Advance).count(), 5);
/// assert_eq!(decisions.last(), Some(&Decision::Complete));
/// # Ok::<(), upramp_rollout::RolloutError>(())
/// ```
pub struct Controller<S, K> {
    state: ControllerState,
    source: S,
    sink: K,
    store: Option<StateStore>,
    audit: AuditLog,
    flag: String,
}

impl<S, K> fmt::Debug for Controller<S, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Controller")
            .field("state", &self.state)
            .field("store", &self.store)
            .field("flag", &self.flag)
            .finish_non_exhaustive()
    }
}

impl<S: MetricsSource, K: FlagSink> Controller<S, K> {
    /// A pending controller for `plan`, with an in-memory audit log and no state file.
    pub fn new(plan: Plan, source: S, sink: K) -> Result<Self, RolloutError> {
        Ok(Self::from_state(ControllerState::new(plan)?, source, sink))
    }

    /// A controller resuming from a saved state: same stage, bake start and failure count.
    pub fn from_state(state: ControllerState, source: S, sink: K) -> Self {
        Self {
            state,
            source,
            sink,
            store: None,
            audit: AuditLog::in_memory(),
            flag: upramp_flags::ASYNC_UPLOAD.to_owned(),
        }
    }

    /// Save the state to `store` after every decision.
    pub fn with_store(mut self, store: StateStore) -> Self {
        self.store = Some(store);
        self
    }

    /// Append decisions to `audit` instead of a fresh in-memory log.
    pub fn with_audit(mut self, audit: AuditLog) -> Self {
        self.audit = audit;
        self
    }

    /// The flag name used as the `flag` label of the rollout metrics (default `async_upload`).
    pub fn with_flag_name(mut self, flag: impl Into<String>) -> Self {
        self.flag = flag.into();
        self
    }

    /// The current state.
    pub fn state(&self) -> &ControllerState {
        &self.state
    }

    /// The audit log (records of this controller in memory, plus its file if any).
    pub fn audit(&self) -> &AuditLog {
        &self.audit
    }

    /// The metrics source.
    pub fn source_mut(&mut self) -> &mut S {
        &mut self.source
    }

    /// The flag sink.
    pub fn sink(&self) -> &K {
        &self.sink
    }

    /// Take the controller apart.
    pub fn into_parts(self) -> (ControllerState, S, K, AuditLog) {
        (self.state, self.source, self.sink, self.audit)
    }

    /// One evaluation at `now`; see the crate documentation for the rules.
    ///
    /// A source error holds (and is audited); a sink error on an advance leaves the state unchanged
    /// and is returned; a rollback is recorded even if applying 0% failed (the next tick re-applies it).
    pub fn tick(&mut self, now: SystemTime) -> Result<DecisionRecord, RolloutError> {
        let before = self.state.clone();
        let mut next = before.clone();
        let stage_index = before.stage_index();
        let mut record = self.blank_record(now, Trigger::Tick, &before);
        match &before.phase {
            Phase::Pending => {
                let stage = &before.plan.stages[0];
                next.phase = Phase::Baking {
                    stage: 0,
                    since: now,
                };
                next.percent = stage.percent;
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
                match self.source.window(now) {
                    Err(e) => {
                        record.decision = Decision::Hold;
                        record.reason = format!("metrics unavailable, holding: {e}");
                    }
                    Ok(inputs) => {
                        let eval = evaluate(
                            &stage.gates,
                            &inputs,
                            &EvalContext {
                                min_async_samples: stage.min_async_samples,
                                judge_async: stage.percent > Percent::ZERO,
                                remembered_control_p99: before.control_p99,
                            },
                        );
                        if inputs.sync.samples >= stage.gates.min_latency_samples {
                            if let Some(p99) = inputs.sync.p99 {
                                next.control_p99 = Some(p99);
                            }
                        }
                        let (decision, reason) =
                            self.judge(&before, &mut next, stage_index, since, now, &inputs, &eval);
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
        self.commit(record, next)
    }

    #[allow(clippy::too_many_arguments)]
    fn judge(
        &self,
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
            Outcome::ProviderWide => {
                let degraded = list(eval.control.iter().filter(|v| v.verdict == Verdict::Fail));
                (
                    Decision::Hold,
                    format!("provider-wide degradation, holding (no rollback, no advance): the sync control fails too: {degraded}"),
                )
            }
            Outcome::Fail { decisive } => {
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
            Outcome::Inconclusive => {
                let pending = list(
                    eval.gates
                        .iter()
                        .filter(|v| v.verdict == Verdict::Inconclusive),
                );
                let prefix = if paused { "paused; " } else { "" };
                (
                    Decision::Hold,
                    format!("{prefix}inconclusive, holding: {pending}"),
                )
            }
            Outcome::Pass => {
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

    /// Pause promotion (the percent stays; failing gates still roll back).
    pub fn pause(&mut self, now: SystemTime, reason: &str) -> Result<DecisionRecord, RolloutError> {
        let reason = require_reason("pause", reason)?;
        let before = self.state.clone();
        let mut next = before.clone();
        let Phase::Baking { stage, since } = before.phase else {
            return Err(invalid("pause", &before.phase));
        };
        next.phase = Phase::Paused {
            stage,
            since,
            paused_at: now,
            reason: reason.clone(),
        };
        let mut record = self.blank_record(now, Trigger::Manual, &before);
        record.decision = Decision::Pause;
        record.reason = format!("paused by operator: {reason}");
        self.commit(record, next)
    }

    /// Resume a paused rollout; the bake clock does not count the pause.
    pub fn resume(
        &mut self,
        now: SystemTime,
        reason: &str,
    ) -> Result<DecisionRecord, RolloutError> {
        let reason = require_reason("resume", reason)?;
        let before = self.state.clone();
        let mut next = before.clone();
        let Phase::Paused {
            stage,
            since,
            paused_at,
            ..
        } = before.phase
        else {
            return Err(invalid("resume", &before.phase));
        };
        let paused_for = now.duration_since(paused_at).unwrap_or_default();
        next.phase = Phase::Baking {
            stage,
            since: since.checked_add(paused_for).unwrap_or(since),
        };
        let mut record = self.blank_record(now, Trigger::Manual, &before);
        record.decision = Decision::Resume;
        record.reason = format!(
            "resumed by operator after {}: {reason}",
            format_duration(paused_for)
        );
        self.commit(record, next)
    }

    /// Promote to the next stage now (or complete from the last one), whatever the gates say.
    pub fn advance(
        &mut self,
        now: SystemTime,
        reason: &str,
    ) -> Result<DecisionRecord, RolloutError> {
        let reason = require_reason("advance", reason)?;
        let before = self.state.clone();
        let mut next = before.clone();
        if before.phase.is_terminal() {
            return Err(invalid("advance", &before.phase));
        }
        let index = before.stage_index();
        next.consecutive_failures = 0;
        let mut record = self.blank_record(now, Trigger::Manual, &before);
        if index + 1 >= before.plan.stages.len() {
            next.phase = Phase::Completed { at: now };
            next.percent = before.plan.stages[index].percent;
            record.decision = Decision::Complete;
            record.reason = format!("completed by operator: {reason}");
        } else {
            let to = &before.plan.stages[index + 1];
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
        self.commit(record, next)
    }

    /// Roll back to 0% now. Allowed from any state but rolled back, including completed.
    pub fn rollback(
        &mut self,
        now: SystemTime,
        reason: &str,
    ) -> Result<DecisionRecord, RolloutError> {
        let reason = require_reason("rollback", reason)?;
        let before = self.state.clone();
        let mut next = before.clone();
        if matches!(before.phase, Phase::RolledBack { .. }) {
            return Err(invalid("rollback", &before.phase));
        }
        let why = format!("manual: {reason}");
        next.phase = Phase::RolledBack {
            stage: before.stage_index(),
            reason: why.clone(),
            at: now,
        };
        next.percent = Percent::ZERO;
        let mut record = self.blank_record(now, Trigger::Manual, &before);
        record.decision = Decision::Rollback;
        record.reason = format!("rolled back to 0% by operator: {reason}");
        self.commit(record, next)
    }

    fn blank_record(
        &self,
        now: SystemTime,
        trigger: Trigger,
        before: &ControllerState,
    ) -> DecisionRecord {
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
        }
    }

    /// Apply the new percent, then persist, audit and publish. Pending state applies nothing.
    fn commit(
        &mut self,
        mut record: DecisionRecord,
        mut next: ControllerState,
    ) -> Result<DecisionRecord, RolloutError> {
        record.percent = next.percent;
        record.state = next.phase.as_str().to_owned();
        record.consecutive_failures = next.consecutive_failures;
        let applied = if matches!(next.phase, Phase::Pending) {
            Ok(())
        } else {
            self.sink.apply(next.percent)
        };
        let sink_error = match applied {
            Ok(()) => None,
            // A rollback stands even if 0% could not be applied yet: never un-decide a rollback.
            Err(e) if record.decision == Decision::Rollback => Some(e),
            Err(e) => return Err(e.into()),
        };
        next.last_decision = Some(record.clone());
        if let Some(store) = &self.store {
            store.save(&next)?;
        }
        self.state = next;
        self.audit.append(&record)?;
        upramp_telemetry::record_rollout_percent(&self.flag, self.state.percent.as_f64());
        upramp_telemetry::record_rollout_decision(&self.flag, record.decision.as_str());
        tracing::info!(
            decision = record.decision.as_str(),
            stage = record.stage.as_str(),
            percent = %record.percent,
            reason = record.reason.as_str(),
            "rollout decision"
        );
        match sink_error {
            Some(e) => Err(e.into()),
            None => Ok(record),
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

fn require_reason(operation: &'static str, reason: &str) -> Result<String, RolloutError> {
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(RolloutError::MissingReason { operation });
    }
    Ok(reason.replace(['\n', '\r'], " "))
}

fn invalid(operation: &'static str, phase: &Phase) -> RolloutError {
    RolloutError::InvalidTransition {
        operation,
        state: phase.as_str(),
    }
}

impl<S: MetricsSource + ?Sized> MetricsSource for &mut S {
    fn window(&mut self, now: SystemTime) -> Result<GateInputs, crate::SourceError> {
        (**self).window(now)
    }
}

impl<K: FlagSink + ?Sized> FlagSink for &mut K {
    fn apply(&mut self, percent: Percent) -> Result<(), SinkError> {
        (**self).apply(percent)
    }
}
