//! The MCP shapes an upstream client needs beyond bare JSON-RPC: the `initialize` handshake, protocol
//! version negotiation, and tool descriptions.
//!
//! Everything here is data: no IO. Fields the gateway does not interpret are kept as raw JSON, so a
//! tool description can be passed on downstream exactly as the upstream sent it.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// The protocol revision Warden asks upstreams for in `initialize`.
pub const PROTOCOL_VERSION: &str = "2025-11-25";

/// The handshake-era revisions Warden accepts when an upstream answers with an older one.
pub const SUPPORTED_PROTOCOL_VERSIONS: &[&str] = &["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];

/// A client or server name and version, as exchanged in `initialize`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Implementation {
    /// The programmatic name.
    pub name: String,
    /// The version.
    pub version: String,
    /// Anything else (`title`, `icons`, `websiteUrl`, …), kept as sent.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Implementation {
    /// An implementation with just a name and a version.
    pub fn new(name: impl Into<String>, version: impl Into<String>) -> Implementation {
        Implementation {
            name: name.into(),
            version: version.into(),
            extra: Map::new(),
        }
    }
}

/// What an upstream said about itself in answer to `initialize`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InitializeResult {
    /// The revision the upstream chose; always one of [`SUPPORTED_PROTOCOL_VERSIONS`].
    pub protocol_version: String,
    /// The upstream's capabilities (`tools`, `resources`, `prompts`, `logging`, …).
    #[serde(default)]
    pub capabilities: Map<String, Value>,
    /// The upstream's name and version.
    pub server_info: Implementation,
    /// Optional usage instructions for clients.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instructions: Option<String>,
    /// Anything else, kept as sent.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A tool an upstream offers, as listed by `tools/list`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Tool {
    /// The tool's name, unique within its upstream.
    pub name: String,
    /// What the tool does, for the model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The JSON Schema of the arguments, as sent.
    pub input_schema: Value,
    /// Everything else (`title`, `outputSchema`, `annotations`, `execution`, `_meta`, …), as sent.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One page of a `tools/list` result.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ToolsPage {
    pub(crate) tools: Vec<Tool>,
    #[serde(default)]
    pub(crate) next_cursor: Option<String>,
}

/// The `initialize` request parameters Warden sends: no client capabilities, since the gateway answers
/// no server-to-client requests (sampling, roots, elicitation) yet.
pub(crate) fn initialize_params(client_info: &Implementation) -> Value {
    json!({
        "protocolVersion": PROTOCOL_VERSION,
        "capabilities": {},
        "clientInfo": client_info,
    })
}
