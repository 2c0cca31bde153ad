//! The seven fault scenarios, each in a fresh world (fresh stand-ins, flag store, aggregator and
//! controller), each with its expected outcome checked.

use std::sync::Arc;
use std::time::Duration;

use upramp_flags::Percent;
use upramp_harness::FaultPlan;
use upramp_rollout::{
    commit_manual, AggregatorSource, AuditLog, CommitStep, Controller, FnSource, Journal,
    MetricsSource, Plan, RolloutError, StateStore, StoreSink,
};
use upramp_telemetry::UploadPath;

use super::profile::Profile;
use super::world::{audit_rollbacks, position, Corpus, RolloutController, World};
use super::{panel, Part, PartOutcome, Progress, ProgressEvent, ValidateError};
use crate::checks::{self, Check};
use crate::observe::{DecisionKind, DecisionRecord, RequestRecord};
use crate::report::ScenarioReport;
use crate::timeline::Span;

/// Share of async requests that must fail on the async path (after the uploader's retries) in the
/// async-breaks scenario.
const BROKEN_SHARE: f64 = 0.3;

/// How much slower than the sync p99 the async path is made in the latency scenario.
const LATENCY_FACTOR: f64 = 3.0;

/// Runs one scenario.
pub(crate) async fn run(
    part: Part,
    profile: &Profile,
    corpus: Arc<Corpus>,
    seed: u64,
    servers: &tokio::runtime::Handle,
    progress: &dyn Progress,
) -> Result<(ScenarioReport, PartOutcome), ValidateError> {
    // Each scenario's world has its own seed, so scenarios do not replay each other's draws.
    let seed = seed ^ ((part as u64 + 1) << 32);
    let mut world = World::start(profile, corpus, seed, servers).await?;
    let plan = profile.plan();
    let mut controller = world.controller(plan.clone())?;
    world.tick(&mut controller)?;
    let mut run = Run {
        part,
        profile,
        plan,
        progress,
        requests: Vec::new(),
        spans: Vec::new(),
    };
    let (setup, expected, observed, checks) = match part {
        Part::AsyncBreaks => async_breaks(&mut run, &mut world, &mut controller).await?,
        Part::Latency => latency(&mut run, &mut world, &mut controller).await?,
        Part::Outage => outage(&mut run, &mut world, &mut controller).await?,
        Part::Restart => restart(&mut run, &mut world, controller).await?,
        Part::LowTraffic => low_traffic(&mut run, &mut world, &mut controller).await?,
        Part::OperatorRollback => operator_rollback(&mut run, &mut world, &mut controller).await?,
        Part::CrashCommit => crash_commit(&mut run, &mut world, controller).await?,
        Part::Stages => {
            return Err(ValidateError::Setup(
                "the stages are not a fault scenario".to_owned(),
            ))
        }
    };
    // Every scenario also accounts for every request it made.
    let stored = world.new_stored_files();
    let mut checks = checks;
    checks.push(checks::no_lost_requests(&run.requests, &stored));
    checks.push(checks::no_duplicates(&run.requests, &stored));
    let hours = world.hours();
    let report = ScenarioReport {
        name: part.name().to_owned(),
        setup,
        expected,
        observed,
        days: hours / 24.0,
        requests: run.requests.len() as u64,
        passed: checks.iter().all(|c| c.passed),
        checks,
    };
    let outcome = PartOutcome {
        requests: world.requests_made(),
        bytes: world.bytes_sent,
        hours,
        panel: panel(
            format!("Scenario {}: {}", part.name(), report.expected),
            profile.tick.as_secs_f64() / 3600.0,
            &world.intervals,
            &world.legs.all(),
            &world.decisions,
            run.spans,
        ),
    };
    world.shutdown().await;
    Ok((report, outcome))
}

struct Run<'a> {
    part: Part,
    profile: &'a Profile,
    plan: Plan,
    progress: &'a dyn Progress,
    requests: Vec<RequestRecord>,
    spans: Vec<Span>,
}

type Findings = (String, String, String, Vec<Check>);

