//! [`QueryEngine`]: SQL over the table `events` = the sealed Parquet segments of the lake ∪ the
//! events not sealed yet (the tail), with team visibility, read-only statements and bounds.
//!
//! # How `events` is assembled
//!
//! `events` is a [`LakeTable`], a table provider that re-reads its sources at every scan, so a query
//! sees the segments sealed a moment ago and the events acknowledged a moment ago. It has two
//! sources:
//!
//! * [`QueryEngine::from_snapshots`]: the lake's own snapshot (`warden_lake::Lake::snapshot`: the
//!   files of its segment manifest and its tail, taken under one lock), which holds every durable
//!   event exactly once by construction. Use this when the lake is in the same process.
//! * [`QueryEngine::new`]: a lake directory and a tail callback (`Lake::tail_batches`), for a lake
//!   owned elsewhere. Then a scan
//!
//! 1. takes a snapshot of the tail first (the batches the lake's writer holds in memory);
//! 2. then lists `<lake>/events/**/*.parquet` (names starting with `.` or `_` are in-flight files and
//!    are skipped) and reads the largest `seq` of each segment from its footer statistics (cached
//!    per file by size and modification time);
//! 3. keeps only the tail rows with `seq` above the largest sealed `seq`.
//!
//! If a seal happens between 1 and 2, its rows are in both the snapshot and the new file, and step 3
//! drops them from the snapshot: nothing is counted twice. Nothing is lost either, provided the lake
//! makes a segment visible (rename) before it removes its rows from the tail, which is the order a
//! crash-safe seal uses anyway (`warden_lake` renames the segment, then drains its tail). A listing
//! cannot tell a file orphaned by a crash before the manifest recorded it from a sealed one; the
//! snapshot source can. A query that names `events` twice (a self-join) scans twice, each
//! scan consistent in itself.
//!
//! # `event_tools`
//!
//! Beside `events`, the table `event_tools (server, tool)` holds every distinct pair of non-NULL
//! `server` and `tool` in `events`. The governance reports expand grant patterns against it. For
//! [`Visibility::All`] it is read from the tool catalog in each sealed segment's footer (written by
//! `warden_lake` at seal time; a segment without one is scanned once for its two columns and the
//! result cached like its footer) plus the tail, instead of scanning every event again.
//!
//! # Visibility
//!
//! For [`Visibility::Team`] the session holds, under the name `events`, only a view: the lake table
//! filtered on the team column (and `event_tools` is computed from that view, not from catalogs
//! that describe every team's events). The unfiltered table is never registered under any name, the
//! information schema is off, URL tables are off, and only one read-only statement is accepted, so
//! no SQL text reaches other teams' rows.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use datafusion::arrow::array::{Array, AsArray, Int64Array, RecordBatch, StringViewArray};
use datafusion::arrow::compute::kernels::cmp::gt;
use datafusion::arrow::compute::{cast, filter_record_batch};
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
use datafusion::catalog::{MemTable, Session, TableProvider};
use datafusion::common::Column;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::logical_expr::{Expr, LogicalPlan, TableProviderFilterPushDown, TableType, lit};
use datafusion::parquet::arrow::ProjectionMask;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use datafusion::parquet::file::metadata::ParquetMetaDataReader;
use datafusion::parquet::file::statistics::Statistics;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::union::UnionExec;
use datafusion::prelude::{SQLOptions, SessionConfig, SessionContext};
use datafusion::sql::parser::{DFParserBuilder, Statement as DfStatement};
use datafusion::sql::sqlparser::ast::Statement as SqlStatement;
use datafusion::sql::sqlparser::dialect::GenericDialect;

use crate::error::QueryError;
use crate::output::QueryResult;
use crate::registry::Registry;

