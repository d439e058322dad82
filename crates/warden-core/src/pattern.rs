//! Tool patterns: which tools a scope covers, written `server/tool-glob` (`github/get_*`, `fs/*`).
//!
//! The server part is a registered server's name or `*`; the tool part is an MCP tool name in which `*`
//! matches any run of characters. Matching is exact otherwise: no case folding, no other wildcards.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

/// A validated `server/tool-glob` pattern.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
#[serde(transparent)]
#[schema(value_type = String, example = "github/get_*")]
pub struct ToolPattern(String);

/// Why a string is not a tool pattern.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid tool pattern `{value}`: {reason} (expected SERVER/TOOL, e.g. `github/get_*`)")]
pub struct ToolPatternError {
    value: String,
    reason: &'static str,
}

impl ToolPattern {
    /// Validates `value`.
    pub fn parse(value: &str) -> Result<ToolPattern, ToolPatternError> {
        let err = |reason| ToolPatternError {
            value: value.chars().take(200).collect(),
            reason,
        };
        let (server, tool) = value.split_once('/').ok_or_else(|| err("it has no `/`"))?;
        if server != "*" && crate::Name::parse(server).is_err() {
            return Err(err("the server part must be a server name or `*`"));
        }
        if tool.is_empty() || tool.len() > 128 {
            return Err(err("the tool part must have 1 to 128 characters"));
        }
        if !tool
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '*'))
        {
            return Err(err(
                "the tool part may hold only letters, digits, `_`, `-`, `.` and `*`",
            ));
        }
        Ok(ToolPattern(value.to_owned()))
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the tool `tool` of server `server` is covered.
    pub fn matches(&self, server: &str, tool: &str) -> bool {
        let Some((pattern_server, pattern_tool)) = self.0.split_once('/') else {
            return false;
        };
        (pattern_server == "*" || pattern_server == server) && glob_match(pattern_tool, tool)
    }
}

/// `*`-only glob matching, iterative with single backtracking point (linear in practice).
fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some(b'*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(&c) if c == t[ti] => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((star_pi, star_ti)) => {
                    pi = star_pi + 1;
                    ti = star_ti + 1;
                    star = Some((star_pi, star_ti + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

impl fmt::Display for ToolPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ToolPattern {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        ToolPattern::parse(&raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching() {
        let p = ToolPattern::parse("github/get_*").unwrap();
        assert!(p.matches("github", "get_issue"));
        assert!(p.matches("github", "get_"));
        assert!(!p.matches("github", "list_issues"));
        assert!(!p.matches("gitlab", "get_issue"));
        let any = ToolPattern::parse("*/*").unwrap();
        assert!(any.matches("x", "y"));
        let mid = ToolPattern::parse("fs/read*file").unwrap();
        assert!(mid.matches("fs", "read_text_file"));
        assert!(mid.matches("fs", "readfile"));
        assert!(!mid.matches("fs", "read_file_x"));
        let exact = ToolPattern::parse("claude-code/Bash").unwrap();
        assert!(exact.matches("claude-code", "Bash"));
        assert!(!exact.matches("claude-code", "bash"));
    }

    #[test]
    fn rejects() {
        for bad in ["", "github", "/x", "GitHub/x", "github/", "github/a b", "github/a/b"] {
            assert!(ToolPattern::parse(bad).is_err(), "{bad}");
        }
    }
}
