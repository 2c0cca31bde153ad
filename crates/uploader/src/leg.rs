//! One leg of a request: its concurrency slot, its deadline, its attempts with backoff, the
//! dedupe lookup that resolves an ambiguous attempt before anything is sent again, and its
//! `Request` event.

use std::path::PathBuf;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, SystemTime};

use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;
use upramp_flags::FlagConfig;
use upramp_providers::{ErrorKind, FileObject, ProviderError, UploadMeta};
use upramp_telemetry::{Outcome, UploadPath};

use crate::dedupe::{claim_first, find_candidates, Wanted};
use crate::events::LegEvent;
use crate::failure::Failure;
use crate::file_body::{Fingerprint, Progress};
use crate::handle::Uploader;

/// Tolerated difference between our clock and the provider's when a file can only be matched by
/// its creation time (unique stored names off).
const ADOPTION_SKEW: Duration = Duration::from_secs(5);

/// Everything fixed about one request once it passed its pre-flight checks.
pub(crate) struct Job {
    pub(crate) path: PathBuf,
    /// The name the request asked for.
    pub(crate) filename: String,
    /// What is sent; `meta.filename` is the stored name.
    pub(crate) meta: UploadMeta,
    pub(crate) fingerprint: Fingerprint,
    pub(crate) flag: Arc<FlagConfig>,
    /// The request's overall deadline, counted from its first slot.
    pub(crate) deadline: Duration,
}

/// What changes as a request's legs and attempts run.
#[derive(Default)]
pub(crate) struct Progression {
    pub(crate) attempts: u32,
    /// The SHA-256 the first complete read produced; later reads must agree.
    pub(crate) sha256: Option<String>,
    /// Start (provider clock) of the earliest attempt whose outcome is unknown and not yet checked.
    pub(crate) unresolved_since: Option<SystemTime>,
    /// The attempt under way, so a deadline that cuts it can tell whether the file may be stored.
    pub(crate) current: Option<InProgress>,
    /// When the deadline passes; set when the first leg gets its slot, pushed back by the time
    /// later legs wait for theirs.
    pub(crate) deadline_at: Option<Instant>,
    /// Time spent holding slots, all legs together.
    pub(crate) working: Duration,
    /// Time spent waiting for slots, all legs together.
    pub(crate) queued: Duration,
}

/// An attempt under way.
pub(crate) enum InProgress {
    /// A streaming attempt: stored only if the transport pulled the whole body.
    Async {
        progress: Arc<Progress>,
        length: u64,
    },
    /// A blocking attempt: its thread may send the whole body at any moment.
    Sync,
}

impl Progression {
    /// Whether the provider may hold the file although no answer said so.
    fn may_be_stored(&self) -> bool {
        self.unresolved_since.is_some()
            || match &self.current {
                Some(InProgress::Async { progress, length }) => progress.pulled() == *length,
                Some(InProgress::Sync) => true,
                None => false,
            }
    }
}

/// A leg's success.
pub(crate) struct Landed {
    pub(crate) file: FileObject,
    pub(crate) sha256: String,
    pub(crate) adopted: bool,
}

/// A leg's hold on its path's concurrency slot. Sync attempts share it with their blocking
/// thread, which keeps it until its call returns even if the leg has gone.
pub(crate) type Slot = Arc<OwnedSemaphorePermit>;

