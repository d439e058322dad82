//! `/v1/guardrails`, `/v1/policy/*` and `/v1/authorize`: the platform's Cedar floor and the decisions
//! made against it.
//!
//! Adding a guardrail validates it strictly against the published schema (nothing changes if it is
//! refused), re-checks every existing grant and tag against it, reports each one that now violates it,
//! and with `enforce` revokes the violating grants, each revocation recorded.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use warden_core::{AgentId, Operation};
use warden_policy::{Decision, Held, ToolCall, parse_guardrail};
use warden_store::{Actor, GuardrailRecord};

use crate::clock;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiJson, ApiPath, Caller};
use crate::policy::narrow_to_token;
use crate::state::AppState;

/// A guardrail to add.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AddGuardrail {
    /// One Cedar `forbid` policy with `@id("…")` and `@message("…")` annotations.
    text: String,
    /// Revoke the existing grants that the new guardrail forbids.
    #[serde(default)]
    enforce: bool,
}

/// A guardrail in force.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct GuardrailView {
    /// Its `@id`.
    id: String,
    /// Its `@message`.
    message: String,
    /// The Cedar text.
    text: String,
    /// Who added it.
    created_by: String,
    /// When.
    created_at: String,
}

impl From<GuardrailRecord> for GuardrailView {
    fn from(r: GuardrailRecord) -> GuardrailView {
        GuardrailView {
            id: r.id,
            message: r.message,
            text: r.text,
            created_by: r.created_by,
            created_at: r.created_at,
        }
    }
}

/// An existing grant or tag that a new guardrail forbids.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct ViolationView {
    /// The agent.
    agent: String,
    /// `scope` or `tag`.
    kind: &'static str,
    /// The scope or tag name.
    name: String,
    /// Why the guardrail forbids it.
    reason: String,
    /// Whether the grant was revoked (`enforce`); tags are never removed automatically.
    revoked: bool,
}

/// The result of adding a guardrail.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct AddedGuardrail {
    /// The guardrail.
    guardrail: GuardrailView,
    /// Every existing grant or tag it forbids.
    violations: Vec<ViolationView>,
}

/// Add a guardrail (platform-admin).
#[utoipa::path(post, path = "/v1/guardrails", tag = "policy", request_body = AddGuardrail, security(("access_token" = [])),
    responses((status = 201, body = AddedGuardrail), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
               (status = 409, body = ErrorBody)))]
pub(crate) async fn add_guardrail(
    State(state): State<AppState>,
    Caller(person): Caller,
    ApiJson(body): ApiJson<AddGuardrail>,
) -> Result<(StatusCode, Json<AddedGuardrail>), ApiError> {
    person.authorize(Operation::ManagePolicy)?;
    if body.text.len() > 32 * 1024 {
        return Err(ApiError::bad_request("a guardrail may be at most 32 KiB of Cedar"));
    }
    let guardrail = parse_guardrail(&body.text).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let actor = Actor::person(&person.name);
    let store = state.store.clone();
    let added = state
        .policy
        .change(|engine| async move {
            if engine.guardrails().iter().any(|g| g.id() == guardrail.id()) {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "conflict",
                    format!(
                        "guardrail `{}` already exists; remove it first to replace it",
                        guardrail.id()
                    ),
                ));
            }
            let violations = engine.violations(&guardrail);
            let record = GuardrailRecord {
                id: guardrail.id().to_owned(),
                message: guardrail.message().to_owned(),
                text: guardrail.text().to_owned(),
                created_by: person.name.to_string(),
                created_at: warden_store::now_rfc3339(),
            };
            store.add_guardrail(&actor, record.clone()).await?;
            let mut views = Vec::new();
            for violation in violations {
                let (kind, name) = match &violation.held {
                    Held::Scope(scope) => ("scope", scope.clone()),
                    Held::Tag(tag) => ("tag", tag.clone()),
                };
                let mut revoked = false;
                if body.enforce && kind == "scope" {
                    store.ungrant(&actor, &name, &violation.agent).await?;
                    revoked = true;
                }
                views.push(ViolationView {
                    agent: violation.agent.to_string(),
                    kind,
                    name: name.to_string(),
                    reason: violation.reason,
                    revoked,
                });
            }
            // Only the guardrails changed unless grants were revoked: swap them in over the same fleet.
            let next = if views.iter().any(|v| v.revoked) {
                crate::policy::build_engine(&store).await.map_err(ApiError::internal)?
            } else {
                let mut guardrails = engine.guardrails().to_vec();
                guardrails.push(guardrail);
                engine.with_guardrails(guardrails).map_err(ApiError::internal)?
            };
            Ok((
                AddedGuardrail {
                    guardrail: record.into(),
                    violations: views,
                },
                Some(next),
            ))
        })
        .await?;
    Ok((StatusCode::CREATED, Json(added)))
}

