//! Integration tests live under `api/` and `e2e.rs`.
