//! Agent credentials end to end: tokens any JWT library verifies from the JWKS alone, forged and
//! tampered tokens refused, delegation to subagents and its limits, cascading revocation that leaves
//! other trees working, key rotation, and the recorded credential events.

use std::process::Command;

use serde_json::{Value, json};

use crate::support::{Api, Server, enc, stderr, stdout};

const ISSUER: &str = "spiffe://warden.local";
const AUDIENCE: &str = "spiffe://warden.local/warden/gateway";

fn python() -> String {
    std::env::var("WARDEN_TEST_PYTHON").unwrap_or_else(|_| {
        panic!("WARDEN_TEST_PYTHON is not set: run the tests with `bash scripts/test.sh`, which installs PyJWT")
    })
}

fn peer(args: &[&str]) -> std::process::Output {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/jwt_peer.py");
    Command::new(python()).arg(script).args(args).output().unwrap()
}

struct Fleet {
    _dir: tempfile::TempDir,
    server: Server,
    admin: Api,
}

fn fleet() -> Fleet {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let admin = server.api(&server.admin_token());
    admin.post("/v1/teams", &json!({"name": "payments"}));
    for scope in ["read", "write", "deploy"] {
        admin.post(
            "/v1/scopes",
            &json!({"name": scope, "tools": [format!("github/{scope}_*")]}),
        );
    }
    Fleet {
        _dir: dir,
        server,
        admin,
    }
}

impl Fleet {
    /// Registers a root agent with `scopes` and returns (id, client secret).
    fn agent(&self, name: &str, scopes: &[&str]) -> (String, String) {
        let reply = self.admin.post(
            "/v1/agents",
            &json!({"team": "payments", "name": name, "purpose": "test", "tags": ["customer-data"]}),
        );
        assert_eq!(reply.status, 201, "{reply:?}");
        let id = reply.body["id"].as_str().unwrap().to_owned();
        for scope in scopes {
            let grant = self
                .admin
                .post(&format!("/v1/agents/{}/grants", enc(&id)), &json!({"scope": scope}));
            assert_eq!(grant.status, 201, "{grant:?}");
        }
        (id, reply.body["client_secret"].as_str().unwrap().to_owned())
    }

    fn issue(&self, id: &str, secret: &str) -> String {
        let out = self
            .server
            .cli("", &["token", "issue", "--agent", id, "--secret", secret]);
        assert!(out.status.success(), "{}", stderr(&out));
        stdout(&out).trim().to_owned()
    }

    fn delegate(&self, parent: &str, name: &str, scope: &str) -> Result<Value, (i32, String)> {
        let out = self.server.cli(
            "",
            &[
                "--json", "token", "delegate", "--token", parent, "--name", name, "--scope", scope,
            ],
        );
        if out.status.success() {
            Ok(serde_json::from_str(&stdout(&out)).unwrap())
        } else {
            Err((out.status.code().unwrap(), stderr(&out)))
        }
    }

    fn introspect(&self, token: &str) -> Value {
        let reply = self.admin.post("/oauth2/introspect", &json!({"token": token}));
        assert_eq!(reply.status, 200, "{reply:?}");
        reply.body
    }

    fn active(&self, token: &str) -> bool {
        self.introspect(token)["active"] == true
    }
}

fn claims_of(token: &str) -> Value {
    use base64::Engine;
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap()
}

