//! The MCP conformance suite (`@modelcontextprotocol/conformance`, server scenarios) against the
//! gateway in `warden serve`, with an agent granted every tool of two upstreams over stdio:
//! `server-everything`, and `tests/peers/conformance_tools.js`, which offers the conformance reference
//! server's `test_*` tools that the tool-call scenarios call (server-everything lacks them).
//!
//! The suite has no option to send headers, so a small reverse proxy in front of the gateway adds the
//! agent's `Authorization: Bearer` to every request; it passes everything else through untouched,
//! `Host` included, so the DNS-rebinding scenario still tests the gateway. The whole active suite runs
//! against `/mcp/everything`, `/mcp` and `/mcp/conformance`; the scenarios expected to fail on each are
//! listed in `tests/peers/conformance-baseline-*.yml`, with why in `crates/warden-gateway/CONFORMANCE.md`.
//! The runner fails when any other scenario fails and when a listed one starts passing.

use std::path::PathBuf;
use std::process::Command;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderValue, StatusCode};
use axum::response::IntoResponse;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::json;

use crate::support::{Api, Server, enc};

/// Scenarios that pass whatever the upstream, as they need no upstream tool.
const GENERIC: &[&str] = &[
    "server-initialize",
    "ping",
    "tools-list",
    "server-sse-multiple-streams",
    "resources-list",
    "prompts-list",
    "dns-rebinding-protection",
];

/// Scenarios that pass when the upstream has the reference server's tools.
const TOOL_CALLS: &[&str] = &[
    "tools-call-simple-text",
    "tools-call-image",
    "tools-call-audio",
    "tools-call-embedded-resource",
    "tools-call-mixed-content",
    "tools-call-error",
];

fn peer(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| panic!("{var} is not set: run the tests with `bash scripts/test.sh`"))
}

