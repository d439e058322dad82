//! Decision latency at fleet scale: sliced evaluation (the principal's policies only) against Cedar's
//! plain evaluation of the whole policy set over the whole entity store, in the same run.
//!
//! Fleet: 10,000 agents in 100 teams (a quarter of them subagents), 50 MCP servers, 40 scopes,
//! 5,000 grants and 20 guardrails (SoD, sensitive tools, business hours, arguments, cross-team,
//! a kill switch naming an agent, ten team-scoped and two subtree-scoped floors).
//!
//! Run with `cargo bench -p warden-policy --bench policy`. Targets: sliced p99 ≤ 100 µs and at least
//! 50× faster than plain. Without `--bench` (as `cargo test --all-targets` runs it, in debug) it runs a
//! tiny smoke configuration so the test suite stays fast.

use std::error::Error;
use std::hint::black_box;
use std::time::{Duration, Instant};

use warden_core::{Agent, AgentId, AgentStatus, McpServer, Name, Origin, Person, Role, Scope, ToolPattern, Transport};
use warden_policy::{Fleet, Guardrail, PolicyEngine, ToolCall, Weekday, parse_guardrail};

struct Config {
    teams: usize,
    agents_per_team: usize,
    grants: usize,
    cold_calls: usize,
    sliced_calls: usize,
    plain_calls: usize,
}

const FULL: Config = Config {
    teams: 100,
    agents_per_team: 100,
    grants: 5_000,
    cold_calls: 2_000,
    sliced_calls: 20_000,
    plain_calls: 200,
};

const SMOKE: Config = Config {
    teams: 12,
    agents_per_team: 20,
    grants: 120,
    cold_calls: 50,
    sliced_calls: 200,
    plain_calls: 10,
};

const SERVERS: usize = 50;
const SCOPES: usize = 40;

