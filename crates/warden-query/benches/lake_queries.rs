//! What Warden's SQL costs over a large lake: the governance queries of issue 7 (spend per team,
//! spend per agent top 10, denials per team per day, shadow agents, scope drift) run by
//! `warden_query::QueryEngine` (DataFusion) and by DuckDB over the same Parquet files in the same
//! run, and both engines' answers compared.
//!
//! The lake: 10 million events with `warden_lake::arrow_schema()`, one zstd segment per day over 10
//! days (`events/day=YYYY-MM-DD/*.parquet`, sorted by time, 128 Ki-row groups), 50 teams, 5,000
//! registered agents plus 50 unregistered ones (~1% of events), 20 MCP servers × 10 tools = 200
//! tools, ~70% tool calls (~3% of them outside the agent's grants, most of those denied; ~2% of all
//! events denied), ~25% model calls with tokens and cost, ~5% credential and lifecycle events. The
//! registry (`agents`, ~46,000 `grants` rows: 3–4 scopes per agent, 2–3 patterns each) is a MemTable for Warden and a table for DuckDB.
//! Generated once into `$CARGO_TARGET_DIR/warden-query-bench/` and reused.
//!
//! Each query runs once to warm up, then 3 times; the best run is reported (ms). DuckDB runs in
//! Python (the `duckdb` wheel), timed inside Python so process start is not counted; it gets the
//! same files through `read_parquet`, 2 threads like DataFusion on this machine. Targets:
//! aggregates ≤ 250 ms, anti-joins ≤ 1 s, no query slower than 2× DuckDB. Each engine runs its
//! formulation of a report: Warden `Report::sql` (scope drift with the `in_granted_scope`
//! predicate), DuckDB `Report::portable_sql` (scope drift as a join); `scope_drift_as_join` runs the
//! join in both engines, for comparison.
//!
//! Run with `cargo bench -p warden-query --bench lake_queries` (needs `WARDEN_TEST_PYTHON` with
//! `duckdb`, as `scripts/test.sh` installs; without it only Warden's column is printed). Without
//! `--bench` (as `cargo test --all-targets` runs it, in debug) it runs a 20,000-event smoke
//! configuration in a few seconds. `WARDEN_BENCH_EVENTS=N` overrides the event count;
//! `WARDEN_BENCH_EXPLAIN=1` prints DataFusion's `EXPLAIN ANALYZE` of each query first;
//! `WARDEN_BENCH_ONLY=name` runs one query.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "a benchmark: failing loudly is the point"
)]

#[path = "support/events.rs"]
mod events;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::DataType;
use events::{Event, batch, mix, write_segment};
use serde_json::{Value, json};
use warden_query::govern::Report;
use warden_query::{GrantedTool, Limits, QueryEngine, RegisteredAgent, Registry, Visibility};

/// The allocator the `warden` binary uses, so queries are measured as `warden serve` runs them.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const TEAMS: usize = 50;
const AGENTS: usize = 5_000;
const SHADOW_AGENTS: usize = 50;
const SERVERS: usize = 20;
const TOOLS: [&str; 10] = [
    "get_issue",
    "get_file",
    "list_repos",
    "list_users",
    "search_code",
    "create_issue",
    "update_issue",
    "write_file",
    "delete_repo",
    "deploy_release",
];
/// Scope kinds: (suffix, tool globs, sensitive).
const SCOPES: [(&str, &[&str], bool); 3] = [
    ("read", &["get_*", "list_*", "search_*"], false),
    ("write", &["create_*", "update_*", "write_*"], false),
    ("admin", &["delete_*", "deploy_*"], true),
];
const DAYS: i64 = 10;
const DAY_MS: i64 = 86_400_000;
/// 2026-11-16T00:00:00Z.
const T0: i64 = 1_794_787_200_000;
/// A query of the run: name, SQL, time budget in ms (`None`: shown, no target).
struct Query {
    name: &'static str,
    sql: &'static str,
    /// The same query for DuckDB (no Warden functions).
    portable: &'static str,
    budget: Option<f64>,
}

