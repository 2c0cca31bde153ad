//! The blocking transport (`ureq`) for the legacy sync path.
//!
//! `ureq` does its socket I/O on the calling thread: a sync upload is one blocking thread from reading
//! the file to parsing the answer, as the legacy system's call was, with no hidden runtime thread to
//! hand the request to and back. Safe to build, use and drop anywhere, including async code (where a
//! call would block the worker, so calls belong on `spawn_blocking` or plain threads).

use std::fmt;
use std::io;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use ureq::RequestExt;

use crate::config::ClientConfig;
use crate::error::{ConfigError, ErrorKind, ProviderError};
use crate::kind::{ProviderKind, Transport};
use crate::model::{
    parse_deleted, parse_file_list, parse_file_object, Deleted, FileList, FileObject, ListQuery,
    UploadMeta,
};
use crate::multipart::MultipartLayout;
use crate::provider::BlockingFileProvider;
use crate::request::{Endpoint, RequestOptions};
use crate::transport::Shared;

/// Largest response body read: far above any file object, list page or `/content` answer, so a
/// misbehaving server cannot make a sync call hold unbounded memory.
const MAX_RESPONSE_BYTES: u64 = 16 * 1024 * 1024;

/// The whole multipart body in one buffer, framed around the file's bytes in place when the caller
/// handed over the only reference to them (no second copy of the file), copied otherwise.
///
/// One buffer, not a reader: the legacy path holds the whole file in memory anyway, and a buffer goes
/// to the socket in as few writes as the kernel takes.
fn contiguous_body(layout: &MultipartLayout, file: Bytes) -> Bytes {
    let (prefix, suffix) = (layout.prefix(), layout.suffix());
    match file.try_into_mut() {
        Ok(mut body) => {
            let file_len = body.len();
            // Growing a large allocation remaps its pages rather than copying them.
            body.reserve(prefix.len() + suffix.len());
            body.resize(prefix.len() + file_len, 0);
            body.copy_within(..file_len, prefix.len());
            body[..prefix.len()].copy_from_slice(prefix);
            body.extend_from_slice(suffix);
            body.freeze()
        }
        Err(shared) => {
            let mut body = BytesMut::with_capacity(prefix.len() + shared.len() + suffix.len());
            body.extend_from_slice(prefix);
            body.extend_from_slice(&shared);
            body.extend_from_slice(suffix);
            body.freeze()
        }
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

    /// Sends `body` to `endpoint` and reads the whole answer, on the calling thread. For an upload
    /// that failed without a response, `body_fully_sent` is `Some(false)` only when the connection was
    /// never made: the buffered body goes out in one piece, so any later failure may have come after
    /// the provider had it all (ambiguous).
    fn exchange(
        &self,
        endpoint: Endpoint<'_>,
        options: &RequestOptions,
        content_type: Option<String>,
        body: &[u8],
    ) -> Result<(u16, HeaderMap, Bytes), ProviderError> {
        let upload = matches!(endpoint, Endpoint::Upload);
        let path = Transport::Blocking;
        let mut request = http::Request::builder()
            .method(endpoint.method())
            .uri(endpoint.url(&self.shared.base_url));
        if let Some(headers) = request.headers_mut() {
            headers.extend(self.shared.headers(path));
            if let Some(content_type) = content_type {
                let value = http::HeaderValue::try_from(content_type).map_err(|e| {
                    ProviderError::without_response(
                        self.kind(),
                        ErrorKind::InvalidRequest,
                        e.to_string(),
                    )
                })?;
                headers.insert(http::header::CONTENT_TYPE, value);
            }
        }
        let request = request.body(body).map_err(|e| {
            ProviderError::without_response(self.kind(), ErrorKind::InvalidRequest, e.to_string())
        })?;
        let fail = |e: ureq::Error, status: Option<u16>| {
            let (timeout, connect) = classify(&e);
            // ureq's `Io` wrapper hides the I/O error from the source chain (and adds only "io: ").
            let cause: &(dyn std::error::Error + 'static) = match &e {
                ureq::Error::Io(io) => io,
                other => other,
            };
            let mut err = self.shared.transport_error(cause, timeout, connect);
            err.status = status;
            if upload {
                err.body_fully_sent = if connect { Some(false) } else { None };
            }
            err
        };
        let mut response = request
            .with_agent(&self.shared.blocking.agent)
            .configure()
            .timeout_global(self.shared.timeout(options))
            .run()
            .map_err(|e| fail(e, None))?;
        let status = response.status().as_u16();
        let headers = std::mem::take(response.headers_mut());
        let answer = response
            .body_mut()
            .with_config()
            .limit(MAX_RESPONSE_BYTES)
            .read_to_vec()
            .map_err(|e| fail(e, Some(status)))?;
        Ok((status, headers, Bytes::from(answer)))
    }

    fn call<T>(
        &self,
        endpoint: Endpoint<'_>,
        parse: impl FnOnce(u16, &[u8]) -> Result<T, ProviderError>,
    ) -> Result<T, ProviderError> {
        let (status, headers, body) =
            self.exchange(endpoint, &RequestOptions::default(), None, &[])?;
        self.shared.finish(status, &headers, &body, parse)
    }
}

/// Whether a `ureq` failure was a timeout, and whether it happened before a connection existed.
fn classify(err: &ureq::Error) -> (bool, bool) {
    match err {
        ureq::Error::Timeout(ureq::Timeout::Connect | ureq::Timeout::Resolve) => (true, true),
        ureq::Error::Timeout(_) => (true, false),
        ureq::Error::ConnectionFailed | ureq::Error::HostNotFound => (false, true),
        ureq::Error::Io(io) => match io.kind() {
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => (true, false),
            io::ErrorKind::ConnectionRefused => (false, true),
            _ => (false, false),
        },
        _ => (false, false),
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
        let body = contiguous_body(&layout, body);
        debug_assert_eq!(body.len() as u64, layout.content_length());
        tracing::debug!(
            provider = self.shared.config.kind.as_str(),
            bytes = layout.file_len(),
            "uploading on the blocking transport"
        );
        // A buffer body: ureq sends its length as Content-Length, never chunked encoding.
        let (status, headers, answer) = self.exchange(
            Endpoint::Upload,
            options,
            Some(layout.content_type()),
            &body,
        )?;
        let kind = self.kind();
        self.shared.finish(status, &headers, &answer, |s, b| {
            parse_file_object(kind, s, b)
        })
    }

    fn retrieve(&self, id: &str) -> Result<FileObject, ProviderError> {
        let kind = self.kind();
        self.call(Endpoint::Retrieve(id), |s, b| parse_file_object(kind, s, b))
    }

    fn content(&self, id: &str) -> Result<Bytes, ProviderError> {
        let (status, headers, body) =
            self.exchange(Endpoint::Content(id), &RequestOptions::default(), None, &[])?;
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::multipart::Boundary;

    fn layout(len: usize) -> MultipartLayout {
        let boundary = Boundary::new("upramp-test-boundary").unwrap();
        MultipartLayout::new(boundary, "notes.txt", "file-extract", len as u64).unwrap()
    }

    fn expected(layout: &MultipartLayout, file: &[u8]) -> Vec<u8> {
        [&layout.prefix()[..], file, &layout.suffix()[..]].concat()
    }

    #[test]
    fn a_sole_owner_buffer_is_framed_in_place() {
        let file: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
        let layout = layout(file.len());
        let body = contiguous_body(&layout, Bytes::from(file.clone()));
        assert_eq!(body.len() as u64, layout.content_length());
        assert_eq!(&body[..], &expected(&layout, &file)[..]);
    }

    #[test]
    fn a_shared_buffer_is_copied_and_left_intact() {
        let file = Bytes::from_static(b"shared contents");
        let kept = file.clone();
        let layout = layout(file.len());
        let body = contiguous_body(&layout, file);
        assert_eq!(&body[..], &expected(&layout, &kept)[..]);
        assert_eq!(&kept[..], b"shared contents");
    }
}
