//! Plan loading and validation messages.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use upramp_rollout::{Plan, PlanError};

const GOOD: &str = r#"
failure_limit = 3

[gates]
confidence = 0.99
max_error_rate = 0.01

[[stages]]
name = "baseline"
percent = 0
min_bake = "1d"
min_async_samples = 0

[[stages]]
name = "canary"
percent = 0.5
min_bake = "36h"
min_async_samples = 400
[stages.gates]
max_p99_ratio = 1.5

[[stages]]
name = "full"
percent = "100%"
min_bake = 86400
min_async_samples = 2000
"#;

#[test]
fn a_full_plan_loads_with_defaults_and_overrides() {
    let plan = Plan::from_toml_str(GOOD).unwrap();
    assert_eq!(plan.failure_limit, 3);
    assert_eq!(plan.stages.len(), 3);
    assert_eq!(plan.stages[1].percent.thousandths(), 500);
    assert_eq!(plan.stages[1].min_bake, Duration::from_secs(36 * 3600));
    assert_eq!(plan.stages[1].gates.max_p99_ratio, 1.5);
    assert_eq!(plan.stages[1].gates.confidence, 0.99);
    assert_eq!(plan.stages[0].gates.max_error_rate, 0.01);
    assert_eq!(plan.stages[2].gates.max_p99_ratio, 1.2);
    assert_eq!(plan.stages[2].min_bake, Duration::from_secs(86_400));
}

#[test]
fn the_default_plan_is_the_three_week_runbook() {
    let plan = Plan::default_three_week();
    plan.validate().unwrap();
    let shape: Vec<(String, u32, u64)> = plan
        .stages
        .iter()
        .map(|s| {
            (
                s.name.clone(),
                s.percent.thousandths(),
                s.min_bake.as_secs() / 86_400,
            )
        })
        .collect();
    insta::assert_debug_snapshot!("default_plan_shape", shape);
    assert_eq!(plan.total_bake(), Duration::from_secs(21 * 86_400));
    let mut scaled = plan.clone();
    scaled.scale_min_samples(0.25);
    let mins: Vec<u64> = scaled.stages.iter().map(|s| s.min_async_samples).collect();
    assert_eq!(mins, [0, 75, 250, 500, 500]);
}

fn stage(name: &str, percent: &str, bake: &str, extra: &str) -> String {
    format!("[[stages]]\nname = \"{name}\"\npercent = {percent}\nmin_bake = {bake}\nmin_async_samples = 10\n{extra}\n")
}

#[test]
fn bad_plans_are_refused_with_one_line_naming_stage_and_field() {
    let cases: Vec<(&str, String)> = vec![
        ("empty", String::new()),
        ("not toml", "[[stages]\nname=".to_owned()),
        ("unknown top-level", "stagez = 1\n".to_owned()),
        (
            "percents fall",
            stage("a", "10", "\"1d\"", "") + &stage("b", "5", "\"1d\"", ""),
        ),
        (
            "percents repeat",
            stage("a", "10", "\"1d\"", "") + &stage("b", "10", "\"1d\"", ""),
        ),
        ("over 100", stage("a", "150", "\"1d\"", "")),
        ("negative percent", stage("a", "-1", "\"1d\"", "")),
        ("too precise", stage("a", "1.2345", "\"1d\"", "")),
        ("zero bake", stage("a", "1", "\"0s\"", "")),
        ("negative bake text", stage("a", "1", "\"-2d\"", "")),
        ("negative bake seconds", stage("a", "1", "-5", "")),
        ("bad bake unit", stage("a", "1", "\"2w\"", "")),
        (
            "missing bake",
            "[[stages]]\nname = \"a\"\npercent = 1\nmin_async_samples = 1\n".to_owned(),
        ),
        (
            "missing name",
            "[[stages]]\npercent = 1\nmin_bake = \"1d\"\nmin_async_samples = 1\n".to_owned(),
        ),
        (
            "duplicate name",
            stage("a", "1", "\"1d\"", "") + &stage("a", "2", "\"1d\"", ""),
        ),
        ("unknown stage field", stage("a", "1", "\"1d\"", "bake = 3")),
        (
            "negative samples",
            "[[stages]]\nname = \"a\"\npercent = 1\nmin_bake = \"1d\"\nmin_async_samples = -3\n"
                .to_owned(),
        ),
        (
            "rate as percent",
            stage("a", "1", "\"1d\"", "[stages.gates]\nmin_success_rate = 98"),
        ),
        (
            "bad confidence",
            stage("a", "1", "\"1d\"", "[stages.gates]\nconfidence = 1.0"),
        ),
        (
            "unknown gate",
            stage("a", "1", "\"1d\"", "[stages.gates]\nmax_latency = 3"),
        ),
        (
            "zero failure limit",
            format!("failure_limit = 0\n{}", stage("a", "1", "\"1d\"", "")),
        ),
    ];
    let mut report = String::new();
    for (name, text) in &cases {
        let err: PlanError = Plan::from_toml_str(text).unwrap_err();
        let message = err.to_string();
        assert!(!message.contains('\n'), "{name}: {message}");
        report.push_str(&format!("{name}: {message}\n"));
    }
    insta::assert_snapshot!("plan_errors", report);
}

#[test]
fn a_missing_plan_file_names_the_path() {
    let err = Plan::from_file(std::path::Path::new("/nonexistent/plan.toml")).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("plan /nonexistent/plan.toml: cannot read"),
        "{err}"
    );
}
