//! Client configuration and the async transport (`reqwest`).

use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, BoxStream, Stream, StreamExt};
use http::HeaderMap;

use crate::blocking::BlockingProviderClient;
use crate::config::ClientConfig;
use crate::error::{ConfigError, ProviderError};
use crate::key::ApiKey;
use crate::kind::{ProviderKind, Region, Transport};
use crate::model::{
    parse_deleted, parse_file_list, parse_file_object, Deleted, FileList, FileObject, ListQuery,
    UploadBody, UploadMeta,
};
use crate::multipart::MultipartLayout;
use crate::provider::FileProvider;
use crate::request::{Endpoint, RequestOptions};
use crate::transport::{body_error, Shared};

/// The caller's file chunks, checked against the declared length: a stream that yields more or
/// fewer bytes (the file changed underneath us) fails instead of sending a mixed upload.
struct CheckedChunks {
    inner: BoxStream<'static, Result<Bytes, io::Error>>,
    expected: u64,
    seen: u64,
    done: bool,
}

impl Stream for CheckedChunks {
    type Item = Result<Bytes, io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        let item = match self.inner.poll_next_unpin(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(item) => item,
        };
        let expected = self.expected;
        match item {
            Some(Ok(chunk)) => {
                self.seen += chunk.len() as u64;
                if self.seen > expected {
                    self.done = true;
                    let message = format!("body yielded more than the declared {expected} bytes");
                    return Poll::Ready(Some(Err(body_error(io::ErrorKind::InvalidData, message))));
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            Some(Err(e)) => {
                self.done = true;
                Poll::Ready(Some(Err(body_error(
                    e.kind(),
                    format!("reading the body failed: {e}"),
                ))))
            }
            None => {
                self.done = true;
                if self.seen != expected {
                    let message = format!(
                        "body ended after {} of the declared {expected} bytes",
                        self.seen
                    );
                    return Poll::Ready(Some(Err(body_error(
                        io::ErrorKind::UnexpectedEof,
                        message,
                    ))));
                }
                Poll::Ready(None)
            }
        }
    }
}

/// prefix, checked file chunks, suffix; `sent` flips when the suffix is handed to the connection.
fn multipart_stream(
    layout: &MultipartLayout,
    body: UploadBody,
    sent: Arc<AtomicBool>,
) -> BoxStream<'static, Result<Bytes, io::Error>> {
    let file: BoxStream<'static, Result<Bytes, io::Error>> = match body {
        UploadBody::Stream { stream, .. } => stream,
        UploadBody::Bytes(bytes) => stream::once(async move { Ok(bytes) }).boxed(),
    };
    let checked = CheckedChunks {
        inner: file,
        expected: layout.file_len(),
        seen: 0,
        done: false,
    };
    let prefix = layout.prefix().clone();
    let suffix = layout.suffix().clone();
    stream::once(async move { Ok(prefix) })
        .chain(checked)
        .chain(stream::once(async move {
            sent.store(true, Ordering::Release);
            Ok(suffix)
        }))
        .boxed()
}

/// A Kimi, GLM or OpenAI-compatible client on the async transport. Cheap to clone.
/// [`ProviderClient::blocking`] gives the same client on the blocking transport.
#[derive(Clone)]
pub struct ProviderClient {
    shared: Arc<Shared>,
}

impl fmt::Debug for ProviderClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.shared.debug_as(f, "ProviderClient")
    }
}

impl ProviderClient {
    /// Builds a client; the base URL, key and purposes are validated here.
    pub fn new(config: ClientConfig) -> Result<Self, ConfigError> {
        Ok(ProviderClient {
            shared: Arc::new(Shared::new(config)?),
        })
    }

    /// A Kimi client for `region`.
    pub fn kimi(region: Region, api_key: ApiKey) -> Result<Self, ConfigError> {
        ProviderClient::new(ClientConfig::kimi(region, api_key))
    }

