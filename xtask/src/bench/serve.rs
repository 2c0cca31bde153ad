//! The `serve` scenario: the `upramp serve` gateway in front of a stand-in, side by side in one run.
//!
//! - Memory: one large upload (100 MB in a full run) sent by `curl -F` through a fresh gateway per
//!   path; the gateway's peak RSS is its `VmHWM` from `/proc`, read before it is stopped. The async
//!   path must stay within [`ASYNC_RSS_GOAL_KIB`]; the sync (legacy) path really buffers the file,
//!   so its peak must be at least the file's size.
//! - Throughput: 100 x 1 MB sent by one `curl --parallel --parallel-max 64` (64 concurrent
//!   clients) through the gateway, with +50 ms latency at the stand-in, once with the flag routing
//!   every upload async and once sync, against the direct `upramp upload --concurrency 64` of the
//!   same files. "Sync through the gateway" is the gateway with its defaults (`--concurrency 64`,
//!   `--sync-concurrency 1`) and the flag at 0%: each upload buffered whole and sent by the blocking
//!   client, one at a time, as the legacy service did; the clients are the same 64.
//!
//! The batches run in [`ROUNDS`] interleaved rounds, fastest kept; each gateway serves an
//! unmeasured warm-up batch first (see [`batches`]). Every run checks what it measured: each curl transfer answered 200 and the stand-in stored
//! exactly the files sent. Figures go to stdout and to `serve.json` next to `results.json`.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{bail, ensure, Context};
use serde::Serialize;

use super::cli;
use super::process::{self, measure, measure_with_env, StandInProcess};
use super::proto::{self, KEY_ENV};
use super::results::{Mode, Scenario};
use super::{check_stored, generate, path_arg, s, Bench, Plan, BENCH_KEY};
use upramp_flags::Route;

/// The async path's gateway peak RSS goal for the large upload (issue 15): 32 MiB.
pub const ASYNC_RSS_GOAL_KIB: u64 = 32 * 1024;
/// Async through the gateway against sync through the gateway, wall time (issue 15).
pub const SPEEDUP_GOAL: f64 = 10.0;
/// Gateway against direct `upramp upload`, wall time (issue 15): at most this much slower.
pub const OVERHEAD_GOAL: f64 = 1.5;

/// The sizes of the scenario.
struct Sizes {
    large_bytes: u64,
    files: u64,
    file_bytes: u64,
    clients: usize,
    latency_ms: u64,
}

impl Sizes {
    fn of(plan: &Plan) -> Self {
        match plan.mode {
            Mode::Full => Self {
                large_bytes: 100_000_000,
                files: 100,
                file_bytes: 1_000_000,
                clients: 64,
                latency_ms: 50,
            },
            Mode::Quick => Self {
                large_bytes: 4_000_000,
                files: 16,
                file_bytes: 65_536,
                clients: 8,
                latency_ms: 10,
            },
        }
    }
}

/// The scenario's figures.
#[derive(Debug, Clone, Serialize)]
pub struct ServeResults {
    /// The large upload's size.
    pub large_bytes: u64,
    /// Gateway peak RSS during the large upload on the async path, KiB.
    pub async_rss_kib: u64,
    /// Gateway peak RSS during the large upload on the sync path, KiB.
    pub sync_rss_kib: u64,
    /// Wall time of the large upload (curl, start to exit) on each path.
    pub async_large_secs: f64,
    /// The same on the sync path.
    pub sync_large_secs: f64,
    /// Files in the batch.
    pub files: u64,
    /// Bytes per file.
    pub file_bytes: u64,
    /// Concurrent clients (curl's parallel transfers) and `upramp upload --concurrency`.
    pub clients: usize,
    /// Latency the stand-in adds to every response.
    pub added_latency_ms: u64,
    /// The batch through the gateway, async path: curl's wall time.
    pub gateway_async_secs: f64,
    /// The batch through the gateway, sync path.
    pub gateway_sync_secs: f64,
    /// The batch by `upramp upload` straight to the stand-in: the command's wall time.
    pub direct_secs: f64,
    /// Gateway peak RSS during the async batch, KiB.
    pub gateway_async_batch_rss_kib: u64,
    /// `gateway_sync_secs / gateway_async_secs`.
    pub speedup: f64,
    /// `gateway_async_secs / direct_secs`.
    pub overhead: f64,
    /// The commands, for the record.
    pub commands: Vec<String>,
}

