//! What `warden hook claude-code` costs Claude Code per tool call: the whole invocation, from spawning
//! the process to its exit with the answer read, as Claude Code runs it (a new process per call, the
//! hook input on stdin, `CLAUDE_PROJECT_DIR` set), against `warden serve` on loopback.
//!
//! The project is made by `warden init`; the agent holds a scope over `claude-code/*` and a guardrail
//! reads the call's arguments, so every `PreToolUse` is a real decision: token from the 0600 cache,
//! one HTTP round trip, JWT verification, a Cedar decision, and the event committed to SQLite
//! (`synchronous=FULL`) before the answer. Reported (p50/p99/mean, ms): `PreToolUse` allowed,
//! `PreToolUse` from a subagent (its own identity), `PostToolUse` (recorded only), and the floor:
//! spawning `warden --version`, which does no work.
//!
//! Run with `cargo bench -p warden-cli --bench hook` (release binary). Target: p50 ≤ 10 ms, p99 ≤ 25 ms.
//! Without `--bench` (as `cargo test --all-targets` runs it, in debug) it makes a few calls only.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_precision_loss,
    reason = "a benchmark: failing loudly is the point"
)]

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const WARDEN: &str = env!("CARGO_BIN_EXE_warden");

const GUARDRAIL: &str = r#"@id("no-rm-rf")
@message("agents may not rm -rf")
forbid (principal, action == Warden::Action::"call_tool", resource == Warden::Tool::"claude-code/Bash")
  when { context.arguments.hasTag("command") && context.arguments.getTag("command") like "*rm -rf*" };
"#;

struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_server(dir: &Path) -> Server {
    let mut child = Command::new(WARDEN)
        .args(["serve", "--data-dir"])
        .arg(dir)
        .args(["--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let url = loop {
        let line = lines.next().expect("warden serve stopped before listening").unwrap();
        if let Some(url) = line.strip_prefix("warden: listening on ") {
            break url.to_owned();
        }
    };
    // Keep draining so the server never writes to a closed pipe.
    std::thread::spawn(move || for _ in lines {});
    Server { child, url }
}

fn cli(server: &Server, token: &str, args: &[&str]) -> String {
    let out = Command::new(WARDEN)
        .args(args)
        .env("WARDEN_SERVER", &server.url)
        .env("WARDEN_TOKEN", token)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "warden {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// One invocation as Claude Code makes it.
fn invoke(project: &Path, args: &[&str], input: &[u8]) -> (Duration, Output) {
    let start = Instant::now();
    let mut child = Command::new(WARDEN)
        .args(args)
        .env("CLAUDE_PROJECT_DIR", project)
        .env_remove("WARDEN_SERVER")
        .env_remove("WARDEN_AGENT_TOKEN")
        .current_dir(project)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    (start.elapsed(), out)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn measure(label: &str, n: usize, project: &Path, args: &[&str], input: &Value, check: impl Fn(&Output)) {
    let bytes = if input.is_null() {
        Vec::new()
    } else {
        input.to_string().into_bytes()
    };
    for _ in 0..3 {
        check(&invoke(project, args, &bytes).1);
    }
    let mut ms: Vec<f64> = (0..n)
        .map(|_| {
            let (took, out) = invoke(project, args, &bytes);
            check(&out);
            took.as_secs_f64() * 1000.0
        })
        .collect();
    ms.sort_by(f64::total_cmp);
    let mean = ms.iter().sum::<f64>() / ms.len() as f64;
    println!(
        "{label:<34} {n:>6} {:>8.2} {:>8.2} {:>8.2}",
        percentile(&ms, 0.5),
        percentile(&ms, 0.99),
        mean
    );
}

fn decided(verdict: &'static str) -> impl Fn(&Output) {
    move |out: &Output| {
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
        let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(answer["hookSpecificOutput"]["permissionDecision"], verdict, "{answer}");
    }
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let n = if bench { 1000 } else { 5 };
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(&dir.path().join("data"));
    let admin = std::fs::read_to_string(dir.path().join("data/admin.token")).unwrap();
    let admin = admin.trim();
    let project = dir.path().join("proj");
    cli(&server, admin, &["team", "create", "bench"]);
    let init = cli(
        &server,
        admin,
        &[
            "--json",
            "init",
            project.to_str().unwrap(),
            "--team",
            "bench",
            "--name",
            "coder",
            "--purpose",
            "bench",
        ],
    );
    let agent = serde_json::from_str::<Value>(&init).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    cli(&server, admin, &["scope", "define", "cc", "--tools", "claude-code/*"]);
    cli(&server, admin, &["grant", "cc", "--agent", &agent]);
    let rule = dir.path().join("no-rm-rf.cedar");
    std::fs::write(&rule, GUARDRAIL).unwrap();
    cli(&server, admin, &["guardrail", "add", rule.to_str().unwrap()]);

    let cwd = project.to_str().unwrap();
    let pre = json!({"session_id": "bench", "cwd": cwd, "permission_mode": "default", "hook_event_name": "PreToolUse",
        "tool_name": "Bash", "tool_input": {"command": "ls -la", "description": "list files"}, "tool_use_id": "toolu_1"});
    let mut sub = pre.clone();
    sub["agent_id"] = json!("a3e7ee8edeab8953c");
    sub["agent_type"] = json!("general-purpose");
    let post = json!({"session_id": "bench", "cwd": cwd, "hook_event_name": "PostToolUse", "tool_name": "Bash",
        "tool_input": {"command": "ls -la"}, "tool_response": {"stdout": "total 0", "stderr": "", "interrupted": false},
        "tool_use_id": "toolu_1", "duration_ms": 12});
    let hook = ["hook", "claude-code"];

    println!(
        "warden hook claude-code: process start to answer, {} binary, server on loopback{}",
        if cfg!(debug_assertions) { "debug" } else { "release" },
        if bench {
            ""
        } else {
            " (smoke configuration: run `cargo bench` for figures)"
        }
    );
    println!(
        "{:<34} {:>6} {:>8} {:>8} {:>8}",
        "invocation", "n", "p50 ms", "p99 ms", "mean ms"
    );
    measure("PreToolUse Bash (allow)", n, &project, &hook, &pre, decided("allow"));
    measure(
        "PreToolUse Bash from a subagent",
        n,
        &project,
        &hook,
        &sub,
        decided("allow"),
    );
    measure(
        "PostToolUse (recorded only)",
        n,
        &project,
        &hook,
        &post,
        |out: &Output| {
            assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
        },
    );
    measure(
        "floor: warden --version",
        n,
        &project,
        &["--version"],
        &Value::Null,
        |out: &Output| {
            assert!(out.status.success());
        },
    );
    let spool = project.join(".warden/spool.jsonl");
    assert!(
        std::fs::read_to_string(&spool).unwrap_or_default().is_empty(),
        "nothing was spooled"
    );
    println!("target: PreToolUse p50 ≤ 10 ms, p99 ≤ 25 ms");
}
