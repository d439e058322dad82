//! Synthetic audit events as Arrow batches and Parquet segments with any lake schema, shared by the
//! benchmark and the integration tests (included with `#[path]`). Columns the generator knows get
//! values; any other column gets NULL when nullable, else an empty/zero value.

#![allow(dead_code, reason = "each includer uses a different subset")]

use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, BinaryBuilder, FixedSizeBinaryBuilder, Int32Array, Int64Array, ListBuilder, RecordBatch, StringArray,
    StringBuilder, TimestampMillisecondArray, new_null_array,
};
use datafusion::arrow::datatypes::{DataType, Field, SchemaRef, TimeUnit};
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::properties::WriterProperties;

/// One event, with the fields the queries read.
#[derive(Debug, Clone, Default)]
pub(crate) struct Event<'a> {
    pub(crate) seq: i64,
    pub(crate) time_ms: i64,
    pub(crate) class_uid: i32,
    pub(crate) action_id: Option<i32>,
    pub(crate) agent_id: Option<&'a str>,
    pub(crate) team: Option<&'a str>,
    pub(crate) server: Option<&'a str>,
    pub(crate) tool: Option<&'a str>,
    pub(crate) decision: Option<&'a str>,
    pub(crate) input_tokens: Option<i64>,
    pub(crate) output_tokens: Option<i64>,
    pub(crate) cost_micro_usd: Option<i64>,
    pub(crate) message: Option<&'a str>,
}

fn utf8(events: &[Event<'_>], f: impl Fn(&Event<'_>) -> Option<String>) -> ArrayRef {
    Arc::new(events.iter().map(f).collect::<StringArray>())
}

fn i64s(events: &[Event<'_>], f: impl Fn(&Event<'_>) -> Option<i64>) -> ArrayRef {
    Arc::new(events.iter().map(f).collect::<Int64Array>())
}

fn i32s(events: &[Event<'_>], f: impl Fn(&Event<'_>) -> Option<i32>) -> ArrayRef {
    Arc::new(events.iter().map(f).collect::<Int32Array>())
}

