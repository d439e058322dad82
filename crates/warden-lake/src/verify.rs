//! Verification of a lake directory from its files alone: every sealed row is checked against its own
//! canonical bytes (leaf hash and every flat column), every file against the manifest's SHA-256, the
//! seq ranges for gaps and duplicates, row order, the WAL tail, and the Merkle tree against every
//! signed checkpoint. Nothing is changed on disk. Each problem names what was altered, removed,
//! reordered or inserted: the file, the seq and the column where it can be known.
//!
//! What each check catches: a row rewritten in place with a plausible value disagrees with its
//! canonical bytes (named by file, seq and column); a row whose canonical bytes were re-forged too
//! changes its leaf hash, so the tree no longer matches the signed checkpoints (the range between the
//! last matching and the first failing checkpoint is named); a deleted or added file, a gap or a
//! duplicate seq is named by seq range; rows moved within a file break the `(time, seq)` order.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

use crate::checkpoint::{LogKey, SignedCheckpoint, VerifierKey};
use crate::event::AuditEvent;
use crate::lake::{self, LakeError};
use crate::merkle::{self, Frontier, Hash};
use crate::schema::{self, COLUMNS, Cell, Row};
use crate::segment;
use crate::wal;

/// What kind of tampering (or damage) a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProblemKind {
    Altered,
    Removed,
    Inserted,
    Reordered,
    BadSignature,
    Unreadable,
}

impl fmt::Display for ProblemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProblemKind::Altered => "altered",
            ProblemKind::Removed => "removed",
            ProblemKind::Inserted => "inserted",
            ProblemKind::Reordered => "reordered",
            ProblemKind::BadSignature => "bad signature",
            ProblemKind::Unreadable => "unreadable",
        })
    }
}

/// One finding of `verify`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub kind: ProblemKind,
    /// The file (relative to the lake) where it was found.
    pub file: Option<String>,
    pub seq: Option<u64>,
    pub column: Option<String>,
    pub detail: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:", self.kind)?;
        if let Some(file) = &self.file {
            write!(f, " {file}")?;
        }
        if let Some(seq) = self.seq {
            write!(f, " seq {seq}")?;
        }
        if let Some(col) = &self.column {
            write!(f, " column `{col}`")?;
        }
        write!(f, ": {}", self.detail)
    }
}

/// The outcome of `verify`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Events found (sealed and in the WAL).
    pub events: u64,
    pub sealed_files: usize,
    pub wal_events: u64,
    /// Signed checkpoints whose signature and root were checked.
    pub checkpoints: usize,
    /// The recomputed tree size and root.
    pub tree_size: u64,
    pub root: Hash,
    /// Empty when everything verified.
    pub problems: Vec<Problem>,
    /// Not tampering: e.g. a torn, unacknowledged WAL tail that recovery will cut off.
    pub notes: Vec<String>,
}

impl Report {
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_ok() {
            writeln!(
                f,
                "ok: {} events ({} sealed files, {} in the WAL), root {} at size {}, {} signed checkpoints verified",
                self.events,
                self.sealed_files,
                self.wal_events,
                merkle::to_hex(&self.root),
                self.tree_size,
                self.checkpoints
            )?;
        } else {
            writeln!(f, "FAILED: {} problems", self.problems.len())?;
            for p in &self.problems {
                writeln!(f, "  {p}")?;
            }
        }
        for n in &self.notes {
            writeln!(f, "  note: {n}")?;
        }
        Ok(())
    }
}

struct Found {
    leaf: Hash,
    source: String,
}

struct Checker {
    problems: Vec<Problem>,
    /// seq → leaf and where it was found.
    leaves: BTreeMap<u64, Found>,
}

impl Checker {
    fn problem(
        &mut self,
        kind: ProblemKind,
        file: Option<&str>,
        seq: Option<u64>,
        column: Option<&str>,
        detail: String,
    ) {
        self.problems.push(Problem {
            kind,
            file: file.map(str::to_owned),
            seq,
            column: column.map(str::to_owned),
            detail,
        });
    }

