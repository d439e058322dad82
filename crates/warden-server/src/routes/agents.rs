//! `/v1/agents` and `/v1/grants`: registering agents, their lifecycle, and the scopes granted to them.
//!
//! A team-admin manages only its own team's agents; the team is read from the agent id, so a caller
//! cannot reach another team's agent by naming it differently.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use warden_core::{Agent, AgentId, AgentStatus, Grant, Name, Operation, Origin, Person};
use warden_identity::secret::{self, SecretKind};
use warden_store::{Actor, AgentFilter, NewAgent, TemplateRef};

use super::text_field;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiJson, ApiPath, ApiQuery, Caller, OptionalJson};
use crate::state::AppState;

/// An agent to register.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RegisterAgent {
    /// The owning team.
    team: Name,
    /// The agent's name, unique within the team.
    name: Name,
    /// The declared purpose.
    purpose: String,
    /// The person who answers for it; defaults to the caller's token name.
    #[serde(default)]
    owner: Option<String>,
    /// Tags such as `customer-data`.
    #[serde(default)]
    tags: Vec<Name>,
    /// `manual` (default) or `golden-path`; delegated agents are made by token exchange.
    #[serde(default)]
    origin: Option<Origin>,
    /// For `golden-path`: the template version that made the agent's project (`warden init`).
    #[serde(default)]
    template: Option<TemplateUse>,
}

/// A template version, as an agent records which one made its project.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct TemplateUse {
    /// The template's name.
    name: Name,
    /// Its version.
    version: i64,
}

/// An agent, with the template version that made its project when `warden init` made it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct AgentView {
    #[serde(flatten)]
    agent: Agent,
    /// The golden-path template (name and version) behind the agent's project, if any.
    template: Option<TemplateUse>,
}

/// A registered agent and its client secret, shown this once.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct RegisteredAgent {
    #[serde(flatten)]
    agent: Agent,
    /// Trade it at `POST /oauth2/token` for access tokens; Warden keeps only its hash.
    client_secret: String,
}

/// Filters for listing agents.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct AgentQuery {
    /// Only this team's agents.
    team: Option<Name>,
    /// Only agents carrying this tag.
    tag: Option<Name>,
}

/// A scope to grant.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct GrantScope {
    /// The scope's name.
    scope: Name,
}

/// Resolves an agent reference: a full SPIFFE id, or the short form `team/name[/subagent…]`.
fn resolve_agent_id(state: &AppState, raw: &str) -> Result<AgentId, ApiError> {
    if raw.starts_with("spiffe://") {
        return AgentId::parse(raw).map_err(|e| ApiError::bad_request(e.to_string()));
    }
    let mut parts = raw.split('/');
    let (Some(team), Some(name)) = (parts.next(), parts.next()) else {
        return Err(ApiError::bad_request(format!(
            "agent `{raw}` is neither a spiffe:// id nor of the form TEAM/NAME"
        )));
    };
    let mut full = format!("spiffe://{}/team/{team}/agent/{name}", state.trust_domain);
    for sub in parts {
        full.push('/');
        full.push_str(sub);
    }
    AgentId::parse(&full).map_err(|e| ApiError::bad_request(e.to_string()))
}

fn manage(person: &Person, id: &AgentId) -> Result<(), ApiError> {
    Ok(person.authorize(Operation::ManageAgents { team: &id.team() })?)
}