/// Run the scenario.
pub fn measure_serve(ctx: &Bench, plan: &Plan) -> anyhow::Result<ServeResults> {
    let sizes = Sizes::of(plan);
    eprintln!(
        "bench: building the upramp binary ({} profile)",
        plan.worker_profile
    );
    let upramp = process::build_cli(&plan.worker_profile)?;
    ensure!(process::curl_available(), "the serve scenario needs curl");
    let dir = ctx.work_dir.join("serve");
    let large = generate(ctx, &dir, "serve-large", 1, sizes.large_bytes)?
        .pop()
        .context("generator wrote no file")?;
    let files = generate(ctx, &dir, "serve-batch", sizes.files, sizes.file_bytes)?;

    let (async_rss_kib, async_large_secs) = large_upload(ctx, &upramp, &dir, Route::Async, &large)?;
    let (sync_rss_kib, sync_large_secs) = large_upload(ctx, &upramp, &dir, Route::Sync, &large)?;
    let batches = batches(ctx, &upramp, &dir, &sizes, &files)?;
    let (gateway_async_secs, gateway_sync_secs, direct_secs) =
        (batches.gateway_async, batches.gateway_sync, batches.direct);
    let gateway_async_batch_rss_kib = batches.gateway_async_rss_kib;
    ensure!(
        gateway_async_secs > 0.0 && direct_secs > 0.0,
        "a batch reported no wall time"
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(ServeResults {
        large_bytes: sizes.large_bytes,
        async_rss_kib,
        sync_rss_kib,
        async_large_secs,
        sync_large_secs,
        files: sizes.files,
        file_bytes: sizes.file_bytes,
        clients: sizes.clients,
        added_latency_ms: sizes.latency_ms,
        gateway_async_secs,
        gateway_sync_secs,
        direct_secs,
        gateway_async_batch_rss_kib,
        speedup: gateway_sync_secs / gateway_async_secs,
        overhead: gateway_async_secs / direct_secs,
        commands: vec![
            "upramp serve --listen 127.0.0.1:0 --provider kimi --base-url STAND_IN --key-env UPRAMP_BENCH_API_KEY --spool-dir DIR (ASYNC_UPLOAD_ENABLED=true ASYNC_UPLOAD_ROLLOUT=100|0 ASYNC_UPLOAD_FALLBACK=false)".to_owned(),
            format!("curl -sS --parallel --parallel-immediate --parallel-max {} -F file=@F -F purpose=file-extract GATEWAY/v1/files (x{})", sizes.clients, sizes.files),
            cli::command_line(sizes.clients),
        ],
    })
}

/// A running `upramp serve`; killed when dropped.
struct GatewayProcess {
    child: Child,
    url: String,
}

impl GatewayProcess {
    fn start(upramp: &Path, base_url: &str, spool: &Path, path: Route) -> anyhow::Result<Self> {
        let inherited = std::env::vars_os().filter_map(|(name, _)| name.into_string().ok());
        let env = cli::flag_env(path, inherited);
        let mut command = Command::new(upramp);
        for name in &env.remove {
            command.env_remove(name);
        }
        let mut child = command
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--provider",
                "kimi",
                "--base-url",
                base_url,
                "--key-env",
                KEY_ENV,
                "--spool-dir",
            ])
            .arg(spool)
            .env(KEY_ENV, BENCH_KEY)
            .env("RUST_LOG", "warn")
            .envs(env.set.iter().map(|(name, value)| (name, value)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("cannot start {} serve", upramp.display()))?;
        let mut first = String::new();
        if let Some(stdout) = child.stdout.take() {
            let _ = BufReader::new(stdout).read_line(&mut first);
        }
        let Some(url) = first.trim().strip_prefix("listening on ") else {
            let _ = child.kill();
            let _ = child.wait();
            bail!("`upramp serve` did not start: {first:?}");
        };
        Ok(Self {
            url: url.to_owned(),
            child,
        })
    }

    /// The gateway's peak resident set so far, KiB.
    fn peak_rss_kib(&self) -> anyhow::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .context("cannot read the gateway's /proc status")?;
        proto::parse_vmhwm_kib(&status).context("the gateway's /proc status has no VmHWM")
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `curl` arguments posting each file as its own transfer, `parallel` at once; each transfer
/// prints its status on a line.
fn curl_args(url: &str, parallel: usize, files: &[PathBuf]) -> Vec<String> {
    // `--parallel-immediate`: open every connection at once instead of waiting to learn whether
    // the first one multiplexes (HTTP/1.1 never does), so the clients really are concurrent.
    let mut args = vec![
        s("-sS"),
        s("--parallel"),
        s("--parallel-immediate"),
        s("--parallel-max"),
        s(parallel),
    ];
    for (index, file) in files.iter().enumerate() {
        if index > 0 {
            args.push(s("--next"));
        }
        args.extend([
            s("-o"),
            s("/dev/null"),
            s("-w"),
            s("%{http_code}\\n"),
            s("-F"),
            format!("file=@{}", path_arg(file)),
            s("-F"),
            s("purpose=file-extract"),
            format!("{url}/v1/files"),
        ]);
    }
    args
}

/// Send `files` through `gateway` with curl as a measured child; fails unless every answer is 200.
/// Returns curl's wall time.
fn curl_through(
    ctx: &Bench,
    gateway: &GatewayProcess,
    parallel: usize,
    files: &[PathBuf],
) -> anyhow::Result<f64> {
    let args = curl_args(&gateway.url, parallel, files);
    let usage = measure(&ctx.worker, BENCH_KEY, Path::new("curl"), &args)?;
    let codes: Vec<&str> = usage.stdout.lines().map(str::trim).collect();
    ensure!(
        codes.len() == files.len() && codes.iter().all(|code| *code == "200"),
        "curl through the gateway: expected {} answers of 200, got {codes:?}",
        files.len()
    );
    Ok(usage.wall_secs)
}

fn spool_dir(dir: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let spool = dir.join(name);
    std::fs::create_dir_all(&spool)
        .with_context(|| format!("cannot create {}", spool.display()))?;
    Ok(spool)
}

/// One large upload through a fresh gateway on `path`: (gateway peak RSS KiB, curl wall secs).
fn large_upload(
    ctx: &Bench,
    upramp: &Path,
    dir: &Path,
    path: Route,
    file: &Path,
) -> anyhow::Result<(u64, f64)> {
    let stand_in = StandInProcess::start(&ctx.worker, BENCH_KEY, 0)?;
    let spool = spool_dir(dir, &format!("spool-large-{}", path.as_str()))?;
    let gateway = GatewayProcess::start(upramp, stand_in.base_url(), &spool, path)?;
    let wall = curl_through(ctx, &gateway, 1, &[file.to_owned()])
        .with_context(|| format!("large upload on the {} path", path.as_str()))?;
    let rss = gateway.peak_rss_kib()?;
    drop(gateway);
    check_stored(&stand_in.stop()?, 1)?;
    Ok((rss, wall))
}

/// Measured rounds of each batch; the fastest of each is kept (the least disturbed by neighbours).
const ROUNDS: usize = 3;

/// The fastest round of each batch.
struct Batches {
    gateway_async: f64,
    gateway_sync: f64,
    direct: f64,
    gateway_async_rss_kib: u64,
}

/// The batch through the gateway on each path and straight through `upramp upload`, rounds
/// interleaved. Each gateway is a long-running service, so it serves one unmeasured warm-up batch
/// first (its connections to the provider, its blocking threads, its allocator arenas); the direct
/// command is a new process every round and is timed from spawn to exit, start-up included, as an
/// operator runs it. The sync gateway's warm-up is a few files: it has one slot to warm.
fn batches(
    ctx: &Bench,
    upramp: &Path,
    dir: &Path,
    sizes: &Sizes,
    files: &[PathBuf],
) -> anyhow::Result<Batches> {
    let async_stand_in = StandInProcess::start(&ctx.worker, BENCH_KEY, sizes.latency_ms)?;
    let sync_stand_in = StandInProcess::start(&ctx.worker, BENCH_KEY, sizes.latency_ms)?;
    let async_gateway = GatewayProcess::start(
        upramp,
        async_stand_in.base_url(),
        &spool_dir(dir, "spool-batch-async")?,
        Route::Async,
    )?;
    let sync_gateway = GatewayProcess::start(
        upramp,
        sync_stand_in.base_url(),
        &spool_dir(dir, "spool-batch-sync")?,
        Route::Sync,
    )?;
    let sync_warm_up = &files[..files.len().min(4)];
    curl_through(ctx, &async_gateway, sizes.clients, files).context("async warm-up batch")?;
    curl_through(ctx, &sync_gateway, sizes.clients, sync_warm_up).context("sync warm-up batch")?;
    let fastest = |best: f64, new: f64| best.min(new);
    let mut best = Batches {
        gateway_async: f64::INFINITY,
        gateway_sync: f64::INFINITY,
        direct: f64::INFINITY,
        gateway_async_rss_kib: 0,
    };
    for round in 0..ROUNDS {
        let what = |path: &str| format!("round {} of the batch, {path}", round + 1);
        best.gateway_async = fastest(
            best.gateway_async,
            curl_through(ctx, &async_gateway, sizes.clients, files)
                .with_context(|| what("gateway async"))?,
        );
        best.direct = fastest(
            best.direct,
            direct_batch(ctx, upramp, async_stand_in.base_url(), sizes, files)
                .with_context(|| what("direct"))?,
        );
        best.gateway_sync = fastest(
            best.gateway_sync,
            curl_through(ctx, &sync_gateway, sizes.clients, files)
                .with_context(|| what("gateway sync"))?,
        );
    }
    best.gateway_async_rss_kib = async_gateway.peak_rss_kib()?;
    drop((async_gateway, sync_gateway));
    let per_round = files.len() as u64;
    check_stored(&async_stand_in.stop()?, per_round * (1 + 2 * ROUNDS as u64))?;
    check_stored(
        &sync_stand_in.stop()?,
        sync_warm_up.len() as u64 + per_round * ROUNDS as u64,
    )?;
    Ok(best)
}

/// The same files by `upramp upload --concurrency N` straight to the stand-in: the command's wall
/// time.
fn direct_batch(
    ctx: &Bench,
    upramp: &Path,
    base_url: &str,
    sizes: &Sizes,
    files: &[PathBuf],
) -> anyhow::Result<f64> {
    let args = cli::upload_args(base_url, sizes.clients, files);
    let inherited = std::env::vars_os().filter_map(|(name, _)| name.into_string().ok());
    let env = cli::flag_env(Route::Async, inherited);
    let usage = measure_with_env(&ctx.worker, BENCH_KEY, upramp, &args, &env)?;
    Ok(usage.wall_secs)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "MISSED"
    }
}

