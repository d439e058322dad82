//! The OTLP/HTTP JSON receiver: Claude Code's telemetry (reference/integration-spec.md §1.9) as it
//! sends it, attributed by the agent's token or by the resource attributes `warden init` writes, into
//! the audit lake; spend counted once; unknown identities recorded as such; malformed exports refused.

use serde_json::{Value, json};

use crate::support::{Api, Server, stderr, stdout};

struct World {
    _dir: tempfile::TempDir,
    server: Server,
    admin: Api,
    admin_token: String,
}

fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let admin_token = server.admin_token();
    let admin = server.api(&admin_token);
    for team in ["payments", "ops"] {
        assert_eq!(admin.post("/v1/teams", &json!({"name": team})).status, 201);
    }
    World {
        _dir: dir,
        server,
        admin,
        admin_token,
    }
}

impl World {
    /// Registers `team/name` and returns its id and an access token.
    fn agent(&self, team: &str, name: &str) -> (String, String) {
        let reply = self.admin.post(
            "/v1/agents",
            &json!({"team": team, "name": name, "purpose": "writes code"}),
        );
        assert_eq!(reply.status, 201, "{reply:?}");
        let id = reply.body["id"].as_str().unwrap().to_owned();
        let token = Api::anonymous(&self.server.url).post(
            "/oauth2/token",
            &json!({"grant_type": "client_credentials", "client_id": id, "client_secret": reply.body["client_secret"]}),
        );
        assert_eq!(token.status, 200, "{token:?}");
        (id, token.body["access_token"].as_str().unwrap().to_owned())
    }

    /// POSTs an OTLP JSON export, with `token` as `Authorization: Bearer` when given.
    fn export(&self, signal: &str, token: Option<&str>, body: &[u8], content_type: &str) -> crate::support::Reply {
        let api = Api {
            base: self.server.url.clone(),
            token: token.map(str::to_owned),
        };
        api.request("POST", &format!("/v1/otlp/v1/{signal}"), Some((content_type, body)))
    }

    fn send(&self, signal: &str, token: Option<&str>, body: &Value) -> crate::support::Reply {
        self.export(signal, token, body.to_string().as_bytes(), "application/json")
    }
}

fn string_attrs(pairs: &[(&str, &str)]) -> Value {
    Value::Array(
        pairs
            .iter()
            .map(|(k, v)| json!({"key": k, "value": {"stringValue": v}}))
            .collect(),
    )
}

/// The resource Claude Code 2.1.332 reports, with the attributes `warden init` adds
/// (`OTEL_RESOURCE_ATTRIBUTES=warden.agent.id=…,warden.team=…,enduser.id=…`).
fn resource(agent: Option<&str>) -> Value {
    let mut pairs = vec![
        ("service.name", "claude-code"),
        ("service.version", "2.1.332"),
        ("os.type", "linux"),
        ("host.arch", "x64"),
    ];
    if let Some(agent) = agent {
        pairs.push(("warden.agent.id", agent));
        pairs.push(("enduser.id", agent));
    }
    json!({"attributes": string_attrs(&pairs)})
}

/// One `claude_code.api_request` log record as Claude Code sends it (every attribute a string).
fn api_request(at_s: u64, model: &str, input: u64, output: u64, cost: &str) -> Value {
    let (input, output) = (input.to_string(), output.to_string());
    json!({
        "timeUnixNano": format!("{at_s}000000000"),
        "observedTimeUnixNano": format!("{at_s}000500000"),
        "body": {"stringValue": "claude_code.api_request"},
        "attributes": string_attrs(&[
            ("user.id", "3f1c…"),
            ("session.id", "8169fef3-0d6b-4b5e-9c1a-6f1e2f0d9a11"),
            ("terminal.type", "non-interactive"),
            ("event.name", "api_request"),
            ("event.timestamp", "2026-11-25T10:00:00.000Z"),
            ("event.sequence", "3"),
            ("prompt.id", "b766de37-5a0e-4f0a-8d2c-1f2e3d4c5b6a"),
            ("model", model),
            ("input_tokens", &input),
            ("output_tokens", &output),
            ("cache_read_tokens", "4096"),
            ("cache_creation_tokens", "512"),
            ("cost_usd", cost),
            ("duration_ms", "2345"),
            ("request_id", "req_011CV"),
            ("speed", "normal"),
        ]),
    })
}

