//! The SQL function `in_granted_scope(agent_id, server, tool)`: whether the registry's grants let the
//! agent call that tool, by `warden_core::ToolPattern::matches` itself.
//!
//! This module owns the function and its evaluation. It is registered with the registry's tables
//! (see [`crate::Registry`]) and built from the grants the query may see: a team-admin's function
//! knows the team's grants only, so it cannot be used to probe another team's scopes.
//!
//! Why a function and not a join: scope drift asks, for millions of tool calls, whether any grant of
//! the calling agent covers the call. As a join (`covered RIGHT JOIN calls … WHERE covered IS NULL`)
//! every call is hashed on three string keys, matched, and then materialized with the covering row
//! only to be filtered out again, since almost every call is covered. As a predicate, each call
//! costs two hash lookups (its agent's scopes, then that server's patterns) and a comparison or two,
//! and only the calls outside every grant leave the scan.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, BooleanBufferBuilder, StringViewArray};
use datafusion::arrow::buffer::BooleanBuffer;
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{HashMap, exec_err};
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility};
use warden_core::ToolPattern;

use crate::registry::{GrantedTool, pattern_parts};

/// The function's name in SQL.
pub const IN_GRANTED_SCOPE: &str = "in_granted_scope";

/// `in_granted_scope(agent_id, server, tool)`: `true` if a grant of the agent has a tool pattern
/// matching `server/tool`, else `false`; `false` as well when any argument is NULL (no grant covers
/// an unknown agent, server or tool), so `NOT in_granted_scope(…)` keeps such calls.
#[derive(Debug)]
pub(crate) struct InGrantedScope {
    signature: Signature,
    /// Per agent, the tool patterns of its grants, by agent id (a pattern that does not parse is
    /// left out: it covers nothing, as in the `grants` table's SQL forms).
    patterns: BTreeMap<String, Vec<ToolPattern>>,
    /// `patterns` arranged for lookups: per agent, per server.
    index: HashMap<String, AgentScopes>,
}

/// One agent's patterns by server part.
#[derive(Debug, Default)]
struct AgentScopes {
    /// Patterns naming a server.
    by_server: HashMap<String, Vec<ToolMatch>>,
    /// Patterns on every server (`*/…`).
    any_server: Vec<ToolMatch>,
}

/// The tool part of a pattern, in its cheapest exact form.
#[derive(Debug)]
enum ToolMatch {
    /// No `*`: the name.
    Exact(String),
    /// One trailing `*`: the prefix.
    Prefix(String),
    /// Anything else: the whole pattern, matched by `ToolPattern::matches`.
    Glob(ToolPattern),
}

impl ToolMatch {
    /// The pattern's server part and tool matcher, split as the `grants` table splits them.
    fn of(pattern: &ToolPattern) -> (String, ToolMatch) {
        let parts = pattern_parts(pattern.as_str());
        let matcher = match parts.tool_match {
            "exact" => ToolMatch::Exact(parts.tool_text),
            "prefix" => ToolMatch::Prefix(parts.tool_text),
            _ => ToolMatch::Glob(pattern.clone()),
        };
        (parts.server, matcher)
    }

    fn matches(&self, server: &str, tool: &str) -> bool {
        match self {
            ToolMatch::Exact(name) => name == tool,
            ToolMatch::Prefix(prefix) => tool.starts_with(prefix.as_str()),
            ToolMatch::Glob(pattern) => pattern.matches(server, tool),
        }
    }
}

impl AgentScopes {
    fn covers(&self, server: &str, tool: &str) -> bool {
        let any = |matchers: &[ToolMatch]| matchers.iter().any(|m| m.matches(server, tool));
        self.by_server.get(server).is_some_and(|m| any(m)) || any(&self.any_server)
    }
}

// DataFusion compares and hashes functions (to deduplicate expressions); `index` is derived from
// `patterns`, so equality and hash follow `patterns` alone.
impl PartialEq for InGrantedScope {
    fn eq(&self, other: &Self) -> bool {
        self.signature == other.signature && self.patterns == other.patterns
    }
}

impl Eq for InGrantedScope {}

impl Hash for InGrantedScope {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.signature.hash(state);
        self.patterns.hash(state);
    }
}

impl InGrantedScope {
    /// The SQL function over `grants`.
    pub(crate) fn udf<'a>(grants: impl IntoIterator<Item = &'a GrantedTool>) -> ScalarUDF {
        ScalarUDF::from(InGrantedScope::new(grants))
    }

    fn new<'a>(grants: impl IntoIterator<Item = &'a GrantedTool>) -> InGrantedScope {
        let mut patterns: BTreeMap<String, Vec<ToolPattern>> = BTreeMap::new();
        for grant in grants {
            let Ok(pattern) = ToolPattern::parse(&grant.pattern) else {
                continue;
            };
            let held = patterns.entry(grant.agent_id.clone()).or_default();
            if !held.contains(&pattern) {
                held.push(pattern);
            }
        }
        let mut index: HashMap<String, AgentScopes> = HashMap::new();
        for (agent, held) in &patterns {
            let scopes = index.entry(agent.clone()).or_default();
            for pattern in held {
                let (server, matcher) = ToolMatch::of(pattern);
                if server == "*" {
                    scopes.any_server.push(matcher);
                } else {
                    scopes.by_server.entry(server).or_default().push(matcher);
                }
            }
        }
        InGrantedScope {
            signature: Signature::string(3, Volatility::Immutable),
            patterns,
            index,
        }
    }

    /// One answer per row: the agent's scopes by hash, the server's patterns by hash, then those
    /// few patterns.
    fn evaluate(
        &self,
        agent: &StringViewArray,
        server: &StringViewArray,
        tool: &StringViewArray,
        rows: usize,
    ) -> BooleanBuffer {
        let mut answers = BooleanBufferBuilder::new(rows);
        let nulls = agent.null_count() + server.null_count() + tool.null_count() > 0;
        for i in 0..rows {
            if nulls && (agent.is_null(i) || server.is_null(i) || tool.is_null(i)) {
                answers.append(false);
                continue;
            }
            let covered = self
                .index
                .get(agent.value(i))
                .is_some_and(|scopes| scopes.covers(server.value(i), tool.value(i)));
            answers.append(covered);
        }
        answers.finish()
    }
}

