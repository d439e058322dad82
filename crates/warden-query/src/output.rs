//! [`QueryResult`] and its three renderings: a text table, JSON and CSV.
//!
//! Values render the same way in all three: timestamps as RFC 3339 in UTC
//! (`2026-11-25T10:00:00.123Z`; a timestamp without a time zone is taken as UTC), dates as
//! `YYYY-MM-DD`, binary as lowercase hex, lists and structs as JSON. In JSON, integers, floats and
//! booleans are JSON numbers and booleans, NULL is `null`, and non-finite floats are strings
//! (`"NaN"`, `"inf"`); in CSV and the table NULL is empty.

use std::fmt::Write as _;
use std::str::FromStr;

use datafusion::arrow::array::temporal_conversions::{
    date32_to_datetime, date64_to_datetime, timestamp_ms_to_datetime, timestamp_ns_to_datetime,
    timestamp_s_to_datetime, timestamp_us_to_datetime,
};
use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{
    DataType, Date32Type, Date64Type, Float16Type, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type,
    SchemaRef, TimeUnit, TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
    TimestampSecondType, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use serde_json::{Map, Number, Value};

/// The rows a query returned.
#[derive(Debug, Clone)]
pub struct QueryResult {
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
    rows: usize,
}

/// An output format of `warden audit query --format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// An aligned text table for people.
    Table,
    /// An array of objects keyed by column name.
    Json,
    /// RFC 4180 CSV with a header line.
    Csv,
}

impl FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "table" => Ok(Self::Table),
            "json" => Ok(Self::Json),
            "csv" => Ok(Self::Csv),
            other => Err(format!("unknown format `{other}`; use table, json or csv")),
        }
    }
}

impl QueryResult {
    pub(crate) fn new(schema: SchemaRef, batches: Vec<RecordBatch>) -> Self {
        let rows = batches.iter().map(RecordBatch::num_rows).sum();
        Self { schema, batches, rows }
    }

    /// The result's columns.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// The rows as Arrow batches.
    pub fn batches(&self) -> &[RecordBatch] {
        &self.batches
    }

    /// How many rows.
    pub fn num_rows(&self) -> usize {
        self.rows
    }

    /// The column names, in order.
    pub fn column_names(&self) -> Vec<String> {
        self.schema.fields().iter().map(|f| f.name().clone()).collect()
    }

    /// Every row as JSON values, in column order.
    pub fn rows(&self) -> Vec<Vec<Value>> {
        let mut out = Vec::with_capacity(self.rows);
        for batch in &self.batches {
            for row in 0..batch.num_rows() {
                out.push(batch.columns().iter().map(|c| cell(c.as_ref(), row)).collect());
            }
        }
        out
    }

    /// Renders in `format`.
    pub fn render(&self, format: Format) -> String {
        match format {
            Format::Table => self.to_table(),
            Format::Json => self.to_json_string(),
            Format::Csv => self.to_csv(),
        }
    }

    /// An array of objects, column names as keys (a later duplicate name wins).
    pub fn to_json(&self) -> Value {
        let names = self.column_names();
        Value::Array(
            self.rows()
                .into_iter()
                .map(|row| Value::Object(names.iter().cloned().zip(row).collect::<Map<_, _>>()))
                .collect(),
        )
    }

    /// [`QueryResult::to_json`] as compact text.
    pub fn to_json_string(&self) -> String {
        self.to_json().to_string()
    }

    /// RFC 4180: a header line, CRLF line ends, fields quoted when they hold `,`, `"`, CR or LF.
    pub fn to_csv(&self) -> String {
        let mut out = String::new();
        let header: Vec<String> = self.column_names().iter().map(|n| csv_field(n)).collect();
        out.push_str(&header.join(","));
        out.push_str("\r\n");
        for row in self.rows() {
            let fields: Vec<String> = row.iter().map(|v| csv_field(&text(v))).collect();
            out.push_str(&fields.join(","));
            out.push_str("\r\n");
        }
        out
    }

    /// An aligned table with a header, ending in a row count line.
    pub fn to_table(&self) -> String {
        let names = self.column_names();
        let rows: Vec<Vec<String>> = self
            .rows()
            .iter()
            .map(|row| {
                row.iter()
                    .map(|v| text(v).replace('\n', "\\n").replace('\r', "\\r"))
                    .collect()
            })
            .collect();
        let mut widths: Vec<usize> = names.iter().map(|n| n.chars().count()).collect();
        for row in &rows {
            for (w, v) in widths.iter_mut().zip(row) {
                *w = (*w).max(v.chars().count());
            }
        }
        let numeric: Vec<bool> = self
            .schema
            .fields()
            .iter()
            .map(|f| f.data_type().is_numeric())
            .collect();
        let rule: String = widths
            .iter()
            .map(|w| format!("+{}", "-".repeat(w + 2)))
            .collect::<String>()
            + "+\n";
        let line = |cells: &[String], align_numbers: bool| {
            let mut s = String::new();
            for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
                let pad = w.saturating_sub(cell.chars().count());
                if align_numbers && numeric.get(i).copied().unwrap_or(false) {
                    let _ = write!(s, "| {}{} ", " ".repeat(pad), cell);
                } else {
                    let _ = write!(s, "| {}{} ", cell, " ".repeat(pad));
                }
            }
            s.push_str("|\n");
            s
        };
        let mut out = String::new();
        if !names.is_empty() {
            out.push_str(&rule);
            out.push_str(&line(&names, false));
            out.push_str(&rule);
            for row in &rows {
                out.push_str(&line(row, true));
            }
            if !rows.is_empty() {
                out.push_str(&rule);
            }
        }
        let _ = writeln!(out, "({} row{})", self.rows, if self.rows == 1 { "" } else { "s" });
        out
    }
}

