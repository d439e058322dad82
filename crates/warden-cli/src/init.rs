//! `warden init` (the golden path) and `warden template …`.
//!
//! `init` registers the agent (origin `golden-path`, recording the template version), writes its
//! credentials to `.warden/agent.json` (0600, git-ignored) and renders the platform's template into
//! the project. It is idempotent: an existing `.warden/agent.json` whose agent the server knows is
//! reused (never re-registered) and the project is re-rendered from the template version that made
//! it, so a second run changes nothing. `.warden/init.json` remembers a hash of every file it wrote;
//! a file whose content differs from both the rendering and that hash was edited by someone, and is
//! left alone (the run fails naming it) unless `--force`.
//!
//! `init --managed DIR` renders the template's `managed/` files (managed settings for a fleet) into
//! DIR and registers nothing.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use warden_core::golden_path::{self, MANAGED_DIR};

use crate::agent_auth::{AGENT_FILE, AgentFile, WARDEN_DIR, read_agent_file, write_private};
use crate::cli::{InitArgs, TemplateCommand};
use crate::client::{Client, ClientError, encode_segment};
use crate::output;

const INIT_FILE: &str = "init.json";

/// `.warden/init.json`: what `warden init` wrote, to tell its own files from a user's edits.
#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
struct InitRecord {
    agent_id: String,
    template: String,
    template_version: i64,
    /// Path to the SHA-256 (hex) of the text written there.
    files: BTreeMap<String, String>,
}

fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Single-quotes `s` for a POSIX shell.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn warden_binary() -> anyhow::Result<String> {
    let exe = std::env::current_exe().context("cannot find the path of the running `warden` binary")?;
    let exe = fs::canonicalize(&exe).unwrap_or(exe);
    exe.to_str()
        .map(str::to_owned)
        .context("the path of the `warden` binary is not valid UTF-8")
}

fn fetch_template(client: &Client, name: &str, version: Option<i64>) -> anyhow::Result<Value> {
    let mut path = format!("/v1/templates/{}", encode_segment(name));
    if let Some(version) = version {
        path.push_str(&format!("?version={version}"));
    }
    Ok(client.get(&path)?)
}

fn template_files(template: &Value) -> anyhow::Result<BTreeMap<String, String>> {
    serde_json::from_value(template["files"].clone()).context("the server sent a template without files")
}

/// What happens to one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Create,
    Unchanged,
    Update,
    Overwrite,
    Conflict,
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Action::Create => "created",
            Action::Unchanged => "unchanged",
            Action::Update => "updated",
            Action::Overwrite => "overwritten",
            Action::Conflict => "conflict",
        }
    }
}

/// Decides what to do with `target` given the rendering, what init wrote last time (if anything)
/// and `--force`.
fn plan(target: &Path, rendered: Option<&str>, recorded: Option<&String>, force: bool) -> Action {
    let Ok(current) = fs::read_to_string(target) else {
        return if target.exists() && !force {
            Action::Conflict
        } else if target.exists() {
            Action::Overwrite
        } else {
            Action::Create
        };
    };
    if rendered == Some(current.as_str()) {
        return Action::Unchanged;
    }
    if recorded.is_some_and(|hash| *hash == sha256_hex(&current)) {
        return Action::Update;
    }
    if force { Action::Overwrite } else { Action::Conflict }
}

