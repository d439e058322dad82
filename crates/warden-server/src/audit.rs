//! The control plane's side of the audit lake: how each thing Warden records becomes one OCSF event,
//! and how it gets into the lake.
//!
//! Two roads lead in. The gateway's events (and those standalone gateways ship), Claude Code hook
//! events (`routes/hooks.rs`) and OTLP telemetry (`routes/otlp.rs`) are appended to the lake directly,
//! durably before the answer. Registry changes and credential events are first written to the store's
//! change log in the same transaction as the change (the store's invariant), and the [`Forwarder`]
//! carries them into the lake, in order, each under the id `change-<seq>`, so carrying one twice
//! stores it once. One stream, one format.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::Mutex;
use warden_core::AgentId;
use warden_gateway::{AuditSink, CallStatus, GatewayEvent, RecordFuture, Verdict};
use warden_lake::{
    AccessChange, AuditEvent, Credential, Decision, EntityAction, EntityChange, EntityKind, Finding, Lake, Subject,
    ToolCall,
};
use warden_store::{ChangeEvent, Store};

/// Appends the gateway's events to the lake; `record` resolves once the event is durable. A decision
/// (which holds up its call) is committed at once; the other events (outcomes, sessions), which
/// nobody waits on, share the next commit instead of costing an `fdatasync` of their own.
pub(crate) struct LakeAudit {
    pub(crate) lake: Lake,
}

impl AuditSink for LakeAudit {
    fn record(&self, event: GatewayEvent) -> RecordFuture<'_> {
        Box::pin(async move {
            let decision = matches!(event, GatewayEvent::Decision { .. });
            let event = gateway_event(AuditEvent::new_id(), &event, None);
            let appended = if decision {
                self.lake.append(vec![event]).await
            } else {
                self.lake.append_lazy(vec![event]).await
            };
            appended.map(|_| ()).map_err(|e| e.to_string())
        })
    }
}

/// The subject of an event about `agent`: its team comes from its id.
fn subject_of(agent: &str, chain: &[String], session: Option<&str>) -> Subject {
    let team = AgentId::parse(agent).ok().map(|id| id.team().to_string());
    Subject {
        agent_id: agent.to_owned(),
        team,
        purpose: None,
        session_id: session.map(str::to_owned),
        subagent_id: None,
        delegation_chain: chain.to_vec(),
    }
}

/// One gateway event as an OCSF event with id `id`; `gateway` names the standalone gateway that
/// shipped it.
pub(crate) fn gateway_event(id: String, event: &GatewayEvent, gateway: Option<&str>) -> AuditEvent {
    let mut audit = match event {
        GatewayEvent::Decision {
            at_ms,
            agent,
            chain,
            session,
            server,
            tool,
            decision,
            policy_ids,
            reason,
            call_id,
            ..
        } => {
            let call = ToolCall {
                server: server.clone(),
                tool: tool.clone(),
                decision: match decision {
                    Verdict::Allow => Decision::Allow,
                    Verdict::Deny => Decision::Deny,
                },
                policy_ids: policy_ids.clone(),
                reason: Some(reason.clone()),
            };
            let subject = subject_of(agent.as_str(), chain, session.as_deref());
            AuditEvent::tool_decision(id, millis(*at_ms), &subject, &call).with_call_id(call_id.clone())
        }
        GatewayEvent::Outcome {
            at_ms,
            agent,
            chain,
            session,
            server,
            tool,
            status,
            error,
            call_id,
            duration_ms,
        } => {
            let call = ToolCall {
                server: server.clone(),
                tool: tool.clone(),
                decision: if *status == CallStatus::Denied {
                    Decision::Deny
                } else {
                    Decision::Allow
                },
                policy_ids: Vec::new(),
                reason: None,
            };
            let subject = subject_of(agent.as_str(), chain, session.as_deref());
            let ok = *status == CallStatus::Ok;
            let detail = match (status, error) {
                (CallStatus::Ok, _) => None,
                (status, Some(error)) => Some(format!("{}: {error}", status_name(*status))),
                (status, None) => Some(status_name(*status).to_owned()),
            };
            AuditEvent::tool_outcome(id, millis(*at_ms), &subject, &call, ok, detail)
                .with_call_id(call_id.clone())
                .with_duration_ms(millis(*duration_ms))
        }
        GatewayEvent::SessionOpened {
            at_ms,
            agent,
            chain,
            session,
            endpoint,
            protocol_version,
            ..
        } => session_event(
            id,
            *at_ms,
            &subject_of(agent.as_str(), chain, Some(session)),
            "open_session",
            format!("MCP session opened at {endpoint} ({protocol_version})"),
        ),
        GatewayEvent::SessionClosed {
            at_ms,
            agent,
            session,
            reason,
        } => session_event(
            id,
            *at_ms,
            &subject_of(agent.as_str(), &[], Some(session)),
            "close_session",
            format!(
                "MCP session closed: {}",
                serde_json::to_value(reason)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default()
            ),
        ),
    };
    if let Some(gateway) = gateway {
        audit.message = format!("{} (via gateway {gateway})", audit.message);
    }
    audit
}

