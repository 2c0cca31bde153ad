//! upramp-uploader: upload files to an LLM provider on the path a feature flag chooses.
//!
//! - **async** (new): the file is streamed from disk in bounded chunks (64-256 KiB, default
//!   256 KiB) with a known `Content-Length`, its SHA-256 computed as it goes (for a file of more
//!   than four chunks, on a blocking thread of its own beside the reading, so sending and hashing
//!   use both cores), many uploads in flight under a semaphore ([`UploaderBuilder::concurrency`]).
//!   Memory per upload is at most a dozen chunks, whatever the file size.
//! - **sync** (legacy): the whole file is read into memory and sent by the blocking client on a
//!   blocking thread, one at a time by default ([`UploaderBuilder::sync_concurrency`]): the honest
//!   baseline, and the safety net.
//! - **sync_fallback**: an async request that failed with a retryable, transport or timeout error
//!   after its retries is sent once more on the sync path, when the flag allows fallback.
//!
//! [`Uploader::upload`] routes each [`UploadRequest`] by its routing key through the
//! [`FlagStore`](upramp_flags::FlagStore), retries retryable errors with full-jitter backoff
//! ([`RetryPolicy`]), enforces connect, stall and size-dependent total timeouts, a time limit on
//! every dedupe lookup and an overall request deadline ([`Timeouts`]), adopts a file that arrived
//! although its answer was lost instead of uploading a duplicate, refuses a file that changes
//! while being sent, and reports an [`UploadEvent`](upramp_telemetry::UploadEvent) per attempt
//! and per leg to its [`UploadObserver`](upramp_telemetry::UploadObserver). It returns a
//! [`Receipt`] or an [`UploadError`], never both and never neither. [`Uploader::upload_many`]
//! runs a batch with bounded concurrency.
//!
//! # Adoption never names another request's file
//!
//! After an ambiguous failure (the whole body sent, then a timeout, a reset, or a 2xx that does
//! not parse) the file may be stored. The providers take no idempotency key and report no content
//! hash, so their file list, which shows names and sizes, is the only evidence. Two requests for
//! different `report.txt` files of one size (in one process, or on two hosts) look the same
//! there. So each request stores its file under a name of its own: the requested name with a
//! marker of 64 bits from the operating system's CSPRNG before the extension (`report.txt` ->
//! `report.u7f3a9c2d1e4b5a60.txt`; the extension stays, so type checks see what was sent). The
//! marker never comes from [`UploaderBuilder::seed`], so uploaders with equal seeds, forked
//! processes and hosts started together still differ. After an ambiguous failure the uploader
//! adopts only a listed file with exactly this request's stored name and size; the receipt gives
//! both [`Receipt::filename`] and [`Receipt::stored_filename`]. With
//! [`UploaderBuilder::unique_stored_names`]`(false)` the requested name is stored as is, and an
//! ambiguous failure next to a same-named, same-sized file created since then ends in
//! [`UploadError::OutcomeUnknown`] ([`UnknownCause::NotProvable`]) instead of being adopted.
//!
//! # No request runs forever
//!
//! Every provider call is bounded: an upload attempt by `connect`, `stall` and its total
//! timeout, a dedupe lookup (all pages of the list) by `Timeouts::list`. On top, each request has
//! a deadline counted from the moment its first leg holds a concurrency slot (waits for a slot do
//! not count): `Timeouts::deadline`, or by default the worst case of the retry structure
//! ([`Timeouts::deadline_for`]):
//!
//! ```text
//! deadline = (n + f) * (T + G + L) + (n - 1) * B
//! n = max_retries + 1, f = 1 with fallback, T = the attempt's total timeout (size-dependent),
//! G = 5 s blocking-thread grace, L = Timeouts::list, B = max(backoff cap, Retry-After cap)
//! ```
//!
//! When it passes the request ends at once: [`UploadError::OutcomeUnknown`]
//! ([`UnknownCause::Deadline`]) if the file may be stored, else [`UploadError::Timeout`] with
//! [`TimeoutKind::Deadline`].
//!
//! # Latency is the request's own
//!
//! A leg's duration (the `Request` event, the duration histogram, the gate aggregates and
//! [`Receipt::duration`]) runs from the moment it holds its path's concurrency slot to its end;
//! the wait for the slot is reported apart (the event's `queue_wait`, the
//! `upramp_upload_queue_seconds` histogram, [`Receipt::queue`]). The in-flight gauge counts slot
//! holders only; waiting legs are counted by `on_queued` (`upramp_uploads_queued`).
//!
//! # Code map
//!
//! `builder` (settings and checks), `uploader` (the handle and one request's flow), `routing`,
//! `leg` (slot, deadline, attempts, dedupe lookup, `Request` event), `async_path` and `sync_path`
//! (one attempt each), `failure` (classification and the error it becomes), `events` (event and
//! gauge emission), `stored_name`, `dedupe`, `file_body` (reading and hashing the file),
//! `timeouts`, `retry`.
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
//! assert_eq!(receipt.filename, "notes.txt");
//! assert!(receipt.stored_filename.starts_with("notes.u") && receipt.stored_filename.ends_with(".txt"));
//! assert_eq!(stand_in.stored_files().len(), 1);
//! # });
//! ```

mod async_path;
mod builder;
mod dedupe;
mod error;
mod events;
mod failure;
mod file_body;
mod handle;
mod leg;
mod receipt;
mod request;
mod retry;
mod routing;
mod stored_name;
mod sync_path;
mod timeouts;
mod uploader;

pub use builder::{BuildError, UploaderBuilder, CHUNK_SIZE_RANGE, DEFAULT_CHUNK_SIZE};
pub use error::{TimeoutKind, UnknownCause, UploadError};
pub use handle::Uploader;
pub use receipt::{Receipt, Routing};
pub use request::UploadRequest;
pub use retry::RetryPolicy;
pub use routing::derived_routing_key;
pub use timeouts::Timeouts;
/// The path a request is routed to; [`Uploader::upload_on`] takes one instead of asking the flag.
pub use upramp_flags::Route;
