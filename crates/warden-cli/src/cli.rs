//! The command line, as clap sees it. Names follow ../shared/PRODUCT.md exactly.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Warden: a zero-trust control plane for fleets of AI agents.
#[derive(Debug, Parser)]
#[command(name = "warden", version, about, max_term_width = 100)]
pub(crate) struct Cli {
    /// The Warden server to talk to.
    #[arg(long, global = true, env = "WARDEN_SERVER", default_value = "http://127.0.0.1:8470")]
    pub(crate) server: String,
    /// A person's access token.
    #[arg(long, global = true, env = "WARDEN_TOKEN", hide_env_values = true)]
    pub(crate) token: Option<String>,
    /// Machine-readable output on stdout, with the API's field names.
    #[arg(long, global = true)]
    pub(crate) json: bool,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the control plane (embedded: SQLite under --data-dir).
    Serve(ServeArgs),
    /// Run a standalone MCP gateway that decides locally from a control plane's policy snapshot
    /// (the access token, --token or WARDEN_TOKEN, needs role gateway).
    Gateway(GatewayArgs),
    /// Product teams.
    #[command(subcommand)]
    Team(TeamCommand),
    /// People's API access tokens.
    #[command(subcommand, name = "access-token")]
    AccessToken(AccessTokenCommand),
    /// Agents and their lifecycle.
    #[command(subcommand)]
    Agent(AgentCommand),
    /// Upstream MCP servers.
    #[command(subcommand, name = "mcp-server")]
    McpServer(McpServerCommand),
    /// Scopes: named bundles of tools.
    #[command(subcommand)]
    Scope(ScopeCommand),
    /// Grant a scope to an agent.
    Grant(GrantArgs),
    /// Take a scope from an agent.
    Ungrant(GrantArgs),
    /// Guardrails: the platform's Cedar floor.
    #[command(subcommand)]
    Guardrail(GuardrailCommand),
    /// Policy decisions and the Cedar schema.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Agent access tokens: issue and delegate.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Signing keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Show who the access token belongs to.
    Whoami,
    /// Hook commands for agent runtimes (stdin JSON in, decision out).
    #[command(subcommand)]
    Hook(HookCommand),
    /// The golden path: register an agent and write a ready Claude Code project for it.
    Init(InitArgs),
    /// Golden-path templates: the files `warden init` writes (the platform team's, versioned).
    #[command(subcommand)]
    Template(TemplateCommand),
    /// The audit lake: SQL over every event of every team.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Governance reports over the audit lake and the registry.
    Govern(GovernArgs),
}

#[derive(Debug, Subcommand)]
pub(crate) enum AuditCommand {
    /// Run one read-only SQL statement over the table `events` (every event, sealed or not).
    /// Platform-admins and auditors see every team's events, a team-admin only its own team's.
    Query(AuditQueryArgs),
    /// Recompute the lake's integrity and name each event or segment altered, removed, reordered or
    /// inserted (exit 1 if any). Through the server (platform-admin or auditor), or offline with
    /// --lake on a lake no server has open.
    Verify(AuditVerifyArgs),
    /// Write an evidence pack: the events of a window with their proofs, the signed checkpoint, the
    /// guardrails, scopes, grants and agents in force and the log's public key, in one file.
    Export(AuditExportArgs),
    /// Check an evidence pack offline (no server): every hash, proof and signature.
    #[command(name = "verify-pack")]
    VerifyPack(AuditVerifyPackArgs),
}

#[derive(Debug, Args)]
pub(crate) struct AuditVerifyArgs {
    /// Verify this lake directory offline instead of asking the server. Refused while a running
    /// `warden serve` has it open (it would change under the check): stop the server first.
    #[arg(long, value_name = "DIR")]
    pub(crate) lake: Option<PathBuf>,
    /// With --lake: the C2SP verifier key to check signatures against, pinned out of band (default:
    /// the key derived from the lake's own `log-key.pem`).
    #[arg(long, value_name = "VKEY", requires = "lake")]
    pub(crate) key: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct AuditExportArgs {
    /// Window start (inclusive): RFC 3339 (2026-11-25T10:00:00Z) or a UTC date (2026-11-25, its
    /// midnight). Events are selected by the time the lake logged them.
    #[arg(long, value_name = "TIME")]
    pub(crate) from: String,
    /// Window end (exclusive): RFC 3339, or a UTC date meaning the end of that day.
    #[arg(long, value_name = "TIME")]
    pub(crate) to: String,
    /// Only this team's events in full (the others' as hashes). Team-admins: their own team only.
    #[arg(long)]
    pub(crate) team: Option<String>,
    /// The tree size of a checkpoint pinned earlier: the pack proves consistency with it.
    #[arg(long, value_name = "SIZE")]
    pub(crate) since_size: Option<u64>,
    /// Where to write the pack (mode 0600, written atomically).
    #[arg(long, value_name = "FILE")]
    pub(crate) out: PathBuf,
}

#[derive(Debug, Args)]
pub(crate) struct AuditVerifyPackArgs {
    /// The evidence pack.
    pub(crate) file: PathBuf,
    /// The C2SP verifier key pinned out of band (default: the key the pack carries).
    #[arg(long, value_name = "VKEY")]
    pub(crate) key: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct AuditQueryArgs {
    /// The SQL, e.g. "SELECT class_uid, count(*) FROM events GROUP BY class_uid".
    pub(crate) sql: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub(crate) format: OutputFormat,
}

/// How `warden audit query` and `warden govern` print rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum OutputFormat {
    /// An aligned text table.
    Table,
    /// A JSON array of objects.
    Json,
    /// RFC 4180 CSV with a header line.
    Csv,
}

impl OutputFormat {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            OutputFormat::Table => "table",
            OutputFormat::Json => "json",
            OutputFormat::Csv => "csv",
        }
    }
}

