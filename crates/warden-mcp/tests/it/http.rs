//! Streamable HTTP: server-everything (which always answers with SSE) for the handshake, tools, many
//! calls at once, notifications and a lost session; the recording fake for JSON answers, the headers
//! that actually arrive, pagination, a 404 for an expired session and the final DELETE.

use std::time::Duration;

use serde_json::json;
use warden_core::Transport;
use warden_mcp::{Upstream, UpstreamCredentials, UpstreamError, UpstreamStatus};

use crate::support::{FakeUpstream, HttpEverything, config, name, text};

async fn connect(transport: &Transport) -> Upstream {
    Upstream::connect(&name("everything"), transport, UpstreamCredentials::default(), config())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initializes_lists_and_calls_tools() {
    let server = HttpEverything::start().await;
    let upstream = connect(&server.transport()).await;
    let init = upstream.initialize_result();
    assert_eq!(init.protocol_version, "2025-11-25");
    assert_eq!(init.server_info.name, "mcp-servers/everything");
    assert_eq!(upstream.pid(), None);

    let tools = upstream.list_tools().await.unwrap();
    let names: Vec<&str> = tools.iter().map(|tool| tool.name.as_str()).collect();
    assert!(names.len() >= 10, "{names:?}");
    assert!(names.contains(&"echo") && names.contains(&"get-sum"), "{names:?}");

    let result = upstream
        .call_tool("echo", json!({"message": "via http"}))
        .await
        .unwrap();
    assert_eq!(text(&result), "Echo: via http");
    let result = upstream.call_tool("get-sum", json!({"a": 40, "b": 2})).await.unwrap();
    assert_eq!(text(&result), "The sum of 40 and 2 is 42.");

    let result = upstream.call_tool("no-such-tool", json!({})).await.unwrap();
    assert_eq!(result["isError"], true, "{result}");
    assert!(text(&result).contains("no-such-tool"), "{result}");

    // Progress notifications arrive on the SSE stream ahead of the response.
    let mut notifications = upstream.subscribe();
    let params = json!({
        "name": "trigger-long-running-operation",
        "arguments": {"duration": 0.2, "steps": 2},
        "_meta": {"progressToken": "p-1"},
    });
    let result = upstream.request("tools/call", Some(params)).await.unwrap();
    assert!(
        text(&result).starts_with("Long running operation completed"),
        "{result}"
    );
    let mut progress = Vec::new();
    while let Ok(notification) = notifications.try_recv() {
        if notification.method == "notifications/progress" {
            progress.push(notification.params.unwrap()["progress"].clone());
        }
    }
    assert_eq!(progress, [json!(1), json!(2)]);

    upstream.close().await.unwrap();
    assert_eq!(upstream.status(), UpstreamStatus::Closed);
    let err = upstream
        .call_tool("echo", json!({"message": "late"}))
        .await
        .unwrap_err();
    assert!(matches!(err, UpstreamError::Closed { .. }), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multiplexes_fifty_concurrent_calls() {
    let server = HttpEverything::start().await;
    let upstream = connect(&server.transport()).await;
    let calls: Vec<_> = (0..50i64)
        .map(|n| {
            let upstream = upstream.clone();
            tokio::spawn(async move {
                let result = upstream.call_tool("get-sum", json!({"a": n, "b": -7})).await.unwrap();
                (n, text(&result).to_owned())
            })
        })
        .collect();
    for call in calls {
        let (n, text) = call.await.unwrap();
        assert_eq!(text, format!("The sum of {n} and -7 is {}.", n - 7));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_server_gets_a_new_session() {
    let mut server = HttpEverything::start().await;
    let upstream = connect(&server.transport()).await;
    assert_eq!(
        text(&upstream.call_tool("echo", json!({"message": "one"})).await.unwrap()),
        "Echo: one"
    );
    let first_init = upstream.initialize_result();

    // The new process knows no session; server-everything says so with a 400 (the specification says
    // 404), and the client initializes again and retries once.
    server.restart().await;
    let result = upstream.call_tool("echo", json!({"message": "two"})).await.unwrap();
    assert_eq!(text(&result), "Echo: two");
    assert!(
        !std::sync::Arc::ptr_eq(&first_init, &upstream.initialize_result()),
        "no new initialize"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_and_session_headers_reach_the_server() {
    let fake = FakeUpstream::start().await;
    let credentials = UpstreamCredentials {
        headers: [
            ("Authorization".to_owned(), "Bearer up-secret".to_owned()),
            ("X-Api-Key".to_owned(), "key-1".to_owned()),
        ]
        .into(),
        env: [("IGNORED_FOR_HTTP".to_owned(), "x".to_owned())].into(),
    };
    let transport = Transport::Http { url: fake.url.clone() };
    let upstream = Upstream::connect(&name("fake"), &transport, credentials, config())
        .await
        .unwrap();
    assert_eq!(upstream.initialize_result().server_info.name, "fake");

    // Pagination is followed to the last page.
    let tools = upstream.list_tools().await.unwrap();
    let names: Vec<&str> = tools.iter().map(|tool| tool.name.as_str()).collect();
    assert_eq!(names, ["first", "second"]);
    assert_eq!(tools[1].description.as_deref(), Some("page two"));

    let result = upstream.call_tool("first", json!({})).await.unwrap();
    assert_eq!(text(&result), r#"called "first""#);

    // The server forgets the session: 404, a new `initialize`, and the call is retried once.
    fake.expire_session();
    let result = upstream.call_tool("second", json!({"x": 1})).await.unwrap();
    assert_eq!(text(&result), r#"called "second""#);

    upstream.close().await.unwrap();

    let requests = fake.requests();
    let summary: Vec<String> = requests
        .iter()
        .map(|request| {
            let session = request.headers.get("mcp-session-id").map_or("-", String::as_str);
            let version = request.headers.get("mcp-protocol-version").map_or("-", String::as_str);
            format!(
                "{} {} session={session} version={version}",
                request.method,
                request.rpc_method()
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            "POST initialize session=- version=-",
            "POST notifications/initialized session=session-1 version=2025-11-25",
            "POST tools/list session=session-1 version=2025-11-25",
            "POST tools/list session=session-1 version=2025-11-25",
            "POST tools/call session=session-1 version=2025-11-25",
            "POST tools/call session=session-1 version=2025-11-25",
            "POST initialize session=- version=-",
            "POST notifications/initialized session=session-2 version=2025-11-25",
            "POST tools/call session=session-2 version=2025-11-25",
            "DELETE  session=session-2 version=2025-11-25",
        ]
    );
    for request in &requests {
        assert_eq!(request.headers["authorization"], "Bearer up-secret", "{request:?}");
        assert_eq!(request.headers["x-api-key"], "key-1", "{request:?}");
        assert!(!request.headers.contains_key("ignored_for_http"));
        if request.method == "POST" {
            assert_eq!(request.headers["accept"], "application/json, text/event-stream");
            assert_eq!(request.headers["content-type"], "application/json");
        }
    }
    assert_eq!(
        requests[2].body["params"],
        serde_json::Value::Null,
        "the first page is asked for without a cursor"
    );
    assert_eq!(requests[3].body["params"], json!({"cursor": "page-2"}));
    assert_eq!(
        requests[5].body["params"],
        json!({"name": "second", "arguments": {"x": 1}})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_is_prompt() {
    let server = HttpEverything::start().await;
    let mut config = config();
    config.call_timeout = Duration::from_millis(500);
    let upstream = Upstream::connect(
        &name("everything"),
        &server.transport(),
        UpstreamCredentials::default(),
        config,
    )
    .await
    .unwrap();
    let started = std::time::Instant::now();
    let err = upstream
        .call_tool("trigger-long-running-operation", json!({"duration": 10, "steps": 1}))
        .await
        .unwrap_err();
    assert!(matches!(err, UpstreamError::Timeout { .. }), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "took {:?}",
        started.elapsed()
    );
    let result = upstream
        .call_tool("echo", json!({"message": "still here"}))
        .await
        .unwrap();
    assert_eq!(text(&result), "Echo: still here");
}
