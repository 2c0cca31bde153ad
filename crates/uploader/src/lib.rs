//! upramp-uploader: upload files to an LLM provider on the path a feature flag chooses.
//!
//! - **async** (new): the file is streamed from disk in bounded chunks (64-256 KiB, default
//!   128 KiB) with a known `Content-Length`, its SHA-256 computed as it goes, many uploads in flight
//!   under a semaphore ([`UploaderBuilder::concurrency`]). Memory per upload is a few chunks,
//!   whatever the file size.
//! - **sync** (legacy): the whole file is read into memory and sent by the blocking client on a
//!   blocking thread, one at a time by default ([`UploaderBuilder::sync_concurrency`]): the honest
//!   baseline, and the safety net.
//! - **sync_fallback**: an async request that failed with a retryable, transport or timeout error
//!   after its retries is sent once more on the sync path, when the flag allows fallback.
//!
//! [`Uploader::upload`] routes each [`UploadRequest`] by its routing key through the
//! [`FlagStore`](upramp_flags::FlagStore), retries retryable errors with full-jitter backoff
//! ([`RetryPolicy`]), enforces connect, stall and size-dependent total timeouts ([`Timeouts`]),
//! adopts a file that arrived although its answer was lost instead of uploading a duplicate,
//! refuses a file that changes while being sent, and reports an
//! [`UploadEvent`](upramp_telemetry::UploadEvent) per attempt and per leg to its
//! [`UploadObserver`](upramp_telemetry::UploadObserver). It returns a [`Receipt`] or an
//! [`UploadError`], never both and never neither. [`Uploader::upload_many`] runs a batch with
//! bounded concurrency.
//!
//! ```
//! # #![allow(clippy::unwrap_used)]
//! use std::sync::Arc;
//! use upramp_flags::{FlagConfig, FlagStore, Percent};
//! use upramp_harness::{Flavor, StandIn, StandInConfig};
//! use upramp_providers::{ApiKey, ProviderClient, ProviderKind};
//! use upramp_telemetry::UploadPath;
//! use upramp_uploader::{UploadRequest, Uploader};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let stand_in = StandIn::start(StandInConfig::new(Flavor::Kimi)).await.unwrap();
//! let key = ApiKey::new(stand_in.api_key());
//! let client = ProviderClient::with_base_url(ProviderKind::Kimi, &stand_in.base_url(), key).unwrap();
//! let blocking = client.blocking();
//!
//! let mut flag = FlagConfig::new("async_upload");
//! flag.enabled = true;
//! flag.rollout = Percent::HUNDRED;
//! let uploader = Uploader::builder(Arc::new(client), Arc::new(blocking))
//!     .flags(FlagStore::new(flag))
//!     .build()
//!     .unwrap();
//!
//! let dir = tempfile::tempdir().unwrap();
//! let path = dir.path().join("notes.txt");
//! std::fs::write(&path, "hello, provider").unwrap();
//! let receipt = uploader
//!     .upload(UploadRequest::new(&path, "file-extract").routing_key("tenant-42"))
//!     .await
//!     .unwrap();
//! assert_eq!(receipt.path, UploadPath::Async);
//! assert_eq!(receipt.bytes, 15);
//! assert_eq!(stand_in.stored_files().len(), 1);
//! # });
//! ```

mod async_path;
mod builder;
mod dedupe;
mod error;
mod events;
mod failure;
mod leg;
mod receipt;
mod request;
mod retry;
mod routing;
mod source;
mod stored_name;
mod sync_path;
mod timeouts;
mod uploader;

pub use builder::{BuildError, UploaderBuilder, CHUNK_SIZE_RANGE, DEFAULT_CHUNK_SIZE};
pub use error::{TimeoutKind, UnknownCause, UploadError};
pub use receipt::{Receipt, Routing};
pub use request::{ForcedPath, UploadRequest};
pub use retry::RetryPolicy;
pub use routing::derived_routing_key;
pub use timeouts::Timeouts;
pub use uploader::Uploader;