impl ScalarUDFImpl for InGrantedScope {
    fn name(&self) -> &str {
        IN_GRANTED_SCOPE
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Boolean)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let rows = args.number_rows;
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let [agent, server, tool] = arrays.as_slice() else {
            return exec_err!(
                "{IN_GRANTED_SCOPE} takes 3 arguments (agent_id, server, tool), not {}",
                arrays.len()
            );
        };
        let (agent, server, tool) = (as_views(agent)?, as_views(server)?, as_views(tool)?);
        let (agent, server, tool) = (agent.as_string_view(), server.as_string_view(), tool.as_string_view());
        let answers = self.evaluate(agent, server, tool, rows);
        Ok(ColumnarValue::Array(Arc::new(BooleanArray::new(answers, None))))
    }
}

/// `array` as a `Utf8View` array (a cheap conversion for `Utf8` and `LargeUtf8`).
fn as_views(array: &ArrayRef) -> DfResult<ArrayRef> {
    match array.data_type() {
        DataType::Utf8View => Ok(Arc::clone(array)),
        DataType::Utf8 | DataType::LargeUtf8 => Ok(cast(array, &DataType::Utf8View)?),
        other => exec_err!("{IN_GRANTED_SCOPE} takes strings, not {other}"),
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::StringArray;

    use super::*;

    fn grant(agent: &str, pattern: &str) -> GrantedTool {
        GrantedTool {
            agent_id: agent.to_owned(),
            team: "t".to_owned(),
            scope: "s".to_owned(),
            sensitive: false,
            pattern: pattern.to_owned(),
        }
    }

    type Row<'a> = (Option<&'a str>, Option<&'a str>, Option<&'a str>);

    fn answers(grants: &[GrantedTool], rows: &[Row<'_>]) -> Vec<bool> {
        let f = InGrantedScope::new(grants);
        let column = |pick: usize| {
            let strings: StringArray = rows.iter().map(|r| [r.0, r.1, r.2][pick]).collect();
            as_views(&(Arc::new(strings) as ArrayRef)).unwrap()
        };
        let (a, s, t) = (column(0), column(1), column(2));
        let out = f.evaluate(a.as_string_view(), s.as_string_view(), t.as_string_view(), rows.len());
        out.iter().collect()
    }

    #[test]
    fn matches_the_agents_own_patterns_only() {
        let grants = [
            grant("a", "github/get_*"),
            grant("a", "*/search"),
            grant("a", "fs/*_file*"),
            grant("b", "github/create_issue"),
            grant("b", "not a pattern"),
        ];
        let rows = [
            (Some("a"), Some("github"), Some("get_issue")),
            (Some("a"), Some("github"), Some("create_issue")),
            (Some("a"), Some("jira"), Some("search")),
            (Some("a"), Some("fs"), Some("read_file_v2")),
            (Some("a"), Some("fs"), Some("read")),
            (Some("b"), Some("github"), Some("create_issue")),
            (Some("b"), Some("github"), Some("get_issue")),
            (Some("c"), Some("github"), Some("get_issue")),
            // Repeated triples answer the same.
            (Some("a"), Some("github"), Some("get_issue")),
            (Some("a"), Some("github"), Some("create_issue")),
        ];
        assert_eq!(
            answers(&grants, &rows),
            [true, false, true, true, false, true, false, false, true, false]
        );
    }

    #[test]
    fn long_strings_behind_different_views() {
        // Over 12 bytes, a view points into a buffer; the strings are compared, not the views.
        let long = "spiffe://warden.local/team/payments/agent/reconciler";
        let other = "spiffe://warden.local/team/payments/agent/reconciles";
        let grants = [grant(long, "github-enterprise/get_*")];
        let rows = [
            (Some(long), Some("github-enterprise"), Some("get_pull_request")),
            (Some(long), Some("github-enterprise"), Some("get_pull_request")),
            (Some(other), Some("github-enterprise"), Some("get_pull_request")),
            (Some(long), Some("github-enterprise"), Some("merge_pull_request")),
        ];
        assert_eq!(answers(&grants, &rows), [true, true, false, false]);
    }

    #[test]
    fn nulls_are_covered_by_nothing() {
        let grants = [grant("a", "*/*")];
        let rows = [
            (None, Some("s"), Some("t")),
            (Some("a"), None, Some("t")),
            (Some("a"), Some("s"), None),
            (Some("a"), Some("s"), Some("t")),
        ];
        assert_eq!(answers(&grants, &rows), [false, false, false, true]);
    }
}
