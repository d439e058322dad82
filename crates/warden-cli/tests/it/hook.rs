//! `warden hook claude-code` end to end: the real hook inputs of reference/integration-spec.md §1.3
//! replayed through the binary against a real server, in a project made by `warden init`.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};

use crate::support::{Server, WARDEN, free_port, stderr, stdout};

/// A guardrail on Claude Code's `Bash`: no `rm -rf`.
pub const NO_RM_RF: &str = r#"@id("no-rm-rf")
@message("agents may not rm -rf")
forbid (principal, action == Warden::Action::"call_tool", resource == Warden::Tool::"claude-code/Bash")
  when { context.arguments.hasTag("command") && context.arguments.getTag("command") like "*rm -rf*" };
"#;

/// A server with team `payments`, and a project `proj` made by `warden init` for agent `coder`.
pub struct Project {
    pub server: Server,
    pub admin: String,
    pub dir: PathBuf,
    pub agent: String,
    _tmp: tempfile::TempDir,
}

impl Project {
    pub fn new() -> Project {
        Project::with_server(Server::start)
    }

    pub fn with_server(start: impl FnOnce(&Path) -> Server) -> Project {
        let tmp = tempfile::tempdir().unwrap();
        let server = start(&tmp.path().join("data"));
        let admin = server.admin_token();
        assert!(server.cli(&admin, &["team", "create", "payments"]).status.success());
        let dir = tmp.path().join("proj");
        let mut args = vec!["--json"];
        args.extend(init_args(&dir));
        let out = server.cli(&admin, &args);
        assert!(out.status.success(), "{}", stderr(&out));
        let agent = serde_json::from_str::<Value>(&stdout(&out)).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        Project {
            server,
            admin,
            dir,
            agent,
            _tmp: tmp,
        }
    }

    /// Runs `warden init` on the project again, with `extra` arguments.
    pub fn init(&self, extra: &[&str]) -> Output {
        let mut args = init_args(&self.dir);
        args.extend_from_slice(extra);
        self.cli(&args)
    }

    pub fn cli(&self, args: &[&str]) -> Output {
        self.server.cli(&self.admin, args)
    }

    /// Defines scope `name` over `tools` and grants it to the project's agent.
    pub fn grant(&self, name: &str, tools: &str) {
        let out = self.cli(&["scope", "define", name, "--tools", tools]);
        assert!(out.status.success(), "{}", stderr(&out));
        let out = self.cli(&["grant", name, "--agent", &self.agent]);
        assert!(out.status.success(), "{}", stderr(&out));
    }

    /// Adds a guardrail.
    pub fn guardrail(&self, text: &str) {
        let file = self.dir.parent().unwrap().join("guardrail.cedar");
        std::fs::write(&file, text).unwrap();
        let out = self.cli(&["guardrail", "add", file.to_str().unwrap()]);
        assert!(out.status.success(), "{}", stderr(&out));
    }

    /// Runs the hook as Claude Code does: the input on stdin, in the project, with
    /// `CLAUDE_PROJECT_DIR` set and no Warden variables.
    pub fn hook(&self, payload: &Value) -> Output {
        run_hook(&self.dir, &payload.to_string())
    }

    /// The hook's decision for `payload` (asserting it exited 0 and printed JSON).
    pub fn decide(&self, payload: &Value) -> Value {
        let out = self.hook(payload);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        serde_json::from_str(&stdout(&out)).unwrap_or_else(|e| panic!("{e}: {}", stdout(&out)))
    }

    /// The hook's events in the audit lake (API Activity, ids `hook-…`), in log order. They are
    /// durable before the hook answers, so no waiting.
    pub fn hook_events(&self) -> Vec<Value> {
        let rows = self.server.api(&self.admin).audit(
            "SELECT class_uid, activity_name, agent_id, team, session_id, subagent_id, delegation_chain, \
             server, tool, decision, policy_ids, status_id, status_detail, message, time, logged_time, uid \
             FROM events WHERE uid LIKE 'hook-%' AND class_uid <> 2004 ORDER BY seq",
        );
        for row in &rows {
            assert_eq!(row["class_uid"], 6003, "{row}");
        }
        rows
    }

    /// The hook's Detection Findings (shadow MCP servers).
    pub fn hook_findings(&self) -> Vec<Value> {
        self.server.api(&self.admin).audit(
            "SELECT agent_id, finding_uid, finding_title FROM events \
             WHERE uid LIKE 'hook-%' AND class_uid = 2004 ORDER BY seq",
        )
    }

