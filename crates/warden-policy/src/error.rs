//! The one error type of this crate: why a guardrail or an engine could not be built.
//!
//! Decisions never fail: a deny is a [`crate::Decision`], not an error. Errors here are about
//! admitting policy text and assembling an engine.

/// Why a guardrail was refused or an engine could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The text is not Cedar.
    #[error("the guardrail does not parse: {0}")]
    Syntax(String),
    /// The text holds no policy or more than one.
    #[error("a guardrail must hold exactly one policy, this text holds {0}")]
    PolicyCount(usize),
    /// The policy has `?principal` or `?resource` slots.
    #[error("a guardrail must not be a template (it has `?principal` or `?resource` slots)")]
    Template,
    /// The `@id` annotation is missing.
    #[error("the guardrail has no `@id(\"...\")` annotation")]
    MissingId,
    /// The `@id` annotation is not a valid name.
    #[error("guardrail id `{0}` is invalid: ids match [a-z0-9][a-z0-9-]{{0,62}}")]
    InvalidId(String),
    /// The `@message` annotation is missing or empty.
    #[error("guardrail `{0}` has no `@message(\"...\")` annotation saying why it forbids")]
    MissingMessage(String),
    /// The policy is a `permit`.
    #[error("guardrail `{0}` is a `permit`: guardrails may only `forbid` (teams widen access by granting scopes)")]
    Permit(String),
    /// Strict validation against the schema failed.
    #[error("guardrail `{id}` does not match the schema: {reason}")]
    Invalid {
        /// The guardrail's id.
        id: String,
        /// The validator's messages, joined by `; `.
        reason: String,
    },
    /// Validation proved the guardrail can never forbid anything.
    #[error("guardrail `{id}` can never apply: {reason}")]
    Impossible {
        /// The guardrail's id.
        id: String,
        /// The validator's messages, joined by `; `.
        reason: String,
    },
    /// Two guardrails share an id.
    #[error("guardrail id `{0}` is used twice")]
    DuplicateId(String),
    /// Warden generated Cedar that Cedar refused: a bug in this crate, never the caller's input.
    #[error("internal policy error: {0}")]
    Internal(String),
}