/// `count(*)` first (a floor: planning, listing and footers), then the issue's five queries.
fn queries() -> Vec<Query> {
    let only = std::env::var("WARDEN_BENCH_ONLY").ok();
    all_queries()
        .into_iter()
        .filter(|q| only.as_deref().is_none_or(|o| o == q.name))
        .collect()
}

fn all_queries() -> Vec<Query> {
    let report = |r: Report, budget: f64| Query {
        name: r.name(),
        sql: r.sql(),
        portable: r.portable_sql(),
        budget: Some(budget),
    };
    vec![
        Query {
            name: "count_all",
            sql: "SELECT count(*) AS n FROM events",
            portable: "SELECT count(*) AS n FROM events",
            budget: None,
        },
        report(Report::SpendPerTeam, 250.0),
        report(Report::SpendPerAgentTop10, 250.0),
        report(Report::DenialsPerTeamPerDay, 250.0),
        report(Report::ShadowAgents, 1_000.0),
        report(Report::ScopeDrift, 1_000.0),
        Query {
            name: "scope_drift_as_join",
            sql: Report::ScopeDrift.portable_sql(),
            portable: Report::ScopeDrift.portable_sql(),
            budget: None,
        },
    ]
}

struct Fleet {
    teams: Vec<String>,
    /// Registered agents first, then the shadow ones.
    agents: Vec<String>,
    servers: Vec<String>,
    /// Per agent (registered only): the (server, tool) indexes its grants allow.
    allowed: Vec<Vec<(usize, usize)>>,
    registry: Registry,
}

fn fleet() -> Fleet {
    let teams: Vec<String> = (0..TEAMS).map(|t| format!("team-{t:02}")).collect();
    let servers: Vec<String> = (0..SERVERS).map(|s| format!("srv-{s:02}")).collect();
    let mut agents = Vec::new();
    let mut registered = Vec::new();
    let mut grants = Vec::new();
    let mut allowed = Vec::new();
    for i in 0..AGENTS + SHADOW_AGENTS {
        let team = i % TEAMS;
        let id = format!("spiffe://acme.example/team/{}/agent/agent-{i:04}", teams[team]);
        agents.push(id.clone());
        if i >= AGENTS {
            continue;
        }
        let r = mix(i as u64);
        let home = (r % SERVERS as u64) as usize;
        let other = ((r >> 8) % SERVERS as u64) as usize;
        let mut held: Vec<(usize, usize)> = vec![(home, 0), (home, 1), (other, 0)];
        if (r >> 16).is_multiple_of(10) {
            held.push((home, 2));
        }
        held.dedup();
        let mut scopes = Vec::new();
        let mut tools = Vec::new();
        for (server, kind) in held {
            let (suffix, globs, sensitive) = SCOPES[kind];
            let scope = format!("{}-{suffix}", servers[server]);
            for glob in globs {
                grants.push(GrantedTool {
                    agent_id: id.clone(),
                    team: teams[team].clone(),
                    scope: scope.clone(),
                    sensitive,
                    pattern: format!("{}/{glob}", servers[server]),
                });
                let prefix = glob.trim_end_matches('*');
                for (t, tool) in TOOLS.iter().enumerate() {
                    if tool.starts_with(prefix) {
                        tools.push((server, t));
                    }
                }
            }
            scopes.push(scope);
        }
        tools.sort_unstable();
        tools.dedup();
        allowed.push(tools);
        registered.push(RegisteredAgent {
            agent_id: id,
            team: teams[team].clone(),
            purpose: "benchmark".to_owned(),
            origin: ["golden-path", "golden-path", "manual", "golden-path", "delegated"][(r >> 24) as usize % 5]
                .to_owned(),
            status: "active".to_owned(),
            scopes,
        });
    }
    Fleet {
        teams,
        agents,
        servers,
        allowed,
        registry: Registry {
            agents: registered,
            grants,
        },
    }
}

