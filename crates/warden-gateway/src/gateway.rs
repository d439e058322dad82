//! The gateway itself: what happens to each MCP request once the HTTP layer has authenticated it and
//! found its session.
//!
//! This module owns the MCP semantics: version negotiation, the filtered `tools/list`, and the
//! `tools/call` path — resolve, decide, record the decision durably, forward with the gateway's own
//! credentials, record the outcome. It must never forward a call whose decision is not recorded, never
//! hand the agent's token to an upstream, and never hold a lock across an await.
//!
//! Only the decision is on the answer's path: the outcome event is written while the answer goes
//! back, tracked by [`Pending`] so that [`Gateway::shutdown`] waits for every outcome to be recorded.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};
use tokio::task::JoinSet;
use warden_core::{AgentId, Name};
use warden_mcp::jsonrpc::ErrorObject;
use warden_mcp::{Tool, Upstream, UpstreamError};
use warden_policy::{Decision, ToolCall};

use crate::audit::{AuditSink, CallStatus, CloseReason, GatewayEvent, Pending, Verdict, now_ms};
use crate::config::GatewayConfig;
use crate::control::{AgentIdentity, ControlPlane, UpstreamSpec, is_listed};
use crate::progress::ProgressRelay;
use crate::session::{Endpoint, Session, Sessions, random_hex};
use crate::upstreams::Pool;

/// The protocol revisions the gateway serves to agents, newest first.
pub const SUPPORTED_PROTOCOL_VERSIONS: &[&str] = &["2025-11-25", "2025-06-18", "2025-03-26"];

/// Separates the server from the tool in the aggregated endpoint's tool names. Server names cannot
/// contain `_`, so the first occurrence always ends the server name.
pub const TOOL_SEPARATOR: &str = "__";

/// JSON-RPC error code for an unsupported protocol revision (MCP 2026-07-28).
pub(crate) const UNSUPPORTED_VERSION: i64 = -32022;

/// The MCP gateway: holds the control plane, the audit sink, the upstream pool and the session table.
/// Cloning is cheap; clones share everything.
#[derive(Clone)]
pub struct Gateway {
    pub(crate) shared: Arc<Shared>,
}

pub(crate) struct Shared {
    pub(crate) control: Arc<dyn ControlPlane>,
    pub(crate) audit: Arc<dyn AuditSink>,
    pub(crate) config: GatewayConfig,
    pub(crate) pool: Arc<Pool>,
    pub(crate) sessions: Sessions,
    /// Set by [`Gateway::shutdown`]; requests are refused from then on.
    pub(crate) shutting_down: AtomicBool,
    /// Outcome events still being written.
    pub(crate) outcomes: Pending,
}

impl Gateway {
    /// A gateway deciding with `control` and recording to `audit`.
    pub fn new(control: Arc<dyn ControlPlane>, audit: Arc<dyn AuditSink>, config: GatewayConfig) -> Gateway {
        let pool = Arc::new(Pool::new(config.upstream.clone()));
        Gateway {
            shared: Arc::new(Shared {
                control,
                audit,
                config,
                pool,
                sessions: Sessions::default(),
                shutting_down: AtomicBool::new(false),
                outcomes: Pending::default(),
            }),
        }
    }

    /// Ends every open session of `agent`, of its descendants and of agents it delegated to; call it
    /// when the control plane suspends or revokes the agent. Their next request gets a 404 (or a 401,
    /// once their tokens are refused).
    pub async fn cut_sessions_of(&self, agent: &AgentId) {
        let cut = self.shared.sessions.remove_agent(agent);
        for session in cut {
            tracing::info!(agent = %session.identity.agent, session = %session.id, "session cut");
            self.shared.closed(&session, CloseReason::Cut).await;
        }
    }

