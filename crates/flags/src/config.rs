//! Config sources and their precedence: defaults < TOML file < environment < code overrides.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::percent::{percent_from_f64, percent_from_i64};
use crate::{FlagConfig, Percent, Strategy};

/// Environment variable the CLI reads for the default flags file path.
pub const FLAGS_FILE_ENV: &str = "UPRAMP_FLAGS_FILE";

/// Suffix of the variable for `enabled` (after the prefix and `_`).
pub const ENV_ENABLED: &str = "ENABLED";
/// Suffix of the variable for `rollout`.
pub const ENV_ROLLOUT: &str = "ROLLOUT";
/// Suffix of the variable for `fallback`.
pub const ENV_FALLBACK: &str = "FALLBACK";
/// Suffix of the variable for `max_retries`.
pub const ENV_MAX_RETRIES: &str = "MAX_RETRIES";
/// Suffix of the variable for `timeout` (whole seconds).
pub const ENV_TIMEOUT_SECS: &str = "TIMEOUT_SECS";

/// The keys a flag's TOML table may hold.
pub const FILE_KEYS: [&str; 7] = [
    "enabled",
    "rollout",
    "fallback",
    "salt",
    "max_retries",
    "timeout_secs",
    "strategy",
];

/// A configuration problem; `Display` is one line naming the variable (or file and key) and the value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// An environment variable holds a value that does not parse.
    #[error("invalid value {value:?} in environment variable {var}: {problem}")]
    Env {
        /// The variable's name.
        var: String,
        /// Its value.
        value: String,
        /// What is wrong with it.
        problem: String,
    },
    /// An environment variable is not valid Unicode.
    #[error("environment variable {var} is not valid UTF-8: {value:?}")]
    EnvNotUnicode {
        /// The variable's name.
        var: String,
        /// Its value, lossily decoded.
        value: String,
    },
    /// A key of the flags file holds a value of the wrong type or range.
    #[error("invalid value {value} for key {key} in flags file {path}: {problem}", path = .path.display())]
    FileValue {
        /// The file.
        path: PathBuf,
        /// The dotted key, e.g. `async_upload.rollout`.
        key: String,
        /// The value as TOML.
        value: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The flags file has a key this crate does not know.
    #[error("unknown key {key} in flags file {path} (expected one of: {expected})", path = .path.display(), expected = FILE_KEYS.join(", "))]
    UnknownKey {
        /// The file.
        path: PathBuf,
        /// The dotted key.
        key: String,
    },
    /// The flags file is not valid TOML.
    #[error("flags file {path} is not valid TOML: {message}", path = .path.display())]
    FileSyntax {
        /// The file.
        path: PathBuf,
        /// The parser's message, on one line.
        message: String,
    },
    /// The flags file cannot be read.
    #[error("cannot read flags file {path}: {source}", path = .path.display())]
    FileRead {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The flags file exists but does not configure the flag: no `[flag]` table (an empty file, another
    /// flag's file, or a misspelled table name). Refused rather than read as the defaults, which would
    /// silently disable the flag.
    #[error("flags file {path} has no [{flag}] table{hint}", path = .path.display(), hint = match .suggestion {
        Some(near) => format!(" (did you mean [{near}]?)"),
        None => String::new(),
    })]
    MissingFlag {
        /// The file.
        path: PathBuf,
        /// The flag's name.
        flag: String,
        /// A table name in the file close to the flag's, if any.
        suggestion: Option<String>,
    },
    /// The flags file cannot be written.
    #[error("cannot write flags file {path}: {source}", path = .path.display())]
    FileWrite {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The flags file cannot be watched for changes.
    #[error("cannot watch flags file {path}: {message}", path = .path.display())]
    Watch {
        /// The file.
        path: PathBuf,
        /// The watcher's message.
        message: String,
    },
    /// A reload or watch was asked of a store that has no file source.
    #[error("flag {flag} has no flags file to reload or watch")]
    NoFile {
        /// The flag's name.
        flag: String,
    },
}

/// Where a field's effective value came from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Origin {
    /// The built-in default.
    Default,
    /// The TOML file at this path.
    File(PathBuf),
    /// This environment variable.
    Env(String),
    /// Set in code (an override, `FlagStore::set_rollout`, a CLI option).
    Override,
}

