//! The standalone gateway's durable audit: every event is appended to a local spool file and synced
//! to disk before [`AuditSink::record`] returns, and a shipper sends spooled events in batches to the
//! control plane (`POST /v1/gateway/events`), forgetting them once acknowledged.
//!
//! The spool is one JSON line per event, `{"id": "<128-bit hex>", "event": {…}}`, in a file of mode
//! 0600 that one gateway process locks for itself. What has been shipped is a byte offset kept in
//! `<spool>.shipped`; when everything is shipped the spool is truncated. Losing the offset, or a crash
//! between an acknowledgement and the offset update, only makes the shipper send events again, which
//! the control plane recognises by id and stores once; so every event reaches the store exactly once.
//! A line the control plane will never accept (malformed, or too large for a batch) is moved to
//! `<spool>.rejected` rather than blocking the events behind it.
//!
//! The spool is bounded: events the control plane has not yet taken may fill at most
//! [`SpoolLimits::max_pending`] bytes, beyond which recording fails (and so calls are not forwarded)
//! until it takes them. Under steady load the spool may never be empty at an acknowledgement, so once
//! [`SpoolLimits::compact_after`] bytes of it are shipped, the few unshipped lines are copied to a
//! fresh file that replaces it.
//!
//! **Invariant:** the spool holds whole lines only: a failed append is cut back off, and a partial
//! line left by a crash is removed at start (its event was never reported durable, so its call was
//! never forwarded).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::client::{ClientError, ControlClient};
use crate::audit::{AuditSink, GatewayEvent, RecordFuture};
use crate::session::{lock, random_hex};

/// The largest batch body sent; the control plane accepts request bodies of at most 64 KiB.
const MAX_BATCH_BYTES: usize = 60 * 1024;
/// The longest line shipped: one event alone in a batch stays within [`MAX_BATCH_BYTES`].
const MAX_LINE_BYTES: usize = MAX_BATCH_BYTES - 16;
/// The most events in one batch.
const MAX_BATCH_EVENTS: usize = 1000;
/// How long one batch may take.
const SHIP_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest wait between attempts while the control plane cannot take events.
const MAX_RETRY: Duration = Duration::from_secs(2);

/// Why the spool cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// A file could not be opened, read or written.
    #[error("{what} `{path}`: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Another process holds the spool.
    #[error("spool `{path}` is in use by another warden gateway; give each gateway its own --spool file")]
    Locked {
        /// The file.
        path: String,
    },
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> SpoolError + 'a {
    move |source| SpoolError::Io {
        what,
        path: path.display().to_string(),
        source,
    }
}

/// The most unshipped bytes a spool holds unless told otherwise: 1 GiB.
pub const DEFAULT_MAX_PENDING_BYTES: u64 = 1 << 30;

/// How large a spool may grow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpoolLimits {
    /// The most bytes of events not yet taken by the control plane; recording fails beyond it.
    pub max_pending: u64,
    /// Once this many bytes are shipped while more are pending, the spool is rewritten without them.
    pub compact_after: u64,
}

impl Default for SpoolLimits {
    fn default() -> SpoolLimits {
        SpoolLimits {
            max_pending: DEFAULT_MAX_PENDING_BYTES,
            compact_after: 16 * 1024 * 1024,
        }
    }
}

/// The most unshipped bytes copied by one compaction (appends wait meanwhile); with more pending,
/// compaction waits for the shipper to catch up.
const MAX_COMPACT_COPY: u64 = 1024 * 1024;

/// The spool file and what of it has been shipped.
pub(crate) struct Spool {
    path: PathBuf,
    shipped_path: PathBuf,
    rejected_path: PathBuf,
    limits: SpoolLimits,
    state: Mutex<SpoolState>,
}

struct SpoolState {
    /// Opened for appending (and reading); holds the process's lock on the spool.
    file: File,
    /// The spool's length: every byte before it belongs to a whole line.
    len: u64,
    /// The offset up to which lines have been acknowledged by the control plane.
    shipped: u64,
    /// A failed append could not be cut back off: the next append starts a new line first.
    torn: bool,
}

/// Spooled lines read for shipping.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Batch {
    /// The request body, `{"events": [...]}`; empty when there is nothing to ship.
    pub(crate) body: Vec<u8>,
    /// How many events the body holds.
    pub(crate) events: usize,
    /// How many spool bytes the batch covers, rejected lines included.
    pub(crate) bytes: u64,
}