/// Starts a proxy to `upstream` (`http://host:port`) that adds `Authorization: Bearer <token>`; returns
/// its base URL. It runs on `runtime` until the runtime is dropped.
fn auth_proxy(runtime: &tokio::runtime::Runtime, upstream: &str, token: &str) -> String {
    let client: Client<HttpConnector, Body> = Client::builder(TokioExecutor::new()).build_http();
    let upstream = upstream.to_owned();
    let bearer = HeaderValue::from_str(&format!("Bearer {token}")).unwrap();
    let forward = move |mut req: Request| async move {
        let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
        *req.uri_mut() = format!("{upstream}{path}").parse().unwrap();
        req.headers_mut().insert(AUTHORIZATION, bearer);
        match client.request(req).await {
            Ok(res) => res.map(Body::new).into_response(),
            Err(err) => (StatusCode::BAD_GATEWAY, err.to_string()).into_response(),
        }
    };
    let app = Router::new().fallback(forward);
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    runtime.spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

/// Runs the whole active server suite against `url`; returns whether the runner's baseline check
/// passed, the scenarios its summary marks as passed, and its output.
fn run_suite(url: &str, baseline: &str, work: &std::path::Path) -> (bool, Vec<String>, String) {
    let peers = peer("WARDEN_TEST_NODE22_PEERS");
    let node = format!("{peers}/node_modules/.bin/node");
    let suite = format!("{peers}/node_modules/@modelcontextprotocol/conformance/dist/index.js");
    let baseline: PathBuf = [env!("CARGO_MANIFEST_DIR"), "tests/peers", baseline].iter().collect();
    let out = Command::new(node)
        .current_dir(work)
        .arg(suite)
        .args(["server", "--url", url, "--expected-failures"])
        .arg(baseline)
        .arg("--output-dir")
        .arg(work.join("results"))
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = strip_ansi(&text);
    let summary = text.split_once("=== SUMMARY ===").map_or("", |(_, s)| s);
    let passed = summary
        .lines()
        .filter_map(|l| l.trim().strip_prefix("✓ "))
        .filter_map(|l| l.split_once(':'))
        .map(|(name, _)| name.to_owned())
        .collect();
    (out.status.success(), passed, text)
}

fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[test]
fn the_gateway_passes_the_conformance_scenarios_it_should() {
    let everything = format!(
        "{}/node_modules/@modelcontextprotocol/server-everything/dist/index.js",
        peer("WARDEN_TEST_NODE_PEERS")
    );
    let tools = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/conformance_tools.js");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let server = Server::start(&data);
    let admin = server.api(&server.admin_token());
    assert_eq!(admin.post("/v1/teams", &json!({"name": "qa"})).status, 201);
    for (name, args) in [
        ("everything", json!([everything, "stdio"])),
        ("conformance", json!([tools])),
    ] {
        let added = admin.post(
            "/v1/mcp-servers",
            &json!({"name": name, "transport": {"kind": "stdio", "command": "node", "args": args}}),
        );
        assert_eq!(added.status, 201, "{added:?}");
    }
    let scope = admin.post(
        "/v1/scopes",
        &json!({"name": "all", "tools": ["everything/*", "conformance/*"]}),
    );
    assert_eq!(scope.status, 201, "{scope:?}");
    let agent = admin.post(
        "/v1/agents",
        &json!({"team": "qa", "name": "conformance", "purpose": "MCP conformance suite"}),
    );
    let id = agent.body["id"].as_str().unwrap();
    let grant = admin.post(&format!("/v1/agents/{}/grants", enc(id)), &json!({"scope": "all"}));
    assert_eq!(grant.status, 201, "{grant:?}");
    let token = Api::anonymous(&server.url).post(
        "/oauth2/token",
        &json!({"grant_type": "client_credentials", "client_id": id, "client_secret": agent.body["client_secret"]}),
    );
    let token = token.body["access_token"].as_str().unwrap();

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let proxy = auth_proxy(&runtime, &server.url, token);
    let with_tools: Vec<&str> = GENERIC.iter().chain(TOOL_CALLS).copied().collect();
    for (endpoint, baseline, passing) in [
        ("/mcp/everything", "conformance-baseline-everything.yml", GENERIC),
        // Aggregated tool names (`conformance__test_simple_text`) are not the ones the scenarios call.
        ("/mcp", "conformance-baseline-everything.yml", GENERIC),
        ("/mcp/conformance", "conformance-baseline-tools.yml", &with_tools[..]),
    ] {
        let work = dir.path().join(endpoint.replace('/', "_"));
        std::fs::create_dir(&work).unwrap();
        let (baseline_ok, passed, output) = run_suite(&format!("{proxy}{endpoint}"), baseline, &work);
        for scenario in passing {
            assert!(
                passed.iter().any(|p| p == scenario),
                "{endpoint}: `{scenario}` no longer passes:\n{output}"
            );
        }
        assert!(
            baseline_ok,
            "{endpoint}: the results differ from tests/peers/{baseline}:\n{output}"
        );
    }

    // The suite's calls were decided and recorded like any agent's, the tool error as an error, in the
    // audit lake (outcomes are written after the answer: wait until every decision has one).
    let sql = "SELECT activity_name, server, tool, decision, status_id FROM events WHERE class_uid = 6003 \
               AND activity_name IN ('decide_tool_call', 'call_tool') ORDER BY seq";
    let mut events = Vec::new();
    for _ in 0..100 {
        events = admin.audit(sql);
        let count = |name: &str| events.iter().filter(|e| e["activity_name"] == name).count();
        if count("decide_tool_call") == count("call_tool") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let recorded_on = |server: &str, kind: &str, tool: &str| {
        let activity = if kind == "decision" {
            "decide_tool_call"
        } else {
            "call_tool"
        };
        events
            .iter()
            .filter(|e| e["activity_name"] == activity && e["tool"] == tool && e["server"] == server)
            .cloned()
            .collect::<Vec<_>>()
    };
    let recorded = |kind: &str, tool: &str| recorded_on("conformance", kind, tool);
    // Calls to tools server-everything does not offer are refused, and recorded as denies all the same.
    let unknown = recorded_on("everything", "decision", "test_simple_text");
    assert!(
        !unknown.is_empty() && unknown.iter().all(|e| e["decision"] == "deny"),
        "{unknown:?}"
    );
    for tool in ["test_simple_text", "test_multiple_content_types", "test_error_handling"] {
        let decisions = recorded("decision", tool);
        assert!(
            !decisions.is_empty() && decisions.iter().all(|e| e["decision"] == "allow"),
            "{tool}: {decisions:?}"
        );
        let outcomes = recorded("outcome", tool);
        // OCSF status: 1 success, 2 failure.
        let status = if tool == "test_error_handling" { 2 } else { 1 };
        assert!(
            !outcomes.is_empty() && outcomes.iter().all(|e| e["status_id"] == status),
            "{tool}: {outcomes:?}"
        );
    }
}
