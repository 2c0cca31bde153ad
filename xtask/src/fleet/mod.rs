//! `cargo xtask fleet`: the production loop on real parts, in real time.
//!
//! Each scenario starts from a fresh directory, as separate processes on loopback: Kimi and GLM
//! stand-ins (`upramp mock`), three `upramp serve` gateways (two in front of Kimi, one of GLM) sharing
//! one flags file, a real Prometheus server scraping the three every second, and `upramp rollout run
//! --prometheus` with a compressed plan (bakes of seconds). The xtask process is the client: a load
//! generator sending multipart uploads at a steady rate with thousands of routing keys, and a monitor
//! reading the percent each gateway applied from its `/metrics`.
//!
//! Checks for every scenario: every client request got a response; every success names a file the
//! stand-in holds with the same size and SHA-256; no file is stored twice; a stored file without a
//! receipt only where the response said the outcome was unknown; the percent each gateway applied
//! matches each controller change within the reload bound. Plus the scenario's own outcome.
//! Output: a table, `target/upramp/fleet/report.md`, `report.json` and `timeline.svg` (one panel per
//! scenario); exit 0 only if every check held.

mod load;
mod procs;
mod scenarios;
mod timeline;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use serde::Serialize;

use crate::bench::process::{build_cli, target_dir};

pub use scenarios::Scenario;

/// Options of `cargo xtask fleet`.
#[derive(Debug, clap::Args)]
pub struct FleetArgs {
    /// Run one scenario only: happy, async-failure, outage, controller-kill, gateway-kill,
    /// operator-rollback, prometheus-restart, or hang (only when named).
    #[arg(long, value_name = "NAME", value_parser = parse_scenario)]
    pub scenario: Option<Scenario>,
    /// Lower load and shorter bakes (the CI form, at most 5 minutes on 2 cores after the build).
    #[arg(long)]
    pub quick: bool,
    /// Print the report as JSON on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
}

fn parse_scenario(name: &str) -> Result<Scenario, String> {
    Scenario::NAMED
        .iter()
        .copied()
        .find(|s| s.name() == name)
        .ok_or_else(|| {
            let names: Vec<&str> = Scenario::NAMED.iter().map(|s| s.name()).collect();
            format!(
                "unknown scenario `{name}` (expected one of {})",
                names.join(", ")
            )
        })
}

/// One check of one scenario.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// What is checked.
    pub name: String,
    /// Whether it held.
    pub passed: bool,
    /// The numbers behind it.
    pub detail: String,
}

/// One scenario's result.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioReport {
    /// Scenario name.
    pub scenario: String,
    /// Wall seconds.
    pub wall_secs: f64,
    /// Client requests sent.
    pub requests: usize,
    /// How the rollout ended (`completed at 100%`, `rolled_back at 0%`, ...).
    pub outcome: String,
    /// Seconds from a rollback decision until all three gateways applied 0%, when one happened.
    pub rollback_propagation_secs: Option<f64>,
    /// The checks.
    pub checks: Vec<Check>,
    /// Its timeline panel (drawn into `timeline.svg`, not repeated in `report.json`).
    #[serde(skip)]
    pub panel: Option<upramp_validate::timeline::TimelinePanel>,
}

impl ScenarioReport {
    fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.passed)
    }
}

/// The whole run.
#[derive(Debug, Serialize)]
struct Report {
    quick: bool,
    wall_secs: f64,
    passed: bool,
    scenarios: Vec<ScenarioReport>,
}

