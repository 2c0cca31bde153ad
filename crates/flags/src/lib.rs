//! Feature flags for upramp: the flag model, strict config parsing from layered sources, deterministic
//! percentage bucketing, lock-free live snapshots and hot reload.
//!
//! # Main types
//!
//! - [`Percent`]: a rollout percentage as integer thousandths (`0..=100_000`); no float reaches a decision.
//! - [`FlagConfig`]: one flag's settings (`enabled`, `rollout`, `fallback`, `salt`, `max_retries`,
//!   `timeout`, `strategy`). The upload flag is [`ASYNC_UPLOAD`].
//! - [`bucket`] and [`evaluate`] → [`RouteDecision`] `{ route, reason, bucket }`: which path a key takes and why.
//! - [`PreparedFlag`]: a configuration with its salt hashed once, for evaluating many keys (what
//!   [`FlagStore`] holds). Its hash is a SipHash-1-3 specialised to resume after the salt; `siphasher`
//!   remains the reference ([`bucket`], [`evaluate`]), and tests check the two agree bit for bit.
//! - [`FlagSources`] resolves defaults < TOML file < environment < code [`Overrides`] into a
//!   [`ResolvedFlag`] that records the [`Origin`] of every field; the environment is read through an
//!   injectable [`EnvSource`].
//! - [`FlagStore`]: a cheap-to-clone handle with lock-free [`snapshot`](FlagStore::snapshot)s, updated by
//!   [`set_rollout`](FlagStore::set_rollout) / [`replace`](FlagStore::replace), reloaded from its file by
//!   [`reload_now`](FlagStore::reload_now) or a [`watch_file`](FlagStore::watch_file) guard. A
//!   [`FlagReader`] from [`reader`](FlagStore::reader) keeps its last snapshot for hot loops.
//! - [`write_rollout_to_file`]: persist a new percentage with an atomic replace of the file.
//! - [`unleash`]: the optional Unleash-compatible strategy (MurmurHash3), for teams keeping their cohorts.
//!
//! # Bucketing algorithm (normative)
//!
//! A key's bucket is an integer in `[0, 100000)`, one bucket per thousandth of a percent. It depends only
//! on the flag's salt and the key, so the same key always lands in the same bucket:
//!
//! 1. Build the message `salt ‖ 0xFF ‖ key`: the UTF-8 bytes of the salt, one byte `0xFF`, the UTF-8 bytes
//!    of the key. (`0xFF` never occurs in UTF-8, so different (salt, key) pairs give different messages.)
//! 2. Hash it with **SipHash-1-3** (1 compression round, 3 finalization rounds; the reference C code with
//!    `cROUNDS = 1`, `dROUNDS = 3`; Rust's `siphasher::sip::SipHasher13`) under the 16-byte key
//!    `b"upramp.flags.v1!"` (bytes `75 70 72 61 6d 70 2e 66 6c 61 67 73 2e 76 31 21`), i.e.
//!    `k0 = 0x662e706d61727075`, `k1 = 0x2131762e7367616c` (each half read little-endian). Call the
//!    64-bit result `h`.
//! 3. Map `h` to a bucket without bias (Lemire's multiply-shift with rejection): compute the 128-bit
//!    product `m = h × 100000`. If its low 64 bits are below `2^64 mod 100000 = 51616`, reject `h`;
//!    otherwise the bucket is `m >> 64`. Each bucket then receives exactly `⌊2^64 / 100000⌋` accepted
//!    hash values, so the mapping is exactly uniform.
//! 4. On rejection (probability about 2.8 × 10⁻¹⁵), rehash: `h_r` = SipHash-1-3 of the same message
//!    followed by one byte `r`, for `r = 1, 2, …, 255`, and map `h_r` as in step 3; the first accepted one
//!    wins. (If all 255 were rejected, `⌊h × 100000 / 2^64⌋` would be used; that never happens in practice.)
//!
//! A key is **in** the rollout when `bucket < rollout_thousandths` (12.5% is 12500). So 0% lets nobody
//! in, 100% lets everybody in, and raising the percentage only ever adds keys. Flags with different
//! salts get independent cohorts. These rules are pinned by a snapshot of test vectors; changing any of
//! them fails the tests.
//!
//! An evaluation ([`evaluate`]) then gives: flag disabled → `sync` ([`Reason::Disabled`]); bucket in →
//! `async` ([`Reason::InRollout`]); otherwise `sync` ([`Reason::OutOfRollout`]). It does not allocate.
//!
//! # Configuration
//!
//! The TOML file holds one table per flag; unknown keys are errors:
//!
//! ```toml
//! [async_upload]
//! enabled = true
//! rollout = 10.5      # or "10.5%"
//! fallback = true
//! salt = "async_upload"
//! max_retries = 3
//! timeout_secs = 30
//! strategy = "siphash" # or "unleash"
//! ```
//!
//! The environment overrides the file: `ASYNC_UPLOAD_ENABLED`, `ASYNC_UPLOAD_ROLLOUT`,
//! `ASYNC_UPLOAD_FALLBACK`, `ASYNC_UPLOAD_MAX_RETRIES`, `ASYNC_UPLOAD_TIMEOUT_SECS` (the prefix is the
//! flag's, see [`FlagSources::env_prefix`]). Booleans accept `true/false/1/0/yes/no/on/off` in any case;
//! percentages a number from 0 to 100 with at most three decimals and an optional `%`. Anything else,
//! including a set-but-empty variable, is a [`ConfigError`] naming the variable and the value.
//!
//! # Example
//!
//! ```
//! use upramp_flags::{EnvSource, FlagSources, FlagStore, Route, Origin, Percent, Reason};
//!
//! let env = EnvSource::from_map([("ASYNC_UPLOAD_ENABLED", "yes"), ("ASYNC_UPLOAD_ROLLOUT", "10%")]);
//! let store = FlagStore::from_sources(FlagSources::async_upload(), env)?;
//! assert_eq!(store.origins().rollout, Origin::Env("ASYNC_UPLOAD_ROLLOUT".into()));
//!
//! let decision = store.evaluate("tenant-42");
//! assert_eq!(decision.route == Route::Async, decision.bucket < 10_000);
//!
//! store.set_rollout(Percent::HUNDRED);
//! assert_eq!(store.evaluate("tenant-42").reason, Reason::InRollout);
//!
//! let bad = FlagSources::async_upload()
//!     .resolve(&EnvSource::from_map([("ASYNC_UPLOAD_ROLLOUT", "150")]))
//!     .unwrap_err();
//! assert_eq!(
//!     bad.to_string(),
//!     "invalid value \"150\" in environment variable ASYNC_UPLOAD_ROLLOUT: above 100%"
//! );
//! # Ok::<(), upramp_flags::ConfigError>(())
//! ```

mod bucket;
mod config;
mod flag;
mod percent;
mod persist;
mod sip13;
mod store;
pub mod unleash;

pub use bucket::{
    bucket, evaluate, PreparedFlag, Reason, Route, RouteDecision, BUCKETS, SEPARATOR, SIPHASH_KEY,
};
pub use config::{
    default_env_prefix, parse_bool, ConfigError, EnvSource, FieldOrigins, FlagSources, Origin,
    Overrides, ResolvedFlag, ENV_ENABLED, ENV_FALLBACK, ENV_MAX_RETRIES, ENV_ROLLOUT,
    ENV_TIMEOUT_SECS, FILE_KEYS, FLAGS_FILE_ENV,
};
pub use flag::{FlagConfig, Strategy, StrategyError, ASYNC_UPLOAD};
pub use percent::{Percent, PercentError, PercentProblem};
pub use persist::{
    remove_stale_temp_files, replace_file_atomically, write_rollout_to_file, ReplaceError,
    ReplaceStep, FLAGS_TEMP_PREFIX, TEMP_SUFFIX,
};
pub use store::{FlagReader, FlagStore, WatchGuard, WATCH_DEBOUNCE};