/// The scenario's table (goals judged in a full run only).
pub fn render(scenario: &Scenario<ServeResults>, mode: Mode) -> String {
    let mut out = String::new();
    let r = match scenario {
        Scenario::Measured(r) => r,
        Scenario::Failed { error } => return format!("\nserve: FAILED: {error}\n"),
        Scenario::Skipped => return "\nserve: skipped (not selected by --only)\n".to_owned(),
    };
    let judged = |met: bool| {
        if mode == Mode::Full {
            verdict(met)
        } else {
            "(quick: not judged)"
        }
    };
    let mb = |bytes: u64| bytes as f64 / 1_000_000.0;
    let _ = writeln!(out, "\nserve (upramp serve gateway, one run, side by side)");
    let _ = writeln!(
        out,
        "{:<52} {:>12} {:>12} {:>12}",
        "figure", "async", "sync", "direct"
    );
    let _ = writeln!(
        out,
        "{:<52} {:>8.1} MiB {:>8.1} MiB {:>12}",
        format!("gateway peak RSS, one {:.0} MB upload", mb(r.large_bytes)),
        mib(r.async_rss_kib),
        mib(r.sync_rss_kib),
        "-"
    );
    let _ = writeln!(
        out,
        "{:<52} {:>10.2} s {:>10.2} s {:>12}",
        format!("wall time, one {:.0} MB upload (curl)", mb(r.large_bytes)),
        r.async_large_secs,
        r.sync_large_secs,
        "-"
    );
    let _ = writeln!(
        out,
        "{:<52} {:>10.2} s {:>10.2} s {:>10.2} s",
        format!(
            "{} x {:.1} MB, {} clients, +{} ms, best of {ROUNDS}",
            r.files,
            mb(r.file_bytes),
            r.clients,
            r.added_latency_ms
        ),
        r.gateway_async_secs,
        r.gateway_sync_secs,
        r.direct_secs
    );
    let _ = writeln!(
        out,
        "{:<52} {:>8.1} MiB",
        "gateway peak RSS, async batches",
        mib(r.gateway_async_batch_rss_kib)
    );
    let _ = writeln!(
        out,
        "goal: async peak RSS <= {} MiB: {:.1} MiB, {}",
        ASYNC_RSS_GOAL_KIB / 1024,
        mib(r.async_rss_kib),
        judged(r.async_rss_kib <= ASYNC_RSS_GOAL_KIB)
    );
    let _ = writeln!(
        out,
        "goal: sync peak RSS >= the file ({:.1} MiB): {:.1} MiB, {}",
        r.large_bytes as f64 / (1024.0 * 1024.0),
        mib(r.sync_rss_kib),
        judged(r.sync_rss_kib * 1024 >= r.large_bytes)
    );
    let _ = writeln!(
        out,
        "goal: async >= {SPEEDUP_GOAL:.0}x faster than sync through the gateway: {:.1}x, {}",
        r.speedup,
        judged(r.speedup >= SPEEDUP_GOAL)
    );
    let _ = writeln!(
        out,
        "goal: gateway <= {OVERHEAD_GOAL}x the wall time of direct `upramp upload`: {:.2}x, {}",
        r.overhead,
        judged(r.overhead <= OVERHEAD_GOAL)
    );
    out
}

