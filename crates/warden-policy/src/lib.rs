//! Warden's policy engine: the published Cedar schema, guardrails, grants as policies, and fast,
//! sliced authorization decisions.
//!
//! The platform team writes guardrails: Cedar `forbid` policies that form a floor no team can go
//! below. Teams grant scopes (named bundles of tool patterns) to their own agents. A tool call is
//! allowed only if a scope the agent holds covers the tool and no guardrail forbids it; anything
//! else is denied, including a guardrail that fails to evaluate. Granting a scope and tagging an agent
//! are checked against the same guardrails (separation of duties), as is delegation.
//!
//! **Architecture Invariant:** the only crate that imports `cedar_policy`, and no Cedar type appears in
//! its public API. **Invariant:** authorization fails closed; a deny is a [`Decision`], never an error,
//! and nothing here panics on any input.
#![deny(missing_docs)]

mod arguments;
mod decision;
mod engine;
mod error;
mod fleet;
mod guardrail;
mod schema;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

pub use decision::{Decision, Held, ToolCall, Violation, Weekday};
pub use engine::PolicyEngine;
pub use error::PolicyError;
pub use fleet::Fleet;
pub use guardrail::{Guardrail, parse_guardrail};
pub use schema::schema_text;