fn main() -> Result<(), Box<dyn Error>> {
    let bench = std::env::args().any(|a| a == "--bench");
    let config = if bench { FULL } else { SMOKE };
    let (agents, scopes, servers) = fleet(&config)?;
    let guardrails = guardrails(&agents)?;
    let n_grants: usize = agents.iter().map(|a| a.scopes.len()).sum();
    println!(
        "warden-policy: {} agents, {} grants, {} guardrails{}",
        agents.len(),
        n_grants,
        guardrails.len(),
        if bench {
            ""
        } else {
            " (smoke configuration: run `cargo bench` for figures)"
        }
    );

    let started = Instant::now();
    let engine = PolicyEngine::new(Fleet::new(&agents, &scopes, &servers), guardrails.clone())?;
    println!(
        "engine build                                   {:>10.1} ms",
        ms(started.elapsed())
    );

    let calls = calls(&agents, &scopes, config.sliced_calls);

    // First decision of each agent: builds and caches its slice.
    let mut seen = std::collections::HashSet::new();
    let first: Vec<&ToolCall> = calls
        .iter()
        .filter(|c| seen.insert(c.agent.clone()))
        .take(config.cold_calls)
        .collect();
    let cold = measure(&first, |c| engine.authorize_call(c).allow);
    report("sliced, first call of an agent (builds slice)", &cold, first.len());

    let rss_before = rss_mib();
    let started = Instant::now();
    engine.warm();
    println!(
        "warm(): every agent's slice                    {:>10.1} ms (resident memory {rss_before} -> {})",
        ms(started.elapsed()),
        rss_mib()
    );

    let all: Vec<&ToolCall> = calls.iter().collect();
    let sliced = measure(&all, |c| engine.authorize_call(c).allow);
    report("sliced, cached slice", &sliced, all.len());

    let started = Instant::now();
    let _ = engine.authorize_call_unsliced(&calls[0]);
    println!(
        "plain: build whole policy set and entity store {:>10.1} ms",
        ms(started.elapsed())
    );
    let sample: Vec<&ToolCall> = calls
        .iter()
        .step_by(calls.len() / config.plain_calls)
        .take(config.plain_calls)
        .collect();
    let plain = measure(&sample, |c| engine.authorize_call_unsliced(c).allow);
    report(
        &format!("plain Cedar, {} policies, whole store", n_grants + guardrails.len() + 1),
        &plain,
        sample.len(),
    );

    let (mut same, mut allows) = (0, 0);
    for c in &sample {
        let a = engine.authorize_call(c);
        allows += usize::from(a.allow);
        same += usize::from(a == engine.authorize_call_unsliced(c));
    }
    println!(
        "identical decisions sliced vs plain: {same}/{} ({allows} allowed)",
        sample.len()
    );
    let total_allows = calls.iter().filter(|c| engine.authorize_call(c).allow).count();
    println!("allowed among all sliced calls: {total_allows}/{}", calls.len());

    let p50_ratio = plain.p50.as_secs_f64() / sliced.p50.as_secs_f64();
    let p99_ratio = plain.p99.as_secs_f64() / sliced.p99.as_secs_f64();
    println!("ratio plain/sliced: p50 {p50_ratio:.0}x, p99 {p99_ratio:.0}x");
    if bench {
        let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
        println!(
            "targets: sliced p99 <= 100 us {}; >= 50x faster {}",
            verdict(sliced.p99 <= Duration::from_micros(100)),
            verdict(p50_ratio >= 50.0)
        );
    }

    // Control-plane operations around decisions.
    let admin = Person {
        name: Name::parse("bench-admin")?,
        role: Role::PlatformAdmin,
        team: None,
    };
    let grant_targets: Vec<&Agent> = agents.iter().step_by(7).take(config.cold_calls).collect();
    let deploy = Name::parse("scope-0")?;
    let grants = measure(&grant_targets, |a| engine.authorize_grant(&admin, &a.id, &deploy).allow);
    report("authorize_grant (SoD at grant time)", &grants, grant_targets.len());

    let mut changed = agents[1].clone();
    changed.scopes.push(Name::parse("scope-1")?);
    let started = Instant::now();
    let next = engine.with_agent(&changed)?;
    println!(
        "with_agent (one grant changed)                 {:>10.2} ms",
        ms(started.elapsed())
    );
    black_box(next);

    let started = Instant::now();
    let found = engine.violations(&guardrails[0]);
    println!(
        "violations() of an SoD guardrail over the fleet {:>9.1} ms ({} found)",
        ms(started.elapsed()),
        found.len()
    );
    Ok(())
}

struct Stats {
    p50: Duration,
    p99: Duration,
    mean: Duration,
}

