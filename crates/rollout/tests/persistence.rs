//! State store, audit log and status output.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use upramp_rollout::{AuditLog, Controller, Decision, Plan, StateError, StateStore};

fn rolled_back_at_ten_percent(
    audit: AuditLog,
    store: Option<StateStore>,
) -> Controller<impl upramp_rollout::MetricsSource, SharedSink> {
    let (source, sink) = sim(|_, p| {
        let a = if p.thousandths() == 10_000 {
            Health {
                error_rate: 0.05,
                p99_ms: 100,
            }
        } else {
            HEALTHY
        };
        split(200_000, p, a, HEALTHY)
    });
    let mut c = Controller::new(Plan::default_three_week(), source, sink)
        .unwrap()
        .with_audit(audit);
    if let Some(store) = store {
        c = c.with_store(store);
    }
    let mut now = start();
    while !c.state().phase.is_terminal() {
        c.tick(now).unwrap();
        now += HOUR;
    }
    c
}

#[test]
fn audit_records_round_trip_and_snapshot_the_rollback() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let c = rolled_back_at_ten_percent(AuditLog::open(&path).unwrap(), None);
    let in_memory = c.audit().records().to_vec();
    let from_file = AuditLog::read(&path).unwrap();
    assert_eq!(in_memory, from_file);
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.lines().count(), in_memory.len());
    let rollback = from_file.last().unwrap();
    assert_eq!(rollback.decision, Decision::Rollback);
    insta::assert_json_snapshot!("audit_rollback_record", rollback);
    insta::assert_snapshot!("audit_rollback_reason", rollback.reason);
}

#[test]
fn status_text_and_json() {
    let c = rolled_back_at_ten_percent(AuditLog::in_memory(), None);
    let status = c.state().status(start() + 10 * DAY);
    insta::assert_snapshot!("status_rolled_back_text", status.to_string());
    insta::assert_json_snapshot!("status_rolled_back_json", status);

    let (source, sink) = sim(|_, p| split(200_000, p, HEALTHY, HEALTHY));
    let mut c = Controller::new(Plan::default_three_week(), source, sink).unwrap();
    let mut now = start();
    while c.state().stage_index() < 1 {
        c.tick(now).unwrap();
        now += HOUR;
    }
    c.tick(now).unwrap();
    let status = c
        .state()
        .status(now + 30 * 60 * std::time::Duration::from_secs(1));
    insta::assert_snapshot!("status_baking_text", status.to_string());
}

#[test]
fn state_round_trips_through_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = StateStore::new(dir.path().join("state.json"));
    let c = rolled_back_at_ten_percent(AuditLog::in_memory(), Some(store.clone()));
    assert_eq!(store.load().unwrap(), *c.state());
    // No temporary files are left behind.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| !name.ends_with(".lock"))
        .collect();
    assert_eq!(names, vec!["state.json".to_owned()]);
}

#[test]
fn corrupt_or_missing_state_is_an_error_and_the_file_is_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let store = StateStore::new(&path);
    assert!(matches!(store.load(), Err(StateError::Missing { .. })));

    for (name, body) in [
        ("truncated", r#"{"plan": {"stages": ["#.to_owned()),
        ("not json", "percent = 10\n".to_owned()),
        ("stage out of range", {
            let mut state =
                upramp_rollout::ControllerState::new(Plan::default_three_week()).unwrap();
            state.phase = upramp_rollout::Phase::Baking {
                stage: 9,
                since: start(),
            };
            serde_json::to_string(&state).unwrap()
        }),
    ] {
        std::fs::write(&path, &body).unwrap();
        let err = store.load().unwrap_err();
        assert!(matches!(err, StateError::Corrupt { .. }), "{name}: {err}");
        let message = err.to_string();
        assert!(
            message.contains("is corrupt and was left untouched"),
            "{message}"
        );
        assert!(!message.contains('\n'), "{message}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), body, "{name}");
    }
    // `create` refuses to overwrite, whatever the file holds.
    let state = upramp_rollout::ControllerState::new(Plan::default_three_week()).unwrap();
    assert!(matches!(
        store.create(&state),
        Err(StateError::Exists { .. })
    ));
}
