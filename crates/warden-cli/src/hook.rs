//! `warden hook claude-code`: Claude Code's hook protocol on the command line. Reads the hook input
//! on stdin, sends it to `POST /v1/hooks/claude-code` with the agent's token and a fresh event id, and
//! prints the hook output the server answers with. One round trip; the server decides and records.
//!
//! Failing closed: on a decision event (`PreToolUse`, `PermissionRequest`) anything that goes wrong —
//! unreadable input, no or bad credentials, a refused token, an unreachable server — exits 2 with one
//! `error: ` line on stderr, which makes Claude Code block the call (and for `PermissionRequest`, whose
//! exit 2 Claude Code does not honour, a JSON deny is printed too). Every other event is only
//! recorded: when it cannot be delivered it is appended to `.warden/spool.jsonl` (0600, fdatasync)
//! and the hook exits 0, so an audit-only event never blocks or derails the agent. The spool is
//! delivered by the next hook that reaches the server; the server stores each event once by its id,
//! so a spooled event that was in fact delivered before a crash is not stored twice.
//!
//! Kept light on purpose: the hook is a new process for every tool call, so nothing here starts an
//! async runtime or loads policy (`benches/hook.rs` measures the whole invocation).

use std::fs::{self, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use serde_json::{Value, json};

use crate::agent_auth::{self, Identity};
use crate::client::{Client, ClientError};

/// The endpoint.
const HOOK_PATH: &str = "/v1/hooks/claude-code";
/// How long a hook waits for the server: well inside the 10 s Claude Code gives the hook, because a
/// hook that times out decides nothing (fail-open).
const TIMEOUT: Duration = Duration::from_secs(4);
/// The spool file inside `.warden/`.
pub(crate) const SPOOL_FILE: &str = "spool.jsonl";
/// Spooled events that the server refused as malformed (kept, never retried).
const REJECTED_FILE: &str = "spool.rejected.jsonl";
/// The most spooled events one hook delivers.
const SPOOL_BATCH: usize = 200;
/// The largest hook input read from stdin.
const MAX_INPUT: u64 = 8 * 1024 * 1024;

/// Why a hook invocation failed.
struct Failure {
    message: String,
    /// The failure may pass: the event can be spooled and delivered later.
    retryable: bool,
}

impl Failure {
    fn retryable(message: impl Into<String>) -> Failure {
        Failure {
            message: message.into(),
            retryable: true,
        }
    }
}

/// Runs `warden hook claude-code` and returns its exit status.
pub(crate) fn claude_code() -> ExitCode {
    let mut input = Vec::new();
    match std::io::stdin().take(MAX_INPUT + 1).read_to_end(&mut input) {
        Err(e) => return fail_closed(None, &format!("cannot read the hook input on stdin: {e}")),
        Ok(n) if n as u64 > MAX_INPUT => {
            return fail_closed(None, &format!("the hook input is larger than {} MiB", MAX_INPUT >> 20));
        }
        Ok(_) => {}
    }
    let payload: Value = match serde_json::from_slice(&input) {
        Ok(value @ Value::Object(_)) => value,
        Ok(_) => return fail_closed(None, "the hook input on stdin is not a JSON object"),
        Err(e) => return fail_closed(None, &format!("the hook input on stdin is not JSON: {e}")),
    };
    let Some(event) = payload["hook_event_name"].as_str().map(str::to_owned) else {
        return fail_closed(None, "the hook input has no `hook_event_name`");
    };
    let decision = matches!(event.as_str(), "PreToolUse" | "PermissionRequest");
    let request = json!({
        "event_id": new_event_id(),
        "occurred_at": now_rfc3339(),
        "payload": payload,
    });
    let cwd = payload["cwd"].as_str().map(PathBuf::from);
    let identity = match agent_auth::identity(None, cwd.as_deref()) {
        Ok(identity) => identity,
        Err(message) if decision => return fail_closed(Some(&event), &message),
        Err(message) => return spool_fallback(None, &request, &Failure::retryable(message)),
    };
    let client = Client::with_timeout(&identity.server(), None, TIMEOUT);
    match deliver(&identity, &client, &request) {
        Ok(answer) => {
            if let Some(output) = answer.get("output").filter(|o| o.is_object()) {
                println!("{output}");
            }
            if let Some(dir) = identity.warden_dir() {
                deliver_spool(&identity, &client, &dir);
            }
            ExitCode::SUCCESS
        }
        Err(failure) if decision || !failure.retryable => fail_closed(Some(&event), &failure.message),
        Err(failure) => spool_fallback(identity.warden_dir(), &request, &failure),
    }
}

/// Exit 2 with the reason: Claude Code blocks the call. `PermissionRequest` ignores exit 2, so it
/// also gets a JSON deny.
fn fail_closed(event: Option<&str>, message: &str) -> ExitCode {
    if event == Some("PermissionRequest") {
        let reason = format!("Warden could not decide: {message}");
        println!(
            "{}",
            json!({"hookSpecificOutput": {"hookEventName": "PermissionRequest",
                "decision": {"behavior": "deny", "message": reason}}})
        );
    }
    eprintln!("error: warden hook: {message}");
    ExitCode::from(2)
}

/// A record-only event that could not be delivered: spool it and exit 0, or exit 2 when even that
/// fails (the event would otherwise be lost).
fn spool_fallback(dir: Option<PathBuf>, request: &Value, failure: &Failure) -> ExitCode {
    let Some(dir) = dir.or_else(agent_auth::default_warden_dir) else {
        return fail_closed(
            None,
            &format!("{}; and there is no directory to spool the event to", failure.message),
        );
    };
    match append_spool(&dir, request) {
        Ok(path) => {
            eprintln!(
                "warden hook: {}; the event is spooled in `{}` and will be delivered by a later hook",
                failure.message,
                path.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail_closed(
            None,
            &format!("{}; and the event cannot be spooled: {e}", failure.message),
        ),
    }
}

/// Posts one hook request, with one retry on a fresh token when the cached one is refused.
fn deliver(identity: &Identity, client: &Client, request: &Value) -> Result<Value, Failure> {
    let mut fresh = false;
    loop {
        let token = identity.token(client, fresh).map_err(|message| {
            // The token endpoint said no (wrong secret, revoked agent): fatal for decisions, but a
            // record-only event is still kept.
            Failure::retryable(message)
        })?;
        let authed = client.with_token(token);
        match authed.post(HOOK_PATH, request) {
            Ok(answer) => return Ok(answer),
            Err(ClientError::Api { status: 401, .. }) if !fresh && matches!(identity, Identity::Project { .. }) => {
                fresh = true;
            }
            Err(e) => {
                let retryable = !matches!(e.status(), Some(400 | 413 | 415));
                return Err(Failure {
                    message: e.to_string(),
                    retryable,
                });
            }
        }
    }
}

/// Appends one request to the spool (created 0600), durably, under an exclusive lock.
fn append_spool(dir: &Path, request: &Value) -> std::io::Result<PathBuf> {
    fs::create_dir_all(dir)?;
    let path = dir.join(SPOOL_FILE);
    let mut file = OpenOptions::new().append(true).create(true).mode(0o600).open(&path)?;
    file.set_permissions(fs::Permissions::from_mode(0o600))?;
    file.lock()?;
    let mut line = request.to_string();
    line.push('\n');
    file.write_all(line.as_bytes())?;
    file.sync_data()?;
    Ok(path)
}

/// Delivers spooled events, oldest first, until one cannot be delivered; keeps the rest. Skipped when
/// another hook is delivering. Best effort: failures leave the spool as it was.
fn deliver_spool(identity: &Identity, client: &Client, dir: &Path) {
    let path = dir.join(SPOOL_FILE);
    if fs::metadata(&path).map(|m| m.len() == 0).unwrap_or(true) {
        return;
    }
    let Ok(mut file) = OpenOptions::new().read(true).write(true).open(&path) else {
        return;
    };
    if file.try_lock().is_err() {
        return;
    }
    let lines: Vec<String> = BufReader::new(&file)
        .lines()
        .map_while(Result::ok)
        .filter(|l| !l.trim().is_empty())
        .collect();
    let mut done = 0;
    let mut rejected = Vec::new();
    for line in lines.iter().take(SPOOL_BATCH) {
        let Ok(request) = serde_json::from_str::<Value>(line) else {
            rejected.push(line.clone());
            done += 1;
            continue;
        };
        match deliver(identity, client, &request) {
            Ok(_) => done += 1,
            Err(failure) if !failure.retryable => {
                rejected.push(line.clone());
                done += 1;
            }
            Err(_) => break,
        }
    }
    if !rejected.is_empty() {
        let kept = rejected.iter().map(|l| format!("{l}\n")).collect::<String>();
        let appended = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(dir.join(REJECTED_FILE))
            .and_then(|mut f| f.write_all(kept.as_bytes()).and_then(|()| f.sync_data()));
        if appended.is_err() {
            return;
        }
    }
    if done == 0 {
        return;
    }
    let rest: String = lines[done..].iter().map(|l| format!("{l}\n")).collect();
    let rewritten = file
        .set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| file.write_all(rest.as_bytes()))
        .and_then(|()| file.sync_data());
    if let Err(e) = rewritten {
        eprintln!("warden hook: cannot rewrite the spool `{}`: {e}", path.display());
    }
}

/// 128 random bits, hex.
fn new_event_id() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        // No randomness: fall back to time and pid, still unique per invocation in practice.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        return format!("t{nanos:x}-{:x}", std::process::id());
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn now_rfc3339() -> String {
    let format =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    time::OffsetDateTime::now_utc().format(format).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn spool_is_private_and_line_per_event() {
        let dir = tempfile::tempdir().unwrap();
        let warden = dir.path().join(".warden");
        append_spool(&warden, &json!({"event_id": "a"})).unwrap();
        append_spool(&warden, &json!({"event_id": "b"})).unwrap();
        let path = warden.join(SPOOL_FILE);
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 2);
    }

    #[test]
    fn event_ids_differ() {
        assert_ne!(new_event_id(), new_event_id());
        assert_eq!(new_event_id().len(), 32);
    }
}
