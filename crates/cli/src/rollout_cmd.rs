//! `upramp rollout`: create, inspect, operate and run a staged rollout from its state file.
//!
//! Every subcommand works on `--state FILE` (see `upramp_rollout::StateStore`); decisions are appended
//! to the audit log, by default `<state>.audit.jsonl`. A missing or corrupt state file is a usage error
//! (exit 2) and is never modified.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{anyhow, Context};
use upramp_rollout::{
    commit_manual, parse_duration, AuditLog, Clock, Controller, ControllerState, DecisionRecord,
    FileSink, FlagSink, Journal, MetricsSource, Phase, Plan, PrometheusSource, RolloutError,
    ScrapeSource, Selector, StateError, StateStore, SystemClock,
};

use crate::exit::{CliError, CliResult};

/// Subcommands of `upramp rollout`.
#[derive(Debug, clap::Subcommand)]
pub enum RolloutCommand {
    /// Create a rollout state at the first stage (0%), from the default three-week plan or --plan.
    Init(InitArgs),
    /// Show the stage, percent, state, time in stage and the last decision.
    Status(StatusArgs),
    /// Promote to the next stage now, whatever the gates say.
    Advance(ManualArgs),
    /// Stop automatic promotion; the percent stays and failing gates still roll back.
    Pause(ManualArgs),
    /// Resume a paused rollout; the pause does not count as bake time.
    Resume(ManualArgs),
    /// Roll back to 0% now; on a rolled-back rollout, re-apply 0%.
    Rollback(ManualArgs),
    /// Tick the controller against live `/metrics` or a Prometheus server until it completes or rolls
    /// back (and the final percent is confirmed applied), or is interrupted. Owns the state file while
    /// it runs.
    Run(RunArgs),
}

/// Arguments of `upramp rollout init`.
#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// The state file to create (refused if it exists).
    #[arg(long, value_name = "FILE")]
    pub state: PathBuf,
    /// A TOML plan; default: 0% 2d, 1% 5d, 10% 4d, 50% 3d, 100% 7d.
    #[arg(long, value_name = "FILE")]
    pub plan: Option<PathBuf>,
    /// The audit log (JSON lines); default `<state>.audit.jsonl`. Remembered in the state.
    #[arg(long, value_name = "FILE")]
    pub audit: Option<PathBuf>,
}

/// Arguments of `upramp rollout status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// The state file.
    #[arg(long, value_name = "FILE")]
    pub state: PathBuf,
    /// Print JSON (`state`, `stage_index`, `percent`, ...) instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of the manual operations.
#[derive(Debug, clap::Args)]
pub struct ManualArgs {
    /// The state file.
    #[arg(long, value_name = "FILE")]
    pub state: PathBuf,
    /// Why, for the audit log.
    #[arg(long, value_name = "TEXT")]
    pub reason: String,
    /// Also write the new percent into this flags TOML file at once (otherwise `run` applies it).
    #[arg(long, value_name = "FILE")]
    pub flags_file: Option<PathBuf>,
    /// The flag's table in the flags file.
    #[arg(long, default_value = upramp_flags::ASYNC_UPLOAD)]
    pub flag: String,
}

/// Arguments of `upramp rollout run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The state file.
    #[arg(long, value_name = "FILE")]
    pub state: PathBuf,
    /// The flags TOML file the fleet hot-reloads; the percent is written there atomically.
    #[arg(long, value_name = "FILE")]
    pub flags_file: PathBuf,
    /// `/metrics` URLs of every instance, summed (a single machine; a fleet uses --prometheus).
    #[arg(long, value_name = "URL", num_args = 1.., required_unless_present = "prometheus", conflicts_with = "prometheus")]
    pub scrape: Vec<String>,
    /// Read the gates with PromQL from this Prometheus server (`http://127.0.0.1:9090`).
    #[arg(long, value_name = "URL")]
    pub prometheus: Option<String>,
    /// Scope the --prometheus queries with this label selector (`job="uploads"`).
    #[arg(long, value_name = "SEL", requires = "prometheus")]
    pub selector: Option<String>,
    /// Time between ticks (`30s`, `5m`).
    #[arg(long, default_value = "30s", value_parser = parse_duration_arg)]
    pub interval: Duration,
    /// The window each evaluation judges (`1h`).
    #[arg(long, default_value = "1h", value_parser = parse_duration_arg)]
    pub window: Duration,
    /// The flag's table in the flags file.
    #[arg(long, default_value = upramp_flags::ASYNC_UPLOAD)]
    pub flag: String,
    /// Stop after this many ticks (for scripted runs and tests; at least 1).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_ticks: Option<u64>,
}

