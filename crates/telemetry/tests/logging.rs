//! Structured attempt logs and the subscriber setup.
#![allow(clippy::unwrap_used)]

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};

use tracing_subscriber::fmt::MakeWriter;
use upramp_telemetry::{
    build_subscriber, parse_log_filter, LogFormat, TelemetryError, TracingObserver,
};

use support::scenario;

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Buffer {
    type Writer = Buffer;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

fn capture(format: LogFormat, filter: &str) -> String {
    let buffer = Buffer::default();
    let subscriber = build_subscriber(
        format,
        parse_log_filter(filter).unwrap(),
        buffer.clone(),
        false,
    );
    tracing::subscriber::with_default(subscriber, || scenario::emit(&TracingObserver::new()));
    let bytes = buffer.0.lock().unwrap().clone();
    String::from_utf8(bytes).unwrap()
}

#[test]
fn json_lines_carry_the_attempt_fields() {
    let output = capture(LogFormat::Json, "info");
    let lines: Vec<serde_json::Value> = output
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    // The scenario makes 10 HTTP attempts; request legs are debug-only.
    assert_eq!(lines.len(), 10, "{output}");
    let first = &lines[0];
    assert_eq!(first["level"], "INFO");
    assert_eq!(first["target"], "upramp::upload");
    assert_eq!(first["provider"], "kimi");
    assert_eq!(first["path"], "async");
    assert_eq!(first["outcome"], "success");
    assert_eq!(first["bytes"], 1_200_000);
    assert_eq!(first["attempt"], 1);
    assert_eq!(first["duration_ms"], 850.0);
    let retry = &lines[2];
    assert_eq!(
        (retry["level"].as_str(), retry["attempt"].as_u64()),
        (Some("INFO"), Some(2))
    );
    assert_eq!(lines[1]["level"], "WARN");
    assert_eq!(lines[1]["outcome"], "server_error");
}

#[test]
fn debug_adds_request_legs_with_fallback_reason() {
    let output = capture(LogFormat::Json, "upramp::upload=debug");
    let legs: Vec<serde_json::Value> = output
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .filter(|line| line["level"] == "DEBUG")
        .collect();
    assert_eq!(legs.len(), 8);
    assert_eq!(legs[2]["fallback_reason"], "timeout");
    assert_eq!(legs[2]["attempts"], 2);
}

#[test]
fn human_lines_are_filtered_by_level() {
    let output = capture(LogFormat::Human, "warn");
    assert_eq!(output.lines().count(), 5, "{output}");
    assert!(output
        .lines()
        .all(|line| line.contains("WARN") && line.contains("upload attempt failed")));
    assert!(output.contains("outcome=\"timeout\""), "{output}");
    assert!(!output.contains('\u{1b}'), "no colour codes off a terminal");
}

#[test]
fn bad_filters_and_formats_are_named_in_errors() {
    let err = parse_log_filter("upramp=loud").unwrap_err();
    assert!(
        matches!(err, TelemetryError::InvalidLogFilter { ref value, .. } if value == "upramp=loud")
    );
    assert!(
        err.to_string()
            .starts_with("invalid log filter \"upramp=loud\": "),
        "{err}"
    );
    assert_eq!("json".parse::<LogFormat>().unwrap(), LogFormat::Json);
    assert_eq!(
        "xml".parse::<LogFormat>().unwrap_err().to_string(),
        "unknown log format \"xml\" (expected human or json)"
    );
}
