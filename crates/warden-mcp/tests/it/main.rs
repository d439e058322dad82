//! Integration tests of `Upstream` against real MCP servers nobody here wrote: the reference
//! `@modelcontextprotocol/server-everything`, over stdio and over Streamable HTTP (installed by
//! `scripts/test.sh`), plus a small recording HTTP server for what the real one cannot show (which
//! headers arrive, pagination, a 404 for an expired session).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    unreachable_pub,
    reason = "tests"
)]

mod support;

mod errors;
mod http;
mod scripted;
mod stdio;
