//! Evidence packs: export, offline verification, and precise failures on doctored packs.

use std::path::Path;

use crate::support::{config, events};
use warden_lake::{Lake, LakeConfig, PackError, PackRequest, ProblemKind, verify, verify_pack, verify_pack_with_key};

/// 300 events; `logged_time` is the sequencer clock, so windows are taken from the receipts' events.
async fn lake_with_events(dir: &Path) -> (Lake, Vec<i64>) {
    lake_with_events_in(dir, config()).await
}

async fn lake_with_events_in(dir: &Path, config: LakeConfig) -> (Lake, Vec<i64>) {
    let lake = Lake::open(dir, config).unwrap();
    let mut logged = Vec::new();
    for chunk in 0..6u64 {
        lake.append(events(chunk * 50..chunk * 50 + 50)).await.unwrap();
        if chunk % 2 == 1 {
            lake.seal().await.unwrap();
        }
        // Spread logged_time over distinct milliseconds.
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    // Logged times in seq order, from the snapshot's Parquet files and tail.
    let snap = lake.snapshot().unwrap();
    let mut pairs: Vec<(i64, i64)> = Vec::new();
    let mut add = |b: &arrow_array::RecordBatch| {
        let seq = b
            .column_by_name("seq")
            .unwrap()
            .as_any()
            .downcast_ref::<arrow_array::Int64Array>()
            .unwrap();
        let lt = b
            .column_by_name("logged_time")
            .unwrap()
            .as_any()
            .downcast_ref::<arrow_array::Int64Array>()
            .unwrap();
        for i in 0..b.num_rows() {
            pairs.push((seq.value(i), lt.value(i)));
        }
    };
    for f in &snap.files {
        let r = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(f).unwrap())
            .unwrap()
            .build()
            .unwrap();
        for b in r {
            add(&b.unwrap());
        }
    }
    for b in &snap.tail {
        add(b);
    }
    pairs.sort();
    logged.extend(pairs.into_iter().map(|p| p.1));
    (lake, logged)
}

