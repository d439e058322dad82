//! The Streamable HTTP transport (MCP 2025-11-25): every message is a POST to the upstream's one MCP
//! endpoint, answered with a single JSON body or with an SSE stream that ends in the response.
//!
//! This module owns the HTTP session: the `Mcp-Session-Id` the upstream issues on `initialize`, the
//! `MCP-Protocol-Version` header on every later request, re-initializing once when the upstream says
//! the session is gone, and the final `DELETE`. It adds the credential headers to every request and
//! marks them sensitive. It never resumes a broken SSE stream (`Last-Event-ID`) and never opens the
//! optional GET stream; a stream that ends before its response is an error.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

use super::{Common, UpstreamError, UpstreamStatus, answer_server_request, lock};
use crate::jsonrpc::{ErrorObject, Id, Message, Notification, Request, Response};
use crate::protocol::SUPPORTED_PROTOCOL_VERSIONS;
use crate::sse;

const MCP_SESSION_ID: HeaderName = HeaderName::from_static("mcp-session-id");
const MCP_PROTOCOL_VERSION: HeaderName = HeaderName::from_static("mcp-protocol-version");
/// How much of an error response body is read, and how much of it is kept in the error.
const ERROR_BODY_LIMIT: usize = 64 * 1024;
const ERROR_BODY_KEPT: usize = 512;

pub(super) struct HttpUpstream {
    inner: Arc<HttpInner>,
}

struct HttpInner {
    common: Common,
    url: Uri,
    client: Client<HttpConnector, Full<Bytes>>,
    credentials: HeaderMap,
    session: Mutex<Session>,
    /// Held while a new session is being established, so concurrent calls that all found the old one
    /// gone initialize only once. Per upstream, and never held longer than one call's timeout.
    reinit: tokio::sync::Mutex<()>,
    closed: AtomicBool,
}

#[derive(Debug, Clone, Default)]
struct Session {
    /// The `Mcp-Session-Id`, if the upstream issued one.
    id: Option<HeaderValue>,
    /// The negotiated revision; `None` until `initialize` succeeded.
    version: Option<&'static str>,
    /// Counts established sessions, so a stale failure does not re-initialize twice.
    epoch: u64,
}

/// Why one exchange failed.
enum Failure {
    /// The upstream no longer knows our session.
    SessionGone {
        status: u16,
        body: String,
    },
    Error(UpstreamError),
}

impl From<UpstreamError> for Failure {
    fn from(err: UpstreamError) -> Failure {
        Failure::Error(err)
    }
}

impl HttpUpstream {
    pub(super) async fn connect(
        common: Common,
        url: &str,
        headers: &BTreeMap<String, String>,
    ) -> Result<HttpUpstream, UpstreamError> {
        let transport_error = |reason: String| UpstreamError::Transport {
            upstream: common.name.clone(),
            reason,
        };
        let uri: Uri = url
            .parse()
            .map_err(|err| transport_error(format!("url `{url}` is invalid: {err}")))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => return Err(transport_error(format!("url `{url}`: https is not supported yet"))),
            _ => return Err(transport_error(format!("url `{url}` must start with http://"))),
        }
        if uri.host().is_none_or(str::is_empty) {
            return Err(transport_error(format!("url `{url}` has no host")));
        }

