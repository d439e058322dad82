//! `POST /v1/otlp/v1/logs` and `POST /v1/otlp/v1/metrics`: an OTLP/HTTP JSON receiver for Claude
//! Code's telemetry (`OTEL_EXPORTER_OTLP_ENDPOINT=<server>/v1/otlp`, `OTEL_EXPORTER_OTLP_PROTOCOL=http/json`,
//! as `warden init` writes them).
//!
//! **Who spent it.** An agent access token (`Authorization: Bearer <JWT>`, what `warden init`'s
//! `otelHeadersHelper` prints) is authoritative: every record of the request is the token's acting
//! agent's. A token that does not verify is refused (401) rather than recorded under a name it cannot
//! prove. Without a token, the resource attribute `warden.agent.id` (else `gen_ai.agent.id`, else
//! `enduser.id`) names the agent; the event's `status_detail` then says it was attributed by resource
//! attribute. Telemetry from an identity Warden does not know (no token, and no agent id or one the
//! registry does not hold) is still recorded, under the id as given (or `unknown`) with no team,
//! `status_detail` beginning `unattributed:`, plus one Detection Finding (`finding_uid`
//! `unattributed-telemetry`) per resource, so `warden govern shadow` and a query find it.
//!
//! **What is recorded, and why spend is never counted twice.** Claude Code sends the same tokens
//! twice: per model call as `claude_code.api_request` log events, and aggregated as the
//! `claude_code.token.usage` / `claude_code.cost.usage` metrics. The spend reports
//! (`warden_query::govern`) sum `input_tokens`, `output_tokens` and `cost_micro_usd` of every event.
//! So only `api_request` logs fill those columns: each becomes one `invoke_model` event
//! (API Activity 6003, `AuditEvent::model_usage`; cost in micro-USD). Metric data points become
//! `usage_metric` events (API Activity 6003, activity_name `usage_metric`) whose token columns stay
//! empty: the value is in `message_context` and `message`, for cross-checking, never summed.
//! `api_error` logs become failed `invoke_model` events without tokens. Other log events (tool
//! results and decisions are recorded by the hook and the gateway) and other metrics are accepted and
//! not recorded.
//!
//! **Once only.** Each event's id is `otlp-` + a SHA-256 of the canonical JSON of its resource
//! attributes, scope, and record (or metric name and data point), so a resent export is stored once.
//! Answers `{"partialSuccess": {}}` once every event is durable, 400 naming the first malformed part.

use std::collections::HashMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use serde_json::{Map, Value, json};
use warden_core::AgentId;
use warden_lake::{AuditEvent, Finding, ModelUsage, Subject};

use crate::error::{ApiError, ErrorBody};
use crate::extract::bearer_token;
use crate::state::AppState;

/// The largest export Warden takes (Claude Code batches a few hundred records at most).
pub(crate) const MAX_OTLP_BYTES: usize = 16 * 1024 * 1024;

/// Resource attributes that may name the agent when no token does, in order of preference.
const AGENT_ATTRIBUTES: &[&str] = &["warden.agent.id", "gen_ai.agent.id", "enduser.id"];

/// Marks `status_detail` of events Warden could not attribute to a registered agent.
pub(crate) const UNATTRIBUTED: &str = "unattributed";

/// The two routes, each with the OTLP body limit.
pub(crate) fn logs_route() -> utoipa_axum::router::UtoipaMethodRouter<AppState> {
    let (schemas, paths, method) = utoipa_axum::routes!(export_logs);
    (
        schemas,
        paths,
        method.layer(axum::extract::DefaultBodyLimit::max(MAX_OTLP_BYTES)),
    )
}

pub(crate) fn metrics_route() -> utoipa_axum::router::UtoipaMethodRouter<AppState> {
    let (schemas, paths, method) = utoipa_axum::routes!(export_metrics);
    (
        schemas,
        paths,
        method.layer(axum::extract::DefaultBodyLimit::max(MAX_OTLP_BYTES)),
    )
}

