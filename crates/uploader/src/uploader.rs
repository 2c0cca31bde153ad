//! The uploader: routing, the two paths, retries, fallback, adoption and telemetry.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use futures::{Stream, StreamExt};
use rand::rngs::StdRng;
use rand::SeedableRng;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use upramp_flags::{DecisionPath, FlagConfig, FlagStore};
use upramp_providers::{
    BlockingFileProvider, ClientPath, ErrorKind, FileObject, FileProvider, ProviderError,
    RequestOptions, UploadBody, UploadMeta,
};
use upramp_telemetry::{
    record_flag_evaluation, Clock, EventKind, NoopObserver, Outcome, SystemClock, UploadEvent,
    UploadObserver, UploadPath,
};

use crate::dedupe::{find_arrived, ClaimedIds, Wanted};
use crate::error::{outcome_of, TimeoutKind, UploadError};
use crate::receipt::{Receipt, Routing};
use crate::retry::RetryPolicy;
use crate::routing::derived_routing_key;
use crate::source::{preflight, read_whole, Fingerprint, HashingFileStream, Progress, ReadFailure};
use crate::timeouts::Timeouts;

/// Smallest and largest accepted chunk size of the async path.
pub const CHUNK_SIZE_RANGE: std::ops::RangeInclusive<usize> = 64 * 1024..=256 * 1024;

/// The default chunk size of the async path: 128 KiB.
pub const DEFAULT_CHUNK_SIZE: usize = 128 * 1024;

/// Extra time the sync path's caller waits beyond the blocking client's own timeout before giving
/// up on the thread: the client is expected to time out first and report it itself.
const BLOCKING_GRACE: Duration = Duration::from_secs(5);

/// Tolerated difference between our clock and the provider's when adopting a file.
const ADOPTION_SKEW: Duration = Duration::from_secs(5);

/// Ids remembered to keep two requests from adopting the same stored file.
const CLAIMED_IDS: usize = 16_384;

/// One file to upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadRequest {
    /// The local file.
    pub path: PathBuf,
    /// The provider purpose (`file-extract`, `batch`, ...).
    pub purpose: String,
    /// The stickiness key the flag buckets (tenant, user or request id). `None` uses
    /// [`derived_routing_key`] of the file's path and size.
    pub routing_key: Option<String>,
    /// The file name sent to the provider; `None` uses the path's last component.
    pub filename: Option<String>,
}

impl UploadRequest {
    /// A request for `path` with `purpose`, no routing key and the path's own file name.
    pub fn new(path: impl Into<PathBuf>, purpose: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            purpose: purpose.into(),
            routing_key: None,
            filename: None,
        }
    }

    /// Set the routing key.
    #[must_use]
    pub fn routing_key(mut self, key: impl Into<String>) -> Self {
        self.routing_key = Some(key.into());
        self
    }

    /// Set the file name sent to the provider.
    #[must_use]
    pub fn filename(mut self, filename: impl Into<String>) -> Self {
        self.filename = Some(filename.into());
        self
    }
}

/// A path chosen by the caller instead of the flag, for benchmarks and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ForcedPath {
    /// The streaming path.
    Async,
    /// The legacy buffered path.
    Sync,
}

/// Why a builder setting was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The chunk size is outside 64-256 KiB.
    #[error("chunk size {0} bytes is outside 65536..=262144 (64-256 KiB)")]
    ChunkSize(usize),
    /// A concurrency limit is zero.
    #[error("{what} must be at least 1, got 0")]
    ZeroConcurrency {
        /// Which limit.
        what: &'static str,
    },
    /// The provider and the blocking provider are not the same kind.
    #[error("async provider is {async_kind} but blocking provider is {blocking_kind}")]
    MismatchedProviders {
        /// The async provider's kind.
        async_kind: String,
        /// The blocking provider's kind.
        blocking_kind: String,
    },
}

/// Builds an [`Uploader`]; see [`Uploader::builder`].
pub struct UploaderBuilder {
    provider: Arc<dyn FileProvider>,
    blocking: Arc<dyn BlockingFileProvider>,
    flags: FlagStore,
    observer: Arc<dyn UploadObserver>,
    clock: Arc<dyn Clock>,
    provider_clock: Arc<dyn Clock>,
    concurrency: usize,
    sync_concurrency: usize,
    chunk_size: usize,
    retry: RetryPolicy,
    timeouts: Timeouts,
    seed: Option<u64>,
}

