//! The MCP gateway inside `warden serve`, end to end: a real upstream (`server-everything` over
//! stdio), real clients (the Python `mcp` SDK, raw Streamable HTTP), real tokens and policy.

use serde_json::{Value, json};

use crate::support::{Api, NO_SECRET_ECHO as NO_SECRETS, Server, enc, everything, python_client};

struct World {
    _dir: tempfile::TempDir,
    server: Server,
    admin: Api,
}

fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let admin = server.api(&server.admin_token());
    admin.post("/v1/teams", &json!({"name": "payments"}));
    let added = admin.post(
        "/v1/mcp-servers",
        &json!({"name": "everything", "transport": {"kind": "stdio", "command": "node", "args": [everything(), "stdio"]},
                "credentials": {"env": {"WARDEN_UPSTREAM_SECRET": "s3cret-upstream"}}}),
    );
    assert_eq!(added.status, 201, "{added:?}");
    for (scope, tools) in [("echo", vec!["everything/echo"]), ("env", vec!["everything/get-env"])] {
        assert_eq!(
            admin.post("/v1/scopes", &json!({"name": scope, "tools": tools})).status,
            201
        );
    }
    let added = admin.post("/v1/guardrails", &json!({"text": NO_SECRETS}));
    assert_eq!(added.status, 201, "{added:?}");
    World {
        _dir: dir,
        server,
        admin,
    }
}

impl World {
    fn agent_token(&self, name: &str, scopes: &[&str]) -> (String, String) {
        let reply = self
            .admin
            .post("/v1/agents", &json!({"team": "payments", "name": name, "purpose": "p"}));
        let id = reply.body["id"].as_str().unwrap().to_owned();
        for scope in scopes {
            assert_eq!(
                self.admin
                    .post(&format!("/v1/agents/{}/grants", enc(&id)), &json!({"scope": scope}))
                    .status,
                201
            );
        }
        let token = Api::anonymous(&self.server.url).post(
            "/oauth2/token",
            &json!({"grant_type": "client_credentials", "client_id": id, "client_secret": reply.body["client_secret"]}),
        );
        (id, token.body["access_token"].as_str().unwrap().to_owned())
    }

