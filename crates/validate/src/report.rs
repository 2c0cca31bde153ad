//! The validation report: serde model (`report.json`), Markdown (`report.md`) and the plain-text summary
//! table printed at the end of a run.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::checks::Check;
use crate::observe::UploadPath;
use crate::stats::Interval;
use crate::timeline::TimelinePanel;

/// A whole validation run. `report.json` is this, serialised; its top-level `stages` and `scenarios` arrays
/// are the contract other tools read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// How the run was configured and how it went overall.
    pub run: RunSummary,
    /// The healthy five-stage rollout, one entry per stage.
    pub stages: Vec<StageReport>,
    /// The fault scenarios, each from a fresh state.
    pub scenarios: Vec<ScenarioReport>,
    /// The data behind `timeline.svg`: one panel for the stages, one per scenario.
    pub timeline: Vec<TimelinePanel>,
}

impl Report {
    /// Whether every check of every stage and scenario held.
    pub fn passed(&self) -> bool {
        self.stages.iter().all(|s| s.passed) && self.scenarios.iter().all(|s| s.passed)
    }

    /// Every check that failed, with where it failed.
    pub fn failures(&self) -> Vec<(String, &Check)> {
        let stages = self.stages.iter().flat_map(|s| {
            s.checks
                .iter()
                .filter(|c| !c.passed)
                .map(move |c| (format!("stage {} ({}%)", s.index, s.target_percent), c))
        });
        let scenarios = self.scenarios.iter().flat_map(|s| {
            s.checks
                .iter()
                .filter(|c| !c.passed)
                .map(move |c| (format!("scenario {}", s.name), c))
        });
        stages.chain(scenarios).collect()
    }
}

/// Run-wide facts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    /// The seed every random choice derived from.
    pub seed: u64,
    /// Whether `--quick` traffic volumes were used.
    pub quick: bool,
    /// Which scenario filter was given (`None`: everything ran).
    pub only: Option<String>,
    /// Whether every check held.
    pub passed: bool,
    /// Simulated time covered by the stages and scenarios together, in days.
    pub simulated_days: f64,
    /// Wall-clock time of the run, in seconds.
    pub wall_seconds: f64,
    /// Upload requests made, over everything.
    pub requests: u64,
    /// Bytes sent in successful uploads, over everything.
    pub bytes: u64,
    /// Simulated hours between controller ticks.
    pub tick_hours: f64,
    /// How the plan's minimum samples were scaled for this traffic volume, and why.
    pub sample_scaling: String,
    /// The plan the controller ran.
    pub plan: Vec<PlanStageSummary>,
}

/// One stage of the plan the controller ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanStageSummary {
    /// Target percent.
    pub percent: f64,
    /// Minimum bake time, in days.
    pub bake_days: f64,
    /// Minimum async-path samples before the stage may advance.
    pub min_samples: u64,
}

/// Measurements of one path over a stage (from the telemetry events of each leg).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PathReport {
    /// The path.
    pub path: UploadPath,
    /// Request legs on the path.
    pub legs: u64,
    /// Legs that succeeded.
    pub successes: u64,
    /// `successes / legs`, when there were legs.
    pub success_rate: Option<f64>,
    /// Median leg duration, milliseconds.
    pub p50_ms: Option<f64>,
    /// 99th percentile leg duration, milliseconds.
    pub p99_ms: Option<f64>,
}

/// One stage of the healthy rollout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageReport {
    /// Stage index in the plan.
    pub index: usize,
    /// The plan's target percent.
    pub target_percent: f64,
    /// Simulated day the stage began.
    pub started_day: f64,
    /// Simulated days the stage lasted.
    pub days: f64,
    /// Upload requests made in the stage.
    pub requests: u64,
    /// Of which routed to the async path.
    pub async_requests: u64,
    /// `async_requests / requests`.
    pub measured_share: f64,
    /// 95% Wilson interval around the measured share.
    pub share_interval: Interval,
    /// The band the share check accepted (binomial tolerance around the target).
    pub accepted_band: Interval,
    /// Per-path measurements.
    pub paths: Vec<PathReport>,
    /// Requests that fell back from async to sync.
    pub fallbacks: u64,
    /// Requests that ended in an error.
    pub errors: u64,
    /// Controller ticks in the stage.
    pub ticks: u64,
    /// The decision that ended the stage.
    pub decision: String,
    /// The controller's reason for it.
    pub reason: String,
    /// The checks run on the stage.
    pub checks: Vec<Check>,
    /// Whether all of them held.
    pub passed: bool,
}

