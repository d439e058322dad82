//! The standalone gateway (`warden gateway --control-plane URL`), end to end: a real control plane, a
//! real upstream (`server-everything` over stdio), real clients (the Python `mcp` SDK, raw Streamable
//! HTTP). It decides locally, follows revocations, survives the control plane going away for a
//! bounded time, then fails closed, and ships every audit event exactly once.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{
    Api, NO_SECRET_ECHO as NO_SECRETS, Server, WARDEN, enc, everything, free_port, python_client, stderr,
};

/// A running `warden gateway`.
struct StandaloneGateway {
    child: Child,
    url: String,
    lines: mpsc::Receiver<String>,
    stderr: mpsc::Receiver<String>,
}

impl StandaloneGateway {
    fn start(control_plane: &str, token: &str, spool: &Path) -> StandaloneGateway {
        let mut child = Command::new(WARDEN)
            .args(["gateway", "--control-plane", control_plane, "--listen", "127.0.0.1:0"])
            .args(["--max-staleness", "3", "--refresh", "1", "--spool"])
            .arg(spool)
            .env("WARDEN_TOKEN", token)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = pipe_lines(child.stdout.take().unwrap());
        let stderr = pipe_lines(child.stderr.take().unwrap());
        let url = loop {
            let Ok(line) = lines.recv_timeout(Duration::from_secs(30)) else {
                let _ = child.kill();
                let err: Vec<String> = stderr.try_iter().collect();
                panic!("warden gateway did not start: {}", err.join("\n"))
            };
            if let Some(url) = line.strip_prefix("warden: gateway listening on ") {
                break url.to_owned();
            }
        };
        StandaloneGateway {
            child,
            url,
            lines,
            stderr,
        }
    }

    /// Sends SIGTERM and waits (bounded) for the exit; returns whether it was clean and its output.
    fn stop(mut self) -> (bool, Vec<String>) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(15);
        let clean = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status.success();
            }
            assert!(Instant::now() < deadline, "the gateway did not stop after SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut out: Vec<String> = self.lines.try_iter().collect();
        out.extend(self.stderr.try_iter());
        (clean, out)
    }
}

