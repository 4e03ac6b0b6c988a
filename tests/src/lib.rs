//! Shared helpers for Weir's cross-crate integration tests (see the files in `tests/tests/`).
