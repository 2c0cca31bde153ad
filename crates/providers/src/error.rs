//! Errors: configuration mistakes ([`ConfigError`]) and failed provider operations
//! ([`ProviderError`]), with the contract's retry classification and the pure parsers behind it.

use std::fmt;
use std::time::{Duration, SystemTime};

use http::HeaderMap;

pub use crate::config_error::ConfigError;
use crate::kind::ProviderKind;

/// What went wrong, in the caller's terms; [`ProviderError::is_retryable`] is derived from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// Bad or missing key (HTTP 401, GLM 1000-1004).
    Authentication,
    /// The key may not use this API or file (HTTP 403, GLM HTTP 434).
    PermissionDenied,
    /// The file id does not exist (HTTP 404).
    NotFound,
    /// The request is wrong (HTTP 400 and other 4xx, GLM 1210/1214, bad purpose, zero bytes).
    InvalidRequest,
    /// The file exceeds the size limit (HTTP 413, GLM HTTP 435, Kimi "too large", local limit).
    TooLarge,
    /// Too many requests; retry later, honouring `retry_after` (HTTP 429, GLM 1302).
    RateLimited,
    /// The balance or quota is used up; retrying does not help (Kimi `exceeded_current_quota_error`,
    /// OpenAI `insufficient_quota`, GLM 1113).
    QuotaExhausted,
    /// The provider failed or is overloaded (HTTP 5xx, GLM 1305).
    Server,
    /// The connection failed: refused, reset, closed before a response arrived.
    Transport,
    /// The request did not complete within its timeout.
    Timeout,
    /// A 2xx answer whose body is not the documented JSON.
    MalformedResponse,
    /// The caller's body failed: its stream returned an I/O error, or it yielded a different number
    /// of bytes than the declared length (the file changed while being sent).
    Body,
}

impl ErrorKind {
    /// A stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Authentication => "authentication",
            ErrorKind::PermissionDenied => "permission_denied",
            ErrorKind::NotFound => "not_found",
            ErrorKind::InvalidRequest => "invalid_request",
            ErrorKind::TooLarge => "too_large",
            ErrorKind::RateLimited => "rate_limited",
            ErrorKind::QuotaExhausted => "quota_exhausted",
            ErrorKind::Server => "server",
            ErrorKind::Transport => "transport",
            ErrorKind::Timeout => "timeout",
            ErrorKind::MalformedResponse => "malformed_response",
            ErrorKind::Body => "body",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed provider operation. `Display` is one line: provider, status, code, message and
/// retry-after; it never contains the API key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.render())]
pub struct ProviderError {
    /// The provider the request was for.
    pub provider: ProviderKind,
    /// The classification.
    pub kind: ErrorKind,
    /// The HTTP status, when a response arrived.
    pub status: Option<u16>,
    /// The provider's own code (GLM business code) or error type (Kimi/OpenAI `type`).
    pub code: Option<String>,
    /// A one-line human-readable message.
    pub message: String,
    /// How long the provider asked us to wait (`Retry-After`), when it said.
    pub retry_after: Option<Duration>,
    /// True when the request was refused locally and no byte was sent (limits, purpose, zero bytes).
    pub rejected_before_send: bool,
    /// For uploads that failed without a response: whether the whole body had been handed to the
    /// connection. `Some(false)` means the provider cannot have stored the file; `Some(true)` is
    /// the ambiguous case (it may have). `None` when unknown or not an upload.
    pub body_fully_sent: Option<bool>,
}

/// Longest message kept from a provider body, so a huge HTML error page stays one short line.
const MAX_MESSAGE_CHARS: usize = 300;

impl ProviderError {
    /// An error for a request refused before sending a byte.
    pub fn rejected(provider: ProviderKind, kind: ErrorKind, message: impl Into<String>) -> Self {
        ProviderError {
            provider,
            kind,
            status: None,
            code: None,
            message: one_line(&message.into()),
            retry_after: None,
            rejected_before_send: true,
            body_fully_sent: Some(false),
        }
    }

    /// An error without an HTTP response (transport, timeout, body).
    pub fn without_response(
        provider: ProviderKind,
        kind: ErrorKind,
        message: impl Into<String>,
    ) -> Self {
        ProviderError {
            provider,
            kind,
            status: None,
            code: None,
            message: one_line(&message.into()),
            retry_after: None,
            rejected_before_send: false,
            body_fully_sent: None,
        }
    }