impl Drop for StandaloneGateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn pipe_lines(pipe: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// One agent's raw Streamable HTTP session with the gateway.
struct McpSession {
    url: String,
    token: String,
    session: Option<String>,
    /// The `Retry-After` header of the last response, if it had one.
    retry_after: Option<String>,
}

impl McpSession {
    fn open(url: &str, token: &str) -> McpSession {
        McpSession::try_open(url, token).unwrap_or_else(|(status, body)| panic!("initialize: {status} {body}"))
    }

    fn try_open(url: &str, token: &str) -> Result<McpSession, (u16, String)> {
        let mut mcp = McpSession {
            url: url.to_owned(),
            token: token.to_owned(),
            session: None,
            retry_after: None,
        };
        let (status, body) = mcp.send(json!({"jsonrpc":"2.0","id":1,"method":"initialize",
            "params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"0"}}}));
        if status != 200 || mcp.session.is_none() {
            return Err((status, body));
        }
        mcp.send(json!({"jsonrpc":"2.0","method":"notifications/initialized"}));
        Ok(mcp)
    }

    fn send(&mut self, body: Value) -> (u16, String) {
        let mut req = ureq::http::Request::post(&self.url)
            .header("Authorization", format!("Bearer {}", self.token))
            .header("Content-Type", "application/json")
            .header("Accept", "application/json, text/event-stream");
        if let Some(session) = &self.session {
            req = req
                .header("Mcp-Session-Id", session)
                .header("MCP-Protocol-Version", "2025-11-25");
        }
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let mut res = agent.run(req.body(body.to_string().into_bytes()).unwrap()).unwrap();
        if let Some(session) = res.headers().get("mcp-session-id") {
            self.session = Some(session.to_str().unwrap().to_owned());
        }
        self.retry_after = res.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
        (res.status().as_u16(), res.body_mut().read_to_string().unwrap())
    }

    fn echo(&mut self, message: &str) -> (u16, String) {
        self.send(json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{"message":message}}}))
    }

    fn list(&mut self) -> (u16, String) {
        self.send(json!({"jsonrpc":"2.0","id":3,"method":"tools/list"}))
    }
}

/// Polls `check` every 100 ms until it returns `Some`, or panics after `limit` with `what`.
fn poll<T>(limit: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(found) = check() {
            return found;
        }
        assert!(Instant::now() < deadline, "{what} (waited {limit:?})");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn register_agent(server: &Server, admin: &Api, name: &str, scope: &str) -> (String, String) {
    let reply = admin.post("/v1/agents", &json!({"team": "payments", "name": name, "purpose": "p"}));
    assert_eq!(reply.status, 201, "{reply:?}");
    let id = reply.body["id"].as_str().unwrap().to_owned();
    assert_eq!(
        admin
            .post(&format!("/v1/agents/{}/grants", enc(&id)), &json!({"scope": scope}))
            .status,
        201
    );
    let token = Api::anonymous(&server.url).post(
        "/oauth2/token",
        &json!({"grant_type": "client_credentials", "client_id": id, "client_secret": reply.body["client_secret"]}),
    );
    (id, token.body["access_token"].as_str().unwrap().to_owned())
}

fn access_token(admin: &Api, name: &str, role: &str) -> String {
    let reply = admin.post("/v1/access-tokens", &json!({"name": name, "role": role}));
    assert_eq!(reply.status, 201, "{reply:?}");
    reply.body["token"].as_str().unwrap().to_owned()
}

fn spool_state(spool: &Path) -> (String, String) {
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    (read(spool), read(&spool.with_extension("spool.shipped")))
}

/// How many decision and outcome events gateway `edge` shipped are in the audit lake: `(decisions,
/// outcomes)`.
fn shipped_calls(admin: &Api, edge: &str) -> (usize, usize) {
    let rows = admin.audit(&format!(
        "SELECT activity_name, count(*) AS n FROM events WHERE class_uid = 6003 AND server = 'everything' \
         AND message LIKE '%(via gateway {edge})' GROUP BY activity_name"
    ));
    let count = |name: &str| {
        rows.iter()
            .find(|r| r["activity_name"] == name)
            .map_or(0, |r| r["n"].as_u64().unwrap() as usize)
    };
    (count("decide_tool_call"), count("call_tool"))
}

#[test]
fn standalone_gateway_decides_locally_follows_revocations_fails_closed_when_stale_and_ships_events_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let server = Server::start_with(&data, &["--listen", &listen]);
    let admin = server.api(&server.admin_token());
    assert_eq!(admin.post("/v1/teams", &json!({"name": "payments"})).status, 201);
    let added = admin.post(
        "/v1/mcp-servers",
        &json!({"name": "everything", "transport": {"kind": "stdio", "command": "node", "args": [everything(), "stdio"]}}),
    );
    assert_eq!(added.status, 201, "{added:?}");
    assert_eq!(
        admin
            .post("/v1/scopes", &json!({"name": "echo", "tools": ["everything/echo"]}))
            .status,
        201
    );
    assert_eq!(admin.post("/v1/guardrails", &json!({"text": NO_SECRETS})).status, 201);
    let (_, coder) = register_agent(&server, &admin, "coder", "echo");
    let (temp_id, temp) = register_agent(&server, &admin, "temp", "echo");
    let gateway_token = access_token(&admin, "edge-1", "gateway");
    let auditor = access_token(&admin, "audit", "auditor");

    // The snapshot holds upstream credentials: gateway and platform-admin tokens only.
    let refused = server.api(&auditor).get("/v1/gateway/snapshot");
    assert_eq!(refused.status, 403, "{refused:?}");
    assert_eq!(server.api(&gateway_token).get("/v1/gateway/snapshot").status, 200);
    // A gateway without a usable token says so and does not start.
    let out = Command::new(WARDEN)
        .args(["gateway", "--control-plane", &server.url])
        .env_remove("WARDEN_TOKEN")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("WARDEN_TOKEN") && stderr(&out).contains("role `gateway`"),
        "{}",
        stderr(&out)
    );
    let out = Command::new(WARDEN)
        .args(["gateway", "--control-plane", &server.url, "--listen", "127.0.0.1:0"])
        .arg("--spool")
        .arg(dir.path().join("refused.spool"))
        .env("WARDEN_TOKEN", &auditor)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("403") && stderr(&out).contains("role `gateway`"),
        "{}",
        stderr(&out)
    );

    let spool = dir.path().join("edge-1.spool");
    let gateway = StandaloneGateway::start(&server.url, &gateway_token, &spool);
    let mode = std::fs::metadata(&spool).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the spool is private");
    let mcp_url = format!("{}/mcp/everything", gateway.url);

    // Listing and calling through the standalone gateway, decided from the pulled snapshot.
    let out = python_client(
        &mcp_url,
        &coder,
        json!([{"list": true}, {"call": "echo", "args": {"message": "hello"}},
               {"call": "echo", "args": {"message": "the secret is 42"}}]),
    );
    assert_eq!(out.len(), 3, "{out:?}");
    assert_eq!(out[0], json!({"tools": ["echo"]}), "only the granted tool is listed");
    assert_eq!(out[1]["is_error"], false, "{out:?}");
    assert!(out[1]["text"].as_str().unwrap().contains("hello"), "{out:?}");
    assert_eq!(out[2]["is_error"], true, "{out:?}");
    let denied = out[2]["text"].as_str().unwrap();
    assert!(
        denied.contains("echo may not repeat secrets") && denied.contains("no-secret-echo"),
        "{denied}"
    );

    // Revoking an agent on the control plane cuts it off at the gateway within moments.
    let mut temp_session = McpSession::open(&mcp_url, &temp);
    let (status, body) = temp_session.echo("before");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("before") && !body.contains("isError\":true"), "{body}");
    assert_eq!(
        admin
            .post(&format!("/v1/agents/{}/revoke", enc(&temp_id)), &json!({}))
            .status,
        200
    );
    let revoked_at = Instant::now();
    let body = poll(Duration::from_secs(3), "the revoked agent is still served", || {
        let (status, body) = temp_session.list();
        (status == 401).then_some(body)
    });
    assert!(
        revoked_at.elapsed() < Duration::from_secs(2),
        "cut off after {:?}",
        revoked_at.elapsed()
    );
    assert!(body.contains("revoked"), "{body}");

    // Events are shipped while the control plane is up: three calls so far.
    poll(
        Duration::from_secs(5),
        "the gateway's first events reach the control plane",
        || (shipped_calls(&admin, "edge-1") == (3, 3)).then_some(()),
    );

    // The control plane goes away (it crashes: a graceful stop can take longer than the staleness
    // bound on a busy machine, and then nothing would be decided "while away"): the gateway goes on
    // deciding from its snapshot for now...
    let mut coder_session = McpSession::open(&mcp_url, &coder);
    let data_dir = server.data_dir.clone();
    let stopping_at = Instant::now();
    server.crash();
    let (status, body) = coder_session.echo("while away");
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("while away") && !body.contains("isError\":true"),
        "{body}"
    );

    // ...and refuses once it has not reached the control plane for longer than the bound: a 503
    // saying why and when to ask again, not a 401 (the token is fine).
    let mut decided_while_away = 1;
    let body = poll(Duration::from_secs(6), "the gateway did not fail closed", || {
        let (status, body) = coder_session.echo("still fresh?");
        decided_while_away += usize::from(status == 200);
        (status == 503).then_some(body)
    });
    assert_eq!(
        coder_session.retry_after.as_deref(),
        Some("1"),
        "Retry-After is the refresh interval"
    );
    assert!(body.contains("temporarily_unavailable"), "{body}");
    // The last pull was at most about a second before the stop began.
    let waited = stopping_at.elapsed();
    assert!(waited > Duration::from_secs(1), "stale after only {waited:?}");
    let expected = format!("warden gateway has not reached the control plane at http://{listen} for ");
    assert!(
        body.contains(&expected) && body.contains("(limit 3s); refusing to decide"),
        "{body}"
    );

    // The control plane is back at the same address: the gateway decides again, on the very session
    // opened before the outage, and ships what it spooled meanwhile, each event exactly once.
    let server = Server::start_with(&data_dir, &["--listen", &listen]);
    let admin = server.api(&server.admin_token());
    let body = poll(Duration::from_secs(5), "the gateway did not recover", || {
        let (status, body) = coder_session.echo("back");
        assert!(status == 200 || status == 503, "{status} {body}");
        (status == 200).then_some(body)
    });
    assert!(body.contains("back") && !body.contains("isError\":true"), "{body}");
    let (status, _) = coder_session.list();
    assert_eq!(status, 200);
    let arrival_deadline = Instant::now() + Duration::from_secs(7);
    // Every decided call: hello, the secret, before, those while away, back (the refused ones were
    // never decided), each with a decision and an outcome.
    let calls_made = 3 + decided_while_away + 1;
    let mut calls = (0, 0);
    let arrived = poll(Duration::from_secs(8), "the spooled events did not all arrive", || {
        calls = shipped_calls(&admin, "edge-1");
        let done = calls.0 >= calls_made && calls.1 >= calls_made;
        Some(done).filter(|done| *done || Instant::now() > arrival_deadline)
    });
    assert!(
        arrived,
        "the spooled events did not all arrive: {calls:?}\n{:?}",
        spool_state(&spool)
    );
    assert_eq!(calls, (calls_made, calls_made), "every event is stored once");

    // A clean stop ships what is left, and the spool is empty.
    let (clean, out) = gateway.stop();
    assert!(clean, "{out:?}");
    assert!(out.iter().any(|l| l == "warden: gateway stopped"), "{out:?}");
    assert_eq!(std::fs::metadata(&spool).unwrap().len(), 0, "everything was shipped");
    let closed = admin.audit(
        "SELECT message FROM events WHERE activity_name = 'close_session' \
         AND message LIKE '%closed: shutdown (via gateway edge-1)'",
    );
    assert!(
        !closed.is_empty(),
        "the shutdown's session events were shipped on the way out"
    );
    let everything = admin.post(
        "/v1/audit/query",
        &json!({"sql": "SELECT * FROM events", "format": "csv"}),
    );
    assert_eq!(everything.status, 200, "{everything:?}");
    assert!(
        !everything.body.to_string().contains(&coder)
            && !admin.get("/v1/events?limit=10000").body.to_string().contains(&coder),
        "the agent's token is never recorded"
    );
}