fn status_name(status: CallStatus) -> &'static str {
    match status {
        CallStatus::Ok => "ok",
        CallStatus::Error => "error",
        CallStatus::Denied => "denied",
        CallStatus::Timeout => "timeout",
    }
}

/// An MCP session opened or closed: API Activity with the session's own activity name.
fn session_event(id: String, at_ms: u64, subject: &Subject, activity: &str, message: String) -> AuditEvent {
    let call = ToolCall {
        server: "warden".to_owned(),
        tool: activity.to_owned(),
        decision: Decision::Allow,
        policy_ids: Vec::new(),
        reason: None,
    };
    let mut event = AuditEvent::tool_outcome(id, millis(at_ms), subject, &call, true, None);
    event.activity_name = Some(activity.to_owned());
    event.warden.decision = None;
    event.warden.tool = None;
    event.warden.server = None;
    event.action_id = None;
    event.disposition_id = None;
    event.message = message;
    event
}

fn millis(at_ms: u64) -> i64 {
    i64::try_from(at_ms).unwrap_or(i64::MAX)
}

/// One change-log entry as an OCSF event, under the id `change-<seq>`.
pub(crate) fn change_event(change: &ChangeEvent) -> AuditEvent {
    let id = format!("change-{}", change.seq);
    let time = time::OffsetDateTime::parse(&change.time, &time::format_description::well_known::Rfc3339)
        .map(|t| i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX))
        .unwrap_or_else(|_| warden_lake::event::now_ms());
    let (kind, verb) = change.action.split_once('.').unwrap_or((change.action.as_str(), ""));
    let by = Some(format!("{}:{}", change.actor_kind, change.actor));
    let details = &change.after;
    let agent_subject = |agent: &str| {
        let chain: Vec<String> = details["chain"]
            .as_array()
            .map(|chain| chain.iter().filter_map(|a| a.as_str().map(str::to_owned)).collect())
            .unwrap_or_default();
        subject_of(agent, &chain, None)
    };
    let credential = || Credential {
        credential_id: str_of(details, &["jti", "token_id"]).unwrap_or_default(),
        scopes: details["scope"]
            .as_str()
            .map(|s| s.split_whitespace().map(str::to_owned).collect())
            .or_else(|| {
                details["scopes"]
                    .as_array()
                    .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_owned)).collect())
            })
            .unwrap_or_default(),
        expires_ms: details["exp"].as_i64().map(|exp| exp.saturating_mul(1000)),
        issuer: None,
    };
    let mut event = match (kind, verb) {
        ("credential", "issue") => {
            AuditEvent::credential_issued(id, time, &agent_subject(&change.target), &credential())
        }
        ("credential", verb @ ("delegate" | "revoke" | "suspend")) => {
            let access = match verb {
                "delegate" => AccessChange::Delegated,
                "revoke" => AccessChange::Revoked,
                _ => AccessChange::Suspended,
            };
            let subject = agent_subject(&change.target);
            AuditEvent::credential_change(id, time, &subject, access, &credential(), by.as_deref())
        }
        (_, "refuse") => {
            let reason = str_of(details, &["reason", "message", "error"]).unwrap_or_default();
            let finding = Finding {
                uid: format!("refused-{}", change.seq),
                title: format!("{} refused", change.action),
                desc: Some(reason),
                severity_id: 3,
            };
            let mut event = AuditEvent::finding(id, time, &agent_subject(&change.target), &finding);
            event.status_id = 2;
            event
        }
        _ => {
            let entity = EntityChange {
                kind: entity_kind(kind, &change.target_kind),
                action: entity_action(verb),
                uid: change.target.clone(),
                name: change.target.clone(),
                team: AgentId::parse(&change.target)
                    .ok()
                    .map(|id| id.team().to_string())
                    .or_else(|| str_of(details, &["team"])),
                by: by.clone(),
            };
            let mut event = AuditEvent::entity_change(id, time, &entity);
            event.message = format!("{} {}", change.action, change.target);
            event
        }
    };
    event.warden.team = event
        .warden
        .team
        .take()
        .or_else(|| AgentId::parse(&change.target).ok().map(|id| id.team().to_string()));
    event
}

