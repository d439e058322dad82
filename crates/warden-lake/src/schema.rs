//! The flat Arrow/Parquet layout of the `events` table: one typed column per field engines filter or
//! group on, plus `raw_canonical` (the exact bytes that were hashed into the log). This module owns
//! the column list, how an event becomes a row, how rows become a `RecordBatch`, and how a stored row
//! is read back for verification — one code path for sealing, the tail and `verify`.

use std::sync::{Arc, OnceLock};

use arrow_array::builder::{
    BinaryBuilder, Int32Builder, Int64Builder, ListBuilder, StringBuilder, TimestampMillisecondBuilder,
};
use arrow_array::{
    Array, ArrayRef, BinaryArray, Int32Array, Int64Array, ListArray, RecordBatch, StringArray,
    TimestampMillisecondArray,
};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};

use crate::event::AuditEvent;

/// The physical type of a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    I32,
    I64,
    TimestampMs,
    Str,
    StrList,
    Bytes,
}

/// One column: name, type, nullability and how to take its value from an event.
pub(crate) struct Column {
    pub(crate) name: &'static str,
    pub(crate) kind: Kind,
    pub(crate) nullable: bool,
    pub(crate) get: for<'a> fn(&'a Row<'a>) -> Val<'a>,
}

/// An event with its canonical bytes, as the schema sees it.
pub(crate) struct Row<'a> {
    pub(crate) event: &'a AuditEvent,
    pub(crate) canonical: &'a [u8],
}

/// One value of one column, borrowed from the event (building batches allocates nothing extra).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Val<'a> {
    Null,
    Int(i64),
    Str(&'a str),
    List(&'a [String]),
    Bytes(&'a [u8]),
}

impl Val<'_> {
    fn to_cell(self) -> Cell {
        match self {
            Val::Null => Cell::Null,
            Val::Int(v) => Cell::Int(v),
            Val::Str(v) => Cell::Str(v.to_owned()),
            Val::List(v) => Cell::List(v.to_vec()),
            Val::Bytes(v) => Cell::Bytes(v.to_vec()),
        }
    }
}

/// One value of one column, owned (as read back from a file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Cell {
    Null,
    Int(i64),
    Str(String),
    List(Vec<String>),
    Bytes(Vec<u8>),
}

impl std::fmt::Display for Cell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cell::Null => f.write_str("null"),
            Cell::Int(v) => write!(f, "{v}"),
            Cell::Str(s) => write!(f, "{s:?}"),
            Cell::List(l) => write!(f, "{l:?}"),
            Cell::Bytes(b) if b.len() == 32 => f.write_str(&crate::merkle::to_hex(&{
                let mut h = [0u8; 32];
                h.copy_from_slice(b);
                h
            })),
            Cell::Bytes(b) => write!(f, "<{} bytes>", b.len()),
        }
    }
}

fn s(v: &Option<String>) -> Val<'_> {
    v.as_deref().map_or(Val::Null, Val::Str)
}
fn i(v: Option<i64>) -> Val<'static> {
    v.map_or(Val::Null, Val::Int)
}
fn i32c(v: Option<i32>) -> Val<'static> {
    v.map_or(Val::Null, |x| Val::Int(i64::from(x)))
}
fn list(v: &[String]) -> Val<'_> {
    Val::List(v)
}

macro_rules! col {
    ($name:literal, $kind:ident, $nullable:literal, $get:expr) => {
        Column {
            name: $name,
            kind: Kind::$kind,
            nullable: $nullable,
            get: $get,
        }
    };
}

