//! Child processes of a bench run: building the worker, running the stand-in server, and measuring one
//! command's peak memory and CPU from the OS.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use anyhow::{bail, Context};
use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::proto::{self, ReceiverReady, RusageReport, ServeReady, ServeSummary, KEY_ENV};

/// Linux reports `/proc/<pid>/stat` CPU times in `USER_HZ` ticks, which is 100 on every architecture
/// Linux supports (it is fixed ABI, unlike the kernel's internal `HZ`).
const USER_HZ: f64 = 100.0;

/// The `cargo` that runs this xtask, so nested builds use the same toolchain.
pub fn cargo() -> OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

/// The workspace root (the parent of `xtask/`).
pub fn workspace_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .map_or_else(|| manifest_dir.to_path_buf(), Path::to_path_buf)
}

/// Cargo's target directory for this workspace (honours `CARGO_TARGET_DIR`).
pub fn target_dir() -> anyhow::Result<PathBuf> {
    #[derive(Deserialize)]
    struct Metadata {
        target_directory: PathBuf,
    }
    let output = Command::new(cargo())
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(workspace_root())
        .stderr(Stdio::inherit())
        .output()
        .context("cannot run `cargo metadata`")?;
    if !output.status.success() {
        bail!("`cargo metadata` failed with {}", output.status);
    }
    let metadata: Metadata = serde_json::from_slice(&output.stdout)
        .context("`cargo metadata` printed no target_directory")?;
    Ok(metadata.target_directory)
}

/// Build `xtask/examples/bench_worker.rs` with the given cargo profile and return its executable.
pub fn build_worker(profile: &str) -> anyhow::Result<PathBuf> {
    build_executable(profile, "xtask", "--example", "bench_worker")
}

/// Build the `upramp` binary (package `upramp`, `crates/cli`) with the given cargo profile and return
/// its executable. Built on its own, not together with the worker, so cargo resolves its features
/// exactly as for a plain `cargo build -p upramp`.
pub fn build_cli(profile: &str) -> anyhow::Result<PathBuf> {
    build_executable(profile, "upramp", "--bin", "upramp")
}

/// `cargo build -p PACKAGE KIND NAME --profile PROFILE`, returning the executable cargo reports.
fn build_executable(
    profile: &str,
    package: &str,
    kind: &str,
    name: &str,
) -> anyhow::Result<PathBuf> {
    let output = Command::new(cargo())
        .args(["build", "-p", package, kind, name, "--profile", profile])
        .args(["--message-format", "json-render-diagnostics"])
        .current_dir(workspace_root())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("cannot run `cargo build` for {name}"))?;
    if !output.status.success() {
        bail!(
            "building {name} ({profile} profile) failed with {}",
            output.status
        );
    }
    executable_from_messages(&String::from_utf8_lossy(&output.stdout), name)
        .with_context(|| format!("`cargo build` reported no {name} executable"))
}

/// The `executable` of the artifact named `name` in cargo's JSON build messages.
pub fn executable_from_messages(messages: &str, name: &str) -> Option<PathBuf> {
    #[derive(Deserialize)]
    struct Message {
        reason: String,
        target: Option<Target>,
        executable: Option<PathBuf>,
    }
    #[derive(Deserialize)]
    struct Target {
        name: String,
    }
    messages
        .lines()
        .filter_map(|line| serde_json::from_str::<Message>(line).ok())
        .filter(|m| m.reason == "compiler-artifact")
        .filter(|m| m.target.as_ref().is_some_and(|t| t.name == name))
        .find_map(|m| m.executable)
}

/// The first line of `reader` that parses as `T`, skipping other lines.
fn read_json_line<T: DeserializeOwned>(reader: &mut impl BufRead, what: &str) -> anyhow::Result<T> {
    let mut line = String::new();
    loop {
        line.clear();
        if reader
            .read_line(&mut line)
            .with_context(|| format!("reading {what}"))?
            == 0
        {
            bail!("{what}: the process ended without reporting");
        }
        if let Ok(value) = serde_json::from_str(line.trim()) {
            return Ok(value);
        }
    }
}

/// A stand-in running in its own worker process, so its memory and CPU are not the client's.
pub struct StandInProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    ready: ServeReady,
    tcp_addr: Option<String>,
}

impl StandInProcess {
    /// Start a Kimi stand-in (`worker serve`) with the given added latency and wait until it listens.
    pub fn start(worker: &Path, key: &str, latency_ms: u64) -> anyhow::Result<Self> {
        Self::spawn(
            worker,
            key,
            &[
                "serve".to_owned(),
                "--latency-ms".to_owned(),
                latency_ms.to_string(),
            ],
        )
    }

