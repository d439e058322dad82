//! The SQLite backend: one connection behind a mutex, schema migrations by `user_version`, and the
//! queries behind every [`crate::Store`] method.
//!
//! Every mutating method runs in one `IMMEDIATE` transaction that checks its preconditions (so a
//! conflict gets a precise message rather than a constraint error), changes the rows and appends the
//! change event; on any error the transaction rolls back and nothing is written.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use serde::Serialize;
use time::OffsetDateTime;
use time::macros::format_description;
use warden_core::{
    AccessTokenInfo, Agent, AgentId, AgentStatus, Grant, McpServer, Name, Origin, Role, Scope, Team, ToolPattern,
    Transport,
};

use crate::{
    Actor, AgentCredentials, AgentFilter, ChangeEvent, GuardrailRecord, NewAgent, NewMcpServer, NewScope,
    RevocationRecord, StoreError, StoredAccessToken, TemplateRecord, TemplateRef,
};

/// Schema migrations, applied in order; `PRAGMA user_version` records how many have run.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;
CREATE TABLE teams (
    name TEXT PRIMARY KEY,
    created_at TEXT NOT NULL
) STRICT;
CREATE TABLE access_tokens (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    team TEXT REFERENCES teams(name),
    hash BLOB NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    revoked_at TEXT
) STRICT;
CREATE TABLE agents (
    id TEXT PRIMARY KEY,
    team TEXT NOT NULL REFERENCES teams(name),
    name TEXT NOT NULL,
    owner TEXT NOT NULL,
    purpose TEXT NOT NULL,
    tags TEXT NOT NULL,
    status TEXT NOT NULL,
    origin TEXT NOT NULL,
    parent TEXT REFERENCES agents(id),
    secret_hash BLOB,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
) STRICT;
CREATE INDEX agents_team ON agents(team);
CREATE INDEX agents_parent ON agents(parent);
CREATE TABLE mcp_servers (
    name TEXT PRIMARY KEY,
    transport TEXT NOT NULL,
    owner_team TEXT REFERENCES teams(name),
    sensitive INTEGER NOT NULL,
    credentials TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
) STRICT;
CREATE TABLE scopes (
    name TEXT PRIMARY KEY,
    tools TEXT NOT NULL,
    sensitive INTEGER NOT NULL,
    description TEXT NOT NULL,
    created_at TEXT NOT NULL
) STRICT;
CREATE TABLE grants (
    scope TEXT NOT NULL REFERENCES scopes(name),
    agent TEXT NOT NULL REFERENCES agents(id),
    granted_by TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (scope, agent)
) STRICT;
CREATE INDEX grants_agent ON grants(agent);
CREATE TABLE revocations (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    agent TEXT NOT NULL,
    state TEXT NOT NULL,
    not_before INTEGER,
    at INTEGER NOT NULL
) STRICT;
CREATE TABLE change_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    time TEXT NOT NULL,
    actor_kind TEXT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target_kind TEXT NOT NULL,
    target TEXT NOT NULL,
    before TEXT,
    after TEXT
) STRICT;
"#,
    r#"
CREATE TABLE guardrails (
    id TEXT PRIMARY KEY,
    message TEXT NOT NULL,
    text TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at TEXT NOT NULL
) STRICT;
"#,
    r#"
ALTER TABLE change_events ADD COLUMN event_id TEXT;
CREATE UNIQUE INDEX change_events_event_id ON change_events(event_id) WHERE event_id IS NOT NULL;
"#,
    r#"
CREATE TABLE templates (
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    files TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (name, version)
) STRICT;
ALTER TABLE agents ADD COLUMN template TEXT;
ALTER TABLE agents ADD COLUMN template_version INTEGER;
"#,
];

pub(crate) struct SqliteStore {
    conn: Mutex<Connection>,
}

/// Now, as the store writes times: RFC 3339 UTC with milliseconds.
pub fn now_rfc3339() -> String {
    let format = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    OffsetDateTime::now_utc()
        .format(format)
        .unwrap_or_else(|_| "1970-01-01T00:00:00.000Z".to_owned())
}

fn now_unix() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

