//! What each command does: build the request, call the API, print the answer (a table for people,
//! the API's JSON with `--json`).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Value, json};
use warden_gateway::remote::{RemoteConfig, RemoteControlPlane, SpoolLimits};
use warden_gateway::{Gateway, GatewayConfig};

use crate::cli::{
    AccessTokenCommand, AgentCommand, AuditCommand, Cli, Command, GatewayArgs, GuardrailCommand, HookCommand,
    KeysCommand, McpServerCommand, OutputFormat, PolicyCommand, ScopeCommand, TeamCommand, TokenCommand,
};
use crate::client::{Client, encode_segment};
use crate::output;
use warden_server::{say, shutdown_signal};

const AGENT_FIELDS: &[&str] = &[
    "id",
    "team",
    "name",
    "owner",
    "purpose",
    "tags",
    "status",
    "origin",
    "parent",
    "scopes",
    "created_at",
    "updated_at",
];
const AGENT_COLUMNS: &[(&str, &str)] = &[
    ("id", "ID"),
    ("status", "STATUS"),
    ("origin", "ORIGIN"),
    ("owner", "OWNER"),
    ("tags", "TAGS"),
    ("scopes", "SCOPES"),
];

pub(crate) fn run(cli: Cli) -> anyhow::Result<()> {
    let client = Client::new(&cli.server, cli.token.clone());
    let json = cli.json;
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::Gateway(args) => gateway(args, cli.token.as_deref()),
        Command::Team(cmd) => team(&client, json, cmd),
        Command::AccessToken(cmd) => access_token(&client, json, cmd),
        Command::Agent(cmd) => agent(&client, json, cmd),
        Command::McpServer(cmd) => mcp_server(&client, json, cmd),
        Command::Scope(cmd) => scope(&client, json, cmd),
        Command::Grant(args) => {
            let res = client.post(
                &format!("/v1/agents/{}/grants", encode_segment(&args.agent)),
                &json!({"scope": args.scope}),
            )?;
            show(json, &res, |v| {
                println!(
                    "granted scope `{}` to {}",
                    v["scope"].as_str().unwrap_or_default(),
                    v["agent"].as_str().unwrap_or_default()
                )
            });
            Ok(())
        }
        Command::Ungrant(args) => {
            let res = client.delete(&format!(
                "/v1/agents/{}/grants/{}",
                encode_segment(&args.agent),
                encode_segment(&args.scope)
            ))?;
            show(json, &res, |v| {
                println!(
                    "took scope `{}` from {}",
                    v["scope"].as_str().unwrap_or_default(),
                    v["agent"].as_str().unwrap_or_default()
                )
            });
            Ok(())
        }
        Command::Guardrail(cmd) => guardrail(&client, json, cmd),
        Command::Policy(cmd) => policy(&client, json, cmd),
        Command::Token(cmd) => token(&client, json, cli.token.as_deref(), cmd),
        Command::Keys(KeysCommand::Rotate) => {
            let res = client.post("/v1/keys/rotate", &json!({}))?;
            show(json, &res, |v| {
                println!(
                    "new signing key `{}`; published: {}",
                    v["kid"].as_str().unwrap_or_default(),
                    output_list(&v["published"])
                )
            });
            Ok(())
        }
        // `main` runs the hook itself: it has its own exit statuses.
        Command::Hook(HookCommand::ClaudeCode) => bail!("`warden hook claude-code` is run by `main`"),
        Command::Init(args) => crate::init::run(&client, &cli.server, json, args),
        Command::Template(cmd) => crate::init::template(&client, json, cmd),
        Command::Audit(AuditCommand::Query(args)) => {
            let format = if json { OutputFormat::Json } else { args.format };
            let body = serde_json::json!({"sql": args.sql, "format": format.as_str()});
            print_text(&client.post_for_text("/v1/audit/query", &body)?);
            Ok(())
        }
        Command::Audit(AuditCommand::Verify(args)) => crate::audit::verify(&client, json, &args),
        Command::Audit(AuditCommand::Export(args)) => {
            crate::audit::export(&cli.server, cli.token.as_deref(), json, &args)
        }
        Command::Audit(AuditCommand::VerifyPack(args)) => crate::audit::verify_pack(json, &args),
        Command::Govern(args) => {
            let format = if json { OutputFormat::Json } else { args.format };
            let path = format!("/v1/govern/{}?format={}", args.report.as_str(), format.as_str());
            print_text(&client.get_for_text(&path)?);
            Ok(())
        }
        Command::Whoami => {
            let res = client.get("/v1/whoami")?;
            show(json, &res, |v| output::record(v, &["name", "role", "team"]));
            Ok(())
        }
    }
}