impl Spool {
    /// Opens (creating, mode 0600) and locks the spool at `path`, cuts a partial last line, and loads
    /// the shipped offset.
    pub(crate) fn open(path: &Path, limits: SpoolLimits) -> Result<Spool, SpoolError> {
        let existed = path.exists();
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o600)
            .open(path)
            .map_err(io_err("cannot open the audit spool", path))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                return Err(SpoolError::Locked {
                    path: path.display().to_string(),
                });
            }
            Err(fs::TryLockError::Error(source)) => return Err(io_err("cannot lock the audit spool", path)(source)),
        }
        fs::set_permissions(path, fs::Permissions::from_mode(0o600))
            .map_err(io_err("cannot restrict permissions of the audit spool", path))?;
        if !existed {
            sync_parent(path).map_err(io_err("cannot sync the directory of", path))?;
        }
        let len = whole_lines(&file).map_err(io_err("cannot repair the audit spool", path))?;
        let shipped_path = sibling(path, "shipped");
        let shipped = fs::read_to_string(&shipped_path)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .filter(|&offset| offset <= len && (offset == 0 || byte_at(&file, offset - 1) == Some(b'\n')))
            .unwrap_or(0);
        Ok(Spool {
            path: path.to_owned(),
            shipped_path,
            rejected_path: sibling(path, "rejected"),
            limits,
            state: Mutex::new(SpoolState {
                file,
                len,
                shipped,
                torn: false,
            }),
        })
    }

    /// The spool's path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes spooled and not yet acknowledged.
    pub(crate) fn pending_bytes(&self) -> u64 {
        let state = lock(&self.state);
        state.len - state.shipped
    }

    /// Appends one line (ending in `\n`) and syncs it to disk; refuses when the unshipped events
    /// would exceed [`SpoolLimits::max_pending`].
    pub(crate) fn append(&self, line: &[u8]) -> io::Result<()> {
        let mut state = lock(&self.state);
        let pending = state.len - state.shipped;
        if pending.saturating_add(line.len() as u64) > self.limits.max_pending {
            return Err(io::Error::other(format!(
                "it holds {pending} bytes of events the control plane has not taken yet (limit {}, \
                 --spool-max-bytes); nothing more is recorded, and no call forwarded, until it takes them",
                self.limits.max_pending
            )));
        }
        let start = state.len;
        let mut written = Vec::with_capacity(line.len() + 1);
        if state.torn {
            written.push(b'\n');
        }
        written.extend_from_slice(line);
        let result = state.file.write_all(&written).and_then(|()| state.file.sync_data());
        match result {
            Ok(()) => {
                state.len = start + written.len() as u64;
                state.torn = false;
                Ok(())
            }
            Err(err) => {
                // Cut what was written, so the next line starts on a line of its own.
                if state.file.set_len(start).is_err() {
                    state.torn = true;
                    state.len = state.file.metadata().map_or(start, |m| m.len());
                }
                Err(err)
            }
        }
    }

    /// Reads the next batch after the shipped offset: at most `max_events` events and
    /// [`MAX_BATCH_BYTES`] of body. Lines that can never be shipped are moved to the rejected file and
    /// counted in `bytes`.
    pub(crate) fn next_batch(&self, max_events: usize) -> io::Result<Batch> {
        let (reader, shipped, len) = {
            let state = lock(&self.state);
            (state.file.try_clone()?, state.shipped, state.len)
        };
        // Bytes before `len` are whole lines and change only when the shipper (the caller) truncates.
        let mut batch = Batch::default();
        let mut body = b"{\"events\":[".to_vec();
        let mut offset = shipped;
        while offset < len && batch.events < max_events.max(1) {
            let line = match read_line(&reader, offset, len, MAX_LINE_BYTES)? {
                Line::Whole(line) => line,
                Line::TooLong(skip) => {
                    tracing::error!(spool = %self.path.display(), offset, "an audit event is too large to ship; moving it aside");
                    self.reject(&read_range(&reader, offset, skip.min(1024 * 1024))?);
                    offset += skip;
                    batch.bytes = offset - shipped;
                    continue;
                }
            };
            let advance = line.len() as u64 + 1;
            if !shippable(&line) {
                tracing::error!(spool = %self.path.display(), offset, "a spooled audit event is malformed; moving it aside");
                self.reject(&line);
                offset += advance;
                batch.bytes = offset - shipped;
                continue;
            }
            // `{"events":[` + lines joined by `,` + `]}`.
            if batch.events > 0 && body.len() + 1 + line.len() + 2 > MAX_BATCH_BYTES {
                break;
            }
            if batch.events > 0 {
                body.push(b',');
            }
            body.extend_from_slice(&line);
            batch.events += 1;
            offset += advance;
            batch.bytes = offset - shipped;
        }
        if batch.events > 0 {
            body.extend_from_slice(b"]}");
            batch.body = body;
        }
        Ok(batch)
    }

    /// Marks `bytes` more of the spool as shipped; truncates the spool once everything is.
    pub(crate) fn acknowledge(&self, bytes: u64) -> io::Result<()> {
        let mut state = lock(&self.state);
        let shipped = state.shipped.saturating_add(bytes).min(state.len);
        if shipped == state.len {
            // The zero offset is made durable before the truncation: a crash in between resends the
            // spool (harmless), and never leaves an old offset pointing into new events.
            write_offset(&self.shipped_path, 0, true)?;
            state.file.set_len(0)?;
            state.file.sync_data()?;
            state.len = 0;
            state.shipped = 0;
            state.torn = false;
        } else if shipped >= self.limits.compact_after && state.len - shipped <= MAX_COMPACT_COPY {
            if let Err(err) = self.compact(&mut state, shipped) {
                tracing::warn!(spool = %self.path.display(), error = %err, "cannot compact the audit spool; it keeps its shipped events for now");
                write_offset(&self.shipped_path, shipped, false)?;
                state.shipped = shipped;
            }
        } else {
            // Losing this update only resends events, so it need not be synced.
            write_offset(&self.shipped_path, shipped, false)?;
            state.shipped = shipped;
        }
        Ok(())
    }

    /// Replaces the spool with a copy of its unshipped lines (those from `shipped` on).
    ///
    /// The copy is synced and locked before it is renamed over the spool, and the zero offset is made
    /// durable in between: a crash before the rename leaves the old spool with offset 0 (resent, and
    /// stored once by id), a crash after it leaves the copy with offset 0 (exact).
    fn compact(&self, state: &mut SpoolState, shipped: u64) -> io::Result<()> {
        let unshipped = read_range(&state.file, shipped, state.len - shipped)?;
        if unshipped.len() as u64 != state.len - shipped {
            return Err(io::Error::other("the spool is shorter than recorded"));
        }
        let copy_path = sibling(&self.path, "compact");
        match fs::remove_file(&copy_path) {
            Err(err) if err.kind() != io::ErrorKind::NotFound => return Err(err),
            _ => {}
        }
        let mut copy = OpenOptions::new()
            .read(true)
            .append(true)
            .create_new(true)
            .mode(0o600)
            .open(&copy_path)?;
        let copied = copy
            .try_lock()
            .map_err(io::Error::other)
            .and_then(|()| copy.write_all(&unshipped))
            .and_then(|()| copy.sync_data());
        if let Err(err) = copied {
            let _ = fs::remove_file(&copy_path);
            return Err(err);
        }
        write_offset(&self.shipped_path, 0, true)?;
        fs::rename(&copy_path, &self.path)?;
        sync_parent(&self.path)?;
        tracing::debug!(spool = %self.path.display(), dropped = shipped, "compacted the audit spool");
        state.file = copy;
        state.len -= shipped;
        state.shipped = 0;
        Ok(())
    }

    /// Moves a line the control plane will never take to the rejected file; best effort.
    fn reject(&self, line: &[u8]) {
        let appended = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&self.rejected_path)
            .and_then(|mut file| {
                file.write_all(line)?;
                file.write_all(b"\n")?;
                file.sync_data()
            });
        if let Err(err) = appended {
            tracing::error!(file = %self.rejected_path.display(), error = %err, "cannot keep a rejected audit event");
        }
    }
}

