//! The gateway's HTTP surface: MCP Streamable HTTP (2025-11-25) at `/mcp` and `/mcp/{server}`, and
//! the RFC 9728 protected resource metadata under `/.well-known/oauth-protected-resource`.
//!
//! This module owns everything about a request before and after the MCP semantics: the `Origin`
//! check, bearer authentication, the body limit, JSON-RPC parsing, session lookup and its binding to
//! the authenticated agent, status codes and headers. It must never accept a token from anywhere but
//! the `Authorization` header, and never panic on what a client sends.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::header::{ALLOW, AUTHORIZATION, CONTENT_TYPE, HOST, ORIGIN, RETRY_AFTER, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use warden_core::Name;
use warden_mcp::jsonrpc::{ErrorObject, Message, Request, Response as RpcResponse};

use crate::audit::CloseReason;
use crate::control::{AgentIdentity, AuthError};
use crate::gateway::{Answer, Exchange, Gateway, Shared, excerpt};
use crate::modern;
use crate::progress::{self, ProgressRelay};
use crate::session::{Endpoint, Session};

const MCP_SESSION_ID: HeaderName = HeaderName::from_static("mcp-session-id");
const MCP_PROTOCOL_VERSION: HeaderName = HeaderName::from_static("mcp-protocol-version");
const METADATA_PATH: &str = "/.well-known/oauth-protected-resource";
/// The JSON-RPC error code MCP servers use for an unknown or ended session.
const SESSION_NOT_FOUND: i64 = -32001;

type SharedState = Arc<Shared>;

impl Gateway {
    /// The gateway's routes, state included: `/mcp`, `/mcp/{server}`, and the protected resource
    /// metadata at `/.well-known/oauth-protected-resource` (also under `/mcp` and `/mcp/{server}`).
    pub fn router(&self) -> Router {
        Router::new()
            .route("/mcp", any(aggregate))
            .route("/mcp/{server}", any(one_server))
            .route(METADATA_PATH, get(metadata_root))
            .route(&format!("{METADATA_PATH}/mcp"), get(metadata_aggregate))
            .route(&format!("{METADATA_PATH}/mcp/{{server}}"), get(metadata_server))
            .with_state(Arc::clone(&self.shared))
    }
}

async fn aggregate(State(shared): State<SharedState>, method: Method, headers: HeaderMap, body: Body) -> Response {
    handle(shared, None, method, headers, body).await
}

async fn one_server(
    State(shared): State<SharedState>,
    Path(server): Path<String>,
    method: Method,
    headers: HeaderMap,
    body: Body,
) -> Response {
    handle(shared, Some(server), method, headers, body).await
}

async fn handle(
    shared: SharedState,
    server: Option<String>,
    method: Method,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if shared.shutting_down.load(Ordering::SeqCst) {
        return json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"error": "unavailable", "error_description": "the gateway is shutting down"}),
        );
    }
    if let Some(origin) = headers.get(ORIGIN)
        && !origin_allowed(origin, shared.config.public_url.as_deref())
    {
        return json_response(
            StatusCode::FORBIDDEN,
            &json!({"error": "forbidden", "error_description": "requests from this origin are not accepted"}),
        );
    }
    let identity = match authenticate(&shared, &headers).await {
        Ok(identity) => identity,
        Err(response) => return response,
    };
    let endpoint = match server {
        None => Endpoint::Aggregate,
        Some(server) => {
            let registered = Name::parse(&server)
                .ok()
                .filter(|name| shared.control.servers().iter().any(|spec| spec.name == *name));
            match registered {
                Some(name) => Endpoint::Server(name),
                None => {
                    let description = format!("no mcp server `{}` is registered", excerpt(&server));
                    return json_response(
                        StatusCode::NOT_FOUND,
                        &json!({"error": "not_found", "error_description": description}),
                    );
                }
            }
        }
    };
    match method {
        Method::POST => post(&shared, &identity, endpoint, &headers, body).await,
        Method::DELETE => match session_for(&shared, &headers, &identity, &endpoint).await {
            Ok(session) => {
                if shared.sessions.remove(&session.id).is_some() {
                    tracing::info!(agent = %identity.agent, session = %session.id, "session ended by the client");
                    shared.closed(&session, CloseReason::Deleted).await;
                }
                StatusCode::OK.into_response()
            }
            Err(response) => response,
        },
        // No server-to-client stream: the gateway sends nothing unprompted.
        _ => (StatusCode::METHOD_NOT_ALLOWED, [(ALLOW, "POST, DELETE")]).into_response(),
    }
}

