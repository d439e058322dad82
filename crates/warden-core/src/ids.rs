//! SPIFFE-form agent ids: `spiffe://<trust-domain>/team/<team>/agent/<name>[/<subagent>...]`.
//!
//! A subagent's id extends its parent's by one segment, so the delegation chain can be read off the id
//! and every id stays unique within a trust domain.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

use crate::names::Name;

/// An agent's identity. Always well formed: construct with [`AgentId::new`], [`AgentId::child`] or
/// [`AgentId::parse`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, utoipa::ToSchema)]
#[serde(transparent)]
#[schema(value_type = String, example = "spiffe://warden.local/team/payments/agent/reconciler")]
pub struct AgentId(String);

/// Why a string is not an agent id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid agent id `{value}`: {reason} (expected spiffe://<trust-domain>/team/<team>/agent/<name>)")]
pub struct AgentIdError {
    value: String,
    reason: String,
}

impl AgentId {
    /// The id of a root agent `name` of `team`.
    pub fn new(trust_domain: &str, team: &Name, name: &Name) -> AgentId {
        AgentId(format!("spiffe://{trust_domain}/team/{team}/agent/{name}"))
    }

    /// The id of subagent `name` delegated from `self`.
    pub fn child(&self, name: &Name) -> AgentId {
        AgentId(format!("{}/{name}", self.0))
    }

    /// Parses and validates an id.
    pub fn parse(value: &str) -> Result<AgentId, AgentIdError> {
        let err = |reason: &str| AgentIdError {
            value: value.chars().take(200).collect(),
            reason: reason.to_owned(),
        };
        let rest = value
            .strip_prefix("spiffe://")
            .ok_or_else(|| err("it must start with `spiffe://`"))?;
        let mut segments = rest.split('/');
        let domain = segments.next().unwrap_or_default();
        validate_trust_domain(domain).map_err(|reason| err(&reason))?;
        if segments.next() != Some("team") {
            return Err(err("the path must start with `/team/`"));
        }
        let team = segments.next().ok_or_else(|| err("the team is missing"))?;
        Name::parse(team).map_err(|e| err(&e.to_string()))?;
        if segments.next() != Some("agent") {
            return Err(err("`/agent/` must follow the team"));
        }
        let mut n = 0;
        for segment in segments {
            Name::parse(segment).map_err(|e| err(&e.to_string()))?;
            n += 1;
        }
        if n == 0 {
            return Err(err("the agent name is missing"));
        }
        Ok(AgentId(value.to_owned()))
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The trust domain (the host part).
    pub fn trust_domain(&self) -> &str {
        self.0
            .trim_start_matches("spiffe://")
            .split('/')
            .next()
            .unwrap_or_default()
    }

    /// The owning team.
    pub fn team(&self) -> Name {
        let team = self.path_segments().nth(1).unwrap_or_default();
        Name(team.to_owned())
    }

    /// The agent's own (last) name segment.
    pub fn name(&self) -> Name {
        Name(self.path_segments().last().unwrap_or_default().to_owned())
    }

    /// How many delegation hops separate this agent from its root agent (0 for a root agent).
    pub fn depth(&self) -> usize {
        self.path_segments().count().saturating_sub(4)
    }

    /// The parent's id, for a subagent.
    pub fn parent(&self) -> Option<AgentId> {
        if self.depth() == 0 {
            return None;
        }
        let cut = self.0.rfind('/')?;
        Some(AgentId(self.0[..cut].to_owned()))
    }

    fn path_segments(&self) -> impl Iterator<Item = &str> {
        self.0.trim_start_matches("spiffe://").split('/').skip(1)
    }
}

/// Checks a SPIFFE trust domain: lowercase letters, digits, `.`, `-` and `_`, 1–255 characters.
pub(crate) fn validate_trust_domain(domain: &str) -> Result<(), String> {
    if domain.is_empty() {
        return Err("the trust domain is empty".to_owned());
    }
    if domain.len() > 255 {
        return Err("the trust domain is longer than 255 characters".to_owned());
    }
    if !domain
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-' | '_'))
    {
        return Err(format!(
            "trust domain `{domain}` may hold only lowercase letters, digits, `.`, `-` and `_`"
        ));
    }
    Ok(())
}

impl fmt::Display for AgentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for AgentId {
    type Err = AgentIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AgentId::parse(s)
    }
}

impl<'de> Deserialize<'de> for AgentId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        AgentId::parse(&raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> Name {
        Name::parse(s).unwrap()
    }

    #[test]
    fn root_and_child() {
        let root = AgentId::new("warden.local", &name("payments"), &name("orch"));
        assert_eq!(root.as_str(), "spiffe://warden.local/team/payments/agent/orch");
        assert_eq!(root.depth(), 0);
        assert_eq!(root.parent(), None);
        let child = root.child(&name("researcher"));
        assert_eq!(
            child.as_str(),
            "spiffe://warden.local/team/payments/agent/orch/researcher"
        );
        assert_eq!(child.depth(), 1);
        assert_eq!(child.parent(), Some(root.clone()));
        assert_eq!(child.team().as_str(), "payments");
        assert_eq!(child.name().as_str(), "researcher");
        assert_eq!(child.trust_domain(), "warden.local");
        assert_eq!(AgentId::parse(child.as_str()).unwrap(), child);
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "http://warden.local/team/a/agent/b",
            "spiffe://Warden/team/a/agent/b",
            "spiffe://warden.local/teams/a/agent/b",
            "spiffe://warden.local/team/a/agent",
            "spiffe://warden.local/team/a/agent/",
            "spiffe://warden.local/team/A/agent/b",
            "spiffe://warden.local/team/a/agent/b//c",
        ] {
            assert!(AgentId::parse(bad).is_err(), "{bad}");
        }
    }
}