    /// Whether the same request may succeed if sent again, exactly per the contract: 429 (except
    /// quota/arrears), 500/502/503/504, GLM 1302/1305, connection failures and timeouts are
    /// retryable; 400, 401, 403, 404, 413, 434, 435, quota exhaustion, local rejections, body
    /// failures and malformed 2xx answers (the operation probably happened) are not.
    pub fn is_retryable(&self) -> bool {
        if self.rejected_before_send {
            return false;
        }
        match self.kind {
            ErrorKind::RateLimited | ErrorKind::Transport | ErrorKind::Timeout => true,
            ErrorKind::Server => {
                matches!(self.status, None | Some(500 | 502 | 503 | 504))
                    || matches!(self.code.as_deref(), Some("1302" | "1305"))
            }
            ErrorKind::Authentication
            | ErrorKind::PermissionDenied
            | ErrorKind::NotFound
            | ErrorKind::InvalidRequest
            | ErrorKind::TooLarge
            | ErrorKind::QuotaExhausted
            | ErrorKind::MalformedResponse
            | ErrorKind::Body => false,
        }
    }

    /// True when the request was refused locally before a byte was sent.
    pub fn is_local(&self) -> bool {
        self.rejected_before_send
    }

    fn render(&self) -> String {
        let mut out = format!("{}: ", self.provider);
        if self.rejected_before_send {
            out.push_str("rejected before send: ");
        }
        if let Some(status) = self.status {
            out.push_str(&format!("HTTP {status} "));
        }
        out.push_str(self.kind.as_str());
        if let Some(code) = &self.code {
            out.push_str(&format!(" ({code})"));
        }
        out.push_str(": ");
        out.push_str(&self.message);
        if let Some(wait) = self.retry_after {
            out.push_str(&format!(" (retry after {}s)", wait.as_secs_f64()));
        }
        out
    }
}

/// Collapses whitespace runs (including CR/LF) to single spaces and caps the length.
pub(crate) fn one_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(MAX_MESSAGE_CHARS));
    let mut count = 0;
    for word in text.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        for ch in word.chars() {
            if count == MAX_MESSAGE_CHARS {
                out.push_str("...");
                return out;
            }
            out.push(if ch.is_control() { '?' } else { ch });
            count += 1;
        }
    }
    out
}

/// Parses a `Retry-After` value: delta-seconds (`"120"`) or an HTTP-date (RFC 9110), the latter
/// relative to `now`. A date in the past means "now" (zero); anything else unparseable is `None`.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Absurdly long digit strings saturate instead of failing: the provider clearly meant "long".
        return Some(Duration::from_secs(
            value.parse::<u64>().unwrap_or(u64::MAX),
        ));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// The parts of a JSON error body the providers document:
/// Kimi `{"error":{"type","message"}}`, GLM `{"error":{"code":"1302","message"}}`,
/// OpenAI `{"error":{"type","code","message"}}`.
#[derive(Debug, Default)]
struct ErrorBody {
    kind: Option<String>,
    code: Option<String>,
    message: Option<String>,
}

fn parse_error_body(body: &[u8]) -> Option<ErrorBody> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let error = value
        .get("error")
        .filter(|e| e.is_object())
        .unwrap_or(&value);
    let text = |field: &str| -> Option<String> {
        match error.get(field)? {
            serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
            serde_json::Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    };
    let parsed = ErrorBody {
        kind: text("type"),
        code: text("code"),
        message: text("message"),
    };
    if parsed.kind.is_none() && parsed.code.is_none() && parsed.message.is_none() {
        return None;
    }
    Some(parsed)
}

/// Classifies a non-2xx response. Pure: everything it needs is passed in, including `now` for an
/// HTTP-date `Retry-After`. The provider's code/type wins over the HTTP status where the contract
/// says so (a GLM 1113 on HTTP 429 is quota exhaustion, not a rate limit).
pub fn parse_error(
    provider: ProviderKind,
    status: u16,
    headers: &HeaderMap,
    body: &[u8],
    now: SystemTime,
) -> ProviderError {
    let retry_after = headers
        .get(http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, now));
    let parsed = parse_error_body(body);
    let (code, message) = match &parsed {
        Some(p) => (
            p.code.clone().or_else(|| p.kind.clone()),
            p.message.clone().unwrap_or_else(|| default_message(status)),
        ),
        None => {
            let text = String::from_utf8_lossy(body);
            let text = one_line(&text);
            let message = if text.is_empty() {
                default_message(status)
            } else {
                format!(
                    "{} (body is not the documented JSON error: {text})",
                    default_message(status)
                )
            };
            (None, message)
        }
    };
    let kind = classify(status, parsed.as_ref(), &message);
    ProviderError {
        provider,
        kind,
        status: Some(status),
        code,
        message: one_line(&message),
        retry_after,
        rejected_before_send: false,
        body_fully_sent: None,
    }
}

