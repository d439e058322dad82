//! The table of open MCP sessions: each tied to the agent that opened it and to one endpoint.
//!
//! Session ids are 256 random bits, so they cannot be guessed; even so a session is only ever honoured
//! for the agent that opened it, on the endpoint where it was opened. The table is locked only for
//! short, synchronous sections, never across an await.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use warden_core::{AgentId, Name};

use crate::audit::CloseReason;
use crate::control::AgentIdentity;

/// Where a session was opened: the aggregated endpoint or one server's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Endpoint {
    /// `/mcp`: every server the agent may use, tools named `<server>__<tool>`.
    Aggregate,
    /// `/mcp/<server>`: one server, tools under their own names.
    Server(Name),
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Aggregate => f.write_str("/mcp"),
            Endpoint::Server(name) => write!(f, "/mcp/{name}"),
        }
    }
}

/// One open session.
#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) id: String,
    /// Who opened it; later requests must come from the same acting agent and chain.
    pub(crate) identity: AgentIdentity,
    pub(crate) endpoint: Endpoint,
    pub(crate) protocol_version: String,
    last_used: Mutex<Instant>,
}

impl Session {
    pub(crate) fn new(identity: AgentIdentity, endpoint: Endpoint, protocol_version: String) -> Option<Session> {
        Some(Session {
            id: random_hex(32)?,
            identity,
            endpoint,
            protocol_version,
            last_used: Mutex::new(Instant::now()),
        })
    }

    /// Whether `identity` may use this session: the same acting agent with the same delegation chain.
    /// A refreshed token of the same agent may go on using it; each request is still authenticated
    /// and decided with the token it carries.
    pub(crate) fn belongs_to(&self, identity: &AgentIdentity) -> bool {
        self.identity.agent == identity.agent && self.identity.chain == identity.chain
    }

    fn idle_for(&self, now: Instant) -> Duration {
        now.saturating_duration_since(*lock(&self.last_used))
    }

    fn touch(&self) {
        *lock(&self.last_used) = Instant::now();
    }
}

/// Every open session, by id.
#[derive(Debug, Default)]
pub(crate) struct Sessions {
    map: Mutex<HashMap<String, Arc<Session>>>,
}

impl Sessions {
    /// Adds `session`; returns the sessions this ends: idle ones, and the agent's least recently used
    /// ones beyond `max_per_agent`.
    pub(crate) fn insert(
        &self,
        session: Arc<Session>,
        idle_timeout: Duration,
        max_per_agent: usize,
    ) -> Vec<(Arc<Session>, CloseReason)> {
        let now = Instant::now();
        let mut map = lock(&self.map);
        let mut ended = Vec::new();
        let expired: Vec<String> = map
            .values()
            .filter(|s| s.idle_for(now) > idle_timeout)
            .map(|s| s.id.clone())
            .collect();
        for id in expired {
            ended.extend(map.remove(&id).map(|s| (s, CloseReason::Expired)));
        }
        let mut own: Vec<(Duration, String)> = map
            .values()
            .filter(|s| s.identity.agent == session.identity.agent)
            .map(|s| (s.idle_for(now), s.id.clone()))
            .collect();
        if own.len() >= max_per_agent.max(1) {
            // Most idle first.
            own.sort_by_key(|s| std::cmp::Reverse(s.0));
            let excess = own.len() + 1 - max_per_agent.max(1);
            for (_, id) in own.into_iter().take(excess) {
                ended.extend(map.remove(&id).map(|s| (s, CloseReason::Evicted)));
            }
        }
        map.insert(session.id.clone(), session);
        ended
    }

    /// The session `id`, marked as used; `None` if there is none, or it was idle too long (it is
    /// then removed and returned as the second value).
    pub(crate) fn get(&self, id: &str, idle_timeout: Duration) -> (Option<Arc<Session>>, Option<Arc<Session>>) {
        let mut map = lock(&self.map);
        let Some(session) = map.get(id).cloned() else {
            return (None, None);
        };
        if session.idle_for(Instant::now()) > idle_timeout {
            map.remove(id);
            return (None, Some(session));
        }
        session.touch();
        (Some(session), None)
    }

    /// The session `id` without marking it used.
    pub(crate) fn peek(&self, id: &str) -> Option<Arc<Session>> {
        lock(&self.map).get(id).cloned()
    }

    pub(crate) fn remove(&self, id: &str) -> Option<Arc<Session>> {
        lock(&self.map).remove(id)
    }

    /// Removes every session of `agent`, of its descendants, and of anyone it delegated to.
    pub(crate) fn remove_agent(&self, agent: &AgentId) -> Vec<Arc<Session>> {
        let prefix = format!("{agent}/");
        let mut map = lock(&self.map);
        let ids: Vec<String> = map
            .values()
            .filter(|s| {
                let acting = s.identity.agent.as_str();
                acting == agent.as_str()
                    || acting.starts_with(&prefix)
                    || s.identity.chain.iter().any(|member| member == agent.as_str())
            })
            .map(|s| s.id.clone())
            .collect();
        ids.iter().filter_map(|id| map.remove(id)).collect()
    }

