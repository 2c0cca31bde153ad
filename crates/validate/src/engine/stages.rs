//! The healthy rollout: 0% → 1% → 10% → 50% → 100% under the default plan, with real traffic at every
//! stage, checked stage by stage.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::profile::Profile;
use super::world::{Corpus, World};
use super::{panel, path_reports, Part, PartOutcome, Progress, ProgressEvent, ValidateError};
use crate::checks::{self, async_keys};
use crate::observe::{DecisionKind, DecisionRecord, RequestRecord, UploadPath};
use crate::report::StageReport;
use crate::stats::{share_band, wilson, REPORT_Z, SHARE_Z};

struct StageTraffic {
    index: usize,
    started_hours: f64,
    records: Vec<RequestRecord>,
    ticks: u64,
}

/// Runs the five stages in a fresh world until the controller completes (or rolls back, or runs out of
/// twice the plan's bake time).
pub(crate) async fn run(
    profile: &Profile,
    corpus: Arc<Corpus>,
    seed: u64,
    servers: &tokio::runtime::Handle,
    progress: &dyn Progress,
) -> Result<(Vec<StageReport>, PartOutcome), ValidateError> {
    let mut world = World::start(profile, corpus, seed, servers).await?;
    let plan = profile.plan();
    let mut controller = world.controller(plan.clone())?;
    let tick_hours = profile.tick.as_secs_f64() / 3600.0;
    // The first tick starts the first stage.
    let first = world.tick(&mut controller)?;
    let max_ticks = 2 * plan
        .stages
        .iter()
        .map(|s| profile.bake_ticks(s))
        .sum::<u64>()
        + 8;

    let mut reports = Vec::new();
    let mut earlier_async: BTreeSet<String> = BTreeSet::new();
    let mut current = StageTraffic {
        index: first.stage_index,
        started_hours: 0.0,
        records: Vec::new(),
        ticks: 0,
    };
    let mut last: Option<DecisionRecord> = Some(first);
    for _ in 0..max_ticks {
        let Some(stage) = plan.stages.get(current.index) else {
            break;
        };
        let (records, decision) = world
            .interval(&mut controller, profile.per_tick(stage))
            .await?;
        current.records.extend(records);
        current.ticks += 1;
        progress.on(&ProgressEvent::Ticked {
            part: Part::Stages,
            hours: world.hours(),
            percent: decision.percent_after,
            decision: decision.kind.as_str(),
            requests: world.requests_made(),
        });
        let done = decision.kind != DecisionKind::Hold;
        last = Some(decision.clone());
        if done {
            let stored = world.new_stored_files();
            let report = stage_report(&plan, &current, &decision, &earlier_async, &world, &stored);
            earlier_async.extend(
                current
                    .records
                    .iter()
                    .filter(|r| r.routed_async())
                    .map(|r| r.routing_key.clone()),
            );
            reports.push(report);
            if decision.kind != DecisionKind::Advance {
                break;
            }
            current = StageTraffic {
                index: controller.state().stage_index(),
                started_hours: world.hours(),
                records: Vec::new(),
                ticks: 0,
            };
        }
    }
    // A stage still holding when the time ran out is reported with the hold that ended it: its gates
    // check fails, as it should.
    if let Some(decision) = last.filter(|d| d.kind == DecisionKind::Hold) {
        let stored = world.new_stored_files();
        reports.push(stage_report(
            &plan,
            &current,
            &decision,
            &earlier_async,
            &world,
            &stored,
        ));
    }

    let outcome = PartOutcome {
        requests: world.requests_made(),
        bytes: world.bytes_sent,
        hours: world.hours(),
        panel: panel(
            "Five-stage rollout (default three-week plan, healthy providers)".to_owned(),
            tick_hours,
            &world.intervals,
            &world.legs.all(),
            &world.decisions,
            Vec::new(),
        ),
    };
    world.shutdown().await;
    Ok((reports, outcome))
}

fn stage_report(
    plan: &upramp_rollout::Plan,
    traffic: &StageTraffic,
    decision: &DecisionRecord,
    earlier_async: &BTreeSet<String>,
    world: &World,
    stored: &[crate::observe::StoredRecord],
) -> StageReport {
    let target = plan
        .stages
        .get(traffic.index)
        .map_or(0, |s| s.percent.thousandths());
    let records = &traffic.records;
    let checks = vec![
        checks::async_share(target, records),
        checks::routing_follows_flag(records),
        checks::stickiness(earlier_async, records),
        checks::no_lost_requests(records, stored),
        checks::no_duplicates(records, stored),
        checks::gates_passed(Some(decision)),
    ];
    let (routed, keys) = async_keys(records);
    let share = if keys == 0 {
        0.0
    } else {
        routed as f64 / keys as f64
    };
    let target_share = f64::from(target) / 100_000.0;
    let ended = world.hours();
    let paths = path_reports(&world.legs.all(), traffic.started_hours, ended);
    StageReport {
        index: traffic.index,
        target_percent: f64::from(target) / 1000.0,
        started_day: traffic.started_hours / 24.0,
        days: (ended - traffic.started_hours) / 24.0,
        requests: records.len() as u64,
        async_requests: records.iter().filter(|r| r.routed_async()).count() as u64,
        measured_share: share,
        share_interval: wilson(routed, keys, REPORT_Z),
        accepted_band: share_band(target_share, keys, SHARE_Z),
        fallbacks: records
            .iter()
            .filter(|r| {
                matches!(
                    r.result,
                    crate::observe::RequestResult::Receipt {
                        path: UploadPath::SyncFallback,
                        ..
                    }
                )
            })
            .count() as u64,
        errors: records.iter().filter(|r| !r.succeeded()).count() as u64,
        paths,
        ticks: traffic.ticks,
        decision: decision.kind.as_str().to_owned(),
        reason: decision.reason.clone(),
        passed: checks.iter().all(|c| c.passed),
        checks,
    }
}