impl Uploader {
    /// Run one leg on `path` (up to `max_attempts` attempts) and emit its `Request` event.
    /// Returns the result and, when this async leg's failure sends the request to the sync path,
    /// the reason.
    pub(crate) async fn leg(
        &self,
        job: &Job,
        progression: &mut Progression,
        path: UploadPath,
        max_attempts: u32,
    ) -> (Result<Landed, Failure>, Option<Outcome>) {
        let queued_at = Instant::now();
        let slot = {
            let _queued = self.inner.events.queued(path);
            let semaphore = if path == UploadPath::Async {
                &self.inner.async_permits
            } else {
                &self.inner.sync_permits
            };
            semaphore.clone().acquire_owned().await.map(Arc::new)
        };
        let held_at = Instant::now();
        let queue_wait = held_at - queued_at;
        progression.queued += queue_wait;
        let deadline_at = match progression.deadline_at {
            None => held_at + job.deadline,
            Some(at) => at + queue_wait,
        };
        progression.deadline_at = Some(deadline_at);
        let result = match slot {
            Err(_) => Err(Failure::Cancelled),
            Ok(slot) => {
                let _in_flight = self.inner.events.in_flight(path);
                let attempts = self.attempts(job, progression, path, max_attempts, &slot);
                match tokio::time::timeout_at(deadline_at, attempts).await {
                    Ok(result) => result,
                    Err(_) => Err(Failure::Deadline {
                        after: job.deadline,
                        may_be_stored: progression.may_be_stored(),
                    }),
                }
            }
        };
        progression.current = None;
        let duration = held_at.elapsed();
        progression.working += duration;
        let fallback_reason = match &result {
            Err(failure)
                if path == UploadPath::Async && job.flag.fallback && failure.allows_fallback() =>
            {
                Some(failure.outcome())
            }
            _ => None,
        };
        self.inner.events.leg(LegEvent {
            path,
            outcome: result
                .as_ref()
                .map_or_else(Failure::outcome, |_| Outcome::Success),
            duration,
            queue_wait,
            bytes: if result.is_ok() { job.meta.length } else { 0 },
            attempts: progression.attempts,
            fallback_reason,
        });
        (result, fallback_reason)
    }

