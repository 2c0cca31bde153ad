//! What the async client (`client.rs`) and its blocking view (`blocking.rs`) share: one validated
//! configuration, the key's header, both connection pools, and one classification of responses and
//! failures, so the two upload paths cannot drift in how they talk to a provider or read its answers.

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use http::{HeaderMap, HeaderValue};
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{DefaultConnector, NextTimeout};

use crate::config::ClientConfig;
use crate::error::{parse_error, ConfigError, ErrorKind, ProviderError};
use crate::kind::{ProviderKind, Transport};
use crate::model::UploadMeta;
use crate::multipart::{Boundary, MultipartLayout};
use crate::request::{common_headers, response_now, RequestOptions};

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
    pub(crate) fn headers(&self, transport: Transport) -> HeaderMap {
        let mut headers = common_headers(transport);
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

/// Idle connections kept per host: enough for a fleet of sync threads sharing one client.
const IDLE_CONNECTIONS_PER_HOST: usize = 64;

/// Idle connections kept in all.
const IDLE_CONNECTIONS: usize = 256;

/// The blocking HTTP agent (connection pool) shared by clones of one client.
pub(crate) struct BlockingAgent {
    pub(crate) agent: ureq::Agent,
}

impl BlockingAgent {
    pub(crate) fn new(connect_timeout: Duration) -> Self {
        let config = ureq::Agent::config_builder()
            .timeout_connect(Some(connect_timeout))
            // Every status is an answer to classify per the contract, not a transport error.
            .http_status_as_error(false)
            // A file API never redirects an upload; a redirect is an answer to report, not to follow.
            .max_redirects(0)
            // ureq keeps 3 idle connections per host by default: a legacy fleet of a dozen blocking
            // threads then opened a new connection for one request in six. Keep one per thread, as
            // the async client (which bounds nothing) does.
            .max_idle_connections_per_host(IDLE_CONNECTIONS_PER_HOST)
            .max_idle_connections(IDLE_CONNECTIONS)
            .build();
        let agent = ureq::Agent::with_parts(config, DefaultConnector::new(), LiteralFirstResolver);
        BlockingAgent { agent }
    }
}

/// Resolves an IP-literal host (a loopback stand-in, an address from service discovery) in place and
/// anything else with `ureq`'s default resolver. The default resolves on a new thread whenever a
/// timeout applies (every call here has one), which for a literal is a thread per request for nothing.
#[derive(Debug)]
struct LiteralFirstResolver;

impl Resolver for LiteralFirstResolver {
    fn resolve(
        &self,
        uri: &http::Uri,
        config: &ureq::config::Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let literal = uri.host().and_then(|host| {
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<IpAddr>()
                .ok()
        });
        let port = uri.port_u16().or_else(|| match uri.scheme_str() {
            Some("https") => Some(443),
            Some("http") => Some(80),
            _ => None,
        });
        match (literal, port) {
            (Some(ip), Some(port)) => {
                let mut addrs = self.empty();
                addrs.push(SocketAddr::new(ip, port));
                Ok(addrs)
            }
            _ => DefaultResolver::default().resolve(uri, config, timeout),
        }
    }
}