/// The column every event carries its owning team in.
pub const TEAM_COLUMN: &str = "team";
/// The column holding an event's position in the log (the Merkle leaf index).
pub const SEQ_COLUMN: &str = "seq";
/// The table name the SQL sees.
pub const EVENTS_TABLE: &str = "events";
/// The table of every distinct `(server, tool)` pair in `events` (see the module documentation).
pub const EVENT_TOOLS_TABLE: &str = "event_tools";
/// The footer key of a segment's tool catalog, as `warden_lake::catalog` writes it (a JSON array of
/// `[server, tool]` arrays listing every pair in the segment). Spelled out here: this crate reads
/// lakes, it does not link the lake's writer.
const TOOL_CATALOG_KEY: &str = "warden.lake.tools";

/// The events not sealed into Parquet yet, as Arrow batches with the lake's schema. Called once per
/// scan of `events`; it must return quickly (a copy of `Arc`s).
pub type TailSource = Arc<dyn Fn() -> Vec<RecordBatch> + Send + Sync>;

/// The sealed files and the unsealed tail at one instant, together every event exactly once (what
/// `warden_lake::Lake::snapshot` returns).
#[derive(Debug, Clone, Default)]
pub struct LakeSnapshot {
    /// Absolute paths of the sealed Parquet segments.
    pub files: Vec<PathBuf>,
    /// The unsealed events, schema as the lake's.
    pub tail: Vec<RecordBatch>,
}

/// Takes a [`LakeSnapshot`]; called once per scan of `events`. An `Err` is reported as a lake error.
pub type SnapshotSource = Arc<dyn Fn() -> Result<LakeSnapshot, String> + Send + Sync>;

/// Where `events` comes from.
enum Source {
    /// `root/events/**/*.parquet` listed per scan, plus the tail, deduplicated by `seq`.
    Directory { root: PathBuf, tail: TailSource },
    /// The lake's own consistent snapshot (its segment manifest and tail).
    Snapshot(SnapshotSource),
}

/// Whose events a query may see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Visibility {
    /// Every team's (platform-admins, auditors).
    All,
    /// One team's (its team-admins).
    Team(String),
}

/// Bounds on one query.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Most rows a result may have; a larger result is an error, never silently cut.
    pub max_rows: usize,
    /// Memory all running queries together may use for joins, sorts and aggregates.
    pub memory_bytes: usize,
    /// Longest a query may run, planning included.
    pub timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_rows: 100_000,
            memory_bytes: 1 << 30,
            timeout: Duration::from_secs(60),
        }
    }
}

/// SQL over one audit lake. Cheap to clone; queries may run concurrently.
#[derive(Clone)]
pub struct QueryEngine {
    inner: Arc<Inner>,
}

struct Inner {
    table: Arc<LakeTable>,
    runtime: Arc<RuntimeEnv>,
    limits: Limits,
}

impl fmt::Debug for QueryEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueryEngine")
            .field("lake", &self.inner.table)
            .field("limits", &self.inner.limits)
            .finish_non_exhaustive()
    }
}

impl QueryEngine {
    /// An engine over the lake at `lake_root` (segments under `lake_root/events/`), the tail, and the
    /// lake's Arrow schema (`warden_lake::arrow_schema()`), with default [`Limits`].
    pub fn new(lake_root: impl Into<PathBuf>, schema: SchemaRef, tail: TailSource) -> Result<Self, QueryError> {
        Self::with_limits(lake_root, schema, tail, Limits::default())
    }

    /// Like [`QueryEngine::new`] with explicit bounds.
    pub fn with_limits(
        lake_root: impl Into<PathBuf>,
        schema: SchemaRef,
        tail: TailSource,
        limits: Limits,
    ) -> Result<Self, QueryError> {
        let root = lake_root.into();
        if root.to_string_lossy().contains(['*', '?', '[']) {
            return Err(QueryError::Lake {
                path: root.display().to_string(),
                detail: "the lake path may not contain `*`, `?` or `[`; move the lake".to_owned(),
            });
        }
        Self::build(schema, Source::Directory { root, tail }, limits)
    }

