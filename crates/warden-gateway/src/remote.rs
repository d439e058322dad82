//! The standalone gateway's control plane (`warden gateway --control-plane URL`): a
//! [`RemoteControlPlane`] decides every call locally from state pulled from the control plane, and a
//! [`SpoolAudit`] makes every event durable locally before shipping it back.
//!
//! What is pulled: the policy snapshot (`GET /v1/gateway/snapshot`: agents, scopes, MCP servers with
//! their upstream credentials, guardrails, token parameters) and the JWKS, every `refresh`, each new
//! pair swapped in atomically; and the revocation feed (`GET /v1/revocations`), long-polled so a
//! suspension or revocation reaches the gateway within moments. Decisions are the ones `warden serve`
//! makes in process: the same engine built from the same registry, the same [`narrow_to_token`], and
//! time facts at the organization's UTC offset.
//!
//! **Invariant:** the gateway decides from its snapshot only while it is fresh. Every successful
//! exchange with the control plane (snapshot or feed) marks it fresh; once `max_staleness` has passed
//! since the last one, authentication, decisions and session checks all fail closed with a message
//! that names the control plane and the limit, until the control plane is reached again.

mod client;
mod spool;

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use serde_json::Value;
use time::{OffsetDateTime, UtcOffset};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use warden_core::{Agent, McpServer, Scope};
use warden_identity::revocation::{RevocationEntry, RevocationSet};
use warden_identity::token::{Verifier, VerifierConfig};
use warden_mcp::UpstreamCredentials;
use warden_policy::{Decision, Fleet, PolicyEngine, ToolCall, Weekday, parse_guardrail};

pub use spool::{DEFAULT_MAX_PENDING_BYTES, SpoolAudit, SpoolError, SpoolLimits};

use crate::control::{AgentIdentity, AuthError, ControlPlane, UpstreamSpec};
use crate::session::lock;
use client::{ClientError, ControlClient};

/// How long a pull of the snapshot or the JWKS may take.
const PULL_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest long-poll on the revocation feed (the control plane allows 30 s).
const MAX_FEED_WAIT_SECS: u64 = 25;
/// The longest wait before retrying the feed after a failure.
const MAX_FEED_RETRY: Duration = Duration::from_secs(2);

/// An allow stands only if a grant of a scope the token carries allowed it: a token may carry fewer
/// scopes than its agent holds. Shared by `warden serve` and the standalone gateway, so both decide
/// alike.
pub fn narrow_to_token(decision: Decision, token_scopes: &[&str]) -> Decision {
    if !decision.allow {
        return decision;
    }
    let by_token: Vec<String> = decision
        .policy_ids
        .iter()
        .filter(|id| {
            id.strip_prefix("grant/")
                .and_then(|rest| rest.split('/').next())
                .is_some_and(|scope| token_scopes.contains(&scope))
        })
        .cloned()
        .collect();
    if by_token.is_empty() {
        return Decision {
            allow: false,
            policy_ids: Vec::new(),
            reason: if token_scopes.is_empty() {
                "the token carries no scopes, so it covers no tool (the agent's grants cover this one)".to_owned()
            } else {
                format!(
                    "the token carries scopes `{}`, none of which covers this tool (the agent's other grants do)",
                    token_scopes.join(" ")
                )
            },
        };
    }
    Decision {
        allow: true,
        policy_ids: by_token,
        reason: decision.reason,
    }
}

/// How a standalone gateway reaches its control plane.
#[derive(Clone)]
pub struct RemoteConfig {
    /// The control plane's base URL, `http://host[:port]`.
    pub control_plane: String,
    /// An access token of role `gateway` (or `platform-admin`).
    pub token: String,
    /// How long the gateway goes on deciding from its snapshot without reaching the control plane.
    pub max_staleness: Duration,
    /// How often the snapshot and the JWKS are pulled.
    pub refresh: Duration,
}

impl RemoteConfig {
    /// The defaults: 30 s of staleness at most, a pull every 10 s.
    pub fn new(control_plane: impl Into<String>, token: impl Into<String>) -> RemoteConfig {
        RemoteConfig {
            control_plane: control_plane.into(),
            token: token.into(),
            max_staleness: Duration::from_secs(30),
            refresh: Duration::from_secs(10),
        }
    }
}

impl fmt::Debug for RemoteConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteConfig")
            .field("control_plane", &self.control_plane)
            .field("max_staleness", &self.max_staleness)
            .field("refresh", &self.refresh)
            .finish_non_exhaustive()
    }
}

