//! What the release-built bench worker (`xtask/examples/bench_worker.rs`) prints and the orchestrator
//! reads: one JSON object per line on the worker's stdout.
//!
//! Both binaries use this one module through the `xtask` library, so the two sides cannot drift in
//! field names.

use serde::{Deserialize, Serialize};

/// Environment variable through which the orchestrator hands the stand-in's API key to its workers,
/// so the key never appears in a process's argument list.
pub const KEY_ENV: &str = "UPRAMP_BENCH_API_KEY";

/// Printed once by `bench_worker serve` when its stand-in is listening.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServeReady {
    /// Base URL of the stand-in, e.g. `http://127.0.0.1:40123/v1`.
    pub base_url: String,
    /// The server process's id, so the orchestrator can read its CPU time and peak memory.
    pub pid: u32,
}

/// Printed once by `bench_worker sink` and `bench_worker discard` when they listen: a
/// [`ServeReady`] (the orchestrator reads either through this) plus the raw TCP port.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReceiverReady {
    /// Base URL of the HTTP receiver.
    pub base_url: String,
    /// The receiver process's id.
    pub pid: u32,
    /// `host:port` of the raw TCP port (same per-byte work, no HTTP), if the process has one.
    #[serde(default)]
    pub tcp_addr: Option<String>,
}

/// Printed by `bench_worker hash`: the SHA-256 of a file computed alone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HashReport {
    /// Bytes hashed.
    pub bytes: u64,
    /// Lower-case hex digest.
    pub sha256: String,
    /// Seconds from opening the file to the digest.
    pub elapsed_secs: f64,
}

/// Printed by `bench_worker serve` after its standard input closes, just before it exits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServeSummary {
    /// Files the stand-in stored.
    pub stored_files: u64,
    /// Total bytes of the stored files.
    pub stored_bytes: u64,
}

/// Printed by `bench_worker generate`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerateReport {
    /// The files written, in order.
    pub files: Vec<std::path::PathBuf>,
}

/// Printed by `bench_worker upload` and `bench_worker idle`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UploadReport {
    /// Bytes the provider acknowledged (0 for the idle run).
    pub bytes: u64,
    /// Seconds from the start of the upload to the receipt (0 for the idle run).
    pub elapsed_secs: f64,
    /// The process's own peak resident set, read from `/proc/self/status` just before exiting.
    pub vmhwm_kib: Option<u64>,
}

/// Printed by `bench_worker batch`: many files, one path, closed loop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchReport {
    /// Uploads that returned a receipt.
    pub ok: u64,
    /// Uploads that returned an error.
    pub failed: u64,
    /// First error message, if any, to explain a failed run.
    pub first_error: Option<String>,
    /// Seconds from the first submission to the last completion.
    pub elapsed_secs: f64,
}

/// How one open-loop request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestEnd {
    /// A receipt arrived before the deadline.
    Ok,
    /// The caller's deadline passed first.
    Timeout,
    /// The uploader returned an error before the deadline.
    Error,
}

/// Printed by `bench_worker open-loop`: one entry per request, in arrival order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpenLoopReport {
    /// Latency in milliseconds from the request's scheduled arrival to its end, and how it ended.
    pub requests: Vec<(f64, RequestEnd)>,
    /// First error message, if any.
    pub first_error: Option<String>,
    /// Seconds from the first arrival until the last request ended.
    pub elapsed_secs: f64,
}

/// Printed by `bench_worker tcp-copy`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TcpCopyReport {
    /// Bytes the receiver's raw TCP port counted.
    pub bytes: u64,
    /// Seconds from connect to the listener seeing end of stream.
    pub elapsed_secs: f64,
}

/// Printed by `bench_worker rusage -- CMD...`: the one child's resource usage, from `getrusage`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RusageReport {
    /// The child's exit code (`None` if a signal ended it).
    pub exit_code: Option<i32>,
    /// Peak resident set of the child in KiB (`ru_maxrss` of `RUSAGE_CHILDREN`; exact, as there is
    /// exactly one child).
    pub max_rss_kib: u64,
    /// User CPU seconds of the child.
    pub user_secs: f64,
    /// System CPU seconds of the child.
    pub sys_secs: f64,
    /// Wall seconds from spawn to exit.
    pub wall_secs: f64,
    /// The child's standard output (the worker's own report, or curl's `-w` output).
    pub stdout: String,
    /// The last line of the child's standard error, to explain a failure.
    pub stderr_tail: String,
}

/// Peak resident set (`VmHWM`) in KiB from the text of a `/proc/<pid>/status` file.
///
/// Returns `None` when the line is missing (a kernel thread or a zombie has none) or malformed.
pub fn parse_vmhwm_kib(status: &str) -> Option<u64> {
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let mut fields = line["VmHWM:".len()..].split_whitespace();
    let value: u64 = fields.next()?.parse().ok()?;
    match fields.next() {
        Some("kB") => Some(value),
        _ => None,
    }
}
