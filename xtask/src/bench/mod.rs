//! `cargo xtask bench`: every performance claim measured side by side, in one run, on this machine.
//!
//! The orchestrator (this module, in whatever profile `cargo xtask` was built) measures nothing itself:
//! it builds `xtask/examples/bench_worker.rs` (release for a full run, dev for `--quick`) and runs every
//! measured piece of work in worker processes, so a figure is never skewed by the orchestrator's own
//! memory or by debug code:
//!
//! - the stand-in (for the large upload, with its size cap raised) runs in its own worker;
//! - each measured upload (async, sync, curl), each timed `upramp upload` command and the raw TCP
//!   copy runs as the only child of `bench_worker rusage`, which reports its peak RSS and CPU from
//!   `getrusage(RUSAGE_CHILDREN)`.
//!
//! The `upramp` binary itself is built in the workers' profile when its scenario runs.
//! `--only SCENARIO[,SCENARIO...]` runs a subset; the rest are recorded as skipped.
//!
//! Results go to `upramp/bench/results.json` under cargo's target directory (`target/` unless
//! `CARGO_TARGET_DIR` says otherwise) and a table on stdout; `docs/benchmarks.md` records a
//! full run. Exit code 0 when every selected scenario was measured (a missed goal is reported, not an
//! error), 1 when one could not run.

mod cli;
mod criterion;
mod machine;
pub(crate) mod process;
mod results;
mod serve;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Instant, SystemTime};

use anyhow::{bail, ensure, Context};

use self::cli::SourceFile;
use self::machine::Machine;
use self::process::{child_report, measure, measure_with_env, run_worker, StandInProcess};
use self::results::{
    BenchResults, CliRun, CliThroughputResults, FlagEvalResults, HashAlone, LargeUploadResults,
    LatencyResults, MemoryResults, MemoryRow, Mode, PathLatency, ReceiverTransfers, Scenario,
    ThroughputResults, Transfer, ValidateResults,
};
use upramp_flags::Route;
use xtask::worker::proto;
use xtask::worker::proto::{
    BatchReport, HashReport, OpenLoopReport, RequestEnd, ServeSummary, TcpCopyReport, UploadReport,
};

/// Options of `cargo xtask bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Every scenario at a small size with dev-profile workers; asserts no speed (the CI smoke run).
    #[arg(long)]
    pub quick: bool,
    /// Cargo profile of the measured worker processes and of the `upramp` binary (default:
    /// `release`, or `dev` with `--quick`).
    #[arg(long, value_parser = ["release", "dev"])]
    pub worker_profile: Option<String>,
    /// Run only these scenarios (comma-separated or repeated); the others are recorded as skipped.
    #[arg(long, value_enum, value_delimiter = ',', value_name = "SCENARIO")]
    pub only: Vec<ScenarioName>,
}

/// The scenarios, named as in the table's first column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ScenarioName {
    /// Peak RSS of one upload per size and path.
    Memory,
    /// Many files with added latency, async against sync, through the library.
    Throughput,
    /// The same through the `upramp upload` command, timed whole.
    Cli,
    /// One large upload against curl and a raw TCP copy.
    Large,
    /// Open-loop arrivals with a deadline.
    Latency,
    /// The criterion flag-evaluation bench.
    Flags,
    /// The wall time of `cargo xtask validate`.
    Validate,
    /// The `upramp serve` gateway: peak RSS and batch time against sync and direct (`serve.rs`).
    Serve,
}

impl ScenarioName {
    /// Whether the scenario runs in worker processes (the last two run cargo instead).
    fn needs_worker(self) -> bool {
        !matches!(self, Self::Flags | Self::Validate)
    }

    /// The progress line printed when it starts.
    fn progress(self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::Throughput => "throughput",
            Self::Cli => "throughput through `upramp upload`",
            Self::Large => "large upload",
            Self::Latency => "latency under load",
            Self::Flags => "flag evaluation (criterion)",
            Self::Validate => "cargo xtask validate",
            Self::Serve => "the upramp serve gateway",
        }
    }
}

/// Which scenarios a run measures: all of them unless `--only` names some.
#[derive(Debug, Clone)]
struct Selection(Vec<ScenarioName>);

impl Selection {
    fn contains(&self, name: ScenarioName) -> bool {
        self.0.is_empty() || self.0.contains(&name)
    }

    fn needs_worker(&self) -> bool {
        self.0.is_empty() || self.0.iter().any(|name| name.needs_worker())
    }

    /// Run `measure` if the scenario is selected, recording its figures or its error.
    fn run<T>(
        &self,
        name: ScenarioName,
        measure: impl FnOnce() -> anyhow::Result<T>,
    ) -> Scenario<T> {
        if !self.contains(name) {
            return Scenario::Skipped;
        }
        eprintln!("bench: {}", name.progress());
        Scenario::from_result(measure())
    }
}

