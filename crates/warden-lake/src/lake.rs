//! The lake: opening and recovering a lake directory, the single writer thread (group commit,
//! sequencing, idempotency), the checkpointer thread (signed checkpoints), the sealer thread (Parquet
//! segments), and the public handle.
//!
//! Layout of a lake directory:
//!
//! ```text
//! <lake>/LOCK               single-process lock
//! <lake>/lake.json          format version, log origin, events per block of the stored tree
//! <lake>/log-key.pem        the log's Ed25519 key (0600)
//! <lake>/checkpoints.jsonl  every signed checkpoint, in the order they were written
//! <lake>/manifest.jsonl     one line per seal (see `segment`)
//! <lake>/wal/               WAL segments not yet sealed (see `wal`)
//! <lake>/events/day=YYYY-MM-DD/seg-<first>-<last>.parquet
//! ```
//!
//! Producers call `append` from any task; the writer thread takes everything queued, assigns seqs,
//! serializes canonical bytes, writes one batch and `fdatasync`s once, then answers every producer
//! in the batch. Only then are the events visible (tail, tree, checkpoints). `append_lazy` queues
//! without waking the writer, which takes the queue at its next wake (at least every
//! `lazy_commit_window`). Once `max_unsealed_events` are unsealed, the writer takes nothing but the
//! running seal's end. Nothing here blocks a tokio worker on IO: `append`, `seal` and `close` await
//! oneshot answers from the threads.
//!
//! The writer does no IO but the WAL's: checkpoints (a signature and an `fdatasync` of
//! `checkpoints.jsonl`, which grows, so the sync also commits metadata) are written by the
//! checkpointer thread, and a seal's own checkpoint by the sealer. Nor does it do anything whose cost
//! grows with the lake: the events a seal lets go of are freed on the sealer thread
//! (`SealerWork::Release`), and the idempotency index grows one shard at a time (`ids`), so no append
//! waits behind tens of milliseconds of freeing or rehashing.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::oneshot;

use crate::checkpoint::{LogKey, SignedCheckpoint, VerifierKey};
use crate::event::{AuditEvent, now_ms};
use crate::ids::IdIndex;
use crate::merkle::{self, BlockHashes, Frontier, Hash};
use crate::schema::{self, Row};
use crate::segment::{self, ManifestEntry, ParquetOptions, Stored};
use crate::wal::{self, Wal};

/// How a lake behaves. `Default` suits a server.
#[derive(Debug, Clone)]
pub struct LakeConfig {
    /// The log's origin: the first line of every checkpoint and the name of its key. Fixed when the
    /// lake is created (stored in `lake.json`).
    pub origin: String,
    /// Size of each preallocated WAL segment (at least 1 MiB).
    pub wal_segment_bytes: u64,
    /// Seal when this many events are unsealed… (the unsealed tail is held in memory, parsed, at
    /// roughly 1.5 KiB per event: 131,072 events ≈ 200 MiB)
    pub seal_max_events: usize,
    /// …or when the oldest unsealed event is this old.
    pub seal_max_age: Duration,
    /// A checkpoint is signed at least this often while events arrive.
    pub checkpoint_interval: Duration,
    /// Most events in one group commit.
    pub max_batch_events: usize,
    /// Most unsealed events (held in memory) before appends wait for the running seal: ingest
    /// faster than sealing slows to the sealing rate instead of growing without bound.
    pub max_unsealed_events: usize,
    /// How long an `append_lazy` may wait for another append to share its `fdatasync` (the writer
    /// also wakes at least this often).
    pub lazy_commit_window: Duration,
    /// zstd level of the flat columns.
    pub zstd_level: i32,
    /// zstd level of the `raw_canonical` column (most of the bytes on disk). Level 4 (zstd's
    /// double-fast match finder) seals ~2.5× faster than levels 5–8 (lazy match finders) for ~15%
    /// more bytes; BENCHMARKS.md has the trade-off measured.
    pub canonical_zstd_level: i32,
    pub row_group_rows: usize,
    /// Events per block of the Merkle tree the lake keeps (block roots in the manifest, not a hash
    /// per event); a power of two, fixed when the lake is created (stored in `lake.json`). Proofs
    /// read at most a few blocks of events.
    pub block_leaves: u64,
}

impl Default for LakeConfig {
    fn default() -> Self {
        LakeConfig {
            origin: "warden.local/audit".to_owned(),
            wal_segment_bytes: 64 << 20,
            seal_max_events: 131_072,
            seal_max_age: Duration::from_secs(60),
            checkpoint_interval: Duration::from_secs(1),
            max_batch_events: 16_384,
            max_unsealed_events: 262_144,
            lazy_commit_window: Duration::from_millis(20),
            zstd_level: 3,
            canonical_zstd_level: 4,
            row_group_rows: 131_072,
            block_leaves: merkle::BLOCK_LEAVES,
        }
    }
}

impl LakeConfig {
    pub(crate) fn parquet_options(&self) -> ParquetOptions {
        ParquetOptions {
            zstd_level: self.zstd_level,
            canonical_zstd_level: self.canonical_zstd_level,
            row_group_rows: self.row_group_rows,
        }
    }
}

/// What went wrong, and what to do about it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LakeError {
    #[error("audit lake `{path}`: {message}")]
    Io { path: PathBuf, message: String },
    #[error("audit lake `{0}` is open in another process; stop that process first")]
    Locked(PathBuf),
    #[error("audit lake is damaged: {0}; run `warden audit verify` to see exactly what changed")]
    Damaged(String),
    #[error("invalid audit event: {0}")]
    InvalidEvent(String),
    #[error(
        "audit lake stopped after a failed disk operation ({0}); every acknowledged event is safe, events not \
         acknowledged may or may not be recorded. Restart so recovery replays the WAL"
    )]
    Fatal(String),
    #[error("audit lake is closed")]
    Closed,
    #[error("bad lake configuration: {0}")]
    Config(String),
}

fn io_err(path: &Path, e: impl std::fmt::Display) -> LakeError {
    LakeError::Io {
        path: path.to_owned(),
        message: e.to_string(),
    }
}

/// The answer to one appended event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Receipt {
    /// Position in the log (= Merkle leaf index, `metadata.sequence`).
    pub seq: u64,
    /// SHA-256(0x00 ‖ canonical bytes); for a duplicate, known only while the original is in the
    /// log's last, incomplete block of 65,536 events (the lake keeps older leaves as block roots).
    pub leaf_hash: Option<Hash>,
    /// False when an event with this id was already in the log: nothing was stored and this is the
    /// original event's receipt.
    pub new: bool,
}

/// Sealed files and unsealed events at one instant: together, every durable event exactly once.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Absolute paths of the sealed Parquet files.
    pub files: Vec<PathBuf>,
    /// The unsealed tail, in seq order.
    pub tail: Vec<RecordBatch>,
    /// Events in the log (= next seq).
    pub size: u64,
}

/// `lake.json`: what is fixed when a lake is created.
#[derive(Serialize, Deserialize)]
pub(crate) struct LakeMeta {
    format: u32,
    pub(crate) origin: String,
    /// Events per block of the stored Merkle tree.
    pub(crate) block_leaves: u64,
}

#[derive(Serialize, Deserialize)]
struct CheckpointLine {
    size: u64,
    note: String,
}

pub(crate) const CHECKPOINTS: &str = "checkpoints.jsonl";
/// `lake.json`'s format: 2 since the manifest records block roots and files hold no leaf hashes.
const LAKE_FORMAT: u32 = 2;
pub(crate) const KEY_FILE: &str = "log-key.pem";