    /// Ends every session and closes every upstream connection; requests get 503 from then on.
    /// Returns once every call's outcome event is recorded.
    pub async fn shutdown(&self) {
        self.shared.shutting_down.store(true, Ordering::SeqCst);
        for session in self.shared.sessions.drain() {
            self.shared.closed(&session, CloseReason::Shutdown).await;
        }
        self.shared.outcomes.settled().await;
        self.shared.pool.close_all().await;
    }

    /// Waits until every outcome event of the calls answered so far is recorded. Outcomes are
    /// written after the answer goes back, so a reader of the audit trail who must see a call's
    /// outcome waits for this first.
    pub async fn outcomes_settled(&self) {
        self.shared.outcomes.settled().await;
    }

    /// The connection to upstream `server`, if one has been made (connections are made on first use).
    pub fn upstream(&self, server: &Name) -> Option<Upstream> {
        self.shared.pool.connected(server)
    }

    /// How many sessions are open.
    pub fn session_count(&self) -> usize {
        self.shared.sessions.len()
    }
}

/// The answer to one JSON-RPC request: a result or an error object.
pub(crate) type Answer = Result<Value, ErrorObject>;

/// What a request is served under: its endpoint, and its session when the client's protocol revision
/// has sessions (2026-07-28 requests have none).
#[derive(Debug, Clone)]
pub(crate) struct Exchange {
    pub(crate) endpoint: Endpoint,
    pub(crate) session: Option<String>,
}

impl Exchange {
    pub(crate) fn of(session: &Session) -> Exchange {
        Exchange {
            endpoint: session.endpoint.clone(),
            session: Some(session.id.clone()),
        }
    }
}

impl Shared {
    /// Records that `session` ended; a failure is logged, never fatal.
    pub(crate) async fn closed(&self, session: &Session, reason: CloseReason) {
        let event = GatewayEvent::SessionClosed {
            at_ms: now_ms(),
            agent: session.identity.agent.clone(),
            session: session.id.clone(),
            reason,
        };
        if let Err(err) = self.audit.record(event).await {
            tracing::error!(session = %session.id, error = %err, "cannot record the end of a session");
        }
    }

    /// `initialize`: opens a session for `identity` on `endpoint`.
    pub(crate) async fn initialize(
        &self,
        identity: &AgentIdentity,
        endpoint: Endpoint,
        params: Option<&Value>,
    ) -> Result<(Arc<Session>, Value), ErrorObject> {
        let requested = params
            .and_then(|p| p.get("protocolVersion"))
            .and_then(Value::as_str)
            .ok_or_else(|| invalid_params("`initialize` needs `params.protocolVersion`"))?;
        // The client's revision if the gateway speaks it, else the newest the gateway speaks.
        let version = SUPPORTED_PROTOCOL_VERSIONS
            .iter()
            .find(|v| **v == requested)
            .or(SUPPORTED_PROTOCOL_VERSIONS.first())
            .copied()
            .unwrap_or(warden_mcp::PROTOCOL_VERSION);
        let session = Session::new(identity.clone(), endpoint, version.to_owned())
            .ok_or_else(|| ErrorObject::new(ErrorObject::INTERNAL_ERROR, "internal error"))?;
        let session = Arc::new(session);
        let ended = self.sessions.insert(
            Arc::clone(&session),
            self.config.session_idle_timeout,
            self.config.max_sessions_per_agent,
        );
        for (old, reason) in ended {
            self.closed(&old, reason).await;
        }
        let event = GatewayEvent::SessionOpened {
            at_ms: now_ms(),
            agent: identity.agent.clone(),
            chain: identity.chain.clone(),
            token_id: identity.token_id.clone(),
            session: session.id.clone(),
            endpoint: session.endpoint.to_string(),
            protocol_version: session.protocol_version.clone(),
        };
        if let Err(err) = self.audit.record(event).await {
            tracing::error!(session = %session.id, error = %err, "cannot record a new session");
        }
        tracing::info!(agent = %identity.agent, session = %session.id, endpoint = %session.endpoint, "session opened");
        let result = json!({
            "protocolVersion": session.protocol_version,
            "capabilities": capabilities(),
            "serverInfo": server_info(),
            "instructions": instructions(&session.endpoint),
        });
        Ok((session, result))
    }