/// The stand-in key of a bench run: a local mock credential, handed to workers through the environment.
const BENCH_KEY: &str = "sk-upramp-bench-local";

/// The sizes of one run.
#[derive(Debug, Clone)]
struct Plan {
    mode: Mode,
    worker_profile: String,
    memory_sizes: Vec<u64>,
    throughput_files: u64,
    throughput_file_bytes: u64,
    throughput_latency_ms: u64,
    async_concurrency: usize,
    cli_files: u64,
    cli_file_bytes: u64,
    cli_concurrency: usize,
    cli_rounds: usize,
    large_bytes: u64,
    large_rounds: usize,
    latency_rate: u64,
    latency_secs: u64,
    latency_file_bytes: u64,
    latency_added_ms: u64,
    latency_timeout_ms: u64,
    criterion_args: Vec<&'static str>,
    validate_args: Vec<&'static str>,
}

impl Plan {
    fn new(quick: bool) -> Self {
        if quick {
            Self {
                mode: Mode::Quick,
                worker_profile: "dev".to_owned(),
                memory_sizes: vec![100_000, 1_000_000],
                throughput_files: 16,
                throughput_file_bytes: 65_536,
                throughput_latency_ms: 10,
                async_concurrency: 8,
                cli_files: 16,
                cli_file_bytes: 65_536,
                cli_concurrency: 8,
                cli_rounds: 1,
                large_bytes: 4_000_000,
                large_rounds: 1,
                latency_rate: 20,
                latency_secs: 1,
                latency_file_bytes: 16_384,
                latency_added_ms: 10,
                latency_timeout_ms: 500,
                criterion_args: vec![
                    "--warm-up-time",
                    "0.1",
                    "--measurement-time",
                    "0.3",
                    "--noplot",
                ],
                validate_args: vec!["validate", "--quick"],
            }
        } else {
            Self {
                mode: Mode::Full,
                worker_profile: "release".to_owned(),
                memory_sizes: vec![1_000_000, 10_000_000, 100_000_000],
                throughput_files: 200,
                throughput_file_bytes: 1_000_000,
                throughput_latency_ms: 50,
                async_concurrency: 64,
                // Issue 5: 100 x 1 MB through `upramp upload --concurrency 64`, +50 ms.
                cli_files: 100,
                cli_file_bytes: 1_000_000,
                cli_concurrency: 64,
                // Issue 18: at least 20x in each of three runs.
                cli_rounds: 3,
                large_bytes: 500_000_000,
                // Three rounds: the spread of the async/curl ratio on a shared host.
                large_rounds: 3,
                latency_rate: 40,
                latency_secs: 10,
                latency_file_bytes: 262_144,
                latency_added_ms: 50,
                latency_timeout_ms: 2_000,
                criterion_args: vec!["--warm-up-time", "1", "--measurement-time", "3", "--noplot"],
                validate_args: vec!["validate"],
            }
        }
    }
}

/// Everything a scenario needs to start workers.
struct Bench {
    worker: PathBuf,
    work_dir: PathBuf,
    curl: bool,
}

