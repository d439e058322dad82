//! Evidence packs: one file an auditor can verify offline, proving that the events it holds are every
//! event the log recorded in a time window ("complete range" mode, audit-lake.md §3.3), unaltered.
//!
//! The container is a POSIX ustar archive (readable with `tar -xf`) of exactly these members, in
//! this order, with mode 0644, mtime 0 and two zero blocks at the end:
//!
//! | member | content |
//! |---|---|
//! | `manifest.json` | format, origin, window, seq range `[first_seq, end_seq)`, tree size, counts, and the size and SHA-256 of every other member |
//! | `manifest.sig` | a signed note by the log key over `warden-evidence-pack/1\n<SHA-256 of manifest.json>\n` |
//! | `checkpoint.txt` | the signed checkpoint (C2SP signed note) of size `tree_size` |
//! | `log-key.pub` | the log's C2SP verifier key (compare it with the one pinned out of band) |
//! | `proofs.json` | range proof for `[first_seq, end_seq)`, inclusion proofs of the boundary events `first_seq − 1` and `end_seq` (with their canonical bytes), optional consistency proof from a pinned size |
//! | `events.jsonl` | canonical bytes of every event in the range (one per line, in seq order) |
//! | `redacted.jsonl` | `{"seq","leaf_hash"}` for events in the range left out by a team filter |
//! | `events.parquet` | the same events as `events.jsonl`, in the lake's Parquet schema |
//! | `control-plane.json` | the caller's snapshot of guardrails, scopes, grants and agent inventory |
//!
//! The window is on `logged_time` (the sequencer's monotone clock), so the range is contiguous and
//! its ends are proven by the boundary events. With a team filter, other teams' events in the range
//! appear only as leaf hashes: the range is still proven complete, but that the redacted events are
//! not the team's rests on the exporter (the report says so).

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::checkpoint::VerifierKey;
use crate::event::{AuditEvent, canonical_json, now_ms};
use crate::lake::{Lake, LakeError};
use crate::merkle::{self, Hash};
use crate::schema::{self, COLUMNS, Cell, Row};
use crate::segment::{self, ParquetOptions, Stored};

const FORMAT: &str = "warden-evidence-pack/1";
const MEMBERS: [&str; 9] = [
    "manifest.json",
    "manifest.sig",
    "checkpoint.txt",
    "log-key.pub",
    "proofs.json",
    "events.jsonl",
    "redacted.jsonl",
    "events.parquet",
    "control-plane.json",
];

/// What to export.
#[derive(Debug, Clone)]
pub struct PackRequest {
    /// Window start (inclusive), epoch ms of `logged_time`.
    pub from_ms: i64,
    /// Window end (exclusive).
    pub to_ms: i64,
    /// Only this team's events in full (others as leaf hashes).
    pub team: Option<String>,
    /// Guardrails, scopes, grants and the agent inventory in force, as the caller has them.
    pub control_plane: serde_json::Value,
    /// The tree size of the checkpoint the auditor pinned last time: a consistency proof from it is
    /// included.
    pub since_size: Option<u64>,
}

/// Progress of a long export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub stage: &'static str,
    pub done: u64,
    pub total: u64,
}

/// What an export wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackSummary {
    pub path: PathBuf,
    pub bytes: u64,
    pub first_seq: u64,
    pub end_seq: u64,
    pub events: u64,
    pub redacted: u64,
    pub tree_size: u64,
}

/// Why a pack does not verify. Every message names the member, seq or byte concerned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PackError {
    #[error("cannot read the pack `{path}`: {message}")]
    Io { path: PathBuf, message: String },
    #[error("the pack is not a valid archive at byte {offset}: {reason} (bytes were changed, dropped or added)")]
    Container { offset: u64, reason: String },
    #[error("member `{0}` is missing from the pack (dropped)")]
    Missing(String),
    #[error("member `{0}` is not part of an evidence pack (added)")]
    Unexpected(String),
    #[error("member `{name}` was altered: {reason}")]
    Altered { name: String, reason: String },
    #[error("the signature over manifest.json does not verify: {0}")]
    Signature(String),
    #[error("the log key in the pack is `{found}` but `{pinned}` was pinned")]
    WrongKey { found: String, pinned: String },
    #[error("event seq {seq}: {reason}")]
    Event { seq: u64, reason: String },
    #[error("the events do not prove the signed checkpoint: {0}")]
    Proof(String),
}

