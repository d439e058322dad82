//! Peers for the tests: server-everything started over stdio or HTTP on a free port, and a recording
//! fake upstream that speaks just enough Streamable HTTP.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use warden_core::{Name, Transport};
use warden_mcp::{RestartPolicy, UpstreamConfig};

/// The installed `server-everything` entry point.
pub fn everything_js() -> String {
    let hint = "run the tests with `bash scripts/test.sh`, which installs @modelcontextprotocol/server-everything";
    let peers =
        std::env::var("WARDEN_TEST_NODE_PEERS").unwrap_or_else(|_| panic!("WARDEN_TEST_NODE_PEERS is not set: {hint}"));
    let js: PathBuf = [
        &peers,
        "node_modules/@modelcontextprotocol/server-everything/dist/index.js",
    ]
    .iter()
    .collect();
    assert!(js.is_file(), "{} is missing: {hint}", js.display());
    js.to_string_lossy().into_owned()
}

pub fn name(name: &str) -> Name {
    Name::parse(name).unwrap()
}

pub fn stdio_everything() -> Transport {
    Transport::Stdio {
        command: "node".to_owned(),
        args: vec![everything_js(), "stdio".to_owned()],
    }
}

/// Limits that keep the tests quick without making them flaky on a busy machine.
pub fn config() -> UpstreamConfig {
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

/// The text of the first content block of a `CallToolResult`.
pub fn text(result: &Value) -> &str {
    result["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("no text content in {result}"))
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
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

/// server-everything over Streamable HTTP on a free loopback port; killed on drop.
pub struct HttpEverything {
    child: Child,
    port: u16,
}

impl HttpEverything {
    pub async fn start() -> HttpEverything {
        let port = free_port();
        let child = spawn_http_everything(port).await;
        HttpEverything { child, port }
    }

    pub fn transport(&self) -> Transport {
        Transport::Http {
            url: format!("http://127.0.0.1:{}/mcp", self.port),
        }
    }

    /// Kills the server and starts a new one on the same port: every session is forgotten.
    pub async fn restart(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        self.child = spawn_http_everything(self.port).await;
    }
}

impl Drop for HttpEverything {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn spawn_http_everything(port: u16) -> Child {
    let child = Command::new("node")
        .args([everything_js().as_str(), "streamableHttp"])
        .env("PORT", port.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "server-everything did not listen on port {port}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child
}

/// One request the fake upstream received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    /// Header names lowercased.
    pub headers: BTreeMap<String, String>,
    pub body: Value,
}

impl Recorded {
    pub fn rpc_method(&self) -> &str {
        self.body["method"].as_str().unwrap_or_default()
    }
}

#[derive(Default)]
struct FakeState {
    requests: Vec<Recorded>,
    /// The session the fake currently honours.
    session: Option<String>,
    sessions_issued: u32,
}

/// A Streamable HTTP upstream that answers with `application/json`, issues sessions, paginates
/// `tools/list` and records every request it gets.
pub struct FakeUpstream {
    pub url: String,
    state: Arc<Mutex<FakeState>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeUpstream {
    pub async fn start() -> FakeUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/mcp", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(FakeState::default()));
        let shared = Arc::clone(&state);
        let task = tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                tokio::spawn(serve_connection(stream, Arc::clone(&shared)));
            }
        });
        FakeUpstream { url, state, task }
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state.lock().unwrap().requests.clone()
    }

    /// Forgets the current session, as a restarted server would.
    pub fn expire_session(&self) {
        self.state.lock().unwrap().session = None;
    }
}

async fn serve_connection(stream: TcpStream, state: Arc<Mutex<FakeState>>) {
    let mut stream = BufReader::new(stream);
    loop {
        let mut request_line = String::new();
        if stream.read_line(&mut request_line).await.unwrap_or(0) == 0 {
            return;
        }
        let method = request_line.split(' ').next().unwrap_or_default().to_owned();
        let mut headers = BTreeMap::new();
        loop {
            let mut line = String::new();
            stream.read_line(&mut line).await.unwrap();
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(':').unwrap();
            headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
        }
        let length: usize = headers.get("content-length").map_or(0, |n| n.parse().unwrap());
        let mut body = vec![0; length];
        stream.read_exact(&mut body).await.unwrap();
        let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let recorded = Recorded { method, headers, body };
        let (status, extra, reply) = answer(&recorded, &mut state.lock().unwrap());
        state.lock().unwrap().requests.push(recorded);
        let reply = reply.map(|reply| reply.to_string()).unwrap_or_default();
        let content_type = if reply.is_empty() {
            ""
        } else {
            "content-type: application/json\r\n"
        };
        let response = format!(
            "HTTP/1.1 {status}\r\n{content_type}{extra}content-length: {}\r\n\r\n{reply}",
            reply.len()
        );
        if stream.get_mut().write_all(response.as_bytes()).await.is_err() {
            return;
        }
    }
}

fn answer(request: &Recorded, state: &mut FakeState) -> (&'static str, String, Option<Value>) {
    if request.method == "DELETE" {
        return ("200 OK", String::new(), None);
    }
    let body = &request.body;
    let id = body["id"].clone();
    let method = body["method"].as_str().unwrap_or_default();
    if method == "initialize" {
        state.sessions_issued += 1;
        let session = format!("session-{}", state.sessions_issued);
        state.session = Some(session.clone());
        let result = json!({
            "protocolVersion": "2025-11-25",
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "fake", "version": "1"},
        });
        let reply = json!({"jsonrpc": "2.0", "id": id, "result": result});
        return ("200 OK", format!("mcp-session-id: {session}\r\n"), Some(reply));
    }
    if request.headers.get("mcp-session-id") != state.session.as_ref() {
        let reply = json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32001, "message": "Session not found"}});
        return ("404 Not Found", String::new(), Some(reply));
    }
    if id.is_null() {
        return ("202 Accepted", String::new(), None);
    }
    let schema = json!({"type": "object"});
    let result = match method {
        "tools/list" if body["params"]["cursor"].is_null() => {
            json!({"tools": [{"name": "first", "inputSchema": schema}], "nextCursor": "page-2"})
        }
        "tools/list" => json!({"tools": [{"name": "second", "description": "page two", "inputSchema": schema}]}),
        "tools/call" => {
            json!({"content": [{"type": "text", "text": format!("called {}", body["params"]["name"])}], "isError": false})
        }
        _ => {
            let reply = json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32601, "message": "Method not found"}});
            return ("200 OK", String::new(), Some(reply));
        }
    };
    (
        "200 OK",
        String::new(),
        Some(json!({"jsonrpc": "2.0", "id": id, "result": result})),
    )
}