fn str_of(value: &Value, keys: &[&str]) -> Option<String> {
    keys.iter()
        .find_map(|k| value.get(*k).and_then(Value::as_str).map(str::to_owned))
}

fn entity_kind(kind: &str, target_kind: &str) -> EntityKind {
    match (kind, target_kind) {
        ("agent" | "credential", _) | (_, "agent") => EntityKind::Agent,
        ("team", _) => EntityKind::Team,
        ("mcp_server", _) => EntityKind::Server,
        ("scope", _) => EntityKind::Scope,
        ("grant", _) => EntityKind::Grant,
        ("guardrail", _) => EntityKind::Guardrail,
        // Access tokens, keys, templates and settings: the platform's configuration.
        _ => EntityKind::Policy,
    }
}

fn entity_action(verb: &str) -> EntityAction {
    match verb {
        "register" => EntityAction::Enrolled,
        "create" | "add" | "define" => EntityAction::Created,
        "delete" | "remove" => EntityAction::Deleted,
        "suspend" => EntityAction::Suspended,
        "resume" => EntityAction::Resumed,
        "revoke" => EntityAction::Retired,
        _ => EntityAction::Updated,
    }
}

/// Carries the store's change log into the lake, in order, each entry once.
///
/// Its cursor (the last carried `seq`) is kept in a file beside the lake and written without a sync:
/// a stale cursor only makes it carry some entries again, which the lake stores once.
#[derive(Clone)]
pub(crate) struct Forwarder {
    inner: Arc<ForwarderInner>,
}

struct ForwarderInner {
    store: Store,
    lake: Lake,
    cursor_file: PathBuf,
    /// The last carried `seq`; the lock also makes catching up one caller at a time.
    cursor: Mutex<i64>,
}

/// How many change-log entries are carried per lake append.
const FORWARD_BATCH: i64 = 1_000;

impl Forwarder {
    pub(crate) fn new(store: Store, lake: Lake, cursor_file: PathBuf) -> Forwarder {
        let cursor = std::fs::read_to_string(&cursor_file)
            .ok()
            .and_then(|text| text.trim().parse().ok())
            .unwrap_or(0);
        Forwarder {
            inner: Arc::new(ForwarderInner {
                store,
                lake,
                cursor_file,
                cursor: Mutex::new(cursor),
            }),
        }
    }

    /// Carries every change-log entry recorded so far into the lake; returns once they are durable
    /// there.
    pub(crate) async fn catch_up(&self) -> Result<(), String> {
        let inner = &self.inner;
        let mut cursor = inner.cursor.lock().await;
        loop {
            let changes = inner
                .store
                .list_events(*cursor, FORWARD_BATCH)
                .await
                .map_err(|e| format!("cannot read the change log: {e}"))?;
            let Some(last) = changes.last().map(|c| c.seq) else {
                return Ok(());
            };
            let events = changes.iter().map(change_event).collect();
            inner
                .lake
                .append(events)
                .await
                .map_err(|e| format!("cannot append the change log to the audit lake: {e}"))?;
            *cursor = last;
            if let Err(err) = std::fs::write(&inner.cursor_file, last.to_string()) {
                tracing::warn!(path = %inner.cursor_file.display(), error = %err, "cannot save the lake cursor");
            }
        }
    }