impl SqliteStore {
    pub(crate) fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let conn = Connection::open(path)
            .map_err(|e| StoreError::Internal(format!("cannot open database `{}`: {e}", path.display())))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let store = SqliteStore { conn: Mutex::new(conn) };
        store.migrate()?;
        Ok(store)
    }

    fn lock(&self) -> Result<MutexGuard<'_, Connection>, StoreError> {
        self.conn
            .lock()
            .map_err(|_| StoreError::Internal("database connection lock poisoned".to_owned()))
    }

    fn migrate(&self) -> Result<(), StoreError> {
        let mut conn = self.lock()?;
        let version: i64 = conn.query_row("PRAGMA user_version", [], |row| row.get(0))?;
        let known = MIGRATIONS.len() as i64;
        if version > known {
            return Err(StoreError::Internal(format!(
                "the database schema is version {version} but this warden knows only up to {known}; upgrade warden"
            )));
        }
        for (idx, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", idx as i64 + 1)?;
            tx.commit()?;
        }
        Ok(())
    }

    /// Runs `f` in an immediate transaction and commits if it succeeds.
    fn write<T>(&self, f: impl FnOnce(&Transaction<'_>) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let mut conn = self.lock()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let res = f(&tx)?;
        tx.commit()?;
        Ok(res)
    }

    // Settings.

    pub(crate) fn setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        let conn = self.lock()?;
        Ok(conn
            .query_row("SELECT value FROM settings WHERE key = ?1", [key], |row| row.get(0))
            .optional()?)
    }

    pub(crate) fn set_setting(&self, actor: &Actor, key: &str, value: &str) -> Result<(), StoreError> {
        self.write(|tx| {
            let before: Option<String> = tx
                .query_row("SELECT value FROM settings WHERE key = ?1", [key], |row| row.get(0))
                .optional()?;
            if before.as_deref() == Some(value) {
                return Ok(());
            }
            tx.execute(
                "INSERT INTO settings (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = ?2",
                params![key, value],
            )?;
            record(tx, actor, "setting.set", "setting", key, before.as_ref(), Some(&value))?;
            Ok(())
        })
    }

    // Teams.

    pub(crate) fn create_team(&self, actor: &Actor, name: &Name) -> Result<Team, StoreError> {
        self.write(|tx| {
            if team_exists(tx, name)? {
                return Err(StoreError::Conflict(format!("team `{name}` already exists")));
            }
            let team = Team {
                name: name.clone(),
                created_at: now_rfc3339(),
            };
            tx.execute(
                "INSERT INTO teams (name, created_at) VALUES (?1, ?2)",
                params![name.as_str(), team.created_at],
            )?;
            record(
                tx,
                actor,
                "team.create",
                "team",
                name.as_str(),
                None::<&Team>,
                Some(&team),
            )?;
            Ok(team)
        })
    }

    pub(crate) fn list_teams(&self) -> Result<Vec<Team>, StoreError> {
        let conn = self.lock()?;
        let mut stmt = conn.prepare("SELECT name, created_at FROM teams ORDER BY name")?;
        let rows = stmt.query_map([], |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?)))?;
        rows.map(|row| {
            let (name, created_at) = row?;
            Ok(Team {
                name: stored_name(&name)?,
                created_at,
            })
        })
        .collect()
    }

    // Access tokens.

    pub(crate) fn count_access_tokens(&self) -> Result<i64, StoreError> {
        let conn = self.lock()?;
        Ok(conn.query_row("SELECT count(*) FROM access_tokens", [], |row| row.get(0))?)
    }

    pub(crate) fn create_access_token(
        &self,
        actor: &Actor,
        name: &Name,
        role: Role,
        team: Option<&Name>,
        hash: &[u8; 32],
    ) -> Result<AccessTokenInfo, StoreError> {
        self.write(|tx| {
            let exists: bool = tx.query_row(
                "SELECT EXISTS (SELECT 1 FROM access_tokens WHERE name = ?1)",
                [name.as_str()],
                |row| row.get(0),
            )?;
            if exists {
                return Err(StoreError::Conflict(format!("access token `{name}` already exists")));
            }
            if let Some(team) = team {
                require_team(tx, team)?;
            }
            let info = AccessTokenInfo {
                name: name.clone(),
                role,
                team: team.cloned(),
                created_at: now_rfc3339(),
                revoked_at: None,
            };
            tx.execute(
                "INSERT INTO access_tokens (name, role, team, hash, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    name.as_str(),
                    role.as_str(),
                    team.map(Name::as_str),
                    &hash[..],
                    info.created_at
                ],
            )?;
            record(
                tx,
                actor,
                "access-token.create",
                "access-token",
                name.as_str(),
                None::<&()>,
                Some(&info),
            )?;
            Ok(info)
        })
    }

    pub(crate) fn find_access_token(&self, hash: &[u8; 32]) -> Result<Option<StoredAccessToken>, StoreError> {
        let conn = self.lock()?;
        let row = conn
            .query_row(
                "SELECT name, role, team, created_at, revoked_at, hash FROM access_tokens
                 WHERE hash = ?1 AND revoked_at IS NULL",
                [&hash[..]],
                |row| Ok((access_token_row(row)?, row.get::<_, Vec<u8>>(5)?)),
            )
            .optional()?;
        row.map(|(raw, hash)| {
            Ok(StoredAccessToken {
                info: raw.into_info()?,
                hash,
            })
        })
        .transpose()
    }

    pub(crate) fn list_access_tokens(&self) -> Result<Vec<AccessTokenInfo>, StoreError> {
        let conn = self.lock()?;
        let mut stmt =
            conn.prepare("SELECT name, role, team, created_at, revoked_at FROM access_tokens ORDER BY name")?;
        let rows = stmt.query_map([], access_token_row)?;
        rows.map(|row| row?.into_info()).collect()
    }

    pub(crate) fn revoke_access_token(&self, actor: &Actor, name: &Name) -> Result<AccessTokenInfo, StoreError> {
        self.write(|tx| {
            let before = tx
                .query_row(
                    "SELECT name, role, team, created_at, revoked_at FROM access_tokens WHERE name = ?1",
                    [name.as_str()],
                    access_token_row,
                )
                .optional()?
                .ok_or_else(|| StoreError::NotFound {
                    kind: "access token",
                    key: name.to_string(),
                })?
                .into_info()?;
            if before.revoked_at.is_some() {
                return Ok(before);
            }
            let mut after = before.clone();
            after.revoked_at = Some(now_rfc3339());
            tx.execute(
                "UPDATE access_tokens SET revoked_at = ?2 WHERE name = ?1",
                params![name.as_str(), after.revoked_at],
            )?;
            record(
                tx,
                actor,
                "access-token.revoke",
                "access-token",
                name.as_str(),
                Some(&before),
                Some(&after),
            )?;
            Ok(after)
        })
    }

    // Agents.

    pub(crate) fn register_agent(&self, actor: &Actor, new: &NewAgent) -> Result<Agent, StoreError> {
        self.write(|tx| {
            let team = new.id.team();
            require_team(tx, &team)?;
            if agent_exists(tx, &new.id)? {
                return Err(StoreError::Conflict(format!("agent `{}` already exists", new.id)));
            }
            let parent = new.id.parent();
            if let Some(parent) = &parent
                && !agent_exists(tx, parent)?
            {
                return Err(StoreError::NotFound {
                    kind: "agent",
                    key: parent.to_string(),
                });
            }
            if let Some(template) = &new.template {
                require_template(tx, template)?;
            }
            let mut tags = new.tags.clone();
            tags.sort();
            tags.dedup();
            let now = now_rfc3339();
            let agent = Agent {
                id: new.id.clone(),
                team,
                name: new.id.name(),
                owner: new.owner.clone(),
                purpose: new.purpose.clone(),
                tags,
                status: AgentStatus::Active,
                origin: new.origin,
                parent,
                scopes: Vec::new(),
                created_at: now.clone(),
                updated_at: now,
            };
            register_agent_row(tx, actor, &agent, new.secret_hash.as_ref())?;
            if let Some(template) = &new.template {
                tx.execute(
                    "UPDATE agents SET template = ?1, template_version = ?2 WHERE id = ?3",
                    params![template.name.as_str(), template.version, agent.id.as_str()],
                )?;
            }
            Ok(agent)
        })
    }

    pub(crate) fn get_agent(&self, id: &AgentId) -> Result<Agent, StoreError> {
        let conn = self.lock()?;
        load_agent(&conn, id)?.ok_or_else(|| StoreError::NotFound {
            kind: "agent",
            key: id.to_string(),
        })
    }

    pub(crate) fn list_agents(&self, filter: &AgentFilter) -> Result<Vec<Agent>, StoreError> {
        let conn = self.lock()?;
        let mut stmt = conn.prepare(&format!(
            "SELECT {AGENT_COLUMNS} FROM agents
             WHERE (?1 IS NULL OR team = ?1)
               AND (?2 IS NULL OR EXISTS (SELECT 1 FROM json_each(agents.tags) WHERE value = ?2))
             ORDER BY id"
        ))?;
        let rows = stmt.query_map(
            params![
                filter.team.as_ref().map(Name::as_str),
                filter.tag.as_ref().map(Name::as_str)
            ],
            agent_row,
        )?;
        let mut agents = rows.map(|row| row?.into_agent()).collect::<Result<Vec<_>, _>>()?;
        let mut grants = conn.prepare("SELECT agent, scope FROM grants ORDER BY agent, scope")?;
        let mut by_agent = std::collections::HashMap::<String, Vec<Name>>::new();
        for row in grants.query_map([], |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?)))? {
            let (agent, scope) = row?;
            by_agent.entry(agent).or_default().push(stored_name(&scope)?);
        }
        for agent in &mut agents {
            agent.scopes = by_agent.remove(agent.id.as_str()).unwrap_or_default();
        }
        Ok(agents)
    }

    pub(crate) fn set_agent_status(
        &self,
        actor: &Actor,
        id: &AgentId,
        status: AgentStatus,
    ) -> Result<Agent, StoreError> {
        self.write(|tx| {
            let before = load_agent(tx, id)?.ok_or_else(|| StoreError::NotFound { kind: "agent", key: id.to_string() })?;
            if before.status == status {
                return Ok(before);
            }
            if before.status == AgentStatus::Revoked {
                return Err(StoreError::Conflict(format!(
                    "agent `{id}` is revoked; revocation is permanent, register a new agent instead"
                )));
            }
            let action = match status {
                AgentStatus::Active => "agent.resume",
                AgentStatus::Suspended => "agent.suspend",
                AgentStatus::Revoked => "agent.revoke",
            };
            let now = now_rfc3339();
            let now_unix = now_unix();
            // Revocation is permanent and cascades: every descendant is revoked with it. Suspension
            // is enforced on descendants through the ancestor check, so their own status stays.
            let mut targets = vec![before];
            if status == AgentStatus::Revoked {
                let mut stmt = tx.prepare(&format!(
                    "SELECT {AGENT_COLUMNS} FROM agents WHERE id LIKE ?1 ESCAPE '\\' AND status != 'revoked' ORDER BY id"
                ))?;
                let prefix = format!("{}/%", id.as_str().replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_"));
                let rows = stmt.query_map([prefix], agent_row)?;
                for row in rows {
                    targets.push(row?.into_agent()?);
                }
            }
            let mut result = None;
            for before in targets {
                let mut after = before.clone();
                after.status = status;
                after.updated_at = now.clone();
                tx.execute(
                    "UPDATE agents SET status = ?2, updated_at = ?3 WHERE id = ?1",
                    params![after.id.as_str(), status.as_str(), now],
                )?;
                // A resume keeps refusing every token issued up to the suspension; tokens could not
                // be issued while suspended, so new ones are accepted again.
                let not_before: i64 = if status == AgentStatus::Active {
                    tx.query_row(
                        "SELECT not_before FROM revocations WHERE agent = ?1 AND state = 'suspended'
                         ORDER BY seq DESC LIMIT 1",
                        [after.id.as_str()],
                        |row| row.get::<_, Option<i64>>(0),
                    )
                    .optional()?
                    .flatten()
                    .unwrap_or(now_unix)
                } else {
                    now_unix
                };
                tx.execute(
                    "INSERT INTO revocations (agent, state, not_before, at) VALUES (?1, ?2, ?3, ?4)",
                    params![after.id.as_str(), status.as_str(), not_before, now_unix],
                )?;
                record(tx, actor, action, "agent", after.id.as_str(), Some(&before), Some(&after))?;
                result.get_or_insert(after);
            }
            let mut agent = result.ok_or_else(|| StoreError::Internal("no agent updated".to_owned()))?;
            agent.scopes = load_scopes_of(tx, &agent.id)?;
            Ok(agent)
        })
    }

    // MCP servers.

    pub(crate) fn add_mcp_server(&self, actor: &Actor, new: &NewMcpServer) -> Result<McpServer, StoreError> {
        self.write(|tx| {
            let exists: bool = tx.query_row(
                "SELECT EXISTS (SELECT 1 FROM mcp_servers WHERE name = ?1)",
                [new.name.as_str()],
                |row| row.get(0),
            )?;
            if exists {
                return Err(StoreError::Conflict(format!(
                    "MCP server `{}` already exists",
                    new.name
                )));
            }
            if let Some(team) = &new.owner_team {
                require_team(tx, team)?;
            }
            let now = now_rfc3339();
            let server = McpServer {
                name: new.name.clone(),
                transport: new.transport.clone(),
                owner_team: new.owner_team.clone(),
                sensitive: new.sensitive,
                has_credentials: new.credentials.is_some(),
                created_at: now.clone(),
                updated_at: now,
            };
            tx.execute(
                "INSERT INTO mcp_servers (name, transport, owner_team, sensitive, credentials, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    server.name.as_str(),
                    serde_json::to_string(&server.transport)?,
                    server.owner_team.as_ref().map(Name::as_str),
                    server.sensitive,
                    new.credentials.as_ref().map(serde_json::Value::to_string),
                    server.created_at,
                    server.updated_at,
                ],
            )?;
            // The event carries the public record only: credentials never leave the store.
            record(
                tx,
                actor,
                "mcp-server.add",
                "mcp-server",
                server.name.as_str(),
                None::<&()>,
                Some(&server),
            )?;
            Ok(server)
        })
    }

    pub(crate) fn list_mcp_servers(&self) -> Result<Vec<McpServer>, StoreError> {
        Ok(self
            .mcp_servers_with_credentials()?
            .into_iter()
            .map(|(server, _)| server)
            .collect())
    }

    pub(crate) fn mcp_servers_with_credentials(
        &self,
    ) -> Result<Vec<(McpServer, Option<serde_json::Value>)>, StoreError> {
        let conn = self.lock()?;
        let mut stmt = conn.prepare(
            "SELECT name, transport, owner_team, sensitive, credentials, created_at, updated_at
             FROM mcp_servers ORDER BY name",
        )?;
        let rows = stmt.query_map([], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, Option<String>>(2)?,
                row.get::<_, bool>(3)?,
                row.get::<_, Option<String>>(4)?,
                row.get::<_, String>(5)?,
                row.get::<_, String>(6)?,
            ))
        })?;
        rows.map(|row| {
            let (name, transport, owner_team, sensitive, credentials, created_at, updated_at) = row?;
            let credentials = credentials.as_deref().map(serde_json::from_str).transpose()?;
            let server = McpServer {
                name: stored_name(&name)?,
                transport: serde_json::from_str::<Transport>(&transport)?,
                owner_team: owner_team.as_deref().map(stored_name).transpose()?,
                sensitive,
                has_credentials: credentials.is_some(),
                created_at,
                updated_at,
            };
            Ok((server, credentials))
        })
        .collect()
    }

    // Tags.

    pub(crate) fn set_tag(&self, actor: &Actor, id: &AgentId, tag: &Name, present: bool) -> Result<Agent, StoreError> {
        self.write(|tx| {
            let before = load_agent(tx, id)?.ok_or_else(|| StoreError::NotFound {
                kind: "agent",
                key: id.to_string(),
            })?;
            if before.status == AgentStatus::Revoked {
                return Err(StoreError::Conflict(format!(
                    "agent `{id}` is revoked; its tags cannot change"
                )));
            }
            let has = before.tags.contains(tag);
            if has == present {
                return Ok(before);
            }
            let mut after = before.clone();
            if present {
                after.tags.push(tag.clone());
                after.tags.sort();
            } else {
                after.tags.retain(|t| t != tag);
            }
            after.updated_at = now_rfc3339();
            tx.execute(
                "UPDATE agents SET tags = ?2, updated_at = ?3 WHERE id = ?1",
                params![id.as_str(), serde_json::to_string(&after.tags)?, after.updated_at],
            )?;
            let action = if present { "agent.tag" } else { "agent.untag" };
            record(tx, actor, action, "agent", id.as_str(), Some(&before), Some(&after))?;
            Ok(after)
        })
    }

    // Guardrails.

    pub(crate) fn add_guardrail(&self, actor: &Actor, guardrail: &GuardrailRecord) -> Result<(), StoreError> {
        self.write(|tx| {
            let exists: bool = tx.query_row(
                "SELECT EXISTS (SELECT 1 FROM guardrails WHERE id = ?1)",
                [&guardrail.id],
                |row| row.get(0),
            )?;
            if exists {
                return Err(StoreError::Conflict(format!(
                    "guardrail `{}` already exists; remove it first to replace it",
                    guardrail.id
                )));
            }
            tx.execute(
                "INSERT INTO guardrails (id, message, text, created_by, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    guardrail.id,
                    guardrail.message,
                    guardrail.text,
                    guardrail.created_by,
                    guardrail.created_at
                ],
            )?;
            record(
                tx,
                actor,
                "guardrail.add",
                "guardrail",
                &guardrail.id,
                None::<&()>,
                Some(guardrail),
            )?;
            Ok(())
        })
    }

    pub(crate) fn list_guardrails(&self) -> Result<Vec<GuardrailRecord>, StoreError> {
        let conn = self.lock()?;
        let mut stmt =
            conn.prepare("SELECT id, message, text, created_by, created_at FROM guardrails ORDER BY created_at, id")?;
        let rows = stmt.query_map([], guardrail_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub(crate) fn remove_guardrail(&self, actor: &Actor, id: &str) -> Result<GuardrailRecord, StoreError> {
        self.write(|tx| {
            let before = tx
                .query_row(
                    "SELECT id, message, text, created_by, created_at FROM guardrails WHERE id = ?1",
                    [id],
                    guardrail_row,
                )
                .optional()?
                .ok_or_else(|| StoreError::NotFound {
                    kind: "guardrail",
                    key: id.to_owned(),
                })?;
            tx.execute("DELETE FROM guardrails WHERE id = ?1", [id])?;
            record(
                tx,
                actor,
                "guardrail.remove",
                "guardrail",
                id,
                Some(&before),
                None::<&()>,
            )?;
            Ok(before)
        })
    }

    // Scopes and grants.

    pub(crate) fn define_scope(&self, actor: &Actor, new: &NewScope) -> Result<Scope, StoreError> {
        self.write(|tx| {
            if scope_exists(tx, &new.name)? {
                return Err(StoreError::Conflict(format!("scope `{}` already exists", new.name)));
            }
            let scope = Scope {
                name: new.name.clone(),
                tools: new.tools.clone(),
                sensitive: new.sensitive,
                description: new.description.clone(),
                created_at: now_rfc3339(),
            };
            tx.execute(
                "INSERT INTO scopes (name, tools, sensitive, description, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    scope.name.as_str(),
                    serde_json::to_string(&scope.tools)?,
                    scope.sensitive,
                    scope.description,
                    scope.created_at
                ],
            )?;
            record(
                tx,
                actor,
                "scope.define",
                "scope",
                scope.name.as_str(),
                None::<&()>,
                Some(&scope),
            )?;
            Ok(scope)
        })
    }

    pub(crate) fn list_scopes(&self) -> Result<Vec<Scope>, StoreError> {
        let conn = self.lock()?;
        let mut stmt =
            conn.prepare("SELECT name, tools, sensitive, description, created_at FROM scopes ORDER BY name")?;
        let rows = stmt.query_map([], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, bool>(2)?,
                row.get::<_, String>(3)?,
                row.get::<_, String>(4)?,
            ))
        })?;
        rows.map(|row| {
            let (name, tools, sensitive, description, created_at) = row?;
            Ok(Scope {
                name: stored_name(&name)?,
                tools: serde_json::from_str::<Vec<ToolPattern>>(&tools)?,
                sensitive,
                description,
                created_at,
            })
        })
        .collect()
    }

    pub(crate) fn grant(&self, actor: &Actor, scope: &Name, agent: &AgentId) -> Result<Grant, StoreError> {
        self.write(|tx| {
            if !scope_exists(tx, scope)? {
                return Err(StoreError::NotFound {
                    kind: "scope",
                    key: scope.to_string(),
                });
            }
            let holder = load_agent(tx, agent)?.ok_or_else(|| StoreError::NotFound {
                kind: "agent",
                key: agent.to_string(),
            })?;
            if holder.status == AgentStatus::Revoked {
                return Err(StoreError::Conflict(format!(
                    "agent `{agent}` is revoked; it cannot be granted scopes"
                )));
            }
            if holder.scopes.contains(scope) {
                return Err(StoreError::Conflict(format!(
                    "agent `{agent}` already holds scope `{scope}`"
                )));
            }
            let grant = Grant {
                scope: scope.clone(),
                agent: agent.clone(),
                granted_by: actor.name.clone(),
                created_at: now_rfc3339(),
            };
            tx.execute(
                "INSERT INTO grants (scope, agent, granted_by, created_at) VALUES (?1, ?2, ?3, ?4)",
                params![scope.as_str(), agent.as_str(), grant.granted_by, grant.created_at],
            )?;
            record(
                tx,
                actor,
                "grant.create",
                "grant",
                &format!("{scope}@{agent}"),
                None::<&()>,
                Some(&grant),
            )?;
            Ok(grant)
        })
    }

    pub(crate) fn ungrant(&self, actor: &Actor, scope: &Name, agent: &AgentId) -> Result<Grant, StoreError> {
        self.write(|tx| {
            let grant = tx
                .query_row(
                    "SELECT granted_by, created_at FROM grants WHERE scope = ?1 AND agent = ?2",
                    params![scope.as_str(), agent.as_str()],
                    |row| {
                        Ok(Grant {
                            scope: scope.clone(),
                            agent: agent.clone(),
                            granted_by: row.get(0)?,
                            created_at: row.get(1)?,
                        })
                    },
                )
                .optional()?
                .ok_or_else(|| StoreError::NotFound {
                    kind: "grant",
                    key: format!("{scope} to {agent}"),
                })?;
            tx.execute(
                "DELETE FROM grants WHERE scope = ?1 AND agent = ?2",
                params![scope.as_str(), agent.as_str()],
            )?;
            record(
                tx,
                actor,
                "grant.delete",
                "grant",
                &format!("{scope}@{agent}"),
                Some(&grant),
                None::<&()>,
            )?;
            Ok(grant)
        })
    }

    pub(crate) fn list_grants(&self, agent: Option<&AgentId>) -> Result<Vec<Grant>, StoreError> {
        let conn = self.lock()?;
        let mut stmt = conn.prepare(
            "SELECT scope, agent, granted_by, created_at FROM grants
             WHERE (?1 IS NULL OR agent = ?1) ORDER BY agent, scope",
        )?;
        let rows = stmt.query_map([agent.map(AgentId::as_str)], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, String>(3)?,
            ))
        })?;
        rows.map(|row| {
            let (scope, agent, granted_by, created_at) = row?;
            Ok(Grant {
                scope: stored_name(&scope)?,
                agent: stored_agent_id(&agent)?,
                granted_by,
                created_at,
            })
        })
        .collect()
    }

    pub(crate) fn agent_credentials(&self, id: &AgentId) -> Result<Option<AgentCredentials>, StoreError> {
        let conn = self.lock()?;
        let Some(agent) = load_agent(&conn, id)? else {
            return Ok(None);
        };
        let hash: Option<Vec<u8>> =
            conn.query_row("SELECT secret_hash FROM agents WHERE id = ?1", [id.as_str()], |row| {
                row.get(0)
            })?;
        Ok(Some(AgentCredentials {
            agent,
            secret_hash: hash,
        }))
    }

    pub(crate) fn register_subagent(
        &self,
        actor: &Actor,
        new: &NewAgent,
        scopes: &[Name],
    ) -> Result<Agent, StoreError> {
        self.write(|tx| {
            let parent_id = new
                .id
                .parent()
                .ok_or_else(|| StoreError::Internal(format!("`{}` is not a subagent id", new.id)))?;
            let parent = load_agent(tx, &parent_id)?.ok_or_else(|| StoreError::NotFound {
                kind: "agent",
                key: parent_id.to_string(),
            })?;
            let existing = load_agent(tx, &new.id)?;
            let agent = match existing {
                Some(agent) if agent.status != AgentStatus::Active => {
                    return Err(StoreError::Conflict(format!(
                        "subagent `{}` is {}",
                        agent.id, agent.status
                    )));
                }
                Some(agent) => agent,
                None => {
                    let now = now_rfc3339();
                    let agent = Agent {
                        id: new.id.clone(),
                        team: parent.team.clone(),
                        name: new.id.name(),
                        owner: parent.owner.clone(),
                        purpose: new.purpose.clone(),
                        tags: parent.tags.clone(),
                        status: AgentStatus::Active,
                        origin: Origin::Delegated,
                        parent: Some(parent_id.clone()),
                        scopes: Vec::new(),
                        created_at: now.clone(),
                        updated_at: now,
                    };
                    register_agent_row(tx, actor, &agent, None)?;
                    agent
                }
            };
            for scope in scopes {
                if agent.scopes.contains(scope) {
                    continue;
                }
                let grant = Grant {
                    scope: scope.clone(),
                    agent: agent.id.clone(),
                    granted_by: actor.name.clone(),
                    created_at: now_rfc3339(),
                };
                tx.execute(
                    "INSERT INTO grants (scope, agent, granted_by, created_at) VALUES (?1, ?2, ?3, ?4)",
                    params![scope.as_str(), agent.id.as_str(), grant.granted_by, grant.created_at],
                )?;
                record(
                    tx,
                    actor,
                    "grant.create",
                    "grant",
                    &format!("{scope}@{}", agent.id),
                    None::<&()>,
                    Some(&grant),
                )?;
            }
            let mut agent = agent;
            agent.scopes = load_scopes_of(tx, &agent.id)?;
            Ok(agent)
        })
    }

    /// Appends many free-form events in one transaction: one fsync for the whole batch. An event
    /// with an id already stored (or earlier in the batch) is skipped; the answer says, per event,
    /// whether it was stored.
    pub(crate) fn record_events(&self, events: &[crate::PendingEvent]) -> Result<Vec<bool>, StoreError> {
        self.write(|tx| {
            let mut stored = Vec::with_capacity(events.len());
            for event in events {
                if let Some(id) = &event.event_id {
                    let seen: bool = tx.query_row(
                        "SELECT EXISTS (SELECT 1 FROM change_events WHERE event_id = ?1)",
                        [id],
                        |row| row.get(0),
                    )?;
                    if seen {
                        stored.push(false);
                        continue;
                    }
                }
                record(
                    tx,
                    &event.actor,
                    &event.action,
                    &event.target_kind,
                    &event.target,
                    None::<&()>,
                    Some(&event.details),
                )?;
                if let Some(id) = &event.event_id {
                    tx.execute(
                        "UPDATE change_events SET event_id = ?1 WHERE seq = last_insert_rowid()",
                        [id],
                    )?;
                }
                stored.push(true);
            }
            Ok(stored)
        })
    }

    // Templates.

    /// Stores the next version of `name`; with `only_first`, only when no version exists yet.
    pub(crate) fn put_template(
        &self,
        actor: &Actor,
        name: &Name,
        files: &BTreeMap<String, String>,
        only_first: bool,
    ) -> Result<Option<TemplateRecord>, StoreError> {
        self.write(|tx| {
            let latest: Option<i64> = tx.query_row(
                "SELECT MAX(version) FROM templates WHERE name = ?1",
                [name.as_str()],
                |row| row.get(0),
            )?;
            if only_first && latest.is_some() {
                return Ok(None);
            }
            let template = TemplateRecord {
                name: name.clone(),
                version: latest.unwrap_or(0) + 1,
                files: files.clone(),
                created_by: actor.name.clone(),
                created_at: now_rfc3339(),
            };
            tx.execute(
                "INSERT INTO templates (name, version, files, created_by, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    name.as_str(),
                    template.version,
                    serde_json::to_string(&template.files)?,
                    template.created_by,
                    template.created_at
                ],
            )?;
            record(
                tx,
                actor,
                "template.set",
                "template",
                &format!("{name}@{}", template.version),
                None::<&()>,
                Some(&template),
            )?;
            Ok(Some(template))
        })
    }

    pub(crate) fn template(&self, name: &Name, version: Option<i64>) -> Result<TemplateRecord, StoreError> {
        let conn = self.lock()?;
        let row = match version {
            Some(v) => conn
                .query_row(
                    "SELECT name, version, files, created_by, created_at FROM templates
                     WHERE name = ?1 AND version = ?2",
                    params![name.as_str(), v],
                    template_row,
                )
                .optional()?,
            None => conn
                .query_row(
                    "SELECT name, version, files, created_by, created_at FROM templates
                     WHERE name = ?1 ORDER BY version DESC LIMIT 1",
                    [name.as_str()],
                    template_row,
                )
                .optional()?,
        };
        let key = match version {
            Some(v) => format!("{name}@{v}"),
            None => name.to_string(),
        };
        row.ok_or(StoreError::NotFound { kind: "template", key })?.into_record()
    }

    pub(crate) fn list_templates(&self) -> Result<Vec<TemplateRecord>, StoreError> {
        let conn = self.lock()?;
        let mut stmt = conn.prepare(
            "SELECT t.name, t.version, t.files, t.created_by, t.created_at FROM templates t
             WHERE t.version = (SELECT MAX(version) FROM templates WHERE name = t.name) ORDER BY t.name",
        )?;
        let rows = stmt.query_map([], template_row)?;
        rows.map(|row| row?.into_record()).collect()
    }

    pub(crate) fn agent_template(&self, id: &AgentId) -> Result<Option<TemplateRef>, StoreError> {
        let conn = self.lock()?;
        let row: Option<(Option<String>, Option<i64>)> = conn
            .query_row(
                "SELECT template, template_version FROM agents WHERE id = ?1",
                [id.as_str()],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()?;
        match row {
            None => Err(StoreError::NotFound {
                kind: "agent",
                key: id.to_string(),
            }),
            Some((Some(name), Some(version))) => Ok(Some(TemplateRef {
                name: stored_name(&name)?,
                version,
            })),
            Some(_) => Ok(None),
        }
    }

    // Revocation feed and change events.

    pub(crate) fn list_revocations(&self, since: i64, limit: i64) -> Result<Vec<RevocationRecord>, StoreError> {
        let conn = self.lock()?;
        let mut stmt = conn.prepare(
            "SELECT seq, agent, state, not_before, at FROM revocations WHERE seq > ?1 ORDER BY seq LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![since, limit], |row| {
            Ok(RevocationRecord {
                seq: row.get(0)?,
                agent: row.get(1)?,
                state: row.get(2)?,
                not_before: row.get(3)?,
                at: row.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub(crate) fn list_events(&self, since: i64, limit: i64) -> Result<Vec<ChangeEvent>, StoreError> {
        let conn = self.lock()?;
        let mut stmt = conn.prepare(
            "SELECT seq, time, actor_kind, actor, action, target_kind, target, before, after
             FROM change_events WHERE seq > ?1 ORDER BY seq LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![since, limit], |row| {
            Ok((
                ChangeEvent {
                    seq: row.get(0)?,
                    time: row.get(1)?,
                    actor_kind: row.get(2)?,
                    actor: row.get(3)?,
                    action: row.get(4)?,
                    target_kind: row.get(5)?,
                    target: row.get(6)?,
                    before: serde_json::Value::Null,
                    after: serde_json::Value::Null,
                },
                row.get::<_, Option<String>>(7)?,
                row.get::<_, Option<String>>(8)?,
            ))
        })?;
        rows.map(|row| {
            let (mut event, before, after) = row?;
            event.before = before
                .as_deref()
                .map(serde_json::from_str)
                .transpose()?
                .unwrap_or_default();
            event.after = after
                .as_deref()
                .map(serde_json::from_str)
                .transpose()?
                .unwrap_or_default();
            Ok(event)
        })
        .collect()
    }
}

/// Appends a change event inside the caller's transaction.
fn record<B: Serialize, A: Serialize>(
    tx: &Transaction<'_>,
    actor: &Actor,
    action: &str,
    target_kind: &str,
    target: &str,
    before: Option<&B>,
    after: Option<&A>,
) -> Result<(), StoreError> {
    let kind = serde_json::to_value(actor.kind)?;
    tx.execute(
        "INSERT INTO change_events (time, actor_kind, actor, action, target_kind, target, before, after)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            now_rfc3339(),
            kind.as_str().unwrap_or("system"),
            actor.name,
            action,
            target_kind,
            target,
            before.map(serde_json::to_string).transpose()?,
            after.map(serde_json::to_string).transpose()?,
        ],
    )?;
    Ok(())
}

/// Inserts a new agent and records its `agent.register` event, in the caller's transaction.
fn register_agent_row(
    tx: &Transaction<'_>,
    actor: &Actor,
    agent: &Agent,
    secret_hash: Option<&[u8; 32]>,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO agents (id, team, name, owner, purpose, tags, status, origin, parent, secret_hash,
                             created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        params![
            agent.id.as_str(),
            agent.team.as_str(),
            agent.name.as_str(),
            agent.owner,
            agent.purpose,
            serde_json::to_string(&agent.tags)?,
            agent.status.as_str(),
            agent.origin.as_str(),
            agent.parent.as_ref().map(AgentId::as_str),
            secret_hash.map(|h| &h[..]),
            agent.created_at,
            agent.updated_at,
        ],
    )?;
    record(
        tx,
        actor,
        "agent.register",
        "agent",
        agent.id.as_str(),
        None::<&Agent>,
        Some(agent),
    )
}

struct TemplateRow {
    name: String,
    version: i64,
    files: String,
    created_by: String,
    created_at: String,
}

fn template_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<TemplateRow> {
    Ok(TemplateRow {
        name: row.get(0)?,
        version: row.get(1)?,
        files: row.get(2)?,
        created_by: row.get(3)?,
        created_at: row.get(4)?,
    })
}

impl TemplateRow {
    fn into_record(self) -> Result<TemplateRecord, StoreError> {
        Ok(TemplateRecord {
            name: stored_name(&self.name)?,
            version: self.version,
            files: serde_json::from_str(&self.files)?,
            created_by: self.created_by,
            created_at: self.created_at,
        })
    }
}

fn require_template(conn: &Connection, template: &TemplateRef) -> Result<(), StoreError> {
    let exists: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM templates WHERE name = ?1 AND version = ?2)",
        params![template.name.as_str(), template.version],
        |row| row.get(0),
    )?;
    if exists {
        Ok(())
    } else {
        Err(StoreError::NotFound {
            kind: "template",
            key: format!("{}@{}", template.name, template.version),
        })
    }
}

fn guardrail_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<GuardrailRecord> {
    Ok(GuardrailRecord {
        id: row.get(0)?,
        message: row.get(1)?,
        text: row.get(2)?,
        created_by: row.get(3)?,
        created_at: row.get(4)?,
    })
}

fn team_exists(conn: &Connection, name: &Name) -> Result<bool, StoreError> {
    Ok(conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM teams WHERE name = ?1)",
        [name.as_str()],
        |row| row.get(0),
    )?)
}

