//! Warden's domain vocabulary, shared by every other crate.
//!
//! This crate owns the things whose meaning must be identical everywhere Warden runs: validated names,
//! SPIFFE-form agent ids, the registry records (teams, agents, MCP servers, scopes, grants, access
//! tokens), the roles of people and the rules of who may change what, and how Claude Code's hook
//! payloads map onto them (`claude_code`).
//!
//! **Architecture Invariant:** no IO and no async here. Storage, HTTP and crypto live in other crates;
//! this one can be used from all of them without pulling anything heavy in.

mod access;
pub mod claude_code;
pub mod golden_path;
mod ids;
mod model;
mod names;
mod pattern;

pub use access::{AccessDenied, Operation, Person, Role};
pub use ids::{AgentId, AgentIdError};
pub use model::{
    AccessTokenInfo, Agent, AgentStatus, Grant, McpServer, Origin, Scope, Team, Transport, TransportError,
};
pub use names::{Name, NameError};
pub use pattern::{ToolPattern, ToolPatternError};
