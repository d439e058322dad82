//! Upstream trouble: a killed stdio upstream is restarted and calls resume; a slow upstream times
//! out without holding up anyone else; an unreachable one is reported as a tool error; a changed
//! registration reconnects.

use std::time::{Duration, Instant};

use serde_json::json;
use warden_core::Transport;

use crate::support::{FakeUpstream, HttpEverything, World, name, process_alive, spec, stdio_everything, text};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_stdio_upstream_comes_back() {
    let world = World::new(vec![spec("everything", stdio_everything())]);
    assert!(
        world.gateway.upstream(&name("everything")).is_none(),
        "connected lazily"
    );
    let mut client = world.client(Some(world.reader_token()));
    client.open("/mcp/everything").await;
    let reply = client.call("/mcp/everything", "echo", json!({"message": "one"})).await;
    assert_eq!(text(&reply.body["result"]), "Echo: one", "{}", reply.raw);

    let upstream = world.gateway.upstream(&name("everything")).unwrap();
    let pid = upstream.pid().unwrap();
    std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while process_alive(pid) {
        assert!(Instant::now() < deadline, "{pid} survived kill -9");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Calls fail as tool errors while the child restarts, then succeed again on a new child.
    let mut failures = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let reply = client.call("/mcp/everything", "echo", json!({"message": "two"})).await;
        let result = &reply.body["result"];
        if result["isError"] != true {
            assert_eq!(text(result), "Echo: two", "{}", reply.raw);
            break;
        }
        let message = text(result);
        assert!(
            message
                .starts_with("Warden allowed the call, but the MCP server `everything` failed: upstream `everything`"),
            "{message}"
        );
        failures += 1;
        assert!(Instant::now() < deadline, "the upstream did not come back: {message}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let new_pid = upstream.pid().unwrap();
    assert_ne!(new_pid, pid);

    // Every failed call was decided, recorded and has an error outcome.
    let outcomes: Vec<String> = world
        .events()
        .await
        .iter()
        .filter(|e| e["kind"] == "outcome")
        .map(|e| e["status"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(outcomes.len(), failures + 2, "{outcomes:?}");
    assert_eq!(outcomes.first().map(String::as_str), Some("ok"));
    assert_eq!(outcomes.last().map(String::as_str), Some("ok"));
    assert!(
        outcomes[1..outcomes.len() - 1].iter().all(|s| s == "error"),
        "{outcomes:?}"
    );

    world.gateway.shutdown().await;
    assert!(!process_alive(new_pid), "shutdown closes the child");
    let reply = client.rpc("/mcp/everything", 9, "ping", json!({})).await;
    assert_eq!(
        reply.status,
        axum::http::StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        reply.raw
    );
    assert_eq!(world.gateway.session_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_upstream_times_out_without_blocking_others() {
    let http = HttpEverything::start().await;
    let world = World::with_config(
        vec![spec("everything", stdio_everything()), spec("web", http.transport())],
        |config| config.upstream.call_timeout = Duration::from_secs(8),
    );
    let mut slow = world.client(Some(world.reader_token()));
    slow.open("/mcp").await;
    let mut fast = world.client(Some(world.delegated_token()));
    fast.open("/mcp").await;
    // Connect both upstreams first.
    assert_eq!(fast.tool_names("/mcp").await.len(), 5);

    let long = tokio::spawn(async move {
        let started = Instant::now();
        let reply = slow
            .call(
                "/mcp",
                "web__trigger-long-running-operation",
                json!({"duration": 30, "steps": 3}),
            )
            .await;
        (reply.body, started.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Meanwhile another agent's calls, on both upstreams, go straight through.
    for tool in ["everything__echo", "web__echo"] {
        let started = Instant::now();
        let reply = fast.call("/mcp", tool, json!({"message": "quick"})).await;
        assert_eq!(text(&reply.body["result"]), "Echo: quick", "{}", reply.raw);
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "{tool} took {:?}",
            started.elapsed()
        );
    }
    let (body, took) = long.await.unwrap();
    assert!(
        took >= Duration::from_secs(8) && took < Duration::from_secs(20),
        "{took:?}"
    );
    assert_eq!(body["result"]["isError"], true, "{body}");
    assert!(
        text(&body["result"]).contains("did not answer `tools/call` within 8000ms"),
        "{body}"
    );
    let timeout = world
        .events()
        .await
        .into_iter()
        .find(|e| e["kind"] == "outcome" && e["status"] == "timeout")
        .unwrap();
    assert_eq!(timeout["tool"], "trigger-long-running-operation");
    assert!(timeout["duration_ms"].as_u64().unwrap() >= 8000);
    world.gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_and_changed_upstreams() {
    let dead = Transport::Http {
        url: "http://127.0.0.1:9/mcp".to_owned(),
    };
    let world = World::new(vec![spec("everything", stdio_everything()), spec("web", dead)]);
    let mut client = world.client(Some(world.reader_token()));
    client.open("/mcp").await;
    // The dead server is left out of the aggregated list.
    let mut names = client.tool_names("/mcp").await;
    names.sort();
    assert_eq!(names, ["everything__echo", "everything__get-sum"]);
    // A call to it is still decided, then reported as the server's failure.
    let reply = client.call("/mcp", "web__echo", json!({"message": "hi"})).await;
    let result = &reply.body["result"];
    assert_eq!(result["isError"], true, "{}", reply.raw);
    assert!(text(result).contains("cannot reach upstream `web`"), "{}", reply.raw);
    let outcome = world
        .events()
        .await
        .into_iter()
        .rfind(|e| e["kind"] == "outcome")
        .unwrap();
    assert_eq!(outcome["status"], "error");

    // The server is re-registered at a live address: the gateway reconnects.
    let http = HttpEverything::start().await;
    world.control.set_servers(vec![
        spec("everything", stdio_everything()),
        spec("web", http.transport()),
    ]);
    let reply = client.call("/mcp", "web__echo", json!({"message": "back"})).await;
    assert_eq!(text(&reply.body["result"]), "Echo: back", "{}", reply.raw);
    world.gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstreams_get_the_gateways_credentials_never_the_agents_token() {
    let fake = FakeUpstream::start().await;
    let mut web = spec("web", Transport::Http { url: fake.url.clone() });
    web.credentials.headers = [("Authorization".to_owned(), "Bearer upstream-secret".to_owned())].into();
    let world = World::new(vec![web]);
    // The reader's scope covers `web/echo` but not `web/whoami`.
    let token = world.reader_token();
    let mut client = world.client(Some(token.clone()));
    client.open("/mcp/web").await;
    assert_eq!(client.tool_names("/mcp/web").await, ["echo"]);
    let reply = client.call("/mcp/web", "echo", json!({"message": "hi"})).await;
    assert_eq!(text(&reply.body["result"]), "you are the gateway", "{}", reply.raw);
    let reply = client.call("/mcp/web", "whoami", json!({})).await;
    assert_eq!(reply.body["result"]["isError"], true, "{}", reply.raw);

    let requests = fake.requests();
    let methods: Vec<&str> = requests
        .iter()
        .map(|r| r.body["method"].as_str().unwrap_or(&r.method))
        .collect();
    assert_eq!(
        methods,
        ["initialize", "notifications/initialized", "tools/list", "tools/call"],
        "the denied call is not forwarded"
    );
    assert_eq!(
        requests[3].body["params"],
        json!({"name": "echo", "arguments": {"message": "hi"}})
    );
    for request in &requests {
        let authorization: Vec<&str> = request
            .headers
            .iter()
            .filter(|(k, _)| k == "authorization")
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(authorization, ["Bearer upstream-secret"], "{request:?}");
        let everything = format!("{:?}", request);
        assert!(
            !everything.contains(&token),
            "the agent's token reached the upstream: {everything}"
        );
    }
    world.gateway.shutdown().await;
}
