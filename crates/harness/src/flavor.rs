//! Which provider a stand-in imitates.

use std::fmt;
use std::str::FromStr;

/// The provider contract a stand-in speaks (see the repository's `docs/providers.md`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Flavor {
    /// Kimi (Moonshot): routes under `/v1`, errors `{"error":{"type","message"}}`.
    Kimi,
    /// GLM (Zhipu): routes under `/api/paas/v4`, errors `{"error":{"code","message"}}`.
    Glm,
}

impl Flavor {
    /// `kimi` or `glm`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Kimi => "kimi",
            Self::Glm => "glm",
        }
    }

    /// The path prefix of the provider's API, which a base URL ends with.
    pub fn base_path(self) -> &'static str {
        match self {
            Self::Kimi => "/v1",
            Self::Glm => "/api/paas/v4",
        }
    }
}

impl fmt::Display for Flavor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A provider name that is neither `kimi` nor `glm`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown provider {0:?} for a stand-in (expected kimi or glm)")]
pub struct UnknownFlavor(pub String);

impl FromStr for Flavor {
    type Err = UnknownFlavor;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name.trim().to_ascii_lowercase().as_str() {
            "kimi" => Ok(Self::Kimi),
            "glm" => Ok(Self::Glm),
            _ => Err(UnknownFlavor(name.to_owned())),
        }
    }
}
