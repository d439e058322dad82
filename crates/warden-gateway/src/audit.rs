//! What the gateway records: [`GatewayEvent`]s, handed to a durable [`AuditSink`].
//!
//! The gateway forwards a call only after the sink has said its decision event is durable, so the
//! audit trail can never miss a call that happened. Events carry identities, names, decisions and
//! outcomes; they must never carry a bearer token, an upstream credential or a call's arguments.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use warden_core::AgentId;

/// A boxed future returned by [`AuditSink::record`].
pub type RecordFuture<'a> = Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>;

/// Where the gateway's events go.
pub trait AuditSink: Send + Sync + 'static {
    /// Records `event`, resolving only once it is durable. `Err` holds why it could not be recorded;
    /// for a decision event the gateway then refuses to forward the call.
    fn record(&self, event: GatewayEvent) -> RecordFuture<'_>;
}

/// Whether a call was allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// The call was forwarded.
    Allow,
    /// The call was refused.
    Deny,
}

/// How a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CallStatus {
    /// The upstream answered with a result that is not an error.
    Ok,
    /// The upstream answered with a tool error (`isError: true`), or failed.
    Error,
    /// Warden denied the call; it was not forwarded.
    Denied,
    /// The upstream did not answer in time.
    Timeout,
}

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CloseReason {
    /// The client ended it with `DELETE`.
    Deleted,
    /// The agent may no longer act (suspended, revoked, or its token no longer accepted).
    Invalidated,
    /// The control plane cut the agent's sessions.
    Cut,
    /// It was idle too long.
    Expired,
    /// The agent opened more sessions than allowed; its least recently used one was ended.
    Evicted,
    /// The gateway shut down.
    Shutdown,
}

/// One thing the gateway records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum GatewayEvent {
    /// A tool call was decided. Recorded durably before an allowed call is forwarded.
    Decision {
        /// When (unix milliseconds).
        at_ms: u64,
        /// The acting agent.
        agent: AgentId,
        /// The delegation chain, the root agent first.
        chain: Vec<String>,
        /// The token's id.
        token_id: String,
        /// The MCP session; `None` for a protocol revision without sessions (2026-07-28).
        session: Option<String>,
        /// The upstream's registered name.
        server: String,
        /// The tool's name as the upstream spells it.
        tool: String,
        /// Allow or deny.
        decision: Verdict,
        /// The policies behind the decision.
        policy_ids: Vec<String>,
        /// Why, for people.
        reason: String,
        /// Ties this event to the call's outcome.
        call_id: String,
    },
    /// A decided call ended.
    Outcome {
        /// When (unix milliseconds).
        at_ms: u64,
        /// The acting agent.
        agent: AgentId,
        /// The delegation chain, the root agent first.
        chain: Vec<String>,
        /// The MCP session; `None` for a protocol revision without sessions (2026-07-28).
        session: Option<String>,
        /// The upstream's registered name.
        server: String,
        /// The tool's name as the upstream spells it.
        tool: String,
        /// Ties this event to the call's decision.
        call_id: String,
        /// How it ended.
        status: CallStatus,
        /// What went wrong, for an error or a timeout.
        error: Option<String>,
        /// From the decision to the end (milliseconds).
        duration_ms: u64,
    },
    /// An agent opened an MCP session.
    SessionOpened {
        /// When (unix milliseconds).
        at_ms: u64,
        /// The acting agent.
        agent: AgentId,
        /// The delegation chain, the root agent first.
        chain: Vec<String>,
        /// The token's id.
        token_id: String,
        /// The MCP session.
        session: String,
        /// The endpoint: `/mcp` or `/mcp/<server>`.
        endpoint: String,
        /// The negotiated protocol revision.
        protocol_version: String,
    },
    /// An MCP session ended.
    SessionClosed {
        /// When (unix milliseconds).
        at_ms: u64,
        /// The acting agent.
        agent: AgentId,
        /// The MCP session.
        session: String,
        /// Why it ended.
        reason: CloseReason,
    },
}

/// Now, in unix milliseconds.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Counts events being written off the answer's path, so that shutdown (and a reader who must see
/// them) can wait until all are recorded.
#[derive(Debug, Clone, Default)]
pub(crate) struct Pending {
    inner: Arc<PendingInner>,
}

#[derive(Debug, Default)]
struct PendingInner {
    count: AtomicUsize,
    idle: Notify,
}

/// One event being written; dropping it marks the event as settled.
#[derive(Debug)]
pub(crate) struct PendingGuard {
    inner: Arc<PendingInner>,
}

impl Pending {
    /// Marks one more event as being written until the guard is dropped.
    pub(crate) fn enter(&self) -> PendingGuard {
        self.inner.count.fetch_add(1, Ordering::SeqCst);
        PendingGuard {
            inner: Arc::clone(&self.inner),
        }
    }

    /// Resolves once no event is being written.
    pub(crate) async fn settled(&self) {
        loop {
            let idle = self.inner.idle.notified();
            tokio::pin!(idle);
            // Registered before the count is read, so a drop to zero in between still wakes us.
            idle.as_mut().enable();
            if self.inner.count.load(Ordering::SeqCst) == 0 {
                return;
            }
            idle.await;
        }
    }
}

impl Drop for PendingGuard {
    fn drop(&mut self) {
        if self.inner.count.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.inner.idle.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::Pending;

    #[tokio::test]
    async fn settled_waits_for_every_guard() {
        let pending = Pending::default();
        pending.settled().await;
        let (a, b) = (pending.enter(), pending.enter());
        let waiter = tokio::spawn({
            let pending = pending.clone();
            async move { pending.settled().await }
        });
        drop(a);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "settled while an event was still being written");
        drop(b);
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("settled did not wake")
            .unwrap();
    }
}
