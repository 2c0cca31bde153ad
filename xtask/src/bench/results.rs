//! The results of one bench run: the model written to `results.json`, the goal and claim checks derived
//! from it, and the table printed on stdout. Everything here is pure, so it is unit tested.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::machine::Machine;

/// Version of the `results.json` layout; bump it when a field changes meaning.
///
/// 2: `cli_throughput` (scenario 2b) and the `skipped` status of a scenario left out by `--only`.
/// 3: `large_upload` per receiver (`receivers`: the no-work receiver and the sink), each with its
/// rounds, and `sha256_alone`.
/// 4: `cli_throughput` in rounds: `speedup_rounds`, with `async_run` and `sync_run` the fastest.
pub const SCHEMA_VERSION: u32 = 4;

const MIB: f64 = 1024.0 * 1024.0;

/// Everything one `cargo xtask bench` run measured, with the machine it ran on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchResults {
    /// Layout version of this document.
    pub schema_version: u32,
    /// `full` or `quick`.
    pub mode: Mode,
    /// When the run started, UTC, RFC 3339.
    pub started_at_utc: String,
    /// Wall seconds of the whole run, builds included.
    pub wall_secs: f64,
    /// The measuring machine.
    pub machine: Machine,
    /// Cargo profile the measured worker processes were built with (`release` or `dev`).
    pub worker_profile: String,
    /// Scenario 1: peak RSS of one upload per size and path.
    pub memory: Scenario<MemoryResults>,
    /// Scenario 2: many small files with added latency, async against sync, through the library.
    pub throughput: Scenario<ThroughputResults>,
    /// Scenario 2b: the same kind of batch through the release `upramp upload` command, per path.
    pub cli_throughput: Scenario<CliThroughputResults>,
    /// Scenario 3: one large upload against curl and a raw TCP copy.
    pub large_upload: Scenario<LargeUploadResults>,
    /// Scenario 4: open-loop arrivals above the sync path's capacity, with a deadline.
    pub latency: Scenario<LatencyResults>,
    /// Scenario 5a: the criterion flag-evaluation bench.
    pub flag_eval: Scenario<FlagEvalResults>,
    /// Scenario 5b: the wall time of `cargo xtask validate`.
    pub validate: Scenario<ValidateResults>,
    /// The project's goals, judged on the figures above (empty in quick mode).
    pub goals: Vec<Check>,
    /// The legacy system's unmeasured claims, next to what we measured (empty in quick mode).
    pub legacy_claims: Vec<Check>,
}

/// How big a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// The sizes the goals are stated for.
    Full,
    /// Every scenario at a small size: a smoke run that judges no speed.
    Quick,
}

/// A scenario either measured something, failed to run, or was not selected; a failure is recorded,
/// never a number.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Scenario<T> {
    /// The scenario ran; its figures.
    Measured(T),
    /// The scenario could not run; why.
    Failed {
        /// One line naming what failed.
        error: String,
    },
    /// The scenario was left out of this run by `--only`.
    Skipped,
}

impl<T> Scenario<T> {
    /// The figures, if the scenario ran.
    pub fn measured(&self) -> Option<&T> {
        match self {
            Self::Measured(value) => Some(value),
            Self::Failed { .. } | Self::Skipped => None,
        }
    }

    /// Whether the scenario was selected and could not run.
    pub fn failed(&self) -> bool {
        matches!(self, Self::Failed { .. })
    }

    /// Record an error as a failed scenario.
    pub fn from_result(result: anyhow::Result<T>) -> Self {
        match result {
            Ok(value) => Self::Measured(value),
            Err(err) => Self::Failed {
                error: format!("{err:#}").replace('\n', " "),
            },
        }
    }
}

/// Scenario 1 figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemoryResults {
    /// Peak RSS of the same worker binary that builds the uploader and exits without uploading.
    pub idle_rss_kib: u64,
    /// Whether `curl` was found, so its column is meaningful.
    pub curl_available: bool,
    /// One row per file size, smallest first.
    pub rows: Vec<MemoryRow>,
}

/// Peak RSS of one upload of one file size, per path, in KiB (`ru_maxrss` of the child).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemoryRow {
    /// Size of the uploaded file.
    pub file_bytes: u64,
    /// Async (streaming) path.
    pub async_rss_kib: u64,
    /// Sync (legacy, buffered) path.
    pub sync_rss_kib: u64,
    /// `curl -F file=@...` to the same stand-in.
    pub curl_rss_kib: Option<u64>,
}

/// Scenario 2 figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThroughputResults {
    /// Number of files.
    pub files: u64,
    /// Size of each file.
    pub file_bytes: u64,
    /// Latency the stand-in added to every request.
    pub added_latency_ms: u64,
    /// Async path's concurrency limit.
    pub async_concurrency: usize,
    /// Sync path's concurrency (the legacy one at a time).
    pub sync_concurrency: usize,
    /// Wall seconds for all files on the async path.
    pub async_secs: f64,
    /// Wall seconds for all files on the sync path.
    pub sync_secs: f64,
    /// `sync_secs / async_secs`.
    pub speedup: f64,
}