    /// Answers a request, on a session or (2026-07-28) without one.
    pub(crate) async fn dispatch(
        self: &Arc<Self>,
        exchange: &Exchange,
        identity: &AgentIdentity,
        method: &str,
        params: Option<Value>,
        progress: Option<ProgressRelay>,
    ) -> Answer {
        match method {
            "ping" => Ok(json!({})),
            "tools/list" => self.tools_list(exchange, identity, params.as_ref()).await,
            "tools/call" => {
                // The call runs to its end, outcome recorded, even if the client goes away meanwhile.
                let (shared, exchange, identity) = (Arc::clone(self), exchange.clone(), identity.clone());
                tokio::spawn(async move { shared.tools_call(&exchange, &identity, params, progress).await })
                    .await
                    .unwrap_or_else(|err| {
                        tracing::error!(error = %err, "a tool call task failed");
                        Err(ErrorObject::new(ErrorObject::INTERNAL_ERROR, "internal error"))
                    })
            }
            // The gateway offers tools only. Listing what it does not offer is harmless and answered
            // with nothing, for clients that ask regardless of the declared capabilities.
            "resources/list" => Ok(json!({"resources": []})),
            "resources/templates/list" => Ok(json!({"resourceTemplates": []})),
            "prompts/list" => Ok(json!({"prompts": []})),
            "initialize" => Err(ErrorObject::new(
                ErrorObject::INVALID_REQUEST,
                "the session is already initialized; send `initialize` without `Mcp-Session-Id` to open a new one",
            )),
            _ => Err(ErrorObject::new(
                ErrorObject::METHOD_NOT_FOUND,
                format!("method `{}` is not supported by warden's gateway", excerpt(method)),
            )),
        }
    }

    /// The registered servers, with connections to unregistered ones closed.
    fn servers(&self) -> Vec<UpstreamSpec> {
        let servers = self.control.servers();
        self.pool.retain(&servers);
        servers
    }

    async fn tools_list(&self, exchange: &Exchange, identity: &AgentIdentity, params: Option<&Value>) -> Answer {
        if params.and_then(|p| p.get("cursor")).is_some_and(|c| !c.is_null()) {
            // Every list is sent as one page, so no cursor was ever handed out.
            return Err(invalid_params("invalid cursor"));
        }
        let servers = self.servers();
        let tools = match &exchange.endpoint {
            Endpoint::Server(name) => {
                let spec = find(&servers, name).ok_or_else(|| unregistered(name))?;
                let tools = self.pool.tools(spec, Duration::ZERO).await.map_err(|err| {
                    tracing::warn!(upstream = %name, error = %err, "listing tools failed");
                    ErrorObject::new(
                        ErrorObject::INTERNAL_ERROR,
                        format!("mcp server `{name}` is unavailable: {err}"),
                    )
                })?;
                self.visible(identity, name, &tools, false)
            }
            Endpoint::Aggregate => {
                // Every server is asked at once, so a slow one delays the answer by its own timeout
                // only, and one that fails is left out rather than failing the whole list.
                let mut asks = JoinSet::new();
                for spec in servers {
                    let pool = Arc::clone(&self.pool);
                    asks.spawn(async move {
                        let tools = pool.tools(&spec, Duration::ZERO).await;
                        (spec.name, tools)
                    });
                }
                let mut listed: Vec<(Name, Arc<Vec<Tool>>)> = Vec::new();
                while let Some(joined) = asks.join_next().await {
                    match joined {
                        Ok((name, Ok(tools))) => listed.push((name, tools)),
                        Ok((name, Err(err))) => {
                            tracing::warn!(upstream = %name, error = %err, "listing tools failed; leaving the server out");
                        }
                        Err(err) => tracing::error!(error = %err, "a listing task failed"),
                    }
                }
                listed.sort_by(|a, b| a.0.cmp(&b.0));
                listed
                    .iter()
                    .flat_map(|(name, tools)| self.visible(identity, name, tools, true))
                    .collect()
            }
        };
        Ok(json!({ "tools": tools }))
    }

