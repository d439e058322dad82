//! What durable ingest into the audit lake costs: events/s and ack latency (p50/p99 of each
//! `append`, which returns only after the group commit's `fdatasync`) with 1, 16 and 64 concurrent
//! producers appending one event at a time, and with producers appending batches of 10,000; then the
//! bytes per event on disk after sealing to Parquet, and the seal rate.
//!
//! Events are realistic mixes (tool decisions with policy ids, outcomes, model usage with tokens and
//! cost, credential events) over 1,000 agents in 50 teams, ~500-700 bytes of canonical JSON each.
//! Sealing runs during the runs as it would in production (every 131,072 events).
//!
//! `WARDEN_BENCH_ONLY=paced` instead appends single events on a fixed schedule (1,000/s, each by its
//! own task, as the gateway appends decisions) and prints their latency beside the disk's own paced
//! `fdatasync` in the same run: the lake's share of a gateway call's added latency, without HTTP.
//! The floor is measured three ways: from a plain thread, from tokio tasks through a hand-off to a
//! syncing thread (the writer's hand-offs without its work), and from tokio tasks inline on their
//! worker; the differences are what thread hand-offs cost on the machine.
//!
//! Run with `cargo bench -p warden-lake --bench ingest`. Targets: ≥ 100,000 durable events/s
//! sustained, ≤ 100 bytes/event on disk. Without `--bench` (as `cargo test --all-targets` runs it, in
//! debug) it runs a tiny smoke configuration in a few seconds.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_precision_loss,
    reason = "a benchmark: failing loudly is the point"
)]

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use warden_lake::{AccessChange, AuditEvent, Credential, Decision, Lake, LakeConfig, ModelUsage, Subject, ToolCall};

/// The allocator the `warden` binary uses, with transparent huge pages off as there (first thing in
/// `main`), so the lake is measured as it runs there.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Config {
    run: Duration,
    producers: &'static [usize],
    batch: usize,
    batch_producers: usize,
    segment_bytes: u64,
}

const FULL: Config = Config {
    run: Duration::from_secs(5),
    producers: &[1, 16, 64],
    batch: 10_000,
    batch_producers: 2,
    segment_bytes: 64 << 20,
};
const SMOKE: Config = Config {
    run: Duration::from_millis(300),
    producers: &[1, 16],
    batch: 500,
    batch_producers: 1,
    segment_bytes: 1 << 20,
};

static NEXT_ID: AtomicU64 = AtomicU64::new(0);

