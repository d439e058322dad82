//! Progress: a `tools/call` with `params._meta.progressToken` from a client that accepts SSE is
//! answered with an event stream carrying server-everything's own progress notifications, under the
//! client's token, then the response (or with plain JSON when it is answered before any progress);
//! over stdio and over Streamable HTTP, for concurrent calls that chose the same token, and on the
//! aggregated endpoint.

use axum::http::StatusCode;
use serde_json::{Value, json};
use warden_core::Transport;

use crate::support::{HttpEverything, InProcess, Reply, World, spec, stdio_everything, text};

/// The JSON-RPC messages of an SSE body, in order.
fn events(reply: &Reply) -> Vec<Value> {
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.raw);
    assert_eq!(
        reply.headers["content-type"], "text/event-stream",
        "a call asking for progress is streamed: {}",
        reply.raw
    );
    reply
        .raw
        .split("\n\n")
        .filter(|event| !event.trim().is_empty())
        .map(|event| {
            let data: Vec<&str> = event.lines().filter_map(|line| line.strip_prefix("data: ")).collect();
            assert!(event.lines().any(|line| line == "event: message"), "{event}");
            serde_json::from_str(&data.concat()).unwrap_or_else(|e| panic!("{e}: {event}"))
        })
        .collect()
}

async fn long_operation(client: &InProcess, path: &str, tool: &str, id: i64, token: Value, steps: u64) -> Reply {
    let params = json!({
        "name": tool,
        "arguments": {"duration": 1, "steps": steps},
        "_meta": {"progressToken": token},
    });
    client.rpc(path, id, "tools/call", params).await
}

/// Checks a streamed answer: `steps` progress notifications under `token`, counting up, then the
/// response to `id`; the token the upstream saw never shows.
fn check_progress(reply: &Reply, id: i64, token: &Value, steps: u64) {
    let events = events(reply);
    let (response, progress) = events.split_last().unwrap();
    assert_eq!(response["id"], id, "the response comes last: {}", reply.raw);
    assert!(
        text(&response["result"]).starts_with("Long running operation completed"),
        "{}",
        reply.raw
    );
    let counted: Vec<u64> = progress
        .iter()
        .map(|event| {
            assert_eq!(event["method"], "notifications/progress", "{event}");
            assert_eq!(event["params"]["progressToken"], *token, "{event}");
            assert_eq!(event["params"]["total"], steps, "{event}");
            event["params"]["progress"].as_u64().unwrap()
        })
        .collect();
    assert_eq!(counted, (1..=steps).collect::<Vec<_>>(), "{}", reply.raw);
    assert!(
        !reply.raw.contains("warden-"),
        "the upstream's token stays inside: {}",
        reply.raw
    );
}

async fn relays_progress_from(transport: Transport) {
    let world = World::new(vec![spec("web", transport)]);
    let mut first = world.client(Some(world.reader_token()));
    first.open("/mcp/web").await;
    let mut second = world.client(Some(world.reader_token()));
    second.open("/mcp/web").await;

    // Two sessions run calls at once under the same token: each sees its own progress only.
    let token = json!("progress-1");
    let tool = "trigger-long-running-operation";
    let (a, b) = tokio::join!(
        long_operation(&first, "/mcp/web", tool, 11, token.clone(), 2),
        long_operation(&second, "/mcp/web", tool, 12, token.clone(), 4),
    );
    check_progress(&a, 11, &token, 2);
    check_progress(&b, 12, &token, 4);

    // A numeric token comes back as a number.
    let reply = long_operation(&first, "/mcp/web", tool, 13, json!(7), 1).await;
    check_progress(&reply, 13, &json!(7), 1);

    // Without a token the answer is plain JSON, as before.
    let plain = first.call("/mcp/web", tool, json!({"duration": 0.2, "steps": 1})).await;
    assert_eq!(plain.headers["content-type"], "application/json");
    assert!(text(&plain.body["result"]).starts_with("Long running operation completed"));

    // A call answered before any progress (here denied, so never forwarded) gets plain JSON.
    let denied = first
        .rpc(
            "/mcp/web",
            14,
            "tools/call",
            json!({"name": "echo", "arguments": {"message": "a secret"}, "_meta": {"progressToken": "p"}}),
        )
        .await;
    assert_eq!(denied.headers["content-type"], "application/json", "{}", denied.raw);
    assert_eq!(denied.body["id"], 14, "{}", denied.raw);
    assert_eq!(denied.body["result"]["isError"], true, "{}", denied.raw);

    // Each streamed call was decided and its outcome recorded, like any other.
    let calls: Vec<(String, String)> = world
        .events()
        .await
        .iter()
        .filter(|e| e["tool"] == tool || e["tool"] == "echo")
        .filter_map(|e| {
            let kind = e["kind"].as_str()?;
            let what = e["decision"].as_str().or_else(|| e["status"].as_str())?;
            Some((kind.to_owned(), what.to_owned()))
        })
        .collect();
    let count = |kind: &str, what: &str| calls.iter().filter(|c| c.0 == kind && c.1 == what).count();
    assert_eq!(count("decision", "allow"), 4, "{calls:?}");
    assert_eq!(count("outcome", "ok"), 4, "{calls:?}");
    assert_eq!(count("decision", "deny"), 1, "{calls:?}");
    assert_eq!(count("outcome", "denied"), 1, "{calls:?}");
    world.gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_is_relayed_from_a_stdio_upstream() {
    relays_progress_from(stdio_everything()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_is_relayed_from_an_http_upstream() {
    let http = HttpEverything::start().await;
    relays_progress_from(http.transport()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_is_relayed_on_the_aggregated_endpoint() {
    let http = HttpEverything::start().await;
    let world = World::new(vec![spec("web", http.transport())]);
    let mut client = world.client(Some(world.reader_token()));
    client.open("/mcp").await;
    let token = json!("agg");
    let reply = long_operation(
        &client,
        "/mcp",
        "web__trigger-long-running-operation",
        21,
        token.clone(),
        3,
    )
    .await;
    check_progress(&reply, 21, &token, 3);
    world.gateway.shutdown().await;
}
