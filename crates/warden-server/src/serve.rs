//! `warden serve`: the embedded control plane.
//!
//! Owns the data directory: it takes an exclusive lock on `DIR/warden.lock` (a second process on the
//! same directory refuses to start), opens the database, creates the signing key, mints the bootstrap
//! platform-admin token on first start (printed once and written to `DIR/admin.token`, mode 0600),
//! and serves until SIGTERM or Ctrl-C, finishing in-flight requests before it exits.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use std::sync::Arc;
use std::time::Duration;

use warden_core::{Name, Role};
use warden_identity::keys::KeyRing;
use warden_identity::secret::{self, SecretKind};
use warden_store::{Actor, Store};

use warden_gateway::{Gateway, GatewayConfig};
use warden_lake::{Lake, LakeConfig};
use warden_query::{LakeSnapshot, Limits, QueryEngine, SnapshotSource};

use crate::audit::{Forwarder, LakeAudit};
use crate::credentials::{Credentials, TokenPolicy};
use crate::gateway::ServerControlPlane;
use crate::policy::PolicyState;
use crate::state::AppState;

/// The longest agent token lifetime Warden issues: 15 minutes.
pub const MAX_TOKEN_TTL_SECS: i64 = 900;

/// How to run the control plane.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Where the database, keys and bootstrap token live.
    pub data_dir: PathBuf,
    /// The address to listen on, e.g. `127.0.0.1:8470`.
    pub listen: String,
    /// The SPIFFE trust domain; `None` keeps the stored one (or `warden.local` on first start).
    pub trust_domain: Option<String>,
    /// The lifetime of agent tokens in seconds (1–900).
    pub token_ttl_secs: i64,
    /// How many delegation hops below a root agent are allowed.
    pub max_delegation_depth: u32,
    /// The organization's time zone for policy time facts: `UTC` or an offset like `+02:00`.
    pub time_zone: String,
    /// Keep the text of prompts in Claude Code hook events (by default only their length is kept).
    pub keep_prompts: bool,
    /// The audit lake's directory; `None` is `<data dir>/lake`.
    pub lake_dir: Option<PathBuf>,
}

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// Another process holds the data directory.
    #[error(
        "data directory `{dir}` is in use by another warden process{holder}; stop it, or pass --data-dir to use another directory"
    )]
    Locked {
        /// The directory.
        dir: String,
        /// ` (pid N)` when known.
        holder: String,
    },
    /// A file or directory could not be read or written.
    #[error("{what} `{path}`: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The trust domain is malformed or differs from the stored one.
    #[error("{0}")]
    TrustDomain(String),
    /// The database could not be opened or used.
    #[error(transparent)]
    Store(#[from] warden_store::StoreError),
    /// The listen address could not be bound.
    #[error("cannot listen on `{addr}`: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Something else failed.
    #[error("{0}")]
    Other(String),
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> ServeError + 'a {
    move |source| ServeError::Io {
        what,
        path: path.display().to_string(),
        source,
    }
}

/// The default trust domain.
pub(crate) const DEFAULT_TRUST_DOMAIN: &str = "warden.local";

