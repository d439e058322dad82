//! The engine over real Parquet segments and a tail: visibility, read-only SQL, errors, output
//! formats, the governance reports on a hand-built fleet, and a DuckDB cross-check.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests: failing loudly is the point"
)]

#[path = "../benches/support/events.rs"]
mod events;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use events::{Event, batch, write_segment};
use serde_json::{Value, json};
use warden_query::govern::{self, Report};
use warden_query::{
    Format, GrantedTool, Limits, QueryEngine, QueryError, RegisteredAgent, Registry, TailSource, Visibility,
};

fn schema() -> SchemaRef {
    warden_lake::arrow_schema()
}

const DAY: i64 = 86_400_000;
/// 2026-11-24T00:00:00Z.
const T0: i64 = 1_795_478_400_000;

/// A tail the test can change between queries.
#[derive(Clone, Default)]
struct Tail(Arc<Mutex<Vec<RecordBatch>>>);

impl Tail {
    fn set(&self, batches: Vec<RecordBatch>) {
        *self.0.lock().unwrap() = batches;
    }
    fn source(&self) -> TailSource {
        let inner = self.0.clone();
        Arc::new(move || inner.lock().unwrap().clone())
    }
}

fn segment_path(root: &Path, day: &str, name: &str) -> PathBuf {
    root.join("events").join(format!("day={day}")).join(name)
}

/// Events `from..=to`, alternating teams `a` and `b`, agents `a1`/`b1`.
fn simple(from: i64, to: i64) -> Vec<Event<'static>> {
    (from..=to)
        .map(|seq| {
            let (team, agent) = if seq % 2 == 0 { ("a", "a1") } else { ("b", "b1") };
            Event {
                seq,
                time_ms: T0 + seq * 1000,
                class_uid: 6003,
                action_id: Some(1),
                agent_id: Some(agent),
                team: Some(team),
                server: Some("github"),
                tool: Some("get_issue"),
                decision: Some("allow"),
                ..Event::default()
            }
        })
        .collect()
}

async fn count(engine: &QueryEngine, scope: &Visibility, sql: &str) -> i64 {
    let result = engine.sql(sql, scope).await.unwrap();
    result.rows()[0][0].as_i64().unwrap()
}

fn engine(root: &Path, tail: &Tail) -> QueryEngine {
    QueryEngine::new(root, schema(), tail.source()).unwrap()
}

#[tokio::test]
async fn tail_rows_are_visible_and_sealed_rows_are_counted_once() {
    let dir = tempfile::tempdir().unwrap();
    let tail = Tail::default();
    let engine = engine(dir.path(), &tail);
    let all = Visibility::All;

    // An empty lake.
    assert_eq!(count(&engine, &all, "SELECT count(*) FROM events").await, 0);

    // Only a tail.
    tail.set(vec![batch(&schema(), &simple(1, 40))]);
    assert_eq!(count(&engine, &all, "SELECT count(*) FROM events").await, 40);

    // 1..=100 sealed, 101..=150 in the tail.
    write_segment(
        &segment_path(dir.path(), "2026-11-24", "0000000001.parquet"),
        &schema(),
        &[batch(&schema(), &simple(1, 100))],
    );
    tail.set(vec![batch(&schema(), &simple(101, 150))]);
    assert_eq!(count(&engine, &all, "SELECT count(*) FROM events").await, 150);
    assert_eq!(count(&engine, &all, "SELECT max(seq) FROM events").await, 150);

    // A seal of 101..=150 while the tail still holds them (and already 151..=160): counted once.
    write_segment(
        &segment_path(dir.path(), "2026-11-25", "0000000101.parquet"),
        &schema(),
        &[batch(&schema(), &simple(101, 150))],
    );
    tail.set(vec![
        batch(&schema(), &simple(101, 130)),
        batch(&schema(), &simple(131, 160)),
    ]);
    assert_eq!(count(&engine, &all, "SELECT count(*) FROM events").await, 160);
    assert_eq!(
        count(&engine, &all, "SELECT count(DISTINCT seq) FROM events").await,
        160
    );
    assert_eq!(
        count(&engine, &all, "SELECT sum(seq) FROM events").await,
        (1..=160).sum::<i64>()
    );

    // The tail lets go of them.
    tail.set(vec![batch(&schema(), &simple(151, 160))]);
    assert_eq!(count(&engine, &all, "SELECT count(*) FROM events").await, 160);

    // In-flight files (a seal's temporary name) are not read.
    std::fs::write(
        dir.path().join("events/day=2026-11-25/.0000000151.parquet.tmp"),
        b"partial",
    )
    .unwrap();
    std::fs::write(dir.path().join("events/day=2026-11-25/_tmp.parquet"), b"partial").unwrap();
    assert_eq!(count(&engine, &all, "SELECT count(*) FROM events").await, 160);

    // Filters and projections reach both halves.
    assert_eq!(
        count(
            &engine,
            &all,
            "SELECT count(*) FROM events WHERE seq > 95 AND seq <= 155"
        )
        .await,
        60
    );
    let result = engine
        .sql(
            "SELECT seq, team FROM events WHERE seq IN (1, 100, 101, 160) ORDER BY seq",
            &all,
        )
        .await
        .unwrap();
    assert_eq!(
        result.to_json(),
        json!([
            {"seq": 1, "team": "b"}, {"seq": 100, "team": "a"}, {"seq": 101, "team": "b"}, {"seq": 160, "team": "a"}
        ])
    );
}