impl Run<'_> {
    /// Promotes the fresh controller to stage `index` by audited manual advances: the scenarios start
    /// where their fault matters, not at 0%.
    fn start_at(
        &self,
        world: &mut World,
        controller: &mut RolloutController,
        index: usize,
    ) -> Result<(), ValidateError> {
        while controller.state().stage_index() < index {
            world.promote(
                controller,
                &format!("validation scenario {} starts at stage {index}", self.part),
            )?;
        }
        Ok(())
    }

    /// Traffic per tick for a scenario at the controller's current stage.
    fn per_tick(&self, controller: &RolloutController) -> usize {
        self.plan
            .stages
            .get(controller.state().stage_index())
            .map_or(self.profile.baseline_per_tick, |s| self.profile.per_tick(s))
            .max(160)
    }

    async fn interval(
        &mut self,
        world: &mut World,
        controller: &mut RolloutController,
        requests: usize,
    ) -> Result<(Vec<RequestRecord>, DecisionRecord), ValidateError> {
        let (records, decision) = world.interval(controller, requests).await?;
        self.requests.extend(records.iter().cloned());
        self.progress.on(&ProgressEvent::Ticked {
            part: self.part,
            hours: world.hours(),
            percent: decision.percent_after,
            decision: decision.kind.as_str(),
            requests: world.requests_made(),
        });
        Ok((records, decision))
    }

    fn span(&mut self, from: f64, to: f64, label: String) {
        self.spans.push(Span {
            from_hours: from,
            to_hours: to,
            label,
        });
    }
}

fn faults(spec: &str) -> Result<FaultPlan, ValidateError> {
    FaultPlan::parse(spec).map_err(|e| ValidateError::Faults {
        spec: spec.to_owned(),
        message: e.to_string(),
    })
}

/// The per-attempt failure probability that makes a leg of `attempts` attempts fail with probability
/// `leg_failure`: the stand-in injects faults per HTTP request, the uploader retries.
fn per_attempt(leg_failure: f64, attempts: u32) -> f64 {
    leg_failure.powf(1.0 / f64::from(attempts.max(1)))
}

fn attempts(world: &World) -> u32 {
    world.flags.snapshot().max_retries.saturating_add(1)
}

fn after(decisions: &[DecisionRecord], hours: f64) -> Vec<DecisionRecord> {
    decisions
        .iter()
        .filter(|d| d.at_hours > hours)
        .cloned()
        .collect()
}

fn last_reason(decisions: &[DecisionRecord]) -> String {
    decisions
        .last()
        .map(|d| format!("{}: {}", d.kind.as_str(), d.reason))
        .unwrap_or_default()
}

async fn async_breaks(
    run: &mut Run<'_>,
    world: &mut World,
    controller: &mut RolloutController,
) -> Result<Findings, ValidateError> {
    run.start_at(world, controller, 2)?;
    let per_tick = run.per_tick(controller);
    for _ in 0..4 {
        run.interval(world, controller, per_tick).await?;
    }
    let tries = attempts(world);
    let probability = per_attempt(BROKEN_SHARE, tries);
    let spec = format!("503:{probability:.3}@async");
    world.set_faults(&faults(&spec)?);
    let fault_start = world.hours();
    let mut faulted = Vec::new();
    let mut rolled_back_at = None;
    for _ in 0..16 {
        let (records, decision) = run.interval(world, controller, per_tick).await?;
        faulted.extend(records);
        if decision.kind == DecisionKind::Rollback {
            rolled_back_at = Some(world.hours());
            break;
        }
    }
    // Traffic goes on after the rollback: everybody is back on the sync path, and still served.
    for _ in 0..4 {
        if controller.state().phase.is_terminal() {
            let records = world.traffic(per_tick).await;
            run.requests.extend(records.iter().cloned());
            faulted.extend(records);
        }
    }
    let fault_end = world.hours();
    world.set_faults(&FaultPlan::none());
    run.span(
        fault_start,
        fault_end,
        format!("503 on {:.0}% of async attempts", probability * 100.0),
    );

    let fault_decisions = after(&world.decisions, fault_start);
    let before_fault: Vec<DecisionRecord> = world
        .decisions
        .iter()
        .filter(|d| d.at_hours <= fault_start)
        .cloned()
        .collect();
    let audit = audit_rollbacks(&world.audit_path())?;
    let checks = vec![
        named(
            checks::no_rollback(&before_fault),
            "no_rollback_while_healthy",
        ),
        checks::rolled_back(&fault_decisions),
        checks::every_request_succeeded(&faulted, 1),
        checks::audit_names_failing_gate(&audit, &["success_rate", "error_rate", "fallback_rate"]),
    ];
    let observed = match rolled_back_at {
        Some(at) => format!(
            "rolled back to 0% after {:.0} h of faults; {}",
            at - fault_start,
            audit.first().map_or_else(String::new, |a| a.reason.clone())
        ),
        None => format!("no rollback ({})", last_reason(&fault_decisions)),
    };
    Ok((
        format!(
            "from the 10% stage after a healthy day, the stand-ins fail {:.1}% of async-path HTTP attempts \
             (`{spec}`), so {:.0}% of async requests fail after the uploader's {tries} attempts and fall back",
            probability * 100.0,
            BROKEN_SHARE * 100.0
        ),
        "automatic rollback to 0%, no request lost".to_owned(),
        observed,
        checks,
    ))
}