fn require_team(conn: &Connection, name: &Name) -> Result<(), StoreError> {
    if team_exists(conn, name)? {
        Ok(())
    } else {
        Err(StoreError::NotFound {
            kind: "team",
            key: name.to_string(),
        })
    }
}

fn agent_exists(conn: &Connection, id: &AgentId) -> Result<bool, StoreError> {
    Ok(conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM agents WHERE id = ?1)",
        [id.as_str()],
        |row| row.get(0),
    )?)
}

fn scope_exists(conn: &Connection, name: &Name) -> Result<bool, StoreError> {
    Ok(conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM scopes WHERE name = ?1)",
        [name.as_str()],
        |row| row.get(0),
    )?)
}

fn stored_name(value: &str) -> Result<Name, StoreError> {
    Name::parse(value).map_err(|e| StoreError::Internal(format!("stored data is invalid: {e}")))
}

fn stored_agent_id(value: &str) -> Result<AgentId, StoreError> {
    AgentId::parse(value).map_err(|e| StoreError::Internal(format!("stored data is invalid: {e}")))
}

const AGENT_COLUMNS: &str = "id, owner, purpose, tags, status, origin, parent, created_at, updated_at";

struct AgentRow {
    id: String,
    owner: String,
    purpose: String,
    tags: String,
    status: String,
    origin: String,
    parent: Option<String>,
    created_at: String,
    updated_at: String,
}

