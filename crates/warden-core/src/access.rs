//! Who may do what: the roles of people's access tokens and the one function that decides.
//!
//! `platform-admin` may do everything; a `team-admin` manages its own team's agents and grants; an
//! `auditor` reads everything and changes nothing. Every refusal says which role would have been needed,
//! so the person knows whom to ask.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::names::Name;

/// The role of a person's access token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Everything, org-wide.
    PlatformAdmin,
    /// One team's agents and grants.
    TeamAdmin,
    /// Read-only, all teams.
    Auditor,
    /// A standalone gateway: reads the policy snapshot (with upstream credentials) and ships audit
    /// events back. Not a person's role; give one token to each gateway deployment.
    Gateway,
}

impl Role {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::PlatformAdmin => "platform-admin",
            Role::TeamAdmin => "team-admin",
            Role::Auditor => "auditor",
            Role::Gateway => "gateway",
        }
    }

    /// Parses the wire spelling.
    pub fn parse(value: &str) -> Option<Role> {
        match value {
            "platform-admin" => Some(Role::PlatformAdmin),
            "team-admin" => Some(Role::TeamAdmin),
            "auditor" => Some(Role::Auditor),
            "gateway" => Some(Role::Gateway),
            _ => None,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An authenticated person: the holder of an access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    /// The access token's name.
    pub name: Name,
    /// Its role.
    pub role: Role,
    /// The team, for a team-admin.
    pub team: Option<Name>,
}

/// Something a person asks to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation<'a> {
    /// Read the registry (teams, agents, servers, scopes, grants).
    ReadRegistry,
    /// List access tokens (names and roles, never secrets).
    ReadAccessTokens,
    /// Create teams.
    ManageTeams,
    /// Create or revoke people's access tokens.
    ManageAccessTokens,
    /// Define scopes.
    ManageScopes,
    /// Register MCP servers.
    ManageMcpServers,
    /// Rotate signing keys.
    ManageKeys,
    /// Add or remove guardrails.
    ManagePolicy,
    /// Store new versions of golden-path templates.
    ManageTemplates,
    /// Pull the gateway snapshot (including upstream credentials) and ship gateway events.
    GatewaySync,
    /// Read the change log.
    ReadChangeLog,
    /// Register, suspend, resume or revoke the agents of `team`, and grant them scopes.
    ManageAgents {
        /// The team that owns the agent.
        team: &'a Name,
    },
}

impl Operation<'_> {
    fn describe(&self) -> String {
        match self {
            Operation::ReadRegistry => "reading the registry".to_owned(),
            Operation::ReadAccessTokens => "listing access tokens".to_owned(),
            Operation::ManageTeams => "managing teams".to_owned(),
            Operation::ManageAccessTokens => "managing access tokens".to_owned(),
            Operation::ManageScopes => "defining scopes".to_owned(),
            Operation::ManageMcpServers => "managing MCP servers".to_owned(),
            Operation::ManageKeys => "rotating signing keys".to_owned(),
            Operation::ManagePolicy => "managing guardrails".to_owned(),
            Operation::ManageTemplates => "editing golden-path templates".to_owned(),
            Operation::GatewaySync => "syncing a standalone gateway".to_owned(),
            Operation::ReadChangeLog => "reading the change log".to_owned(),
            Operation::ManageAgents { team } => {
                format!("managing agents and grants of team `{team}`")
            }
        }
    }

    fn needed(&self) -> String {
        match self {
            Operation::ReadRegistry => "any role".to_owned(),
            Operation::ReadAccessTokens | Operation::ReadChangeLog => "platform-admin or auditor".to_owned(),
            Operation::GatewaySync => "platform-admin or gateway".to_owned(),
            Operation::ManageAgents { team } => {
                format!("platform-admin or team-admin of team `{team}`")
            }
            _ => "platform-admin".to_owned(),
        }
    }
}

/// A refusal: the person's role does not allow the operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct AccessDenied {
    /// The role(s) that would have been allowed.
    pub required: String,
    message: String,
}

impl Person {
    /// Decides whether this person may perform `operation`.
    pub fn authorize(&self, operation: Operation<'_>) -> Result<(), AccessDenied> {
        let allowed = match (self.role, operation) {
            (Role::PlatformAdmin, _) => true,
            (_, Operation::ReadRegistry) => true,
            (Role::Auditor, Operation::ReadAccessTokens | Operation::ReadChangeLog) => true,
            (Role::Gateway, Operation::GatewaySync) => true,
            (Role::TeamAdmin, Operation::ManageAgents { team }) => self.team.as_ref() == Some(team),
            _ => false,
        };
        if allowed {
            return Ok(());
        }
        let held = match (&self.role, &self.team) {
            (Role::TeamAdmin, Some(team)) => format!("team-admin of team `{team}`"),
            (role, _) => role.to_string(),
        };
        let required = operation.needed();
        Err(AccessDenied {
            message: format!(
                "{} needs {required}; token `{}` is {held}",
                operation.describe(),
                self.name
            ),
            required,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn person(role: Role, team: Option<&str>) -> Person {
        Person {
            name: Name::parse("alice").unwrap(),
            role,
            team: team.map(|t| Name::parse(t).unwrap()),
        }
    }

    #[test]
    fn matrix() {
        let own = Name::parse("payments").unwrap();
        let other = Name::parse("search").unwrap();
        let admin = person(Role::PlatformAdmin, None);
        let team_admin = person(Role::TeamAdmin, Some("payments"));
        let auditor = person(Role::Auditor, None);
        let ops = [
            Operation::ReadRegistry,
            Operation::ReadAccessTokens,
            Operation::ManageTeams,
            Operation::ManageAccessTokens,
            Operation::ManageScopes,
            Operation::ManageMcpServers,
            Operation::ManageAgents { team: &own },
            Operation::ManageAgents { team: &other },
        ];
        let expect = |p: &Person| ops.map(|op| p.authorize(op).is_ok());
        assert_eq!(expect(&admin), [true; 8]);
        assert_eq!(
            expect(&team_admin),
            [true, false, false, false, false, false, true, false]
        );
        assert_eq!(expect(&auditor), [true, true, false, false, false, false, false, false]);
    }

    #[test]
    fn refusal_names_the_role() {
        let team_admin = person(Role::TeamAdmin, Some("payments"));
        let other = Name::parse("search").unwrap();
        let err = team_admin
            .authorize(Operation::ManageAgents { team: &other })
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "managing agents and grants of team `search` needs platform-admin or team-admin of team `search`; token `alice` is team-admin of team `payments`"
        );
        assert_eq!(err.required, "platform-admin or team-admin of team `search`");
    }
}
