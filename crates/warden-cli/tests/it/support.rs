//! Starting and stopping a real `warden serve`, and small HTTP and CLI helpers.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use serde_json::Value;

pub const WARDEN: &str = env!("CARGO_BIN_EXE_warden");

/// A running server.
pub struct Server {
    pub child: Child,
    pub url: String,
    /// The bootstrap token, when this start printed one.
    pub printed_token: Option<String>,
    /// Keeps the pipe reader alive so the server's output never hits a closed pipe.
    pub _stdout: mpsc::Receiver<String>,
    pub data_dir: PathBuf,
}

impl Server {
    /// Starts `warden serve` on `dir` and waits until it listens.
    pub fn start(dir: &Path) -> Server {
        Server::start_with(dir, &[])
    }

    /// Starts `warden serve` on `dir` with `extra` arguments; on a free port unless they give
    /// `--listen`.
    pub fn start_with(dir: &Path, extra: &[&str]) -> Server {
        let listen: &[&str] = if extra.contains(&"--listen") {
            &[]
        } else {
            &["--listen", "127.0.0.1:0"]
        };
        let mut child = Command::new(WARDEN)
            .args(["serve", "--data-dir"])
            .arg(dir)
            .args(listen)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn warden serve");
        // The server's log (stderr), drained by a thread so a chatty server never blocks on a full
        // pipe; shown if it fails to start.
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        let drained = std::thread::spawn({
            let log = Arc::clone(&log);
            move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    let mut log = log.lock().unwrap();
                    log.push_str(&line);
                    log.push('\n');
                }
            }
        });
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut printed_token = None;
        let url = loop {
            let Ok(line) = rx.recv_timeout(Duration::from_secs(60)) else {
                let _ = child.kill();
                let _ = child.wait();
                let _ = drained.join();
                panic!("warden serve did not start: {}", log.lock().unwrap())
            };
            if line.starts_with("wdn_") {
                printed_token = Some(line.clone());
            }
            if let Some(url) = line.strip_prefix("warden: listening on ") {
                break url.to_owned();
            }
        };
        Server {
            child,
            url,
            printed_token,
            _stdout: rx,
            data_dir: dir.to_owned(),
        }
    }

    /// The bootstrap platform-admin token, from `DIR/admin.token`.
    pub fn admin_token(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("admin.token"))
            .unwrap()
            .trim()
            .to_owned()
    }

    /// Kills the process outright (SIGKILL), as a crash or a lost machine would, and waits for it:
    /// unlike [`Server::stop`], its listener is gone at once, however busy the machine.
    pub fn crash(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        std::mem::forget(self);
    }

    /// Sends SIGTERM and waits for a clean exit.
    pub fn stop(mut self) -> std::process::ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let status = self.child.wait().unwrap();
        std::mem::forget(self);
        status
    }

    pub fn api(&self, token: &str) -> Api {
        Api {
            base: self.url.clone(),
            token: Some(token.to_owned()),
        }
    }

    /// Runs the CLI against this server with `token`.
    pub fn cli(&self, token: &str, args: &[&str]) -> Output {
        Command::new(WARDEN)
            .args(args)
            .env("WARDEN_SERVER", &self.url)
            .env("WARDEN_TOKEN", token)
            .output()
            .unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A JSON answer: status and body.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
    pub www_authenticate: Option<String>,
}

impl Reply {
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }

    pub fn message(&self) -> &str {
        self.body["error"]["message"].as_str().unwrap_or("")
    }
}

/// Raw HTTP against the API.
#[derive(Clone)]
pub struct Api {
    pub base: String,
    pub token: Option<String>,
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder().http_status_as_error(false).build().into()
}

impl Api {
    pub fn anonymous(base: &str) -> Api {
        Api {
            base: base.to_owned(),
            token: None,
        }
    }

    pub fn request(&self, method: &str, path: &str, body: Option<(&str, &[u8])>) -> Reply {
        let uri = format!("{}{path}", self.base);
        let mut builder = ureq::http::Request::builder().method(method).uri(&uri);
        if let Some(token) = &self.token {
            builder = builder.header("Authorization", format!("Bearer {token}"));
        }
        let agent = agent();
        let res = match body {
            Some((content_type, bytes)) => {
                let req = builder
                    .header("Content-Type", content_type)
                    .body(bytes.to_vec())
                    .unwrap();
                agent.run(req)
            }
            None => agent.run(builder.body(()).unwrap()),
        };
        let mut res = res.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = res.status().as_u16();
        let www_authenticate = res
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_owned());
        let text = res.body_mut().read_to_string().unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Reply {
            status,
            body,
            www_authenticate,
        }
    }

    pub fn get(&self, path: &str) -> Reply {
        self.request("GET", path, None)
    }

    pub fn post(&self, path: &str, body: &Value) -> Reply {
        self.request("POST", path, Some(("application/json", body.to_string().as_bytes())))
    }

    pub fn delete(&self, path: &str) -> Reply {
        self.request("DELETE", path, None)
    }

    /// The rows of one SQL query over the audit lake, as JSON objects.
    pub fn audit(&self, sql: &str) -> Vec<Value> {
        let reply = self.post("/v1/audit/query", &serde_json::json!({"sql": sql, "format": "json"}));
        assert_eq!(reply.status, 200, "{sql}: {reply:?}");
        reply
            .body
            .as_array()
            .unwrap_or_else(|| panic!("{sql}: {reply:?}"))
            .clone()
    }

    /// How many change events the registry holds (needs an admin or auditor token).
    pub fn event_count(&self) -> usize {
        let reply = self.get("/v1/events?limit=10000");
        assert_eq!(reply.status, 200, "{reply:?}");
        reply.body.as_array().unwrap().len()
    }
}

/// A free loopback port (released again, so a server can take it and take it again after a restart).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Percent-encodes a path segment.
pub fn enc(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A guardrail on server-everything's `echo`: no message containing "secret".
pub const NO_SECRET_ECHO: &str = r#"@id("no-secret-echo")
@message("echo may not repeat secrets")
forbid (principal, action == Warden::Action::"call_tool", resource == Warden::Tool::"everything/echo")
  when { context.arguments.hasTag("message") && context.arguments.getTag("message") like "*secret*" };
"#;

/// The entry point of `@modelcontextprotocol/server-everything`, installed by `scripts/test.sh`.
pub fn everything() -> String {
    let peers = std::env::var("WARDEN_TEST_NODE_PEERS")
        .unwrap_or_else(|_| panic!("WARDEN_TEST_NODE_PEERS is not set: run the tests with `bash scripts/test.sh`"));
    format!("{peers}/node_modules/@modelcontextprotocol/server-everything/dist/index.js")
}

/// Runs the Python `mcp` SDK client (`tests/peers/mcp_client.py`) against `url` and returns one JSON
/// value per step.
pub fn python_client(url: &str, token: &str, steps: Value) -> Vec<Value> {
    let python = std::env::var("WARDEN_TEST_PYTHON")
        .unwrap_or_else(|_| panic!("WARDEN_TEST_PYTHON is not set: run the tests with `bash scripts/test.sh`"));
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/mcp_client.py");
    let out = Command::new(python)
        .arg(script)
        .arg(url)
        .arg(token)
        .arg(steps.to_string())
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}