/// The `tool_result` record of §1.9 (not spend; the hook records tool calls).
fn tool_result() -> Value {
    json!({"timeUnixNano":"1795630610328000000","body":{"stringValue":"claude_code.tool_result"},
        "attributes": string_attrs(&[("session.id", "8169fef3-…"), ("event.name", "tool_result"),
            ("tool_name", "mcp_tool"), ("tool_use_id", "toolu_fake_01"), ("success", "true"),
            ("duration_ms", "93"),
            ("tool_parameters", "{\"mcp_server_name\":\"everything\",\"mcp_tool_name\":\"echo\"}")])})
}

fn logs(agent: Option<&str>, records: Vec<Value>) -> Value {
    json!({"resourceLogs": [{
        "resource": resource(agent),
        "scopeLogs": [{"scope": {"name": "com.anthropic.claude_code.events", "version": "2.1.332"},
                       "logRecords": records}]
    }]})
}

/// `claude_code.token.usage` (delta sum, `asDouble`, attribute `type`) and `claude_code.cost.usage`.
fn metrics(agent: Option<&str>, model: &str, input: f64, output: f64, cost: f64) -> Value {
    let point = |kind: Option<&str>, value: f64| {
        let mut pairs = vec![
            ("session.id", "8169fef3-0d6b-4b5e-9c1a-6f1e2f0d9a11"),
            ("terminal.type", "non-interactive"),
            ("model", model),
            ("query_source", "main"),
        ];
        if let Some(kind) = kind {
            pairs.push(("type", kind));
        }
        json!({"attributes": string_attrs(&pairs), "startTimeUnixNano": "1795630600000000000",
               "timeUnixNano": "1795630610000000000", "asDouble": value})
    };
    json!({"resourceMetrics": [{
        "resource": resource(agent),
        "scopeMetrics": [{"scope": {"name": "com.anthropic.claude_code", "version": "2.1.332"}, "metrics": [
            {"name": "claude_code.session.count", "unit": "count",
             "sum": {"aggregationTemporality": 1, "isMonotonic": true, "dataPoints": [point(None, 1.0)]}},
            {"name": "claude_code.token.usage", "unit": "tokens", "description": "Number of tokens used",
             "sum": {"aggregationTemporality": 1, "isMonotonic": true,
                     "dataPoints": [point(Some("input"), input), point(Some("output"), output),
                                    point(Some("cacheRead"), 4096.0)]}},
            {"name": "claude_code.cost.usage", "unit": "USD",
             "sum": {"aggregationTemporality": 1, "isMonotonic": true, "dataPoints": [point(None, cost)]}}
        ]}]
    }]})
}

fn ok(reply: &crate::support::Reply) {
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.body, json!({"partialSuccess": {}}));
}

fn n(value: &Value) -> i64 {
    value
        .as_i64()
        .unwrap_or_else(|| value.as_str().and_then(|s| s.parse().ok()).unwrap_or(-1))
}

