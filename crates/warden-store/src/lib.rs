//! Warden's registry store: teams, people's access tokens, agents, MCP servers, scopes, grants, the
//! golden-path templates (versioned), the revocation feed, and the append-only table of registry
//! change events.
//!
//! Callers see one async API, [`Store`]; the backend behind it is chosen at open time. The embedded
//! default is SQLite (WAL, `synchronous=FULL`: a write that returned is on disk). The API speaks in
//! `warden_core` records, never in SQL rows, so a PostgreSQL backend slots in behind the same methods.
//!
//! **Architecture Invariant:** every mutating method writes its change event (who, what, before,
//! after, when) in the same transaction as the change. Nothing changes without its record, and no
//! record exists for a change that did not happen.

mod error;
mod sqlite;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use serde::Serialize;
use warden_core::{
    AccessTokenInfo, Agent, AgentId, AgentStatus, Grant, McpServer, Name, Origin, Role, Scope, Team, ToolPattern,
    Transport,
};

pub use error::StoreError;
pub use sqlite::now_rfc3339;

/// Who made a change, as recorded in its event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Actor {
    /// `person`, `agent` or `system`.
    pub kind: ActorKind,
    /// The access token name, agent id, or `warden` for the system itself.
    pub name: String,
}

/// The kind of [`Actor`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ActorKind {
    /// A person, by access token name.
    Person,
    /// An agent, by id.
    Agent,
    /// Warden itself (bootstrap, sweeps).
    System,
}

impl Actor {
    /// A person acting through the access token `name`.
    pub fn person(name: &Name) -> Actor {
        Actor {
            kind: ActorKind::Person,
            name: name.to_string(),
        }
    }

    /// An agent acting with its own credentials.
    pub fn agent(id: &AgentId) -> Actor {
        Actor {
            kind: ActorKind::Agent,
            name: id.to_string(),
        }
    }

    /// Warden itself.
    pub fn system() -> Actor {
        Actor {
            kind: ActorKind::System,
            name: "warden".to_owned(),
        }
    }
}

/// One recorded registry change.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChangeEvent {
    /// Position in the change log, from 1, without gaps.
    pub seq: i64,
    /// When the change committed (RFC 3339, UTC).
    pub time: String,
    /// `person`, `agent` or `system`.
    pub actor_kind: String,
    /// Who made it.
    pub actor: String,
    /// What was done, e.g. `agent.register`, `grant.create`.
    pub action: String,
    /// The kind of record changed: `team`, `agent`, …
    pub target_kind: String,
    /// The changed record's key.
    pub target: String,
    /// The record before the change (`null` when created).
    pub before: serde_json::Value,
    /// The record after the change (`null` when deleted).
    pub after: serde_json::Value,
}

/// A new agent to register.
#[derive(Debug, Clone)]
pub struct NewAgent {
    /// Its id; the team and name are read from it.
    pub id: AgentId,
    /// The person who answers for it.
    pub owner: String,
    /// Its declared purpose.
    pub purpose: String,
    /// Its tags.
    pub tags: Vec<Name>,
    /// How it came to exist.
    pub origin: Origin,
    /// The hash of its client secret, if it has one.
    pub secret_hash: Option<[u8; 32]>,
    /// The golden-path template (and version) that made its project, for `warden init`.
    pub template: Option<TemplateRef>,
}

/// A golden-path template version: which template made an agent's project.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TemplateRef {
    /// The template's name.
    pub name: Name,
    /// Its version, from 1.
    pub version: i64,
}

/// One version of a golden-path template: the files `warden init` renders into a project.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TemplateRecord {
    /// The template's name.
    pub name: Name,
    /// Its version, from 1; every edit makes a new one and old ones stay readable.
    pub version: i64,
    /// Relative path to file text, with `{{placeholders}}`.
    pub files: BTreeMap<String, String>,
    /// Who stored this version (`warden` for the built-in default).
    pub created_by: String,
    /// When.
    pub created_at: String,
}

