//! The world the tests run in: a control plane built from real Warden pieces (signing keys in a
//! temporary directory, minted tokens, the verifier with a revocation set, the Cedar policy engine
//! over a fleet with scopes, grants and a guardrail), an audit sink that appends fsynced JSON lines to
//! a file, real `server-everything` upstreams, and helpers to talk to the gateway in process or over
//! loopback.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use serde_json::{Value, json};
use tempfile::TempDir;
use tower::ServiceExt;
use warden_core::{Agent, AgentId, AgentStatus, McpServer, Name, Origin, Scope, ToolPattern, Transport};
use warden_gateway::{
    AgentIdentity, AuditSink, AuthError, ControlPlane, Gateway, GatewayConfig, GatewayEvent, RecordFuture, UpstreamSpec,
};
use warden_identity::keys::KeyRing;
use warden_identity::revocation::{RevocationEntry, RevocationSet};
use warden_identity::token::{Claims, Verifier, VerifierConfig, mint};
use warden_mcp::{RestartPolicy, UpstreamConfig, UpstreamCredentials};
use warden_policy::{Decision, Fleet, PolicyEngine, ToolCall, Weekday, parse_guardrail};

pub const TRUST_DOMAIN: &str = "warden.test";
pub const ISSUER: &str = "https://warden.test";
pub const AUDIENCE: &str = "warden-gateway";
pub const GUARDRAIL_ID: &str = "no-secrets-in-echo";

const GUARDRAIL: &str = r#"@id("no-secrets-in-echo")
@message("echo must not repeat secrets")
forbid (principal, action == Warden::Action::"call_tool", resource)
  when { resource.name == "echo" && context.arguments.hasTag("message")
         && context.arguments.getTag("message") like "*secret*" };"#;

pub fn name(value: &str) -> Name {
    Name::parse(value).unwrap()
}

pub fn now_unix() -> i64 {
    i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()).unwrap()
}

/// The installed `server-everything` entry point.
pub fn everything_js() -> String {
    let hint = "run the tests with `bash scripts/test.sh`, which installs the test peers";
    let peers = node_peers().unwrap_or_else(|| panic!("WARDEN_TEST_NODE_PEERS is not set: {hint}"));
    let js = peers.join("node_modules/@modelcontextprotocol/server-everything/dist/index.js");
    assert!(js.is_file(), "{} is missing: {hint}", js.display());
    js.to_string_lossy().into_owned()
}

pub fn node_peers() -> Option<PathBuf> {
    std::env::var_os("WARDEN_TEST_NODE_PEERS").map(PathBuf::from)
}

pub fn stdio_everything() -> Transport {
    Transport::Stdio {
        command: "node".to_owned(),
        args: vec![everything_js(), "stdio".to_owned()],
    }
}

/// Upstream limits that keep the tests quick without making them flaky on a busy machine.
pub fn upstream_config() -> UpstreamConfig {
    UpstreamConfig {
        call_timeout: Duration::from_secs(15),
        connect_timeout: Duration::from_secs(20),
        restart: RestartPolicy {
            initial_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(2),
            stable_after: Duration::from_secs(60),
        },
        shutdown_grace: Duration::from_secs(1),
        ..UpstreamConfig::default()
    }
}

/// A control plane made of real Warden pieces.
pub struct TestControl {
    verifier: Verifier,
    revocations: RwLock<RevocationSet>,
    engine: RwLock<PolicyEngine>,
    servers: RwLock<Vec<UpstreamSpec>>,
    seq: AtomicU64,
    /// How many times `still_valid` was asked.
    pub validity_checks: AtomicU64,
}

impl TestControl {
    /// Revokes `agent` (and so everything delegated from it), as the revocation feed would.
    pub fn revoke(&self, agent: &AgentId) {
        let seq = self.seq.fetch_add(1, Ordering::SeqCst) + 1;
        self.revocations.write().unwrap().apply(RevocationEntry {
            seq,
            agent: agent.to_string(),
            state: AgentStatus::Revoked,
            not_before: None,
            at: now_unix(),
        });
    }

    pub fn set_servers(&self, servers: Vec<UpstreamSpec>) {
        *self.servers.write().unwrap() = servers;
    }
}

impl ControlPlane for TestControl {
    fn authenticate(&self, bearer: &str) -> Result<AgentIdentity, AuthError> {
        let revocations = self.revocations.read().unwrap();
        let verified = self
            .verifier
            .verify(bearer, now_unix(), &*revocations)
            .map_err(|e| AuthError::Invalid(e.to_string()))?;
        AgentIdentity::from_claims(verified.claims(), bearer)
    }

