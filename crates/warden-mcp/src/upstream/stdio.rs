//! The stdio transport: an upstream that is a child process speaking newline-delimited JSON-RPC on its
//! stdin and stdout.
//!
//! This module owns the child's whole life. A supervisor task spawns it (with a filtered environment
//! plus the credentials), performs the handshake, and restarts it with exponential back-off whenever
//! it dies or breaks its pipes. Each incarnation is a [`Session`]: one writer task owns stdin, one
//! reader task matches responses on stdout to waiting calls by id, and one task copies stderr to
//! `tracing`. When a session ends, every call waiting on it fails at once; calls made while no session
//! is ready fail fast with [`UpstreamError::Restarting`] instead of queueing.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command};
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::{Common, UpstreamError, UpstreamStatus, answer_server_request, lock};
use crate::jsonrpc::{ErrorObject, Id, Message, Notification, Request, Response};

/// How many outgoing messages may queue for a child's stdin.
const OUTBOX: usize = 1024;
/// Longest stderr line logged in full.
const MAX_STDERR_LINE: usize = 8 * 1024;

pub(super) struct StdioUpstream {
    shared: Arc<Shared>,
    /// Set to `true` by [`StdioUpstream::close`]; dropping it (the last handle going away) also stops
    /// the supervisor.
    shutdown: watch::Sender<bool>,
    supervisor: Mutex<Option<JoinHandle<()>>>,
}

struct Shared {
    common: Common,
    command: String,
    args: Vec<String>,
    env: BTreeMap<String, String>,
    state: Mutex<State>,
}

enum State {
    Ready(Arc<Session>),
    Restarting { next_attempt: Instant },
    Closed,
}

/// Why a session can no longer answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lost {
    Exited,
    Closed,
}

type Reply = Result<Result<Value, ErrorObject>, Lost>;

/// One incarnation of the child process.
struct Session {
    pid: Option<u32>,
    outbox: mpsc::Sender<String>,
    pending: Mutex<Pending>,
    /// Signalled when the pipes broke while the process may still run, so the supervisor kills it.
    broken: Notify,
    /// Signalled to make the writer drop stdin, which tells the child to exit.
    close_stdin: Notify,
}

struct Pending {
    ended: Option<Lost>,
    waiters: HashMap<i64, oneshot::Sender<Reply>>,
}

impl Session {
    fn new(pid: Option<u32>, outbox: mpsc::Sender<String>) -> Session {
        Session {
            pid,
            outbox,
            pending: Mutex::new(Pending {
                ended: None,
                waiters: HashMap::new(),
            }),
            broken: Notify::new(),
            close_stdin: Notify::new(),
        }
    }

    fn register(&self, id: i64) -> Result<oneshot::Receiver<Reply>, Lost> {
        let mut pending = lock(&self.pending);
        if let Some(lost) = pending.ended {
            return Err(lost);
        }
        let (tx, rx) = oneshot::channel();
        pending.waiters.insert(id, tx);
        Ok(rx)
    }

    fn resolve(&self, id: i64, outcome: Result<Value, ErrorObject>) -> bool {
        let waiter = lock(&self.pending).waiters.remove(&id);
        match waiter {
            // The caller may have given up in the meantime; that is fine.
            Some(waiter) => waiter.send(Ok(outcome)).is_ok(),
            None => false,
        }
    }

    fn forget(&self, id: i64) {
        lock(&self.pending).waiters.remove(&id);
    }

    /// Fails every waiting call and refuses new ones. Only the first call has an effect.
    fn end(&self, lost: Lost) {
        let waiters = {
            let mut pending = lock(&self.pending);
            if pending.ended.is_some() {
                return;
            }
            pending.ended = Some(lost);
            std::mem::take(&mut pending.waiters)
        };
        for waiter in waiters.into_values() {
            let _ = waiter.send(Err(lost));
        }
    }

    fn is_ended(&self) -> bool {
        lock(&self.pending).ended.is_some()
    }