fn agent_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<AgentRow> {
    Ok(AgentRow {
        id: row.get(0)?,
        owner: row.get(1)?,
        purpose: row.get(2)?,
        tags: row.get(3)?,
        status: row.get(4)?,
        origin: row.get(5)?,
        parent: row.get(6)?,
        created_at: row.get(7)?,
        updated_at: row.get(8)?,
    })
}

impl AgentRow {
    fn into_agent(self) -> Result<Agent, StoreError> {
        let id = stored_agent_id(&self.id)?;
        Ok(Agent {
            team: id.team(),
            name: id.name(),
            id,
            owner: self.owner,
            purpose: self.purpose,
            tags: serde_json::from_str(&self.tags)?,
            status: AgentStatus::parse(&self.status)
                .ok_or_else(|| StoreError::Internal(format!("stored agent status `{}` is unknown", self.status)))?,
            origin: Origin::parse(&self.origin)
                .ok_or_else(|| StoreError::Internal(format!("stored agent origin `{}` is unknown", self.origin)))?,
            parent: self.parent.as_deref().map(stored_agent_id).transpose()?,
            scopes: Vec::new(),
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

fn load_scopes_of(conn: &Connection, id: &AgentId) -> Result<Vec<Name>, StoreError> {
    let mut stmt = conn.prepare("SELECT scope FROM grants WHERE agent = ?1 ORDER BY scope")?;
    let rows = stmt.query_map([id.as_str()], |row| row.get::<_, String>(0))?;
    rows.map(|row| stored_name(&row?)).collect()
}

fn load_agent(conn: &Connection, id: &AgentId) -> Result<Option<Agent>, StoreError> {
    let row = conn
        .query_row(
            &format!("SELECT {AGENT_COLUMNS} FROM agents WHERE id = ?1"),
            [id.as_str()],
            agent_row,
        )
        .optional()?;
    let Some(row) = row else { return Ok(None) };
    let mut agent = row.into_agent()?;
    agent.scopes = load_scopes_of(conn, id)?;
    Ok(Some(agent))
}

struct AccessTokenRow {
    name: String,
    role: String,
    team: Option<String>,
    created_at: String,
    revoked_at: Option<String>,
}

fn access_token_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<AccessTokenRow> {
    Ok(AccessTokenRow {
        name: row.get(0)?,
        role: row.get(1)?,
        team: row.get(2)?,
        created_at: row.get(3)?,
        revoked_at: row.get(4)?,
    })
}

impl AccessTokenRow {
    fn into_info(self) -> Result<AccessTokenInfo, StoreError> {
        Ok(AccessTokenInfo {
            name: stored_name(&self.name)?,
            role: Role::parse(&self.role)
                .ok_or_else(|| StoreError::Internal(format!("stored role `{}` is unknown", self.role)))?,
            team: self.team.as_deref().map(stored_name).transpose()?,
            created_at: self.created_at,
            revoked_at: self.revoked_at,
        })
    }
}
