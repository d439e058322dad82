//! The registry's side tables for SQL: `agents` and `grants`, built from a snapshot the caller takes
//! from the store (the registry lives in SQLite, not in the lake).
//!
//! ```text
//! agents(agent_id, team, purpose, origin, status, scopes list<utf8>)
//! grants(agent_id, team, scope, sensitive, pattern, server_like, tool_like)
//! ```
//!
//! `grants` has one row per (agent, granted scope, tool pattern of that scope). A pattern is
//! `server/tool-glob` as in `warden_core::ToolPattern`: the server part is a name or `*`, the tool part
//! a glob where `*` matches any run of characters. For SQL each part becomes a `LIKE` pattern
//! (`server_like`, `tool_like`) with `%`, `_` and `\` escaped by `\` and `*` turned into `%`, so
//! `github/get_*` matches `tool_server LIKE server_like ESCAPE '\' AND tool_name LIKE tool_like
//! ESCAPE '\'` exactly when `ToolPattern::matches` does.

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

/// Splits `server/tool-glob` into its `LIKE` patterns; a pattern without `/` matches nothing.
pub fn pattern_to_like(pattern: &str) -> (String, String) {
    match pattern.split_once('/') {
        Some((server, tool)) => {
            let server = if server == "*" {
                "%".to_owned()
            } else {
                glob_to_like(server)
            };
            (server, glob_to_like(tool))
        }
        // Matches no tool name: LIKE patterns cannot contain a raw NUL in Warden names.
        None => ("\u{0}".to_owned(), "\u{0}".to_owned()),
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
        Field::new("server_like", DataType::Utf8, false),
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
        let likes: Vec<(String, String)> = g.iter().map(|x| pattern_to_like(&x.pattern)).collect();
        Ok(RecordBatch::try_new(
            grants_schema(),
            vec![
                strings(g.iter().map(|x| x.agent_id.as_str())),
                strings(g.iter().map(|x| x.team.as_str())),
                strings(g.iter().map(|x| x.scope.as_str())),
                Arc::new(BooleanArray::from_iter(g.iter().map(|x| Some(x.sensitive)))),
                strings(g.iter().map(|x| x.pattern.as_str())),
                strings(likes.iter().map(|(s, _)| s.as_str())),
                strings(likes.iter().map(|(_, t)| t.as_str())),
            ],
        )?)
    }

    /// Registers `agents` and `grants` in `ctx`; for a team, as views holding only its rows.
    pub(crate) fn register(&self, ctx: &SessionContext, scope: &Visibility) -> DfResult<()> {
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
        assert_eq!(pattern_to_like("*/list_*"), ("%".to_owned(), "list\\_%".to_owned()));
        assert_eq!(
            pattern_to_like("github/get_issue"),
            ("github".to_owned(), "get\\_issue".to_owned())
        );
    }
}