        let mut credentials = HeaderMap::new();
        for (name, value) in headers {
            let (Ok(header), Ok(mut value)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(value))
            else {
                return Err(UpstreamError::CredentialHeader {
                    upstream: common.name.clone(),
                    header: name.chars().take(64).collect(),
                });
            };
            value.set_sensitive(true);
            credentials.append(header, value);
        }

        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(common.config.connect_timeout));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);

        let connect_timeout = common.config.connect_timeout;
        let inner = Arc::new(HttpInner {
            common,
            url: uri,
            client,
            credentials,
            session: Mutex::new(Session::default()),
            reinit: tokio::sync::Mutex::new(()),
            closed: AtomicBool::new(false),
        });
        tokio::time::timeout(connect_timeout, inner.initialize())
            .await
            .map_err(|_| inner.common.timeout_error("initialize", connect_timeout))??;
        Ok(HttpUpstream { inner })
    }

    pub(super) fn common(&self) -> &Common {
        &self.inner.common
    }

    pub(super) fn status(&self) -> UpstreamStatus {
        if self.inner.closed.load(Ordering::Acquire) {
            UpstreamStatus::Closed
        } else {
            UpstreamStatus::Ready
        }
    }

    pub(super) async fn request(&self, method: &str, params: Option<Value>) -> Result<Value, UpstreamError> {
        let inner = &self.inner;
        inner.ensure_open()?;
        let timeout = inner.common.config.call_timeout;
        // The id of the attempt under way, so a timed-out request can be cancelled upstream.
        let in_flight = AtomicI64::new(0);
        match tokio::time::timeout(timeout, inner.call(method, params, &in_flight)).await {
            Ok(result) => result,
            Err(_elapsed) => {
                let id = in_flight.load(Ordering::Relaxed);
                if id != 0 {
                    let cancel = Notification {
                        method: "notifications/cancelled".to_owned(),
                        params: Some(json!({ "requestId": id, "reason": "timed out" })),
                    };
                    inner.spawn_post(Message::from(cancel));
                }
                Err(inner.common.timeout_error(method, timeout))
            }
        }
    }

    pub(super) async fn notify(&self, method: &str, params: Option<Value>) -> Result<(), UpstreamError> {
        let inner = &self.inner;
        inner.ensure_open()?;
        let timeout = inner.common.config.call_timeout;
        let attempt = async {
            let session = inner.session();
            match inner.send_notification(method, params.clone(), &session).await {
                Err(Failure::SessionGone { .. }) => {
                    inner.reinitialize(session.epoch).await?;
                    let session = inner.session();
                    inner
                        .send_notification(method, params, &session)
                        .await
                        .map_err(|failure| inner.failure_error(method, failure))
                }
                other => other.map_err(|failure| inner.failure_error(method, failure)),
            }
        };
        tokio::time::timeout(timeout, attempt)
            .await
            .map_err(|_| inner.common.timeout_error(method, timeout))?
    }

    pub(super) async fn close(&self) -> Result<(), UpstreamError> {
        let inner = &self.inner;
        if inner.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let session = inner.session();
        if session.id.is_none() {
            return Ok(());
        }
        let request = inner.build(Method::DELETE, Bytes::new(), &session);
        let timeout = inner.common.config.call_timeout;
        match tokio::time::timeout(timeout, inner.client.request(request)).await {
            // Servers may refuse (405) or have forgotten the session already (404, or 400 from some);
            // either way it is over.
            Ok(Ok(response)) => {
                tracing::debug!(upstream = %inner.common.name, status = %response.status(), "upstream session deleted");
                Ok(())
            }
            Ok(Err(err)) => Err(inner.connect_error(err)),
            Err(_elapsed) => Err(inner.common.timeout_error("DELETE", timeout)),
        }
    }
}

