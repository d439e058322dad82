//! The lake end to end through its public API: durable append, idempotency across restarts, sealing,
//! the tail, snapshots, checkpoints.

use crate::support::{config, event, events};
use arrow_array::Array;
use warden_lake::{Lake, LakeError, VerifierKey, arrow_schema, merkle};

fn rows(batches: &[arrow_array::RecordBatch]) -> usize {
    batches.iter().map(|b| b.num_rows()).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn append_is_sequenced_idempotent_and_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open(dir.path(), config()).unwrap();
    let receipts = lake.append(events(0..10)).await.unwrap();
    assert_eq!(
        receipts.iter().map(|r| r.seq).collect::<Vec<_>>(),
        (0..10).collect::<Vec<_>>()
    );
    assert!(receipts.iter().all(|r| r.new));

    // The same ids again (and a duplicate inside one request): nothing new, original receipts.
    let mut again = events(5..12);
    again.push(event(11));
    let r2 = lake.append(again).await.unwrap();
    assert_eq!(
        r2[..5],
        receipts[5..10]
            .iter()
            .map(|r| warden_lake::Receipt { new: false, ..*r })
            .collect::<Vec<_>>()[..]
    );
    assert!(r2[5].new && r2[6].new);
    assert_eq!((r2[5].seq, r2[6].seq), (10, 11));
    assert_eq!(r2[7], warden_lake::Receipt { new: false, ..r2[6] });
    assert_eq!(lake.size(), 12);
    assert_eq!(rows(&lake.tail_batches().unwrap()), 12);
    drop(lake);

    // Not closed (no seal): everything comes back from the WAL, and ids are still known.
    let lake = Lake::open(dir.path(), config()).unwrap();
    assert_eq!(lake.size(), 12);
    let r3 = lake.append(events(0..3)).await.unwrap();
    assert!(r3.iter().all(|r| !r.new));
    assert_eq!(r3[2].leaf_hash, receipts[2].leaf_hash);
    let cp = lake.checkpoint();
    assert_eq!(cp.size, 12);
    lake.close().await.unwrap();

    // After close every event is in Parquet and ids survive there too.
    let lake = Lake::open(dir.path(), config()).unwrap();
    let snap = lake.snapshot().unwrap();
    assert_eq!(rows(&snap.tail), 0);
    assert!(!snap.files.is_empty());
    let r4 = lake.append(events(10..13)).await.unwrap();
    assert_eq!(r4.iter().map(|r| r.new).collect::<Vec<_>>(), vec![false, false, true]);
    assert_eq!(r4[2].seq, 12);
    lake.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seal_writes_day_partitioned_parquet_and_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open(dir.path(), config()).unwrap();
    lake.append(events(0..200)).await.unwrap();
    lake.seal().await.unwrap();
    lake.append(events(200..250)).await.unwrap();
    let snap = lake.snapshot().unwrap();
    assert_eq!(snap.size, 250);
    assert_eq!(rows(&snap.tail), 50);
    assert_eq!(snap.tail[0].schema(), arrow_schema());
    // 200 events 15 minutes apart span three days.
    assert_eq!(snap.files.len(), 3);
    for f in &snap.files {
        let day = f.parent().unwrap().file_name().unwrap().to_string_lossy().into_owned();
        assert!(day.starts_with("day=2025-11-"), "{day}");
    }
    let total: usize = snap
        .files
        .iter()
        .map(|f| {
            let file = std::fs::File::open(f).unwrap();
            let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
                .unwrap()
                .build()
                .unwrap();
            reader.map(|b| b.unwrap().num_rows()).sum::<usize>()
        })
        .sum();
    assert_eq!(total, 200);

    // The checkpoint is signed by the lake's key and matches the tree of every leaf.
    lake.seal().await.unwrap();
    let cp = lake.checkpoint();
    assert_eq!(cp.size, 250);
    let key = VerifierKey::parse(&lake.verifier_key()).unwrap();
    let parsed = key.verify_checkpoint(&cp.note).unwrap();
    assert_eq!(parsed.root, cp.root);
    let leaves: Vec<merkle::Hash> = {
        let snap = lake.snapshot().unwrap();
        let mut pairs: Vec<(i64, [u8; 32])> = Vec::new();
        for f in &snap.files {
            let file = std::fs::File::open(f).unwrap();
            let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
                .unwrap()
                .build()
                .unwrap();
            for b in reader {
                let b = b.unwrap();
                let seq = b
                    .column_by_name("seq")
                    .unwrap()
                    .as_any()
                    .downcast_ref::<arrow_array::Int64Array>()
                    .unwrap()
                    .clone();
                let raw = b
                    .column_by_name("raw_canonical")
                    .unwrap()
                    .as_any()
                    .downcast_ref::<arrow_array::BinaryArray>()
                    .unwrap()
                    .clone();
                for i in 0..b.num_rows() {
                    pairs.push((seq.value(i), merkle::leaf_hash(raw.value(i))));
                }
            }
        }
        pairs.sort();
        pairs.into_iter().map(|p| p.1).collect()
    };
    assert_eq!(merkle::root(&leaves), cp.root);
    lake.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_producers_share_commits_and_get_distinct_seqs() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open(dir.path(), config()).unwrap();
    let mut tasks = Vec::new();
    for p in 0..32u64 {
        let lake = lake.clone();
        tasks.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for i in 0..50u64 {
                let r = lake.append(vec![event(p * 1000 + i)]).await.unwrap();
                seqs.push(r[0].seq);
            }
            seqs
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort();
    assert_eq!(all, (0..1600).collect::<Vec<_>>());
    lake.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_events_are_refused_and_a_lake_is_opened_once() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open(dir.path(), config()).unwrap();
    let mut bad = event(1);
    bad.type_uid = 1;
    let err = lake.append(vec![event(0), bad]).await.unwrap_err();
    assert!(matches!(err, LakeError::InvalidEvent(_)), "{err}");
    assert_eq!(lake.size(), 0);
    let mut huge = event(2);
    huge.message = "x".repeat(300 * 1024);
    assert!(matches!(
        lake.append(vec![huge]).await.unwrap_err(),
        LakeError::InvalidEvent(_)
    ));
    assert!(matches!(
        Lake::open(dir.path(), config()).unwrap_err(),
        LakeError::Locked(_)
    ));
    let other = lake.clone();
    lake.close().await.unwrap();
    assert!(matches!(
        other.append(vec![event(3)]).await.unwrap_err(),
        LakeError::Closed
    ));
    drop(other);
    let lake = Lake::open(dir.path(), config()).unwrap();
    assert_eq!(lake.size(), 0);
    let tail = lake.tail_batches().unwrap();
    assert!(tail.iter().all(|b| b.column(0).is_empty()));
    lake.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_tail_is_served_from_cached_batches_until_the_next_seal() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open(dir.path(), config()).unwrap();
    for k in 0..7u64 {
        lake.append(events(k * 10_000..(k + 1) * 10_000)).await.unwrap();
    }
    let first = lake.tail_batches().unwrap();
    assert_eq!(
        first.iter().map(|b| b.num_rows()).collect::<Vec<_>>(),
        vec![65_536, 70_000 - 65_536]
    );
    lake.append(events(70_000..70_010)).await.unwrap();
    let second = lake.tail_batches().unwrap();
    assert_eq!(second[0], first[0], "the full chunk is reused");
    assert_eq!(rows(&second), 70_010);
    lake.seal().await.unwrap();
    assert_eq!(rows(&lake.tail_batches().unwrap()), 0);
    lake.append(events(70_010..70_020)).await.unwrap();
    let snap = lake.snapshot().unwrap();
    assert_eq!((rows(&snap.tail), snap.size), (10, 70_020));
    lake.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_lake_verifies_itself_while_events_arrive_and_seals_run() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open(dir.path(), config()).unwrap();
    lake.append(events(0..200)).await.unwrap();
    lake.seal().await.unwrap();
    let writer = {
        let lake = lake.clone();
        tokio::spawn(async move {
            for round in 0..20u64 {
                let start = 200 + round * 50;
                lake.append(events(start..start + 50)).await.unwrap();
                if round % 5 == 4 {
                    lake.seal().await.unwrap();
                }
            }
        })
    };
    let mut checked = 0;
    while !writer.is_finished() || checked == 0 {
        let lake = lake.clone();
        let report = tokio::task::spawn_blocking(move || lake.verify())
            .await
            .unwrap()
            .unwrap();
        assert!(report.is_ok(), "{report}");
        assert!(report.events >= 200, "{report}");
        checked += 1;
    }
    writer.await.unwrap();
    let report = tokio::task::spawn_blocking({
        let lake = lake.clone();
        move || lake.verify()
    })
    .await
    .unwrap()
    .unwrap();
    assert!(report.is_ok(), "{report}");
    assert_eq!(report.events, 1_200);
    lake.close().await.unwrap();
    let report = warden_lake::verify(dir.path()).unwrap();
    assert!(report.is_ok(), "{report}");
    assert_eq!((report.events, report.wal_events), (1_200, 0));
}

/// Checkpoints follow the log while events arrive, with no seal or close to prompt them (the
/// checkpointer thread signs them, off the writer's path). Threads append their checkpoints to
/// `checkpoints.jsonl` independently, so the lake takes the largest line as its latest on opening,
/// wherever it stands in the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_follow_the_log_and_the_largest_is_the_latest() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open(dir.path(), config()).unwrap();
    lake.append(events(0..10)).await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while lake.checkpoint().size != 10 {
        assert!(
            std::time::Instant::now() < deadline,
            "no checkpoint of size 10 was signed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let key = VerifierKey::parse(&lake.verifier_key()).unwrap();
    assert_eq!(key.verify_checkpoint(&lake.checkpoint().note).unwrap().size, 10);
    lake.append(events(10..15)).await.unwrap();
    lake.close().await.unwrap();

    // Reversed: the largest line is now the first, not the last.
    let path = dir.path().join("checkpoints.jsonl");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() >= 3, "{text}");
    lines.reverse();
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();

    let lake = Lake::open(dir.path(), config()).unwrap();
    assert_eq!(lake.checkpoint().size, 15);
    // It matched the log, so opening signed nothing new.
    assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), lines.len());
    lake.close().await.unwrap();
}