/// Run the benchmarks.
pub fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let mut plan = Plan::new(args.quick);
    if let Some(profile) = args.worker_profile {
        plan.worker_profile = profile;
    }
    let started = Instant::now();
    let started_at = SystemTime::now();
    let machine = Machine::detect();
    // Cargo's target directory, so runs with different `CARGO_TARGET_DIR`s keep their own results.
    let out_dir = process::target_dir()?.join("upramp").join("bench");
    let work_dir = out_dir.join("work");
    if work_dir.exists() {
        std::fs::remove_dir_all(&work_dir)
            .with_context(|| format!("cannot clear {}", work_dir.display()))?;
    }
    std::fs::create_dir_all(&work_dir)
        .with_context(|| format!("cannot create {}", work_dir.display()))?;

    let selection = Selection(args.only);
    let ctx = if selection.needs_worker() {
        eprintln!(
            "bench: building the worker ({} profile)",
            plan.worker_profile
        );
        let ctx = Bench {
            worker: process::build_worker(&plan.worker_profile)?,
            work_dir: work_dir.clone(),
            curl: process::curl_available(),
        };
        if !ctx.curl {
            eprintln!("bench: curl not found; its columns stay empty");
        }
        Some(ctx)
    } else {
        None
    };
    use ScenarioName as S;
    let memory = selection.run(S::Memory, || with_worker(ctx.as_ref(), &plan, memory));
    let throughput = selection.run(S::Throughput, || {
        with_worker(ctx.as_ref(), &plan, throughput)
    });
    let cli_throughput = selection.run(S::Cli, || with_worker(ctx.as_ref(), &plan, cli_throughput));
    let large_upload = selection.run(S::Large, || with_worker(ctx.as_ref(), &plan, large_upload));
    let latency = selection.run(S::Latency, || with_worker(ctx.as_ref(), &plan, latency));
    let serve = selection.run(S::Serve, || {
        with_worker(ctx.as_ref(), &plan, serve::measure_serve)
    });
    // The corpus can be half a gigabyte: gone before the slower, file-free scenarios.
    let _ = std::fs::remove_dir_all(&work_dir);
    let flag_eval = selection.run(S::Flags, || flag_eval(&plan));
    let validate = selection.run(S::Validate, || validate(&plan, &out_dir));

    let mut results = BenchResults {
        schema_version: results::SCHEMA_VERSION,
        mode: plan.mode,
        started_at_utc: results::utc_timestamp(started_at),
        wall_secs: 0.0,
        machine,
        worker_profile: plan.worker_profile.clone(),
        memory,
        throughput,
        cli_throughput,
        large_upload,
        latency,
        flag_eval,
        validate,
        goals: Vec::new(),
        legacy_claims: Vec::new(),
    };
    if plan.mode == Mode::Full {
        results.goals = results::judge_goals(&results);
        results.legacy_claims = results::judge_legacy_claims(&results);
    }
    results.wall_secs = started.elapsed().as_secs_f64();

    let json_path = out_dir.join("results.json");
    let json = serde_json::to_string_pretty(&results).context("cannot serialize the results")?;
    std::fs::write(&json_path, json + "\n")
        .with_context(|| format!("cannot write {}", json_path.display()))?;
    print!("{}", results::render_table(&results));
    serve::report(&serve, plan.mode, &out_dir);
    println!("\nresults: {}", json_path.display());

    let any_failed = results.memory.failed()
        || results.throughput.failed()
        || results.cli_throughput.failed()
        || results.large_upload.failed()
        || results.latency.failed()
        || results.flag_eval.failed()
        || results.validate.failed()
        || serve.failed();
    Ok(if !any_failed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Run a scenario that needs the worker. `Selection::needs_worker` holds whenever such a scenario is
/// selected, so the worker is there; the error only guards that invariant.
fn with_worker<T>(
    ctx: Option<&Bench>,
    plan: &Plan,
    scenario: fn(&Bench, &Plan) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    scenario(ctx.context("the bench worker was not built")?, plan)
}

// Taking values (not references) keeps the argv lists readable: `s(count)`, `s("--dir")`.
#[allow(clippy::needless_pass_by_value)]
fn s(value: impl ToString) -> String {
    value.to_string()
}

fn path_arg(path: &Path) -> String {
    path.display().to_string()
}

/// Write `count` files of `bytes` each under `dir` (seeded, incompressible) through the worker.
fn generate(
    ctx: &Bench,
    dir: &Path,
    prefix: &str,
    count: u64,
    bytes: u64,
) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let args = vec![
        s("generate"),
        s("--dir"),
        path_arg(dir),
        s("--prefix"),
        s(prefix),
        s("--count"),
        s(count),
        s("--bytes"),
        s(bytes),
    ];
    let report: proto::GenerateReport = run_worker(&ctx.worker, BENCH_KEY, &args)?;
    ensure!(
        report.files.len() as u64 == count,
        "generator wrote {} files, expected {count}",
        report.files.len()
    );
    Ok(report.files)
}

/// Run one measured upload of `file` on `path` (`async` or `sync`) through a worker.
fn measured_upload(
    ctx: &Bench,
    base_url: &str,
    path: &str,
    file: &Path,
) -> anyhow::Result<(proto::RusageReport, UploadReport)> {
    let args = vec![
        s("upload"),
        s("--base-url"),
        s(base_url),
        s("--path"),
        s(path),
        s("--file"),
        path_arg(file),
    ];
    let usage = measure(&ctx.worker, BENCH_KEY, &ctx.worker, &args)?;
    let report: UploadReport = child_report(&usage, "upload worker")?;
    let size = std::fs::metadata(file)
        .with_context(|| format!("cannot stat {}", file.display()))?
        .len();
    ensure!(
        report.bytes == size,
        "{path} upload of {} acknowledged {} bytes, expected {size}",
        file.display(),
        report.bytes
    );
    Ok((usage, report))
}

/// Run `curl -F file=@FILE` against `base_url` as a measured child; fails unless the answer is 200.
fn measured_curl(ctx: &Bench, base_url: &str, file: &Path) -> anyhow::Result<proto::RusageReport> {
    let header_file = ctx.work_dir.join("curl-auth-header");
    process::write_curl_header_file(&header_file, BENCH_KEY)?;
    let args = vec![
        s("-sS"),
        s("-o"),
        s("/dev/null"),
        s("-w"),
        s("{\"http_code\":%{http_code}}"),
        s("-H"),
        format!("@{}", header_file.display()),
        s("-F"),
        format!("file=@{}", file.display()),
        s("-F"),
        s("purpose=file-extract"),
        format!("{}/files", base_url.trim_end_matches('/')),
    ];
    let usage = measure(&ctx.worker, BENCH_KEY, Path::new("curl"), &args)?;
    #[derive(serde::Deserialize)]
    struct CurlOut {
        http_code: u16,
    }
    let out: CurlOut = child_report(&usage, "curl")?;
    ensure!(
        out.http_code == 200,
        "curl upload of {} got HTTP {}",
        file.display(),
        out.http_code
    );
    Ok(usage)
}