/// Takes an OTLP/HTTP JSON `ExportLogsServiceRequest`: each `claude_code.api_request` event becomes
/// one `invoke_model` event with its tokens and cost. Authenticated by an agent token, or attributed
/// by the resource attribute `warden.agent.id`; telemetry of an unknown identity is recorded as such.
#[utoipa::path(post, path = "/v1/otlp/v1/logs", tag = "telemetry",
    request_body(content = Object, content_type = "application/json",
        description = "OTLP ExportLogsServiceRequest (JSON encoding)"),
    security((), ("agent_token" = [])),
    responses((status = 200, description = "`{\"partialSuccess\": {}}` once durable"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 415, body = ErrorBody)))]
pub(crate) async fn export_logs(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let request = parse_body(&headers, &body)?;
    let token = token_agent(&state, &headers)?;
    let mut events = Vec::new();
    let mut resolver = Resolver::new(&state, token);
    for (r, resource_logs) in list(&request, "resourceLogs", "")?.iter().enumerate() {
        let at = format!("resourceLogs[{r}]");
        let resource = Resource::parse(resource_logs, &at)?;
        let who = resolver.resolve(&resource).await?;
        let before = events.len();
        for (s, scope_logs) in list(resource_logs, "scopeLogs", &at)?.iter().enumerate() {
            let at = format!("{at}.scopeLogs[{s}]");
            let scope = scope_name(scope_logs, &at)?;
            for (l, record) in list(scope_logs, "logRecords", &at)?.iter().enumerate() {
                let at = format!("{at}.logRecords[{l}]");
                let id = event_id("log", &resource, &scope, record);
                if let Some(event) = log_event(id, record, &who, &at)? {
                    events.push(event);
                }
            }
        }
        if events.len() > before {
            events.extend(who.finding(&resource));
        }
    }
    append(&state, events).await
}

/// Takes an OTLP/HTTP JSON `ExportMetricsServiceRequest`: each data point of
/// `claude_code.token.usage` and `claude_code.cost.usage` becomes one `usage_metric` event (kept for
/// cross-checking; spend is summed from `api_request` logs only).
#[utoipa::path(post, path = "/v1/otlp/v1/metrics", tag = "telemetry",
    request_body(content = Object, content_type = "application/json",
        description = "OTLP ExportMetricsServiceRequest (JSON encoding)"),
    security((), ("agent_token" = [])),
    responses((status = 200, description = "`{\"partialSuccess\": {}}` once durable"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 415, body = ErrorBody)))]
pub(crate) async fn export_metrics(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let request = parse_body(&headers, &body)?;
    let token = token_agent(&state, &headers)?;
    let mut events = Vec::new();
    let mut resolver = Resolver::new(&state, token);
    for (r, resource_metrics) in list(&request, "resourceMetrics", "")?.iter().enumerate() {
        let at = format!("resourceMetrics[{r}]");
        let resource = Resource::parse(resource_metrics, &at)?;
        let who = resolver.resolve(&resource).await?;
        let before = events.len();
        for (s, scope_metrics) in list(resource_metrics, "scopeMetrics", &at)?.iter().enumerate() {
            let at = format!("{at}.scopeMetrics[{s}]");
            let scope = scope_name(scope_metrics, &at)?;
            for (m, metric) in list(scope_metrics, "metrics", &at)?.iter().enumerate() {
                let at = format!("{at}.metrics[{m}]");
                metric_events(metric, &resource, &scope, &who, &at, &mut events)?;
            }
        }
        if events.len() > before {
            events.extend(who.finding(&resource));
        }
    }
    append(&state, events).await
}

async fn append(state: &AppState, events: Vec<AuditEvent>) -> Result<Json<Value>, ApiError> {
    if !events.is_empty() {
        state.lake.append(events).await.map_err(ApiError::internal)?;
    }
    Ok(Json(json!({"partialSuccess": {}})))
}

