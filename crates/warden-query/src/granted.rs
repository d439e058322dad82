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
//! only to be filtered out again, since almost every call is covered. As a predicate, each call is
//! looked up in a per-batch memo of the (agent, server, tool) triples seen, the patterns are matched
//! once per triple, and only the calls outside every grant leave the scan.

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

use crate::registry::GrantedTool;

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
    /// `patterns` for lookups by hash.
    index: HashMap<String, Vec<ToolPattern>>,
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
        InGrantedScope {
            signature: Signature::string(3, Volatility::Immutable),
            index: patterns.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            patterns,
        }
    }

    fn covers(&self, agent: &str, server: &str, tool: &str) -> bool {
        self.index
            .get(agent)
            .is_some_and(|patterns| patterns.iter().any(|p| p.matches(server, tool)))
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

impl InGrantedScope {
    /// One answer per row. Rows are memoized by their three string views: equal views hold equal
    /// strings (inline bytes, or the same bytes of the same buffer), and a Parquet page's repeated
    /// values share one view into its dictionary, so most rows are one hash of 48 bytes. Equal
    /// strings behind different views only miss the memo.
    fn evaluate(
        &self,
        agent: &StringViewArray,
        server: &StringViewArray,
        tool: &StringViewArray,
        rows: usize,
    ) -> BooleanBuffer {
        let (agent_views, server_views, tool_views) = (agent.views(), server.views(), tool.views());
        let mut memo: HashMap<[u128; 3], bool> = HashMap::new();
        let mut answers = BooleanBufferBuilder::new(rows);
        let nulls = agent.null_count() + server.null_count() + tool.null_count() > 0;
        for i in 0..rows {
            if nulls && (agent.is_null(i) || server.is_null(i) || tool.is_null(i)) {
                answers.append(false);
                continue;
            }
            let key = [agent_views[i], server_views[i], tool_views[i]];
            let covered = *memo
                .entry(key)
                .or_insert_with(|| self.covers(agent.value(i), server.value(i), tool.value(i)));
            answers.append(covered);
        }
        answers.finish()
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
            // Repeated triples answer the same from the memo.
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
        // Over 12 bytes, a view points into a buffer: the same id at two offsets misses the memo
        // and is matched again, with the same answer.
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
