//! The registry's side tables for SQL: `agents` and `grants`, built from a snapshot the caller takes
//! from the store (the registry lives in SQLite, not in the lake).
//!
//! ```text
//! agents(agent_id, team, purpose, origin, status, scopes list<utf8>)
//! grants(agent_id, team, scope, sensitive, pattern, server, tool_match, tool_text, tool_like)
//! ```
//!
//! `grants` has one row per (agent, granted scope, tool pattern of that scope). A pattern is
//! `server/tool-glob` as in `warden_core::ToolPattern`: the server part is a name or `*` (any
//! server), the tool part a glob where `*` matches any run of characters. Each row carries the
//! pattern in the forms SQL can match cheaply: `server` (the server part), `tool_match` = `exact`
//! (no `*`: `tool_text` is the name), `prefix` (one trailing `*`: `tool_text` is the prefix) or
//! `like` (anything else), and `tool_like`, the `LIKE` pattern (`*` becomes `%`; `%`, `_` and `\`
//! are escaped by `\`) valid for every kind. The match, exactly `ToolPattern::matches`:
//!
//! ```sql
//! (g.server = '*' OR g.server = e.server)
//! AND CASE g.tool_match WHEN 'exact'  THEN e.tool = g.tool_text
//!                       WHEN 'prefix' THEN starts_with(e.tool, g.tool_text)
//!                       ELSE e.tool LIKE g.tool_like ESCAPE '\' END
//! ```
//!
//! (`e.tool LIKE g.tool_like ESCAPE '\'` alone is equivalent, but a `LIKE` whose pattern differs
//! from row to row compiles a regular expression per row; the `CASE` keeps that to real globs.)

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, BooleanArray, ListBuilder, RecordBatch, StringArray, StringBuilder};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{MemTable, TableProvider};
use datafusion::common::Column;
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::{Expr, lit};
use datafusion::prelude::SessionContext;

use crate::engine::Visibility;

/// The name of the registered-agents table.
pub const AGENTS_TABLE: &str = "agents";
/// The name of the grants table.
pub const GRANTS_TABLE: &str = "grants";

/// One registered agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisteredAgent {
    /// `spiffe://<trust-domain>/team/<team>/agent/<name>`.
    pub agent_id: String,
    /// Owning team.
    pub team: String,
    /// Declared purpose.
    pub purpose: String,
    /// `golden-path`, `manual` or `delegated`.
    pub origin: String,
    /// `active`, `suspended` or `revoked`.
    pub status: String,
    /// Names of the scopes it holds.
    pub scopes: Vec<String>,
}

/// One tool pattern an agent may call through one granted scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantedTool {
    /// The agent holding the grant.
    pub agent_id: String,
    /// The agent's team.
    pub team: String,
    /// The scope granted.
    pub scope: String,
    /// Whether the scope is marked sensitive.
    pub sensitive: bool,
    /// `server/tool-glob`, e.g. `github/get_*`.
    pub pattern: String,
}

/// A snapshot of the registry for one query.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Registry {
    /// Every registered agent (any status).
    pub agents: Vec<RegisteredAgent>,
    /// Every (agent, scope, tool pattern) granted.
    pub grants: Vec<GrantedTool>,
}

/// Turns one glob part (`*` only) into a `LIKE` pattern escaped with `\`.
pub fn glob_to_like(glob: &str) -> String {
    let mut out = String::with_capacity(glob.len() + 4);
    for c in glob.chars() {
        match c {
            '*' => out.push('%'),
            '%' | '_' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

/// How one `server/tool-glob` pattern is matched in SQL (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatternParts {
    /// The server part: a server name or `*`.
    pub server: String,
    /// `exact`, `prefix` or `like`.
    pub tool_match: &'static str,
    /// The tool name (`exact`) or prefix (`prefix`); the raw glob otherwise.
    pub tool_text: String,
    /// The tool glob as an escaped `LIKE` pattern.
    pub tool_like: String,
}

/// Splits `server/tool-glob` into its SQL forms. A pattern without `/` matches nothing (its server
/// part is empty, and no event has an empty server).
pub fn pattern_parts(pattern: &str) -> PatternParts {
    let (server, tool) = pattern.split_once('/').unwrap_or(("", ""));
    let stars = tool.matches('*').count();
    let (tool_match, tool_text) = match tool.strip_suffix('*') {
        _ if stars == 0 => ("exact", tool),
        Some(prefix) if stars == 1 => ("prefix", prefix),
        _ => ("like", tool),
    };
    PatternParts {
        server: server.to_owned(),
        tool_match,
        tool_text: tool_text.to_owned(),
        tool_like: glob_to_like(tool),
    }
}

/// The Arrow schema of `agents`.
pub fn agents_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("agent_id", DataType::Utf8, false),
        Field::new("team", DataType::Utf8, false),
        Field::new("purpose", DataType::Utf8, false),
        Field::new("origin", DataType::Utf8, false),
        Field::new("status", DataType::Utf8, false),
        Field::new(
            "scopes",
            DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true))),
            false,
        ),
    ]))
}

