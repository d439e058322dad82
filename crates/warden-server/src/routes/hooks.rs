//! `POST /v1/hooks/claude-code`: one Claude Code hook invocation in one round trip. The caller is the
//! session's agent (its bearer access token); the body is the raw hook input and a client-made event
//! id. The server works out who acts (the session's agent, or for a subagent's payload the subagent's
//! own delegated identity, created on first sight through the same delegation as token exchange),
//! decides `PreToolUse` / `PermissionRequest` with the policy engine, records the event durably (once
//! per event id, so a retried or spooled event is stored once) and answers with the exact hook output.
//!
//! What a payload means (tool names, subagent names, what is kept) is `warden_core::claude_code`'s.

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use warden_core::claude_code::{self, HookPayload, ToolRoute};
use warden_core::{AgentId, AgentStatus};
use warden_identity::token::Claims;
use warden_policy::ToolCall;
use warden_store::Actor;

use crate::clock;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiJson, bearer_token};
use crate::policy::narrow_to_token;
use crate::state::AppState;

/// The largest hook request: hook inputs carry whole tool inputs (a `Write`'s file) and outputs, and
/// a decision must never fail for size alone.
pub(crate) const MAX_HOOK_BYTES: usize = 8 * 1024 * 1024;

/// The route, with its own body limit.
pub(crate) fn route() -> utoipa_axum::router::UtoipaMethodRouter<AppState> {
    let (schemas, paths, method) = utoipa_axum::routes!(claude_code_hook);
    (
        schemas,
        paths,
        method.layer(axum::extract::DefaultBodyLimit::max(MAX_HOOK_BYTES)),
    )
}

/// One hook invocation.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct HookRequest {
    /// Made by the client, unique per invocation (1–100 of `A-Za-z0-9._:-`); a resend is stored once.
    event_id: String,
    /// Claude Code's hook input, exactly as read from stdin.
    #[schema(value_type = Object)]
    payload: Value,
    /// When the client read the event (RFC 3339), if it was delivered later from a spool.
    #[serde(default)]
    occurred_at: Option<String>,
}

/// The answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct HookAnswer {
    /// The acting agent the event was decided and recorded for.
    agent: String,
    /// Whether this request stored the event (false for a resend).
    recorded: bool,
    /// `allow` or `deny` for a decision event.
    #[serde(skip_serializing_if = "Option::is_none")]
    decision: Option<&'static str>,
    /// Why.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    /// The policies behind the decision.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    policy_ids: Vec<String>,
    /// The hook output to print on stdout, if the event has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    output: Option<Value>,
}

/// The acting identity of a hook event.
struct Acting {
    id: AgentId,
    chain: Vec<String>,
    /// Why the identity may not act (a stopped subagent, a refused delegation).
    refusal: Option<String>,
}

fn bearer_claims(state: &AppState, headers: &HeaderMap) -> Result<Claims, ApiError> {
    let token = bearer_token(headers, "agent access token")?;
    state
        .credentials
        .verify(token)
        .map(|v| v.into_claims())
        .map_err(|e| ApiError::unauthenticated(format!("the agent token is not accepted: {e}")))
}

fn check_event_id(id: &str) -> Result<(), ApiError> {
    let ok = !id.is_empty()
        && id.len() <= 100
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "`event_id` must have 1 to 100 characters of A-Z a-z 0-9 . _ : -",
        ))
    }
}