/// State shared between the handle, the writer and the sealer.
pub(crate) struct State {
    /// The Merkle tree: roots of complete 65,536-event blocks and the leaves after them.
    pub(crate) tree: BlockHashes,
    /// Durable events not yet recorded as sealed, oldest first; `tail[0]` has seq `tail_base`.
    pub(crate) tail: Vec<Arc<Stored>>,
    pub(crate) tail_base: u64,
    /// Arrow batches of the first `tail_cache.len() * TAIL_CHUNK` tail events (cleared at each seal).
    pub(crate) tail_cache: Vec<RecordBatch>,
    pub(crate) latest: SignedCheckpoint,
    pub(crate) manifest: Vec<ManifestEntry>,
    pub(crate) fatal: Option<String>,
}

pub(crate) struct Shared {
    pub(crate) dir: PathBuf,
    pub(crate) key: LogKey,
    pub(crate) config: LakeConfig,
    pub(crate) state: Mutex<State>,
    /// Held by the sealer while it writes files and the manifest, and by `Lake::verify` while it
    /// reads them, so a verification of the open lake sees whole seals only.
    pub(crate) files_gate: Mutex<()>,
    /// Sealed WAL segments whose removal waits until no verification is reading them.
    pub(crate) deferred_wal_removals: Mutex<Vec<PathBuf>>,
    /// `append_lazy` requests, which do not wake the writer: it takes them at its next wake.
    pub(crate) lazy: Mutex<LazyQueue>,
    /// Held until the handle and the lake's threads are gone, so no second opener races a finishing
    /// seal or checkpoint.
    _lock: File,
}

/// Lazy appends waiting for the writer, each with when it was made.
#[derive(Default)]
pub(crate) struct LazyQueue {
    items: Vec<(Vec<AuditEvent>, Reply<Vec<Receipt>>, Instant)>,
    /// The writer has stopped: lazy appends are refused.
    closed: bool,
}

impl Shared {
    fn lazy_queue(&self) -> MutexGuard<'_, LazyQueue> {
        self.lazy.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere while holding the lock leaves plain data behind; keep serving it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes `cp` the latest checkpoint unless a larger one is already (checkpoints are persisted
    /// by more than one thread, so they may finish out of order).
    fn publish_checkpoint(&self, cp: SignedCheckpoint) {
        let mut st = self.lock();
        if cp.size >= st.latest.size {
            st.latest = cp;
        }
    }

    /// Signs a checkpoint and appends it to `checkpoints.jsonl` (synced). Lines from different
    /// threads may land out of size order; readers take the largest.
    pub(crate) fn persist_checkpoint(&self, size: u64, root: &Hash) -> io::Result<SignedCheckpoint> {
        let cp = self.key.sign_checkpoint(size, root);
        let mut line = serde_json::to_vec(&CheckpointLine {
            size,
            note: cp.note.clone(),
        })
        .map_err(io::Error::other)?;
        line.push(b'\n');
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(CHECKPOINTS))?;
        f.write_all(&line)?;
        f.sync_data()?;
        Ok(cp)
    }
}

type Reply<T> = oneshot::Sender<Result<T, LakeError>>;

enum Command {
    Append {
        events: Vec<AuditEvent>,
        reply: Reply<Vec<Receipt>>,
    },
    Seal {
        reply: Reply<()>,
    },
    SealDone {
        result: Result<SealOutcome, String>,
    },
    Close {
        reply: Reply<()>,
    },
    /// Every handle was dropped without `close`: stop without sealing (the WAL keeps everything).
    Shutdown,
    /// The checkpointer thread could not write a checkpoint: the lake stops.
    Failed {
        what: String,
    },
}

/// What the sealer thread is asked to do.
enum SealerWork {
    Seal(SealJob),
    /// Drop sealed events the tail let go of. Freeing a seal's worth of events (millions of small
    /// allocations) takes tens of milliseconds, which must not be spent on the writer thread that
    /// every durable append waits on.
    Release(Vec<Arc<Stored>>, Vec<RecordBatch>),
}

struct SealJob {
    from: u64,
    to: u64,
    /// Roots of the blocks that end inside `[from, to)`.
    blocks: Vec<Hash>,
    /// The tree's root at size `to`: the sealer signs and persists the seal's checkpoint.
    root: Hash,
    wal_segments: Vec<PathBuf>,
    waiters: Vec<Reply<()>>,
}

struct SealOutcome {
    to: u64,
    entry: ManifestEntry,
    wal_segments: Vec<PathBuf>,
    waiters: Vec<Reply<()>>,
}

struct Inner {
    shared: Arc<Shared>,
    tx: Sender<Command>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The threads stop at their next step; the lock is released when they have.
        let _ = self.tx.send(Command::Shutdown);
    }
}

/// A handle to an open lake. Cheap to clone; all clones share one writer.
#[derive(Clone)]
pub struct Lake {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Lake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lake")
            .field("dir", &self.inner.shared.dir)
            .finish_non_exhaustive()
    }
}