async fn post(
    shared: &SharedState,
    identity: &AgentIdentity,
    endpoint: Endpoint,
    headers: &HeaderMap,
    body: Body,
) -> Response {
    let limit = shared.config.max_body_bytes;
    let Ok(bytes) = axum::body::to_bytes(body, limit).await else {
        let error = ErrorObject::new(
            ErrorObject::INVALID_REQUEST,
            format!("the request body could not be read; at most {limit} bytes are accepted"),
        );
        return rpc_response(StatusCode::PAYLOAD_TOO_LARGE, RpcResponse::error(None, error));
    };
    let message = match Message::parse(&bytes) {
        Ok(message) => message,
        Err(err) => return rpc_response(StatusCode::BAD_REQUEST, err.to_response()),
    };
    let version = headers
        .get(MCP_PROTOCOL_VERSION)
        .map(|v| v.to_str().unwrap_or("(not ascii)"));
    let initialize = matches!(&message, Message::Request(r) if r.method == "initialize");
    if modern::is_modern(version) && !initialize {
        return post_modern(shared, identity, endpoint, headers, message).await;
    }
    let request = match message {
        Message::Request(request) => request,
        // Notifications and responses need a live session of this agent, then are acknowledged.
        Message::Notification(_) | Message::Response(_) => {
            return match session_for(shared, headers, identity, &endpoint).await {
                Ok(_) => StatusCode::ACCEPTED.into_response(),
                Err(response) => response,
            };
        }
    };
    if request.method == "initialize" {
        return match shared.initialize(identity, endpoint, request.params.as_ref()).await {
            Ok((session, result)) => {
                let mut response = rpc_response(StatusCode::OK, RpcResponse::success(request.id, result));
                if let Ok(value) = HeaderValue::from_str(&session.id) {
                    response.headers_mut().insert(MCP_SESSION_ID, value);
                }
                response
            }
            Err(error) => rpc_response(StatusCode::OK, RpcResponse::error(Some(request.id), error)),
        };
    }
    if request.method == "server/discover" {
        // A discovery probe without a 2026-07-28 `MCP-Protocol-Version` header: name the revisions.
        let error = modern::unsupported_version(requested_version(request.params.as_ref()).as_deref());
        return rpc_response(StatusCode::BAD_REQUEST, RpcResponse::error(Some(request.id), error));
    }
    let session = match session_for(shared, headers, identity, &endpoint).await {
        Ok(session) => session,
        Err(response) => return response,
    };
    let exchange = Exchange::of(&session);
    if let Some((relay, events)) = ProgressRelay::for_request(&request.method, request.params.as_ref(), headers) {
        return stream_call(shared, exchange, identity, request, (relay, events), &HANDSHAKE_ERA).await;
    }
    let answer = shared
        .dispatch(&exchange, identity, &request.method, request.params, None)
        .await;
    let response = match answer {
        Ok(result) => RpcResponse::success(request.id, result),
        Err(error) => RpcResponse::error(Some(request.id), error),
    };
    rpc_response(StatusCode::OK, response)
}