impl std::fmt::Debug for UploaderBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UploaderBuilder")
            .field("provider", &self.provider.name())
            .field("concurrency", &self.concurrency)
            .field("sync_concurrency", &self.sync_concurrency)
            .field("chunk_size", &self.chunk_size)
            .field("retry", &self.retry)
            .field("timeouts", &self.timeouts)
            .finish_non_exhaustive()
    }
}

impl UploaderBuilder {
    /// The routing flag (default: the `async_upload` flag, disabled: everything takes the sync path).
    #[must_use]
    pub fn flags(mut self, flags: FlagStore) -> Self {
        self.flags = flags;
        self
    }

    /// Where events and in-flight changes go (default: nowhere). Use a `FanOut` for several.
    #[must_use]
    pub fn observer(mut self, observer: Arc<dyn UploadObserver>) -> Self {
        self.observer = observer;
        self
    }

    /// The clock that stamps events (default: the system clock; a simulated one in validation).
    #[must_use]
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The clock compared with the provider's `created_at` when adopting a file after an
    /// ambiguous failure (default: the system clock). It must track the provider's wall clock, so
    /// it stays the system clock even when events use a simulated one.
    #[must_use]
    pub fn provider_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.provider_clock = clock;
        self
    }

    /// Async uploads in flight at once (default 64).
    #[must_use]
    pub fn concurrency(mut self, limit: usize) -> Self {
        self.concurrency = limit;
        self
    }

    /// Sync-path uploads in flight at once (default 1, like the legacy blocking loop).
    #[must_use]
    pub fn sync_concurrency(mut self, limit: usize) -> Self {
        self.sync_concurrency = limit;
        self
    }

    /// The async path's read size, 64-256 KiB (default 128 KiB).
    #[must_use]
    pub fn chunk_size(mut self, bytes: usize) -> Self {
        self.chunk_size = bytes;
        self
    }

    /// Backoff between attempts; the number of retries comes from the flag.
    #[must_use]
    pub fn retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Connect, stall and total timeouts.
    #[must_use]
    pub fn timeouts(mut self, timeouts: Timeouts) -> Self {
        self.timeouts = timeouts;
        self
    }

    /// Seed the backoff jitter, for reproducible runs (default: seeded from the OS).
    #[must_use]
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Check the settings and build the uploader.
    pub fn build(self) -> Result<Uploader, BuildError> {
        if !CHUNK_SIZE_RANGE.contains(&self.chunk_size) {
            return Err(BuildError::ChunkSize(self.chunk_size));
        }
        if self.concurrency == 0 {
            return Err(BuildError::ZeroConcurrency {
                what: "concurrency",
            });
        }
        if self.sync_concurrency == 0 {
            return Err(BuildError::ZeroConcurrency {
                what: "sync_concurrency",
            });
        }
        if self.provider.kind() != self.blocking.kind() {
            return Err(BuildError::MismatchedProviders {
                async_kind: self.provider.kind().to_string(),
                blocking_kind: self.blocking.kind().to_string(),
            });
        }
        let rng = match self.seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_entropy(),
        };
        Ok(Uploader {
            inner: Arc::new(Inner {
                provider_label: self.provider.kind().as_str(),
                provider: self.provider,
                blocking: self.blocking,
                flags: self.flags,
                observer: self.observer,
                clock: self.clock,
                provider_clock: self.provider_clock,
                async_permits: Arc::new(Semaphore::new(self.concurrency)),
                sync_permits: Arc::new(Semaphore::new(self.sync_concurrency)),
                concurrency: self.concurrency,
                chunk_size: self.chunk_size,
                retry: self.retry,
                timeouts: self.timeouts,
                rng: Mutex::new(rng),
                claimed: ClaimedIds::new(CLAIMED_IDS),
            }),
        })
    }
}

/// Uploads files to one provider on the flag-chosen path. Cheap to clone (one `Arc`); clones
/// share the concurrency limits, the jitter RNG and the adoption bookkeeping.
#[derive(Clone)]
pub struct Uploader {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Uploader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Uploader")
            .field("provider", &self.inner.provider_label)
            .field("concurrency", &self.inner.concurrency)
            .field("chunk_size", &self.inner.chunk_size)
            .finish_non_exhaustive()
    }
}

