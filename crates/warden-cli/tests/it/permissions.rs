//! The whole permission matrix: each role × each operation, own team vs other team. A refusal is a
//! 403 that names the role needed, changes nothing, and makes the CLI exit 3.

use serde_json::{Value, json};

use crate::support::{Api, Server, enc, stderr};

struct Fixture {
    _dir: tempfile::TempDir,
    server: Server,
    admin: Api,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let admin = server.api(&server.admin_token());
    for team in ["payments", "search"] {
        assert_eq!(admin.post("/v1/teams", &json!({"name": team})).status, 201);
    }
    admin.post("/v1/scopes", &json!({"name": "read", "tools": ["github/get_*"]}));
    Fixture {
        _dir: dir,
        server,
        admin,
    }
}

fn token(admin: &Api, name: &str, role: &str, team: Option<&str>) -> String {
    let reply = admin.post("/v1/access-tokens", &json!({"name": name, "role": role, "team": team}));
    assert_eq!(reply.status, 201, "{reply:?}");
    reply.body["token"].as_str().unwrap().to_owned()
}

fn agent(admin: &Api, team: &str, name: &str) -> String {
    let reply = admin.post("/v1/agents", &json!({"team": team, "name": name, "purpose": "test"}));
    assert_eq!(reply.status, 201, "{reply:?}");
    reply.body["id"].as_str().unwrap().to_owned()
}

/// One operation: its request, made fresh for each caller so that only permissions differ.
struct Op {
    name: &'static str,
    make: Box<dyn Fn(&Api, &str) -> (String, String, Option<Value>)>,
}

fn op(name: &'static str, make: impl Fn(&Api, &str) -> (String, String, Option<Value>) + 'static) -> Op {
    Op {
        name,
        make: Box::new(make),
    }
}

fn get(path: &str) -> (String, String, Option<Value>) {
    ("GET".to_owned(), path.to_owned(), None)
}

fn post(path: &str, body: Value) -> (String, String, Option<Value>) {
    ("POST".to_owned(), path.to_owned(), Some(body))
}

fn ops() -> Vec<Op> {
    let agent_op = |team: &'static str, verb: &'static str| {
        move |admin: &Api, tag: &str| {
            let id = agent(admin, team, &format!("a-{verb}-{tag}"));
            if verb == "resume" {
                admin.post(&format!("/v1/agents/{}/suspend", enc(&id)), &json!({}));
            }
            post(&format!("/v1/agents/{}/{verb}", enc(&id)), json!({}))
        }
    };
    let grant_op = |team: &'static str| {
        move |admin: &Api, tag: &str| {
            let id = agent(admin, team, &format!("g-{tag}"));
            post(&format!("/v1/agents/{}/grants", enc(&id)), json!({"scope": "read"}))
        }
    };
    let ungrant_op = |team: &'static str| {
        move |admin: &Api, tag: &str| {
            let id = agent(admin, team, &format!("u-{tag}"));
            admin.post(&format!("/v1/agents/{}/grants", enc(&id)), &json!({"scope": "read"}));
            (
                "DELETE".to_owned(),
                format!("/v1/agents/{}/grants/read", enc(&id)),
                None,
            )
        }
    };
    vec![
        op("list teams", |_, _| get("/v1/teams")),
        op("create team", |_, tag| {
            post("/v1/teams", json!({"name": format!("t-{tag}")}))
        }),
        op("list access tokens", |_, _| get("/v1/access-tokens")),
        op("create access token", |_, tag| {
            post(
                "/v1/access-tokens",
                json!({"name": format!("p-{tag}"), "role": "auditor"}),
            )
        }),
        op("revoke access token", |admin, tag| {
            token(admin, &format!("victim-{tag}"), "auditor", None);
            ("DELETE".to_owned(), format!("/v1/access-tokens/victim-{tag}"), None)
        }),
        op("list agents", |_, _| get("/v1/agents")),
        op("show agent", |admin, tag| {
            get(&format!(
                "/v1/agents/{}",
                enc(&agent(admin, "search", &format!("s-{tag}")))
            ))
        }),
        op("register own-team agent", |_, tag| {
            post(
                "/v1/agents",
                json!({"team": "payments", "name": format!("r-{tag}"), "purpose": "p"}),
            )
        }),
        op("register other-team agent", |_, tag| {
            post(
                "/v1/agents",
                json!({"team": "search", "name": format!("r-{tag}"), "purpose": "p"}),
            )
        }),
        op("suspend own-team agent", agent_op("payments", "suspend")),
        op("suspend other-team agent", agent_op("search", "suspend")),
        op("resume own-team agent", agent_op("payments", "resume")),
        op("resume other-team agent", agent_op("search", "resume")),
        op("revoke own-team agent", agent_op("payments", "revoke")),
        op("revoke other-team agent", agent_op("search", "revoke")),
        op("grant to own-team agent", grant_op("payments")),
        op("grant to other-team agent", grant_op("search")),
        op("ungrant from own-team agent", ungrant_op("payments")),
        op("ungrant from other-team agent", ungrant_op("search")),
        op("list grants", |_, _| get("/v1/grants")),
        op("add MCP server", |_, tag| {
            post(
                "/v1/mcp-servers",
                json!({"name": format!("m-{tag}"), "transport": {"kind": "http", "url": "http://127.0.0.1:9/mcp"}}),
            )
        }),
        op("list MCP servers", |_, _| get("/v1/mcp-servers")),
        op("define scope", |_, tag| {
            post("/v1/scopes", json!({"name": format!("s-{tag}"), "tools": ["fs/*"]}))
        }),
        op("list scopes", |_, _| get("/v1/scopes")),
        op("read change log", |_, _| get("/v1/events")),
    ]
}