/// Every column, in table order. `SCHEMA.md` documents each.
pub(crate) static COLUMNS: &[Column] = &[
    col!("seq", I64, false, |r| i(r.event.metadata.sequence.map(|x| x as i64))),
    col!("uid", Str, false, |r| Val::Str(&r.event.metadata.uid)),
    col!("time", I64, false, |r| Val::Int(r.event.time)),
    col!("time_dt", TimestampMs, false, |r| Val::Int(r.event.time)),
    col!("logged_time", I64, false, |r| i(r.event.metadata.logged_time)),
    col!("class_uid", I32, false, |r| Val::Int(i64::from(r.event.class_uid))),
    col!("category_uid", I32, false, |r| Val::Int(i64::from(
        r.event.category_uid
    ))),
    col!("activity_id", I32, false, |r| Val::Int(i64::from(r.event.activity_id))),
    col!("activity_name", Str, true, |r| s(&r.event.activity_name)),
    col!("type_uid", I64, false, |r| Val::Int(r.event.type_uid)),
    col!("severity_id", I32, false, |r| Val::Int(i64::from(r.event.severity_id))),
    col!("status_id", I32, false, |r| Val::Int(i64::from(r.event.status_id))),
    col!("status_detail", Str, true, |r| s(&r.event.status_detail)),
    col!("action_id", I32, true, |r| i32c(r.event.action_id)),
    col!("disposition_id", I32, true, |r| i32c(r.event.disposition_id)),
    col!("message", Str, false, |r| Val::Str(&r.event.message)),
    col!("duration", I64, true, |r| i(r.event.duration)),
    col!("call_id", Str, true, |r| s(&r.event.warden.call_id)),
    col!("agent_id", Str, true, |r| s(&r.event.warden.agent_id)),
    col!("team", Str, true, |r| s(&r.event.warden.team)),
    col!("purpose", Str, true, |r| s(&r.event.warden.purpose)),
    col!("session_id", Str, true, |r| s(&r.event.warden.session_id)),
    col!("subagent_id", Str, true, |r| s(&r.event.warden.subagent_id)),
    col!("delegation_chain", StrList, false, |r| list(
        &r.event.warden.delegation_chain
    )),
    col!("server", Str, true, |r| s(&r.event.warden.server)),
    col!("tool", Str, true, |r| s(&r.event.warden.tool)),
    col!("decision", Str, true, |r| s(&r.event.warden.decision)),
    col!("policy_ids", StrList, false, |r| list(&r.event.warden.policy_ids)),
    col!("model_provider", Str, true, |r| r
        .event
        .ai_model
        .as_ref()
        .map_or(Val::Null, |m| Val::Str(&m.ai_provider))),
    col!("model_name", Str, true, |r| r
        .event
        .ai_model
        .as_ref()
        .map_or(Val::Null, |m| Val::Str(&m.name))),
    col!("input_tokens", I64, true, |r| i(r.event.warden.input_tokens)),
    col!("output_tokens", I64, true, |r| i(r.event.warden.output_tokens)),
    col!("cache_read_tokens", I64, true, |r| i(r.event.warden.cache_read_tokens)),
    col!("cache_creation_tokens", I64, true, |r| i(r
        .event
        .warden
        .cache_creation_tokens)),
    col!("reasoning_tokens", I64, true, |r| i(r.event.warden.reasoning_tokens)),
    col!("cost_micro_usd", I64, true, |r| i(r.event.warden.cost_micro_usd)),
    col!("credential_uid", Str, true, |r| r
        .event
        .session
        .as_ref()
        .map_or(Val::Null, |x| s(&x.credential_uid))),
    col!("privileges", StrList, true, |r| r
        .event
        .privileges
        .as_deref()
        .map_or(Val::Null, list)),
    col!("actor_uid", Str, true, |r| r
        .event
        .actor
        .as_ref()
        .and_then(|a| a.user.as_ref())
        .map_or(Val::Null, |u| Val::Str(&u.uid))),
    col!("entity_type", Str, true, |r| r
        .event
        .entity
        .as_ref()
        .map_or(Val::Null, |x| Val::Str(&x.type_))),
    col!("entity_uid", Str, true, |r| r
        .event
        .entity
        .as_ref()
        .map_or(Val::Null, |x| Val::Str(&x.uid))),
    col!("entity_name", Str, true, |r| r
        .event
        .entity
        .as_ref()
        .map_or(Val::Null, |x| Val::Str(&x.name))),
    col!("finding_uid", Str, true, |r| r
        .event
        .finding_info
        .as_ref()
        .map_or(Val::Null, |x| Val::Str(&x.uid))),
    col!("finding_title", Str, true, |r| r
        .event
        .finding_info
        .as_ref()
        .map_or(Val::Null, |x| Val::Str(&x.title))),
    col!("raw_canonical", Bytes, false, |r| Val::Bytes(r.canonical)),
];