/// List guardrails.
#[utoipa::path(get, path = "/v1/guardrails", tag = "policy", security(("access_token" = [])),
    responses((status = 200, body = Vec<GuardrailView>)))]
pub(crate) async fn list_guardrails(
    State(state): State<AppState>,
    Caller(person): Caller,
) -> Result<Json<Vec<GuardrailView>>, ApiError> {
    person.authorize(Operation::ReadRegistry)?;
    Ok(Json(
        state
            .store
            .list_guardrails()
            .await?
            .into_iter()
            .map(GuardrailView::from)
            .collect(),
    ))
}

/// Remove a guardrail (platform-admin).
#[utoipa::path(delete, path = "/v1/guardrails/{id}", tag = "policy",
    params(("id" = String, Path, description = "the guardrail's @id")), security(("access_token" = [])),
    responses((status = 200, body = GuardrailView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn remove_guardrail(
    State(state): State<AppState>,
    Caller(person): Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<GuardrailView>, ApiError> {
    person.authorize(Operation::ManagePolicy)?;
    let store = state.store.clone();
    let actor = Actor::person(&person.name);
    let removed = state
        .policy
        .change(|engine| async move {
            let removed = store.remove_guardrail(&actor, &id).await?;
            let remaining = engine.guardrails().iter().filter(|g| g.id() != id).cloned().collect();
            let next = engine.with_guardrails(remaining).map_err(ApiError::internal)?;
            Ok::<_, ApiError>((removed, Some(next)))
        })
        .await?;
    Ok(Json(removed.into()))
}

/// The published Cedar schema guardrails are validated against.
#[utoipa::path(get, path = "/v1/policy/schema", tag = "policy",
    responses((status = 200, description = "the Cedar schema, in Cedar's schema syntax", content_type = "text/plain")))]
pub(crate) async fn schema() -> Response {
    let mut res = warden_policy::schema_text().into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    res
}

/// A decision.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct DecisionView {
    /// `allow` or `deny`.
    decision: &'static str,
    /// The same, as a boolean.
    allow: bool,
    /// The policies behind it: `grant/<scope>/<agent>` permits or guardrail ids.
    policy_ids: Vec<String>,
    /// Why, for people (quotes each forbidding guardrail's message).
    reason: String,
    /// The acting agent the decision is for, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    agent: Option<String>,
    /// The delegation chain, root first, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    chain: Option<Vec<String>>,
}

impl DecisionView {
    fn from_decision(decision: Decision, agent: Option<String>, chain: Option<Vec<String>>) -> DecisionView {
        DecisionView {
            decision: if decision.allow { "allow" } else { "deny" },
            allow: decision.allow,
            policy_ids: decision.policy_ids,
            reason: decision.reason,
            agent,
            chain,
        }
    }

    fn deny(reason: String, agent: Option<String>) -> DecisionView {
        DecisionView {
            decision: "deny",
            allow: false,
            policy_ids: Vec::new(),
            reason,
            agent,
            chain: None,
        }
    }
}

/// A tool call to decide for an agent's token.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuthorizeRequest {
    /// The agent's access token.
    token: String,
    /// The MCP server's registered name.
    server: String,
    /// The tool's name.
    tool: String,
    /// The call's arguments.
    #[serde(default)]
    arguments: serde_json::Value,
}

