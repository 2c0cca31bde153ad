//! Issue 14: thin data never passes, operators' commits are never lost, a rollback is driven until
//! applied, and a crash at any commit step leaves the flag, the state and the audit log in step.
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::Duration;

use upramp_flags::Percent;
use upramp_rollout::{
    evaluate, AuditLog, CommitStep, Controller, Decision, EvalContext, FileSink, FlagSink,
    FnSource, GateInputs, GateOutcome, Gates, PathSample, Phase, Plan, RecordingSink, ScrapeSource,
    SinkError, SourceError, StateStore,
};

mod common;
use common::start;

fn plan(text: &str) -> Plan {
    Plan::from_toml_str(text).unwrap()
}

const BASELINE_THEN_CANARY: &str = r#"
[[stages]]
name = "baseline"
percent = 0
min_bake = "1s"
min_async_samples = 0

[[stages]]
name = "canary"
percent = 10
min_bake = "1h"
min_async_samples = 100
"#;

#[test]
fn a_baseline_window_with_a_thin_or_unhealthy_control_is_inconclusive() {
    let ctx = EvalContext {
        min_async_samples: 0,
        judge_async: false,
        expect_control: true,
        remembered_control_p99: None,
        look: 1,
    };
    let gates = Gates::default();
    let sync = |samples, successes| GateInputs {
        sync: PathSample {
            samples,
            successes,
            errors: samples - successes,
            ..Default::default()
        },
        ..Default::default()
    };
    // No data, and 7 of 7 failed: neither is a pass.
    assert_eq!(
        evaluate(&gates, &GateInputs::default(), &ctx).outcome,
        GateOutcome::Inconclusive
    );
    assert_eq!(
        evaluate(&gates, &sync(7, 0), &ctx).outcome,
        GateOutcome::Inconclusive
    );
    // Enough samples but the control's own health not yet established (interval straddles).
    assert_eq!(
        evaluate(&gates, &sync(250, 247), &ctx).outcome,
        GateOutcome::Inconclusive
    );
    // A healthy, well-sampled control passes the baseline.
    assert_eq!(
        evaluate(&gates, &sync(2_000, 2_000), &ctx).outcome,
        GateOutcome::Pass
    );
    // At 10% a thin control blocks a pass even if the async gates would pass.
    let canary = EvalContext {
        min_async_samples: 100,
        judge_async: true,
        expect_control: true,
        remembered_control_p99: None,
        look: 1,
    };
    let healthy = PathSample {
        samples: 2_000,
        successes: 2_000,
        p99: Some(Duration::from_millis(50)),
        ..Default::default()
    };
    let thin = GateInputs {
        async_: healthy,
        sync: PathSample {
            samples: 10,
            successes: 10,
            ..Default::default()
        },
    };
    assert_eq!(
        evaluate(&gates, &thin, &canary).outcome,
        GateOutcome::Inconclusive
    );
}

/// A loopback `/metrics` server answering each scrape with `body(n)` for the n-th request.
fn metrics_server(body: impl Fn(usize) -> String + Send + 'static) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/metrics", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for (n, stream) in listener.incoming().enumerate() {
            let Ok(mut stream) = stream else { return };
            let mut buf = [0u8; 2048];
            let _ = stream.read(&mut buf);
            let body = body(n);
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    url
}

