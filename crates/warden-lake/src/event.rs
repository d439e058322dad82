//! The audit event: an OCSF 1.8.0 event with Warden's `warden` extension, its constructors (one per
//! kind of thing Warden records) and its canonical bytes.
//!
//! The struct's serde form *is* the OCSF JSON. Canonical bytes are that JSON with object keys in
//! sorted order, no whitespace, no floats and absent optional fields omitted (RFC 8785 for the values
//! this type can hold). They are computed once, by the lake's writer after it has assigned
//! `metadata.sequence` and `metadata.logged_time`; those exact bytes are written to the WAL, hashed
//! into the Merkle tree, stored in the Parquet `raw_canonical` column and shipped in evidence packs.
//! Nothing ever re-serializes an event to check it. Every struct declares its fields in sorted JSON
//! key order so that `serde_json` writes canonical bytes directly; a test checks this against an
//! explicit key sort. `SCHEMA.md` documents every field.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// The OCSF schema version every event declares.
pub const OCSF_VERSION: &str = "1.8.0";
/// The extension id used until `warden` is registered in OCSF's `extensions.md` (999 = development).
pub const EXTENSION_UID: &str = "999";
/// The version of the `warden` extension this crate writes.
pub const EXTENSION_VERSION: &str = "1";

/// OCSF class uids used by Warden.
pub mod class {
    /// Detection Finding (Findings, category 2).
    pub const DETECTION_FINDING: i32 = 2004;
    /// Authorize Session (Identity & Access Management, category 3).
    pub const AUTHORIZE_SESSION: i32 = 3003;
    /// Entity Management (IAM).
    pub const ENTITY_MANAGEMENT: i32 = 3004;
    /// User Access Management (IAM).
    pub const USER_ACCESS_MANAGEMENT: i32 = 3005;
    /// API Activity (Application Activity, category 6).
    pub const API_ACTIVITY: i32 = 6003;
}

/// One audit event. Field order is the sorted JSON key order (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditEvent {
    /// Security-control profile: 1 Allowed, 2 Denied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action_id: Option<i32>,
    pub activity_id: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activity_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<Actor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ai_model: Option<AiModel>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api: Option<Api>,
    pub category_uid: i32,
    pub class_uid: i32,
    /// Security-control profile: 1 Allowed, 2 Blocked, 24 Access Revoked, 26 Unauthorized, …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disposition_id: Option<i32>,
    /// How long the activity took, in milliseconds (OCSF base `duration`); set on tool-call outcomes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entity: Option<Entity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finding_info: Option<FindingInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_alert: Option<bool>,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_context: Option<MessageContext>,
    pub metadata: Metadata,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privileges: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<Session>,
    /// 0 Unknown, 1 Informational, 2 Low, 3 Medium, 4 High, 5 Critical, 6 Fatal, 99 Other.
    pub severity_id: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src_endpoint: Option<Endpoint>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_detail: Option<String>,
    /// 1 Success, 2 Failure, 99 Other.
    pub status_id: i32,
    /// Event time, epoch milliseconds.
    pub time: i64,
    /// `class_uid * 100 + activity_id`.
    pub type_uid: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<User>,
    pub warden: Warden,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    pub extensions: Vec<Extension>,
    /// Sequencer time (epoch ms), monotone along `sequence`; set by the lake's writer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logged_time: Option<i64>,
    pub product: Product,
    pub profiles: Vec<String>,
    /// The event's position in the log (= Merkle leaf index); set by the lake's writer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequence: Option<u64>,
    /// The event id: the idempotency key (a UUIDv7 unless the producer has its own).
    pub uid: String,
    pub version: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Extension {
    pub name: String,
    pub uid: String,
    pub version: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Product {
    pub name: String,
    pub vendor_name: String,
    pub version: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Actor {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_uid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorizations: Option<Vec<Authorization>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<User>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Authorization {
    pub decision: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<Policy>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    pub uid: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups: Option<Vec<Group>>,
    pub uid: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Group {
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AiModel {
    pub ai_provider: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Api {
    pub operation: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<Service>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    pub uid: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entity {
    pub name: String,
    #[serde(rename = "type")]
    pub type_: String,
    pub uid: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FindingInfo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desc: Option<String>,
    pub title: String,
    pub uid: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessageContext {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_tokens: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_tokens: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_tokens: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Session {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_uid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration_time: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
}

/// The `warden` extension: the flat, query-friendly facts about the agent and the call. OpenTelemetry
/// GenAI attribute names are used where one exists.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Warden {
    /// Ties a tool call's decision to its outcome: both carry the same id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_micro_usd: Option<i64>,
    /// `allow`, `deny`, … (`gen_ai.agent.tool.disposition` in the OTel proposals).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<String>,
    /// The agent ids from the root agent down to the acting one's parent (RFC 8693 `act` chain).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub delegation_chain: Vec<String>,
    #[serde(default, rename = "gen_ai.agent.id", skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    #[serde(default, rename = "gen_ai.tool.name", skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    #[serde(
        default,
        rename = "gen_ai.usage.cache_creation.input_tokens",
        skip_serializing_if = "Option::is_none"
    )]
    pub cache_creation_tokens: Option<i64>,
    #[serde(
        default,
        rename = "gen_ai.usage.cache_read.input_tokens",
        skip_serializing_if = "Option::is_none"
    )]
    pub cache_read_tokens: Option<i64>,
    #[serde(
        default,
        rename = "gen_ai.usage.input_tokens",
        skip_serializing_if = "Option::is_none"
    )]
    pub input_tokens: Option<i64>,
    #[serde(
        default,
        rename = "gen_ai.usage.output_tokens",
        skip_serializing_if = "Option::is_none"
    )]
    pub output_tokens: Option<i64>,
    #[serde(
        default,
        rename = "gen_ai.usage.reasoning.output_tokens",
        skip_serializing_if = "Option::is_none"
    )]
    pub reasoning_tokens: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policy_ids: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose: Option<String>,
    /// The MCP server (or API host) of a tool call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subagent_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
}