/// The JSON body, or why it is not an OTLP/HTTP JSON export.
fn parse_body(headers: &HeaderMap, body: &[u8]) -> Result<Value, ApiError> {
    let unsupported =
        |message: String| ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", message);
    if let Some(encoding) = headers.get(header::CONTENT_ENCODING).and_then(|v| v.to_str().ok())
        && !encoding.eq_ignore_ascii_case("identity")
    {
        return Err(unsupported(format!(
            "Content-Encoding `{encoding}` is not supported; send uncompressed JSON (OTEL_EXPORTER_OTLP_COMPRESSION=none)"
        )));
    }
    if let Some(kind) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok())
        && !kind.to_ascii_lowercase().starts_with("application/json")
    {
        return Err(unsupported(format!(
            "Content-Type `{kind}` is not supported: this receiver takes OTLP/HTTP JSON only; \
             set OTEL_EXPORTER_OTLP_PROTOCOL=http/json"
        )));
    }
    let value: Value =
        serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("the body is not JSON: {e}")))?;
    if !value.is_object() {
        return Err(ApiError::bad_request(
            "the body must be a JSON object (an OTLP ExportLogsServiceRequest or ExportMetricsServiceRequest)",
        ));
    }
    Ok(value)
}

/// The acting agent and chain of a bearer agent token, if one was sent.
fn token_agent(state: &AppState, headers: &HeaderMap) -> Result<Option<(String, Vec<String>)>, ApiError> {
    if !headers.contains_key(header::AUTHORIZATION) {
        return Ok(None);
    }
    let token = bearer_token(headers, "agent access token")?;
    let claims = state.credentials.verify(token).map(|v| v.into_claims()).map_err(|e| {
        ApiError::unauthenticated(format!(
            "the agent token is not accepted: {e}; send a fresh one (otelHeadersHelper) or none"
        ))
    })?;
    let chain = claims.chain().into_iter().map(str::to_owned).collect();
    Ok(Some((claims.acting_agent().to_owned(), chain)))
}

/// `parent.key` as an array: absent or null is empty (OTLP omits empty lists).
fn list<'a>(parent: &'a Value, key: &str, at: &str) -> Result<&'a [Value], ApiError> {
    match parent.get(key) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(items)) => Ok(items),
        Some(_) => Err(ApiError::bad_request(format!("{} must be an array", path(at, key)))),
    }
}

fn path(at: &str, key: &str) -> String {
    if at.is_empty() {
        format!("`{key}`")
    } else {
        format!("`{at}.{key}`")
    }
}

fn scope_name(scoped: &Value, at: &str) -> Result<String, ApiError> {
    match scoped.get("scope") {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::Object(scope)) => Ok(scope.get("name").and_then(Value::as_str).unwrap_or("").to_owned()),
        Some(_) => Err(ApiError::bad_request(format!(
            "{} must be an object",
            path(at, "scope")
        ))),
    }
}

/// OTLP `KeyValue` lists as a map of plain JSON values (`stringValue` → string, `intValue` →
/// number, ...).
fn attributes(parent: &Value, at: &str) -> Result<Map<String, Value>, ApiError> {
    let mut out = Map::new();
    for (i, kv) in list(parent, "attributes", at)?.iter().enumerate() {
        let key = kv.get("key").and_then(Value::as_str).ok_or_else(|| {
            ApiError::bad_request(format!("`{at}.attributes[{i}]` must be an object with a string `key`"))
        })?;
        let value = any_value(
            kv.get("value").unwrap_or(&Value::Null),
            &format!("{at}.attributes[{i}].value"),
        )?;
        out.insert(key.to_owned(), value);
    }
    Ok(out)
}