impl Origin {
    /// `"default"`, `"file"`, `"env"` or `"override"`.
    pub const fn kind(&self) -> &'static str {
        match self {
            Origin::Default => "default",
            Origin::File(_) => "file",
            Origin::Env(_) => "env",
            Origin::Override => "override",
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default | Origin::Override => f.write_str(self.kind()),
            Origin::File(path) => write!(f, "file {}", path.display()),
            Origin::Env(var) => write!(f, "env {var}"),
        }
    }
}

/// The origin of every field of a [`FlagConfig`] (the name is given, not configured).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldOrigins {
    /// Origin of `enabled`.
    pub enabled: Origin,
    /// Origin of `rollout`.
    pub rollout: Origin,
    /// Origin of `fallback`.
    pub fallback: Origin,
    /// Origin of `salt`.
    pub salt: Origin,
    /// Origin of `max_retries`.
    pub max_retries: Origin,
    /// Origin of `timeout`.
    pub timeout: Origin,
    /// Origin of `strategy`.
    pub strategy: Origin,
}

impl Default for FieldOrigins {
    fn default() -> Self {
        Self {
            enabled: Origin::Default,
            rollout: Origin::Default,
            fallback: Origin::Default,
            salt: Origin::Default,
            max_retries: Origin::Default,
            timeout: Origin::Default,
            strategy: Origin::Default,
        }
    }
}

/// A resolved flag: the effective config and where each field came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedFlag {
    /// The effective configuration.
    pub config: FlagConfig,
    /// Where each field came from.
    pub origins: FieldOrigins,
}

/// Values set in code; each `Some` wins over every other source.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    /// Override for `enabled`.
    pub enabled: Option<bool>,
    /// Override for `rollout`.
    pub rollout: Option<Percent>,
    /// Override for `fallback`.
    pub fallback: Option<bool>,
    /// Override for `salt`.
    pub salt: Option<String>,
    /// Override for `max_retries`.
    pub max_retries: Option<u32>,
    /// Override for `timeout`.
    pub timeout: Option<Duration>,
    /// Override for `strategy`.
    pub strategy: Option<Strategy>,
}

type LookupFn = dyn Fn(&str) -> Option<OsString> + Send + Sync;

/// Where environment variables are read from: the process, or a map/closure injected by tests.
#[derive(Clone)]
pub struct EnvSource(Arc<LookupFn>);

impl EnvSource {
    /// The process environment.
    pub fn process() -> Self {
        Self(Arc::new(|name: &str| std::env::var_os(name)))
    }

    /// No variables at all.
    pub fn empty() -> Self {
        Self(Arc::new(|_| None))
    }

    /// A fixed set of variables.
    pub fn from_map<K: Into<String>, V: Into<String>>(
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        let vars: HashMap<String, OsString> = vars
            .into_iter()
            .map(|(k, v)| (k.into(), OsString::from(v.into())))
            .collect();
        Self(Arc::new(move |name| vars.get(name).cloned()))
    }

    /// Any lookup function.
    pub fn from_fn(lookup: impl Fn(&str) -> Option<OsString> + Send + Sync + 'static) -> Self {
        Self(Arc::new(lookup))
    }

    /// The value of `name`, `Ok(None)` when unset, an error when it is not valid UTF-8.
    pub fn get(&self, name: &str) -> Result<Option<String>, ConfigError> {
        match (self.0)(name) {
            None => Ok(None),
            Some(value) => {
                value
                    .into_string()
                    .map(Some)
                    .map_err(|raw| ConfigError::EnvNotUnicode {
                        var: name.to_owned(),
                        value: raw.to_string_lossy().into_owned(),
                    })
            }
        }
    }
}

impl fmt::Debug for EnvSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EnvSource(..)")
    }
}

/// Everything needed to resolve one flag: its name, env prefix, optional file, and code overrides.
///
/// ```
/// use upramp_flags::{EnvSource, FlagSources, Origin};
///
/// let env = EnvSource::from_map([("ASYNC_UPLOAD_ROLLOUT", "12.5%")]);
/// let resolved = FlagSources::async_upload().resolve(&env)?;
/// assert_eq!(resolved.config.rollout.thousandths(), 12_500);
/// assert_eq!(resolved.origins.rollout, Origin::Env("ASYNC_UPLOAD_ROLLOUT".into()));
/// # Ok::<(), upramp_flags::ConfigError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagSources {
    /// The flag's name (its TOML table).
    pub name: String,
    /// Environment prefix: variables are `{prefix}_ENABLED` and so on.
    pub env_prefix: String,
    /// The TOML file, if any. A configured file that does not exist is an error.
    pub file: Option<PathBuf>,
    /// Values set in code.
    pub overrides: Overrides,
}

