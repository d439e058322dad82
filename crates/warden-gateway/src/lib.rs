//! Warden's MCP gateway, the data plane: agents connect to it with MCP Streamable HTTP; it
//! authenticates each agent, shows it only the tools it may use, decides every call, records durable
//! audit events, and forwards allowed calls to the upstream MCP servers with the gateway's own
//! credentials.
//!
//! [`Gateway::router`] serves `/mcp/<server>` (one upstream, original tool names), `/mcp` (every
//! upstream the agent may use, tools named `<server>__<tool>`) and the RFC 9728 protected resource
//! metadata. Where decisions come from is behind [`ControlPlane`] (the server's own state in
//! process, a pulled snapshot standalone); where events go is behind [`AuditSink`].
//!
//! `tools/list` shows a tool when calling it with empty arguments is allowed, or is denied only by
//! guardrails (which may depend on the real arguments); see [`is_listed`]. Every `tools/call` is
//! decided on its real arguments.
//!
//! **Architecture Invariants:** a call is forwarded only after its decision event is durable; the
//! agent's token never reaches an upstream; no lock is held across an upstream await, so a slow or
//! dead upstream never blocks other agents; nothing here panics on what a client or upstream sends.
//!
//! Scope of the protocol: the handshake era (2025-11-25, 2025-06-18, 2025-03-26) with sessions, and
//! the 2026-07-28 revision (`server/discover`, no sessions, per-request envelope and headers) when a
//! request's `MCP-Protocol-Version` asks for it. Plain JSON responses, except that a `tools/call`
//! asking for progress is answered, once the upstream reports progress, with an SSE stream relaying
//! its progress notifications (module `progress`); no GET stream (GET is 405), no server-to-client
//! requests (sampling, elicitation). Tools only: `resources/list`, `resources/templates/list` and
//! `prompts/list` answer empty lists; every other method the gateway does not serve gets `-32601`.

mod audit;
mod config;
mod control;
mod gateway;
mod http;
mod modern;
mod progress;
pub mod remote;
mod session;
mod upstreams;

pub use audit::{AuditSink, CallStatus, CloseReason, GatewayEvent, RecordFuture, Verdict};
pub use config::GatewayConfig;
pub use control::{AgentIdentity, AuthError, ControlPlane, UpstreamSpec, is_listed};
pub use gateway::{Gateway, SUPPORTED_PROTOCOL_VERSIONS, TOOL_SEPARATOR};
pub use modern::MODERN_PROTOCOL_VERSIONS;
pub use remote::{narrow_to_token, upstream_credentials};