fn parse_duration_arg(text: &str) -> Result<Duration, String> {
    match parse_duration(text) {
        Ok(d) if d.is_zero() => Err(format!("`{text}` must be a positive duration")),
        Ok(d) => Ok(d),
        Err(e) => Err(e.to_string()),
    }
}

/// Run `upramp rollout`.
pub fn run(cmd: RolloutCommand) -> CliResult {
    match cmd {
        RolloutCommand::Init(args) => init(&args),
        RolloutCommand::Status(args) => status(&args),
        RolloutCommand::Advance(args) => manual(&args, Op::Advance),
        RolloutCommand::Pause(args) => manual(&args, Op::Pause),
        RolloutCommand::Resume(args) => manual(&args, Op::Resume),
        RolloutCommand::Rollback(args) => manual(&args, Op::Rollback),
        RolloutCommand::Run(args) => run_loop(&args),
    }
}

fn default_audit_path(state: &Path) -> PathBuf {
    let mut name = state.as_os_str().to_owned();
    name.push(".audit.jsonl");
    PathBuf::from(name)
}

fn audit_path(state_path: &Path, state: &ControllerState) -> PathBuf {
    state
        .audit_log
        .clone()
        .unwrap_or_else(|| default_audit_path(state_path))
}

fn load(store: &StateStore) -> Result<ControllerState, CliError> {
    store.load().map_err(|e| match e {
        StateError::Write { .. } => CliError::work(e),
        other => CliError::usage(other),
    })
}

fn rollout_error(e: RolloutError) -> CliError {
    match e {
        RolloutError::Transition(_) | RolloutError::Plan(_) | RolloutError::NoStore => {
            CliError::usage(e)
        }
        other => CliError::work(other),
    }
}

fn init(args: &InitArgs) -> CliResult {
    let plan = match &args.plan {
        Some(path) => Plan::from_file(path).map_err(CliError::usage)?,
        None => Plan::default_three_week(),
    };
    let mut state = ControllerState::new(plan).map_err(CliError::usage)?;
    state.audit_log = args.audit.clone();
    let store = StateStore::new(&args.state);
    store.create(&state).map_err(|e| match e {
        StateError::Exists { .. } => CliError::usage(e),
        other => CliError::work(other),
    })?;
    let first = &state.plan.stages[0];
    println!(
        "created {}: {} stages, {} of bake, starting at `{}` ({}); audit log {}",
        args.state.display(),
        state.plan.stages.len(),
        upramp_rollout::format_duration(state.plan.total_bake()),
        first.name,
        first.percent,
        audit_path(&args.state, &state).display()
    );
    Ok(())
}

fn status(args: &StatusArgs) -> CliResult {
    let state = load(&StateStore::new(&args.state))?;
    let status = state.status(SystemClock.now());
    if args.json {
        let json = serde_json::to_string_pretty(&status)
            .context("cannot encode the status")
            .map_err(CliError::work)?;
        println!("{json}");
    } else {
        print!("{status}");
    }
    Ok(())
}

#[derive(Debug, Clone, Copy)]
enum Op {
    Advance,
    Pause,
    Resume,
    Rollback,
}

