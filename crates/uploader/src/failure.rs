//! Why an attempt or a leg failed, how each failure is classified (retry, fall back, ambiguous),
//! and the [`UploadError`] it becomes.

use std::path::PathBuf;
use std::time::Duration;

use upramp_providers::{ErrorKind, ProviderError};
use upramp_telemetry::{Outcome, UploadPath};

use crate::error::{outcome_of, TimeoutKind, UnknownCause, UploadError};

/// Why an attempt (or a leg) failed.
#[derive(Debug)]
pub(crate) enum Failure {
    Provider(ProviderError),
    Timeout(TimeoutKind, Duration),
    Changed(String),
    Io(std::io::Error),
    /// Listing the provider's files to resolve an ambiguous attempt failed.
    Unresolved(ProviderError),
    /// Stored names are not unique and this many listed files may be the ambiguous attempt's.
    NotProvable(usize),
    /// The request's deadline passed; `may_be_stored` when an attempt that may have stored the
    /// file was unanswered or not yet checked.
    Deadline {
        after: Duration,
        may_be_stored: bool,
    },
    Cancelled,
    Internal(String),
}

impl Failure {
    pub(crate) fn outcome(&self) -> Outcome {
        match self {
            Failure::Provider(err) | Failure::Unresolved(err) => outcome_of(err),
            Failure::Timeout(..) | Failure::Deadline { .. } => Outcome::Timeout,
            Failure::Changed(_) | Failure::Io(_) => Outcome::ClientError,
            Failure::NotProvable(_) | Failure::Cancelled | Failure::Internal(_) => {
                Outcome::TransportError
            }
        }
    }

    /// Whether sending again may succeed (per the providers' contract, plus our own timeouts).
    pub(crate) fn is_retryable(&self) -> bool {
        match self {
            Failure::Provider(err) | Failure::Unresolved(err) => err.is_retryable(),
            Failure::Timeout(..) => true,
            Failure::Changed(_)
            | Failure::Io(_)
            | Failure::NotProvable(_)
            | Failure::Deadline { .. }
            | Failure::Cancelled
            | Failure::Internal(_) => false,
        }
    }

    /// True when the failure is about resolving an earlier attempt, not about an attempt itself.
    pub(crate) fn is_resolution(&self) -> bool {
        matches!(self, Failure::Unresolved(_) | Failure::NotProvable(_))
    }

    pub(crate) fn retry_after(&self) -> Option<Duration> {
        match self {
            Failure::Provider(err) => err.retry_after,
            _ => None,
        }
    }

    /// Whether the sync path can plausibly survive what broke the async path: retryable provider
    /// errors, transport failures and timeouts. Client errors (bad key, bad request, too large,
    /// quota) would fail the same way and waste quota; unresolved ambiguity and a passed deadline
    /// never fall back.
    pub(crate) fn allows_fallback(&self) -> bool {
        match self {
            Failure::Provider(err) => {
                err.is_retryable() || matches!(err.kind, ErrorKind::Transport | ErrorKind::Timeout)
            }
            Failure::Timeout(..) => true,
            _ => false,
        }
    }

    /// A failure where the provider may have stored the file although we did not learn so: no
    /// answer after the whole body (timeout, reset, EOF), or a success answer we could not read.
    pub(crate) fn is_ambiguous(&self) -> bool {
        match self {
            Failure::Provider(err) => matches!(
                err.kind,
                ErrorKind::Transport | ErrorKind::Timeout | ErrorKind::MalformedResponse
            ),
            Failure::Timeout(..) => true,
            _ => false,
        }
    }

    /// The error a request ending in this failure reports.
    pub(crate) fn into_error(
        self,
        path: PathBuf,
        path_taken: UploadPath,
        attempts: u32,
        fallback_reason: Option<Outcome>,
    ) -> UploadError {
        match self {
            Failure::Provider(source) => UploadError::Provider {
                path,
                path_taken,
                attempts,
                fallback_reason,
                source,
            },
            Failure::Timeout(kind, after) => UploadError::Timeout {
                path,
                kind,
                after,
                path_taken,
                attempts,
                fallback_reason,
            },
            Failure::Deadline {
                after,
                may_be_stored: false,
            } => UploadError::Timeout {
                path,
                kind: TimeoutKind::Deadline,
                after,
                path_taken,
                attempts,
                fallback_reason,
            },
            Failure::Deadline {
                after,
                may_be_stored: true,
            } => UploadError::OutcomeUnknown {
                path,
                path_taken,
                attempts,
                cause: UnknownCause::Deadline(after),
            },
            Failure::Changed(detail) => UploadError::Changed {
                path,
                detail,
                path_taken,
                attempts,
            },
            Failure::Io(source) => UploadError::Unreadable { path, source },
            Failure::Unresolved(source) => UploadError::OutcomeUnknown {
                path,
                path_taken,
                attempts,
                cause: UnknownCause::ListFailed(source),
            },
            Failure::NotProvable(candidates) => UploadError::OutcomeUnknown {
                path,
                path_taken,
                attempts,
                cause: UnknownCause::NotProvable { candidates },
            },
            Failure::Cancelled => UploadError::Cancelled {
                path,
                path_taken: Some(path_taken),
                attempts,
            },
            Failure::Internal(detail) => UploadError::Internal { path, detail },
        }
    }
}
