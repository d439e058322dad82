//! Validated names of teams, agents, MCP servers, scopes, tags and access tokens.
//!
//! One rule everywhere: `[a-z0-9][a-z0-9-]{0,62}`. Names appear in SPIFFE ids, URLs, Cedar entity ids
//! and file names, so they are kept to characters that need no escaping in any of them.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

/// A name that matches `[a-z0-9][a-z0-9-]{0,62}`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, utoipa::ToSchema)]
#[serde(transparent)]
#[schema(value_type = String, pattern = "^[a-z0-9][a-z0-9-]{0,62}$")]
pub struct Name(pub(crate) String);

/// Why a string is not a valid [`Name`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid name `{value}`: {reason} (names match [a-z0-9][a-z0-9-]{{0,62}})")]
pub struct NameError {
    value: String,
    reason: &'static str,
}

impl Name {
    /// Checks `value` against the naming rule.
    pub fn parse(value: &str) -> Result<Name, NameError> {
        let err = |reason| NameError {
            value: value.chars().take(80).collect(),
            reason,
        };
        let mut chars = value.chars();
        let Some(first) = chars.next() else {
            return Err(err("it is empty"));
        };
        if !(first.is_ascii_lowercase() || first.is_ascii_digit()) {
            return Err(err("it must start with a lowercase letter or a digit"));
        }
        if value.len() > 63 {
            return Err(err("it is longer than 63 characters"));
        }
        if !chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-') {
            return Err(err("only lowercase letters, digits and `-` are allowed"));
        }
        Ok(Name(value.to_owned()))
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for Name {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Name::parse(s)
    }
}

impl<'de> Deserialize<'de> for Name {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        Name::parse(&raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_and_rejects() {
        for ok in ["a", "0", "payments", "team-1", &"a".repeat(63)] {
            assert!(Name::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", "A", "a_b", "a.b", "é", &"a".repeat(64), "a b"] {
            assert!(Name::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn error_says_why() {
        let err = Name::parse("Payments").unwrap_err().to_string();
        assert_eq!(
            err,
            "invalid name `Payments`: it must start with a lowercase letter or a digit (names match [a-z0-9][a-z0-9-]{0,62})"
        );
    }
}