/// Whether a spooled line is an event the control plane accepts: `{"id": "…", "event": {"kind": "…"}}`.
fn shippable(line: &[u8]) -> bool {
    let Ok(value) = serde_json::from_slice::<Value>(line) else {
        return false;
    };
    let id_ok = value
        .get("id")
        .and_then(Value::as_str)
        .is_some_and(|id| !id.is_empty() && id.len() <= 128);
    id_ok && value.pointer("/event/kind").is_some_and(Value::is_string)
}

enum Line {
    /// The line's bytes, without its `\n`.
    Whole(Vec<u8>),
    /// The line (with its `\n`) is this many bytes, more than the limit.
    TooLong(u64),
}

/// The line starting at `offset` (every line before `len` ends in `\n`).
fn read_line(file: &File, offset: u64, len: u64, limit: usize) -> io::Result<Line> {
    let mut line = Vec::new();
    let mut pos = offset;
    let mut chunk = vec![0u8; 64 * 1024];
    while pos < len {
        let want = usize::try_from(len - pos).unwrap_or(usize::MAX).min(chunk.len());
        let got = file.read_at(&mut chunk[..want], pos)?;
        if got == 0 {
            break;
        }
        if let Some(end) = chunk[..got].iter().position(|b| *b == b'\n') {
            if line.len() + end <= limit {
                line.extend_from_slice(&chunk[..end]);
                return Ok(Line::Whole(line));
            }
            return Ok(Line::TooLong(pos + end as u64 + 1 - offset));
        }
        if line.len() <= limit {
            line.extend_from_slice(&chunk[..got]);
        }
        pos += got as u64;
    }
    // No `\n` before `len` cannot happen for a spool of whole lines; skip the rest.
    Ok(Line::TooLong(len - offset))
}