    /// Sends a request and waits for its response, at most `timeout`.
    async fn call(
        &self,
        common: &Common,
        method: &str,
        params: Option<Value>,
        timeout: Duration,
    ) -> Result<Value, UpstreamError> {
        let id = common.next_id();
        let reply = self.register(id).map_err(|lost| match lost {
            // The child died but the supervisor has not noticed yet: this call was never sent.
            Lost::Exited => UpstreamError::Restarting {
                upstream: common.name.clone(),
                retry_in: Duration::ZERO,
            },
            Lost::Closed => common.closed_error(),
        })?;
        // Removes the waiter however this call ends, and tells the upstream to stop working on a request
        // that was given up (by the timeout or by the caller dropping the call).
        let mut guard = Forget {
            session: self,
            id,
            cancel: (method != "initialize").then_some("cancelled by the client"),
        };
        let line = Message::from(Request {
            id: Id::Number(id),
            method: method.to_owned(),
            params,
        })
        .to_line();
        let exchange = async {
            self.outbox.send(line).await.map_err(|_| Lost::Exited)?;
            reply.await.unwrap_or(Err(Lost::Exited))
        };
        let outcome = tokio::time::timeout(timeout, exchange).await;
        guard.cancel = match (&outcome, guard.cancel) {
            (Err(_elapsed), Some(_)) => Some("timed out"),
            _ => None,
        };
        match outcome {
            Ok(Ok(Ok(result))) => Ok(result),
            Ok(Ok(Err(error))) => Err(common.rpc_error(method, error)),
            Ok(Err(Lost::Exited)) => Err(UpstreamError::Exited {
                upstream: common.name.clone(),
                method: method.to_owned(),
            }),
            Ok(Err(Lost::Closed)) => Err(common.closed_error()),
            Err(_elapsed) => Err(common.timeout_error(method, timeout)),
        }
    }

    async fn send_notification(
        &self,
        common: &Common,
        method: &str,
        params: Option<Value>,
        timeout: Duration,
    ) -> Result<(), UpstreamError> {
        let line = Message::from(Notification {
            method: method.to_owned(),
            params,
        })
        .to_line();
        match tokio::time::timeout(timeout, self.outbox.send(line)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(UpstreamError::Exited {
                upstream: common.name.clone(),
                method: method.to_owned(),
            }),
            Err(_elapsed) => Err(common.timeout_error(method, timeout)),
        }
    }
}

struct Forget<'a> {
    session: &'a Session,
    id: i64,
    /// Why the request is abandoned, while it is.
    cancel: Option<&'static str>,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.session.forget(self.id);
        if let Some(reason) = self.cancel {
            let cancel = Notification {
                method: "notifications/cancelled".to_owned(),
                params: Some(json!({ "requestId": self.id, "reason": reason })),
            };
            // If the outbox is full the upstream is busy or stuck; the cancellation is only advice.
            let _ = self.session.outbox.try_send(Message::from(cancel).to_line());
        }
    }
}

impl StdioUpstream {
    pub(super) async fn connect(
        common: Common,
        command: &str,
        args: &[String],
        env: BTreeMap<String, String>,
    ) -> Result<StdioUpstream, UpstreamError> {
        let shared = Arc::new(Shared {
            common,
            command: command.to_owned(),
            args: args.to_vec(),
            env,
            state: Mutex::new(State::Closed),
        });
        let (child, session) = start(&shared).await?;
        *lock(&shared.state) = State::Ready(Arc::clone(&session));
        let (shutdown, shutdown_rx) = watch::channel(false);
        let supervisor = tokio::spawn(supervise(Arc::clone(&shared), child, session, shutdown_rx));
        Ok(StdioUpstream {
            shared,
            shutdown,
            supervisor: Mutex::new(Some(supervisor)),
        })
    }

    pub(super) fn common(&self) -> &Common {
        &self.shared.common
    }