/// A 128-bit key for an event id in the idempotency index.
fn id_key(id: &str) -> u128 {
    let d = Sha256::digest(id.as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    u128::from_le_bytes(b)
}

impl Lake {
    /// Opens the lake in `dir` (creating it if needed) and recovers it: sealed segments from the
    /// manifest, unsealed events from the WAL (a torn tail is cut off), the idempotency index and the
    /// Merkle tree.
    pub fn open(dir: &Path, config: LakeConfig) -> Result<Lake, LakeError> {
        if config.wal_segment_bytes < (1 << 20) {
            return Err(LakeError::Config("wal_segment_bytes must be at least 1 MiB".to_owned()));
        }
        if config.seal_max_events == 0
            || config.max_batch_events == 0
            || config.row_group_rows == 0
            || config.max_unsealed_events <= config.seal_max_events
        {
            return Err(LakeError::Config(
                "event counts must be positive, and max_unsealed_events above seal_max_events".to_owned(),
            ));
        }
        if !config.block_leaves.is_power_of_two() {
            return Err(LakeError::Config(format!(
                "block_leaves must be a power of two, not {}",
                config.block_leaves
            )));
        }
        segment::writer_properties(config.parquet_options()).map_err(LakeError::Config)?;
        create_private_dir(dir).map_err(|e| io_err(dir, e))?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("LOCK"))
            .map_err(|e| io_err(dir, e))?;
        // A handle of this process dropped a moment ago releases the lock once its threads stop.
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            match lock.try_lock() {
                Ok(()) => break,
                Err(fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(fs::TryLockError::WouldBlock) => return Err(LakeError::Locked(dir.to_owned())),
                Err(fs::TryLockError::Error(e)) => return Err(io_err(dir, e)),
            }
        }
        let meta = load_meta(dir, &config)?;
        let (origin, bl) = (meta.origin, meta.block_leaves);
        let key = LogKey::load_or_create(&dir.join(KEY_FILE), &origin).map_err(|e| io_err(dir, e))?;
        fs::create_dir_all(dir.join(segment::EVENTS_DIR)).map_err(|e| io_err(dir, e))?;

        // Sealed segments.
        let manifest = segment::read_manifest(dir, true).map_err(LakeError::Damaged)?;
        remove_unrecorded_files(dir, &manifest)?;
        let mut ids = IdIndex::default();
        let mut last_logged = 0i64;
        let mut tree = load_sealed(dir, &manifest, bl, &mut ids)?;
        if let Some(last) = manifest.last() {
            last_logged = last.last_logged_time;
        }
        let sealed_next = tree.len();

        // The WAL.
        let wal_dir = dir.join("wal");
        let (wal, recovered) = Wal::open(&wal_dir, config.wal_segment_bytes, sealed_next).map_err(|e| match e {
            wal::WalError::Io(e) => io_err(&wal_dir, e),
            damaged => LakeError::Damaged(damaged.to_string()),
        })?;
        let mut tail = Vec::with_capacity(recovered.frames.len());
        for frame in recovered.frames {
            let event = AuditEvent::from_canonical(&frame.payload)
                .map_err(|e| LakeError::Damaged(format!("WAL frame seq {}: {e}", frame.seq)))?;
            if event.metadata.sequence != Some(frame.seq) {
                return Err(LakeError::Damaged(format!(
                    "WAL frame seq {} holds an event whose metadata.sequence is {:?}",
                    frame.seq, event.metadata.sequence
                )));
            }
            let leaf = merkle::leaf_hash(&frame.payload);
            tree.push(leaf);
            ids.insert(id_key(event.id()), frame.seq);
            last_logged = last_logged.max(event.metadata.logged_time.unwrap_or(0));
            tail.push(Arc::new(Stored {
                event,
                canonical: frame.payload,
                leaf,
            }));
        }
        if let Some((path, offset)) = &recovered.truncated {
            tracing::warn!(segment = %path.display(), offset, "audit WAL: cut off a torn tail (unacknowledged writes)");
        }

        // Checkpoints: sign one for the recovered tree if the last one is older.
        let frontier = Frontier::from_blocks(&tree);
        let shared_key = key;
        let latest = read_latest_checkpoint(dir, &shared_key)?;
        let shared = Arc::new(Shared {
            dir: dir.to_owned(),
            key: shared_key,
            config: config.clone(),
            _lock: lock,
            files_gate: Mutex::new(()),
            deferred_wal_removals: Mutex::new(Vec::new()),
            lazy: Mutex::new(LazyQueue::default()),
            state: Mutex::new(State {
                tree,
                tail,
                tail_base: sealed_next,
                tail_cache: Vec::new(),
                latest: SignedCheckpoint {
                    origin: origin.clone(),
                    size: 0,
                    root: merkle::empty_root(),
                    note: String::new(),
                },
                manifest,
                fatal: None,
            }),
        });
        let latest = match latest {
            Some(cp) if cp.size == frontier.size() && cp.root == frontier.root() => cp,
            _ => shared
                .persist_checkpoint(frontier.size(), &frontier.root())
                .map_err(|e| io_err(dir, e))?,
        };
        shared.lock().latest = latest;

        let (tx, rx) = mpsc::channel();
        let (seal_tx, seal_rx) = mpsc::channel::<SealerWork>();
        let writer = Writer {
            shared: shared.clone(),
            wal: Some(wal),
            frontier,
            ids,
            next_seq: shared.lock().tree.len(),
            last_logged,
            unsealed_from: sealed_next,
            sealed_to: sealed_next,
            oldest_unsealed: None,
            sealing: false,
            seal_waiters: Vec::new(),
            close_reply: None,
            last_checkpoint: Instant::now(),
            checkpoint_due: false,
            seal_tx: Some(seal_tx),
            checkpointer: None,
        };
        let mut writer = writer;
        if writer.next_seq > writer.unsealed_from {
            writer.oldest_unsealed = Some(Instant::now());
        }
        let spawn = |name: &str, run: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(format!("warden-lake-{name}"))
                .spawn(run)
                .map_err(|e| io_err(dir, e))
        };
        let (checkpoint_tx, checkpoint_rx) = mpsc::channel::<(u64, Hash)>();
        let (checkpointer_shared, checkpointer_failed) = (shared.clone(), tx.clone());
        writer.checkpointer = Some(Checkpointer {
            tx: checkpoint_tx,
            thread: spawn(
                "checkpoint",
                Box::new(move || run_checkpointer(checkpointer_shared, checkpoint_rx, checkpointer_failed)),
            )?,
        });
        let writer_thread = spawn("writer", Box::new(move || writer.run(rx)))?;
        let (sealer_shared, sealer_tx) = (shared.clone(), tx.clone());
        let sealer_thread = spawn(
            "sealer",
            Box::new(move || run_sealer(sealer_shared, seal_rx, sealer_tx)),
        )?;
        Ok(Lake {
            inner: Arc::new(Inner {
                shared,
                tx,
                threads: Mutex::new(vec![writer_thread, sealer_thread]),
            }),
        })
    }

    /// Appends events; returns once every one of them is durable (or was already in the log), one
    /// receipt per event in order. Events with an id already in the log are not stored again.
    pub async fn append(&self, events: Vec<AuditEvent>) -> Result<Vec<Receipt>, LakeError> {
        self.append_with(events, false).await
    }

    /// `append`, for events nobody waits on (a call's outcome, say): they ride along with the next
    /// `append`'s group commit, or are committed on their own after `lazy_commit_window`. Returns once
    /// they are durable, like `append`; what it saves is an `fdatasync` of their own, which would
    /// otherwise delay the appends that are waited on.
    pub async fn append_lazy(&self, events: Vec<AuditEvent>) -> Result<Vec<Receipt>, LakeError> {
        self.append_with(events, true).await
    }

    async fn append_with(&self, events: Vec<AuditEvent>, lazy: bool) -> Result<Vec<Receipt>, LakeError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        for e in &events {
            e.validate().map_err(LakeError::InvalidEvent)?;
        }
        let (reply, rx) = oneshot::channel();
        if lazy {
            // No wake-up: the writer wakes at least every `lazy_commit_window` and takes the queue.
            let mut queue = self.inner.shared.lazy_queue();
            if queue.closed {
                drop(queue);
                return Err(self.gone());
            }
            queue.items.push((events, reply, Instant::now()));
        } else {
            self.send(Command::Append { events, reply })?;
        }
        rx.await.map_err(|_| self.gone())?
    }

    /// The latest signed checkpoint (at most `checkpoint_interval` behind the durable log while events
    /// arrive; exact after `seal` or when idle).
    pub fn checkpoint(&self) -> SignedCheckpoint {
        self.inner.shared.lock().latest.clone()
    }

    /// The log's C2SP verifier key (`<origin>+<key id>+<base64 key>`).
    pub fn verifier_key(&self) -> String {
        self.inner.shared.key.verifier_key()
    }

    /// The lake directory.
    pub fn dir(&self) -> &Path {
        &self.inner.shared.dir
    }

    /// Number of events in the log.
    pub fn size(&self) -> u64 {
        self.inner.shared.lock().tree.len()
    }

    /// Seals every event appended before this call into Parquet; returns when the files and the
    /// manifest entry are durable.
    pub async fn seal(&self) -> Result<(), LakeError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Seal { reply })?;
        rx.await.map_err(|_| self.gone())?
    }

    /// Seals what is pending, stops the threads and releases the lake. Other clones of this handle get
    /// `LakeError::Closed` afterwards.
    pub async fn close(self) -> Result<(), LakeError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Close { reply })?;
        let result = rx.await.map_err(|_| self.gone())?;
        let threads = std::mem::take(&mut *self.inner.threads.lock().unwrap_or_else(|e| e.into_inner()));
        // The threads have answered and are exiting; joining them cannot block for long.
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await;
        result
    }

    /// Verifies the open lake as `verify::verify_with_key` does the closed one, against this log's
    /// own key: every sealed row, file and seal, the WAL and every signed checkpoint, up to the events
    /// durable when it starts. Seals wait while it reads the files; appends do not. Blocking: call it
    /// off the async runtime.
    pub fn verify(&self) -> Result<crate::verify::Report, LakeError> {
        let shared = &self.inner.shared;
        let _gate = shared.files_gate.lock().unwrap_or_else(|e| e.into_inner());
        let limit = self.size();
        crate::verify::verify_upto(&shared.dir, &shared.key.verifier_key(), Some(limit))
    }

    /// The unsealed tail as Arrow batches (schema `arrow_schema()`), in seq order.
    pub fn tail_batches(&self) -> Result<Vec<RecordBatch>, LakeError> {
        Ok(self.snapshot()?.tail)
    }

    /// The sealed files and the unsealed tail at one instant, so a query sees every event exactly once.
    pub fn snapshot(&self) -> Result<Snapshot, LakeError> {
        let shared = &self.inner.shared;
        let (cached, rest, base, files, size) = {
            let st = shared.lock();
            let files: Vec<PathBuf> = st
                .manifest
                .iter()
                .flat_map(|m| m.files.iter().map(|f| shared.dir.join(&f.path)))
                .collect();
            let covered = (st.tail_cache.len() * TAIL_CHUNK).min(st.tail.len());
            (
                st.tail_cache.clone(),
                st.tail[covered..].to_vec(),
                st.tail_base,
                files,
                st.tree.len(),
            )
        };
        // Full chunks are immutable until the next seal: build each once and keep it.
        let built = batches(&rest)?;
        let full: Vec<RecordBatch> = built.iter().filter(|b| b.num_rows() == TAIL_CHUNK).cloned().collect();
        if !full.is_empty() {
            let mut st = shared.lock();
            if st.tail_base == base && st.tail_cache.len() == cached.len() {
                st.tail_cache.extend(full);
            }
        }
        let mut tail = cached;
        tail.extend(built);
        Ok(Snapshot { files, tail, size })
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.inner.shared
    }

    fn send(&self, cmd: Command) -> Result<(), LakeError> {
        self.inner.tx.send(cmd).map_err(|_| self.gone())
    }

    fn gone(&self) -> LakeError {
        match &self.inner.shared.lock().fatal {
            Some(msg) => LakeError::Fatal(msg.clone()),
            None => LakeError::Closed,
        }
    }
}