    /// Start the contract-free streaming sink (`worker sink`) and wait until it listens.
    pub fn start_sink(worker: &Path, key: &str) -> anyhow::Result<Self> {
        Self::spawn(worker, key, &["sink".to_owned()])
    }

    /// Start the receiver that does no per-byte work (`worker discard`) and wait until it listens.
    pub fn start_discard(worker: &Path, key: &str) -> anyhow::Result<Self> {
        Self::spawn(worker, key, &["discard".to_owned()])
    }

    fn spawn(worker: &Path, key: &str, args: &[String]) -> anyhow::Result<Self> {
        let mut child = Command::new(worker)
            .args(args)
            .env(KEY_ENV, key)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("cannot start {} {}", worker.display(), args.join(" ")))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            let _ = child.kill();
            bail!("stand-in process has no pipes");
        };
        let mut stdout = BufReader::new(stdout);
        // A stand-in prints a `ServeReady`; a receiver the same fields and its raw TCP port.
        let ready = match read_json_line::<ReceiverReady>(&mut stdout, "stand-in start") {
            Ok(ready) => ready,
            Err(err) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(err);
            }
        };
        Ok(Self {
            child,
            stdin: Some(stdin),
            stdout,
            ready: ServeReady {
                base_url: ready.base_url,
                pid: ready.pid,
            },
            tcp_addr: ready.tcp_addr,
        })
    }

    /// The raw TCP port of a receiver (`sink`, `discard`), `None` for a stand-in.
    pub fn tcp_addr(&self) -> Option<&str> {
        self.tcp_addr.as_deref()
    }

    /// The stand-in's base URL.
    pub fn base_url(&self) -> &str {
        &self.ready.base_url
    }

    /// CPU seconds (user + system) the stand-in has used so far.
    pub fn cpu_secs(&self) -> anyhow::Result<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.ready.pid))
            .context("cannot read the stand-in's /proc stat")?;
        parse_stat_cpu_secs(&stat).context("the stand-in's /proc stat has no CPU times")
    }

    /// Peak resident set of the stand-in so far.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        std::fs::read_to_string(format!("/proc/{}/status", self.ready.pid))
            .ok()
            .and_then(|status| proto::parse_vmhwm_kib(&status))
    }

    /// Close its input, read its summary and wait for it to exit.
    pub fn stop(mut self) -> anyhow::Result<ServeSummary> {
        drop(self.stdin.take());
        let summary = read_json_line::<ServeSummary>(&mut self.stdout, "stand-in summary");
        let status = self.child.wait().context("waiting for the stand-in")?;
        let summary = summary?;
        if !status.success() {
            bail!("stand-in exited with {status}");
        }
        Ok(summary)
    }
}

impl Drop for StandInProcess {
    fn drop(&mut self) {
        // Reached with the child still running only when a scenario failed early.
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// User + system CPU seconds from the text of a `/proc/<pid>/stat` file.
pub fn parse_stat_cpu_secs(stat: &str) -> Option<f64> {
    // The command name (field 2) may contain spaces and parentheses: fields are counted after the
    // last ')'. utime and stime are fields 14 and 15, i.e. the 12th and 13th after it.
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / USER_HZ)
}

/// Environment changes for a measured command, on top of the orchestrator's own environment.
#[derive(Debug, Clone, Default)]
pub struct ChildEnv {
    /// Variables removed first (so a caller's shell cannot change what is measured).
    pub remove: Vec<String>,
    /// Variables then set.
    pub set: Vec<(String, String)>,
}

/// Run `program args...` as the only child of `worker rusage`, which reports its peak RSS and CPU
/// from `getrusage(RUSAGE_CHILDREN)`.
pub fn measure(
    worker: &Path,
    key: &str,
    program: &Path,
    args: &[String],
) -> anyhow::Result<RusageReport> {
    measure_with_env(worker, key, program, args, &ChildEnv::default())
}

/// [`measure`] with environment changes, which the measured command inherits through the worker.
pub fn measure_with_env(
    worker: &Path,
    key: &str,
    program: &Path,
    args: &[String],
    env: &ChildEnv,
) -> anyhow::Result<RusageReport> {
    let mut command = Command::new(worker);
    for name in &env.remove {
        command.env_remove(name);
    }
    let output = command
        .arg("rusage")
        .arg("--")
        .arg(program)
        .args(args)
        .env(KEY_ENV, key)
        .envs(env.set.iter().map(|(name, value)| (name, value)))
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("cannot start {} rusage", worker.display()))?;
    if !output.status.success() {
        bail!("`bench_worker rusage` failed with {}", output.status);
    }
    let report: RusageReport = serde_json::from_slice(&output.stdout)
        .context("`bench_worker rusage` printed no report")?;
    if report.exit_code != Some(0) {
        bail!(
            "`{} {}` exited with {}: {}",
            program.display(),
            args.first().map_or("", String::as_str),
            report
                .exit_code
                .map_or_else(|| "a signal".to_owned(), |c| c.to_string()),
            report.stderr_tail
        );
    }
    Ok(report)
}