    /// The tools of `server` that `identity` may see (see [`is_listed`]), renamed for the aggregated
    /// endpoint when `prefixed`.
    fn visible(&self, identity: &AgentIdentity, server: &Name, tools: &[Tool], prefixed: bool) -> Vec<Value> {
        let (hour, weekday) = self.control.now();
        tools
            .iter()
            .filter(|tool| {
                let call = ToolCall {
                    agent: identity.agent.clone(),
                    server: server.as_str().to_owned(),
                    tool: tool.name.clone(),
                    arguments: Value::Object(Map::new()),
                    hour,
                    weekday,
                };
                is_listed(&self.control.decide(identity, &call))
            })
            .filter_map(|tool| {
                let mut tool = tool.clone();
                if prefixed {
                    tool.name = format!("{server}{TOOL_SEPARATOR}{}", tool.name);
                }
                serde_json::to_value(tool).ok()
            })
            .collect()
    }

    /// `tools/call`. The client's `params._meta` is not forwarded: the upstream gets only what was
    /// decided on (the tool and its arguments), plus a progress token of the gateway's own when the
    /// client asked for progress and `progress` relays it.
    async fn tools_call(
        &self,
        exchange: &Exchange,
        identity: &AgentIdentity,
        params: Option<Value>,
        progress: Option<ProgressRelay>,
    ) -> Answer {
        let mut params = match params {
            Some(Value::Object(params)) => params,
            _ => return Err(invalid_params("`tools/call` needs `params` with a `name`")),
        };
        let Some(Value::String(name)) = params.remove("name") else {
            return Err(invalid_params("`tools/call` needs `params.name`, a string"));
        };
        let arguments = match params.remove("arguments") {
            None | Some(Value::Null) => Value::Null,
            Some(arguments @ Value::Object(_)) => arguments,
            Some(_) => return Err(invalid_params("`params.arguments` must be an object")),
        };
        let servers = self.servers();
        let (spec, tool) = match &exchange.endpoint {
            Endpoint::Server(server) => (find(&servers, server).ok_or_else(|| unregistered(server))?, name),
            Endpoint::Aggregate => {
                let unknown = || invalid_params(format!("Unknown tool: {}", excerpt(&name)));
                let (server, tool) = name.split_once(TOOL_SEPARATOR).ok_or_else(unknown)?;
                let spec = Name::parse(server)
                    .ok()
                    .and_then(|server| find(&servers, &server))
                    .ok_or_else(unknown)?;
                (spec, tool.to_owned())
            }
        };
        if let Err(err) = self.check_tool_exists(spec, &tool).await {
            // A call to a tool the server does not offer is still a call: it is recorded (as a
            // deny), so probing for tools leaves a trace in the audit trail.
            let record = CallRecord {
                identity,
                session: exchange.session.as_deref(),
                server: spec.name.as_str(),
                tool: &tool,
                call_id: random_hex(16).unwrap_or_else(|| format!("{}-{}", now_ms(), identity.token_id)),
            };
            let unknown = Decision {
                allow: false,
                policy_ids: Vec::new(),
                reason: format!("the MCP server `{}` offers no tool `{}`", spec.name, excerpt(&tool)),
            };
            if let Err(audit_err) = self.audit.record(record.decision(&unknown)).await {
                tracing::error!(call_id = %record.call_id, error = %audit_err, "cannot record a call to an unknown tool");
            }
            self.record_outcome(record.outcome(CallStatus::Denied, Some(unknown.reason.clone()), Instant::now()));
            return Err(err);
        }

        let (hour, weekday) = self.control.now();
        let call = ToolCall {
            agent: identity.agent.clone(),
            server: spec.name.as_str().to_owned(),
            tool: tool.clone(),
            arguments,
            hour,
            weekday,
        };
        let decision = self.control.decide(identity, &call);
        let record = CallRecord {
            identity,
            session: exchange.session.as_deref(),
            server: spec.name.as_str(),
            tool: &tool,
            call_id: random_hex(16).unwrap_or_else(|| format!("{}-{}", now_ms(), identity.token_id)),
        };
        let decided = Instant::now();
        let recorded = self.audit.record(record.decision(&decision)).await;
        tracing::info!(
            agent = %identity.agent, server = %spec.name, tool = %tool, allow = decision.allow,
            policies = ?decision.policy_ids, call_id = %record.call_id, "tool call decided"
        );
        if !decision.allow {
            if let Err(err) = recorded {
                tracing::error!(call_id = %record.call_id, error = %err, "cannot record a denied call");
            }
            self.record_outcome(record.outcome(CallStatus::Denied, None, decided));
            return Ok(denied_result(&decision));
        }
        if let Err(err) = recorded {
            tracing::error!(call_id = %record.call_id, error = %err, "cannot record a decision; not forwarding the call");
            return Ok(tool_error(
                "Warden could not record this call in its audit trail, so it was not forwarded.".to_owned(),
            ));
        }

        let forwarded = match (self.pool.upstream(spec).await, &progress) {
            (Ok(upstream), None) => upstream.call_tool(&tool, call.arguments).await,
            (Ok(upstream), Some(relay)) => {
                let notifications = upstream.subscribe();
                let meta = Map::from_iter([("progressToken".to_owned(), json!(relay.upstream_token()))]);
                let call = upstream.call_tool_with_meta(&tool, call.arguments, meta);
                relay.relay_during(call, notifications).await
            }
            (Err(err), _) => Err(err),
        };
        match forwarded {
            Ok(result) => {
                let failed = result.get("isError").and_then(Value::as_bool) == Some(true);
                let (status, error) = if failed {
                    (CallStatus::Error, Some(first_text(&result)))
                } else {
                    (CallStatus::Ok, None)
                };
                self.record_outcome(record.outcome(status, error, decided));
                Ok(result)
            }
            Err(UpstreamError::Rpc { error, .. }) => {
                // The upstream's own protocol error (such as invalid params) goes back as it sent it.
                let message = format!("upstream error {}: {}", error.code, error.message);
                self.record_outcome(record.outcome(CallStatus::Error, Some(message), decided));
                Err(*error)
            }
            Err(err) => {
                let status = if matches!(err, UpstreamError::Timeout { .. }) {
                    CallStatus::Timeout
                } else {
                    CallStatus::Error
                };
                tracing::warn!(call_id = %record.call_id, error = %err, "forwarding a tool call failed");
                self.record_outcome(record.outcome(status, Some(err.to_string()), decided));
                Ok(tool_error(format!(
                    "Warden allowed the call, but the MCP server `{}` failed: {err}",
                    spec.name
                )))
            }
        }
    }

