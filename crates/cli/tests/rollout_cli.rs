//! `upramp rollout` through the real binary.
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, UNIX_EPOCH};

use upramp_rollout::{
    Controller, ControllerState, FnSource, GateInputs, Plan, RecordingSink, SourceError, StateStore,
};

fn upramp(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_upramp"))
        .args(args)
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn init_then_status_json_and_text() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let out = upramp(&["rollout", "init", "--state", s(&state)]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("5 stages, 21d of bake, starting at `baseline` (0%)"));

    let out = upramp(&["rollout", "status", "--state", s(&state), "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["percent"], 0);
    assert_eq!(json["stage_index"], 0);
    assert_eq!(json["state"], "pending");
    insta::assert_snapshot!("status_pending_json", text(&out.stdout));

    let out = upramp(&["rollout", "status", "--state", s(&state)]);
    insta::assert_snapshot!("status_pending_text", text(&out.stdout));

    // A second init refuses to overwrite the rollout in progress.
    let before = std::fs::read(&state).unwrap();
    let out = upramp(&["rollout", "init", "--state", s(&state)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("already exists"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(std::fs::read(&state).unwrap(), before);
}

#[test]
fn status_of_a_paused_rollout_is_stable() {
    // Paused: time in stage is frozen at the pause, so the output does not depend on the wall clock.
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let store = StateStore::new(&state);
    let source = FnSource(|_now| -> Result<GateInputs, SourceError> { Ok(GateInputs::default()) });
    let mut c = Controller::new(Plan::default_three_week(), source, RecordingSink::default())
        .unwrap()
        .with_store(store);
    let t0 = UNIX_EPOCH + Duration::from_secs(1_714_521_600);
    c.tick(t0).unwrap();
    c.advance(t0 + Duration::from_secs(3_600), "baseline looked fine")
        .unwrap();
    c.pause(
        t0 + Duration::from_secs(5 * 3_600),
        "waiting for the weekly report",
    )
    .unwrap();
    let out = upramp(&["rollout", "status", "--state", s(&state)]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    insta::assert_snapshot!("status_paused_text", text(&out.stdout));
}

#[test]
fn manual_operations_are_applied_and_audited() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let flags = dir.path().join("flags.toml");
    assert!(upramp(&["rollout", "init", "--state", s(&state)])
        .status
        .success());

    let out = upramp(&[
        "rollout",
        "advance",
        "--state",
        s(&state),
        "--reason",
        "skip baseline",
        "--flags-file",
        s(&flags),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("advance stage 2/5 `canary-1` 0% -> 1%: advanced by operator"),
        "{}",
        text(&out.stdout)
    );
    assert!(std::fs::read_to_string(&flags)
        .unwrap()
        .contains("rollout = 1"));

    assert!(upramp(&[
        "rollout",
        "pause",
        "--state",
        s(&state),
        "--reason",
        "hold on"
    ])
    .status
    .success());
    let out = upramp(&[
        "rollout",
        "pause",
        "--state",
        s(&state),
        "--reason",
        "again",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        text(&out.stderr).trim(),
        "upramp: error: cannot pause a rollout that is paused"
    );
    assert!(
        upramp(&["rollout", "resume", "--state", s(&state), "--reason", "ok"])
            .status
            .success()
    );
    let out = upramp(&[
        "rollout",
        "rollback",
        "--state",
        s(&state),
        "--reason",
        "pager",
        "--flags-file",
        s(&flags),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(std::fs::read_to_string(&flags)
        .unwrap()
        .contains("rollout = 0"));
    let out = upramp(&["rollout", "status", "--state", s(&state), "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["state"], "rolled_back");
    assert_eq!(json["percent"], 0);

    let audit = upramp_rollout::AuditLog::read(&dir.path().join("state.json.audit.jsonl")).unwrap();
    let decisions: Vec<_> = audit.iter().map(|r| r.decision.as_str()).collect();
    assert_eq!(decisions, ["advance", "pause", "resume", "rollback"]);
    assert_eq!(audit[3].reason, "rolled back to 0% by operator: pager");
}

#[test]
fn missing_or_corrupt_state_exits_2_with_one_line_and_leaves_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.json");
    let out = upramp(&["rollout", "status", "--state", s(&missing)]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(text(&out.stderr).lines().count(), 1);
    assert!(text(&out.stderr).contains("does not exist"));
    assert!(!missing.exists());

    let corrupt = dir.path().join("corrupt.json");
    std::fs::write(&corrupt, "{\"plan\": 42").unwrap();
    for args in [
        vec!["rollout", "status", "--state", s(&corrupt)],
        vec![
            "rollout",
            "advance",
            "--state",
            s(&corrupt),
            "--reason",
            "x",
        ],
        vec![
            "rollout",
            "rollback",
            "--state",
            s(&corrupt),
            "--reason",
            "x",
        ],
        vec![
            "rollout",
            "run",
            "--state",
            s(&corrupt),
            "--flags-file",
            "f.toml",
            "--scrape",
            "http://127.0.0.1:9/metrics",
        ],
    ] {
        let out = upramp(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = text(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains("is corrupt and was left untouched"), "{err}");
        assert_eq!(std::fs::read_to_string(&corrupt).unwrap(), "{\"plan\": 42");
    }
}

#[test]
fn a_bad_plan_is_a_usage_error_naming_stage_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("plan.toml");
    std::fs::write(&plan, "[[stages]]\nname = \"a\"\npercent = 10\nmin_bake = \"1d\"\nmin_async_samples = 1\n[[stages]]\nname = \"b\"\npercent = 5\nmin_bake = \"1d\"\nmin_async_samples = 1\n").unwrap();
    let state = dir.path().join("state.json");
    let out = upramp(&["rollout", "init", "--state", s(&state), "--plan", s(&plan)]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        text(&out.stderr).trim(),
        "upramp: error: plan stage 2 (`b`): field `percent`: 5% does not rise above the previous stage's 10%"
    );
    assert!(!state.exists());
}

fn metrics_server(body: String) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/metrics", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { break };
            let mut buf = [0u8; 4096];
            let mut request = Vec::new();
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let response = format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes());
        }
    });
    url
}

#[test]
fn run_ticks_against_scraped_metrics_and_writes_the_flags_file() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let flags = dir.path().join("flags.toml");
    let audit = dir.path().join("decisions.jsonl");
    assert!(upramp(&[
        "rollout",
        "init",
        "--state",
        s(&state),
        "--audit",
        s(&audit)
    ])
    .status
    .success());
    let url = metrics_server(
        "upramp_uploads_total{provider=\"kimi\",path=\"sync\",outcome=\"success\"} 100\n"
            .to_owned(),
    );
    let out = upramp(&[
        "rollout",
        "run",
        "--state",
        s(&state),
        "--flags-file",
        s(&flags),
        "--scrape",
        &url,
        "--interval",
        "10ms",
        "--max-ticks",
        "3",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lines: Vec<_> = text(&out.stdout).lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(
        lines[0].contains("advance stage 1/5 `baseline` 0% -> 0%: rollout started"),
        "{}",
        lines[0]
    );
    assert!(lines[1].contains("hold stage 1/5"), "{}", lines[1]);
    assert!(std::fs::read_to_string(&flags)
        .unwrap()
        .contains("rollout = 0"));
    assert_eq!(upramp_rollout::AuditLog::read(&audit).unwrap().len(), 3);
    let resumed: ControllerState = StateStore::new(&state).load().unwrap();
    assert_eq!(resumed.stage_index(), 0);

    // Bad arguments are usage errors.
    let out = upramp(&[
        "rollout",
        "run",
        "--state",
        s(&state),
        "--flags-file",
        s(&flags),
        "--scrape",
        &url,
        "--interval",
        "soon",
    ]);
    assert_eq!(out.status.code(), Some(2));
}

fn init(dir: &Path) -> std::path::PathBuf {
    let state = dir.join("state.json");
    assert!(upramp(&["rollout", "init", "--state", s(&state)])
        .status
        .success());
    state
}

#[test]
fn run_refuses_unusable_arguments_naming_the_value() {
    let dir = tempfile::tempdir().unwrap();
    let state = init(dir.path());
    let flags = dir.path().join("flags.toml");
    let bad_flags = dir.path().join("bad.toml");
    std::fs::write(&bad_flags, "[async_upload\nrollout = 1\n").unwrap();
    let url = metrics_server(String::new());
    for (scrape, flags_file, max_ticks, needle) in [
        ("not-a-url", &flags, "1", "not-a-url"),
        ("ftp://x/metrics", &flags, "1", "ftp://x/metrics"),
        (url.as_str(), &bad_flags, "1", "bad.toml"),
        (url.as_str(), &flags, "0", "'0'"),
    ] {
        let out = upramp(&[
            "rollout",
            "run",
            "--state",
            s(&state),
            "--flags-file",
            s(flags_file),
            "--scrape",
            scrape,
            "--interval",
            "10ms",
            "--max-ticks",
            max_ticks,
        ]);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{needle}: {}",
            text(&out.stderr)
        );
        assert!(text(&out.stderr).contains(needle), "{}", text(&out.stderr));
        assert!(
            out.stdout.is_empty(),
            "{needle}: ran a tick: {}",
            text(&out.stdout)
        );
    }
    assert_eq!(
        StateStore::new(&state).load().unwrap().phase.as_str(),
        "pending"
    );
}

#[test]
fn a_second_run_on_one_state_is_refused_naming_the_holders_pid() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let state = init(dir.path());
    let flags = dir.path().join("flags.toml");
    let url = metrics_server(String::new());
    let args = [
        "rollout",
        "run",
        "--state",
        s(&state),
        "--flags-file",
        s(&flags),
        "--scrape",
        &url,
        "--interval",
        "1h",
    ];
    let mut first = Command::new(env!("CARGO_BIN_EXE_upramp"))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Its first decision line means it holds the lock.
    let mut line = String::new();
    std::io::BufReader::new(first.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.contains("rollout started"), "{line}");
    let out = upramp(&args);
    first.kill().unwrap();
    first.wait().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains(&format!("pid {}", first.id())), "{err}");
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
}

#[test]
fn rollback_on_a_rolled_back_rollout_re_applies_zero() {
    let dir = tempfile::tempdir().unwrap();
    let state = init(dir.path());
    let flags = dir.path().join("flags.toml");
    for op in ["advance", "rollback"] {
        let out = upramp(&[
            "rollout",
            op,
            "--state",
            s(&state),
            "--reason",
            "test",
            "--flags-file",
            s(&flags),
        ]);
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    // The rollback could not be written (someone put the fleet back at 50%): re-apply it.
    std::fs::write(
        &flags,
        "# fleet\n[async_upload]\nenabled = true\nrollout = 50\n",
    )
    .unwrap();
    let out = upramp(&[
        "rollout",
        "rollback",
        "--state",
        s(&state),
        "--reason",
        "re-apply",
        "--flags-file",
        s(&flags),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        std::fs::read_to_string(&flags).unwrap(),
        "# fleet\n[async_upload]\nenabled = true\nrollout = 0\n"
    );
}

/// A `/metrics` server whose sync success counter grows by 500 per scrape.
fn growing_metrics_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/metrics", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for (n, stream) in listener.incoming().enumerate() {
            let Ok(mut stream) = stream else { break };
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let body = format!(
                "upramp_uploads_total{{provider=\"kimi\",path=\"sync\",outcome=\"success\"}} {}\n",
                n * 500
            );
            let response = format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes());
        }
    });
    url
}

fn flags_percent(flags: &Path) -> Option<String> {
    let text = std::fs::read_to_string(flags).ok()?;
    let table: toml::Table = text.parse().unwrap();
    Some(table["async_upload"]["rollout"].to_string())
}

#[test]
fn kill_9_at_seeded_random_moments_leaves_flags_state_and_audit_in_step() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let plan = dir.path().join("plan.toml");
    std::fs::write(
        &plan,
        "[[stages]]\nname = \"baseline\"\npercent = 0\nmin_bake = \"1s\"\nmin_async_samples = 0\n\n[[stages]]\nname = \"canary\"\npercent = 10\nmin_bake = \"1h\"\nmin_async_samples = 100\n",
    )
    .unwrap();
    assert!(
        upramp(&["rollout", "init", "--state", s(&state), "--plan", s(&plan)])
            .status
            .success()
    );
    let flags = dir.path().join("flags.toml");
    let url = growing_metrics_server();
    let args = |max_ticks: Option<&'static str>| {
        let mut v: Vec<String> = [
            "rollout",
            "run",
            "--state",
            s(&state),
            "--flags-file",
            s(&flags),
            "--scrape",
            &url,
            "--interval",
            "50ms",
            "--window",
            "1m",
        ]
        .iter()
        .map(|a| (*a).to_owned())
        .collect();
        if let Some(n) = max_ticks {
            v.extend(["--max-ticks".to_owned(), n.to_owned()]);
        }
        v
    };
    let mut seed: u64 = 0x5eed_0014;
    let mut held = std::collections::BTreeSet::new();
    for _ in 0..10 {
        let mut child = Command::new(env!("CARGO_BIN_EXE_upramp"))
            .args(args(None))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        // The kill moment is the test's input, not a wait for readiness.
        std::thread::sleep(Duration::from_millis(20 + (seed >> 33) % 600));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        if let Some(p) = flags_percent(&flags) {
            held.insert(p);
        }
    }
    // One more run reconciles within one tick.
    let out = Command::new(env!("CARGO_BIN_EXE_upramp"))
        .args(args(Some("1")))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stored = StateStore::new(&state).load().unwrap();
    assert_eq!(stored.applied_percent, Some(stored.percent));
    let in_file = flags_percent(&flags).unwrap();
    assert_eq!(format!("{in_file}%"), stored.percent.to_string());
    let audit = upramp_rollout::AuditLog::read(&dir.path().join("state.json.audit.jsonl")).unwrap();
    assert!(audit.windows(2).all(|w| w[0].generation < w[1].generation));
    for p in &held {
        assert!(
            audit
                .iter()
                .any(|r| r.percent.to_string() == format!("{p}%")),
            "the flags file held {p}% with no audit record"
        );
    }
    let temps: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(temps.is_empty(), "{temps:?}");
}