fn read_range(file: &File, offset: u64, len: u64) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; usize::try_from(len).unwrap_or(0)];
    let mut filled = 0;
    while filled < buf.len() {
        let got = file.read_at(&mut buf[filled..], offset + filled as u64)?;
        if got == 0 {
            break;
        }
        filled += got;
    }
    buf.truncate(filled);
    Ok(buf)
}

fn byte_at(file: &File, offset: u64) -> Option<u8> {
    let mut byte = [0u8; 1];
    (file.read_at(&mut byte, offset).ok()? == 1).then_some(byte[0])
}

/// Cuts a partial last line; returns the resulting length.
fn whole_lines(file: &File) -> io::Result<u64> {
    let len = file.metadata()?.len();
    if len == 0 || byte_at(file, len - 1) == Some(b'\n') {
        return Ok(len);
    }
    let mut end = len;
    let mut chunk = vec![0u8; 64 * 1024];
    let cut = loop {
        if end == 0 {
            break 0;
        }
        let start = end.saturating_sub(chunk.len() as u64);
        let want = usize::try_from(end - start).unwrap_or(0);
        let got = read_range(file, start, want as u64)?;
        chunk[..got.len()].copy_from_slice(&got);
        if let Some(i) = got.iter().rposition(|b| *b == b'\n') {
            break start + i as u64 + 1;
        }
        end = start;
    };
    tracing::warn!(
        dropped = len - cut,
        "the audit spool ended in a partial event (a crash while recording); cutting it"
    );
    file.set_len(cut)?;
    file.sync_data()?;
    Ok(cut)
}

/// `<path>.<suffix>`.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".");
    name.push(suffix);
    PathBuf::from(name)
}