struct Inner {
    provider: Arc<dyn FileProvider>,
    blocking: Arc<dyn BlockingFileProvider>,
    provider_label: &'static str,
    flags: FlagStore,
    observer: Arc<dyn UploadObserver>,
    clock: Arc<dyn Clock>,
    provider_clock: Arc<dyn Clock>,
    async_permits: Arc<Semaphore>,
    sync_permits: Arc<Semaphore>,
    concurrency: usize,
    chunk_size: usize,
    retry: RetryPolicy,
    timeouts: Timeouts,
    rng: Mutex<StdRng>,
    claimed: ClaimedIds,
}

/// Everything fixed about one request once it passed its pre-flight checks.
struct Job {
    path: PathBuf,
    meta: UploadMeta,
    fingerprint: Fingerprint,
    flag: Arc<FlagConfig>,
    started: Instant,
}

/// What changes as a request's attempts run.
#[derive(Default)]
struct Progression {
    attempts: u32,
    /// The SHA-256 the first complete read produced; later reads must agree.
    sha256: Option<String>,
    /// Start (provider clock) of the earliest attempt whose outcome is unknown and not yet checked.
    unresolved_since: Option<SystemTime>,
}

/// A leg's success.
struct Landed {
    file: FileObject,
    sha256: String,
    adopted: bool,
}

/// Why an attempt (or a leg) failed.
#[derive(Debug)]
enum Failure {
    Provider(ProviderError),
    Timeout(TimeoutKind, Duration),
    Changed(String),
    Io(std::io::Error),
    /// Listing the provider's files to resolve an ambiguous attempt failed.
    Unresolved(ProviderError),
    Cancelled,
    Internal(String),
}

impl Failure {
    fn outcome(&self) -> Outcome {
        match self {
            Failure::Provider(err) | Failure::Unresolved(err) => outcome_of(err),
            Failure::Timeout(..) => Outcome::Timeout,
            Failure::Changed(_) | Failure::Io(_) => Outcome::ClientError,
            Failure::Cancelled | Failure::Internal(_) => Outcome::TransportError,
        }
    }

    /// Whether sending again may succeed (per the providers' contract, plus our own timeouts).
    fn is_retryable(&self) -> bool {
        match self {
            Failure::Provider(err) | Failure::Unresolved(err) => err.is_retryable(),
            Failure::Timeout(..) => true,
            Failure::Changed(_) | Failure::Io(_) | Failure::Cancelled | Failure::Internal(_) => {
                false
            }
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            Failure::Provider(err) => err.retry_after,
            _ => None,
        }
    }

    /// Whether the sync path can plausibly survive what broke the async path: retryable provider
    /// errors, transport failures and timeouts. Client errors (bad key, bad request, too large,
    /// quota) would fail the same way and waste quota.
    fn allows_fallback(&self) -> bool {
        match self {
            Failure::Provider(err) => {
                err.is_retryable() || matches!(err.kind, ErrorKind::Transport | ErrorKind::Timeout)
            }
            Failure::Timeout(..) => true,
            _ => false,
        }
    }
}

impl Uploader {
    /// Start building an uploader over a provider's async client (streaming path) and blocking
    /// client (legacy path). Both must be the same provider.
    pub fn builder(
        provider: Arc<dyn FileProvider>,
        blocking: Arc<dyn BlockingFileProvider>,
    ) -> UploaderBuilder {
        UploaderBuilder {
            provider,
            blocking,
            flags: FlagStore::new(FlagConfig::new(upramp_flags::ASYNC_UPLOAD)),
            observer: Arc::new(NoopObserver),
            clock: Arc::new(SystemClock),
            provider_clock: Arc::new(SystemClock),
            concurrency: 64,
            sync_concurrency: 1,
            chunk_size: DEFAULT_CHUNK_SIZE,
            retry: RetryPolicy::default(),
            timeouts: Timeouts::default(),
            seed: None,
        }
    }