#[test]
fn tokens_verify_in_pyjwt_from_the_jwks_alone() {
    let f = fleet();
    let (id, secret) = f.agent("recon", &["read", "write"]);
    let token = f.issue(&id, &secret);

    let out = peer(&["verify", &f.server.url, &token, ISSUER, AUDIENCE]);
    assert!(out.status.success(), "PyJWT refused a Warden token: {}", stderr(&out));
    let claims: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(claims["sub"], id);
    assert_eq!(claims["team"], "payments");
    assert_eq!(claims["scope"], "read write");
    assert_eq!(claims["dlg_depth"], 0);
    let lifetime = claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap();
    assert!(lifetime > 0 && lifetime <= 900, "{lifetime}");
    assert_eq!(claims["jti"].as_str().unwrap().len(), 32);

    // The same library refuses a token with one payload byte changed: this check can fail.
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let mut payload = parts[1].clone().into_bytes();
    payload[10] = if payload[10] == b'A' { b'B' } else { b'A' };
    parts[1] = String::from_utf8(payload).unwrap();
    let tampered = parts.join(".");
    assert!(
        !peer(&["verify", &f.server.url, &tampered, ISSUER, AUDIENCE])
            .status
            .success()
    );
    assert!(
        !peer(&["verify", &f.server.url, &token, ISSUER, "someone-else"])
            .status
            .success()
    );

    // Warden refuses the tampered token, `alg: none` and HS256 keyed with the public key.
    let refusal = |token: &str| f.introspect(token)["reason"].as_str().unwrap_or_default().to_owned();
    assert!(f.active(&token));
    assert_eq!(refusal(&tampered), "token signature is invalid");
    let none = stdout(&peer(&["forge-none", &token])).trim().to_owned();
    assert_eq!(refusal(&none), "token algorithm `none` is not allowed; only EdDSA");
    let hs256 = stdout(&peer(&["forge-hs256", &f.server.url, &token])).trim().to_owned();
    assert_eq!(refusal(&hs256), "token algorithm `HS256` is not allowed; only EdDSA");

    // A token signed by another Warden's key is not accepted here.
    let other = fleet();
    let (other_id, other_secret) = other.agent("recon", &["read"]);
    let foreign = other.issue(&other_id, &other_secret);
    assert!(
        refusal(&foreign).starts_with("token signing key `"),
        "{}",
        refusal(&foreign)
    );
    assert!(refusal(&foreign).ends_with("` is not published by this Warden"));
}

