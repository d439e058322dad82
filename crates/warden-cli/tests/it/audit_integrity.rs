//! The audit lake's integrity through the real binary: `kill -9` during sustained ingest keeps every
//! acknowledged event exactly once and `warden audit verify` passes; a row of a sealed Parquet file
//! rewritten with a plausible value is named by file, seq and column by `warden audit verify --lake`;
//! an evidence pack from `warden audit export` passes `verify-pack` and a changed, dropped or added
//! byte fails it precisely; DuckDB reads the lake's Parquet files and agrees with `warden audit query`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow_array::{Array, ArrayRef, Int64Array, RecordBatch, StringArray};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::{Value, json};
use warden_lake::ManifestEntry;

use crate::support::{Api, Server, WARDEN, stderr, stdout};

const AGENTS: [&str; 3] = [
    "spiffe://warden.local/team/payments/agent/reconciler",
    "spiffe://warden.local/team/payments/agent/biller",
    "spiffe://warden.local/team/ops/agent/deployer",
];

/// A tool call as a collector ships it: `i` picks the agent and the decision.
fn tool_call(id: &str, i: usize, time_ms: i64) -> Value {
    let agent = AGENTS[i % AGENTS.len()];
    let team = if agent.contains("/payments/") {
        "payments"
    } else {
        "ops"
    };
    let decision = if i % 4 == 1 { "deny" } else { "allow" };
    json!({
        "activity_id": 99,
        "activity_name": "decide_tool_call",
        "category_uid": 6,
        "class_uid": 6003,
        "message": format!("{decision} github/get_issue"),
        "metadata": {
            "extensions": [],
            "product": {"name": "collector", "vendor_name": "acme", "version": "1"},
            "profiles": [],
            "uid": id,
            "version": "1.8.0"
        },
        "severity_id": 1,
        "status_id": if decision == "deny" { 2 } else { 1 },
        "time": time_ms,
        "type_uid": 600_399,
        "warden": {
            "call_id": format!("call-{i}"),
            "gen_ai.agent.id": agent,
            "gen_ai.tool.name": "get_issue",
            "server": "github",
            "team": team,
            "decision": decision
        }
    })
}

fn now_ms() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

/// Ships `n` events (ids `<prefix>-<i>`) in batches of 50.
fn ship(admin: &Api, prefix: &str, n: usize) {
    let t = now_ms();
    let ids: Vec<usize> = (0..n).collect();
    for chunk in ids.chunks(50) {
        let events: Vec<Value> = chunk
            .iter()
            .map(|i| tool_call(&format!("{prefix}-{i}"), *i, t + *i as i64))
            .collect();
        let reply = admin.post("/v1/audit/events", &json!({ "events": events }));
        assert_eq!(reply.status, 200, "{reply:?}");
    }
}

fn run(args: &[&str], server: Option<&Server>, token: &str) -> std::process::Output {
    let mut cmd = Command::new(WARDEN);
    cmd.args(args).env("WARDEN_TOKEN", token);
    if let Some(server) = server {
        cmd.env("WARDEN_SERVER", &server.url);
    }
    cmd.output().unwrap()
}

