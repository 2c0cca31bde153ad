//! Scenario tests: the controller on synthetic metric streams.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, SystemTime};

use common::*;
use upramp_flags::Percent;
use upramp_rollout::{AuditLog, Controller, Decision, GateKind, Phase, Plan, StateStore, Verdict};

/// Tick every hour until the rollout is terminal or `limit` passes; returns (time, decision, percent).
fn drive<S, K>(
    c: &mut Controller<S, K>,
    from: SystemTime,
    step: Duration,
    limit: Duration,
) -> Vec<(SystemTime, Decision, Percent)>
where
    S: upramp_rollout::MetricsSource,
    K: upramp_rollout::FlagSink,
{
    let mut out = Vec::new();
    let mut now = from;
    while !c.state().phase.is_terminal() && now.duration_since(from).unwrap() <= limit {
        let r = c.tick(now).unwrap();
        out.push((now, r.decision, r.percent));
        now += step;
    }
    out
}

#[test]
fn healthy_traffic_completes_all_five_stages() {
    let (source, sink) = sim(|_, p| split(200_000, p, HEALTHY, HEALTHY));
    let mut c = Controller::new(Plan::default_three_week(), source, sink.clone()).unwrap();
    let log = drive(&mut c, start(), HOUR, 30 * DAY);
    let advances: Vec<Percent> = log
        .iter()
        .filter(|(_, d, _)| *d == Decision::Advance)
        .map(|(_, _, p)| *p)
        .collect();
    let pcts: Vec<u32> = advances.iter().map(|p| p.thousandths()).collect();
    assert_eq!(pcts, vec![0, 1_000, 10_000, 50_000, 100_000]);
    assert!(matches!(c.state().phase, Phase::Completed { .. }));
    let (end, decision, percent) = *log.last().unwrap();
    assert_eq!(decision, Decision::Complete);
    assert_eq!(percent, Percent::HUNDRED);
    assert_eq!(sink.percent(), Percent::HUNDRED);
    // 21 days of bake, each stage advancing on the first tick after its bake.
    assert_eq!(end.duration_since(start()).unwrap(), 21 * DAY);
    assert!(log.iter().all(|(_, d, _)| *d != Decision::Rollback));
}

fn at_ten_percent_with_async_error_rate(
    total: u64,
    rate: f64,
) -> (Vec<(SystemTime, Decision, Percent)>, AuditLog) {
    let (source, sink) = sim(move |_, p| {
        let async_health = if p.thousandths() == 10_000 {
            Health {
                error_rate: rate,
                p99_ms: 100,
            }
        } else {
            HEALTHY
        };
        split(total, p, async_health, HEALTHY)
    });
    let mut c = Controller::new(Plan::default_three_week(), source, sink.clone()).unwrap();
    let log = drive(&mut c, start(), HOUR, 30 * DAY);
    assert_eq!(sink.percent(), Percent::ZERO);
    let (_, _, _, audit) = c.into_parts();
    (log, audit)
}

fn evaluations_at_ten_percent_until_rollback(log: &[(SystemTime, Decision, Percent)]) -> usize {
    // Evaluations judged at 10%: the ticks after the advance to 10% up to the rollback.
    let advance = log
        .iter()
        .position(|(_, d, p)| *d == Decision::Advance && p.thousandths() == 10_000)
        .unwrap();
    let rollback = log
        .iter()
        .position(|(_, d, _)| *d == Decision::Rollback)
        .unwrap();
    rollback - advance
}

#[test]
fn five_percent_async_errors_at_ten_percent_roll_back_at_once_with_large_samples() {
    let (log, audit) = at_ten_percent_with_async_error_rate(200_000, 0.05);
    assert_eq!(evaluations_at_ten_percent_until_rollback(&log), 1);
    let last = audit.records().last().unwrap();
    assert_eq!(last.decision, Decision::Rollback);
    assert!(last.reason.contains("decisive breach"), "{}", last.reason);
    let failing: Vec<_> = last.failing_gates().collect();
    assert!(failing
        .iter()
        .any(|v| v.gate == GateKind::ErrorRate && v.interval.unwrap().lo > 0.04));
}

