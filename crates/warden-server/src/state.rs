//! What every request handler can reach.

use std::sync::Arc;

use warden_store::Store;

use crate::credentials::Credentials;
use crate::gateway::ServerControlPlane;
use crate::policy::PolicyState;

/// Shared server state; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// The registry.
    pub store: Store,
    /// The SPIFFE trust domain agent ids live in.
    pub trust_domain: String,
    /// Keys, verifier and revocation state.
    pub credentials: Arc<Credentials>,
    /// The policy engine in force.
    pub policy: Arc<PolicyState>,
    /// The organization's time zone, for the time facts policy sees.
    pub time_offset: time::UtcOffset,
    /// Whether Claude Code hook events keep the text of prompts (otherwise only their length).
    pub keep_prompts: bool,
    /// The MCP gateway served at `/mcp` and `/mcp/{server}`.
    pub gateway: warden_gateway::Gateway,
    /// The gateway's view of the control plane (its upstream list is refreshed when servers change).
    pub(crate) control: Arc<ServerControlPlane>,
    /// The audit lake every event ends up in.
    pub(crate) lake: warden_lake::Lake,
    /// Carries the store's change log into the lake.
    pub(crate) forwarder: crate::audit::Forwarder,
    /// SQL over the lake.
    pub(crate) query: warden_query::QueryEngine,
}
