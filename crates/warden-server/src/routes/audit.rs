//! `/v1/audit/...` and `/v1/govern/...`: SQL over the audit lake, the named governance reports, and
//! the ingest of OCSF events from elsewhere.
//!
//! Who sees what: platform-admins and auditors see every team's events; a team-admin sees only its
//! own team's (the query engine registers nothing else under `events`); gateway tokens see nothing.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use warden_core::{Operation, Person, Role};
use warden_lake::AuditEvent;
use warden_query::govern::Report;
use warden_query::{Format, GrantedTool, QueryError, QueryResult, RegisteredAgent, Registry, Visibility};
use warden_store::AgentFilter;

use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiJson, Caller};
use crate::state::AppState;

/// One SQL statement over the table `events`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct QueryRequest {
    /// One read-only SQL statement; the table is `events`.
    sql: String,
    /// `table` (default), `json` or `csv`.
    format: Option<String>,
}

/// Which events `person` may query.
fn visibility(person: &Person) -> Result<Visibility, ApiError> {
    match (person.role, &person.team) {
        (Role::PlatformAdmin | Role::Auditor, _) => Ok(Visibility::All),
        (Role::TeamAdmin, Some(team)) => Ok(Visibility::Team(team.to_string())),
        _ => Err(ApiError::forbidden(
            "querying the audit lake needs the platform-admin, auditor or team-admin role",
            "platform-admin, auditor or team-admin",
        )),
    }
}

fn format_of(format: Option<&str>) -> Result<Format, ApiError> {
    format.unwrap_or("table").parse().map_err(ApiError::bad_request)
}

fn query_error(err: QueryError) -> ApiError {
    if err.is_user_error() {
        ApiError::bad_request(err.to_string())
    } else {
        ApiError::internal(err)
    }
}

/// The answer in the asked format, with its content type.
fn rendered(result: &QueryResult, format: Format) -> Response {
    let content_type = match format {
        Format::Table => "text/plain; charset=utf-8",
        Format::Json => "application/json",
        Format::Csv => "text/csv; charset=utf-8",
    };
    ([(header::CONTENT_TYPE, content_type)], result.render(format)).into_response()
}