    /// A GLM client for `region`.
    pub fn glm(region: Region, api_key: ApiKey) -> Result<Self, ConfigError> {
        ProviderClient::new(ClientConfig::glm(region, api_key))
    }

    /// An OpenAI-compatible client at `base_url` accepting `purposes`.
    pub fn openai_compatible<I, S>(
        base_url: &str,
        api_key: ApiKey,
        purposes: I,
    ) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        ProviderClient::new(ClientConfig::openai_compatible(base_url, api_key, purposes))
    }

    /// A client of `kind` at an explicit base URL (a stand-in or proxy).
    pub fn with_base_url(
        kind: ProviderKind,
        base_url: &str,
        api_key: ApiKey,
    ) -> Result<Self, ConfigError> {
        ProviderClient::new(ClientConfig::new(kind, base_url, api_key))
    }

    /// The configuration.
    pub fn config(&self) -> &ClientConfig {
        &self.shared.config
    }

    /// The normalized base URL.
    pub fn base_url(&self) -> &str {
        &self.shared.base_url
    }

    /// The same client on the blocking transport (shares config; the blocking HTTP client is
    /// created on first use, on the calling blocking thread).
    pub fn blocking(&self) -> BlockingProviderClient {
        BlockingProviderClient::from_shared(Arc::clone(&self.shared))
    }

    fn builder(&self, endpoint: Endpoint<'_>, options: &RequestOptions) -> reqwest::RequestBuilder {
        let path = Transport::Async;
        let mut builder = self
            .shared
            .http
            .request(endpoint.method(), endpoint.url(&self.shared.base_url))
            .headers(self.shared.headers(path));
        if let Some(timeout) = self.shared.timeout(options) {
            builder = builder.timeout(timeout);
        }
        builder
    }

    /// Sends and reads the whole answer. `sent` (uploads only) tells whether the body was fully
    /// handed over when a failure without response happened.
    async fn exchange(
        &self,
        builder: reqwest::RequestBuilder,
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
        let response = builder.send().await.map_err(|e| fail(e, None))?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.bytes().await.map_err(|e| fail(e, Some(status)))?;
        Ok((status, headers, body))
    }

    async fn call<T>(
        &self,
        endpoint: Endpoint<'_>,
        parse: impl FnOnce(u16, &[u8]) -> Result<T, ProviderError>,
    ) -> Result<T, ProviderError> {
        let builder = self.builder(endpoint, &RequestOptions::default());
        let (status, headers, body) = self.exchange(builder, None).await?;
        self.shared.finish(status, &headers, &body, parse)
    }
}

#[async_trait]
impl FileProvider for ProviderClient {
    fn kind(&self) -> ProviderKind {
        self.shared.config.kind
    }

    fn name(&self) -> &str {
        &self.shared.config.name
    }

    fn check_upload(&self, meta: &UploadMeta) -> Result<(), ProviderError> {
        self.shared.check_upload(meta)
    }

    async fn upload_with(
        &self,
        meta: UploadMeta,
        body: UploadBody,
        options: &RequestOptions,
    ) -> Result<FileObject, ProviderError> {
        let layout = self.shared.prepare_upload(&meta, body.len())?;
        let sent = Arc::new(AtomicBool::new(false));
        let stream = multipart_stream(&layout, body, Arc::clone(&sent));
        let builder = self
            .builder(Endpoint::Upload, options)
            .header(http::header::CONTENT_TYPE, layout.content_type())
            // An explicit length makes hyper send a sized body instead of chunked encoding.
            .header(http::header::CONTENT_LENGTH, layout.content_length())
            .body(reqwest::Body::wrap_stream(stream));
        tracing::debug!(
            provider = self.shared.config.kind.as_str(),
            bytes = layout.file_len(),
            "uploading on the async transport"
        );
        let (status, headers, body) = self.exchange(builder, Some(&sent)).await?;
        let kind = self.kind();
        self.shared.finish(status, &headers, &body, |s, b| {
            parse_file_object(kind, s, b)
        })
    }

