//! How to reach one provider: its dialect, base URL, key, limits and timeouts.

use std::time::Duration;

use crate::error::ConfigError;
use crate::key::ApiKey;
use crate::kind::{ProviderKind, Region};
use crate::limits::{Limits, PurposeLimit, OPENAI_DEFAULT_MAX_BYTES};

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
    pub(crate) fn validate(&self) -> Result<(String, String), ConfigError> {
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
