//! Warden's credentials.
//!
//! This crate owns every secret and signature Warden makes or checks: the random secrets handed to
//! people and agents (stored only as hashes), the Ed25519 signing keys and the JWKS that publishes them,
//! the agent access tokens (JWTs) with their one verification function used by every enforcement
//! point, and the revocation state that verification consults.
//!
//! **Architecture Invariant:** no network IO and no async. Only [`keys`] touches the disk; the rest is
//! pure, so a standalone gateway can verify tokens from a fetched JWKS and revocation feed alone.

pub mod keys;
pub mod revocation;
pub mod secret;
pub mod token;
