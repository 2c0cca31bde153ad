//! Property tests of the controller's invariants over random metric streams and manual operations.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use proptest::prelude::*;
use upramp_flags::Percent;
use upramp_rollout::{
    Controller, Decision, DecisionRecord, FnSource, GateInputs, GateOutcome, PathSample, Phase,
    Plan, RecordingSink, SourceError,
};

#[derive(Debug, Clone)]
enum Step {
    Tick {
        gap_mins: u64,
        async_n: u64,
        async_err_permille: u64,
        sync_n: u64,
        sync_err_permille: u64,
        p99_ratio_pct: u64,
    },
    Advance,
    Pause,
    Resume,
    Rollback,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        20 => (1u64..6_000, 0u64..5_000, 0u64..120, 0u64..20_000, 0u64..60, 50u64..400).prop_map(
            |(gap_mins, async_n, async_err_permille, sync_n, sync_err_permille, p99_ratio_pct)| Step::Tick {
                gap_mins, async_n, async_err_permille, sync_n, sync_err_permille, p99_ratio_pct
            }
        ),
        1 => Just(Step::Advance),
        1 => Just(Step::Pause),
        1 => Just(Step::Resume),
        1 => Just(Step::Rollback),
    ]
}

fn sample(n: u64, err_permille: u64, p99: Duration) -> PathSample {
    let errors = n * err_permille / 1_000;
    PathSample {
        samples: n,
        successes: n - errors,
        errors,
        p99: (n > 0).then_some(p99),
        ..PathSample::default()
    }
}

/// Run the steps; returns every record (ticks and manual operations that were allowed).
fn run(steps: &[Step]) -> Vec<DecisionRecord> {
    let plan = Plan::default_three_week();
    let max = plan.stages.iter().map(|s| s.percent).max().unwrap();
    let windows: Vec<GateInputs> = steps
        .iter()
        .filter_map(|s| match *s {
            Step::Tick {
                async_n,
                async_err_permille,
                sync_n,
                sync_err_permille,
                p99_ratio_pct,
                ..
            } => Some(GateInputs {
                async_: sample(
                    async_n,
                    async_err_permille,
                    Duration::from_millis(p99_ratio_pct),
                ),
                sync: sample(sync_n, sync_err_permille, Duration::from_millis(100)),
            }),
            _ => None,
        })
        .collect();
    let mut next_window = windows.into_iter();
    let source = FnSource(move |_now| -> Result<GateInputs, SourceError> {
        Ok(next_window.next().unwrap_or_default())
    });
    let mut c = Controller::new(plan.clone(), source, RecordingSink::default()).unwrap();
    let mut now = start();
    let mut records = Vec::new();
    for s in steps {
        let before = c.state().clone();
        let result = match s {
            Step::Tick { gap_mins, .. } => {
                now += Duration::from_secs(gap_mins * 60);
                c.tick(now)
            }
            Step::Advance => c.advance(now, "prop"),
            Step::Pause => c.pause(now, "prop"),
            Step::Resume => c.resume(now, "prop"),
            Step::Rollback => c.rollback(now, "prop"),
        };
        let Ok(record) = result else {
            // A refused manual operation changes nothing.
            assert_eq!(*c.state(), before);
            continue;
        };
        let state = c.state();
        // Never above the plan; always 0% or a stage's percent; the sink holds what the state says.
        assert!(state.percent <= max);
        assert!(
            state.percent == Percent::ZERO
                || plan.stages.iter().any(|st| st.percent == state.percent)
        );
        if !matches!(state.phase, Phase::Pending) {
            assert_eq!(c.sink().current(), Some(state.percent));
        }
        // A rollback always lands at 0% at once.
        if record.decision == Decision::Rollback {
            assert_eq!(record.percent, Percent::ZERO);
            assert!(matches!(state.phase, Phase::RolledBack { .. }));
        }
        if matches!(state.phase, Phase::RolledBack { .. }) {
            assert_eq!(state.percent, Percent::ZERO);
        }
        // An automatic advance or completion needs the bake time and the minimum async samples.
        if matches!(s, Step::Tick { .. })
            && matches!(record.decision, Decision::Advance | Decision::Complete)
        {
            if let Phase::Baking { stage, since } = before.phase {
                let st = &plan.stages[stage];
                assert!(now.duration_since(since).unwrap() >= st.min_bake);
                assert!(record.inputs.unwrap().async_.samples >= st.min_async_samples);
                assert_eq!(record.outcome, Some(GateOutcome::Pass));
            } else {
                assert!(matches!(before.phase, Phase::Pending), "{:?}", before.phase);
            }
        }
        records.push(record);
    }
    records
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn invariants_hold_and_decisions_are_deterministic(steps in prop::collection::vec(step(), 1..120)) {
        let first = run(&steps);
        let second = run(&steps);
        prop_assert_eq!(first, second);
    }

    #[test]
    fn healthy_streams_never_roll_back(gaps in prop::collection::vec(1u64..3_000, 1..200)) {
        let (source, sink) = sim(|_, p| split(200_000, p, HEALTHY, HEALTHY));
        let mut c = Controller::new(Plan::default_three_week(), source, sink).unwrap();
        let mut now = start();
        for gap in gaps {
            now += Duration::from_secs(gap * 60);
            let r = c.tick(now).unwrap();
            prop_assert_ne!(r.decision, Decision::Rollback);
        }
    }
}