fn named(mut check: Check, name: &str) -> Check {
    name.clone_into(&mut check.name);
    check
}

async fn latency(
    run: &mut Run<'_>,
    world: &mut World,
    controller: &mut RolloutController,
) -> Result<Findings, ValidateError> {
    run.start_at(world, controller, 3)?;
    let per_tick = run.per_tick(controller);
    for _ in 0..2 {
        run.interval(world, controller, per_tick).await?;
    }
    let snapshot = world.aggregator.snapshot(world.clock_now());
    let sync_p99 = snapshot
        .path_stats(UploadPath::Sync)
        .p99
        .unwrap_or(Duration::from_millis(5))
        .max(Duration::from_millis(2));
    // The delay is added to every async response, so the async p99 becomes at least this multiple of
    // the sync p99 measured just before. On a fast machine that multiple can be a few milliseconds,
    // which the p99 gate deliberately forgives (`min_p99_excess_ms`, jitter-sized), so the delay is
    // also at least twice that allowance: a slowdown the gate exists to catch.
    let forgiven = run
        .plan
        .stages
        .get(controller.state().stage_index())
        .map_or(0, |stage| stage.gates.min_p99_excess_ms);
    let delay = latency_delay(sync_p99, forgiven);
    let spec = format!("latency:{}ms@async", delay.as_millis().max(1));
    world.set_faults(&faults(&spec)?);
    let fault_start = world.hours();
    let mut rolled_back = false;
    for _ in 0..12 {
        let (_, decision) = run.interval(world, controller, per_tick).await?;
        if decision.kind == DecisionKind::Rollback {
            rolled_back = true;
            break;
        }
    }
    let fault_end = world.hours();
    world.set_faults(&FaultPlan::none());
    run.span(
        fault_start,
        fault_end,
        format!("async responses delayed {} ms", delay.as_millis()),
    );
    let fault_decisions = after(&world.decisions, fault_start);
    let audit = audit_rollbacks(&world.audit_path())?;
    let checks = vec![
        checks::rolled_back(&fault_decisions),
        checks::audit_names_failing_gate(&audit, &["p99_ratio"]),
    ];
    let observed = if rolled_back {
        format!(
            "rolled back to 0% after {:.0} h; {}",
            fault_end - fault_start,
            audit.first().map_or_else(String::new, |a| a.reason.clone())
        )
    } else {
        format!("no rollback ({})", last_reason(&fault_decisions))
    };
    Ok((
        format!(
            "at the 50% stage the stand-ins delay every async-path response by {} ms: at least \
             {LATENCY_FACTOR}× the sync p99 just measured ({:.1} ms) and twice the {forgiven} ms excess \
             the p99 gate forgives",
            delay.as_millis(),
            sync_p99.as_secs_f64() * 1000.0
        ),
        "rollback on the p99 ratio gate".to_owned(),
        observed,
        checks,
    ))
}