/// Why a standalone gateway cannot start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RemoteError {
    /// The settings are unusable.
    #[error("{0}")]
    Config(String),
    /// The first pull from the control plane failed.
    #[error("cannot start from the control plane at {url}: {reason}")]
    Start {
        /// The control plane.
        url: String,
        /// Why.
        reason: String,
    },
    /// The audit spool cannot be used.
    #[error(transparent)]
    Spool(#[from] SpoolError),
}

/// The control plane as a standalone gateway sees it: a local snapshot kept fresh by background
/// tasks (which end when this is dropped).
pub struct RemoteControlPlane {
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

struct Shared {
    client: Arc<ControlClient>,
    view: RwLock<Arc<View>>,
    revocations: RwLock<RevocationSet>,
    /// When the control plane last answered a pull successfully.
    last_sync: Mutex<Instant>,
    max_staleness: Duration,
    refresh: Duration,
    /// Wakes the snapshot loop early (a revocation feed entry changed an agent's state).
    pull_now: Notify,
    /// Whether going stale has been logged since the last successful pull.
    stale_logged: AtomicBool,
}

/// Everything decisions are made from, built from one snapshot and one JWKS.
struct View {
    engine: PolicyEngine,
    verifier: Verifier,
    servers: Vec<UpstreamSpec>,
    offset: UtcOffset,
    /// The documents it was built from, so an unchanged pull rebuilds nothing.
    snapshot: Value,
    jwks: Value,
}

/// `GET /v1/gateway/snapshot`, as far as the gateway needs it.
#[derive(Deserialize)]
struct Snapshot {
    issuer: String,
    audience: String,
    time_zone: String,
    agents: Vec<Agent>,
    scopes: Vec<Scope>,
    servers: Vec<SnapshotServer>,
    guardrails: Vec<SnapshotGuardrail>,
}

#[derive(Deserialize)]
struct SnapshotServer {
    server: McpServer,
    #[serde(default)]
    credentials: Value,
}

#[derive(Deserialize)]
struct SnapshotGuardrail {
    id: String,
    text: String,
}

/// A page of `GET /v1/revocations`.
#[derive(Deserialize)]
struct Feed {
    entries: Vec<RevocationEntry>,
}

impl RemoteControlPlane {
    /// Pulls the first snapshot, JWKS and the whole revocation feed (failing if any pull fails), then
    /// starts the background tasks that keep them fresh. Must be called within a tokio runtime.
    pub async fn connect(config: RemoteConfig) -> Result<RemoteControlPlane, RemoteError> {
        if config.max_staleness.is_zero() || config.refresh.is_zero() {
            return Err(RemoteError::Config(
                "--max-staleness and --refresh must be at least 1 second".to_owned(),
            ));
        }
        if config.refresh >= config.max_staleness {
            return Err(RemoteError::Config(format!(
                "--refresh ({}s) must be shorter than --max-staleness ({}s), or the gateway would go stale between pulls",
                config.refresh.as_secs(),
                config.max_staleness.as_secs()
            )));
        }
        let client = Arc::new(ControlClient::new(&config.control_plane, &config.token).map_err(RemoteError::Config)?);
        let start_error = |reason: String| RemoteError::Start {
            url: client.base().to_owned(),
            reason,
        };
        let view = pull_view(&client, None)
            .await
            .map_err(start_error)?
            .ok_or_else(|| start_error("no snapshot".to_owned()))?;
        let mut revocations = RevocationSet::default();
        loop {
            let entries = pull_feed(&client, revocations.seq(), 0).await.map_err(start_error)?;
            if entries.is_empty() {
                break;
            }
            for entry in entries {
                revocations.apply(entry);
            }
        }
        let shared = Arc::new(Shared {
            client,
            view: RwLock::new(Arc::new(view)),
            revocations: RwLock::new(revocations),
            last_sync: Mutex::new(Instant::now()),
            max_staleness: config.max_staleness,
            refresh: config.refresh,
            pull_now: Notify::new(),
            stale_logged: AtomicBool::new(false),
        });
        let tasks = vec![
            tokio::spawn(Arc::clone(&shared).follow_feed()),
            tokio::spawn(Arc::clone(&shared).pull_snapshots()),
        ];
        Ok(RemoteControlPlane { shared, tasks })
    }

    /// The control plane's base URL.
    pub fn control_plane_url(&self) -> &str {
        self.shared.client.base()
    }