    /// An engine over the lake's own snapshots (`Lake::snapshot`: the files of its segment manifest
    /// and its tail, taken at one instant) instead of a directory listing. Preferred when the lake
    /// runs in the same process: the manifest, not the directory, says which files are sealed.
    pub fn from_snapshots(schema: SchemaRef, source: SnapshotSource, limits: Limits) -> Result<Self, QueryError> {
        Self::build(schema, Source::Snapshot(source), limits)
    }

    fn build(schema: SchemaRef, source: Source, limits: Limits) -> Result<Self, QueryError> {
        for (name, want) in [(TEAM_COLUMN, None), (SEQ_COLUMN, Some(DataType::Int64))] {
            let field = schema
                .field_with_name(name)
                .map_err(|_| QueryError::Internal(format!("the lake schema has no `{name}` column")))?;
            if let Some(want) = want
                && field.data_type() != &want
            {
                return Err(QueryError::Internal(format!(
                    "the lake schema's `{name}` column is {}, expected {want}",
                    field.data_type()
                )));
            }
        }
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_limit(limits.memory_bytes, 1.0)
            .build_arc()
            .map_err(|e| QueryError::Internal(e.to_string()))?;
        let table = Arc::new(LakeTable {
            schema: view_schema(&schema),
            source,
            footers: Mutex::new(HashMap::new()),
        });
        Ok(Self {
            inner: Arc::new(Inner { table, runtime, limits }),
        })
    }

    /// The Arrow schema of `events`.
    pub fn schema(&self) -> SchemaRef {
        self.inner.table.schema.clone()
    }

    /// Runs one read-only SQL statement over `events` as seen by `scope`.
    pub async fn sql(&self, sql: &str, scope: &Visibility) -> Result<QueryResult, QueryError> {
        self.run(sql, scope, None).await
    }

    /// Like [`QueryEngine::sql`], with the registry's `agents` and `grants` tables beside `events`
    /// (see [`Registry`]); for a team, those too hold only the team's rows.
    pub async fn sql_with_registry(
        &self,
        sql: &str,
        scope: &Visibility,
        registry: &Registry,
    ) -> Result<QueryResult, QueryError> {
        self.run(sql, scope, Some(registry)).await
    }

    async fn run(&self, sql: &str, scope: &Visibility, registry: Option<&Registry>) -> Result<QueryResult, QueryError> {
        let limits = &self.inner.limits;
        let tables: &[&str] = if registry.is_some() {
            &[
                EVENTS_TABLE,
                EVENT_TOOLS_TABLE,
                crate::registry::AGENTS_TABLE,
                crate::registry::GRANTS_TABLE,
            ]
        } else {
            &[EVENTS_TABLE, EVENT_TOOLS_TABLE]
        };
        check_statement(sql)?;
        let work = async {
            let ctx = self.session(scope, registry, sql)?;
            let options = SQLOptions::new()
                .with_allow_ddl(false)
                .with_allow_dml(false)
                .with_allow_statements(false);
            let df = ctx.sql_with_options(sql, options).await?;
            let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
            // One row past the limit tells "too many" from "exactly the limit". EXPLAIN must stay the
            // root of its plan (and is small).
            let df = match df.logical_plan() {
                LogicalPlan::Explain(_) | LogicalPlan::Analyze(_) => df,
                _ => df.limit(0, Some(limits.max_rows.saturating_add(1)))?,
            };
            let batches = df.collect().await?;
            Ok::<_, DataFusionError>((schema, batches))
        };
        let (schema, batches) = match tokio::time::timeout(limits.timeout, work).await {
            Err(_) => {
                return Err(QueryError::Timeout {
                    seconds: limits.timeout.as_secs(),
                });
            }
            Ok(Err(e)) => {
                return Err(match QueryError::from_datafusion(e, tables) {
                    QueryError::Memory { detail, .. } => QueryError::Memory {
                        limit_mib: limits.memory_bytes >> 20,
                        detail,
                    },
                    other => other,
                });
            }
            Ok(Ok(v)) => v,
        };
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        if rows > limits.max_rows {
            return Err(QueryError::TooManyRows { limit: limits.max_rows });
        }
        Ok(QueryResult::new(schema, batches))
    }

