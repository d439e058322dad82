//! Turning a tool call's JSON arguments into the tags of a `Warden::Arguments` entity.
//!
//! Cedar's strict validation has no open records, and a tool's arguments are open-ended, so
//! arguments are an entity whose tags (string-valued, validated with `hasTag`/`getTag`) hold every
//! argument as text. Nothing a JSON value can hold makes a request fail: numbers of any kind become
//! their JSON spelling, nulls are dropped. The rules are spelled out in the schema text.

use std::collections::BTreeMap;

use serde_json::Value;

/// Nesting below this depth is kept as compact JSON text instead of being flattened further.
const MAX_DEPTH: usize = 16;

/// The tags for `arguments`: flattened argument path to text.
pub(crate) fn tags(arguments: &Value) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if let Value::Object(map) = arguments {
        for (key, value) in map {
            flatten(key.clone(), value, 1, &mut out);
        }
    }
    out
}

/// The whole arguments value as compact JSON (`{}` when there are none).
pub(crate) fn json(arguments: &Value) -> String {
    match arguments {
        Value::Null => "{}".to_owned(),
        other => other.to_string(),
    }
}

fn flatten(path: String, value: &Value, depth: usize, out: &mut BTreeMap<String, String>) {
    match value {
        Value::Null => {}
        Value::Object(map) if depth < MAX_DEPTH => {
            for (key, inner) in map {
                flatten(format!("{path}.{key}"), inner, depth + 1, out);
            }
        }
        Value::Array(items) => {
            let text = items
                .iter()
                .filter(|item| !item.is_null())
                .map(scalar_text)
                .collect::<Vec<_>>()
                .join(" ");
            insert(out, path, text);
        }
        other => insert(out, path, scalar_text(other)),
    }
}

/// A colliding key (`"a.b"` next to `{"a": {"b": ..}}`) keeps both texts, so neither can hide the other
/// from a guardrail.
fn insert(out: &mut BTreeMap<String, String>, path: String, text: String) {
    out.entry(path)
        .and_modify(|existing| {
            existing.push(' ');
            existing.push_str(&text);
        })
        .or_insert(text);
}

fn scalar_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
