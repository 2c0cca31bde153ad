//! The code `cargo xtask` shares with its bench worker example: one home for what both binaries must
//! agree on. Everything else of xtask lives in its binary (`main.rs`): thin front ends over the
//! workspace's crates.

pub mod worker;
