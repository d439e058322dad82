//! The aggregated endpoint `/mcp`: every server the agent may use behind one endpoint, tools named
//! `<server>__<tool>`, servers with nothing allowed left out, calls routed by the prefix and decided
//! and recorded under the upstream's own tool name.

use serde_json::json;

use crate::support::{HttpEverything, World, spec, stdio_everything, text};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_endpoint_for_every_permitted_server() {
    let http = HttpEverything::start().await;
    let world = World::new(vec![
        spec("everything", stdio_everything()),
        spec("web", http.transport()),
        // Same upstream, but no scope covers any of its tools.
        spec("hidden", http.transport()),
    ]);
    let mut client = world.client(Some(world.reader_token()));
    client.open("/mcp").await;
    let mut names = client.tool_names("/mcp").await;
    names.sort();
    assert_eq!(
        names,
        [
            "everything__echo",
            "everything__get-sum",
            "web__echo",
            "web__get-sum",
            "web__trigger-long-running-operation"
        ]
    );

    let reply = client.call("/mcp", "web__get-sum", json!({"a": 20, "b": 22})).await;
    assert_eq!(
        text(&reply.body["result"]),
        "The sum of 20 and 22 is 42.",
        "{}",
        reply.raw
    );
    let reply = client
        .call("/mcp", "everything__echo", json!({"message": "stdio"}))
        .await;
    assert_eq!(text(&reply.body["result"]), "Echo: stdio", "{}", reply.raw);
    // The hidden server's tools exist but are denied, and the guardrail applies on every server.
    let reply = client.call("/mcp", "hidden__echo", json!({"message": "hi"})).await;
    assert_eq!(reply.body["result"]["isError"], true, "{}", reply.raw);
    assert!(
        text(&reply.body["result"]).contains("covers tool `hidden/echo`"),
        "{}",
        reply.raw
    );
    let reply = client.call("/mcp", "web__echo", json!({"message": "secret"})).await;
    assert!(
        text(&reply.body["result"]).starts_with("Denied by Warden: denied by guardrail"),
        "{}",
        reply.raw
    );
    // The separator must name a registered server and a tool it has.
    let reply = client.call("/mcp", "web__no-such-tool", json!({})).await;
    assert_eq!(reply.body["error"]["code"], -32602, "{}", reply.raw);

    let decided: Vec<String> = world
        .events()
        .await
        .iter()
        .filter(|e| e["kind"] == "decision")
        .map(|e| {
            format!(
                "{}/{} {}",
                e["server"].as_str().unwrap(),
                e["tool"].as_str().unwrap(),
                e["decision"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        decided,
        [
            "web/get-sum allow",
            "everything/echo allow",
            "hidden/echo deny",
            "web/echo deny",
            // Calls to tools the server does not offer are recorded as denies too.
            "web/no-such-tool deny"
        ]
    );

    // A server that goes away is left out of the list; the others still answer.
    world.control.set_servers(vec![spec("everything", stdio_everything())]);
    let mut names = client.tool_names("/mcp").await;
    names.sort();
    assert_eq!(names, ["everything__echo", "everything__get-sum"]);
    let reply = client.call("/mcp", "web__get-sum", json!({"a": 1, "b": 1})).await;
    assert_eq!(reply.body["error"]["code"], -32602, "{}", reply.raw);
    world.gateway.shutdown().await;
}