async fn outage(
    run: &mut Run<'_>,
    world: &mut World,
    controller: &mut RolloutController,
) -> Result<Findings, ValidateError> {
    run.start_at(world, controller, 3)?;
    let per_tick = run.per_tick(controller);
    for _ in 0..2 {
        run.interval(world, controller, per_tick).await?;
    }
    let spec = "503:1";
    world.set_faults(&faults(spec)?);
    let fault_start = world.hours();
    for _ in 0..4 {
        run.interval(world, controller, per_tick).await?;
    }
    world.set_faults(&FaultPlan::none());
    let recovered = world.hours();
    run.span(
        fault_start,
        recovered,
        "both paths down (503 on every upload)".to_owned(),
    );
    // After recovery the outage's failures stay in the gate window until it slides past them; the
    // controller must keep holding (not roll back) and then advance.
    let window_ticks = run.profile.window_ticks();
    let mut progressed = false;
    for _ in 0..(window_ticks + 12) {
        let (_, decision) = run.interval(world, controller, per_tick).await?;
        if matches!(
            decision.kind,
            DecisionKind::Advance | DecisionKind::Complete | DecisionKind::Rollback
        ) {
            progressed = decision.kind != DecisionKind::Rollback;
            break;
        }
    }
    let during: Vec<DecisionRecord> = world
        .decisions
        .iter()
        .filter(|d| d.at_hours > fault_start && d.at_hours <= recovered)
        .cloned()
        .collect();
    let since_fault = after(&world.decisions, fault_start);
    let after_recovery = after(&world.decisions, recovered);
    let checks = vec![
        named(checks::held_throughout(&during), "held_during_outage"),
        checks::no_rollback(&since_fault),
        checks::progressed(&after_recovery),
    ];
    let observed = format!(
        "held during the outage ({}); {}",
        during.last().map_or_else(String::new, |d| d.reason.clone()),
        if progressed {
            after_recovery
                .iter()
                .find(|d| d.kind != DecisionKind::Hold)
                .map_or_else(String::new, |d| {
                    format!(
                        "advanced to {}% {:.0} h after recovery",
                        d.percent_after,
                        d.at_hours - recovered
                    )
                })
        } else {
            format!("did not progress ({})", last_reason(&after_recovery))
        }
    );
    Ok((
        format!(
            "at the 50% stage both stand-ins answer 503 to every upload on both paths (`{spec}`) for a day, then recover"
        ),
        "hold during the outage (no rollback, no advance), then advance".to_owned(),
        observed,
        checks,
    ))
}

/// The restart scenario's background faults: each a failure after which the file may be stored.
const AMBIGUOUS_FAULTS: &str = "drop:0.01,malformed:0.01,reset:0.01";