/// Writes the shipped offset atomically (a temporary file renamed over it), durably when `sync`.
fn write_offset(path: &Path, offset: u64, sync: bool) -> io::Result<()> {
    let tmp = sibling(path, "tmp");
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(format!("{offset}\n").as_bytes())?;
    if sync {
        file.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    if sync {
        sync_parent(path)?;
    }
    Ok(())
}

fn sync_parent(path: &Path) -> io::Result<()> {
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    File::open(parent)?.sync_all()
}

/// The standalone gateway's [`AuditSink`]: durable in the local spool, shipped in the background.
pub struct SpoolAudit {
    shipper: Arc<Shipper>,
    task: JoinHandle<()>,
}

struct Shipper {
    spool: Arc<Spool>,
    client: Arc<ControlClient>,
    wake: Notify,
    /// One shipping round at a time, so acknowledgements never race.
    round: tokio::sync::Mutex<()>,
}

impl SpoolAudit {
    /// Opens the spool and starts shipping it (what a previous run left first). Must be called
    /// within a tokio runtime.
    pub(crate) fn start(
        path: &Path,
        limits: SpoolLimits,
        client: Arc<ControlClient>,
    ) -> Result<SpoolAudit, SpoolError> {
        let spool = Spool::open(path, limits)?;
        let pending = spool.pending_bytes();
        if pending > 0 {
            tracing::info!(spool = %path.display(), bytes = pending, "shipping audit events left by a previous run");
        }
        let shipper = Arc::new(Shipper {
            spool: Arc::new(spool),
            client,
            wake: Notify::new(),
            round: tokio::sync::Mutex::new(()),
        });
        let task = tokio::spawn(Arc::clone(&shipper).run());
        Ok(SpoolAudit { shipper, task })
    }

    /// Bytes spooled and not yet acknowledged by the control plane.
    pub fn pending_bytes(&self) -> u64 {
        self.shipper.spool.pending_bytes()
    }

    /// Ships everything spooled now, trying for at most `timeout`; `Err` says what is left and why.
    /// For shutdown: what is left is shipped by the next run.
    pub async fn flush(&self, timeout: Duration) -> Result<(), String> {
        let shipper = Arc::clone(&self.shipper);
        let attempt = async move {
            loop {
                match shipper.ship_round().await {
                    Ok(()) if shipper.spool.pending_bytes() == 0 => return Ok(()),
                    Ok(()) => {}
                    Err(err) => return Err(err),
                }
            }
        };
        let left = || self.pending_bytes();
        match tokio::time::timeout(timeout, attempt).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(err)) => Err(format!("{} bytes of audit events stay spooled: {err}", left())),
            Err(_) => Err(format!(
                "{} bytes of audit events stay spooled: shipping did not finish within {}s",
                left(),
                timeout.as_secs()
            )),
        }
    }
}

impl Drop for SpoolAudit {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl AuditSink for SpoolAudit {
    fn record(&self, event: GatewayEvent) -> RecordFuture<'_> {
        Box::pin(async move {
            let id = random_hex(16).ok_or_else(|| "cannot generate an event id".to_owned())?;
            let mut line = serde_json::to_vec(&json!({"id": id, "event": event}))
                .map_err(|e| format!("cannot encode an event: {e}"))?;
            line.push(b'\n');
            let spool = Arc::clone(&self.shipper.spool);
            tokio::task::spawn_blocking(move || {
                spool
                    .append(&line)
                    .map_err(|err| format!("cannot write the audit spool `{}`: {err}", spool.path().display()))
            })
            .await
            .map_err(|err| format!("the audit spool writer failed: {err}"))??;
            self.shipper.wake.notify_one();
            Ok(())
        })
    }
}

impl Shipper {
    /// Ships whenever events are spooled; retries with a short backoff while the control plane cannot
    /// take them.
    async fn run(self: Arc<Self>) {
        let mut failing: Option<String> = None;
        let mut retry = Duration::from_millis(250);
        loop {
            match self.ship_round().await {
                Ok(()) => {
                    if failing.take().is_some() {
                        tracing::info!("audit events are reaching the control plane again");
                    }
                    retry = Duration::from_millis(250);
                    // Woken by the next record; the timeout is a safety net only.
                    let _ = tokio::time::timeout(Duration::from_secs(5), self.wake.notified()).await;
                }
                Err(err) => {
                    if failing.as_deref() != Some(err.as_str()) {
                        tracing::warn!(error = %err, pending_bytes = self.spool.pending_bytes(), "cannot ship audit events; keeping them spooled");
                        failing = Some(err);
                    }
                    tokio::time::sleep(retry).await;
                    retry = (retry * 2).min(MAX_RETRY);
                }
            }
        }
    }

    /// Ships batches until the spool is empty or a batch fails.
    async fn ship_round(&self) -> Result<(), String> {
        let _round = self.round.lock().await;
        // After a batch the control plane refuses as a whole, events go one at a time, so a single bad
        // one is found and set aside.
        let mut max_events = MAX_BATCH_EVENTS;
        loop {
            let batch = self.read_batch(max_events).await?;
            if batch.bytes == 0 {
                return Ok(());
            }
            if batch.events == 0 {
                // Only lines moved aside.
                self.acknowledge(batch.bytes).await?;
                continue;
            }
            let body = Bytes::from(batch.body);
            match self.client.post("/v1/gateway/events", body.clone(), SHIP_TIMEOUT).await {
                Ok(answer) => {
                    tracing::debug!(events = batch.events, answer = %answer, "shipped audit events");
                    self.acknowledge(batch.bytes).await?;
                }
                Err(ClientError::Refused { status, .. }) if matches!(status, 400 | 413 | 422) && batch.events > 1 => {
                    max_events = 1;
                }
                Err(ClientError::Refused { status, message, .. }) if matches!(status, 400 | 413 | 422) => {
                    tracing::error!(status, error = %message, "the control plane refuses a spooled audit event; moving it aside");
                    let line = body.get(11..body.len().saturating_sub(2)).unwrap_or_default();
                    self.spool.reject(line);
                    self.acknowledge(batch.bytes).await?;
                }
                Err(err) => return Err(err.to_string()),
            }
        }
    }

