//! The agent-facing credential endpoints: `POST /oauth2/token` (client credentials, RFC 6749 §4.4, and
//! token exchange for subagents, RFC 8693), `POST /oauth2/introspect` (RFC 7662, for people and
//! tools), and `GET /.well-known/jwks.json`.
//!
//! Errors here follow RFC 6749 §5.2 (`{"error", "error_description"}`), not the `/v1` format, so any
//! OAuth client understands them. Every issue, delegation and refusal is recorded with the agent, its
//! delegation chain and the reason.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::json;
use warden_core::{AgentId, AgentStatus, Name, Operation};
use warden_identity::secret;
use warden_identity::token::{self, Claims};
use warden_store::{Actor, NewAgent};

use crate::credentials::now_unix;
use crate::extract::Caller;
use crate::state::AppState;

const CLIENT_CREDENTIALS: &str = "client_credentials";
const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
const JWT_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";

/// A token request, as form fields or JSON. Unknown parameters are ignored, as RFC 6749 §3.2 requires.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub(crate) struct TokenRequest {
    /// `client_credentials` or `urn:ietf:params:oauth:grant-type:token-exchange`.
    grant_type: String,
    /// The agent's id (client credentials; or use HTTP Basic).
    client_id: Option<String>,
    /// The agent's client secret (client credentials; or use HTTP Basic).
    client_secret: Option<String>,
    /// Space-separated scopes wanted; a subset of what the agent (or delegating token) holds.
    scope: Option<String>,
    /// Lifetime wanted in seconds; capped by the server's maximum.
    ttl: Option<i64>,
    /// The delegating agent's own access token (token exchange).
    subject_token: Option<String>,
    /// `urn:ietf:params:oauth:token-type:access_token` or `…:jwt` (token exchange).
    subject_token_type: Option<String>,
    /// The token type wanted (token exchange); only access tokens are issued.
    requested_token_type: Option<String>,
    /// The subagent's name (token exchange); its id extends the delegating agent's.
    name: Option<String>,
    /// The subagent's declared purpose (token exchange); defaults to the delegating agent's.
    purpose: Option<String>,
    /// The resource the token is for (RFC 8707); must be this Warden's gateway if given.
    resource: Option<String>,
    /// The audience wanted (RFC 8693); must be this Warden's gateway if given.
    audience: Option<String>,
}

/// An issued token.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct TokenResponse {
    /// The JWT.
    access_token: String,
    /// Always `Bearer`.
    token_type: &'static str,
    /// Seconds until it expires.
    expires_in: i64,
    /// The scopes it carries, space separated.
    scope: String,
    /// For token exchange: `urn:ietf:params:oauth:token-type:access_token`.
    #[serde(skip_serializing_if = "Option::is_none")]
    issued_token_type: Option<&'static str>,
    /// The agent the token acts as.
    agent_id: String,
}

/// An OAuth error (RFC 6749 §5.2).
#[derive(Debug)]
pub(crate) struct OAuthError {
    status: StatusCode,
    error: &'static str,
    description: String,
}

impl OAuthError {
    fn new(error: &'static str, description: impl Into<String>) -> OAuthError {
        let status = if error == "invalid_client" {
            StatusCode::UNAUTHORIZED
        } else {
            StatusCode::BAD_REQUEST
        };
        OAuthError {
            status,
            error,
            description: description.into(),
        }
    }

    /// Why, as told to the client.
    pub(crate) fn description(&self) -> &str {
        &self.description
    }

    fn server(cause: impl std::fmt::Display) -> OAuthError {
        tracing::error!("token endpoint failed: {cause}");
        OAuthError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            error: "server_error",
            description: "internal error; see the server log".to_owned(),
        }
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let mut res = (
            self.status,
            Json(json!({"error": self.error, "error_description": self.description})),
        )
            .into_response();
        res.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if self.status == StatusCode::UNAUTHORIZED {
            res.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"warden\""),
            );
        }
        res
    }
}

/// Parses a form or JSON body.
fn parse_body<T: for<'de> Deserialize<'de>>(headers: &HeaderMap, body: &Bytes) -> Result<T, OAuthError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let media = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    match media.as_str() {
        "application/x-www-form-urlencoded" => serde_urlencoded::from_bytes(body)
            .map_err(|e| OAuthError::new("invalid_request", format!("the form body is invalid: {e}"))),
        "application/json" => serde_json::from_slice(body)
            .map_err(|e| OAuthError::new("invalid_request", format!("the JSON body is invalid: {e}"))),
        _ => Err(OAuthError::new(
            "invalid_request",
            "the body must be `application/x-www-form-urlencoded` or `application/json`",
        )),
    }
}