    fn add_leaf(&mut self, seq: u64, leaf: Hash, source: &str) {
        if let Some(prev) = self.leaves.get(&seq) {
            let detail = format!("seq {seq} is stored twice (also in {})", prev.source);
            self.problem(ProblemKind::Inserted, Some(source), Some(seq), None, detail);
            return;
        }
        self.leaves.insert(
            seq,
            Found {
                leaf,
                source: source.to_owned(),
            },
        );
    }
}

/// Verifies the lake in `dir` with the public key derived from its own `log-key.pem`. An auditor
/// should prefer `verify_with_key` with the verifier key pinned out of band.
pub fn verify(dir: &Path) -> Result<Report, LakeError> {
    let origin = read_meta(dir)?.origin;
    let key = LogKey::load(&dir.join(lake::KEY_FILE), &origin).map_err(|e| LakeError::Io {
        path: dir.join(lake::KEY_FILE),
        message: e.to_string(),
    })?;
    verify_with_key(dir, &key.verifier_key())
}

fn read_meta(dir: &Path) -> Result<lake::LakeMeta, LakeError> {
    let path = dir.join("lake.json");
    let bytes = std::fs::read(&path).map_err(|e| LakeError::Io {
        path: path.clone(),
        message: e.to_string(),
    })?;
    lake::parse_meta(&path, &bytes)
}

/// Verifies the lake in `dir` against the C2SP verifier key `vkey`.
pub fn verify_with_key(dir: &Path, vkey: &str) -> Result<Report, LakeError> {
    verify_upto(dir, vkey, None)
}