fn memory(ctx: &Bench, plan: &Plan) -> anyhow::Result<MemoryResults> {
    let dir = ctx.work_dir.join("memory");
    let mut files = Vec::new();
    for &size in &plan.memory_sizes {
        let mut generated = generate(ctx, &dir, &format!("memory-{size}"), 1, size)?;
        files.push((size, generated.pop().context("generator wrote no file")?));
    }
    let stand_in = StandInProcess::start(&ctx.worker, BENCH_KEY, 0)?;
    let base_url = stand_in.base_url().to_owned();
    let idle_args = vec![s("idle"), s("--base-url"), base_url.clone()];
    let idle = measure(&ctx.worker, BENCH_KEY, &ctx.worker, &idle_args)?;
    let mut rows = Vec::new();
    for (size, file) in &files {
        let (async_usage, _) = measured_upload(ctx, &base_url, "async", file)?;
        let (sync_usage, _) = measured_upload(ctx, &base_url, "sync", file)?;
        let curl_rss_kib = if ctx.curl {
            Some(measured_curl(ctx, &base_url, file)?.max_rss_kib)
        } else {
            None
        };
        rows.push(MemoryRow {
            file_bytes: *size,
            async_rss_kib: async_usage.max_rss_kib,
            sync_rss_kib: sync_usage.max_rss_kib,
            curl_rss_kib,
        });
    }
    let expected = files.len() as u64 * if ctx.curl { 3 } else { 2 };
    check_stored(&stand_in.stop()?, expected)?;
    Ok(MemoryResults {
        idle_rss_kib: idle.max_rss_kib,
        curl_available: ctx.curl,
        rows,
    })
}

fn check_stored(summary: &ServeSummary, expected: u64) -> anyhow::Result<()> {
    ensure!(
        summary.stored_files == expected,
        "the stand-in stored {} files, expected {expected}",
        summary.stored_files
    );
    Ok(())
}

fn batch(
    ctx: &Bench,
    plan: &Plan,
    path: &str,
    concurrency: usize,
    files: &[PathBuf],
) -> anyhow::Result<BatchReport> {
    let stand_in = StandInProcess::start(&ctx.worker, BENCH_KEY, plan.throughput_latency_ms)?;
    let mut args = vec![
        s("batch"),
        s("--base-url"),
        s(stand_in.base_url()),
        s("--path"),
        s(path),
        s("--concurrency"),
        s(concurrency),
    ];
    args.extend(files.iter().map(|f| path_arg(f)));
    let report: BatchReport = run_worker(&ctx.worker, BENCH_KEY, &args)?;
    ensure!(
        report.failed == 0 && report.ok == files.len() as u64,
        "{path} batch: {} ok, {} failed (first error: {})",
        report.ok,
        report.failed,
        report.first_error.as_deref().unwrap_or("none")
    );
    check_stored(&stand_in.stop()?, files.len() as u64)?;
    Ok(report)
}

fn throughput(ctx: &Bench, plan: &Plan) -> anyhow::Result<ThroughputResults> {
    let dir = ctx.work_dir.join("throughput");
    let files = generate(
        ctx,
        &dir,
        "batch",
        plan.throughput_files,
        plan.throughput_file_bytes,
    )?;
    let async_report = batch(ctx, plan, "async", plan.async_concurrency, &files)?;
    let sync_report = batch(ctx, plan, "sync", 1, &files)?;
    ensure!(
        async_report.elapsed_secs > 0.0,
        "async batch reported no elapsed time"
    );
    Ok(ThroughputResults {
        files: plan.throughput_files,
        file_bytes: plan.throughput_file_bytes,
        added_latency_ms: plan.throughput_latency_ms,
        async_concurrency: plan.async_concurrency,
        sync_concurrency: 1,
        async_secs: async_report.elapsed_secs,
        sync_secs: sync_report.elapsed_secs,
        speedup: sync_report.elapsed_secs / async_report.elapsed_secs,
    })
}