/// Client credentials from HTTP Basic (RFC 6749 §2.3.1: each part form-urlencoded).
fn basic_credentials(headers: &HeaderMap) -> Result<Option<(String, String)>, OAuthError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let bad = || {
        OAuthError::new(
            "invalid_client",
            "the Authorization header must be `Basic base64(client_id:client_secret)`",
        )
    };
    let value = value.to_str().map_err(|_| bad())?;
    let Some(encoded) = value.strip_prefix("Basic ") else {
        return Ok(None);
    };
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| bad())?;
    let decoded = String::from_utf8(decoded).map_err(|_| bad())?;
    let (id, secret) = decoded.split_once(':').ok_or_else(bad)?;
    let unescape = |s: &str| -> Result<String, OAuthError> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(&format!("v={s}")).map_err(|_| bad())?;
        Ok(pairs.into_iter().next().map(|(_, v)| v).unwrap_or_default())
    };
    Ok(Some((unescape(id)?, unescape(secret)?)))
}

fn requested_scopes(scope: Option<&str>) -> Result<Option<Vec<Name>>, OAuthError> {
    let Some(scope) = scope else { return Ok(None) };
    let mut names = Vec::new();
    for item in scope.split_ascii_whitespace() {
        let name = Name::parse(item).map_err(|e| OAuthError::new("invalid_scope", e.to_string()))?;
        if !names.contains(&name) {
            names.push(name);
        }
    }
    Ok(Some(names))
}

impl AppState {
    fn ttl(&self, requested: Option<i64>) -> Result<i64, OAuthError> {
        let max = self.credentials.policy.max_ttl_secs;
        match requested {
            None => Ok(max),
            Some(ttl) if ttl < 1 => Err(OAuthError::new(
                "invalid_request",
                format!("`ttl` must be at least 1 second, not {ttl}"),
            )),
            Some(ttl) => Ok(ttl.min(max)),
        }
    }

    fn check_audience(&self, request: &TokenRequest) -> Result<(), OAuthError> {
        for (field, value) in [("resource", &request.resource), ("audience", &request.audience)] {
            if let Some(value) = value
                && *value != self.credentials.audience
            {
                return Err(OAuthError::new(
                    "invalid_target",
                    format!(
                        "`{field}` `{value}` is not this Warden's gateway `{}`",
                        self.credentials.audience
                    ),
                ));
            }
        }
        Ok(())
    }

    fn mint(&self, claims: &Claims) -> Result<String, OAuthError> {
        let keys = self
            .credentials
            .keys
            .read()
            .map_err(|_| OAuthError::server("key ring lock poisoned"))?;
        token::mint(keys.active(), claims).map_err(OAuthError::server)
    }

    async fn refuse(&self, agent: &str, chain: &[&str], grant: &str, err: OAuthError) -> OAuthError {
        let details =
            json!({"agent": agent, "chain": chain, "grant_type": grant, "error": err.error, "reason": err.description});
        let actor = AgentId::parse(agent)
            .map(|id| Actor::agent(&id))
            .unwrap_or_else(|_| Actor::system());
        if let Err(e) = self
            .store
            .record_event(&actor, "credential.refuse", "agent", agent, details)
            .await
        {
            return OAuthError::server(e);
        }
        err
    }
}

/// Trade agent credentials for an access token, or a token for a subagent's (RFC 8693).
#[utoipa::path(post, path = "/oauth2/token", tag = "oauth",
    request_body(content(
        (TokenRequest = "application/x-www-form-urlencoded"),
        (TokenRequest = "application/json"))),
    responses((status = 200, body = TokenResponse),
               (status = 400, description = "RFC 6749 error: invalid_request, invalid_grant, invalid_scope, unsupported_grant_type, invalid_target"),
               (status = 401, description = "RFC 6749 error: invalid_client")))]
