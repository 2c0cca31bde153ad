//! The Grafana dashboard and Prometheus alert rules only query metrics this crate exports.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::PathBuf;

use upramp_telemetry::names;

fn docs_file(relative: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../docs")
        .join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

/// Every `upramp_*` metric a query text mentions, with histogram suffixes removed.
fn metrics_mentioned(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for (start, _) in text.match_indices("upramp_") {
        let name: String = text[start..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        let base = ["_bucket", "_count", "_sum"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .unwrap_or(&name);
        found.insert(base.to_owned());
    }
    found
}

#[test]
fn dashboard_is_valid_json_with_the_required_panels() {
    let dashboard: serde_json::Value =
        serde_json::from_str(&docs_file("grafana/upramp.json")).unwrap();
    let panels = dashboard["panels"].as_array().unwrap();
    let titles: Vec<&str> = panels
        .iter()
        .map(|panel| panel["title"].as_str().unwrap())
        .collect();
    for required in [
        "Success ratio by path",
        "Latency p50 / p99 by path",
        "Fallbacks to sync by reason",
        "Uploads in flight and queued",
        "Queue wait p50 / p99 by path",
        "Rollout percent",
        "Rollout decisions",
    ] {
        assert!(
            titles.contains(&required),
            "missing panel {required:?} in {titles:?}"
        );
    }
    let mut ids = BTreeSet::new();
    for panel in panels {
        assert!(
            ids.insert(panel["id"].as_u64().unwrap()),
            "duplicate panel id"
        );
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "panel {} has no query", panel["title"]);
        for target in targets {
            let expr = target["expr"].as_str().unwrap();
            let mentioned = metrics_mentioned(expr);
            assert!(!mentioned.is_empty(), "{expr}");
            // `upramp serve`'s own series are checked against a live gateway in
            // crates/cli/tests/serve_routes.rs.
            for metric in mentioned
                .into_iter()
                .filter(|m| !m.starts_with("upramp_gateway_"))
            {
                assert!(
                    names::ALL.contains(&metric.as_str()),
                    "{metric} in {expr} is not exported"
                );
            }
        }
    }
}

#[test]
fn alert_rules_query_exported_metrics() {
    let rules = docs_file("prometheus/alerts.yml");
    for alert in [
        "UpRampUploadSuccessRatioLow",
        "UpRampUploadFallbackRatioHigh",
        "UpRampUploadFallbackSpike",
        "UpRampAsyncLatencyRegression",
        "UpRampUploadQueueWaitHigh",
    ] {
        assert!(
            rules.contains(&format!("alert: {alert}")),
            "missing alert {alert}"
        );
    }
    for metric in metrics_mentioned(&rules) {
        assert!(
            names::ALL.contains(&metric.as_str()),
            "{metric} is not exported"
        );
    }
}