#[test]
fn five_percent_async_errors_at_ten_percent_roll_back_within_two_evaluations_with_few_samples() {
    // Quiet hours at 10%: 4_000 requests per hour, so 400 async samples per window, too few for a
    // decisive breach (500); 5% errors still put the whole interval above 2%.
    let (source, sink) = sim(|_, p| {
        if p.thousandths() == 10_000 {
            split(
                4_000,
                p,
                Health {
                    error_rate: 0.05,
                    p99_ms: 100,
                },
                HEALTHY,
            )
        } else {
            split(200_000, p, HEALTHY, HEALTHY)
        }
    });
    let mut plan = Plan::default_three_week();
    plan.scale_min_samples(0.1);
    let mut c = Controller::new(plan, source, sink.clone()).unwrap();
    let log = drive(&mut c, start(), HOUR, 30 * DAY);
    let n = evaluations_at_ten_percent_until_rollback(&log);
    assert_eq!(n, 2);
    let records = c.audit().records();
    let first_fail = &records[records.len() - 2];
    assert_eq!(first_fail.decision, Decision::Hold);
    assert!(
        first_fail.reason.starts_with("failed evaluation 1 of 2"),
        "{}",
        first_fail.reason
    );
    assert_eq!(sink.percent(), Percent::ZERO);
    let rollback = records.last().unwrap();
    assert!(
        rollback.reason.contains("2 consecutive failed evaluations"),
        "{}",
        rollback.reason
    );
    assert!(log.iter().all(|(_, _, p)| p.thousandths() <= 10_000));
}

#[test]
fn async_p99_three_times_sync_rolls_back() {
    let (source, sink) = sim(|_, p| {
        let slow = Health {
            error_rate: 0.002,
            p99_ms: 300,
        };
        split(
            200_000,
            p,
            if p.thousandths() >= 10_000 {
                slow
            } else {
                HEALTHY
            },
            HEALTHY,
        )
    });
    let mut c = Controller::new(Plan::default_three_week(), source, sink.clone()).unwrap();
    drive(&mut c, start(), HOUR, 30 * DAY);
    let last = c.audit().records().last().unwrap();
    assert_eq!(last.decision, Decision::Rollback);
    let ratio = last
        .failing_gates()
        .find(|v| v.gate == GateKind::P99Ratio)
        .unwrap();
    assert!((ratio.observed.unwrap() - 3.0).abs() < 1e-9);
    assert!(ratio.decisive);
    assert_eq!(sink.percent(), Percent::ZERO);
}

#[test]
fn low_traffic_holds_and_never_falsely_rolls_back() {
    // 2_000 requests per hour: 20 async samples per window at 1%, with a true error rate of 1% whose
    // errors arrive in bursts (some windows show 1 or 2 errors out of 20: 5-10% observed).
    let mut lcg: u64 = 0x2545_f491_4f6c_dd1d;
    let (source, sink) = sim(move |_, p| {
        let mut inputs = split(2_000, p, HEALTHY, HEALTHY);
        lcg = lcg
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let errors = match lcg >> 60 {
            0 => 2,
            1..=3 => 1,
            _ => 0,
        }
        .min(inputs.async_.samples);
        inputs.async_.errors = errors;
        inputs.async_.successes = inputs.async_.samples - errors;
        inputs
    });
    let mut c = Controller::new(Plan::default_three_week(), source, sink.clone()).unwrap();
    let log = drive(&mut c, start(), HOUR, 30 * DAY);
    assert!(log.iter().all(|(_, d, _)| *d != Decision::Rollback));
    assert_eq!(c.state().stage_index(), 1, "held at 1%");
    assert_eq!(sink.percent().thousandths(), 1_000);
    let last = c.audit().records().last().unwrap();
    assert!(last.reason.starts_with("inconclusive"), "{}", last.reason);
    assert!(last.gates.iter().all(|v| v.verdict != Verdict::Fail));
}

#[test]
fn outage_on_both_paths_holds_then_progresses_after_recovery() {
    let outage_from = start() + 8 * DAY; // inside the 10% stage (days 7 to 11)
    let outage_to = outage_from + 6 * HOUR;
    let (source, sink) = sim(move |now, p| {
        let broken = Health {
            error_rate: 0.3,
            p99_ms: 100,
        };
        if now >= outage_from && now < outage_to {
            split(200_000, p, broken, broken)
        } else {
            split(200_000, p, HEALTHY, HEALTHY)
        }
    });
    let mut c = Controller::new(Plan::default_three_week(), source, sink.clone()).unwrap();
    let log = drive(&mut c, start(), HOUR, 40 * DAY);
    let during: Vec<_> = c
        .audit()
        .records()
        .iter()
        .filter(|r| r.at >= outage_from && r.at < outage_to)
        .collect();
    assert_eq!(during.len(), 6);
    for r in &during {
        assert_eq!(r.decision, Decision::Hold);
        assert_eq!(r.percent.thousandths(), 10_000);
        assert!(
            r.reason.starts_with("provider-wide degradation"),
            "{}",
            r.reason
        );
    }
    assert!(log.iter().all(|(_, d, _)| *d != Decision::Rollback));
    assert!(matches!(c.state().phase, Phase::Completed { .. }));
    assert_eq!(sink.percent(), Percent::HUNDRED);
}

