//! Warden's audit lake: every audit event of every agent, in one OCSF-compatible format, durable
//! before it is acknowledged, tamper-evident, and stored as Parquet any engine reads.
//!
//! - `event`: the OCSF 1.8 event with the `warden` extension, its constructors and canonical bytes.
//! - `wal`: the group-commit write-ahead log (preallocated segments, CRC-framed, torn-tail recovery).
//! - `merkle`: the RFC 9162 tree over canonical event bytes, with inclusion/consistency/range proofs.
//! - `catalog`: the `(server, tool)` catalog in each sealed segment's footer.
//! - `checkpoint`: the log key and C2SP signed checkpoints.
//! - `schema`: the flat Arrow/Parquet columns of the `events` table.
//! - `segment`: sealed Parquet files (day-partitioned) and the segment manifest.
//! - `verify`: offline verification of a lake directory, naming what was changed.
//! - `pack`: evidence packs (export, offline verification).
//! - `ids`: the idempotency index (event id → seq), sharded so growing it never stalls the writer.
//! - `lake`: the `Lake` handle, recovery on open, the writer and sealer threads.

pub mod catalog;
pub mod checkpoint;
pub mod event;
mod ids;
mod lake;
pub mod merkle;
pub mod pack;
mod schema;
mod segment;
pub mod verify;
mod wal;

pub use catalog::{MAX_CATALOG_PAIRS, TOOL_CATALOG_KEY, ToolCatalog};
pub use checkpoint::{LogKey, NoteError, SignedCheckpoint, VerifierKey};
pub use event::{
    AccessChange, AuditEvent, Credential, Decision, EntityAction, EntityChange, EntityKind, Finding, ModelUsage,
    Subject, ToolCall,
};
pub use lake::{Lake, LakeConfig, LakeError, Receipt, Snapshot};
pub use pack::{PackError, PackReport, PackRequest, PackSummary, Progress, verify_pack, verify_pack_with_key};
pub use schema::arrow_schema;
pub use segment::{ManifestEntry, SegmentFile};
pub use verify::{Problem, ProblemKind, Report, verify, verify_with_key};
