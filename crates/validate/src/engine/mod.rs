//! The validation engine: the five-stage rollout and the five fault scenarios, each in a fresh world of
//! real stand-ins, real uploaders and the production controller on a simulated clock.
//!
//! [`run`] drives the parts selected by [`Options`], reports progress through a [`Progress`] sink, and
//! returns a [`Report`] whose checks are the pure functions of [`crate::checks`] applied to what was
//! recorded. Writing the files is [`crate::artifacts`]'s job.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Instant;

use crate::observe::{DecisionKind, DecisionRecord, LegRecord, UploadPath};
use crate::report::{PathReport, PlanStageSummary, Report, RunSummary};
use crate::stats::quantile;
use crate::timeline::{Marker, Span, TimelinePanel, TimelinePoint};

mod profile;
mod scenarios;
mod stages;
mod world;

/// One part of a validation run, as `--scenario` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Part {
    /// The healthy five-stage rollout.
    Stages,
    /// The async path fails 30% of its requests from the 10% stage: automatic rollback.
    AsyncBreaks,
    /// The async path's p99 becomes about 3x the sync path's: rollback.
    Latency,
    /// Both paths fail: hold, then progress after recovery.
    Outage,
    /// The controller stops mid-stage and restarts from its state file.
    Restart,
    /// Low traffic: hold until minimum samples, no false rollback.
    LowTraffic,
    /// An operator rolls back while a controller tick reads its window: the rollback is never undone.
    OperatorRollback,
    /// The controller is killed after each commit step and restarted: flag, state and audit agree.
    CrashCommit,
}

impl Part {
    /// Every part, in run order.
    pub const ALL: [Part; 8] = [
        Part::Stages,
        Part::AsyncBreaks,
        Part::Latency,
        Part::Outage,
        Part::Restart,
        Part::LowTraffic,
        Part::OperatorRollback,
        Part::CrashCommit,
    ];

    /// The name `--scenario` takes.
    pub fn name(self) -> &'static str {
        match self {
            Part::Stages => "stages",
            Part::AsyncBreaks => "async-breaks",
            Part::Latency => "latency",
            Part::Outage => "outage",
            Part::Restart => "restart",
            Part::LowTraffic => "low-traffic",
            Part::OperatorRollback => "operator-rollback",
            Part::CrashCommit => "crash-commit",
        }
    }
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A `--scenario` value that names no part.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown scenario `{0}`: expected one of stages, async-breaks, latency, outage, restart, low-traffic, operator-rollback, crash-commit")]
pub struct UnknownPart(pub String);

impl FromStr for Part {
    type Err = UnknownPart;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Part::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| UnknownPart(s.to_owned()))
    }
}

/// What to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Seed of every random choice (keys, files, providers, fault draws, backoff jitter).
    pub seed: u64,
    /// Less traffic (same plan, gates and checks).
    pub quick: bool,
    /// Run only this part.
    pub only: Option<Part>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            seed: 7,
            quick: false,
            only: None,
        }
    }
}

/// Something that happened during a run, for a live display.
#[derive(Debug, Clone, PartialEq)]
pub enum ProgressEvent<'a> {
    /// A part began.
    Started {
        /// Which.
        part: Part,
        /// Its position among the selected parts (1-based).
        index: usize,
        /// How many parts are selected.
        of: usize,
    },
    /// The controller ticked.
    Ticked {
        /// In which part.
        part: Part,
        /// Simulated hours since the part began.
        hours: f64,
        /// Applied percent after the decision.
        percent: f64,
        /// The decision (`advance`, `hold`, ...).
        decision: &'a str,
        /// Upload requests made in the part so far.
        requests: u64,
    },
    /// A part ended.
    Finished {
        /// Which.
        part: Part,
        /// Whether all its checks held.
        passed: bool,
        /// One line on what happened.
        summary: &'a str,
    },
}

