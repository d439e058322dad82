//! Sealed segments: writing WAL-resident events as Parquet files partitioned by day
//! (`events/day=YYYY-MM-DD/seg-<first seq>-<last seq>.parquet`, rows sorted by `(time, seq)`, zstd,
//! the tool catalog in the footer: see `catalog`), the segment manifest (`manifest.jsonl`, one line
//! per seal) and reading files back.
//!
//! Every file is written `*.tmp` → `fsync` → rename → `fsync(dir)`, and only then recorded in the
//! manifest (appended and `fdatasync`ed). A manifest entry covers one contiguous seq range
//! `[first_seq, last_seq]` (possibly several day files), with the range's own Merkle root, each file's
//! SHA-256, its seq and time bounds, and the signed checkpoint at tree size `last_seq + 1`.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::metadata::{KeyValue, SortingColumn};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::catalog::ToolCatalog;
use crate::checkpoint::SignedCheckpoint;
use crate::merkle::{self, Hash, hex};
use crate::schema::{self, Row};
use crate::wal::sync_dir;

/// An event the writer has made durable: the parsed event, its canonical bytes and leaf hash.
#[derive(Debug)]
pub(crate) struct Stored {
    pub(crate) event: crate::event::AuditEvent,
    pub(crate) canonical: Vec<u8>,
    pub(crate) leaf: Hash,
}

impl Stored {
    pub(crate) fn seq(&self) -> u64 {
        self.event.metadata.sequence.unwrap_or(0)
    }
    pub(crate) fn row(&self) -> Row<'_> {
        Row {
            event: &self.event,
            canonical: &self.canonical,
        }
    }
}

/// One Parquet file of a seal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentFile {
    /// Relative to the lake directory.
    pub path: String,
    pub sha256: String,
    pub bytes: u64,
    pub rows: u64,
    pub min_seq: u64,
    pub max_seq: u64,
    pub min_time: i64,
    pub max_time: i64,
}

/// One line of `manifest.jsonl`: one seal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEntry {
    pub first_seq: u64,
    pub last_seq: u64,
    /// RFC 9162 root over the leaves `first_seq..=last_seq` alone (hex).
    pub subtree_root: String,
    pub first_logged_time: i64,
    pub last_logged_time: i64,
    /// Tree size of the covering checkpoint (`last_seq + 1`).
    pub checkpoint_size: u64,
    /// The covering checkpoint's signed note.
    pub checkpoint: String,
    pub files: Vec<SegmentFile>,
    /// Roots (hex) of the aligned blocks of `block_leaves` events (`lake.json`) that end inside this
    /// seal, in order: the lake keeps its tree as block roots instead of a hash per event.
    #[serde(default)]
    pub blocks: Vec<String>,
}

pub(crate) const MANIFEST: &str = "manifest.jsonl";
pub(crate) const EVENTS_DIR: &str = "events";

/// Parquet writing knobs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ParquetOptions {
    pub(crate) zstd_level: i32,
    pub(crate) canonical_zstd_level: i32,
    pub(crate) row_group_rows: usize,
}

