//! The governance queries behind `warden govern …`, as named, documented SQL.
//!
//! Each [`Report`] is one SQL statement over `events` and the registry's `agents` and `grants`
//! tables (see [`crate::Registry`]); run it with [`run`] under the caller's [`Visibility`], so a
//! team-admin's report covers only the team. The SQL is plain enough that DuckDB runs the same text
//! over the same Parquet files (the benchmark does), which lets an auditor re-check any report
//! independently; scope drift, whose [`Report::sql`] filters with Warden's `in_granted_scope`, has
//! the same report in plain SQL as [`Report::portable_sql`].
//!
//! Columns used (`warden_lake::arrow_schema()`): `time_dt`, `class_uid` (6003 = API Activity: tool
//! and model calls), `action_id` (1 allowed, 2 denied), `agent_id`, `team`, `server`, `tool`,
//! `input_tokens`, `output_tokens`, `cost_micro_usd`.
//!
//! Tool patterns of grants are matched as the `grants` table documents (see [`crate::Registry`]):
//! exactly as `warden_core::ToolPattern::matches` reads `server/tool-glob`. Patterns are matched
//! against the distinct tools seen in the lake (a few hundred), never per event; the events then
//! meet the covered (agent, server, tool) triples in hash joins, and only what is left is grouped.
//! Scope drift instead asks `in_granted_scope` (that very `matches`, through a per-agent, per-server
//! index, once per call) on the scan, so only the calls outside every grant go further.
//! Shadow agents group per agent first and compare those few thousand groups with the registry.

use crate::{QueryEngine, QueryError, QueryResult, Registry, Visibility};

/// The end of both scope-drift queries: the calls in `outside`, per agent and tool, the agent's team
/// from the registry (registered agents only).
macro_rules! drift_by_agent_and_tool {
    () => {
        "SELECT o.agent_id, a.team, o.server, o.tool, count(*) AS calls, \
                sum(CASE WHEN o.action_id = 2 THEN 1 ELSE 0 END) AS denied, \
                sum(CASE WHEN o.action_id = 1 THEN 1 ELSE 0 END) AS allowed, \
                max(o.time_dt) AS last_seen \
         FROM outside o JOIN agents a ON a.agent_id = o.agent_id \
         GROUP BY o.agent_id, a.team, o.server, o.tool \
         ORDER BY calls DESC, o.agent_id, o.server, o.tool"
    };
}

/// A named governance query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Report {
    /// Tokens and cost per team.
    SpendPerTeam,
    /// The ten agents that spent the most tokens.
    SpendPerAgentTop10,
    /// Denied calls per team per UTC day.
    DenialsPerTeamPerDay,
    /// Agents seen in the lake that the registry does not know.
    ShadowAgents,
    /// Tool calls by registered agents that none of their grants covers.
    ScopeDrift,
    /// Who holds a sensitive scope, and how much they used it.
    SensitiveScopeHolders,
    /// Share of agents (and of their calls) created through the golden path, per team.
    GoldenPathShare,
}

/// Every report, in the order `warden govern` documents them.
pub const ALL: &[Report] = &[
    Report::SpendPerTeam,
    Report::SpendPerAgentTop10,
    Report::DenialsPerTeamPerDay,
    Report::ShadowAgents,
    Report::ScopeDrift,
    Report::SensitiveScopeHolders,
    Report::GoldenPathShare,
];

