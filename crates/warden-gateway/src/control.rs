//! The seam between the gateway and wherever decisions come from: [`ControlPlane`], the identity of
//! an authenticated agent, and the upstream servers the gateway fronts.
//!
//! In-process the control plane is the server's own state; standalone it is a pulled snapshot. The
//! gateway asks it, and only it, who an agent is, whether a call is allowed and which upstreams exist;
//! it must never decide anything on its own beyond the listing rule in [`is_listed`].

use std::fmt;
use std::time::Duration;

use warden_core::{AgentId, Name, Transport};
use warden_identity::token::Claims;
use warden_mcp::UpstreamCredentials;
use warden_policy::{Decision, ToolCall, Weekday};

/// What the gateway needs from the control plane.
pub trait ControlPlane: Send + Sync + 'static {
    /// Verifies a bearer token (signature, audience, expiry, revocation). The error says whether the
    /// token was refused (a 401) or the control plane cannot vouch for anyone right now (a 503); its
    /// message is shown to the client.
    fn authenticate(&self, bearer: &str) -> Result<AgentIdentity, AuthError>;

    /// Decides one tool call, including the narrowing to the token's scopes. The gateway fills the
    /// call's arguments and its time facts (from [`ControlPlane::now`]).
    fn decide(&self, identity: &AgentIdentity, call: &ToolCall) -> Decision;

    /// The registered MCP servers this gateway fronts, with their upstream credentials.
    fn servers(&self) -> Vec<UpstreamSpec>;

    /// Whether this identity may still hold a session (suspension and revocation cut open sessions).
    /// Called on every request that names a session, so it must be cheap.
    fn still_valid(&self, identity: &AgentIdentity) -> Result<(), AuthError>;

    /// Trusted time facts in the organization's time zone: the hour (0-23) and the weekday.
    fn now(&self) -> (u8, Weekday);
}

/// Why the control plane did not vouch for a bearer token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// The token is malformed, forged, expired, for another audience or revoked, or its agent may no
    /// longer act: the agent gets a 401 and its open sessions end.
    Invalid(String),
    /// The control plane cannot vouch for any token right now (a standalone gateway past its
    /// staleness bound): the agent gets a 503 with `Retry-After`, and its sessions are kept, since the
    /// token may well be valid. Security-wise this fails closed exactly like `Invalid`.
    Unavailable {
        /// What is wrong, for the agent and its operator.
        reason: String,
        /// When asking again may succeed.
        retry_after: Duration,
    },
}

impl AuthError {
    /// The message shown to the client.
    pub fn reason(&self) -> &str {
        match self {
            AuthError::Invalid(reason) | AuthError::Unavailable { reason, .. } => reason,
        }
    }
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

/// An authenticated agent, as the control plane vouches for it.
#[derive(Clone, PartialEq, Eq)]
pub struct AgentIdentity {
    /// The acting agent (for a subagent, the subagent itself): decisions and audit are made as it.
    pub agent: AgentId,
    /// The delegation chain, the root agent first and the acting agent last.
    pub chain: Vec<String>,
    /// The acting agent's team.
    pub team: String,
    /// The scopes the token carries.
    pub scopes: Vec<String>,
    /// The token's id (`jti`).
    pub token_id: String,
    /// The bearer token itself, kept so the control plane can check it again. Never logged, never
    /// recorded and never forwarded upstream.
    pub bearer: String,
}

impl AgentIdentity {
    /// The identity described by verified token claims; `bearer` is the token they came from.
    pub fn from_claims(claims: &Claims, bearer: &str) -> Result<AgentIdentity, AuthError> {
        let agent = AgentId::parse(claims.acting_agent()).map_err(|e| AuthError::Invalid(e.to_string()))?;
        Ok(AgentIdentity {
            agent,
            chain: claims.chain().into_iter().map(str::to_owned).collect(),
            team: claims.team.clone(),
            scopes: claims.scopes().map(str::to_owned).collect(),
            token_id: claims.jti.clone(),
            bearer: bearer.to_owned(),
        })
    }
}

impl fmt::Debug for AgentIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgentIdentity")
            .field("agent", &self.agent)
            .field("chain", &self.chain)
            .field("team", &self.team)
            .field("scopes", &self.scopes)
            .field("token_id", &self.token_id)
            .finish_non_exhaustive()
    }
}

/// One upstream MCP server: its registered name, how to reach it, and the credentials the gateway
/// (never the agent) presents to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamSpec {
    /// The registered name; tools are addressed as `name/tool` in policy.
    pub name: Name,
    /// How to reach it.
    pub transport: Transport,
    /// The gateway's own credentials for it.
    pub credentials: UpstreamCredentials,
}

/// Whether `tools/list` shows a tool, given the decision for calling it with empty arguments.
///
/// The rule: a tool is listed when that decision allows it, or when it was denied by guardrails
/// (a non-empty `policy_ids` on a deny names the guardrails that forbade it). A guardrail may depend
/// on the arguments, so a tool that a grant covers stays visible and each call is decided on its real
/// arguments. A deny with no policy ids means nothing allows the tool at all (no grant covers it, the
/// token's scopes do not, or the agent is unknown or inactive), so it is hidden. A guardrail that
/// forbids a tool whatever the arguments therefore leaves it listed, and every call to it is denied
/// with the guardrail's message.
pub fn is_listed(decision: &Decision) -> bool {
    decision.allow || !decision.policy_ids.is_empty()
}

#[cfg(test)]
mod tests {
    use warden_policy::Decision;

    use super::is_listed;

    fn decision(allow: bool, ids: &[&str]) -> Decision {
        Decision {
            allow,
            policy_ids: ids.iter().map(|id| (*id).to_owned()).collect(),
            reason: String::new(),
        }
    }

    #[test]
    fn listing_rule() {
        assert!(is_listed(&decision(true, &["grant/read/spiffe://d/team/t/agent/a"])));
        assert!(is_listed(&decision(false, &["no-secrets-in-args"])));
        assert!(!is_listed(&decision(false, &[])));
    }
}