fn event(rng: &mut u64) -> AuditEvent {
    *rng ^= *rng << 13;
    *rng ^= *rng >> 7;
    *rng ^= *rng << 17;
    let r = *rng;
    let n = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let agent = r % 1000;
    let subject = Subject {
        agent_id: format!("spiffe://acme.example/team-{}/agent-{agent:04}", agent % 50),
        team: Some(format!("team-{}", agent % 50)),
        purpose: (r.is_multiple_of(5)).then(|| "triage incoming issues".to_owned()),
        session_id: Some(format!("sess-{:08x}", (r >> 20) % 100_000)),
        subagent_id: None,
        delegation_chain: if r.is_multiple_of(4) {
            vec![format!("spiffe://acme.example/team-{}/orchestrator", agent % 50)]
        } else {
            vec![]
        },
    };
    let id = AuditEvent::new_id();
    let time = 1_764_000_000_000 + (n as i64) / 50;
    match r % 10 {
        0..=5 => {
            let call = ToolCall {
                server: ["github", "jira", "slack", "postgres"][(r >> 8) as usize % 4].to_owned(),
                tool: format!("tool_{}", (r >> 12) % 300),
                decision: if r.is_multiple_of(50) {
                    Decision::Deny
                } else {
                    Decision::Allow
                },
                policy_ids: vec![format!("grant/scope-{}/{agent}", (r >> 16) % 20)],
                reason: (r.is_multiple_of(50))
                    .then(|| "guardrail no-prod-writes: production writes need a ticket".to_owned()),
            };
            if r.is_multiple_of(2) {
                AuditEvent::tool_decision(id, time, &subject, &call)
            } else {
                AuditEvent::tool_outcome(id, time, &subject, &call, !r.is_multiple_of(20), None)
            }
        }
        6..=8 => AuditEvent::model_usage(
            id,
            time,
            &subject,
            &ModelUsage {
                provider: "anthropic".to_owned(),
                model: ["claude-opus-4", "claude-sonnet-4", "claude-haiku-4"][(r >> 9) as usize % 3].to_owned(),
                input_tokens: Some(((r >> 24) % 20_000) as i64),
                output_tokens: Some(((r >> 40) % 4_000) as i64),
                cache_read_tokens: Some(((r >> 30) % 10_000) as i64),
                cache_creation_tokens: None,
                reasoning_tokens: None,
                cost_micro_usd: Some(((r >> 33) % 100_000) as i64),
            },
        ),
        _ => AuditEvent::credential_change(
            id,
            time,
            &subject,
            AccessChange::Delegated,
            &Credential {
                credential_id: format!("jti-{:016x}", r),
                scopes: vec!["github:repo:read".to_owned(), "jira:issue:write".to_owned()],
                expires_ms: Some(time + 900_000),
                issuer: Some("https://warden.acme.example".to_owned()),
            },
            Some("spiffe://acme.example/orchestrator"),
        ),
    }
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// `producers` tasks append `per_call` events per call for `run`; returns (events, elapsed, latencies).
async fn closed_loop(lake: &Lake, producers: usize, per_call: usize, run: Duration) -> (u64, Duration, Vec<Duration>) {
    let start = Instant::now();
    let deadline = start + run;
    let mut tasks = Vec::new();
    for p in 0..producers {
        let lake = lake.clone();
        tasks.push(tokio::spawn(async move {
            let mut rng = 0x9E37_79B9_7F4A_7C15u64 ^ ((p as u64 + 1) * 0x1234_5678);
            let mut lat = Vec::new();
            let mut n = 0u64;
            while Instant::now() < deadline {
                let events: Vec<AuditEvent> = (0..per_call).map(|_| event(&mut rng)).collect();
                let t = Instant::now();
                let receipts = lake.append(events).await.unwrap();
                lat.push(t.elapsed());
                n += receipts.len() as u64;
            }
            (n, lat)
        }));
    }
    let mut total = 0;
    let mut lat = Vec::new();
    for t in tasks {
        let (n, l) = t.await.unwrap();
        total += n;
        lat.extend(l);
    }
    let elapsed = start.elapsed();
    lat.sort();
    (total, elapsed, lat)
}

/// Open loop: one event appended every `1/rate` s for `run`, each by its own task so that a slow
/// append never delays the next; returns the sorted latencies of the appends.
async fn paced(lake: &Lake, rate: u64, run: Duration) -> Vec<Duration> {
    let n = rate * run.as_secs();
    let start = tokio::time::Instant::now();
    let mut rng = 0x5151_5151_5151_5151u64;
    let mut tasks = Vec::with_capacity(n as usize);
    for i in 0..n {
        tokio::time::sleep_until(start + Duration::from_nanos(i * 1_000_000_000 / rate)).await;
        let (lake, event) = (lake.clone(), event(&mut rng));
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            lake.append(vec![event]).await.unwrap();
            t.elapsed()
        }));
    }
    let mut lat = Vec::with_capacity(tasks.len());
    for task in tasks {
        lat.push(task.await.unwrap());
    }
    lat.sort();
    lat
}

/// The record the floors write: about one event's canonical bytes.
const FLOOR_RECORD: [u8; 600] = [b'x'; 600];

/// A zero-filled, synced file with room for `n` floor records (the WAL's preallocated segment).
fn floor_file(path: &Path, n: usize) -> std::fs::File {
    use std::os::unix::fs::FileExt;
    let file = std::fs::File::create(path).unwrap();
    file.write_all_at(&vec![0u8; FLOOR_RECORD.len() * n], 0).unwrap();
    file.sync_all().unwrap();
    file
}

/// `n` writes of 600 bytes into a preallocated, zero-filled file, each `fdatasync`ed, paced at
/// 1,000/s (the WAL's pattern); sorted latencies.
fn paced_fsync(path: &Path, n: usize) -> Vec<Duration> {
    use std::os::unix::fs::FileExt;
    let file = floor_file(path, n);
    let start = Instant::now();
    let mut lat = Vec::with_capacity(n);
    for i in 0..n {
        if let Some(wait) = (start + Duration::from_millis(i as u64)).checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let t = Instant::now();
        file.write_all_at(&FLOOR_RECORD, (i * FLOOR_RECORD.len()) as u64)
            .unwrap();
        file.sync_data().unwrap();
        lat.push(t.elapsed());
    }
    let _ = std::fs::remove_file(path);
    lat.sort();
    lat
}

