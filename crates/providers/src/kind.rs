//! Provider identities, regions and the upload path a request belongs to.

use std::fmt;
use std::str::FromStr;

use crate::config_error::ConfigError;

/// Which provider's file API a client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProviderKind {
    /// Moonshot's Kimi (`/v1/files`).
    Kimi,
    /// Zhipu's GLM (`/api/paas/v4/files`).
    Glm,
    /// Any OpenAI-compatible file API (base URL and purposes configured by the caller).
    OpenAi,
}

impl ProviderKind {
    /// Every kind, in a stable order.
    pub const ALL: [ProviderKind; 3] =
        [ProviderKind::Kimi, ProviderKind::Glm, ProviderKind::OpenAi];

    /// The stable lower-case name (`kimi`, `glm`, `openai`), used as a metrics label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Kimi => "kimi",
            ProviderKind::Glm => "glm",
            ProviderKind::OpenAi => "openai",
        }
    }

    /// The environment variable the provider's own tooling conventionally reads the key from.
    pub fn default_key_env(self) -> &'static str {
        match self {
            ProviderKind::Kimi => "MOONSHOT_API_KEY",
            ProviderKind::Glm => "ZHIPUAI_API_KEY",
            ProviderKind::OpenAi => "OPENAI_API_KEY",
        }
    }
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ProviderKind {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "kimi" | "moonshot" => Ok(ProviderKind::Kimi),
            "glm" | "zhipu" | "zhipuai" | "bigmodel" => Ok(ProviderKind::Glm),
            "openai" | "openai-compatible" => Ok(ProviderKind::OpenAi),
            _ => Err(ConfigError::UnknownProvider(s.to_owned())),
        }
    }
}

/// The regional deployment of a provider. Keys are not interchangeable between regions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Region {
    /// The international deployment (`api.moonshot.ai`, `api.z.ai`).
    International,
    /// The mainland China deployment (`api.moonshot.cn`, `open.bigmodel.cn`).
    China,
}

impl Region {
    /// The documented base URL of `kind` in this region; `None` for [`ProviderKind::OpenAi`],
    /// which has no fixed deployment.
    pub fn base_url(self, kind: ProviderKind) -> Option<&'static str> {
        match (kind, self) {
            (ProviderKind::Kimi, Region::International) => Some("https://api.moonshot.ai/v1"),
            (ProviderKind::Kimi, Region::China) => Some("https://api.moonshot.cn/v1"),
            (ProviderKind::Glm, Region::International) => Some("https://api.z.ai/api/paas/v4"),
            (ProviderKind::Glm, Region::China) => Some("https://open.bigmodel.cn/api/paas/v4"),
            (ProviderKind::OpenAi, _) => None,
        }
    }
}

impl FromStr for Region {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "international" | "intl" | "global" => Ok(Region::International),
            "china" | "cn" => Ok(Region::China),
            _ => Err(ConfigError::UnknownRegion(s.to_owned())),
        }
    }
}

/// Which transport sends a request: the async client (the streaming path) or the blocking one (the
/// legacy path, and every fallback leg). Each names itself in the `User-Agent` as the path operators
/// know it (`async` or `sync`), so the paths can be told apart in the provider's (or a stand-in's)
/// logs and fault rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// [`crate::ProviderClient`]: `reqwest` on tokio, bodies streamed.
    Async,
    /// [`crate::BlockingProviderClient`]: `ureq` on the calling thread, bodies buffered.
    Blocking,
}

impl Transport {
    /// The path tag: `async` or `sync`.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Async => "async",
            Transport::Blocking => "sync",
        }
    }

    /// The `User-Agent` value for requests it sends: `upramp/<version> (<async|sync>)`.
    pub fn user_agent(self) -> String {
        format!("upramp/{} ({})", env!("CARGO_PKG_VERSION"), self.as_str())
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
