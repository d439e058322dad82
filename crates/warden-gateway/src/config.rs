//! The gateway's settings: where it is reachable, which authorization server issues its tokens, and
//! its limits.

use std::time::Duration;

use warden_mcp::UpstreamConfig;

/// Settings for a [`crate::Gateway`].
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// The authorization server that issues agent tokens (Warden's own URL), published as
    /// `authorization_servers` in the protected resource metadata.
    pub issuer_url: String,
    /// The gateway's public base URL (`https://host[:port]`, no trailing slash). When `None`, it is
    /// taken from each request's `Host` header as `http://<host>`.
    pub public_url: Option<String>,
    /// How upstream connections are made: timeouts (including the per-call timeout), restarts,
    /// message size, inherited environment.
    pub upstream: UpstreamConfig,
    /// The largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// A session unused this long is forgotten.
    pub session_idle_timeout: Duration,
    /// The most sessions one agent may hold at once; opening another ends its least recently used.
    pub max_sessions_per_agent: usize,
    /// How long an upstream's tool list is reused to resolve `tools/call` (a `tools/list` always
    /// asks the upstream afresh).
    pub tools_cache_ttl: Duration,
}

impl GatewayConfig {
    /// Settings with the defaults and this issuer.
    pub fn new(issuer_url: impl Into<String>) -> GatewayConfig {
        GatewayConfig {
            issuer_url: issuer_url.into(),
            public_url: None,
            upstream: UpstreamConfig::default(),
            max_body_bytes: 4 * 1024 * 1024,
            session_idle_timeout: Duration::from_secs(60 * 60),
            max_sessions_per_agent: 64,
            tools_cache_ttl: Duration::from_secs(30),
        }
    }
}