pub(crate) fn writer_properties(opts: ParquetOptions) -> Result<WriterProperties, String> {
    let zstd = |level: i32| {
        ZstdLevel::try_new(level)
            .map(Compression::ZSTD)
            .map_err(|e| format!("zstd level {level}: {e}"))
    };
    let col = |name: &str| ColumnPath::from(name);
    let idx = |name: &str| schema::column_index(name).unwrap_or(0) as i32;
    let mut b = WriterProperties::builder()
        .set_compression(zstd(opts.zstd_level)?)
        .set_max_row_group_row_count(Some(opts.row_group_rows.max(1)))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_sorting_columns(Some(vec![
            SortingColumn {
                column_idx: idx("time"),
                descending: false,
                nulls_first: false,
            },
            SortingColumn {
                column_idx: idx("seq"),
                descending: false,
                nulls_first: false,
            },
        ]))
        .set_key_value_metadata(Some(vec![KeyValue::new(
            "warden.lake.format".to_owned(),
            "2".to_owned(),
        )]));
    // The canonical bytes are most of a row: compress them harder, over larger pages (more context).
    b = b
        .set_column_compression(col("raw_canonical"), zstd(opts.canonical_zstd_level)?)
        .set_column_data_page_size_limit(col("raw_canonical"), 8 << 20)
        .set_column_dictionary_enabled(col("raw_canonical"), false)
        .set_column_statistics_enabled(col("raw_canonical"), EnabledStatistics::None)
        // UUIDv7 ids share their time prefix.
        .set_column_dictionary_enabled(col("uid"), false)
        .set_column_encoding(col("uid"), Encoding::DELTA_BYTE_ARRAY);
    // Near-monotone integers.
    for name in ["seq", "time", "time_dt", "logged_time"] {
        b = b
            .set_column_dictionary_enabled(col(name), false)
            .set_column_encoding(col(name), Encoding::DELTA_BINARY_PACKED);
    }
    Ok(b.build())
}

/// `YYYY-MM-DD` (UTC) of an epoch-millisecond time.
pub(crate) fn day_of(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!("{y:04}-{m:02}-{d:02}")
}

struct HashingWriter {
    file: File,
    hasher: Sha256,
    bytes: u64,
}

impl Write for HashingWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// Writes `events` (one contiguous seq range) as day-partitioned Parquet files under `lake`.
pub(crate) fn write_files(
    lake: &Path,
    events: &[Arc<Stored>],
    opts: ParquetOptions,
) -> Result<Vec<SegmentFile>, String> {
    let mut by_day: BTreeMap<String, Vec<&Stored>> = BTreeMap::new();
    for e in events {
        by_day.entry(day_of(e.event.time)).or_default().push(e);
    }
    let props = writer_properties(opts)?;
    let mut out = Vec::new();
    let events_dir = lake.join(EVENTS_DIR);
    for (day, mut rows) in by_day {
        rows.sort_by_key(|e| (e.event.time, e.seq()));
        let min_seq = rows.iter().map(|e| e.seq()).min().unwrap_or(0);
        let max_seq = rows.iter().map(|e| e.seq()).max().unwrap_or(0);
        let rel = format!("{EVENTS_DIR}/day={day}/seg-{min_seq:020}-{max_seq:020}.parquet");
        let path = lake.join(&rel);
        let day_dir = path.parent().map(Path::to_owned).unwrap_or_else(|| events_dir.clone());
        let new_dir = !day_dir.exists();
        fs::create_dir_all(&day_dir).map_err(|e| format!("creating `{}`: {e}", day_dir.display()))?;
        if new_dir {
            sync_dir(&events_dir).map_err(|e| format!("syncing `{}`: {e}", events_dir.display()))?;
        }
        let tmp = path.with_extension("parquet.tmp");
        let file = File::create(&tmp).map_err(|e| format!("creating `{}`: {e}", tmp.display()))?;
        let mut sink = HashingWriter {
            file,
            hasher: Sha256::new(),
            bytes: 0,
        };
        {
            let mut writer = ArrowWriter::try_new(&mut sink, schema::arrow_schema(), Some(props.clone()))
                .map_err(|e| format!("starting `{}`: {e}", tmp.display()))?;
            let mut catalog = ToolCatalog::default();
            for chunk in rows.chunks(opts.row_group_rows.clamp(1, 65_536)) {
                let batch_rows: Vec<Row<'_>> = chunk.iter().map(|e| e.row()).collect();
                let batch = schema::to_batch(&batch_rows)?;
                catalog.add_batch(&batch);
                writer
                    .write(&batch)
                    .map_err(|e| format!("writing `{}`: {e}", tmp.display()))?;
            }
            if let Some(footer) = catalog.footer() {
                writer.append_key_value_metadata(footer);
            }
            writer
                .close()
                .map_err(|e| format!("finishing `{}`: {e}", tmp.display()))?;
        }
        sink.file
            .sync_all()
            .map_err(|e| format!("fsync of `{}` failed: {e}", tmp.display()))?;
        fs::rename(&tmp, &path).map_err(|e| format!("renaming `{}`: {e}", tmp.display()))?;
        sync_dir(&day_dir).map_err(|e| format!("syncing `{}`: {e}", day_dir.display()))?;
        out.push(SegmentFile {
            path: rel,
            sha256: hex(&sink.hasher.finalize()),
            bytes: sink.bytes,
            rows: rows.len() as u64,
            min_seq,
            max_seq,
            min_time: rows.first().map_or(0, |e| e.event.time),
            max_time: rows.last().map_or(0, |e| e.event.time),
        });
    }
    Ok(out)
}