/// A request of the 2026-07-28 revision: no session; the envelope and headers are checked on every
/// request, and results take the modern shape.
async fn post_modern(
    shared: &SharedState,
    identity: &AgentIdentity,
    endpoint: Endpoint,
    headers: &HeaderMap,
    message: Message,
) -> Response {
    let Message::Request(request) = message else {
        // Notifications (a courtesy `notifications/cancelled`, say) need no answer.
        return StatusCode::ACCEPTED.into_response();
    };
    let checked = modern::check(&request, headers);
    if checked.is_ok()
        && let Some(relay) = ProgressRelay::for_request(&request.method, request.params.as_ref(), headers)
    {
        let exchange = Exchange {
            endpoint,
            session: None,
        };
        return stream_call(shared, exchange, identity, request, relay, &MODERN_ERA).await;
    }
    let answer = match checked {
        Err(error) => Err(error),
        Ok(()) => match request.method.as_str() {
            "server/discover" => Ok(modern::discover(&endpoint)),
            // The handshake and `ping` do not exist in this revision.
            "initialize" | "ping" => Err(ErrorObject::new(
                ErrorObject::METHOD_NOT_FOUND,
                format!("method `{}` does not exist in this protocol revision", request.method),
            )),
            method => {
                let exchange = Exchange {
                    endpoint,
                    session: None,
                };
                let answer = shared.dispatch(&exchange, identity, method, request.params, None).await;
                answer.map(|result| modern::shape(method, result))
            }
        },
    };
    match answer {
        Ok(result) => rpc_response(StatusCode::OK, RpcResponse::success(request.id, result)),
        Err(error) => rpc_response(modern::status_for(&error), RpcResponse::error(Some(request.id), error)),
    }
}

/// How a protocol era answers a tool call: the shape of its result, and the HTTP status of an error.
struct Era {
    shape: fn(Answer) -> Answer,
    status: fn(&ErrorObject) -> StatusCode,
}

/// The handshake era (2025-11-25 and before): results as they are, errors with a 200.
const HANDSHAKE_ERA: Era = Era {
    shape: |answer| answer,
    status: |_| StatusCode::OK,
};

/// The 2026-07-28 revision: modern result shapes, errors with their HTTP status.
const MODERN_ERA: Era = Era {
    shape: |answer| answer.map(|result| modern::shape("tools/call", result)),
    status: modern::status_for,
};

/// Answers a call that asked for progress. Once the upstream reports progress the answer is an SSE
/// stream: the progress notifications as they come, then the response (its result in the era's
/// shape). A call answered before any progress (a denial, say) gets a plain JSON response, with
/// the era's status for an error. The call runs to its end, outcome recorded, whether or not
/// the client stays to read.
async fn stream_call(
    shared: &SharedState,
    exchange: Exchange,
    identity: &AgentIdentity,
    request: Request,
    (relay, mut events): (ProgressRelay, mpsc::Receiver<Message>),
    era: &Era,
) -> Response {
    let (shape, status) = (era.shape, era.status);
    let (shared, identity, id) = (Arc::clone(shared), identity.clone(), request.id.clone());
    let last = relay.sender();
    tokio::spawn(async move {
        let answer = shared
            .dispatch(&exchange, &identity, &request.method, request.params, Some(relay))
            .await;
        let response = match shape(answer) {
            Ok(result) => RpcResponse::success(request.id, result),
            Err(error) => RpcResponse::error(Some(request.id), error),
        };
        // A client that went away reads nothing more; the call is answered and recorded regardless.
        let _ = last.send(Message::Response(response)).await;
    });
    match events.recv().await {
        Some(Message::Response(response)) => {
            let code = response.outcome.as_ref().err().map_or(StatusCode::OK, status);
            rpc_response(code, response)
        }
        Some(first) => progress::event_stream(first, events),
        None => {
            tracing::error!("a tool call task ended without an answer");
            let error = ErrorObject::new(ErrorObject::INTERNAL_ERROR, "internal error");
            rpc_response(StatusCode::INTERNAL_SERVER_ERROR, RpcResponse::error(Some(id), error))
        }
    }
}

/// The session the request names, if it is open, belongs to this agent and endpoint, and the agent
/// may still hold it. Otherwise the response to send: 400 without a session id, 404 for a session
/// that is not this agent's here, 401 (and the session ended) for an agent that may no longer act.
async fn session_for(
    shared: &SharedState,
    headers: &HeaderMap,
    identity: &AgentIdentity,
    endpoint: &Endpoint,
) -> Result<Arc<Session>, Response> {
    let Some(id) = headers.get(MCP_SESSION_ID).and_then(|v| v.to_str().ok()) else {
        let error = ErrorObject::new(
            ErrorObject::INVALID_REQUEST,
            "missing `Mcp-Session-Id` header; send `initialize` first",
        );
        return Err(rpc_response(StatusCode::BAD_REQUEST, RpcResponse::error(None, error)));
    };
    let not_found = || {
        let error = ErrorObject::new(SESSION_NOT_FOUND, "session not found");
        rpc_response(StatusCode::NOT_FOUND, RpcResponse::error(None, error))
    };
    let (session, expired) = shared.sessions.get(id, shared.config.session_idle_timeout);
    if let Some(expired) = expired {
        shared.closed(&expired, CloseReason::Expired).await;
    }
    let Some(session) = session else {
        return Err(not_found());
    };
    if !session.belongs_to(identity) || session.endpoint != *endpoint {
        // Indistinguishable from an unknown session: nothing about other agents' sessions leaks.
        return Err(not_found());
    }
    // No second check of the token here: `identity` was authenticated (signature, expiry and the
    // revocation of every agent in its chain) for this very request.
    Ok(session)
}

