//! `/v1/teams`: product teams. Only platform-admins create them; everyone may list them.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use warden_core::{Name, Operation, Team};
use warden_store::Actor;

use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiJson, Caller};
use crate::state::AppState;

/// A team to create.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateTeam {
    /// The team's name.
    name: Name,
}

/// Create a team (platform-admin).
#[utoipa::path(post, path = "/v1/teams", tag = "teams", request_body = CreateTeam,
    security(("access_token" = [])),
    responses((status = 201, body = Team), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
               (status = 409, body = ErrorBody)))]
pub(crate) async fn create_team(
    State(state): State<AppState>,
    Caller(person): Caller,
    ApiJson(body): ApiJson<CreateTeam>,
) -> Result<(StatusCode, Json<Team>), ApiError> {
    person.authorize(Operation::ManageTeams)?;
    let team = state
        .store
        .create_team(&Actor::person(&person.name), &body.name)
        .await?;
    Ok((StatusCode::CREATED, Json(team)))
}

/// List teams.
#[utoipa::path(get, path = "/v1/teams", tag = "teams", security(("access_token" = [])),
    responses((status = 200, body = Vec<Team>), (status = 401, body = ErrorBody)))]
pub(crate) async fn list_teams(
    State(state): State<AppState>,
    Caller(person): Caller,
) -> Result<Json<Vec<Team>>, ApiError> {
    person.authorize(Operation::ReadRegistry)?;
    Ok(Json(state.store.list_teams().await?))
}