    /// The provider label used in events (`kimi`, `glm`, `openai`).
    pub fn provider(&self) -> &'static str {
        self.inner.provider_label
    }

    /// The flag store routing this uploader.
    pub fn flags(&self) -> &FlagStore {
        &self.inner.flags
    }

    /// The async in-flight limit.
    pub fn concurrency(&self) -> usize {
        self.inner.concurrency
    }

    /// Upload one file on the path the flag chooses for its routing key, retrying and falling
    /// back as the flag allows. Returns a receipt, or an error; never both, never neither.
    ///
    /// Dropping the future cancels the upload: the async path's connection is closed and no task
    /// is left behind. A sync-path attempt already running on a blocking thread cannot be
    /// interrupted: it runs to completion or to its timeout in the background, still holding its
    /// `sync_concurrency` permit, and its result is discarded; if that attempt had not started
    /// yet it is skipped. Such a file may therefore be stored without a receipt; re-submitting it
    /// is a new request (it will not adopt the orphan, whose attempt was not this request's).
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
        path: ForcedPath,
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
        forced: Option<ForcedPath>,
    ) -> Result<Receipt, UploadError> {
        let started = Instant::now();
        let fingerprint = preflight(&request.path).await?;
        let filename = match &request.filename {
            Some(name) => name.clone(),
            None => file_name_of(&request.path),
        };
        let meta = UploadMeta {
            filename,
            purpose: request.purpose.clone(),
            length: fingerprint.len,
        };
        let flag = self.inner.flags.snapshot();
        let (start_path, routing) = self.route(&request, &flag, fingerprint.len, forced);
        let job = Job {
            path: request.path,
            meta,
            fingerprint,
            flag,
            started,
        };
        if let Err(err) = self.inner.provider.check_upload(&job.meta) {
            self.emit(
                EventKind::Request,
                start_path,
                Outcome::RejectedBeforeSend,
                Duration::ZERO,
                0,
                0,
                None,
            );
            return Err(if err.kind == ErrorKind::TooLarge {
                UploadError::TooLarge {
                    path: job.path,
                    size: job.fingerprint.len,
                    source: err,
                }
            } else {
                UploadError::Rejected {
                    path: job.path,
                    source: err,
                }
            });
        }

        let mut progression = Progression::default();
        let max_attempts = job.flag.max_retries.saturating_add(1);
        let (leg_path, result, fallback_reason) = if start_path == UploadPath::Async {
            let leg_start = Instant::now();
            let async_result = self
                .leg(&job, &mut progression, UploadPath::Async, max_attempts)
                .await;
            match async_result {
                Ok(landed) => {
                    self.request_event(
                        UploadPath::Async,
                        Outcome::Success,
                        leg_start,
                        job.meta.length,
                        &progression,
                        None,
                    );
                    (UploadPath::Async, Ok(landed), None)
                }
                Err(failure) if job.flag.fallback && failure.allows_fallback() => {
                    let reason = failure.outcome();
                    self.request_event(
                        UploadPath::Async,
                        reason,
                        leg_start,
                        0,
                        &progression,
                        Some(reason),
                    );
                    tracing::warn!(
                        file = %job.path.display(),
                        provider = self.inner.provider_label,
                        reason = reason.as_str(),
                        "async upload failed; falling back to the sync path once"
                    );
                    let fallback_start = Instant::now();
                    let result = self
                        .leg(&job, &mut progression, UploadPath::SyncFallback, 1)
                        .await;
                    let outcome = result
                        .as_ref()
                        .map_or_else(Failure::outcome, |_| Outcome::Success);
                    let bytes = if result.is_ok() { job.meta.length } else { 0 };
                    self.request_event(
                        UploadPath::SyncFallback,
                        outcome,
                        fallback_start,
                        bytes,
                        &progression,
                        None,
                    );
                    (UploadPath::SyncFallback, result, Some(reason))
                }
                Err(failure) => {
                    self.request_event(
                        UploadPath::Async,
                        failure.outcome(),
                        leg_start,
                        0,
                        &progression,
                        None,
                    );
                    (UploadPath::Async, Err(failure), None)
                }
            }
        } else {
            let leg_start = Instant::now();
            let result = self
                .leg(&job, &mut progression, UploadPath::Sync, max_attempts)
                .await;
            let outcome = result
                .as_ref()
                .map_or_else(Failure::outcome, |_| Outcome::Success);
            let bytes = if result.is_ok() { job.meta.length } else { 0 };
            self.request_event(
                UploadPath::Sync,
                outcome,
                leg_start,
                bytes,
                &progression,
                None,
            );
            (UploadPath::Sync, result, None)
        };

        match result {
            Ok(landed) => Ok(Receipt {
                source: job.path.clone(),
                file: landed.file,
                provider: self.inner.provider_label.to_owned(),
                path: leg_path,
                attempts: progression.attempts,
                bytes: job.meta.length,
                sha256: landed.sha256,
                duration: job.started.elapsed(),
                fallback_reason,
                routing,
                adopted: landed.adopted,
            }),
            Err(failure) => Err(self.error_for(
                job,
                failure,
                leg_path,
                progression.attempts,
                fallback_reason,
            )),
        }
    }

    fn route(
        &self,
        request: &UploadRequest,
        flag: &FlagConfig,
        size: u64,
        forced: Option<ForcedPath>,
    ) -> (UploadPath, Routing) {
        let key_derived = request.routing_key.is_none();
        if let Some(forced) = forced {
            let (path, decided) = match forced {
                ForcedPath::Async => (UploadPath::Async, "async"),
                ForcedPath::Sync => (UploadPath::Sync, "sync"),
            };
            let routing = Routing {
                decided,
                reason: "forced",
                bucket: None,
                key_derived,
            };
            return (path, routing);
        }
        let key = match &request.routing_key {
            Some(key) => key.clone(),
            None => derived_routing_key(&request.path, size),
        };
        let decision = upramp_flags::evaluate(flag, &key);
        record_flag_evaluation(&flag.name, decision.path.as_str());
        let path = match decision.path {
            DecisionPath::Async => UploadPath::Async,
            DecisionPath::Sync => UploadPath::Sync,
        };
        let routing = Routing {
            decided: decision.path.as_str(),
            reason: decision.reason.as_str(),
            bucket: Some(decision.bucket),
            key_derived,
        };
        (path, routing)
    }

    /// Run one leg: up to `max_attempts` attempts on `path`, resolving any unknown outcome before
    /// each send and after the last failure.
    async fn leg(
        &self,
        job: &Job,
        progression: &mut Progression,
        path: UploadPath,
        max_attempts: u32,
    ) -> Result<Landed, Failure> {
        // The async permit spans the leg (retries included), so `concurrency` bounds requests,
        // not just sockets. The sync permit is taken per attempt, inside the blocking task.
        let _permit = if path == UploadPath::Async {
            match self.inner.async_permits.clone().acquire_owned().await {
                Ok(permit) => Some(permit),
                Err(_) => return Err(Failure::Cancelled),
            }
        } else {
            None
        };
        let _in_flight =
            InFlight::new(self.inner.observer.clone(), self.inner.provider_label, path);

        let mut last_failure = None;
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
            match self.attempt(job, progression, path).await {
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
        // The last attempt may have stored the file although it failed: look before reporting.
        match self.resolve_unknown(job, progression).await {
            Ok(Some(landed)) => Ok(landed),
            Ok(None) => Err(last_failure.unwrap_or(Failure::Cancelled)),
            Err(failure) => Err(failure),
        }
    }

    /// If an earlier attempt's outcome is unknown, look for its file at the provider.
    async fn resolve_unknown(
        &self,
        job: &Job,
        progression: &mut Progression,
    ) -> Result<Option<Landed>, Failure> {
        let Some(since) = progression.unresolved_since else {
            return Ok(None);
        };
        let wanted = Wanted {
            filename: &job.meta.filename,
            purpose: &job.meta.purpose,
            bytes: job.meta.length,
            since,
            skew: ADOPTION_SKEW,
        };
        match find_arrived(self.inner.provider.as_ref(), &wanted, &self.inner.claimed).await {
            Ok(found) => {
                progression.unresolved_since = None;
                let Some(file) = found else {
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
                    "adopted the file an unanswered attempt stored instead of sending it again"
                );
                Ok(Some(Landed {
                    file,
                    sha256,
                    adopted: true,
                }))
            }
            Err(err) => Err(Failure::Unresolved(err)),
        }
    }

    /// One HTTP attempt on `path`, with its `Attempt` event.
    async fn attempt(
        &self,
        job: &Job,
        progression: &mut Progression,
        path: UploadPath,
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
            UploadPath::Async => self.attempt_async(job, total).await,
            UploadPath::Sync | UploadPath::SyncFallback => {
                self.attempt_sync(job, total, path).await
            }
        };
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
        self.emit(
            EventKind::Attempt,
            path,
            outcome,
            begun.elapsed(),
            bytes,
            attempt_no,
            None,
        );
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
                if sent_all && is_ambiguous(&failure) && progression.unresolved_since.is_none() {
                    progression.unresolved_since = Some(begun_wall);
                }
                Err(failure)
            }
        }
    }

    /// The streaming attempt.
    async fn attempt_async(&self, job: &Job, total: Duration) -> Sent {
        let progress = Progress::new();
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
            path: Some(ClientPath::Async),
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

    /// The legacy attempt: the whole file in memory, sent by the blocking client on a blocking
    /// thread, at most `sync_concurrency` at once.
    async fn attempt_sync(&self, job: &Job, total: Duration, path: UploadPath) -> Sent {
        let Ok(permit) = self.inner.sync_permits.clone().acquire_owned().await else {
            return Sent::failed(Failure::Cancelled);
        };
        let cancelled = Arc::new(AtomicBool::new(false));
        let _cancel_on_drop = CancelOnDrop(cancelled.clone());
        let blocking = self.inner.blocking.clone();
        let file_path = job.path.clone();
        let fingerprint = job.fingerprint;
        let meta = job.meta.clone();
        let options = RequestOptions {
            timeout: Some(total),
            path: Some(if path == UploadPath::Async {
                ClientPath::Async
            } else {
                ClientPath::Sync
            }),
        };
        let task = tokio::task::spawn_blocking(move || {
            // Held until the blocking call returns, even if the caller has gone: the limit counts
            // threads actually busy with legacy uploads.
            let _permit = permit;
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

    fn error_for(
        &self,
        job: Job,
        failure: Failure,
        path_taken: UploadPath,
        attempts: u32,
        fallback_reason: Option<Outcome>,
    ) -> UploadError {
        let path = job.path;
        match failure {
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
                source,
            },
            Failure::Cancelled => UploadError::Cancelled {
                path,
                path_taken: Some(path_taken),
                attempts,
            },
            Failure::Internal(detail) => UploadError::Internal { path, detail },
        }
    }

    fn request_event(
        &self,
        path: UploadPath,
        outcome: Outcome,
        leg_start: Instant,
        bytes: u64,
        progression: &Progression,
        fallback_reason: Option<Outcome>,
    ) {
        self.emit(
            EventKind::Request,
            path,
            outcome,
            leg_start.elapsed(),
            bytes,
            progression.attempts,
            fallback_reason,
        );
    }

    #[allow(clippy::too_many_arguments)]
    fn emit(
        &self,
        kind: EventKind,
        path: UploadPath,
        outcome: Outcome,
        duration: Duration,
        bytes: u64,
        attempt: u32,
        fallback_reason: Option<Outcome>,
    ) {
        let event = UploadEvent {
            kind,
            provider: self.inner.provider_label.to_owned(),
            path,
            outcome,
            duration,
            bytes,
            attempt,
            fallback_reason,
            at: self.inner.clock.now(),
        };
        self.inner.observer.on_event(&event);
    }
}

/// A failure where the provider may have stored the file although we did not learn so: no
/// answer after the whole body (timeout, reset, EOF), or a success answer we could not read.
fn is_ambiguous(failure: &Failure) -> bool {
    match failure {
        Failure::Provider(err) => matches!(
            err.kind,
            ErrorKind::Transport | ErrorKind::Timeout | ErrorKind::MalformedResponse
        ),
        Failure::Timeout(..) => true,
        _ => false,
    }
}

/// What one attempt produced.
struct Sent {
    result: Result<FileObject, Failure>,
    /// The file's checksum, when the attempt read all of it unchanged.
    sha256: Option<String>,
    /// Whether the whole body left our hands (so the provider may have stored it).
    sent_all: bool,
}

impl Sent {
    fn failed(failure: Failure) -> Self {
        Self {
            result: Err(failure),
            sha256: None,
            sent_all: false,
        }
    }

    fn read_failure(failure: ReadFailure) -> Self {
        Self::failed(match failure {
            ReadFailure::Io(err) => Failure::Io(err),
            ReadFailure::Changed(why) => Failure::Changed(why),
        })
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

/// Counts a leg in the in-flight gauge for as long as it lives, whichever way it ends (success,
/// error, panic or the future being dropped).
struct InFlight {
    observer: Arc<dyn UploadObserver>,
    provider: &'static str,
    path: UploadPath,
}

impl InFlight {
    fn new(observer: Arc<dyn UploadObserver>, provider: &'static str, path: UploadPath) -> Self {
        observer.on_in_flight(provider, path, 1);
        Self {
            observer,
            provider,
            path,
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.observer.on_in_flight(self.provider, self.path, -1);
    }
}

/// Tells a blocking task its caller has gone, so it skips work it has not started.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

fn file_name_of(path: &Path) -> String {
    path.file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}
