//! Where each file's one line goes: receipts on stdout, errors on stderr, and the receipts on stderr
//! too once stdout cannot be written (a closed pipe, a full disk), so a stored file never goes
//! unreported.

use std::io::{self, Write};
use std::path::Path;

use serde::Serialize;
use upramp_uploader::{Receipt, UploadError};

/// How many files ended which way.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Tally {
    /// Receipts printed (on stdout, or on stderr after stdout failed).
    pub receipts: usize,
    /// Receipts printed on stderr because stdout could not take them.
    pub receipts_on_stderr: usize,
    /// Uploads that ended in an error.
    pub failed: usize,
    /// Uploads cut off in flight: the provider may or may not hold the file.
    pub unknown: usize,
    /// Files never handed to the uploader.
    pub not_started: usize,
}

/// A receipt as printed with `--json`: the provider's `id` first, then the receipt's fields.
#[derive(Serialize)]
struct JsonReceipt<'a> {
    id: &'a str,
    #[serde(flatten)]
    receipt: &'a Receipt,
}

/// The prefix of a receipt line on stderr, so it can be told from error lines there.
pub(super) const STDERR_RECEIPT_PREFIX: &str = "upramp: receipt: ";

/// Prints one line per file and counts them.
pub(super) struct Report {
    json: bool,
    progress: Option<indicatif::ProgressBar>,
    stdout_error: Option<io::Error>,
    tally: Tally,
}

impl Report {
    /// A report in JSON lines or human text, with a file-count bar when stderr is a terminal.
    pub(super) fn new(json: bool, progress: Option<indicatif::ProgressBar>) -> Self {
        Report {
            json,
            progress,
            stdout_error: None,
            tally: Tally::default(),
        }
    }

    /// Why stdout stopped taking receipts, if it did.
    pub(super) fn stdout_error(&self) -> Option<&io::Error> {
        self.stdout_error.as_ref()
    }

    /// A stored file's receipt: on stdout while it can be written, on stderr after that.
    pub(super) fn receipt(&mut self, receipt: &Receipt) {
        self.tally.receipts += 1;
        let encoded = if self.json {
            serde_json::to_string(&JsonReceipt {
                id: receipt.id(),
                receipt,
            })
        } else {
            Ok(human_line(receipt))
        };
        match encoded {
            Ok(line) => {
                if !self.try_stdout(&line) {
                    self.receipt_on_stderr(&line);
                }
            }
            // A path that is not UTF-8 has no JSON string; the file is stored all the same.
            Err(err) => self.receipt_on_stderr(&format!(
                "{} (not valid JSON text: {err})",
                human_line(receipt)
            )),
        }
        self.advance();
    }

    /// Writes `line` on stdout unless it already failed; on the first failure, says so on stderr.
    fn try_stdout(&mut self, line: &str) -> bool {
        if self.stdout_error.is_some() {
            return false;
        }
        let written = self.suspended(|| {
            let mut stdout = io::stdout().lock();
            writeln!(stdout, "{line}").and_then(|()| stdout.flush())
        });
        match written {
            Ok(()) => true,
            Err(err) => {
                self.stderr_line(&format!(
                    "upramp: error: cannot write to stdout: {err}; starting no more uploads, \
                     the remaining receipts follow on stderr"
                ));
                self.stdout_error = Some(err);
                false
            }
        }
    }

    fn receipt_on_stderr(&mut self, line: &str) {
        self.tally.receipts_on_stderr += 1;
        self.stderr_line(&format!("{STDERR_RECEIPT_PREFIX}{line}"));
    }

    /// An upload that ended in an error.
    pub(super) fn failure(&mut self, err: &UploadError) {
        self.tally.failed += 1;
        self.file_error(&err.to_string());
    }

    /// An upload whose task failed without a result (a panic): nothing is known about the file.
    pub(super) fn lost(&mut self, path: &Path, why: &str) {
        self.tally.unknown += 1;
        self.file_error(&format!(
            "{}: {why}: outcome unknown (the provider may hold the file)",
            path.display()
        ));
    }

    /// An upload cut off in flight.
    pub(super) fn cut_off(&mut self, path: &Path, why: &str) {
        self.tally.unknown += 1;
        self.file_error(&format!(
            "{}: interrupted in flight ({why}): outcome unknown (the provider may hold the file)",
            path.display()
        ));
    }

    /// A file that was never handed to the uploader: nothing of it was sent.
    pub(super) fn not_started(&mut self, path: &Path, why: &str) {
        self.tally.not_started += 1;
        self.file_error(&format!("{}: not started: {why}", path.display()));
    }

    /// A line about the batch as a whole (not about one file).
    pub(super) fn notice(&self, text: &str) {
        self.stderr_line(&format!("upramp: {text}"));
    }

    /// Clears the progress bar.
    pub(super) fn finish(self) -> Tally {
        if let Some(bar) = &self.progress {
            bar.finish_and_clear();
        }
        self.tally
    }

    fn file_error(&self, message: &str) {
        self.stderr_line(&format!("upramp: error: {message}"));
        self.advance();
    }

    fn advance(&self) {
        if let Some(bar) = &self.progress {
            bar.inc(1);
        }
    }

    /// One line on stderr. If stderr itself cannot be written there is nowhere left to report to.
    fn stderr_line(&self, line: &str) {
        let line = line.replace(['\n', '\r'], " ");
        let _ = self.suspended(|| writeln!(io::stderr().lock(), "{line}"));
    }

    fn suspended<T>(&self, write: impl FnOnce() -> T) -> T {
        match &self.progress {
            Some(bar) => bar.suspend(write),
            None => write(),
        }
    }
}

fn human_line(receipt: &Receipt) -> String {
    let mut line = format!(
        "{}: id={} bytes={} sha256={} path={} attempts={} duration={:.1}ms",
        receipt.source.display(),
        receipt.id(),
        receipt.bytes,
        receipt.sha256,
        receipt.path,
        receipt.attempts,
        receipt.duration.as_secs_f64() * 1_000.0,
    );
    if let Some(reason) = receipt.fallback_reason {
        line.push_str(&format!(" fallback_reason={reason}"));
    }
    if receipt.adopted {
        line.push_str(" adopted=true");
    }
    line
}