/// A cheap, deterministic 64-bit mix (splitmix64).
pub(crate) fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// The events as one batch of `schema`.
pub(crate) fn batch(schema: &SchemaRef, events: &[Event<'_>]) -> RecordBatch {
    let n = events.len();
    let columns: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .map(|field| known(field, events).unwrap_or_else(|| filler(field, events)))
        .collect();
    let _ = n;
    RecordBatch::try_new(schema.clone(), columns).expect("generated columns match the schema")
}

fn known(field: &Field, events: &[Event<'_>]) -> Option<ArrayRef> {
    let own = |s: Option<&str>| s.map(str::to_owned);
    Some(match field.name().as_str() {
        "seq" => i64s(events, |e| Some(e.seq)),
        "uid" => utf8(events, |e| Some(format!("evt-{:016x}", e.seq))),
        "time" | "logged_time" => i64s(events, |e| Some(e.time_ms)),
        "time_dt" => {
            Arc::new(TimestampMillisecondArray::from_iter_values(events.iter().map(|e| e.time_ms)).with_timezone("UTC"))
        }
        "class_uid" => i32s(events, |e| Some(e.class_uid)),
        "category_uid" => i32s(events, |e| Some(e.class_uid / 1000)),
        "activity_id" => i32s(events, |_| Some(99)),
        "type_uid" => i64s(events, |e| Some(i64::from(e.class_uid) * 100 + 99)),
        "severity_id" => i32s(events, |_| Some(1)),
        "status_id" => i32s(events, |e| Some(if e.action_id == Some(2) { 2 } else { 1 })),
        "action_id" => i32s(events, |e| e.action_id),
        "disposition_id" => i32s(events, |e| e.action_id),
        "message" => utf8(events, |e| Some(e.message.unwrap_or("tool call").to_owned())),
        "agent_id" => utf8(events, |e| own(e.agent_id)),
        "team" => utf8(events, |e| own(e.team)),
        "server" => utf8(events, |e| own(e.server)),
        "tool" => utf8(events, |e| own(e.tool)),
        "decision" => utf8(events, |e| own(e.decision)),
        "input_tokens" => i64s(events, |e| e.input_tokens),
        "output_tokens" => i64s(events, |e| e.output_tokens),
        "cost_micro_usd" => i64s(events, |e| e.cost_micro_usd),
        "raw_canonical" => {
            let mut b = BinaryBuilder::with_capacity(events.len(), events.len() * 96);
            for e in events {
                b.append_value(format!(
                    "{{\"class_uid\":{},\"seq\":{},\"time\":{},\"agent\":{:?},\"tool\":{:?}}}",
                    e.class_uid, e.seq, e.time_ms, e.agent_id, e.tool
                ));
            }
            Arc::new(b.finish())
        }
        _ => return None,
    })
}

/// NULL, or for a non-nullable column an empty/zero value.
fn filler(field: &Field, events: &[Event<'_>]) -> ArrayRef {
    let n = events.len();
    if field.is_nullable() {
        return new_null_array(field.data_type(), n);
    }
    match field.data_type() {
        DataType::Int32 => Arc::new(Int32Array::from(vec![0; n])),
        DataType::Int64 => Arc::new(Int64Array::from(vec![0; n])),
        DataType::Timestamp(TimeUnit::Millisecond, tz) => {
            Arc::new(TimestampMillisecondArray::from(vec![0; n]).with_timezone_opt(tz.clone()))
        }
        DataType::Utf8 => Arc::new(StringArray::from(vec![""; n])),
        DataType::List(item) => {
            let mut b = ListBuilder::new(StringBuilder::new()).with_field(item.clone());
            for _ in 0..n {
                b.append(true);
            }
            Arc::new(b.finish())
        }
        DataType::Binary => {
            let mut b = BinaryBuilder::new();
            for _ in 0..n {
                b.append_value(b"");
            }
            Arc::new(b.finish())
        }
        DataType::FixedSizeBinary(w) => {
            let mut b = FixedSizeBinaryBuilder::with_capacity(n, *w);
            for _ in 0..n {
                b.append_value(vec![0u8; *w as usize]).expect("width");
            }
            Arc::new(b.finish())
        }
        other => panic!(
            "the generator cannot fill a non-nullable {other} column `{}`",
            field.name()
        ),
    }
}

/// Writes `batches` as one sealed segment at `path` (zstd, 128 Ki-row groups, statistics on, the
/// lake's tool catalog in the footer), through a temporary name and a rename as a seal does.
pub(crate) fn write_segment(path: &Path, schema: &SchemaRef, batches: &[RecordBatch]) {
    write_segment_with(path, schema, batches, true);
}

/// Like [`write_segment`], with or without the tool catalog (as a lake from before catalogs, or
/// another writer, leaves it).
pub(crate) fn write_segment_with(path: &Path, schema: &SchemaRef, batches: &[RecordBatch], catalog: bool) {
    std::fs::create_dir_all(path.parent().expect("segment path has a parent")).expect("mkdir");
    let tmp = path.with_file_name(format!(
        ".{}.tmp",
        path.file_name().expect("file name").to_string_lossy()
    ));
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).expect("level")))
        .set_max_row_group_row_count(Some(128 * 1024))
        .build();
    let file = std::fs::File::create(&tmp).expect("create segment");
    let mut writer = ArrowWriter::try_new(file, schema.clone(), Some(props)).expect("writer");
    let mut tools = warden_lake::ToolCatalog::default();
    for b in batches {
        tools.add_batch(b);
        writer.write(b).expect("write batch");
    }
    if catalog && let Some(footer) = tools.footer() {
        writer.append_key_value_metadata(footer);
    }
    writer.close().expect("close segment");
    std::fs::rename(&tmp, path).expect("rename segment");
}