    /// Opens the audit spool at `path` (created with mode 0600 if missing), bounded by `limits`, and
    /// starts shipping it to this control plane, beginning with what a previous run left. Must be
    /// called within a tokio runtime.
    pub fn spool(&self, path: &Path, limits: SpoolLimits) -> Result<SpoolAudit, SpoolError> {
        SpoolAudit::start(path, limits, Arc::clone(&self.shared.client))
    }
}

impl Drop for RemoteControlPlane {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl ControlPlane for RemoteControlPlane {
    fn authenticate(&self, bearer: &str) -> Result<AgentIdentity, AuthError> {
        let unavailable = |reason: String| AuthError::Unavailable {
            reason,
            retry_after: self.shared.refresh,
        };
        self.shared.fresh().map_err(unavailable)?;
        let view = self.shared.view();
        let set = self
            .shared
            .revocations
            .read()
            .map_err(|_| unavailable("the gateway's revocation state is unavailable".to_owned()))?;
        let verified = view
            .verifier
            .verify(bearer, now_unix(), &*set)
            .map_err(|e| AuthError::Invalid(e.to_string()))?;
        AgentIdentity::from_claims(verified.claims(), bearer)
    }

    fn decide(&self, identity: &AgentIdentity, call: &ToolCall) -> Decision {
        if let Err(reason) = self.shared.fresh() {
            return Decision {
                allow: false,
                policy_ids: Vec::new(),
                reason,
            };
        }
        let decision = self.shared.view().engine.authorize_call(call);
        let scopes: Vec<&str> = identity.scopes.iter().map(String::as_str).collect();
        narrow_to_token(decision, &scopes)
    }

    fn servers(&self) -> Vec<UpstreamSpec> {
        self.shared.view().servers.clone()
    }

    fn still_valid(&self, identity: &AgentIdentity) -> Result<(), AuthError> {
        self.authenticate(&identity.bearer).map(|_| ())
    }

    fn now(&self) -> (u8, Weekday) {
        now_in(self.shared.view().offset)
    }
}

impl Shared {
    fn view(&self) -> Arc<View> {
        self.view
            .read()
            .map_or_else(|poisoned| Arc::clone(&poisoned.into_inner()), |v| Arc::clone(&v))
    }

    /// `Ok` while the snapshot may still be decided from.
    fn fresh(&self) -> Result<(), String> {
        let since = lock(&self.last_sync).elapsed();
        if since <= self.max_staleness {
            return Ok(());
        }
        Err(self.stale_message(since))
    }

    fn stale_message(&self, since: Duration) -> String {
        // Whole seconds, rounded up: past the limit always reads as more than it.
        let secs = since.as_secs() + u64::from(since.subsec_nanos() > 0);
        format!(
            "warden gateway has not reached the control plane at {} for {secs}s (limit {}s); refusing to decide",
            self.client.base(),
            self.max_staleness.as_secs()
        )
    }

    fn revocation_seq(&self) -> u64 {
        self.revocations
            .read()
            .map_or_else(|p| p.into_inner().seq(), |set| set.seq())
    }

    /// Records a successful exchange with the control plane.
    fn reached(&self) {
        *lock(&self.last_sync) = Instant::now();
        if self.stale_logged.swap(false, Ordering::Relaxed) {
            tracing::warn!(control_plane = %self.client.base(), "reached the control plane again; deciding again");
        }
    }

    /// Logs, once per outage, that the gateway went stale.
    fn log_if_stale(&self) {
        if let Err(message) = self.fresh()
            && !self.stale_logged.swap(true, Ordering::Relaxed)
        {
            tracing::error!("{message}");
        }
    }

    /// How long one long-poll of the feed waits: well within the staleness limit, so the feed alone
    /// keeps a healthy gateway fresh.
    fn feed_wait_secs(&self) -> u64 {
        (self.max_staleness.as_secs() / 2).clamp(1, MAX_FEED_WAIT_SECS)
    }

