//! The 2026-07-28 revision of MCP ("modern"): no handshake and no sessions; every request carries
//! its revision, client info and capabilities in `params._meta` and in the `MCP-Protocol-Version`,
//! `Mcp-Method` and `Mcp-Name` headers; `server/discover` replaces `initialize`; every result carries
//! `resultType`, and list results carry `ttlMs` and `cacheScope`.
//!
//! This module owns the per-request envelope checks (the same ladder as the reference SDKs: envelope,
//! then headers equal to the body, then a supported revision) and the modern result shapes. Policy
//! is always enforced on the body (`params.name`), never on a header; a header that disagrees with the
//! body is refused. Methods are served by the same code as the handshake era.

use axum::http::{HeaderMap, StatusCode};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use warden_mcp::jsonrpc::{ErrorObject, Request};

use crate::gateway::{SUPPORTED_PROTOCOL_VERSIONS, UNSUPPORTED_VERSION, capabilities, instructions, server_info};
use crate::session::Endpoint;

/// The modern revisions the gateway serves.
pub const MODERN_PROTOCOL_VERSIONS: &[&str] = &["2026-07-28"];

/// A header disagrees with the body.
const HEADER_MISMATCH: i64 = -32020;
const VERSION_KEY: &str = "io.modelcontextprotocol/protocolVersion";
const CAPABILITIES_KEY: &str = "io.modelcontextprotocol/clientCapabilities";
const ROUTING_HEADERS: [&str; 3] = ["mcp-protocol-version", "mcp-method", "mcp-name"];

/// Every revision the gateway speaks, newest first, as `server/discover` and `-32022` list them.
pub(crate) fn all_versions() -> Vec<&'static str> {
    MODERN_PROTOCOL_VERSIONS
        .iter()
        .chain(SUPPORTED_PROTOCOL_VERSIONS)
        .copied()
        .collect()
}

/// Whether a request with this `MCP-Protocol-Version` header takes the modern path: any revision the
/// handshake era does not know (an unknown one is then refused with the supported list).
pub(crate) fn is_modern(version_header: Option<&str>) -> bool {
    version_header.is_some_and(|v| !SUPPORTED_PROTOCOL_VERSIONS.contains(&v))
}

/// Checks the per-request envelope and the routing headers.
pub(crate) fn check(request: &Request, headers: &HeaderMap) -> Result<(), ErrorObject> {
    let meta = request
        .params
        .as_ref()
        .and_then(|p| p.get("_meta"))
        .and_then(Value::as_object)
        .ok_or_else(|| {
            invalid_params(format!(
                "params._meta must be an object carrying `{VERSION_KEY}` and `{CAPABILITIES_KEY}`"
            ))
        })?;
    let Some(version) = meta.get(VERSION_KEY) else {
        return Err(invalid_params(format!("params._meta is missing `{VERSION_KEY}`")));
    };
    if !meta.contains_key(CAPABILITIES_KEY) {
        return Err(invalid_params(format!("params._meta is missing `{CAPABILITIES_KEY}`")));
    }
    for name in ROUTING_HEADERS {
        if headers.get_all(name).iter().count() > 1 {
            return Err(mismatch(format!("the `{name}` header appears more than once")));
        }
    }
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if header("mcp-protocol-version").is_none_or(|v| Some(v) != version.as_str()) {
        return Err(mismatch(
            "the `MCP-Protocol-Version` header does not match `params._meta`".to_owned(),
        ));
    }
    if header("mcp-method") != Some(request.method.as_str()) {
        return Err(mismatch("the `Mcp-Method` header does not match the method".to_owned()));
    }
    let name_key = match request.method.as_str() {
        "tools/call" | "prompts/get" => Some("name"),
        "resources/read" => Some("uri"),
        _ => None,
    };
    if let Some(key) = name_key
        && let Some(body) = request.params.as_ref().and_then(|p| p.get(key))
        && decode_header(header("mcp-name")).as_deref() != body.as_str()
    {
        return Err(mismatch(format!("the `Mcp-Name` header does not match `params.{key}`")));
    }
    let Some(version) = version.as_str() else {
        return Err(invalid_params(
            "the protocol version in params._meta must be a string".to_owned(),
        ));
    };
    if !MODERN_PROTOCOL_VERSIONS.contains(&version) {
        return Err(unsupported_version(Some(version)));
    }
    Ok(())
}

/// The `-32022` error naming every revision the gateway speaks.
pub(crate) fn unsupported_version(requested: Option<&str>) -> ErrorObject {
    let requested = requested.map(crate::gateway::excerpt);
    ErrorObject {
        code: UNSUPPORTED_VERSION,
        message: "Unsupported protocol version".to_owned(),
        data: Some(json!({"supported": all_versions(), "requested": requested})),
    }
}

/// The `server/discover` result for `endpoint`.
pub(crate) fn discover(endpoint: &Endpoint) -> Value {
    json!({
        "resultType": "complete",
        "supportedVersions": all_versions(),
        "capabilities": capabilities(),
        "instructions": instructions(endpoint),
        "_meta": {"io.modelcontextprotocol/serverInfo": server_info()},
        // What an agent may see depends on its token, so nothing is shared across tokens or kept.
        "ttlMs": 0,
        "cacheScope": "private",
    })
}

/// A handshake-era result in modern shape: `resultType` always, cache hints on lists.
pub(crate) fn shape(method: &str, mut result: Value) -> Value {
    if let Value::Object(object) = &mut result {
        object.entry("resultType").or_insert_with(|| Value::from("complete"));
        if method.ends_with("/list") {
            object.insert("ttlMs".to_owned(), Value::from(0));
            object.insert("cacheScope".to_owned(), Value::from("private"));
        }
    }
    result
}

/// The HTTP status for a modern error response.
pub(crate) fn status_for(error: &ErrorObject) -> StatusCode {
    match error.code {
        ErrorObject::METHOD_NOT_FOUND => StatusCode::NOT_FOUND,
        ErrorObject::PARSE_ERROR
        | ErrorObject::INVALID_REQUEST
        | ErrorObject::INVALID_PARAMS
        | HEADER_MISMATCH
        | UNSUPPORTED_VERSION => StatusCode::BAD_REQUEST,
        _ => StatusCode::OK,
    }
}

/// A header value, undoing the `=?base64?…?=` wrapping used for values that are not plain ASCII.
fn decode_header(value: Option<&str>) -> Option<String> {
    let value = value?;
    match value.strip_prefix("=?base64?").and_then(|v| v.strip_suffix("?=")) {
        Some(payload) => String::from_utf8(STANDARD.decode(payload).ok()?).ok(),
        None => Some(value.to_owned()),
    }
}

fn invalid_params(message: String) -> ErrorObject {
    ErrorObject::new(ErrorObject::INVALID_PARAMS, message)
}

fn mismatch(message: String) -> ErrorObject {
    ErrorObject::new(HEADER_MISMATCH, message)
}

#[cfg(test)]
mod tests {
    use super::decode_header;

    #[test]
    fn header_values() {
        assert_eq!(decode_header(Some("echo")).as_deref(), Some("echo"));
        assert_eq!(decode_header(Some("=?base64?w6ljaG8=?=")).as_deref(), Some("écho"));
        assert_eq!(decode_header(Some("=?base64?!!?=")), None);
        assert_eq!(decode_header(None), None);
    }
}