async fn restart(
    run: &mut Run<'_>,
    world: &mut World,
    mut controller: RolloutController,
) -> Result<Findings, ValidateError> {
    run.start_at(world, &mut controller, 3)?;
    let per_tick = run.per_tick(&controller);
    // Ambiguous failures on both paths throughout: uploads stored with the answer lost (drop), or
    // a success answer cut mid-document (malformed), or the connection reset after the body. Each
    // sends the uploader to the provider's list, where same-named files of the same size (the
    // twins, and every other request for the same corpus file, from both hosts) sit next to its
    // own: `no_lost_requests` then checks that every receipt names its own bytes.
    world.set_faults(&faults(AMBIGUOUS_FAULTS)?);
    let faults_start = world.hours();
    for _ in 0..4 {
        run.interval(world, &mut controller, per_tick).await?;
    }
    let before = position(controller.state());
    let stage_started = world
        .decisions
        .iter()
        .rev()
        .find(|d| d.kind == DecisionKind::Advance)
        .map_or(0.0, |d| d.at_hours);
    // Stop the controller (drop it: the process is gone); uploads go on at the applied percent.
    drop(controller);
    let stopped = world.hours();
    for _ in 0..2 {
        let records = world.traffic(per_tick).await;
        run.requests.extend(records);
    }
    let mut resumed = world.resumed_controller()?;
    let restarted = world.hours();
    run.span(stopped, restarted, "controller stopped".to_owned());
    let after_restart = position(resumed.state());
    let mut ended = None;
    for _ in 0..24 {
        let (_, decision) = run.interval(world, &mut resumed, per_tick).await?;
        if decision.kind != DecisionKind::Hold {
            ended = Some((decision.kind, decision.at_hours));
            break;
        }
    }
    let min_bake_hours = run
        .plan
        .stages
        .get(before.stage_index)
        .map_or(0.0, |s| s.min_bake.as_secs_f64() / 3600.0);
    world.set_faults(&FaultPlan::none());
    run.span(
        faults_start,
        world.hours(),
        format!("ambiguous failures on both paths (`{AMBIGUOUS_FAULTS}`)"),
    );
    let since_restart = after(&world.decisions, restarted);
    let bake_kept = bake_time_kept(ended, stage_started, min_bake_hours);
    let checks = vec![
        checks::resumed_in_place(&before, &after_restart),
        checks::no_rollback(&since_restart),
        checks::progressed(&since_restart),
        bake_kept,
    ];
    let observed = format!(
        "resumed at stage {} ({}%, bake since {}); {}",
        after_restart.stage_index,
        f64::from(after_restart.percent_thousandths) / 1000.0,
        after_restart.bake_started,
        ended.map_or_else(
            || "did not advance".to_owned(),
            |(kind, at)| {
                let verb = match kind {
                    DecisionKind::Advance | DecisionKind::Complete => "advanced",
                    DecisionKind::Rollback => "rolled back",
                    DecisionKind::Hold => "held",
                };
                format!("{verb} {:.0} h after the stage began", at - stage_started)
            }
        )
    );
    Ok((
        "at the 50% stage a day into its bake, with ambiguous failures (drop, malformed, reset) on both \
         paths, the controller is dropped, traffic goes on for 12 h, and a new controller is built from the \
         state file"
            .to_owned(),
        "resume at the same stage with the same bake start, then advance".to_owned(),
        observed,
        checks,
    ))
}

async fn low_traffic(
    run: &mut Run<'_>,
    world: &mut World,
    controller: &mut RolloutController,
) -> Result<Findings, ValidateError> {
    run.start_at(world, controller, 3)?;
    let Some(stage) = run.plan.stages.get(3).cloned() else {
        return Err(ValidateError::Setup("the plan has no stage 3".to_owned()));
    };
    let needed = Profile::async_samples_needed(&stage);
    let share = stage.percent.as_f64() / 100.0;
    let window_ticks = run.profile.window_ticks();
    // A trickle that fills at most a third of the window's need: the stage must hold past its bake.
    let trickle = ((needed as f64 * 0.3) / (window_ticks as f64 * share)).ceil() as usize;
    let noise_attempts = attempts(world);
    // A little noise: ~0.5% of async legs fail by calibration (observed runs land near 1%, since a
    // retry can also end early on its deadline), well under the 2% limit, yet a handful of failures
    // in a small sample would look like a breach to a point estimate.
    let noise = per_attempt(0.005, noise_attempts);
    // On both paths: noise that hits only one path is a real difference between them (its retries
    // lift that path's p99), which the gates are right to catch.
    let spec = format!("500:{noise:.3}");
    world.set_faults(&faults(&spec)?);
    let low_start = world.hours();
    let low_ticks = run.profile.bake_ticks(&stage) + 4;
    for _ in 0..low_ticks {
        run.interval(world, controller, trickle.max(1)).await?;
    }
    world.set_faults(&FaultPlan::none());
    let low_end = world.hours();
    run.span(
        low_start,
        low_end,
        format!("low traffic: {trickle} requests per tick"),
    );
    let per_tick = run.per_tick(controller);
    for _ in 0..(window_ticks + 8) {
        let (_, decision) = run.interval(world, controller, per_tick).await?;
        if decision.kind != DecisionKind::Hold {
            break;
        }
    }
    let since = after(&world.decisions, low_start);
    let low: Vec<DecisionRecord> = since
        .iter()
        .filter(|d| d.at_hours <= low_end)
        .cloned()
        .collect();
    let checks = vec![
        checks::held_for_min_samples(&since, needed),
        checks::no_rollback(&since),
        named(checks::held_throughout(&low), "held_while_low"),
        checks::progressed(&since),
    ];
    let observed = format!(
        "held {} ticks at {} async samples or fewer (needs {needed}); {}",
        low.len(),
        low.iter().map(|d| d.async_samples).max().unwrap_or(0),
        since
            .iter()
            .find(|d| d.kind != DecisionKind::Hold)
            .map_or_else(
                || "never advanced".to_owned(),
                |d| format!("{} on {} async samples", d.kind.as_str(), d.async_samples)
            )
    );
    Ok((
        format!(
            "at the 50% stage, {trickle} requests per tick for {} days (past the bake) with ~0.5% failures on both paths \
             (`{spec}`), then normal traffic",
            low_ticks as f64 * run.profile.tick.as_secs_f64() / 86_400.0
        ),
        format!("hold until {needed} async samples, no false rollback, then advance"),
        observed,
        checks,
    ))
}