/// Who an event is about: the agent, its team and how it came to act.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subject {
    pub agent_id: String,
    pub team: Option<String>,
    pub purpose: Option<String>,
    pub session_id: Option<String>,
    pub subagent_id: Option<String>,
    /// Root first, the acting agent's parent last.
    pub delegation_chain: Vec<String>,
}

/// An allow/deny decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Deny => "deny",
        }
    }
}

/// A tool call as the gateway or the hook saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolCall {
    pub server: String,
    pub tool: String,
    pub decision: Decision,
    /// Ids of the policies (grants, guardrails) behind the decision.
    pub policy_ids: Vec<String>,
    /// Why, in words (the deny message).
    pub reason: Option<String>,
}

/// Token usage of one model call.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelUsage {
    pub provider: String,
    pub model: String,
    pub input_tokens: Option<i64>,
    pub output_tokens: Option<i64>,
    pub cache_read_tokens: Option<i64>,
    pub cache_creation_tokens: Option<i64>,
    pub reasoning_tokens: Option<i64>,
    pub cost_micro_usd: Option<i64>,
}

/// A credential (agent token) as minted, delegated or revoked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Credential {
    pub credential_id: String,
    pub scopes: Vec<String>,
    pub expires_ms: Option<i64>,
    pub issuer: Option<String>,
}

/// What happened to a credential (User Access Management 3005).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessChange {
    Delegated,
    Revoked,
    Suspended,
}

/// What kind of registry entity changed (Entity Management 3004).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntityKind {
    Agent,
    Team,
    Server,
    Scope,
    Grant,
    Guardrail,
    Policy,
}

impl EntityKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EntityKind::Agent => "agent",
            EntityKind::Team => "team",
            EntityKind::Server => "mcp_server",
            EntityKind::Scope => "scope",
            EntityKind::Grant => "grant",
            EntityKind::Guardrail => "guardrail",
            EntityKind::Policy => "policy",
        }
    }
}