/// Register an agent (platform-admin, or team-admin of its team).
#[utoipa::path(post, path = "/v1/agents", tag = "agents", request_body = RegisterAgent,
    security(("access_token" = [])),
    responses((status = 201, body = RegisteredAgent), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
               (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(crate) async fn register_agent(
    State(state): State<AppState>,
    Caller(person): Caller,
    ApiJson(body): ApiJson<RegisterAgent>,
) -> Result<(StatusCode, Json<RegisteredAgent>), ApiError> {
    person.authorize(Operation::ManageAgents { team: &body.team })?;
    let origin = body.origin.unwrap_or(Origin::Manual);
    if origin == Origin::Delegated {
        return Err(ApiError::bad_request(
            "`origin` may be `manual` or `golden-path`; subagents are created by token exchange at /oauth2/token",
        ));
    }
    if body.template.is_some() && origin != Origin::GoldenPath {
        return Err(ApiError::bad_request(
            "`template` is recorded only for `golden-path` agents (made by `warden init`)",
        ));
    }
    let purpose = text_field("purpose", &body.purpose, 1000)?;
    let owner = match &body.owner {
        Some(owner) => text_field("owner", owner, 320)?,
        None => person.name.to_string(),
    };
    let client_secret = secret::generate(SecretKind::ClientSecret).map_err(ApiError::internal)?;
    let new = NewAgent {
        id: AgentId::new(&state.trust_domain, &body.team, &body.name),
        owner,
        purpose,
        tags: body.tags,
        origin,
        secret_hash: Some(secret::hash(&client_secret)),
        template: body.template.map(|t| TemplateRef {
            name: t.name,
            version: t.version,
        }),
    };
    let store = state.store.clone();
    let actor = Actor::person(&person.name);
    let agent = state
        .policy
        .change(|engine| async move {
            let agent = store.register_agent(&actor, new).await?;
            let next = engine.with_agent(&agent).map_err(ApiError::internal)?;
            Ok::<_, ApiError>((agent, Some(next)))
        })
        .await?;
    Ok((StatusCode::CREATED, Json(RegisteredAgent { agent, client_secret })))
}

/// List agents.
#[utoipa::path(get, path = "/v1/agents", tag = "agents", params(AgentQuery), security(("access_token" = [])),
    responses((status = 200, body = Vec<Agent>), (status = 400, body = ErrorBody)))]
pub(crate) async fn list_agents(
    State(state): State<AppState>,
    Caller(person): Caller,
    ApiQuery(query): ApiQuery<AgentQuery>,
) -> Result<Json<Vec<Agent>>, ApiError> {
    person.authorize(Operation::ReadRegistry)?;
    let filter = AgentFilter {
        team: query.team,
        tag: query.tag,
    };
    Ok(Json(state.store.list_agents(filter).await?))
}

/// Show one agent, by SPIFFE id (URL-encoded) or `team/name`.
#[utoipa::path(get, path = "/v1/agents/{id}", tag = "agents",
    params(("id" = String, Path, description = "SPIFFE id (URL-encoded) or TEAM/NAME (URL-encoded)")),
    security(("access_token" = [])),
    responses((status = 200, body = AgentView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn show_agent(
    State(state): State<AppState>,
    Caller(person): Caller,
    ApiPath(raw): ApiPath<String>,
) -> Result<Json<AgentView>, ApiError> {
    person.authorize(Operation::ReadRegistry)?;
    let id = resolve_agent_id(&state, &raw)?;
    let agent = state.store.get_agent(&id).await?;
    let template = state.store.agent_template(&id).await?.map(|t| TemplateUse {
        name: t.name,
        version: t.version,
    });
    Ok(Json(AgentView { agent, template }))
}

/// Why an agent is suspended, resumed or revoked; recorded with the change.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct StatusChange {
    /// Free text, e.g. an incident number.
    #[serde(default)]
    reason: Option<String>,
}

async fn set_status(
    state: &AppState,
    person: &Person,
    raw: &str,
    status: AgentStatus,
    change: StatusChange,
) -> Result<Json<Agent>, ApiError> {
    let id = resolve_agent_id(state, raw)?;
    manage(person, &id)?;
    let reason = change
        .reason
        .as_deref()
        .map(|r| text_field("reason", r, 1000))
        .transpose()?;
    let actor = Actor::person(&person.name);
    let agent = state.store.set_agent_status(&actor, &id, status).await?;
    // Apply the new feed entries before answering: once this returns, the agent's tokens (and its
    // descendants') are refused by every verification in this process, and policy sees the status
    // (a revocation changes every descendant too, so the engine is rebuilt).
    state.credentials.catch_up(&state.store).await?;
    state.policy.rebuild(&state.store).await.map_err(ApiError::internal)?;
    if status != AgentStatus::Active {
        // Open MCP sessions of the agent and its descendants end now, not at their next request.
        state.gateway.cut_sessions_of(&id).await;
    }
    let mut chain = vec![id.to_string()];
    let mut ancestor = id.parent();
    while let Some(parent) = ancestor {
        chain.insert(0, parent.to_string());
        ancestor = parent.parent();
    }
    let details = serde_json::json!({"agent": id, "chain": chain, "state": status, "reason": reason});
    state
        .store
        .record_event(
            &actor,
            &format!("credential.{}", status_verb(status)),
            "agent",
            id.as_str(),
            details,
        )
        .await?;
    Ok(Json(agent))
}

fn status_verb(status: AgentStatus) -> &'static str {
    match status {
        AgentStatus::Active => "resume",
        AgentStatus::Suspended => "suspend",
        AgentStatus::Revoked => "revoke",
    }
}