pub(crate) async fn token(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let result = match parse_body::<TokenRequest>(&headers, &body) {
        Ok(request) => match request.grant_type.as_str() {
            CLIENT_CREDENTIALS => client_credentials(&state, &headers, request).await,
            TOKEN_EXCHANGE => token_exchange(&state, request).await,
            other => Err(OAuthError::new(
                "unsupported_grant_type",
                format!("grant type `{other}` is not supported; use `{CLIENT_CREDENTIALS}` or `{TOKEN_EXCHANGE}`"),
            )),
        },
        Err(err) => Err(err),
    };
    match result {
        Ok(res) => {
            let mut res = Json(res).into_response();
            res.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            res
        }
        Err(err) => err.into_response(),
    }
}

async fn client_credentials(
    state: &AppState,
    headers: &HeaderMap,
    request: TokenRequest,
) -> Result<TokenResponse, OAuthError> {
    let (client_id, client_secret) = match (
        basic_credentials(headers)?,
        request.client_id.clone(),
        request.client_secret.clone(),
    ) {
        (Some(pair), None, None) => pair,
        (None, Some(id), Some(secret)) => (id, secret),
        (Some(_), _, _) => {
            return Err(OAuthError::new(
                "invalid_request",
                "give the client credentials once: HTTP Basic or the body, not both",
            ));
        }
        _ => {
            return Err(OAuthError::new(
                "invalid_request",
                "`client_id` and `client_secret` are required",
            ));
        }
    };
    let grant = CLIENT_CREDENTIALS;
    let id = AgentId::parse(&client_id).map_err(|e| OAuthError::new("invalid_client", e.to_string()))?;
    let stored = state.store.agent_credentials(&id).await.map_err(OAuthError::server)?;
    let agent = match stored {
        Some(warden_store::AgentCredentials {
            agent,
            secret_hash: Some(hash),
        }) if secret::verify(&client_secret, &hash) => agent,
        _ => {
            let err = OAuthError::new(
                "invalid_client",
                format!("client authentication failed for `{id}`: unknown agent or wrong secret"),
            );
            return Err(state.refuse(id.as_str(), &[id.as_str()], grant, err).await);
        }
    };
    if agent.status != AgentStatus::Active {
        let err = OAuthError::new("invalid_grant", format!("agent `{id}` is {}", agent.status));
        return Err(state.refuse(id.as_str(), &[id.as_str()], grant, err).await);
    }
    state.check_audience(&request)?;
    let scopes = match requested_scopes(request.scope.as_deref())? {
        None => agent.scopes.clone(),
        Some(wanted) => {
            if let Some(missing) = wanted.iter().find(|s| !agent.scopes.contains(s)) {
                let err = OAuthError::new(
                    "invalid_scope",
                    format!("scope `{missing}` is not granted to agent `{id}`"),
                );
                return Err(state.refuse(id.as_str(), &[id.as_str()], grant, err).await);
            }
            wanted
        }
    };
    let ttl = state.ttl(request.ttl)?;
    let now = now_unix();
    let claims = Claims {
        iss: state.credentials.issuer.clone(),
        sub: id.to_string(),
        aud: state.credentials.audience.clone(),
        exp: now + ttl,
        iat: now,
        nbf: now,
        jti: secret::random_hex(16).map_err(OAuthError::server)?,
        team: agent.team.to_string(),
        scope: scopes.iter().map(Name::as_str).collect::<Vec<_>>().join(" "),
        act: None,
        dlg_depth: 0,
    };
    let access_token = state.mint(&claims)?;
    let details = json!({"agent": id, "chain": [id], "jti": claims.jti, "scope": claims.scope, "exp": claims.exp});
    state
        .store
        .record_event(&Actor::agent(&id), "credential.issue", "agent", id.as_str(), details)
        .await
        .map_err(OAuthError::server)?;
    Ok(TokenResponse {
        access_token,
        token_type: "Bearer",
        expires_in: ttl,
        scope: claims.scope,
        issued_token_type: None,
        agent_id: id.to_string(),
    })
}

