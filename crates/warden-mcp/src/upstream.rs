//! A client connection to one upstream MCP server, with one async API whatever the transport: a child
//! process over stdio, or Streamable HTTP.
//!
//! This module owns the connection lifecycle: the `initialize` handshake, request ids and matching
//! responses to requests, per-call timeouts, restarting a dead stdio child with back-off, re-establishing
//! an expired HTTP session, and shutting down. Every call on an [`Upstream`] is bounded by
//! [`UpstreamConfig::call_timeout`], and no lock is held across an await except one per-upstream lock
//! while an HTTP session is re-established, so a slow or dead upstream never blocks another one.
//!
//! It must never answer for the upstream: an upstream's JSON-RPC error comes back as
//! [`UpstreamError::Rpc`] with the upstream's own error object, and a tool's result is returned as
//! sent. It also never logs credential values.

mod stdio;
mod streamable_http;

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::broadcast;
use warden_core::{Name, Transport};

use crate::jsonrpc::{ErrorObject, Notification};
use crate::protocol::{
    Implementation, InitializeResult, PROTOCOL_VERSION, SUPPORTED_PROTOCOL_VERSIONS, Tool, ToolsPage, initialize_params,
};

/// Secrets the gateway adds when it talks to an upstream: HTTP headers for Streamable HTTP, environment
/// variables for a stdio child. Their values never appear in logs, errors or `Debug` output.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct UpstreamCredentials {
    /// Headers added to every HTTP request, such as `Authorization`.
    pub headers: BTreeMap<String, String>,
    /// Variables added to the child's environment.
    pub env: BTreeMap<String, String>,
}

impl fmt::Debug for UpstreamCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamCredentials")
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// How a dead stdio child is restarted: after `initial_delay`, doubling on each failure up to
/// `max_delay`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestartPolicy {
    /// The wait before the first restart.
    pub initial_delay: Duration,
    /// The longest wait between restarts.
    pub max_delay: Duration,
    /// A child that ran at least this long before dying restarts after `initial_delay` again.
    pub stable_after: Duration,
}

impl Default for RestartPolicy {
    fn default() -> RestartPolicy {
        RestartPolicy {
            initial_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(30),
            stable_after: Duration::from_secs(60),
        }
    }
}

impl RestartPolicy {
    /// The wait before restart number `attempt` (0-based).
    fn delay(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.min(31));
        self.initial_delay.saturating_mul(factor).min(self.max_delay)
    }
}

/// Limits and identity for an upstream connection.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// The longest any one call may take, from sending to the response.
    pub call_timeout: Duration,
    /// The longest starting a connection may take: spawning or connecting, plus the handshake.
    pub connect_timeout: Duration,
    /// How a dead stdio child is restarted.
    pub restart: RestartPolicy,
    /// How long a stdio child may take to exit after its stdin is closed before it is killed.
    pub shutdown_grace: Duration,
    /// The largest message accepted from the upstream, in bytes.
    pub max_message_bytes: usize,
    /// Variables of the gateway's own environment that a stdio child inherits; every other variable
    /// is withheld, so the gateway's secrets never reach an upstream. Credentials are added on top.
    pub inherit_env: Vec<String>,
    /// How Warden introduces itself in `initialize`.
    pub client_info: Implementation,
}

impl Default for UpstreamConfig {
    fn default() -> UpstreamConfig {
        UpstreamConfig {
            call_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(20),
            restart: RestartPolicy::default(),
            shutdown_grace: Duration::from_secs(2),
            max_message_bytes: 16 * 1024 * 1024,
            // The same list the official TypeScript SDK passes to stdio servers by default.
            inherit_env: [
                "HOME", "LOGNAME", "PATH", "SHELL", "TERM", "USER", "LANG", "TMPDIR", "TZ",
            ]
            .map(str::to_owned)
            .to_vec(),
            client_info: Implementation::new("warden", env!("CARGO_PKG_VERSION")),
        }
    }
}

/// Whether an upstream can take calls right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamStatus {
    /// Connected and initialized.
    Ready,
    /// A stdio child died and is being restarted; calls fail fast until it is back.
    Restarting,
    /// Closed; calls fail.
    Closed,
}

