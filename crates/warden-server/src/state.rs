//! What every request handler can reach.

use std::sync::Arc;

use warden_store::Store;

use crate::credentials::Credentials;
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
}
