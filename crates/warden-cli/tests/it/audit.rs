//! The audit lake through the real binary: registry changes and credentials carried into it, SQL
//! over it (`warden audit query`) with each role's view, OCSF events shipped to it once each, the
//! governance reports, and Parquet files holding every event after a stop.

use serde_json::{Value, json};

use crate::support::{Api, Server, stderr, stdout};

/// A tool call by an agent the registry does not know, as a collector would ship it.
fn shadow_call(id: &str, agent: &str) -> Value {
    json!({
        "activity_id": 99,
        "activity_name": "call_tool",
        "category_uid": 6,
        "class_uid": 6003,
        "message": "github/get_issue succeeded",
        "metadata": {
            "extensions": [],
            "product": {"name": "collector", "vendor_name": "acme", "version": "1"},
            "profiles": [],
            "uid": id,
            "version": "1.8.0"
        },
        "severity_id": 1,
        "status_id": 1,
        "time": 1_795_600_800_000_i64,
        "type_uid": 600_399,
        "warden": {
            "gen_ai.agent.id": agent,
            "gen_ai.tool.name": "get_issue",
            "server": "github",
            "team": "payments",
            "decision": "allow"
        }
    })
}

fn setup(server: &Server) -> (Api, String) {
    let admin_token = server.admin_token();
    let admin = server.api(&admin_token);
    for team in ["payments", "ops"] {
        assert_eq!(admin.post("/v1/teams", &json!({"name": team})).status, 201);
    }
    for (team, name) in [("payments", "reconciler"), ("ops", "deployer")] {
        let agent = admin.post("/v1/agents", &json!({"team": team, "name": name, "purpose": "p"}));
        assert_eq!(agent.status, 201, "{agent:?}");
        let token = Api::anonymous(&server.url).post(
            "/oauth2/token",
            &json!({"grant_type": "client_credentials", "client_id": agent.body["id"],
                    "client_secret": agent.body["client_secret"]}),
        );
        assert_eq!(token.status, 200, "{token:?}");
    }
    (admin, admin_token)
}

fn person_token(admin: &Api, role: &str, team: Option<&str>, name: &str) -> String {
    let mut body = json!({"role": role, "name": name});
    if let Some(team) = team {
        body["team"] = json!(team);
    }
    let reply = admin.post("/v1/access-tokens", &body);
    assert_eq!(reply.status, 201, "{reply:?}");
    reply.body["token"].as_str().unwrap().to_owned()
}