    /// Refuses a tool the upstream does not offer. An upstream that cannot be asked does not stop the
    /// call here: it is decided, and forwarding reports the failure.
    async fn check_tool_exists(&self, spec: &UpstreamSpec, tool: &str) -> Result<(), ErrorObject> {
        let known = |tools: &[Tool]| tools.iter().any(|t| t.name == tool);
        match self.pool.tools(spec, self.config.tools_cache_ttl).await {
            Ok(tools) if known(&tools) => return Ok(()),
            Ok(_) => {}
            Err(_) => return Ok(()),
        }
        // The upstream may have gained the tool since it was last asked.
        match self.pool.tools(spec, Duration::ZERO).await {
            Ok(tools) if !known(&tools) => Err(invalid_params(format!("Unknown tool: {}", excerpt(tool)))),
            _ => Ok(()),
        }
    }

    /// Records a call's outcome without holding up its answer; [`Pending`] keeps count until it is
    /// durable.
    fn record_outcome(&self, event: GatewayEvent) {
        let audit = Arc::clone(&self.audit);
        let pending = self.outcomes.enter();
        tokio::spawn(async move {
            if let Err(err) = audit.record(event).await {
                tracing::error!(error = %err, "cannot record a call's outcome");
            }
            drop(pending);
        });
    }
}