/// The nice value of the lake's background threads (the sealer, the WAL's preallocation).
const BACKGROUND_NICE: i32 = 10;

/// Lowers the calling thread's priority to [`BACKGROUND_NICE`], so the writer and the requests
/// waiting on it go first on a busy machine. `what` names the thread in the debug line logged if
/// the system refuses.
pub(crate) fn run_in_background(what: &str) {
    if let Err(e) = rustix::process::setpriority_process(Some(rustix::thread::gettid()), BACKGROUND_NICE) {
        tracing::debug!(error = %e, "audit lake: could not lower the priority of {what}");
    }
}

/// Rows per tail batch.
const TAIL_CHUNK: usize = 65_536;

fn batches(tail: &[Arc<Stored>]) -> Result<Vec<RecordBatch>, LakeError> {
    tail.chunks(TAIL_CHUNK)
        .map(|chunk| {
            let rows: Vec<Row<'_>> = chunk.iter().map(|s| s.row()).collect();
            schema::to_batch(&rows).map_err(LakeError::Damaged)
        })
        .collect()
}

fn create_private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

/// Reads `lake.json`, or writes it for a new lake.
fn load_meta(dir: &Path, config: &LakeConfig) -> Result<LakeMeta, LakeError> {
    let wanted = config.origin.as_str();
    let path = dir.join("lake.json");
    match fs::read(&path) {
        Ok(bytes) => {
            let meta = parse_meta(&path, &bytes)?;
            if meta.origin != wanted {
                tracing::info!(stored = %meta.origin, configured = wanted, "audit lake keeps the origin it was created with");
            }
            Ok(meta)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if wanted.is_empty() || wanted.contains(['\n', '+', ' ']) {
                return Err(LakeError::Config(format!(
                    "origin `{wanted}` must be non-empty with no spaces, `+` or newlines"
                )));
            }
            let meta = LakeMeta {
                format: LAKE_FORMAT,
                origin: wanted.to_owned(),
                block_leaves: config.block_leaves,
            };
            let bytes = serde_json::to_vec(&meta).map_err(|e| io_err(&path, e))?;
            let tmp = dir.join("lake.json.tmp");
            let mut f = File::create(&tmp).map_err(|e| io_err(&tmp, e))?;
            f.write_all(&bytes).map_err(|e| io_err(&tmp, e))?;
            f.sync_all().map_err(|e| io_err(&tmp, e))?;
            fs::rename(&tmp, &path).map_err(|e| io_err(&path, e))?;
            wal::sync_dir(dir).map_err(|e| io_err(dir, e))?;
            Ok(meta)
        }
        Err(e) => Err(io_err(&path, e)),
    }
}

/// Parses and checks the bytes of `lake.json`.
pub(crate) fn parse_meta(path: &Path, bytes: &[u8]) -> Result<LakeMeta, LakeError> {
    #[derive(Deserialize)]
    struct Format {
        format: u32,
    }
    let unreadable = |e: serde_json::Error| LakeError::Damaged(format!("`{}` is unreadable: {e}", path.display()));
    let format: Format = serde_json::from_slice(bytes).map_err(unreadable)?;
    if format.format != LAKE_FORMAT {
        return Err(LakeError::Config(format!(
            "`{}` has format {} but this Warden reads format {LAKE_FORMAT} (format 1 lakes, from before the \
             tree was kept as block roots, are not read: export their evidence with the Warden that wrote them)",
            path.display(),
            format.format
        )));
    }
    let meta: LakeMeta = serde_json::from_slice(bytes).map_err(unreadable)?;
    if !meta.block_leaves.is_power_of_two() {
        return Err(LakeError::Damaged(format!(
            "`{}`: block_leaves {} is not a power of two",
            path.display(),
            meta.block_leaves
        )));
    }
    Ok(meta)
}

/// Deletes Parquet files a crash left behind before their seal reached the manifest.
fn remove_unrecorded_files(dir: &Path, manifest: &[ManifestEntry]) -> Result<(), LakeError> {
    let recorded: std::collections::HashSet<&str> = manifest
        .iter()
        .flat_map(|m| m.files.iter().map(|f| f.path.as_str()))
        .collect();
    for (rel, path) in segment::list_event_files(dir).map_err(|e| io_err(dir, e))? {
        let unfinished = rel.ends_with(".tmp");
        let orphan = rel.ends_with(".parquet") && !recorded.contains(rel.as_str());
        if unfinished || orphan {
            tracing::info!(file = %path.display(), "audit lake: removing a segment file from an unfinished seal");
            fs::remove_file(&path).map_err(|e| io_err(&path, e))?;
        }
    }
    Ok(())
}

/// The blocks (by index) that end inside the seq range `[from, to)`.
pub(crate) fn blocks_ending_in(from: u64, to: u64, block_leaves: u64) -> std::ops::Range<u64> {
    from / block_leaves..(to / block_leaves).max(from / block_leaves)
}

