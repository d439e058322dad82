//! SQL over Warden's audit lake, with DataFusion.
//!
//! The only crate of the workspace that depends on DataFusion (a heavy build); everything else asks
//! it for answers. [`QueryEngine`] runs one read-only SQL statement over the table `events` (the
//! lake's sealed Parquet segments ∪ the events not sealed yet), as seen by a [`Visibility`]
//! (everything, or one team's events only), within [`Limits`]; [`QueryResult`] renders as a table,
//! JSON or CSV. [`govern`] holds the named governance queries behind `warden govern …`, which also
//! read the registry's `agents` and `grants` tables ([`Registry`]).

mod engine;
mod error;
pub mod govern;
mod granted;
mod output;
mod registry;

pub use engine::{
    EVENT_TOOLS_TABLE, EVENTS_TABLE, LakeSnapshot, Limits, QueryEngine, SEQ_COLUMN, SnapshotSource, TEAM_COLUMN,
    TailSource, Visibility,
};
pub use error::QueryError;
pub use granted::IN_GRANTED_SCOPE;
pub use output::{Format, QueryResult};
pub use registry::{
    AGENTS_TABLE, GRANTS_TABLE, GrantedTool, PatternParts, RegisteredAgent, Registry, agents_schema, glob_to_like,
    grants_schema, pattern_parts,
};
