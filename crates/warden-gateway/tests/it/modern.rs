//! The 2026-07-28 revision, in process: `server/discover`, no sessions, the per-request envelope and
//! routing headers checked against the body before anything is decided, and results in modern shape.

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::support::{GUARDRAIL_ID, InProcess, Reply, World, spec, stdio_everything, text};

const VERSION: &str = "2026-07-28";

fn envelope(mut params: Value) -> Value {
    params["_meta"] = json!({
        "io.modelcontextprotocol/protocolVersion": VERSION,
        "io.modelcontextprotocol/clientInfo": {"name": "test", "version": "0"},
        "io.modelcontextprotocol/clientCapabilities": {},
    });
    params
}

/// A modern request with matching headers; `headers` overrides or adds.
async fn modern(client: &InProcess, path: &str, method: &str, params: Value, headers: &[(&str, &str)]) -> Reply {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    let name = params_name(&body);
    let mut all: Vec<(&str, &str)> = vec![("mcp-protocol-version", VERSION), ("mcp-method", method)];
    if let Some(name) = name.as_deref() {
        all.push(("mcp-name", name));
    }
    let mut all: Vec<(String, String)> = all.into_iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
    for (k, v) in headers {
        all.retain(|(name, _)| name != k);
        all.push(((*k).to_owned(), (*v).to_owned()));
    }
    let borrowed: Vec<(&str, &str)> = all.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    client.send("POST", path, Some(body.to_string()), &borrowed).await
}

fn params_name(body: &Value) -> Option<String> {
    body["params"]["name"].as_str().map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discover_list_and_call_without_sessions() {
    let world = World::new(vec![spec("everything", stdio_everything())]);
    let client = world.client(Some(world.reader_token()));

    let reply = modern(&client, "/mcp/everything", "server/discover", envelope(json!({})), &[]).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.raw);
    assert!(reply.headers.get("mcp-session-id").is_none());
    let result = &reply.body["result"];
    assert_eq!(result["resultType"], "complete");
    assert_eq!(
        result["supportedVersions"],
        json!(["2026-07-28", "2025-11-25", "2025-06-18", "2025-03-26"])
    );
    assert_eq!(result["capabilities"], json!({"tools": {"listChanged": false}}));
    assert_eq!(
        result["_meta"]["io.modelcontextprotocol/serverInfo"]["name"],
        "warden-gateway"
    );
    assert_eq!(
        (result["ttlMs"].as_u64(), result["cacheScope"].as_str()),
        (Some(0), Some("private"))
    );

    let reply = modern(&client, "/mcp/everything", "tools/list", envelope(json!({})), &[]).await;
    let result = &reply.body["result"];
    assert_eq!(result["resultType"], "complete", "{}", reply.raw);
    assert_eq!(result["cacheScope"], "private");
    let mut names: Vec<&str> = result["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["echo", "get-sum"]);

    let call = envelope(json!({"name": "echo", "arguments": {"message": "modern"}}));
    let reply = modern(&client, "/mcp/everything", "tools/call", call, &[]).await;
    assert_eq!(text(&reply.body["result"]), "Echo: modern", "{}", reply.raw);
    assert_eq!(reply.body["result"]["resultType"], "complete");
    let call = envelope(json!({"name": "echo", "arguments": {"message": "a secret"}}));
    let reply = modern(&client, "/mcp/everything", "tools/call", call, &[]).await;
    assert_eq!(reply.body["result"]["isError"], true, "{}", reply.raw);
    assert!(text(&reply.body["result"]).contains(GUARDRAIL_ID));

    // Decisions are recorded without a session; no session was opened.
    let events = world.events().await;
    assert_eq!(events.len(), 4, "{events:?}");
    assert!(
        events
            .iter()
            .all(|e| e["session"].is_null() && e["kind"] != "session_opened")
    );
    assert_eq!(world.gateway.session_count(), 0);
    world.gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_must_match_the_body_and_are_checked_before_policy() {
    let world = World::new(vec![spec("everything", stdio_everything())]);
    let client = world.client(Some(world.reader_token()));
    let call = envelope(json!({"name": "get-env", "arguments": {}}));

    // A policy that trusted the header would see `echo` (granted); the body says `get-env`.
    let reply = modern(
        &client,
        "/mcp/everything",
        "tools/call",
        call.clone(),
        &[("mcp-name", "echo")],
    )
    .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.raw);
    assert_eq!(reply.body["error"]["code"], -32020);
    let reply = modern(
        &client,
        "/mcp/everything",
        "tools/call",
        call.clone(),
        &[("mcp-method", "tools/list")],
    )
    .await;
    assert_eq!(reply.body["error"]["code"], -32020, "{}", reply.raw);
    // A base64-wrapped header value is decoded before comparing.
    let reply = modern(
        &client,
        "/mcp/everything",
        "tools/call",
        call.clone(),
        &[("mcp-name", "=?base64?Z2V0LWVudg==?=")],
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.raw);
    assert_eq!(
        reply.body["result"]["isError"], true,
        "get-env is not granted: {}",
        reply.raw
    );

    // The envelope is required.
    let reply = modern(&client, "/mcp/everything", "tools/list", json!({}), &[]).await;
    assert_eq!(
        (reply.status, reply.body["error"]["code"].as_i64()),
        (StatusCode::BAD_REQUEST, Some(-32602))
    );
    // An unknown revision is refused with every supported one.
    let mut params = envelope(json!({}));
    params["_meta"]["io.modelcontextprotocol/protocolVersion"] = json!("2099-01-01");
    let reply = modern(
        &client,
        "/mcp/everything",
        "tools/list",
        params,
        &[("mcp-protocol-version", "2099-01-01")],
    )
    .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.raw);
    assert_eq!(reply.body["error"]["code"], -32022);
    assert_eq!(reply.body["error"]["data"]["requested"], "2099-01-01");
    // Methods this revision does not have: 404.
    for method in ["ping", "no/such"] {
        let reply = modern(&client, "/mcp/everything", method, envelope(json!({})), &[]).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{method}: {}", reply.raw);
        assert_eq!(reply.body["error"]["code"], -32601);
    }
    // Only the one call with matching headers was decided.
    let decisions = world.events().await.iter().filter(|e| e["kind"] == "decision").count();
    assert_eq!(decisions, 1);
    world.gateway.shutdown().await;
}