fn any_value(value: &Value, at: &str) -> Result<Value, ApiError> {
    let Some(object) = value.as_object() else {
        return if value.is_null() {
            Ok(Value::Null)
        } else {
            Err(ApiError::bad_request(format!(
                "`{at}` must be an OTLP AnyValue object such as {{\"stringValue\": \"...\"}}"
            )))
        };
    };
    Ok(match object.iter().next() {
        None => Value::Null,
        Some((kind, inner)) => match kind.as_str() {
            "stringValue" | "boolValue" | "doubleValue" | "intValue" | "bytesValue" => inner.clone(),
            "arrayValue" => {
                let mut items = Vec::new();
                for (i, item) in list(inner, "values", at)?.iter().enumerate() {
                    items.push(any_value(item, &format!("{at}.arrayValue.values[{i}]"))?);
                }
                Value::Array(items)
            }
            "kvlistValue" => Value::Object(attributes_named(inner, "values", &format!("{at}.kvlistValue"))?),
            other => {
                return Err(ApiError::bad_request(format!(
                    "`{at}` has an unknown AnyValue kind `{other}`"
                )));
            }
        },
    })
}

fn attributes_named(parent: &Value, key: &str, at: &str) -> Result<Map<String, Value>, ApiError> {
    let wrapped = json!({"attributes": parent.get(key).cloned().unwrap_or(Value::Null)});
    attributes(&wrapped, at)
}

/// A whole non-negative number from an attribute (Claude Code sends numbers as strings).
fn count(attrs: &Map<String, Value>, key: &str, at: &str) -> Result<Option<i64>, ApiError> {
    let Some(value) = attrs.get(key).filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let parsed = match value {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64)),
        Value::String(s) => s.trim().parse::<i64>().ok(),
        _ => None,
    };
    match parsed {
        Some(n) if n >= 0 => Ok(Some(n)),
        _ => Err(ApiError::bad_request(format!(
            "`{at}` attribute `{key}` must be a whole number of at least 0, not {value}"
        ))),
    }
}

/// A finite non-negative decimal from an attribute or data point.
fn decimal(value: &Value, what: &str) -> Result<f64, ApiError> {
    let parsed = match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    match parsed {
        Some(f) if f.is_finite() && f >= 0.0 => Ok(f),
        _ => Err(ApiError::bad_request(format!(
            "{what} must be a number of at least 0, not {value}"
        ))),
    }
}

fn micro_usd(usd: f64) -> i64 {
    let micros = (usd * 1_000_000.0).round();
    if micros >= i64::MAX as f64 {
        i64::MAX
    } else {
        micros as i64
    }
}

