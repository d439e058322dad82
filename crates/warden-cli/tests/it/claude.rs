//! The real Claude Code CLI (npm `@anthropic-ai/claude-code`, installed by `scripts/test.sh`) in a
//! project made by `warden init`, with `ANTHROPIC_BASE_URL` pointing at a small scripted stand-in for
//! the Messages API on loopback (reference/integration-spec.md §6.6). This tests the harness, not a
//! model: the stand-in asks for one tool call per prompt, and Warden's hooks decide it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use crate::hook::{NO_RM_RF, Project};
use crate::support::{stderr, stdout};

/// The native `claude` binary installed by `scripts/test.sh`.
fn claude() -> PathBuf {
    let peers = std::env::var("WARDEN_TEST_CLAUDE_PEERS")
        .unwrap_or_else(|_| panic!("WARDEN_TEST_CLAUDE_PEERS is not set: run the tests with `bash scripts/test.sh`"));
    PathBuf::from(peers).join("node_modules/@anthropic-ai/claude-code-linux-x64/claude")
}

/// The scripted Messages API: every request it saw, and the port it listens on.
struct FakeModel {
    url: String,
    seen: Arc<Mutex<Vec<Value>>>,
}

impl FakeModel {
    fn start() -> FakeModel {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let ids = Arc::new(AtomicUsize::new(0));
        let log = Arc::clone(&seen);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (log, ids) = (Arc::clone(&log), Arc::clone(&ids));
                std::thread::spawn(move || serve(stream, &log, &ids));
            }
        });
        FakeModel { url, seen }
    }
}

/// Reads one HTTP/1.1 request (Content-Length bodies) and answers it; one request per connection.
fn serve(mut stream: TcpStream, log: &Mutex<Vec<Value>>, ids: &AtomicUsize) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let mut length = 0;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let path = request_line.split_whitespace().nth(1).unwrap_or("").to_owned();
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let (content_type, answer) = if path.starts_with("/v1/messages/count_tokens") {
        ("application/json", json!({"input_tokens": 10}).to_string())
    } else if path.starts_with("/v1/messages") {
        log.lock().unwrap().push(body.clone());
        let (blocks, stop) = script(&body, ids);
        if body["stream"] == true {
            ("text/event-stream", sse(&blocks, stop))
        } else {
            let message = json!({"id": "msg_fake", "type": "message", "role": "assistant", "model": body["model"],
                "content": blocks, "stop_reason": stop, "stop_sequence": null,
                "usage": {"input_tokens": 10, "output_tokens": 5}});
            ("application/json", message.to_string())
        }
    } else {
        (
            "application/json",
            json!({"type": "error", "error": {"type": "not_found_error", "message": "no"}}).to_string(),
        )
    };
    let status = if content_type == "application/json" && answer.contains("not_found_error") {
        "404 Not Found"
    } else {
        "200 OK"
    };
    let head = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\nrequest-id: req_fake\r\n\r\n",
        answer.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(answer.as_bytes());
}

/// All the text the user side of a conversation holds.
fn user_text(body: &Value) -> String {
    let mut text = String::new();
    for message in body["messages"].as_array().into_iter().flatten() {
        if message["role"] != "user" {
            continue;
        }
        match &message["content"] {
            Value::String(s) => text.push_str(s),
            Value::Array(blocks) => {
                for block in blocks {
                    if let Some(s) = block["text"].as_str() {
                        text.push_str(s);
                    }
                }
            }
            _ => {}
        }
    }
    text
}

/// What the scripted model answers: one tool call per prompt marker, then a closing text.
fn script(body: &Value, ids: &AtomicUsize) -> (Vec<Value>, &'static str) {
    let done = || {
        (
            vec![json!({"type": "text", "text": "All scripted steps done."})],
            "end_turn",
        )
    };
    let tools: Vec<&str> = body["tools"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["name"].as_str())
        .collect();
    let last = body["messages"]
        .as_array()
        .and_then(|m| m.last())
        .cloned()
        .unwrap_or_default();
    let answered = last["content"]
        .as_array()
        .is_some_and(|blocks| blocks.iter().any(|b| b["type"] == "tool_result"));
    if tools.is_empty() || answered {
        return done();
    }
    let text = user_text(body);
    let id = format!("toolu_fake_{:02}", ids.fetch_add(1, Ordering::SeqCst) + 1);
    let call = |name: &str, input: Value| {
        (
            vec![json!({"type": "tool_use", "id": id, "name": name, "input": input})],
            "tool_use",
        )
    };
    let agent_tool = if tools.contains(&"Agent") { "Agent" } else { "Task" };
    if text.contains("SUBAGENT_TASK") {
        call("Bash", json!({"command": "echo from-subagent", "description": "print"}))
    } else if text.contains("RUN sub") {
        call(
            agent_tool,
            json!({"description": "sub task", "prompt": "SUBAGENT_TASK: run one command",
                "subagent_type": "general-purpose"}),
        )
    } else if text.contains("RUN rm") {
        call(
            "Bash",
            json!({"command": "rm -rf ./nothing-here", "description": "remove"}),
        )
    } else if text.contains("RUN ls") {
        call("Bash", json!({"command": "echo allowed", "description": "print"}))
    } else {
        done()
    }
}

