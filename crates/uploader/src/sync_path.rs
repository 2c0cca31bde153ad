//! The legacy attempt: the whole file read into memory and sent by the blocking client on a
//! blocking thread, which holds the leg's sync slot until its call returns.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use upramp_providers::RequestOptions;

use crate::error::TimeoutKind;
use crate::failure::Failure;
use crate::file_body::read_whole;
use crate::handle::Uploader;
use crate::leg::{Job, Sent, Slot};
use crate::timeouts::BLOCKING_GRACE;

impl Uploader {
    /// One blocking attempt. `slot` is the leg's sync slot: the thread keeps a share of it, so the
    /// `sync_concurrency` limit counts threads actually busy with legacy uploads, even after the
    /// caller has gone.
    pub(crate) async fn attempt_sync(&self, job: &Job, total: Duration, slot: Slot) -> Sent {
        let cancelled = Arc::new(AtomicBool::new(false));
        let _cancel_on_drop = CancelOnDrop(cancelled.clone());
        let blocking = self.inner.blocking.clone();
        let file_path = job.path.clone();
        let fingerprint = job.fingerprint;
        let meta = job.meta.clone();
        let options = RequestOptions {
            timeout: Some(total),
        };
        let task = tokio::task::spawn_blocking(move || {
            let _slot = slot;
            if cancelled.load(Ordering::Acquire) {
                return Sent::failed(Failure::Cancelled);
            }
            let (bytes, sha256) = match read_whole(&file_path, &fingerprint) {
                Ok(read) => read,
                Err(failure) => return Sent::read_failure(failure),
            };
            if cancelled.load(Ordering::Acquire) {
                return Sent::failed(Failure::Cancelled);
            }
            match blocking.upload_with(meta, bytes, &options) {
                Ok(file) => Sent {
                    result: Ok(file),
                    sha256: Some(sha256),
                    sent_all: true,
                },
                Err(err) => Sent {
                    sent_all: err.body_fully_sent != Some(false) && !err.rejected_before_send,
                    result: Err(Failure::Provider(err)),
                    sha256: Some(sha256),
                },
            }
        });
        match tokio::time::timeout(total.saturating_add(BLOCKING_GRACE), task).await {
            Ok(Ok(sent)) => sent,
            Ok(Err(join)) if join.is_cancelled() => Sent::failed(Failure::Cancelled),
            Ok(Err(join)) => Sent::failed(Failure::Internal(join.to_string())),
            // The thread may still finish and store the file: count the body as sent, so the next
            // attempt looks for it before sending again.
            Err(_) => Sent {
                result: Err(Failure::Timeout(TimeoutKind::Total, total)),
                sha256: None,
                sent_all: true,
            },
        }
    }
}

/// Tells a blocking task its caller has gone, so it skips work it has not started.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}
