//! An agent's own credentials on the machine it runs on: the project that `warden init` made (the
//! nearest `.warden/agent.json`), and a short-lived access token traded for its client secret and
//! cached in `.warden/token.json` (mode 0600) until shortly before it expires.
//!
//! Used by `warden hook claude-code` and `warden token header`; nothing here starts a runtime or loads
//! policy, because the hook runs as a new process for every tool call.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::client::Client;

/// The folder of a project holding Warden's files.
pub(crate) const WARDEN_DIR: &str = ".warden";
/// The credentials file inside it.
pub(crate) const AGENT_FILE: &str = "agent.json";
const TOKEN_FILE: &str = "token.json";
/// The lifetime asked for: short, because a token carries the scopes the agent held when it was issued,
/// so a scope granted later reaches the hook within minutes.
const TOKEN_TTL_SECS: u64 = 300;
/// A cached token is used until this long before it expires.
const TOKEN_MARGIN_SECS: u64 = 60;

/// `.warden/agent.json`: who the project's agent is and how it authenticates.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct AgentFile {
    /// The agent's SPIFFE id.
    pub(crate) agent_id: String,
    /// Its client secret.
    pub(crate) client_secret: String,
    /// The control plane's URL.
    pub(crate) server: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct CachedToken {
    agent_id: String,
    access_token: String,
    /// Unix seconds.
    expires_at: u64,
}

/// Where the agent's identity comes from.
pub(crate) enum Identity {
    /// `WARDEN_AGENT_TOKEN`: a token given by whoever started the agent.
    Token(String),
    /// A project made by `warden init`.
    Project { dir: PathBuf, agent: AgentFile },
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The nearest directory at or above `start` holding `.warden/agent.json`.
pub(crate) fn find_project(start: &Path) -> Option<PathBuf> {
    start
        .ancestors()
        .find(|dir| dir.join(WARDEN_DIR).join(AGENT_FILE).is_file())
        .map(Path::to_path_buf)
}

/// The project for this process: `dir` if given; else `$CLAUDE_PROJECT_DIR` (set by Claude Code and
/// not moved by the agent's `cd`); else the nearest one above `fallback` (the hook input's `cwd`) or
/// the current directory.
pub(crate) fn locate_project(dir: Option<&Path>, fallback: Option<&Path>) -> Option<PathBuf> {
    if let Some(dir) = dir {
        return find_project(dir);
    }
    if let Some(project) = std::env::var_os("CLAUDE_PROJECT_DIR").filter(|v| !v.is_empty()) {
        return find_project(Path::new(&project));
    }
    let start = match fallback {
        Some(path) => path.to_path_buf(),
        None => std::env::current_dir().ok()?,
    };
    find_project(&start)
}

/// Reads `DIR/.warden/agent.json`.
pub(crate) fn read_agent_file(dir: &Path) -> Result<AgentFile, String> {
    let path = dir.join(WARDEN_DIR).join(AGENT_FILE);
    let text = fs::read_to_string(&path).map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| {
        format!(
            "`{}` is not a Warden credentials file ({e}); run `warden init` again",
            path.display()
        )
    })
}

/// The identity to act as: `WARDEN_AGENT_TOKEN`, else the project's credentials.
pub(crate) fn identity(dir: Option<&Path>, fallback: Option<&Path>) -> Result<Identity, String> {
    if let Some(token) = std::env::var("WARDEN_AGENT_TOKEN")
        .ok()
        .filter(|t| !t.trim().is_empty())
    {
        return Ok(Identity::Token(token.trim().to_owned()));
    }
    let Some(project) = locate_project(dir, fallback) else {
        return Err(
            "no agent identity: set WARDEN_AGENT_TOKEN or run in a project made by `warden init` (no .warden/agent.json found)"
                .to_owned(),
        );
    };
    let agent = read_agent_file(&project)?;
    Ok(Identity::Project { dir: project, agent })
}

