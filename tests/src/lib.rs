//! Cross-crate end-to-end tests for upramp live in `tests/`.
