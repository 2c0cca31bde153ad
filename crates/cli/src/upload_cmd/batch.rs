//! A batch of uploads that ends with one line per file, however it ends.
//!
//! At most `window` files are handed to the uploader at once (the uploader's async limit, so none of
//! them waits there for an async slot). Two things stop a batch early:
//!
//! - a signal (SIGINT or SIGTERM): no further file is handed over; those in flight get the grace
//!   period to finish, and a second signal (or the end of the grace period) cuts them off;
//! - stdout failing (a closed pipe, `| head -2`): no further file is handed over, those in flight
//!   finish, and their receipts go to stderr.
//!
//! Files never handed over are reported as not started; uploads cut off in flight as outcome unknown.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use tokio::task::{JoinError, JoinSet};
use tokio::time::Instant;
use upramp_uploader::{Receipt, UploadError, UploadRequest, Uploader};

use super::report::Report;
use crate::exit::{CliError, StopSignal};

/// How a batch ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ending {
    /// Every file was handed to the uploader and ran to its end.
    Complete,
    /// A signal stopped the batch early.
    Interrupted(StopSignal),
    /// Stdout failed, so the batch stopped handing out files.
    OutputFailed,
}

/// Run every request through `uploader`, reporting each file once on `report`.
pub(super) async fn run(
    uploader: &Uploader,
    requests: Vec<UploadRequest>,
    window: usize,
    grace: Duration,
    report: &mut Report,
) -> Result<Ending, CliError> {
    let mut signals = Signals::listen().map_err(CliError::work)?;
    let mut waiting = requests.into_iter();
    let mut in_flight: JoinSet<Result<Receipt, UploadError>> = JoinSet::new();
    let mut files: HashMap<tokio::task::Id, PathBuf> = HashMap::new();
    let mut interrupted: Option<StopSignal> = None;
    let mut grace_ends: Option<Instant> = None;
    let mut cut_off: Option<String> = None;

    loop {
        if interrupted.is_none() && report.stdout_error().is_none() {
            while in_flight.len() < window {
                let Some(request) = waiting.next() else { break };
                let path = request.path.clone();
                let uploader = uploader.clone();
                let task = in_flight.spawn(async move { uploader.upload(request).await });
                files.insert(task.id(), path);
            }
        }
        if in_flight.is_empty() {
            break;
        }
        tokio::select! {
            Some(joined) = in_flight.join_next_with_id() => record(joined, &mut files, report),
            signal = signals.next() => match interrupted {
                None => {
                    interrupted = Some(signal);
                    grace_ends = Some(Instant::now() + grace);
                    report.notice(&format!(
                        "{signal}: starting no more uploads; waiting up to {} for the {} in flight \
                         (signal again to stop them now)",
                        upramp_rollout::format_duration(grace),
                        in_flight.len()
                    ));
                }
                Some(first) => {
                    cut_off = Some(format!("{first}, then {signal}"));
                    break;
                }
            },
            () = until(grace_ends) => {
                let signal = interrupted.map_or("a signal", StopSignal::name);
                cut_off = Some(format!(
                    "{signal}, then the {} grace period ran out",
                    upramp_rollout::format_duration(grace)
                ));
                break;
            }
        }
    }

    if let Some(why) = cut_off {
        in_flight.abort_all();
        // A task that finished before the abort reached it still yields its result.
        while let Some(joined) = in_flight.join_next_with_id().await {
            match joined {
                Err(err) if err.is_cancelled() => {
                    if let Some(path) = files.remove(&err.id()) {
                        report.cut_off(&path, &why);
                    }
                }
                joined => record(joined, &mut files, report),
            }
        }
    }

    let why_not_started = match interrupted {
        Some(signal) => format!("interrupted by {signal}"),
        None => "stdout could not be written".to_owned(),
    };
    for request in waiting {
        report.not_started(&request.path, &why_not_started);
    }
    Ok(match interrupted {
        Some(signal) => Ending::Interrupted(signal),
        None if report.stdout_error().is_some() => Ending::OutputFailed,
        None => Ending::Complete,
    })
}

fn record(
    joined: Result<(tokio::task::Id, Result<Receipt, UploadError>), JoinError>,
    files: &mut HashMap<tokio::task::Id, PathBuf>,
    report: &mut Report,
) {
    match joined {
        Ok((id, result)) => {
            files.remove(&id);
            match result {
                Ok(receipt) => report.receipt(&receipt),
                Err(err) => report.failure(&err),
            }
        }
        Err(err) => {
            if let Some(path) = files.remove(&err.id()) {
                report.lost(&path, &format!("the upload task failed: {err}"));
            }
        }
    }
}

/// Waits until `deadline`, or forever without one.
async fn until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// SIGINT and SIGTERM, caught from the start of the batch so that neither kills the process while
/// uploads are in flight.
#[cfg(unix)]
struct Signals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

#[cfg(unix)]
impl Signals {
    fn listen() -> anyhow::Result<Self> {
        use anyhow::Context;
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            interrupt: signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?,
            terminate: signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?,
        })
    }

    /// The next signal; pending forever if the runtime stops delivering them.
    async fn next(&mut self) -> StopSignal {
        tokio::select! {
            Some(()) = self.interrupt.recv() => StopSignal::Interrupt,
            Some(()) = self.terminate.recv() => StopSignal::Terminate,
            else => std::future::pending().await,
        }
    }
}

/// Ctrl-C, the one stop signal outside Unix.
#[cfg(not(unix))]
struct Signals;

#[cfg(not(unix))]
impl Signals {
    fn listen() -> anyhow::Result<Self> {
        Ok(Signals)
    }

    /// The next Ctrl-C; pending forever if it cannot be listened for.
    async fn next(&mut self) -> StopSignal {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
        StopSignal::Interrupt
    }
}