impl Identity {
    /// The server to talk to: `WARDEN_SERVER` if set, else the project's, else the default.
    pub(crate) fn server(&self) -> String {
        if let Some(server) = std::env::var("WARDEN_SERVER").ok().filter(|s| !s.trim().is_empty()) {
            return server;
        }
        match self {
            Identity::Project { agent, .. } => agent.server.clone(),
            Identity::Token(_) => "http://127.0.0.1:8470".to_owned(),
        }
    }

    /// Where Warden's local files live: the project's `.warden/`, else `$CLAUDE_PROJECT_DIR/.warden`,
    /// else `~/.warden`.
    pub(crate) fn warden_dir(&self) -> Option<PathBuf> {
        match self {
            Identity::Project { dir, .. } => Some(dir.join(WARDEN_DIR)),
            Identity::Token(_) => default_warden_dir(),
        }
    }

    /// An access token: the given one, or the cached one while it has more than a minute left, or a
    /// new one for the client secret (then cached). `fresh` skips the cache.
    pub(crate) fn token(&self, client: &Client, fresh: bool) -> Result<String, String> {
        let (dir, agent) = match self {
            Identity::Token(token) => return Ok(token.clone()),
            Identity::Project { dir, agent } => (dir, agent),
        };
        let cache = dir.join(WARDEN_DIR).join(TOKEN_FILE);
        if !fresh
            && let Ok(text) = fs::read_to_string(&cache)
            && let Ok(cached) = serde_json::from_str::<CachedToken>(&text)
            && cached.agent_id == agent.agent_id
            && cached.expires_at > now_unix() + TOKEN_MARGIN_SECS
        {
            return Ok(cached.access_token);
        }
        let form = [
            ("grant_type", "client_credentials".to_owned()),
            ("client_id", agent.agent_id.clone()),
            ("client_secret", agent.client_secret.clone()),
            ("ttl", TOKEN_TTL_SECS.to_string()),
        ];
        let issued = client
            .post_form("/oauth2/token", &form)
            .map_err(|e| format!("cannot get an access token for `{}`: {e}", agent.agent_id))?;
        let token = issued["access_token"]
            .as_str()
            .ok_or("the token endpoint answered without an access token")?
            .to_owned();
        let expires_in = issued["expires_in"].as_u64().unwrap_or(0);
        let cached = CachedToken {
            agent_id: agent.agent_id.clone(),
            access_token: token.clone(),
            expires_at: now_unix() + expires_in,
        };
        // A cache that cannot be written only costs the next call a token request.
        if let Ok(text) = serde_json::to_string(&cached) {
            let _ = write_private(&cache, text.as_bytes());
        }
        Ok(token)
    }
}

/// `.warden/` when no project was found: `$CLAUDE_PROJECT_DIR/.warden`, else `~/.warden`.
pub(crate) fn default_warden_dir() -> Option<PathBuf> {
    std::env::var_os("CLAUDE_PROJECT_DIR")
        .filter(|v| !v.is_empty())
        .or_else(|| std::env::var_os("HOME"))
        .map(|base| Path::new(&base).join(WARDEN_DIR))
}

/// Writes `path` with mode 0600 (atomically: a private temporary file renamed over it).
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    file.set_permissions(fs::Permissions::from_mode(0o600))?;
    file.write_all(bytes)?;
    file.sync_data()?;
    fs::rename(&tmp, path)
}

/// `warden token header`: prints `{"Authorization": "Bearer …"}`.
pub(crate) fn header(dir: Option<&Path>) -> anyhow::Result<()> {
    let identity = identity(dir, None).map_err(anyhow::Error::msg)?;
    let client = Client::with_timeout(&identity.server(), None, Duration::from_secs(8));
    let token = identity.token(&client, false).map_err(anyhow::Error::msg)?;
    println!("{}", serde_json::json!({ "Authorization": format!("Bearer {token}") }));
    Ok(())
}
