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
    parse_duration, AuditLog, Clock, Controller, ControllerState, DecisionRecord, FileSink,
    FlagSink, FnSource, GateInputs, MetricsSource, Phase, Plan, PrometheusSource, RecordingSink,
    RolloutError, ScrapeSource, Selector, SourceError, StateError, StateStore, SystemClock,
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
    /// Roll back to 0% now.
    Rollback(ManualArgs),
    /// Tick the controller against live `/metrics` or a Prometheus server until it completes, rolls back or is interrupted.
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
    /// Stop after this many ticks (for scripted runs and tests).
    #[arg(long, value_name = "N")]
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
        RolloutError::InvalidTransition { .. }
        | RolloutError::MissingReason { .. }
        | RolloutError::Plan(_) => CliError::usage(e),
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

fn no_metrics(_now: std::time::SystemTime) -> Result<GateInputs, SourceError> {
    Err(SourceError::Other(
        "manual operations read no metrics".to_owned(),
    ))
}

fn manual(args: &ManualArgs, op: Op) -> CliResult {
    let store = StateStore::new(&args.state);
    let state = load(&store)?;
    let audit = AuditLog::open(audit_path(&args.state, &state)).map_err(CliError::work)?;
    let sink: Box<dyn FlagSink> = match &args.flags_file {
        Some(path) => Box::new(FileSink::new(path, args.flag.clone())),
        None => Box::new(RecordingSink::default()),
    };
    let mut controller = Controller::from_state(state, FnSource(no_metrics), sink)
        .with_store(store)
        .with_audit(audit)
        .with_flag_name(args.flag.clone());
    let now = SystemClock.now();
    let record = match op {
        Op::Advance => controller.advance(now, &args.reason),
        Op::Pause => controller.pause(now, &args.reason),
        Op::Resume => controller.resume(now, &args.reason),
        Op::Rollback => controller.rollback(now, &args.reason),
    }
    .map_err(rollout_error)?;
    println!("{}", one_line(&record, controller.state()));
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

/// The gate source `run` reads: a Prometheus server (`--prometheus`, `--selector`) or the instances'
/// `/metrics` (`--scrape`). A bad URL or selector is a usage error.
fn metrics_source(args: &RunArgs) -> Result<Box<dyn MetricsSource>, CliError> {
    let Some(url) = &args.prometheus else {
        let scrape =
            ScrapeSource::new(args.scrape.clone(), args.window).map_err(CliError::usage)?;
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
    // Fail fast on a missing or corrupt state before touching the network.
    let initial = load(&store)?;
    if initial.phase.is_terminal() {
        return Err(CliError::usage(anyhow!(
            "rollout in {} is already {}; nothing to run",
            args.state.display(),
            initial.phase.as_str()
        )));
    }
    let mut source = metrics_source(args)?;
    let mut sink = FileSink::new(&args.flags_file, args.flag.clone());
    let interrupted = interrupt_channel();
    let mut ticks = 0u64;
    loop {
        // Reload every tick so manual operations made while running are honoured.
        let state = load(&store)?;
        let audit = AuditLog::open(audit_path(&args.state, &state)).map_err(CliError::work)?;
        let mut controller = Controller::from_state(state, &mut source, &mut sink)
            .with_store(store.clone())
            .with_audit(audit)
            .with_flag_name(args.flag.clone());
        match controller.tick(SystemClock.now()) {
            Ok(record) => println!("{}", one_line(&record, controller.state())),
            Err(RolloutError::Sink(e)) => eprintln!("upramp: warning: {e}; retrying next tick"),
            Err(e) => return Err(rollout_error(e)),
        }
        match &controller.state().phase {
            Phase::Completed { .. } => return Ok(()),
            Phase::RolledBack { reason, .. } => {
                return Err(CliError::work(anyhow!("rollout rolled back: {reason}")));
            }
            _ => {}
        }
        ticks += 1;
        if args.max_ticks.is_some_and(|max| ticks >= max) {
            return Ok(());
        }
        match interrupted.recv_timeout(args.interval) {
            Ok(()) => {
                eprintln!(
                    "upramp: interrupted; the state is saved, `upramp rollout run` resumes it"
                );
                return Ok(());
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            // Without a signal listener, still wait out the interval rather than spin.
            Err(mpsc::RecvTimeoutError::Disconnected) => std::thread::sleep(args.interval),
        }
    }
}
