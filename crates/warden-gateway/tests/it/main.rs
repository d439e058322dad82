//! Integration tests of the gateway with real peers nobody here wrote: `server-everything` upstreams
//! over stdio and Streamable HTTP, and the official Python `mcp` SDK and `inspector-cli` as agents'
//! clients (installed by `scripts/test.sh`). The control plane is made of real Warden pieces: signed
//! tokens, the verifier with a revocation set, and the Cedar policy engine.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    unreachable_pub,
    dead_code,
    reason = "tests"
)]

mod support;

mod aggregate;
mod auth;
mod calls;
mod clients;
mod modern;
mod progress;
mod revocation;
mod upstreams;