fn measure<T>(items: &[T], mut f: impl FnMut(&T) -> bool) -> Stats {
    let mut times = Vec::with_capacity(items.len());
    for item in items {
        let started = Instant::now();
        black_box(f(black_box(item)));
        times.push(started.elapsed());
    }
    times.sort();
    let at = |q: f64| {
        times
            .get(((times.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or_default()
    };
    let total: Duration = times.iter().sum();
    Stats {
        p50: at(0.50),
        p99: at(0.99),
        mean: total / u32::try_from(times.len().max(1)).unwrap_or(u32::MAX),
    }
}

fn report(what: &str, stats: &Stats, n: usize) {
    println!(
        "{what:<46} p50 {:>9.1} us  p99 {:>9.1} us  mean {:>9.1} us  ({n} decisions)",
        us(stats.p50),
        us(stats.p99),
        us(stats.mean)
    );
}

/// Resident memory from `/proc/self/status`, where there is one.
fn rss_mib() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
            let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(format!("{:.0} MiB", kib / 1024.0))
        })
        .unwrap_or_else(|| "n/a".to_owned())
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn team(i: usize) -> String {
    format!("team-{i}")
}

/// The registry records a fleet is built from.
type Records = (Vec<Agent>, Vec<Scope>, Vec<McpServer>);

fn fleet(config: &Config) -> Result<Records, Box<dyn Error>> {
    let servers = (0..SERVERS)
        .map(|k| {
            Ok(McpServer {
                name: Name::parse(&format!("srv-{k}"))?,
                transport: Transport::Http {
                    url: format!("http://127.0.0.1:9/{k}"),
                },
                owner_team: (!k.is_multiple_of(3))
                    .then(|| Name::parse(&team(k % config.teams)))
                    .transpose()?,
                sensitive: k.is_multiple_of(10),
                has_credentials: false,
                created_at: String::new(),
                updated_at: String::new(),
            })
        })
        .collect::<Result<Vec<_>, Box<dyn Error>>>()?;
    let scopes = (0..SCOPES)
        .map(|s| {
            Ok(Scope {
                name: Name::parse(&format!("scope-{s}"))?,
                tools: vec![
                    ToolPattern::parse(&format!("srv-{}/get_*", s % SERVERS))?,
                    ToolPattern::parse(&format!("srv-{}/list_*", (s + 1) % SERVERS))?,
                ],
                sensitive: s.is_multiple_of(10),
                description: String::new(),
                created_at: String::new(),
            })
        })
        .collect::<Result<Vec<_>, Box<dyn Error>>>()?;
    let total = config.teams * config.agents_per_team;
    let every = (total / config.grants.max(1)).max(1);
    let mut agents = Vec::with_capacity(total);
    let mut granted = 0;
    for t in 0..config.teams {
        let team_name = Name::parse(&team(t))?;
        let mut roots: Vec<AgentId> = Vec::new();
        for a in 0..config.agents_per_team {
            let i = t * config.agents_per_team + a;
            let (id, parent) = if a % 4 == 3 && !roots.is_empty() {
                let parent = roots[a % roots.len()].clone();
                (parent.child(&Name::parse(&format!("sub-{a}"))?), Some(parent))
            } else {
                let id = AgentId::new("warden.bench", &team_name, &Name::parse(&format!("agent-{a}"))?);
                roots.push(id.clone());
                (id, None)
            };
            let mut tags = Vec::new();
            if i.is_multiple_of(7) {
                tags.push(Name::parse("customer-data")?);
            }
            if i.is_multiple_of(5) {
                tags.push(Name::parse("prod")?);
            }
            let scopes = if i.is_multiple_of(every) && granted < config.grants {
                granted += 1;
                vec![Name::parse(&format!("scope-{}", (i / every) % SCOPES))?]
            } else {
                Vec::new()
            };
            agents.push(Agent {
                name: id.name(),
                team: team_name.clone(),
                owner: "owner@example.com".to_owned(),
                purpose: "benchmark".to_owned(),
                tags,
                status: AgentStatus::Active,
                origin: if parent.is_some() {
                    Origin::Delegated
                } else {
                    Origin::Manual
                },
                parent,
                scopes,
                created_at: String::new(),
                updated_at: String::new(),
                id,
            });
        }
    }
    Ok((agents, scopes, servers))
}

fn guardrails(agents: &[Agent]) -> Result<Vec<Guardrail>, Box<dyn Error>> {
    let call = r#"action == Warden::Action::"call_tool""#;
    let mut texts = vec![
        r#"@id("sod-customer-data-no-deploy") @message("agents tagged customer-data may not hold deploy scope")
forbid (principal, action == Warden::Action::"grant_scope", resource is Warden::Agent)
  when { context.scope == "scope-0" && resource.tags.contains("customer-data") };"#
            .to_owned(),
        r#"@id("sod-deploy-no-customer-data-tag") @message("deploy holders may not be tagged customer-data")
forbid (principal, action == Warden::Action::"set_tag", resource is Warden::Agent)
  when { context.tag == "customer-data" && resource.scopes.contains("scope-0") };"#
            .to_owned(),
        r#"@id("max-delegation-depth") @message("delegation stops at depth 3")
forbid (principal, action == Warden::Action::"delegate", resource) when { context.depth > 3 };"#
            .to_owned(),
        format!(
            r#"@id("sensitive-no-customer-data") @message("customer-data agents may not use sensitive tools")
forbid (principal is Warden::Agent, {call}, resource) when {{ resource.sensitive && principal.tags.contains("customer-data") }};"#
        ),
        format!(
            r#"@id("srv-3-business-hours") @message("srv-3 only on weekdays 09-17")
forbid (principal, {call}, resource in Warden::McpServer::"srv-3") unless {{ context.weekday < 5 && context.hour >= 9 && context.hour < 17 }};"#
        ),
        format!(
            r#"@id("no-curl") @message("no commands containing curl")
forbid (principal, {call}, resource) when {{ context.arguments.hasTag("command") && context.arguments.getTag("command") like "*curl*" }};"#
        ),
        format!(
            r#"@id("sensitive-owner-only") @message("sensitive servers serve their owning team only")
forbid (principal is Warden::Agent, {call}, resource) when {{ resource.server.sensitive && resource.server has owner_team && resource.server.owner_team != principal.team }};"#
        ),
        format!(
            r#"@id("kill-switch") @message("the fleet kill switch is on")
forbid (principal, {call}, resource) when {{ Warden::Agent::"{}".tags.contains("stop-all") }};"#,
            agents[0].id
        ),
    ];
    for t in 0..10 {
        texts.push(format!(
            r#"@id("team-{t}-no-srv-{t}") @message("team-{t} stays off srv-{t}")
forbid (principal in Warden::Team::"team-{t}", {call}, resource in Warden::McpServer::"srv-{t}");"#
        ));
    }
    for (k, agent) in agents
        .iter()
        .filter(|a| a.parent.is_none())
        .step_by(97)
        .take(2)
        .enumerate()
    {
        texts.push(format!(
            r#"@id("subtree-{k}-read-only") @message("this subtree may only read")
forbid (principal in Warden::Agent::"{}", {call}, resource) unless {{ resource.name like "get_*" }};"#,
            agent.id
        ));
    }
    Ok(texts
        .iter()
        .map(|t| parse_guardrail(t))
        .collect::<Result<Vec<_>, _>>()?)
}

/// Calls spread over the whole fleet: mostly tools the agent's scope covers, some it does not.
fn calls(agents: &[Agent], scopes: &[Scope], n: usize) -> Vec<ToolCall> {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let with_grants: Vec<&Agent> = agents.iter().filter(|a| !a.scopes.is_empty()).collect();
    (0..n)
        .map(|_| {
            let r = next();
            let agent = if r % 4 == 0 {
                &agents[(r as usize / 4) % agents.len()]
            } else {
                with_grants[(r as usize / 4) % with_grants.len()]
            };
            let covered = agent
                .scopes
                .first()
                .and_then(|s| scopes.iter().find(|x| &x.name == s))
                .and_then(|s| s.tools.first());
            let (server, tool) = match (covered, r % 5) {
                (Some(pattern), 0..=3) => {
                    let (server, glob) = pattern.as_str().split_once('/').unwrap_or(("srv-0", "get_*"));
                    (server.to_owned(), glob.replace('*', "issue"))
                }
                _ => (format!("srv-{}", r % SERVERS as u64), "delete_repo".to_owned()),
            };
            ToolCall {
                agent: agent.id.clone(),
                server,
                tool,
                arguments: serde_json::json!({"command": if r % 11 == 0 { "curl x" } else { "ls -la" }, "path": "/tmp/x", "n": 3, "ratio": 0.5}),
                hour: (r % 24) as u8,
                weekday: Weekday::from_number((r % 7) as u8).unwrap_or(Weekday::Monday),
            }
        })
        .collect()
}
