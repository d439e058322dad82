//! What the MCP gateway of `warden serve` costs: `tools/call` (`echo`) through the gateway against
//! the same calls straight to the same upstream, in one run, for two upstreams over Streamable HTTP:
//! a minimal Rust MCP server (this binary, run as a child; it costs microseconds, so the gateway's
//! added latency is read without an upstream's jitter on top) and `server-everything` (Node). Through
//! the gateway every call is authenticated (the agent's bearer token), decided (Cedar: the agent's
//! grant plus a guardrail that reads the arguments) and its decision event is durable in the audit
//! lake's write-ahead log (group commit, `fdatasync`) before the call is forwarded; its outcome event
//! is made durable after the answer.
//! Nothing is turned off.
//!
//! Clients make raw Streamable HTTP JSON-RPC calls, one connection and one MCP session each. Reported:
//! closed-loop runs at 1 and at 64 clients (calls/s, latency p50/p99, direct vs gateway, the added
//! latency, the throughput ratio, and the CPU per call of the client, warden and the upstream),
//! open-loop runs paced at 200, 500 and 1,000 calls/s (added p50/p99, and how far sends slipped behind
//! the schedule) beside three baselines of the same shape as the gateway: a bare relay process between
//! client and upstream; one that also makes a record durable before forwarding (what any gateway that
//! commits its decision first costs on the machine); and one that records each call in a Warden audit
//! lake as the gateway does (the lake's share, without the gateway's own work); also the gateway's
//! `ping` (authentication and HTTP alone), the disk's own `fdatasync` latency at 1,000/s (the floor
//! under every decision's commit), and 1,000 sessions held at once (50 agents × 20) with the server's
//! RSS before, after opening them and after a second round of calls.
//!
//! Run with `cargo bench -p warden-cli --bench gateway`; it needs `WARDEN_TEST_NODE_PEERS` (the Node
//! test peers `scripts/test.sh` installs); with `WARDEN_BENCH_ONLY=paced` it makes the paced runs alone
//! against the Rust upstream, with a denied call (decided and durable, not forwarded) and the
//! gateway's `ping` paced beside them; with `WARDEN_BENCH_ONLY=tail` it alternates direct, `relay+lake`
//! and the gateway at 1,000 calls/s for `WARDEN_BENCH_ROUNDS` rounds and prints the median added p99
//! (an A/B loop for the tail); with either, `WARDEN_BENCH_KEEP_LOG=FILE` keeps `warden serve`'s stderr;
//! `WARDEN_BENCH_SERVE_ENV="K=V …"` sets variables for `warden serve` alone. Targets: added p99 ≤ 1 ms at 1,000 calls/s, gateway ≥ 50% of
//! direct throughput at saturation. Without `--bench` (as `cargo test --all-targets` runs it, in debug)
//! it runs a tiny smoke configuration in a few seconds, and skips with a message when the peers are
//! missing.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_precision_loss,
    reason = "a benchmark: failing loudly is the point"
)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, mpsc};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HOST, HeaderValue};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::sync::Barrier;
use tokio::task::JoinSet;

const WARDEN: &str = env!("CARGO_BIN_EXE_warden");
const PROTOCOL: &str = "2025-11-25";

/// A guardrail that reads the call's arguments, so each decision evaluates a condition.
const GUARDRAIL: &str = r#"@id("no-secret-echo")
@message("echo may not repeat secrets")
forbid (principal, action == Warden::Action::"call_tool", resource == Warden::Tool::"everything/echo")
  when { context.arguments.hasTag("message") && context.arguments.getTag("message") like "*secret*" };
"#;

struct Config {
    /// Length of each closed-loop run.
    run: Duration,
    /// Calls per client before a run's clock starts.
    warmup: usize,
    /// Clients in the saturation run.
    many: usize,
    /// The paced runs' rates, calls/s.
    paced_rates: &'static [f64],
    paced_run: Duration,
    paced_workers: usize,
    agents: usize,
    sessions_per_agent: usize,
    fsyncs: usize,
}

const FULL: Config = Config {
    run: Duration::from_secs(5),
    warmup: 100,
    many: 64,
    paced_rates: &[200.0, 500.0, 1_000.0],
    paced_run: Duration::from_secs(5),
    paced_workers: 32,
    agents: 50,
    sessions_per_agent: 20,
    fsyncs: 5_000,
};