    async fn read_batch(&self, max_events: usize) -> Result<Batch, String> {
        let spool = Arc::clone(&self.spool);
        tokio::task::spawn_blocking(move || spool.next_batch(max_events))
            .await
            .map_err(|err| format!("the audit spool reader failed: {err}"))?
            .map_err(|err| format!("cannot read the audit spool: {err}"))
    }

    async fn acknowledge(&self, bytes: u64) -> Result<(), String> {
        let spool = Arc::clone(&self.spool);
        tokio::task::spawn_blocking(move || spool.acknowledge(bytes))
            .await
            .map_err(|err| format!("the audit spool writer failed: {err}"))?
            .map_err(|err| format!("cannot update the audit spool: {err}"))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;

    use serde_json::{Value, json};

    use super::{MAX_BATCH_BYTES, Spool, SpoolError, SpoolLimits, sibling};

    fn line(id: &str) -> Vec<u8> {
        let mut line = json!({"id": id, "event": {"kind": "decision", "agent": "a"}})
            .to_string()
            .into_bytes();
        line.push(b'\n');
        line
    }

    fn ids(body: &[u8]) -> Vec<String> {
        let body: Value = serde_json::from_slice(body).unwrap();
        body["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn appends_ships_in_batches_and_truncates_when_everything_is_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.spool");
        let spool = Spool::open(&path, SpoolLimits::default()).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(spool.next_batch(10).unwrap().bytes, 0, "nothing to ship");
        for id in ["a", "b", "c"] {
            spool.append(&line(id)).unwrap();
        }
        let batch = spool.next_batch(2).unwrap();
        assert_eq!(ids(&batch.body), ["a", "b"]);
        spool.acknowledge(batch.bytes).unwrap();
        spool.append(&line("d")).unwrap();
        let batch = spool.next_batch(10).unwrap();
        assert_eq!(ids(&batch.body), ["c", "d"]);
        assert_eq!(spool.pending_bytes(), batch.bytes);
        spool.acknowledge(batch.bytes).unwrap();
        assert_eq!(spool.pending_bytes(), 0);
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            0,
            "a fully shipped spool is truncated"
        );
        spool.append(&line("e")).unwrap();
        assert_eq!(ids(&spool.next_batch(10).unwrap().body), ["e"]);
    }

    #[test]
    fn a_restart_ships_what_is_left_and_cuts_a_torn_last_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.spool");
        {
            let spool = Spool::open(&path, SpoolLimits::default()).unwrap();
            for id in ["a", "b", "c"] {
                spool.append(&line(id)).unwrap();
            }
            let batch = spool.next_batch(1).unwrap();
            spool.acknowledge(batch.bytes).unwrap();
        }
        // A crash while recording leaves half a line behind.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(br#"{"id":"d","ev"#)
            .unwrap();
        let spool = Spool::open(&path, SpoolLimits::default()).unwrap();
        spool.append(&line("e")).unwrap();
        assert_eq!(ids(&spool.next_batch(10).unwrap().body), ["b", "c", "e"]);

