//! Authentication, the protected resource metadata, origins, sessions and malformed input, in
//! process (no upstream is contacted).

use axum::http::StatusCode;
use serde_json::json;
use warden_identity::keys::KeyRing;
use warden_identity::token::{Claims, mint};

use crate::support::{AUDIENCE, ISSUER, World, now_unix, spec, stdio_everything};

fn world() -> World {
    World::new(vec![spec("everything", stdio_everything())])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_gets_401_pointing_at_the_metadata() {
    let world = world();
    let anonymous = world.client(None);
    let reply = anonymous.rpc("/mcp/everything", 1, "tools/list", json!({})).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.raw);
    assert_eq!(
        reply.headers["www-authenticate"],
        "Bearer resource_metadata=\"http://gateway.test:8443/.well-known/oauth-protected-resource\""
    );
    assert_eq!(reply.headers["content-type"], "application/json");
    assert_eq!(reply.body["error"], "unauthorized", "{}", reply.raw);

    // RFC 9728 metadata, at the root and for each MCP path.
    for (path, resource) in [
        ("/.well-known/oauth-protected-resource", "http://gateway.test:8443"),
        (
            "/.well-known/oauth-protected-resource/mcp",
            "http://gateway.test:8443/mcp",
        ),
        (
            "/.well-known/oauth-protected-resource/mcp/everything",
            "http://gateway.test:8443/mcp/everything",
        ),
    ] {
        let metadata = anonymous.send("GET", path, None, &[]).await;
        assert_eq!(metadata.status, StatusCode::OK, "{path}: {}", metadata.raw);
        assert_eq!(metadata.body["resource"], resource);
        assert_eq!(metadata.body["authorization_servers"], json!([ISSUER]));
        assert_eq!(metadata.body["bearer_methods_supported"], json!(["header"]));
    }

    // A configured public URL wins over the Host header.
    let public = World::with_config(vec![spec("everything", stdio_everything())], |config| {
        config.public_url = Some("https://gw.example.com/".to_owned());
    });
    let reply = public.client(None).rpc("/mcp", 1, "ping", json!({})).await;
    assert_eq!(
        reply.headers["www-authenticate"],
        "Bearer resource_metadata=\"https://gw.example.com/.well-known/oauth-protected-resource\""
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_get_401_invalid_token() {
    let world = world();
    // A token signed by a key this Warden does not publish.
    let other = tempfile::tempdir().unwrap();
    let other_keys = KeyRing::open_or_create(other.path(), now_unix() - 60).unwrap();
    let now = now_unix();
    let forged = mint(
        other_keys.active(),
        &Claims {
            iss: ISSUER.to_owned(),
            sub: world.agents.reader.id.to_string(),
            aud: AUDIENCE.to_owned(),
            exp: now + 600,
            iat: now,
            nbf: now,
            jti: "forged".to_owned(),
            team: "payments".to_owned(),
            scope: "everything-read".to_owned(),
            act: None,
            dlg_depth: 0,
        },
    )
    .unwrap();
    for (token, expected) in [
        (forged.as_str(), "is not published by this Warden"),
        ("not-a-jwt", "malformed"),
    ] {
        let reply = world
            .client(Some(token.to_owned()))
            .rpc("/mcp/everything", 1, "tools/list", json!({}))
            .await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.raw);
        let challenge = reply.headers["www-authenticate"].to_str().unwrap();
        assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
        assert!(challenge.contains("resource_metadata="), "{challenge}");
        assert_eq!(reply.body["error"], "invalid_token");
        let description = reply.body["error_description"].as_str().unwrap();
        assert!(description.contains(expected), "{description}");
    }
    // Basic auth, or a token in the query string, is not a bearer token.
    let mut client = world.client(None);
    let reply = client
        .send(
            "POST",
            "/mcp",
            Some("{}".to_owned()),
            &[("authorization", "Basic dXNlcjpwdw==")],
        )
        .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    client.token = None;
    let token = world.reader_token();
    let reply = client
        .send(
            "POST",
            &format!("/mcp?access_token={token}"),
            Some("{}".to_owned()),
            &[],
        )
        .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_origins_are_refused() {
    let world = world();
    let client = world.client(Some(world.reader_token()));
    let ping = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}})
    .to_string();
    let reply = client
        .send(
            "POST",
            "/mcp",
            Some(ping.clone()),
            &[("origin", "https://evil.example")],
        )
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.raw);
    let reply = client
        .send(
            "POST",
            "/mcp",
            Some(ping.clone()),
            &[("origin", "http://localhost:6274")],
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.raw);
    // An origin that merely matches the request's own Host is what a DNS-rebinding page sends: refused
    // unless it is the configured public URL.
    let reply = client
        .send(
            "POST",
            "/mcp",
            Some(ping.clone()),
            &[("origin", "http://gateway.test:8443")],
        )
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.raw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_are_bound_to_their_agent_and_endpoint() {
    let world = world();
    let mut reader = world.client(Some(world.reader_token()));
    let init = reader.open("/mcp/everything").await;
    assert_eq!(init.body["result"]["protocolVersion"], "2025-11-25");
    assert_eq!(init.body["result"]["serverInfo"]["name"], "warden-gateway");
    assert_eq!(
        init.body["result"]["capabilities"],
        json!({"tools": {"listChanged": false}})
    );
    let session = reader.session.clone().unwrap();
    assert_eq!(session.len(), 64, "256 random bits in hex");
    assert!(session.chars().all(|c| c.is_ascii_hexdigit()));

    let pong = reader.rpc("/mcp/everything", 2, "ping", json!({})).await;
    assert_eq!(pong.body["result"], json!({}), "{}", pong.raw);

    // Another agent presenting the reader's session id is refused as if the session did not exist.
    let mut outsider = world.client(Some(world.token(&world.agents.outsider, "")));
    outsider.session = Some(session.clone());
    let reply = outsider.rpc("/mcp/everything", 3, "ping", json!({})).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND, "{}", reply.raw);
    assert_eq!(reply.body["error"]["code"], -32001);
    // So is the reader's subagent: a session belongs to one acting agent.
    let mut helper = world.client(Some(world.delegated_token()));
    helper.session = Some(session.clone());
    let reply = helper.rpc("/mcp/everything", 3, "ping", json!({})).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND, "{}", reply.raw);
    // And the session on another endpoint.
    let reply = reader.rpc("/mcp", 3, "ping", json!({})).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND, "{}", reply.raw);
    // A fresh token of the same agent may go on using it.
    reader.token = Some(world.reader_token());
    let reply = reader.rpc("/mcp/everything", 3, "ping", json!({})).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.raw);

    // Without a session id: 400. With an unknown one: 404.
    let mut no_session = world.client(Some(world.reader_token()));
    let reply = no_session.rpc("/mcp/everything", 4, "tools/list", json!({})).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.raw);
    no_session.session = Some("f".repeat(64));
    let reply = no_session.rpc("/mcp/everything", 4, "tools/list", json!({})).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND, "{}", reply.raw);

    // No server-to-client stream.
    let reply = reader.send("GET", "/mcp/everything", None, &[]).await;
    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);

    // DELETE ends the session; it is then unknown, and the end is recorded.
    let reply = reader.send("DELETE", "/mcp/everything", None, &[]).await;
    assert_eq!(reply.status, StatusCode::OK);
    let reply = reader.rpc("/mcp/everything", 5, "ping", json!({})).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    let kinds: Vec<(String, String)> = world
        .events()
        .await
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap().to_owned(),
                e["reason"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("session_opened".to_owned(), String::new()),
            ("session_closed".to_owned(), "deleted".to_owned())
        ]
    );
    assert_eq!(world.gateway.session_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_edges() {
    let world = world();
    let mut client = world.client(Some(world.reader_token()));

    // An unregistered server's endpoint does not exist.
    let reply = client.rpc("/mcp/nowhere", 1, "ping", json!({})).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND, "{}", reply.raw);
    let reply = client.rpc("/mcp/Not_A_Name", 1, "ping", json!({})).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND, "{}", reply.raw);

    // Bytes that are not JSON: -32700 with 400. A batch, or a non-message: -32600 with 400.
    for (body, code) in [
        ("{\"jsonrpc\": \"2.0\", \"id\": 1, \"method\":", -32700),
        ("[{\"jsonrpc\": \"2.0\", \"id\": 1, \"method\": \"ping\"}]", -32600),
        ("{\"jsonrpc\": \"1.0\", \"id\": 1, \"method\": \"ping\"}", -32600),
        (
            "{\"jsonrpc\": \"2.0\", \"id\": 1, \"id\": 2, \"method\": \"ping\"}",
            -32700,
        ),
    ] {
        let reply = client.send("POST", "/mcp", Some(body.to_owned()), &[]).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{body}: {}", reply.raw);
        assert_eq!(reply.body["error"]["code"], code, "{body}: {}", reply.raw);
    }

    // Too large a body.
    let small = World::with_config(vec![spec("everything", stdio_everything())], |config| {
        config.max_body_bytes = 1024;
    });
    let big = json!({"jsonrpc": "2.0", "id": 1, "method": "ping", "params": {"pad": "x".repeat(4096)}});
    let reply = small
        .client(Some(small.reader_token()))
        .send("POST", "/mcp", Some(big.to_string()), &[])
        .await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", reply.raw);

    // A discovery probe without the 2026-07-28 header is told which revisions the gateway speaks.
    let discover = json!({"jsonrpc": "2.0", "id": 1, "method": "server/discover", "params": {}});
    let reply = client.send("POST", "/mcp", Some(discover.to_string()), &[]).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.raw);
    assert_eq!(reply.body["error"]["code"], -32022);
    assert_eq!(
        reply.body["error"]["data"],
        json!({"supported": ["2026-07-28", "2025-11-25", "2025-06-18", "2025-03-26"], "requested": null})
    );

    // An older client gets its own revision; an unknown one gets the newest.
    for (asked, answered) in [("2025-03-26", "2025-03-26"), ("2099-01-01", "2025-11-25")] {
        let params = json!({"protocolVersion": asked, "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}});
        let reply = client.rpc("/mcp", 1, "initialize", params).await;
        assert_eq!(reply.body["result"]["protocolVersion"], answered, "{}", reply.raw);
    }
    let reply = client.rpc("/mcp", 1, "initialize", json!({})).await;
    assert_eq!(reply.body["error"]["code"], -32602, "{}", reply.raw);

    client.open("/mcp").await;
    // An unsupported MCP-Protocol-Version header on a session request: 400.
    let mut bare = world.client(Some(world.reader_token()));
    bare.open("/mcp").await;
    let session = bare.session.take().unwrap();
    let reply = bare
        .send(
            "POST",
            "/mcp",
            Some(json!({"jsonrpc": "2.0", "id": 2, "method": "ping"}).to_string()),
            &[("mcp-session-id", &session), ("mcp-protocol-version", "1999-01-01")],
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.raw);

    // Lists the gateway does not offer are empty; other methods are not found.
    let reply = client.rpc("/mcp", 3, "resources/list", json!({})).await;
    assert_eq!(reply.body["result"], json!({"resources": []}), "{}", reply.raw);
    let reply = client.rpc("/mcp", 3, "prompts/list", json!({})).await;
    assert_eq!(reply.body["result"], json!({"prompts": []}), "{}", reply.raw);
    let reply = client
        .rpc("/mcp", 3, "resources/read", json!({"uri": "file:///etc/passwd"}))
        .await;
    assert_eq!(reply.body["error"]["code"], -32601, "{}", reply.raw);
    // A cursor the gateway never handed out.
    let reply = client.rpc("/mcp", 3, "tools/list", json!({"cursor": "abc"})).await;
    assert_eq!(reply.body["error"]["code"], -32602, "{}", reply.raw);
    // Malformed tools/call params.
    for params in [
        json!({}),
        json!({"name": 5}),
        json!({"name": "everything__echo", "arguments": [1]}),
    ] {
        let reply = client.rpc("/mcp", 4, "tools/call", params.clone()).await;
        assert_eq!(reply.body["error"]["code"], -32602, "{params}: {}", reply.raw);
    }
    // Unknown servers on the aggregated endpoint are unknown tools.
    for tool in ["nowhere__echo", "echo", "__echo"] {
        let reply = client.call("/mcp", tool, json!({})).await;
        assert_eq!(reply.body["error"]["code"], -32602, "{tool}: {}", reply.raw);
    }
}