/// Runs one read-only SQL statement over `events` (platform-admin and auditor: every team;
/// team-admin: its own team's events only). Includes events not sealed into Parquet yet.
#[utoipa::path(post, path = "/v1/audit/query", tag = "audit", request_body = QueryRequest,
    security(("access_token" = [])),
    responses((status = 200, description = "the result as a text table, JSON or CSV"),
        (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(crate) async fn query(
    State(state): State<AppState>,
    Caller(person): Caller,
    ApiJson(request): ApiJson<QueryRequest>,
) -> Result<Response, ApiError> {
    let scope = visibility(&person)?;
    let format = format_of(request.format.as_deref())?;
    state.forwarder.catch_up().await.map_err(ApiError::internal)?;
    let result = state.query.sql(&request.sql, &scope).await.map_err(query_error)?;
    Ok(rendered(&result, format))
}

/// How to render a governance report.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReportQuery {
    /// `table` (default), `json` or `csv`.
    format: Option<String>,
}

/// Runs the governance reports behind `warden govern <name>`: `sensitive`, `drift`, `shadow`,
/// `spend`, `golden-path` or `denials`. JSON answers hold one entry per report.
#[utoipa::path(get, path = "/v1/govern/{name}", tag = "audit", params(("name" = String, Path), ReportQuery),
    security(("access_token" = [])),
    responses((status = 200, description = "each report's result"), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub(crate) async fn govern(
    State(state): State<AppState>,
    Caller(person): Caller,
    Path(name): Path<String>,
    crate::extract::ApiQuery(options): crate::extract::ApiQuery<ReportQuery>,
) -> Result<Response, ApiError> {
    let scope = visibility(&person)?;
    let format = format_of(options.format.as_deref())?;
    let reports = Report::for_command(&name).ok_or_else(|| {
        ApiError::not_found(format!(
            "no governance report `{name}`; use sensitive, drift, shadow, spend, golden-path or denials"
        ))
    })?;
    state.forwarder.catch_up().await.map_err(ApiError::internal)?;
    let registry = registry(&state).await?;
    let mut results = Vec::with_capacity(reports.len());
    for report in reports {
        let result = warden_query::govern::run(&state.query, *report, &scope, &registry)
            .await
            .map_err(query_error)?;
        results.push((*report, result));
    }
    Ok(match format {
        Format::Json => {
            let body: Vec<serde_json::Value> = results
                .iter()
                .map(|(report, result)| {
                    serde_json::json!({"report": report.name(), "title": report.title(), "rows": result.to_json()})
                })
                .collect();
            Json(body).into_response()
        }
        other => {
            let mut text = String::new();
            for (report, result) in &results {
                if other == Format::Table {
                    text.push_str(&format!("{}\n", report.title()));
                }
                text.push_str(&result.render(other));
                if !text.ends_with('\n') {
                    text.push('\n');
                }
            }
            rendered_text(text, other)
        }
    })
}

fn rendered_text(text: String, format: Format) -> Response {
    let content_type = if format == Format::Csv {
        "text/csv; charset=utf-8"
    } else {
        "text/plain; charset=utf-8"
    };
    ([(header::CONTENT_TYPE, content_type)], text).into_response()
}

/// The registry as the governance reports read it.
async fn registry(state: &AppState) -> Result<Registry, ApiError> {
    let agents = state.store.list_agents(AgentFilter::default()).await?;
    let scopes: HashMap<String, (bool, Vec<String>)> = state
        .store
        .list_scopes()
        .await?
        .into_iter()
        .map(|s| {
            let tools = s.tools.iter().map(ToString::to_string).collect();
            (s.name.to_string(), (s.sensitive, tools))
        })
        .collect();
    let mut registry = Registry::default();
    for agent in agents {
        let team = agent.team.to_string();
        let agent_id = agent.id.to_string();
        for scope in &agent.scopes {
            if let Some((sensitive, tools)) = scopes.get(scope.as_str()) {
                for pattern in tools {
                    registry.grants.push(GrantedTool {
                        agent_id: agent_id.clone(),
                        team: team.clone(),
                        scope: scope.to_string(),
                        sensitive: *sensitive,
                        pattern: pattern.clone(),
                    });
                }
            }
        }
        registry.agents.push(RegisteredAgent {
            agent_id,
            team,
            purpose: agent.purpose,
            origin: agent.origin.as_str().to_owned(),
            status: agent.status.as_str().to_owned(),
            scopes: agent.scopes.iter().map(ToString::to_string).collect(),
        });
    }
    Ok(registry)
}

/// OCSF events shipped from elsewhere (standalone gateways, hooks, other collectors).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuditBatch {
    /// Events as `warden audit query` shows them, each with a unique `metadata.uid`.
    #[schema(value_type = Vec<Object>)]
    events: Vec<serde_json::Value>,
}

/// What was stored.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Appended {
    /// Events stored now.
    accepted: usize,
    /// Events already stored earlier (resent).
    duplicates: usize,
    /// Each event's position in the log, in order.
    seqs: Vec<u64>,
}

/// Id prefixes Warden itself uses; shipped events may not take them.
const RESERVED_ID_PREFIXES: &[&str] = &["change-", "gateway-", "hook-", "otlp-"];

/// Most events in one shipped batch.
const MAX_BATCH: usize = 10_000;