/// A new MCP server to register.
#[derive(Debug, Clone)]
pub struct NewMcpServer {
    /// Its name.
    pub name: Name,
    /// How to reach it.
    pub transport: Transport,
    /// The owning team, if any.
    pub owner_team: Option<Name>,
    /// Whether its tools are sensitive.
    pub sensitive: bool,
    /// Upstream credentials (e.g. headers or environment) injected by the gateway; never returned.
    pub credentials: Option<serde_json::Value>,
}

/// A new scope to define.
#[derive(Debug, Clone)]
pub struct NewScope {
    /// Its name.
    pub name: Name,
    /// The tools it covers.
    pub tools: Vec<ToolPattern>,
    /// Whether it is sensitive.
    pub sensitive: bool,
    /// What it is for.
    pub description: String,
}

/// Which agents to list.
#[derive(Debug, Clone, Default)]
pub struct AgentFilter {
    /// Only this team's.
    pub team: Option<Name>,
    /// Only those carrying this tag.
    pub tag: Option<Name>,
}

/// A stored guardrail: an org-wide Cedar policy owned by the platform team.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GuardrailRecord {
    /// Its `@id`.
    pub id: String,
    /// Its `@message`, shown in every decision it makes.
    pub message: String,
    /// The Cedar text as added.
    pub text: String,
    /// The access token name of the person who added it.
    pub created_by: String,
    /// When it was added.
    pub created_at: String,
}

/// An agent with the stored hash of its client secret.
#[derive(Debug, Clone)]
pub struct AgentCredentials {
    /// The agent.
    pub agent: Agent,
    /// The SHA-256 of its client secret; `None` for a subagent, which authenticates only by token
    /// exchange.
    pub secret_hash: Option<Vec<u8>>,
}

/// A stored access token matched by its hash.
#[derive(Debug, Clone)]
pub struct StoredAccessToken {
    /// The token's public record.
    pub info: AccessTokenInfo,
    /// The SHA-256 stored for it (compare in constant time).
    pub hash: Vec<u8>,
}

/// One entry of the revocation feed: an agent's state changed at `at` (unix seconds); tokens issued
/// at or before `not_before` stay refused even after a resume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RevocationRecord {
    /// Position in the feed, from 1, increasing.
    pub seq: i64,
    /// The agent's id.
    pub agent: String,
    /// `active`, `suspended` or `revoked`.
    pub state: String,
    /// Tokens issued at or before this unix time are refused.
    pub not_before: Option<i64>,
    /// When the change happened (unix seconds).
    pub at: i64,
}

/// The registry store. Cheap to clone; every clone talks to the same database.
#[derive(Clone)]
pub struct Store {
    backend: Arc<sqlite::SqliteStore>,
    events: std::sync::mpsc::Sender<PendingEvent>,
}

/// A free-form event waiting for the group-commit writer, with the channel that acknowledges it.
pub(crate) struct PendingEvent {
    pub(crate) actor: Actor,
    pub(crate) action: String,
    pub(crate) target_kind: String,
    pub(crate) target: String,
    pub(crate) details: serde_json::Value,
    /// Stored at most once per id: a resent event is acknowledged as not new.
    pub(crate) event_id: Option<String>,
    ack: tokio::sync::oneshot::Sender<Result<bool, StoreError>>,
}

/// The most events one group commit writes.
const MAX_GROUP: usize = 1024;

impl Store {
    /// Opens (creating if needed) the SQLite database at `path` and brings its schema up to date.
    pub fn open_sqlite(path: &Path) -> Result<Store, StoreError> {
        let backend = Arc::new(sqlite::SqliteStore::open(path)?);
        let (events, pending) = std::sync::mpsc::channel();
        let writer = Arc::clone(&backend);
        std::thread::Builder::new()
            .name("warden-events".to_owned())
            .spawn(move || group_commit(&writer, &pending))
            .map_err(|e| StoreError::Internal(format!("cannot start the event writer: {e}")))?;
        Ok(Store { backend, events })
    }