#[tokio::test]
async fn a_team_sees_only_its_events_whatever_the_sql() {
    let dir = tempfile::tempdir().unwrap();
    let tail = Tail::default();
    write_segment(
        &segment_path(dir.path(), "2026-11-24", "1.parquet"),
        &schema(),
        &[batch(&schema(), &simple(1, 100))],
    );
    tail.set(vec![batch(&schema(), &simple(101, 120))]);
    let engine = engine(dir.path(), &tail);
    let team_a = Visibility::Team("a".to_owned());

    assert_eq!(
        count(&engine, &Visibility::All, "SELECT count(*) FROM events").await,
        120
    );
    assert_eq!(count(&engine, &team_a, "SELECT count(*) FROM events").await, 60);
    let rows = engine.sql("SELECT * FROM events", &team_a).await.unwrap();
    assert_eq!(rows.num_rows(), 60);
    let teams = engine.sql("SELECT DISTINCT team FROM events", &team_a).await.unwrap();
    assert_eq!(teams.to_json(), json!([{"team": "a"}]));
    for sql in [
        "SELECT count(*) FROM events WHERE team = 'b'",
        "SELECT count(*) FROM events WHERE team <> 'a' OR team IS NULL",
        "SELECT count(*) FROM (SELECT * FROM events) x WHERE x.team = 'b'",
        "SELECT count(*) FROM events e1 JOIN events e2 ON e1.seq = e2.seq WHERE e2.team = 'b'",
        "WITH x AS (SELECT * FROM events) SELECT count(*) FROM x WHERE team = 'b'",
        "SELECT count(*) FROM datafusion.public.events WHERE team = 'b'",
    ] {
        assert_eq!(count(&engine, &team_a, sql).await, 0, "{sql}");
    }
    // A team name is a value, never SQL.
    let sneaky = Visibility::Team("a' OR '1'='1".to_owned());
    assert_eq!(count(&engine, &sneaky, "SELECT count(*) FROM events").await, 0);

    // Nothing else to reach.
    for sql in [
        "SELECT * FROM information_schema.tables",
        "SHOW TABLES",
        "SELECT * FROM '/etc/passwd'",
        "SELECT * FROM 'events/day=2026-11-24/1.parquet'",
        "SELECT * FROM agents",
    ] {
        let err = engine.sql(sql, &team_a).await.unwrap_err();
        assert!(err.is_user_error(), "{sql}: {err}");
    }
    let path = dir.path().join("events/day=2026-11-24/1.parquet");
    for sql in [
        format!(
            "CREATE EXTERNAL TABLE x STORED AS PARQUET LOCATION '{}'",
            path.display()
        ),
        format!("COPY (SELECT 1) TO '{}/x.csv'", dir.path().display()),
        "CREATE VIEW x AS SELECT * FROM events".to_owned(),
        "CREATE TABLE x AS SELECT * FROM events".to_owned(),
        "INSERT INTO events SELECT * FROM events".to_owned(),
        "DELETE FROM events".to_owned(),
        "DROP TABLE events".to_owned(),
        "SET datafusion.catalog.information_schema = true".to_owned(),
        "EXPLAIN CREATE VIEW x AS SELECT 1".to_owned(),
        "PREPARE p AS SELECT * FROM events".to_owned(),
    ] {
        let err = engine.sql(&sql, &team_a).await.unwrap_err();
        assert!(matches!(err, QueryError::NotAllowed(_)), "{sql}: {err}");
        assert!(err.to_string().contains("only read-only queries are allowed"), "{err}");
    }
    let err = engine
        .sql("SELECT count(*) FROM events; SELECT * FROM events", &team_a)
        .await
        .unwrap_err();
    assert!(matches!(err, QueryError::Statements(_)), "{err}");
    assert!(err.to_string().contains("only one SQL statement"), "{err}");
    assert!(!dir.path().join("x.csv").exists());

    // EXPLAIN of a query is fine and shows the team filter.
    let plan = engine
        .sql("EXPLAIN SELECT count(*) FROM events", &team_a)
        .await
        .unwrap();
    let text: String = plan.rows().iter().flatten().filter_map(|v| v.as_str()).collect();
    assert!(
        text.contains("team = Utf8(\"a\")") || text.contains("team = Utf8View(\"a\")"),
        "{text}"
    );
}