async fn token_exchange(state: &AppState, request: TokenRequest) -> Result<TokenResponse, OAuthError> {
    let grant = TOKEN_EXCHANGE;
    let subject = request.subject_token.as_deref().ok_or_else(|| {
        OAuthError::new(
            "invalid_request",
            "`subject_token` is required: the delegating agent's own access token",
        )
    })?;
    match request.subject_token_type.as_deref() {
        None | Some(ACCESS_TOKEN_TYPE | JWT_TOKEN_TYPE) => {}
        Some(other) => {
            return Err(OAuthError::new(
                "invalid_request",
                format!("`subject_token_type` `{other}` is not supported; use `{ACCESS_TOKEN_TYPE}`"),
            ));
        }
    }
    match request.requested_token_type.as_deref() {
        None | Some(ACCESS_TOKEN_TYPE | JWT_TOKEN_TYPE) => {}
        Some(other) => {
            return Err(OAuthError::new(
                "invalid_request",
                format!("`requested_token_type` `{other}` is not supported; only access tokens are issued"),
            ));
        }
    }
    let name = request
        .name
        .as_deref()
        .ok_or_else(|| OAuthError::new("invalid_request", "`name` is required: the subagent's name"))?;
    let name = Name::parse(name).map_err(|e| OAuthError::new("invalid_request", e.to_string()))?;
    state.check_audience(&request)?;

    let parent = match state.credentials.verify(subject) {
        Ok(verified) => verified.into_claims(),
        Err(e) => {
            let err = OAuthError::new("invalid_grant", format!("the subject token is not accepted: {e}"));
            return Err(state.refuse("unknown", &[], grant, err).await);
        }
    };
    let requested = requested_scopes(request.scope.as_deref())?;
    let (child, scopes) = delegate(state, &parent, &name, requested, request.purpose.as_deref()).await?;
    let ttl = state.ttl(request.ttl)?;
    let scope = scopes.iter().map(Name::as_str).collect::<Vec<_>>().join(" ");
    let claims = parent.delegated(
        &child.id,
        scope,
        secret::random_hex(16).map_err(OAuthError::server)?,
        now_unix(),
        ttl,
    );
    let access_token = state.mint(&claims)?;
    let parent_id =
        AgentId::parse(parent.acting_agent()).map_err(|e| OAuthError::new("invalid_grant", e.to_string()))?;
    let details = json!({"agent": child.id, "chain": claims.chain(), "jti": claims.jti, "scope": claims.scope, "exp": claims.exp, "dlg_depth": claims.dlg_depth});
    state
        .store
        .record_event(
            &Actor::agent(&parent_id),
            "credential.delegate",
            "agent",
            child.id.as_str(),
            details,
        )
        .await
        .map_err(OAuthError::server)?;
    Ok(TokenResponse {
        access_token,
        token_type: "Bearer",
        expires_in: claims.exp - now_unix(),
        scope: claims.scope,
        issued_token_type: Some(ACCESS_TOKEN_TYPE),
        agent_id: child.id.to_string(),
    })
}

