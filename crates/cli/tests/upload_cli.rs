//! `upramp upload` through the real binary, against a stand-in running in this test process.

#![allow(clippy::unwrap_used)]

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

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

/// `upramp upload` against `base_url` with a clean environment: only the key and what `envs` adds.
fn upload_at(base_url: &str, args: &[&str], envs: &[(&str, &str)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_upramp"));
    command
        .arg("upload")
        .args(["--base-url", base_url])
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("UPRAMP_TEST_KEY", KEY)
        .args(["--key-env", "UPRAMP_TEST_KEY"]);
    for (name, value) in envs {
        command.env(name, value);
    }
    command
}

/// `upramp upload` against the stand-in.
fn upload_command(server: &Server, args: &[&str], envs: &[(&str, &str)]) -> Command {
    upload_at(&server.stand_in.base_url(), args, envs)
}

fn upload(server: &Server, args: &[&str], envs: &[(&str, &str)]) -> Output {
    upload_command(server, args, envs).output().unwrap()
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
    let cases: [UsageCase; 7] = [
        (&["--provider", "gemini"], &[], "--provider \"gemini\""),
        (
            &["--provider", "kimi", "--purpose", "bogus"],
            &[],
            "--purpose \"bogus\": not accepted by kimi (allowed: file-extract, image, video, batch)",
        ),
        (
            &["--provider", "glm", "--routing-key", ""],
            &[],
            "--routing-key \"\": must not be empty",
        ),
        (&["--provider", "glm", "--routing-key", "  "], &[], "--routing-key"),
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

/// Far above any run here; only reached if the binary hangs.
const HANG: Duration = Duration::from_secs(120);

/// Each line `reader` yields, as it arrives; the channel closes at end of input.
fn lines_of(reader: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(reader).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn send(child: &Child, signal: Signal) {
    kill(Pid::from_raw(child.id() as i32), signal).unwrap();
}

/// The next line matching `wanted`, with the lines seen before it kept in `seen`.
fn wait_for_line(lines: &Receiver<String>, seen: &mut Vec<String>, wanted: &str) -> String {
    loop {
        let line = lines
            .recv_timeout(HANG)
            .unwrap_or_else(|_| panic!("no line with {wanted:?}; got {seen:#?}"));
        if line.contains(wanted) {
            return line;
        }
        seen.push(line);
    }
}

/// Waits for the child to exit; kills it and fails if it hangs.
fn wait_for_exit(mut child: Child) -> ExitStatus {
    let pid = Pid::from_raw(child.id() as i32);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    match rx.recv_timeout(HANG) {
        Ok(status) => status.unwrap(),
        Err(_) => {
            let _ = kill(pid, Signal::SIGKILL);
            panic!("upramp upload did not exit within {HANG:?}");
        }
    }
}

/// Every output line sorted by the file it is about.
#[derive(Debug, Default)]
struct Lines {
    /// Lines per file path (receipts and per-file errors).
    per_file: HashMap<String, usize>,
    /// Receipt ids printed on stdout.
    stdout_ids: Vec<String>,
    /// Receipt ids printed on stderr (`upramp: receipt: ...`).
    stderr_ids: Vec<String>,
    /// Files reported as not started.
    not_started: usize,
    /// Files reported as cut off in flight, outcome unknown.
    cut_off: HashSet<String>,
    /// Error lines about a file that are neither of the above.
    failed: usize,
}

impl Lines {
    fn sort(files: &[String], stdout: &[String], stderr: &[String]) -> Self {
        let mut lines = Lines::default();
        let receipt = |json: &str, ids: &mut Vec<String>, per_file: &mut HashMap<String, usize>| {
            let value: serde_json::Value = serde_json::from_str(json).unwrap();
            ids.push(value["id"].as_str().unwrap().to_owned());
            *per_file
                .entry(value["source"].as_str().unwrap().to_owned())
                .or_default() += 1;
        };
        for line in stdout {
            receipt(line, &mut lines.stdout_ids, &mut lines.per_file);
        }
        for line in stderr {
            if let Some(json) = line.strip_prefix("upramp: receipt: ") {
                receipt(json, &mut lines.stderr_ids, &mut lines.per_file);
            } else if let Some(rest) = line.strip_prefix("upramp: error: ") {
                let Some(file) = files.iter().find(|f| rest.starts_with(&format!("{f}: "))) else {
                    continue;
                };
                *lines.per_file.entry(file.clone()).or_default() += 1;
                if rest.contains(": not started: ") {
                    lines.not_started += 1;
                } else if rest.contains(": interrupted in flight (") {
                    assert!(rest.ends_with("outcome unknown (the provider may hold the file)"));
                    lines.cut_off.insert(file.clone());
                } else {
                    lines.failed += 1;
                }
            }
        }
        lines
    }

    fn assert_one_line_per_file(&self, files: &[String]) {
        for file in files {
            assert_eq!(self.per_file.get(file), Some(&1), "{file}: {self:#?}");
        }
        assert_eq!(self.per_file.len(), files.len(), "{self:#?}");
    }
}

fn numbered_files(dir: &Path, count: usize) -> Vec<String> {
    (0..count)
        .map(|i| write(dir, &format!("f{i}.txt"), format!("payload {i}").as_bytes()))
        .collect()
}

fn spawn_upload(server: &Server, files: &[String], extra: &[&str]) -> Child {
    let mut args: Vec<&str> = files.iter().map(String::as_str).collect();
    args.extend(["--provider", "kimi", "--json"]);
    args.extend_from_slice(extra);
    upload_command(server, &args, ALL_ASYNC)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// SIGTERM mid-batch: no further upload starts, those in flight finish within the grace period,
/// every file gets one line, and every file the provider stored has its receipt. (Before, the
/// signal killed the process: files stored without a receipt, and no line for the rest.)
#[test]
fn sigterm_finishes_uploads_in_flight_and_reports_every_file() {
    let server = server(Flavor::Kimi, "latency:100ms");
    let dir = tempfile::tempdir().unwrap();
    let files = numbered_files(dir.path(), 40);
    let mut child = spawn_upload(&server, &files, &["--concurrency", "4"]);
    let stdout = lines_of(child.stdout.take().unwrap());
    let stderr = lines_of(child.stderr.take().unwrap());
    let first = stdout.recv_timeout(HANG).expect("a first receipt");
    send(&child, Signal::SIGTERM);
    let status = wait_for_exit(child);
    let out: Vec<String> = std::iter::once(first).chain(stdout.iter()).collect();
    let err: Vec<String> = stderr.iter().collect();
    assert_eq!(status.code(), Some(143), "{err:#?}");

    let lines = Lines::sort(&files, &out, &err);
    lines.assert_one_line_per_file(&files);
    assert!(
        lines.not_started > 0,
        "the signal came mid-batch: {lines:#?}"
    );
    assert!(
        lines.cut_off.is_empty(),
        "the grace period covers them: {lines:#?}"
    );
    assert_eq!(lines.failed, 0, "{err:#?}");
    let stored: HashSet<String> = server
        .stand_in
        .stored_files()
        .into_iter()
        .map(|f| f.id)
        .collect();
    let receipts: HashSet<String> = lines.stdout_ids.iter().cloned().collect();
    assert_eq!(
        stored, receipts,
        "every stored file has its receipt, and only those"
    );
    assert_eq!(receipts.len() + lines.not_started, files.len());
    let last = err.last().unwrap();
    assert!(
        last.starts_with("upramp: error: interrupted by SIGTERM: ")
            && last.ends_with(&format!(
                "{} uploaded, 0 failed, 0 outcome unknown, {} not started, of 40 file(s)",
                receipts.len(),
                lines.not_started
            )),
        "{last}"
    );
}

/// A second signal stops the uploads in flight at once: they are reported as outcome unknown, and
/// every stored file is either receipted or among them.
#[test]
fn a_second_signal_cuts_off_the_uploads_in_flight() {
    let server = server(Flavor::Kimi, "latency:1s");
    let dir = tempfile::tempdir().unwrap();
    let files = numbered_files(dir.path(), 20);
    let mut child = spawn_upload(&server, &files, &["--concurrency", "4", "--grace", "10m"]);
    let stdout = lines_of(child.stdout.take().unwrap());
    let stderr = lines_of(child.stderr.take().unwrap());
    let first = stdout.recv_timeout(HANG).expect("a first receipt");
    send(&child, Signal::SIGINT);
    let mut err = Vec::new();
    let notice = wait_for_line(&stderr, &mut err, "starting no more uploads");
    assert!(
        notice.starts_with("upramp: SIGINT: starting no more uploads; waiting up to 10m for the "),
        "{notice}"
    );
    send(&child, Signal::SIGTERM);
    let status = wait_for_exit(child);
    let out: Vec<String> = std::iter::once(first).chain(stdout.iter()).collect();
    err.extend(stderr.iter());
    assert_eq!(
        status.code(),
        Some(130),
        "the first signal decides: {err:#?}"
    );

    let lines = Lines::sort(&files, &out, &err);
    lines.assert_one_line_per_file(&files);
    // The window refills as each upload ends, so uploads were in flight when the signals came.
    assert!(!lines.cut_off.is_empty(), "{lines:#?}");
    for file in &lines.cut_off {
        assert!(err.iter().any(|l| l.starts_with(&format!(
            "upramp: error: {file}: interrupted in flight (SIGINT, then SIGTERM): outcome unknown"
        ))));
    }
    let receipts: HashSet<&String> = lines.stdout_ids.iter().collect();
    for stored in server.stand_in.stored_files() {
        let path = dir
            .path()
            .join(requested_name(&stored.filename))
            .display()
            .to_string();
        assert!(
            receipts.contains(&stored.id) || lines.cut_off.contains(&path),
            "{path} was stored as {} without a receipt or an outcome-unknown line",
            stored.id
        );
    }
}

/// The end of the grace period cuts off what is still in flight, like a second signal.
#[test]
fn the_end_of_the_grace_period_cuts_off_the_uploads_in_flight() {
    let server = server(Flavor::Kimi, "latency:1s");
    let dir = tempfile::tempdir().unwrap();
    let files = numbered_files(dir.path(), 8);
    let mut child = spawn_upload(&server, &files, &["--concurrency", "4", "--grace", "0s"]);
    let stdout = lines_of(child.stdout.take().unwrap());
    let stderr = lines_of(child.stderr.take().unwrap());
    let first = stdout.recv_timeout(HANG).expect("a first receipt");
    send(&child, Signal::SIGTERM);
    let status = wait_for_exit(child);
    let out: Vec<String> = std::iter::once(first).chain(stdout.iter()).collect();
    let err: Vec<String> = stderr.iter().collect();
    assert_eq!(status.code(), Some(143), "{err:#?}");
    let lines = Lines::sort(&files, &out, &err);
    lines.assert_one_line_per_file(&files);
    assert!(!lines.cut_off.is_empty(), "{lines:#?}");
    for file in &lines.cut_off {
        let expected = format!(
            "upramp: error: {file}: interrupted in flight (SIGTERM, then the 0s grace period ran out)"
        );
        assert!(err.iter().any(|l| l.starts_with(&expected)), "{err:#?}");
    }
}

/// `upramp upload --json | head -2`: once stdout is closed, no further upload starts, those in
/// flight finish, and their receipts go to stderr; exit 1. (Before, the first failed write ended the
/// run: files stored by the uploads in flight had no receipt anywhere.)
#[test]
fn a_closed_stdout_moves_the_remaining_receipts_to_stderr() {
    let server = server(Flavor::Kimi, "latency:200ms");
    let dir = tempfile::tempdir().unwrap();
    let files = numbered_files(dir.path(), 12);
    let mut child = spawn_upload(&server, &files, &["--concurrency", "2"]);
    let stderr = lines_of(child.stderr.take().unwrap());
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut head = Vec::new();
    for _ in 0..2 {
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        head.push(line.trim_end().to_owned());
    }
    // The next receipts are a whole latency away: nothing else has been written yet.
    assert!(stdout.buffer().is_empty());
    drop(stdout);
    let status = wait_for_exit(child);
    let err: Vec<String> = stderr.iter().collect();
    assert_eq!(status.code(), Some(1), "{err:#?}");

    let lines = Lines::sort(&files, &head, &err);
    lines.assert_one_line_per_file(&files);
    assert!(!lines.stderr_ids.is_empty(), "{err:#?}");
    assert!(lines.not_started > 0, "{lines:#?}");
    let stored: HashSet<String> = server
        .stand_in
        .stored_files()
        .into_iter()
        .map(|f| f.id)
        .collect();
    let receipts: HashSet<String> = lines
        .stdout_ids
        .iter()
        .chain(&lines.stderr_ids)
        .cloned()
        .collect();
    assert_eq!(
        stored, receipts,
        "every stored file has its receipt, and only those"
    );
    assert!(
        err.iter()
            .any(|l| l.starts_with("upramp: error: cannot write to stdout: ")),
        "{err:#?}"
    );
    let last = err.last().unwrap();
    assert!(
        last.starts_with("upramp: error: cannot write to stdout (")
            && last.contains(&format!(
                "{} receipt(s) printed on stderr instead",
                lines.stderr_ids.len()
            )),
        "{last}"
    );
}

/// A refused connection names the address, on the sync and on the async path.
#[test]
fn a_refused_connection_names_the_address() {
    let dir = tempfile::tempdir().unwrap();
    let a = write(dir.path(), "a.txt", b"a");
    let quiet = [("RUST_LOG", "error"), ("ASYNC_UPLOAD_MAX_RETRIES", "0")];
    let sync: Vec<(&str, &str)> = quiet.to_vec();
    let mut async_only = quiet.to_vec();
    async_only.extend([
        ("ASYNC_UPLOAD_ENABLED", "true"),
        ("ASYNC_UPLOAD_ROLLOUT", "100"),
        ("ASYNC_UPLOAD_FALLBACK", "false"),
    ]);
    let mut report = Vec::new();
    for envs in [sync, async_only] {
        let output = upload_at("http://127.0.0.1:1/v1", &[&a, "--provider", "kimi"], &envs)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(1));
        report.push(text(&output.stderr).replace(&a, "<file>"));
    }
    insta::assert_snapshot!(report.join(""));
}

/// The operating system's reason appears once, not once per layer of the error.
#[test]
fn os_errors_are_printed_once() {
    let server = server(Flavor::Kimi, "");
    let dir = tempfile::tempdir().unwrap();
    let a = write(dir.path(), "a.txt", b"a");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_addr = taken.local_addr().unwrap().to_string();
    let missing = dir.path().join("missing.toml").display().to_string();
    let folder = dir.path().display().to_string();
    let cases: [&[&str]; 3] = [
        &["--flags-file", &missing],
        &["--flags-file", &folder],
        &["--metrics-addr", &taken_addr],
    ];
    let mut report = Vec::new();
    for extra in cases {
        let mut args = vec![a.as_str(), "--provider", "kimi"];
        args.extend_from_slice(extra);
        let output = upload(&server, &args, &[]);
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert_eq!(stderr.matches("os error").count(), 1, "{stderr}");
        report.push(
            stderr
                .replace(&folder, "<dir>")
                .replace(&taken_addr, "<addr>"),
        );
    }
    insta::assert_snapshot!(report.join(""));
    assert!(server.stand_in.stored_files().is_empty());
}

/// The name a file was uploaded under, without the uploader's per-request marker
/// (`f5.u3ee225088af3b6bc.txt` -> `f5.txt`).
fn requested_name(stored: &str) -> String {
    let is_marker = |part: &&str| {
        part.len() == 17
            && part.starts_with('u')
            && part[1..].bytes().all(|b| b.is_ascii_hexdigit())
    };
    stored
        .split('.')
        .filter(|part| !is_marker(part))
        .collect::<Vec<_>>()
        .join(".")
}