/// Why a call to an upstream failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpstreamError {
    /// The transport cannot be used (bad URL, unsupported scheme, empty command).
    #[error("upstream `{upstream}` cannot be reached this way: {reason}")]
    Transport {
        /// The upstream.
        upstream: Name,
        /// What is wrong.
        reason: String,
    },
    /// A credential header name or value is not valid in HTTP.
    #[error("credential header `{header}` for upstream `{upstream}` is not a valid http header")]
    CredentialHeader {
        /// The upstream.
        upstream: Name,
        /// The header name (never the value).
        header: String,
    },
    /// The child process could not be started.
    #[error("cannot start upstream `{upstream}` with command `{command}`")]
    Spawn {
        /// The upstream.
        upstream: Name,
        /// The program.
        command: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The HTTP connection failed.
    #[error("cannot reach upstream `{upstream}` at `{url}`")]
    Connect {
        /// The upstream.
        upstream: Name,
        /// The endpoint.
        url: String,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The upstream did not answer in time.
    #[error("upstream `{upstream}` did not answer `{method}` within {}ms", timeout.as_millis())]
    Timeout {
        /// The upstream.
        upstream: Name,
        /// The method called.
        method: String,
        /// The limit that passed.
        timeout: Duration,
    },
    /// The stdio child died and has not been restarted yet.
    #[error("upstream `{upstream}` is restarting{}", next_attempt(.retry_in))]
    Restarting {
        /// The upstream.
        upstream: Name,
        /// How long until the next restart attempt (zero while one is under way).
        retry_in: Duration,
    },
    /// The stdio child died while the call was in flight.
    #[error("upstream `{upstream}` exited while `{method}` was in flight")]
    Exited {
        /// The upstream.
        upstream: Name,
        /// The method called.
        method: String,
    },
    /// The upstream was closed.
    #[error("upstream `{upstream}` is closed")]
    Closed {
        /// The upstream.
        upstream: Name,
    },
    /// The upstream answered with a JSON-RPC error.
    #[error("upstream `{upstream}` answered `{method}` with error {error}")]
    Rpc {
        /// The upstream.
        upstream: Name,
        /// The method called.
        method: String,
        /// The upstream's error, as sent (boxed: it may carry arbitrary `data`).
        error: Box<ErrorObject>,
    },
    /// The upstream answered with an HTTP error status.
    #[error("upstream `{upstream}` answered `{method}` with http status {status}")]
    Status {
        /// The upstream.
        upstream: Name,
        /// The method called.
        method: String,
        /// The HTTP status.
        status: u16,
        /// The start of the response body.
        body: String,
    },
    /// The upstream sent something MCP does not allow.
    #[error("upstream `{upstream}` broke the protocol on `{method}`: {reason}")]
    Protocol {
        /// The upstream.
        upstream: Name,
        /// The method called.
        method: String,
        /// What was wrong.
        reason: String,
    },
    /// The upstream chose a protocol revision Warden does not speak.
    #[error("upstream `{upstream}` chose protocol version `{version}`, which warden does not speak")]
    Version {
        /// The upstream.
        upstream: Name,
        /// The revision it chose.
        version: String,
    },
}

/// A connection to one upstream MCP server. Cloning is cheap and clones share the connection; the
/// connection (and a stdio child) ends when [`Upstream::close`] is called or the last clone is dropped.
#[derive(Clone)]
pub struct Upstream {
    inner: Arc<Inner>,
}

enum Inner {
    Stdio(stdio::StdioUpstream),
    Http(streamable_http::HttpUpstream),
}

impl fmt::Debug for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (kind, common) = match &*self.inner {
            Inner::Stdio(stdio) => ("stdio", stdio.common()),
            Inner::Http(http) => ("http", http.common()),
        };
        f.debug_struct("Upstream")
            .field("name", &common.name)
            .field("transport", &kind)
            .finish_non_exhaustive()
    }
}

impl Upstream {
    /// Connects to the upstream `name` and completes the `initialize` handshake. For stdio this spawns
    /// the child; it is restarted from then on whenever it dies.
    pub async fn connect(
        name: &Name,
        transport: &Transport,
        credentials: UpstreamCredentials,
        config: UpstreamConfig,
    ) -> Result<Upstream, UpstreamError> {
        transport.validate().map_err(|err| UpstreamError::Transport {
            upstream: name.clone(),
            reason: err.to_string(),
        })?;
        let common = Common::new(name.clone(), config);
        let inner = match transport {
            Transport::Stdio { command, args } => {
                Inner::Stdio(stdio::StdioUpstream::connect(common, command, args, credentials.env).await?)
            }
            Transport::Http { url } => {
                Inner::Http(streamable_http::HttpUpstream::connect(common, url, &credentials.headers).await?)
            }
        };
        Ok(Upstream { inner: Arc::new(inner) })
    }

    fn common(&self) -> &Common {
        match &*self.inner {
            Inner::Stdio(stdio) => stdio.common(),
            Inner::Http(http) => http.common(),
        }
    }

