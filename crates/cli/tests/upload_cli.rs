//! `upramp upload` through the real binary, against a stand-in running in this test process.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output};

use upramp_harness::{FaultPlan, Flavor, StandIn, StandInConfig};

const KEY: &str = "sk-test-Zq9-never-print-me";

/// A stand-in and the runtime serving it (dropped after the stand-in, field order).
struct Server {
    stand_in: StandIn,
    _runtime: tokio::runtime::Runtime,
}

fn server(flavor: Flavor, faults: &str) -> Server {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let stand_in = runtime
        .block_on(StandIn::start(
            StandInConfig::new(flavor)
                .with_api_key(KEY)
                .with_faults(FaultPlan::parse(faults).unwrap()),
        ))
        .unwrap();
    Server {
        stand_in,
        _runtime: runtime,
    }
}

/// `upramp upload` with a clean environment: only the key and what `envs` adds.
fn upload(server: &Server, args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_upramp"));
    command
        .arg("upload")
        .args(["--base-url", &server.stand_in.base_url()])
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("UPRAMP_TEST_KEY", KEY)
        .args(["--key-env", "UPRAMP_TEST_KEY"]);
    for (name, value) in envs {
        command.env(name, value);
    }
    command.output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn write(dir: &Path, name: &str, contents: &[u8]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path.display().to_string()
}

const ALL_ASYNC: &[(&str, &str)] = &[
    ("ASYNC_UPLOAD_ENABLED", "true"),
    ("ASYNC_UPLOAD_ROLLOUT", "100"),
];

#[test]
fn json_receipts_carry_the_id_at_top_level_and_match_the_stored_files() {
    let server = server(Flavor::Kimi, "");
    let dir = tempfile::tempdir().unwrap();
    let a = write(dir.path(), "a.txt", b"alpha alpha alpha");
    let b = write(dir.path(), "b.json", br#"{"beta": [1, 2, 3]}"#);
    let output = upload(
        &server,
        &[&a, &b, "--provider", "kimi", "--json", "--concurrency", "4"],
        ALL_ASYNC,
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    let stored = server.stand_in.stored_files();
    for line in &lines {
        let id = line["id"].as_str().unwrap();
        let file = stored.iter().find(|f| f.id == id).unwrap();
        assert_eq!(line["sha256"], file.sha256.as_str());
        assert_eq!(line["bytes"], file.bytes);
        assert_eq!(line["path"], "async");
        assert_eq!(line["attempts"], 1);
        assert!(line["duration_ms"].as_f64().unwrap() > 0.0);
        assert_eq!(line["file"]["id"], id);
    }
    assert_eq!(stored.len(), 2);
}

#[test]
fn human_receipts_name_file_id_path_and_attempts() {
    let server = server(Flavor::Glm, "");
    let dir = tempfile::tempdir().unwrap();
    let a = write(dir.path(), "table.csv", b"a,b\n1,2\n");
    // Flags default to disabled: the legacy sync path.
    let output = upload(&server, &[&a, "--provider", "glm"], &[]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    let id = &server.stand_in.stored_files()[0].id;
    assert_eq!(stdout.lines().count(), 1);
    assert!(
        stdout.starts_with(&format!("{a}: id={id} bytes=8 sha256=")),
        "{stdout}"
    );
    assert!(
        stdout.contains(" path=sync attempts=1 duration="),
        "{stdout}"
    );
}

#[test]
fn the_flags_file_routes_and_a_broken_async_path_falls_back() {
    let server = server(Flavor::Kimi, "503:1@async");
    let dir = tempfile::tempdir().unwrap();
    let flags = write(
        dir.path(),
        "flags.toml",
        b"[async_upload]\nenabled = true\nrollout = 100\nmax_retries = 1\nfallback = true\n",
    );
    let a = write(dir.path(), "a.md", b"# hello\n");
    let output = upload(
        &server,
        &[&a, "--provider", "kimi", "--json", "--flags-file", &flags],
        &[],
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    let line: serde_json::Value = serde_json::from_str(text(&output.stdout).trim()).unwrap();
    assert_eq!(line["path"], "sync_fallback");
    assert_eq!(line["fallback_reason"], "server_error");
    assert_eq!(line["attempts"], 3);
    assert_eq!(server.stand_in.stored_files().len(), 1);
}

#[test]
fn bad_files_each_get_one_line_and_the_good_ones_still_upload() {
    let server = server(Flavor::Glm, "");
    let dir = tempfile::tempdir().unwrap();
    let good = write(dir.path(), "good.txt", b"good");
    let empty = write(dir.path(), "empty.txt", b"");
    let missing = dir.path().join("missing.pdf").display().to_string();
    let directory = dir.path().display().to_string();
    let huge_path = dir.path().join("huge.pdf");
    std::fs::File::create(&huge_path)
        .unwrap()
        .set_len(51 * 1024 * 1024)
        .unwrap();
    let huge = huge_path.display().to_string();
    let output = upload(
        &server,
        &[
            &good,
            &empty,
            &missing,
            &directory,
            &huge,
            "--provider",
            "glm",
            "--concurrency",
            "1",
        ],
        &[],
    );
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        text(&output.stdout).lines().count(),
        1,
        "the good file has its receipt"
    );
    let stderr = text(&output.stderr).replace(&directory, "<dir>");
    let mut lines: Vec<&str> = stderr.lines().collect();
    lines.sort_unstable();
    insta::assert_snapshot!(lines.join("\n"));
    assert_eq!(server.stand_in.stored_files().len(), 1);
}

/// Extra arguments, extra environment, and the text the one-line error must contain.
type UsageCase = (
    &'static [&'static str],
    &'static [(&'static str, &'static str)],
    &'static str,
);

#[test]
fn usage_and_configuration_errors_exit_2() {
    let server = server(Flavor::Kimi, "");
    let dir = tempfile::tempdir().unwrap();
    let a = write(dir.path(), "a.txt", b"a");
    let cases: [UsageCase; 4] = [
        (&["--provider", "gemini"], &[], "--provider \"gemini\""),
        (
            &["--provider", "kimi", "--concurrency", "0"],
            &[],
            "--concurrency",
        ),
        (
            &["--provider", "kimi"],
            &[("ASYNC_UPLOAD_ROLLOUT", "150")],
            "ASYNC_UPLOAD_ROLLOUT",
        ),
        (
            &[
                "--provider",
                "kimi",
                "--flags-file",
                "/nonexistent/flags.toml",
            ],
            &[],
            "/nonexistent/flags.toml",
        ),
    ];
    for (args, envs, named) in cases {
        let mut all = vec![a.as_str()];
        all.extend_from_slice(args);
        let output = upload(&server, &all, envs);
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(named), "{args:?}: {stderr}");
    }
    let missing_key = Command::new(env!("CARGO_BIN_EXE_upramp"))
        .args([
            "upload",
            &a,
            "--provider",
            "kimi",
            "--key-env",
            "UPRAMP_NO_SUCH_KEY",
        ])
        .env_remove("UPRAMP_NO_SUCH_KEY")
        .output()
        .unwrap();
    assert_eq!(missing_key.status.code(), Some(2));
    assert!(text(&missing_key.stderr).contains("UPRAMP_NO_SUCH_KEY"));
    assert!(server.stand_in.stored_files().is_empty());
}

/// With every log level on and failures that print errors, the key appears nowhere.
#[test]
fn the_key_never_appears_in_any_output() {
    let server = server(Flavor::Kimi, "500:0.5,401:0.2");
    let dir = tempfile::tempdir().unwrap();
    let files: Vec<String> = (0..6)
        .map(|i| write(dir.path(), &format!("f{i}.txt"), b"payload"))
        .collect();
    let mut args: Vec<&str> = files.iter().map(String::as_str).collect();
    args.extend(["--provider", "kimi", "--json"]);
    let envs = [
        ("ASYNC_UPLOAD_ENABLED", "true"),
        ("ASYNC_UPLOAD_ROLLOUT", "50"),
        ("RUST_LOG", "trace"),
    ];
    let output = upload(&server, &args, &envs);
    let all = format!("{}{}", text(&output.stdout), text(&output.stderr));
    assert!(!all.is_empty());
    assert!(!all.contains(KEY), "the key leaked");
    assert!(!all.contains("never-print-me"), "part of the key leaked");
}