/// A Messages API event stream for `blocks`.
fn sse(blocks: &[Value], stop: &str) -> String {
    let mut out = String::new();
    let mut event = |name: &str, data: Value| out.push_str(&format!("event: {name}\ndata: {data}\n\n"));
    event(
        "message_start",
        json!({"type": "message_start", "message": {"id": "msg_fake", "type": "message", "role": "assistant",
            "model": "claude-sonnet-4-5", "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": 10, "output_tokens": 1}}}),
    );
    for (index, block) in blocks.iter().enumerate() {
        if block["type"] == "tool_use" {
            let start = json!({"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}});
            event(
                "content_block_start",
                json!({"type": "content_block_start", "index": index, "content_block": start}),
            );
            event(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": index,
                    "delta": {"type": "input_json_delta", "partial_json": block["input"].to_string()}}),
            );
        } else {
            event(
                "content_block_start",
                json!({"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}}),
            );
            event(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": index,
                    "delta": {"type": "text_delta", "text": block["text"]}}),
            );
        }
        event(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": index}),
        );
    }
    event(
        "message_delta",
        json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": null}, "usage": {"output_tokens": 5}}),
    );
    event("message_stop", json!({"type": "message_stop"}));
    out
}

#[test]
fn real_claude_code_in_a_golden_path_project() {
    let claude = claude();
    assert!(claude.is_file(), "{} is missing", claude.display());
    let p = Project::new();
    p.grant("cc-shell", "claude-code/Bash,claude-code/Agent,claude-code/Task");
    p.guardrail(NO_RM_RF);
    let model = FakeModel::start();
    let home = tempfile::tempdir().unwrap();
    // Trust the folder, as accepting the trust dialog once would, so the gateway's headersHelper runs.
    let trust = json!({"projects": {p.dir.to_str().unwrap(): {"hasTrustDialogAccepted": true}}});
    std::fs::write(home.path().join(".claude.json"), trust.to_string()).unwrap();
    let run = |prompt: &str| {
        let out = Command::new(&claude)
            .args(["-p", prompt, "--output-format", "json", "--model", "claude-sonnet-4-5"])
            .current_dir(&p.dir)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", home.path())
            .env("ANTHROPIC_BASE_URL", &model.url)
            .env("ANTHROPIC_API_KEY", "sk-ant-dummy")
            .env("DISABLE_AUTOUPDATER", "1")
            .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "claude -p {prompt}: {}\n{}",
            stderr(&out),
            stdout(&out)
        );
        serde_json::from_str::<Value>(&stdout(&out)).unwrap_or_else(|e| panic!("{e}: {}", stdout(&out)))
    };
    let allowed = run("RUN ls");
    assert_eq!(allowed["permission_denials"], json!([]), "{allowed}");
    let denied = run("RUN rm");
    assert_eq!(denied["permission_denials"][0]["tool_name"], "Bash", "{denied}");
    let sub = run("RUN sub");
    assert_eq!(sub["is_error"], false, "{sub}");
    assert!(!model.seen.lock().unwrap().is_empty());

    // The hook recorded every decision in the audit lake, a subagent's under its own identity. The
    // lake keeps no tool input, so the calls are told apart by who made them and how they were decided.
    let events = p.hook_events();
    let decisions: Vec<(String, String, String)> = events
        .iter()
        .filter(|e| e["activity_name"] == "decide_tool_call")
        .map(|e| {
            (
                e["agent_id"].as_str().unwrap().to_owned(),
                e["tool"].as_str().unwrap_or("").to_owned(),
                e["decision"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let agent = p.agent.clone();
    assert!(
        decisions.contains(&(agent.clone(), "Bash".to_owned(), "allow".to_owned())),
        "{decisions:?}"
    );
    assert!(
        decisions.contains(&(agent.clone(), "Bash".to_owned(), "deny".to_owned())),
        "{decisions:?}"
    );
    let from_subagent = decisions
        .iter()
        .find(|(acting, _, _)| acting.starts_with(&format!("{agent}/general-purpose-")))
        .unwrap_or_else(|| panic!("no decision under a subagent's identity: {decisions:?}"));
    assert_eq!(from_subagent.2, "allow", "{from_subagent:?}");
    let actions: Vec<&str> = events.iter().map(|e| e["activity_name"].as_str().unwrap()).collect();
    for expected in [
        "start_session",
        "submit_prompt",
        "call_tool",
        "start_subagent",
        "stop_turn",
        "end_session",
    ] {
        assert!(actions.contains(&expected), "{expected} in {actions:?}");
    }
}
