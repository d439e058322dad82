//! Claude Code's hook protocol as Warden reads it (reference/integration-spec.md §1.3, §1.4): which
//! event a payload is, which tool of which server a tool event names, the Warden name of the subagent
//! a payload comes from, what of a payload is kept in the audit log, and the exact hook output for a
//! decision.
//!
//! Tools: Claude Code's built-in tools (`Bash`, `Read`, `Edit`, …) are the tools of the server
//! [`BUILTIN_SERVER`], so scopes (`claude-code/Read`) and guardrails cover them. MCP tools are named
//! `mcp__<key>__<tool>`, `<key>` being the server's key in `.mcp.json`: under [`GATEWAY_KEY`] (the key
//! `warden init` writes) the tool is `<server>__<tool>` of Warden's gateway; under any other key the
//! agent reached an MCP server directly, bypassing the gateway, and the call is decided as a tool of the
//! server named by that key.
//!
//! What is kept: ids, the event's own small facts (source, reason, duration, …), the tool input with
//! long strings clipped, sizes instead of tool output, and a prompt's length but never its text unless
//! the platform opts in. Assistant messages, transcripts and tool output are never kept.

use serde_json::{Map, Value, json};

use crate::names::Name;

/// The server whose tools are Claude Code's built-in tools.
pub const BUILTIN_SERVER: &str = "claude-code";

/// [`BUILTIN_SERVER`] as a [`Name`].
pub fn builtin_server() -> Name {
    Name(BUILTIN_SERVER.to_owned())
}

/// The key of Warden's gateway in the `.mcp.json` that `warden init` writes.
pub const GATEWAY_KEY: &str = "warden";

/// Longest string kept from a tool's input; longer ones are clipped.
const MAX_KEPT_STRING: usize = 256;
/// Most array items kept from a tool's input.
const MAX_KEPT_ITEMS: usize = 32;
/// Deepest nesting kept from a tool's input.
const MAX_KEPT_DEPTH: usize = 8;

/// Why a hook payload cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct HookError(String);

/// A subagent as Claude Code names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subagent {
    /// `agent_id`: unique per subagent run.
    pub id: String,
    /// `agent_type`: `general-purpose`, `Explore`, a custom agent's name, …
    pub agent_type: Option<String>,
}

/// How a tool call reaches its tool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolRoute {
    /// One of Claude Code's own tools.
    Builtin,
    /// Through Warden's gateway.
    Gateway,
    /// An MCP server configured in Claude Code directly, bypassing the gateway.
    Direct,
}

impl ToolRoute {
    /// The spelling recorded in events.
    pub fn as_str(self) -> &'static str {
        match self {
            ToolRoute::Builtin => "builtin",
            ToolRoute::Gateway => "gateway",
            ToolRoute::Direct => "direct",
        }
    }
}

/// The tool a tool event names, as policy sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolTarget {
    /// The server, as in `server/tool`.
    pub server: String,
    /// The tool.
    pub tool: String,
    /// How the call reaches it.
    pub route: ToolRoute,
}

impl ToolTarget {
    /// Reads a Claude Code `tool_name`.
    pub fn from_tool_name(tool_name: &str) -> Result<ToolTarget, HookError> {
        let bad = |why: &str| HookError(format!("`tool_name` `{}` {why}", clip_str(tool_name, 80)));
        if tool_name.is_empty() {
            return Err(HookError("`tool_name` is empty".to_owned()));
        }
        if tool_name.len() > 256 || tool_name.chars().any(|c| c.is_control() || c == '/') {
            return Err(bad("is longer than 256 bytes or contains `/` or control characters"));
        }
        let Some(rest) = tool_name.strip_prefix("mcp__") else {
            return Ok(ToolTarget {
                server: BUILTIN_SERVER.to_owned(),
                tool: tool_name.to_owned(),
                route: ToolRoute::Builtin,
            });
        };
        let (key, tool) = rest
            .split_once("__")
            .filter(|(k, t)| !k.is_empty() && !t.is_empty())
            .ok_or_else(|| bad("is not of the form mcp__<server>__<tool>"))?;
        if key == GATEWAY_KEY {
            let (server, tool) = tool
                .split_once("__")
                .filter(|(s, t)| !s.is_empty() && !t.is_empty())
                .ok_or_else(|| bad("names Warden's gateway but not as mcp__warden__<server>__<tool>"))?;
            return Ok(ToolTarget {
                server: server.to_owned(),
                tool: tool.to_owned(),
                route: ToolRoute::Gateway,
            });
        }
        Ok(ToolTarget {
            server: key.to_owned(),
            tool: tool.to_owned(),
            route: ToolRoute::Direct,
        })
    }
}

