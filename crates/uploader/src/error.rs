//! Why an upload did not produce a receipt.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use upramp_providers::{ErrorKind, ProviderError};
use upramp_telemetry::{Outcome, UploadPath};

/// Which timeout cut an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimeoutKind {
    /// The body did not start flowing within `Timeouts::connect`.
    Connect,
    /// No progress (no chunk taken, or no answer after the last byte) within `Timeouts::stall`.
    Stall,
    /// The attempt exceeded its size-dependent total timeout.
    Total,
    /// The request exceeded its overall deadline (`Timeouts::deadline`,
    /// [`Timeouts::deadline_for`](crate::Timeouts::deadline_for)).
    Deadline,
}

impl TimeoutKind {
    /// A stable lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            TimeoutKind::Connect => "connect",
            TimeoutKind::Stall => "stall",
            TimeoutKind::Total => "total",
            TimeoutKind::Deadline => "deadline",
        }
    }
}

impl std::fmt::Display for TimeoutKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an upload failed. `Display` is one line that names the file and the cause, and never
/// contains an API key (provider errors never carry one).
///
/// Errors raised before a byte was sent (the first six variants) have no
/// [`path_taken`](UploadError::path_taken) and zero [`attempts`](UploadError::attempts).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UploadError {
    /// The file does not exist.
    #[error("{}: no such file", path.display())]
    NotFound {
        /// The file named by the request.
        path: PathBuf,
    },
    /// The path names a directory.
    #[error("{}: is a directory, not a file", path.display())]
    Directory {
        /// The file named by the request.
        path: PathBuf,
    },
    /// The file exists but cannot be opened or read.
    #[error("{}: cannot read: {source}", path.display())]
    Unreadable {
        /// The file named by the request.
        path: PathBuf,
        /// The operating system's reason.
        #[source]
        source: io::Error,
    },
    /// The file is empty; providers reject zero-byte files.
    #[error("{}: is empty (0 bytes); providers reject empty files", path.display())]
    Empty {
        /// The file named by the request.
        path: PathBuf,
    },
    /// The file is over the provider's limit for the purpose; checked before reading it.
    #[error("{}: too large to upload: {source}", path.display())]
    TooLarge {
        /// The file named by the request.
        path: PathBuf,
        /// The file's size.
        size: u64,
        /// The provider's local limit check.
        #[source]
        source: ProviderError,
    },
    /// The provider's local checks refused the request before sending (purpose, file name).
    #[error("{}: {source}", path.display())]
    Rejected {
        /// The file named by the request.
        path: PathBuf,
        /// The provider's local check.
        #[source]
        source: ProviderError,
    },
    /// The file changed while it was being uploaded (size, modification time, or a different
    /// checksum on a later attempt). Nothing mixed was kept.
    #[error("{}: changed during upload ({detail}); upload abandoned", path.display())]
    Changed {
        /// The file named by the request.
        path: PathBuf,
        /// What changed.
        detail: String,
        /// The path of the leg that saw it.
        path_taken: UploadPath,
        /// HTTP attempts made, all legs together.
        attempts: u32,
    },
    /// The provider refused or failed, after the retries and fallback the policy allows.
    #[error("{}: upload failed on the {path_taken} path after {attempts} attempt(s): {source}", path.display())]
    Provider {
        /// The file named by the request.
        path: PathBuf,
        /// The path of the last leg.
        path_taken: UploadPath,
        /// HTTP attempts made, all legs together.
        attempts: u32,
        /// The async leg's failing outcome when the request fell back and the fallback failed too.
        fallback_reason: Option<Outcome>,
        /// The last error.
        #[source]
        source: ProviderError,
    },
    /// The last attempt timed out.
    #[error("{}: upload timed out ({kind} timeout, {after:?}) on the {path_taken} path after {attempts} attempt(s)", path.display())]
    Timeout {
        /// The file named by the request.
        path: PathBuf,
        /// Which timeout.
        kind: TimeoutKind,
        /// Its length.
        after: Duration,
        /// The path of the last leg.
        path_taken: UploadPath,
        /// HTTP attempts made, all legs together.
        attempts: u32,
        /// The async leg's failing outcome when the request fell back and the fallback failed too.
        fallback_reason: Option<Outcome>,
    },
    /// The body may have reached the provider but no answer came, and the uploader could not
    /// establish whether it was stored: re-sending could store a duplicate and adopting could name
    /// another request's file, so the uploader stops here. The file may be stored.
    #[error("{}: outcome unknown on the {path_taken} path after {attempts} attempt(s): the file may have been stored; {cause}", path.display())]
    OutcomeUnknown {
        /// The file named by the request.
        path: PathBuf,
        /// The path of the last leg.
        path_taken: UploadPath,
        /// HTTP attempts made, all legs together.
        attempts: u32,
        /// Why it could not be established.
        #[source]
        cause: UnknownCause,
    },
    /// The upload was cancelled: the runtime shut down under it.
    #[error("{}: upload cancelled", path.display())]
    Cancelled {
        /// The file named by the request.
        path: PathBuf,
        /// The path of the leg in progress.
        path_taken: Option<UploadPath>,
        /// HTTP attempts made, all legs together.
        attempts: u32,
    },
    /// An upload task panicked (a bug, reported instead of crashing the caller).
    #[error("{}: upload task failed: {detail}", path.display())]
    Internal {
        /// The file named by the request.
        path: PathBuf,
        /// The panic or join error.
        detail: String,
    },
}

