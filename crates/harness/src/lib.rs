//! upramp-harness: test doubles and tools for exercising file-upload clients without a real provider.
//!
//! - [`StandIn`]: a Kimi or GLM file-API stand-in, a real HTTP/1.1 server on loopback that follows
//!   the provider contract in the repository's `docs/providers.md` (routes, bearer auth, JSON shapes,
//!   error bodies, limits), streams request bodies in bounded memory and records each stored file's
//!   size and SHA-256. The [`StandIn`] docs list the routes and the choices made where the contract
//!   is silent.
//! - [`FaultPlan`]: deterministic, seeded fault injection (server errors, rate limits with `Retry-After`,
//!   quota, auth, latency, bandwidth caps, stalls, resets, accept-then-drop, malformed JSON), changeable
//!   while running and targetable at one upload path by `User-Agent`. The spec syntax is in [`fault`].
//! - [`corpus`]: exact-size, seed-deterministic text, JSON, CSV, Markdown, Python and binary files,
//!   and [`corpus::sha256_file`], the digest a receipt is checked against.
//! - [`load`]: runs N jobs at concurrency C through a caller-supplied async function and summarises them;
//!   [`load::quantile`] is the nearest-rank percentile every upramp report uses.
//!
//! The crate depends on no other upramp crate, so any client can be tested against it.
//!
//! ```
//! use upramp_harness::{FaultPlan, Flavor, StandIn, StandInConfig};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let faults = FaultPlan::parse("503:0.2@async,latency:5ms").unwrap();
//! let stand_in = StandIn::start(StandInConfig::new(Flavor::Kimi).with_faults(faults).with_seed(7))
//!     .await
//!     .unwrap();
//! assert!(stand_in.base_url().starts_with("http://127.0.0.1:"));
//! assert!(stand_in.base_url().ends_with("/v1"));
//! assert!(stand_in.stored_files().is_empty());
//! stand_in.set_faults(FaultPlan::none());
//! stand_in.shutdown().await;
//! # });
//! ```

pub mod corpus;
mod error;
pub mod fault;
mod flavor;
pub mod load;
mod standin;

pub use error::HarnessError;
pub use fault::{FaultPlan, FaultSpecError};
pub use flavor::{Flavor, UnknownFlavor};
pub use standin::{
    StandIn, StandInConfig, StandInStats, StoredFile, DEFAULT_API_KEY, DEFAULT_CONTENT_BYTES,
    FAULTS_CONTROL_PATH,
};