/// Event `i` of `n` (0-based), deterministic.
fn event<'a>(fleet: &'a Fleet, i: u64, n: u64) -> Event<'a> {
    let r = mix(i ^ 0xA5A5_5A5A);
    let agent = if r.is_multiple_of(100) {
        AGENTS + ((r >> 8) as usize % SHADOW_AGENTS)
    } else {
        (r >> 8) as usize % AGENTS
    };
    let team = agent % TEAMS;
    let time_ms = T0 + (i as i64 * DAYS * DAY_MS) / n as i64;
    let mut e = Event {
        seq: i as i64 + 1,
        time_ms,
        class_uid: 6003,
        action_id: Some(1),
        agent_id: Some(&fleet.agents[agent]),
        team: Some(&fleet.teams[team]),
        decision: Some("allow"),
        ..Event::default()
    };
    let kind = (r >> 24) % 100;
    let r2 = mix(r);
    if kind < 70 {
        // A tool call: in scope, or (3%) anywhere, mostly denied.
        let (server, tool, denied) = if agent < AGENTS && r2 % 100 >= 3 {
            let allowed = &fleet.allowed[agent];
            let (s, t) = allowed[(r2 >> 8) as usize % allowed.len()];
            (s, t, (r2 >> 20) % 1000 < 3)
        } else {
            let s = (r2 >> 8) as usize % SERVERS;
            let t = (r2 >> 16) as usize % TOOLS.len();
            (s, t, (r2 >> 28) % 10 < 8)
        };
        e.server = Some(&fleet.servers[server]);
        e.tool = Some(TOOLS[tool]);
        if denied {
            e.action_id = Some(2);
            e.decision = Some("deny");
        }
    } else if kind < 95 {
        let input = 100 + (r2 % 4_900) as i64;
        let output = 50 + ((r2 >> 16) % 1_950) as i64;
        e.input_tokens = Some(input);
        e.output_tokens = Some(output);
        e.cost_micro_usd = Some(input * 3 + output * 15);
        e.message = Some("model call");
    } else {
        e.class_uid = [3003, 3005, 3004][(r2 % 3) as usize];
        e.message = Some("credential");
    }
    e
}

fn generate(dir: &Path, fleet: &Fleet, n: u64) {
    let schema = warden_lake::arrow_schema();
    let per_day = n.div_ceil(DAYS as u64);
    let chunk = 128 * 1024;
    for day in 0..DAYS as u64 {
        let (from, to) = (day * per_day, ((day + 1) * per_day).min(n));
        if from >= to {
            break;
        }
        let mut batches: Vec<RecordBatch> = Vec::new();
        let mut i = from;
        while i < to {
            let end = (i + chunk).min(to);
            let evs: Vec<Event<'_>> = (i..end).map(|k| event(fleet, k, n)).collect();
            batches.push(batch(&schema, &evs));
            i = end;
        }
        let date = day_name(T0 + day as i64 * DAY_MS);
        let path = dir
            .join("events")
            .join(format!("day={date}"))
            .join(format!("{:012}.parquet", from + 1));
        write_segment(&path, &schema, &batches);
    }
}

/// The registry for DuckDB (the directory name carries a version: bump it when columns change).
fn write_registry(dir: &Path, registry: &Registry) {
    for (name, b) in [
        ("agents", registry.agents_batch().unwrap()),
        ("grants", registry.grants_batch().unwrap()),
    ] {
        let path = dir.join(format!("{name}.parquet"));
        let _ = std::fs::remove_file(&path);
        write_segment(&path, &b.schema(), &[b]);
    }
}

fn day_name(ms: i64) -> String {
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let z = ms.div_euclid(DAY_MS) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

fn lake_dir(n: u64) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    target.join("warden-query-bench").join(format!("events-{n}-v3"))
}

/// Normalises a result for comparison: time columns become a marker (the engines spell them
/// differently through Python), floats are rounded.
fn normalise(rows: &Value, time_columns: &[String]) -> Value {
    let mut rows = rows.clone();
    if let Some(rows) = rows.as_array_mut() {
        for row in rows {
            if let Some(obj) = row.as_object_mut() {
                for (k, v) in obj.iter_mut() {
                    if time_columns.contains(k) {
                        *v = json!("<time>");
                    } else if let Some(f) = v.as_f64().filter(|_| v.is_f64()) {
                        *v = json!((f * 10.0).round() / 10.0);
                    }
                }
            }
        }
    }
    rows
}