#[tokio::test]
async fn errors_say_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let tail = Tail::default();
    tail.set(vec![batch(&schema(), &simple(1, 30))]);
    let engine = QueryEngine::with_limits(
        dir.path(),
        schema(),
        tail.source(),
        Limits {
            max_rows: 25,
            ..Limits::default()
        },
    )
    .unwrap();
    let all = Visibility::All;

    let err = engine.sql("SELEC count(*) FROM events", &all).await.unwrap_err();
    assert!(matches!(err, QueryError::Syntax(_)), "{err}");
    assert!(err.to_string().contains("Line: 1, Column: 1"), "{err}");

    let err = engine.sql("SELECT count(* FROM events", &all).await.unwrap_err();
    assert!(matches!(err, QueryError::Syntax(_)), "{err}");
    assert!(err.to_string().contains("Column"), "{err}");

    let err = engine.sql("SELECT agent FROM events", &all).await.unwrap_err();
    assert!(matches!(err, QueryError::UnknownColumn { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.starts_with("unknown column `agent`"), "{msg}");
    assert!(
        msg.contains("agent_id") && msg.contains("team") && msg.contains("seq"),
        "{msg}"
    );

    let err = engine.sql("SELECT \"Team\" FROM events", &all).await.unwrap_err();
    assert!(err.to_string().contains("did you mean `team`"), "{err}");

    let err = engine.sql("SELECT * FROM evnts", &all).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "unknown table `evnts`; the tables are `events`, `event_tools`"
    );

    let err = engine
        .sql("SELECT no_such_fn(seq) FROM events", &all)
        .await
        .unwrap_err();
    assert!(err.is_user_error(), "{err}");

    let err = engine.sql("", &all).await.unwrap_err();
    assert!(matches!(err, QueryError::Statements(_)), "{err}");

    let err = engine.sql("SELECT * FROM events", &all).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "the result has more than 25 rows; add a LIMIT, a WHERE clause or an aggregate to narrow it"
    );
    assert_eq!(
        engine
            .sql("SELECT * FROM events LIMIT 25", &all)
            .await
            .unwrap()
            .num_rows(),
        25
    );

    // Deep nesting is refused by the parser, not by a stack overflow.
    let deep = format!("SELECT {}1{} FROM events", "(".repeat(5000), ")".repeat(5000));
    let err = engine.sql(&deep, &all).await.unwrap_err();
    assert!(matches!(err, QueryError::Syntax(_)), "{err}");
}

#[tokio::test]
async fn output_formats() {
    let dir = tempfile::tempdir().unwrap();
    let tail = Tail::default();
    let engine = engine(dir.path(), &tail);
    let all = Visibility::All;
    let result = engine
        .sql(
            "SELECT 'a,b' AS comma, 'say \"hi\"' AS quote, 'two\nlines' AS newline, \
             CAST(NULL AS VARCHAR) AS nothing, 42 AS n, 1.5 AS f, true AS ok, \
             CAST(1795478400123 AS TIMESTAMP(3)) AS naive, \
             arrow_cast(1795478400123, 'Timestamp(Millisecond, Some(\"+02:00\"))') AS zoned, \
             CAST('2026-11-24' AS DATE) AS d, make_array('x', 'y') AS list",
            &all,
        )
        .await
        .unwrap();
    assert_eq!(
        result.to_csv(),
        "comma,quote,newline,nothing,n,f,ok,naive,zoned,d,list\r\n\
         \"a,b\",\"say \"\"hi\"\"\",\"two\nlines\",,42,1.5,true,2026-11-24T00:00:00.123Z,2026-11-24T00:00:00.123Z,2026-11-24,\"[\"\"x\"\",\"\"y\"\"]\"\r\n"
    );
    assert_eq!(
        result.to_json(),
        json!([{
            "comma": "a,b", "quote": "say \"hi\"", "newline": "two\nlines", "nothing": null,
            "n": 42, "f": 1.5, "ok": true,
            "naive": "2026-11-24T00:00:00.123Z", "zoned": "2026-11-24T00:00:00.123Z",
            "d": "2026-11-24", "list": ["x", "y"]
        }])
    );
    assert_eq!(result.render(Format::Json), result.to_json().to_string());
    let table = result.render(Format::Table);
    assert!(table.contains("| comma | quote"), "{table}");
    assert!(table.contains("two\\nlines"), "{table}");
    assert!(table.ends_with("(1 row)\n"), "{table}");
    assert_eq!("csv".parse::<Format>().unwrap(), Format::Csv);
    assert!("xml".parse::<Format>().unwrap_err().contains("table, json or csv"));

    // Lake columns: the timestamp column, a list, binary as hex.
    tail.set(vec![batch(&schema(), &simple(1, 1))]);
    let row = engine
        .sql("SELECT time_dt, raw_canonical FROM events", &all)
        .await
        .unwrap()
        .to_json();
    assert_eq!(row[0]["time_dt"], json!("2026-11-24T00:00:01Z"));
    // The canonical JSON's bytes, as hex: `{"` first.
    assert!(row[0]["raw_canonical"].as_str().unwrap().starts_with("7b22"), "{row}");

    let empty = engine.sql("SELECT seq FROM events WHERE false", &all).await.unwrap();
    assert_eq!(empty.to_json(), json!([]));
    assert_eq!(empty.to_csv(), "seq\r\n");
}