fn refuse_conflicts(dir: &Path, conflicts: &[String]) -> anyhow::Result<()> {
    if conflicts.is_empty() {
        return Ok(());
    }
    bail!(
        "{} in `{}` would be replaced but {} not written by warden init or edited since: {}; keep the edits, or run again with --force to overwrite",
        if conflicts.len() == 1 { "a file" } else { "files" },
        dir.display(),
        if conflicts.len() == 1 { "was" } else { "were" },
        conflicts
            .iter()
            .map(|c| format!("`{c}`"))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

fn write_file(target: &Path, text: &str) -> anyhow::Result<()> {
    if let Some(parent) = target.parent() {
        fs::create_dir_all(parent).with_context(|| format!("cannot create `{}`", parent.display()))?;
    }
    fs::write(target, text).with_context(|| format!("cannot write `{}`", target.display()))
}

/// Adds `.warden/` to DIR/.gitignore unless it is there; whether it changed anything.
fn ignore_warden_dir(dir: &Path) -> anyhow::Result<bool> {
    let path = dir.join(".gitignore");
    let current = fs::read_to_string(&path).unwrap_or_default();
    if current
        .lines()
        .any(|l| matches!(l.trim(), ".warden" | ".warden/" | "/.warden" | "/.warden/"))
    {
        return Ok(false);
    }
    let mut next = current;
    if !next.is_empty() && !next.ends_with('\n') {
        next.push('\n');
    }
    next.push_str("# Warden: the agent's credentials and local state\n.warden/\n");
    fs::write(&path, next).with_context(|| format!("cannot write `{}`", path.display()))?;
    Ok(true)
}

/// `warden init`.
pub(crate) fn run(client: &Client, server: &str, json_out: bool, args: InitArgs) -> anyhow::Result<()> {
    fs::create_dir_all(&args.dir).with_context(|| format!("cannot create `{}`", args.dir.display()))?;
    let dir = fs::canonicalize(&args.dir).with_context(|| format!("cannot resolve `{}`", args.dir.display()))?;
    let server = server.trim_end_matches('/').to_owned();
    let warden = warden_binary()?;
    let gateway = args.gateway_url.clone().unwrap_or_else(|| format!("{server}/mcp"));
    let mut values: BTreeMap<&str, String> = BTreeMap::from([
        ("server", server.clone()),
        ("gateway", gateway),
        ("otlp_endpoint", format!("{server}/v1/otlp")),
        ("warden", warden.clone()),
    ]);
    if args.managed {
        values.insert("headers_helper", format!("{} token header", shell_quote(&warden)));
        return managed(client, json_out, &dir, &args, &values);
    }
    let (Some(team), Some(name), Some(purpose)) = (&args.team, &args.name, &args.purpose) else {
        bail!("give --team, --name and --purpose (or --managed)");
    };
    let project = dir.to_str().context("the project path is not valid UTF-8")?.to_owned();
    values.insert("project_dir", project.clone());
    values.insert(
        "headers_helper",
        format!("{} token header --dir {}", shell_quote(&warden), shell_quote(&project)),
    );
    let warden_dir = dir.join(WARDEN_DIR);
    let record: InitRecord = fs::read_to_string(warden_dir.join(INIT_FILE))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();

    // The agent: the project's own if the server knows it, else a new registration.
    let known = match read_agent_file(&dir) {
        Ok(existing) => match client.get(&format!("/v1/agents/{}", encode_segment(&existing.agent_id))) {
            Ok(agent) => {
                if agent["team"] != json!(team) || agent["name"] != json!(name) {
                    bail!(
                        "`{}` is already the project of agent `{}`; give its --team and --name, or use another directory",
                        dir.display(),
                        existing.agent_id
                    );
                }
                Some(agent)
            }
            Err(ClientError::Api { status: 404, .. }) => None,
            Err(e) => return Err(e.into()),
        },
        Err(_) if warden_dir.join(AGENT_FILE).exists() => {
            bail!(
                "`{}` exists but cannot be read; remove it to register a new agent",
                warden_dir.join(AGENT_FILE).display()
            )
        }
        Err(_) => None,
    };
    let (agent, template, registered) = match known {
        Some(agent) => {
            let (t_name, t_version) = match (&agent["template"]["name"], agent["template"]["version"].as_i64()) {
                (Value::String(n), Some(v)) => (n.clone(), Some(v)),
                _ if !record.template.is_empty() => (record.template.clone(), Some(record.template_version)),
                _ => (args.template.clone(), None),
            };
            (agent, fetch_template(client, &t_name, t_version)?, false)
        }
        None => {
            let template = fetch_template(client, &args.template, None)?;
            // Before registering: files in the way would make the run fail after the registration.
            let mut conflicts = Vec::new();
            for path in template_files(&template)?
                .keys()
                .filter(|p| !p.starts_with(MANAGED_DIR))
            {
                if plan(&dir.join(path), None, record.files.get(path), args.force) == Action::Conflict {
                    conflicts.push(path.clone());
                }
            }
            refuse_conflicts(&dir, &conflicts)?;
            let body = json!({
                "team": team, "name": name, "purpose": purpose, "owner": args.owner, "tags": args.tags,
                "origin": "golden-path",
                "template": {"name": template["name"], "version": template["version"]},
            });
            let agent = client.post("/v1/agents", &body)?;
            let credentials = AgentFile {
                agent_id: agent["id"]
                    .as_str()
                    .context("the server registered an agent without an id")?
                    .to_owned(),
                client_secret: agent["client_secret"]
                    .as_str()
                    .context("the server registered an agent without a client secret")?
                    .to_owned(),
                server: server.clone(),
            };
            fs::create_dir_all(&warden_dir).with_context(|| format!("cannot create `{}`", warden_dir.display()))?;
            fs::set_permissions(&warden_dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
                .with_context(|| format!("cannot restrict `{}`", warden_dir.display()))?;
            let text = serde_json::to_string_pretty(&credentials)?;
            write_private(&warden_dir.join(AGENT_FILE), format!("{text}\n").as_bytes())
                .with_context(|| format!("cannot write `{}`", warden_dir.join(AGENT_FILE).display()))?;
            (agent, template, true)
        }
    };
    let agent_id = agent["id"].as_str().unwrap_or_default().to_owned();
    for (key, field) in [
        ("agent_id", "id"),
        ("team", "team"),
        ("name", "name"),
        ("purpose", "purpose"),
    ] {
        values.insert(key, agent[field].as_str().unwrap_or_default().to_owned());
    }

    let mut actions = BTreeMap::new();
    let mut writes = Vec::new();
    let mut conflicts = Vec::new();
    let mut hashes = BTreeMap::new();
    for (path, text) in template_files(&template)? {
        if path.starts_with(MANAGED_DIR) {
            continue;
        }
        let rendered = golden_path::render(&path, &text, &values)?;
        let target = dir.join(&path);
        let action = plan(&target, Some(&rendered), record.files.get(&path), args.force);
        match action {
            Action::Conflict => conflicts.push(path.clone()),
            Action::Unchanged => {}
            _ => writes.push((target, rendered.clone())),
        }
        hashes.insert(path.clone(), sha256_hex(&rendered));
        actions.insert(path, action);
    }
    refuse_conflicts(&dir, &conflicts)?;
    for (target, text) in &writes {
        write_file(target, text)?;
    }
    let ignored = ignore_warden_dir(&dir)?;
    let next = InitRecord {
        agent_id: agent_id.clone(),
        template: template["name"].as_str().unwrap_or_default().to_owned(),
        template_version: template["version"].as_i64().unwrap_or_default(),
        files: hashes,
    };
    if next != record {
        let text = serde_json::to_string_pretty(&next)?;
        write_private(&warden_dir.join(INIT_FILE), format!("{text}\n").as_bytes())
            .with_context(|| format!("cannot write `{}`", warden_dir.join(INIT_FILE).display()))?;
    }

    let summary = json!({
        "id": agent_id,
        "registered": registered,
        "template": {"name": next.template, "version": next.template_version},
        "files": actions.iter().map(|(p, a)| (p.clone(), json!(a.as_str()))).collect::<serde_json::Map<_, _>>(),
    });
    if json_out {
        output::json(&summary);
        return Ok(());
    }
    if registered {
        println!(
            "registered agent {agent_id} (golden-path, template `{}` v{}); credentials in {}",
            next.template,
            next.template_version,
            warden_dir.join(AGENT_FILE).display()
        );
    } else {
        println!(
            "agent {agent_id} is already registered; reusing {}",
            warden_dir.join(AGENT_FILE).display()
        );
    }
    for (path, action) in &actions {
        println!("  {:<11} {path}", action.as_str());
    }
    if ignored {
        println!("  {:<11} .gitignore (.warden/)", "updated");
    }
    if !registered && writes.is_empty() && !ignored {
        println!("nothing changed");
    }
    Ok(())
}

/// `warden init --managed DIR`: the template's managed settings, rendered into DIR.
fn managed(
    client: &Client,
    json_out: bool,
    dir: &Path,
    args: &InitArgs,
    values: &BTreeMap<&str, String>,
) -> anyhow::Result<()> {
    let template = fetch_template(client, &args.template, None)?;
    let mut actions = BTreeMap::new();
    let mut writes = Vec::new();
    let mut conflicts = Vec::new();
    for (path, text) in template_files(&template)? {
        let Some(relative) = path.strip_prefix(MANAGED_DIR) else {
            continue;
        };
        let rendered = golden_path::render(&path, &text, values)?;
        let target = dir.join(relative);
        let action = plan(&target, Some(&rendered), None, args.force);
        match action {
            Action::Conflict => conflicts.push(relative.to_owned()),
            Action::Unchanged => {}
            _ => writes.push((target, rendered)),
        }
        actions.insert(relative.to_owned(), action);
    }
    if actions.is_empty() {
        bail!(
            "template `{}` has no managed settings (files under `{MANAGED_DIR}`)",
            args.template
        );
    }
    refuse_conflicts(dir, &conflicts)?;
    for (target, text) in &writes {
        write_file(target, text)?;
    }
    if json_out {
        output::json(&json!({
            "template": {"name": template["name"], "version": template["version"]},
            "files": actions.iter().map(|(p, a)| (p.clone(), json!(a.as_str()))).collect::<serde_json::Map<_, _>>(),
        }));
        return Ok(());
    }
    println!(
        "managed settings from template `{}` v{} in {}:",
        template["name"].as_str().unwrap_or_default(),
        template["version"],
        dir.display()
    );
    for (path, action) in &actions {
        println!("  {:<11} {path}", action.as_str());
    }
    Ok(())
}

/// Every file under `root`, by relative `/`-separated path.
fn read_tree(root: &Path) -> anyhow::Result<BTreeMap<String, String>> {
    let mut files = BTreeMap::new();
    let mut pending: Vec<PathBuf> = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir).with_context(|| format!("cannot read `{}`", dir.display()))? {
            let path = entry?.path();
            if path.is_dir() {
                pending.push(path);
                continue;
            }
            let relative = path
                .strip_prefix(root)
                .ok()
                .and_then(Path::to_str)
                .with_context(|| format!("`{}` has a path that is not UTF-8", path.display()))?
                .to_owned();
            let text =
                fs::read_to_string(&path).with_context(|| format!("cannot read `{}` as text", path.display()))?;
            files.insert(relative, text);
        }
    }
    Ok(files)
}

/// `warden template …`.
pub(crate) fn template(client: &Client, json_out: bool, cmd: TemplateCommand) -> anyhow::Result<()> {
    match cmd {
        TemplateCommand::List => {
            let res = client.get("/v1/templates")?;
            if json_out {
                output::json(&res);
            } else {
                output::table(
                    &res,
                    &[
                        ("name", "NAME"),
                        ("version", "VERSION"),
                        ("created_by", "BY"),
                        ("created_at", "CREATED"),
                    ],
                );
            }
        }
        TemplateCommand::Show { name, version, out } => {
            let res = fetch_template(client, &name, version)?;
            if let Some(out) = out {
                for (path, text) in template_files(&res)? {
                    write_file(&out.join(&path), &text)?;
                }
                println!("wrote template `{name}` v{} to {}", res["version"], out.display());
            } else if json_out {
                output::json(&res);
            } else {
                println!(
                    "template `{name}` v{} by {} at {}",
                    res["version"],
                    res["created_by"].as_str().unwrap_or_default(),
                    res["created_at"].as_str().unwrap_or_default()
                );
                for (path, text) in template_files(&res)? {
                    println!("\n=== {path}");
                    print!("{text}");
                }
                let placeholders: Vec<String> = golden_path::PLACEHOLDERS
                    .iter()
                    .map(|(n, what)| format!("  {{{{{n}}}}}  {what}"))
                    .collect();
                println!("\nplaceholders:\n{}", placeholders.join("\n"));
            }
        }
        TemplateCommand::Set { name, from } => {
            let files = read_tree(&from)?;
            golden_path::check_files(&files)?;
            let res = client.post("/v1/templates", &json!({"name": name, "files": files}))?;
            if json_out {
                output::json(&res);
            } else {
                println!("stored template `{name}` version {}", res["version"]);
            }
        }
    }
    Ok(())
}
