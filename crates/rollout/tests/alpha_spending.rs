//! Alpha spending across a stage's looks: a decisive breach still rolls back at once however late the
//! look, consecutive failures still count, the look count lives in the state, restarts with every
//! stage and loads from state files written before it existed.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use upramp_rollout::{
    evaluate, ControllerState, Decision, EvalContext, GateInputs, GateKind, GateOutcome, Gates,
    PathSample, Phase, Plan, Verdict,
};

mod common;
use common::{start, HOUR};

fn path(samples: u64, errors: u64) -> PathSample {
    PathSample {
        samples,
        successes: samples - errors,
        errors,
        fallbacks: 0,
        p99: Some(Duration::from_millis(50)),
        ..PathSample::default()
    }
}

/// A window at the 10% stage: `async_n` async legs with `errors`, a healthy control nine times larger.
fn window(async_n: u64, errors: u64) -> GateInputs {
    GateInputs {
        async_: path(async_n, errors),
        sync: path(9 * async_n, 9 * async_n / 500),
    }
}

fn ctx(look: u32) -> EvalContext {
    EvalContext {
        min_async_samples: 1_000,
        judge_async: true,
        expect_control: true,
        remembered_control_p99: None,
        look,
    }
}

/// The default plan baking its 10% stage, `looks` windows already judged in it.
fn baking_ten_percent(looks: u32) -> ControllerState {
    let plan = Plan::default_three_week();
    let mut state = ControllerState::new(plan.clone()).unwrap();
    state.phase = Phase::Baking {
        stage: 2,
        since: start(),
    };
    state.percent = plan.stages[2].percent;
    state.evaluations_in_stage = looks;
    state
}

#[test]
fn a_decisive_breach_rolls_back_at_once_at_the_first_and_at_a_very_late_look() {
    // 10% errors against a 2% limit in 2,000 legs.
    for looks_before in [0, 27, 10_000, u32::MAX - 1] {
        let state = baking_ten_percent(looks_before);
        let t = state.on_tick(start() + HOUR, |_| Ok(window(2_000, 200)));
        assert_eq!(t.record.decision, Decision::Rollback, "{}", t.record.reason);
        assert_eq!(t.record.outcome, Some(GateOutcome::Fail { decisive: true }));
        assert!(
            t.record.reason.contains("decisive breach"),
            "{}",
            t.record.reason
        );
        assert_eq!(t.next.consecutive_failures, 1);
        assert_eq!(t.next.evaluations_in_stage, looks_before + 1);
        assert!(matches!(t.next.phase, Phase::RolledBack { .. }));
    }
}

#[test]
fn the_fail_interval_widens_with_the_look_and_the_pass_interval_does_not() {
    let gates = Gates::default();
    // 3.5% errors in 1,000 legs: a failure at the fixed 95% and at the first look's 96.96%, no longer
    // at the 28th look's 99.996%.
    let inputs = window(1_000, 35);
    let error_gate = |look| {
        evaluate(&gates, &inputs, &ctx(look))
            .gates
            .into_iter()
            .find(|v| v.gate == GateKind::ErrorRate)
            .unwrap()
    };
    let first = error_gate(1);
    let late = error_gate(28);
    assert_eq!(first.verdict, Verdict::Fail, "{first}");
    assert_eq!(late.verdict, Verdict::Inconclusive, "{late}");
    assert_eq!(first.interval, late.interval, "the pass side keeps 95%");
    let (first_side, late_side) = (first.fail_side.unwrap(), late.fail_side.unwrap());
    assert_eq!((first_side.look, late_side.look), (1, 28));
    assert!(late_side.interval.lo < first_side.interval.lo);
    assert!(first_side.interval.lo < first.interval.unwrap().lo);
    assert!((late_side.alpha - 0.025 * 6.0 / (std::f64::consts::PI.powi(2) * 784.0)).abs() < 1e-12);
    // The audit line names the look and its interval.
    let line = first.to_string();
    assert!(line.contains("look 1 fail interval ["), "{line}");

    // The fixed rule, for comparison: every look fails it, and the verdict carries no fail side.
    let fixed = Gates {
        alpha_spending: false,
        ..Gates::default()
    };
    let verdict = evaluate(&fixed, &inputs, &ctx(28))
        .gates
        .into_iter()
        .find(|v| v.gate == GateKind::ErrorRate)
        .unwrap();
    assert_eq!(verdict.verdict, Verdict::Fail);
    assert_eq!(verdict.fail_side, None);

    // The sync control keeps the fixed confidence on both sides at every look.
    let control = evaluate(&gates, &inputs, &ctx(1_000)).control;
    assert!(control.iter().all(|v| v.fail_side.is_none()));
}