    pub(crate) fn drain(&self) -> Vec<Arc<Session>> {
        lock(&self.map).drain().map(|(_, s)| s).collect()
    }

    pub(crate) fn len(&self) -> usize {
        lock(&self.map).len()
    }
}

/// `bytes` random bytes as lowercase hex, from the operating system's generator; `None` if it fails.
pub(crate) fn random_hex(bytes: usize) -> Option<String> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).ok()?;
    let mut out = String::with_capacity(bytes * 2);
    for b in buf {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    Some(out)
}

/// Locks a mutex only ever held for short, non-panicking sections, so poisoning carries no meaning.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use warden_core::{AgentId, Name};

    use super::{Endpoint, Session, Sessions, random_hex};
    use crate::audit::CloseReason;
    use crate::control::AgentIdentity;

    #[test]
    fn random_hex_is_lowercase_hex_of_fresh_bytes() {
        let a = random_hex(16).unwrap();
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)), "{a}");
        assert_ne!(a, random_hex(16).unwrap());
    }

    fn identity(agent: &str) -> AgentIdentity {
        let agent = AgentId::parse(agent).unwrap();
        let mut chain: Vec<String> = Vec::new();
        let mut next = Some(agent.clone());
        while let Some(id) = next {
            chain.insert(0, id.to_string());
            next = id.parent();
        }
        AgentIdentity {
            agent,
            chain,
            team: "t".to_owned(),
            scopes: Vec::new(),
            token_id: "j".to_owned(),
            bearer: "b".to_owned(),
        }
    }

    fn open(sessions: &Sessions, agent: &str, max: usize) -> (Arc<Session>, Vec<(Arc<Session>, CloseReason)>) {
        let session = Arc::new(Session::new(identity(agent), Endpoint::Aggregate, "2025-11-25".to_owned()).unwrap());
        let ended = sessions.insert(Arc::clone(&session), Duration::from_secs(60), max);
        (session, ended)
    }

    const A: &str = "spiffe://d/team/t/agent/a";
    const SUB: &str = "spiffe://d/team/t/agent/a/sub";
    const B: &str = "spiffe://d/team/t/agent/b";
    const AB: &str = "spiffe://d/team/t/agent/ab";

    #[test]
    fn ids_are_random_and_bound_to_the_agent() {
        let sessions = Sessions::default();
        let (one, _) = open(&sessions, A, 8);
        let (two, _) = open(&sessions, A, 8);
        assert_ne!(one.id, two.id);
        assert!(one.belongs_to(&identity(A)));
        assert!(!one.belongs_to(&identity(SUB)) && !one.belongs_to(&identity(B)));
        assert_eq!(Endpoint::Server(Name::parse("x").unwrap()).to_string(), "/mcp/x");
    }

    #[test]
    fn the_least_recently_used_session_beyond_the_limit_is_evicted() {
        let sessions = Sessions::default();
        let (first, _) = open(&sessions, A, 2);
        std::thread::sleep(Duration::from_millis(5));
        let (second, _) = open(&sessions, A, 2);
        std::thread::sleep(Duration::from_millis(5));
        // Using the first makes the second the least recently used.
        assert!(sessions.get(&first.id, Duration::from_secs(60)).0.is_some());
        let (_, other) = open(&sessions, B, 2);
        assert!(other.is_empty());
        let (_, ended) = open(&sessions, A, 2);
        let ended: Vec<(String, CloseReason)> = ended.into_iter().map(|(s, r)| (s.id.clone(), r)).collect();
        assert_eq!(ended, [(second.id.clone(), CloseReason::Evicted)]);
        assert_eq!(sessions.len(), 3);
    }

    #[test]
    fn idle_sessions_expire() {
        let sessions = Sessions::default();
        let (idle, _) = open(&sessions, A, 8);
        std::thread::sleep(Duration::from_millis(20));
        let (found, expired) = sessions.get(&idle.id, Duration::from_millis(10));
        assert!(found.is_none());
        assert_eq!(expired.map(|s| s.id.clone()), Some(idle.id.clone()));
        assert_eq!(sessions.len(), 0);
    }

    #[test]
    fn cutting_an_agent_takes_its_descendants_but_not_lookalikes() {
        let sessions = Sessions::default();
        for agent in [A, SUB, B, AB] {
            open(&sessions, agent, 8);
        }
        let mut cut: Vec<String> = sessions
            .remove_agent(&AgentId::parse(A).unwrap())
            .iter()
            .map(|s| s.identity.agent.to_string())
            .collect();
        cut.sort();
        assert_eq!(cut, [A, SUB]);
        assert_eq!(sessions.len(), 2);
    }
}
