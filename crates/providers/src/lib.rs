//! # upramp-providers
//!
//! File-API clients for Kimi (Moonshot), GLM (Zhipu) and any OpenAI-compatible provider, behind
//! the [`FileProvider`] (async) and [`BlockingFileProvider`] traits the uploader programs against.
//! The wire contract, with its sources and the choices made where the providers' documentation is
//! silent, is `docs/providers.md` in the repository.
//!
//! The crate is split so the two upload paths cannot drift apart:
//!
//! - **Pure parts, no I/O**: [`MultipartLayout`] (the multipart body around a file, with its exact
//!   length), [`Endpoint`] (method and URL), [`parse_file_object`] / [`parse_file_list`] /
//!   [`parse_deleted`] (success bodies, accepting every documented reading), [`parse_error`] and
//!   [`parse_retry_after`] (error classification), [`Limits`] (allowed purposes and sizes).
//! - **Transports**: [`ProviderClient`] sends on `reqwest` (streaming bodies, `User-Agent:
//!   upramp/<version> (async)`), and its [`ProviderClient::blocking`] view,
//!   [`BlockingProviderClient`], sends on `ureq`, blocking I/O on the calling thread (`(sync)`). Both always send a
//!   `Content-Length`, check limits before sending a byte, and return one [`ProviderError`] type
//!   whose [`ProviderError::is_retryable`] follows the contract.
//!
//! Keys live in [`ApiKey`], whose `Debug` and `Display` are redacted; errors scrub any echo of it.
//!
//! ```
//! use upramp_providers::{ApiKey, Boundary, ClientConfig, MultipartLayout, ProviderClient, Region};
//!
//! let config = ClientConfig::kimi(Region::International, ApiKey::new("sk-example"));
//! let client = ProviderClient::new(config)?;
//! assert_eq!(client.base_url(), "https://api.moonshot.ai/v1");
//! assert!(!format!("{client:?}").contains("sk-example"));
//!
//! // The body around a 5-byte file; a quote in the name cannot escape the header.
//! let layout = MultipartLayout::new(Boundary::new("b0undary")?, "a\"b.txt", "file-extract", 5)?;
//! let body = layout.assemble(b"hello");
//! assert_eq!(body.len() as u64, layout.content_length());
//! assert!(String::from_utf8_lossy(&body).contains("filename=\"a%22b.txt\""));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Uploading (network, so not run here):
//!
//! ```no_run
//! use bytes::Bytes;
//! use upramp_providers::{
//!     ApiKey, BlockingFileProvider, FileProvider, ProviderClient, ProviderKind, Region, RequestOptions,
//!     UploadBody, UploadMeta,
//! };
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let key = ApiKey::from_env(ProviderKind::Glm.default_key_env())?;
//! let client = ProviderClient::glm(Region::China, key)?;
//! let meta = UploadMeta { filename: "notes.pdf".into(), purpose: "file-extract".into(), length: 5 };
//! let file = client.upload(meta.clone(), UploadBody::Bytes(Bytes::from_static(b"%PDF-"))).await?;
//! println!("stored {} ({} bytes)", file.id, file.bytes);
//!
//! // The legacy path: the same client, blocking, on a blocking thread.
//! let blocking = client.blocking();
//! let options = RequestOptions::with_timeout(std::time::Duration::from_secs(60));
//! let stored = tokio::task::spawn_blocking(move || {
//!     blocking.upload_with(meta, Bytes::from_static(b"%PDF-"), &options)
//! })
//! .await??;
//! client.delete(&stored.id).await?;
//! # Ok(())
//! # }
//! ```

mod blocking;
mod client;
mod config;
mod config_error;
mod error;
mod key;
mod kind;
mod limits;
mod model;
mod multipart;
mod provider;
mod request;
mod transport;

pub use blocking::BlockingProviderClient;
pub use client::ProviderClient;
pub use config::{ClientConfig, DEFAULT_CONNECT_TIMEOUT};
pub use error::{parse_error, parse_retry_after, ConfigError, ErrorKind, ProviderError};
pub use key::ApiKey;
pub use kind::{ProviderKind, Region, Transport};
pub use limits::{Limits, PurposeLimit, MB, OPENAI_DEFAULT_MAX_BYTES};
pub use model::{
    parse_deleted, parse_file_list, parse_file_object, Deleted, FileList, FileObject, ListQuery,
    UploadBody, UploadMeta,
};
pub use multipart::{encode_filename, Boundary, MultipartLayout};
pub use provider::{BlockingFileProvider, FileProvider};
pub use request::{common_headers, Endpoint, RequestOptions};