/// Appends OCSF events (platform-admin or gateway tokens); answers once they are durable.
/// Idempotent by `metadata.uid`: a resent event is acknowledged and stored once.
#[utoipa::path(post, path = "/v1/audit/events", tag = "audit", request_body = AuditBatch,
    security(("access_token" = [])),
    responses((status = 200, body = Appended), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(crate) async fn append(
    State(state): State<AppState>,
    Caller(person): Caller,
    ApiJson(batch): ApiJson<AuditBatch>,
) -> Result<Json<Appended>, ApiError> {
    person.authorize(Operation::GatewaySync)?;
    if batch.events.len() > MAX_BATCH {
        return Err(ApiError::bad_request(format!(
            "a batch may hold at most {MAX_BATCH} events"
        )));
    }
    let mut events = Vec::with_capacity(batch.events.len());
    for (idx, value) in batch.events.into_iter().enumerate() {
        let mut event: AuditEvent = serde_json::from_value(value)
            .map_err(|e| ApiError::bad_request(format!("event {idx}: not an audit event: {e}")))?;
        event
            .validate()
            .map_err(|e| ApiError::bad_request(format!("event {idx}: {e}")))?;
        if let Some(prefix) = RESERVED_ID_PREFIXES.iter().find(|p| event.id().starts_with(**p)) {
            return Err(ApiError::bad_request(format!(
                "event {idx}: ids beginning `{prefix}` are Warden's own; choose another `metadata.uid`"
            )));
        }
        // The log assigns positions and logged times; a shipper's are not kept.
        event.metadata.sequence = None;
        event.metadata.logged_time = None;
        events.push(event);
    }
    let receipts = state.lake.append(events).await.map_err(ApiError::internal)?;
    let accepted = receipts.iter().filter(|r| r.new).count();
    Ok(Json(Appended {
        accepted,
        duplicates: receipts.len() - accepted,
        seqs: receipts.iter().map(|r| r.seq).collect(),
    }))
}

/// Only platform-admins and auditors check or export the whole lake.
fn auditor(person: &Person, what: &str) -> Result<(), ApiError> {
    match person.role {
        Role::PlatformAdmin | Role::Auditor => Ok(()),
        _ => Err(ApiError::forbidden(
            format!("{what} needs the platform-admin or auditor role"),
            "platform-admin or auditor",
        )),
    }
}

/// One thing `verify` found wrong.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct VerifyProblem {
    /// `altered`, `removed`, `inserted`, `reordered`, `bad signature` or `unreadable`.
    kind: String,
    /// The file (relative to the lake directory) where it was found.
    file: Option<String>,
    /// The event's position in the log.
    seq: Option<u64>,
    /// The column that disagrees with the signed canonical event.
    column: Option<String>,
    /// What exactly, in words.
    detail: String,
    /// The whole finding on one line.
    text: String,
}

/// What `verify` checked and found.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct VerifyReport {
    /// True when nothing was altered, removed, reordered or inserted.
    ok: bool,
    /// Events checked (sealed and in the WAL).
    events: u64,
    /// Sealed Parquet files checked row by row.
    sealed_files: usize,
    /// Events checked in the write-ahead log (not sealed yet).
    wal_events: u64,
    /// Signed checkpoints whose signature and root were checked.
    checkpoints: usize,
    /// The recomputed tree size and root (hex).
    tree_size: u64,
    root: String,
    /// The log's C2SP verifier key.
    verifier_key: String,
    problems: Vec<VerifyProblem>,
    /// Not tampering (e.g. a torn, unacknowledged WAL tail).
    notes: Vec<String>,
    /// The report as `warden audit verify` prints it.
    text: String,
}

impl VerifyReport {
    pub(crate) fn of(report: &warden_lake::Report, verifier_key: String) -> VerifyReport {
        VerifyReport {
            ok: report.is_ok(),
            events: report.events,
            sealed_files: report.sealed_files,
            wal_events: report.wal_events,
            checkpoints: report.checkpoints,
            tree_size: report.tree_size,
            root: warden_lake::merkle::to_hex(&report.root),
            verifier_key,
            problems: report
                .problems
                .iter()
                .map(|p| VerifyProblem {
                    kind: p.kind.to_string(),
                    file: p.file.clone(),
                    seq: p.seq,
                    column: p.column.clone(),
                    detail: p.detail.clone(),
                    text: p.to_string(),
                })
                .collect(),
            notes: report.notes.clone(),
            text: report.to_string(),
        }
    }
}

