//! `warden serve` as a process: first start, restart, the single-writer lock, the trust domain, and
//! SIGTERM losing no acknowledged write.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use serde_json::json;

use crate::support::{Server, WARDEN, stderr};

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn first_start_restart_and_lock() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("warden-data");
    let server = Server::start(&data);
    let token = server.admin_token();
    assert!(token.starts_with("wdn_"));
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("admin.token")), 0o600);
    assert_eq!(mode(&data.join("warden.db")), 0o600);
    for key in std::fs::read_dir(data.join("keys")).unwrap() {
        assert_eq!(mode(&key.unwrap().path()), 0o600, "signing keys are private");
    }
    let admin = server.api(&token);
    assert_eq!(admin.post("/v1/teams", &json!({"name": "payments"})).status, 201);

    // A second process on the same directory refuses to start, clearly, and changes nothing.
    let out = Command::new(WARDEN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.starts_with("error: data directory `"), "{err}");
    assert!(err.contains("is in use by another warden process (pid "), "{err}");
    assert_eq!(admin.get("/v1/teams").body.as_array().unwrap().len(), 1);

    let status = server.stop();
    assert!(status.success(), "SIGTERM is a clean stop: {status:?}");

    // Restart: same token, same data, no new bootstrap token.
    let server = Server::start(&data);
    assert_eq!(server.printed_token, None, "the bootstrap token is printed once");
    assert_eq!(server.admin_token(), token);
    let teams = server.api(&token).get("/v1/teams");
    assert_eq!(teams.status, 200);
    assert_eq!(teams.body[0]["name"], "payments");
    drop(server);

    // The trust domain is fixed at first start.
    let out = Command::new(WARDEN)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--trust-domain",
            "acme.internal",
            "--data-dir",
        ])
        .arg(&data)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("was created with trust domain `warden.local`, not `acme.internal`"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn custom_trust_domain_shapes_agent_ids() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), &["--trust-domain", "acme.internal"]);
    let admin = server.api(&server.admin_token());
    admin.post("/v1/teams", &json!({"name": "payments"}));
    let agent = admin.post(
        "/v1/agents",
        &json!({"team": "payments", "name": "bot", "purpose": "p"}),
    );
    assert_eq!(agent.body["id"], "spiffe://acme.internal/team/payments/agent/bot");

    let out = Command::new(WARDEN)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--trust-domain",
            "Bad Domain",
            "--data-dir",
        ])
        .arg(tempfile::tempdir().unwrap().path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("trust domain `Bad Domain` is invalid"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn sigterm_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let token = server.admin_token();
    let admin = server.api(&token);
    let writer = {
        let admin = admin.clone();
        std::thread::spawn(move || {
            let mut acknowledged = Vec::new();
            for i in 0..2000 {
                let name = format!("team-{i}");
                let uri = format!("{}/v1/teams", admin.base);
                let res = ureq::post(&uri)
                    .header("Authorization", &format!("Bearer {}", admin.token.as_deref().unwrap()))
                    .send_json(json!({"name": name}));
                match res {
                    Ok(r) if r.status() == 201 => acknowledged.push(name),
                    _ => break,
                }
            }
            acknowledged
        })
    };
    // Stop once some writes have been acknowledged, while more are in flight.
    while admin.get("/v1/teams").body.as_array().map_or(0, Vec::len) < 20 {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let status = server.stop();
    assert!(status.success());
    let acknowledged = writer.join().unwrap();
    assert!(!acknowledged.is_empty());

    let server = Server::start(dir.path());
    let teams = server.api(&token).get("/v1/teams").body;
    let stored: std::collections::HashSet<&str> = teams
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    for name in &acknowledged {
        assert!(stored.contains(name.as_str()), "acknowledged team `{name}` was lost");
    }
}