/// One fault scenario.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScenarioReport {
    /// Stable name, as `--scenario` takes it.
    pub name: String,
    /// What was done.
    pub setup: String,
    /// What must happen.
    pub expected: String,
    /// What happened.
    pub observed: String,
    /// Simulated days the scenario covered.
    pub days: f64,
    /// Upload requests made.
    pub requests: u64,
    /// The checks run on it.
    pub checks: Vec<Check>,
    /// Whether all of them held.
    pub passed: bool,
}

fn opt(value: Option<f64>, decimals: usize) -> String {
    value.map_or_else(|| "-".to_owned(), |v| format!("{v:.decimals$}"))
}

fn pct(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| format!("{:.2}%", v * 100.0))
}

fn path_report(stage: &StageReport, path: UploadPath) -> Option<&PathReport> {
    stage.paths.iter().find(|p| p.path == path && p.legs > 0)
}

fn verdict(passed: bool) -> &'static str {
    if passed {
        "PASS"
    } else {
        "FAIL"
    }
}

/// Renders `report.md`.
pub fn markdown(report: &Report) -> String {
    let run = &report.run;
    let mut out = String::new();
    let _ = writeln!(out, "# upramp rollout validation\n");
    let _ = writeln!(
        out,
        "**{}**: seed {}, {} traffic{}; {:.1} simulated days in {:.1} s wall time; {} upload requests, {:.1} MiB sent; controller ticked every {} simulated hours.\n",
        verdict(run.passed),
        run.seed,
        if run.quick { "quick" } else { "full" },
        run.only.as_ref().map(|o| format!(", only `{o}`")).unwrap_or_default(),
        run.simulated_days,
        run.wall_seconds,
        run.requests,
        run.bytes as f64 / (1024.0 * 1024.0),
        run.tick_hours,
    );
    let _ = writeln!(out, "Minimum samples: {}\n", run.sample_scaling);
    if !run.plan.is_empty() {
        let plan = run
            .plan
            .iter()
            .map(|s| {
                format!(
                    "{}% for {} d (min {} async samples)",
                    s.percent, s.bake_days, s.min_samples
                )
            })
            .collect::<Vec<_>>()
            .join(" → ");
        let _ = writeln!(out, "Plan: {plan}\n");
    }

    if !report.stages.is_empty() {
        let _ = writeln!(out, "## Stages\n");
        let _ = writeln!(
            out,
            "| stage | target | days | requests | async share (95% CI) | accepted | async ok | async p50/p99 ms | sync ok | sync p50/p99 ms | fallbacks | errors | decision | checks |"
        );
        let _ = writeln!(
            out,
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
        );
        for s in &report.stages {
            let a = path_report(s, UploadPath::Async);
            let y = path_report(s, UploadPath::Sync);
            let _ = writeln!(
                out,
                "| {} | {}% | {:.2} | {} | {:.3}% ({:.3}–{:.3}%) | {:.3}–{:.3}% | {} | {}/{} | {} | {}/{} | {} | {} | {} | {} |",
                s.index,
                s.target_percent,
                s.days,
                s.requests,
                s.measured_share * 100.0,
                s.share_interval.lo * 100.0,
                s.share_interval.hi * 100.0,
                s.accepted_band.lo * 100.0,
                s.accepted_band.hi * 100.0,
                pct(a.and_then(|p| p.success_rate)),
                opt(a.and_then(|p| p.p50_ms), 1),
                opt(a.and_then(|p| p.p99_ms), 1),
                pct(y.and_then(|p| p.success_rate)),
                opt(y.and_then(|p| p.p50_ms), 1),
                opt(y.and_then(|p| p.p99_ms), 1),
                s.fallbacks,
                s.errors,
                s.decision,
                verdict(s.passed),
            );
        }
        let _ = writeln!(out);
        for s in &report.stages {
            let _ = writeln!(
                out,
                "### Stage {} ({}%): {}\n",
                s.index,
                s.target_percent,
                verdict(s.passed)
            );
            let _ = writeln!(out, "Decision: **{}**: {}\n", s.decision, s.reason);
            for c in &s.checks {
                let _ = writeln!(out, "- {} `{}`: {}", verdict(c.passed), c.name, c.detail);
            }
            let _ = writeln!(out);
        }
    }

    if !report.scenarios.is_empty() {
        let _ = writeln!(out, "## Fault scenarios\n");
        let _ = writeln!(
            out,
            "| scenario | expected | observed | days | requests | checks |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|");
        for s in &report.scenarios {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {:.2} | {} | {} |",
                s.name,
                s.expected,
                s.observed,
                s.days,
                s.requests,
                verdict(s.passed)
            );
        }
        let _ = writeln!(out);
        for s in &report.scenarios {
            let _ = writeln!(out, "### {}: {}\n", s.name, verdict(s.passed));
            let _ = writeln!(out, "Setup: {}\n", s.setup);
            for c in &s.checks {
                let _ = writeln!(out, "- {} `{}`: {}", verdict(c.passed), c.name, c.detail);
            }
            let _ = writeln!(out);
        }
    }
    let _ = writeln!(
        out,
        "Files: `report.json` (this report as data), `timeline.svg` (rollout percent and success rate by path over simulated time), `metrics.prom` (the run's final Prometheus exposition)."
    );
    out
}

