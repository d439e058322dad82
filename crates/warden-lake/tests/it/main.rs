//! The lake's integration tests, one binary: the public API end to end (`lake`), `kill -9` during
//! ingest (`crash`), tampering named by `verify` (`tamper`) and evidence packs (`pack`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests: failing loudly is the point"
)]

mod crash;
mod lake;
mod pack;
mod support;
mod tamper;