impl FlagSources {
    /// Sources for flag `name`, with the prefix `name` in upper case and no file.
    pub fn new(name: impl Into<String>) -> Self {
        let name = name.into();
        Self {
            env_prefix: default_env_prefix(&name),
            name,
            file: None,
            overrides: Overrides::default(),
        }
    }

    /// Sources for [`crate::ASYNC_UPLOAD`] (env prefix `ASYNC_UPLOAD`).
    pub fn async_upload() -> Self {
        Self::new(crate::ASYNC_UPLOAD)
    }

    /// Use this TOML file.
    pub fn with_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.file = Some(path.into());
        self
    }

    /// Use this environment prefix.
    pub fn with_env_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.env_prefix = prefix.into();
        self
    }

    /// Use these code overrides.
    pub fn with_overrides(mut self, overrides: Overrides) -> Self {
        self.overrides = overrides;
        self
    }

    /// The full name of an env variable, e.g. `env_var("ROLLOUT")` is `ASYNC_UPLOAD_ROLLOUT`.
    pub fn env_var(&self, suffix: &str) -> String {
        format!("{}_{suffix}", self.env_prefix)
    }

    /// Resolve every source in order of precedence; the first bad value is an error.
    pub fn resolve(&self, env: &EnvSource) -> Result<ResolvedFlag, ConfigError> {
        let mut resolved = ResolvedFlag {
            config: FlagConfig::new(self.name.clone()),
            origins: FieldOrigins::default(),
        };
        if let Some(path) = &self.file {
            apply_file(&mut resolved, path, &read_file(path)?)?;
        }
        self.apply_env(&mut resolved, env)?;
        self.apply_overrides(&mut resolved);
        Ok(resolved)
    }

    fn apply_env(&self, resolved: &mut ResolvedFlag, env: &EnvSource) -> Result<(), ConfigError> {
        let config = &mut resolved.config;
        let origins = &mut resolved.origins;
        if let Some((var, value)) = self.env_value(env, ENV_ENABLED, parse_bool)? {
            config.enabled = value;
            origins.enabled = Origin::Env(var);
        }
        if let Some((var, value)) = self.env_value(env, ENV_ROLLOUT, |s| {
            Percent::parse(s).map_err(|e| e.problem().to_string())
        })? {
            if let Origin::File(path) = &origins.rollout {
                // Decided: the environment wins (a per-instance pin, e.g. a canary host), but never
                // silently: this instance ignores the controller's writes to the file.
                tracing::warn!(
                    var = var.as_str(),
                    env_rollout = %value,
                    file_rollout = %config.rollout,
                    file = %path.display(),
                    "the environment overrides the flags file's rollout; this instance ignores the rollout controller"
                );
            }
            config.rollout = value;
            origins.rollout = Origin::Env(var);
        }
        if let Some((var, value)) = self.env_value(env, ENV_FALLBACK, parse_bool)? {
            config.fallback = value;
            origins.fallback = Origin::Env(var);
        }
        if let Some((var, value)) = self.env_value(env, ENV_MAX_RETRIES, parse_count)? {
            config.max_retries = value;
            origins.max_retries = Origin::Env(var);
        }
        if let Some((var, value)) = self.env_value(env, ENV_TIMEOUT_SECS, parse_timeout_secs)? {
            config.timeout = value;
            origins.timeout = Origin::Env(var);
        }
        Ok(())
    }

    fn env_value<T>(
        &self,
        env: &EnvSource,
        suffix: &str,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<Option<(String, T)>, ConfigError> {
        let var = self.env_var(suffix);
        let Some(raw) = env.get(&var)? else {
            return Ok(None);
        };
        match parse(&raw) {
            Ok(value) => Ok(Some((var, value))),
            Err(problem) => Err(ConfigError::Env {
                var,
                value: raw,
                problem,
            }),
        }
    }

    fn apply_overrides(&self, resolved: &mut ResolvedFlag) {
        let o = &self.overrides;
        let (config, origins) = (&mut resolved.config, &mut resolved.origins);
        if let Some(v) = o.enabled {
            config.enabled = v;
            origins.enabled = Origin::Override;
        }
        if let Some(v) = o.rollout {
            config.rollout = v;
            origins.rollout = Origin::Override;
        }
        if let Some(v) = o.fallback {
            config.fallback = v;
            origins.fallback = Origin::Override;
        }
        if let Some(v) = &o.salt {
            config.salt.clone_from(v);
            origins.salt = Origin::Override;
        }
        if let Some(v) = o.max_retries {
            config.max_retries = v;
            origins.max_retries = Origin::Override;
        }
        if let Some(v) = o.timeout {
            config.timeout = v;
            origins.timeout = Origin::Override;
        }
        if let Some(v) = o.strategy {
            config.strategy = v;
            origins.strategy = Origin::Override;
        }
    }
}