impl Report {
    /// The reports behind one `warden govern` subcommand (`sensitive`, `drift`, `shadow`, `spend`,
    /// `golden-path`, and `denials`), or `None` for an unknown name.
    pub fn for_command(command: &str) -> Option<&'static [Report]> {
        Some(match command {
            "sensitive" => &[Report::SensitiveScopeHolders],
            "drift" => &[Report::ScopeDrift],
            "shadow" => &[Report::ShadowAgents],
            "spend" => &[Report::SpendPerTeam, Report::SpendPerAgentTop10],
            "golden-path" => &[Report::GoldenPathShare],
            "denials" => &[Report::DenialsPerTeamPerDay],
            _ => return None,
        })
    }

    /// A stable machine name (`spend_per_team`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Report::SpendPerTeam => "spend_per_team",
            Report::SpendPerAgentTop10 => "spend_per_agent_top10",
            Report::DenialsPerTeamPerDay => "denials_per_team_per_day",
            Report::ShadowAgents => "shadow_agents",
            Report::ScopeDrift => "scope_drift",
            Report::SensitiveScopeHolders => "sensitive_scope_holders",
            Report::GoldenPathShare => "golden_path_share",
        }
    }

    /// One line saying what the report answers.
    pub fn title(self) -> &'static str {
        match self {
            Report::SpendPerTeam => "token spend and cost per team",
            Report::SpendPerAgentTop10 => "the 10 agents that spent the most tokens",
            Report::DenialsPerTeamPerDay => "denied calls per team per UTC day",
            Report::ShadowAgents => "agents in the audit lake that are not registered",
            Report::ScopeDrift => "calls by registered agents to tools outside their granted scopes",
            Report::SensitiveScopeHolders => "agents holding sensitive scopes, with their use of them",
            Report::GoldenPathShare => "share of agents and calls from golden-path agents, per team",
        }
    }

    /// Whether the SQL reads `agents`/`grants` (always registered by [`run`]).
    pub fn uses_registry(self) -> bool {
        !matches!(
            self,
            Report::SpendPerTeam | Report::SpendPerAgentTop10 | Report::DenialsPerTeamPerDay
        )
    }

    /// The same report in SQL any engine runs over the lake's files and the registry's tables (no
    /// Warden function), for cross-checks with other engines; the same answer as [`Report::sql`].
    pub fn portable_sql(self) -> &'static str {
        match self {
            Report::ScopeDrift => SCOPE_DRIFT_PORTABLE,
            other => other.sql(),
        }
    }

    /// The SQL text.
    pub fn sql(self) -> &'static str {
        match self {
            // Events with token or cost data only; cost stays an exact integer of micro-USD.
            Report::SpendPerTeam => {
                "SELECT team, count(*) AS events, \
                 sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens, \
                 sum(coalesce(input_tokens, 0) + coalesce(output_tokens, 0)) AS total_tokens, \
                 sum(cost_micro_usd) AS cost_micro_usd \
                 FROM events \
                 WHERE input_tokens IS NOT NULL OR output_tokens IS NOT NULL OR cost_micro_usd IS NOT NULL \
                 GROUP BY team \
                 ORDER BY total_tokens DESC, team"
            }
            Report::SpendPerAgentTop10 => {
                "SELECT agent_id, min(team) AS team, count(*) AS events, \
                 sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens, \
                 sum(coalesce(input_tokens, 0) + coalesce(output_tokens, 0)) AS total_tokens, \
                 sum(cost_micro_usd) AS cost_micro_usd \
                 FROM events \
                 WHERE input_tokens IS NOT NULL OR output_tokens IS NOT NULL OR cost_micro_usd IS NOT NULL \
                 GROUP BY agent_id \
                 ORDER BY total_tokens DESC, agent_id \
                 LIMIT 10"
            }
            Report::DenialsPerTeamPerDay => {
                "SELECT team, CAST(date_trunc('day', time_dt) AS DATE) AS day, count(*) AS denials \
                 FROM events \
                 WHERE action_id = 2 \
                 GROUP BY team, CAST(date_trunc('day', time_dt) AS DATE) \
                 ORDER BY day, team"
            }
            // Per-agent aggregate first, then the anti-join against the registry.
            Report::ShadowAgents => {
                "WITH seen AS ( \
                   SELECT agent_id, min(team) AS team, count(*) AS events, \
                          min(time_dt) AS first_seen, max(time_dt) AS last_seen \
                   FROM events WHERE agent_id IS NOT NULL GROUP BY agent_id) \
                 SELECT s.agent_id, s.team, s.events, s.first_seen, s.last_seen \
                 FROM seen s \
                 WHERE NOT EXISTS (SELECT 1 FROM agents a WHERE a.agent_id = s.agent_id) \
                 ORDER BY s.events DESC, s.agent_id"
            }
            // The tool calls of registered agents that no grant of theirs covers, aggregated. The
            // test is `in_granted_scope` (see `granted.rs`): a predicate on the scan, so only the
            // few calls outside every grant go further; registered agents only (an unregistered one
            // is a shadow agent, reported there), their team from the registry. `portable_sql` has
            // the same report as a join, for engines without Warden's functions.
            Report::ScopeDrift => {
                concat!(
                    "WITH outside AS ( \
                       SELECT agent_id, server, tool, action_id, time_dt FROM events \
                       WHERE class_uid = 6003 AND tool IS NOT NULL AND agent_id IS NOT NULL \
                         AND NOT in_granted_scope(agent_id, server, tool)) ",
                    drift_by_agent_and_tool!()
                )
            }
            // Holders from the registry; use = allowed calls to a tool a pattern of that scope
            // covers (matched against the tools seen, as for drift).
            Report::SensitiveScopeHolders => {
                "WITH held AS ( \
                   SELECT DISTINCT agent_id, team, scope FROM grants WHERE sensitive), \
                 tools AS (SELECT server, tool FROM event_tools), \
                 keyed AS ( \
                   SELECT t.server, t.tool, CASE WHEN k.wild = 1 THEN '*' ELSE t.server END AS grant_server \
                   FROM tools t CROSS JOIN (VALUES (0), (1)) AS k(wild)), \
                 covered AS ( \
                   SELECT DISTINCT g.agent_id, g.scope, t.server, t.tool \
                   FROM grants g JOIN keyed t ON t.grant_server = g.server \
                   WHERE g.sensitive AND CASE g.tool_match \
                             WHEN 'exact' THEN t.tool = g.tool_text \
                             WHEN 'prefix' THEN starts_with(t.tool, g.tool_text) \
                             ELSE t.tool LIKE g.tool_like ESCAPE '\\' END), \
                 used AS ( \
                   SELECT c.agent_id, c.scope, count(*) AS calls, max(e.time_dt) AS last_used \
                   FROM events e JOIN covered c \
                     ON c.agent_id = e.agent_id AND c.server = e.server AND c.tool = e.tool \
                   WHERE e.class_uid = 6003 AND e.action_id = 1 \
                   GROUP BY c.agent_id, c.scope) \
                 SELECT h.team, h.agent_id, h.scope, coalesce(u.calls, 0) AS calls, u.last_used \
                 FROM held h LEFT JOIN used u ON u.agent_id = h.agent_id AND u.scope = h.scope \
                 ORDER BY h.team, h.agent_id, h.scope"
            }
            Report::GoldenPathShare => {
                "WITH fleet AS ( \
                   SELECT team, count(*) AS agents, \
                          sum(CASE WHEN origin = 'golden-path' THEN 1 ELSE 0 END) AS golden_path_agents \
                   FROM agents WHERE status <> 'revoked' GROUP BY team), \
                 activity AS ( \
                   SELECT a.team, sum(e.calls) AS calls, \
                          sum(CASE WHEN a.origin = 'golden-path' THEN e.calls ELSE 0 END) AS golden_path_calls \
                   FROM (SELECT agent_id, count(*) AS calls FROM events \
                         WHERE class_uid = 6003 GROUP BY agent_id) e \
                   JOIN agents a ON a.agent_id = e.agent_id \
                   GROUP BY a.team) \
                 SELECT f.team, f.agents, f.golden_path_agents, \
                        round(100.0 * f.golden_path_agents / f.agents, 1) AS agent_share_pct, \
                        coalesce(x.calls, 0) AS calls, coalesce(x.golden_path_calls, 0) AS golden_path_calls, \
                        CASE WHEN x.calls > 0 THEN round(100.0 * x.golden_path_calls / x.calls, 1) END AS call_share_pct \
                 FROM fleet f LEFT JOIN activity x ON x.team = f.team \
                 ORDER BY f.team"
            }
        }
    }
}