/// A hand-built fleet with known answers.
///
/// Registry: a1 (team a, golden-path, grants: github-read = github/get_*, github/list_*),
/// a2 (team a, manual, grants: deploy (sensitive) = deploy/*), b1 (team b, golden-path, grant:
/// */search, docs/read_*_page). Lake: see `fleet_events`.
fn fleet_registry() -> Registry {
    let agent = |id: &str, team: &str, origin: &str, scopes: &[&str]| RegisteredAgent {
        agent_id: id.to_owned(),
        team: team.to_owned(),
        purpose: "test".to_owned(),
        origin: origin.to_owned(),
        status: "active".to_owned(),
        scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
    };
    let grant = |id: &str, team: &str, scope: &str, sensitive: bool, pattern: &str| GrantedTool {
        agent_id: id.to_owned(),
        team: team.to_owned(),
        scope: scope.to_owned(),
        sensitive,
        pattern: pattern.to_owned(),
    };
    Registry {
        agents: vec![
            agent("a1", "a", "golden-path", &["github-read"]),
            agent("a2", "a", "manual", &["deploy"]),
            agent("b1", "b", "golden-path", &["search"]),
        ],
        grants: vec![
            grant("a1", "a", "github-read", false, "github/get_*"),
            grant("a1", "a", "github-read", false, "github/list_*"),
            grant("a2", "a", "deploy", true, "deploy/*"),
            grant("b1", "b", "search", false, "*/search"),
            grant("b1", "b", "search", false, "docs/read_*_page"),
        ],
    }
}

fn fleet_events() -> Vec<Event<'static>> {
    let mut seq = 0;
    let mut out = Vec::new();
    let mut push = |day: i64,
                    agent: &'static str,
                    team: &'static str,
                    server: Option<&'static str>,
                    tool: Option<&'static str>,
                    action: i32,
                    tokens: Option<(i64, i64, i64)>| {
        seq += 1;
        out.push(Event {
            seq,
            time_ms: T0 + day * DAY + seq * 1000,
            class_uid: 6003,
            action_id: Some(action),
            agent_id: Some(agent),
            team: Some(team),
            server,
            tool,
            decision: Some(if action == 1 { "allow" } else { "deny" }),
            input_tokens: tokens.map(|t| t.0),
            output_tokens: tokens.map(|t| t.1),
            cost_micro_usd: tokens.map(|t| t.2),
            ..Event::default()
        });
    };
    // a1: in scope (get_issue, list_repos), drift: github/getissue? no: `get_*` needs the `_`.
    push(0, "a1", "a", Some("github"), Some("get_issue"), 1, None);
    push(0, "a1", "a", Some("github"), Some("list_repos"), 1, None);
    push(0, "a1", "a", Some("github"), Some("getXissue"), 2, None); // `_` is literal: drift
    push(1, "a1", "a", Some("github"), Some("create_issue"), 2, None); // drift
    push(1, "a1", "a", Some("github"), Some("create_issue"), 2, None); // drift
    push(1, "a1", "a", Some("gitlab"), Some("get_issue"), 1, None); // other server: drift
    push(1, "a1", "a", None, None, 1, Some((100, 50, 1_000))); // model call
    // a2: uses its sensitive scope twice.
    push(0, "a2", "a", Some("deploy"), Some("rollout"), 1, Some((10, 5, 100)));
    push(1, "a2", "a", Some("deploy"), Some("rollback"), 1, None);
    // b1: search on any server; one drift.
    push(0, "b1", "b", Some("web"), Some("search"), 1, Some((1_000, 500, 20_000)));
    push(1, "b1", "b", Some("docs"), Some("search"), 1, None);
    push(1, "b1", "b", Some("docs"), Some("fetch"), 2, None); // drift
    // shadow: not registered.
    push(0, "ghost", "b", Some("web"), Some("search"), 1, Some((7, 3, 50)));
    push(1, "ghost", "b", Some("web"), Some("search"), 2, None);
    push(1, "ghost2", "a", Some("web"), Some("search"), 2, None);
    // b1 and a glob that is neither exact nor a prefix.
    push(1, "b1", "b", Some("docs"), Some("read_main_page"), 1, None);
    push(1, "b1", "b", Some("docs"), Some("read_page"), 1, None); // drift, allowed
    out
}