#[test]
fn restart_mid_stage_resumes_the_same_state() {
    let dir = tempfile::tempdir().unwrap();
    let store = StateStore::new(dir.path().join("state.json"));
    let scenario = |_: SystemTime, p: Percent| split(200_000, p, HEALTHY, HEALTHY);

    // Uninterrupted reference run.
    let (source, sink) = sim(scenario);
    let mut reference = Controller::new(Plan::default_three_week(), source, sink).unwrap();
    let reference_log = drive(&mut reference, start(), HOUR, 30 * DAY);

    // The same run, stopped mid-stage (day 9, in the 10% stage) and restarted from the state file.
    let (source, sink) = sim(scenario);
    let mut first = Controller::new(Plan::default_three_week(), source, sink)
        .unwrap()
        .with_store(store.clone());
    let mut log = drive(&mut first, start(), HOUR, 9 * DAY);
    let before = first.state().clone();
    drop(first);

    let loaded = store.load().unwrap();
    assert_eq!(loaded, before);
    assert_eq!(loaded.stage_index(), 2);
    assert!(
        matches!(loaded.phase, Phase::Baking { stage: 2, since } if since == start() + 7 * DAY)
    );
    let (source, sink) = sim(scenario);
    sink.0.set(loaded.percent.thousandths());
    let mut second = Controller::from_state(loaded, source, sink).with_store(store.clone());
    let resume_at = log.last().unwrap().0 + HOUR;
    log.extend(drive(&mut second, resume_at, HOUR, 30 * DAY));
    assert_eq!(log, reference_log);
    assert_eq!(store.load().unwrap(), *second.state());
}

#[test]
fn failure_count_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let store = StateStore::new(dir.path().join("state.json"));
    let mut plan = Plan::default_three_week();
    plan.stages.remove(0);
    let bad = |_: SystemTime, p: Percent| {
        // 300 async samples with 5% errors: a non-decisive failure.
        split(
            30_000,
            p,
            Health {
                error_rate: 0.05,
                p99_ms: 100,
            },
            HEALTHY,
        )
    };
    let (source, sink) = sim(bad);
    let mut c = Controller::new(plan, source, sink)
        .unwrap()
        .with_store(store.clone());
    assert_eq!(c.tick(start()).unwrap().decision, Decision::Advance);
    assert_eq!(c.tick(start() + HOUR).unwrap().decision, Decision::Hold);
    assert_eq!(c.state().consecutive_failures, 1);
    drop(c);
    let (source, sink) = sim(bad);
    let loaded = store.load().unwrap();
    assert_eq!(loaded.consecutive_failures, 1);
    sink.0.set(loaded.percent.thousandths());
    let mut c = Controller::from_state(loaded, source, sink.clone()).with_store(store.clone());
    assert_eq!(
        c.tick(start() + 2 * HOUR).unwrap().decision,
        Decision::Rollback
    );
    assert_eq!(sink.percent(), Percent::ZERO);
    assert!(matches!(
        store.load().unwrap().phase,
        Phase::RolledBack { .. }
    ));
}

#[test]
fn manual_operations_pause_resume_advance_rollback() {
    let (source, sink) = sim(|_, p| split(200_000, p, HEALTHY, HEALTHY));
    let mut c = Controller::new(Plan::default_three_week(), source, sink.clone()).unwrap();
    c.tick(start()).unwrap();
    assert_eq!(
        c.advance(start() + HOUR, "skip baseline")
            .unwrap()
            .percent
            .thousandths(),
        1_000
    );
    let paused = c
        .pause(start() + 2 * HOUR, "investigating a ticket")
        .unwrap();
    assert_eq!(paused.decision, Decision::Pause);
    // Paused: healthy gates never promote, even long after the bake.
    let r = c.tick(start() + 10 * DAY).unwrap();
    assert_eq!(r.decision, Decision::Hold);
    assert!(r.reason.starts_with("paused"), "{}", r.reason);
    // The pause does not count as bake: 1h baked before, so 5d - 1h remain after resuming.
    let resumed_at = start() + 10 * DAY;
    c.resume(resumed_at, "ticket closed").unwrap();
    assert_eq!(
        c.tick(resumed_at + 4 * DAY).unwrap().decision,
        Decision::Hold
    );
    assert_eq!(
        c.tick(resumed_at + 5 * DAY - HOUR).unwrap().decision,
        Decision::Advance
    );
    assert!(c.resume(resumed_at, "again").is_err());
    assert!(c.pause(resumed_at, "  ").is_err());
    let r = c.rollback(resumed_at + 6 * DAY, "customer report").unwrap();
    assert_eq!(r.decision, Decision::Rollback);
    assert_eq!(sink.percent(), Percent::ZERO);
    assert_eq!(
        c.advance(resumed_at + 7 * DAY, "x")
            .unwrap_err()
            .to_string(),
        "cannot advance a rollout that is rolled_back"
    );
    let decisions: Vec<_> = c
        .audit()
        .records()
        .iter()
        .map(|r| r.decision.as_str())
        .collect();
    assert_eq!(
        decisions,
        ["advance", "advance", "pause", "hold", "resume", "hold", "advance", "rollback"]
    );
}
