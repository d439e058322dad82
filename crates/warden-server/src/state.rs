//! What every request handler can reach.

use warden_store::Store;

/// Shared server state; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// The registry.
    pub store: Store,
    /// The SPIFFE trust domain agent ids live in.
    pub trust_domain: String,
}
