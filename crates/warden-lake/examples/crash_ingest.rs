//! Ingest until killed: used by the crash test (`tests/crash.rs`), which `kill -9`s this process at
//! a random moment and then checks that every event it saw acknowledged is in the lake exactly once.
//!
//! Usage: `crash_ingest <lake dir> <id prefix>`. Prints `ack <event id> <seq>` for every durable
//! receipt, flushed at once. Seals are small and frequent so that kills land during seals too.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test driver: failing loudly is the point"
)]

use std::io::Write;
use std::time::Duration;

use warden_lake::{AuditEvent, Decision, Lake, LakeConfig, Subject, ToolCall};

fn event(id: String, i: u64) -> AuditEvent {
    let subject = Subject {
        agent_id: format!("agent-{}", i % 5),
        team: Some("t".to_owned()),
        ..Subject::default()
    };
    let call = ToolCall {
        server: "s".to_owned(),
        tool: format!("tool{}", i % 3),
        decision: if i.is_multiple_of(10) {
            Decision::Deny
        } else {
            Decision::Allow
        },
        policy_ids: vec![],
        reason: None,
    };
    AuditEvent::tool_decision(id, 1_764_000_000_000 + i as i64, &subject, &call)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let dir = args.next().expect("lake dir");
    let prefix = args.next().expect("id prefix");
    let config = LakeConfig {
        wal_segment_bytes: 1 << 20,
        seal_max_events: 700,
        seal_max_age: Duration::from_millis(200),
        checkpoint_interval: Duration::from_millis(20),
        ..LakeConfig::default()
    };
    let lake = Lake::open(std::path::Path::new(&dir), config).expect("open lake");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(String, u64)>();
    for p in 0..8u64 {
        let lake = lake.clone();
        let tx = tx.clone();
        let prefix = prefix.clone();
        tokio::spawn(async move {
            for i in 0u64.. {
                // Mostly single events, sometimes a batch of 20.
                let n = if i.is_multiple_of(9) { 20 } else { 1 };
                let events: Vec<AuditEvent> = (0..n)
                    .map(|k| event(format!("{prefix}-{p}-{i}-{k}"), i * 100 + k))
                    .collect();
                let ids: Vec<String> = events.iter().map(|e| e.id().to_owned()).collect();
                let receipts = lake.append(events).await.expect("append");
                for (id, r) in ids.into_iter().zip(receipts) {
                    let _ = tx.send((id, r.seq));
                }
            }
        });
    }
    drop(tx);
    let mut out = std::io::stdout().lock();
    while let Some((id, seq)) = rx.recv().await {
        writeln!(out, "ack {id} {seq}").unwrap();
        out.flush().unwrap();
    }
}