    fn session(&self) -> Result<Arc<Session>, UpstreamError> {
        let common = &self.shared.common;
        match &*lock(&self.shared.state) {
            State::Ready(session) => Ok(Arc::clone(session)),
            State::Restarting { next_attempt } => Err(UpstreamError::Restarting {
                upstream: common.name.clone(),
                retry_in: next_attempt.saturating_duration_since(Instant::now()),
            }),
            State::Closed => Err(common.closed_error()),
        }
    }

    pub(super) fn status(&self) -> UpstreamStatus {
        match &*lock(&self.shared.state) {
            State::Ready(_) => UpstreamStatus::Ready,
            State::Restarting { .. } => UpstreamStatus::Restarting,
            State::Closed => UpstreamStatus::Closed,
        }
    }

    pub(super) fn pid(&self) -> Option<u32> {
        match &*lock(&self.shared.state) {
            State::Ready(session) => session.pid,
            _ => None,
        }
    }

    pub(super) async fn request(&self, method: &str, params: Option<Value>) -> Result<Value, UpstreamError> {
        let common = &self.shared.common;
        self.session()?
            .call(common, method, params, common.config.call_timeout)
            .await
    }

    pub(super) async fn notify(&self, method: &str, params: Option<Value>) -> Result<(), UpstreamError> {
        let common = &self.shared.common;
        self.session()?
            .send_notification(common, method, params, common.config.call_timeout)
            .await
    }

    pub(super) async fn close(&self) {
        self.shutdown.send_replace(true);
        let supervisor = lock(&self.supervisor).take();
        if let Some(supervisor) = supervisor {
            // The supervisor waits at most the grace period before killing the child.
            let limit = self.shared.common.config.shutdown_grace + Duration::from_secs(1);
            let _ = tokio::time::timeout(limit, supervisor).await;
        }
        *lock(&self.shared.state) = State::Closed;
    }
}

/// Spawns the child, wires its pipes to new tasks and performs the handshake.
async fn start(shared: &Arc<Shared>) -> Result<(Child, Arc<Session>), UpstreamError> {
    let common = &shared.common;
    let config = &common.config;
    let spawn_error = |source| UpstreamError::Spawn {
        upstream: common.name.clone(),
        command: shared.command.clone(),
        source,
    };
    let mut command = Command::new(&shared.command);
    command.args(&shared.args).env_clear();
    for key in &config.inherit_env {
        if let Some(value) = std::env::var_os(key) {
            command.env(key, value);
        }
    }
    command
        .envs(&shared.env)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command.spawn().map_err(spawn_error)?;
    let (Some(stdin), Some(stdout), Some(stderr)) = (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err(spawn_error(io::Error::other("the child's pipes are missing")));
    };
    let (outbox, inbox) = mpsc::channel(OUTBOX);
    let session = Arc::new(Session::new(child.id(), outbox));
    tokio::spawn(write_stdin(stdin, inbox, Arc::clone(&session)));
    tokio::spawn(read_stdout(stdout, Arc::clone(&session), Arc::clone(shared)));
    tokio::spawn(log_stderr(stderr, common.name.to_string()));
    tracing::debug!(upstream = %common.name, pid = ?session.pid, "upstream child started");

    let handshake = async {
        let result = session
            .call(
                common,
                "initialize",
                Some(common.initialize_params()),
                config.connect_timeout,
            )
            .await?;
        let init = common.accept_initialize(result)?;
        session
            .send_notification(common, "notifications/initialized", None, config.connect_timeout)
            .await?;
        Ok::<_, UpstreamError>(init)
    };
    match handshake.await {
        Ok(init) => {
            tracing::info!(
                upstream = %common.name,
                pid = ?session.pid,
                server = %init.server_info.name,
                version = %init.protocol_version,
                "upstream initialized"
            );
            Ok((child, session))
        }
        Err(err) => {
            session.end(Lost::Exited);
            session.close_stdin.notify_one();
            let _ = child.kill().await;
            Err(err)
        }
    }
}

