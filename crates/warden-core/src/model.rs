//! The registry's records as every part of Warden sees them, and as the API serialises them.
//!
//! Times are RFC 3339 strings in UTC, produced by the store. Secrets never appear in these records:
//! agent client secrets and access tokens exist only as hashes in the store, and an MCP server's
//! upstream credentials are held server-side and reported only as `has_credentials`.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::access::Role;
use crate::ids::AgentId;
use crate::names::Name;
use crate::pattern::ToolPattern;

/// A product team; it owns agents and has team-admins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Team {
    /// The team's name.
    pub name: Name,
    /// When the team was created.
    pub created_at: String,
}

/// Whether an agent may act.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AgentStatus {
    /// Tokens are issued and accepted.
    Active,
    /// Temporarily stopped, with every descendant; `resume` undoes it.
    Suspended,
    /// Permanently stopped, with every descendant.
    Revoked,
}

impl AgentStatus {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            AgentStatus::Active => "active",
            AgentStatus::Suspended => "suspended",
            AgentStatus::Revoked => "revoked",
        }
    }

    /// Parses the wire spelling.
    pub fn parse(value: &str) -> Option<AgentStatus> {
        match value {
            "active" => Some(AgentStatus::Active),
            "suspended" => Some(AgentStatus::Suspended),
            "revoked" => Some(AgentStatus::Revoked),
            _ => None,
        }
    }
}

impl fmt::Display for AgentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How an agent came to exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Origin {
    /// Made by `warden init`.
    GoldenPath,
    /// Registered by hand (`warden agent register`).
    Manual,
    /// Created by delegation from a parent agent.
    Delegated,
}

impl Origin {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::GoldenPath => "golden-path",
            Origin::Manual => "manual",
            Origin::Delegated => "delegated",
        }
    }

    /// Parses the wire spelling.
    pub fn parse(value: &str) -> Option<Origin> {
        match value {
            "golden-path" => Some(Origin::GoldenPath),
            "manual" => Some(Origin::Manual),
            "delegated" => Some(Origin::Delegated),
            _ => None,
        }
    }
}

/// One AI agent with its own identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Agent {
    /// SPIFFE-form id.
    pub id: AgentId,
    /// The owning team.
    pub team: Name,
    /// The agent's own name (last segment of its id).
    pub name: Name,
    /// The person who answers for the agent (an email, usually).
    pub owner: String,
    /// The declared purpose.
    pub purpose: String,
    /// Tags such as `customer-data` or `prod`, sorted.
    pub tags: Vec<Name>,
    /// Whether the agent may act.
    pub status: AgentStatus,
    /// How the agent came to exist.
    pub origin: Origin,
    /// The delegating agent, for a subagent.
    pub parent: Option<AgentId>,
    /// Scopes granted to the agent, sorted.
    pub scopes: Vec<Name>,
    /// When the agent was registered.
    pub created_at: String,
    /// When the agent record last changed.
    pub updated_at: String,
}

/// How the gateway reaches an MCP server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Transport {
    /// Streamable HTTP at `url`.
    Http {
        /// The server's MCP endpoint, `http://` or `https://`.
        url: String,
    },
    /// A child process speaking MCP over stdio.
    Stdio {
        /// The program to run.
        command: String,
        /// Its arguments.
        #[serde(default)]
        args: Vec<String>,
    },
}

/// Why a transport is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TransportError(String);

impl Transport {
    /// Checks the URL scheme or the command.
    pub fn validate(&self) -> Result<(), TransportError> {
        match self {
            Transport::Http { url } => {
                let rest = url
                    .strip_prefix("http://")
                    .or_else(|| url.strip_prefix("https://"))
                    .ok_or_else(|| TransportError(format!("url `{url}` must start with http:// or https://")))?;
                if rest.is_empty() || rest.starts_with('/') || url.chars().any(char::is_whitespace) {
                    return Err(TransportError(format!("url `{url}` has no host or contains spaces")));
                }
                Ok(())
            }
            Transport::Stdio { command, args } => {
                if command.trim().is_empty() {
                    return Err(TransportError("the stdio command is empty".to_owned()));
                }
                if command.contains('\0') || args.iter().any(|a| a.contains('\0')) {
                    return Err(TransportError("the stdio command contains a NUL byte".to_owned()));
                }
                Ok(())
            }
        }
    }
}

/// An upstream tool server registered with Warden.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct McpServer {
    /// The server's name; tools are addressed as `name/tool`.
    pub name: Name,
    /// How to reach it.
    pub transport: Transport,
    /// The team that owns it, if any.
    pub owner_team: Option<Name>,
    /// Whether its tools are sensitive.
    pub sensitive: bool,
    /// Whether upstream credentials are stored for it (they are never returned).
    pub has_credentials: bool,
    /// When it was registered.
    pub created_at: String,
    /// When its record last changed.
    pub updated_at: String,
}

/// A named, centrally defined bundle of tools.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Scope {
    /// The scope's name.
    pub name: Name,
    /// The tools it covers.
    pub tools: Vec<ToolPattern>,
    /// Whether it is sensitive.
    pub sensitive: bool,
    /// What it is for.
    pub description: String,
    /// When it was defined.
    pub created_at: String,
}

/// A scope given to one agent by its team.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Grant {
    /// The scope granted.
    pub scope: Name,
    /// The agent that holds it.
    pub agent: AgentId,
    /// The access token name of the person who granted it.
    pub granted_by: String,
    /// When it was granted.
    pub created_at: String,
}

/// A person's API token, without the secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AccessTokenInfo {
    /// The token's name (also the person's name in policy and audit).
    pub name: Name,
    /// What the holder may do.
    pub role: Role,
    /// The team of a team-admin.
    pub team: Option<Name>,
    /// When it was created.
    pub created_at: String,
    /// When it was revoked, if it was.
    pub revoked_at: Option<String>,
}