/// Loads the ids of every sealed event and the Merkle tree over them: block roots from the manifest,
/// and the leaves of the last, incomplete block hashed from its events' canonical bytes.
fn load_sealed(
    dir: &Path,
    manifest: &[ManifestEntry],
    block_leaves: u64,
    ids: &mut IdIndex,
) -> Result<BlockHashes, LakeError> {
    let cols = ["seq", "uid"].map(|c| schema::column_index(c).unwrap_or(0));
    let mut next = 0u64;
    let mut blocks: Vec<Hash> = Vec::new();
    for entry in manifest {
        if entry.first_seq != next || entry.last_seq < entry.first_seq {
            return Err(LakeError::Damaged(format!(
                "manifest entry {}..={} does not continue the log at seq {next}",
                entry.first_seq, entry.last_seq,
            )));
        }
        let n = entry.last_seq - entry.first_seq + 1;
        let mut seen = 0u64;
        for file in &entry.files {
            let path = dir.join(&file.path);
            for batch in segment::read_file(&path, Some(&cols)).map_err(LakeError::Damaged)? {
                let (seq_col, uid_col) = (batch.column(0), batch.column(1));
                for r in 0..batch.num_rows() {
                    let seq = match schema::read_cell(seq_col.as_ref(), schema::Kind::I64, r) {
                        Ok(schema::Cell::Int(v)) if v >= 0 => v as u64,
                        _ => return Err(LakeError::Damaged(format!("`{}` row {r}: unreadable seq", file.path))),
                    };
                    let Ok(schema::Cell::Str(uid)) = schema::read_cell(uid_col.as_ref(), schema::Kind::Str, r) else {
                        return Err(LakeError::Damaged(format!("`{}` seq {seq}: unreadable uid", file.path)));
                    };
                    if seq < entry.first_seq || seq > entry.last_seq {
                        return Err(LakeError::Damaged(format!(
                            "`{}` holds seq {seq}, outside its seal {}..={}",
                            file.path, entry.first_seq, entry.last_seq
                        )));
                    }
                    ids.insert(id_key(&uid), seq);
                    seen += 1;
                }
            }
        }
        if seen != n {
            return Err(LakeError::Damaged(format!(
                "seal {}..={} should hold {n} events but its files hold {seen}",
                entry.first_seq, entry.last_seq
            )));
        }
        blocks.extend(entry_blocks(entry, block_leaves)?);
        next = entry.last_seq + 1;
    }
    let base = blocks.len() as u64 * block_leaves;
    let recent = if base < next {
        segment::read_leaves(dir, manifest, base, next).map_err(LakeError::Damaged)?
    } else {
        Vec::new()
    };
    BlockHashes::from_parts(block_leaves, blocks, recent)
        .ok_or_else(|| LakeError::Damaged("the manifest's block roots do not cover its events".to_owned()))
}

/// The block roots a manifest entry records, checked against its range.
pub(crate) fn entry_blocks(entry: &ManifestEntry, block_leaves: u64) -> Result<Vec<Hash>, LakeError> {
    let want = blocks_ending_in(entry.first_seq, entry.last_seq + 1, block_leaves);
    if entry.blocks.len() as u64 != want.end - want.start {
        return Err(LakeError::Damaged(format!(
            "manifest entry {}..={} lists {} block roots where {} blocks of {block_leaves} events end",
            entry.first_seq,
            entry.last_seq,
            entry.blocks.len(),
            want.end - want.start
        )));
    }
    entry
        .blocks
        .iter()
        .map(|h| {
            merkle::from_hex(h).ok_or_else(|| {
                LakeError::Damaged(format!(
                    "manifest entry {}..={}: `{h}` is not a block root",
                    entry.first_seq, entry.last_seq
                ))
            })
        })
        .collect()
}

/// Reads every checkpoint line, each verified against `key`, in file order.
pub(crate) fn read_checkpoints(
    dir: &Path,
    key: &VerifierKey,
) -> Result<Vec<Result<SignedCheckpoint, String>>, LakeError> {
    let path = dir.join(CHECKPOINTS);
    let mut text = String::new();
    match File::open(&path) {
        Ok(mut f) => {
            f.read_to_string(&mut text).map_err(|e| io_err(&path, e))?;
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(&path, e)),
    }
    let complete = text.rfind('\n').map_or(0, |p| p + 1);
    Ok(text[..complete]
        .lines()
        .enumerate()
        .map(|(n, line)| {
            let parsed: CheckpointLine = serde_json::from_str(line)
                .map_err(|e| format!("`{CHECKPOINTS}` line {}: not a checkpoint record ({e})", n + 1))?;
            let cp = key
                .verify_checkpoint(&parsed.note)
                .map_err(|e| format!("`{CHECKPOINTS}` line {}: {e}", n + 1))?;
            if cp.size != parsed.size {
                return Err(format!(
                    "`{CHECKPOINTS}` line {}: size {} differs from its note's {}",
                    n + 1,
                    parsed.size,
                    cp.size
                ));
            }
            Ok(cp)
        })
        .collect())
}

/// The largest checkpoint whose signature verifies (lines may be out of size order: the writer's
/// checkpointer, the sealer and evidence packs each append theirs).
fn read_latest_checkpoint(dir: &Path, key: &LogKey) -> Result<Option<SignedCheckpoint>, LakeError> {
    let vkey = VerifierKey::parse(&key.verifier_key()).map_err(|e| LakeError::Damaged(e.to_string()))?;
    Ok(read_checkpoints(dir, &vkey)?
        .into_iter()
        .filter_map(Result::ok)
        .max_by_key(|cp| cp.size))
}

struct Writer {
    shared: Arc<Shared>,
    wal: Option<Wal>,
    frontier: Frontier,
    ids: IdIndex,
    next_seq: u64,
    last_logged: i64,
    /// First seq not yet handed to the sealer.
    unsealed_from: u64,
    /// First seq not yet sealed (the unsealed tail starts here).
    sealed_to: u64,
    oldest_unsealed: Option<Instant>,
    sealing: bool,
    /// `seal()` callers waiting for a seal that has not started yet.
    seal_waiters: Vec<Reply<()>>,
    close_reply: Option<Reply<()>>,
    /// When a checkpoint was last asked for.
    last_checkpoint: Instant,
    checkpoint_due: bool,
    seal_tx: Option<Sender<SealerWork>>,
    checkpointer: Option<Checkpointer>,
}

/// The thread that signs and persists periodic checkpoints, and the way to ask it for one:
/// `(tree size, root)`.
struct Checkpointer {
    tx: Sender<(u64, Hash)>,
    thread: JoinHandle<()>,
}

/// An event in the batch being committed.
enum Slot {
    New(Arc<Stored>),
    Dup(u64),
}

