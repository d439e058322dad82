//! `warden init` and `warden template` end to end: the project files (spec §1.2, §1.8, §1.9, §3, §7),
//! idempotency, user edits kept unless `--force`, versioned templates, managed settings.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use serde_json::{Value, json};

use crate::hook::Project;
use crate::support::{stderr, stdout};

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn snapshot(dir: &Path) -> Vec<(String, String, std::time::SystemTime)> {
    let mut out = Vec::new();
    for rel in [
        ".mcp.json",
        ".claude/settings.json",
        ".claude/skills/warden/SKILL.md",
        ".gitignore",
        ".warden/agent.json",
        ".warden/init.json",
    ] {
        let path = dir.join(rel);
        let meta = std::fs::metadata(&path).unwrap_or_else(|e| panic!("{rel}: {e}"));
        out.push((
            rel.to_owned(),
            std::fs::read_to_string(&path).unwrap(),
            meta.modified().unwrap(),
        ));
    }
    out
}

#[test]
fn init_writes_a_ready_project_and_a_second_run_changes_nothing() {
    let p = Project::new();
    let creds = p.dir.join(".warden/agent.json");
    assert_eq!(std::fs::metadata(&creds).unwrap().permissions().mode() & 0o777, 0o600);
    let creds = read_json(&creds);
    assert_eq!(creds["agent_id"], json!(p.agent));
    assert!(creds["client_secret"].as_str().unwrap().len() >= 32);
    assert_eq!(creds["server"], json!(p.server.url));
    assert!(
        std::fs::read_to_string(p.dir.join(".gitignore"))
            .unwrap()
            .lines()
            .any(|l| l == ".warden/")
    );

    let mcp = read_json(&p.dir.join(".mcp.json"));
    let servers = mcp["mcpServers"].as_object().unwrap();
    assert_eq!(servers.keys().collect::<Vec<_>>(), ["warden"], "only the gateway");
    assert_eq!(servers["warden"]["type"], "http");
    assert_eq!(servers["warden"]["url"], json!(format!("{}/mcp", p.server.url)));
    let helper = servers["warden"]["headersHelper"].as_str().unwrap();
    assert!(helper.contains("token header --dir"), "{helper}");
    assert!(
        servers["warden"].get("headers").is_none(),
        "no long-lived token in the file"
    );

    let settings = read_json(&p.dir.join(".claude/settings.json"));
    let hooks = settings["hooks"].as_object().unwrap();
    for event in [
        "SessionStart",
        "UserPromptSubmit",
        "PreToolUse",
        "PermissionRequest",
        "PostToolUse",
        "PostToolUseFailure",
        "SubagentStart",
        "SubagentStop",
        "Stop",
        "SessionEnd",
    ] {
        let handler = &hooks[event][0]["hooks"][0];
        assert_eq!(handler["type"], "command", "{event}");
        assert!(Path::new(handler["command"].as_str().unwrap()).is_absolute(), "{event}");
        assert_eq!(handler["args"], json!(["hook", "claude-code"]), "{event}");
    }
    assert_eq!(hooks["PreToolUse"][0]["matcher"], "*");
    assert_eq!(settings["permissions"]["defaultMode"], "dontAsk");
    assert_eq!(settings["permissions"]["disableBypassPermissionsMode"], "disable");
    let env = &settings["env"];
    assert_eq!(env["CLAUDE_CODE_ENABLE_TELEMETRY"], "1");
    assert_eq!(env["OTEL_EXPORTER_OTLP_PROTOCOL"], "http/json");
    assert_eq!(
        env["OTEL_EXPORTER_OTLP_ENDPOINT"],
        json!(format!("{}/v1/otlp", p.server.url))
    );
    assert!(
        env["OTEL_RESOURCE_ATTRIBUTES"]
            .as_str()
            .unwrap()
            .contains(&format!("warden.agent.id={}", p.agent))
    );
    let skill = std::fs::read_to_string(p.dir.join(".claude/skills/warden/SKILL.md")).unwrap();
    assert!(skill.starts_with("---\nname: warden\ndescription: "), "{skill}");
    assert!(skill.contains(&p.agent) && skill.contains("writes payment code"));

    let shown: Value = serde_json::from_str(&stdout(&p.cli(&["--json", "agent", "show", &p.agent]))).unwrap();
    assert_eq!(shown["origin"], "golden-path");
    assert_eq!(shown["template"], json!({"name": "default", "version": 1}));

    let before = snapshot(&p.dir);
    let agents = p.cli(&["--json", "agent", "list"]);
    let out = p.init(&[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("nothing changed"), "{}", stdout(&out));
    assert_eq!(snapshot(&p.dir), before, "a second run rewrites nothing");
    assert_eq!(
        stdout(&p.cli(&["--json", "agent", "list"])),
        stdout(&agents),
        "and registers nothing"
    );
    // The hook and the helper work in the project as written.
    let answer = p.decide(&p.payload(json!({"hook_event_name":"PreToolUse","session_id":"s","tool_name":"Read","tool_input":{"file_path":"/etc/hosts"}})));
    assert_eq!(answer["hookSpecificOutput"]["permissionDecision"], "deny");
}

#[test]
fn edited_files_are_kept_unless_forced() {
    let p = Project::new();
    let settings = p.dir.join(".claude/settings.json");
    std::fs::write(&settings, "{\"mine\": true}\n").unwrap();
    let out = p.init(&[]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.starts_with("error: ") && err.contains("`.claude/settings.json`") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&settings).unwrap(), "{\"mine\": true}\n");
    let out = p.init(&["--force"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(read_json(&settings)["hooks"].is_object());
    // Another agent's name in the same project is refused.
    let out = p.cli(&[
        "init",
        p.dir.to_str().unwrap(),
        "--team",
        "payments",
        "--name",
        "other",
        "--purpose",
        "x",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("already the project of agent"),
        "{}",
        stderr(&out)
    );
    // A fresh project refuses to overwrite files it did not write, before registering anything.
    let fresh = p.dir.parent().unwrap().join("fresh");
    std::fs::create_dir_all(&fresh).unwrap();
    std::fs::write(fresh.join(".mcp.json"), "{}").unwrap();
    let out = p.cli(&[
        "init",
        fresh.to_str().unwrap(),
        "--team",
        "payments",
        "--name",
        "fresh",
        "--purpose",
        "x",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stderr(&out).contains("`.mcp.json`"), "{}", stderr(&out));
    assert_eq!(p.cli(&["agent", "show", "payments/fresh"]).status.code(), Some(1));
}

#[test]
fn templates_are_versioned_and_owned_by_the_platform() {
    let p = Project::new();
    let listed: Value = serde_json::from_str(&stdout(&p.cli(&["--json", "template", "list"]))).unwrap();
    assert_eq!(listed[0]["name"], "default");
    assert_eq!(listed[0]["version"], 1);
    let edit = p.dir.parent().unwrap().join("tpl");
    let out = p.cli(&["template", "show", "default", "--out", edit.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let skill = edit.join(".claude/skills/warden/SKILL.md");
    let text = std::fs::read_to_string(&skill).unwrap();
    std::fs::write(&skill, format!("{text}\nAsk #platform for help.\n")).unwrap();
    // Only the platform edits templates.
    let team_admin = stdout(&p.cli(&[
        "access-token",
        "create",
        "--role",
        "team-admin",
        "--team",
        "payments",
        "--name",
        "pay-admin",
    ]));
    let team_admin = team_admin.lines().last().unwrap().trim().to_owned();
    let out = p.server.cli(
        &team_admin,
        &["template", "set", "default", "--from", edit.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let out = p.cli(&["template", "set", "default", "--from", edit.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("version 2"), "{}", stdout(&out));
    std::fs::write(edit.join("bad.md"), "{{nope}}").unwrap();
    let out = p.cli(&["template", "set", "default", "--from", edit.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("unknown placeholder"), "{}", stderr(&out));

    // A new project gets version 2; the existing one stays on the version that made it.
    let second = p.dir.parent().unwrap().join("second");
    let out = p.server.cli(
        &team_admin,
        &[
            "init",
            second.to_str().unwrap(),
            "--team",
            "payments",
            "--name",
            "second",
            "--purpose",
            "x",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        std::fs::read_to_string(second.join(".claude/skills/warden/SKILL.md"))
            .unwrap()
            .contains("#platform")
    );
    let shown: Value = serde_json::from_str(&stdout(&p.cli(&["--json", "agent", "show", "payments/second"]))).unwrap();
    assert_eq!(shown["template"], json!({"name": "default", "version": 2}));
    let out = p.init(&[]);
    assert!(
        stdout(&out).contains("nothing changed"),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let v1: Value = serde_json::from_str(&stdout(&p.cli(&[
        "--json",
        "template",
        "show",
        "default",
        "--version",
        "1",
    ])))
    .unwrap();
    assert_eq!(v1["version"], 1);
}

#[test]
fn managed_settings_for_a_fleet() {
    let p = Project::new();
    let dir = p.dir.parent().unwrap().join("etc-claude-code");
    let out = p.cli(&["init", "--managed", dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let settings = read_json(&dir.join("managed-settings.json"));
    assert_eq!(settings["allowManagedHooksOnly"], true);
    assert_eq!(settings["allowManagedMcpServersOnly"], true);
    assert_eq!(
        settings["allowedMcpServers"],
        json!([{"serverUrl": format!("{}/mcp", p.server.url)}])
    );
    assert_eq!(settings["permissions"]["disableBypassPermissionsMode"], "disable");
    assert_eq!(
        settings["hooks"]["PreToolUse"][0]["hooks"][0]["args"],
        json!(["hook", "claude-code"])
    );
    let mcp = read_json(&dir.join("managed-mcp.json"));
    assert_eq!(
        mcp["mcpServers"].as_object().unwrap().keys().collect::<Vec<_>>(),
        ["warden"]
    );
    let again = p.cli(&["init", "--managed", dir.to_str().unwrap()]);
    assert!(stdout(&again).contains("unchanged"), "{}", stdout(&again));
    assert!(!stdout(&again).contains("created"), "{}", stdout(&again));
    let out = p.cli(&["init", "--managed", dir.to_str().unwrap(), "--team", "payments"]);
    assert_eq!(out.status.code(), Some(2), "--managed takes no agent");
}
