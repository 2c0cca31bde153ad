//! Integration tests of the uploader against the harness stand-ins over loopback, in one binary
//! (one link instead of five).

#![allow(clippy::unwrap_used, clippy::large_futures)]

mod adoption;
mod common;
mod deadline;
mod faults;
mod inputs;
mod memory;
mod paths;
mod proxy;
mod queue;