/// An event naming `server`/`tool`, of `team`'s agent.
fn tool_event(
    seq: i64,
    team: &'static str,
    server: Option<&'static str>,
    tool: Option<&'static str>,
) -> Event<'static> {
    Event {
        seq,
        time_ms: T0 + seq * 1000,
        class_uid: 6003,
        action_id: Some(1),
        agent_id: Some(if team == "a" { "a1" } else { "b1" }),
        team: Some(team),
        server,
        tool,
        ..Event::default()
    }
}

async fn pairs(engine: &QueryEngine, scope: &Visibility, sql: &str) -> Vec<(String, String)> {
    let rows = engine.sql(sql, scope).await.unwrap().to_json();
    rows.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["server"].as_str().unwrap().to_owned(),
                r["tool"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// `event_tools` holds every (server, tool) pair of `events` once: from a segment's footer catalog,
/// from a segment without one (read from the file), and from the tail. A team sees its own pairs.
#[tokio::test]
async fn event_tools_lists_the_pairs_of_catalogued_and_uncatalogued_segments_and_the_tail() {
    let dir = tempfile::tempdir().unwrap();
    let tail = Tail::default();
    write_segment(
        &segment_path(dir.path(), "2026-11-24", "1.parquet"),
        &schema(),
        &[batch(
            &schema(),
            &[
                tool_event(1, "a", Some("github"), Some("get_issue")),
                tool_event(2, "b", Some("db"), Some("query")),
                tool_event(3, "a", Some("github"), Some("get_issue")),
            ],
        )],
    );
    events::write_segment_with(
        &segment_path(dir.path(), "2026-11-24", "4.parquet"),
        &schema(),
        &[batch(
            &schema(),
            &[
                tool_event(4, "a", Some("github"), Some("create_issue")),
                tool_event(5, "b", None, Some("Bash")),
                tool_event(6, "b", Some("db"), None),
            ],
        )],
        false,
    );
    tail.set(vec![batch(
        &schema(),
        &[tool_event(7, "b", Some("slack"), Some("post"))],
    )]);
    let engine = engine(dir.path(), &tail);
    let all = Visibility::All;
    let listed = pairs(
        &engine,
        &all,
        "SELECT server, tool FROM event_tools ORDER BY server, tool",
    )
    .await;
    let owned = |v: &[(&str, &str)]| -> Vec<(String, String)> {
        v.iter().map(|(s, t)| ((*s).to_owned(), (*t).to_owned())).collect()
    };
    assert_eq!(
        listed,
        owned(&[
            ("db", "query"),
            ("github", "create_issue"),
            ("github", "get_issue"),
            ("slack", "post")
        ])
    );
    let scanned = pairs(
        &engine,
        &all,
        "SELECT DISTINCT server, tool FROM events WHERE server IS NOT NULL AND tool IS NOT NULL \
         ORDER BY server, tool",
    )
    .await;
    assert_eq!(listed, scanned);
    // Asked again (footers now cached), the same.
    assert_eq!(
        pairs(
            &engine,
            &all,
            "SELECT server, tool FROM event_tools ORDER BY server, tool"
        )
        .await,
        listed
    );

    let team_a = Visibility::Team("a".to_owned());
    assert_eq!(
        pairs(
            &engine,
            &team_a,
            "SELECT server, tool FROM event_tools ORDER BY server, tool"
        )
        .await,
        owned(&[("github", "create_issue"), ("github", "get_issue")])
    );
}

/// The footer catalog is what `event_tools` reads for a catalogued segment: a catalog naming a pair
/// its rows do not have shows that pair (so the engine did not scan the rows).
#[tokio::test]
async fn event_tools_reads_the_footer_catalog_not_the_rows() {
    use datafusion::parquet::arrow::ArrowWriter;
    use datafusion::parquet::file::metadata::KeyValue;

    let dir = tempfile::tempdir().unwrap();
    let path = segment_path(dir.path(), "2026-11-24", "1.parquet");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut writer = ArrowWriter::try_new(std::fs::File::create(&path).unwrap(), schema(), None).unwrap();
    writer
        .write(&batch(
            &schema(),
            &[tool_event(1, "a", Some("github"), Some("get_issue"))],
        ))
        .unwrap();
    writer.append_key_value_metadata(KeyValue::new(
        warden_lake::TOOL_CATALOG_KEY.to_owned(),
        r#"[["github","get_issue"],["only","in_the_catalog"]]"#.to_owned(),
    ));
    writer.close().unwrap();
    let engine = engine(dir.path(), &Tail::default());
    assert_eq!(
        pairs(
            &engine,
            &Visibility::All,
            "SELECT server, tool FROM event_tools ORDER BY server"
        )
        .await,
        vec![
            ("github".to_owned(), "get_issue".to_owned()),
            ("only".to_owned(), "in_the_catalog".to_owned())
        ]
    );
}

async fn report(engine: &QueryEngine, report: Report, scope: &Visibility) -> Value {
    govern::run(engine, report, scope, &fleet_registry())
        .await
        .unwrap()
        .to_json()
}

#[tokio::test]
async fn governance_reports_on_a_known_fleet() {
    let dir = tempfile::tempdir().unwrap();
    let tail = Tail::default();
    let events = fleet_events();
    write_segment(
        &segment_path(dir.path(), "2026-11-24", "1.parquet"),
        &schema(),
        &[batch(&schema(), &events[..8])],
    );
    tail.set(vec![batch(&schema(), &events[8..])]);
    let engine = engine(dir.path(), &tail);
    let all = Visibility::All;
    let team_a = Visibility::Team("a".to_owned());

    assert_eq!(
        report(&engine, Report::SpendPerTeam, &all).await,
        json!([
            {"team": "b", "events": 2, "input_tokens": 1007, "output_tokens": 503, "total_tokens": 1510, "cost_micro_usd": 20050},
            {"team": "a", "events": 2, "input_tokens": 110, "output_tokens": 55, "total_tokens": 165, "cost_micro_usd": 1100},
        ])
    );
    let top = report(&engine, Report::SpendPerAgentTop10, &all).await;
    let order: Vec<&str> = top
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["agent_id"].as_str().unwrap())
        .collect();
    assert_eq!(order, ["b1", "a1", "a2", "ghost"]);
    assert_eq!(top[1]["total_tokens"], json!(150));

    assert_eq!(
        report(&engine, Report::DenialsPerTeamPerDay, &all).await,
        json!([
            {"team": "a", "day": "2026-11-24", "denials": 1},
            {"team": "a", "day": "2026-11-25", "denials": 3},
            {"team": "b", "day": "2026-11-25", "denials": 2},
        ])
    );

    let shadow = report(&engine, Report::ShadowAgents, &all).await;
    assert_eq!(shadow.as_array().unwrap().len(), 2);
    assert_eq!(shadow[0]["agent_id"], json!("ghost"));
    assert_eq!(shadow[0]["events"], json!(2));
    assert_eq!(shadow[0]["first_seen"], json!("2026-11-24T00:00:13Z"));
    assert_eq!(shadow[1]["agent_id"], json!("ghost2"));
    let shadow_a = report(&engine, Report::ShadowAgents, &team_a).await;
    assert_eq!(shadow_a.as_array().unwrap().len(), 1);
    assert_eq!(shadow_a[0]["agent_id"], json!("ghost2"));

    let drift = report(&engine, Report::ScopeDrift, &all).await;
    let rows: Vec<(String, String, String, i64, i64)> = drift
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["agent_id"].as_str().unwrap().to_owned(),
                r["server"].as_str().unwrap().to_owned(),
                r["tool"].as_str().unwrap().to_owned(),
                r["calls"].as_i64().unwrap(),
                r["denied"].as_i64().unwrap(),
            )
        })
        .collect();
    let s = |x: &str| x.to_owned();
    assert_eq!(
        rows,
        vec![
            (s("a1"), s("github"), s("create_issue"), 2, 2),
            (s("a1"), s("github"), s("getXissue"), 1, 1),
            (s("a1"), s("gitlab"), s("get_issue"), 1, 0),
            (s("b1"), s("docs"), s("fetch"), 1, 1),
            (s("b1"), s("docs"), s("read_page"), 1, 0),
        ]
    );
    let drift_b = report(&engine, Report::ScopeDrift, &Visibility::Team("b".to_owned())).await;
    assert_eq!(drift_b.as_array().unwrap().len(), 2);
    // The join any engine runs gives the same answer as the `in_granted_scope` predicate.
    for scope in [&all, &team_a, &Visibility::Team("b".to_owned())] {
        let joined = engine
            .sql_with_registry(Report::ScopeDrift.portable_sql(), scope, &fleet_registry())
            .await
            .unwrap()
            .to_json();
        assert_eq!(joined, report(&engine, Report::ScopeDrift, scope).await);
    }
    // A team's `in_granted_scope` knows the team's grants only: team b cannot probe a1's.
    let probe = "SELECT in_granted_scope('a1', 'github', 'get_issue') AS covered";
    let covered = |scope: Visibility| {
        let engine = &engine;
        async move {
            engine
                .sql_with_registry(probe, &scope, &fleet_registry())
                .await
                .unwrap()
                .to_json()
        }
    };
    assert_eq!(covered(Visibility::All).await, json!([{"covered": true}]));
    assert_eq!(covered(team_a.clone()).await, json!([{"covered": true}]));
    assert_eq!(
        covered(Visibility::Team("b".to_owned())).await,
        json!([{"covered": false}])
    );

    assert_eq!(
        report(&engine, Report::SensitiveScopeHolders, &all).await,
        json!([{"team": "a", "agent_id": "a2", "scope": "deploy", "calls": 2, "last_used": "2026-11-25T00:00:09Z"}])
    );
    assert_eq!(
        report(
            &engine,
            Report::SensitiveScopeHolders,
            &Visibility::Team("b".to_owned())
        )
        .await,
        json!([])
    );

    assert_eq!(
        report(&engine, Report::GoldenPathShare, &all).await,
        json!([
            {"team": "a", "agents": 2, "golden_path_agents": 1, "agent_share_pct": 50.0, "calls": 9, "golden_path_calls": 7, "call_share_pct": 77.8},
            {"team": "b", "agents": 1, "golden_path_agents": 1, "agent_share_pct": 100.0, "calls": 5, "golden_path_calls": 5, "call_share_pct": 100.0},
        ])
    );

    // Every report runs for a team and stays inside it.
    for r in govern::ALL {
        let rows = report(&engine, *r, &team_a).await;
        for row in rows.as_array().unwrap() {
            if let Some(team) = row.get("team") {
                assert_eq!(team, &json!("a"), "{}: {row}", r.name());
            }
        }
    }
    assert_eq!(Report::for_command("spend").unwrap().len(), 2);
    assert!(Report::for_command("nope").is_none());
}