/// Prints a rendered result, ending it with one newline.
fn print_text(text: &str) {
    if text.ends_with('\n') {
        print!("{text}");
    } else {
        println!("{text}");
    }
}

/// Prints `value` as JSON with `--json`, else through `human`.
fn show(json: bool, value: &Value, human: impl FnOnce(&Value)) {
    if json { output::json(value) } else { human(value) }
}

/// Logs warnings and errors (or what `RUST_LOG` asks for) of a long-running process to stderr.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

fn serve(args: crate::cli::ServeArgs) -> anyhow::Result<()> {
    init_logging();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let config = warden_server::ServeConfig {
        data_dir: args.data_dir,
        listen: args.listen,
        trust_domain: args.trust_domain,
        token_ttl_secs: args.token_ttl,
        max_delegation_depth: args.max_delegation_depth,
        time_zone: args.time_zone,
        keep_prompts: args.keep_prompts,
        lake_dir: args.lake,
    };
    runtime.block_on(warden_server::serve(config))?;
    Ok(())
}

/// `warden gateway`: a standalone MCP gateway deciding from the control plane's snapshot, until
/// SIGTERM or Ctrl-C.
fn gateway(args: GatewayArgs, token: Option<&str>) -> anyhow::Result<()> {
    let Some(token) = token.map(str::trim).filter(|t| !t.is_empty()) else {
        bail!(
            "the gateway needs an access token of role `gateway` to reach the control plane: pass --token or set \
             WARDEN_TOKEN (a platform-admin creates one with `warden access-token create --role gateway --name NAME`)"
        );
    };
    init_logging();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(run_gateway(args, token.to_owned()))
}

async fn run_gateway(args: GatewayArgs, token: String) -> anyhow::Result<()> {
    let mut config = RemoteConfig::new(args.control_plane, token);
    config.max_staleness = Duration::from_secs(args.max_staleness);
    config.refresh = Duration::from_secs(args.refresh);
    let remote = RemoteControlPlane::connect(config).await?;
    let limits = SpoolLimits {
        max_pending: args.spool_max_bytes,
        ..SpoolLimits::default()
    };
    let audit = Arc::new(remote.spool(&args.spool, limits)?);
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on `{}`", args.listen))?;
    let addr = listener.local_addr().context("cannot read the listening address")?;
    let issuer = remote.control_plane_url().to_owned();
    let gateway = Gateway::new(Arc::new(remote), audit.clone(), GatewayConfig::new(issuer.clone()));
    say(format_args!(
        "warden: gateway deciding from the control plane at {issuer} (for at most {}s without reaching it)",
        args.max_staleness
    ));
    say(format_args!("warden: gateway listening on http://{addr}"));
    let served = axum::serve(listener, gateway.router())
        .with_graceful_shutdown(gateway_shutdown())
        .await;
    gateway.shutdown().await;
    if let Err(err) = audit.flush(Duration::from_secs(5)).await {
        eprintln!("warden: {err}; the next start ships them");
    }
    served.context("the gateway failed")?;
    say(format_args!("warden: gateway stopped"));
    Ok(())
}

/// Resolves on SIGTERM or Ctrl-C, announcing it.
async fn gateway_shutdown() {
    shutdown_signal().await;
    say(format_args!(
        "warden: gateway shutting down; finishing in-flight requests"
    ));
}