/// One hook invocation's input.
#[derive(Debug, Clone, PartialEq)]
pub struct HookPayload {
    event: String,
    fields: Map<String, Value>,
}

fn clip_str(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let kept: String = s.chars().take(max).collect();
    format!("{kept}…")
}

fn optional_str<'a>(fields: &'a Map<String, Value>, key: &str) -> Result<Option<&'a str>, HookError> {
    match fields.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(HookError(format!("`{key}` must be a string"))),
    }
}

impl HookPayload {
    /// Checks a payload: a JSON object with a `hook_event_name`, and the fields its event needs of the
    /// right types.
    pub fn parse(value: Value) -> Result<HookPayload, HookError> {
        let Value::Object(fields) = value else {
            return Err(HookError("the hook input must be a JSON object".to_owned()));
        };
        let event = optional_str(&fields, "hook_event_name")?
            .ok_or_else(|| HookError("the hook input has no `hook_event_name`".to_owned()))?;
        if event.is_empty() || event.len() > 64 || !event.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(HookError(format!(
                "`hook_event_name` `{}` is not an event name",
                clip_str(event, 64)
            )));
        }
        let event = event.to_owned();
        for key in [
            "session_id",
            "agent_id",
            "agent_type",
            "tool_use_id",
            "prompt_id",
            "cwd",
        ] {
            optional_str(&fields, key)?;
        }
        let payload = HookPayload { event, fields };
        if payload.is_tool_event() {
            let name = optional_str(&payload.fields, "tool_name")?
                .ok_or_else(|| HookError(format!("a `{}` hook input has no `tool_name`", payload.event)))?;
            ToolTarget::from_tool_name(name)?;
            match payload.fields.get("tool_input") {
                None | Some(Value::Null | Value::Object(_)) => {}
                Some(_) => return Err(HookError("`tool_input` must be a JSON object".to_owned())),
            }
        }
        if let Some(id) = optional_str(&payload.fields, "agent_id")?
            && (id.is_empty() || id.len() > 128 || !id.chars().any(|c| c.is_ascii_alphanumeric()))
        {
            return Err(HookError(format!(
                "`agent_id` `{}` must have 1 to 128 characters with a letter or digit",
                clip_str(id, 64)
            )));
        }
        Ok(payload)
    }

    /// `hook_event_name`.
    pub fn event(&self) -> &str {
        &self.event
    }

    /// `session_id`, if given.
    pub fn session_id(&self) -> Option<&str> {
        self.fields.get("session_id").and_then(Value::as_str)
    }

    /// The subagent the payload comes from (`agent_id` is present only inside a subagent).
    pub fn subagent(&self) -> Option<Subagent> {
        let id = self.fields.get("agent_id").and_then(Value::as_str)?;
        Some(Subagent {
            id: id.to_owned(),
            agent_type: self.fields.get("agent_type").and_then(Value::as_str).map(str::to_owned),
        })
    }

    /// Whether Warden answers this event with a decision (`PreToolUse`, `PermissionRequest`); every
    /// other event is only recorded.
    pub fn is_decision(&self) -> bool {
        matches!(self.event.as_str(), "PreToolUse" | "PermissionRequest")
    }

    fn is_tool_event(&self) -> bool {
        matches!(
            self.event.as_str(),
            "PreToolUse" | "PermissionRequest" | "PermissionDenied" | "PostToolUse" | "PostToolUseFailure"
        )
    }

    /// The tool a tool event names.
    pub fn tool(&self) -> Option<ToolTarget> {
        if !self.is_tool_event() {
            return None;
        }
        let name = self.fields.get("tool_name").and_then(Value::as_str)?;
        ToolTarget::from_tool_name(name).ok()
    }

    /// `tool_input` (an object; `{}` when absent).
    pub fn tool_input(&self) -> Value {
        match self.fields.get("tool_input") {
            Some(Value::Object(map)) => Value::Object(map.clone()),
            _ => json!({}),
        }
    }

    /// The audit action: `hook.` and the event name in snake case (`hook.pre_tool_use`).
    pub fn action(&self) -> String {
        let mut out = String::from("hook.");
        for (i, c) in self.event.chars().enumerate() {
            if c.is_ascii_uppercase() {
                if i > 0 {
                    out.push('_');
                }
                out.push(c.to_ascii_lowercase());
            } else {
                out.push(c);
            }
        }
        out
    }

    /// What of the payload is kept in the audit log. `keep_prompts`: the platform opted in to keeping
    /// prompt text.
    pub fn summary(&self, keep_prompts: bool) -> Map<String, Value> {
        let mut out = Map::new();
        out.insert("hook_event".to_owned(), json!(self.event));
        for key in [
            "session_id",
            "prompt_id",
            "tool_use_id",
            "cwd",
            "permission_mode",
            "source",
            "model",
            "reason",
            "trigger",
            "notification_type",
            "stop_hook_active",
            "is_interrupt",
            "duration_ms",
            "agent_id",
            "agent_type",
        ] {
            if let Some(value) = self.fields.get(key)
                && (value.is_string() || value.is_number() || value.is_boolean())
            {
                out.insert(key.to_owned(), clip(value, 0));
            }
        }
        if let Some(name) = self.fields.get("tool_name").and_then(Value::as_str) {
            out.insert("tool_name".to_owned(), json!(name));
            if let Some(target) = self.tool() {
                out.insert("server".to_owned(), json!(target.server));
                out.insert("tool".to_owned(), json!(target.tool));
                out.insert("route".to_owned(), json!(target.route.as_str()));
            }
        }
        if let Some(input) = self.fields.get("tool_input") {
            out.insert("tool_input".to_owned(), clip(input, 0));
        }
        if let Some(error) = self.fields.get("error") {
            out.insert("error".to_owned(), clip(error, MAX_KEPT_DEPTH - 1));
        }
        if let Some(response) = self.fields.get("tool_response") {
            out.insert("tool_response_bytes".to_owned(), json!(response.to_string().len()));
            // The `Agent` tool's response carries the subagent's token usage: spend per subagent.
            if let Some(usage) = response.get("usage").filter(|u| u.is_object()) {
                out.insert(
                    "subagent_usage".to_owned(),
                    json!({
                        "agent_id": response.get("agentId"),
                        "agent_type": response.get("agentType"),
                        "total_tokens": response.get("totalTokens"),
                        "usage": clip(usage, MAX_KEPT_DEPTH - 1),
                    }),
                );
            }
        }
        if let Some(prompt) = self.fields.get("prompt").and_then(Value::as_str) {
            out.insert("prompt_chars".to_owned(), json!(prompt.chars().count()));
            if keep_prompts {
                out.insert("prompt".to_owned(), json!(prompt));
            }
        }
        out
    }

    /// The hook output for a decision event: `hookSpecificOutput` with `permissionDecision` (for
    /// `PreToolUse`) or `decision.behavior` (for `PermissionRequest`); `None` for other events.
    pub fn decision_output(&self, allow: bool, reason: &str) -> Option<Value> {
        let reason = clip_str(reason, 9_000);
        match self.event.as_str() {
            "PreToolUse" => Some(json!({
                "hookSpecificOutput": {
                    "hookEventName": "PreToolUse",
                    "permissionDecision": if allow { "allow" } else { "deny" },
                    "permissionDecisionReason": reason,
                }
            })),
            "PermissionRequest" => {
                let decision = if allow {
                    json!({"behavior": "allow"})
                } else {
                    json!({"behavior": "deny", "message": reason})
                };
                Some(json!({
                    "hookSpecificOutput": {"hookEventName": "PermissionRequest", "decision": decision}
                }))
            }
            _ => None,
        }
    }
}

