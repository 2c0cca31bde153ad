//! Cross-crate end-to-end tests of upramp. The library is empty on purpose: the tests live in
//! `tests/*.rs`, each driving several crates together through real stand-ins over loopback (the file
//! matrix: every file kind and size through every path of every provider). The validation engine behind
//! `cargo xtask validate` is `upramp-validate` (`crates/validate`).
