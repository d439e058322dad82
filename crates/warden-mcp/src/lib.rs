//! The MCP protocol plumbing of Warden's gateway: JSON-RPC 2.0 messages, and client connections to the
//! upstream MCP servers the gateway sits in front of.
//!
//! [`jsonrpc`] is the wire format of one message, with no IO. [`Upstream`] is a live connection to one
//! upstream server, over stdio (a supervised child process) or Streamable HTTP, behind one async API:
//! `initialize` on connect, [`Upstream::list_tools`], [`Upstream::call_tool`], pass-through
//! [`Upstream::request`], and [`Upstream::close`].
//!
//! **Architecture Invariant:** this crate knows nothing of agents, policy or audit. It carries messages
//! and reports failures precisely; deciding what may be called is the gateway's job.

#![deny(missing_docs)]

pub mod jsonrpc;
mod protocol;
mod sse;
mod upstream;

pub use protocol::{Implementation, InitializeResult, PROTOCOL_VERSION, SUPPORTED_PROTOCOL_VERSIONS, Tool};
pub use upstream::{RestartPolicy, Upstream, UpstreamConfig, UpstreamCredentials, UpstreamError, UpstreamStatus};