/// A manual operation is committed by compare-and-swap on the state's generation, so it is never lost
/// to a running controller's tick (which discards its own decision instead), even while that tick
/// waits on a slow scrape. With `--flags-file` the percent is applied at once, under the commit lock;
/// otherwise the running controller applies it within one interval.
fn manual(args: &ManualArgs, op: Op) -> CliResult {
    let store = StateStore::new(&args.state);
    let state = load(&store)?;
    let audit = AuditLog::open(audit_path(&args.state, &state)).map_err(CliError::work)?;
    if let Some(bytes) = audit.torn_tail() {
        eprintln!(
            "upramp: warning: the audit log ended in a torn line ({bytes} bytes, from a killed process); moved it to {}.torn",
            audit_path(&args.state, &state).display()
        );
    }
    let mut journal = Journal::new(Some(store), audit, args.flag.clone());
    let mut file_sink = args
        .flags_file
        .as_ref()
        .map(|path| FileSink::new(path, args.flag.clone()));
    let sink = file_sink.as_mut().map(|s| s as &mut dyn FlagSink);
    let committed = commit_manual(
        &mut journal,
        sink,
        SystemClock.now(),
        |state, now| match op {
            Op::Advance => state.advance(now, &args.reason),
            Op::Pause => state.pause(now, &args.reason),
            Op::Resume => state.resume(now, &args.reason),
            Op::Rollback => state.rollback(now, &args.reason),
        },
    )
    .map_err(rollout_error)?;
    println!("{}", one_line(&committed.record, &committed.state));
    if let Some(e) = committed.apply_error {
        return Err(CliError::work(anyhow!(
            "{e}; the decision is saved and `upramp rollout run` re-applies it every tick"
        )));
    }
    Ok(())
}

fn one_line(record: &DecisionRecord, state: &ControllerState) -> String {
    format!(
        "{} {} stage {}/{} `{}` {} -> {}: {}",
        upramp_rollout::format_timestamp(record.at),
        record.decision,
        state.stage_index() + 1,
        state.plan.stages.len(),
        state.stage().map(|s| s.name.as_str()).unwrap_or("?"),
        record.from_percent,
        record.percent,
        record.reason
    )
}

/// Wakes the run loop early on Ctrl-C.
fn interrupt_channel() -> mpsc::Receiver<()> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build();
        if let Ok(runtime) = runtime {
            if runtime.block_on(tokio::signal::ctrl_c()).is_ok() {
                let _ = tx.send(());
            }
        }
    });
    rx
}

/// Refuse what `run` cannot use, before taking the lock or touching anything: bad scrape URLs, a
/// flags file that exists but does not parse or does not configure the flag.
fn check_run_args(args: &RunArgs) -> Result<Box<dyn MetricsSource>, CliError> {
    let source = metrics_source(args)?;
    if args.flags_file.exists() {
        upramp_flags::FlagSources::new(args.flag.clone())
            .with_file(&args.flags_file)
            .resolve(&upramp_flags::EnvSource::empty())
            .map_err(|e| CliError::usage(anyhow!("--flags-file: {e}")))?;
    }
    let env_var = upramp_flags::FlagSources::new(args.flag.clone()).env_var("ROLLOUT");
    if std::env::var_os(&env_var).is_some() {
        eprintln!(
            "upramp: warning: {env_var} is set here; instances with it in their environment ignore the rollout this controller writes (the environment overrides the flags file)"
        );
    }
    Ok(source)
}

/// The gate source `run` reads: a Prometheus server (`--prometheus`, `--selector`) or the instances'
/// `/metrics` (`--scrape`). A bad URL or selector is a usage error.
fn metrics_source(args: &RunArgs) -> Result<Box<dyn MetricsSource>, CliError> {
    let Some(url) = &args.prometheus else {
        let timeout = args.interval.min(Duration::from_secs(10));
        let scrape = ScrapeSource::with_timeout(args.scrape.clone(), args.window, timeout)
            .map_err(|e| CliError::usage(anyhow!("--scrape: {e}")))?;
        return Ok(Box::new(scrape));
    };
    let selector =
        Selector::parse(args.selector.as_deref().unwrap_or_default()).map_err(CliError::usage)?;
    let source = PrometheusSource::new(url, &selector, args.window).map_err(CliError::usage)?;
    let queries = source.queries();
    eprintln!(
        "upramp: reading gates from prometheus {url}: `{}`, `{}`, `{}`",
        queries.counts, queries.p99, queries.fallbacks
    );
    Ok(Box::new(source))
}

