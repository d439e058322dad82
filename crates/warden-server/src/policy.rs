//! The server's policy state: the current [`PolicyEngine`], rebuilt from the registry when grants, tags,
//! agents, scopes, MCP servers or guardrails change, and swapped in atomically.
//!
//! Every change that the engine reflects goes through [`PolicyState::change`], which holds one lock
//! across "decide with the current engine, write to the store, build the next engine, swap". So a
//! separation-of-duties check and the write it allows cannot interleave with another change: two
//! concurrent requests cannot each pass a check while together creating a toxic combination.

use std::sync::{Arc, RwLock};

use warden_core::{McpServer, Transport};
use warden_policy::{Decision, Fleet, Guardrail, PolicyEngine, parse_guardrail};
use warden_store::{AgentFilter, Store, StoreError};

/// The policy engine in force and the lock that serialises changes to it.
pub struct PolicyState {
    engine: RwLock<Arc<PolicyEngine>>,
    changes: tokio::sync::Mutex<()>,
}

/// Why the policy engine could not be (re)built.
#[derive(Debug, thiserror::Error)]
pub enum PolicyStateError {
    /// The registry could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored guardrail no longer validates, or the engine refused the fleet.
    #[error("policy: {0}")]
    Policy(String),
}

/// Reads the registry and builds an engine over it.
pub(crate) async fn build_engine(store: &Store) -> Result<PolicyEngine, PolicyStateError> {
    let agents = store.list_agents(AgentFilter::default()).await?;
    let scopes = store.list_scopes().await?;
    let mut servers = store.list_mcp_servers().await?;
    servers.push(claude_code_server());
    let guardrails = load_guardrails(store).await?;
    let fleet = Fleet::new(&agents, &scopes, &servers);
    PolicyEngine::new(fleet, guardrails).map_err(|e| PolicyStateError::Policy(e.to_string()))
}

/// Claude Code's built-in tools (`Bash`, `Read`, …) as the tools of a server `claude-code`, so that
/// scopes and guardrails cover them (the hook asks for decisions on them). Policy sees it like any
/// registered server; the gateway never lists it and the name cannot be registered.
fn claude_code_server() -> McpServer {
    McpServer {
        name: warden_core::claude_code::builtin_server(),
        transport: Transport::Stdio {
            command: "claude".to_owned(),
            args: Vec::new(),
        },
        owner_team: None,
        sensitive: false,
        has_credentials: false,
        created_at: String::new(),
        updated_at: String::new(),
    }
}

async fn load_guardrails(store: &Store) -> Result<Vec<Guardrail>, PolicyStateError> {
    let mut guardrails = Vec::new();
    for record in store.list_guardrails().await? {
        let guardrail = parse_guardrail(&record.text).map_err(|e| {
            PolicyStateError::Policy(format!(
                "stored guardrail `{}` no longer validates against the schema: {e}; remove it or fix it",
                record.id
            ))
        })?;
        guardrails.push(guardrail);
    }
    Ok(guardrails)
}

impl PolicyState {
    /// Builds the initial engine from the registry.
    pub async fn load(store: &Store) -> Result<PolicyState, PolicyStateError> {
        let engine = build_engine(store).await?;
        Ok(PolicyState {
            engine: RwLock::new(Arc::new(engine)),
            changes: tokio::sync::Mutex::new(()),
        })
    }

    /// The engine in force now. Decisions use it without holding any lock.
    pub fn current(&self) -> Arc<PolicyEngine> {
        self.engine
            .read()
            .map_or_else(|poisoned| Arc::clone(&poisoned.into_inner()), |e| Arc::clone(&e))
    }

    /// Runs `f` with the change lock held; `f` may decide with [`PolicyState::current`], write to the
    /// store, and must return the engine to swap in (or `None` to keep the current one).
    pub async fn change<T, E, F, Fut>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(Arc<PolicyEngine>) -> Fut,
        Fut: std::future::Future<Output = Result<(T, Option<PolicyEngine>), E>>,
    {
        let _guard = self.changes.lock().await;
        let (value, next) = f(self.current()).await?;
        if let Some(next) = next {
            self.swap(next);
        }
        Ok(value)
    }

    /// Rebuilds the engine from the registry (after changes that touch many agents, scopes or servers).
    pub async fn rebuild(&self, store: &Store) -> Result<(), PolicyStateError> {
        let _guard = self.changes.lock().await;
        let engine = build_engine(store).await?;
        self.swap(engine);
        Ok(())
    }

    fn swap(&self, next: PolicyEngine) {
        let mut slot = self.engine.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        *slot = Arc::new(next);
    }
}

/// An allow stands only if a grant of a scope the token carries allowed it: a token may carry fewer
/// scopes than its agent holds. The logic lives in `warden_gateway::narrow_to_token`, so a standalone
/// gateway decides exactly as this server does.
pub(crate) fn narrow_to_token(decision: Decision, token_scopes: &[&str]) -> Decision {
    warden_gateway::narrow_to_token(decision, token_scopes)
}