/// Recomputes the audit lake's integrity (platform-admin or auditor): every sealed row against its
/// signed canonical bytes, every file against the manifest, the seq ranges, the WAL tail and the
/// Merkle tree against every signed checkpoint, up to the events durable when it starts. Events keep
/// arriving meanwhile; seals wait. Names each event or segment altered, removed, reordered or
/// inserted. Answers 200 either way: `ok` says which.
#[utoipa::path(post, path = "/v1/audit/verify", tag = "audit", security(("access_token" = [])),
    responses((status = 200, body = VerifyReport), (status = 403, body = ErrorBody)))]
pub(crate) async fn verify(
    State(state): State<AppState>,
    Caller(person): Caller,
) -> Result<Json<VerifyReport>, ApiError> {
    auditor(&person, "verifying the audit lake")?;
    state.forwarder.catch_up().await.map_err(ApiError::internal)?;
    let lake = state.lake.clone();
    let report = tokio::task::spawn_blocking(move || lake.verify())
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    Ok(Json(VerifyReport::of(&report, state.lake.verifier_key())))
}

/// `GET` form of [`verify`], for tools that only get.
#[utoipa::path(get, path = "/v1/audit/verify", tag = "audit", security(("access_token" = [])),
    responses((status = 200, body = VerifyReport), (status = 403, body = ErrorBody)))]
pub(crate) async fn verify_get(state: State<AppState>, caller: Caller) -> Result<Json<VerifyReport>, ApiError> {
    verify(state, caller).await
}

/// What to put in an evidence pack.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ExportRequest {
    /// Window start (inclusive), unix milliseconds of the time the lake logged the event.
    from_ms: i64,
    /// Window end (exclusive), unix milliseconds.
    to_ms: i64,
    /// Only this team's events in full (the others' as leaf hashes, so the proofs still hold).
    /// Team-admins may only export their own team, and do so by default.
    team: Option<String>,
    /// The tree size of a checkpoint the auditor pinned earlier: the pack proves consistency with it.
    since_size: Option<u64>,
}

/// The guardrails, scopes, grants and agents in force, as an evidence pack carries them.
async fn control_plane(state: &AppState, team: Option<&str>) -> Result<serde_json::Value, ApiError> {
    let in_team = |t: &str| team.is_none_or(|team| team == t);
    let agents: Vec<_> = state
        .store
        .list_agents(AgentFilter::default())
        .await?
        .into_iter()
        .filter(|a| in_team(a.team.as_str()))
        .collect();
    let grants: Vec<_> = state
        .store
        .list_grants(None)
        .await?
        .into_iter()
        .filter(|g| in_team(g.agent.team().as_str()))
        .collect();
    let guardrails = state.store.list_guardrails().await?;
    let scopes = state.store.list_scopes().await?;
    let servers = state.store.list_mcp_servers().await?;
    Ok(serde_json::json!({
        "taken_at": time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
        "trust_domain": state.trust_domain,
        "team": team,
        "guardrails": guardrails,
        "scopes": scopes,
        "grants": grants,
        "agents": agents,
        "mcp_servers": servers,
    }))
}