/// The child's own JSON report from a measured run's captured stdout.
pub fn child_report<T: DeserializeOwned>(report: &RusageReport, what: &str) -> anyhow::Result<T> {
    read_json_line(&mut report.stdout.as_bytes(), what)
}

/// Run a worker subcommand directly (no measurement) and parse its one JSON report.
pub fn run_worker<T: DeserializeOwned>(
    worker: &Path,
    key: &str,
    args: &[String],
) -> anyhow::Result<T> {
    let output = Command::new(worker)
        .args(args)
        .env(KEY_ENV, key)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("cannot start {}", worker.display()))?;
    let what = format!("bench_worker {}", args.first().map_or("", String::as_str));
    if !output.status.success() {
        bail!("`{what}` failed with {}", output.status);
    }
    read_json_line(&mut output.stdout.as_slice(), &what)
}

/// Write `Authorization: Bearer KEY` to a header file for `curl -H @FILE`, so the key is not on
/// curl's command line (visible to every user through `ps`).
pub fn write_curl_header_file(path: &Path, key: &str) -> anyhow::Result<()> {
    let mut file =
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    writeln!(file, "Authorization: Bearer {key}")
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Whether `curl` runs on this machine.
pub fn curl_available() -> bool {
    Command::new("curl")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_counts_fields_after_the_command_name() {
        let stat = "4242 (bench (worker)) S 1 4242 4242 0 -1 4194560 1200 0 0 0 250 50 0 0 20 0 9 0 123 456789 2048 18446744073709551615";
        assert_eq!(parse_stat_cpu_secs(stat), Some(3.0));
        assert_eq!(parse_stat_cpu_secs("4242 (x) S 1"), None);
        assert_eq!(parse_stat_cpu_secs("no parenthesis"), None);
    }

    #[test]
    fn finds_the_named_executable_in_build_messages() {
        let messages = concat!(
            r#"{"reason":"compiler-artifact","target":{"name":"upramp_harness"},"executable":null}"#,
            "\n",
            r#"{"reason":"compiler-artifact","target":{"name":"bench_worker"},"executable":"/t/release/examples/bench_worker"}"#,
            "\n",
            r#"{"reason":"build-finished","success":true}"#,
            "\n"
        );
        assert_eq!(
            executable_from_messages(messages, "bench_worker"),
            Some(PathBuf::from("/t/release/examples/bench_worker"))
        );
        assert_eq!(executable_from_messages(messages, "other"), None);
    }

    #[test]
    fn json_lines_skip_noise_before_the_report() {
        let text = "starting\n{\"stored_files\":3,\"stored_bytes\":9}\n";
        let summary: ServeSummary = read_json_line(&mut text.as_bytes(), "summary").unwrap();
        assert_eq!(
            summary,
            ServeSummary {
                stored_files: 3,
                stored_bytes: 9
            }
        );
        let err = read_json_line::<ServeSummary>(&mut "noise\n".as_bytes(), "summary").unwrap_err();
        assert!(err.to_string().contains("summary"));
    }

    #[test]
    fn vmhwm_is_read_in_kib() {
        let status =
            "Name:\tbench_worker\nVmPeak:\t  20000 kB\nVmHWM:\t    7168 kB\nVmRSS:\t    7000 kB\n";
        assert_eq!(proto::parse_vmhwm_kib(status), Some(7168));
        assert_eq!(proto::parse_vmhwm_kib("Name:\tkthreadd\n"), None);
        assert_eq!(proto::parse_vmhwm_kib("VmHWM:\t  lots kB\n"), None);
        assert_eq!(proto::parse_vmhwm_kib("VmHWM:\t 7168 MB\n"), None);
    }
}