/// A copy of `value` with long strings clipped, long arrays cut and deep nesting summarised.
fn clip(value: &Value, depth: usize) -> Value {
    match value {
        Value::String(s) if s.chars().count() > MAX_KEPT_STRING => Value::String(format!(
            "{} ({} chars)",
            clip_str(s, MAX_KEPT_STRING),
            s.chars().count()
        )),
        Value::Array(items) if depth < MAX_KEPT_DEPTH => {
            let mut kept: Vec<Value> = items.iter().take(MAX_KEPT_ITEMS).map(|v| clip(v, depth + 1)).collect();
            if items.len() > MAX_KEPT_ITEMS {
                kept.push(json!(format!("… {} more", items.len() - MAX_KEPT_ITEMS)));
            }
            Value::Array(kept)
        }
        Value::Object(map) if depth < MAX_KEPT_DEPTH => Value::Object(
            map.iter()
                .take(MAX_KEPT_ITEMS)
                .map(|(k, v)| (clip_str(k, 64), clip(v, depth + 1)))
                .collect(),
        ),
        Value::Array(_) | Value::Object(_) => json!("…"),
        other => other.clone(),
    }
}

/// Lowercase letters and digits of `s`, every other run of characters one `-`, no `-` at either end.
fn slug(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_end_matches('-').to_owned()
}