/// The first clause of an observation, at most 60 characters: the table's cell; `report.md` has it all.
fn headline(observed: &str) -> String {
    let first = observed.split(';').next().unwrap_or(observed).trim();
    if first.chars().count() <= 60 {
        first.to_owned()
    } else {
        first.chars().take(59).collect::<String>() + "…"
    }
}

/// Renders the plain-text summary printed at the end of a run: one table for the stages, one for the
/// scenarios, then the failed checks (if any) and the totals.
pub fn summary_table(report: &Report) -> String {
    let mut out = String::new();
    if !report.stages.is_empty() {
        let mut rows = vec![[
            "stage",
            "target",
            "days",
            "requests",
            "async share",
            "async ok",
            "async p99",
            "sync ok",
            "sync p99",
            "fallbacks",
            "decision",
            "checks",
        ]
        .map(str::to_owned)
        .to_vec()];
        for s in &report.stages {
            let a = path_report(s, UploadPath::Async);
            let y = path_report(s, UploadPath::Sync);
            rows.push(vec![
                s.index.to_string(),
                format!("{}%", s.target_percent),
                format!("{:.2}", s.days),
                s.requests.to_string(),
                format!("{:.2}%", s.measured_share * 100.0),
                pct(a.and_then(|p| p.success_rate)),
                opt(a.and_then(|p| p.p99_ms), 1) + " ms",
                pct(y.and_then(|p| p.success_rate)),
                opt(y.and_then(|p| p.p99_ms), 1) + " ms",
                s.fallbacks.to_string(),
                s.decision.clone(),
                format!(
                    "{} {}/{}",
                    verdict(s.passed),
                    s.checks.iter().filter(|c| c.passed).count(),
                    s.checks.len()
                ),
            ]);
        }
        out.push_str(&crate::table::columns_with_header_rule(&rows));
        out.push('\n');
    }
    if !report.scenarios.is_empty() {
        let mut rows = vec![[
            "scenario", "expected", "observed", "days", "requests", "checks",
        ]
        .map(str::to_owned)
        .to_vec()];
        for s in &report.scenarios {
            rows.push(vec![
                s.name.clone(),
                s.expected.clone(),
                headline(&s.observed),
                format!("{:.2}", s.days),
                s.requests.to_string(),
                format!(
                    "{} {}/{}",
                    verdict(s.passed),
                    s.checks.iter().filter(|c| c.passed).count(),
                    s.checks.len()
                ),
            ]);
        }
        out.push_str(&crate::table::columns_with_header_rule(&rows));
        out.push('\n');
    }
    for (place, check) in report.failures() {
        let _ = writeln!(out, "FAILED {place} `{}`: {}", check.name, check.detail);
    }
    let run = &report.run;
    let _ = writeln!(
        out,
        "{}: {:.1} simulated days in {:.1} s wall time, {} requests, seed {}",
        verdict(run.passed),
        run.simulated_days,
        run.wall_seconds,
        run.requests,
        run.seed
    );
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::observe::DecisionKind;
    use crate::timeline::{Marker, TimelinePoint};

    /// A fixed synthetic report: the shape of `report.md` is pinned by a snapshot.
    pub(crate) fn sample() -> Report {
        let check = |name: &str, passed: bool, detail: &str| Check {
            name: name.to_owned(),
            passed,
            detail: detail.to_owned(),
        };
        let paths = vec![
            PathReport {
                path: UploadPath::Async,
                legs: 210,
                successes: 209,
                success_rate: Some(209.0 / 210.0),
                p50_ms: Some(2.5),
                p99_ms: Some(9.75),
            },
            PathReport {
                path: UploadPath::Sync,
                legs: 1_790,
                successes: 1_790,
                success_rate: Some(1.0),
                p50_ms: Some(3.0),
                p99_ms: Some(11.0),
            },
        ];
        Report {
            run: RunSummary {
                seed: 7,
                quick: true,
                only: None,
                passed: false,
                simulated_days: 23.5,
                wall_seconds: 12.25,
                requests: 4_000,
                bytes: 3 * 1024 * 1024,
                tick_hours: 6.0,
                sample_scaling: "plan minimums × 0.1 (quick traffic)".to_owned(),
                plan: vec![
                    PlanStageSummary {
                        percent: 0.0,
                        bake_days: 2.0,
                        min_samples: 0,
                    },
                    PlanStageSummary {
                        percent: 10.0,
                        bake_days: 4.0,
                        min_samples: 200,
                    },
                ],
            },
            stages: vec![StageReport {
                index: 2,
                target_percent: 10.0,
                started_day: 7.0,
                days: 4.0,
                requests: 2_000,
                async_requests: 210,
                measured_share: 0.105,
                share_interval: Interval {
                    lo: 0.092,
                    hi: 0.119,
                },
                accepted_band: Interval {
                    lo: 0.078,
                    hi: 0.122,
                },
                paths,
                fallbacks: 1,
                errors: 0,
                ticks: 16,
                decision: "advance".to_owned(),
                reason: "all gates passed".to_owned(),
                checks: vec![
                    check("async_share", true, "210/2000 async"),
                    check("stickiness", true, "all still async"),
                ],
                passed: true,
            }],
            scenarios: vec![ScenarioReport {
                name: "async-breaks".to_owned(),
                setup: "503 on 30% of async requests from the 10% stage".to_owned(),
                expected: "rollback to 0%".to_owned(),
                observed: "held at 10%".to_owned(),
                days: 1.5,
                requests: 900,
                checks: vec![check("rolled_back", false, "no rollback in 6 decisions")],
                passed: false,
            }],
            timeline: vec![TimelinePanel {
                title: "stages".to_owned(),
                points: vec![TimelinePoint {
                    at_hours: 6.0,
                    percent: 10.0,
                    async_success: Some(0.99),
                    sync_success: Some(1.0),
                    fallback_success: None,
                }],
                markers: vec![Marker {
                    at_hours: 6.0,
                    kind: DecisionKind::Advance,
                    label: "10%".to_owned(),
                    percent_after: 10.0,
                }],
                spans: vec![],
            }],
        }
    }

    #[test]
    fn markdown_shape_is_stable() {
        insta::assert_snapshot!(markdown(&sample()));
    }

    #[test]
    fn summary_table_shape_is_stable() {
        insta::assert_snapshot!(summary_table(&sample()));
    }

    #[test]
    fn json_has_top_level_stages_and_scenarios() {
        let value = serde_json::to_value(sample()).unwrap();
        assert!(value["stages"].is_array());
        assert!(value["scenarios"].is_array());
        assert_eq!(value["stages"][0]["paths"][0]["path"], "async");
        let back: Report = serde_json::from_value(value).unwrap();
        assert_eq!(back, sample());
    }

    #[test]
    fn failures_name_where_they_failed() {
        let report = sample();
        assert!(!report.passed());
        let failures = report.failures();
        assert_eq!(failures.len(), 1);
        assert_eq!(failures[0].0, "scenario async-breaks");
    }
}