/// The identity behind the request's bearer token, or the 401 (or 503) to send.
async fn authenticate(shared: &SharedState, headers: &HeaderMap) -> Result<AgentIdentity, Response> {
    let Some(value) = headers.get(AUTHORIZATION) else {
        return Err(unauthorized(shared, headers, None));
    };
    let bearer = value
        .to_str()
        .ok()
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .filter(|token| !token.is_empty());
    let Some(bearer) = bearer else {
        let reason = "the `Authorization` header must be `Bearer <token>`".to_owned();
        return Err(unauthorized(shared, headers, Some(reason)));
    };
    match shared.control.authenticate(bearer) {
        Ok(identity) => Ok(identity),
        Err(AuthError::Invalid(reason)) => {
            // A session whose agent may no longer act is ended now, whoever presents its id.
            if let Some(id) = headers.get(MCP_SESSION_ID).and_then(|v| v.to_str().ok())
                && let Some(session) = shared.sessions.peek(id)
                && matches!(
                    shared.control.still_valid(&session.identity),
                    Err(AuthError::Invalid(_))
                )
                && shared.sessions.remove(id).is_some()
            {
                tracing::info!(agent = %session.identity.agent, session = %session.id, "session invalidated");
                shared.closed(&session, CloseReason::Invalidated).await;
            }
            Err(unauthorized(shared, headers, Some(reason)))
        }
        // Nobody is let in, but nobody's session is ended either: the token may be fine, and the
        // session goes on once the control plane vouches again.
        Err(AuthError::Unavailable { reason, retry_after }) => Err(unavailable(&reason, retry_after)),
    }
}

/// A 503 for a control plane that cannot vouch for anyone right now, with when to ask again.
fn unavailable(reason: &str, retry_after: Duration) -> Response {
    let mut response = json_response(
        StatusCode::SERVICE_UNAVAILABLE,
        &json!({"error": "temporarily_unavailable", "error_description": reason}),
    );
    let secs = retry_after.as_secs().max(1);
    response.headers_mut().insert(RETRY_AFTER, HeaderValue::from(secs));
    response
}

/// A 401 pointing at the protected resource metadata; `invalid` holds why a presented token was
/// refused.
fn unauthorized(shared: &SharedState, headers: &HeaderMap, invalid: Option<String>) -> Response {
    let metadata = format!("{}{METADATA_PATH}", base_url(shared, headers));
    let (challenge, body) = match invalid {
        None => (
            format!("Bearer resource_metadata=\"{metadata}\""),
            json!({
                "error": "unauthorized",
                "error_description": "an `Authorization: Bearer <token>` header with a Warden agent token is required",
            }),
        ),
        Some(reason) => (
            format!("Bearer resource_metadata=\"{metadata}\", error=\"invalid_token\""),
            json!({"error": "invalid_token", "error_description": reason}),
        ),
    };
    let mut response = json_response(StatusCode::UNAUTHORIZED, &body);
    if let Ok(value) = HeaderValue::from_str(&challenge) {
        response.headers_mut().insert(WWW_AUTHENTICATE, value);
    }
    response
}

/// The revision a 2026-07-28 request names in `params._meta`.
fn requested_version(params: Option<&Value>) -> Option<String> {
    params?
        .get("_meta")?
        .get("io.modelcontextprotocol/protocolVersion")?
        .as_str()
        .map(excerpt)
}

async fn metadata_root(State(shared): State<SharedState>, headers: HeaderMap) -> Response {
    metadata(&shared, &headers, "")
}