const SMOKE: Config = Config {
    run: Duration::from_millis(300),
    warmup: 2,
    many: 4,
    paced_rates: &[50.0],
    paced_run: Duration::from_millis(500),
    paced_workers: 2,
    agents: 3,
    sessions_per_agent: 2,
    fsyncs: 5,
};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(port) = args
        .iter()
        .position(|a| a == ECHO_UPSTREAM)
        .and_then(|i| args.get(i + 1))
    {
        echo_upstream::serve(port.parse().expect("a port"));
        return;
    }
    if let Some(i) = args.iter().position(|a| a == RELAY) {
        let (port, upstream) = (args[i + 1].parse().expect("a port"), args[i + 2].clone());
        let commit = match (args[i + 3].as_str(), args.get(i + 4)) {
            ("bare", None) => Commit::None,
            ("sync", Some(path)) => Commit::Sync(PathBuf::from(path)),
            ("lake", Some(path)) => Commit::Lake(PathBuf::from(path)),
            (mode, _) => panic!("{RELAY}: unknown mode `{mode}` (bare, sync FILE or lake DIR)"),
        };
        relay::serve(port, upstream, commit);
        return;
    }
    let bench = args.iter().any(|a| a == "--bench");
    let Ok(peers) = std::env::var("WARDEN_TEST_NODE_PEERS") else {
        let hint = "WARDEN_TEST_NODE_PEERS is not set: run through `bash scripts/test.sh` (which installs \
                    server-everything and sets it), or set it to that install";
        if bench {
            eprintln!("gateway bench: {hint}");
            std::process::exit(1);
        }
        println!("gateway bench: skipped, {hint}");
        return;
    };
    let config = if bench { FULL } else { SMOKE };
    // `WARDEN_BENCH_ONLY=paced`: the paced runs alone, against the Rust upstream, with the gateway's
    // `ping` paced beside them (a quick loop for work on the gateway's tail latency).
    let only = std::env::var("WARDEN_BENCH_ONLY").unwrap_or_default();
    let (paced_only, tail_only) = (only == "paced", only == "tail");
    let everything_js: PathBuf = [
        &peers,
        "node_modules/@modelcontextprotocol/server-everything/dist/index.js",
    ]
    .iter()
    .collect();
    assert!(everything_js.is_file(), "{} is missing", everything_js.display());

    println!(
        "MCP gateway: `echo` tool calls straight to an upstream vs through `warden serve`, in one run{}",
        if bench {
            ""
        } else {
            " (smoke configuration: run `cargo bench` for figures)"
        }
    );
    println!(
        "through the gateway: bearer token verified, Cedar decision (grant + argument guardrail), decision event \
         durable in the audit lake's write-ahead log (fdatasync) before the call is forwarded, outcome event after the \
         answer; nothing is turned off"
    );
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let fsync = fsync_latency(&dir.path().join("fsync.probe"), config.fsyncs);
    println!(
        "the disk's floor: fdatasync of a 600-byte write into a preallocated file at 1,000/s (the WAL's pattern) on \
         the data directory's disk: p50 {:.0} µs, p99 {:.0} µs, p99.9 {:.0} µs ({} samples); each call through the \
         gateway waits for one such commit (its decision)",
        fsync[0], fsync[1], fsync[2], config.fsyncs
    );
    let upstreams = [
        (
            "a minimal Rust MCP server (Streamable HTTP, JSON answers; this bench binary run as a child)",
            Upstream::rust_echo(),
        ),
        (
            "server-everything (Node, Streamable HTTP)",
            Upstream::everything(&everything_js),
        ),
    ];
    let mut last = None;
    let upstreams = upstreams.into_iter().take(if paced_only || tail_only { 1 } else { 2 });
    for (i, (what, upstream)) in upstreams.enumerate() {
        let warden = Warden::start(
            &dir.path().join(format!("data-{i}")),
            &dir.path().join(format!("warden-{i}.log")),
        );
        let tokens = warden.setup(&upstream.url, config.agents);
        println!();
        println!("== upstream: {what}; {} agents", tokens.len());
        if paced_only || tail_only {
            if paced_only {
                runtime.block_on(paced_runs(&warden, &upstream, &tokens, &config, None));
            } else {
                runtime.block_on(tail_rounds(&warden, &upstream, &tokens, &config));
            }
            if let Ok(keep) = std::env::var("WARDEN_BENCH_KEEP_LOG") {
                std::fs::copy(dir.path().join(format!("warden-{i}.log")), keep).unwrap();
            }
            return;
        }
        runtime.block_on(compare(&warden, &upstream, &tokens, &config));
        last = Some((warden, tokens, upstream));
    }
    let (warden, tokens, _upstream) = last.unwrap();
    println!();
    runtime.block_on(hold_sessions(&warden, &tokens, config.sessions_per_agent));
}

/// Direct against gateway, closed loop at 1 and many clients, then paced.
async fn compare(warden: &Warden, upstream: &Upstream, tokens: &[String], config: &Config) {
    let direct = |_: usize| Endpoint::new(&upstream.url, None);
    let gateway = |i: usize| warden.endpoint(tokens, i);
    let procs = Procs::new(warden.child.id(), upstream.child.id());
    println!(
        "closed loop, {:.1} s per run, one connection and session per client; CPU per call (µs) of this \
         client, of warden and of the upstream:",
        config.run.as_secs_f64()
    );
    println!("clients  path       calls/s    p50 µs    p99 µs   client   warden upstream");
    let mut saturation = 0.0;
    for clients in [1, config.many] {
        let d = closed_loop(&direct, clients, Op::Echo, config, procs).await;
        let g = closed_loop(&gateway, clients, Op::Echo, config, procs).await;
        d.row(&format!("{clients:>7}  direct "));
        g.row(&format!("{clients:>7}  gateway"));
        println!(
            "{clients:>7}  added            {:>+9.0} {:>+9.0}   gateway/direct throughput {:.2}",
            g.p50 - d.p50,
            g.p99 - d.p99,
            g.per_sec / d.per_sec
        );
        saturation = d.per_sec;
    }
    let ping = closed_loop(&gateway, 1, Op::Ping, config, procs).await;
    ping.row("      1  gw ping");
    println!("         (ping: token check, session lookup and HTTP only; no policy, audit or upstream)");

    println!();
    paced_runs(warden, upstream, tokens, config, Some(saturation)).await;
}

/// Open-loop runs, direct against gateway, at each of `config.paced_rates`. Without the direct
/// saturation figure (`WARDEN_BENCH_ONLY=paced`), a denied call and the gateway's `ping` are paced
/// too: the added latency without the forwarding, and without the decision and its commit.
async fn paced_runs(warden: &Warden, upstream: &Upstream, tokens: &[String], config: &Config, saturation: Option<f64>) {
    let direct = |_: usize| Endpoint::new(&upstream.url, None);
    let gateway = |i: usize| warden.endpoint(tokens, i);
    println!(
        "open loop: calls sent on a fixed schedule over {} sessions, {:.1} s per run{}:",
        config.paced_workers,
        config.paced_run.as_secs_f64(),
        saturation.map_or(String::new(), |s| format!(" (direct saturates at {s:.0}/s above)"))
    );
    let scratch = tempfile::tempdir().unwrap();
    let bare = Relay::start(upstream, &Commit::None);
    let syncing = Relay::start(upstream, &Commit::Sync(scratch.path().join("relay.commits")));
    let with_lake = Relay::start(upstream, &Commit::Lake(scratch.path().join("relay-lake")));
    let relay = |_: usize| Endpoint::new(&bare.url, None);
    let relay_sync = |_: usize| Endpoint::new(&syncing.url, None);
    let relay_lake = |_: usize| Endpoint::new(&with_lake.url, None);
    println!(
        "baselines in the same run: `relay` is a bare HTTP relay process between client and upstream; \
         `relay+sync` also makes a 600-byte record durable (group commit, fdatasync, through a syncing thread) \
         before forwarding each call, as the gateway does with a decision: what any gateway of this shape costs \
         here; `relay+lake` does it with Warden's audit lake instead (a decision event appended durably before \
         forwarding, an outcome event appended lazily after): the lake's share, without the gateway's own work"
    );
    println!("path       target/s  achieved/s    p50 µs    p99 µs  late p99 µs");
    for &rate in config.paced_rates {
        let d = paced(&direct, rate, Op::Echo, config).await;
        let r = paced(&relay, rate, Op::Echo, config).await;
        let c = paced(&relay_sync, rate, Op::Echo, config).await;
        let l = paced(&relay_lake, rate, Op::Echo, config).await;
        let g = paced(&gateway, rate, Op::Echo, config).await;
        d.row("direct", rate);
        r.row("relay", rate);
        c.row("relay+sync", rate);
        l.row("relay+lake", rate);
        g.row("gateway", rate);
        for (label, p) in [("relay", &r), ("relay+sync", &c), ("relay+lake", &l), ("gateway", &g)] {
            let [p50, p99] = d.run.added_by(&p.run);
            println!("added: {label:<12}             {p50:>+9.0} {p99:>+9.0}");
        }
        if saturation.is_none() {
            paced(&gateway, rate, Op::Denied, config).await.row("gw deny", rate);
            paced(&gateway, rate, Op::Ping, config).await.row("gw ping", rate);
        }
    }
    println!(
        "(latency from the actual send; `late`: how far sends slipped behind the schedule, when the path or \
         the machine fell behind)"
    );
}