/// The default env prefix of a flag: its name in upper case with non-alphanumerics as `_`.
pub fn default_env_prefix(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// Strict boolean: `true/false/1/0/yes/no/on/off` in any case, nothing else (no spaces, no empty value).
///
/// ```
/// assert_eq!(upramp_flags::parse_bool("Yes"), Ok(true));
/// assert!(upramp_flags::parse_bool("y").is_err());
/// ```
pub fn parse_bool(value: &str) -> Result<bool, String> {
    const TRUE: [&str; 4] = ["true", "1", "yes", "on"];
    const FALSE: [&str; 4] = ["false", "0", "no", "off"];
    if TRUE.iter().any(|t| t.eq_ignore_ascii_case(value)) {
        Ok(true)
    } else if FALSE.iter().any(|f| f.eq_ignore_ascii_case(value)) {
        Ok(false)
    } else if value.is_empty() {
        Err("empty value, expected true/false/1/0/yes/no/on/off".to_owned())
    } else {
        Err("expected true/false/1/0/yes/no/on/off".to_owned())
    }
}

/// A non-negative whole number of plain ASCII digits that fits a `u32`.
fn parse_count(value: &str) -> Result<u32, String> {
    if value.is_empty() {
        return Err("empty value, expected a whole number".to_owned());
    }
    if !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err("expected a whole number of plain digits".to_owned());
    }
    value
        .parse::<u32>()
        .map_err(|_| format!("too large, at most {}", u32::MAX))
}

/// A timeout in whole seconds, at least 1 (a zero timeout would fail every request).
fn parse_timeout_secs(value: &str) -> Result<Duration, String> {
    let secs = parse_count(value)?;
    timeout_from_secs(i64::from(secs))
}

fn timeout_from_secs(secs: i64) -> Result<Duration, String> {
    if secs < 1 {
        return Err("expected a whole number of seconds of at least 1".to_owned());
    }
    let secs = u32::try_from(secs).map_err(|_| format!("too large, at most {}", u32::MAX))?;
    Ok(Duration::from_secs(u64::from(secs)))
}

pub(crate) fn read_file(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::FileRead {
        path: path.to_owned(),
        source,
    })
}

pub(crate) fn parse_table(path: &Path, text: &str) -> Result<toml::Table, ConfigError> {
    text.parse::<toml::Table>()
        .map_err(|err| ConfigError::FileSyntax {
            path: path.to_owned(),
            message: one_line(&err.to_string()),
        })
}

