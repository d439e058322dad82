//! The upstream pool: one [`Upstream`] per registered server, connected on first use, replaced when
//! the server's registration changes, and closed when it goes away.
//!
//! The pool's map is locked only to look up or swap an entry, never across an await. Connecting
//! waits on a per-server cell, so a slow or dead upstream holds up only the calls meant for it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::OnceCell;
use warden_core::Name;
use warden_mcp::{Tool, Upstream, UpstreamConfig, UpstreamError};

use crate::control::UpstreamSpec;
use crate::session::lock;

/// One server's connection and its last tool list.
struct Slot {
    spec: UpstreamSpec,
    upstream: OnceCell<Upstream>,
    tools: Mutex<Option<(Instant, Arc<Vec<Tool>>)>>,
}

impl Slot {
    fn new(spec: UpstreamSpec) -> Slot {
        Slot {
            spec,
            upstream: OnceCell::new(),
            tools: Mutex::new(None),
        }
    }
}

pub(crate) struct Pool {
    config: UpstreamConfig,
    slots: Mutex<HashMap<Name, Arc<Slot>>>,
}

impl Pool {
    pub(crate) fn new(config: UpstreamConfig) -> Pool {
        Pool {
            config,
            slots: Mutex::new(HashMap::new()),
        }
    }

    /// The slot for `spec`, replacing (and closing) one made for an earlier registration.
    fn slot(&self, spec: &UpstreamSpec) -> Arc<Slot> {
        let mut slots = lock(&self.slots);
        if let Some(slot) = slots.get(&spec.name)
            && slot.spec == *spec
        {
            return Arc::clone(slot);
        }
        let slot = Arc::new(Slot::new(spec.clone()));
        if let Some(old) = slots.insert(spec.name.clone(), Arc::clone(&slot)) {
            tracing::info!(upstream = %spec.name, "upstream registration changed; reconnecting");
            close_in_background(&old);
        }
        slot
    }

    /// Closes the upstreams of servers that are no longer registered.
    pub(crate) fn retain(&self, specs: &[UpstreamSpec]) {
        let mut slots = lock(&self.slots);
        slots.retain(|name, slot| {
            let keep = specs.iter().any(|spec| spec.name == *name);
            if !keep {
                tracing::info!(upstream = %name, "upstream no longer registered; closing");
                close_in_background(slot);
            }
            keep
        });
    }

    /// The connection to `spec`'s server, connecting it if this is the first use.
    pub(crate) async fn upstream(&self, spec: &UpstreamSpec) -> Result<Upstream, UpstreamError> {
        let slot = self.slot(spec);
        let config = self.config.clone();
        let upstream = slot
            .upstream
            .get_or_try_init(|| async {
                tracing::info!(upstream = %spec.name, "connecting upstream");
                Upstream::connect(&spec.name, &spec.transport, spec.credentials.clone(), config).await
            })
            .await?;
        Ok(upstream.clone())
    }

    /// The server's tools: asked afresh when `max_age` is zero, else the last list if it is younger.
    pub(crate) async fn tools(&self, spec: &UpstreamSpec, max_age: Duration) -> Result<Arc<Vec<Tool>>, UpstreamError> {
        let slot = self.slot(spec);
        if let Some((at, tools)) = lock(&slot.tools).as_ref()
            && at.elapsed() < max_age
        {
            return Ok(Arc::clone(tools));
        }
        let upstream = self.upstream(spec).await?;
        let tools = Arc::new(upstream.list_tools().await?);
        *lock(&slot.tools) = Some((Instant::now(), Arc::clone(&tools)));
        Ok(tools)
    }

    /// The server's connection, if it has been made.
    pub(crate) fn connected(&self, name: &Name) -> Option<Upstream> {
        let slot = lock(&self.slots).get(name).cloned()?;
        slot.upstream.get().cloned()
    }

    /// Closes every upstream and waits for them to end.
    pub(crate) async fn close_all(&self) {
        let slots: Vec<Arc<Slot>> = lock(&self.slots).drain().map(|(_, slot)| slot).collect();
        for slot in slots {
            if let Some(upstream) = slot.upstream.get()
                && let Err(err) = upstream.close().await
            {
                tracing::warn!(upstream = %slot.spec.name, error = %err, "closing upstream failed");
            }
        }
    }
}

fn close_in_background(slot: &Slot) {
    // Outside a runtime there is nothing to close with; dropping the last handle ends the connection.
    if let (Some(upstream), Ok(runtime)) = (slot.upstream.get().cloned(), tokio::runtime::Handle::try_current()) {
        runtime.spawn(async move {
            if let Err(err) = upstream.close().await {
                tracing::warn!(upstream = %upstream.name(), error = %err, "closing upstream failed");
            }
        });
    }
}
