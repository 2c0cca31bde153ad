//! The quick validation, end to end through the public crates: the five stages and the five fault
//! scenarios against real stand-ins, every check holding, and the four files written.

#![allow(clippy::unwrap_used)]

use upramp_validate::artifacts::write_all;
use upramp_validate::engine::{self, Options, Silent};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quick_validation_passes_every_check() {
    // This test binary holds one test, so it may own the process-wide recorder.
    let metrics = upramp_telemetry::install().unwrap();
    let options = Options {
        seed: 7,
        quick: true,
        only: None,
    };
    let report = engine::run(&options, &Silent).await.unwrap();

    let failures: Vec<String> = report
        .failures()
        .into_iter()
        .map(|(place, check)| format!("{place} {}: {}", check.name, check.detail))
        .collect();
    assert!(
        failures.is_empty(),
        "failed checks:\n{}",
        failures.join("\n")
    );
    assert!(report.run.passed);
    assert_eq!(
        report.stages.len(),
        5,
        "{:?}",
        report
            .stages
            .iter()
            .map(|s| &s.decision)
            .collect::<Vec<_>>()
    );
    assert_eq!(
        report
            .stages
            .iter()
            .map(|s| s.target_percent)
            .collect::<Vec<_>>(),
        vec![0.0, 1.0, 10.0, 50.0, 100.0]
    );
    assert_eq!(report.stages.last().unwrap().decision, "complete");
    assert_eq!(
        report
            .scenarios
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>(),
        vec![
            "async-breaks",
            "latency",
            "outage",
            "restart",
            "low-traffic",
            "operator-rollback",
            "crash-commit"
        ]
    );
    let stage_days: f64 = report.stages.iter().map(|s| s.days).sum();
    assert!(
        stage_days >= 21.0,
        "the stages cover {stage_days} simulated days"
    );

    let dir = tempfile::tempdir().unwrap();
    let files = write_all(dir.path(), &report, &metrics.render_sorted()).unwrap();
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&files.report_json).unwrap()).unwrap();
    assert_eq!(json["stages"].as_array().unwrap().len(), 5);
    assert_eq!(json["scenarios"].as_array().unwrap().len(), 7);
    let svg = std::fs::read_to_string(&files.timeline_svg).unwrap();
    assert!(svg.contains("rollback"), "the timeline marks the rollbacks");
    let prom = std::fs::read_to_string(&files.metrics_prom).unwrap();
    assert!(prom.contains("upramp_uploads_total{"), "{prom}");
    assert!(prom.contains("upramp_rollout_decisions_total{"), "{prom}");
    assert!(std::fs::read_to_string(&files.report_md)
        .unwrap()
        .contains("## Fault scenarios"));
}
