//! The pure half of every request: method, URL and common headers, shared by both transports so
//! the two upload paths cannot drift apart in what they send.

use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderValue, Method};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC};

use crate::kind::Transport;
use crate::model::ListQuery;

/// Everything except RFC 3986 unreserved characters is escaped in path segments and query values,
/// so a file id like `../x` or `a?b` stays one segment.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// One operation of the file API.
#[derive(Debug, Clone, Copy)]
pub enum Endpoint<'a> {
    /// `POST /files`.
    Upload,
    /// `GET /files?...`.
    List(&'a ListQuery),
    /// `GET /files/{id}`.
    Retrieve(&'a str),
    /// `GET /files/{id}/content`.
    Content(&'a str),
    /// `DELETE /files/{id}`.
    Delete(&'a str),
}

impl Endpoint<'_> {
    /// The HTTP method.
    pub fn method(&self) -> Method {
        match self {
            Endpoint::Upload => Method::POST,
            Endpoint::List(_) | Endpoint::Retrieve(_) | Endpoint::Content(_) => Method::GET,
            Endpoint::Delete(_) => Method::DELETE,
        }
    }

    /// The full URL under `base_url` (which has no trailing slash, e.g. `https://api.moonshot.ai/v1`).
    pub fn url(&self, base_url: &str) -> String {
        let base = base_url.trim_end_matches('/');
        let segment = |id: &str| percent_encoding::utf8_percent_encode(id, COMPONENT).to_string();
        match self {
            Endpoint::Upload => format!("{base}/files"),
            Endpoint::List(query) => {
                let pairs = query.pairs();
                if pairs.is_empty() {
                    return format!("{base}/files");
                }
                let query: Vec<String> = pairs
                    .iter()
                    .map(|(name, value)| format!("{name}={}", segment(value)))
                    .collect();
                format!("{base}/files?{}", query.join("&"))
            }
            Endpoint::Retrieve(id) | Endpoint::Delete(id) => {
                format!("{base}/files/{}", segment(id))
            }
            Endpoint::Content(id) => format!("{base}/files/{}/content", segment(id)),
        }
    }
}

/// Per-call options.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestOptions {
    /// Total time allowed for this request, body included; overrides the client's
    /// `request_timeout`. The uploader grows it with the file size.
    pub timeout: Option<Duration>,
}

impl RequestOptions {
    /// Options with just a timeout.
    pub fn with_timeout(timeout: Duration) -> Self {
        RequestOptions {
            timeout: Some(timeout),
        }
    }
}

/// Headers every request carries apart from `Authorization` (added by the transport from the
/// key) and the body headers: `User-Agent` naming the path, and `Accept`.
pub fn common_headers(transport: Transport) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if let Ok(agent) = HeaderValue::from_str(&transport.user_agent()) {
        headers.insert(http::header::USER_AGENT, agent);
    }
    headers.insert(
        http::header::ACCEPT,
        HeaderValue::from_static("application/json"),
    );
    headers
}

/// The reference time for an HTTP-date `Retry-After`: the response's own `Date` header (as RFC
/// 9110 intends, and immune to clock skew between us and the provider), else the local clock.
pub(crate) fn response_now(headers: &HeaderMap) -> SystemTime {
    headers
        .get(http::header::DATE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok())
        .unwrap_or_else(SystemTime::now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_escape_ids_and_queries() {
        let base = "http://127.0.0.1:1/v1/";
        assert_eq!(Endpoint::Upload.url(base), "http://127.0.0.1:1/v1/files");
        assert_eq!(
            Endpoint::Retrieve("../admin").url(base),
            "http://127.0.0.1:1/v1/files/..%2Fadmin"
        );
        assert_eq!(
            Endpoint::Content("a b?").url(base),
            "http://127.0.0.1:1/v1/files/a%20b%3F/content"
        );
        let q = ListQuery {
            purpose: Some("file-extract".into()),
            after: Some("x&y".into()),
            order: None,
            limit: Some(10),
        };
        assert_eq!(
            Endpoint::List(&q).url(base),
            "http://127.0.0.1:1/v1/files?purpose=file-extract&after=x%26y&limit=10"
        );
        assert_eq!(
            Endpoint::List(&ListQuery::default()).url(base),
            "http://127.0.0.1:1/v1/files"
        );
        assert_eq!(Endpoint::Delete("f").method(), Method::DELETE);
    }

    #[test]
    fn user_agent_names_the_path() {
        let headers = common_headers(Transport::Blocking);
        let agent = headers
            .get(http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok());
        assert_eq!(
            agent,
            Some(concat!("upramp/", env!("CARGO_PKG_VERSION"), " (sync)"))
        );
    }
}