    fn decide(&self, identity: &AgentIdentity, call: &ToolCall) -> Decision {
        let decision = self.engine.read().unwrap().authorize_call(call);
        let scopes: Vec<&str> = identity.scopes.iter().map(String::as_str).collect();
        warden_gateway::narrow_to_token(decision, &scopes)
    }

    fn servers(&self) -> Vec<UpstreamSpec> {
        self.servers.read().unwrap().clone()
    }

    fn still_valid(&self, identity: &AgentIdentity) -> Result<(), AuthError> {
        self.validity_checks.fetch_add(1, Ordering::SeqCst);
        self.authenticate(&identity.bearer).map(|_| ())
    }

    fn now(&self) -> (u8, Weekday) {
        (10, Weekday::Wednesday)
    }
}

/// Appends each event as one JSON line and fsyncs before returning.
pub struct JsonlAudit {
    pub path: PathBuf,
    file: Mutex<std::fs::File>,
    /// When set, every record fails (to show a call is not forwarded unrecorded).
    pub fail: std::sync::atomic::AtomicBool,
}

impl JsonlAudit {
    pub fn events(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.path)
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }
}

impl AuditSink for JsonlAudit {
    fn record(&self, event: GatewayEvent) -> RecordFuture<'_> {
        Box::pin(async move {
            if self.fail.load(Ordering::SeqCst) {
                return Err("the audit disk is full".to_owned());
            }
            let mut line = serde_json::to_string(&event).map_err(|e| e.to_string())?;
            line.push('\n');
            let mut file = self.file.lock().unwrap();
            file.write_all(line.as_bytes()).map_err(|e| e.to_string())?;
            file.sync_data().map_err(|e| e.to_string())
        })
    }
}

/// The agents of the world.
pub struct Agents {
    /// Holds `everything-read`: echo and get-sum on every server but `hidden`.
    pub reader: Agent,
    /// A subagent of `reader`, delegated `everything-read`.
    pub helper: Agent,
    /// Holds no scope.
    pub outsider: Agent,
}

pub struct World {
    pub dir: TempDir,
    pub keys: KeyRing,
    pub control: Arc<TestControl>,
    pub audit: Arc<JsonlAudit>,
    pub gateway: Gateway,
    pub agents: Agents,
}

fn agent_record(id: AgentId, scopes: &[&str], parent: Option<AgentId>) -> Agent {
    Agent {
        name: id.name(),
        team: id.team(),
        owner: "owner@example.com".to_owned(),
        purpose: "testing the gateway".to_owned(),
        tags: Vec::new(),
        status: AgentStatus::Active,
        origin: if parent.is_some() {
            Origin::Delegated
        } else {
            Origin::Manual
        },
        parent,
        scopes: scopes.iter().map(|s| name(s)).collect(),
        id,
        created_at: String::new(),
        updated_at: String::new(),
    }
}

fn server_record(server: &UpstreamSpec) -> McpServer {
    McpServer {
        name: server.name.clone(),
        transport: server.transport.clone(),
        owner_team: None,
        sensitive: false,
        has_credentials: false,
        created_at: String::new(),
        updated_at: String::new(),
    }
}

pub fn spec(server: &str, transport: Transport) -> UpstreamSpec {
    UpstreamSpec {
        name: name(server),
        transport,
        credentials: UpstreamCredentials::default(),
    }
}

impl World {
    /// Everything recorded so far, once the outcomes of the calls answered so far are written (they
    /// are written after the answer).
    pub async fn events(&self) -> Vec<Value> {
        self.gateway.outcomes_settled().await;
        self.audit.events()
    }

    /// A world whose gateway fronts `servers`.
    pub fn new(servers: Vec<UpstreamSpec>) -> World {
        World::with_config(servers, |_| {})
    }