impl Writer {
    fn run(mut self, rx: Receiver<Command>) {
        let tick = self
            .shared
            .config
            .checkpoint_interval
            .min(Duration::from_millis(250))
            .max(Duration::from_millis(10));
        let lazy_window = self.shared.config.lazy_commit_window;
        // Appends received but not committed (lazy ones waiting for company), and since when.
        let mut appends: Vec<(Vec<AuditEvent>, Reply<Vec<Receipt>>)> = Vec::new();
        let mut count = 0usize;
        let mut lazy_since: Option<Instant> = None;
        // Commands taken off the channel while waiting for a seal, in order.
        let mut inbox: std::collections::VecDeque<Command> = std::collections::VecDeque::new();
        loop {
            // Never asleep longer than the lazy window: lazy appends do not wake the writer.
            let wait = match lazy_since {
                Some(since) => lazy_window.saturating_sub(since.elapsed()).min(tick),
                None => tick.min(lazy_window),
            };
            // Backpressure: while the unsealed tail (held in memory) is over its bound, take nothing
            // but the end of the running seal; appends wait in the channel, unanswered.
            while self.sealing && self.next_seq - self.sealed_to >= self.shared.config.max_unsealed_events as u64 {
                match rx.recv() {
                    Ok(Command::SealDone { result }) => self.seal_done(result),
                    Ok(other) => inbox.push_back(other),
                    Err(_) => break,
                }
            }
            let first = match inbox.pop_front() {
                Some(cmd) => Some(cmd),
                None => match rx.recv_timeout(wait) {
                    Ok(cmd) => Some(cmd),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => break,
                },
            };
            let mut control: Vec<Command> = Vec::new();
            let mut eager = false;
            let mut next = first;
            while let Some(cmd) = next {
                match cmd {
                    Command::Append { events, reply } => {
                        count += events.len();
                        appends.push((events, reply));
                        eager = true;
                    }
                    other => control.push(other),
                }
                if count >= self.shared.config.max_batch_events {
                    eager = true;
                    break;
                }
                next = inbox.pop_front().or_else(|| rx.try_recv().ok());
            }
            for (events, reply, since) in std::mem::take(&mut self.shared.lazy_queue().items) {
                count += events.len();
                appends.push((events, reply));
                lazy_since = Some(lazy_since.map_or(since, |s| s.min(since)));
            }
            if count >= self.shared.config.max_batch_events {
                eager = true;
            }
            // Only lazy appends, still inside their window, and nothing else to do: wait for company.
            let due = lazy_since.is_some_and(|since| since.elapsed() >= lazy_window);
            if !appends.is_empty() && !eager && !due && control.is_empty() {
                self.housekeeping();
                continue;
            }
            let appends = std::mem::take(&mut appends);
            count = 0;
            lazy_since = None;
            if control.iter().any(|c| matches!(c, Command::Shutdown)) {
                // Every handle is gone: answer what is queued (nobody waits) and stop.
                self.refuse(appends, control);
                break;
            }
            if self.wal.is_none() {
                // Failed: answer everything with the failure; stop once asked to close.
                if self.refuse(appends, control) {
                    break;
                }
                continue;
            }
            if !appends.is_empty() {
                self.commit(appends);
            }
            for cmd in control {
                self.control(cmd);
            }
            self.housekeeping();
            if self.close_reply.is_some() && !self.sealing && self.unsealed_from == self.next_seq {
                self.finish_close();
                break;
            }
        }
        if let Some(wal) = self.wal.take() {
            let _ = wal.finish();
        }
        // Lazy appends made since the last wake: refused, as every append is from now on.
        let left = {
            let mut queue = self.shared.lazy_queue();
            queue.closed = true;
            std::mem::take(&mut queue.items)
        };
        let err = match &self.shared.lock().fatal {
            Some(m) => LakeError::Fatal(m.clone()),
            None => LakeError::Closed,
        };
        for (_, reply, _) in left {
            let _ = reply.send(Err(err.clone()));
        }
    }

    /// Answers everything with the lake's error (after a fatal failure or once closed); true when a
    /// `close` was among the commands.
    fn refuse(&mut self, appends: Vec<(Vec<AuditEvent>, Reply<Vec<Receipt>>)>, control: Vec<Command>) -> bool {
        let mut closing = false;
        let err = match &self.shared.lock().fatal {
            Some(m) => LakeError::Fatal(m.clone()),
            None => LakeError::Closed,
        };
        for (_, reply) in appends {
            let _ = reply.send(Err(err.clone()));
        }
        for cmd in control {
            match cmd {
                Command::Close { reply } => {
                    closing = true;
                    let _ = reply.send(Err(err.clone()));
                }
                Command::Seal { reply } => {
                    let _ = reply.send(Err(err.clone()));
                }
                Command::Append { reply, .. } => {
                    let _ = reply.send(Err(err.clone()));
                }
                Command::SealDone { .. } | Command::Shutdown | Command::Failed { .. } => {}
            }
        }
        closing
    }

    fn fail(&mut self, what: String) {
        tracing::error!(error = %what, "audit lake: fatal disk error; stopping the writer");
        self.shared.lock().fatal = Some(what.clone());
        self.wal = None;
        for w in self.seal_waiters.drain(..) {
            let _ = w.send(Err(LakeError::Fatal(what.clone())));
        }
        if let Some(r) = self.close_reply.take() {
            let _ = r.send(Err(LakeError::Fatal(what)));
        }
    }

    fn commit(&mut self, appends: Vec<(Vec<AuditEvent>, Reply<Vec<Receipt>>)>) {
        let Some(wal) = self.wal.as_mut() else { return };
        let mut batch_ids: HashMap<u128, u64> = HashMap::new();
        let mut slots: Vec<(Vec<Slot>, Reply<Vec<Receipt>>)> = Vec::with_capacity(appends.len());
        let mut fresh: Vec<Arc<Stored>> = Vec::new();
        let mut io_error = None;
        for (events, reply) in appends {
            if self.close_reply.is_some() {
                let _ = reply.send(Err(LakeError::Closed));
                continue;
            }
            // Stage the request's new events first, so an oversized one refuses the whole request.
            let mut pending: Vec<Result<Stored, u64>> = Vec::with_capacity(events.len());
            let mut seq = self.next_seq;
            let mut logged = self.last_logged;
            let mut local: HashMap<u128, u64> = HashMap::new();
            let mut rejected = None;
            for mut event in events {
                let key = id_key(event.id());
                if let Some(&s) = self
                    .ids
                    .get(&key)
                    .or_else(|| batch_ids.get(&key))
                    .or_else(|| local.get(&key))
                {
                    pending.push(Err(s));
                    continue;
                }
                logged = logged.max(now_ms());
                event.metadata.sequence = Some(seq);
                event.metadata.logged_time = Some(logged);
                let canonical = event.canonical_bytes();
                if canonical.is_empty() || canonical.len() > wal::MAX_PAYLOAD {
                    rejected = Some(format!(
                        "event `{}` is {} bytes in canonical form; the limit is {}",
                        event.id(),
                        canonical.len(),
                        wal::MAX_PAYLOAD
                    ));
                    break;
                }
                let leaf = merkle::leaf_hash(&canonical);
                local.insert(key, seq);
                pending.push(Ok(Stored { event, canonical, leaf }));
                seq += 1;
            }
            if let Some(msg) = rejected {
                let _ = reply.send(Err(LakeError::InvalidEvent(msg)));
                continue;
            }
            let mut request = Vec::with_capacity(pending.len());
            for p in pending {
                match p {
                    Err(dup) => request.push(Slot::Dup(dup)),
                    Ok(stored) => {
                        if io_error.is_none()
                            && let Err(e) = wal.append(stored.seq(), &stored.canonical)
                        {
                            io_error = Some(format!("writing the WAL: {e}"));
                        }
                        let stored = Arc::new(stored);
                        fresh.push(stored.clone());
                        request.push(Slot::New(stored));
                    }
                }
            }
            batch_ids.extend(local);
            self.next_seq = seq;
            self.last_logged = logged;
            slots.push((request, reply));
        }
        if io_error.is_none()
            && !fresh.is_empty()
            && let Err(e) = wal.commit()
        {
            io_error = Some(format!("fdatasync of the WAL: {e}"));
        }
        if let Some(what) = io_error {
            for (_, reply) in slots {
                let _ = reply.send(Err(LakeError::Fatal(what.clone())));
            }
            self.fail(what);
            return;
        }
        // Durable: publish, then answer.
        {
            let mut st = self.shared.lock();
            for s in &fresh {
                st.tree.push(s.leaf);
                st.tail.push(s.clone());
            }
            for (request, reply) in slots {
                let receipts = request
                    .iter()
                    .map(|slot| match slot {
                        Slot::New(s) => Receipt {
                            seq: s.seq(),
                            leaf_hash: Some(s.leaf),
                            new: true,
                        },
                        Slot::Dup(seq) => Receipt {
                            seq: *seq,
                            leaf_hash: st.tree.recent_leaf(*seq),
                            new: false,
                        },
                    })
                    .collect();
                let _ = reply.send(Ok(receipts));
            }
        }
        for s in &fresh {
            self.frontier.push(s.leaf);
        }
        self.ids.extend(batch_ids);
        if !fresh.is_empty() {
            self.checkpoint_due = true;
            if self.oldest_unsealed.is_none() {
                self.oldest_unsealed = Some(Instant::now());
            }
        }
    }

