//! `/v1/scopes`: centrally defined bundles of tools that teams grant to their agents.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use warden_core::{Name, Operation, Scope, ToolPattern};
use warden_store::{Actor, NewScope};

use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiJson, Caller};
use crate::state::AppState;

/// A scope to define.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct DefineScope {
    /// Its name.
    name: Name,
    /// The tools it covers, as `server/tool-glob` patterns.
    tools: Vec<ToolPattern>,
    /// Whether it is sensitive.
    #[serde(default)]
    sensitive: bool,
    /// What it is for.
    #[serde(default)]
    description: String,
}

/// Define a scope (platform-admin).
#[utoipa::path(post, path = "/v1/scopes", tag = "scopes", request_body = DefineScope,
    security(("access_token" = [])),
    responses((status = 201, body = Scope), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
               (status = 409, body = ErrorBody)))]
pub(crate) async fn define_scope(
    State(state): State<AppState>,
    Caller(person): Caller,
    ApiJson(body): ApiJson<DefineScope>,
) -> Result<(StatusCode, Json<Scope>), ApiError> {
    person.authorize(Operation::ManageScopes)?;
    if body.tools.is_empty() {
        return Err(ApiError::bad_request("`tools` must name at least one tool pattern"));
    }
    if body.tools.len() > 256 {
        return Err(ApiError::bad_request("`tools` may hold at most 256 patterns"));
    }
    if body.description.chars().count() > 1000 {
        return Err(ApiError::bad_request("`description` is longer than 1000 characters"));
    }
    let new = NewScope {
        name: body.name,
        tools: body.tools,
        sensitive: body.sensitive,
        description: body.description.trim().to_owned(),
    };
    let scope = state.store.define_scope(&Actor::person(&person.name), new).await?;
    state.policy.rebuild(&state.store).await.map_err(ApiError::internal)?;
    Ok((StatusCode::CREATED, Json(scope)))
}

/// List scopes.
#[utoipa::path(get, path = "/v1/scopes", tag = "scopes", security(("access_token" = [])),
    responses((status = 200, body = Vec<Scope>)))]
pub(crate) async fn list_scopes(
    State(state): State<AppState>,
    Caller(person): Caller,
) -> Result<Json<Vec<Scope>>, ApiError> {
    person.authorize(Operation::ReadRegistry)?;
    Ok(Json(state.store.list_scopes().await?))
}