/// The outcome of a successful `verify_pack`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackReport {
    pub origin: String,
    pub key_id: String,
    pub tree_size: u64,
    pub root: Hash,
    pub from_ms: i64,
    pub to_ms: i64,
    pub team: Option<String>,
    pub first_seq: u64,
    pub end_seq: u64,
    pub events: u64,
    pub redacted: u64,
    /// `(size, root)` of the earlier checkpoint the pack proves consistency from.
    pub consistent_with: Option<(u64, Hash)>,
    pub notes: Vec<String>,
}

impl std::fmt::Display for PackReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "ok: {} events (seq {}..{}) are every event logged in [{}, {}) of log `{}` (key {}), proven against its signed checkpoint of size {} (root {})",
            self.events,
            self.first_seq,
            self.end_seq,
            self.from_ms,
            self.to_ms,
            self.origin,
            self.key_id,
            self.tree_size,
            merkle::to_hex(&self.root)
        )?;
        if let Some((size, root)) = &self.consistent_with {
            writeln!(
                f,
                "  the log extends the checkpoint of size {size} (root {})",
                merkle::to_hex(root)
            )?;
        }
        for n in &self.notes {
            writeln!(f, "  note: {n}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    format: String,
    origin: String,
    created_ms: i64,
    from_ms: i64,
    to_ms: i64,
    team: Option<String>,
    first_seq: u64,
    end_seq: u64,
    tree_size: u64,
    events: u64,
    redacted: u64,
    members: Vec<MemberHash>,
}

#[derive(Debug, Serialize, Deserialize)]
struct MemberHash {
    name: String,
    size: u64,
    sha256: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct Boundary {
    seq: u64,
    canonical: String,
    inclusion: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Consistency {
    from_size: u64,
    from_root: String,
    hashes: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Proofs {
    tree_size: u64,
    range: Vec<String>,
    before: Option<Boundary>,
    after: Option<Boundary>,
    consistency: Option<Consistency>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Redacted {
    seq: u64,
    leaf_hash: String,
}

fn sha_hex(bytes: &[u8]) -> String {
    merkle::hex(&Sha256::digest(bytes))
}

fn hexes(hashes: &[Hash]) -> Vec<String> {
    hashes.iter().map(merkle::to_hex).collect()
}

impl Lake {
    /// Writes an evidence pack for `req` to `out` (atomically: `out.tmp`, synced, renamed). Blocking
    /// (reads segments, writes the file): call it from `spawn_blocking` in async code.
    pub fn export_pack(
        &self,
        req: &PackRequest,
        out: &Path,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<PackSummary, LakeError> {
        if req.from_ms >= req.to_ms {
            return Err(LakeError::Config(format!(
                "empty window: from {} is not before to {}",
                req.from_ms, req.to_ms
            )));
        }
        let shared = self.shared().clone();
        let (tree, manifest, tail) = {
            let st = shared.lock();
            (st.tree.clone(), st.manifest.clone(), st.tail.clone())
        };
        let n = tree.len();
        let root = tree
            .subtrees(|_| Err("the root needs no leaves".to_owned()))
            .root(n)
            .map_err(LakeError::Damaged)?;
        let checkpoint = {
            let latest = self.checkpoint();
            if latest.size == n && latest.root == root {
                latest
            } else {
                shared
                    .persist_checkpoint(n, &root)
                    .map_err(|e| LakeError::Fatal(format!("writing a checkpoint: {e}")))?
            }
        };

        // Load the events of every seal whose logged_time range touches the window, with one seal of
        // margin on each side for the boundary events, plus the tail.
        let touching: Vec<usize> = manifest
            .iter()
            .enumerate()
            .filter(|(_, m)| m.last_logged_time >= req.from_ms && m.first_logged_time < req.to_ms)
            .map(|(i, _)| i)
            .collect();
        let mut wanted: Vec<usize> = Vec::new();
        match (touching.first(), touching.last()) {
            (Some(&lo), Some(&hi)) => {
                wanted.extend(lo.saturating_sub(1)..=(hi + 1).min(manifest.len().saturating_sub(1)))
            }
            _ => {
                // The window falls between seals (or after them): the boundaries are the neighbours.
                let after = manifest.iter().position(|m| m.first_logged_time >= req.to_ms);
                let before = manifest.iter().rposition(|m| m.last_logged_time < req.from_ms);
                wanted.extend(before);
                wanted.extend(after);
            }
        }
        let mut events: BTreeMap<u64, Arc<Stored>> = BTreeMap::new();
        let total = wanted.len() as u64 + 1;
        for (k, &i) in wanted.iter().enumerate() {
            progress(Progress {
                stage: "reading sealed segments",
                done: k as u64,
                total,
            });
            for file in &manifest[i].files {
                let path = shared.dir.join(&file.path);
                let raw = schema::column_index("raw_canonical").unwrap_or(COLUMNS.len() - 1);
                for batch in segment::read_file(&path, Some(&[raw])).map_err(LakeError::Damaged)? {
                    for r in 0..batch.num_rows() {
                        let Ok(Cell::Bytes(canonical)) =
                            schema::read_cell(batch.column(0).as_ref(), schema::Kind::Bytes, r)
                        else {
                            return Err(LakeError::Damaged(format!(
                                "`{}` row {r}: unreadable raw_canonical",
                                file.path
                            )));
                        };
                        let event = AuditEvent::from_canonical(&canonical)
                            .map_err(|e| LakeError::Damaged(format!("`{}` row {r}: {e}", file.path)))?;
                        let seq = event.metadata.sequence.unwrap_or(u64::MAX);
                        let leaf = merkle::leaf_hash(&canonical);
                        events.insert(seq, Arc::new(Stored { event, canonical, leaf }));
                    }
                }
            }
        }
        progress(Progress {
            stage: "reading sealed segments",
            done: total - 1,
            total,
        });
        for s in tail {
            events.insert(s.seq(), s);
        }
        progress(Progress {
            stage: "reading sealed segments",
            done: total,
            total,
        });

        let logged = |s: &Stored| s.event.metadata.logged_time.unwrap_or(0);
        let a = events
            .values()
            .find(|s| logged(s) >= req.from_ms)
            .map_or(n, |s| s.seq());
        let b = events.values().find(|s| logged(s) >= req.to_ms).map_or(n, |s| s.seq());
        for seq in a.saturating_sub(1)..(b + 1).min(n) {
            if !events.contains_key(&seq) {
                return Err(LakeError::Damaged(format!(
                    "event seq {seq} is in no segment the manifest lists"
                )));
            }
        }
        // Proofs need the leaves of the blocks they reach into: from the events read above, or
        // from the files (each block is checked against the root the log keeps for it).
        let mut subtrees = tree.subtrees(|k| {
            let (lo, hi) = (k * tree.block(), (k + 1) * tree.block());
            let mut leaves: Vec<Option<Hash>> = (lo..hi).map(|seq| events.get(&seq).map(|s| s.leaf)).collect();
            let missing: Vec<u64> = (lo..hi).filter(|seq| !events.contains_key(seq)).collect();
            if let (Some(&first), Some(&last)) = (missing.first(), missing.last()) {
                let read = segment::read_leaves(&shared.dir, &manifest, first, last + 1)?;
                for (seq, leaf) in (first..=last).zip(read) {
                    leaves[(seq - lo) as usize] = Some(leaf);
                }
            }
            leaves
                .into_iter()
                .collect::<Option<Vec<Hash>>>()
                .ok_or_else(|| format!("events {lo}..{hi} are not all in the lake"))
        });
        let damaged =
            |e: merkle::ProofError| LakeError::Damaged(format!("{e}; run `warden audit verify` to see what changed"));
        let mut boundary = |seq: u64| -> Result<Option<Boundary>, LakeError> {
            let Some(s) = events.get(&seq) else { return Ok(None) };
            let proof = merkle::inclusion_proof_in(&mut subtrees, seq, n).map_err(damaged)?;
            merkle::verify_inclusion(seq, n, &s.leaf, &proof, &root).map_err(|e| {
                LakeError::Damaged(format!(
                    "event seq {seq} as stored is not the one in the log ({e}); run `warden audit verify`"
                ))
            })?;
            Ok(Some(Boundary {
                seq,
                canonical: String::from_utf8_lossy(&s.canonical).into_owned(),
                inclusion: hexes(&proof),
            }))
        };
        let before = if a > 0 { boundary(a - 1)? } else { None };
        let after = if b < n { boundary(b)? } else { None };
        let range = if a < b {
            let proof = merkle::range_proof_in(&mut subtrees, a, b, n).map_err(damaged)?;
            let range_leaves: Vec<Hash> = (a..b).filter_map(|seq| events.get(&seq).map(|s| s.leaf)).collect();
            if merkle::root_from_range(a, b, n, &range_leaves, &proof).ok() != Some(root) {
                return Err(LakeError::Damaged(format!(
                    "events {a}..{b} as stored are not the ones in the log; run `warden audit verify`"
                )));
            }
            hexes(&proof)
        } else {
            Vec::new()
        };
        let consistency = match req.since_size {
            Some(m) if m <= n => Some(Consistency {
                from_size: m,
                from_root: merkle::to_hex(&subtrees.root(m).map_err(LakeError::Damaged)?),
                hashes: hexes(&merkle::consistency_proof_in(&mut subtrees, m, n).map_err(damaged)?),
            }),
            Some(m) => {
                return Err(LakeError::Config(format!(
                    "pinned size {m} is larger than the log ({n} events)"
                )));
            }
            None => None,
        };

        let mut jsonl = Vec::new();
        let mut redacted = Vec::new();
        let mut included: Vec<Arc<Stored>> = Vec::new();
        for seq in a..b {
            let Some(s) = events.get(&seq) else { continue };
            if req
                .team
                .as_ref()
                .is_none_or(|t| s.event.warden.team.as_ref() == Some(t))
            {
                jsonl.extend_from_slice(&s.canonical);
                jsonl.push(b'\n');
                included.push(s.clone());
            } else {
                let mut line = serde_json::to_vec(&Redacted {
                    seq,
                    leaf_hash: merkle::to_hex(&s.leaf),
                })
                .map_err(|e| LakeError::Damaged(e.to_string()))?;
                line.push(b'\n');
                redacted.extend_from_slice(&line);
            }
        }
        progress(Progress {
            stage: "writing the pack",
            done: 0,
            total: 1,
        });
        let parquet = parquet_bytes(&mut included, shared.config.parquet_options())?;
        let proofs = serde_json::to_vec_pretty(&Proofs {
            tree_size: n,
            range,
            before,
            after,
            consistency,
        })
        .map_err(|e| LakeError::Damaged(e.to_string()))?;
        let mut key_pub = self.verifier_key();
        key_pub.push('\n');
        let members: Vec<(&str, Vec<u8>)> = vec![
            ("checkpoint.txt", checkpoint.note.clone().into_bytes()),
            ("log-key.pub", key_pub.into_bytes()),
            ("proofs.json", proofs),
            ("events.jsonl", jsonl),
            ("redacted.jsonl", redacted),
            ("events.parquet", parquet),
            ("control-plane.json", canonical_json(&req.control_plane)),
        ];
        let manifest_doc = Manifest {
            format: FORMAT.to_owned(),
            origin: shared.key.name().to_owned(),
            created_ms: now_ms(),
            from_ms: req.from_ms,
            to_ms: req.to_ms,
            team: req.team.clone(),
            first_seq: a,
            end_seq: b,
            tree_size: n,
            events: included.len() as u64,
            redacted: (b - a) - included.len() as u64,
            members: members
                .iter()
                .map(|(name, data)| MemberHash {
                    name: (*name).to_owned(),
                    size: data.len() as u64,
                    sha256: sha_hex(data),
                })
                .collect(),
        };
        let manifest_bytes = serde_json::to_vec_pretty(&manifest_doc).map_err(|e| LakeError::Damaged(e.to_string()))?;
        let sig = shared
            .key
            .sign_note(&format!("{FORMAT}\n{}\n", sha_hex(&manifest_bytes)));
        let mut archive = Vec::new();
        tar_member(&mut archive, "manifest.json", &manifest_bytes);
        tar_member(&mut archive, "manifest.sig", sig.as_bytes());
        for (name, data) in &members {
            tar_member(&mut archive, name, data);
        }
        archive.extend_from_slice(&[0u8; 1024]);

        let tmp = out.with_extension("tmp");
        let io = |e: std::io::Error| LakeError::Io {
            path: out.to_owned(),
            message: e.to_string(),
        };
        let mut f = File::create(&tmp).map_err(io)?;
        f.write_all(&archive).map_err(io)?;
        f.sync_all().map_err(io)?;
        fs::rename(&tmp, out).map_err(io)?;
        progress(Progress {
            stage: "writing the pack",
            done: 1,
            total: 1,
        });
        Ok(PackSummary {
            path: out.to_owned(),
            bytes: archive.len() as u64,
            first_seq: a,
            end_seq: b,
            events: manifest_doc.events,
            redacted: manifest_doc.redacted,
            tree_size: n,
        })
    }
}

fn parquet_bytes(events: &mut [Arc<Stored>], opts: ParquetOptions) -> Result<Vec<u8>, LakeError> {
    events.sort_by_key(|e| (e.event.time, e.seq()));
    let props = segment::writer_properties(opts).map_err(LakeError::Config)?;
    let mut buf = Vec::new();
    let mut w = ArrowWriter::try_new(&mut buf, schema::arrow_schema(), Some(props))
        .map_err(|e| LakeError::Damaged(e.to_string()))?;
    for chunk in events.chunks(65_536) {
        let rows: Vec<Row<'_>> = chunk.iter().map(|e| e.row()).collect();
        let batch = schema::to_batch(&rows).map_err(LakeError::Damaged)?;
        w.write(&batch).map_err(|e| LakeError::Damaged(e.to_string()))?;
    }
    w.close().map_err(|e| LakeError::Damaged(e.to_string()))?;
    Ok(buf)
}

/// Appends one ustar member (regular file, mode 0644, mtime 0).
fn tar_member(out: &mut Vec<u8>, name: &str, data: &[u8]) {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    h[100..108].copy_from_slice(b"0000644\0");
    h[108..116].copy_from_slice(b"0000000\0");
    h[116..124].copy_from_slice(b"0000000\0");
    h[124..136].copy_from_slice(format!("{:011o}\0", data.len()).as_bytes());
    h[136..148].copy_from_slice(b"00000000000\0");
    h[148..156].copy_from_slice(b"        ");
    h[156] = b'0';
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    out.extend_from_slice(&h);
    out.extend_from_slice(data);
    let pad = (512 - data.len() % 512) % 512;
    out.extend(std::iter::repeat_n(0u8, pad));
}

/// Parses the archive strictly: every header checksum, every size, nothing after the end marker.
fn read_tar(data: &[u8]) -> Result<Vec<(String, &[u8])>, PackError> {
    let bad = |offset: usize, reason: String| PackError::Container {
        offset: offset as u64,
        reason,
    };
    let mut out = Vec::new();
    let mut off = 0usize;
    loop {
        let Some(h) = data.get(off..off + 512) else {
            return Err(bad(
                off,
                "the archive ends without its end marker (truncated)".to_owned(),
            ));
        };
        if h.iter().all(|&b| b == 0) {
            let rest = &data[off..];
            if rest.len() != 1024 || rest.iter().any(|&b| b != 0) {
                return Err(bad(
                    off,
                    format!(
                        "{} bytes follow the end of the archive where 1024 zero bytes belong",
                        rest.len()
                    ),
                ));
            }
            return Ok(out);
        }
        let field = |r: std::ops::Range<usize>| {
            std::str::from_utf8(&h[r])
                .unwrap_or("")
                .trim_matches(|c| c == '\0' || c == ' ')
                .to_owned()
        };
        let want: u32 =
            u32::from_str_radix(&field(148..156), 8).map_err(|_| bad(off, "unreadable header checksum".to_owned()))?;
        let got: u32 = h
            .iter()
            .enumerate()
            .map(|(i, &b)| if (148..156).contains(&i) { 32 } else { u32::from(b) })
            .sum();
        if want != got {
            return Err(bad(
                off,
                format!("header checksum mismatch (header of member {} changed)", out.len() + 1),
            ));
        }
        if &h[257..263] != b"ustar\0" || h[156] != b'0' {
            return Err(bad(off, "not a plain ustar file entry".to_owned()));
        }
        let name = field(0..100);
        let size =
            usize::from_str_radix(&field(124..136), 8).map_err(|_| bad(off, format!("unreadable size of `{name}`")))?;
        let start = off + 512;
        let end = start.checked_add(size).filter(|&e| e <= data.len()).ok_or_else(|| {
            bad(
                off,
                format!("member `{name}` claims {size} bytes but the archive ends first (bytes dropped)"),
            )
        })?;
        let padded = end + (512 - size % 512) % 512;
        if padded > data.len() || data[end..padded].iter().any(|&b| b != 0) {
            return Err(bad(
                end,
                format!("the padding after `{name}` is not zero (bytes added or shifted)"),
            ));
        }
        out.push((name, &data[start..end]));
        off = padded;
    }
}

/// Verifies a pack offline with the key it carries (compare `key_id` with the pinned one).
pub fn verify_pack(path: &Path) -> Result<PackReport, PackError> {
    verify_pack_with_key(path, None)
}

/// Verifies a pack offline; with `pinned`, the pack's key must be that verifier key.
pub fn verify_pack_with_key(path: &Path, pinned: Option<&str>) -> Result<PackReport, PackError> {
    let data = fs::read(path).map_err(|e| PackError::Io {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    let members = read_tar(&data)?;
    let mut by_name: BTreeMap<&str, &[u8]> = BTreeMap::new();
    for (name, body) in &members {
        if !MEMBERS.contains(&name.as_str()) {
            return Err(PackError::Unexpected(name.clone()));
        }
        if by_name.insert(name.as_str(), body).is_some() {
            return Err(PackError::Unexpected(format!("{name} (a second copy)")));
        }
    }
    let get = |name: &str| {
        by_name
            .get(name)
            .copied()
            .ok_or_else(|| PackError::Missing(name.to_owned()))
    };
    let altered = |name: &str, reason: String| PackError::Altered {
        name: name.to_owned(),
        reason,
    };

    // The key, then the manifest's signature, then every member's hash.
    let key_text = std::str::from_utf8(get("log-key.pub")?)
        .map_err(|_| altered("log-key.pub", "not UTF-8".to_owned()))?
        .trim();
    if let Some(p) = pinned
        && p.trim() != key_text
    {
        return Err(PackError::WrongKey {
            found: key_text.to_owned(),
            pinned: p.trim().to_owned(),
        });
    }
    let key = VerifierKey::parse(key_text).map_err(|e| altered("log-key.pub", e.to_string()))?;
    let manifest_bytes = get("manifest.json")?;
    let sig = std::str::from_utf8(get("manifest.sig")?).map_err(|_| altered("manifest.sig", "not UTF-8".to_owned()))?;
    let signed = key.verify_note(sig).map_err(|e| PackError::Signature(e.to_string()))?;
    if signed != format!("{FORMAT}\n{}\n", sha_hex(manifest_bytes)) {
        return Err(altered(
            "manifest.json",
            "its SHA-256 is not the one the log key signed".to_owned(),
        ));
    }
    let manifest: Manifest =
        serde_json::from_slice(manifest_bytes).map_err(|e| altered("manifest.json", e.to_string()))?;
    if manifest.format != FORMAT {
        return Err(altered(
            "manifest.json",
            format!("unknown format `{}`", manifest.format),
        ));
    }
    for name in &MEMBERS[2..] {
        let body = get(name)?;
        let Some(m) = manifest.members.iter().find(|m| m.name == *name) else {
            return Err(altered("manifest.json", format!("it does not list `{name}`")));
        };
        if m.size != body.len() as u64 {
            return Err(altered(
                name,
                format!("{} bytes where the signed manifest says {}", body.len(), m.size),
            ));
        }
        if m.sha256 != sha_hex(body) {
            return Err(altered(name, "its SHA-256 differs from the signed manifest".to_owned()));
        }
    }

    // The checkpoint.
    let note =
        std::str::from_utf8(get("checkpoint.txt")?).map_err(|_| altered("checkpoint.txt", "not UTF-8".to_owned()))?;
    let cp = key
        .verify_checkpoint(note)
        .map_err(|e| altered("checkpoint.txt", e.to_string()))?;
    let (a, b, n) = (manifest.first_seq, manifest.end_seq, cp.size);
    if manifest.tree_size != n || a > b || b > n {
        return Err(altered(
            "manifest.json",
            format!(
                "range {a}..{b} and tree size {} do not fit the checkpoint of size {n}",
                manifest.tree_size
            ),
        ));
    }

    // The events and redacted leaves must be exactly [a, b) in order.
    let mut leaves: BTreeMap<u64, Hash> = BTreeMap::new();
    let mut canon: BTreeMap<u64, (&[u8], AuditEvent)> = BTreeMap::new();
    let mut notes = Vec::new();
    for (i, line) in get("events.jsonl")?.split(|&c| c == b'\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        let event =
            AuditEvent::from_canonical(line).map_err(|e| altered("events.jsonl", format!("line {}: {e}", i + 1)))?;
        let seq = event
            .metadata
            .sequence
            .ok_or_else(|| altered("events.jsonl", format!("line {} has no sequence", i + 1)))?;
        if seq < a || seq >= b {
            return Err(PackError::Event {
                seq,
                reason: format!("outside the pack's range {a}..{b} (added)"),
            });
        }
        let logged = event.metadata.logged_time.unwrap_or(i64::MIN);
        if logged < manifest.from_ms || logged >= manifest.to_ms {
            return Err(PackError::Event {
                seq,
                reason: format!("logged at {logged}, outside the window"),
            });
        }
        if let Some(team) = &manifest.team
            && event.warden.team.as_ref() != Some(team)
        {
            return Err(PackError::Event {
                seq,
                reason: format!("belongs to another team than `{team}`"),
            });
        }
        if leaves.insert(seq, merkle::leaf_hash(line)).is_some() {
            return Err(PackError::Event {
                seq,
                reason: "appears twice (added)".to_owned(),
            });
        }
        canon.insert(seq, (line, event));
    }
    for (i, line) in get("redacted.jsonl")?.split(|&c| c == b'\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        let r: Redacted =
            serde_json::from_slice(line).map_err(|e| altered("redacted.jsonl", format!("line {}: {e}", i + 1)))?;
        let h = merkle::from_hex(&r.leaf_hash)
            .ok_or_else(|| altered("redacted.jsonl", format!("line {}: bad hash", i + 1)))?;
        if r.seq < a || r.seq >= b || leaves.insert(r.seq, h).is_some() {
            return Err(PackError::Event {
                seq: r.seq,
                reason: "redacted entry outside the range or duplicated".to_owned(),
            });
        }
    }
    if let Some(seq) = (a..b).find(|s| !leaves.contains_key(s)) {
        return Err(PackError::Event {
            seq,
            reason: "missing from the pack (dropped)".to_owned(),
        });
    }
    if manifest.events != canon.len() as u64 || manifest.redacted != (b - a) - canon.len() as u64 {
        return Err(altered(
            "manifest.json",
            "event counts do not match the members".to_owned(),
        ));
    }

    // Proofs against the checkpoint root.
    let proofs: Proofs =
        serde_json::from_slice(get("proofs.json")?).map_err(|e| altered("proofs.json", e.to_string()))?;
    let parse_hashes = |v: &[String]| -> Result<Vec<Hash>, PackError> {
        v.iter()
            .map(|h| merkle::from_hex(h).ok_or_else(|| altered("proofs.json", format!("`{h}` is not a hash"))))
            .collect()
    };
    if proofs.tree_size != n {
        return Err(altered(
            "proofs.json",
            format!("tree size {} is not the checkpoint's {n}", proofs.tree_size),
        ));
    }
    if a < b {
        let range_leaves: Vec<Hash> = leaves.values().copied().collect();
        let got = merkle::root_from_range(a, b, n, &range_leaves, &parse_hashes(&proofs.range)?)
            .map_err(|e| PackError::Proof(e.to_string()))?;
        if got != cp.root {
            return Err(PackError::Proof(format!(
                "events {a}..{b} do not reproduce the checkpoint root: an event was altered, dropped, added or reordered"
            )));
        }
    }
    let check_boundary = |bd: &Option<Boundary>, seq: u64, is_before: bool| -> Result<(), PackError> {
        let Some(bd) = bd else {
            return Err(altered("proofs.json", format!("the boundary event {seq} is missing")));
        };
        let ev = AuditEvent::from_canonical(bd.canonical.as_bytes()).map_err(|e| altered("proofs.json", e))?;
        if bd.seq != seq || ev.metadata.sequence != Some(seq) {
            return Err(altered(
                "proofs.json",
                format!("the boundary event is seq {} where {seq} belongs", bd.seq),
            ));
        }
        let leaf = merkle::leaf_hash(bd.canonical.as_bytes());
        merkle::verify_inclusion(seq, n, &leaf, &parse_hashes(&bd.inclusion)?, &cp.root)
            .map_err(|e| PackError::Proof(format!("boundary event {seq}: {e}")))?;
        let logged = ev.metadata.logged_time.unwrap_or(0);
        let outside = if is_before {
            logged < manifest.from_ms
        } else {
            logged >= manifest.to_ms
        };
        if !outside {
            return Err(PackError::Proof(format!(
                "boundary event {seq} was logged at {logged}, inside the window: the range is not complete"
            )));
        }
        Ok(())
    };
    if a > 0 {
        check_boundary(&proofs.before, a - 1, true)?;
    }
    if b < n {
        check_boundary(&proofs.after, b, false)?;
    } else {
        notes.push(format!(
            "the log ended inside the window when it was signed (size {n}); later events are not covered"
        ));
    }
    let consistent_with = match &proofs.consistency {
        Some(c) => {
            let from_root =
                merkle::from_hex(&c.from_root).ok_or_else(|| altered("proofs.json", "bad from_root".to_owned()))?;
            merkle::verify_consistency(c.from_size, n, &from_root, &cp.root, &parse_hashes(&c.hashes)?)
                .map_err(|e| PackError::Proof(format!("consistency from size {}: {e}", c.from_size)))?;
            Some((c.from_size, from_root))
        }
        None => None,
    };

    // The Parquet copy holds the same events, and each row agrees with its canonical bytes.
    let parquet = bytes::Bytes::copy_from_slice(get("events.parquet")?);
    let reader = ParquetRecordBatchReaderBuilder::try_new(parquet)
        .and_then(|b| b.build())
        .map_err(|e| altered("events.parquet", e.to_string()))?;
    let raw_idx = schema::column_index("raw_canonical").unwrap_or(COLUMNS.len() - 1);
    let mut rows = 0u64;
    for batch in reader {
        let batch = batch.map_err(|e| altered("events.parquet", e.to_string()))?;
        if batch.num_columns() != COLUMNS.len() {
            return Err(altered("events.parquet", "wrong columns".to_owned()));
        }
        for r in 0..batch.num_rows() {
            rows += 1;
            let Ok(Cell::Bytes(raw)) = schema::read_cell(batch.column(raw_idx).as_ref(), schema::Kind::Bytes, r) else {
                return Err(altered(
                    "events.parquet",
                    format!("row {rows}: unreadable raw_canonical"),
                ));
            };
            let seq = AuditEvent::from_canonical(&raw)
                .ok()
                .and_then(|e| e.metadata.sequence)
                .unwrap_or(u64::MAX);
            let Some((line, event)) = canon.get(&seq) else {
                return Err(altered(
                    "events.parquet",
                    format!("row {rows} is not one of the pack's events"),
                ));
            };
            if *line != raw.as_slice() {
                return Err(altered(
                    "events.parquet",
                    format!("seq {seq}: canonical bytes differ from events.jsonl"),
                ));
            }
            let want = schema::expected_cells(&Row { event, canonical: line });
            for (i, col) in COLUMNS.iter().enumerate() {
                let got = schema::read_cell(batch.column(i).as_ref(), col.kind, r)
                    .map_err(|e| altered("events.parquet", format!("seq {seq} column `{}`: {e}", col.name)))?;
                if got != want[i] {
                    return Err(altered(
                        "events.parquet",
                        format!(
                            "seq {seq} column `{}`: stored {got} but the canonical event says {}",
                            col.name, want[i]
                        ),
                    ));
                }
            }
        }
    }
    if rows != canon.len() as u64 {
        return Err(altered(
            "events.parquet",
            format!("{rows} rows for {} events", canon.len()),
        ));
    }
    serde_json::from_slice::<serde_json::Value>(get("control-plane.json")?)
        .map_err(|e| altered("control-plane.json", e.to_string()))?;
    if manifest.team.is_some() && manifest.redacted > 0 {
        notes.push(format!(
            "{} events of other teams in the range are present as leaf hashes only; that they are not the team's rests on the exporter",
            manifest.redacted
        ));
    }
    Ok(PackReport {
        origin: cp.origin,
        key_id: key.key_id_hex(),
        tree_size: n,
        root: cp.root,
        from_ms: manifest.from_ms,
        to_ms: manifest.to_ms,
        team: manifest.team,
        first_seq: a,
        end_seq: b,
        events: canon.len() as u64,
        redacted: manifest.redacted,
        consistent_with,
        notes,
    })
}
