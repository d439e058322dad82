//! Listing and calling through `/mcp/everything` (server-everything over stdio), in process: only
//! granted tools are listed, allowed calls are forwarded, denied ones come back as tool errors with
//! the reason and policy ids, and every call leaves a decision event before its outcome event.

use std::sync::atomic::Ordering;

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::support::{GUARDRAIL_ID, World, spec, stdio_everything, text};

fn world() -> World {
    World::new(vec![spec("everything", stdio_everything())])
}

/// The decision and outcome events, in the order of the decisions, each outcome right after its
/// decision. Outcomes are recorded off the answer's path, so one may land after the next call's
/// decision; every outcome must belong to a decision.
async fn call_events(world: &World) -> Vec<Value> {
    let (decisions, mut outcomes): (Vec<Value>, Vec<Value>) = world
        .events()
        .await
        .into_iter()
        .filter(|e| e["kind"] == "decision" || e["kind"] == "outcome")
        .partition(|e| e["kind"] == "decision");
    let mut ordered = Vec::new();
    for decision in decisions {
        let outcome = outcomes
            .iter()
            .position(|o| o["call_id"] == decision["call_id"])
            .map(|i| outcomes.remove(i));
        ordered.push(decision);
        ordered.extend(outcome);
    }
    assert!(outcomes.is_empty(), "outcomes without a decision: {outcomes:?}");
    ordered
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_granted_tools_forwards_allowed_calls_and_denies_the_rest() {
    let world = world();
    let mut client = world.client(Some(world.reader_token()));
    client.open("/mcp/everything").await;

    // server-everything offers 13 tools; the reader's scope covers two. The guardrail on echo
    // depends on the arguments, so echo stays listed.
    let mut names = client.tool_names("/mcp/everything").await;
    names.sort();
    assert_eq!(names, ["echo", "get-sum"]);
    // Tools are passed on as the upstream describes them.
    let listed = client.rpc("/mcp/everything", 3, "tools/list", json!({})).await;
    let echo = &listed.body["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "echo")
        .unwrap()
        .clone();
    assert_eq!(echo["inputSchema"]["properties"]["message"]["type"], "string");
    assert!(echo["description"].is_string());

    // Allowed: forwarded under its own name.
    let reply = client
        .call("/mcp/everything", "echo", json!({"message": "hello"}))
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(text(&reply.body["result"]), "Echo: hello", "{}", reply.raw);
    let reply = client.call("/mcp/everything", "get-sum", json!({"a": 2, "b": 3})).await;
    assert_eq!(text(&reply.body["result"]), "The sum of 2 and 3 is 5.", "{}", reply.raw);

    // Denied by the guardrail, on the real arguments: a tool error naming reason and policy.
    let reply = client
        .call("/mcp/everything", "echo", json!({"message": "the secret is 42"}))
        .await;
    let result = &reply.body["result"];
    assert_eq!(result["isError"], true, "{}", reply.raw);
    assert_eq!(
        text(result),
        format!(
            "Denied by Warden: denied by guardrail `{GUARDRAIL_ID}`: echo must not repeat secrets (policies: {GUARDRAIL_ID})"
        )
    );

    // Denied for want of a grant: hidden from the list, and refused with the reason.
    let reply = client.call("/mcp/everything", "get-env", json!({})).await;
    let result = &reply.body["result"];
    assert_eq!(result["isError"], true, "{}", reply.raw);
    let denial = text(result);
    assert!(
        denial.starts_with("Denied by Warden: no scope held by agent"),
        "{denial}"
    );
    assert!(
        denial.contains("`everything-read`") && denial.ends_with("(policies: none)"),
        "{denial}"
    );

    // A tool the upstream does not have: a protocol error, and nothing is decided.
    let reply = client.call("/mcp/everything", "no-such-tool", json!({})).await;
    assert_eq!(reply.body["error"]["code"], -32602, "{}", reply.raw);
    assert_eq!(reply.body["error"]["message"], "Unknown tool: no-such-tool");

    // Four calls decided, each decision durable before its outcome.
    let events = call_events(&world).await;
    let summary: Vec<(String, String, String)> = events
        .iter()
        .map(|e| {
            let what = e.get("decision").or_else(|| e.get("status")).unwrap();
            (
                e["kind"].as_str().unwrap().to_owned(),
                e["tool"].as_str().unwrap().to_owned(),
                what.as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected = [
        ("decision", "echo", "allow"),
        ("outcome", "echo", "ok"),
        ("decision", "get-sum", "allow"),
        ("outcome", "get-sum", "ok"),
        ("decision", "echo", "deny"),
        ("outcome", "echo", "denied"),
        ("decision", "get-env", "deny"),
        ("outcome", "get-env", "denied"),
        // A call to a tool the server does not offer is refused and recorded all the same.
        ("decision", "no-such-tool", "deny"),
        ("outcome", "no-such-tool", "denied"),
    ]
    .map(|(a, b, c)| (a.to_owned(), b.to_owned(), c.to_owned()));
    assert_eq!(summary, expected);
    for pair in events.chunks(2) {
        let (decision, outcome) = (&pair[0], &pair[1]);
        assert_eq!(decision["call_id"], outcome["call_id"]);
        assert!(decision["at_ms"].as_u64() <= outcome["at_ms"].as_u64());
        assert_eq!(decision["agent"], world.agents.reader.id.as_str());
        assert_eq!(decision["chain"], json!([world.agents.reader.id.as_str()]));
        assert_eq!(decision["server"], "everything");
        assert_eq!(decision["session"], client.session.as_deref().unwrap());
    }
    assert_eq!(
        events[0]["policy_ids"],
        json!([format!("grant/everything-read/{}", world.agents.reader.id)])
    );
    assert_eq!(events[4]["policy_ids"], json!([GUARDRAIL_ID]));
    assert!(
        events[4]["reason"]
            .as_str()
            .unwrap()
            .contains("echo must not repeat secrets")
    );
    // No token and no arguments in the audit trail.
    let raw = std::fs::read_to_string(&world.audit.path).unwrap();
    assert!(!raw.contains(client.token.as_deref().unwrap()));
    assert!(!raw.contains("the secret is 42"));
    world.gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subagent_acts_and_is_recorded_as_itself() {
    let world = world();
    let mut helper = world.client(Some(world.delegated_token()));
    helper.open("/mcp/everything").await;
    let reply = helper
        .call("/mcp/everything", "echo", json!({"message": "from the helper"}))
        .await;
    assert_eq!(text(&reply.body["result"]), "Echo: from the helper", "{}", reply.raw);

    let events = call_events(&world).await;
    assert_eq!(events.len(), 2);
    let (reader, sub) = (world.agents.reader.id.as_str(), world.agents.helper.id.as_str());
    for event in &events {
        assert_eq!(event["agent"], sub, "{event}");
        assert_eq!(event["chain"], json!([reader, sub]), "{event}");
    }
    assert_eq!(events[0]["token_id"], "jti-helper");
    assert_eq!(events[0]["policy_ids"], json!([format!("grant/everything-read/{sub}")]));
    let opened = &world.events().await[0];
    assert_eq!(
        (opened["kind"].as_str(), opened["agent"].as_str()),
        (Some("session_opened"), Some(sub))
    );
    world.gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_without_grants_sees_nothing_and_a_narrow_token_narrows() {
    let world = world();
    let mut outsider = world.client(Some(world.token(&world.agents.outsider, "")));
    outsider.open("/mcp/everything").await;
    assert!(outsider.tool_names("/mcp/everything").await.is_empty());
    let reply = outsider.call("/mcp/everything", "echo", json!({"message": "hi"})).await;
    assert_eq!(reply.body["result"]["isError"], true, "{}", reply.raw);
    assert!(text(&reply.body["result"]).contains("holds no scopes"), "{}", reply.raw);

    // The reader's grant covers echo, but a token without the scope does not.
    let mut narrow = world.client(Some(world.token(&world.agents.reader, "")));
    narrow.open("/mcp/everything").await;
    assert!(narrow.tool_names("/mcp/everything").await.is_empty());
    let reply = narrow.call("/mcp/everything", "echo", json!({"message": "hi"})).await;
    assert!(
        text(&reply.body["result"]).contains("the token carries no scopes, so it covers no tool"),
        "{}",
        reply.raw
    );
    world.gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_whose_decision_cannot_be_recorded_is_not_forwarded() {
    let world = world();
    let mut client = world.client(Some(world.reader_token()));
    client.open("/mcp/everything").await;
    // Connect the upstream first, so what follows is only about the audit.
    assert_eq!(client.tool_names("/mcp/everything").await.len(), 2);
    world.audit.fail.store(true, Ordering::SeqCst);
    let reply = client
        .call("/mcp/everything", "echo", json!({"message": "unrecorded"}))
        .await;
    let result = &reply.body["result"];
    assert_eq!(result["isError"], true, "{}", reply.raw);
    assert_eq!(
        text(result),
        "Warden could not record this call in its audit trail, so it was not forwarded."
    );
    world.audit.fail.store(false, Ordering::SeqCst);
    assert!(call_events(&world).await.is_empty());
    world.gateway.shutdown().await;
}