        // A lost or bogus offset only resends.
        drop(spool);
        std::fs::write(sibling(&path, "shipped"), "7\n").unwrap();
        let spool = Spool::open(&path, SpoolLimits::default()).unwrap();
        assert_eq!(ids(&spool.next_batch(10).unwrap().body), ["a", "b", "c", "e"]);
    }

    #[test]
    fn one_process_holds_a_spool() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.spool");
        let _held = Spool::open(&path, SpoolLimits::default()).unwrap();
        assert!(matches!(
            Spool::open(&path, SpoolLimits::default()),
            Err(SpoolError::Locked { .. })
        ));
    }

    #[test]
    fn malformed_and_oversized_lines_are_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.spool");
        let spool = Spool::open(&path, SpoolLimits::default()).unwrap();
        spool.append(b"not json\n").unwrap();
        let big = "x".repeat(MAX_BATCH_BYTES + 10);
        let mut huge = json!({"id": "big", "event": {"kind": "outcome", "error": big}})
            .to_string()
            .into_bytes();
        huge.push(b'\n');
        spool.append(&huge).unwrap();
        spool.append(&line("ok")).unwrap();
        let batch = spool.next_batch(10).unwrap();
        assert_eq!(ids(&batch.body), ["ok"]);
        assert_eq!(
            batch.bytes,
            spool.pending_bytes(),
            "the batch covers the lines moved aside"
        );
        let rejected = std::fs::read_to_string(sibling(&path, "rejected")).unwrap();
        assert!(
            rejected.starts_with("not json\n") && rejected.contains("\"big\""),
            "{}",
            &rejected[..40]
        );
    }

    #[test]
    fn batches_stay_within_the_control_planes_body_limit() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(&dir.path().join("s.spool"), SpoolLimits::default()).unwrap();
        let padding = "p".repeat(900);
        for i in 0..200 {
            let mut line = json!({"id": format!("e{i}"), "event": {"kind": "decision", "reason": padding}})
                .to_string()
                .into_bytes();
            line.push(b'\n');
            spool.append(&line).unwrap();
        }
        let mut shipped = Vec::new();
        loop {
            let batch = spool.next_batch(1000).unwrap();
            if batch.bytes == 0 {
                break;
            }
            assert!(batch.body.len() <= MAX_BATCH_BYTES, "{}", batch.body.len());
            shipped.extend(ids(&batch.body));
            spool.acknowledge(batch.bytes).unwrap();
        }
        assert_eq!(shipped.len(), 200);
        assert_eq!(shipped.last().map(String::as_str), Some("e199"));
    }

    #[test]
    fn a_full_spool_refuses_until_events_are_taken() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.spool");
        let one = line("a").len() as u64;
        let limits = SpoolLimits {
            max_pending: 2 * one,
            ..SpoolLimits::default()
        };
        let spool = Spool::open(&path, limits).unwrap();
        spool.append(&line("a")).unwrap();
        spool.append(&line("b")).unwrap();
        let err = spool.append(&line("c")).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "it holds {} bytes of events the control plane has not taken yet (limit {}, --spool-max-bytes); \
                 nothing more is recorded, and no call forwarded, until it takes them",
                2 * one,
                2 * one
            )
        );
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            2 * one,
            "nothing partial was written"
        );
        let batch = spool.next_batch(1).unwrap();
        spool.acknowledge(batch.bytes).unwrap();
        spool.append(&line("c")).unwrap();
        assert_eq!(ids(&spool.next_batch(10).unwrap().body), ["b", "c"]);
    }

    #[test]
    fn a_spool_that_never_empties_is_compacted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.spool");
        let one = line("e00").len() as u64;
        let limits = SpoolLimits {
            compact_after: 10 * one,
            ..SpoolLimits::default()
        };
        let spool = Spool::open(&path, limits).unwrap();
        // Steady load: every acknowledgement finds one more event spooled, so the spool is never
        // empty and never truncated.
        spool.append(&line("e00")).unwrap();
        let mut largest = 0;
        for i in 1..40 {
            spool.append(&line(&format!("e{i:02}"))).unwrap();
            let batch = spool.next_batch(1).unwrap();
            assert_eq!(ids(&batch.body), [format!("e{:02}", i - 1)]);
            spool.acknowledge(batch.bytes).unwrap();
            largest = largest.max(std::fs::metadata(&path).unwrap().len());
        }
        assert!(largest <= 11 * one, "the spool grew to {largest} bytes");
        assert_eq!(spool.pending_bytes(), one);
        assert!(!sibling(&path, "compact").exists());
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);

        // The compacted spool is the spool: a restart ships exactly what is left, and it stays locked.
        assert!(matches!(
            Spool::open(&path, SpoolLimits::default()),
            Err(SpoolError::Locked { .. })
        ));
        drop(spool);
        let spool = Spool::open(&path, SpoolLimits::default()).unwrap();
        assert_eq!(ids(&spool.next_batch(10).unwrap().body), ["e39"]);
    }
}