/// Runs one report as `scope` sees the lake, with the registry snapshot `registry`.
pub async fn run(
    engine: &QueryEngine,
    report: Report,
    scope: &Visibility,
    registry: &Registry,
) -> Result<QueryResult, QueryError> {
    engine.sql_with_registry(report.sql(), scope, registry).await
}

/// Scope drift as a join (see [`Report::portable_sql`]): the tools the events name
/// (`event_tools`), the (agent, server, tool) triples each agent's grants cover (patterns matched
/// against those tools only; `keyed` lists each tool under its server and under `*`, so a grant on
/// one server and a grant on every server both join on an equal key), then the tool calls with no
/// covering triple. Written as `covered RIGHT JOIN calls … IS NULL` so the hash table is built on the
/// small side; the NULL test is on `hit`, not a join key: DataFusion 55 infers `c.agent_id IS NULL`
/// onto the other side of the key equality, which is wrong for an outer join and returns nothing.
const SCOPE_DRIFT_PORTABLE: &str = concat!(
    "WITH tools AS (SELECT server, tool FROM event_tools), \
     keyed AS ( \
       SELECT t.server, t.tool, CASE WHEN k.wild = 1 THEN '*' ELSE t.server END AS grant_server \
       FROM tools t CROSS JOIN (VALUES (0), (1)) AS k(wild)), \
     covered AS ( \
       SELECT DISTINCT g.agent_id, t.server, t.tool, 1 AS hit \
       FROM grants g JOIN keyed t ON t.grant_server = g.server \
       WHERE CASE g.tool_match \
                 WHEN 'exact' THEN t.tool = g.tool_text \
                 WHEN 'prefix' THEN starts_with(t.tool, g.tool_text) \
                 ELSE t.tool LIKE g.tool_like ESCAPE '\\' END), \
     calls AS ( \
       SELECT agent_id, server, tool, action_id, time_dt FROM events \
       WHERE class_uid = 6003 AND tool IS NOT NULL AND agent_id IS NOT NULL), \
     outside AS ( \
       SELECT e.agent_id, e.server, e.tool, e.action_id, e.time_dt \
       FROM covered c RIGHT JOIN calls e \
         ON c.agent_id = e.agent_id AND c.server = e.server AND c.tool = e.tool \
       WHERE c.hit IS NULL) ",
    drift_by_agent_and_tool!()
);
