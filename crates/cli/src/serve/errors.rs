//! OpenAI-shaped errors: `{"error":{"message","type","param","code"}}` with the matching status, and
//! the mapping from provider and uploader failures to them.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, StatusCode};
use http_body_util::Full;
use hyper::Response;
use upramp_providers::{ErrorKind, ProviderError};
use upramp_uploader::{UnknownCause, UploadError};

/// Retry-After sent when the gateway itself is out of room or draining.
pub const BUSY_RETRY_AFTER: Duration = Duration::from_secs(1);

/// An error answer.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// OpenAI's error `type`.
    pub kind: &'static str,
    /// A one-line message (already free of secrets).
    pub message: String,
    /// The request parameter at fault.
    pub param: Option<&'static str>,
    /// A stable machine-readable code.
    pub code: String,
    /// Seconds for `Retry-After` (429 and 503).
    pub retry_after: Option<Duration>,
    /// True when the provider may hold the file although no receipt names it.
    pub outcome_unknown: bool,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            message: message.into(),
            param: None,
            code: code.to_owned(),
            retry_after: None,
            outcome_unknown: false,
        }
    }

    /// 400 about one parameter.
    pub fn bad_request(param: Option<&'static str>, message: impl Into<String>) -> Self {
        Self {
            param,
            ..Self::new(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "invalid_request",
                message,
            )
        }
    }

    /// 401: missing or wrong client token.
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            "invalid_api_key",
            "missing or invalid bearer token for this gateway",
        )
    }

    /// 404 for an unknown route.
    pub fn no_route(method: &str, path: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            "unknown_url",
            format!("unknown route {method} {}", truncate(path, 200)),
        )
    }

    /// 405 for a known path with another method.
    pub fn method_not_allowed(method: &str, path: &str) -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_request_error",
            "method_not_allowed",
            format!("method {method} is not allowed on {}", truncate(path, 200)),
        )
    }

    /// 413: the body is over a limit.
    pub fn too_large(message: impl Into<String>) -> Self {
        Self {
            param: Some("file"),
            ..Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request_error",
                "file_too_large",
                message,
            )
        }
    }

    /// 408: the client stopped sending its body.
    pub fn body_timeout(after: Duration) -> Self {
        Self::new(
            StatusCode::REQUEST_TIMEOUT,
            "invalid_request_error",
            "body_timeout",
            format!("no request body bytes for {} s", after.as_secs()),
        )
    }

    /// 504: the gateway stopped waiting for the uploader (the request's deadline, slot waits
    /// included). A sync attempt may still be running on its thread, so the outcome is unknown.
    pub fn upload_deadline(after: Duration) -> Self {
        Self {
            outcome_unknown: true,
            ..Self::new(
                StatusCode::GATEWAY_TIMEOUT,
                "server_error",
                "outcome_unknown",
                format!(
                    "no answer within the upload timeout of {:.1} s; the file may have been stored",
                    after.as_secs_f64()
                ),
            )
        }
    }

    /// 503 with Retry-After: the spool has no room.
    pub fn spool_full() -> Self {
        Self {
            retry_after: Some(BUSY_RETRY_AFTER),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "server_error",
                "spool_full",
                "the gateway's spool is full; retry later",
            )
        }
    }

    /// 503 with Retry-After: the gateway is shutting down.
    pub fn draining() -> Self {
        Self {
            retry_after: Some(BUSY_RETRY_AFTER),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "server_error",
                "shutting_down",
                "the gateway is shutting down; retry on another instance",
            )
        }
    }

    /// 500: a fault of the gateway itself.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "internal_error",
            message,
        )
    }

    /// The answer for a provider error on a forwarded call or an upload.
    pub fn from_provider(err: &ProviderError) -> Self {
        let message = err.to_string();
        let code = err
            .code
            .clone()
            .filter(|c| !c.is_empty() && c.len() <= 64)
            .unwrap_or_else(|| err.kind.as_str().to_owned());
        let (status, kind) = match err.kind {
            ErrorKind::InvalidRequest => (StatusCode::BAD_REQUEST, "invalid_request_error"),
            ErrorKind::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "invalid_request_error"),
            ErrorKind::NotFound => (StatusCode::NOT_FOUND, "invalid_request_error"),
            ErrorKind::RateLimited | ErrorKind::QuotaExhausted => {
                (StatusCode::TOO_MANY_REQUESTS, "rate_limit_error")
            }
            ErrorKind::Timeout => (StatusCode::GATEWAY_TIMEOUT, "server_error"),
            // The provider refusing the gateway's own key is the gateway's problem, not the client's.
            ErrorKind::Authentication
            | ErrorKind::PermissionDenied
            | ErrorKind::Server
            | ErrorKind::MalformedResponse
            | ErrorKind::Transport
            | ErrorKind::Body => (StatusCode::BAD_GATEWAY, "server_error"),
        };
        let retry_after = (status == StatusCode::TOO_MANY_REQUESTS)
            .then(|| err.retry_after.unwrap_or(BUSY_RETRY_AFTER));
        Self {
            retry_after,
            param: matches!(err.kind, ErrorKind::TooLarge).then_some("file"),
            ..Self::new(status, kind, &code, message)
        }
    }

    /// The answer for a failed upload. Messages name the provider's cause, never the spool path.
    pub fn from_upload(err: &UploadError) -> Self {
        match err {
            UploadError::TooLarge { source, .. } | UploadError::Rejected { source, .. } => {
                Self::from_provider(source)
            }
            UploadError::Empty { .. } => Self {
                param: Some("file"),
                ..Self::bad_request(None, "the file is empty (0 bytes); providers reject empty files")
            },
            UploadError::Provider {
                source,
                path_taken,
                attempts,
                ..
            } => {
                let mut answer = Self::from_provider(source);
                answer.message = format!(
                    "upload failed on the {path_taken} path after {attempts} attempt(s): {}",
                    answer.message
                );
                answer
            }
            UploadError::Timeout {
                kind,
                after,
                path_taken,
                attempts,
                ..
            } => Self::new(
                StatusCode::GATEWAY_TIMEOUT,
                "server_error",
                "timeout",
                format!(
                    "upload timed out ({kind} timeout, {after:?}) on the {path_taken} path after {attempts} attempt(s)"
                ),
            ),
            UploadError::OutcomeUnknown {
                cause,
                path_taken,
                attempts,
                ..
            } => Self {
                outcome_unknown: true,
                ..Self::new(
                    // Out of time (the deadline, or a list lookup that never answered) is 504;
                    // a lookup the provider refused, or an unprovable match, is 502.
                    match cause {
                        UnknownCause::Deadline(_) => StatusCode::GATEWAY_TIMEOUT,
                        UnknownCause::ListFailed(err) if err.kind == ErrorKind::Timeout => {
                            StatusCode::GATEWAY_TIMEOUT
                        }
                        _ => StatusCode::BAD_GATEWAY,
                    },
                    "server_error",
                    "outcome_unknown",
                    format!(
                        "outcome unknown on the {path_taken} path after {attempts} attempt(s): the file may have been stored; {cause}"
                    ),
                )
            },
            UploadError::Cancelled { .. } => Self {
                retry_after: Some(BUSY_RETRY_AFTER),
                ..Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "server_error",
                    "cancelled",
                    "the upload was cancelled (the gateway is shutting down)",
                )
            },
            other => {
                // Spool-side faults (missing, unreadable, changed): the gateway's own; the message
                // would name the spool path, which the client has no use for.
                tracing::error!(error = %other, "upload failed on the gateway's side");
                Self::internal(format!(
                    "the gateway could not upload its spooled copy ({})",
                    other.outcome()
                ))
            }
        }
    }

    /// Scrub `secret` out of the message (defence in depth: provider errors are scrubbed already).
    pub fn redact(mut self, secret: &str) -> Self {
        if !secret.is_empty() && self.message.contains(secret) {
            self.message = self.message.replace(secret, "[redacted]");
        }
        self
    }

    /// The HTTP answer.
    pub fn into_response(self) -> Response<Full<Bytes>> {
        let body = serde_json::json!({
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.code,
            }
        });
        let mut response = super::response::json_response(self.status, &body);
        if let Some(after) = self.retry_after {
            let seconds = after.as_secs_f64().ceil().max(1.0) as u64;
            if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
                response
                    .headers_mut()
                    .insert(http::header::RETRY_AFTER, value);
            }
        }
        if self.outcome_unknown {
            response
                .headers_mut()
                .insert("x-upramp-outcome", HeaderValue::from_static("unknown"));
        }
        response
    }
}

