//! Tampering with a sealed lake, each kind named precisely by `verify`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::support::{config, events};
use arrow_array::{Array, ArrayRef, BinaryArray, Int64Array, RecordBatch, StringArray, UInt32Array};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use warden_lake::{Lake, ManifestEntry, ProblemKind, verify};

/// A lake with 120 sealed events (two day files per seal, two seals) and 10 in the WAL.
async fn build() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open(dir.path(), config()).unwrap();
    lake.append(events(0..60)).await.unwrap();
    lake.seal().await.unwrap();
    lake.append(events(60..120)).await.unwrap();
    lake.seal().await.unwrap();
    lake.append(events(120..130)).await.unwrap();
    drop(lake);
    dir
}

fn manifest(dir: &Path) -> Vec<ManifestEntry> {
    std::fs::read_to_string(dir.join("manifest.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn write_manifest(dir: &Path, entries: &[ManifestEntry]) {
    let text: String = entries
        .iter()
        .map(|e| serde_json::to_string(e).unwrap() + "\n")
        .collect();
    std::fs::write(dir.join("manifest.jsonl"), text).unwrap();
}

/// The first sealed file and its manifest position.
fn first_file(dir: &Path) -> (String, PathBuf) {
    let m = manifest(dir);
    let rel = m[0].files[0].path.clone();
    (rel.clone(), dir.join(rel))
}

fn read(path: &Path) -> Vec<RecordBatch> {
    let f = std::fs::File::open(path).unwrap();
    ParquetRecordBatchReaderBuilder::try_new(f)
        .unwrap()
        .build()
        .unwrap()
        .map(|b| b.unwrap())
        .collect()
}

fn write(path: &Path, batches: &[RecordBatch]) {
    let f = std::fs::File::create(path).unwrap();
    let mut w = ArrowWriter::try_new(f, batches[0].schema(), None).unwrap();
    for b in batches {
        w.write(b).unwrap();
    }
    w.close().unwrap();
}

/// Also fixes the file's hash in the manifest, as a careful attacker would.
fn rehash(dir: &Path, rel: &str) {
    let mut m = manifest(dir);
    let bytes = std::fs::read(dir.join(rel)).unwrap();
    use sha2::Digest;
    let sha: String = sha2::Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    for e in &mut m {
        for f in &mut e.files {
            if f.path == rel {
                f.sha256 = sha.clone();
            }
        }
    }
    write_manifest(dir, &m);
}

fn replace_column(batch: &RecordBatch, name: &str, array: ArrayRef) -> RecordBatch {
    let idx = batch.schema().index_of(name).unwrap();
    let mut cols: Vec<ArrayRef> = batch.columns().to_vec();
    cols[idx] = array;
    RecordBatch::try_new(batch.schema(), cols).unwrap()
}

fn strings(batch: &RecordBatch, name: &str) -> Vec<Option<String>> {
    let a = batch
        .column_by_name(name)
        .unwrap()
        .as_any()
        .downcast_ref::<StringArray>()
        .unwrap();
    (0..a.len())
        .map(|i| (!a.is_null(i)).then(|| a.value(i).to_owned()))
        .collect()
}

fn seqs(batch: &RecordBatch) -> Vec<i64> {
    batch
        .column_by_name("seq")
        .unwrap()
        .as_any()
        .downcast_ref::<Int64Array>()
        .unwrap()
        .values()
        .to_vec()
}

#[tokio::test]
async fn an_untouched_lake_verifies() {
    let dir = build().await;
    let report = verify(dir.path()).unwrap();
    assert!(report.is_ok(), "{report}");
    assert_eq!((report.events, report.wal_events, report.tree_size), (130, 10, 130));
    assert!(report.sealed_files >= 2 && report.checkpoints >= 2, "{report:?}");
}

#[tokio::test]
async fn a_row_rewritten_with_a_plausible_value_is_named_by_file_seq_and_column() {
    let dir = build().await;
    let (rel, path) = first_file(dir.path());
    let mut batches = read(&path);
    // Flip the first decision in the file: "deny" becomes "allow" or the other way round.
    let decisions = strings(&batches[0], "decision");
    let row = decisions.iter().position(Option::is_some).unwrap();
    let seq = seqs(&batches[0])[row] as u64;
    let old = decisions[row].clone().unwrap();
    let new = if old == "allow" { "deny" } else { "allow" };
    let mut changed = decisions.clone();
    changed[row] = Some(new.to_owned());
    batches[0] = replace_column(&batches[0], "decision", Arc::new(StringArray::from(changed)));
    write(&path, &batches);
    rehash(dir.path(), &rel);

    let report = verify(dir.path()).unwrap();
    assert_eq!(report.problems.len(), 1, "{report}");
    let p = &report.problems[0];
    assert_eq!(p.kind, ProblemKind::Altered);
    assert_eq!(
        (p.file.as_deref(), p.seq, p.column.as_deref()),
        (Some(rel.as_str()), Some(seq), Some("decision"))
    );
    assert!(
        p.to_string().contains(&format!(
            "stored \"{new}\" but the signed canonical event says \"{old}\""
        )),
        "{p}"
    );
}

#[tokio::test]
async fn a_changed_file_without_a_new_manifest_hash_is_named() {
    let dir = build().await;
    let (rel, path) = first_file(dir.path());
    let batches = read(&path);
    write(&path, &batches); // same rows, different bytes
    let report = verify(dir.path()).unwrap();
    assert_eq!(report.problems.len(), 1, "{report}");
    assert_eq!(report.problems[0].file.as_deref(), Some(rel.as_str()));
    assert!(report.problems[0].detail.contains("SHA-256 differs"), "{report}");
}

#[tokio::test]
async fn a_deleted_segment_is_named_with_its_seq_range() {
    let dir = build().await;
    let (rel, path) = first_file(dir.path());
    let seqs_in_file = {
        let b = read(&path);
        let mut s: Vec<i64> = b.iter().flat_map(seqs).collect();
        s.sort();
        s
    };
    std::fs::remove_file(&path).unwrap();
    let report = verify(dir.path()).unwrap();
    assert!(!report.is_ok());
    let removed = report
        .problems
        .iter()
        .find(|p| p.kind == ProblemKind::Removed && p.file.as_deref() == Some(rel.as_str()));
    let removed = removed.unwrap_or_else(|| panic!("{report}"));
    assert!(
        removed.detail.contains(&format!(
            "seq {}..={}",
            seqs_in_file[0],
            seqs_in_file[seqs_in_file.len() - 1]
        )),
        "{removed}"
    );
    // The signed checkpoints no longer match either.
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.detail.contains("do not reproduce the signed checkpoint")),
        "{report}"
    );
}