    /// The upstream's name.
    pub fn name(&self) -> &Name {
        &self.common().name
    }

    /// What the upstream answered to the latest `initialize` (a restarted child or a new HTTP session
    /// initializes again).
    pub fn initialize_result(&self) -> Arc<InitializeResult> {
        Arc::clone(&lock(&self.common().init))
    }

    /// Whether the upstream can take calls right now.
    pub fn status(&self) -> UpstreamStatus {
        match &*self.inner {
            Inner::Stdio(stdio) => stdio.status(),
            Inner::Http(http) => http.status(),
        }
    }

    /// The process id of the current stdio child, while it is running.
    pub fn pid(&self) -> Option<u32> {
        match &*self.inner {
            Inner::Stdio(stdio) => stdio.pid(),
            Inner::Http(_) => None,
        }
    }

    /// Notifications the upstream sends (`notifications/tools/list_changed`, progress, logging, …).
    /// A receiver that falls more than 256 behind loses the oldest.
    pub fn subscribe(&self) -> broadcast::Receiver<Notification> {
        self.common().notifications.subscribe()
    }

    /// Sends a request and returns its `result`, for methods this type has no helper for.
    pub async fn request(&self, method: &str, params: Option<Value>) -> Result<Value, UpstreamError> {
        match &*self.inner {
            Inner::Stdio(stdio) => stdio.request(method, params).await,
            Inner::Http(http) => http.request(method, params).await,
        }
    }

    /// Sends a notification.
    pub async fn notify(&self, method: &str, params: Option<Value>) -> Result<(), UpstreamError> {
        match &*self.inner {
            Inner::Stdio(stdio) => stdio.notify(method, params).await,
            Inner::Http(http) => http.notify(method, params).await,
        }
    }

    /// Lists every tool, following `nextCursor` to the last page.
    pub async fn list_tools(&self) -> Result<Vec<Tool>, UpstreamError> {
        const MAX_PAGES: usize = 1000;
        let mut tools = Vec::new();
        let mut cursor: Option<String> = None;
        let mut seen = HashSet::new();
        for _ in 0..MAX_PAGES {
            let params = cursor.as_ref().map(|cursor| json!({ "cursor": cursor }));
            let result = self.request("tools/list", params).await?;
            let page: ToolsPage = serde_json::from_value(result).map_err(|err| {
                self.common()
                    .protocol_error("tools/list", format!("invalid result: {err}"))
            })?;
            tools.extend(page.tools);
            match page.next_cursor.filter(|next| !next.is_empty()) {
                None => return Ok(tools),
                Some(next) if !seen.insert(next.clone()) => {
                    return Err(self
                        .common()
                        .protocol_error("tools/list", "a page cursor repeated".to_owned()));
                }
                Some(next) => cursor = Some(next),
            }
        }
        Err(self
            .common()
            .protocol_error("tools/list", format!("more than {MAX_PAGES} pages")))
    }

    /// Calls a tool and returns its `CallToolResult` as sent. A tool that failed is still a result
    /// (with `isError: true`); only protocol failures are errors.
    pub async fn call_tool(&self, name: &str, arguments: Value) -> Result<Value, UpstreamError> {
        self.call_tool_with_meta(name, arguments, serde_json::Map::new()).await
    }

    /// [`Upstream::call_tool`] with `params._meta` (a `progressToken`, say; left out when empty). The
    /// upstream's notifications during the call, progress included, reach
    /// [`Upstream::subscribe`]rs.
    pub async fn call_tool_with_meta(
        &self,
        name: &str,
        arguments: Value,
        meta: serde_json::Map<String, Value>,
    ) -> Result<Value, UpstreamError> {
        let mut params = json!({ "name": name });
        if !arguments.is_null() {
            params["arguments"] = arguments;
        }
        if !meta.is_empty() {
            params["_meta"] = Value::Object(meta);
        }
        let result = self.request("tools/call", Some(params)).await?;
        if !result.is_object() {
            return Err(self
                .common()
                .protocol_error("tools/call", "the result is not an object".to_owned()));
        }
        Ok(result)
    }

    /// Ends the connection: for stdio, closes the child's stdin, waits up to
    /// [`UpstreamConfig::shutdown_grace`], then kills it; for HTTP, deletes the session. Calls made
    /// afterwards, through any clone, fail with [`UpstreamError::Closed`].
    pub async fn close(&self) -> Result<(), UpstreamError> {
        match &*self.inner {
            Inner::Stdio(stdio) => {
                stdio.close().await;
                Ok(())
            }
            Inner::Http(http) => http.close().await,
        }
    }
}