#[test]
fn every_role_against_every_operation() {
    let f = fixture();
    let roles = [
        ("platform-admin", token(&f.admin, "pat", "platform-admin", None)),
        ("team-admin", token(&f.admin, "tap", "team-admin", Some("payments"))),
        ("auditor", token(&f.admin, "aud", "auditor", None)),
    ];
    // (operation, platform-admin, team-admin of payments, auditor): the expected status.
    let expected: &[(&str, u16, u16, u16)] = &[
        ("list teams", 200, 200, 200),
        ("create team", 201, 403, 403),
        ("list access tokens", 200, 403, 200),
        ("create access token", 201, 403, 403),
        ("revoke access token", 200, 403, 403),
        ("list agents", 200, 200, 200),
        ("show agent", 200, 200, 200),
        ("register own-team agent", 201, 201, 403),
        ("register other-team agent", 201, 403, 403),
        ("suspend own-team agent", 200, 200, 403),
        ("suspend other-team agent", 200, 403, 403),
        ("resume own-team agent", 200, 200, 403),
        ("resume other-team agent", 200, 403, 403),
        ("revoke own-team agent", 200, 200, 403),
        ("revoke other-team agent", 200, 403, 403),
        ("grant to own-team agent", 201, 201, 403),
        ("grant to other-team agent", 201, 403, 403),
        ("ungrant from own-team agent", 200, 200, 403),
        ("ungrant from other-team agent", 200, 403, 403),
        ("list grants", 200, 200, 200),
        ("add MCP server", 201, 403, 403),
        ("list MCP servers", 200, 200, 200),
        ("define scope", 201, 403, 403),
        ("list scopes", 200, 200, 200),
        ("read change log", 200, 403, 200),
    ];
    let ops = ops();
    assert_eq!(ops.len(), expected.len());
    let mut failures = Vec::new();
    for (op_idx, (op, (name, pa, ta, au))) in ops.iter().zip(expected).enumerate() {
        assert_eq!(op.name, *name);
        for ((role, token), want) in roles.iter().zip([pa, ta, au]) {
            let tag = format!("{}{op_idx}", &role[..1]);
            let (method, path, body) = (op.make)(&f.admin, &tag);
            let caller = Api {
                base: f.admin.base.clone(),
                token: Some(token.clone()),
            };
            let events_before = f.admin.event_count();
            let reply = match &body {
                Some(body) => caller.request(&method, &path, Some(("application/json", body.to_string().as_bytes()))),
                None => caller.request(&method, &path, None),
            };
            if reply.status != *want {
                failures.push(format!(
                    "{role} {name}: got {} want {want}: {}",
                    reply.status, reply.body
                ));
                continue;
            }
            if reply.status == 403 {
                assert_eq!(reply.code(), "forbidden");
                let required = reply.body["error"]["required_role"].as_str().unwrap();
                assert!(required.contains("platform-admin"), "{reply:?}");
                assert!(
                    reply.message().contains(required),
                    "the message names the role: {reply:?}"
                );
                assert_eq!(
                    f.admin.event_count(),
                    events_before,
                    "{role} {name}: a refusal changes nothing"
                );
            } else if method != "GET" {
                assert!(
                    f.admin.event_count() > events_before,
                    "{role} {name}: a change is recorded"
                );
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn team_admin_refusal_names_role_and_cli_exits_3() {
    let f = fixture();
    let tap = token(&f.admin, "tap", "team-admin", Some("payments"));
    let out = f.server.cli(
        &tap,
        &["agent", "register", "--team", "search", "--name", "x", "--purpose", "p"],
    );
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert_eq!(
        stderr(&out).trim(),
        "error: managing agents and grants of team `search` needs platform-admin or team-admin of team `search`; token `tap` is team-admin of team `payments` (HTTP 403, forbidden)"
    );
    let auditor = token(&f.admin, "aud", "auditor", None);
    let out = f.server.cli(&auditor, &["team", "create", "x"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        stderr(&out).contains("needs platform-admin; token `aud` is auditor"),
        "{}",
        stderr(&out)
    );
}