/// The table name in `table` nearest to `flag` (at most two edits away, or differing only in case and
/// separators), for a did-you-mean hint.
pub(crate) fn suggest_flag_name(table: &toml::Table, flag: &str) -> Option<String> {
    let folded = |s: &str| s.to_ascii_lowercase().replace(['-', '_', '.'], "");
    table
        .iter()
        .filter(|(_, v)| v.is_table())
        .map(|(k, _)| {
            let distance = if folded(k) == folded(flag) {
                0
            } else {
                edit_distance(k, flag)
            };
            (distance, k)
        })
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, k)| k.clone())
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut row = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitute = prev[j] + usize::from(ca != *cb);
            row.push(substitute.min(prev[j + 1] + 1).min(row[j] + 1));
        }
        prev = row;
    }
    prev[b.len()]
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn apply_file(resolved: &mut ResolvedFlag, path: &Path, text: &str) -> Result<(), ConfigError> {
    let table = parse_table(path, text)?;
    let name = resolved.config.name.clone();
    let Some(section) = table.get(&name) else {
        return Err(ConfigError::MissingFlag {
            path: path.to_owned(),
            flag: name.clone(),
            suggestion: suggest_flag_name(&table, &name),
        });
    };
    let bad = |key: &str, value: &toml::Value, problem: &str| ConfigError::FileValue {
        path: path.to_owned(),
        key: format!("{name}.{key}"),
        value: value.to_string(),
        problem: problem.to_owned(),
    };
    let Some(section) = section.as_table() else {
        return Err(ConfigError::FileValue {
            path: path.to_owned(),
            key: name,
            value: section.to_string(),
            problem: "expected a table of flag settings".to_owned(),
        });
    };
    let origin = Origin::File(path.to_owned());
    let (config, origins) = (&mut resolved.config, &mut resolved.origins);
    for (key, value) in section {
        match key.as_str() {
            "enabled" => {
                config.enabled = value
                    .as_bool()
                    .ok_or_else(|| bad(key, value, "expected true or false"))?;
                origins.enabled = origin.clone();
            }
            "fallback" => {
                config.fallback = value
                    .as_bool()
                    .ok_or_else(|| bad(key, value, "expected true or false"))?;
                origins.fallback = origin.clone();
            }
            "rollout" => {
                let parsed = match value {
                    toml::Value::Integer(i) => percent_from_i64(*i),
                    toml::Value::Float(f) => percent_from_f64(*f),
                    toml::Value::String(s) => Percent::parse(s),
                    _ => {
                        return Err(bad(
                            key,
                            value,
                            "expected a percentage like 12.5 or \"12.5%\"",
                        ))
                    }
                };
                config.rollout = parsed.map_err(|e| bad(key, value, &e.problem().to_string()))?;
                origins.rollout = origin.clone();
            }
            "salt" => {
                let salt = value
                    .as_str()
                    .ok_or_else(|| bad(key, value, "expected a string"))?;
                if salt.is_empty() {
                    return Err(bad(key, value, "empty salt"));
                }
                config.salt = salt.to_owned();
                origins.salt = origin.clone();
            }
            "max_retries" => {
                let n = value
                    .as_integer()
                    .ok_or_else(|| bad(key, value, "expected a whole number"))?;
                config.max_retries = u32::try_from(n)
                    .map_err(|_| bad(key, value, "expected a whole number from 0 to 4294967295"))?;
                origins.max_retries = origin.clone();
            }
            "timeout_secs" => {
                let n = value
                    .as_integer()
                    .ok_or_else(|| bad(key, value, "expected a whole number of seconds"))?;
                config.timeout = timeout_from_secs(n).map_err(|p| bad(key, value, &p))?;
                origins.timeout = origin.clone();
            }
            "strategy" => {
                let s = value
                    .as_str()
                    .ok_or_else(|| bad(key, value, "expected \"siphash\" or \"unleash\""))?;
                config.strategy = s
                    .parse()
                    .map_err(|_| bad(key, value, "expected \"siphash\" or \"unleash\""))?;
                origins.strategy = origin.clone();
            }
            _ => {
                return Err(ConfigError::UnknownKey {
                    path: path.to_owned(),
                    key: format!("{name}.{key}"),
                })
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn booleans_are_strict() {
        for t in ["true", "TRUE", "True", "1", "yes", "YES", "on", "On"] {
            assert_eq!(parse_bool(t), Ok(true), "{t}");
        }
        for f in ["false", "FALSE", "0", "no", "No", "off", "OFF"] {
            assert_eq!(parse_bool(f), Ok(false), "{f}");
        }
        for bad in [
            "", " ", "y", "n", "2", "-1", "truee", " true", "enabled", "t", "f",
        ] {
            assert!(parse_bool(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn counts_are_strict() {
        assert_eq!(parse_count("0"), Ok(0));
        assert_eq!(parse_count("4294967295"), Ok(u32::MAX));
        for bad in [
            "",
            "-1",
            "+1",
            "1.0",
            "1e3",
            "0x10",
            "abc",
            "4294967296",
            " 3",
        ] {
            assert!(parse_count(bad).is_err(), "{bad:?}");
        }
        assert!(parse_timeout_secs("0").is_err());
        assert_eq!(parse_timeout_secs("5"), Ok(Duration::from_secs(5)));
    }

    #[test]
    fn default_prefix_is_the_upper_case_name() {
        assert_eq!(default_env_prefix("async_upload"), "ASYNC_UPLOAD");
        assert_eq!(default_env_prefix("new-thing.v2"), "NEW_THING_V2");
    }

    #[test]
    fn origins_display() {
        assert_eq!(Origin::Env("X".into()).to_string(), "env X");
        assert_eq!(
            Origin::File("/a/b.toml".into()).to_string(),
            "file /a/b.toml"
        );
        assert_eq!(Origin::Default.to_string(), "default");
        assert_eq!(Origin::Override.to_string(), "override");
    }
}