/// Runs the control plane until SIGTERM or Ctrl-C.
pub async fn serve(config: ServeConfig) -> Result<(), ServeError> {
    let dir = &config.data_dir;
    fs::create_dir_all(dir).map_err(io_err("cannot create data directory", dir))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
        .map_err(io_err("cannot restrict permissions of data directory", dir))?;
    let _lock = lock_data_dir(dir)?;

    let db_path = dir.join("warden.db");
    create_private_file(&db_path)?;
    let store = Store::open_sqlite(&db_path)?;
    let trust_domain = settle_trust_domain(&store, config.trust_domain.as_deref()).await?;
    bootstrap_admin_token(&store, dir).await?;
    crate::routes::seed_default_template(&store).await?;

    if !(1..=MAX_TOKEN_TTL_SECS).contains(&config.token_ttl_secs) {
        return Err(ServeError::Other(format!(
            "--token-ttl must be between 1 and {MAX_TOKEN_TTL_SECS} seconds, not {}",
            config.token_ttl_secs
        )));
    }
    let keys_dir = dir.join("keys");
    let keys = KeyRing::open_or_create(&keys_dir, crate::credentials::now_unix())
        .map_err(|e| ServeError::Other(format!("signing keys: {e}")))?;
    let policy = TokenPolicy {
        max_ttl_secs: config.token_ttl_secs,
        max_depth: config.max_delegation_depth,
    };
    let credentials = Credentials::load(keys, &trust_domain, policy, &store).await?;
    let time_offset = crate::clock::parse_offset(&config.time_zone).map_err(ServeError::Other)?;
    let policy = PolicyState::load(&store)
        .await
        .map_err(|e| ServeError::Other(e.to_string()))?;
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .map_err(|source| ServeError::Bind {
            addr: config.listen.clone(),
            source,
        })?;
    let addr = listener.local_addr().map_err(|e| ServeError::Other(e.to_string()))?;
    let credentials = Arc::new(credentials);
    let policy = Arc::new(policy);
    let control =
        Arc::new(ServerControlPlane::new(Arc::clone(&credentials), Arc::clone(&policy), time_offset, &store).await?);
    let lake_dir = config.lake_dir.clone().unwrap_or_else(|| dir.join("lake"));
    let lake = open_lake(&lake_dir, &trust_domain)?;
    let forwarder = Forwarder::new(store.clone(), lake.clone(), dir.join("lake-forwarded.seq"));
    forwarder.catch_up().await.map_err(ServeError::Other)?;
    forwarder.spawn(FORWARD_EVERY);
    let query = query_engine(&lake)?;
    let audit = Arc::new(LakeAudit { lake: lake.clone() });
    let gateway = Gateway::new(control.clone(), audit, GatewayConfig::new(format!("http://{addr}")));
    let state = AppState {
        store,
        trust_domain,
        credentials,
        policy,
        time_offset,
        keep_prompts: config.keep_prompts,
        gateway: gateway.clone(),
        control,
        lake: lake.clone(),
        forwarder: forwarder.clone(),
        query,
    };
    let app = crate::router(state);
    say(format_args!("warden: listening on http://{addr}"));
    axum::serve(listener, app)
        .with_graceful_shutdown(announce_shutdown())
        .await
        .map_err(|e| ServeError::Other(format!("server failed: {e}")))?;
    gateway.shutdown().await;
    if let Err(err) = forwarder.catch_up().await {
        tracing::error!(error = %err, "the last registry changes could not be carried into the audit lake; the next start carries them");
    }
    // Seals what is pending, so after a stop the Parquet files hold every event.
    lake.close()
        .await
        .map_err(|e| ServeError::Other(format!("closing the audit lake: {e}")))?;
    say(format_args!("warden: stopped"));
    Ok(())
}

/// How often the change log is carried into the lake.
const FORWARD_EVERY: Duration = Duration::from_millis(200);

/// Opens (or creates) the audit lake, its log named after the trust domain.
fn open_lake(dir: &Path, trust_domain: &str) -> Result<Lake, ServeError> {
    fs::create_dir_all(dir).map_err(io_err("cannot create the audit lake directory", dir))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
        .map_err(io_err("cannot restrict permissions of the audit lake directory", dir))?;
    let config = LakeConfig {
        origin: format!("{trust_domain}/audit"),
        ..LakeConfig::default()
    };
    Lake::open(dir, config).map_err(|e| ServeError::Other(e.to_string()))
}

/// SQL over the lake's own snapshots (its manifest's sealed files and its tail).
fn query_engine(lake: &Lake) -> Result<QueryEngine, ServeError> {
    let source = lake.clone();
    let snapshot: SnapshotSource = Arc::new(move || {
        source
            .snapshot()
            .map(|s| LakeSnapshot {
                files: s.files,
                tail: s.tail,
            })
            .map_err(|e| e.to_string())
    });
    QueryEngine::from_snapshots(warden_lake::arrow_schema(), snapshot, Limits::default())
        .map_err(|e| ServeError::Other(format!("audit query engine: {e}")))
}

