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