/// Receives progress events; must be cheap.
pub trait Progress: Send + Sync {
    /// Called for each event.
    fn on(&self, event: &ProgressEvent<'_>);
}

/// A progress sink that ignores everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct Silent;

impl Progress for Silent {
    fn on(&self, _event: &ProgressEvent<'_>) {}
}

/// Why a run could not be carried out (as opposed to a check failing, which is in the report).
#[derive(Debug, thiserror::Error)]
pub enum ValidateError {
    /// The corpus could not be generated or read.
    #[error("corpus file {path}: {source}")]
    Corpus {
        /// The file or directory.
        path: std::path::PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A stand-in, client, uploader or controller could not be built.
    #[error("setting up the validation world: {0}")]
    Setup(String),
    /// The controller refused an operation.
    #[error("rollout controller: {0}")]
    Controller(String),
    /// A fault plan did not parse.
    #[error("fault plan `{spec}`: {message}")]
    Faults {
        /// The spec.
        spec: String,
        /// Why.
        message: String,
    },
}

/// What one part produced.
pub(crate) struct PartOutcome {
    pub(crate) requests: u64,
    pub(crate) bytes: u64,
    pub(crate) hours: f64,
    pub(crate) panel: TimelinePanel,
}

/// Runs the selected parts and returns the report. Check failures are in the report
/// ([`Report::passed`]); an `Err` means the run itself could not be carried out.
pub async fn run(options: &Options, progress: &dyn Progress) -> Result<Report, ValidateError> {
    let started = Instant::now();
    let profile = profile::Profile::new(options.quick);
    let plan = profile.plan();
    let big = profile.big_files.clone();
    let seed = options.seed;
    let corpus = tokio::task::spawn_blocking(move || world::Corpus::generate(seed, &big))
        .await
        .map_err(|e| ValidateError::Setup(format!("corpus generation: {e}")))??;
    let corpus = Arc::new(corpus);
    // The stand-ins get their own runtime on their own thread: a provider is its own process, and
    // sharing the clients' runtime would charge the server's work to the async client's latency alone
    // (the sync client runs on the blocking pool). One thread serves both: the work per request is
    // small, and fewer threads mean fewer wake-ups between them.
    let servers = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| ValidateError::Setup(format!("stand-in runtime: {e}")))?;
    let handle = servers.handle().clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("stand-in".to_owned())
        .spawn(move || {
            servers.block_on(async {
                let _ = stopped.await;
            });
            servers.shutdown_background();
        })
        .map_err(|e| ValidateError::Setup(format!("stand-in thread: {e}")))?;
    let result = run_parts(options, &profile, corpus, &handle, progress).await;
    // The stand-ins' tasks are finished; the thread ends as soon as it sees the signal, so joining
    // here blocks only for that moment.
    let _ = stop.send(());
    let _ = thread.join();
    let (stages, scenarios, timeline, totals) = result?;
    let (requests, bytes, hours) = totals;