/// Suspend an agent: its tokens and its descendants' stop being accepted until it is resumed.
#[utoipa::path(post, path = "/v1/agents/{id}/suspend", tag = "agents", request_body(content = Option<StatusChange>),
    params(("id" = String, Path, description = "SPIFFE id or TEAM/NAME, URL-encoded")), security(("access_token" = [])),
    responses((status = 200, body = Agent), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
               (status = 409, body = ErrorBody)))]
pub(crate) async fn suspend_agent(
    State(state): State<AppState>,
    Caller(person): Caller,
    ApiPath(raw): ApiPath<String>,
    OptionalJson(change): OptionalJson<StatusChange>,
) -> Result<Json<Agent>, ApiError> {
    set_status(&state, &person, &raw, AgentStatus::Suspended, change).await
}

/// Resume a suspended agent; tokens issued from now on are accepted.
#[utoipa::path(post, path = "/v1/agents/{id}/resume", tag = "agents", request_body(content = Option<StatusChange>),
    params(("id" = String, Path, description = "SPIFFE id or TEAM/NAME, URL-encoded")), security(("access_token" = [])),
    responses((status = 200, body = Agent), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
               (status = 409, body = ErrorBody)))]
pub(crate) async fn resume_agent(
    State(state): State<AppState>,
    Caller(person): Caller,
    ApiPath(raw): ApiPath<String>,
    OptionalJson(change): OptionalJson<StatusChange>,
) -> Result<Json<Agent>, ApiError> {
    set_status(&state, &person, &raw, AgentStatus::Active, change).await
}

/// Revoke an agent and every subagent it delegated to. Permanent.
#[utoipa::path(post, path = "/v1/agents/{id}/revoke", tag = "agents", request_body(content = Option<StatusChange>),
    params(("id" = String, Path, description = "SPIFFE id or TEAM/NAME, URL-encoded")), security(("access_token" = [])),
    responses((status = 200, body = Agent), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn revoke_agent(
    State(state): State<AppState>,
    Caller(person): Caller,
    ApiPath(raw): ApiPath<String>,
    OptionalJson(change): OptionalJson<StatusChange>,
) -> Result<Json<Agent>, ApiError> {
    set_status(&state, &person, &raw, AgentStatus::Revoked, change).await
}

/// Grant a scope to an agent (platform-admin, or team-admin of the agent's team).
#[utoipa::path(post, path = "/v1/agents/{id}/grants", tag = "grants", request_body = GrantScope,
    params(("id" = String, Path, description = "SPIFFE id or TEAM/NAME, URL-encoded")), security(("access_token" = [])),
    responses((status = 201, body = Grant), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
               (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(crate) async fn grant_scope(
    State(state): State<AppState>,
    Caller(person): Caller,
    ApiPath(raw): ApiPath<String>,
    ApiJson(body): ApiJson<GrantScope>,
) -> Result<(StatusCode, Json<Grant>), ApiError> {
    let id = resolve_agent_id(&state, &raw)?;
    manage(&person, &id)?;
    let store = state.store.clone();
    let actor = Actor::person(&person.name);
    let scope = body.scope;
    let grant = state
        .policy
        .change(|engine| async move {
            // Separation of duties: decided with the agent as it is now, under the change lock, so no
            // concurrent grant or tag can slip between this check and the write.
            store.get_agent(&id).await?;
            let decision = engine.authorize_grant(&person, &id, &scope);
            let request = serde_json::json!({"scope": scope, "agent": id});
            super::policy::require_allowed(&store, &actor, &decision, "grant.refuse", id.as_str(), request).await?;
            let grant = store.grant(&actor, &scope, &id).await?;
            let next = engine
                .with_agent(&store.get_agent(&id).await?)
                .map_err(ApiError::internal)?;
            Ok::<_, ApiError>((grant, Some(next)))
        })
        .await?;
    Ok((StatusCode::CREATED, Json(grant)))
}

/// The scopes granted to one agent.
#[utoipa::path(get, path = "/v1/agents/{id}/grants", tag = "grants",
    params(("id" = String, Path, description = "SPIFFE id or TEAM/NAME, URL-encoded")), security(("access_token" = [])),
    responses((status = 200, body = Vec<Grant>), (status = 404, body = ErrorBody)))]
pub(crate) async fn list_agent_grants(
    State(state): State<AppState>,
    Caller(person): Caller,
    ApiPath(raw): ApiPath<String>,
) -> Result<Json<Vec<Grant>>, ApiError> {
    person.authorize(Operation::ReadRegistry)?;
    let id = resolve_agent_id(&state, &raw)?;
    state.store.get_agent(&id).await?;
    Ok(Json(state.store.list_grants(Some(&id)).await?))
}

/// Take a scope from an agent.
#[utoipa::path(delete, path = "/v1/agents/{id}/grants/{scope}", tag = "grants",
    params(("id" = String, Path, description = "SPIFFE id or TEAM/NAME, URL-encoded"),
           ("scope" = String, Path, description = "the scope's name")),
    security(("access_token" = [])),
    responses((status = 200, body = Grant), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn ungrant_scope(
    State(state): State<AppState>,
    Caller(person): Caller,
    ApiPath((raw, scope)): ApiPath<(String, Name)>,
) -> Result<Json<Grant>, ApiError> {
    let id = resolve_agent_id(&state, &raw)?;
    manage(&person, &id)?;
    let store = state.store.clone();
    let actor = Actor::person(&person.name);
    let grant = state
        .policy
        .change(|engine| async move {
            let grant = store.ungrant(&actor, &scope, &id).await?;
            let next = engine
                .with_agent(&store.get_agent(&id).await?)
                .map_err(ApiError::internal)?;
            Ok::<_, ApiError>((grant, Some(next)))
        })
        .await?;
    Ok(Json(grant))
}

/// Every grant in the fleet.
#[utoipa::path(get, path = "/v1/grants", tag = "grants", security(("access_token" = [])),
    responses((status = 200, body = Vec<Grant>)))]