    /// A fresh session holding only what `scope` may see.
    fn session(
        &self,
        scope: &Visibility,
        registry: Option<&Registry>,
        sql: &str,
    ) -> Result<SessionContext, DataFusionError> {
        let mut config = SessionConfig::new().with_information_schema(false);
        config.options_mut().sql_parser.dialect = datafusion::config::Dialect::Generic;
        // Joins here put the registry or a small aggregate on the build side and the events on the
        // probe side: one shared hash table beats hashing millions of event rows into partitions.
        config.options_mut().optimizer.repartition_joins = false;
        let state = SessionStateBuilder::new()
            .with_config(config)
            .with_runtime_env(self.inner.runtime.clone())
            .with_default_features()
            .build();
        let ctx = SessionContext::new_with_state(state);
        let table: Arc<dyn TableProvider> = self.inner.table.clone();
        match scope {
            Visibility::All => {
                ctx.register_table(EVENTS_TABLE, table)?;
                ctx.register_table(
                    EVENT_TOOLS_TABLE,
                    Arc::new(EventTools::new(Arc::clone(&self.inner.table))),
                )?;
            }
            Visibility::Team(team) => {
                let events = ctx
                    .read_table(table)?
                    .filter(Expr::Column(Column::new_unqualified(TEAM_COLUMN)).eq(lit(team.as_str())))?;
                // The team's own pairs, from its own rows: the catalogs describe every team's.
                let column = |name: &str| Expr::Column(Column::new_unqualified(name));
                let tools = events
                    .clone()
                    .filter(column("server").is_not_null().and(column("tool").is_not_null()))?
                    .select(vec![column("server"), column("tool")])?
                    .distinct()?
                    .into_view();
                ctx.register_table(EVENTS_TABLE, events.into_view())?;
                ctx.register_table(EVENT_TOOLS_TABLE, tools)?;
            }
        }
        if let Some(registry) = registry {
            // `in_granted_scope` indexes every grant (~10 ms for 46k): only for a statement that
            // names it.
            let function = sql.to_ascii_lowercase().contains(crate::IN_GRANTED_SCOPE);
            registry.register(&ctx, scope, function)?;
        }
        Ok(ctx)
    }
}

/// Refuses anything but exactly one read-only query before DataFusion plans it. DataFusion's
/// `SQLOptions` check the plan again; this gives the caller a precise message first.
fn check_statement(sql: &str) -> Result<(), QueryError> {
    let dialect = GenericDialect {};
    let mut statements = DFParserBuilder::new(sql)
        .with_dialect(&dialect)
        .with_recursion_limit(50)
        .build()
        .and_then(|mut parser| parser.parse_statements())
        .map_err(|e| QueryError::from_datafusion(e, &[]))?;
    match statements.len() {
        0 => {
            return Err(QueryError::Statements(
                "the query is empty; write one SELECT statement".to_owned(),
            ));
        }
        1 => {}
        n => {
            return Err(QueryError::Statements(format!(
                "only one SQL statement is allowed per query, found {n}; remove the extra `;`-separated statements"
            )));
        }
    }
    match statements.pop_front() {
        Some(statement) => check_read_only(&statement),
        None => Err(QueryError::Internal("statement vanished".to_owned())),
    }
}