/// Decide a tool call for an agent's token: the token must be valid, its scopes must cover the tool,
/// a grant must allow it and no guardrail may forbid it.
#[utoipa::path(post, path = "/v1/authorize", tag = "policy", request_body = AuthorizeRequest,
    responses((status = 200, body = DecisionView), (status = 400, body = ErrorBody)))]
pub(crate) async fn authorize(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<AuthorizeRequest>,
) -> Result<Json<DecisionView>, ApiError> {
    let claims = match state.credentials.verify(&body.token) {
        Ok(verified) => verified.into_claims(),
        Err(e) => {
            return Ok(Json(DecisionView::deny(
                format!("the agent token is not accepted: {e}"),
                None,
            )));
        }
    };
    let acting = claims.acting_agent().to_owned();
    let chain: Vec<String> = claims.chain().into_iter().map(str::to_owned).collect();
    let agent = AgentId::parse(&acting).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let (hour, weekday) = clock::now_in(state.time_offset);
    let call = ToolCall {
        agent,
        server: body.server,
        tool: body.tool,
        arguments: body.arguments,
        hour,
        weekday,
    };
    let decision = state.policy.current().authorize_call(&call);
    let decision = narrow_to_token(decision, claims.scopes().collect::<Vec<_>>().as_slice());
    Ok(Json(DecisionView::from_decision(decision, Some(acting), Some(chain))))
}

/// A dry-run decision for a person.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CheckRequest {
    /// The agent (SPIFFE id).
    agent: AgentId,
    /// `server/tool`.
    tool: String,
    /// The call's arguments.
    #[serde(default)]
    arguments: serde_json::Value,
    /// The hour (0-23) to decide at; defaults to now in the org's time zone.
    #[serde(default)]
    hour: Option<u8>,
    /// The weekday (0 = Monday … 6 = Sunday) to decide at; defaults to today.
    #[serde(default)]
    weekday: Option<u8>,
}

/// Decide a tool call for an agent as a dry run, with the deciding policies and the reason.
#[utoipa::path(post, path = "/v1/policy/check", tag = "policy", request_body = CheckRequest, security(("access_token" = [])),
    responses((status = 200, body = DecisionView), (status = 400, body = ErrorBody)))]
pub(crate) async fn check(
    State(state): State<AppState>,
    Caller(person): Caller,
    ApiJson(body): ApiJson<CheckRequest>,
) -> Result<Json<DecisionView>, ApiError> {
    person.authorize(Operation::ReadRegistry)?;
    let (server, tool) = body
        .tool
        .split_once('/')
        .filter(|(s, t)| !s.is_empty() && !t.is_empty())
        .ok_or_else(|| ApiError::bad_request(format!("`tool` `{}` must be SERVER/TOOL", body.tool)))?;
    let (hour_now, weekday_now) = clock::now_in(state.time_offset);
    let hour = body.hour.unwrap_or(hour_now);
    if hour > 23 {
        return Err(ApiError::bad_request("`hour` must be 0-23"));
    }
    let weekday = match body.weekday {
        None => weekday_now,
        Some(n) => warden_policy::Weekday::from_number(n)
            .ok_or_else(|| ApiError::bad_request("`weekday` must be 0 (Monday) to 6 (Sunday)"))?,
    };
    let call = ToolCall {
        agent: body.agent.clone(),
        server: server.to_owned(),
        tool: tool.to_owned(),
        arguments: body.arguments,
        hour,
        weekday,
    };
    let decision = state.policy.current().authorize_call(&call);
    Ok(Json(DecisionView::from_decision(
        decision,
        Some(body.agent.to_string()),
        None,
    )))
}

/// Refuses with the decision's reason when a guardrail says no, and records the refusal.
pub(crate) async fn require_allowed(
    store: &warden_store::Store,
    actor: &Actor,
    decision: &Decision,
    action: &str,
    target: &str,
    what: serde_json::Value,
) -> Result<(), ApiError> {
    if decision.allow {
        return Ok(());
    }
    let details = serde_json::json!({"request": what, "policy_ids": decision.policy_ids, "reason": decision.reason});
    store.record_event(actor, action, "agent", target, details).await?;
    Err(ApiError::denied_by_policy(decision))
}