/// Scenario 2b figures: `upramp upload` over the same files once per path, each command timed whole
/// (process start to exit), against a stand-in in its own process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CliThroughputResults {
    /// The command line, without the file list, the base URL and the flag environment.
    pub command: String,
    /// Number of files on the command line.
    pub files: u64,
    /// Size of each file.
    pub file_bytes: u64,
    /// Latency the stand-in added to every request.
    pub added_latency_ms: u64,
    /// `--concurrency` (async uploads in flight; the CLI's sync path stays one at a time).
    pub concurrency: usize,
    /// The fastest run with `ASYNC_UPLOAD_ROLLOUT=100`: every file on the async path.
    pub async_run: CliRun,
    /// The fastest run with `ASYNC_UPLOAD_ROLLOUT=0`: every file on the sync path.
    pub sync_run: CliRun,
    /// `sync_run.wall_secs / async_run.wall_secs`.
    pub speedup: f64,
    /// Sync wall / async wall of each round, the two run back to back (the goal holds in each).
    pub speedup_rounds: Vec<f64>,
}

impl CliThroughputResults {
    /// The lowest speedup of any round (the one the goal is judged on).
    pub fn worst_round(&self) -> f64 {
        self.speedup_rounds
            .iter()
            .copied()
            .reduce(f64::min)
            .unwrap_or(self.speedup)
    }
}

/// One timed `upramp upload` command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CliRun {
    /// Wall seconds of the whole process, spawn to exit.
    pub wall_secs: f64,
    /// CPU seconds (user + system) of the process.
    pub cpu_secs: f64,
    /// Peak RSS of the process.
    pub peak_rss_kib: u64,
    /// HTTP attempts over all receipts (equal to the file count when nothing was retried).
    pub attempts: u64,
}

/// One transfer of the large file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transfer {
    /// Wall seconds of the whole process, spawn to exit.
    pub wall_secs: f64,
    /// File size over wall time.
    pub mib_per_sec: f64,
    /// CPU seconds (user + system) of the sending process.
    pub client_cpu_secs: f64,
    /// CPU seconds of the receiving stand-in during this transfer, when a stand-in received it.
    pub standin_cpu_secs: Option<f64>,
    /// Peak RSS of the sending process.
    pub client_rss_kib: u64,
}

/// Scenario 3 figures: one file sent to each receiver, by each sender, in interleaved rounds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LargeUploadResults {
    /// Size of the file.
    pub file_bytes: u64,
    /// One entry per receiver: [`NO_WORK_RECEIVER`] first, then [`SINK_RECEIVER`].
    pub receivers: Vec<ReceiverTransfers>,
    /// The SHA-256 of the same file computed alone (no transport), fastest round: the hashing
    /// cost the async path cannot avoid.
    pub sha256_alone: HashAlone,
    /// CPU seconds of the hash alone in every round, in order (the spread).
    pub sha256_alone_cpu_rounds: Vec<f64>,
}

/// The receiver that reads and drops each body: no per-byte work.
pub const NO_WORK_RECEIVER: &str = "no-work";
/// The bench sink: multipart parse and SHA-256 of every byte, as the stand-ins do.
pub const SINK_RECEIVER: &str = "sink";

/// The transfers to one receiver.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReceiverTransfers {
    /// [`NO_WORK_RECEIVER`] or [`SINK_RECEIVER`].
    pub receiver: String,
    /// The async path, fastest round.
    pub async_path: Transfer,
    /// `curl -F`, fastest round.
    pub curl: Option<Transfer>,
    /// The same bytes over plain loopback TCP into the receiver's raw port (same per-byte work,
    /// no HTTP), fastest round.
    pub tcp_copy: Transfer,
    /// Async throughput as a multiple of curl's (`curl wall / async wall`, fastest rounds).
    pub async_vs_curl: Option<f64>,
    /// Async throughput as a multiple of the raw copy's (`tcp wall / async wall`, fastest rounds).
    pub async_vs_tcp: f64,
    /// `curl wall / async wall` of each round, the two measured back to back (the spread).
    pub async_vs_curl_rounds: Vec<f64>,
    /// Peak RSS of the receiver process after the transfers (it must stream, so this stays small).
    pub receiver_peak_rss_kib: Option<u64>,
}

/// The SHA-256 of a file computed alone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HashAlone {
    /// Wall seconds of the process.
    pub wall_secs: f64,
    /// CPU seconds (user + system) of the process.
    pub cpu_secs: f64,
}

impl LargeUploadResults {
    /// The transfers to `receiver`, if it was measured.
    pub fn receiver(&self, receiver: &str) -> Option<&ReceiverTransfers> {
        self.receivers.iter().find(|r| r.receiver == receiver)
    }
}

/// Scenario 4 figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatencyResults {
    /// Arrival rate, requests per second.
    pub rate_per_sec: u64,
    /// Seconds of arrivals.
    pub duration_secs: u64,
    /// Size of each file.
    pub file_bytes: u64,
    /// Latency the stand-in added to every request.
    pub added_latency_ms: u64,
    /// The caller's deadline per request.
    pub timeout_ms: u64,
    /// One entry per path.
    pub paths: Vec<PathLatency>,
}

/// Latency and timeouts of one path under open-loop load.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PathLatency {
    /// `async` or `sync`.
    pub path: String,
    /// Requests that arrived.
    pub requests: u64,
    /// Requests that got a receipt in time.
    pub ok: u64,
    /// Requests whose deadline passed.
    pub timeouts: u64,
    /// Requests that failed with an error before the deadline.
    pub errors: u64,
    /// Median latency over all requests; a timed-out request counts as the deadline.
    pub p50_ms: f64,
    /// 99th percentile latency over all requests; a timed-out request counts as the deadline.
    pub p99_ms: f64,
    /// `timeouts / requests`.
    pub timeout_rate: f64,
    /// First error message, if any.
    pub first_error: Option<String>,
}

/// Scenario 5a figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlagEvalResults {
    /// One entry per criterion benchmark found.
    pub benchmarks: Vec<CriterionMedian>,
}