fn check_read_only(statement: &DfStatement) -> Result<(), QueryError> {
    match statement {
        DfStatement::Statement(inner) => match inner.as_ref() {
            SqlStatement::Query(_) => Ok(()),
            SqlStatement::Explain { statement, .. } => match statement.as_ref() {
                SqlStatement::Query(_) => Ok(()),
                other => Err(QueryError::NotAllowed(first_words(&other.to_string()))),
            },
            other => Err(QueryError::NotAllowed(first_words(&other.to_string()))),
        },
        DfStatement::Explain(explain) => check_read_only(&explain.statement),
        other => Err(QueryError::NotAllowed(first_words(&other.to_string()))),
    }
}

/// The statement's leading keywords, enough to name it in an error.
fn first_words(text: &str) -> String {
    text.split_whitespace()
        .take_while(|w| w.chars().all(|c| c.is_ascii_alphabetic() || c == '_'))
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The lake's schema as SQL sees it: every string column as `Utf8View`.
///
/// The Parquet reader then hands out views into the pages' dictionaries instead of copying every
/// string of a scanned column, and DataFusion groups, hashes and joins views with its view-specific
/// code; on the governance queries over 10 M events that was the larger part of their time (see
/// BENCHMARKS.md). List items stay `Utf8`.
fn view_schema(schema: &Schema) -> SchemaRef {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::Utf8 | DataType::LargeUtf8 => f.as_ref().clone().with_data_type(DataType::Utf8View),
            _ => f.as_ref().clone(),
        })
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// `batch` (with the lake's schema) cast to `schema` (its [`view_schema`]).
fn to_view(batch: &RecordBatch, schema: &SchemaRef) -> DfResult<RecordBatch> {
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(column, field)| {
            if column.data_type() == field.data_type() {
                Ok(Arc::clone(column))
            } else {
                cast(column, field.data_type())
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RecordBatch::try_new(Arc::clone(schema), columns)?)
}

/// The table `events`: the lake's sealed segments ∪ its tail, re-read at every scan.
pub(crate) struct LakeTable {
    /// What SQL sees: the lake's schema with string columns as views ([`view_schema`]).
    schema: SchemaRef,
    source: Source,
    /// What each segment file's footer says, keyed by path, valid while size and mtime are unchanged.
    footers: Mutex<HashMap<PathBuf, SegmentInfo>>,
}

/// What a segment's footer says, read once per file version.
#[derive(Clone)]
struct SegmentInfo {
    len: u64,
    modified: Option<SystemTime>,
    /// The largest `seq` (footer statistics).
    max_seq: Option<i64>,
    /// Every `(server, tool)` pair in the segment: from its tool catalog, or from a scan of the file
    /// once one was needed; `None` until then.
    tools: Option<Arc<[(String, String)]>>,
}

impl fmt::Debug for LakeTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            Source::Directory { root, .. } => write!(f, "LakeTable({})", root.display()),
            Source::Snapshot(_) => f.write_str("LakeTable(snapshots)"),
        }
    }
}

impl LakeTable {
    /// The segment files now present and the largest `seq` among them.
    fn segments(&self, root: &Path) -> Result<(Vec<PathBuf>, Option<i64>), QueryError> {
        let dir = root.join(EVENTS_TABLE);
        let mut files = Vec::new();
        collect_parquet(&dir, &mut files, 0)?;
        files.sort();
        let mut max_seq: Option<i64> = None;
        for file in &files {
            let seq = self.segment_max_seq(file)?;
            max_seq = max_seq.max(seq);
        }
        Ok((files, max_seq))
    }

    fn segment_max_seq(&self, file: &Path) -> Result<Option<i64>, QueryError> {
        Ok(self.segment_info(file)?.max_seq)
    }