#[test]
fn the_baseline_never_advances_on_a_growing_sync_error_counter_alone() {
    // The issue's reproduction: only `sync` server errors, growing; the old controller advanced at
    // tick 2 ("stage baseline passed").
    let url = metrics_server(|n| {
        format!(
            "upramp_uploads_total{{provider=\"kimi\",path=\"sync\",outcome=\"server_error\"}} {}\n",
            n * 3
        )
    });
    let source = ScrapeSource::new(vec![url], Duration::from_secs(60)).unwrap();
    let mut c =
        Controller::new(plan(BASELINE_THEN_CANARY), source, RecordingSink::default()).unwrap();
    let mut now = start();
    assert_eq!(c.tick(now).unwrap().decision, Decision::Advance); // starts the baseline
    for _ in 0..5 {
        now += Duration::from_secs(2);
        let record = c.tick(now).unwrap();
        assert_ne!(record.decision, Decision::Advance, "{}", record.reason);
    }
    assert_eq!(c.state().stage_index(), 0, "{:?}", c.state().last_decision);
    assert!(matches!(c.state().phase, Phase::Baking { stage: 0, .. }));
    assert_eq!(c.state().percent, Percent::ZERO);
}

#[derive(Debug, Default)]
struct FailingSink {
    attempts: u32,
    fail_until: u32,
    applied: Vec<Percent>,
}

impl FlagSink for FailingSink {
    fn apply(&mut self, percent: Percent) -> Result<(), SinkError> {
        self.attempts += 1;
        if self.attempts <= self.fail_until {
            return Err(SinkError {
                percent,
                message: "flags file is invalid".to_owned(),
            });
        }
        self.applied.push(percent);
        Ok(())
    }
}

fn mild_failure(_now: std::time::SystemTime) -> Result<GateInputs, SourceError> {
    // 5% async errors against a 2% limit on 300 legs: a failure, not decisive (needs 500 samples).
    let p99 = Some(Duration::from_millis(50));
    Ok(GateInputs {
        async_: PathSample {
            samples: 300,
            successes: 285,
            errors: 15,
            p99,
            ..Default::default()
        },
        sync: PathSample {
            samples: 5_000,
            successes: 5_000,
            p99,
            ..Default::default()
        },
    })
}

#[test]
fn a_rollback_that_cannot_be_applied_is_counted_and_retried_until_applied() {
    let mut plan = Plan::default_three_week();
    plan.stages.remove(0);
    let sink = FailingSink {
        fail_until: 6,
        ..Default::default()
    };
    let mut c = Controller::new(plan, FnSource(mild_failure), sink).unwrap();
    let mut now = start();
    // Start: the apply fails, the decision stands.
    assert!(matches!(
        c.tick(now),
        Err(upramp_rollout::RolloutError::Sink(_))
    ));
    assert_eq!(c.state().percent.to_string(), "1%");
    assert_eq!(c.state().applied_percent, None);
    // Failing non-decisive evaluations count although every apply fails, and roll back at the limit.
    for _ in 0..2 {
        now += Duration::from_secs(60);
        let _ = c.tick(now);
    }
    assert!(
        matches!(c.state().phase, Phase::RolledBack { .. }),
        "{:?}",
        c.state().phase
    );
    assert_eq!(c.state().percent, Percent::ZERO);
    assert_ne!(c.state().applied_percent, Some(Percent::ZERO));
    // A finished rollout keeps re-applying its final percent until the sink confirms it.
    while c.state().applied_percent != Some(Percent::ZERO) {
        now += Duration::from_secs(60);
        let _ = c.tick(now);
        assert!(c.sink().attempts < 20);
    }
    assert_eq!(c.sink().applied.last(), Some(&Percent::ZERO));
    // And an operator can always re-apply it.
    let record = c.rollback(now, "re-apply after fixing the file").unwrap();
    assert_eq!(record.decision, Decision::Rollback);
}

