//! The MCP gateway inside `warden serve`: the server's own credentials, policy and registry behind
//! `warden_gateway::ControlPlane`, and the store's change log as its durable `AuditSink`.
//!
//! Decisions here are the same ones `/v1/authorize` makes (same verifier, same engine, same narrowing
//! to the token's scopes), so an agent sees one answer whichever way it asks.

use std::sync::{Arc, RwLock};

use time::UtcOffset;
use warden_gateway::{AgentIdentity, AuthError, ControlPlane, UpstreamSpec};
use warden_policy::{Decision, ToolCall, Weekday};
use warden_store::{Store, StoreError};

use crate::credentials::Credentials;
use crate::policy::{PolicyState, narrow_to_token};

/// The control plane as the in-process gateway sees it.
pub(crate) struct ServerControlPlane {
    credentials: Arc<Credentials>,
    policy: Arc<PolicyState>,
    servers: RwLock<Vec<UpstreamSpec>>,
    time_offset: UtcOffset,
}

impl ServerControlPlane {
    pub(crate) async fn new(
        credentials: Arc<Credentials>,
        policy: Arc<PolicyState>,
        time_offset: UtcOffset,
        store: &Store,
    ) -> Result<ServerControlPlane, StoreError> {
        let control = ServerControlPlane {
            credentials,
            policy,
            servers: RwLock::new(Vec::new()),
            time_offset,
        };
        control.refresh_servers(store).await?;
        Ok(control)
    }

    /// Re-reads the registered MCP servers and their upstream credentials (after one is added).
    pub(crate) async fn refresh_servers(&self, store: &Store) -> Result<(), StoreError> {
        let mut specs = Vec::new();
        for (server, credentials) in store.mcp_servers_with_credentials().await? {
            specs.push(UpstreamSpec {
                name: server.name,
                transport: server.transport,
                credentials: warden_gateway::upstream_credentials(&credentials.unwrap_or_default()),
            });
        }
        if let Ok(mut slot) = self.servers.write() {
            *slot = specs;
        }
        Ok(())
    }
}

impl ServerControlPlane {
    /// Whether `name` is a registered MCP server.
    pub(crate) fn is_registered(&self, name: &str) -> bool {
        self.servers
            .read()
            .map(|s| s.iter().any(|spec| spec.name.as_str() == name))
            .unwrap_or(false)
    }
}

impl ControlPlane for ServerControlPlane {
    fn authenticate(&self, bearer: &str) -> Result<AgentIdentity, AuthError> {
        let verified = self
            .credentials
            .verify(bearer)
            .map_err(|e| AuthError::Invalid(e.to_string()))?;
        AgentIdentity::from_claims(verified.claims(), bearer)
    }

    fn decide(&self, identity: &AgentIdentity, call: &ToolCall) -> Decision {
        let decision = self.policy.current().authorize_call(call);
        let scopes: Vec<&str> = identity.scopes.iter().map(String::as_str).collect();
        narrow_to_token(decision, &scopes)
    }

    fn servers(&self) -> Vec<UpstreamSpec> {
        self.servers.read().map(|s| s.clone()).unwrap_or_default()
    }

    fn still_valid(&self, identity: &AgentIdentity) -> Result<(), AuthError> {
        self.credentials
            .verify(&identity.bearer)
            .map(|_| ())
            .map_err(|e| AuthError::Invalid(e.to_string()))
    }

    fn now(&self) -> (u8, Weekday) {
        crate::clock::now_in(self.time_offset)
    }
}