/// The disk's floor again, as the lake pays it: the same paced writes, each sent by its own tokio task
/// to one thread that writes, `fdatasync`s and answers (a `std::sync::mpsc` there, a tokio `oneshot`
/// back: the lake writer's hand-offs without its work), or (`inline`) made by the task itself on its
/// tokio worker (`block_in_place`). Set beside `paced_fsync`, this is what the hand-offs cost on this
/// machine, apart from anything the lake computes.
async fn paced_fsync_tasks(path: &Path, n: usize, inline: bool) -> Vec<Duration> {
    use std::os::unix::fs::FileExt;
    use std::sync::{Arc, Mutex};
    let file = Arc::new(Mutex::new(floor_file(path, n)));
    let write = |file: &Mutex<std::fs::File>, i: usize| {
        let file = file.lock().unwrap();
        file.write_all_at(&FLOOR_RECORD, (i * FLOOR_RECORD.len()) as u64)
            .unwrap();
        file.sync_data().unwrap();
    };
    let (tx, rx) = std::sync::mpsc::channel::<(usize, tokio::sync::oneshot::Sender<()>)>();
    let syncer = {
        let file = file.clone();
        std::thread::spawn(move || {
            while let Ok((i, reply)) = rx.recv() {
                write(&file, i);
                let _ = reply.send(());
            }
        })
    };
    let start = tokio::time::Instant::now();
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        tokio::time::sleep_until(start + Duration::from_millis(i as u64)).await;
        let (file, tx) = (file.clone(), tx.clone());
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            if inline {
                tokio::task::block_in_place(|| write(&file, i));
            } else {
                let (reply, answered) = tokio::sync::oneshot::channel();
                tx.send((i, reply)).unwrap();
                answered.await.unwrap();
            }
            t.elapsed()
        }));
    }
    drop(tx);
    let mut lat = Vec::with_capacity(n);
    for task in tasks {
        lat.push(task.await.unwrap());
    }
    syncer.join().unwrap();
    let _ = std::fs::remove_file(path);
    lat.sort();
    lat
}

/// p50, p99, p99.9 and the maximum of sorted latencies, in µs.
fn quantiles(sorted: &[Duration]) -> String {
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    format!(
        "p50 {:.0} µs, p99 {:.0} µs, p99.9 {:.0} µs, max {:.0} µs ({} samples)",
        us(pct(sorted, 0.5)),
        us(pct(sorted, 0.99)),
        us(pct(sorted, 0.999)),
        us(sorted.last().copied().unwrap_or_default()),
        sorted.len()
    )
}

fn dir_bytes(path: &Path, ext: &str) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(path).into_iter().flatten().flatten() {
        let p = entry.path();
        if p.is_dir() {
            total += dir_bytes(&p, ext);
        } else if p.extension().is_some_and(|e| e == ext) {
            total += entry.metadata().map(|m| m.len()).unwrap_or(0);
        }
    }
    total
}

/// Compressed bytes per column over every Parquet file under `dir`.
fn column_bytes(dir: &Path, out: &mut std::collections::BTreeMap<String, u64>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = entry.path();
        if p.is_dir() {
            column_bytes(&p, out);
        } else if p.extension().is_some_and(|e| e == "parquet") {
            let reader = parquet::file::reader::SerializedFileReader::new(std::fs::File::open(&p).unwrap()).unwrap();
            use parquet::file::reader::FileReader;
            for rg in reader.metadata().row_groups() {
                for c in rg.columns() {
                    *out.entry(c.column_path().string()).or_default() += c.compressed_size() as u64;
                }
            }
        }
    }
}

fn fsync_latency(dir: &Path) -> Duration {
    use std::io::Write;
    let path = dir.join("fsync-probe");
    let mut f = std::fs::File::create(&path).unwrap();
    f.write_all(&vec![0u8; 1 << 20]).unwrap();
    f.sync_all().unwrap();
    let mut lat = Vec::new();
    for i in 0..200u64 {
        use std::os::unix::fs::FileExt;
        f.write_all_at(&[1u8; 300], (i * 300) % (1 << 20)).unwrap();
        let t = Instant::now();
        f.sync_data().unwrap();
        lat.push(t.elapsed());
    }
    lat.sort();
    let _ = std::fs::remove_file(&path);
    pct(&lat, 0.5)
}