    /// The footer facts of `file`, from the cache while the file is unchanged.
    fn segment_info(&self, file: &Path) -> Result<SegmentInfo, QueryError> {
        let lake_err = |detail: String| QueryError::Lake {
            path: file.display().to_string(),
            detail,
        };
        let meta = std::fs::metadata(file).map_err(|e| lake_err(e.to_string()))?;
        let key = (meta.len(), meta.modified().ok());
        if let Ok(cache) = self.footers.lock()
            && let Some(info) = cache.get(file)
            && (info.len, info.modified) == key
        {
            return Ok(info.clone());
        }
        let handle = std::fs::File::open(file).map_err(|e| lake_err(e.to_string()))?;
        let metadata = ParquetMetaDataReader::new()
            .parse_and_finish(&handle)
            .map_err(|e| lake_err(format!("not a readable Parquet segment: {e}")))?;
        let column = metadata
            .file_metadata()
            .schema_descr()
            .columns()
            .iter()
            .position(|c| c.path().string() == SEQ_COLUMN)
            .ok_or_else(|| lake_err(format!("the segment has no `{SEQ_COLUMN}` column")))?;
        let mut max_seq = None;
        for row_group in metadata.row_groups() {
            if row_group.num_rows() == 0 {
                continue;
            }
            match row_group.column(column).statistics() {
                Some(Statistics::Int64(stats)) if stats.max_opt().is_some() => {
                    max_seq = max_seq.max(stats.max_opt().copied());
                }
                _ => {
                    return Err(lake_err(format!(
                        "the segment has no min/max statistics for `{SEQ_COLUMN}`; rewrite it with statistics enabled"
                    )));
                }
            }
        }
        let tools = metadata
            .file_metadata()
            .key_value_metadata()
            .and_then(|kv| kv.iter().find(|kv| kv.key == TOOL_CATALOG_KEY))
            .and_then(|kv| kv.value.as_deref())
            .and_then(|json| serde_json::from_str::<Vec<(String, String)>>(json).ok())
            .map(Arc::from);
        let info = SegmentInfo {
            len: key.0,
            modified: key.1,
            max_seq,
            tools,
        };
        if let Ok(mut cache) = self.footers.lock() {
            cache.insert(file.to_path_buf(), info.clone());
        }
        Ok(info)
    }

    /// Every `(server, tool)` pair in `file`: its footer's tool catalog, else read from its
    /// `server` and `tool` columns (once per file version).
    fn segment_tools(&self, file: &Path) -> Result<Arc<[(String, String)]>, QueryError> {
        let info = self.segment_info(file)?;
        if let Some(tools) = info.tools {
            return Ok(tools);
        }
        let tools: Arc<[(String, String)]> = scan_tool_pairs(file)?.into_iter().collect();
        if let Ok(mut cache) = self.footers.lock()
            && let Some(entry) = cache.get_mut(file)
            && (entry.len, entry.modified) == (info.len, info.modified)
        {
            entry.tools = Some(Arc::clone(&tools));
        }
        Ok(tools)
    }

    /// The sealed files and the unsealed tail (not yet in any of those files) a scan reads.
    fn sources(&self) -> DfResult<(Vec<PathBuf>, Vec<RecordBatch>)> {
        Ok(match &self.source {
            Source::Directory { root, tail } => {
                // Tail first, then the listing: see the module documentation.
                let snapshot = tail();
                let (files, sealed_max) = self
                    .segments(root)
                    .map_err(|e| DataFusionError::External(Box::new(e)))?;
                (files, self.tail_after(sealed_max, snapshot)?)
            }
            Source::Snapshot(source) => {
                let snapshot = source().map_err(|detail| {
                    DataFusionError::External(Box::new(QueryError::Lake {
                        path: "the audit lake".to_owned(),
                        detail,
                    }))
                })?;
                let tail = snapshot
                    .tail
                    .into_iter()
                    .filter(|b| b.num_rows() > 0)
                    .collect::<Vec<_>>();
                (snapshot.files, tail)
            }
        })
    }

