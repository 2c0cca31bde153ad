//! The streaming attempt: the file read in chunks into a body of known length, hashed as it goes,
//! cut by the connect, stall and total timeouts.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::time::Instant;
use upramp_providers::{RequestOptions, UploadBody};

use crate::error::TimeoutKind;
use crate::failure::Failure;
use crate::file_body::{HashingFileStream, Progress, ReadFailure};
use crate::handle::Uploader;
use crate::leg::{Job, Sent};
use crate::timeouts::Timeouts;

impl Uploader {
    /// One streaming attempt; `progress` is shared with the caller, which reads how much of the
    /// body left us even if this future is dropped.
    pub(crate) async fn attempt_async(
        &self,
        job: &Job,
        total: Duration,
        progress: Arc<Progress>,
    ) -> Sent {
        let stream = match HashingFileStream::open(
            &job.path,
            job.fingerprint,
            self.inner.chunk_size,
            progress.clone(),
        )
        .await
        {
            Ok(stream) => stream,
            Err(failure) => return Sent::read_failure(failure),
        };
        let body = UploadBody::Stream {
            stream: stream.into_stream().boxed(),
            length: job.meta.length,
        };
        // The transport's own timeout is a backstop a little past ours, so ours names the cause.
        let options = RequestOptions {
            timeout: Some(total.saturating_add(Duration::from_secs(1))),
        };
        let upload = self
            .inner
            .provider
            .upload_with(job.meta.clone(), body, &options);
        let watchdog = watch_progress(&progress, self.inner.timeouts);
        let result = tokio::select! {
            biased;
            result = upload => result.map_err(Failure::Provider),
            (kind, after) = watchdog => Err(Failure::Timeout(kind, after)),
            () = tokio::time::sleep(total) => Err(Failure::Timeout(TimeoutKind::Total, total)),
        };
        if let Some(why) = progress.change() {
            return Sent::read_failure(ReadFailure::Changed(why));
        }
        Sent {
            result,
            sha256: progress.sha256(),
            sent_all: progress.pulled() == job.meta.length,
        }
    }
}

/// Resolves when the body makes no progress for too long: nothing pulled within `connect` of the
/// start, or nothing within `stall` of the last pull (which, once the body is all sent, bounds the
/// wait for the answer).
async fn watch_progress(progress: &Progress, timeouts: Timeouts) -> (TimeoutKind, Duration) {
    let start = Instant::now();
    loop {
        let (deadline, kind, limit) = if progress.pulled() == 0 {
            (
                start + timeouts.connect,
                TimeoutKind::Connect,
                timeouts.connect,
            )
        } else {
            (
                progress.last_pull() + timeouts.stall,
                TimeoutKind::Stall,
                timeouts.stall,
            )
        };
        if Instant::now() >= deadline {
            return (kind, limit);
        }
        tokio::time::sleep_until(deadline).await;
    }
}
