//! `cargo xtask validate`: the accelerated five-stage rollout and the five fault scenarios, run against
//! in-process Kimi and GLM stand-ins with real uploads over loopback, judged by the production controller
//! on a simulated clock.
//!
//! The engine lives in the `upramp-validate` library ([`upramp_validate::engine`]) so the end-to-end tests run
//! the very same code; this module adds the command line, the live progress display, the files and the
//! exit code (0 only if every check held, 1 if one failed, 2 for bad usage).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use upramp_validate::artifacts::{output_dir, write_all};
use upramp_validate::engine::{self, Options, Part, Progress, ProgressEvent};
use upramp_validate::report::summary_table;

/// Options of `cargo xtask validate`.
#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    /// Run one part only: stages, async-breaks, latency, outage, restart, low-traffic,
    /// operator-rollback or crash-commit.
    #[arg(long, value_name = "NAME", value_parser = parse_part)]
    pub scenario: Option<Part>,
    /// Seed of every random choice (routing keys, files, providers, fault draws, backoff jitter).
    #[arg(long, value_name = "N", default_value_t = Options::default().seed)]
    pub seed: u64,
    /// Less traffic, same plan, gates and checks.
    #[arg(long)]
    pub quick: bool,
    /// Print the report as JSON on stdout instead of the summary table.
    #[arg(long)]
    pub json: bool,
}

fn parse_part(value: &str) -> Result<Part, engine::UnknownPart> {
    value.parse()
}

/// Live progress: a spinner per part on a terminal, plain lines otherwise (one per part and per
/// non-hold decision, so logs stay short).
struct Display {
    bar: Option<ProgressBar>,
    started: Instant,
    last_line: Mutex<Option<Instant>>,
}

impl Display {
    fn new() -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template("{spinner} {elapsed:>4} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        Display {
            bar,
            started: Instant::now(),
            last_line: Mutex::new(None),
        }
    }

    fn line(&self, text: &str) {
        match &self.bar {
            Some(bar) => bar.println(text),
            None => eprintln!("{text}"),
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Progress for Display {
    fn on(&self, event: &ProgressEvent<'_>) {
        let wall = self.started.elapsed().as_secs_f64();
        match event {
            ProgressEvent::Started { part, index, of } => {
                self.line(&format!("[{wall:5.1}s] {index}/{of} {part}: started"));
            }
            ProgressEvent::Ticked {
                part,
                hours,
                percent,
                decision,
                requests,
            } => {
                let message = format!(
                    "{part}: day {:5.2}  rollout {percent:>5}%  {decision:<8} {requests} requests",
                    hours / 24.0
                );
                match &self.bar {
                    Some(bar) => {
                        bar.set_message(message.clone());
                        if *decision != "hold" {
                            bar.println(format!("[{wall:5.1}s] {message}"));
                        }
                    }
                    None => {
                        // Plain output: every decision that changes something, and a heartbeat at most
                        // every few seconds.
                        let mut last = self
                            .last_line
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner);
                        let due = last.is_none_or(|t| t.elapsed() >= Duration::from_secs(5));
                        if *decision != "hold" || due {
                            eprintln!("[{wall:5.1}s] {message}");
                            *last = Some(Instant::now());
                        }
                    }
                }
            }
            ProgressEvent::Finished {
                part,
                passed,
                summary,
            } => {
                let verdict = if *passed { "PASS" } else { "FAIL" };
                self.line(&format!("[{wall:5.1}s] {part}: {verdict}: {summary}"));
            }
        }
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_owned)
}

/// Run the validation; `Ok(1)` when a check failed, `Err` (exit 2 in `main`) when it could not run.
// `main.rs` (owned by the lead) calls every command with its arguments by value.
#[allow(clippy::needless_pass_by_value)]
pub fn run(args: ValidateArgs) -> anyhow::Result<ExitCode> {
    let ValidateArgs {
        scenario,
        seed,
        quick,
        json,
    } = args;
    let options = Options {
        seed,
        quick,
        only: scenario,
    };
    // The process-wide recorder: the uploaders' and the controllers' metrics, rendered at the end.
    let metrics = upramp_telemetry::install().context("installing the metrics recorder")?;
    // The clients' runtime, as a service instance's would be: a worker per core. The stand-ins run on
    // a thread of their own (the engine starts it), the sync legs on the blocking pool.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let display = Display::new();
    let wall = Instant::now();
    let result = runtime.block_on(engine::run(&options, &display));
    display.finish();
    let report = result.context("validation could not run")?;

    let target = std::env::var_os("CARGO_TARGET_DIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .map(|dir| {
            // Cargo reads a relative CARGO_TARGET_DIR against the directory it was started in.
            std::env::current_dir().map_or(dir.clone(), |cwd| cwd.join(&dir))
        });
    let dir = output_dir(&workspace_root(), target.as_deref());
    let files = write_all(&dir, &report, &metrics.render_sorted())
        .context("writing the validation report")?;

    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).context("serialising the report")?
        );
    } else {
        print!("{}", summary_table(&report));
        println!(
            "simulated time: {:.1} days; wall time: {:.1} s",
            report.run.simulated_days,
            wall.elapsed().as_secs_f64()
        );
        println!(
            "wrote {}, {}, {}, {}",
            files.report_md.display(),
            files.report_json.display(),
            files.timeline_svg.display(),
            files.metrics_prom.display()
        );
    }
    Ok(if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