const DUCKDB_SCRIPT: &str = r#"
import json, sys, time
import duckdb
job = json.load(sys.stdin)
con = duckdb.connect()
con.execute("SET threads = 2")
con.execute("SET enable_progress_bar = false")
con.execute("SET autoinstall_known_extensions = false")
d = job["dir"]
con.execute(f"CREATE VIEW events AS SELECT * FROM read_parquet('{d}/events/*/*.parquet')")
con.execute(f"CREATE TABLE agents AS SELECT * FROM read_parquet('{d}/agents.parquet')")
con.execute(f"CREATE TABLE grants AS SELECT * FROM read_parquet('{d}/grants.parquet')")
# Warden's engine reads this table from the segments' footer catalogs; DuckDB computes it.
con.execute("CREATE VIEW event_tools AS SELECT DISTINCT server, tool FROM events WHERE server IS NOT NULL AND tool IS NOT NULL")
out = {"version": duckdb.__version__, "queries": {}}
for q in job["queries"]:
    times = []
    for run in range(job["runs"] + 1):
        t = time.perf_counter()
        cur = con.execute(q["sql"])
        rows = cur.fetchall()
        ms = (time.perf_counter() - t) * 1000
        if run > 0:
            times.append(ms)
    cols = [c[0] for c in cur.description]
    def conv(v):
        if isinstance(v, (int, float, str)) or v is None:
            return v
        return "<time>"
    out["queries"][q["name"]] = {"ms": times, "rows": [dict(zip(cols, [conv(v) for v in r])) for r in rows]}
print("RESULT " + json.dumps(out))
"#;