async fn metadata_aggregate(State(shared): State<SharedState>, headers: HeaderMap) -> Response {
    metadata(&shared, &headers, "/mcp")
}

async fn metadata_server(
    State(shared): State<SharedState>,
    Path(server): Path<String>,
    headers: HeaderMap,
) -> Response {
    match Name::parse(&server) {
        Ok(name) => metadata(&shared, &headers, &format!("/mcp/{name}")),
        Err(_) => StatusCode::NOT_FOUND.into_response(),
    }
}

/// RFC 9728 metadata for the resource at `path` below the base URL.
fn metadata(shared: &SharedState, headers: &HeaderMap, path: &str) -> Response {
    let resource = format!("{}{path}", base_url(shared, headers));
    json_response(
        StatusCode::OK,
        &json!({
            "resource": resource,
            "authorization_servers": [shared.config.issuer_url],
            "bearer_methods_supported": ["header"],
            "resource_name": "Warden MCP gateway",
        }),
    )
}

/// The configured public URL, else `http://<Host>` (a `Host` with unexpected characters is not used).
fn base_url(shared: &SharedState, headers: &HeaderMap) -> String {
    if let Some(url) = &shared.config.public_url {
        return url.trim_end_matches('/').to_owned();
    }
    let host = headers
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c)))
        .unwrap_or("localhost");
    format!("http://{host}")
}

/// Whether a browser `Origin` may call the gateway: loopback origins and the configured public URL.
/// An origin merely matching the request's `Host` is not enough: a DNS-rebinding page sends exactly
/// that pair (`Origin: http://evil.example:8470`, `Host: evil.example:8470`) to a local gateway.
fn origin_allowed(origin: &HeaderValue, public_url: Option<&str>) -> bool {
    let Some(authority) = origin.to_str().ok().and_then(authority_of) else {
        return false;
    };
    let host = host_of(authority);
    if host.eq_ignore_ascii_case("localhost") || host == "[::1]" || host.starts_with("127.") {
        return true;
    }
    public_url
        .and_then(authority_of)
        .is_some_and(|p| p.eq_ignore_ascii_case(authority))
}

/// `host[:port]` of an `http` or `https` URL.
fn authority_of(url: &str) -> Option<&str> {
    let rest = url.strip_prefix("http://").or_else(|| url.strip_prefix("https://"))?;
    let authority = rest.split(['/', '?', '#']).next()?;
    (!authority.is_empty() && !authority.contains('@')).then_some(authority)
}

/// The host of `host[:port]`, brackets kept for IPv6.
fn host_of(authority: &str) -> &str {
    if authority.starts_with('[') {
        return authority.split_inclusive(']').next().unwrap_or(authority);
    }
    authority.rsplit_once(':').map_or(authority, |(host, _)| host)
}

fn rpc_response(status: StatusCode, response: RpcResponse) -> Response {
    let body = Message::Response(response).to_line();
    (status, [(CONTENT_TYPE, "application/json")], body).into_response()
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    (status, [(CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::{authority_of, host_of, origin_allowed};

    fn allowed(origin: &str, public: Option<&str>) -> bool {
        origin_allowed(&HeaderValue::from_str(origin).unwrap(), public)
    }

    #[test]
    fn origins() {
        assert!(allowed("http://localhost:3000", None));
        assert!(allowed("http://127.0.0.1:9", None));
        assert!(allowed("http://[::1]:9", None));
        assert!(allowed("https://warden.example", Some("https://warden.example/")));
        // DNS rebinding: the page's origin matches the Host it sends, but is neither loopback nor ours.
        assert!(!allowed("http://evil.example:8470", None));
        assert!(!allowed("https://evil.example", Some("https://warden.example")));
        assert!(!allowed(
            "https://warden.example:8080.evil.example",
            Some("https://warden.example:8080")
        ));
        assert!(!allowed("null", None));
        assert!(!allowed("http://localhost@evil.example", None));
        assert!(!allowed("file://x", None));
    }

    #[test]
    fn authorities() {
        assert_eq!(authority_of("http://a.b:1/x?y"), Some("a.b:1"));
        assert_eq!(host_of("a.b:1"), "a.b");
        assert_eq!(host_of("[::1]:80"), "[::1]");
        assert_eq!(host_of("a.b"), "a.b");
    }
}