/// Delegation from the acting agent of `parent` (a verified token) to its subagent `name`: checks the
/// depth limit, that `requested` scopes (default: all the token's) are a subset of the token's, that
/// the parent is active and that the guardrails allow `delegate`; then registers the subagent (or
/// reuses it) with those scopes. Every refusal is recorded. Token exchange and the Claude Code hook
/// (a subagent's identity) both delegate through here.
pub(crate) async fn delegate(
    state: &AppState,
    parent: &Claims,
    name: &Name,
    requested: Option<Vec<Name>>,
    purpose: Option<&str>,
) -> Result<(warden_core::Agent, Vec<Name>), OAuthError> {
    let grant = TOKEN_EXCHANGE;
    let chain: Vec<&str> = parent.chain();
    let parent_id =
        AgentId::parse(parent.acting_agent()).map_err(|e| OAuthError::new("invalid_grant", e.to_string()))?;
    let child_id = parent_id.child(name);
    let depth = parent.dlg_depth.saturating_add(1);
    let max_depth = state.credentials.policy.max_depth;
    if depth > max_depth {
        let err = OAuthError::new(
            "invalid_grant",
            format!(
                "delegating from `{parent_id}` would reach depth {depth}, beyond this Warden's limit of {max_depth}"
            ),
        );
        return Err(state.refuse(child_id.as_str(), &chain, grant, err).await);
    }
    let held: Vec<&str> = parent.scopes().collect();
    let scopes = match requested {
        None => held.iter().filter_map(|s| Name::parse(s).ok()).collect(),
        Some(wanted) => {
            if let Some(missing) = wanted.iter().find(|s| !held.contains(&s.as_str())) {
                let err = OAuthError::new(
                    "invalid_scope",
                    format!(
                        "scope `{missing}` is not held by the delegating token of `{parent_id}`; a subagent gets a subset of its parent's scopes"
                    ),
                );
                return Err(state.refuse(child_id.as_str(), &chain, grant, err).await);
            }
            wanted
        }
    };
    let parent_agent = state
        .store
        .get_agent(&parent_id)
        .await
        .map_err(|e| OAuthError::new("invalid_grant", e.to_string()))?;
    if parent_agent.status != AgentStatus::Active {
        let err = OAuthError::new(
            "invalid_grant",
            format!("agent `{parent_id}` is {}", parent_agent.status),
        );
        return Err(state.refuse(child_id.as_str(), &chain, grant, err).await);
    }
    let purpose = match purpose.map(str::trim) {
        Some("") | None => parent_agent.purpose.clone(),
        Some(p) if p.chars().count() > 1000 || p.chars().any(char::is_control) => {
            return Err(OAuthError::new(
                "invalid_request",
                "`purpose` must be at most 1000 characters without control characters",
            ));
        }
        Some(p) => p.to_owned(),
    };
    let new = NewAgent {
        id: child_id.clone(),
        owner: parent_agent.owner.clone(),
        purpose,
        tags: parent_agent.tags.clone(),
        origin: warden_core::Origin::Delegated,
        secret_hash: None,
        template: None,
    };
    // The guardrails decide `delegate`, under the policy change lock so the decision and the
    // registration cannot interleave with another change.
    let (parent_for_policy, name_for_policy, scopes_for_policy) = (parent_id.clone(), name.clone(), scopes.clone());
    let store = state.store.clone();
    let registered = state
        .policy
        .change(|engine| async move {
            let (parent_id, name, scopes) = (parent_for_policy, name_for_policy, scopes_for_policy);
            let decision = engine.authorize_delegate(&parent_id, &name, &scopes);
            if !decision.allow {
                let refusal = format!("{} (policies: {})", decision.reason, decision.policy_ids.join(", "));
                return Err(OAuthError::new("invalid_grant", refusal));
            }
            let child = match store.register_subagent(&Actor::agent(&parent_id), new, scopes).await {
                Ok(child) => child,
                Err(e @ warden_store::StoreError::Conflict(_)) => {
                    return Err(OAuthError::new("invalid_grant", e.to_string()));
                }
                Err(e) => return Err(OAuthError::server(e)),
            };
            let next = engine.with_agent(&child).map_err(OAuthError::server)?;
            Ok((child, Some(next)))
        })
        .await;
    let child = match registered {
        Ok(child) => child,
        Err(err) if err.error == "invalid_grant" => {
            return Err(state.refuse(child_id.as_str(), &chain, grant, err).await);
        }
        Err(err) => return Err(err),
    };
    Ok((child, scopes))
}

/// A token to introspect.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct IntrospectRequest {
    /// The agent access token.
    token: String,
    /// Ignored hint (RFC 7662).
    token_type_hint: Option<String>,
}

/// Whether a token is accepted right now, and its claims if so (RFC 7662 with a `reason`).
#[utoipa::path(post, path = "/oauth2/introspect", tag = "oauth", security(("access_token" = [])),
    request_body(content((IntrospectRequest = "application/x-www-form-urlencoded"), (IntrospectRequest = "application/json"))),
    responses((status = 200, description = "`{\"active\": true, …claims}` or `{\"active\": false, \"reason\": …}`")))]
pub(crate) async fn introspect(
    State(state): State<AppState>,
    Caller(person): Caller,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(denied) = person.authorize(Operation::ReadRegistry) {
        return crate::error::ApiError::from(denied).into_response();
    }
    let request: IntrospectRequest = match parse_body(&headers, &body) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let _ = request.token_type_hint;
    let body = match state.credentials.verify(&request.token) {
        Ok(verified) => {
            let mut value = serde_json::to_value(verified.claims()).unwrap_or_default();
            value["active"] = json!(true);
            value["agent_id"] = json!(verified.claims().acting_agent());
            value["chain"] = json!(verified.claims().chain());
            value
        }
        Err(e) => json!({"active": false, "reason": e.to_string()}),
    };
    Json(body).into_response()
}

/// The public keys that verify every Warden token.
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "oauth",
    responses((status = 200, description = "a JWKS of Ed25519 (OKP) keys with `kid`s")))]
pub(crate) async fn jwks(State(state): State<AppState>) -> Response {
    let Ok(keys) = state.credentials.keys.read() else {
        return OAuthError::server("key ring lock poisoned").into_response();
    };
    let doc = keys.jwks(now_unix(), state.credentials.policy.max_ttl_secs);
    let mut res = Json(doc).into_response();
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=60"));
    res
}
