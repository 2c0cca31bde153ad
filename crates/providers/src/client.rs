//! Client configuration and the async transport (`reqwest`).

use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, BoxStream, Stream, StreamExt};
use http::{HeaderMap, HeaderValue};

use crate::blocking::{BlockingAgent, BlockingProviderClient};
use crate::error::{parse_error, ConfigError, ErrorKind, ProviderError};
use crate::key::ApiKey;
use crate::kind::{ClientPath, ProviderKind, Region};
use crate::limits::{Limits, PurposeLimit, OPENAI_DEFAULT_MAX_BYTES};
use crate::model::{
    parse_deleted, parse_file_list, parse_file_object, Deleted, FileList, FileObject, ListQuery,
    UploadBody, UploadMeta,
};
use crate::multipart::{Boundary, MultipartLayout};
use crate::provider::FileProvider;
use crate::request::{common_headers, response_now, Endpoint, RequestOptions};

/// How to reach one provider. `Debug` never shows the key.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The provider's dialect.
    pub kind: ProviderKind,
    /// The name reported by [`FileProvider::name`].
    pub name: String,
    /// The API root, e.g. `https://api.moonshot.ai/v1` or a stand-in's `http://127.0.0.1:PORT/v1`.
    pub base_url: String,
    /// The key sent as `Authorization: Bearer`.
    pub api_key: ApiKey,
    /// Allowed purposes and their size limits.
    pub limits: Limits,
    /// Time allowed to establish a connection.
    pub connect_timeout: Duration,
    /// Default total time per request (overridable per call); `None` means no limit.
    pub request_timeout: Option<Duration>,
}

/// Default connect timeout: long enough for a cross-region TLS handshake, short enough to fall back.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

impl ClientConfig {
    /// A config for `kind` at `base_url` with the documented limits and default timeouts.
    pub fn new(kind: ProviderKind, base_url: impl Into<String>, api_key: ApiKey) -> Self {
        ClientConfig {
            kind,
            name: kind.as_str().to_owned(),
            base_url: base_url.into(),
            api_key,
            limits: Limits::for_provider(kind),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            request_timeout: None,
        }
    }

    /// Kimi in `region` (`api.moonshot.ai` or `api.moonshot.cn`).
    pub fn kimi(region: Region, api_key: ApiKey) -> Self {
        let base = region.base_url(ProviderKind::Kimi).unwrap_or_default();
        ClientConfig::new(ProviderKind::Kimi, base, api_key)
    }

    /// GLM in `region` (`api.z.ai` or `open.bigmodel.cn`).
    pub fn glm(region: Region, api_key: ApiKey) -> Self {
        let base = region.base_url(ProviderKind::Glm).unwrap_or_default();
        ClientConfig::new(ProviderKind::Glm, base, api_key)
    }

    /// An OpenAI-compatible file API at `base_url` accepting `purposes`, each capped at 512 MB
    /// (OpenAI's documented per-file limit; replace [`ClientConfig::limits`] for others).
    pub fn openai_compatible<I, S>(
        base_url: impl Into<String>,
        api_key: ApiKey,
        purposes: I,
    ) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let limits = Limits::new(
            purposes
                .into_iter()
                .map(|p| PurposeLimit::new(p, OPENAI_DEFAULT_MAX_BYTES))
                .collect(),
        );
        ClientConfig {
            limits,
            ..ClientConfig::new(ProviderKind::OpenAi, base_url, api_key)
        }
    }

    /// The same config pointed at another base URL (a stand-in, a proxy).
    pub fn with_base_url(mut self, base_url: impl Into<String>) -> Self {
        self.base_url = base_url.into();
        self
    }

    /// The same config with a default per-request timeout.
    pub fn with_request_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// The same config with a connect timeout.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The same config with another limits table.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Checks the base URL and key, returning the normalized base URL (no trailing slash) and the
    /// `host:port` it connects to.
    fn validate(&self) -> Result<(String, String), ConfigError> {
        let invalid = |reason: &str| ConfigError::InvalidBaseUrl {
            url: self.base_url.clone(),
            reason: reason.into(),
        };
        let url = reqwest::Url::parse(&self.base_url).map_err(|e| invalid(&e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(invalid("scheme must be http or https"));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(invalid("must not have a query or fragment"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(invalid(
                "must not carry credentials; pass the key separately",
            ));
        }
        self.api_key.bearer_header()?;
        for purpose in self.limits.purposes() {
            if purpose.is_empty() || !purpose.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(ConfigError::InvalidPurpose(purpose.to_owned()));
            }
        }
        let host = url.host_str().ok_or_else(|| invalid("has no host"))?;
        let address = match url.port_or_known_default() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        };
        Ok((self.base_url.trim_end_matches('/').to_owned(), address))
    }
}

/// State shared by the async client and its blocking view.
pub(crate) struct Shared {
    pub(crate) config: ClientConfig,
    pub(crate) base_url: String,
    /// `host:port` of the base URL (never credentials: a URL carrying them is refused), named by
    /// connection errors.
    pub(crate) address: String,
    pub(crate) auth: HeaderValue,
    pub(crate) http: reqwest::Client,
    pub(crate) blocking: BlockingAgent,
}

