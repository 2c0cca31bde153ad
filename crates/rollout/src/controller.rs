//! The controller: each `tick(now)` reloads the stored state, re-applies an unconfirmed percent, reads a
//! window of metrics, decides with the pure transitions of [`ControllerState`], and commits the decision
//! through its [`Journal`] (compare-and-swap on the generation, audit, apply, confirm).

use std::fmt;
use std::time::SystemTime;

use upramp_flags::Percent;

use crate::audit::AuditLog;
pub use crate::commit::RolloutError;
use crate::commit::{CommitStep, Committed, Journal};
use crate::plan::Plan;
use crate::sink::{FlagSink, SinkError};
use crate::source::MetricsSource;
use crate::state::{ControllerState, DecisionRecord, Transition, TransitionError};
use crate::store::{StateError, StateStore};

/// The rollout controller. Generic over where metrics come from and where the percent goes; it never
/// sleeps or reads the wall clock: the caller passes `now` to every operation.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use upramp_rollout::{Controller, Decision, FnSource, GateInputs, PathSample, NullSink, Plan, SourceError};
///
/// let healthy = |_now| -> Result<GateInputs, SourceError> {
///     let path = PathSample { samples: 5_000, successes: 5_000, p99: Some(Duration::from_millis(80)), ..Default::default() };
///     Ok(GateInputs { async_: path, sync: path })
/// };
/// let mut controller = Controller::new(Plan::default_three_week(), FnSource(healthy), NullSink)?;
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
    journal: Journal,
}

impl<S, K> fmt::Debug for Controller<S, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Controller")
            .field("state", &self.state)
            .field("journal", &self.journal)
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
            journal: Journal::new(None, AuditLog::in_memory(), upramp_flags::ASYNC_UPLOAD),
        }
    }

    /// Commit to `store` (compare-and-swap on the generation). A store that has no file yet gets the
    /// controller's current state written, so later commits have something to compare with.
    pub fn with_store(mut self, store: StateStore) -> Self {
        if matches!(store.load(), Err(StateError::Missing { .. })) {
            // An error here surfaces again, named, on the first commit.
            let _ = store.create(&self.state);
        }
        self.journal.set_store(store);
        self
    }

    /// Append decisions to `audit` instead of a fresh in-memory log.
    pub fn with_audit(mut self, audit: AuditLog) -> Self {
        self.journal.set_audit(audit);
        self
    }

    /// The flag name used as the `flag` label of the rollout metrics (default `async_upload`).
    pub fn with_flag_name(mut self, flag: impl Into<String>) -> Self {
        self.journal.set_flag(flag.into());
        self
    }

    /// For crash tests: stop commits right after `step` (see [`Journal::crash_after`]).
    #[doc(hidden)]
    pub fn with_crash_after(mut self, step: Option<CommitStep>) -> Self {
        self.journal.crash_after(step);
        self
    }

    /// The current state (as of the last operation).
    pub fn state(&self) -> &ControllerState {
        &self.state
    }

    /// The audit log (records of this controller in memory, plus its file if any).
    pub fn audit(&self) -> &AuditLog {
        self.journal.audit()
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
        (
            self.state,
            self.source,
            self.sink,
            self.journal.into_audit(),
        )
    }

    /// Reload the stored state (operators may have committed) and re-apply its desired percent if the
    /// sink has not confirmed it. Cheap; `tick` starts with it, and a loop may call it more often.
    pub fn reconcile(&mut self) -> Result<Option<SinkError>, RolloutError> {
        let (state, error) = self.journal.reconcile(&self.state, &mut self.sink)?;
        self.state = state;
        Ok(error)
    }

    /// One evaluation at `now`; see the crate documentation for the rules.
    ///
    /// Order: [`reconcile`](Self::reconcile) (pick up manual operations, re-apply an unconfirmed
    /// percent), read the window (possibly slow; no lock is held), decide, commit by compare-and-swap.
    /// If someone committed while the window was read, the decision is discarded and
    /// `RolloutError::State(StateError::Conflict)` is returned ([`RolloutError::is_conflict`]); the next
    /// tick decides from the new state. A source error holds (and is audited). If the percent cannot be
    /// applied, the decision still stands (committed and audited) and `RolloutError::Sink` is returned;
    /// every later tick re-applies it.
    pub fn tick(&mut self, now: SystemTime) -> Result<DecisionRecord, RolloutError> {
        self.reconcile()?;
        let base = self.state.clone();
        let source = &mut self.source;
        let mut transition = base.on_tick(now, |at| source.window(at));
        transition.record.queries = self.source.evidence();
        self.commit(&base, transition)
    }

    /// Pause promotion (the percent stays; failing gates still roll back).
    pub fn pause(&mut self, now: SystemTime, reason: &str) -> Result<DecisionRecord, RolloutError> {
        self.manual(now, |s, now| s.pause(now, reason))
    }

    /// Resume a paused rollout; the bake clock does not count the pause.
    pub fn resume(
        &mut self,
        now: SystemTime,
        reason: &str,
    ) -> Result<DecisionRecord, RolloutError> {
        self.manual(now, |s, now| s.resume(now, reason))
    }

    /// Promote to the next stage now (or complete from the last one), whatever the gates say.
    pub fn advance(
        &mut self,
        now: SystemTime,
        reason: &str,
    ) -> Result<DecisionRecord, RolloutError> {
        self.manual(now, |s, now| s.advance(now, reason))
    }

    /// Roll back to 0% now, from any state; on a rolled-back rollout it re-applies 0%.
    pub fn rollback(
        &mut self,
        now: SystemTime,
        reason: &str,
    ) -> Result<DecisionRecord, RolloutError> {
        self.manual(now, |s, now| s.rollback(now, reason))
    }

    fn manual(
        &mut self,
        now: SystemTime,
        op: impl Fn(&ControllerState, SystemTime) -> Result<Transition, TransitionError>,
    ) -> Result<DecisionRecord, RolloutError> {
        // An operator acts on what is stored now, not on this handle's possibly stale copy.
        let base = self.journal.current(&self.state)?;
        self.state = base.clone();
        let transition = op(&base, now)?;
        self.commit(&base, transition)
    }

    fn commit(
        &mut self,
        base: &ControllerState,
        transition: Transition,
    ) -> Result<DecisionRecord, RolloutError> {
        let result = self.journal.commit(base, transition, Some(&mut self.sink));
        match result {
            Ok(Committed {
                state,
                record,
                apply_error,
            }) => {
                self.state = state;
                match apply_error {
                    Some(e) => Err(e.into()),
                    None => Ok(record),
                }
            }
            Err(e) => {
                if e.is_conflict() {
                    // Start the next tick from what is stored.
                    if let Ok(stored) = self.journal.current(&self.state) {
                        self.state = stored;
                    }
                }
                Err(e)
            }
        }
    }
}

impl<S: MetricsSource + ?Sized> MetricsSource for &mut S {
    fn window(&mut self, now: SystemTime) -> Result<crate::GateInputs, crate::SourceError> {
        (**self).window(now)
    }

    fn evidence(&self) -> Vec<crate::QueryReading> {
        (**self).evidence()
    }
}

impl<K: FlagSink + ?Sized> FlagSink for &mut K {
    fn apply(&mut self, percent: Percent) -> Result<(), SinkError> {
        (**self).apply(percent)
    }
}
