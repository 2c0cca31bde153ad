//! `upramp flags show` and `upramp flags eval` through the real binary.
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// The binary with an empty environment, so the developer's own variables never leak in.
fn upramp(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_upramp"));
    cmd.env_clear().args(args).envs(env.iter().copied());
    cmd
}

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    upramp(args, env).stdin(Stdio::null()).output().unwrap()
}

fn run_with_stdin(args: &[&str], env: &[(&str, &str)], input: &[u8]) -> Output {
    let mut child = upramp(args, env)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    output
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}

fn write_flags(dir: &Path, text: &str) -> String {
    let path = dir.join("flags.toml");
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[test]
fn show_prints_defaults_and_origins() {
    let output = run(&["flags", "show"], &[]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    insta::assert_snapshot!(stdout(&output));
}

#[test]
fn show_json_names_every_source() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_flags(
        dir.path(),
        "[async_upload]\nenabled = true\nrollout = \"10.5%\"\nsalt = \"s1\"\n",
    );
    let output = run(
        &["flags", "show", "--json", "--flags-file", &file],
        &[
            ("ASYNC_UPLOAD_ROLLOUT", "12.5"),
            ("ASYNC_UPLOAD_TIMEOUT_SECS", "9"),
        ],
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let text = stdout(&output).replace(&file, "[FILE]");
    let value: serde_json::Value = serde_json::from_str(&text).unwrap();
    insta::assert_json_snapshot!(value);
}

#[test]
fn show_reads_the_file_named_by_the_environment_and_the_config_alias() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_flags(dir.path(), "[async_upload]\nmax_retries = 7\n");
    for output in [
        run(&["flags", "show"], &[("UPRAMP_FLAGS_FILE", &file)]),
        run(&["flags", "show", "--config", &file], &[]),
    ] {
        assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
        let line = stdout(&output)
            .lines()
            .find(|l| l.starts_with("max_retries"))
            .unwrap()
            .to_owned();
        assert!(
            line.contains('7') && line.contains(&format!("file {file}")),
            "{line}"
        );
    }
}

/// Every bad value of the issue makes `flags show` exit 2 with the variable's name and value on one line.
#[test]
fn every_bad_env_value_makes_show_exit_2_naming_the_variable() {
    let cases: &[(&str, &[&str])] = &[
        (
            "ASYNC_UPLOAD_ROLLOUT",
            &["abc", "150", "-1", "1e3", "0x10", "NaN", "12.34567", ""],
        ),
        ("ASYNC_UPLOAD_ENABLED", &["abc", "2", "", "y"]),
        ("ASYNC_UPLOAD_FALLBACK", &["abc", "-1", ""]),
        (
            "ASYNC_UPLOAD_MAX_RETRIES",
            &["abc", "-1", "1e3", "0x10", ""],
        ),
        ("ASYNC_UPLOAD_TIMEOUT_SECS", &["abc", "-1", "NaN", "0", ""]),
    ];
    for (var, values) in cases {
        for value in *values {
            let output = run(&["flags", "show"], &[(var, value)]);
            let err = stderr(&output);
            assert_eq!(output.status.code(), Some(2), "{var}={value:?}: {err}");
            assert!(
                err.contains(var) && err.contains(&format!("{value:?}")),
                "{var}={value:?}: {err}"
            );
            assert_eq!(err.trim_end().lines().count(), 1, "{err}");
            assert!(stdout(&output).is_empty());
        }
    }
}

#[test]
fn a_bad_flags_file_exits_2_naming_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_flags(dir.path(), "[async_upload]\nrollout = 150\n");
    let output = run(&["flags", "show", "--flags-file", &file], &[]);
    assert_eq!(output.status.code(), Some(2));
    let err = stderr(&output);
    assert!(
        err.contains(&file) && err.contains("async_upload.rollout") && err.contains("150"),
        "{err}"
    );

    let file = write_flags(dir.path(), "[async_upload]\nenabld = true\n");
    let output = run(&["flags", "show", "--flags-file", &file], &[]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("async_upload.enabld"),
        "{}",
        stderr(&output)
    );

    let missing = dir.path().join("missing.toml").display().to_string();
    let output = run(&["flags", "show", "--flags-file", &missing], &[]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains(&missing));

    let output = run(&["flags", "show"], &[("UPRAMP_FLAGS_FILE", "")]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("UPRAMP_FLAGS_FILE"));
}