/// The delay added to async responses in the latency scenario: at least [`LATENCY_FACTOR`] times the
/// sync p99, and at least twice the excess (`forgiven_ms`) the p99 gate treats as jitter.
fn check(name: &str, passed: bool, detail: String) -> Check {
    Check {
        name: name.to_owned(),
        passed,
        detail,
    }
}

fn read_audit(world: &World) -> Result<Vec<upramp_rollout::DecisionRecord>, ValidateError> {
    AuditLog::read(&world.audit_path())
        .map_err(|e| ValidateError::Controller(format!("reading the audit log: {e}")))
}

/// Whether the audit log lists records in commit order (strictly rising generations).
fn audit_in_commit_order(audit: &[upramp_rollout::DecisionRecord]) -> Check {
    let out_of_order = audit
        .windows(2)
        .filter(|w| w[1].generation <= w[0].generation)
        .count();
    check(
        "audit_in_commit_order",
        out_of_order == 0,
        format!(
            "{} audit records, {out_of_order} listed before a record committed earlier",
            audit.len()
        ),
    )
}

/// At 10%, an operator rolls back (by compare-and-swap on the state file, applying 0% at once) while a
/// controller tick is reading its metrics window; the tick must discard its decision, and the running
/// controller must keep 0% from then on.
async fn operator_rollback(
    run: &mut Run<'_>,
    world: &mut World,
    controller: &mut RolloutController,
) -> Result<Findings, ValidateError> {
    run.start_at(world, controller, 2)?;
    let per_tick = run.per_tick(controller);
    for _ in 0..2 {
        run.interval(world, controller, per_tick).await?;
    }
    let records = world.traffic(per_tick).await;
    run.requests.extend(records);
    let raced_at = world.hours();
    let now = world.clock_now();
    let state_path = world.state_path();
    let audit_path = world.audit_path();
    let audit =
        AuditLog::open(&audit_path).map_err(|e| ValidateError::Setup(format!("audit log: {e}")))?;
    let mut operator: Option<Result<upramp_rollout::DecisionRecord, String>> = None;
    let raced = {
        let mut window = AggregatorSource::new(world.aggregator.clone());
        let flags = world.flags.clone();
        let operator = &mut operator;
        // The operator's command runs while the tick's window is being read (a slow scrape).
        let slow_read = FnSource(move |at| {
            let result = AuditLog::open(&audit_path)
                .map_err(|e| e.to_string())
                .and_then(|audit| {
                    let mut journal = Journal::new(
                        Some(StateStore::new(&state_path)),
                        audit,
                        upramp_flags::ASYNC_UPLOAD,
                    );
                    let mut sink = StoreSink(flags.clone());
                    commit_manual(&mut journal, Some(&mut sink), at, |s, now| {
                        s.rollback(now, "incident")
                    })
                    .map(|c| c.record)
                    .map_err(|e| e.to_string())
                });
            *operator = Some(result);
            window.window(at)
        });
        let mut racing = Controller::from_state(
            controller.state().clone(),
            slow_read,
            StoreSink(world.flags.clone()),
        )
        .with_store(StateStore::new(world.state_path()))
        .with_audit(audit);
        racing.tick(now)
    };
    let operator = operator
        .unwrap_or_else(|| Err("the racing tick never read its window".to_owned()))
        .map_err(|e| ValidateError::Controller(format!("operator rollback: {e}")))?;
    world
        .decisions
        .push(super::world::observe_decision(&operator, world.start));
    run.span(raced_at, raced_at, "operator rollback".to_owned());
    let discarded = check(
        "racing_tick_discarded",
        matches!(&raced, Err(e) if e.is_conflict()),
        match &raced {
            Ok(record) => format!(
                "the tick racing the rollback committed `{}` to {}",
                record.decision, record.percent
            ),
            Err(e) => format!("the tick racing the rollback was discarded: {e}"),
        },
    );
    let mut percents_after = Vec::new();
    for _ in 0..3 {
        run.interval(world, controller, per_tick).await?;
        percents_after.push(world.flags.snapshot().rollout);
    }
    let state = controller.state();
    let kept = check(
        "operator_rollback_kept",
        state.phase.as_str() == "rolled_back"
            && state.percent == Percent::ZERO
            && percents_after.iter().all(|p| *p == Percent::ZERO),
        format!(
            "after the rollback the state is {} at {} and the flag was {} over 3 ticks",
            state.phase.as_str(),
            state.percent,
            percents_after
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    );
    let audit = read_audit(world)?;
    let rollbacks = audit
        .iter()
        .filter(|r| r.decision == upramp_rollout::Decision::Rollback)
        .count();
    let audited = check(
        "rollback_audited_once",
        rollbacks == 1 && audit.iter().any(|r| r.reason.contains("incident")),
        format!("{rollbacks} rollback records in the audit log"),
    );
    let order = audit_in_commit_order(&audit);
    let observed = format!(
        "{}; flag at {} after the rollback",
        discarded.detail,
        percents_after.last().copied().unwrap_or(Percent::ZERO)
    );
    Ok((
        "at the 10% stage an operator rolls back (`rollout rollback --flags-file`) while a controller \
         tick is reading its metrics window"
            .to_owned(),
        "the racing tick is discarded, the rollback stays at 0%, audited once".to_owned(),
        observed,
        vec![discarded, kept, audited, order],
    ))
}

/// The controller is killed after each step of a commit in turn (intent, audit, apply, confirm), each
/// time during a manual advance, and restarted from its state file; after the restart's reconcile the
/// flag, the state and the audit log must agree.
async fn crash_commit(
    run: &mut Run<'_>,
    world: &mut World,
    mut controller: RolloutController,
) -> Result<Findings, ValidateError> {
    let mut problems = Vec::new();
    let mut flag_percents = Vec::new();
    for step in CommitStep::ALL {
        let per_tick = run.per_tick(&controller);
        run.interval(world, &mut controller, per_tick).await?;
        drop(controller);
        let mut crashing = world.resumed_controller()?.with_crash_after(Some(step));
        let crashed = crashing.advance(
            world.clock_now(),
            &format!("validation: crash after the {step:?} step"),
        );
        if !matches!(crashed, Err(RolloutError::InjectedCrash { .. })) {
            problems.push(format!("{step:?}: the advance did not stop at the step"));
        }
        drop(crashing);
        flag_percents.push(world.flags.snapshot().rollout);
        let at = world.hours();
        run.span(at, at, format!("killed after {step:?}"));
        controller = world.resumed_controller()?;
        if let Some(e) = controller
            .reconcile()
            .map_err(|e| ValidateError::Controller(format!("reconcile: {e}")))?
        {
            problems.push(format!("{step:?}: reconcile could not apply: {e}"));
        }
        let state = controller.state();
        let flag = world.flags.snapshot().rollout;
        flag_percents.push(flag);
        if state.applied_percent != Some(state.percent) || flag != state.percent {
            problems.push(format!(
                "{step:?}: state desired {} applied {:?}, flag {flag}",
                state.percent, state.applied_percent
            ));
        }
        let last_audited = read_audit(world)?.last().map(|r| r.generation);
        let decided = state.last_decision.as_ref().map(|r| r.generation);
        if last_audited.is_none() || last_audited < decided {
            problems.push(format!(
                "{step:?}: the state's decision {decided:?} is not in the audit log (last {last_audited:?})"
            ));
        }
        if let Some(record) = &state.last_decision {
            world
                .decisions
                .push(super::world::observe_decision(record, world.start));
        }
    }
    for _ in 0..2 {
        let per_tick = run.per_tick(&controller);
        run.interval(world, &mut controller, per_tick).await?;
        flag_percents.push(world.flags.snapshot().rollout);
    }
    let audit = read_audit(world)?;
    let unexplained: Vec<String> = flag_percents
        .iter()
        .filter(|p| **p != Percent::ZERO && !audit.iter().any(|r| r.percent == **p))
        .map(ToString::to_string)
        .collect();
    let state = controller.state();
    let agree = check(
        "agree_after_each_crash",
        problems.is_empty(),
        if problems.is_empty() {
            format!(
                "after each of {} crashes the flag, the state and the audit log agreed",
                CommitStep::ALL.len()
            )
        } else {
            problems.join("; ")
        },
    );
    let explained = check(
        "every_percent_audited",
        unexplained.is_empty(),
        format!(
            "{} flag readings, unexplained by the audit log: [{}]",
            flag_percents.len(),
            unexplained.join(", ")
        ),
    );
    let order = audit_in_commit_order(&audit);
    let reached = check(
        "advanced_through_the_crashes",
        state.stage_index() + 1 == run.plan.stages.len(),
        format!(
            "ended at stage {}/{} ({})",
            state.stage_index() + 1,
            run.plan.stages.len(),
            state.percent
        ),
    );
    let observed = format!("{}; {}", agree.detail, reached.detail);
    Ok((
        "four manual advances from the baseline, each killed after one commit step (intent, audit, \
         apply, confirm) and restarted from the state file"
            .to_owned(),
        "after each restart the flag equals the state, every decision audited".to_owned(),
        observed,
        vec![agree, explained, order, reached],
    ))
}

fn latency_delay(sync_p99: Duration, forgiven_ms: u64) -> Duration {
    sync_p99
        .mul_f64(LATENCY_FACTOR)
        .max(Duration::from_millis(2 * forgiven_ms))
}

/// Whether the restarted controller's first non-hold decision was an advance after the full bake,
/// counting the time before the restart. `ended` is that decision's kind and time (hours).
fn bake_time_kept(
    ended: Option<(DecisionKind, f64)>,
    stage_started: f64,
    min_bake_hours: f64,
) -> Check {
    let (passed, detail) = match ended {
        Some((DecisionKind::Advance | DecisionKind::Complete, at)) => (
            at - stage_started >= min_bake_hours,
            format!(
                "advanced {:.0} h after the stage began (minimum bake {min_bake_hours:.0} h), counting the \
                 time before the restart",
                at - stage_started
            ),
        ),
        Some((kind, at)) => (
            false,
            format!(
                "{} {:.0} h after the stage began instead of advancing",
                kind.as_str(),
                at - stage_started
            ),
        ),
        None => (false, "never advanced after the restart".to_owned()),
    };
    Check {
        name: "bake_time_kept".to_owned(),
        passed,
        detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_latency_delay_is_three_times_the_sync_p99_or_twice_the_forgiven_excess() {
        // Release build, fast loopback: 3x a 2.8 ms p99 would hide inside the gate's 10 ms allowance.
        assert_eq!(
            latency_delay(Duration::from_micros(2_800), 10),
            Duration::from_millis(20)
        );
        assert_eq!(
            latency_delay(Duration::from_millis(12), 10),
            Duration::from_millis(36)
        );
    }

    #[test]
    fn only_an_advance_after_the_full_bake_keeps_the_bake_time() {
        assert!(bake_time_kept(Some((DecisionKind::Advance, 80.0)), 0.0, 72.0).passed);
        assert!(!bake_time_kept(Some((DecisionKind::Advance, 50.0)), 0.0, 72.0).passed);
        let rolled_back = bake_time_kept(Some((DecisionKind::Rollback, 80.0)), 0.0, 72.0);
        assert!(!rolled_back.passed);
        assert!(
            rolled_back.detail.starts_with("rollback 80 h"),
            "{}",
            rolled_back.detail
        );
        assert!(!bake_time_kept(None, 0.0, 72.0).passed);
    }
}