fn request(from: i64, to: i64) -> PackRequest {
    PackRequest {
        from_ms: from,
        to_ms: to,
        team: None,
        control_plane: serde_json::json!({"guardrails": ["no-secrets"], "agents": [{"id": "a1"}]}),
        since_size: Some(40),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pack_verifies_offline_and_proves_the_range_complete() {
    let dir = tempfile::tempdir().unwrap();
    let (lake, logged) = lake_with_events(dir.path()).await;
    // A window from the logged time of seq 60 to that of seq 260 (exclusive), both ends strictly
    // between distinct values.
    let from = logged[60];
    let to = logged[260];
    let out = dir.path().join("pack.tar");
    let mut stages = Vec::new();
    let summary = lake
        .export_pack(&request(from, to), &out, &mut |p| stages.push(p))
        .unwrap();
    assert!(!stages.is_empty());
    let a = logged.iter().position(|&t| t >= from).unwrap() as u64;
    let b = logged.iter().position(|&t| t >= to).unwrap() as u64;
    assert_eq!(
        (summary.first_seq, summary.end_seq, summary.events, summary.redacted),
        (a, b, b - a, 0)
    );
    let report = verify_pack(&out).unwrap();
    assert_eq!((report.first_seq, report.end_seq, report.tree_size), (a, b, 300));
    assert_eq!(report.consistent_with.unwrap().0, 40);
    assert!(verify_pack_with_key(&out, Some(&lake.verifier_key())).is_ok());
    let other = warden_lake::LogKey::from_seed("test.example/audit", [9; 32]).verifier_key();
    assert!(matches!(
        verify_pack_with_key(&out, Some(&other)),
        Err(PackError::WrongKey { .. })
    ));
    // Readable by tar.
    let listing = std::process::Command::new("tar").arg("-tf").arg(&out).output();
    if let Ok(listing) = listing {
        let names = String::from_utf8_lossy(&listing.stdout);
        assert!(
            names.contains("events.parquet") && names.contains("checkpoint.txt"),
            "{names}"
        );
    }

    // A team filter: only team-1's events in full, the others as leaf hashes.
    let mut req = request(from, to);
    req.team = Some("team-1".to_owned());
    let team_out = dir.path().join("team.tar");
    let s = lake.export_pack(&req, &team_out, &mut |_| {}).unwrap();
    assert!(s.events > 0 && s.redacted > 0 && s.events + s.redacted == b - a);
    let r = verify_pack(&team_out).unwrap();
    assert!(r.notes.iter().any(|n| n.contains("leaf hashes only")), "{r}");

    // The whole log up to now: the window runs past the end.
    let all = dir.path().join("all.tar");
    lake.export_pack(&request(0, i64::MAX), &all, &mut |_| {}).unwrap();
    let r = verify_pack(&all).unwrap();
    assert_eq!((r.first_seq, r.end_seq), (0, 300));
    lake.close().await.unwrap();
}

/// With blocks of 16 events the tree is 18 block roots and 12 leaves; proofs reach into blocks of
/// seals the window does not touch, which the lake reads from the files, before and after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proofs_read_blocks_from_files_across_seals_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LakeConfig {
        block_leaves: 16,
        ..config()
    };
    let (lake, logged) = lake_with_events_in(dir.path(), cfg.clone()).await;
    let before = lake.checkpoint();
    assert_eq!(before.size, 300);
    let mut req = request(logged[200], logged[260]);
    req.since_size = Some(7);
    let out = dir.path().join("pack.tar");
    lake.export_pack(&req, &out, &mut |_| {}).unwrap();
    let r = verify_pack(&out).unwrap();
    let a = logged.iter().position(|&t| t >= logged[200]).unwrap() as u64;
    let b = logged.iter().position(|&t| t >= logged[260]).unwrap() as u64;
    assert!(a >= 100 && b > a);
    assert_eq!((r.first_seq, r.end_seq, r.tree_size), (a, b, 300));
    assert_eq!(r.consistent_with.unwrap().0, 7);
    lake.close().await.unwrap();

    // Reopened: the last, incomplete block's leaves come back from the files.
    let lake = Lake::open(dir.path(), cfg).unwrap();
    assert_eq!((lake.size(), lake.checkpoint().root), (300, before.root));
    let again = dir.path().join("again.tar");
    req.since_size = Some(290);
    lake.export_pack(&req, &again, &mut |_| {}).unwrap();
    assert_eq!(verify_pack(&again).unwrap().consistent_with.unwrap().0, 290);
    let receipts = lake.append(crate::support::events(300..301)).await.unwrap();
    assert!(receipts[0].new && receipts[0].leaf_hash.is_some());
    lake.close().await.unwrap();
    assert!(verify(dir.path()).unwrap().is_ok());

    // A block root forged in the manifest is named.
    let manifest = dir.path().join("manifest.jsonl");
    let text = std::fs::read_to_string(&manifest).unwrap();
    let mut first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    first["blocks"][1] = serde_json::json!("00".repeat(32));
    let rest: Vec<&str> = text.lines().skip(1).collect();
    std::fs::write(&manifest, format!("{first}\n{}\n", rest.join("\n"))).unwrap();
    let report = verify(dir.path()).unwrap();
    let p = report
        .problems
        .iter()
        .find(|p| p.kind == ProblemKind::Altered && p.detail.contains("events 16..32"))
        .unwrap_or_else(|| panic!("{report}"));
    assert_eq!(p.file.as_deref(), Some("manifest.jsonl"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_dropped_or_added_byte_fails_with_a_precise_message() {
    let dir = tempfile::tempdir().unwrap();
    let (lake, logged) = lake_with_events(dir.path()).await;
    let out = dir.path().join("pack.tar");
    lake.export_pack(&request(logged[10], logged[200]), &out, &mut |_| {})
        .unwrap();
    lake.close().await.unwrap();
    let good = std::fs::read(&out).unwrap();
    let doctored = dir.path().join("doctored.tar");
    let check = |bytes: &[u8]| {
        std::fs::write(&doctored, bytes).unwrap();
        verify_pack(&doctored).unwrap_err().to_string()
    };
    // Member offsets: find a byte inside events.jsonl's data.
    let find = |needle: &[u8]| good.windows(needle.len()).position(|w| w == needle).unwrap();
    let in_events = find(b"\"metadata\":{") + 20;
    let mut changed = good.clone();
    changed[in_events] ^= 0x01;
    let msg = check(&changed);
    assert!(msg.contains("member `events.jsonl` was altered"), "{msg}");

    let in_manifest = find(b"\"tree_size\"") + 14;
    let mut changed = good.clone();
    changed[in_manifest] = if changed[in_manifest] == b'1' { b'2' } else { b'1' };
    let msg = check(&changed);
    assert!(msg.contains("manifest.json") || msg.contains("signature"), "{msg}");

    let mut dropped = good.clone();
    dropped.remove(in_events);
    let msg = check(&dropped);
    assert!(msg.contains("not a valid archive") || msg.contains("altered"), "{msg}");

    let mut added = good.clone();
    added.insert(in_events, b'x');
    let msg = check(&added);
    assert!(msg.contains("not a valid archive") || msg.contains("altered"), "{msg}");

    let mut trailing = good.clone();
    trailing.push(0);
    let msg = check(&trailing);
    assert!(msg.contains("follow the end of the archive"), "{msg}");

    let truncated = &good[..good.len() - 1500];
    let msg = check(truncated);
    assert!(msg.contains("not a valid archive"), "{msg}");
}