    fn control(&mut self, cmd: Command) {
        match cmd {
            Command::Append { .. } => {}
            Command::Seal { reply } => {
                if !self.sealing && self.unsealed_from == self.next_seq {
                    let _ = reply.send(Ok(()));
                } else {
                    self.seal_waiters.push(reply);
                    if !self.sealing {
                        self.start_seal();
                    }
                }
            }
            Command::Close { reply } => {
                self.close_reply = Some(reply);
                if !self.sealing && self.unsealed_from < self.next_seq {
                    self.start_seal();
                }
            }
            Command::SealDone { result } => self.seal_done(result),
            Command::Failed { what } => self.fail(what),
            Command::Shutdown => {}
        }
    }

    fn housekeeping(&mut self) {
        if self.wal.is_none() {
            return;
        }
        let shared = self.shared.clone();
        let cfg = &shared.config;
        let unsealed = self.next_seq - self.unsealed_from;
        let old = self.oldest_unsealed.is_some_and(|t| t.elapsed() >= cfg.seal_max_age);
        if !self.sealing && unsealed > 0 && (unsealed as usize >= cfg.seal_max_events || old) {
            self.start_seal();
        }
        if self.checkpoint_due && self.last_checkpoint.elapsed() >= cfg.checkpoint_interval {
            self.request_checkpoint();
        }
    }

    /// Asks the checkpointer thread for a checkpoint of the log as it is now. Signing and the
    /// `fdatasync` of `checkpoints.jsonl` happen there, so no group commit waits behind them.
    fn request_checkpoint(&mut self) {
        let asked = self
            .checkpointer
            .as_ref()
            .is_some_and(|c| c.tx.send((self.frontier.size(), self.frontier.root())).is_ok());
        if asked {
            self.last_checkpoint = Instant::now();
            self.checkpoint_due = false;
        } else {
            self.fail("the checkpoint thread is gone".to_owned());
        }
    }

    /// Stops the checkpointer thread once it has written what it was asked for.
    fn stop_checkpointer(&mut self) {
        if let Some(Checkpointer { tx, thread }) = self.checkpointer.take() {
            drop(tx);
            let _ = thread.join();
        }
    }

    /// Signs and persists a checkpoint on this thread (when closing).
    fn sign_checkpoint(&mut self) -> Option<SignedCheckpoint> {
        match self
            .shared
            .persist_checkpoint(self.frontier.size(), &self.frontier.root())
        {
            Ok(cp) => {
                self.shared.publish_checkpoint(cp.clone());
                self.last_checkpoint = Instant::now();
                self.checkpoint_due = false;
                Some(cp)
            }
            Err(e) => {
                self.fail(format!("writing a checkpoint: {e}"));
                None
            }
        }
    }

    fn start_seal(&mut self) {
        let to = self.next_seq;
        let from = self.unsealed_from;
        let waiters: Vec<Reply<()>> = self.seal_waiters.drain(..).collect();
        if from == to {
            for w in waiters {
                let _ = w.send(Ok(()));
            }
            return;
        }
        let Some(wal) = self.wal.as_mut() else { return };
        let wal_segments = match wal.cut(to) {
            Ok(s) => s,
            Err(e) => {
                for w in waiters {
                    let _ = w.send(Err(LakeError::Fatal(format!("rotating the WAL: {e}"))));
                }
                self.fail(format!("rotating the WAL: {e}"));
                return;
            }
        };
        // The seal's checkpoint (at `to`) is signed and persisted by the sealer.
        let root = self.frontier.root();
        self.last_checkpoint = Instant::now();
        self.checkpoint_due = false;
        let blocks = {
            let st = self.shared.lock();
            let range = blocks_ending_in(from, to, st.tree.block());
            st.tree.blocks()[range.start as usize..range.end as usize].to_vec()
        };
        let job = SealJob {
            from,
            to,
            blocks,
            root,
            wal_segments,
            waiters,
        };
        if let Some(tx) = &self.seal_tx
            && tx.send(SealerWork::Seal(job)).is_ok()
        {
            self.sealing = true;
            self.unsealed_from = to;
            self.oldest_unsealed = None;
        } else {
            self.fail("the sealer thread is gone".to_owned());
        }
    }

    fn seal_done(&mut self, result: Result<SealOutcome, String>) {
        self.sealing = false;
        let outcome = match result {
            Ok(o) => o,
            Err(e) => {
                self.fail(format!("sealing to Parquet: {e}"));
                return;
            }
        };
        // A verification reading the files holds the gate: leave the segments to a later seal then
        // (they are skipped on reading and on the next open).
        let mut deferred = std::mem::take(
            &mut *self
                .shared
                .deferred_wal_removals
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        );
        deferred.extend(outcome.wal_segments);
        match self.shared.files_gate.try_lock() {
            Ok(_gate) => {
                if let Some(wal) = self.wal.as_mut()
                    && let Err(e) = wal.remove(&deferred)
                {
                    // The events are sealed; a leftover WAL segment is skipped on the next open.
                    tracing::warn!(error = %e, "audit lake: could not delete sealed WAL segments");
                }
            }
            Err(_) => {
                *self
                    .shared
                    .deferred_wal_removals
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()) = deferred;
            }
        }
        let (released, cache) = {
            let mut st = self.shared.lock();
            let n = (outcome.to - st.tail_base) as usize;
            let n = n.min(st.tail.len());
            let released: Vec<Arc<Stored>> = st.tail.drain(..n).collect();
            st.tail_base = outcome.to;
            self.sealed_to = outcome.to;
            let cache = std::mem::take(&mut st.tail_cache);
            st.manifest.push(outcome.entry);
            (released, cache)
        };
        // The sealer frees them (if it is gone, they are freed here).
        if let Some(tx) = &self.seal_tx {
            let _ = tx.send(SealerWork::Release(released, cache));
        }
        for w in outcome.waiters {
            let _ = w.send(Ok(()));
        }
        if self.unsealed_from < self.next_seq && (!self.seal_waiters.is_empty() || self.close_reply.is_some()) {
            self.start_seal();
        } else {
            for w in self.seal_waiters.drain(..) {
                let _ = w.send(Ok(()));
            }
        }
    }

    fn finish_close(&mut self) {
        self.stop_checkpointer();
        if self.checkpoint_due {
            self.sign_checkpoint();
        }
        self.seal_tx = None;
        let result = match self.wal.take().map(Wal::finish) {
            Some(Err(e)) => Err(LakeError::Fatal(format!("closing the WAL: {e}"))),
            _ => Ok(()),
        };
        if let Some(r) = self.close_reply.take() {
            let _ = r.send(result);
        }
    }
}