#[test]
fn every_change_and_credential_is_in_the_lake_and_each_role_sees_its_share() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let (admin, admin_token) = setup(&server);

    // Registry changes (Entity Management 3004) and issued credentials (Authorize Session 3003).
    let out = server.cli(
        &admin_token,
        &[
            "audit",
            "query",
            "SELECT class_uid, type_uid, count(*) AS n FROM events GROUP BY class_uid, type_uid ORDER BY type_uid",
            "--format",
            "json",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let rows: Vec<Value> = serde_json::from_str(&stdout(&out)).unwrap();
    let count = |type_uid: u64| {
        rows.iter()
            .find(|r| r["type_uid"] == type_uid)
            .map_or(0, |r| r["n"].as_u64().unwrap())
    };
    assert_eq!(count(300_301), 2, "two credentials issued: {rows:?}");
    assert_eq!(count(300_406), 2, "two agents enrolled: {rows:?}");
    assert!(count(300_401) >= 2, "teams (and the bootstrap token) created: {rows:?}");

    // A team-admin sees its own team's events only; an auditor sees every team's.
    let payments_admin = person_token(&admin, "team-admin", Some("payments"), "pay-admin");
    let auditor = person_token(&admin, "auditor", None, "the-auditor");
    let teams = |token: &str| {
        let out = server.cli(
            token,
            &[
                "audit",
                "query",
                "SELECT DISTINCT team FROM events WHERE team IS NOT NULL ORDER BY team",
                "--format",
                "csv",
            ],
        );
        assert!(out.status.success(), "{}", stderr(&out));
        // CSV lines end with CRLF (RFC 4180).
        stdout(&out).replace("\r\n", "\n")
    };
    assert_eq!(teams(&payments_admin), "team\npayments\n");
    assert_eq!(teams(&auditor), "team\nops\npayments\n");

    // The table output is for people.
    let out = server.cli(
        &auditor,
        &[
            "audit",
            "query",
            "SELECT count(*) AS n FROM events WHERE class_uid = 3003",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains('n') && stdout(&out).contains('2'),
        "{}",
        stdout(&out)
    );

    // A gateway token may not read the lake.
    let gateway = person_token(&admin, "gateway", None, "edge");
    let out = server.cli(&gateway, &["audit", "query", "SELECT 1"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));

    // Bad SQL is a precise error; anything but one read-only statement is refused.
    for (sql, expect) in [
        ("SELEC 1", "error: "),
        ("SELECT nope FROM events", "nope"),
        ("CREATE EXTERNAL TABLE x STORED AS PARQUET LOCATION '/etc'", "error: "),
        ("SELECT 1; SELECT 2", "error: "),
    ] {
        let out = server.cli(&admin_token, &["audit", "query", sql]);
        assert_eq!(out.status.code(), Some(1), "{sql}: {}", stdout(&out));
        assert!(stderr(&out).contains(expect), "{sql}: {}", stderr(&out));
    }
}

#[test]
fn shipped_events_are_stored_once_and_found_by_the_shadow_report() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data);
    let (admin, admin_token) = setup(&server);
    let ghost = "spiffe://warden.local/team/payments/agent/ghost";

    let batch = json!({"events": [shadow_call("collector-1", ghost), shadow_call("collector-2", ghost)]});
    let first = admin.post("/v1/audit/events", &batch);
    assert_eq!(first.status, 200, "{first:?}");
    assert_eq!(
        (first.body["accepted"].as_u64(), first.body["duplicates"].as_u64()),
        (Some(2), Some(0))
    );
    let again = admin.post("/v1/audit/events", &batch);
    assert_eq!(
        (again.body["accepted"].as_u64(), again.body["duplicates"].as_u64()),
        (Some(0), Some(2)),
        "{again:?}"
    );
    assert_eq!(
        again.body["seqs"], first.body["seqs"],
        "a resent event keeps its place in the log"
    );

    // Malformed events are refused whole, with the reason.
    for (event, expect) in [
        (json!({"class_uid": 6003}), "event 0: not an audit event"),
        (shadow_call("change-1", ghost), "Warden's own"),
        (
            {
                let mut e = shadow_call("collector-3", ghost);
                e["type_uid"] = json!(1);
                e
            },
            "event 0:",
        ),
    ] {
        let reply = admin.post("/v1/audit/events", &json!({"events": [event]}));
        assert_eq!(reply.status, 400, "{reply:?}");
        assert!(reply.message().contains(expect), "{reply:?}");
    }

    let out = server.cli(&admin_token, &["govern", "shadow", "--format", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains(ghost), "{}", stdout(&out));
    assert!(!stdout(&out).contains("reconciler"), "{}", stdout(&out));

    // After a stop every event is in the Parquet files, and a restart finds them all.
    let before = admin.audit("SELECT count(*) AS n FROM events")[0]["n"]
        .as_u64()
        .unwrap();
    assert!(server.stop().success());
    let parquet: Vec<_> = walk(&data.join("lake/events"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .collect();
    assert!(!parquet.is_empty(), "graceful shutdown seals the lake into Parquet");
    assert!(
        parquet.iter().all(|p| p.to_string_lossy().contains("/day=")),
        "{parquet:?}"
    );
    let server = Server::start(&data);
    let admin = server.api(&server.admin_token());
    let after = admin.audit("SELECT count(*) AS n FROM events")[0]["n"]
        .as_u64()
        .unwrap();
    assert_eq!(after, before, "nothing lost or repeated across a restart");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(walk(&path));
        } else {
            found.push(path);
        }
    }
    found
}