/// `upramp upload` over the same files, once with every file routed async and once sync, each against
/// a fresh stand-in with the scenario's added latency. Each whole command is timed (spawn to exit, so
/// the CLI's own start-up counts) and its output verified: exit 0, one receipt per file on the
/// expected path with the file's size and SHA-256, and exactly that many files stored.
fn cli_throughput(ctx: &Bench, plan: &Plan) -> anyhow::Result<CliThroughputResults> {
    eprintln!(
        "bench: building the upramp binary ({} profile)",
        plan.worker_profile
    );
    let upramp = process::build_cli(&plan.worker_profile)?;
    let dir = ctx.work_dir.join("cli");
    let files = generate(ctx, &dir, "cli", plan.cli_files, plan.cli_file_bytes)?;
    let mut sources = BTreeMap::new();
    for file in &files {
        let source = SourceFile {
            bytes: plan.cli_file_bytes,
            sha256: upramp_harness::corpus::sha256_file(file)
                .with_context(|| format!("cannot hash {}", file.display()))?,
        };
        sources.insert(file.clone(), source);
    }
    // Rounds alternate the paths, so a noisy neighbour hurts both alike; each round's own ratio is
    // kept (the goal holds in every round), and the fastest run of each path.
    let (mut fastest_async, mut fastest_sync) = (None, None);
    let mut speedup_rounds = Vec::with_capacity(plan.cli_rounds);
    for _ in 0..plan.cli_rounds {
        let async_run = cli_run(ctx, plan, &upramp, Route::Async, &files, &sources)?;
        let sync_run = cli_run(ctx, plan, &upramp, Route::Sync, &files, &sources)?;
        ensure!(
            async_run.wall_secs > 0.0,
            "the async run reported no wall time"
        );
        speedup_rounds.push(sync_run.wall_secs / async_run.wall_secs);
        keep_fastest(&mut fastest_async, async_run);
        keep_fastest(&mut fastest_sync, sync_run);
    }
    let (Some(async_run), Some(sync_run)) = (fastest_async, fastest_sync) else {
        bail!("no round of the CLI runs ran");
    };
    Ok(CliThroughputResults {
        command: cli::command_line(plan.cli_concurrency),
        files: plan.cli_files,
        file_bytes: plan.cli_file_bytes,
        added_latency_ms: plan.throughput_latency_ms,
        concurrency: plan.cli_concurrency,
        speedup: sync_run.wall_secs / async_run.wall_secs,
        speedup_rounds,
        async_run,
        sync_run,
    })
}

fn cli_run(
    ctx: &Bench,
    plan: &Plan,
    upramp: &Path,
    path: Route,
    files: &[PathBuf],
    sources: &BTreeMap<PathBuf, SourceFile>,
) -> anyhow::Result<CliRun> {
    let stand_in = StandInProcess::start(&ctx.worker, BENCH_KEY, plan.throughput_latency_ms)?;
    let args = cli::upload_args(stand_in.base_url(), plan.cli_concurrency, files);
    let inherited = std::env::vars_os().filter_map(|(name, _)| name.into_string().ok());
    let env = cli::flag_env(path, inherited);
    let what = format!("`upramp upload` on the {} path", path.as_str());
    let usage = measure_with_env(&ctx.worker, BENCH_KEY, upramp, &args, &env)
        .with_context(|| what.clone())?;
    let attempts = cli::check_receipts(&usage.stdout, path, sources).context(what)?;
    let summary = stand_in.stop()?;
    check_stored(&summary, files.len() as u64)?;
    let expected_bytes = files.len() as u64 * plan.cli_file_bytes;
    ensure!(
        summary.stored_bytes == expected_bytes,
        "the stand-in stored {} bytes, expected {expected_bytes}",
        summary.stored_bytes
    );
    Ok(CliRun {
        wall_secs: usage.wall_secs,
        cpu_secs: usage.user_secs + usage.sys_secs,
        peak_rss_kib: usage.max_rss_kib,
        attempts,
    })
}

/// The best (fastest) transfers to one receiver so far, and each round's async/curl ratio.
#[derive(Default)]
struct Fastest {
    async_path: Option<Transfer>,
    curl: Option<Transfer>,
    tcp_copy: Option<Transfer>,
    async_vs_curl_rounds: Vec<f64>,
}

/// A measured run with a wall time, so rounds can keep the fastest of each kind.
trait WallTimed {
    fn wall_secs(&self) -> f64;
}

impl WallTimed for Transfer {
    fn wall_secs(&self) -> f64 {
        self.wall_secs
    }
}

impl WallTimed for CliRun {
    fn wall_secs(&self) -> f64 {
        self.wall_secs
    }
}

fn keep_fastest<T: WallTimed>(best: &mut Option<T>, new: T) {
    if best
        .as_ref()
        .is_none_or(|b| new.wall_secs() < b.wall_secs())
    {
        *best = Some(new);
    }
}