/// Signs and persists the checkpoints the writer asks for, newest first: asks that queued up while
/// one was being written are folded into the newest. A failure stops the lake (through `failed`).
fn run_checkpointer(shared: Arc<Shared>, rx: Receiver<(u64, Hash)>, failed: Sender<Command>) {
    while let Ok(mut next) = rx.recv() {
        while let Ok(newer) = rx.try_recv() {
            next = newer;
        }
        let (size, root) = next;
        match shared.persist_checkpoint(size, &root) {
            Ok(cp) => shared.publish_checkpoint(cp),
            Err(e) => {
                let _ = failed.send(Command::Failed {
                    what: format!("writing a checkpoint: {e}"),
                });
                break;
            }
        }
    }
}

/// Seals `events` (`job.from..job.to`): signs and persists the checkpoint at `job.to`, writes the
/// Parquet files, then the manifest line that records them.
fn seal(shared: &Shared, job: &SealJob, events: &[Arc<Stored>], opts: ParquetOptions) -> Result<ManifestEntry, String> {
    let checkpoint = shared
        .persist_checkpoint(job.to, &job.root)
        .map_err(|e| format!("writing the seal's checkpoint: {e}"))?;
    shared.publish_checkpoint(checkpoint.clone());
    let files = segment::write_files(&shared.dir, events, opts)?;
    let entry = segment::manifest_entry(events, files, &job.blocks, &checkpoint);
    segment::append_manifest(&shared.dir, &entry).map_err(|e| format!("writing the manifest: {e}"))?;
    Ok(entry)
}

fn run_sealer(shared: Arc<Shared>, rx: Receiver<SealerWork>, tx: Sender<Command>) {
    // Sealing is background work that takes a core for a second or more: at a lower priority, the
    // writer and the requests waiting on it go first on a busy machine.
    run_in_background("the sealer");
    let opts = shared.config.parquet_options();
    while let Ok(work) = rx.recv() {
        let job = match work {
            SealerWork::Seal(job) => job,
            SealerWork::Release(events, batches) => {
                drop((events, batches));
                continue;
            }
        };
        let started = Instant::now();
        let events: Vec<Arc<Stored>> = {
            let st = shared.lock();
            let start = (job.from - st.tail_base) as usize;
            let end = (job.to - st.tail_base) as usize;
            st.tail.get(start..end).map(<[_]>::to_vec).unwrap_or_default()
        };
        let result = if events.len() as u64 != job.to - job.from {
            Err(format!("events {}..{} are not in the tail", job.from, job.to))
        } else {
            let _gate = shared.files_gate.lock().unwrap_or_else(|e| e.into_inner());
            seal(&shared, &job, &events, opts)
        };
        // The tail still holds every event until the writer lets go of them, and then hands them
        // back here to be freed.
        drop(events);
        tracing::debug!(
            from = job.from,
            to = job.to,
            ms = started.elapsed().as_millis(),
            "audit lake: sealed"
        );
        let waiters = job.waiters;
        let outcome = match result {
            Ok(entry) => Ok(SealOutcome {
                to: job.to,
                entry,
                wal_segments: job.wal_segments,
                waiters,
            }),
            Err(e) => {
                for w in waiters {
                    let _ = w.send(Err(LakeError::Fatal(format!("sealing to Parquet: {e}"))));
                }
                Err(e)
            }
        };
        if tx.send(Command::SealDone { result: outcome }).is_err() {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Decision;
    use crate::event::tests::{call, subject};

    fn ev(i: u64) -> AuditEvent {
        AuditEvent::tool_decision(format!("e{i}"), 1_764_000_000_000, &subject(), &call(Decision::Allow))
    }

    fn config() -> LakeConfig {
        LakeConfig {
            wal_segment_bytes: 1 << 20,
            ..LakeConfig::default()
        }
    }

    /// The unsealed tail, held in memory, stays within its bound (plus one batch): appends wait for
    /// the running seal rather than outrun it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn appends_wait_for_the_seal_when_the_tail_is_full() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = LakeConfig {
            seal_max_events: 64,
            max_unsealed_events: 128,
            ..config()
        };
        let lake = Lake::open(dir.path(), cfg).unwrap();
        for i in 0..40u64 {
            lake.append((i * 50..i * 50 + 50).map(ev).collect()).await.unwrap();
            let unsealed: usize = lake.snapshot().unwrap().tail.iter().map(|b| b.num_rows()).sum();
            assert!(unsealed <= 128 + 50, "{unsealed} events unsealed");
        }
        lake.close().await.unwrap();
        let report = crate::verify::verify(dir.path()).unwrap();
        assert!(report.is_ok() && report.events == 2000, "{report}");
    }

    /// A lazy append waits for the next eager one and is committed with it, or for its window.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lazy_append_rides_along_with_the_next_commit() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(
            dir.path(),
            LakeConfig {
                lazy_commit_window: Duration::from_secs(3600),
                ..config()
            },
        )
        .unwrap();
        let lazy = tokio::spawn({
            let lake = lake.clone();
            async move { lake.append_lazy(vec![ev(0)]).await }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!lazy.is_finished(), "a lazy append was committed on its own");
        assert_eq!(lake.size(), 0, "an uncommitted event is not visible");
        let eager = lake.append(vec![ev(1)]).await.unwrap();
        let lazy = tokio::time::timeout(Duration::from_secs(10), lazy)
            .await
            .expect("the lazy append was not committed with the eager one")
            .unwrap()
            .unwrap();
        // One commit for both; which comes first in the log is not specified.
        let mut seqs = [lazy[0].seq, eager[0].seq];
        seqs.sort_unstable();
        assert_eq!(seqs, [0, 1]);
        lake.close().await.unwrap();

        // Alone, it is committed once its window has passed.
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(
            dir.path(),
            LakeConfig {
                lazy_commit_window: Duration::from_millis(50),
                ..config()
            },
        )
        .unwrap();
        let receipts = tokio::time::timeout(Duration::from_secs(10), lake.append_lazy(vec![ev(2)]))
            .await
            .expect("a lone lazy append was never committed")
            .unwrap();
        assert!(receipts[0].new);
        lake.close().await.unwrap();
        drop(Lake::open(dir.path(), config()).map(|l| assert_eq!(l.size(), 1)));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_fdatasync_is_fatal_and_never_retried() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(dir.path(), config()).unwrap();
        lake.append((0..10).map(ev).collect()).await.unwrap();
        *wal::FAIL_SYNC_UNDER.lock().unwrap() = Some(dir.path().to_owned());
        let err = lake.append(vec![ev(10)]).await.unwrap_err();
        assert!(matches!(err, LakeError::Fatal(_)), "{err}");
        assert!(err.to_string().contains("injected fdatasync failure"), "{err}");
        // The disk is fine again, but the lake stays stopped: no retry of a failed fsync.
        *wal::FAIL_SYNC_UNDER.lock().unwrap() = None;
        assert!(matches!(
            lake.append(vec![ev(11)]).await.unwrap_err(),
            LakeError::Fatal(_)
        ));
        assert!(matches!(lake.seal().await.unwrap_err(), LakeError::Fatal(_)));
        assert!(matches!(lake.clone().close().await.unwrap_err(), LakeError::Fatal(_)));
        drop(lake);
        // Recovery: every acknowledged event is there.
        let lake = Lake::open(dir.path(), config()).unwrap();
        assert!(lake.size() >= 10);
        let again = lake.append((0..10).map(ev).collect()).await.unwrap();
        assert!(again.iter().all(|r| !r.new));
        lake.close().await.unwrap();
    }
}