/// A loopback server that accepts a scrape, reports it, and answers only when released.
fn hanging_server() -> (String, mpsc::Receiver<()>, mpsc::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/metrics", listener.local_addr().unwrap());
    let (accepted_tx, accepted_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut buf = [0u8; 2048];
            let _ = stream.read(&mut buf);
            let _ = accepted_tx.send(());
            let _ = release_rx.recv();
            let body = "upramp_uploads_total{provider=\"kimi\",path=\"sync\",outcome=\"success\"} 100000\nupramp_uploads_total{provider=\"kimi\",path=\"async\",outcome=\"success\"} 100000\n";
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (url, accepted_rx, release_tx)
}

#[test]
fn an_operator_rollback_during_a_hanging_scrape_is_never_undone() {
    let dir = tempfile::tempdir().unwrap();
    let state_path = dir.path().join("state.json");
    let flags = dir.path().join("flags.toml");
    let audit_path = dir.path().join("audit.jsonl");
    let store = StateStore::new(&state_path);
    let mut p = Plan::default_three_week();
    p.stages.drain(..2); // start at 10%
    let (url, accepted, release) = hanging_server();
    let source = ScrapeSource::new(vec![url], Duration::from_secs(60)).unwrap();
    let mut run = Controller::new(p, source, FileSink::new(&flags, "async_upload"))
        .unwrap()
        .with_store(store.clone())
        .with_audit(AuditLog::open(&audit_path).unwrap());
    let now = start();
    // The first tick starts the rollout at 10% (no scrape while pending).
    run.tick(now).unwrap();
    assert!(std::fs::read_to_string(&flags)
        .unwrap()
        .contains("rollout = 10"));
    let ticking = std::thread::spawn(move || {
        let result = run.tick(now + Duration::from_secs(30));
        (run, result)
    });
    accepted.recv().unwrap(); // the tick is inside its scrape
    let mut operator = Controller::from_state(
        store.load().unwrap(),
        FnSource(|_| -> Result<GateInputs, SourceError> {
            Err(SourceError::Other("unused".into()))
        }),
        FileSink::new(&flags, "async_upload"),
    )
    .with_store(store.clone())
    .with_audit(AuditLog::open(&audit_path).unwrap());
    operator
        .rollback(now + Duration::from_secs(31), "incident")
        .unwrap();
    release.send(()).unwrap();
    let (run, result) = ticking.join().unwrap();
    let err = result.unwrap_err();
    assert!(err.is_conflict(), "{err}");
    let stored = store.load().unwrap();
    assert!(matches!(stored.phase, Phase::RolledBack { .. }));
    assert_eq!(stored.percent, Percent::ZERO);
    assert!(std::fs::read_to_string(&flags)
        .unwrap()
        .contains("rollout = 0"));
    assert_eq!(run.state().phase.as_str(), "rolled_back");
    // Audit records are in commit order: generations strictly rise.
    let records = AuditLog::read(&audit_path).unwrap();
    assert!(records
        .windows(2)
        .all(|w| w[0].generation < w[1].generation));
    assert_eq!(records.last().unwrap().decision, Decision::Rollback);
}

#[test]
fn a_second_owner_is_refused_naming_the_holders_pid() {
    let dir = tempfile::tempdir().unwrap();
    let store = StateStore::new(dir.path().join("state.json"));
    let _held = store.acquire_owner().unwrap();
    let err = store.acquire_owner().unwrap_err();
    assert!(
        err.to_string()
            .contains(&format!("pid {}", std::process::id())),
        "{err}"
    );
}

/// Records every percent the flags file ever held, as the fleet would have seen it.
struct WatchedFile {
    inner: FileSink,
    seen: std::rc::Rc<std::cell::RefCell<Vec<Percent>>>,
}

impl FlagSink for WatchedFile {
    fn apply(&mut self, percent: Percent) -> Result<(), SinkError> {
        self.inner.apply(percent)?;
        self.seen.borrow_mut().push(percent);
        Ok(())
    }
}

fn healthy(_now: std::time::SystemTime) -> Result<GateInputs, SourceError> {
    let path = PathSample {
        samples: 50_000,
        successes: 50_000,
        p99: Some(Duration::from_millis(50)),
        ..Default::default()
    };
    Ok(GateInputs {
        async_: path,
        sync: path,
    })
}

#[test]
fn a_crash_at_any_commit_step_is_reconciled_within_one_tick() {
    for step in CommitStep::ALL {
        // Crash on the commit of the k-th tick, for several k (including an advance).
        for crash_tick in 1..6 {
            let dir = tempfile::tempdir().unwrap();
            let flags = dir.path().join("flags.toml");
            let audit = dir.path().join("audit.jsonl");
            let store = StateStore::new(dir.path().join("state.json"));
            let seen = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
            let sink = |seen: &std::rc::Rc<_>| WatchedFile {
                inner: FileSink::new(&flags, "async_upload"),
                seen: std::rc::Rc::clone(seen),
            };
            let mut c = Controller::new(Plan::default_three_week(), FnSource(healthy), sink(&seen))
                .unwrap()
                .with_store(store.clone())
                .with_audit(AuditLog::open(&audit).unwrap());
            let mut now = start();
            for _ in 1..crash_tick {
                c.tick(now).unwrap();
                now += Duration::from_secs(3 * 86_400);
            }
            c = c.with_crash_after(Some(step));
            let err = c.tick(now).unwrap_err();
            assert!(
                matches!(err, upramp_rollout::RolloutError::InjectedCrash { .. }),
                "{err}"
            );
            drop(c);
            // Restart: a new process loads the state and ticks once.
            now += Duration::from_secs(60);
            let mut restarted =
                Controller::from_state(store.load().unwrap(), FnSource(healthy), sink(&seen))
                    .with_store(store.clone())
                    .with_audit(AuditLog::open(&audit).unwrap());
            restarted.tick(now).unwrap();
            let state = store.load().unwrap();
            let file: toml::Table = std::fs::read_to_string(&flags).unwrap().parse().unwrap();
            let in_file = file["async_upload"]["rollout"].as_integer().unwrap();
            assert_eq!(
                Percent::from_thousandths(in_file as u32 * 1000).unwrap(),
                state.percent,
                "{step:?} at tick {crash_tick}"
            );
            assert_eq!(
                state.applied_percent,
                Some(state.percent),
                "{step:?} at tick {crash_tick}"
            );
            let records = AuditLog::read(&audit).unwrap();
            assert!(
                records
                    .windows(2)
                    .all(|w| w[0].generation < w[1].generation),
                "{step:?} at tick {crash_tick}: audit out of order"
            );
            for held in seen.borrow().iter() {
                assert!(
                    records.iter().any(|r| r.percent == *held),
                    "{step:?} at tick {crash_tick}: {held} is in no audit record"
                );
            }
            assert_eq!(
                records.last().unwrap().generation,
                state.last_decision.as_ref().unwrap().generation,
                "{step:?} at tick {crash_tick}: the last decision is not audited"
            );
        }
    }
}

#[test]
fn a_torn_audit_tail_is_cut_off_and_never_glued_to_the_next_record() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let store = StateStore::new(dir.path().join("state.json"));
    let mut c = Controller::new(
        Plan::default_three_week(),
        FnSource(healthy),
        RecordingSink::default(),
    )
    .unwrap()
    .with_store(store.clone())
    .with_audit(AuditLog::open(&audit).unwrap());
    c.tick(start()).unwrap();
    drop(c);
    std::fs::OpenOptions::new()
        .append(true)
        .open(&audit)
        .unwrap()
        .write_all(b"{\"at\":\"2024-05-01T00:")
        .unwrap();
    let log = AuditLog::open(&audit).unwrap();
    assert_eq!(log.torn_tail(), Some(21));
    let mut c = Controller::from_state(
        store.load().unwrap(),
        FnSource(healthy),
        RecordingSink::default(),
    )
    .with_store(store)
    .with_audit(log);
    c.tick(start() + Duration::from_secs(3_600)).unwrap();
    assert_eq!(AuditLog::read(&audit).unwrap().len(), 2);
    let mut torn = audit.as_os_str().to_owned();
    torn.push(".torn");
    assert!(std::fs::read_to_string(torn)
        .unwrap()
        .starts_with("{\"at\""));
}