/// A value as CSV or table text: NULL empty, strings raw, nested values as JSON.
fn text(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        nested => nested.to_string(),
    }
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

fn float(v: f64) -> Value {
    Number::from_f64(v).map_or_else(|| Value::String(v.to_string()), Value::Number)
}

const RFC3339: &str = "%Y-%m-%dT%H:%M:%S%.fZ";

/// One cell as a JSON value.
fn cell(array: &dyn Array, row: usize) -> Value {
    if array.is_null(row) {
        return Value::Null;
    }
    let ts = |dt: Option<String>| dt.map_or(Value::Null, Value::String);
    match array.data_type() {
        DataType::Null => Value::Null,
        DataType::Boolean => Value::Bool(array.as_boolean().value(row)),
        DataType::Int8 => array.as_primitive::<Int8Type>().value(row).into(),
        DataType::Int16 => array.as_primitive::<Int16Type>().value(row).into(),
        DataType::Int32 => array.as_primitive::<Int32Type>().value(row).into(),
        DataType::Int64 => array.as_primitive::<Int64Type>().value(row).into(),
        DataType::UInt8 => array.as_primitive::<UInt8Type>().value(row).into(),
        DataType::UInt16 => array.as_primitive::<UInt16Type>().value(row).into(),
        DataType::UInt32 => array.as_primitive::<UInt32Type>().value(row).into(),
        DataType::UInt64 => array.as_primitive::<UInt64Type>().value(row).into(),
        DataType::Float16 => float(f64::from(array.as_primitive::<Float16Type>().value(row))),
        DataType::Float32 => float(f64::from(array.as_primitive::<Float32Type>().value(row))),
        DataType::Float64 => float(array.as_primitive::<Float64Type>().value(row)),
        DataType::Utf8 => Value::String(array.as_string::<i32>().value(row).to_owned()),
        DataType::LargeUtf8 => Value::String(array.as_string::<i64>().value(row).to_owned()),
        DataType::Utf8View => Value::String(array.as_string_view().value(row).to_owned()),
        DataType::Binary => hex(array.as_binary::<i32>().value(row)),
        DataType::LargeBinary => hex(array.as_binary::<i64>().value(row)),
        DataType::BinaryView => hex(array.as_binary_view().value(row)),
        DataType::FixedSizeBinary(_) => hex(array.as_fixed_size_binary().value(row)),
        // Times are instants: shown in UTC whatever the column's zone (naive ones are UTC).
        DataType::Timestamp(TimeUnit::Second, _) => ts(timestamp_s_to_datetime(
            array.as_primitive::<TimestampSecondType>().value(row),
        )
        .map(|d| d.format(RFC3339).to_string())),
        DataType::Timestamp(TimeUnit::Millisecond, _) => ts(timestamp_ms_to_datetime(
            array.as_primitive::<TimestampMillisecondType>().value(row),
        )
        .map(|d| d.format(RFC3339).to_string())),
        DataType::Timestamp(TimeUnit::Microsecond, _) => ts(timestamp_us_to_datetime(
            array.as_primitive::<TimestampMicrosecondType>().value(row),
        )
        .map(|d| d.format(RFC3339).to_string())),
        DataType::Timestamp(TimeUnit::Nanosecond, _) => ts(timestamp_ns_to_datetime(
            array.as_primitive::<TimestampNanosecondType>().value(row),
        )
        .map(|d| d.format(RFC3339).to_string())),
        DataType::Date32 => {
            ts(date32_to_datetime(array.as_primitive::<Date32Type>().value(row))
                .map(|d| d.format("%Y-%m-%d").to_string()))
        }
        DataType::Date64 => {
            ts(date64_to_datetime(array.as_primitive::<Date64Type>().value(row))
                .map(|d| d.format("%Y-%m-%d").to_string()))
        }
        DataType::List(_) => list(array.as_list::<i32>().value(row).as_ref()),
        DataType::LargeList(_) => list(array.as_list::<i64>().value(row).as_ref()),
        DataType::FixedSizeList(_, _) => list(array.as_fixed_size_list().value(row).as_ref()),
        DataType::Struct(fields) => {
            let s = array.as_struct();
            Value::Object(
                fields
                    .iter()
                    .zip(s.columns())
                    .map(|(f, c)| (f.name().clone(), cell(c.as_ref(), row)))
                    .collect(),
            )
        }
        DataType::Dictionary(_, _) => match array.as_any_dictionary_opt() {
            Some(dict) => {
                let key = dict.normalized_keys().get(row).copied();
                match key {
                    Some(k) if k < dict.values().len() => cell(dict.values().as_ref(), k),
                    _ => Value::Null,
                }
            }
            None => formatted(array, row),
        },
        _ => formatted(array, row),
    }
}

fn list(values: &dyn Array) -> Value {
    Value::Array((0..values.len()).map(|i| cell(values, i)).collect())
}

/// Decimals, durations, intervals, ...: Arrow's own display text.
fn formatted(array: &dyn Array, row: usize) -> Value {
    let options = FormatOptions::default();
    match ArrayFormatter::try_new(array, &options) {
        Ok(f) => Value::String(f.value(row).to_string()),
        Err(_) => Value::Null,
    }
}

fn hex(bytes: &[u8]) -> Value {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    Value::String(s)
}