    /// The lake's tool-call events through the gateway (decisions and outcomes), in log order, once
    /// every decision has its outcome (outcomes are written after the answer).
    fn call_events(&self) -> Vec<Value> {
        let sql = "SELECT activity_name, tool, agent_id, decision, policy_ids, status_id, status_detail, seq \
                   FROM events WHERE class_uid = 6003 AND server = 'everything' ORDER BY seq";
        for _ in 0..100 {
            let rows = self.admin.audit(sql);
            let count = |name: &str| rows.iter().filter(|r| r["activity_name"] == name).count();
            if count("decide_tool_call") == count("call_tool") {
                return rows;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("some calls never got their outcome event: {:?}", self.admin.audit(sql));
    }
}

#[test]
fn python_sdk_sees_only_granted_tools_and_policy_decides_each_call() {
    let w = world();
    let (agent, token) = w.agent_token("coder", &["echo"]);
    let url = format!("{}/mcp/everything", w.server.url);
    let out = python_client(
        &url,
        &token,
        json!([{"list": true}, {"call": "echo", "args": {"message": "hello"}},
               {"call": "echo", "args": {"message": "the secret is 42"}}, {"call": "get-sum", "args": {"a": 1, "b": 2}}]),
    );
    assert_eq!(out.len(), 4, "{out:?}");
    assert_eq!(out[0], json!({"tools": ["echo"]}), "only the granted tool is listed");
    assert_eq!(out[1]["is_error"], false, "{out:?}");
    assert!(out[1]["text"].as_str().unwrap().contains("hello"), "{out:?}");
    assert_eq!(out[2]["is_error"], true, "{out:?}");
    let denied = out[2]["text"].as_str().unwrap();
    assert!(
        denied.contains("echo may not repeat secrets") && denied.contains("no-secret-echo"),
        "{denied}"
    );
    assert_eq!(out[3]["is_error"], true, "{out:?}");

    // Every call has a decision event before its outcome, as the acting agent, in the audit lake.
    let events = w.call_events();
    let kinds: Vec<(&str, &str)> = events
        .iter()
        .map(|e| (e["activity_name"].as_str().unwrap(), e["tool"].as_str().unwrap()))
        .collect();
    assert_eq!(kinds.len(), 6, "three calls, each decided and ended: {kinds:?}");
    let first_outcome = kinds.iter().position(|(k, _)| *k == "call_tool").unwrap();
    assert_eq!(kinds[first_outcome - 1], ("decide_tool_call", "echo"), "{kinds:?}");
    assert!(events.iter().all(|e| e["agent_id"] == agent), "{events:?}");
    let decisions: Vec<&Value> = events
        .iter()
        .filter(|e| e["activity_name"] == "decide_tool_call")
        .collect();
    assert!(
        decisions
            .iter()
            .any(|e| e["decision"] == "deny" && e["policy_ids"] == json!(["no-secret-echo"])),
        "{decisions:?}"
    );
    let everything = w.admin.post(
        "/v1/audit/query",
        &json!({"sql": "SELECT * FROM events", "format": "csv"}),
    );
    assert_eq!(everything.status, 200, "{everything:?}");
    assert!(
        !everything.body.to_string().contains(&token)
            && !w.admin.get("/v1/events?limit=10000").body.to_string().contains(&token),
        "the token is never recorded"
    );
}

#[test]
fn no_token_gets_401_with_resource_metadata() {
    let w = world();
    let reply = Api::anonymous(&w.server.url).request(
        "POST",
        "/mcp/everything",
        Some(("application/json", br#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"0"}}}"#)),
    );
    assert_eq!(reply.status, 401);
    let challenge = reply.www_authenticate.unwrap();
    assert!(
        challenge.starts_with("Bearer ") && challenge.contains("resource_metadata="),
        "{challenge}"
    );
    let meta = Api::anonymous(&w.server.url).get("/.well-known/oauth-protected-resource");
    assert_eq!(meta.status, 200, "{meta:?}");
    assert!(
        meta.body["authorization_servers"]
            .as_array()
            .is_some_and(|a| !a.is_empty()),
        "{meta:?}"
    );
    let out = python_client(&format!("{}/mcp/everything", w.server.url), "", json!([{"list": true}]));
    assert!(
        out[0].get("error").is_some(),
        "the SDK cannot connect without a token: {out:?}"
    );
}

#[test]
fn upstream_credentials_reach_the_upstream_but_never_the_agent_token() {
    let w = world();
    let (_, token) = w.agent_token("ops", &["env"]);
    let out = python_client(
        &format!("{}/mcp/everything", w.server.url),
        &token,
        json!([{"call": "get-env"}]),
    );
    let env = out[0]["text"].as_str().unwrap();
    assert!(
        env.contains("s3cret-upstream"),
        "the configured credential is injected: {env}"
    );
    assert!(!env.contains(&token), "the agent's token is not passed upstream");
}

#[test]
fn a_revoked_agent_is_cut_off_mid_session() {
    let w = world();
    let (agent, token) = w.agent_token("coder", &["echo"]);
    let mcp = |session: Option<&str>, body: Value| {
        let mut req = ureq::http::Request::post(format!("{}/mcp/everything", w.server.url))
            .header("Authorization", format!("Bearer {token}"))
            .header("Content-Type", "application/json")
            .header("Accept", "application/json, text/event-stream");
        if let Some(session) = session {
            req = req
                .header("Mcp-Session-Id", session)
                .header("MCP-Protocol-Version", "2025-11-25");
        }
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let mut res = agent.run(req.body(body.to_string().into_bytes()).unwrap()).unwrap();
        let session = res
            .headers()
            .get("mcp-session-id")
            .map(|v| v.to_str().unwrap().to_owned());
        (res.status().as_u16(), session, res.body_mut().read_to_string().unwrap())
    };
    let (status, session, _) = mcp(
        None,
        json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"0"}}}),
    );
    assert_eq!(status, 200);
    let session = session.expect("a session id");
    mcp(
        Some(&session),
        json!({"jsonrpc":"2.0","method":"notifications/initialized"}),
    );
    let call =
        json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{"message":"hi"}}});
    let (status, _, body) = mcp(Some(&session), call.clone());
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("hi"), "{body}");

    assert_eq!(
        w.admin
            .post(&format!("/v1/agents/{}/revoke", enc(&agent)), &json!({}))
            .status,
        200
    );
    let (status, _, body) = mcp(Some(&session), call);
    assert!(
        status == 401 || status == 404,
        "the revoked agent's session is cut: {status} {body}"
    );
}
