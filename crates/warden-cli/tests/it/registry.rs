//! The registry through the CLI and the API: teams, tokens, agents, servers, scopes, grants, and the
//! change event written with each of them.

use serde_json::json;

use crate::support::{Server, enc, stderr, stdout};

#[test]
fn cli_round_trip_records_every_change() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let admin = server.admin_token();
    assert_eq!(
        server.printed_token.as_deref(),
        Some(admin.as_str()),
        "the first start prints the token"
    );

    let ok = |args: &[&str]| {
        let out = server.cli(&admin, args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        stdout(&out)
    };
    ok(&["team", "create", "payments"]);
    let registered: serde_json::Value = serde_json::from_str(&ok(&[
        "--json",
        "agent",
        "register",
        "--team",
        "payments",
        "--name",
        "recon",
        "--purpose",
        "reconcile ledgers",
        "--owner",
        "ana@example.com",
        "--tag",
        "customer-data",
        "--tag",
        "prod",
    ]))
    .unwrap();
    let id = "spiffe://warden.local/team/payments/agent/recon";
    assert_eq!(registered["id"], id);
    assert!(registered["client_secret"].as_str().unwrap().starts_with("wds_"));
    assert_eq!(registered["origin"], "manual");
    assert_eq!(registered["status"], "active");
    assert_eq!(registered["tags"], json!(["customer-data", "prod"]));
    assert_eq!(registered["owner"], "ana@example.com");

    ok(&[
        "mcp-server",
        "add",
        "github",
        "--url",
        "https://mcp.example.com/github",
        "--sensitive",
        "--header",
        "Authorization=Bearer s3cret",
    ]);
    ok(&[
        "mcp-server",
        "add",
        "fs",
        "--command",
        "npx",
        "-y",
        "@modelcontextprotocol/server-filesystem",
        "/tmp",
    ]);
    ok(&[
        "scope",
        "define",
        "github-read",
        "--tools",
        "github/get_*,github/list_*",
        "--description",
        "read GitHub",
    ]);
    ok(&["grant", "github-read", "--agent", id]);

    let servers = ok(&["--json", "mcp-server", "list"]);
    assert!(
        !servers.contains("s3cret"),
        "upstream credentials are never returned: {servers}"
    );
    let servers: serde_json::Value = serde_json::from_str(&servers).unwrap();
    assert_eq!(servers[0]["name"], "fs");
    assert_eq!(
        servers[0]["transport"],
        json!({"kind": "stdio", "command": "npx", "args": ["-y", "@modelcontextprotocol/server-filesystem", "/tmp"]})
    );
    assert_eq!(servers[1]["has_credentials"], true);
    assert_eq!(servers[1]["sensitive"], true);

    let shown: serde_json::Value = serde_json::from_str(&ok(&["--json", "agent", "show", "payments/recon"])).unwrap();
    assert_eq!(shown["scopes"], json!(["github-read"]));
    assert!(shown.get("client_secret").is_none());

    let table = ok(&["agent", "list", "--tag", "customer-data"]);
    assert!(table.starts_with("ID "), "{table}");
    assert!(table.contains(id) && table.contains("github-read"), "{table}");
    assert_eq!(ok(&["--json", "agent", "list", "--tag", "nope"]).trim(), "[]");

    let suspended = ok(&["agent", "suspend", id, "--reason", "incident 42"]);
    assert!(suspended.contains("is suspended"), "{suspended}");
    ok(&["agent", "resume", id]);
    ok(&["ungrant", "github-read", "--agent", id]);
    ok(&["agent", "revoke", id]);
    let out = server.cli(&admin, &["agent", "resume", id]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).starts_with(
            "error: agent `spiffe://warden.local/team/payments/agent/recon` is revoked; revocation is permanent"
        ),
        "{}",
        stderr(&out)
    );

    let events = server.api(&admin).get("/v1/events");
    let actions: Vec<&str> = events
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "setting.set",
            "access-token.create",
            "template.set",
            "team.create",
            "agent.register",
            "mcp-server.add",
            "mcp-server.add",
            "scope.define",
            "grant.create",
            "agent.suspend",
            "credential.suspend",
            "agent.resume",
            "credential.resume",
            "grant.delete",
            "agent.revoke",
            "credential.revoke"
        ]
    );
    let credential = &events.body.as_array().unwrap()[10];
    assert_eq!(credential["after"]["reason"], "incident 42");
    assert_eq!(credential["after"]["chain"], json!([id]));
    let suspend = &events.body.as_array().unwrap()[9];
    assert_eq!(suspend["actor"], "bootstrap-admin");
    assert_eq!(suspend["actor_kind"], "person");
    assert_eq!(suspend["before"]["status"], "active");
    assert_eq!(suspend["after"]["status"], "suspended");
    assert!(
        !events.body.to_string().contains("s3cret"),
        "credentials never reach the change log"
    );
}

#[test]
fn access_tokens_are_hashed_and_revocable() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let admin = server.api(&server.admin_token());
    let created = admin.post("/v1/access-tokens", &json!({"name": "carol", "role": "auditor"}));
    assert_eq!(created.status, 201, "{created:?}");
    let token = created.body["token"].as_str().unwrap().to_owned();
    let db = std::fs::read(dir.path().join("warden.db")).unwrap();
    let wal = std::fs::read(dir.path().join("warden.db-wal")).unwrap_or_default();
    for bytes in [&db, &wal] {
        assert!(
            !bytes.windows(token.len()).any(|w| w == token.as_bytes()),
            "the token is stored only hashed"
        );
    }
    let carol = server.api(&token);
    assert_eq!(
        carol.get("/v1/whoami").body,
        json!({"name": "carol", "role": "auditor", "team": null})
    );
    let listed = admin.get("/v1/access-tokens");
    assert!(!listed.body.to_string().contains(&token));
    assert_eq!(admin.delete("/v1/access-tokens/carol").status, 200);
    let refused = carol.get("/v1/whoami");
    assert_eq!(refused.status, 401);
    assert_eq!(refused.message(), "the access token is unknown or revoked");
    // One character changed is a different, unknown token.
    let mut forged = server.admin_token();
    let last = forged.pop().unwrap();
    forged.push(if last == 'A' { 'B' } else { 'A' });
    assert_eq!(server.api(&forged).get("/v1/teams").status, 401);
}

#[test]
fn revoking_an_agent_cascades_to_its_subagents_only() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let admin = server.api(&server.admin_token());
    admin.post("/v1/teams", &json!({"name": "payments"}));
    for name in ["orch", "sibling"] {
        let reply = admin.post("/v1/agents", &json!({"team": "payments", "name": name, "purpose": "p"}));
        assert_eq!(reply.status, 201, "{reply:?}");
    }
    let revoked = admin.post(&format!("/v1/agents/{}/revoke", enc("payments/orch")), &json!({}));
    assert_eq!(revoked.status, 200, "{revoked:?}");
    assert_eq!(revoked.body["status"], "revoked");
    let sibling = admin.get(&format!("/v1/agents/{}", enc("payments/sibling")));
    assert_eq!(sibling.body["status"], "active");
}
