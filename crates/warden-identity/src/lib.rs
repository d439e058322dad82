//! Warden's credentials.
//!
//! This crate owns every secret and signature Warden makes or checks: the random secrets handed to
//! people and agents (stored only as hashes), the Ed25519 signing keys and the JWKS that publishes them,
//! and the agent access tokens (JWTs) with their one verification function used by every enforcement
//! point.

pub mod keys;
pub mod revocation;
pub mod secret;
pub mod token;