fn team(client: &Client, json: bool, cmd: TeamCommand) -> anyhow::Result<()> {
    match cmd {
        TeamCommand::Create { name } => {
            let res = client.post("/v1/teams", &json!({ "name": name }))?;
            show(json, &res, |v| {
                println!("created team `{}`", v["name"].as_str().unwrap_or_default())
            });
        }
        TeamCommand::List => {
            let res = client.get("/v1/teams")?;
            show(json, &res, |v| {
                output::table(v, &[("name", "NAME"), ("created_at", "CREATED")])
            });
        }
    }
    Ok(())
}

fn access_token(client: &Client, json: bool, cmd: AccessTokenCommand) -> anyhow::Result<()> {
    match cmd {
        AccessTokenCommand::Create { role, team, name } => {
            let res = client.post(
                "/v1/access-tokens",
                &json!({ "name": name, "role": role, "team": team }),
            )?;
            show(json, &res, |v| {
                println!(
                    "created access token `{}` ({}); it is shown only once:",
                    v["name"].as_str().unwrap_or_default(),
                    v["role"].as_str().unwrap_or_default()
                );
                println!("{}", v["token"].as_str().unwrap_or_default());
            });
        }
        AccessTokenCommand::List => {
            let res = client.get("/v1/access-tokens")?;
            show(json, &res, |v| {
                output::table(
                    v,
                    &[
                        ("name", "NAME"),
                        ("role", "ROLE"),
                        ("team", "TEAM"),
                        ("created_at", "CREATED"),
                        ("revoked_at", "REVOKED"),
                    ],
                )
            });
        }
        AccessTokenCommand::Revoke { name } => {
            let res = client.delete(&format!("/v1/access-tokens/{}", encode_segment(&name)))?;
            show(json, &res, |v| {
                println!("revoked access token `{}`", v["name"].as_str().unwrap_or_default())
            });
        }
    }
    Ok(())
}

fn agent(client: &Client, json: bool, cmd: AgentCommand) -> anyhow::Result<()> {
    let lifecycle = |id: &str, verb: &str, reason: Option<String>| -> anyhow::Result<()> {
        let res = client.post(
            &format!("/v1/agents/{}/{verb}", encode_segment(id)),
            &json!({ "reason": reason }),
        )?;
        show(json, &res, |v| {
            println!(
                "{} is {}",
                v["id"].as_str().unwrap_or_default(),
                v["status"].as_str().unwrap_or_default()
            )
        });
        Ok(())
    };
    match cmd {
        AgentCommand::Register {
            team,
            name,
            purpose,
            owner,
            tags,
        } => {
            let res = client.post(
                "/v1/agents",
                &json!({ "team": team, "name": name, "purpose": purpose, "owner": owner, "tags": tags }),
            )?;
            show(json, &res, |v| {
                output::record(v, AGENT_FIELDS);
                println!("client_secret: {}", v["client_secret"].as_str().unwrap_or_default());
                println!("(the client secret is shown only once; trade it for tokens with `warden token issue`)");
            });
        }
        AgentCommand::List { team, tag } => {
            let mut query = Vec::new();
            if let Some(team) = team {
                query.push(format!("team={}", encode_segment(&team)));
            }
            if let Some(tag) = tag {
                query.push(format!("tag={}", encode_segment(&tag)));
            }
            let path = if query.is_empty() {
                "/v1/agents".to_owned()
            } else {
                format!("/v1/agents?{}", query.join("&"))
            };
            let res = client.get(&path)?;
            show(json, &res, |v| output::table(v, AGENT_COLUMNS));
        }
        AgentCommand::Show { id } => {
            let res = client.get(&format!("/v1/agents/{}", encode_segment(&id)))?;
            show(json, &res, |v| output::record(v, AGENT_FIELDS));
        }
        AgentCommand::Suspend { id, reason } => lifecycle(&id, "suspend", reason)?,
        AgentCommand::Resume { id, reason } => lifecycle(&id, "resume", reason)?,
        AgentCommand::Tag { id, tag } => {
            let res = client.post(
                &format!("/v1/agents/{}/tags", encode_segment(&id)),
                &json!({ "tag": tag }),
            )?;
            show(json, &res, |v| output::record(v, AGENT_FIELDS));
        }
        AgentCommand::Untag { id, tag } => {
            let res = client.delete(&format!(
                "/v1/agents/{}/tags/{}",
                encode_segment(&id),
                encode_segment(&tag)
            ))?;
            show(json, &res, |v| output::record(v, AGENT_FIELDS));
        }
        AgentCommand::Revoke { id, reason } => lifecycle(&id, "revoke", reason)?,
    }
    Ok(())
}