/// Watches the child and restarts it until the upstream is closed or dropped.
async fn supervise(
    shared: Arc<Shared>,
    mut child: Child,
    mut session: Arc<Session>,
    mut shutdown: watch::Receiver<bool>,
) {
    let common = &shared.common;
    let policy = &common.config.restart;
    let set_state = |state| *lock(&shared.state) = state;
    let mut attempt: u32 = 0;
    loop {
        let started = Instant::now();
        tokio::select! {
            status = child.wait() => {
                tracing::warn!(upstream = %common.name, status = ?status, "upstream exited; restarting it");
            }
            () = session.broken.notified() => {
                // Usually the process is exiting anyway; give it a moment to say how.
                let status = match tokio::time::timeout(Duration::from_millis(200), child.wait()).await {
                    Ok(status) => status,
                    Err(_still_running) => {
                        let _ = child.start_kill();
                        child.wait().await
                    }
                };
                tracing::warn!(upstream = %common.name, status = ?status, "upstream's stdio closed; restarting it");
            }
            () = shutdown_requested(&mut shutdown) => {
                set_state(State::Closed);
                session.end(Lost::Closed);
                session.close_stdin.notify_one();
                if tokio::time::timeout(common.config.shutdown_grace, child.wait()).await.is_err() {
                    tracing::debug!(upstream = %common.name, "upstream did not exit after stdin closed; killing it");
                    let _ = child.kill().await;
                }
                return;
            }
        }
        session.end(Lost::Exited);
        session.close_stdin.notify_one();
        if started.elapsed() >= policy.stable_after {
            attempt = 0;
        }
        loop {
            let delay = policy.delay(attempt);
            attempt = attempt.saturating_add(1);
            set_state(State::Restarting {
                next_attempt: Instant::now() + delay,
            });
            let restarted = tokio::select! {
                restarted = async {
                    tokio::time::sleep(delay).await;
                    start(&shared).await
                } => restarted,
                // Dropping a half-started child kills it (`kill_on_drop`).
                () = shutdown_requested(&mut shutdown) => {
                    set_state(State::Closed);
                    return;
                }
            };
            match restarted {
                Ok((new_child, new_session)) => {
                    child = new_child;
                    session = new_session;
                    set_state(State::Ready(Arc::clone(&session)));
                    break;
                }
                Err(err) => {
                    let err: &dyn std::error::Error = &err;
                    tracing::warn!(upstream = %common.name, error = err, attempt, "restarting upstream failed");
                }
            }
        }
    }
}