/// The Warden name of a subagent: its type and its id, e.g. `general-purpose-a3e7ee8edeab8953c`. The
/// same subagent always gets the same name, so its identity is reused (and stays revoked once revoked).
pub fn subagent_name(subagent: &Subagent) -> Result<Name, HookError> {
    let id: String = slug(&subagent.id).chars().take(40).collect();
    let id = id.trim_end_matches('-').to_owned();
    if id.is_empty() {
        return Err(HookError(format!(
            "`agent_id` `{}` has no letters or digits",
            clip_str(&subagent.id, 64)
        )));
    }
    let kind = subagent.agent_type.as_deref().map(slug).unwrap_or_default();
    let kind = if kind.is_empty() { "subagent".to_owned() } else { kind };
    let room = 63 - id.len() - 1;
    let kind: String = kind.chars().take(room).collect();
    let name = format!("{}-{id}", kind.trim_end_matches('-'));
    Name::parse(&name).map_err(|e| HookError(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_server_is_a_name() {
        assert_eq!(Name::parse(BUILTIN_SERVER).unwrap(), builtin_server());
    }

    #[test]
    fn tool_names() {
        let t = ToolTarget::from_tool_name("Bash").unwrap();
        assert_eq!(
            (t.server.as_str(), t.tool.as_str(), t.route),
            ("claude-code", "Bash", ToolRoute::Builtin)
        );
        let t = ToolTarget::from_tool_name("mcp__warden__github__get_issue").unwrap();
        assert_eq!(
            (t.server.as_str(), t.tool.as_str(), t.route),
            ("github", "get_issue", ToolRoute::Gateway)
        );
        let t = ToolTarget::from_tool_name("mcp__everything__echo").unwrap();
        assert_eq!(
            (t.server.as_str(), t.tool.as_str(), t.route),
            ("everything", "echo", ToolRoute::Direct)
        );
        let t = ToolTarget::from_tool_name("mcp__plugin_x_fs__read__all").unwrap();
        assert_eq!((t.server.as_str(), t.tool.as_str()), ("plugin_x_fs", "read__all"));
        for bad in ["", "mcp__", "mcp__x", "mcp____t", "mcp__warden__echo", "a/b"] {
            assert!(ToolTarget::from_tool_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn subagent_names_are_stable_names() {
        let sub = |id: &str, t: Option<&str>| Subagent {
            id: id.to_owned(),
            agent_type: t.map(str::to_owned),
        };
        let n = subagent_name(&sub("a3e7ee8edeab8953c", Some("general-purpose"))).unwrap();
        assert_eq!(n.as_str(), "general-purpose-a3e7ee8edeab8953c");
        assert_eq!(
            subagent_name(&sub("A1", Some("plugin:My Agent"))).unwrap().as_str(),
            "plugin-my-agent-a1"
        );
        assert_eq!(subagent_name(&sub("x", None)).unwrap().as_str(), "subagent-x");
        let long = subagent_name(&sub(&"f".repeat(100), Some(&"t".repeat(100)))).unwrap();
        assert!(long.as_str().len() <= 63);
        assert!(subagent_name(&sub("::", None)).is_err());
    }

    #[test]
    fn payloads() {
        let p =
            HookPayload::parse(json!({"hook_event_name": "UserPromptSubmit", "session_id": "s", "prompt": "hello"}))
                .unwrap();
        assert_eq!(p.action(), "hook.user_prompt_submit");
        assert!(!p.is_decision());
        let summary = p.summary(false);
        assert_eq!(summary["prompt_chars"], 5);
        assert!(!summary.contains_key("prompt"));
        assert_eq!(p.summary(true)["prompt"], "hello");
        for bad in [
            json!([]),
            json!({}),
            json!({"hook_event_name": 3}),
            json!({"hook_event_name": "Pre Tool"}),
            json!({"hook_event_name": "PreToolUse"}),
            json!({"hook_event_name": "PreToolUse", "tool_name": "Bash", "tool_input": "ls"}),
            json!({"hook_event_name": "Stop", "session_id": 7}),
        ] {
            assert!(HookPayload::parse(bad.clone()).is_err(), "{bad}");
        }
        let long = "x".repeat(1000);
        let p = HookPayload::parse(json!({"hook_event_name": "PreToolUse", "tool_name": "Write",
            "tool_input": {"file_path": "/a", "content": long}}))
        .unwrap();
        let kept = p.summary(false)["tool_input"]["content"].as_str().unwrap().to_owned();
        assert!(kept.len() < 300 && kept.ends_with("(1000 chars)"), "{kept}");
        let out = p.decision_output(false, "no").unwrap();
        assert_eq!(out["hookSpecificOutput"]["permissionDecision"], "deny");
    }
}
