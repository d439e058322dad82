//! The tool catalog a sealed segment carries in its Parquet footer: every distinct `(server, tool)`
//! pair among the segment's events, so a query engine can learn which tools a lake names from the
//! footers instead of scanning millions of rows (Warden's engine builds its `event_tools` table this
//! way; the governance reports expand grant patterns against it).
//!
//! The footer's key-value metadata holds it under [`TOOL_CATALOG_KEY`], as a JSON array of
//! `[server, tool]` arrays, sorted. A segment naming more than [`MAX_CATALOG_PAIRS`] pairs carries no
//! catalog, and a reader scans that segment instead; a catalog is always complete when present. It is
//! derived data: the manifest's SHA-256 of each file covers the footer, so `verify` notices a changed
//! catalog like any other changed byte.

use std::collections::{BTreeSet, HashSet};

use arrow_array::{Array, RecordBatch, StringArray};
use parquet::file::metadata::KeyValue;

/// The footer key of the tool catalog.
pub const TOOL_CATALOG_KEY: &str = "warden.lake.tools";

/// Most pairs a catalog lists; past it the segment has none (readers scan it instead).
pub const MAX_CATALOG_PAIRS: usize = 4096;

/// The distinct `(server, tool)` pairs of the batches added so far.
#[derive(Debug, Default)]
pub struct ToolCatalog {
    pairs: BTreeSet<(String, String)>,
    /// Too many pairs, or a batch whose columns could not be read: no catalog.
    unusable: bool,
}

impl ToolCatalog {
    /// Adds the pairs of `batch` (the lake's schema: `server` and `tool` as `Utf8`). Rows where
    /// either is NULL name no tool.
    pub fn add_batch(&mut self, batch: &RecordBatch) {
        if self.unusable {
            return;
        }
        let column = |name: &str| {
            batch
                .column_by_name(name)
                .and_then(|c| c.as_any().downcast_ref::<StringArray>())
        };
        let (Some(servers), Some(tools)) = (column("server"), column("tool")) else {
            self.unusable = true;
            return;
        };
        let mut seen: HashSet<(&str, &str)> = HashSet::new();
        for row in 0..batch.num_rows() {
            if servers.is_valid(row) && tools.is_valid(row) {
                seen.insert((servers.value(row), tools.value(row)));
            }
        }
        for (server, tool) in seen {
            let pair = (server.to_owned(), tool.to_owned());
            if self.pairs.contains(&pair) {
                continue;
            }
            if self.pairs.len() >= MAX_CATALOG_PAIRS {
                self.unusable = true;
                self.pairs.clear();
                return;
            }
            self.pairs.insert(pair);
        }
    }

    /// The footer entry, or `None` when the batches cannot be described by one.
    pub fn footer(&self) -> Option<KeyValue> {
        if self.unusable {
            return None;
        }
        let pairs: Vec<[&str; 2]> = self.pairs.iter().map(|(s, t)| [s.as_str(), t.as_str()]).collect();
        let value = serde_json::to_string(&pairs).ok()?;
        Some(KeyValue::new(TOOL_CATALOG_KEY.to_owned(), value))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::ArrayRef;
    use arrow_schema::{DataType, Field, Schema};

    use super::*;

    fn batch(rows: &[(Option<&str>, Option<&str>)]) -> RecordBatch {
        let servers: ArrayRef = Arc::new(rows.iter().map(|r| r.0).collect::<StringArray>());
        let tools: ArrayRef = Arc::new(rows.iter().map(|r| r.1).collect::<StringArray>());
        let schema = Schema::new(vec![
            Field::new("server", DataType::Utf8, true),
            Field::new("tool", DataType::Utf8, true),
        ]);
        RecordBatch::try_new(Arc::new(schema), vec![servers, tools]).unwrap()
    }

    #[test]
    fn lists_each_pair_once_sorted_and_skips_rows_without_a_tool() {
        let mut catalog = ToolCatalog::default();
        catalog.add_batch(&batch(&[
            (Some("gh"), Some("get_issue")),
            (Some("db"), Some("query")),
            (Some("gh"), Some("get_issue")),
            (None, Some("Bash")),
            (Some("gh"), None),
        ]));
        catalog.add_batch(&batch(&[(Some("db"), Some("query")), (Some("gh"), Some("a"))]));
        let footer = catalog.footer().unwrap();
        assert_eq!(footer.key, TOOL_CATALOG_KEY);
        assert_eq!(
            footer.value.as_deref(),
            Some(r#"[["db","query"],["gh","a"],["gh","get_issue"]]"#)
        );
    }

    #[test]
    fn no_catalog_past_the_bound_or_without_the_columns() {
        let mut catalog = ToolCatalog::default();
        let names: Vec<String> = (0..=MAX_CATALOG_PAIRS).map(|i| format!("t{i}")).collect();
        let rows: Vec<(Option<&str>, Option<&str>)> = names.iter().map(|t| (Some("s"), Some(t.as_str()))).collect();
        catalog.add_batch(&batch(&rows[..MAX_CATALOG_PAIRS]));
        assert!(catalog.footer().is_some(), "exactly the bound still has a catalog");
        catalog.add_batch(&batch(&rows[MAX_CATALOG_PAIRS..]));
        assert!(catalog.footer().is_none());

        let mut catalog = ToolCatalog::default();
        let other = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new("x", DataType::Int32, true)])),
            vec![Arc::new(arrow_array::Int32Array::from(vec![1]))],
        )
        .unwrap();
        catalog.add_batch(&other);
        assert!(catalog.footer().is_none());
    }
}
