//! Building an [`Uploader`]: its settings, their defaults and their checks.

use std::sync::{Arc, Mutex};

use rand::rngs::StdRng;
use rand::SeedableRng;
use tokio::sync::Semaphore;
use upramp_flags::{FlagConfig, FlagStore};
use upramp_providers::{BlockingFileProvider, FileProvider};
use upramp_telemetry::{Clock, NoopObserver, SystemClock, UploadObserver};

use crate::dedupe::ClaimedIds;
use crate::events::Events;
use crate::handle::{Inner, Uploader};
use crate::retry::RetryPolicy;
use crate::timeouts::Timeouts;

/// Smallest and largest accepted chunk size of the async path.
pub const CHUNK_SIZE_RANGE: std::ops::RangeInclusive<usize> = 64 * 1024..=256 * 1024;

/// The default chunk size of the async path: 256 KiB. Fewer, larger chunks mean fewer reads,
/// wake-ups and socket writes per byte (one 500 MB upload: about 1,900 instead of 3,800).
pub const DEFAULT_CHUNK_SIZE: usize = 256 * 1024;

/// Ids remembered to keep two requests from adopting the same stored file.
const CLAIMED_IDS: usize = 16_384;

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
    unique_stored_names: bool,
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
            .field("unique_stored_names", &self.unique_stored_names)
            .finish_non_exhaustive()
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
            unique_stored_names: true,
        }
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

    /// The clock compared with the provider's `created_at` when resolving an ambiguous failure
    /// without unique stored names (default: the system clock). It must track the provider's wall
    /// clock, so it stays the system clock even when events use a simulated one.
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

    /// The async path's read size, 64-256 KiB (default 256 KiB).
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

    /// Connect, stall, total and dedupe-lookup timeouts, and the request deadline.
    #[must_use]
    pub fn timeouts(mut self, timeouts: Timeouts) -> Self {
        self.timeouts = timeouts;
        self
    }

    /// Seed the backoff jitter, for reproducible runs (default: seeded from the OS). Stored-name
    /// markers never come from it: they stay unique between uploaders with the same seed.
    #[must_use]
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Store each file under a name unique to its request (default `true`): the requested name
    /// with a 64-bit random marker before the extension (`report.txt` ->
    /// `report.u7f3a9c2d1e4b5a60.txt`), so that after an ambiguous failure the uploader adopts
    /// only a listed file with exactly that name and size: one of this request's own attempts.
    ///
    /// With `false` the requested name is stored as is, and an ambiguous failure can no longer
    /// be told apart from another request's upload of a same-named, same-sized file: if the
    /// provider's list shows such a file created since the ambiguous attempt began, the request
    /// ends in [`UploadError::OutcomeUnknown`](crate::UploadError::OutcomeUnknown) instead of
    /// adopting it; if it shows none, the upload is retried.
    #[must_use]
    pub fn unique_stored_names(mut self, unique: bool) -> Self {
        self.unique_stored_names = unique;
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
        let provider_label = self.provider.kind().as_str();
        Ok(Uploader {
            inner: Arc::new(Inner {
                provider_label,
                provider: self.provider,
                blocking: self.blocking,
                flags: self.flags,
                events: Events {
                    observer: self.observer,
                    clock: self.clock,
                    provider: provider_label,
                },
                provider_clock: self.provider_clock,
                async_permits: Arc::new(Semaphore::new(self.concurrency)),
                sync_permits: Arc::new(Semaphore::new(self.sync_concurrency)),
                concurrency: self.concurrency,
                chunk_size: self.chunk_size,
                retry: self.retry,
                timeouts: self.timeouts,
                rng: Mutex::new(rng),
                claimed: ClaimedIds::new(CLAIMED_IDS),
                unique_stored_names: self.unique_stored_names,
            }),
        })
    }
}
