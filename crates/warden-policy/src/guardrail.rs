//! Guardrails: the platform team's org-wide `forbid` policies, admitted one file at a time.
//!
//! This module owns the admission rules: exactly one policy per text, an `@id` that is a valid name,
//! a non-empty `@message`, effect `forbid`, no template slots, and strict validation against the
//! published schema. A guardrail that passes here can still fail at evaluation time (integer
//! overflow, a missing entity); the engine then counts it as a deny.

use std::fmt;
use std::str::FromStr;

use cedar_policy::{Effect, Policy, PolicyId, PolicySet, ValidationMode, ValidationWarning};
use warden_core::Name;

use crate::error::PolicyError;
use crate::schema;

/// A parsed, strictly validated guardrail.
#[derive(Clone)]
pub struct Guardrail {
    id: String,
    message: String,
    text: String,
    pub(crate) policy: Policy,
}

impl Guardrail {
    /// The `@id` annotation; also the Cedar policy id reported in decisions.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The `@message` annotation: why the guardrail forbids, quoted in every decision it makes.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The Cedar text as it was given.
    pub fn text(&self) -> &str {
        &self.text
    }
}

impl fmt::Debug for Guardrail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Guardrail")
            .field("id", &self.id)
            .field("message", &self.message)
            .field("text", &self.text)
            .finish()
    }
}

impl PartialEq for Guardrail {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id && self.message == other.message && self.text == other.text
    }
}

impl Eq for Guardrail {}

/// Parses and validates one guardrail.
///
/// The text must hold exactly one `forbid` policy with an `@id("...")` matching
/// `[a-z0-9][a-z0-9-]{0,62}` and a non-empty `@message("...")`, and must pass strict validation
/// against [`crate::schema_text`]. A guardrail that validation proves can never apply is refused too:
/// a floor that silently forbids nothing is a bug. A `permit` is refused: access is widened only
/// by granting scopes, never in raw Cedar.
pub fn parse_guardrail(text: &str) -> Result<Guardrail, PolicyError> {
    let compiled = schema::compiled()?;
    let set = PolicySet::from_str(text).map_err(|e| PolicyError::Syntax(schema::one_line(&e)))?;
    if set.templates().next().is_some() {
        return Err(PolicyError::Template);
    }
    let count = set.policies().count();
    if count != 1 {
        return Err(PolicyError::PolicyCount(count));
    }
    let Some(parsed) = set.policies().next() else {
        return Err(PolicyError::PolicyCount(0));
    };
    let id = parsed.annotation("id").ok_or(PolicyError::MissingId)?.to_owned();
    if Name::parse(&id).is_err() {
        return Err(PolicyError::InvalidId(id));
    }
    let message = parsed
        .annotation("message")
        .map(str::trim)
        .unwrap_or_default()
        .to_owned();
    if message.is_empty() {
        return Err(PolicyError::MissingMessage(id));
    }
    if parsed.effect() != Effect::Forbid {
        return Err(PolicyError::Permit(id));
    }
    let policy =
        Policy::parse(Some(PolicyId::new(&id)), text).map_err(|e| PolicyError::Syntax(schema::one_line(&e)))?;
    let mut single = PolicySet::new();
    single
        .add(policy.clone())
        .map_err(|e| PolicyError::Internal(schema::one_line(&e)))?;
    let res = compiled.validator.validate(&single, ValidationMode::Strict);
    if !res.validation_passed() {
        let reason = res
            .validation_errors()
            .map(|e| schema::one_line(&e))
            .collect::<Vec<_>>()
            .join("; ");
        return Err(PolicyError::Invalid { id, reason });
    }
    let impossible = res
        .validation_warnings()
        .filter(|w| {
            matches!(
                w,
                ValidationWarning::ImpossiblePolicy(_) | ValidationWarning::InvalidActionApplication(_)
            )
        })
        .map(|w| schema::one_line(&w))
        .collect::<Vec<_>>();
    if !impossible.is_empty() {
        return Err(PolicyError::Impossible {
            id,
            reason: impossible.join("; "),
        });
    }
    Ok(Guardrail {
        id,
        message,
        text: text.to_owned(),
        policy,
    })
}
