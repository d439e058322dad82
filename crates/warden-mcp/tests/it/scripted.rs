//! A scripted stdio server (`tests/peers/scripted_server.js`) shows what the real one cannot:
//! cancellations sent for abandoned calls, requests from the server answered, stray output ignored,
//! and protocol version negotiation.

use std::time::Duration;

use serde_json::{Value, json};
use warden_core::Transport;
use warden_mcp::{Upstream, UpstreamCredentials, UpstreamError};

use crate::support::{config, name, text};

fn scripted() -> Transport {
    Transport::Stdio {
        command: "node".to_owned(),
        args: vec![concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/scripted_server.js").to_owned()],
    }
}

fn version(version: &str) -> UpstreamCredentials {
    UpstreamCredentials {
        env: [("SCRIPTED_VERSION".to_owned(), version.to_owned())].into(),
        ..UpstreamCredentials::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_calls_are_cancelled_and_server_requests_answered() {
    let mut config = config();
    config.call_timeout = Duration::from_millis(300);
    let upstream = Upstream::connect(&name("scripted"), &scripted(), UpstreamCredentials::default(), config)
        .await
        .unwrap();
    // An older revision the server chose is accepted; the stray stdout line did not break the handshake.
    assert_eq!(upstream.initialize_result().protocol_version, "2025-06-18");

    let err = upstream.call_tool("hang", json!({})).await.unwrap_err();
    assert!(matches!(err, UpstreamError::Timeout { .. }), "{err:?}");

    let dropped = {
        let upstream = upstream.clone();
        tokio::spawn(async move { upstream.call_tool("hang", json!({"n": 2})).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    dropped.abort();
    assert!(dropped.await.unwrap_err().is_cancelled());

    let report = upstream.call_tool("report", json!({})).await.unwrap();
    let report: Value = serde_json::from_str(text(&report)).unwrap();
    let reasons: Vec<&Value> = report["cancelled"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| &c["reason"])
        .collect();
    assert_eq!(
        reasons,
        [&json!("timed out"), &json!("cancelled by the client")],
        "{report}"
    );
    assert!(
        report["cancelled"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["requestId"].is_i64()),
        "{report}"
    );
    assert_eq!(
        report["answers"]["server-1"],
        json!({"jsonrpc": "2.0", "id": "server-1", "result": {}})
    );
    assert_eq!(report["answers"]["server-2"]["error"]["code"], -32601, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_protocol_version_is_refused() {
    let err = Upstream::connect(&name("scripted"), &scripted(), version("1999-01-01"), config())
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "upstream `scripted` chose protocol version `1999-01-01`, which warden does not speak"
    );
}