/// Builds the manifest entry of a seal.
pub(crate) fn manifest_entry(
    events: &[Arc<Stored>],
    files: Vec<SegmentFile>,
    blocks: &[Hash],
    checkpoint: &SignedCheckpoint,
) -> ManifestEntry {
    let leaves: Vec<Hash> = events.iter().map(|e| e.leaf).collect();
    ManifestEntry {
        first_seq: events.first().map_or(0, |e| e.seq()),
        last_seq: events.last().map_or(0, |e| e.seq()),
        subtree_root: merkle::to_hex(&merkle::root(&leaves)),
        first_logged_time: events.first().and_then(|e| e.event.metadata.logged_time).unwrap_or(0),
        last_logged_time: events.last().and_then(|e| e.event.metadata.logged_time).unwrap_or(0),
        checkpoint_size: checkpoint.size,
        checkpoint: checkpoint.note.clone(),
        files,
        blocks: blocks.iter().map(merkle::to_hex).collect(),
    }
}

/// Appends one entry to the manifest and syncs it.
pub(crate) fn append_manifest(lake: &Path, entry: &ManifestEntry) -> io::Result<()> {
    let mut line = serde_json::to_vec(entry).map_err(io::Error::other)?;
    line.push(b'\n');
    let mut f = OpenOptions::new().create(true).append(true).open(lake.join(MANIFEST))?;
    f.write_all(&line)?;
    f.sync_data()
}

/// Reads the manifest. A last line without its newline is a torn append: it is ignored (and, when
/// `repair` is set, cut off). Any other unreadable line is an error naming it.
pub(crate) fn read_manifest(lake: &Path, repair: bool) -> Result<Vec<ManifestEntry>, String> {
    let path = lake.join(MANIFEST);
    let mut data = Vec::new();
    match File::open(&path) {
        Ok(mut f) => f
            .read_to_end(&mut data)
            .map_err(|e| format!("reading `{}`: {e}", path.display()))?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("reading `{}`: {e}", path.display())),
    };
    let complete = data.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
    if complete < data.len() && repair {
        let f = OpenOptions::new().write(true).open(&path).map_err(|e| e.to_string())?;
        f.set_len(complete as u64).map_err(|e| e.to_string())?;
        f.sync_all().map_err(|e| e.to_string())?;
    }
    let mut out = Vec::new();
    for (n, line) in BufReader::new(&data[..complete]).lines().enumerate() {
        let line = line.map_err(|e| format!("`{}` line {}: {e}", path.display(), n + 1))?;
        let entry: ManifestEntry = serde_json::from_str(&line)
            .map_err(|e| format!("`{}` line {} is not a manifest entry: {e}", path.display(), n + 1))?;
        out.push(entry);
    }
    Ok(out)
}