/// Everything a scenario needs from the machine.
pub struct Setup {
    /// The `upramp` binary.
    pub upramp: PathBuf,
    /// The `prometheus` binary.
    pub prometheus: PathBuf,
    /// Where scenarios write their directories.
    pub out: PathBuf,
    /// The quick form.
    pub quick: bool,
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// Run `cargo xtask fleet`.
pub fn run(args: &FleetArgs) -> anyhow::Result<ExitCode> {
    let Some(prometheus) = find_on_path("prometheus") else {
        anyhow::bail!(
            "cargo xtask fleet needs the `prometheus` binary on PATH (Debian package `prometheus`)"
        );
    };
    let upramp = build_cli("release")?;
    let out = target_dir()?.join("upramp").join("fleet");
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let setup = Setup {
        upramp,
        prometheus,
        out: out.clone(),
        quick: args.quick,
    };
    let started = Instant::now();
    let chosen: Vec<Scenario> = match args.scenario {
        Some(s) => vec![s],
        None => Scenario::ALL.to_vec(),
    };
    let mut reports = Vec::new();
    for scenario in chosen {
        eprintln!("fleet: {} ...", scenario.name());
        let report = match scenarios::run(&setup, scenario) {
            Ok(report) => report,
            Err(e) => ScenarioReport {
                scenario: scenario.name().to_owned(),
                wall_secs: 0.0,
                requests: 0,
                outcome: "harness error".to_owned(),
                rollback_propagation_secs: None,
                panel: None,
                checks: vec![Check {
                    name: "scenario ran".to_owned(),
                    passed: false,
                    detail: format!("{e:#}").replace('\n', " "),
                }],
            },
        };
        eprintln!(
            "fleet: {} {} in {:.1}s: {}",
            report.scenario,
            if report.passed() { "passed" } else { "FAILED" },
            report.wall_secs,
            report.outcome
        );
        reports.push(report);
    }
    let report = Report {
        quick: args.quick,
        wall_secs: started.elapsed().as_secs_f64(),
        passed: reports.iter().all(ScenarioReport::passed),
        scenarios: reports,
    };
    let panels: Vec<_> = report
        .scenarios
        .iter()
        .filter_map(|s| s.panel.clone())
        .collect();
    write(
        &out.join("timeline.svg"),
        &upramp_validate::timeline::svg_captioned(&panels, &timeline::FLEET_CAPTIONS),
    )?;
    let markdown = render_markdown(&report);
    write(&out.join("report.md"), &markdown)?;
    write(
        &out.join("report.json"),
        &serde_json::to_string_pretty(&report)?,
    )?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", summary_table(&report));
        println!(
            "fleet: {} in {:.1}s wall; {}",
            if report.passed {
                "every check held"
            } else {
                "SOME CHECKS FAILED"
            },
            report.wall_secs,
            out.join("report.md").display()
        );
    }
    Ok(if report.passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

fn summary_table(report: &Report) -> String {
    let mut rows = vec![vec![
        "scenario".to_owned(),
        "result".to_owned(),
        "wall".to_owned(),
        "requests".to_owned(),
        "rollback reach".to_owned(),
        "outcome".to_owned(),
    ]];
    for s in &report.scenarios {
        rows.push(vec![
            s.scenario.clone(),
            if s.passed() { "pass" } else { "FAIL" }.to_owned(),
            format!("{:.1}s", s.wall_secs),
            s.requests.to_string(),
            s.rollback_propagation_secs
                .map_or_else(|| "-".to_owned(), |t| format!("{t:.2}s")),
            s.outcome.clone(),
        ]);
        for c in s.checks.iter().filter(|c| !c.passed) {
            rows.push(vec![
                String::new(),
                "failed:".to_owned(),
                c.name.clone(),
                String::new(),
                String::new(),
                c.detail.clone(),
            ]);
        }
    }
    table(&rows)
}

fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for (i, row) in rows.iter().enumerate() {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
        if i == 0 {
            let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
            out.push_str(&rule.join("  "));
            out.push('\n');
        }
    }
    out
}

fn render_markdown(report: &Report) -> String {
    let mut out = format!(
        "# cargo xtask fleet{}\n\n{} in {:.1} s wall.\n\n",
        if report.quick { " --quick" } else { "" },
        if report.passed {
            "Every check held"
        } else {
            "Some checks FAILED"
        },
        report.wall_secs
    );
    for s in &report.scenarios {
        out.push_str(&format!(
            "## {}: {}\n\n{:.1} s wall, {} requests; {}.",
            s.scenario,
            if s.passed() { "pass" } else { "FAIL" },
            s.wall_secs,
            s.requests,
            s.outcome
        ));
        if let Some(t) = s.rollback_propagation_secs {
            out.push_str(&format!(
                " The rollback reached all three gateways {t:.2} s after the decision."
            ));
        }
        out.push_str("\n\n| check | result | detail |\n|---|---|---|\n");
        for c in &s.checks {
            out.push_str(&format!(
                "| {} | {} | {} |\n",
                c.name,
                if c.passed { "pass" } else { "FAIL" },
                c.detail.replace('|', "\\|")
            ));
        }
        out.push('\n');
    }
    out
}