/// `WARDEN_BENCH_ONLY=tail`: the 1,000 calls/s runs of direct, `relay+lake` and the gateway, in
/// `WARDEN_BENCH_ROUNDS` rounds (default 5), each round's added latency against that round's direct
/// run, then the median over the rounds: a quick A/B loop for the gateway's tail, whose p99 varies
/// about twofold from one run to the next on a two-vCPU machine.
async fn tail_rounds(warden: &Warden, upstream: &Upstream, tokens: &[String], config: &Config) {
    let rounds: usize = std::env::var("WARDEN_BENCH_ROUNDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(5);
    let rate = config.paced_rates.last().copied().unwrap_or(1_000.0);
    let scratch = tempfile::tempdir().unwrap();
    let with_lake = Relay::start(upstream, &Commit::Lake(scratch.path().join("relay-lake")));
    let direct = |_: usize| Endpoint::new(&upstream.url, None);
    let relay_lake = |_: usize| Endpoint::new(&with_lake.url, None);
    let gateway = |i: usize| warden.endpoint(tokens, i);
    println!(
        "{rounds} rounds at {rate:.0} calls/s, {:.1} s per run; added latency against the round's direct run (µs):",
        config.paced_run.as_secs_f64()
    );
    println!("round  direct p50/p99   relay+lake added p50/p99 (CPU/call)   gateway added p50/p99 (CPU/call)");
    // The hop process's CPU (every thread) per call: relay+lake against warden.
    let procs = Procs::new(warden.child.id(), with_lake.child.id());
    let calls = rate * config.paced_run.as_secs_f64();
    let (mut lake_p99, mut gateway_p99) = (Vec::new(), Vec::new());
    // Every round's calls pooled per path: the p99 over the whole run, seals included.
    let mut pooled: [Vec<Duration>; 3] = Default::default();
    for round in 1..=rounds {
        let d = paced(&direct, rate, Op::Echo, config).await;
        let before = procs.sample();
        let l = paced(&relay_lake, rate, Op::Echo, config).await;
        let between = procs.sample();
        let g = paced(&gateway, rate, Op::Echo, config).await;
        let g_slow: usize = g.slow.values().sum();
        for (pool, p) in pooled.iter_mut().zip([&d, &l, &g]) {
            pool.extend_from_slice(&p.latencies);
        }
        let (d, l, g) = (d.run, l.run, g.run);
        let after = procs.sample();
        let (l_cpu, g_cpu) = (
            (between[2] - before[2]) / calls * 1e6,
            (after[1] - between[1]) / calls * 1e6,
        );
        let ([l50, l99], [g50, g99]) = (d.added_by(&l), d.added_by(&g));
        println!(
            "{round:>5}  {:>6.0} / {:<6.0}   {l50:>+9.0} / {l99:<+9.0} ({l_cpu:>4.0} µs)       {g50:>+9.0} / {g99:<+9.0} \
             ({g_cpu:>4.0} µs, {g_slow} over 2 ms)",
            d.p50, d.p99,
        );
        lake_p99.push(l99);
        gateway_p99.push(g99);
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "median added p99: relay+lake {:+.0} µs, gateway {:+.0} µs",
        median(lake_p99),
        median(gateway_p99)
    );
    let [d, l, g] = pooled.map(|calls| Run::of(calls, config.paced_run));
    let ([l50, l99], [g50, g99]) = (d.added_by(&l), d.added_by(&g));
    println!(
        "all {rounds} rounds pooled ({} calls per path): direct p50/p99 {:.0} / {:.0} µs; added p50/p99: relay+lake \
         {l50:+.0} / {l99:+.0} µs, gateway {g50:+.0} / {g99:+.0} µs",
        rate as usize * config.paced_run.as_secs() as usize * rounds,
        d.p50,
        d.p99,
    );
}

/// CPU time used so far by this process and two others (warden and the upstream, or warden and a
/// relay).
#[derive(Clone, Copy)]
struct Procs {
    pids: [u32; 3],
    ticks_per_sec: f64,
}

impl Procs {
    fn new(warden: u32, upstream: u32) -> Procs {
        let ticks_per_sec = Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|out| String::from_utf8_lossy(&out.stdout).trim().parse().ok())
            .unwrap_or(100.0);
        Procs {
            pids: [std::process::id(), warden, upstream],
            ticks_per_sec,
        }
    }

    /// Seconds of CPU (user + system, every thread) of each process.
    fn sample(&self) -> [f64; 3] {
        self.pids.map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
            // Fields after the command name; utime and stime are fields 14 and 15 of the whole line.
            let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
            let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
            ticks / self.ticks_per_sec
        })
    }
}

/// The upstream MCP server, on a free loopback port.
struct Upstream {
    child: Child,
    url: String,
}

/// The argument that makes this binary serve [`echo_upstream`] on the port that follows it.
const ECHO_UPSTREAM: &str = "--serve-echo-upstream";

