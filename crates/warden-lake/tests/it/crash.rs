//! `kill -9` during ingest (and during seals), then reopen: every acknowledged event is there exactly
//! once, and the lake verifies.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use arrow_array::{Array, StringArray};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use warden_lake::{Lake, verify};

/// The `crash_ingest` example, which `cargo test` builds next to the test binaries.
fn driver() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    dir.join("examples").join("crash_ingest")
}

fn uids(batch: &arrow_array::RecordBatch) -> Vec<String> {
    let a = batch
        .column_by_name("uid")
        .unwrap()
        .as_any()
        .downcast_ref::<StringArray>()
        .unwrap();
    (0..a.len()).map(|i| a.value(i).to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_events_survive_kill_9_exactly_once() {
    let driver = driver();
    if !driver.exists() {
        // `cargo test` builds examples but does not copy them to this unhashed path; `cargo test
        // --test it` does not build them at all. Built for the whole workspace, the example's
        // dependencies get the features `cargo test --workspace` unified, so more of what it built is
        // reused than with `-p warden-lake` (which recompiled 35 crates on a cold cache).
        let status = Command::new(env!("CARGO"))
            .args(["build", "--workspace", "--example", "crash_ingest"])
            .status()
            .unwrap();
        assert!(
            status.success() && driver.exists(),
            "could not build {}",
            driver.display()
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let mut acked: HashMap<String, u64> = HashMap::new();
    // Kill at different moments: early (during open/first commits), mid-ingest, after seals.
    for (round, wait_ms) in [150u64, 700, 400, 1200].into_iter().enumerate() {
        let mut child = Command::new(&driver)
            .arg(dir.path())
            .arg(format!("r{round}"))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let mut parts = line.split(' ');
                if parts.next() == Some("ack") {
                    let id = parts.next().unwrap().to_owned();
                    let seq: u64 = parts.next().unwrap().parse().unwrap();
                    got.push((id, seq));
                }
            }
            got
        });
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(wait_ms) {
            std::thread::sleep(Duration::from_millis(10));
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let got = reader.join().unwrap();
        assert!(
            !got.is_empty() || round == 0,
            "round {round}: the driver acknowledged nothing"
        );
        for (id, seq) in got {
            assert!(acked.insert(id, seq).is_none());
        }
    }
    assert!(acked.len() > 100, "only {} events acknowledged", acked.len());

    // Reopen: every acknowledged event is present once, at the seq it was acknowledged with.
    let lake = Lake::open(dir.path(), crate::support::config()).unwrap();
    let snap = lake.snapshot().unwrap();
    let mut seen: HashSet<String> = HashSet::new();
    let mut total = 0u64;
    let mut check = |ids: Vec<String>| {
        for id in ids {
            total += 1;
            assert!(seen.insert(id.clone()), "event {id} is stored twice");
        }
    };
    for f in &snap.files {
        let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(f).unwrap())
            .unwrap()
            .build()
            .unwrap();
        for b in reader {
            check(uids(&b.unwrap()));
        }
    }
    for b in &snap.tail {
        check(uids(b));
    }
    assert_eq!(total, snap.size);
    for id in acked.keys() {
        assert!(seen.contains(id), "acknowledged event {id} is missing after kill -9");
    }
    // Receipts for the acknowledged ids are the original ones.
    let sample: Vec<&String> = acked.keys().take(50).collect();
    for id in sample {
        let mut e = crate::support::event(0);
        e.metadata.uid = id.clone();
        let r = lake.append(vec![e]).await.unwrap();
        assert!(!r[0].new);
        assert_eq!(r[0].seq, acked[id]);
    }
    lake.close().await.unwrap();
    let report = verify(dir.path()).unwrap();
    assert!(report.is_ok(), "{report}");
    assert_eq!(report.events, total);
}
