//! Committing a [`Transition`]: the one place that writes the state file, the audit log and the flag.
//!
//! # Order of writes
//!
//! Under the state's commit lock ([`StateStore::lock_commits`]):
//!
//! 1. **check**: load the stored state; if its generation is not the one the decision was made from,
//!    someone else committed meanwhile (an operator's rollback during a slow scrape): the decision is
//!    discarded with [`StateError::Conflict`] and nothing is written;
//! 2. **repair**: if the stored state's last decision is missing from the audit log (a crash between
//!    steps 3 and 4 of an earlier commit), append it first, so the log stays complete and in order;
//! 3. **intent**: save the next state (generation + 1, the desired percent, the applied percent
//!    unchanged) with the record as its last decision;
//! 4. **audit**: append the record;
//! 5. **apply**: set the desired percent through the [`FlagSink`];
//! 6. **confirm**: save the state again with the applied percent (generation + 1).
//!
//! A crash after any step leaves a state the next commit or tick completes: the desired percent is
//! re-applied until confirmed, the audit record is re-appended from the state, and the flag never holds
//! a percent that no audit record explains (the record is durable before the apply). An apply failure
//! is counted (`upramp_rollout_apply_failures_total`) and leaves the decision committed: it is retried
//! on every tick, never un-decided.

use std::time::SystemTime;

use thiserror::Error;
use upramp_flags::Percent;

use crate::audit::{AuditError, AuditLog};
use crate::plan::PlanError;
use crate::sink::{FlagSink, SinkError};
use crate::state::{ControllerState, DecisionRecord, Phase, Transition, TransitionError};
use crate::store::{StateError, StateStore};

/// A step of a commit, for deterministic crash tests ([`Journal::crash_after`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CommitStep {
    /// The intent (the next state) is saved.
    Intent,
    /// The record is in the audit log.
    Audit,
    /// The sink applied the percent.
    Apply,
    /// The applied percent is saved.
    Confirm,
}

impl CommitStep {
    /// Every step, in order.
    pub const ALL: [CommitStep; 4] = [Self::Intent, Self::Audit, Self::Apply, Self::Confirm];
}

