//! The API key type: the only place a key lives, and it never prints itself.

use std::fmt;

use http::HeaderValue;

use crate::error::ConfigError;

/// A provider API key. `Debug` and `Display` print `ApiKey(<redacted>)`; the secret is reachable
/// only through [`ApiKey::expose`], which the transports call to build the `Authorization` header.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    /// Wraps a key. Validity (characters allowed in a header) is checked when a client is built.
    pub fn new(key: impl Into<String>) -> Self {
        ApiKey(key.into())
    }

    /// Reads the key from the environment variable `var`; a missing, empty or non-Unicode value
    /// is an error naming the variable (never its value).
    pub fn from_env(var: &str) -> Result<Self, ConfigError> {
        match std::env::var(var) {
            Ok(value) if value.trim().is_empty() => Err(ConfigError::EmptyKey {
                var: var.to_owned(),
            }),
            Ok(value) => Ok(ApiKey(value.trim().to_owned())),
            Err(std::env::VarError::NotPresent) => Err(ConfigError::MissingKey {
                var: var.to_owned(),
            }),
            Err(std::env::VarError::NotUnicode(_)) => Err(ConfigError::NonUnicodeKey {
                var: var.to_owned(),
            }),
        }
    }

    /// The secret itself. Use only to build the request header.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The `Authorization: Bearer ...` header value, marked sensitive so `http` and `reqwest`
    /// keep it out of their own `Debug` output.
    pub(crate) fn bearer_header(&self) -> Result<HeaderValue, ConfigError> {
        let mut value = HeaderValue::from_str(&format!("Bearer {}", self.0))
            .map_err(|_| ConfigError::InvalidKey)?;
        value.set_sensitive(true);
        Ok(value)
    }

    /// Replaces every occurrence of the key in `text`, so server echoes cannot leak it into errors.
    pub(crate) fn scrub(&self, text: &str) -> String {
        if self.0.len() < 4 || !text.contains(self.0.as_str()) {
            return text.to_owned();
        }
        text.replace(self.0.as_str(), "<redacted>")
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_hide_the_key() {
        let key = ApiKey::new("sk-very-secret-value");
        assert_eq!(format!("{key:?}"), "ApiKey(<redacted>)");
        assert_eq!(key.to_string(), "<redacted>");
        assert_eq!(key.expose(), "sk-very-secret-value");
    }

    #[test]
    fn header_with_newline_is_rejected_without_echoing_the_key() {
        let key = ApiKey::new("sk-bad\r\nX-Injected: 1");
        let err = key
            .bearer_header()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("not allowed"), "{err}");
        assert!(!err.contains("sk-bad"), "{err}");
    }

    #[test]
    fn missing_env_var_is_named() {
        let err = ApiKey::from_env("UPRAMP_TEST_KEY_THAT_IS_NEVER_SET")
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("environment variable UPRAMP_TEST_KEY_THAT_IS_NEVER_SET is not set (it should hold the API key)")
        );
    }

    #[test]
    fn scrub_removes_echoed_key() {
        let key = ApiKey::new("sk-very-secret-value");
        assert_eq!(
            key.scrub("bad key sk-very-secret-value!"),
            "bad key <redacted>!"
        );
    }
}