/// The session's agent, or the subagent's own identity (registered on first sight, as a child of
/// the session's agent holding the session token's scopes).
async fn acting(state: &AppState, claims: &Claims, payload: &HookPayload) -> Result<Acting, ApiError> {
    let session = AgentId::parse(claims.acting_agent()).map_err(|e| ApiError::unauthenticated(e.to_string()))?;
    let mut chain: Vec<String> = claims.chain().into_iter().map(str::to_owned).collect();
    let Some(subagent) = payload.subagent() else {
        return Ok(Acting {
            id: session,
            chain,
            refusal: None,
        });
    };
    let name = claude_code::subagent_name(&subagent).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let child = session.child(&name);
    chain.push(child.to_string());
    let token_scopes: Vec<&str> = claims.scopes().collect();
    match state.store.get_agent(&child).await {
        Ok(agent) if agent.status != AgentStatus::Active => {
            let refusal = format!("subagent `{child}` is {}", agent.status);
            return Ok(Acting {
                id: child,
                chain,
                refusal: Some(refusal),
            });
        }
        Ok(agent)
            if token_scopes
                .iter()
                .all(|s| agent.scopes.iter().any(|h| h.as_str() == *s)) =>
        {
            return Ok(Acting {
                id: child,
                chain,
                refusal: None,
            });
        }
        Ok(_) | Err(warden_store::StoreError::NotFound { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    let purpose = format!(
        "Claude Code subagent `{}` of {session}",
        subagent.agent_type.as_deref().unwrap_or("subagent")
    );
    let purpose: String = purpose.chars().take(1000).collect();
    let refusal = match super::oauth::delegate(state, claims, &name, None, Some(&purpose)).await {
        Ok(_) => None,
        Err(err) => Some(err.description().to_owned()),
    };
    Ok(Acting {
        id: child,
        chain,
        refusal,
    })
}

/// Decide (for `PreToolUse` / `PermissionRequest`) and record one Claude Code hook event; answers with
/// the hook output to print.
#[utoipa::path(post, path = "/v1/hooks/claude-code", tag = "hooks", request_body = HookRequest,
    security(("agent_token" = [])),
    responses((status = 200, body = HookAnswer), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub(crate) async fn claude_code_hook(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<HookRequest>,
) -> Result<Json<HookAnswer>, ApiError> {
    let claims = bearer_claims(&state, &headers)?;
    check_event_id(&body.event_id)?;
    let payload = HookPayload::parse(body.payload).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let acting = acting(&state, &claims, &payload).await?;
    let mut details = payload.summary(state.keep_prompts);
    details.insert("agent".to_owned(), json!(acting.id));
    details.insert("chain".to_owned(), json!(acting.chain));
    details.insert("event_id".to_owned(), json!(body.event_id));
    if let Some(at) = &body.occurred_at {
        details.insert("occurred_at".to_owned(), json!(at.chars().take(64).collect::<String>()));
    }
    if let Some(refusal) = &acting.refusal {
        details.insert("refused".to_owned(), json!(refusal));
    }
    let tool = payload.tool();
    if let Some(tool) = &tool
        && tool.route == ToolRoute::Direct
        && !state.control.is_registered(&tool.server)
    {
        details.insert("shadow_server".to_owned(), json!(tool.server));
    }
    let mut answer = HookAnswer {
        agent: acting.id.to_string(),
        recorded: false,
        decision: None,
        reason: None,
        policy_ids: Vec::new(),
        output: None,
    };
    if payload.is_decision()
        && let Some(tool) = tool
    {
        let (allow, policy_ids, reason) = match &acting.refusal {
            Some(refusal) => (false, Vec::new(), refusal.clone()),
            None => {
                let (hour, weekday) = clock::now_in(state.time_offset);
                let call = ToolCall {
                    agent: acting.id.clone(),
                    server: tool.server.clone(),
                    tool: tool.tool.clone(),
                    arguments: payload.tool_input(),
                    hour,
                    weekday,
                };
                let decision = state.policy.current().authorize_call(&call);
                let decision = narrow_to_token(decision, claims.scopes().collect::<Vec<_>>().as_slice());
                (decision.allow, decision.policy_ids, decision.reason)
            }
        };
        let shown = if allow {
            format!("Allowed by Warden: {reason}")
        } else {
            format!("Denied by Warden: {reason}")
        };
        details.insert("decision".to_owned(), json!(if allow { "allow" } else { "deny" }));
        details.insert("policy_ids".to_owned(), json!(policy_ids));
        details.insert("reason".to_owned(), json!(reason));
        answer.output = payload.decision_output(allow, &shown);
        answer.decision = Some(if allow { "allow" } else { "deny" });
        answer.reason = Some(reason);
        answer.policy_ids = policy_ids;
    }
    let session = claims.sub.clone();
    answer.recorded = state
        .store
        .record_event_once(
            &Actor::agent(&acting.id),
            &format!("hook:{session}:{}", body.event_id),
            &payload.action(),
            acting.id.as_str(),
            Value::Object(details),
        )
        .await?;
    Ok(Json(answer))
}