fn text(attrs: &Map<String, Value>, key: &str) -> Option<String> {
    match attrs.get(key)? {
        Value::String(s) if !s.is_empty() => Some(s.chars().take(200).collect()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Epoch milliseconds of the first usable nanosecond timestamp among `keys` (OTLP sends them as
/// decimal strings), else now.
fn time_ms(record: &Value, keys: &[&str], at: &str) -> Result<i64, ApiError> {
    for key in keys {
        let nanos = match record.get(*key) {
            None | Some(Value::Null) => continue,
            Some(Value::String(s)) => s.trim().parse::<u64>().ok(),
            Some(Value::Number(n)) => n.as_u64(),
            Some(_) => None,
        };
        match nanos {
            Some(0) => continue,
            Some(ns) => return Ok(i64::try_from(ns / 1_000_000).unwrap_or(i64::MAX)),
            None => {
                return Err(ApiError::bad_request(format!(
                    "{} must be nanoseconds since 1970 as a decimal string",
                    path(at, key)
                )));
            }
        }
    }
    Ok(warden_lake::event::now_ms())
}

/// A resource's attributes, and the canonical JSON they hash as.
struct Resource {
    attributes: Map<String, Value>,
}

impl Resource {
    fn parse(container: &Value, at: &str) -> Result<Resource, ApiError> {
        let attributes = match container.get("resource") {
            None | Some(Value::Null) => Map::new(),
            Some(resource @ Value::Object(_)) => attributes(resource, &format!("{at}.resource"))?,
            Some(_) => {
                return Err(ApiError::bad_request(format!(
                    "{} must be an object",
                    path(at, "resource")
                )));
            }
        };
        Ok(Resource { attributes })
    }

    /// The agent id the resource claims, and the attribute that claims it.
    fn claimed_agent(&self) -> Option<(&'static str, String)> {
        AGENT_ATTRIBUTES
            .iter()
            .find_map(|key| text(&self.attributes, key).map(|id| (*key, id)))
    }
}

/// `otlp-` and 32 hex digits of the SHA-256 of what makes the event: its kind, resource, scope and
/// record (key order does not matter).
fn event_id(kind: &str, resource: &Resource, scope: &str, record: &Value) -> String {
    let whole = json!({"kind": kind, "resource": resource.attributes, "scope": scope, "record": record});
    let hash = warden_lake::merkle::leaf_hash(&warden_lake::event::canonical_json(&whole));
    let hex: String = hash[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("otlp-{hex}")
}

/// Who a resource's telemetry is attributed to.
#[derive(Clone)]
struct Who {
    subject: Subject,
    /// `None` for a token; what the attribution rests on otherwise.
    note: Option<String>,
    known: bool,
}

impl Who {
    fn subject(&self, session: Option<String>) -> Subject {
        Subject {
            session_id: session,
            ..self.subject.clone()
        }
    }

    /// One Detection Finding per resource of an unknown identity (id derived from the resource).
    fn finding(&self, resource: &Resource) -> Option<AuditEvent> {
        if self.known {
            return None;
        }
        let id = event_id("unattributed", resource, "", &Value::Null);
        let finding = Finding {
            uid: "unattributed-telemetry".to_owned(),
            title: "telemetry from an identity Warden does not know".to_owned(),
            desc: self.note.clone(),
            severity_id: 3,
        };
        let mut event = AuditEvent::finding(id, warden_lake::event::now_ms(), &self.subject, &finding);
        event.status_detail = self.note.clone();
        Some(event)
    }
}

/// Attributes resources, asking the registry once per claimed id.
struct Resolver<'a> {
    state: &'a AppState,
    token: Option<(String, Vec<String>)>,
    known: HashMap<String, bool>,
}

impl<'a> Resolver<'a> {
    fn new(state: &'a AppState, token: Option<(String, Vec<String>)>) -> Resolver<'a> {
        Resolver {
            state,
            token,
            known: HashMap::new(),
        }
    }

    async fn resolve(&mut self, resource: &Resource) -> Result<Who, ApiError> {
        if let Some((agent, chain)) = &self.token {
            return Ok(Who {
                subject: Subject {
                    agent_id: agent.clone(),
                    team: AgentId::parse(agent).ok().map(|id| id.team().to_string()),
                    delegation_chain: chain.clone(),
                    ..Subject::default()
                },
                note: None,
                known: true,
            });
        }
        let Some((attribute, claimed)) = resource.claimed_agent() else {
            return Ok(Who {
                subject: Subject {
                    agent_id: "unknown".to_owned(),
                    ..Subject::default()
                },
                note: Some(format!(
                    "{UNATTRIBUTED}: no agent token and no agent id in the resource attributes ({})",
                    AGENT_ATTRIBUTES.join(", ")
                )),
                known: false,
            });
        };
        let parsed = AgentId::parse(&claimed).ok();
        let known = match (&parsed, self.known.get(&claimed)) {
            (None, _) => false,
            (Some(_), Some(known)) => *known,
            (Some(id), None) => {
                let known = match self.state.store.get_agent(id).await {
                    Ok(_) => true,
                    Err(warden_store::StoreError::NotFound { .. }) => false,
                    Err(e) => return Err(e.into()),
                };
                self.known.insert(claimed.clone(), known);
                known
            }
        };
        if known {
            Ok(Who {
                subject: Subject {
                    team: parsed.map(|id| id.team().to_string()),
                    agent_id: claimed,
                    ..Subject::default()
                },
                note: Some(format!(
                    "attributed by resource attribute `{attribute}` (no agent token)"
                )),
                known: true,
            })
        } else {
            Ok(Who {
                note: Some(format!(
                    "{UNATTRIBUTED}: `{attribute}` = `{claimed}` is not an agent Warden knows, and no agent token was sent"
                )),
                subject: Subject {
                    agent_id: claimed,
                    ..Subject::default()
                },
                known: false,
            })
        }
    }
}

/// The event name of a Claude Code log record: `event.name`, else the body (`claude_code.<name>`).
fn event_name(record: &Value, attrs: &Map<String, Value>) -> Option<String> {
    let name = text(attrs, "event.name").or_else(|| {
        record
            .get("body")
            .and_then(|b| b.get("stringValue"))
            .and_then(Value::as_str)
            .map(str::to_owned)
    })?;
    Some(name.strip_prefix("claude_code.").unwrap_or(&name).to_owned())
}

fn log_event(id: String, record: &Value, who: &Who, at: &str) -> Result<Option<AuditEvent>, ApiError> {
    if !record.is_object() {
        return Err(ApiError::bad_request(format!("`{at}` must be an object")));
    }
    let attrs = attributes(record, at)?;
    let Some(name) = event_name(record, &attrs) else {
        return Ok(None);
    };
    if name != "api_request" && name != "api_error" {
        return Ok(None);
    }
    let time = time_ms(record, &["timeUnixNano", "observedTimeUnixNano"], at)?;
    let model = text(&attrs, "model").unwrap_or_else(|| "unknown".to_owned());
    let subject = who.subject(text(&attrs, "session.id"));
    let duration = count(&attrs, "duration_ms", at)?;
    let mut usage = ModelUsage {
        provider: "anthropic".to_owned(),
        model: model.clone(),
        ..ModelUsage::default()
    };
    let mut facts = Vec::new();
    if name == "api_request" {
        usage.input_tokens = count(&attrs, "input_tokens", at)?;
        usage.output_tokens = count(&attrs, "output_tokens", at)?;
        usage.cache_read_tokens = count(&attrs, "cache_read_tokens", at)?;
        usage.cache_creation_tokens = count(&attrs, "cache_creation_tokens", at)?;
        if let Some(cost) = attrs.get("cost_usd").filter(|v| !v.is_null()) {
            let usd = decimal(cost, &format!("`{at}` attribute `cost_usd`"))?;
            usage.cost_micro_usd = Some(micro_usd(usd));
        }
        facts.push(format!(
            "{} input, {} output tokens",
            usage.input_tokens.unwrap_or(0),
            usage.output_tokens.unwrap_or(0)
        ));
        if let Some(micros) = usage.cost_micro_usd {
            facts.push(format!("{micros} micro-USD"));
        }
    }
    if let Some(ms) = duration {
        facts.push(format!("{ms} ms"));
    }
    if let Some(request) = text(&attrs, "request_id") {
        facts.push(format!("request {request}"));
    }
    let mut event = AuditEvent::model_usage(id, time, &subject, &usage);
    event.status_detail = who.note.clone();
    if name == "api_error" {
        event.status_id = 2;
        let error = text(&attrs, "error").unwrap_or_else(|| "unknown error".to_owned());
        let status = text(&attrs, "status_code")
            .map(|s| format!(" (status {s})"))
            .unwrap_or_default();
        event.status_detail = Some(match &who.note {
            Some(note) => format!("{error}{status}; {note}"),
            None => format!("{error}{status}"),
        });
        facts.insert(0, "failed".to_owned());
    }
    event.message = format!("{model} via anthropic: {}", facts.join(", "));
    Ok(Some(event))
}

/// The `usage_metric` events of one metric (only Claude Code's token and cost metrics).
fn metric_events(
    metric: &Value,
    resource: &Resource,
    scope: &str,
    who: &Who,
    at: &str,
    out: &mut Vec<AuditEvent>,
) -> Result<(), ApiError> {
    let Some(name) = metric.get("name").and_then(Value::as_str) else {
        return Err(ApiError::bad_request(format!(
            "`{at}` must be an object with a string `name`"
        )));
    };
    let tokens = match name {
        "claude_code.token.usage" => true,
        "claude_code.cost.usage" => false,
        _ => return Ok(()),
    };
    let Some((kind, data)) = ["sum", "gauge"].iter().find_map(|k| metric.get(*k).map(|d| (*k, d))) else {
        return Err(ApiError::bad_request(format!(
            "`{at}` ({name}) must hold a `sum` or `gauge` with `dataPoints`"
        )));
    };
    let at = format!("{at}.{kind}");
    let temporality = match data.get("aggregationTemporality").and_then(Value::as_i64) {
        Some(2) => "cumulative",
        _ => "delta",
    };
    for (p, point) in list(data, "dataPoints", &at)?.iter().enumerate() {
        let at = format!("{at}.dataPoints[{p}]");
        if !point.is_object() {
            return Err(ApiError::bad_request(format!("`{at}` must be an object")));
        }
        let attrs = attributes(point, &at)?;
        let value = point
            .get("asDouble")
            .or_else(|| point.get("asInt"))
            .ok_or_else(|| ApiError::bad_request(format!("`{at}` must have `asDouble` or `asInt`")))?;
        let value = decimal(value, &format!("`{at}` value"))?;
        let time = time_ms(point, &["timeUnixNano", "startTimeUnixNano"], &at)?;
        let model = text(&attrs, "model").unwrap_or_else(|| "unknown".to_owned());
        let id = event_id("metric", resource, scope, &json!({"name": name, "point": point}));
        let usage = ModelUsage {
            provider: "anthropic".to_owned(),
            model: model.clone(),
            ..ModelUsage::default()
        };
        let mut event = AuditEvent::model_usage(id, time, &who.subject(text(&attrs, "session.id")), &usage);
        event.activity_name = Some("usage_metric".to_owned());
        if let Some(api) = event.api.as_mut() {
            api.operation = "usage_metric".to_owned();
        }
        event.status_detail = who.note.clone();
        if tokens {
            let n = if value >= i64::MAX as f64 {
                i64::MAX
            } else {
                value.round() as i64
            };
            let kind = text(&attrs, "type").unwrap_or_else(|| "unknown".to_owned());
            event.message_context = Some(warden_lake::event::MessageContext {
                completion_tokens: (kind == "output").then_some(n),
                prompt_tokens: (kind == "input").then_some(n),
                total_tokens: Some(n),
            });
            event.message = format!("{name} ({temporality}): {n} {kind} tokens of {model} (not summed as spend)");
        } else {
            event.message_context = None;
            event.message = format!(
                "{name} ({temporality}): {} micro-USD of {model} (not summed as spend)",
                micro_usd(value)
            );
        }
        out.push(event);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_ignore_key_order_and_cost_is_exact_micro_usd() {
        let resource = Resource { attributes: Map::new() };
        let a = json!({"a": 1, "b": [1, 2]});
        let b: Value = serde_json::from_str(r#"{"b": [1, 2], "a": 1}"#).unwrap();
        assert_eq!(event_id("log", &resource, "s", &a), event_id("log", &resource, "s", &b));
        assert_ne!(
            event_id("log", &resource, "s", &a),
            event_id("metric", &resource, "s", &a)
        );
        assert_eq!(micro_usd(0.012345), 12_345);
        assert_eq!(micro_usd(1.0), 1_000_000);
    }

    #[test]
    fn attributes_read_every_any_value_kind() {
        let record = json!({"attributes": [
            {"key": "s", "value": {"stringValue": "x"}},
            {"key": "i", "value": {"intValue": "42"}},
            {"key": "l", "value": {"arrayValue": {"values": [{"boolValue": true}]}}},
            {"key": "k", "value": {"kvlistValue": {"values": [{"key": "n", "value": {"doubleValue": 1.5}}]}}}
        ]});
        let attrs = attributes(&record, "r").unwrap();
        assert_eq!(attrs["s"], "x");
        assert_eq!(count(&attrs, "i", "r").unwrap(), Some(42));
        assert_eq!(attrs["l"], json!([true]));
        assert_eq!(attrs["k"], json!({"n": 1.5}));
        let bad = json!({"attributes": [{"key": "x", "value": {"weird": 1}}]});
        assert!(attributes(&bad, "r").is_err());
        assert!(count(&attrs, "s", "r").is_err());
    }
}