    /// Catches up every `every` until the process ends.
    pub(crate) fn spawn(&self, every: Duration) {
        let forwarder = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(err) = forwarder.catch_up().await {
                    tracing::error!(error = %err, "audit lake forwarding failed; retrying");
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn change(action: &str, target_kind: &str, target: &str, after: Value) -> ChangeEvent {
        ChangeEvent {
            seq: 7,
            time: "2026-11-25T10:00:00Z".to_owned(),
            actor_kind: "person".to_owned(),
            actor: "root".to_owned(),
            action: action.to_owned(),
            target_kind: target_kind.to_owned(),
            target: target.to_owned(),
            before: Value::Null,
            after,
        }
    }

    const AGENT: &str = "spiffe://warden.local/team/payments/agent/bot";

    #[test]
    fn each_kind_of_change_maps_to_its_ocsf_class() {
        let cases = [
            (
                change("credential.issue", "agent", AGENT, json!({"jti": "j1", "scope": "a b"})),
                3003,
                1,
            ),
            (change("credential.delegate", "agent", AGENT, json!({})), 3005, 1),
            (change("credential.revoke", "agent", AGENT, json!({})), 3005, 2),
            (change("agent.register", "agent", AGENT, json!({})), 3004, 6),
            (change("agent.suspend", "agent", AGENT, json!({})), 3004, 12),
            (change("guardrail.add", "guardrail", "sod", json!({})), 3004, 1),
            (
                change("grant.refuse", "agent", AGENT, json!({"reason": "sod"})),
                2004,
                1,
            ),
        ];
        for (change, class, activity) in cases {
            let event = change_event(&change);
            assert_eq!(
                (event.class_uid, event.activity_id),
                (class, activity),
                "{}",
                change.action
            );
            assert_eq!(event.type_uid, i64::from(class) * 100 + i64::from(activity));
            assert_eq!(event.id(), "change-7");
            assert_eq!(event.time, 1_795_600_800_000);
            event.validate().unwrap();
        }
        let issued = change_event(&cases_issue());
        assert_eq!(issued.warden.team.as_deref(), Some("payments"));
        assert_eq!(issued.privileges, Some(vec!["a".to_owned(), "b".to_owned()]));
    }

    fn cases_issue() -> ChangeEvent {
        change("credential.issue", "agent", AGENT, json!({"jti": "j1", "scope": "a b"}))
    }

    #[test]
    fn gateway_events_keep_the_acting_agent_and_chain() {
        let agent = AgentId::parse(&format!("{AGENT}/helper")).unwrap();
        let decision = GatewayEvent::Decision {
            at_ms: 1_000,
            agent,
            chain: vec![AGENT.to_owned(), format!("{AGENT}/helper")],
            token_id: "t".to_owned(),
            session: Some("s1".to_owned()),
            server: "github".to_owned(),
            tool: "get_issue".to_owned(),
            decision: Verdict::Deny,
            policy_ids: vec!["no-prod".to_owned()],
            reason: "guardrail no-prod".to_owned(),
            call_id: "c1".to_owned(),
        };
        let event = gateway_event("e1".to_owned(), &decision, Some("edge-1"));
        assert_eq!(event.class_uid, 6003);
        assert_eq!(
            event.warden.agent_id.as_deref(),
            Some(format!("{AGENT}/helper").as_str())
        );
        assert_eq!(event.warden.delegation_chain.len(), 2);
        assert_eq!(event.warden.decision.as_deref(), Some("deny"));
        assert_eq!(event.warden.policy_ids, vec!["no-prod".to_owned()]);
        assert_eq!(event.warden.session_id.as_deref(), Some("s1"));
        assert_eq!(event.action_id, Some(2));
        assert!(event.message.contains("edge-1"));
        assert_eq!(event.warden.call_id.as_deref(), Some("c1"));
        assert_eq!(event.duration, None);
        event.validate().unwrap();

        let outcome = GatewayEvent::Outcome {
            at_ms: 1_250,
            agent: AgentId::parse(AGENT).unwrap(),
            chain: vec![AGENT.to_owned()],
            session: None,
            server: "github".to_owned(),
            tool: "get_issue".to_owned(),
            call_id: "c1".to_owned(),
            status: CallStatus::Ok,
            error: None,
            duration_ms: 250,
        };
        let event = gateway_event("e2".to_owned(), &outcome, None);
        assert_eq!(event.warden.call_id.as_deref(), Some("c1"));
        assert_eq!(event.duration, Some(250));
        assert!(
            String::from_utf8(event.canonical_bytes())
                .unwrap()
                .contains("\"duration\":250")
        );
        event.validate().unwrap();
    }
}