/// Reads the whole Parquet file at `path` (optionally only some columns, by schema index).
pub(crate) fn read_file(path: &Path, columns: Option<&[usize]>) -> Result<Vec<RecordBatch>, String> {
    let file = File::open(path).map_err(|e| format!("opening `{}`: {e}", path.display()))?;
    let mut builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| format!("`{}` is not a readable Parquet file: {e}", path.display()))?
        .with_batch_size(8192);
    if let Some(cols) = columns {
        let mask = ProjectionMask::roots(builder.parquet_schema(), cols.iter().copied());
        builder = builder.with_projection(mask);
    }
    let reader = builder
        .build()
        .map_err(|e| format!("reading `{}`: {e}", path.display()))?;
    reader
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("reading `{}`: {e}", path.display()))
}

/// The leaf hashes of the sealed events `[lo, hi)`, hashed from their canonical bytes in the files
/// the manifest lists.
pub(crate) fn read_leaves(dir: &Path, manifest: &[ManifestEntry], lo: u64, hi: u64) -> Result<Vec<Hash>, String> {
    let cols = ["seq", "raw_canonical"].map(|c| schema::column_index(c).unwrap_or(0));
    let mut out: Vec<Option<Hash>> = vec![None; (hi - lo) as usize];
    let files = manifest
        .iter()
        .filter(|m| m.last_seq >= lo && m.first_seq < hi)
        .flat_map(|m| m.files.iter())
        .filter(|f| f.max_seq >= lo && f.min_seq < hi);
    for file in files {
        for batch in read_file(&dir.join(&file.path), Some(&cols))? {
            let (Some(seqs), Some(raws)) = (batch.column_by_name("seq"), batch.column_by_name("raw_canonical")) else {
                return Err(format!("`{}` lacks the seq or raw_canonical column", file.path));
            };
            for r in 0..batch.num_rows() {
                let Ok(schema::Cell::Int(seq)) = schema::read_cell(seqs.as_ref(), schema::Kind::I64, r) else {
                    return Err(format!("`{}` row {r}: unreadable seq", file.path));
                };
                let Some(slot) = u64::try_from(seq)
                    .ok()
                    .filter(|s| (lo..hi).contains(s))
                    .map(|s| (s - lo) as usize)
                else {
                    continue;
                };
                let Ok(schema::Cell::Bytes(canonical)) = schema::read_cell(raws.as_ref(), schema::Kind::Bytes, r)
                else {
                    return Err(format!("`{}` seq {seq}: unreadable raw_canonical", file.path));
                };
                out[slot] = Some(merkle::leaf_hash(&canonical));
            }
        }
    }
    out.into_iter()
        .enumerate()
        .map(|(i, h)| h.ok_or_else(|| format!("event seq {} is in no sealed file", lo + i as u64)))
        .collect()
}

/// SHA-256 of a file, hex.
pub(crate) fn file_sha256(path: &Path) -> io::Result<(String, u64)> {
    let mut f = File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        total += n as u64;
    }
    Ok((hex(&h.finalize()), total))
}

/// Every `*.parquet` (and stray `*.tmp`) file under `<lake>/events`, relative to the lake.
pub(crate) fn list_event_files(lake: &Path) -> io::Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    let root = lake.join(EVENTS_DIR);
    let days = match fs::read_dir(&root) {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for day in days {
        let day = day?;
        if !day.file_type()?.is_dir() {
            continue;
        }
        for f in fs::read_dir(day.path())? {
            let f = f?;
            let name = f.file_name().to_string_lossy().into_owned();
            let rel = format!("{EVENTS_DIR}/{}/{name}", day.file_name().to_string_lossy());
            out.push((rel, f.path()));
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_are_utc_calendar_dates() {
        assert_eq!(day_of(0), "1970-01-01");
        assert_eq!(day_of(86_399_999), "1970-01-01");
        assert_eq!(day_of(86_400_000), "1970-01-02");
        assert_eq!(day_of(951_782_400_000), "2000-02-29");
        assert_eq!(day_of(1_764_000_000_000), "2025-11-24");
        assert_eq!(day_of(-1), "1969-12-31");
    }
}