impl Shared {
    /// The one redacted `Debug` shape both transports' clients print (the key shows as redacted).
    pub(crate) fn debug_as(&self, f: &mut fmt::Formatter<'_>, type_name: &str) -> fmt::Result {
        f.debug_struct(type_name)
            .field("kind", &self.config.kind)
            .field("name", &self.config.name)
            .field("base_url", &self.base_url)
            .field("api_key", &self.config.api_key)
            .finish_non_exhaustive()
    }

    pub(crate) fn new(config: ClientConfig) -> Result<Self, ConfigError> {
        let (base_url, address) = config.validate()?;
        let auth = config.api_key.bearer_header()?;
        let http = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .build()
            .map_err(|e| ConfigError::HttpClient(e.to_string()))?;
        let blocking = BlockingAgent::new(config.connect_timeout);
        Ok(Shared {
            config,
            base_url,
            address,
            auth,
            http,
            blocking,
        })
    }

    pub(crate) fn kind(&self) -> ProviderKind {
        self.config.kind
    }

    /// Headers for one request on `path`, including the key.
    pub(crate) fn headers(&self, path: ClientPath) -> HeaderMap {
        let mut headers = common_headers(path);
        headers.insert(http::header::AUTHORIZATION, self.auth.clone());
        headers
    }

    pub(crate) fn timeout(&self, options: &RequestOptions) -> Option<Duration> {
        options.timeout.or(self.config.request_timeout)
    }

    /// Turns a finished exchange into a result: parse 2xx with `parse`, classify anything else.
    pub(crate) fn finish<T>(
        &self,
        status: u16,
        headers: &HeaderMap,
        body: &[u8],
        parse: impl FnOnce(u16, &[u8]) -> Result<T, ProviderError>,
    ) -> Result<T, ProviderError> {
        let result = if (200..300).contains(&status) {
            parse(status, body)
        } else {
            Err(parse_error(
                self.kind(),
                status,
                headers,
                body,
                response_now(headers),
            ))
        };
        result.map_err(|e| self.scrub(e))
    }

    /// Removes the key from a message built from server or library text.
    pub(crate) fn scrub(&self, mut err: ProviderError) -> ProviderError {
        err.message = self.config.api_key.scrub(&err.message);
        err
    }

    /// Classifies a failure without a (complete) response, from its error chain. Connection
    /// failures name the provider's `host:port`, as both transports' own texts may not.
    pub(crate) fn transport_error(
        &self,
        err: &(dyn std::error::Error + 'static),
        is_timeout: bool,
        is_connect: bool,
    ) -> ProviderError {
        let chain = error_chain(err);
        let address = &self.address;
        let kind = if find_body_error(err) {
            ErrorKind::Body
        } else if is_timeout {
            ErrorKind::Timeout
        } else {
            ErrorKind::Transport
        };
        let message = match kind {
            ErrorKind::Body => chain,
            _ if is_connect && find_io_kind(err, io::ErrorKind::ConnectionRefused) => {
                format!("connection to {address} refused")
            }
            _ if is_connect => format!("connection to {address} failed: {chain}"),
            _ => format!("connection to {address}: {chain}"),
        };
        self.scrub(ProviderError::without_response(self.kind(), kind, message))
    }

    pub(crate) fn check_upload(&self, meta: &UploadMeta) -> Result<(), ProviderError> {
        self.config.limits.check(self.kind(), meta)
    }

    /// The local checks of an upload: limits, declared length, and the multipart layout.
    pub(crate) fn prepare_upload(
        &self,
        meta: &UploadMeta,
        body_len: u64,
    ) -> Result<MultipartLayout, ProviderError> {
        self.check_upload(meta)?;
        if body_len != meta.length {
            return Err(ProviderError::rejected(
                self.kind(),
                ErrorKind::InvalidRequest,
                format!(
                    "body of {:?} is {body_len} bytes but its metadata says {}",
                    meta.filename, meta.length
                ),
            ));
        }
        MultipartLayout::new(
            Boundary::random(),
            &meta.filename,
            &meta.purpose,
            meta.length,
        )
        .map_err(|e| ProviderError::rejected(self.kind(), ErrorKind::InvalidRequest, e.to_string()))
    }
}

/// "a: b: c" from an error and its sources, skipping repeats (reqwest and hyper nest the same text).
pub(crate) fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut current = Some(err);
    while let Some(e) = current {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        current = e.source();
    }
    parts.join(": ")
}

/// Marks an I/O error raised by (or about) the caller's body, so it can be told apart from a
/// connection reset after the transport has wrapped it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct BodySourceError(pub(crate) String);

pub(crate) fn body_error(kind: io::ErrorKind, message: String) -> io::Error {
    io::Error::new(kind, BodySourceError(message))
}

/// Whether an I/O error of `kind` is somewhere in the chain.
fn find_io_kind(err: &(dyn std::error::Error + 'static), kind: io::ErrorKind) -> bool {
    let mut current = Some(err);
    while let Some(e) = current {
        if e.downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == kind)
        {
            return true;
        }
        current = e.source();
    }
    false
}

fn find_body_error(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(err);
    while let Some(e) = current {
        if e.is::<BodySourceError>() {
            return true;
        }
        if let Some(io) = e.downcast_ref::<io::Error>() {
            if io
                .get_ref()
                .is_some_and(|inner| inner.is::<BodySourceError>())
            {
                return true;
            }
        }
        current = e.source();
    }
    false
}

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
        let path = options.path.unwrap_or(ClientPath::Async);
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