/// What both transports share.
struct Common {
    name: Name,
    config: UpstreamConfig,
    next_id: AtomicI64,
    notifications: broadcast::Sender<Notification>,
    init: Mutex<Arc<InitializeResult>>,
}

impl Common {
    fn new(name: Name, config: UpstreamConfig) -> Common {
        Common {
            name,
            config,
            next_id: AtomicI64::new(1),
            notifications: broadcast::channel(256).0,
            init: Mutex::new(Arc::new(InitializeResult {
                protocol_version: PROTOCOL_VERSION.to_owned(),
                capabilities: serde_json::Map::new(),
                server_info: Implementation::new("", ""),
                instructions: None,
                extra: serde_json::Map::new(),
            })),
        }
    }

    fn next_id(&self) -> i64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    fn initialize_params(&self) -> Value {
        initialize_params(&self.config.client_info)
    }

    /// Checks an `initialize` result and records it.
    fn accept_initialize(&self, result: Value) -> Result<Arc<InitializeResult>, UpstreamError> {
        let init: InitializeResult = serde_json::from_value(result)
            .map_err(|err| self.protocol_error("initialize", format!("invalid result: {err}")))?;
        if !SUPPORTED_PROTOCOL_VERSIONS.contains(&init.protocol_version.as_str()) {
            return Err(UpstreamError::Version {
                upstream: self.name.clone(),
                version: init.protocol_version.chars().take(64).collect(),
            });
        }
        let init = Arc::new(init);
        *lock(&self.init) = Arc::clone(&init);
        Ok(init)
    }

    fn publish(&self, notification: Notification) {
        tracing::debug!(upstream = %self.name, method = %notification.method, "upstream notification");
        // No receiver is fine: nobody is interested yet.
        let _ = self.notifications.send(notification);
    }

    fn protocol_error(&self, method: &str, reason: String) -> UpstreamError {
        UpstreamError::Protocol {
            upstream: self.name.clone(),
            method: method.to_owned(),
            reason,
        }
    }

    fn timeout_error(&self, method: &str, timeout: Duration) -> UpstreamError {
        UpstreamError::Timeout {
            upstream: self.name.clone(),
            method: method.to_owned(),
            timeout,
        }
    }

    fn rpc_error(&self, method: &str, error: ErrorObject) -> UpstreamError {
        UpstreamError::Rpc {
            upstream: self.name.clone(),
            method: method.to_owned(),
            error: Box::new(error),
        }
    }

    fn closed_error(&self) -> UpstreamError {
        UpstreamError::Closed {
            upstream: self.name.clone(),
        }
    }
}

/// The answer to a request the upstream sent us. Warden declares no client capabilities, so the
/// only request it serves is `ping`; anything else gets "method not found" rather than silence, which
/// would leave the upstream waiting.
fn answer_server_request(request: &crate::jsonrpc::Request) -> crate::jsonrpc::Response {
    use crate::jsonrpc::Response;
    if request.method == "ping" {
        Response::success(request.id.clone(), json!({}))
    } else {
        Response::error(
            Some(request.id.clone()),
            ErrorObject::new(
                ErrorObject::METHOD_NOT_FOUND,
                format!("method `{}` is not supported", request.method),
            ),
        )
    }
}

fn next_attempt(retry_in: &Duration) -> String {
    if retry_in.is_zero() {
        String::new()
    } else {
        format!(" (next attempt in {}ms)", retry_in.as_millis())
    }
}

/// Locks a mutex that is only ever held for short, non-panicking sections, so poisoning carries no
/// meaning and is ignored.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{RestartPolicy, UpstreamCredentials};

    #[test]
    fn back_off_doubles_up_to_the_bound() {
        let policy = RestartPolicy {
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
            stable_after: Duration::from_secs(5),
        };
        let delays: Vec<u128> = [0, 1, 2, 3, 4, 40, u32::MAX]
            .map(|n| policy.delay(n).as_millis())
            .to_vec();
        assert_eq!(delays, [100, 200, 400, 800, 1000, 1000, 1000]);
    }

    #[test]
    fn credentials_debug_hides_values() {
        let credentials = UpstreamCredentials {
            headers: [("Authorization".to_owned(), "Bearer s3cret".to_owned())].into(),
            env: [("API_KEY".to_owned(), "hunter2".to_owned())].into(),
        };
        let shown = format!("{credentials:?}");
        assert!(shown.contains("Authorization") && shown.contains("API_KEY"), "{shown}");
        assert!(!shown.contains("s3cret") && !shown.contains("hunter2"), "{shown}");
    }
}