/// Splits `NAME=VALUE` pairs.
fn pairs(flag: &str, items: &[String]) -> anyhow::Result<serde_json::Map<String, Value>> {
    let mut map = serde_json::Map::new();
    for item in items {
        let Some((name, value)) = item.split_once('=') else {
            bail!("--{flag} `{item}` must be NAME=VALUE");
        };
        map.insert(name.to_owned(), Value::String(value.to_owned()));
    }
    Ok(map)
}

fn mcp_server(client: &Client, json: bool, cmd: McpServerCommand) -> anyhow::Result<()> {
    match cmd {
        McpServerCommand::Add {
            name,
            url,
            command,
            owner_team,
            sensitive,
            headers,
            env,
        } => {
            let transport = match (url, command) {
                (Some(url), _) => json!({ "kind": "http", "url": url }),
                (None, Some(command)) => {
                    let mut parts = command.into_iter();
                    let program = parts.next().unwrap_or_default();
                    json!({ "kind": "stdio", "command": program, "args": parts.collect::<Vec<_>>() })
                }
                (None, None) => bail!("give --url URL or --command CMD [ARG]..."),
            };
            let credentials = if headers.is_empty() && env.is_empty() {
                Value::Null
            } else {
                json!({ "headers": pairs("header", &headers)?, "env": pairs("env", &env)? })
            };
            let res = client.post(
                "/v1/mcp-servers",
                &json!({ "name": name, "transport": transport, "owner_team": owner_team, "sensitive": sensitive, "credentials": credentials }),
            )?;
            show(json, &res, |v| {
                println!("added MCP server `{}`", v["name"].as_str().unwrap_or_default())
            });
        }
        McpServerCommand::List => {
            let res = client.get("/v1/mcp-servers")?;
            show(json, &res, |v| {
                output::table(
                    v,
                    &[
                        ("name", "NAME"),
                        ("transport", "TRANSPORT"),
                        ("owner_team", "OWNER TEAM"),
                        ("sensitive", "SENSITIVE"),
                        ("has_credentials", "CREDENTIALS"),
                    ],
                )
            });
        }
    }
    Ok(())
}

fn scope(client: &Client, json: bool, cmd: ScopeCommand) -> anyhow::Result<()> {
    match cmd {
        ScopeCommand::Define {
            name,
            tools,
            sensitive,
            description,
        } => {
            let res = client.post(
                "/v1/scopes",
                &json!({ "name": name, "tools": tools, "sensitive": sensitive, "description": description }),
            )?;
            show(json, &res, |v| {
                println!("defined scope `{}`", v["name"].as_str().unwrap_or_default())
            });
        }
        ScopeCommand::List => {
            let res = client.get("/v1/scopes")?;
            show(json, &res, |v| {
                output::table(
                    v,
                    &[
                        ("name", "NAME"),
                        ("tools", "TOOLS"),
                        ("sensitive", "SENSITIVE"),
                        ("description", "DESCRIPTION"),
                    ],
                )
            });
        }
    }
    Ok(())
}

fn output_list(value: &Value) -> String {
    value
        .as_array()
        .map(|items| items.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", "))
        .unwrap_or_default()
}

