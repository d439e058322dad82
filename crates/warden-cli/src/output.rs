//! Human output: aligned tables and key/value blocks built from the API's JSON.

use serde_json::Value;

/// Renders a cell: strings bare, arrays comma separated, null as `-`.
fn cell(value: &Value) -> String {
    match value {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        Value::Array(items) if items.is_empty() => "-".to_owned(),
        Value::Array(items) => items.iter().map(cell).collect::<Vec<_>>().join(","),
        Value::Object(map) => {
            // Transports: show the URL or the command line.
            if let Some(url) = map.get("url").and_then(Value::as_str) {
                return url.to_owned();
            }
            if let Some(cmd) = map.get("command").and_then(Value::as_str) {
                let args = map.get("args").map(cell).filter(|a| a != "-").unwrap_or_default();
                return format!("{cmd} {}", args.replace(',', " ")).trim().to_owned();
            }
            value.to_string()
        }
        other => other.to_string(),
    }
}

/// Prints `rows` (JSON objects) as a table of `columns` (field name, heading).
pub(crate) fn table(rows: &Value, columns: &[(&str, &str)]) {
    let rows: Vec<&Value> = rows.as_array().map(|a| a.iter().collect()).unwrap_or_default();
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|row| columns.iter().map(|(field, _)| cell(&row[*field])).collect())
        .collect();
    let mut widths: Vec<usize> = columns.iter().map(|(_, heading)| heading.len()).collect();
    for row in &cells {
        for (width, value) in widths.iter_mut().zip(row) {
            *width = (*width).max(value.chars().count());
        }
    }
    let line = |values: Vec<&str>| {
        let mut out = String::new();
        for (i, (value, width)) in values.iter().zip(&widths).enumerate() {
            if i + 1 == values.len() {
                out.push_str(value);
            } else {
                out.push_str(&format!("{value:<width$}  "));
            }
        }
        println!("{}", out.trim_end());
    };
    line(columns.iter().map(|(_, heading)| *heading).collect());
    for row in &cells {
        line(row.iter().map(String::as_str).collect());
    }
}

/// Prints one object as `field: value` lines.
pub(crate) fn record(value: &Value, fields: &[&str]) {
    let width = fields.iter().map(|f| f.len()).max().unwrap_or(0) + 1;
    for field in fields {
        if value.get(*field).is_some() {
            println!("{:<width$} {}", format!("{field}:"), cell(&value[*field]));
        }
    }
}

/// Prints JSON for scripts.
pub(crate) fn json(value: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
    );
}