/// Takes the data directory's single-writer lock, held for the life of the returned file.
fn lock_data_dir(dir: &Path) -> Result<File, ServeError> {
    let path = dir.join("warden.lock");
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(io_err("cannot open lock file", &path))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => {
            let holder = fs::read_to_string(&path)
                .ok()
                .map(|pid| pid.trim().to_owned())
                .filter(|pid| !pid.is_empty())
                .map(|pid| format!(" (pid {pid})"))
                .unwrap_or_default();
            return Err(ServeError::Locked {
                dir: dir.display().to_string(),
                holder,
            });
        }
        Err(fs::TryLockError::Error(source)) => {
            return Err(ServeError::Io {
                what: "cannot lock",
                path: path.display().to_string(),
                source,
            });
        }
    }
    file.set_len(0).map_err(io_err("cannot write lock file", &path))?;
    write!(file, "{}", std::process::id()).map_err(io_err("cannot write lock file", &path))?;
    Ok(file)
}

/// Creates `path` with mode 0600 if it does not exist, and tightens its mode if it does.
fn create_private_file(path: &Path) -> Result<(), ServeError> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(io_err("cannot create", path))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).map_err(io_err("cannot restrict permissions of", path))
}

/// Writes `contents` to `path` atomically with mode 0600.
fn write_private_file(path: &Path, contents: &[u8]) -> Result<(), ServeError> {
    let tmp = path.with_extension("tmp");
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io_err("cannot write", &tmp))?;
    file.write_all(contents).map_err(io_err("cannot write", &tmp))?;
    file.sync_all().map_err(io_err("cannot sync", &tmp))?;
    fs::rename(&tmp, path).map_err(io_err("cannot rename into", path))?;
    if let Some(parent) = path.parent() {
        File::open(parent)
            .and_then(|d| d.sync_all())
            .map_err(io_err("cannot sync directory", parent))?;
    }
    Ok(())
}

async fn settle_trust_domain(store: &Store, wanted: Option<&str>) -> Result<String, ServeError> {
    let stored = store.setting("trust_domain").await?;
    match (stored, wanted) {
        (Some(stored), Some(wanted)) if stored != wanted => Err(ServeError::TrustDomain(format!(
            "this data directory was created with trust domain `{stored}`, not `{wanted}`; agent ids depend on it, so it cannot change (omit --trust-domain or use a new --data-dir)"
        ))),
        (Some(stored), _) => Ok(stored),
        (None, wanted) => {
            let domain = wanted.unwrap_or(DEFAULT_TRUST_DOMAIN);
            warden_core::AgentId::parse(&format!("spiffe://{domain}/team/x/agent/x")).map_err(|_| {
                ServeError::TrustDomain(format!(
                    "trust domain `{domain}` is invalid: use lowercase letters, digits, `.`, `-` and `_`"
                ))
            })?;
            store.set_setting(&Actor::system(), "trust_domain", domain).await?;
            Ok(domain.to_owned())
        }
    }
}

/// On first start (no access token exists), mints the bootstrap platform-admin token.
async fn bootstrap_admin_token(store: &Store, dir: &Path) -> Result<(), ServeError> {
    if store.count_access_tokens().await? > 0 {
        return Ok(());
    }
    let token = secret::generate(SecretKind::AccessToken).map_err(|e| ServeError::Other(e.to_string()))?;
    let path = dir.join("admin.token");
    // The file is written before the hash is stored: a crash in between leaves no token in the
    // store, so the next start mints a new one and overwrites the file.
    write_private_file(&path, format!("{token}\n").as_bytes())?;
    let name = Name::parse("bootstrap-admin").map_err(|e| ServeError::Other(e.to_string()))?;
    store
        .create_access_token(&Actor::system(), &name, Role::PlatformAdmin, None, secret::hash(&token))
        .await?;
    say(format_args!(
        "warden: bootstrap platform-admin token (shown once; also written to {}):",
        path.display()
    ));
    say(format_args!("{token}"));
    Ok(())
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

async fn announce_shutdown() {
    shutdown_signal().await;
    say(format_args!("warden: shutting down; finishing in-flight requests"));
}

/// Prints a line for the operator; a closed stdout must never stop the server.
pub fn say(line: std::fmt::Arguments<'_>) {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{line}");
    let _ = stdout.flush();
}