/// The Arrow schema of `grants`.
pub fn grants_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("agent_id", DataType::Utf8, false),
        Field::new("team", DataType::Utf8, false),
        Field::new("scope", DataType::Utf8, false),
        Field::new("sensitive", DataType::Boolean, false),
        Field::new("pattern", DataType::Utf8, false),
        Field::new("server", DataType::Utf8, false),
        Field::new("tool_match", DataType::Utf8, false),
        Field::new("tool_text", DataType::Utf8, false),
        Field::new("tool_like", DataType::Utf8, false),
    ]))
}

fn strings<'a>(values: impl Iterator<Item = &'a str>) -> ArrayRef {
    Arc::new(StringArray::from_iter_values(values))
}

impl Registry {
    /// `agents` as one Arrow batch.
    pub fn agents_batch(&self) -> DfResult<RecordBatch> {
        let a = &self.agents;
        let mut scopes =
            ListBuilder::new(StringBuilder::new()).with_field(Arc::new(Field::new_list_field(DataType::Utf8, true)));
        for agent in a {
            for scope in &agent.scopes {
                scopes.values().append_value(scope);
            }
            scopes.append(true);
        }
        Ok(RecordBatch::try_new(
            agents_schema(),
            vec![
                strings(a.iter().map(|x| x.agent_id.as_str())),
                strings(a.iter().map(|x| x.team.as_str())),
                strings(a.iter().map(|x| x.purpose.as_str())),
                strings(a.iter().map(|x| x.origin.as_str())),
                strings(a.iter().map(|x| x.status.as_str())),
                Arc::new(scopes.finish()),
            ],
        )?)
    }

    /// `grants` as one Arrow batch.
    pub fn grants_batch(&self) -> DfResult<RecordBatch> {
        let g = &self.grants;
        let parts: Vec<PatternParts> = g.iter().map(|x| pattern_parts(&x.pattern)).collect();
        Ok(RecordBatch::try_new(
            grants_schema(),
            vec![
                strings(g.iter().map(|x| x.agent_id.as_str())),
                strings(g.iter().map(|x| x.team.as_str())),
                strings(g.iter().map(|x| x.scope.as_str())),
                Arc::new(BooleanArray::from_iter(g.iter().map(|x| Some(x.sensitive)))),
                strings(g.iter().map(|x| x.pattern.as_str())),
                strings(parts.iter().map(|p| p.server.as_str())),
                strings(parts.iter().map(|p| p.tool_match)),
                strings(parts.iter().map(|p| p.tool_text.as_str())),
                strings(parts.iter().map(|p| p.tool_like.as_str())),
            ],
        )?)
    }

    /// Registers `agents` and `grants` in `ctx`, and with `function` the function `in_granted_scope`
    /// over those grants; for a team, as views holding only its rows, and the function knowing only
    /// its grants.
    pub(crate) fn register(&self, ctx: &SessionContext, scope: &Visibility, function: bool) -> DfResult<()> {
        for (name, schema, batch) in [
            (AGENTS_TABLE, agents_schema(), self.agents_batch()?),
            (GRANTS_TABLE, grants_schema(), self.grants_batch()?),
        ] {
            let table: Arc<dyn TableProvider> = Arc::new(MemTable::try_new(schema, vec![vec![batch]])?);
            let table = match scope {
                Visibility::All => table,
                Visibility::Team(team) => ctx
                    .read_table(table)?
                    .filter(Expr::Column(Column::new_unqualified("team")).eq(lit(team.as_str())))?
                    .into_view(),
            };
            ctx.register_table(name, table)?;
        }
        if function {
            let visible = self.grants.iter().filter(|g| match scope {
                Visibility::All => true,
                Visibility::Team(team) => g.team == *team,
            });
            ctx.register_udf(crate::granted::InGrantedScope::udf(visible));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_become_escaped_like_patterns() {
        assert_eq!(glob_to_like("get_*"), "get\\_%");
        assert_eq!(glob_to_like("*"), "%");
        assert_eq!(glob_to_like("a%b\\c"), "a\\%b\\\\c");
        let p = pattern_parts("github/get_*");
        assert_eq!(
            (p.server.as_str(), p.tool_match, p.tool_text.as_str()),
            ("github", "prefix", "get_")
        );
        let p = pattern_parts("*/search");
        assert_eq!(
            (p.server.as_str(), p.tool_match, p.tool_text.as_str()),
            ("*", "exact", "search")
        );
        let p = pattern_parts("s/*_issue*");
        assert_eq!((p.tool_match, p.tool_like.as_str()), ("like", "%\\_issue%"));
        assert_eq!(pattern_parts("nonsense").server, "");
    }
}