    /// Every `(server, tool)` pair in the lake, sorted: the sealed segments' catalogs and the tail.
    fn tool_pairs(&self) -> DfResult<BTreeSet<(String, String)>> {
        let (files, tail) = self.sources()?;
        let mut pairs = BTreeSet::new();
        for file in &files {
            let tools = self
                .segment_tools(file)
                .map_err(|e| DataFusionError::External(Box::new(e)))?;
            pairs.extend(tools.iter().cloned());
        }
        for batch in &tail {
            add_tool_pairs(batch, &mut pairs)?;
        }
        Ok(pairs)
    }

    /// The tail rows not yet in any listed segment.
    fn tail_after(&self, sealed_max: Option<i64>, snapshot: Vec<RecordBatch>) -> DfResult<Vec<RecordBatch>> {
        let mut out = Vec::with_capacity(snapshot.len());
        for batch in snapshot {
            if batch.num_rows() == 0 {
                continue;
            }
            let Some(max) = sealed_max else {
                out.push(batch);
                continue;
            };
            let seq = batch
                .column_by_name(SEQ_COLUMN)
                .and_then(|c| c.as_primitive_opt::<Int64Type>())
                .ok_or_else(|| DataFusionError::Internal(format!("a tail batch has no Int64 `{SEQ_COLUMN}` column")))?;
            let keep = gt(seq, &Int64Array::new_scalar(max))?;
            let kept = filter_record_batch(&batch, &keep)?;
            if kept.num_rows() > 0 {
                out.push(kept);
            }
        }
        Ok(out)
    }
}

/// Collects `*.parquet` under `dir` (the day partitions), skipping in-flight names.
fn collect_parquet(dir: &Path, out: &mut Vec<PathBuf>, depth: usize) -> Result<(), QueryError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && depth == 0 => return Ok(()),
        Err(e) => {
            return Err(QueryError::Lake {
                path: dir.display().to_string(),
                detail: e.to_string(),
            });
        }
    };
    for entry in entries {
        let entry = entry.map_err(|e| QueryError::Lake {
            path: dir.display().to_string(),
            detail: e.to_string(),
        })?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || name.starts_with('_') {
            continue;
        }
        let path = entry.path();
        let file_type = entry.file_type().map_err(|e| QueryError::Lake {
            path: path.display().to_string(),
            detail: e.to_string(),
        })?;
        if file_type.is_dir() && depth < 4 {
            collect_parquet(&path, out, depth + 1)?;
        } else if file_type.is_file() && name.ends_with(".parquet") {
            if name.contains(['*', '?', '[']) {
                return Err(QueryError::Lake {
                    path: path.display().to_string(),
                    detail: "a segment name may not contain `*`, `?` or `[`".to_owned(),
                });
            }
            out.push(path);
        }
    }
    Ok(())
}

/// Adds the `(server, tool)` pairs of `batch` (either column any string type; rows with a NULL in
/// either name no tool) to `pairs`. A batch without both columns adds nothing.
fn add_tool_pairs(batch: &RecordBatch, pairs: &mut BTreeSet<(String, String)>) -> DfResult<()> {
    let (Some(servers), Some(tools)) = (batch.column_by_name("server"), batch.column_by_name("tool")) else {
        return Ok(());
    };
    let (servers, tools) = (cast(servers, &DataType::Utf8)?, cast(tools, &DataType::Utf8)?);
    let (servers, tools) = (servers.as_string::<i32>(), tools.as_string::<i32>());
    let mut seen: HashSet<(&str, &str)> = HashSet::new();
    for row in 0..batch.num_rows() {
        if servers.is_valid(row) && tools.is_valid(row) {
            seen.insert((servers.value(row), tools.value(row)));
        }
    }
    pairs.extend(
        seen.into_iter()
            .map(|(server, tool)| (server.to_owned(), tool.to_owned())),
    );
    Ok(())
}