    pub fn with_config(servers: Vec<UpstreamSpec>, adjust: impl FnOnce(&mut GatewayConfig)) -> World {
        let dir = tempfile::tempdir().unwrap();
        let now = now_unix();
        let keys = KeyRing::open_or_create(&dir.path().join("keys"), now - 60).unwrap();
        let verifier = Verifier::from_key_ring(&keys, now, 3600, VerifierConfig::new(ISSUER, AUDIENCE));

        let team = name("payments");
        let reader_id = AgentId::new(TRUST_DOMAIN, &team, &name("reader"));
        let agents = Agents {
            reader: agent_record(reader_id.clone(), &["everything-read"], None),
            helper: agent_record(reader_id.child(&name("helper")), &["everything-read"], Some(reader_id)),
            outsider: agent_record(AgentId::new(TRUST_DOMAIN, &team, &name("outsider")), &[], None),
        };
        let scopes = [Scope {
            name: name("everything-read"),
            tools: [
                "everything/echo",
                "everything/get-sum",
                "web/echo",
                "web/get-sum",
                "web/trigger-long-running-operation",
            ]
            .iter()
            .map(|p| ToolPattern::parse(p).unwrap())
            .collect(),
            sensitive: false,
            description: "read-only tools of the everything servers".to_owned(),
            created_at: String::new(),
        }];
        let fleet = Fleet::new(
            &[agents.reader.clone(), agents.helper.clone(), agents.outsider.clone()],
            &scopes,
            &servers.iter().map(server_record).collect::<Vec<_>>(),
        );
        let engine = PolicyEngine::new(fleet, vec![parse_guardrail(GUARDRAIL).unwrap()]).unwrap();
        let control = Arc::new(TestControl {
            verifier,
            revocations: RwLock::new(RevocationSet::default()),
            engine: RwLock::new(engine),
            servers: RwLock::new(servers),
            seq: AtomicU64::new(0),
            validity_checks: AtomicU64::new(0),
        });
        let audit_path = dir.path().join("audit.jsonl");
        let audit = Arc::new(JsonlAudit {
            file: Mutex::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&audit_path)
                    .unwrap(),
            ),
            path: audit_path,
            fail: std::sync::atomic::AtomicBool::new(false),
        });
        let mut config = GatewayConfig::new(ISSUER);
        config.upstream = upstream_config();
        adjust(&mut config);
        let gateway = Gateway::new(control.clone(), audit.clone(), config);
        World {
            dir,
            keys,
            control,
            audit,
            gateway,
            agents,
        }
    }

    fn claims(&self, agent: &Agent, scope: &str) -> Claims {
        let now = now_unix();
        Claims {
            iss: ISSUER.to_owned(),
            sub: agent.id.to_string(),
            aud: AUDIENCE.to_owned(),
            exp: now + 600,
            iat: now - 1,
            nbf: now - 1,
            jti: format!("jti-{}-{}", agent.name, now),
            team: agent.team.to_string(),
            scope: scope.to_owned(),
            act: None,
            dlg_depth: 0,
        }
    }

    /// A root agent's token carrying `scope`.
    pub fn token(&self, agent: &Agent, scope: &str) -> String {
        mint(self.keys.active(), &self.claims(agent, scope)).unwrap()
    }

    /// `helper`'s token, delegated from `reader`'s.
    pub fn delegated_token(&self) -> String {
        let parent = self.claims(&self.agents.reader, "everything-read");
        let claims = parent.delegated(
            &self.agents.helper.id,
            "everything-read".to_owned(),
            "jti-helper".to_owned(),
            now_unix() - 1,
            300,
        );
        mint(self.keys.active(), &claims).unwrap()
    }

    pub fn reader_token(&self) -> String {
        self.token(&self.agents.reader, "everything-read")
    }

    pub fn client(&self, token: Option<String>) -> InProcess {
        InProcess {
            router: self.gateway.router(),
            token,
            session: None,
        }
    }
}

/// A client that sends requests straight into the router (no sockets).
pub struct InProcess {
    pub router: axum::Router,
    pub token: Option<String>,
    pub session: Option<String>,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    pub raw: String,
}

impl InProcess {
    pub async fn send(&self, method: &str, path: &str, body: Option<String>, extra: &[(&str, &str)]) -> Reply {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "gateway.test:8443")
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream");
        if let Some(token) = &self.token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        if let Some(session) = &self.session {
            request = request
                .header("mcp-session-id", session)
                .header("mcp-protocol-version", "2025-11-25");
        }
        for (name, value) in extra {
            request = request.header(*name, *value);
        }
        let request = request.body(body.map_or_else(Body::empty, Body::from)).unwrap();
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
        let raw = String::from_utf8_lossy(&bytes).into_owned();
        let body = serde_json::from_str(&raw).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            body,
            raw,
        }
    }

    pub async fn rpc(&self, path: &str, id: i64, method: &str, params: Value) -> Reply {
        let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        self.send("POST", path, Some(body.to_string()), &[]).await
    }

    /// `initialize` plus `notifications/initialized`; keeps the session id.
    pub async fn open(&mut self, path: &str) -> Reply {
        let params = json!({"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "test", "version": "0"}});
        let reply = self.rpc(path, 0, "initialize", params).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.raw);
        let session = reply.headers["mcp-session-id"].to_str().unwrap().to_owned();
        self.session = Some(session);
        let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"}).to_string();
        let ack = self.send("POST", path, Some(note), &[]).await;
        assert_eq!(ack.status, StatusCode::ACCEPTED, "{}", ack.raw);
        reply
    }

    pub async fn call(&self, path: &str, tool: &str, arguments: Value) -> Reply {
        self.rpc(path, 7, "tools/call", json!({"name": tool, "arguments": arguments}))
            .await
    }

    pub async fn tool_names(&self, path: &str) -> Vec<String> {
        let reply = self.rpc(path, 3, "tools/list", json!({})).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.raw);
        reply.body["result"]["tools"]
            .as_array()
            .unwrap_or_else(|| panic!("no tools in {}", reply.raw))
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_owned())
            .collect()
    }
}