/// Builds an evidence pack over `[from_ms, to_ms)` and streams it (`application/octet-stream`, with
/// `Content-Length`; `X-Warden-Pack-Events`, `-First-Seq`, `-End-Seq` and `-Tree-Size` describe it).
/// The pack holds the events (canonical and Parquet), the manifest of hashes, the signed checkpoint,
/// the inclusion and consistency proofs, the control-plane snapshot and the log's public key;
/// `warden audit verify-pack` checks it offline. Platform-admins and auditors export any team or
/// all; team-admins their own team only.
#[utoipa::path(post, path = "/v1/audit/export", tag = "audit", request_body = ExportRequest,
    security(("access_token" = [])),
    responses((status = 200, description = "the evidence pack", content_type = "application/octet-stream"),
        (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(crate) async fn export(
    State(state): State<AppState>,
    Caller(person): Caller,
    ApiJson(request): ApiJson<ExportRequest>,
) -> Result<Response, ApiError> {
    let team = match (person.role, &person.team, request.team) {
        (Role::PlatformAdmin | Role::Auditor, _, team) => team,
        (Role::TeamAdmin, Some(own), None) => Some(own.to_string()),
        (Role::TeamAdmin, Some(own), Some(team)) if team == own.as_str() => Some(team),
        (Role::TeamAdmin, Some(own), Some(team)) => {
            return Err(ApiError::forbidden(
                format!("a team-admin of `{own}` cannot export team `{team}`'s events"),
                "platform-admin or auditor",
            ));
        }
        _ => {
            return Err(ApiError::forbidden(
                "exporting an evidence pack needs the platform-admin, auditor or team-admin role",
                "platform-admin, auditor or team-admin",
            ));
        }
    };
    if request.from_ms >= request.to_ms {
        return Err(ApiError::bad_request(format!(
            "empty window: from ({} ms) must be before to ({} ms)",
            request.from_ms, request.to_ms
        )));
    }
    state.forwarder.catch_up().await.map_err(ApiError::internal)?;
    let pack = warden_lake::PackRequest {
        from_ms: request.from_ms,
        to_ms: request.to_ms,
        team: team.clone(),
        control_plane: control_plane(&state, team.as_deref()).await?,
        since_size: request.since_size,
    };
    let exports = state.lake.dir().join("exports");
    let out = exports.join(format!("pack-{}.tar", AuditEvent::new_id()));
    let lake = state.lake.clone();
    let built = tokio::task::spawn_blocking(move || {
        create_private_dir(&exports)?;
        let summary = lake.export_pack(&pack, &out, &mut |_| {}).map_err(|e| e.to_string())?;
        // The open file is what is streamed; nothing is left behind in the lake directory.
        let file = std::fs::File::open(&summary.path).map_err(|e| format!("cannot open the pack: {e}"));
        let _ = std::fs::remove_file(&summary.path);
        file.map(|file| (summary, file))
    })
    .await
    .map_err(ApiError::internal)?;
    let (summary, file) = built.map_err(ApiError::internal)?;
    let headers = [
        (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
        (header::CONTENT_LENGTH, summary.bytes.to_string()),
    ];
    let described = [
        ("x-warden-pack-events", summary.events.to_string()),
        ("x-warden-pack-first-seq", summary.first_seq.to_string()),
        ("x-warden-pack-end-seq", summary.end_seq.to_string()),
        ("x-warden-pack-tree-size", summary.tree_size.to_string()),
    ];
    let mut response = (headers, axum::body::Body::from_stream(stream_file(file))).into_response();
    for (name, value) in described {
        if let Ok(value) = header::HeaderValue::from_str(&value) {
            response.headers_mut().insert(name, value);
        }
    }
    Ok(response)
}

fn create_private_dir(dir: &std::path::Path) -> Result<(), String> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("cannot create `{}`: {e}", dir.display()))
}

/// The file's bytes, read off the runtime in 256 KiB chunks.
fn stream_file(file: std::fs::File) -> FileStream {
    use std::io::Read;
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::task::spawn_blocking(move || {
        let mut file = file;
        loop {
            let mut chunk = vec![0u8; 256 * 1024];
            match file.read(&mut chunk) {
                Ok(0) => return,
                Ok(n) => {
                    chunk.truncate(n);
                    if tx.blocking_send(Ok(axum::body::Bytes::from(chunk))).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            }
        }
    });
    FileStream { rx }
}

/// A stream of file chunks for a response body.
struct FileStream {
    rx: tokio::sync::mpsc::Receiver<std::io::Result<axum::body::Bytes>>,
}

impl futures_core::Stream for FileStream {
    type Item = std::io::Result<axum::body::Bytes>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}
