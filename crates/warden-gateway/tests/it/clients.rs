//! Real MCP clients nobody here wrote, over loopback: the official Python `mcp` SDK (in `auto` mode,
//! which probes 2026-07-28 first and falls back, and in `legacy` mode) and `inspector-cli`.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{GUARDRAIL_ID, HttpEverything, World, node_peers, python_client, serve, spec, stdio_everything};

const PYTHON_CALLS: [&str; 4] = [
    r#"echo={"message": "hello from python"}"#,
    r#"echo={"message": "my secret"}"#,
    "get-env={}",
    "no-such-tool={}",
];

/// What the Python client saw of the four calls: allowed, denied by the guardrail, denied for want
/// of a grant, unknown.
fn check_python_calls(out: &Value) {
    assert_eq!(out["server"], "warden-gateway", "{out}");
    let mut tools: Vec<&str> = out["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    tools.sort_unstable();
    assert_eq!(tools, ["echo", "get-sum"]);
    let calls = out["calls"].as_array().unwrap();
    assert_eq!(
        calls[0],
        json!({"tool": "echo", "is_error": false, "text": "Echo: hello from python"})
    );
    assert_eq!(calls[1]["is_error"], true, "{out}");
    assert_eq!(
        calls[1]["text"],
        format!(
            "Denied by Warden: denied by guardrail `{GUARDRAIL_ID}`: echo must not repeat secrets (policies: {GUARDRAIL_ID})"
        )
    );
    assert_eq!(calls[2]["is_error"], true, "{out}");
    assert!(calls[2]["text"].as_str().unwrap().contains("(policies: none)"), "{out}");
    assert!(
        calls[3]["error"]
            .as_str()
            .unwrap()
            .contains("Unknown tool: no-such-tool"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_in_both_protocol_eras() {
    let world = World::new(vec![spec("everything", stdio_everything())]);
    let served = serve(&world.gateway).await;
    let url = format!("{}/mcp/everything", served.base);

    // `auto` probes 2026-07-28 with `server/discover` and, as the gateway supports it, stays there:
    // no handshake, no session.
    let out = python_client(&url, &world.reader_token(), "auto", &PYTHON_CALLS).await;
    assert_eq!(out["protocol_version"], "2026-07-28", "{out}");
    assert_eq!(
        out["wire"],
        json!([
            "POST server/discover 200",
            "POST tools/list 200",
            "POST tools/call 200",
            "POST tools/call 200",
            "POST tools/call 200",
            "POST tools/call 400"
        ])
    );
    check_python_calls(&out);
    let kinds: Vec<String> = world
        .events()
        .await
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_owned())
        .collect();
    // Four calls, the last to a tool the server does not offer: each has a decision and an outcome.
    assert_eq!(
        kinds,
        [
            "decision", "outcome", "decision", "outcome", "decision", "outcome", "decision", "outcome"
        ]
    );

    // `legacy`: the 2025-11-25 handshake and a session, ended with DELETE.
    let out = python_client(&url, &world.reader_token(), "legacy", &PYTHON_CALLS).await;
    assert_eq!(out["protocol_version"], "2025-11-25", "{out}");
    // The SDK opens its GET stream in the background, so where (and whether) its 405 lands among the
    // other requests varies from run to run; the POSTs and the DELETE are ordered.
    let wire: Vec<&str> = out["wire"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap())
        .collect();
    assert!(
        wire.iter()
            .filter(|w| w.starts_with("GET "))
            .all(|w| *w == "GET None 405"),
        "{out}"
    );
    let ordered: Vec<&str> = wire.into_iter().filter(|w| !w.starts_with("GET ")).collect();
    assert_eq!(
        json!(ordered),
        json!([
            "POST initialize 200",
            "POST notifications/initialized 202",
            "POST tools/list 200",
            "POST tools/call 200",
            "POST tools/call 200",
            "POST tools/call 200",
            "POST tools/call 200",
            "DELETE None 200"
        ])
    );
    check_python_calls(&out);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while world.gateway.session_count() > 0 {
        assert!(std::time::Instant::now() < deadline, "the session was not ended");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let kinds: Vec<String> = world
        .events()
        .await
        .iter()
        .skip(8)
        .map(|e| e["kind"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        kinds,
        [
            "session_opened",
            "decision",
            "outcome",
            "decision",
            "outcome",
            "decision",
            "outcome",
            "decision",
            "outcome",
            "session_closed"
        ]
    );
    world.gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_on_the_aggregated_endpoint() {
    let http = HttpEverything::start().await;
    let world = World::new(vec![
        spec("everything", stdio_everything()),
        spec("web", http.transport()),
        spec("hidden", http.transport()),
    ]);
    let served = serve(&world.gateway).await;
    let out = python_client(
        &format!("{}/mcp", served.base),
        &world.delegated_token(),
        "legacy",
        &[
            r#"web__get-sum={"a": 2, "b": 3}"#,
            r#"everything__echo={"message": "hi"}"#,
            r#"hidden__echo={"message": "hi"}"#,
        ],
    )
    .await;
    let mut tools: Vec<&str> = out["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    tools.sort_unstable();
    assert_eq!(
        tools,
        [
            "everything__echo",
            "everything__get-sum",
            "web__echo",
            "web__get-sum",
            "web__trigger-long-running-operation"
        ]
    );
    let calls = out["calls"].as_array().unwrap();
    assert_eq!(calls[0]["text"], "The sum of 2 and 3 is 5.", "{out}");
    assert_eq!(calls[1]["text"], "Echo: hi", "{out}");
    assert_eq!(calls[2]["is_error"], true, "{out}");
    // The subagent is recorded as itself, with its chain.
    let decisions: Vec<Value> = world
        .events()
        .await
        .into_iter()
        .filter(|e| e["kind"] == "decision")
        .collect();
    assert_eq!(decisions.len(), 3);
    for decision in &decisions {
        assert_eq!(decision["agent"], world.agents.helper.id.as_str());
        assert_eq!(
            decision["chain"],
            json!([world.agents.reader.id.as_str(), world.agents.helper.id.as_str()])
        );
    }
    world.gateway.shutdown().await;
}

/// Runs inspector-cli against `url` with the agent's token; returns its JSON output.
async fn inspector(url: &str, token: &str, args: &[&str]) -> Value {
    let peers = node_peers().expect("WARDEN_TEST_NODE_PEERS is not set: run the tests with `bash scripts/test.sh`");
    let cli = peers.join("node_modules/@modelcontextprotocol/inspector-cli/build/cli.js");
    assert!(
        cli.is_file(),
        "{} is missing: run `bash scripts/test.sh`",
        cli.display()
    );
    // inspector-cli reads `../package.json` from its working directory to learn its own version.
    let output = tokio::process::Command::new("node")
        .arg(&cli)
        .args(["--cli", url, "--transport", "http"])
        .args(args)
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .current_dir(peers.join("node_modules"))
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(60), output)
        .await
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "inspector-cli failed: {}\nstdout: {stdout}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspector_cli_lists_and_calls() {
    let world = World::new(vec![spec("everything", stdio_everything())]);
    let served = serve(&world.gateway).await;
    let url = format!("{}/mcp/everything", served.base);
    let token = world.reader_token();
    let listed = inspector(&url, &token, &["--method", "tools/list"]).await;
    let mut tools: Vec<&str> = listed["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    tools.sort_unstable();
    assert_eq!(tools, ["echo", "get-sum"]);
    let called = inspector(
        &url,
        &token,
        &[
            "--method",
            "tools/call",
            "--tool-name",
            "get-sum",
            "--tool-arg",
            "a=2",
            "b=3",
        ],
    )
    .await;
    assert_eq!(called["content"][0]["text"], "The sum of 2 and 3 is 5.", "{called}");
    let denied = inspector(
        &url,
        &token,
        &[
            "--method",
            "tools/call",
            "--tool-name",
            "echo",
            "--tool-arg",
            "message=top-secret",
        ],
    )
    .await;
    assert_eq!(denied["isError"], true, "{denied}");
    assert!(
        denied["content"][0]["text"]
            .as_str()
            .unwrap()
            .starts_with("Denied by Warden"),
        "{denied}"
    );
    world.gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_receives_progress_in_both_protocol_eras() {
    // The reader's scope covers `web/trigger-long-running-operation`; `web` is server-everything over
    // stdio here.
    let world = World::new(vec![spec("web", stdio_everything())]);
    let served = serve(&world.gateway).await;
    let url = format!("{}/mcp/web", served.base);
    let call = [r#"trigger-long-running-operation+progress={"duration": 1, "steps": 3}"#];
    for mode in ["auto", "legacy"] {
        let out = python_client(&url, &world.reader_token(), mode, &call).await;
        let result = &out["calls"][0];
        assert_eq!(result["is_error"], false, "{mode}: {out}");
        assert!(
            result["text"]
                .as_str()
                .unwrap()
                .starts_with("Long running operation completed"),
            "{mode}: {out}"
        );
        assert_eq!(
            result["progress"],
            json!([[1.0, 3.0], [2.0, 3.0], [3.0, 3.0]]),
            "{mode}: the SDK got every progress notification, in order: {out}"
        );
    }
    world.gateway.shutdown().await;
}
