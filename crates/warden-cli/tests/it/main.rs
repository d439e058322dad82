//! End-to-end tests: each starts the real `warden` binary on a free loopback port with its own data
//! directory and talks to it over HTTP and through the CLI, as users and scripts do.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::type_complexity,
    unreachable_pub,
    reason = "tests"
)]

mod support;

mod audit;
mod audit_integrity;
mod bad_input;
mod claude;
mod conformance;
mod credentials;
mod gateway;
mod hook;
mod init;
mod lifecycle;
mod otlp;
mod permissions;
mod policy;
mod registry;
mod standalone;