impl Upstream {
    /// server-everything over Streamable HTTP.
    fn everything(js: &Path) -> Upstream {
        let port = free_port();
        let child = Command::new("node")
            .arg(js)
            .arg("streamableHttp")
            .env("PORT", port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn node (server-everything)");
        Upstream::listening(child, port, "/mcp")
    }

    /// This binary as a minimal Rust MCP server.
    fn rust_echo() -> Upstream {
        let port = free_port();
        let child = Command::new(std::env::current_exe().unwrap())
            .args([ECHO_UPSTREAM, &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn the echo upstream");
        Upstream::listening(child, port, "/mcp")
    }

    fn listening(child: Child, port: u16, path: &str) -> Upstream {
        wait_for_listener(port, "the upstream");
        Upstream {
            child,
            url: format!("http://127.0.0.1:{port}{path}"),
        }
    }
}

fn wait_for_listener(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not listen on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A minimal MCP server over Streamable HTTP offering one tool, `echo`, answering in JSON (never
/// SSE). Its own cost is a few microseconds a call, so the gateway's added latency can be read
/// without an upstream's jitter on top.
mod echo_upstream {
    use std::sync::atomic::{AtomicU64, Ordering};

    use axum::Router;
    use axum::body::Bytes;
    use axum::http::{HeaderMap, StatusCode, header};
    use axum::response::{IntoResponse, Response};
    use axum::routing::post;
    use serde_json::{Value, json};

    static SESSIONS: AtomicU64 = AtomicU64::new(1);

    pub(crate) fn serve(port: u16) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let app = Router::new().route("/mcp", post(rpc).delete(|| async { StatusCode::OK }));
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    }

    async fn rpc(_headers: HeaderMap, body: Bytes) -> Response {
        let Ok(message) = serde_json::from_slice::<Value>(&body) else {
            return (StatusCode::BAD_REQUEST, "not JSON").into_response();
        };
        let Some(id) = message.get("id").cloned() else {
            return StatusCode::ACCEPTED.into_response();
        };
        let method = message["method"].as_str().unwrap_or_default();
        let result = match method {
            "initialize" => json!({
                "protocolVersion": message["params"]["protocolVersion"].as_str().unwrap_or("2025-11-25"),
                "capabilities": {"tools": {}},
                "serverInfo": {"name": "echo-upstream", "version": "1.0.0"},
            }),
            "ping" => json!({}),
            "tools/list" => json!({"tools": [{
                "name": "echo",
                "description": "Echoes back the input",
                "inputSchema": {
                    "type": "object",
                    "properties": {"message": {"type": "string"}},
                    "required": ["message"],
                },
            }]}),
            "tools/call" if message["params"]["name"] == "echo" => {
                let text = message["params"]["arguments"]["message"].as_str().unwrap_or_default();
                json!({"content": [{"type": "text", "text": format!("Echo: {text}")}]})
            }
            _ => {
                let error = json!({"code": -32601, "message": format!("no method {method}")});
                return answer(json!({"jsonrpc": "2.0", "id": id, "error": error}), None);
            }
        };
        let session = (method == "initialize").then(|| SESSIONS.fetch_add(1, Ordering::Relaxed).to_string());
        answer(json!({"jsonrpc": "2.0", "id": id, "result": result}), session)
    }

    fn answer(body: Value, session: Option<String>) -> Response {
        let mut response = ([(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response();
        if let Some(session) = session {
            response
                .headers_mut()
                .insert("mcp-session-id", session.parse().unwrap());
        }
        response
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The arguments that make this binary serve [`relay`]: `--serve-relay PORT UPSTREAM_URL MODE [PATH]`,
/// MODE being `bare`, `sync FILE` or `lake DIR` (see [`Commit`]).
const RELAY: &str = "--serve-relay";

/// What a [`Relay`] makes durable before it forwards a `tools/call`.
enum Commit {
    /// Nothing: a bare HTTP relay.
    None,
    /// A 600-byte record in this file, group-committed by a syncing thread (`fdatasync`): the shape of
    /// the lake writer's hand-off and commit, without its work.
    Sync(PathBuf),
    /// A decision event, appended to a Warden audit lake in this directory (then, after the answer,
    /// an outcome event, lazily), as the gateway records a call, without the gateway's own work.
    Lake(PathBuf),
}

/// A baseline hop between the client and the upstream, run as its own process like `warden serve`.
/// What it adds over direct is the machine's price for that shape of hop, whoever implements it.
struct Relay {
    child: Child,
    url: String,
}

impl Relay {
    fn start(upstream: &Upstream, commit: &Commit) -> Relay {
        let port = free_port();
        let mut command = Command::new(std::env::current_exe().unwrap());
        command.args([RELAY, &port.to_string(), &upstream.url]);
        match commit {
            Commit::None => command.arg("bare"),
            Commit::Sync(file) => command.arg("sync").arg(file),
            Commit::Lake(dir) => command.arg("lake").arg(dir),
        };
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn the relay");
        wait_for_listener(port, "the relay");
        Relay {
            child,
            url: format!("http://127.0.0.1:{port}/mcp"),
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

mod relay {
    use std::fs::File;
    use std::os::unix::fs::FileExt;
    use std::sync::mpsc;
    use std::time::{SystemTime, UNIX_EPOCH};

    use axum::Router;
    use axum::body::{Body, Bytes};
    use axum::extract::State;
    use axum::http::{HeaderMap, Method, Request, StatusCode, header};
    use axum::response::{IntoResponse, Response};
    use http_body_util::{BodyExt, Full};
    use hyper_util::client::legacy::Client;
    use hyper_util::client::legacy::connect::HttpConnector;
    use hyper_util::rt::TokioExecutor;
    use tokio::sync::oneshot;
    use warden_lake::{AuditEvent, Decision, Lake, LakeConfig, Subject, ToolCall};

    use super::{Commit, RECORD, zeroed_file};

    /// The commit file's size; records wrap around in it, as a WAL segment is reused.
    const FILE: u64 = 64 << 20;

    #[derive(Clone)]
    struct Hop {
        client: Client<HttpConnector, Full<Bytes>>,
        upstream: String,
        commits: Option<mpsc::Sender<oneshot::Sender<()>>>,
        lake: Option<Lake>,
    }

    /// One call's decision and outcome events, as the gateway records them.
    fn events() -> (AuditEvent, AuditEvent) {
        let subject = Subject {
            agent_id: "spiffe://acme.example/team-1/agent-0001".to_owned(),
            team: Some("team-1".to_owned()),
            purpose: None,
            session_id: Some("sess-0001".to_owned()),
            subagent_id: None,
            delegation_chain: vec![],
        };
        let call = ToolCall {
            server: "everything".to_owned(),
            tool: "echo".to_owned(),
            decision: Decision::Allow,
            policy_ids: vec!["grant/scope/agent".to_owned()],
            reason: None,
        };
        let time = i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis()).unwrap();
        (
            AuditEvent::tool_decision(AuditEvent::new_id(), time, &subject, &call),
            AuditEvent::tool_outcome(AuditEvent::new_id(), time, &subject, &call, true, None),
        )
    }

    pub(crate) fn serve(port: u16, upstream: String, commit: Commit) {
        // Like `warden serve`: a multi-threaded runtime, one worker per vCPU.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        let (mut commits, mut lake) = (None, None);
        match commit {
            Commit::None => {}
            Commit::Sync(path) => {
                // Zero-filled before the relay listens, so no call waits for it.
                let file = zeroed_file(&path, FILE);
                let (tx, rx) = mpsc::channel();
                std::thread::spawn(move || group_commit(&file, &rx));
                commits = Some(tx);
            }
            Commit::Lake(dir) => {
                let _runtime = runtime.enter();
                lake = Some(Lake::open(&dir, LakeConfig::default()).unwrap());
            }
        }
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let hop = Hop {
            client: Client::builder(TokioExecutor::new()).build(connector),
            upstream,
            commits,
            lake,
        };
        runtime.block_on(async {
            let app = Router::new().route("/mcp", axum::routing::any(forward)).with_state(hop);
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    }

    /// The syncing thread: takes every request waiting, writes a record for each, one `fdatasync`,
    /// then answers them all (the lake writer's group commit, without its encoding and hashing).
    fn group_commit(file: &File, requests: &mpsc::Receiver<oneshot::Sender<()>>) {
        let mut offset = 0u64;
        while let Ok(first) = requests.recv() {
            let mut waiting = vec![first];
            waiting.extend(requests.try_iter());
            let records = vec![b'x'; RECORD * waiting.len()];
            if offset + records.len() as u64 > FILE {
                offset = 0;
            }
            file.write_all_at(&records, offset).unwrap();
            file.sync_data().unwrap();
            offset += records.len() as u64;
            for done in waiting {
                let _ = done.send(());
            }
        }
    }

    async fn forward(State(hop): State<Hop>, method: Method, headers: HeaderMap, body: Bytes) -> Response {
        let is_call = body.windows(b"tools/call".len()).any(|w| w == b"tools/call");
        let mut outcome = None;
        if is_call && let Some(commits) = &hop.commits {
            let (done, committed) = oneshot::channel();
            commits.send(done).unwrap();
            committed.await.unwrap();
        }
        if is_call && let Some(lake) = &hop.lake {
            let (decision, ended) = events();
            lake.append(vec![decision]).await.unwrap();
            outcome = Some((lake.clone(), ended));
        }
        let mut request = Request::builder().method(method).uri(&hop.upstream);
        for name in [header::CONTENT_TYPE, header::ACCEPT] {
            if let Some(value) = headers.get(&name) {
                request = request.header(name, value);
            }
        }
        for name in ["mcp-session-id", "mcp-protocol-version"] {
            if let Some(value) = headers.get(name) {
                request = request.header(name, value);
            }
        }
        let answer = match hop.client.request(request.body(Full::new(body)).unwrap()).await {
            Ok(answer) => answer,
            Err(err) => return (StatusCode::BAD_GATEWAY, err.to_string()).into_response(),
        };
        let (parts, body) = answer.into_parts();
        let body = match body.collect().await {
            Ok(body) => body.to_bytes(),
            Err(err) => return (StatusCode::BAD_GATEWAY, err.to_string()).into_response(),
        };
        if let Some((lake, ended)) = outcome {
            tokio::spawn(async move { lake.append_lazy(vec![ended]).await.unwrap() });
        }
        let mut response = Response::new(Body::from(body));
        *response.status_mut() = parts.status;
        for name in [header::CONTENT_TYPE.as_str(), "mcp-session-id"] {
            if let Some(value) = parts.headers.get(name) {
                response.headers_mut().insert(name, value.clone());
            }
        }
        response
    }
}

/// A running `warden serve`.
struct Warden {
    child: Child,
    url: String,
    admin: String,
    _stdout: mpsc::Receiver<String>,
}

impl Warden {
    /// The gateway's `/mcp/everything` for client `i`, which takes the `i`-th agent's token in turn.
    fn endpoint(&self, tokens: &[String], i: usize) -> Endpoint {
        Endpoint::new(&format!("{}/mcp/everything", self.url), Some(&tokens[i % tokens.len()]))
    }

    fn start(data: &Path, log: &Path) -> Warden {
        std::fs::create_dir_all(data).unwrap();
        let mut command = Command::new(WARDEN);
        // `WARDEN_BENCH_SERVE_ENV="K=V K2=V2"`: variables for `warden serve` alone (runtime settings
        // under trial), not for the client, the upstream or the relays.
        for pair in std::env::var("WARDEN_BENCH_SERVE_ENV")
            .unwrap_or_default()
            .split_whitespace()
        {
            let (key, value) = pair
                .split_once('=')
                .expect("WARDEN_BENCH_SERVE_ENV holds KEY=VALUE pairs");
            command.env(key, value);
        }
        let mut child = command
            .args(["serve", "--data-dir"])
            .arg(data)
            .args(["--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .expect("spawn warden serve");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let url = loop {
            let line = rx
                .recv_timeout(Duration::from_secs(60))
                .unwrap_or_else(|_| panic!("warden serve did not start; see {}", log.display()));
            if let Some(url) = line.strip_prefix("warden: listening on ") {
                break url.to_owned();
            }
        };
        let admin = std::fs::read_to_string(data.join("admin.token"))
            .unwrap()
            .trim()
            .to_owned();
        Warden {
            child,
            url,
            admin,
            _stdout: rx,
        }
    }

    fn post(&self, path: &str, token: Option<&str>, body: &Value) -> Value {
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let mut req =
            ureq::http::Request::post(format!("{}{path}", self.url)).header("Content-Type", "application/json");
        if let Some(token) = token {
            req = req.header("Authorization", format!("Bearer {token}"));
        }
        let mut res = agent.run(req.body(body.to_string().into_bytes()).unwrap()).unwrap();
        let status = res.status().as_u16();
        let text = res.body_mut().read_to_string().unwrap();
        assert!((200..300).contains(&status), "POST {path}: {status} {text}");
        serde_json::from_str(&text).unwrap()
    }

    /// Registers the upstream, a scope with `echo`, the guardrail and `agents` agents granted the scope;
    /// returns their access tokens.
    fn setup(&self, upstream: &str, agents: usize) -> Vec<String> {
        let admin = Some(self.admin.as_str());
        self.post("/v1/teams", admin, &json!({"name": "bench"}));
        self.post(
            "/v1/mcp-servers",
            admin,
            &json!({"name": "everything", "transport": {"kind": "http", "url": upstream}}),
        );
        self.post(
            "/v1/scopes",
            admin,
            &json!({"name": "echo", "tools": ["everything/echo"]}),
        );
        self.post("/v1/guardrails", admin, &json!({"text": GUARDRAIL}));
        (0..agents)
            .map(|i| {
                let agent = self.post(
                    "/v1/agents",
                    admin,
                    &json!({"team": "bench", "name": format!("agent-{i}"), "purpose": "gateway bench"}),
                );
                let id = agent["id"].as_str().unwrap();
                let encoded: String = id
                    .bytes()
                    .map(|b| {
                        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                            char::from(b).to_string()
                        } else {
                            format!("%{b:02X}")
                        }
                    })
                    .collect();
                self.post(&format!("/v1/agents/{encoded}/grants"), admin, &json!({"scope": "echo"}));
                let token = self.post(
                    "/oauth2/token",
                    None,
                    &json!({"grant_type": "client_credentials", "client_id": id, "client_secret": agent["client_secret"]}),
                );
                token["access_token"].as_str().unwrap().to_owned()
            })
            .collect()
    }

    /// The server's resident memory, in MiB.
    fn rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let kib: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap();
        kib / 1024.0
    }
}

impl Drop for Warden {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where a client sends its requests.
#[derive(Clone)]
struct Endpoint {
    authority: String,
    path: String,
    authorization: Option<HeaderValue>,
}

impl Endpoint {
    fn new(url: &str, token: Option<&str>) -> Endpoint {
        let rest = url.strip_prefix("http://").unwrap();
        let (authority, path) = rest.split_once('/').unwrap();
        Endpoint {
            authority: authority.to_owned(),
            path: format!("/{path}"),
            authorization: token.map(|t| HeaderValue::from_str(&format!("Bearer {t}")).unwrap()),
        }
    }
}

/// One HTTP/1.1 connection, made again if the server closed it while idle.
struct Conn {
    endpoint: Endpoint,
    send: Option<SendRequest<Full<Bytes>>>,
}

struct Reply {
    status: u16,
    session: Option<String>,
    body: Bytes,
}

impl Conn {
    fn new(endpoint: Endpoint) -> Conn {
        Conn { endpoint, send: None }
    }

    async fn sender(&mut self) -> Result<&mut SendRequest<Full<Bytes>>, String> {
        if self.send.as_ref().is_none_or(SendRequest::is_closed) {
            let stream = tokio::net::TcpStream::connect(&self.endpoint.authority)
                .await
                .map_err(|e| format!("connect: {e}"))?;
            stream.set_nodelay(true).map_err(|e| e.to_string())?;
            let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|e| format!("handshake: {e}"))?;
            tokio::spawn(conn);
            self.send = Some(send);
        }
        let send = self.send.as_mut().ok_or("no connection")?;
        send.ready().await.map_err(|e| format!("connection: {e}"))?;
        Ok(send)
    }

    async fn request(&mut self, method: Method, session: Option<&str>, body: Option<String>) -> Result<Reply, String> {
        let mut req = Request::builder()
            .method(method)
            .uri(&self.endpoint.path)
            .header(HOST, &self.endpoint.authority)
            .header(ACCEPT, "application/json, text/event-stream");
        if body.is_some() {
            req = req.header(CONTENT_TYPE, "application/json");
        }
        if let Some(authorization) = &self.endpoint.authorization {
            req = req.header(AUTHORIZATION, authorization);
        }
        if let Some(session) = session {
            req = req
                .header("mcp-session-id", session)
                .header("mcp-protocol-version", PROTOCOL);
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| e.to_string())?;
        let sent = self.sender().await?.send_request(req).await;
        let res = match sent {
            Ok(res) => res,
            Err(err) => {
                self.send = None;
                return Err(format!("request: {err}"));
            }
        };
        let status = res.status().as_u16();
        let session = res
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = res
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("body: {e}"))?
            .to_bytes();
        Ok(Reply { status, session, body })
    }

    /// `initialize` and `notifications/initialized`; returns the session id.
    async fn open(&mut self) -> Result<String, String> {
        let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": {"protocolVersion": PROTOCOL, "capabilities": {}, "clientInfo": {"name": "bench", "version": "0"}}});
        let reply = self.request(Method::POST, None, Some(init.to_string())).await?;
        let session = match (reply.status, reply.session) {
            (200, Some(session)) => session,
            (status, _) => return Err(format!("initialize: {status} {}", text(&reply.body))),
        };
        let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        let reply = self
            .request(Method::POST, Some(&session), Some(note.to_string()))
            .await?;
        if reply.status != 202 {
            return Err(format!("initialized: {} {}", reply.status, text(&reply.body)));
        }
        Ok(session)
    }

    async fn call(&mut self, session: &str, op: Op, id: u64) -> Result<(), String> {
        let (body, expect) = match op {
            Op::Echo => (
                json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                       "params": {"name": "echo", "arguments": {"message": "hello"}}}),
                "Echo: hello",
            ),
            Op::Ping => (json!({"jsonrpc": "2.0", "id": id, "method": "ping"}), "\"result\""),
            Op::Denied => (
                json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                       "params": {"name": "echo", "arguments": {"message": "a secret"}}}),
                "no-secret-echo",
            ),
        };
        let reply = self
            .request(Method::POST, Some(session), Some(body.to_string()))
            .await?;
        let body = text(&reply.body);
        let refused = body.contains("\"isError\":true");
        if reply.status != 200 || !body.contains(expect) || refused != matches!(op, Op::Denied) {
            return Err(format!("{}: {}", reply.status, body));
        }
        Ok(())
    }

    async fn close(&mut self, session: &str) {
        let _ = self.request(Method::DELETE, Some(session), None).await;
    }
}

fn text(body: &Bytes) -> String {
    String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned()
}

#[derive(Clone, Copy)]
enum Op {
    /// `tools/call` of `echo`: allowed and forwarded.
    Echo,
    /// `ping`: the token check, the session and HTTP only.
    Ping,
    /// `tools/call` of `echo` that the guardrail denies: decided and made durable, not forwarded.
    Denied,
}

/// Latencies of a run, in µs.
struct Run {
    per_sec: f64,
    p50: f64,
    p99: f64,
    /// CPU µs per call of this client, warden and server-everything.
    cpu: Option<[f64; 3]>,
}

impl Run {
    /// What `hop` adds over this (direct) run: p50 and p99, µs.
    fn added_by(&self, hop: &Run) -> [f64; 2] {
        [hop.p50 - self.p50, hop.p99 - self.p99]
    }

    fn of(mut latencies: Vec<Duration>, elapsed: Duration) -> Run {
        latencies.sort_unstable();
        let at = |q: f64| {
            let i = ((latencies.len() as f64 * q).ceil() as usize).clamp(1, latencies.len()) - 1;
            latencies[i].as_secs_f64() * 1e6
        };
        Run {
            per_sec: latencies.len() as f64 / elapsed.as_secs_f64(),
            p50: at(0.50),
            p99: at(0.99),
            cpu: None,
        }
    }

    fn row(&self, label: &str) {
        print!("{label}  {:>9.0} {:>9.0} {:>9.0}", self.per_sec, self.p50, self.p99);
        if let Some([client, warden, node]) = self.cpu {
            print!(" {client:>8.0} {warden:>8.0} {node:>8.0}");
        }
        println!();
    }
}

/// Each client calls as fast as its answers come back, for `config.run`.
async fn closed_loop(
    endpoint: &dyn Fn(usize) -> Endpoint,
    clients: usize,
    op: Op,
    config: &Config,
    procs: Procs,
) -> Run {
    let barrier = Arc::new(Barrier::new(clients));
    let cpu_at_start = Arc::new(OnceLock::new());
    let mut tasks = JoinSet::new();
    for i in 0..clients {
        let (mut conn, barrier, warmup, run) =
            (Conn::new(endpoint(i)), Arc::clone(&barrier), config.warmup, config.run);
        let cpu_at_start = Arc::clone(&cpu_at_start);
        tasks.spawn(async move {
            let session = conn.open().await.unwrap_or_else(|e| panic!("open a session: {e}"));
            for id in 0..warmup as u64 {
                conn.call(&session, op, id)
                    .await
                    .unwrap_or_else(|e| panic!("warm-up call: {e}"));
            }
            if barrier.wait().await.is_leader() {
                let _ = cpu_at_start.set(procs.sample());
            }
            let start = Instant::now();
            let mut latencies = Vec::new();
            let mut id = 1_000_000;
            while start.elapsed() < run {
                id += 1;
                let sent = Instant::now();
                conn.call(&session, op, id)
                    .await
                    .unwrap_or_else(|e| panic!("call: {e}"));
                latencies.push(sent.elapsed());
            }
            let end = Instant::now();
            conn.close(&session).await;
            (start, end, latencies)
        });
    }
    let results = tasks.join_all().await;
    let cpu_at_end = procs.sample();
    let start = results.iter().map(|r| r.0).min().unwrap();
    let end = results.iter().map(|r| r.1).max().unwrap();
    let calls: usize = results.iter().map(|r| r.2.len()).sum();
    let mut run = Run::of(results.into_iter().flat_map(|r| r.2).collect(), end - start);
    let cpu_at_start = cpu_at_start.get().unwrap();
    run.cpu = Some([0, 1, 2].map(|i| (cpu_at_end[i] - cpu_at_start[i]) * 1e6 / calls as f64));
    run
}

struct Paced {
    run: Run,
    /// Every call's latency, in send order per session.
    latencies: Vec<Duration>,
    late_p99: f64,
    /// Calls slower than [`SLOW`], counted per [`SLOW_WINDOW`] of the schedule they were sent in:
    /// clustered slow calls point at a stall, spread ones at queueing.
    slow: BTreeMap<u64, usize>,
}

/// What counts as a slow call in a paced run.
const SLOW: Duration = Duration::from_millis(2);
/// The width of the windows slow calls are counted in, ms.
const SLOW_WINDOW: u64 = 250;

impl Paced {
    fn row(&self, path: &str, rate: f64) {
        println!(
            "{path:<10} {rate:>8.0} {:>11.0} {:>9.0} {:>9.0} {:>12.0}",
            self.run.per_sec, self.run.p50, self.run.p99, self.late_p99
        );
        if !self.slow.is_empty() {
            let windows: Vec<String> = self
                .slow
                .iter()
                .map(|(w, n)| format!("{:.2}s:{n}", (w * SLOW_WINDOW) as f64 / 1e3))
                .collect();
            println!(
                "         calls over {} ms by send time ({SLOW_WINDOW} ms windows): {}",
                SLOW.as_millis(),
                windows.join(" ")
            );
        }
    }
}

/// Calls sent on a fixed schedule at `rate` calls/s (open loop), spread over `config.paced_workers`
/// sessions, for `config.paced_run`.
async fn paced(endpoint: &dyn Fn(usize) -> Endpoint, rate: f64, op: Op, config: &Config) -> Paced {
    let total = (rate * config.paced_run.as_secs_f64()) as usize;
    let workers = config.paced_workers;
    let barrier = Arc::new(Barrier::new(workers));
    let next = Arc::new(AtomicUsize::new(0));
    let start = Arc::new(OnceLock::new());
    let mut tasks = JoinSet::new();
    for i in 0..workers {
        let mut conn = Conn::new(endpoint(i));
        let (barrier, next, start, warmup) = (
            Arc::clone(&barrier),
            Arc::clone(&next),
            Arc::clone(&start),
            config.warmup,
        );
        tasks.spawn(async move {
            let session = conn.open().await.unwrap_or_else(|e| panic!("open a session: {e}"));
            for id in 0..warmup.min(10) as u64 {
                conn.call(&session, Op::Echo, id)
                    .await
                    .unwrap_or_else(|e| panic!("warm-up call: {e}"));
            }
            barrier.wait().await;
            let start = *start.get_or_init(|| Instant::now() + Duration::from_millis(20));
            let (mut latencies, mut late, mut slow) = (Vec::new(), Vec::new(), Vec::new());
            loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                if k >= total {
                    break;
                }
                let at = start + Duration::from_secs_f64(k as f64 / rate);
                tokio::time::sleep_until(at.into()).await;
                let sent = Instant::now();
                conn.call(&session, op, k as u64 + 1_000_000)
                    .await
                    .unwrap_or_else(|e| panic!("call: {e}"));
                let took = sent.elapsed();
                latencies.push(took);
                late.push(sent.saturating_duration_since(at));
                if took > SLOW {
                    slow.push(at.saturating_duration_since(start));
                }
            }
            let end = Instant::now();
            conn.close(&session).await;
            (start, end, latencies, late, slow)
        });
    }
    let results = tasks.join_all().await;
    let start = results[0].0;
    let end = results.iter().map(|r| r.1).max().unwrap();
    let mut late: Vec<Duration> = results.iter().flat_map(|r| r.3.iter().copied()).collect();
    late.sort_unstable();
    let late_p99 = late
        .get((late.len() * 99 / 100).min(late.len().saturating_sub(1)))
        .map_or(0.0, |d| d.as_secs_f64() * 1e6);
    let mut slow = BTreeMap::new();
    for at in results.iter().flat_map(|r| r.4.iter()) {
        *slow.entry(at.as_millis() as u64 / SLOW_WINDOW).or_insert(0) += 1;
    }
    let latencies: Vec<Duration> = results.into_iter().flat_map(|r| r.2).collect();
    Paced {
        run: Run::of(latencies.clone(), end - start),
        latencies,
        late_p99,
        slow,
    }
}

/// The size of the records the disk's floor and `relay+sync` make durable: about one decision
/// event's frame.
const RECORD: usize = 600;

/// A new file of `bytes` zeros, synced: the WAL's preallocated segment.
fn zeroed_file(path: &Path, bytes: u64) -> std::fs::File {
    use std::os::unix::fs::FileExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .unwrap();
    let zeros = vec![0u8; 1 << 20];
    for at in (0..bytes).step_by(zeros.len()) {
        let n = (bytes - at).min(zeros.len() as u64) as usize;
        file.write_all_at(&zeros[..n], at).unwrap();
    }
    file.sync_all().unwrap();
    file
}

/// p50, p99 and p99.9 (µs) of writing 600 bytes (about one decision event's frame) into a
/// preallocated, zero-filled file and `fdatasync`ing them, the WAL's own pattern, `n` times paced at
/// 1,000/s: the disk's share of every decision's commit, measured in the same run as the calls.
fn fsync_latency(path: &Path, n: usize) -> [f64; 3] {
    use std::os::unix::fs::FileExt;
    let record = [b'x'; RECORD];
    let file = zeroed_file(path, (RECORD * n) as u64);
    let start = Instant::now();
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let at = start + Duration::from_millis(i as u64);
        if let Some(wait) = at.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let started = Instant::now();
        file.write_all_at(&record, (i * record.len()) as u64).unwrap();
        file.sync_data().unwrap();
        samples.push(started.elapsed());
    }
    samples.sort_unstable();
    let quantile = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e6;
    [quantile(0.5), quantile(0.99), quantile(0.999)]
}

/// Opens `per_agent` sessions for each agent (one connection per agent), calls once on each, then
/// again, reporting errors and the server's RSS along the way.
async fn hold_sessions(warden: &Warden, tokens: &[String], per_agent: usize) {
    let url = format!("{}/mcp/everything", warden.url);
    let total = tokens.len() * per_agent;
    println!(
        "{total} sessions held at once: {} agents × {per_agent} (per-agent cap 64), one connection per agent",
        tokens.len()
    );
    let before = warden.rss_mib();
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for token in tokens {
        let mut conn = Conn::new(Endpoint::new(&url, Some(token)));
        tasks.spawn(async move {
            let mut sessions = Vec::with_capacity(per_agent);
            for _ in 0..per_agent {
                sessions.push(conn.open().await.unwrap_or_else(|e| panic!("open a session: {e}")));
            }
            for (id, session) in sessions.iter().enumerate() {
                conn.call(session, Op::Echo, id as u64)
                    .await
                    .unwrap_or_else(|e| panic!("first call: {e}"));
            }
            (conn, sessions)
        });
    }
    let held = tasks.join_all().await;
    let opened = started.elapsed();
    let after_open = warden.rss_mib();

    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for (mut conn, sessions) in held {
        tasks.spawn(async move {
            for (id, session) in sessions.iter().enumerate() {
                conn.call(session, Op::Echo, 1_000 + id as u64)
                    .await
                    .unwrap_or_else(|e| panic!("second call (was the session dropped?): {e}"));
            }
            (conn, sessions)
        });
    }
    let held = tasks.join_all().await;
    let second = started.elapsed();
    let after_second = warden.rss_mib();

    let mut tasks = JoinSet::new();
    for (mut conn, sessions) in held {
        tasks.spawn(async move {
            for session in &sessions {
                conn.close(session).await;
            }
        });
    }
    tasks.join_all().await;
    let after_close = warden.rss_mib();
    println!(
        "  opened {total} sessions + 1 call each in {:.2} s, a second call on each in {:.2} s: 0 errors",
        opened.as_secs_f64(),
        second.as_secs_f64()
    );
    println!(
        "  warden RSS: before {before:.1} MiB, after opening {after_open:.1} MiB, after the second round \
         {after_second:.1} MiB, after closing them {after_close:.1} MiB"
    );
}