fn duckdb(dir: &Path, runs: usize) -> Option<Value> {
    let Some(python) = std::env::var_os("WARDEN_TEST_PYTHON") else {
        println!("DuckDB skipped: WARDEN_TEST_PYTHON is not set (scripts/test.sh exports it)");
        return None;
    };
    let queries: Vec<Value> = queries()
        .iter()
        .map(|q| json!({"name": q.name, "sql": q.portable}))
        .collect();
    let job = json!({"dir": dir.display().to_string(), "runs": runs, "queries": queries});
    let mut child = Command::new(&python)
        .args(["-c", DUCKDB_SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start python");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(job.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        if err.contains("No module named 'duckdb'") {
            println!("DuckDB skipped: the Python at WARDEN_TEST_PYTHON has no duckdb");
            return None;
        }
        panic!("duckdb failed: {err}");
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .unwrap_or_else(|| panic!("no result from duckdb: {stdout}"));
    Some(serde_json::from_str(line).unwrap())
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let n: u64 = std::env::var("WARDEN_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if full { 10_000_000 } else { 20_000 });
    let runs = if full { 3 } else { 1 };
    let fleet = fleet();
    let dir = lake_dir(n);
    if dir.join("done").exists() {
        println!("lake: {} (reused)", dir.display());
    } else {
        // Built under a private name and renamed, so concurrent runs never read a half-written lake.
        let _ = std::fs::remove_dir_all(&dir);
        let t = Instant::now();
        let building = dir.with_extension(format!("building-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&building);
        generate(&building, &fleet, n);
        write_registry(&building, &fleet.registry);
        std::fs::write(building.join("done"), b"").unwrap();
        if std::fs::rename(&building, &dir).is_err() {
            // Another run got there first.
            let _ = std::fs::remove_dir_all(&building);
        }
        println!(
            "lake: {} generated in {:.1} s",
            dir.display(),
            t.elapsed().as_secs_f64()
        );
    }
    let bytes: u64 = walk(&dir.join("events"))
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    println!(
        "{n} events, {} segments, {:.1} MB ({:.1} B/event), {} registered agents, {} grant rows",
        walk(&dir.join("events")).len(),
        bytes as f64 / 1e6,
        bytes as f64 / n as f64,
        fleet.registry.agents.len(),
        fleet.registry.grants.len()
    );

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let engine = QueryEngine::with_limits(
        &dir,
        warden_lake::arrow_schema(),
        Arc::new(Vec::new),
        Limits {
            max_rows: 1_000_000,
            ..Limits::default()
        },
    )
    .unwrap();
    let all = Visibility::All;
    let mut warden: BTreeMap<&str, (f64, Value, Vec<String>)> = BTreeMap::new();
    let explain = std::env::var_os("WARDEN_BENCH_EXPLAIN").is_some();
    for query in queries() {
        if explain {
            let plan = runtime
                .block_on(engine.sql_with_registry(&format!("EXPLAIN ANALYZE {}", query.sql), &all, &fleet.registry))
                .unwrap();
            for row in plan.rows() {
                println!("{}", row.last().and_then(Value::as_str).unwrap_or_default());
            }
        }
        let mut times = Vec::new();
        let mut last = None;
        for run in 0..=runs {
            let t = Instant::now();
            let result = runtime
                .block_on(engine.sql_with_registry(query.sql, &all, &fleet.registry))
                .unwrap();
            let ms = t.elapsed().as_secs_f64() * 1e3;
            if run > 0 {
                times.push(ms);
            }
            last = Some(result);
        }
        let result = last.unwrap();
        let time_columns = result
            .schema()
            .fields()
            .iter()
            .filter(|f| {
                matches!(
                    f.data_type(),
                    DataType::Timestamp(..) | DataType::Date32 | DataType::Date64
                )
            })
            .map(|f| f.name().clone())
            .collect();
        let best = times.iter().copied().fold(f64::INFINITY, f64::min);
        warden.insert(query.name, (best, result.to_json(), time_columns));
    }

    let duck = duckdb(&dir, runs);
    if let Some(d) = &duck {
        println!(
            "DuckDB {} (Python wheel), 2 threads; best of {runs} after a warm-up run",
            d["version"].as_str().unwrap_or("?")
        );
    }
    println!();
    println!(
        "{:<26} {:>10} {:>10} {:>7}  {:<22} rows / agree",
        "query", "warden ms", "duckdb ms", "ratio", "target"
    );
    let mut failed = Vec::new();
    for query in queries() {
        let (ms, rows, time_columns) = &warden[query.name];
        let (duck_ms, ratio, agree) = match &duck {
            Some(d) => {
                let q = &d["queries"][query.name];
                let best = q["ms"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter_map(Value::as_f64)
                    .fold(f64::INFINITY, f64::min);
                let same = normalise(rows, time_columns) == normalise(&q["rows"], time_columns);
                if !same {
                    failed.push(format!("{}: the engines disagree", query.name));
                }
                (
                    format!("{best:.1}"),
                    format!("{:.2}", ms / best),
                    if same { "yes" } else { "NO" },
                )
            }
            None => ("-".to_owned(), "-".to_owned(), "-"),
        };
        let within = query.budget.is_none_or(|budget| *ms <= budget)
            && (ratio == "-" || query.budget.is_none() || ratio.parse::<f64>().unwrap() <= 2.0);
        if full && !within {
            failed.push(format!("{}: {ms:.1} ms misses its target", query.name));
        }
        let target = match query.budget {
            None => "-".to_owned(),
            Some(budget) => format!(
                "≤ {budget:.0} ms, ≤ 2× duckdb {}",
                if !full {
                    "(full run)"
                } else if within {
                    "ok"
                } else {
                    "MISS"
                }
            ),
        };
        println!(
            "{:<26} {:>10.1} {:>10} {:>7}  {:<22} {} / {}",
            query.name,
            ms,
            duck_ms,
            ratio,
            target,
            rows.as_array().map_or(0, Vec::len),
            agree
        );
    }
    println!();
    if failed.is_empty() {
        println!(
            "all answers agree{}",
            if full {
                " and every target is met"
            } else {
                " (smoke run: targets apply to the full run)"
            }
        );
    } else {
        for f in &failed {
            println!("FAILED {f}");
        }
        if failed.iter().any(|f| f.contains("disagree")) {
            std::process::exit(1);
        }
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else if p.extension().is_some_and(|x| x == "parquet") {
                out.push(p);
            }
        }
    }
    out
}
