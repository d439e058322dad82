//! Suspension and revocation cut open sessions: a revoked agent's next request on its session fails
//! and the session is gone; `cut_sessions_of` ends an agent's sessions and its subagents' at once.

use axum::http::StatusCode;
use serde_json::json;

use crate::support::{World, spec, stdio_everything, text};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_revoked_mid_session_is_cut_off() {
    let world = World::new(vec![spec("everything", stdio_everything())]);
    let mut reader = world.client(Some(world.reader_token()));
    reader.open("/mcp/everything").await;
    let mut helper = world.client(Some(world.delegated_token()));
    helper.open("/mcp/everything").await;
    let mut outsider = world.client(Some(world.token(&world.agents.outsider, "")));
    outsider.open("/mcp/everything").await;
    let reply = reader
        .call("/mcp/everything", "echo", json!({"message": "before"}))
        .await;
    assert_eq!(text(&reply.body["result"]), "Echo: before", "{}", reply.raw);
    assert_eq!(world.gateway.session_count(), 3);

    world.control.revoke(&world.agents.reader.id);

    // The very next call fails with 401 and the session is ended and recorded as such.
    let reply = reader
        .call("/mcp/everything", "echo", json!({"message": "after"}))
        .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.raw);
    assert!(
        reply.headers["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("invalid_token"),
        "{:?}",
        reply.headers
    );
    let reason = reply.body["error_description"].as_str().unwrap();
    assert!(reason.contains("is revoked"), "{reason}");
    // The subagent falls with its parent.
    let reply = helper
        .call("/mcp/everything", "echo", json!({"message": "after"}))
        .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.raw);
    assert_eq!(world.gateway.session_count(), 1, "only the outsider's session is left");
    let closed: Vec<String> = world
        .events()
        .await
        .iter()
        .filter(|e| e["kind"] == "session_closed")
        .map(|e| format!("{} {}", e["agent"].as_str().unwrap(), e["reason"].as_str().unwrap()))
        .collect();
    assert_eq!(
        closed,
        [
            format!("{} invalidated", world.agents.reader.id),
            format!("{} invalidated", world.agents.helper.id)
        ]
    );
    // The revoked call never reached a decision.
    let decisions = world.events().await.iter().filter(|e| e["kind"] == "decision").count();
    assert_eq!(decisions, 1);
    // Others are unaffected.
    let pong = outsider.rpc("/mcp/everything", 9, "ping", json!({})).await;
    assert_eq!(pong.status, StatusCode::OK, "{}", pong.raw);
    world.gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cutting_an_agent_ends_its_sessions_and_its_subagents() {
    let world = World::new(vec![spec("everything", stdio_everything())]);
    let mut reader = world.client(Some(world.reader_token()));
    reader.open("/mcp/everything").await;
    let mut reader_again = world.client(Some(world.reader_token()));
    reader_again.open("/mcp").await;
    let mut helper = world.client(Some(world.delegated_token()));
    helper.open("/mcp/everything").await;
    let mut outsider = world.client(Some(world.token(&world.agents.outsider, "")));
    outsider.open("/mcp/everything").await;
    assert_eq!(world.gateway.session_count(), 4);

    world.gateway.cut_sessions_of(&world.agents.reader.id).await;
    assert_eq!(world.gateway.session_count(), 1);
    for (client, path) in [
        (&reader, "/mcp/everything"),
        (&reader_again, "/mcp"),
        (&helper, "/mcp/everything"),
    ] {
        let reply = client.rpc(path, 5, "ping", json!({})).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{}", reply.raw);
    }
    let cut = world
        .events()
        .await
        .iter()
        .filter(|e| e["kind"] == "session_closed" && e["reason"] == "cut")
        .count();
    assert_eq!(cut, 3);
    let pong = outsider.rpc("/mcp/everything", 9, "ping", json!({})).await;
    assert_eq!(pong.status, StatusCode::OK, "{}", pong.raw);
    world.gateway.shutdown().await;
}