    async fn run<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&sqlite::SqliteStore) -> Result<T, StoreError> + Send + 'static,
    {
        let backend = Arc::clone(&self.backend);
        tokio::task::spawn_blocking(move || f(&backend))
            .await
            .map_err(|e| StoreError::Internal(format!("store task failed: {e}")))?
    }

    /// A server-wide setting (e.g. `trust_domain`), if set.
    pub async fn setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        let key = key.to_owned();
        self.run(move |db| db.setting(&key)).await
    }

    /// Sets a server-wide setting, recording the change.
    pub async fn set_setting(&self, actor: &Actor, key: &str, value: &str) -> Result<(), StoreError> {
        let (actor, key, value) = (actor.clone(), key.to_owned(), value.to_owned());
        self.run(move |db| db.set_setting(&actor, &key, &value)).await
    }

    /// Creates a team.
    pub async fn create_team(&self, actor: &Actor, name: &Name) -> Result<Team, StoreError> {
        let (actor, name) = (actor.clone(), name.clone());
        self.run(move |db| db.create_team(&actor, &name)).await
    }

    /// All teams, by name.
    pub async fn list_teams(&self) -> Result<Vec<Team>, StoreError> {
        self.run(|db| db.list_teams()).await
    }

    /// How many access tokens exist, revoked ones included.
    pub async fn count_access_tokens(&self) -> Result<i64, StoreError> {
        self.run(|db| db.count_access_tokens()).await
    }

    /// Stores a new access token (its hash only).
    pub async fn create_access_token(
        &self,
        actor: &Actor,
        name: &Name,
        role: Role,
        team: Option<&Name>,
        hash: [u8; 32],
    ) -> Result<AccessTokenInfo, StoreError> {
        let (actor, name, team) = (actor.clone(), name.clone(), team.cloned());
        self.run(move |db| db.create_access_token(&actor, &name, role, team.as_ref(), &hash))
            .await
    }

    /// The live (not revoked) access token whose hash is `hash`.
    pub async fn find_access_token(&self, hash: [u8; 32]) -> Result<Option<StoredAccessToken>, StoreError> {
        self.run(move |db| db.find_access_token(&hash)).await
    }

    /// All access tokens, without secrets.
    pub async fn list_access_tokens(&self) -> Result<Vec<AccessTokenInfo>, StoreError> {
        self.run(|db| db.list_access_tokens()).await
    }

    /// Revokes the access token `name`.
    pub async fn revoke_access_token(&self, actor: &Actor, name: &Name) -> Result<AccessTokenInfo, StoreError> {
        let (actor, name) = (actor.clone(), name.clone());
        self.run(move |db| db.revoke_access_token(&actor, &name)).await
    }

    /// Registers an agent.
    pub async fn register_agent(&self, actor: &Actor, agent: NewAgent) -> Result<Agent, StoreError> {
        let actor = actor.clone();
        self.run(move |db| db.register_agent(&actor, &agent)).await
    }

    /// One agent.
    pub async fn get_agent(&self, id: &AgentId) -> Result<Agent, StoreError> {
        let id = id.clone();
        self.run(move |db| db.get_agent(&id)).await
    }

    /// Agents matching `filter`, by id.
    pub async fn list_agents(&self, filter: AgentFilter) -> Result<Vec<Agent>, StoreError> {
        self.run(move |db| db.list_agents(&filter)).await
    }

    /// Sets an agent's status; `action` names the change in its event (`agent.suspend`, …).
    pub async fn set_agent_status(
        &self,
        actor: &Actor,
        id: &AgentId,
        status: AgentStatus,
    ) -> Result<Agent, StoreError> {
        let (actor, id) = (actor.clone(), id.clone());
        self.run(move |db| db.set_agent_status(&actor, &id, status)).await
    }

    /// Adds (`present`) or removes a tag on an agent; a no-op when nothing changes.
    pub async fn set_tag(&self, actor: &Actor, id: &AgentId, tag: &Name, present: bool) -> Result<Agent, StoreError> {
        let (actor, id, tag) = (actor.clone(), id.clone(), tag.clone());
        self.run(move |db| db.set_tag(&actor, &id, &tag, present)).await
    }

    /// Stores a guardrail that the caller has already validated.
    pub async fn add_guardrail(&self, actor: &Actor, guardrail: GuardrailRecord) -> Result<(), StoreError> {
        let actor = actor.clone();
        self.run(move |db| db.add_guardrail(&actor, &guardrail)).await
    }

    /// Every guardrail, oldest first.
    pub async fn list_guardrails(&self) -> Result<Vec<GuardrailRecord>, StoreError> {
        self.run(|db| db.list_guardrails()).await
    }

    /// Removes the guardrail `id`.
    pub async fn remove_guardrail(&self, actor: &Actor, id: &str) -> Result<GuardrailRecord, StoreError> {
        let (actor, id) = (actor.clone(), id.to_owned());
        self.run(move |db| db.remove_guardrail(&actor, &id)).await
    }

    /// Registers an MCP server.
    pub async fn add_mcp_server(&self, actor: &Actor, server: NewMcpServer) -> Result<McpServer, StoreError> {
        let actor = actor.clone();
        self.run(move |db| db.add_mcp_server(&actor, &server)).await
    }

    /// All MCP servers, by name.
    pub async fn list_mcp_servers(&self) -> Result<Vec<McpServer>, StoreError> {
        self.run(|db| db.list_mcp_servers()).await
    }

    /// All MCP servers with their upstream credentials, for the gateway only: never serialise the
    /// credentials into a response or an event.
    pub async fn mcp_servers_with_credentials(
        &self,
    ) -> Result<Vec<(McpServer, Option<serde_json::Value>)>, StoreError> {
        self.run(|db| db.mcp_servers_with_credentials()).await
    }

    /// Defines a scope.
    pub async fn define_scope(&self, actor: &Actor, scope: NewScope) -> Result<Scope, StoreError> {
        let actor = actor.clone();
        self.run(move |db| db.define_scope(&actor, &scope)).await
    }

    /// All scopes, by name.
    pub async fn list_scopes(&self) -> Result<Vec<Scope>, StoreError> {
        self.run(|db| db.list_scopes()).await
    }

    /// Gives `agent` the scope `scope`.
    pub async fn grant(&self, actor: &Actor, scope: &Name, agent: &AgentId) -> Result<Grant, StoreError> {
        let (actor, scope, agent) = (actor.clone(), scope.clone(), agent.clone());
        self.run(move |db| db.grant(&actor, &scope, &agent)).await
    }

    /// Takes the scope `scope` from `agent`.
    pub async fn ungrant(&self, actor: &Actor, scope: &Name, agent: &AgentId) -> Result<Grant, StoreError> {
        let (actor, scope, agent) = (actor.clone(), scope.clone(), agent.clone());
        self.run(move |db| db.ungrant(&actor, &scope, &agent)).await
    }

    /// Grants, optionally of one agent only.
    pub async fn list_grants(&self, agent: Option<&AgentId>) -> Result<Vec<Grant>, StoreError> {
        let agent = agent.cloned();
        self.run(move |db| db.list_grants(agent.as_ref())).await
    }

    /// An agent with the stored hash of its client secret (`None` for a subagent, which has none).
    pub async fn agent_credentials(&self, id: &AgentId) -> Result<Option<AgentCredentials>, StoreError> {
        let id = id.clone();
        self.run(move |db| db.agent_credentials(&id)).await
    }

    /// Registers the subagent `new.id` under its parent (team, owner and tags inherited, origin
    /// `delegated`) unless it exists already, and grants it `scopes` it does not hold yet; one
    /// transaction.
    pub async fn register_subagent(
        &self,
        actor: &Actor,
        new: NewAgent,
        scopes: Vec<Name>,
    ) -> Result<Agent, StoreError> {
        let actor = actor.clone();
        self.run(move |db| db.register_subagent(&actor, &new, &scopes)).await
    }

    /// Records an event that is not a registry change (a credential issued or refused, a key
    /// rotated, a gateway decision): `details` is stored as the event's `after`. Returns once the event
    /// is durable; concurrent callers share one transaction and one fsync (group commit).
    pub async fn record_event(
        &self,
        actor: &Actor,
        action: &str,
        target_kind: &str,
        target: &str,
        details: serde_json::Value,
    ) -> Result<(), StoreError> {
        self.group(actor, action, target_kind, target, details, None)
            .await
            .map(|_| ())
    }

    /// Records an event shipped from elsewhere (a standalone gateway, a Claude Code hook, a spool),
    /// once per `event_id`: a resent event is acknowledged and not stored again. Returns whether it
    /// was new, once it is durable; like [`Store::record_event`] it shares group commits.
    pub async fn record_event_once(
        &self,
        actor: &Actor,
        event_id: &str,
        action: &str,
        target: &str,
        details: serde_json::Value,
    ) -> Result<bool, StoreError> {
        self.group(actor, action, "agent", target, details, Some(event_id.to_owned()))
            .await
    }

    async fn group(
        &self,
        actor: &Actor,
        action: &str,
        target_kind: &str,
        target: &str,
        details: serde_json::Value,
        event_id: Option<String>,
    ) -> Result<bool, StoreError> {
        let (ack, acked) = tokio::sync::oneshot::channel();
        let event = PendingEvent {
            actor: actor.clone(),
            action: action.to_owned(),
            target_kind: target_kind.to_owned(),
            target: target.to_owned(),
            details,
            event_id,
            ack,
        };
        self.events
            .send(event)
            .map_err(|_| StoreError::Internal("the event writer has stopped".to_owned()))?;
        acked
            .await
            .map_err(|_| StoreError::Internal("the event writer stopped before acknowledging".to_owned()))?
    }

    /// Stores a new version of the template `name` (version 1 if it is new).
    pub async fn put_template(
        &self,
        actor: &Actor,
        name: &Name,
        files: BTreeMap<String, String>,
    ) -> Result<TemplateRecord, StoreError> {
        let (actor, name) = (actor.clone(), name.clone());
        self.run(move |db| db.put_template(&actor, &name, &files, false))
            .await
            .and_then(|t| t.ok_or_else(|| StoreError::Internal("the template was not stored".to_owned())))
    }

    /// Stores `files` as version 1 of `name` unless the template exists; returns it if stored.
    pub async fn seed_template(
        &self,
        actor: &Actor,
        name: &Name,
        files: BTreeMap<String, String>,
    ) -> Result<Option<TemplateRecord>, StoreError> {
        let (actor, name) = (actor.clone(), name.clone());
        self.run(move |db| db.put_template(&actor, &name, &files, true)).await
    }

    /// One version of a template, the newest when `version` is `None`.
    pub async fn template(&self, name: &Name, version: Option<i64>) -> Result<TemplateRecord, StoreError> {
        let name = name.clone();
        self.run(move |db| db.template(&name, version)).await
    }

    /// The newest version of every template, by name.
    pub async fn list_templates(&self) -> Result<Vec<TemplateRecord>, StoreError> {
        self.run(|db| db.list_templates()).await
    }

    /// The template version that made an agent's project, if `warden init` made it.
    pub async fn agent_template(&self, id: &AgentId) -> Result<Option<TemplateRef>, StoreError> {
        let id = id.clone();
        self.run(move |db| db.agent_template(&id)).await
    }

    /// Revocation feed entries after `since`, oldest first, at most `limit`.
    pub async fn list_revocations(&self, since: i64, limit: i64) -> Result<Vec<RevocationRecord>, StoreError> {
        self.run(move |db| db.list_revocations(since, limit)).await
    }

    /// Change events after `since`, oldest first, at most `limit`.
    pub async fn list_events(&self, since: i64, limit: i64) -> Result<Vec<ChangeEvent>, StoreError> {
        self.run(move |db| db.list_events(since, limit)).await
    }
}

/// The event writer: waits for one event, takes every other one already waiting (up to
/// [`MAX_GROUP`]), writes them in one transaction and acknowledges each once it is durable. Concurrent
/// writers thus share one fsync instead of paying one each. Ends when every `Store` is dropped.
fn group_commit(backend: &sqlite::SqliteStore, pending: &std::sync::mpsc::Receiver<PendingEvent>) {
    while let Ok(first) = pending.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_GROUP {
            match pending.try_recv() {
                Ok(event) => batch.push(event),
                Err(_) => break,
            }
        }
        let result = backend.record_events(&batch);
        for (idx, event) in batch.into_iter().enumerate() {
            // The caller may have gone away; its event is durable either way.
            let answer = match &result {
                Ok(new) => Ok(new.get(idx).copied().unwrap_or(false)),
                Err(e) => Err(e.clone()),
            };
            let _ = event.ack.send(answer);
        }
    }
}
