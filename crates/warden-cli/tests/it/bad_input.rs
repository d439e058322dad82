//! Malformed input gets a precise error in the API's format and writes nothing.

use serde_json::json;

use crate::support::{Api, Server, enc, stderr};

#[test]
fn malformed_requests_are_refused_precisely_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let admin = server.api(&server.admin_token());
    assert_eq!(admin.post("/v1/teams", &json!({"name": "payments"})).status, 201);
    let before = admin.event_count();

    let cases: Vec<(&str, &str, Option<(&str, Vec<u8>)>, u16, &str, &str)> = vec![
        ("POST", "/v1/teams", Some(("application/json", br#"{"name": "Payments"}"#.to_vec())), 400, "invalid_json",
         "invalid name `Payments`: it must start with a lowercase letter or a digit"),
        ("POST", "/v1/teams", Some(("application/json", br#"{"name": "a_b"}"#.to_vec())), 400, "invalid_json",
         "only lowercase letters, digits and `-` are allowed"),
        ("POST", "/v1/teams", Some(("application/json", br#"{"name": "payments"}"#.to_vec())), 409, "conflict",
         "team `payments` already exists"),
        ("POST", "/v1/teams", Some(("application/json", br#"{"name": "x", "colour": "red"}"#.to_vec())), 400, "invalid_json",
         "unknown field `colour`"),
        ("POST", "/v1/teams", Some(("application/json", br#"{"name": "x""#.to_vec())), 400, "invalid_json",
         "EOF while parsing"),
        ("POST", "/v1/teams", Some(("application/json", b"[1,2]".to_vec())), 400, "invalid_json", "invalid type"),
        ("POST", "/v1/teams", Some(("application/json", b"\xff\xfe".to_vec())), 400, "invalid_json", ""),
        ("POST", "/v1/teams", Some(("text/plain", br#"{"name": "x"}"#.to_vec())), 415, "unsupported_media_type",
         "Content-Type: application/json"),
        ("POST", "/v1/teams", Some(("application/json", format!(r#"{{"name": "{}"}}"#, "a".repeat(100_000)).into_bytes())),
         413, "payload_too_large", ""),
        ("POST", "/v1/agents", Some(("application/json", br#"{"team": "nope", "name": "a", "purpose": "p"}"#.to_vec())),
         404, "not_found", "team `nope` does not exist"),
        ("POST", "/v1/agents", Some(("application/json", br#"{"team": "payments", "name": "a", "purpose": "  "}"#.to_vec())),
         400, "bad_request", "`purpose` must not be empty"),
        ("POST", "/v1/agents", Some(("application/json", br#"{"team": "payments", "name": "a", "purpose": "p", "origin": "delegated"}"#.to_vec())),
         400, "bad_request", "subagents are created by token exchange"),
        ("POST", "/v1/agents", Some(("application/json", br#"{"team": "payments", "name": "a"}"#.to_vec())),
         400, "invalid_json", "missing field `purpose`"),
        ("POST", "/v1/scopes", Some(("application/json", br#"{"name": "s", "tools": ["github"]}"#.to_vec())),
         400, "invalid_json", "invalid tool pattern `github`: it has no `/`"),
        ("POST", "/v1/scopes", Some(("application/json", br#"{"name": "s", "tools": []}"#.to_vec())),
         400, "bad_request", "`tools` must name at least one tool pattern"),
        ("POST", "/v1/mcp-servers", Some(("application/json", br#"{"name": "m", "transport": {"kind": "http", "url": "ftp://x"}}"#.to_vec())),
         400, "bad_request", "must start with http:// or https://"),
        ("POST", "/v1/mcp-servers", Some(("application/json", br#"{"name": "m", "transport": {"kind": "carrier-pigeon"}}"#.to_vec())),
         400, "invalid_json", "unknown variant `carrier-pigeon`"),
        ("POST", "/v1/mcp-servers", Some(("application/json", br#"{"name": "m", "transport": {"kind": "http", "url": "http://x"}, "credentials": {"env": {"A": "b"}}}"#.to_vec())),
         400, "bad_request", "an HTTP server's credentials are `headers`"),
        ("POST", "/v1/access-tokens", Some(("application/json", br#"{"name": "t", "role": "team-admin"}"#.to_vec())),
         400, "bad_request", "a team-admin token needs `team`"),
        ("POST", "/v1/access-tokens", Some(("application/json", br#"{"name": "t", "role": "god"}"#.to_vec())),
         400, "invalid_json", "unknown variant `god`"),
        ("GET", &format!("/v1/agents/{}", enc("spiffe://warden.local/team/payments/agent/Bad")), None, 400, "bad_request",
         "invalid agent id"),
        ("GET", &format!("/v1/agents/{}", enc("payments/ghost")), None, 404, "not_found",
         "agent `spiffe://warden.local/team/payments/agent/ghost` does not exist"),
        ("GET", "/v1/agents?colour=red", None, 400, "bad_request", "unknown field `colour`"),
        ("GET", "/v1/agents?team=NOPE", None, 400, "bad_request", "invalid name `NOPE`"),
        ("GET", "/v1/events?limit=0", None, 400, "bad_request", "`limit` must be between 1 and 10000"),
        ("GET", "/v1/nothing-here", None, 404, "not_found", "no such endpoint"),
        ("PUT", "/v1/teams", None, 405, "method_not_allowed", "does not take that method"),
    ]
    .into_iter()
    .map(|(m, p, b, s, c, msg)| (m, Box::leak(p.to_owned().into_boxed_str()) as &str, b, s, c, msg))
    .collect();

    for (method, path, body, status, code, message) in &cases {
        let reply = admin.request(method, path, body.as_ref().map(|(ct, b)| (*ct, b.as_slice())));
        assert_eq!(reply.status, *status, "{method} {path}: {reply:?}");
        assert_eq!(reply.code(), *code, "{method} {path}: {reply:?}");
        assert!(
            reply.message().contains(message),
            "{method} {path}: `{}` lacks `{message}`",
            reply.message()
        );
    }
    assert_eq!(admin.event_count(), before, "no refused request wrote anything");
    assert_eq!(admin.get("/v1/agents").body, json!([]));
}

#[test]
fn missing_or_bad_credentials_get_401_with_challenge() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let anonymous = Api::anonymous(&server.url);
    let reply = anonymous.get("/v1/teams");
    assert_eq!(reply.status, 401);
    assert_eq!(reply.code(), "unauthenticated");
    assert_eq!(reply.www_authenticate.as_deref(), Some("Bearer realm=\"warden\""));
    let reply = server.api("not-a-token").get("/v1/teams");
    assert_eq!(reply.status, 401);
    let mut basic = anonymous.clone();
    basic.token = None;
    let reply = basic.request("GET", "/v1/teams", None);
    assert!(reply.message().contains("missing `Authorization: Bearer"), "{reply:?}");
    // Health and the OpenAPI document need no token.
    assert_eq!(anonymous.get("/healthz").status, 200);
    assert_eq!(anonymous.get("/openapi.json").status, 200);

    let out = server.cli("", &["team", "list"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).starts_with("error: no access token: pass --token or set WARDEN_TOKEN"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn cli_usage_errors_exit_2_and_unreachable_server_exits_1() {
    let out = std::process::Command::new(crate::support::WARDEN)
        .args(["agent", "register", "--team", "x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--name"), "{}", stderr(&out));
    let out = std::process::Command::new(crate::support::WARDEN)
        .args(["--server", "http://127.0.0.1:9", "--token", "x", "team", "list"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.starts_with("error: cannot reach warden at http://127.0.0.1:9"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn openapi_document_matches_the_router() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let admin = server.api(&server.admin_token());
    let doc = Api::anonymous(&server.url).get("/openapi.json").body;
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    let mut documented = Vec::new();
    for (path, item) in paths {
        for method in ["get", "post", "delete", "put", "patch"] {
            if item.get(method).is_some() {
                documented.push(format!("{} {path}", method.to_uppercase()));
            }
        }
    }
    documented.sort();
    let expected = [
        "DELETE /v1/access-tokens/{name}",
        "DELETE /v1/agents/{id}/grants/{scope}",
        "DELETE /v1/agents/{id}/tags/{tag}",
        "DELETE /v1/guardrails/{id}",
        "GET /.well-known/jwks.json",
        "GET /v1/access-tokens",
        "GET /v1/agents",
        "GET /v1/agents/{id}",
        "GET /v1/agents/{id}/grants",
        "GET /v1/audit/verify",
        "GET /v1/events",
        "GET /v1/gateway/snapshot",
        "GET /v1/govern/{name}",
        "GET /v1/grants",
        "GET /v1/guardrails",
        "GET /v1/mcp-servers",
        "GET /v1/policy/schema",
        "GET /v1/revocations",
        "GET /v1/scopes",
        "GET /v1/teams",
        "GET /v1/templates",
        "GET /v1/templates/{name}",
        "GET /v1/whoami",
        "POST /oauth2/introspect",
        "POST /oauth2/token",
        "POST /v1/access-tokens",
        "POST /v1/agents",
        "POST /v1/agents/{id}/grants",
        "POST /v1/agents/{id}/resume",
        "POST /v1/agents/{id}/revoke",
        "POST /v1/agents/{id}/suspend",
        "POST /v1/agents/{id}/tags",
        "POST /v1/audit/events",
        "POST /v1/audit/export",
        "POST /v1/audit/query",
        "POST /v1/audit/verify",
        "POST /v1/authorize",
        "POST /v1/gateway/events",
        "POST /v1/guardrails",
        "POST /v1/hooks/claude-code",
        "POST /v1/keys/rotate",
        "POST /v1/mcp-servers",
        "POST /v1/otlp/v1/logs",
        "POST /v1/otlp/v1/metrics",
        "POST /v1/policy/check",
        "POST /v1/scopes",
        "POST /v1/teams",
        "POST /v1/templates",
    ];
    assert_eq!(documented, expected);
    // Every documented operation is routed: none answers "no such endpoint" or 405.
    for entry in &documented {
        let (method, path) = entry.split_once(' ').unwrap();
        let path = path
            .replace("{id}", &enc("t/a"))
            .replace("{name}", "n")
            .replace("{scope}", "s")
            .replace("{tag}", "t");
        let body = if method == "POST" {
            Some(("application/json", b"{}".as_slice()))
        } else {
            None
        };
        let reply = admin.request(method, &path, body);
        assert_ne!(reply.status, 405, "{entry}");
        assert!(!reply.message().contains("no such endpoint"), "{entry}: {reply:?}");
    }
    // The request bodies forbid unknown fields, as the server does.
    let team = &doc["components"]["schemas"]["CreateTeam"];
    assert_eq!(team["additionalProperties"], false, "{team}");
}