    /// Up to `max_attempts` attempts on `path`, resolving any unknown outcome before each send
    /// and after the last failure.
    async fn attempts(
        &self,
        job: &Job,
        progression: &mut Progression,
        path: UploadPath,
        max_attempts: u32,
        slot: &Slot,
    ) -> Result<Landed, Failure> {
        let mut last_failure: Option<Failure> = None;
        for try_index in 0..max_attempts {
            if try_index > 0 {
                let delay = {
                    let mut rng = self
                        .inner
                        .rng
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner);
                    let hint = last_failure.as_ref().and_then(Failure::retry_after);
                    self.inner.retry.delay(try_index - 1, hint, &mut *rng)
                };
                tokio::time::sleep(delay).await;
            }
            match self.resolve_unknown(job, progression).await {
                Ok(Some(landed)) => return Ok(landed),
                Ok(None) => {}
                Err(failure) => {
                    let stop = !failure.is_retryable();
                    last_failure = Some(failure);
                    if stop {
                        break;
                    }
                    continue;
                }
            }
            match self.attempt(job, progression, path, slot).await {
                Ok(landed) => return Ok(landed),
                Err(failure) => {
                    let stop = !failure.is_retryable();
                    last_failure = Some(failure);
                    if stop {
                        break;
                    }
                }
            }
        }
        if let Some(failure) = last_failure.take_if(|f| f.is_resolution()) {
            return Err(failure);
        }
        // The last attempt may have stored the file although it failed: look before reporting.
        match self.resolve_unknown(job, progression).await {
            Ok(Some(landed)) => Ok(landed),
            Ok(None) => Err(last_failure.unwrap_or(Failure::Cancelled)),
            Err(failure) => Err(failure),
        }
    }

    /// If an earlier attempt's outcome is unknown, look for its file at the provider: with unique
    /// stored names, a listed file with this request's stored name and size is adopted; without,
    /// any same-named, same-sized file created since then leaves the outcome unknown.
    async fn resolve_unknown(
        &self,
        job: &Job,
        progression: &mut Progression,
    ) -> Result<Option<Landed>, Failure> {
        let Some(since) = progression.unresolved_since else {
            return Ok(None);
        };
        let unique = self.inner.unique_stored_names;
        let wanted = Wanted {
            filename: &job.meta.filename,
            purpose: &job.meta.purpose,
            bytes: job.meta.length,
            since: (!unique).then_some(since),
            skew: ADOPTION_SKEW,
        };
        let candidates = find_candidates(
            self.inner.provider.as_ref(),
            &wanted,
            &self.inner.claimed,
            self.inner.timeouts.list,
        )
        .await
        .map_err(Failure::Unresolved)?;
        if !unique {
            if candidates.is_empty() {
                progression.unresolved_since = None;
                return Ok(None);
            }
            return Err(Failure::NotProvable(candidates.len()));
        }
        progression.unresolved_since = None;
        let Some(file) = claim_first(candidates, &self.inner.claimed) else {
            return Ok(None);
        };
        let Some(sha256) = progression.sha256.clone() else {
            // Without a complete read there is no checksum to vouch for the adopted file,
            // and no complete body can have been sent either: not ours.
            return Ok(None);
        };
        tracing::info!(
            file = %job.path.display(),
            provider = self.inner.provider_label,
            id = %file.id,
            stored_filename = %job.meta.filename,
            "adopted the file an unanswered attempt stored instead of sending it again"
        );
        Ok(Some(Landed {
            file,
            sha256,
            adopted: true,
        }))
    }

    /// One HTTP attempt on `path`, with its `Attempt` event.
    async fn attempt(
        &self,
        job: &Job,
        progression: &mut Progression,
        path: UploadPath,
        slot: &Slot,
    ) -> Result<Landed, Failure> {
        progression.attempts += 1;
        let attempt_no = progression.attempts;
        let begun_wall = self.inner.provider_clock.now();
        let begun = Instant::now();
        let total = self
            .inner
            .timeouts
            .total_for(job.meta.length, job.flag.timeout);
        let sent = match path {
            UploadPath::Async => {
                let progress = Progress::new();
                progression.current = Some(InProgress::Async {
                    progress: progress.clone(),
                    length: job.meta.length,
                });
                self.attempt_async(job, total, progress).await
            }
            UploadPath::Sync | UploadPath::SyncFallback => {
                progression.current = Some(InProgress::Sync);
                self.attempt_sync(job, total, slot.clone()).await
            }
        };
        progression.current = None;
        let sent_all = sent.sent_all;
        // A complete read's checksum must agree with every earlier one, whatever the answer was:
        // a file rewritten between attempts must not be adopted or uploaded as if unchanged.
        let result = match (sent.sha256, &progression.sha256) {
            (Some(now), Some(first)) if now != *first => Err(Failure::Changed(
                "its checksum differs from an earlier attempt's".to_owned(),
            )),
            (Some(now), _) => {
                progression.sha256 = Some(now.clone());
                sent.result.map(|file| (file, now))
            }
            (None, _) => sent.result.and_then(|_| {
                Err(Failure::Provider(ProviderError::without_response(
                    self.inner.provider.kind(),
                    ErrorKind::MalformedResponse,
                    "the provider answered success before receiving the whole body",
                )))
            }),
        };
        let outcome = result
            .as_ref()
            .map_or_else(Failure::outcome, |_| Outcome::Success);
        let bytes = if sent_all { job.meta.length } else { 0 };
        self.inner
            .events
            .attempt(path, outcome, begun.elapsed(), bytes, attempt_no);
        match result {
            Ok((file, sha256)) => {
                self.inner.claimed.claim(&file.id);
                Ok(Landed {
                    file,
                    sha256,
                    adopted: false,
                })
            }
            Err(failure) => {
                if sent_all && failure.is_ambiguous() && progression.unresolved_since.is_none() {
                    progression.unresolved_since = Some(begun_wall);
                }
                Err(failure)
            }
        }
    }
}

/// What one attempt produced.
pub(crate) struct Sent {
    pub(crate) result: Result<FileObject, Failure>,
    /// The file's checksum, when the attempt read all of it unchanged.
    pub(crate) sha256: Option<String>,
    /// Whether the whole body left our hands (so the provider may have stored it).
    pub(crate) sent_all: bool,
}

impl Sent {
    pub(crate) fn failed(failure: Failure) -> Self {
        Self {
            result: Err(failure),
            sha256: None,
            sent_all: false,
        }
    }

    pub(crate) fn read_failure(failure: crate::file_body::ReadFailure) -> Self {
        Self::failed(match failure {
            crate::file_body::ReadFailure::Io(err) => Failure::Io(err),
            crate::file_body::ReadFailure::Changed(why) => Failure::Changed(why),
        })
    }
}
