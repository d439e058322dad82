//! The values that go in and out of the engine: a tool call, a decision, a violation.
//!
//! A deny is a [`Decision`] with `allow == false`, never an error.

use std::fmt;

use warden_core::{AgentId, Name};

/// A day of the week, from the server clock in the organization's time zone.
///
/// In Cedar it is `context.weekday`, a `Long`: 0 for Monday through 6 for Sunday, so weekends are
/// `context.weekday >= 5`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Weekday {
    /// 0.
    Monday,
    /// 1.
    Tuesday,
    /// 2.
    Wednesday,
    /// 3.
    Thursday,
    /// 4.
    Friday,
    /// 5.
    Saturday,
    /// 6.
    Sunday,
}

impl Weekday {
    /// Every day, Monday first.
    pub const ALL: [Weekday; 7] = [
        Weekday::Monday,
        Weekday::Tuesday,
        Weekday::Wednesday,
        Weekday::Thursday,
        Weekday::Friday,
        Weekday::Saturday,
        Weekday::Sunday,
    ];

    /// The number Cedar sees: 0 for Monday through 6 for Sunday.
    pub fn number(self) -> u8 {
        match self {
            Weekday::Monday => 0,
            Weekday::Tuesday => 1,
            Weekday::Wednesday => 2,
            Weekday::Thursday => 3,
            Weekday::Friday => 4,
            Weekday::Saturday => 5,
            Weekday::Sunday => 6,
        }
    }

    /// The day for a number (0 for Monday through 6 for Sunday).
    pub fn from_number(n: u8) -> Option<Weekday> {
        Weekday::ALL.get(usize::from(n)).copied()
    }
}

/// One tool call to decide.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    /// The acting agent (for a subagent, the subagent itself).
    pub agent: AgentId,
    /// The MCP server's registered name.
    pub server: String,
    /// The tool's name as the server spells it.
    pub tool: String,
    /// The call's JSON arguments (`Null` when there are none).
    pub arguments: serde_json::Value,
    /// The hour, 0-23, from the server clock in the organization's time zone. Never from the agent.
    pub hour: u8,
    /// The day of the week, from the same clock.
    pub weekday: Weekday,
}

/// An allow or a deny, with the policies that decided it and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Whether the action may go ahead.
    pub allow: bool,
    /// The ids of the policies behind the decision, sorted: for an allow the grants or built-in permit
    /// that allowed it; for a deny the guardrails that forbade it or failed to evaluate. Empty for a
    /// deny by default (nothing allowed it) or a deny before policy (unknown agent, inactive agent).
    pub policy_ids: Vec<String>,
    /// A sentence for people, quoting each forbidding guardrail's `@message`.
    pub reason: String,
}

impl Decision {
    pub(crate) fn deny(reason: impl Into<String>) -> Decision {
        Decision {
            allow: false,
            policy_ids: Vec::new(),
            reason: reason.into(),
        }
    }
}

/// Something an agent holds that a guardrail now forbids.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Held {
    /// A granted (or delegated) scope; checked as `grant_scope`.
    Scope(Name),
    /// A tag; checked as `set_tag`.
    Tag(Name),
}

impl fmt::Display for Held {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Held::Scope(name) => write!(f, "scope `{name}`"),
            Held::Tag(name) => write!(f, "tag `{name}`"),
        }
    }
}

/// An existing grant or tag that a guardrail would refuse if it were given now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The agent holding it.
    pub agent: AgentId,
    /// What it holds.
    pub held: Held,
    /// Why the guardrail refuses it (its `@message`, or its evaluation error).
    pub reason: String,
}
