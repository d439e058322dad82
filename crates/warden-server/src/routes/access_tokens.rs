//! `/v1/access-tokens`: people's API tokens. The secret is returned once, at creation; only its hash
//! is stored.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use warden_core::{AccessTokenInfo, Name, Operation, Role};
use warden_identity::secret::{self, SecretKind};
use warden_store::Actor;

use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiJson, ApiPath, Caller};
use crate::state::AppState;

/// An access token to create.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateAccessToken {
    /// The token's name; it names the person in policy and audit.
    name: Name,
    /// Its role.
    role: Role,
    /// The team, required for (and only for) a team-admin.
    #[serde(default)]
    team: Option<Name>,
}

/// A created token: its record and the secret, shown this once.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct CreatedAccessToken {
    #[serde(flatten)]
    info: AccessTokenInfo,
    /// The bearer secret; store it now, Warden keeps only its hash.
    token: String,
}

/// Who the caller is.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct WhoAmI {
    /// The access token's name.
    name: Name,
    /// Its role.
    role: Role,
    /// The team of a team-admin.
    team: Option<Name>,
}

/// Create an access token (platform-admin).
#[utoipa::path(post, path = "/v1/access-tokens", tag = "access-tokens", request_body = CreateAccessToken,
    security(("access_token" = [])),
    responses((status = 201, body = CreatedAccessToken), (status = 400, body = ErrorBody),
               (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(crate) async fn create_access_token(
    State(state): State<AppState>,
    Caller(person): Caller,
    ApiJson(body): ApiJson<CreateAccessToken>,
) -> Result<(StatusCode, Json<CreatedAccessToken>), ApiError> {
    person.authorize(Operation::ManageAccessTokens)?;
    match (body.role, &body.team) {
        (Role::TeamAdmin, None) => {
            return Err(ApiError::bad_request("a team-admin token needs `team`"));
        }
        (Role::PlatformAdmin | Role::Auditor | Role::Gateway, Some(_)) => {
            return Err(ApiError::bad_request(format!(
                "a {} token is not bound to a team; omit `team`",
                body.role
            )));
        }
        _ => {}
    }
    let token = secret::generate(SecretKind::AccessToken).map_err(ApiError::internal)?;
    let info = state
        .store
        .create_access_token(
            &Actor::person(&person.name),
            &body.name,
            body.role,
            body.team.as_ref(),
            secret::hash(&token),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(CreatedAccessToken { info, token })))
}

/// List access tokens, without secrets (platform-admin, auditor).
#[utoipa::path(get, path = "/v1/access-tokens", tag = "access-tokens", security(("access_token" = [])),
    responses((status = 200, body = Vec<AccessTokenInfo>), (status = 403, body = ErrorBody)))]
pub(crate) async fn list_access_tokens(
    State(state): State<AppState>,
    Caller(person): Caller,
) -> Result<Json<Vec<AccessTokenInfo>>, ApiError> {
    person.authorize(Operation::ReadAccessTokens)?;
    Ok(Json(state.store.list_access_tokens().await?))
}

/// Revoke an access token (platform-admin). Idempotent.
#[utoipa::path(delete, path = "/v1/access-tokens/{name}", tag = "access-tokens",
    params(("name" = String, Path, description = "the token's name")), security(("access_token" = [])),
    responses((status = 200, body = AccessTokenInfo), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn revoke_access_token(
    State(state): State<AppState>,
    Caller(person): Caller,
    ApiPath(name): ApiPath<Name>,
) -> Result<Json<AccessTokenInfo>, ApiError> {
    person.authorize(Operation::ManageAccessTokens)?;
    Ok(Json(
        state
            .store
            .revoke_access_token(&Actor::person(&person.name), &name)
            .await?,
    ))
}

/// The caller's own identity and role.
#[utoipa::path(get, path = "/v1/whoami", tag = "access-tokens", security(("access_token" = [])),
    responses((status = 200, body = WhoAmI), (status = 401, body = ErrorBody)))]
pub(crate) async fn whoami(Caller(person): Caller) -> Json<WhoAmI> {
    Json(WhoAmI {
        name: person.name,
        role: person.role,
        team: person.team,
    })
}