#[test]
fn consecutive_non_decisive_failures_still_roll_back_at_the_failure_limit() {
    // 3% errors in 3,000 legs: the first looks' intervals lie above 2%, so they fail, but not decisively
    // (far from 4%).
    let state = baking_ten_percent(0);
    let first = state.on_tick(start() + HOUR, |_| Ok(window(3_000, 90)));
    assert_eq!(
        first.record.decision,
        Decision::Hold,
        "{}",
        first.record.reason
    );
    assert_eq!(
        first.record.outcome,
        Some(GateOutcome::Fail { decisive: false })
    );
    assert_eq!(first.next.consecutive_failures, 1);
    let second = first
        .next
        .on_tick(start() + 2 * HOUR, |_| Ok(window(3_000, 90)));
    assert_eq!(
        second.record.decision,
        Decision::Rollback,
        "{}",
        second.record.reason
    );
    assert!(
        second
            .record
            .reason
            .contains("2 consecutive failed evaluations"),
        "{}",
        second.record.reason
    );
    assert_eq!(second.next.evaluations_in_stage, 2);

    // The same window late in a stage no longer counts as a failure: it holds as inconclusive, and an
    // earlier failure stays counted (inconclusive neither counts nor resets).
    let mut late = baking_ten_percent(40);
    late.consecutive_failures = 1;
    let t = late.on_tick(start() + HOUR, |_| Ok(window(3_000, 90)));
    assert_eq!(t.record.decision, Decision::Hold);
    assert_eq!(t.record.outcome, Some(GateOutcome::Inconclusive));
    assert_eq!(t.next.consecutive_failures, 1);
}

#[test]
fn the_look_count_restarts_with_every_stage_and_skips_failed_reads() {
    let plan = Plan::default_three_week();
    let mut state = ControllerState::new(plan.clone()).unwrap();
    let mut now = start();
    let healthy = |samples: u64| GateInputs {
        async_: path(samples, 0),
        sync: path(samples.max(2_000), 0),
    };
    // Pending -> baking the baseline: no look yet.
    state = state.on_tick(now, |_| Ok(healthy(0))).next;
    assert_eq!(state.evaluations_in_stage, 0);
    // Two judged windows in the baseline, and a failed read that judges none.
    for _ in 0..2 {
        now += HOUR;
        state = state.on_tick(now, |_| Ok(healthy(0))).next;
    }
    assert_eq!(state.evaluations_in_stage, 2);
    now += HOUR;
    state = state
        .on_tick(now, |_| {
            Err(upramp_rollout::SourceError::Fetch {
                url: "http://127.0.0.1:9/metrics".to_owned(),
                message: "connection refused".to_owned(),
            })
        })
        .next;
    assert_eq!(state.evaluations_in_stage, 2);
    // Past the bake the next passing look advances, and the new stage starts counting from 0.
    now += plan.stages[0].min_bake;
    let t = state.on_tick(now, |_| Ok(healthy(0)));
    assert_eq!(t.record.decision, Decision::Advance, "{}", t.record.reason);
    assert_eq!(t.next.stage_index(), 1);
    assert_eq!(t.next.evaluations_in_stage, 0);
    // A look in the canary, then an operator's advance: the count restarts again.
    now += HOUR;
    let state = t.next.on_tick(now, |_| Ok(healthy(5_000))).next;
    assert_eq!(state.evaluations_in_stage, 1);
    let state = state.advance(now, "skip ahead").unwrap().next;
    assert_eq!(state.stage_index(), 2);
    assert_eq!(state.evaluations_in_stage, 0);
    // A pause is no stage change: its looks keep counting.
    let state = state.on_tick(now + HOUR, |_| Ok(healthy(5_000))).next;
    let paused = state.pause(now + HOUR, "investigating").unwrap().next;
    let paused = paused.on_tick(now + 2 * HOUR, |_| Ok(healthy(5_000))).next;
    assert_eq!(paused.evaluations_in_stage, 2);
}

#[test]
fn a_state_file_without_the_look_count_loads_at_zero() {
    let mut state = baking_ten_percent(7);
    state.plan.stages[2].gates.alpha_spending = false;
    let mut json: serde_json::Value = serde_json::to_value(&state).unwrap();
    assert_eq!(json["evaluations_in_stage"], 7);
    json.as_object_mut().unwrap().remove("evaluations_in_stage");
    for stage in json["plan"]["stages"].as_array_mut().unwrap() {
        stage["gates"]
            .as_object_mut()
            .unwrap()
            .remove("alpha_spending");
    }
    let loaded: ControllerState = serde_json::from_value(json).unwrap();
    assert_eq!(loaded.evaluations_in_stage, 0);
    // Plans written before the field spend alpha, the default.
    assert!(loaded.plan.stages.iter().all(|s| s.gates.alpha_spending));
}

#[test]
fn plans_can_turn_alpha_spending_off_and_refuse_a_non_boolean() {
    let text = |value: &str| {
        format!(
            "[gates]\nalpha_spending = {value}\n\n[[stages]]\nname = \"canary\"\npercent = 5\nmin_bake = \"1h\"\nmin_async_samples = 100\n"
        )
    };
    let plan = Plan::from_toml_str(&text("false")).unwrap();
    assert!(!plan.stages[0].gates.alpha_spending);
    assert!(Plan::default_three_week()
        .stages
        .iter()
        .all(|s| s.gates.alpha_spending));
    let err = Plan::from_toml_str(&text("\"yes\""))
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "plan: field `gates.alpha_spending`: \"yes\" must be true or false"
    );
}