    /// Follows the revocation feed for ever.
    async fn follow_feed(self: Arc<Self>) {
        let wait = self.feed_wait_secs();
        let mut retry = Duration::from_millis(250);
        let mut failing = false;
        loop {
            let since = self.revocation_seq();
            match pull_feed(&self.client, since, wait).await {
                Ok(entries) => {
                    // Entries at or before the set's position are ignored, so applying is idempotent.
                    let applied = {
                        let mut set = self.revocations.write().unwrap_or_else(PoisonError::into_inner);
                        entries.into_iter().filter(|entry| set.apply(entry.clone())).count()
                    };
                    if applied > 0 {
                        tracing::info!(entries = applied, since, "applied revocation feed entries");
                        // An agent's state changed, and with it its record in the snapshot.
                        self.pull_now.notify_one();
                    }
                    self.reached();
                    if std::mem::take(&mut failing) {
                        tracing::info!(control_plane = %self.client.base(), "revocation feed reachable again");
                    }
                    retry = Duration::from_millis(250);
                }
                Err(err) => {
                    if !std::mem::replace(&mut failing, true) {
                        tracing::warn!(error = %err, "cannot follow the revocation feed; deciding from the snapshot meanwhile");
                    }
                    self.log_if_stale();
                    tokio::time::sleep(retry).await;
                    retry = (retry * 2).min(MAX_FEED_RETRY);
                }
            }
        }
    }

    /// Pulls the snapshot and the JWKS every `refresh` (or sooner when the feed changed an agent).
    async fn pull_snapshots(self: Arc<Self>) {
        let mut failing = false;
        loop {
            tokio::select! {
                () = tokio::time::sleep(self.refresh) => {}
                () = self.pull_now.notified() => {}
            }
            let current = self.view();
            match pull_view(&self.client, Some(&current)).await {
                Ok(view) => {
                    if let Some(view) = view {
                        tracing::info!("applied a new policy snapshot");
                        let mut slot = self.view.write().unwrap_or_else(PoisonError::into_inner);
                        *slot = Arc::new(view);
                    }
                    self.reached();
                    if std::mem::take(&mut failing) {
                        tracing::info!(control_plane = %self.client.base(), "policy snapshot reachable again");
                    }
                }
                Err(err) => {
                    if !std::mem::replace(&mut failing, true) {
                        tracing::warn!(error = %err, "cannot pull the policy snapshot; deciding from the previous one meanwhile");
                    }
                    self.log_if_stale();
                }
            }
        }
    }
}

/// Pulls the snapshot and the JWKS and builds a view from them; `None` when both equal `current`'s
/// documents (nothing to rebuild).
async fn pull_view(client: &ControlClient, current: Option<&View>) -> Result<Option<View>, String> {
    let snapshot = client
        .get("/v1/gateway/snapshot", true, PULL_TIMEOUT)
        .await
        .map_err(|err| describe_pull("the policy snapshot", &err))?;
    let jwks = client
        .get("/.well-known/jwks.json", false, PULL_TIMEOUT)
        .await
        .map_err(|err| describe_pull("the signing keys", &err))?;
    if current.is_some_and(|current| current.snapshot == snapshot && current.jwks == jwks) {
        return Ok(None);
    }
    build_view(snapshot, jwks).map(Some)
}

fn describe_pull(what: &str, err: &ClientError) -> String {
    match err {
        ClientError::Refused { status: 401 | 403, .. } => format!(
            "{err}; the gateway needs an access token of role `gateway` (or platform-admin), given with --token or WARDEN_TOKEN"
        ),
        _ => format!("cannot pull {what}: {err}"),
    }
}

/// Builds a view from a snapshot and a JWKS document.
fn build_view(snapshot_doc: Value, jwks: Value) -> Result<View, String> {
    let snapshot =
        Snapshot::deserialize(&snapshot_doc).map_err(|e| format!("the policy snapshot is not valid: {e}"))?;
    let offset = parse_offset(&snapshot.time_zone)?;
    let verifier = Verifier::from_jwks(&jwks, VerifierConfig::new(snapshot.issuer, snapshot.audience))
        .map_err(|e| format!("the control plane's signing keys are unusable: {e}"))?;
    let mut guardrails = Vec::with_capacity(snapshot.guardrails.len());
    for guardrail in &snapshot.guardrails {
        guardrails.push(parse_guardrail(&guardrail.text).map_err(|e| {
            format!(
                "guardrail `{}` of the policy snapshot does not validate here: {e}; is this gateway older than its control plane?",
                guardrail.id
            )
        })?);
    }
    let registered: Vec<McpServer> = snapshot.servers.iter().map(|s| s.server.clone()).collect();
    let fleet = Fleet::new(&snapshot.agents, &snapshot.scopes, &registered);
    let engine = PolicyEngine::new(fleet, guardrails).map_err(|e| format!("the policy snapshot is unusable: {e}"))?;
    let servers = snapshot
        .servers
        .into_iter()
        .map(|s| UpstreamSpec {
            name: s.server.name,
            transport: s.server.transport,
            credentials: upstream_credentials(&s.credentials),
        })
        .collect();
    Ok(View {
        engine,
        verifier,
        servers,
        offset,
        snapshot: snapshot_doc,
        jwks,
    })
}

/// Reads the feed after position `since`, long-polling up to `wait` seconds when there is nothing
/// new.
async fn pull_feed(client: &ControlClient, since: u64, wait: u64) -> Result<Vec<RevocationEntry>, String> {
    let path = format!("/v1/revocations?since={since}&wait={wait}");
    let page = client
        .get(&path, true, PULL_TIMEOUT + Duration::from_secs(wait))
        .await
        .map_err(|err| describe_pull("the revocation feed", &err))?;
    let feed = Feed::deserialize(&page).map_err(|e| format!("the revocation feed is not valid: {e}"))?;
    Ok(feed.entries)
}

/// The stored `{"headers": {…}, "env": {…}}` (as the registry keeps them) as the upstream client wants
/// them; anything else reads as no credentials.
pub fn upstream_credentials(stored: &Value) -> UpstreamCredentials {
    let map = |value: Option<&Value>| -> BTreeMap<String, String> {
        value
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                    .collect()
            })
            .unwrap_or_default()
    };
    UpstreamCredentials {
        headers: map(stored.get("headers")),
        env: map(stored.get("env")),
    }
}

