//! `POST /v1/hooks/claude-code`: one Claude Code hook invocation in one round trip. The caller is the
//! session's agent (its bearer access token); the body is the raw hook input and a client-made event
//! id. The server works out who acts (the session's agent, or for a subagent's payload the subagent's
//! own delegated identity, created on first sight through the same delegation as token exchange),
//! decides `PreToolUse` / `PermissionRequest` with the policy engine, appends the event to the audit
//! lake as an OCSF event and answers with the exact hook output once it is durable there. The lake id
//! is `hook-<16 hex of the token subject's hash>-<event id>`, so a retried or spooled event is stored
//! once (see `hook_events` for the mapping of each hook event to its OCSF event).
//!
//! What a payload means (tool names, subagent names, what is kept) is `warden_core::claude_code`'s.

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use warden_core::claude_code::{self, HookPayload, ToolRoute, ToolTarget};
use warden_core::{AgentId, AgentStatus};
use warden_identity::token::Claims;
use warden_lake::event::MessageContext;
use warden_lake::{AuditEvent, Decision, Finding, Subject};
use warden_policy::ToolCall;

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
    let tool = payload.tool();
    let shadow = tool
        .as_ref()
        .filter(|tool| tool.route == ToolRoute::Direct && !state.control.is_registered(&tool.server))
        .map(|tool| tool.server.clone());
    let mut answer = HookAnswer {
        agent: acting.id.to_string(),
        recorded: false,
        decision: None,
        reason: None,
        policy_ids: Vec::new(),
        output: None,
    };
    let mut verdict = None;
    if payload.is_decision()
        && let Some(tool) = &tool
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
        answer.output = payload.decision_output(allow, &shown);
        answer.decision = Some(if allow { "allow" } else { "deny" });
        answer.reason = Some(reason.clone());
        answer.policy_ids = policy_ids.clone();
        verdict = Some((allow, policy_ids, reason));
    }
    let id = format!("hook-{}-{}", short_hash(&claims.sub), body.event_id);
    let time = body
        .occurred_at
        .as_deref()
        .and_then(|at| time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339).ok())
        .map_or_else(warden_lake::event::now_ms, |t| {
            i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
        })
        .max(0);
    let subject = Subject {
        agent_id: acting.id.to_string(),
        team: Some(acting.id.team().to_string()),
        purpose: None,
        session_id: payload.session_id().map(|s| s.chars().take(200).collect()),
        subagent_id: payload.subagent().map(|_| acting.id.to_string()),
        delegation_chain: acting.chain.clone(),
    };
    let facts = HookFacts {
        payload: &payload,
        summary: payload.summary(state.keep_prompts),
        tool: tool.as_ref(),
        shadow: shadow.as_deref(),
        refusal: acting.refusal.as_deref(),
    };
    let events = hook_events(id, time, &subject, &facts, verdict);
    let receipts = state.lake.append(events).await.map_err(ApiError::internal)?;
    answer.recorded = receipts.first().is_some_and(|r| r.new);
    Ok(Json(answer))
}

/// The 16 hex digits of SHA-256 that namespace a client's event ids by its session token's subject,
/// so two agents' ids never collide.
fn short_hash(text: &str) -> String {
    warden_lake::merkle::leaf_hash(text.as_bytes())[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What one hook invocation says, for its audit event.
struct HookFacts<'a> {
    payload: &'a HookPayload,
    /// What of the payload may be kept (prompt text only with `--keep-prompts`).
    summary: Map<String, Value>,
    tool: Option<&'a ToolTarget>,
    /// The MCP server called directly that Warden does not know.
    shadow: Option<&'a str>,
    refusal: Option<&'a str>,
}

/// Marks the status detail of a tool event on a shadow MCP server.
pub(crate) const SHADOW_MARK: &str = "shadow MCP server";

/// The activity name of a hook event that is no tool call.
fn activity_name(event: &str) -> String {
    match event {
        "SessionStart" => "start_session".to_owned(),
        "SessionEnd" => "end_session".to_owned(),
        "UserPromptSubmit" => "submit_prompt".to_owned(),
        "Stop" => "stop_turn".to_owned(),
        "SubagentStart" => "start_subagent".to_owned(),
        "SubagentStop" => "stop_subagent".to_owned(),
        other => {
            let mut out = String::new();
            for (i, c) in other.chars().take(64).enumerate() {
                if c.is_ascii_uppercase() {
                    if i > 0 {
                        out.push('_');
                    }
                    out.push(c.to_ascii_lowercase());
                } else if c.is_ascii_alphanumeric() {
                    out.push(c);
                }
            }
            out
        }
    }
}

fn fact<'a>(summary: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    summary.get(key).filter(|v| !v.is_null())
}