fn default_message(status: u16) -> String {
    let reason = http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or(match status {
            434 => "No permission for the file API",
            435 => "File too large",
            _ => "Unexpected status",
        });
    format!("HTTP {status} {reason}")
}

fn classify(status: u16, body: Option<&ErrorBody>, message: &str) -> ErrorKind {
    let code = body.and_then(|b| b.code.as_deref());
    let kind = body.and_then(|b| b.kind.as_deref());
    let named = |name: &str| code == Some(name) || kind == Some(name);

    // The size statuses are unambiguous whatever code rides along (GLM sends 435 with 1210).
    if matches!(status, 413 | 435) {
        return ErrorKind::TooLarge;
    }
    // GLM business codes next: they refine (and for 1113, override) the HTTP status.
    if let Some(code) = code.and_then(|c| c.parse::<u32>().ok()) {
        match code {
            1000..=1004 => return ErrorKind::Authentication,
            1113 => return ErrorKind::QuotaExhausted,
            1210 | 1214 => return invalid_or_too_large(message),
            1302 => return ErrorKind::RateLimited,
            1305 => return ErrorKind::Server,
            _ => {}
        }
    }
    if named("exceeded_current_quota_error") || named("insufficient_quota") {
        return ErrorKind::QuotaExhausted;
    }
    if named("rate_limit_reached_error") || named("rate_limit_exceeded") {
        return ErrorKind::RateLimited;
    }
    if named("invalid_authentication_error")
        || named("incorrect_api_key_error")
        || named("invalid_api_key")
    {
        return ErrorKind::Authentication;
    }
    match status {
        401 => ErrorKind::Authentication,
        403 | 434 => ErrorKind::PermissionDenied,
        404 => ErrorKind::NotFound,
        408 => ErrorKind::Timeout,
        429 => ErrorKind::RateLimited,
        400..=499 => invalid_or_too_large(message),
        500..=599 => ErrorKind::Server,
        _ => ErrorKind::MalformedResponse,
    }
}

/// Kimi reports an oversized file as a plain 400 `invalid_request_error`, GLM as 400 code 1210:
/// only the message tells a size problem from another bad parameter.
fn invalid_or_too_large(message: &str) -> ErrorKind {
    let lower = message.to_ascii_lowercase();
    let about_size = lower.contains("too large")
        || lower.contains("too big")
        || (lower.contains("size") && lower.contains("exceed"));
    if about_size {
        ErrorKind::TooLarge
    } else {
        ErrorKind::InvalidRequest
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn now() -> SystemTime {
        httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap()
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        assert_eq!(
            parse_retry_after("120", now()),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after(" 0 ", now()), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:50:07 GMT", now()),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now()),
            Some(Duration::ZERO)
        );
        // RFC 850 and asctime forms are obsolete but still valid HTTP-dates.
        assert_eq!(
            parse_retry_after("Sunday, 06-Nov-94 08:49:47 GMT", now()),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            parse_retry_after("Sun Nov  6 08:49:38 1994", now()),
            Some(Duration::from_secs(1))
        );
        assert_eq!(parse_retry_after("-5", now()), None);
        assert_eq!(parse_retry_after("1.5", now()), None);
        assert_eq!(parse_retry_after("soon", now()), None);
        assert_eq!(parse_retry_after("", now()), None);
        assert_eq!(
            parse_retry_after("99999999999999999999999", now()),
            Some(Duration::from_secs(u64::MAX))
        );
    }

    #[test]
    fn one_line_collapses_and_caps() {
        assert_eq!(one_line("a\r\n  b\tc"), "a b c");
        let long = "x".repeat(1000);
        assert_eq!(one_line(&long).chars().count(), MAX_MESSAGE_CHARS + 3);
    }

    #[test]
    fn local_rejection_is_not_retryable() {
        let err = ProviderError::rejected(ProviderKind::Kimi, ErrorKind::TooLarge, "big");
        assert!(err.is_local());
        assert!(!err.is_retryable());
        assert_eq!(
            err.to_string(),
            "kimi: rejected before send: too_large: big"
        );
    }

    #[test]
    fn server_retryability_follows_the_status_list() {
        let headers = HeaderMap::new();
        for (status, retryable) in [
            (500, true),
            (502, true),
            (503, true),
            (504, true),
            (501, false),
            (505, false),
        ] {
            let err = parse_error(ProviderKind::Kimi, status, &headers, b"", now());
            assert_eq!(err.kind, ErrorKind::Server);
            assert_eq!(err.is_retryable(), retryable, "status {status}");
        }
    }
}