/// Parses the snapshot's time zone: `UTC`, `Z`, or a UTC offset `+HH:MM` or `+HH:MM:SS`.
fn parse_offset(value: &str) -> Result<UtcOffset, String> {
    if matches!(value, "UTC" | "utc" | "Z") {
        return Ok(UtcOffset::UTC);
    }
    let with_seconds =
        time::macros::format_description!("[offset_hour sign:mandatory]:[offset_minute]:[offset_second]");
    let without = time::macros::format_description!("[offset_hour sign:mandatory]:[offset_minute]");
    UtcOffset::parse(value, &with_seconds)
        .or_else(|_| UtcOffset::parse(value, &without))
        .map_err(|_| format!("the policy snapshot's time zone `{value}` is not a UTC offset like `+02:00`"))
}

/// The hour (0-23) and weekday now at `offset`.
fn now_in(offset: UtcOffset) -> (u8, Weekday) {
    let now = OffsetDateTime::now_utc().to_offset(offset);
    let weekday = Weekday::from_number(now.weekday().number_days_from_monday()).unwrap_or(Weekday::Monday);
    (now.hour(), weekday)
}

/// Now, in unix seconds.
fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use time::UtcOffset;
    use warden_policy::Decision;

    use super::{narrow_to_token, parse_offset};

    #[test]
    fn offsets_as_the_control_plane_writes_them() {
        assert_eq!(parse_offset("+00:00:00").unwrap(), UtcOffset::UTC);
        assert_eq!(parse_offset("UTC").unwrap(), UtcOffset::UTC);
        assert_eq!(
            parse_offset("-05:30").unwrap(),
            UtcOffset::from_hms(-5, -30, 0).unwrap()
        );
        assert_eq!(
            parse_offset("+02:00:00").unwrap(),
            UtcOffset::from_hms(2, 0, 0).unwrap()
        );
        assert!(parse_offset("Europe/Paris").is_err());
    }

    #[test]
    fn an_allow_stands_only_on_a_grant_of_a_scope_the_token_carries() {
        let allow = Decision {
            allow: true,
            policy_ids: vec![
                "grant/read/spiffe://d/team/t/agent/a".to_owned(),
                "grant/write/x".to_owned(),
            ],
            reason: "granted".to_owned(),
        };
        let narrowed = narrow_to_token(allow.clone(), &["read"]);
        assert!(narrowed.allow);
        assert_eq!(narrowed.policy_ids, ["grant/read/spiffe://d/team/t/agent/a"]);
        let refused = narrow_to_token(allow, &["deploy"]);
        assert!(!refused.allow && refused.policy_ids.is_empty());
        assert!(refused.reason.contains("`deploy`"), "{}", refused.reason);
        let deny = Decision {
            allow: false,
            policy_ids: vec!["g".to_owned()],
            reason: "no".to_owned(),
        };
        assert_eq!(narrow_to_token(deny.clone(), &["read"]), deny);
    }
}
