//! The flag model: [`FlagConfig`] and its bucketing [`Strategy`].

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::Percent;

/// Name of the flag that routes uploads between the async and the sync path.
pub const ASYNC_UPLOAD: &str = "async_upload";

/// How keys are mapped to buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Strategy {
    /// upramp's own bucketing: SipHash-1-3 into `[0, 100000)`, see [`crate::bucket`].
    #[default]
    SipHash,
    /// Unleash's gradual/flexible rollout: MurmurHash3 of `"{salt}:{key}"`, see [`crate::unleash`].
    /// The flag's salt plays the role of Unleash's `groupId`, so a team migrating keeps its cohorts.
    Unleash,
}

impl Strategy {
    /// The name used in config files and output: `siphash` or `unleash`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Strategy::SipHash => "siphash",
            Strategy::Unleash => "unleash",
        }
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A [`Strategy`] name that is neither `siphash` nor `unleash`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid strategy {0:?}: expected siphash or unleash")]
pub struct StrategyError(pub String);

impl FromStr for Strategy {
    type Err = StrategyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "siphash" => Ok(Strategy::SipHash),
            "unleash" => Ok(Strategy::Unleash),
            other => Err(StrategyError(other.to_owned())),
        }
    }
}

/// One flag's effective configuration: an immutable value, swapped whole by [`crate::FlagStore`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagConfig {
    /// The flag's name, e.g. [`ASYNC_UPLOAD`]; also its table name in the TOML file.
    pub name: String,
    /// Master switch: when false every key takes the sync path.
    pub enabled: bool,
    /// Share of keys on the async path.
    pub rollout: Percent,
    /// Whether a failed async attempt may be re-sent on the sync path.
    pub fallback: bool,
    /// Hashed with each key; flags with different salts get independent cohorts.
    pub salt: String,
    /// Retries per upload attempt path.
    pub max_retries: u32,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Bucketing strategy.
    pub strategy: Strategy,
}

impl FlagConfig {
    /// Default for `enabled`.
    pub const DEFAULT_ENABLED: bool = false;
    /// Default for `fallback`.
    pub const DEFAULT_FALLBACK: bool = true;
    /// Default for `max_retries`.
    pub const DEFAULT_MAX_RETRIES: u32 = 3;
    /// Default for `timeout`.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

    /// A flag with the defaults: disabled, 0%, fallback on, salt = name, 3 retries, 30 s timeout,
    /// SipHash bucketing.
    pub fn new(name: impl Into<String>) -> Self {
        let name = name.into();
        Self {
            salt: name.clone(),
            name,
            enabled: Self::DEFAULT_ENABLED,
            rollout: Percent::ZERO,
            fallback: Self::DEFAULT_FALLBACK,
            max_retries: Self::DEFAULT_MAX_RETRIES,
            timeout: Self::DEFAULT_TIMEOUT,
            strategy: Strategy::SipHash,
        }
    }
}