/// Returns once `close` was called or every handle was dropped.
async fn shutdown_requested(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

async fn write_stdin(mut stdin: ChildStdin, mut inbox: mpsc::Receiver<String>, session: Arc<Session>) {
    loop {
        let line = tokio::select! {
            line = inbox.recv() => line,
            () = session.close_stdin.notified() => None,
        };
        let Some(mut line) = line else {
            break;
        };
        line.push('\n');
        let written = async {
            stdin.write_all(line.as_bytes()).await?;
            stdin.flush().await
        };
        if let Err(err) = written.await {
            tracing::debug!(pid = ?session.pid, error = %err, "writing to the upstream's stdin failed");
            session.end(Lost::Exited);
            session.broken.notify_one();
            break;
        }
    }
    // Dropping stdin closes it: the signal for a stdio server to exit.
}

async fn read_stdout(stdout: ChildStdout, session: Arc<Session>, shared: Arc<Shared>) {
    let common = &shared.common;
    let mut reader = BufReader::new(stdout);
    let mut buf = Vec::new();
    loop {
        match read_line(&mut reader, &mut buf, common.config.max_message_bytes).await {
            Ok(Line::Complete) => handle_line(&buf, &session, common),
            Ok(Line::TooLong) => tracing::warn!(
                upstream = %common.name,
                limit = common.config.max_message_bytes,
                "ignoring an upstream message longer than the limit"
            ),
            Ok(Line::Eof) => break,
            Err(err) => {
                tracing::debug!(upstream = %common.name, error = %err, "reading the upstream's stdout failed");
                break;
            }
        }
    }
    if !session.is_ended() {
        session.end(Lost::Exited);
        session.broken.notify_one();
    }
}

fn handle_line(line: &[u8], session: &Session, common: &Common) {
    if line.iter().all(u8::is_ascii_whitespace) {
        return;
    }
    match Message::parse(line) {
        Ok(Message::Response(Response {
            id: Some(Id::Number(id)),
            outcome,
        })) => {
            if !session.resolve(id, outcome) {
                tracing::debug!(upstream = %common.name, id, "ignoring a response nobody waits for");
            }
        }
        Ok(Message::Response(response)) => {
            tracing::warn!(upstream = %common.name, id = ?response.id, outcome = ?response.outcome, "ignoring a response to no request of ours");
        }
        Ok(Message::Notification(notification)) => common.publish(notification),
        Ok(Message::Request(request)) => {
            tracing::debug!(upstream = %common.name, method = %request.method, "upstream sent a request");
            let _ = session
                .outbox
                .try_send(Message::from(answer_server_request(&request)).to_line());
        }
        Err(err) => {
            let err: &dyn std::error::Error = &err;
            tracing::warn!(upstream = %common.name, error = err, "ignoring stdout output that is not a json-rpc message");
        }
    }
}

async fn log_stderr(stderr: ChildStderr, upstream: String) {
    let mut reader = BufReader::new(stderr);
    let mut buf = Vec::new();
    loop {
        match read_line(&mut reader, &mut buf, MAX_STDERR_LINE).await {
            Ok(Line::Complete) => {
                let line = String::from_utf8_lossy(&buf);
                tracing::info!(target: "warden_mcp::upstream::stderr", upstream = %upstream, "{}", line.trim_end());
            }
            Ok(Line::TooLong) => {
                tracing::info!(target: "warden_mcp::upstream::stderr", upstream = %upstream, "(a line longer than {MAX_STDERR_LINE} bytes)");
            }
            Ok(Line::Eof) | Err(_) => break,
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Line {
    /// `buf` holds one line (its newline included, if it had one).
    Complete,
    /// The line was longer than the limit and was skipped.
    TooLong,
    Eof,
}

/// Reads one line into `buf` without ever holding more than `limit` bytes of it.
async fn read_line<R: AsyncBufRead + Unpin>(reader: &mut R, buf: &mut Vec<u8>, limit: usize) -> io::Result<Line> {
    buf.clear();
    let mut too_long = false;
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Ok(match (too_long, buf.is_empty()) {
                (true, _) => Line::TooLong,
                (false, true) => Line::Eof,
                (false, false) => Line::Complete,
            });
        }
        let (used, done) = match available.iter().position(|b| *b == b'\n') {
            Some(at) => (at + 1, true),
            None => (available.len(), false),
        };
        if !too_long {
            if buf.len() + used > limit.saturating_add(1) {
                too_long = true;
                buf.clear();
            } else {
                buf.extend_from_slice(available.get(..used).unwrap_or_default());
            }
        }
        reader.consume(used);
        if done {
            return Ok(if too_long { Line::TooLong } else { Line::Complete });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Line, read_line};

    #[tokio::test]
    async fn reads_bounded_lines() {
        let input: &[u8] = b"short\nway too long a line\n\nlast";
        let mut reader = tokio::io::BufReader::with_capacity(4, input);
        let mut buf = Vec::new();
        let mut got = Vec::new();
        loop {
            let line = read_line(&mut reader, &mut buf, 8).await.unwrap();
            if line == Line::Eof {
                break;
            }
            got.push(format!("{line:?}:{}", String::from_utf8_lossy(&buf)));
        }
        assert_eq!(got, ["Complete:short\n", "TooLong:", "Complete:\n", "Complete:last"]);
    }
}
