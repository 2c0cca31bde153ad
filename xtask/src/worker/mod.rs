//! What the bench orchestrator (`cargo xtask bench`) shares with its release-built worker
//! (`examples/bench_worker.rs`): the line protocol the worker prints and the orchestrator reads, and
//! the no-work receiver's body parsing.

pub mod proto;
pub mod receiver;