    let mut report = Report {
        run: RunSummary {
            seed,
            quick: options.quick,
            only: options.only.map(|p| p.name().to_owned()),
            passed: false,
            simulated_days: hours / 24.0,
            wall_seconds: started.elapsed().as_secs_f64(),
            requests,
            bytes,
            tick_hours: profile.tick.as_secs_f64() / 3600.0,
            sample_scaling: profile.scaling_note(&plan),
            plan: plan
                .stages
                .iter()
                .map(|s| PlanStageSummary {
                    percent: s.percent.as_f64(),
                    bake_days: s.min_bake.as_secs_f64() / 86_400.0,
                    min_samples: s.min_async_samples,
                })
                .collect(),
        },
        stages,
        scenarios,
        timeline,
    };
    report.run.passed = report.passed();
    Ok(report)
}

type PartsResult = (
    Vec<crate::report::StageReport>,
    Vec<crate::report::ScenarioReport>,
    Vec<TimelinePanel>,
    (u64, u64, f64),
);

async fn run_parts(
    options: &Options,
    profile: &profile::Profile,
    corpus: Arc<world::Corpus>,
    servers: &tokio::runtime::Handle,
    progress: &dyn Progress,
) -> Result<PartsResult, ValidateError> {
    let seed = options.seed;
    let parts: Vec<Part> = Part::ALL
        .into_iter()
        .filter(|p| options.only.is_none_or(|only| only == *p))
        .collect();
    let of = parts.len();
    let run_part = |index: usize, part: Part| {
        let corpus = corpus.clone();
        async move {
            progress.on(&ProgressEvent::Started { part, index, of });
            let done = if part == Part::Stages {
                let (reports, outcome) =
                    stages::run(profile, corpus, seed, servers, progress).await?;
                PartDone::Stages(reports, outcome)
            } else {
                let (report, outcome) =
                    scenarios::run(part, profile, corpus, seed, servers, progress).await?;
                PartDone::Scenario(report, outcome)
            };
            let (passed, summary) = match &done {
                PartDone::Stages(reports, _) => (
                    reports.iter().all(|s| s.passed),
                    format!(
                        "{} stages, last decision {}",
                        reports.len(),
                        reports.last().map_or("none", |s| s.decision.as_str())
                    ),
                ),
                PartDone::Scenario(report, _) => (report.passed, report.observed.clone()),
            };
            progress.on(&ProgressEvent::Finished {
                part,
                passed,
                summary: &summary,
            });
            Ok::<_, ValidateError>(done)
        }
    };

    let mut stages = Vec::new();
    let mut scenarios = Vec::new();
    let mut timeline = Vec::new();
    let (mut requests, mut bytes, mut hours) = (0u64, 0u64, 0.0f64);
    for batch in batches(&parts) {
        let done =
            futures::future::join_all(batch.iter().map(|(index, part)| run_part(*index, *part)))
                .await;
        for result in done {
            let outcome = match result? {
                PartDone::Stages(reports, outcome) => {
                    stages = reports;
                    outcome
                }
                PartDone::Scenario(report, outcome) => {
                    scenarios.push(report);
                    outcome
                }
            };
            requests += outcome.requests;
            bytes += outcome.bytes;
            hours += outcome.hours;
            timeline.push(outcome.panel);
        }
    }

    Ok((stages, scenarios, timeline, (requests, bytes, hours)))
}

/// What one part produced.
enum PartDone {
    Stages(Vec<crate::report::StageReport>, PartOutcome),
    Scenario(crate::report::ScenarioReport, PartOutcome),
}

/// The parts in run order, grouped into batches that run side by side, each part with its 1-based
/// position. Every world is separate, so only the machine is shared. Parts whose expected outcome is a
/// decisive rollback share it; every other part runs alone, because its checks (no rollback, an
/// advance) rest on the p99 gate, which a busier machine makes noisier.
fn batches(parts: &[Part]) -> Vec<Vec<(usize, Part)>> {
    let shares = |part: Part| matches!(part, Part::AsyncBreaks | Part::Latency);
    let mut batches: Vec<Vec<(usize, Part)>> = Vec::new();
    for (i, part) in parts.iter().copied().enumerate() {
        match batches.last_mut() {
            Some(batch) if shares(part) && batch.iter().all(|(_, p)| shares(*p)) => {
                batch.push((i + 1, part));
            }
            _ => batches.push(vec![(i + 1, part)]),
        }
    }
    batches
}

/// Per-path numbers over the legs whose time lies in `[from, to)` hours.
pub(crate) fn path_reports(legs: &[LegRecord], from: f64, to: f64) -> Vec<PathReport> {
    UploadPath::ALL
        .into_iter()
        .map(|path| {
            let mut durations: Vec<f64> = Vec::new();
            let mut successes = 0u64;
            for leg in legs
                .iter()
                .filter(|l| l.path == path && l.at_hours >= from && l.at_hours < to)
            {
                durations.push(leg.duration_ms);
                successes += u64::from(leg.success);
            }
            durations.sort_by(f64::total_cmp);
            let count = durations.len() as u64;
            PathReport {
                path,
                legs: count,
                successes,
                success_rate: (count > 0).then(|| successes as f64 / count as f64),
                p50_ms: quantile(&durations, 0.5),
                p99_ms: quantile(&durations, 0.99),
            }
        })
        .collect()
}

/// A timeline panel: per tick interval the percent applied during it and each path's success rate,
/// rollbacks and advances marked.
pub(crate) fn panel(
    title: String,
    tick_hours: f64,
    intervals: &[(f64, f64)],
    legs: &[LegRecord],
    decisions: &[DecisionRecord],
    spans: Vec<Span>,
) -> TimelinePanel {
    let mut buckets: BTreeMap<(i64, UploadPath), (u64, u64)> = BTreeMap::new();
    for leg in legs {
        let bucket = (leg.at_hours / tick_hours).floor() as i64;
        let entry = buckets.entry((bucket, leg.path)).or_default();
        entry.0 += 1;
        entry.1 += u64::from(leg.success);
    }
    let rate = |bucket: i64, path: UploadPath| {
        buckets
            .get(&(bucket, path))
            .filter(|(n, _)| *n > 0)
            .map(|(n, ok)| *ok as f64 / *n as f64)
    };
    let points = intervals
        .iter()
        .map(|(end, percent)| {
            let bucket = ((end - tick_hours) / tick_hours).round() as i64;
            TimelinePoint {
                at_hours: *end,
                percent: *percent,
                async_success: rate(bucket, UploadPath::Async),
                sync_success: rate(bucket, UploadPath::Sync),
                fallback_success: rate(bucket, UploadPath::SyncFallback),
            }
        })
        .collect();
    let markers = decisions
        .iter()
        .filter_map(|d| match d.kind {
            DecisionKind::Rollback => {
                let gate = d
                    .gates
                    .iter()
                    .find(|g| g.verdict == crate::observe::Verdict::Fail)
                    .map(|g| format!(": {}", g.name))
                    .unwrap_or_default();
                Some(Marker {
                    at_hours: d.at_hours,
                    kind: d.kind,
                    label: format!("rollback{gate}"),
                    percent_after: d.percent_after,
                })
            }
            DecisionKind::Advance | DecisionKind::Complete if d.at_hours > 0.0 => Some(Marker {
                at_hours: d.at_hours,
                kind: d.kind,
                label: if d.kind == DecisionKind::Complete {
                    "complete".to_owned()
                } else {
                    format!("{}%", d.percent_after)
                },
                percent_after: d.percent_after,
            }),
            _ => None,
        })
        .collect();
    TimelinePanel {
        title,
        points,
        markers,
        spans,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_decisive_rollback_scenarios_share_the_machine() {
        let names = |parts: &[Part]| -> Vec<Vec<&str>> {
            batches(parts)
                .into_iter()
                .map(|batch| batch.into_iter().map(|(_, p)| p.name()).collect())
                .collect()
        };
        assert_eq!(
            names(&Part::ALL),
            [
                vec!["stages"],
                vec!["async-breaks", "latency"],
                vec!["outage"],
                vec!["restart"],
                vec!["low-traffic"],
                vec!["operator-rollback"],
                vec!["crash-commit"],
            ]
        );
        assert_eq!(names(&[Part::Latency]), [vec!["latency"]]);
        let positions: Vec<usize> = batches(&Part::ALL)
            .concat()
            .iter()
            .map(|(i, _)| *i)
            .collect();
        assert_eq!(positions, [1, 2, 3, 4, 5, 6, 7, 8]);
    }
}