pub(crate) async fn list_grants(
    State(state): State<AppState>,
    Caller(person): Caller,
) -> Result<Json<Vec<Grant>>, ApiError> {
    person.authorize(Operation::ReadRegistry)?;
    Ok(Json(state.store.list_grants(None).await?))
}

/// A tag to add.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AddTag {
    /// The tag, e.g. `customer-data`.
    tag: Name,
}

/// Tag an agent (platform-admin, or team-admin of its team); checked against the guardrails.
#[utoipa::path(post, path = "/v1/agents/{id}/tags", tag = "agents", request_body = AddTag,
    params(("id" = String, Path, description = "SPIFFE id or TEAM/NAME, URL-encoded")), security(("access_token" = [])),
    responses((status = 200, body = Agent), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
               (status = 404, body = ErrorBody)))]
pub(crate) async fn tag_agent(
    State(state): State<AppState>,
    Caller(person): Caller,
    ApiPath(raw): ApiPath<String>,
    ApiJson(body): ApiJson<AddTag>,
) -> Result<Json<Agent>, ApiError> {
    let id = resolve_agent_id(&state, &raw)?;
    manage(&person, &id)?;
    let store = state.store.clone();
    let actor = Actor::person(&person.name);
    let agent = state
        .policy
        .change(|engine| async move {
            store.get_agent(&id).await?;
            let decision = engine.authorize_tag(&person, &id, &body.tag);
            let request = serde_json::json!({"tag": body.tag, "agent": id});
            super::policy::require_allowed(&store, &actor, &decision, "tag.refuse", id.as_str(), request).await?;
            let agent = store.set_tag(&actor, &id, &body.tag, true).await?;
            let next = engine.with_agent(&agent).map_err(ApiError::internal)?;
            Ok::<_, ApiError>((agent, Some(next)))
        })
        .await?;
    Ok(Json(agent))
}

/// Remove a tag from an agent (platform-admin, or team-admin of its team).
#[utoipa::path(delete, path = "/v1/agents/{id}/tags/{tag}", tag = "agents",
    params(("id" = String, Path, description = "SPIFFE id or TEAM/NAME, URL-encoded"), ("tag" = String, Path, description = "the tag")),
    security(("access_token" = [])),
    responses((status = 200, body = Agent), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn untag_agent(
    State(state): State<AppState>,
    Caller(person): Caller,
    ApiPath((raw, tag)): ApiPath<(String, Name)>,
) -> Result<Json<Agent>, ApiError> {
    let id = resolve_agent_id(&state, &raw)?;
    manage(&person, &id)?;
    let store = state.store.clone();
    let actor = Actor::person(&person.name);
    let agent = state
        .policy
        .change(|engine| async move {
            let agent = store.set_tag(&actor, &id, &tag, false).await?;
            let next = engine.with_agent(&agent).map_err(ApiError::internal)?;
            Ok::<_, ApiError>((agent, Some(next)))
        })
        .await?;
    Ok(Json(agent))
}