/// Median of one criterion benchmark.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CriterionMedian {
    /// Benchmark id (its directory under `target/criterion`).
    pub name: String,
    /// Median time per iteration, nanoseconds.
    pub median_ns: f64,
}

/// Scenario 5b figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValidateResults {
    /// The command that was timed.
    pub command: String,
    /// Its wall seconds.
    pub wall_secs: f64,
    /// Its exit code (`None` if a signal ended it).
    pub exit_code: Option<i32>,
}

/// A goal or claim next to the measured figure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Check {
    /// What is claimed or required.
    pub statement: String,
    /// What we measured, in words and numbers.
    pub measured: String,
    /// Whether the measurement meets it; `None` when the figure could not be measured.
    pub met: Option<bool>,
}

/// `time` as an RFC 3339 UTC timestamp with second precision; the calendar arithmetic is the rollout
/// crate's, so one implementation serves both.
pub fn utc_timestamp(time: SystemTime) -> String {
    let secs = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let whole_seconds = UNIX_EPOCH + std::time::Duration::from_secs(secs);
    upramp_rollout::timefmt::format_timestamp(whole_seconds).replace(".000Z", "Z")
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn size_label(bytes: u64) -> String {
    if bytes >= 1_000_000 && bytes % 1_000_000 == 0 {
        format!("{} MB", bytes / 1_000_000)
    } else if bytes % 1024 == 0 {
        format!("{} KiB", bytes / 1024)
    } else {
        format!("{bytes} B")
    }
}

fn reduction(smaller: f64, larger: f64) -> f64 {
    if larger > 0.0 {
        1.0 - smaller / larger
    } else {
        0.0
    }
}

/// How much the async path's peak RSS may grow from the smallest to the largest file and still count
/// as flat: a quarter of the 16 MiB budget, far below the 99 MB the file grows by.
pub const FLAT_TOLERANCE_KIB: u64 = 4 * 1024;

/// Issue 5's goal for `upramp upload`: the async path at least this many times faster than the sync
/// path on the same files.
pub const CLI_SPEEDUP_GOAL: f64 = 20.0;

/// Judge the project's goals on the measured figures. A figure that was not measured gives `met: None`.
pub fn judge_goals(results: &BenchResults) -> Vec<Check> {
    let mut checks = Vec::new();
    let memory = results.memory.measured();
    let largest = memory.and_then(|m| m.rows.last());
    let smallest = memory.and_then(|m| m.rows.first());

    let max_async = memory.and_then(|m| m.rows.iter().map(|r| r.async_rss_kib).max());
    checks.push(Check {
        statement: "async peak RSS at most 16 MiB at every size".to_owned(),
        measured: max_async.map_or_else(not_measured, |kib| format!("max {:.1} MiB", mib(kib))),
        met: max_async.map(|kib| kib <= 16 * 1024),
    });

    let idle = memory.map(|m| m.idle_rss_kib);
    let above_idle = max_async.zip(idle).map(|(a, i)| a.saturating_sub(i));
    checks.push(Check {
        statement: "async peak RSS at most 16 MiB above the idle process".to_owned(),
        measured: above_idle.map_or_else(not_measured, |kib| {
            format!("max {:.1} MiB above idle", mib(kib))
        }),
        met: above_idle.map(|kib| kib <= 16 * 1024),
    });

    let growth = smallest
        .zip(largest)
        .map(|(s, l)| (l.async_rss_kib as i64 - s.async_rss_kib as i64, s, l));
    checks.push(Check {
        statement: format!(
            "async peak RSS flat in file size (grows at most {} MiB)",
            FLAT_TOLERANCE_KIB / 1024
        ),
        measured: growth.map_or_else(not_measured, |(g, s, l)| {
            format!(
                "{:+.1} MiB from {} to {}",
                g as f64 / 1024.0,
                size_label(s.file_bytes),
                size_label(l.file_bytes)
            )
        }),
        met: growth.map(|(g, _, _)| g <= FLAT_TOLERANCE_KIB as i64),
    });

    checks.push(Check {
        statement: "async peak RSS at least 90% below sync (largest file)".to_owned(),
        measured: largest.map_or_else(not_measured, |row| {
            format!(
                "{:.1}% below at {}",
                100.0 * reduction(row.async_rss_kib as f64, row.sync_rss_kib as f64),
                size_label(row.file_bytes)
            )
        }),
        met: largest.map(|row| reduction(row.async_rss_kib as f64, row.sync_rss_kib as f64) >= 0.9),
    });

    checks.push(Check {
        statement: "sync peak RSS at least the file size (the baseline really buffers)".to_owned(),
        measured: largest.map_or_else(not_measured, |row| {
            format!(
                "{:.1} MiB for a {:.1} MiB file",
                mib(row.sync_rss_kib),
                row.file_bytes as f64 / MIB
            )
        }),
        met: largest.map(|row| row.sync_rss_kib * 1024 >= row.file_bytes),
    });

    let throughput = results.throughput.measured();
    checks.push(Check {
        statement: "throughput at least 20x sync (many files, added latency)".to_owned(),
        measured: throughput.map_or_else(not_measured, |t| format!("{:.1}x", t.speedup)),
        met: throughput.map(|t| t.speedup >= 20.0),
    });

    let cli = results.cli_throughput.measured();
    checks.push(Check {
        statement: format!(
            "`upramp upload` async at least {CLI_SPEEDUP_GOAL:.0}x sync in every round (many files, added latency)"
        ),
        measured: cli.map_or_else(not_measured, |c| {
            format!(
                "{:.1}x at worst (rounds {})",
                c.worst_round(),
                ratio_list(&c.speedup_rounds, 1)
            )
        }),
        met: cli.map(|c| c.worst_round() >= CLI_SPEEDUP_GOAL),
    });

    let large = results.large_upload.measured();
    let vs_curl = |receiver: &str| {
        large.and_then(|l| {
            l.receiver(receiver)
                .and_then(|r| r.async_vs_curl.map(|ratio| (ratio, l.file_bytes)))
        })
    };
    let sink = vs_curl(SINK_RECEIVER);
    checks.push(Check {
        statement: "single large upload at least 0.9x curl (bench sink)".to_owned(),
        measured: sink.map_or_else(not_measured, |(ratio, bytes)| {
            format!("{ratio:.2}x curl on {}", size_label(bytes))
        }),
        met: sink.map(|(ratio, _)| ratio >= 0.9),
    });
    let no_work = vs_curl(NO_WORK_RECEIVER);
    checks.push(Check {
        statement: "single large upload at least 0.95x curl (no-work receiver)".to_owned(),
        measured: no_work.map_or_else(not_measured, |(ratio, bytes)| {
            format!("{ratio:.2}x curl on {}", size_label(bytes))
        }),
        met: no_work.map(|(ratio, _)| ratio >= 0.95),
    });
    // One stream's SHA-256 is sequential, so a sender that hashes every byte cannot finish before
    // the hash alone does: that is the bound the async path can be held to on any host.
    let hash_bound = large.and_then(|l| {
        let r = l.receiver(NO_WORK_RECEIVER)?;
        Some((l.sha256_alone.cpu_secs, r.async_path.wall_secs))
    });
    checks.push(Check {
        statement: "single large upload at least 0.95x the speed of its SHA-256 alone".to_owned(),
        measured: hash_bound.map_or_else(not_measured, |(hash, upload)| {
            format!(
                "{:.2}x ({hash:.2} s hash CPU / {upload:.2} s upload)",
                hash / upload.max(1e-9)
            )
        }),
        met: hash_bound.map(|(hash, upload)| hash / upload.max(1e-9) >= 0.95),
    });
    let cpu = large.and_then(|l| {
        let r = l.receiver(NO_WORK_RECEIVER)?;
        let curl = r.curl.as_ref()?;
        Some((
            r.async_path.client_cpu_secs,
            curl.client_cpu_secs,
            l.sha256_alone.cpu_secs,
        ))
    });
    checks.push(Check {
        statement: "large upload client CPU at most curl's + the SHA-256 alone".to_owned(),
        measured: cpu.map_or_else(not_measured, |(async_cpu, curl, hash)| {
            format!(
                "{async_cpu:.2} s vs {curl:.2} + {hash:.2} = {:.2} s",
                curl + hash
            )
        }),
        met: cpu.map(|(async_cpu, curl, hash)| async_cpu <= curl + hash),
    });
    checks
}

/// Put the legacy system's claims next to our measurements. `met` says whether our figure is at least
/// as good as the claim's lower bound.
pub fn judge_legacy_claims(results: &BenchResults) -> Vec<Check> {
    let mut checks = Vec::new();
    let largest = results.memory.measured().and_then(|m| m.rows.last());
    checks.push(Check {
        statement: "80-90% less memory".to_owned(),
        measured: largest.map_or_else(not_measured, |row| {
            format!(
                "{:.1}% less peak RSS at {}",
                100.0 * reduction(row.async_rss_kib as f64, row.sync_rss_kib as f64),
                size_label(row.file_bytes)
            )
        }),
        met: largest.map(|row| reduction(row.async_rss_kib as f64, row.sync_rss_kib as f64) >= 0.8),
    });

    let throughput = results.throughput.measured();
    checks.push(Check {
        statement: "5-10x throughput".to_owned(),
        measured: throughput.map_or_else(not_measured, |t| format!("{:.1}x", t.speedup)),
        met: throughput.map(|t| t.speedup >= 5.0),
    });

    let by_path = |name: &str| {
        results
            .latency
            .measured()
            .and_then(|l| l.paths.iter().find(|p| p.path == name))
    };
    let pair = by_path("async").zip(by_path("sync"));
    checks.push(Check {
        statement: "30-50% lower latency".to_owned(),
        measured: pair.map_or_else(not_measured, |(a, s)| {
            format!(
                "p50 {:.0}% lower ({:.0} vs {:.0} ms), p99 {:.0}% lower ({:.0} vs {:.0} ms)",
                100.0 * reduction(a.p50_ms, s.p50_ms),
                a.p50_ms,
                s.p50_ms,
                100.0 * reduction(a.p99_ms, s.p99_ms),
                a.p99_ms,
                s.p99_ms
            )
        }),
        met: pair.map(|(a, s)| reduction(a.p50_ms, s.p50_ms) >= 0.3),
    });

    checks.push(Check {
        statement: "95% fewer timeouts".to_owned(),
        measured: pair.map_or_else(not_measured, |(a, s)| {
            if s.timeouts == 0 {
                format!(
                    "no sync timeouts to compare ({} async, {} sync)",
                    a.timeouts, s.timeouts
                )
            } else {
                format!(
                    "{:.1}% fewer ({} of {} async vs {} of {} sync)",
                    100.0 * reduction(a.timeouts as f64, s.timeouts as f64),
                    a.timeouts,
                    a.requests,
                    s.timeouts,
                    s.requests
                )
            }
        }),
        met: pair.and_then(|(a, s)| {
            (s.timeouts > 0).then(|| reduction(a.timeouts as f64, s.timeouts as f64) >= 0.95)
        }),
    });
    checks
}

fn not_measured() -> String {
    "not measured".to_owned()
}

fn row(cells: &[&str]) -> Vec<String> {
    cells.iter().map(|c| (*c).to_owned()).collect()
}

/// Per-round ratios as `a, b, c`, each with `decimals` decimals.
fn ratio_list(rounds: &[f64], decimals: usize) -> String {
    let text: Vec<String> = rounds.iter().map(|x| format!("{x:.decimals$}")).collect();
    text.join(", ")
}

fn met_label(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => "met",
        Some(false) => "MISSED",
        None => "n/a",
    }
}