/// The large upload goes to two receivers in their own processes: `bench_worker discard`, which
/// does no per-byte work (so the sender alone sets the pace), and `bench_worker sink`, the Kimi
/// stand-in itself (multer parse, SHA-256) with its 100 MB cap raised past the file. Each
/// also takes raw TCP on a second port with the same per-byte work, for the TCP copy. Rounds
/// interleave every sender and receiver, so a noisy neighbour hurts them alike; the fastest
/// round of each is kept (the least disturbed) and every round's async/curl ratio is reported.
/// The SHA-256 of the file alone is measured in every round too.
fn large_upload(ctx: &Bench, plan: &Plan) -> anyhow::Result<LargeUploadResults> {
    let dir = ctx.work_dir.join("large");
    let file = generate(ctx, &dir, "large", 1, plan.large_bytes)?
        .pop()
        .context("generator wrote no file")?;
    let receivers = [
        (
            results::NO_WORK_RECEIVER,
            StandInProcess::start_discard(&ctx.worker, BENCH_KEY)?,
        ),
        (
            results::SINK_RECEIVER,
            StandInProcess::start_sink(&ctx.worker, BENCH_KEY)?,
        ),
    ];
    let to_transfer = |usage: &proto::RusageReport, receiver_cpu_secs: f64| Transfer {
        wall_secs: usage.wall_secs,
        mib_per_sec: plan.large_bytes as f64 / (1024.0 * 1024.0) / usage.wall_secs.max(1e-9),
        client_cpu_secs: usage.user_secs + usage.sys_secs,
        standin_cpu_secs: Some(receiver_cpu_secs),
        client_rss_kib: usage.max_rss_kib,
    };
    let mut fastest: Vec<Fastest> = receivers.iter().map(|_| Fastest::default()).collect();
    let mut uploads = vec![0u64; receivers.len()];
    let mut hash_rounds: Vec<HashAlone> = Vec::new();
    for _ in 0..plan.large_rounds {
        for (index, (name, receiver)) in receivers.iter().enumerate() {
            let base_url = receiver.base_url().to_owned();
            let best = &mut fastest[index];
            let before = receiver.cpu_secs()?;
            let (usage, _) = measured_upload(ctx, &base_url, "async", &file)
                .with_context(|| format!("async upload to the {name} receiver"))?;
            uploads[index] += 1;
            let async_transfer = to_transfer(&usage, receiver.cpu_secs()? - before);
            let async_wall = async_transfer.wall_secs;
            keep_fastest(&mut best.async_path, async_transfer);
            if ctx.curl {
                let before = receiver.cpu_secs()?;
                let usage = measured_curl(ctx, &base_url, &file)
                    .with_context(|| format!("curl upload to the {name} receiver"))?;
                uploads[index] += 1;
                best.async_vs_curl_rounds
                    .push(usage.wall_secs / async_wall.max(1e-9));
                keep_fastest(
                    &mut best.curl,
                    to_transfer(&usage, receiver.cpu_secs()? - before),
                );
            }
            let addr = receiver
                .tcp_addr()
                .with_context(|| format!("the {name} receiver has no raw TCP port"))?;
            let tcp_args = vec![
                s("tcp-copy"),
                s("--file"),
                path_arg(&file),
                s("--addr"),
                s(addr),
            ];
            let before = receiver.cpu_secs()?;
            let usage = measure(&ctx.worker, BENCH_KEY, &ctx.worker, &tcp_args)?;
            let report: TcpCopyReport = child_report(&usage, "tcp-copy worker")?;
            ensure!(
                report.bytes == plan.large_bytes,
                "tcp copy to the {name} receiver moved {} bytes, expected {}",
                report.bytes,
                plan.large_bytes
            );
            keep_fastest(
                &mut best.tcp_copy,
                to_transfer(&usage, receiver.cpu_secs()? - before),
            );
        }
        let hash_args = vec![s("hash"), s("--file"), path_arg(&file)];
        let usage = measure(&ctx.worker, BENCH_KEY, &ctx.worker, &hash_args)?;
        let report: HashReport = child_report(&usage, "hash worker")?;
        ensure!(
            report.bytes == plan.large_bytes,
            "the hash worker read {} bytes, expected {}",
            report.bytes,
            plan.large_bytes
        );
        hash_rounds.push(HashAlone {
            wall_secs: usage.wall_secs,
            cpu_secs: usage.user_secs + usage.sys_secs,
        });
    }
    let mut measured = Vec::new();
    for ((name, receiver), (best, uploads)) in
        receivers.into_iter().zip(fastest.into_iter().zip(uploads))
    {
        let receiver_peak_rss_kib = receiver.peak_rss_kib();
        check_stored(&receiver.stop()?, uploads)?;
        let (Some(async_path), Some(tcp_copy)) = (best.async_path, best.tcp_copy) else {
            bail!("no round of the large upload ran");
        };
        measured.push(ReceiverTransfers {
            receiver: name.to_owned(),
            async_vs_curl: best
                .curl
                .as_ref()
                .map(|c| c.wall_secs / async_path.wall_secs),
            async_vs_tcp: tcp_copy.wall_secs / async_path.wall_secs,
            async_path,
            curl: best.curl,
            tcp_copy,
            async_vs_curl_rounds: best.async_vs_curl_rounds,
            receiver_peak_rss_kib,
        });
    }
    let sha256_alone_cpu_rounds = hash_rounds.iter().map(|h| h.cpu_secs).collect();
    let sha256_alone = hash_rounds
        .into_iter()
        .min_by(|a, b| a.cpu_secs.total_cmp(&b.cpu_secs))
        .context("no round of the large upload ran")?;
    Ok(LargeUploadResults {
        file_bytes: plan.large_bytes,
        receivers: measured,
        sha256_alone,
        sha256_alone_cpu_rounds,
    })
}

