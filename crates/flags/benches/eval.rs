//! Flag evaluation bench.
#![allow(missing_docs)]
fn main() {}