fn run_loop(args: &RunArgs) -> CliResult {
    let store = StateStore::new(&args.state);
    // Fail fast on a missing or corrupt state and on unusable arguments before touching anything.
    let initial = load(&store)?;
    let mut source = check_run_args(args)?;
    let _owner = store.acquire_owner().map_err(|e| match e {
        StateError::Owned { .. } => CliError::usage(e),
        other => CliError::work(other),
    })?;
    for removed in store
        .remove_stale_temp_files()
        .map_err(CliError::work)?
        .into_iter()
        .chain(
            upramp_flags::remove_stale_temp_files(
                &args.flags_file,
                upramp_flags::FLAGS_TEMP_PREFIX,
            )
            .map_err(|e| CliError::work(anyhow!("{}: {e}", args.flags_file.display())))?,
        )
    {
        eprintln!(
            "upramp: removed a temporary file left by a killed write: {}",
            removed.display()
        );
    }
    let audit_file = audit_path(&args.state, &initial);
    let audit = AuditLog::open(&audit_file).map_err(CliError::work)?;
    if let Some(bytes) = audit.torn_tail() {
        eprintln!(
            "upramp: warning: the audit log ended in a torn line ({bytes} bytes, from a killed process); moved it to {}.torn",
            audit_file.display()
        );
    }
    let mut sink = FileSink::new(&args.flags_file, args.flag.clone());
    let mut controller = Controller::from_state(initial, &mut source, &mut sink)
        .with_store(store.clone())
        .with_audit(audit)
        .with_flag_name(args.flag.clone());
    // Reconcile first: after a crash the flags file and the state agree before the first window.
    if let Some(e) = controller.reconcile().map_err(rollout_error)? {
        eprintln!("upramp: warning: {e}; retrying every tick");
    }
    let interrupted = interrupt_channel();
    let mut ticks = 0u64;
    loop {
        match controller.tick(SystemClock.now()) {
            Ok(record) => println!("{}", one_line(&record, controller.state())),
            Err(e) if e.is_conflict() => println!(
                "discarded this tick's decision: an operator committed while it was being made ({e})"
            ),
            Err(RolloutError::Sink(e)) => {
                if let Some(record) = &controller.state().last_decision {
                    println!("{}", one_line(record, controller.state()));
                }
                eprintln!("upramp: warning: {e}; retrying every tick");
            }
            Err(e) => return Err(rollout_error(e)),
        }
        let state = controller.state();
        // A finished rollout is enforced until its final percent is confirmed applied.
        if state.applied_percent == Some(state.percent) {
            match &state.phase {
                Phase::Completed { .. } => return Ok(()),
                Phase::RolledBack { reason, .. } => {
                    return Err(CliError::work(anyhow!("rollout rolled back: {reason}")));
                }
                _ => {}
            }
        }
        ticks += 1;
        if args.max_ticks.is_some_and(|max| ticks >= max) {
            return Ok(());
        }
        if wait_reconciling(&mut controller, &interrupted, args.interval) {
            eprintln!("upramp: interrupted; the state is saved, `upramp rollout run` resumes it");
            return Ok(());
        }
    }
}

/// Wait out `interval`, picking up operators' commits (and applying them) every half second; returns
/// whether Ctrl-C arrived.
fn wait_reconciling<S, K>(
    controller: &mut Controller<S, K>,
    interrupted: &mpsc::Receiver<()>,
    interval: Duration,
) -> bool
where
    S: upramp_rollout::MetricsSource,
    K: FlagSink,
{
    let deadline = std::time::Instant::now() + interval;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return false;
        }
        match interrupted.recv_timeout(left.min(Duration::from_millis(500))) {
            Ok(()) => return true,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            // Without a signal listener, still wait rather than spin.
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                std::thread::sleep(left.min(Duration::from_millis(500)));
            }
        }
        match controller.reconcile() {
            Ok(None) => {}
            Ok(Some(e)) => eprintln!("upramp: warning: {e}; retrying"),
            Err(e) => eprintln!("upramp: warning: {e}"),
        }
    }
}