    /// A real hook input with this project's `cwd`.
    pub fn payload(&self, mut value: Value) -> Value {
        value["cwd"] = json!(self.dir.to_str().unwrap());
        value
    }
}

/// `warden init DIR` for agent `payments/coder`.
fn init_args(dir: &Path) -> Vec<&str> {
    vec![
        "init",
        dir.to_str().unwrap(),
        "--team",
        "payments",
        "--name",
        "coder",
        "--purpose",
        "writes payment code",
    ]
}

pub fn run_hook(project: &Path, input: &str) -> Output {
    let mut child = Command::new(WARDEN)
        .args(["hook", "claude-code"])
        .env("CLAUDE_PROJECT_DIR", project)
        .env_remove("WARDEN_SERVER")
        .env_remove("WARDEN_TOKEN")
        .env_remove("WARDEN_AGENT_TOKEN")
        .current_dir(project)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

fn decision(answer: &Value) -> (String, String) {
    let out = &answer["hookSpecificOutput"];
    assert_eq!(out["hookEventName"], "PreToolUse", "{answer}");
    (
        out["permissionDecision"].as_str().unwrap().to_owned(),
        out["permissionDecisionReason"].as_str().unwrap().to_owned(),
    )
}

/// The session of §1.3, as Claude Code 2.1.332 sent it.
fn session() -> Vec<Value> {
    vec![
        json!({"session_id":"5b2e4ab1-…","transcript_path":"peers/cchome/.claude/projects/-peers-ccproj/5b2e4ab1-….jsonl","cwd":"peers/ccproj","hook_event_name":"SessionStart","source":"startup"}),
        json!({"session_id":"5b2e4ab1-…","transcript_path":"…","cwd":"peers/ccproj","prompt_id":"f0379dbd-…","permission_mode":"default","hook_event_name":"UserPromptSubmit","prompt":"use the echo tool"}),
        json!({"session_id":"5b2e4ab1-…","transcript_path":"…","cwd":"peers/ccproj","prompt_id":"f0379dbd-…","permission_mode":"default","effort":{"level":"medium"},"hook_event_name":"PreToolUse","tool_name":"mcp__everything__echo","tool_input":{"message":"hi from fake model"},"tool_use_id":"toolu_fake_01","mcp_server":{"name":"everything","source":"project"}}),
        json!({"session_id":"5b2e4ab1-…","transcript_path":"…","cwd":"peers/ccproj","prompt_id":"f0379dbd-…","permission_mode":"default","effort":{"level":"medium"},"hook_event_name":"PostToolUse","tool_name":"mcp__everything__echo","tool_input":{"message":"hi from fake model"},"tool_response":[{"type":"text","text":"Echo: hi from fake model"}],"tool_use_id":"toolu_fake_01","duration_ms":420,"mcp_server":{"name":"everything","source":"project"}}),
        json!({"session_id":"5b2e4ab1-…","transcript_path":"…","cwd":"peers/ccproj","prompt_id":"f0379dbd-…","permission_mode":"default","effort":{"level":"medium"},"hook_event_name":"Stop","stop_hook_active":false,"last_assistant_message":"All scripted steps done.","background_tasks":[],"session_crons":[]}),
        json!({"session_id":"5b2e4ab1-…","transcript_path":"…","cwd":"peers/ccproj","prompt_id":"f0379dbd-…","hook_event_name":"SessionEnd","reason":"other"}),
    ]
}

#[test]
fn a_real_session_is_decided_and_recorded_event_by_event() {
    let p = Project::new();
    let mut outputs = Vec::new();
    for payload in session() {
        let out = p.hook(&p.payload(payload));
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        outputs.push(stdout(&out));
    }
    // Only PreToolUse answers; `everything` is no server of Warden's: a shadow server, denied.
    let (verdict, reason) = decision(&serde_json::from_str(&outputs[2]).unwrap());
    assert_eq!(verdict, "deny");
    assert!(reason.contains("mcp server `everything` is not registered"), "{reason}");
    for (i, out) in outputs.iter().enumerate() {
        assert_eq!(out.is_empty(), i != 2, "event {i} printed {out:?}");
    }
    let events = p.hook_events();
    let actions: Vec<&str> = events.iter().map(|e| e["activity_name"].as_str().unwrap()).collect();
    assert_eq!(
        actions,
        [
            "start_session",
            "submit_prompt",
            "decide_tool_call",
            "call_tool",
            "stop_turn",
            "end_session"
        ]
    );
    for event in &events {
        assert_eq!(event["agent_id"], json!(p.agent));
        assert_eq!(event["team"], "payments");
        assert_eq!(event["session_id"], "5b2e4ab1-…");
    }
    let prompt = &events[1];
    assert!(prompt["message"].as_str().unwrap().contains("17 chars"), "{prompt}");
    assert!(
        !prompt.to_string().contains("use the echo tool"),
        "prompt text is not kept: {prompt}"
    );
    let pre = &events[2];
    assert_eq!((&pre["server"], &pre["tool"]), (&json!("everything"), &json!("echo")));
    assert_eq!(pre["decision"], "deny");
    assert_eq!(pre["status_id"], 2);
    assert!(
        pre["status_detail"]
            .as_str()
            .unwrap()
            .contains("shadow MCP server `everything`"),
        "{pre}"
    );
    let findings = p.hook_findings();
    assert_eq!(findings.len(), 1, "{findings:?}");
    assert_eq!(findings[0]["finding_uid"], "shadow-mcp-server");
    assert!(findings[0]["finding_title"].as_str().unwrap().contains("`everything`"));
    let post = events[3]["message"].as_str().unwrap();
    assert!(post.contains("420 ms") && post.contains("response bytes"), "{post}");
    assert!(!events[4].to_string().contains("All scripted steps done"));
    assert!(
        events[5]["message"].as_str().unwrap().contains("reason other"),
        "{}",
        events[5]
    );
}

#[test]
fn builtin_tools_are_decided_by_scopes_and_guardrails() {
    let p = Project::new();
    p.grant("cc-shell", "claude-code/Bash,claude-code/Read");
    p.guardrail(NO_RM_RF);
    let call = |tool: &str, input: Value| {
        p.payload(
            json!({"session_id": "s1", "hook_event_name": "PreToolUse", "tool_name": tool,
            "tool_input": input, "tool_use_id": "toolu_1", "permission_mode": "default"}),
        )
    };
    let answer = p.decide(&call("Bash", json!({"command": "ls -la", "description": "list"})));
    let (verdict, reason) = decision(&answer);
    assert_eq!(verdict, "allow", "{reason}");
    assert!(reason.contains("`cc-shell`"), "{reason}");
    let answer = p.decide(&call("Bash", json!({"command": "rm -rf /", "description": "wipe"})));
    let (verdict, reason) = decision(&answer);
    assert_eq!(verdict, "deny");
    assert!(reason.contains("agents may not rm -rf"), "{reason}");
    let answer = p.decide(&call("Write", json!({"file_path": "/tmp/x", "content": "x"})));
    let (verdict, reason) = decision(&answer);
    assert_eq!(verdict, "deny");
    assert!(reason.contains("covers tool `claude-code/Write`"), "{reason}");
    // PermissionRequest answers in its own shape.
    let answer = p.decide(
        &p.payload(json!({"session_id": "s1", "hook_event_name": "PermissionRequest",
        "tool_name": "Write", "tool_input": {"file_path": "/tmp/x", "content": "x"}, "permission_suggestions": []})),
    );
    assert_eq!(answer["hookSpecificOutput"]["hookEventName"], "PermissionRequest");
    assert_eq!(answer["hookSpecificOutput"]["decision"]["behavior"], "deny");
    let events = p.hook_events();
    let decided: Vec<(&str, &str)> = events
        .iter()
        .map(|e| (e["tool"].as_str().unwrap(), e["decision"].as_str().unwrap()))
        .collect();
    assert_eq!(
        decided,
        [
            ("Bash", "allow"),
            ("Bash", "deny"),
            ("Write", "deny"),
            ("Write", "deny")
        ]
    );
    assert_eq!(events[1]["policy_ids"], json!(["no-rm-rf"]));
    assert_eq!(events[0]["policy_ids"], json!([format!("grant/cc-shell/{}", p.agent)]));
    assert_eq!(events[0]["server"], "claude-code");
    assert!(p.hook_findings().is_empty());
    // The name of Claude Code's built-in server is reserved.
    let out = p.cli(&["mcp-server", "add", "claude-code", "--url", "http://127.0.0.1:9/mcp"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("reserved"), "{}", stderr(&out));
}

#[test]
fn subagents_act_under_their_own_revocable_identity() {
    let p = Project::new();
    p.grant("cc-all", "claude-code/*");
    // §1.3 "Subagent identity": the main agent calls Agent, the subagent starts and calls a tool.
    let spawn = p.payload(json!({"session_id":"s2","prompt_id":"6407b4fb-…","permission_mode":"default","hook_event_name":"PreToolUse","tool_name":"Agent","tool_input":{"description":"sub task","prompt":"SUBAGENT_TASK: call echo","subagent_type":"general-purpose","run_in_background":false},"tool_use_id":"toolu_fake_01"}));
    assert_eq!(decision(&p.decide(&spawn)).0, "allow");
    let start = p.payload(json!({"session_id":"s2","prompt_id":"6407b4fb-…","agent_id":"a3e7ee8edeab8953c","agent_type":"general-purpose","hook_event_name":"SubagentStart"}));
    let out = p.hook(&start);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let child = format!("{}/general-purpose-a3e7ee8edeab8953c", p.agent);
    let shown = p.cli(&["--json", "agent", "show", &child]);
    assert!(shown.status.success(), "{}", stderr(&shown));
    let shown: Value = serde_json::from_str(&stdout(&shown)).unwrap();
    assert_eq!(shown["origin"], "delegated");
    assert_eq!(shown["parent"], json!(p.agent));
    let sub_call = |agent_id: &str, command: &str| {
        p.payload(json!({"session_id":"s2","permission_mode":"default","agent_id":agent_id,"agent_type":"general-purpose","effort":{"level":"medium"},"hook_event_name":"PreToolUse","tool_name":"Bash","tool_input":{"command":command},"tool_use_id":"toolu_fake_01"}))
    };
    assert_eq!(decision(&p.decide(&sub_call("a3e7ee8edeab8953c", "ls"))).0, "allow");
    let stop = p.payload(json!({"session_id":"s2","agent_id":"a3e7ee8edeab8953c","agent_type":"general-purpose","hook_event_name":"SubagentStop","stop_hook_active":false,"agent_transcript_path":"x/subagents/agent-a3e7ee8edeab8953c.jsonl","last_assistant_message":"All scripted steps done.","background_tasks":[],"session_crons":[]}));
    assert_eq!(p.hook(&stop).status.code(), Some(0));
    let done = p.payload(json!({"session_id":"s2","hook_event_name":"PostToolUse","tool_name":"Agent","tool_response":{"status":"completed","agentId":"a3e7ee8edeab8953c","agentType":"general-purpose","toolsUsed":["Bash"],"content":[{"type":"text","text":"…"}],"totalTokens":107,"totalToolUseCount":1,"usage":{"input_tokens":100,"output_tokens":7,"cache_creation_input_tokens":0,"cache_read_input_tokens":0}}}));
    assert_eq!(p.hook(&done).status.code(), Some(0));

    let events = p.hook_events();
    let by_actor: Vec<(&str, &str)> = events
        .iter()
        .map(|e| (e["activity_name"].as_str().unwrap(), e["agent_id"].as_str().unwrap()))
        .collect();
    assert_eq!(
        by_actor,
        [
            ("decide_tool_call", p.agent.as_str()),
            ("start_subagent", child.as_str()),
            ("decide_tool_call", child.as_str()),
            ("stop_subagent", child.as_str()),
            ("call_tool", p.agent.as_str()),
        ]
    );
    assert_eq!(events[2]["delegation_chain"], json!([p.agent, child]));
    assert_eq!(events[2]["subagent_id"], json!(child));
    assert!(events[4]["subagent_id"].is_null());
    // The subagent's tokens, from the Agent tool's result (not summed as spend).
    let done = events[4]["message"].as_str().unwrap();
    assert!(done.contains("used 107 tokens (100 input, 7 output)"), "{done}");
    let spend = p
        .server
        .api(&p.admin)
        .audit("SELECT count(*) AS n FROM events WHERE uid LIKE 'hook-%' AND input_tokens IS NOT NULL");
    assert_eq!(spend[0]["n"], 0);

    // Stopping one subagent stops it alone.
    let out = p.cli(&["agent", "revoke", &child, "--reason", "runaway"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (verdict, reason) = decision(&p.decide(&sub_call("a3e7ee8edeab8953c", "ls")));
    assert_eq!(verdict, "deny");
    assert!(reason.contains("is revoked"), "{reason}");
    assert_eq!(decision(&p.decide(&sub_call("b0000000000000001", "ls"))).0, "allow");
    let main = p.payload(
        json!({"session_id":"s2","hook_event_name":"PreToolUse","tool_name":"Bash","tool_input":{"command":"ls"}}),
    );
    assert_eq!(decision(&p.decide(&main)).0, "allow");
}

#[test]
fn mcp_tools_are_decided_as_their_servers_tools() {
    let p = Project::new();
    let out = p.cli(&["mcp-server", "add", "everything", "--url", "http://127.0.0.1:9/mcp"]);
    assert!(out.status.success(), "{}", stderr(&out));
    p.grant("echo", "everything/echo");
    let call = |tool: &str| {
        p.payload(json!({"session_id":"s3","hook_event_name":"PreToolUse","tool_name":tool,"tool_input":{"message":"hi"},"tool_use_id":"t","mcp_server":{"name":"x","source":"project"}}))
    };
    // Through Warden's gateway (the `warden` key of .mcp.json): `<server>__<tool>`.
    assert_eq!(decision(&p.decide(&call("mcp__warden__everything__echo"))).0, "allow");
    assert_eq!(decision(&p.decide(&call("mcp__warden__everything__get-env"))).0, "deny");
    // Straight to a registered server: its tools, its policy.
    assert_eq!(decision(&p.decide(&call("mcp__everything__echo"))).0, "allow");
    // Straight to a server Warden does not know: a shadow server, denied.
    let (verdict, reason) = decision(&p.decide(&call("mcp__github__create_issue")));
    assert_eq!(verdict, "deny");
    assert!(reason.contains("`github` is not registered"), "{reason}");
    let events = p.hook_events();
    let shadows: Vec<bool> = events
        .iter()
        .map(|e| {
            e["status_detail"]
                .as_str()
                .unwrap_or("")
                .contains("shadow MCP server `github`")
        })
        .collect();
    assert_eq!(shadows, [false, false, false, true]);
    for (event, route) in events.iter().zip(["gateway", "gateway", "direct", "direct"]) {
        let message = event["message"].as_str().unwrap();
        assert!(message.contains(&format!("{route} route")), "{message}");
    }
    let findings = p.hook_findings();
    assert_eq!(findings.len(), 1, "{findings:?}");
    assert!(findings[0]["finding_title"].as_str().unwrap().contains("`github`"));
}

#[test]
fn bad_input_and_bad_credentials_fail_closed() {
    let p = Project::new();
    for (input, expected) in [
        ("not json", "is not JSON"),
        ("[1]", "not a JSON object"),
        ("{}", "no `hook_event_name`"),
        (
            r#"{"hook_event_name":"PreToolUse","session_id":"s"}"#,
            "has no `tool_name`",
        ),
        (
            r#"{"hook_event_name":"PreToolUse","tool_name":"Bash","tool_input":"ls"}"#,
            "`tool_input` must be a JSON object",
        ),
    ] {
        let out = run_hook(&p.dir, input);
        assert_eq!(out.status.code(), Some(2), "{input}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(err.starts_with("error: ") && err.contains(expected), "{input}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
    let pre = json!({"hook_event_name":"PreToolUse","session_id":"s","tool_name":"Read","tool_input":{"file_path":"/etc/hosts"}});
    // No identity anywhere.
    let elsewhere = tempfile::tempdir().unwrap();
    let out = run_hook(elsewhere.path(), &pre.to_string());
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("no agent identity"), "{}", stderr(&out));
    // A wrong secret (and no cached token).
    let creds = p.dir.join(".warden/agent.json");
    let mut file: Value = serde_json::from_str(&std::fs::read_to_string(&creds).unwrap()).unwrap();
    file["client_secret"] = json!("wdn_cs_wrong");
    std::fs::write(&creds, file.to_string()).unwrap();
    let _ = std::fs::remove_file(p.dir.join(".warden/token.json"));
    let out = p.hook(&pre);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("client authentication failed"),
        "{}",
        stderr(&out)
    );
    // A revoked agent.
    let p = Project::new();
    assert_eq!(p.hook(&pre).status.code(), Some(0));
    let out = p.cli(&["agent", "revoke", &p.agent]);
    assert!(out.status.success());
    let out = p.hook(&pre);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("revoked"), "{}", stderr(&out));
    // PermissionRequest (whose exit 2 Claude Code ignores) also gets a JSON deny.
    let out = p.hook(&json!({"hook_event_name":"PermissionRequest","tool_name":"Read","tool_input":{}}));
    assert_eq!(out.status.code(), Some(2));
    let answer: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(answer["hookSpecificOutput"]["decision"]["behavior"], "deny");
}

#[test]
fn unreachable_server_blocks_decisions_and_spools_the_rest_once() {
    let port = free_port().to_string();
    let listen = format!("127.0.0.1:{port}");
    let p = Project::with_server(|dir| Server::start_with(dir, &["--listen", &listen]));
    p.grant("cc-read", "claude-code/Read");
    let pre = p.payload(json!({"hook_event_name":"PreToolUse","session_id":"s4","tool_name":"Read","tool_input":{"file_path":"/etc/hosts"}}));
    assert_eq!(decision(&p.decide(&pre)).0, "allow");
    let Project {
        server,
        admin,
        dir,
        agent,
        _tmp,
    } = p;
    let data = server.data_dir.clone();
    server.stop();

    let out = run_hook(&dir, &pre.to_string());
    assert_eq!(
        out.status.code(),
        Some(2),
        "a decision without the server blocks the call"
    );
    assert!(
        stderr(&out).starts_with("error: warden hook: cannot reach warden"),
        "{}",
        stderr(&out)
    );
    for event in [
        json!({"hook_event_name":"PostToolUse","session_id":"s4","tool_name":"Read","tool_input":{"file_path":"/etc/hosts"},"tool_response":{"content":"…"},"duration_ms":3}),
        json!({"hook_event_name":"SessionEnd","session_id":"s4","reason":"other"}),
    ] {
        let out = run_hook(&dir, &event.to_string());
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        assert!(stderr(&out).contains("spooled"), "{}", stderr(&out));
    }
    let spool = dir.join(".warden/spool.jsonl");
    assert_eq!(std::fs::metadata(&spool).unwrap().permissions().mode() & 0o777, 0o600);
    let spooled = std::fs::read_to_string(&spool).unwrap();
    assert_eq!(spooled.lines().count(), 2);

    let server = Server::start_with(&data, &["--listen", &listen]);
    let p = Project {
        server,
        admin,
        dir,
        agent,
        _tmp,
    };
    assert_eq!(decision(&p.decide(&pre)).0, "allow");
    assert_eq!(std::fs::read_to_string(&spool).unwrap(), "", "the spool is delivered");
    let count = |p: &Project, action: &str| p.hook_events().iter().filter(|e| e["activity_name"] == action).count();
    assert_eq!(count(&p, "call_tool"), 1);
    assert_eq!(count(&p, "end_session"), 1);
    // Delivered but not yet cleared (a crash in between): the next delivery stores nothing twice.
    std::fs::write(&spool, &spooled).unwrap();
    assert_eq!(decision(&p.decide(&pre)).0, "allow");
    assert_eq!(std::fs::read_to_string(&spool).unwrap(), "");
    assert_eq!(count(&p, "call_tool"), 1);
    assert_eq!(count(&p, "end_session"), 1);
    // A spooled event keeps the time the hook read it, before the server came back.
    let ended = p
        .hook_events()
        .into_iter()
        .find(|e| e["activity_name"] == "end_session")
        .unwrap();
    assert!(
        ended["time"].as_i64().unwrap() < ended["logged_time"].as_i64().unwrap(),
        "{ended}"
    );
}

#[test]
fn token_header_prints_the_agents_authorization() {
    let p = Project::new();
    let out = Command::new(WARDEN)
        .args(["token", "header", "--dir", p.dir.to_str().unwrap()])
        .env_remove("WARDEN_SERVER")
        .env_remove("WARDEN_AGENT_TOKEN")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let header: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let bearer = header["Authorization"].as_str().unwrap();
    let token = bearer.strip_prefix("Bearer ").unwrap();
    let decided = crate::support::Api::anonymous(&p.server.url).post(
        "/v1/authorize",
        &json!({"token": token, "server": "claude-code", "tool": "Read"}),
    );
    assert_eq!(decided.body["agent"], json!(p.agent));
    let cached = p.dir.join(".warden/token.json");
    assert_eq!(std::fs::metadata(&cached).unwrap().permissions().mode() & 0o777, 0o600);
}

#[test]
fn prompt_text_is_kept_only_when_the_platform_opts_in() {
    let p = Project::with_server(|dir| Server::start_with(dir, &["--keep-prompts"]));
    let prompt =
        p.payload(json!({"session_id":"s5","hook_event_name":"UserPromptSubmit","prompt":"use the echo tool"}));
    assert_eq!(p.hook(&prompt).status.code(), Some(0));
    let events = p.hook_events();
    let message = events[0]["message"].as_str().unwrap();
    assert!(
        message.contains("17 chars") && message.ends_with(": use the echo tool"),
        "{message}"
    );
}