/// DuckDB (a second engine nobody here wrote) reads the same Parquet files and agrees with the
/// engine on counts per class and per agent. Runs when `WARDEN_TEST_PYTHON` (set by
/// `scripts/test.sh`) has the `duckdb` package.
#[tokio::test]
async fn duckdb_agrees_on_counts_per_class_and_agent() {
    let Some(python) = std::env::var_os("WARDEN_TEST_PYTHON") else {
        eprintln!("skipped: WARDEN_TEST_PYTHON is not set (scripts/test.sh sets it)");
        return;
    };
    let probe = std::process::Command::new(&python)
        .args(["-c", "import duckdb"])
        .status();
    if !probe.is_ok_and(|s| s.success()) {
        eprintln!("skipped: the Python at WARDEN_TEST_PYTHON has no duckdb");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let tail = Tail::default();
    let mut events = Vec::new();
    let agents: Vec<String> = (0..37)
        .map(|i| format!("spiffe://x/team/t{}/agent/a{i}", i % 5))
        .collect();
    let teams: Vec<String> = (0..5).map(|i| format!("t{i}")).collect();
    for seq in 1..=5_000i64 {
        let a = (events::mix(seq as u64) % 37) as usize;
        events.push(Event {
            seq,
            time_ms: T0 + seq * 10_000,
            class_uid: [6003, 6003, 6003, 3003, 3005, 3004][(seq % 6) as usize],
            action_id: Some(if seq % 13 == 0 { 2 } else { 1 }),
            agent_id: Some(agents[a].as_str()),
            team: Some(teams[a % 5].as_str()),
            server: Some("s"),
            tool: Some("t"),
            ..Event::default()
        });
    }
    for (i, chunk) in events.chunks(1_000).enumerate() {
        let day = if i < 3 { "2026-11-24" } else { "2026-11-25" };
        write_segment(
            &segment_path(dir.path(), day, &format!("{i:04}.parquet")),
            &schema(),
            &[batch(&schema(), chunk)],
        );
    }
    let engine = engine(dir.path(), &tail);
    let sql = "SELECT class_uid, agent_id, count(*) AS n, sum(CASE WHEN action_id = 2 THEN 1 ELSE 0 END) AS denied \
               FROM events GROUP BY class_uid, agent_id ORDER BY class_uid, agent_id";
    let ours = engine.sql(sql, &Visibility::All).await.unwrap().to_json();

    let glob = format!("{}/events/*/*.parquet", dir.path().display());
    let script = format!(
        "import duckdb, json\n\
         con = duckdb.connect()\n\
         con.execute(\"SET autoinstall_known_extensions=false; SET autoload_known_extensions=true\")\n\
         con.execute(\"CREATE VIEW events AS SELECT * FROM read_parquet('{glob}')\")\n\
         cur = con.execute(\"{sql}\")\n\
         cols = [d[0] for d in cur.description]\n\
         print(json.dumps([dict(zip(cols, r)) for r in cur.fetchall()]))\n"
    );
    let out = std::process::Command::new(&python)
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(out.status.success(), "duckdb: {}", String::from_utf8_lossy(&out.stderr));
    let theirs: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(ours, theirs);
    assert_eq!(
        ours.as_array()
            .unwrap()
            .iter()
            .map(|r| r["n"].as_i64().unwrap())
            .sum::<i64>(),
        5_000
    );
}

/// The engine over a real `warden_lake::Lake`, both ways it can be wired: the lake's snapshots, and
/// the lake directory plus `tail_batches`. Events are visible before and after a seal, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_a_real_lake_before_and_after_a_seal() {
    use warden_lake::{AuditEvent, Decision, Lake, LakeConfig, Subject, ToolCall};

    let dir = tempfile::tempdir().unwrap();
    let config = LakeConfig {
        origin: "test.example/audit".to_owned(),
        wal_segment_bytes: 1 << 20,
        seal_max_events: 1_000_000,
        max_unsealed_events: 2_000_000,
        seal_max_age: std::time::Duration::from_secs(3600),
        ..LakeConfig::default()
    };
    let lake = Arc::new(Lake::open(dir.path(), config).unwrap());
    let make = |range: std::ops::Range<i64>| -> Vec<AuditEvent> {
        range
            .map(|i| {
                let team = if i % 3 == 0 { "a" } else { "b" };
                let subject = Subject {
                    agent_id: format!("spiffe://x/team/{team}/agent/n{}", i % 7),
                    team: Some(team.to_owned()),
                    ..Subject::default()
                };
                let call = ToolCall {
                    server: "github".to_owned(),
                    tool: "get_issue".to_owned(),
                    decision: if i % 10 == 0 { Decision::Deny } else { Decision::Allow },
                    policy_ids: vec![],
                    reason: None,
                };
                AuditEvent::tool_decision(format!("evt-{i}"), T0 + i * 1000, &subject, &call)
            })
            .collect()
    };
    let snap_lake = lake.clone();
    let by_snapshot = QueryEngine::from_snapshots(
        schema(),
        Arc::new(move || {
            let s = snap_lake.snapshot().map_err(|e| e.to_string())?;
            Ok(warden_query::LakeSnapshot {
                files: s.files,
                tail: s.tail,
            })
        }),
        Limits::default(),
    )
    .unwrap();
    let tail_lake = lake.clone();
    let by_directory = QueryEngine::new(
        dir.path(),
        schema(),
        Arc::new(move || tail_lake.tail_batches().unwrap_or_default()),
    )
    .unwrap();
    let sql = "SELECT count(*) AS n, count(DISTINCT seq) AS d, sum(CASE WHEN action_id = 2 THEN 1 ELSE 0 END) AS denied FROM events";
    let check = |n: i64, denied: i64| {
        let (a, b) = (by_snapshot.clone(), by_directory.clone());
        async move {
            for engine in [a, b] {
                let r = engine.sql(sql, &Visibility::All).await.unwrap().to_json();
                assert_eq!(r, json!([{"n": n, "d": n, "denied": denied}]), "{engine:?}");
                let team_a = count(
                    &engine,
                    &Visibility::Team("a".to_owned()),
                    "SELECT count(*) FROM events",
                )
                .await;
                assert_eq!(team_a, (0..n).filter(|i| i % 3 == 0).count() as i64);
                let tools = engine
                    .sql("SELECT server, tool FROM event_tools", &Visibility::All)
                    .await
                    .unwrap()
                    .to_json();
                assert_eq!(tools, json!([{"server": "github", "tool": "get_issue"}]), "{engine:?}");
            }
        }
    };

    lake.append(make(0..300)).await.unwrap();
    check(300, 30).await;
    lake.seal().await.unwrap();
    assert!(!lake.snapshot().unwrap().files.is_empty());
    check(300, 30).await;
    lake.append(make(300..350)).await.unwrap();
    check(350, 35).await;
    lake.seal().await.unwrap();
    check(350, 35).await;

    // Every sealed segment carries its tool catalog in the footer.
    for file in lake.snapshot().unwrap().files {
        let handle = std::fs::File::open(&file).unwrap();
        let meta = datafusion::parquet::file::metadata::ParquetMetaDataReader::new()
            .parse_and_finish(&handle)
            .unwrap();
        let catalog = meta
            .file_metadata()
            .key_value_metadata()
            .and_then(|kv| kv.iter().find(|kv| kv.key == warden_lake::TOOL_CATALOG_KEY))
            .and_then(|kv| kv.value.clone());
        assert_eq!(
            catalog.as_deref(),
            Some(r#"[["github","get_issue"]]"#),
            "{}",
            file.display()
        );
    }
}