/// `verify_with_key`, seeing only the first `limit` events when given: WAL frames and signed
/// checkpoints past it are ignored. An open lake verifies itself this way (`Lake::verify`), so events
/// and checkpoints written while it reads are not mistaken for tampering.
pub(crate) fn verify_upto(dir: &Path, vkey: &str, limit: Option<u64>) -> Result<Report, LakeError> {
    let key = VerifierKey::parse(vkey).map_err(|e| LakeError::Config(e.to_string()))?;
    let block_leaves = read_meta(dir)?.block_leaves;
    let mut c = Checker {
        problems: Vec::new(),
        leaves: BTreeMap::new(),
    };
    let mut notes = Vec::new();

    let manifest = match segment::read_manifest(dir, false) {
        Ok(m) => m,
        Err(e) => {
            c.problem(ProblemKind::Unreadable, Some(segment::MANIFEST), None, None, e);
            Vec::new()
        }
    };
    let mut signed: Vec<SignedCheckpoint> = Vec::new();

    // Files on disk that no seal recorded.
    let recorded: HashSet<&str> = manifest
        .iter()
        .flat_map(|m| m.files.iter().map(|f| f.path.as_str()))
        .collect();
    let on_disk = segment::list_event_files(dir).map_err(|e| LakeError::Io {
        path: dir.to_owned(),
        message: e.to_string(),
    })?;
    for (rel, _) in &on_disk {
        if rel.ends_with(".parquet") && !recorded.contains(rel.as_str()) {
            c.problem(
                ProblemKind::Inserted,
                Some(rel),
                None,
                None,
                "this segment file is not in the manifest: it was added after sealing".to_owned(),
            );
        }
    }
    let present: HashSet<&str> = on_disk.iter().map(|(r, _)| r.as_str()).collect();

    let mut sealed_files = 0usize;
    let mut expected_first = 0u64;
    for entry in &manifest {
        if entry.first_seq != expected_first {
            let (kind, detail) = if entry.first_seq > expected_first {
                (
                    ProblemKind::Removed,
                    format!("no seal covers seqs {expected_first}..{}", entry.first_seq),
                )
            } else {
                (
                    ProblemKind::Inserted,
                    format!("seal {}..={} overlaps an earlier seal", entry.first_seq, entry.last_seq),
                )
            };
            c.problem(kind, Some(segment::MANIFEST), Some(entry.first_seq), None, detail);
        }
        expected_first = entry.last_seq + 1;
        match key.verify_checkpoint(&entry.checkpoint) {
            Ok(cp) if cp.size == entry.last_seq + 1 && cp.size == entry.checkpoint_size => signed.push(cp),
            Ok(cp) => c.problem(
                ProblemKind::Altered,
                Some(segment::MANIFEST),
                Some(entry.first_seq),
                None,
                format!(
                    "seal {}..={} carries a checkpoint of size {}",
                    entry.first_seq, entry.last_seq, cp.size
                ),
            ),
            Err(e) => c.problem(
                ProblemKind::BadSignature,
                Some(segment::MANIFEST),
                Some(entry.first_seq),
                None,
                format!("checkpoint of seal {}..={}: {e}", entry.first_seq, entry.last_seq),
            ),
        }
        let before = c.leaves.len();
        for file in &entry.files {
            if !present.contains(file.path.as_str()) {
                c.problem(
                    ProblemKind::Removed,
                    Some(&file.path),
                    Some(file.min_seq),
                    None,
                    format!(
                        "segment file with {} events (seq {}..={}) is missing",
                        file.rows, file.min_seq, file.max_seq
                    ),
                );
                continue;
            }
            sealed_files += 1;
            check_file(dir, file, entry, &mut c);
        }
        // Gaps inside the seal.
        let missing: Vec<u64> = (entry.first_seq..=entry.last_seq)
            .filter(|s| !c.leaves.contains_key(s))
            .collect();
        for (a, b) in runs(&missing) {
            c.problem(
                ProblemKind::Removed,
                None,
                Some(a),
                None,
                format!(
                    "events seq {a}..={b} of seal {}..={} are missing",
                    entry.first_seq, entry.last_seq
                ),
            );
        }
        if missing.is_empty() && c.leaves.len() - before == (entry.last_seq - entry.first_seq + 1) as usize {
            let leaves: Vec<Hash> = (entry.first_seq..=entry.last_seq)
                .filter_map(|s| c.leaves.get(&s).map(|f| f.leaf))
                .collect();
            if merkle::to_hex(&merkle::root(&leaves)) != entry.subtree_root {
                c.problem(
                    ProblemKind::Altered,
                    Some(segment::MANIFEST),
                    Some(entry.first_seq),
                    None,
                    format!(
                        "the root of seal {}..={} differs from the one recorded at sealing",
                        entry.first_seq, entry.last_seq
                    ),
                );
            }
        }
    }

    // The WAL tail.
    let mut wal_events = 0u64;
    match wal::read_only(&dir.join("wal"), expected_first) {
        Ok((mut frames, torn)) => {
            if let Some(limit) = limit {
                frames.retain(|(_, f)| f.seq < limit);
            }
            if let Some((path, offset)) = torn.filter(|_| limit.is_none()) {
                notes.push(format!(
                    "WAL segment `{}` has a torn tail at byte {offset} (an unacknowledged write; the next open cuts it off)",
                    path.display()
                ));
            }
            if let Some((_, f)) = frames.first()
                && f.seq != expected_first
            {
                c.problem(
                    ProblemKind::Removed,
                    Some("wal"),
                    Some(expected_first),
                    None,
                    format!(
                        "events seq {expected_first}..{} are in neither a sealed segment nor the WAL",
                        f.seq
                    ),
                );
            }
            for (path, frame) in frames {
                let source = format!("wal/{}", path.file_name().unwrap_or_default().to_string_lossy());
                match AuditEvent::from_canonical(&frame.payload) {
                    Ok(e) if e.metadata.sequence == Some(frame.seq) => {}
                    Ok(e) => c.problem(
                        ProblemKind::Reordered,
                        Some(&source),
                        Some(frame.seq),
                        None,
                        format!(
                            "frame seq {} holds the event with sequence {:?}",
                            frame.seq, e.metadata.sequence
                        ),
                    ),
                    Err(e) => c.problem(ProblemKind::Altered, Some(&source), Some(frame.seq), None, e),
                }
                c.add_leaf(frame.seq, merkle::leaf_hash(&frame.payload), &source);
                wal_events += 1;
            }
        }
        Err(e) => c.problem(ProblemKind::Unreadable, Some("wal"), None, None, e.to_string()),
    }

    // The tree: gaps, then every signed checkpoint.
    let size = c.leaves.keys().next_back().map_or(0, |s| s + 1);
    let missing: Vec<u64> = (0..size).filter(|s| !c.leaves.contains_key(s)).collect();
    if !missing.is_empty() && missing.len() as u64 != size {
        let already: HashSet<u64> = c.problems.iter().filter_map(|p| p.seq).collect();
        for (a, b) in runs(&missing) {
            if !(a..=b).any(|s| already.contains(&s)) {
                c.problem(
                    ProblemKind::Removed,
                    None,
                    Some(a),
                    None,
                    format!("events seq {a}..={b} are missing"),
                );
            }
        }
    }
    let leaves: Vec<Hash> = (0..size)
        .map(|s| c.leaves.get(&s).map_or([0u8; 32], |f| f.leaf))
        .collect();
    // The block roots each seal recorded, which the open lake keeps instead of every leaf.
    for entry in &manifest {
        let want = lake::blocks_ending_in(entry.first_seq, entry.last_seq + 1, block_leaves);
        let recorded = lake::entry_blocks(entry, block_leaves);
        for (i, k) in want.enumerate() {
            let (lo, hi) = (k * block_leaves, (k + 1) * block_leaves);
            if hi > size || (lo..hi).any(|s| !c.leaves.contains_key(&s)) {
                continue;
            }
            let root = merkle::root(&leaves[lo as usize..hi as usize]);
            let stored = recorded.as_ref().ok().and_then(|r| r.get(i));
            if stored != Some(&root) {
                c.problem(
                    ProblemKind::Altered,
                    Some(segment::MANIFEST),
                    Some(lo),
                    None,
                    format!(
                        "seal {}..={} records a root for events {lo}..{hi} that they do not hash to",
                        entry.first_seq, entry.last_seq
                    ),
                );
            }
        }
    }
    let mut checkpoints_checked = 0usize;
    match lake::read_checkpoints(dir, &key) {
        Ok(lines) => {
            for line in lines {
                match line {
                    Ok(cp) if limit.is_some_and(|limit| cp.size > limit) => {}
                    Ok(cp) => signed.push(cp),
                    Err(e) => c.problem(ProblemKind::BadSignature, Some(lake::CHECKPOINTS), None, None, e),
                }
            }
        }
        Err(e) => c.problem(
            ProblemKind::Unreadable,
            Some(lake::CHECKPOINTS),
            None,
            None,
            e.to_string(),
        ),
    }
    signed.sort_by_key(|cp| cp.size);
    signed.dedup_by(|a, b| a.size == b.size && a.root == b.root);
    let mut frontier = Frontier::new();
    let mut last_good = 0u64;
    let mut first_bad: Option<u64> = None;
    for cp in &signed {
        if cp.size > size {
            c.problem(
                ProblemKind::Removed,
                None,
                Some(size),
                None,
                format!(
                    "a signed checkpoint covers {} events but the lake holds {size}: events {size}..{} are gone",
                    cp.size, cp.size
                ),
            );
            break;
        }
        while frontier.size() < cp.size {
            frontier.push(leaves[frontier.size() as usize]);
        }
        checkpoints_checked += 1;
        if frontier.root() == cp.root {
            if first_bad.is_none() {
                last_good = cp.size;
            }
        } else if first_bad.is_none() {
            first_bad = Some(cp.size);
        }
    }
    if let Some(bad) = first_bad {
        let detail = format!(
            "the events seq {last_good}..{bad} do not reproduce the signed checkpoint of size {bad} (the one of size \
             {last_good} still matches): an event in that range was altered, removed, inserted or reordered after signing"
        );
        c.problem(ProblemKind::Altered, None, Some(last_good), None, detail);
    }
    let root = merkle::root(&leaves);
    Ok(Report {
        events: c.leaves.len() as u64,
        sealed_files,
        wal_events,
        checkpoints: checkpoints_checked,
        tree_size: size,
        root,
        problems: c.problems,
        notes,
    })
}