#[derive(Debug, Args)]
pub(crate) struct GovernArgs {
    /// The report.
    #[arg(value_enum)]
    pub(crate) report: GovernReport,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub(crate) format: OutputFormat,
}

/// The governance reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum GovernReport {
    /// Who holds a sensitive scope, and how much they used it.
    Sensitive,
    /// Calls by registered agents that none of their grants covers.
    Drift,
    /// Agents seen in the lake that the registry does not know.
    Shadow,
    /// Tokens and cost per team, and the ten agents that spent the most.
    Spend,
    /// Share of agents (and their calls) made through the golden path, per team.
    GoldenPath,
    /// Denied calls per team per day.
    Denials,
}

impl GovernReport {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            GovernReport::Sensitive => "sensitive",
            GovernReport::Drift => "drift",
            GovernReport::Shadow => "shadow",
            GovernReport::Spend => "spend",
            GovernReport::GoldenPath => "golden-path",
            GovernReport::Denials => "denials",
        }
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum HookCommand {
    /// A Claude Code hook command: reads the hook input on stdin, asks Warden, prints the decision.
    /// Any failure on a decision exits 2 (Claude Code blocks the call); other events that cannot be
    /// delivered are spooled to .warden/spool.jsonl and delivered later.
    #[command(name = "claude-code")]
    ClaudeCode,
}