fn truncate(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((index, _)) => &text[..index],
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use upramp_providers::ProviderKind;

    fn provider_error(kind: ErrorKind, retry_after: Option<Duration>) -> ProviderError {
        ProviderError {
            retry_after,
            ..ProviderError::without_response(ProviderKind::Glm, kind, "boom".to_owned())
        }
    }

    #[test]
    fn provider_errors_map_to_the_documented_statuses() {
        let cases = [
            (ErrorKind::InvalidRequest, 400),
            (ErrorKind::TooLarge, 413),
            (ErrorKind::NotFound, 404),
            (ErrorKind::RateLimited, 429),
            (ErrorKind::QuotaExhausted, 429),
            (ErrorKind::Timeout, 504),
            (ErrorKind::Authentication, 502),
            (ErrorKind::Server, 502),
            (ErrorKind::Transport, 502),
            (ErrorKind::MalformedResponse, 502),
        ];
        for (kind, status) in cases {
            let answer = ApiError::from_provider(&provider_error(kind, None));
            assert_eq!(answer.status.as_u16(), status, "{kind:?}");
            assert_eq!(answer.retry_after.is_some(), status == 429, "{kind:?}");
        }
        let limited = ApiError::from_provider(&provider_error(
            ErrorKind::RateLimited,
            Some(Duration::from_millis(2_500)),
        ));
        let response = limited.into_response();
        assert_eq!(response.headers()[http::header::RETRY_AFTER], "3");
    }

    #[test]
    fn an_upload_timeout_is_504_and_unknown_outcomes_are_flagged() {
        let timeout = UploadError::Timeout {
            path: "/spool/x".into(),
            kind: upramp_uploader::TimeoutKind::Stall,
            after: Duration::from_secs(30),
            path_taken: upramp_telemetry::UploadPath::Async,
            attempts: 1,
            fallback_reason: None,
        };
        let answer = ApiError::from_upload(&timeout);
        assert_eq!(answer.status, StatusCode::GATEWAY_TIMEOUT);
        assert!(!answer.message.contains("/spool/x"));
        let unknown = UploadError::OutcomeUnknown {
            path: "/spool/x".into(),
            path_taken: upramp_telemetry::UploadPath::Async,
            attempts: 1,
            cause: upramp_uploader::UnknownCause::ListFailed(provider_error(
                ErrorKind::Transport,
                None,
            )),
        };
        let response = ApiError::from_upload(&unknown).into_response();
        assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
        assert_eq!(response.headers()["x-upramp-outcome"], "unknown");
        for cause in [
            upramp_uploader::UnknownCause::Deadline(Duration::from_secs(4)),
            upramp_uploader::UnknownCause::ListFailed(provider_error(ErrorKind::Timeout, None)),
        ] {
            let out_of_time = UploadError::OutcomeUnknown {
                path: "/spool/x".into(),
                path_taken: upramp_telemetry::UploadPath::Sync,
                attempts: 1,
                cause,
            };
            let response = ApiError::from_upload(&out_of_time).into_response();
            assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
            assert_eq!(response.headers()["x-upramp-outcome"], "unknown");
        }
        let gave_up = ApiError::upload_deadline(Duration::from_secs(2)).into_response();
        assert_eq!(gave_up.status(), StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(gave_up.headers()["x-upramp-outcome"], "unknown");
    }

    #[test]
    fn redaction_scrubs_the_secret() {
        let answer = ApiError::internal("key sk-abc leaked").redact("sk-abc");
        assert_eq!(answer.message, "key [redacted] leaked");
    }
}