/// Index of a column by name.
pub(crate) fn column_index(name: &str) -> Option<usize> {
    COLUMNS.iter().position(|c| c.name == name)
}

fn data_type(kind: Kind) -> DataType {
    match kind {
        Kind::I32 => DataType::Int32,
        Kind::I64 => DataType::Int64,
        Kind::TimestampMs => DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
        Kind::Str => DataType::Utf8,
        Kind::StrList => DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
        Kind::Bytes => DataType::Binary,
    }
}

/// The Arrow schema of the `events` table, for sealed Parquet files and the unsealed tail alike.
pub fn arrow_schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            Arc::new(Schema::new(
                COLUMNS
                    .iter()
                    .map(|c| Field::new(c.name, data_type(c.kind), c.nullable))
                    .collect::<Vec<_>>(),
            ))
        })
        .clone()
}

enum Builder {
    I32(Int32Builder),
    I64(Int64Builder),
    Ts(TimestampMillisecondBuilder),
    Str(StringBuilder),
    List(ListBuilder<StringBuilder>),
    Bytes(BinaryBuilder),
}

impl Builder {
    fn new(kind: Kind, cap: usize) -> Self {
        match kind {
            Kind::I32 => Builder::I32(Int32Builder::with_capacity(cap)),
            Kind::I64 => Builder::I64(Int64Builder::with_capacity(cap)),
            Kind::TimestampMs => Builder::Ts(TimestampMillisecondBuilder::with_capacity(cap).with_timezone("UTC")),
            Kind::Str => Builder::Str(StringBuilder::with_capacity(cap, cap * 16)),
            Kind::StrList => Builder::List(ListBuilder::new(StringBuilder::new())),
            Kind::Bytes => Builder::Bytes(BinaryBuilder::with_capacity(cap, cap * 400)),
        }
    }

    fn push(&mut self, val: Val<'_>) -> Result<(), String> {
        match (self, val) {
            (Builder::I32(b), Val::Int(v)) => {
                b.append_value(i32::try_from(v).map_err(|_| format!("{v} does not fit int32"))?)
            }
            (Builder::I32(b), Val::Null) => b.append_null(),
            (Builder::I64(b), Val::Int(v)) => b.append_value(v),
            (Builder::I64(b), Val::Null) => b.append_null(),
            (Builder::Ts(b), Val::Int(v)) => b.append_value(v),
            (Builder::Ts(b), Val::Null) => b.append_null(),
            (Builder::Str(b), Val::Str(v)) => b.append_value(v),
            (Builder::Str(b), Val::Null) => b.append_null(),
            (Builder::List(b), Val::List(items)) => {
                for item in items {
                    b.values().append_value(item);
                }
                b.append(true);
            }
            (Builder::List(b), Val::Null) => b.append(false),
            (Builder::Bytes(b), Val::Bytes(v)) => b.append_value(v),
            (_, val) => return Err(format!("value {:?} does not fit the column type", val.to_cell())),
        }
        Ok(())
    }

    fn finish(self) -> ArrayRef {
        match self {
            Builder::I32(mut b) => Arc::new(b.finish()),
            Builder::I64(mut b) => Arc::new(b.finish()),
            Builder::Ts(mut b) => Arc::new(b.finish()),
            Builder::Str(mut b) => Arc::new(b.finish()),
            Builder::List(mut b) => Arc::new(b.finish()),
            Builder::Bytes(mut b) => Arc::new(b.finish()),
        }
    }
}