/// Why an ambiguous attempt's outcome stayed unknown.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UnknownCause {
    /// The provider's file list could not be read (or not within `Timeouts::list`).
    #[error("checking the provider's file list failed: {0}")]
    ListFailed(#[source] ProviderError),
    /// Stored names are not unique (`unique_stored_names(false)`) and the list holds files with
    /// this request's name and size created since the ambiguous attempt: none can be proven to
    /// hold this request's bytes.
    #[error("{candidates} stored file(s) share its name and size and stored names are not unique, so none can be proven to be this request's")]
    NotProvable {
        /// How many listed files matched.
        candidates: usize,
    },
    /// The request's overall deadline passed while an attempt that may have stored the file was
    /// unanswered or unchecked.
    #[error("the request deadline of {0:?} passed before it could be checked")]
    Deadline(Duration),
}

impl UploadError {
    /// The file the failed request named.
    pub fn file(&self) -> &std::path::Path {
        match self {
            UploadError::NotFound { path }
            | UploadError::Directory { path }
            | UploadError::Unreadable { path, .. }
            | UploadError::Empty { path }
            | UploadError::TooLarge { path, .. }
            | UploadError::Rejected { path, .. }
            | UploadError::Changed { path, .. }
            | UploadError::Provider { path, .. }
            | UploadError::Timeout { path, .. }
            | UploadError::OutcomeUnknown { path, .. }
            | UploadError::Cancelled { path, .. }
            | UploadError::Internal { path, .. } => path,
        }
    }

    /// The path of the last leg that ran, or `None` when the request failed before sending.
    pub fn path_taken(&self) -> Option<UploadPath> {
        match self {
            UploadError::Changed { path_taken, .. }
            | UploadError::Provider { path_taken, .. }
            | UploadError::Timeout { path_taken, .. }
            | UploadError::OutcomeUnknown { path_taken, .. } => Some(*path_taken),
            UploadError::Cancelled { path_taken, .. } => *path_taken,
            _ => None,
        }
    }

    /// HTTP attempts made before failing, all legs together (0 when nothing was sent).
    pub fn attempts(&self) -> u32 {
        match self {
            UploadError::Changed { attempts, .. }
            | UploadError::Provider { attempts, .. }
            | UploadError::Timeout { attempts, .. }
            | UploadError::OutcomeUnknown { attempts, .. }
            | UploadError::Cancelled { attempts, .. } => *attempts,
            _ => 0,
        }
    }

    /// The outcome label this failure is counted under.
    pub fn outcome(&self) -> Outcome {
        match self {
            UploadError::NotFound { .. }
            | UploadError::Directory { .. }
            | UploadError::Unreadable { .. }
            | UploadError::Empty { .. }
            | UploadError::TooLarge { .. }
            | UploadError::Rejected { .. } => Outcome::RejectedBeforeSend,
            UploadError::Changed { .. } => Outcome::ClientError,
            UploadError::Provider { source, .. } => outcome_of(source),
            UploadError::Timeout { .. } => Outcome::Timeout,
            UploadError::OutcomeUnknown { .. }
            | UploadError::Cancelled { .. }
            | UploadError::Internal { .. } => Outcome::TransportError,
        }
    }

    /// True when the input itself is bad (missing, unreadable, empty, a directory, too large, or
    /// refused by a local check): fixing the request, not retrying, is the remedy.
    pub fn is_bad_input(&self) -> bool {
        self.outcome() == Outcome::RejectedBeforeSend
    }
}

/// The outcome label of a provider error.
pub(crate) fn outcome_of(err: &ProviderError) -> Outcome {
    if err.rejected_before_send {
        return Outcome::RejectedBeforeSend;
    }
    match err.kind {
        ErrorKind::RateLimited => Outcome::RateLimited,
        ErrorKind::Server | ErrorKind::MalformedResponse => Outcome::ServerError,
        ErrorKind::Transport => Outcome::TransportError,
        ErrorKind::Timeout => Outcome::Timeout,
        ErrorKind::Authentication
        | ErrorKind::PermissionDenied
        | ErrorKind::NotFound
        | ErrorKind::InvalidRequest
        | ErrorKind::TooLarge
        | ErrorKind::QuotaExhausted
        | ErrorKind::Body => Outcome::ClientError,
    }
}