/// Print the table and write `serve.json` into `out_dir`.
pub fn report(scenario: &Scenario<ServeResults>, mode: Mode, out_dir: &Path) {
    print!("{}", render(scenario, mode));
    if let Scenario::Measured(results) = scenario {
        let path = out_dir.join("serve.json");
        match serde_json::to_string_pretty(results) {
            Ok(json) => {
                if let Err(err) = std::fs::write(&path, json + "\n") {
                    eprintln!("bench: cannot write {}: {err}", path.display());
                }
            }
            Err(err) => eprintln!("bench: cannot serialize the serve results: {err}"),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn curl_posts_each_file_as_its_own_parallel_transfer() {
        let files = [PathBuf::from("/w/a.bin"), PathBuf::from("/w/b.bin")];
        let args = curl_args("http://127.0.0.1:9", 64, &files);
        assert_eq!(
            &args[..5],
            [
                "-sS",
                "--parallel",
                "--parallel-immediate",
                "--parallel-max",
                "64"
            ]
        );
        assert_eq!(args.iter().filter(|a| *a == "--next").count(), 1);
        assert_eq!(
            args.iter()
                .filter(|a| *a == "http://127.0.0.1:9/v1/files")
                .count(),
            2
        );
        assert!(args.contains(&"file=@/w/b.bin".to_owned()));
    }

    #[test]
    fn goals_are_judged_in_a_full_run_only() {
        let results = ServeResults {
            large_bytes: 100_000_000,
            async_rss_kib: 20 * 1024,
            sync_rss_kib: 200 * 1024,
            async_large_secs: 1.0,
            sync_large_secs: 2.0,
            files: 100,
            file_bytes: 1_000_000,
            clients: 64,
            added_latency_ms: 50,
            gateway_async_secs: 0.5,
            gateway_sync_secs: 6.0,
            direct_secs: 0.4,
            gateway_async_batch_rss_kib: 30 * 1024,
            speedup: 12.0,
            overhead: 1.25,
            commands: Vec::new(),
        };
        let full = render(&Scenario::Measured(results.clone()), Mode::Full);
        assert_eq!(full.matches(", met").count(), 4, "{full}");
        let slow = ServeResults {
            overhead: 2.0,
            ..results.clone()
        };
        assert!(render(&Scenario::Measured(slow), Mode::Full).contains("2.00x, MISSED"));
        let quick = render(&Scenario::Measured(results), Mode::Quick);
        assert!(!quick.contains("MISSED") && quick.contains("not judged"));
    }
}