fn main() {
    // As the `warden` binary does: mimalloc's 2 MiB transparent huge pages, zeroed in one fault at
    // first touch, stalled appends for ~5 ms (see BENCHMARKS.md).
    #[cfg(target_os = "linux")]
    let _ = rustix::thread::disable_transparent_huge_pages(true);
    let full = std::env::args().any(|a| a == "--bench");
    let cfg = if full { &FULL } else { &SMOKE };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let tmp = tempfile::tempdir_in(
        std::env::var_os("WARDEN_BENCH_DIR").unwrap_or_else(|| std::env::temp_dir().into_os_string()),
    )
    .unwrap();
    println!(
        "warden-lake ingest benchmark ({}; {} s per run; fdatasync p50 on this disk: {:.3} ms)",
        if full { "full" } else { "smoke" },
        cfg.run.as_secs_f64(),
        ms(fsync_latency(tmp.path()))
    );
    let lake_dir = tmp.path().join("lake");
    let mut config = LakeConfig {
        wal_segment_bytes: cfg.segment_bytes,
        ..LakeConfig::default()
    };
    // `WARDEN_BENCH_CANONICAL_ZSTD=N` tries another zstd level for the canonical column.
    if let Some(level) = std::env::var("WARDEN_BENCH_CANONICAL_ZSTD")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        config.canonical_zstd_level = level;
    }
    println!("canonical column: zstd level {}", config.canonical_zstd_level);
    if let Some(secs) = std::env::var("WARDEN_BENCH_CHECKPOINT_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        config.checkpoint_interval = Duration::from_secs(secs);
    }
    if std::env::var("WARDEN_BENCH_ONLY").as_deref() == Ok("paced") {
        let floor = paced_fsync(&tmp.path().join("floor"), 5_000);
        println!(
            "the disk's floor, 600-byte write + fdatasync at 1,000/s: {}",
            quantiles(&floor)
        );
        rt.block_on(async {
            let handoff = paced_fsync_tasks(&tmp.path().join("handoff"), 5_000, false).await;
            println!(
                "the same, each sent by a task to a syncing thread:    {}",
                quantiles(&handoff)
            );
            let inline = paced_fsync_tasks(&tmp.path().join("inline"), 5_000, true).await;
            println!(
                "the same, each made by a task on its worker (inline): {}",
                quantiles(&inline)
            );
            let lake = Lake::open(&lake_dir, config.clone()).unwrap();
            closed_loop(&lake, 4, 1, Duration::from_millis(100)).await;
            for run in 1..=3 {
                let lat = paced(&lake, 1_000, Duration::from_secs(5)).await;
                println!("lake append of one event at 1,000/s, run {run}: {}", quantiles(&lat));
            }
            lake.close().await.unwrap();
        });
        return;
    }
    rt.block_on(async {
        let lake = Lake::open(&lake_dir, config.clone()).unwrap();
        // Warm up the writer and the first WAL segment.
        closed_loop(&lake, 4, 1, Duration::from_millis(100)).await;
        println!(
            "{:<28} {:>12} {:>12} {:>12} {:>12}",
            "run", "events/s", "ack p50 ms", "ack p99 ms", "events"
        );
        for &producers in cfg.producers {
            let (n, elapsed, lat) = closed_loop(&lake, producers, 1, cfg.run).await;
            println!(
                "{:<28} {:>12.0} {:>12.3} {:>12.3} {:>12}",
                format!("{producers} producers x 1 event"),
                n as f64 / elapsed.as_secs_f64(),
                ms(pct(&lat, 0.5)),
                ms(pct(&lat, 0.99)),
                n
            );
        }
        for producers in [1, cfg.batch_producers] {
            let (n, elapsed, lat) = closed_loop(&lake, producers, cfg.batch, cfg.run).await;
            println!(
                "{:<28} {:>12.0} {:>12.3} {:>12.3} {:>12}",
                format!("{producers} producers x {} batch", cfg.batch),
                n as f64 / elapsed.as_secs_f64(),
                ms(pct(&lat, 0.5)),
                ms(pct(&lat, 0.99)),
                n
            );
        }
        let seals = std::fs::read_to_string(lake_dir.join("manifest.jsonl"))
            .map(|m| m.lines().count())
            .unwrap_or(0);
        println!("seals completed during the runs: {seals}");
        let t = Instant::now();
        let pending = lake.tail_batches().unwrap().iter().map(|b| b.num_rows()).sum::<usize>();
        lake.seal().await.unwrap();
        let seal = t.elapsed();
        let size = lake.size();
        lake.close().await.unwrap();
        let parquet = dir_bytes(&lake_dir, "parquet");
        println!(
            "final seal: {pending} events in {:.0} ms ({:.0} events/s)",
            ms(seal),
            pending as f64 / seal.as_secs_f64().max(1e-9)
        );
        println!(
            "on disk after sealing: {size} events, {parquet} bytes of Parquet = {:.1} bytes/event (target <= 100)",
            parquet as f64 / size.max(1) as f64
        );
        let mut cols = std::collections::BTreeMap::new();
        column_bytes(&lake_dir, &mut cols);
        let mut cols: Vec<(String, u64)> = cols.into_iter().collect();
        cols.sort_by_key(|c| std::cmp::Reverse(c.1));
        let top: Vec<String> = cols
            .iter()
            .take(40)
            .map(|(n, b)| format!("{n} {:.1}", *b as f64 / size.max(1) as f64))
            .collect();
        println!("bytes/event by column (largest): {}", top.join(", "));
        let report = warden_lake::verify(&lake_dir).unwrap();
        assert!(report.is_ok(), "{report}");
        println!(
            "verify: ok ({} events, {} checkpoints)",
            report.events, report.checkpoints
        );
    });
}
