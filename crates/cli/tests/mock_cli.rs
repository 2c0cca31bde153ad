//! `upramp mock` end to end: the real binary, a real upload, and the usage error for a bad spec.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

/// Kills the child even if an assertion fails first.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn mock_prints_its_base_url_first_and_accepts_an_upload() {
    let child = Command::new(env!("CARGO_BIN_EXE_upramp"))
        .args([
            "mock",
            "--provider",
            "kimi",
            "--api-key",
            "sk-test",
            "--faults",
            "latency:1ms",
            "--seed",
            "3",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut running = Running(child);
    let mut first_line = String::new();
    BufReader::new(running.0.stdout.take().unwrap())
        .read_line(&mut first_line)
        .unwrap();
    let base_url = first_line.trim();
    assert!(
        base_url.starts_with("http://127.0.0.1:") && base_url.ends_with("/v1"),
        "{first_line:?}"
    );

    let form = reqwest::blocking::multipart::Form::new()
        .text("purpose", "file-extract")
        .part(
            "file",
            reqwest::blocking::multipart::Part::bytes(b"hello mock".to_vec())
                .file_name("hello.txt"),
        );
    let response = reqwest::blocking::Client::new()
        .post(format!("{base_url}/files"))
        .bearer_auth("sk-test")
        .multipart(form)
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().unwrap();
    assert_eq!(body["bytes"], 10);
    assert_eq!(body["filename"], "hello.txt");
    assert_eq!(body["status"], "ok");

    let unauthorised = reqwest::blocking::Client::new()
        .get(format!("{base_url}/files"))
        .send()
        .unwrap();
    assert_eq!(unauthorised.status(), 401);
}

#[test]
fn a_malformed_fault_spec_is_a_one_line_usage_error() {
    let output = Command::new(env!("CARGO_BIN_EXE_upramp"))
        .args(["mock", "--provider", "glm", "--faults", "500:0.1,reset:2"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(output.stdout.is_empty());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(
        stderr,
        "upramp: error: --faults: fault item \"reset:2\": bad value \"2\": expected a probability from 0 to 1, e.g. 0.05\n"
    );
}

#[test]
fn an_unknown_provider_is_a_usage_error() {
    let output = Command::new(env!("CARGO_BIN_EXE_upramp"))
        .args(["mock", "--provider", "openai"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains("unknown provider \"openai\" for a stand-in (expected kimi or glm)"),
        "{stderr}"
    );
}

#[test]
fn an_address_in_use_names_the_reason_once() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let output = Command::new(env!("CARGO_BIN_EXE_upramp"))
        .args(["mock", "--provider", "glm", "--addr", &addr])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(output.stdout.is_empty());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(
        stderr,
        format!(
            "upramp: error: stand-in could not listen on {addr}: Address already in use (os error 98)\n"
        )
    );
}
