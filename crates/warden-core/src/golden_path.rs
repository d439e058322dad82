//! Golden-path templates: the files `warden init` writes into a new agent project, owned by the
//! platform team and stored (versioned) in the control plane.
//!
//! A template is a map from a relative path to text with `{{placeholder}}`s. This module owns which
//! paths a template may write ([`check_files`]), which placeholders exist ([`PLACEHOLDERS`]) and how
//! they are filled ([`render`]): in a `.json` file a value is escaped as JSON string content, so a
//! purpose with quotes still renders valid JSON. Files under `managed/` are the fleet's managed
//! settings (`warden init --managed`), not project files.

use std::collections::BTreeMap;

/// Every placeholder a template may use.
pub const PLACEHOLDERS: &[(&str, &str)] = &[
    ("agent_id", "the agent's SPIFFE id"),
    ("team", "the owning team"),
    ("name", "the agent's name"),
    ("purpose", "the agent's declared purpose"),
    ("server", "the control plane's URL"),
    ("gateway", "the MCP gateway's URL (all servers behind one endpoint)"),
    ("otlp_endpoint", "the control plane's OTLP/HTTP receiver"),
    ("warden", "the absolute path of the `warden` binary"),
    ("project_dir", "the project's absolute path"),
    (
        "headers_helper",
        "a shell command printing the agent's Authorization header as JSON",
    ),
];

/// The folder of a template holding managed settings rather than project files.
pub const MANAGED_DIR: &str = "managed/";

/// The most files a template may hold.
pub const MAX_FILES: usize = 64;
/// The most bytes of text a template may hold in all.
pub const MAX_BYTES: usize = 48 * 1024;

/// Why a template or a rendering is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TemplateError(String);

/// Checks a template's files: relative paths without `.`/`..` segments, never inside `.warden/`
/// (Warden's own credentials live there), only known placeholders, within the size limits.
pub fn check_files(files: &BTreeMap<String, String>) -> Result<(), TemplateError> {
    if files.is_empty() {
        return Err(TemplateError("a template needs at least one file".to_owned()));
    }
    if files.len() > MAX_FILES {
        return Err(TemplateError(format!(
            "a template may hold at most {MAX_FILES} files, not {}",
            files.len()
        )));
    }
    let total: usize = files.iter().map(|(p, t)| p.len() + t.len()).sum();
    if total > MAX_BYTES {
        return Err(TemplateError(format!(
            "a template may hold at most {MAX_BYTES} bytes, not {total}"
        )));
    }
    for (path, text) in files {
        check_path(path)?;
        for name in placeholders_in(text) {
            if !PLACEHOLDERS.iter().any(|(known, _)| *known == name) {
                let known: Vec<&str> = PLACEHOLDERS.iter().map(|(n, _)| *n).collect();
                return Err(TemplateError(format!(
                    "`{path}` uses the unknown placeholder `{{{{{name}}}}}`; known: {}",
                    known.join(", ")
                )));
            }
        }
    }
    Ok(())
}

fn check_path(path: &str) -> Result<(), TemplateError> {
    let bad = |why: &str| TemplateError(format!("template path `{path}` {why}"));
    if path.is_empty() || path.len() > 200 {
        return Err(bad("must have 1 to 200 characters"));
    }
    if path.starts_with('/') || path.contains('\\') || path.chars().any(char::is_control) {
        return Err(bad("must be relative, with `/` separators and no control characters"));
    }
    if path.split('/').any(|seg| seg.is_empty() || seg == "." || seg == "..") {
        return Err(bad("must not have empty, `.` or `..` segments"));
    }
    if path == ".warden" || path.starts_with(".warden/") {
        return Err(bad("is inside `.warden/`, which holds the agent's credentials"));
    }
    Ok(())
}

/// The placeholder names used in `text`, in order.
fn placeholders_in(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else { break };
        out.push(after[..end].trim());
        rest = &after[end + 2..];
    }
    out
}

/// Fills the placeholders of the file `path` from `values`. In a `.json` file each value is escaped
/// as JSON string content and the result must parse as JSON.
pub fn render(path: &str, text: &str, values: &BTreeMap<&str, String>) -> Result<String, TemplateError> {
    let json = path.ends_with(".json");
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            out.push_str(&rest[start..]);
            rest = "";
            break;
        };
        let name = after[..end].trim();
        let value = values
            .get(name)
            .ok_or_else(|| TemplateError(format!("`{path}` uses `{{{{{name}}}}}`, which has no value here")))?;
        if json {
            let quoted = serde_json::Value::String(value.clone()).to_string();
            out.push_str(&quoted[1..quoted.len() - 1]);
        } else {
            out.push_str(value);
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    if json && let Err(e) = serde_json::from_str::<serde_json::Value>(&out) {
        return Err(TemplateError(format!(
            "`{path}` does not render to valid JSON: {e}; fix the template with `warden template set`"
        )));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(p, t)| ((*p).to_owned(), (*t).to_owned())).collect()
    }

    #[test]
    fn paths_and_placeholders_are_checked() {
        assert!(check_files(&files(&[(".mcp.json", "{\"a\": \"{{gateway}}\"}")])).is_ok());
        for bad in ["/etc/x", "../x", "a/./b", ".warden/agent.json", "a//b", ""] {
            let err = check_files(&files(&[(bad, "x")])).unwrap_err();
            assert!(err.to_string().starts_with("template path"), "{bad}: {err}");
        }
        let err = check_files(&files(&[("a.md", "{{nope}}")])).unwrap_err();
        assert!(err.to_string().contains("unknown placeholder `{{nope}}`"), "{err}");
        assert!(check_files(&BTreeMap::new()).is_err());
    }

    #[test]
    fn json_values_are_escaped() {
        let values = BTreeMap::from([("purpose", "say \"hi\"\n".to_owned())]);
        let out = render("a.json", "{\"p\": \"{{purpose}}\"}", &values).unwrap();
        let parsed: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(parsed["p"], "say \"hi\"\n");
        assert_eq!(render("a.md", "P: {{ purpose }}", &values).unwrap(), "P: say \"hi\"\n");
        let err = render("a.json", "{\"p\": {{purpose}}}", &values).unwrap_err();
        assert!(err.to_string().contains("does not render to valid JSON"), "{err}");
        assert!(render("a.md", "{{team}}", &values).is_err());
    }
}