fn latency(ctx: &Bench, plan: &Plan) -> anyhow::Result<LatencyResults> {
    let dir = ctx.work_dir.join("latency");
    let file = generate(ctx, &dir, "latency", 1, plan.latency_file_bytes)?
        .pop()
        .context("generator wrote no file")?;
    let mut paths = Vec::new();
    for path in ["async", "sync"] {
        let stand_in = StandInProcess::start(&ctx.worker, BENCH_KEY, plan.latency_added_ms)?;
        let args = vec![
            s("open-loop"),
            s("--base-url"),
            s(stand_in.base_url()),
            s("--path"),
            s(path),
            s("--file"),
            path_arg(&file),
            s("--rate"),
            s(plan.latency_rate),
            s("--duration-secs"),
            s(plan.latency_secs),
            s("--timeout-ms"),
            s(plan.latency_timeout_ms),
        ];
        let report: OpenLoopReport = run_worker(&ctx.worker, BENCH_KEY, &args)?;
        stand_in.stop()?;
        paths.push(summarize_open_loop(path, &report, plan.latency_timeout_ms)?);
    }
    Ok(LatencyResults {
        rate_per_sec: plan.latency_rate,
        duration_secs: plan.latency_secs,
        file_bytes: plan.latency_file_bytes,
        added_latency_ms: plan.latency_added_ms,
        timeout_ms: plan.latency_timeout_ms,
        paths,
    })
}

/// Percentiles over every request, a timed-out one counting as the deadline (what its caller saw).
fn summarize_open_loop(
    path: &str,
    report: &OpenLoopReport,
    timeout_ms: u64,
) -> anyhow::Result<PathLatency> {
    let count = |end: RequestEnd| report.requests.iter().filter(|(_, e)| *e == end).count() as u64;
    let (ok, timeouts, errors) = (
        count(RequestEnd::Ok),
        count(RequestEnd::Timeout),
        count(RequestEnd::Error),
    );
    ensure!(
        ok > 0,
        "{path}: no request of {} succeeded (first error: {})",
        report.requests.len(),
        report.first_error.as_deref().unwrap_or("none")
    );
    let mut latencies: Vec<f64> = report
        .requests
        .iter()
        .map(|&(ms, end)| {
            if end == RequestEnd::Timeout {
                timeout_ms as f64
            } else {
                ms
            }
        })
        .collect();
    latencies.sort_by(f64::total_cmp);
    let requests = latencies.len() as u64;
    Ok(PathLatency {
        path: path.to_owned(),
        requests,
        ok,
        timeouts,
        errors,
        p50_ms: upramp_harness::load::quantile(&latencies, 0.50).unwrap_or(0.0),
        p99_ms: upramp_harness::load::quantile(&latencies, 0.99).unwrap_or(0.0),
        timeout_rate: timeouts as f64 / requests as f64,
        first_error: report.first_error.clone(),
    })
}

fn flag_eval(plan: &Plan) -> anyhow::Result<FlagEvalResults> {
    let since = SystemTime::now();
    let mut command = Command::new(process::cargo());
    command
        .args(["bench", "-p", "upramp-flags", "--bench", "eval"])
        .current_dir(process::workspace_root())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    // The bench's code is measured in the same profile as the workers' (release unless asked).
    if plan.worker_profile != "release" {
        command.args(["--profile", &plan.worker_profile]);
    }
    let status = command
        .arg("--")
        .args(&plan.criterion_args)
        .status()
        .context("cannot run `cargo bench -p upramp-flags`")?;
    ensure!(
        status.success(),
        "`cargo bench -p upramp-flags --bench eval` failed with {status}"
    );
    let criterion_dir = process::target_dir()?.join("criterion");
    let benchmarks = criterion::collect_medians(&criterion_dir, since)?;
    ensure!(
        !benchmarks.is_empty(),
        "the flags bench wrote no criterion estimates under {}",
        criterion_dir.display()
    );
    Ok(FlagEvalResults { benchmarks })
}

