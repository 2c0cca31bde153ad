//! The blocking transport (`reqwest::blocking`) for the legacy sync path.
//!
//! `reqwest::blocking::Client` runs its own runtime on a helper thread and panics if it is built
//! or used on an async worker thread. So the client here is built lazily, on the first request,
//! on whatever blocking thread makes it; and when the last handle is dropped from async code, the
//! inner client is dropped on a short-lived plain thread instead, so nothing blocks or panics.

use std::fmt;
use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;

use crate::client::{ClientConfig, Shared};
use crate::error::{ConfigError, ErrorKind, ProviderError};
use crate::kind::{ClientPath, ProviderKind};
use crate::model::{
    parse_deleted, parse_file_list, parse_file_object, Deleted, FileList, FileObject, ListQuery,
    UploadMeta,
};
use crate::multipart::MultipartLayout;
use crate::provider::BlockingFileProvider;
use crate::request::{Endpoint, RequestOptions};

/// The lazily built blocking HTTP client.
pub(crate) struct BlockingCell {
    connect_timeout: Duration,
    client: OnceLock<reqwest::blocking::Client>,
}

impl BlockingCell {
    pub(crate) fn new(connect_timeout: Duration) -> Self {
        BlockingCell {
            connect_timeout,
            client: OnceLock::new(),
        }
    }

    fn get(&self) -> Result<&reqwest::blocking::Client, ConfigError> {
        if let Some(client) = self.client.get() {
            return Ok(client);
        }
        let built = reqwest::blocking::Client::builder()
            .connect_timeout(self.connect_timeout)
            // Per-request timeouts come from RequestOptions; the builder's 30 s default would
            // silently cap large uploads.
            .timeout(None)
            .build()
            .map_err(|e| ConfigError::HttpClient(e.to_string()))?;
        // Two threads may race to build; the loser's client is dropped here, on a blocking thread.
        let _ = self.client.set(built);
        self.client
            .get()
            .ok_or_else(|| ConfigError::HttpClient("blocking client vanished".into()))
    }
}

impl Drop for BlockingCell {
    fn drop(&mut self) {
        let Some(client) = self.client.take() else {
            return;
        };
        if tokio::runtime::Handle::try_current().is_ok() {
            // Dropping joins reqwest's runtime thread; keep that off the async worker.
            let spawned = std::thread::Builder::new()
                .name("upramp-blocking-drop".into())
                .spawn(move || drop(client));
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "could not spawn a thread to drop the blocking HTTP client");
            }
        }
    }
}

/// Reads prefix, file, suffix in turn without copying the file; flips `sent` once the last byte
/// has been read by the transport.
struct MultipartReader {
    parts: [Bytes; 3],
    index: usize,
    sent: Arc<AtomicBool>,
}

impl Read for MultipartReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let last = self.parts.len() - 1;
        while self.index <= last {
            let part = &mut self.parts[self.index];
            if part.is_empty() {
                self.index += 1;
                continue;
            }
            let n = part.len().min(buf.len());
            buf[..n].copy_from_slice(&part[..n]);
            let _ = part.split_to(n);
            if self.index == last && part.is_empty() {
                self.sent.store(true, Ordering::Release);
            }
            return Ok(n);
        }
        Ok(0)
    }
}

/// A Kimi, GLM or OpenAI-compatible client on the blocking transport; requests say
/// `User-Agent: upramp/<version> (sync)` unless [`RequestOptions::path`] says otherwise.
/// Cheap to clone; get one from [`crate::ProviderClient::blocking`] or [`BlockingProviderClient::new`].
#[derive(Clone)]
pub struct BlockingProviderClient {
    shared: Arc<Shared>,
}

impl fmt::Debug for BlockingProviderClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.shared.debug_as(f, "BlockingProviderClient")
    }
}

impl BlockingProviderClient {
    /// Builds a blocking client. Safe anywhere, including async code: no HTTP client is created
    /// until the first request.
    pub fn new(config: ClientConfig) -> Result<Self, ConfigError> {
        Ok(BlockingProviderClient {
            shared: Arc::new(Shared::new(config)?),
        })
    }

    pub(crate) fn from_shared(shared: Arc<Shared>) -> Self {
        BlockingProviderClient { shared }
    }

    /// The configuration.
    pub fn config(&self) -> &ClientConfig {
        &self.shared.config
    }