impl HttpInner {
    fn ensure_open(&self) -> Result<(), UpstreamError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(self.common.closed_error());
        }
        Ok(())
    }

    fn session(&self) -> Session {
        lock(&self.session).clone()
    }

    /// Sends a request, re-initializing and retrying once if the session is gone.
    async fn call(&self, method: &str, params: Option<Value>, in_flight: &AtomicI64) -> Result<Value, UpstreamError> {
        let session = self.session();
        let outcome = match self.exchange(method, params.clone(), &session, in_flight).await {
            Ok((_, outcome)) => outcome,
            Err(Failure::SessionGone { status, .. }) => {
                tracing::info!(upstream = %self.common.name, status, "upstream session is gone; initializing a new one");
                self.reinitialize(session.epoch).await?;
                let session = self.session();
                match self.exchange(method, params, &session, in_flight).await {
                    Ok((_, outcome)) => outcome,
                    Err(failure) => return Err(self.failure_error(method, failure)),
                }
            }
            Err(Failure::Error(err)) => return Err(err),
        };
        outcome.map_err(|error| self.common.rpc_error(method, error))
    }

    /// Establishes a new session unless another call already did since `seen_epoch`.
    async fn reinitialize(&self, seen_epoch: u64) -> Result<(), UpstreamError> {
        let _only_one = self.reinit.lock().await;
        if self.session().epoch != seen_epoch {
            return Ok(());
        }
        self.initialize().await
    }

    async fn initialize(&self) -> Result<(), UpstreamError> {
        let previous = self.session();
        let fresh = Session {
            id: None,
            version: None,
            epoch: previous.epoch,
        };
        let params = Some(self.common.initialize_params());
        let (headers, outcome) = self
            .exchange("initialize", params, &fresh, &AtomicI64::new(0))
            .await
            .map_err(|failure| self.failure_error("initialize", failure))?;
        let result = outcome.map_err(|error| self.common.rpc_error("initialize", error))?;
        let init = self.common.accept_initialize(result)?;
        let version = SUPPORTED_PROTOCOL_VERSIONS
            .iter()
            .copied()
            .find(|version| *version == init.protocol_version);
        let id = headers.get(MCP_SESSION_ID).cloned().map(|mut id| {
            id.set_sensitive(true);
            id
        });
        let session = Session {
            id,
            version,
            epoch: previous.epoch + 1,
        };
        self.send_notification("notifications/initialized", None, &session)
            .await
            .map_err(|failure| self.failure_error("notifications/initialized", failure))?;
        tracing::info!(
            upstream = %self.common.name,
            server = %init.server_info.name,
            version = %init.protocol_version,
            session = session.id.is_some(),
            "upstream initialized"
        );
        *lock(&self.session) = session;
        Ok(())
    }

    fn build(&self, method: Method, body: Bytes, session: &Session) -> http::Request<Full<Bytes>> {
        let mut request = http::Request::new(Full::new(body));
        *request.method_mut() = method;
        *request.uri_mut() = self.url.clone();
        let headers = request.headers_mut();
        headers.extend(self.credentials.clone());
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(ACCEPT, HeaderValue::from_static("application/json, text/event-stream"));
        if let Some(id) = &session.id {
            headers.insert(MCP_SESSION_ID, id.clone());
        }
        if let Some(version) = session.version {
            headers.insert(MCP_PROTOCOL_VERSION, HeaderValue::from_static(version));
        }
        request
    }

    async fn post(&self, message: &Message, session: &Session) -> Result<http::Response<Incoming>, Failure> {
        let request = self.build(Method::POST, Bytes::from(message.to_line()), session);
        let response = self
            .client
            .request(request)
            .await
            .map_err(|err| self.connect_error(err))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body = read_error_body(response).await;
        // The specification says 404; some servers (the TypeScript SDK's examples among them) answer 400
        // with a message about the session instead.
        let gone = status == StatusCode::NOT_FOUND
            || (status == StatusCode::BAD_REQUEST && body.to_ascii_lowercase().contains("session"));
        if gone && session.id.is_some() {
            return Err(Failure::SessionGone {
                status: status.as_u16(),
                body,
            });
        }
        let method = match message {
            Message::Request(request) => request.method.as_str(),
            Message::Notification(notification) => notification.method.as_str(),
            Message::Response(_) => "response",
        };
        Err(Failure::Error(UpstreamError::Status {
            upstream: self.common.name.clone(),
            method: method.to_owned(),
            status: status.as_u16(),
            body,
        }))
    }

    /// One POST of one request; returns the response headers and the JSON-RPC outcome.
    async fn exchange(
        &self,
        method: &str,
        params: Option<Value>,
        session: &Session,
        in_flight: &AtomicI64,
    ) -> Result<(HeaderMap, Result<Value, ErrorObject>), Failure> {
        let id = self.common.next_id();
        in_flight.store(id, Ordering::Relaxed);
        let message = Message::from(Request {
            id: Id::Number(id),
            method: method.to_owned(),
            params,
        });
        let response = self.post(&message, session).await?;
        let (parts, body) = response.into_parts();
        let content_type = parts
            .headers
            .get(CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_ascii_lowercase();
        let outcome = if content_type.starts_with("text/event-stream") {
            self.read_event_stream(body, id, method, session).await?
        } else if content_type.starts_with("application/json") {
            let limit = self.common.config.max_message_bytes;
            let bytes = Limited::new(body, limit)
                .collect()
                .await
                .map_err(|err| {
                    self.common
                        .protocol_error(method, format!("reading the response failed: {err}"))
                })?
                .to_bytes();
            match Message::parse(&bytes) {
                Ok(Message::Response(Response { id: Some(got), outcome })) if got == Id::Number(id) => outcome,
                // An error about a message the server could not read carries no id.
                Ok(Message::Response(Response {
                    id: None,
                    outcome: Err(error),
                })) => Err(error),
                Ok(_) => {
                    return Err(self
                        .common
                        .protocol_error(method, "the body is not the response".to_owned())
                        .into());
                }
                Err(err) => {
                    return Err(self
                        .common
                        .protocol_error(method, format!("the body is not a json-rpc message: {err}"))
                        .into());
                }
            }
        } else {
            let reason = format!(
                "http status {} with content type `{content_type}` and no response",
                parts.status
            );
            return Err(self.common.protocol_error(method, reason).into());
        };
        Ok((parts.headers, outcome))
    }

    /// Reads an SSE response until the event that answers `id`, passing on notifications and
    /// answering requests met on the way.
    async fn read_event_stream(
        &self,
        mut body: Incoming,
        id: i64,
        method: &str,
        session: &Session,
    ) -> Result<Result<Value, ErrorObject>, UpstreamError> {
        let mut parser = sse::Parser::new(self.common.config.max_message_bytes);
        loop {
            let Some(frame) = body.frame().await else {
                return Err(self.common.protocol_error(
                    method,
                    "the event stream ended before the response (resuming streams is not supported)".to_owned(),
                ));
            };
            let frame = frame.map_err(|err| UpstreamError::Connect {
                upstream: self.common.name.clone(),
                url: self.url.to_string(),
                source: Box::new(err),
            })?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            let events = parser.push(&data).map_err(|sse::TooLarge| {
                self.common
                    .protocol_error(method, "an event exceeds the size limit".to_owned())
            })?;
            for event in events {
                if event.kind != "message" || event.data.trim().is_empty() {
                    continue;
                }
                match Message::parse(event.data.as_bytes()) {
                    Ok(Message::Response(Response { id: Some(got), outcome })) if got == Id::Number(id) => {
                        return Ok(outcome);
                    }
                    // Each POST carries one request, so an error without an id is about this one.
                    Ok(Message::Response(Response {
                        id: None,
                        outcome: Err(error),
                    })) => return Ok(Err(error)),
                    Ok(Message::Response(other)) => {
                        tracing::debug!(upstream = %self.common.name, id = ?other.id, "ignoring a response to another request");
                    }
                    Ok(Message::Notification(notification)) => self.common.publish(notification),
                    Ok(Message::Request(request)) => {
                        let answer = Message::from(answer_server_request(&request));
                        self.spawn_post_with(answer, session.clone());
                    }
                    Err(err) => {
                        let err: &dyn std::error::Error = &err;
                        tracing::warn!(upstream = %self.common.name, error = err, "ignoring an event that is not a json-rpc message");
                    }
                }
            }
        }
    }

    async fn send_notification(&self, method: &str, params: Option<Value>, session: &Session) -> Result<(), Failure> {
        let message = Message::from(Notification {
            method: method.to_owned(),
            params,
        });
        // 202 Accepted with no body is the expected answer; any body is drained and ignored.
        let response = self.post(&message, session).await?;
        let _ = Limited::new(response.into_body(), ERROR_BODY_LIMIT).collect().await;
        Ok(())
    }

    /// Posts a notification or a response in the background, on the current session, best effort.
    fn spawn_post(&self, message: Message) {
        self.spawn_post_with(message, self.session());
    }

    fn spawn_post_with(&self, message: Message, session: Session) {
        let request = self.build(Method::POST, Bytes::from(message.to_line()), &session);
        let client = self.client.clone();
        let upstream = self.common.name.clone();
        let timeout = self.common.config.call_timeout;
        tokio::spawn(async move {
            match tokio::time::timeout(timeout, client.request(request)).await {
                Ok(Ok(response)) => {
                    tracing::debug!(upstream = %upstream, status = %response.status(), "posted a message to the upstream");
                }
                Ok(Err(err)) => {
                    tracing::debug!(upstream = %upstream, error = %err, "posting a message to the upstream failed")
                }
                Err(_elapsed) => tracing::debug!(upstream = %upstream, "posting a message to the upstream timed out"),
            }
        });
    }

    fn failure_error(&self, method: &str, failure: Failure) -> UpstreamError {
        match failure {
            Failure::SessionGone { status, body } => UpstreamError::Status {
                upstream: self.common.name.clone(),
                method: method.to_owned(),
                status,
                body,
            },
            Failure::Error(err) => err,
        }
    }

    fn connect_error(&self, err: hyper_util::client::legacy::Error) -> UpstreamError {
        UpstreamError::Connect {
            upstream: self.common.name.clone(),
            url: self.url.to_string(),
            source: Box::new(err),
        }
    }
}

/// The start of an error response's body, as text.
async fn read_error_body(response: http::Response<Incoming>) -> String {
    let bytes = match Limited::new(response.into_body(), ERROR_BODY_LIMIT).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => Bytes::new(),
    };
    String::from_utf8_lossy(&bytes).chars().take(ERROR_BODY_KEPT).collect()
}