fn validate(plan: &Plan, out_dir: &Path) -> anyhow::Result<ValidateResults> {
    let log_path = out_dir.join("validate.log");
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("cannot create {}", log_path.display()))?;
    let log_err = log.try_clone().context("cannot share the validate log")?;
    let command = format!("cargo xtask {}", plan.validate_args.join(" "));
    // The bench's other builds may have left xtask's dependencies built with other features; the
    // budget is for the run after the build, so build first, untimed (the alias is a release build).
    let built = Command::new(process::cargo())
        .args(["build", "--release", "--package", "xtask"])
        .current_dir(process::workspace_root())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .status()
        .context("cannot run `cargo build --release --package xtask`")?;
    ensure!(
        built.success(),
        "building xtask for `{command}` failed with {built}"
    );
    let started = Instant::now();
    let status = Command::new(process::cargo())
        .arg("xtask")
        .args(&plan.validate_args)
        .current_dir(process::workspace_root())
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .status()
        .with_context(|| format!("cannot run `{command}`"))?;
    let wall_secs = started.elapsed().as_secs_f64();
    match status.code() {
        // 0: every check held; 1: it ran and a check failed. Either way the wall time is real.
        Some(code @ (0 | 1)) => Ok(ValidateResults {
            command,
            wall_secs,
            exit_code: Some(code),
        }),
        _ => {
            let text = std::fs::read_to_string(&log_path).unwrap_or_default();
            let last = text
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("")
                .trim()
                .to_owned();
            bail!("`{command}` did not run to completion ({status}): {last}")
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn open_loop_counts_timeouts_at_the_deadline() {
        let report = OpenLoopReport {
            requests: vec![
                (50.0, RequestEnd::Ok),
                (60.0, RequestEnd::Ok),
                (2_400.0, RequestEnd::Timeout),
                (70.0, RequestEnd::Error),
            ],
            first_error: Some("HTTP 500".to_owned()),
            elapsed_secs: 2.5,
        };
        let summary = summarize_open_loop("sync", &report, 2_000).unwrap();
        assert_eq!(
            (
                summary.requests,
                summary.ok,
                summary.timeouts,
                summary.errors
            ),
            (4, 2, 1, 1)
        );
        assert_eq!(summary.p50_ms, 60.0);
        assert_eq!(summary.p99_ms, 2_000.0);
        assert_eq!(summary.timeout_rate, 0.25);
    }

    #[test]
    fn a_path_with_no_success_is_an_error() {
        let report = OpenLoopReport {
            requests: vec![(10.0, RequestEnd::Error)],
            first_error: Some("connection refused".to_owned()),
            elapsed_secs: 0.1,
        };
        let err = summarize_open_loop("async", &report, 500).unwrap_err();
        assert!(err.to_string().contains("connection refused"));
    }

    #[test]
    fn quick_plan_is_smaller_than_full() {
        let (quick, full) = (Plan::new(true), Plan::new(false));
        assert!(quick.large_bytes < full.large_bytes);
        assert!(quick.memory_sizes.iter().max() < full.memory_sizes.iter().max());
        assert!(quick.throughput_files < full.throughput_files);
        assert!(quick.cli_files < full.cli_files);
        assert_eq!(full.memory_sizes, [1_000_000, 10_000_000, 100_000_000]);
        assert_eq!((full.throughput_files, full.async_concurrency), (200, 64));
        assert_eq!(
            (
                full.cli_files,
                full.cli_file_bytes,
                full.cli_concurrency,
                full.throughput_latency_ms
            ),
            (100, 1_000_000, 64, 50)
        );
        assert_eq!((quick.cli_rounds, full.cli_rounds), (1, 3));
        assert_eq!(full.large_bytes, 500_000_000);
    }

    #[test]
    fn only_selects_scenarios_and_the_worker_they_need() {
        let all = Selection(Vec::new());
        assert!(all.contains(ScenarioName::Validate) && all.needs_worker());
        let cli = Selection(vec![ScenarioName::Cli]);
        assert!(cli.contains(ScenarioName::Cli) && cli.needs_worker());
        assert!(!cli.contains(ScenarioName::Throughput));
        let cargo_only = Selection(vec![ScenarioName::Flags, ScenarioName::Validate]);
        assert!(!cargo_only.needs_worker());
        let skipped: Scenario<()> = cargo_only.run(ScenarioName::Memory, || {
            anyhow::bail!("a skipped scenario must not run")
        });
        assert_eq!(skipped, Scenario::Skipped);
    }

    #[test]
    fn only_parses_a_comma_separated_list() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cmd {
            #[command(flatten)]
            bench: BenchArgs,
        }
        let cmd = Cmd::try_parse_from(["bench", "--only", "throughput,cli"]).unwrap();
        assert_eq!(
            cmd.bench.only,
            [ScenarioName::Throughput, ScenarioName::Cli]
        );
        assert!(Cmd::try_parse_from(["bench", "--only", "everything"]).is_err());
    }
}
