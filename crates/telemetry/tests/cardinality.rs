//! Label values come from closed sets, whatever the public API is fed.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, UNIX_EPOCH};

use upramp_telemetry::{
    names, record_flag_evaluation, record_rollout_decision, record_rollout_percent, EventKind,
    LocalMetrics, Outcome, PrometheusObserver, UploadEvent, UploadObserver, UploadPath,
};

/// Strings that must never become label values: routing keys, file names, API keys, messages.
fn hostile_values(i: usize) -> [String; 6] {
    [
        format!("tenant-{i}"),
        format!("user{i}"),
        format!("/data/uploads/report-{i}.pdf"),
        format!("sk-live-{i:032x}"),
        format!("connection reset by peer (attempt {i})"),
        format!("request{i}"),
    ]
}

/// Label name -> set of values seen in an exposition.
fn label_values(text: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut seen: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in text.lines().filter(|line| !line.starts_with('#')) {
        let (Some(open), Some(close)) = (line.find('{'), line.rfind('}')) else {
            continue;
        };
        for pair in line[open + 1..close].split(',') {
            let (name, value) = pair.split_once('=').unwrap();
            seen.entry(name.to_owned())
                .or_default()
                .insert(value.trim_matches('"').to_owned());
        }
    }
    seen
}

#[test]
fn labels_stay_in_closed_sets() {
    let metrics = LocalMetrics::new().unwrap();
    let observer = PrometheusObserver::new();
    let mut fed = Vec::new();
    metrics.scope(|| {
        for i in 0..2_000 {
            let hostile = hostile_values(i);
            for (j, value) in hostile.iter().enumerate() {
                let kind = if j % 2 == 0 {
                    EventKind::Request
                } else {
                    EventKind::Attempt
                };
                let path = UploadPath::ALL[(i + j) % 3];
                let outcome = Outcome::ALL[(i + j) % Outcome::ALL.len()];
                let event = UploadEvent {
                    kind,
                    provider: value.clone(),
                    path,
                    outcome,
                    duration: Duration::from_millis(i as u64),
                    queue_wait: Duration::ZERO,
                    bytes: i as u64,
                    attempt: (j % 3) as u32 + 1,
                    fallback_reason: (path == UploadPath::Async).then_some(outcome),
                    at: UNIX_EPOCH + Duration::from_secs(i as u64),
                };
                observer.on_event(&event);
                observer.on_in_flight(value, path, 1);
                record_flag_evaluation(value, value);
                record_rollout_percent(value, 50.0);
                record_rollout_decision(value, value);
            }
            // Legitimate traffic alongside.
            observer.on_event(&UploadEvent {
                kind: EventKind::Request,
                provider: ["kimi", "glm", "openai"][i % 3].to_owned(),
                path: UploadPath::Sync,
                outcome: Outcome::Success,
                duration: Duration::from_millis(10),
                queue_wait: Duration::ZERO,
                bytes: 10,
                attempt: 1,
                fallback_reason: None,
                at: UNIX_EPOCH,
            });
            record_flag_evaluation("async_upload", "async");
            fed.extend(hostile);
        }
    });
    let text = metrics.render();
    let seen = label_values(&text);

    let closed = |values: &[&str]| {
        values
            .iter()
            .map(|v| (*v).to_owned())
            .collect::<BTreeSet<_>>()
    };
    let paths = closed(&UploadPath::ALL.map(UploadPath::as_str));
    let outcomes = closed(&Outcome::ALL.map(Outcome::as_str));
    assert_eq!(
        seen[names::LABEL_PROVIDER],
        closed(&["glm", "kimi", "openai", names::OTHER])
    );
    assert!(seen[names::LABEL_PATH].is_subset(&paths));
    assert!(seen[names::LABEL_OUTCOME].is_subset(&outcomes));
    assert!(seen[names::LABEL_REASON].is_subset(&outcomes));
    // Identifier-shaped keys (`user7`) can pass as flag values, but only up to the per-label cap.
    assert!(
        seen[names::LABEL_FLAG].len() <= 32 + 2,
        "{:?}",
        seen[names::LABEL_FLAG]
    );
    assert!(seen[names::LABEL_VARIANT].len() <= 16 + 2);
    assert!(seen[names::LABEL_DECISION].len() <= 16 + 2);
    assert!(seen[names::LABEL_FLAG].contains("async_upload"));
    assert!(seen[names::LABEL_FLAG].contains(names::INVALID));
    let allowed_labels = closed(&[
        names::LABEL_PROVIDER,
        names::LABEL_PATH,
        names::LABEL_OUTCOME,
        names::LABEL_REASON,
        names::LABEL_FLAG,
        names::LABEL_VARIANT,
        names::LABEL_DECISION,
        "le",
    ]);
    assert!(
        seen.keys().all(|label| allowed_labels.contains(label)),
        "{:?}",
        seen.keys()
    );

    for value in fed
        .iter()
        .filter(|value| !value.starts_with("user") && !value.starts_with("request"))
    {
        assert!(
            !text.contains(value.as_str()),
            "{value} leaked into the exposition"
        );
    }
    let series = text
        .lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .count();
    assert!(series < 600, "{series} series: cardinality is not bounded");
}