#[derive(Debug, Args)]
pub(crate) struct InitArgs {
    /// The project directory (created if missing).
    #[arg(default_value = ".")]
    pub(crate) dir: PathBuf,
    /// The owning team.
    #[arg(long, required_unless_present = "managed")]
    pub(crate) team: Option<String>,
    /// The agent's name.
    #[arg(long, required_unless_present = "managed")]
    pub(crate) name: Option<String>,
    /// Its declared purpose.
    #[arg(long, required_unless_present = "managed")]
    pub(crate) purpose: Option<String>,
    /// The person who answers for it.
    #[arg(long)]
    pub(crate) owner: Option<String>,
    /// A tag, e.g. customer-data (repeatable).
    #[arg(long = "tag")]
    pub(crate) tags: Vec<String>,
    /// The template to render (default: `default`).
    #[arg(long, default_value = "default")]
    pub(crate) template: String,
    /// The MCP gateway URL to put in .mcp.json (default: the server's /mcp).
    #[arg(long)]
    pub(crate) gateway_url: Option<String>,
    /// Overwrite files that were edited since warden init wrote them (or that it did not write).
    #[arg(long)]
    pub(crate) force: bool,
    /// Write managed settings for a fleet rollout into DIR (managed-settings.json, managed-mcp.json)
    /// instead of a project; registers no agent.
    #[arg(long, conflicts_with_all = ["team", "name", "purpose", "owner", "tags"])]
    pub(crate) managed: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum TemplateCommand {
    /// List templates (newest version of each).
    List,
    /// Show a template's files (or write them to --out, to edit and `set` again).
    Show {
        /// The template.
        name: String,
        /// The version (default: the newest).
        #[arg(long)]
        version: Option<i64>,
        /// Write the files under this directory instead of printing them.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Store every file under DIR as the next version of a template (platform-admin).
    Set {
        /// The template.
        name: String,
        /// The directory holding the template's files.
        #[arg(long)]
        from: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum TokenCommand {
    /// Trade an agent's client secret for a short-lived access token (printed alone on stdout).
    Issue {
        /// The agent (SPIFFE id).
        #[arg(long)]
        agent: String,
        /// Its client secret.
        #[arg(long, env = "WARDEN_AGENT_SECRET", hide_env_values = true)]
        secret: String,
        /// Lifetime in seconds (capped by the server, at most 900).
        #[arg(long)]
        ttl: Option<i64>,
        /// Only these of the agent's scopes, comma separated.
        #[arg(long, value_delimiter = ',')]
        scope: Vec<String>,
    },
    /// Print `{"Authorization": "Bearer <agent token>"}` for the agent of a project made by
    /// `warden init` (a headersHelper for .mcp.json); the token is cached in .warden/ until shortly
    /// before it expires.
    Header {
        /// The project (default: $CLAUDE_PROJECT_DIR, else the nearest directory upward holding
        /// .warden/agent.json).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Exchange an agent's token (given with --token) for a subagent's (RFC 8693); the subagent is
    /// registered if new.
    Delegate {
        /// The subagent's name.
        #[arg(long)]
        name: String,
        /// The subagent's scopes, a subset of the parent token's, comma separated.
        #[arg(long, value_delimiter = ',', required = true)]
        scope: Vec<String>,
        /// Lifetime in seconds (never beyond the parent token's expiry).
        #[arg(long)]
        ttl: Option<i64>,
        /// The subagent's declared purpose (default: the parent's).
        #[arg(long)]
        purpose: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum GuardrailCommand {
    /// Add a guardrail from a Cedar file (platform-admin); existing grants are re-checked.
    Add {
        /// A file holding one Cedar `forbid` with @id and @message annotations.
        file: PathBuf,
        /// Revoke the existing grants the new guardrail forbids.
        #[arg(long)]
        enforce: bool,
    },
    /// List guardrails.
    List,
    /// Remove a guardrail.
    Remove {
        /// The guardrail's @id.
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum PolicyCommand {
    /// Decide a tool call for an agent as a dry run (exit 3 when denied).
    Check {
        /// The agent (SPIFFE id or TEAM/NAME).
        #[arg(long)]
        agent: String,
        /// SERVER/TOOL.
        #[arg(long)]
        tool: String,
        /// The call's arguments as JSON.
        #[arg(long)]
        args: Option<String>,
    },
    /// Print the Cedar schema guardrails are written against.
    Schema,
}

#[derive(Debug, Subcommand)]
pub(crate) enum KeysCommand {
    /// Add a new signing key; older ones stay published until their tokens expire (platform-admin).
    Rotate,
}

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Where the database, keys and bootstrap token live.
    #[arg(long, default_value = "warden-data")]
    pub(crate) data_dir: PathBuf,
    /// The address to listen on.
    #[arg(long, default_value = "127.0.0.1:8470")]
    pub(crate) listen: String,
    /// The SPIFFE trust domain of agent ids (default `warden.local`, fixed at first start).
    #[arg(long)]
    pub(crate) trust_domain: Option<String>,
    /// Lifetime of agent access tokens in seconds (at most 900).
    #[arg(long, default_value_t = 900)]
    pub(crate) token_ttl: i64,
    /// How many delegation hops below a root agent are allowed.
    #[arg(long, default_value_t = 3)]
    pub(crate) max_delegation_depth: u32,
    /// The organization's time zone for policy time facts (`hour`, `weekday`): UTC or an offset like +02:00.
    #[arg(long, default_value = "UTC", allow_hyphen_values = true)]
    pub(crate) time_zone: String,
    /// Keep the text of prompts in Claude Code hook events (by default only their length is kept).
    #[arg(long)]
    pub(crate) keep_prompts: bool,
    /// The audit lake's directory (default: DATA_DIR/lake): write-ahead log, Parquet segments, checkpoints.
    #[arg(long, value_name = "DIR")]
    pub(crate) lake: Option<std::path::PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct GatewayArgs {
    /// The control plane's URL (http://host:port) to pull policy from and ship audit events to.
    #[arg(long)]
    pub(crate) control_plane: String,
    /// The address to serve MCP on.
    #[arg(long, default_value = "127.0.0.1:8471")]
    pub(crate) listen: String,
    /// Seconds the gateway goes on deciding from its snapshot without reaching the control plane;
    /// after that it refuses every call until it reaches it again.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub(crate) max_staleness: u64,
    /// Seconds between pulls of the policy snapshot and signing keys (shorter than --max-staleness).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3_600))]
    pub(crate) refresh: u64,
    /// The audit spool: every event is written here (mode 0600) before the call proceeds, and
    /// shipped to the control plane from here.
    #[arg(long, default_value = "./warden-gateway.spool")]
    pub(crate) spool: PathBuf,
    /// The most bytes of audit events the spool holds before the control plane takes them; beyond
    /// it nothing more is recorded, so no call is forwarded, until it does (default 1 GiB).
    #[arg(long, value_name = "BYTES", default_value_t = warden_gateway::remote::DEFAULT_MAX_PENDING_BYTES,
          value_parser = clap::value_parser!(u64).range(64 * 1024..))]
    pub(crate) spool_max_bytes: u64,
}

#[derive(Debug, Subcommand)]
pub(crate) enum TeamCommand {
    /// Create a team (platform-admin).
    Create {
        /// The team's name.
        name: String,
    },
    /// List teams.
    List,
}

#[derive(Debug, Subcommand)]
pub(crate) enum AccessTokenCommand {
    /// Create an access token; the secret is shown once.
    Create {
        /// platform-admin, team-admin, auditor, or gateway (for a standalone gateway).
        #[arg(long)]
        role: String,
        /// The team, for a team-admin.
        #[arg(long)]
        team: Option<String>,
        /// The token's name (names the person in policy and audit).
        #[arg(long)]
        name: String,
    },
    /// List access tokens (never their secrets).
    List,
    /// Revoke an access token.
    Revoke {
        /// The token's name.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum AgentCommand {
    /// Register an agent; its client secret is shown once.
    Register {
        /// The owning team.
        #[arg(long)]
        team: String,
        /// The agent's name.
        #[arg(long)]
        name: String,
        /// Its declared purpose.
        #[arg(long)]
        purpose: String,
        /// The person who answers for it.
        #[arg(long)]
        owner: Option<String>,
        /// A tag, e.g. customer-data (repeatable).
        #[arg(long = "tag")]
        tags: Vec<String>,
    },
    /// List agents.
    List {
        /// Only this team's.
        #[arg(long)]
        team: Option<String>,
        /// Only those with this tag.
        #[arg(long)]
        tag: Option<String>,
    },
    /// Show one agent (SPIFFE id or TEAM/NAME).
    Show {
        /// The agent.
        id: String,
    },
    /// Suspend an agent and, through it, its subagents.
    Suspend {
        /// The agent.
        id: String,
        /// Why, recorded with the change (e.g. an incident number).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Resume a suspended agent.
    Resume {
        /// The agent.
        id: String,
        /// Why, recorded with the change (e.g. an incident number).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Tag an agent (checked against the guardrails).
    Tag {
        /// The agent.
        id: String,
        /// The tag.
        tag: String,
    },
    /// Remove a tag from an agent.
    Untag {
        /// The agent.
        id: String,
        /// The tag.
        tag: String,
    },
    /// Revoke an agent and its subagents, permanently.
    Revoke {
        /// The agent.
        id: String,
        /// Why, recorded with the change (e.g. an incident number).
        #[arg(long)]
        reason: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum McpServerCommand {
    /// Register an MCP server (platform-admin).
    Add {
        /// The server's name.
        name: String,
        /// Its Streamable HTTP endpoint.
        #[arg(long, conflicts_with = "command", required_unless_present = "command")]
        url: Option<String>,
        /// A program speaking MCP over stdio, and its arguments.
        #[arg(long, num_args = 1.., allow_hyphen_values = true, value_name = "CMD [ARG]...")]
        command: Option<Vec<String>>,
        /// The owning team.
        #[arg(long)]
        owner_team: Option<String>,
        /// Mark its tools sensitive.
        #[arg(long)]
        sensitive: bool,
        /// An HTTP header the gateway sends upstream, NAME=VALUE (repeatable; stored, never shown).
        #[arg(long = "header", value_name = "NAME=VALUE")]
        headers: Vec<String>,
        /// An environment variable for a stdio server, NAME=VALUE (repeatable; stored, never shown).
        #[arg(long = "env", value_name = "NAME=VALUE")]
        env: Vec<String>,
    },
    /// List MCP servers.
    List,
}

#[derive(Debug, Subcommand)]
pub(crate) enum ScopeCommand {
    /// Define a scope (platform-admin).
    Define {
        /// The scope's name.
        name: String,
        /// Tool patterns, comma separated: SERVER/TOOL with `*` wildcards.
        #[arg(long, value_delimiter = ',', required = true)]
        tools: Vec<String>,
        /// Mark it sensitive.
        #[arg(long)]
        sensitive: bool,
        /// What it is for.
        #[arg(long, default_value = "")]
        description: String,
    },
    /// List scopes.
    List,
}

#[derive(Debug, Args)]
pub(crate) struct GrantArgs {
    /// The scope.
    pub(crate) scope: String,
    /// The agent (SPIFFE id or TEAM/NAME).
    #[arg(long)]
    pub(crate) agent: String,
}