/// The `(server, tool)` pairs of a segment without a tool catalog, read from its two columns.
fn scan_tool_pairs(file: &Path) -> Result<BTreeSet<(String, String)>, QueryError> {
    let lake_err = |detail: String| QueryError::Lake {
        path: file.display().to_string(),
        detail,
    };
    let handle = std::fs::File::open(file).map_err(|e| lake_err(e.to_string()))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(handle)
        .map_err(|e| lake_err(format!("not a readable Parquet segment: {e}")))?;
    let mut pairs = BTreeSet::new();
    let wanted = ["server", "tool"];
    let descr = builder.parquet_schema();
    let leaves: Vec<usize> = descr
        .columns()
        .iter()
        .enumerate()
        .filter(|(_, c)| wanted.contains(&c.path().string().as_str()))
        .map(|(i, _)| i)
        .collect();
    if leaves.len() < wanted.len() {
        return Ok(pairs);
    }
    let mask = ProjectionMask::leaves(descr, leaves);
    let reader = builder
        .with_projection(mask)
        .build()
        .map_err(|e| lake_err(format!("reading the `server` and `tool` columns: {e}")))?;
    for batch in reader {
        let batch = batch.map_err(|e| lake_err(format!("reading the `server` and `tool` columns: {e}")))?;
        add_tool_pairs(&batch, &mut pairs).map_err(|e| lake_err(e.to_string()))?;
    }
    Ok(pairs)
}

/// The table `event_tools` (see the module documentation): every `(server, tool)` pair the lake's
/// events name, from the sealed segments' tool catalogs and the tail, computed at each scan.
struct EventTools {
    lake: Arc<LakeTable>,
    schema: SchemaRef,
}

impl EventTools {
    fn new(lake: Arc<LakeTable>) -> EventTools {
        let schema = Arc::new(Schema::new(vec![
            Field::new("server", DataType::Utf8View, false),
            Field::new("tool", DataType::Utf8View, false),
        ]));
        EventTools { lake, schema }
    }
}

impl fmt::Debug for EventTools {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EventTools({:?})", self.lake)
    }
}

#[async_trait]
impl TableProvider for EventTools {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let pairs = self.lake.tool_pairs()?;
        let servers: StringViewArray = pairs.iter().map(|(s, _)| Some(s.as_str())).collect();
        let tools: StringViewArray = pairs.iter().map(|(_, t)| Some(t.as_str())).collect();
        let batch = RecordBatch::try_new(self.schema.clone(), vec![Arc::new(servers), Arc::new(tools)])?;
        MemTable::try_new(self.schema.clone(), vec![vec![batch]])?
            .scan(state, projection, filters, limit)
            .await
    }
}

#[async_trait]
impl TableProvider for LakeTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> DfResult<Vec<TableProviderFilterPushDown>> {
        // Used to prune row groups and pages; DataFusion still applies every filter above the scan.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let (files, tail) = self.sources()?;

        let mut inputs: Vec<Arc<dyn ExecutionPlan>> = Vec::new();
        if !files.is_empty() {
            let urls = files
                .iter()
                .map(|f| ListingTableUrl::parse(f.to_string_lossy()))
                .collect::<DfResult<Vec<_>>>()?;
            let options = ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
            let config = ListingTableConfig::new_with_multi_paths(urls)
                .with_listing_options(options)
                .with_schema(self.schema.clone());
            let listing = ListingTable::try_new(config)?;
            inputs.push(listing.scan(state, projection, filters, limit).await?);
        }
        if !tail.is_empty() {
            let tail = tail
                .iter()
                .map(|batch| to_view(batch, &self.schema))
                .collect::<DfResult<Vec<_>>>()?;
            let mem = MemTable::try_new(self.schema.clone(), vec![tail])?;
            inputs.push(mem.scan(state, projection, filters, limit).await?);
        }
        if inputs.is_empty() {
            let projected = match projection {
                Some(p) => Arc::new(self.schema.project(p)?),
                None => self.schema.clone(),
            };
            return Ok(Arc::new(EmptyExec::new(projected)));
        }
        UnionExec::try_new(inputs)
    }
}
