//! Configuration mistakes, found before any request is sent. A leaf module: the types that parse
//! configuration (provider kinds, keys, boundaries) and the errors of requests both name it.

/// A bad client configuration: names the input and its value (never a key's value).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The environment variable that should hold the key is not set.
    #[error("environment variable {var} is not set (it should hold the API key)")]
    MissingKey {
        /// The variable's name.
        var: String,
    },
    /// The environment variable that should hold the key is empty.
    #[error("environment variable {var} is empty (it should hold the API key)")]
    EmptyKey {
        /// The variable's name.
        var: String,
    },
    /// The environment variable that should hold the key is not valid Unicode.
    #[error("environment variable {var} is not valid Unicode")]
    NonUnicodeKey {
        /// The variable's name.
        var: String,
    },
    /// The key holds characters not allowed in an HTTP header (its value is deliberately not shown).
    #[error("API key contains characters not allowed in an HTTP header")]
    InvalidKey,
    /// A provider name that is not `kimi`, `glm` or `openai`.
    #[error("unknown provider {0:?} (expected kimi, glm or openai)")]
    UnknownProvider(String),
    /// A region name that is not `international` or `china`.
    #[error("unknown region {0:?} (expected international or china)")]
    UnknownRegion(String),
    /// A base URL that does not parse or is not http(s).
    #[error("invalid base URL {url:?}: {reason}")]
    InvalidBaseUrl {
        /// The URL as given.
        url: String,
        /// Why it was refused.
        reason: String,
    },
    /// A purpose name that cannot be sent (empty or with control characters).
    #[error("invalid purpose {0:?}: must be non-empty printable ASCII without spaces")]
    InvalidPurpose(String),
    /// The multipart boundary is not 1-70 RFC 2046 boundary characters.
    #[error(
        "invalid multipart boundary {0:?}: must be 1-70 characters of [A-Za-z0-9'()+_,-./:=?]"
    )]
    InvalidBoundary(String),
    /// The HTTP client could not be built.
    #[error("cannot build HTTP client: {0}")]
    HttpClient(String),
}
