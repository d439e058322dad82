//! `/v1/events`: the registry's change log, for auditors and platform-admins.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use warden_core::Operation;

use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiQuery, Caller};
use crate::state::AppState;

/// Paging through the change log.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct EventQuery {
    /// Only events after this sequence number.
    #[serde(default)]
    since: i64,
    /// At most this many (1–10000, default 1000).
    limit: Option<i64>,
}

/// One registry change.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct ChangeEvent {
    /// Position in the log.
    seq: i64,
    /// When it committed.
    time: String,
    /// `person`, `agent` or `system`.
    actor_kind: String,
    /// Who made it.
    actor: String,
    /// What was done, e.g. `agent.register`.
    action: String,
    /// The kind of record changed.
    target_kind: String,
    /// The record's key.
    target: String,
    /// The record before.
    before: serde_json::Value,
    /// The record after.
    after: serde_json::Value,
}

/// The registry change log (platform-admin, auditor).
#[utoipa::path(get, path = "/v1/events", tag = "events", params(EventQuery), security(("access_token" = [])),
    responses((status = 200, body = Vec<ChangeEvent>), (status = 403, body = ErrorBody)))]
pub(crate) async fn list_events(
    State(state): State<AppState>,
    Caller(person): Caller,
    ApiQuery(query): ApiQuery<EventQuery>,
) -> Result<Json<Vec<ChangeEvent>>, ApiError> {
    person.authorize(Operation::ReadChangeLog)?;
    let limit = query.limit.unwrap_or(1000);
    if !(1..=10_000).contains(&limit) {
        return Err(ApiError::bad_request("`limit` must be between 1 and 10000"));
    }
    let events = state.store.list_events(query.since, limit).await?;
    Ok(Json(
        events
            .into_iter()
            .map(|e| ChangeEvent {
                seq: e.seq,
                time: e.time,
                actor_kind: e.actor_kind,
                actor: e.actor,
                action: e.action,
                target_kind: e.target_kind,
                target: e.target,
                before: e.before,
                after: e.after,
            })
            .collect(),
    ))
}
