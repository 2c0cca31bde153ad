//! The rollout validation engine behind `cargo xtask validate`: the five-stage rollout and the fault
//! scenarios, run through real stand-ins, uploaders and the production controller on a simulated clock.
//! Cross-crate end-to-end tests live in the workspace's `tests/` package.
//!
//! - [`engine`]: [`engine::run`] drives the five-stage rollout and the fault scenarios through real
//!   stand-ins, uploaders and the production controller on a simulated clock, and returns a
//!   [`report::Report`]; [`artifacts`] writes its files.
//! - [`checks`]: the validation's checks, pure functions over recorded observations ([`observe`]).
//! - [`stats`]: binomial tolerance; Wilson intervals and quantiles from their owning crates.
//! - [`report`]: the report model (`report.json`), `report.md` and the summary table.
//! - [`table`]: aligned plain-text columns, for the summary table and the benchmark table.
//! - [`timeline`]: the `timeline.svg` writer.
//!
//! ```
//! use upramp_validate::checks;
//! use upramp_validate::observe::{Provider, RequestRecord, RequestResult, UploadPath};
//!
//! let record = RequestRecord {
//!     provider: Provider::Kimi,
//!     routing_key: "tenant-1".into(),
//!     decided_async: false,
//!     source_sha256: "ab".repeat(32),
//!     source_bytes: 4,
//!     result: RequestResult::Error { message: "503".into() },
//! };
//! // A recorded error is accounted for, so nothing is lost, but 0% means nobody goes async.
//! assert!(checks::no_lost_requests(&[record.clone()], &[]).passed);
//! assert!(checks::async_share(0, &[record]).passed);
//! ```

pub mod artifacts;
pub mod checks;
pub mod engine;
pub mod observe;
pub mod report;
pub mod stats;
pub mod table;
pub mod timeline;
