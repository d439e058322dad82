//! `/v1/mcp-servers`: the upstream tool servers the gateway fronts. Upstream credentials are accepted
//! here and stored server-side; no response ever contains them.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use warden_core::{McpServer, Name, Operation, Transport};
use warden_store::{Actor, NewMcpServer};

use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiJson, Caller};
use crate::state::AppState;

/// Credentials the gateway injects when it calls the upstream.
#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpstreamCredentials {
    /// HTTP headers for an HTTP upstream, e.g. `Authorization`.
    #[serde(default)]
    headers: BTreeMap<String, String>,
    /// Environment variables for a stdio upstream.
    #[serde(default)]
    env: BTreeMap<String, String>,
}

/// An MCP server to register.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AddMcpServer {
    /// Its name; tools are addressed as `name/tool`.
    name: Name,
    /// How to reach it.
    transport: Transport,
    /// The owning team.
    #[serde(default)]
    owner_team: Option<Name>,
    /// Whether its tools are sensitive.
    #[serde(default)]
    sensitive: bool,
    /// Upstream credentials; stored, never returned.
    #[serde(default)]
    credentials: Option<UpstreamCredentials>,
}

/// Register an MCP server (platform-admin).
#[utoipa::path(post, path = "/v1/mcp-servers", tag = "mcp-servers", request_body = AddMcpServer,
    security(("access_token" = [])),
    responses((status = 201, body = McpServer), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
               (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(crate) async fn add_mcp_server(
    State(state): State<AppState>,
    Caller(person): Caller,
    ApiJson(body): ApiJson<AddMcpServer>,
) -> Result<(StatusCode, Json<McpServer>), ApiError> {
    person.authorize(Operation::ManageMcpServers)?;
    if body.name.as_str() == warden_core::claude_code::BUILTIN_SERVER {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            "the name `claude-code` is reserved: it names Claude Code's built-in tools in scopes and policy",
        ));
    }
    body.transport
        .validate()
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    if let Some(credentials) = &body.credentials {
        match (
            &body.transport,
            credentials.headers.is_empty(),
            credentials.env.is_empty(),
        ) {
            (Transport::Http { .. }, _, false) => {
                return Err(ApiError::bad_request(
                    "an HTTP server's credentials are `headers`, not `env`",
                ));
            }
            (Transport::Stdio { .. }, false, _) => {
                return Err(ApiError::bad_request(
                    "a stdio server's credentials are `env`, not `headers`",
                ));
            }
            _ => {}
        }
    }
    let credentials = body
        .credentials
        .map(serde_json::to_value)
        .transpose()
        .map_err(ApiError::internal)?;
    let new = NewMcpServer {
        name: body.name,
        transport: body.transport,
        owner_team: body.owner_team,
        sensitive: body.sensitive,
        credentials,
    };
    let server = state.store.add_mcp_server(&Actor::person(&person.name), new).await?;
    state.policy.rebuild(&state.store).await.map_err(ApiError::internal)?;
    state.control.refresh_servers(&state.store).await?;
    Ok((StatusCode::CREATED, Json(server)))
}

/// List MCP servers (credentials are never included).
#[utoipa::path(get, path = "/v1/mcp-servers", tag = "mcp-servers", security(("access_token" = [])),
    responses((status = 200, body = Vec<McpServer>)))]
pub(crate) async fn list_mcp_servers(
    State(state): State<AppState>,
    Caller(person): Caller,
) -> Result<Json<Vec<McpServer>>, ApiError> {
    person.authorize(Operation::ReadRegistry)?;
    Ok(Json(state.store.list_mcp_servers().await?))
}