/// Builds one `RecordBatch` of `rows`, in the order given.
pub(crate) fn to_batch(rows: &[Row<'_>]) -> Result<RecordBatch, String> {
    let mut builders: Vec<Builder> = COLUMNS.iter().map(|c| Builder::new(c.kind, rows.len())).collect();
    for row in rows {
        for (col, builder) in COLUMNS.iter().zip(builders.iter_mut()) {
            builder
                .push((col.get)(row))
                .map_err(|e| format!("column `{}`: {e}", col.name))?;
        }
    }
    let arrays: Vec<ArrayRef> = builders.into_iter().map(Builder::finish).collect();
    RecordBatch::try_new(arrow_schema(), arrays).map_err(|e| e.to_string())
}

/// The value stored at `row` of `array` (a column of kind `kind`), or why it cannot be read.
pub(crate) fn read_cell(array: &dyn Array, kind: Kind, row: usize) -> Result<Cell, String> {
    if row >= array.len() {
        return Err(format!("row {row} is past the column's {} rows", array.len()));
    }
    if array.is_null(row) {
        return Ok(Cell::Null);
    }
    let any = array.as_any();
    let wrong = || format!("stored type {} is not the schema's", array.data_type());
    Ok(match kind {
        Kind::I32 => Cell::Int(i64::from(
            any.downcast_ref::<Int32Array>().ok_or_else(wrong)?.value(row),
        )),
        Kind::I64 => Cell::Int(any.downcast_ref::<Int64Array>().ok_or_else(wrong)?.value(row)),
        Kind::TimestampMs => Cell::Int(
            any.downcast_ref::<TimestampMillisecondArray>()
                .ok_or_else(wrong)?
                .value(row),
        ),
        Kind::Str => Cell::Str(
            any.downcast_ref::<StringArray>()
                .ok_or_else(wrong)?
                .value(row)
                .to_owned(),
        ),
        Kind::StrList => {
            let l = any.downcast_ref::<ListArray>().ok_or_else(wrong)?;
            let values = l.value(row);
            let strings = values.as_any().downcast_ref::<StringArray>().ok_or_else(wrong)?;
            Cell::List((0..strings.len()).map(|i| strings.value(i).to_owned()).collect())
        }
        Kind::Bytes => Cell::Bytes(any.downcast_ref::<BinaryArray>().ok_or_else(wrong)?.value(row).to_vec()),
    })
}

/// The values `row` should have, from its canonical event.
pub(crate) fn expected_cells(row: &Row<'_>) -> Vec<Cell> {
    COLUMNS.iter().map(|c| (c.get)(row).to_cell()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::tests::every_kind;

    #[test]
    fn every_kind_roundtrips_through_a_batch() {
        let mut events = every_kind();
        let mut bytes = Vec::new();
        for (n, e) in events.iter_mut().enumerate() {
            e.metadata.sequence = Some(n as u64);
            e.metadata.logged_time = Some(1_764_000_000_000 + n as i64);
            bytes.push(e.canonical_bytes());
        }
        let rows: Vec<Row<'_>> = events
            .iter()
            .zip(&bytes)
            .map(|(event, canonical)| Row { event, canonical })
            .collect();
        let batch = to_batch(&rows).unwrap();
        assert_eq!(batch.num_rows(), events.len());
        assert_eq!(batch.schema(), arrow_schema());
        for (r, row) in rows.iter().enumerate() {
            let want = expected_cells(row);
            for (c, col) in COLUMNS.iter().enumerate() {
                assert_eq!(
                    read_cell(batch.column(c).as_ref(), col.kind, r).unwrap(),
                    want[c],
                    "{}",
                    col.name
                );
            }
        }
        assert_eq!(column_index("raw_canonical"), Some(COLUMNS.len() - 1));
    }
}
