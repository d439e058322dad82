//! What every request handler can reach.

use std::sync::Arc;

use warden_store::Store;

use crate::credentials::Credentials;

/// Shared server state; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// The registry.
    pub store: Store,
    /// The SPIFFE trust domain agent ids live in.
    pub trust_domain: String,
    /// Keys, verifier and revocation state.
    pub credentials: Arc<Credentials>,
}