fn token(client: &Client, json: bool, token: Option<&str>, cmd: TokenCommand) -> anyhow::Result<()> {
    let mut form: Vec<(&str, String)> = Vec::new();
    match cmd {
        TokenCommand::Header { dir } => return crate::agent_auth::header(dir.as_deref()),
        TokenCommand::Issue {
            agent,
            secret,
            ttl,
            scope,
        } => {
            form.push(("grant_type", "client_credentials".to_owned()));
            form.push(("client_id", agent));
            form.push(("client_secret", secret));
            if !scope.is_empty() {
                form.push(("scope", scope.join(" ")));
            }
            if let Some(ttl) = ttl {
                form.push(("ttl", ttl.to_string()));
            }
        }
        TokenCommand::Delegate {
            name,
            scope,
            ttl,
            purpose,
        } => {
            // `--token` is the global option: for delegation it carries the delegating agent's token.
            let Some(parent) = token.filter(|t| !t.is_empty()).map(str::to_owned) else {
                bail!("give the delegating agent's own access token with --token");
            };
            form.push((
                "grant_type",
                "urn:ietf:params:oauth:grant-type:token-exchange".to_owned(),
            ));
            form.push(("subject_token", parent));
            form.push((
                "subject_token_type",
                "urn:ietf:params:oauth:token-type:access_token".to_owned(),
            ));
            form.push(("name", name));
            form.push(("scope", scope.join(" ")));
            if let Some(ttl) = ttl {
                form.push(("ttl", ttl.to_string()));
            }
            if let Some(purpose) = purpose {
                form.push(("purpose", purpose));
            }
        }
    }
    let res = client.post_form("/oauth2/token", &form)?;
    show(json, &res, |v| {
        println!("{}", v["access_token"].as_str().unwrap_or_default())
    });
    Ok(())
}

fn guardrail(client: &Client, json: bool, cmd: GuardrailCommand) -> anyhow::Result<()> {
    match cmd {
        GuardrailCommand::Add { file, enforce } => {
            let text = std::fs::read_to_string(&file).with_context(|| format!("reading `{}`", file.display()))?;
            let res = client.post("/v1/guardrails", &json!({ "text": text, "enforce": enforce }))?;
            // The re-check report is JSON either way: it is what scripts and reviewers act on.
            if json {
                output::json(&res);
            } else {
                let id = res["guardrail"]["id"].as_str().unwrap_or_default();
                let violations = res["violations"].as_array().cloned().unwrap_or_default();
                println!(
                    "added guardrail `{id}`; {} existing grant(s) or tag(s) violate it",
                    violations.len()
                );
                if !violations.is_empty() {
                    output::json(&res["violations"]);
                }
            }
        }
        GuardrailCommand::List => {
            let res = client.get("/v1/guardrails")?;
            show(json, &res, |v| {
                output::table(
                    v,
                    &[
                        ("id", "ID"),
                        ("message", "MESSAGE"),
                        ("created_by", "BY"),
                        ("created_at", "CREATED"),
                    ],
                )
            });
        }
        GuardrailCommand::Remove { id } => {
            let res = client.delete(&format!("/v1/guardrails/{}", encode_segment(&id)))?;
            show(json, &res, |v| {
                println!("removed guardrail `{}`", v["id"].as_str().unwrap_or_default())
            });
        }
    }
    Ok(())
}

fn policy(client: &Client, json: bool, cmd: PolicyCommand) -> anyhow::Result<()> {
    match cmd {
        PolicyCommand::Check { agent, tool, args } => {
            let arguments: Value = match args {
                Some(text) => serde_json::from_str(&text).with_context(|| "--args must be JSON")?,
                None => Value::Null,
            };
            let agent_id = if agent.starts_with("spiffe://") {
                agent
            } else {
                client.get(&format!("/v1/agents/{}", encode_segment(&agent)))?["id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            };
            let res = client.post(
                "/v1/policy/check",
                &json!({ "agent": agent_id, "tool": tool, "arguments": arguments }),
            )?;
            show(json, &res, |v| {
                output::record(v, &["decision", "policy_ids", "reason"]);
            });
            if res["allow"] != true {
                return Err(
                    crate::client::ClientError::denied(res["reason"].as_str().unwrap_or("denied").to_owned()).into(),
                );
            }
        }
        PolicyCommand::Schema => {
            print!("{}", client.get_text("/v1/policy/schema")?);
        }
    }
    Ok(())
}