/// The human-readable table printed at the end of a run.
pub fn render_table(results: &BenchResults) -> String {
    let mut out = String::new();
    let m = &results.machine;
    let _ = writeln!(
        out,
        "upramp bench ({} mode, {} workers) at {}: {} cores ({}), {:.1} GiB, kernel {}, {:.0} s",
        match results.mode {
            Mode::Full => "full",
            Mode::Quick => "quick",
        },
        results.worker_profile,
        results.started_at_utc,
        m.cores,
        m.cpu_model,
        m.mem_total_kib as f64 / (1024.0 * 1024.0),
        m.kernel,
        results.wall_secs
    );
    out.push('\n');

    let mut rows = vec![row(&[
        "scenario", "figure", "async", "sync", "curl", "tcp copy",
    ])];
    let failed = |rows: &mut Vec<Vec<String>>, name: &str, error: &str| {
        rows.push(vec![name.to_owned(), format!("FAILED: {error}")]);
    };
    let skipped = |rows: &mut Vec<Vec<String>>, name: &str| {
        rows.push(vec![
            name.to_owned(),
            "skipped (not selected by --only)".to_owned(),
        ]);
    };
    match &results.memory {
        Scenario::Measured(mem) => {
            rows.push(vec![
                "memory".to_owned(),
                "idle worker peak RSS".to_owned(),
                format!("{:.1} MiB", mib(mem.idle_rss_kib)),
            ]);
            for r in &mem.rows {
                rows.push(vec![
                    "memory".to_owned(),
                    format!("peak RSS, {}", size_label(r.file_bytes)),
                    format!("{:.1} MiB", mib(r.async_rss_kib)),
                    format!("{:.1} MiB", mib(r.sync_rss_kib)),
                    r.curl_rss_kib
                        .map_or_else(|| "-".to_owned(), |k| format!("{:.1} MiB", mib(k))),
                ]);
            }
        }
        Scenario::Failed { error } => failed(&mut rows, "memory", error),
        Scenario::Skipped => skipped(&mut rows, "memory"),
    }
    match &results.throughput {
        Scenario::Measured(t) => {
            rows.push(vec![
                "throughput".to_owned(),
                format!(
                    "{} x {}, +{} ms, c={} vs {}",
                    t.files,
                    size_label(t.file_bytes),
                    t.added_latency_ms,
                    t.async_concurrency,
                    t.sync_concurrency
                ),
                format!("{:.2} s", t.async_secs),
                format!("{:.2} s", t.sync_secs),
            ]);
            rows.push(vec![
                "throughput".to_owned(),
                "speedup (sync / async time)".to_owned(),
                format!("{:.1}x", t.speedup),
            ]);
        }
        Scenario::Failed { error } => failed(&mut rows, "throughput", error),
        Scenario::Skipped => skipped(&mut rows, "throughput"),
    }
    match &results.cli_throughput {
        Scenario::Measured(c) => {
            rows.push(vec![
                "cli".to_owned(),
                format!(
                    "`upramp upload` {} x {}, +{} ms, --concurrency {}",
                    c.files,
                    size_label(c.file_bytes),
                    c.added_latency_ms,
                    c.concurrency
                ),
                format!("{:.2} s", c.async_run.wall_secs),
                format!("{:.2} s", c.sync_run.wall_secs),
            ]);
            rows.push(vec![
                "cli".to_owned(),
                "speedup (sync / async wall time)".to_owned(),
                format!(
                    "{:.1}x (rounds {})",
                    c.speedup,
                    ratio_list(&c.speedup_rounds, 1)
                ),
            ]);
        }
        Scenario::Failed { error } => failed(&mut rows, "cli", error),
        Scenario::Skipped => skipped(&mut rows, "cli"),
    }
    match &results.large_upload {
        Scenario::Measured(l) => {
            let rate = |t: &Transfer| format!("{:.0} MiB/s", t.mib_per_sec);
            let cpu = |t: &Transfer| format!("{:.2} s", t.client_cpu_secs);
            let receiver_cpu = |t: &Transfer| {
                t.standin_cpu_secs
                    .map_or_else(|| "-".to_owned(), |c| format!("{c:.2} s"))
            };
            let dash = || "-".to_owned();
            for r in &l.receivers {
                let to = format!("to the {} receiver", r.receiver);
                rows.push(vec![
                    "large".to_owned(),
                    format!("one {} upload {to}", size_label(l.file_bytes)),
                    rate(&r.async_path),
                    dash(),
                    r.curl.as_ref().map_or_else(dash, rate),
                    rate(&r.tcp_copy),
                ]);
                let spread = if r.async_vs_curl_rounds.is_empty() {
                    String::new()
                } else {
                    format!(" (rounds {})", ratio_list(&r.async_vs_curl_rounds, 2))
                };
                rows.push(vec![
                    "large".to_owned(),
                    format!("async as a multiple of, {to}"),
                    dash(),
                    dash(),
                    r.async_vs_curl
                        .map_or_else(dash, |x| format!("{x:.2}x{spread}")),
                    format!("{:.2}x", r.async_vs_tcp),
                ]);
                if r.receiver == NO_WORK_RECEIVER {
                    // A sender that hashes every byte on one core cannot finish before the hash
                    // alone does: the best async/curl ratio this host allows.
                    let ceiling = r.curl.as_ref().map(|c| {
                        format!("{:.2}x", c.wall_secs / l.sha256_alone.cpu_secs.max(1e-9))
                    });
                    rows.push(vec![
                        "large".to_owned(),
                        "ceiling: curl wall / SHA-256 alone CPU".to_owned(),
                        dash(),
                        dash(),
                        ceiling.unwrap_or_else(dash),
                    ]);
                }
                rows.push(vec![
                    "large".to_owned(),
                    format!("sender CPU, {to}"),
                    cpu(&r.async_path),
                    dash(),
                    r.curl.as_ref().map_or_else(dash, cpu),
                    cpu(&r.tcp_copy),
                ]);
                rows.push(vec![
                    "large".to_owned(),
                    format!("receiver CPU, {to}"),
                    receiver_cpu(&r.async_path),
                    dash(),
                    r.curl.as_ref().map_or_else(dash, receiver_cpu),
                    receiver_cpu(&r.tcp_copy),
                ]);
            }
            rows.push(vec![
                "large".to_owned(),
                format!(
                    "SHA-256 of the {} file alone, CPU (wall)",
                    size_label(l.file_bytes)
                ),
                format!(
                    "{:.2} s ({:.2} s)",
                    l.sha256_alone.cpu_secs, l.sha256_alone.wall_secs
                ),
            ]);
        }
        Scenario::Failed { error } => failed(&mut rows, "large", error),
        Scenario::Skipped => skipped(&mut rows, "large"),
    }
    match &results.latency {
        Scenario::Measured(l) => {
            let path = |name: &str| l.paths.iter().find(|p| p.path == name);
            let cell = |p: Option<&PathLatency>, f: &dyn Fn(&PathLatency) -> String| {
                p.map_or_else(|| "-".to_owned(), f)
            };
            let (a, s) = (path("async"), path("sync"));
            let title = format!(
                "{}/s x {} s of {}, +{} ms, deadline {} ms",
                l.rate_per_sec,
                l.duration_secs,
                size_label(l.file_bytes),
                l.added_latency_ms,
                l.timeout_ms
            );
            rows.push(vec!["latency".to_owned(), title]);
            let p50 = |p: &PathLatency| format!("{:.0} ms", p.p50_ms);
            let p99 = |p: &PathLatency| format!("{:.0} ms", p.p99_ms);
            let timeouts = |p: &PathLatency| {
                format!(
                    "{:.1}% ({}/{})",
                    100.0 * p.timeout_rate,
                    p.timeouts,
                    p.requests
                )
            };
            rows.push(vec![
                "latency".to_owned(),
                "p50".to_owned(),
                cell(a, &p50),
                cell(s, &p50),
            ]);
            rows.push(vec![
                "latency".to_owned(),
                "p99".to_owned(),
                cell(a, &p99),
                cell(s, &p99),
            ]);
            rows.push(vec![
                "latency".to_owned(),
                "timeouts".to_owned(),
                cell(a, &timeouts),
                cell(s, &timeouts),
            ]);
        }
        Scenario::Failed { error } => failed(&mut rows, "latency", error),
        Scenario::Skipped => skipped(&mut rows, "latency"),
    }
    match &results.flag_eval {
        Scenario::Measured(f) => {
            for b in &f.benchmarks {
                rows.push(vec![
                    "flags".to_owned(),
                    format!("criterion median, {}", b.name),
                    format!("{:.1} ns", b.median_ns),
                ]);
            }
        }
        Scenario::Failed { error } => failed(&mut rows, "flags", error),
        Scenario::Skipped => skipped(&mut rows, "flags"),
    }
    match &results.validate {
        Scenario::Measured(v) => rows.push(vec![
            "validate".to_owned(),
            format!(
                "`{}` wall time (exit {})",
                v.command,
                v.exit_code
                    .map_or_else(|| "by signal".to_owned(), |c| c.to_string())
            ),
            format!("{:.1} s", v.wall_secs),
        ]),
        Scenario::Failed { error } => failed(&mut rows, "validate", error),
        Scenario::Skipped => skipped(&mut rows, "validate"),
    }
    out.push_str(&upramp_validate::table::columns(&rows));

    for (title, checks) in [
        ("goal", &results.goals),
        ("legacy claim", &results.legacy_claims),
    ] {
        if checks.is_empty() {
            continue;
        }
        out.push('\n');
        let mut rows = vec![row(&[title, "measured", "verdict"])];
        for check in checks {
            rows.push(vec![
                check.statement.clone(),
                check.measured.clone(),
                met_label(check.met).to_owned(),
            ]);
        }
        out.push_str(&upramp_validate::table::columns(&rows));
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A complete, plausible run with fixed numbers, so the snapshots pin the layout.
    pub(crate) fn sample() -> BenchResults {
        let mut results = BenchResults {
            schema_version: SCHEMA_VERSION,
            mode: Mode::Full,
            started_at_utc: "2026-05-01T10:00:00Z".to_owned(),
            wall_secs: 312.5,
            machine: Machine {
                cores: 2,
                cpu_model: "AMD EPYC".to_owned(),
                mem_total_kib: 24_683_656,
                kernel: "6.18.44".to_owned(),
            },
            worker_profile: "release".to_owned(),
            memory: Scenario::Measured(MemoryResults {
                idle_rss_kib: 7_000,
                curl_available: true,
                rows: vec![
                    MemoryRow {
                        file_bytes: 1_000_000,
                        async_rss_kib: 9_000,
                        sync_rss_kib: 11_000,
                        curl_rss_kib: Some(6_000),
                    },
                    MemoryRow {
                        file_bytes: 100_000_000,
                        async_rss_kib: 9_500,
                        sync_rss_kib: 205_000,
                        curl_rss_kib: Some(6_100),
                    },
                ],
            }),
            throughput: Scenario::Measured(ThroughputResults {
                files: 200,
                file_bytes: 1_000_000,
                added_latency_ms: 50,
                async_concurrency: 64,
                sync_concurrency: 1,
                async_secs: 0.6,
                sync_secs: 12.0,
                speedup: 20.0,
            }),
            cli_throughput: Scenario::Measured(CliThroughputResults {
                command: "upramp upload --provider kimi --key-env UPRAMP_BENCH_API_KEY --concurrency 64 --json"
                    .to_owned(),
                files: 100,
                file_bytes: 1_000_000,
                added_latency_ms: 50,
                concurrency: 64,
                async_run: CliRun {
                    wall_secs: 0.25,
                    cpu_secs: 0.3,
                    peak_rss_kib: 21_000,
                    attempts: 100,
                },
                sync_run: CliRun {
                    wall_secs: 5.6,
                    cpu_secs: 0.5,
                    peak_rss_kib: 40_000,
                    attempts: 100,
                },
                speedup: 22.4,
                speedup_rounds: vec![22.4, 27.7, 21.0],
            }),
            large_upload: Scenario::Measured(LargeUploadResults {
                file_bytes: 500_000_000,
                receivers: vec![
                    ReceiverTransfers {
                        receiver: NO_WORK_RECEIVER.to_owned(),
                        async_path: Transfer {
                            wall_secs: 0.30,
                            mib_per_sec: 1589.5,
                            client_cpu_secs: 0.42,
                            standin_cpu_secs: Some(0.1),
                            client_rss_kib: 9_800,
                        },
                        curl: Some(Transfer {
                            wall_secs: 0.29,
                            mib_per_sec: 1644.3,
                            client_cpu_secs: 0.15,
                            standin_cpu_secs: Some(0.1),
                            client_rss_kib: 6_000,
                        }),
                        tcp_copy: Transfer {
                            wall_secs: 0.25,
                            mib_per_sec: 1907.3,
                            client_cpu_secs: 0.12,
                            standin_cpu_secs: Some(0.08),
                            client_rss_kib: 4_000,
                        },
                        async_vs_curl: Some(0.966),
                        async_vs_tcp: 0.833,
                        async_vs_curl_rounds: vec![0.95, 0.97],
                        receiver_peak_rss_kib: Some(9_000),
                    },
                    ReceiverTransfers {
                        receiver: SINK_RECEIVER.to_owned(),
                        async_path: Transfer {
                            wall_secs: 2.0,
                            mib_per_sec: 238.4,
                            client_cpu_secs: 1.8,
                            standin_cpu_secs: Some(1.5),
                            client_rss_kib: 9_800,
                        },
                        curl: Some(Transfer {
                            wall_secs: 1.9,
                            mib_per_sec: 251.0,
                            client_cpu_secs: 0.4,
                            standin_cpu_secs: Some(1.5),
                            client_rss_kib: 6_000,
                        }),
                        tcp_copy: Transfer {
                            wall_secs: 0.5,
                            mib_per_sec: 953.7,
                            client_cpu_secs: 0.3,
                            standin_cpu_secs: Some(0.4),
                            client_rss_kib: 4_000,
                        },
                        async_vs_curl: Some(0.95),
                        async_vs_tcp: 0.25,
                        async_vs_curl_rounds: vec![0.95, 0.93],
                        receiver_peak_rss_kib: Some(12_000),
                    },
                ],
                sha256_alone: HashAlone {
                    wall_secs: 0.3,
                    cpu_secs: 0.29,
                },
                sha256_alone_cpu_rounds: vec![0.29, 0.3],
            }),
            latency: Scenario::Measured(LatencyResults {
                rate_per_sec: 40,
                duration_secs: 10,
                file_bytes: 262_144,
                added_latency_ms: 50,
                timeout_ms: 2_000,
                paths: vec![
                    PathLatency {
                        path: "async".to_owned(),
                        requests: 400,
                        ok: 400,
                        timeouts: 0,
                        errors: 0,
                        p50_ms: 55.0,
                        p99_ms: 70.0,
                        timeout_rate: 0.0,
                        first_error: None,
                    },
                    PathLatency {
                        path: "sync".to_owned(),
                        requests: 400,
                        ok: 180,
                        timeouts: 220,
                        errors: 0,
                        p50_ms: 2_000.0,
                        p99_ms: 2_000.0,
                        timeout_rate: 0.55,
                        first_error: None,
                    },
                ],
            }),
            flag_eval: Scenario::Measured(FlagEvalResults {
                benchmarks: vec![CriterionMedian {
                    name: "evaluate".to_owned(),
                    median_ns: 21.5,
                }],
            }),
            validate: Scenario::Failed {
                error: "`cargo xtask validate` could not start".to_owned(),
            },
            goals: Vec::new(),
            legacy_claims: Vec::new(),
        };
        results.goals = judge_goals(&results);
        results.legacy_claims = judge_legacy_claims(&results);
        results
    }

    #[test]
    fn results_json_layout_is_stable() {
        insta::assert_json_snapshot!(sample());
    }

    #[test]
    fn results_round_trip_through_json() {
        let results = sample();
        let text = serde_json::to_string(&results).unwrap();
        let back: BenchResults = serde_json::from_str(&text).unwrap();
        assert_eq!(back, results);
    }

    #[test]
    fn table_layout_is_stable() {
        insta::assert_snapshot!(render_table(&sample()));
    }

    #[test]
    fn goals_judge_each_figure() {
        let results = sample();
        let verdicts: Vec<Option<bool>> = results.goals.iter().map(|c| c.met).collect();
        // 9.5 MiB max, 2.5 MiB above idle, +0.5 MiB growth, 95% below sync, sync >= file,
        // 20x, CLI 21x at worst, 0.95x curl (sink), 0.97x curl (no work), 0.97x the hash alone,
        // 0.42 s <= 0.15 + 0.29 s.
        assert_eq!(verdicts, vec![Some(true); 11]);
        assert_eq!(results.goals[10].measured, "0.42 s vs 0.15 + 0.29 = 0.44 s");
        assert_eq!(
            results.goals[9].measured,
            "0.97x (0.29 s hash CPU / 0.30 s upload)"
        );
        assert_eq!(
            results.goals[6].measured,
            "21.0x at worst (rounds 22.4, 27.7, 21.0)"
        );
    }

    #[test]
    fn unmeasured_figures_are_not_judged() {
        let mut results = sample();
        results.memory = Scenario::Failed {
            error: "no stand-in".to_owned(),
        };
        results.throughput = Scenario::Failed {
            error: "no stand-in".to_owned(),
        };
        results.cli_throughput = Scenario::Skipped;
        let goals = judge_goals(&results);
        assert!(goals[..7].iter().all(|c| c.met.is_none()));
        assert!(goals[..7].iter().all(|c| c.measured == "not measured"));
        assert!(goals[7..].iter().all(|c| c.met == Some(true)));
    }

    #[test]
    fn missed_goals_are_reported_as_missed() {
        let mut results = sample();
        if let Scenario::Measured(t) = &mut results.throughput {
            t.speedup = 12.0;
        }
        let throughput_goal = &judge_goals(&results)[5];
        assert_eq!(throughput_goal.met, Some(false));
        assert_eq!(throughput_goal.measured, "12.0x");
        assert!(render_table(&{
            let mut r = results.clone();
            r.goals = judge_goals(&r);
            r
        })
        .contains("MISSED"));
    }

    #[test]
    fn large_upload_goals_judge_the_no_work_receiver() {
        let mut results = sample();
        if let Scenario::Measured(l) = &mut results.large_upload {
            l.receivers[0].async_vs_curl = Some(0.9);
            l.receivers[0].async_path.client_cpu_secs = 0.5;
        }
        let goals = judge_goals(&results);
        assert_eq!(goals[7].met, Some(true), "the sink's ratio is unchanged");
        assert_eq!(goals[8].met, Some(false));
        assert_eq!(goals[8].measured, "0.90x curl on 500 MB");
        assert_eq!(goals[9].met, Some(true), "the hash bound is unchanged");
        assert_eq!(goals[10].met, Some(false));
    }

    #[test]
    fn an_upload_slower_than_its_hash_allows_misses_the_hash_bound() {
        let mut results = sample();
        if let Scenario::Measured(l) = &mut results.large_upload {
            // 0.29 s of hashing in 0.31 s is 0.94x: just below the bound.
            l.receivers[0].async_path.wall_secs = 0.31;
        }
        let hash_goal = &judge_goals(&results)[9];
        assert_eq!(hash_goal.met, Some(false));
        assert_eq!(
            hash_goal.measured,
            "0.94x (0.29 s hash CPU / 0.31 s upload)"
        );
    }

    #[test]
    fn a_cli_round_below_twenty_is_missed_even_when_the_fastest_runs_are_not() {
        let mut results = sample();
        if let Scenario::Measured(c) = &mut results.cli_throughput {
            c.speedup_rounds = vec![25.0, 19.9, 30.0];
        }
        let cli_goal = &judge_goals(&results)[6];
        assert!(cli_goal
            .statement
            .starts_with("`upramp upload` async at least 20x sync in every round"));
        assert_eq!(cli_goal.met, Some(false));
        assert_eq!(
            cli_goal.measured,
            "19.9x at worst (rounds 25.0, 19.9, 30.0)"
        );
    }

    #[test]
    fn skipped_scenarios_are_shown_and_are_not_failures() {
        let mut results = sample();
        results.memory = Scenario::Skipped;
        assert!(!results.memory.failed());
        assert!(results.memory.measured().is_none());
        assert!(results.validate.failed());
        let table = render_table(&results);
        assert!(table.contains("memory      skipped (not selected by --only)"));
        let json = serde_json::to_value(&results).unwrap();
        assert_eq!(json["memory"], serde_json::json!({ "status": "skipped" }));
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(utc_timestamp(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let leap_day = UNIX_EPOCH + std::time::Duration::from_secs(951_782_400 + 3_723);
        assert_eq!(utc_timestamp(leap_day), "2000-02-29T01:02:03Z");
    }

    #[test]
    fn sizes_are_labelled_in_their_natural_unit() {
        assert_eq!(size_label(100_000_000), "100 MB");
        assert_eq!(size_label(262_144), "256 KiB");
        assert_eq!(size_label(1_500), "1500 B");
    }
}