    fn builder(
        &self,
        endpoint: Endpoint<'_>,
        options: &RequestOptions,
    ) -> Result<reqwest::blocking::RequestBuilder, ProviderError> {
        let client = self.shared.blocking.get().map_err(|e| {
            ProviderError::without_response(self.shared.kind(), ErrorKind::Transport, e.to_string())
        })?;
        let path = options.path.unwrap_or(ClientPath::Sync);
        let mut builder = client
            .request(endpoint.method(), endpoint.url(&self.shared.base_url))
            .headers(self.shared.headers(path));
        if let Some(timeout) = self.shared.timeout(options) {
            builder = builder.timeout(timeout);
        }
        Ok(builder)
    }

    fn exchange(
        &self,
        builder: reqwest::blocking::RequestBuilder,
        sent: Option<&AtomicBool>,
    ) -> Result<(u16, HeaderMap, Bytes), ProviderError> {
        let fail = |e: reqwest::Error, status: Option<u16>| {
            let mut err = self
                .shared
                .transport_error(&e, e.is_timeout(), e.is_connect());
            err.status = status;
            err.body_fully_sent = sent.map(|s| s.load(Ordering::Acquire));
            err
        };
        let response = builder.send().map_err(|e| fail(e, None))?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.bytes().map_err(|e| fail(e, Some(status)))?;
        Ok((status, headers, body))
    }

    fn call<T>(
        &self,
        endpoint: Endpoint<'_>,
        parse: impl FnOnce(u16, &[u8]) -> Result<T, ProviderError>,
    ) -> Result<T, ProviderError> {
        let builder = self.builder(endpoint, &RequestOptions::default())?;
        let (status, headers, body) = self.exchange(builder, None)?;
        self.shared.finish(status, &headers, &body, parse)
    }

    fn upload_body(
        layout: &MultipartLayout,
        file: Bytes,
        sent: Arc<AtomicBool>,
    ) -> reqwest::blocking::Body {
        let reader = MultipartReader {
            parts: [layout.prefix().clone(), file, layout.suffix().clone()],
            index: 0,
            sent,
        };
        // A sized body: reqwest sends Content-Length, never chunked encoding.
        reqwest::blocking::Body::sized(reader, layout.content_length())
    }
}

impl BlockingFileProvider for BlockingProviderClient {
    fn kind(&self) -> ProviderKind {
        self.shared.config.kind
    }

    fn name(&self) -> &str {
        &self.shared.config.name
    }

    fn check_upload(&self, meta: &UploadMeta) -> Result<(), ProviderError> {
        self.shared.check_upload(meta)
    }

    fn upload_with(
        &self,
        meta: UploadMeta,
        body: Bytes,
        options: &RequestOptions,
    ) -> Result<FileObject, ProviderError> {
        let layout = self.shared.prepare_upload(&meta, body.len() as u64)?;
        let sent = Arc::new(AtomicBool::new(false));
        let builder = self
            .builder(Endpoint::Upload, options)?
            .header(http::header::CONTENT_TYPE, layout.content_type())
            .body(Self::upload_body(&layout, body, Arc::clone(&sent)));
        tracing::debug!(
            provider = self.shared.config.kind.as_str(),
            bytes = layout.file_len(),
            "uploading on the blocking transport"
        );
        let (status, headers, body) = self.exchange(builder, Some(&sent))?;
        let kind = self.kind();
        self.shared.finish(status, &headers, &body, |s, b| {
            parse_file_object(kind, s, b)
        })
    }

    fn retrieve(&self, id: &str) -> Result<FileObject, ProviderError> {
        let kind = self.kind();
        self.call(Endpoint::Retrieve(id), |s, b| parse_file_object(kind, s, b))
    }

    fn content(&self, id: &str) -> Result<Bytes, ProviderError> {
        let builder = self.builder(Endpoint::Content(id), &RequestOptions::default())?;
        let (status, headers, body) = self.exchange(builder, None)?;
        let owned = body.clone();
        self.shared
            .finish(status, &headers, &body, |_, _| Ok(owned))
    }

    fn delete(&self, id: &str) -> Result<Deleted, ProviderError> {
        let kind = self.kind();
        self.call(Endpoint::Delete(id), |s, b| parse_deleted(kind, s, b, id))
    }

    fn list(&self, query: &ListQuery) -> Result<FileList, ProviderError> {
        let kind = self.kind();
        self.call(Endpoint::List(query), |s, b| parse_file_list(kind, s, b))
    }
}