#[tokio::test]
async fn reordered_rows_are_named() {
    let dir = build().await;
    let (rel, path) = first_file(dir.path());
    let mut batches = read(&path);
    let n = batches[0].num_rows() as u32;
    let mut idx: Vec<u32> = (0..n).collect();
    idx.swap(1, 2);
    let s = seqs(&batches[0]);
    batches[0] = arrow_select::take::take_record_batch(&batches[0], &UInt32Array::from(idx)).unwrap();
    write(&path, &batches);
    rehash(dir.path(), &rel);
    let report = verify(dir.path()).unwrap();
    assert_eq!(report.problems.len(), 1, "{report}");
    let p = &report.problems[0];
    assert_eq!(p.kind, ProblemKind::Reordered);
    assert_eq!((p.file.as_deref(), p.seq), (Some(rel.as_str()), Some(s[1] as u64)));
}

#[tokio::test]
async fn an_inserted_file_and_duplicate_events_are_named() {
    let dir = build().await;
    let (_, path) = first_file(dir.path());
    let extra = path.with_file_name("seg-extra.parquet");
    std::fs::copy(&path, &extra).unwrap();
    let report = verify(dir.path()).unwrap();
    let inserted: Vec<_> = report
        .problems
        .iter()
        .filter(|p| p.kind == ProblemKind::Inserted)
        .collect();
    assert_eq!(inserted.len(), 1, "{report}");
    assert!(inserted[0].file.as_deref().unwrap().ends_with("seg-extra.parquet"));
    assert!(inserted[0].detail.contains("not in the manifest"));
}

#[tokio::test]
async fn a_reforged_event_breaks_the_signed_checkpoints_in_its_range() {
    let dir = build().await;
    let (rel, path) = first_file(dir.path());
    let mut batches = read(&path);
    let b = &batches[0];
    // Rewrite row 0 completely and consistently: canonical bytes and the flat column.
    let raw = b
        .column_by_name("raw_canonical")
        .unwrap()
        .as_any()
        .downcast_ref::<BinaryArray>()
        .unwrap();
    let msg = strings(b, "message");
    let mut new_raw: Vec<Vec<u8>> = (0..raw.len()).map(|i| raw.value(i).to_vec()).collect();
    let mut new_msg = msg.clone();
    let old = msg[0].clone().unwrap();
    let forged = old.replace("a", "b");
    new_raw[0] = String::from_utf8(new_raw[0].clone())
        .unwrap()
        .replace(&format!("\"message\":\"{old}\""), &format!("\"message\":\"{forged}\""))
        .into_bytes();
    new_msg[0] = Some(forged);
    let seq0 = seqs(b)[0] as u64;
    let mut nb = replace_column(b, "raw_canonical", Arc::new(BinaryArray::from_iter_values(new_raw)));
    nb = replace_column(&nb, "message", Arc::new(StringArray::from(new_msg)));
    batches[0] = nb;
    write(&path, &batches);
    rehash(dir.path(), &rel);

    let report = verify(dir.path()).unwrap();
    assert!(!report.is_ok());
    // The seal's recorded root and the signed checkpoints both disagree; the checkpoint problem names
    // a seq range that contains the forged event.
    let cp = report
        .problems
        .iter()
        .find(|p| p.detail.contains("do not reproduce the signed checkpoint"))
        .unwrap_or_else(|| panic!("{report}"));
    let from = cp.seq.unwrap();
    let to: u64 = cp
        .detail
        .split("..")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(from <= seq0 && seq0 < to, "{cp}");
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.detail.contains("differs from the one recorded at sealing")),
        "{report}"
    );
}