/// Why a controller operation failed.
#[derive(Debug, Error)]
pub enum RolloutError {
    /// The plan is invalid.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// Applying the percent failed. The decision is committed and audited; the controller re-applies
    /// the percent on every tick until the sink confirms it.
    #[error(transparent)]
    Sink(#[from] SinkError),
    /// Saving or loading the state failed, or (`StateError::Conflict`) someone committed since the
    /// decision's state was read and the decision was discarded.
    #[error(transparent)]
    State(#[from] StateError),
    /// Appending to the audit log failed.
    #[error(transparent)]
    Audit(#[from] AuditError),
    /// The operation is not possible in the current state, or lacks a reason.
    #[error(transparent)]
    Transition(#[from] TransitionError),
    /// A manual operation needs a state file.
    #[error("manual operations need a state file")]
    NoStore,
    /// A crash test stopped the commit after `step` (see [`Journal::crash_after`]).
    #[error("injected crash after the {step:?} step")]
    InjectedCrash {
        /// The last step written.
        step: CommitStep,
    },
}

impl RolloutError {
    /// Whether the error is a discarded decision: the stored state moved on (an operator committed).
    pub fn is_conflict(&self) -> bool {
        matches!(self, Self::State(StateError::Conflict { .. }))
    }
}

/// What a commit wrote.
#[derive(Debug)]
pub struct Committed {
    /// The state now stored.
    pub state: ControllerState,
    /// The audited record.
    pub record: DecisionRecord,
    /// Why the percent could not be applied, if it could not (the decision stands; retried next tick).
    pub apply_error: Option<SinkError>,
}

/// Where commits are written: the state file (or nothing, for an in-memory controller) and the audit
/// log, plus the flag name used as the metrics' `flag` label.
#[derive(Debug)]
pub struct Journal {
    store: Option<StateStore>,
    audit: AuditLog,
    flag: String,
    crash_after: Option<CommitStep>,
}

impl Journal {
    /// A journal writing `store` (if any) and `audit`.
    pub fn new(store: Option<StateStore>, audit: AuditLog, flag: impl Into<String>) -> Self {
        Self {
            store,
            audit,
            flag: flag.into(),
            crash_after: None,
        }
    }

    /// The state file, if any.
    pub fn store(&self) -> Option<&StateStore> {
        self.store.as_ref()
    }

    /// The audit log.
    pub fn audit(&self) -> &AuditLog {
        &self.audit
    }

    /// The flag label.
    pub fn flag(&self) -> &str {
        &self.flag
    }

    pub(crate) fn set_store(&mut self, store: StateStore) {
        self.store = Some(store);
    }

    pub(crate) fn set_audit(&mut self, audit: AuditLog) {
        self.audit = audit;
    }

    pub(crate) fn set_flag(&mut self, flag: String) {
        self.flag = flag;
    }

    pub(crate) fn into_audit(self) -> AuditLog {
        self.audit
    }

    /// For crash tests: stop every later commit right after `step`, as if the process died there
    /// ([`RolloutError::InjectedCrash`]); nothing after the step is written.
    #[doc(hidden)]
    pub fn crash_after(&mut self, step: Option<CommitStep>) {
        self.crash_after = step;
    }

    fn crash_point(&self, step: CommitStep) -> Result<(), RolloutError> {
        if self.crash_after == Some(step) {
            return Err(RolloutError::InjectedCrash { step });
        }
        Ok(())
    }

    /// The stored state (or `base` for an in-memory journal).
    pub fn current(&self, base: &ControllerState) -> Result<ControllerState, StateError> {
        match &self.store {
            Some(store) => store.load(),
            None => Ok(base.clone()),
        }
    }

    /// Commit `transition`, decided from `base`, in the order of the module documentation. `sink` is
    /// where the percent is applied; `None` leaves the apply to the running controller.
    pub fn commit<'s>(
        &mut self,
        base: &ControllerState,
        transition: Transition,
        sink: Option<&mut (dyn FlagSink + 's)>,
    ) -> Result<Committed, RolloutError> {
        let _guard = match &self.store {
            Some(store) => Some(store.lock_commits()?),
            None => None,
        };
        let stored = self.check(base)?;
        self.repair_audit(&stored)?;
        let Transition {
            mut next,
            mut record,
        } = transition;
        next.generation = base.generation + 1;
        record.generation = next.generation;
        next.last_decision = Some(record.clone());
        if let Some(store) = &self.store {
            store.save(&next)?;
        }
        self.crash_point(CommitStep::Intent)?;
        self.audit.append(&record)?;
        self.crash_point(CommitStep::Audit)?;
        upramp_telemetry::record_rollout_decision(&self.flag, record.decision.as_str());
        tracing::info!(
            decision = record.decision.as_str(),
            stage = record.stage.as_str(),
            percent = %record.percent,
            reason = record.reason.as_str(),
            "rollout decision"
        );
        let apply_error = match sink {
            Some(sink) => self.apply_locked(&mut next, sink)?,
            None => None,
        };
        self.publish(&next);
        Ok(Committed {
            state: next,
            record,
            apply_error,
        })
    }

    /// Re-apply the desired percent of the stored state if the sink has not confirmed it, and save the
    /// confirmation; returns the stored state (a newer one than `base` if someone committed since).
    pub fn reconcile(
        &mut self,
        base: &ControllerState,
        sink: &mut dyn FlagSink,
    ) -> Result<(ControllerState, Option<SinkError>), RolloutError> {
        let _guard = match &self.store {
            Some(store) => Some(store.lock_commits()?),
            None => None,
        };
        let mut stored = self.current(base)?;
        self.repair_audit(&stored)?;
        let error = self.apply_locked(&mut stored, sink)?;
        self.publish(&stored);
        Ok((stored, error))
    }

    fn check(&self, base: &ControllerState) -> Result<ControllerState, RolloutError> {
        let stored = self.current(base)?;
        if stored.generation != base.generation {
            let path = self
                .store
                .as_ref()
                .map(|s| s.path().to_owned())
                .unwrap_or_default();
            return Err(StateError::Conflict {
                path,
                expected: base.generation,
                found: stored.generation,
            }
            .into());
        }
        Ok(stored)
    }

    fn repair_audit(&mut self, stored: &ControllerState) -> Result<(), RolloutError> {
        let Some(last) = &stored.last_decision else {
            return Ok(());
        };
        if last.generation == 0 || self.audit.path().is_none() {
            return Ok(());
        }
        let audited = self.audit.last_generation()?.unwrap_or(0);
        if audited < last.generation {
            tracing::warn!(
                generation = last.generation,
                "the state's last decision is missing from the audit log (a crash mid-commit); appending it"
            );
            self.audit.append(last)?;
        }
        Ok(())
    }

    /// Apply `state.percent` and, on success, save the confirmation (a CAS from `state.generation`).
    fn apply_locked(
        &mut self,
        state: &mut ControllerState,
        sink: &mut dyn FlagSink,
    ) -> Result<Option<SinkError>, RolloutError> {
        if matches!(state.phase, Phase::Pending) {
            return Ok(None);
        }
        let percent = state.percent;
        if let Err(e) = sink.apply(percent) {
            upramp_telemetry::record_rollout_apply_failure(&self.flag);
            tracing::warn!(percent = %percent, error = %e, "cannot apply the rollout percent; retrying next tick");
            return Ok(Some(e));
        }
        self.crash_point(CommitStep::Apply)?;
        if state.applied_percent != Some(percent) {
            let mut confirmed = state.clone();
            confirmed.applied_percent = Some(percent);
            confirmed.generation = state.generation + 1;
            if let Some(store) = &self.store {
                store.save_if(state.generation, &confirmed)?;
            }
            *state = confirmed;
        }
        self.crash_point(CommitStep::Confirm)?;
        Ok(None)
    }

    fn publish(&self, state: &ControllerState) {
        upramp_telemetry::record_rollout_percent(&self.flag, state.percent.as_f64());
        upramp_telemetry::record_rollout_apply_state(
            &self.flag,
            state.percent.as_f64(),
            state.applied_percent.map(Percent::as_f64),
        );
    }
}

/// Apply a manual operation to a stored state: load, decide with `op`, commit by compare-and-swap,
/// retrying (a few times) when a running controller committed in between; the percent is applied
/// through `sink` when given, else by the running controller within one interval.
pub fn commit_manual<'s>(
    journal: &mut Journal,
    mut sink: Option<&mut (dyn FlagSink + 's)>,
    now: SystemTime,
    op: impl Fn(&ControllerState, SystemTime) -> Result<Transition, crate::TransitionError>,
) -> Result<Committed, RolloutError> {
    let store = journal.store.clone().ok_or(RolloutError::NoStore)?;
    let mut attempts = 0;
    loop {
        let base = store.load()?;
        let transition = op(&base, now)?;
        match journal.commit(&base, transition, sink.as_deref_mut()) {
            Err(RolloutError::State(StateError::Conflict { .. })) if attempts < 8 => attempts += 1,
            other => return other,
        }
    }
}