    async fn retrieve(&self, id: &str) -> Result<FileObject, ProviderError> {
        let kind = self.kind();
        self.call(Endpoint::Retrieve(id), |s, b| parse_file_object(kind, s, b))
            .await
    }

    async fn content(&self, id: &str) -> Result<Bytes, ProviderError> {
        let builder = self.builder(Endpoint::Content(id), &RequestOptions::default());
        let (status, headers, body) = self.exchange(builder, None).await?;
        let owned = body.clone();
        self.shared
            .finish(status, &headers, &body, |_, _| Ok(owned))
    }

    async fn delete(&self, id: &str) -> Result<Deleted, ProviderError> {
        let kind = self.kind();
        self.call(Endpoint::Delete(id), |s, b| parse_deleted(kind, s, b, id))
            .await
    }

    async fn list(&self, query: &ListQuery) -> Result<FileList, ProviderError> {
        let kind = self.kind();
        self.call(Endpoint::List(query), |s, b| parse_file_list(kind, s, b))
            .await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::error::ErrorKind;

    const SECRET: &str = "sk-secret-for-redaction";

    #[test]
    fn debug_output_never_shows_the_key() {
        let config = ClientConfig::glm(Region::China, ApiKey::new(SECRET));
        let client = ProviderClient::new(config.clone()).unwrap();
        let blocking = client.blocking();
        let shown = format!("{config:?} {client:?} {blocking:?} {:?}", config.api_key);
        assert!(!shown.contains(SECRET), "{shown}");
        assert!(shown.contains("open.bigmodel.cn"));
    }

    #[test]
    fn echoed_key_is_scrubbed_from_errors() {
        let client = ProviderClient::new(ClientConfig::kimi(
            Region::International,
            ApiKey::new(SECRET),
        ))
        .unwrap();
        let body = format!(
            r#"{{"error":{{"type":"incorrect_api_key_error","message":"key {SECRET} is wrong"}}}}"#
        );
        let err = client
            .shared
            .finish(401, &HeaderMap::new(), body.as_bytes(), |_, _| Ok(()))
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Authentication);
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains(SECRET), "{shown}");
        assert!(shown.contains("key <redacted> is wrong"), "{shown}");
    }

    #[test]
    fn bad_base_urls_and_keys_are_config_errors() {
        let key = || ApiKey::new("k");
        for url in [
            "ftp://x/v1",
            "not a url",
            "http://user:pw@x/v1",
            "http://x/v1?q=1",
        ] {
            let err = ProviderClient::with_base_url(ProviderKind::Kimi, url, key()).unwrap_err();
            assert!(
                matches!(err, ConfigError::InvalidBaseUrl { .. }),
                "{url}: {err}"
            );
        }
        let err = ProviderClient::kimi(Region::China, ApiKey::new("a\nb")).unwrap_err();
        assert_eq!(err, ConfigError::InvalidKey);
        let client = ProviderClient::with_base_url(
            ProviderKind::Glm,
            "http://127.0.0.1:1/api/paas/v4/",
            key(),
        )
        .unwrap();
        assert_eq!(client.base_url(), "http://127.0.0.1:1/api/paas/v4");
    }

    #[test]
    fn openai_compatible_uses_the_given_purposes() {
        let client = ProviderClient::openai_compatible(
            "https://api.example.com/v1",
            ApiKey::new("k"),
            ["assistants"],
        )
        .unwrap();
        let meta = |purpose: &str| UploadMeta {
            filename: "a".into(),
            purpose: purpose.into(),
            length: 1,
        };
        assert!(client.check_upload(&meta("assistants")).is_ok());
        assert!(client
            .check_upload(&meta("batch"))
            .is_err_and(|e| e.is_local()));
        assert_eq!(client.kind(), ProviderKind::OpenAi);
    }
}
