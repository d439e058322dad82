//! Whether an agent may still act: the question every token verification asks, and the in-memory set
//! that answers it from the revocation feed.
//!
//! The feed (`GET /v1/revocations?since=SEQ`) is an ordered log of [`RevocationEntry`]s. A gateway
//! applies them in order to a [`RevocationSet`]; replaying an entry it has already seen changes nothing,
//! so a reconnecting gateway may safely fetch from an older position. Descendants are not listed: the
//! verifier derives every ancestor from the acting agent's id and asks about each, so suspending or
//! revoking one agent stops everything delegated from it.
//!
//! This module keeps no history and does no IO.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use warden_core::AgentStatus;

#[cfg(test)]
mod tests;

/// What the revocation state says about one agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentState {
    /// The agent may act, except with tokens issued at or before `not_before` (unix seconds).
    Active {
        /// Tokens whose `iat` is at or before this cutoff are refused.
        not_before: Option<i64>,
    },
    /// The agent and all its descendants are stopped until resumed.
    Suspended,
    /// The agent and all its descendants are stopped for good.
    Revoked,
}

/// Answers whether an agent may act; consulted for every agent in a token's delegation chain.
pub trait RevocationCheck {
    /// The state of `agent_id`; an agent the check knows nothing about is `Active` with no cutoff.
    fn status(&self, agent_id: &str) -> AgentState;
}

/// A check that refuses nobody, for callers that have no revocation state (tests, offline tools).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoRevocations;

impl RevocationCheck for NoRevocations {
    fn status(&self, _agent_id: &str) -> AgentState {
        AgentState::Active { not_before: None }
    }
}

/// One entry of the revocation feed: from position `seq` on, `agent` is in `state`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevocationEntry {
    /// The entry's position in the feed; strictly increasing.
    pub seq: u64,
    /// The agent id the entry is about.
    pub agent: String,
    /// The agent's new state.
    pub state: AgentStatus,
    /// For an `active` agent: tokens issued at or before this time (unix seconds) are refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<i64>,
    /// When the change was made (unix seconds).
    pub at: i64,
}

/// The revocation state a verifier consults, built by applying the feed in order.
///
/// Not internally locked: share it behind an `RwLock` and verify under a read guard.
#[derive(Debug, Clone, Default)]
pub struct RevocationSet {
    states: HashMap<String, AgentState>,
    seq: u64,
}

impl RevocationSet {
    /// Applies `entry` if it is newer than everything applied so far; returns whether it was applied.
    pub fn apply(&mut self, entry: RevocationEntry) -> bool {
        if entry.seq <= self.seq {
            return false;
        }
        self.seq = entry.seq;
        let state = match entry.state {
            AgentStatus::Active => AgentState::Active {
                not_before: entry.not_before,
            },
            AgentStatus::Suspended => AgentState::Suspended,
            AgentStatus::Revoked => AgentState::Revoked,
        };
        if state == (AgentState::Active { not_before: None }) {
            // An unconditionally active agent is the default; keep the map to the agents that matter.
            self.states.remove(&entry.agent);
        } else {
            self.states.insert(entry.agent, state);
        }
        true
    }

    /// The position of the last applied entry (0 before any); ask the feed for entries after it.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// How many agents have a state other than unconditionally active.
    pub fn len(&self) -> usize {
        self.states.len()
    }

    /// Whether no agent has a state other than unconditionally active.
    pub fn is_empty(&self) -> bool {
        self.states.is_empty()
    }
}

impl RevocationCheck for RevocationSet {
    fn status(&self, agent_id: &str) -> AgentState {
        self.states
            .get(agent_id)
            .copied()
            .unwrap_or(AgentState::Active { not_before: None })
    }
}
