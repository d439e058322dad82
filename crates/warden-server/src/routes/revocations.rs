//! `/v1/revocations`: the versioned revocation feed that standalone gateways follow, so they never
//! call home per request; and `/v1/keys/rotate`.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use warden_core::Operation;
use warden_store::Actor;

use crate::credentials::now_unix;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiQuery, Caller};
use crate::state::AppState;

/// Where to read the feed from.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct FeedQuery {
    /// Only entries after this position (0 for the whole feed).
    #[serde(default)]
    since: i64,
    /// Long-poll: wait up to this many seconds (at most 30) for a new entry when there is none.
    #[serde(default)]
    wait: u64,
}

/// One feed entry: from `seq` on, `agent` is in `state`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct FeedEntry {
    /// Position in the feed.
    seq: i64,
    /// The agent's id; its descendants follow it (verifiers check every ancestor).
    agent: String,
    /// `active`, `suspended` or `revoked`.
    state: String,
    /// Tokens issued at or before this unix time stay refused.
    not_before: Option<i64>,
    /// When the change happened (unix seconds).
    at: i64,
}

/// A page of the feed.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Feed {
    /// The feed's current position; ask for entries after it next.
    seq: i64,
    /// The entries after `since`, in order.
    entries: Vec<FeedEntry>,
}

/// The revocation feed (any role; gateways use it).
#[utoipa::path(get, path = "/v1/revocations", tag = "revocations", params(FeedQuery), security(("access_token" = [])),
    responses((status = 200, body = Feed), (status = 400, body = ErrorBody)))]
pub(crate) async fn feed(
    State(state): State<AppState>,
    Caller(person): Caller,
    ApiQuery(query): ApiQuery<FeedQuery>,
) -> Result<Json<Feed>, ApiError> {
    person.authorize(Operation::ReadRegistry)?;
    if query.since < 0 {
        return Err(ApiError::bad_request("`since` must not be negative"));
    }
    if query.wait > 30 {
        return Err(ApiError::bad_request("`wait` may be at most 30 seconds"));
    }
    let since = u64::try_from(query.since).unwrap_or(0);
    if query.wait > 0 && state.credentials.revocation_seq() <= since {
        let mut changes = state.credentials.subscribe();
        let wait = changes.wait_for(|seq| *seq > since);
        let _ = tokio::time::timeout(Duration::from_secs(query.wait), wait).await;
    }
    let records = state.store.list_revocations(query.since, 10_000).await?;
    let seq = records.last().map_or(
        query
            .since
            .max(i64::try_from(state.credentials.revocation_seq()).unwrap_or(0)),
        |r| r.seq,
    );
    let entries = records
        .into_iter()
        .map(|r| FeedEntry {
            seq: r.seq,
            agent: r.agent,
            state: r.state,
            not_before: r.not_before,
            at: r.at,
        })
        .collect();
    Ok(Json(Feed { seq, entries }))
}

/// A rotated key.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Rotated {
    /// The new signing key's id.
    kid: String,
    /// Every published key id, newest first.
    published: Vec<String>,
}

/// Add a new signing key; older keys stay published until every token they signed has expired
/// (platform-admin).
#[utoipa::path(post, path = "/v1/keys/rotate", tag = "keys", security(("access_token" = [])),
    responses((status = 200, body = Rotated), (status = 403, body = ErrorBody)))]
pub(crate) async fn rotate_keys(
    State(state): State<AppState>,
    Caller(person): Caller,
) -> Result<Json<Rotated>, ApiError> {
    person.authorize(Operation::ManageKeys)?;
    let rotated = {
        let mut keys = state
            .credentials
            .keys
            .write()
            .map_err(|_| ApiError::internal("key ring lock poisoned"))?;
        let kid = keys.rotate(now_unix()).map_err(ApiError::internal)?;
        let published = keys
            .published(now_unix(), state.credentials.policy.max_ttl_secs)
            .into_iter()
            .map(|k| k.kid().to_string())
            .collect();
        Rotated {
            kid: kid.to_string(),
            published,
        }
    };
    state.credentials.refresh_verifier();
    let details = serde_json::json!({"kid": rotated.kid, "published": rotated.published});
    state
        .store
        .record_event(&Actor::person(&person.name), "key.rotate", "key", &rotated.kid, details)
        .await?;
    Ok(Json(rotated))
}