#[test]
fn kill_9_during_sustained_ingest_keeps_every_acknowledged_event_once_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let token = server.admin_token();
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let deadline = Instant::now() + Duration::from_secs(20);
    let producers: Vec<_> = (0..8)
        .map(|p| {
            let api = server.api(&token);
            let acked = acked.clone();
            std::thread::spawn(move || {
                let agent = ureq::Agent::new_with_config(
                    ureq::Agent::config_builder()
                        .http_status_as_error(false)
                        .timeout_global(Some(Duration::from_secs(5)))
                        .build(),
                );
                for round in 0usize.. {
                    if Instant::now() > deadline {
                        break;
                    }
                    let ids: Vec<String> = (0..25).map(|k| format!("crash-{p}-{round}-{k}")).collect();
                    let events: Vec<Value> = ids
                        .iter()
                        .enumerate()
                        .map(|(k, id)| tool_call(id, round * 25 + k, now_ms()))
                        .collect();
                    let res = agent
                        .post(format!("{}/v1/audit/events", api.base))
                        .header("Authorization", &format!("Bearer {}", api.token.as_deref().unwrap()))
                        .send_json(json!({ "events": events }));
                    match res {
                        Ok(r) if r.status().as_u16() == 200 => acked.lock().unwrap().extend(ids),
                        // Killed: the rest of this producer's batches are not acknowledged.
                        _ => break,
                    }
                }
            })
        })
        .collect();
    // Let ingest run, then kill -9 in the middle of it.
    std::thread::sleep(Duration::from_millis(1500));
    let mut server = server;
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    for p in producers {
        p.join().unwrap();
    }
    drop(server);
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= 100,
        "too few events acknowledged before the kill: {}",
        acked.len()
    );

    let server = Server::start(dir.path());
    let admin = server.api(&token);
    let rows = admin.audit("SELECT uid, count(*) AS n FROM events WHERE uid LIKE 'crash-%' GROUP BY uid");
    let stored: HashMap<String, i64> = rows
        .iter()
        .map(|r| (r["uid"].as_str().unwrap().to_owned(), r["n"].as_i64().unwrap()))
        .collect();
    for id in &acked {
        assert_eq!(
            stored.get(id),
            Some(&1),
            "acknowledged event {id} is not stored exactly once"
        );
    }
    assert!(stored.values().all(|n| *n == 1), "an event is stored twice");
    assert!(stored.len() >= acked.len());

    let out = server.cli(&token, &["audit", "verify"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).starts_with("ok: "), "{}", stdout(&out));
    // The JSON form says the same.
    let out = server.cli(&token, &["--json", "audit", "verify"]);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["ok"], json!(true), "{report}");
    assert!(report["events"].as_u64().unwrap() >= acked.len() as u64);
    // Auditors may verify; team-admins may not.
    let auditor = admin.post("/v1/access-tokens", &json!({"role": "auditor", "name": "ann"}));
    assert_eq!(auditor.status, 201, "{auditor:?}");
    let reply = server
        .api(auditor.body["token"].as_str().unwrap())
        .get("/v1/audit/verify");
    assert_eq!(
        (reply.status, reply.body["ok"].clone()),
        (200, json!(true)),
        "{reply:?}"
    );
    assert_eq!(admin.post("/v1/teams", &json!({"name": "payments"})).status, 201);
    let team_admin = admin.post(
        "/v1/access-tokens",
        &json!({"role": "team-admin", "team": "payments", "name": "tia"}),
    );
    let reply = server
        .api(team_admin.body["token"].as_str().unwrap())
        .post("/v1/audit/verify", &json!({}));
    assert_eq!(reply.status, 403, "{reply:?}");
}

fn manifest(lake: &Path) -> Vec<ManifestEntry> {
    std::fs::read_to_string(lake.join("manifest.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Rewrites the first non-null `decision` of the first sealed file (allow ↔ deny) and fixes the file's
/// hash in the manifest, as a careful attacker would. Returns the file (relative), the seq and the
/// old and new values.
fn rewrite_one_decision(lake: &Path) -> (String, i64, String, String) {
    let mut entries = manifest(lake);
    let rel = entries[0].files[0].path.clone();
    let path = lake.join(&rel);
    let mut batches: Vec<RecordBatch> = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&path).unwrap())
        .unwrap()
        .build()
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let batch = &batches[0];
    let decisions = batch
        .column_by_name("decision")
        .unwrap()
        .as_any()
        .downcast_ref::<StringArray>()
        .unwrap();
    let row = (0..decisions.len()).find(|i| !decisions.is_null(*i)).unwrap();
    let old = decisions.value(row).to_owned();
    let new = if old == "allow" { "deny" } else { "allow" }.to_owned();
    let mut values: Vec<Option<String>> = (0..decisions.len())
        .map(|i| (!decisions.is_null(i)).then(|| decisions.value(i).to_owned()))
        .collect();
    values[row] = Some(new.clone());
    let seq = batch
        .column_by_name("seq")
        .unwrap()
        .as_any()
        .downcast_ref::<Int64Array>()
        .unwrap()
        .value(row);
    let idx = batch.schema().index_of("decision").unwrap();
    let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
    columns[idx] = Arc::new(StringArray::from(values));
    batches[0] = RecordBatch::try_new(batch.schema(), columns).unwrap();
    let mut writer = ArrowWriter::try_new(std::fs::File::create(&path).unwrap(), batches[0].schema(), None).unwrap();
    for b in &batches {
        writer.write(b).unwrap();
    }
    writer.close().unwrap();
    use sha2::Digest;
    let sha: String = sha2::Sha256::digest(std::fs::read(&path).unwrap())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    for e in &mut entries {
        for f in &mut e.files {
            if f.path == rel {
                f.sha256 = sha.clone();
            }
        }
    }
    let text: String = entries
        .iter()
        .map(|e| serde_json::to_string(e).unwrap() + "\n")
        .collect();
    std::fs::write(lake.join("manifest.jsonl"), text).unwrap();
    (rel, seq, old, new)
}

#[test]
fn a_rewritten_parquet_row_is_named_by_file_seq_and_column_offline() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let server = Server::start(dir.path());
    let token = server.admin_token();
    ship(&server.api(&token), "tamper", 200);

    // A running server holds the lake: the offline form refuses it and says what to do instead.
    let out = run(&["audit", "verify", "--lake", lake.to_str().unwrap()], None, "");
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(
        err.starts_with("error: ") && err.contains("open in a running `warden serve`"),
        "{err}"
    );

    assert!(server.stop().success());
    let out = run(&["audit", "verify", "--lake", lake.to_str().unwrap()], None, "");
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).contains("0 in the WAL"),
        "a graceful stop seals everything: {}",
        stdout(&out)
    );

    let (rel, seq, old, new) = rewrite_one_decision(&lake);
    let out = run(&["audit", "verify", "--lake", lake.to_str().unwrap()], None, "");
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let report = stdout(&out);
    let line = format!(
        "altered: {rel} seq {seq} column `decision`: stored \"{new}\" but the signed canonical event says \"{old}\""
    );
    assert!(report.contains(&line), "{report}");
    let err = stderr(&out);
    assert!(
        err.starts_with("error: the audit lake failed verification: 1 problem"),
        "{err}"
    );
    assert!(err.contains(&rel), "{err}");
}

fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

#[test]
fn an_exported_pack_verifies_offline_and_a_changed_dropped_or_added_byte_fails_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let token = server.admin_token();
    let admin = server.api(&token);
    ship(&admin, "pack", 300);
    let from = rfc3339(now_ms() - 3_600_000);
    let to = rfc3339(now_ms() + 3_600_000);
    let pack = dir.path().join("evidence.pack");
    let out = server.cli(
        &token,
        &[
            "audit",
            "export",
            "--from",
            &from,
            "--to",
            &to,
            "--out",
            pack.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("wrote "), "{}", stdout(&out));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&pack).unwrap().permissions().mode() & 0o777, 0o600);
    assert!(
        std::fs::read_dir(dir.path())
            .unwrap()
            .all(|e| !e.unwrap().file_name().to_string_lossy().ends_with(".tmp")),
        "no temporary file is left behind"
    );
    assert!(
        !dir.path()
            .join("lake/exports")
            .read_dir()
            .is_ok_and(|mut d| d.next().is_some())
    );

    // Offline: no server variables at all.
    let out = run(&["audit", "verify-pack", pack.to_str().unwrap()], None, "");
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let report = stdout(&out);
    for expected in [
        "ok: ",
        "events: ",
        "range: seq ",
        "checkpoint: size ",
        "key id: ",
        "window: ",
    ] {
        assert!(report.contains(expected), "{expected} in {report}");
    }
    let out = run(&["--json", "audit", "verify-pack", pack.to_str().unwrap()], None, "");
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(summary["events"].as_u64().unwrap() >= 300, "{summary}");
    assert_eq!(summary["ok"], json!(true));

    // A team export by the team's admin; another team's is refused.
    let teams = admin.post("/v1/teams", &json!({"name": "payments"}));
    assert_eq!(teams.status, 201);
    let tia = admin.post(
        "/v1/access-tokens",
        &json!({"role": "team-admin", "team": "payments", "name": "tia"}),
    );
    let tia = tia.body["token"].as_str().unwrap().to_owned();
    let team_pack = dir.path().join("payments.pack");
    let out = server.cli(
        &tia,
        &[
            "audit",
            "export",
            "--from",
            &from,
            "--to",
            &to,
            "--team",
            "payments",
            "--out",
            team_pack.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run(&["audit", "verify-pack", team_pack.to_str().unwrap()], None, "");
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("(team payments)"), "{}", stdout(&out));
    let out = server.cli(
        &tia,
        &[
            "audit",
            "export",
            "--from",
            &from,
            "--to",
            &to,
            "--team",
            "ops",
            "--out",
            team_pack.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("cannot export team `ops`"), "{}", stderr(&out));

    let good = std::fs::read(&pack).unwrap();
    let doctored = dir.path().join("doctored.pack");
    let check = |bytes: &[u8], what: &str| -> String {
        std::fs::write(&doctored, bytes).unwrap();
        let out = run(&["audit", "verify-pack", doctored.to_str().unwrap()], None, "");
        assert_eq!(out.status.code(), Some(1), "{what}: {}", stdout(&out));
        let err = stderr(&out);
        assert!(err.starts_with("error: the evidence pack "), "{what}: {err}");
        assert_eq!(err.lines().count(), 1, "{what}: {err}");
        err
    };
    // Flip one byte in the middle of the events.
    let mut flipped = good.clone();
    let at = good.len() / 2;
    flipped[at] ^= 0x01;
    let err = check(&flipped, "flipped");
    assert!(
        err.contains("altered") || err.contains("at byte") || err.contains("event seq"),
        "flipped byte {at}: {err}"
    );
    // Drop one byte.
    let mut dropped = good.clone();
    dropped.remove(at);
    let err = check(&dropped, "dropped");
    assert!(
        err.contains("byte") || err.contains("altered"),
        "dropped byte {at}: {err}"
    );
    // Add one byte.
    let mut added = good.clone();
    added.insert(at, b'x');
    let err = check(&added, "added");
    assert!(
        err.contains("byte") || err.contains("altered"),
        "added byte {at}: {err}"
    );
    // A changed byte in the first member header names the archive position.
    let mut header = good.clone();
    header[10] ^= 0x20;
    let err = check(&header, "header");
    assert!(err.contains("byte") || err.contains("member"), "{err}");

    let bad = server.cli(
        &token,
        &["audit", "export", "--from", "yesterday", "--to", &to, "--out", "x"],
    );
    assert_eq!(bad.status.code(), Some(1));
    assert!(stderr(&bad).contains("is not a time"), "{}", stderr(&bad));
}

/// Runs `script` with the test venv's Python; `None` when WARDEN_TEST_PYTHON is unset.
fn python(script: &str) -> Option<String> {
    let python = std::env::var("WARDEN_TEST_PYTHON").ok()?;
    let out = Command::new(python).arg("-c").arg(script).output().unwrap();
    assert!(out.status.success(), "python: {}", stderr(&out));
    Some(stdout(&out))
}

fn counts(rows: &[Value], key: &str) -> BTreeMap<String, i64> {
    rows.iter()
        .map(|r| {
            let k = match &r[key] {
                Value::String(s) => s.clone(),
                Value::Null => "NULL".to_owned(),
                other => other.to_string(),
            };
            (k, r["n"].as_i64().unwrap())
        })
        .collect()
}

#[test]
fn duckdb_reads_the_sealed_lake_and_agrees_with_warden_audit_query() {
    if std::env::var_os("WARDEN_TEST_PYTHON").is_none() {
        eprintln!("skipped: WARDEN_TEST_PYTHON is unset (run through `bash scripts/test.sh`, which installs duckdb)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let token = server.admin_token();
    let admin = server.api(&token);
    assert_eq!(admin.post("/v1/teams", &json!({"name": "payments"})).status, 201);
    ship(&admin, "duck", 500);
    assert!(server.stop().success());

    let lake: PathBuf = dir.path().join("lake");
    let glob = format!("{}/events/**/*.parquet", lake.display());
    let script = format!(
        r#"
import duckdb, json
src = "read_parquet('{glob}', hive_partitioning=true)"
by_class = duckdb.sql(f"SELECT class_uid, count(*) FROM {{src}} GROUP BY 1").fetchall()
by_agent = duckdb.sql(f"SELECT agent_id, count(*) FROM {{src}} GROUP BY 1").fetchall()
print(json.dumps({{"class": [[str(k), n] for k, n in by_class], "agent": [["NULL" if k is None else k, n] for k, n in by_agent]}}))
"#
    );
    let duck: Value = serde_json::from_str(&python(&script).unwrap()).unwrap();
    let duck_counts = |key: &str| -> BTreeMap<String, i64> {
        duck[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p[0].as_str().unwrap().to_owned(), p[1].as_i64().unwrap()))
            .collect()
    };

    let server = Server::start(dir.path());
    let admin = server.api(&token);
    let by_class = counts(
        &admin.audit("SELECT class_uid, count(*) AS n FROM events GROUP BY class_uid"),
        "class_uid",
    );
    let by_agent = counts(
        &admin.audit("SELECT agent_id, count(*) AS n FROM events GROUP BY agent_id"),
        "agent_id",
    );
    // The restart itself may log events (the change log is carried on); compare what was sealed.
    let sealed: i64 = duck_counts("class").values().sum();
    let total: i64 = by_class.values().sum();
    assert_eq!(sealed, total, "duckdb saw {sealed} sealed events, warden {total}");
    assert_eq!(duck_counts("class"), by_class);
    assert_eq!(duck_counts("agent"), by_agent);
    assert_eq!(by_class.get("6003"), Some(&500), "{by_class:?}");
    for agent in AGENTS {
        assert!(by_agent.get(agent).is_some_and(|n| *n > 100), "{agent}: {by_agent:?}");
    }
}