/// What the events of one call share.
struct CallRecord<'a> {
    identity: &'a AgentIdentity,
    session: Option<&'a str>,
    server: &'a str,
    tool: &'a str,
    call_id: String,
}

impl CallRecord<'_> {
    fn decision(&self, decision: &Decision) -> GatewayEvent {
        GatewayEvent::Decision {
            at_ms: now_ms(),
            agent: self.identity.agent.clone(),
            chain: self.identity.chain.clone(),
            token_id: self.identity.token_id.clone(),
            session: self.session.map(str::to_owned),
            server: self.server.to_owned(),
            tool: self.tool.to_owned(),
            decision: if decision.allow { Verdict::Allow } else { Verdict::Deny },
            policy_ids: decision.policy_ids.clone(),
            reason: decision.reason.clone(),
            call_id: self.call_id.clone(),
        }
    }

    fn outcome(&self, status: CallStatus, error: Option<String>, since: Instant) -> GatewayEvent {
        GatewayEvent::Outcome {
            at_ms: now_ms(),
            agent: self.identity.agent.clone(),
            chain: self.identity.chain.clone(),
            session: self.session.map(str::to_owned),
            server: self.server.to_owned(),
            tool: self.tool.to_owned(),
            call_id: self.call_id.clone(),
            status,
            error,
            duration_ms: u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX),
        }
    }
}

/// What the gateway offers: tools, and no change notifications.
pub(crate) fn capabilities() -> Value {
    json!({"tools": {"listChanged": false}})
}

pub(crate) fn server_info() -> Value {
    json!({"name": "warden-gateway", "version": env!("CARGO_PKG_VERSION")})
}

pub(crate) fn instructions(endpoint: &Endpoint) -> String {
    match endpoint {
        Endpoint::Aggregate => format!(
            "Tools of every MCP server you may use, named `<server>{TOOL_SEPARATOR}<tool>`. \
             Warden authorizes and records every call."
        ),
        Endpoint::Server(name) => format!("Tools of MCP server `{name}`. Warden authorizes and records every call."),
    }
}

fn find<'a>(servers: &'a [UpstreamSpec], name: &Name) -> Option<&'a UpstreamSpec> {
    servers.iter().find(|spec| spec.name == *name)
}

/// The result an agent sees for a denied call: a tool error, so the model reads the reason.
fn denied_result(decision: &Decision) -> Value {
    let policies = if decision.policy_ids.is_empty() {
        "none".to_owned()
    } else {
        decision.policy_ids.join(", ")
    };
    tool_error(format!("Denied by Warden: {} (policies: {policies})", decision.reason))
}

fn tool_error(text: String) -> Value {
    json!({"content": [{"type": "text", "text": text}], "isError": true})
}

/// The start of a result's first text block, for the audit trail.
fn first_text(result: &Value) -> String {
    let text = result
        .get("content")
        .and_then(Value::as_array)
        .and_then(|blocks| blocks.iter().find_map(|b| b.get("text").and_then(Value::as_str)))
        .unwrap_or("the tool reported an error");
    excerpt(text)
}

pub(crate) fn invalid_params(message: impl Into<String>) -> ErrorObject {
    ErrorObject::new(ErrorObject::INVALID_PARAMS, message)
}

fn unregistered(name: &Name) -> ErrorObject {
    invalid_params(format!("mcp server `{name}` is not registered"))
}

/// At most 200 characters of `value`, for messages that repeat client or upstream input.
pub(crate) fn excerpt(value: &str) -> String {
    const MAX: usize = 200;
    let mut out: String = value.chars().take(MAX).collect();
    if out.len() < value.len() {
        out.push('…');
    }
    out
}
