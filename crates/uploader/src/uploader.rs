//! One request's flow: pre-flight, routing, the first leg, the fallback
//! leg, and the receipt or error.

use std::time::Duration;

use futures::{Stream, StreamExt};
use upramp_flags::Route;
use upramp_providers::{ErrorKind, UploadMeta};
use upramp_telemetry::{Outcome, UploadPath};

use crate::error::UploadError;
use crate::events::LegEvent;
use crate::file_body::preflight;
use crate::handle::Uploader;
use crate::leg::{Job, Progression};
use crate::receipt::Receipt;
use crate::request::UploadRequest;
use crate::routing::route;
use crate::stored_name::{marked, new_marker};

impl Uploader {
    /// Upload one file on the path the flag chooses for its routing key, retrying and falling
    /// back as the flag allows. Returns a receipt, or an error; never both, never neither.
    ///
    /// Dropping the future cancels the upload: the async path's connection is closed and no task
    /// is left behind. A sync-path attempt already running on a blocking thread cannot be
    /// interrupted: it runs to completion or to its timeout in the background, still holding its
    /// `sync_concurrency` slot, and its result is discarded; if that attempt had not started
    /// yet it is skipped. Such a file may therefore be stored without a receipt; re-submitting it
    /// is a new request (with a new stored name, so it will not adopt the orphan).
    pub async fn upload(&self, request: UploadRequest) -> Result<Receipt, UploadError> {
        self.run(request, None).await
    }

    /// Upload one file on `path`, bypassing the flag's routing decision (benchmarks and tests).
    /// Everything else still follows the flag: `max_retries`, the timeout floor, and whether an
    /// async failure falls back to the sync path (set `fallback = false` in the flag to measure
    /// the async path alone). No flag evaluation is recorded.
    pub async fn upload_on(
        &self,
        request: UploadRequest,
        path: Route,
    ) -> Result<Receipt, UploadError> {
        self.run(request, Some(path)).await
    }

    /// Upload many files, at most [`Uploader::concurrency`] requests at once, yielding
    /// `(index in requests, result)` as each finishes (not in request order). Dropping the
    /// stream cancels the uploads still running.
    pub fn upload_many(
        &self,
        requests: Vec<UploadRequest>,
    ) -> impl Stream<Item = (usize, Result<Receipt, UploadError>)> + Send + 'static {
        let uploader = self.clone();
        let limit = self.inner.concurrency;
        futures::stream::iter(requests.into_iter().enumerate())
            .map(move |(index, request)| {
                let uploader = uploader.clone();
                async move { (index, uploader.upload(request).await) }
            })
            .buffer_unordered(limit)
    }

    async fn run(
        &self,
        request: UploadRequest,
        forced: Option<Route>,
    ) -> Result<Receipt, UploadError> {
        let fingerprint = preflight(&request.path).await?;
        let flag = self.inner.flags.snapshot();
        let (start_path, routing) = route(&request, &flag, fingerprint.len, forced);
        // The local checks see the name the caller asked for (the marker keeps its extension,
        // so the verdict is the same), and their errors name it.
        let mut meta = UploadMeta {
            filename: request.requested_name(),
            purpose: request.purpose,
            length: fingerprint.len,
        };
        if let Err(err) = self.inner.provider.check_upload(&meta) {
            self.inner.events.leg(LegEvent {
                path: start_path,
                outcome: Outcome::RejectedBeforeSend,
                duration: Duration::ZERO,
                queue_wait: Duration::ZERO,
                bytes: 0,
                attempts: 0,
                fallback_reason: None,
            });
            return Err(if err.kind == ErrorKind::TooLarge {
                UploadError::TooLarge {
                    path: request.path,
                    size: fingerprint.len,
                    source: err,
                }
            } else {
                UploadError::Rejected {
                    path: request.path,
                    source: err,
                }
            });
        }
        let filename = if self.inner.unique_stored_names {
            let marked = marked(&meta.filename, new_marker());
            std::mem::replace(&mut meta.filename, marked)
        } else {
            meta.filename.clone()
        };
        let deadline = self.inner.timeouts.deadline_for(
            fingerprint.len,
            flag.timeout,
            flag.max_retries,
            flag.fallback,
            &self.inner.retry,
        );
        let job = Job {
            path: request.path,
            filename,
            meta,
            fingerprint,
            flag,
            deadline,
        };

        let mut progression = Progression::default();
        let max_attempts = job.flag.max_retries.saturating_add(1);
        let mut leg_path = start_path;
        let (mut result, fallback_reason) = self
            .leg(&job, &mut progression, start_path, max_attempts)
            .await;
        if let Some(reason) = fallback_reason {
            tracing::warn!(
                file = %job.path.display(),
                provider = self.inner.provider_label,
                reason = reason.as_str(),
                "async upload failed; falling back to the sync path once"
            );
            leg_path = UploadPath::SyncFallback;
            result = self
                .leg(&job, &mut progression, UploadPath::SyncFallback, 1)
                .await
                .0;
        }

        match result {
            Ok(landed) => Ok(Receipt {
                source: job.path,
                file: landed.file,
                filename: job.filename,
                stored_filename: job.meta.filename,
                provider: self.inner.provider_label.to_owned(),
                path: leg_path,
                attempts: progression.attempts,
                bytes: job.meta.length,
                sha256: landed.sha256,
                duration: progression.working,
                queue: progression.queued,
                fallback_reason,
                routing,
                adopted: landed.adopted,
            }),
            Err(failure) => {
                Err(failure.into_error(job.path, leg_path, progression.attempts, fallback_reason))
            }
        }
    }
}
