//! server-everything as a stdio child: handshake, tools, credentials in the environment, many calls
//! at once, a killed child coming back, a slow call timing out while other upstreams answer, and
//! closing.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::json;
use warden_mcp::{Upstream, UpstreamConfig, UpstreamCredentials, UpstreamError, UpstreamStatus};

use crate::support::{HttpEverything, config, name, process_alive, stdio_everything, text};

async fn connect(config: UpstreamConfig) -> Upstream {
    let credentials = UpstreamCredentials {
        headers: BTreeMap::new(),
        env: [("EVERYTHING_API_KEY".to_owned(), "k-123".to_owned())].into(),
    };
    Upstream::connect(&name("everything"), &stdio_everything(), credentials, config)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initializes_lists_and_calls_tools() {
    let upstream = connect(config()).await;
    let init = upstream.initialize_result();
    assert_eq!(init.protocol_version, "2025-11-25");
    assert_eq!(init.server_info.name, "mcp-servers/everything");
    assert!(init.capabilities.contains_key("tools"), "{:?}", init.capabilities);
    assert_eq!(upstream.status(), UpstreamStatus::Ready);

    let tools = upstream.list_tools().await.unwrap();
    let names: Vec<&str> = tools.iter().map(|tool| tool.name.as_str()).collect();
    assert!(names.len() >= 10, "{names:?}");
    for expected in ["echo", "get-sum", "get-env", "trigger-long-running-operation"] {
        assert!(names.contains(&expected), "{expected} missing from {names:?}");
    }
    let echo = tools.iter().find(|tool| tool.name == "echo").unwrap();
    assert_eq!(echo.input_schema["properties"]["message"]["type"], "string");
    assert!(echo.description.is_some());

    let result = upstream.call_tool("echo", json!({"message": "hello"})).await.unwrap();
    assert_eq!(text(&result), "Echo: hello");
    let result = upstream.call_tool("get-sum", json!({"a": 2, "b": 3})).await.unwrap();
    assert_eq!(text(&result), "The sum of 2 and 3 is 5.");

    // server-everything reports an unknown tool as a tool error, not a protocol error.
    let result = upstream.call_tool("no-such-tool", json!({})).await.unwrap();
    assert_eq!(result["isError"], true, "{result}");
    assert!(text(&result).contains("no-such-tool"), "{result}");

    // A method it does not have is a JSON-RPC error, passed on as sent.
    let err = upstream.request("no/such/method", None).await.unwrap_err();
    let UpstreamError::Rpc { error, method, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!((error.code, method.as_str()), (-32601, "no/such/method"), "{err}");

    // The credential reaches the child; the test process's own environment does not.
    let env = upstream.call_tool("get-env", json!({})).await.unwrap();
    let env: serde_json::Value = serde_json::from_str(text(&env)).unwrap();
    assert_eq!(env["EVERYTHING_API_KEY"], "k-123");
    assert!(env["PATH"].is_string());
    assert!(
        std::env::var("CARGO_PKG_NAME").is_ok() && env.get("CARGO_PKG_NAME").is_none(),
        "{env}"
    );

    let pid = upstream.pid().unwrap();
    let started = Instant::now();
    upstream.close().await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(!process_alive(pid), "the child {pid} still runs");
    assert_eq!(upstream.status(), UpstreamStatus::Closed);
    let err = upstream
        .call_tool("echo", json!({"message": "late"}))
        .await
        .unwrap_err();
    assert!(matches!(err, UpstreamError::Closed { .. }), "{err:?}");
    assert_eq!(err.to_string(), "upstream `everything` is closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multiplexes_fifty_concurrent_calls() {
    let upstream = connect(config()).await;
    let calls: Vec<_> = (0..50i64)
        .map(|n| {
            let upstream = upstream.clone();
            tokio::spawn(async move {
                let result = upstream.call_tool("get-sum", json!({"a": n, "b": 1000})).await.unwrap();
                (n, text(&result).to_owned())
            })
        })
        .collect();
    for call in calls {
        let (n, text) = call.await.unwrap();
        assert_eq!(text, format!("The sum of {n} and 1000 is {}.", n + 1000));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_a_killed_child() {
    let mut config = config();
    config.restart.initial_delay = Duration::from_millis(1500);
    let upstream = connect(config).await;
    let first_pid = upstream.pid().unwrap();

    // A call in flight when the child dies fails at once with a clear error.
    let in_flight = {
        let upstream = upstream.clone();
        tokio::spawn(async move {
            let args = json!({"duration": 10, "steps": 1});
            upstream.call_tool("trigger-long-running-operation", args).await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let killed = Instant::now();
    let status = std::process::Command::new("kill")
        .args(["-9", &first_pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());

    let err = in_flight.await.unwrap().unwrap_err();
    assert!(killed.elapsed() < Duration::from_secs(2), "took {:?}", killed.elapsed());
    assert!(matches!(err, UpstreamError::Exited { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "upstream `everything` exited while `tools/call` was in flight"
    );

    // During the back-off, calls fail fast instead of waiting.
    while upstream.status() == UpstreamStatus::Ready {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(upstream.status(), UpstreamStatus::Restarting);
    let asked = Instant::now();
    let err = upstream
        .call_tool("echo", json!({"message": "too soon"}))
        .await
        .unwrap_err();
    assert!(
        asked.elapsed() < Duration::from_millis(100),
        "took {:?}",
        asked.elapsed()
    );
    let UpstreamError::Restarting { retry_in, .. } = &err else {
        panic!("{err:?}")
    };
    assert!(*retry_in > Duration::ZERO, "{err}");
    assert!(
        err.to_string().starts_with("upstream `everything` is restarting"),
        "{err}"
    );

    // After the back-off a new child answers.
    let deadline = Instant::now() + Duration::from_secs(20);
    let result = loop {
        match upstream.call_tool("echo", json!({"message": "back"})).await {
            Ok(result) => break result,
            Err(UpstreamError::Restarting { .. }) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(err) => panic!("{err:?}"),
        }
    };
    assert!(
        killed.elapsed() >= Duration::from_millis(1500),
        "restarted before the back-off ended"
    );
    assert_eq!(text(&result), "Echo: back");
    let second_pid = upstream.pid().unwrap();
    assert_ne!(first_pid, second_pid);
    assert!(process_alive(second_pid));
    assert_eq!(upstream.initialize_result().protocol_version, "2025-11-25");
    upstream.close().await.unwrap();
    assert!(!process_alive(second_pid));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_call_times_out_while_other_calls_and_upstreams_answer() {
    let http = HttpEverything::start().await;
    let mut slow_config = config();
    slow_config.call_timeout = Duration::from_millis(800);
    let slow = connect(slow_config).await;
    let other = Upstream::connect(
        &name("other"),
        &http.transport(),
        UpstreamCredentials::default(),
        config(),
    )
    .await
    .unwrap();

    let started = Instant::now();
    let slow_call = {
        let slow = slow.clone();
        tokio::spawn(async move {
            let args = json!({"duration": 10, "steps": 1});
            let res = slow.call_tool("trigger-long-running-operation", args).await;
            (res, started.elapsed())
        })
    };
    // While the slow call is pending, the other upstream and the same one both answer quickly.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let result = other.call_tool("echo", json!({"message": "other"})).await.unwrap();
    assert_eq!(text(&result), "Echo: other");
    let result = slow.call_tool("echo", json!({"message": "same"})).await.unwrap();
    assert_eq!(text(&result), "Echo: same");
    let answered_while_pending = started.elapsed();

    let (res, took) = slow_call.await.unwrap();
    let err = res.unwrap_err();
    assert!(matches!(err, UpstreamError::Timeout { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "upstream `everything` did not answer `tools/call` within 800ms"
    );
    assert!(
        took >= Duration::from_millis(800) && took < Duration::from_millis(2000),
        "took {took:?}"
    );
    assert!(answered_while_pending < took, "{answered_while_pending:?} vs {took:?}");

    // The timed-out call left the connection usable.
    let result = slow.call_tool("get-sum", json!({"a": 1, "b": 1})).await.unwrap();
    assert_eq!(text(&result), "The sum of 1 and 1 is 2.");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_are_passed_on() {
    let upstream = connect(config()).await;
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
}