/// The text of the first content block of a `CallToolResult`.
pub fn text(result: &Value) -> &str {
    result["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("no text content in {result}"))
}

/// Serves the gateway on a free loopback port until the returned handle is dropped.
pub struct Served {
    pub base: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Served {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub async fn serve(gateway: &Gateway) -> Served {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let router = gateway.router();
    let task = tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
    Served { base, task }
}

/// Runs the Python `mcp` client script; returns its JSON output.
pub async fn python_client(url: &str, token: &str, mode: &str, calls: &[&str]) -> Value {
    let hint = "run the tests with `bash scripts/test.sh`, which installs the Python peers";
    let python =
        std::env::var("WARDEN_TEST_PYTHON").unwrap_or_else(|_| panic!("WARDEN_TEST_PYTHON is not set: {hint}"));
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/mcp_client.py");
    let output = tokio::process::Command::new(python)
        .arg(script)
        .args([url, token, mode])
        .args(calls)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(90), output)
        .await
        .expect("the python client timed out")
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "python client failed: {}\nstdout: {stdout}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// server-everything over Streamable HTTP on a free loopback port; killed on drop.
pub struct HttpEverything {
    child: Child,
    pub port: u16,
}

impl HttpEverything {
    pub async fn start() -> HttpEverything {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("node")
            .args([everything_js().as_str(), "streamableHttp"])
            .env("PORT", port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            assert!(Instant::now() < deadline, "server-everything did not listen on {port}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        HttpEverything { child, port }
    }

    pub fn transport(&self) -> Transport {
        Transport::Http {
            url: format!("http://127.0.0.1:{}/mcp", self.port),
        }
    }
}

impl Drop for HttpEverything {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether a process with this id still exists (and is not a zombie).
pub fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .unwrap_or_default()
            .trim_start()
            .starts_with('Z'),
        Err(_) => false,
    }
}

/// One request a [`FakeUpstream`] received: its headers (names lowercased) and JSON body.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub headers: Vec<(String, String)>,
    pub body: Value,
}

/// A minimal Streamable HTTP upstream with two tools, `echo` and `whoami` (both answer the same), that
/// records every request.
pub struct FakeUpstream {
    pub url: String,
    pub seen: Arc<Mutex<Vec<Recorded>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeUpstream {
    pub async fn start() -> FakeUpstream {
        use axum::extract::State;
        use axum::response::IntoResponse;

        async fn answer(
            State(seen): State<Arc<Mutex<Vec<Recorded>>>>,
            method: axum::http::Method,
            headers: HeaderMap,
            body: String,
        ) -> axum::response::Response {
            let body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            seen.lock().unwrap().push(Recorded {
                method: method.to_string(),
                headers: headers
                    .iter()
                    .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
                    .collect(),
                body: body.clone(),
            });
            if method != axum::http::Method::POST {
                return StatusCode::OK.into_response();
            }
            let id = body["id"].clone();
            let result = match body["method"].as_str().unwrap_or_default() {
                _ if id.is_null() => return StatusCode::ACCEPTED.into_response(),
                "initialize" => json!({"protocolVersion": "2025-11-25", "capabilities": {"tools": {}},
                    "serverInfo": {"name": "fake", "version": "1"}}),
                "tools/list" => json!({"tools": [
                    {"name": "echo", "inputSchema": {"type": "object"}},
                    {"name": "whoami", "inputSchema": {"type": "object"}},
                ]}),
                "tools/call" => json!({"content": [{"type": "text", "text": "you are the gateway"}]}),
                _ => json!({}),
            };
            let reply = json!({"jsonrpc": "2.0", "id": id, "result": result}).to_string();
            (
                [("content-type", "application/json"), ("mcp-session-id", "fake-session")],
                reply,
            )
                .into_response()
        }

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/mcp", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let router = axum::Router::new()
            .route("/mcp", axum::routing::any(answer))
            .with_state(Arc::clone(&seen));
        let task = tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        FakeUpstream { url, seen, task }
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.seen.lock().unwrap().clone()
    }
}