#[test]
fn client_credentials_refusals() {
    let f = fleet();
    let (id, secret) = f.agent("recon", &["read"]);
    let api = Api::anonymous(&f.server.url);
    let form = |body: &str| {
        api.request(
            "POST",
            "/oauth2/token",
            Some(("application/x-www-form-urlencoded", body.as_bytes())),
        )
    };

    let wrong = form(&format!(
        "grant_type=client_credentials&client_id={}&client_secret=wds_nope",
        enc(&id)
    ));
    assert_eq!(wrong.status, 401);
    assert_eq!(wrong.body["error"], "invalid_client");
    let widen = form(&format!(
        "grant_type=client_credentials&client_id={}&client_secret={secret}&scope=deploy",
        enc(&id)
    ));
    assert_eq!(widen.status, 400);
    assert_eq!(widen.body["error"], "invalid_scope");
    assert_eq!(
        widen.body["error_description"],
        format!("scope `deploy` is not granted to agent `{id}`")
    );
    let grant = form("grant_type=password&username=x");
    assert_eq!(grant.body["error"], "unsupported_grant_type");
    let garbage = form("%%%");
    assert_eq!(garbage.body["error"], "invalid_request");
    let json_ok = api.post(
        "/oauth2/token",
        &json!({"grant_type": "client_credentials", "client_id": id, "client_secret": secret, "ttl": 60}),
    );
    assert_eq!(json_ok.status, 200, "{json_ok:?}");
    assert_eq!(json_ok.body["expires_in"], 60);
    assert_eq!(json_ok.body["token_type"], "Bearer");

    // HTTP Basic client authentication (RFC 6749 §2.3.1).
    use base64::Engine;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{}:{secret}", enc(&id)));
    let req = ureq::http::Request::post(format!("{}/oauth2/token", f.server.url))
        .header("Authorization", format!("Basic {basic}"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(b"grant_type=client_credentials".to_vec())
        .unwrap();
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    assert_eq!(agent.run(req).unwrap().status(), 200);

    let out = f.server.cli(
        "",
        &[
            "token", "issue", "--agent", &id, "--secret", &secret, "--scope", "deploy",
        ],
    );
    assert_eq!(out.status.code(), Some(3), "a refused scope is a denial");
    assert!(
        stderr(&out).contains("scope `deploy` is not granted"),
        "{}",
        stderr(&out)
    );

    f.admin.post(&format!("/v1/agents/{}/suspend", enc(&id)), &json!({}));
    let suspended = form(&format!(
        "grant_type=client_credentials&client_id={}&client_secret={secret}",
        enc(&id)
    ));
    assert_eq!(suspended.body["error"], "invalid_grant");
    assert_eq!(
        suspended.body["error_description"],
        format!("agent `{id}` is suspended")
    );
}

#[test]
fn delegation_narrows_and_is_bounded() {
    let f = fleet();
    let (orch, secret) = f.agent("orch", &["read", "write"]);
    let root_token = f.issue(&orch, &secret);

    let l1 = f.delegate(&root_token, "researcher", "read").unwrap();
    let l1_id = format!("{orch}/researcher");
    assert_eq!(l1["agent_id"], l1_id);
    assert_eq!(l1["issued_token_type"], "urn:ietf:params:oauth:token-type:access_token");
    let l1_token = l1["access_token"].as_str().unwrap();
    let claims = claims_of(l1_token);
    assert_eq!(claims["sub"], orch, "sub stays the root agent (RFC 8693 §4.1)");
    assert_eq!(claims["act"], json!({"sub": l1_id}));
    assert_eq!(claims["dlg_depth"], 1);
    assert_eq!(claims["scope"], "read");
    assert!(claims["exp"].as_i64() <= claims_of(&root_token)["exp"].as_i64());
    let out = peer(&["verify", &f.server.url, l1_token, ISSUER, AUDIENCE]);
    assert!(out.status.success(), "{}", stderr(&out));

    let sub = f.admin.get(&format!("/v1/agents/{}", enc(&l1_id))).body;
    assert_eq!(sub["origin"], "delegated");
    assert_eq!(sub["parent"], orch);
    assert_eq!(sub["team"], "payments");
    assert_eq!(sub["tags"], json!(["customer-data"]), "tags are inherited");
    assert_eq!(sub["scopes"], json!(["read"]));

    // Wider than the parent: refused with invalid_scope, exit 3, and nothing registered.
    let (code, err) = f.delegate(l1_token, "greedy", "read,write").unwrap_err();
    assert_eq!(code, 3);
    assert!(
        err.contains("scope `write` is not held by the delegating token"),
        "{err}"
    );
    assert_eq!(
        f.admin
            .get(&format!("/v1/agents/{}", enc(&format!("{l1_id}/greedy"))))
            .status,
        404
    );

    let l2 = f.delegate(l1_token, "l2", "read").unwrap();
    let l3 = f.delegate(l2["access_token"].as_str().unwrap(), "l3", "read").unwrap();
    let l3_claims = claims_of(l3["access_token"].as_str().unwrap());
    assert_eq!(l3_claims["dlg_depth"], 3);
    assert_eq!(l3_claims["sub"], orch);
    assert_eq!(
        l3_claims["act"],
        json!({"sub": format!("{l1_id}/l2/l3"), "act": {"sub": format!("{l1_id}/l2"), "act": {"sub": l1_id}}})
    );
    let (code, err) = f
        .delegate(l3["access_token"].as_str().unwrap(), "l4", "read")
        .unwrap_err();
    assert_eq!(code, 3);
    assert!(
        err.contains("would reach depth 4, beyond this Warden's limit of 3"),
        "{err}"
    );

    // A suspended ancestor stops delegation below it.
    f.admin.post(&format!("/v1/agents/{}/suspend", enc(&orch)), &json!({}));
    let (code, err) = f.delegate(l1_token, "late", "read").unwrap_err();
    assert_eq!(code, 3);
    assert!(
        err.contains(&format!("agent `{orch}` (an ancestor of `{l1_id}`) is suspended")),
        "{err}"
    );

    // Every credential event is recorded with its chain and reason.
    let events = f.admin.get("/v1/events?limit=10000").body;
    let events = events.as_array().unwrap();
    let of = |action: &str| events.iter().filter(|e| e["action"] == action).collect::<Vec<_>>();
    assert_eq!(of("credential.issue").len(), 1);
    assert_eq!(of("credential.delegate").len(), 3);
    let delegated = of("credential.delegate")[2];
    assert_eq!(
        delegated["after"]["chain"],
        json!([orch, l1_id, format!("{l1_id}/l2"), format!("{l1_id}/l2/l3")])
    );
    let refusals = of("credential.refuse");
    assert_eq!(refusals.len(), 3, "{refusals:?}");
    assert!(
        refusals[0]["after"]["reason"]
            .as_str()
            .unwrap()
            .contains("scope `write` is not held")
    );
    assert_eq!(refusals[0]["after"]["error"], "invalid_scope");
    assert_eq!(refusals[0]["after"]["chain"], json!([orch, l1_id]));
}

#[test]
fn revoking_an_orchestrator_stops_its_whole_tree_and_nothing_else() {
    let f = fleet();
    let (orch, secret) = f.agent("orch", &["read"]);
    let (sibling, sibling_secret) = f.agent("sibling", &["read"]);
    let root = f.issue(&orch, &secret);
    let l1 = f.delegate(&root, "a", "read").unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let l2 = f.delegate(&l1, "b", "read").unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let l3 = f.delegate(&l2, "c", "read").unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let sibling_root = f.issue(&sibling, &sibling_secret);
    let sibling_sub = f.delegate(&sibling_root, "a", "read").unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    for token in [&root, &l1, &l2, &l3, &sibling_root, &sibling_sub] {
        assert!(f.active(token));
    }

    // A gateway long-polling the feed hears about the revocation without asking again.
    let poller = {
        let api = f.admin.clone();
        std::thread::spawn(move || api.get("/v1/revocations?since=0&wait=20").body)
    };
    std::thread::sleep(std::time::Duration::from_millis(300));
    let out = f.server.cli(&f.server.admin_token(), &["agent", "revoke", &orch]);
    assert!(out.status.success(), "{}", stderr(&out));
    // The revoke has returned: every verification from now on refuses the tree.
    for token in [&root, &l1, &l2, &l3] {
        let answer = f.introspect(token);
        assert_eq!(answer["active"], false, "{answer}");
        assert!(answer["reason"].as_str().unwrap().contains("is revoked"), "{answer}");
    }
    for token in [&sibling_root, &sibling_sub] {
        assert!(f.active(token), "the sibling tree keeps working");
    }
    let feed = poller.join().unwrap();
    let entries = feed["entries"].as_array().unwrap();
    assert!(
        entries.iter().any(|e| e["agent"] == orch && e["state"] == "revoked"),
        "{feed}"
    );
    assert_eq!(feed["seq"], entries.last().unwrap()["seq"]);
    // The revocation cascades in the registry too.
    let listed = f.admin.get("/v1/agents").body;
    for agent in listed.as_array().unwrap() {
        let id = agent["id"].as_str().unwrap();
        let expect = if id.starts_with(&orch) { "revoked" } else { "active" };
        assert_eq!(agent["status"], expect, "{id}");
    }
    let reissue = Api::anonymous(&f.server.url).post(
        "/oauth2/token",
        &json!({"grant_type": "client_credentials", "client_id": orch, "client_secret": secret}),
    );
    assert_eq!(reissue.body["error"], "invalid_grant");
}

#[test]
fn suspend_and_resume_invalidate_old_tokens_only() {
    let f = fleet();
    let (id, secret) = f.agent("recon", &["read"]);
    let before = f.issue(&id, &secret);
    f.admin.post(&format!("/v1/agents/{}/suspend", enc(&id)), &json!({}));
    assert!(!f.active(&before));
    // Tokens are stamped in whole seconds; move past the second of the suspension.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    f.admin.post(&format!("/v1/agents/{}/resume", enc(&id)), &json!({}));
    assert!(!f.active(&before), "a token from before the suspension stays refused");
    let after = f.issue(&id, &secret);
    assert!(f.active(&after), "{}", f.introspect(&after));
}

#[test]
fn key_rotation_keeps_old_tokens_valid() {
    let f = fleet();
    let (id, secret) = f.agent("recon", &["read"]);
    let old = f.issue(&id, &secret);
    let out = f.server.cli(&f.server.admin_token(), &["--json", "keys", "rotate"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let rotated: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(rotated["published"].as_array().unwrap().len(), 2);
    let jwks = Api::anonymous(&f.server.url).get("/.well-known/jwks.json").body;
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 2);
    let new = f.issue(&id, &secret);
    let kid = |t: &str| {
        use base64::Engine;
        let header: Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(t.split('.').next().unwrap())
                .unwrap(),
        )
        .unwrap();
        header["kid"].as_str().unwrap().to_owned()
    };
    assert_eq!(kid(&new), rotated["kid"].as_str().unwrap());
    assert_ne!(kid(&old), kid(&new));
    assert!(f.active(&old) && f.active(&new));
    assert!(
        peer(&["verify", &f.server.url, &old, ISSUER, AUDIENCE])
            .status
            .success()
    );
    assert!(
        peer(&["verify", &f.server.url, &new, ISSUER, AUDIENCE])
            .status
            .success()
    );
    let team_admin = f.admin.post(
        "/v1/access-tokens",
        &json!({"name": "ta", "role": "team-admin", "team": "payments"}),
    );
    let out = f
        .server
        .cli(team_admin.body["token"].as_str().unwrap(), &["keys", "rotate"]);
    assert_eq!(out.status.code(), Some(3));
}