/// Checks one sealed file: its hash, and every row against its canonical bytes.
fn check_file(dir: &Path, file: &segment::SegmentFile, entry: &segment::ManifestEntry, c: &mut Checker) {
    let path: PathBuf = dir.join(&file.path);
    match segment::file_sha256(&path) {
        Ok((sha, _)) if sha == file.sha256 => {}
        Ok(_) => c.problem(
            ProblemKind::Altered,
            Some(&file.path),
            None,
            None,
            "the file's SHA-256 differs from the manifest: it was changed after sealing".to_owned(),
        ),
        Err(e) => {
            c.problem(ProblemKind::Unreadable, Some(&file.path), None, None, e.to_string());
            return;
        }
    }
    let batches = match segment::read_file(&path, None) {
        Ok(b) => b,
        Err(e) => {
            c.problem(ProblemKind::Unreadable, Some(&file.path), None, None, e);
            return;
        }
    };
    let raw_idx = schema::column_index("raw_canonical").unwrap_or(COLUMNS.len() - 1);
    let mut prev: Option<(i64, u64)> = None;
    let mut row_no = 0usize;
    let mut rows = 0u64;
    for batch in &batches {
        if batch.num_columns() != COLUMNS.len() {
            c.problem(
                ProblemKind::Altered,
                Some(&file.path),
                None,
                None,
                format!(
                    "the file has {} columns, the schema {}",
                    batch.num_columns(),
                    COLUMNS.len()
                ),
            );
            return;
        }
        for r in 0..batch.num_rows() {
            row_no += 1;
            rows += 1;
            let stored: Vec<Result<Cell, String>> = COLUMNS
                .iter()
                .enumerate()
                .map(|(i, col)| schema::read_cell(batch.column(i).as_ref(), col.kind, r))
                .collect();
            let stored_seq = match &stored[0] {
                Ok(Cell::Int(v)) if *v >= 0 => Some(*v as u64),
                _ => None,
            };
            let Ok(Cell::Bytes(canonical)) = &stored[raw_idx] else {
                c.problem(
                    ProblemKind::Altered,
                    Some(&file.path),
                    stored_seq,
                    Some("raw_canonical"),
                    format!("row {row_no}: unreadable"),
                );
                continue;
            };
            let leaf = merkle::leaf_hash(canonical);
            let event = match AuditEvent::from_canonical(canonical) {
                Ok(e) => e,
                Err(e) => {
                    c.problem(
                        ProblemKind::Altered,
                        Some(&file.path),
                        stored_seq,
                        Some("raw_canonical"),
                        e,
                    );
                    continue;
                }
            };
            let Some(seq) = event.metadata.sequence else {
                c.problem(
                    ProblemKind::Altered,
                    Some(&file.path),
                    stored_seq,
                    Some("raw_canonical"),
                    "the canonical event has no sequence".to_owned(),
                );
                continue;
            };
            let expected = schema::expected_cells(&Row {
                event: &event,
                canonical,
            });
            for (i, col) in COLUMNS.iter().enumerate() {
                if i == raw_idx {
                    continue;
                }
                match &stored[i] {
                    Ok(v) if *v == expected[i] => {}
                    Ok(v) => {
                        let detail = format!("stored {v} but the signed canonical event says {}", expected[i]);
                        c.problem(
                            ProblemKind::Altered,
                            Some(&file.path),
                            Some(seq),
                            Some(col.name),
                            detail,
                        );
                    }
                    Err(e) => c.problem(
                        ProblemKind::Altered,
                        Some(&file.path),
                        Some(seq),
                        Some(col.name),
                        e.clone(),
                    ),
                }
            }
            let key = (event.time, seq);
            if let Some(p) = prev
                && key < p
            {
                c.problem(
                    ProblemKind::Reordered,
                    Some(&file.path),
                    Some(seq),
                    None,
                    format!(
                        "row {row_no} (seq {seq}) comes after seq {} but the file must be sorted by (time, seq)",
                        p.1
                    ),
                );
            }
            prev = Some(key);
            if seq < entry.first_seq || seq > entry.last_seq {
                c.problem(
                    ProblemKind::Inserted,
                    Some(&file.path),
                    Some(seq),
                    None,
                    format!(
                        "seq {seq} is outside this seal's range {}..={}",
                        entry.first_seq, entry.last_seq
                    ),
                );
                continue;
            }
            c.add_leaf(seq, leaf, &file.path);
        }
    }
    if rows != file.rows {
        c.problem(
            ProblemKind::Altered,
            Some(&file.path),
            None,
            None,
            format!("the file holds {rows} rows but {} were sealed", file.rows),
        );
    }
}

/// Consecutive runs `[a, b]` of sorted numbers.
fn runs(sorted: &[u64]) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for &s in sorted {
        match out.last_mut() {
            Some((_, b)) if *b + 1 == s => *b = s,
            _ => out.push((s, s)),
        }
    }
    out
}