#[test]
fn eval_prints_key_bucket_and_path() {
    let output = run(
        &[
            "flags",
            "eval",
            "--rollout",
            "50",
            "tenant-1",
            "tenant-2",
            "tenant-42",
        ],
        &[],
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    insta::assert_snapshot!(stdout(&output));
}

#[test]
fn eval_json_lines_explain_the_decision() {
    let output = run(
        &[
            "flags",
            "eval",
            "--json",
            "--rollout",
            "100",
            "--salt",
            "s",
            "a",
            "b",
        ],
        &[],
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let lines: Vec<serde_json::Value> = stdout(&output)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    for (line, key) in lines.iter().zip(["a", "b"]) {
        assert_eq!(line["key"], key);
        assert_eq!(line["path"], "async");
        assert_eq!(line["reason"], "in_rollout");
        assert_eq!(line["bucket"], upramp_flags::bucket("s", key));
    }
}

#[test]
fn a_disabled_flag_sends_every_key_to_sync_unless_a_rollout_is_given() {
    let env = [
        ("ASYNC_UPLOAD_ENABLED", "false"),
        ("ASYNC_UPLOAD_ROLLOUT", "100"),
    ];
    let output = run(&["flags", "eval", "k1", "k2", "k3"], &env);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(
        stdout(&output).lines().all(|l| l.ends_with("\tsync")),
        "{}",
        stdout(&output)
    );

    let output = run(
        &["flags", "eval", "--rollout", "100", "k1", "k2", "k3"],
        &env,
    );
    assert!(
        stdout(&output).lines().all(|l| l.ends_with("\tasync")),
        "{}",
        stdout(&output)
    );
}

#[test]
fn eval_usage_errors_exit_2() {
    for (args, needle) in [
        (&["flags", "eval", "--rollout", "150", "k"][..], "150"),
        (&["flags", "eval", "--rollout", "abc", "k"][..], "abc"),
        (&["flags", "eval", "--rollout", "50"][..], "KEY"),
        (&["flags", "eval", "-", "k"][..], "stdin"),
    ] {
        let output = run(args, &[]);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            stderr(&output)
        );
        assert!(
            stderr(&output).contains(needle),
            "{args:?}: {}",
            stderr(&output)
        );
    }
    let output = run(&["flags", "eval", "k"], &[("ASYNC_UPLOAD_ROLLOUT", "0x10")]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("ASYNC_UPLOAD_ROLLOUT"));
}

#[test]
fn stdin_rejects_invalid_utf8_and_skips_blank_lines() {
    let output = run_with_stdin(
        &["flags", "eval", "--rollout", "10", "-"],
        &[],
        b"a\r\n\nb\n",
    );
    assert_eq!(output.status.code(), Some(0));
    let keys: Vec<String> = stdout(&output)
        .lines()
        .map(|l| l.split('\t').next().unwrap().to_owned())
        .collect();
    assert_eq!(keys, ["a", "b"]);

    let output = run_with_stdin(
        &["flags", "eval", "--rollout", "10", "-"],
        &[],
        b"ok\n\xff\xfe\n",
    );
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("line 2"), "{}", stderr(&output));
}

/// The acceptance check: 200,000 keys through `eval -` at 1, 10 and 50% land within 4 standard
/// errors of the target, the cohorts nest, and two runs agree.
#[test]
fn two_hundred_thousand_keys_through_stdin() {
    const KEYS: usize = 200_000;
    let input: String = (0..KEYS)
        .map(|i| format!("user-{i:07}-{:x}\n", i * 2_654_435_761))
        .collect();
    let mut cohorts: Vec<HashSet<String>> = Vec::new();
    for percent in ["1", "10", "50"] {
        let output = run_with_stdin(
            &["flags", "eval", "--rollout", percent, "-"],
            &[],
            input.as_bytes(),
        );
        assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
        let text = stdout(&output);
        let again = run_with_stdin(
            &["flags", "eval", "--rollout", percent, "-"],
            &[],
            input.as_bytes(),
        );
        assert_eq!(stdout(&again), text, "two runs disagree at {percent}%");

        let mut lines = 0;
        let mut inside = HashSet::new();
        for line in text.lines() {
            let mut fields = line.split('\t');
            let (key, bucket, path) = (
                fields.next().unwrap(),
                fields.next().unwrap(),
                fields.next().unwrap(),
            );
            assert!(bucket.parse::<u32>().unwrap() < 100_000);
            lines += 1;
            if path == "async" {
                inside.insert(key.to_owned());
            } else {
                assert_eq!(path, "sync");
            }
        }
        assert_eq!(lines, KEYS);
        let p: f64 = percent.parse::<f64>().unwrap() / 100.0;
        let se = (p * (1.0 - p) / KEYS as f64).sqrt();
        let share = inside.len() as f64 / KEYS as f64;
        assert!(
            (share - p).abs() <= 4.0 * se,
            "share {share} at {p} (se {se})"
        );
        cohorts.push(inside);
    }
    assert!(
        cohorts[0].is_subset(&cohorts[1]),
        "1% cohort is not inside the 10% cohort"
    );
    assert!(
        cohorts[1].is_subset(&cohorts[2]),
        "10% cohort is not inside the 50% cohort"
    );
}

/// A directory given as the flags file: the operating system's reason appears once.
#[test]
fn a_directory_as_flags_file_names_the_reason_once() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().display().to_string();
    let output = run(&["flags", "show", "--flags-file", &folder], &[]);
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        stderr(&output).replace(&folder, "<dir>"),
        "upramp: error: cannot read flags file <dir>: Is a directory (os error 21)\n"
    );
}