#[test]
fn claude_code_telemetry_is_attributed_and_spend_counted_once() {
    let w = world();
    let (coder, coder_token) = w.agent("payments", "coder");
    let (reviewer, _) = w.agent("ops", "reviewer");

    // With the agent's token (what otelHeadersHelper sends): authoritative.
    let batch = logs(
        Some(&coder),
        vec![
            api_request(1_795_630_600, "claude-sonnet-4-5", 1200, 300, "0.0123"),
            tool_result(),
            api_request(1_795_630_601, "claude-haiku-4-5", 800, 200, "0.0077"),
        ],
    );
    ok(&w.send("logs", Some(&coder_token), &batch));
    // A resent export is stored once.
    ok(&w.send("logs", Some(&coder_token), &batch));
    // Without a token, by the resource attribute `warden init` writes.
    ok(&w.send(
        "logs",
        None,
        &logs(
            Some(&reviewer),
            vec![api_request(1_795_630_602, "claude-sonnet-4-5", 500, 100, "0.005")],
        ),
    ));
    // The same spend as metrics: kept for cross-checking, never summed as spend.
    let m = metrics(Some(&coder), "claude-sonnet-4-5", 2000.0, 500.0, 0.02);
    ok(&w.send("metrics", Some(&coder_token), &m));
    ok(&w.send("metrics", Some(&coder_token), &m));

    let rows = w.admin.audit(
        "SELECT agent_id, team, count(*) AS calls, sum(input_tokens) AS input, sum(output_tokens) AS output, \
         sum(cache_read_tokens) AS cache_read, sum(cost_micro_usd) AS cost, min(status_detail) AS detail, \
         min(session_id) AS session, min(model_provider) AS provider \
         FROM events WHERE activity_name = 'invoke_model' GROUP BY agent_id, team ORDER BY agent_id",
    );
    assert_eq!(rows.len(), 2, "{rows:?}");
    let by = |agent: &str| {
        rows.iter()
            .find(|r| r["agent_id"] == agent)
            .unwrap_or_else(|| panic!("{rows:?}"))
    };
    let c = by(&coder);
    assert_eq!(c["team"], "payments");
    assert_eq!(
        (
            n(&c["calls"]),
            n(&c["input"]),
            n(&c["output"]),
            n(&c["cache_read"]),
            n(&c["cost"])
        ),
        (2, 2000, 500, 8192, 20_000),
        "{c}"
    );
    assert!(c["detail"].is_null(), "a token needs no note: {c}");
    assert_eq!(c["session"], "8169fef3-0d6b-4b5e-9c1a-6f1e2f0d9a11");
    assert_eq!(c["provider"], "anthropic");
    let r = by(&reviewer);
    assert_eq!(r["team"], "ops");
    assert_eq!((n(&r["calls"]), n(&r["input"]), n(&r["cost"])), (1, 500, 5000), "{r}");
    assert!(
        r["detail"]
            .as_str()
            .unwrap()
            .contains("attributed by resource attribute `warden.agent.id`"),
        "{r}"
    );

    // Metric points: one event each (once, despite the resend), with no spend columns.
    let points = w.admin.audit(
        "SELECT count(*) AS n, count(input_tokens) AS with_tokens, count(cost_micro_usd) AS with_cost \
         FROM events WHERE activity_name = 'usage_metric'",
    );
    assert_eq!(
        (
            n(&points[0]["n"]),
            n(&points[0]["with_tokens"]),
            n(&points[0]["with_cost"])
        ),
        (4, 0, 0),
        "{points:?}"
    );
    let classes = w
        .admin
        .audit("SELECT DISTINCT class_uid, type_uid FROM events WHERE uid LIKE 'otlp-%'");
    assert_eq!(classes.len(), 1, "{classes:?}");
    assert_eq!(
        (n(&classes[0]["class_uid"]), n(&classes[0]["type_uid"])),
        (6003, 600_399)
    );

    // The spend report sums the api_request tokens once per agent and team.
    let out = w.server.cli(&w.admin_token, &["govern", "spend", "--format", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let reports: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let report = |name: &str| {
        reports
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["report"] == name)
            .unwrap_or_else(|| panic!("{reports}"))["rows"]
            .as_array()
            .unwrap()
            .clone()
    };
    let teams = report("spend_per_team");
    let team = |t: &str| {
        teams
            .iter()
            .find(|r| r["team"] == t)
            .unwrap_or_else(|| panic!("{teams:?}"))
    };
    assert_eq!(
        (
            n(&team("payments")["input_tokens"]),
            n(&team("payments")["output_tokens"])
        ),
        (2000, 500)
    );
    assert_eq!(n(&team("payments")["cost_micro_usd"]), 20_000);
    assert_eq!(n(&team("ops")["total_tokens"]), 600);
    let agents = report("spend_per_agent_top10");
    assert_eq!(agents[0]["agent_id"], json!(coder), "{agents:?}");
    assert_eq!(n(&agents[0]["total_tokens"]), 2500);

    // And `warden audit query` shows the same.
    let out = w.server.cli(
        &w.admin_token,
        &[
            "audit",
            "query",
            "SELECT team, sum(input_tokens) AS input FROM events GROUP BY team ORDER BY team",
            "--format",
            "json",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let rows: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert!(
        rows.as_array()
            .unwrap()
            .iter()
            .any(|r| r["team"] == "payments" && n(&r["input"]) == 2000),
        "{rows}"
    );
}

#[test]
fn unknown_identities_are_recorded_as_such_and_malformed_exports_refused() {
    let w = world();
    let ghost = "spiffe://warden.local/team/payments/agent/ghost";
    ok(&w.send(
        "logs",
        None,
        &logs(
            Some(ghost),
            vec![api_request(1_795_630_600, "claude-sonnet-4-5", 70, 7, "0.001")],
        ),
    ));
    ok(&w.send(
        "logs",
        None,
        &logs(
            None,
            vec![api_request(1_795_630_601, "claude-sonnet-4-5", 50, 5, "0.0005")],
        ),
    ));
    ok(&w.send("metrics", None, &metrics(None, "claude-sonnet-4-5", 50.0, 5.0, 0.0005)));

    let rows = w.admin.audit(
        "SELECT agent_id, team, input_tokens, status_detail FROM events \
         WHERE activity_name = 'invoke_model' ORDER BY agent_id",
    );
    assert_eq!(rows.len(), 2, "{rows:?}");
    let ghost_row = rows.iter().find(|r| r["agent_id"] == ghost).unwrap();
    assert!(
        ghost_row["team"].is_null(),
        "an unproven id claims no team: {ghost_row}"
    );
    assert_eq!(n(&ghost_row["input_tokens"]), 70);
    assert!(
        ghost_row["status_detail"]
            .as_str()
            .unwrap()
            .starts_with("unattributed:"),
        "{ghost_row}"
    );
    let unknown = rows.iter().find(|r| r["agent_id"] == "unknown").unwrap();
    assert!(unknown["status_detail"].as_str().unwrap().starts_with("unattributed:"));
    let findings = w.admin.audit(
        "SELECT agent_id FROM events WHERE class_uid = 2004 AND finding_uid = 'unattributed-telemetry' \
         ORDER BY agent_id",
    );
    // One per resource: the ghost's logs; the anonymous logs and metrics share one resource.
    assert_eq!(findings.len(), 2, "{findings:?}");

    let out = w.server.cli(&w.admin_token, &["govern", "shadow", "--format", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains(ghost), "{}", stdout(&out));

    // A token that does not verify is refused, not recorded under a name it cannot prove.
    let reply = w.send("logs", Some("not-a-jwt"), &logs(None, vec![]));
    assert_eq!(reply.status, 401, "{reply:?}");
    assert!(reply.message().contains("agent token is not accepted"), "{reply:?}");

    let bad_tokens = {
        let mut record = api_request(1, "m", 1, 1, "0.1");
        record["attributes"][8] = json!({"key": "input_tokens", "value": {"stringValue": "lots"}});
        logs(None, vec![record])
    };
    let cases: Vec<(&str, Vec<u8>, &str, u16, &str)> = vec![
        ("logs", b"{\"resourceLogs\": [".to_vec(), "application/json", 400, "not JSON"),
        ("logs", b"[]".to_vec(), "application/json", 400, "JSON object"),
        ("logs", br#"{"resourceLogs": {}}"#.to_vec(), "application/json", 400, "`resourceLogs` must be an array"),
        (
            "logs",
            br#"{"resourceLogs": [{"scopeLogs": [{"logRecords": [{"attributes": [{"value": {}}]}]}]}]}"#.to_vec(),
            "application/json",
            400,
            "resourceLogs[0].scopeLogs[0].logRecords[0].attributes[0]",
        ),
        ("logs", bad_tokens.to_string().into_bytes(), "application/json", 400, "`input_tokens` must be a whole number"),
        (
            "metrics",
            br#"{"resourceMetrics": [{"scopeMetrics": [{"metrics": [{"name": "claude_code.token.usage", "sum": {"dataPoints": [{"asDouble": -3}]}}]}]}]}"#.to_vec(),
            "application/json",
            400,
            "at least 0",
        ),
        ("logs", vec![0x0a, 0x02], "application/x-protobuf", 415, "OTEL_EXPORTER_OTLP_PROTOCOL=http/json"),
    ];
    for (signal, body, content_type, status, expect) in cases {
        let reply = w.export(signal, None, &body, content_type);
        assert_eq!(reply.status, status, "{expect}: {reply:?}");
        assert!(reply.message().contains(expect), "{expect}: {reply:?}");
    }
    // Nothing of the refused exports was stored: the ghost's call and finding, the anonymous call
    // and finding (its metrics share the resource, so the finding), and 4 metric points.
    let count = w
        .admin
        .audit("SELECT count(*) AS n FROM events WHERE uid LIKE 'otlp-%'");
    assert_eq!(n(&count[0]["n"]), 2 + 2 + 4, "{count:?}");

    // The receiver is in the OpenAPI document.
    let doc = Api::anonymous(&w.server.url).get("/openapi.json");
    assert!(doc.body["paths"]["/v1/otlp/v1/logs"]["post"].is_object());
    assert!(doc.body["paths"]["/v1/otlp/v1/metrics"]["post"].is_object());
}
