//! The published Cedar schema: the names and types every guardrail is validated against.
//!
//! This module owns the schema text (printed by `warden policy schema`) and its parsed, cached form.
//! The names in it are part of Warden's public surface (PRODUCT.md, "Cedar names guardrails rely on"):
//! they may be extended, never renamed or removed.

use std::sync::OnceLock;

use cedar_policy::{Schema, Validator};

use crate::error::PolicyError;
use crate::fleet::Names;

/// The schema in Cedar's human-readable schema syntax.
const SCHEMA_TEXT: &str = r#"// Warden's Cedar schema. Every guardrail is validated against it in strict mode.
namespace Warden {
  // A product team. Entity id: the team's name.
  entity Team;

  // A person acting through an access token. Entity id: the token's name.
  entity Person = {
    // "platform-admin", "team-admin" or "auditor".
    role: String,
    // The team of a team-admin; absent for other roles, so test `principal has team` first.
    team?: Team,
  };

  // An AI agent. Entity id: its SPIFFE id. Its parents are its team and, for a subagent, its
  // parent agent, so `principal in Warden::Team::"payments"` matches all of a team's agents and
  // `principal in Warden::Agent::"<id>"` matches an agent and every subagent below it.
  entity Agent in [Team, Agent] = {
    team: Team,
    // Sorted tags such as "customer-data" or "prod"; a subagent inherits its parent's.
    tags: Set<String>,
    purpose: String,
    // "active", "suspended" or "revoked" (only active agents ever reach call_tool guardrails).
    status: String,
    // "golden-path", "manual" or "delegated".
    origin: String,
    // The names of the scopes the agent holds.
    scopes: Set<String>,
    // Delegation hops from the root agent: 0 for a root agent.
    depth: Long,
  };

  // A registered MCP server. Entity id: its name.
  entity McpServer = {
    // Absent when no team owns the server, so test `resource.server has owner_team` first.
    owner_team?: Team,
    sensitive: Bool,
  };

  // One tool of an MCP server. Entity id: "<server>/<tool>". Its parent is its server, so
  // `resource in Warden::McpServer::"github"` matches every tool of that server.
  entity Tool in [McpServer] = {
    server: McpServer,
    // The tool's name as the MCP server spells it.
    name: String,
    // True when the server is sensitive or a sensitive scope covers the tool.
    sensitive: Bool,
  };

  // The JSON arguments of one tool call. Every argument is a tag whose value is text:
  //   strings as they are; numbers in their JSON spelling ("42", "1.5"); booleans "true"/"false";
  //   nulls are dropped; nested objects are flattened with "." ("options.force");
  //   an array becomes its elements' text joined by single spaces ("-c curl x").
  // `json` is the whole argument value as compact JSON, for matching anywhere in it.
  // Test `context.arguments.hasTag("command")` before `context.arguments.getTag("command")`.
  entity Arguments = {
    json: String,
  } tags String;

  // An agent calls a tool through the gateway. `hour` (0-23) and `weekday` (0 = Monday ..
  // 6 = Sunday) are trusted facts from the server clock in the organization's time zone.
  action call_tool appliesTo {
    principal: Agent,
    resource: Tool,
    context: {
      arguments: Arguments,
      hour: Long,
      weekday: Long,
    },
  };

  // A person grants scope `context.scope` to the agent. Allowed unless a guardrail forbids it.
  action grant_scope appliesTo {
    principal: Person,
    resource: Agent,
    context: {
      scope: String,
    },
  };

  // A person tags the agent with `context.tag`. Allowed unless a guardrail forbids it.
  action set_tag appliesTo {
    principal: Person,
    resource: Agent,
    context: {
      tag: String,
    },
  };

  // An agent (the principal) delegates to a subagent. The resource is the subagent as it will
  // be: its parent's team, tags and purpose, the requested scopes, depth one more than its
  // parent's. `context.scopes` repeats the requested scopes, `context.depth` the new depth.
  // Allowed unless a guardrail forbids it.
  action delegate appliesTo {
    principal: Agent,
    resource: Agent,
    context: {
      scopes: Set<String>,
      depth: Long,
    },
  };
}
"#;

/// The published Cedar schema, in Cedar's human-readable schema syntax.
///
/// Guardrails are validated against it in strict mode; `warden policy schema` prints it.
pub fn schema_text() -> &'static str {
    SCHEMA_TEXT
}

/// The parsed schema and a validator for it, built once per process.
pub(crate) struct Compiled {
    pub(crate) validator: Validator,
    pub(crate) names: Names,
}

/// The parsed schema. Fails only if the built-in schema text is broken, which the tests rule out.
pub(crate) fn compiled() -> Result<&'static Compiled, PolicyError> {
    static COMPILED: OnceLock<Result<Compiled, String>> = OnceLock::new();
    COMPILED
        .get_or_init(|| {
            let (schema, _warnings) = Schema::from_cedarschema_str(SCHEMA_TEXT).map_err(|e| one_line(&e))?;
            let names = Names::new().map_err(|e| e.to_string())?;
            Ok(Compiled {
                validator: Validator::new(schema),
                names,
            })
        })
        .as_ref()
        .map_err(|e| PolicyError::Internal(format!("the built-in schema does not parse: {e}")))
}

/// Formats an error on one line: messages never contain line breaks.
pub(crate) fn one_line(err: &dyn std::fmt::Display) -> String {
    err.to_string().split_whitespace().collect::<Vec<_>>().join(" ")
}
