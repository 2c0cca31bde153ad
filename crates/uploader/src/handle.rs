//! The uploader handle and what every request of one uploader shares. Its methods live beside the part
//! of a request they run: the flow in `uploader.rs`, a leg in `leg.rs`, the paths in `async_path.rs` and
//! `sync_path.rs`.

use std::sync::{Arc, Mutex};

use rand::rngs::StdRng;
use tokio::sync::Semaphore;
use upramp_flags::FlagStore;
use upramp_providers::{BlockingFileProvider, FileProvider};
use upramp_telemetry::Clock;

use crate::dedupe::ClaimedIds;
use crate::events::Events;
use crate::retry::RetryPolicy;
use crate::timeouts::Timeouts;

/// Uploads files to one provider on the flag-chosen path. Cheap to clone (one `Arc`); clones
/// share the concurrency limits, the jitter RNG and the adoption bookkeeping.
#[derive(Clone)]
pub struct Uploader {
    pub(crate) inner: Arc<Inner>,
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

/// What every request of an uploader shares.
pub(crate) struct Inner {
    pub(crate) provider: Arc<dyn FileProvider>,
    pub(crate) blocking: Arc<dyn BlockingFileProvider>,
    pub(crate) provider_label: &'static str,
    pub(crate) flags: FlagStore,
    pub(crate) events: Events,
    pub(crate) provider_clock: Arc<dyn Clock>,
    pub(crate) async_permits: Arc<Semaphore>,
    pub(crate) sync_permits: Arc<Semaphore>,
    pub(crate) concurrency: usize,
    pub(crate) chunk_size: usize,
    pub(crate) retry: RetryPolicy,
    pub(crate) timeouts: Timeouts,
    pub(crate) rng: Mutex<StdRng>,
    pub(crate) claimed: ClaimedIds,
    pub(crate) unique_stored_names: bool,
}

impl Uploader {
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
}