/// The Entity Management activity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntityAction {
    Created,
    Updated,
    Deleted,
    Enrolled,
    Retired,
    Suspended,
    Resumed,
}

impl EntityAction {
    /// `(activity_id, name)` in OCSF Entity Management.
    fn activity(self) -> (i32, &'static str) {
        match self {
            EntityAction::Created => (1, "Create"),
            EntityAction::Updated => (3, "Update"),
            EntityAction::Deleted => (4, "Delete"),
            EntityAction::Enrolled => (6, "Enroll"),
            EntityAction::Retired => (11, "Deactivate"),
            EntityAction::Suspended => (12, "Suspend"),
            EntityAction::Resumed => (13, "Resume"),
        }
    }
}

/// A registry or policy change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntityChange {
    pub kind: EntityKind,
    pub action: EntityAction,
    pub uid: String,
    pub name: String,
    pub team: Option<String>,
    /// The person or service that made the change.
    pub by: Option<String>,
}

/// A governance finding (shadow agent, scope drift, anomalous spend, …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub uid: String,
    pub title: String,
    pub desc: Option<String>,
    /// OCSF severity id (1 Informational … 5 Critical).
    pub severity_id: i32,
}

impl AuditEvent {
    /// A new time-ordered event id (UUIDv7, RFC 9562): 48 bits of Unix milliseconds, then 74 bits
    /// that are unique within the process and unpredictable outside it.
    ///
    /// Every audited call makes ids, so they cost no system call: the 74 bits are 12 bits of a
    /// per-process random salt and 62 bits of SplitMix64's finalizer (a bijection) over a
    /// per-process counter that starts at a random point. Within a process two ids can share them
    /// only if two of the first 2^64 counter values agree in 62 mixed bits *and* fall in the same
    /// millisecond; across processes, only if their random starting points nearly coincide.
    pub fn new_id() -> String {
        use std::sync::OnceLock;
        use std::sync::atomic::{AtomicU64, Ordering};
        static SEED: OnceLock<(u64, u16)> = OnceLock::new();
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let (start, salt) = *SEED.get_or_init(|| {
            let mut seed = [0u8; 10];
            if getrandom::fill(&mut seed).is_err() {
                // No entropy source: the clock's nanoseconds still tell processes apart.
                seed[..8].copy_from_slice(&u64::from(now_nanos()).to_le_bytes());
            }
            let mut start = [0u8; 8];
            start.copy_from_slice(&seed[..8]);
            (u64::from_le_bytes(start), u16::from_le_bytes([seed[8], seed[9]]))
        });
        let mut z = start.wrapping_add(COUNTER.fetch_add(1, Ordering::Relaxed));
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        let ms = now_ms().max(0) as u64;
        let mut b = [0u8; 16];
        b[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
        b[6..8].copy_from_slice(&salt.to_be_bytes());
        b[8..].copy_from_slice(&z.to_be_bytes());
        b[6] = 0x70 | (b[6] & 0x0f);
        b[8] = 0x80 | (b[8] & 0x3f);
        let hex = crate::merkle::hex(&b);
        format!(
            "{}-{}-{}-{}-{}",
            &hex[..8],
            &hex[8..12],
            &hex[12..16],
            &hex[16..20],
            &hex[20..]
        )
    }

    /// The common skeleton: base attributes, metadata and the subject's extension fields.
    fn base(id: String, time_ms: i64, class_uid: i32, activity_id: i32, subject: Option<&Subject>) -> Self {
        let warden = match subject {
            Some(s) => Warden {
                agent_id: Some(s.agent_id.clone()),
                team: s.team.clone(),
                purpose: s.purpose.clone(),
                session_id: s.session_id.clone(),
                subagent_id: s.subagent_id.clone(),
                delegation_chain: s.delegation_chain.clone(),
                ..Warden::default()
            },
            None => Warden::default(),
        };
        AuditEvent {
            action_id: None,
            activity_id,
            activity_name: None,
            actor: None,
            ai_model: None,
            api: None,
            category_uid: class_uid / 1000,
            class_uid,
            disposition_id: None,
            duration: None,
            entity: None,
            finding_info: None,
            is_alert: None,
            message: String::new(),
            message_context: None,
            metadata: Metadata {
                extensions: vec![Extension {
                    name: "warden".to_owned(),
                    uid: EXTENSION_UID.to_owned(),
                    version: EXTENSION_VERSION.to_owned(),
                }],
                logged_time: None,
                product: Product {
                    name: "Warden".to_owned(),
                    vendor_name: "Warden".to_owned(),
                    version: env!("CARGO_PKG_VERSION").to_owned(),
                },
                profiles: vec![
                    "ai_operation".to_owned(),
                    "security_control".to_owned(),
                    "datetime".to_owned(),
                ],
                sequence: None,
                uid: id,
                version: OCSF_VERSION.to_owned(),
            },
            privileges: None,
            session: None,
            severity_id: 1,
            src_endpoint: None,
            status_detail: None,
            status_id: 1,
            time: time_ms,
            type_uid: i64::from(class_uid) * 100 + i64::from(activity_id),
            user: None,
            warden,
        }
    }

    /// The target user, privileges and session of a credential event.
    fn set_credential(&mut self, subject: &Subject, cred: &Credential) {
        self.user = Some(Self::agent_user(subject));
        self.privileges = Some(cred.scopes.clone());
        self.session = Some(Session {
            credential_uid: Some(cred.credential_id.clone()),
            expiration_time: cred.expires_ms,
            issuer: cred.issuer.clone(),
            uid: None,
        });
    }

    fn agent_user(subject: &Subject) -> User {
        User {
            groups: None,
            uid: subject.agent_id.clone(),
        }
    }

    fn tool_base(id: String, time_ms: i64, subject: &Subject, call: &ToolCall, activity_name: &str) -> Self {
        let mut e = Self::base(id, time_ms, class::API_ACTIVITY, 99, Some(subject));
        e.activity_name = Some(activity_name.to_owned());
        e.api = Some(Api {
            operation: call.tool.clone(),
            service: Some(Service {
                name: call.server.clone(),
            }),
        });
        e.src_endpoint = Some(Endpoint {
            uid: subject.agent_id.clone(),
        });
        e.warden.server = Some(call.server.clone());
        e.warden.tool = Some(call.tool.clone());
        e.warden.decision = Some(call.decision.as_str().to_owned());
        e.warden.policy_ids = call.policy_ids.clone();
        e.actor = Some(Actor {
            app_uid: Some(subject.agent_id.clone()),
            authorizations: None,
            user: None,
        });
        let (action, disposition) = match call.decision {
            Decision::Allow => (1, 1),
            Decision::Deny => (2, 2),
        };
        e.action_id = Some(action);
        e.disposition_id = Some(disposition);
        e.status_detail = call.reason.clone();
        e
    }

    /// A tool call was decided (API Activity 6003, activity 99 `decide_tool_call`). A deny is a
    /// failed activity (status 2) with severity Low.
    pub fn tool_decision(id: impl Into<String>, time_ms: i64, subject: &Subject, call: &ToolCall) -> Self {
        let mut e = Self::tool_base(id.into(), time_ms, subject, call, "decide_tool_call");
        if call.decision == Decision::Deny {
            e.status_id = 2;
            e.severity_id = 2;
        }
        e.message = format!("{} {}/{}", call.decision.as_str(), call.server, call.tool);
        e
    }

    /// A tool call that was allowed came back (API Activity 6003, activity 99 `call_tool`): `ok` says
    /// whether the upstream succeeded, `detail` why not.
    pub fn tool_outcome(
        id: impl Into<String>,
        time_ms: i64,
        subject: &Subject,
        call: &ToolCall,
        ok: bool,
        detail: Option<String>,
    ) -> Self {
        let mut e = Self::tool_base(id.into(), time_ms, subject, call, "call_tool");
        e.status_id = if ok { 1 } else { 2 };
        if detail.is_some() {
            e.status_detail = detail;
        }
        e.message = format!(
            "{}/{} {}",
            call.server,
            call.tool,
            if ok { "succeeded" } else { "failed" }
        );
        e
    }

    /// The same event tied to its tool call: a decision and its outcome carry the same
    /// `warden.call_id`.
    #[must_use]
    pub fn with_call_id(mut self, call_id: impl Into<String>) -> Self {
        self.warden.call_id = Some(call_id.into());
        self
    }

    /// The same event with OCSF `duration` (milliseconds the activity took, e.g. a tool call's
    /// upstream round trip).
    #[must_use]
    pub fn with_duration_ms(mut self, duration_ms: i64) -> Self {
        self.duration = Some(duration_ms);
        self
    }

    /// Tokens spent on one model call (API Activity 6003 with the `ai_operation` profile, activity 99
    /// `invoke_model`).
    pub fn model_usage(id: impl Into<String>, time_ms: i64, subject: &Subject, usage: &ModelUsage) -> Self {
        let mut e = Self::base(id.into(), time_ms, class::API_ACTIVITY, 99, Some(subject));
        e.activity_name = Some("invoke_model".to_owned());
        e.api = Some(Api {
            operation: "invoke_model".to_owned(),
            service: None,
        });
        e.src_endpoint = Some(Endpoint {
            uid: subject.agent_id.clone(),
        });
        e.actor = Some(Actor {
            app_uid: Some(subject.agent_id.clone()),
            authorizations: None,
            user: None,
        });
        e.ai_model = Some(AiModel {
            ai_provider: usage.provider.clone(),
            name: usage.model.clone(),
        });
        e.message_context = Some(MessageContext {
            completion_tokens: usage.output_tokens,
            prompt_tokens: usage.input_tokens,
            total_tokens: None,
        });
        e.warden.input_tokens = usage.input_tokens;
        e.warden.output_tokens = usage.output_tokens;
        e.warden.cache_read_tokens = usage.cache_read_tokens;
        e.warden.cache_creation_tokens = usage.cache_creation_tokens;
        e.warden.reasoning_tokens = usage.reasoning_tokens;
        e.warden.cost_micro_usd = usage.cost_micro_usd;
        e.message = format!("{} via {}", usage.model, usage.provider);
        e
    }

    /// A credential was minted for the subject (Authorize Session 3003, activity 1 Assign Privileges).
    pub fn credential_issued(id: impl Into<String>, time_ms: i64, subject: &Subject, cred: &Credential) -> Self {
        let mut e = Self::base(id.into(), time_ms, class::AUTHORIZE_SESSION, 1, Some(subject));
        e.set_credential(subject, cred);
        e.action_id = Some(1);
        e.disposition_id = Some(1);
        e.message = "credential issued".to_owned();
        e
    }

    /// A credential was delegated to, revoked from or suspended for the subject (User Access
    /// Management 3005: activity 1 Assign Privileges, or 2 Revoke Privileges). `by` is who did it.
    pub fn credential_change(
        id: impl Into<String>,
        time_ms: i64,
        subject: &Subject,
        change: AccessChange,
        cred: &Credential,
        by: Option<&str>,
    ) -> Self {
        let activity = if change == AccessChange::Delegated { 1 } else { 2 };
        let mut e = Self::base(
            id.into(),
            time_ms,
            class::USER_ACCESS_MANAGEMENT,
            activity,
            Some(subject),
        );
        e.set_credential(subject, cred);
        e.actor = by.map(|by| Actor {
            app_uid: None,
            authorizations: None,
            user: Some(User {
                groups: None,
                uid: by.to_owned(),
            }),
        });
        let (verb, action, disposition) = match change {
            AccessChange::Delegated => ("delegated", 1, 1),
            AccessChange::Revoked => ("revoked", 2, 24),
            AccessChange::Suspended => ("suspended", 2, 24),
        };
        e.activity_name = Some(
            match change {
                AccessChange::Delegated => "delegate",
                AccessChange::Revoked => "revoke",
                AccessChange::Suspended => "suspend",
            }
            .to_owned(),
        );
        e.action_id = Some(action);
        e.disposition_id = Some(disposition);
        e.message = format!("credential {verb}");
        e
    }

    /// An agent's lifecycle step, or a registry or policy change (Entity Management 3004).
    pub fn entity_change(id: impl Into<String>, time_ms: i64, change: &EntityChange) -> Self {
        let (activity, verb) = change.action.activity();
        let mut e = Self::base(id.into(), time_ms, class::ENTITY_MANAGEMENT, activity, None);
        e.activity_name = Some(verb.to_owned());
        e.entity = Some(Entity {
            name: change.name.clone(),
            type_: change.kind.as_str().to_owned(),
            uid: change.uid.clone(),
        });
        e.actor = change.by.as_ref().map(|by| Actor {
            app_uid: None,
            authorizations: None,
            user: Some(User {
                groups: None,
                uid: by.clone(),
            }),
        });
        if change.kind == EntityKind::Agent {
            e.warden.agent_id = Some(change.uid.clone());
        }
        e.warden.team = change.team.clone();
        e.message = format!("{} {} {}", change.kind.as_str(), change.name, verb.to_lowercase());
        e
    }

    /// A governance finding about the subject (Detection Finding 2004, activity 1 Create).
    pub fn finding(id: impl Into<String>, time_ms: i64, subject: &Subject, finding: &Finding) -> Self {
        let mut e = Self::base(id.into(), time_ms, class::DETECTION_FINDING, 1, Some(subject));
        e.finding_info = Some(FindingInfo {
            desc: finding.desc.clone(),
            title: finding.title.clone(),
            uid: finding.uid.clone(),
        });
        e.severity_id = finding.severity_id;
        e.is_alert = Some(finding.severity_id >= 3);
        e.message = finding.title.clone();
        e
    }

    /// The event id (`metadata.uid`).
    pub fn id(&self) -> &str {
        &self.metadata.uid
    }

    /// Checks what the lake relies on: an id, consistent class/category/type ids, a sane time.
    pub fn validate(&self) -> Result<(), String> {
        let id = &self.metadata.uid;
        if id.is_empty() || id.len() > 200 || id.chars().any(char::is_control) {
            return Err(format!(
                "event id `{id}` must be 1 to 200 characters with no control characters"
            ));
        }
        if self.category_uid != self.class_uid / 1000 {
            return Err(format!(
                "event `{id}`: category_uid {} does not match class_uid {}",
                self.category_uid, self.class_uid
            ));
        }
        let want = i64::from(self.class_uid) * 100 + i64::from(self.activity_id);
        if self.type_uid != want {
            return Err(format!(
                "event `{id}`: type_uid {} must be class_uid*100+activity_id = {want}",
                self.type_uid
            ));
        }
        if self.time < 0 {
            return Err(format!("event `{id}`: time {} is before 1970", self.time));
        }
        Ok(())
    }

    /// The canonical bytes of this event as it stands (sorted keys, no whitespace). The lake calls
    /// this once, after setting `metadata.sequence` and `metadata.logged_time`.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(512);
        // Serializing plain structs of strings and integers into a Vec cannot fail.
        if serde_json::to_writer(&mut out, self).is_err() {
            out.clear();
        }
        out
    }