fn fact_text(summary: &Map<String, Value>, key: &str) -> Option<String> {
    fact(summary, key).map(|v| match v {
        Value::String(s) => s.chars().take(200).collect(),
        other => other.to_string().chars().take(200).collect(),
    })
}

/// The hook event as OCSF events: the event itself (first), and for a decision on a shadow MCP server
/// a Detection Finding (`finding_uid` `shadow-mcp-server`).
///
/// `PreToolUse` / `PermissionRequest` → `decide_tool_call`; `PostToolUse` / `PostToolUseFailure` →
/// `call_tool`; every other event → API Activity named for it (`start_session`, `submit_prompt`, …).
/// Tool events on a shadow server carry `shadow MCP server `<name>`` in `status_detail`.
fn hook_events(
    id: String,
    time: i64,
    subject: &Subject,
    facts: &HookFacts<'_>,
    verdict: Option<(bool, Vec<String>, String)>,
) -> Vec<AuditEvent> {
    let summary = &facts.summary;
    let event_name = facts.payload.event();
    let route = facts.tool.map(|t| t.route.as_str());
    let mut notes: Vec<String> = Vec::new();
    let mut event = match (facts.tool, verdict) {
        (Some(tool), Some((allow, policy_ids, reason))) => {
            let call = warden_lake::ToolCall {
                server: tool.server.clone(),
                tool: tool.tool.clone(),
                decision: if allow { Decision::Allow } else { Decision::Deny },
                policy_ids,
                reason: Some(reason),
            };
            let mut event = AuditEvent::tool_decision(id.clone(), time, subject, &call);
            event.message = format!("{} ({event_name}, {} route)", event.message, route.unwrap_or(""));
            event
        }
        (Some(tool), None) if matches!(event_name, "PostToolUse" | "PostToolUseFailure") => {
            let call = warden_lake::ToolCall {
                server: tool.server.clone(),
                tool: tool.tool.clone(),
                decision: Decision::Allow,
                policy_ids: Vec::new(),
                reason: None,
            };
            let ok = event_name == "PostToolUse";
            let detail = (!ok).then(|| {
                fact(summary, "error")
                    .map(|e| match e {
                        Value::String(s) => s.chars().take(1000).collect(),
                        other => other.to_string().chars().take(1000).collect(),
                    })
                    .unwrap_or_else(|| "the tool failed".to_owned())
            });
            let mut event = AuditEvent::tool_outcome(id.clone(), time, subject, &call, ok, detail);
            let mut parts = vec![format!("{} route", route.unwrap_or(""))];
            if let Some(ms) = fact_text(summary, "duration_ms") {
                parts.push(format!("{ms} ms"));
            }
            if let Some(bytes) = fact_text(summary, "tool_response_bytes") {
                parts.push(format!("{bytes} response bytes"));
            }
            // The `Agent` tool's result carries its subagent's tokens. Kept in `message_context`
            // (never summed as spend: Claude Code's api_request telemetry already counts them).
            if let Some(usage) = fact(summary, "subagent_usage") {
                let tokens = |v: Option<&Value>| v.and_then(Value::as_i64);
                let input = tokens(usage.pointer("/usage/input_tokens"));
                let output = tokens(usage.pointer("/usage/output_tokens"));
                let total = tokens(usage.get("total_tokens"));
                event.message_context = Some(MessageContext {
                    completion_tokens: output,
                    prompt_tokens: input,
                    total_tokens: total,
                });
                parts.push(format!(
                    "subagent {} used {} tokens ({} input, {} output)",
                    usage.get("agent_id").and_then(Value::as_str).unwrap_or("?"),
                    total.unwrap_or(0),
                    input.unwrap_or(0),
                    output.unwrap_or(0)
                ));
            }
            event.message = format!("{} ({})", event.message, parts.join(", "));
            event
        }
        (tool, _) => {
            let activity = activity_name(event_name);
            let call = warden_lake::ToolCall {
                server: tool.map_or_else(|| "claude-code".to_owned(), |t| t.server.clone()),
                tool: tool.map_or_else(|| activity.clone(), |t| t.tool.clone()),
                decision: Decision::Allow,
                policy_ids: Vec::new(),
                reason: None,
            };
            let mut event = AuditEvent::tool_outcome(id.clone(), time, subject, &call, true, None);
            event.activity_name = Some(activity.clone());
            if let Some(api) = event.api.as_mut() {
                api.operation = activity.clone();
            }
            event.warden.decision = None;
            event.action_id = None;
            event.disposition_id = None;
            if tool.is_none() {
                event.warden.server = None;
                event.warden.tool = None;
            }
            let mut message = match event_name {
                "SessionStart" => "Claude Code session started".to_owned(),
                "SessionEnd" => "Claude Code session ended".to_owned(),
                "UserPromptSubmit" => "prompt submitted".to_owned(),
                "Stop" => "Claude Code turn ended".to_owned(),
                "SubagentStart" => "subagent started".to_owned(),
                "SubagentStop" => "subagent stopped".to_owned(),
                other => format!("Claude Code hook {}", other.chars().take(64).collect::<String>()),
            };
            let mut parts = Vec::new();
            for key in ["source", "reason", "agent_type", "notification_type", "trigger"] {
                if let Some(value) = fact_text(summary, key) {
                    parts.push(format!("{key} {value}"));
                }
            }
            if let Some(chars) = fact_text(summary, "prompt_chars") {
                parts.push(format!("{chars} chars"));
            }
            if let Some(tool) = tool {
                parts.push(format!("{}/{}", tool.server, tool.tool));
            }
            if !parts.is_empty() {
                message = format!("{message} ({})", parts.join(", "));
            }
            // Prompt text only when the platform opted in (`serve --keep-prompts`).
            if let Some(prompt) = fact(summary, "prompt").and_then(Value::as_str) {
                message = format!("{message}: {}", prompt.chars().take(10_000).collect::<String>());
            }
            event.message = message;
            event
        }
    };
    if let Some(refusal) = facts.refusal
        && event.warden.decision.is_none()
    {
        notes.push(format!("identity refused: {refusal}"));
    }
    if let Some(server) = facts.shadow {
        notes.push(format!(
            "{SHADOW_MARK} `{server}` (called directly, not registered with Warden)"
        ));
    }
    if !notes.is_empty() {
        let notes = notes.join("; ");
        event.status_detail = Some(match event.status_detail.take() {
            Some(detail) => format!("{detail}; {notes}"),
            None => notes,
        });
    }
    let mut events = vec![event];
    if let (Some(server), true) = (facts.shadow, facts.payload.is_decision()) {
        let finding = Finding {
            uid: "shadow-mcp-server".to_owned(),
            title: format!("{SHADOW_MARK} `{server}` used directly, not through Warden"),
            desc: facts
                .tool
                .map(|t| format!("{}/{} called by {}", t.server, t.tool, subject.agent_id)),
            severity_id: 3,
        };
        events.push(AuditEvent::finding(format!("{id}-shadow"), time, subject, &finding));
    }
    events
}
