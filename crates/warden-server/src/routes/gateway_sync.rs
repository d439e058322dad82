//! `/v1/gateway/*`: what a standalone gateway (`warden gateway --control-plane URL`) pulls and ships.
//!
//! The snapshot is everything a gateway needs to decide locally: the registry's agents, scopes and MCP
//! servers (with their upstream credentials, which is why only `gateway` and `platform-admin` tokens may
//! read it), the guardrails, and the token parameters. Keys come from the JWKS and revocations from the
//! revocation feed. Events come back in batches, each stored once by its id.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use warden_core::{Agent, McpServer, Operation, Scope};
use warden_gateway::GatewayEvent;
use warden_store::AgentFilter;

use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiJson, Caller};
use crate::state::AppState;

/// A registered MCP server with the credentials the gateway presents upstream.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct SnapshotServer {
    /// The server.
    server: McpServer,
    /// `{"headers": {…}, "env": {…}}`, or null.
    credentials: serde_json::Value,
}

/// One guardrail's Cedar text.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct SnapshotGuardrail {
    /// Its `@id`.
    id: String,
    /// The Cedar text.
    text: String,
}

/// Everything a standalone gateway decides from.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Snapshot {
    /// The SPIFFE trust domain.
    trust_domain: String,
    /// `iss` of agent tokens.
    issuer: String,
    /// `aud` of agent tokens.
    audience: String,
    /// The org's UTC offset for time facts, e.g. `+00:00`.
    time_zone: String,
    /// The revocation feed position this snapshot already reflects.
    revocation_seq: u64,
    /// Every agent.
    agents: Vec<Agent>,
    /// Every scope.
    scopes: Vec<Scope>,
    /// Every MCP server, with upstream credentials.
    servers: Vec<SnapshotServer>,
    /// Every guardrail.
    guardrails: Vec<SnapshotGuardrail>,
}

/// The policy snapshot for a standalone gateway (gateway or platform-admin tokens only: it holds
/// upstream credentials).
#[utoipa::path(get, path = "/v1/gateway/snapshot", tag = "gateway", security(("access_token" = [])),
    responses((status = 200, body = Snapshot), (status = 403, body = ErrorBody)))]
pub(crate) async fn snapshot(
    State(state): State<AppState>,
    Caller(person): Caller,
) -> Result<Json<Snapshot>, ApiError> {
    person.authorize(Operation::GatewaySync)?;
    let revocation_seq = state.credentials.revocation_seq();
    let agents = state.store.list_agents(AgentFilter::default()).await?;
    let scopes = state.store.list_scopes().await?;
    let servers = state
        .store
        .mcp_servers_with_credentials()
        .await?
        .into_iter()
        .map(|(server, credentials)| SnapshotServer {
            server,
            credentials: credentials.unwrap_or_default(),
        })
        .collect();
    let guardrails = state
        .store
        .list_guardrails()
        .await?
        .into_iter()
        .map(|g| SnapshotGuardrail { id: g.id, text: g.text })
        .collect();
    Ok(Json(Snapshot {
        trust_domain: state.trust_domain.clone(),
        issuer: state.credentials.issuer.clone(),
        audience: state.credentials.audience.clone(),
        time_zone: state.time_offset.to_string(),
        revocation_seq,
        agents,
        scopes,
        servers,
        guardrails,
    }))
}

/// A batch of events from a standalone gateway.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct EventBatch {
    /// The events, each with a gateway-assigned unique `id`.
    events: Vec<ShippedEvent>,
}

/// One shipped event.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ShippedEvent {
    /// Unique per event; a resent event is acknowledged and not stored again.
    id: String,
    /// The gateway event (`kind`, `agent`, …) as the gateway recorded it.
    event: serde_json::Value,
}

/// What was stored.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Ingested {
    /// Events stored now.
    accepted: usize,
    /// Events already stored earlier (resent).
    duplicates: usize,
}

/// Ship gateway events (gateway or platform-admin tokens). Idempotent by event id.
#[utoipa::path(post, path = "/v1/gateway/events", tag = "gateway", request_body = EventBatch,
    security(("access_token" = [])),
    responses((status = 200, body = Ingested), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(crate) async fn ingest(
    State(state): State<AppState>,
    Caller(person): Caller,
    ApiJson(batch): ApiJson<EventBatch>,
) -> Result<Json<Ingested>, ApiError> {
    person.authorize(Operation::GatewaySync)?;
    if batch.events.len() > 10_000 {
        return Err(ApiError::bad_request("a batch may hold at most 10000 events"));
    }
    let mut events = Vec::with_capacity(batch.events.len());
    for (idx, shipped) in batch.events.into_iter().enumerate() {
        if shipped.id.is_empty() || shipped.id.len() > 128 {
            return Err(ApiError::bad_request(format!(
                "event {idx}: `id` must have 1 to 128 characters"
            )));
        }
        let event: GatewayEvent = serde_json::from_value(shipped.event)
            .map_err(|e| ApiError::bad_request(format!("event {idx}: not a gateway event: {e}")))?;
        // Namespaced, so a gateway's ids can never collide with the lake's other events.
        let id = format!("gateway-{}", shipped.id);
        events.push(crate::audit::gateway_event(id, &event, Some(person.name.as_str())));
    }
    let receipts = state.lake.append(events).await.map_err(ApiError::internal)?;
    let accepted = receipts.iter().filter(|r| r.new).count();
    let duplicates = receipts.len() - accepted;
    Ok(Json(Ingested { accepted, duplicates }))
}