    /// Parses canonical bytes (from the WAL, a Parquet file or a pack).
    pub fn from_canonical(bytes: &[u8]) -> Result<Self, String> {
        serde_json::from_slice(bytes).map_err(|e| format!("not a Warden audit event: {e}"))
    }
}

/// RFC 8785-style canonical JSON of any value: object keys sorted by UTF-16 code units, no whitespace.
/// Used to check that `AuditEvent::canonical_bytes` is canonical, and for pack manifests.
pub fn canonical_json(value: &serde_json::Value) -> Vec<u8> {
    let mut out = Vec::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &serde_json::Value, out: &mut Vec<u8>) {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
            out.push(b'{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_scalar(&Value::String(k.clone()), out);
                out.push(b':');
                write_canonical(v, out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(v, out);
            }
            out.push(b']');
        }
        other => write_scalar(other, out),
    }
}

fn write_scalar(value: &serde_json::Value, out: &mut Vec<u8>) {
    if serde_json::to_writer(&mut *out, value).is_err() {
        out.extend_from_slice(b"null");
    }
}

/// Milliseconds since the Unix epoch now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn now_nanos() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn subject() -> Subject {
        Subject {
            agent_id: "spiffe://acme/agent/coder".to_owned(),
            team: Some("payments".to_owned()),
            purpose: Some("fix bug 12".to_owned()),
            session_id: Some("sess-1".to_owned()),
            subagent_id: Some("spiffe://acme/agent/coder/sub".to_owned()),
            delegation_chain: vec!["spiffe://acme/agent/root".to_owned()],
        }
    }

    pub(crate) fn call(decision: Decision) -> ToolCall {
        ToolCall {
            server: "github".to_owned(),
            tool: "create_issue".to_owned(),
            decision,
            policy_ids: vec!["grant/repo/coder".to_owned(), "no-secrets".to_owned()],
            reason: (decision == Decision::Deny).then(|| "guardrail \"no-secrets\"\n".to_owned()),
        }
    }

    /// One event of every kind, every optional field set somewhere.
    pub(crate) fn every_kind() -> Vec<AuditEvent> {
        let s = subject();
        let cred = Credential {
            credential_id: "jti-1".to_owned(),
            scopes: vec!["github:repo:write".to_owned()],
            expires_ms: Some(1_800_000_000_000),
            issuer: Some("https://warden.example".to_owned()),
        };
        let usage = ModelUsage {
            provider: "anthropic".to_owned(),
            model: "claude-opus".to_owned(),
            input_tokens: Some(1200),
            output_tokens: Some(300),
            cache_read_tokens: Some(1000),
            cache_creation_tokens: Some(5),
            reasoning_tokens: Some(7),
            cost_micro_usd: Some(12_345),
        };
        let t = 1_764_000_000_000;
        vec![
            AuditEvent::tool_decision("e1", t, &s, &call(Decision::Allow)).with_call_id("call-1"),
            AuditEvent::tool_decision("e2", t, &s, &call(Decision::Deny)),
            AuditEvent::tool_outcome(
                "e3",
                t,
                &s,
                &call(Decision::Allow),
                false,
                Some("upstream timeout".to_owned()),
            )
            .with_call_id("call-1")
            .with_duration_ms(30_000),
            AuditEvent::model_usage("e4", t, &s, &usage),
            AuditEvent::credential_issued("e5", t, &s, &cred),
            AuditEvent::credential_change(
                "e6",
                t,
                &s,
                AccessChange::Delegated,
                &cred,
                Some("spiffe://acme/agent/root"),
            ),
            AuditEvent::credential_change("e7", t, &s, AccessChange::Revoked, &cred, Some("alice")),
            AuditEvent::credential_change("e8", t, &s, AccessChange::Suspended, &cred, None),
            AuditEvent::entity_change(
                "e9",
                t,
                &EntityChange {
                    kind: EntityKind::Agent,
                    action: EntityAction::Suspended,
                    uid: "spiffe://acme/agent/coder".to_owned(),
                    name: "coder".to_owned(),
                    team: Some("payments".to_owned()),
                    by: Some("alice".to_owned()),
                },
            ),
            AuditEvent::entity_change(
                "e10",
                t,
                &EntityChange {
                    kind: EntityKind::Guardrail,
                    action: EntityAction::Created,
                    uid: "no-secrets".to_owned(),
                    name: "no-secrets".to_owned(),
                    team: None,
                    by: None,
                },
            ),
            AuditEvent::finding(
                "e11",
                t,
                &s,
                &Finding {
                    uid: "f-1".to_owned(),
                    title: "shadow agent".to_owned(),
                    desc: Some("calls from an unregistered agent ü 🦀".to_owned()),
                    severity_id: 4,
                },
            ),
        ]
    }

    #[test]
    fn classes_and_type_uids_follow_ocsf() {
        let got: Vec<(i32, i32, i32, i64)> = every_kind()
            .iter()
            .map(|e| (e.class_uid, e.category_uid, e.activity_id, e.type_uid))
            .collect();
        assert_eq!(
            got,
            vec![
                (6003, 6, 99, 600399),
                (6003, 6, 99, 600399),
                (6003, 6, 99, 600399),
                (6003, 6, 99, 600399),
                (3003, 3, 1, 300301),
                (3005, 3, 1, 300501),
                (3005, 3, 2, 300502),
                (3005, 3, 2, 300502),
                (3004, 3, 12, 300412),
                (3004, 3, 1, 300401),
                (2004, 2, 1, 200401),
            ]
        );
        for e in every_kind() {
            e.validate().unwrap();
            assert_eq!(e.metadata.version, "1.8.0");
            assert_eq!(e.metadata.product.name, "Warden");
        }
        let deny = &every_kind()[1];
        assert_eq!(
            (deny.action_id, deny.disposition_id, deny.status_id),
            (Some(2), Some(2), 2)
        );
    }

    #[test]
    fn canonical_bytes_are_sorted_compact_json() {
        for mut e in every_kind() {
            e.metadata.sequence = Some(42);
            e.metadata.logged_time = Some(1_764_000_000_001);
            let direct = e.canonical_bytes();
            let via_value = canonical_json(&serde_json::to_value(&e).unwrap());
            assert_eq!(
                String::from_utf8(direct.clone()).unwrap(),
                String::from_utf8(via_value).unwrap()
            );
            assert!(!direct.contains(&b'\n'), "canonical bytes never contain a newline");
            assert_eq!(AuditEvent::from_canonical(&direct).unwrap(), e);
        }
    }

    #[test]
    fn canonical_escapes_follow_rfc8785() {
        let v = serde_json::json!({"b": "\u{1}\n\"\\/\u{7f}é", "a": [1, -2], "A": true});
        assert_eq!(
            String::from_utf8(canonical_json(&v)).unwrap(),
            "{\"A\":true,\"a\":[1,-2],\"b\":\"\\u0001\\n\\\"\\\\/\u{7f}é\"}"
        );
    }

    #[test]
    fn unknown_fields_and_bad_ids_are_refused() {
        let e = &every_kind()[0];
        let mut v = serde_json::to_value(e).unwrap();
        v["surprise"] = serde_json::json!(1);
        assert!(AuditEvent::from_canonical(v.to_string().as_bytes()).is_err());
        let mut bad = e.clone();
        bad.type_uid += 1;
        assert!(bad.validate().unwrap_err().contains("type_uid"));
        bad = e.clone();
        bad.metadata.uid = String::new();
        assert!(bad.validate().is_err());
    }

    #[test]
    fn new_ids_are_uuid_v7_and_distinct() {
        let ids: Vec<String> = (0..100_000).map(|_| AuditEvent::new_id()).collect();
        let distinct: std::collections::HashSet<&String> = ids.iter().collect();
        assert_eq!(distinct.len(), ids.len());
        for id in &ids[..100] {
            assert!(uuid_shape(id), "{id} is not a lowercase 8-4-4-4-12 UUID");
            assert_eq!(&id[14..15], "7", "{id}: version 7");
            assert!(matches!(&id[19..20], "8" | "9" | "a" | "b"), "{id}: RFC 9562 variant");
        }
        // Time-ordered: the first 48 bits are the clock's milliseconds.
        let ms =
            |id: &str| u64::from_str_radix(&id[..8], 16).unwrap() << 16 | u64::from_str_radix(&id[9..13], 16).unwrap();
        assert!(ms(&ids[0]) <= ms(&ids[ids.len() - 1]));
        assert!(ms(&ids[0]).abs_diff(now_ms() as u64) < 60_000);
    }

    fn uuid_shape(id: &str) -> bool {
        id.len() == 36
            && id.char_indices().all(|(i, c)| {
                if matches!(i, 8 | 13 | 18 | 23) {
                    c == '-'
                } else {
                    c.is_ascii_digit() || ('a'..='f').contains(&c)
                }
            })
    }
}
